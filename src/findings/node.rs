//! Nodes: not ready, under pressure or cordoned, with the pods on them.

use super::*;
use crate::facts::{refused_by_nodes, refuses, selects_node, unscheduled};

pub(super) fn node_findings(facts: &Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    for node in &facts.nodes {
        let name = name_of(&node.metadata);
        let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
        let Some(ready) = conditions.clone().find(|c| c.type_ == "Ready") else { continue };
        if ready.status == "True" {
            findings.extend(node_pressure(facts, node));
            continue;
        }
        let message = ready.message.as_deref().unwrap_or_default();
        let mut f = Finding::new(
            Reason::NodeNotReady,
            Severity::Critical,
            object("Node", "", name),
            format!("Node {name} is not ready ({}): {message}", ready.reason.as_deref().unwrap_or(&ready.status)),
        );
        f.evidence.push(format!(
            "node {name} condition Ready={} reason={}: {message}",
            ready.status,
            ready.reason.as_deref().unwrap_or_default()
        ));
        for c in conditions.filter(|c| c.type_ != "Ready" && c.status == "True") {
            f.evidence.push(format!(
                "node {name} condition {}=True: {}",
                c.type_,
                c.message.as_deref().unwrap_or_default()
            ));
        }
        for taint in node.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten() {
            f.evidence.push(format!("node {name} taint: {}:{}", taint.key, taint.effect));
        }
        for pod in facts.pods.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name)) {
            let ready = pod_ready(pod);
            f.evidence.push(format!("pod {} runs on {name} (ready: {ready})", name_of(&pod.metadata)));
        }
        f.commands = vec![
            format!("kubectl describe node {name}"),
            format!("kubectl get pods -A --field-selector spec.nodeName={name}"),
        ];
        findings.push(f);
    }
    findings
}

/// A ready node under pressure (memory, disk, PIDs, network) or cordoned: what it does to the pods on it.
pub(super) fn node_pressure(facts: &Facts, node: &k8s_openapi::api::core::v1::Node) -> Option<Finding> {
    let name = name_of(&node.metadata);
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    let pressures: Vec<_> = conditions
        .filter(|c| c.status == "True")
        .filter(|c| {
            matches!(c.type_.as_str(), "MemoryPressure" | "DiskPressure" | "PIDPressure" | "NetworkUnavailable")
        })
        .collect();
    let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
    if pressures.is_empty() && !cordoned {
        return None;
    }
    let on_it: Vec<&Pod> =
        facts.pods.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name)).collect();
    // A cordon is often planned: it is a finding only when it keeps one of the namespace's pods from being placed,
    // or a pod of the namespace that has a problem runs there.
    let keeps_off: Vec<&Pod> = facts
        .pods
        .iter()
        .filter(|p| unscheduled(p) && refused_by_nodes(p) && selects_node(p, node))
        .filter(|p| refuses(node, p).iter().any(|why| why == "cordoned"))
        .collect();
    if pressures.is_empty() && keeps_off.is_empty() && !on_it.iter().any(|p| is_problem_pod(p)) {
        return None;
    }
    let mut f = match pressures.first() {
        Some(_) => Finding::new(
            Reason::NodePressure,
            Severity::Critical,
            object("Node", "", name),
            format!(
                "Node {name} is under {}: the kubelet evicts pods and the scheduler places none there",
                pressures.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>().join(" and ")
            ),
        ),
        None if !keeps_off.is_empty() => Finding::new(
            Reason::NodeCordoned,
            Severity::Critical,
            object("Node", "", name),
            format!(
                "Node {name} is cordoned (spec.unschedulable) and keeps {} pod(s) from being placed: {}",
                keeps_off.len(),
                keeps_off.iter().take(3).map(|p| name_of(&p.metadata)).collect::<Vec<_>>().join(", ")
            ),
        ),
        None => Finding::new(
            Reason::NodeCordoned,
            Severity::Warning,
            object("Node", "", name),
            format!("Node {name} is cordoned (spec.unschedulable): no new pod is placed there"),
        ),
    };
    for c in &pressures {
        f.evidence.push(format!(
            "node {name} condition {}=True reason={} since {}: {}",
            c.type_,
            c.reason.as_deref().unwrap_or_default(),
            c.last_transition_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
            c.message.as_deref().unwrap_or_default()
        ));
    }
    if cordoned {
        f.evidence.push(format!("node {name} spec.unschedulable: true"));
    }
    for taint in node.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten() {
        f.evidence.push(format!("node {name} taint: {}:{}", taint.key, taint.effect));
    }
    for pod in on_it.iter().take(5) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
        let reason =
            pod.status.as_ref().and_then(|s| s.reason.as_deref()).map(|r| format!(" ({r})")).unwrap_or_default();
        f.evidence.push(format!("pod {} on {name}: {phase}{reason}", name_of(&pod.metadata)));
    }
    f.commands = vec![
        format!("kubectl describe node {name}"),
        format!("kubectl get pods -A --field-selector spec.nodeName={name}"),
    ];
    Some(f)
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn a_cordoned_node_that_keeps_a_pod_off_is_its_cause() {
        let facts = facts("cordoned");
        assert_eq!(facts.nodes.iter().map(|n| name_of(&n.metadata)).collect::<Vec<_>>(), ["gpu-1"]);
        let findings = analyze(&facts);
        let pod = findings.iter().find(|f| f.reason == Reason::Unschedulable).unwrap();
        assert_eq!(summary(&findings)[0], (Reason::NodeCordoned, "Node", "gpu-1"));
        assert!(summary(&findings).contains(&(Reason::RolloutStuck, "Deployment", "model-train")));
        assert_eq!(findings[0].severity, Severity::Critical);
        assert!(findings[0].summary.contains("keeps 1 pod(s) from being placed"), "{}", findings[0].summary);
        assert!(evidence(&findings[0]).contains("node gpu-1 spec.unschedulable: true"));
        assert_eq!(pod.caused_by.as_ref().map(|c| c.reason), Some(Reason::NodeCordoned));
        assert!(evidence(pod).contains("1 node(s) were unschedulable"));
        assert!(evidence(pod).contains("node gpu-1 refuses it: cordoned"), "{}", evidence(pod));
    }

    #[test]
    fn unreachable_node_is_found_from_the_pod_on_it() {
        let findings = analyze(&facts("nodes"));
        assert_eq!(summary(&findings), [(Reason::NodeNotReady, "Node", "worker-3")]);
        assert!(evidence(&findings[0]).contains("Kubelet stopped posting node status."));
    }
}
