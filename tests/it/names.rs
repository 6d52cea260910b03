//! Names that are not Kubernetes names are refused at every entry point, with a message naming the rule, before
//! access is checked and before anything is read; an asker allowed `*-dev` reads `*-dev` namespaces and nothing else.
//! The cluster is a replay server behind a recording proxy, so "never read" is what the API server saw.

use std::sync::Arc;
use std::time::Duration;

use kubechat::access::{Access, Rule};
use kubechat::alerts::{AlertmanagerConfig, Receiver};
use kubechat::config::Config;
use kubechat::dump::Dump;
use kubechat::secret::Secret;
use kubechat::server::HttpAuth;
use kubechat::slack::SlackMode;
use serde_json::{Value, json};

use crate::common::{FaultyApi, api_proxy};
use crate::fake_slack::{BOT_USER, CHANNEL};
use crate::slack::{bot_on, command_body, event, now, signed, text_of};

/// A namespace every `*-dev` asker may read, and one none of them may.
pub const DEV: &str = "payments-dev";
pub const SECRET: &str = "secret-project";

/// What an attacker or a typo sends as a namespace, with what the refusal must say.
pub fn hostile_namespaces() -> Vec<(String, &'static str)> {
    vec![
        // Read as namespace secret-project by a client that put it in the path, matching the glob `*-dev`.
        ("secret-project/pods?x=-dev".to_string(), "has '/'"),
        ("a/../b".to_string(), "has '/'"),
        ("payments%2Fx".to_string(), "has '%'"),
        ("Payments-dev".to_string(), "has the upper-case 'P'"),
        (format!("{}-dev", "a".repeat(60)), "is 64 characters long"),
    ]
}

/// The rule every namespace refusal names.
pub const NAMESPACE_RULE: &str = "a namespace is an RFC 1123 label";
/// The refusal of `pod/`.
pub const EMPTY_OBJECT: &str = "pod name \"\" is not an object name: it is empty";

