//! Text for Slack's mrkdwn: the control characters escaped and mass mentions neutralised, so nothing the model or the
//! cluster wrote can ping a channel, a user or a group, or forge a link.

/// Escapes `&`, `<` and `>` (which also disarms `<@U…>`, `<!subteam^…>` and `<!channel>`), and breaks `@channel`,
/// `@here` and `@everyone` with a zero-width space.
pub fn escape(text: &str) -> String {
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let lower = rest.to_lowercase();
        if ["channel", "here", "everyone"].iter().any(|w| lower.starts_with(w)) {
            out.push('\u{200B}');
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_pings_or_links() {
        assert_eq!(escape("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(escape("<!channel> <@U123> <!subteam^S1>"), "&lt;!channel&gt; &lt;@U123&gt; &lt;!subteam^S1&gt;");
        assert_eq!(escape("ping @channel and @Here, not @bob"), "ping @\u{200B}channel and @\u{200B}Here, not @bob");
        assert_eq!(escape("<https://evil.example|click>"), "&lt;https://evil.example|click&gt;");
    }
}
