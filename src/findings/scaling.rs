//! What limits scaling and disruption: HorizontalPodAutoscalers that cannot compute a replica count (no metrics, no
//! requests) or are pinned at their maximum under load, and PodDisruptionBudgets that allow no disruption at all.

use super::{Finding, Reason, Severity, name_of, object};
use crate::facts::Facts;

pub(super) fn hpa_findings(facts: &Facts) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for hpa in &facts.hpas {
        let name = name_of(&hpa.metadata);
        let Some(spec) = &hpa.spec else { continue };
        let target = format!("{}/{}", spec.scale_target_ref.kind.to_lowercase(), spec.scale_target_ref.name);
        let status = hpa.status.as_ref();
        let conditions: Vec<_> = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten().collect();
        let condition = |kind: &str, state: &str| conditions.iter().find(|c| c.type_ == kind && c.status == state);
        let (current, desired) = status.map_or((0, 0), |s| (s.current_replicas.unwrap_or(0), s.desired_replicas));
        let quote = |c: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerCondition| {
            format!(
                "condition {}={} reason={}: {}",
                c.type_,
                c.status,
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            )
        };
        let commands = vec![
            format!("kubectl describe hpa -n {ns} {name}"),
            format!("kubectl get hpa -n {ns} {name} -o yaml"),
            format!("kubectl top pods -n {ns}"),
        ];
        // The workload it scales is gone (renamed, deleted): it scales nothing.
        let (kind, target_name) = (spec.scale_target_ref.kind.as_str(), spec.scale_target_ref.name.as_str());
        let candidates: Option<Vec<String>> = match kind {
            "Deployment" if !facts.unread.contains("deployments") => {
                Some(facts.deployments.iter().map(|d| name_of(&d.metadata).to_string()).collect())
            }
            "StatefulSet" if !facts.unread.contains("statefulsets") => {
                Some(facts.statefulsets.iter().map(|s| name_of(&s.metadata).to_string()).collect())
            }
            _ => None,
        };
        if let Some(names) = candidates.filter(|names| !names.iter().any(|n| n == target_name)) {
            let near = crate::facts::closest(target_name, names);
            let hint = near.first().map(|n| format!("; did you mean {n}?")).unwrap_or_default();
            let mut f = Finding::new(
                Reason::HPATargetMissing,
                Severity::Warning,
                object("HorizontalPodAutoscaler", ns, name),
                format!("HorizontalPodAutoscaler {name} scales {target}, which does not exist{hint}"),
            );
            f.evidence.push(format!("spec.scaleTargetRef: {kind} {target_name}"));
            f.evidence.extend(condition("AbleToScale", "False").map(|c| quote(c)));
            f.commands = commands.clone();
            findings.push(f);
            continue;
        }
        if let Some(c) = condition("ScalingActive", "False") {
            let message = c.message.as_deref().unwrap_or_default();
            let mut f = Finding::new(
                Reason::HPAScalingInactive,
                Severity::Warning,
                object("HorizontalPodAutoscaler", ns, name),
                format!("HorizontalPodAutoscaler {name} cannot scale {target}: {message}"),
            );
            f.evidence.push(quote(c));
            f.evidence.extend(condition("AbleToScale", "False").map(|c| quote(c)));
            f.evidence.push(format!(
                "replicas: current {current}, desired {desired}, min {}, max {}",
                spec.min_replicas.unwrap_or(1),
                spec.max_replicas
            ));
            if message.contains("missing request") {
                f.evidence.push(format!("{target}'s containers set no resources.requests for the metric"));
            }
            f.commands = commands.clone();
            findings.push(f);
        } else if let Some(c) = condition("ScalingLimited", "True")
            .filter(|c| c.reason.as_deref() == Some("TooManyReplicas") && current >= spec.max_replicas)
        {
            let mut f = Finding::new(
                Reason::HPAAtMaximum,
                Severity::Warning,
                object("HorizontalPodAutoscaler", ns, name),
                format!(
                    "HorizontalPodAutoscaler {name} keeps {target} at its maximum of {} replicas and would scale further",
                    spec.max_replicas
                ),
            );
            f.evidence.push(quote(c));
            f.evidence.push(format!("replicas: current {current}, desired {desired}, max {}", spec.max_replicas));
            for metric in status.and_then(|s| s.current_metrics.as_ref()).into_iter().flatten() {
                if let Some(resource) = &metric.resource {
                    let used = resource.current.average_utilization.map(|u| format!("{u}%")).unwrap_or_default();
                    let goal = spec
                        .metrics
                        .iter()
                        .flatten()
                        .filter_map(|m| m.resource.as_ref())
                        .find(|m| m.name == resource.name)
                        .and_then(|m| m.target.average_utilization)
                        .map(|u| format!(" (target {u}%)"))
                        .unwrap_or_default();
                    f.evidence.push(format!("metric {}: {used}{goal}", resource.name));
                }
            }
            f.commands = commands;
            findings.push(f);
        }
    }
    findings
}

pub(super) fn pdb_findings(facts: &Facts) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for pdb in &facts.pdbs {
        let name = name_of(&pdb.metadata);
        let Some(status) = &pdb.status else { continue };
        if status.disruptions_allowed > 0 || status.expected_pods == 0 {
            continue;
        }
        let spec = pdb.spec.as_ref();
        let rule = match (spec.and_then(|s| s.min_available.as_ref()), spec.and_then(|s| s.max_unavailable.as_ref())) {
            (Some(min), _) => format!("minAvailable {}", int_or_string(min)),
            (_, Some(max)) => format!("maxUnavailable {}", int_or_string(max)),
            _ => "no rule".to_string(),
        };
        let mut f = Finding::new(
            Reason::PDBBlocking,
            Severity::Warning,
            object("PodDisruptionBudget", ns, name),
            format!(
                "PodDisruptionBudget {name} allows no disruption ({rule}, {} of {} pods healthy): node drains and evictions of its pods are refused",
                status.current_healthy, status.expected_pods
            ),
        );
        f.evidence.push(format!(
            "status: disruptionsAllowed {}, currentHealthy {}, desiredHealthy {}, expectedPods {}",
            status.disruptions_allowed, status.current_healthy, status.desired_healthy, status.expected_pods
        ));
        f.evidence.push(format!("spec: {rule}"));
        f.commands = vec![format!("kubectl describe pdb -n {ns} {name}"), format!("kubectl get pdb -n {ns}")];
        findings.push(f);
    }
    findings
}

fn int_or_string(value: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match value {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => n.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn autoscalers_without_a_target_or_requests_and_statefulsets_without_their_service() {
        let target = analyze(&facts("hpatarget"));
        assert_eq!(summary(&target), [(Reason::HPATargetMissing, "HorizontalPodAutoscaler", "orders-api")]);
        assert_eq!(
            target[0].summary,
            "HorizontalPodAutoscaler orders-api scales deployment/orders-api, which does not exist; did you mean orders-api-v2?"
        );
        let requests = analyze(&facts("hparequests"));
        assert_eq!(summary(&requests), [(Reason::HPAScalingInactive, "HorizontalPodAutoscaler", "email-worker")]);
        assert!(evidence(&requests[0]).contains("deployment/email-worker's containers set no resources.requests"));
        let governing = analyze(&facts("governing"));
        assert_eq!(summary(&governing), [(Reason::StatefulSetServiceMissing, "StatefulSet", "redis")]);
    }
}
