//! NetworkPolicies that cut pods off: pods that serve a Service but that no policy lets any traffic in to
//! (`NetworkPolicyDeniesInbound`), and pods whose egress is restricted with no way left to DNS
//! (`NetworkPolicyDeniesEgress`). Policies add up: a pod selected by any policy of a type is isolated for it, and
//! takes only what one of them allows, so a default-deny policy next to one that allows is no finding. A policy that
//! selects no pod is said in the context, not raised: it may well be meant for a workload scaled to zero.
//!
//! The pods look healthy to Kubernetes (the kubelet's probes come from the node, which policies do not stop on most
//! network plugins), so these are warnings, and only where the network plugin enforces NetworkPolicies.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::service::selects as service_selects;
use super::{Finding, Reason, Severity, name_of, object};
use crate::facts::{Facts, selects};

/// The policies that select a pod and are of `direction` (`Ingress` or `Egress`): a policy without policyTypes is
/// an Ingress policy, and an Egress one too when it has egress rules.
fn isolating<'a>(
    facts: &'a Facts,
    labels: Option<&BTreeMap<String, String>>,
    direction: &str,
) -> Vec<&'a NetworkPolicy> {
    let all = LabelSelector::default();
    facts
        .network_policies
        .iter()
        .filter(|np| {
            let Some(spec) = &np.spec else { return false };
            let of_type = match &spec.policy_types {
                Some(types) => types.iter().any(|t| t == direction),
                None => direction == "Ingress" || spec.egress.is_some(),
            };
            of_type && selects(spec.pod_selector.as_ref().unwrap_or(&all), labels)
        })
        .collect()
}

/// Whether an egress port list lets DNS out: no ports (every port), or port 53 (or a port named `dns`) over UDP; a
/// port without a protocol is TCP, which most resolvers try only after UDP.
fn lets_dns_out(ports: Option<&Vec<NetworkPolicyPort>>) -> bool {
    let Some(ports) = ports.filter(|p| !p.is_empty()) else { return true };
    ports.iter().any(|p| {
        let dns = match &p.port {
            None => true,
            Some(IntOrString::Int(n)) => *n == 53 || p.end_port.is_some_and(|end| *n <= 53 && 53 <= end),
            Some(IntOrString::String(name)) => name == "dns",
        };
        dns && p.protocol.as_deref() == Some("UDP")
    })
}

/// The pods a restricted egress keeps from DNS, with the policy that isolates them (the first by name).
pub(super) fn egress_denied(facts: &Facts) -> BTreeMap<&str, (&NetworkPolicy, bool)> {
    let mut denied = BTreeMap::new();
    for pod in facts.pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let policies = isolating(facts, pod.metadata.labels.as_ref(), "Egress");
        let Some(first) = policies.first() else { continue };
        let rules: Vec<_> = policies.iter().filter_map(|np| np.spec.as_ref()?.egress.as_ref()).flatten().collect();
        let all_denied = rules.is_empty();
        if all_denied || !rules.iter().any(|r| lets_dns_out(r.ports.as_ref())) {
            denied.insert(name_of(&pod.metadata), (*first, all_denied));
        }
    }
    denied
}

