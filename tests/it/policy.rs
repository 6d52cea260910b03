//! The inner wall and what an operator runs the bot with: access by channel and identity, rate limits, the audit log,
//! `/metrics`, HTTP authentication, and Alertmanager's webhook diagnosing in the alert's thread.

use std::time::Duration;

use kubechat::access::{Access, Rate, Rule};
use kubechat::alerts::{AlertmanagerConfig, Receiver};
use kubechat::config::Config;
use kubechat::secret::Secret;
use kubechat::server::HttpAuth;
use kubechat::slack::SlackMode;
use serde_json::{Value, json};

use crate::common::Audit;
use crate::fake_slack::{BOT_USER, CHANNEL};
use crate::slack::{Bot, bot_with_policy, command_body, event, now, signed, text_of};

const PAYMENTS: &str = "CPAYMENTS";
const TOKEN: &str = "alice:0123456789abcdef-alice";

/// The settings under test: Slack's payments channel may read `crash*`, the HTTP identity alice `oom` and `secrets`,
/// nobody else anything; the audit log goes to `audit`; Alertmanager's receiver posts to the fake Slack's channel.
fn policy(audit: &Audit, rate: Option<Rate>) -> impl FnOnce(&mut Config) {
    let path = audit.path.clone();
    move |config: &mut Config| {
        config.access = Access {
            slack: vec![Rule {
                place: PAYMENTS.into(),
                namespaces: vec!["crash*".into()],
                users: vec![],
                clusters: vec![],
            }],
            http: vec![Rule {
                place: "alice".into(),
                namespaces: vec!["oom".into(), "secrets".into()],
                users: vec![],
                clusters: vec![],
            }],
            contact: "#platform-help".into(),
            ..Access::default()
        };
        config.user_rate = rate;
        config.audit = Some(path);
        config.http_auth = HttpAuth::Tokens(vec![("alice".into(), Secret::new("0123456789abcdef-alice"))]);
        config.metrics = Some("127.0.0.1:0".parse().unwrap());
        config.alertmanager = AlertmanagerConfig {
            token: Secret::new("alertmanager-token-123"),
            cooldown: Duration::from_secs(600),
            diagnoses: kubechat::access::Rate { burst: 5, per_minute: 5 },
            receivers: vec![
                Receiver {
                    name: "team-payments".into(),
                    slack_channel: Some(CHANNEL.into()),
                    matrix_room: None,
                    namespaces: vec!["crash*".into()],
                    clusters: vec![],
                },
                // No namespaces of its own: held to its channel's entry, and PAYMENTS may read only `crash*`.
                Receiver {
                    name: "payments-channel".into(),
                    slack_channel: Some(PAYMENTS.into()),
                    matrix_room: None,
                    namespaces: vec![],
                    clusters: vec![],
                },
            ],
        };
    }
}

async fn bot(audit: &Audit, rate: Option<Rate>) -> Bot {
    bot_with_policy(SlackMode::Http, Duration::from_millis(1), |_, _| {}, policy(audit, rate)).await
}

