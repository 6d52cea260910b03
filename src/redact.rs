//! Redaction: secrets are replaced by `[REDACTED:<kind>]` before anything reaches the model or a chat.
//!
//! [`facts`] cleans what the reader gathered (secret-looking env values, logs, event and status messages,
//! annotations); [`text`] cleans any text, and runs again over the context, the prompt and the answer as a second line
//! of defence. The rules are listed in `docs/redaction.md`.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use crate::facts::Facts;

/// One rule: what it finds, and what it puts in place of the match (`${keep}` keeps the name before a secret value).
struct Rule {
    pattern: &'static str,
    replacement: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        pattern: r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY-----",
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
    Rule {
        pattern: r"(?P<keep>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]+:)[^\s@/]+@",
        replacement: "${keep}[REDACTED:password]@",
    },
    Rule { pattern: r"\b(?:AKIA|ASIA|ABIA|ACCA|AROA|AIDA)[0-9A-Z]{16}\b", replacement: "[REDACTED:aws-access-key-id]" },
    Rule {
        pattern: r#"(?i)(?P<keep>aws_?secret_?(?:access_?)?key["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{40}"#,
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
    Rule { pattern: r"\bAIza[0-9A-Za-z_-]{35}\b", replacement: "[REDACTED:gcp-api-key]" },
    Rule { pattern: r"\bya29\.[0-9A-Za-z_-]{20,}", replacement: "[REDACTED:gcp-token]" },
    Rule {
        pattern: r#"(?P<keep>"private_key_id"\s*:\s*")[0-9a-f]{40}"#,
        replacement: "${keep}[REDACTED:gcp-private-key-id]",
    },
    Rule {
        pattern: r#"(?i)(?P<keep>\b[A-Za-z0-9_.-]*(?:password|passwd|pwd|passphrase|token|secret|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)[A-Za-z0-9_.-]*["']?\s*[=:]\s*)(?:"[^"\n]*"|'[^'\n]*'|[^\s,;"'\[\]{}]+)"#,
        replacement: "${keep}[REDACTED:secret]",
    },
];

struct Compiled {
    set: RegexSet,
    rules: Vec<(Regex, &'static str)>,
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| Compiled {
    set: RegexSet::new(RULES.iter().map(|r| r.pattern)).expect("redaction rules compile"),
    rules: RULES.iter().map(|r| (Regex::new(r.pattern).expect("redaction rule compiles"), r.replacement)).collect(),
});

/// Text with every secret the rules find replaced.
pub fn text(input: &str) -> Cow<'_, str> {
    let compiled = &*COMPILED;
    let matched = compiled.set.matches(input);
    if !matched.matched_any() {
        return Cow::Borrowed(input);
    }
    let mut out = input.to_string();
    for i in matched.iter() {
        let (regex, replacement) = &compiled.rules[i];
        // No rule matches a marker, so a secret is never redacted twice ("token=[REDACTED:…]" stays as it is).
        let replaced = regex.replace_all(&out, *replacement);
        out = replaced.into_owned();
    }
    Cow::Owned(out)
}

fn in_place(value: &mut String) {
    if let Cow::Owned(clean) = text(value) {
        *value = clean;
    }
}

fn in_place_opt(value: &mut Option<String>) {
    if let Some(v) = value {
        in_place(v);
    }
}

/// Whether an environment variable's name says it holds a secret.
pub fn secret_name(name: &str) -> bool {
    let upper = name.to_uppercase();
    ["PASSWORD", "PASSWD", "TOKEN", "SECRET", "KEY", "CREDENTIAL", "PRIVATE", "AUTH", "DSN"]
        .iter()
        .any(|w| upper.contains(w))
}

/// Cleans everything the reader gathered, in place.
pub fn facts(facts: &mut Facts) {
    for pod in &mut facts.pods {
        for annotations in pod.metadata.annotations.iter_mut() {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            annotations.values_mut().for_each(in_place);
        }
        if let Some(spec) = &mut pod.spec {
            let containers = spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten());
            for container in containers {
                for env in container.env.iter_mut().flatten() {
                    if secret_name(&env.name) && env.value.is_some() {
                        env.value = Some("[REDACTED:env]".to_string());
                    } else {
                        in_place_opt(&mut env.value);
                    }
                }
                for arg in container.args.iter_mut().flatten().chain(container.command.iter_mut().flatten()) {
                    in_place(arg);
                }
            }
        }
        if let Some(status) = &mut pod.status {
            in_place_opt(&mut status.message);
            let statuses = status
                .container_statuses
                .iter_mut()
                .flatten()
                .chain(status.init_container_statuses.iter_mut().flatten());
            for c in statuses {
                for state in [c.state.as_mut(), c.last_state.as_mut()].into_iter().flatten() {
                    if let Some(w) = &mut state.waiting {
                        in_place_opt(&mut w.message);
                    }
                    if let Some(t) = &mut state.terminated {
                        in_place_opt(&mut t.message);
                    }
                }
            }
        }
    }
    for deployment in &mut facts.deployments {
        for annotations in deployment.metadata.annotations.iter_mut() {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    for event in &mut facts.events {
        in_place_opt(&mut event.message);
    }
    for log in &mut facts.logs {
        match &mut log.text {
            Ok(text) | Err(text) => in_place(text),
        }
    }
    for gap in &mut facts.gaps {
        in_place(&mut gap.message);
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
