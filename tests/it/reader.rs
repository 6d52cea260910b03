//! The cluster reader against the replay server and against servers that misbehave.

use std::sync::Arc;
use std::time::Duration;

use kubechat::cluster::{self, Limits, ReadError};
use kubechat::request::Scope;

use crate::common::{client, scenarios, serve};

fn scope(namespace: &str) -> Scope {
    Scope::parse("default", namespace, None).unwrap()
}

#[tokio::test]
async fn large_namespaces_are_read_page_by_page() {
    let server = serve(Arc::new(crate::synthetic::namespace("big", 650, 1300, true)), &[]).await;
    let limits = Limits { page_size: 100, ..Limits::default() };
    let facts = cluster::read(&client(&server).await, &scope("big"), &limits).await.unwrap();
    assert_eq!(facts.pods.len(), 650);
    assert_eq!(facts.events.len(), 1300);
    assert!(facts.gaps.is_empty(), "{:?}", facts.gaps);
    let log = facts.log("web-5d4c3b2a1-00325", "app", true).expect("the crash-looping pod's previous log is read");
    assert!(log.text.as_ref().unwrap().contains("LISTEN_ADDR is empty"));
}

#[tokio::test]
async fn problem_pods_get_current_and_previous_logs_and_their_nodes() {
    let server = serve(scenarios(), &[]).await;
    let facts = cluster::read(&client(&server).await, &scope("readiness"), &Limits::default()).await.unwrap();
    let current =
        facts.log("search-7c8d9e6f5-abc12", "app", false).expect("a running, unready container's log is read");
    assert!(current.text.as_ref().unwrap().contains("failed to open shard 3"));
    let nodes: Vec<_> = facts.nodes.iter().map(|n| n.metadata.name.clone().unwrap()).collect();
    assert_eq!(nodes, ["worker-1", "worker-2"]);
    assert_eq!(facts.services.len(), 1);
    assert_eq!(facts.endpoints.len(), 1);
}

#[tokio::test]
async fn forbidden_events_become_a_gap_and_the_findings_remain() {
    let server = serve(scenarios(), &["events"]).await;
    let facts = cluster::read(&client(&server).await, &scope("crashloop"), &Limits::default()).await.unwrap();
    assert!(facts.events.is_empty());
    assert_eq!(facts.gaps.len(), 1, "{:?}", facts.gaps);
    assert!(
        facts.gaps[0]
            .message
            .starts_with("cannot list events in namespace crashloop: the API server refused it (403 Forbidden"),
        "{}",
        facts.gaps[0]
    );
    assert_eq!(facts.gaps[0].cause, kubechat::facts::Cause::Forbidden);
    assert!(facts.unread.contains("events"));
    let diagnosis = kubechat::report::diagnose(&facts, 6000);
    assert_eq!(diagnosis.findings[0].reason.as_str(), "CrashLoopBackOff");
}

#[tokio::test]
async fn a_hanging_api_server_times_out_naming_the_call() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream); // accept and never answer
        }
    });
    let client = cluster::client(&format!("http://{addr}")).await.unwrap();
    let limits = Limits { call_timeout: Duration::from_millis(300), ..Limits::default() };
    let started = std::time::Instant::now();
    let error = cluster::read(&client, &scope("payments"), &limits).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "every call has a timeout");
    assert!(matches!(error, ReadError::Timeout { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("timed out after 0.3s waiting for the API server to list pods in namespace payments"),
        "{text}"
    );
    hold.abort();
}

#[tokio::test]
async fn an_unreachable_api_server_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = cluster::client(&format!("http://127.0.0.1:{port}")).await.unwrap();
    let error = cluster::read(&client, &scope("payments"), &Limits::default()).await.unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("cannot list pods in namespace payments: cannot reach the API server"), "{text}");
}

#[tokio::test]
async fn a_cronjob_narrows_the_read_to_its_jobs_and_their_pods() {
    let server = serve(scenarios(), &[]).await;
    let client = client(&server).await;
    let names = |metas: Vec<Option<String>>| metas.into_iter().map(Option::unwrap).collect::<Vec<_>>();
    for object in ["cronjob/nightly-report", "cj/nightly-report", "CronJobs/nightly-report"] {
        let scope = Scope::parse("default", "jobs", Some(object)).unwrap();
        assert_eq!(scope.object().unwrap().to_string(), "cronjob/nightly-report");
        let facts = cluster::read(&client, &scope, &Limits::default()).await.unwrap();
        assert_eq!(names(facts.cronjobs.iter().map(|c| c.metadata.name.clone()).collect()), ["nightly-report"]);
        assert_eq!(names(facts.jobs.iter().map(|j| j.metadata.name.clone()).collect()), ["nightly-report-29933400"]);
        assert_eq!(
            names(facts.pods.iter().map(|p| p.metadata.name.clone()).collect()),
            ["nightly-report-29933400-q8w7e"],
            "{object}: the failed migration Job beside it is left out"
        );
    }
    let scope = Scope::parse("default", "jobs", Some("cronjob/nightly-reprot")).unwrap();
    let missing = cluster::read(&client, &scope, &Limits::default()).await.unwrap_err();
    assert_eq!(
        missing.to_string(),
        "cronjob nightly-reprot not found in namespace jobs; did you mean nightly-report?",
        "{missing:?}"
    );
}

