//! The answer: facts and findings, through a prompt and the model, into what every front-end shows.
//!
//! [`prepare`] is pure: it fits the context to the prompt's token budget and fills the prompt. [`answer`] asks the
//! model and turns whatever happens (an answer, a cut-off answer, a model that is down or slow) into an [`Answer`]
//! that always carries the findings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::commands::{self, Command};
use crate::facts::Facts;
use crate::findings::Finding;
use crate::llm::{Llm, LlmConfig, LlmError, Usage};
use crate::prompt::{Prompt, PromptVersion, Prompts, Rendered};
use crate::report::Diagnosis;
use crate::request::{Request, Turn};
use crate::tokens;

/// Tokens a chat template adds around each message (role markers, separators), counted generously.
const TEMPLATE_TOKENS_PER_MESSAGE: usize = 5;
/// The least context worth sending; a smaller budget is a configuration mistake.
const MIN_CONTEXT_TOKENS: usize = 256;
/// The share of the window a conversation's earlier turns may take: one part in this many.
const HISTORY_SHARE: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The asker's to mend: the question leaves the model no room for the namespace.
    #[error(
        "your question is too long for the model to read it with the namespace: it is about {question} tokens, and about {room} fit; shorten it, or ask it in parts"
    )]
    QuestionTooLong { question: usize, room: usize },
    /// The operator's: even an empty question leaves no room, so the model's window is set too small.
    #[error(
        "the model's context window ({num_ctx} tokens) cannot hold the prompt ({overhead} tokens), the answer ({answer} tokens) and at least {MIN_CONTEXT_TOKENS} tokens of context: kubechat's operator must raise the window (llm.num_ctx, or --num-ctx) or lower the answer's share (llm.answer_tokens, or --answer-tokens)"
    )]
    TooSmall { num_ctx: usize, overhead: usize, answer: usize },
    #[error("no prompt named {0} is loaded")]
    NoPrompt(String),
}

/// A prompt ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub diagnosis: Diagnosis,
    pub rendered: Rendered,
    pub prompt: PromptVersion,
    /// The estimated prompt size in tokens, chat template included; never more than the window minus the answer.
    pub prompt_tokens: usize,
    pub context_budget: usize,
}

