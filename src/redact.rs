//! Redaction: secrets are replaced by `[REDACTED:<kind>]` before anything reaches the model or a chat.
//!
//! [`pods`], [`events`] and [`facts`] clean what the reader gathered (secret-looking env values, logs, event and
//! status messages, annotations); [`text`] cleans any text, and runs again over the context, the prompt and the
//! answer as a second line of defence. The rules are listed in `docs/redaction.md`.

use std::borrow::Cow;
use std::sync::{LazyLock, OnceLock};

use regex::{Regex, RegexSet};

use crate::facts::Facts;

/// One rule: what it finds, and what it puts in place of the match (`${keep}` keeps the name before a secret value).
struct Rule {
    pattern: &'static str,
    replacement: &'static str,
}

/// The rules, each documented in `docs/redaction.md` (same order). Their ideas come from the rule sets secret scanners
/// maintain (vendor prefixes, key/value forms, connection strings, key blocks); the patterns are kubechat's own. No rule
/// matches a `[REDACTED:…]` marker, so redacting twice changes nothing.
const RULES: &[Rule] = &[
    // Key blocks: PEM and PGP private keys, with their END line, or cut off without it (the key's lines up to the
    // first line that is not base64 or a header), with real or `\n`-escaped newlines.
    Rule {
        pattern: r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|(?:(?:\s|\\n)*(?:[A-Za-z-]+: [^\n\\]*|[A-Za-z0-9+/=]{4,}))*)",
        replacement: "[REDACTED:private-key]",
    },
    Rule { pattern: r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}", replacement: "[REDACTED:jwt]" },
    Rule {
        pattern: r#"(?i)(?P<keep>\b(?:proxy-)?authorization["']?\s*[:=]\s*["']?(?:bearer|basic|token|digest)\s+)[^\s"',;]+"#,
        replacement: "${keep}[REDACTED:authorization]",
    },
    Rule {
        pattern: r"(?P<keep>\b(?i:bearer)\s+)[A-Za-z0-9._~+/-]{16,}=*",
        replacement: "${keep}[REDACTED:authorization]",
    },
    // URLs with a password: any user, an empty one too (`redis://:pw@`), and a `/` in the password, but not a
    // `host:port/path@` (a port is digits).
    Rule {
        pattern: r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\[\]]*:)(?:[^\s@/\[\]]+|[^\s@/\[\]]*[^\s@/\d\[\]][^\s@/\[\]]*/[^\s@\[\]]*)@",
        replacement: "${keep}[REDACTED:password]@",
    },
    // Go MySQL DSNs: `user:password@tcp(host:3306)/db`.
    Rule {
        pattern: r"(?P<keep>\b[A-Za-z0-9_.-]+:)[^\s@:/\[\]]+(?P<at>@(?:tcp|tcp6|udp|unix)\()",
        replacement: "${keep}[REDACTED:password]${at}",
    },
    // Credentials on a command line: `curl -u user:password`, `--user user:password`.
    Rule {
        pattern: r#"(?P<keep>(?:\s|^)(?:-u|--user|--proxy-user)(?:\s+|=)["']?[^\s:"'\[]+:)[^\s"'\[]+"#,
        replacement: "${keep}[REDACTED:password]",
    },
    // Flags that take a secret: `--password X`, `--db-password=X`, `--token X`, `--client-secret X`.
    Rule {
        pattern: r#"(?i)(?P<keep>(?:\s|^)--?[a-z0-9-]*(?:password|passwd|passphrase|token|secret|api-?key|access-key|private-key|credentials?)[a-z0-9-]*(?:\s+|=))(?:"[^"\n]*"|'[^'\n]*'|[^\s"'\[-][^\s"'\[]*)"#,
        replacement: "${keep}[REDACTED:secret]",
    },
    // MySQL and MariaDB clients take the password glued to `-p`; sshpass after `-p`.
    Rule {
        pattern: r"(?P<keep>\b(?:mysql|mysqldump|mysqladmin|mariadb|mariadb-dump)\b[^\n]*?\s-p|\bsshpass\b[^\n]*?\s-p\s*)[^\s\[-][^\s]*",
        replacement: "${keep}[REDACTED:password]",
    },
    // Docker config `"auth": "base64(user:password)"` and `"identitytoken"`; npm's `_auth=`.
    Rule {
        pattern: r#"(?P<keep>"(?:auth|identitytoken|registrytoken)"\s*:\s*")[^"\[]+"#,
        replacement: "${keep}[REDACTED:registry-auth]",
    },
    Rule { pattern: r"(?P<keep>(?:^|[\s:/])_auth\s*=\s*)[^\s\[]+", replacement: "${keep}[REDACTED:registry-auth]" },
    // Azure: storage connection strings' `AccountKey=` and `SharedAccessKey=`, and SAS tokens' `sig=`.
    Rule {
        pattern: r"(?i)(?P<keep>\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)\s*=\s*)[^;\s\[]+",
        replacement: "${keep}[REDACTED:azure-key]",
    },
    Rule { pattern: r"(?P<keep>[?&]sig=)[^&\s\[]+", replacement: "${keep}[REDACTED:azure-sas]" },
    // Vendor tokens, known by their prefixes.
    Rule { pattern: r"\b(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[0-9A-Z]{16}\b", replacement: "[REDACTED:aws-access-key-id]" },
    Rule {
        pattern: r#"(?i)(?P<keep>aws_?secret_?(?:access_?)?key["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{40,}"#,
        replacement: "${keep}[REDACTED:aws-secret-access-key]",
    },
    Rule { pattern: r"\bxox[abposr]-[A-Za-z0-9-]{10,}", replacement: "[REDACTED:slack-token]" },
    Rule { pattern: r"\bxapp-\d-[A-Za-z0-9-]{10,}", replacement: "[REDACTED:slack-token]" },
    Rule {
        pattern: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+",
        replacement: "[REDACTED:slack-webhook]",
    },
    Rule { pattern: r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", replacement: "[REDACTED:github-token]" },
    Rule { pattern: r"\bgithub_pat_[A-Za-z0-9_]{22,}", replacement: "[REDACTED:github-token]" },
    Rule {
        pattern: r"\bgl(?:pat|dt|rt|ptt|ft|imt|agent|oas|cbt)-[0-9A-Za-z_-]{20,}",
        replacement: "[REDACTED:gitlab-token]",
    },
    Rule { pattern: r"\bAIza[0-9A-Za-z_-]{35}\b", replacement: "[REDACTED:gcp-api-key]" },
    Rule { pattern: r"\bya29\.[0-9A-Za-z_-]{20,}", replacement: "[REDACTED:gcp-token]" },
    Rule {
        pattern: r#"(?P<keep>"private_key_id"\s*:\s*")[0-9a-f]{40}"#,
        replacement: "${keep}[REDACTED:gcp-private-key-id]",
    },
    Rule { pattern: r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}", replacement: "[REDACTED:stripe-key]" },
    Rule {
        pattern: r"\bsk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d\d-)?[A-Za-z0-9_-]{20,}",
        replacement: "[REDACTED:api-key]",
    },
    Rule { pattern: r"\bnpm_[A-Za-z0-9]{36}\b", replacement: "[REDACTED:npm-token]" },
    Rule { pattern: r"\bpypi-AgE[A-Za-z0-9_-]{50,}", replacement: "[REDACTED:pypi-token]" },
    Rule { pattern: r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}", replacement: "[REDACTED:sendgrid-key]" },
    Rule { pattern: r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}", replacement: "[REDACTED:vault-token]" },
    Rule { pattern: r"\bdckr_pat_[A-Za-z0-9_-]{20,}", replacement: "[REDACTED:docker-token]" },
    Rule { pattern: r"\bhf_[A-Za-z0-9]{30,}\b", replacement: "[REDACTED:huggingface-token]" },
    Rule { pattern: r"\bdop_v1_[a-f0-9]{64}\b", replacement: "[REDACTED:digitalocean-token]" },
    Rule { pattern: r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b", replacement: "[REDACTED:shopify-token]" },
    Rule { pattern: r"\bglsa_[A-Za-z0-9]{32}_[a-f0-9]{8}\b", replacement: "[REDACTED:grafana-token]" },
    Rule { pattern: r"\bkey-[0-9a-f]{32}\b", replacement: "[REDACTED:mailgun-key]" },
    Rule { pattern: r"\bSK[0-9a-fA-F]{32}\b", replacement: "[REDACTED:twilio-key]" },
    // Key/value pairs whose name says secret: `password=x`, `password: x`, `"apiKey": "x"`, `DB_PASS=x`,
    // kubeconfig's `client-key-data: …`, in env, YAML, JSON, INI and logfmt.
    Rule {
        pattern: r#"(?i)(?P<keep>\b[A-Za-z0-9_.-]*(?:password|passwd|pwd|passphrase|token|secret|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?key[_-]?data|credentials?|_pass\b|_pw\b)[A-Za-z0-9_.-]*["']?\s*[=:]\s*)(?:"[^"\n]*"|'[^'\n]*'|[^\s,;"'\[\]{}]+)"#,
        replacement: "${keep}[REDACTED:secret]",
    },
];

/// The shortest run of base64 that is decoded to look for a secret inside.
const BASE64_MIN: usize = 16;
/// Entropy (bits per character) above which a long token after a secret-sounding word is taken for a secret.
const ENTROPY_MIN: f64 = 3.5;

static BASE64: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/]{16,}={0,2}").expect("compiles"));
/// A long token right after a word that says secret (`key 8f7a…`, `token is Zm9v…`), where no `=` or `:` made it a
/// pair the rules above would see. Spaces are spelled out rather than "whitespace but a line break" (`[^\S\n]`):
/// that class, case-folded over all of Unicode, took a tenth of a second to compile.
static NEAR_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?P<keep>\b(?:key|token|secret|password|passwd|credential|apikey|api key|signature)s?\b[\t\x0B\x0C\r \u{A0}]+(?:is[\t\x0B\x0C\r \u{A0}]+|of[\t\x0B\x0C\r \u{A0}]+|was[\t\x0B\x0C\r \u{A0}]+)?["'`]?)(?P<value>[A-Za-z0-9+/_=.-]{20,})"#)
        .expect("compiles")
});

