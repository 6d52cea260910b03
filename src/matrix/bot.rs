//! The Matrix bot. It logs in once and keeps its session, device and keys in a sqlite store on a volume, so it stays the same
//! device across restarts (E2EE needs that). At start-up one sync runs before any handler is added, so the backlog is
//! skipped. Invites are accepted for allowed rooms and servers and declined otherwise. A question gets a "Diagnosing
//! payments…" notice at once in the thread, edited (`m.replace`) into the answer when it is ready; a reply in that thread
//! is a follow-up with the thread's earlier turns. Sending waits out a homeserver that is restarting (the same
//! transaction id on every try, so nothing is sent twice), and syncing resumes with backoff.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matrix_sdk::authentication::matrix::MatrixSession;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::event_handler::Ctx;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::api::error::ErrorKind;
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::events::relation::{Replacement, Thread};
use matrix_sdk::ruma::events::room::member::StrippedRoomMemberEvent;
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
    RoomMessageEventContentWithoutRelation,
};
use matrix_sdk::ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, TransactionId, UserId};
use matrix_sdk::store::RoomLoadSettings;
use matrix_sdk::{Client, Room, RoomState, SessionMeta, SessionTokens};
use matrix_sdk_store_encryption::StoreCipher;
use tracing::Instrument as _;

use super::config::MatrixConfig;
use super::render::{self, Rendered};
use crate::access::{Asker, Platform};
use crate::audit::Outcome;
use crate::chat::Recent;
use crate::chat::matrix_text;
use crate::chat::route::Route;
use crate::request::{Intent, Request, Scope, Turn};
use crate::service::{AppState, Ticket};

/// Why the Matrix front-end cannot start: what failed, and the error beneath it.
#[derive(Debug, thiserror::Error)]
#[error("{what}{}", cause.as_deref().map(|c| format!(": {}", crate::error_chain(c))).unwrap_or_default())]
pub struct StartError {
    what: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StartError {
    fn new(what: String) -> StartError {
        StartError { what, cause: None }
    }
}

/// `.context(…)` for start-up steps, as anyhow has it, into a [`StartError`].
trait Context<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, StartError>;

    fn context(self, what: &str) -> Result<T, StartError>
    where
        Self: Sized,
    {
        self.with_context(|| what.to_string())
    }
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for Result<T, E> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, StartError> {
        self.map_err(|e| StartError { what: what(), cause: Some(Box::new(e)) })
    }
}

impl<T> Context<T> for Option<T> {
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, StartError> {
        self.ok_or_else(|| StartError::new(what()))
    }
}

/// Entries of `access.matrix` keyed by a room alias (`#ops:example.org`) are keyed by the room it names, resolved by the
/// homeserver now: questions come from room ids. An alias that names no room, or a glob of aliases (which no
/// homeserver can list), stops the start naming the entry.
pub async fn resolve_aliases(homeserver: &str, rules: &mut [crate::access::Rule]) -> Result<(), StartError> {
    use matrix_sdk::ruma::RoomAliasId;
    let mut client = None;
    for rule in rules.iter_mut().filter(|r| r.place.starts_with('#')) {
        let entry = rule.place.clone();
        if entry.contains(['*', '?']) {
            return Err(StartError::new(format!(
                "the access.matrix entry {entry} is a glob of room aliases, which no homeserver can list; name the rooms by id (!…:server) or by whole aliases"
            )));
        }
        let alias = RoomAliasId::parse(&entry)
            .with_context(|| format!("the access.matrix entry {entry} is not a room alias like #ops:example.org"))?;
        if client.is_none() {
            client = Some(
                Client::builder()
                    .homeserver_url(homeserver)
                    .build()
                    .await
                    .context("cannot build a client to resolve the room aliases of access.matrix")?,
            );
        }
        let resolved = client
            .as_ref()
            .expect("built above")
            .resolve_room_alias(&alias)
            .await
            .with_context(|| {
                format!("cannot resolve the access.matrix entry {entry}: no room has that alias on its homeserver; name the room by its id (!…:server) or fix the alias")
            })?;
        tracing::info!(alias = %entry, room = %resolved.room_id, "access.matrix: the entry for a room alias applies to the room it names now");
        rule.place = resolved.room_id.to_string();
    }
    Ok(())
}

/// Threads remembered, with their scope and turns.
const THREADS: usize = 2_000;
/// Turns kept per thread; the prompt takes the newest that fit.
const TURNS: usize = 10;
/// How long an answer waits for the homeserver to come back before it is given up.
const SEND_PATIENCE: Duration = Duration::from_secs(600);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The long-poll timeout of each sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// What kubechat remembers of a thread it answered.
#[derive(Debug, Clone)]
struct ThreadState {
    scope: Scope,
    turns: Vec<Turn>,
}

