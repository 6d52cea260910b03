//! Workloads: rollouts, StatefulSet ordinals, DaemonSets, Jobs and CronJobs.

use super::*;

pub(super) fn job_findings(facts: &Facts) -> Vec<Finding> {
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
pub(super) fn replicasets_of<'a>(
    facts: &'a Facts,
    deployment: &str,
) -> Vec<&'a k8s_openapi::api::apps::v1::ReplicaSet> {
    let mut sets: Vec<_> =
        facts.replicasets.iter().filter(|rs| controller_of(&rs.metadata) == Some(("Deployment", deployment))).collect();
    sets.sort_by_key(|rs| std::cmp::Reverse(revision(&rs.metadata)));
    sets
}

pub(super) fn revision(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub(super) fn rollout_findings(facts: &Facts, pod_findings: &[Finding]) -> Vec<Finding> {
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

pub(super) fn selector_text(deployment: &Deployment) -> String {
    deployment.spec.as_ref().map(|s| crate::facts::label_selector_string(&s.selector)).unwrap_or_default()
}

pub(super) fn pods_owned_by<'a>(facts: &'a Facts, kind: &str, owner: &str) -> Vec<&'a str> {
    facts
        .pods
        .iter()
        .filter(|p| controller_of(&p.metadata) == Some((kind, owner)))
        .map(|p| name_of(&p.metadata))
        .collect()
}

/// StatefulSets whose next ordinal is never created because the one before it is not ready (OrderedReady).
pub(super) fn statefulset_findings(facts: &Facts, pod_findings: &[Finding]) -> Vec<Finding> {
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
        let ready = pod_ready(pod);
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

/// StatefulSets whose governing Service (`spec.serviceName`) does not exist: their pods get no stable DNS names.
pub(super) fn governing_service_findings(facts: &Facts) -> Vec<Finding> {
    if facts.unread.contains("services") {
        return Vec::new();
    }
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for sts in &facts.statefulsets {
        let name = name_of(&sts.metadata);
        let Some(service) = sts.spec.as_ref().and_then(|s| s.service_name.as_deref()).filter(|s| !s.is_empty()) else {
            continue;
        };
        if facts.services.iter().any(|s| name_of(&s.metadata) == service) {
            continue;
        }
        // It matters once its pods run: they would have names under the Service by now.
        let running = pods_owned_by(facts, "StatefulSet", name).into_iter().any(|pod| {
            let pod = facts.pods.iter().find(|p| name_of(&p.metadata) == pod);
            pod.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Running")
        });
        if !running {
            continue;
        }
        let mut f = Finding::new(
            Reason::StatefulSetServiceMissing,
            Severity::Warning,
            object("StatefulSet", ns, name),
            format!(
                "StatefulSet {name} names the governing Service {service}, which does not exist: its pods get no stable DNS names ({name}-0.{service})"
            ),
        );
        f.evidence.push(format!("spec.serviceName: {service}"));
        let services: Vec<&str> = facts.services.iter().map(|s| name_of(&s.metadata)).collect();
        f.evidence.push(format!("services in {ns}: {}", services.join(", ")));
        f.commands =
            vec![format!("kubectl get services -n {ns}"), format!("kubectl describe statefulset -n {ns} {name}")];
        findings.push(f);
    }
    findings
}

/// DaemonSets missing on some of their nodes: pods not available, or not scheduled where they should be.
pub(super) fn daemonset_findings(facts: &Facts, pod_findings: &[Finding]) -> Vec<Finding> {
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
        for node in crate::facts::kept_off_nodes(facts, ds).into_iter().take(5) {
            f.evidence.push(format!("not on node {node}: no toleration for it"));
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
pub(super) fn cronjob_findings(facts: &Facts, index: &EventIndex<'_>, now: Option<jiff::Timestamp>) -> Vec<Finding> {
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
                .filter(|e| recent(e, now))
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

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn failed_job_quotes_its_pods_logs_and_completed_jobs_stay_quiet() {
        let findings = analyze(&facts("jobs"));
        assert_eq!(summary(&findings), [(Reason::JobFailed, "Job", "db-migrate-5-0-1")]);
        let text = evidence(&findings[0]);
        assert!(text.contains("reason=BackoffLimitExceeded"), "{text}");
        assert!(text.contains(r#"relation "users" already exists"#), "{text}");
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
}
