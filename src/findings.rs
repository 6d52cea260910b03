//! Deterministic findings: what is wrong, proven from the facts alone, with no model involved.
//!
//! [`analyze`] runs one analyzer per concern over [`Facts`], then links related findings (a stuck rollout to the pod
//! that cannot start under it, a pod to the node it is stranded on) and ranks root causes first. Every reason code is
//! documented in `docs/findings.md`; the codes are stable, so alerts and dashboards can key on them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use serde::Serialize;

use crate::facts::{Facts, ObjectRef, event_time, is_problem_pod};

mod lifecycle;
mod links;
mod logs;
mod netpol;
mod node;
mod pod;
mod refused;
mod routing;
mod scaling;
mod schedule;
mod service;
mod storage;
mod workload;

// The analyzers, and the helpers the files share.
use lifecycle::how_long;
use links::{link, rank};
use node::node_findings;
use pod::{HISTORY, group_replicas, log_evidence, pod_commands, pod_findings, statuses};
use service::{port_findings, service_findings};
use storage::pvc_findings;
use workload::{
    cronjob_findings, daemonset_findings, governing_service_findings, job_findings, rollout_findings,
    statefulset_findings,
};

/// Stable reason codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Reason {
    NodeNotReady,
    PVCPending,
    ImagePullBackOff,
    CreateContainerConfigError,
    FailedMount,
    Unschedulable,
    OOMKilled,
    CrashLoopBackOff,
    JobFailed,
    ProbeFailing,
    Evicted,
    RolloutStuck,
    ServiceNoEndpoints,
    FailedCreate,
    SandboxFailed,
    StuckTerminating,
    InitFailing,
    LivenessRestarts,
    ServicePortMismatch,
    IngressBackendMissing,
    HPAScalingInactive,
    HPAAtMaximum,
    PDBBlocking,
    NodePressure,
    NodeCordoned,
    StatefulSetStuck,
    CronJobSuspended,
    CronJobMissedSchedule,
    DaemonSetUnavailable,
    LogErrors,
    HPATargetMissing,
    StatefulSetServiceMissing,
    NetworkPolicyDeniesInbound,
    NetworkPolicyDeniesEgress,
    IngressClassMissing,
    CronJobNoRecentSuccess,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NodeNotReady => "NodeNotReady",
            Reason::PVCPending => "PVCPending",
            Reason::ImagePullBackOff => "ImagePullBackOff",
            Reason::CreateContainerConfigError => "CreateContainerConfigError",
            Reason::FailedMount => "FailedMount",
            Reason::Unschedulable => "Unschedulable",
            Reason::OOMKilled => "OOMKilled",
            Reason::CrashLoopBackOff => "CrashLoopBackOff",
            Reason::JobFailed => "JobFailed",
            Reason::ProbeFailing => "ProbeFailing",
            Reason::Evicted => "Evicted",
            Reason::RolloutStuck => "RolloutStuck",
            Reason::ServiceNoEndpoints => "ServiceNoEndpoints",
            Reason::FailedCreate => "FailedCreate",
            Reason::SandboxFailed => "SandboxFailed",
            Reason::StuckTerminating => "StuckTerminating",
            Reason::InitFailing => "InitFailing",
            Reason::LivenessRestarts => "LivenessRestarts",
            Reason::ServicePortMismatch => "ServicePortMismatch",
            Reason::IngressBackendMissing => "IngressBackendMissing",
            Reason::HPAScalingInactive => "HPAScalingInactive",
            Reason::HPAAtMaximum => "HPAAtMaximum",
            Reason::PDBBlocking => "PDBBlocking",
            Reason::NodePressure => "NodePressure",
            Reason::NodeCordoned => "NodeCordoned",
            Reason::StatefulSetStuck => "StatefulSetStuck",
            Reason::CronJobSuspended => "CronJobSuspended",
            Reason::CronJobMissedSchedule => "CronJobMissedSchedule",
            Reason::DaemonSetUnavailable => "DaemonSetUnavailable",
            Reason::LogErrors => "LogErrors",
            Reason::HPATargetMissing => "HPATargetMissing",
            Reason::StatefulSetServiceMissing => "StatefulSetServiceMissing",
            Reason::NetworkPolicyDeniesInbound => "NetworkPolicyDeniesInbound",
            Reason::NetworkPolicyDeniesEgress => "NetworkPolicyDeniesEgress",
            Reason::IngressClassMissing => "IngressClassMissing",
            Reason::CronJobNoRecentSuccess => "CronJobNoRecentSuccess",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        })
    }
}

