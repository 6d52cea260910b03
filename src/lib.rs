//! kubechat: a read-only Kubernetes diagnostic bot.
//!
//! # Layout
//!
//! One question flows one way, I/O at the edges and plain functions in the middle:
//!
//! ```text
//! chat event ─▶ Request ─▶ (admit) ─▶ Facts ─▶ Findings ─▶ redacted, budgeted Context ─▶ Prompt ─▶ LLM ─▶ Answer ─▶ render
//! ```
//!
//! - **Front-ends** turn their platform's events into a [`request::Request`] and render the [`answer::Answer`]:
//!   [`server`] (the HTTP API and web chat), [`slack`], [`matrix`], [`alerts`] (Alertmanager's webhook), and the CLI in
//!   `main.rs`. [`chat`] holds what Slack and Matrix share (routing a message's words).
//! - **The request**: [`request`] is the one parser of namespaces and `KIND/NAME`, from the one [`resources`] table.
//! - **The core**: [`service`] holds the shared state and takes each request through access ([`access`]), the reader
//!   and the model, writing one [`audit`] line and the [`metrics`].
//! - **Edges that do I/O**: [`cluster`] (the only Kubernetes client), [`llm`] (the model server), and [`replay`] with
//!   [`dump`] (a dump served over the real Kubernetes API).
//! - **The pure middle**: [`facts`] (what was read), [`findings`] (deterministic analyzers, with [`cron`] for
//!   CronJob schedules), [`redact`], [`context`]
//!   and [`tokens`] (the budgeted text the model reads), [`report`], [`prompt`] (files under `prompts/`),
//!   [`commands`] (suggested kubectl commands, labelled), [`answer`] (prompt, model, fallback), and [`view`] (the one
//!   presentation of an answer that every front-end formats).
//! - **Wiring**: [`config`] (the settings, validated; each front-end validates its own section) and [`app`] (the one
//!   composition root that `main`, the tests and the benchmarks use), [`drain`] (shutting down without losing an
//!   answer). [`secret`] keeps credentials from printing.

pub mod access;
pub mod alerts;
pub mod answer;
pub mod app;
pub mod audit;
pub mod chat;
pub mod cli;
pub mod cluster;
pub mod clusters;
pub mod commands;
pub mod config;
pub mod context;
pub mod cron;
pub mod drain;
pub mod dump;
pub mod facts;
pub mod findings;
pub mod fuzzing;
pub mod lease;
pub mod llm;
pub mod matrix;
pub mod metrics;
pub mod prompt;
pub mod redact;
pub mod replay;
pub mod report;
pub mod request;
pub mod resources;
pub mod secret;
pub mod server;
pub mod service;
pub mod settings;
pub mod slack;
pub mod tokens;
pub mod view;
pub mod yaml;

/// Makes ring the process's TLS provider. kube, reqwest and matrix-sdk share rustls, and with matrix-sdk two providers
/// (ring and aws-lc-rs) are built in, so rustls cannot pick one by itself. Every entry point that may build a TLS
/// client calls this first; later calls do nothing.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An error with its causes, `outer: inner: innermost`, for messages that must say what really failed.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
