//! One answer as every front-end shows it (Slack blocks, the Matrix message, the terminal's text, the JSON view the web
//! chat renders): with the model, without it (the model server down, too slow, overloaded), and refused. Snapshots
//! (insta) keep each rendering in view; `cargo insta review`, or `INSTA_UPDATE=always` and a look at the diff, updates
//! them. Without the model, every scenario's answer still carries the evidence that decides it.

use std::time::Duration;

use kubechat::access::{Asker, Platform, Refusal};
use kubechat::answer::{self, Answer};
use kubechat::llm::{Api, Llm, LlmConfig};
use kubechat::prompt::Prompts;
use kubechat::request::{Intent, Request, Scope};
use kubechat::view::View;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{client, recorded, scenarios, serve};

/// A model server that answers every request with `status` and a JSON error, as llama.cpp's and vLLM's do when
/// their queue is full.
async fn answering_with(status: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 65536];
                let _ = stream.read(&mut buffer).await;
                let body = r#"{"error":{"message":"the server is busy","type":"server_error"}}"#;
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    url
}

/// A model server that accepts and never answers.
async fn silent() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    url
}

/// An OpenAI-compatible stream of `text`, a few words at a time.
fn stream_of(text: &str) -> String {
    let mut out = String::new();
    for piece in text.split_inclusive(' ') {
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": piece}}]});
        out.push_str(&format!("data: {chunk}\n\n"));
    }
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    out
}

const MODEL_ANSWER: &str = "**Root cause:** `payments-api` cannot reach its database: the previous log ends with \
`fatal: could not connect to postgres at payments-db:5432: connection refused`, and the container exits.\n\n\
Check the database's Service and pods:\n\n```\nkubectl get endpoints -n crashloop payments-db\n```\n";

fn llm(url: &str) -> std::sync::Arc<Llm> {
    Llm::new(LlmConfig {
        url: url.to_string(),
        api: Api::Openai,
        model: "mistral".into(),
        num_ctx: 4096,
        answer_tokens: 256,
        first_token_timeout: Duration::from_secs(1),
        ..LlmConfig::default()
    })
    .unwrap()
}

/// The scenarios, served by a replay server, and a client of it.
struct Scenarios {
    _replay: kubechat::replay::Server,
    url: String,
    kube: kube::Client,
    /// When the scenarios were taken: what "now" is to the analyzers, as `--dump` has it.
    taken_at: Option<jiff::Timestamp>,
}

impl Scenarios {
    async fn serve() -> Scenarios {
        let dump = scenarios();
        let taken_at = dump.taken_at;
        let replay = serve(dump, &[]).await;
        let kube = client(&replay).await;
        Scenarios { url: replay.url(), _replay: replay, kube, taken_at }
    }

    /// The diagnosis of `namespace`, asked of the model at `url`; its prompt version and context made fixed, so the
    /// snapshots show the rendering, not the prompt files or the context's wording.
    async fn asked(&self, namespace: &str, url: &str) -> Answer {
        let scope = Scope::parse("default", namespace, None).unwrap();
        let mut facts = kubechat::cluster::read(&self.kube, &scope, &Default::default()).await.unwrap();
        facts.observed_at = self.taken_at;
        let asker = Asker { platform: Platform::Cli, place: None, user: "test".into() };
        let request = Request::new("req-1", asker, Intent::Diagnose, scope, "", Vec::new());
        let mut answer =
            answer::answer(facts, &request, &Prompts::builtin(), &llm(url), |_| {}, |_| {}).await.expect("an answer");
        answer.prompt.version = "0123456789ab".into();
        answer.prompt.revision = None;
        answer.context = "(the context the model read)".into();
        answer
    }
}