/// A pointer from one finding to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub reason: Reason,
    pub object: ObjectRef,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub reason: Reason,
    pub severity: Severity,
    pub object: ObjectRef,
    pub summary: String,
    /// Exact status fields, event messages and log lines that prove the finding.
    pub evidence: Vec<String>,
    /// Read-only kubectl commands with the real names, to look closer.
    pub commands: Vec<String>,
    /// The finding this one follows from; the root cause is listed before it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<Link>,
    /// Findings that follow from this one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Link>,
    /// Other pods of the same owner with the same problem, folded into this finding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_affected: Vec<String>,
    /// The container the finding is about, for pod findings.
    #[serde(skip)]
    container: Option<String>,
}

impl Finding {
    fn new(reason: Reason, severity: Severity, object: ObjectRef, summary: String) -> Finding {
        Finding {
            reason,
            severity,
            object,
            summary,
            evidence: Vec::new(),
            commands: Vec::new(),
            caused_by: None,
            related: Vec::new(),
            also_affected: Vec::new(),
            container: None,
        }
    }

    /// `[critical] CrashLoopBackOff pod/web-1: summary`, the one-line form every rendering uses.
    pub fn headline(&self) -> String {
        format!(
            "[{}] {} {}/{}: {}",
            self.severity,
            self.reason,
            self.object.kind.to_lowercase(),
            self.object.name,
            self.summary
        )
    }

    pub fn link(&self) -> Link {
        Link { reason: self.reason, object: self.object.clone() }
    }
}

/// All findings for the facts, root causes first.
pub fn analyze(facts: &Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    // Once: it looks at every timestamp of the facts.
    let now = facts.now();
    let events = index_events(facts);
    let pods = facts
        .pods
        .iter()
        .flat_map(|pod| pod_findings(facts, now, pod, events_of(&events, "Pod", name_of(&pod.metadata))));
    findings.extend(group_replicas(facts, pods.collect()));
    findings.extend(logs::findings(facts));
    findings.extend(node_findings(facts));
    findings.extend(pvc_findings(facts, &events));
    findings.extend(job_findings(facts));
    findings.extend(refused::findings(facts, now, &events));
    findings.extend(rollout_findings(facts, &findings));
    findings.extend(statefulset_findings(facts, &findings));
    findings.extend(daemonset_findings(facts, &findings));
    findings.extend(governing_service_findings(facts));
    findings.extend(cronjob_findings(facts, &events, now));
    findings.extend(schedule::findings(facts, now, &findings));
    findings.extend(service_findings(facts, &findings));
    findings.extend(port_findings(facts));
    findings.extend(routing::ingress_findings(facts));
    findings.extend(routing::ingress_class_findings(facts));
    findings.extend(netpol::findings(facts));
    findings.extend(scaling::hpa_findings(facts));
    findings.extend(scaling::pdb_findings(facts));
    link(facts, &mut findings);
    rank(&mut findings);
    findings
}

fn object(kind: &str, namespace: &str, name: &str) -> ObjectRef {
    ObjectRef { kind: kind.to_string(), namespace: namespace.to_string(), name: name.to_string() }
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or_default()
}

fn controller_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<(&str, &str)> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| meta.owner_references.iter().flatten().next())
        .map(|o| (o.kind.as_str(), o.name.as_str()))
}

/// Whether an event happened within [`HISTORY`] of `now` (an event without a time, or facts without one, count as
/// recent): older ones are history, not evidence of a current failure.
fn recent(event: &Event, now: Option<jiff::Timestamp>) -> bool {
    match (event_time(event), now) {
        (Some(at), Some(now)) => at + HISTORY >= now,
        _ => true,
    }
}

/// Whether a pod's `Ready` condition is true.
fn pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn quote_event(event: &Event) -> String {
    let count = event.count.filter(|c| *c > 1).map(|c| format!(" x{c}")).unwrap_or_default();
    let at = event_time(event).map(|t| format!(" at {t}")).unwrap_or_default();
    format!(
        "event {} {}{count}{at}: {}",
        event.type_.as_deref().unwrap_or("Normal"),
        event.reason.as_deref().unwrap_or_default(),
        event.message.as_deref().unwrap_or_default().trim()
    )
}

