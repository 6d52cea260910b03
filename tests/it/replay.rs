//! The replay server against real kubectl and raw HTTP: paths, shapes, errors and paging as a cluster serves them.

use std::sync::Arc;

use serde_json::Value;

use crate::common::{Kubectl, http, scenarios, serve};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_pods_events_logs_and_deployments() {
    let server = serve(scenarios(), &[]).await;
    let kubectl = Kubectl::new(&server);

    let pods = kubectl.ok(&["get", "pods", "-n", "crashloop"]).await;
    let row = pods.lines().find(|l| l.starts_with("payments-api-7b8d9c6f5-qw7zt")).unwrap_or_else(|| panic!("{pods}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[1..4], ["0/1", "CrashLoopBackOff", "7"], "{pods}");
    assert!(pods.starts_with("NAME"), "{pods}");

    let events = kubectl.ok(&["get", "events", "-n", "crashloop"]).await;
    assert!(
        events.contains("Back-off restarting failed container app in pod payments-api-7b8d9c6f5-qw7zt"),
        "{events}"
    );
    assert!(events.contains("pod/payments-api-7b8d9c6f5-qw7zt"), "{events}");

    let previous = kubectl.ok(&["logs", "-n", "crashloop", "payments-api-7b8d9c6f5-qw7zt", "-p"]).await;
    assert!(previous.contains("could not connect to postgres at payments-db:5432: connection refused"), "{previous}");
    let tail = kubectl.ok(&["logs", "-n", "crashloop", "payments-api-7b8d9c6f5-qw7zt", "-p", "--tail", "1"]).await;
    assert_eq!(tail.trim(), "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace");

    let yaml = kubectl.ok(&["get", "deploy", "checkout", "-n", "imagepull", "-o", "yaml"]).await;
    let deployment: Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["status"]["conditions"][1]["reason"], "ProgressDeadlineExceeded");

    let all = kubectl.ok(&["get", "pods", "-A"]).await;
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(all.contains("storage") && all.contains("postgres-0") && all.contains("Pending"), "{all}");

    let nodes = kubectl.ok(&["get", "nodes"]).await;
    assert!(nodes.lines().any(|l| l.starts_with("worker-3") && l.contains("NotReady")), "{nodes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sees_errors_as_a_cluster_gives_them() {
    let server = serve(scenarios(), &["pods/log@jobs"]).await;
    let kubectl = Kubectl::new(&server);

    let waiting = kubectl.run(&["logs", "-n", "imagepull", "checkout-6c9d8e7f1-k2v9d"]).await;
    assert!(String::from_utf8_lossy(&waiting.stderr).contains("is waiting to start: ImagePullBackOff"), "{waiting:?}");

    let missing = kubectl.run(&["get", "pod", "-n", "crashloop", "nope"]).await;
    assert!(String::from_utf8_lossy(&missing.stderr).contains(r#"pods "nope" not found"#), "{missing:?}");

    let forbidden = kubectl.run(&["logs", "-n", "jobs", "db-migrate-5-0-1-b7n2c"]).await;
    let stderr = String::from_utf8_lossy(&forbidden.stderr);
    assert!(stderr.contains(r#"cannot get resource "pods/log" in API group "" in the namespace "jobs""#), "{stderr}");

    let delete = kubectl.run(&["delete", "pod", "-n", "crashloop", "payments-api-7b8d9c6f5-qw7zt"]).await;
    assert!(!delete.status.success());
    assert!(String::from_utf8_lossy(&delete.stderr).contains("read-only"), "{delete:?}");

    let secrets = kubectl.run(&["get", "secrets", "-n", "healthy"]).await;
    assert!(!secrets.status.success(), "secrets are never served");

    let configmap = kubectl.ok(&["get", "configmap", "-n", "healthy", "catalog-settings", "-o", "yaml"]).await;
    assert!(configmap.contains("LOG_LEVEL") && !configmap.contains("search.readiness"), "{configmap}");

    // What a dump cannot honour is said, as the API server says things, in a warning kubectl prints.
    let pod = ["logs", "-n", "crashloop", "payments-api-7b8d9c6f5-qw7zt", "-p"];
    let since = kubectl.run(&[&pod[..], &["--since", "1h", "--timestamps"]].concat()).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&since.stdout), String::from_utf8_lossy(&since.stderr));
    assert!(since.status.success() && stdout.contains("could not connect to postgres"), "{since:?}");
    assert!(stderr.contains("Warning: this is a dump: its logs carry no times, so all of the log is sent"), "{stderr}");
    assert!(stderr.contains("so lines are sent without timestamps"), "{stderr}");
    let both = kubectl.run(&[&pod[..], &["--since", "1h", "--since-time", "2026-11-01T00:00:00Z"]].concat()).await;
    assert!(!both.status.success(), "{both:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_500_pods_are_paged_for_kubectl_and_the_api() {
    let server = serve(Arc::new(crate::synthetic::namespace("big", 650, 0, false)), &[]).await;
    let kubectl = Kubectl::new(&server);
    let names = kubectl.ok(&["get", "pods", "-n", "big", "-o", "name"]).await;
    assert_eq!(names.lines().count(), 650);
    let chunked = kubectl.ok(&["get", "pods", "-n", "big", "--chunk-size", "100", "-o", "name"]).await;
    assert_eq!(chunked, names);

    let (code, body) = http(server.addr, "GET", "/api/v1/namespaces/big/pods?limit=500").await;
    assert_eq!(code, 200);
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["kind"], "PodList");
    assert_eq!(page["items"].as_array().unwrap().len(), 500);
    assert_eq!(page["metadata"]["remainingItemCount"], 150);
    let token = page["metadata"]["continue"].as_str().unwrap();
    let (_, body) = http(server.addr, "GET", &format!("/api/v1/namespaces/big/pods?limit=500&continue={token}")).await;
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 150);
    assert!(page["metadata"].get("continue").is_none());
    assert_eq!(page["items"][149]["metadata"]["name"], "web-5d4c3b2a1-00649");
}

#[tokio::test]
async fn statuses_discovery_selectors_and_log_parameters() {
    let server = serve(scenarios(), &[]).await;
    let addr = server.addr;

    let (code, body) = http(addr, "POST", "/api/v1/namespaces/crashloop/pods").await;
    assert_eq!(code, 405);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str(), status["code"].as_u64()),
        (Some("Status"), Some("MethodNotAllowed"), Some(405))
    );
    for method in ["PUT", "PATCH", "DELETE"] {
        assert_eq!(http(addr, method, "/api/v1/namespaces/crashloop/pods/x").await.0, 405, "{method}");
    }

    let (code, body) = http(addr, "GET", "/apis/apps/v1/namespaces/imagepull/deployments/nope").await;
    assert_eq!(code, 404);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["message"], r#"deployments "nope" not found"#);
    assert_eq!(status["details"]["kind"], "deployments");

    assert_eq!(http(addr, "GET", "/api/v1/secrets").await.0, 404);
    assert_eq!(http(addr, "GET", "/api/v1/namespaces/crashloop/pods?labelSelector=app%20in%20web").await.0, 400);
    let (code, body) = http(addr, "GET", "/api/v1/namespaces/crashloop/pods?fieldSelector=spec.image%3Dx").await;
    assert_eq!(code, 400);
    assert!(body.contains("field label not supported: spec.image"), "{body}");
    // Booleans as the API server reads them: any value but 0 and false (any case) is true.
    for watch in ["true", "1", "True", "yes", ""] {
        let path = format!("/api/v1/namespaces/crashloop/pods?watch={watch}");
        assert_eq!(http(addr, "GET", &path).await.0, 405, "watch={watch}");
    }
    for watch in ["false", "False", "0"] {
        let path = format!("/api/v1/namespaces/crashloop/pods?watch={watch}");
        assert_eq!(http(addr, "GET", &path).await.0, 200, "watch={watch}");
    }
    assert_eq!(http(addr, "GET", "/api/v1/namespaces/crashloop/pods?continue=garbage").await.0, 400);

    let (_, body) =
        http(addr, "GET", "/api/v1/events?fieldSelector=involvedObject.kind%3DPersistentVolumeClaim,type%3DWarning")
            .await;
    let events: Value = serde_json::from_str(&body).unwrap();
    let reasons: Vec<&str> =
        events["items"].as_array().unwrap().iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["ProvisioningFailed"]);
    let (_, body) = http(
        addr,
        "GET",
        "/api/v1/namespaces/readiness/pods?labelSelector=app%3Dsearch&fieldSelector=spec.nodeName%3Dworker-2",
    )
    .await;
    let pods: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pods["items"].as_array().unwrap().len(), 1);
    assert_eq!(pods["items"][0]["metadata"]["name"], "search-7c8d9e6f5-abc12");

    let (_, body) = http(addr, "GET", "/api/v1/namespaces").await;
    let namespaces: Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> =
        namespaces["items"].as_array().unwrap().iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"crashloop") && names.contains(&"healthy"),
        "namespaces are derived from objects: {names:?}"
    );

    let (_, body) = http(addr, "GET", "/api/v1").await;
    let resources: Value = serde_json::from_str(&body).unwrap();
    let served: Vec<&str> =
        resources["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert!(served.contains(&"pods/log") && !served.contains(&"secrets"), "{served:?}");
    let (code, body) = http(addr, "GET", "/apis").await;
    assert_eq!(code, 200);
    assert!(body.contains(r#""groupVersion":"batch/v1""#), "{body}");

    let log = "/api/v1/namespaces/crashloop/pods/payments-api-7b8d9c6f5-qw7zt/log?previous=true";
    let (code, body) = http(addr, "GET", &format!("{log}&tailLines=2&limitBytes=11")).await;
    assert_eq!((code, body.as_str()), (200, "database co"));
    // The official Python client sends previous=True: the previous log, not the current one.
    let previous = log.replace("previous=true", "previous=True");
    assert_eq!(http(addr, "GET", &format!("{previous}&tailLines=2&limitBytes=11")).await, (200, body.clone()));
    let (code, body) = http(addr, "GET", &format!("{log}&sinceSeconds=60&sinceTime=2026-11-01T00:00:00Z")).await;
    assert_eq!(code, 422);
    assert!(body.contains("at most one of `sinceTime` or `sinceSeconds` may be specified"), "{body}");
    assert_eq!(http(addr, "GET", &format!("{log}&tailLines=two")).await.0, 400);
    let current = log.replace("previous=true", "previous=False");
    assert_ne!(http(addr, "GET", &format!("{current}&tailLines=2&limitBytes=11")).await.1, body);
    let (code, body) =
        http(addr, "GET", "/api/v1/namespaces/readiness/pods/search-7c8d9e6f5-abc12/log?previous=true").await;
    assert_eq!(code, 400);
    assert!(
        body.contains(r#"previous terminated container \"app\" in pod \"search-7c8d9e6f5-abc12\" not found"#),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_command_writes_a_kubeconfig_for_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("replay.kubeconfig");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut replay = std::process::Command::new(env!("CARGO_BIN_EXE_kubechat"))
        .args(["replay", "--dump", crate::common::SCENARIOS, "--listen", &format!("127.0.0.1:{port}")])
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !kubeconfig.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let out = tokio::task::spawn_blocking({
        let kubeconfig = kubeconfig.clone();
        let cache = dir.path().join("cache");
        move || {
            std::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--cache-dir")
                .arg(&cache)
                .args(["get", "pvc", "-n", "storage"])
                .output()
                .expect("kubectl runs")
        }
    })
    .await
    .unwrap();
    replay.kill().unwrap();
    replay.wait().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.lines().any(|l| l.starts_with("data-postgres-0") && l.contains("Pending") && l.contains("fast-ssd")),
        "{stdout}"
    );
}

/// The official Kubernetes Python client's python (`scripts/kube-python`, which `scripts/test` runs).
fn kube_python() -> std::path::PathBuf {
    match std::env::var_os("KUBECHAT_KUBE_PYTHON") {
        Some(python) => python.into(),
        None => panic!(
            "KUBECHAT_KUBE_PYTHON is not set: this test needs the official Kubernetes Python client. Run ./scripts/test, or export KUBECHAT_KUBE_PYTHON=$(./scripts/kube-python)"
        ),
    }
}

/// What the official Python client sends: `previous=True` and `watch=True`, capitalised as Python prints booleans.
const PYTHON_CLIENT: &str = r#"
import json, sys
from kubernetes import client
from kubernetes.client.rest import ApiException
configuration = client.Configuration()
configuration.host = sys.argv[1]
api = client.CoreV1Api(client.ApiClient(configuration))
pod, namespace = "payments-api-7b8d9c6f5-qw7zt", "crashloop"
out = {"pods": [p.metadata.name for p in api.list_namespaced_pod(namespace).items]}
out["previous"] = api.read_namespaced_pod_log(pod, namespace, previous=True)
try:
    out["current"] = api.read_namespaced_pod_log(pod, namespace)
except ApiException as e:
    out["current"] = e.status
try:
    api.list_namespaced_pod(namespace, watch=True)
    out["watch"] = "listed"
except ApiException as e:
    out["watch"] = e.status
out["since"] = api.read_namespaced_pod_log(pod, namespace, previous=True, since_seconds=3600, timestamps=True, follow=True)
for name, options in [("since0", {"since_seconds": 0}), ("tail", {"tail_lines": -1}), ("limit", {"limit_bytes": 0})]:
    try:
        api.read_namespaced_pod_log(pod, namespace, previous=True, **options)
        out[name] = "read"
    except ApiException as e:
        out[name] = [e.status, json.loads(e.body)["message"]]
print(json.dumps(out))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_reads_previous_logs_and_is_refused_a_watch() {
    let server = serve(scenarios(), &[]).await;
    let (python, url) = (kube_python(), server.url());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python).args(["-c", PYTHON_CLIENT, &url]).output().expect("python runs")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "the Python client failed: {}", String::from_utf8_lossy(&out.stderr));
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(read["pods"].as_array().unwrap().iter().any(|p| p == "payments-api-7b8d9c6f5-qw7zt"), "{read}");
    let log = "/api/v1/namespaces/crashloop/pods/payments-api-7b8d9c6f5-qw7zt/log";
    let (code, previous) = http(server.addr, "GET", &format!("{log}?previous=true")).await;
    assert_eq!(code, 200);
    assert!(previous.contains("could not connect to postgres"), "{previous}");
    assert_eq!(read["previous"], previous.as_str(), "previous=True reads the previous log");
    // The current container is waiting to start again (CrashLoopBackOff): the kubelet has no current log to give.
    assert_eq!(http(server.addr, "GET", log).await.0, 400);
    assert_eq!(read["current"], 400);
    assert_eq!(read["watch"], 405, "watch=True is refused, not answered with a list");
    // The other log parameters it sends: what a dump cannot honour is sent whole; values out of range are refused
    // as the API server refuses them.
    assert_eq!(read["since"], previous.as_str());
    let pod = r#"PodLogOptions "payments-api-7b8d9c6f5-qw7zt" is invalid"#;
    let refused = |name: &str, field: &str| {
        assert_eq!(read[name][0], 422, "{read}");
        let message = read[name][1].as_str().unwrap();
        assert!(message.contains(pod) && message.contains(field), "{message}");
    };
    refused("since0", "sinceSeconds: Invalid value: 0: must be greater than 0");
    refused("tail", "tailLines: Invalid value: -1: must be greater than or equal to 0");
    refused("limit", "limitBytes: Invalid value: 0: must be greater than 0");
}
