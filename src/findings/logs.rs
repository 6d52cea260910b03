//! Errors in the logs of pods that look healthy: running and ready, and failing every request all the same. The
//! reader samples one pod per owner (`reader.healthy_log_pods`); a finding needs error lines to dominate the tail, so
//! an occasional warning stays quiet.

use std::collections::BTreeMap;

use super::{Finding, Reason, Severity, object};
use crate::facts::{Facts, is_problem_pod};

/// What a failing line is about, most specific first: (marker, what it means).
const KINDS: &[(&str, &str)] = &[
    ("no such host", "name resolution fails"),
    ("temporary failure in name resolution", "name resolution fails"),
    ("server misbehaving", "name resolution fails"),
    ("connection refused", "connections are refused"),
    ("i/o timeout", "connections time out"),
    ("deadline exceeded", "requests time out"),
    ("timed out", "requests time out"),
    (" 500 ", "requests fail with 5xx"),
    (" 502 ", "requests fail with 5xx"),
    (" 503 ", "requests fail with 5xx"),
    (" 504 ", "requests fail with 5xx"),
    ("exception", "exceptions are thrown"),
    ("panic", "the process panics"),
    ("error", "errors are logged"),
    ("fatal", "errors are logged"),
];

/// Error lines needed, at least, and their least share of the lines read.
const MIN_ERRORS: usize = 5;
const MIN_SHARE: f64 = 0.3;

fn kind_of(line: &str) -> Option<&'static str> {
    let lower = line.to_lowercase();
    KINDS.iter().find(|(marker, _)| lower.contains(marker)).map(|(_, kind)| *kind)
}

pub(super) fn findings(facts: &Facts) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for log in facts.logs.iter().filter(|l| !l.previous) {
        let Ok(text) = &log.text else { continue };
        let Some(pod) = facts.pods.iter().find(|p| p.metadata.name.as_deref() == Some(log.pod.as_str())) else {
            continue;
        };
        if is_problem_pod(pod) {
            continue; // its own findings quote its logs
        }
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let failing: Vec<(&str, &str)> = lines.iter().filter_map(|l| kind_of(l).map(|k| (*l, k))).collect();
        if failing.len() < MIN_ERRORS || (failing.len() as f64) < MIN_SHARE * lines.len() as f64 {
            continue;
        }
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, kind) in &failing {
            *kinds.entry(kind).or_default() += 1;
        }
        let (kind, _) = kinds.iter().max_by_key(|(_, n)| **n).expect("failing is not empty");
        let (pod_name, container) = (log.pod.as_str(), log.container.as_str());
        let mut f = Finding::new(
            Reason::LogErrors,
            Severity::Warning,
            object("Pod", ns, pod_name),
            format!(
                "container {container} of pod {pod_name} is running and ready, but {kind}: {} of the last {} log lines are errors",
                failing.len(),
                lines.len()
            ),
        );
        let mut quoted: Vec<&str> = Vec::new();
        for (line, _) in failing.iter().rev() {
            // The same message with another timestamp is one quote.
            let message = line.split_once(' ').map_or(*line, |(_, rest)| rest);
            if quoted.iter().all(|q| !q.ends_with(message)) {
                quoted.push(line);
            }
            if quoted.len() == 3 {
                break;
            }
        }
        for line in quoted.iter().rev() {
            f.evidence.push(format!("log {container}: {}", line.trim()));
        }
        f.evidence.push(format!("pod {pod_name}: running and ready; its logs were sampled as a healthy pod's"));
        f.commands = vec![
            format!("kubectl logs -n {ns} {pod_name} -c {container} --tail=100"),
            format!("kubectl describe pod -n {ns} {pod_name}"),
        ];
        f.container = Some(container.to_string());
        findings.push(f);
    }
    findings
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn errors_dominating_a_healthy_pods_log_are_a_finding_and_a_slow_query_is_not() {
        let found = analyze(&facts("applogs"));
        assert_eq!(summary(&found), [(Reason::LogErrors, "Pod", "checkout-179b0c233-a179b")]);
        assert_eq!(
            found[0].summary,
            "container checkout of pod checkout-179b0c233-a179b is running and ready, but name resolution fails: 18 of the last 24 log lines are errors"
        );
        assert!(
            evidence(&found[0])
                .contains("lookup payments-api.payments.svc.cluster.local on 10.96.0.10:53: no such host")
        );
    }
}
