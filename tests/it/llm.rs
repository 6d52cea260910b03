//! Answers from a model: the real llama.cpp server (llama-cpp-python with SmolLM2-135M, installed by
//! `scripts/llm-server`) over the OpenAI-compatible API, recorded Ollama and OpenAI streams from a local HTTP server,
//! and a model server that is down or hangs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubechat::access::{Asker, Platform};
use kubechat::answer;
use kubechat::llm::{Api, Chunk, Llm, LlmConfig, LlmError};
use kubechat::request::{Intent, Request};
use serde_json::Value;

use crate::common::{SCENARIOS, client, kubechat, recorded, recorded_slowly, scenarios, serve};

/// The llama.cpp server, stopped when dropped.
struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LlamaServer {
    async fn start() -> LlamaServer {
        let (python, model) = match (std::env::var("KUBECHAT_LLM_PYTHON"), std::env::var("KUBECHAT_LLM_MODEL")) {
            (Ok(python), Ok(model)) => (PathBuf::from(python), model),
            _ => {
                let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/llm-server"))
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("scripts/llm-server runs");
                assert!(
                    out.status.success(),
                    "scripts/llm-server could not install the llama.cpp server (see above); it needs PyPI and a C++ compiler"
                );
                let text = String::from_utf8(out.stdout).unwrap();
                let mut lines = text.lines();
                (PathBuf::from(lines.next().unwrap()), lines.next().unwrap().to_string())
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--model", &model, "--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--n_threads", "1", "--n_ctx", "4096", "--model_alias", "smollm2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the llama.cpp server starts");
        let server = LlamaServer { child, url: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "the llama.cpp server did not listen within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    fn args(&self) -> Vec<String> {
        [
            "--llm-api",
            "openai",
            "--llm-url",
            &self.url,
            "--model",
            "smollm2",
            "--num-ctx",
            "4096",
            "--answer-tokens",
            "48",
            "--temperature",
            "0",
        ]
        .map(String::from)
        .to_vec()
    }
}

fn run_json(args: &[String]) -> Value {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kubechat(&args);
    assert!(out.status.success(), "kubechat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_llama_server_answers_diagnose_and_ask() {
    let server = LlamaServer::start().await;
    let mut args = strings(&["diagnose", "--dump", SCENARIOS, "-n", "imagepull", "--output", "json"]);
    args.extend(server.args());
    let diagnosis = run_json(&args);
    assert!(diagnosis["degraded"].is_null(), "{}", diagnosis["degraded"]);
    assert!(!diagnosis["answer"].as_str().unwrap().trim().is_empty());
    assert_eq!(diagnosis["model"], "smollm2");
    assert_eq!(diagnosis["prompt"]["name"], "diagnose");
    assert_eq!(diagnosis["prompt"]["version"].as_str().unwrap().len(), 12);
    assert_eq!(diagnosis["findings"][0]["reason"], "ImagePullBackOff");
    let commands = diagnosis["commands"].as_array().unwrap();
    assert!(commands.iter().any(|c| c["command"] == "kubectl describe pod -n imagepull checkout-6c9d8e7f1-k2v9d"
        && c["read_only"] == true
        && c["grounded"] == true));
    assert!(diagnosis["context"].as_str().unwrap().contains("checkout:2.3.1-rc: not found"));

    let mut args = strings(&["ask", "--dump", SCENARIOS, "-n", "crashloop", "--output", "json"]);
    args.extend(server.args());
    args.extend(strings(&["why", "is", "payments-api", "restarting?"]));
    let asked = run_json(&args);
    assert!(asked["degraded"].is_null(), "{}", asked["degraded"]);
    assert_eq!(asked["prompt"]["name"], "ask");
    assert!(!asked["answer"].as_str().unwrap().trim().is_empty());

    // Text mode streams the answer, then the commands and a footer naming the prompt version.
    let mut args = strings(&["diagnose", "--dump", SCENARIOS, "-n", "oom"]);
    args.extend(server.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kubechat(&args);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("[read-only] kubectl logs -n oom report-worker-6f7c8d9b5-x4m2n -c worker --previous"),
        "{text}"
    );
    assert!(text.contains("-- model smollm2 · prompt diagnose@"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_fit_the_window_by_the_real_tokenizer_and_carry_no_secret() {
    let server = LlamaServer::start().await;
    let replay = serve(scenarios(), &[]).await;
    let client = client(&replay).await;
    let prompts = kubechat::prompt::Prompts::builtin();
    let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/secrets.tsv")).unwrap();
    let secrets: Vec<&str> =
        corpus.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| l.split('\t').next()).collect();
    for (namespace, num_ctx, decisive) in [
        ("crashloop", 3072, "fatal: could not connect to postgres at payments-db:5432: connection refused"),
        ("jobs", 3072, r#"relation "users" already exists"#),
        ("secrets", 4096, "panic: billing cannot start without its database"),
        ("readiness", 4096, "Readiness probe failed: HTTP probe failed with statuscode: 503"),
    ] {
        let scope = kubechat::request::Scope::parse("default", namespace, None).unwrap();
        let facts = kubechat::cluster::read(&client, &scope, &Default::default()).await.unwrap();
        let prompt = prompts.get("diagnose").unwrap();
        let asker = Asker { platform: Platform::Cli, place: None, user: "test".into() };
        let request = Request::new("test", asker, Intent::Diagnose, scope, "", Vec::new());
        let prepared = answer::prepare(&facts, &request, prompt, num_ctx, 256, jiff::Timestamp::now()).unwrap();
        assert!(prepared.prompt_tokens + 256 <= num_ctx, "{namespace}: {} + 256 > {num_ctx}", prepared.prompt_tokens);
        assert!(
            prepared.diagnosis.context.contains(decisive),
            "{namespace}: the decisive line was cut:\n{}",
            prepared.diagnosis.context
        );
        let sent = format!("{}\n{}", prepared.rendered.system, prepared.rendered.user);
        for secret in &secrets {
            assert!(!sent.contains(secret), "{secret:?} would be sent to the model");
        }
        let tokenized: Value =
            crate::common::post_json(&format!("{}/extras/tokenize", server.url), &serde_json::json!({"input": sent}))
                .await;
        let actual = tokenized["tokens"].as_array().expect("token list").len();
        assert!(
            actual <= prepared.prompt_tokens,
            "{namespace}: the estimate {} undercounts the real {actual}",
            prepared.prompt_tokens
        );
    }

    // The model's answer about the secrets namespace holds none of them either.
    let mut args = strings(&["diagnose", "--dump", SCENARIOS, "-n", "secrets", "--output", "json"]);
    args.extend(server.args());
    let answered = run_json(&args).to_string();
    for secret in &secrets {
        assert!(!answered.contains(secret), "{secret:?} leaked into the answer");
    }
}

#[tokio::test]
async fn secrets_the_model_writes_are_redacted_in_the_stream_and_the_answer() {
    // The model repeats every secret of the corpus, each split across two stream chunks, and a private key over
    // several lines.
    assert!(crate::common::corpus().len() >= 60, "the corpus holds {} leaks", crate::common::corpus().len());
    let body = crate::common::corpus_stream();
    let server = recorded("text/event-stream", body).await;
    let url = server.url.clone();
    let args = move |output: &str| {
        strings(&[
            "diagnose",
            "--dump",
            SCENARIOS,
            "-n",
            "secrets",
            "--output",
            output,
            "--llm-api",
            "openai",
            "--llm-url",
            &url,
        ])
    };
    // The JSON answer, and the text a terminal sees streamed.
    let json_args = args("json");
    let answered = tokio::task::spawn_blocking(move || run_json(&json_args)).await.unwrap();
    let text_args = args("text");
    // Its log too, at the level an operator runs it.
    let (streamed, logged) = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubechat"))
            .args(&text_args)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap();
    assert!(answered["degraded"].is_null(), "{}", answered["degraded"]);
    assert!(streamed.contains("[REDACTED:stripe-key]"), "the answer was streamed: {streamed}");
    let answer = answered["answer"].as_str().unwrap();
    assert!(answer.contains("[REDACTED:private-key]"), "{answer}");
    assert!(logged.contains("asking the model"), "the log is read at info: {logged}");
    for (what, text) in
        [("the JSON answer", answered.to_string()), ("the streamed text", streamed), ("the log", logged)]
    {
        crate::common::assert_no_secret(&text, what);
    }
}

fn ollama_fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/ollama/{name}.ndjson", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn config(url: &str, api: Api) -> LlmConfig {
    LlmConfig {
        url: url.to_string(),
        api,
        model: "mistral".into(),
        num_ctx: 4096,
        answer_tokens: 256,
        ..LlmConfig::default()
    }
}

#[tokio::test]
async fn ollama_streams_are_read_as_ollama_sends_them() {
    let server = recorded("application/x-ndjson", ollama_fixture("stream")).await;
    let llm = Llm::new(config(&server.url, Api::Ollama)).unwrap();
    let mut tokens = Vec::new();
    let messages = llm.messages("system text", "user text");
    let completion = llm.chat(&messages, |t| tokens.push(t.to_string()), |_| {}).await.unwrap();
    assert_eq!(tokens, ["The", " pod", " cannot pull its image."]);
    assert_eq!(completion.text, "The pod cannot pull its image.");
    assert_eq!(completion.finish.as_deref(), Some("stop"));
    assert_eq!(completion.usage.prompt_tokens, None);
    let request = server.requests.lock().unwrap()[0].clone();
    assert_eq!(request["stream"], true);
    assert_eq!(request["options"]["num_ctx"], 4096);
    assert_eq!(request["options"]["num_predict"], 256);
    assert!(request["options"]["temperature"].is_number());
    assert_eq!(request["keep_alive"], "30m");
    assert_eq!(request["messages"][0]["role"], "system");

    let server = recorded("application/x-ndjson", ollama_fixture("stream-usage")).await;
    let llm = Llm::new(LlmConfig { fold_system: true, ..config(&server.url, Api::Ollama) }).unwrap();
    let messages = llm.messages("system text", "user text");
    let completion = llm.chat(&messages, |_| {}, |_| {}).await.unwrap();
    assert_eq!((completion.usage.prompt_tokens, completion.usage.completion_tokens), (Some(1874), Some(31)));
    let request = server.requests.lock().unwrap()[0].clone();
    assert_eq!(request["messages"].as_array().unwrap().len(), 1, "the system text is folded into the user message");
    assert_eq!(request["messages"][0]["content"], "system text\n\nuser text");

    let server = recorded("application/x-ndjson", ollama_fixture("stream-error")).await;
    let llm = Llm::new(config(&server.url, Api::Ollama)).unwrap();
    let error = llm.chat(&llm.messages("s", "u"), |_| {}, |_| {}).await.unwrap_err();
    assert!(matches!(&error, LlmError::Stream(m) if m.contains("unexpected EOF")), "{error:?}");
    assert_eq!(server.requests.lock().unwrap().len(), 1, "a failure after tokens is not retried");
}

#[tokio::test]
async fn a_mutating_command_from_the_model_comes_back_flagged() {
    let events = [
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Delete the pod to restart it:\n"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"```\nkubectl delete pod -n crashloop payments-api-7b8d9c6f5-qw7zt\n```\n"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"Then `kubectl describe pod -n crashloop payments-api-7b8d9c6f5-zzzzz`.\n"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{"content":"Or `kubectl get pods -n crashloop && kubectl delete ns crashloop`, or `kubectl get pods -n crashloop --server https://10.9.9.9`.\n"}}]}"#,
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        r#"{"choices":[],"usage":{"prompt_tokens":1500,"completion_tokens":40,"total_tokens":1540}}"#,
    ];
    let body = events.iter().map(|e| format!("data: {e}\n\n")).collect::<String>() + "data: [DONE]\n\n";
    let server = recorded("text/event-stream", body).await;
    let args = strings(&[
        "diagnose",
        "--dump",
        SCENARIOS,
        "-n",
        "crashloop",
        "--output",
        "json",
        "--llm-api",
        "openai",
        "--llm-url",
        &server.url,
    ]);
    // The recorded server runs on this test's runtime: the command runs off it.
    let answer = tokio::task::spawn_blocking(move || run_json(&args)).await.unwrap();
    assert_eq!(answer["usage"]["prompt_tokens"], 1500);
    assert_eq!(answer["usage"]["completion_tokens"], 40);
    assert_eq!(answer["truncated"], false);
    assert!(answer["degraded"].is_null());
    let commands = answer["commands"].as_array().unwrap();
    let delete = commands
        .iter()
        .find(|c| c["command"] == "kubectl delete pod -n crashloop payments-api-7b8d9c6f5-qw7zt")
        .expect("the model's command is listed");
    assert_eq!(delete["read_only"], false);
    assert_eq!(delete["label"], "mutating");
    assert!(delete["note"].as_str().unwrap().starts_with("mutating:"), "{delete}");
    // A read hiding a delete behind `&&`, and a read of another API server, are not read-only.
    let label = |line: &str| {
        let c = commands.iter().find(|c| c["command"] == line).unwrap_or_else(|| panic!("{line} in {commands:?}"));
        (c["label"].as_str().unwrap().to_string(), c["read_only"].as_bool().unwrap())
    };
    assert_eq!(label("kubectl get pods -n crashloop && kubectl delete ns crashloop"), ("mutating".to_string(), false));
    assert_eq!(label("kubectl get pods -n crashloop --server https://10.9.9.9"), ("review".to_string(), false));
    let invented = commands
        .iter()
        .find(|c| c["command"] == "kubectl describe pod -n crashloop payments-api-7b8d9c6f5-zzzzz")
        .unwrap();
    assert_eq!(invented["grounded"], false);
    let request = server.requests.lock().unwrap()[0].clone();
    assert_eq!(request["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn with_the_model_down_the_findings_still_come_within_the_connect_timeout() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let answer = run_json(&strings(&[
        "diagnose",
        "--dump",
        SCENARIOS,
        "-n",
        "oom",
        "--output",
        "json",
        "--llm-url",
        &format!("http://127.0.0.1:{port}"),
        "--llm-connect-timeout",
        "5",
    ]));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(
        answer["degraded"].as_str().unwrap().starts_with("The model server did not answer"),
        "{}",
        answer["degraded"]
    );
    assert_eq!(answer["findings"][0]["reason"], "OOMKilled");
    assert!(answer["answer"].as_str().unwrap().contains("OOMKilled pod/report-worker-6f7c8d9b5-x4m2n"));

    // A server that accepts and never answers: the first-token timeout ends the wait.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        run_json(&strings(&[
            "diagnose",
            "--dump",
            SCENARIOS,
            "-n",
            "oom",
            "--output",
            "json",
            "--llm-url",
            &url,
            "--llm-first-token-timeout",
            "1",
        ]))
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(answer["degraded"].as_str().unwrap().starts_with("The model did not answer in time"), "{answer}");
    hold.abort();
}

#[test]
fn every_chunk_kind_of_an_openai_stream_is_read() {
    let mut events = kubechat::llm::SseEvents::default();
    assert_eq!(events.parse(r#"data: {"choices":[{"delta":{"content":"Hi"}}]}"#), [Ok(Chunk::Token("Hi".into()))]);
    assert!(events.parse(": keep-alive").is_empty());
    assert_eq!(events.parse(r#"data: {"choices":[{"delta":{},"finish_reason":"length"}]}"#), []);
    assert_eq!(
        events.parse("data: [DONE]"),
        [Ok(Chunk::Done { usage: Default::default(), finish: Some("length".into()) })]
    );
    let mut events = kubechat::llm::SseEvents::default();
    let error = events.parse(r#"data: {"error":{"message":"context length exceeded"}}"#);
    assert!(matches!(&error[0], Err(LlmError::Stream(m)) if m == "context length exceeded"));
}

#[tokio::test]
async fn requests_beyond_the_limit_wait_in_a_visible_line() {
    let server = recorded("application/x-ndjson", ollama_fixture("stream")).await;
    let llm = Llm::new(LlmConfig { concurrency: 1, ..config(&server.url, Api::Ollama) }).unwrap();
    let positions = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..3 {
        let (llm, positions) = (llm.clone(), positions.clone());
        handles.push(tokio::spawn(async move {
            let messages = llm.messages("s", "u");
            llm.chat(&messages, |_| {}, |p| positions.lock().unwrap().push(p)).await.unwrap()
        }));
    }
    for handle in handles {
        assert_eq!(handle.await.unwrap().text, "The pod cannot pull its image.");
    }
    let mut positions = positions.lock().unwrap().clone();
    positions.sort();
    assert_eq!(positions, [1, 2], "one request runs, two wait: first and second in line");
    assert_eq!(llm.queue_len(), 0);

    // A caller that gives up while waiting leaves the line.
    let slow = recorded_slowly("application/x-ndjson", ollama_fixture("stream"), Duration::from_millis(200)).await;
    let llm = Llm::new(LlmConfig { concurrency: 1, ..config(&slow.url, Api::Ollama) }).unwrap();
    let busy = {
        let llm = llm.clone();
        tokio::spawn(async move { llm.chat(&llm.messages("s", "u"), |_| {}, |_| {}).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let messages = llm.messages("s", "u");
    let gave_up = tokio::time::timeout(Duration::from_millis(100), llm.chat(&messages, |_| {}, |_| {})).await;
    assert!(gave_up.is_err(), "the second caller was still waiting");
    assert_eq!(llm.queue_len(), 0);
    busy.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_models_on_offer_are_listed() {
    let tags = r#"{"models":[{"name":"mistral:latest","model":"mistral:latest","size":4113301824},{"name":"llama3.2:3b","model":"llama3.2:3b","size":2019393189}]}"#;
    let server = recorded("application/json", tags.to_string()).await;
    let llm = Llm::new(config(&server.url, Api::Ollama)).unwrap();
    assert_eq!(llm.models().await.unwrap(), ["mistral:latest", "llama3.2:3b"]);
    let openai = r#"{"object":"list","data":[{"id":"smollm2","object":"model","owned_by":"me"}]}"#;
    let server = recorded("application/json", openai.to_string()).await;
    let llm = Llm::new(config(&server.url, Api::Openai)).unwrap();
    assert_eq!(llm.models().await.unwrap(), ["smollm2"]);
}
