//! The model: one [`ChatApi`] trait, two real wire formats (Ollama's native `/api/chat` NDJSON and the
//! OpenAI-compatible `/v1/chat/completions` SSE), and the limits around them: timeouts for connecting, the first token
//! and the whole answer, retries on connection failures only, and bounded concurrency with a visible queue.

mod ollama;
mod openai;

pub use openai::Events as SseEvents;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use serde::Serialize;
use tokio::sync::Semaphore;

/// Which wire format the model server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Ollama,
    Openai,
}

#[derive(Clone)]
pub struct LlmConfig {
    /// Base URL: `http://ollama:11434`, or `http://host:8000` (or `…/v1`) for an OpenAI-compatible server.
    pub url: String,
    pub api: Api,
    pub model: String,
    /// The model's context window in tokens (Ollama's `num_ctx`).
    pub num_ctx: usize,
    /// Tokens kept free for the answer (`num_predict` / `max_tokens`).
    pub answer_tokens: usize,
    pub temperature: f32,
    /// How long Ollama keeps the model loaded after a request.
    pub keep_alive: String,
    /// Send the system text inside the first user message, for chat templates without a system role (Mistral's).
    pub fold_system: bool,
    pub connect_timeout: Duration,
    pub first_token_timeout: Duration,
    pub total_timeout: Duration,
    /// Requests to the model at once; more wait in line.
    pub concurrency: usize,
}