struct Compiled {
    set: RegexSet,
    /// Each rule's own regex, compiled the first time the set says it matched: compiling them all up front cost a
    /// tenth of a second, at every start, for rules most text never needs.
    rules: Vec<OnceLock<Regex>>,
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| Compiled {
    set: RegexSet::new(RULES.iter().map(|r| r.pattern)).expect("redaction rules compile"),
    rules: RULES.iter().map(|_| OnceLock::new()).collect(),
});

/// Text with every secret the rules find replaced, then secrets wrapped in base64, then long random tokens right
/// after a secret-sounding word.
pub fn text(input: &str) -> Cow<'_, str> {
    let compiled = &*COMPILED;
    let matched = compiled.set.matches(input);
    let mut out = Cow::Borrowed(input);
    for i in matched.iter() {
        let rule = &RULES[i];
        let regex = compiled.rules[i].get_or_init(|| Regex::new(rule.pattern).expect("redaction rule compiles"));
        let replacement = rule.replacement;
        // No rule matches a marker, so a secret is never redacted twice ("token=[REDACTED:…]" stays as it is).
        if let Cow::Owned(replaced) = regex.replace_all(&out, replacement) {
            out = Cow::Owned(replaced);
        }
    }
    // These two replace through a closure, which gives a new string for every match even when it is kept as it was:
    // only a real change counts, so that text with nothing to redact stays borrowed (and its object is not rebuilt).
    for pass in [wrapped, near_name] {
        if let Cow::Owned(replaced) = pass(&out)
            && replaced != *out
        {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// Runs of base64 that decode to text holding a secret (`cGFzc3dvcmQ9aHVudGVyMg==` is `password=hunter2`).
fn wrapped(input: &str) -> Cow<'_, str> {
    use base64::Engine as _;
    BASE64.replace_all(input, |c: &regex::Captures<'_>| {
        let run = &c[0];
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(run)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(run.trim_end_matches('=')));
        match decoded.ok().and_then(|d| String::from_utf8(d).ok()) {
            Some(plain) if run.len() >= BASE64_MIN && secret_inside(&plain) => "[REDACTED:base64]".to_string(),
            _ => run.to_string(),
        }
    })
}

