//! A local stand-in for Slack: the Web API methods kubechat calls, each call recorded and checked against the fields
//! Slack documents (and parsed with slack-morphism's typed models of the requests), the file upload URLs, slash
//! commands' response URLs, and a Socket Mode WebSocket server that speaks Slack's envelope protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

pub const BOT_TOKEN: &str = "xoxb-test-bot-token";
pub const APP_TOKEN: &str = "xapp-test-app-token";
pub const BOT_USER: &str = "UKUBECHAT";
pub const BOT_ID: &str = "BKUBECHAT";
pub const CHANNEL: &str = "COPS";

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub at: Instant,
    pub body: Value,
    /// The HTTP status the fake answered.
    pub status: u16,
    /// The ts of the message a successful `chat.postMessage` created.
    pub ts: Option<String>,
}

#[derive(Default)]
pub struct Fake {
    pub calls: Mutex<Vec<Call>>,
    pub violations: Mutex<Vec<String>>,
    /// Messages by channel, then thread ts (the parent first).
    pub threads: Mutex<HashMap<String, Vec<Value>>>,
    /// How many of the next `chat.postMessage` calls get `429 Retry-After: 1`.
    pub rate_limit: Mutex<usize>,
    /// How many of the next `chat.postMessage` calls get `500 Internal Server Error`.
    pub fail: Mutex<usize>,
    /// Channels kubechat is not a member of: `chat.postMessage` there fails with `not_in_channel`.
    pub not_in: Mutex<Vec<String>>,
    /// An app without the `files:write` scope: uploads fail with `missing_scope`.
    pub no_files: Mutex<bool>,
    /// Declared length and received bytes of each upload.
    uploads: Mutex<HashMap<String, (usize, Option<String>)>>,
    clock: AtomicU64,
    pub changed: tokio::sync::Notify,
    ws_url: Mutex<String>,
}

pub struct FakeSlack {
    pub url: String,
    pub fake: Arc<Fake>,
    /// Socket Mode connections as they open.
    pub sockets: tokio::sync::Mutex<mpsc::UnboundedReceiver<Socket>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

/// One Socket Mode connection, from the server's side.
pub struct Socket {
    pub send: mpsc::UnboundedSender<Frame>,
    pub received: mpsc::UnboundedReceiver<Value>,
}

impl Socket {
    pub fn envelope(&self, value: Value) {
        self.send.send(Frame::text(value.to_string())).unwrap();
    }

    /// The next frame the client sent, within five seconds.
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(Duration::from_secs(5), self.received.recv())
            .await
            .expect("the client sent nothing within 5 s")
            .expect("the connection closed")
    }
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let fake = Arc::new(Fake { clock: AtomicU64::new(1_700_000_000), ..Fake::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        *fake.ws_url.lock().unwrap() = format!("ws://{}/link", ws_listener.local_addr().unwrap());
        let app = Router::new()
            .route("/api/{method}", post(api))
            .route("/upload/{id}", post(upload))
            .route("/respond/{id}", post(respond))
            .with_state((fake.clone(), format!("http://{addr}")));
        let http = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let (sockets_tx, sockets) = mpsc::unbounded_channel();
        let ws = tokio::spawn(async move {
            while let Ok((stream, _)) = ws_listener.accept().await {
                let Ok(socket) = tokio_tungstenite::accept_async(stream).await else { continue };
                let (mut sink, mut stream) = socket.split();
                let (send, mut outgoing) = mpsc::unbounded_channel::<Frame>();
                let (incoming, received) = mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Some(frame) = outgoing.recv().await {
                        let close = matches!(frame, Frame::Close(_));
                        if sink.send(frame).await.is_err() || close {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some(Ok(frame)) = stream.next().await {
                        if let Frame::Text(text) = frame {
                            let _ = incoming.send(serde_json::from_str::<Value>(&text).unwrap_or(Value::Null));
                        }
                    }
                });
                let _ = sockets_tx.send(Socket { send, received });
            }
        });
        FakeSlack {
            url: format!("http://{addr}"),
            fake,
            sockets: tokio::sync::Mutex::new(sockets),
            tasks: vec![http, ws],
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.url)
    }

    pub fn response_url(&self, id: &str) -> String {
        format!("{}/respond/{id}", self.url)
    }

    /// The next Socket Mode connection the client opens, within `within`.
    pub async fn socket(&self, within: Duration) -> Socket {
        let mut sockets = self.sockets.lock().await;
        tokio::time::timeout(within, sockets.recv()).await.expect("no Socket Mode connection in time").unwrap()
    }

    /// Adds a message to a channel as if someone had posted it; returns its ts.
    pub fn post(&self, message: Value) -> String {
        let ts = self.fake.next_ts();
        let mut message = message;
        message["ts"] = json!(ts);
        let thread = message["thread_ts"].as_str().unwrap_or(&ts).to_string();
        self.fake.threads.lock().unwrap().entry(thread).or_default().push(message);
        ts
    }

    pub fn calls(&self, method: &str) -> Vec<Call> {
        self.fake.calls.lock().unwrap().iter().filter(|c| c.method == method).cloned().collect()
    }

    pub fn violations(&self) -> Vec<String> {
        self.fake.violations.lock().unwrap().clone()
    }

    /// Waits until `done` holds of the calls so far; panics after `within`.
    pub async fn until(&self, within: Duration, what: &str, done: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.fake.changed.notified();
            {
                let calls = self.fake.calls.lock().unwrap();
                if done(&calls) {
                    return calls.clone();
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                let calls = self.fake.calls.lock().unwrap();
                let summary: Vec<String> = calls.iter().map(|c| format!("{} {}", c.method, c.body)).collect();
                panic!("timed out waiting for {what}; calls so far:\n{}", summary.join("\n"));
            }
        }
    }
}

impl Fake {
    fn next_ts(&self) -> String {
        let n = self.clock.fetch_add(1, Ordering::Relaxed);
        format!("{n}.{:06}", n % 1_000_000)
    }

