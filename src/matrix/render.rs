//! An answer as a Matrix message: a plain-text `body` and an `org.matrix.custom.html` `formatted_body`, sanitised to the
//! tags and attributes the Matrix spec allows, with the findings, the suggested commands (labelled read-only or
//! mutating), the context the model read in a `<details>` block, and a footer; sized to stay well under the homeserver's
//! 64 KiB event limit, encrypted and edited (an edit carries the content twice).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::LazyLock;

use crate::answer::Answer;
use crate::view::View;

/// The context shown in the `<details>` block, at most; the rest is cut with a marker.
const CONTEXT_LIMIT: usize = 12_000;
/// Findings and commands listed.
const FINDINGS_SHOWN: usize = 10;
const COMMANDS_SHOWN: usize = 8;

/// A message's two renderings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: String,
    pub html: String,
}

/// The tags and attributes of the Matrix spec's allowlist for `org.matrix.custom.html` (images left out: kubechat never
/// sends any, and a model must not be able to make a client fetch one).
static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut builder = ammonia::Builder::empty();
    builder
        .add_tags([
            "font",
            "del",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "blockquote",
            "p",
            "a",
            "ul",
            "ol",
            "sup",
            "sub",
            "li",
            "b",
            "i",
            "u",
            "strong",
            "em",
            "s",
            "code",
            "hr",
            "br",
            "div",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "caption",
            "pre",
            "span",
            "details",
            "summary",
        ])
        .add_tag_attributes("font", ["data-mx-bg-color", "data-mx-color", "color"])
        .add_tag_attributes("span", ["data-mx-bg-color", "data-mx-color", "data-mx-spoiler"])
        .add_tag_attributes("a", ["href", "target"])
        .add_tag_attributes("ol", ["start"])
        .url_schemes(HashSet::from(["https", "http", "mailto"]))
        .link_rel(Some("noopener"))
        .clean_content_tags(HashSet::from(["script", "style"]))
        .strip_comments(true);
    builder
});

/// Sanitises HTML to the spec's allowlist.
pub fn sanitize(html: &str) -> String {
    SANITIZER.clean(html).to_string()
}

/// Text made safe to put between tags.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The model's Markdown as HTML: raw HTML in it is escaped, not passed through, then the result is sanitised.
pub fn markdown(text: &str) -> String {
    use pulldown_cmark::{Event, Options, Parser};
    let parser =
        Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TABLES).map(|event| match event {
            Event::Html(html) | Event::InlineHtml(html) => Event::Text(html),
            other => other,
        });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    sanitize(&html)
}

fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let end = text[..end].rfind('\n').unwrap_or(end);
    format!("{}\n[… {} more bytes of context …]", &text[..end], text.len() - end)
}

/// The placeholder shown while the answer is prepared.
pub fn progress(title: &str) -> Rendered {
    Rendered { body: title.to_string(), html: format!("<p><em>{}</em></p>", escape(title)) }
}

/// A failure, with the request id that finds it in the logs.
pub fn failure(what: &str, request_id: &str) -> Rendered {
    Rendered {
        body: format!("Sorry, I could not answer: {what} (request {request_id})"),
        html: format!(
            "<p>Sorry, I could not answer: {}</p><p><sub>request <code>{}</code> · kubechat only reads the cluster; nothing was changed</sub></p>",
            escape(what),
            escape(request_id)
        ),
    }
}

/// What kubechat understands; `readable` is what the asker may ask about (namespace globs, per cluster when kubechat
/// reads several: `clusters` names them, the default first).
pub fn help(name: &str, readable: &[String], clusters: &[&str]) -> Rendered {
    let mut lines = vec![
        format!("!diagnose payments, or mention {name}: what is wrong in namespace payments"),
        "!diagnose payments why is checkout slow? — a diagnosis with a question".to_string(),
        "!ask why is checkout failing? -n shop — a question about a namespace".to_string(),
        "!diagnose -n shop deployment/web, or shop/web-7d9f — narrowed to one object".to_string(),
        "Reply in a thread kubechat answered to ask a follow-up.".to_string(),
    ];
    if let [default, other, ..] = clusters {
        lines.push(format!("!diagnose payments --cluster {other} (or -c) — in another cluster; without it, {default}"));
    }
    let namespaces = readable;
    let mut html =
        String::from("<p><strong>kubechat</strong> reads the cluster (read-only) and answers with evidence.</p><ul>");
    for line in &lines {
        let _ = write!(html, "<li>{}</li>", escape(line));
    }
    html.push_str("</ul>");
    let allowed = if namespaces.is_empty() {
        "From this room you may not ask about any namespace; ask your kubechat operator for access.".to_string()
    } else {
        format!("From this room you may ask about: {}", namespaces.join(", "))
    };
    let _ = write!(html, "<p><em>{}</em></p>", escape(&allowed));
    Rendered {
        body: format!(
            "kubechat reads the cluster (read-only) and answers with evidence.\n{}\n{allowed}",
            lines.join("\n")
        ),
        html,
    }
}

