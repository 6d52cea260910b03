//! Slack: slash commands, mentions and follow-ups in threads, answered in the thread with Block Kit.
//!
//! Two transports feed one [`Slack`]: [`http`] (Slack calls kubechat; every request's signature is checked before
//! anything is parsed) and [`socket`] (kubechat holds a WebSocket to Slack; the default, as clusters rarely have public
//! ingress). Both acknowledge at once and hand the work to a background job, which posts a placeholder, streams the
//! answer into it with `chat.update` (at most once a second), then replaces it with the final message and attaches
//! the context the model read as a file. Deliveries are deduplicated by `event_id`, bots are ignored, and a bounded
//! number of questions wait at once.

pub mod alert;
pub mod api;
pub mod blocks;
pub mod config;
pub mod http;
pub mod mrkdwn;
pub mod signature;
pub mod socket;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::access::{Asker, Platform};
use crate::answer;
use crate::audit::Outcome;
use crate::chat::Recent;
use crate::chat::route::{self, Route};
use crate::cluster::ReadError;
use crate::request::{Intent, Request, Scope, Turn};
use crate::service::{AppState, ServeError, Ticket};
use api::{Identity, WebApi};
use blocks::{Footer, Message};
pub use config::{SlackConfig, SlackMode};

/// Slack takes at most this many messages through one slash command's `response_url`.
const RESPONSE_URL_USES: usize = 5;

/// Event ids remembered for deduplication; Slack retries within minutes, so this covers hours of traffic.
const SEEN_EVENTS: usize = 10_000;

/// The kind of memory the event ids seen are kept in the Lease as, for the next leader.
const SEEN_MEMORY: &str = "slack-events";

/// How long Slack may deliver an event again: it retries at once, after a minute and after five.
const RETRIED_WITHIN: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The most event ids kept in the Lease, the newest: well within its memory limit.
const SEEN_KEPT: usize = 2_000;

/// Threads remembered as answered (for follow-ups) or not (to avoid asking Slack again).
const THREADS: usize = 5_000;
/// How long "the bot is not in this thread" stays believed.
const NOT_OURS_FOR: Duration = Duration::from_secs(600);
/// Messages of a thread read for its alert and history.
const THREAD_MESSAGES: usize = 100;

/// A slash command, from a form (HTTP) or JSON (Socket Mode).
#[derive(Debug, Clone, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    #[serde(default)]
    pub text: String,
    pub user_id: String,
    pub channel_id: String,
    #[serde(default)]
    pub response_url: String,
}

/// The fields of an Events API event kubechat reads; everything else is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    user: Option<String>,
    bot_id: Option<String>,
    #[serde(default)]
    text: String,
    ts: Option<String>,
    thread_ts: Option<String>,
    channel: Option<String>,
}

/// A message from a person that kubechat may answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An `app_mention`, its text without the mention; `thread` is the message's own `ts` outside a thread.
    Mention { channel: String, thread: String, ts: String, user: String, text: String },
    /// A reply in a thread without a mention: a follow-up, if kubechat answered in that thread.
    Reply { channel: String, thread: String, ts: String, user: String, text: String },
}

/// Reads an Events API delivery: `None` for what kubechat does not answer (bots, itself, edits and other subtypes,
/// messages outside threads, other event types), an error for an event that does not parse.
pub fn read_event(delivery: &Value, bot_user: &str) -> Result<Option<Incoming>, serde_json::Error> {
    let event = Event::deserialize(&delivery["event"])?;
    let (Some(channel), Some(ts), Some(user)) = (event.channel, event.ts, event.user) else { return Ok(None) };
    if event.bot_id.is_some() || event.subtype.is_some() || user == bot_user {
        return Ok(None);
    }
    let mention = format!("<@{bot_user}>");
    Ok(match event.kind.as_str() {
        "app_mention" => {
            let thread = event.thread_ts.unwrap_or_else(|| ts.clone());
            Some(Incoming::Mention { channel, thread, ts, user, text: event.text.replace(&mention, " ") })
        }
        // Mentions come as app_mention too; the message event of a mention is not a second question.
        "message" if !event.text.contains(&mention) => match event.thread_ts {
            Some(thread) if thread != ts => Some(Incoming::Reply { channel, thread, ts, user, text: event.text }),
            _ => None,
        },
        _ => None,
    })
}

