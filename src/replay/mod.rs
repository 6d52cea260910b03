//! The replay API server: a read-only Kubernetes API over a [`Dump`].
//!
//! It answers the real REST paths with the real JSON shapes (discovery, lists with selectors and pagination, gets,
//! `pods/log`, `Status` errors, `Table`s for `kubectl get`), so kube-rs and `kubectl` cannot tell it from a cluster.
//! Every write verb gets 405. `--forbid` makes chosen resources answer 403, the way a missing RBAC rule does.

mod selector;
pub mod table;

use std::collections::HashMap;
use std::io::SeekFrom;
use std::net::SocketAddr;
use std::ops::Bound;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::dump::{self, Dump, LogKey, LogSource, Stored};
use crate::resources::{self, Resource};
pub use selector::{FieldSelector, LabelSelector};
use table::IncludeObject;
use tokio_util::io::ReaderStream;

/// The Kubernetes version the replay server reports.
const VERSION: (&str, &str) = ("1", "33");
/// One resourceVersion for the whole dump: it never changes.
const RESOURCE_VERSION: &str = "1";
/// The user named in 403 messages; the replay server has no authentication.
const USER: &str = "system:serviceaccount:kubechat:kubechat";

/// A resource the server answers 403 for: `RESOURCE[/SUBRESOURCE][@NAMESPACE]`, e.g. `pods/log` or `events@payments`.
#[derive(Debug, Clone, PartialEq)]
pub struct Forbid {
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
}

impl FromStr for Forbid {
    type Err = String;

    fn from_str(text: &str) -> Result<Forbid, String> {
        let (path, namespace) = match text.split_once('@') {
            Some((path, ns)) => (path, Some(ns.to_string())),
            None => (text, None),
        };
        let (resource, subresource) = match path.split_once('/') {
            Some((r, s)) => (r, Some(s.to_string())),
            None => (path, None),
        };
        let known = resources::ALL.iter().any(|r| r.plural == resource)
            && subresource
                .as_deref()
                .is_none_or(|s| resources::ALL.iter().any(|r| r.plural == resource && r.subresources.contains(&s)));
        if !known {
            let served: Vec<_> = resources::ALL.iter().map(|r| r.plural).collect();
            return Err(format!(
                "cannot forbid {text:?}: expected RESOURCE[/SUBRESOURCE][@NAMESPACE] with one of {}",
                served.join(", ")
            ));
        }
        Ok(Forbid { resource: resource.to_string(), subresource, namespace })
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub forbid: Vec<Forbid>,
}

struct Shared {
    dump: Arc<Dump>,
    options: Options,
}

/// A running replay server; dropping it stops the server.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs until the server fails; for the `replay` command.
    pub async fn wait(mut self) -> std::io::Result<()> {
        (&mut self.task).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `listen` and serves `dump` until the returned [`Server`] is stopped or dropped.
pub async fn start(dump: Arc<Dump>, options: Options, listen: SocketAddr) -> std::io::Result<Server> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(dump, options);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    Ok(Server { addr, shutdown: Some(tx), task })
}

pub fn router(dump: Arc<Dump>, options: Options) -> Router {
    Router::new().fallback(handle).with_state(Arc::new(Shared { dump, options }))
}

/// A kubeconfig that points kubectl (or kube-rs) at a replay server.
pub fn kubeconfig(url: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubechat-replay
  cluster:
    server: {url}
contexts:
- name: kubechat-replay
  context:
    cluster: kubechat-replay
    namespace: {namespace}
    user: kubechat-replay
current-context: kubechat-replay
users:
- name: kubechat-replay
  user: {{}}
"
    )
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = uri.path().trim_end_matches('/');
    tracing::debug!(%method, %uri, "replay request");
    if method != Method::GET && method != Method::HEAD {
        let mut response = status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("the replay API server is read-only: {method} {path} is not allowed"),
            json!({}),
        );
        response.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let request = Request { shared: &shared, query: &query, headers: &headers };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["version"] => json_response(StatusCode::OK, &version()),
        ["api"] => json_response(
            StatusCode::OK,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("")}
            ]}),
        ),
        ["apis"] => {
            let groups: Vec<Value> = resources::GROUPS.iter().map(|g| group_document(g)).collect();
            json_response(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", group] if resources::GROUPS.contains(group) => {
            let mut document = group_document(group);
            document["kind"] = json!("APIGroup");
            document["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &document)
        }
        ["api", "v1", rest @ ..] => request.resource_path("", "v1", rest).await,
        ["apis", group, version, rest @ ..] => request.resource_path(group, version, rest).await,
        _ => not_found_path(),
    }
}

