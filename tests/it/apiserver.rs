//! A real kube-apiserver v1.20.2 with etcd on loopback, built from Debian's source package by
//! `scripts/kube-apiserver`. There is no scheduler and no kubelet: the harness binds pods, writes their statuses and
//! events, and serves their logs from a tiny HTTPS "kubelet" that the API server proxies `pods/log` to.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Node, Pod, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::common::findings;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BOT: &str = "system:serviceaccount:kubechat:kubechat";

/// The directory holding kube-apiserver and kube-controller-manager, built on first use.
fn kube_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("KUBECHAT_KUBE_BIN") {
        return dir.into();
    }
    let out = Command::new(format!("{ROOT}/scripts/kube-apiserver"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/kube-apiserver runs");
    assert!(
        out.status.success(),
        "scripts/kube-apiserver could not provide kube-apiserver (its output is above); it installs Debian's golang-1.19-go and etcd-server as root and builds v1.20.2 from Debian's kubernetes source package"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn ago(seconds: i64) -> String {
    (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds)).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// etcd, kube-apiserver and (optionally) kube-controller-manager, stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    pub admin_kubeconfig: PathBuf,
    pub bot_kubeconfig: PathBuf,
    pub kubelet: FakeKubelet,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(false).await
    }

    /// One whose controller manager also fills ServiceAccount token Secrets, as a real cluster's does: kubechat reads
    /// it from afar with the token of `k8s/remote`'s Secret.
    pub async fn start_issuing_tokens() -> Cluster {
        Cluster::start_with(true).await
    }

    async fn start_with(tokens: bool) -> Cluster {
        let bin = kube_bin();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=kubechat-test-ca",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "serving.key",
                "-out",
                "serving.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        );
        std::fs::write(
            d.join("serving.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "serving.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "serving.crt",
                "-days",
                "2",
                "-extfile",
                "serving.ext",
            ],
        );
        openssl(d, &["genrsa", "-out", "sa.key", "2048"]);
        openssl(d, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        std::fs::write(
            d.join("tokens.csv"),
            format!("admin-token-1f0c,admin,admin-uid,\"system:masters\"\nbot-token-7d2e,{BOT},kubechat-uid,\"system:serviceaccounts,system:serviceaccounts:kubechat\"\n"),
        )
        .unwrap();

        let mut children = Vec::new();
        let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        children.push(
            Command::new("etcd")
                .args(["--name", "test", "--data-dir"])
                .arg(d.join("etcd"))
                .args(["--listen-client-urls", &etcd_url, "--advertise-client-urls", &etcd_url])
                .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("test={peer_url}"), "--unsafe-no-fsync"])
                .stdout(log("etcd.log"))
                .stderr(log("etcd.log"))
                .spawn()
                .expect("etcd runs (Debian package etcd-server; scripts/kube-apiserver installs it)"),
        );
        let kubelet = FakeKubelet::start(&d.join("serving.crt"), &d.join("serving.key")).await;
        let arg = |name: &str, file: &str| format!("--{name}={}", d.join(file).display());
        children.push(
            Command::new(bin.join("kube-apiserver"))
                .arg(format!("--etcd-servers={etcd_url}"))
                .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--insecure-port=0"])
                .arg(format!("--secure-port={api_port}"))
                .arg(arg("tls-cert-file", "serving.crt"))
                .arg(arg("tls-private-key-file", "serving.key"))
                .arg(arg("cert-dir", "certs"))
                .arg(arg("token-auth-file", "tokens.csv"))
                .arg("--authorization-mode=RBAC")
                .arg(arg("service-account-key-file", "sa.pub"))
                .arg(arg("service-account-signing-key-file", "sa.key"))
                .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
                .args(["--service-cluster-ip-range=10.96.0.0/16", "--disable-admission-plugins=ServiceAccount"])
                .args([
                    "--kubelet-preferred-address-types=InternalIP",
                    "--enable-priority-and-fairness=false",
                    "--profiling=false",
                ])
                .stdout(log("apiserver.log"))
                .stderr(log("apiserver.log"))
                .spawn()
                .expect("kube-apiserver runs"),
        );
        let url = format!("https://127.0.0.1:{api_port}");
        let kubeconfig = |name: &str, token: &str| {
            let path = d.join(name);
            let text = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority: {}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n    namespace: default\ncurrent-context: test\n",
                d.join("ca.crt").display()
            );
            std::fs::write(&path, text).unwrap();
            path
        };
        let admin_kubeconfig = kubeconfig("admin.kubeconfig", "admin-token-1f0c");
        let bot_kubeconfig = kubeconfig("bot.kubeconfig", "bot-token-7d2e");
        let mut cluster = Cluster { dir, children, admin_kubeconfig, bot_kubeconfig, kubelet };
        cluster.wait_ready().await;
        let mut controllers = Command::new(bin.join("kube-controller-manager"));
        controllers.arg(format!("--kubeconfig={}", cluster.admin_kubeconfig.display())).args([
            "--leader-elect=false",
            "--port=0",
            "--secure-port=0",
            "--use-service-account-credentials=false",
        ]);
        if tokens {
            let d = cluster.dir.path();
            controllers
                .arg(format!("--service-account-private-key-file={}", d.join("sa.key").display()))
                .arg(format!("--root-ca-file={}", d.join("ca.crt").display()))
                .arg("--controllers=*,-nodelifecycle");
        } else {
            controllers.arg("--controllers=*,-nodelifecycle,-serviceaccount-token");
        }
        cluster.children.push(
            controllers
                .stdout(log_in(cluster.dir.path(), "controller-manager.log"))
                .stderr(log_in(cluster.dir.path(), "controller-manager.log"))
                .spawn()
                .expect("kube-controller-manager runs"),
        );
        cluster
    }

    async fn wait_ready(&self) {
        let client = self.admin().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.request_text(http::Request::get("/readyz").body(Vec::new()).unwrap()).await;
            if ready.is_ok_and(|body| body.trim() == "ok") {
                return;
            }
            if Instant::now() > deadline {
                panic!("kube-apiserver not ready after 60 s; its log ends:\n{}", self.log_tail("apiserver.log"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub async fn admin(&self) -> kube::Client {
        client_of(&self.admin_kubeconfig).await
    }

    pub async fn bot(&self) -> kube::Client {
        client_of(&self.bot_kubeconfig).await
    }

    /// kubectl as `kubeconfig`, with its own cache directory.
    pub fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .output()
            .expect("kubectl runs")
    }
}

fn log_in(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap()
}

/// The part of a kubelet the API server proxies `pods/log` to: `GET /containerLogs/{ns}/{pod}/{container}`.
pub struct FakeKubelet {
    pub port: u16,
    logs: Arc<Mutex<HashMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    async fn start(cert: &Path, key: &Path) -> FakeKubelet {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject as _;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let logs: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = logs.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, logs) = (acceptor.clone(), served.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_log(stream, &logs).await;
                    }
                });
            }
        });
        FakeKubelet { port, logs, task }
    }

    pub fn set_log(&self, namespace: &str, pod: &str, container: &str, previous: bool, text: &str) {
        self.logs.lock().unwrap().insert(format!("{namespace}/{pod}/{container}/{previous}"), text.to_string());
    }
}

