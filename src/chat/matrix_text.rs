//! How a Matrix message's text is read: `!commands`, whether it is addressed to the bot, and the question in it.
//! Plain text in, a [`Route`] out, so it is tested and fuzzed without a homeserver.

use super::route::{self, Route};

/// Who the bot is in a room: its user id (`@kubechat:example.org`) and display name.
pub struct Bot<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
}

/// What a message asks for, or `None` when it is not for the bot. `mentions` is whether the message's `m.mentions`
/// names the bot, `None` when the client sent no `m.mentions` (then the body is searched for the id or the name);
/// `follow_up` is whether the message is in a thread the bot answered. Unknown `!commands` are someone else's.
pub fn read(bot: &Bot, body: &str, mentions: Option<bool>, follow_up: bool) -> Option<Route> {
    let body = body.trim();
    if let Some(command) = body.strip_prefix('!') {
        let (name, rest) = command.split_once(char::is_whitespace).unwrap_or((command, ""));
        return match name.to_lowercase().as_str() {
            "ask" => Some(route::route(Some("/ask"), rest)),
            "diagnose" => Some(route::route(Some("/diagnose"), rest)),
            "help" => Some(Route::Help),
            _ => None,
        };
    }
    let mentioned = match mentions {
        Some(names_us) => names_us,
        None => (!bot.user_id.is_empty() && body.contains(bot.user_id)) || find_name(body, bot.name).is_some(),
    };
    (mentioned || follow_up).then(|| route::route(None, &question(bot, body)))
}

/// The body without reply fallbacks and without the mention itself.
pub fn question(bot: &Bot, body: &str) -> String {
    let body: String = body.lines().skip_while(|l| l.starts_with("> ")).collect::<Vec<_>>().join("\n");
    let mut text = if bot.user_id.is_empty() { body } else { body.replace(bot.user_id, " ") };
    if let Some(found) = find_name(&text, bot.name) {
        text.replace_range(found, " ");
    }
    text.trim().trim_start_matches([':', ',']).trim().to_string()
}

/// Where the display name first appears in `text`, ignoring case; never for an empty name. The range is of `text`
/// itself (lowercasing can change a text's length, so positions in a lowercased copy would not do).
fn find_name(text: &str, name: &str) -> Option<std::ops::Range<usize>> {
    if name.trim().is_empty() {
        return None;
    }
    let pattern = regex::RegexBuilder::new(&regex::escape(name)).case_insensitive(true).build().ok()?;
    pattern.find(text).map(|m| m.range())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Intent;

    const BOT: Bot = Bot { user_id: "@kubechat:example.org", name: "KubeChat" };

    fn question_of(route: Option<Route>) -> Option<String> {
        match route {
            Some(Route::Question { question, .. }) => Some(question),
            _ => None,
        }
    }

    #[test]
    fn commands_mentions_and_follow_ups() {
        assert!(matches!(
            read(&BOT, "!diagnose payments", None, false),
            Some(Route::Question { intent: Intent::Diagnose, .. })
        ));
        assert_eq!(read(&BOT, "!help", None, false), Some(Route::Help));
        assert_eq!(read(&BOT, "!deploy prod", None, false), None, "another bot's command");
        assert_eq!(read(&BOT, "lunch?", None, false), None);
        assert_eq!(read(&BOT, "kubechat: why?", Some(false), false), None, "m.mentions is trusted when sent");
        assert_eq!(
            question_of(read(&BOT, "kubechat: why is web down?", None, false)).as_deref(),
            Some("why is web down?")
        );
        assert_eq!(
            question_of(read(&BOT, "@kubechat:example.org why is web down?", Some(true), false)).as_deref(),
            Some("why is web down?")
        );
        assert_eq!(question_of(read(&BOT, "and the logs?", None, true)).as_deref(), Some("and the logs?"));
        assert_eq!(
            question_of(read(&BOT, "> <@alice:example.org> earlier\n\nKUBECHAT what now?", None, false)).as_deref(),
            Some("what now?")
        );
    }

    #[test]
    fn a_name_is_found_in_text_whose_lowercase_is_longer() {
        // 'İ' lowercases to two characters: positions in a lowercased copy are off by one byte here.
        let bot = Bot { user_id: "@kc:example.org", name: "kubechat" };
        assert_eq!(question(&bot, "İİ kubechat why?"), "İİ   why?");
        let empty = Bot { user_id: "", name: "" };
        assert_eq!(read(&empty, "anything", None, false), None, "an empty name matches nothing");
    }
}
