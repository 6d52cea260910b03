//! The core every front-end shares: the state of a running kubechat ([`AppState`]: the cluster, the prompts, the
//! model, the [`Policy`], the metrics) and one question's way through it. A [`Ticket`] admits a request (access, rate
//! limits), reads the cluster and asks the model with the time of each stage measured, and when it is dropped writes
//! the one audit line and the metrics of the request, however it ended. Front-ends turn their platform's events into
//! a [`Request`] and render the [`Answer`]; they never reach the cluster or the model but through here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::access::{Access, Asker, Buckets, Platform, Refusal};
use crate::answer::{self, Answer, BudgetError};
use crate::audit::{AuditLog, Latency, Outcome, Record};
use crate::cluster::{Cluster, Limits, ReadError};
use crate::drain::Drain;
use crate::facts::{Cause, Facts};
use crate::llm::Llm;
use crate::metrics::Metrics;
use crate::prompt::{PromptStore, PromptVersion};
use crate::request::{Intent, Request, Scope};

/// How long a reachability check of the API server stays good for readiness.
const READY_CACHE: Duration = Duration::from_secs(10);

pub struct AppState {
    pub cluster: Cluster,
    pub prompts: Arc<PromptStore>,
    pub llm: Arc<Llm>,
    pub limits: Limits,
    pub default_namespace: String,
    pub policy: Policy,
    pub metrics: Metrics,
    /// Shutting down without losing answers.
    pub drain: Drain,
    /// Whether this replica does the work that must happen once, and where the one that does is.
    pub leader: crate::lease::Leadership,
    ready: Mutex<Option<(Instant, Result<(), String>)>>,
    requests: AtomicU64,
    /// Places for namespace reads (`limits.reads`).
    reads: tokio::sync::Semaphore,
    reader: Reader,
}

/// A runtime of its own for reading namespaces: decoding thousands of objects and analysing them is CPU work, kept off
/// the threads that answer `/healthz`, Slack's acknowledgements and the web chat, so a burst of questions about a
/// large namespace does not make kubechat look dead to its probes.
struct Reader(Option<tokio::runtime::Runtime>);

impl Reader {
    fn new(threads: usize) -> Reader {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("kubechat-read")
            .enable_all()
            .build()
            .expect("a runtime for the reads starts");
        Reader(Some(runtime))
    }

    fn spawn<T: Send + 'static>(&self, read: impl Future<Output = T> + Send + 'static) -> tokio::task::JoinHandle<T> {
        self.0.as_ref().expect("running until dropped").spawn(read)
    }
}

