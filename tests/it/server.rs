//! `kubechat serve`'s HTTP API against the replay server and a recorded model stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kubechat::llm::{Api, Llm, LlmConfig};
use kubechat::prompt::PromptStore;
use kubechat::server::AppState;
use serde_json::{Value, json};

use crate::common::{Recorded, client, recorded_slowly, scenarios, serve};

/// A recorded OpenAI-compatible stream whose last chunk comes `pause` after the first tokens.
fn answer_stream() -> String {
    let events = [
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"The image tag does not exist.\n"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"Check it with `kubectl describe pod -n imagepull checkout-6c9d8e7f1-k2v9d`.\n"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":900,"completion_tokens":30,"total_tokens":930}}"#,
    ];
    events.iter().map(|e| format!("data: {e}\n\n")).collect::<String>() + "data: [DONE]\n\n"
}

struct App {
    url: String,
    _model: Recorded,
    _replay: kubechat::replay::Server,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn app(pause: Duration) -> App {
    let model = recorded_slowly("text/event-stream", answer_stream(), pause).await;
    let replay = serve(scenarios(), &[]).await;
    let prompts =
        Arc::new(PromptStore::open(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"))).unwrap());
    let config =
        LlmConfig { url: model.url.clone(), api: Api::Openai, model: "recorded".into(), ..LlmConfig::default() };
    let state = AppState::new(
        client(&replay).await,
        prompts,
        Llm::new(config).unwrap(),
        Default::default(),
        "imagepull".into(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(kubechat::server::serve(listener, state, async {
        let _ = rx.await;
    }));
    App { url, _model: model, _replay: replay, shutdown: Some(tx), task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_returns_the_seed_fields_and_the_new_ones() {
    let app = app(Duration::from_millis(1)).await;
    let http = reqwest::Client::new();
    let response =
        http.post(format!("{}/diagnose", app.url)).json(&json!({"namespace": "imagepull"})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let answer: Value = response.json().await.unwrap();
    for field in ["answer", "model", "context", "findings", "commands", "prompt", "usage", "truncated", "degraded"] {
        assert!(answer.get(field).is_some(), "{field} missing: {answer}");
    }
    assert_eq!(answer["model"], "recorded");
    assert!(answer["answer"].as_str().unwrap().starts_with("The image tag does not exist."));
    assert_eq!(answer["findings"][0]["reason"], "ImagePullBackOff");
    assert_eq!(answer["prompt"]["name"], "diagnose");
    assert_eq!(answer["usage"]["prompt_tokens"], 900);
    assert!(answer["degraded"].is_null());
    assert!(answer["context"].as_str().unwrap().contains("checkout:2.3.1-rc: not found"));

    let asked: Value = http
        .post(format!("{}/ask", app.url))
        .json(&json!({"question": "why is orders not starting?", "namespace": "config"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(asked["prompt"]["name"], "ask");
    assert_eq!(asked["findings"][0]["reason"], "CreateContainerConfigError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_tokens_before_the_answer_is_complete() {
    let app = app(Duration::from_millis(400)).await;
    let response = reqwest::Client::new()
        .post(format!("{}/diagnose", app.url))
        .header("accept", "text/event-stream")
        .json(&json!({"namespace": "imagepull"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let started = Instant::now();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut first_token = None;
    let mut answer_at = None;
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if first_token.is_none() && text.contains("event: token") {
            first_token = Some(started.elapsed());
        }
        if text.contains("event: answer") {
            answer_at = Some(started.elapsed());
            break;
        }
    }
    let (first_token, answer_at) = (first_token.expect("token events"), answer_at.expect("an answer event"));
    assert!(
        answer_at >= first_token + Duration::from_millis(600),
        "tokens at {first_token:?}, answer at {answer_at:?}"
    );
    let answer_line = text.lines().skip_while(|l| *l != "event: answer").nth(1).unwrap();
    let answer: Value = serde_json::from_str(answer_line.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(answer["findings"][0]["reason"], "ImagePullBackOff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_json_with_a_request_id() {
    let app = app(Duration::from_millis(1)).await;
    let http = reqwest::Client::new();
    let bad = http.post(format!("{}/diagnose", app.url)).body("{not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert!(bad["error"].as_str().unwrap().starts_with("invalid request body"));
    assert!(!bad["request_id"].as_str().unwrap().is_empty());

    let missing: Value = http
        .post(format!("{}/diagnose", app.url))
        .json(&json!({"namespace": "imagepul"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(missing["error"], "namespace imagepul does not exist; did you mean imagepull?");

    let empty = http.post(format!("{}/ask", app.url)).json(&json!({"question": " "})).send().await.unwrap();
    assert_eq!(empty.status(), 400);
    let huge = http
        .post(format!("{}/ask", app.url))
        .body(format!("{{\"question\": \"{}\"}}", "x".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    assert_eq!(http.get(format!("{}/healthz", app.url)).send().await.unwrap().status(), 200);
    let ready: Value = http.get(format!("{}/readyz", app.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["prompts"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_in_flight_finish() {
    let mut app = app(Duration::from_millis(300)).await;
    let http = reqwest::Client::new();
    let request =
        tokio::spawn(http.post(format!("{}/diagnose", app.url)).json(&json!({"namespace": "imagepull"})).send());
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.shutdown.take().unwrap().send(()).unwrap();
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["degraded"].is_null(), "{}", answer["degraded"]);
    (&mut app.task).await.unwrap().unwrap();
}