/// Events by the (kind, name) of the object they are about, in the facts' order (Warning first, newest first).
type EventIndex<'a> = HashMap<(&'a str, &'a str), Vec<&'a Event>>;

fn index_events(facts: &Facts) -> EventIndex<'_> {
    let mut index: EventIndex<'_> = HashMap::new();
    for e in &facts.events {
        let key = (
            e.involved_object.kind.as_deref().unwrap_or_default(),
            e.involved_object.name.as_deref().unwrap_or_default(),
        );
        index.entry(key).or_default().push(e);
    }
    index
}

fn events_of<'a>(index: &'a EventIndex<'a>, kind: &'a str, name: &'a str) -> &'a [&'a Event] {
    index.get(&(kind, name)).map_or(&[], Vec::as_slice)
}

fn events_with<'a>(events: &'a [&'a Event], reasons: &'a [&str]) -> impl Iterator<Item = &'a Event> + 'a {
    events.iter().copied().filter(move |e| e.reason.as_deref().is_some_and(|r| reasons.contains(&r)))
}

/// Log lines that explain a failure: errors, panics, exceptions; else the last lines.
pub fn decisive_lines(text: &str, max: usize) -> Vec<String> {
    const MARKERS: [&str; 14] = [
        "error",
        "exception",
        "panic",
        "fatal",
        "traceback",
        "failed",
        "refused",
        "denied",
        "cannot",
        "unable",
        "timeout",
        "timed out",
        "killed",
        "out of memory",
    ];
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let marked: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| {
            let lower = l.to_lowercase();
            MARKERS.iter().any(|m| lower.contains(m))
        })
        .collect();
    let chosen = if marked.is_empty() {
        &lines[lines.len().saturating_sub(3)..]
    } else {
        &marked[marked.len().saturating_sub(max)..]
    };
    chosen.iter().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisive_lines_prefer_errors_then_the_tail() {
        let log = "starting\nconnecting to db\npanic: dial tcp 10.0.0.5:5432: connect: connection refused\ngoroutine 1 [running]:\n";
        assert_eq!(decisive_lines(log, 5), ["panic: dial tcp 10.0.0.5:5432: connect: connection refused"]);
        assert_eq!(decisive_lines("a\nb\nc\nd\n", 5), ["b", "c", "d"]);
        assert!(decisive_lines("", 5).is_empty());
    }
}

/// Analyzer tests over the scenario fixtures, read straight from YAML into facts (no API server involved).
#[cfg(test)]
mod scenario_tests {
    use std::path::Path;

    use serde_json::Value;

    use super::*;
    use crate::facts::{ContainerLog, order_events};

    const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/scenarios");

