//! Dumps that are malformed, huge or hold kinds kubechat does not serve: each ends with a clear message naming the
//! file, the object or the kind, never a panic, and what can be served still is.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubechat::dump::{Dump, DumpError, MAX_FILE_BYTES};
use serde_json::Value;

use crate::common::{Kubectl, findings, kubechat, serve};

const CRASHING_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: shop}
spec:
  containers: [{name: api, image: registry.example.com/api:1.0}]
status:
  phase: Running
  containerStatuses:
  - name: api
    image: registry.example.com/api:1.0
    imageID: ""
    ready: false
    restartCount: 7
    state: {waiting: {reason: CrashLoopBackOff, message: back-off 5m0s restarting failed container}}
    lastState: {terminated: {reason: Error, exitCode: 1}}
"#;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_malformed_file_is_refused_with_its_name_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yaml"), CRASHING_POD).unwrap();
    // A copy cut off halfway through a flow mapping, on line 4.
    std::fs::write(dir.path().join("truncated.yaml"), "apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {app: web,\n")
        .unwrap();
    let path = dir.path().to_str().unwrap();
    let out = kubechat(&["diagnose", "--dump", path, "-n", "shop", "--no-llm"]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(!message.contains("panicked"), "{message}");
    assert!(message.contains("cannot parse dump file") && message.contains("truncated.yaml"), "{message}");
    assert!(message.contains("line 4") || message.contains("line 5"), "the message gives the line: {message}");

    std::fs::remove_file(dir.path().join("truncated.yaml")).unwrap();
    std::fs::write(dir.path().join("binary.json"), b"{\"items\": [\xff\xfe\x00garbage").unwrap();
    let out = kubechat(&["diagnose", "--dump", path, "-n", "shop", "--no-llm"]);
    let message = stderr(&out);
    assert!(!out.status.success() && !message.contains("panicked"), "{message}");
    assert!(message.contains("binary.json") && message.contains("UTF-8"), "{message}");
}

#[tokio::test]
async fn objects_of_the_wrong_shape_are_left_out_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.yaml");
    let odd = "apiVersion: v1\nkind: Pod\nmetadata: {name: odd-1, namespace: shop}\nspec: {containers: api}\n";
    let late_event = "apiVersion: v1\nkind: Event\nmetadata: {name: api-1.1, namespace: shop}\ncount: many\n\
                      involvedObject: {kind: Pod, name: api-1}\n";
    std::fs::write(&path, format!("{CRASHING_POD}---\n{odd}---\n{late_event}")).unwrap();

    let out = kubechat(&["diagnose", "--dump", path.to_str().unwrap(), "-n", "shop", "--no-llm", "--output", "json"]);
    let message = stderr(&out);
    assert!(out.status.success(), "{message}");
    assert!(message.contains("skipped Pod shop/odd-1: spec.containers: invalid type: string \"api\""), "{message}");
    assert!(message.contains("skipped Event shop/api-1.1: count: invalid type: string \"many\""), "{message}");
    let diagnosis: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(findings(&diagnosis), [("CrashLoopBackOff".into(), "Pod".into(), "api-1".into())]);

    let dump = Dump::load(&path).unwrap();
    assert_eq!(dump.report.invalid.len(), 2);
    let server = serve(Arc::new(dump), &[]).await;
    let kubectl = Kubectl::new(&server);
    let pods = kubectl.ok(&["get", "pods", "-n", "shop", "-o", "name"]).await;
    assert_eq!(pods.trim(), "pod/api-1");
}

#[tokio::test]
async fn unknown_kinds_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.yaml");
    let certificate =
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: shop-tls, namespace: shop}\n";
    let new_event = "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: e1, namespace: shop}\n";
    let kindless = "metadata: {name: what}\n";
    std::fs::write(&path, format!("{CRASHING_POD}---\n{certificate}---\n{certificate}---\n{new_event}---\n{kindless}"))
        .unwrap();

    let out = kubechat(&["diagnose", "--dump", path.to_str().unwrap(), "-n", "shop", "--no-llm"]);
    let message = stderr(&out);
    assert!(out.status.success(), "{message}");
    assert!(message.contains("skipped 2 object(s) of kind cert-manager.io/v1/Certificate"), "{message}");
    assert!(message.contains("skipped 1 object(s) of kind events.k8s.io/v1/Event"), "{message}");
    assert!(message.contains("skipped 1 object(s) of kind (no kind)"), "{message}");

    let server = serve(Arc::new(Dump::load(&path).unwrap()), &[]).await;
    let out = Kubectl::new(&server).run(&["get", "certificates", "-n", "shop"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("the server doesn't have a resource type \"certificates\""), "{}", stderr(&out));

    std::fs::write(&path, format!("{certificate}---\n{certificate}---\n{kindless}")).unwrap();
    let out = kubechat(&["diagnose", "--dump", path.to_str().unwrap(), "--no-llm"]);
    let message = stderr(&out);
    assert!(!out.status.success(), "{message}");
    assert!(
        message.contains("holds no Kubernetes objects that kubechat serves (it held 1 without a kind, 2 cert-manager.io/v1/Certificate)"),
        "{message}"
    );
}