/// Fits the context to what the window leaves after the prompt and the answer, and fills the prompt; pure.
pub fn prepare(
    facts: &Facts,
    request: &Request,
    prompt: &Prompt,
    num_ctx: usize,
    answer_tokens: usize,
    now: jiff::Timestamp,
) -> Result<Prepared, BudgetError> {
    let findings = crate::findings::analyze(facts);
    let mut vars = BTreeMap::from([
        ("question", request.question.clone()),
        ("namespace", facts.namespace.clone()),
        ("object", request.scope.object().map(ToString::to_string).unwrap_or_default()),
        ("findings", findings_line(&findings)),
        ("date", now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        ("context", String::new()),
        ("history", history_text(&request.history, num_ctx / HISTORY_SHARE)),
    ]);
    let empty = prompt.render(&vars);
    let overhead = size(&empty);
    let budget = num_ctx.saturating_sub(answer_tokens + overhead);
    if budget < MIN_CONTEXT_TOKENS {
        // Whose to mend: the asker's, when the prompt without the question fits (the conversation before it has a
        // bounded share of the window); else the operator's.
        let mut bare = vars.clone();
        bare.insert("question", String::new());
        let bare = size(&prompt.render(&bare));
        let room = num_ctx.saturating_sub(answer_tokens + bare + MIN_CONTEXT_TOKENS);
        if room > 0 {
            return Err(BudgetError::QuestionTooLong { question: overhead.saturating_sub(bare), room });
        }
        return Err(BudgetError::TooSmall { num_ctx, overhead, answer: answer_tokens });
    }
    let diagnosis = crate::report::assemble(facts, findings, budget);
    vars.insert("context", diagnosis.context.clone());
    let rendered = prompt.render(&vars);
    let prompt_tokens = size(&rendered);
    Ok(Prepared { diagnosis, rendered, prompt: prompt.version.clone(), prompt_tokens, context_budget: budget })
}

/// The conversation so far, newest turns kept when they do not all fit in `max_tokens`; empty without one.
fn history_text(turns: &[Turn], max_tokens: usize) -> String {
    const HEADING: &str = "Earlier in this conversation, oldest first (the cluster may have changed since):";
    let mut kept = Vec::new();
    let mut used = tokens::estimate(HEADING);
    for turn in turns.iter().rev() {
        let text = format!("Q: {}\nA: {}", turn.question.trim(), turn.answer.trim());
        let cost = tokens::estimate(&text);
        if used + cost > max_tokens {
            break;
        }
        used += cost;
        kept.push(text);
    }
    if kept.is_empty() {
        return String::new();
    }
    let dropped = turns.len() - kept.len();
    let mut out = format!("\n{HEADING}\n");
    if dropped > 0 {
        let _ = writeln!(out, "[… {dropped} earlier turns left out …]");
    }
    for text in kept.iter().rev() {
        let _ = writeln!(out, "{text}\n");
    }
    out
}

/// The estimated tokens of a filled prompt, with the chat template's own.
fn size(rendered: &Rendered) -> usize {
    tokens::estimate(&rendered.system) + tokens::estimate(&rendered.user) + 2 * TEMPLATE_TOKENS_PER_MESSAGE
}

fn findings_line(findings: &[Finding]) -> String {
    if findings.is_empty() {
        return "none".to_string();
    }
    findings
        .iter()
        .map(|f| format!("{} on {}/{}", f.reason, f.object.kind.to_lowercase(), f.object.name))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What every front-end shows.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    /// kubechat's name of the cluster read.
    pub cluster: String,
    pub namespace: String,
    pub answer: String,
    pub model: String,
    /// The exact context block the model read.
    pub context: String,
    pub findings: Vec<Finding>,
    pub commands: Vec<Command>,
    pub prompt: PromptVersion,
    /// Token counts as the model server reported them (none where it reports none, as llama.cpp's streams).
    pub usage: Usage,
    /// kubechat's estimate of the prompt's tokens, chat template included, that the context was fitted by: at or
    /// above `usage.prompt_tokens` for Mistral's tokenizer.
    pub prompt_tokens_estimated: usize,
    /// The window was full: the server cut the prompt or the answer.
    pub truncated: bool,
    /// Why the answer comes without the model, when it does: in JSON, what the asker is told ([`LlmError::notice`]);
    /// null otherwise.
    #[serde(serialize_with = "notice")]
    pub degraded: Option<LlmError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<String>,
}

fn notice<S: serde::Serializer>(error: &Option<LlmError>, serializer: S) -> Result<S::Ok, S::Error> {
    match error {
        Some(error) => serializer.serialize_str(error.notice()),
        None => serializer.serialize_none(),
    }
}

/// Asks the model about the facts; `on_token` sees the answer as it streams, `on_queued` the place in line. The facts
/// are let go once the prompt is made: a question waiting for the model holds its prompt, not the namespace it read.
pub async fn answer(
    facts: Facts,
    request: &Request,
    prompts: &Prompts,
    llm: &Llm,
    on_token: impl FnMut(&str) + Send,
    on_queued: impl FnOnce(usize) + Send,
) -> Result<Answer, BudgetError> {
    let config: &LlmConfig = &llm.config;
    let name = request.intent.prompt_name();
    let prompt = prompts.get(name).ok_or_else(|| BudgetError::NoPrompt(name.to_string()))?.clone();
    // Finding, fitting and redacting are CPU work: off the async threads, which answer probes and Slack's
    // acknowledgements (with a thousand questions in flight, acknowledgements waited behind it).
    let (num_ctx, answer_tokens) = (config.num_ctx, config.answer_tokens);
    let asked = request.clone();
    let (prepared, grounds) = tokio::task::spawn_blocking(move || {
        let prepared = prepare(&facts, &asked, &prompt, num_ctx, answer_tokens, jiff::Timestamp::now())?;
        Ok::<_, BudgetError>((prepared, commands::Grounds::of(&facts)))
    })
    .await
    .unwrap_or_else(|e| {
        std::panic::resume_unwind(e.try_into_panic().unwrap_or_else(|_| Box::new("the runtime is shutting down")))
    })?;
    let messages = llm.messages(&prepared.rendered.system, &prepared.rendered.user);
    tracing::info!(
        prompt = %prepared.prompt.version,
        estimated_prompt_tokens = prepared.prompt_tokens,
        context_budget = prepared.context_budget,
        "asking the model"
    );
    let mut redacting = Redacting::new(on_token);
    let result = llm.chat(&messages, |token| redacting.push(token), on_queued).await;
    redacting.flush();
    let diagnosis = prepared.diagnosis;
    let (text, usage, truncated, degraded) = match result {
        Ok(completion) => {
            if let Some(actual) = completion.usage.prompt_tokens {
                compare_estimate(prepared.prompt_tokens, actual as usize, &config.model);
            }
            let window_full = completion.usage.prompt_tokens.is_some_and(|p| p as usize >= config.num_ctx);
            let cut_short = completion.finish.as_deref() == Some("length");
            let mut text = crate::redact::text(&completion.text).into_owned();
            if window_full {
                text.push_str("\n\n(The model's context window was full: the server cut part of the context, so this answer may miss evidence.)");
            } else if cut_short {
                text.push_str("\n\n(The answer reached its length limit and was cut off.)");
            }
            (text, completion.usage, window_full || cut_short, None)
        }
        Err(error) => {
            tracing::warn!("answering without the model: {error}");
            let text = fallback(&diagnosis, &error);
            (text, Usage::default(), false, Some(error))
        }
    };
    let commands = commands::suggested(&diagnosis.findings, &text, &grounds);
    Ok(Answer {
        cluster: request.scope.cluster().to_string(),
        namespace: diagnosis.namespace,
        answer: text,
        model: config.model.clone(),
        context: diagnosis.context,
        findings: diagnosis.findings,
        commands,
        prompt: prepared.prompt,
        usage,
        prompt_tokens_estimated: prepared.prompt_tokens,
        truncated,
        degraded,
        gaps: diagnosis.gaps,
    })
}

/// Says in the logs when the server counted the prompt differently from the estimate: below it, the context may be
/// cut by the server; far above, the model's tokenizer is not like Mistral's and the window is underused.
fn compare_estimate(estimated: usize, actual: usize, model: &str) {
    if actual > estimated {
        tracing::warn!(
            actual,
            estimated,
            model,
            "the model server counted more prompt tokens than kubechat estimated: the context may not fit the window; set the window lower to leave room (llm.num_ctx for serve, --num-ctx for diagnose)"
        );
    } else if estimated as f64 > actual as f64 * 1.15 {
        tracing::info!(
            actual,
            estimated,
            model,
            "the model server counted far fewer prompt tokens than kubechat estimated (its tokenizer is not Mistral's): part of the window goes unused"
        );
    } else {
        tracing::debug!(actual, estimated, "prompt size as the server counted it");
    }
}

/// The answer's text when the model did not answer: what happened to it, in the asker's words, and kubechat's own
/// findings with all their evidence.
fn fallback(diagnosis: &Diagnosis, error: &LlmError) -> String {
    let findings: Vec<_> = diagnosis.findings.iter().map(crate::report::finding).collect();
    format!("{}\n\n{}", error.notice(), crate::report::findings_text(&findings))
}

/// Passes streamed tokens on line by line, redacted, so a secret split across tokens is still caught.
struct Redacting<F: FnMut(&str)> {
    sink: F,
    pending: String,
}

impl<F: FnMut(&str)> Redacting<F> {
    fn new(sink: F) -> Redacting<F> {
        Redacting { sink, pending: String::new() }
    }

    fn push(&mut self, token: &str) {
        self.pending.push_str(token);
        let Some(end) = self.pending.rfind('\n') else { return };
        // A private key block is held whole until its END line (or the end of the answer), so none of its lines
        // streams out before the block as a whole is redacted.
        if let Some(begin) = self.pending.find("-----BEGIN ").filter(|b| self.pending[*b..].contains("PRIVATE KEY")) {
            let block = &self.pending[begin..];
            let closed = block.find("-----END ").and_then(|e| block[e..].find('\n').map(|n| begin + e + n));
            match closed {
                Some(close) => {
                    let complete: String = self.pending.drain(..=close).collect();
                    (self.sink)(&crate::redact::text(&complete));
                }
                None if begin > 0 => {
                    let before: String = self.pending.drain(..begin).collect();
                    (self.sink)(&crate::redact::text(&before));
                }
                None => {}
            }
            return;
        }
        let complete: String = self.pending.drain(..=end).collect();
        (self.sink)(&crate::redact::text(&complete));
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            (self.sink)(&crate::redact::text(&rest));
        }
    }
}

