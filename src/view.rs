//! An answer as the asker sees it, the same on every front-end: the model's answer when there is one, and always the
//! findings with all their evidence, the suggested commands with their labels, what could not be read, and one short
//! notice of what happened to the model, in the asker's words. [`View::of`] is pure; each front-end only formats the
//! view (Slack blocks, Matrix HTML, the web chat, the terminal's [`text`], the JSON answer's `view`).
//!
//! The technical cause of a model failure (a refused connection, a status code) is for the operator: it goes to the
//! logs and the audit line, never into the view.

use std::fmt::Write as _;

use serde::Serialize;

use crate::answer::Answer;
use crate::commands::Label;
use crate::report::{FindingView, finding, findings_text};

/// What every front-end shows of an answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    /// `Diagnosis of namespace shop`, `Answer about namespace shop`.
    pub title: String,
    /// What happened to the model, when it did not answer: one sentence for the asker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// The model's answer (Markdown), when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// kubechat's own findings, root causes first, each with all its evidence.
    pub findings: Vec<FindingView>,
    pub commands: Vec<CommandView>,
    /// What could not be read; the findings hold without it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
    /// Which model and prompt answered, about which cluster and namespace; a front-end adds the time taken and the
    /// request id.
    pub footer: String,
}

/// One suggested command as shown: what kubechat can vouch for it first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandView {
    pub label: Label,
    /// The label in words: `read-only`, `mutating: review before running`, …
    pub badge: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub command: String,
}

/// The answer as JSON (`--output json`, the HTTP API, the web chat): its fields, and its [`View`] under `view`.
pub fn json(answer: &Answer) -> serde_json::Value {
    // Structs of strings, numbers and lists, with string keys: nothing in them can fail to serialize.
    let mut json = serde_json::to_value(answer).expect("an answer serializes");
    json["view"] = serde_json::to_value(View::of(answer)).expect("a view serializes");
    json
}

impl View {
    /// The view of an answer; pure.
    pub fn of(answer: &Answer) -> View {
        let title = match answer.prompt.name.as_str() {
            "diagnose" => format!("Diagnosis of namespace {}", answer.namespace),
            _ => format!("Answer about namespace {}", answer.namespace),
        };
        let mut footer = format!("model {} · prompt {}@{}", answer.model, answer.prompt.name, answer.prompt.version);
        if let Some(revision) = &answer.prompt.revision {
            let _ = write!(footer, " ({revision})");
        }
        let _ = write!(footer, " · cluster {} · namespace {}", answer.cluster, answer.namespace);
        if answer.degraded.is_some() {
            footer.push_str(" · without the model");
        }
        if answer.truncated {
            footer.push_str(" · cut short");
        }
        View {
            title,
            notice: answer.degraded.as_ref().map(|e| e.notice().to_string()),
            answer: answer.degraded.is_none().then(|| answer.answer.clone()),
            findings: answer.findings.iter().map(finding).collect(),
            commands: answer.commands.iter().map(command).collect(),
            gaps: answer.gaps.clone(),
            footer,
        }
    }
}

fn command(c: &crate::commands::Command) -> CommandView {
    let badge = match c.label {
        Label::ReadOnly => "read-only",
        Label::Mutating => "mutating: review before running",
        Label::Review => "review: not one plain kubectl command",
    };
    CommandView { label: c.label, badge, note: c.note.clone(), command: c.command.clone() }
}

/// The view for a terminal: the notice or the model's answer (a terminal that streamed the answer leaves it out of the
/// view), the findings with their evidence, the suggested commands with their labels, what was not read, and the
/// footer.
pub fn text(view: &View, took: std::time::Duration) -> String {
    let mut out = String::new();
    if let Some(notice) = &view.notice {
        let _ = writeln!(out, "{notice}\n");
    }
    if let Some(answer) = &view.answer {
        let _ = writeln!(out, "{}\n", answer.trim_end());
    }
    out.push_str("Findings:\n");
    out.push_str(&findings_text(&view.findings));
    if !view.commands.is_empty() {
        out.push_str("\nSuggested commands (kubechat runs none of them):\n");
        for c in &view.commands {
            let badge = match c.label {
                Label::ReadOnly => "read-only",
                Label::Mutating => "MUTATING ",
                Label::Review => "REVIEW   ",
            };
            let _ = writeln!(out, "  [{badge}] {}", c.command);
            if let Some(note) = &c.note {
                let _ = writeln!(out, "              ! {note}");
            }
        }
    }
    for gap in &view.gaps {
        let _ = writeln!(out, "\nnot read: {gap}");
    }
    let _ = writeln!(out, "\n-- {} · {:.1}s", view.footer, took.as_secs_f32());
    out
}