#[tokio::test]
async fn unquoted_number_like_label_values_load_as_strings() {
    // A ReplicaSet's pod as tools other than kubectl write it: the template hash unquoted, which YAML reads as a float
    // too large for any number, and a version label YAML reads as 1.1.
    let pod = CRASHING_POD.replace(
        "metadata: {name: api-1, namespace: shop}",
        "metadata:\n  name: api-1\n  namespace: shop\n  labels:\n    pod-template-hash: 2e7696897\n    version: 1.10\n    build: 0123",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.yaml");
    std::fs::write(&path, &pod).unwrap();

    let out = kubechat(&["diagnose", "--dump", path.to_str().unwrap(), "-n", "shop", "--no-llm", "--output", "json"]);
    let message = stderr(&out);
    assert!(out.status.success() && !message.contains("skipped"), "{message}");
    let diagnosis: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(findings(&diagnosis), [("CrashLoopBackOff".into(), "Pod".into(), "api-1".into())]);

    let server = serve(Arc::new(Dump::load(&path).unwrap()), &[]).await;
    let kubectl = Kubectl::new(&server);
    let selected = kubectl
        .ok(&["get", "pods", "-n", "shop", "-l", "pod-template-hash=2e7696897,version=1.10", "-o", "name"])
        .await;
    assert_eq!(selected.trim(), "pod/api-1");
    let labels: Value = serde_json::from_str(
        &kubectl.ok(&["get", "pod", "api-1", "-n", "shop", "-o", "jsonpath={.metadata.labels}"]).await,
    )
    .unwrap();
    assert_eq!(labels, serde_json::json!({"pod-template-hash": "2e7696897", "version": "1.10", "build": "0123"}));
}

#[test]
fn notes_beside_a_dump_are_not_objects_and_load_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pods.yaml"), CRASHING_POD).unwrap();
    std::fs::write(dir.path().join("README"), "Taken during INC-1234 by the on-call engineer.\n").unwrap();
    std::fs::write(dir.path().join("README.md"), "# shop\n\nTaken during INC-1234.\n").unwrap();
    std::fs::write(dir.path().join("incident.json"), r#"{"incident": "INC-1234", "taken_by": "oncall"}"#).unwrap();
    std::fs::write(dir.path().join("index.yaml"), "files: [pods.yaml]\ncommand: scripts/take-dump shop\n").unwrap();

    let dump = Dump::load(dir.path()).unwrap();
    assert!(dump.report.skipped.is_empty(), "{:?}", dump.report.skipped);
    assert_eq!(dump.report.objects, 1);
    let out = kubechat(&["diagnose", "--dump", dir.path().to_str().unwrap(), "-n", "shop", "--no-llm"]);
    let message = stderr(&out);
    assert!(out.status.success(), "{message}");
    assert!(!message.contains("WARN") && !message.contains("skipped"), "no warning about the notes: {message}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("api-1"));
}

#[test]
fn a_file_too_large_to_load_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.yaml");
    // Sparse: the size is real to the loader, the disk holds nothing.
    std::fs::File::create(&path).unwrap().set_len(MAX_FILE_BYTES + 1).unwrap();
    let started = Instant::now();
    let err = Dump::load(&path).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "refused without reading: {:?}", started.elapsed());
    assert!(matches!(err, DumpError::TooLarge { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("cluster.yaml is 256 MiB, over the 256 MiB") && message.contains("split it"), "{message}");
}

#[tokio::test]
async fn a_huge_log_is_tailed_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.yaml"), CRASHING_POD).unwrap();
    let logs = dir.path().join("logs/shop/api-1");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("api.previous.log");
    // 4 GiB of log, sparse but for its last lines.
    std::fs::File::create(&log).unwrap().set_len(4 << 30).unwrap();
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    file.write_all(b"\nstarting api\nfatal: cannot reach payments-db:5432\n").unwrap();

    let server = serve(Arc::new(Dump::load(dir.path()).unwrap()), &[]).await;
    let kubectl = Kubectl::new(&server);
    let started = Instant::now();
    let tail = kubectl.ok(&["logs", "-n", "shop", "api-1", "--previous", "--tail", "2"]).await;
    assert_eq!(tail, "starting api\nfatal: cannot reach payments-db:5432\n");
    let bytes = kubectl.ok(&["logs", "-n", "shop", "api-1", "--previous", "--limit-bytes", "3"]).await;
    assert_eq!(bytes, "\0\0\0");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    let client = crate::common::client(&server).await;
    let scope = kubechat::request::Scope::parse("default", "shop", None).unwrap();
    let facts = kubechat::cluster::read(&client, &scope, &kubechat::cluster::Limits::default()).await.unwrap();
    let diagnosis = kubechat::report::diagnose(&facts, 6000);
    assert!(diagnosis.context.contains("fatal: cannot reach payments-db:5432"), "{}", diagnosis.context);
}

#[test]
fn a_dump_says_when_it_was_taken_and_a_bad_time_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(format!("{}/healthy.yaml", crate::common::SCENARIOS), dir.path().join("healthy.yaml")).unwrap();
    assert_eq!(Dump::load(dir.path()).unwrap().taken_at, None, "no taken-at: the newest timestamp stands in");
    std::fs::write(dir.path().join("taken-at"), "2026-11-30T12:00:00Z\n").unwrap();
    assert_eq!(Dump::load(dir.path()).unwrap().taken_at, Some("2026-11-30T12:00:00Z".parse().unwrap()));
    std::fs::write(dir.path().join("taken-at"), "yesterday").unwrap();
    let err = Dump::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("taken-at") && err.contains("\"yesterday\" is not an RFC 3339 time"), "{err}");
}
