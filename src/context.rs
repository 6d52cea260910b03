//! The context block: the facts and findings written out as the plain text a model reads.
//!
//! Sections go from most to least decisive: findings with their evidence, the problem pods with their log lines,
//! events, then one-line summaries of everything healthy. When the block must fit a token budget, lines are kept by
//! that priority (within logs: error lines and the last lines first), the order of the text is kept, and every run of
//! lines left out leaves a visible marker such as `[… 312 more log lines]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;

use crate::facts::{Facts, event_time, is_problem_pod};
use crate::findings::{Finding, decisive_lines};

/// The rendered block and what it costs.
#[derive(Debug, Clone)]
pub struct Context {
    pub text: String,
    /// The token estimate of `text` ([`crate::tokens::estimate`]).
    pub tokens: usize,
    /// Lines left out to fit the budget.
    pub cut: usize,
}

/// Renders the context block within `budget` tokens (`usize::MAX` for no limit).
pub fn render(facts: &Facts, findings: &[Finding], budget: usize) -> Context {
    let mut out = Lines::default();
    let ns = &facts.namespace;
    let problem: Vec<&Pod> = facts.pods.iter().filter(|p| is_problem_pod(p)).collect();
    let warnings = facts.events.iter().filter(|e| e.type_.as_deref() == Some("Warning")).count();
    out.at(Priority::Essential, "lines");
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
        out.at(Priority::Essential, "lines");
        let _ = writeln!(out, "{}. {}", i + 1, f.headline());
        if let Some(cause) = &f.caused_by {
            let _ = writeln!(out, "   caused by: {} {}/{}", cause.reason, cause.object.kind, cause.object.name);
        }
        if !f.also_affected.is_empty() {
            let _ = writeln!(out, "   also affected: {}", f.also_affected.join(", "));
        }
        out.block();
        out.at(Priority::Evidence(i), "evidence lines");
        for line in &f.evidence {
            let _ = writeln!(out, "   - {line}");
        }
        out.block();
    }

    if !problem.is_empty() {
        out.at(Priority::Essential, "lines");
        let _ = writeln!(out, "\n## Problem pods");
        for (i, pod) in problem.iter().enumerate() {
            write_pod(&mut out, facts, pod, i);
        }
    }

    out.at(Priority::Essential, "lines");
    let _ = writeln!(out, "\n## Events (Warning first, newest first)");
    out.block();
    for (i, e) in facts.events.iter().enumerate() {
        // Every line costs a token at least, so no more events than the budget has tokens can be kept: the rest are
        // counted, not written (30,000 events cost more to write than to read).
        if i >= budget {
            out.unwritten(facts.events.len() - i, budget, "events");
            break;
        }
        let warning = e.type_.as_deref() == Some("Warning");
        out.at(if warning { Priority::Warning(i) } else { Priority::Normal(i) }, "events");
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
    out.block();

    out.at(Priority::Essential, "lines");
    let _ = writeln!(out, "\n## Other objects");
    out.block();
    out.at(Priority::Summary, "objects");
    write_summaries(&mut out, facts);
    out.fit(budget)
}

/// How much a line matters, most first. Numbers order lines within a kind: evidence by finding, events by recency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Priority {
    /// Headings, finding titles, what could not be read.
    Essential,
    Evidence(usize),
    /// A problem pod's state, and its log lines that explain the failure (errors, the last lines).
    ProblemPod(usize),
    /// Other log lines, the latest first.
    Log(usize),
    Warning(usize),
    Normal(usize),
    Summary,
}

#[derive(Debug)]
struct Line {
    text: String,
    tokens: usize,
    priority: Priority,
    group: &'static str,
    block: usize,
}

/// The block as prioritised lines; `writeln!` adds lines at the current priority.
#[derive(Default)]
struct Lines {
    lines: Vec<Line>,
    pending: String,
    priority: Option<Priority>,
    group: &'static str,
    block: usize,
}

impl Lines {
    fn at(&mut self, priority: Priority, group: &'static str) {
        self.priority = Some(priority);
        self.group = group;
    }

    /// Adds `count` lines too long for any `budget`: lines not worth writing, still counted in the marker.
    fn unwritten(&mut self, count: usize, budget: usize, group: &'static str) {
        let (priority, block) = (self.priority.unwrap_or(Priority::Summary), self.block);
        let line = || Line { text: String::new(), tokens: budget.saturating_add(1), priority, group, block };
        self.lines.extend(std::iter::repeat_with(line).take(count));
    }

    /// Starts a new run for markers: lines left out are counted per run.
    fn block(&mut self) {
        self.block += 1;
    }

    fn fit(self, budget: usize) -> Context {
        let lines = self.lines;
        let mut order: Vec<usize> = (0..lines.len()).collect();
        order.sort_by_key(|&i| (lines[i].priority, i));
        let mut keep = vec![false; lines.len()];
        let mut total = 0;
        for &i in &order {
            if total + lines[i].tokens <= budget {
                keep[i] = true;
                total += lines[i].tokens;
            }
        }
        // Markers cost tokens too: give up the least important kept lines until they fit.
        let mut dropped_for_markers = order.iter().rev().copied();
        loop {
            let (text, tokens) = assemble(&lines, &keep);
            if tokens <= budget || !keep.iter().any(|k| *k) {
                let cut = keep.iter().filter(|k| !**k).count();
                return Context { text, tokens, cut };
            }
            match dropped_for_markers.find(|&i| keep[i]) {
                Some(i) => keep[i] = false,
                None => return Context { tokens, text, cut: lines.len() },
            }
        }
    }
}