impl Drop for Reader {
    /// Dropped from async code (a test's app, the server's shutdown), where a runtime may not block.
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Request bodies above this are refused, on every route (the HTTP API's and Slack's): a body is read no further
/// before its signature is checked.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Questions in flight at once by default (`limits.in_flight`).
pub const DEFAULT_IN_FLIGHT: usize = 16;

/// Who may ask what, how often, and where requests are recorded.
pub struct Policy {
    pub access: Access,
    /// Token buckets per user, and per channel or room.
    pub user_rate: Option<Buckets>,
    pub place_rate: Option<Buckets>,
    /// Questions being answered at once, all front-ends together.
    pub in_flight: InFlight,
    pub audit: AuditLog,
}

/// A count of questions in flight under a cap: past it, a question is refused as busy at once rather than queued
/// without bound (each holds its prompt, and its read while it reads, while it waits for the model).
pub struct InFlight {
    max: usize,
    count: AtomicUsize,
}

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight { max: max.max(1), count: AtomicUsize::new(0) }
    }

    /// Takes a place, or says how many questions are in flight.
    fn enter(&self) -> Result<(), usize> {
        self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).map(drop)
    }

    fn leave(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn current(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// How this process lives among kubechat's replicas: how long it drains on shutdown, and whether it leads.
pub struct Replica {
    pub drain: Duration,
    pub leader: crate::lease::Leadership,
}

impl Policy {
    /// Everyone may read everything, with no limit: the demo, tests, and local use configured so.
    pub fn open() -> Policy {
        Policy {
            access: Access::open(),
            user_rate: None,
            place_rate: None,
            in_flight: InFlight::new(DEFAULT_IN_FLIGHT),
            audit: AuditLog::stdout(),
        }
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

impl AppState {
    pub fn new(
        cluster: Cluster,
        prompts: Arc<PromptStore>,
        llm: Arc<Llm>,
        limits: Limits,
        default_namespace: String,
        policy: Policy,
        replica: Replica,
    ) -> Arc<AppState> {
        let Replica { drain, leader } = replica;
        let reads = tokio::sync::Semaphore::new(limits.reads.max(1));
        let reader = Reader::new(limits.reads.max(1));
        Arc::new(AppState {
            cluster,
            prompts,
            llm,
            limits,
            default_namespace,
            policy,
            metrics: Metrics::new(),
            drain: Drain::new(drain),
            leader,
            ready: Mutex::new(None),
            requests: AtomicU64::new(0),
            reads,
            reader,
        })
    }

    /// Reads a namespace for a question, waiting for a place among `limits.reads`.
    pub async fn read(&self, scope: &Scope) -> Result<Facts, ReadError> {
        let _place = self.reads.acquire().await.expect("the semaphore is never closed");
        let (cluster, scope, limits) = (self.cluster.clone(), scope.clone(), self.limits.clone());
        match self.reader.spawn(async move { cluster.read(&scope, &limits).await }).await {
            Ok(read) => read,
            Err(e) => std::panic::resume_unwind(e.try_into_panic().unwrap_or_else(|_| Box::new("the reader stopped"))),
        }
    }

    /// The namespaces `asker` may read, and the default namespace when it is among them (for pickers).
    pub async fn namespaces(&self, asker: &Asker) -> Result<(Vec<String>, Option<String>), ReadError> {
        let all = self.cluster.namespaces(&self.limits).await?;
        let names = self.policy.access.visible(asker, &all);
        let default = Some(self.default_namespace.clone()).filter(|d| names.contains(d));
        Ok((names, default))
    }

    /// Ready when the API server answers (checked at most every few seconds); the prompt versions in use.
    pub async fn ready(&self) -> Result<Vec<PromptVersion>, String> {
        let mut cached = self.ready.lock().await;
        let fresh = cached.as_ref().is_some_and(|(at, _)| at.elapsed() < READY_CACHE);
        if !fresh {
            *cached = Some((Instant::now(), self.cluster.reachable(self.limits.call_timeout).await));
        }
        let check = cached.as_ref().expect("set above").1.clone();
        check.map(|()| {
            let prompts = self.prompts.current();
            ["ask", "diagnose"].iter().filter_map(|n| prompts.get(n)).map(|p| p.version.clone()).collect()
        })
    }

    pub fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{:08x}-{n:06}", std::process::id())
    }

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
                outcome: Outcome::Abandoned,
                ..Record::default()
            },
            started: Instant::now(),
            in_flight: false,
        }
    }
}