pub(super) fn findings(facts: &Facts) -> Vec<Finding> {
    if facts.network_policies.is_empty() {
        return Vec::new();
    }
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();

    // Inbound: the pods behind each Service that no policy admits anything to.
    for service in &facts.services {
        let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty()) else {
            continue;
        };
        let backing =
            facts.pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && service_selects(selector, p));
        let mut shut: Vec<(&str, Vec<&NetworkPolicy>)> = Vec::new();
        for pod in backing {
            let policies = isolating(facts, pod.metadata.labels.as_ref(), "Ingress");
            let admits = policies
                .iter()
                .any(|np| np.spec.as_ref().and_then(|s| s.ingress.as_ref()).is_some_and(|r| !r.is_empty()));
            if !policies.is_empty() && !admits {
                shut.push((name_of(&pod.metadata), policies));
            }
        }
        let Some((_, policies)) = shut.first() else { continue };
        let service_name = name_of(&service.metadata);
        let policy = name_of(&policies[0].metadata);
        let names: Vec<&str> = policies.iter().map(|np| name_of(&np.metadata)).collect();
        let pods: Vec<&str> = shut.iter().map(|(p, _)| *p).collect();
        let mut f = Finding::new(
            Reason::NetworkPolicyDeniesInbound,
            Severity::Warning,
            object("NetworkPolicy", ns, policy),
            format!(
                "NetworkPolicy {policy} shuts out all inbound traffic to {} pod(s) of Service {service_name}: no policy that selects them allows any ingress",
                pods.len()
            ),
        );
        for np in policies {
            f.evidence.push(describe(np));
        }
        f.evidence.push(format!(
            "service {service_name} selects pods {}; policies selecting them: {}",
            pods.iter().take(5).copied().collect::<Vec<_>>().join(", "),
            names.join(", ")
        ));
        f.also_affected = pods.iter().skip(1).map(|p| p.to_string()).collect();
        f.commands = vec![
            format!("kubectl describe networkpolicy -n {ns} {policy}"),
            format!("kubectl get networkpolicies -n {ns}"),
        ];
        findings.push(f);
    }

    // Egress: pods kept from DNS, grouped by the policy that isolates them.
    let mut by_policy: BTreeMap<&str, (&NetworkPolicy, bool, Vec<&str>)> = BTreeMap::new();
    for (pod, (np, all_denied)) in egress_denied(facts) {
        let entry = by_policy.entry(name_of(&np.metadata)).or_insert((np, all_denied, Vec::new()));
        entry.1 &= all_denied;
        entry.2.push(pod);
    }
    for (policy, (np, all_denied, pods)) in by_policy {
        let what = if all_denied { "all outbound traffic, DNS included" } else { "DNS (UDP port 53)" };
        let mut f = Finding::new(
            Reason::NetworkPolicyDeniesEgress,
            Severity::Warning,
            object("NetworkPolicy", ns, policy),
            format!(
                "NetworkPolicy {policy} restricts egress of {} pod(s) and no policy that selects them lets {what} out: names do not resolve",
                pods.len()
            ),
        );
        f.evidence.push(describe(np));
        f.evidence
            .push(format!("pods isolated for egress: {}", pods.iter().take(5).copied().collect::<Vec<_>>().join(", ")));
        f.commands = vec![
            format!("kubectl describe networkpolicy -n {ns} {policy}"),
            format!("kubectl get networkpolicies -n {ns} -o yaml"),
        ];
        findings.push(f);
    }
    findings
}

/// `networkpolicy default-deny: podSelector {} (every pod), policyTypes [Ingress, Egress], 0 ingress rules, 0
/// egress rules`.
fn describe(np: &NetworkPolicy) -> String {
    let spec = np.spec.as_ref();
    let selector =
        spec.and_then(|s| s.pod_selector.as_ref()).map(crate::facts::label_selector_string).unwrap_or_default();
    let selector = if selector.is_empty() { "{} (every pod)".to_string() } else { selector };
    let types = spec.and_then(|s| s.policy_types.clone()).unwrap_or_default();
    let count = |rules: Option<usize>| rules.unwrap_or(0);
    format!(
        "networkpolicy {}: podSelector {selector}, policyTypes [{}], {} ingress rule(s), {} egress rule(s)",
        name_of(&np.metadata),
        types.join(", "),
        count(spec.and_then(|s| s.ingress.as_ref()).map(Vec::len)),
        count(spec.and_then(|s| s.egress.as_ref()).map(Vec::len)),
    )
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn network_policies_that_shut_pods_off() {
        let findings = analyze(&facts("netpol"));
        assert_eq!(summary(&findings), [(Reason::NetworkPolicyDeniesInbound, "NetworkPolicy", "default-deny-ingress")]);
        let f = &findings[0];
        assert!(f.summary.contains("2 pod(s) of Service checkout-api"), "{}", f.summary);
        assert!(evidence(f).contains("networkpolicy default-deny-ingress: podSelector {} (every pod), policyTypes [Ingress], 0 ingress rule(s)"), "{}", evidence(f));

        let findings = analyze(&facts("egress"));
        assert_eq!(
            summary(&findings),
            [
                (Reason::NetworkPolicyDeniesEgress, "NetworkPolicy", "invoice-sync-egress"),
                (Reason::LogErrors, "Pod", findings[1].object.name.as_str()),
            ]
        );
        assert!(findings[0].summary.contains("lets DNS (UDP port 53) out"), "{}", findings[0].summary);
        assert_eq!(findings[1].caused_by.as_ref().map(|c| c.reason), Some(Reason::NetworkPolicyDeniesEgress));
        assert!(evidence(&findings[1]).contains("lookup invoices-db.egress.svc.cluster.local on 10.96.0.10:53"));
    }
}
