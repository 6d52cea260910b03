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
mod logs;
mod refused;
mod routing;
mod scaling;

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
    findings.extend(cronjob_findings(facts, &events, now));
    findings.extend(service_findings(facts, &findings));
    findings.extend(port_findings(facts));
    findings.extend(routing::ingress_findings(facts));
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

fn log_evidence(facts: &Facts, pod: &str, container: &str, previous: bool, finding: &mut Finding) {
    let Some(log) = facts.log(pod, container, previous) else { return };
    let label = if previous { format!("log {container} --previous") } else { format!("log {container}") };
    match &log.text {
        Ok(text) => finding.evidence.extend(decisive_lines(text, 5).into_iter().map(|l| format!("{label}: {l}"))),
        Err(message) => finding.evidence.push(format!("{label} unavailable: {message}")),
    }
}

fn statuses(pod: &Pod) -> impl Iterator<Item = (&ContainerStatus, bool)> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten().map(|c| (c, true));
    let main = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().map(|c| (c, false));
    init.chain(main)
}

fn pod_commands(ns: &str, pod: &str) -> Vec<String> {
    vec![
        format!("kubectl describe pod -n {ns} {pod}"),
        format!("kubectl get events -n {ns} --field-selector involvedObject.name={pod}"),
    ]
}

