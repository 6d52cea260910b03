//! The context block: the facts and findings written out as the plain text a model reads.
//!
//! Sections go from most to least decisive: findings with their evidence, the problem pods with their log lines,
//! events, then one-line summaries of everything healthy. Whatever is left out leaves a visible marker.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;

use crate::cluster::{Facts, event_time, is_problem_pod};
use crate::findings::Finding;

/// How many events of each kind the block shows before it says how many more there are.
const MAX_WARNING_EVENTS: usize = 40;
const MAX_NORMAL_EVENTS: usize = 20;

pub fn render(facts: &Facts, findings: &[Finding]) -> String {
    let mut out = String::new();
    let ns = &facts.namespace;
    let problem: Vec<&Pod> = facts.pods.iter().filter(|p| is_problem_pod(p)).collect();
    let warnings = facts.events.iter().filter(|e| e.type_.as_deref() == Some("Warning")).count();
    let _ = writeln!(out, "Namespace: {ns}");
    let _ = writeln!(
        out,
        "Read: {} pods ({} with problems), {} events ({warnings} Warning), {} deployments, {} replicasets, {} statefulsets, {} daemonsets, {} jobs, {} cronjobs, {} services, {} persistentvolumeclaims, {} nodes",
        facts.pods.len(),
        problem.len(),
        facts.events.len(),
        facts.deployments.len(),
        facts.replicasets.len(),
        facts.statefulsets.len(),
        facts.daemonsets.len(),
        facts.jobs.len(),
        facts.cronjobs.len(),
        facts.services.len(),
        facts.pvcs.len(),
        facts.nodes.len(),
    );
    for gap in &facts.gaps {
        let _ = writeln!(out, "Not read: {gap}");
    }

    let _ = writeln!(out, "\n## Findings (root causes first)");
    if findings.is_empty() {
        let _ = writeln!(out, "No problems found.");
    }
    for (i, f) in findings.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. [{}] {} {}/{}: {}",
            i + 1,
            f.severity,
            f.reason,
            f.object.kind,
            f.object.name,
            f.summary
        );
        if let Some(cause) = &f.caused_by {
            let _ = writeln!(out, "   caused by: {} {}/{}", cause.reason, cause.object.kind, cause.object.name);
        }
        if !f.also_affected.is_empty() {
            let _ = writeln!(out, "   also affected: {}", f.also_affected.join(", "));
        }
        for line in &f.evidence {
            let _ = writeln!(out, "   - {line}");
        }
    }

    if !problem.is_empty() {
        let _ = writeln!(out, "\n## Problem pods");
        for pod in &problem {
            write_pod(&mut out, facts, pod);
        }
    }

    let _ = writeln!(out, "\n## Events (Warning first, newest first)");
    let warning: Vec<_> = facts.events.iter().filter(|e| e.type_.as_deref() == Some("Warning")).collect();
    let normal: Vec<_> = facts.events.iter().filter(|e| e.type_.as_deref() != Some("Warning")).collect();
    for (events, max) in [(&warning, MAX_WARNING_EVENTS), (&normal, MAX_NORMAL_EVENTS)] {
        for e in events.iter().take(max) {
            let at = event_time(e).map(|t| t.to_string()).unwrap_or_else(|| "?".into());
            let count = e.count.filter(|c| *c > 1).map(|c| format!(" (x{c})")).unwrap_or_default();
            let _ = writeln!(
                out,
                "{at} {} {} {}/{}{count}: {}",
                e.type_.as_deref().unwrap_or("Normal"),
                e.reason.as_deref().unwrap_or_default(),
                e.involved_object.kind.as_deref().unwrap_or_default().to_lowercase(),
                e.involved_object.name.as_deref().unwrap_or_default(),
                e.message.as_deref().unwrap_or_default().trim()
            );
        }
        if events.len() > max {
            let _ = writeln!(
                out,
                "[… {} more {} events]",
                events.len() - max,
                if max == MAX_WARNING_EVENTS { "Warning" } else { "Normal" }
            );
        }
    }

    let _ = writeln!(out, "\n## Other objects");
    write_summaries(&mut out, facts, &problem);
    // The facts are redacted already; this second pass guards what the sections quote.
    crate::redact::text(&out).into_owned()
}