/// A thread's memory as the store keeps it (in the state store's custom values, which matrix-sdk does not encrypt:
/// kubechat encrypts it itself with a cipher of its own, kept in the store under the store passphrase, when one is
/// set), so that a reply in a thread answered before a restart still continues it.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredThread {
    /// kubechat's name of the cluster; threads stored before kubechat read several clusters have none: the default.
    #[serde(default)]
    cluster: Option<String>,
    namespace: String,
    object: Option<String>,
    /// (question, answer), oldest first.
    turns: Vec<(String, String)>,
}

impl StoredThread {
    fn of(state: &ThreadState) -> StoredThread {
        StoredThread {
            cluster: Some(state.scope.cluster().to_string()),
            namespace: state.scope.namespace().to_string(),
            object: state.scope.object().map(ToString::to_string),
            turns: state.turns.iter().map(|t| (t.question.clone(), t.answer.clone())).collect(),
        }
    }

    /// Back to a thread's state (`default_cluster` for a thread stored without one); names are checked again, as
    /// anything read from outside is.
    fn state(self, default_cluster: &str) -> Option<ThreadState> {
        let cluster = self.cluster.as_deref().unwrap_or(default_cluster);
        let scope = Scope::parse(cluster, &self.namespace, self.object.as_deref()).ok()?;
        let turns = self.turns.into_iter().map(|(question, answer)| Turn { question, answer }).collect();
        Some(ThreadState { scope, turns })
    }
}

/// The store key of when a kubechat on this store stopped syncing on shutdown (milliseconds since the epoch).
const STOPPED_KEY: &[u8] = b"kubechat.stopped";
/// A stop older than this is not resumed from: after a long outage the backlog is skipped, as on a first start.
const RESUME_WITHIN: Duration = Duration::from_secs(15 * 60);
/// Questions this long before the stop are taken too: they may have been in the long poll the stop cut short (the
/// sync token keeps any the previous kubechat saw from coming again).
const RESUME_OVERLAP: Duration = SYNC_TIMEOUT;

/// When the previous kubechat on this store stopped, if it stopped gracefully within [`RESUME_WITHIN`]; the note is
/// taken, so a crash later does not resume from it.
async fn resumed(client: &Client) -> Option<MilliSecondsSinceUnixEpoch> {
    let store = client.state_store();
    let stopped = store.remove_custom_value(STOPPED_KEY).await.ok()??;
    let stopped: u64 = String::from_utf8(stopped).ok()?.parse().ok()?;
    let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
    let ago = Duration::from_millis(now.saturating_sub(stopped));
    if ago > RESUME_WITHIN {
        return None;
    }
    let from = stopped.saturating_sub(RESUME_OVERLAP.as_millis() as u64);
    Some(MilliSecondsSinceUnixEpoch(matrix_sdk::ruma::UInt::new(from)?))
}

/// The store key of kubechat's own cipher, exported under the store passphrase.
const CIPHER_KEY: &[u8] = b"kubechat.cipher";

/// kubechat's cipher for what it keeps in the store: none without a store passphrase; else the one in the store, or a
/// new one, saved there.
async fn store_cipher(client: &Client, passphrase: &str) -> Result<Option<StoreCipher>, StartError> {
    if passphrase.is_empty() {
        return Ok(None);
    }
    let store = client.state_store();
    let saved = store.get_custom_value(CIPHER_KEY).await.context("cannot read the store")?;
    let cipher = match saved {
        Some(saved) => StoreCipher::import(passphrase, &saved)
            .context("cannot open kubechat's data in the Matrix store: the store passphrase differs from its own")?,
        None => {
            let cipher = StoreCipher::new().context("cannot make a cipher for the Matrix store")?;
            let exported = cipher.export(passphrase).context("cannot save the cipher")?;
            store.set_custom_value_no_read(CIPHER_KEY, exported).await.context("cannot write the store")?;
            cipher
        }
    };
    Ok(Some(cipher))
}

/// The store key of the list of remembered threads (newest last), and of one thread's memory.
const THREADS_KEY: &[u8] = b"kubechat.threads";
fn thread_store_key(key: &str) -> Vec<u8> {
    format!("kubechat.thread/{key}").into_bytes()
}

