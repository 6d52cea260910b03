//! Faults: each ends with no panic, no lost request and a clear message. A Kubernetes API that answers 429 or 500, a
//! model server killed mid-answer, a Slack Web API that fails, and 200 questions at once.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::{Fault, faulty_api, recorded_slowly, scenarios, serve};

/// kubechat's HTTP API over the API server at `cluster`, asking the model at `model`.
async fn app(cluster: &str, model: &str, concurrency: usize) -> (String, crate::common::TestApp) {
    let mut config = crate::common::config(cluster, model, "oom");
    config.llm.concurrency = concurrency;
    let app = crate::common::spawn_app(config).await;
    (app.url.clone(), app)
}

fn stream(lines: usize) -> String {
    let mut out = String::new();
    for i in 0..lines {
        out.push_str(&format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"line {i} of the answer\\n\"}}}}]}}\n\n"
        ));
    }
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kube_api_answering_429_is_waited_out_and_500_is_named() {
    let model = recorded_slowly("text/event-stream", stream(2), Duration::from_millis(1)).await;
    // 429 twice on the pod list: kube's client waits and retries, and the diagnosis completes.
    let api = faulty_api(vec![Fault { path: "/api/v1/namespaces/oom/pods?", status: 429, times: 2 }]).await;
    let (url, _task) = app(&api.url, &model.url, 2).await;
    let http = crate::common::http_client();
    let response = http.post(format!("{url}/diagnose")).json(&json!({"namespace": "oom"})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["findings"][0]["reason"], "OOMKilled");
    let statuses: Vec<u16> =
        api.hits.lock().unwrap().iter().filter(|(p, _)| p.contains("/oom/pods?")).map(|(_, s)| *s).collect();
    assert_eq!(&statuses[..3], [429, 429, 200], "retried after the 429s");

    // A 500 that persists: a clear message naming the call and the status, with a request id.
    let api = faulty_api(vec![Fault { path: "/api/v1/namespaces/oom/pods?", status: 500, times: 100 }]).await;
    let (url, _task) = app(&api.url, &model.url, 2).await;
    let response = http.post(format!("{url}/diagnose")).json(&json!({"namespace": "oom"})).send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("list pods") && error.contains("500"), "{error}");
    assert!(body["request_id"].is_string());
}

