//! Delivery: `k8s/` and every overlay render with kubectl's kustomize, grant reads only, carry the prompts byte for
//! byte and lock the pods down; the render validates against the Kubernetes schemas; Argo CD's objects say what they
//! must; the workflows and the Dockerfile lint clean. (The real-API-server suite applies the render and proves the
//! role: `apiserver.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The overlays, each a whole kubechat: the web chat alone (`k8s`), and each chat platform.
pub const OVERLAYS: &[&str] = &["k8s", "k8s/overlays/slack-socket", "k8s/overlays/slack-http", "k8s/overlays/matrix"];

/// The components of `k8s/components`, each with the overlays it combines with, as docs/install.md's table says.
pub const COMPONENTS: &[(&str, &[&str])] = &[
    ("gpu", OVERLAYS),
    ("monitoring", OVERLAYS),
    ("cilium", OVERLAYS),
    ("model-server", OVERLAYS),
    ("airgapped", OVERLAYS),
    ("private-registry", OVERLAYS),
    ("gateway-api", &["k8s/overlays/slack-http"]),
];

/// One way to install kubechat: an overlay and the components listed beside it.
#[derive(Clone, Debug)]
pub struct Install {
    pub overlay: &'static str,
    pub components: Vec<&'static str>,
}

impl std::fmt::Display for Install {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.overlay)?;
        for component in &self.components {
            write!(f, " + {component}")?;
        }
        Ok(())
    }
}

/// Every install the docs name: each overlay alone, each with each component it combines with, and each with all of
/// them at once (model-server replaces Ollama, so it goes with the ones that do not change Ollama).
pub fn installs() -> Vec<Install> {
    let mut installs = Vec::new();
    for &overlay in OVERLAYS {
        let fits: Vec<&str> =
            COMPONENTS.iter().filter(|(_, overlays)| overlays.contains(&overlay)).map(|(name, _)| *name).collect();
        installs.push(Install { overlay, components: Vec::new() });
        installs.extend(fits.iter().map(|&component| Install { overlay, components: vec![component] }));
        installs.push(Install { overlay, components: fits.iter().copied().filter(|&c| c != "model-server").collect() });
        let beside_a_model_server = ["model-server", "monitoring", "cilium", "private-registry", "gateway-api"];
        installs.push(Install {
            overlay,
            components: fits.into_iter().filter(|c| beside_a_model_server.contains(c)).collect(),
        });
    }
    installs
}

/// `kubectl kustomize DIR`.
pub fn render(dir: &str) -> String {
    kustomize(&format!("{ROOT}/{dir}"))
}

fn kustomize(dir: &str) -> String {
    let out =
        Command::new("kubectl").args(["kustomize", dir]).output().expect("kubectl runs (scripts/test installs it)");
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// An install rendered as a user's own kustomization renders it: the overlay as a resource, the components under
/// `components:` (kustomize wants both as relative paths).
pub fn render_install(install: &Install) -> String {
    if install.components.is_empty() {
        return render(install.overlay);
    }
    let dir = tempfile::tempdir().unwrap();
    let up = "../".repeat(dir.path().components().count() - 1);
    let root = ROOT.trim_start_matches('/');
    let mut text = format!("resources:\n  - {up}{root}/{}\ncomponents:\n", install.overlay);
    for component in &install.components {
        text.push_str(&format!("  - {up}{root}/k8s/components/{component}\n"));
    }
    std::fs::write(dir.path().join("kustomization.yaml"), text).unwrap();
    kustomize(dir.path().to_str().unwrap())
}

/// Kinds without a namespace.
pub const CLUSTER_SCOPED: &[&str] = &["Namespace", "ClusterRole", "ClusterRoleBinding"];

/// The custom resources of the renders: the test API server has no CRDs for them, so they are checked against their
/// projects' schemas instead ([`custom_resource_problems`]).
pub const CUSTOM_KINDS: &[&str] = &["ServiceMonitor", "CiliumNetworkPolicy", "HTTPRoute"];

pub fn objects(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml).unwrap().into_iter().filter(|v| !v.is_null()).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(name_prefix)))
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}"))
}

/// The Lease kubechat's replicas elect a leader by: the one object it writes.
const LEASE: &str = "kubechat-leader";

/// Problems with a role's rules: anything beyond reading, and any reach into Secrets, ConfigMaps or pods' exec,
/// attach and port-forward. The one exception is leader election: a Role (in kubechat's namespace only) may create
/// Leases, and get and update the one named [`LEASE`].
fn rbac_problems(objects: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for role in objects.iter().filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role") {
        let name = role["metadata"]["name"].as_str().unwrap_or("?");
        for rule in role["rules"].as_array().into_iter().flatten() {
            let strings = |field: &str| -> Vec<String> {
                rule[field].as_array().into_iter().flatten().filter_map(|v| v.as_str()).map(str::to_string).collect()
            };
            let lease = role["kind"] == "Role"
                && strings("apiGroups") == ["coordination.k8s.io"]
                && strings("resources") == ["leases"];
            if lease {
                let verbs = strings("verbs");
                let named = strings("resourceNames") == [LEASE];
                let allowed = verbs == ["create"] || (named && verbs.iter().all(|v| v == "get" || v == "update"));
                if !allowed {
                    problems.push(format!("{name}: leases {verbs:?} beyond creating and updating {LEASE}"));
                }
                continue;
            }
            for verb in strings("verbs") {
                // kubechat reads each question's state afresh: it never watches.
                if !["get", "list"].contains(&verb.as_str()) {
                    problems.push(format!("{name}: verb {verb}"));
                }
            }
            for resource in strings("resources") {
                let forbidden = resource == "*"
                    || resource.starts_with("secrets")
                    || resource.starts_with("configmaps")
                    || ["pods/exec", "pods/attach", "pods/portforward", "pods/proxy", "nodes/proxy", "services/proxy"]
                        .contains(&resource.as_str());
                if forbidden {
                    problems.push(format!("{name}: resource {resource}"));
                }
            }
            if strings("apiGroups").iter().any(|g| g == "*") {
                problems.push(format!("{name}: apiGroups *"));
            }
            if rule.get("nonResourceURLs").is_some() {
                problems.push(format!("{name}: nonResourceURLs"));
            }
        }
    }
    problems
}

