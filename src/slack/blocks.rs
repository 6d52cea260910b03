//! Block Kit messages: an answer as sections of escaped mrkdwn, its findings as a short list, its suggested commands
//! as labelled code blocks and a footer saying which model and prompt produced it; within Slack's limits (3,000
//! characters a section, 50 blocks and 12,000 characters of text a message).

use std::time::Duration;

use serde_json::{Value, json};

use super::mrkdwn;
use crate::answer::Answer;
use crate::report::FindingView;
use crate::view::View;

/// Slack's limit on a section's text.
pub const SECTION_LIMIT: usize = 3000;
/// Slack's limit on a message's blocks.
pub const BLOCK_LIMIT: usize = 50;
/// Slack's limit on the text of a message's blocks, all together: past it, Slack refuses the message
/// (`msg_blocks_too_long`).
pub const MESSAGE_TEXT_LIMIT: usize = 12_000;
/// The text kubechat puts in one message's blocks, at most: under Slack's limit, with room for what Slack counts
/// differently from kubechat.
const MESSAGE_TEXT_BUDGET: usize = 11_000;
/// Past this many messages an answer goes into a file instead of flooding the thread.
const MESSAGE_LIMIT: usize = 3;
/// Findings listed in the message; the context file has them all.
const FINDINGS_SHOWN: usize = 8;
/// Commands shown; the first are the most useful.
const COMMANDS_SHOWN: usize = 6;
/// The characters of an answer kept in a message's plain `text` (notifications, and the thread history).
const TEXT_LIMIT: usize = 3500;

/// One message: the plain `text` Slack shows in notifications, and the blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Plain words; Slack reads the top-level `text` (notifications, fallbacks) as mrkdwn, so it is escaped as it is
    /// sent ([`Message::fallback`]), exactly as the blocks are.
    pub text: String,
    pub blocks: Vec<Value>,
}

impl Message {
    /// The top-level `text` as sent: escaped, so that nothing in it pings (`<!channel>`, `<@U…>`, `@here`) or links
    /// under another name (`<https://evil|https://good>`).
    pub fn fallback(&self) -> String {
        mrkdwn::escape(&self.text)
    }
}

/// An answer, rendered; `file` holds the whole answer when it is too long for the messages, and `overflow` the rest of
/// the answer as messages, for when the file cannot be attached.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub messages: Vec<Message>,
    pub file: Option<String>,
    pub overflow: Vec<Message>,
}

/// The characters of text in a block (a section's, a header's, a context's elements'), as Slack counts them against
/// [`MESSAGE_TEXT_LIMIT`].
fn text_chars(block: &Value) -> usize {
    match block {
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| match (key.as_str(), value) {
                ("text", Value::String(text)) => text.chars().count(),
                (_, value) => text_chars(value),
            })
            .sum(),
        Value::Array(items) => items.iter().map(text_chars).sum(),
        _ => 0,
    }
}

/// Blocks as consecutive messages, in order, each within [`BLOCK_LIMIT`] blocks and [`MESSAGE_TEXT_BUDGET`]
/// characters (a block is at most a section, 3,000 characters, so every block fits one).
fn into_messages(blocks: &[Value]) -> Vec<Vec<Value>> {
    let mut messages = Vec::new();
    let (mut current, mut chars) = (Vec::new(), 0);
    for block in blocks {
        let n = text_chars(block);
        if !current.is_empty() && (current.len() == BLOCK_LIMIT || chars + n > MESSAGE_TEXT_BUDGET) {
            messages.push(std::mem::take(&mut current));
            chars = 0;
        }
        chars += n;
        current.push(block.clone());
    }
    if !current.is_empty() {
        messages.push(current);
    }
    messages
}

/// What the footer says besides the answer's own model and prompt.
pub struct Footer<'a> {
    pub took: Duration,
    pub request_id: &'a str,
    /// Why the scope was chosen, when it was not typed (`from the alert`).
    pub scope_note: Option<&'a str>,
}

fn section(text: String) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})
}

fn context(text: String) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
}

