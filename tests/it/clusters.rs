//! One kubechat, several clusters. Two real kube-apiservers: `east`, the default, read with the shipped manifests'
//! ServiceAccount, and `west`, read from afar as `k8s/remote` installs it (its token Secret filled in by the cluster's
//! own token controller, wired into a kubeconfig as docs/clusters.md says). A question reads the cluster it names,
//! access entries hold by cluster, `/clusters` lists what each caller may read, and stopping `west` leaves `east`
//! answering while `west`'s questions, readiness and metrics say it does not answer. Then Slack commands with
//! `--cluster`, a reply in an alert's thread and an alert's `cluster` label reach the cluster they name (two replay
//! servers there: what is tested is where the question goes).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use kubechat::access::{Access, Rule};
use kubechat::cluster::Source;
use kubechat::clusters::ClusterConfig;
use kubechat::secret::Secret as Token;
use kubechat::server::HttpAuth;
use serde_json::{Value, json};

use crate::apiserver::{Cluster, apply_manifests, build_shop};
use crate::common::{Audit, config, http_client, recorded, serve, spawn_app};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn rule(user: &str, namespaces: &[&str], clusters: &[&str]) -> Rule {
    Rule {
        place: user.into(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        users: vec![],
        clusters: clusters.iter().map(|c| c.to_string()).collect(),
    }
}

/// The API server's URL, from a kubeconfig the harness wrote.
fn server_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    text.lines().find_map(|l| l.trim().strip_prefix("server: ")).unwrap().to_string()
}

/// `k8s/remote` applied to `cluster`, then the kubeconfig an operator builds from its token Secret: the cluster's
/// URL, the Secret's `ca.crt` and `token`, a context of its own.
async fn remote_kubeconfig(cluster: &Cluster, dir: &Path) -> PathBuf {
    let applied = cluster.kubectl(&cluster.admin_kubeconfig, &["apply", "-k", &format!("{ROOT}/k8s/remote")]);
    assert!(applied.status.success(), "k8s/remote applies: {}", String::from_utf8_lossy(&applied.stderr));
    let secrets: Api<Secret> = Api::namespaced(cluster.admin().await, "kubechat");
    let deadline = Instant::now() + Duration::from_secs(60);
    let data = loop {
        let secret = secrets.get("kubechat-reader-token").await.unwrap();
        if let Some(data) = secret.data.filter(|d| d.contains_key("token") && d.contains_key("ca.crt")) {
            break data;
        }
        assert!(Instant::now() < deadline, "the token controller did not fill kubechat-reader-token in 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(&data["ca.crt"].0);
    let token = String::from_utf8(data["token"].0.clone()).unwrap();
    let path = dir.join("west.kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: west\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: kubechat-reader\n  user:\n    token: {token}\ncontexts:\n- name: other\n  context:\n    cluster: west\n    user: nobody\n- name: west-reader\n  context:\n    cluster: west\n    user: kubechat-reader\ncurrent-context: other\n",
            server_of(&cluster.admin_kubeconfig)
        ),
    )
    .unwrap();
    path
}

/// Namespace `ledger`, with a Deployment, in `cluster` only.
async fn build_ledger(cluster: &Cluster) {
    let admin = cluster.admin().await;
    let pp = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "ledger"}})).unwrap()).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(admin, "ledger");
    let deployment = json!({
        "metadata": {"name": "ledger-api", "labels": {"app": "ledger-api"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ledger-api"}},
                 "template": {"metadata": {"labels": {"app": "ledger-api"}},
                              "spec": {"containers": [{"name": "app", "image": "registry.example.com/ledger/api:1.0.0"}]}}},
    });
    deployments.create(&pp, &serde_json::from_value(deployment).unwrap()).await.unwrap();
}