/// Every install of [`installs`], rendered.
pub fn rendered() -> Vec<(Install, Vec<Value>)> {
    installs().into_iter().map(|install| (install.clone(), objects(&render_install(&install)))).collect()
}

#[test]
fn every_render_grants_reads_only() {
    for (dir, objects) in rendered() {
        let role = find(&objects, "ClusterRole", "kubechat-reader");
        assert!(!role["rules"].as_array().unwrap().is_empty());
        assert_eq!(rbac_problems(&objects), Vec::<String>::new(), "{dir}");
        let binding = find(&objects, "ClusterRoleBinding", "kubechat-reader");
        assert_eq!(binding["subjects"][0]["name"], "kubechat");
        assert_eq!(binding["subjects"][0]["namespace"], "kubechat");
        // Leader election: the Lease the Deployment names, granted by a Role bound to kubechat in its namespace.
        let role = find(&objects, "Role", LEASE);
        assert!(role["rules"].to_string().contains(LEASE), "{dir}: {role}");
        let binding = find(&objects, "RoleBinding", LEASE);
        assert_eq!(binding["roleRef"]["kind"], "Role", "{dir}");
        assert_eq!(binding["subjects"][0]["name"], "kubechat", "{dir}");
        assert_eq!(binding["subjects"][0]["namespace"], "kubechat", "{dir}");
        let deployment = find(&objects, "Deployment", "kubechat");
        let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
        let lease = env.as_array().unwrap().iter().find(|e| e["name"] == "KUBECHAT_LEADER_LEASE");
        assert_eq!(lease.map(|e| &e["value"]), Some(&Value::from(LEASE)), "{dir}: the Deployment's Lease");
    }
    // The check itself catches a write, a watch, a Secret and exec; and a Lease rule beyond the one Lease, or in a
    // ClusterRole.
    let bad: Vec<Value> = objects(
        "kind: ClusterRole\nmetadata: {name: x}\nrules:\n- apiGroups: ['']\n  resources: [pods, secrets, pods/exec]\n  verbs: [get, create, watch]\n",
    );
    assert_eq!(rbac_problems(&bad).len(), 4, "{:?}", rbac_problems(&bad));
    let bad: Vec<Value> = objects(
        "kind: Role\nmetadata: {name: x}\nrules:\n- apiGroups: [coordination.k8s.io]\n  resources: [leases]\n  verbs: [get, update, delete]\n  resourceNames: [kubechat-leader]\n- apiGroups: [coordination.k8s.io]\n  resources: [leases]\n  verbs: [update]\n---\nkind: ClusterRole\nmetadata: {name: y}\nrules:\n- apiGroups: [coordination.k8s.io]\n  resources: [leases]\n  verbs: [create]\n",
    );
    assert_eq!(rbac_problems(&bad).len(), 3, "{:?}", rbac_problems(&bad));
}

#[test]
fn the_remote_install_is_the_base_reader_and_a_token_and_nothing_else() {
    let remote = objects(&render("k8s/remote"));
    let base = objects(&render("k8s"));
    let kinds: Vec<&str> = remote.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Secret"],
        "nothing runs there"
    );
    assert_eq!(
        rbac_problems(&remote),
        Vec::<String>::new(),
        "reads only, and no Lease: nothing of kubechat runs there"
    );
    for kind in ["ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Namespace"] {
        assert_eq!(find(&remote, kind, "kubechat"), find(&base, kind, "kubechat"), "{kind}: the same as the base's");
    }
    let token = find(&remote, "Secret", "kubechat-reader-token");
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    assert_eq!(token["metadata"]["namespace"], "kubechat");
    assert_eq!(token["metadata"]["annotations"]["kubernetes.io/service-account.name"], "kubechat");
}

#[test]
fn every_rule_of_the_role_says_why_it_is_there() {
    let text = std::fs::read_to_string(format!("{ROOT}/k8s/reader/rbac.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            rules += 1;
            assert!(lines[i - 1].trim_start().starts_with('#'), "the rule at line {} has no comment above it", i + 1);
        }
    }
    assert!(rules >= 9, "{rules} rules");
}

