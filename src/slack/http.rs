//! Slack's HTTP mode: `/slack/commands`, `/slack/events` and `/slack/interactivity`. Every request's signature is
//! checked against the raw body before anything is parsed (401 otherwise); the answer to Slack is immediate and the
//! work runs in the background.
//!
//! Every replica answers, and Slack may deliver an event again to another one (a retry after a slow acknowledgement,
//! or after a replica that was shutting down refused it): with leader election, a follower claims each `event_id` at
//! the leader (`/slack/claim`, the same signed request) before answering, so the event is answered once.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{Slack, SlashCommand, signature};
use crate::lease::ToLeader;

/// Slack's last delivery of an event is its third retry: after it, an event refused is lost.
const LAST_RETRY: u32 = 3;

pub fn routes(slack: Arc<Slack>) -> Router {
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/events", post(events))
        .route("/slack/interactivity", post(interactivity))
        .route("/slack/claim", post(claim))
        .layer(axum::extract::DefaultBodyLimit::max(crate::service::BODY_LIMIT))
        .with_state(slack)
}

/// The 401 for a request whose signature does not check out, decided before its body is looked at.
fn refusal(slack: &Slack, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = jiff::Timestamp::now().as_second();
    signature::verify(
        slack.config.signing_secret.expose().as_bytes(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        body,
        now,
    )
    .err()
    .map(|e| {
        crate::audit::refused("slack-signature", &format!("refused a Slack request: {e}"));
        (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": e.to_string()}))).into_response()
    })
}

fn bad_request(message: String) -> Response {
    tracing::warn!("{message}");
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": message}))).into_response()
}

async fn commands(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = refusal(&slack, &headers, &body) {
        return refused;
    }
    // Slack checks the certificate now and then with a signed `ssl_check=1`; nothing to do but answer.
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if fields.iter().any(|(k, v)| k == "ssl_check" && v == "1") {
        return StatusCode::OK.into_response();
    }
    match serde_urlencoded::from_bytes::<SlashCommand>(&body) {
        Ok(command) => axum::Json(slack.command(command)).into_response(),
        Err(e) => bad_request(format!("unreadable slash command: {e}")),
    }
}

async fn events(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = refusal(&slack, &headers, &body) {
        return refused;
    }
    let delivery: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return bad_request(format!("unreadable event: {e}")),
    };
    match delivery["type"].as_str() {
        Some("url_verification") => axum::Json(json!({"challenge": delivery["challenge"]})).into_response(),
        Some("event_callback") => {
            if slack.app.drain.is_closing() {
                // Not acknowledged: Slack delivers it again, to a replica that is not shutting down.
                return (StatusCode::SERVICE_UNAVAILABLE, crate::drain::RESTARTING).into_response();
            }
            let retry = headers.get("x-slack-retry-num").and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
            if let Some(retry) = retry {
                let reason = headers.get("x-slack-retry-reason").and_then(|v| v.to_str().ok()).unwrap_or("?");
                tracing::info!(retry, reason, "Slack redelivered an event");
            }
            let Some(event_id) = delivery["event_id"].as_str() else {
                slack.event(&delivery);
                return StatusCode::OK.into_response();
            };
            let why = match slack.app.leader.to_leader("/slack/claim", &headers, &body).await {
                ToLeader::Here => {
                    slack.event(&delivery);
                    return StatusCode::OK.into_response();
                }
                ToLeader::Answered { status, body, .. } if status == StatusCode::OK => {
                    let first = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["first"].as_bool());
                    if first == Some(false) {
                        tracing::info!(event_id, "duplicate delivery ignored (the leader has seen it)");
                    } else {
                        slack.claimed_event(&delivery);
                    }
                    return StatusCode::OK.into_response();
                }
                ToLeader::Answered { status, .. } => format!("the leader answered the claim with {status}"),
                ToLeader::Unavailable(why) => why,
            };
            // No leader to claim at: Slack delivers it again while it has retries left; on its last, this replica
            // answers on its own memory, for an answer twice is better than none.
            if retry.unwrap_or(0) < LAST_RETRY {
                tracing::warn!(event_id, "cannot claim the event at the leader; Slack will deliver it again: {why}");
                let error = format!("cannot claim the event at the leader ({why}); deliver it again");
                return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": error}))).into_response();
            }
            tracing::warn!(event_id, "cannot claim Slack's last delivery at the leader, answering it here: {why}");
            slack.event(&delivery);
            StatusCode::OK.into_response()
        }
        other => {
            tracing::info!(kind = ?other, "Slack delivery of a type kubechat does not use");
            StatusCode::OK.into_response()
        }
    }
}

/// A follower's claim of an event's `event_id` (the signed delivery, forwarded): `{"first": true}` for the first
/// claim, when the follower answers it. Only the leader keeps the claims; another replica refuses with 503.
async fn claim(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = refusal(&slack, &headers, &body) {
        return refused;
    }
    if !slack.app.leader.leads() {
        let error = "this replica does not lead; claim at the Lease's holder";
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"error": error}))).into_response();
    }
    let delivery: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(e) => return bad_request(format!("unreadable event: {e}")),
    };
    let Some(event_id) = delivery["event_id"].as_str() else {
        return bad_request("a claim for a delivery with no event_id".to_string());
    };
    axum::Json(json!({"first": slack.claim(event_id)})).into_response()
}

async fn interactivity(State(slack): State<Arc<Slack>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = refusal(&slack, &headers, &body) {
        return refused;
    }
    let fields: Vec<(String, String)> = match serde_urlencoded::from_bytes(&body) {
        Ok(fields) => fields,
        Err(e) => return bad_request(format!("unreadable interaction: {e}")),
    };
    let payload = fields.iter().find(|(k, _)| k == "payload").and_then(|(_, v)| serde_json::from_str::<Value>(v).ok());
    match payload {
        Some(payload) => {
            slack.interaction(&payload);
            StatusCode::OK.into_response()
        }
        None => bad_request("an interaction without a JSON payload field".to_string()),
    }
}
