//! Slack's settings: the raw `slack` section of the configuration and its validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::request::parse_namespace;
use crate::secret::Secret;
use crate::settings::{ConfigError, check_http_url, invalid};

/// How kubechat meets Slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlackMode {
    /// An outgoing WebSocket: no public ingress needed.
    Socket,
    /// Slack calls `/slack/commands`, `/slack/events` and `/slack/interactivity`.
    Http,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSlack {
    pub enabled: bool,
    pub mode: SlackMode,
    pub bot_token: Secret,
    pub app_token: Secret,
    pub signing_secret: Secret,
    pub api_url: String,
    pub ask_command: String,
    pub diagnose_command: String,
    pub channel_namespaces: Vec<String>,
    pub update_interval_ms: u64,
    pub max_pending: usize,
    pub attach_context: bool,
}

/// Slack settings, validated (see `docs/configuration.md`).
#[derive(Debug, Clone)]
pub struct SlackConfig {
    pub mode: SlackMode,
    pub bot_token: Secret,
    pub app_token: Secret,
    pub signing_secret: Secret,
    pub api_url: String,
    pub ask_command: String,
    pub diagnose_command: String,
    /// (channel id, namespace) defaults.
    pub channel_namespaces: Vec<(String, String)>,
    pub update_interval: Duration,
    pub max_pending: usize,
    pub attach_context: bool,
}

impl Default for RawSlack {
    fn default() -> RawSlack {
        RawSlack {
            enabled: false,
            mode: SlackMode::Socket,
            bot_token: Secret::default(),
            app_token: Secret::default(),
            signing_secret: Secret::default(),
            api_url: "https://slack.com/api".into(),
            ask_command: "/ask".into(),
            diagnose_command: "/diagnose".into(),
            channel_namespaces: Vec::new(),
            update_interval_ms: 1000,
            max_pending: 20,
            attach_context: true,
        }
    }
}

impl RawSlack {
    pub fn validate(self) -> Result<SlackConfig, ConfigError> {
        if !self.bot_token.expose().starts_with("xoxb-") {
            return Err(invalid(
                "slack.bot_token",
                "must be the bot token (xoxb-…) from the app's OAuth & Permissions page; set KUBECHAT_SLACK_BOT_TOKEN",
            ));
        }
        match self.mode {
            SlackMode::Socket if !self.app_token.expose().starts_with("xapp-") => {
                return Err(invalid(
                    "slack.app_token",
                    "Socket Mode needs an app-level token (xapp-…) with the connections:write scope; set KUBECHAT_SLACK_APP_TOKEN, or use slack.mode: http",
                ));
            }
            SlackMode::Http if self.signing_secret.is_empty() => {
                return Err(invalid(
                    "slack.signing_secret",
                    "HTTP mode needs the app's signing secret (Basic Information page); set KUBECHAT_SLACK_SIGNING_SECRET",
                ));
            }
            _ => {}
        }
        check_http_url("slack.api_url", &self.api_url, format!("{:?} must start with https://", self.api_url))?;
        for (setting, command) in
            [("slack.ask_command", &self.ask_command), ("slack.diagnose_command", &self.diagnose_command)]
        {
            if !command.starts_with('/') || command.len() < 2 || command.contains(char::is_whitespace) {
                return Err(invalid(setting, format!("{command:?} must be a slash command like /ask")));
            }
        }
        let mut channel_namespaces = Vec::new();
        for entry in &self.channel_namespaces {
            match entry.split_once('=') {
                Some((channel, namespace))
                    if !channel.trim().is_empty() && parse_namespace(namespace.trim()).is_ok() =>
                {
                    channel_namespaces.push((channel.trim().to_string(), namespace.trim().to_string()));
                }
                _ => {
                    return Err(invalid(
                        "slack.channel_namespaces",
                        format!("{entry:?} must be CHANNEL_ID=namespace, like C0123ABCD=payments"),
                    ));
                }
            }
        }
        if self.update_interval_ms < 1000 {
            return Err(invalid(
                "slack.update_interval_ms",
                "must be at least 1000: Slack allows about one chat.update per second",
            ));
        }
        if self.max_pending == 0 {
            return Err(invalid("slack.max_pending", "must be more than 0"));
        }
        Ok(SlackConfig {
            mode: self.mode,
            bot_token: self.bot_token,
            app_token: self.app_token,
            signing_secret: self.signing_secret,
            api_url: self.api_url.trim_end_matches('/').to_string(),
            ask_command: self.ask_command,
            diagnose_command: self.diagnose_command,
            channel_namespaces,
            update_interval: Duration::from_millis(self.update_interval_ms),
            max_pending: self.max_pending,
            attach_context: self.attach_context,
        })
    }
}
