use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use kubechat::dump::Dump;
use kubechat::replay::{self, Server};
use std::sync::Mutex;
use std::time::Duration;

use axum::response::IntoResponse as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/scenarios");

pub fn scenarios() -> Arc<Dump> {
    Arc::new(Dump::load(Path::new(SCENARIOS)).expect("the scenario dump loads"))
}

pub async fn serve(dump: Arc<Dump>, forbid: &[&str]) -> Server {
    let options = replay::Options { forbid: forbid.iter().map(|f| f.parse().unwrap()).collect() };
    replay::start(dump, options, ([127, 0, 0, 1], 0).into()).await.expect("the replay server starts")
}

pub async fn client(server: &Server) -> kube::Client {
    kubechat::cluster::client(&server.url()).await.unwrap()
}

/// Runs the kubechat binary.
pub fn kubechat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubechat")).args(args).output().expect("kubechat runs")
}

/// kubectl from PATH, pointed at a kubeconfig, with its own cache directory.
pub struct Kubectl {
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(server: &Server) -> Kubectl {
        let found = Command::new("kubectl").args(["version", "--client"]).output();
        assert!(
            found.as_ref().is_ok_and(|o| o.status.success()),
            "kubectl is needed for these tests and was not found on PATH; install it (Debian: apt-get install kubectl, or the binary from the Kubernetes release) and run again"
        );
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, replay::kubeconfig(&server.url(), "default")).unwrap();
        Kubectl { kubeconfig, cache: tempfile::tempdir().unwrap(), _dir: dir }
    }

    /// Runs kubectl off the async runtime's threads; the replay server keeps serving meanwhile.
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(&self.kubeconfig).arg("--cache-dir").arg(self.cache.path()).args(args);
        tokio::task::spawn_blocking(move || command.output().expect("kubectl runs")).await.unwrap()
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// One raw HTTP/1.1 request; returns the status code and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, dechunk(&body))
}

fn dechunk(body: &str) -> String {
    // axum answers small bodies with Content-Length, so a body is chunked only when it streams; keep both readable.
    if !body.starts_with(|c: char| c.is_ascii_hexdigit()) || !body.contains("\r\n") {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { return body.to_string() };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

/// A model server that answers every request with one canned body, and keeps the requests it got.
pub struct Recorded {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn recorded(content_type: &'static str, body: String) -> Recorded {
    recorded_slowly(content_type, body, Duration::from_millis(5)).await
}

/// The same, pausing `pause` between lines, so a test can watch a stream arrive.
pub async fn recorded_slowly(content_type: &'static str, body: String, pause: Duration) -> Recorded {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = requests.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (body, kept) = (body.clone(), kept.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let request = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buffer).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| {
                                l.to_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if rest.len() >= length {
                            break rest.to_string();
                        }
                    }
                };
                kept.lock().unwrap().push(serde_json::from_str(&request).unwrap_or(Value::Null));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(head.as_bytes()).await;
                for line in body.split_inclusive('\n') {
                    let _ = stream.write_all(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes()).await;
                    tokio::time::sleep(pause).await;
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    Recorded { url, requests, task }
}

/// The status a server at `url` answers a JSON POST to `path` announcing a body of `length` bytes, none of which is sent.
pub async fn status_before_the_body(url: &str, path: &str, length: usize) -> u16 {
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let mut chunk = [0u8; 1024];
    while !reply.windows(2).any(|w| w == b"\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer within 10 s, with the body unsent")
            .unwrap();
        assert!(n > 0, "the connection closed without an answer: {}", String::from_utf8_lossy(&reply));
        reply.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&reply);
    line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("no status in {line}"))
}

/// An HTTP client for tests; reqwest is built without a default TLS provider, so install the one kubechat uses.
pub fn http_client() -> reqwest::Client {
    kubechat::install_tls_provider();
    reqwest::Client::new()
}

/// POSTs `body` as JSON to `url` and reads the JSON reply, whatever its status.
pub async fn post_json(url: &str, body: &Value) -> Value {
    http_client().post(url).json(body).send().await.unwrap().json().await.unwrap()
}