/// A model server that sends `tokens` lines of an answer, then drops the connection.
async fn dying_model(tokens: usize) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 65536];
                let _ = socket.read(&mut buffer).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                for i in 0..tokens {
                    let line = format!(
                        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"partial {i}\\n\"}}}}]}}\n\n"
                    );
                    let _ = socket.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes()).await;
                }
                // Killed mid-stream: no last chunk, no [DONE].
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_killed_mid_answer_still_gives_the_findings() {
    let (model, _task) = dying_model(3).await;
    let replay = serve(scenarios(), &[]).await;
    let (url, _app) = app(&replay.url(), &model, 2).await;
    let answer = crate::common::post_json(&format!("{url}/diagnose"), &json!({"namespace": "oom"})).await;
    let degraded = answer["degraded"].as_str().expect("the answer says why it has no model text");
    assert!(degraded.starts_with("The model server stopped in the middle of its answer"), "{degraded}");
    assert_eq!(answer["findings"][0]["reason"], "OOMKilled");
    assert!(answer["answer"].as_str().unwrap().contains("OOMKilled"), "the findings stand in for the answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_questions_at_once_all_end_in_an_answer_or_a_clear_reply() {
    let model = recorded_slowly("text/event-stream", stream(2), Duration::from_millis(2)).await;
    let replay = serve(scenarios(), &[]).await;
    let (url, _task) = app(&replay.url(), &model.url, 2).await;
    let http = crate::common::http_client();
    let namespaces = ["oom", "crashloop", "imagepull", "healthy", "no-such-namespace"];
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, url) = (http.clone(), url.clone());
        let namespace = namespaces[i % namespaces.len()];
        tasks.push(tokio::spawn(async move {
            let response = tokio::time::timeout(
                Duration::from_secs(120),
                http.post(format!("{url}/diagnose")).json(&json!({"namespace": namespace})).send(),
            )
            .await
            .expect("no request hangs")
            .expect("no request is dropped");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("every reply is JSON");
            (namespace, status, body)
        }));
    }
    let (mut answered, mut busy, mut missing) = (0, 0, 0);
    for task in tasks {
        let (namespace, status, body) = task.await.expect("no panic");
        match status {
            200 => {
                assert!(body["answer"].is_string() && body["findings"].is_array(), "{body}");
                answered += 1;
            }
            404 => {
                assert_eq!(namespace, "no-such-namespace");
                assert!(body["error"].as_str().unwrap().contains("does not exist") && body["request_id"].is_string());
                missing += 1;
            }
            // Past `limits.in_flight` (16 by default) kubechat says it is busy, at once.
            503 => {
                assert!(body["error"].as_str().unwrap().contains("as many questions as it takes at once"), "{body}");
                assert!(body["request_id"].is_string());
                busy += 1;
            }
            other => panic!("{namespace}: {other} {body}"),
        }
    }
    assert_eq!(answered + busy + missing, 200, "every question ended in an answer or a clear reply");
    assert!(answered + missing >= 16, "every place in flight was used: {answered} answered, {missing} not found");
    assert_eq!(model.requests.lock().unwrap().len(), answered, "each answered question asked the model once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_slack_web_api_is_told_to_the_asker_with_a_request_id() {
    use crate::slack::{Bot, bot_with_policy, command_body, now, signed};
    async fn acknowledge(bot: &Bot, body: &str) -> Value {
        let form = "application/x-www-form-urlencoded";
        signed(bot, "/slack/commands", form, body, &now(), None).await.json().await.unwrap()
    }
    let bot = bot_with_policy(kubechat::slack::SlackMode::Http, Duration::from_millis(1), |_, _| {}, |_| {}).await;
    *bot.slack.fake.fail.lock().unwrap() = 1;
    let body = command_body(&bot, "/diagnose", "oom", crate::fake_slack::CHANNEL);
    assert_eq!(acknowledge(&bot, &body).await["text"], "Diagnosing oom…");
    let calls = bot
        .slack
        .until(Duration::from_secs(10), "the failure through the response URL", |calls| {
            calls.iter().any(|c| c.method == "response_url")
        })
        .await;
    let told = calls.iter().find(|c| c.method == "response_url").unwrap();
    let text = told.body["body"]["text"].as_str().unwrap();
    assert!(text.contains("I cannot post in this channel") && text.contains("HTTP 500"), "{text}");
    assert_eq!(told.body["body"]["response_type"], "ephemeral");
    assert!(told.body.to_string().contains("request `"), "with the request id");
    // The next question goes through.
    assert_eq!(acknowledge(&bot, &body).await["text"], "Diagnosing oom…");
    bot.slack
        .until(Duration::from_secs(20), "the second answer", |calls| {
            calls.iter().any(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_kube_client_cannot_decode_is_not_logged() {
    // An API server (or a proxy in front of it) that answers with something that is not the object asked for, and
    // holds what a pod's env would: the client's own WARN line would quote it whole.
    let body = r#"{"kind": "Namespace", "metadata": {"name": 5}, "spec": {"env": [{"name": "DB", "value": "Undecodable-Pa55-88"}]}}"#;
    let server = crate::common::recorded("application/json", body.to_string()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubechat::replay::kubeconfig(&server.url, "shop")).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        crate::common::kubechat(&["diagnose", "--kubeconfig", kubeconfig.to_str().unwrap(), "-n", "shop", "--no-llm"])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("Undecodable-Pa55-88"), "the body reached the log: {stderr}");
    assert!(!stderr.contains("\u{1b}["), "no colour codes when the log is not a terminal: {stderr:?}");
}