/// A request in flight; dropping it records the request.
pub struct Ticket {
    state: Arc<AppState>,
    asker: Asker,
    record: Record,
    started: Instant,
    /// Whether it holds a place among the questions in flight.
    in_flight: bool,
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Ticket {
    /// Access to the scope's namespace, then the asker's and the place's rate limits. The scope is valid by its type:
    /// nothing that is not a namespace name reaches the access check.
    pub fn admit(&mut self, scope: &Scope) -> Result<(), Refusal> {
        self.record.namespace = Some(scope.namespace().to_string());
        self.record.object = scope.object().map(ToString::to_string);
        let state = &self.state;
        let refusal = if let Err(refusal) = state.policy.access.check(&self.asker, scope.namespace()) {
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
        let refusal = refusal.or_else(|| match state.policy.in_flight.enter() {
            Ok(()) => {
                self.in_flight = true;
                None
            }
            Err(in_flight) => Some(Refusal::Busy { in_flight }),
        });
        match refusal {
            None => Ok(()),
            Some(refusal) => {
                self.record.outcome = match refusal {
                    Refusal::Namespace { .. } => Outcome::Refused,
                    Refusal::RateLimited { .. } => Outcome::RateLimited,
                    Refusal::Busy { .. } => Outcome::Busy,
                };
                self.record.reason = Some(refusal.to_string());
                Err(refusal)
            }
        }
    }

    /// Reads the cluster for the request's scope and answers it, measuring each stage.
    pub async fn answer(
        &mut self,
        request: &Request,
        mut on_token: impl FnMut(&str) + Send,
        on_queued: impl FnOnce(usize) + Send,
    ) -> Result<Answer, ServeError> {
        let state = self.state.clone();
        let metrics = &state.metrics;
        self.record.namespace = Some(request.scope.namespace().to_string());
        self.record.object = request.scope.object().map(ToString::to_string);
        let reading = Instant::now();
        let facts = state.read(&request.scope).await;
        let retrieve = reading.elapsed();
        self.record.latency_ms.retrieve = Some(millis(retrieve));
        metrics.stage("retrieve", retrieve.as_secs_f64());
        let facts = match facts {
            Ok(facts) => facts,
            Err(mut e) => {
                // "Did you mean …" names only namespaces the asker may read.
                if let ReadError::NamespaceNotFound { closest, .. } = &mut e {
                    *closest = state.policy.access.visible(&self.asker, closest);
                }
                metrics.kube_error(&kube_code(&e));
                self.fail(Outcome::Error, e.to_string());
                return Err(e.into());
            }
        };
        for gap in &facts.gaps {
            if gap.cause == Cause::Forbidden {
                metrics.kube_error(&gap.cause.label());
            }
        }
        let asking = Instant::now();
        let mut first: Option<Duration> = None;
        let prompts = state.prompts.current();
        let result = answer::answer(
            facts,
            request,
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
                self.fail(Outcome::Error, e.to_string());
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
            Some(error) => {
                metrics.llm_error(error.kind());
                self.record.outcome = Outcome::Degraded;
                self.record.reason = Some(error.to_string());
            }
            None => self.record.outcome = Outcome::Answered,
        }
        Ok(answer)
    }

    /// The answer reached the asker after `took` of posting.
    pub fn posted(&mut self, took: Duration) {
        self.record.latency_ms.post = Some(millis(took));
        self.state.metrics.stage("post", took.as_secs_f64());
    }

    /// Ends the request without an answer.
    pub fn fail(&mut self, outcome: Outcome, reason: String) {
        self.record.outcome = outcome;
        self.record.reason = Some(reason);
    }

    pub fn request_id(&self) -> &str {
        &self.record.request_id
    }

    /// Who was admitted: the asker a request answered on this ticket is built for.
    pub fn asker(&self) -> &Asker {
        &self.asker
    }

    pub fn outcome(&self) -> Outcome {
        self.record.outcome
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Dropped unfinished because kubechat shut down, not because the asker left.
        if self.record.outcome == Outcome::Abandoned && self.state.drain.is_expired() {
            self.record.outcome = Outcome::Interrupted;
        }
        if self.in_flight {
            self.state.policy.in_flight.leave();
        }
        self.record.latency_ms = Latency { total: millis(self.started.elapsed()), ..self.record.latency_ms };
        self.state.metrics.request(self.record.platform, self.record.intent, self.record.outcome.as_str());
        self.state.policy.audit.write(&self.record);
    }
}

fn kube_code(error: &ReadError) -> String {
    match error {
        ReadError::NamespaceNotFound { .. } | ReadError::ObjectNotFound { .. } => "404".into(),
        ReadError::UnsupportedKind(_) => "unsupported".into(),
        other => other.gap().cause.label(),
    }
}