/// A child process killed when the test ends, however it ends.
pub struct KillOnDrop(pub std::process::Child);

/// `kubechat serve --config CONFIG` as a process of its own, listening on a free loopback port (given as
/// `KUBECHAT_LISTEN`, over what the file says); its URL. It may still be starting.
pub fn serve_process(config: &std::path::Path) -> (KillOnDrop, String) {
    serve_process_logging(config, std::process::Stdio::null())
}

/// The same, its log written to `stderr`.
pub fn serve_process_logging(config: &std::path::Path, stderr: std::process::Stdio) -> (KillOnDrop, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_kubechat"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("KUBECHAT_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    (KillOnDrop(child), format!("http://127.0.0.1:{port}"))
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (reason, kind, name) of each finding of a diagnosis or answer, in order.
pub fn findings(diagnosis: &Value) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let list = diagnosis["findings"].as_array().expect("a findings list");
    list.iter().map(|f| (text(&f["reason"]), text(&f["object"]["kind"]), text(&f["object"]["name"]))).collect()
}

/// kubechat built by the same builder as `kubechat serve` ([`kubechat::app::App::build`]), serving on a free loopback
/// port until dropped or shut down.
pub struct TestApp {
    pub url: String,
    pub slack: Option<Arc<kubechat::slack::Slack>>,
    pub metrics_url: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    /// Stops taking requests; those in flight finish, then [`TestApp::task`] ends.
    pub fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn spawn_app(config: kubechat::config::Config) -> TestApp {
    let app = kubechat::app::App::build(config).await.expect("kubechat starts");
    let slack = app.slack().cloned();
    let metrics_url = app.metrics_addr().map(|a| format!("http://{a}/metrics"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.serve(listener, async {
        let _ = rx.await;
    }));
    TestApp { url, slack, metrics_url, shutdown: Some(tx), task }
}

/// The settings the tests start from: the repository's prompts, the replay server at `cluster`, the model at `model`
/// (OpenAI-compatible), open to everyone with no rate limit and no metrics port, auditing to standard output;
/// `namespace` when a question names none.
pub fn config(cluster: &str, model: &str, namespace: &str) -> kubechat::config::Config {
    let mut config = kubechat::config::RawConfig::default().validate().expect("the defaults are valid");
    config.clusters = vec![kubechat::clusters::ClusterConfig::new(
        kubechat::clusters::DEFAULT,
        kubechat::cluster::Source::Url(cluster.to_string()),
    )];
    config.namespace = Some(namespace.to_string());
    config.prompts =
        kubechat::config::PromptSource::Dir(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts")));
    config.llm = kubechat::llm::LlmConfig {
        url: model.to_string(),
        api: kubechat::llm::Api::Openai,
        model: "recorded".into(),
        ..kubechat::llm::LlmConfig::default()
    };
    config.access = kubechat::access::Access::open();
    config.http_auth = kubechat::server::HttpAuth::Open;
    (config.user_rate, config.place_rate, config.metrics) = (None, None, None);
    config
}

/// The audit log of a test app: a file, read back line by line.
pub struct Audit {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Audit {
    pub fn new() -> Audit {
        let dir = tempfile::tempdir().unwrap();
        Audit { path: dir.path().join("audit.jsonl"), _dir: dir }
    }

    pub fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each audit line is JSON"))
            .collect()
    }

    /// At least `count` lines, waiting up to 30 s for them.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        for _ in 0..300 {
            let found = self.lines();
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("fewer than {count} audit lines: {:#?}", self.lines());
    }
}

/// A fault to inject: requests whose path contains `path` get `status` (with `Retry-After: 1`), `times` times.
#[derive(Clone)]
pub struct Fault {
    pub path: &'static str,
    pub status: u16,
    pub times: usize,
}

/// A Kubernetes API in front of the replay server that injects faults.
pub struct FaultyApi {
    pub url: String,
    pub hits: Arc<Mutex<Vec<(String, u16)>>>,
    _replay: kubechat::replay::Server,
    _task: tokio::task::JoinHandle<()>,
}

pub async fn faulty_api(faults: Vec<Fault>) -> FaultyApi {
    api_proxy(scenarios(), faults).await
}

/// The same in front of a replay server of `dump`; every request it forwards is kept in `hits`.
pub async fn api_proxy(dump: Arc<Dump>, faults: Vec<Fault>) -> FaultyApi {
    let replay = serve(dump, &[]).await;
    let upstream = replay.url();
    let faults = Arc::new(Mutex::new(faults));
    let hits: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let state = (upstream, faults, hits.clone(), crate::common::http_client());
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    FaultyApi { url, hits, _replay: replay, _task: task }
}

type Upstream = (String, Arc<Mutex<Vec<Fault>>>, Arc<Mutex<Vec<(String, u16)>>>, reqwest::Client);

async fn forward(
    axum::extract::State((upstream, faults, hits, http)): axum::extract::State<Upstream>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let injected = {
        let mut faults = faults.lock().unwrap();
        faults.iter_mut().find(|f| f.times > 0 && path.contains(f.path)).map(|f| {
            f.times -= 1;
            f.status
        })
    };
    if let Some(status) = injected {
        hits.lock().unwrap().push((path, status));
        let body =
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "injected", "code": status});
        return (
            axum::http::StatusCode::from_u16(status).unwrap(),
            [("retry-after", "1"), ("content-type", "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let response = http.get(format!("{upstream}{path}")).send().await.unwrap();
    let status = response.status().as_u16();
    hits.lock().unwrap().push((path, status));
    let content_type = response.headers().get("content-type").cloned();
    let body: axum::body::Bytes = response.bytes().await.unwrap();
    let mut out = (axum::http::StatusCode::from_u16(status).unwrap(), body).into_response();
    if let Some(content_type) = content_type {
        out.headers_mut().insert("content-type", content_type);
    }
    out
}

/// The redaction corpus: every (secret, line) pair of `testdata/secrets.tsv`.
pub fn corpus() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/secrets.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(secret, line)| (secret.to_string(), line.to_string()))
        .collect()
}

/// A private key a model might write over several lines, its lines split across stream chunks.
pub const STREAMED_KEY: &str = "MIIEpAIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun";

/// An OpenAI-compatible stream in which the model repeats every line of the corpus, each split across two chunks,
/// then writes [`STREAMED_KEY`] as a key block over several chunks.
pub fn corpus_stream() -> String {
    let mut chunks: Vec<String> = Vec::new();
    for (_, line) in corpus() {
        let line = format!("{line}\n");
        let cut = line.char_indices().map(|(i, _)| i).nth(line.chars().count() / 2).unwrap();
        chunks.push(line[..cut].to_string());
        chunks.push(line[cut..].to_string());
    }
    let key = STREAMED_KEY;
    for part in
        ["-----BEGIN RSA PRIVATE ", "KEY-----\n", &key[..30], &key[30..], "\n", "-----END RSA PRIVATE KEY-----\n"]
    {
        chunks.push(part.to_string());
    }
    let mut events: Vec<String> = chunks
        .iter()
        .map(|c| serde_json::json!({"choices": [{"index": 0, "delta": {"content": c}}]}).to_string())
        .collect();
    events.push(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.to_string());
    events.iter().map(|e| format!("data: {e}\n\n")).collect::<String>() + "data: [DONE]\n\n"
}

/// Fails naming the first secret of the corpus (or a part of the streamed key) that `text` holds.
pub fn assert_no_secret(text: &str, what: &str) {
    for (secret, _) in corpus() {
        assert!(!text.contains(&secret), "{secret:?} leaked into {what}");
    }
    assert!(
        !text.contains(&STREAMED_KEY[..30]) && !text.contains(&STREAMED_KEY[30..]),
        "the streamed key leaked into {what}"
    );
}

/// The files under `dir`, at any depth, whose names end in `.extension`.
pub fn files_under(dir: &std::path::Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path, extension));
        } else if path.extension().is_some_and(|e| e == extension) {
            files.push(path);
        }
    }
    files
}
