//! Diagnosing a large namespace stays fast: 4,000 pods and 12,000 events, one of them broken.
//!
//! The bound is the (well under 2 s) in a release build; a debug build is several times slower, so there it
//! only guards against a blow-up. The test command runs this module in release too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubechat::cluster::{self, Limits};
use kubechat::request::Scope;

use crate::common::{client, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_pods_are_diagnosed_quickly() {
    let server = serve(Arc::new(crate::synthetic::namespace("large", 4000, 12000, true)), &[]).await;
    let client = client(&server).await;
    let scope = Scope::parse("default", "large", None).unwrap();
    let started = Instant::now();
    let facts = cluster::read(&client, &scope, &Limits::default()).await.unwrap();
    let read = started.elapsed();
    let diagnosis = kubechat::report::diagnose(&facts, 6000);
    let elapsed = started.elapsed();
    eprintln!("read {read:?}, analyzed in {:?}", elapsed - read);
    assert_eq!(facts.pods.len(), 4000);
    assert_eq!(facts.events.len(), 12000);
    let found: Vec<_> = diagnosis.findings.iter().map(|f| (f.reason.as_str(), f.object.name.as_str())).collect();
    assert_eq!(found, [("CrashLoopBackOff", "web-5d4c3b2a1-02000")]);
    assert!(diagnosis.context.contains("error: invalid configuration: LISTEN_ADDR is empty"));
    let tokens = kubechat::tokens::estimate(&diagnosis.context);
    assert!(tokens <= 6000, "the context takes {tokens} tokens, over its budget of 6000");
    assert!(diagnosis.context.contains("more events]"), "the events that did not fit leave a marker");
    let bound = if cfg!(debug_assertions) { Duration::from_secs(30) } else { Duration::from_millis(1000) };
    eprintln!("diagnosed 4000 pods and 12000 events in {elapsed:?} (bound {bound:?})");
    assert!(elapsed < bound, "took {elapsed:?}, bound {bound:?}");
}

#[test]
fn a_nineteen_megabyte_yaml_dump_is_diagnosed_within_a_second_and_200_mb() {
    // 7,100 pods and 21,300 events: 19 MB of YAML, as `kubectl get -o yaml` writes a large namespace.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.yaml");
    std::fs::write(&path, crate::synthetic::yaml("large", 7100).unwrap()).unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size >= 18_500_000, "the dump is {size} bytes");
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubechat"))
        .args(["diagnose", "--dump", path.to_str().unwrap(), "-n", "large", "--no-llm", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
    });
    // The whole process's peak (loading, serving and reading the dump, finding what is wrong), as its high-water
    // mark stood last before it ended.
    let mut peak_mb = 0.0;
    let status = loop {
        if let Some(mb) = high_water_mb(child.id()) {
            peak_mb = mb;
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let elapsed = started.elapsed();
    assert!(status.success(), "kubechat diagnose failed: {status}");
    let out = reading.join().unwrap().unwrap();
    let diagnosis: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        diagnosis["findings"][0]["object"]["name"],
        crate::synthetic::broken_pod(7100),
        "{}",
        diagnosis["findings"]
    );
    assert!(diagnosis["context"].as_str().unwrap().contains("Read: 7100 pods"), "{}", diagnosis["context"]);
    // A release build took 0.5 s and 140 MB here (0.6 s and 284 MB when objects were kept as Values and a list was
    // read whole); a debug build takes 3.4 s and 180 MB.
    let (bound, memory) =
        if cfg!(debug_assertions) { (Duration::from_secs(60), 260.0) } else { (Duration::from_secs(1), 200.0) };
    eprintln!(
        "diagnosed a {:.1} MB YAML dump in {elapsed:?} (bound {bound:?}), peak {peak_mb:.0} MB (bound {memory} MB)",
        size as f64 / 1e6
    );
    assert!(elapsed < bound, "took {elapsed:?}, bound {bound:?}");
    assert!(peak_mb < memory, "peak {peak_mb:.0} MB, bound {memory} MB");
}

/// The peak resident memory of a process, in MB (`VmHWM` of `/proc/PID/status`).
fn peak_rss_mb(pid: u32) -> f64 {
    high_water_mb(pid).expect("the process is running")
}

/// The same, none once the process has ended.
fn high_water_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_questions_about_four_thousand_pods_stay_in_memory_and_health_answers() {
    // `kubechat serve` as shipped (its defaults, 67 users with their own tokens), a 4,000-pod namespace, a model that
    // takes its time; 200 questions at once.
    let replay = serve(Arc::new(crate::synthetic::namespace("large", 4000, 12000, true)), &[]).await;
    let stream = (0..20)
        .map(|i| {
            format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"line {i} of the answer\\n\"}}}}]}}\n\n"
            )
        })
        .collect::<String>()
        + "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let model = crate::common::recorded_slowly("text/event-stream", stream, Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubechat::replay::kubeconfig(&replay.url(), "large")).unwrap();
    let users: Vec<(String, String)> =
        (0..67).map(|i| (format!("user{i}"), format!("token-of-user-{i:04}-0123456789"))).collect();
    let tokens = users.iter().map(|(name, token)| format!("\"{name}:{token}\"")).collect::<Vec<_>>().join(", ");
    let config = dir.path().join("kubechat.yaml");
    std::fs::write(
        &config,
        format!(
            "kubeconfig: {}\nprompts: {}\nllm:\n  url: {}\n  api: openai\n  model: recorded\nhttp:\n  tokens: [{tokens}]\naccess:\n  default: [\"*\"]\naudit:\n  path: {}\nmetrics:\n  listen: \"off\"\n",
            kubeconfig.display(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/prompts"),
            model.url,
            dir.path().join("audit.jsonl").display(),
        ),
    )
    .unwrap();
    let (serve, url) = crate::common::serve_process(&config);
    let http = crate::common::http_client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{url}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "kubechat serve did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle = peak_rss_mb(serve.0.id());

    let questions: Vec<_> = (0..200)
        .map(|i| {
            let (_, token) = users[i % users.len()].clone();
            let request = http
                .post(format!("{url}/diagnose"))
                .bearer_auth(token)
                .json(&serde_json::json!({"namespace": "large"}));
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()).unwrap_or(0) })
        })
        .collect();
    // /healthz answers all along.
    let mut slowest = Duration::ZERO;
    let mut statuses = Vec::new();
    let watching = Instant::now();
    let mut pending = questions;
    while !pending.is_empty() {
        let started = Instant::now();
        let health = http.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        slowest = slowest.max(started.elapsed());
        let (done, rest): (Vec<_>, Vec<_>) = pending.into_iter().partition(|q| q.is_finished());
        for q in done {
            statuses.push(q.await.unwrap());
        }
        pending = rest;
        assert!(watching.elapsed() < Duration::from_secs(600), "the questions took more than 10 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let peak = peak_rss_mb(serve.0.id());
    let answered = statuses.iter().filter(|s| **s == 200).count();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    eprintln!("idle {idle:.0} MB, peak {peak:.0} MB; {answered} answered, {busy} busy; slowest /healthz {slowest:?}");
    assert_eq!(answered + busy, 200, "every question is answered or told kubechat is busy: {statuses:?}");
    assert!(answered >= 16, "at least the questions in flight are answered");
    assert!(peak < 400.0, "peak memory {peak:.0} MB, over 400 MB");
    assert!(slowest < Duration::from_secs(2), "/healthz took {slowest:?}");
}
