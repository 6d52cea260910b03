//! `meta.k8s.io/v1 Table` renderings, so `kubectl get` prints the same columns it prints against a real cluster.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::resources::Resource;

/// How much of each object a Table row carries (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(text: Option<&str>) -> Result<IncludeObject, String> {
        match text {
            None | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(other) => Err(format!("includeObject must be None, Metadata or Object, not {other:?}")),
        }
    }
}

/// Renders objects as a Table; `metadata` is the list metadata (resourceVersion, continue).
pub fn render(
    resource: &Resource,
    objects: &[&Value],
    metadata: Value,
    include: IncludeObject,
    now: Timestamp,
) -> Value {
    let columns = columns(resource.plural);
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": cells(resource.plural, object, now)});
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    row["object"] = json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": object["metadata"],
                    })
                }
                IncludeObject::Object => row["object"] = (*object).clone(),
            }
            row
        })
        .collect();
    let column_definitions: Vec<Value> = columns
        .iter()
        .map(|(name, kind, priority)| {
            json!({"name": name, "type": kind, "format": if *name == "Name" { "name" } else { "" }, "description": "", "priority": priority})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

fn columns(plural: &str) -> &'static [(&'static str, &'static str, u8)] {
    match plural {
        "pods" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        "events" => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
        ],
        "deployments" => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
        ],
        "services" => &[
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
        ],
        "nodes" => &[("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0), ("Version", "string", 0)],
        "persistentvolumeclaims" => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Storage Class", "string", 0),
            ("Age", "string", 0),
        ],
        _ => &[("Name", "string", 0), ("Age", "string", 0)],
    }
}

fn cells(plural: &str, o: &Value, now: Timestamp) -> Vec<Value> {
    let name = json!(o["metadata"]["name"]);
    let created = json!(age(o["metadata"]["creationTimestamp"].as_str(), now));
    let text = |v: &Value| json!(v.as_str().unwrap_or("<none>"));
    match plural {
        "pods" => {
            let statuses = o["status"]["containerStatuses"].as_array().map(Vec::as_slice).unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(statuses.len(), Vec::len);
            let ready = statuses.iter().filter(|s| s["ready"] == true).count();
            let restarts: i64 = statuses.iter().map(|s| s["restartCount"].as_i64().unwrap_or(0)).sum();
            let last = statuses.iter().filter_map(|s| s["lastState"]["terminated"]["finishedAt"].as_str()).max();
            let restarts = match last {
                Some(at) if restarts > 0 => format!("{restarts} ({} ago)", age(Some(at), now)),
                _ => restarts.to_string(),
            };
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts),
                created,
                text(&o["status"]["podIP"]),
                text(&o["spec"]["nodeName"]),
            ]
        }
        "events" => {
            let last =
                o["lastTimestamp"].as_str().or(o["eventTime"].as_str()).or(o["metadata"]["creationTimestamp"].as_str());
            let involved = &o["involvedObject"];
            let object = format!(
                "{}/{}",
                involved["kind"].as_str().unwrap_or_default().to_lowercase(),
                involved["name"].as_str().unwrap_or_default()
            );
            vec![
                json!(age(last, now)),
                text(&o["type"]),
                text(&o["reason"]),
                json!(object),
                json!(o["message"].as_str().unwrap_or_default()),
            ]
        }
        "deployments" => {
            let status = &o["status"];
            let desired = o["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = status["readyReplicas"].as_i64().unwrap_or(0);
            vec![
                name,
                json!(format!("{ready}/{desired}")),
                json!(status["updatedReplicas"].as_i64().unwrap_or(0)),
                json!(status["availableReplicas"].as_i64().unwrap_or(0)),
                created,
            ]
        }
        "services" => {
            let ports: Vec<String> = o["spec"]["ports"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let port = p["port"].as_i64().unwrap_or(0);
                    let protocol = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(node_port) => format!("{port}:{node_port}/{protocol}"),
                        None => format!("{port}/{protocol}"),
                    }
                })
                .collect();
            let external = o["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().unwrap_or("<none>");
            vec![
                name,
                text(&o["spec"]["type"]),
                text(&o["spec"]["clusterIP"]),
                json!(external),
                json!(if ports.is_empty() { "<none>".to_string() } else { ports.join(",") }),
                created,
            ]
        }
        "nodes" => {
            let conditions = o["status"]["conditions"].as_array().map(Vec::as_slice).unwrap_or_default();
            let ready = conditions.iter().find(|c| c["type"] == "Ready").and_then(|c| c["status"].as_str());
            let mut status = if ready == Some("True") { "Ready".to_string() } else { "NotReady".to_string() };
            if o["spec"]["unschedulable"] == true {
                status.push_str(",SchedulingDisabled");
            }
            vec![name, json!(status), created, text(&o["status"]["nodeInfo"]["kubeletVersion"])]
        }
        "persistentvolumeclaims" => vec![
            name,
            text(&o["status"]["phase"]),
            json!(o["spec"]["volumeName"].as_str().unwrap_or("")),
            json!(o["status"]["capacity"]["storage"].as_str().unwrap_or("")),
            text(&o["spec"]["storageClassName"]),
            created,
        ],
        _ => vec![name, created],
    }
}

