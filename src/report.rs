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
