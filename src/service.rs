//! One question's way through kubechat, the same for every front-end: a [`Ticket`] admits it (access, rate limits),
//! reads the cluster and asks the model with the time of each stage measured, and when it is dropped writes the one
//! audit line and the metrics of the request, however it ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::access::{Access, Asker, Buckets, Platform, Refusal};
use crate::answer::{self, Answer, BudgetError, Intent, Question};
use crate::audit::{AuditLog, Latency, Record};
use crate::cluster::{self, Limits, ReadError};
use crate::facts;
use crate::llm::Llm;
use crate::metrics::Metrics;
use crate::prompt::PromptStore;
use crate::request::Scope;
use crate::server::HttpAuth;

pub struct AppState {
    pub client: kube::Client,
    pub prompts: Arc<PromptStore>,
    pub llm: Arc<Llm>,
    pub limits: Limits,
    pub default_namespace: String,
    pub policy: Policy,
    pub metrics: Metrics,
    pub(crate) ready: Mutex<Option<(Instant, Result<(), String>)>>,
    requests: AtomicU64,
    /// Places for namespace reads (`limits.reads`).
    reads: tokio::sync::Semaphore,
}

/// Who may ask what, how often, who is asking over HTTP, and where requests are recorded.
pub struct Policy {
    pub access: Access,
    /// Token buckets per user, and per channel or room.
    pub user_rate: Option<Buckets>,
    pub place_rate: Option<Buckets>,
    pub audit: AuditLog,
    pub auth: HttpAuth,
    /// Origins allowed to call the HTTP API from a browser; none by default.
    pub cors_origins: Vec<String>,
}

impl Policy {
    /// Everyone may read everything, with no limit: the demo, tests, and local use configured so.
    pub fn open() -> Policy {
        Policy {
            access: Access::open(),
            user_rate: None,
            place_rate: None,
            audit: AuditLog::stdout(),
            auth: HttpAuth::Open,
            cors_origins: Vec::new(),
        }
    }
}

impl AppState {
    /// Open to everyone (see [`Policy::open`]).
    pub fn new(
        client: kube::Client,
        prompts: Arc<PromptStore>,
        llm: Arc<Llm>,
        limits: Limits,
        default_namespace: String,
    ) -> Arc<AppState> {
        AppState::with_policy(client, prompts, llm, limits, default_namespace, Policy::open())
    }

    pub fn with_policy(
        client: kube::Client,
        prompts: Arc<PromptStore>,
        llm: Arc<Llm>,
        limits: Limits,
        default_namespace: String,
        policy: Policy,
    ) -> Arc<AppState> {
        let reads = tokio::sync::Semaphore::new(limits.reads.max(1));
        Arc::new(AppState {
            client,
            prompts,
            llm,
            limits,
            default_namespace,
            policy,
            metrics: Metrics::new(),
            ready: Mutex::new(None),
            requests: AtomicU64::new(0),
            reads,
        })
    }

    /// Reads a namespace for a question, waiting for a place among `limits.reads`.
    pub async fn read(&self, scope: &Scope) -> Result<facts::Facts, cluster::ReadError> {
        let _place = self.reads.acquire().await.expect("the semaphore is never closed");
        cluster::read(&self.client, scope, &self.limits).await
    }

    pub fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{:08x}-{n:06}", std::process::id())
    }
}

/// Why a question found no answer.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

/// A request in flight; dropping it records the request.
pub struct Ticket {
    state: Arc<AppState>,
    asker: Asker,
    record: Record,
    started: Instant,
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl AppState {
    /// Opens the record of a request.
    pub fn ticket(self: &Arc<Self>, asker: &Asker, intent: Intent, request_id: &str) -> Ticket {
        Ticket {
            state: self.clone(),
            asker: asker.clone(),
            record: Record {
                kind: "audit",
                time: jiff::Timestamp::now().to_string(),
                request_id: request_id.to_string(),
                platform: asker.platform.as_str(),
                user: asker.user.clone(),
                channel: asker.place.clone(),
                intent: intent.prompt_name(),
                outcome: "abandoned",
                ..Record::default()
            },
            started: Instant::now(),
        }
    }
}

impl Ticket {
    /// Access to `namespace`, then the asker's and the place's rate limits.
    pub fn admit(&mut self, namespace: &str, object: Option<&str>) -> Result<(), Refusal> {
        self.record.namespace = Some(namespace.to_string());
        self.record.object = object.map(str::to_string);
        let state = &self.state;
        let refusal = if let Err(refusal) = state.policy.access.check(&self.asker, namespace) {
            Some(refusal)
        } else if self.asker.platform == Platform::Alertmanager {
            // Alerts are deduplicated by fingerprint instead: a storm must not drop the first diagnosis of each.
            None
        } else {
            let platform = self.asker.platform.as_str();
            let user = state.policy.user_rate.as_ref().map(|b| b.take(&format!("{platform}/{}", self.asker.user)));
            let place = match (&state.policy.place_rate, &self.asker.place) {
                (Some(buckets), Some(place)) => Some(buckets.take(&format!("{platform}/{place}"))),
                _ => None,
            };
            match (user, place) {
                (Some(Err(wait)), _) | (_, Some(Err(wait))) => Some(Refusal::RateLimited { retry_after: wait }),
                _ => None,
            }
        };
        match refusal {
            None => Ok(()),
            Some(refusal) => {
                self.record.outcome = match refusal {
                    Refusal::Namespace { .. } => "refused",
                    Refusal::RateLimited { .. } => "rate_limited",
                };
                self.record.reason = Some(refusal.to_string());
                Err(refusal)
            }
        }
    }

