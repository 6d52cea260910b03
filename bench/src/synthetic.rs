//! A generated namespace of any size, for the benchmarks and the load tests: one Deployment's running pods, their
//! events, and, when asked, one crash-looping pod with its previous log.

use serde_json::json;

use kubechat::dump::{Dump, LogKey};

/// A broken namespace of `pods` pods and three times as many events, as one YAML `List` (a dump file): about 2.7 kB
/// a pod.
pub fn yaml(namespace: &str, pods: usize) -> Result<String, serde_saphyr::ser::Error> {
    let dump = self::namespace(namespace, pods, pods * 3, true);
    let items: Vec<serde_json::Value> = kubechat::resources::ALL
        .iter()
        .filter_map(|r| dump.objects(r))
        .flat_map(|objects| objects.values())
        .map(|o| kubechat::dump::value(o))
        .collect();
    serde_saphyr::to_string(
        &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}),
    )
}

/// The crash-looping pod of a broken namespace of `pods` pods.
pub fn broken_pod(pods: usize) -> String {
    format!("web-5d4c3b2a1-{:05}", pods / 2)
}

/// A namespace of `pods` running pods of one Deployment, `events` Normal events about them, and, when `broken` is
/// set, one crash-looping pod among them with its previous log.
pub fn namespace(namespace: &str, pods: usize, events: usize, broken: bool) -> Dump {
    let mut objects = Vec::with_capacity(pods + events + 2);
    objects.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace, "uid": "d-1", "creationTimestamp": "2026-11-01T00:00:00Z",
                     "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": pods, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "registry.example.com/web:1.0.0"}]}}},
        "status": {"replicas": pods, "updatedReplicas": pods, "readyReplicas": pods - usize::from(broken), "availableReplicas": pods - usize::from(broken),
                   "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet \"web-5d4c3b2a1\" has successfully progressed."}]},
    }));
    objects.push(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-5d4c3b2a1", "namespace": namespace, "uid": "rs-1", "annotations": {"deployment.kubernetes.io/revision": "1"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d-1", "controller": true}]},
        "spec": {"replicas": pods, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4c3b2a1"}}},
        "status": {"replicas": pods, "readyReplicas": pods},
    }));
    let mut dump_logs = Vec::new();
    for i in 0..pods {
        let name = format!("web-5d4c3b2a1-{i:05}");
        let crashing = broken && i == pods / 2;
        let status = if crashing {
            json!({"name": "app", "image": "registry.example.com/web:1.0.0", "imageID": "", "ready": false, "restartCount": 12, "started": false,
                   "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 5m0s restarting failed container=app pod={name}")}},
                   "lastState": {"terminated": {"reason": "Error", "exitCode": 2, "startedAt": "2026-11-20T09:50:00Z", "finishedAt": "2026-11-20T09:50:02Z"}}})
        } else {
            json!({"name": "app", "image": "registry.example.com/web:1.0.0", "imageID": "registry.example.com/web@sha256:ab12", "ready": true, "restartCount": 0, "started": true,
                   "state": {"running": {"startedAt": "2026-11-01T00:00:05Z"}}, "lastState": {}})
        };
        if crashing {
            dump_logs.push((name.clone(), "starting web\nerror: invalid configuration: LISTEN_ADDR is empty\n"));
        }
        objects.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("pod-{i}"), "creationTimestamp": "2026-11-01T00:00:00Z",
                         "labels": {"app": "web", "pod-template-hash": "5d4c3b2a1"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4c3b2a1", "uid": "rs-1", "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"nodeName": format!("worker-{}", i % 3 + 1), "restartPolicy": "Always",
                     "containers": [{"name": "app", "image": "registry.example.com/web:1.0.0", "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]},
            "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", 244 + i / 62_500, i / 250 % 250, i % 250), "hostIP": "10.0.1.21", "qosClass": "Burstable",
                       "startTime": "2026-11-01T00:00:00Z",
                       "conditions": [{"type": "Ready", "status": if crashing { "False" } else { "True" }, "lastProbeTime": null, "lastTransitionTime": "2026-11-01T00:00:05Z"}],
                       "containerStatuses": [status]},
        }));
    }
    for i in 0..events {
        let pod = format!("web-5d4c3b2a1-{:05}", i % pods.max(1));
        // A round of events over every pod, then the next, each round a reason of its own: events alike on one
        // object (the same reason and message) are folded into one, so picking by `i % 3` folded a pod's three into
        // one whenever the pods were a multiple of three (30,000 pods and 90,000 events read as 30,000).
        let (reason, message) = match (i / pods.max(1)) % 3 {
            0 => ("Scheduled", format!("Successfully assigned {namespace}/{pod} to worker-1")),
            1 => {
                ("Pulled", "Container image \"registry.example.com/web:1.0.0\" already present on machine".to_string())
            }
            _ => ("Started", "Started container app".to_string()),
        };
        objects.push(json!({
            "apiVersion": "v1", "kind": "Event", "type": "Normal", "reason": reason, "message": message, "count": 1,
            "metadata": {"name": format!("{pod}.{i:x}"), "namespace": namespace, "creationTimestamp": "2026-11-01T00:00:01Z"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace, "uid": format!("pod-{}", i % pods.max(1))},
            "source": {"component": "kubelet", "host": "worker-1"},
            "firstTimestamp": "2026-11-01T00:00:01Z", "lastTimestamp": format!("2026-11-01T00:{:02}:{:02}Z", (i / 60) % 60, i % 60),
        }));
    }
    let mut dump = Dump::from_objects(objects);
    for (pod, text) in dump_logs {
        let key = LogKey { namespace: namespace.to_string(), pod, container: "app".to_string(), previous: true };
        dump.add_log(key, text);
    }
    dump
}