fn write_pod(out: &mut String, facts: &Facts, pod: &Pod) {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let status = pod.status.as_ref();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("<unscheduled>");
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
    let _ = writeln!(out, "pod {name}: phase {phase}, node {node}");
    if let Some(reason) = status.and_then(|s| s.reason.as_deref()) {
        let _ = writeln!(
            out,
            "  status.reason: {reason}: {}",
            status.and_then(|s| s.message.as_deref()).unwrap_or_default()
        );
    }
    for c in status.and_then(|s| s.conditions.as_ref()).into_iter().flatten().filter(|c| c.status != "True") {
        let _ = writeln!(
            out,
            "  condition {}={} {}: {}",
            c.type_,
            c.status,
            c.reason.as_deref().unwrap_or_default(),
            c.message.as_deref().unwrap_or_default()
        );
    }
    let containers = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten());
    for c in containers {
        let state = match c.state.as_ref() {
            Some(s) if s.waiting.is_some() => {
                let w = s.waiting.as_ref().expect("checked");
                format!(
                    "waiting {} {}",
                    w.reason.as_deref().unwrap_or_default(),
                    w.message.as_deref().unwrap_or_default()
                )
            }
            Some(s) if s.terminated.is_some() => {
                let t = s.terminated.as_ref().expect("checked");
                format!("terminated {} exit {}", t.reason.as_deref().unwrap_or_default(), t.exit_code)
            }
            Some(s) if s.running.is_some() => "running".to_string(),
            _ => "unknown".to_string(),
        };
        let last = c
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| format!(", last terminated {} exit {}", t.reason.as_deref().unwrap_or_default(), t.exit_code))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  container {}: image {}, {}, ready {}, restarts {}{last}",
            c.name,
            c.image,
            state.trim(),
            c.ready,
            c.restart_count
        );
    }
    for log in facts.logs.iter().filter(|l| l.pod == name) {
        let which = if log.previous { "previous" } else { "current" };
        match &log.text {
            Ok(text) if text.trim().is_empty() => {
                let _ = writeln!(out, "  log {} ({which}): empty", log.container);
            }
            Ok(text) => {
                let _ = writeln!(out, "  log {} ({which}, last lines):", log.container);
                for line in text.lines() {
                    let _ = writeln!(out, "    | {line}");
                }
            }
            Err(message) => {
                let _ = writeln!(out, "  log {} ({which}) unavailable: {message}", log.container);
            }
        }
    }
}

/// One line per healthy object; healthy pods are counted per owner so a namespace of thousands stays short.
fn write_summaries(out: &mut String, facts: &Facts, problem: &[&Pod]) {
    let mut healthy: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for pod in facts.pods.iter().filter(|p| !problem.iter().any(|q| std::ptr::eq(*q, *p))) {
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .next()
            .map(|o| format!("{} {}", o.kind.to_lowercase(), o.name))
            .unwrap_or_else(|| "no owner".to_string());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let entry = healthy.entry(owner).or_default();
        if phase == Some("Succeeded") {
            entry.1 += 1;
        } else {
            entry.0 += 1;
        }
    }
    for (owner, (running, completed)) in healthy {
        let mut parts = Vec::new();
        if running > 0 {
            parts.push(format!("{running} running and ready"));
        }
        if completed > 0 {
            parts.push(format!("{completed} completed"));
        }
        let _ = writeln!(out, "pods of {owner}: {}", parts.join(", "));
    }
    for d in &facts.deployments {
        let s = d.status.as_ref();
        let _ = writeln!(
            out,
            "deployment {}: {}/{} ready, {} updated",
            d.metadata.name.as_deref().unwrap_or_default(),
            s.and_then(|s| s.ready_replicas).unwrap_or(0),
            d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            s.and_then(|s| s.updated_replicas).unwrap_or(0)
        );
    }
    for s in &facts.statefulsets {
        let st = s.status.as_ref();
        let _ = writeln!(
            out,
            "statefulset {}: {}/{} ready",
            s.metadata.name.as_deref().unwrap_or_default(),
            st.and_then(|s| s.ready_replicas).unwrap_or(0),
            s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
        );
    }
    for d in &facts.daemonsets {
        let st = d.status.as_ref();
        let _ = writeln!(
            out,
            "daemonset {}: {}/{} ready",
            d.metadata.name.as_deref().unwrap_or_default(),
            st.map_or(0, |s| s.number_ready),
            st.map_or(0, |s| s.desired_number_scheduled)
        );
    }
    for j in &facts.jobs {
        let st = j.status.as_ref();
        let _ = writeln!(
            out,
            "job {}: {} succeeded, {} failed, {} active",
            j.metadata.name.as_deref().unwrap_or_default(),
            st.and_then(|s| s.succeeded).unwrap_or(0),
            st.and_then(|s| s.failed).unwrap_or(0),
            st.and_then(|s| s.active).unwrap_or(0)
        );
    }
    for c in &facts.cronjobs {
        let _ = writeln!(
            out,
            "cronjob {}: schedule {:?}, last scheduled {}",
            c.metadata.name.as_deref().unwrap_or_default(),
            c.spec.as_ref().map(|s| s.schedule.as_str()).unwrap_or_default(),
            c.status
                .as_ref()
                .and_then(|s| s.last_schedule_time.as_ref())
                .map_or("never".to_string(), |t| t.0.to_string())
        );
    }
    for s in &facts.services {
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let ready: usize = facts
            .endpoints
            .iter()
            .filter(|e| e.metadata.name.as_deref() == Some(name))
            .flat_map(|e| e.subsets.iter().flatten())
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        let _ = writeln!(
            out,
            "service {name}: type {}, {ready} ready endpoints",
            s.spec.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP")
        );
    }
    for p in &facts.pvcs {
        let _ = writeln!(
            out,
            "persistentvolumeclaim {}: {}",
            p.metadata.name.as_deref().unwrap_or_default(),
            p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Unknown")
        );
    }
}