async fn serve_log(
    mut stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    logs: &Mutex<HashMap<String, String>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or_default().to_string();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}=")));
    let previous = param("previous") == Some("true");
    let (code, body) = match path.strip_prefix("/containerLogs/").map(|p| p.split('/').collect::<Vec<_>>()) {
        Some(parts) if parts.len() == 3 => {
            let key = format!("{}/{}/{}/{previous}", parts[0], parts[1], parts[2]);
            match logs.lock().unwrap().get(&key) {
                Some(text) => {
                    let tail = param("tailLines").and_then(|t| t.parse().ok());
                    let limit = param("limitBytes").and_then(|t| t.parse().ok());
                    (200, kubechat::replay::select_log(text.as_bytes(), tail, limit))
                }
                None => (
                    404,
                    format!("container {:?} has no {} log", parts[2], if previous { "previous" } else { "current" })
                        .into_bytes(),
                ),
            }
        }
        _ => (404, b"not found".to_vec()),
    };
    let reason = if code == 200 { "OK" } else { "Not Found" };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

/// Names of the pods the harness drove into trouble.
pub struct Shop {
    pub crashing: String,
    pub pulling: String,
    pub pending: String,
}

const OOM_LOG: &str = "2026-11-21T10:00:01Z INFO  api: starting api 2.4.0\n2026-11-21T10:00:02Z INFO  api: warming product cache entries=2000000\nException in thread \"main\" java.lang.OutOfMemoryError: Java heap space\n\tat shop.api.Cache.warm(Cache.java:88)\n";

