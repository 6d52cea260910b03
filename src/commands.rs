//! Suggested kubectl commands, checked and never run: each is parsed, labelled, and checked against the facts, so a
//! command that would change the cluster or names something kubechat never saw comes with a warning. kubechat
//! executes nothing, ever.
//!
//! The label is honest about the whole line, read as a shell reads it: `read-only` only for one plain kubectl command
//! whose verb only reads, against the cluster kubechat reads, as itself. A mutating verb anywhere in the line makes it
//! `mutating`; anything the shell does around kubectl (chaining, pipes, substitution, redirection, `sudo`, variables
//! set before it, loops) or a flag that points it at another cluster or identity makes it `review`, with the reason.
//! Reading Secrets is `sensitive` whatever the label.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::facts::Facts;
use crate::findings::Finding;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    pub command: String,
    /// `label == Label::ReadOnly`, for clients that read only this.
    pub read_only: bool,
    pub label: Label,
    /// It reads Secret values, which kubechat itself never reads.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// Every object it names was read by kubechat (in the namespace it targets).
    pub grounded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What running a suggested line would do, as far as kubechat can vouch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Label {
    /// One kubectl command that only reads, against the cluster kubechat reads.
    ReadOnly,
    /// A kubectl verb that changes the cluster.
    Mutating,
    /// Not one plain kubectl command (a chain, a pipe, a substitution, `sudo`, another cluster or identity): kubechat
    /// cannot vouch for it; the note says why.
    Review,
}

impl Label {
    pub fn as_str(self) -> &'static str {
        match self {
            Label::ReadOnly => "read-only",
            Label::Mutating => "mutating",
            Label::Review => "review",
        }
    }
}

/// Flags that point kubectl at another cluster, credentials or identity than the one kubechat read; all take a value
/// but the last.
const TARGET_FLAGS: &[&str] = &[
    "-s",
    "--server",
    "--kubeconfig",
    "--context",
    "--cluster",
    "--user",
    "--token",
    "--as",
    "--as-group",
    "--as-uid",
    "--username",
    "--password",
    "--client-certificate",
    "--client-key",
    "--certificate-authority",
    "--tls-server-name",
    "--insecure-skip-tls-verify",
];

/// Whether a flag takes a value, so the value is not mistaken for a verb or a name.
fn takes_value(flag: &str) -> bool {
    VALUED_FLAGS.contains(&flag) || TARGET_FLAGS.contains(&flag) && flag != "--insecure-skip-tls-verify"
}

/// A line as a shell reads it: its simple commands (split at `&&`, `||`, `;`, `|`, `&`, newlines and inside `$(…)`
/// and backticks) and what the shell does besides running them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shell {
    commands: Vec<String>,
    /// Why the line is more than one plain command, in words.
    hazards: Vec<String>,
}