    /// Reads the cluster for `scope` and answers `question`, measuring each stage.
    pub async fn answer(
        &mut self,
        scope: &Scope,
        question: &Question,
        mut on_token: impl FnMut(&str) + Send,
        on_queued: impl FnOnce(usize) + Send,
    ) -> Result<Answer, ServeError> {
        let state = self.state.clone();
        let metrics = &state.metrics;
        self.record.namespace = Some(scope.namespace.clone());
        self.record.object = question.object.clone();
        let reading = Instant::now();
        let facts = state.read(scope).await;
        let retrieve = reading.elapsed();
        self.record.latency_ms.retrieve = Some(millis(retrieve));
        metrics.stage("retrieve", retrieve.as_secs_f64());
        let facts = match facts {
            Ok(facts) => facts,
            Err(e) => {
                metrics.kube_error(&kube_code(&e));
                self.fail("error", e.to_string());
                return Err(e.into());
            }
        };
        for gap in &facts.gaps {
            if gap.contains("403") {
                metrics.kube_error("403");
            }
        }
        let asking = Instant::now();
        let mut first: Option<Duration> = None;
        let prompts = state.prompts.current();
        let result = answer::answer(
            &facts,
            question,
            &prompts,
            &state.llm,
            |token| {
                first.get_or_insert_with(|| asking.elapsed());
                on_token(token);
            },
            on_queued,
        )
        .await;
        let total = asking.elapsed();
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                self.fail("error", e.to_string());
                return Err(e.into());
            }
        };
        self.record.latency_ms.llm_total = Some(millis(total));
        metrics.stage("llm_total", total.as_secs_f64());
        if let Some(first) = first {
            self.record.latency_ms.llm_first_token = Some(millis(first));
            metrics.stage("llm_first_token", first.as_secs_f64());
        }
        self.record.prompt = Some(answer.prompt.name.clone());
        self.record.prompt_version = Some(answer.prompt.version.clone());
        self.record.model = Some(answer.model.clone());
        self.record.findings = answer.findings.iter().map(|f| f.reason.to_string()).collect();
        self.record.prompt_tokens = answer.usage.prompt_tokens;
        self.record.completion_tokens = answer.usage.completion_tokens;
        if let Some(tokens) = answer.usage.prompt_tokens {
            metrics.tokens("prompt", u64::from(tokens));
        }
        if let Some(tokens) = answer.usage.completion_tokens {
            metrics.tokens("completion", u64::from(tokens));
        }
        match &answer.degraded {
            Some(reason) => {
                metrics.llm_error(llm_kind(reason));
                self.record.outcome = "degraded";
                self.record.reason = Some(reason.clone());
            }
            None => self.record.outcome = "answered",
        }
        Ok(answer)
    }

    /// The answer reached the asker after `took` of posting.
    pub fn posted(&mut self, took: Duration) {
        self.record.latency_ms.post = Some(millis(took));
        self.state.metrics.stage("post", took.as_secs_f64());
    }

    /// Ends the request without an answer.
    pub fn fail(&mut self, outcome: &'static str, reason: String) {
        self.record.outcome = outcome;
        self.record.reason = Some(reason);
    }

    pub fn request_id(&self) -> &str {
        &self.record.request_id
    }

    pub fn outcome(&self) -> &'static str {
        self.record.outcome
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.record.latency_ms = Latency { total: millis(self.started.elapsed()), ..self.record.latency_ms };
        self.state.metrics.request(self.record.platform, self.record.intent, self.record.outcome);
        self.state.policy.audit.write(&self.record);
    }
}

fn kube_code(error: &ReadError) -> String {
    match error {
        ReadError::Forbidden { .. } => "403".into(),
        ReadError::NamespaceNotFound { .. } | ReadError::ObjectNotFound { .. } => "404".into(),
        ReadError::Api { code, .. } => code.to_string(),
        ReadError::Timeout { .. } => "timeout".into(),
        ReadError::Unreachable { .. } => "unreachable".into(),
        ReadError::UnsupportedKind(_) => "unsupported".into(),
    }
}

/// The kind of a model failure, from the degraded answer's reason.
fn llm_kind(reason: &str) -> &'static str {
    if reason.starts_with("cannot connect") {
        "connect"
    } else if reason.contains("gave no") {
        "timeout"
    } else if reason.contains("answered") {
        "status"
    } else if reason.contains("mid-answer") {
        "stream"
    } else {
        "other"
    }
}
