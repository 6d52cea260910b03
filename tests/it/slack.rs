//! Slack end to end: kubechat's Slack front-end (HTTP and Socket Mode) against the fake Slack, the replay server and
//! a recorded model stream.

use std::time::{Duration, Instant};

use kubechat::config::Config;
use kubechat::llm::LlmConfig;
use kubechat::secret::Secret;
use kubechat::slack::SlackMode;
use kubechat::slack::{SlackConfig, signature};
use serde_json::{Value, json};

use crate::common::{Recorded, TestApp, config, recorded_slowly, scenarios, serve, spawn_app};
use crate::fake_slack::{APP_TOKEN, BOT_ID, BOT_TOKEN, BOT_USER, CHANNEL, Call, FakeSlack};

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// Slack's published example request (api.slack.com/authentication/verifying-requests-from-slack).
const VECTOR_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const VECTOR_TIMESTAMP: &str = "1531420618";
const VECTOR_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
const WAIT: Duration = Duration::from_secs(30);

/// A model answer that streams over about `5 × pause`.
pub fn answer_stream() -> String {
    let lines = [
        "The pod is failing; the events and logs in the context show why.\\n",
        "Look at the events first:\\n",
        "```\\nkubectl get events -n NAMESPACE --sort-by=.lastTimestamp\\n```\\n",
        "Then fix the cause named in the findings.\\n",
        // What a model might echo from a hostile log line: nothing of it may ping or link under another name.
        "Beware <!channel> <@U0HOSTILE> <https://evil.example|https://good.example> & @here.\\n",
    ];
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let role = if i == 0 { r#""role":"assistant","# } else { "" };
        out.push_str(&format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"{line}\"}}}}]}}\n\n"
        ));
    }
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    out + "data: [DONE]\n\n"
}

pub struct Bot {
    pub url: String,
    pub slack: FakeSlack,
    pub model: Recorded,
    pub app: TestApp,
    _replay: Option<kubechat::replay::Server>,
}

async fn bot(mode: SlackMode, pause: Duration) -> Bot {
    bot_with(mode, pause, |_, _| {}).await
}

async fn bot_with(mode: SlackMode, pause: Duration, adjust: impl FnOnce(&mut SlackConfig, &mut LlmConfig)) -> Bot {
    bot_with_policy(mode, pause, adjust, |_| {}).await
}

/// A bot built as `kubechat serve` builds it, with its settings adjusted by `adjust` and `policy` (access rules, rate
/// limits, the audit log, the Alertmanager webhook).
pub async fn bot_with_policy(
    mode: SlackMode,
    pause: Duration,
    adjust: impl FnOnce(&mut SlackConfig, &mut LlmConfig),
    policy: impl FnOnce(&mut Config),
) -> Bot {
    let replay = serve(scenarios(), &[]).await;
    let mut bot = bot_on(&replay.url(), mode, pause, adjust, policy).await;
    bot._replay = Some(replay);
    bot
}

/// The same, reading the API server at `cluster`.
pub async fn bot_on(
    cluster: &str,
    mode: SlackMode,
    pause: Duration,
    adjust: impl FnOnce(&mut SlackConfig, &mut LlmConfig),
    policy: impl FnOnce(&mut Config),
) -> Bot {
    let model = recorded_slowly("text/event-stream", answer_stream(), pause).await;
    bot_with_model(cluster, mode, model, adjust, policy).await
}

/// The same, with `model` answering.
async fn bot_with_model(
    cluster: &str,
    mode: SlackMode,
    model: Recorded,
    adjust: impl FnOnce(&mut SlackConfig, &mut LlmConfig),
    policy: impl FnOnce(&mut Config),
) -> Bot {
    let slack = FakeSlack::start().await;
    let mut config = config(cluster, &model.url, "healthy");
    let mut slack_config = SlackConfig {
        mode,
        bot_token: Secret::new(BOT_TOKEN),
        app_token: Secret::new(APP_TOKEN),
        signing_secret: Secret::new(SIGNING_SECRET),
        api_url: slack.api_url(),
        ask_command: "/ask".into(),
        diagnose_command: "/diagnose".into(),
        channel_namespaces: vec![("CPAYMENTS".into(), "crashloop".into())],
        update_interval: Duration::from_secs(1),
        max_pending: 20,
        attach_context: true,
    };
    adjust(&mut slack_config, &mut config.llm);
    config.slack = Some(slack_config);
    policy(&mut config);
    let app = spawn_app(config).await;
    assert!(app.slack.is_some(), "auth.test passes against the fake");
    Bot { url: app.url.clone(), slack, model, app, _replay: None }
}