fn shell(line: &str) -> Shell {
    let mut out = Shell::default();
    let hazard = |h: String, out: &mut Shell| {
        if !out.hazards.contains(&h) {
            out.hazards.push(h);
        }
    };
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        // Inside single quotes nothing is special; inside double quotes only substitutions are.
        match (quote, c) {
            (Some('\''), '\'') => {
                quote = None;
                current.push(c);
                continue;
            }
            (Some('\''), _) => {
                current.push(c);
                continue;
            }
            (_, '\\') => {
                current.push(c);
                current.extend(chars.next());
                continue;
            }
            (Some('"'), '"') => {
                quote = None;
                current.push(c);
                continue;
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
                continue;
            }
            _ => {}
        }
        let substitution = match c {
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                true
            }
            '`' => true,
            '<' | '>' if quote.is_none() && chars.peek() == Some(&'(') => {
                chars.next();
                true
            }
            _ => false,
        };
        if substitution {
            hazard("substitutes a command's output ($(…) or backticks)".into(), &mut out);
            out.commands.push(std::mem::take(&mut current));
            continue;
        }
        if quote.is_some() {
            current.push(c);
            continue;
        }
        let separator = match c {
            '&' if chars.peek() == Some(&'&') => {
                chars.next();
                Some("chains commands (&&)")
            }
            '|' if chars.peek() == Some(&'|') => {
                chars.next();
                Some("chains commands (||)")
            }
            // Split below, where the program it pipes into is named.
            '|' => {
                current.push(c);
                continue;
            }
            ';' | '\n' => Some("runs several commands (;)"),
            '&' if chars.peek() == Some(&'>') => {
                chars.next();
                hazard("redirects output to a file (&>)".into(), &mut out);
                current.push(' ');
                continue;
            }
            '&' if current.ends_with('>') => {
                current.push(c);
                continue;
            }
            '&' => Some("runs a command in the background (&)"),
            ')' => Some(""),
            '>' | '<' => {
                let what = if c == '>' { "redirects output to a file (>)" } else { "reads input from a file (<)" };
                hazard(what.into(), &mut out);
                // `2>`: the descriptor is the redirection's, not an argument.
                let bytes = current.as_bytes();
                if bytes.last().is_some_and(u8::is_ascii_digit) && bytes.len() >= 2 && bytes[bytes.len() - 2] == b' ' {
                    current.pop();
                }
                current.push(' ');
                // The target word is the redirection's, not an argument.
                while chars.peek().is_some_and(|c| *c == '>' || *c == '&' || c.is_whitespace()) {
                    chars.next();
                }
                while chars.peek().is_some_and(|c| !c.is_whitespace() && !";|&".contains(*c)) {
                    chars.next();
                }
                continue;
            }
            _ => {
                current.push(c);
                continue;
            }
        };
        if let Some(why) = separator.filter(|w| !w.is_empty()) {
            hazard(why.into(), &mut out);
        }
        out.commands.push(std::mem::take(&mut current));
    }
    out.commands.push(current);
    out.commands.retain(|c| !c.trim().is_empty());
    // A pipe: split here, naming the program that reads kubectl's output.
    let mut commands = Vec::new();
    for command in std::mem::take(&mut out.commands) {
        let mut parts = split_unquoted(&command, '|').into_iter();
        if let Some(first) = parts.next() {
            commands.push(first);
        }
        for part in parts {
            let program = split(&part).into_iter().next().unwrap_or_default();
            hazard(format!("pipes its output into {program}"), &mut out);
            commands.push(part);
        }
    }
    out.commands = commands;
    out
}

/// Splits at `sep` outside quotes.
fn split_unquoted(text: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, c) if c == sep => {
                parts.push(String::new());
                continue;
            }
            _ => {}
        }
        parts.last_mut().expect("one part at least").push(c);
    }
    parts
}