/// Splits mrkdwn into sections of at most [`SECTION_LIMIT`] characters, at line ends, closing and reopening a code
/// fence that a cut falls inside.
pub fn sections(text: &str) -> Vec<Value> {
    chunks(text, SECTION_LIMIT).into_iter().map(section).collect()
}

fn chunks(text: &str, limit: usize) -> Vec<String> {
    const FENCE: &str = "```";
    // Room for a fence closed at the end and reopened at the start.
    let room = limit - 2 * (FENCE.len() + 1);
    // Ends the current chunk; one cut inside a code fence closes it and opens it again in the next chunk.
    let flush = |current: &mut String, out: &mut Vec<String>, in_fence: bool| {
        let mut done = std::mem::take(current);
        if in_fence {
            done.push_str(FENCE);
            current.push_str(FENCE);
            current.push('\n');
        }
        out.push(done.trim_end().to_string());
    };
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        let mut line = line.to_string();
        loop {
            let len = current.chars().count();
            let fits = len + line.chars().count() < room;
            if fits {
                current.push_str(&line);
                current.push('\n');
                break;
            }
            if len > 0 && !(in_fence && len <= FENCE.len() + 1) {
                flush(&mut current, &mut out, in_fence);
                continue;
            }
            // One line longer than a section: cut it.
            let cut: String = line.chars().take(room - len).collect();
            line = line.chars().skip(room - len).collect();
            current.push_str(&cut);
            flush(&mut current, &mut out, in_fence);
        }
        if line.trim_start().starts_with(FENCE) {
            in_fence = !in_fence;
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim_end().to_string());
    }
    out
}

/// Markdown as models write it, turned into Slack's mrkdwn: escaped first, then `**bold**` and `# headings` made
/// bold, bullets made dots, and code fences stripped of their language tag.
pub fn markdown(text: &str) -> String {
    let mut out = String::new();
    let mut in_fence = false;
    for line in mrkdwn::escape(text).lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            out.push_str("```\n");
            continue;
        }
        if in_fence {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let line = if let Some(heading) = trimmed.strip_prefix('#') {
            format!("*{}*", heading.trim_start_matches('#').trim().replace("**", ""))
        } else if let Some(item) = trimmed.strip_prefix("- ").or_else(|| trimmed.strip_prefix("* ")) {
            let indent = &line[..line.len() - trimmed.len()];
            format!("{indent}• {}", item.replace("**", "*"))
        } else {
            line.replace("**", "*")
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Cuts `text` to `limit` characters, marking the cut.
fn cut(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_string();
    }
    let kept: String = text.chars().take(limit.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// The answer as messages (the first replaces the placeholder; the rest follow in the thread).
pub fn answer(answer: &Answer, footer: &Footer) -> Rendered {
    let view = View::of(answer);
    let title = view.title.clone();
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "text": cut(&title, 150)}})];
    if let Some(note) = footer.scope_note {
        blocks.push(context(mrkdwn::escape(note)));
    }
    if let Some(notice) = &view.notice {
        blocks.push(section(format!(":warning: _{}_", mrkdwn::escape(notice))));
    }
    let answer_blocks = view.answer.as_deref().map(|text| sections(&markdown(text))).unwrap_or_default();
    let answer_count = answer_blocks.len();
    blocks.extend(answer_blocks);
    if !view.findings.is_empty() {
        blocks.push(json!({"type": "divider"}));
        blocks.extend(sections(&findings(&view.findings)));
    } else if view.answer.is_none() {
        blocks.push(section(format!("kubechat found no problems in namespace `{}`.", answer.namespace)));
    }
    if !view.commands.is_empty() {
        blocks.push(json!({"type": "divider"}));
        for command in view.commands.iter().take(COMMANDS_SHOWN) {
            let badge = match command.label {
                crate::commands::Label::ReadOnly => command.badge.to_string(),
                _ => format!(":warning: {}", command.badge),
            };
            let mut text = format!("*{badge}*");
            if let Some(note) = &command.note {
                text.push_str(&format!(" · {}", mrkdwn::escape(note)));
            }
            text.push_str(&format!("\n```{}```", mrkdwn::escape(&command.command)));
            blocks.extend(sections(&text));
        }
    }
    if !view.gaps.is_empty() {
        let gaps: Vec<String> = view.gaps.iter().map(|g| format!("not read: {}", mrkdwn::escape(g))).collect();
        blocks.push(context(cut(&gaps.join("\n"), SECTION_LIMIT)));
    }
    blocks.push(context(format!(
        "{} · {:.1} s · request `{}`",
        mrkdwn::escape(&view.footer),
        footer.took.as_secs_f32(),
        footer.request_id
    )));

    let text = cut(&answer.answer, TEXT_LIMIT);
    let continued = format!("{title} (continued)");
    let as_messages = |blocks: &[Value], first_text: &str| -> Vec<Message> {
        into_messages(blocks)
            .into_iter()
            .enumerate()
            .map(|(i, blocks)| Message {
                text: if i == 0 { first_text.to_string() } else { continued.clone() },
                blocks,
            })
            .collect()
    };
    let messages = as_messages(&blocks, &text);
    // An answer of one section is never the reason for the length (findings and commands are bounded).
    if messages.len() <= MESSAGE_LIMIT || answer_count <= 1 {
        return Rendered { messages, file: None, overflow: Vec::new() };
    }
    // Too long for the thread: the first section of the answer, a pointer to the file, findings, commands, footer;
    // the rest of the answer, as messages, only if the file cannot be attached.
    let before_answer = 1 + usize::from(footer.scope_note.is_some()) + usize::from(view.notice.is_some());
    let mut first = blocks[..before_answer + 1].to_vec();
    first.push(section(format!(
        "_The answer is {answer_count} sections long: the whole of it is in the attached file `answer.md`._"
    )));
    first.extend(blocks[before_answer + answer_count..].iter().cloned());
    let overflow = as_messages(&blocks[before_answer + 1..before_answer + answer_count], &continued);
    Rendered { messages: as_messages(&first, &text), file: Some(answer.answer.clone()), overflow }
}