/// Findings about one pod, from its containers' states, its conditions and its events.
fn pod_findings(facts: &Facts, now: Option<jiff::Timestamp>, pod: &Pod, events: &[&Event]) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let name = name_of(&pod.metadata);
    let this = object("Pod", ns, name);
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if let Some(stuck) = lifecycle::terminating(facts, now, pod) {
        return vec![stuck];
    }
    if phase == Some("Succeeded") || !is_problem_pod(pod) && events.is_empty() {
        return Vec::new();
    }
    let mut findings = Vec::new();
    findings.extend(lifecycle::sandbox(facts, now, pod, events));

    if phase == Some("Failed") && status.and_then(|s| s.reason.as_deref()) == Some("Evicted") {
        let message = status.and_then(|s| s.message.as_deref()).unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("its node");
        let mut f = Finding::new(
            Reason::Evicted,
            Severity::Warning,
            this.clone(),
            format!("Pod {name} was evicted from {node}: {message}"),
        );
        f.evidence.push("status.phase: Failed".into());
        f.evidence.push("status.reason: Evicted".into());
        f.evidence.push(format!("status.message: {message}"));
        f.evidence.extend(events_with(events, &["Evicted"]).map(quote_event));
        f.commands = pod_commands(ns, name);
        f.commands.push(format!("kubectl describe node {node}"));
        f.commands.push(format!("kubectl get pods -n {ns} --field-selector status.phase=Failed"));
        return vec![f];
    }

    let conditions = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten();
    if let Some(c) = conditions
        .clone()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
    {
        let message = c.message.as_deref().unwrap_or_default();
        let mut f = Finding::new(
            Reason::Unschedulable,
            Severity::Critical,
            this.clone(),
            format!("Pod {name} cannot be scheduled: {message}"),
        );
        f.evidence.push(format!("condition PodScheduled=False reason=Unschedulable: {message}"));
        f.evidence.extend(events_with(events, &["FailedScheduling"]).take(3).map(quote_event));
        f.commands = pod_commands(ns, name);
        f.commands.push("kubectl describe nodes".into());
        findings.push(f);
    }

    let mount_events: Vec<&Event> = events_with(events, &["FailedMount", "FailedAttachVolume"]).collect();
    let creating = statuses(pod)
        .any(|(c, _)| waiting_reason(c) == Some("ContainerCreating") || waiting_reason(c) == Some("PodInitializing"));
    if !mount_events.is_empty() && (creating || phase == Some("Pending")) {
        let first = mount_events[0].message.as_deref().unwrap_or_default().trim();
        let mut f = Finding::new(
            Reason::FailedMount,
            Severity::Critical,
            this.clone(),
            format!("Pod {name} cannot start because a volume cannot be mounted: {first}"),
        );
        f.evidence.extend(mount_events.iter().take(3).map(|e| quote_event(e)));
        f.commands = pod_commands(ns, name);
        findings.push(f);
    }

    for (c, init) in statuses(pod) {
        let kind = if init { "init container" } else { "container" };
        let cname = c.name.as_str();
        let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
        let reason = waiting.and_then(|w| w.reason.as_deref());
        let message = waiting.and_then(|w| w.message.as_deref()).unwrap_or_default();
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        let current = c.state.as_ref().and_then(|s| s.terminated.as_ref());
        let oom = [last, current].into_iter().flatten().find(|t| t.reason.as_deref() == Some("OOMKilled"));
        // Ready and running since a termination that is long past: history, not a finding (the context still shows
        // the restart count and the last termination).
        let history = c.ready
            && c.state.as_ref().is_some_and(|s| s.running.is_some())
            && last.and_then(|t| t.finished_at.as_ref()).zip(now).is_some_and(|(at, now)| at.0 + HISTORY < now);

        let mut f = match reason {
            Some("ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull") => {
                let mut f = Finding::new(
                    Reason::ImagePullBackOff,
                    Severity::Critical,
                    this.clone(),
                    format!("{kind} {cname} of pod {name} cannot pull its image {}", c.image),
                );
                f.evidence.push(format!(
                    "{kind} {cname} state: waiting reason={} message={message:?}",
                    reason.unwrap_or_default()
                ));
                f.evidence.push(format!("{kind} {cname} image: {}", c.image));
                f.evidence.extend(events_with(events, &["Failed"]).take(3).map(quote_event));
                f.commands = pod_commands(ns, name);
                f.commands.push(format!("kubectl get pod -n {ns} {name} -o jsonpath='{{.spec.imagePullSecrets}}'"));
                f
            }
            Some("CreateContainerConfigError" | "CreateContainerError") => {
                let mut f = Finding::new(
                    Reason::CreateContainerConfigError,
                    Severity::Critical,
                    this.clone(),
                    format!("{kind} {cname} of pod {name} cannot be created: {message}"),
                );
                f.evidence.push(format!(
                    "{kind} {cname} state: waiting reason={} message={message:?}",
                    reason.unwrap_or_default()
                ));
                f.evidence.extend(events_with(events, &["Failed"]).take(3).map(quote_event));
                f.commands = pod_commands(ns, name);
                if let Some(missing) = missing_reference(message) {
                    f.commands.push(format!("kubectl get {} -n {ns} {}", missing.0, missing.1));
                }
                f
            }
            _ if oom.is_some() && !history => {
                let t = oom.expect("checked above");
                let crashing = reason == Some("CrashLoopBackOff");
                let severity = if crashing || !c.ready { Severity::Critical } else { Severity::Warning };
                let limit = container_memory_limit(pod, cname);
                let mut f = Finding::new(
                    Reason::OOMKilled,
                    severity,
                    this.clone(),
                    format!(
                        "{kind} {cname} of pod {name} was killed for exceeding its memory limit ({}); restarted {} times",
                        limit.as_deref().unwrap_or("no limit set"),
                        c.restart_count
                    ),
                );
                let state = if last.is_some_and(|l| std::ptr::eq(l, t)) { "lastState" } else { "state" };
                f.evidence.push(format!(
                    "{kind} {cname} {state}.terminated: reason=OOMKilled exitCode={}{}",
                    t.exit_code,
                    t.finished_at.as_ref().map(|at| format!(" finishedAt={}", at.0)).unwrap_or_default()
                ));
                f.evidence.push(format!("{kind} {cname} restartCount: {}", c.restart_count));
                if let Some(reason) = reason {
                    f.evidence.push(format!("{kind} {cname} state: waiting reason={reason}"));
                }
                if let Some(limit) = &limit {
                    f.evidence.push(format!("{kind} {cname} resources.limits.memory: {limit}"));
                }
                log_evidence(facts, name, cname, true, &mut f);
                f.commands = vec![
                    format!("kubectl logs -n {ns} {name} -c {cname} --previous"),
                    format!("kubectl describe pod -n {ns} {name}"),
                    format!("kubectl top pod -n {ns} {name} --containers"),
                ];
                f
            }
            // Back-off, or caught between two crashes: restarted again and again, last exit a failure, not ready.
            _ if reason == Some("CrashLoopBackOff")
                || (c.restart_count >= 3 && !c.ready && last.is_some_and(|t| t.exit_code != 0))
                || (init && current.is_some_and(|t| t.exit_code != 0)) =>
            {
                let exit = last.or(current).map(|t| t.exit_code);
                let summary = if init {
                    let how = exit.map(|code| format!(" (exit {code})")).unwrap_or_default();
                    format!(
                        "init container {cname} of pod {name} fails{how}, so the pod's containers never start ({} restarts)",
                        c.restart_count
                    )
                } else if exit == Some(0) {
                    // The process ends as if its work were done; restartPolicy Always starts it again, with back-off.
                    format!(
                        "container {cname} of pod {name} exits 0 and is restarted with back-off ({} restarts): its process ends instead of running, and restartPolicy Always starts it again",
                        c.restart_count
                    )
                } else {
                    format!(
                        "{kind} {cname} of pod {name} keeps crashing and is restarted with back-off ({} restarts)",
                        c.restart_count
                    )
                };
                let code = if init { Reason::InitFailing } else { Reason::CrashLoopBackOff };
                let mut f = Finding::new(code, Severity::Critical, this.clone(), summary);
                match reason {
                    Some(reason) => {
                        f.evidence.push(format!("{kind} {cname} state: waiting reason={reason} message={message:?}"))
                    }
                    None => f.evidence.push(format!("{kind} {cname} state: running again, not ready")),
                }
                f.evidence.push(format!("{kind} {cname} restartCount: {}", c.restart_count));
                if let Some(t) = current.filter(|_| last.is_none()) {
                    f.evidence.push(format!(
                        "{kind} {cname} state.terminated: reason={} exitCode={}",
                        t.reason.as_deref().unwrap_or("?"),
                        t.exit_code
                    ));
                }
                if let Some(t) = last {
                    f.evidence.push(format!(
                        "{kind} {cname} lastState.terminated: reason={} exitCode={}{}",
                        t.reason.as_deref().unwrap_or("?"),
                        t.exit_code,
                        t.finished_at.as_ref().map(|at| format!(" finishedAt={}", at.0)).unwrap_or_default()
                    ));
                    if let Some(m) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
                        f.evidence.push(format!("{kind} {cname} lastState.terminated.message: {}", m.trim()));
                    }
                }
                // A container that failed once and is not restarted (restartPolicy Never) has only its current log.
                let previous = last.is_some();
                log_evidence(facts, name, cname, previous, &mut f);
                f.evidence.extend(events_with(events, &["Unhealthy"]).take(2).map(quote_event));
                f.commands = vec![
                    format!("kubectl logs -n {ns} {name} -c {cname}{}", if previous { " --previous" } else { "" }),
                    format!("kubectl describe pod -n {ns} {name}"),
                ];
                f
            }
            _ if !init && !liveness_kills(events, cname, now).is_empty() => {
                let kills = liveness_kills(events, cname, now);
                let killed: i32 = kills.iter().map(|e| e.count.unwrap_or(1)).sum();
                let probe = events_with(events, &["Unhealthy"])
                    .find(|e| e.message.as_deref().is_some_and(|m| m.starts_with("Liveness probe failed")))
                    .and_then(|e| e.message.as_deref())
                    .unwrap_or("Liveness probe failed")
                    .trim();
                let severity = if c.ready { Severity::Warning } else { Severity::Critical };
                let mut f = Finding::new(
                    Reason::LivenessRestarts,
                    severity,
                    this.clone(),
                    format!(
                        "container {cname} of pod {name} is killed and restarted by its liveness probe ({killed} times lately, {} restarts in all): {probe}",
                        c.restart_count
                    ),
                );
                f.evidence.extend(kills.iter().take(1).map(|e| quote_event(e)));
                f.evidence.extend(
                    events_with(events, &["Unhealthy"])
                        .filter(|e| e.message.as_deref().is_some_and(|m| m.starts_with("Liveness")))
                        .take(1)
                        .map(quote_event),
                );
                f.evidence.push(format!("container {cname} restartCount: {}, ready: {}", c.restart_count, c.ready));
                if let Some(t) = last {
                    f.evidence.push(format!(
                        "container {cname} lastState.terminated: reason={} exitCode={}",
                        t.reason.as_deref().unwrap_or("?"),
                        t.exit_code
                    ));
                }
                if let Some(probe) = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|k| k.name == cname))
                    .and_then(|k| k.liveness_probe.as_ref())
                {
                    f.evidence.push(format!(
                        "container {cname} livenessProbe: initialDelaySeconds={} periodSeconds={} timeoutSeconds={} failureThreshold={}",
                        probe.initial_delay_seconds.unwrap_or(0),
                        probe.period_seconds.unwrap_or(10),
                        probe.timeout_seconds.unwrap_or(1),
                        probe.failure_threshold.unwrap_or(3)
                    ));
                }
                log_evidence(facts, name, cname, true, &mut f);
                f.commands = vec![
                    format!("kubectl logs -n {ns} {name} -c {cname} --previous"),
                    format!("kubectl describe pod -n {ns} {name}"),
                    format!(
                        "kubectl get pod -n {ns} {name} -o jsonpath='{{.spec.containers[?(@.name==\"{cname}\")].livenessProbe}}'"
                    ),
                ];
                f
            }
            _ if !init && !c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()) => {
                let unhealthy: Vec<&Event> = events_with(events, &["Unhealthy"])
                    .filter(|e| e.message.as_deref().is_some_and(|m| m.contains("probe")))
                    .collect();
                let has_probe = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|k| k.name == cname))
                    .is_some_and(|k| k.readiness_probe.is_some() || k.startup_probe.is_some());
                if unhealthy.is_empty() && !has_probe {
                    continue;
                }
                // Still starting: the probes have not had their initial delay and failure threshold yet.
                if let (Some(window_ends), Some(now)) = (readiness_window_end(pod, c), now)
                    && now < window_ends
                {
                    continue;
                }
                let probe =
                    unhealthy.first().and_then(|e| e.message.as_deref()).unwrap_or("readiness probe not passing");
                let mut f = Finding::new(
                    Reason::ProbeFailing,
                    Severity::Warning,
                    this.clone(),
                    format!("{kind} {cname} of pod {name} is running but not ready: {}", probe.trim()),
                );
                f.evidence
                    .push(format!("{kind} {cname} ready: false (state running, restartCount {})", c.restart_count));
                f.evidence.extend(unhealthy.iter().take(3).map(|e| quote_event(e)));
                log_evidence(facts, name, cname, false, &mut f);
                f.commands = vec![
                    format!("kubectl describe pod -n {ns} {name}"),
                    format!("kubectl logs -n {ns} {name} -c {cname} --tail=50"),
                    format!(
                        "kubectl get pod -n {ns} {name} -o jsonpath='{{.spec.containers[?(@.name==\"{cname}\")].readinessProbe}}'"
                    ),
                ];
                f
            }
            _ => continue,
        };
        f.container = Some(cname.to_string());
        findings.push(f);
    }
    findings
}