fn version() -> Value {
    json!({
        "major": VERSION.0,
        "minor": VERSION.1,
        "gitVersion": format!("v{}.{}.0-kubechat-replay", VERSION.0, VERSION.1),
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "n/a",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn group_document(group: &str) -> Value {
    let served = resources::group_version(group).unwrap_or("v1");
    let version = json!({"groupVersion": format!("{group}/{served}"), "version": served});
    json!({"name": group, "versions": [version], "preferredVersion": version})
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut entries = Vec::new();
    for r in resources::ALL.iter().filter(|r| r.group == group && r.version == version) {
        entries.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
            "verbs": ["get", "list"], "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            entries.push(json!({
                "name": format!("{}/{sub}", r.plural), "singularName": "", "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get"],
            }));
        }
    }
    if entries.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries}))
}

struct Request<'a> {
    shared: &'a Shared,
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
}

impl Request<'_> {
    fn flag(&self, name: &str) -> bool {
        flag(self.query, name)
    }

    async fn resource_path(&self, group: &str, version: &str, rest: &[&str]) -> Response {
        let (namespace, rest) = match rest {
            ["namespaces", ns, resource, tail @ ..] => (Some(*ns), [&[*resource][..], tail].concat()),
            other => (None, other.to_vec()),
        };
        let Some((plural, tail)) = rest.split_first() else {
            return match resource_list(group, version) {
                Some(list) => json_response(StatusCode::OK, &list),
                None => not_found_path(),
            };
        };
        let Some(resource) = resources::by_path(group, version, plural) else { return not_found_path() };
        if namespace.is_some() && !resource.namespaced {
            return not_found_path();
        }
        if self.flag("watch") {
            let message = "watch is not supported: the replay API server serves a dump, which never changes";
            return status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", message, json!({}));
        }
        match tail {
            [] => self.list(resource, namespace),
            [name] => self.get(resource, namespace, name),
            [name, "log"] if resource == &resources::PODS && namespace.is_some() => {
                self.log(namespace.unwrap_or_default(), name).await
            }
            _ => not_found_path(),
        }
    }

    fn forbidden(
        &self,
        verb: &str,
        resource: &Resource,
        subresource: Option<&str>,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Option<Response> {
        let rule = self.shared.options.forbid.iter().find(|f| {
            f.resource == resource.plural
                && f.subresource.as_deref() == subresource
                && f.namespace.as_deref().is_none_or(|ns| Some(ns) == namespace)
        })?;
        let full = match &rule.subresource {
            Some(sub) => format!("{}/{sub}", resource.plural),
            None => resource.plural.to_string(),
        };
        let subject = match name {
            Some(name) => format!("{} {name:?}", resource.plural),
            None => resource.plural.to_string(),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".to_string(),
        };
        let message = format!(
            "{subject} is forbidden: User {USER:?} cannot {verb} resource {full:?} in API group {:?} {scope}",
            resource.group
        );
        let details = json!({"name": name.unwrap_or_default(), "group": resource.group, "kind": resource.plural});
        Some(status(StatusCode::FORBIDDEN, "Forbidden", &message, details))
    }

    fn list(&self, resource: &Resource, namespace: Option<&str>) -> Response {
        if let Some(denied) = self.forbidden("list", resource, None, namespace, None) {
            return denied;
        }
        let labels = match LabelSelector::parse(self.query.get("labelSelector").map_or("", String::as_str)) {
            Ok(s) => s,
            Err(message) => return bad_request(&message),
        };
        let fields =
            match FieldSelector::parse(self.query.get("fieldSelector").map_or("", String::as_str), resource.plural) {
                Ok(s) => s,
                Err(message) => return bad_request(&message),
            };
        let limit = match self.query.get("limit").map(|l| l.parse::<usize>()) {
            None | Some(Ok(0)) => usize::MAX,
            Some(Ok(n)) => n,
            Some(Err(_)) => return bad_request("limit must be a non-negative integer"),
        };
        let (start, seen) = match self.query.get("continue").filter(|c| !c.is_empty()) {
            None => (None, 0),
            Some(token) => match decode_continue(token) {
                Some((key, seen)) => (Some(key), seen),
                None => return bad_request("continue key is not valid: it was not issued by this server"),
            },
        };
        let empty = Default::default();
        let objects = self.shared.dump.objects(resource).unwrap_or(&empty);
        let lower = match (&start, namespace) {
            (Some(key), _) => Bound::Excluded(key.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        // Only a selector looks inside the objects.
        let everything = labels.is_empty() && fields.is_empty();
        let mut matching = objects
            .range((lower, Bound::Unbounded))
            .take_while(|((ns, _), _)| namespace.is_none_or(|wanted| ns == wanted))
            .filter(|(_, o)| {
                everything || {
                    let object = dump::value(o);
                    labels.matches(&object) && fields.matches(&object)
                }
            });
        let page: Vec<(&(String, String), &Stored)> = matching.by_ref().take(limit).collect();
        let mut metadata = json!({"resourceVersion": RESOURCE_VERSION});
        // Whether more remain, and how many when nothing is filtered (as the API server says), without walking
        // them: each page counting the rest made reading a large list quadratic.
        let seen = seen + page.len();
        let more = limit != usize::MAX && matching.next().is_some();
        if more {
            let last = page.last().map(|(k, _)| (*k).clone()).unwrap_or_default();
            metadata["continue"] = json!(encode_continue(&last, seen));
            if everything {
                let remaining = self.shared.dump.count(resource, namespace).saturating_sub(seen);
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        let items: Vec<&RawValue> = page.into_iter().map(|(_, o)| &**o).collect();
        if let Some(include) = self.wants_table() {
            return match include {
                Ok(include) => {
                    let objects: Vec<Value> = items.iter().map(|o| dump::value(o)).collect();
                    let objects: Vec<&Value> = objects.iter().collect();
                    let table = table::render(resource, &objects, metadata, include, Timestamp::now());
                    json_response(StatusCode::OK, &table)
                }
                Err(message) => bad_request(&message),
            };
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct List<'a> {
            kind: String,
            api_version: String,
            metadata: Value,
            items: Vec<&'a RawValue>,
        }
        json_response(
            StatusCode::OK,
            &List { kind: resource.list_kind(), api_version: resource.api_version(), metadata, items },
        )
    }

    fn get(&self, resource: &Resource, namespace: Option<&str>, name: &str) -> Response {
        if let Some(denied) = self.forbidden("get", resource, None, namespace, Some(name)) {
            return denied;
        }
        let Some(object) = self.lookup(resource, namespace, name) else { return not_found(resource, name) };
        if let Some(include) = self.wants_table() {
            return match include {
                Ok(include) => {
                    let metadata = json!({"resourceVersion": RESOURCE_VERSION});
                    let object = dump::value(object);
                    json_response(
                        StatusCode::OK,
                        &table::render(resource, &[&object], metadata, include, Timestamp::now()),
                    )
                }
                Err(message) => bad_request(&message),
            };
        }
        json_response(StatusCode::OK, object)
    }

    fn lookup(&self, resource: &Resource, namespace: Option<&str>, name: &str) -> Option<&RawValue> {
        let key = (namespace.unwrap_or_default().to_string(), name.to_string());
        self.shared.dump.objects(resource).and_then(|objects| objects.get(&key)).map(|o| &**o)
    }

    async fn log(&self, namespace: &str, name: &str) -> Response {
        let pods = &resources::PODS;
        if let Some(denied) = self.forbidden("get", pods, Some("log"), Some(namespace), Some(name)) {
            return denied;
        }
        let Some(pod) = self.lookup(pods, Some(namespace), name).map(dump::value) else {
            return not_found(pods, name);
        };
        let names = |field: &str| -> Vec<&str> {
            pod["spec"][field]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect()
        };
        let (containers, init) = (names("containers"), names("initContainers"));
        let container = match self.query.get("container").filter(|c| !c.is_empty()) {
            Some(c)
                if containers.contains(&c.as_str())
                    || init.contains(&c.as_str())
                    || names("ephemeralContainers").contains(&c.as_str()) =>
            {
                c.clone()
            }
            Some(c) => return bad_request(&format!("container {c} is not valid for pod {name}")),
            None if containers.len() == 1 => containers[0].to_string(),
            None => {
                let mut message = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    containers.join(" ")
                );
                if !init.is_empty() {
                    message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
                }
                return bad_request(&message);
            }
        };
        let previous = self.flag("previous");
        let LogOptions { tail_lines, limit_bytes, warnings } = match LogOptions::parse(self.query, name) {
            Ok(options) => options,
            Err(response) => return *response,
        };
        let headers = log_headers(&warnings);
        let key =
            LogKey { namespace: namespace.to_string(), pod: name.to_string(), container: container.clone(), previous };
        let text = match self.shared.dump.log(&key) {
            Some(LogSource::Text(text)) => text.as_bytes().to_vec(),
            Some(LogSource::File(path)) => match file_log(path, tail_lines, limit_bytes).await {
                Ok(body) => return (headers, body).into_response(),
                Err(e) => {
                    let message = format!("cannot read the log of container {container:?} in pod {name:?}: {e}");
                    return status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &message, json!({}));
                }
            },
            None if previous => {
                let message = format!("previous terminated container {container:?} in pod {name:?} not found");
                return bad_request(&message);
            }
            None => {
                let waiting = container_status(&pod, &container).and_then(|s| s["state"]["waiting"]["reason"].as_str());
                let message = match waiting {
                    Some(reason) => format!("container {container:?} in pod {name:?} is waiting to start: {reason}"),
                    None => format!(
                        "the dump holds no log for container {container:?} in pod {name:?} (expected logs/{namespace}/{name}/{container}.log)"
                    ),
                };
                let code = if waiting.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::NOT_FOUND };
                let reason = if waiting.is_some() { "BadRequest" } else { "NotFound" };
                return status(code, reason, &message, json!({"name": name, "kind": "pods"}));
            }
        };
        let body = select_log(&text, tail_lines, limit_bytes);
        (headers, body).into_response()
    }

    /// Whether the client asked for a Table (`kubectl get` does), and how much object to include.
    fn wants_table(&self) -> Option<Result<IncludeObject, String>> {
        let accept = self.headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or_default();
        let first = accept.split(',').next().unwrap_or_default();
        first.contains("as=Table").then(|| IncludeObject::parse(self.query.get("includeObject").map(String::as_str)))
    }
}

fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .flat_map(|f| pod["status"][f].as_array().map(Vec::as_slice).unwrap_or_default())
        .find(|s| s["name"] == container)
}

