//! kubechat: a read-only Kubernetes diagnostic bot.
//!
//! One question flows one way: the [`cluster`] reader gathers [`cluster::Facts`], [`findings`] turns them into
//! deterministic findings, and [`context`] writes both out as the text a model reads. The [`replay`] server serves
//! cluster dumps over the real Kubernetes API, for tests and for offline diagnosis.

pub mod access;
pub mod alerts;
pub mod answer;
pub mod audit;
pub mod chat;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod context;
pub mod dump;
pub mod facts;
pub mod findings;
pub mod fuzzing;
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
pub mod slack;
pub mod tokens;

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
