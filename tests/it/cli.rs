//! `kubechat diagnose --dump DIR --no-llm --output json`, end to end through the binary and the replay server.

use serde_json::Value;

use crate::common::{SCENARIOS, findings, kubechat};

fn diagnose(namespace: &str, extra: &[&str]) -> Value {
    let mut args = vec!["diagnose", "--dump", SCENARIOS, "-n", namespace, "--no-llm", "--output", "json"];
    args.extend_from_slice(extra);
    let out = kubechat(&args);
    assert!(out.status.success(), "diagnose -n {namespace} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// Each scenario: the findings expected in order (root cause first), and the decisive line the context must quote.
/// (reason, kind, name) of one expected finding.
pub type Expected = (&'static str, &'static str, &'static str);

pub const CASES: &[(&str, &[Expected], &str)] = &[
    (
        "crashloop",
        &[("CrashLoopBackOff", "Pod", "payments-api-7b8d9c6f5-qw7zt")],
        "fatal: could not connect to postgres at payments-db:5432: connection refused",
    ),
    ("oom", &[("OOMKilled", "Pod", "report-worker-6f7c8d9b5-x4m2n")], "reason=OOMKilled exitCode=137"),
    (
        "imagepull",
        &[("ImagePullBackOff", "Pod", "checkout-6c9d8e7f1-k2v9d"), ("RolloutStuck", "Deployment", "checkout")],
        "registry.example.com/shop/checkout:2.3.1-rc: not found",
    ),
    ("config", &[("CreateContainerConfigError", "Pod", "orders-8d7c6b5a4-tr5kx")], r#"secret \"orders-db\" not found"#),
    ("mounts", &[("FailedMount", "Pod", "web-5b6c7d8e9-hj3kl")], r#"configmap "web-config" not found"#),
    (
        "pending",
        &[("NodeNotReady", "Node", "worker-3"), ("Unschedulable", "Pod", "analytics-0")],
        "node worker-3 refuses it: NotReady",
    ),
    (
        "readiness",
        &[("ProbeFailing", "Pod", "search-7c8d9e6f5-abc12"), ("ServiceNoEndpoints", "Service", "search")],
        "Readiness probe failed: HTTP probe failed with statuscode: 503",
    ),
    ("services", &[("ServiceNoEndpoints", "Service", "legacy-api")], "endpoints legacy-api: 0 ready addresses"),
    (
        "storage",
        &[("PVCPending", "PersistentVolumeClaim", "data-postgres-0"), ("Unschedulable", "Pod", "postgres-0")],
        r#"storageclass.storage.k8s.io "fast-ssd" not found"#,
    ),
    ("jobs", &[("JobFailed", "Job", "db-migrate-5-0-1")], r#"relation "users" already exists"#),
    ("evicted", &[("Evicted", "Pod", "cache-7f9b8c6d5-4xq2w")], "The node was low on resource: memory."),
    ("nodes", &[("NodeNotReady", "Node", "worker-3")], "Kubelet stopped posting node status."),
    (
        "quota",
        &[("FailedCreate", "ReplicaSet", "api-6d8f7c9b5"), ("RolloutStuck", "Deployment", "api")],
        "exceeded quota: compute-resources, requested: limits.memory=1Gi, used: limits.memory=3584Mi, limited: limits.memory=4Gi",
    ),
    (
        "podsecurity",
        &[
            ("FailedCreate", "ReplicaSet", "web-6d8f7c9b5"),
            ("RolloutStuck", "Deployment", "web"),
            ("ServiceNoEndpoints", "Service", "web"),
        ],
        r#"violates PodSecurity "restricted:latest""#,
    ),
    (
        "webhook",
        &[("FailedCreate", "StatefulSet", "postgres")],
        r#"failed calling webhook "validate.kyverno.svc-fail""#,
    ),
    ("serviceaccount", &[("FailedCreate", "Job", "nightly-export")], r#"serviceaccount "report-writer" not found"#),
    (
        "sandbox",
        &[("SandboxFailed", "Pod", "checkout-worker-7c6b5d4f9-v9n4s")],
        r#"plugin type="calico" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized"#,
    ),
    (
        "terminating",
        &[("StuckTerminating", "Pod", "kafka-2")],
        "metadata.finalizers: [kafka.example.com/partition-drain]",
    ),
    (
        "ports",
        &[("ServicePortMismatch", "Service", "recommendations")],
        "pod recommendations-9b8c7d6e5-c7v2b containers' ports: 3000/http (container recommendations)",
    ),
    ("selector", &[("ServiceNoEndpoints", "Service", "payments-api")], "near miss: pod payments-api-9b8c7d6e5-"),
    (
        "init",
        &[("InitFailing", "Pod", "accounts-9b8c7d6e5-r2t4y"), ("ServiceNoEndpoints", "Service", "accounts")],
        r#"column "flags" of relation "accounts" already exists"#,
    ),
    ("exitzero", &[("CrashLoopBackOff", "Pod", "outbox-relay-9b8c7d6e5-k3j4h")], "reason=Completed exitCode=0"),
    (
        "liveness",
        &[("LivenessRestarts", "Pod", "inventory-9b8c7d6e5-p8o7i")],
        "Container inventory failed liveness probe, will be restarted",
    ),
    (
        "cordoned",
        &[
            ("NodeCordoned", "Node", "gpu-1"),
            ("Unschedulable", "Pod", "model-train-36630ce67-a3663"),
            ("RolloutStuck", "Deployment", "model-train"),
        ],
        "node gpu-1 refuses it: cordoned",
    ),
    (
        "netpol",
        &[("NetworkPolicyDeniesInbound", "NetworkPolicy", "default-deny-ingress")],
        "networkpolicy default-deny-ingress: podSelector {} (every pod), policyTypes [Ingress], 0 ingress rule(s)",
    ),
    (
        "egress",
        &[
            ("NetworkPolicyDeniesEgress", "NetworkPolicy", "invoice-sync-egress"),
            ("LogErrors", "Pod", "invoice-sync-36630ce67-a3663"),
        ],
        "lookup invoices-db.egress.svc.cluster.local on 10.96.0.10:53",
    ),
    (
        "ingressclass",
        &[("IngressClassMissing", "Ingress", "docs")],
        "ingressclasses: nginx (k8s.io/ingress-nginx, default), traefik (traefik.io/ingress-controller)",
    ),
    (
        "limitrange",
        &[("FailedCreate", "ReplicaSet", "report-builder-6d8f7c9b5"), ("RolloutStuck", "Deployment", "report-builder")],
        "limitrange container-limits: Container max memory=1Gi",
    ),
    (
        "backups",
        &[("JobFailed", "Job", "nightly-backup-29933400"), ("CronJobNoRecentSuccess", "CronJob", "nightly-backup")],
        r#"password authentication failed for user "backup""#,
    ),
    (
        "ingress",
        &[("IngressBackendMissing", "Ingress", "shop")],
        "ingress shop backend for shop.example.com/api: service api-gatway port 80",
    ),
    (
        "hpa",
        &[
            ("HPAScalingInactive", "HorizontalPodAutoscaler", "search-api"),
            ("HPAAtMaximum", "HorizontalPodAutoscaler", "thumbnails"),
        ],
        "the server could not find the requested resource (get pods.metrics.k8s.io)",
    ),
    (
        "pdb",
        &[("PDBBlocking", "PodDisruptionBudget", "ledger-api")],
        "status: disruptionsAllowed 0, currentHealthy 2, desiredHealthy 2, expectedPods 2",
    ),
    (
        "pressure",
        &[("NodePressure", "Node", "worker-5"), ("Evicted", "Pod", "log-shipper-5f4e3d2c1-e7r8t")],
        "node worker-5 condition DiskPressure=True reason=KubeletHasDiskPressure",
    ),
    (
        "statefulset",
        &[("ProbeFailing", "Pod", "zookeeper-1"), ("StatefulSetStuck", "StatefulSet", "zookeeper")],
        "so zookeeper-2 is never created",
    ),
    (
        "cronjob",
        &[("CronJobMissedSchedule", "CronJob", "ledger-sync"), ("CronJobSuspended", "CronJob", "invoice-run")],
        "Missed scheduled time to start a job: 2026-11-30T11:50:00Z",
    ),
    (
        "daemonset",
        &[("CrashLoopBackOff", "Pod", "node-exporter-m8n2b"), ("DaemonSetUnavailable", "DaemonSet", "node-exporter")],
        "listen tcp 0.0.0.0:9100: bind: address already in use",
    ),
    (
        "applogs",
        &[("LogErrors", "Pod", "checkout-179b0c233-a179b")],
        "lookup payments-api.payments.svc.cluster.local on 10.96.0.10:53: no such host",
    ),
    (
        "hpatarget",
        &[("HPATargetMissing", "HorizontalPodAutoscaler", "orders-api")],
        r#"deployments/scale.apps "orders-api" not found"#,
    ),
    (
        "hparequests",
        &[("HPAScalingInactive", "HorizontalPodAutoscaler", "email-worker")],
        "missing request for cpu in container email-worker",
    ),
    ("governing", &[("StatefulSetServiceMissing", "StatefulSet", "redis")], "spec.serviceName: redis-headless"),
    (
        "rollout",
        &[],
        r#"rollout in progress, inside its progress deadline (ReplicaSet "storefront-7d9f8b6c5" is progressing.)"#,
    ),
    // The OOM kill two days ago stays visible to the model, as history rather than a finding.
    ("history", &[], "running, ready true, restarts 1, last terminated OOMKilled exit 137"),
    (
        "secrets",
        &[
            ("CrashLoopBackOff", "Pod", "billing-5f6d7c8b9a-zt4kq"),
            ("JobFailed", "Job", "billing-export"),
            ("FailedCreate", "ReplicaSet", "billing-5f6d7c8b9a"),
        ],
        "postgres://payments:[REDACTED:password]@payments-db:5432/payments",
    ),
];

#[test]
fn every_scenario_names_the_right_reason_object_and_evidence() {
    for (namespace, expected, decisive) in CASES {
        let diagnosis = diagnose(namespace, &[]);
        assert_eq!(diagnosis["namespace"], *namespace);
        let expected: Vec<_> = expected.iter().map(|(r, k, n)| (r.to_string(), k.to_string(), n.to_string())).collect();
        assert_eq!(findings(&diagnosis), expected, "findings in {namespace}");
        let context = diagnosis["context"].as_str().unwrap();
        assert!(context.contains(decisive), "the context for {namespace} lacks {decisive:?}:\n{context}");
        for f in diagnosis["findings"].as_array().unwrap() {
            for command in f["commands"].as_array().unwrap() {
                let command = command.as_str().unwrap();
                assert!(command.starts_with("kubectl "), "{command}");
                let verb = command.split_whitespace().nth(1).unwrap();
                assert!(["get", "describe", "logs", "rollout", "top"].contains(&verb), "not read-only: {command}");
                if verb == "rollout" {
                    assert!(command.contains("rollout status") || command.contains("rollout history"), "{command}");
                }
            }
        }
    }
}

#[test]
fn healthy_namespace_has_no_findings() {
    let diagnosis = diagnose("healthy", &[]);
    assert_eq!(findings(&diagnosis), []);
    let context = diagnosis["context"].as_str().unwrap();
    assert!(context.contains("No problems found."), "{context}");
    assert!(context.contains("pods of replicaset catalog-64f8b7c9d5: 3 running and ready"), "{context}");
    assert!(!context.contains("super-secret"), "secrets never reach the context");
}

#[test]
fn no_secret_of_the_corpus_leaves_the_reader() {
    let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/secrets.tsv")).unwrap();
    let secrets: Vec<&str> =
        corpus.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| l.split('\t').next()).collect();
    assert!(secrets.len() >= 20);
    let diagnosis = diagnose("secrets", &[]);
    let everything = diagnosis.to_string();
    let context = diagnosis["context"].as_str().unwrap();
    for secret in secrets {
        assert!(!everything.contains(secret) && !context.contains(secret), "{secret:?} leaked");
    }
    assert!(context.contains("[REDACTED:"), "the redacted lines are still quoted: {context}");
}

#[test]
fn text_output_is_a_readable_report() {
    let out = kubechat(&["diagnose", "--dump", SCENARIOS, "-n", "imagepull", "--no-llm"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("Namespace imagepull: 2 findings"), "{text}");
    assert!(text.contains("1. [CRITICAL] ImagePullBackOff  pod/checkout-6c9d8e7f1-k2v9d"), "{text}");
    assert!(text.contains("caused by ImagePullBackOff on pod/checkout-6c9d8e7f1-k2v9d"), "{text}");
    assert!(text.contains("$ kubectl describe pod -n imagepull checkout-6c9d8e7f1-k2v9d"), "{text}");
}

#[test]
fn forbidden_logs_degrade_to_a_precise_gap() {
    let diagnosis = diagnose("crashloop", &["--forbid", "pods/log"]);
    assert_eq!(
        findings(&diagnosis),
        [("CrashLoopBackOff".into(), "Pod".into(), "payments-api-7b8d9c6f5-qw7zt".into())]
    );
    let gaps = diagnosis["gaps"].as_array().expect("the refusal is reported");
    let gap = gaps[0].as_str().unwrap();
    assert!(
        gap.starts_with("cannot get pods/log in namespace crashloop: the API server refused it (403 Forbidden"),
        "{gap}"
    );
    assert!(gap.contains(r#"{apiGroups: [""], resources: ["pods/log"], verbs: ["get"]}"#), "{gap}");
    assert!(diagnosis["context"].as_str().unwrap().contains("Not read: cannot get pods/log"));
}

#[test]
fn forbidden_pods_fail_with_the_rule_to_add() {
    let out = kubechat(&["diagnose", "--dump", SCENARIOS, "-n", "crashloop", "--no-llm", "--forbid", "pods"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot list pods in namespace crashloop: the API server refused it (403 Forbidden"), "{err}");
    assert!(err.contains(r#"resources: ["pods"], verbs: ["list"]"#), "{err}");
}

#[test]
fn unknown_namespace_names_the_closest() {
    let out = kubechat(&["diagnose", "--dump", SCENARIOS, "-n", "crashlop", "--no-llm"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("namespace crashlop does not exist; did you mean crashloop"), "{err}");
}

#[test]
fn one_object_narrows_the_diagnosis() {
    let diagnosis = diagnose("imagepull", &["--object", "deployment/checkout"]);
    assert_eq!(findings(&diagnosis)[0].0, "ImagePullBackOff");
    let out =
        kubechat(&["diagnose", "--dump", SCENARIOS, "-n", "imagepull", "--no-llm", "--object", "deployment/chekout"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("deployment chekout not found in namespace imagepull; did you mean checkout"), "{err}");
}

#[test]
fn narrowing_to_a_pod_keeps_its_service_and_leaves_its_siblings_out() {
    let diagnosis = diagnose("readiness", &["--object", "pod/search-7c8d9e6f5-def34"]);
    assert_eq!(
        findings(&diagnosis),
        [
            ("ProbeFailing".into(), "Pod".into(), "search-7c8d9e6f5-def34".into()),
            ("ServiceNoEndpoints".into(), "Service".into(), "search".into())
        ]
    );
    let context = diagnosis["context"].as_str().unwrap();
    assert!(!context.contains("search-7c8d9e6f5-abc12"), "{context}");
}