/// The STATUS column of `kubectl get pods`, following kubectl's own rules.
pub fn pod_status(pod: &Value) -> String {
    let status = &pod["status"];
    let mut reason = status["reason"].as_str().or(status["phase"].as_str()).unwrap_or("Unknown").to_string();
    let empty = Vec::new();
    let init = status["initContainerStatuses"].as_array().unwrap_or(&empty);
    let mut initializing = false;
    for (i, c) in init.iter().enumerate() {
        let terminated = &c["state"]["terminated"];
        if terminated["exitCode"] == 0 && !terminated.is_null() {
            continue;
        }
        initializing = true;
        reason = if !terminated.is_null() {
            match terminated["reason"].as_str() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => format!("Init:ExitCode:{}", terminated["exitCode"]),
            }
        } else {
            match c["state"]["waiting"]["reason"].as_str() {
                Some(r) if r != "PodInitializing" => format!("Init:{r}"),
                _ => format!("Init:{i}/{}", init.len()),
            }
        };
        break;
    }
    if !initializing {
        let mut running = false;
        for c in status["containerStatuses"].as_array().unwrap_or(&empty).iter().rev() {
            let state = &c["state"];
            if let Some(r) = state["waiting"]["reason"].as_str() {
                reason = r.to_string();
            } else if !state["terminated"].is_null() {
                reason = match state["terminated"]["reason"].as_str() {
                    Some(r) => r.to_string(),
                    None => format!("ExitCode:{}", state["terminated"]["exitCode"]),
                };
            } else if !state["running"].is_null() && c["ready"] == true {
                running = true;
            }
        }
        if reason == "Completed" && running {
            reason = "Running".to_string();
        }
    }
    if !pod["metadata"]["deletionTimestamp"].is_null() {
        reason = if status["reason"] == "NodeLost" { "Unknown".to_string() } else { "Terminating".to_string() };
    }
    reason
}

/// kubectl's short ages: `45s`, `12m`, `5h`, `3d`, `2y`.
pub fn age(timestamp: Option<&str>, now: Timestamp) -> String {
    let Some(then) = timestamp.and_then(|t| t.parse::<Timestamp>().ok()) else { return "<unknown>".to_string() };
    let seconds = now.as_second().saturating_sub(then.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 3 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s if s < 86400 * 365 * 2 => format!("{}d", s / 86400),
        s => format!("{}y", s / (86400 * 365)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_looping_pod_shows_its_waiting_reason() {
        let pod = json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": false, "restartCount": 7, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ]}});
        assert_eq!(pod_status(&pod), "CrashLoopBackOff");
    }

    #[test]
    fn init_containers_and_evictions_read_like_kubectl() {
        let init = json!({"status": {"phase": "Pending", "initContainerStatuses": [
            {"name": "migrate", "state": {"waiting": {"reason": "PodInitializing"}}}, {"name": "b", "state": {}}
        ]}});
        assert_eq!(pod_status(&init), "Init:0/2");
        let evicted = json!({"status": {"phase": "Failed", "reason": "Evicted"}});
        assert_eq!(pod_status(&evicted), "Evicted");
    }

    #[test]
    fn ages_are_short() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().unwrap();
        assert_eq!(age(Some("2026-01-01T11:59:30Z"), now), "30s");
        assert_eq!(age(Some("2026-01-01T11:00:00Z"), now), "60m");
        assert_eq!(age(Some("2025-12-30T12:00:00Z"), now), "2d");
        assert_eq!(age(None, now), "<unknown>");
    }
}