async fn ask(url: &str, token: &str, body: Value) -> (u16, Value) {
    let response = http_client().post(format!("{url}/diagnose")).bearer_auth(token).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn get(url: &str, token: &str) -> (u16, Value) {
    let response = http_client().get(url).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn metrics(url: &str) -> String {
    http_client().get(url).send().await.unwrap().text().await.unwrap()
}

const CAROL: &str = "carol-token-0123456789";
const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789ab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_kubechat_reads_two_real_clusters_and_one_stopping_costs_only_its_own_questions() {
    let east = Cluster::start().await;
    apply_manifests(&east, &[]);
    build_shop(&east).await;
    let west = Cluster::start_issuing_tokens().await;
    let dir = tempfile::tempdir().unwrap();
    let west_kubeconfig = remote_kubeconfig(&west, dir.path()).await;
    build_ledger(&west).await;

    let model = recorded("text/event-stream", crate::slack::answer_stream()).await;
    let audit = Audit::new();
    let mut settings = config("http://unused", &model.url, "default");
    settings.namespace = None;
    settings.clusters = vec![
        ClusterConfig {
            namespace: Some("shop".into()),
            ..ClusterConfig::new("east", Source::Kubeconfig { path: east.bot_kubeconfig.clone(), context: None })
        },
        ClusterConfig {
            aliases: vec!["eu-west-1".into()],
            ..ClusterConfig::new(
                "west",
                Source::Kubeconfig { path: west_kubeconfig.clone(), context: Some("west-reader".into()) },
            )
        },
    ];
    settings.access = Access {
        // alice: every namespace of the default cluster; bob: ledger in west; carol: everything everywhere.
        http: vec![rule("alice", &["*"], &[]), rule("bob", &["ledger"], &["west"]), rule("carol", &["*"], &["*"])],
        default_cluster: "east".into(),
        contact: "#platform-help".into(),
        ..Access::default()
    };
    settings.http_auth = HttpAuth::Tokens(
        [("alice", ALICE), ("bob", BOB), ("carol", CAROL)].map(|(n, t)| (n.to_string(), Token::new(t))).to_vec(),
    );
    settings.audit = Some(audit.path.clone());
    settings.metrics = Some("127.0.0.1:0".parse().unwrap());
    let app = spawn_app(settings).await;
    let metrics_url = app.metrics_url.clone().unwrap();

    // What each caller may read.
    let (status, listed) = get(&format!("{}/clusters", app.url), CAROL).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = listed["clusters"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["east", "west"], "{listed}");
    assert_eq!(listed["clusters"][0]["default"], true);
    assert_eq!(listed["clusters"][0]["namespace"], "shop");
    assert!(listed["clusters"].as_array().unwrap().iter().all(|c| c["reachable"] == true), "{listed}");
    let (_, listed) = get(&format!("{}/clusters", app.url), ALICE).await;
    assert_eq!(listed["clusters"].as_array().unwrap().len(), 1, "alice: the default cluster only: {listed}");
    let (_, listed) = get(&format!("{}/clusters", app.url), BOB).await;
    assert_eq!(listed["clusters"][0]["name"], "west", "{listed}");
    let (_, namespaces) = get(&format!("{}/namespaces?cluster=west", app.url), BOB).await;
    assert_eq!(namespaces["namespaces"], json!(["ledger"]), "{namespaces}");

    // Each question reads the cluster it names; none, the default.
    let (status, shop) = ask(&app.url, CAROL, json!({})).await;
    assert_eq!(status, 200, "{shop}");
    assert_eq!((shop["cluster"].as_str(), shop["namespace"].as_str()), (Some("east"), Some("shop")));
    let reasons: Vec<&str> =
        shop["findings"].as_array().unwrap().iter().map(|f| f["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"ImagePullBackOff") || reasons.contains(&"ErrImagePull"), "east's shop: {reasons:?}");
    let (status, ledger) = ask(&app.url, CAROL, json!({"cluster": "west", "namespace": "ledger"})).await;
    assert_eq!(status, 200, "{ledger}");
    assert_eq!(ledger["cluster"], "west");
    assert!(ledger["context"].as_str().unwrap().contains("ledger-api"), "west's objects were read: {ledger}");
    let (status, aliased) = ask(&app.url, CAROL, json!({"cluster": "EU-West-1", "namespace": "ledger"})).await;
    assert_eq!((status, aliased["cluster"].as_str()), (200, Some("west")), "an alias, in any case");
    let (status, missing) = ask(&app.url, CAROL, json!({"cluster": "west", "namespace": "shop"})).await;
    assert_eq!(status, 404, "shop is east's, not west's: {missing}");
    assert!(missing["error"].as_str().unwrap().starts_with("namespace shop does not exist"), "{missing}");
    let (status, unknown) = ask(&app.url, CAROL, json!({"cluster": "north", "namespace": "shop"})).await;
    assert_eq!(status, 404);
    assert_eq!(
        unknown["error"],
        "kubechat reads no cluster named north that you may ask about; name one of east, west"
    );

    // Access by cluster.
    let (status, refused) = ask(&app.url, ALICE, json!({"cluster": "west", "namespace": "ledger"})).await;
    assert_eq!(status, 404, "a cluster alice may not read is one kubechat does not read, to her: {refused}");
    assert_eq!(
        refused["error"],
        "kubechat reads no cluster named west that you may ask about; name east, or leave the cluster out"
    );
    let (status, refused) = ask(&app.url, BOB, json!({"namespace": "ledger"})).await;
    assert_eq!(status, 403, "bob's entry names west only, not the default: {refused}");
    let (status, _) = ask(&app.url, BOB, json!({"cluster": "west", "namespace": "ledger"})).await;
    assert_eq!(status, 200);
    let (status, _) = ask(&app.url, BOB, json!({"cluster": "west", "namespace": "kube-system"})).await;
    assert_eq!(status, 403, "bob's namespaces in west");

    let lines = audit.wait_for(9).await;
    let of = |cluster: &str, outcome: &str| {
        lines.iter().filter(|l| l["cluster"] == cluster && l["outcome"] == outcome).count()
    };
    assert_eq!(of("east", "answered"), 1, "{lines:#?}");
    assert_eq!(of("west", "answered"), 3, "{lines:#?}");
    assert_eq!(of("north", "invalid"), 1, "an unknown cluster is the asker's mistake");
    assert_eq!(of("west", "refused"), 2, "alice's and bob's kube-system");
    let text = metrics(&metrics_url).await;
    assert!(text.contains("kubechat_cluster_reachable{cluster=\"west\"} 1"), "{text}");
    assert!(
        text.contains(
            "kubechat_requests_total{platform=\"http\",intent=\"diagnose\",outcome=\"answered\",cluster=\"west\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains("outcome=\"invalid\",cluster=\"unknown\"} 1"),
        "an unknown cluster's name is never a label value: {text}"
    );

    // West stops: its questions say so at once, east answers as before, and kubechat stays ready.
    drop(west);
    let started = Instant::now();
    let (status, down) = ask(&app.url, CAROL, json!({"cluster": "west", "namespace": "ledger"})).await;
    assert_eq!(status, 502, "{down}");
    let message = down["error"].as_str().unwrap();
    assert!(
        message.starts_with("cannot read cluster west: its API server does not answer (")
            && message.ends_with("; kubechat's other clusters answer as usual"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(12), "within one call's timeout: {:?}", started.elapsed());
    let (status, shop) = ask(&app.url, CAROL, json!({"namespace": "shop"})).await;
    assert_eq!((status, shop["cluster"].as_str()), (200, Some("east")));
    let ready = http_client().get(format!("{}/readyz", app.url)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "one cluster down does not take kubechat out of its Service");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["clusters"], json!([{"name": "east", "reachable": true}, {"name": "west", "reachable": false}]));
    let (_, listed) = get(&format!("{}/clusters", app.url), CAROL).await;
    assert_eq!(listed["clusters"][1]["reachable"], false, "{listed}");
    assert!(listed["clusters"][1]["error"].as_str().is_some_and(|e| !e.is_empty()), "{listed}");
    let text = metrics(&metrics_url).await;
    assert!(text.contains("kubechat_cluster_reachable{cluster=\"west\"} 0"), "{text}");
    assert!(text.contains("kubechat_cluster_reachable{cluster=\"east\"} 1"), "{text}");
    let lines = audit.wait_for(11).await;
    let last_west = lines.iter().rev().find(|l| l["cluster"] == "west").unwrap();
    assert_eq!(last_west["outcome"], "error", "{last_west}");

    // With no cluster answering, kubechat is not ready: the background check finds east gone too.
    drop(east);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let ready = http_client().get(format!("{}/readyz", app.url)).send().await.unwrap();
        if ready.status() == 503 {
            let ready: Value = ready.json().await.unwrap();
            let reason = ready["reason"].as_str().unwrap();
            assert!(reason.starts_with("cluster east: ") && reason.contains("; cluster west: "), "{ready}");
            break;
        }
        assert!(Instant::now() < deadline, "still ready 40 s after both API servers stopped");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Two replay servers: `east` serves every scenario, `west` only `oom`.
pub async fn east_and_west() -> (kubechat::replay::Server, kubechat::replay::Server) {
    let oom = kubechat::dump::Dump::load(Path::new(&format!("{}/oom.yaml", crate::common::SCENARIOS))).unwrap();
    (serve(crate::common::scenarios(), &[]).await, serve(std::sync::Arc::new(oom), &[]).await)
}

/// The two behind one kubechat, `east` the default, `west` also called `eu-west-1`.
pub fn two_clusters(config: &mut kubechat::config::Config, east: &str, west: &str) {
    config.clusters = vec![
        ClusterConfig::new("east", Source::Url(east.to_string())),
        ClusterConfig {
            aliases: vec!["eu-west-1".into()],
            ..ClusterConfig::new("west", Source::Url(west.to_string()))
        },
    ];
    config.access.default_cluster = "east".into();
    config.access.default_clusters = vec!["*".into()];
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_commands_alert_threads_and_alert_labels_reach_the_cluster_they_name() {
    use crate::fake_slack::CHANNEL;
    use crate::slack::{bot_on, command_body, event, now, signed, text_of};
    let (east, west) = east_and_west().await;
    let audit = Audit::new();
    let (east_url, west_url, audit_path) = (east.url(), west.url(), audit.path.clone());
    let bot = bot_on(
        &east_url,
        kubechat::slack::SlackMode::Http,
        Duration::from_millis(1),
        |_, _| {},
        |config| {
            let (east, west) = (east_url.clone(), west_url.clone());
            two_clusters(config, &east, &west);
            config.audit = Some(audit_path);
            config.alertmanager = kubechat::alerts::AlertmanagerConfig {
                token: Token::new("alertmanager-token-123"),
                cooldown: Duration::from_secs(600),
                diagnoses: kubechat::access::Rate { burst: 5, per_minute: 5 },
                receivers: vec![kubechat::alerts::Receiver {
                    name: "team-ops".into(),
                    slack_channel: Some(CHANNEL.into()),
                    matrix_room: None,
                    namespaces: vec!["*".into()],
                    clusters: vec!["*".into()],
                }],
            };
        },
    )
    .await;
    let form = "application/x-www-form-urlencoded";
    let command = |text: &str| command_body(&bot, "/diagnose", text, CHANNEL);
    // The help names the clusters and what may be asked in each.
    let help: Value = signed(&bot, "/slack/commands", form, &command_body(&bot, "/ask", "", CHANNEL), &now(), None)
        .await
        .json()
        .await
        .unwrap();
    let help = help["blocks"].to_string();
    assert!(help.contains("--cluster west` (or `-c`) — in another cluster; without it, east"), "{help}");
    assert!(help.contains("you may ask about: `east: *`, `west: *`"), "{help}");
    let ack: Value =
        signed(&bot, "/slack/commands", form, &command("oom --cluster west"), &now(), None).await.json().await.unwrap();
    assert_eq!(ack["text"], "Diagnosing oom in west…", "{ack}");
    let answered = |calls: &[crate::fake_slack::Call], cluster: &str| {
        calls.iter().any(|c| {
            c.method == "chat.update"
                && c.body["blocks"][0]["type"] == "header"
                && text_of(&c.body).contains(&format!("cluster {cluster} · "))
        })
    };
    bot.slack.until(Duration::from_secs(20), "the answer from west", |calls| answered(calls, "west")).await;
    // A namespace only east has, asked of west with the short flag and an alias: west's "does not exist".
    let ack: Value = signed(&bot, "/slack/commands", form, &command("-c eu-west-1 crashloop"), &now(), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ack["text"], "Diagnosing crashloop in west…", "{ack}");
    bot.slack
        .until(Duration::from_secs(20), "west's answer that crashloop does not exist", |calls| {
            calls.iter().any(|c| c.body.to_string().contains("namespace crashloop does not exist"))
        })
        .await;
    let ack: Value =
        signed(&bot, "/slack/commands", form, &command("oom -c north"), &now(), None).await.json().await.unwrap();
    assert!(
        ack["text"].as_str().unwrap().starts_with(
            "kubechat reads no cluster named north that you may ask about; name one of east, west (request "
        ),
        "{ack}"
    );

    // A mention in the thread of an alert from west: the alert's cluster label, then the thread's, decides.
    let alert_ts = bot.slack.post(json!({"type": "message", "subtype": "bot_message", "bot_id": "BALERTS", "text": "",
        "attachments": [{"title": "[FIRING:1] KubePodOOMKilled", "text": "*Details:*\n • *alertname:* `KubePodOOMKilled`\n • *cluster:* `eu-west-1`\n • *namespace:* `oom`"}]}));
    let mention = bot.slack.post(json!({"type": "message", "user": "UONCALL", "thread_ts": alert_ts,
        "text": format!("<@{}> diagnose", crate::fake_slack::BOT_USER)}));
    let delivery = event(
        "EvWestAlert",
        json!({"type": "app_mention", "user": "UONCALL", "channel": CHANNEL,
        "ts": mention, "thread_ts": alert_ts, "text": format!("<@{}> diagnose", crate::fake_slack::BOT_USER)}),
    );
    let response = signed(&bot, "/slack/events", "application/json", &delivery.to_string(), &now(), None).await;
    assert_eq!(response.status(), 200);
    bot.slack
        .until(Duration::from_secs(20), "the answer in the alert's thread, from west", |calls| {
            calls.iter().any(|c| {
                c.method == "chat.update"
                    && c.body["blocks"][0]["type"] == "header"
                    && text_of(&c.body).contains("cluster west · ")
                    && text_of(&c.body).contains("namespace oom · ")
            }) && calls.iter().any(|c| c.method == "chat.postMessage" && c.body["thread_ts"] == alert_ts.as_str())
        })
        .await;

    // Alertmanager: a cluster label reaches that cluster; one kubechat does not read is refused in the reply.
    let payload = json!({"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing", "receiver": "team-ops",
    "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
    "alerts": [
        {"status": "firing", "labels": {"alertname": "KubePodOOMKilled", "cluster": "west", "namespace": "oom"},
         "annotations": {}, "startsAt": "2026-12-03T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "0a0b0c0d0e0f1011"},
        {"status": "firing", "labels": {"alertname": "KubePodOOMKilled", "cluster": "north", "namespace": "oom"},
         "annotations": {}, "startsAt": "2026-12-03T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "1a1b1c1d1e1f2021"}
    ]});
    let reply: Value = http_client()
        .post(format!("{}/alertmanager", bot.url))
        .bearer_auth("alertmanager-token-123")
        .json(&payload)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["accepted"], 1, "{reply}");
    assert!(
        reply["refused"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("its cluster label names north, which is no cluster kubechat reads (east, west)"),
        "{reply}"
    );
    let lines = audit.wait_for(6).await;
    let alert = || {
        audit
            .lines()
            .into_iter()
            .find(|l| l["platform"] == "alertmanager" && l["cluster"] == "west" && l["outcome"] == "answered")
    };
    for _ in 0..200 {
        if alert().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(alert().is_some(), "the alert was diagnosed in west: {:#?}", audit.lines());
    assert!(lines.iter().any(|l| l["platform"] == "slack" && l["cluster"] == "north" && l["outcome"] == "invalid"));
    drop((east, west));
}