/// Whether decoded text holds something a rule would redact (one level deep: no base64 in base64).
fn secret_inside(plain: &str) -> bool {
    COMPILED.set.is_match(plain) || NEAR_NAME.captures_iter(plain).any(|c| random(&c["value"]))
}

fn near_name(input: &str) -> Cow<'_, str> {
    NEAR_NAME.replace_all(input, |c: &regex::Captures<'_>| {
        if random(&c["value"]) { format!("{}[REDACTED:high-entropy]", &c["keep"]) } else { c[0].to_string() }
    })
}

/// Whether a token looks random: Shannon entropy above [`ENTROPY_MIN`] bits per character, with digits and letters
/// mixed (so a long word or a version string is not).
fn random(token: &str) -> bool {
    let mut counts = std::collections::HashMap::new();
    for c in token.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = token.chars().count() as f64;
    let entropy: f64 = counts.values().map(|&k| k as f64 / n).map(|p| -p * p.log2()).sum();
    entropy >= ENTROPY_MIN
        && token.chars().any(|c| c.is_ascii_digit())
        && token.chars().any(|c| c.is_ascii_alphabetic())
}

fn in_place(value: &mut String) {
    if let Cow::Owned(clean) = text(value) {
        *value = clean;
    }
}

/// Whether an environment variable's name says it holds a secret.
pub fn secret_name(name: &str) -> bool {
    let upper = name.to_uppercase();
    ["PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY", "CREDENTIAL", "PRIVATE", "AUTH", "DSN"]
        .iter()
        .any(|w| upper.contains(w))
}

