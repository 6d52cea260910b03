//! Pods: container states, terminations, probes and the kubelet's events, one finding per failing container, and the
//! folding of one owner's pods that fail alike into one finding.

use super::*;

pub(super) fn log_evidence(facts: &Facts, pod: &str, container: &str, previous: bool, finding: &mut Finding) {
    let Some(log) = facts.log(pod, container, previous) else { return };
    let label = if previous { format!("log {container} --previous") } else { format!("log {container}") };
    match &log.text {
        Ok(text) => finding.evidence.extend(decisive_lines(text, 5).into_iter().map(|l| format!("{label}: {l}"))),
        Err(message) => finding.evidence.push(format!("{label} unavailable: {message}")),
    }
}

pub(super) fn statuses(pod: &Pod) -> impl Iterator<Item = (&ContainerStatus, bool)> {
    let status = pod.status.as_ref();
    let init = status.and_then(|s| s.init_container_statuses.as_ref()).into_iter().flatten().map(|c| (c, true));
    let main = status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().map(|c| (c, false));
    init.chain(main)
}

pub(super) fn pod_commands(ns: &str, pod: &str) -> Vec<String> {
    vec![
        format!("kubectl describe pod -n {ns} {pod}"),
        format!("kubectl get events -n {ns} --field-selector involvedObject.name={pod}"),
    ]
}

/// Findings about one pod, from its containers' states, its conditions and its events.
pub(super) fn pod_findings(facts: &Facts, now: Option<jiff::Timestamp>, pod: &Pod, events: &[&Event]) -> Vec<Finding> {
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
pub(super) fn liveness_kills<'a>(
    events: &[&'a Event],
    container: &str,
    now: Option<jiff::Timestamp>,
) -> Vec<&'a Event> {
    let killed = format!("Container {container} failed liveness probe");
    events
        .iter()
        .copied()
        .filter(|e| e.reason.as_deref() == Some("Killing"))
        .filter(|e| e.message.as_deref().is_some_and(|m| m.starts_with(&killed)))
        .filter(|e| recent(e, now))
        .collect()
}

/// How long past a container's last termination a ready container's restart is history rather than a finding.
pub(super) const HISTORY: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// When a running container's probes have had their chance: its start, plus the startup probe's and then the
/// readiness probe's initial delay and failures allowed (Kubernetes' defaults where unset: period 10 s, threshold 3).
pub(super) fn readiness_window_end(pod: &Pod, status: &ContainerStatus) -> Option<jiff::Timestamp> {
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

pub(super) fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
}

pub(super) fn container_memory_limit(pod: &Pod, container: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let c = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == container)?;
    c.resources.as_ref()?.limits.as_ref()?.get("memory").map(|q| q.0.clone())
}

/// `secret "db" not found` → (`secret`, `db`); also configmaps. Used for a command that checks the reference.
pub(super) fn missing_reference(message: &str) -> Option<(&'static str, String)> {
    for (word, kind) in [("secret", "secret"), ("configmap", "configmap")] {
        if let Some(rest) = message.split(&format!("{word} \"")).nth(1) {
            return rest.split('"').next().map(|n| (kind, n.to_string()));
        }
    }
    None
}

/// Pods of one owner that fail the same way become one finding that names the others.
pub(super) fn group_replicas(facts: &Facts, findings: Vec<Finding>) -> Vec<Finding> {
    let owners: foldhash::HashMap<&str, (&str, &str)> = facts
        .pods
        .iter()
        .filter_map(|p| controller_of(&p.metadata).map(|owner| (name_of(&p.metadata), owner)))
        .collect();
    let mut grouped: Vec<Finding> = Vec::new();
    // (reason, container, owner) → position of the finding that stands for the group.
    type Group<'a> = (Reason, Option<String>, (&'a str, &'a str));
    let mut index: foldhash::HashMap<Group<'_>, usize> = Default::default();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_references_are_extracted() {
        assert_eq!(missing_reference("secret \"db-creds\" not found"), Some(("secret", "db-creds".into())));
        assert_eq!(missing_reference("couldn't find key url in ConfigMap shop/settings"), None);
        assert_eq!(missing_reference("configmap \"settings\" not found"), Some(("configmap", "settings".into())));
    }
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

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
    fn eviction_is_reported_with_the_kubelet_message() {
        let findings = analyze(&facts("evicted"));
        assert_eq!(summary(&findings), [(Reason::Evicted, "Pod", "cache-7f9b8c6d5-4xq2w")]);
        assert!(evidence(&findings[0]).contains("The node was low on resource: memory."));
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