/// The kept lines in their order, each run of left-out lines replaced by one marker.
fn assemble(lines: &[Line], keep: &[bool]) -> (String, usize) {
    let mut text = String::new();
    let mut tokens = 0;
    let mut i = 0;
    while i < lines.len() {
        if keep[i] {
            text.push_str(&lines[i].text);
            text.push('\n');
            tokens += lines[i].tokens;
            i += 1;
            continue;
        }
        let (block, group) = (lines[i].block, lines[i].group);
        let start = i;
        while i < lines.len() && !keep[i] && lines[i].block == block && lines[i].group == group {
            i += 1;
        }
        let marker = format!("[… {} more {group}]\n", i - start);
        tokens += crate::tokens::estimate(&marker);
        text.push_str(&marker);
    }
    (text, tokens)
}

impl std::fmt::Write for Lines {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.pending.push_str(s);
        while let Some(end) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=end).collect();
            // Facts arrive redacted; this second pass guards every line the block quotes.
            let text = crate::redact::text(line.trim_end_matches('\n')).into_owned();
            let tokens = crate::tokens::estimate(&text) + 1;
            let priority = self.priority.unwrap_or(Priority::Summary);
            self.lines.push(Line { text, tokens, priority, group: self.group, block: self.block });
        }
        Ok(())
    }
}

fn write_pod(out: &mut Lines, facts: &Facts, pod: &Pod, index: usize) {
    out.at(Priority::ProblemPod(index), "lines");
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
                out.block();
                let lines: Vec<&str> = text.lines().collect();
                let decisive = decisive_lines(text, 5);
                for (n, line) in lines.iter().enumerate() {
                    let from_end = lines.len() - n;
                    let telling = from_end <= 3 || decisive.iter().any(|d| d == line.trim_end());
                    out.at(if telling { Priority::ProblemPod(index) } else { Priority::Log(from_end) }, "log lines");
                    let _ = writeln!(out, "    | {line}");
                }
                out.block();
                out.at(Priority::ProblemPod(index), "lines");
            }
            Err(message) => {
                let _ = writeln!(out, "  log {} ({which}) unavailable: {message}", log.container);
            }
        }
    }
}

/// One line per healthy object; healthy pods are counted per owner so a namespace of thousands stays short.
fn write_summaries(out: &mut Lines, facts: &Facts) {
    let mut healthy: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for pod in facts.pods.iter().filter(|p| !is_problem_pod(p)) {
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
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let updated = s.and_then(|s| s.updated_replicas).unwrap_or(0);
        // A rollout under way and inside its progress deadline is said so, and is not a finding.
        let progressing = s.and_then(|s| s.conditions.as_ref()).into_iter().flatten().find(|c| {
            c.type_ == "Progressing" && c.status == "True" && c.reason.as_deref() == Some("ReplicaSetUpdated")
        });
        let rolling = updated < desired || s.and_then(|s| s.replicas).unwrap_or(0) > updated;
        let rollout = match progressing {
            Some(c) if rolling => format!(
                "; rollout in progress, inside its progress deadline ({})",
                c.message.as_deref().unwrap_or("progressing")
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "deployment {}: {}/{desired} ready, {updated} updated{rollout}",
            d.metadata.name.as_deref().unwrap_or_default(),
            s.and_then(|s| s.ready_replicas).unwrap_or(0),
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
        // Nodes a taint keeps it off are not counted as desired: said here, as they may well be meant.
        let kept_off = crate::facts::kept_off_nodes(facts, d);
        let kept_off = match kept_off.len() {
            0 => String::new(),
            n => format!("; not on {n} node(s) whose taints it does not tolerate: {}", kept_off.join(", ")),
        };
        let _ = writeln!(
            out,
            "daemonset {}: {}/{} ready{kept_off}",
            d.metadata.name.as_deref().unwrap_or_default(),
            st.map_or(0, |s| s.number_ready),
            st.map_or(0, |s| s.desired_number_scheduled)
        );
    }
    for np in &facts.network_policies {
        let all = Default::default();
        let selector = np.spec.as_ref().and_then(|s| s.pod_selector.as_ref()).unwrap_or(&all);
        let selected =
            facts.pods.iter().filter(|p| crate::facts::selects(selector, p.metadata.labels.as_ref())).count();
        let types = np.spec.as_ref().and_then(|s| s.policy_types.as_ref()).map(|t| t.join("+")).unwrap_or_default();
        let _ = writeln!(
            out,
            "networkpolicy {}: {types} for {selected} pod(s) selected by {{{}}}",
            np.metadata.name.as_deref().unwrap_or_default(),
            crate::facts::label_selector_string(selector)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_events(n: usize) -> Vec<k8s_openapi::api::core::v1::Event> {
        (0..n)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("e{i}")}, "type": "Normal", "reason": "Pulled",
                    "message": format!("pulled image {i}"), "involvedObject": {"kind": "Pod", "name": format!("p{i}")},
                    "lastTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", i / 60 % 60, i % 60),
                }))
                .expect("an event")
            })
            .collect()
    }

    #[test]
    fn events_past_what_the_budget_can_hold_are_counted_not_written() {
        let facts = Facts { namespace: "shop".into(), events: normal_events(5_000), ..Facts::default() };
        let budget = 400;
        let context = render(&facts, &[], budget);
        assert!(context.tokens <= budget, "{} tokens over a budget of {budget}", context.tokens);
        let written = context.text.lines().filter(|l| l.contains(" Normal Pulled pod/")).count();
        assert!(written > 0, "no event was kept:\n{}", context.text);
        let marker = format!("[… {} more events]", 5_000 - written);
        assert!(context.text.contains(&marker), "no {marker:?} in:\n{}", context.text);

        // Without a budget every event is written.
        let whole = render(&facts, &[], usize::MAX);
        assert_eq!(whole.text.lines().filter(|l| l.contains(" Normal Pulled pod/")).count(), 5_000);
    }
}