/// The findings as mrkdwn: each headline, how it relates to the others, and its evidence as written, in a code block.
fn findings(findings: &[FindingView]) -> String {
    let mut list = String::from("*Findings*\n");
    for finding in findings.iter().take(FINDINGS_SHOWN) {
        list.push_str(&format!("• {}\n", mrkdwn::escape(&finding.headline)));
        for link in &finding.links {
            list.push_str(&format!("      _{}_\n", mrkdwn::escape(link)));
        }
        if !finding.evidence.is_empty() {
            list.push_str("```\n");
            for line in &finding.evidence {
                // A fence inside the evidence would end the block early.
                list.push_str(&mrkdwn::escape(&line.replace("```", "`\u{200B}``")));
                list.push('\n');
            }
            list.push_str("```\n");
        }
    }
    if findings.len() > FINDINGS_SHOWN {
        list.push_str(&format!("…and {} more in the context file\n", findings.len() - FINDINGS_SHOWN));
    }
    list
}

/// The message shown while the answer streams: what has arrived so far, its end kept when it is long.
pub fn progress(title: &str, so_far: &str) -> Message {
    let shown = markdown(so_far);
    let count = shown.chars().count();
    let room = SECTION_LIMIT - 200;
    let tail: String = if count > room { shown.chars().skip(count - room).collect() } else { shown };
    let mut blocks = vec![context(format!(":hourglass_flowing_sand: {}", mrkdwn::escape(title)))];
    if !tail.trim().is_empty() {
        // An unclosed fence would swallow the rest of the message.
        let fences = tail.matches("```").count();
        let tail = if fences % 2 == 1 { format!("{tail}```") } else { tail };
        blocks.push(section(tail));
    }
    Message { text: title.to_string(), blocks }
}