/// The kubelet's recent `Killing` events for `container` because its liveness probe failed.
fn liveness_kills<'a>(events: &[&'a Event], container: &str, now: Option<jiff::Timestamp>) -> Vec<&'a Event> {
    let killed = format!("Container {container} failed liveness probe");
    events
        .iter()
        .copied()
        .filter(|e| e.reason.as_deref() == Some("Killing"))
        .filter(|e| e.message.as_deref().is_some_and(|m| m.starts_with(&killed)))
        .filter(|e| match (event_time(e), now) {
            (Some(at), Some(now)) => at + HISTORY >= now,
            _ => true,
        })
        .collect()
}

/// How long past a container's last termination a ready container's restart is history rather than a finding.
const HISTORY: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// When a running container's probes have had their chance: its start, plus the startup probe's and then the
/// readiness probe's initial delay and failures allowed (Kubernetes' defaults where unset: period 10 s, threshold 3).
fn readiness_window_end(pod: &Pod, status: &ContainerStatus) -> Option<jiff::Timestamp> {
    let started = status.state.as_ref()?.running.as_ref()?.started_at.as_ref()?.0;
    let spec = pod.spec.as_ref()?.containers.iter().find(|c| c.name == status.name)?;
    let window = |probe: &k8s_openapi::api::core::v1::Probe| {
        let delay = i64::from(probe.initial_delay_seconds.unwrap_or(0));
        let period = i64::from(probe.period_seconds.unwrap_or(10));
        let threshold = i64::from(probe.failure_threshold.unwrap_or(3));
        delay + period * threshold
    };
    let seconds = spec.startup_probe.as_ref().map_or(0, window) + spec.readiness_probe.as_ref().map_or(0, window);
    Some(started + jiff::SignedDuration::from_secs(seconds))
}

fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
}

fn container_memory_limit(pod: &Pod, container: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let c = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == container)?;
    c.resources.as_ref()?.limits.as_ref()?.get("memory").map(|q| q.0.clone())
}

/// `secret "db" not found` → (`secret`, `db`); also configmaps. Used for a command that checks the reference.
fn missing_reference(message: &str) -> Option<(&'static str, String)> {
    for (word, kind) in [("secret", "secret"), ("configmap", "configmap")] {
        if let Some(rest) = message.split(&format!("{word} \"")).nth(1) {
            return rest.split('"').next().map(|n| (kind, n.to_string()));
        }
    }
    None
}

/// Pods of one owner that fail the same way become one finding that names the others.
fn group_replicas(facts: &Facts, findings: Vec<Finding>) -> Vec<Finding> {
    let owners: HashMap<&str, (&str, &str)> = facts
        .pods
        .iter()
        .filter_map(|p| controller_of(&p.metadata).map(|owner| (name_of(&p.metadata), owner)))
        .collect();
    let mut grouped: Vec<Finding> = Vec::new();
    // (reason, container, owner) → position of the finding that stands for the group.
    type Group<'a> = (Reason, Option<String>, (&'a str, &'a str));
    let mut index: HashMap<Group<'_>, usize> = HashMap::new();
    for finding in findings {
        let Some(owner) = owners.get(finding.object.name.as_str()).copied() else {
            grouped.push(finding);
            continue;
        };
        let key = (finding.reason, finding.container.clone(), owner);
        match index.get(&key) {
            Some(&i) => grouped[i].also_affected.push(finding.object.name.clone()),
            None => {
                index.insert(key, grouped.len());
                grouped.push(finding);
            }
        }
    }
    for f in &mut grouped {
        if !f.also_affected.is_empty() {
            let owner = owners[f.object.name.as_str()];
            f.summary.push_str(&format!(
                " (and {} more pod{} of {} {})",
                f.also_affected.len(),
                if f.also_affected.len() == 1 { "" } else { "s" },
                owner.0.to_lowercase(),
                owner.1
            ));
        }
    }
    grouped
}

fn node_findings(facts: &Facts) -> Vec<Finding> {
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
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
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

fn pvc_findings(facts: &Facts, index: &EventIndex<'_>) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for pvc in &facts.pvcs {
        let name = name_of(&pvc.metadata);
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Pending") {
            continue;
        }
        let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref());
        let events: Vec<&Event> = events_with(
            events_of(index, "PersistentVolumeClaim", name),
            &["ProvisioningFailed", "FailedBinding", "ExternalProvisioning"],
        )
        .collect();
        let why = events.first().and_then(|e| e.message.as_deref()).unwrap_or("no volume has been bound to it");
        let mut f = Finding::new(
            Reason::PVCPending,
            Severity::Critical,
            object("PersistentVolumeClaim", ns, name),
            format!("PersistentVolumeClaim {name} is not bound: {}", why.trim()),
        );
        f.evidence.push("status.phase: Pending".into());
        f.evidence.push(format!("spec.storageClassName: {}", class.unwrap_or("<none>")));
        f.evidence.extend(events.iter().take(3).map(|e| quote_event(e)));
        f.commands = vec![
            format!("kubectl describe pvc -n {ns} {name}"),
            "kubectl get storageclass".into(),
            format!("kubectl get events -n {ns} --field-selector involvedObject.name={name}"),
        ];
        findings.push(f);
    }
    findings
}

fn job_findings(facts: &Facts) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for job in &facts.jobs {
        let name = name_of(&job.metadata);
        let status = job.status.as_ref();
        let conditions = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten();
        let Some(failed) = conditions.clone().find(|c| c.type_ == "Failed" && c.status == "True") else { continue };
        let reason = failed.reason.as_deref().unwrap_or("Failed");
        let message = failed.message.as_deref().unwrap_or_default();
        let mut f = Finding::new(
            Reason::JobFailed,
            Severity::Critical,
            object("Job", ns, name),
            format!("Job {name} failed ({reason}): {message}"),
        );
        f.evidence.push(format!("condition Failed=True reason={reason}: {message}"));
        let backoff = job.spec.as_ref().and_then(|s| s.backoff_limit).unwrap_or(6);
        f.evidence
            .push(format!("status.failed: {} (backoffLimit {backoff})", status.and_then(|s| s.failed).unwrap_or(0)));
        if let Some((kind, owner)) = controller_of(&job.metadata) {
            f.evidence.push(format!("created by {} {owner}", kind.to_lowercase()));
        }
        let mut pods: Vec<&Pod> =
            facts.pods.iter().filter(|p| controller_of(&p.metadata) == Some(("Job", name))).collect();
        pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)));
        for pod in pods.iter().take(2) {
            let pod_name = name_of(&pod.metadata);
            for (c, _) in statuses(pod) {
                let terminated = c
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .or(c.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
                if let Some(t) = terminated.filter(|t| t.exit_code != 0) {
                    f.evidence.push(format!(
                        "pod {pod_name} container {} terminated: reason={} exitCode={}",
                        c.name,
                        t.reason.as_deref().unwrap_or("?"),
                        t.exit_code
                    ));
                    let current = c.state.as_ref().is_some_and(|s| s.terminated.is_some());
                    let before = f.evidence.len();
                    log_evidence(facts, pod_name, &c.name, !current, &mut f);
                    for line in &mut f.evidence[before..] {
                        *line = format!("pod {pod_name} {line}");
                    }
                }
            }
        }
        f.commands = vec![
            format!("kubectl describe job -n {ns} {name}"),
            format!("kubectl get pods -n {ns} -l job-name={name}"),
        ];
        if let Some(pod) = pods.first() {
            f.commands.insert(0, format!("kubectl logs -n {ns} {}", name_of(&pod.metadata)));
        }
        findings.push(f);
    }
    findings
}

