//! Alertmanager → a diagnosis in the alert's thread. `POST /alertmanager` takes Alertmanager's webhook payload (version
//! 4) with a bearer token. Each firing alert that names a namespace is diagnosed, scoped by its pod or workload labels,
//! and posted to the Slack channel or Matrix room configured for its receiver: in the thread of the alert's own message
//! when it is found there, else in a new thread. The same alert with the same findings is diagnosed once per cooldown
//! (its fingerprint plus the finding reasons, never the model's text); a resolved alert adds a note to its thread.
//! With several replicas, only the Lease's holder diagnoses: the others hand it the webhook ([`crate::lease`]), so an
//! alert is diagnosed once whichever replica Alertmanager reaches. What the leader remembers (the cooldowns and the
//! threads) it keeps in the Lease, so the next leader neither diagnoses an alert again within its cooldown nor loses
//! the thread its resolved note belongs in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::access::{Asker, Buckets, Platform, Rate};
use crate::audit::Outcome;
use crate::clusters::Clusters;
use crate::request::Scope;
use crate::request::{Intent, Invalid};
use crate::secret::Secret;
use crate::server::HttpAuth;
use crate::service::AppState;
use crate::settings::{ConfigError, invalid};
use crate::slack::Slack;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlertmanager {
    pub token: Secret,
    pub cooldown_seconds: u64,
    pub receivers: Vec<Receiver>,
    pub max_per_webhook: usize,
    pub per_minute: u32,
}

impl Default for RawAlertmanager {
    fn default() -> RawAlertmanager {
        RawAlertmanager {
            token: Secret::default(),
            cooldown_seconds: 3600,
            receivers: Vec::new(),
            max_per_webhook: 20,
            per_minute: 30,
        }
    }
}

impl RawAlertmanager {
    pub fn validate(self) -> Result<AlertmanagerConfig, ConfigError> {
        if let Some(receiver) =
            self.receivers.iter().find(|r| r.name.is_empty() || (r.slack_channel.is_none() && r.matrix_room.is_none()))
        {
            return Err(invalid(
                "alertmanager.receivers",
                format!("{receiver:?} needs a name and a slack_channel or matrix_room"),
            ));
        }
        for (setting, value) in [
            ("alertmanager.cooldown_seconds", self.cooldown_seconds),
            ("alertmanager.max_per_webhook", self.max_per_webhook as u64),
            ("alertmanager.per_minute", u64::from(self.per_minute)),
        ] {
            if value == 0 {
                return Err(invalid(setting, "must be more than 0"));
            }
        }
        Ok(AlertmanagerConfig {
            token: self.token,
            cooldown: Duration::from_secs(self.cooldown_seconds),
            receivers: self.receivers,
            diagnoses: Rate { burst: self.max_per_webhook as u32, per_minute: self.per_minute },
        })
    }
}

/// Where the diagnoses of one Alertmanager receiver's alerts go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    #[serde(default)]
    pub slack_channel: Option<String>,
    #[serde(default)]
    pub matrix_room: Option<String>,
    /// Namespace globs its alerts may be diagnosed in; when empty, the destination channel's or room's access entry
    /// decides (and with none, the default, which denies).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Cluster globs `namespaces` are in; none: the default cluster.
    #[serde(default)]
    pub clusters: Vec<String>,
}

impl Receiver {
    /// Where its diagnoses go, each with the asker access judges them as: the receiver, at that destination.
    fn destinations(&self) -> Vec<(Destination, Asker)> {
        let asker =
            |place: String| Asker { platform: Platform::Alertmanager, place: Some(place), user: self.name.clone() };
        let mut out = Vec::new();
        if let Some(channel) = &self.slack_channel {
            out.push((Destination::Slack(channel.clone()), asker(format!("slack:{channel}"))));
        }
        if let Some(room) = &self.matrix_room {
            out.push((Destination::Matrix(room.clone()), asker(format!("matrix:{room}"))));
        }
        out
    }
}

/// A channel or room an alert's diagnosis is posted to.
#[derive(Debug, Clone)]
enum Destination {
    Slack(String),
    Matrix(String),
}