/// Namespace `shop`: a Deployment whose pod is crash-looping after OOM kills (behind a Service), one whose image cannot
/// be pulled and one whose pod no node can take, with the events and logs a kubelet and scheduler would produce.
pub async fn build_shop(cluster: &Cluster) -> Shop {
    let admin = cluster.admin().await;
    let pp = PostParams::default();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap()).await.unwrap();

    let nodes: Api<Node> = Api::all(admin.clone());
    let node = json!({"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux"}}});
    nodes.create(&pp, &serde_json::from_value(node).unwrap()).await.unwrap();
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "node-1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cluster.kubelet.port}},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now(), "lastTransitionTime": ago(3600)}],
        "nodeInfo": {"kubeletVersion": "v1.20.2", "kubeProxyVersion": "v1.20.2", "operatingSystem": "linux", "architecture": "amd64",
                     "containerRuntimeVersion": "containerd://1.6.20", "osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0",
                     "machineID": "0f1e", "systemUUID": "0f1e", "bootID": "0f1e"},
    }});
    nodes.patch_status("node-1", &PatchParams::default(), &Patch::Merge(status)).await.unwrap();

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "shop");
    for (name, image, resources) in [
        (
            "api",
            "registry.example.com/shop/api:2.4.0",
            json!({"limits": {"memory": "256Mi"}, "requests": {"memory": "128Mi"}}),
        ),
        ("web", "registry.example.com/shop/web:9.9.9-missing", json!({})),
        ("worker", "registry.example.com/shop/worker:1.0.0", json!({"requests": {"memory": "64Gi"}})),
    ] {
        let deployment = json!({
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image, "resources": resources}]}}},
        });
        deployments.create(&pp, &serde_json::from_value(deployment).unwrap()).await.unwrap();
    }
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(admin.clone(), "shop");
    let service = json!({"metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}});
    services.create(&pp, &serde_json::from_value(service).unwrap()).await.unwrap();

    let pods: Api<Pod> = Api::namespaced(admin.clone(), "shop");
    let pod_of = |app: &'static str| {
        let pods = pods.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
                if let Some(pod) = list.items.into_iter().next() {
                    return pod;
                }
                assert!(Instant::now() < deadline, "the ReplicaSet controller made no pod for {app} within 60 s");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let (api, web, worker) = (pod_of("api").await, pod_of("web").await, pod_of("worker").await);
    let name = |p: &Pod| p.metadata.name.clone().unwrap();
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap();
    for pod in [&api, &web] {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name(pod)}, "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
        pods.create_subresource::<Value, Value>("binding", &name(pod), &pp, &binding).await.unwrap();
    }

    let not_ready = |since: &str| {
        json!([
            {"type": "Initialized", "status": "True", "lastTransitionTime": since},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "containers with unready status: [app]", "lastTransitionTime": since},
            {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "message": "containers with unready status: [app]", "lastTransitionTime": since},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": since},
        ])
    };
    let api_status = json!({"status": {
        "phase": "Running", "hostIP": "127.0.0.1", "podIP": "10.244.0.10", "podIPs": [{"ip": "10.244.0.10"}], "startTime": ago(600), "qosClass": "Burstable",
        "conditions": not_ready(&ago(590)),
        "containerStatuses": [{
            "name": "app", "image": "registry.example.com/shop/api:2.4.0", "imageID": "registry.example.com/shop/api@sha256:5b1f0c", "containerID": "containerd://9c1a",
            "ready": false, "restartCount": 4, "started": false,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 1m20s restarting failed container=app pod={}_shop({})", name(&api), uid(&api))}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": ago(60), "finishedAt": ago(30), "containerID": "containerd://9c1a"}},
        }],
    }});
    pods.patch_status(&name(&api), &PatchParams::default(), &Patch::Merge(api_status)).await.unwrap();
    let web_status = json!({"status": {
        "phase": "Pending", "hostIP": "127.0.0.1", "startTime": ago(600), "qosClass": "BestEffort", "conditions": not_ready(&ago(600)),
        "containerStatuses": [{
            "name": "app", "image": "registry.example.com/shop/web:9.9.9-missing", "imageID": "", "ready": false, "restartCount": 0, "started": false,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"registry.example.com/shop/web:9.9.9-missing\""}},
            "lastState": {},
        }],
    }});
    pods.patch_status(&name(&web), &PatchParams::default(), &Patch::Merge(web_status)).await.unwrap();
    let worker_status = json!({"status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient memory.", "lastTransitionTime": ago(600)},
    ]}});
    pods.patch_status(&name(&worker), &PatchParams::default(), &Patch::Merge(worker_status)).await.unwrap();

    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(admin.clone(), "shop");
    for (i, (pod, reason, message, count, component)) in [
        (&api, "BackOff", format!("Back-off restarting failed container app in pod {}_shop({})", name(&api), uid(&api)), 6, "kubelet"),
        (&web, "Failed", "Failed to pull image \"registry.example.com/shop/web:9.9.9-missing\": rpc error: code = NotFound desc = failed to pull and unpack image: not found".to_string(), 4, "kubelet"),
        (&web, "Failed", "Error: ImagePullBackOff".to_string(), 9, "kubelet"),
        (&worker, "FailedScheduling", "0/1 nodes are available: 1 Insufficient memory.".to_string(), 3, "default-scheduler"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut source = json!({"component": component});
        if component == "kubelet" {
            source["host"] = json!("node-1");
        }
        let event = json!({
            "metadata": {"name": format!("{}.{i:x}", name(pod)), "namespace": "shop"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": name(pod), "namespace": "shop", "uid": uid(pod), "fieldPath": "spec.containers{app}"},
            "reason": reason, "message": message, "type": "Warning", "count": count,
            "firstTimestamp": ago(580), "lastTimestamp": ago(20 + i as i64), "source": source,
        });
        events.create(&pp, &serde_json::from_value(event).unwrap()).await.unwrap();
    }
    cluster.kubelet.set_log("shop", &name(&api), "app", true, OOM_LOG);

    // The endpoints controller lists the crashing pod as not ready; wait for it so every read sees the same state.
    let endpoints: Api<Endpoints> = Api::namespaced(admin.clone(), "shop");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ep = endpoints.get_opt("api").await.unwrap();
        let not_ready = ep
            .iter()
            .flat_map(|e| e.subsets.iter().flatten())
            .any(|s| s.not_ready_addresses.as_ref().is_some_and(|a| !a.is_empty()));
        if not_ready {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoints controller did not list the api pod within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let the deployment controller settle its status
    Shop { crashing: name(&api), pulling: name(&web), pending: name(&worker) }
}

fn kubechat(args: &[&str]) -> (Value, String) {
    let out = crate::common::kubechat(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "kubechat {args:?} failed: {stderr}");
    (serde_json::from_slice(&out.stdout).expect("JSON output"), stderr)
}

/// Applies `k8s/` as rendered, in this server's versions ([`served_here`]).
pub fn apply_manifests(cluster: &Cluster, extra: &[&str]) {
    let objects = served_here(crate::delivery::objects(&crate::delivery::render("k8s")));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string()).unwrap();
    let mut args = vec!["apply", "-f", file.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = cluster.kubectl(&cluster.admin_kubeconfig, &args);
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The objects as this v1.20 server serves them: a PodDisruptionBudget is `policy/v1` from Kubernetes 1.21 (and only
/// that from 1.25), which the manifests ship; here it is `policy/v1beta1`, whose fields the manifests' use alike. The
/// schema test checks the `policy/v1` object itself (`delivery.rs`).
pub fn served_here(objects: Vec<Value>) -> Vec<Value> {
    objects
        .into_iter()
        .map(|mut object| {
            if object["apiVersion"] == "policy/v1" && object["kind"] == "PodDisruptionBudget" {
                object["apiVersion"] = json!("policy/v1beta1");
            }
            object
        })
        .collect()
}

fn is_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_role_reads_what_the_bot_needs_and_refuses_writes_and_secrets() {
    let cluster = Cluster::start().await;
    apply_manifests(&cluster, &[]);
    let shop = build_shop(&cluster).await;
    let bot_kubeconfig = cluster.bot_kubeconfig.to_str().unwrap().to_string();

    let (diagnosis, _) =
        kubechat(&["diagnose", "--kubeconfig", &bot_kubeconfig, "-n", "shop", "--no-llm", "--output", "json"]);
    assert!(diagnosis.get("gaps").is_none(), "the role lacks nothing: {}", diagnosis["gaps"]);
    let found = findings(&diagnosis);
    assert!(found.contains(&("OOMKilled".into(), "Pod".into(), shop.crashing.clone())), "{found:?}");

    let bot = cluster.bot().await;
    let pods: Api<Pod> = Api::namespaced(bot.clone(), "shop");
    assert!(is_forbidden(pods.delete(&shop.crashing, &DeleteParams::default()).await), "delete pods");
    let deployments: Api<Deployment> = Api::namespaced(bot.clone(), "shop");
    assert!(
        is_forbidden(
            deployments.patch("api", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 0}}))).await
        ),
        "patch deployments"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(bot.clone(), "shop");
    let configmap = serde_json::from_value(json!({"metadata": {"name": "x"}, "data": {"a": "b"}})).unwrap();
    assert!(is_forbidden(configmaps.create(&PostParams::default(), &configmap).await), "create configmaps");
    let exec =
        format!("/api/v1/namespaces/shop/pods/{}/exec?command=sh&container=app&stdin=true&stdout=true", shop.crashing);
    let exec = bot.request_text(http::Request::post(exec).body(Vec::new()).unwrap()).await;
    assert!(is_forbidden(exec), "exec into pods");
    // The one write, leader election's Lease, is the one Lease in kubechat's namespace: the bot creates and updates
    // it, and no other Lease, there or elsewhere.
    let lease = |name: &str| -> k8s_openapi::api::coordination::v1::Lease {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"holderIdentity": "test"}})).unwrap()
    };
    type Leases = Api<k8s_openapi::api::coordination::v1::Lease>;
    let (ours, shops): (Leases, Leases) =
        (Api::namespaced(bot.clone(), "kubechat"), Api::namespaced(bot.clone(), "shop"));
    let created = ours.create(&PostParams::default(), &lease("kubechat-leader")).await.unwrap();
    ours.replace("kubechat-leader", &PostParams::default(), &created).await.unwrap();
    assert!(is_forbidden(ours.delete("kubechat-leader", &DeleteParams::default()).await), "delete the Lease");
    assert!(is_forbidden(shops.create(&PostParams::default(), &lease("kubechat-leader")).await), "a Lease elsewhere");
    let admin_leases: Leases = Api::namespaced(cluster.admin().await, "kubechat");
    let other = admin_leases.create(&PostParams::default(), &lease("someone-elses")).await.unwrap();
    assert!(is_forbidden(ours.get("someone-elses").await), "get another Lease");
    assert!(is_forbidden(ours.replace("someone-elses", &PostParams::default(), &other).await), "take another Lease");

    let admin_secrets: Api<Secret> = Api::namespaced(cluster.admin().await, "shop");
    let secret =
        serde_json::from_value(json!({"metadata": {"name": "db"}, "stringData": {"password": "hunter2"}})).unwrap();
    admin_secrets.create(&PostParams::default(), &secret).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(bot.clone(), "shop");
    assert!(is_forbidden(secrets.list(&ListParams::default()).await), "list secrets");
    assert!(is_forbidden(secrets.get("db").await), "get secrets");
    assert!(admin_secrets.list(&ListParams::default()).await.is_ok(), "the refusals are RBAC's: the admin may");

    // A CronJob, served only as batch/v1beta1 by this API server, with a Job it owns: a question narrowed to it
    // reads its Job and nothing of the rest of the namespace (the crash-looping pod of the Deployment).
    let admin = cluster.admin().await;
    let v1beta1 = kube::discovery::ApiResource {
        group: "batch".into(),
        version: "v1beta1".into(),
        api_version: "batch/v1beta1".into(),
        kind: "CronJob".into(),
        plural: "cronjobs".into(),
    };
    let cronjobs: Api<kube::api::DynamicObject> = Api::namespaced_with(admin.clone(), "shop", &v1beta1);
    let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "report", "image": "registry.example.com/report:1"}]}});
    let cronjob: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "suspend": true, "jobTemplate": {"spec": {"template": template}}},
    }))
    .unwrap();
    let cronjob = cronjobs.create(&PostParams::default(), &cronjob).await.unwrap();
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(admin.clone(), "shop");
    let job = serde_json::from_value(json!({
        "metadata": {"name": "nightly-29000000", "ownerReferences": [{"apiVersion": "batch/v1beta1", "kind": "CronJob",
            "name": "nightly", "uid": cronjob.metadata.uid.clone().unwrap(), "controller": true}]},
        "spec": {"template": template},
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let narrowed_to = |object: &'static str| {
        ["diagnose", "--kubeconfig", bot_kubeconfig.as_str(), "-n", "shop", "--object", object, "--no-llm"]
    };
    for object in ["cronjob/nightly", "cj/nightly"] {
        let (narrowed, _) = kubechat(&[&narrowed_to(object)[..], &["--output", "json"]].concat());
        let context = narrowed["context"].as_str().unwrap();
        assert!(context.contains("nightly-29000000"), "{object}: the CronJob's Job is read: {context}");
        assert!(!context.contains(&shop.crashing), "{object}: the rest of the namespace is left out: {context}");
        assert!(narrowed.get("gaps").is_none(), "{object}: {}", narrowed["gaps"]);
    }
    let missing = crate::common::kubechat(&narrowed_to("cronjob/nightlly"));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(stderr.contains("cronjob nightlly not found in namespace shop; did you mean nightly?"), "{stderr}");

    // Every install the docs name (each overlay, alone and with each component), rendered, is accepted by the real
    // API server, applied from a context whose namespace is default, and every namespaced object lands in kubechat's.
    // The custom resources, whose CRDs this server lacks, are checked against their projects' schemas instead.
    let renders = tempfile::tempdir().unwrap();
    for (i, (install, objects)) in crate::delivery::rendered().into_iter().enumerate() {
        let (custom, core) = crate::delivery::custom_and_core(objects);
        assert_eq!(crate::delivery::custom_resource_problems(&custom), Vec::<String>::new(), "{install}");
        let core = served_here(core);
        let file = renders.path().join(format!("{i}.yaml"));
        std::fs::write(&file, json!({"apiVersion": "v1", "kind": "List", "items": core}).to_string()).unwrap();
        let out = cluster.kubectl(
            &cluster.admin_kubeconfig,
            &["apply", "--dry-run=server", "-o", "json", "-f", file.to_str().unwrap()],
        );
        assert!(out.status.success(), "server dry-run of {install}: {}", String::from_utf8_lossy(&out.stderr));
        let applied: Value = serde_json::from_slice(&out.stdout).unwrap();
        let items = applied["items"].as_array().cloned().unwrap_or_else(|| vec![applied.clone()]);
        assert_eq!(items.len(), core.len(), "{install}");
        for item in items {
            let (kind, name) = (item["kind"].as_str().unwrap(), item["metadata"]["name"].as_str().unwrap());
            let namespace = item["metadata"]["namespace"].as_str();
            if !crate::delivery::CLUSTER_SCOPED.contains(&kind) {
                assert_eq!(namespace, Some("kubechat"), "{install}: the server put {kind} {name} in {namespace:?}");
            }
        }
    }

    // Without pods/log the diagnosis still completes and names the missing rule.
    let roles: Api<ClusterRole> = Api::all(cluster.admin().await);
    let mut role = roles.get("kubechat-reader").await.unwrap();
    role.rules.as_mut().unwrap().retain(|r| !r.resources.iter().flatten().any(|res| res == "pods/log"));
    role.metadata.managed_fields = None;
    roles.replace("kubechat-reader", &PostParams::default(), &role).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let gaps = loop {
        let (diagnosis, _) =
            kubechat(&["diagnose", "--kubeconfig", &bot_kubeconfig, "-n", "shop", "--no-llm", "--output", "json"]);
        if let Some(gaps) = diagnosis.get("gaps") {
            assert!(findings(&diagnosis).contains(&("OOMKilled".into(), "Pod".into(), shop.crashing.clone())));
            break gaps.clone();
        }
        assert!(Instant::now() < deadline, "the role change did not take effect within 20 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let gap = gaps[0].as_str().unwrap();
    assert!(gap.starts_with("cannot get pods/log in namespace shop: the API server refused it (403 Forbidden: forbidden: User \"system:serviceaccount:kubechat:kubechat\""), "{gap}");
    assert!(gap.contains(r#"{apiGroups: [""], resources: ["pods/log"], verbs: ["get"]}"#), "{gap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_workloads_are_diagnosed_live_and_from_a_dump_alike() {
    let cluster = Cluster::start().await;
    apply_manifests(&cluster, &[]);
    let shop = build_shop(&cluster).await;
    let bot_kubeconfig = cluster.bot_kubeconfig.to_str().unwrap().to_string();

    // A budget no pod can satisfy and an autoscaler without a metrics API, at the versions 1.20 serves
    // (policy/v1beta1, autoscaling/v2beta2): the controllers fill in their status.
    let admin = cluster.admin().await;
    let at = |group: &str, version: &str, kind: &str, plural: &str| kube::discovery::ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    };
    let pdb = at("policy", "v1beta1", "PodDisruptionBudget", "poddisruptionbudgets");
    let hpa = at("autoscaling", "v2beta2", "HorizontalPodAutoscaler", "horizontalpodautoscalers");
    let create = |resource: &kube::discovery::ApiResource, object: Value| {
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(admin.clone(), "shop", resource);
        async move { api.create(&PostParams::default(), &serde_json::from_value(object).unwrap()).await.unwrap() }
    };
    create(
        &pdb,
        json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "api"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "api"}}}}),
    )
    .await;
    create(&hpa, json!({"apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "api"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}, "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}}))
    .await;
    // A default-deny policy with no allow, a LimitRange and an Ingress asking for a class the cluster lacks, at the
    // versions 1.20 serves (networking.k8s.io/v1): the role reads them, IngressClasses cluster-wide.
    let v1 = |group: &str, kind: &str, plural: &str| at(group, "v1", kind, plural);
    create(
        &v1("networking.k8s.io", "NetworkPolicy", "networkpolicies"),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "default-deny"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
    )
    .await;
    let limit_ranges: Api<k8s_openapi::api::core::v1::LimitRange> = Api::namespaced(admin.clone(), "shop");
    let limits = json!({"metadata": {"name": "container-limits"}, "spec": {"limits": [{"type": "Container", "max": {"memory": "4Gi"}}]}});
    limit_ranges.create(&PostParams::default(), &serde_json::from_value(limits).unwrap()).await.unwrap();
    let classes: Api<k8s_openapi::api::networking::v1::IngressClass> = Api::all(admin.clone());
    let class = json!({"metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "k8s.io/ingress-nginx"}});
    classes.create(&PostParams::default(), &serde_json::from_value(class).unwrap()).await.unwrap();
    create(
        &v1("networking.k8s.io", "Ingress", "ingresses"),
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "api"},
        "spec": {"ingressClassName": "ngnix", "rules": [{"host": "api.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]}}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let live = loop {
        let (live, _) =
            kubechat(&["diagnose", "--kubeconfig", &bot_kubeconfig, "-n", "shop", "--no-llm", "--output", "json"]);
        let reasons: Vec<String> = findings(&live).into_iter().map(|(reason, _, _)| reason).collect();
        if ["HPAScalingInactive", "PDBBlocking"].iter().all(|r| reasons.iter().any(|found| found == r)) {
            break live;
        }
        assert!(Instant::now() < deadline, "the controllers did not fill in the HPA's and PDB's status: {reasons:?}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let found = findings(&live);
    for expected in [
        ("OOMKilled".to_string(), "Pod".to_string(), shop.crashing.clone()),
        ("ImagePullBackOff".to_string(), "Pod".to_string(), shop.pulling.clone()),
        ("Unschedulable".to_string(), "Pod".to_string(), shop.pending.clone()),
        ("ServiceNoEndpoints".to_string(), "Service".to_string(), "api".to_string()),
        ("HPAScalingInactive".to_string(), "HorizontalPodAutoscaler".to_string(), "api".to_string()),
        ("PDBBlocking".to_string(), "PodDisruptionBudget".to_string(), "api".to_string()),
        ("NetworkPolicyDeniesInbound".to_string(), "NetworkPolicy".to_string(), "default-deny".to_string()),
        ("NetworkPolicyDeniesEgress".to_string(), "NetworkPolicy".to_string(), "default-deny".to_string()),
        ("IngressClassMissing".to_string(), "Ingress".to_string(), "api".to_string()),
    ] {
        assert!(found.contains(&expected), "{expected:?} missing from {found:?}");
    }
    assert_eq!(found.len(), 9, "{found:?}");
    assert!(live.get("gaps").is_none(), "the shipped role reads every kind: {}", live["gaps"]);
    assert_eq!(found[0].0, "OOMKilled", "the root cause first: {found:?}");
    let oom = live["findings"][0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(oom.contains("lastState.terminated: reason=OOMKilled exitCode=137"), "{oom}");
    assert!(oom.contains("resources.limits.memory: 256Mi"), "{oom}");
    assert!(
        oom.contains("log app --previous: Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space"),
        "logs come through the API server's proxy: {oom}"
    );
    let service = live["findings"].as_array().unwrap().iter().find(|f| f["reason"] == "ServiceNoEndpoints").unwrap();
    assert_eq!(service["caused_by"]["reason"], "OOMKilled");
    let context = live["context"].as_str().unwrap();
    assert!(context.contains("0/1 nodes are available: 1 Insufficient memory."), "{context}");
    assert!(context.contains("rpc error: code = NotFound"), "{context}");

    // The same state, dumped with kubectl as the bot and replayed, gives the same findings.
    let dump = tempfile::tempdir().unwrap();
    let take = Command::new(format!("{ROOT}/scripts/take-dump"))
        .arg(dump.path())
        .arg("shop")
        .env(
            "KUBECTL",
            format!("kubectl --kubeconfig {bot_kubeconfig} --cache-dir {}", dump.path().join(".cache").display()),
        )
        .output()
        .unwrap();
    assert!(take.status.success(), "take-dump: {}", String::from_utf8_lossy(&take.stderr));
    // What kubectl wrote is read by kubechat's block-style reader, as the general YAML parser reads it.
    for entry in std::fs::read_dir(dump.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let left = kubechat::yaml::readings_agree(&std::fs::read_to_string(&path).unwrap());
            assert!(left.is_empty(), "{}: left to the general parser: {left:?}", path.display());
        }
    }
    let previous = dump.path().join(format!("logs/shop/{}/app.previous.log", shop.crashing));
    assert_eq!(std::fs::read_to_string(&previous).unwrap(), OOM_LOG);
    let (replayed, _) =
        kubechat(&["diagnose", "--dump", dump.path().to_str().unwrap(), "-n", "shop", "--no-llm", "--output", "json"]);
    assert_eq!(replayed["findings"], live["findings"], "live and replayed findings differ");
}

/// A client with a kubeconfig's credentials, as kubectl would use them.
async fn client_of(kubeconfig: &std::path::Path) -> kube::Client {
    kubechat::install_tls_provider();
    let file = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await.unwrap();
    kube::Client::try_from(config).unwrap()
}