pub struct Matrix {
    config: MatrixConfig,
    pub client: Client,
    app: Arc<AppState>,
    own: OwnedUserId,
    /// The bot's display name, for mentions by name from clients that send no `m.mentions`.
    name: String,
    /// Questions being answered per room (`max_per_room`).
    busy: Arc<Mutex<HashMap<OwnedRoomId, usize>>>,
    threads: Mutex<Recent<ThreadState>>,
    /// Held while the stored list of threads is rewritten.
    stored_threads: tokio::sync::Mutex<()>,
    /// Encrypts the threads' memory in the store (with a store passphrase).
    cipher: Option<StoreCipher>,
    /// Messages sent before this are the backlog, never answered (a room joined later shows its recent history too).
    started: MilliSecondsSinceUnixEpoch,
}

/// A question to answer.
struct Job {
    request_id: String,
    /// Already admitted, with its scope (an alert's); none for people's questions, admitted once their scope is known.
    admitted: Option<(Ticket, Scope)>,
    /// The asker's Matrix id.
    user: String,
    room: Room,
    root: OwnedEventId,
    asked: OwnedEventId,
    intent: Intent,
    /// Typed: a cluster's name or alias.
    cluster: Option<String>,
    namespace: Option<String>,
    object: Option<String>,
    question: String,
    /// Where the answer is going, for a note if shutdown interrupts it.
    placed: Placed,
    /// The room's place this question holds (none for an alert's), given up as soon as it is refused.
    slot: Option<RoomSlot>,
}

/// One of a room's `max_per_room` places; freed when dropped, however the job ends.
struct RoomSlot {
    busy: Arc<Mutex<HashMap<OwnedRoomId, usize>>>,
    room: OwnedRoomId,
}

impl RoomSlot {
    /// A place in `room`, unless its questions already fill them.
    fn take(
        busy: &Arc<Mutex<HashMap<OwnedRoomId, usize>>>,
        room: &matrix_sdk::ruma::RoomId,
        max: usize,
    ) -> Option<RoomSlot> {
        let mut counts = busy.lock().expect("not poisoned");
        let count = counts.entry(room.to_owned()).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(RoomSlot { busy: busy.clone(), room: room.to_owned() })
    }
}

impl Drop for RoomSlot {
    fn drop(&mut self) {
        let mut counts = self.busy.lock().expect("not poisoned");
        if let Some(count) = counts.get_mut(&self.room) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.room);
            }
        }
    }
}

impl Matrix {
    /// Opens the store, restores the session (or logs in and saves it), and syncs once to skip the backlog.
    pub async fn start(config: MatrixConfig, app: Arc<AppState>) -> Result<Arc<Matrix>, StartError> {
        crate::install_tls_provider();
        std::fs::create_dir_all(&config.store_path).with_context(|| {
            format!("cannot create the Matrix store {} (setting matrix.store_path)", config.store_path.display())
        })?;
        let passphrase = Some(config.store_passphrase.expose()).filter(|p| !p.is_empty());
        let client = Client::builder()
            .homeserver_url(&config.homeserver_url)
            .sqlite_store(&config.store_path, passphrase)
            .build()
            .await
            .context("cannot open the Matrix client and its store")?;
        let session_file = config.store_path.join("session.json");
        if session_file.exists() {
            let saved = std::fs::read_to_string(&session_file)
                .with_context(|| format!("cannot read {}", session_file.display()))?;
            let session: MatrixSession = serde_json::from_str(&saved)
                .with_context(|| format!("{} is not a saved Matrix session", session_file.display()))?;
            if session.meta.user_id.as_str() != config.user_id {
                return Err(StartError::new(format!(
                    "the store {} belongs to {}, not {} (setting matrix.user_id); use another matrix.store_path",
                    config.store_path.display(),
                    session.meta.user_id,
                    config.user_id
                )));
            }
            client
                .matrix_auth()
                .restore_session(session, RoomLoadSettings::default())
                .await
                .context("cannot restore the saved Matrix session")?;
        } else {
            login(&client, &config).await?;
            let session = client.matrix_auth().session().context("the login gave no session")?;
            save_session(&session_file, &session)?;
        }
        let cipher = store_cipher(&client, config.store_passphrase.expose()).await?;
        let own = client.user_id().context("no user after login")?.to_owned();
        let name = match client.account().get_display_name().await {
            Ok(Some(name)) => name,
            _ => own.localpart().to_string(),
        };
        tracing::info!(user = %own, device = ?client.device_id(), "logged in to Matrix");
        let started = match resumed(&client).await {
            // The previous kubechat on this store shut down gracefully moments ago: the questions asked since (its
            // drain and this start) are answered, none twice (the store's sync token starts after what it saw).
            Some(stopped) => {
                tracing::info!("resuming where the previous kubechat stopped: questions asked meanwhile are answered");
                stopped
            }
            None => {
                // Skip the backlog: this sync runs before any handler is added.
                client
                    .sync_once(SyncSettings::default().timeout(Duration::ZERO))
                    .await
                    .context("the first sync with the homeserver failed")?;
                MilliSecondsSinceUnixEpoch::now()
            }
        };
        let matrix = Arc::new(Matrix {
            started,
            config,
            client,
            app,
            own,
            name,
            busy: Arc::default(),
            threads: Mutex::new(Recent::new(THREADS)),
            stored_threads: tokio::sync::Mutex::new(()),
            cipher,
        });
        Ok(matrix)
    }