/// The ReplicaSets a Deployment owns, newest revision first.
fn replicasets_of<'a>(facts: &'a Facts, deployment: &str) -> Vec<&'a k8s_openapi::api::apps::v1::ReplicaSet> {
    let mut sets: Vec<_> =
        facts.replicasets.iter().filter(|rs| controller_of(&rs.metadata) == Some(("Deployment", deployment))).collect();
    sets.sort_by_key(|rs| std::cmp::Reverse(revision(&rs.metadata)));
    sets
}

fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn rollout_findings(facts: &Facts, pod_findings: &[Finding]) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for deployment in &facts.deployments {
        let name = name_of(&deployment.metadata);
        let status = deployment.status.as_ref();
        let desired = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let updated = status.and_then(|s| s.updated_replicas).unwrap_or(0);
        let available = status.and_then(|s| s.available_replicas).unwrap_or(0);
        let unavailable = status.and_then(|s| s.unavailable_replicas).unwrap_or(0);
        let total = status.and_then(|s| s.replicas).unwrap_or(0);
        let conditions = status.and_then(|s| s.conditions.as_ref()).into_iter().flatten();
        let deadline = conditions.clone().find(|c| c.type_ == "Progressing" && c.status == "False");
        let newest = replicasets_of(facts, name).into_iter().next();
        let failing_new_pods: Vec<&Finding> = newest
            .map(|rs| pods_owned_by(facts, "ReplicaSet", name_of(&rs.metadata)))
            .unwrap_or_default()
            .iter()
            .flat_map(|pod| {
                pod_findings.iter().filter(move |f| {
                    f.object.kind == "Pod" && (f.object.name == *pod || f.also_affected.iter().any(|a| a == pod))
                })
            })
            .collect();
        // The new ReplicaSet cannot create its pods at all (a quota, admission): the root of the stuck rollout.
        let refused = newest.and_then(|rs| {
            let rs = name_of(&rs.metadata);
            pod_findings
                .iter()
                .find(|f| f.reason == Reason::FailedCreate && f.object.kind == "ReplicaSet" && f.object.name == rs)
        });
        // A rollout is under way while old replicas remain; a finished rollout with crashing pods is not stuck.
        let rolling = updated < desired || total > updated;
        let stalled = rolling && (!failing_new_pods.is_empty() || refused.is_some());
        if deadline.is_none() && !stalled {
            continue;
        }
        let new_rs = newest.map(|rs| name_of(&rs.metadata)).unwrap_or("?");
        let summary = match deadline {
            Some(c) => format!(
                "Deployment {name} rollout is stuck: {}",
                c.message.as_deref().unwrap_or("progress deadline exceeded")
            ),
            None => {
                format!("Deployment {name} rollout is not progressing: pods of the new replicaset {new_rs} are failing")
            }
        };
        // Critical once the controller has given up (the progress deadline passed); before that, a rollout whose new
        // pods fail is heading there, a warning beside the pods' own findings.
        let severity = if deadline.is_some() { Severity::Critical } else { Severity::Warning };
        let mut f = Finding::new(Reason::RolloutStuck, severity, object("Deployment", ns, name), summary);
        if let Some(c) = deadline {
            f.evidence.push(format!(
                "condition Progressing=False reason={}: {}",
                c.reason.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            ));
        }
        f.evidence.push(format!(
            "replicas: desired {desired}, updated {updated}, available {available}, unavailable {unavailable}"
        ));
        if let Some(rs) = newest {
            f.evidence.push(format!("newest replicaset {new_rs} (revision {})", revision(&rs.metadata)));
        }
        for pod in &failing_new_pods {
            f.evidence.push(format!("pod {} under {new_rs}: {}", pod.object.name, pod.reason));
        }
        if let Some(refused) = refused {
            f.evidence.push(format!("replicaset {new_rs}: {}", refused.summary));
        }
        f.caused_by = refused.or(failing_new_pods.first().copied()).map(Finding::link);
        f.commands = vec![
            format!("kubectl rollout status deployment/{name} -n {ns} --timeout=10s"),
            format!("kubectl rollout history deployment/{name} -n {ns}"),
            format!("kubectl describe deployment -n {ns} {name}"),
            format!("kubectl get rs -n {ns} -l {}", selector_text(deployment)),
        ];
        findings.push(f);
    }
    findings
}

fn selector_text(deployment: &Deployment) -> String {
    deployment.spec.as_ref().map(|s| crate::facts::label_selector_string(&s.selector)).unwrap_or_default()
}

fn pods_owned_by<'a>(facts: &'a Facts, kind: &str, owner: &str) -> Vec<&'a str> {
    facts
        .pods
        .iter()
        .filter(|p| controller_of(&p.metadata) == Some((kind, owner)))
        .map(|p| name_of(&p.metadata))
        .collect()
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