/// The last message of an answer too long for a slash command's `response_url`: where to get the whole of it.
pub fn rest_elsewhere(request_id: &str) -> Message {
    let text = "The answer goes on longer than a slash command's reply can carry. Invite kubechat to this channel, or \
                ask in a channel it is in, for the whole of it, attached as a file.";
    Message {
        text: text.to_string(),
        blocks: vec![section(format!("_{}_", mrkdwn::escape(text))), context(format!("request `{request_id}`"))],
    }
}

/// A failure, told to the user with the request id that finds it in the logs.
pub fn failure(what: &str, request_id: &str) -> Message {
    let text = format!("Sorry, I could not answer: {what}");
    Message {
        text: text.clone(),
        blocks: vec![
            section(format!(":x: {}", mrkdwn::escape(&text))),
            context(format!("request `{request_id}` · kubechat only reads the cluster; nothing was changed")),
        ],
    }
}

/// What kubechat understands; `readable` is what the asker may ask about (namespace globs, per cluster when kubechat
/// reads several: `clusters` names them, the default first).
pub fn help(ask: &str, diagnose: &str, readable: &[String], clusters: &[&str]) -> Message {
    let mut text = format!(
        "*kubechat* reads the cluster (read-only) and answers with evidence.\n\
         • `{diagnose} payments` — what is wrong in namespace payments\n\
         • `{diagnose} payments why is checkout slow?` — a diagnosis with a question\n\
         • `{ask} why is checkout failing? -n shop` — a question about a namespace\n\
         • `{diagnose} -n shop deployment/web` or `shop/web-7d9f` — narrowed to one object\n\
         • Mention me: `@kubechat diagnose payments`, or `@kubechat diagnose` in an alert's thread to use the alert's \
         namespace and pod\n\
         • Reply in a thread I answered to ask a follow-up"
    );
    if let [default, _, ..] = clusters {
        text.push_str(&format!(
            "\n• `{diagnose} payments --cluster {}` (or `-c`) — in another cluster; without it, {}",
            mrkdwn::escape(clusters[1]),
            mrkdwn::escape(default)
        ));
    }
    let text = if readable.is_empty() {
        format!("{text}\n_From here you may not ask about any namespace; ask your kubechat operator for access._")
    } else {
        let list: Vec<String> = readable.iter().map(|n| format!("`{}`", mrkdwn::escape(n))).collect();
        format!("{text}\n_From here you may ask about: {}_", list.join(", "))
    };
    Message { text: "kubechat help".into(), blocks: vec![section(text)] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits_hold(messages: &[Message]) {
        for message in messages {
            assert!(message.blocks.len() <= BLOCK_LIMIT);
            let chars: usize = message.blocks.iter().map(text_chars).sum();
            assert!(chars <= MESSAGE_TEXT_LIMIT, "a message of {chars} characters of text");
            for block in &message.blocks {
                if let Some(text) = block["text"]["text"].as_str() {
                    assert!(text.chars().count() <= SECTION_LIMIT, "a section of {} chars", text.chars().count());
                    assert_eq!(text.matches("```").count() % 2, 0, "unbalanced fence in {text}");
                }
            }
        }
    }

    #[test]
    fn long_text_splits_at_lines_and_keeps_fences_closed() {
        let mut text = String::new();
        for i in 0..400 {
            text.push_str(&format!("line {i} of the answer\n"));
            if i == 100 {
                text.push_str("```\n");
            }
            if i == 250 {
                text.push_str("```\n");
            }
        }
        text.push_str(&"x".repeat(7000));
        let blocks = sections(&text);
        assert!(blocks.len() >= 4, "{}", blocks.len());
        let messages: Vec<Message> =
            into_messages(&blocks).into_iter().map(|blocks| Message { text: String::new(), blocks }).collect();
        assert_eq!(messages.len(), 2, "16 KB of sections in two messages");
        limits_hold(&messages);
        let joined: String = blocks.iter().map(|b| b["text"]["text"].as_str().unwrap()).collect::<Vec<_>>().join("\n");
        assert!(joined.contains("line 0 of") && joined.contains("line 399 of"));
        assert_eq!(joined.matches('x').count(), 7000, "a long line is cut, not lost");
    }

    fn an_answer(text: String) -> Answer {
        Answer {
            cluster: "prod".into(),
            namespace: "payments".into(),
            answer: text,
            model: "mistral".into(),
            context: "context".into(),
            findings: Vec::new(),
            commands: vec![crate::commands::Command {
                command: "kubectl delete pod -n payments api-1".into(),
                read_only: false,
                label: crate::commands::Label::Mutating,
                sensitive: false,
                grounded: true,
                note: None,
            }],
            prompt: crate::prompt::PromptVersion {
                name: "diagnose".into(),
                version: "0123456789ab".into(),
                revision: Some("abc1234".into()),
            },
            usage: Default::default(),
            prompt_tokens_estimated: 0,
            truncated: false,
            degraded: None,
            gaps: Vec::new(),
        }
    }

    #[test]
    fn an_answer_fits_slacks_limits_or_goes_into_a_file() {
        let footer =
            Footer { took: Duration::from_millis(4200), request_id: "req-1", scope_note: Some("from the alert") };
        let short = answer(&an_answer("The image tag does not exist.".into()), &footer);
        assert_eq!(short.file, None);
        assert_eq!(short.messages.len(), 1);
        let blocks = &short.messages[0].blocks;
        assert_eq!(blocks[0]["text"]["text"], "Diagnosis of namespace payments");
        let all = serde_json::to_string(blocks).unwrap();
        assert!(all.contains(":warning: mutating: review before running") && all.contains("```kubectl delete pod"));
        let last = blocks.last().unwrap().to_string();
        assert!(last.contains("model mistral · prompt diagnose@0123456789ab (abc1234) · cluster prod · namespace payments · 4.2 s · request `req-1`"), "{last}");

        // Two continuation messages are fine; beyond three, the answer is a file, and the rest of it as messages for
        // when the file cannot be attached.
        let text: String = (0..25_000).map(|i| format!("line {i} of the answer\n")).collect();
        let long = answer(&an_answer(text), &footer);
        assert!(long.file.is_some());
        assert_eq!(long.messages.len(), 1);
        limits_hold(&long.messages);
        let blocks = &long.messages[0].blocks;
        assert_eq!(blocks.iter().filter(|b| b["type"] == "context").count(), 2, "the scope note and one footer");
        assert!(serde_json::to_string(blocks).unwrap().contains("answer.md"));
        limits_hold(&long.overflow);
        let sections = |messages: &[Message]| -> String {
            let blocks = messages.iter().flat_map(|m| &m.blocks);
            blocks.filter_map(|b| b["text"]["text"].as_str()).filter(|t| t.starts_with("line ")).collect()
        };
        let told = sections(&long.messages) + sections(&long.overflow).as_str();
        let mut at = 0;
        for i in 0..25_000 {
            let line = format!("line {i} of the answer");
            at += told[at..].find(&line).unwrap_or_else(|| panic!("{line:?} lost or out of order")) + line.len();
        }
        let middling = answer(&an_answer("a line of the answer\n".repeat(700)), &footer);
        assert!(middling.file.is_none() && middling.messages.len() == 2, "{}", middling.messages.len());
        limits_hold(&middling.messages);
        assert!(middling.overflow.is_empty());
    }

    #[test]
    fn markdown_becomes_safe_mrkdwn() {
        let md =
            "## Root cause\n**The image tag** is wrong <@U1> @here\n- check it\n```bash\nkubectl get pods -n a\n```";
        let out = markdown(md);
        assert!(out.starts_with("*Root cause*\n*The image tag* is wrong &lt;@U1&gt; @\u{200B}here\n• check it\n"));
        assert!(out.contains("```\nkubectl get pods -n a\n```"), "{out}");
    }

    #[test]
    fn progress_keeps_the_end_and_closes_a_fence() {
        let so_far = format!("{}\n```\nkubectl get", "word ".repeat(2000));
        let message = progress("Diagnosing payments…", &so_far);
        limits_hold(std::slice::from_ref(&message));
        assert!(message.blocks[1]["text"]["text"].as_str().unwrap().ends_with("kubectl get\n```"));
    }
}