/// Cleans everything the reader gathered, in place: every string of every object (names, labels, annotations,
/// specs, status and condition messages), after the values of env vars whose names say secret, and the logs and gaps.
/// Pods and events are cleaned by [`pods`] and [`events`]: the reader runs those as each list is read, on the list's
/// own task, and this for the rest.
pub fn facts(facts: &mut Facts) {
    let applied = |meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        if let Some(a) = meta.annotations.as_mut() {
            a.remove(LAST_APPLIED);
        }
    };
    facts.deployments.iter_mut().for_each(|o| applied(&mut o.metadata));
    facts.statefulsets.iter_mut().for_each(|o| applied(&mut o.metadata));
    facts.daemonsets.iter_mut().for_each(|o| applied(&mut o.metadata));
    objects(&mut facts.deployments);
    objects(&mut facts.replicasets);
    objects(&mut facts.statefulsets);
    objects(&mut facts.daemonsets);
    objects(&mut facts.jobs);
    objects(&mut facts.cronjobs);
    objects(&mut facts.services);
    objects(&mut facts.endpoints);
    objects(&mut facts.pvcs);
    objects(&mut facts.quotas);
    objects(&mut facts.hpas);
    objects(&mut facts.ingresses);
    objects(&mut facts.pdbs);
    objects(&mut facts.limit_ranges);
    objects(&mut facts.network_policies);
    objects(&mut facts.ingress_classes);
    objects(&mut facts.nodes);
    for log in &mut facts.logs {
        match &mut log.text {
            Ok(text) | Err(text) => in_place(text),
        }
    }
    for gap in &mut facts.gaps {
        in_place(&mut gap.message);
    }
}

/// The annotation holding a full copy of the object, env values included, that nothing needs: dropped as objects are
/// read ([`crate::cluster`]), loaded ([`crate::dump`]) and cleaned.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the value of an env var whose name says secret becomes.
const ENV_REDACTED: &str = "[REDACTED:env]";