pub fn now() -> String {
    jiff::Timestamp::now().as_second().to_string()
}

/// POSTs `body` to kubechat as Slack would, signed at `timestamp` (or with `signature` when given).
pub async fn signed(
    bot: &Bot,
    path: &str,
    content_type: &str,
    body: &str,
    timestamp: &str,
    signature: Option<&str>,
) -> reqwest::Response {
    let sig = signature
        .map(str::to_string)
        .unwrap_or_else(|| signature::sign(SIGNING_SECRET.as_bytes(), timestamp, body.as_bytes()));
    crate::common::http_client()
        .post(format!("{}{path}", bot.url))
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", sig)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

pub fn command_body(bot: &Bot, command: &str, text: &str, channel: &str) -> String {
    serde_urlencoded::to_string([
        ("token", "unused"),
        ("team_id", "T1"),
        ("channel_id", channel),
        ("channel_name", "ops"),
        ("user_id", "UONCALL"),
        ("user_name", "oncall"),
        ("command", command),
        ("text", text),
        ("response_url", &bot.slack.response_url("cmd1")),
        ("trigger_id", "1.2.3"),
    ])
    .unwrap()
}

pub fn event(event_id: &str, event: Value) -> Value {
    json!({"token": "unused", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
        "event_id": event_id, "event_time": 1, "event": event})
}

/// All the text of a message's blocks.
pub fn text_of(body: &Value) -> String {
    body["blocks"].as_array().unwrap().iter().map(|b| b.to_string()).collect::<Vec<_>>().join("\n")
}

/// The final answer: the update of `ts` whose first block is the header.
fn final_update<'a>(calls: &'a [Call], ts: &str) -> Option<&'a Call> {
    calls.iter().find(|c| c.method == "chat.update" && c.body["ts"] == ts && c.body["blocks"][0]["type"] == "header")
}

/// Every call to Slack until the answer is there with its context file.
async fn answered_with_its_context(bot: &Bot) -> Vec<Call> {
    bot.slack
        .until(WAIT, "the answer and the context file", |calls| {
            calls.iter().any(|c| c.method == "files.completeUploadExternal")
        })
        .await
}