fn service_findings(facts: &Facts, pod_findings: &[Finding]) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for service in &facts.services {
        let name = name_of(&service.metadata);
        let Some(spec) = &service.spec else { continue };
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        if facts.unread.contains("endpoints") {
            continue; // endpoints were not read (a gap says why): no basis for a finding
        }
        // A selector service has an Endpoints object once the controller has seen it; none means no addresses.
        let endpoints = facts.endpoints.iter().find(|e| name_of(&e.metadata) == name);
        let subsets = endpoints.and_then(|e| e.subsets.as_ref()).into_iter().flatten();
        let ready: usize = subsets.clone().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
        let not_ready: usize = subsets.map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
        if ready > 0 {
            continue;
        }
        let selected: Vec<&Pod> = facts.pods.iter().filter(|p| selects(selector, p)).collect();
        let selector_text = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let near = near_miss(facts, selector);
        let summary = if selected.is_empty() {
            let hint = near.as_ref().map(|(pod, key, wanted, found)| {
                format!("; pod {pod} (and its like) carries {key}={found}, not {key}={wanted}")
            });
            format!(
                "Service {name} has no endpoints: no pod matches its selector {selector_text}{}",
                hint.unwrap_or_default()
            )
        } else {
            format!(
                "Service {name} has no ready endpoints: {} pod(s) match {selector_text} but none is ready",
                selected.len()
            )
        };
        let mut f = Finding::new(Reason::ServiceNoEndpoints, Severity::Critical, object("Service", ns, name), summary);
        f.evidence.push(format!("service {name} spec.selector: {selector_text}"));
        if let (true, Some((pod, key, wanted, found))) = (selected.is_empty(), &near) {
            f.evidence.push(format!("near miss: pod {pod} has label {key}={found}; the selector wants {key}={wanted}"));
        }
        // No pod, because the workload that would make them cannot: that is the cause.
        if selected.is_empty()
            && let Some(refused) = pod_findings.iter().find(|f| {
                f.reason == Reason::FailedCreate
                    && template_labels(facts, &f.object.kind, &f.object.name)
                        .is_some_and(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
        {
            f.evidence.push(format!(
                "{} {}: {}",
                refused.object.kind.to_lowercase(),
                refused.object.name,
                refused.summary
            ));
            f.caused_by = Some(refused.link());
        }
        f.evidence.push(format!("endpoints {name}: {ready} ready addresses, {not_ready} not ready"));
        for pod in selected.iter().take(5) {
            let pod_name = name_of(&pod.metadata);
            let problems: Vec<String> = pod_findings
                .iter()
                .filter(|f| {
                    f.object.kind == "Pod"
                        && (f.object.name == pod_name || f.also_affected.iter().any(|a| a == pod_name))
                })
                .map(|f| f.reason.to_string())
                .collect();
            if f.caused_by.is_none() {
                f.caused_by = pod_findings
                    .iter()
                    .find(|f| f.object.kind == "Pod" && f.object.name == pod_name)
                    .map(Finding::link);
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
            let detail = if problems.is_empty() { String::new() } else { format!(" ({})", problems.join(", ")) };
            f.evidence.push(format!("selected pod {pod_name}: phase {phase}, not ready{detail}"));
        }
        f.commands = vec![
            format!("kubectl get endpoints -n {ns} {name}"),
            format!("kubectl get pods -n {ns} -l {selector_text} -o wide"),
            format!("kubectl describe service -n {ns} {name}"),
        ];
        findings.push(f);
    }
    findings
}

/// The pod whose labels match `selector` in every key but one, with that key, the value wanted and the value found.
fn near_miss(facts: &Facts, selector: &BTreeMap<String, String>) -> Option<(String, String, String, String)> {
    facts.pods.iter().find_map(|pod| {
        let labels = pod.metadata.labels.as_ref()?;
        let mut missed = selector.iter().filter(|(k, v)| labels.get(*k) != Some(*v));
        let (key, wanted) = missed.next()?;
        if missed.next().is_some() {
            return None;
        }
        let found = labels.get(key)?;
        Some((name_of(&pod.metadata).to_string(), key.clone(), wanted.clone(), found.clone()))
    })
}

/// Services whose `targetPort` no container of their pods declares: the endpoints exist, the connections fail.
fn port_findings(facts: &Facts) -> Vec<Finding> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for service in &facts.services {
        let name = name_of(&service.metadata);
        let Some(spec) = &service.spec else { continue };
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else { continue };
        let selected: Vec<&Pod> = facts.pods.iter().filter(|p| selects(selector, p)).collect();
        let Some(pod) = selected.first() else { continue };
        let declared: Vec<(Option<&str>, i32, &str)> = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten().map(move |p| (p.name.as_deref(), p.container_port, c.name.as_str())))
            .collect();
        if declared.is_empty() {
            continue; // ports need not be declared: nothing to compare with
        }
        for port in spec.ports.iter().flatten() {
            let target = port.target_port.clone().unwrap_or(IntOrString::Int(port.port));
            let found = match &target {
                IntOrString::Int(number) => declared.iter().any(|(_, p, _)| p == number),
                IntOrString::String(named) => declared.iter().any(|(n, _, _)| *n == Some(named.as_str())),
            };
            if found {
                continue;
            }
            let target = match &target {
                IntOrString::Int(number) => number.to_string(),
                IntOrString::String(named) => format!("the port named {named}"),
            };
            let listens: Vec<String> = declared
                .iter()
                .map(|(n, p, c)| format!("{p}{} (container {c})", n.map(|n| format!("/{n}")).unwrap_or_default()))
                .collect();
            let pod_name = name_of(&pod.metadata);
            let port_name = port.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            let mut f = Finding::new(
                Reason::ServicePortMismatch,
                Severity::Critical,
                object("Service", ns, name),
                format!(
                    "Service {name} sends port {}{port_name} to targetPort {target}, but its pods declare no such port: they listen on {}",
                    port.port,
                    listens.join(", ")
                ),
            );
            f.evidence.push(format!("service {name} port {}{port_name}: targetPort {target}", port.port));
            f.evidence.push(format!("pod {pod_name} containers' ports: {}", listens.join(", ")));
            f.evidence.push(format!("{} pod(s) selected", selected.len()));
            f.commands = vec![
                format!("kubectl describe service -n {ns} {name}"),
                format!("kubectl get endpoints -n {ns} {name}"),
                format!("kubectl get pod -n {ns} {pod_name} -o jsonpath='{{.spec.containers[*].ports}}'"),
            ];
            findings.push(f);
        }
    }
    findings
}

/// The labels a workload gives the pods it creates.
fn template_labels<'a>(facts: &'a Facts, kind: &str, name: &str) -> Option<&'a BTreeMap<String, String>> {
    let named = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| name_of(meta) == name;
    let template = match kind {
        "ReplicaSet" => {
            facts.replicasets.iter().find(|o| named(&o.metadata)).and_then(|o| o.spec.as_ref()?.template.as_ref())
        }
        "StatefulSet" => {
            facts.statefulsets.iter().find(|o| named(&o.metadata)).and_then(|o| Some(&o.spec.as_ref()?.template))
        }
        "DaemonSet" => {
            facts.daemonsets.iter().find(|o| named(&o.metadata)).and_then(|o| Some(&o.spec.as_ref()?.template))
        }
        "Job" => facts.jobs.iter().find(|o| named(&o.metadata)).and_then(|o| Some(&o.spec.as_ref()?.template)),
        _ => None,
    }?;
    template.metadata.as_ref()?.labels.as_ref()
}