/// The Alertmanager webhook, validated.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// The bearer token Alertmanager sends; the webhook is off without one.
    pub token: Secret,
    pub cooldown: Duration,
    pub receivers: Vec<Receiver>,
    /// Diagnoses started: at most `burst` from one webhook, `per_minute` on average. An alert storm starts a
    /// bounded number of reads; the rest are named in the reply and audited as busy.
    pub diagnoses: Rate,
}

/// Alertmanager's webhook body (version 4); fields kubechat does not use are ignored.
#[derive(Debug, Deserialize)]
pub struct Payload {
    pub version: String,
    pub receiver: String,
    #[serde(default)]
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: HashMap<String, String>,
    #[serde(default)]
    pub fingerprint: String,
}

impl Alert {
    fn label(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.labels.get(*n)).filter(|v| !v.is_empty()).cloned()
    }

    fn name(&self) -> String {
        self.label(&["alertname"]).unwrap_or_else(|| "alert".to_string())
    }

    /// The cluster (its `cluster` label, kubechat's name or an alias; else the default), the namespace and the most
    /// specific object the labels name, read as in a chat message's alert: none without a namespace label, an error
    /// when a label's value is not a valid name.
    pub fn scope(&self, clusters: &Clusters) -> Option<Result<Scope, Invalid>> {
        let scope = crate::slack::alert::from_labels(|name| self.label(&[name]));
        let cluster = clusters.canonical(scope.cluster.as_deref());
        Some(Scope::parse(&cluster, &scope.namespace?, scope.object.as_deref()))
    }

    /// Whether a chat message is this alert's own: it names the alert and the object or namespace it is about.
    fn is_named_in(&self, scope: &Scope, text: &str) -> bool {
        let subject = scope.object().map_or(scope.namespace(), |o| o.name());
        text.contains(&self.name()) && text.contains(subject)
    }
}

/// Where a diagnosis went, for the resolved note.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "platform", rename_all = "lowercase")]
enum Thread {
    Slack {
        channel: String,
        ts: String,
    },
    #[cfg(feature = "matrix")]
    Matrix {
        room: String,
        root: matrix_sdk::ruma::OwnedEventId,
    },
}

/// What was last diagnosed for a fingerprint.
#[derive(Debug, Clone)]
struct Diagnosed {
    reasons: Vec<String>,
    /// When, in Unix seconds: the next leader, another process, reads it.
    at: i64,
    threads: Vec<Thread>,
}

/// A fingerprint's diagnosis as the leader keeps it in the Lease for the next one ([`crate::lease::Leadership`]).
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    fingerprint: String,
    reasons: Vec<String>,
    at: i64,
    threads: Vec<Thread>,
}

/// The kind of memory the alerts keep in the Lease.
const MEMORY: &str = "alerts";

/// How long a diagnosis is remembered for its thread (the resolved note) past its cooldown: an alert that never
/// resolves is forgotten after a week.
const THREAD_MEMORY: i64 = 7 * 24 * 3600;

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

pub struct Alerts {
    config: AlertmanagerConfig,
    app: Arc<AppState>,
    slack: Option<Arc<Slack>>,
    #[cfg(feature = "matrix")]
    matrix: Option<Arc<crate::matrix::Matrix>>,
    diagnosed: Mutex<HashMap<String, Diagnosed>>,
    /// One bucket for all webhooks: the diagnoses started.
    started: Buckets,
}

