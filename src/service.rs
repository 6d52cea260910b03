//! The core every front-end shares: the state of a running kubechat ([`AppState`]: the clusters, the prompts, the
//! model, the [`Policy`], the metrics) and one question's way through it. A [`Ticket`] admits a request (access, rate
//! limits), reads the cluster and asks the model with the time of each stage measured, and when it is dropped writes
//! the one audit line and the metrics of the request, however it ended. Front-ends turn their platform's events into
//! a [`Request`] and render the [`Answer`]; they never reach the cluster or the model but through here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::access::{Access, Asker, Buckets, Platform, Refusal};
use crate::answer::{self, Answer, BudgetError};
use crate::audit::{AuditLog, Latency, Outcome, Record};
use crate::cluster::{Limits, ReadError};
use crate::clusters::Clusters;
use crate::drain::Drain;
use crate::facts::{Cause, Facts};
use crate::llm::Llm;
use crate::metrics::Metrics;
use crate::prompt::{PromptStore, PromptVersion};
use crate::request::{Intent, Request, Scope};

/// How often each cluster's API server is asked whether it answers, for readiness, `/clusters` and `/metrics`.
pub const READY_CACHE: Duration = Duration::from_secs(10);

pub struct AppState {
    /// The clusters read, the first the default.
    pub clusters: Clusters,
    pub prompts: Arc<PromptStore>,
    pub llm: Arc<Llm>,
    pub limits: Limits,
    pub policy: Policy,
    pub metrics: Metrics,
    /// Shutting down without losing answers.
    pub drain: Drain,
    /// Whether this replica does the work that must happen once, and where the one that does is.
    pub leader: crate::lease::Leadership,
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
    /// Takes a question from the asker's bucket, then from their channel's or room's. A question the asker's own
    /// bucket refuses takes nothing from the room's, so one person asking too fast does not use up a room's questions
    /// for everyone in it; one the room's refuses is given back to the asker's.
    fn take_rate(&self, asker: &Asker) -> Result<(), Duration> {
        let (user, place) = rate_keys(asker);
        if let Some(users) = &self.user_rate {
            users.take(&user)?;
        }
        if let (Some(places), Some(place)) = (&self.place_rate, &place)
            && let Err(wait) = places.take(place)
        {
            if let Some(users) = &self.user_rate {
                users.give_back(&user);
            }
            return Err(wait);
        }
        Ok(())
    }

    /// Gives back what [`Policy::take_rate`] took, for a question refused after it.
    fn give_back_rate(&self, asker: &Asker) {
        let (user, place) = rate_keys(asker);
        if let Some(users) = &self.user_rate {
            users.give_back(&user);
        }
        if let (Some(places), Some(place)) = (&self.place_rate, &place) {
            places.give_back(place);
        }
    }

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

/// The buckets an asker's questions are counted in: theirs, and their channel's or room's when they ask in one.
fn rate_keys(asker: &Asker) -> (String, Option<String>) {
    let platform = asker.platform.as_str();
    (format!("{platform}/{}", asker.user), asker.place.as_ref().map(|place| format!("{platform}/{place}")))
}

/// Why a question found no answer.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The cluster's API server did not answer (refused, unreachable, or not in time); the others may.
    #[error("cannot read cluster {cluster}: its API server does not answer ({error}){}", if *.others { "; kubechat's other clusters answer as usual" } else { "" })]
    Unreachable { cluster: String, others: bool, error: ReadError },
    /// A cluster kubechat does not read (only a request that skipped [`Ticket::admit`] can name one).
    #[error("kubechat reads no cluster named {0}")]
    UnknownCluster(String),
    #[error(transparent)]
    Budget(#[from] BudgetError),
}

impl AppState {
    pub fn new(
        clusters: Clusters,
        prompts: Arc<PromptStore>,
        llm: Arc<Llm>,
        limits: Limits,
        policy: Policy,
        replica: Replica,
    ) -> Arc<AppState> {
        let Replica { drain, leader } = replica;
        let reads = tokio::sync::Semaphore::new(limits.reads.max(1));
        let reader = Reader::new(limits.reads.max(1));
        Arc::new(AppState {
            clusters,
            prompts,
            llm,
            limits,
            policy,
            metrics: Metrics::new(),
            drain: Drain::new(drain),
            leader,
            requests: AtomicU64::new(0),
            reads,
            reader,
        })
    }