/// Cleans pods in place: the values of env vars whose names say secret; then every string of the pods whose details
/// can be quoted (those with a problem, or on their way out) and, of the others, which are counted rather than
/// quoted, what may hold a secret: annotations, env values, args and commands, status and condition messages.
/// Walking 4,000 healthy pods whole would double the read.
pub fn pods(pods: &mut [k8s_openapi::api::core::v1::Pod]) {
    for pod in pods.iter_mut() {
        if let Some(spec) = &mut pod.spec {
            let containers = spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten());
            for env in containers.flat_map(|c| c.env.iter_mut().flatten()) {
                if secret_name(&env.name) && env.value.is_some() {
                    env.value = Some(ENV_REDACTED.to_string());
                }
            }
        }
        if let Some(a) = pod.metadata.annotations.as_mut() {
            a.remove(LAST_APPLIED);
        }
        if crate::facts::is_problem_pod(pod) || pod.metadata.deletion_timestamp.is_some() {
            objects(std::slice::from_mut(pod));
        } else {
            healthy_pod(pod);
        }
    }
}

/// Cleans events in place. An event's only free text is its message (the rest the API server and controllers
/// write): 12,000 events are cleaned field by field rather than walked whole.
pub fn events(events: &mut [k8s_openapi::api::core::v1::Event]) {
    for event in events {
        if let Some(message) = &mut event.message {
            in_place(message);
        }
        for value in event.metadata.annotations.iter_mut().flat_map(|a| a.values_mut()) {
            in_place(value);
        }
    }
}

/// What of a healthy pod may hold a secret, redacted in place.
fn healthy_pod(pod: &mut k8s_openapi::api::core::v1::Pod) {
    for value in pod.metadata.annotations.iter_mut().flat_map(|a| a.values_mut()) {
        in_place(value);
    }
    if let Some(spec) = &mut pod.spec {
        let containers = spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten());
        for container in containers {
            for value in container.env.iter_mut().flatten().filter_map(|e| e.value.as_mut()) {
                in_place(value);
            }
            for arg in container.args.iter_mut().flatten().chain(container.command.iter_mut().flatten()) {
                in_place(arg);
            }
        }
    }
    if let Some(status) = &mut pod.status {
        status.message.iter_mut().for_each(in_place);
        for c in status.conditions.iter_mut().flatten() {
            c.message.iter_mut().for_each(in_place);
        }
        let statuses =
            status.container_statuses.iter_mut().flatten().chain(status.init_container_statuses.iter_mut().flatten());
        for state in statuses.flat_map(|c| [c.state.as_mut(), c.last_state.as_mut()]).flatten() {
            if let Some(w) = &mut state.waiting {
                w.message.iter_mut().for_each(in_place);
            }
            if let Some(t) = &mut state.terminated {
                t.message.iter_mut().for_each(in_place);
            }
        }
    }
}

/// Every string of each object redacted; an object is rebuilt only when one of its strings changes.
fn objects<T: serde::Serialize + serde::de::DeserializeOwned>(objects: &mut [T]) {
    for object in objects {
        let Ok(mut value) = serde_json::to_value(&*object) else { continue };
        if strings(&mut value) {
            match serde_json::from_value(value) {
                Ok(clean) => *object = clean,
                // A redacted string in a field of another type cannot be: the rules only write strings.
                Err(e) => tracing::warn!("a redacted object no longer reads: {e}"),
            }
        }
    }
}

