//! What the analyzers' tests share: `Facts` built straight from the scenario fixtures in `testdata/scenarios`, as the
//! reader would gather them, and short forms of the findings to compare.

use std::path::Path;

use serde_json::Value;

pub(super) use super::*;
use crate::facts::{ContainerLog, order_events};

const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/scenarios");

/// The facts the reader would gather for `namespace`, built from the fixture files.
pub(super) fn facts(namespace: &str) -> Facts {
    let taken_at = std::fs::read_to_string(format!("{SCENARIOS}/taken-at")).unwrap();
    let mut facts = Facts {
        namespace: namespace.to_string(),
        observed_at: Some(taken_at.trim().parse().unwrap()),
        ..Facts::default()
    };
    let mut events = Vec::new();
    let mut nodes: Vec<k8s_openapi::api::core::v1::Node> = Vec::new();
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(SCENARIOS).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let list: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for item in list["items"].as_array().unwrap() {
            let kind = item["kind"].as_str().unwrap();
            match kind {
                "Node" => nodes.push(serde_json::from_value(item.clone()).unwrap()),
                "IngressClass" => classes.push(serde_json::from_value(item.clone()).unwrap()),
                _ => {}
            }
            if matches!(kind, "Node" | "IngressClass") {
                continue;
            }
            if item["metadata"]["namespace"] != namespace {
                continue;
            }
            macro_rules! push {
                ($field:expr) => {
                    $field.push(
                        serde_json::from_value(item.clone())
                            .unwrap_or_else(|e| panic!("{kind} in {}: {e}", path.display())),
                    )
                };
            }
            match kind {
                "Pod" => push!(facts.pods),
                "Event" => push!(events),
                "Deployment" => push!(facts.deployments),
                "ReplicaSet" => push!(facts.replicasets),
                "StatefulSet" => push!(facts.statefulsets),
                "DaemonSet" => push!(facts.daemonsets),
                "Job" => push!(facts.jobs),
                "CronJob" => push!(facts.cronjobs),
                "Service" => push!(facts.services),
                "Endpoints" => push!(facts.endpoints),
                "PersistentVolumeClaim" => push!(facts.pvcs),
                "ResourceQuota" => push!(facts.quotas),
                "HorizontalPodAutoscaler" => push!(facts.hpas),
                "Ingress" => push!(facts.ingresses),
                "PodDisruptionBudget" => push!(facts.pdbs),
                "LimitRange" => push!(facts.limit_ranges),
                "NetworkPolicy" => push!(facts.network_policies),
                _ => {}
            }
        }
    }
    facts.events = order_events(events);
    // The nodes and classes the reader would read.
    let needs = crate::facts::node_needs(&facts);
    let judge = crate::facts::NodeJudge::new(&facts);
    let nodes: Vec<_> = nodes
        .into_iter()
        .filter(|n| needs.named.contains(n.metadata.name.as_ref().unwrap()) || (needs.list && judge.matters(n)))
        .collect();
    facts.nodes = nodes;
    if !facts.ingresses.is_empty() {
        facts.ingress_classes = classes;
    }
    let logs = Path::new(SCENARIOS).join("logs").join(namespace);
    for pod in std::fs::read_dir(&logs).into_iter().flatten() {
        let pod = pod.unwrap().path();
        for file in std::fs::read_dir(&pod).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            let previous = name.ends_with(".previous.log");
            facts.logs.push(ContainerLog {
                pod: pod.file_name().unwrap().to_str().unwrap().to_string(),
                container: name.trim_end_matches(".log").trim_end_matches(".previous").to_string(),
                previous,
                text: Ok(std::fs::read_to_string(&file).unwrap()),
            });
        }
    }
    facts
}

pub(super) fn summary(findings: &[Finding]) -> Vec<(Reason, &str, &str)> {
    findings.iter().map(|f| (f.reason, f.object.kind.as_str(), f.object.name.as_str())).collect()
}

pub(super) fn evidence(finding: &Finding) -> String {
    finding.evidence.join("\n")
}