#[tokio::test]
async fn three_hundred_healthy_pods_and_nine_hundred_normal_events_are_no_finding() {
    let server = serve(Arc::new(crate::synthetic::namespace("busy", 300, 900, false)), &[]).await;
    let facts = cluster::read(&client(&server).await, &scope("busy"), &Limits::default()).await.unwrap();
    // Repeats of the same event about the same pod are folded into one, their counts added.
    assert_eq!(facts.pods.len(), 300);
    let events: i32 = facts.events.iter().map(|e| e.count.unwrap_or(1)).sum();
    assert_eq!(events, 900, "every event is counted");
    let diagnosis = kubechat::report::diagnose(&facts, 6000);
    assert!(diagnosis.findings.is_empty(), "{:#?}", diagnosis.findings);
    assert!(diagnosis.context.contains("Read: 300 pods (0 with problems)"), "{}", diagnosis.context);
}

/// Secrets in every place the reader gathers them from, for [`what_the_reader_gathers_leaves_it_redacted`].
const AWS_KEY: &str = "AKIAQWERTYUIOPASDFGH";
const GITHUB_TOKEN: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvcHMifQ.c2lnbmF0dXJlLXBhcnQ";
const ENV_PASSWORD: &str = "correct-horse-battery-staple";

#[tokio::test]
async fn what_the_reader_gathers_leaves_it_redacted() {
    use serde_json::json;
    let env = json!([{"name": "DB_PASSWORD", "value": ENV_PASSWORD}, {"name": "UPSTREAM", "value": format!("key {AWS_KEY}")}]);
    let pod = |name: &str, crashing: bool| {
        let state = if crashing {
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off: bearer {JWT}")}})
        } else {
            json!({"running": {"startedAt": "2026-12-01T10:00:00Z"}})
        };
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "vault", "uid": format!("uid-{name}"),
                         "annotations": {"deployed-with": format!("token {GITHUB_TOKEN}")}},
            "spec": {"containers": [{"name": "app", "image": "app:1", "env": env,
                                     "args": [format!("--api-key={GITHUB_TOKEN}")]}]},
            "status": {"phase": "Running", "message": format!("note {AWS_KEY}"),
                       "conditions": [{"type": "Ready", "status": if crashing { "False" } else { "True" },
                                       "message": format!("probe sent {JWT}")}],
                       "containerStatuses": [{"name": "app", "image": "app:1", "imageID": "", "ready": !crashing,
                                              "restartCount": if crashing { 7 } else { 0 }, "state": state,
                                              "lastState": if crashing { json!({"terminated": {"exitCode": 1, "reason": "Error"}}) } else { json!({}) }}]}
        })
    };
    let event = |name: &str, message: String| {
        json!({"apiVersion": "v1", "kind": "Event",
               "metadata": {"name": name, "namespace": "vault", "annotations": {"trace": format!("bearer {JWT}")}},
               "involvedObject": {"kind": "Pod", "name": "api-1", "namespace": "vault"},
               "reason": "BackOff", "type": "Warning", "message": message, "count": 3,
               "lastTimestamp": "2026-12-01T10:05:00Z"})
    };
    let mut dump = kubechat::dump::Dump::from_objects([
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vault"}}),
        pod("api-1", true),
        pod("web-1", false),
        event("api-1.a", format!("pulling with {GITHUB_TOKEN}")),
        event("api-1.b", format!("restarting: {AWS_KEY}")),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "api", "namespace": "vault", "annotations": {"ci": format!("token {GITHUB_TOKEN}")}},
               "spec": {"selector": {"matchLabels": {"app": "api"}},
                        "template": {"metadata": {"labels": {"app": "api"}},
                                     "spec": {"containers": [{"name": "app", "image": "app:1", "env": env}]}}}}),
    ]);
    for previous in [false, true] {
        let key = kubechat::dump::LogKey {
            namespace: "vault".into(),
            pod: "api-1".into(),
            container: "app".into(),
            previous,
        };
        dump.add_log(key, format!("connecting with password={ENV_PASSWORD} and {AWS_KEY}\n"));
    }
    let server = serve(Arc::new(dump), &[]).await;
    let facts = cluster::read(&client(&server).await, &scope("vault"), &Limits::default()).await.unwrap();
    assert_eq!((facts.pods.len(), facts.events.len(), facts.deployments.len()), (2, 2, 1));
    assert_eq!(facts.logs.len(), 2, "both logs of the crash-looping pod are read");
    let everything = format!("{:?} {:?} {:?} {:?}", facts.pods, facts.events, facts.deployments, facts.logs);
    for secret in [AWS_KEY, GITHUB_TOKEN, JWT, ENV_PASSWORD] {
        assert!(!everything.contains(secret), "{secret} left the reader: {everything}");
    }
    for marker in ["[REDACTED:env]", "[REDACTED:aws-access-key-id]", "[REDACTED:github-token]", "[REDACTED:jwt]"] {
        assert!(everything.contains(marker), "no {marker} in what was read: {everything}");
    }
}
