//! Matrix end to end against a real Synapse: a user (a matrix-sdk client) mentions kubechat in rooms, plain and
//! encrypted, and reads the thread replies; the homeserver restarts mid-answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubechat::matrix::MatrixConfig;
use kubechat::secret::Secret;
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::events::relation::Thread;
use matrix_sdk::ruma::events::room::message::{
    MessageType, OriginalSyncRoomMessageEvent, Relation, RoomMessageEventContent,
};
use matrix_sdk::ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId};
use matrix_sdk::{Client, Room};
use serde_json::Value;

use crate::common::{Recorded, TestApp, config, recorded_slowly, scenarios, serve, spawn_app};
use crate::synapse::Synapse;

const WAIT: Duration = Duration::from_secs(60);

/// A model answer that streams over about `4 × pause`.
fn answer_stream() -> String {
    let lines = [
        "The pod keeps crashing; its logs in the context show why.\\n",
        "Read the previous container's logs:\\n",
        "```\\nkubectl logs -n crashloop payments-api-7b8d9c6f5-qw7zt --previous\\n```\\n",
    ];
    let mut out = String::new();
    for line in lines {
        out.push_str(&format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{line}\"}}}}]}}\n\n"));
    }
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    out + "data: [DONE]\n\n"
}

/// A message a user's client saw.
#[derive(Debug, Clone)]
struct Seen {
    event_id: OwnedEventId,
    sender: OwnedUserId,
    room: OwnedRoomId,
    content: RoomMessageEventContent,
    at: matrix_sdk::ruma::MilliSecondsSinceUnixEpoch,
}

impl Seen {
    /// The text of a notice, or of the notice an edit turns it into: (plain, html).
    fn notice(&self) -> Option<(String, String)> {
        let msgtype = match &self.content.relates_to {
            Some(Relation::Replacement(r)) => &r.new_content.msgtype,
            _ => &self.content.msgtype,
        };
        match msgtype {
            MessageType::Notice(n) => {
                Some((n.body.clone(), n.formatted.as_ref().map(|f| f.body.clone()).unwrap_or_default()))
            }
            _ => None,
        }
    }

    fn edits(&self) -> Option<&OwnedEventId> {
        match &self.content.relates_to {
            Some(Relation::Replacement(r)) => Some(&r.event_id),
            _ => None,
        }
    }

    fn thread(&self) -> Option<&Thread> {
        match &self.content.relates_to {
            Some(Relation::Thread(t)) => Some(t),
            _ => None,
        }
    }
}