/// The prompt a model would be sent (`--no-llm --output json`): which, its size by kubechat's estimate, the budget
/// the context was fitted to, and the messages themselves, so an operator sees exactly what the model would read.
#[derive(Debug, Clone, Serialize)]
pub struct PromptReport {
    #[serde(flatten)]
    pub version: PromptVersion,
    /// kubechat's estimate of the prompt's tokens, chat template included ([`tokens::estimate`]).
    pub tokens_estimated: usize,
    pub context_budget: usize,
    pub messages: Vec<crate::llm::Message>,
}

/// The findings and context without a model (`--no-llm`), sized as the model would read them.
pub fn without_model(
    facts: &Facts,
    request: &Request,
    prompts: &Prompts,
    config: &LlmConfig,
) -> Result<(Diagnosis, Vec<Command>, PromptReport), BudgetError> {
    let name = request.intent.prompt_name();
    let prompt = prompts.get(name).ok_or_else(|| BudgetError::NoPrompt(name.to_string()))?;
    let prepared = prepare(facts, request, prompt, config.num_ctx, config.answer_tokens, jiff::Timestamp::now())?;
    let commands = commands::suggested(&prepared.diagnosis.findings, "", &commands::Grounds::of(facts));
    let report = PromptReport {
        version: prepared.prompt,
        tokens_estimated: prepared.prompt_tokens,
        context_budget: prepared.context_budget,
        messages: crate::llm::messages(config, &prepared.rendered.system, &prepared.rendered.user),
    };
    Ok((prepared.diagnosis, commands, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streamed_private_key_is_held_until_its_block_closes() {
        let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7";
        let tokens = [
            "Use this key:\n-----BEGIN ",
            "PRIVATE KEY-----\n",
            &body[..20],
            &body[20..],
            "\nAAAAB3NzaC1yc2EAAAADAQABAAABAQC8\n",
            "-----END PRIVATE KEY-----\nThen restart.\n",
        ];
        let mut seen = Vec::new();
        let mut redacting = Redacting::new(|chunk: &str| seen.push(chunk.to_string()));
        for token in tokens {
            redacting.push(token);
        }
        redacting.flush();
        let all = seen.concat();
        assert!(!all.contains(&body[..20]) && !all.contains("AAAAB3NzaC1yc2E"), "{seen:?}");
        assert!(all.contains("Use this key:\n[REDACTED:private-key]\nThen restart."), "{all}");
        // Cut off before its END line, the block is still redacted when the answer ends.
        let mut seen = Vec::new();
        let mut redacting = Redacting::new(|chunk: &str| seen.push(chunk.to_string()));
        redacting.push("-----BEGIN RSA PRIVATE KEY-----\n");
        redacting.push(&format!("{body}\n"));
        redacting.flush();
        assert!(!seen.concat().contains(&body[..20]), "{seen:?}");
    }

    fn turn(n: usize) -> Turn {
        Turn { question: format!("question {n}"), answer: format!("answer {n} {}", "word ".repeat(40)) }
    }

    #[test]
    fn history_keeps_the_newest_turns_that_fit() {
        assert_eq!(history_text(&[], 1000), "");
        let turns: Vec<Turn> = (1..=10).map(turn).collect();
        let all = history_text(&turns, 100_000);
        assert!(all.contains("Q: question 1\nA: answer 1") && all.contains("Q: question 10\n"), "{all}");
        assert!(all.find("question 1\n").unwrap() < all.find("question 10\n").unwrap(), "oldest first");
        let some = history_text(&turns, 250);
        assert!(tokens::estimate(&some) <= 260, "{some}");
        assert!(some.contains("question 10\n") && !some.contains("question 1\n"), "{some}");
        assert!(some.contains("earlier turns left out"), "{some}");
        assert_eq!(history_text(&turns, 5), "", "nothing fits");
    }
}
