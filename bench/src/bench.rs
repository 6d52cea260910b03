//! The benchmarks: how fast and light kubechat is, measured side by side in one run, written to
//! `docs/benchmarks.md`.
//!
//! Every number comes from the real code paths: signed slash commands through the Slack HTTP front-end, the reader and
//! the findings in a child process against the replay server (with `kubectl` gathering the same information from the
//! same server, for the ratio), the prompts as they are sent, the HTTP API end to end, and `kubechat serve` started
//! as a process. Only the two far ends are stand-ins: Slack's Web API is a local sink that answers `ok`, and the model
//! is a local OpenAI-compatible server that answers at once and times itself, so its time can be subtracted.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::synthetic;
use kubechat::access::{Access, Asker, Platform};
use kubechat::answer;
use kubechat::app::App;
use kubechat::cluster::{self, Limits, Source};
use kubechat::config::PromptSource;
use kubechat::dump::Dump;
use kubechat::llm::{Api, LlmConfig};
use kubechat::prompt::Prompts;
use kubechat::replay;
use kubechat::request::{Intent, Request, Scope};
use kubechat::secret::Secret;
use kubechat::server::HttpAuth;
use kubechat::slack::{SlackConfig, SlackMode};

/// The issue's goals, shown beside each measurement.
const ACK_P99_GOAL: Duration = Duration::from_millis(20);
const READ_GOAL_PODS: usize = 4000;
const READ_GOAL: Duration = Duration::from_secs(1);
const READ_RSS_GOAL_MB: f64 = 150.0;
/// The pods of the dump file `kubechat diagnose --dump` is timed on: 19 MB of YAML, with three events a pod.
const DUMP_PODS: usize = 7100;
/// Its goals: the whole command, loading included.
const DUMP_GOAL: Duration = Duration::from_secs(1);
const DUMP_RSS_GOAL_MB: f64 = 200.0;
/// Pods, whole-process time and peak RSS the reading must stay within at larger sizes.
const SCALE_GOALS: [(usize, Duration, f64); 2] =
    [(10_000, Duration::from_millis(600), 150.0), (30_000, Duration::from_secs(2), 400.0)];
const OVERHEAD_P50_GOAL: Duration = Duration::from_millis(50);

const SIGNING_SECRET: &str = "bench-signing-secret";
const CHANNEL: &str = "CBENCH";
/// The demo namespace the Slack and HTTP measurements diagnose.
const NAMESPACE: &str = "crashloop";
/// `slack.max_pending`'s default.
const DEFAULT_MAX_PENDING: usize = 20;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Namespace sizes in pods, each with three times as many events.
    pub sizes: Vec<usize>,
    /// Concurrent Slack clients.
    pub clients: usize,
    /// Slash commands each client sends, one after the other.
    pub commands_per_client: usize,
    /// Runs of each timed command; the median is reported.
    pub repeats: usize,
    /// End-to-end requests to the HTTP API.
    pub requests: usize,
    /// The prompt directory `kubechat serve` is started with.
    pub prompts: PathBuf,
    pub kubectl: String,
}

/// Runs every benchmark and returns the report as Markdown.
pub async fn run(options: &Options) -> anyhow::Result<String> {
    let machine = Machine::read(&options.kubectl)?;
    eprintln!("bench: {} cores, {:.1} GiB, {}", machine.cores, machine.memory_gib, machine.cpu);
    let stubs = Stubs::start().await?;
    let demo = Arc::new(Dump::demo());

    eprintln!("bench: ack latency of {} clients x {} slash commands", options.clients, options.commands_per_client);
    let mut acks = Vec::new();
    for max_pending in [DEFAULT_MAX_PENDING, options.clients * options.commands_per_client] {
        let ack = ack_latency(options, &stubs, demo.clone(), max_pending).await?;
        eprintln!("bench: {}", ack.summary());
        acks.push(ack);
    }

    let mut scaling = Vec::new();
    for &pods in &options.sizes {
        eprintln!("bench: reading {pods} pods and {} events, kubechat and kubectl", pods * 3);
        let row = scale(options, pods).await?;
        eprintln!("bench: {}", row.summary());
        scaling.push(row);
    }

    eprintln!("bench: kubechat diagnose --dump of a YAML dump of {DUMP_PODS} pods");
    let dump = dump_file(options).await?;
    eprintln!("bench: {}", dump.summary());

    eprintln!("bench: prompt tokens per scenario");
    let tokens = prompt_tokens(demo.clone()).await?;

    eprintln!("bench: end-to-end overhead of {} HTTP requests", options.requests);
    let overhead = end_to_end(options, &stubs, demo.clone()).await?;
    eprintln!("bench: {}", overhead.summary());

    eprintln!("bench: start-up and idle memory of `kubechat serve`");
    let startup = startup(options, &stubs, demo).await?;

    Ok(markdown(&machine, options, &Measured { acks, scaling, dump, tokens, overhead, startup }))
}

// ---------------------------------------------------------------------------------------------------------------
// The machine

struct Machine {
    cores: usize,
    memory_gib: f64,
    cpu: String,
    date: String,
    kubectl: String,
}

