//! Deterministic findings: what is wrong, proven from the facts alone, with no model involved.
//!
//! [`analyze`] runs one analyzer per concern over [`Facts`], then links related findings (a stuck rollout to the pod
//! that cannot start under it, a pod to the node it is stranded on) and ranks root causes first. Every reason code is
//! documented in `docs/findings.md`; the codes are stable, so alerts and dashboards can key on them.

use std::collections::BTreeMap;
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
#[cfg(test)]
mod testing;
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
type EventIndex<'a> = foldhash::HashMap<(&'a str, &'a str), Vec<&'a Event>>;

fn index_events(facts: &Facts) -> EventIndex<'_> {
    let mut index: EventIndex<'_> = EventIndex::default();
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
    use super::testing::*;

    #[test]
    fn healthy_namespace_has_no_findings() {
        let facts = facts("healthy");
        assert!(facts.pods.len() >= 4, "the fixture is read");
        assert_eq!(summary(&analyze(&facts)), []);
    }
}