    /// The facts the reader would gather for `namespace`, built from the fixture files.
    fn facts(namespace: &str) -> Facts {
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
        let nodes: Vec<_> = nodes
            .into_iter()
            .filter(|n| {
                needs.named.contains(n.metadata.name.as_ref().unwrap())
                    || (needs.list && crate::facts::node_matters(&facts, n))
            })
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

    fn summary(findings: &[Finding]) -> Vec<(Reason, &str, &str)> {
        findings.iter().map(|f| (f.reason, f.object.kind.as_str(), f.object.name.as_str())).collect()
    }

    fn evidence(finding: &Finding) -> String {
        finding.evidence.join("\n")
    }

    #[test]
    fn crash_loop_is_found_by_container_state_with_the_previous_log() {
        let findings = analyze(&facts("crashloop"));
        assert_eq!(summary(&findings), [(Reason::CrashLoopBackOff, "Pod", "payments-api-7b8d9c6f5-qw7zt")]);
        let text = evidence(&findings[0]);
        assert!(text.contains("lastState.terminated: reason=Error exitCode=1"), "{text}");
        assert!(text.contains("log app --previous: 2026-11-20T09:53:21.419Z ERROR payments_api: fatal: could not connect to postgres at payments-db:5432: connection refused"), "{text}");
        assert!(
            findings[0]
                .commands
                .contains(&"kubectl logs -n crashloop payments-api-7b8d9c6f5-qw7zt -c app --previous".to_string())
        );
    }

    #[test]
    fn crash_loop_is_found_between_two_crashes_too() {
        let mut facts = facts("crashloop");
        let status = &mut facts.pods[0].status.as_mut().unwrap().container_statuses.as_mut().unwrap()[0];
        status.state = Some(k8s_openapi::api::core::v1::ContainerState {
            running: Some(Default::default()),
            ..Default::default()
        });
        let findings = analyze(&facts);
        assert_eq!(summary(&findings), [(Reason::CrashLoopBackOff, "Pod", "payments-api-7b8d9c6f5-qw7zt")]);
        assert!(evidence(&findings[0]).contains("state: running again, not ready"));
    }

    #[test]
    fn oom_kill_outranks_the_back_off_it_causes() {
        let findings = analyze(&facts("oom"));
        assert_eq!(summary(&findings), [(Reason::OOMKilled, "Pod", "report-worker-6f7c8d9b5-x4m2n")]);
        let text = evidence(&findings[0]);
        assert!(text.contains("lastState.terminated: reason=OOMKilled exitCode=137"), "{text}");
        assert!(text.contains("resources.limits.memory: 256Mi"), "{text}");
    }

    #[test]
    fn image_pull_failure_is_the_root_of_the_stuck_rollout() {
        let findings = analyze(&facts("imagepull"));
        assert_eq!(
            summary(&findings),
            [
                (Reason::ImagePullBackOff, "Pod", "checkout-6c9d8e7f1-k2v9d"),
                (Reason::RolloutStuck, "Deployment", "checkout")
            ]
        );
        assert_eq!(findings[1].caused_by, Some(findings[0].link()));
        assert_eq!(findings[0].related, [findings[1].link()]);
        assert!(evidence(&findings[0]).contains("checkout:2.3.1-rc: not found"));
        assert!(evidence(&findings[1]).contains("reason=ProgressDeadlineExceeded"));
    }

    #[test]
    fn missing_secret_blocks_container_creation() {
        let findings = analyze(&facts("config"));
        assert_eq!(summary(&findings), [(Reason::CreateContainerConfigError, "Pod", "orders-8d7c6b5a4-tr5kx")]);
        assert!(evidence(&findings[0]).contains(r#"message="secret \"orders-db\" not found""#));
        assert!(findings[0].commands.contains(&"kubectl get secret -n config orders-db".to_string()));
    }

    #[test]
    fn missing_configmap_volume_is_a_mount_failure() {
        let findings = analyze(&facts("mounts"));
        assert_eq!(summary(&findings), [(Reason::FailedMount, "Pod", "web-5b6c7d8e9-hj3kl")]);
        assert!(evidence(&findings[0]).contains(r#"configmap "web-config" not found"#));
    }

    #[test]
    fn unschedulable_pod_quotes_the_scheduler() {
        let findings = analyze(&facts("pending"));
        // The scheduler names the unreachable node among the reasons: it is read, and is the node-side cause.
        assert_eq!(
            summary(&findings),
            [(Reason::NodeNotReady, "Node", "worker-3"), (Reason::Unschedulable, "Pod", "analytics-0")]
        );
        assert!(evidence(&findings[1]).contains("2 Insufficient memory"));
        assert!(evidence(&findings[1]).contains("node worker-3 refuses it: NotReady"), "{}", evidence(&findings[1]));
        // The cordoned GPU node is no reason the scheduler gives, so it is neither read nor said.
        assert!(!evidence(&findings[1]).contains("gpu-1"));
    }

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

    #[test]
    fn an_ingress_asking_for_a_class_nobody_serves() {
        let facts = facts("ingressclass");
        assert_eq!(facts.ingress_classes.len(), 2);
        let findings = analyze(&facts);
        assert_eq!(summary(&findings), [(Reason::IngressClassMissing, "Ingress", "docs")]);
        assert!(
            findings[0].summary.contains("IngressClass ngnix, which the cluster does not have; did you mean nginx?")
        );
        assert!(evidence(&findings[0]).contains("ingressclasses: nginx (k8s.io/ingress-nginx, default), traefik"));
    }

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
    fn a_cron_job_that_stopped_succeeding_is_found_by_its_schedule() {
        let findings = analyze(&facts("backups"));
        let stale =
            findings.iter().find(|f| f.reason == Reason::CronJobNoRecentSuccess).expect("CronJobNoRecentSuccess");
        assert_eq!(stale.object.name, "nightly-backup");
        assert!(
            stale.summary.contains("has not succeeded for 4d 9h (last success 2026-11-26T02:04:12Z)"),
            "{}",
            stale.summary
        );
        assert_eq!(stale.caused_by.as_ref().map(|c| c.reason), Some(Reason::JobFailed));
        let failed = findings.iter().find(|f| f.reason == Reason::JobFailed).unwrap();
        assert!(evidence(failed).contains("password authentication failed"), "{}", evidence(failed));
        // The hourly neighbour ran an hour ago; nothing is said of it.
        assert!(!findings.iter().any(|f| f.object.name.starts_with("hourly-metrics")));
        // The jobs scenario's report ran last night.
        assert!(!analyze(&facts("jobs")).iter().any(|f| f.reason == Reason::CronJobNoRecentSuccess));
    }

    #[test]
    fn failing_readiness_explains_the_empty_service() {
        let findings = analyze(&facts("readiness"));
        assert_eq!(
            summary(&findings),
            [
                (Reason::ProbeFailing, "Pod", "search-7c8d9e6f5-abc12"),
                (Reason::ServiceNoEndpoints, "Service", "search")
            ]
        );
        assert_eq!(findings[0].also_affected, ["search-7c8d9e6f5-def34"]);
        assert!(evidence(&findings[0]).contains("Readiness probe failed: HTTP probe failed with statuscode: 503"));
        assert_eq!(findings[1].caused_by, Some(findings[0].link()));
        assert!(evidence(&findings[1]).contains("0 ready addresses, 2 not ready"));
    }

    #[test]
    fn service_without_matching_pods_has_no_endpoints() {
        let findings = analyze(&facts("services"));
        assert_eq!(summary(&findings), [(Reason::ServiceNoEndpoints, "Service", "legacy-api")]);
        assert!(findings[0].summary.contains("no pod matches its selector app=legacy-api"));
    }

    #[test]
    fn pending_claim_is_the_root_of_the_unschedulable_pod() {
        let findings = analyze(&facts("storage"));
        assert_eq!(
            summary(&findings),
            [
                (Reason::PVCPending, "PersistentVolumeClaim", "data-postgres-0"),
                (Reason::Unschedulable, "Pod", "postgres-0")
            ]
        );
        assert!(evidence(&findings[0]).contains(r#"storageclass.storage.k8s.io "fast-ssd" not found"#));
        assert_eq!(findings[1].caused_by, Some(findings[0].link()));
    }

    #[test]
    fn failed_job_quotes_its_pods_logs_and_completed_jobs_stay_quiet() {
        let findings = analyze(&facts("jobs"));
        assert_eq!(summary(&findings), [(Reason::JobFailed, "Job", "db-migrate-5-0-1")]);
        let text = evidence(&findings[0]);
        assert!(text.contains("reason=BackoffLimitExceeded"), "{text}");
        assert!(text.contains(r#"relation "users" already exists"#), "{text}");
    }

    #[test]
    fn eviction_is_reported_with_the_kubelet_message() {
        let findings = analyze(&facts("evicted"));
        assert_eq!(summary(&findings), [(Reason::Evicted, "Pod", "cache-7f9b8c6d5-4xq2w")]);
        assert!(evidence(&findings[0]).contains("The node was low on resource: memory."));
    }

    #[test]
    fn unreachable_node_is_found_from_the_pod_on_it() {
        let findings = analyze(&facts("nodes"));
        assert_eq!(summary(&findings), [(Reason::NodeNotReady, "Node", "worker-3")]);
        assert!(evidence(&findings[0]).contains("Kubelet stopped posting node status."));
    }

    #[test]
    fn healthy_namespace_has_no_findings() {
        let facts = facts("healthy");
        assert!(facts.pods.len() >= 4, "the fixture is read");
        assert_eq!(summary(&analyze(&facts)), []);
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

    #[test]
    fn services_pointing_nowhere_name_the_port_or_label_that_misses() {
        let ports = analyze(&facts("ports"));
        assert_eq!(summary(&ports), [(Reason::ServicePortMismatch, "Service", "recommendations")]);
        assert_eq!(
            ports[0].summary,
            "Service recommendations sends port 80 (http) to targetPort 8080, but its pods declare no such port: they listen on 3000/http (container recommendations)"
        );
        let selector = analyze(&facts("selector"));
        assert_eq!(summary(&selector), [(Reason::ServiceNoEndpoints, "Service", "payments-api")]);
        assert!(
            selector[0].summary.ends_with("carries app=payments-api, not app=paymnets-api"),
            "{}",
            selector[0].summary
        );
    }

    #[test]
    fn a_target_port_one_of_the_selected_pods_declares_is_no_mismatch() {
        // A Service over two workloads, one declaring the port: traffic reaches that one, so no finding.
        let mut facts = facts("ports");
        let mut other = facts.pods[facts.pods.len() - 1].clone();
        other.metadata.name = Some("recommendations-canary-0".into());
        let container = &mut other.spec.as_mut().unwrap().containers[0];
        container.ports.as_mut().unwrap()[0].container_port = 8080;
        facts.pods.push(other);
        let found = analyze(&facts);
        assert!(!summary(&found).iter().any(|(r, _, _)| *r == Reason::ServicePortMismatch), "{:?}", summary(&found));
    }

    #[test]
    fn init_failures_exit_zero_loops_and_liveness_kills_are_named() {
        let init = analyze(&facts("init"));
        assert_eq!(
            summary(&init),
            [
                (Reason::InitFailing, "Pod", "accounts-9b8c7d6e5-r2t4y"),
                (Reason::ServiceNoEndpoints, "Service", "accounts")
            ]
        );
        assert!(init[0].summary.starts_with("init container migrate of pod accounts-9b8c7d6e5-r2t4y fails (exit 1)"));
        assert!(
            evidence(&init[0]).contains(r#"column "flags" of relation "accounts" already exists"#),
            "{}",
            evidence(&init[0])
        );
        assert_eq!(init[1].caused_by.as_ref().map(|l| l.reason), Some(Reason::InitFailing));

        let exit0 = analyze(&facts("exitzero"));
        assert_eq!(summary(&exit0), [(Reason::CrashLoopBackOff, "Pod", "outbox-relay-9b8c7d6e5-k3j4h")]);
        assert!(
            exit0[0].summary.contains("exits 0 and is restarted with back-off (14 restarts)"),
            "{}",
            exit0[0].summary
        );
        assert!(evidence(&exit0[0]).contains("nothing to do, exiting"), "{}", evidence(&exit0[0]));

        let liveness = analyze(&facts("liveness"));
        assert_eq!(summary(&liveness), [(Reason::LivenessRestarts, "Pod", "inventory-9b8c7d6e5-p8o7i")]);
        assert_eq!(liveness[0].severity, Severity::Warning, "ready again between the kills");
        assert!(
            liveness[0]
                .summary
                .contains("killed and restarted by its liveness probe (7 times lately, 7 restarts in all)"),
            "{}",
            liveness[0].summary
        );
        assert!(
            evidence(&liveness[0]).contains("/healthz handler blocked behind stock sync lock"),
            "{}",
            evidence(&liveness[0])
        );
    }

    #[test]
    fn ingresses_autoscalers_and_budgets_that_get_in_the_way() {
        let ingress = analyze(&facts("ingress"));
        assert_eq!(summary(&ingress), [(Reason::IngressBackendMissing, "Ingress", "shop")]);
        assert_eq!(
            ingress[0].summary,
            "Ingress shop routes shop.example.com/api nowhere: its Service api-gatway does not exist; did you mean api-gateway?"
        );
        let hpa = analyze(&facts("hpa"));
        assert_eq!(
            summary(&hpa),
            [
                (Reason::HPAScalingInactive, "HorizontalPodAutoscaler", "search-api"),
                (Reason::HPAAtMaximum, "HorizontalPodAutoscaler", "thumbnails")
            ]
        );
        let inactive = evidence(&hpa[0]);
        assert!(inactive.contains("unable to fetch metrics from resource metrics API"), "{inactive}");
        assert!(evidence(&hpa[1]).contains("metric cpu: 184% (target 70%)"), "{}", evidence(&hpa[1]));
        let pdb = analyze(&facts("pdb"));
        assert_eq!(summary(&pdb), [(Reason::PDBBlocking, "PodDisruptionBudget", "ledger-api")]);
        assert!(
            pdb[0].summary.contains("allows no disruption (minAvailable 2, 2 of 2 pods healthy)"),
            "{}",
            pdb[0].summary
        );
    }

    #[test]
    fn nodes_ordinals_and_schedules_that_hold_work_back() {
        let pressure = analyze(&facts("pressure"));
        assert_eq!(
            summary(&pressure),
            [(Reason::NodePressure, "Node", "worker-5"), (Reason::Evicted, "Pod", "log-shipper-5f4e3d2c1-e7r8t")]
        );
        assert_eq!(pressure[1].caused_by.as_ref().map(|l| l.reason), Some(Reason::NodePressure));
        assert!(evidence(&pressure[0]).contains("node worker-5 taint: node.kubernetes.io/disk-pressure:NoSchedule"));

        let sts = analyze(&facts("statefulset"));
        assert_eq!(
            summary(&sts),
            [(Reason::ProbeFailing, "Pod", "zookeeper-1"), (Reason::StatefulSetStuck, "StatefulSet", "zookeeper")]
        );
        assert_eq!(
            sts[1].summary,
            "StatefulSet zookeeper has 2 of 3 pods: zookeeper-1 is not ready, so zookeeper-2 is never created (podManagementPolicy OrderedReady)"
        );
        assert_eq!(sts[1].caused_by.as_ref().map(|l| l.object.name.as_str()), Some("zookeeper-1"));

        let cron = analyze(&facts("cronjob"));
        assert_eq!(
            summary(&cron),
            [
                (Reason::CronJobMissedSchedule, "CronJob", "ledger-sync"),
                (Reason::CronJobSuspended, "CronJob", "invoice-run")
            ]
        );
        assert!(
            cron[0].summary.contains("Missed scheduled time to start a job: 2026-11-30T11:50:00Z"),
            "{}",
            cron[0].summary
        );
    }

    #[test]
    fn a_daemonset_missing_on_a_node_names_the_pod_there() {
        let ds = analyze(&facts("daemonset"));
        assert_eq!(
            summary(&ds),
            [
                (Reason::CrashLoopBackOff, "Pod", "node-exporter-m8n2b"),
                (Reason::DaemonSetUnavailable, "DaemonSet", "node-exporter")
            ]
        );
        assert_eq!(
            ds[1].summary,
            "DaemonSet node-exporter is missing on 1 of 2 nodes: pod node-exporter-m8n2b CrashLoopBackOff"
        );
        assert_eq!(ds[1].severity, Severity::Warning, "one node of two");
        assert!(evidence(&ds[0]).contains("bind: address already in use"), "{}", evidence(&ds[0]));
    }

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

    #[test]
    fn a_rollout_in_progress_with_a_pod_inside_its_readiness_window_is_no_finding() {
        let mut facts = facts("rollout");
        assert_eq!(facts.pods.len(), 4, "the fixture is read");
        assert_eq!(summary(&analyze(&facts)), []);
        // The same pod 40 s later, still failing its probe past the window: a finding again, and the rollout whose new
        // pod fails is a warning until the controller gives up.
        facts.observed_at = facts.now().map(|now| now + jiff::SignedDuration::from_secs(40));
        let found = analyze(&facts);
        assert_eq!(
            summary(&found),
            [
                (Reason::ProbeFailing, "Pod", "storefront-7d9f8b6c5-z3x6c"),
                (Reason::RolloutStuck, "Deployment", "storefront")
            ]
        );
        assert_eq!(found[1].severity, Severity::Warning, "not critical inside the progress deadline");
    }

    #[test]
    fn restarts_days_ago_a_retried_job_and_old_warnings_are_history() {
        let mut facts = facts("history");
        assert_eq!(facts.pods.len(), 3, "the fixture is read");
        assert_eq!(summary(&analyze(&facts)), []);
        // Read ten minutes after the OOM kill instead, the same pod is a finding: recent, not history.
        let oom: jiff::Timestamp = "2026-11-28T11:59:57Z".parse().unwrap();
        facts.observed_at = Some(oom + jiff::SignedDuration::from_mins(10));
        assert_eq!(summary(&analyze(&facts)), [(Reason::OOMKilled, "Pod", "ledger-6b5c4d3e2-p5l9m")]);
    }
}