/// Printed without the URL's credentials.
impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("url", &crate::secret::without_credentials(&self.url))
            .field("api", &self.api)
            .field("model", &self.model)
            .field("num_ctx", &self.num_ctx)
            .field("answer_tokens", &self.answer_tokens)
            .field("temperature", &self.temperature)
            .field("keep_alive", &self.keep_alive)
            .field("fold_system", &self.fold_system)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl Default for LlmConfig {
    fn default() -> LlmConfig {
        LlmConfig {
            url: "http://127.0.0.1:11434".into(),
            api: Api::Ollama,
            model: "mistral".into(),
            num_ctx: 8192,
            answer_tokens: 1024,
            temperature: 0.2,
            keep_alive: "30m".into(),
            fold_system: false,
            connect_timeout: Duration::from_secs(5),
            first_token_timeout: Duration::from_secs(120),
            total_timeout: Duration::from_secs(300),
            concurrency: 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("cannot connect to the model server at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("the model server gave no {stage} within {}s", after.as_secs())]
    Timeout { stage: &'static str, after: Duration },
    #[error("the model server answered {code}: {message}")]
    Status { code: u16, message: String },
    #[error("the model server failed mid-answer: {0}")]
    Stream(String),
    #[error("cannot read the model server's reply: {0}")]
    Decode(String),
}

impl LlmError {
    /// The kind of failure, as the metrics count it.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Connect { .. } => "connect",
            LlmError::Timeout { .. } => "timeout",
            LlmError::Status { .. } => "status",
            LlmError::Stream(_) => "stream",
            LlmError::Decode(_) => "decode",
        }
    }

    /// What the asker is told: what happened to the model in their words, and what to do. The technical cause (this
    /// error's message) goes to the logs and the audit line.
    pub fn notice(&self) -> &'static str {
        match self {
            LlmError::Connect { .. } => {
                "The model server did not answer, so these are kubechat's own findings. If this keeps happening, tell whoever runs kubechat."
            }
            LlmError::Timeout { .. } => {
                "The model did not answer in time, so these are kubechat's own findings. Ask again later for the model's answer."
            }
            LlmError::Status { code: 429 | 503, .. } => {
                "The model server is overloaded, so these are kubechat's own findings. Ask again in a few minutes for the model's answer."
            }
            LlmError::Stream(_) => {
                "The model server stopped in the middle of its answer, so these are kubechat's own findings."
            }
            LlmError::Status { .. } | LlmError::Decode(_) => {
                "The model server could not answer, so these are kubechat's own findings. If this keeps happening, tell whoever runs kubechat."
            }
        }
    }

    /// A connection failure, the URL and the message without the URL's credentials (the error of the HTTP client
    /// quotes the whole URL).
    fn connect(url: &str, message: &str) -> LlmError {
        use crate::secret::without_credentials;
        LlmError::Connect {
            url: without_credentials(url).into_owned(),
            message: without_credentials(message).into_owned(),
        }
    }

    fn is_connect(&self) -> bool {
        matches!(self, LlmError::Connect { .. })
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

/// The system and user text as messages, folded into one user message where the template has no system role.
pub fn messages(config: &LlmConfig, system: &str, user: &str) -> Vec<Message> {
    if config.fold_system {
        vec![Message { role: "user", content: format!("{system}\n\n{user}") }]
    } else {
        vec![
            Message { role: "system", content: system.to_string() },
            Message { role: "user", content: user.to_string() },
        ]
    }
}

/// What the model streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Token(String),
    /// The end: token counts as the server reports them, and why it stopped (`stop`, `length`).
    Done {
        usage: Usage,
        finish: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
}

pub type ChunkStream<'a> = Pin<Box<dyn Stream<Item = Result<Chunk, LlmError>> + Send + 'a>>;

/// A model server's chat endpoint.
pub trait ChatApi: Send + Sync {
    /// Streams the answer to `messages`; connection and HTTP errors come as the first item.
    fn chat<'a>(&'a self, messages: &'a [Message], config: &'a LlmConfig) -> ChunkStream<'a>;
    /// The models the server offers.
    fn models<'a>(
        &'a self,
        config: &'a LlmConfig,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<String>, LlmError>> + Send + 'a>>;
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub usage: Usage,
    pub finish: Option<String>,
}

/// The model behind its limits.
pub struct Llm {
    pub config: LlmConfig,
    api: Box<dyn ChatApi>,
    slots: Semaphore,
    waiting: AtomicUsize,
}

impl Llm {
    pub fn new(config: LlmConfig) -> Result<Arc<Llm>, LlmError> {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| LlmError::connect(&config.url, &e.to_string()))?;
        let api: Box<dyn ChatApi> = match config.api {
            Api::Ollama => Box::new(ollama::Ollama { http }),
            Api::Openai => Box::new(openai::OpenAi { http }),
        };
        let slots = Semaphore::new(config.concurrency.max(1));
        Ok(Arc::new(Llm { config, api, slots, waiting: AtomicUsize::new(0) }))
    }

    /// How many requests wait for a free slot.
    pub fn queue_len(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub async fn models(&self) -> Result<Vec<String>, LlmError> {
        self.api.models(&self.config).await
    }

    /// The system and user text as messages (see [`messages`]).
    pub fn messages(&self, system: &str, user: &str) -> Vec<Message> {
        messages(&self.config, system, user)
    }

    /// Asks the model, calling `on_token` for each token as it arrives. `on_queued` hears the caller's place in line
    /// when it has to wait. Connection failures are retried (twice, before any token); nothing else is.
    pub async fn chat(
        &self,
        messages: &[Message],
        mut on_token: impl FnMut(&str) + Send,
        on_queued: impl FnOnce(usize) + Send,
    ) -> Result<Completion, LlmError> {
        let position = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        // Leaves the line however the wait ends, a caller that gives up (a closed connection) included.
        let in_line = InLine(&self.waiting);
        let permit = match self.slots.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                on_queued(position);
                self.slots.acquire().await.expect("the semaphore is never closed")
            }
        };
        drop(in_line);
        let config = &self.config;
        let deadline = tokio::time::Instant::now() + config.total_timeout;
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let outcome = tokio::time::timeout_at(deadline, self.stream_once(messages, &mut on_token)).await;
            match outcome {
                Err(_) => break Err(LlmError::Timeout { stage: "complete answer", after: config.total_timeout }),
                Ok(Err((error, false))) if error.is_connect() && attempt < 3 => {
                    tracing::warn!(attempt, "retrying the model server: {error}");
                    tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                }
                Ok(result) => break result.map_err(|(error, _)| error),
            }
        };
        drop(permit);
        result
    }

    /// One attempt; the error says whether any token had arrived (then it must not be retried).
    async fn stream_once(
        &self,
        messages: &[Message],
        on_token: &mut (impl FnMut(&str) + Send),
    ) -> Result<Completion, (LlmError, bool)> {
        let config = &self.config;
        let mut stream = self.api.chat(messages, config);
        let mut text = String::new();
        let mut first = true;
        loop {
            let next = if first {
                match tokio::time::timeout(config.first_token_timeout, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        return Err((
                            LlmError::Timeout { stage: "first token", after: config.first_token_timeout },
                            false,
                        ));
                    }
                }
            } else {
                stream.next().await
            };
            match next {
                None => {
                    return Err((LlmError::Stream("the stream ended before the answer was complete".into()), !first));
                }
                Some(Err(e)) => return Err((e, !first)),
                Some(Ok(Chunk::Token(token))) => {
                    first = false;
                    on_token(&token);
                    text.push_str(&token);
                }
                Some(Ok(Chunk::Done { usage, finish })) => return Ok(Completion { text, usage, finish }),
            }
        }
    }
}