/// The kubectl command in a simple command, after what may come before it (`sudo`, `VAR=value`, `env`, `time`,
/// `do`, `then`), with what came before said as hazards.
fn kubectl_in(command: &str, hazards: &mut Vec<String>) -> Option<String> {
    let words = split(command);
    let mut i = 0;
    while i < words.len() {
        let word = words[i].as_str();
        let said = match word {
            "sudo" | "doas" => Some(format!("runs as another user ({word})")),
            "env" | "time" | "nohup" | "exec" | "do" | "then" | "else" | "!" | "{" | "(" => None,
            "xargs" | "watch" => Some(format!("runs kubectl through {word}")),
            "for" | "while" | "until" | "if" => Some(format!("runs in a shell `{word}`")),
            w if w.contains('=') && !w.starts_with('-') && w.split('=').next().is_some_and(is_variable) => {
                Some(format!("sets {} before it", w.split('=').next().unwrap_or_default()))
            }
            "kubectl" => {
                let rest: Vec<String> = words[i..].to_vec();
                return Some(rest.iter().map(|w| quote_word(w)).collect::<Vec<_>>().join(" "));
            }
            _ => return None,
        };
        if let Some(h) = said.filter(|h| !hazards.contains(h)) {
            hazards.push(h);
        }
        // `sudo -u root kubectl`, `xargs -n 1 kubectl`, `watch -n 5 kubectl`: the prefix's own flags and values.
        let valued: &[&str] = match word {
            "sudo" | "doas" => &["-u", "-g", "-h", "-p", "-C", "-D", "-R", "-T"],
            "xargs" => &["-n", "-I", "-L", "-P", "-d", "-s", "-E"],
            "watch" => &["-n"],
            _ => &[],
        };
        if !valued.is_empty() {
            while words.get(i + 1).is_some_and(|w| w.starts_with('-')) {
                i += 1;
                if valued.contains(&words[i].as_str()) {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    None
}

fn is_variable(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn quote_word(word: &str) -> String {
    if word.is_empty() || word.chars().any(|c| c.is_whitespace() || "'\"$`\\".contains(c)) {
        format!("'{}'", word.replace('\'', r"'\''"))
    } else {
        word.to_string()
    }
}

/// Words of the shell's own syntax: a simple command that starts with one is no other program.
const SHELL_WORDS: &[&str] =
    &["for", "while", "until", "if", "do", "done", "then", "else", "elif", "fi", "case", "esac"];

/// Whether a text holds a kubectl command: `kubectl` as a command word (after `sudo`, `VAR=…`, in a loop or a
/// substitution) followed by one of its verbs, so prose that merely names kubectl is not taken for one.
fn holds_kubectl(text: &str) -> bool {
    shell(text)
        .commands
        .iter()
        .filter_map(|c| kubectl_in(c, &mut Vec::new()))
        .any(|c| parse(&c).is_some_and(|p| VERBS.contains(&p.verb.split(' ').next().unwrap_or_default())))
}

/// A kubectl command line taken apart.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// The verb, with its sub-verb for `rollout`, `auth`, `config` and `certificate` (`rollout status`).
    pub verb: String,
    /// `(resource, name)` pairs; the name is empty when none is given (`get pods`).
    pub objects: Vec<(String, String)>,
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    /// The path of `--raw`.
    pub raw: Option<String>,
}

const READ_ONLY: &[&str] = &[
    "get",
    "describe",
    "logs",
    "top",
    "events",
    "explain",
    "api-resources",
    "api-versions",
    "version",
    "cluster-info",
    "auth can-i",
    "auth whoami",
    "rollout status",
    "rollout history",
];
const SUB_VERBS: &[&str] = &["rollout", "auth", "config", "certificate", "top", "set", "create"];
/// Flags that take a value besides [`TARGET_FLAGS`].
const VALUED_FLAGS: &[&str] = &[
    "-n",
    "--namespace",
    "-c",
    "--container",
    "-l",
    "--selector",
    "-o",
    "--output",
    "--field-selector",
    "--tail",
    "--since",
    "--since-time",
    "--sort-by",
    "--timeout",
    "-f",
    "--filename",
    "--revision",
    "--to-revision",
    "--replicas",
    "--image",
    "-p",
    "--patch",
    "--type",
    "-L",
    "--label-columns",
    "--request-timeout",
    "--raw",
];
/// Every kubectl verb, so prose that starts with "kubectl" is not taken for a command.
const VERBS: &[&str] = &[
    "get",
    "describe",
    "logs",
    "top",
    "events",
    "explain",
    "api-resources",
    "api-versions",
    "version",
    "cluster-info",
    "auth",
    "rollout",
    "delete",
    "apply",
    "edit",
    "patch",
    "scale",
    "exec",
    "cp",
    "port-forward",
    "drain",
    "cordon",
    "uncordon",
    "label",
    "annotate",
    "set",
    "create",
    "replace",
    "expose",
    "run",
    "autoscale",
    "taint",
    "debug",
    "attach",
    "proxy",
    "wait",
    "diff",
    "kustomize",
    "config",
    "certificate",
];
/// Flags of `kubectl logs` that take no value, although `-p` does elsewhere.
const LOGS_SWITCHES: &[&str] = &["-p", "--previous", "-f", "--follow"];

/// Splits a command line as a shell would: whitespace, single and double quotes, backslash escapes.
pub fn split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => word.extend(chars.next()),
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Parses `kubectl …`; flags may come before the verb.
pub fn parse(line: &str) -> Option<Parsed> {
    let words = split(line);
    let mut words = words.iter().map(String::as_str).peekable();
    if words.next()? != "kubectl" {
        return None;
    }
    let mut parsed = Parsed::default();
    let mut positional: Vec<&str> = Vec::new();
    while let Some(word) = words.next() {
        if let Some(flag) = word.strip_prefix('-').filter(|_| word.len() > 1) {
            let (name, inline) = match word.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (word, None),
            };
            let _ = flag;
            let logs = positional.first() == Some(&"logs");
            let takes_value = takes_value(name) && !(logs && LOGS_SWITCHES.contains(&name));
            let value = if takes_value { inline.or_else(|| words.next()) } else { inline };
            match name {
                "-n" | "--namespace" => parsed.namespace = value.map(str::to_string),
                "-A" | "--all-namespaces" => parsed.all_namespaces = true,
                "--raw" => parsed.raw = value.map(str::to_string),
                _ => {}
            }
            continue;
        }
        positional.push(word);
    }
    let mut positional = positional.into_iter();
    let verb = positional.next()?;
    parsed.verb = verb.to_string();
    let mut rest: Vec<&str> = positional.collect();
    if SUB_VERBS.contains(&verb) && !rest.is_empty() && !(verb == "top" && rest.len() == 1 && rest[0].contains('/')) {
        let sub = rest.remove(0);
        if verb != "top" {
            parsed.verb = format!("{verb} {sub}");
        } else {
            rest.insert(0, sub);
        }
    }
    if parsed.verb.starts_with("auth") {
        return Some(parsed);
    }
    match parsed.verb.as_str() {
        // `kubectl logs POD`, `kubectl logs deploy/x`, `kubectl exec POD`: the first argument is a pod unless typed.
        "logs" | "exec" | "attach" | "port-forward" | "cp" => {
            if let Some(target) = rest.first() {
                let target = target.split(':').next().unwrap_or(target);
                parsed.objects.push(match target.split_once('/') {
                    Some((kind, name)) => (kind.to_string(), name.to_string()),
                    None => ("pod".to_string(), target.to_string()),
                });
            }
        }
        "top" => {
            if let Some((kind, names)) = rest.split_first() {
                parsed.objects.extend(object_args(kind, names));
            }
        }
        _ => {
            if let Some((first, names)) = rest.split_first() {
                if first.contains('/') {
                    for typed in rest {
                        if let Some((kind, name)) = typed.split_once('/') {
                            parsed.objects.push((kind.to_string(), name.to_string()));
                        }
                    }
                } else {
                    for kind in first.split(',') {
                        parsed.objects.extend(object_args(kind, names));
                    }
                }
            }
        }
    }
    Some(parsed)
}

fn object_args(kind: &str, names: &[&str]) -> Vec<(String, String)> {
    if names.is_empty() {
        vec![(kind.to_string(), String::new())]
    } else {
        names.iter().map(|n| (kind.to_string(), n.to_string())).collect()
    }
}

impl Parsed {
    pub fn read_only(&self) -> bool {
        READ_ONLY.contains(&self.verb.as_str())
    }

    /// Whether it shows Secrets: `get`/`describe` of secrets (by any of kubectl's names), or a raw read of them.
    pub fn reads_secrets(&self) -> bool {
        let secret = |r: &str| {
            let r = r.split('.').next().unwrap_or_default().to_ascii_lowercase();
            r == "secret" || r == "secrets"
        };
        (self.verb == "get" || self.verb == "describe") && self.objects.iter().any(|(r, _)| secret(r))
            || self.raw.as_deref().is_some_and(|raw| raw.contains("/secrets"))
    }
}

/// The kind a resource word means, as the facts name kinds (`deploy`, `deployments.apps` → `Deployment`), from the one
/// table of resources; `None` for kinds kubechat does not read.
fn kind_of(resource: &str) -> Option<&'static str> {
    let resource = resource.split('.').next().unwrap_or_default();
    match crate::resources::by_name(resource) {
        Some(found) => Some(found.kind),
        // Read by no one, named in answers often: a PVC's class.
        None if matches!(resource.to_ascii_lowercase().as_str(), "storageclass" | "storageclasses" | "sc") => {
            Some("StorageClass")
        }
        None => None,
    }
}

/// The names of what the facts hold, per kind.
fn known(facts: &Facts) -> BTreeSet<(&'static str, String)> {
    let mut known = BTreeSet::new();
    let mut add =
        |kind: &'static str, names: Vec<Option<String>>| known.extend(names.into_iter().flatten().map(|n| (kind, n)));
    add("Pod", facts.pods.iter().map(|o| o.metadata.name.clone()).collect());
    add("Deployment", facts.deployments.iter().map(|o| o.metadata.name.clone()).collect());
    add("ReplicaSet", facts.replicasets.iter().map(|o| o.metadata.name.clone()).collect());
    add("StatefulSet", facts.statefulsets.iter().map(|o| o.metadata.name.clone()).collect());
    add("DaemonSet", facts.daemonsets.iter().map(|o| o.metadata.name.clone()).collect());
    add("Job", facts.jobs.iter().map(|o| o.metadata.name.clone()).collect());
    add("CronJob", facts.cronjobs.iter().map(|o| o.metadata.name.clone()).collect());
    add("Service", facts.services.iter().map(|o| o.metadata.name.clone()).collect());
    add("Endpoints", facts.endpoints.iter().map(|o| o.metadata.name.clone()).collect());
    add("PersistentVolumeClaim", facts.pvcs.iter().map(|o| o.metadata.name.clone()).collect());
    add("Node", facts.nodes.iter().map(|o| o.metadata.name.clone()).collect());
    add("Event", facts.events.iter().map(|o| o.metadata.name.clone()).collect());
    known.insert(("Namespace", facts.namespace.clone()));
    known
}

/// What a command is checked against: the namespace read and the names of what it held. Small, so an answer can
/// let go of the facts while it waits for the model.
#[derive(Debug, Clone, Default)]
pub struct Grounds {
    namespace: String,
    known: BTreeSet<(&'static str, String)>,
}

impl Grounds {
    pub fn of(facts: &Facts) -> Grounds {
        Grounds { namespace: facts.namespace.clone(), known: known(facts) }
    }
}

/// Checks one line against the facts: its label, why, and whether what it names was read.
pub fn check(line: &str, facts: &Facts) -> Command {
    check_against(line, &Grounds::of(facts))
}

/// Checks one line against what was read.
pub fn check_against(line: &str, grounds: &Grounds) -> Command {
    let command = line.trim().to_string();
    let parsed_shell = shell(&command);
    let mut hazards = parsed_shell.hazards;
    let invocations: Vec<String> = parsed_shell.commands.iter().filter_map(|c| kubectl_in(c, &mut hazards)).collect();
    let parsed: Vec<Parsed> = invocations.iter().filter_map(|c| parse(c)).collect();
    if parsed.is_empty() {
        return Command {
            command,
            read_only: false,
            label: Label::Review,
            sensitive: false,
            grounded: false,
            note: Some("not a kubectl command kubechat can read; review it before running".into()),
        };
    }
    // Flags that point kubectl elsewhere, and other programs the line runs.
    for words in invocations.iter().map(|c| split(c)) {
        for word in &words {
            let flag = word.split('=').next().unwrap_or_default();
            if TARGET_FLAGS.contains(&flag) {
                let h = format!("points kubectl at another cluster or identity ({flag})");
                if !hazards.contains(&h) {
                    hazards.push(h);
                }
            }
        }
    }
    let others = parsed_shell
        .commands
        .iter()
        .filter(|c| split(c).first().is_some_and(|w| !SHELL_WORDS.contains(&w.as_str())))
        .filter(|c| kubectl_in(c, &mut Vec::new()).is_none())
        .count();
    if others > 0 && !hazards.iter().any(|h| h.starts_with("pipes")) {
        hazards.push(format!("runs {others} other command(s) besides kubectl"));
    }
    let mutating: Vec<&str> = parsed.iter().filter(|p| !p.read_only()).map(|p| p.verb.as_str()).collect();
    let sensitive = parsed.iter().any(Parsed::reads_secrets);
    let label = if !mutating.is_empty() {
        Label::Mutating
    } else if !hazards.is_empty() {
        Label::Review
    } else {
        Label::ReadOnly
    };
    let (known, namespace) = (&grounds.known, grounds.namespace.as_str());
    let mut problems = Vec::new();
    for p in &parsed {
        if let Some(ns) = p.namespace.as_deref().filter(|ns| *ns != namespace) {
            problems.push(format!("targets namespace {ns}, but kubechat read {namespace}"));
        }
        for (resource, name) in &p.objects {
            match kind_of(resource) {
                None if p.verb != "explain" => problems.push(format!("names {resource}, which kubechat does not read")),
                Some(kind) if !name.is_empty() && kind != "StorageClass" && !known.contains(&(kind, name.clone())) => {
                    problems.push(format!("{} {name} was not seen in namespace {}", kind.to_lowercase(), namespace))
                }
                _ => {}
            }
        }
    }
    problems.dedup();
    let grounded = problems.is_empty();
    let mut notes = Vec::new();
    if !mutating.is_empty() {
        let verbs: Vec<String> = mutating.iter().map(|v| format!("`kubectl {v}`")).collect();
        notes.push(format!(
            "mutating: {} changes the cluster; kubechat never runs it, review it before you do",
            verbs.join(", ")
        ));
    }
    if !hazards.is_empty() {
        notes.push(format!(
            "review: not one plain kubectl command, it {}; kubechat vouches only for a single kubectl command against the cluster it read",
            hazards.join(", ")
        ));
    }
    if sensitive {
        notes.push("sensitive: it shows Secret values, which kubechat itself never reads".to_string());
    }
    if !grounded {
        notes.push(format!("not grounded: {}", problems.join("; ")));
    }
    Command {
        command,
        read_only: label == Label::ReadOnly,
        label,
        sensitive,
        grounded,
        note: (!notes.is_empty()).then(|| notes.join(". ")),
    }
}

/// Every command line in a text that runs kubectl: a line of a code block, an inline code span, a line of its own
/// (after `$`, `-` or `*`), each taken whole so that its label covers what the shell does around kubectl; and in
/// prose, from `kubectl` to the end of the sentence.
pub fn extract(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut push = |candidate: &str| {
        let command = candidate.trim().trim_end_matches(['.', ',']).trim();
        if holds_kubectl(command) && !found.iter().any(|c| c == command) {
            found.push(command.to_string());
        }
    };
    let mut fenced = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let bare = trimmed.trim_start_matches(['$', '>', '-', '*', ' ', '\t']);
        if fenced {
            push(bare);
            continue;
        }
        let spans: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
        if spans.iter().any(|span| holds_kubectl(span)) {
            spans.into_iter().for_each(&mut push);
            continue;
        }
        // A line of its own, unless it is prose that mentions a command midway ("Run kubectl … to see").
        let first = split(bare).into_iter().next().unwrap_or_default();
        let command_word =
            first == "kubectl" || first == "sudo" || first.contains('=') || SHELL_WORDS.contains(&first.as_str());
        if command_word && holds_kubectl(bare) {
            push(bare);
            continue;
        }
        if let Some(at) = line.find("kubectl ") {
            let sentence = &line[at..];
            let end = sentence.find(". ").unwrap_or(sentence.len());
            push(&sentence[..end]);
        }
    }
    found
}

/// The commands of the findings and of the answer, each checked; duplicates once.
pub fn suggested(findings: &[Finding], answer: &str, grounds: &Grounds) -> Vec<Command> {
    let mut lines: Vec<String> = findings.iter().flat_map(|f| f.commands.iter().cloned()).collect();
    for line in extract(answer) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines.iter().map(|line| check_against(line, grounds)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        let pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "web-1", "namespace": "shop"}})).unwrap();
        let deployment =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "web", "namespace": "shop"}})).unwrap();
        Facts { namespace: "shop".into(), pods: vec![pod], deployments: vec![deployment], ..Facts::default() }
    }

    #[test]
    fn commands_are_parsed_with_flags_anywhere() {
        let p = parse("kubectl -n shop logs web-1 -c app --previous").unwrap();
        assert_eq!((p.verb.as_str(), p.namespace.as_deref()), ("logs", Some("shop")));
        assert_eq!(p.objects, [("pod".to_string(), "web-1".to_string())]);
        let p = parse("kubectl rollout status deployment/web -n shop --timeout=10s").unwrap();
        assert_eq!(p.verb, "rollout status");
        assert_eq!(p.objects, [("deployment".to_string(), "web".to_string())]);
        let p = parse("kubectl get pod -n shop web-1 -o jsonpath='{.spec.imagePullSecrets}'").unwrap();
        assert_eq!(p.objects, [("pod".to_string(), "web-1".to_string())]);
        assert_eq!(split(r#"kubectl get pods -l "app in (a, b)""#), ["kubectl", "get", "pods", "-l", "app in (a, b)"]);
    }

    #[test]
    fn verbs_are_classed_read_only_or_mutating() {
        let facts = facts();
        for line in [
            "kubectl get pods -n shop",
            "kubectl describe deploy web -n shop",
            "kubectl rollout history deployment/web -n shop",
            "kubectl auth can-i list pods",
        ] {
            assert!(check(line, &facts).read_only, "{line}");
        }
        for line in [
            "kubectl delete pod web-1 -n shop",
            "kubectl rollout restart deployment/web -n shop",
            "kubectl rollout undo deployment/web -n shop",
            "kubectl scale deploy web --replicas=0 -n shop",
            "kubectl exec -it web-1 -n shop -- sh",
            "kubectl apply -f fix.yaml",
            "kubectl set image deployment/web app=web:2 -n shop",
            "kubectl -n shop edit deploy web",
            "kubectl cordon worker-1",
        ] {
            let command = check(line, &facts);
            assert!(!command.read_only, "{line}");
            assert!(command.note.as_deref().unwrap().starts_with("mutating:"), "{line}");
        }
    }

    #[test]
    fn names_are_checked_against_the_facts() {
        let facts = facts();
        assert!(check("kubectl logs -n shop web-1", &facts).grounded);
        let invented = check("kubectl describe pod web-2 -n shop", &facts);
        assert!(!invented.grounded);
        assert_eq!(invented.note.as_deref(), Some("not grounded: pod web-2 was not seen in namespace shop"));
        assert!(!check("kubectl get pods -n payments", &facts).grounded);
        assert!(!check("kubectl get secret db -n shop", &facts).grounded);
    }

    #[test]
    fn shell_around_kubectl_is_never_vouched_for() {
        let facts = facts();
        let cases: &[(&str, Label, &str)] = &[
            ("kubectl get pods -n shop && kubectl delete ns shop", Label::Mutating, "`kubectl delete`"),
            ("kubectl get pods -n shop; kubectl delete ns shop", Label::Mutating, "runs several commands (;)"),
            ("kubectl get pods -n shop || kubectl get pods -A", Label::Review, "chains commands (||)"),
            ("kubectl get pods -n shop | grep Crash", Label::Review, "pipes its output into grep"),
            ("kubectl get pods -n shop -o name | xargs kubectl delete", Label::Mutating, "pipes its output into xargs"),
            ("kubectl logs $(kubectl get pods -n shop -o name | head -1) -n shop", Label::Review, "substitutes"),
            ("kubectl logs `kubectl get pods -n shop -o name` -n shop", Label::Review, "substitutes"),
            ("kubectl get pods -n shop -o yaml > pods.yaml", Label::Review, "redirects output to a file (>)"),
            ("kubectl get pods -n shop 2>/dev/null", Label::Review, "redirects output to a file (>)"),
            ("kubectl apply -n shop -f - < fix.yaml", Label::Mutating, "reads input from a file (<)"),
            ("kubectl get pods -n shop &", Label::Review, "in the background"),
            ("sudo kubectl get pods -n shop", Label::Review, "runs as another user (sudo)"),
            ("sudo -u admin kubectl delete pod web-1 -n shop", Label::Mutating, "runs as another user (sudo)"),
            ("KUBECONFIG=/tmp/prod.conf kubectl get pods -n shop", Label::Review, "sets KUBECONFIG before it"),
            (
                "for p in $(kubectl get pods -n shop -o name); do kubectl delete $p -n shop; done",
                Label::Mutating,
                "runs in a shell `for`",
            ),
            ("kubectl get pods -n shop --server https://10.0.0.1:6443", Label::Review, "(--server)"),
            ("kubectl get pods -n shop -s https://evil.example.com", Label::Review, "(-s)"),
            ("kubectl --kubeconfig ~/.kube/prod get pods -n shop", Label::Review, "(--kubeconfig)"),
            ("kubectl get pods -n shop --context prod", Label::Review, "(--context)"),
            ("kubectl get pods -n shop --token=eyJhbGciOi", Label::Review, "(--token)"),
            ("kubectl get pods -n shop --as=system:admin", Label::Review, "(--as)"),
            ("kubectl get pods -n shop --as-group=system:masters", Label::Review, "(--as-group)"),
            ("kubectl get pods -n shop --insecure-skip-tls-verify", Label::Review, "(--insecure-skip-tls-verify)"),
            // Quoted operators are arguments, not shell.
            ("kubectl get pods -n shop -l 'app in (web, api)'", Label::ReadOnly, ""),
            ("kubectl get pods -n shop -o jsonpath='{.items[*].metadata.name}'", Label::ReadOnly, ""),
        ];
        for (line, label, why) in cases {
            let command = check(line, &facts);
            assert_eq!(command.label, *label, "{line}: {:?}", command.note);
            assert_eq!(command.read_only, *label == Label::ReadOnly, "{line}");
            let note = command.note.unwrap_or_default();
            assert!(note.contains(why), "{line}: {note}");
        }
    }

    #[test]
    fn reading_secrets_is_sensitive() {
        let facts = facts();
        for line in [
            "kubectl get secret db -n shop -o yaml",
            "kubectl get secrets -n shop",
            "kubectl describe secret db -n shop",
            "kubectl get secrets.v1 -n shop -o jsonpath='{.data.password}'",
            "kubectl get --raw /api/v1/namespaces/shop/secrets/db",
        ] {
            let command = check(line, &facts);
            assert!(command.sensitive, "{line}");
            assert!(command.note.unwrap().contains("sensitive: it shows Secret values"), "{line}");
        }
        assert!(!check("kubectl get pods -n shop", &facts).sensitive);
    }

    #[test]
    fn kubectl_is_found_wherever_a_line_runs_it() {
        let answer = "Try:\n```sh\nsudo kubectl delete pod web-1 -n shop\nKUBECONFIG=prod.conf kubectl get pods\nfor p in $(kubectl get pods -o name); do kubectl delete $p; done\n```\n- `kubectl get pods -n shop | grep web`\nIf that fails, run kubectl rollout restart deployment/web -n shop. Then wait.\nkubectl is great.";
        assert_eq!(
            extract(answer),
            [
                "sudo kubectl delete pod web-1 -n shop",
                "KUBECONFIG=prod.conf kubectl get pods",
                "for p in $(kubectl get pods -o name); do kubectl delete $p; done",
                "kubectl get pods -n shop | grep web",
                "kubectl rollout restart deployment/web -n shop",
            ]
        );
        let facts = facts();
        let labels: Vec<Label> = extract(answer).iter().map(|c| check(c, &facts).label).collect();
        assert_eq!(labels, [Label::Mutating, Label::Review, Label::Mutating, Label::Review, Label::Mutating]);
    }

    #[test]
    fn commands_are_found_in_markdown() {
        let answer = "Check the logs:\n```sh\nkubectl logs -n shop web-1 --previous\n```\nThen run `kubectl delete pod web-1 -n shop`.\nkubectl is great.";
        assert_eq!(extract(answer), ["kubectl logs -n shop web-1 --previous", "kubectl delete pod web-1 -n shop"]);
    }
}