/// The Slack front-end: settings, the Web API, and what it remembers.
pub struct Slack {
    pub config: SlackConfig,
    pub api: Arc<WebApi>,
    app: Arc<AppState>,
    identity: Identity,
    seen: Mutex<Recent<()>>,
    /// Threads kubechat answered in, with their scope, so follow-ups stay on it.
    answered: Mutex<Recent<Scope>>,
    not_ours: Mutex<Recent<()>>,
    pending: AtomicUsize,
}

/// Where a question came from and where its answer goes.
struct Job {
    request_id: String,
    /// Already admitted, with its scope (a slash command is checked before it is acknowledged, an alert by the
    /// webhook); none for mentions, admitted once their scope is known.
    admitted: Option<(Ticket, Scope)>,
    user: String,
    channel: String,
    intent: Intent,
    /// Typed by the user: a cluster's name or alias.
    cluster: Option<String>,
    /// Typed by the user.
    namespace: Option<String>,
    object: Option<String>,
    question: String,
    /// The thread to answer in; none for a slash command, whose answer starts a thread.
    thread: Option<String>,
    /// The message that asked, left out of the thread's history.
    asked_ts: Option<String>,
    response_url: Option<String>,
    /// Where the answer is being written, once it is: an interrupted answer's note goes there.
    placed: Arc<Mutex<Option<Target>>>,
}

/// Where the answer is being written.
#[derive(Clone)]
enum Target {
    /// The placeholder message `ts`, in the thread `thread`.
    Message { ts: String, thread: String },
    /// A slash command's `response_url`: the bot is not in the channel.
    ResponseUrl(String),
}

