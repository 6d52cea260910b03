//! How findings relate: which is the cause of which, and the order they are told in (root causes first).

use super::*;

/// Connects pods to the node or claim behind their problem, and gives every root cause the list of what follows
/// from it.
pub(super) fn link(facts: &Facts, findings: &mut [Finding]) {
    let pods: HashMap<&str, &Pod> = facts.pods.iter().map(|p| (name_of(&p.metadata), p)).collect();
    let mut causes: Vec<(usize, Link)> = Vec::new();
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
        let cause = findings.iter().find(|other| {
            (matches!(other.reason, Reason::NodeNotReady | Reason::NodePressure)
                && Some(other.object.name.as_str()) == node)
                || (other.reason == Reason::PVCPending
                    && matches!(f.reason, Reason::Unschedulable | Reason::FailedMount)
                    && claims.contains(&other.object.name.as_str()))
        });
        if let Some(cause) = cause {
            causes.push((i, cause.link()));
        }
    }
    for (i, cause) in causes {
        findings[i].caused_by = Some(cause);
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