#[test]
fn the_prompts_configmap_is_the_prompts_directory_byte_for_byte() {
    let mut prompts: Vec<(String, String)> = std::fs::read_dir(format!("{ROOT}/prompts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md") && p.file_stem().is_some_and(|s| s != "README"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    prompts.sort();
    for (dir, objects) in rendered() {
        let configmap = find(&objects, "ConfigMap", "kubechat-prompts-");
        let data = configmap["data"].as_object().unwrap();
        let mut rendered: Vec<(String, String)> =
            data.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        rendered.sort();
        assert_eq!(rendered, prompts, "{dir}: the prompts ConfigMap differs from prompts/");
        // The Deployment mounts this very ConfigMap (its hashed name), where kubechat reads prompts.
        let deployment = find(&objects, "Deployment", "kubechat");
        let volumes = deployment["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
        assert!(volumes.iter().any(|v| v["configMap"]["name"] == configmap["metadata"]["name"]), "{dir}");
        let mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().any(|m| m["mountPath"] == "/etc/kubechat/prompts"));
    }
}

#[test]
fn the_pods_are_locked_down_and_probed() {
    for (dir, objects) in rendered() {
        for workload in objects.iter().filter(|o| o["kind"] == "Deployment" || o["kind"] == "Job") {
            let name = workload["metadata"]["name"].as_str().unwrap();
            let pod = &workload["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{dir}: {name}");
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{dir}: {name}");
            let containers = pod["containers"].as_array().unwrap().iter();
            for container in containers.chain(pod["initContainers"].as_array().into_iter().flatten()) {
                let security = &container["securityContext"];
                assert_eq!(security["readOnlyRootFilesystem"], true, "{dir}: {name}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{dir}: {name}");
                assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{dir}: {name}");
                assert!(container["resources"]["requests"].is_object(), "{dir}: {name}: resources");
                let image = container["image"].as_str().unwrap();
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "{dir}: {name}: image {image}");
            }
            if workload["kind"] == "Deployment" {
                for container in pod["containers"].as_array().unwrap() {
                    assert!(container["readinessProbe"].is_object() && container["livenessProbe"].is_object());
                }
            }
        }
        let kubechat = find(&objects, "Deployment", "kubechat");
        let container = &kubechat["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["envFrom"][0]["secretRef"]["name"], "kubechat-secrets", "tokens come from a Secret");
        assert!(objects.iter().all(|o| o["kind"] != "Secret"), "{dir}: no Secret is committed");
        if let Some(ollama) = objects.iter().find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "ollama") {
            assert_eq!(ollama["spec"]["strategy"]["type"], "Recreate");
            let service = find(&objects, "Service", "ollama");
            assert_eq!(service["spec"]["ports"][0]["port"], 11434);
            find(&objects, "PersistentVolumeClaim", "ollama-models");
        }
        // The configuration loads, and validates with the variables the Secret would give.
        let raw = settings_of(&objects, Vec::new());
        let mut secret = Vec::new();
        if raw.slack.enabled {
            secret.push(("KUBECHAT_SLACK_BOT_TOKEN".to_string(), "xoxb-test".to_string()));
            secret.push(("KUBECHAT_SLACK_APP_TOKEN".to_string(), "xapp-test".to_string()));
            secret.push(("KUBECHAT_SLACK_SIGNING_SECRET".to_string(), "secret".to_string()));
        }
        if raw.matrix.enabled {
            secret.push(("KUBECHAT_MATRIX_PASSWORD".to_string(), "password".to_string()));
        }
        let env = deployment_env(kubechat).into_iter().chain(secret.clone());
        assert_eq!(kubechat::config::unknown_variables(env), Vec::<String>::new(), "{dir}");
        let loaded = settings_of(&objects, secret);
        // The pod's grace period covers the drain, the interrupted answers' notes and the connections' close.
        let grace = kubechat["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        let drain = loaded.drain_seconds;
        let closing = kubechat::drain::NOTE_TIME + kubechat::server::CLOSE_TIME;
        assert!(grace >= drain + closing.as_secs(), "{dir}: a grace period of {grace} s cuts the drain of {drain} s");
        loaded.validate().unwrap_or_else(|e| panic!("{dir}: {e}"));
    }
    let http = objects(&render("k8s/overlays/slack-http"));
    let ingress = find(&http, "Ingress", "kubechat");
    let paths: Vec<&str> = ingress["spec"]["rules"][0]["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/slack/commands", "/slack/events", "/slack/interactivity"], "only Slack's endpoints");
    let gpu = objects(&render_install(&Install { overlay: "k8s/overlays/matrix", components: vec!["gpu"] }));
    assert_eq!(
        find(&gpu, "Deployment", "ollama")["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        1
    );
}

/// The literal environment of a Deployment's first container, as (name, value) pairs.
#[test]
fn two_replicas_roll_without_a_gap_and_matrix_keeps_one_device() {
    for (install, objects) in rendered() {
        let kubechat = find(&objects, "Deployment", "kubechat");
        let (spec, pod) = (&kubechat["spec"], &kubechat["spec"]["template"]["spec"]);
        let labels = &spec["selector"]["matchLabels"];
        let budget = objects.iter().find(|o| o["kind"] == "PodDisruptionBudget");
        if install.overlay.ends_with("matrix") {
            // One device: one replica, replaced (the store's volume is ReadWriteOnce), and no budget to block drains.
            assert_eq!(spec["replicas"], 1, "{install}");
            assert_eq!(spec["strategy"], serde_json::json!({"type": "Recreate"}), "{install}");
            assert!(budget.is_none(), "{install}: a budget on one replica blocks every drain");
            continue;
        }
        assert_eq!(spec["replicas"], 2, "{install}");
        assert_eq!(spec["strategy"]["type"], "RollingUpdate", "{install}");
        assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0, "{install}: a rollout stops none first");
        let budget = budget.unwrap_or_else(|| panic!("{install}: no PodDisruptionBudget"));
        assert_eq!(budget["spec"]["minAvailable"], 1, "{install}");
        assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels, "{install}: the budget selects kubechat's pods");
        let spread = &pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0];
        assert_eq!(spread["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname", "{install}");
        assert_eq!(&spread["podAffinityTerm"]["labelSelector"]["matchLabels"], labels, "{install}");
        // The address the leader writes into the Lease is the pod's own, and the replicas may reach each other.
        let env = &pod["containers"][0]["env"];
        let pod_ip = env.as_array().unwrap().iter().find(|e| e["name"] == "POD_IP").expect("POD_IP");
        assert_eq!(pod_ip["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP", "{install}");
        let to_replicas = objects
            .iter()
            .filter(|o| o["kind"] == "NetworkPolicy")
            .flat_map(|p| p["spec"]["egress"].as_array().cloned().unwrap_or_default())
            .any(|rule| {
                rule["to"].as_array().into_iter().flatten().any(|to| &to["podSelector"]["matchLabels"] == labels)
                    && rule["ports"][0]["port"] == 8080
            });
        assert!(to_replicas, "{install}: no egress from one replica to the other");
    }
}

fn deployment_env(deployment: &Value) -> Vec<(String, String)> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
        .collect()
}

/// The settings kubechat would run with in a render: its configuration file, under the Deployment's variables and
/// `secret`'s (what the Secret would hold).
fn settings_of(objects: &[Value], secret: Vec<(String, String)>) -> kubechat::config::RawConfig {
    let config = find(objects, "ConfigMap", "kubechat-config-");
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("kubechat.yaml");
    std::fs::write(&path, config["data"]["kubechat.yaml"].as_str().unwrap()).unwrap();
    let env = deployment_env(find(objects, "Deployment", "kubechat")).into_iter().chain(secret);
    kubechat::config::load(Some(&path), env).unwrap()
}