impl Alerts {
    pub fn new(
        config: AlertmanagerConfig,
        app: Arc<AppState>,
        slack: Option<Arc<Slack>>,
        #[cfg(feature = "matrix")] matrix: Option<Arc<crate::matrix::Matrix>>,
    ) -> Arc<Alerts> {
        Arc::new(Alerts {
            app,
            slack,
            #[cfg(feature = "matrix")]
            matrix,
            started: Buckets::new(config.diagnoses),
            diagnosed: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// Takes in what the previous leader kept, when this replica has just taken over: the more recent of two
    /// diagnoses of a fingerprint stands. Entries this build cannot read (a Matrix thread without Matrix) are skipped.
    fn recall(&self) {
        let Some(text) = self.app.leader.recall(MEMORY) else { return };
        let entries: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
        let mut diagnosed = self.diagnosed.lock().expect("not poisoned");
        let mut recalled = 0;
        for kept in entries.into_iter().filter_map(|e| serde_json::from_value::<Kept>(e).ok()) {
            if !self.remembered(kept.at, &kept.threads)
                || diagnosed.get(&kept.fingerprint).is_some_and(|d| d.at >= kept.at)
            {
                continue;
            }
            let Kept { fingerprint, reasons, at, threads } = kept;
            diagnosed.insert(fingerprint, Diagnosed { reasons, at, threads });
            recalled += 1;
        }
        tracing::info!(recalled, "took over the alerts the previous leader diagnosed");
    }

    /// Whether a diagnosis made `at` is still worth remembering: within its cooldown, or for its threads' resolved
    /// note.
    fn remembered(&self, at: i64, threads: &[Thread]) -> bool {
        let age = unix_now() - at;
        age < self.config.cooldown.as_secs() as i64 || (!threads.is_empty() && age < THREAD_MEMORY)
    }

    /// Forgets what is no longer worth remembering, and hands the rest, newest first and as much as fits, to the
    /// Lease.
    fn keep(&self) {
        let mut diagnosed = self.diagnosed.lock().expect("not poisoned");
        diagnosed.retain(|_, d| self.remembered(d.at, &d.threads));
        self.app.leader.remember(MEMORY, || {
            let mut kept: Vec<Kept> = diagnosed
                .iter()
                .map(|(fingerprint, d)| Kept {
                    fingerprint: fingerprint.clone(),
                    reasons: d.reasons.clone(),
                    at: d.at,
                    threads: d.threads.clone(),
                })
                .collect();
            kept.sort_by_key(|k| std::cmp::Reverse(k.at));
            let mut text = serde_json::to_string(&kept).unwrap_or_default();
            while text.len() > crate::lease::MEMORY_LIMIT && !kept.is_empty() {
                kept.truncate(kept.len() * 3 / 4);
                text = serde_json::to_string(&kept).unwrap_or_default();
            }
            text
        });
    }

    /// Diagnoses one alert for `receiver`; returns whether a diagnosis was posted.
    pub async fn handle(&self, receiver: &Receiver, alert: &Alert) -> bool {
        self.recall();
        let scope = match self.scope_of(alert) {
            Some(Ok(scope)) => scope,
            Some(Err(why)) => {
                self.refuse(receiver, alert, &why);
                return false;
            }
            None => {
                tracing::info!(alert = %alert.name(), "an alert without a namespace label; nothing to diagnose");
                return false;
            }
        };
        let namespace = scope.namespace();
        // Where it may go: a destination whose access does not cover the namespace gets nothing and the refusal is
        // audited; with no destination left, nothing is read.
        let mut allowed = Vec::new();
        if alert.status != "resolved" {
            for (destination, asker) in receiver.destinations() {
                if self.app.policy.access.check(&asker, scope.cluster(), namespace).is_ok() {
                    allowed.push((destination, asker));
                    continue;
                }
                // The ticket records the refusal in the audit log as it drops.
                let mut ticket = self.app.ticket(&asker, Intent::Diagnose, &self.app.request_id());
                if let Err(refusal) = ticket.admit(&scope) {
                    let message =
                        format!("an alert ({}, receiver {}) is refused: {refusal}", alert.name(), receiver.name);
                    crate::audit::refused("alert-access", &message);
                }
            }
            if allowed.is_empty() {
                return false;
            }
        }
        let key = alert.fingerprint.clone();
        if alert.status == "resolved" {
            let threads = self.diagnosed.lock().expect("not poisoned").remove(&key).map(|d| d.threads);
            self.keep();
            let note = format!("Resolved: {} ({}).", alert.name(), self.app.describe(&scope));
            for thread in threads.unwrap_or_default() {
                self.note(&thread, &note).await;
            }
            return false;
        }
        // The reasons come from kubechat's own analysis, which is cheap; the model is asked only when they are new.
        let reasons = match self.app.read(&scope).await {
            Ok(facts) => {
                let mut reasons: Vec<String> =
                    crate::findings::analyze(&facts).iter().map(|f| f.reason.to_string()).collect();
                reasons.sort();
                reasons.dedup();
                reasons
            }
            Err(e) => vec![format!("unreadable: {e}")],
        };
        {
            let mut diagnosed = self.diagnosed.lock().expect("not poisoned");
            if let Some(last) = diagnosed.get(&key)
                && last.reasons == reasons
                && unix_now() - last.at < self.config.cooldown.as_secs() as i64
            {
                tracing::info!(alert = %alert.name(), fingerprint = %key, "already diagnosed within the cooldown");
                return false;
            }
            let threads = diagnosed.get(&key).map(|d| d.threads.clone()).unwrap_or_default();
            diagnosed.insert(key.clone(), Diagnosed { reasons, at: unix_now(), threads });
        }
        self.keep();
        let mut threads = Vec::new();
        for (destination, asker) in allowed {
            let mut ticket = self.app.ticket(&asker, Intent::Diagnose, &self.app.request_id());
            if ticket.admit(&scope).is_err() {
                continue;
            }
            match destination {
                Destination::Slack(channel) => {
                    let Some(slack) = &self.slack else { continue };
                    let named = |m: &serde_json::Value| alert.is_named_in(&scope, &m.to_string());
                    if let Some(ts) = Box::pin(slack.diagnose_alert(&channel, ticket, scope.clone(), named)).await {
                        threads.push(Thread::Slack { channel, ts });
                    }
                }
                #[cfg(feature = "matrix")]
                Destination::Matrix(room) => {
                    let Some(matrix) = &self.matrix else { continue };
                    let title =
                        format!("Alert {} is firing in {}: diagnosing", alert.name(), self.app.describe(&scope));
                    let named = |body: &str| alert.is_named_in(&scope, body);
                    if let Some(root) =
                        Box::pin(matrix.diagnose_alert(&room, ticket, scope.clone(), &title, named)).await
                    {
                        threads.push(Thread::Matrix { room, root });
                    }
                }
                #[cfg(not(feature = "matrix"))]
                Destination::Matrix(room) => {
                    tracing::warn!(%room, "this kubechat was built without Matrix: the alert is not posted there");
                    drop(ticket);
                }
            }
        }
        let posted = !threads.is_empty();
        if let Some(entry) = self.diagnosed.lock().expect("not poisoned").get_mut(&key) {
            entry.threads = threads;
        }
        self.keep();
        posted
    }

    /// What an alert asks to diagnose: none without a namespace label; refused, saying why, when a label's value is
    /// not a name or its cluster label names no cluster kubechat reads.
    fn scope_of(&self, alert: &Alert) -> Option<Result<Scope, String>> {
        let scope = match alert.scope(&self.app.clusters)? {
            Ok(scope) => scope,
            Err(invalid) => return Some(Err(invalid.to_string())),
        };
        if self.app.clusters.get(scope.cluster()).is_none() {
            let known: Vec<&str> = self.app.clusters.names().collect();
            return Some(Err(format!(
                "its cluster label names {}, which is no cluster kubechat reads ({}); add it to clusters, or as an alias of one",
                scope.cluster(),
                known.join(", ")
            )));
        }
        Some(Ok(scope))
    }

    /// An alert whose labels are not valid names, or name a cluster kubechat does not read: nothing is read or
    /// posted; the refusal is logged and audited.
    fn refuse(&self, receiver: &Receiver, alert: &Alert, invalid: &str) {
        let message =
            format!("an alert's labels ({}, receiver {}) are refused: {invalid}", alert.name(), receiver.name);
        crate::audit::refused("alert-labels", &message);
        let asker = Asker { platform: Platform::Alertmanager, place: None, user: receiver.name.clone() };
        self.app.ticket(&asker, Intent::Diagnose, &self.app.request_id()).fail(Outcome::Invalid, invalid.to_string());
    }

    async fn note(&self, thread: &Thread, text: &str) {
        match thread {
            Thread::Slack { channel, ts } => {
                if let Some(slack) = &self.slack {
                    slack.note(channel, ts, text).await;
                }
            }
            #[cfg(feature = "matrix")]
            Thread::Matrix { room, root } => {
                if let Some(matrix) = &self.matrix {
                    matrix.note(room, root, text).await;
                }
            }
        }
    }
}

pub fn routes(alerts: Arc<Alerts>) -> Router {
    Router::new().route("/alertmanager", post(webhook)).with_state(alerts)
}

/// The largest webhook body read, once its token is checked: a group of a few thousand alerts. Alertmanager's
/// `max_alerts` keeps groups smaller.
const WEBHOOK_LIMIT: usize = 4 * 1024 * 1024;

async fn webhook(State(alerts): State<Arc<Alerts>>, headers: HeaderMap, body: axum::body::Body) -> Response {
    // The token is in the headers: nothing of the body is read before it is checked.
    let auth = HttpAuth::Tokens(vec![("alertmanager".into(), alerts.config.token.clone())]);
    if alerts.config.token.is_empty() || auth.identify(&headers).is_err() {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "send Authorization: Bearer with alertmanager.token"})),
        )
            .into_response();
    }
    if alerts.app.drain.is_closing() {
        // A 5xx, which Alertmanager retries: the retry reaches a replica that is not shutting down.
        let body = axum::Json(json!({"error": crate::drain::RESTARTING}));
        return (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], body).into_response();
    }
    let body: Bytes = match axum::body::to_bytes(body, WEBHOOK_LIMIT).await {
        Ok(body) => body,
        Err(_) => {
            let error = format!(
                "the webhook body is over {} MiB; set max_alerts in Alertmanager's webhook_config",
                WEBHOOK_LIMIT >> 20
            );
            return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(json!({"error": error}))).into_response();
        }
    };
    // Alerts are diagnosed, and deduplicated, by the leader alone: a follower hands the webhook to it as it came.
    if let Some(response) = alerts.app.leader.to_leader("/alertmanager", &headers, &body).await.response() {
        return response;
    }
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(payload) => payload,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": format!("not an Alertmanager webhook payload: {e}")})),
            )
                .into_response();
        }
    };
    if payload.version != "4" {
        let error = format!("webhook payload version {} is not supported; kubechat reads version 4", payload.version);
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": error}))).into_response();
    }
    let Some(receiver) = alerts.config.receivers.iter().find(|r| r.name == payload.receiver).cloned() else {
        tracing::warn!(receiver = %payload.receiver, "an Alertmanager receiver with no channel or room configured");
        let error =
            format!("no channel or room is configured for receiver {} (alertmanager.receivers)", payload.receiver);
        return (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"error": error}))).into_response();
    };
    // Labels that are not valid names, or name no cluster kubechat reads, are refused now, each named in the reply,
    // and nothing of them is read.
    let mut refused = Vec::new();
    let mut accepted = 0;
    for alert in payload.alerts {
        let scope = alerts.scope_of(&alert);
        if let Some(Err(why)) = &scope {
            alerts.refuse(&receiver, &alert, why);
            refused.push(json!({"alert": alert.name(), "fingerprint": alert.fingerprint, "error": why}));
            continue;
        }
        // A firing alert starts a diagnosis only within the bound; a resolved one only posts a note.
        let diagnoses = alert.status != "resolved" && matches!(scope, Some(Ok(_)));
        if diagnoses && alerts.started.take("alertmanager").is_err() {
            let why = format!(
                "kubechat starts at most {} alert diagnoses at once and {} a minute; this one was not diagnosed",
                alerts.config.diagnoses.burst, alerts.config.diagnoses.per_minute
            );
            let asker = Asker { platform: Platform::Alertmanager, place: None, user: receiver.name.clone() };
            alerts.app.ticket(&asker, Intent::Diagnose, &alerts.app.request_id()).fail(Outcome::Busy, why.clone());
            refused.push(json!({"alert": alert.name(), "fingerprint": alert.fingerprint, "error": why}));
            continue;
        }
        accepted += 1;
        // Alertmanager waits for the answer and retries on failure: acknowledge now, diagnose in the background, as
        // an answer a shutdown waits for. One interrupted is not lost: Alertmanager notifies again at its
        // repeat_interval while the alert fires, and the next kubechat diagnoses it then.
        let (name, fingerprint) = (alert.name(), alert.fingerprint.clone());
        let (alerts_task, receiver) = (alerts.clone(), receiver.clone());
        alerts.app.drain.spawn(
            async move {
                alerts_task.handle(&receiver, &alert).await;
            },
            move || async move {
                tracing::warn!(alert = %name, %fingerprint, "shut down before the alert's diagnosis was posted");
            },
        );
    }
    // A refusal is final: a 4xx, which Alertmanager does not retry, when every alert was refused.
    let status = if accepted == 0 && !refused.is_empty() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    (status, axum::Json(json!({"accepted": accepted, "refused": refused}))).into_response()
}
