//! The scope an alert message names: the `cluster`, `namespace`, `pod` and workload labels that Alertmanager's and PagerDuty's
//! Slack messages carry, in text, attachments, fields or blocks, in the `key: value`, `key = value` and `key="value"`
//! forms their templates print.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// What an alert says about where the trouble is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertScope {
    /// The cluster label's value, as kubechat's name or an alias of one.
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    /// `pod/NAME`, `deployment/NAME`, … the most specific object the alert names.
    pub object: Option<String>,
}

impl AlertScope {
    pub fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.object.is_none()
    }
}

/// Label names for each thing, in the order they are trusted. `job` is left out on purpose: in Prometheus alerts it
/// names the scrape job, not a Kubernetes Job.
const CLUSTER_LABELS: &[&str] = &["cluster", "cluster_name", "k8s_cluster_name", "kubernetes_cluster"];
const NAMESPACE_LABELS: &[&str] = &["namespace", "kubernetes_namespace", "exported_namespace", "k8s_namespace_name"];
const OBJECT_LABELS: &[(&str, &str)] = &[
    ("pod", "pod"),
    ("pod_name", "pod"),
    ("kubernetes_pod_name", "pod"),
    ("k8s_pod_name", "pod"),
    ("deployment", "deployment"),
    ("k8s_deployment_name", "deployment"),
    ("statefulset", "statefulset"),
    ("daemonset", "daemonset"),
    ("job_name", "job"),
    ("cronjob", "cronjob"),
];

static LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?m)(?:^|[\s,{(•*_`|-])([a-z_0-9]+)[`*_]*[ \t]*(?:=|:)[ \t`*_"']*([a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)"#)
        .expect("the label pattern compiles")
});

/// Every string a message shows: its text, attachments (title, text, fields) and blocks.
fn texts(message: &Value, out: &mut Vec<String>) {
    match message {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| texts(v, out)),
        Value::Object(map) => {
            // An attachment field `{title: namespace, value: payments}` reads as `namespace: payments`.
            if let (Some(Value::String(title)), Some(Value::String(value))) = (map.get("title"), map.get("value")) {
                out.push(format!("{title}: {value}"));
            }
            for (key, value) in map {
                if matches!(
                    key.as_str(),
                    "text"
                        | "title"
                        | "value"
                        | "fallback"
                        | "pretext"
                        | "fields"
                        | "attachments"
                        | "blocks"
                        | "elements"
                ) {
                    texts(value, out);
                }
            }
        }
        _ => {}
    }
}

/// Reads the labels of an alert message (a `conversations.replies` message object).
pub fn scope(message: &Value) -> AlertScope {
    let mut strings = Vec::new();
    texts(message, &mut strings);
    let mut labels: Vec<(String, String)> = Vec::new();
    for text in &strings {
        for capture in LABEL.captures_iter(&text.to_lowercase()) {
            labels.push((capture[1].to_string(), capture[2].to_string()));
        }
    }
    from_labels(|name| labels.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

/// The scope that labels name, `label` giving a label's value: also for Alertmanager's webhook, whose alerts carry
/// their labels as a map.
pub fn from_labels(label: impl Fn(&str) -> Option<String>) -> AlertScope {
    let cluster = CLUSTER_LABELS.iter().find_map(|l| label(l));
    let namespace = NAMESPACE_LABELS.iter().find_map(|l| label(l));
    let object = OBJECT_LABELS.iter().find_map(|(name, kind)| label(name).map(|value| format!("{kind}/{value}")));
    AlertScope { cluster, namespace, object }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn alertmanagers_default_slack_template() {
        // Alertmanager's Slack receiver with the usual kube-prometheus template: labels listed in the attachment text.
        let message = json!({
            "bot_id": "B0ALERTS",
            "text": "",
            "attachments": [{
                "title": "[FIRING:1] KubePodCrashLooping (payments-api-7b8d9c6f5-x2x4q)",
                "text": "*Alert:* Pod is crash looping. - `critical`\n*Description:* Pod payments/payments-api-7b8d9c6f5-x2x4q (api) is in waiting state (reason: \"CrashLoopBackOff\").\n*Details:*\n  • *alertname:* `KubePodCrashLooping`\n  • *container:* `api`\n  • *job:* `kube-state-metrics`\n  • *namespace:* `payments`\n  • *pod:* `payments-api-7b8d9c6f5-x2x4q`\n  • *severity:* `critical`",
                "fallback": "[FIRING:1] KubePodCrashLooping"
            }]
        });
        assert_eq!(
            scope(&message),
            AlertScope {
                cluster: None,
                namespace: Some("payments".into()),
                object: Some("pod/payments-api-7b8d9c6f5-x2x4q".into())
            }
        );
    }

    #[test]
    fn fields_blocks_and_label_sets() {
        let fields = json!({"attachments": [{"fields": [
            {"title": "namespace", "value": "shop", "short": true},
            {"title": "deployment", "value": "checkout", "short": true}
        ]}]});
        assert_eq!(
            scope(&fields),
            AlertScope { cluster: None, namespace: Some("shop".into()), object: Some("deployment/checkout".into()) }
        );
        let blocks = json!({"blocks": [{"type": "section", "text": {"type": "mrkdwn",
            "text": "Triggered: KubeJobFailed {cluster=\"prod-eu-1\", job_name=\"nightly-report\", namespace=\"batch\"}"}}]});
        assert_eq!(
            scope(&blocks),
            AlertScope {
                cluster: Some("prod-eu-1".into()),
                namespace: Some("batch".into()),
                object: Some("job/nightly-report".into())
            }
        );
        assert!(scope(&json!({"text": "deploy finished, all good"})).is_empty());
        assert!(scope(&json!({"text": "job: kube-state-metrics"})).is_empty(), "job is the scrape job");
    }
}
