//! How findings relate: which is the cause of which, and the order they are told in (root causes first).

use super::*;
use crate::facts::{refused_by_nodes, refuses, selects_node};

/// Connects pods to the node or claim behind their problem, and gives every root cause the list of what follows
/// from it.
pub(super) fn link(facts: &Facts, findings: &mut [Finding]) {
    let pods: foldhash::HashMap<&str, &Pod> = facts.pods.iter().map(|p| (name_of(&p.metadata), p)).collect();
    let mut causes: Vec<(usize, Option<Link>, Vec<String>)> = Vec::new();
    let egress = super::netpol::egress_denied(facts);
    for (i, f) in findings.iter().enumerate() {
        let Some(pod) = pods.get(f.object.name.as_str()).filter(|_| f.object.kind == "Pod" && f.caused_by.is_none())
        else {
            continue;
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let claims: Vec<&str> = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()))
            .collect();
        let mut cause = findings.iter().find(|other| {
            (matches!(other.reason, Reason::NodeNotReady | Reason::NodePressure)
                && Some(other.object.name.as_str()) == node)
                || (other.reason == Reason::PVCPending
                    && matches!(f.reason, Reason::Unschedulable | Reason::FailedMount)
                    && claims.contains(&other.object.name.as_str()))
        });
        // A pod that cannot resolve names, under a policy that keeps it from DNS.
        let dns_fails = |line: &String| {
            let line = line.to_lowercase();
            ["resolv", "no such host", "lookup ", "name or service not known", "getaddrinfo"]
                .iter()
                .any(|w| line.contains(w))
        };
        if let Some((np, _)) =
            egress.get(f.object.name.as_str()).filter(|_| f.evidence.iter().chain([&f.summary]).any(dns_fails))
        {
            let denies =
                |o: &&Finding| o.reason == Reason::NetworkPolicyDeniesEgress && o.object.name == name_of(&np.metadata);
            cause = cause.or_else(|| findings.iter().find(denies));
        }
        // An unscheduled pod: the nodes it could go to that refuse it, and the first of their findings as the cause.
        let mut refusals = Vec::new();
        if f.reason == Reason::Unschedulable && refused_by_nodes(pod) {
            for n in facts.nodes.iter().filter(|n| selects_node(pod, n)) {
                let why = refuses(n, pod);
                if why.is_empty() {
                    continue;
                }
                let name = name_of(&n.metadata);
                refusals.push(format!("node {name} refuses it: {}", why.join(", ")));
                let node_finding = |o: &&Finding| {
                    matches!(o.reason, Reason::NodeCordoned | Reason::NodeNotReady | Reason::NodePressure)
                        && o.object.name == name
                };
                cause = cause.or_else(|| findings.iter().find(node_finding));
            }
        }
        if cause.is_some() || !refusals.is_empty() {
            causes.push((i, cause.map(Finding::link), refusals));
        }
    }
    for (i, cause, refusals) in causes {
        findings[i].caused_by = cause;
        findings[i].evidence.extend(refusals.into_iter().take(5));
    }
    let effects: Vec<(Link, Link)> =
        findings.iter().filter_map(|f| f.caused_by.clone().map(|c| (c, f.link()))).collect();
    for (cause, effect) in effects {
        if let Some(root) = findings.iter_mut().find(|f| f.link() == cause) {
            root.related.push(effect);
        }
    }
}

/// Root causes first: the most severe, then those that explain the most other findings; then what follows from them.
pub(super) fn rank(findings: &mut [Finding]) {
    findings.sort_by_cached_key(|f| {
        (f.caused_by.is_some(), f.severity, std::cmp::Reverse(f.related.len()), f.reason, f.object.clone())
    });
}