/// Two namespaces with the crash-looping pod of the scenarios: `payments-dev` and `secret-project`.
pub fn dump() -> Arc<Dump> {
    let crashloop = std::fs::read_to_string(format!("{}/crashloop.yaml", crate::common::SCENARIOS)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for namespace in [DEV, SECRET] {
        let text = crashloop.replace("crashloop", namespace);
        std::fs::write(dir.path().join(format!("{namespace}.yaml")), text).unwrap();
    }
    Arc::new(Dump::load(dir.path()).expect("the two namespaces load"))
}

/// What the API server was asked, so far, but whether it answers (`/version`, which kubechat asks every few seconds
/// and which names nothing).
pub fn asked(api: &FaultyApi) -> Vec<String> {
    api.hits.lock().unwrap().iter().map(|(path, _)| path.clone()).filter(|path| path != "/version").collect()
}

/// Waits a little for anything still on its way to the API server, then checks it was asked nothing new.
pub async fn nothing_read(api: &FaultyApi, before: usize, what: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = asked(api);
    assert_eq!(asked.len(), before, "{what} reached the API server: {:?}", &asked[before..]);
}

const DEV_CHANNEL: &str = "CDEV";
const TOKEN: &str = "0123456789abcdef-dev";

/// Slack's CDEV channel and the HTTP identity `dev` may read `*-dev`; Alertmanager posts to the fake's channel.
fn dev_only(config: &mut Config) {
    config.access = Access {
        slack: vec![Rule {
            place: DEV_CHANNEL.into(),
            namespaces: vec!["*-dev".into()],
            users: vec![],
            clusters: vec![],
        }],
        http: vec![Rule { place: "dev".into(), namespaces: vec!["*-dev".into()], users: vec![], clusters: vec![] }],
        contact: "#platform-help".into(),
        ..Access::default()
    };
    config.http_auth = HttpAuth::Tokens(vec![("dev".into(), Secret::new(TOKEN))]);
    config.alertmanager = AlertmanagerConfig {
        token: Secret::new("alertmanager-token-123"),
        cooldown: Duration::from_secs(600),
        diagnoses: kubechat::access::Rate { burst: 20, per_minute: 30 },
        receivers: vec![Receiver {
            name: "dev".into(),
            slack_channel: Some(CHANNEL.into()),
            matrix_room: None,
            namespaces: vec!["*-dev".into()],
            clusters: vec![],
        }],
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_refuses_names_that_are_not_names_and_reads_only_what_the_asker_may() {
    let api = api_proxy(dump(), Vec::new()).await;
    let bot = bot_on(&api.url, SlackMode::Http, Duration::from_millis(1), |_, _| {}, dev_only).await;
    let http = crate::common::http_client();
    let post = |body: Value, stream: bool| {
        let request = http.post(format!("{}/diagnose", bot.url)).bearer_auth(TOKEN).json(&body);
        let request = if stream { request.header("accept", "text/event-stream") } else { request };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let before = asked(&api).len();
    for stream in [false, true] {
        for (namespace, problem) in hostile_namespaces() {
            let (status, body) = post(json!({"namespace": namespace}), stream).await;
            let error = body["error"].as_str().unwrap_or_default();
            assert_eq!(status, 400, "{namespace} (streaming: {stream}): {body}");
            assert!(error.contains(problem) && error.contains(NAMESPACE_RULE), "{namespace}: {error}");
            assert!(body["request_id"].is_string());
        }
        let (status, body) = post(json!({"namespace": DEV, "object": "pod/"}), stream).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().starts_with(EMPTY_OBJECT), "{body}");
        let (status, body) = post(json!({"namespace": DEV, "object": "pod/a/../b"}), stream).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains("is not an object name"), "{body}");
    }
    nothing_read(&api, before, "a refused name").await;

    // `*-dev` allows payments-dev, and not secret-project, which was never read.
    let (status, body) = post(json!({"namespace": SECRET}), false).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(json!({"namespace": DEV}), false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["findings"][0]["reason"], "CrashLoopBackOff", "{body}");
    let asked = asked(&api);
    assert!(asked.iter().any(|p| p.contains("/namespaces/payments-dev/")), "{asked:?}");
    assert!(!asked.iter().any(|p| p.contains(SECRET)), "secret-project was read: {asked:?}");

    // A namespace that does not exist: "did you mean" names only what the asker may read, never secret-project.
    let (status, body) = post(json!({"namespace": "secret-projec-dev"}), false).await;
    assert_eq!(status, 404, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with("namespace secret-projec-dev does not exist"), "{error}");
    assert!(!error.contains(SECRET), "an unreadable namespace is named: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_commands_and_mentions_refuse_names_that_are_not_names() {
    let api = api_proxy(dump(), Vec::new()).await;
    let bot = bot_on(&api.url, SlackMode::Http, Duration::from_millis(1), |_, _| {}, dev_only).await;
    let form = "application/x-www-form-urlencoded";
    let command = |text: String| {
        let body = command_body(&bot, "/diagnose", &text, DEV_CHANNEL);
        let bot = &bot;
        async move {
            let ack: Value = signed(bot, "/slack/commands", form, &body, &now(), None).await.json().await.unwrap();
            ack["text"].as_str().unwrap_or_default().to_string()
        }
    };
    let before = asked(&api).len();
    for (namespace, problem) in hostile_namespaces() {
        let text = command(format!("-n {namespace}")).await;
        assert!(text.contains(problem) && text.contains(NAMESPACE_RULE), "{namespace}: {text}");
        assert!(text.contains("(request "), "{text}");
    }
    let text = command(format!("{DEV} pod/")).await;
    assert!(text.starts_with(EMPTY_OBJECT), "{text}");

    // Mentions: the refusal goes into the thread, and the model hears nothing.
    for (i, (namespace, problem)) in hostile_namespaces().into_iter().enumerate() {
        let said = format!("<@{BOT_USER}> diagnose -n {namespace}");
        let ts = bot.slack.post(json!({"type": "message", "user": "UDEV", "text": said}));
        let delivery = event(
            &format!("EvName{i}"),
            json!({"type": "app_mention", "user": "UDEV", "text": said, "ts": ts, "channel": DEV_CHANNEL, "event_ts": ts}),
        );
        signed(&bot, "/slack/events", "application/json", &delivery.to_string(), &now(), None).await;
        let calls = bot
            .slack
            .until(Duration::from_secs(10), "the refusal in the thread", |calls| {
                calls.iter().any(|c| c.method == "chat.postMessage" && c.body["thread_ts"] == ts.as_str())
            })
            .await;
        let refusal = calls.iter().find(|c| c.method == "chat.postMessage" && c.body["thread_ts"] == ts.as_str());
        let shown = text_of(&refusal.unwrap().body);
        assert!(shown.contains(problem) && shown.contains(NAMESPACE_RULE), "{namespace}: {shown}");
    }
    nothing_read(&api, before, "a refused name").await;
    assert!(bot.model.requests.lock().unwrap().is_empty(), "nothing reached the model");

    // `*-dev` allows payments-dev, and not secret-project.
    let text = command(format!("-n {SECRET}")).await;
    assert!(text.starts_with("you may not diagnose namespace secret-project from here"), "{text}");
    assert_eq!(command(format!("-n {DEV}")).await, "Diagnosing payments-dev…");
    bot.slack
        .until(Duration::from_secs(20), "the answer", |calls| {
            calls.iter().any(|c| c.method == "chat.update" && c.body["blocks"][0]["type"] == "header")
        })
        .await;
    assert!(!asked(&api).iter().any(|p| p.contains(SECRET)), "secret-project was read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_labels_that_are_not_names_are_refused_and_never_read() {
    let api = api_proxy(dump(), Vec::new()).await;
    let audit = crate::common::Audit::new();
    let path = audit.path.clone();
    let bot = bot_on(
        &api.url,
        SlackMode::Http,
        Duration::from_millis(1),
        |_, _| {},
        move |config| {
            dev_only(config);
            config.audit = Some(path);
        },
    )
    .await;
    let alert = |labels: Value| {
        json!({"version": "4", "groupKey": "{}", "status": "firing", "receiver": "dev", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": [{"status": "firing", "labels": labels, "annotations": {}, "startsAt": "2026-11-22T00:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "0123456789abcdef"}]})
    };
    let http = crate::common::http_client();
    let before = asked(&api).len();
    let mut cases: Vec<(Value, String)> = hostile_namespaces()
        .into_iter()
        .map(|(namespace, problem)| {
            (json!({"alertname": "KubePodCrashLooping", "namespace": namespace}), problem.into())
        })
        .collect();
    cases.push((
        json!({"alertname": "KubePodCrashLooping", "namespace": DEV, "pod": "Web-1"}),
        "pod name \"Web-1\" is not an object name".into(),
    ));
    for (labels, problem) in &cases {
        let response = http
            .post(format!("{}/alertmanager", bot.url))
            .bearer_auth("alertmanager-token-123")
            .json(&alert(labels.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{labels}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["accepted"], 0, "{body}");
        let error = body["refused"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains(problem.as_str()), "{labels}: {body}");
    }
    nothing_read(&api, before, "a refused label").await;
    let lines = audit.wait_for(cases.len()).await;
    assert!(lines.iter().all(|l| l["outcome"] == "invalid" && l["platform"] == "alertmanager"), "{lines:#?}");
    let posted = bot.slack.calls("chat.postMessage");
    assert!(posted.is_empty(), "nothing was posted for a refused alert: {posted:?}");
}
