//! Suggested kubectl commands, checked and never run: each is parsed, classed read-only or mutating, and checked
//! against the facts, so a command that would change the cluster or names something kubechat never saw comes with a
//! warning. kubechat executes nothing, ever.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::facts::Facts;
use crate::findings::Finding;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Command {
    pub command: String,
    pub read_only: bool,
    /// Every object it names was read by kubechat (in the namespace it targets).
    pub grounded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
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
/// Flags that take a value, so the value is not mistaken for a verb or a name.
const VALUED_FLAGS: &[&str] = &[
    "-n",
    "--namespace",
    "-c",
    "--container",
    "-l",
    "--selector",
    "-o",
    "--output",
    "--context",
    "--cluster",
    "--user",
    "--kubeconfig",
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
    "--as",
    "--request-timeout",
    "--server",
    "-s",
    "--token",
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
            let takes_value = VALUED_FLAGS.contains(&name) && !(logs && LOGS_SWITCHES.contains(&name));
            let value = if takes_value { inline.or_else(|| words.next()) } else { inline };
            match name {
                "-n" | "--namespace" => parsed.namespace = value.map(str::to_string),
                "-A" | "--all-namespaces" => parsed.all_namespaces = true,
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

/// Checks one command against the facts.
pub fn check(line: &str, facts: &Facts) -> Command {
    let command = line.trim().to_string();
    let Some(parsed) = parse(&command) else {
        return Command {
            command,
            read_only: false,
            grounded: false,
            note: Some("not a kubectl command kubechat can read; review it before running".into()),
        };
    };
    let read_only = parsed.read_only();
    let known = known(facts);
    let mut problems = Vec::new();
    if let Some(ns) = parsed.namespace.as_deref().filter(|ns| *ns != facts.namespace) {
        problems.push(format!("targets namespace {ns}, but kubechat read {}", facts.namespace));
    }
    for (resource, name) in &parsed.objects {
        match kind_of(resource) {
            None if parsed.verb != "explain" => {
                problems.push(format!("names {resource}, which kubechat does not read"))
            }
            Some(kind) if !name.is_empty() && kind != "StorageClass" && !known.contains(&(kind, name.clone())) => {
                problems.push(format!("{} {name} was not seen in namespace {}", kind.to_lowercase(), facts.namespace))
            }
            _ => {}
        }
    }
    let grounded = problems.is_empty();
    let mut notes = Vec::new();
    if !read_only {
        notes.push(format!(
            "mutating: `kubectl {}` changes the cluster; kubechat never runs it, review it before you do",
            parsed.verb
        ));
    }
    if !grounded {
        notes.push(format!("not grounded: {}", problems.join("; ")));
    }
    Command { command, read_only, grounded, note: (!notes.is_empty()).then(|| notes.join(". ")) }
}

/// Every `kubectl …` line in a text: in code blocks, inline code, or on a line of its own.
pub fn extract(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let mut rest = line;
        while let Some(start) = rest.find("kubectl ") {
            let before = &rest[..start];
            let candidate = &rest[start..];
            let in_code = before.ends_with('`');
            let end = if in_code { candidate.find('`').unwrap_or(candidate.len()) } else { candidate.len() };
            let command = candidate[..end].trim().trim_end_matches(['.', ',', ';']).trim();
            let at_line_start = before.trim_start_matches(['$', '#', '>', '-', '*', ' ', '\t']).is_empty();
            let is_kubectl =
                parse(command).is_some_and(|p| VERBS.contains(&p.verb.split(' ').next().unwrap_or_default()));
            if (in_code || at_line_start) && is_kubectl && !found.iter().any(|c| c == command) {
                found.push(command.to_string());
            }
            rest = &candidate[end.min(candidate.len()).max(1)..];
        }
    }
    found
}

/// The commands of the findings and of the answer, each checked; duplicates once.
pub fn suggested(findings: &[Finding], answer: &str, facts: &Facts) -> Vec<Command> {
    let mut lines: Vec<String> = findings.iter().flat_map(|f| f.commands.iter().cloned()).collect();
    for line in extract(answer) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    lines.iter().map(|line| check(line, facts)).collect()
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
    fn commands_are_found_in_markdown() {
        let answer = "Check the logs:\n```sh\nkubectl logs -n shop web-1 --previous\n```\nThen run `kubectl delete pod web-1 -n shop`.\nkubectl is great.";
        assert_eq!(extract(answer), ["kubectl logs -n shop web-1 --previous", "kubectl delete pod web-1 -n shop"]);
    }
}
