//! Shutting down without losing answers: `kubechat serve` as a process, in Slack Socket Mode against the fake Slack,
//! with a model that streams slowly, is sent SIGTERM in the middle of an answer. `/readyz` turns 503 at once, the
//! Socket Mode connection closes (Slack sends the next envelopes to another connection), and the answer arrives whole
//! before the process exits; past `drain_seconds`, the asker gets a note instead of silence, and the audit line says
//! `interrupted`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Recorded, recorded_slowly};
use crate::fake_slack::{APP_TOKEN, BOT_TOKEN, CHANNEL, Call, FakeSlack};

const WAIT: Duration = Duration::from_secs(30);

/// The signing secret `serve_in` gives kubechat, for Slack's HTTP mode.
pub const SIGNING_SECRET: &str = "5d1c0e0c8b6f4f0f9a3e2d1c0b9a8f7e";

pub struct Serve {
    pub child: Child,
    pub url: String,
    audit: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill -TERM");
    }

    /// Waits for the process to exit; how long it took.
    pub async fn exited(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "kubechat exited with {status}: {}", self.log());
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "kubechat still running {within:?} after SIGTERM: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn audit(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

/// `kubechat serve` in Socket Mode against `slack`, asking `model`, reading the scenario dump.
fn serve(slack: &FakeSlack, model: &Recorded, drain_seconds: u64) -> Serve {
    serve_with(slack, model, &format!("dump: {}\ndrain_seconds: {drain_seconds}\n", crate::common::SCENARIOS))
}

/// The same, with `settings` (YAML lines) saying what to read and how to behave.
pub fn serve_with(slack: &FakeSlack, model: &Recorded, settings: &str) -> Serve {
    serve_in(slack, model, settings, "socket")
}

/// The same, in Slack's `mode` (socket or http).
pub fn serve_in(slack: &FakeSlack, model: &Recorded, settings: &str, mode: &str) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let (config, audit, log) = (dir.path().join("kubechat.yaml"), dir.path().join("audit.log"), dir.path().join("log"));
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:1\n{settings}prompts: {}\nllm:\n  url: {}\n  api: openai\n  model: test\nslack:\n  enabled: true\n  mode: {mode}\n  api_url: {}\nhttp:\n  auth: open\naccess:\n  default: [\"*\"]\naudit:\n  path: {}\nmetrics:\n  listen: \"off\"\n",
            concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"),
            model.url,
            slack.api_url(),
            audit.display(),
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_kubechat"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("KUBECHAT_LISTEN", format!("127.0.0.1:{port}"))
        .env("KUBECHAT_SLACK_BOT_TOKEN", BOT_TOKEN)
        .env("KUBECHAT_SLACK_APP_TOKEN", APP_TOKEN)
        .env("KUBECHAT_SLACK_SIGNING_SECRET", SIGNING_SECRET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Serve { child, url: format!("http://127.0.0.1:{port}"), audit, log, _dir: dir }
}

pub async fn readyz(url: &str) -> Option<u16> {
    let response = crate::common::http_client().get(format!("{url}/readyz")).send().await.ok()?;
    Some(response.status().as_u16())
}

fn answered(calls: &[Call]) -> bool {
    calls.iter().any(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header")
}

/// Asks `/diagnose crashloop` over the Socket Mode connection and waits until the answer is streaming.
async fn ask_and_wait_for_the_stream(slack: &FakeSlack, serve: &Serve) -> crate::fake_slack::Socket {
    let mut socket = slack.socket(WAIT).await;
    socket.envelope(json!({"type": "hello", "num_connections": 1}));
    socket.envelope(json!({"envelope_id": "env-1", "type": "slash_commands", "accepts_response_payload": true,
        "payload": {"command": "/diagnose", "text": "crashloop", "user_id": "UONCALL", "channel_id": CHANNEL,
            "response_url": slack.response_url("drain"), "trigger_id": "1.2"}}));
    assert_eq!(socket.next().await["payload"]["text"], "Diagnosing crashloop…", "{}", serve.log());
    slack
        .until(WAIT, "the answer streaming", |calls| {
            calls.iter().any(|c| c.method == "chat.update" && c.body.to_string().contains("The pod is failing"))
        })
        .await;
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_answer_finishes_the_answer_then_exits() {
    let slack = FakeSlack::start().await;
    // About 7 × 400 ms: still streaming when SIGTERM comes.
    let model = recorded_slowly("text/event-stream", crate::slack::answer_stream(), Duration::from_millis(400)).await;
    let mut serve = serve(&slack, &model, 60);
    let mut socket = ask_and_wait_for_the_stream(&slack, &serve).await;
    assert!(!answered(&slack.calls("chat.update")), "the answer is not finished before SIGTERM");
    assert_eq!(readyz(&serve.url).await, Some(200));

    serve.terminate();
    let started = Instant::now();
    // Out of the Service at once.
    loop {
        if readyz(&serve.url).await == Some(503) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "/readyz still not 503 after SIGTERM: {}", serve.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new question is refused as restarting, for the client to ask again elsewhere.
    let refused = crate::common::http_client()
        .post(format!("{}/diagnose", serve.url))
        .json(&json!({"namespace": "oom"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().starts_with("kubechat is restarting"), "{body}");
    // No more envelopes taken: the connection closes, and kubechat opens no other.
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.received.recv()).await;
    assert!(matches!(closed, Ok(None)), "the Socket Mode connection closes on SIGTERM: {closed:?}");
    let took = serve.exited(WAIT).await;
    assert!(answered(&slack.calls("chat.update")), "the answer was posted whole before the exit: {}", serve.log());
    assert!(took > Duration::from_millis(300), "kubechat waited for the answer ({took:?})");
    assert_eq!(slack.calls("apps.connections.open").len(), 1, "no new connection while shutting down");
    let audit = serve.audit();
    let outcomes: Vec<(&str, &str)> =
        audit.iter().map(|a| (a["outcome"].as_str().unwrap(), a["reason"].as_str().unwrap_or(""))).collect();
    assert_eq!(outcomes, [("busy", "shutting down"), ("answered", "")], "{audit:?}");
    assert!(slack.violations().is_empty(), "{:#?}", slack.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_past_the_drain_timeout_ends_with_a_note_not_silence() {
    let slack = FakeSlack::start().await;
    // About 7 × 3 s: far longer than the one second the drain allows.
    let model = recorded_slowly("text/event-stream", crate::slack::answer_stream(), Duration::from_secs(3)).await;
    let mut serve = serve(&slack, &model, 1);
    let _socket = ask_and_wait_for_the_stream(&slack, &serve).await;

    serve.terminate();
    let took = serve.exited(Duration::from_secs(15)).await;
    assert!(took < Duration::from_secs(12), "the drain timeout bounds the shutdown ({took:?})");
    let updates = slack.calls("chat.update");
    let last = updates.last().unwrap();
    let text = last.body.to_string();
    assert!(text.contains("kubechat restarted before it finished this answer; ask again"), "{text}");
    assert!(!answered(&updates), "the answer never finished");
    let audit = serve.audit();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["outcome"], "interrupted", "not abandoned: the asker did not leave; {audit:?}");
    assert!(serve.log().contains("answers still running after 1 s"), "{}", serve.log());
    assert!(slack.violations().is_empty(), "{:#?}", slack.violations());
}
