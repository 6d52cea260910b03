//! The Slack Web API calls kubechat makes, over the one reqwest client: JSON for `chat.*`, forms where Slack's docs ask
//! for them, the bot token in the `Authorization` header, and `429 Retry-After` honoured. The base URL is configurable
//! so tests can run against a local fake.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::blocks::Message;
use crate::secret::Secret;

/// How many times a call rate-limited by Slack is tried before giving up.
const ATTEMPTS: u32 = 4;
/// The longest `Retry-After` kubechat waits out; a longer one fails the call instead of stalling the answer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long one Web API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach Slack for {method}: {message}")]
    Transport { method: String, message: String },
    #[error("Slack answered {method} with HTTP {status}")]
    Status { method: String, status: u16 },
    #[error("Slack refused {method}: {error}")]
    Refused { method: String, error: String },
    #[error("Slack kept rate-limiting {method} (asked to wait {}s)", retry_after.as_secs())]
    RateLimited { method: String, retry_after: Duration },
}

impl ApiError {
    /// Slack's error code (`not_in_channel`, `channel_not_found`, …) when Slack refused the call.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Who the bot is, from `auth.test`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Identity {
    pub user_id: String,
    #[serde(default)]
    pub bot_id: String,
    #[serde(default)]
    pub team: String,
}

pub struct WebApi {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, String)]),
}

/// A JSON body with the charset Slack asks for: without it, Slack answers with a `missing_charset` warning.
fn json_body(request: reqwest::RequestBuilder, value: &Value) -> reqwest::RequestBuilder {
    request
        .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(serde_json::to_vec(value).expect("a JSON value serialises"))
}

impl WebApi {
    /// `base` is `https://slack.com/api` in production.
    pub fn new(base: &str, token: Secret) -> WebApi {
        crate::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .user_agent(concat!("kubechat/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with rustls builds");
        WebApi { http, base: base.trim_end_matches('/').to_string(), token }
    }

    /// Calls `method` with `token`, waiting out 429s; returns the body of an `ok: true` answer.
    async fn call(&self, method: &str, token: &Secret, body: Body<'_>) -> Result<Value, ApiError> {
        let url = format!("{}/{method}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.http.post(&url).bearer_auth(token.expose());
            let request = match &body {
                Body::Json(value) => json_body(request, value),
                Body::Form(fields) => request
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(serde_urlencoded::to_string(fields).expect("string pairs encode")),
            };
            let transport =
                |e: reqwest::Error| ApiError::Transport { method: method.to_string(), message: e.to_string() };
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let retry_after = retry_after(response.headers());
                if attempt >= ATTEMPTS || retry_after > MAX_RETRY_AFTER {
                    return Err(ApiError::RateLimited { method: method.to_string(), retry_after });
                }
                tracing::warn!(
                    method,
                    attempt,
                    wait_s = retry_after.as_secs_f32(),
                    "Slack rate-limited a call; waiting"
                );
                tokio::time::sleep(retry_after).await;
                continue;
            }
            if !status.is_success() {
                return Err(ApiError::Status { method: method.to_string(), status: status.as_u16() });
            }
            let value: Value = response.json().await.map_err(transport)?;
            if value["ok"].as_bool() != Some(true) {
                let error = value["error"].as_str().unwrap_or("no error code given").to_string();
                return Err(ApiError::Refused { method: method.to_string(), error });
            }
            if let Some(warning) = value["warning"].as_str() {
                tracing::debug!(method, warning, "Slack warned about a call");
            }
            return Ok(value);
        }
    }

    pub async fn auth_test(&self) -> Result<Identity, ApiError> {
        let value = self.call("auth.test", &self.token, Body::Form(&[])).await?;
        serde_json::from_value(value)
            .map_err(|e| ApiError::Refused { method: "auth.test".into(), error: format!("unexpected answer: {e}") })
    }

