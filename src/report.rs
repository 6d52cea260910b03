//! What a diagnosis without a model produces, and its terminal rendering.

use std::fmt::Write as _;

use serde::Serialize;

use crate::facts::Facts;
use crate::findings::{self, Finding};

/// The result of `kubechat diagnose --no-llm`: findings, and the context a model would read.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub namespace: String,
    pub findings: Vec<Finding>,
    pub context: String,
    /// What could not be read; the findings hold without it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
}

/// Findings and the context block, cut to `budget` tokens; pure.
pub fn diagnose(facts: &Facts, budget: usize) -> Diagnosis {
    assemble(facts, findings::analyze(facts), budget)
}

/// The diagnosis of findings already made: the context block within `budget` tokens around them; pure.
pub fn assemble(facts: &Facts, mut findings: Vec<Finding>, budget: usize) -> Diagnosis {
    // Built from redacted facts, and cleaned again as they leave: a secret split across two fields is whole here.
    crate::redact::findings(&mut findings);
    let context = crate::context::render(facts, &findings, budget).text;
    Diagnosis {
        namespace: facts.namespace.clone(),
        findings,
        context,
        gaps: facts.gaps.iter().map(|g| g.message.clone()).collect(),
    }
}

/// A readable terminal report.
pub fn text(diagnosis: &Diagnosis) -> String {
    let mut out = String::new();
    let count = diagnosis.findings.len();
    let _ = writeln!(
        out,
        "Namespace {}: {}",
        diagnosis.namespace,
        match count {
            0 => "no problems found".to_string(),
            1 => "1 finding".to_string(),
            n => format!("{n} findings"),
        }
    );
    for gap in &diagnosis.gaps {
        let _ = writeln!(out, "  ! not read: {gap}");
    }
    for (i, f) in diagnosis.findings.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n{}. [{}] {}  {}/{}",
            i + 1,
            f.severity.to_string().to_uppercase(),
            f.reason,
            f.object.kind.to_lowercase(),
            f.object.name
        );
        let _ = writeln!(out, "   {}", f.summary);
        if let Some(cause) = &f.caused_by {
            let _ = writeln!(
                out,
                "   caused by {} on {}/{}",
                cause.reason,
                cause.object.kind.to_lowercase(),
                cause.object.name
            );
        }
        for r in &f.related {
            let _ = writeln!(out, "   leads to {} on {}/{}", r.reason, r.object.kind.to_lowercase(), r.object.name);
        }
        if !f.evidence.is_empty() {
            let _ = writeln!(out, "   evidence:");
            for e in &f.evidence {
                let _ = writeln!(out, "     - {e}");
            }
        }
        if !f.commands.is_empty() {
            let _ = writeln!(out, "   look closer:");
            for c in &f.commands {
                let _ = writeln!(out, "     $ {c}");
            }
        }
    }
    out
}

/// One finding as every front-end shows it ([`crate::view::View`]), and as the answer's text lists it when the model
/// did not answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingView {
    /// `[critical] CrashLoopBackOff pod/web-1: summary`.
    pub headline: String,
    /// How it relates to the others: `caused by NodeNotReady on node/worker-3`, `leads to …`, `also affects …`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// The exact status fields, event messages and log lines that prove it.
    pub evidence: Vec<String>,
}

/// A finding as shown: its headline, how it relates to the others, its evidence.
pub fn finding(f: &Finding) -> FindingView {
    let on = |reason: &dyn std::fmt::Display, object: &crate::facts::ObjectRef| {
        format!("{reason} on {}/{}", object.kind.to_lowercase(), object.name)
    };
    let mut links = Vec::new();
    if let Some(cause) = &f.caused_by {
        links.push(format!("caused by {}", on(&cause.reason, &cause.object)));
    }
    for related in &f.related {
        links.push(format!("leads to {}", on(&related.reason, &related.object)));
    }
    if !f.also_affected.is_empty() {
        links.push(format!("also affects {}", f.also_affected.join(", ")));
    }
    FindingView { headline: f.headline(), links, evidence: f.evidence.clone() }
}

/// The findings as plain text, each with its links and evidence; what the answer's text holds when the model did not
/// answer, and what a terminal shows after the model's answer.
pub fn findings_text(findings: &[FindingView]) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        out.push_str("No problems found.\n");
    }
    for (i, f) in findings.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, f.headline);
        for link in &f.links {
            let _ = writeln!(out, "   {link}");
        }
        for line in &f.evidence {
            let _ = writeln!(out, "   | {line}");
        }
    }
    out
}