/// Frees a place in line when the job ends, however it ends.
struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Slack {
    /// Checks the bot token with `auth.test` and learns the bot's own ids.
    pub async fn start(config: SlackConfig, app: Arc<AppState>) -> Result<Arc<Slack>, api::ApiError> {
        let api = Arc::new(WebApi::new(&config.api_url, config.bot_token.clone()));
        let identity = api.auth_test().await?;
        tracing::info!(user = %identity.user_id, bot = %identity.bot_id, team = %identity.team, "connected to Slack");
        Ok(Arc::new(Slack {
            config,
            api,
            app,
            identity,
            seen: Mutex::new(Recent::new(SEEN_EVENTS)),
            answered: Mutex::new(Recent::new(THREADS)),
            not_ours: Mutex::new(Recent::new(THREADS)),
            pending: AtomicUsize::new(0),
        }))
    }

    /// The namespace a channel defaults to, then the cluster's own default.
    fn channel_namespace(&self, channel: &str, cluster: &str) -> String {
        self.config
            .channel_namespaces
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, ns)| ns.clone())
            .unwrap_or_else(|| self.app.clusters.namespace(cluster).to_string())
    }

    /// The help text, with the namespaces this asker may read.
    fn help(&self, asker: &Asker) -> Message {
        let (readable, clusters) = self.app.readable(asker);
        blocks::help(&self.config.ask_command, &self.config.diagnose_command, &readable, &clusters)
    }

    /// Takes a place in line, or says how busy kubechat is.
    fn admit(&self) -> Result<(), String> {
        let waiting = self.pending.fetch_add(1, Ordering::Relaxed);
        if waiting >= self.config.max_pending {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(format!("kubechat is busy with {waiting} questions already; please ask again in a minute"));
        }
        Ok(())
    }

    /// A slash command: returns the ephemeral acknowledgement at once and answers in the background.
    pub fn command(self: &Arc<Self>, command: SlashCommand) -> Value {
        let request_id = self.app.request_id();
        if self.app.drain.is_closing() {
            return ephemeral(&format!("{} (request {request_id})", crate::drain::RESTARTING));
        }
        let name = if command.command == self.config.ask_command {
            "/ask"
        } else if command.command == self.config.diagnose_command {
            "/diagnose"
        } else {
            return ephemeral(&format!(
                "kubechat does not know the command {}; it answers {} and {}",
                command.command, self.config.ask_command, self.config.diagnose_command
            ));
        };
        let asker =
            Asker { platform: Platform::Slack, place: Some(command.channel_id.clone()), user: command.user_id.clone() };
        let route = route::route(Some(name), &command.text);
        let Route::Question { intent, cluster, namespace, object, question } = route else {
            let help = self.help(&asker);
            return json!({"response_type": "ephemeral", "text": help.fallback(), "blocks": help.blocks});
        };
        let named = self.app.clusters.canonical(cluster.as_deref());
        let shown = namespace.clone().unwrap_or_else(|| self.channel_namespace(&command.channel_id, &named));
        let mut ticket = self.app.ticket(&asker, intent, &request_id);
        let scope = match Scope::parse(&named, &shown, object.as_deref()) {
            Ok(scope) => scope,
            Err(invalid) => {
                ticket.fail(Outcome::Invalid, invalid.to_string());
                return ephemeral(&format!("{invalid} (request {request_id})"));
            }
        };
        if let Err(refusal) = ticket.admit(&scope) {
            return ephemeral(&format!("{refusal} (request {request_id})"));
        }
        if let Err(busy) = self.admit() {
            ticket.fail(Outcome::Busy, busy.clone());
            return ephemeral(&format!("{busy} (request {request_id})"));
        }
        let doing = match intent {
            Intent::Diagnose => "Diagnosing",
            Intent::Ask => "Looking into",
        };
        let described = self.app.describe(&scope.whole_namespace());
        let job = Job {
            request_id,
            admitted: Some((ticket, scope)),
            user: command.user_id,
            channel: command.channel_id,
            intent,
            cluster,
            namespace,
            object,
            question,
            thread: None,
            asked_ts: None,
            response_url: Some(command.response_url).filter(|u| !u.is_empty()),
            placed: Default::default(),
        };
        self.spawn(job);
        ephemeral(&format!("{doing} {described}…"))
    }

    /// An Events API delivery (the body Slack posts, or a Socket Mode envelope's payload), unless its `event_id` was
    /// delivered before.
    pub fn event(self: &Arc<Self>, delivery: &Value) {
        if let Some(id) = delivery["event_id"].as_str()
            && !self.claim(id)
        {
            tracing::info!(event_id = id, "duplicate delivery ignored");
            return;
        }
        self.claimed_event(delivery);
    }

    /// Whether `event_id` is delivered for the first time; it is remembered for the next. On the leader the events
    /// seen within Slack's retries are kept in the Lease too, so a retry reaching the next leader is known there.
    pub fn claim(&self, event_id: &str) -> bool {
        let mut seen = self.seen.lock().expect("not poisoned");
        if let Some(kept) = self.app.leader.recall(SEEN_MEMORY) {
            for id in serde_json::from_str::<Vec<String>>(&kept).unwrap_or_default() {
                seen.insert(id, ());
            }
        }
        let first = seen.insert(event_id.to_string(), ());
        if first {
            let kept = || serde_json::to_string(&seen.newer_than(RETRIED_WITHIN, SEEN_KEPT)).unwrap_or_default();
            self.app.leader.remember(SEEN_MEMORY, kept);
        }
        first
    }

    /// A delivery whose `event_id` was claimed (here or at the leader): answered.
    pub fn claimed_event(self: &Arc<Self>, delivery: &Value) {
        if let Some(id) = delivery["event_id"].as_str() {
            self.claim(id);
        }
        let incoming = match read_event(delivery, &self.identity.user_id) {
            Ok(Some(incoming)) => incoming,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("unreadable event ignored: {e}");
                return;
            }
        };
        match incoming {
            Incoming::Mention { channel, thread, ts, user, text } => self.question(channel, thread, ts, user, &text),
            // A reply in a thread: a follow-up when kubechat answered in that thread.
            Incoming::Reply { channel, thread, ts, user, text } => {
                let this = self.clone();
                tokio::spawn(async move {
                    if this.is_our_thread(&channel, &thread).await {
                        this.question(channel, thread, ts, user, &text);
                    }
                });
            }
        }
    }

    /// Interactivity payloads (buttons, shortcuts). kubechat's messages have no interactive parts yet, so this only
    /// logs what arrived; the request was verified and is acknowledged.
    pub fn interaction(&self, payload: &Value) {
        tracing::info!(kind = payload["type"].as_str().unwrap_or("?"), "interaction acknowledged; none is handled");
    }

    /// A mention or follow-up in `thread`.
    fn question(self: &Arc<Self>, channel: String, thread: String, asked_ts: String, user: String, text: &str) {
        let request_id = self.app.request_id();
        let Route::Question { intent, cluster, namespace, object, question } = route::route(None, text) else {
            let asker = Asker { platform: Platform::Slack, place: Some(channel.clone()), user: user.clone() };
            let help = self.help(&asker);
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.api.post_message(&channel, Some(&thread), &help).await {
                    tracing::warn!("cannot post help: {e}");
                }
            });
            return;
        };
        if let Err(busy) = self.admit() {
            let asker = Asker { platform: Platform::Slack, place: Some(channel.clone()), user: user.clone() };
            self.app.ticket(&asker, intent, &request_id).fail(Outcome::Busy, busy.clone());
            let this = self.clone();
            tokio::spawn(async move {
                let _ = this.api.post_message(&channel, Some(&thread), &blocks::failure(&busy, &request_id)).await;
            });
            return;
        }
        let job = Job {
            request_id,
            admitted: None,
            user,
            channel,
            intent,
            cluster,
            namespace,
            object,
            question,
            thread: Some(thread),
            asked_ts: Some(asked_ts),
            response_url: None,
            placed: Default::default(),
        };
        self.spawn(job);
    }

    /// Answers `job` in the background, as an answer the drain waits for; one interrupted by shutdown ends with a
    /// note where the answer was going.
    fn spawn(self: &Arc<Self>, job: Job) {
        let span = tracing::info_span!("request", platform = "slack", request_id = %job.request_id, intent = ?job.intent, channel = %job.channel, user = %job.user);
        let this = self.clone();
        let (placed, channel, thread) = (job.placed.clone(), job.channel.clone(), job.thread.clone());
        let (response_url, request_id) = (job.response_url.clone(), job.request_id.clone());
        let note = self.clone();
        self.app.drain.spawn(
            async move {
                let _pending = Pending(&this.pending);
                this.run(job).await;
            }
            .instrument(span),
            move || async move {
                let placed = placed.lock().expect("not poisoned").clone();
                note.interrupted(&channel, placed, thread.as_deref(), response_url.as_deref(), &request_id).await;
            },
        );
    }

    /// Tells the asker that kubechat shut down before their answer was finished: in the placeholder when there is
    /// one, else in the thread, else through the slash command's response URL.
    async fn interrupted(
        &self,
        channel: &str,
        placed: Option<Target>,
        thread: Option<&str>,
        response_url: Option<&str>,
        request_id: &str,
    ) {
        let message = blocks::failure(crate::drain::INTERRUPTED, request_id);
        let result = match (placed, thread) {
            (Some(Target::Message { ts, .. }), _) => self.api.update(channel, &ts, &message).await,
            (Some(Target::ResponseUrl(url)), _) => self.api.respond(&url, &message, false).await,
            (None, Some(thread)) => self.api.post_message(channel, Some(thread), &message).await.map(drop),
            (None, None) => match response_url {
                Some(url) => self.api.respond(url, &message, false).await,
                None => Ok(()),
            },
        };
        if let Err(e) = result {
            tracing::warn!(request_id, "cannot tell the asker their answer was interrupted: {e}");
        }
    }

    /// Diagnoses what an Alertmanager alert names, in the thread of the alert's own message in `channel` when it is
    /// among the channel's recent messages (`matches` recognises it), else in a new thread. Returns the thread.
    pub async fn diagnose_alert(
        &self,
        channel: &str,
        ticket: Ticket,
        scope: Scope,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<String> {
        let thread = match self.api.history(channel, 100).await {
            Ok(messages) => messages.iter().find(|m| matches(m)).and_then(|m| m["ts"].as_str()).map(str::to_string),
            Err(e) => {
                tracing::warn!("cannot read {channel} to find the alert's message: {e}");
                None
            }
        };
        let job = Job {
            request_id: ticket.request_id().to_string(),
            user: "alertmanager".into(),
            channel: channel.to_string(),
            intent: Intent::Diagnose,
            cluster: Some(scope.cluster().to_string()),
            namespace: Some(scope.namespace().to_string()),
            object: scope.object().map(ToString::to_string),
            admitted: Some((ticket, scope)),
            question: String::new(),
            thread,
            asked_ts: None,
            response_url: None,
            placed: Default::default(),
        };
        self.run(job).await
    }

    /// A short note in a thread (an alert resolved).
    pub async fn note(&self, channel: &str, thread: &str, text: &str) {
        let message = Message { text: text.to_string(), blocks: blocks::sections(&mrkdwn::escape(text)) };
        if let Err(e) = self.api.post_message(channel, Some(thread), &message).await {
            tracing::warn!("cannot post a note: {e}");
        }
    }

    /// Whether kubechat answered in this thread (remembered, or seen in the thread's messages).
    async fn is_our_thread(&self, channel: &str, thread: &str) -> bool {
        let key = format!("{channel}/{thread}");
        if self.answered.lock().expect("not poisoned").get(&key).is_some() {
            return true;
        }
        if self.not_ours.lock().expect("not poisoned").get(&key).is_some_and(|(at, ())| at.elapsed() < NOT_OURS_FOR) {
            return false;
        }
        let ours = match self.api.replies(channel, thread, THREAD_MESSAGES).await {
            Ok(messages) => messages.iter().any(|m| self.is_ours(m)),
            Err(e) => {
                tracing::warn!("cannot read thread {thread} to see whether kubechat answered in it: {e}");
                false
            }
        };
        if !ours {
            self.not_ours.lock().expect("not poisoned").put(key, ());
        }
        ours
    }

    fn is_ours(&self, message: &Value) -> bool {
        message["user"].as_str() == Some(self.identity.user_id.as_str())
            || (!self.identity.bot_id.is_empty() && message["bot_id"].as_str() == Some(self.identity.bot_id.as_str()))
    }

    /// The alert that opened a thread (when its parent is not kubechat's) and the conversation so far.
    async fn read_thread(&self, job: &Job, thread: &str) -> (alert::AlertScope, Vec<Turn>) {
        let messages = match self.api.replies(&job.channel, thread, THREAD_MESSAGES).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!("cannot read the thread; answering without its alert and history: {e}");
                return Default::default();
            }
        };
        let mention = format!("<@{}>", self.identity.user_id);
        let mut alert = alert::AlertScope::default();
        let mut turns = Vec::new();
        let mut asked: Option<String> = None;
        for message in &messages {
            let ts = message["ts"].as_str();
            let text = message["text"].as_str().unwrap_or_default();
            if ts == job.asked_ts.as_deref() {
                continue;
            }
            if ts == Some(thread) && !self.is_ours(message) {
                alert = alert::scope(message);
            }
            if self.is_ours(message) {
                // Placeholders still streaming are not answers yet.
                if message["blocks"][0]["type"].as_str() == Some("header") {
                    let question = asked.take().unwrap_or_else(|| "(a diagnosis)".to_string());
                    turns.push(Turn { question, answer: text.to_string() });
                }
            } else if (message["subtype"].is_null() && message["bot_id"].is_null() && ts != Some(thread))
                || (ts == Some(thread) && text.contains(&mention))
            {
                // A person's message in the thread (or a parent that asked kubechat): the next answer's question.
                asked = Some(text.replace(&mention, "").trim().to_string());
            }
        }
        (alert, turns)
    }

    /// Answers `job`; returns the thread the answer went to (none when it went nowhere or through a response URL).
    async fn run(&self, mut job: Job) -> Option<String> {
        let started = Instant::now();
        let mut history = Vec::new();
        let mut alert = alert::AlertScope::default();
        if let Some(thread) = &job.thread {
            (alert, history) = self.read_thread(&job, thread).await;
        }
        let (mut ticket, scope, note) = match job.admitted.take() {
            Some((ticket, scope)) => (ticket, scope, None),
            None => {
                let asker =
                    Asker { platform: Platform::Slack, place: Some(job.channel.clone()), user: job.user.clone() };
                let mut ticket = self.app.ticket(&asker, job.intent, &job.request_id);
                let (scope, note) = match self.scope(&job, &alert) {
                    Ok(found) => found,
                    Err(invalid) => {
                        ticket.fail(Outcome::Invalid, invalid.clone());
                        self.refuse(&job, &invalid).await;
                        return None;
                    }
                };
                if let Err(refusal) = ticket.admit(&scope) {
                    self.refuse(&job, &refusal.to_string()).await;
                    return None;
                }
                (ticket, scope, note)
            }
        };
        let title = match job.intent {
            Intent::Diagnose => format!("Diagnosing {}…", self.app.describe(&scope)),
            Intent::Ask => format!("Looking into {}…", self.app.describe(&scope.whole_namespace())),
        };
        let target =
            match self.api.post_message(&job.channel, job.thread.as_deref(), &blocks::progress(&title, "")).await {
                Ok(ts) => Target::Message { thread: job.thread.clone().unwrap_or_else(|| ts.clone()), ts },
                Err(e) => match (&job.response_url, e.code()) {
                    (Some(url), Some("not_in_channel" | "channel_not_found")) => {
                        tracing::info!("kubechat is not in the channel; answering through the response URL");
                        Target::ResponseUrl(url.clone())
                    }
                    _ => {
                        tracing::error!("cannot post to Slack: {e}");
                        ticket.fail(Outcome::Error, format!("cannot post to Slack: {e}"));
                        if let Some(url) = &job.response_url {
                            let message =
                                blocks::failure(&format!("I cannot post in this channel ({e})"), &job.request_id);
                            let _ = self.api.respond(url, &message, false).await;
                        }
                        return None;
                    }
                },
            };
        *job.placed.lock().expect("not poisoned") = Some(target.clone());
        if let Target::Message { thread, .. } = &target {
            self.answered.lock().expect("not poisoned").put(format!("{}/{thread}", job.channel), scope.clone());
        }
        let thread = match &target {
            Target::Message { thread, .. } => Some(thread.clone()),
            Target::ResponseUrl(_) => None,
        };
        let asker = ticket.asker().clone();
        let request = Request::new(&job.request_id, asker, job.intent, scope, &job.question, history);
        match self.answer(&mut ticket, &job, &target, request, note, &title).await {
            Ok(rendered) => {
                let posting = Instant::now();
                self.deliver(&job, &target, rendered, started).await;
                ticket.posted(posting.elapsed());
            }
            Err(problem) => {
                tracing::warn!("answered with a failure: {problem}");
                self.show(&job, &target, &blocks::failure(&problem, &job.request_id)).await;
            }
        }
        thread
    }

    /// The scope of a mention or follow-up, with a note on where it came from: the cluster typed, then the alert's
    /// `cluster` label, then the thread's earlier answer's, then the default; the namespace typed, then the alert's,
    /// then the thread's earlier answer's (in the same cluster), then the channel's default; an object likewise.
    /// Whatever it came from, the names are checked here, before access.
    fn scope(&self, job: &Job, alert: &alert::AlertScope) -> Result<(Scope, Option<String>), String> {
        let clusters = &self.app.clusters;
        let remembered = job
            .thread
            .as_ref()
            .and_then(|t| self.answered.lock().expect("not poisoned").get(&format!("{}/{t}", job.channel)).cloned())
            .map(|(_, scope)| scope);
        let named = job.cluster.as_deref().or(alert.cluster.as_deref());
        let cluster = match (named, &remembered) {
            (None, Some(scope)) => scope.cluster().to_string(),
            _ => clusters.canonical(named),
        };
        let remembered = remembered.filter(|scope| scope.cluster() == cluster);
        let (namespace, mut note) = if let Some(ns) = &job.namespace {
            (ns.clone(), None)
        } else if let Some(ns) = &alert.namespace {
            (ns.clone(), Some("namespace from the alert"))
        } else if let Some(scope) = &remembered {
            (scope.namespace().to_string(), None)
        } else {
            (self.channel_namespace(&job.channel, &cluster), None)
        };
        let mut object = job.object.clone();
        if object.is_none() && job.namespace.as_ref().is_none_or(|ns| Some(ns) == alert.namespace.as_ref()) {
            if let Some(o) = &alert.object {
                object = Some(o.clone());
                note = Some("namespace and object from the alert");
            } else if let Some(scope) = remembered.as_ref().filter(|s| s.namespace() == namespace) {
                object = scope.object().map(ToString::to_string);
            }
        }
        let scope = Scope::parse(&cluster, &namespace, object.as_deref()).map_err(|e| e.to_string())?;
        Ok((scope, note.map(str::to_string)))
    }

    /// Tells the asker in the thread why their question is not answered.
    async fn refuse(&self, job: &Job, why: &str) {
        let message = blocks::failure(why, &job.request_id);
        if let Err(e) = self.api.post_message(&job.channel, job.thread.as_deref(), &message).await {
            tracing::warn!("cannot tell the asker about the refusal: {e}");
        }
    }

    /// Reads the cluster and asks the model, streaming into the placeholder; returns the final answer.
    async fn answer(
        &self,
        ticket: &mut Ticket,
        job: &Job,
        target: &Target,
        mut request: Request,
        mut note: Option<String>,
        title: &str,
    ) -> Result<(answer::Answer, Option<String>), String> {
        let stream = Arc::new(Mutex::new(Stream::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let updater = match target {
            Target::Message { ts, .. } => Some(tokio::spawn(update_loop(
                self.api.clone(),
                job.channel.clone(),
                ts.clone(),
                title.to_string(),
                stream.clone(),
                self.config.update_interval,
                stopped,
            ))),
            Target::ResponseUrl(_) => None,
        };
        let callbacks = || {
            let (tokens, queued) = (stream.clone(), stream.clone());
            (
                move |token: &str| {
                    let mut s = tokens.lock().expect("not poisoned");
                    s.text.push_str(token);
                    s.dirty = true;
                },
                move |position: usize| {
                    let mut s = queued.lock().expect("not poisoned");
                    s.position = Some(position);
                    s.dirty = true;
                },
            )
        };
        let (on_token, on_queued) = callbacks();
        let mut result = ticket.answer(&request, on_token, on_queued).await;
        // An alert's pod is often gone by the time someone asks (restarted, rescheduled): read the namespace.
        if let Err(ServeError::Read(ReadError::ObjectNotFound { kind, name, .. })) = &result
            && job.object.is_none()
            && request.scope.object().is_some()
        {
            note = Some(format!("{kind} {name} from the alert no longer exists; diagnosing the namespace"));
            request = request.whole_namespace();
            let (on_token, on_queued) = callbacks();
            result = ticket.answer(&request, on_token, on_queued).await;
        }
        let _ = stop.send(());
        if let Some(updater) = updater {
            let _ = updater.await;
        }
        result.map(|answer| (answer, note)).map_err(|e| e.to_string())
    }

    /// Replaces the placeholder with the answer, posts what did not fit, and attaches the context.
    async fn deliver(
        &self,
        job: &Job,
        target: &Target,
        (answer, note): (answer::Answer, Option<String>),
        started: Instant,
    ) {
        let footer = Footer { took: started.elapsed(), request_id: &job.request_id, scope_note: note.as_deref() };
        let rendered = blocks::answer(&answer, &footer);
        match target {
            Target::Message { ts, thread } => {
                let mut messages = rendered.messages.iter();
                if let Some(first) = messages.next()
                    && let Err(e) = self.api.update(&job.channel, ts, first).await
                {
                    tracing::error!("cannot post the answer: {e}");
                    return;
                }
                self.post_in_order(&job.channel, thread, messages).await;
                if let Some(full) = &rendered.file
                    && let Err(e) = self.api.upload(&job.channel, thread, "answer.md", "The whole answer", full).await
                {
                    tracing::warn!(
                        "cannot attach the whole answer ({e}); posting the rest of it in the thread instead"
                    );
                    self.post_in_order(&job.channel, thread, &rendered.overflow).await;
                }
                if self.config.attach_context {
                    let title = format!(
                        "What the model read: namespace {}, prompt {}@{} (request {})",
                        answer.namespace, answer.prompt.name, answer.prompt.version, job.request_id
                    );
                    if let Err(e) = self.api.upload(&job.channel, thread, "context.txt", &title, &answer.context).await
                    {
                        tracing::warn!("cannot attach the context (does the app have files:write?): {e}");
                    }
                }
            }
            Target::ResponseUrl(url) => {
                // No file can be attached through a response URL, which takes five messages at most: the answer's
                // messages and as much of the rest as fits, the last place kept to say where the rest is.
                let mut sent: Vec<&blocks::Message> = rendered.messages.iter().chain(&rendered.overflow).collect();
                let cut_short = sent.len() > RESPONSE_URL_USES;
                sent.truncate(if cut_short { RESPONSE_URL_USES - 1 } else { RESPONSE_URL_USES });
                let note = cut_short.then(|| blocks::rest_elsewhere(&job.request_id));
                for message in sent.into_iter().chain(note.as_ref()) {
                    if let Err(e) = self.api.respond(url, message, true).await {
                        tracing::error!("cannot answer through the response URL: {e}");
                        return;
                    }
                }
            }
        }
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            degraded = answer.degraded.is_some(),
            "answered"
        );
    }

    /// Posts the rest of an answer in `thread`, in order: a message only once the one before it is there.
    async fn post_in_order(&self, channel: &str, thread: &str, messages: impl IntoIterator<Item = &Message>) {
        for message in messages {
            if let Err(e) = self.api.post_message(channel, Some(thread), message).await {
                tracing::error!("cannot post the rest of the answer: {e}");
                break;
            }
        }
    }

    /// Shows `message` in place of the placeholder.
    async fn show(&self, job: &Job, target: &Target, message: &Message) {
        let result = match target {
            Target::Message { ts, .. } => self.api.update(&job.channel, ts, message).await,
            Target::ResponseUrl(url) => self.api.respond(url, message, false).await,
        };
        if let Err(e) = result {
            tracing::error!("cannot tell the user what failed: {e}");
        }
    }
}