/// The final answer.
pub fn answer(answer: &Answer, took_seconds: f32, scope_note: Option<&str>) -> Rendered {
    let view = View::of(answer);
    let mut body = format!("{}\n", view.title);
    let mut html = format!("<h3>{}</h3>", escape(&view.title));
    if let Some(note) = scope_note {
        let _ = writeln!(body, "({note})");
        let _ = write!(html, "<p><em>{}</em></p>", escape(note));
    }
    if let Some(notice) = &view.notice {
        let _ = writeln!(body, "\n⚠ {notice}");
        let _ = write!(html, "<p><strong>⚠ {}</strong></p>", escape(notice));
    }
    if let Some(text) = &view.answer {
        let _ = writeln!(body, "\n{}", text.trim());
        html.push_str(&markdown(text));
    }
    if !view.findings.is_empty() {
        body.push_str("\nFindings:\n");
        html.push_str("<p><strong>Findings</strong></p><ul>");
        for finding in view.findings.iter().take(FINDINGS_SHOWN) {
            let _ = writeln!(body, "- {}", finding.headline);
            let _ = write!(html, "<li>{}", escape(&finding.headline));
            for link in &finding.links {
                let _ = writeln!(body, "  {link}");
                let _ = write!(html, "<br><em>{}</em>", escape(link));
            }
            if !finding.evidence.is_empty() {
                for line in &finding.evidence {
                    let _ = writeln!(body, "  | {line}");
                }
                let _ = write!(html, "<pre><code>{}</code></pre>", escape(&finding.evidence.join("\n")));
            }
            html.push_str("</li>");
        }
        if view.findings.len() > FINDINGS_SHOWN {
            let more = view.findings.len() - FINDINGS_SHOWN;
            let _ = writeln!(body, "- …and {more} more in the context");
            let _ = write!(html, "<li>…and {more} more in the context</li>");
        }
        html.push_str("</ul>");
    } else if view.answer.is_none() {
        let none = format!("kubechat found no problems in namespace {}.", answer.namespace);
        let _ = writeln!(body, "\n{none}");
        let _ = write!(html, "<p>{}</p>", escape(&none));
    }
    if !view.commands.is_empty() {
        body.push_str("\nSuggested commands (kubechat runs none of them):\n");
        html.push_str("<p><strong>Suggested commands</strong> (kubechat runs none of them)</p>");
        for command in view.commands.iter().take(COMMANDS_SHOWN) {
            let label = match command.label {
                crate::commands::Label::ReadOnly => "read-only",
                crate::commands::Label::Mutating => "MUTATING: review before running",
                crate::commands::Label::Review => "REVIEW: not one plain kubectl command",
            };
            let note = command.note.as_deref().map(|n| format!(" · {n}")).unwrap_or_default();
            let _ = writeln!(body, "[{label}{note}] {}", command.command);
            let _ = write!(
                html,
                "<p><em>{}{}</em></p><pre><code>{}</code></pre>",
                escape(label),
                escape(&note),
                escape(&command.command)
            );
        }
    }
    for gap in &view.gaps {
        let _ = writeln!(body, "\nnot read: {gap}");
        let _ = write!(html, "<p><em>not read: {}</em></p>", escape(gap));
    }
    let context = cut(&answer.context, CONTEXT_LIMIT);
    let _ = write!(
        html,
        "<details><summary>The context the model read ({} lines)</summary><pre><code>{}</code></pre></details>",
        answer.context.lines().count(),
        escape(&context)
    );
    let footer = format!("{} · {took_seconds:.1} s", view.footer);
    let _ = write!(body, "\n{footer}");
    let _ = write!(html, "<p><sub>{}</sub></p>", escape(&footer));
    Rendered { body, html: sanitize(&html) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_specs_tags_survive() {
        let html = markdown(
            "**bold** <script>alert(1)</script> <img src=x onerror=alert(1)> [link](javascript:alert(1))\n\n```\nkubectl get pods\n```",
        );
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(!html.contains("<script") && !html.contains("<img") && !html.contains("javascript:"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "raw HTML from the model is shown, not run: {html}");
        assert!(html.contains("<pre><code>kubectl get pods\n</code></pre>"), "{html}");
        let cleaned = sanitize(
            r#"<details><summary>s</summary><p onclick="x">p</p><iframe src="y"></iframe></details><a href="https://k8s.io">k</a>"#,
        );
        assert_eq!(
            cleaned,
            r#"<details><summary>s</summary><p>p</p></details><a href="https://k8s.io" rel="noopener">k</a>"#
        );
    }

    #[test]
    fn long_context_is_cut_at_a_line() {
        let context = "a line of context\n".repeat(2000);
        let out = cut(&context, CONTEXT_LIMIT);
        assert!(out.len() < CONTEXT_LIMIT + 100);
        assert!(out.ends_with("more bytes of context …]"));
        assert!(out.lines().rev().nth(1).unwrap() == "a line of context");
    }
}
