//! Delivery: `k8s/` and every overlay render with kubectl's kustomize, grant reads only, carry the prompts byte for
//! byte and lock the pods down; the render validates against the Kubernetes schemas; Argo CD's objects say what they
//! must; the workflows and the Dockerfile lint clean. (The real-API-server suite applies the render and proves the
//! role: `apiserver.rs`.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// `k8s/` and its overlays.
pub const RENDERS: &[&str] =
    &["k8s", "k8s/overlays/slack-socket", "k8s/overlays/slack-http", "k8s/overlays/matrix", "k8s/overlays/gpu"];

/// `kubectl kustomize DIR`.
pub fn render(dir: &str) -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", &format!("{ROOT}/{dir}")])
        .output()
        .expect("kubectl runs (scripts/test installs it)");
    assert!(out.status.success(), "kubectl kustomize {dir}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn objects(yaml: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(yaml).unwrap().into_iter().filter(|v| !v.is_null()).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name_prefix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(name_prefix)))
        .unwrap_or_else(|| panic!("no {kind} {name_prefix}"))
}

/// Problems with a role's rules: anything beyond reading, and any reach into Secrets, ConfigMaps or pods' exec,
/// attach and port-forward.
fn rbac_problems(objects: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    for role in objects.iter().filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role") {
        let name = role["metadata"]["name"].as_str().unwrap_or("?");
        for rule in role["rules"].as_array().into_iter().flatten() {
            let strings = |field: &str| -> Vec<String> {
                rule[field].as_array().into_iter().flatten().filter_map(|v| v.as_str()).map(str::to_string).collect()
            };
            for verb in strings("verbs") {
                if !["get", "list", "watch"].contains(&verb.as_str()) {
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

#[test]
fn every_render_grants_reads_only() {
    for dir in RENDERS {
        let objects = objects(&render(dir));
        let role = find(&objects, "ClusterRole", "kubechat-reader");
        assert!(!role["rules"].as_array().unwrap().is_empty());
        assert_eq!(rbac_problems(&objects), Vec::<String>::new(), "{dir}");
        let binding = find(&objects, "ClusterRoleBinding", "kubechat-reader");
        assert_eq!(binding["subjects"][0]["name"], "kubechat");
        assert_eq!(binding["subjects"][0]["namespace"], "kubechat");
    }
    // The check itself catches a write, a Secret and exec.
    let bad: Vec<Value> = objects(
        "kind: ClusterRole\nmetadata: {name: x}\nrules:\n- apiGroups: ['']\n  resources: [pods, secrets, pods/exec]\n  verbs: [get, create]\n",
    );
    assert_eq!(rbac_problems(&bad).len(), 3, "{:?}", rbac_problems(&bad));
}

#[test]
fn every_rule_of_the_role_says_why_it_is_there() {
    let text = std::fs::read_to_string(format!("{ROOT}/k8s/base/rbac.yaml")).unwrap();
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
    for dir in RENDERS {
        let objects = objects(&render(dir));
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
    for dir in RENDERS {
        let objects = objects(&render(dir));
        for deployment in objects.iter().filter(|o| o["kind"] == "Deployment") {
            let name = deployment["metadata"]["name"].as_str().unwrap();
            let pod = &deployment["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{dir} {name}");
            assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{dir} {name}");
            for container in pod["containers"].as_array().unwrap() {
                let security = &container["securityContext"];
                assert_eq!(security["readOnlyRootFilesystem"], true, "{dir} {name}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{dir} {name}");
                assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]), "{dir} {name}");
                assert!(container["resources"]["requests"].is_object(), "{dir} {name}: resources");
                assert!(container["readinessProbe"].is_object() && container["livenessProbe"].is_object());
                let image = container["image"].as_str().unwrap();
                let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
                assert!(!tag.is_empty() && tag != "latest" && !tag.contains('/'), "{dir} {name}: image {image}");
            }
        }
        let kubechat = find(&objects, "Deployment", "kubechat");
        let container = &kubechat["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(container["envFrom"][0]["secretRef"]["name"], "kubechat-secrets", "tokens come from a Secret");
        assert!(objects.iter().all(|o| o["kind"] != "Secret"), "{dir}: no Secret is committed");
        let ollama = find(&objects, "Deployment", "ollama");
        assert_eq!(ollama["spec"]["strategy"]["type"], "Recreate");
        let service = find(&objects, "Service", "ollama");
        assert_eq!(service["spec"]["ports"][0]["port"], 11434);
        find(&objects, "PersistentVolumeClaim", "ollama-models");
        find(&objects, "Job", "ollama-pull-model");
        find(&objects, "NetworkPolicy", "kubechat");
        // The configuration loads, and validates with the variables the Secret would give.
        let config = find(&objects, "ConfigMap", "kubechat-config-");
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("kubechat.yaml");
        std::fs::write(&path, config["data"]["kubechat.yaml"].as_str().unwrap()).unwrap();
        let raw = kubechat::config::load(Some(&path), Vec::new()).unwrap();
        let mut env = Vec::new();
        if raw.slack.enabled {
            env.push(("KUBECHAT_SLACK_BOT_TOKEN".to_string(), "xoxb-test".to_string()));
            env.push(("KUBECHAT_SLACK_APP_TOKEN".to_string(), "xapp-test".to_string()));
            env.push(("KUBECHAT_SLACK_SIGNING_SECRET".to_string(), "secret".to_string()));
        }
        if raw.matrix.enabled {
            env.push(("KUBECHAT_MATRIX_PASSWORD".to_string(), "password".to_string()));
        }
        kubechat::config::load(Some(&path), env).unwrap().validate().unwrap_or_else(|e| panic!("{dir}: {e}"));
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
    let gpu = objects(&render("k8s/overlays/gpu"));
    assert_eq!(
        find(&gpu, "Deployment", "ollama")["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        1
    );
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
    // The monitoring overlay's ServiceMonitor is a CRD the validator has no schema for: it is checked below instead.
    for render_dir in RENDERS.iter().chain(&["k8s/overlays/monitoring"]) {
        let file = dir.path().join(format!("{}.yaml", render_dir.replace('/', "-")));
        std::fs::write(&file, render(render_dir)).unwrap();
        // The oldest version kubechat supports (k8s-openapi's v1_33) and the newest the validator knows.
        for version in ["1.33.0", "1.37.0"] {
            let (ok, output) = run(&validate, &["--strict", "--quiet", "-k", version, file.to_str().unwrap()], ROOT);
            assert!(ok, "{render_dir} against Kubernetes {version}:\n{output}");
        }
    }
    // The validator does reject a wrong manifest.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n  selector: {}\n  template: {}\n").unwrap();
    let (ok, _) = run(&validate, &["--strict", "--quiet", "-k", "1.33.0", bad.to_str().unwrap()], ROOT);
    assert!(!ok, "kubernetes-validate accepted a misspelt field");
}

#[test]
fn the_dockerfile_and_the_workflows_lint_clean() {
    let (ok, output) = run(&lint_bin().join("hadolint"), &["Dockerfile"], ROOT);
    assert!(ok, "hadolint Dockerfile:\n{output}");
    let actionlint = std::env::var_os("KUBECHAT_ACTIONLINT").map(PathBuf::from).unwrap_or_else(|| {
        panic!("KUBECHAT_ACTIONLINT is not set: export KUBECHAT_ACTIONLINT=$(./scripts/lint-tools | sed -n 2p)")
    });
    let (ok, output) = run(&actionlint, &[], ROOT);
    assert!(ok && output.contains("Checking 2 workflow file(s)"), "actionlint:\n{output}");
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
    let ci = std::fs::read_to_string(format!("{ROOT}/.github/workflows/ci.yml")).unwrap();
    assert!(ci.contains("run: ./scripts/test"), "CI runs the README's test command");
    let image = std::fs::read_to_string(format!("{ROOT}/.github/workflows/image.yml")).unwrap();
    assert!(image.contains("platforms: linux/amd64,linux/arm64") && image.contains("GITHUB_SHA::7"));
}

#[test]
fn argo_cd_syncs_automatically_and_the_image_updater_writes_back_to_git() {
    let argocd = objects(&render("argocd"));
    let application = find(&argocd, "Application", "kubechat");
    let automated = &application["spec"]["syncPolicy"]["automated"];
    assert_eq!((automated["prune"].as_bool(), automated["selfHeal"].as_bool()), (Some(true), Some(true)));
    let path = application["spec"]["source"]["path"].as_str().unwrap();
    assert!(RENDERS.contains(&path), "the Application deploys {path}, which is not a checked render");
    let updater = find(&argocd, "ImageUpdater", "kubechat");
    let image = &updater["spec"]["applicationRefs"][0]["images"][0];
    assert_eq!(image["commonUpdateSettings"]["allowTags"], "regexp:^[0-9a-f]{7}$");
    assert_eq!(image["commonUpdateSettings"]["updateStrategy"], "newest-build");
    let write_back = &updater["spec"]["writeBackConfig"];
    assert_eq!(write_back["method"], "git");
    assert_eq!(write_back["gitConfig"]["writeBackTarget"], format!("kustomization:/{path}"));
    // The image the updater tracks is the one the render deploys.
    let render = objects(&render(path));
    let deployed =
        find(&render, "Deployment", "kubechat")["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
    assert!(deployed.starts_with(&format!("{}:", image["imageName"].as_str().unwrap())), "{deployed}");
}

#[test]
fn the_service_monitor_scrapes_the_metrics_port() {
    let objects = objects(&render("k8s/overlays/monitoring"));
    let monitor = find(&objects, "ServiceMonitor", "kubechat");
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