/// A log file's selected part, streamed: a log of any size costs one buffer, since only its tail is searched for
/// `tailLines` and only what is sent is read. The same selection as [`select_log`].
async fn file_log(path: &Path, tail_lines: Option<usize>, limit_bytes: Option<usize>) -> std::io::Result<Body> {
    let mut file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let start = match tail_lines {
        Some(n) => tail_start(&mut file, len, n).await?,
        None => 0,
    };
    file.seek(SeekFrom::Start(start)).await?;
    let length = limit_bytes.map_or(len - start, |l| (l as u64).min(len - start));
    Ok(Body::from_stream(ReaderStream::new(file.take(length))))
}

/// How far back from a log's end its tail is looked for. The kubelet rotates container logs at 10 MiB, so a real
/// tail is always within it; a larger log file's tail starts at the first whole line of its last 64 MiB.
const MAX_TAIL_SCAN: u64 = 64 << 20;

/// Where the last `n` lines of a file start, reading backwards a block at a time, at most [`MAX_TAIL_SCAN`] bytes.
async fn tail_start(file: &mut tokio::fs::File, len: u64, n: usize) -> std::io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    if n == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut last = [0u8];
    if len > 0 {
        file.seek(SeekFrom::Start(len - 1)).await?;
        file.read_exact(&mut last).await?;
        // The final newline ends the last line; it does not start another.
        if last[0] == b'\n' {
            end -= 1;
        }
    }
    let floor = len.saturating_sub(MAX_TAIL_SCAN);
    let mut block = vec![0u8; BLOCK as usize];
    let mut seen = 0;
    let mut earliest = None;
    while end > floor {
        let from = end.saturating_sub(BLOCK).max(floor);
        let chunk = &mut block[..(end - from) as usize];
        file.seek(SeekFrom::Start(from)).await?;
        file.read_exact(chunk).await?;
        for (i, byte) in chunk.iter().enumerate().rev() {
            if *byte == b'\n' {
                seen += 1;
                if seen == n {
                    return Ok(from + i as u64 + 1);
                }
                earliest = Some(from + i as u64 + 1);
            }
        }
        end = from;
    }
    Ok(if floor == 0 { 0 } else { earliest.unwrap_or(floor) })
}

