//! Slack's Socket Mode: kubechat opens the WebSocket (`apps.connections.open` with the app-level token), so no public
//! ingress is needed. Each envelope is acknowledged at once (a slash command's ack carries its ephemeral reply) and
//! handed to the same handlers as HTTP mode. A `disconnect` (Slack refreshes connections every few hours) reconnects at
//! once; a failure reconnects with exponential backoff. On shutdown the connection is closed before any answer in
//! flight is finished: an envelope not acknowledged yet goes to another connection of the app.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as Frame;

use super::{Slack, SlashCommand};

/// The first wait after a failure; it doubles up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How one connection ended.
enum Ended {
    /// Slack asked for a new connection.
    Refresh,
    /// kubechat is shutting down: it takes no more envelopes.
    Closing,
    /// Another replica leads now: it holds the connection.
    NotLeading,
    /// The connection failed or closed without notice.
    Failed(String),
}

/// Holds a Socket Mode connection for as long as the task runs; with leader election, only while this replica leads,
/// so that one replica receives each envelope.
pub async fn run(slack: Arc<Slack>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::select! {
            led = slack.app.leader.until_leading() => if !led { return },
            () = slack.app.drain.closed() => return,
        }
        match connect_once(&slack, &mut backoff).await {
            Ended::Refresh => continue,
            Ended::NotLeading => {
                tracing::info!("Socket Mode connection closed: another replica leads");
                continue;
            }
            Ended::Closing => {
                tracing::info!("Socket Mode connection closed: shutting down");
                return;
            }
            Ended::Failed(why) => {
                tracing::warn!("Socket Mode connection lost ({why}); reconnecting in {}s", backoff.as_secs_f32());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

async fn connect_once(slack: &Arc<Slack>, backoff: &mut Duration) -> Ended {
    let mut stepped_down = std::pin::pin!(slack.app.leader.until_following());
    let url = match slack.api.connections_open(&slack.config.app_token).await {
        Ok(url) => url,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    let (mut socket, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok(connected) => connected,
        Err(e) => return Ended::Failed(format!("cannot open the WebSocket: {e}")),
    };
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = slack.app.drain.closed() => {
                let _ = socket.close(None).await;
                return Ended::Closing;
            }
            () = &mut stepped_down => {
                let _ = socket.close(None).await;
                return Ended::NotLeading;
            }
        };
        let Some(frame) = frame else { break };
        let text = match frame {
            Ok(Frame::Text(text)) => text,
            Ok(Frame::Close(close)) => {
                return Ended::Failed(format!("Slack closed the WebSocket ({close:?})"));
            }
            // Pings are answered by the WebSocket layer as the stream is read.
            Ok(_) => continue,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let envelope: Value = match serde_json::from_str(&text) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!("unreadable Socket Mode frame ignored: {e}");
                continue;
            }
        };
        let payload = &envelope["payload"];
        let mut ack = envelope["envelope_id"].as_str().map(|id| json!({"envelope_id": id}));
        match envelope["type"].as_str().unwrap_or_default() {
            "hello" => {
                *backoff = FIRST_BACKOFF;
                tracing::info!(connections = %envelope["num_connections"], "Socket Mode connected");
            }
            "disconnect" => {
                let reason = envelope["reason"].as_str().unwrap_or("unknown");
                if reason == "link_disabled" {
                    tracing::error!("Slack disabled Socket Mode for this app; turn it on in the app's settings");
                    return Ended::Failed("Socket Mode is disabled".into());
                }
                tracing::info!(reason, "Slack asked for a new connection");
                let _ = socket.close(None).await;
                return Ended::Refresh;
            }
            "slash_commands" => match serde_json::from_value::<SlashCommand>(payload.clone()) {
                Ok(command) => {
                    let reply = slack.command(command);
                    if let Some(ack) = &mut ack {
                        ack["payload"] = reply;
                    }
                }
                Err(e) => tracing::warn!("unreadable slash command: {e}"),
            },
            "events_api" => {
                if let Some(ack) = ack.take()
                    && let Err(e) = socket.send(Frame::text(ack.to_string())).await
                {
                    return Ended::Failed(format!("cannot acknowledge: {e}"));
                }
                slack.event(payload);
            }
            "interactive" => slack.interaction(payload),
            other => tracing::debug!(kind = other, "Socket Mode envelope of a type kubechat does not use"),
        }
        if let Some(ack) = ack
            && let Err(e) = socket.send(Frame::text(ack.to_string())).await
        {
            return Ended::Failed(format!("cannot acknowledge: {e}"));
        }
    }
    Ended::Failed("the WebSocket ended".into())
}