/// A place in the line for the model, given up when dropped.
struct InLine<'a>(&'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Splits a response body into lines, for NDJSON and SSE.
fn lines<'a>(response: reqwest::Response) -> Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send + 'a>> {
    let bytes = Box::pin(response.bytes_stream());
    Box::pin(futures::stream::unfold(
        (bytes, Vec::<u8>::new(), false),
        |(mut bytes, mut buffer, mut ended)| async move {
            loop {
                if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buffer.drain(..=end).collect();
                    return Some((Ok(String::from_utf8_lossy(&line).trim_end().to_string()), (bytes, buffer, ended)));
                }
                if ended {
                    if buffer.is_empty() {
                        return None;
                    }
                    let line = String::from_utf8_lossy(&buffer).trim_end().to_string();
                    return Some((Ok(line), (bytes, Vec::new(), true)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let message = crate::secret::without_credentials(&crate::error_chain(&e)).into_owned();
                        return Some((Err(LlmError::Stream(message)), (bytes, Vec::new(), true)));
                    }
                    None => ended = true,
                }
            }
        },
    ))
}

/// Sends the request, then turns each line of the body into chunks with `parse`; a failed request is the first item.
fn chunk_stream<'a>(
    request: reqwest::RequestBuilder,
    url: String,
    parse: impl FnMut(&str) -> Vec<Result<Chunk, LlmError>> + Send + 'a,
) -> ChunkStream<'a> {
    let mut parse = Some(parse);
    let start = async move {
        match request.send().await {
            Ok(r) if r.status().is_success() => Ok(lines(r)),
            Ok(r) => Err(status_error(r).await),
            Err(e) => Err(request_error(&url, e)),
        }
    };
    Box::pin(futures::stream::once(start).flat_map(move |started| match started {
        Err(e) => futures::stream::iter(vec![Err(e)]).left_stream(),
        Ok(lines) => {
            let mut parse = parse.take().expect("a request starts once");
            lines
                .flat_map(move |line| {
                    futures::stream::iter(match line {
                        Ok(line) if line.trim().is_empty() => Vec::new(),
                        Ok(line) => parse(&line),
                        Err(e) => vec![Err(e)],
                    })
                })
                .right_stream()
        }
    }))
}

/// Maps a request error to a connection failure or a stream failure.
fn request_error(url: &str, error: reqwest::Error) -> LlmError {
    if error.is_connect() || error.is_timeout() && !error.is_body() {
        LlmError::connect(url, &crate::error_chain(&error))
    } else {
        LlmError::Stream(crate::secret::without_credentials(&crate::error_chain(&error)).into_owned())
    }
}

/// An HTTP error status with the server's own message.
async fn status_error(response: reqwest::Response) -> LlmError {
    let code = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().or(v["error"].as_str()).map(str::to_string))
        .unwrap_or_else(|| body.chars().take(300).collect());
    LlmError::Status { code, message: crate::secret::without_credentials(&message).into_owned() }
}
