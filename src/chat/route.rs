//! What a chat message asks for: `/diagnose [namespace] [question]`, `/ask question`, a mention starting with
//! `diagnose` or `ask`, or `help`; the namespace from `-n ns`, `ns/pod` or a leading namespace word; the cluster from
//! `-c NAME` or `--cluster NAME`. The words are
//! only sorted here: what they name is checked where the request is built ([`crate::request::Scope::parse`]).

use crate::request::{Intent, narrowable};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Help,
    Question {
        intent: Intent,
        /// As typed: kubechat's name of a cluster or an alias; none for the default.
        cluster: Option<String>,
        namespace: Option<String>,
        object: Option<String>,
        question: String,
    },
}

/// Around an object named in a sentence: `deployment/web`, (pod/x), "pod/x", pod/x?
const QUOTES: &[char] = &['`', '"', '\'', '('];
const PUNCTUATION: &[char] = &['`', '"', '\'', ')', '?', '!', '.', ',', ';', ':'];

fn is_name(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 63
        && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Routes a slash command (`command` is `/diagnose` or `/ask`, or the configured names) or, with `command` None, a
/// mention's text with the mention removed.
pub fn route(command: Option<&str>, text: &str) -> Route {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let intent = match command.map(|c| c.trim_start_matches('/')) {
        Some(c) if c.ends_with("ask") => Intent::Ask,
        Some(_) => Intent::Diagnose,
        None => match words.first().map(|w| w.to_lowercase()) {
            Some(w) if w == "ask" => {
                words.remove(0);
                Intent::Ask
            }
            Some(w) if w == "diagnose" => {
                words.remove(0);
                Intent::Diagnose
            }
            _ => Intent::Ask,
        },
    };
    let asked_for_help = words.len() == 1 && words[0].eq_ignore_ascii_case("help");
    // A bare mention, or `/ask` with no question, gets the help text too.
    let nothing_asked = words.is_empty() && intent == Intent::Ask;
    if asked_for_help || nothing_asked {
        return Route::Help;
    }
    let mut cluster = None;
    let mut namespace = None;
    let mut object = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        if (word == "-n" || word == "--namespace") && i + 1 < words.len() {
            namespace = Some(words[i + 1].to_string());
            i += 2;
            continue;
        }
        if (word == "-c" || word == "--cluster" || word == "--context") && i + 1 < words.len() {
            cluster = Some(words[i + 1].to_string());
            i += 2;
            continue;
        }
        if let Some(ns) = word.strip_prefix("--namespace=") {
            namespace = Some(ns.to_string());
        } else if let Some(name) = word.strip_prefix("--cluster=").or_else(|| word.strip_prefix("--context=")) {
            cluster = Some(name.to_string());
        } else if word.split_once('/').is_some_and(|(kind, _)| narrowable(kind.trim_start_matches(QUOTES)).is_some()) {
            // `deployment/web`, by any of kubectl's names for the kind: an object, whatever follows the slash (a name
            // that is not one is refused where the request is built, not read as words of the question). Quotes and
            // the sentence's punctuation around it are not part of it.
            object = Some(word.trim_start_matches(QUOTES).trim_end_matches(PUNCTUATION).to_string());
        } else if let Some((left, right)) = word.split_once('/').filter(|(l, r)| is_name(l) && is_name(r)) {
            // A namespace and a pod in it.
            namespace.get_or_insert_with(|| left.to_string());
            object = Some(format!("pod/{right}"));
        } else {
            rest.push(word);
        }
        i += 1;
    }
    // `/diagnose payments why…`: a leading namespace-shaped word, when no namespace was given otherwise.
    if intent == Intent::Diagnose && namespace.is_none() && rest.first().is_some_and(|w| is_name(w)) {
        namespace = Some(rest.remove(0).to_string());
    }
    Route::Question { intent, cluster, namespace, object, question: rest.join(" ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(intent: Intent, namespace: Option<&str>, object: Option<&str>, question: &str) -> Route {
        Route::Question {
            intent,
            cluster: None,
            namespace: namespace.map(str::to_string),
            object: object.map(str::to_string),
            question: question.into(),
        }
    }

    #[test]
    fn commands_and_mentions_are_routed() {
        assert_eq!(route(Some("/diagnose"), "payments"), question(Intent::Diagnose, Some("payments"), None, ""));
        assert_eq!(
            route(Some("/diagnose"), "payments why is checkout slow?"),
            question(Intent::Diagnose, Some("payments"), None, "why is checkout slow?")
        );
        assert_eq!(
            route(Some("/ask"), "why is checkout failing? -n shop"),
            question(Intent::Ask, Some("shop"), None, "why is checkout failing?")
        );
        assert_eq!(
            route(None, "diagnose payments/payments-api-7b8d"),
            question(Intent::Diagnose, Some("payments"), Some("pod/payments-api-7b8d"), "")
        );
        assert_eq!(
            route(None, "ask what about deployment/web -n shop"),
            question(Intent::Ask, Some("shop"), Some("deployment/web"), "what about")
        );
        assert_eq!(
            route(None, "why is checkout failing?"),
            question(Intent::Ask, None, None, "why is checkout failing?")
        );
        assert_eq!(
            route(Some("/diagnose"), "shop pod/ why"),
            question(Intent::Diagnose, Some("shop"), Some("pod/"), "why"),
            "a kind with a bad name is an object, refused later, not words of the question"
        );
        assert_eq!(
            route(None, "ask about cj/nightly -n batch"),
            question(Intent::Ask, Some("batch"), Some("cj/nightly"), "about")
        );
        assert_eq!(
            route(None, "what about `deployment/web`?"),
            question(Intent::Ask, None, Some("deployment/web"), "what about")
        );
        assert_eq!(route(None, "help"), Route::Help);
        let in_cluster = |cluster: &str, route: Route| match route {
            Route::Question { cluster: Some(c), namespace, question, .. } => {
                assert_eq!(c, cluster);
                (namespace, question)
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            in_cluster("staging", route(Some("/diagnose"), "shop --cluster staging")),
            (Some("shop".into()), String::new())
        );
        assert_eq!(
            in_cluster("staging", route(Some("/diagnose"), "-c staging shop why?")),
            (Some("shop".into()), "why?".into()),
            "the flag comes before the namespace word"
        );
        assert_eq!(
            in_cluster("prod-eu", route(None, "ask why is web down? --cluster=prod-eu -n shop")),
            (Some("shop".into()), "why is web down?".into())
        );
        assert_eq!(in_cluster("dev", route(None, "diagnose --context dev shop")).0, Some("shop".into()));
        assert_eq!(route(Some("/ask"), "  "), Route::Help);
    }
}