impl Machine {
    fn read(kubectl: &str) -> anyhow::Result<Machine> {
        let meminfo = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
        let memory_kb: f64 = field(&meminfo, "MemTotal:").and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown CPU")
            .to_string();
        let version = Command::new(kubectl).args(["version", "--client", "-o", "json"]).output().with_context(|| {
            format!("cannot run {kubectl}: the benchmark compares kubechat with kubectl; install kubectl (Debian: apt-get install kubernetes-client) or pass --kubectl")
        })?;
        let version: serde_json::Value = serde_json::from_slice(&version.stdout).unwrap_or_default();
        Ok(Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: memory_kb / 1024.0 / 1024.0,
            cpu,
            date: jiff::Zoned::now().strftime("%Y-%m-%d").to_string(),
            kubectl: version["clientVersion"]["gitVersion"].as_str().unwrap_or("unknown").to_string(),
        })
    }
}

/// The first number after `name` in a `/proc` file (`VmHWM:   12345 kB`).
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|rest| rest.split_whitespace().next())
}

/// A process's memory in MB, from `/proc/<pid>/status`: `VmRSS:` now, or `VmHWM:` its peak.
fn memory_mb(pid: &str, name: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field(&status, name)?.parse::<f64>().ok().map(|kb| kb / 1024.0)
}

// ---------------------------------------------------------------------------------------------------------------
// Stand-ins for Slack's Web API and the model

/// The local Slack Web API sink and the model server, on a runtime of their own so they do not share the measured
/// server's threads.
struct Stubs {
    slack_url: String,
    model_url: String,
    slack_calls: Arc<AtomicUsize>,
    /// How long each model request took, from its arrival to its last byte, in arrival order.
    model_times: Arc<Mutex<Vec<Duration>>>,
    _runtime: Background,
}

impl Stubs {
    async fn start() -> anyhow::Result<Stubs> {
        let slack_calls = Arc::new(AtomicUsize::new(0));
        let model_times = Arc::new(Mutex::new(Vec::new()));
        let (calls, times) = (slack_calls.clone(), model_times.clone());
        let runtime = Background::start("bench-stubs", 1, move || async move {
            let slack = Router::new().fallback(move || {
                calls.fetch_add(1, Ordering::Relaxed);
                async {
                    axum::Json(json!({
                        "ok": true, "ts": "1700000000.000100", "channel": CHANNEL, "user_id": "UBOT", "user": "kubechat",
                        "bot_id": "BBOT", "team_id": "T1", "team": "bench", "url": "https://bench.slack.com/",
                        "messages": [], "has_more": false,
                    }))
                }
            });
            let model = Router::new()
                .route("/v1/models", axum::routing::get(|| async { axum::Json(json!({"data": [{"id": "bench"}]})) }))
                .route(
                    "/v1/chat/completions",
                    axum::routing::post(move || {
                        let started = Instant::now();
                        let times = times.clone();
                        async move {
                            let body = model_stream();
                            times.lock().expect("not poisoned").push(started.elapsed());
                            ([("content-type", "text/event-stream")], body).into_response()
                        }
                    }),
                );
            vec![Service::Router(slack), Service::Router(model)]
        })
        .await?;
        Ok(Stubs {
            slack_url: format!("{}/api", runtime.urls[0]),
            model_url: runtime.urls[1].clone(),
            slack_calls,
            model_times,
            _runtime: runtime,
        })
    }