/// A person on the homeserver, with a real client that syncs in the background.
struct User {
    client: Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for User {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl User {
    async fn new(synapse: &Synapse, name: &str) -> User {
        let id: OwnedUserId = synapse.register(name, &format!("{name}-password")).try_into().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let client =
            Client::builder().homeserver_url(&synapse.url).sqlite_store(dir.path(), None).build().await.unwrap();
        client.matrix_auth().login_username(&id, &format!("{name}-password")).send().await.unwrap();
        client.sync_once(SyncSettings::default().timeout(Duration::ZERO)).await.unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let changed = Arc::new(tokio::sync::Notify::new());
        let (kept, notify) = (seen.clone(), changed.clone());
        client.add_event_handler(move |event: OriginalSyncRoomMessageEvent, room: Room| {
            let (kept, notify) = (kept.clone(), notify.clone());
            async move {
                kept.lock().unwrap().push(Seen {
                    event_id: event.event_id,
                    sender: event.sender,
                    room: room.room_id().to_owned(),
                    content: event.content,
                    at: event.origin_server_ts,
                });
                notify.notify_waiters();
            }
        });
        let syncing = client.clone();
        let task = tokio::spawn(async move {
            loop {
                if syncing.sync_once(SyncSettings::default().timeout(Duration::from_secs(1))).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        });
        User { client, seen, changed, task, _dir: dir }
    }

    async fn room(&self, alias: &str, encrypted: bool, invite: &[&OwnedUserId]) -> Room {
        let mut request = create_room::v3::Request::new();
        request.room_alias_name = Some(alias.to_string());
        request.invite = invite.iter().map(|u| (*u).clone()).collect();
        let room = self.client.create_room(request).await.unwrap();
        if encrypted {
            room.enable_encryption().await.unwrap();
        }
        room
    }

    async fn say(&self, room: &Room, content: RoomMessageEventContent) -> OwnedEventId {
        room.send(content).await.unwrap().response.event_id
    }

    /// Waits until the client has seen a message that `matches`.
    async fn wait_for(&self, what: &str, matches: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = self.seen.lock().unwrap().iter().find(|s| matches(s)) {
                return found.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> =
                    self.seen.lock().unwrap().iter().map(|s| format!("{} {:?}", s.sender, s.notice())).collect();
                panic!("timed out waiting for {what}; seen:\n{}", seen.join("\n"));
            }
        }
    }

    /// Replies "what do the logs say?" in the thread of `asked`, after `answer`, mentioning nobody, and waits for
    /// `bot`'s answer to it: a new placeholder in that thread (not `placeholder`), then the edit that answers.
    async fn follow_up(
        &self,
        room: &Room,
        bot: &OwnedUserId,
        asked: &OwnedEventId,
        answer: &OwnedEventId,
        placeholder: &OwnedEventId,
    ) -> Seen {
        let mut follow = RoomMessageEventContent::text_plain("what do the logs say?");
        follow.relates_to = Some(Relation::Thread(Thread::plain(asked.clone(), answer.clone())));
        follow.mentions = Some(Mentions::new());
        self.say(room, follow).await;
        let second = self
            .wait_for("the follow-up's placeholder", |s| {
                &s.sender == bot
                    && &s.event_id != placeholder
                    && s.edits().is_none()
                    && s.thread().is_some_and(|t| &t.event_id == asked)
            })
            .await;
        self.wait_for("the follow-up's answer", |s| answer_to(s, &second.event_id)).await
    }

    /// The membership of `user` in `room`, from the homeserver.
    async fn membership(&self, room: &RoomId, user: &OwnedUserId) -> Option<String> {
        let token = self.client.access_token().unwrap();
        let url = format!("{}/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}", self.client.homeserver());
        let url = url.replace("//_matrix", "/_matrix");
        let response = crate::common::http_client().get(url).bearer_auth(token).send().await.unwrap();
        let value: Value = response.json().await.ok()?;
        value["membership"].as_str().map(str::to_string)
    }

    async fn wait_for_membership(&self, room: &RoomId, user: &OwnedUserId, membership: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.membership(room, user).await.as_deref() != Some(membership) {
            assert!(tokio::time::Instant::now() < deadline, "{user} never reached {membership} in {room}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn mention(bot: &OwnedUserId, text: &str) -> RoomMessageEventContent {
    RoomMessageEventContent::text_plain(text).add_mentions(Mentions::with_user_ids([bot.clone()]))
}

struct Bot {
    id: OwnedUserId,
    model: Recorded,
    app: TestApp,
    _replay: Option<kubechat::replay::Server>,
    _store: Option<tempfile::TempDir>,
}

fn bot_config(synapse: &Synapse, store: &std::path::Path) -> MatrixConfig {
    MatrixConfig {
        homeserver_url: synapse.url.clone(),
        user_id: "@kubechat:localhost".into(),
        password: Secret::new("kubechat-password"),
        access_token: Secret::default(),
        store_path: store.to_path_buf(),
        store_passphrase: Secret::new("store-passphrase"),
        device_name: "kubechat".into(),
        allowed_rooms: Vec::new(),
        allowed_servers: vec!["localhost".into()],
        max_per_room: 3,
    }
}

/// Starts kubechat's Matrix front-end as the registered `@kubechat:localhost`.
async fn start_bot(synapse: &Synapse, pause: Duration, adjust: impl FnOnce(&mut MatrixConfig)) -> Bot {
    let replay = serve(scenarios(), &[]).await;
    let mut bot = start_bot_on(synapse, &replay.url(), pause, adjust, |_| {}).await;
    bot._replay = Some(replay);
    bot
}

/// The same, reading the API server at `cluster`, with kubechat's settings adjusted by `policy`.
async fn start_bot_on(
    synapse: &Synapse,
    cluster: &str,
    pause: Duration,
    adjust: impl FnOnce(&mut MatrixConfig),
    policy: impl FnOnce(&mut kubechat::config::Config),
) -> Bot {
    let store = tempfile::tempdir().unwrap();
    let mut bot = start_bot_in(synapse, cluster, pause, adjust, policy, store.path()).await;
    bot._store = Some(store);
    bot
}

/// The same, with its store (session, crypto, thread memory) in `store`.
async fn start_bot_in(
    synapse: &Synapse,
    cluster: &str,
    pause: Duration,
    adjust: impl FnOnce(&mut MatrixConfig),
    policy: impl FnOnce(&mut kubechat::config::Config),
    store: &std::path::Path,
) -> Bot {
    let model = recorded_slowly("text/event-stream", answer_stream(), pause).await;
    let mut matrix = bot_config(synapse, store);
    adjust(&mut matrix);
    let mut config = config(cluster, &model.url, "healthy");
    config.matrix = Some(matrix);
    policy(&mut config);
    let app = spawn_app(config).await;
    Bot { id: "@kubechat:localhost".try_into().unwrap(), model, app, _replay: None, _store: None }
}

fn answer_to(seen: &Seen, placeholder: &OwnedEventId) -> bool {
    seen.edits() == Some(placeholder)
        && seen
            .notice()
            .is_some_and(|(body, _)| body.contains("Diagnosis of namespace") || body.contains("Answer about namespace"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_is_answered_in_a_thread_and_follow_ups_continue_it() {
    let synapse = Synapse::start().await;
    let alice = User::new(&synapse, "alice").await;
    let bot_id: OwnedUserId = synapse.register("kubechat", "kubechat-password").try_into().unwrap();
    let ops = alice.room("ops", false, &[&bot_id]).await;
    let random = alice.room("random", false, &[&bot_id]).await;
    // Sent before kubechat starts: the backlog, which it must not answer.
    let backlog = alice.say(&ops, mention(&bot_id, "kubechat: diagnose oom")).await;

    let bot = start_bot(&synapse, Duration::from_millis(5), |c| {
        c.allowed_rooms = vec!["#ops:localhost".into()];
        c.allowed_servers = vec!["elsewhere.example".into()];
    })
    .await;
    alice.wait_for_membership(ops.room_id(), &bot.id, "join").await;
    alice.wait_for_membership(random.room_id(), &bot.id, "leave").await;

    let asked = alice.say(&ops, mention(&bot.id, "kubechat: diagnose crashloop")).await;
    let placeholder = alice
        .wait_for("the placeholder in a thread", |s| {
            s.sender == bot.id && s.thread().is_some_and(|t| t.event_id == asked)
        })
        .await;
    let thread = placeholder.thread().unwrap();
    assert_eq!(thread.in_reply_to.as_ref().map(|r| &r.event_id), Some(&asked), "the reply fallback");
    assert!(placeholder.notice().unwrap().0.starts_with("Diagnosing crashloop"), "{:?}", placeholder.notice());
    let mentions = placeholder.content.mentions.as_ref().expect("m.mentions is always set");
    assert!(mentions.user_ids.is_empty() && !mentions.room, "nobody is pinged");
    let answer = alice.wait_for("the answer", |s| answer_to(s, &placeholder.event_id)).await;
    let (body, html) = answer.notice().unwrap();
    assert!(body.contains("Diagnosis of namespace crashloop") && body.contains("The pod keeps crashing"), "{body}");
    assert!(body.contains("CrashLoopBackOff") && body.contains("payments-api-7b8d9c6f5-qw7zt"), "findings: {body}");
    assert!(body.contains("[read-only] kubectl"), "commands: {body}");
    assert!(body.contains("model recorded · prompt diagnose@") && body.contains("namespace crashloop"), "{body}");
    assert!(html.contains("<details><summary>The context the model read"), "{html}");
    assert!(html.contains("<h3>Diagnosis of namespace crashloop</h3>"), "{html}");

    // A follow-up in the thread, with no mention.
    let second_answer = alice.follow_up(&ops, &bot.id, &asked, &answer.event_id, &placeholder.event_id).await;
    assert!(second_answer.notice().unwrap().0.contains("Answer about namespace crashloop"));
    let requests = bot.model.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "the backlog was not answered");
    let sent = requests[1]["messages"].to_string();
    assert!(sent.contains("Earlier in this conversation") && sent.contains("The pod keeps crashing"), "{sent}");
    assert!(sent.contains("what do the logs say?"));

    // Another bot's notice that names kubechat, and plain chatter, start nothing.
    alice.say(&ops, RoomMessageEventContent::notice_plain("kubechat: diagnose oom")).await;
    alice.say(&ops, RoomMessageEventContent::text_plain("lunch?").add_mentions(Mentions::new())).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bot.model.requests.lock().unwrap().len(), 2);
    let replied_to_backlog =
        alice.seen.lock().unwrap().iter().any(|s| s.thread().is_some_and(|t| t.event_id == backlog));
    assert!(!replied_to_backlog, "the backlog was skipped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_room_is_answered_encrypted() {
    let synapse = Synapse::start().await;
    let alice = User::new(&synapse, "alice").await;
    synapse.register("kubechat", "kubechat-password");
    // `kubechat serve`, as deployed, its log kept.
    let bot = ServedBot::start(&synapse).await;
    let room = alice.room("secure", true, &[&bot.id]).await;
    alice.wait_for_membership(room.room_id(), &bot.id, "join").await;
    // The bot's device must be known before alice encrypts for the room.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = alice.say(&room, RoomMessageEventContent::text_plain("!diagnose imagepull")).await;
    let placeholder = alice
        .wait_for("the placeholder", |s| s.sender == bot.id && s.thread().is_some_and(|t| t.event_id == asked))
        .await;
    let answer = alice.wait_for("the decrypted answer", |s| answer_to(s, &placeholder.event_id)).await;
    let (body, _) = answer.notice().unwrap();
    assert!(body.contains("Diagnosis of namespace imagepull") && body.contains("ImagePullBackOff"), "{body}");

    // On the homeserver, everything the bot sent in the room is ciphertext.
    let token = alice.client.access_token().unwrap();
    let url = format!("{}/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50", synapse.url, room.room_id());
    let messages: Value =
        crate::common::http_client().get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    let from_bot: Vec<&Value> = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sender"] == bot.id.as_str() && e.get("state_key").is_none())
        .collect();
    assert!(!from_bot.is_empty());
    assert!(from_bot.iter().all(|e| e["type"] == "m.room.encrypted"), "{from_bot:#?}");
    assert_eq!(answer.room, room.room_id());

    // What is expected of a bot without key backup or secret storage (matrix-sdk's 404s for their account data, its
    // warnings that no backup key is set) is not logged as an error; nothing is, in a run where nothing failed.
    let log = bot.stop();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(!log.contains("no backup key was found"), "{log}");
    assert!(log.contains("logged in to Matrix"), "{log}");
}

/// `kubechat serve` answering on Matrix as `@kubechat:localhost`, as a process with its log in a file.
struct ServedBot {
    id: OwnedUserId,
    process: crate::common::KillOnDrop,
    log: tempfile::NamedTempFile,
    _model: Recorded,
    _dir: tempfile::TempDir,
}

impl ServedBot {
    async fn start(synapse: &Synapse) -> ServedBot {
        let model = recorded_slowly("text/event-stream", answer_stream(), Duration::from_millis(5)).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("kubechat.yaml");
        std::fs::write(
            &config,
            format!(
                "dump: {}\nllm:\n  url: {}\n  api: openai\n  model: recorded\nhttp:\n  auth: open\naccess:\n  default: [\"*\"]\nmetrics:\n  listen: \"off\"\nmatrix:\n  enabled: true\n  homeserver_url: {}\n  user_id: \"@kubechat:localhost\"\n  password: kubechat-password\n  store_path: {}\n  store_passphrase: store-passphrase\n  allowed_servers: [localhost]\n",
                crate::common::SCENARIOS,
                model.url,
                synapse.url,
                dir.path().join("store").display()
            ),
        )
        .unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let (process, _) = crate::common::serve_process_logging(&config, log.reopen().unwrap().into());
        ServedBot { id: "@kubechat:localhost".try_into().unwrap(), process, log, _model: model, _dir: dir }
    }

    /// Stops the process; its log.
    fn stop(self) -> String {
        drop(self.process);
        std::fs::read_to_string(self.log.path()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_recovers_from_a_homeserver_restart_without_losing_the_answer() {
    let mut synapse = Synapse::start().await;
    let alice = User::new(&synapse, "alice").await;
    synapse.register("kubechat", "kubechat-password");
    // The model takes about three seconds: the homeserver goes down while it writes.
    let bot = start_bot(&synapse, Duration::from_millis(800), |_| {}).await;
    let room = alice.room("ops", false, &[&bot.id]).await;
    alice.wait_for_membership(room.room_id(), &bot.id, "join").await;
    let asked = alice.say(&room, mention(&bot.id, "kubechat: diagnose crashloop")).await;
    let placeholder = alice
        .wait_for("the placeholder", |s| s.sender == bot.id && s.thread().is_some_and(|t| t.event_id == asked))
        .await;
    synapse.restart(Duration::from_secs(3)).await;
    let answer = alice.wait_for("the answer sent after the restart", |s| answer_to(s, &placeholder.event_id)).await;
    assert!(answer.notice().unwrap().0.contains("CrashLoopBackOff"));
    let edits = alice.seen.lock().unwrap().iter().filter(|s| s.edits() == Some(&placeholder.event_id)).count();
    assert_eq!(edits, 1, "retried with one transaction id: sent once");

    // And the bot keeps syncing: a new question after the restart is answered.
    let again = alice.say(&room, mention(&bot.id, "kubechat: diagnose oom")).await;
    let second = alice
        .wait_for("a placeholder after the restart", |s| {
            s.sender == bot.id && s.thread().is_some_and(|t| t.event_id == again)
        })
        .await;
    let answer = alice.wait_for("an answer after the restart", |s| answer_to(s, &second.event_id)).await;
    assert!(answer.notice().unwrap().0.contains("OOMKilled"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_bot_waits_and_still_answers() {
    // One message, then one every two seconds, per user.
    let synapse = Synapse::start_with("{per_second: 0.5, burst_count: 1}").await;
    let alice = User::new(&synapse, "alice").await;
    synapse.register("kubechat", "kubechat-password");
    let bot = start_bot(&synapse, Duration::from_millis(5), |_| {}).await;
    let room = alice.room("ops", false, &[&bot.id]).await;
    alice.wait_for_membership(room.room_id(), &bot.id, "join").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = alice.say(&room, mention(&bot.id, "kubechat: diagnose crashloop")).await;
    let placeholder = alice
        .wait_for("the placeholder", |s| s.sender == bot.id && s.thread().is_some_and(|t| t.event_id == asked))
        .await;
    let answer = alice.wait_for("the answer, once the limit allows", |s| answer_to(s, &placeholder.event_id)).await;
    let gap = u64::from(answer.at.0) - u64::from(placeholder.at.0);
    assert!(
        gap >= 1500,
        "the edit was sent {gap} ms after the placeholder: the homeserver's M_LIMIT_EXCEEDED was not waited out"
    );
    assert!(answer.notice().unwrap().0.contains("CrashLoopBackOff"));
}

/// The seconds a refusal says to wait: "… try again in N s (request …)".
fn hinted_wait(refusal: &str) -> u64 {
    let after = refusal.split("try again in ").nth(1).unwrap_or_else(|| panic!("no retry hint in {refusal:?}"));
    after.split(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("no number of seconds in {refusal:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_question_is_told_its_place_and_one_askers_refusals_leave_the_room_to_the_others() {
    let synapse = Synapse::start().await;
    let alice = User::new(&synapse, "alice").await;
    let bob = User::new(&synapse, "bob").await;
    let carol = User::new(&synapse, "carol").await;
    synapse.register("kubechat", "kubechat-password");
    let replay = serve(scenarios(), &[]).await;
    // One question at a time for the model, whose answer streams over about two seconds; one question per person
    // every ten seconds, and four for the room, refilled only once a minute.
    let bot = start_bot_on(
        &synapse,
        &replay.url(),
        Duration::from_millis(500),
        // Room for every question asked at once: what refuses them here is the rate.
        |matrix| matrix.max_per_room = 5,
        |config| {
            config.llm.concurrency = 1;
            config.user_rate = Some(kubechat::access::Rate { burst: 1, per_minute: 6 });
            config.place_rate = Some(kubechat::access::Rate { burst: 4, per_minute: 1 });
        },
    )
    .await;
    let room = alice
        .room(
            "ops",
            false,
            &[&bot.id, &bob.client.user_id().unwrap().to_owned(), &carol.client.user_id().unwrap().to_owned()],
        )
        .await;
    for user in [&bob, &carol] {
        user.client.join_room_by_id(room.room_id()).await.unwrap();
    }
    alice.wait_for_membership(room.room_id(), &bot.id, "join").await;
    let in_room = |user: &User| user.client.get_room(room.room_id()).expect("joined");

    // Alice and bob ask at once: one question has the model, and the other's placeholder says where it is in line
    // until it is answered.
    let alices = alice.say(&room, mention(&bot.id, "kubechat: diagnose crashloop")).await;
    let bobs = bob.say(&in_room(&bob), mention(&bot.id, "kubechat: diagnose oom")).await;
    let bot_id = bot.id.clone();
    let reply_to = move |asked: &OwnedEventId| {
        let (bot_id, asked) = (bot_id.clone(), asked.clone());
        move |s: &Seen| s.sender == bot_id && s.edits().is_none() && s.thread().is_some_and(|t| t.event_id == asked)
    };
    let placeholders = [
        alice.wait_for("alice's placeholder", reply_to(&alices)).await,
        alice.wait_for("bob's placeholder", reply_to(&bobs)).await,
    ];

    // Meanwhile alice asks again, three times at once: refused by her own rate, each time with a hint.
    let mut burst = Vec::new();
    for _ in 0..3 {
        burst.push(alice.say(&room, mention(&bot.id, "kubechat: diagnose crashloop")).await);
    }
    let mut hinted = Vec::new();
    for asked in &burst {
        let refusal = alice.wait_for("alice's refusal", reply_to(asked)).await;
        let (body, _) = refusal.notice().unwrap();
        assert!(body.contains("you are asking faster than kubechat answers"), "{body}");
        hinted.push((Duration::from_secs(hinted_wait(&body)), std::time::Instant::now()));
    }
    // Carol, who asked nothing, is answered: alice's refusals took none of the room's questions.
    let carols = carol.say(&in_room(&carol), mention(&bot.id, "kubechat: diagnose crashloop")).await;
    let carols = alice.wait_for("carol's reply", reply_to(&carols)).await;
    assert!(carols.notice().unwrap().0.starts_with("Diagnosing crashloop"), "carol was refused: {:?}", carols.notice());

    let in_line = alice
        .wait_for("a place in line", |s| {
            placeholders.iter().any(|p| s.edits() == Some(&p.event_id))
                && s.notice().is_some_and(|(body, _)| body.contains("you are number 1 in line"))
        })
        .await;
    let waiting = placeholders.iter().find(|p| in_line.edits() == Some(&p.event_id)).unwrap();
    let title = waiting.notice().unwrap().0;
    assert!(in_line.notice().unwrap().0.starts_with(&title), "{:?} edits {title:?}", in_line.notice());
    let answers = [
        alice.wait_for("alice's answer", |s| answer_to(s, &placeholders[0].event_id)).await,
        alice.wait_for("bob's answer", |s| answer_to(s, &placeholders[1].event_id)).await,
    ];
    let answered = &answers[usize::from(waiting.event_id == placeholders[1].event_id)];
    let seen = alice.seen.lock().unwrap().clone();
    let position = |id: &OwnedEventId| seen.iter().position(|s| &s.event_id == id).unwrap();
    assert!(position(&in_line.event_id) < position(&answered.event_id), "the place in line never replaces the answer");
    let first = placeholders.iter().find(|p| p.event_id != waiting.event_id).unwrap();
    let edits = seen.iter().filter(|s| s.edits() == Some(&first.event_id)).count();
    assert_eq!(edits, 1, "only a question that waits is told so");
    alice.wait_for("carol's answer", |s| answer_to(s, &carols.event_id)).await;

    // Asking again once the last hint's seconds have passed is answered.
    let (wait, told) = hinted.pop().unwrap();
    tokio::time::sleep(wait.saturating_sub(told.elapsed())).await;
    let again = alice.say(&room, mention(&bot.id, "kubechat: diagnose crashloop")).await;
    let reply = alice.wait_for("the retry's reply", reply_to(&again)).await;
    let said = reply.notice().unwrap().0;
    assert!(said.starts_with("Diagnosing crashloop"), "asked again after {wait:?}, as hinted: {said}");
    alice.wait_for("the retry's answer", |s| answer_to(s, &reply.event_id)).await;
    assert_eq!(bot.model.requests.lock().unwrap().len(), 4, "alice, bob, carol and alice's retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_with_names_that_are_not_names_are_refused_in_the_thread_and_never_read() {
    use crate::names::{DEV, EMPTY_OBJECT, NAMESPACE_RULE, SECRET, asked, hostile_namespaces, nothing_read};
    let synapse = Synapse::start().await;
    let alice = User::new(&synapse, "alice").await;
    synapse.register("kubechat", "kubechat-password");
    let api = crate::common::api_proxy(crate::names::dump(), Vec::new()).await;
    // The room exists, with its alias, before kubechat starts: its entry is keyed by the alias.
    let bot_id: OwnedUserId = "@kubechat:localhost".try_into().unwrap();
    let room = alice.room("ops", false, &[&bot_id]).await;
    // A room alias that names no room stops the start, naming the entry.
    let mut config = config(&api.url, "http://127.0.0.1:1", "healthy");
    config.matrix = Some(bot_config(&synapse, tempfile::tempdir().unwrap().path()));
    config.access.matrix = vec![kubechat::access::Rule {
        place: "#nowhere:localhost".into(),
        namespaces: vec!["*".into()],
        ..Default::default()
    }];
    let refused = kubechat::app::App::build(config).await.err().expect("an alias that names no room is refused");
    assert!(refused.to_string().contains("cannot resolve the access.matrix entry #nowhere:localhost"), "{refused}");
    // The ops room, by its alias, may read `*-dev`.
    let bot = start_bot_on(
        &synapse,
        &api.url,
        Duration::from_millis(5),
        |_| {},
        |config| {
            config.access = kubechat::access::Access {
                matrix: vec![kubechat::access::Rule {
                    place: "#ops:localhost".into(),
                    namespaces: vec!["*-dev".into()],
                    users: vec![],
                    clusters: vec![],
                }],
                contact: "#platform-help".into(),
                ..Default::default()
            };
        },
    )
    .await;
    alice.wait_for_membership(room.room_id(), &bot.id, "join").await;
    let reply = |asked: OwnedEventId| {
        let (alice, bot_id) = (&alice, bot.id.clone());
        async move {
            let seen = alice
                .wait_for("the reply in the thread", |s| {
                    s.sender == bot_id && s.thread().is_some_and(|t| t.event_id == asked)
                })
                .await;
            seen.notice().expect("a notice").0
        }
    };
    let before = asked(&api).len();
    for (namespace, problem) in hostile_namespaces() {
        let said = alice.say(&room, RoomMessageEventContent::text_plain(format!("!diagnose -n {namespace}"))).await;
        let body = reply(said).await;
        assert!(body.contains(problem) && body.contains(NAMESPACE_RULE), "{namespace}: {body}");
    }
    let said = alice.say(&room, RoomMessageEventContent::text_plain(format!("!diagnose {DEV} pod/"))).await;
    let body = reply(said).await;
    assert!(body.contains(EMPTY_OBJECT), "{body}");
    let said = alice.say(&room, RoomMessageEventContent::text_plain(format!("!diagnose -n {SECRET}"))).await;
    let body = reply(said).await;
    assert!(body.contains("you may not diagnose namespace secret-project from here"), "{body}");
    nothing_read(&api, before, "a refused name").await;
    assert!(bot.model.requests.lock().unwrap().is_empty(), "nothing reached the model");

    // `*-dev` reads payments-dev.
    let said = alice.say(&room, RoomMessageEventContent::text_plain(format!("!diagnose -n {DEV}"))).await;
    let placeholder = reply(said.clone()).await;
    assert!(placeholder.contains("Diagnosing payments-dev"), "{placeholder}");
    let answer = alice
        .wait_for("the answer", |s| {
            s.sender == bot.id && s.edits().is_some() && s.notice().is_some_and(|(b, _)| b.contains("payments-dev"))
        })
        .await;
    assert!(answer.notice().unwrap().0.contains("CrashLoopBackOff"), "{:?}", answer.notice());
    assert!(!asked(&api).iter().any(|p| p.contains(SECRET)), "secret-project was read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_mid_answer_finishes_it_takes_no_new_question_and_notes_what_it_cannot_finish() {
    let synapse = Synapse::start().await;
    let alice = User::new(&synapse, "alice").await;
    let bot_id: OwnedUserId = synapse.register("kubechat", "kubechat-password").try_into().unwrap();
    let ops = alice.room("ops", false, &[&bot_id]).await;

    // The answer streams over about 5 × 700 ms: still running when the shutdown comes.
    let mut bot =
        start_bot(&synapse, Duration::from_millis(700), |c| c.allowed_rooms = vec!["#ops:localhost".into()]).await;
    alice.wait_for_membership(ops.room_id(), &bot.id, "join").await;
    let asked = alice.say(&ops, mention(&bot.id, "kubechat: diagnose crashloop")).await;
    let placeholder = alice
        .wait_for("the placeholder", |s| s.sender == bot.id && s.thread().is_some_and(|t| t.event_id == asked))
        .await;
    bot.app.shut_down();
    let answer = alice.wait_for("the answer, whole", |s| answer_to(s, &placeholder.event_id)).await;
    assert!(answer.notice().unwrap().0.contains("The pod keeps crashing"), "{:?}", answer.notice());
    tokio::time::timeout(WAIT, &mut bot.app.task)
        .await
        .expect("kubechat stops once the answer is posted")
        .unwrap()
        .unwrap();
    // Stopped: a question now is left for the next kubechat.
    let later = alice.say(&ops, mention(&bot.id, "kubechat: diagnose oom")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answered_later = alice.seen.lock().unwrap().iter().any(|s| s.thread().is_some_and(|t| t.event_id == later));
    assert!(!answered_later, "a question after the shutdown was taken");
    assert_eq!(bot.model.requests.lock().unwrap().len(), 1);
    drop(bot);

    // Past the drain timeout, the notice becomes a note to ask again.
    let replay = serve(scenarios(), &[]).await;
    let mut slow = start_bot_on(
        &synapse,
        &replay.url(),
        Duration::from_secs(3),
        |c| c.allowed_rooms = vec!["#ops:localhost".into()],
        |config| config.drain = Duration::from_secs(1),
    )
    .await;
    let asked = alice.say(&ops, mention(&slow.id, "kubechat: diagnose crashloop")).await;
    let placeholder = alice
        .wait_for("the second placeholder", |s| s.sender == slow.id && s.thread().is_some_and(|t| t.event_id == asked))
        .await;
    slow.app.shut_down();
    let note = alice
        .wait_for("the note", |s| {
            s.edits() == Some(&placeholder.event_id)
                && s.notice()
                    .is_some_and(|(b, _)| b.contains("kubechat restarted before it finished this answer; ask again"))
        })
        .await;
    assert!(!note.notice().unwrap().0.contains("Diagnosis of namespace"), "{:?}", note.notice());
    tokio::time::timeout(Duration::from_secs(15), &mut slow.app.task).await.expect("kubechat stops").unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_answered_before_a_restart_continues_after_it() {
    let synapse = Synapse::start().await;
    let alice = User::new(&synapse, "alice").await;
    let bot_id: OwnedUserId = synapse.register("kubechat", "kubechat-password").try_into().unwrap();
    let ops = alice.room("ops", false, &[&bot_id]).await;
    let replay = serve(scenarios(), &[]).await;
    let store = tempfile::tempdir().unwrap();
    let ops_only = |c: &mut MatrixConfig| c.allowed_rooms = vec!["#ops:localhost".into()];
    let mut first =
        start_bot_in(&synapse, &replay.url(), Duration::from_millis(5), ops_only, |_| {}, store.path()).await;
    alice.wait_for_membership(ops.room_id(), &first.id, "join").await;
    let asked = alice.say(&ops, mention(&first.id, "kubechat: diagnose crashloop")).await;
    let placeholder = alice
        .wait_for("the placeholder", |s| s.sender == first.id && s.thread().is_some_and(|t| t.event_id == asked))
        .await;
    let answer = alice.wait_for("the answer", |s| answer_to(s, &placeholder.event_id)).await;
    first.app.shut_down();
    tokio::time::timeout(WAIT, &mut first.app.task).await.expect("the first kubechat stops").unwrap().unwrap();
    drop(first);
    // The thread's memory is in the store, encrypted: "(a diagnosis)", the question kubechat records for a bare
    // diagnose and never sends anywhere, is in no file of the store.
    for entry in std::fs::read_dir(store.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(13).any(|w| w == b"(a diagnosis)"),
                "{} holds a thread in the clear",
                path.display()
            );
        }
    }
    // Asked while no kubechat runs (between the old pod's exit and the new one's start).
    let in_the_gap = alice.say(&ops, mention(&bot_id, "kubechat: diagnose oom")).await;

    // A new kubechat on the same store (a rollout) answers the question asked in the gap, once.
    let second = start_bot_in(&synapse, &replay.url(), Duration::from_millis(5), ops_only, |_| {}, store.path()).await;
    let gap_placeholder = alice
        .wait_for("the gap question's placeholder", |s| {
            s.sender == second.id && s.thread().is_some_and(|t| t.event_id == in_the_gap)
        })
        .await;
    alice.wait_for("the gap question's answer", |s| answer_to(s, &gap_placeholder.event_id)).await;
    // A reply in the thread answered before the restart, with no mention, is a follow-up.
    alice.follow_up(&ops, &second.id, &asked, &answer.event_id, &placeholder.event_id).await;
    let requests = second.model.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "the gap question and the follow-up, once each");
    let sent = requests[1]["messages"].to_string();
    assert!(sent.contains("Earlier in this conversation") && sent.contains("The pod keeps crashing"), "{sent}");
    assert!(sent.contains("what do the logs say?"), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_with_a_cluster_reads_that_cluster_and_its_thread_stays_there() {
    let synapse = Synapse::start().await;
    let alice = User::new(&synapse, "alice").await;
    synapse.register("kubechat", "kubechat-password");
    let (east, west) = crate::clusters::east_and_west().await;
    let (east_url, west_url) = (east.url(), west.url());
    let bot = start_bot_on(
        &synapse,
        &east_url,
        Duration::from_millis(5),
        |_| {},
        |config| crate::clusters::two_clusters(config, &east_url, &west_url),
    )
    .await;
    let room = alice.room("ops", false, &[&bot.id]).await;
    alice.wait_for_membership(room.room_id(), &bot.id, "join").await;

    let asked = alice.say(&room, RoomMessageEventContent::text_plain("!diagnose oom --cluster west")).await;
    let placeholder = alice
        .wait_for("the placeholder", |s| s.sender == bot.id && s.thread().is_some_and(|t| t.event_id == asked))
        .await;
    assert!(placeholder.notice().unwrap().0.starts_with("Diagnosing oom in west"), "{:?}", placeholder.notice());
    let answer = alice.wait_for("the answer", |s| answer_to(s, &placeholder.event_id)).await;
    assert!(answer.notice().unwrap().0.contains("cluster west · namespace oom"), "{:?}", answer.notice());
    // A follow-up in the thread, naming no cluster: the thread's.
    let followed = alice.follow_up(&room, &bot.id, &asked, &answer.event_id, &placeholder.event_id).await;
    assert!(followed.notice().unwrap().0.contains("cluster west · namespace oom"), "{:?}", followed.notice());
    // A namespace only east has, asked of west by the short flag and an alias: west does not have it.
    let asked = alice.say(&room, RoomMessageEventContent::text_plain("!diagnose crashloop -c eu-west-1")).await;
    let placeholder = alice
        .wait_for("the placeholder", |s| s.sender == bot.id && s.thread().is_some_and(|t| t.event_id == asked))
        .await;
    assert!(placeholder.notice().unwrap().0.starts_with("Diagnosing crashloop in west"), "{:?}", placeholder.notice());
    let refused =
        alice.wait_for("west's answer", |s| s.sender == bot.id && s.edits() == Some(&placeholder.event_id)).await;
    assert!(refused.notice().unwrap().0.contains("namespace crashloop does not exist"), "{:?}", refused.notice());
    drop((east, west));
}