    /// Reads a namespace of the scope's cluster for a question, waiting for a place among `limits.reads`.
    pub async fn read(&self, scope: &Scope) -> Result<Facts, ServeError> {
        let entry =
            self.clusters.get(scope.cluster()).ok_or_else(|| ServeError::UnknownCluster(scope.cluster().into()))?;
        let _place = self.reads.acquire().await.expect("the semaphore is never closed");
        let (cluster, scope, limits) = (entry.cluster.clone(), scope.clone(), self.limits.clone());
        let read = match self.reader.spawn(async move { cluster.read(&scope, &limits).await }).await {
            Ok(read) => read,
            Err(e) => std::panic::resume_unwind(e.try_into_panic().unwrap_or_else(|_| Box::new("the reader stopped"))),
        };
        match read {
            Ok(facts) => {
                entry.record(Ok(()));
                Ok(facts)
            }
            Err(error) => Err(self.failed(entry, error)),
        }
    }

    /// A failed read as the asker sees it: a cluster whose API server does not answer is noted so (readiness and
    /// `/metrics` show it at once) and named.
    fn failed(&self, entry: &crate::clusters::Entry, error: ReadError) -> ServeError {
        match error {
            ReadError::Unreachable { .. } | ReadError::Timeout { .. } => {
                entry.record(Err(error.to_string()));
                let others = self.clusters.entries().len() > 1;
                ServeError::Unreachable { cluster: entry.name.clone(), others, error }
            }
            error => error.into(),
        }
    }

    /// The namespaces of `cluster` that `asker` may read, and the cluster's default namespace when it is among them
    /// (for pickers).
    pub async fn namespaces(&self, asker: &Asker, cluster: &str) -> Result<(Vec<String>, Option<String>), ServeError> {
        let entry = self
            .clusters
            .get(cluster)
            .filter(|e| !self.policy.access.clusters(asker, [e.name.as_str()]).is_empty())
            .ok_or_else(|| ServeError::UnknownCluster(cluster.to_string()))?;
        let all = entry.cluster.namespaces(&self.limits).await.map_err(|error| self.failed(entry, error))?;
        let names = self.policy.access.visible(asker, &entry.name, &all);
        let default = Some(entry.namespace.clone()).filter(|d| names.contains(d));
        Ok((names, default))
    }

    /// The clusters `asker` may read, the default first, as `/clusters` lists them.
    pub fn visible_clusters(&self, asker: &Asker) -> Vec<&crate::clusters::Entry> {
        let names = self.policy.access.clusters(asker, self.clusters.names());
        self.clusters.entries().iter().filter(|e| names.contains(&e.name)).collect()
    }

    /// The refusal of a cluster kubechat does not read, or `asker` may not see, naming those they may.
    pub fn unknown_cluster(&self, asker: &Asker, cluster: &str) -> Refusal {
        let known = self.visible_clusters(asker).iter().map(|e| e.name.clone()).collect();
        Refusal::UnknownCluster { cluster: cluster.to_string(), known, contact: self.policy.access.contact.clone() }
    }

    /// What `asker` may ask about, for help: the namespace globs (as `cluster: globs` when kubechat reads several
    /// clusters); and, when it does, the default cluster's name then the others the asker may read.
    pub fn readable(&self, asker: &Asker) -> (Vec<String>, Vec<&str>) {
        let visible = self.visible_clusters(asker);
        if self.clusters.entries().len() == 1 {
            let globs = visible.first().map(|e| self.policy.access.globs(asker, &e.name)).unwrap_or_default();
            return (globs, Vec::new());
        }
        let readable = visible
            .iter()
            .map(|e| format!("{}: {}", e.name, self.policy.access.globs(asker, &e.name).join(", ")))
            .collect();
        let default = self.clusters.default().name.as_str();
        let others = visible.iter().map(|e| e.name.as_str()).filter(|n| *n != default);
        (readable, std::iter::once(default).chain(others).collect())
    }

