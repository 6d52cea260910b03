//! Several replicas, one leader: `kubechat serve` processes against the real kube-apiserver elect one holder of a
//! `coordination.k8s.io` Lease, and only the holder holds the Slack Socket Mode connection (the fake Slack sees one at a
//! time). SIGKILL of the leader hands over within the Lease's duration; SIGTERM hands over at once (the leader lets the
//! Lease go as its shutdown begins).

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::apiserver::Cluster;
use crate::common::recorded_slowly;
use crate::drain::{Serve, readyz, serve_with};
use crate::fake_slack::FakeSlack;

const LEASE_SECONDS: u64 = 4;

fn replica(cluster: &Cluster, slack: &FakeSlack, model: &crate::common::Recorded, name: &str) -> Serve {
    let settings = format!(
        "kubeconfig: {}\nleader:\n  lease: kubechat-leader\n  identity: {name}\n  duration_seconds: {LEASE_SECONDS}\n",
        cluster.admin_kubeconfig.display()
    );
    serve_with(slack, model, &settings)
}

async fn holder(cluster: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(cluster.admin().await, "default");
    leases.get_opt("kubechat-leader").await.unwrap()?.spec?.holder_identity
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
    let cluster = Cluster::start().await;
    let slack = FakeSlack::start().await;
    let model = recorded_slowly("text/event-stream", crate::slack::answer_stream(), Duration::from_millis(5)).await;
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
