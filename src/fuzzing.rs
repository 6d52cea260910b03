//! The parsers' entry points for fuzzing: each takes arbitrary bytes and must never panic. The fuzz targets in
//! `fuzz/` call these (`scripts/fuzz`), and the test command replays every seed and every input the fuzzer ever
//! found a crash with (`fuzz/regressions/`) through them.

use crate::chat::{matrix_text, route};
use crate::slack::{self, SlashCommand, signature};

/// A fuzz target: arbitrary bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: what `scripts/fuzz` runs and `fuzz/seeds/<name>/` holds inputs for.
pub const TARGETS: [(&str, Target); 7] = [
    ("slack_request", slack_request),
    ("slack_event", slack_event),
    ("matrix_message", matrix_message),
    ("kubectl_command", kubectl_command),
    ("redaction", redaction),
    ("dump", dump),
    ("yaml", yaml),
];

/// Splits `data` at its first `n - 1` newlines; missing parts are empty.
fn parts<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    let mut rest = data;
    for (i, part) in out.iter_mut().enumerate() {
        if i == N - 1 {
            *part = rest;
            break;
        }
        match rest.iter().position(|b| *b == b'\n') {
            Some(at) => {
                *part = &rest[..at];
                rest = &rest[at + 1..];
            }
            None => {
                *part = rest;
                rest = &rest[rest.len()..];
            }
        }
    }
    out
}

/// A signed Slack request: `timestamp\nsignature\nbody`. The signature is checked as sent, then the body is signed
/// properly and read as a slash command form, the way `/slack/commands` does once a signature checks out.
pub fn slack_request(data: &[u8]) {
    const SECRET: &[u8] = b"fuzz-signing-secret";
    let [timestamp, sent_signature, body] = parts::<3>(data);
    let timestamp = String::from_utf8_lossy(timestamp);
    let sent_signature = String::from_utf8_lossy(sent_signature);
    let now = 1_700_000_000;
    let _ = signature::verify(SECRET, Some(&timestamp), Some(&sent_signature), body, now);
    let good = signature::sign(SECRET, timestamp.trim(), body);
    let verified = signature::verify(SECRET, Some(&timestamp), Some(&good), body, now);
    if timestamp.trim().parse::<i64>().is_ok_and(|t| t.abs_diff(now) <= 300) {
        assert!(verified.is_ok(), "a request signed with the secret, in the window, passes: {verified:?}");
    }
    let _: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    if let Ok(command) = serde_urlencoded::from_bytes::<SlashCommand>(body) {
        let _ = route::route(Some(&command.command), &command.text);
    }
}

/// An Events API delivery (JSON), read as kubechat reads it, and the question routed.
pub fn slack_event(data: &[u8]) {
    let Ok(delivery) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    if let Ok(Some(slack::Incoming::Mention { text, .. } | slack::Incoming::Reply { text, .. })) =
        slack::read_event(&delivery, "UKUBECHAT")
    {
        let _ = route::route(None, &text);
    }
}

/// A Matrix message: `flags\nbot user id\nbot display name\nbody`. The flags' first byte says whether `m.mentions`
/// was sent and names the bot, the second whether it is a thread follow-up.
pub fn matrix_message(data: &[u8]) {
    let [flags, user_id, name, body] = parts::<4>(data);
    let mentions = match flags.first().map(|f| f % 3) {
        Some(1) => Some(true),
        Some(2) => Some(false),
        _ => None,
    };
    let follow_up = flags.get(1).is_some_and(|f| f % 2 == 1);
    let (user_id, name) = (String::from_utf8_lossy(user_id), String::from_utf8_lossy(name));
    let bot = matrix_text::Bot { user_id: &user_id, name: &name };
    let _ = matrix_text::read(&bot, &String::from_utf8_lossy(body), mentions, follow_up);
}

/// A model's answer: the `kubectl` commands in it are extracted, parsed and checked against a namespace.
pub fn kubectl_command(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let facts = crate::facts::Facts { namespace: "shop".to_string(), ..Default::default() };
    for line in crate::commands::extract(&text).iter().map(String::as_str).chain(text.lines()) {
        let _ = crate::commands::split(line);
        let _ = crate::commands::parse(line);
        let _ = crate::commands::check(line, &facts);
    }
}

/// Any text through the redaction rules; what comes out has nothing left to redact.
pub fn redaction(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let once = crate::redact::text(&text);
    let twice = crate::redact::text(&once);
    assert_eq!(once, twice, "redacting redacted text changes nothing");
}

/// A dump file's text, loaded.
pub fn dump(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::dump::Dump::from_text(text);
    }
}

/// YAML text, each document read by the block-style reader and by the general parser: what the first reads, the
/// second reads the same.
pub fn yaml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::yaml::readings_agree(text);
    }
}