#[test]
fn every_namespaced_object_names_kubechats_namespace() {
    // kustomize leaves an object without a namespace when nothing sets one, and kubectl then puts it in the context's
    // namespace (usually default): every namespaced object of every install says kubechat.
    let mut seen = 0;
    for (dir, objects) in rendered() {
        for object in &objects {
            let kind = object["kind"].as_str().unwrap();
            let name = object["metadata"]["name"].as_str().unwrap();
            if CLUSTER_SCOPED.contains(&kind) {
                assert!(object["metadata"].get("namespace").is_none(), "{dir}: {kind} {name} is cluster-wide");
            } else {
                assert_eq!(object["metadata"]["namespace"], "kubechat", "{dir}: {kind} {name}");
                seen += 1;
            }
        }
    }
    assert!(seen > 300, "{seen} namespaced objects");
}

#[test]
fn the_model_kubechat_asks_for_is_the_one_pulled_and_reachable() {
    for (dir, objects) in rendered() {
        let llm = settings_of(&objects, Vec::new()).llm;
        let url = reqwest::Url::parse(&llm.url).unwrap();
        let port = url.port_or_known_default().unwrap();
        // The egress rule to the model server opens the URL's port.
        let policy = find(&objects, "NetworkPolicy", "kubechat-model");
        let ports: Vec<u64> = policy["spec"]["egress"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rule| rule["ports"].as_array().unwrap().iter().filter_map(|p| p["port"].as_u64()))
            .collect();
        assert!(
            ports.contains(&u64::from(port)),
            "{dir}: the model server is at {}, the policy opens {ports:?}",
            llm.url
        );
        let pull = objects.iter().find(|o| o["kind"] == "Job");
        let ollama = objects.iter().any(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "ollama");
        if ollama {
            assert_eq!(url.host_str(), Some("ollama.kubechat.svc"), "{dir}: kubechat asks the Ollama it deploys");
        }
        let Some(pull) = pull else {
            assert!(
                !ollama || dir.components.contains(&"airgapped"),
                "{dir}: an Ollama with no pull Job is the air-gapped one"
            );
            continue;
        };
        // The pull Job pulls the model kubechat asks for, and is named after it.
        let args = &pull["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(args, &serde_json::json!(["pull", llm.model]), "{dir}");
        let expected: String = llm
            .model
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' })
            .collect();
        assert_eq!(pull["metadata"]["name"], format!("ollama-pull-{expected}"), "{dir}");
        assert!(pull["spec"].get("ttlSecondsAfterFinished").is_none(), "{dir}: a finished Job stays, in sync");
    }
}

fn lint_bin() -> PathBuf {
    match std::env::var_os("KUBECHAT_LINT_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "KUBECHAT_LINT_BIN is not set: these checks need kubernetes-validate, hadolint and actionlint. Run \
             ./scripts/test, or export KUBECHAT_LINT_BIN=$(./scripts/lint-tools | sed -n 1p) \
             KUBECHAT_ACTIONLINT=$(./scripts/lint-tools | sed -n 2p)"
        ),
    }
}

fn run(program: &Path, args: &[&str], cwd: &str) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn every_render_validates_against_the_kubernetes_schemas() {
    let validate = lint_bin().join("kubernetes-validate");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut custom = Vec::new();
    for (i, (install, objects)) in rendered().into_iter().enumerate() {
        // Custom resources are checked against their own projects' schemas below.
        let (theirs, ours) = custom_and_core(objects);
        custom.extend(theirs);
        let file = dir.path().join(format!("{i}.yaml"));
        let documents: Vec<String> = ours.iter().map(Value::to_string).collect();
        std::fs::write(&file, format!("# {install}\n{}", documents.join("\n---\n"))).unwrap();
        files.push(file.to_string_lossy().into_owned());
    }
    // The oldest version kubechat supports (k8s-openapi's v1_33) and the newest the validator knows.
    for version in ["1.33.0", "1.37.0"] {
        let mut args = vec!["--strict", "--quiet", "-k", version];
        args.extend(files.iter().map(String::as_str));
        let (ok, output) = run(&validate, &args, ROOT);
        assert!(ok, "against Kubernetes {version}:\n{output}");
    }
    // The validator does reject a wrong manifest.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n  selector: {}\n  template: {}\n").unwrap();
    let (ok, _) = run(&validate, &["--strict", "--quiet", "-k", "1.33.0", bad.to_str().unwrap()], ROOT);
    assert!(!ok, "kubernetes-validate accepted a misspelt field");

    let kinds: std::collections::BTreeSet<&str> = custom.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), {
        let mut all = CUSTOM_KINDS.to_vec();
        all.sort();
        all
    });
    assert_eq!(custom_resource_problems(&custom), Vec::<String>::new());
}

/// A render's objects as (custom resources, the rest): the first are checked against their CRDs' schemas
/// ([`custom_resource_problems`]), the rest by Kubernetes' own.
pub fn custom_and_core(objects: Vec<Value>) -> (Vec<Value>, Vec<Value>) {
    objects.into_iter().partition(|o| CUSTOM_KINDS.contains(&o["kind"].as_str().unwrap()))
}