    fn record(&self, method: &str, body: Value, status: u16) {
        self.record_post(method, body, status, None);
    }

    fn record_post(&self, method: &str, body: Value, status: u16, ts: Option<String>) {
        self.calls.lock().unwrap().push(Call { method: method.to_string(), at: Instant::now(), body, status, ts });
        self.changed.notify_waiters();
    }

    fn violation(&self, method: &str, problem: String) {
        self.violations.lock().unwrap().push(format!("{method}: {problem}"));
    }

    fn find(&self, ts: &str) -> Option<(String, usize)> {
        let threads = self.threads.lock().unwrap();
        threads.iter().find_map(|(thread, messages)| {
            messages.iter().position(|m| m["ts"].as_str() == Some(ts)).map(|i| (thread.clone(), i))
        })
    }
}

/// Slack's limit on the text of a message's blocks, all together; past it, `msg_blocks_too_long`.
const MESSAGE_TEXT_LIMIT: usize = 12_000;

/// The characters of text in blocks: every `text` string, in sections, headers and contexts alike.
fn text_chars(value: &Value) -> usize {
    match value {
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

/// Whether a message's blocks hold more text than Slack takes in one message.
fn too_long(body: &Value) -> bool {
    text_chars(&body["blocks"]) > MESSAGE_TEXT_LIMIT
}

/// A JSON body must say its charset: Slack answers one without it with a `missing_charset` warning.
fn check_charset(fake: &Fake, method: &str, content_type: &str) {
    if !content_type.to_ascii_lowercase().replace(' ', "").contains(";charset=utf-8") {
        fake.violation(method, format!("a JSON body sent as {content_type:?}, without charset=utf-8"));
    }
}

/// Block Kit limits and shapes Slack documents for message blocks.
fn check_blocks(fake: &Fake, method: &str, body: &Value) {
    let Some(blocks) = body["blocks"].as_array() else {
        return fake.violation(method, "blocks is not an array".into());
    };
    if blocks.len() > 50 {
        fake.violation(method, format!("{} blocks, more than 50", blocks.len()));
    }
    if too_long(body) {
        let chars = text_chars(&body["blocks"]);
        fake.violation(method, format!("{chars} characters of text in the blocks, more than {MESSAGE_TEXT_LIMIT}"));
    }
    if body["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
        fake.violation(method, "no top-level text: notifications and screen readers need it".into());
    }
    for block in blocks {
        match block["type"].as_str() {
            Some("section") => {
                let text = block["text"]["text"].as_str().unwrap_or_default();
                if text.chars().count() > 3000 || text.is_empty() {
                    fake.violation(method, format!("a section of {} characters", text.chars().count()));
                }
                if !matches!(block["text"]["type"].as_str(), Some("mrkdwn" | "plain_text")) {
                    fake.violation(method, format!("section text type {}", block["text"]["type"]));
                }
            }
            Some("header") => {
                let text = block["text"]["text"].as_str().unwrap_or_default();
                if block["text"]["type"] != "plain_text" || text.chars().count() > 150 {
                    fake.violation(method, format!("a bad header {block}"));
                }
            }
            Some("context") => {
                let elements = block["elements"].as_array().map_or(0, Vec::len);
                if elements == 0 || elements > 10 {
                    fake.violation(method, format!("a context block of {elements} elements"));
                }
            }
            Some("divider") => {}
            other => fake.violation(method, format!("a block of type {other:?}")),
        }
    }
}

fn ok(value: Value) -> Response {
    let mut value = value;
    value["ok"] = json!(true);
    axum::Json(value).into_response()
}

fn refuse(error: &str) -> Response {
    axum::Json(json!({"ok": false, "error": error})).into_response()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default().into_iter().collect()
}

async fn api(
    State((fake, base)): State<(Arc<Fake>, String)>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let expected_token = if method == "apps.connections.open" { APP_TOKEN } else { BOT_TOKEN };
    if auth != format!("Bearer {expected_token}") {
        fake.violation(&method, format!("Authorization {auth:?}"));
        fake.record(&method, Value::Null, 200);
        return refuse("invalid_auth");
    }
    let json_body = content_type.starts_with("application/json");
    if json_body {
        check_charset(&fake, &method, &content_type);
    }
    let value: Value = if json_body {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        serde_json::to_value(form(&body)).unwrap()
    };
    match method.as_str() {
        "chat.postMessage" => {
            {
                let mut limited = fake.rate_limit.lock().unwrap();
                if *limited > 0 {
                    *limited -= 1;
                    fake.record(&method, value, 429);
                    return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response();
                }
            }
            {
                let mut failing = fake.fail.lock().unwrap();
                if *failing > 0 {
                    *failing -= 1;
                    fake.record(&method, value, 500);
                    return (StatusCode::INTERNAL_SERVER_ERROR, "upstream trouble").into_response();
                }
            }
            if !json_body {
                fake.violation(&method, format!("content type {content_type}"));
            }
            if let Err(e) = serde_json::from_value::<slack_morphism::api::SlackApiChatPostMessageRequest>(value.clone())
            {
                fake.violation(&method, format!("not a chat.postMessage request by Slack's model: {e}"));
            }
            check_blocks(&fake, &method, &value);
            if too_long(&value) {
                fake.record(&method, value, 200);
                return refuse("msg_blocks_too_long");
            }
            if value["unfurl_links"] != json!(false) || value["unfurl_media"] != json!(false) {
                fake.violation(&method, "unfurl_links and unfurl_media must be false".into());
            }
            let channel = value["channel"].as_str().unwrap_or_default().to_string();
            if fake.not_in.lock().unwrap().contains(&channel) {
                fake.record(&method, value, 200);
                return refuse("not_in_channel");
            }
            let ts = fake.next_ts();
            let mut message = json!({"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "ts": ts,
                "text": value["text"], "blocks": value["blocks"]});
            let thread = match value["thread_ts"].as_str() {
                Some(thread) => {
                    if fake.find(thread).is_none() {
                        fake.violation(&method, format!("thread_ts {thread} names no message"));
                    }
                    message["thread_ts"] = json!(thread);
                    thread.to_string()
                }
                None => ts.clone(),
            };
            fake.threads.lock().unwrap().entry(thread).or_default().push(message.clone());
            fake.record_post(&method, value, 200, Some(ts.clone()));
            ok(json!({"channel": channel, "ts": ts, "message": message}))
        }
        "chat.update" => {
            if let Err(e) = serde_json::from_value::<slack_morphism::api::SlackApiChatUpdateRequest>(value.clone()) {
                fake.violation(&method, format!("not a chat.update request by Slack's model: {e}"));
            }
            check_blocks(&fake, &method, &value);
            if too_long(&value) {
                fake.record(&method, value, 200);
                return refuse("msg_blocks_too_long");
            }
            let ts = value["ts"].as_str().unwrap_or_default().to_string();
            let Some((thread, i)) = fake.find(&ts) else {
                fake.violation(&method, format!("ts {ts} names no message"));
                fake.record(&method, value, 200);
                return refuse("message_not_found");
            };
            {
                let mut threads = fake.threads.lock().unwrap();
                let message = &mut threads.get_mut(&thread).unwrap()[i];
                message["text"] = value["text"].clone();
                message["blocks"] = value["blocks"].clone();
            }
            let channel = value["channel"].clone();
            fake.record(&method, value, 200);
            ok(json!({"channel": channel, "ts": ts}))
        }
        "conversations.replies" => {
            let ts = value["ts"].as_str().unwrap_or_default().to_string();
            if value["channel"].as_str().is_none_or(str::is_empty) || ts.is_empty() {
                fake.violation(&method, "channel and ts are required".into());
            }
            let messages = fake.threads.lock().unwrap().get(&ts).cloned();
            fake.record(&method, value, 200);
            match messages {
                Some(messages) => ok(json!({"messages": messages, "has_more": false})),
                None => refuse("thread_not_found"),
            }
        }
        "conversations.history" => {
            let channel = value["channel"].as_str().unwrap_or_default().to_string();
            if channel.is_empty() {
                fake.violation(&method, "channel is required".into());
            }
            // The roots of every thread, newest first (the fake keeps one channel's worth).
            let mut roots: Vec<Value> =
                fake.threads.lock().unwrap().values().filter_map(|t| t.first().cloned()).collect();
            roots.sort_by(|a, b| b["ts"].as_str().cmp(&a["ts"].as_str()));
            fake.record(&method, value, 200);
            ok(json!({"messages": roots, "has_more": false}))
        }
        "files.getUploadURLExternal" => {
            if *fake.no_files.lock().unwrap() {
                fake.record(&method, value, 200);
                return refuse("missing_scope");
            }
            let length = value["length"].as_str().and_then(|l| l.parse::<usize>().ok()).unwrap_or(0);
            if value["filename"].as_str().is_none_or(str::is_empty) || length == 0 {
                fake.violation(&method, format!("filename and a positive length are required: {value}"));
            }
            let id = format!("F{}", fake.clock.fetch_add(1, Ordering::Relaxed));
            fake.uploads.lock().unwrap().insert(id.clone(), (length, None));
            fake.record(&method, value, 200);
            ok(json!({"upload_url": format!("{base}/upload/{id}"), "file_id": id}))
        }
        "files.completeUploadExternal" => {
            let files: Vec<Value> =
                value["files"].as_str().and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default();
            if files.is_empty() {
                fake.violation(&method, "files must be a JSON array of {id, title}".into());
            }
            for file in &files {
                let id = file["id"].as_str().unwrap_or_default();
                match fake.uploads.lock().unwrap().get(id) {
                    Some((_, Some(_))) => {}
                    _ => fake.violation(&method, format!("file {id} was not uploaded")),
                }
            }
            if value["channel_id"].as_str().is_none_or(str::is_empty) {
                fake.violation(&method, "channel_id is needed to share the file".into());
            }
            fake.record(&method, value, 200);
            ok(json!({"files": files}))
        }
        "auth.test" => {
            fake.record(&method, value, 200);
            ok(json!({"user_id": BOT_USER, "bot_id": BOT_ID, "team": "Test Team", "user": "kubechat"}))
        }
        "apps.connections.open" => {
            let url = fake.ws_url.lock().unwrap().clone();
            fake.record(&method, value, 200);
            ok(json!({"url": url}))
        }
        other => {
            fake.violation(other, "a method kubechat has no reason to call".into());
            fake.record(other, value, 200);
            refuse("unknown_method")
        }
    }
}

async fn upload(State((fake, _)): State<(Arc<Fake>, String)>, Path(id): Path<String>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut uploads = fake.uploads.lock().unwrap();
    match uploads.get_mut(&id) {
        Some((length, content)) => {
            if *length != body.len() {
                fake.violation("upload", format!("declared {length} bytes, sent {}", body.len()));
            }
            *content = Some(text.clone());
            drop(uploads);
            fake.record("upload", json!({"id": id, "content": text}), 200);
            StatusCode::OK.into_response()
        }
        None => {
            drop(uploads);
            fake.violation("upload", format!("unknown upload {id}"));
            StatusCode::NOT_FOUND.into_response()
        }
    }
}

async fn respond(
    State((fake, _)): State<(Arc<Fake>, String)>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    check_charset(&fake, "response_url", content_type);
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    check_blocks(&fake, "response_url", &value);
    if !matches!(value["response_type"].as_str(), Some("in_channel" | "ephemeral")) {
        fake.violation("response_url", format!("response_type {}", value["response_type"]));
    }
    fake.record("response_url", json!({"id": id, "body": value}), 200);
    StatusCode::OK.into_response()
}
