//! Workloads whose controller cannot create their pods (`FailedCreate`): a ResourceQuota exhausted, Pod Security
//! admission, an admission webhook that denies or cannot be reached, a ServiceAccount that does not exist. The API
//! server says why in the ReplicaSet's `ReplicaFailure` condition and in the controllers' `FailedCreate` events; the
//! pods themselves never exist, so no pod analyzer can see it.

use std::sync::LazyLock;

use regex::Regex;

use super::{EventIndex, Finding, Reason, Severity, events_of, events_with, name_of, object, quote_event, recent};
use crate::facts::Facts;

/// The cause, from the API server's message, with the command that shows more of it.
struct Cause {
    summary: String,
    command: Option<String>,
    /// The ResourceQuota that refused, to quote its use.
    quota: Option<String>,
    /// The resource a LimitRange refused (`cpu`, `memory`), to quote the namespace's LimitRanges for it.
    limit: Option<String>,
}

static QUOTA: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"exceeded quota: ([^,]+), requested: ([^,]+), used: ([^,]+), limited: ([^,\s]+)").expect("compiles")
});
static LIMIT_RANGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"((?:maximum|minimum) (\S+) usage per (?:Container|Pod) is \S+, but (?:limit|request) is [^,\s]+|(\S+) max limit to request ratio per (?:Container|Pod) is \S+, but provided ratio is \S+)")
        .expect("compiles")
});
static POD_SECURITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"violates PodSecurity "([^"]+)": (.+)"#).expect("compiles"));
static WEBHOOK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#"webhook "([^"]+)""#).expect("compiles"));
static SERVICE_ACCOUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"serviceaccount "([^"]+)" not found"#).expect("compiles"));

fn cause(ns: &str, message: &str) -> Cause {
    if let Some(c) = QUOTA.captures(message) {
        return Cause {
            summary: format!(
                "the ResourceQuota {} is exhausted: it requests {}, {} of {} is used",
                &c[1], &c[2], &c[3], &c[4]
            ),
            command: Some(format!("kubectl describe resourcequota -n {ns} {}", &c[1])),
            quota: Some(c[1].to_string()),
            limit: None,
        };
    }
    if let Some(c) = LIMIT_RANGE.captures(message) {
        return Cause {
            summary: format!("the namespace's LimitRange refuses them: {}", &c[1]),
            command: Some(format!("kubectl describe limitrange -n {ns}")),
            quota: None,
            limit: c.get(2).or(c.get(3)).map(|m| m.as_str().to_string()),
        };
    }
    if let Some(c) = POD_SECURITY.captures(message) {
        return Cause {
            summary: format!("Pod Security admission ({}) refuses the pods: {}", &c[1], &c[2]),
            command: Some(format!("kubectl get namespace {ns} --show-labels")),
            quota: None,
            limit: None,
        };
    }
    if let Some(c) = WEBHOOK.captures(message) {
        let how = if message.contains("failed calling webhook") || message.contains("failed to call webhook") {
            "cannot be reached"
        } else {
            "denies them"
        };
        return Cause {
            summary: format!("the admission webhook {} {how}", &c[1]),
            command: Some("kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations".to_string()),
            quota: None,
            limit: None,
        };
    }
    if let Some(c) = SERVICE_ACCOUNT.captures(message) {
        return Cause {
            summary: format!("its ServiceAccount {} does not exist", &c[1]),
            command: Some(format!("kubectl get serviceaccounts -n {ns}")),
            quota: None,
            limit: None,
        };
    }
    Cause { summary: "the API server refuses them".to_string(), command: None, quota: None, limit: None }
}

/// A `FailedCreate` finding for every ReplicaSet, StatefulSet, DaemonSet or Job that cannot create the pods it wants.
pub(super) fn findings(facts: &Facts, now: Option<jiff::Timestamp>, index: &EventIndex<'_>) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let current = |e: &&k8s_openapi::api::core::v1::Event| e.type_.as_deref() == Some("Warning") && recent(e, now);
    let mut findings = Vec::new();
    let mut refused = |kind: &'static str, name: &str, condition: Option<&str>, wants: String| {
        let events: Vec<_> = events_with(events_of(index, kind, name), &["FailedCreate"]).filter(current).collect();
        let Some(message) = condition.or_else(|| events.first().and_then(|e| e.message.as_deref())) else { return };
        let message = message.trim().trim_start_matches("Error creating: ");
        let cause = cause(ns, message);
        let mut f = Finding::new(
            Reason::FailedCreate,
            Severity::Critical,
            object(kind, ns, name),
            format!("{kind} {name} cannot create its pods: {}", cause.summary),
        );
        if let Some(condition) = condition {
            f.evidence.push(format!("condition ReplicaFailure=True reason=FailedCreate: {condition}"));
        }
        f.evidence.extend(events.iter().take(2).map(|e| quote_event(e)));
        f.evidence.push(wants);
        // The quota's own account of what is used, when it was read.
        if let Some(quota) = cause.quota.as_ref().and_then(|q| facts.quotas.iter().find(|o| name_of(&o.metadata) == q))
        {
            let status = quota.status.as_ref();
            let hard = status.and_then(|s| s.hard.as_ref());
            let used = status.and_then(|s| s.used.as_ref());
            let lines: Vec<String> = hard
                .into_iter()
                .flatten()
                .map(|(resource, limit)| {
                    let used = used.and_then(|u| u.get(resource)).map_or("0", |q| q.0.as_str());
                    format!("{resource} {used}/{}", limit.0)
                })
                .collect();
            f.evidence.push(format!("resourcequota {} used/hard: {}", name_of(&quota.metadata), lines.join(", ")));
        }
        // The namespace's LimitRanges for the refused resource: the bounds the pod template must fit.
        for range in cause.limit.iter().flat_map(|r| facts.limit_ranges.iter().map(move |l| (r, l))) {
            let (resource, range) = range;
            let items = range.spec.as_ref().map(|s| s.limits.as_slice()).unwrap_or_default();
            let bounds: Vec<String> = items
                .iter()
                .flat_map(|item| {
                    let fields = [
                        ("max", &item.max),
                        ("min", &item.min),
                        ("default", &item.default),
                        ("defaultRequest", &item.default_request),
                        ("maxLimitRequestRatio", &item.max_limit_request_ratio),
                    ];
                    fields.into_iter().filter_map(move |(field, values)| {
                        let value = values.as_ref()?.get(resource)?;
                        Some(format!("{} {field} {resource}={}", item.type_, value.0))
                    })
                })
                .collect();
            if !bounds.is_empty() {
                f.evidence.push(format!("limitrange {}: {}", name_of(&range.metadata), bounds.join(", ")));
            }
        }
        let resource = kind.to_lowercase();
        f.commands = vec![
            format!("kubectl describe {resource} -n {ns} {name}"),
            format!("kubectl get events -n {ns} --field-selector involvedObject.name={name},reason=FailedCreate"),
        ];
        f.commands.extend(cause.command);
        findings.push(f);
    };
    for rs in &facts.replicasets {
        let status = rs.status.as_ref();
        let desired = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let have = status.map_or(0, |s| s.replicas);
        let condition = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .and_then(|c| c.message.as_deref());
        if have < desired || condition.is_some() {
            refused("ReplicaSet", name_of(&rs.metadata), condition, format!("replicas: {have} of {desired} created"));
        }
    }
    for sts in &facts.statefulsets {
        let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let have = sts.status.as_ref().map_or(0, |s| s.replicas);
        if have < desired {
            let wants = format!("replicas: {have} of {desired} created (pods are created in order, from 0)");
            refused("StatefulSet", name_of(&sts.metadata), None, wants);
        }
    }
    for ds in &facts.daemonsets {
        let Some(status) = &ds.status else { continue };
        if status.current_number_scheduled < status.desired_number_scheduled {
            let wants =
                format!("scheduled: {} of {} nodes", status.current_number_scheduled, status.desired_number_scheduled);
            refused("DaemonSet", name_of(&ds.metadata), None, wants);
        }
    }
    for job in &facts.jobs {
        let status = job.status.as_ref();
        let finished = status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True");
        let active = status.and_then(|s| s.active).unwrap_or(0);
        if !finished && active == 0 {
            let succeeded = status.and_then(|s| s.succeeded).unwrap_or(0);
            let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(1);
            let wants = format!("active pods: 0, succeeded {succeeded} of {completions}");
            refused("Job", name_of(&job.metadata), None, wants);
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_named_from_the_api_servers_message() {
        let quota = cause(
            "shop",
            r#"pods "api-1" is forbidden: exceeded quota: compute-resources, requested: limits.memory=1Gi, used: limits.memory=3584Mi, limited: limits.memory=4Gi"#,
        );
        assert_eq!(
            quota.summary,
            "the ResourceQuota compute-resources is exhausted: it requests limits.memory=1Gi, limits.memory=3584Mi of limits.memory=4Gi is used"
        );
        assert_eq!(quota.command.as_deref(), Some("kubectl describe resourcequota -n shop compute-resources"));
        let denied =
            cause("shop", r#"admission webhook "policy.example.com" denied the request: images must be signed"#);
        assert_eq!(denied.summary, "the admission webhook policy.example.com denies them");
        assert_eq!(cause("shop", "something new").summary, "the API server refuses them");
    }
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn a_limit_range_that_refuses_the_new_pods_is_quoted() {
        let findings = analyze(&facts("limitrange"));
        let f = findings.iter().find(|f| f.reason == Reason::FailedCreate).expect("FailedCreate");
        assert!(
            f.summary.contains(
                "the namespace's LimitRange refuses them: maximum memory usage per Container is 1Gi, but limit is 2Gi"
            ),
            "{}",
            f.summary
        );
        assert!(
            evidence(f)
                .contains("limitrange container-limits: Container max memory=1Gi, Container default memory=512Mi"),
            "{}",
            evidence(f)
        );
    }

    #[test]
    fn workloads_that_cannot_create_their_pods_name_why() {
        let quota = analyze(&facts("quota"));
        assert_eq!(
            summary(&quota),
            [(Reason::FailedCreate, "ReplicaSet", "api-6d8f7c9b5"), (Reason::RolloutStuck, "Deployment", "api")]
        );
        assert_eq!(
            quota[0].summary,
            "ReplicaSet api-6d8f7c9b5 cannot create its pods: the ResourceQuota compute-resources is exhausted: it requests limits.memory=1Gi, limits.memory=3584Mi of limits.memory=4Gi is used"
        );
        assert!(evidence(&quota[0]).contains("condition ReplicaFailure=True reason=FailedCreate: pods \"api-6d8f7c9b5-7tq2m\" is forbidden: exceeded quota"), "{}", evidence(&quota[0]));
        assert!(evidence(&quota[0]).contains("event Warning FailedCreate x19"), "{}", evidence(&quota[0]));
        assert_eq!(
            quota[1].caused_by.as_ref().map(|l| l.reason),
            Some(Reason::FailedCreate),
            "the rollout is stuck on it"
        );
        assert!(quota[0].commands.contains(&"kubectl describe resourcequota -n quota compute-resources".to_string()));
        assert!(
            evidence(&quota[0])
                .contains("resourcequota compute-resources used/hard: limits.memory 3584Mi/4Gi, pods 5/20"),
            "{}",
            evidence(&quota[0])
        );

        let psa = analyze(&facts("podsecurity"));
        assert_eq!(
            summary(&psa),
            [
                (Reason::FailedCreate, "ReplicaSet", "web-6d8f7c9b5"),
                (Reason::RolloutStuck, "Deployment", "web"),
                (Reason::ServiceNoEndpoints, "Service", "web")
            ]
        );
        assert!(
            psa[0].summary.contains(
                "Pod Security admission (restricted:latest) refuses the pods: allowPrivilegeEscalation != false"
            ),
            "{}",
            psa[0].summary
        );
        assert_eq!(
            psa[2].caused_by.as_ref().map(|l| l.object.name.as_str()),
            Some("web-6d8f7c9b5"),
            "no pods, because none can be made"
        );

        let webhook = analyze(&facts("webhook"));
        assert_eq!(summary(&webhook), [(Reason::FailedCreate, "StatefulSet", "postgres")]);
        assert_eq!(
            webhook[0].summary,
            "StatefulSet postgres cannot create its pods: the admission webhook validate.kyverno.svc-fail cannot be reached"
        );
        assert!(evidence(&webhook[0]).contains("context deadline exceeded"), "{}", evidence(&webhook[0]));

        let account = analyze(&facts("serviceaccount"));
        assert_eq!(summary(&account), [(Reason::FailedCreate, "Job", "nightly-export")]);
        assert_eq!(
            account[0].summary,
            "Job nightly-export cannot create its pods: its ServiceAccount report-writer does not exist"
        );
    }
}