/// Redacts every string in a JSON value (map keys stay: they are names); whether any changed.
fn strings(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => match text(s) {
            Cow::Owned(clean) => {
                *s = clean;
                true
            }
            Cow::Borrowed(_) => false,
        },
        serde_json::Value::Array(items) => items.iter_mut().fold(false, |changed, v| strings(v) | changed),
        serde_json::Value::Object(map) => {
            // `name: value` pairs whose name says secret (annotations, labels, env-like maps); not references to a
            // Secret by name (`secretName`, `tokenSecretRef`), which are names, not secrets.
            let mut changed = false;
            // An env var (`{name, value}`) whose name says secret, wherever it is: a pod template's as a pod's.
            if map.get("name").and_then(serde_json::Value::as_str).is_some_and(secret_name)
                && let Some(serde_json::Value::String(value)) = map.get_mut("value")
                && value != ENV_REDACTED
            {
                *value = ENV_REDACTED.to_string();
                changed = true;
            }
            for (key, v) in map.iter_mut() {
                let reference = key.ends_with("Name") || key.ends_with("name") || key.ends_with("Ref");
                if let (serde_json::Value::String(s), false) = (&mut *v, reference) {
                    let pair = format!("{key}={s}");
                    if let Cow::Owned(clean) = text(&pair) {
                        *s = clean.split_once('=').map_or(clean.clone(), |(_, v)| v.to_string());
                        changed = true;
                        continue;
                    }
                }
                changed |= strings(v);
            }
            changed
        }
        _ => false,
    }
}

/// Cleans findings in place: their summaries and evidence are built from the facts, and are cleaned again as they
/// leave.
pub fn findings(findings: &mut [crate::findings::Finding]) {
    for f in findings {
        in_place(&mut f.summary);
        f.evidence.iter_mut().for_each(in_place);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_of_every_kind_are_replaced() {
        let cases = [
            (
                "postgres://payments:S3cr3tPa55@db:5432/payments",
                "postgres://payments:[REDACTED:password]@db:5432/payments",
            ),
            ("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED:aws-access-key-id] used"),
            (
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-access-key]",
            ),
            ("Authorization: Bearer abc.def-ghi_jkl123456", "Authorization: Bearer [REDACTED:authorization]"),
            ("authorization: Basic dXNlcjpwYXNzd29yZA==", "authorization: Basic [REDACTED:authorization]"),
            ("token=xoxb-1234567890-abcdefghij", "token=[REDACTED:slack-token]"),
            ("password=hunter2 user=bob", "password=[REDACTED:secret] user=bob"),
            (r#"{"password": "hunter2"}"#, r#"{"password": [REDACTED:secret]}"#),
        ];
        for (input, expected) in cases {
            assert_eq!(text(input), expected, "{input}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for input in [
            "Back-off restarting failed container app in pod payments-api-7b8d9c6f5-qw7zt",
            "0/3 nodes are available: 3 Insufficient memory.",
            "GET /products 200 4ms",
            "http://search.readiness:80/healthz",
        ] {
            assert!(matches!(text(input), Cow::Borrowed(_)), "{input}");
        }
    }

    #[test]
    fn secret_env_names_are_recognised() {
        for name in ["DB_PASSWORD", "API_TOKEN", "AWS_SECRET_ACCESS_KEY", "GCP_CREDENTIALS", "signing_key"] {
            assert!(secret_name(name), "{name}");
        }
        for name in ["LOG_LEVEL", "PORT", "DATABASE_HOST"] {
            assert!(!secret_name(name), "{name}");
        }
    }
}

#[cfg(test)]
mod corpus {
    use super::*;

    const CORPUS: &str = include_str!("../testdata/secrets.tsv");

    /// Every (secret, line) pair of the corpus.
    pub fn cases() -> impl Iterator<Item = (&'static str, &'static str)> {
        CORPUS
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split_once('\t').expect("secret<TAB>line"))
    }

    #[test]
    fn no_secret_of_the_corpus_survives() {
        let mut count = 0;
        for (secret, line) in cases() {
            let clean = text(line);
            assert!(!clean.contains(secret), "{secret:?} survived in {clean:?}");
            let tail = &secret[secret.len() - 3..];
            assert!(
                !clean.contains(&format!("{tail} ")) && !clean.ends_with(tail),
                "part of {secret:?} survived in {clean:?}"
            );
            assert!(clean.contains("[REDACTED:"), "{clean}");
            count += 1;
        }
        assert!(count >= 20, "the corpus is read");
    }
}