/// Problems with custom resources, by their projects' CRD schemas (scripts/validate-custom-resources.mjs).
pub fn custom_resource_problems(objects: &[Value]) -> Vec<String> {
    let models = std::env::var("KUBECHAT_CRD_MODELS").unwrap_or_else(|_| {
        panic!("KUBECHAT_CRD_MODELS is not set: export KUBECHAT_CRD_MODELS=$(./scripts/lint-tools | sed -n 3p)")
    });
    let mut child = Command::new("node")
        .args([&format!("{ROOT}/scripts/validate-custom-resources.mjs"), &models])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (scripts/lint-tools needs it too)");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(Value::Array(objects.to_vec()).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let problems: Vec<String> = stdout.lines().filter(|l| !l.contains(": valid ")).map(str::to_string).collect();
    assert_eq!(
        out.status.success(),
        problems.is_empty(),
        "the validator's exit and its report disagree: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || !problems.is_empty(),
        "the validator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    problems
}

#[test]
fn the_custom_resource_check_catches_a_wrong_one() {
    let wrong: Vec<Value> = objects(
        "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: x, namespace: kubechat}\nspec:\n  endpointSelector: {}\n  egress:\n    - toEntities: [kube-apiservr]\n---\napiVersion: example.com/v1\nkind: Unknown\nmetadata: {name: y}\n",
    );
    let problems = custom_resource_problems(&wrong);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("toEntities"), "{problems:?}");
    assert!(problems[1].contains("no schema for example.com/v1/Unknown"), "{problems:?}");
}

#[test]
fn the_dockerfile_and_the_workflows_lint_clean() {
    let (ok, output) = run(&lint_bin().join("hadolint"), &["Dockerfile"], ROOT);
    assert!(ok, "hadolint Dockerfile:\n{output}");
    let actionlint = std::env::var_os("KUBECHAT_ACTIONLINT").map(PathBuf::from).unwrap_or_else(|| {
        panic!("KUBECHAT_ACTIONLINT is not set: export KUBECHAT_ACTIONLINT=$(./scripts/lint-tools | sed -n 2p)")
    });
    let (ok, output) = run(&actionlint, &[], ROOT);
    assert!(ok && output.contains("Checking 1 workflow file(s)"), "actionlint:\n{output}");
    // Every action is pinned by a full commit SHA.
    for entry in std::fs::read_dir(format!("{ROOT}/.github/workflows")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in
            text.lines().filter(|l| l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:"))
        {
            let reference = line.split("uses:").nth(1).unwrap().trim();
            let sha = reference.split_once('@').map(|(_, r)| r.split_whitespace().next().unwrap()).unwrap_or("");
            assert!(sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()), "{}: {line}", path.display());
        }
    }
    assert_eq!(
        workflow_problems(&std::fs::read_to_string(format!("{ROOT}/.github/workflows/ci.yml")).unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        dockerfile_problems(&std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap()),
        Vec::<String>::new()
    );
}

/// What the CI workflow must do: run the README's test command, and build an image only after the tests passed, only
/// for a push to main that changed what the image is built from, under a lowercase name, for both architectures
/// without emulation, cached, with SBOM and provenance attestations, signed with cosign by digest.
fn workflow_problems(text: &str) -> Vec<String> {
    let workflow: Value = serde_saphyr::from_str(text).unwrap();
    let jobs = &workflow["jobs"];
    let mut problems = Vec::new();
    let mut check = |ok: bool, problem: &str| {
        if !ok {
            problems.push(problem.to_string());
        }
    };
    let steps = |job: &str| -> Vec<Value> { jobs[job]["steps"].as_array().cloned().unwrap_or_default() };
    check(steps("test").iter().any(|s| s["run"] == "./scripts/test"), "the test job runs ./scripts/test");
    let image = &jobs["image"];
    let needs: Vec<&str> = image["needs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    check(needs.contains(&"test"), "the image job needs the test job (tests gate images)");
    check(needs.contains(&"changes"), "the image job needs the paths filter (the changes job)");
    check(
        image["if"].as_str().is_some_and(|c| c.contains("needs.changes.outputs.image == 'true'")),
        "the image job runs only when the paths filter says so",
    );
    let changes = &jobs["changes"];
    check(
        changes["if"].as_str().is_some_and(|c| c.contains("refs/heads/main") && c.contains("pull_request")),
        "images are built for main, never for a pull request",
    );
    let filter = steps("changes").iter().filter_map(|s| s["run"].as_str()).collect::<String>();
    let words: Vec<&str> = filter.split(|c: char| c.is_whitespace() || "()=\"".contains(c)).collect();
    for path in ["Dockerfile", "Cargo.lock", "src", "prompts", "testdata/scenarios", "build.rs"] {
        check(words.contains(&path), &format!("the paths filter watches {path}"));
    }
    check(!words.contains(&"docs"), "the paths filter ignores docs");
    let image_steps = steps("image");
    let runs: String = image_steps.iter().filter_map(|s| s["run"].as_str()).collect();
    check(runs.contains("${REPOSITORY,,}"), "the repository is lowercased");
    check(
        !image_steps.iter().any(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("docker/setup-qemu-action"))),
        "no emulation: the Dockerfile cross-compiles",
    );
    let build =
        image_steps.iter().find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("docker/build-push-action")));
    match build {
        None => check(false, "the image is built with docker/build-push-action"),
        Some(build) => {
            let with = &build["with"];
            check(with["platforms"] == "linux/amd64,linux/arm64", "both architectures");
            check(
                with["tags"].as_str().is_some_and(|t| t.contains("steps.name.outputs.repository")),
                "tagged under the lowercased name",
            );
            check(with["sbom"] == true || with["sbom"] == "true", "an SBOM attestation");
            check(with["provenance"].as_str().is_some_and(|p| p.starts_with("mode=max")), "a provenance attestation");
            check(with["cache-from"].as_str().is_some_and(|c| c.starts_with("type=")), "a layer cache");
            check(with["cache-to"].as_str().is_some_and(|c| c.contains("mode=max")), "the dependencies' layer cached");
        }
    }
    check(
        image_steps.iter().any(|s| s["uses"].as_str().is_some_and(|u| u.starts_with("sigstore/cosign-installer"))),
        "cosign is installed",
    );
    check(
        runs.contains("cosign sign")
            && image_steps.iter().any(|s| s["env"].to_string().contains("steps.build.outputs.digest")),
        "the image is signed by digest",
    );
    problems
}