/// Every front-end's rendering of one answer, as text to snapshot.
fn renderings(answer: &Answer) -> Vec<(&'static str, String)> {
    let took = Duration::from_millis(4200);
    let footer = kubechat::slack::blocks::Footer { took, request_id: "req-1", scope_note: None };
    let slack = kubechat::slack::blocks::answer(answer, &footer);
    let slack: Vec<Value> = slack.messages.iter().map(|m| json!({"text": m.fallback(), "blocks": m.blocks})).collect();
    let mut json = kubechat::view::json(answer);
    let shown = vec![
        ("slack", serde_json::to_string_pretty(&slack).unwrap()),
        ("terminal", kubechat::view::text(&View::of(answer), took)),
        ("json", serde_json::to_string_pretty(&json["view"].take()).unwrap()),
    ];
    #[cfg(feature = "matrix")]
    let shown = {
        let mut shown = shown;
        let matrix = kubechat::matrix::render::answer(answer, took.as_secs_f32(), None);
        shown.push((
            "matrix",
            format!("{}\n\n---- formatted_body ----\n{}", matrix.body, matrix.html.replace("><", ">\n<")),
        ));
        shown
    };
    shown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_front_end_shows_the_same_answer_with_the_model_without_it_and_refused() {
    let scenarios = Scenarios::serve().await;
    let model = recorded("text/event-stream", stream_of(MODEL_ANSWER)).await;
    let down = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    );
    let slow = silent().await;
    let overloaded = answering_with("503 Service Unavailable").await;
    let evidence = "fatal: could not connect to postgres at payments-db:5432: connection refused";
    for (case, url) in [("model", &model.url), ("down", &down), ("timeout", &slow), ("overloaded", &overloaded)] {
        let answer = scenarios.asked("crashloop", url).await;
        assert_eq!(answer.degraded.is_some(), case != "model", "{case}: {:?}", answer.degraded);
        for (front_end, shown) in renderings(&answer) {
            // Every rendering carries the finding's evidence, and none the transport's words.
            assert!(shown.contains(evidence), "{front_end} {case}: no evidence in\n{shown}");
            // (The app's own log says "Connection refused (os error 111)": evidence, not the model's transport.)
            let technical = ["cannot connect to the model server", "tcp connect", "127.0.0.1:", "answered 503"];
            for technical in technical.into_iter().chain(["first token within", "Service Unavailable"]) {
                assert!(!shown.contains(technical), "{front_end} {case}: {technical:?} shown to the asker:\n{shown}");
            }
            insta::assert_snapshot!(format!("{front_end}-{case}"), shown);
        }
    }

    // Refused: the same reply on every platform, naming whom to ask.
    let refusal = Refusal::Namespace { namespace: "payments".into(), contact: "#platform-oncall".into() }.to_string();
    let slack = kubechat::slack::blocks::failure(&refusal, "req-2");
    let slack = json!({"text": slack.fallback(), "blocks": slack.blocks});
    insta::assert_snapshot!("slack-refused", serde_json::to_string_pretty(&slack).unwrap());
    #[cfg(feature = "matrix")]
    {
        let matrix = kubechat::matrix::render::failure(&refusal, "req-2");
        insta::assert_snapshot!(
            "matrix-refused",
            format!("{}\n\n---- formatted_body ----\n{}", matrix.body, matrix.html)
        );
    }
    let mut config = crate::common::config(&scenarios.url, &model.url, "crashloop");
    config.access = kubechat::access::Access {
        default: vec!["oom".into()],
        contact: "#platform-oncall".into(),
        ..kubechat::access::Access::open()
    };
    let app = crate::common::spawn_app(config).await;
    let reply = crate::common::http_client()
        .post(format!("{}/diagnose", app.url))
        .json(&json!({"namespace": "payments"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    let mut body: Value = reply.json().await.unwrap();
    assert!(body["request_id"].is_string());
    body["request_id"] = "req-2".into();
    insta::assert_snapshot!("json-refused", serde_json::to_string_pretty(&body).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_model_every_scenarios_answer_carries_its_decisive_evidence() {
    let scenarios = Scenarios::serve().await;
    let overloaded = answering_with("503 Service Unavailable").await;
    for (namespace, expected, decisive) in crate::cli::CASES {
        if expected.is_empty() {
            continue;
        }
        let answer = scenarios.asked(namespace, &overloaded).await;
        assert!(answer.degraded.is_some(), "{namespace}");
        let unescaped = decisive.replace("\\\"", "\"");
        for (front_end, shown) in renderings(&answer) {
            // Slack's mrkdwn and Matrix's HTML escape what they must; the text of the terminal and the JSON do not.
            let plain = shown.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
            let plain = plain.replace("\\\"", "\"");
            assert!(
                plain.contains(&unescaped),
                "{namespace}: the {front_end} answer without the model lacks {decisive:?}:\n{shown}"
            );
        }
    }
}