    /// Waits until Slack has had no calls for a second: the background answers of the last measurement are done.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut last = usize::MAX;
        while Instant::now() < deadline {
            let now = self.slack_calls.load(Ordering::Relaxed);
            if now == last {
                return;
            }
            last = now;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// An answer of four lines, streamed in OpenAI's format.
fn model_stream() -> String {
    let mut out = String::new();
    for (i, line) in
        ["The pod is crash-looping.\\n", "Its previous log says why.\\n", "Fix the cause.\\n"].iter().enumerate()
    {
        let role = if i == 0 { r#""role":"assistant","# } else { "" };
        let _ = write!(out, "data: {{\"choices\":[{{\"index\":0,\"delta\":{{{role}\"content\":\"{line}\"}}}}]}}\n\n");
    }
    out.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    out + "data: [DONE]\n\n"
}

/// What a background thread serves: a plain router, or kubechat as `kubechat serve` builds it.
enum Service {
    Router(Router),
    App(Box<App>),
}

/// Routers served on loopback from a runtime on threads of their own, stopped on drop.
struct Background {
    urls: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    async fn start<F, Fut>(name: &str, threads: usize, routers: F) -> anyhow::Result<Background>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Vec<Service>> + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, urls) = tokio::sync::oneshot::channel::<std::io::Result<Vec<String>>>();
        let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let mut urls = Vec::new();
                for service in routers().await {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(listener) => listener,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    urls.push(format!("http://{}", listener.local_addr().expect("bound")));
                    match service {
                        Service::Router(router) => tokio::spawn(async move { axum::serve(listener, router).await }),
                        Service::App(app) => tokio::spawn(app.serve(listener, std::future::pending())),
                    };
                }
                let _ = ready.send(Ok(urls));
                let _ = stopped.await;
            });
        })?;
        let urls = urls.await.context("the background server thread ended")??;
        Ok(Background { urls, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A replay server for `dump` on a thread of its own, as an API server is another process in a cluster.
async fn replay_thread(dump: Arc<Dump>) -> anyhow::Result<Background> {
    Background::start("bench-replay", 1, move || async move {
        vec![Service::Router(replay::router(dump, replay::Options::default()))]
    })
    .await
}

/// kubechat's HTTP API (with the Slack HTTP routes) over the demo cluster, on two threads of its own, as in a pod
/// with two cores.
async fn kubechat_server(stubs: &Stubs, dump: Arc<Dump>, max_pending: usize) -> anyhow::Result<Served> {
    let (slack_url, model_url) = (stubs.slack_url.clone(), stubs.model_url.clone());
    let cluster = replay_thread(dump).await?;
    let cluster_url = cluster.urls[0].clone();
    let (result, outcome) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let server = Background::start("bench-kubechat", 2, move || async move {
        let built = async {
            // kubechat as `kubechat serve` builds it: the HTTP API with Slack in HTTP mode, open, no rate limits.
            let mut config = kubechat::config::RawConfig::default().validate()?;
            config.clusters =
                vec![kubechat::clusters::ClusterConfig::new(kubechat::clusters::DEFAULT, Source::Url(cluster_url))];
            config.namespace = Some(NAMESPACE.into());
            config.prompts = PromptSource::Builtin;
            config.llm = LlmConfig { url: model_url, api: Api::Openai, model: "bench".into(), ..Default::default() };
            config.access = Access::open();
            config.http_auth = HttpAuth::Open;
            (config.user_rate, config.place_rate, config.metrics) = (None, None, None);
            // Audit lines are written as in production, to a file nobody reads instead of standard output (the report's).
            config.audit = Some("/dev/null".into());
            config.slack = Some(SlackConfig {
                mode: SlackMode::Http,
                bot_token: Secret::new("xoxb-bench"),
                app_token: Secret::new(""),
                signing_secret: Secret::new(SIGNING_SECRET),
                api_url: slack_url,
                ask_command: "/ask".into(),
                diagnose_command: "/diagnose".into(),
                channel_namespaces: vec![(CHANNEL.into(), NAMESPACE.into())],
                update_interval: Duration::from_secs(1),
                max_pending,
                attach_context: true,
            });
            anyhow::Ok(App::build(config).await?)
        }
        .await;
        match built {
            Ok(app) => {
                let _ = result.send(Ok(()));
                vec![Service::App(Box::new(app))]
            }
            Err(e) => {
                let _ = result.send(Err(e));
                Vec::new()
            }
        }
    })
    .await?;
    outcome.await.context("the kubechat server thread ended")??;
    Ok(Served { server, _cluster: cluster })
}

/// kubechat's server and the API server it reads, stopped together.
struct Served {
    server: Background,
    _cluster: Background,
}

// ---------------------------------------------------------------------------------------------------------------
// Latencies

/// Sorted samples.
struct Latencies {
    samples: Vec<Duration>,
    failed: usize,
}

impl Latencies {
    fn new(mut samples: Vec<Duration>, failed: usize) -> Latencies {
        samples.sort();
        Latencies { samples, failed }
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.samples.len() as f64).ceil() as usize).clamp(1, self.samples.len());
        self.samples[rank - 1]
    }

    fn summary(&self) -> String {
        format!(
            "{} samples: p50 {}, p99 {}, max {}{}",
            self.samples.len(),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
            if self.failed > 0 { format!(", {} FAILED", self.failed) } else { String::new() }
        )
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.0} ms") }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn goal(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Slack ack latency

struct Ack {
    max_pending: usize,
    latencies: Latencies,
    accepted: usize,
    busy: usize,
}

impl Ack {
    fn summary(&self) -> String {
        format!(
            "acks with max_pending {}: {} ({} accepted, {} told busy)",
            self.max_pending,
            self.latencies.summary(),
            self.accepted,
            self.busy
        )
    }
}

async fn ack_latency(options: &Options, stubs: &Stubs, demo: Arc<Dump>, max_pending: usize) -> anyhow::Result<Ack> {
    let server = kubechat_server(stubs, demo, max_pending).await?;
    let address = server.server.urls[0].trim_start_matches("http://").to_string();
    let start = Arc::new(tokio::sync::Barrier::new(options.clients));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..options.clients {
        // Each client's requests are signed before the clock starts and sent over a connection of its own, opened
        // beforehand, in plain HTTP/1.1: the load generator shares the two cores, so it does as little as it can.
        let requests: Vec<Vec<u8>> = (0..options.commands_per_client)
            .map(|n| slash_command(&address, c, n, &format!("{}/response/{c}", stubs.slack_url)))
            .collect();
        let mut connection = tokio::net::TcpStream::connect(&address).await?;
        connection.set_nodelay(true)?;
        let start = start.clone();
        clients.spawn(async move {
            let mut results = Vec::new();
            start.wait().await;
            for request in requests {
                let sent = Instant::now();
                let outcome = exchange(&mut connection, &request).await;
                results.push((sent.elapsed(), outcome));
            }
            results
        });
    }
    let (mut samples, mut failed, mut busy) = (Vec::new(), 0, 0);
    while let Some(results) = clients.join_next().await {
        for (elapsed, outcome) in results? {
            match outcome {
                Some(body) => {
                    busy += usize::from(body.contains("is busy with"));
                    samples.push(elapsed);
                }
                None => failed += 1,
            }
        }
    }
    stubs.settle().await;
    drop(server);
    let accepted = samples.len() - busy;
    Ok(Ack { max_pending, latencies: Latencies::new(samples, failed), accepted, busy })
}

/// A signed `/diagnose` slash command, as Slack posts it.
fn slash_command(host: &str, client: usize, n: usize, response_url: &str) -> Vec<u8> {
    let body = serde_urlencoded::to_string([
        ("team_id", "T1"),
        ("channel_id", CHANNEL),
        ("channel_name", "bench"),
        ("user_id", &format!("U{client:04}")),
        ("user_name", &format!("oncall{client}")),
        ("command", "/diagnose"),
        ("text", ""),
        ("response_url", response_url),
        ("trigger_id", &format!("{client}.{n}")),
    ])
    .expect("form fields encode");
    let timestamp = jiff::Timestamp::now().as_second().to_string();
    let signature = kubechat::slack::signature::sign(SIGNING_SECRET.as_bytes(), &timestamp, body.as_bytes());
    format!(
        "POST /slack/commands HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/x-www-form-urlencoded\r\n\
         x-slack-request-timestamp: {timestamp}\r\nx-slack-signature: {signature}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends one request on a kept-alive connection and reads the response; its body when the status is 200.
async fn exchange(connection: &mut tokio::net::TcpStream, request: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    connection.write_all(request).await.ok()?;
    let mut response = Vec::with_capacity(1024);
    let mut buffer = [0u8; 4096];
    loop {
        let n = connection.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        response.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&response);
        let Some(end) = text.find("\r\n\r\n") else { continue };
        let length = text[..end].lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        })?;
        if response.len() >= end + 4 + length {
            let ok = text.starts_with("HTTP/1.1 200");
            return ok.then(|| text[end + 4..end + 4 + length].to_string());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Retrieval and findings against namespace size, beside kubectl

/// What `kubechat-bench --probe-read` prints: one reading of a namespace, timed inside the process.
#[derive(Debug, Serialize, Deserialize)]
pub struct Probe {
    pub read_ms: f64,
    pub findings_ms: f64,
    pub pods: usize,
    pub events: usize,
    pub findings: Vec<String>,
    pub peak_rss_mb: f64,
}

/// Reads `namespace` from the API at `url` and finds what is wrong, as kubechat does for a question; reports the
/// time and this process's peak memory. Run in a fresh process by [`run`], so the memory is this work's alone.
pub async fn probe_read(url: &str, namespace: &str) -> anyhow::Result<Probe> {
    let client = cluster::client(url).await?;
    let scope = Scope::parse("default", namespace, None)?;
    let started = Instant::now();
    let facts = cluster::read(&client, &scope, &Limits::default()).await?;
    let read = started.elapsed();
    let diagnosis = kubechat::report::diagnose(&facts, 6000);
    let findings = started.elapsed() - read;
    let probe = Probe {
        read_ms: read.as_secs_f64() * 1000.0,
        findings_ms: findings.as_secs_f64() * 1000.0,
        pods: facts.pods.len(),
        events: facts.events.len(),
        findings: diagnosis.findings.iter().map(|f| format!("{} {}", f.reason, f.object.name)).collect(),
        peak_rss_mb: memory_mb("self", "VmHWM:").unwrap_or(0.0),
    };
    // As `kubechat diagnose` does at its end: the process is about to exit, which gives the memory back at once.
    std::mem::forget((facts, diagnosis, client));
    Ok(probe)
}

/// Serves a generated namespace of `pods` pods, as [`scale`] reads it, until interrupted: the other half of
/// profiling `--probe-read`.
pub async fn serve_synthetic(namespace: &str, pods: usize) -> anyhow::Result<()> {
    let dump = Arc::new(synthetic::namespace(namespace, pods, pods * 3, true));
    let server = replay_thread(dump).await?;
    println!("{}", server.urls[0]);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

struct Scale {
    pods: usize,
    /// kubechat's reading and findings inside its process (median).
    inside: Duration,
    /// kubechat's whole process, start to exit (median), to compare with kubectl's.
    kubechat: Duration,
    peak_rss_mb: f64,
    kubectl: Duration,
    kubectl_rss_mb: f64,
    findings: Vec<String>,
}

impl Scale {
    fn ratio(&self) -> f64 {
        self.kubechat.as_secs_f64() / self.kubectl.as_secs_f64().max(f64::EPSILON)
    }

    fn summary(&self) -> String {
        format!(
            "{} pods: kubechat {} in process ({} whole, peak {:.0} MB), kubectl {} (peak {:.0} MB), ratio {:.2}",
            self.pods,
            ms(self.inside),
            ms(self.kubechat),
            self.peak_rss_mb,
            ms(self.kubectl),
            self.kubectl_rss_mb,
            self.ratio()
        )
    }
}

async fn scale(options: &Options, pods: usize) -> anyhow::Result<Scale> {
    let namespace = "large";
    let dump = Arc::new(synthetic::namespace(namespace, pods, pods * 3, true));
    let server = replay_thread(dump).await?;
    let url = server.urls[0].clone();
    let dir = tempfile_dir()?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, replay::kubeconfig(&url, namespace))?;
    let exe = std::env::current_exe().context("cannot find the benchmark's own executable")?;
    let kubectl = |args: &[&str]| {
        let mut command = Command::new(&options.kubectl);
        command.arg("--kubeconfig").arg(&kubeconfig).arg("--cache-dir").arg(dir.join("cache")).args(args);
        command
    };
    let problem = synthetic::broken_pod(pods);
    let tail = Limits::default().tail_lines.to_string();
    let limit = Limits::default().limit_bytes.to_string();
    let kubectl_runs = [
        vec!["get", "pods,events", "-n", namespace, "-o", "json"],
        vec!["logs", "-n", namespace, &problem, "--previous", "--tail", &tail, "--limit-bytes", &limit],
    ];
    // kubechat's runs first, then kubectl's: a kubectl that has just held 1.7 GB leaves the machine slower for a while
    // after it (a 30,000-pod read measured 1.7 s alone and 2.2 to 4.4 s right after one), which is not kubechat's cost.
    let (mut inside, mut whole, mut kubectl_times) = (Vec::new(), Vec::new(), Vec::new());
    let (mut peak, mut kubectl_peak, mut findings) = (0f64, 0f64, Vec::new());
    for _ in 0..options.repeats {
        let mut probe = Command::new(&exe);
        probe.args(["--probe-read", &url, "--namespace", namespace]);
        let run = timed(probe).await?;
        let reading: Probe = serde_json::from_slice(&run.stdout)
            .with_context(|| format!("the probe printed no reading: {}", String::from_utf8_lossy(&run.stderr)))?;
        if reading.pods != pods || reading.events != pods * 3 {
            bail!("the probe read {} pods and {} events, not {pods} and {}", reading.pods, reading.events, pods * 3);
        }
        inside.push(Duration::from_secs_f64((reading.read_ms + reading.findings_ms) / 1000.0));
        whole.push(run.elapsed);
        peak = peak.max(reading.peak_rss_mb);
        findings = reading.findings;
    }
    // One run each first: kubectl fills its discovery cache, as on an engineer's machine.
    for args in &kubectl_runs {
        timed(kubectl(args)).await?;
    }
    for _ in 0..options.repeats {
        let mut elapsed = Duration::ZERO;
        for args in &kubectl_runs {
            let run = timed(kubectl(args)).await?;
            elapsed += run.elapsed;
            kubectl_peak = kubectl_peak.max(run.peak_rss_mb);
        }
        kubectl_times.push(elapsed);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Scale {
        pods,
        inside: median(inside),
        kubechat: median(whole),
        peak_rss_mb: peak,
        kubectl: median(kubectl_times),
        kubectl_rss_mb: kubectl_peak,
        findings,
    })
}

/// `kubechat diagnose --dump` of one YAML dump file, as `kubectl get -o yaml` writes a large namespace.
struct DumpFile {
    bytes: u64,
    pods: usize,
    elapsed: Duration,
    peak_rss_mb: f64,
    findings: Vec<String>,
}

impl DumpFile {
    fn summary(&self) -> String {
        format!(
            "a {:.1} MB dump of {} pods diagnosed in {} (peak {:.0} MB)",
            self.bytes as f64 / 1e6,
            self.pods,
            ms(self.elapsed),
            self.peak_rss_mb
        )
    }
}

async fn dump_file(options: &Options) -> anyhow::Result<DumpFile> {
    let dir = tempfile_dir()?;
    let path = dir.join("large.yaml");
    std::fs::write(&path, synthetic::yaml("large", DUMP_PODS)?)?;
    let bytes = std::fs::metadata(&path)?.len();
    let exe = kubechat_exe()?;
    let (mut times, mut peak, mut findings) = (Vec::new(), 0f64, Vec::new());
    for _ in 0..options.repeats {
        let mut command = Command::new(&exe);
        command.arg("diagnose").arg("--dump").arg(&path).args(["-n", "large", "--no-llm", "--output", "json"]);
        let run = timed(command).await?;
        let diagnosis: serde_json::Value = serde_json::from_slice(&run.stdout).with_context(|| {
            format!("kubechat diagnose printed no diagnosis: {}", String::from_utf8_lossy(&run.stderr))
        })?;
        findings = diagnosis["findings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|f| format!("{} {}", f["reason"].as_str().unwrap_or("?"), f["object"]["name"].as_str().unwrap_or("?")))
            .collect();
        times.push(run.elapsed);
        peak = peak.max(run.peak_rss_mb);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(DumpFile { bytes, pods: DUMP_PODS, elapsed: median(times), peak_rss_mb: peak, findings })
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kubechat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

struct Run {
    elapsed: Duration,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The peak memory last seen while it ran, sampled every few milliseconds: a lower bound.
    peak_rss_mb: f64,
}

/// Runs a command to its end off the async threads, timing it and sampling its peak memory; fails on a failure.
async fn timed(mut command: Command) -> anyhow::Result<Run> {
    let shown = format!("{command:?}");
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {shown}"))?;
        let pid = child.id().to_string();
        let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let stdout = std::thread::spawn(move || {
            let mut buffer = Vec::new();
            let _ = std::io::Read::read_to_end(&mut out, &mut buffer);
            buffer
        });
        let stderr = std::thread::spawn(move || {
            let mut buffer = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut buffer);
            buffer
        });
        let mut peak = 0f64;
        let status = loop {
            if let Some(mb) = memory_mb(&pid, "VmHWM:") {
                peak = peak.max(mb);
            }
            if let Some(status) = child.try_wait()? {
                break status;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let elapsed = started.elapsed();
        let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
        if !status.success() {
            bail!("{shown} failed ({status}): {}", String::from_utf8_lossy(&stderr));
        }
        Ok(Run { elapsed, stdout, stderr, peak_rss_mb: peak })
    })
    .await?
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Prompt tokens per scenario

struct Tokens {
    namespace: String,
    prompt: usize,
    context: usize,
    context_budget: usize,
}

const NUM_CTX: usize = 8192;
const ANSWER_TOKENS: usize = 1024;

async fn prompt_tokens(demo: Arc<Dump>) -> anyhow::Result<Vec<Tokens>> {
    let namespaces: Vec<String> = demo.namespaces().map(str::to_string).collect();
    let replay = replay::start(demo, replay::Options::default(), ([127, 0, 0, 1], 0).into()).await?;
    let client = cluster::client(&replay.url()).await?;
    let prompts = Prompts::builtin();
    let prompt = prompts.get("diagnose").context("the built-in prompts have no diagnose prompt")?;
    let mut rows = Vec::new();
    for namespace in namespaces {
        let scope = Scope::parse("default", &namespace, None)?;
        let facts = cluster::read(&client, &scope, &Limits::default()).await?;
        let asker = Asker { platform: Platform::Cli, place: None, user: "bench".into() };
        let request = Request::new("bench", asker, Intent::Diagnose, scope, "", Vec::new());
        let prepared = answer::prepare(&facts, &request, prompt, NUM_CTX, ANSWER_TOKENS, jiff::Timestamp::now())?;
        rows.push(Tokens {
            namespace,
            prompt: prepared.prompt_tokens,
            context: kubechat::tokens::estimate(&prepared.diagnosis.context),
            context_budget: prepared.context_budget,
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------------------------------
// 4. End-to-end overhead

async fn end_to_end(options: &Options, stubs: &Stubs, demo: Arc<Dump>) -> anyhow::Result<Latencies> {
    let server = kubechat_server(stubs, demo, 20).await?;
    let url = format!("{}/diagnose", server.server.urls[0]);
    let http = reqwest::Client::new();
    let (mut samples, mut failed) = (Vec::new(), 0);
    for n in 0..options.requests + 3 {
        let before = stubs.model_times.lock().expect("not poisoned").len();
        let started = Instant::now();
        let response = http.post(&url).json(&json!({"namespace": NAMESPACE})).send().await;
        let ok = match response {
            Ok(r) if r.status().is_success() => r.text().await.is_ok(),
            _ => false,
        };
        let total = started.elapsed();
        let model: Duration = stubs.model_times.lock().expect("not poisoned")[before..].iter().sum();
        match (ok, n < 3) {
            (_, true) => {} // warm-up
            (true, false) => samples.push(total.saturating_sub(model)),
            (false, false) => failed += 1,
        }
    }
    Ok(Latencies::new(samples, failed))
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Start-up and idle memory

struct Startup {
    ready: Duration,
    idle_rss_mb: f64,
    after_answer_rss_mb: f64,
}

async fn startup(options: &Options, stubs: &Stubs, demo: Arc<Dump>) -> anyhow::Result<Startup> {
    if !options.prompts.join("diagnose.md").exists() {
        bail!("no prompts at {}: run the benchmark from the repository, or pass --prompts", options.prompts.display());
    }
    let cluster = replay_thread(demo).await?;
    let dir = tempfile_dir()?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, replay::kubeconfig(&cluster.urls[0], NAMESPACE))?;
    let exe = kubechat_exe()?;
    let http = reqwest::Client::new();
    let (mut ready, mut idle, mut after) = (Vec::new(), 0f64, 0f64);
    for _ in 0..options.repeats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let mut child = Command::new(&exe)
            .arg("serve")
            .env_clear()
            .env("KUBECHAT_LISTEN", format!("127.0.0.1:{port}"))
            .env("KUBECHAT_KUBECONFIG", &kubeconfig)
            .env("KUBECHAT_PROMPTS", &options.prompts)
            .env("KUBECHAT_LLM_URL", &stubs.model_url)
            .env("KUBECHAT_LLM_API", "openai")
            .env("KUBECHAT_LLM_MODEL", "bench")
            .env("KUBECHAT_HTTP_AUTH", "open")
            .env("KUBECHAT_ACCESS_DEFAULT", "['*']")
            .env("KUBECHAT_AUDIT_PATH", "/dev/null")
            .env("KUBECHAT_METRICS_LISTEN", "off")
            .env("KUBECHAT_SLACK_ENABLED", "true")
            .env("KUBECHAT_SLACK_MODE", "http")
            .env("KUBECHAT_SLACK_BOT_TOKEN", "xoxb-bench")
            .env("KUBECHAT_SLACK_SIGNING_SECRET", SIGNING_SECRET)
            .env("KUBECHAT_SLACK_API_URL", &stubs.slack_url)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start kubechat serve")?;
        let pid = child.id().to_string();
        let took = loop {
            if let Some(status) = child.try_wait()? {
                let mut stderr = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
                }
                bail!("kubechat serve exited ({status}) before it was ready: {stderr}");
            }
            if let Ok(r) = http.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                bail!("kubechat serve was not ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        ready.push(took);
        tokio::time::sleep(Duration::from_secs(2)).await;
        idle = idle.max(memory_mb(&pid, "VmRSS:").unwrap_or(0.0));
        let answered = http.post(format!("{base}/diagnose")).json(&json!({"namespace": NAMESPACE})).send().await;
        let answered = match answered {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
            Err(e) => Err(e.to_string()),
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        after = after.max(memory_mb(&pid, "VmRSS:").unwrap_or(0.0));
        let _ = child.kill();
        let _ = child.wait();
        if let Err(e) = answered {
            bail!("kubechat serve did not answer POST /diagnose: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Startup { ready: median(ready), idle_rss_mb: idle, after_answer_rss_mb: after })
}

// ---------------------------------------------------------------------------------------------------------------
// The report

/// Everything one run measured.
struct Measured {
    acks: Vec<Ack>,
    scaling: Vec<Scale>,
    dump: DumpFile,
    tokens: Vec<Tokens>,
    overhead: Latencies,
    startup: Startup,
}

fn markdown(machine: &Machine, options: &Options, measured: &Measured) -> String {
    let Measured { acks, scaling, dump, tokens, overhead, startup } = measured;
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench` (`kubechat-bench`, {}) on {}, on {} cores and {:.1} GiB of memory ({}), with \
         kubectl {}. Every comparison ran side by side in this one run. How each number is taken: the end of this \
         page.\n",
        if cfg!(debug_assertions) { "a DEBUG build: these numbers say little" } else { "release build" },
        machine.date,
        machine.cores,
        machine.memory_gib,
        machine.cpu,
        machine.kubectl
    );

    let _ = writeln!(md, "## Slack acknowledgement latency\n");
    let _ = writeln!(
        md,
        "{} clients at once, each sending {} signed `/diagnose` slash commands one after the other ({} in all); \
         the time from sending to Slack's HTTP response (on connections opened beforehand, requests signed \
         beforehand), while the answers run in the background. Once with \
         `slack.max_pending` at its default ({DEFAULT_MAX_PENDING}: past it, askers are told kubechat is busy), once \
         with every command accepted, each answer reading the namespace and asking the model.\n",
        options.clients,
        options.commands_per_client,
        options.clients * options.commands_per_client
    );
    let _ = writeln!(md, "| max_pending | p50 | p99 | max | accepted | told busy | failed | goal: p99 ≤ 20 ms |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    for ack in acks {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            ack.max_pending,
            ms(ack.latencies.quantile(0.5)),
            ms(ack.latencies.quantile(0.99)),
            ms(ack.latencies.quantile(1.0)),
            ack.accepted,
            ack.busy,
            ack.latencies.failed,
            goal(ack.latencies.quantile(0.99) <= ACK_P99_GOAL && ack.latencies.failed == 0)
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Reading a namespace, beside kubectl\n");
    let _ = writeln!(
        md,
        "A namespace of N running pods and 3N events, one pod crash-looping. kubechat: its reader and findings in a \
         fresh process (`kubechat-bench --probe-read`). kubectl: `get pods,events -o json` and the crash-looping \
         pod's previous log (`logs --previous --tail 200 --limit-bytes 65536`), the same information. Both against \
         the same replay server; medians of {} runs, kubechat's before kubectl's (a kubectl that has just held \
         gigabytes leaves the machine slower for a while).\n",
        options.repeats
    );
    let _ = writeln!(
        md,
        "| pods | events | kubechat, read + findings | kubechat, whole process | peak RSS | kubectl | kubectl peak RSS | kubechat / kubectl | findings |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for row in scaling {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} MB | {} | {:.0} MB | {:.2} | {} |",
            row.pods,
            row.pods * 3,
            ms(row.inside),
            ms(row.kubechat),
            row.peak_rss_mb,
            ms(row.kubectl),
            row.kubectl_rss_mb,
            row.ratio(),
            row.findings.join(", ")
        );
    }
    if let Some(row) = scaling.iter().find(|r| r.pods == READ_GOAL_PODS) {
        let _ = writeln!(
            md,
            "\nGoals at {READ_GOAL_PODS} pods: under 1 s ({}: {}), under half of kubectl's time ({}: {:.2}), peak RSS \
             ≤ 150 MB ({}: {:.0} MB).",
            goal(row.kubechat < READ_GOAL),
            ms(row.kubechat),
            goal(row.ratio() < 0.5),
            row.ratio(),
            goal(row.peak_rss_mb <= READ_RSS_GOAL_MB),
            row.peak_rss_mb
        );
    }

    for (pods, time, rss) in SCALE_GOALS {
        if let Some(row) = scaling.iter().find(|r| r.pods == pods) {
            let _ = writeln!(
                md,
                "\nGoals at {pods} pods, whole process: under {} ({}: {}), peak RSS ≤ {rss:.0} MB ({}: {:.0} MB).",
                ms(time),
                goal(row.kubechat < time),
                ms(row.kubechat),
                goal(row.peak_rss_mb <= rss),
                row.peak_rss_mb
            );
        }
    }
    let (ten, thirty) = (scaling.iter().find(|r| r.pods == 10_000), scaling.iter().find(|r| r.pods == 30_000));
    if let (Some(ten), Some(thirty)) = (ten, thirty) {
        let growth = thirty.inside.as_secs_f64() / ten.inside.as_secs_f64().max(f64::EPSILON);
        let _ = writeln!(
            md,
            "\nGrowth from 10,000 to 30,000 pods, read + findings: {growth:.2}× for 3× the pods ({}: under 3.5×).",
            goal(growth < 3.5)
        );
    }

    let _ = writeln!(md, "\n## A dump file, diagnosed\n");
    let _ = writeln!(
        md,
        "`kubechat diagnose --dump FILE -n large --no-llm --output json` of one YAML `List` of {} pods and {} events, \
         as `kubectl get -o yaml` writes them: the whole command in a fresh process, loading the file, serving it in \
         process and reading it; median of {} runs.\n",
        dump.pods,
        dump.pods * 3,
        options.repeats
    );
    let _ = writeln!(md, "| file | pods | events | whole process | peak RSS | findings |");
    let _ = writeln!(md, "|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| {:.1} MB | {} | {} | {} | {:.0} MB | {} |",
        dump.bytes as f64 / 1e6,
        dump.pods,
        dump.pods * 3,
        ms(dump.elapsed),
        dump.peak_rss_mb,
        dump.findings.join(", ")
    );
    let _ = writeln!(
        md,
        "\nGoals: under {} ({}: {}), peak RSS under {DUMP_RSS_GOAL_MB:.0} MB ({}: {:.0} MB).",
        ms(DUMP_GOAL),
        goal(dump.elapsed < DUMP_GOAL),
        ms(dump.elapsed),
        goal(dump.peak_rss_mb < DUMP_RSS_GOAL_MB),
        dump.peak_rss_mb
    );

    let _ = writeln!(md, "\n## Prompt tokens per scenario\n");
    let _ = writeln!(
        md,
        "The `diagnose` prompt for each namespace of the demo cluster, as sent with the defaults (`llm.num_ctx` \
         {NUM_CTX}, `llm.answer_tokens` {ANSWER_TOKENS}): the prompt must fit in {} tokens, and the context in what \
         the prompt's own text leaves. Tokens are kubechat's estimate, calibrated on Mistral's tokenizer (1.00 to 1.15 times its \
         count; docs/models.md).\n",
        NUM_CTX - ANSWER_TOKENS
    );
    let _ = writeln!(md, "| namespace | prompt tokens | of budget | context tokens | context budget |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for row in tokens {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            row.namespace,
            row.prompt,
            NUM_CTX - ANSWER_TOKENS,
            row.context,
            row.context_budget
        );
    }
    let over = tokens.iter().filter(|r| r.prompt > NUM_CTX - ANSWER_TOKENS).count();
    let _ = writeln!(md, "\nPrompts over their budget: {over}.");

    let _ = writeln!(md, "\n## End-to-end overhead\n");
    let _ = writeln!(
        md,
        "`POST /diagnose` for the `{NAMESPACE}` namespace of the demo cluster, {} requests one after the other, minus \
         the time the model server spent on each (from the request's arrival to its last byte). What is left is \
         kubechat's own work: reading the namespace, the findings, the prompt, the HTTP exchanges and the answer.\n",
        options.requests
    );
    let _ = writeln!(md, "| p50 | p99 | max | failed | goal: p50 ≤ 50 ms |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| {} | {} | {} | {} | {} |",
        ms(overhead.quantile(0.5)),
        ms(overhead.quantile(0.99)),
        ms(overhead.quantile(1.0)),
        overhead.failed,
        goal(overhead.quantile(0.5) <= OVERHEAD_P50_GOAL && overhead.failed == 0)
    );

    let _ = writeln!(md, "\n## Start-up and idle memory\n");
    let _ = writeln!(
        md,
        "`kubechat serve` with the HTTP API and Slack in HTTP mode, started as a process {} times: the time to its \
         first `200` from `/readyz` (median), its resident memory after two idle seconds, and after one answer \
         (highest).\n",
        options.repeats
    );
    let _ = writeln!(md, "| start-up to ready | idle RSS | RSS after one answer |");
    let _ = writeln!(md, "|---|---|---|");
    let _ = writeln!(
        md,
        "| {} | {:.1} MB | {:.1} MB |",
        ms(startup.ready),
        startup.idle_rss_mb,
        startup.after_answer_rss_mb
    );

    let _ = writeln!(md, "\n## How the numbers are taken\n");
    let _ = writeln!(
        md,
        "- The binary is the release build without the Matrix front-end (`--no-default-features`), which none of \
         these paths use.\n\
         - Slack's Web API and the model are local stand-ins: a sink that answers `ok` to every call, and an \
         OpenAI-compatible server that answers at once and times itself. Everything between them is kubechat's real \
         code: signature checks, access, the reader, findings, prompts, rendering and the calls out.\n\
         - The Kubernetes API is kubechat's replay server on loopback, in its own thread; a real API server adds its \
         own latency to both kubechat and kubectl.\n\
         - kubectl runs with a warm discovery cache, as on an engineer's machine, and its time includes its process \
         start; so does kubechat's \"whole process\" column, which the ratio uses. kubectl's peak RSS is sampled \
         every 2 ms (a lower bound); kubechat's is its own `VmHWM`, except `diagnose --dump`'s, which is sampled as \
         kubectl's is.\n\
         - Machines here are noisy: compare the numbers of one run with each other, not across runs."
    );
    md
}

/// The `kubechat` binary built beside this one (`scripts/bench` builds both into the same target directory).
fn kubechat_exe() -> anyhow::Result<PathBuf> {
    let own = std::env::current_exe().context("cannot find the benchmark's own executable")?;
    let exe = own.with_file_name("kubechat");
    if !exe.exists() {
        bail!(
            "no kubechat binary at {}: build it first (scripts/bench does: cargo build --release --bin kubechat)",
            exe.display()
        );
    }
    Ok(exe)
}