/// An answer as it streams.
#[derive(Default)]
struct Stream {
    text: String,
    position: Option<usize>,
    dirty: bool,
}

/// Shows the streaming answer in the placeholder, at most once per `interval`, until `stop` fires; an update in flight
/// finishes first, so it never lands after the final message.
async fn update_loop(
    api: Arc<WebApi>,
    channel: String,
    ts: String,
    title: String,
    stream: Arc<Mutex<Stream>>,
    interval: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(interval) => {}
        }
        let message = {
            let mut s = stream.lock().expect("not poisoned");
            if !s.dirty {
                continue;
            }
            s.dirty = false;
            let heading = match (s.text.is_empty(), s.position) {
                (true, Some(position)) => format!("{title} the model is busy; you are number {position} in line"),
                _ => title.clone(),
            };
            blocks::progress(&heading, &s.text)
        };
        if let Err(e) = api.update(&channel, &ts, &message).await {
            tracing::debug!("a progress update failed: {e}");
        }
    }
}

/// A reply only the asker sees, its text escaped like every text kubechat sends.
fn ephemeral(text: &str) -> Value {
    json!({"response_type": "ephemeral", "text": mrkdwn::escape(text)})
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::config::RawSlack;

    #[test]
    fn the_app_manifest_matches_what_kubechat_does() {
        let manifest: Value = serde_saphyr::from_str(include_str!("../../slack/app-manifest.yaml")).unwrap();
        let defaults = RawSlack::default();
        let commands: Vec<&str> = manifest["features"]["slash_commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["command"].as_str().unwrap())
            .collect();
        assert_eq!(commands, [defaults.diagnose_command.as_str(), defaults.ask_command.as_str()]);
        let mut scopes: Vec<&str> =
            manifest["oauth_config"]["scopes"]["bot"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        scopes.sort();
        assert_eq!(
            scopes,
            ["app_mentions:read", "channels:history", "chat:write", "commands", "files:write", "groups:history"],
            "the minimal scopes: every one is used, none is missing"
        );
        let settings = &manifest["settings"];
        let events: Vec<&str> = settings["event_subscriptions"]["bot_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap())
            .collect();
        assert_eq!(events, ["app_mention", "message.channels", "message.groups"]);
        assert_eq!(settings["socket_mode_enabled"], true, "Socket Mode is the default");
        assert_eq!(settings["interactivity"]["is_enabled"], true);
    }
}