/// Applies `tailLines`, then `limitBytes`, as the kubelet does.
pub fn select_log(text: &[u8], tail_lines: Option<usize>, limit_bytes: Option<usize>) -> Vec<u8> {
    let mut start = 0;
    if let Some(n) = tail_lines {
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        start = if n == 0 {
            text.len()
        } else {
            body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').nth(n - 1).map_or(0, |(i, _)| i + 1)
        };
    }
    let selected = &text[start..];
    let end = limit_bytes.map_or(selected.len(), |l| l.min(selected.len()));
    selected[..end].to_vec()
}

/// A continue token: the key the next page starts after, and how many objects the pages so far held (the dump
/// never changes, so that is how many precede the key).
fn encode_continue(key: &(String, String), seen: usize) -> String {
    let token = json!({"v": "kubechat/replay", "rv": RESOURCE_VERSION, "start": [key.0, key.1], "seen": seen});
    URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str) -> Option<((String, String), usize)> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let start = value["start"].as_array()?;
    let key = (start.first()?.as_str()?.to_string(), start.get(1)?.as_str()?.to_string());
    Some((key, usize::try_from(value["seen"].as_u64()?).ok()?))
}

fn json_response<T: Serialize + ?Sized>(code: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], Body::from(bytes)).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A `meta/v1 Status` failure, the body every Kubernetes API error has.
fn status(code: StatusCode, reason: &str, message: &str, details: Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code.as_u16(),
    });
    json_response(code, &body)
}