    /// Handles events until the task is dropped: invites pending since before the start first, then syncing forever,
    /// with backoff while the homeserver is away.
    pub async fn run(self: Arc<Self>) {
        self.client.add_event_handler_context(self.clone());
        self.client.add_event_handler(on_invite);
        self.client.add_event_handler(on_message);
        for room in self.client.invited_rooms() {
            match room.invite_details().await {
                Ok(invite) => self.consider_invite(room, &invite.inviter_id).await,
                Err(e) => tracing::warn!(room = %room.room_id(), "cannot read a pending invite: {e}"),
            }
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            // On shutdown, stop receiving: the answers in flight still send (sending needs no sync).
            let synced = tokio::select! {
                synced = self.client.sync_once(SyncSettings::default().timeout(SYNC_TIMEOUT)) => synced,
                () = self.app.drain.closed() => {
                    tracing::info!("stopped syncing with the homeserver: shutting down");
                    // The next kubechat on this store answers what is asked from now on.
                    let now = MilliSecondsSinceUnixEpoch::now().get().to_string().into_bytes();
                    if let Err(e) = self.client.state_store().set_custom_value_no_read(STOPPED_KEY, now).await {
                        tracing::warn!("cannot note the stop in the store; questions asked during the restart will be missed: {e}");
                    }
                    return;
                }
            };
            match synced {
                Ok(_) => backoff = Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!("Matrix sync failed ({e}); retrying in {}s", backoff.as_secs());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn consider_invite(&self, room: Room, inviter: &UserId) {
        let alias = room.canonical_alias();
        let allowed_room = self
            .config
            .allowed_rooms
            .iter()
            .any(|r| r == room.room_id().as_str() || alias.as_ref().is_some_and(|a| a.as_str() == r));
        let allowed_server = self.config.allowed_servers.iter().any(|s| s == inviter.server_name().as_str());
        if !(allowed_room || allowed_server) {
            tracing::info!(room = %room.room_id(), %inviter, "declining an invite from outside the allowed rooms and servers");
            if let Err(e) = room.leave().await {
                tracing::warn!("cannot decline the invite: {e}");
            }
            return;
        }
        // A join right after an invite can race the homeserver; try a few times.
        for attempt in 1..=5u32 {
            match room.join().await {
                Ok(()) => {
                    tracing::info!(room = %room.room_id(), %inviter, "joined on invite");
                    return;
                }
                Err(e) => {
                    tracing::warn!(attempt, "cannot join {}: {e}", room.room_id());
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
            }
        }
    }

    async fn handle(self: Arc<Self>, event: OriginalSyncRoomMessageEvent, room: Room, placed: Placed) {
        if room.state() != RoomState::Joined || event.sender == self.own || event.origin_server_ts < self.started {
            return;
        }
        // Only people's text: notices are bots' (kubechat's own included), and edits are not new questions.
        let MessageType::Text(text) = &event.content.msgtype else { return };
        let thread_root = match &event.content.relates_to {
            Some(Relation::Replacement(_)) => return,
            Some(Relation::Thread(thread)) => Some(thread.event_id.clone()),
            _ => None,
        };
        let body = text.body.trim();
        let follow_up = match &thread_root {
            Some(root) => self.thread(&thread_key(room.room_id().as_str(), root.as_str())).await.is_some(),
            None => false,
        };
        let mentions = event.content.mentions.as_ref().map(|m| m.user_ids.contains(&self.own));
        let bot = matrix_text::Bot { user_id: self.own.as_str(), name: &self.name };
        let Some(routed) = matrix_text::read(&bot, body, mentions, follow_up) else { return };
        let root = thread_root.unwrap_or_else(|| event.event_id.clone());
        let request_id = self.app.request_id();
        let Route::Question { intent, cluster, namespace, object, question } = routed else {
            let asker = Asker {
                platform: Platform::Matrix,
                place: Some(room.room_id().to_string()),
                user: event.sender.to_string(),
            };
            let (readable, clusters) = self.app.readable(&asker);
            let content = in_thread(render::help(&self.name, &readable, &clusters), &root, &event.event_id);
            if let Err(e) = self.send(&room, content).await {
                tracing::warn!("cannot send help: {e}");
            }
            return;
        };
        let Some(slot) = RoomSlot::take(&self.busy, room.room_id(), self.config.max_per_room) else {
            let problem = format!(
                "{} questions from this room are already being answered; ask again in a minute",
                self.config.max_per_room
            );
            let asker = Asker {
                platform: Platform::Matrix,
                place: Some(room.room_id().to_string()),
                user: event.sender.to_string(),
            };
            self.app.ticket(&asker, intent, &request_id).fail(Outcome::Busy, problem.clone());
            let content = in_thread(render::failure(&problem, &request_id), &root, &event.event_id);
            let _ = self.send(&room, content).await;
            return;
        };
        *placed.lock().expect("not poisoned") = Some(Place {
            room: room.clone(),
            root: root.clone(),
            asked: event.event_id.clone(),
            request_id: request_id.clone(),
            placeholder: None,
        });
        let job = Job {
            request_id,
            admitted: None,
            user: event.sender.to_string(),
            room,
            root,
            asked: event.event_id,
            intent,
            cluster,
            namespace,
            object,
            question,
            placed,
            slot: Some(slot),
        };
        let span = tracing::info_span!("request", platform = "matrix", request_id = %job.request_id, room = %job.room.room_id(), user = %event.sender);
        self.answer(job).instrument(span).await;
    }

    async fn answer(&self, mut job: Job) {
        let started = Instant::now();
        let key = thread_key(job.room.room_id().as_str(), job.root.as_str());
        let remembered = self.thread(&key).await;
        let (mut ticket, scope) = match job.admitted.take() {
            Some(admitted) => admitted,
            None => {
                let place = Some(job.room.room_id().to_string());
                let asker = Asker { platform: Platform::Matrix, place, user: job.user.clone() };
                // The cluster typed, then the thread's, then the default; the namespace typed, then the thread's (in
                // the same cluster), then the cluster's default; the object likewise.
                let clusters = &self.app.clusters;
                let cluster = match (&job.cluster, &remembered) {
                    (None, Some(r)) => r.scope.cluster().to_string(),
                    (typed, _) => clusters.canonical(typed.as_deref()),
                };
                let remembered = remembered.as_ref().filter(|r| r.scope.cluster() == cluster);
                let namespace = job
                    .namespace
                    .clone()
                    .or_else(|| remembered.map(|r| r.scope.namespace().to_string()))
                    .unwrap_or_else(|| clusters.namespace(&cluster).to_string());
                let object = job.object.clone().or_else(|| {
                    let same = remembered.filter(|r| r.scope.namespace() == namespace);
                    same.and_then(|r| r.scope.object()).map(ToString::to_string)
                });
                let mut ticket = self.app.ticket(&asker, job.intent, &job.request_id);
                let refusal = match Scope::parse(&cluster, &namespace, object.as_deref()) {
                    Err(invalid) => {
                        ticket.fail(Outcome::Invalid, invalid.to_string());
                        Err(invalid.to_string())
                    }
                    Ok(scope) => match ticket.admit(&scope) {
                        Ok(()) => Ok(scope),
                        Err(refusal) => Err(refusal.to_string()),
                    },
                };
                match refusal {
                    Ok(scope) => (ticket, scope),
                    Err(why) => {
                        // A refusal is not an answer: the room's place goes to the next question at once.
                        job.slot = None;
                        let failure = render::failure(&why, &job.request_id);
                        if let Err(e) = self.send(&job.room, in_thread(failure, &job.root, &job.asked)).await {
                            tracing::warn!("cannot tell the asker about the refusal: {e}");
                        }
                        return;
                    }
                }
            }
        };
        let title = match job.intent {
            Intent::Diagnose => format!("Diagnosing {}…", self.app.describe(&scope)),
            Intent::Ask => format!("Looking into {}…", self.app.describe(&scope.whole_namespace())),
        };
        let placeholder = match self.send(&job.room, in_thread(render::progress(&title), &job.root, &job.asked)).await {
            Ok(id) => {
                if let Some(place) = job.placed.lock().expect("not poisoned").as_mut() {
                    place.placeholder = Some(id.clone());
                }
                id
            }
            Err(e) => {
                tracing::error!("cannot send to the room: {e}");
                ticket.fail(Outcome::Error, format!("cannot send to the room: {e}"));
                return;
            }
        };
        let history = remembered.map(|r| r.turns).unwrap_or_default();
        let asker = ticket.asker().clone();
        let request = Request::new(&job.request_id, asker, job.intent, scope, &job.question, history.clone());
        // Waiting for the model, the placeholder says the asker's place in line; that edit lands before the answer's.
        let (queued, in_line) = tokio::sync::oneshot::channel::<usize>();
        let answering = ticket.answer(
            &request,
            |_| {},
            move |position| {
                let _ = queued.send(position);
            },
        );
        let telling = async {
            if let Ok(position) = in_line.await {
                let waiting =
                    render::progress(&format!("{title} The model is busy; you are number {position} in line."));
                if let Err(e) = self.send(&job.room, replacement(&placeholder, waiting)).await {
                    tracing::debug!("cannot show the place in line: {e}");
                }
            }
        };
        let (result, ()) = tokio::join!(answering, telling);
        let result = result.map_err(|e| e.to_string());
        let rendered = match &result {
            Ok(answer) => render::answer(answer, started.elapsed().as_secs_f32(), None),
            Err(problem) => render::failure(problem, &job.request_id),
        };
        let posting = Instant::now();
        if let Err(e) = self.send(&job.room, replacement(&placeholder, rendered)).await {
            tracing::error!("cannot send the answer: {e}");
            ticket.fail(Outcome::Error, format!("cannot send the answer: {e}"));
            return;
        }
        ticket.posted(posting.elapsed());
        if let Ok(answer) = result {
            let mut turns = history;
            let asked = if job.question.trim().is_empty() { "(a diagnosis)".to_string() } else { job.question.clone() };
            turns.push(Turn { question: asked, answer: answer.answer.clone() });
            if turns.len() > TURNS {
                turns.drain(..turns.len() - TURNS);
            }
            let state = ThreadState { scope: request.scope, turns };
            self.remember(key, state).await;
            tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                degraded = answer.degraded.is_some(),
                "answered"
            );
        }
    }

    /// Diagnoses what an Alertmanager alert names, in `room`: in the thread of the alert's own message when it is
    /// among the room's recent messages (`matches` recognises its body), else under a new notice titled `title`.
    /// Returns the thread's root.
    pub async fn diagnose_alert(
        &self,
        room_id: &str,
        ticket: Ticket,
        scope: Scope,
        title: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Option<OwnedEventId> {
        let Some(room) = OwnedRoomId::try_from(room_id).ok().and_then(|id| self.client.get_room(&id)) else {
            tracing::warn!(room = room_id, "kubechat is not in the room configured for the alert's receiver");
            return None;
        };
        let mut root = None;
        match room.messages(MessagesOptions::backward()).await {
            Ok(messages) => {
                for event in &messages.chunk {
                    let body = event.raw().get_field::<serde_json::Value>("content").ok().flatten();
                    let body = body.as_ref().and_then(|c| c["body"].as_str()).unwrap_or_default();
                    if matches(body) {
                        root = event.event_id();
                        break;
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read the room to find the alert's message: {e}"),
        }
        let root = match root {
            Some(root) => root,
            None => {
                let mut content = RoomMessageEventContent::notice_plain(title);
                content.mentions = Some(Mentions::new());
                match self.send(&room, content).await {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::error!("cannot post to the room: {e}");
                        return None;
                    }
                }
            }
        };
        let job = Job {
            request_id: ticket.request_id().to_string(),
            user: "alertmanager".into(),
            room,
            root: root.clone(),
            asked: root.clone(),
            intent: Intent::Diagnose,
            cluster: None,
            namespace: None,
            object: None,
            question: String::new(),
            admitted: Some((ticket, scope)),
            placed: Placed::default(),
            slot: None,
        };
        self.answer(job).await;
        Some(root)
    }

    /// What kubechat remembers of a thread: in memory, else in the store (a thread answered before a restart).
    async fn thread(&self, key: &str) -> Option<ThreadState> {
        if let Some((_, state)) = self.threads.lock().expect("not poisoned").get(key) {
            return Some(state.clone());
        }
        let stored = match self.client.state_store().get_custom_value(&thread_store_key(key)).await {
            Ok(stored) => stored?,
            Err(e) => {
                tracing::warn!("cannot read a thread's memory from the store: {e}");
                return None;
            }
        };
        let stored: StoredThread = match &self.cipher {
            Some(cipher) => cipher.decrypt_value(&stored).ok()?,
            None => serde_json::from_slice(&stored).ok()?,
        };
        let state = stored.state(&self.app.clusters.default().name)?;
        self.threads.lock().expect("not poisoned").put(key.to_string(), state.clone());
        Some(state)
    }

    /// Remembers a thread's scope and turns, in memory and in the store; the store keeps the newest [`THREADS`].
    async fn remember(&self, key: String, state: ThreadState) {
        let thread = StoredThread::of(&state);
        let stored = match &self.cipher {
            Some(cipher) => match cipher.encrypt_value(&thread) {
                Ok(encrypted) => encrypted,
                Err(e) => {
                    tracing::warn!("cannot encrypt a thread's memory; a restart forgets it: {e}");
                    self.threads.lock().expect("not poisoned").put(key, state);
                    return;
                }
            },
            None => serde_json::to_vec(&thread).expect("a thread's memory serializes"),
        };
        self.threads.lock().expect("not poisoned").put(key.clone(), state);
        let store = self.client.state_store();
        let _writing = self.stored_threads.lock().await;
        let result = async {
            store.set_custom_value_no_read(&thread_store_key(&key), stored).await?;
            let listed = store.get_custom_value(THREADS_KEY).await?;
            let mut keys: Vec<String> = listed.and_then(|l| serde_json::from_slice(&l).ok()).unwrap_or_default();
            keys.retain(|k| *k != key);
            keys.push(key.clone());
            let dropped: Vec<String> = keys.drain(..keys.len().saturating_sub(THREADS)).collect();
            for old in &dropped {
                store.remove_custom_value(&thread_store_key(old)).await?;
            }
            let listed = serde_json::to_vec(&keys).expect("keys serialize");
            store.set_custom_value_no_read(THREADS_KEY, listed).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!("cannot keep a thread's memory in the store; a restart forgets it: {e}");
        }
    }

    /// Tells the asker that kubechat shut down before their answer was finished: the "Diagnosing…" notice becomes the
    /// note, or, before there was one, the note is sent in the thread.
    async fn interrupted(&self, place: Place) {
        let note = render::failure(crate::drain::INTERRUPTED, &place.request_id);
        let content = match &place.placeholder {
            Some(placeholder) => replacement(placeholder, note),
            None => in_thread(note, &place.root, &place.asked),
        };
        if let Err(e) = self.send(&place.room, content).await {
            tracing::warn!(request_id = %place.request_id, "cannot tell the asker their answer was interrupted: {e}");
        }
    }

    /// A short notice in a thread (an alert resolved).
    pub async fn note(&self, room_id: &str, root: &OwnedEventId, text: &str) {
        let Some(room) = OwnedRoomId::try_from(room_id).ok().and_then(|id| self.client.get_room(&id)) else { return };
        let content = in_thread(Rendered { body: text.to_string(), html: render::escape(text) }, root, root);
        if let Err(e) = self.send(&room, content).await {
            tracing::warn!("cannot post a note: {e}");
        }
    }

    /// Sends `content`, waiting out a homeserver that is away (restarting, rate-limiting) for up to
    /// [`SEND_PATIENCE`]. Every try carries the same transaction id, so the homeserver stores the event once.
    async fn send(&self, room: &Room, content: RoomMessageEventContent) -> Result<OwnedEventId, matrix_sdk::Error> {
        let txn = TransactionId::new();
        let deadline = Instant::now() + SEND_PATIENCE;
        let mut backoff = Duration::from_secs(1);
        loop {
            match room.send(content.clone()).with_transaction_id(txn.clone()).await {
                Ok(sent) => return Ok(sent.response.event_id),
                Err(e) => {
                    let permanent = matches!(
                        e.client_api_error_kind(),
                        Some(ErrorKind::Forbidden | ErrorKind::UnknownToken(_) | ErrorKind::TooLarge)
                    );
                    if permanent || Instant::now() + backoff > deadline {
                        return Err(e);
                    }
                    tracing::warn!("cannot send yet ({e}); retrying in {}s", backoff.as_secs());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

fn thread_key(room: &str, root: &str) -> String {
    format!("{room}/{root}")
}

/// A notice in the thread `root`, with the reply fallback to `latest` for clients without threads, mentioning nobody.
fn in_thread(rendered: Rendered, root: &OwnedEventId, latest: &OwnedEventId) -> RoomMessageEventContent {
    let mut content = RoomMessageEventContent::notice_html(rendered.body, rendered.html);
    content.relates_to = Some(Relation::Thread(Thread::plain(root.clone(), latest.clone())));
    content.mentions = Some(Mentions::new());
    content
}

/// An edit of `original` into `rendered`; the fallback for clients without edits is the plain text.
fn replacement(original: &OwnedEventId, rendered: Rendered) -> RoomMessageEventContent {
    let mut content = RoomMessageEventContent::notice_plain(format!("* {}", rendered.body));
    let new_content =
        RoomMessageEventContentWithoutRelation::notice_html(rendered.body, rendered.html).add_mentions(Mentions::new());
    content.relates_to = Some(Relation::Replacement(Replacement::new(original.clone(), new_content)));
    content.mentions = Some(Mentions::new());
    content
}

async fn login(client: &Client, config: &MatrixConfig) -> Result<(), StartError> {
    if !config.password.is_empty() {
        client
            .matrix_auth()
            .login_username(&config.user_id, config.password.expose())
            .initial_device_display_name(&config.device_name)
            .send()
            .await
            .with_context(|| {
                format!("cannot log in to Matrix as {} (settings matrix.user_id, matrix.password)", config.user_id)
            })?;
        cross_sign(client, config).await;
        return Ok(());
    }
    let user_id: OwnedUserId = config.user_id.as_str().try_into().context("matrix.user_id is not a Matrix ID")?;
    let probe = Client::builder()
        .homeserver_url(&config.homeserver_url)
        .build()
        .await
        .context("cannot build a client to check the access token")?;
    probe
        .matrix_auth()
        .restore_session(
            MatrixSession {
                meta: SessionMeta { user_id: user_id.clone(), device_id: "PROBE".into() },
                tokens: SessionTokens { access_token: config.access_token.expose().to_string(), refresh_token: None },
            },
            RoomLoadSettings::default(),
        )
        .await
        .context("cannot use the access token")?;
    let whoami = probe.whoami().await.context("the access token was refused (setting matrix.access_token)")?;
    let device_id = whoami.device_id.context("the access token has no device; log in with a password once")?;
    client
        .matrix_auth()
        .restore_session(
            MatrixSession {
                meta: SessionMeta { user_id, device_id },
                tokens: SessionTokens { access_token: config.access_token.expose().to_string(), refresh_token: None },
            },
            RoomLoadSettings::default(),
        )
        .await
        .context("cannot use the access token")?;
    Ok(())
}

/// Creates the bot's cross-signing identity and signs its device with it, once, so clients that hide unverified
/// devices see the bot's messages after someone verifies the bot's user. Best effort: a homeserver that wants more
/// than the password leaves it to an operator (docs/matrix.md).
async fn cross_sign(client: &Client, config: &MatrixConfig) {
    let encryption = client.encryption();
    let Err(e) = encryption.bootstrap_cross_signing_if_needed(None).await else {
        tracing::info!("cross-signing ready");
        return;
    };
    let Some(response) = e.as_uiaa_response() else {
        tracing::warn!("cannot set up cross-signing: {e}");
        return;
    };
    let identifier = uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(config.user_id.clone()));
    let mut password = uiaa::Password::new(identifier, config.password.expose().to_string());
    password.session = response.session.clone();
    match encryption.bootstrap_cross_signing(Some(uiaa::AuthData::Password(password))).await {
        Ok(()) => tracing::info!("cross-signing set up; the bot's device is signed by its identity"),
        Err(e) => tracing::warn!("cannot set up cross-signing: {e}"),
    }
}

fn save_session(path: &Path, session: &MatrixSession) -> Result<(), StartError> {
    let text = serde_json::to_string(session).context("the session serializes")?;
    std::fs::write(path, text).with_context(|| format!("cannot save the Matrix session to {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private to kubechat", path.display()))?;
    }
    Ok(())
}

async fn on_invite(event: StrippedRoomMemberEvent, room: Room, Ctx(matrix): Ctx<Arc<Matrix>>) {
    if event.state_key != matrix.own || room.state() != RoomState::Invited {
        return;
    }
    tokio::spawn(async move { matrix.consider_invite(room, &event.sender).await });
}

async fn on_message(event: OriginalSyncRoomMessageEvent, room: Room, Ctx(matrix): Ctx<Arc<Matrix>>) {
    let placed = Placed::default();
    let (note, slot) = (matrix.clone(), placed.clone());
    matrix.app.drain.spawn(matrix.clone().handle(event, room, placed), move || async move {
        let placed = slot.lock().expect("not poisoned").take();
        if let Some(placed) = placed {
            note.interrupted(placed).await;
        }
    });
}

/// Where an answer is going, once kubechat took the question: an interrupted answer's note goes there.
type Placed = Arc<Mutex<Option<Place>>>;

struct Place {
    room: Room,
    root: OwnedEventId,
    asked: OwnedEventId,
    request_id: String,
    /// The "Diagnosing…" notice, once sent: the note replaces it.
    placeholder: Option<OwnedEventId>,
}
