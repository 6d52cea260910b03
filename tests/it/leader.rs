//! Several replicas, one leader: `kubechat serve` processes against the real kube-apiserver, as the bot's
//! ServiceAccount with the shipped Role (the one Lease in kubechat's namespace), elect one holder of a
//! `coordination.k8s.io` Lease. Only the holder holds the Slack Socket Mode connection (the fake Slack sees one at a
//! time); SIGKILL of the leader hands over within the Lease's duration, SIGTERM at once (the leader lets the Lease go
//! as its shutdown begins). In Slack's HTTP mode every replica answers, and an alert or a Slack delivery reaching
//! either replica is handled once: the follower hands the alert to the leader, and claims the event there.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubechat::slack::signature;
use serde_json::{Value, json};

use crate::apiserver::{Cluster, apply_manifests};
use crate::common::{Recorded, recorded_slowly};
use crate::drain::{SIGNING_SECRET, Serve, readyz, serve_in};
use crate::fake_slack::{BOT_USER, CHANNEL, Call, FakeSlack};

const LEASE_SECONDS: u64 = 4;
const ALERT_TOKEN: &str = "alertmanager-token-9c1e";

/// The bot's kubeconfig with kubechat's namespace as its own, as a pod's in-cluster configuration has: the Lease is
/// elected there, through the shipped Role.
fn bot_in_kubechat(cluster: &Cluster) -> PathBuf {
    let text = std::fs::read_to_string(&cluster.bot_kubeconfig).unwrap();
    let path = cluster.bot_kubeconfig.with_file_name("bot-in-kubechat.kubeconfig");
    std::fs::write(&path, text.replace("namespace: default", "namespace: kubechat")).unwrap();
    path
}

fn replica_in(cluster: &Cluster, slack: &FakeSlack, model: &Recorded, name: &str, mode: &str, more: &str) -> Serve {
    let settings = format!(
        "kubeconfig: {}\nleader:\n  lease: kubechat-leader\n  identity: {name}\n  duration_seconds: {LEASE_SECONDS}\n{more}",
        bot_in_kubechat(cluster).display()
    );
    serve_in(slack, model, &settings, mode)
}

fn replica(cluster: &Cluster, slack: &FakeSlack, model: &Recorded, name: &str) -> Serve {
    replica_in(cluster, slack, model, name, "socket", "")
}

async fn lease(cluster: &Cluster) -> Option<Lease> {
    let leases: Api<Lease> = Api::namespaced(cluster.admin().await, "kubechat");
    leases.get_opt("kubechat-leader").await.unwrap()
}

async fn holder(cluster: &Cluster) -> Option<String> {
    lease(cluster).await?.spec?.holder_identity
}

/// A real API server with the shipped manifests applied, the fake Slack, and a model streaming with `pause` between
/// chunks: what the replicas run against.
async fn stage(pause: Duration) -> (Cluster, FakeSlack, Recorded) {
    let cluster = Cluster::start().await;
    apply_manifests(&cluster, &[]);
    let slack = FakeSlack::start().await;
    let model = recorded_slowly("text/event-stream", crate::slack::answer_stream(), pause).await;
    (cluster, slack, model)
}