/// What the Dockerfile must do: every base image pinned by digest, on a supported Debian, the build on the build
/// machine's own platform (cross-compiling, not emulated), the dependencies cooked in their own layer.
fn dockerfile_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut stages = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("FROM ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let image = words.iter().skip(1).find(|w| !w.starts_with("--")).unwrap();
        if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("AS")) {
            stages.push(words[i + 1].to_string());
        }
        if stages.iter().any(|s| s == image) && !image.contains('/') {
            continue;
        }
        let digest = image.split_once("@sha256:").map(|(_, d)| d).unwrap_or("");
        if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
            problems.push(format!("{image} is not pinned by digest"));
        }
        if ["bookworm", "debian12", "bullseye", "debian11"].iter().any(|old| image.contains(old)) {
            problems.push(format!("{image} is on a Debian release past its end of life or about to be"));
        }
    }
    if !text.lines().any(|l| l.starts_with("FROM --platform=$BUILDPLATFORM ")) {
        problems.push("the build runs on the build platform (no emulation)".to_string());
    }
    if !text.contains("cargo chef cook") {
        problems.push("the dependencies are cooked in their own layer".to_string());
    }
    problems
}

#[test]
fn the_workflow_and_dockerfile_checks_catch_what_they_look_for() {
    let old_workflow = "on: push\njobs:\n  image:\n    steps:\n      - uses: docker/setup-qemu-action@x\n      - uses: docker/build-push-action@y\n        with:\n          platforms: linux/amd64,linux/arm64\n          tags: ${{ env.REPOSITORY }}:x\n          provenance: false\n";
    let problems = workflow_problems(old_workflow);
    for expected in [
        "tests gate images",
        "the repository is lowercased",
        "no emulation",
        "a provenance attestation",
        "the image is signed by digest",
        "the paths filter watches src",
    ] {
        assert!(problems.iter().any(|p| p.contains(expected)), "{expected}: {problems:?}");
    }
    let old_dockerfile = "FROM docker.io/library/rust:1.95-bookworm AS build\nRUN cargo build\nFROM gcr.io/distroless/cc-debian12:nonroot\nCOPY --from=build /x /y\n";
    let problems = dockerfile_problems(old_dockerfile);
    assert_eq!(problems.len(), 6, "{problems:?}");
}