fn first_post(calls: &[Call]) -> &Call {
    calls.iter().find(|c| c.method == "chat.postMessage" && c.status == 200).expect("a message was posted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_verified_before_anything_is_parsed() {
    let bot = bot(SlackMode::Http, Duration::from_millis(1)).await;
    // Slack's published vector is right, but five minutes have long passed: stale.
    let response = signed(
        &bot,
        "/slack/commands",
        "application/x-www-form-urlencoded",
        VECTOR_BODY,
        VECTOR_TIMESTAMP,
        Some(VECTOR_SIGNATURE),
    )
    .await;
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("away from now"));
    assert_eq!(signature::sign(SIGNING_SECRET.as_bytes(), VECTOR_TIMESTAMP, VECTOR_BODY.as_bytes()), VECTOR_SIGNATURE);

    let form = "application/x-www-form-urlencoded";
    let body = command_body(&bot, "/diagnose", "imagepull", CHANNEL);
    let fresh = now();
    // Well past the five minutes allowed, so a slow run cannot bring it back inside them.
    let future = (jiff::Timestamp::now().as_second() + 400).to_string();
    let forged = signature::sign(b"not the signing secret", &fresh, body.as_bytes());
    let valid = signature::sign(SIGNING_SECRET.as_bytes(), &fresh, body.as_bytes());
    for (what, path, content_type, sent, timestamp, sig) in [
        ("forged", "/slack/commands", form, body.clone(), fresh.clone(), Some(forged.as_str())),
        ("future-dated", "/slack/commands", form, body.clone(), future, None),
        (
            "body-tampered",
            "/slack/commands",
            form,
            body.replace("imagepull", "kube-system"),
            fresh.clone(),
            Some(valid.as_str()),
        ),
        ("unsigned", "/slack/commands", form, body.clone(), fresh.clone(), Some("")),
        // Not even JSON: a 401, not a 400, because nothing is parsed before the signature is checked.
        (
            "forged garbage event",
            "/slack/events",
            "application/json",
            "{not json".to_string(),
            fresh.clone(),
            Some(forged.as_str()),
        ),
        (
            "forged interaction",
            "/slack/interactivity",
            form,
            "payload=%7B%7D".to_string(),
            fresh.clone(),
            Some(forged.as_str()),
        ),
    ] {
        let response = signed(&bot, path, content_type, &sent, &timestamp, sig).await;
        assert_eq!(response.status(), 401, "{what}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bot.slack.calls("chat.postMessage").is_empty(), "a refused request started no work");

    let challenge = json!({"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let response = signed(&bot, "/slack/events", "application/json", &challenge, &now(), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let response = signed(&bot, "/slack/commands", form, "ssl_check=1&token=x", &now(), None).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_is_acknowledged_at_once_and_answered_in_a_new_thread() {
    let bot = bot(SlackMode::Http, Duration::from_millis(600)).await;
    let body = command_body(&bot, "/diagnose", "imagepull", CHANNEL);
    let started = Instant::now();
    let response = signed(&bot, "/slack/commands", "application/x-www-form-urlencoded", &body, &now(), None).await;
    let acked = started.elapsed();
    assert_eq!(response.status(), 200);
    let ack: Value = response.json().await.unwrap();
    assert!(acked < Duration::from_millis(100), "acknowledged in {acked:?}");
    assert_eq!(ack["response_type"], "ephemeral");
    assert_eq!(ack["text"], "Diagnosing imagepull…");

    let calls = answered_with_its_context(&bot).await;
    let root = first_post(&calls);
    assert_eq!(root.body["channel"], CHANNEL);
    assert!(root.body.get("thread_ts").is_none(), "the answer starts a thread");
    let root_ts = root.ts.clone().unwrap();
    let answer = final_update(&calls, &root_ts).expect("the placeholder was replaced by the answer");
    let text = text_of(&answer.body);
    assert!(text.contains("Diagnosis of namespace imagepull"), "{text}");
    assert!(text.contains("The pod is failing"), "the model's answer: {text}");
    assert!(text.contains("ImagePullBackOff") && text.contains("checkout-6c9d8e7f1-k2v9d"), "findings: {text}");
    assert!(text.contains("*read-only*") && text.contains("```kubectl "), "commands: {text}");
    assert!(text.contains("model recorded · prompt diagnose@"), "footer: {text}");
    // The top-level text (notifications, fallbacks) is escaped exactly as the blocks are, in every call.
    for call in calls.iter().filter(|c| c.method.starts_with("chat.")) {
        let top = call.body["text"].as_str().unwrap_or_default();
        for raw in ["<!channel>", "<@U0HOSTILE>", "<https://evil.example|", "@here"] {
            assert!(!top.contains(raw) && !text.contains(raw), "{raw} unescaped in {}: {top}", call.method);
        }
    }
    let top = answer.body["text"].as_str().unwrap();
    assert!(
        top.contains("&lt;!channel&gt; &lt;@U0HOSTILE&gt; &lt;https://evil.example|https://good.example&gt; &amp;"),
        "{top}"
    );

    // Streaming: progress updates came while tokens arrived, never more than one a second.
    let updates: Vec<&Call> =
        calls.iter().filter(|c| c.method == "chat.update" && c.body["ts"] == root_ts.as_str()).collect();
    assert!(updates.len() >= 2, "at least one progress update before the answer: {}", updates.len());
    let progress: Vec<&&Call> = updates.iter().filter(|c| c.body["blocks"][0]["type"] != "header").collect();
    for pair in progress.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(950), "two progress updates {gap:?} apart");
    }

    // The context the model read, attached in the thread.
    let complete = calls.iter().find(|c| c.method == "files.completeUploadExternal").unwrap();
    assert_eq!(complete.body["channel_id"], CHANNEL);
    assert_eq!(complete.body["thread_ts"], root_ts.as_str());
    let uploaded = calls.iter().find(|c| c.method == "upload").unwrap();
    let context = &bot.model.requests.lock().unwrap()[0];
    let sent = context["messages"].to_string();
    assert!(
        sent.contains(uploaded.body["content"].as_str().unwrap().lines().next().unwrap()),
        "the file is what the model read"
    );
    assert!(bot.slack.violations().is_empty(), "{:#?}", bot.slack.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_channel_the_answer_goes_through_the_response_url() {
    let bot = bot(SlackMode::Http, Duration::from_millis(1)).await;
    bot.slack.fake.not_in.lock().unwrap().push("CPRIVATE".into());
    let body = command_body(&bot, "/ask", "what is failing? -n crashloop", "CPRIVATE");
    let response = signed(&bot, "/slack/commands", "application/x-www-form-urlencoded", &body, &now(), None).await;
    assert_eq!(response.json::<Value>().await.unwrap()["text"], "Looking into crashloop…");
    let calls =
        bot.slack.until(WAIT, "a response_url answer", |calls| calls.iter().any(|c| c.method == "response_url")).await;
    let answer = calls.iter().find(|c| c.method == "response_url").unwrap();
    assert_eq!(answer.body["id"], "cmd1");
    assert_eq!(answer.body["body"]["response_type"], "in_channel");
    assert!(text_of(&answer.body["body"]).contains("Answer about namespace crashloop"));
    assert!(bot.slack.violations().is_empty(), "{:#?}", bot.slack.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_in_an_alert_thread_is_scoped_to_the_alert_and_follow_ups_continue_it() {
    let bot = bot(SlackMode::Http, Duration::from_millis(1)).await;
    // Alertmanager's message, as its Slack receiver posts it.
    let alert_ts = bot.slack.post(json!({
        "type": "message", "subtype": "bot_message", "bot_id": "BALERTMANAGER", "text": "",
        "attachments": [{
            "title": "[FIRING:1] KubePodCrashLooping (payments-api-7b8d9c6f5-qw7zt)",
            "text": "*Alert:* Pod is crash looping. - `critical`\n*Details:*\n  • *alertname:* `KubePodCrashLooping`\n  • *namespace:* `crashloop`\n  • *pod:* `payments-api-7b8d9c6f5-qw7zt`\n  • *job:* `kube-state-metrics`",
        }]
    }));
    let mention = |id: &str, text: &str, ts: &str| {
        event(
            id,
            json!({"type": "app_mention", "user": "UONCALL",
        "text": text, "ts": ts, "thread_ts": alert_ts, "channel": CHANNEL, "event_ts": ts}),
        )
    };
    let asked = bot.slack.post(
        json!({"type": "message", "user": "UONCALL", "text": format!("<@{BOT_USER}> diagnose"), "thread_ts": alert_ts}),
    );
    let delivery = mention("Ev1", &format!("<@{BOT_USER}> diagnose"), &asked).to_string();
    let response = signed(&bot, "/slack/events", "application/json", &delivery, &now(), None).await;
    assert_eq!(response.status(), 200);

    let calls = bot
        .slack
        .until(WAIT, "the answer in the alert's thread", |calls| {
            calls.iter().any(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header")
        })
        .await;
    let placeholder = first_post(&calls);
    assert_eq!(placeholder.body["thread_ts"], alert_ts.as_str(), "answered in the alert's thread");
    let answer = calls.iter().find(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header").unwrap();
    let text = text_of(&answer.body);
    assert!(text.contains("Diagnosis of namespace crashloop"), "{text}");
    assert!(text.contains("namespace and object from the alert"), "{text}");
    let request = bot.model.requests.lock().unwrap()[0]["messages"].to_string();
    assert!(request.contains("payments-api-7b8d9c6f5-qw7zt"), "the model read the alert's pod");
    assert!(request.contains("namespace crashloop"), "the prompt names the alert's namespace");

    // A follow-up without a mention, in the same thread: answered with the thread's history.
    let follow = bot
        .slack
        .post(json!({"type": "message", "user": "UONCALL", "text": "what do the logs say?", "thread_ts": alert_ts}));
    let delivery = event(
        "Ev2",
        json!({"type": "message", "channel_type": "channel", "user": "UONCALL",
        "text": "what do the logs say?", "ts": follow, "thread_ts": alert_ts, "channel": CHANNEL}),
    )
    .to_string();
    signed(&bot, "/slack/events", "application/json", &delivery, &now(), None).await;
    bot.slack
        .until(WAIT, "the follow-up's answer", |calls| {
            calls.iter().filter(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header").count() == 2
        })
        .await;
    let requests = bot.model.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let second = requests[1]["messages"].to_string();
    assert!(second.contains("Earlier in this conversation"), "the history was sent: {second}");
    assert!(second.contains("Q: diagnose") && second.contains("The pod is failing"), "{second}");
    assert!(second.contains("what do the logs say?") && second.contains("namespace crashloop"));

    // Bots, the bot itself and edits start nothing.
    let before = bot.model.requests.lock().unwrap().len();
    for (id, e) in [
        (
            "Ev3",
            json!({"type": "message", "subtype": "bot_message", "bot_id": "BOTHER", "text": "diagnose", "ts": "1.1", "thread_ts": alert_ts, "channel": CHANNEL}),
        ),
        (
            "Ev4",
            json!({"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "text": "hello", "ts": "1.2", "thread_ts": alert_ts, "channel": CHANNEL}),
        ),
        ("Ev5", json!({"type": "message", "subtype": "message_changed", "text": "", "ts": "1.3", "channel": CHANNEL})),
    ] {
        signed(&bot, "/slack/events", "application/json", &event(id, e).to_string(), &now(), None).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bot.model.requests.lock().unwrap().len(), before, "no bot message was answered");
    assert!(bot.slack.violations().is_empty(), "{:#?}", bot.slack.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_is_answered_once() {
    let bot = bot(SlackMode::Http, Duration::from_millis(1)).await;
    let ts = bot
        .slack
        .post(json!({"type": "message", "user": "UONCALL", "text": format!("<@{BOT_USER}> diagnose imagepull")}));
    let delivery = event(
        "EvSame",
        json!({"type": "app_mention", "user": "UONCALL", "text": format!("<@{BOT_USER}> diagnose imagepull"),
        "ts": ts, "channel": CHANNEL, "event_ts": ts}),
    )
    .to_string();
    signed(&bot, "/slack/events", "application/json", &delivery, &now(), None).await;
    // Slack's retry of the same event, as when the first acknowledgement was late.
    let retry = crate::common::http_client()
        .post(format!("{}/slack/events", bot.url))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", now())
        .header("x-slack-signature", signature::sign(SIGNING_SECRET.as_bytes(), &now(), delivery.as_bytes()))
        .header("x-slack-retry-num", "1")
        .header("x-slack-retry-reason", "http_timeout")
        .body(delivery.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 200, "a retry is acknowledged too, so Slack stops retrying");
    bot.slack.until(WAIT, "the answer", |calls| calls.iter().any(|c| c.method == "files.completeUploadExternal")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bot.slack.calls("chat.postMessage").len(), 1, "one placeholder, one answer");
    assert_eq!(bot.model.requests.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_call_waits_out_retry_after() {
    let bot = bot(SlackMode::Http, Duration::from_millis(1)).await;
    *bot.slack.fake.rate_limit.lock().unwrap() = 1;
    let body = command_body(&bot, "/diagnose", "", "CPAYMENTS");
    let ack: Value = signed(&bot, "/slack/commands", "application/x-www-form-urlencoded", &body, &now(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ack["text"], "Diagnosing crashloop…", "the channel's default namespace");
    let calls = bot
        .slack
        .until(WAIT, "the answer", |calls| {
            calls.iter().any(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header")
        })
        .await;
    let posts: Vec<&Call> = calls.iter().filter(|c| c.method == "chat.postMessage").collect();
    assert_eq!(posts[0].status, 429);
    assert_eq!(posts[1].status, 200);
    let waited = posts[1].at - posts[0].at;
    assert!(waited >= Duration::from_millis(990), "retried after {waited:?}, before Retry-After: 1 passed");
    assert_eq!(posts.len(), 2, "posted once the limit passed, and only once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_acknowledges_envelopes_and_reconnects() {
    let bot = bot(SlackMode::Socket, Duration::from_millis(1)).await;
    let mut socket = bot.slack.socket(Duration::from_secs(5)).await;
    socket.envelope(json!({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}}));

    socket.envelope(json!({"envelope_id": "env-1", "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"command": "/diagnose", "text": "imagepull", "user_id": "UONCALL", "channel_id": CHANNEL,
            "response_url": bot.slack.response_url("sm"), "trigger_id": "1.2"}}));
    let ack = socket.next().await;
    assert_eq!(ack["envelope_id"], "env-1");
    assert_eq!(ack["payload"]["text"], "Diagnosing imagepull…");
    bot.slack
        .until(WAIT, "the slash command's answer", |calls| {
            calls.iter().any(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header")
        })
        .await;

    let ts = bot
        .slack
        .post(json!({"type": "message", "user": "UONCALL", "text": format!("<@{BOT_USER}> diagnose crashloop")}));
    let delivery = event(
        "EvSock",
        json!({"type": "app_mention", "user": "UONCALL", "text": format!("<@{BOT_USER}> diagnose crashloop"),
        "ts": ts, "channel": CHANNEL, "event_ts": ts}),
    );
    let envelope = json!({"envelope_id": "env-2", "type": "events_api", "accepts_response_payload": false, "retry_attempt": 0, "payload": delivery});
    socket.envelope(envelope.clone());
    assert_eq!(socket.next().await, json!({"envelope_id": "env-2"}));
    // The same event again, as Slack redelivers it: acknowledged, not answered twice.
    let mut again = envelope;
    again["envelope_id"] = json!("env-3");
    again["retry_attempt"] = json!(1);
    socket.envelope(again);
    assert_eq!(socket.next().await, json!({"envelope_id": "env-3"}));
    bot.slack
        .until(WAIT, "the mention's answer", |calls| {
            calls.iter().filter(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header").count() == 2
        })
        .await;

    // Slack refreshes the connection: kubechat opens a new one at once.
    socket.envelope(json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "fake"}}));
    let started = Instant::now();
    let socket = bot.slack.socket(Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_millis(900), "a refresh reconnects at once");
    socket.envelope(json!({"type": "hello", "num_connections": 1}));
    // The connection drops without notice: kubechat reconnects after its backoff.
    socket.send.send(tokio_tungstenite::tungstenite::Message::Close(None)).unwrap();
    let started = Instant::now();
    let _third = bot.slack.socket(Duration::from_secs(10)).await;
    assert!(started.elapsed() >= Duration::from_millis(900), "a lost connection backs off before reconnecting");
    assert_eq!(bot.slack.calls("apps.connections.open").len(), 3);
    assert_eq!(bot.model.requests.lock().unwrap().len(), 2, "the redelivered event was answered once");
    assert!(bot.slack.violations().is_empty(), "{:#?}", bot.slack.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_askers_see_their_place_and_mistakes_get_a_helpful_reply() {
    let bot = bot_with(SlackMode::Http, Duration::from_millis(400), |slack, llm| {
        slack.max_pending = 2;
        llm.concurrency = 1;
    })
    .await;
    let form = "application/x-www-form-urlencoded";
    let first = command_body(&bot, "/diagnose", "imagepull", CHANNEL);
    let second = command_body(&bot, "/diagnose", "crashloop", CHANNEL);
    let third = command_body(&bot, "/diagnose", "oom", CHANNEL);
    let mut acks = Vec::new();
    for body in [first, second, third] {
        acks.push(signed(&bot, "/slack/commands", form, &body, &now(), None).await.json::<Value>().await.unwrap());
    }
    assert_eq!(acks[0]["text"], "Diagnosing imagepull…");
    assert_eq!(acks[1]["text"], "Diagnosing crashloop…");
    let busy = acks[2]["text"].as_str().unwrap();
    assert!(busy.starts_with("kubechat is busy with 2 questions already") && busy.contains("request "), "{busy}");
    // The model answers one at a time here: the second asker sees their place while the first is answered.
    let calls = bot
        .slack
        .until(WAIT, "both answers", |calls| {
            calls.iter().filter(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header").count() == 2
        })
        .await;
    let waiting = calls.iter().any(|c| c.method == "chat.update" && c.body.to_string().contains("number 1 in line"));
    assert!(waiting, "the waiting asker was told their place");

    // A namespace that does not exist: the user is told, with the closest name.
    let body = command_body(&bot, "/diagnose", "imagepul", CHANNEL);
    signed(&bot, "/slack/commands", form, &body, &now(), None).await;
    let calls = bot
        .slack
        .until(WAIT, "the failure", |calls| {
            calls.iter().any(|c| c.body.to_string().contains("Sorry, I could not answer"))
        })
        .await;
    let failure = calls.iter().find(|c| c.body.to_string().contains("Sorry, I could not answer")).unwrap();
    let text = text_of(&failure.body);
    assert!(text.contains("namespace imagepul does not exist; did you mean imagepull?"), "{text}");
    assert!(text.contains("request `"), "{text}");
    // Help, for a bare /ask.
    let body = command_body(&bot, "/ask", "", CHANNEL);
    let help: Value = signed(&bot, "/slack/commands", form, &body, &now(), None).await.json().await.unwrap();
    assert!(help["blocks"][0]["text"]["text"].as_str().unwrap().contains("/diagnose payments"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubechat_serve_connects_to_slack_in_socket_mode_by_default() {
    let slack = FakeSlack::start().await;
    let no_model = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let serve = |bot_token: &str| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kubechat"));
        command
            .arg("serve")
            .env("KUBECHAT_LISTEN", "127.0.0.1:0")
            .env("KUBECHAT_DUMP", crate::common::SCENARIOS)
            .env("KUBECHAT_PROMPTS", concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"))
            .env("KUBECHAT_LLM_URL", format!("http://127.0.0.1:{no_model}"))
            .env("KUBECHAT_SLACK_ENABLED", "true")
            .env("KUBECHAT_SLACK_BOT_TOKEN", bot_token)
            .env("KUBECHAT_SLACK_APP_TOKEN", APP_TOKEN)
            .env("KUBECHAT_SLACK_API_URL", slack.api_url())
            .env("KUBECHAT_ACCESS_SLACK", format!("[{{channel: {CHANNEL}, namespaces: [oom]}}]"))
            .env("KUBECHAT_METRICS_LISTEN", "off")
            .stdout(std::process::Stdio::null());
        command
    };
    let refused = serve("xoxb-revoked").output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("cannot connect to Slack") && stderr.contains("invalid_auth"), "{stderr}");
    slack.fake.violations.lock().unwrap().clear();

    let _kubechat = crate::common::KillOnDrop(serve(BOT_TOKEN).stderr(std::process::Stdio::null()).spawn().unwrap());
    let mut socket = slack.socket(Duration::from_secs(20)).await;
    socket.envelope(json!({"type": "hello", "num_connections": 1}));
    socket.envelope(json!({"envelope_id": "e1", "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"command": "/diagnose", "text": "oom", "user_id": "UONCALL", "channel_id": CHANNEL,
            "response_url": slack.response_url("x"), "trigger_id": "1"}}));
    let ack = socket.next().await;
    assert_eq!(ack["payload"]["text"], "Diagnosing oom…");
    let calls = slack
        .until(WAIT, "the answer without a model", |calls| {
            calls.iter().any(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header")
        })
        .await;
    let answer = calls.iter().find(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header").unwrap();
    let text = text_of(&answer.body);
    assert!(text.contains("OOMKilled") && text.contains("without the model"), "{text}");
    assert!(slack.violations().is_empty(), "{:#?}", slack.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_64_kib_is_refused_before_its_signature_is_checked() {
    let bot = bot(SlackMode::Http, Duration::from_millis(1)).await;
    let http = crate::common::http_client();
    for route in ["/slack/events", "/slack/commands", "/slack/interactivity"] {
        let response = http
            .post(format!("{}{route}", bot.url))
            .header("content-type", "application/json")
            .header("x-slack-signature", "v0=00")
            .header("x-slack-request-timestamp", "0")
            .body(vec![b'a'; 100 * 1024])
            .send()
            .await;
        // Over 64 KiB: refused unread (a 401 would mean it was read to check its signature). The 413 comes before the body is sent whole, so the server may close while the client still writes.
        match response {
            Ok(response) => assert_eq!(response.status(), 413, "{route}"),
            Err(e) => assert!(format!("{e:?}").contains("BodyWrite"), "{route}: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_the_corpus_reaches_slacks_messages_or_files() {
    // The secrets namespace (the corpus in its logs, events and conditions), a model that repeats the corpus.
    let model = recorded_slowly("text/event-stream", crate::common::corpus_stream(), Duration::from_millis(1)).await;
    let model_url = model.url.clone();
    let bot = bot_with_policy(
        SlackMode::Http,
        Duration::from_millis(1),
        |_, _| {},
        move |config| {
            config.llm.url = model_url;
        },
    )
    .await;
    let body = command_body(&bot, "/diagnose", "secrets", CHANNEL);
    let response = signed(&bot, "/slack/commands", "application/x-www-form-urlencoded", &body, &now(), None).await;
    assert_eq!(response.status(), 200);
    let calls = answered_with_its_context(&bot).await;
    let root = first_post(&calls);
    let answer = final_update(&calls, root.ts.as_ref().unwrap()).expect("the answer");
    assert!(text_of(&answer.body).contains("[REDACTED:"), "{}", text_of(&answer.body));
    assert!(calls.iter().any(|c| c.method == "upload"), "the context file was uploaded");
    for call in &calls {
        crate::common::assert_no_secret(&call.body.to_string(), &format!("Slack's {}", call.method));
    }
    drop(model);
}

/// A model stream that answers `text` in one piece.
fn streamed(text: &str) -> String {
    let chunk = json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]});
    let end = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    format!("data: {chunk}\n\ndata: {end}\n\ndata: [DONE]\n\n")
}

/// Where `lines` are found in `text`, each after the one before; panics on one lost or out of order.
fn in_order(text: &str, lines: &[String], what: &str) {
    let mut at = 0;
    for line in lines {
        match text[at..].find(line.as_str()) {
            Some(found) => at += found + line.len(),
            None => panic!("{what}: {line:?} is lost, or comes before the line it follows"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_answers_stay_within_slacks_limits_and_arrive_whole_and_in_order() {
    let replay = serve(scenarios(), &[]).await;
    // 12 KB: the answer continues in the thread. 200 KB: the whole of it in `answer.md`, or, when the app may not
    // upload files, in the thread after all.
    for (size, may_upload) in [(12_000, true), (200_000, true), (200_000, false)] {
        let lines: Vec<String> =
            (0..).map(|i| format!("{i:05} the answer goes on about the pod")).take(size / 38).collect();
        let text = lines.join("\n");
        let model = recorded_slowly("text/event-stream", streamed(&text), Duration::from_millis(1)).await;
        let bot = bot_with_model(&replay.url(), SlackMode::Http, model, |_, _| {}, |_| {}).await;
        *bot.slack.fake.no_files.lock().unwrap() = !may_upload;
        let body = command_body(&bot, "/diagnose", "imagepull", CHANNEL);
        let response = signed(&bot, "/slack/commands", "application/x-www-form-urlencoded", &body, &now(), None).await;
        assert_eq!(response.status(), 200);
        // The context file is the last thing kubechat sends.
        let calls = bot
            .slack
            .until(WAIT, "the context file", |calls| {
                calls.iter().any(|c| c.method == "files.getUploadURLExternal" && c.body["filename"] == "context.txt")
            })
            .await;
        let what = format!("{size} characters, uploads {}", if may_upload { "allowed" } else { "refused" });
        // A message over Slack's limits (and so refused), or a JSON call without its charset, is a violation.
        assert!(bot.slack.violations().is_empty(), "{what}: {:#?}", bot.slack.violations());
        let root = first_post(&calls).ts.clone().unwrap();
        let answer = final_update(&calls, &root).expect("the placeholder was replaced by the answer");
        let mut messages = vec![answer];
        messages
            .extend(calls.iter().filter(|c| c.method == "chat.postMessage" && c.body["thread_ts"] == root.as_str()));
        let told: String = messages
            .iter()
            .flat_map(|m| m.body["blocks"].as_array().unwrap())
            .filter_map(|b| b["text"]["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let file = calls.iter().find(|c| c.method == "files.getUploadURLExternal" && c.body["filename"] == "answer.md");
        match (size, may_upload) {
            (12_000, _) => {
                assert!(file.is_none(), "{what}: a 12 KB answer stays in the thread");
                assert!(messages.len() >= 2, "{what}: more than one message's worth");
                in_order(&told, &lines, &what);
            }
            (_, true) => {
                let uploads: Vec<&Call> = calls.iter().filter(|c| c.method == "upload").collect();
                let whole = uploads.iter().find(|c| c.body["content"] == text.as_str());
                assert!(whole.is_some(), "{what}: answer.md holds the whole answer");
                assert!(told.contains("answer.md") && told.contains(&lines[0]), "{what}: {told:.300}");
            }
            (_, false) => {
                assert!(
                    calls.iter().any(|c| c.method == "files.getUploadURLExternal" && c.body["filename"] == "answer.md")
                );
                assert!(messages.len() > 3, "{what}: the rest of the answer followed in the thread");
                in_order(&told, &lines, &what);
            }
        }
    }

    // Through a slash command's response URL (a channel kubechat is not in), which takes five messages: the answer's
    // beginning, in order, and a last message saying where to get the whole of it.
    let lines: Vec<String> = (0..5000).map(|i| format!("{i:05} the answer goes on about the pod")).collect();
    let model = recorded_slowly("text/event-stream", streamed(&lines.join("\n")), Duration::from_millis(1)).await;
    let bot = bot_with_model(&replay.url(), SlackMode::Http, model, |_, _| {}, |_| {}).await;
    bot.slack.fake.not_in.lock().unwrap().push("CPRIVATE".into());
    let body = command_body(&bot, "/diagnose", "imagepull", "CPRIVATE");
    signed(&bot, "/slack/commands", "application/x-www-form-urlencoded", &body, &now(), None).await;
    bot.slack
        .until(WAIT, "five responses", |calls| calls.iter().filter(|c| c.method == "response_url").count() >= 5)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let responses: Vec<Value> = bot.slack.calls("response_url").into_iter().map(|c| c.body["body"].clone()).collect();
    assert_eq!(responses.len(), 5, "a response URL takes five messages");
    assert!(bot.slack.violations().is_empty(), "{:#?}", bot.slack.violations());
    let told: String = responses[..4].iter().map(text_of).collect::<Vec<_>>().join("\n");
    let first = told.find(&lines[0]).expect("the answer begins the first response");
    in_order(&told[first..], &lines[..40], "through the response URL");
    assert!(text_of(&responses[4]).contains("goes on longer than a slash command"), "{}", text_of(&responses[4]));
}