fn bearer() -> String {
    format!("Bearer {}", TOKEN.split_once(':').unwrap().1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_channel_or_identity_is_refused_without_any_of_the_namespaces_data() {
    let audit = Audit::new();
    let bot = bot(&audit, None).await;
    let form = "application/x-www-form-urlencoded";
    // A channel with no entry: denied by default, told which namespace and whom to ask, and nothing else.
    let body = command_body(&bot, "/diagnose", "imagepull", CHANNEL);
    let ack: Value = signed(&bot, "/slack/commands", form, &body, &now(), None).await.json().await.unwrap();
    let text = ack["text"].as_str().unwrap();
    assert!(
        text.starts_with("you may not diagnose namespace imagepull from here; ask #platform-help for access"),
        "{text}"
    );
    // The mapped channel, a namespace outside its globs.
    let body = command_body(&bot, "/diagnose", "imagepull", PAYMENTS);
    let ack: Value = signed(&bot, "/slack/commands", form, &body, &now(), None).await.json().await.unwrap();
    assert!(ack["text"].as_str().unwrap().contains("may not diagnose namespace imagepull"));
    // A mention in an unmapped channel: the refusal goes in the thread.
    let ts =
        bot.slack.post(json!({"type": "message", "user": "UDEV", "text": format!("<@{BOT_USER}> diagnose imagepull")}));
    let delivery = event(
        "EvDenied",
        json!({"type": "app_mention", "user": "UDEV", "text": format!("<@{BOT_USER}> diagnose imagepull"),
        "ts": ts, "channel": CHANNEL, "event_ts": ts}),
    );
    signed(&bot, "/slack/events", "application/json", &delivery.to_string(), &now(), None).await;
    let calls = bot
        .slack
        .until(Duration::from_secs(10), "the refusal in the thread", |calls| {
            calls.iter().any(|c| c.method == "chat.postMessage" && c.body.to_string().contains("may not diagnose"))
        })
        .await;
    let refusal = calls.iter().find(|c| c.method == "chat.postMessage").unwrap();
    let shown = text_of(&refusal.body);
    for leaked in ["ImagePullBackOff", "checkout-6c9d8e7f1-k2v9d", "checkout"] {
        assert!(!shown.contains(leaked), "the refusal leaked {leaked}: {shown}");
    }
    assert!(bot.model.requests.lock().unwrap().is_empty(), "nothing reached the model");
    // The help lists what this channel may read.
    let body = command_body(&bot, "/ask", "", PAYMENTS);
    let help: Value = signed(&bot, "/slack/commands", form, &body, &now(), None).await.json().await.unwrap();
    assert!(help["blocks"][0]["text"]["text"].as_str().unwrap().contains("you may ask about: `crash*`"));

    // HTTP: no token, a wrong token, a namespace outside the identity's entry, then one inside it.
    let http = crate::common::http_client();
    let url = format!("{}/diagnose", bot.url);
    let status = http.post(&url).json(&json!({"namespace": "oom"})).send().await.unwrap().status();
    assert_eq!(status, 401);
    let status = http
        .post(&url)
        .bearer_auth("wrong-token-wrong-token")
        .json(&json!({"namespace": "oom"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
    let refused = http
        .post(&url)
        .header("authorization", bearer())
        .json(&json!({"namespace": "imagepull"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("may not diagnose namespace imagepull") && !body.contains("ImagePull"), "{body}");
    let namespaces: Value = http
        .get(format!("{}/namespaces", bot.url))
        .header("authorization", bearer())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(namespaces["namespaces"], json!(["oom", "secrets"]), "the picker lists only what alice may read");
    let answered =
        http.post(&url).header("authorization", bearer()).json(&json!({"namespace": "oom"})).send().await.unwrap();
    assert_eq!(answered.status(), 200);

    // One audit line per request, refusals included.
    let found = audit.wait_for(7).await;
    let outcomes: Vec<&str> = found.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "refused").count(), 4, "{outcomes:?}");
    assert!(outcomes.contains(&"answered"), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_politely() {
    let audit = Audit::new();
    let bot = bot(&audit, Some(Rate { burst: 1, per_minute: 2 })).await;
    let http = crate::common::http_client();
    let url = format!("{}/diagnose", bot.url);
    let first =
        http.post(&url).header("authorization", bearer()).json(&json!({"namespace": "oom"})).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second =
        http.post(&url).header("authorization", bearer()).json(&json!({"namespace": "oom"})).send().await.unwrap();
    assert_eq!(second.status(), 429);
    let wait: u64 = second.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "{wait}");
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"], format!("you are asking faster than kubechat answers; try again in {wait} s"));
    // On Slack, the same limit answers in the acknowledgement.
    let form = "application/x-www-form-urlencoded";
    let body = command_body(&bot, "/diagnose", "crashloop", PAYMENTS);
    let first: Value = signed(&bot, "/slack/commands", form, &body, &now(), None).await.json().await.unwrap();
    assert_eq!(first["text"], "Diagnosing crashloop…");
    let second: Value = signed(&bot, "/slack/commands", form, &body, &now(), None).await.json().await.unwrap();
    assert!(second["text"].as_str().unwrap().starts_with("you are asking faster than kubechat answers; try again in"));
    let found = audit.wait_for(4).await;
    assert_eq!(found.iter().filter(|l| l["outcome"] == "rate_limited").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_leaves_one_audit_line_without_secrets_and_the_metrics_move() {
    let audit = Audit::new();
    let bot = bot(&audit, None).await;
    let metrics_url = bot.app.metrics_url.clone().expect("metrics on their own port");
    let http = crate::common::http_client();
    let before = http.get(&metrics_url).send().await.unwrap().text().await.unwrap();
    let samples_before = parse_prometheus(&before);

    // The namespace whose pods, events and logs hold the redaction corpus's secrets.
    let url = format!("{}/diagnose", bot.url);
    let response =
        http.post(&url).header("authorization", bearer()).json(&json!({"namespace": "secrets"})).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answered: Value = response.json().await.unwrap();
    assert!(!answered["findings"].as_array().unwrap().is_empty());
    http.post(&url).header("authorization", bearer()).json(&json!({"namespace": "kube-system"})).send().await.unwrap();
    let found = audit.wait_for(2).await;
    assert_eq!(found.len(), 2, "one line per request");
    let line = &found[0];
    for field in [
        "time",
        "request_id",
        "platform",
        "user",
        "intent",
        "namespace",
        "prompt",
        "prompt_version",
        "model",
        "findings",
        "latency_ms",
        "outcome",
    ] {
        assert!(line.get(field).is_some(), "{field} missing from {line}");
    }
    assert_eq!((line["platform"].as_str(), line["user"].as_str()), (Some("http"), Some("alice")));
    assert!(line["latency_ms"]["retrieve"].is_u64() && line["latency_ms"]["llm_total"].is_u64());
    assert_eq!(
        line["findings"],
        json!(answered["findings"].as_array().unwrap().iter().map(|f| f["reason"].clone()).collect::<Vec<_>>())
    );
    assert_eq!(found[1]["outcome"], "refused");
    let text = std::fs::read_to_string(&audit.path).unwrap();
    let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/secrets.tsv")).unwrap();
    for secret in
        corpus.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split('\t').next()).filter(|s| s.len() >= 8)
    {
        assert!(!text.contains(secret), "the audit log holds a secret: {secret}");
    }
    assert!(
        !text.contains(answered["answer"].as_str().unwrap().lines().next().unwrap()),
        "no answer text in the audit log"
    );

    let after = http.get(&metrics_url).send().await.unwrap().text().await.unwrap();
    let samples = parse_prometheus(&after);
    let requests = |samples: &[(String, f64)], outcome: &str| {
        samples
            .iter()
            .filter(|(name, _)| {
                name.starts_with("kubechat_requests_total{") && name.contains(&format!("outcome=\"{outcome}\""))
            })
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    assert_eq!(requests(&samples, "answered") - requests(&samples_before, "answered"), 1.0, "{after}");
    assert_eq!(requests(&samples, "refused") - requests(&samples_before, "refused"), 1.0);
    assert!(
        samples
            .iter()
            .any(|(n, v)| n.starts_with("kubechat_stage_duration_seconds_count{stage=\"retrieve\"") && *v >= 1.0),
        "{after}"
    );
    assert!(samples.iter().any(|(n, _)| n == "kubechat_llm_queue_depth"));
}

/// Parses Prometheus' text format strictly enough to catch a malformed exposition: `# HELP`/`# TYPE`/`# UNIT`
/// comments, `name{labels} value` samples, and the closing `# EOF`.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let sample =
        regex::Regex::new(r#"^([a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})?) (\S+)$"#)
            .unwrap();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "the exposition ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(["HELP ", "TYPE ", "UNIT "].iter().any(|k| comment.starts_with(k)), "{line}");
            continue;
        }
        let captures = sample.captures(line).unwrap_or_else(|| panic!("not a sample line: {line}"));
        let value: f64 = captures[5].parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.push((captures[1].to_string(), value));
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_diagnosed_once_per_fingerprint_in_its_own_thread_and_resolved_there() {
    let audit = Audit::new();
    let bot = bot(&audit, None).await;
    // Alertmanager's own message in the channel, then chatter after it.
    let alert_ts = bot.slack.post(json!({"type": "message", "subtype": "bot_message", "bot_id": "BALERTS", "text": "",
        "attachments": [{"title": "[FIRING:1] KubePodCrashLooping", "text": "*Details:*\n • *alertname:* `KubePodCrashLooping`\n • *namespace:* `crashloop`\n • *pod:* `payments-api-7b8d9c6f5-qw7zt`"}]}));
    bot.slack.post(json!({"type": "message", "user": "UDEV", "text": "looking"}));
    let url = format!("{}/alertmanager", bot.url);
    let payload = |status: &str| {
        json!({"version": "4", "groupKey": "{}:{alertname=\"KubePodCrashLooping\"}", "truncatedAlerts": 0, "status": status,
        "receiver": "team-payments", "groupLabels": {"alertname": "KubePodCrashLooping"}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {"status": status, "labels": {"alertname": "KubePodCrashLooping", "namespace": "crashloop", "pod": "payments-api-7b8d9c6f5-qw7zt", "job": "kube-state-metrics"},
             "annotations": {}, "startsAt": "2026-11-22T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "a1b2c3d4e5f60718"},
            {"status": status, "labels": {"alertname": "Watchdog"}, "annotations": {}, "startsAt": "2026-11-22T00:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "ffff000011112222"}
        ]})
    };
    let http = crate::common::http_client();
    assert_eq!(
        http.post(&url).json(&payload("firing")).send().await.unwrap().status(),
        401,
        "a bearer token is required"
    );
    for _ in 0..3 {
        let response =
            http.post(&url).bearer_auth("alertmanager-token-123").json(&payload("firing")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let calls = bot
        .slack
        .until(Duration::from_secs(20), "the diagnosis in the alert's thread", |calls| {
            calls.iter().any(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header")
        })
        .await;
    let answer = calls.iter().find(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header").unwrap();
    assert!(text_of(&answer.body).contains("Diagnosis of namespace crashloop"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let posts: Vec<Value> = bot.slack.calls("chat.postMessage").into_iter().map(|c| c.body).collect();
    assert_eq!(posts.len(), 1, "one diagnosis for three deliveries of one fingerprint: {posts:#?}");
    assert_eq!(posts[0]["thread_ts"], alert_ts.as_str(), "in the alert's own thread");
    assert_eq!(bot.model.requests.lock().unwrap().len(), 1);
    let request = bot.model.requests.lock().unwrap()[0]["messages"].to_string();
    assert!(request.contains("payments-api-7b8d9c6f5-qw7zt"), "scoped to the alert's pod");

    let response =
        http.post(&url).bearer_auth("alertmanager-token-123").json(&payload("resolved")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let calls = bot
        .slack
        .until(Duration::from_secs(10), "the resolved note", |calls| {
            calls.iter().any(|c| {
                c.method == "chat.postMessage"
                    && c.body["text"].as_str().is_some_and(|t| t.starts_with("Resolved: KubePodCrashLooping"))
            })
        })
        .await;
    let note = calls.iter().rfind(|c| c.method == "chat.postMessage").unwrap();
    assert_eq!(note.body["thread_ts"], alert_ts.as_str());
    let bad = http
        .post(&url)
        .bearer_auth("alertmanager-token-123")
        .json(&json!({"version": "3", "receiver": "x", "alerts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bot.slack.violations().is_empty(), "{:#?}", bot.slack.violations());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_for_a_namespace_its_receiver_may_not_read_is_refused_and_nothing_is_posted() {
    let audit = Audit::new();
    let bot = bot(&audit, None).await;
    let url = format!("{}/alertmanager", bot.url);
    let alert = |receiver: &str, namespace: &str, fingerprint: &str| {
        json!({"version": "4", "groupKey": "{}", "truncatedAlerts": 0, "status": "firing", "receiver": receiver,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
        "alerts": [{"status": "firing", "labels": {"alertname": "KubePodOOMKilled", "namespace": namespace},
            "annotations": {}, "startsAt": "2026-11-22T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "",
            "fingerprint": fingerprint}]})
    };
    let http = crate::common::http_client();
    // `oom` is neither the receiver's (`crash*`) nor, for the receiver without namespaces, its channel's.
    for (receiver, fingerprint) in [("team-payments", "0000000000000001"), ("payments-channel", "0000000000000002")] {
        let response = http
            .post(&url)
            .bearer_auth("alertmanager-token-123")
            .json(&alert(receiver, "oom", fingerprint))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "accepted for diagnosis, then refused by access");
    }
    let lines = audit.wait_for(2).await;
    for (line, receiver, place) in [
        (&lines[0], "team-payments", format!("slack:{CHANNEL}")),
        (&lines[1], "payments-channel", format!("slack:{PAYMENTS}")),
    ] {
        assert_eq!(line["outcome"], "refused", "{line}");
        assert_eq!(line["platform"], "alertmanager", "{line}");
        assert_eq!(line["namespace"], "oom", "{line}");
        assert!(lines.iter().any(|l| l["user"] == receiver && l["channel"] == place.as_str()), "{lines:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        bot.slack.calls("chat.postMessage").is_empty(),
        "nothing is posted: {:?}",
        bot.slack.calls("chat.postMessage")
    );
    assert!(bot.model.requests.lock().unwrap().is_empty(), "nothing is read for the model");

    // The channel's own entry admits what it covers.
    let response = http
        .post(&url)
        .bearer_auth("alertmanager-token-123")
        .json(&alert("payments-channel", "crashloop", "0000000000000003"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    bot.slack
        .until(Duration::from_secs(20), "the diagnosis in the payments channel", |calls| {
            calls.iter().any(|c| c.method == "chat.postMessage" && c.body["channel"] == PAYMENTS)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_storm_starts_a_bounded_number_of_diagnoses() {
    let audit = Audit::new();
    let bot = bot(&audit, None).await;
    let alerts: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"status": "firing", "labels": {"alertname": "KubePodCrashLooping", "namespace": "crashloop"},
                "annotations": {}, "startsAt": "2026-11-22T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "", "fingerprint": format!("{i:016x}")})
        })
        .collect();
    let payload = json!({"version": "4", "groupKey": "{}", "truncatedAlerts": 0, "status": "firing",
        "receiver": "team-payments", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093", "alerts": alerts});
    assert!(payload.to_string().len() > 64 * 1024, "a storm is larger than the other routes' limit");
    let http = crate::common::http_client();
    let response = http
        .post(format!("{}/alertmanager", bot.url))
        .bearer_auth("alertmanager-token-123")
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["accepted"], 5, "the configured burst");
    let refused = reply["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 995);
    assert!(refused[0]["error"].as_str().unwrap().starts_with("kubechat starts at most 5 alert diagnoses at once"));
    let busy = audit.wait_for(995).await.iter().filter(|l| l["outcome"] == "busy").count();
    assert_eq!(busy, 995);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(bot.model.requests.lock().unwrap().len() <= 5, "at most 5 diagnoses reached the model");

    // Without its token, a large body is refused before it is read: the answer comes with none of the body sent (a
    // client still writing it may see the connection close under it instead of the answer).
    let status = crate::common::status_before_the_body(&bot.url, "/alertmanager", 3 * 1024 * 1024).await;
    assert_eq!(status, 401);
}