#[test]
fn argo_cd_syncs_automatically_and_the_image_updater_writes_back_to_git() {
    let argocd = objects(&render("argocd"));
    let application = find(&argocd, "Application", "kubechat");
    assert_eq!(custom_resource_problems(std::slice::from_ref(application)), Vec::<String>::new());
    let automated = &application["spec"]["syncPolicy"]["automated"];
    assert_eq!((automated["prune"].as_bool(), automated["selfHeal"].as_bool()), (Some(true), Some(true)));
    let path = application["spec"]["source"]["path"].as_str().unwrap();
    assert!(OVERLAYS.contains(&path), "the Application deploys {path}, which is not a checked overlay");
    let updater = find(&argocd, "ImageUpdater", "kubechat");
    assert_eq!(image_updater_problems(updater), Vec::<String>::new());
    let image = &updater["spec"]["applicationRefs"][0]["images"][0];
    assert_eq!(image["commonUpdateSettings"]["allowTags"], "regexp:^[0-9a-f]{7}$");
    assert_eq!(image["commonUpdateSettings"]["updateStrategy"], "newest-build");
    let write_back = &updater["spec"]["writeBackConfig"];
    assert_eq!(write_back["method"], "git");
    assert_eq!(write_back["gitConfig"]["writeBackTarget"], format!("kustomization:/{path}"));
    // Only signed images are deployed.
    let key = &updater["spec"]["imagesVerification"]["cosignKey"];
    assert_eq!((key["secretName"].as_str(), key["key"].as_str()), (Some("kubechat-cosign-pubkey"), Some("cosign.pub")));
    // The image the updater tracks is the one the render deploys.
    let render = objects(&render(path));
    let deployed =
        find(&render, "Deployment", "kubechat")["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(deployed.starts_with(&format!("{}:", image["imageName"].as_str().unwrap())), "{deployed}");
}

/// The ImageUpdater resource against the fields of Image Updater v1.3.0's CRD (the first with signature
/// verification): nothing it does not know, and no `spec.namespace`, which 1.2.0 removed (1.0.0-1.0.2 and 1.1.0
/// required it; docs/install.md names the versions that work).
fn image_updater_problems(updater: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut only = |value: &Value, at: &str, known: &[&str]| {
        for key in value.as_object().into_iter().flat_map(|o| o.keys()) {
            if !known.contains(&key.as_str()) {
                problems.push(format!("{at}.{key} is not a field of ImageUpdater v1.3.0"));
            }
        }
    };
    let spec = &updater["spec"];
    only(spec, "spec", &["applicationRefs", "commonUpdateSettings", "imagesVerification", "writeBackConfig"]);
    let settings = ["allowTags", "forceUpdate", "ignoreTags", "platforms", "pullSecret", "updateStrategy"];
    let verification = ["cosignKey", "enabled"];
    only(&spec["imagesVerification"], "spec.imagesVerification", &verification);
    only(&spec["writeBackConfig"], "spec.writeBackConfig", &["gitConfig", "method"]);
    only(
        &spec["writeBackConfig"]["gitConfig"],
        "spec.writeBackConfig.gitConfig",
        &["branch", "pullRequest", "repository", "writeBackTarget"],
    );
    for reference in spec["applicationRefs"].as_array().into_iter().flatten() {
        let at = "spec.applicationRefs[]";
        only(
            reference,
            at,
            &[
                "commonUpdateSettings",
                "images",
                "imagesVerification",
                "labelSelectors",
                "namePattern",
                "useAnnotations",
                "writeBackConfig",
            ],
        );
        for image in reference["images"].as_array().into_iter().flatten() {
            let at = "spec.applicationRefs[].images[]";
            only(image, at, &["alias", "commonUpdateSettings", "imageName", "imagesVerification", "manifestTargets"]);
            only(&image["commonUpdateSettings"], &format!("{at}.commonUpdateSettings"), &settings);
        }
    }
    problems
}

#[test]
fn the_service_monitor_scrapes_the_metrics_port() {
    let install = Install { overlay: "k8s/overlays/slack-socket", components: vec!["monitoring"] };
    let objects = objects(&render_install(&install));
    let monitor = find(&objects, "ServiceMonitor", "kubechat");
    // kube-prometheus-stack's Prometheus selects ServiceMonitors by their release label.
    assert_eq!(monitor["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let service = find(&objects, "Service", "kubechat");
    let labels = service["metadata"]["labels"].as_object().unwrap();
    for (key, value) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(labels.get(key), Some(value), "the ServiceMonitor selects the kubechat Service");
    }
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    let service_port = service["spec"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == port).unwrap();
    let deployment = find(&objects, "Deployment", "kubechat");
    let container_ports = &deployment["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(container_ports.as_array().unwrap().iter().any(|p| p["name"] == service_port["targetPort"]));
    let config = find(&objects, "ConfigMap", "kubechat-config-");
    assert!(config["data"]["kubechat.yaml"].as_str().unwrap().contains("listen: 0.0.0.0:9090"));
    let policy = find(&objects, "NetworkPolicy", "kubechat");
    assert!(policy["spec"]["ingress"].to_string().contains("9090"), "Prometheus may reach the port");
}

#[test]
fn the_cilium_component_replaces_the_broad_policies() {
    for overlay in OVERLAYS {
        let plain = objects(&render(overlay));
        let cilium = objects(&render_install(&Install { overlay, components: vec!["cilium"] }));
        let names = |objects: &[Value], kind: &str| -> Vec<String> {
            objects
                .iter()
                .filter(|o| o["kind"] == kind)
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(names(&plain, "NetworkPolicy").contains(&"kubechat-apiserver".to_string()), "{overlay}");
        let left = names(&cilium, "NetworkPolicy");
        assert!(!left.iter().any(|n| n == "kubechat-apiserver" || n == "kubechat-chat"), "{overlay}: {left:?}");
        assert!(left.contains(&"kubechat".to_string()) && left.contains(&"kubechat-model".to_string()), "{overlay}");
        // No NetworkPolicy left opens 443 to any address.
        for policy in cilium
            .iter()
            .filter(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"].as_str().unwrap().starts_with("kubechat"))
        {
            assert!(!policy["spec"]["egress"].to_string().contains("0.0.0.0/0"), "{overlay}: {policy}");
        }
        let apiserver = find(&cilium, "CiliumNetworkPolicy", "kubechat-apiserver");
        assert_eq!(apiserver["spec"]["egress"][0]["toEntities"], serde_json::json!(["kube-apiserver"]));
        let chat = find(&cilium, "CiliumNetworkPolicy", "kubechat-chat").to_string();
        assert!(chat.contains("*.slack.com") && chat.contains("\"dns\""), "{overlay}: {chat}");
    }
}

#[test]
fn the_web_chat_alone_reaches_no_internet() {
    // Without a chat platform kubechat needs no way out beyond the API server: no rule of its own opens 443 beyond
    // the API server's policy.
    let web_chat = objects(&render("k8s"));
    let open: Vec<&str> = web_chat
        .iter()
        .filter(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] != "kubechat-apiserver")
        .filter(|o| o["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "kubechat")
        .filter(|o| o["spec"]["egress"].to_string().contains("0.0.0.0/0"))
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(open, Vec::<&str>::new());
    for overlay in &OVERLAYS[1..] {
        let chat = objects(&render(overlay));
        assert!(
            chat.iter().any(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "kubechat-chat"),
            "{overlay}"
        );
    }
}

#[test]
fn every_scenario_object_validates_against_the_kubernetes_schemas() {
    // The demo cluster and the findings' fixtures are what a real API server would have stored: every object of
    // testdata/scenarios passes Kubernetes 1.33's schemas, strictly (no unknown fields).
    let validate = lint_bin().join("kubernetes-validate");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(format!("{ROOT}/testdata/scenarios")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let list: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let items = list["items"].as_array().unwrap_or_else(|| panic!("{} is a List", path.display()));
        // One document per object (JSON is YAML), as the validator reads them.
        let documents: Vec<String> = items.iter().map(|item| item.to_string()).collect();
        let file = dir.path().join(path.file_name().unwrap());
        std::fs::write(&file, documents.join("\n---\n")).unwrap();
        files.push(file.to_string_lossy().into_owned());
    }
    assert!(files.len() >= 35, "the scenarios are read: {files:?}");
    let mut args = vec!["--strict", "--quiet", "-k", "1.33.0"];
    args.extend(files.iter().map(String::as_str));
    let (ok, output) = run(&validate, &args, ROOT);
    assert!(ok, "scenario objects that a 1.33 API server would refuse:\n{output}");
}

/// The text of everything a user reads to install kubechat: the docs, the README and the manifests' comments.
fn install_texts() -> Vec<(String, String)> {
    let mut texts = Vec::new();
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(format!("{ROOT}/docs")).unwrap().map(|e| e.unwrap().path()).collect();
    paths.push(PathBuf::from(format!("{ROOT}/README.md")));
    paths.extend(crate::common::files_under(Path::new(&format!("{ROOT}/k8s")), "yaml"));
    paths.extend(crate::common::files_under(Path::new(&format!("{ROOT}/argocd")), "yaml"));
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap();
        texts.push((path.strip_prefix(ROOT).unwrap().display().to_string(), text));
    }
    texts
}

/// `kubectl [-n NS] create secret|configmap TYPE? NAME --from-literal=KEY=… --from-file=KEY=…` commands in a text
/// (continued lines joined, comment markers dropped): (what, namespace, name, keys).
fn create_commands(text: &str) -> Vec<(String, String, String, Vec<String>)> {
    let joined = text.replace("\\\n", " ").replace("\n#", " ").replace("\n  #", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        let Some(at) = line.find("kubectl ") else { continue };
        let words: Vec<&str> = line[at..].split_whitespace().collect();
        let Some(create) = words.iter().position(|w| *w == "create") else { continue };
        let Some(&what) = words.get(create + 1) else { continue };
        if what != "secret" && what != "configmap" {
            continue;
        }
        let mut rest = &words[create + 2..];
        if what == "secret" && rest.first().is_some_and(|w| ["generic", "docker-registry", "tls"].contains(w)) {
            rest = &rest[1..];
        }
        let name = rest.first().unwrap_or(&"").trim_matches(['`', '"']).to_string();
        let namespace = words
            .iter()
            .position(|w| *w == "-n" || *w == "--namespace")
            .and_then(|i| words.get(i + 1))
            .map(|n| n.to_string())
            .unwrap_or_default();
        let keys = words
            .iter()
            .filter_map(|w| w.strip_prefix("--from-literal=").or_else(|| w.strip_prefix("--from-file=")))
            .map(|kv| kv.split('=').next().unwrap().trim_matches(['"', '\'']).to_string())
            .collect();
        commands.push((what.to_string(), namespace, name, keys));
    }
    commands
}

#[test]
fn what_the_docs_tell_you_to_create_or_set_is_what_kubechat_reads() {
    // What the manifests read: Secrets by name (the Deployment's environment, the pods' pull secret, the Ingress's
    // certificate), in kubechat's namespace; and in Argo CD's, what the ImageUpdater names.
    let mut read: std::collections::BTreeSet<(String, String)> = std::collections::BTreeSet::new();
    for (_, objects) in rendered() {
        for object in &objects {
            let text = object.to_string();
            for key in ["secretName"] {
                for found in text.split(&format!("\"{key}\":\"")).skip(1) {
                    read.insert(("kubechat".into(), found.split('"').next().unwrap().to_string()));
                }
            }
            let pod = &object["spec"]["template"]["spec"];
            for from in pod["containers"][0]["envFrom"].as_array().into_iter().flatten() {
                read.insert(("kubechat".into(), from["secretRef"]["name"].as_str().unwrap_or_default().to_string()));
            }
            for secret in pod["imagePullSecrets"].as_array().into_iter().flatten() {
                read.insert(("kubechat".into(), secret["name"].as_str().unwrap().to_string()));
            }
        }
    }
    let updater_text = std::fs::read_to_string(format!("{ROOT}/argocd/image-updater.yaml")).unwrap();
    let argocd = objects(&render("argocd"));
    let updater = find(&argocd, "ImageUpdater", "kubechat");
    let cosign = &updater["spec"]["imagesVerification"]["cosignKey"];
    read.insert(("argocd".into(), cosign["secretName"].as_str().unwrap().to_string()));
    // The private-image pull secret is a commented line the docs tell you to uncomment.
    for found in updater_text.split("pullsecret:argocd/").skip(1) {
        read.insert(("argocd".into(), found.split_whitespace().next().unwrap().to_string()));
    }

    let mut created = 0;
    for (file, text) in install_texts() {
        for (what, namespace, name, keys) in create_commands(&text) {
            created += 1;
            assert_eq!(
                what, "secret",
                "{file}: kubechat reads no ConfigMap you create ({name}): its own come from Git"
            );
            let namespace = if namespace.is_empty() { "kubechat".to_string() } else { namespace };
            assert!(
                read.contains(&(namespace.clone(), name.clone())),
                "{file}: the docs create the Secret {name} in {namespace}, which nothing reads; read: {read:?}"
            );
            if name == "kubechat-secrets" {
                for key in &keys {
                    assert!(
                        kubechat::config::unknown_variables([(key.clone(), String::new())]).is_empty()
                            && key.starts_with("KUBECHAT_"),
                        "{file}: {key} in kubechat-secrets is no variable kubechat reads"
                    );
                }
            }
            if name == cosign["secretName"] {
                assert_eq!(keys, [cosign["key"].as_str().unwrap()], "{file}: the public key's file name in the Secret");
            }
        }
        // Every KUBECHAT_ variable the text names is one kubechat reads.
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("KUBECHAT_") && word != "KUBECHAT_" && word != "KUBECHAT_A_B" {
                assert!(
                    kubechat::config::unknown_variables([(word.to_string(), String::new())]).is_empty(),
                    "{file} names {word}, which kubechat does not read"
                );
            }
        }
        // Every kubechat configuration snippet loads: no setting in it is unknown.
        if file.ends_with(".md") {
            for block in text.split("```yaml\n").skip(1).map(|b| b.split("```").next().unwrap()) {
                let indent = block
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| l.len() - l.trim_start().len())
                    .min()
                    .unwrap_or(0);
                let block: String = block.lines().map(|l| format!("{}\n", l.get(indent..).unwrap_or(""))).collect();
                let first = block.lines().next().unwrap_or("");
                let someone_elses = first.starts_with("# ") && !first.contains("kubechat.yaml");
                if someone_elses || block.contains("apiVersion:") {
                    continue;
                }
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("kubechat.yaml");
                std::fs::write(&path, &block).unwrap();
                if let Err(e) = kubechat::config::load(Some(&path), Vec::new()) {
                    panic!("{file}: a configuration snippet does not load: {e}\n{block}");
                }
            }
        }
    }
    assert!(created >= 6, "the docs' Secrets are found ({created})");

    // The check finds what it looks for.
    let sample = "kubectl -n kubechat create secret generic kubechat-slack \\\n  --from-literal=KUBECHAT_SLACK_BOT_TOKEN=xoxb-… \\\n  --from-literal=\"KUBECHAT_HTTP_TOKENS=[a:b]\"";
    assert_eq!(
        create_commands(sample),
        [(
            "secret".to_string(),
            "kubechat".to_string(),
            "kubechat-slack".to_string(),
            vec!["KUBECHAT_SLACK_BOT_TOKEN".to_string(), "KUBECHAT_HTTP_TOKENS".to_string()]
        )]
    );
    assert!(!read.contains(&("kubechat".to_string(), "kubechat-slack".to_string())));
}