    /// Ready when some cluster's API server answered when last asked (every [`READY_CACHE`], in the background; a
    /// cluster never asked yet is asked now): one cluster down costs its own questions, not every other cluster's.
    /// The prompt versions in use, or why not ready.
    pub async fn ready(&self) -> Result<Vec<PromptVersion>, String> {
        self.clusters.check(self.limits.call_timeout, Duration::MAX).await;
        let entries = self.clusters.entries();
        if entries.iter().all(|e| e.health().reachable == Some(false)) {
            let reasons: Vec<String> = entries
                .iter()
                .map(|e| match entries.len() {
                    1 => e.health().error.unwrap_or_default(),
                    _ => format!("cluster {}: {}", e.name, e.health().error.unwrap_or_default()),
                })
                .collect();
            return Err(reasons.join("; "));
        }
        let prompts = self.prompts.current();
        Ok(["ask", "diagnose"].iter().filter_map(|n| prompts.get(n)).map(|p| p.version.clone()).collect())
    }

    /// The scope in words for titles and notes: `shop pod/web-1`, and `in prod` when kubechat reads more than one
    /// cluster.
    pub fn describe(&self, scope: &Scope) -> String {
        let object = scope.object().map(|o| format!(" {o}")).unwrap_or_default();
        let cluster =
            if self.clusters.entries().len() > 1 { format!(" in {}", scope.cluster()) } else { String::new() };
        format!("{}{object}{cluster}", scope.namespace())
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
                // Named when the request is admitted; one refused before (a body that is not a request) has none.
                cluster: None,
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
    /// The cluster (one kubechat reads, and the asker may see), access to the scope's namespace there, then the
    /// asker's and the place's rate limits. The scope is valid by its type: nothing that is not a name reaches the
    /// access check.
    pub fn admit(&mut self, scope: &Scope) -> Result<(), Refusal> {
        self.record.cluster = Some(scope.cluster().to_string());
        self.record.namespace = Some(scope.namespace().to_string());
        self.record.object = scope.object().map(ToString::to_string);
        let state = &self.state;
        let access = &state.policy.access;
        let known = state.clusters.get(scope.cluster()).is_some();
        // A cluster the asker may not read is one kubechat does not read, to them; the default cluster is always
        // known, and its refusal names the namespace as ever.
        let hidden = scope.cluster() != state.clusters.default().name
            && access.clusters(&self.asker, [scope.cluster()]).is_empty();
        let refusal = if !known || hidden {
            Some(state.unknown_cluster(&self.asker, scope.cluster()))
        } else if let Err(refusal) = access.check(&self.asker, scope.cluster(), scope.namespace()) {
            Some(refusal)
        } else if self.asker.platform == Platform::Alertmanager {
            // Alerts are deduplicated by fingerprint instead: a storm must not drop the first diagnosis of each.
            None
        } else {
            state.policy.take_rate(&self.asker).err().map(|wait| Refusal::RateLimited { retry_after: wait })
        };
        let rated = refusal.is_none() && self.asker.platform != Platform::Alertmanager;
        let refusal = refusal.or_else(|| match state.policy.in_flight.enter() {
            Ok(()) => {
                self.in_flight = true;
                None
            }
            Err(in_flight) => {
                // kubechat being busy is not the asker's doing: the question costs them nothing.
                if rated {
                    state.policy.give_back_rate(&self.asker);
                }
                Some(Refusal::Busy { in_flight })
            }
        });
        match refusal {
            None => Ok(()),
            Some(refusal) => {
                self.record.outcome = match refusal {
                    Refusal::UnknownCluster { .. } if !known => Outcome::Invalid,
                    Refusal::Namespace { .. } | Refusal::UnknownCluster { .. } => Outcome::Refused,
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
        let cluster = request.scope.cluster();
        self.record.cluster = Some(cluster.to_string());
        self.record.namespace = Some(request.scope.namespace().to_string());
        self.record.object = request.scope.object().map(ToString::to_string);
        let reading = Instant::now();
        let facts = state.read(&request.scope).await;
        let retrieve = reading.elapsed();
        self.record.latency_ms.retrieve = Some(millis(retrieve));
        metrics.stage("retrieve", self.cluster_label(), retrieve.as_secs_f64());
        let facts = match facts {
            Ok(facts) => facts,
            Err(mut e) => {
                // "Did you mean …" names only namespaces the asker may read.
                if let ServeError::Read(ReadError::NamespaceNotFound { closest, .. }) = &mut e {
                    *closest = state.policy.access.visible(&self.asker, cluster, closest);
                }
                if let Some(code) = kube_code(&e) {
                    metrics.kube_error(&code, self.cluster_label());
                }
                self.fail(Outcome::Error, e.to_string());
                return Err(e);
            }
        };
        for gap in &facts.gaps {
            if gap.cause == Cause::Forbidden {
                metrics.kube_error(&gap.cause.label(), self.cluster_label());
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
                let outcome = match e {
                    BudgetError::QuestionTooLong { .. } => Outcome::Invalid,
                    BudgetError::TooSmall { .. } | BudgetError::NoPrompt(_) => Outcome::Error,
                };
                self.fail(outcome, e.to_string());
                return Err(e.into());
            }
        };
        self.record.latency_ms.llm_total = Some(millis(total));
        metrics.stage("llm_total", self.cluster_label(), total.as_secs_f64());
        if let Some(first) = first {
            self.record.latency_ms.llm_first_token = Some(millis(first));
            metrics.stage("llm_first_token", self.cluster_label(), first.as_secs_f64());
        }
        self.record.prompt = Some(answer.prompt.name.clone());
        self.record.prompt_version = Some(answer.prompt.version.clone());
        self.record.model = Some(answer.model.clone());
        self.record.findings = answer.findings.iter().map(|f| f.reason.to_string()).collect();
        self.record.prompt_tokens = answer.usage.prompt_tokens;
        self.record.completion_tokens = answer.usage.completion_tokens;
        if let Some(tokens) = answer.usage.prompt_tokens {
            metrics.tokens("prompt", self.cluster_label(), u64::from(tokens));
        }
        if let Some(tokens) = answer.usage.completion_tokens {
            metrics.tokens("completion", self.cluster_label(), u64::from(tokens));
        }
        match &answer.degraded {
            Some(error) => {
                metrics.llm_error(error.kind(), self.cluster_label());
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
        self.state.metrics.stage("post", self.cluster_label(), took.as_secs_f64());
    }

    /// The request's cluster as a metric label: kubechat's name for it, `unknown` for a name it does not read (an
    /// asker's words are never a label value), `none` before one is named.
    fn cluster_label(&self) -> &str {
        match self.record.cluster.as_deref() {
            None => "none",
            Some(named) => self.state.clusters.get(named).map_or("unknown", |e| e.name.as_str()),
        }
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
        let cluster = self.cluster_label().to_string();
        self.state.metrics.request(self.record.platform, self.record.intent, self.record.outcome.as_str(), &cluster);
        self.state.policy.audit.write(&self.record);
    }
}

/// The `code` label of a failed read; none when no API call failed.
fn kube_code(error: &ServeError) -> Option<String> {
    let error = match error {
        ServeError::Read(error) | ServeError::Unreachable { error, .. } => error,
        ServeError::UnknownCluster(_) | ServeError::Budget(_) => return None,
    };
    Some(match error {
        ReadError::NamespaceNotFound { .. } | ReadError::ObjectNotFound { .. } => "404".into(),
        ReadError::UnsupportedKind(_) => "unsupported".into(),
        other => other.gap().cause.label(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asker(user: &str) -> Asker {
        Asker { platform: Platform::Matrix, place: Some("!ops:example.org".into()), user: user.into() }
    }

    #[test]
    fn one_askers_refused_burst_leaves_the_rooms_questions_to_the_others() {
        let slow = |burst| Some(Buckets::new(crate::access::Rate { burst, per_minute: 1 }));
        let policy = Policy { user_rate: slow(1), place_rate: slow(2), ..Policy::open() };
        assert!(policy.take_rate(&asker("@alice:x")).is_ok());
        for _ in 0..5 {
            assert!(policy.take_rate(&asker("@alice:x")).is_err(), "alice asks faster than her rate");
        }
        assert!(policy.take_rate(&asker("@bob:x")).is_ok(), "alice's refusals took nothing from the room");
        assert!(policy.take_rate(&asker("@carol:x")).is_err(), "the room's two questions are taken");
        let users = policy.user_rate.as_ref().unwrap();
        assert!(users.take("matrix/@carol:x").is_ok(), "the room's refusal gave carol's question back");

        policy.give_back_rate(&asker("@bob:x"));
        assert!(policy.place_rate.as_ref().unwrap().take("matrix/!ops:example.org").is_ok(), "given back to the room");
    }
}
