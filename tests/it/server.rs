//! `kubechat serve`'s HTTP API against the replay server and a recorded model stream.

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::common::{Recorded, TestApp, config, recorded_slowly, scenarios, serve, spawn_app};

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
    app: TestApp,
    url: String,
    _model: Recorded,
    _replay: kubechat::replay::Server,
}

async fn app(pause: Duration) -> App {
    app_with(pause, 2).await
}

async fn app_with(pause: Duration, concurrency: usize) -> App {
    let model = recorded_slowly("text/event-stream", answer_stream(), pause).await;
    let replay = serve(scenarios(), &[]).await;
    let mut config = config(&replay.url(), &model.url, "imagepull");
    config.llm.concurrency = concurrency;
    let app = spawn_app(config).await;
    App { url: app.url.clone(), app, _model: model, _replay: replay }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_returns_the_seed_fields_and_the_new_ones() {
    let app = app(Duration::from_millis(1)).await;
    let http = crate::common::http_client();
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

    let asked: Value = crate::common::post_json(
        &format!("{}/ask", app.url),
        &json!({"question": "why is orders not starting?", "namespace": "config"}),
    )
    .await;
    assert_eq!(asked["prompt"]["name"], "ask");
    assert_eq!(asked["findings"][0]["reason"], "CreateContainerConfigError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_tokens_before_the_answer_is_complete() {
    let app = app(Duration::from_millis(400)).await;
    let response = crate::common::http_client()
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
        if answer_at.is_none() && text.contains("event: answer") {
            answer_at = Some(started.elapsed());
        }
        // The answer event ends with a blank line; it may come in several chunks.
        if text.split_once("event: answer").is_some_and(|(_, event)| event.contains("\n\n")) {
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
    let http = crate::common::http_client();
    let bad = http
        .post(format!("{}/diagnose", app.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert!(bad["error"].as_str().unwrap().starts_with("invalid request body"));
    assert!(!bad["request_id"].as_str().unwrap().is_empty());

    let missing: Value =
        crate::common::post_json(&format!("{}/diagnose", app.url), &json!({"namespace": "imagepul"})).await;
    assert_eq!(missing["error"], "namespace imagepul does not exist; did you mean imagepull?");

    let empty = http.post(format!("{}/ask", app.url)).json(&json!({"question": " "})).send().await.unwrap();
    assert_eq!(empty.status(), 400);
    let huge = http
        .post(format!("{}/ask", app.url))
        .header("content-type", "application/json")
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
    let http = crate::common::http_client();
    let request =
        tokio::spawn(http.post(format!("{}/diagnose", app.url)).json(&json!({"namespace": "imagepull"})).send());
    tokio::time::sleep(Duration::from_millis(400)).await;
    app.app.shut_down();
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert!(answer["degraded"].is_null(), "{}", answer["degraded"]);
    (&mut app.app.task).await.unwrap().unwrap();
}

/// chromedriver from Debian's chromium-driver package, driving Debian's headless chromium, stopped when dropped.
struct Browser {
    driver: std::process::Child,
    url: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // chromedriver leaves its browser behind when it is killed; the profile directory names that browser alone.
        let _ = std::process::Command::new("pkill")
            .arg("-f")
            .arg(format!("user-data-dir={}", self._profile.path().display()))
            .status();
    }
}

impl Browser {
    async fn start() -> Browser {
        let found = std::process::Command::new("chromedriver").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()) && std::path::Path::new("/usr/bin/chromium").exists(),
            "the web test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver (scripts/test installs them)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let http = crate::common::http_client();
        answering(&http, &format!("{url}/status"), "chromedriver did not start").await;
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1600",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}}});
        let session: Value = crate::common::post_json(&format!("{url}/session"), &capabilities).await;
        let session = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {session}"))
            .to_string();
        Browser { driver, url, session, http, _profile: profile }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}/{path}", self.url, self.session);
        let request = self.http.request(method, url);
        let request = if body.is_null() { request } else { request.json(&body) };
        let response = request.send().await.unwrap();
        response.json::<Value>().await.unwrap()["value"].take()
    }

    async fn script(&self, script: &str) -> Value {
        self.command(reqwest::Method::POST, "execute/sync", json!({"script": script, "args": []})).await
    }

    async fn click(&self, css: &str) {
        let found =
            self.command(reqwest::Method::POST, "element", json!({"using": "css selector", "value": css})).await;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"));
        self.command(reqwest::Method::POST, &format!("element/{id}/click"), json!({})).await;
    }

    /// Waits until `script` returns something truthy.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.script(script).await;
            if !value.is_null() && value != false && value != "" {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Opens the web chat at `url`, picks `namespace` and asks for its diagnosis.
async fn ask_in_the_web_chat(browser: &Browser, url: &str, namespace: &str) {
    browser.command(reqwest::Method::POST, "url", json!({"url": format!("{url}/")})).await;
    let picker = format!("return document.querySelector('#namespace option[value={namespace}]') !== null");
    browser.until("the namespace picker", &picker).await;
    browser.script(&format!("document.querySelector('#namespace').value = '{namespace}'; return true")).await;
    browser.click("#submit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_chat_streams_a_diagnosis_with_badges_and_the_context_panel() {
    let app = app(Duration::from_millis(50)).await;
    let browser = Browser::start().await;
    ask_in_the_web_chat(&browser, &app.url, "imagepull").await;
    let footer =
        browser.until("the answer's footer", "return document.querySelector('.answer footer').textContent").await;
    let footer = footer.as_str().unwrap();
    assert!(
        footer.starts_with("model recorded · prompt diagnose@") && footer.contains("namespace imagepull"),
        "{footer}"
    );
    let hidden = browser.script("return document.querySelector('label.cluster').hidden").await;
    assert_eq!(hidden, true, "one cluster: no cluster picker");
    let body = browser.script("return document.querySelector('.answer .body').textContent").await;
    assert!(body.as_str().unwrap().contains("The image tag does not exist."), "{body}");
    let code = browser.script("return document.querySelector('.answer .body code').textContent").await;
    assert_eq!(
        code, "kubectl describe pod -n imagepull checkout-6c9d8e7f1-k2v9d",
        "Markdown code became a code element"
    );
    let badges =
        browser.script("return Array.from(document.querySelectorAll('.answer .badge')).map(b => b.textContent)").await;
    assert!(badges.as_array().unwrap().iter().any(|b| b == "read-only"), "{badges}");
    let context = browser.script("return document.querySelector('.answer .context pre').textContent").await;
    assert!(context.as_str().unwrap().contains("checkout:2.3.1-rc: not found"), "{context}");
    browser.click(".answer .context summary").await;
    let open = browser.script("return document.querySelector('.answer .context').open").await;
    assert_eq!(open, true);
    let png = browser.command(reqwest::Method::GET, "screenshot", Value::Null).await;
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
    let artifacts = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join("web-chat.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is kept in {}", artifacts.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_with_no_cluster_and_no_model() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let no_model = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let demo = crate::common::KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_kubechat"))
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--llm-url",
                &format!("http://127.0.0.1:{no_model}"),
            ])
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let http = crate::common::http_client();
    answering(&http, &format!("{url}/healthz"), "the demo did not start").await;
    let page = http.get(format!("{url}/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<title>kubechat</title>"));
    let namespaces: Value = http.get(format!("{url}/namespaces")).send().await.unwrap().json().await.unwrap();
    assert_eq!(namespaces["default"], "imagepull");
    assert!(namespaces["namespaces"].as_array().unwrap().len() >= 13);
    let answer: Value = crate::common::post_json(&format!("{url}/diagnose"), &json!({"namespace": "storage"})).await;
    assert!(answer["degraded"].as_str().unwrap().starts_with("The model server did not answer"), "{answer}");
    assert_eq!(answer["findings"][0]["reason"], "PVCPending");
    assert!(answer["answer"].as_str().unwrap().contains("PVCPending persistentvolumeclaim/data-postgres-0"));
    assert_eq!(answer["prompt"]["name"], "diagnose", "the built-in prompts answer outside a checkout");

    // As a new user meets it: the web chat, no model, a crashing pod. One notice in the asker's words, and the
    // finding's evidence, the line of the previous log that names the cause included.
    let browser = Browser::start().await;
    ask_in_the_web_chat(&browser, &url, "crashloop").await;
    browser.until("the answer's footer", "return document.querySelector('.answer footer').textContent").await;
    let notice = browser.script("return document.querySelector('.answer .notice').textContent").await;
    assert_eq!(
        notice,
        "The model server did not answer, so these are kubechat's own findings. If this keeps happening, tell whoever runs kubechat."
    );
    let findings = browser.script("return document.querySelector('.answer .findings').innerText").await;
    let findings = findings.as_str().unwrap();
    assert!(findings.contains("CrashLoopBackOff pod/payments-api-7b8d9c6f5-qw7zt"), "{findings}");
    assert!(
        findings.contains("fatal: could not connect to postgres at payments-db:5432: connection refused"),
        "{findings}"
    );
    let page = browser.script("return document.querySelector('.answer').innerText").await;
    assert!(!page.as_str().unwrap().contains("tcp connect"), "{page}");
    drop(demo);
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert!(stderr.contains(&format!("open {url}/")), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in a log file: {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_a_config_file_and_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubechat.yaml");
    let no_model = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:1\nnamespace: oom\ndump: {}\nllm:\n  url: http://127.0.0.1:{no_model}\n  model: mistral\nhttp:\n  auth: open\naccess:\n  default: [\"*\"]\nmetrics:\n  listen: \"off\"\n",
            crate::common::SCENARIOS,
        ),
    )
    .unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let (serve, url) = crate::common::serve_process_logging(&config, log.reopen().unwrap().into());
    let http = crate::common::http_client();
    let ready: Value =
        answering(&http, &format!("{url}/readyz"), "serve did not listen on the address KUBECHAT_LISTEN gave")
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(ready["status"], "ready");
    let answer: Value = crate::common::post_json(&format!("{url}/diagnose"), &json!({})).await;
    assert_eq!(answer["namespace"], "oom", "the configured namespace is the default");
    assert_eq!(answer["findings"][0]["reason"], "OOMKilled");
    assert!(answer["degraded"].is_string());
    drop(serve);
    // No prompts directory configured, none at the default place: the built-in prompts, said at start-up; in a log
    // that is not a terminal, plain lines.
    let stderr = std::fs::read_to_string(log.path()).unwrap();
    assert_eq!(answer["prompt"]["name"], "diagnose");
    assert!(
        stderr.contains(
            "prompts: the ones built into kubechat (no prompts directory configured, and none at /etc/kubechat/prompts)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "colour codes in a log file: {stderr:?}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubechat"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("KUBECHAT_LLM_NUM_CTX", "512")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("setting llm.num_ctx: 512 leaves too little room"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_frees_the_model_for_the_next() {
    // One slot; each answer takes about 2.5 s (400 ms between the recorded stream's lines).
    let app = app_with(Duration::from_millis(400), 1).await;
    let http = crate::common::http_client();
    let response = http
        .post(format!("{}/diagnose", app.url))
        .header("accept", "text/event-stream")
        .json(&json!({"namespace": "imagepull"}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: token") {
        seen.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    drop(body);
    let started = Instant::now();
    let answer: Value =
        crate::common::post_json(&format!("{}/diagnose", app.url), &json!({"namespace": "imagepull"})).await;
    assert!(answer["degraded"].is_null());
    let waited = started.elapsed();
    assert!(waited < Duration::from_millis(4000), "the abandoned answer kept the slot: {waited:?}");
}

/// The first response of a server just started, polled for up to 20 s; `failure` says what did not start.
async fn answering(http: &reqwest::Client, url: &str, failure: &str) -> reqwest::Response {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = http.get(url).send().await {
            return response;
        }
        assert!(Instant::now() < deadline, "{failure}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_urls_credentials_show_nowhere_and_models_needs_the_apis_authentication() {
    // A model server behind basic authentication in its URL, down: every error quotes the URL.
    let no_model = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let password = "Llm-Pa55-2026";
    let replay = serve(scenarios(), &[]).await;
    let audit = crate::common::Audit::new();
    let mut config = config(&replay.url(), &format!("http://kubechat:{password}@127.0.0.1:{no_model}"), "crashloop");
    config.http_auth = kubechat::server::HttpAuth::Tokens(vec![(
        "alice".into(),
        kubechat::secret::Secret::new("0123456789abcdef-alice"),
    )]);
    config.audit = Some(audit.path.clone());
    assert!(!format!("{:?}", config.llm).contains(password), "the settings print without it");
    let app = spawn_app(config).await;
    let http = crate::common::http_client();

    let models = http.get(format!("{}/models", app.url)).send().await.unwrap();
    assert_eq!(models.status(), 401, "/models asks for the API's authentication");
    let models = http.get(format!("{}/models", app.url)).bearer_auth("0123456789abcdef-alice").send().await.unwrap();
    assert_eq!(models.status(), 502);
    let body = models.text().await.unwrap();
    assert!(body.contains(&format!("http://127.0.0.1:{no_model}")), "the server is still named: {body}");
    assert!(!body.contains(password) && !body.contains("kubechat:"), "{body}");

    let answer = http
        .post(format!("{}/diagnose", app.url))
        .bearer_auth("0123456789abcdef-alice")
        .json(&json!({"namespace": "crashloop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer = answer.text().await.unwrap();
    // The asker is told what happened in their words; the server's address and the transport's error are the
    // operator's, in the audit line.
    assert!(answer.contains("\"degraded\":\"The model server did not answer"), "{answer}");
    assert!(!answer.contains(&format!("127.0.0.1:{no_model}")) && !answer.contains("tcp connect"), "{answer}");
    assert!(!answer.contains(password), "{answer}");
    let lines = audit.wait_for(1).await;
    assert_eq!(lines[0]["outcome"], "degraded");
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("cannot connect to the model server at http://127.0.0.1:"), "{reason}");
    assert!(!std::fs::read_to_string(&audit.path).unwrap().contains(password));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mode_answers_only_loopback_names_json_posts_and_its_own_pages() {
    let app = app(Duration::from_millis(1)).await;
    let http = crate::common::http_client();
    let url = format!("{}/diagnose", app.url);
    let port = app.url.rsplit(':').next().unwrap().to_string();
    let body = json!({"namespace": "imagepull"}).to_string();
    let post = |host: Option<String>, content_type: &str, origin: Option<&str>| {
        let mut request = http.post(&url).header("content-type", content_type).body(body.clone());
        if let Some(host) = host {
            request = request.header("host", host);
        }
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    // DNS rebinding: a foreign name resolving to the loopback address.
    let (status, text) = post(Some(format!("evil.example:{port}")), "application/json", None).await;
    assert_eq!(status, 421, "{text}");
    assert!(text.contains("answers only at a loopback name"), "{text}");
    let page = http.get(format!("{}/namespaces", app.url)).header("host", "evil.example").send().await.unwrap();
    assert_eq!(page.status(), 421, "reads are refused too");
    // A form or text/plain post is sent cross-site without a preflight: refused.
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let (status, text) = post(None, content_type, None).await;
        assert_eq!(status, 415, "{content_type}: {text}");
    }
    // A foreign page's fetch is refused; kubechat's own page, and localhost names, are not.
    let (status, _) = post(None, "application/json", Some("https://evil.example")).await;
    assert_eq!(status, 403);
    let (status, text) = post(None, "application/json; charset=utf-8", Some(&app.url)).await;
    assert_eq!(status, 200, "{text}");
    let (status, text) =
        post(Some(format!("localhost:{port}")), "application/json", Some(&format!("http://localhost:{port}"))).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_questions_in_flight_the_asker_is_told_kubechat_is_busy() {
    let model = recorded_slowly("text/event-stream", answer_stream(), Duration::from_millis(400)).await;
    let replay = serve(scenarios(), &[]).await;
    let audit = crate::common::Audit::new();
    let mut config = config(&replay.url(), &model.url, "imagepull");
    config.in_flight = 1;
    config.audit = Some(audit.path.clone());
    let app = spawn_app(config).await;
    let http = crate::common::http_client();
    let url = format!("{}/diagnose", app.url);
    let first = tokio::spawn(http.post(&url).json(&json!({"namespace": "imagepull"})).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = http.post(&url).json(&json!({"namespace": "imagepull"})).send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "30");
    let body: Value = second.json().await.unwrap();
    assert_eq!(
        body["error"],
        "kubechat is answering as many questions as it takes at once (1); please ask again in a minute"
    );
    assert_eq!(first.await.unwrap().unwrap().status(), 200, "the first is answered");
    let lines = audit.wait_for(2).await;
    assert_eq!(lines[0]["outcome"], "busy");
    assert_eq!(lines[1]["outcome"], "answered");
    // Its place is free again.
    let third = http.post(&url).json(&json!({"namespace": "imagepull"})).send().await.unwrap();
    assert_eq!(third.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_too_long_for_the_window_asks_the_asker_to_shorten_it_and_a_window_too_small_names_the_operator() {
    let model = recorded_slowly("text/event-stream", answer_stream(), Duration::from_millis(1)).await;
    let replay = serve(scenarios(), &[]).await;
    let audit = crate::common::Audit::new();
    let mut config = config(&replay.url(), &model.url, "imagepull");
    config.audit = Some(audit.path.clone());
    let app = spawn_app(config).await;
    let http = crate::common::http_client();
    let url = format!("{}/diagnose", app.url);
    // A question with 30 KB of log pasted into it: more tokens than the default window (8,192) leaves.
    let log = "2026-11-20T09:53:21.418Z ERROR payments_api::db: connection attempt 1 failed: Connection refused (os error 111)\n";
    let question = format!("why does it keep failing? the log says:\n{}", log.repeat(280));
    let response = http.post(&url).json(&json!({"namespace": "imagepull", "question": question})).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("your question is too long for the model") && error.contains("shorten it"), "{error}");
    assert!(!error.contains("num-ctx") && !error.contains("num_ctx"), "no operator's setting for the asker: {error}");
    let lines = audit.wait_for(1).await;
    assert_eq!(lines[0]["outcome"], "invalid", "{}", lines[0]);
    assert!(model.requests.lock().unwrap().is_empty(), "the model was not asked");

    // A window too small for any question is the operator's to mend, and says so.
    let mut config = crate::common::config(&replay.url(), &model.url, "imagepull");
    config.llm.num_ctx = 1200;
    config.llm.answer_tokens = 1000;
    config.audit = Some(audit.path.clone());
    let app = spawn_app(config).await;
    let response =
        http.post(format!("{}/diagnose", app.url)).json(&json!({"namespace": "imagepull"})).send().await.unwrap();
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("kubechat's operator must raise the window (llm.num_ctx"), "{error}");
    let lines = audit.wait_for(2).await;
    assert_eq!(lines[1]["outcome"], "error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_are_closed_by_the_header_timeout_and_the_rest_still_answers() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = app(Duration::from_millis(1)).await;
    let address = app.url.trim_start_matches("http://").to_string();
    // 200 clients that start a request and never finish its headers.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
        slow.push(stream);
    }
    let http = crate::common::http_client();
    let started = Instant::now();
    let health = http.get(format!("{}/healthz", app.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2), "healthz took {:?}", started.elapsed());
    // Past the header timeout every one of them is closed (a read ends), without an answer.
    let deadline = kubechat::server::HEADER_TIMEOUT + Duration::from_secs(5);
    for mut stream in slow {
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(deadline, stream.read_to_end(&mut buffer)).await;
        assert!(read.is_ok(), "a slow connection was still open after {deadline:?}");
        assert!(!String::from_utf8_lossy(&buffer).contains("200 OK"), "{}", String::from_utf8_lossy(&buffer));
    }
    // On a new connection: the one the first request left open idles out by the same timeout, and a request sent on
    // it as the server closes it would fail (a client's pool races the server, not kubechat's answer).
    let health = crate::common::http_client().get(format!("{}/healthz", app.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_chat_asks_about_the_cluster_picked_and_lists_its_namespaces() {
    let model = recorded_slowly("text/event-stream", answer_stream(), Duration::from_millis(1)).await;
    let (east, west) = crate::clusters::east_and_west().await;
    let mut config = config(&east.url(), &model.url, "imagepull");
    crate::clusters::two_clusters(&mut config, &east.url(), &west.url());
    let app = spawn_app(config).await;
    let browser = Browser::start().await;
    browser.command(reqwest::Method::POST, "url", json!({"url": format!("{}/", app.url)})).await;
    browser.until("the cluster picker", "return !document.querySelector('label.cluster').hidden").await;
    let picked = browser.script("return document.querySelector('#cluster').value").await;
    assert_eq!(picked, "east", "the default cluster first");
    browser
        .until("east's namespaces", "return document.querySelector('#namespace option[value=crashloop]') !== null")
        .await;
    browser
        .script("const c = document.querySelector('#cluster'); c.value = 'west'; c.dispatchEvent(new Event('change')); return true")
        .await;
    let namespaces = browser
        .until(
            "west's namespaces",
            // The list is emptied before west's namespaces fill it: wait for them, not for the gap between.
            "const o = Array.from(document.querySelectorAll('#namespace option')).map(o => o.value); return o.length && !o.includes('crashloop') ? o : null",
        )
        .await;
    assert!(namespaces.as_array().unwrap().iter().any(|n| n == "oom"), "{namespaces}");
    browser.script("document.querySelector('#namespace').value = 'oom'; return true").await;
    browser.click("#submit").await;
    let footer =
        browser.until("the answer's footer", "return document.querySelector('.answer footer').textContent").await;
    assert!(footer.as_str().unwrap().contains("cluster west · namespace oom"), "{footer}");
    // Back to east by way of west, quickly: two lists are asked for at once, and only the last one asked fills the
    // picker, whichever answer comes first.
    browser
        .script(
            "const c = document.querySelector('#cluster'); for (const v of ['west', 'east']) { c.value = v; c.dispatchEvent(new Event('change')); } return true",
        )
        .await;
    browser
        .until(
            "east's namespaces again",
            "return document.querySelector('#namespace option[value=crashloop]') !== null",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed =
        browser.script("return Array.from(document.querySelectorAll('#namespace option')).map(o => o.value)").await;
    let listed: Vec<&str> = listed.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let mut once = listed.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(once.len(), listed.len(), "west's answer was added to east's list: {listed:?}");
    assert!(listed.contains(&"crashloop") && listed.contains(&"oom"), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_the_corpus_reaches_the_event_stream_or_the_json_answer() {
    let model = recorded_slowly("text/event-stream", crate::common::corpus_stream(), Duration::from_millis(1)).await;
    let replay = serve(scenarios(), &[]).await;
    let app = spawn_app(config(&replay.url(), &model.url, "secrets")).await;
    let http = crate::common::http_client();
    let url = format!("{}/diagnose", app.url);
    let streamed = http
        .post(&url)
        .header("accept", "text/event-stream")
        .json(&json!({"namespace": "secrets"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(streamed.contains("event: token") && streamed.contains("[REDACTED:"), "{streamed}");
    crate::common::assert_no_secret(&streamed, "the event stream");
    let answered = http.post(&url).json(&json!({"namespace": "secrets"})).send().await.unwrap().text().await.unwrap();
    assert!(answered.contains("[REDACTED:private-key]"), "{answered}");
    crate::common::assert_no_secret(&answered, "the JSON answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_of_the_corpus_reaches_the_web_chats_page() {
    let model = recorded_slowly("text/event-stream", crate::common::corpus_stream(), Duration::from_millis(1)).await;
    let replay = serve(scenarios(), &[]).await;
    let app = spawn_app(config(&replay.url(), &model.url, "secrets")).await;
    let browser = Browser::start().await;
    ask_in_the_web_chat(&browser, &app.url, "secrets").await;
    browser.until("the answer's footer", "return document.querySelector('.answer footer').textContent").await;
    // Everything the page holds, the context panel's text and every attribute included.
    let page = browser.script("return document.documentElement.outerHTML").await;
    let page = page.as_str().unwrap();
    assert!(page.contains("[REDACTED:"), "the redacted lines are shown");
    crate::common::assert_no_secret(page, "the web chat's page");
}