async fn ready(serve: &Serve) {
    let started = Instant::now();
    while readyz(&serve.url).await != Some(200) {
        assert!(started.elapsed() < Duration::from_secs(30), "not ready in 30 s: {}", serve.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_holds_the_socket_and_another_takes_over_when_it_dies_or_leaves() {
    let (cluster, slack, model) = stage(Duration::from_millis(5)).await;
    let mut replicas =
        vec![replica(&cluster, &slack, &model, "replica-a"), replica(&cluster, &slack, &model, "replica-b")];
    for serve in &replicas {
        ready(serve).await;
    }
    let _first = slack.socket(Duration::from_secs(30)).await;
    // Both are up for two Lease durations: still one connection, held by the Lease's holder.
    tokio::time::sleep(Duration::from_secs(2 * LEASE_SECONDS)).await;
    assert_eq!(slack.calls("apps.connections.open").len(), 1, "one replica holds the connection");
    let leader = holder(&cluster).await.expect("a holder");
    let (leading, following) = if leader == "replica-a" { (0, 1) } else { (1, 0) };

    // The leader dies without a word: the other takes over within the Lease's duration (and a retry).
    let killed = Command::new("kill").args(["-KILL", &replicas[leading].child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let started = Instant::now();
    let _second = slack.socket(Duration::from_secs(3 * LEASE_SECONDS)).await;
    let took = started.elapsed();
    assert!(took <= Duration::from_secs(LEASE_SECONDS + 3), "took over after {took:?}");
    let new_leader = holder(&cluster).await.expect("a holder");
    assert_ne!(new_leader, leader, "the dead replica still holds the Lease");
    assert_eq!(slack.calls("apps.connections.open").len(), 2);

    // A third replica joins; the leader is told to stop: it lets the Lease go, and the third leads at once.
    replicas.push(replica(&cluster, &slack, &model, "replica-c"));
    ready(&replicas[2]).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slack.calls("apps.connections.open").len(), 2, "a follower opens no connection");
    replicas[following].terminate();
    let started = Instant::now();
    let _third = slack.socket(Duration::from_secs(3 * LEASE_SECONDS)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "a graceful leader hands over at once, not after the Lease expires ({took:?})"
    );
    assert_eq!(holder(&cluster).await.as_deref(), Some("replica-c"));
    replicas[following].exited(Duration::from_secs(20)).await;
    assert!(replicas[following].log().contains("released the Lease"), "{}", replicas[following].log());
    assert!(slack.violations().is_empty(), "{:#?}", slack.violations());
}

/// An app mention posted in [`CHANNEL`], and Slack's delivery of it.
fn mention(slack: &FakeSlack, event_id: &str) -> (String, String) {
    let ts =
        slack.post(json!({"type": "message", "user": "UONCALL", "text": format!("<@{BOT_USER}> diagnose kubechat")}));
    let delivery = mention_delivery(event_id, &ts);
    (ts, delivery)
}

/// Slack's delivery of the mention posted at `ts`.
fn mention_delivery(event_id: &str, ts: &str) -> String {
    let text = format!("<@{BOT_USER}> diagnose kubechat");
    let mention =
        json!({"type": "app_mention", "user": "UONCALL", "text": text, "ts": ts, "channel": CHANNEL, "event_ts": ts});
    crate::slack::event(event_id, mention).to_string()
}

/// Posts a Slack delivery to a replica, signed, as Slack's `retry`-th retry when given; the status.
async fn deliver(serve: &Serve, delivery: &str, retry: Option<u32>) -> u16 {
    let now = jiff::Timestamp::now().as_second().to_string();
    let mut request = crate::common::http_client()
        .post(format!("{}/slack/events", serve.url))
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &now)
        .header("x-slack-signature", signature::sign(SIGNING_SECRET.as_bytes(), &now, delivery.as_bytes()));
    if let Some(retry) = retry {
        request = request.header("x-slack-retry-num", retry.to_string()).header("x-slack-retry-reason", "http_timeout");
    }
    request.body(delivery.to_string()).send().await.unwrap().status().as_u16()
}

/// Alertmanager's webhook, one alert about kubechat's own namespace (`status` firing or resolved), posted to a
/// replica; the status.
async fn alert(serve: &Serve, status: &str) -> u16 {
    let payload = json!({"version": "4", "groupKey": "{}:{alertname=\"KubePodNotReady\"}", "truncatedAlerts": 0,
        "status": status, "receiver": "team", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": status, "labels": {"alertname": "KubePodNotReady", "namespace": "kubechat"},
            "annotations": {}, "startsAt": "2026-12-02T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "5e1f00d4c0ffee01"}]});
    let response = crate::common::http_client()
        .post(format!("{}/alertmanager", serve.url))
        .bearer_auth(ALERT_TOKEN)
        .json(&payload)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// The messages kubechat posted in `thread`, of `calls`.
fn posted_in(calls: &[Call], thread: &str) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| c.method == "chat.postMessage" && c.body["thread_ts"] == thread)
        .map(|c| c.body.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_or_a_slack_delivery_reaching_either_replica_is_handled_once() {
    let (cluster, slack, model) = stage(Duration::from_millis(1)).await;
    let alerts = format!(
        "alertmanager:\n  token: {ALERT_TOKEN}\n  receivers:\n    - name: team\n      slack_channel: {CHANNEL}\n"
    );
    let mut replicas = vec![
        replica_in(&cluster, &slack, &model, "replica-a", "http", &alerts),
        replica_in(&cluster, &slack, &model, "replica-b", "http", &alerts),
    ];
    for serve in &replicas {
        ready(serve).await;
    }
    let started = Instant::now();
    let leader = loop {
        if let Some(holder) = holder(&cluster).await {
            break holder;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no holder: {}", replicas[0].log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (leading, following) = if leader == "replica-a" { (0, 1) } else { (1, 0) };
    // The holder wrote where it is reached; the follower reads it on its next look at the Lease.
    let annotations = lease(&cluster).await.unwrap().metadata.annotations.unwrap_or_default();
    assert_eq!(annotations.get("kubechat.io/address"), Some(&replicas[leading].url));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // One alert, delivered to the follower, the leader and the follower again: one diagnosis, by the leader.
    for serve in [following, leading, following] {
        assert_eq!(alert(&replicas[serve], "firing").await, 200, "{}", replicas[serve].log());
    }
    slack
        .until(Duration::from_secs(30), "the alert's diagnosis", |calls| {
            calls.iter().any(|c| c.method == "chat.update")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let roots = |slack: &FakeSlack| -> Vec<Call> {
        slack.calls("chat.postMessage").into_iter().filter(|c| c.body["thread_ts"].is_null()).collect()
    };
    assert_eq!(roots(&slack).len(), 1, "one diagnosis for the alert, wherever it arrived: {:#?}", roots(&slack));
    let root = roots(&slack)[0].ts.clone().expect("the thread's ts");
    let audited = |serve: &Serve| serve.audit().iter().filter(|l| l["platform"] == "alertmanager").count();
    assert_eq!((audited(&replicas[leading]), audited(&replicas[following])), (1, 0), "the leader diagnosed it");

    // An event delivered to the follower and retried to the leader, and one the other way: each answered once.
    let (first, delivery) = mention(&slack, "Ev1");
    assert_eq!(deliver(&replicas[following], &delivery, None).await, 200);
    assert_eq!(deliver(&replicas[leading], &delivery, Some(1)).await, 200);
    let (second, delivery) = mention(&slack, "Ev2");
    assert_eq!(deliver(&replicas[leading], &delivery, None).await, 200);
    assert_eq!(deliver(&replicas[following], &delivery, Some(1)).await, 200);
    slack
        .until(Duration::from_secs(30), "both answers", |calls| {
            !posted_in(calls, &first).is_empty() && !posted_in(calls, &second).is_empty()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = slack.calls("chat.postMessage");
    assert_eq!(posted_in(&calls, &first).len(), 1, "Ev1 answered once: {:#?}", posted_in(&calls, &first));
    assert_eq!(posted_in(&calls, &second).len(), 1, "Ev2 answered once: {:#?}", posted_in(&calls, &second));

    // The leader keeps what it diagnosed, and where, and the events it saw, in the Lease.
    let started = Instant::now();
    loop {
        let mut annotations = lease(&cluster).await.unwrap().metadata.annotations.unwrap_or_default();
        let alerts = annotations.remove("kubechat.io/memory-alerts").unwrap_or_default();
        let events = annotations.remove("kubechat.io/memory-slack-events").unwrap_or_default();
        if alerts.contains("5e1f00d4c0ffee01") && alerts.contains(&root) && events.contains("Ev2") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not kept in the Lease: {alerts:?} {events:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The leader dies. Until the follower takes over, it cannot claim an event or hand over an alert: it asks Slack and
    // Alertmanager to deliver again (503) rather than answer twice; once it leads, the redelivery is answered.
    let killed = Command::new("kill").args(["-KILL", &replicas[leading].child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let (third, delivery) = mention(&slack, "Ev3");
    assert_eq!(deliver(&replicas[following], &delivery, None).await, 503, "{}", replicas[following].log());
    assert_eq!(alert(&replicas[following], "firing").await, 503);
    let started = Instant::now();
    while holder(&cluster).await.as_deref() != Some(if following == 0 { "replica-a" } else { "replica-b" }) {
        assert!(started.elapsed() < Duration::from_secs(3 * LEASE_SECONDS), "no take-over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(deliver(&replicas[following], &delivery, Some(1)).await, 200);
    slack
        .until(Duration::from_secs(30), "the answer to the redelivery", |calls| !posted_in(calls, &third).is_empty())
        .await;
    assert!(
        replicas[following].log().contains("cannot claim the event at the leader"),
        "{}",
        replicas[following].log()
    );

    // The new leader recalls the old one's alerts: the same alert within its cooldown is not diagnosed again, and its
    // resolution is noted in the thread the old leader started.
    assert_eq!(alert(&replicas[following], "firing").await, 200);
    assert_eq!(alert(&replicas[following], "resolved").await, 200);
    let resolved = |calls: &[Call]| {
        posted_in(calls, &root).into_iter().any(|b| b.to_string().contains("Resolved: KubePodNotReady"))
    };
    slack.until(Duration::from_secs(20), "the resolved note in the first thread", resolved).await;
    assert_eq!(roots(&slack).len(), 1, "no second diagnosis: {:#?}", roots(&slack));
    assert!(replicas[following].log().contains("recalled=1"), "{}", replicas[following].log());
    // And the events the old leader saw: Slack's later retry of Ev2, which only the old leader had seen, is not
    // answered again.
    let delivery = mention_delivery("Ev2", &second);
    assert_eq!(deliver(&replicas[following], &delivery, Some(2)).await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = slack.calls("chat.postMessage");
    assert_eq!(posted_in(&calls, &second).len(), 1, "Ev2 answered once: {:#?}", posted_in(&calls, &second));
    replicas[following].terminate();
    replicas[following].exited(Duration::from_secs(20)).await;
    assert!(slack.violations().is_empty(), "{:#?}", slack.violations());
    drop(replicas.remove(leading));
}