    /// Posts `message` (in the thread `thread_ts`, when given); returns the new message's `ts`.
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        message: &Message,
    ) -> Result<String, ApiError> {
        let mut body = json!({
            "channel": channel,
            "text": message.fallback(),
            "blocks": message.blocks,
            "unfurl_links": false,
            "unfurl_media": false,
        });
        if let Some(ts) = thread_ts {
            body["thread_ts"] = json!(ts);
        }
        let value = self.call("chat.postMessage", &self.token, Body::Json(&body)).await?;
        Ok(value["ts"].as_str().unwrap_or_default().to_string())
    }

    /// Replaces the message `ts`.
    pub async fn update(&self, channel: &str, ts: &str, message: &Message) -> Result<(), ApiError> {
        let body = json!({"channel": channel, "ts": ts, "text": message.fallback(), "blocks": message.blocks});
        self.call("chat.update", &self.token, Body::Json(&body)).await.map(drop)
    }

    /// The messages of a thread, its parent first (at most `limit`).
    pub async fn replies(&self, channel: &str, thread_ts: &str, limit: usize) -> Result<Vec<Value>, ApiError> {
        let form = [("channel", channel.to_string()), ("ts", thread_ts.to_string()), ("limit", limit.to_string())];
        let value = self.call("conversations.replies", &self.token, Body::Form(&form)).await?;
        Ok(value["messages"].as_array().cloned().unwrap_or_default())
    }

    /// A channel's newest messages, newest first (at most `limit`).
    pub async fn history(&self, channel: &str, limit: usize) -> Result<Vec<Value>, ApiError> {
        let form = [("channel", channel.to_string()), ("limit", limit.to_string())];
        let value = self.call("conversations.history", &self.token, Body::Form(&form)).await?;
        Ok(value["messages"].as_array().cloned().unwrap_or_default())
    }

    /// Shares a text file in a thread: `files.getUploadURLExternal`, the upload, `files.completeUploadExternal`.
    pub async fn upload(
        &self,
        channel: &str,
        thread_ts: &str,
        filename: &str,
        title: &str,
        content: &str,
    ) -> Result<(), ApiError> {
        let form = [("filename", filename.to_string()), ("length", content.len().to_string())];
        let value = self.call("files.getUploadURLExternal", &self.token, Body::Form(&form)).await?;
        let (Some(upload_url), Some(file_id)) = (value["upload_url"].as_str(), value["file_id"].as_str()) else {
            return Err(ApiError::Refused {
                method: "files.getUploadURLExternal".into(),
                error: "no upload_url or file_id in the answer".into(),
            });
        };
        let method = "file upload";
        let response = self
            .http
            .post(upload_url)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(content.to_string())
            .send()
            .await
            .map_err(|e| ApiError::Transport { method: method.into(), message: e.to_string() })?;
        if !response.status().is_success() {
            return Err(ApiError::Status { method: method.into(), status: response.status().as_u16() });
        }
        let files = json!([{"id": file_id, "title": title}]).to_string();
        let form = [("files", files), ("channel_id", channel.to_string()), ("thread_ts", thread_ts.to_string())];
        self.call("files.completeUploadExternal", &self.token, Body::Form(&form)).await.map(drop)
    }

    /// Answers a slash command through its `response_url` (for channels the bot is not in).
    pub async fn respond(&self, response_url: &str, message: &Message, in_channel: bool) -> Result<(), ApiError> {
        let body = json!({
            "response_type": if in_channel { "in_channel" } else { "ephemeral" },
            "replace_original": false,
            "text": message.fallback(),
            "blocks": message.blocks,
        });
        let method = "response_url";
        let response = json_body(self.http.post(response_url), &body)
            .send()
            .await
            .map_err(|e| ApiError::Transport { method: method.into(), message: e.to_string() })?;
        if !response.status().is_success() {
            return Err(ApiError::Status { method: method.into(), status: response.status().as_u16() });
        }
        Ok(())
    }

    /// A fresh Socket Mode WebSocket URL, from `apps.connections.open` with the app-level token.
    pub async fn connections_open(&self, app_token: &Secret) -> Result<String, ApiError> {
        let value = self.call("apps.connections.open", app_token, Body::Form(&[])).await?;
        value["url"].as_str().map(str::to_string).ok_or_else(|| ApiError::Refused {
            method: "apps.connections.open".into(),
            error: "no url in the answer".into(),
        })
    }
}

/// `Retry-After` in seconds, one second when it is missing or unreadable.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    let seconds = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Duration::from_secs(seconds)
}