/// A ready node under pressure (memory, disk, PIDs, network) or cordoned: what it does to the pods on it.
fn node_pressure(facts: &Facts, node: &k8s_openapi::api::core::v1::Node) -> Option<Finding> {
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

/// StatefulSets whose next ordinal is never created because the one before it is not ready (OrderedReady).
fn statefulset_findings(facts: &Facts, pod_findings: &[Finding]) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for sts in &facts.statefulsets {
        let name = name_of(&sts.metadata);
        let Some(spec) = &sts.spec else { continue };
        let desired = spec.replicas.unwrap_or(1);
        let have = sts.status.as_ref().map_or(0, |s| s.replicas);
        let ordered = spec.pod_management_policy.as_deref().unwrap_or("OrderedReady") == "OrderedReady";
        if !ordered || have >= desired || have == 0 {
            continue;
        }
        let last = format!("{name}-{}", have - 1);
        let Some(pod) = facts.pods.iter().find(|p| name_of(&p.metadata) == last) else { continue };
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            continue;
        }
        let next = format!("{name}-{have}");
        let mut f = Finding::new(
            Reason::StatefulSetStuck,
            Severity::Critical,
            object("StatefulSet", ns, name),
            format!(
                "StatefulSet {name} has {have} of {desired} pods: {last} is not ready, so {next} is never created (podManagementPolicy OrderedReady)"
            ),
        );
        let ready_count = sts.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        f.evidence.push(format!("replicas: desired {desired}, created {have}, ready {ready_count}"));
        f.evidence.push(format!("pod {last}: not ready"));
        let cause = pod_findings.iter().find(|f| f.object.kind == "Pod" && f.object.name == last);
        if let Some(cause) = cause {
            f.evidence.push(format!("pod {last}: {}", cause.summary));
            f.caused_by = Some(cause.link());
        }
        f.commands = vec![
            format!("kubectl describe statefulset -n {ns} {name}"),
            format!("kubectl describe pod -n {ns} {last}"),
            format!("kubectl get pods -n {ns} -l {}", crate::facts::label_selector_string(&spec.selector)),
        ];
        findings.push(f);
    }
    findings
}

/// DaemonSets missing on some of their nodes: pods not available, or not scheduled where they should be.
fn daemonset_findings(facts: &Facts, pod_findings: &[Finding]) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for ds in &facts.daemonsets {
        let name = name_of(&ds.metadata);
        let Some(status) = &ds.status else { continue };
        let desired = status.desired_number_scheduled;
        let unavailable = status.number_unavailable.unwrap_or(0);
        let unscheduled = desired - status.current_number_scheduled;
        if unavailable <= 0 && unscheduled <= 0 {
            continue;
        }
        let failing: Vec<&Finding> = pods_owned_by(facts, "DaemonSet", name)
            .into_iter()
            .filter_map(|pod| {
                pod_findings.iter().find(|f| {
                    f.object.kind == "Pod" && (f.object.name == pod || f.also_affected.iter().any(|a| a == pod))
                })
            })
            .collect();
        let missing = unavailable.max(unscheduled);
        let severity = if missing >= desired { Severity::Critical } else { Severity::Warning };
        let why = match failing.first() {
            Some(f) => format!(": pod {} {}", f.object.name, f.reason),
            None if unscheduled > 0 => format!(": {unscheduled} node(s) have no pod scheduled"),
            None => String::new(),
        };
        let mut f = Finding::new(
            Reason::DaemonSetUnavailable,
            severity,
            object("DaemonSet", ns, name),
            format!("DaemonSet {name} is missing on {missing} of {desired} nodes{why}"),
        );
        f.evidence.push(format!(
            "status: desiredNumberScheduled {desired}, currentNumberScheduled {}, numberReady {}, numberUnavailable {unavailable}, numberMisscheduled {}",
            status.current_number_scheduled, status.number_ready, status.number_misscheduled
        ));
        for failing in &failing {
            let node = facts
                .pods
                .iter()
                .find(|p| name_of(&p.metadata) == failing.object.name)
                .and_then(|p| p.spec.as_ref()?.node_name.clone())
                .unwrap_or_default();
            f.evidence.push(format!("pod {} on {node}: {}", failing.object.name, failing.reason));
        }
        f.caused_by = failing.first().map(|f| f.link());
        f.commands = vec![
            format!("kubectl describe daemonset -n {ns} {name}"),
            format!(
                "kubectl get pods -n {ns} -o wide -l {}",
                ds.spec.as_ref().map(|s| crate::facts::label_selector_string(&s.selector)).unwrap_or_default()
            ),
        ];
        findings.push(f);
    }
    findings
}

