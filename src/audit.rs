//! The audit log: one JSON line per request, to stdout or a file. It says who asked what about which namespace, which
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
        let mut line = serde_json::to_string(record).expect("an audit record serializes");
        line.push('\n');
        let mut sink = self.sink.lock().expect("not poisoned");
        if let Err(e) = sink.write_all(line.as_bytes()).and_then(|()| sink.flush()) {
            tracing::error!(request_id = %record.request_id, "cannot write the audit log: {e}");
        }
    }
}
