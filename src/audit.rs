//! The audit log: one JSON line per request, to stdout or a file. It says who asked what about which cluster and
//! namespace, which
//! prompt and model answered, what was found (reason codes only), the token counts, the time per stage and how it
//! ended. It never holds secrets, log lines or answers.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// One request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub time: String,
    pub request_id: String,
    pub platform: &'static str,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub intent: &'static str,
    /// kubechat's name of the cluster asked about (as named, for one it does not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub findings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u32>,
    pub latency_ms: Latency,
    pub outcome: Outcome,
    /// Why it did not end in an answer: kubechat's own message (names of namespaces and objects at most).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The model answered.
    Answered,
    /// The findings were posted without the model (down, busy, slow).
    Degraded,
    /// The asker may not read the namespace.
    Refused,
    RateLimited,
    /// Too many questions were waiting already.
    Busy,
    /// The request named something that is not a namespace or object name, or was not a request at all.
    Invalid,
    /// No identity came with an HTTP request.
    Unauthenticated,
    /// The cluster could not be read, or the answer could not be posted.
    Error,
    /// The asker left before the answer (an HTTP client that hung up).
    #[default]
    Abandoned,
    /// kubechat shut down before the answer was finished (past `drain_seconds`); the asker was told to ask again.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Degraded => "degraded",
            Outcome::Refused => "refused",
            Outcome::RateLimited => "rate_limited",
            Outcome::Busy => "busy",
            Outcome::Invalid => "invalid",
            Outcome::Unauthenticated => "unauthenticated",
            Outcome::Error => "error",
            Outcome::Abandoned => "abandoned",
            Outcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retrieve: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_first_token: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm_total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post: Option<u64>,
    pub total: u64,
}

/// The longest a text field of an audit line gets (a user name from a proxy's header, a refusal's reason), in
/// characters; longer ones are cut and marked. The findings listed are capped too, so no request writes a long line.
const FIELD_LIMIT: usize = 512;
const FINDINGS_LIMIT: usize = 50;

fn cut(text: &mut String) {
    if text.chars().count() > FIELD_LIMIT {
        *text = format!("{}… (cut)", text.chars().take(FIELD_LIMIT).collect::<String>());
    }
}

/// The record with every text field at most [`FIELD_LIMIT`] characters and at most [`FINDINGS_LIMIT`] findings.
fn bounded(record: &Record) -> Record {
    let mut record = record.clone();
    cut(&mut record.request_id);
    cut(&mut record.user);
    for text in
        [&mut record.channel, &mut record.cluster, &mut record.namespace, &mut record.object, &mut record.reason]
            .into_iter()
            .flatten()
    {
        cut(text);
    }
    if record.findings.len() > FINDINGS_LIMIT {
        let more = record.findings.len() - FINDINGS_LIMIT;
        record.findings.truncate(FINDINGS_LIMIT);
        record.findings.push(format!("… and {more} more"));
    }
    record
}

/// Warnings about refused requests (bad signatures, foreign pages, refused alerts): at most `REFUSALS_LOGGED` a
/// minute of each kind, then one line saying how many were not logged, so a flood cannot flood the logs. The audit
/// log still has one line per request.
pub fn refused(kind: &'static str, message: &str) {
    use std::collections::HashMap;
    use std::sync::LazyLock;
    use std::time::{Duration, Instant};
    static WINDOWS: LazyLock<Mutex<HashMap<&'static str, (Instant, usize)>>> = LazyLock::new(Mutex::default);
    let mut windows = WINDOWS.lock().expect("not poisoned");
    let (start, count) = windows.entry(kind).or_insert((Instant::now(), 0));
    if start.elapsed() >= Duration::from_secs(60) {
        if *count > REFUSALS_LOGGED {
            tracing::warn!(
                kind,
                "{} more refused requests were not logged in the last minute",
                *count - REFUSALS_LOGGED
            );
        }
        (*start, *count) = (Instant::now(), 0);
    }
    *count += 1;
    if *count <= REFUSALS_LOGGED {
        tracing::warn!(kind, "{message}");
    } else if *count == REFUSALS_LOGGED + 1 {
        tracing::warn!(
            kind,
            "more than {REFUSALS_LOGGED} refused requests this minute: the rest are counted, not logged"
        );
    }
}

const REFUSALS_LOGGED: usize = 20;

/// Where the lines go.
pub struct AuditLog {
    sink: Mutex<Box<dyn Write + Send>>,
}

impl AuditLog {
    pub fn stdout() -> AuditLog {
        AuditLog { sink: Mutex::new(Box::new(std::io::stdout())) }
    }

    /// Appends to `path`, creating it.
    pub fn file(path: &Path) -> std::io::Result<AuditLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog { sink: Mutex::new(Box::new(file)) })
    }

    /// Collects lines in memory, for tests.
    pub fn memory(buffer: std::sync::Arc<Mutex<Vec<u8>>>) -> AuditLog {
        struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("not poisoned").extend_from_slice(data);
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        AuditLog { sink: Mutex::new(Box::new(Shared(buffer))) }
    }

    pub fn write(&self, record: &Record) {
        let record = bounded(record);
        let mut line = serde_json::to_string(&record).expect("an audit record serializes");
        line.push('\n');
        let mut sink = self.sink.lock().expect("not poisoned");
        if let Err(e) = sink.write_all(line.as_bytes()).and_then(|()| sink.flush()) {
            tracing::error!(request_id = %record.request_id, "cannot write the audit log: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_stay_short_whatever_comes_in() {
        let buffer = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = AuditLog::memory(buffer.clone());
        let record = Record {
            user: "u".repeat(100_000),
            reason: Some("r".repeat(120_000)),
            findings: vec!["CrashLoopBackOff".to_string(); 500],
            ..Record::default()
        };
        log.write(&record);
        let line = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert!(line.len() < 4 * 1024, "{} bytes", line.len());
        assert!(line.contains("… (cut)") && line.contains("… and 450 more"), "{line}");
    }
}