/// A boolean query parameter as the API server reads it: absent, `0` and `false` (any case) are false, any other
/// value is true (`True`, as the official Python client sends it, and an empty one alike).
fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query.get(name).is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// A log request's options, read and validated as the API server reads and validates `PodLogOptions`.
struct LogOptions {
    tail_lines: Option<usize>,
    limit_bytes: Option<usize>,
    /// What the dump cannot honour, said in `Warning` headers (kubectl prints them) rather than silently ignored.
    warnings: Vec<String>,
}

impl LogOptions {
    fn parse(query: &HashMap<String, String>, pod: &str) -> Result<LogOptions, Box<Response>> {
        let integer = |name: &str| match query.get(name).map(|v| (v, v.parse::<i64>())) {
            None => Ok(None),
            Some((_, Ok(n))) => Ok(Some(n)),
            Some((v, Err(e))) => Err(Box::new(bad_request(&format!("{name}: invalid value {v:?}: {e}")))),
        };
        let (tail_lines, limit_bytes, since_seconds) =
            (integer("tailLines")?, integer("limitBytes")?, integer("sinceSeconds")?);
        let since_time = query.get("sinceTime").filter(|t| !t.is_empty());
        if let Some(t) = since_time
            && t.parse::<Timestamp>().is_err()
        {
            return Err(Box::new(bad_request(&format!("sinceTime: invalid value {t:?}: not an RFC 3339 time"))));
        }
        let mut problems = Vec::new();
        if let Some(n) = tail_lines.filter(|n| *n < 0) {
            problems.push(format!("tailLines: Invalid value: {n}: must be greater than or equal to 0"));
        }
        if let Some(n) = limit_bytes.filter(|n| *n < 1) {
            problems.push(format!("limitBytes: Invalid value: {n}: must be greater than 0"));
        }
        match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                problems.push("[]: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into())
            }
            (Some(n), None) if n < 1 => {
                problems.push(format!("sinceSeconds: Invalid value: {n}: must be greater than 0"))
            }
            _ => {}
        }
        if !problems.is_empty() {
            let message = format!("PodLogOptions {pod:?} is invalid: {}", problems.join(", "));
            let causes: Vec<Value> = problems.iter().map(|p| json!({"message": p})).collect();
            let details = json!({"name": pod, "kind": "PodLogOptions", "causes": causes});
            return Err(Box::new(status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &message, details)));
        }
        let mut warnings = Vec::new();
        if since_seconds.is_some() || since_time.is_some() {
            warnings.push(
                "this is a dump: its logs carry no times, so all of the log is sent, not only since the time asked"
                    .into(),
            );
        }
        if flag(query, "timestamps") {
            warnings.push("this is a dump: its logs carry no times, so lines are sent without timestamps".into());
        }
        // `follow` needs no word: a dump's containers write no more, and the log ends as a stopped container's does.
        Ok(LogOptions {
            tail_lines: tail_lines.map(|n| n as usize),
            limit_bytes: limit_bytes.map(|n| n as usize),
            warnings,
        })
    }
}