/// CronJobs that will not run: suspended, or missing their schedules.
fn cronjob_findings(facts: &Facts, index: &EventIndex<'_>, now: Option<jiff::Timestamp>) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for cronjob in &facts.cronjobs {
        let name = name_of(&cronjob.metadata);
        let Some(spec) = &cronjob.spec else { continue };
        let status = cronjob.status.as_ref();
        let when = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.map_or("never".to_string(), |t| t.0.to_string())
        };
        let last_schedule = when(status.and_then(|s| s.last_schedule_time.as_ref()));
        let last_success = when(status.and_then(|s| s.last_successful_time.as_ref()));
        let commands = vec![
            format!("kubectl describe cronjob -n {ns} {name}"),
            format!("kubectl get jobs -n {ns} --sort-by=.metadata.creationTimestamp"),
        ];
        if spec.suspend == Some(true) {
            let mut f = Finding::new(
                Reason::CronJobSuspended,
                Severity::Warning,
                object("CronJob", ns, name),
                format!(
                    "CronJob {name} is suspended: its schedule {} starts no Job; last run {last_schedule}",
                    spec.schedule
                ),
            );
            f.evidence.push("spec.suspend: true".to_string());
            f.evidence.push(format!("status: lastScheduleTime {last_schedule}, lastSuccessfulTime {last_success}"));
            f.commands = commands;
            findings.push(f);
            continue;
        }
        let missed: Vec<&Event> =
            events_with(events_of(index, "CronJob", name), &["MissSchedule", "TooManyMissedTimes"])
                .filter(|e| match (event_time(e), now) {
                    (Some(at), Some(now)) => at + HISTORY >= now,
                    _ => true,
                })
                .collect();
        if let Some(latest) = missed.first() {
            let mut f = Finding::new(
                Reason::CronJobMissedSchedule,
                Severity::Critical,
                object("CronJob", ns, name),
                format!(
                    "CronJob {name} misses its schedule {}: {}; last run {last_schedule}",
                    spec.schedule,
                    latest.message.as_deref().unwrap_or_default().trim()
                ),
            );
            f.evidence.extend(missed.iter().take(2).map(|e| quote_event(e)));
            f.evidence.push(format!("status: lastScheduleTime {last_schedule}, lastSuccessfulTime {last_success}"));
            if let Some(deadline) = spec.starting_deadline_seconds {
                f.evidence.push(format!("spec.startingDeadlineSeconds: {deadline}"));
            }
            if spec.concurrency_policy.as_deref() == Some("Forbid") {
                f.evidence.push("spec.concurrencyPolicy: Forbid (a Job still running blocks the next)".to_string());
            }
            f.commands = commands;
            findings.push(f);
        }
    }
    findings
}

/// Connects pods to the node or claim behind their problem, and gives every root cause the list of what follows
/// from it.
fn link(facts: &Facts, findings: &mut [Finding]) {
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
fn rank(findings: &mut [Finding]) {
    findings.sort_by_cached_key(|f| {
        (f.caused_by.is_some(), f.severity, std::cmp::Reverse(f.related.len()), f.reason, f.object.clone())
    });
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

    #[test]
    fn missing_references_are_extracted() {
        assert_eq!(missing_reference("secret \"db-creds\" not found"), Some(("secret", "db-creds".into())));
        assert_eq!(missing_reference("couldn't find key url in ConfigMap shop/settings"), None);
        assert_eq!(missing_reference("configmap \"settings\" not found"), Some(("configmap", "settings".into())));
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
        let mut nodes = Vec::new();
        for entry in std::fs::read_dir(SCENARIOS).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let list: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for item in list["items"].as_array().unwrap() {
                let kind = item["kind"].as_str().unwrap();
                if kind == "Node" {
                    nodes.push(serde_json::from_value::<k8s_openapi::api::core::v1::Node>(item.clone()).unwrap());
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
                    _ => {}
                }
            }
        }
        facts.events = order_events(events);
        let on_problem_nodes: Vec<String> = facts
            .pods
            .iter()
            .filter(|p| is_problem_pod(p))
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .collect();
        facts.nodes =
            nodes.into_iter().filter(|n| on_problem_nodes.contains(n.metadata.name.as_ref().unwrap())).collect();
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
        assert_eq!(summary(&findings), [(Reason::Unschedulable, "Pod", "analytics-0")]);
        assert!(evidence(&findings[0]).contains("2 Insufficient memory"));
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
