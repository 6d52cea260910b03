//! Pods stuck at either end of their life: one whose sandbox (network, cgroups) the node cannot create
//! (`SandboxFailed`), and one that does not go away long past its grace period (`StuckTerminating`), held by a
//! finalizer or by a node that no longer answers.

use k8s_openapi::api::core::v1::{Event, Pod};

use super::{
    Finding, Reason, Severity, controller_of, events_with, name_of, object, pod_commands, quote_event, recent,
};
use crate::facts::Facts;

/// Slack past the grace period before a terminating pod counts as stuck: the kubelet's own stop takes a moment.
const SLACK: jiff::SignedDuration = jiff::SignedDuration::from_secs(120);

/// A pod deleted long ago that is still there.
pub(super) fn terminating(facts: &Facts, now: Option<jiff::Timestamp>, pod: &Pod) -> Option<Finding> {
    let deleted = pod.metadata.deletion_timestamp.as_ref()?.0;
    let now = now?;
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30);
    if deleted + jiff::SignedDuration::from_secs(grace) + SLACK > now {
        return None;
    }
    let ns = facts.namespace.as_str();
    let name = name_of(&pod.metadata);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
    let for_how_long = how_long(now.duration_since(deleted));
    let node_down = node.and_then(|n| facts.nodes.iter().find(|node| name_of(&node.metadata) == n)).is_some_and(|n| {
        let conditions = n.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status != "True")
    });
    let why = if !finalizers.is_empty() {
        format!("the finalizer {} holds it", finalizers.join(", "))
    } else if node_down {
        format!("its node {} is not ready and cannot confirm the pod stopped", node.unwrap_or("?"))
    } else {
        format!("the kubelet on {} has not confirmed its containers stopped", node.unwrap_or("its node"))
    };
    // A StatefulSet's replacement, with the same name, cannot start until this one is gone.
    let stateful = controller_of(&pod.metadata).is_some_and(|(kind, _)| kind == "StatefulSet");
    let severity = if stateful { Severity::Critical } else { Severity::Warning };
    let mut f = Finding::new(
        Reason::StuckTerminating,
        severity,
        object("Pod", ns, name),
        format!("Pod {name} has been terminating for {for_how_long}, past its {grace} s grace period: {why}"),
    );
    f.evidence.push(format!("metadata.deletionTimestamp: {deleted} (grace period {grace} s)"));
    if !finalizers.is_empty() {
        f.evidence.push(format!("metadata.finalizers: [{}]", finalizers.join(", ")));
    }
    if let Some(node) = node {
        f.evidence.push(format!("spec.nodeName: {node}{}", if node_down { " (NotReady)" } else { "" }));
    }
    for c in pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).into_iter().flatten() {
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            f.evidence.push(format!(
                "container {} state.terminated: reason={} exitCode={}",
                c.name,
                t.reason.as_deref().unwrap_or("?"),
                t.exit_code
            ));
        }
    }
    if stateful {
        f.evidence.push(format!("a StatefulSet pod: its replacement {name} cannot be created until it is gone"));
    }
    f.commands = vec![
        format!("kubectl get pod -n {ns} {name} -o jsonpath='{{.metadata.finalizers}}'"),
        format!("kubectl describe pod -n {ns} {name}"),
    ];
    if let Some(node) = node {
        f.commands.push(format!("kubectl get node {node}"));
    }
    Some(f)
}

/// `2d 3h`, `1h 59m`, `12m`.
pub(super) fn how_long(d: jiff::SignedDuration) -> String {
    let minutes = d.as_secs().max(0) / 60;
    match (minutes / 1440, minutes / 60 % 24, minutes % 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// A pod that cannot start because its sandbox cannot be created (the network plugin, most often).
pub(super) fn sandbox(facts: &Facts, now: Option<jiff::Timestamp>, pod: &Pod, events: &[&Event]) -> Option<Finding> {
    let failures: Vec<&Event> = events_with(events, &["FailedCreatePodSandBox"]).filter(|e| recent(e, now)).collect();
    let latest = failures.first()?;
    let status = pod.status.as_ref();
    let started = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    if started || status.and_then(|s| s.phase.as_deref()) != Some("Pending") {
        return None;
    }
    let ns = facts.namespace.as_str();
    let name = name_of(&pod.metadata);
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("its node");
    let message = latest.message.as_deref().unwrap_or_default().trim();
    // "failed to setup network for sandbox \"…\": plugin type=\"calico\" failed (add): …": the plugin's own words.
    let cause = message
        .split_once("for sandbox \"")
        .and_then(|(_, rest)| rest.split_once("\": "))
        .map_or(message, |(_, cause)| cause);
    let mut f = Finding::new(
        Reason::SandboxFailed,
        Severity::Critical,
        object("Pod", ns, name),
        format!("Pod {name} cannot start: the node {node} cannot create its sandbox: {cause}"),
    );
    f.evidence.push("status.phase: Pending, containers waiting reason=ContainerCreating".to_string());
    f.evidence.extend(failures.iter().take(2).map(|e| quote_event(e)));
    f.evidence.push(format!("spec.nodeName: {node}"));
    f.commands = pod_commands(ns, name);
    f.commands.push(format!("kubectl get pods -n kube-system -o wide --field-selector spec.nodeName={node}"));
    f.commands.push(format!("kubectl describe node {node}"));
    Some(f)
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn pods_stuck_at_either_end_of_their_life() {
        let sandbox = analyze(&facts("sandbox"));
        assert_eq!(summary(&sandbox), [(Reason::SandboxFailed, "Pod", "checkout-worker-7c6b5d4f9-v9n4s")]);
        assert_eq!(
            sandbox[0].summary,
            "Pod checkout-worker-7c6b5d4f9-v9n4s cannot start: the node worker-2 cannot create its sandbox: plugin type=\"calico\" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized"
        );
        assert!(
            evidence(&sandbox[0]).contains("event Warning FailedCreatePodSandBox x37"),
            "{}",
            evidence(&sandbox[0])
        );

        let held = analyze(&facts("terminating"));
        assert_eq!(summary(&held), [(Reason::StuckTerminating, "Pod", "kafka-2")]);
        assert_eq!(held[0].severity, Severity::Critical, "a StatefulSet's replacement waits for it");
        assert_eq!(
            held[0].summary,
            "Pod kafka-2 has been terminating for 1h 59m, past its 60 s grace period: the finalizer kafka.example.com/partition-drain holds it"
        );
        assert!(
            evidence(&held[0]).contains("metadata.finalizers: [kafka.example.com/partition-drain]"),
            "{}",
            evidence(&held[0])
        );
    }
}