/// A log response's headers: plain text, and a `Warning` (code 299, as the API server sends them) for each warning.
fn log_headers(warnings: &[String]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(&format!("299 - {warning:?}")) {
            headers.append(header::WARNING, value);
        }
    }
    headers
}

fn bad_request(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}))
}

fn not_found(resource: &Resource, name: &str) -> Response {
    let message = format!("{} {name:?} not found", resource.plural);
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &message,
        json!({"name": name, "group": resource.group, "kind": resource.plural}),
    )
}

fn not_found_path() -> Response {
    status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource", json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_then_limit_like_the_kubelet() {
        let log = b"one\ntwo\nthree\n";
        assert_eq!(select_log(log, Some(2), None), b"two\nthree\n");
        assert_eq!(select_log(log, Some(10), None), log);
        assert_eq!(select_log(log, Some(0), None), b"");
        assert_eq!(select_log(log, Some(2), Some(5)), b"two\nt");
        assert_eq!(select_log(b"no newline", Some(1), None), b"no newline");
        assert_eq!(select_log(b"a\nb", Some(1), None), b"b");
    }

    #[tokio::test]
    async fn log_files_are_selected_like_logs_in_memory() {
        let long: String = (0..20_000).map(|i| format!("line {i} {}\n", "x".repeat(i % 13))).collect();
        let texts = ["", "\n", "one\ntwo\nthree\n", "a\nb", "\n\n\n", long.as_str(), long.trim_end()];
        let dir = tempfile::tempdir().unwrap();
        for (i, text) in texts.iter().enumerate() {
            let path = dir.path().join(format!("{i}.log"));
            std::fs::write(&path, text).unwrap();
            for tail in
                [None, Some(0), Some(1), Some(2), Some(3), Some(4_000), Some(19_999), Some(20_000), Some(50_000)]
            {
                for limit in [None, Some(1), Some(5), Some(70_000)] {
                    let body = file_log(&path, tail, limit).await.unwrap();
                    let served = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                    let expected = select_log(text.as_bytes(), tail, limit);
                    assert!(served == expected, "text {i}, tail {tail:?}, limit {limit:?}");
                }
            }
        }
    }

    #[test]
    fn continue_tokens_round_trip() {
        let key = ("shop".to_string(), "web-1".to_string());
        assert_eq!(decode_continue(&encode_continue(&key, 1500)), Some((key, 1500)));
        assert_eq!(decode_continue("not-a-token"), None);
    }

    #[test]
    fn forbid_rules_parse_and_check_resources() {
        let rule: Forbid = "pods/log@payments".parse().unwrap();
        assert_eq!(
            rule,
            Forbid { resource: "pods".into(), subresource: Some("log".into()), namespace: Some("payments".into()) }
        );
        assert!("secrets".parse::<Forbid>().is_err());
        assert!("pods/exec".parse::<Forbid>().is_err());
    }
}
