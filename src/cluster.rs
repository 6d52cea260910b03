//! The cluster reader: the one module that talks to the Kubernetes API.
//!
//! [`read`] gathers a namespace's state concurrently into [`Facts`], read-only (get and list, never watch, exec or
//! secrets). Large lists are paged, every call has a timeout, and every API error becomes a [`ReadError`] that says
//! what was refused and how to fix it. Reads that are not essential (logs, events, nodes, workloads) degrade into
//! [`Facts::gaps`](crate::facts::Facts::gaps) instead of failing the whole diagnosis. Facts leave the reader redacted
//! ([`crate::redact::pods`], [`crate::redact::events`], [`crate::redact::facts`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Endpoints, Event, LimitRange, Namespace, Node, PersistentVolumeClaim, Pod, ResourceQuota, Service,
};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, LogParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio_util::task::AbortOnDropHandle;

use crate::dump::{Dump, DumpError};
use crate::facts::{
    Cause, ContainerLog, Facts, Gap, NodeJudge, closest, is_problem_pod, label_selector_string, log_priority, narrow,
    node_needs, order_events,
};
use crate::replay::{self, Forbid};
use crate::request::Scope;

/// How much to read and how long to wait.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Items per list page (`limit`/`continue`).
    pub page_size: u32,
    /// Timeout for each API call, each page of a list included.
    pub call_timeout: Duration,
    /// At most this many problem pods have their logs read.
    pub log_pods: usize,
    pub tail_lines: i64,
    pub limit_bytes: i64,
    /// Log requests in flight at once.
    pub concurrency: usize,
    /// Pods that look healthy whose current logs are sampled for errors: one per owner, at most this many.
    pub healthy_log_pods: usize,
    /// Namespace reads at once, all questions together; more wait in line. It keeps a burst of questions from
    /// flooding the API server, and kubechat's own threads free for the acknowledgements Slack waits for.
    pub reads: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            page_size: 500,
            call_timeout: Duration::from_secs(10),
            log_pods: 10,
            tail_lines: 200,
            limit_bytes: 64 * 1024,
            concurrency: 8,
            healthy_log_pods: 5,
            reads: 2,
        }
    }
}

/// One API call, named for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub verb: &'static str,
    pub resource: String,
    pub group: &'static str,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ReadError {
    #[error(
        "cannot {call}: the API server refused it (403 Forbidden: {message}); grant it to kubechat's service account with this rule in the kubechat-reader ClusterRole (k8s/reader/rbac.yaml): {{apiGroups: [\"{group}\"], resources: [\"{resource}\"], verbs: [\"{verb}\"]}}",
        group = call.group, resource = call.resource, verb = call.verb
    )]
    Forbidden { call: Call, message: String },
    #[error("namespace {namespace} does not exist{}", closest_hint(.closest))]
    NamespaceNotFound { namespace: String, closest: Vec<String> },
    #[error("{kind} {name} not found in namespace {namespace}{}", closest_hint(.closest))]
    ObjectNotFound { kind: String, name: String, namespace: String, closest: Vec<String> },
    #[error("timed out after {}s waiting for the API server to {call}; the API server is overloaded or unreachable", after.as_secs_f32())]
    Timeout { call: Call, after: Duration },
    #[error("cannot {call}: the API server answered {code} {reason}: {message}")]
    Api { call: Call, code: u16, reason: String, message: String },
    #[error("cannot {call}: cannot reach the API server: {message}")]
    Unreachable { call: Call, message: String },
    #[error("unsupported object kind {0:?}: use {kinds}", kinds = crate::request::narrowable_kinds())]
    UnsupportedKind(String),
}

fn closest_hint(closest: &[String]) -> String {
    match closest {
        [] => String::new(),
        names => format!("; did you mean {}?", names.join(", ")),
    }
}

impl ReadError {
    fn from_kube(error: kube::Error, call: &Call) -> ReadError {
        match error {
            kube::Error::Api(status) if status.code == 403 => {
                ReadError::Forbidden { call: call.clone(), message: status.message.clone() }
            }
            kube::Error::Api(status) => ReadError::Api {
                call: call.clone(),
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
            },
            other => ReadError::Unreachable { call: call.clone(), message: crate::error_chain(&other) },
        }
    }

    /// The error as a gap in the facts: the diagnosis goes on without what it could not read.
    pub fn gap(&self) -> Gap {
        let cause = match self {
            ReadError::Forbidden { .. } => Cause::Forbidden,
            ReadError::Timeout { .. } => Cause::Timeout,
            ReadError::Unreachable { .. } => Cause::Unreachable,
            ReadError::Api { code, .. } => Cause::Status(*code),
            ReadError::NamespaceNotFound { .. } | ReadError::ObjectNotFound { .. } => Cause::Status(404),
            ReadError::UnsupportedKind(_) => Cause::Status(400),
        };
        Gap { cause, message: self.to_string() }
    }

    /// The resource of the call that failed.
    pub fn resource(&self) -> Option<&str> {
        match self {
            ReadError::Forbidden { call, .. }
            | ReadError::Timeout { call, .. }
            | ReadError::Api { call, .. }
            | ReadError::Unreachable { call, .. } => Some(&call.resource),
            _ => None,
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Api { code: 404, .. })
    }
}

fn call<K: Resource<DynamicType = ()>>(verb: &'static str, namespace: Option<&str>, name: Option<&str>) -> Call {
    let group = K::group(&());
    let group: &'static str = crate::resources::GROUPS.into_iter().find(|g| *g == group).unwrap_or("");
    Call {
        verb,
        resource: K::plural(&()).to_string(),
        group,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
    }
}

async fn timed<T>(
    limits: &Limits,
    call: &Call,
    future: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ReadError> {
    match tokio::time::timeout(limits.call_timeout, future).await {
        Ok(result) => result.map_err(|e| ReadError::from_kube(e, call)),
        Err(_) => Err(ReadError::Timeout { call: call.clone(), after: limits.call_timeout }),
    }
}

/// `segment` percent-encoded for a URL path: everything but RFC 3986's unreserved characters. Names are validated
/// where requests are built ([`crate::request`]), so this changes nothing today; it keeps a name from ever becoming
/// more path, or a query, if a check is missed.
pub fn segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The API of a namespaced resource in `namespace`, the namespace encoded as a path segment.
fn namespaced<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), &segment(namespace))
}

/// Lists every object, page by page.
async fn list_all<K>(api: Api<K>, params: ListParams, limits: &Limits, namespace: &str) -> Result<Vec<K>, ReadError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    list_kept(api, params, limits, namespace, |_| true, |_| {}).await
}

/// Lists pods, page by page, each made slim as its page arrives ([`slim_pod`]).
async fn list_pods(api: Api<Pod>, params: ListParams, limits: &Limits, namespace: &str) -> Result<Vec<Pod>, ReadError> {
    list_kept(api, params, limits, namespace, |_| true, slim_pod).await
}

/// What no analyzer reads, dropped as each page arrives: `managedFields` (often the largest part of an object) and
/// the last-applied copy of the object; and the spare room deserialising leaves in short lists given back.
fn slim_meta(meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = &mut meta.annotations {
        annotations.remove(crate::redact::LAST_APPLIED);
    }
    shrink(&mut meta.owner_references);
    shrink(&mut meta.finalizers);
}

/// A pod's short lists at their length: deserialised, a pod's one container status sat in room for four (two
/// kilobytes a pod, 60 MB of 30,000 pods), its conditions in room for eight.
fn slim_pod(pod: &mut Pod) {
    if let Some(spec) = &mut pod.spec {
        spec.containers.shrink_to_fit();
        shrink(&mut spec.init_containers);
        for container in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
            shrink(&mut container.env);
            shrink(&mut container.env_from);
            shrink(&mut container.ports);
            shrink(&mut container.volume_mounts);
            shrink(&mut container.args);
            shrink(&mut container.command);
        }
        shrink(&mut spec.volumes);
        shrink(&mut spec.tolerations);
    }
    if let Some(status) = &mut pod.status {
        shrink(&mut status.conditions);
        shrink(&mut status.container_statuses);
        shrink(&mut status.init_container_statuses);
        shrink(&mut status.pod_ips);
        shrink(&mut status.host_ips);
    }
}

fn shrink<T>(list: &mut Option<Vec<T>>) {
    if let Some(list) = list {
        list.shrink_to_fit();
    }
}

/// Lists page by page, keeping only the objects `keep` wants, so a large list is never held whole.
async fn list_kept<K>(
    api: Api<K>,
    params: ListParams,
    limits: &Limits,
    namespace: &str,
    mut keep: impl FnMut(&K) -> bool,
    slim: impl Fn(&mut K),
) -> Result<Vec<K>, ReadError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    let call = call::<K>("list", Some(namespace).filter(|ns| !ns.is_empty()), None);
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut page_params = params.clone().limit(limits.page_size);
        page_params.continue_token = token.take();
        let page = timed(limits, &call, api.list(&page_params)).await?;
        let first = page_params.continue_token.is_none();
        let listed = page.items.len();
        items.extend(page.items.into_iter().filter(|item| keep(item)).map(|mut item| {
            slim_meta(item.meta_mut());
            slim(&mut item);
            item
        }));
        // A list kept whole is sized once from the count the server gives, not doubled page after page (the peak of
        // a doubling is half again the list).
        if first && items.len() == listed {
            let remaining = page.metadata.remaining_item_count.and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            items.reserve_exact(remaining);
        }
        match page.metadata.continue_ {
            Some(next) if !next.is_empty() => token = Some(next),
            _ => return Ok(items),
        }
    }
}

/// What a task spawned by [`read`] returned; its panic, if it panicked, carried on here.
async fn joined<T>(task: AbortOnDropHandle<T>) -> T {
    match task.await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Reads everything kubechat needs about `scope`, concurrently.
pub async fn read(client: &Client, scope: &Scope, limits: &Limits) -> Result<Facts, ReadError> {
    let ns = scope.namespace();
    let all = ListParams::default();
    // The two lists that grow with the namespace are read, folded and redacted on tasks of their own, so that on a
    // runtime of several threads their pages are deserialised side by side rather than one after the other on the
    // read's thread. Each is aborted if the read is dropped (the asker's request timed out), as the joined lists are.
    let pods = AbortOnDropHandle::new(tokio::spawn({
        let (client, scope, limits) = (client.clone(), scope.clone(), limits.clone());
        async move {
            let mut pods = read_pods(&client, &scope, &limits).await?;
            crate::redact::pods(&mut pods);
            Ok(pods)
        }
    }));
    let events = AbortOnDropHandle::new(tokio::spawn({
        let (api, all, limits, ns) = (namespaced::<Event>(client, ns), all.clone(), limits.clone(), ns.to_string());
        async move {
            let mut events = order_events(list_all(api, all, &limits, &ns).await?);
            crate::redact::events(&mut events);
            Ok(events)
        }
    }));
    let (
        namespace,
        pods,
        events,
        deployments,
        replicasets,
        statefulsets,
        daemonsets,
        jobs,
        cronjobs,
        services,
        endpoints,
        pvcs,
        (quotas, hpas, ingresses, pdbs, limit_ranges, network_policies),
    ) = tokio::join!(
        check_namespace(client, ns, limits),
        joined(pods),
        joined(events),
        list_all(namespaced::<Deployment>(client, ns), all.clone(), limits, ns),
        list_all(namespaced::<ReplicaSet>(client, ns), all.clone(), limits, ns),
        list_all(namespaced::<StatefulSet>(client, ns), all.clone(), limits, ns),
        list_all(namespaced::<DaemonSet>(client, ns), all.clone(), limits, ns),
        list_all(namespaced::<Job>(client, ns), all.clone(), limits, ns),
        read_cronjobs(client, ns, limits),
        list_all(namespaced::<Service>(client, ns), all.clone(), limits, ns),
        list_all(namespaced::<Endpoints>(client, ns), all.clone(), limits, ns),
        list_all(namespaced::<PersistentVolumeClaim>(client, ns), all.clone(), limits, ns),
        async {
            tokio::join!(
                list_all(namespaced::<ResourceQuota>(client, ns), all.clone(), limits, ns),
                list_or_older::<HorizontalPodAutoscaler>(client, ns, limits, "v2beta2"),
                list_all(namespaced::<Ingress>(client, ns), all.clone(), limits, ns),
                list_or_older::<PodDisruptionBudget>(client, ns, limits, "v1beta1"),
                list_all(namespaced::<LimitRange>(client, ns), all.clone(), limits, ns),
                list_all(namespaced::<NetworkPolicy>(client, ns), all.clone(), limits, ns),
            )
        },
    );
    let mut gaps = Gaps::default();
    if let Err(gap) = namespace {
        match gap {
            ReadError::NamespaceNotFound { .. } => return Err(gap),
            other => gaps.messages.push(other.gap()),
        }
    }
    let pods = pods?;
    let mut facts = Facts {
        namespace: ns.to_string(),
        pods,
        events: gaps.keep(events),
        deployments: gaps.keep(deployments),
        replicasets: gaps.keep(replicasets),
        statefulsets: gaps.keep(statefulsets),
        daemonsets: gaps.keep(daemonsets),
        jobs: gaps.keep(jobs),
        cronjobs: gaps.keep(cronjobs),
        services: gaps.keep(services),
        endpoints: gaps.keep(endpoints),
        pvcs: gaps.keep(pvcs),
        quotas: gaps.keep(quotas),
        hpas: gaps.keep(hpas),
        ingresses: gaps.keep(ingresses),
        pdbs: gaps.keep(pdbs),
        limit_ranges: gaps.keep(limit_ranges),
        network_policies: gaps.keep(network_policies),
        ..Facts::default()
    };
    if scope.object().is_some() {
        narrow(&mut facts, scope);
    }
    let (logs, nodes, classes) = tokio::join!(
        read_logs(client, &facts, limits),
        read_nodes(client, &facts, limits),
        read_ingress_classes(client, &facts, limits)
    );
    facts.logs = logs.0;
    facts.ingress_classes = gaps.keep(classes);
    facts.gaps = gaps.messages;
    facts.unread = gaps.unread;
    facts.gaps.extend(logs.1);
    facts.nodes = nodes.0;
    facts.gaps.extend(nodes.1);
    // Nothing leaves the reader unredacted: the pods and events were cleaned on their tasks, the rest is here.
    crate::redact::facts(&mut facts);
    Ok(facts)
}

/// Reads that failed without failing the diagnosis.
#[derive(Default)]
struct Gaps {
    messages: Vec<Gap>,
    unread: BTreeSet<String>,
}

impl Gaps {
    fn keep<T>(&mut self, result: Result<Vec<T>, ReadError>) -> Vec<T> {
        result.unwrap_or_else(|error| {
            self.unread.extend(error.resource().map(str::to_string));
            self.messages.push(error.gap());
            Vec::new()
        })
    }
}

/// CronJobs from `batch/v1`, or from `batch/v1beta1` on servers older than Kubernetes 1.21, which serve only that.
async fn read_cronjobs(client: &Client, ns: &str, limits: &Limits) -> Result<Vec<CronJob>, ReadError> {
    list_or_older::<CronJob>(client, ns, limits, "v1beta1").await
}

/// Every `K` in `ns` at the version kubechat reads, or at `older` where the server lacks that version (a 404): HPAs
/// at `autoscaling/v2beta2` and PodDisruptionBudgets and CronJobs at `v1beta1` on servers before 1.23, 1.21, 1.21.
/// The older shape holds every field kubechat reads under the same names.
async fn list_or_older<K>(client: &Client, ns: &str, limits: &Limits, older: &str) -> Result<Vec<K>, ReadError>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + fmt::Debug,
{
    match list_all(namespaced::<K>(client, ns), ListParams::default(), limits, ns).await {
        Err(e) if e.is_not_found() => {
            let group = K::group(&()).to_string();
            let resource = kube::discovery::ApiResource {
                api_version: format!("{group}/{older}"),
                group,
                version: older.to_string(),
                kind: K::kind(&()).to_string(),
                plural: K::plural(&()).to_string(),
            };
            let api = Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &segment(ns), &resource);
            let call = call::<K>("list", Some(ns), None);
            let list = timed(limits, &call, api.list(&ListParams::default())).await?;
            list.items
                .into_iter()
                .map(|o| serde_json::to_value(o).and_then(serde_json::from_value))
                .collect::<Result<_, _>>()
                .map_err(|e| ReadError::Api { call, code: 200, reason: "Undecodable".into(), message: e.to_string() })
        }
        other => other,
    }
}

/// Fails with the closest existing names when the namespace does not exist; a list of pods in a missing namespace
/// is simply empty, so this is the only way to tell "no pods" from "wrong name".
async fn check_namespace(client: &Client, namespace: &str, limits: &Limits) -> Result<(), ReadError> {
    let api = Api::<Namespace>::all(client.clone());
    let get = call::<Namespace>("get", None, Some(namespace));
    match timed(limits, &get, api.get(&segment(namespace))).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => {
            let names = list_all(api.clone(), ListParams::default(), limits, "").await.unwrap_or_default();
            let names = names.into_iter().filter_map(|n| n.metadata.name);
            Err(ReadError::NamespaceNotFound { namespace: namespace.to_string(), closest: closest(namespace, names) })
        }
        Err(e) => Err(e),
    }
}

/// The namespace's pods, or only those of the scoped object.
async fn read_pods(client: &Client, scope: &Scope, limits: &Limits) -> Result<Vec<Pod>, ReadError> {
    let ns = scope.namespace();
    let pods = namespaced::<Pod>(client, ns);
    let Some(target) = scope.object() else {
        return list_pods(pods.clone(), ListParams::default(), limits, ns).await;
    };
    let name = target.name();
    let selector = match target.resource().plural {
        "pods" => {
            let params = ListParams::default().fields(&format!("metadata.name={name}"));
            let found = list_pods(pods.clone(), params, limits, ns).await?;
            if found.is_empty() {
                return Err(not_found(client, "pod", name, ns, limits).await);
            }
            return Ok(found);
        }
        "deployments" => {
            selector_of(&namespaced::<Deployment>(client, ns), ns, name, limits, |d| {
                d.spec.as_ref().map(|s| &s.selector)
            })
            .await
        }
        "statefulsets" => {
            selector_of(&namespaced::<StatefulSet>(client, ns), ns, name, limits, |s| {
                s.spec.as_ref().map(|s| &s.selector)
            })
            .await
        }
        "daemonsets" => {
            selector_of(&namespaced::<DaemonSet>(client, ns), ns, name, limits, |d| {
                d.spec.as_ref().map(|s| &s.selector)
            })
            .await
        }
        "jobs" => {
            selector_of(&namespaced::<Job>(client, ns), ns, name, limits, |j| {
                j.spec.as_ref().and_then(|s| s.selector.as_ref())
            })
            .await
        }
        "cronjobs" => return cronjob_pods(client, ns, name, limits).await,
        "services" => {
            let api = namespaced::<Service>(client, ns);
            let service = get_or_closest(&api, name, limits, ns).await?;
            let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
            Ok(selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        }
        _ => Err(ReadError::UnsupportedKind(target.singular().to_string())),
    }?;
    list_pods(pods.clone(), ListParams::default().labels(&selector), limits, ns).await
}

/// The pods of a CronJob's Jobs. A CronJob has no selector of its own: its Jobs name it as their controller, and
/// their pods name the Jobs. A CronJob with no Job running or kept has no pods, which is not an error.
async fn cronjob_pods(client: &Client, ns: &str, name: &str, limits: &Limits) -> Result<Vec<Pod>, ReadError> {
    let cronjobs = read_cronjobs(client, ns, limits).await?;
    if !cronjobs.iter().any(|c| c.metadata.name.as_deref() == Some(name)) {
        let names = cronjobs.into_iter().filter_map(|c| c.metadata.name);
        return Err(ReadError::ObjectNotFound {
            kind: "cronjob".to_string(),
            name: name.to_string(),
            namespace: ns.to_string(),
            closest: closest(name, names),
        });
    }
    let controller = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, kind: &str| {
        meta.owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true) && o.kind == kind)
            .map(|o| o.name.clone())
    };
    let jobs = list_all(namespaced::<Job>(client, ns), ListParams::default(), limits, ns).await?;
    let owned: BTreeSet<String> = jobs
        .into_iter()
        .filter(|j| controller(&j.metadata, "CronJob").as_deref() == Some(name))
        .filter_map(|j| j.metadata.name)
        .collect();
    if owned.is_empty() {
        return Ok(Vec::new());
    }
    let pods = list_pods(namespaced::<Pod>(client, ns), ListParams::default(), limits, ns).await?;
    Ok(pods.into_iter().filter(|p| controller(&p.metadata, "Job").is_some_and(|job| owned.contains(&job))).collect())
}

async fn selector_of<K>(
    api: &Api<K>,
    ns: &str,
    name: &str,
    limits: &Limits,
    selector: impl Fn(&K) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Result<String, ReadError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    let object = get_or_closest(api, name, limits, ns).await?;
    Ok(selector(&object).map(label_selector_string).unwrap_or_default())
}

async fn get_or_closest<K>(api: &Api<K>, name: &str, limits: &Limits, ns: &str) -> Result<K, ReadError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + fmt::Debug,
{
    let get = call::<K>("get", Some(ns), Some(name));
    match timed(limits, &get, api.get(&segment(name))).await {
        Err(e) if e.is_not_found() => {
            let names = list_all(api.clone(), ListParams::default(), limits, ns).await.unwrap_or_default();
            let names = names.into_iter().filter_map(|o| o.meta().name.clone());
            Err(ReadError::ObjectNotFound {
                kind: K::kind(&()).to_lowercase(),
                name: name.to_string(),
                namespace: ns.to_string(),
                closest: closest(name, names),
            })
        }
        other => other,
    }
}

async fn not_found(client: &Client, kind: &str, name: &str, ns: &str, limits: &Limits) -> ReadError {
    let names = list_all(namespaced::<Pod>(client, ns), ListParams::default(), limits, ns).await.unwrap_or_default();
    let names = names.into_iter().filter_map(|p| p.metadata.name);
    ReadError::ObjectNotFound {
        kind: kind.to_string(),
        name: name.to_string(),
        namespace: ns.to_string(),
        closest: closest(name, names),
    }
}

/// Current and previous logs of every container of the problem pods, up to `limits.log_pods` pods.
async fn read_logs(client: &Client, facts: &Facts, limits: &Limits) -> (Vec<ContainerLog>, Vec<Gap>) {
    let mut problem: Vec<&Pod> = facts.pods.iter().filter(|p| is_problem_pod(p)).collect();
    problem.sort_by_key(|p| (-log_priority(p), p.metadata.name.clone()));
    let mut requests = Vec::new();
    for pod in problem.into_iter().take(limits.log_pods) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let statuses = pod.status.as_ref();
        let all = statuses
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .chain(statuses.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten());
        for status in all {
            let state = status.state.as_ref();
            let started = state.is_some_and(|s| s.running.is_some() || s.terminated.is_some());
            if started {
                requests.push((name.clone(), status.name.clone(), false));
            }
            if status.restart_count > 0 || status.last_state.as_ref().is_some_and(|s| s.terminated.is_some()) {
                requests.push((name.clone(), status.name.clone(), true));
            }
        }
    }
    // A sample of the pods that look healthy, one per owner: errors in their logs are a problem too.
    let mut owners = BTreeSet::new();
    let healthy = facts.pods.iter().filter(|p| {
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let owner = p.metadata.owner_references.iter().flatten().next().map(|o| o.name.clone());
        running && !is_problem_pod(p) && p.metadata.deletion_timestamp.is_none() && owners.insert(owner)
    });
    for pod in healthy.take(limits.healthy_log_pods) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            requests.push((name.clone(), container.name.clone(), false));
        }
    }
    let api = namespaced::<Pod>(client, &facts.namespace);
    let results: Vec<(ContainerLog, Option<ReadError>)> = futures::stream::iter(requests)
        .map(|(pod, container, previous)| {
            let api = api.clone();
            async move {
                let params = LogParams {
                    container: Some(container.clone()),
                    previous,
                    tail_lines: Some(limits.tail_lines),
                    limit_bytes: Some(limits.limit_bytes),
                    ..LogParams::default()
                };
                let mut log_call = call::<Pod>("get", Some(&facts.namespace), Some(&pod));
                log_call.resource = "pods/log".to_string();
                let result = timed(limits, &log_call, api.logs(&segment(&pod), &params)).await;
                let (text, error) = match result {
                    Ok(text) => (Ok(text), None),
                    Err(ReadError::Api { message, .. }) => (Err(message), None),
                    Err(e) => (Err(e.to_string()), Some(e)),
                };
                (ContainerLog { pod, container, previous, text }, error)
            }
        })
        .buffered(limits.concurrency.max(1))
        .collect()
        .await;
    let mut gaps = BTreeMap::new();
    let logs = results
        .into_iter()
        .map(|(log, error)| {
            if let Some(error) = error {
                let gap = unnamed(error).gap();
                gaps.insert(gap.message.clone(), gap);
            }
            log
        })
        .collect();
    (logs, gaps.into_values().collect())
}

/// The same error without the object's name, so one refusal for many pods is reported once.
fn unnamed(error: ReadError) -> ReadError {
    match error {
        ReadError::Forbidden { mut call, message } => {
            call.name = None;
            let message =
                message.split_once(" is forbidden: ").map_or(message.clone(), |(_, rest)| format!("forbidden: {rest}"));
            ReadError::Forbidden { call, message }
        }
        ReadError::Timeout { mut call, after } => {
            call.name = None;
            ReadError::Timeout { call, after }
        }
        other => other,
    }
}

/// The nodes that matter to the namespace ([`node_needs`]): those of its problem pods, one by one, and when a pod
/// waits to be scheduled or a DaemonSet may be kept off some, the listed nodes [`NodeJudge`] keeps, page by page
/// so that a large cluster's nodes are never all held, and at most [`MAX_LISTED_NODES`] of them.
async fn read_nodes(client: &Client, facts: &Facts, limits: &Limits) -> (Vec<Node>, Vec<Gap>) {
    let needs = node_needs(facts);
    let api = Api::<Node>::all(client.clone());
    let results: Vec<Result<Node, ReadError>> = futures::stream::iter(needs.named.iter().cloned())
        .map(|name| {
            let api = api.clone();
            async move { timed(limits, &call::<Node>("get", None, Some(&name)), api.get(&segment(&name))).await }
        })
        .buffered(limits.concurrency.max(1))
        .collect()
        .await;
    let mut nodes = Vec::new();
    let mut gaps = BTreeMap::new();
    for result in results {
        match result {
            Ok(node) => nodes.push(node),
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                let gap = unnamed(e).gap();
                gaps.insert(gap.message.clone(), gap);
            }
        }
    }
    if needs.list {
        let judge = NodeJudge::new(facts);
        let mut listed = 0;
        let keep = |node: &Node| {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            let kept = listed < MAX_LISTED_NODES && !needs.named.contains(name) && judge.matters(node);
            listed += usize::from(kept);
            kept
        };
        match list_kept(api, ListParams::default(), limits, "", keep, |_| {}).await {
            Ok(listed) => nodes.extend(listed),
            Err(e) => {
                let gap = e.gap();
                gaps.insert(gap.message.clone(), gap);
            }
        }
    }
    (nodes, gaps.into_values().collect())
}

/// The most nodes kept from a list: enough to name what keeps pods off, few enough for any cluster.
const MAX_LISTED_NODES: usize = 20;

/// The cluster's IngressClasses, when the namespace has Ingresses that may name one.
async fn read_ingress_classes(client: &Client, facts: &Facts, limits: &Limits) -> Result<Vec<IngressClass>, ReadError> {
    if facts.ingresses.is_empty() {
        return Ok(Vec::new());
    }
    let api = Api::<IngressClass>::all(client.clone());
    let list = call::<IngressClass>("list", None, None);
    Ok(timed(limits, &list, api.list(&ListParams::default())).await?.items)
}

/// Where a cluster is read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The in-cluster config, then `$KUBECONFIG` or `~/.kube/config`, as kubectl finds them.
    Infer,
    /// The pod's own ServiceAccount and the API server it runs under, and nothing else: never a kubeconfig instead.
    InCluster,
    /// A kubeconfig file: the named context, else its current one.
    Kubeconfig { path: PathBuf, context: Option<String> },
    /// An API server at a URL, without credentials (a replay server).
    Url(String),
    /// A dump, served over the real API by an in-process replay server; `forbid` refuses resources with 403.
    Dump { path: PathBuf, forbid: Vec<Forbid> },
    /// The demo cluster compiled into kubechat.
    Demo,
}

/// Why a cluster cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid API server URL {url}: {message}")]
    Url { url: String, message: String },
    #[error("cannot read kubeconfig {}: {message}", path.display())]
    Kubeconfig { path: PathBuf, message: String },
    #[error(
        "cannot find the cluster: not running in a pod and no kubeconfig found ({message}); pass --kubeconfig, set KUBECONFIG, or use --dump for an offline dump"
    )]
    NotFound { message: String },
    #[error(
        "cannot load the in-cluster configuration (the pod's ServiceAccount token and KUBERNETES_SERVICE_HOST): {message}; is kubechat running in a pod with a ServiceAccount token mounted?"
    )]
    InCluster { message: String },
    #[error("cannot build the Kubernetes client: {0}")]
    Client(String),
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error("cannot start the in-process replay server: {0}")]
    Replay(std::io::Error),
}

/// A client for an API server at `url`, without credentials (a replay server, in tests and tools).
pub async fn client(url: &str) -> Result<Client, ConnectError> {
    crate::install_tls_provider();
    let url = url
        .parse::<axum::http::Uri>()
        .map_err(|e| ConnectError::Url { url: url.to_string(), message: e.to_string() })?;
    Client::try_from(kube::Config::new(url)).map_err(|e| ConnectError::Client(crate::error_chain(&e)))
}

/// One cluster as kubechat reads it: the only holder of a Kubernetes client, with the namespace to use when a
/// question names none. For a dump it keeps the in-process replay server running.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    default_namespace: String,
    /// A dump served in process: a snapshot, whose facts are read as of when it was taken.
    replay: Option<Arc<replay::Server>>,
    /// When the snapshot was taken, when it says (see [`Dump::taken_at`]).
    taken_at: Option<jiff::Timestamp>,
}

impl Cluster {
    /// The API client, for what is not reading a namespace (the leader's Lease).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn connect(source: &Source) -> Result<Cluster, ConnectError> {
        crate::install_tls_provider();
        let kube_error = |e: &dyn std::error::Error| crate::error_chain(e);
        match source {
            Source::Url(url) => Ok(Cluster::new(client(url).await?)),
            Source::Kubeconfig { path, context } => {
                let problem = |message: String| ConnectError::Kubeconfig { path: path.to_path_buf(), message };
                let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| problem(kube_error(&e)))?;
                if let Some(context) = context
                    && !kubeconfig.contexts.iter().any(|c| &c.name == context)
                {
                    let names: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
                    return Err(problem(format!("it has no context {context:?} (it has {})", names.join(", "))));
                }
                let options = kube::config::KubeConfigOptions { context: context.clone(), ..Default::default() };
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| problem(kube_error(&e)))?;
                Ok(Cluster::new(Client::try_from(config).map_err(|e| ConnectError::Client(kube_error(&e)))?))
            }
            Source::InCluster => {
                let config =
                    kube::Config::incluster().map_err(|e| ConnectError::InCluster { message: kube_error(&e) })?;
                Ok(Cluster::new(Client::try_from(config).map_err(|e| ConnectError::Client(kube_error(&e)))?))
            }
            Source::Infer => {
                let config =
                    kube::Config::infer().await.map_err(|e| ConnectError::NotFound { message: kube_error(&e) })?;
                Ok(Cluster::new(Client::try_from(config).map_err(|e| ConnectError::Client(kube_error(&e)))?))
            }
            Source::Dump { path, forbid } => Cluster::replaying(Arc::new(load_dump(path)?), forbid).await,
            Source::Demo => Cluster::replaying(Arc::new(Dump::demo()), &[]).await,
        }
    }

    /// Reads the cluster through an existing client (its namespace is the default).
    pub fn new(client: Client) -> Cluster {
        let default_namespace = client.default_namespace().to_string();
        Cluster { client, default_namespace, replay: None, taken_at: None }
    }

    async fn replaying(dump: Arc<Dump>, forbid: &[Forbid]) -> Result<Cluster, ConnectError> {
        let namespaces: Vec<String> = dump.namespaces().map(str::to_string).collect();
        let taken_at = dump.taken_at;
        let options = replay::Options { forbid: forbid.to_vec() };
        let server = replay::start(dump, options, ([127, 0, 0, 1], 0).into()).await.map_err(ConnectError::Replay)?;
        let client = client(&server.url()).await?;
        let default_namespace = if namespaces.len() == 1 { namespaces[0].clone() } else { "default".to_string() };
        Ok(Cluster { client, default_namespace, replay: Some(Arc::new(server)), taken_at })
    }

    /// The kubeconfig's namespace; for a dump of one namespace, that one.
    pub fn default_namespace(&self) -> &str {
        &self.default_namespace
    }

    /// Reads `scope`. A live cluster's facts carry the time they were read, a dump's the time it was taken (or none,
    /// and their newest timestamp stands in: [`Facts::now`]).
    pub async fn read(&self, scope: &Scope, limits: &Limits) -> Result<Facts, ReadError> {
        // On the heap: the read joins a score of list calls, and a future that size, nested in a front-end's, would
        // overflow a worker thread's stack in a debug build.
        let mut facts = Box::pin(read(&self.client, scope, limits)).await?;
        facts.observed_at = match self.replay {
            None => Some(jiff::Timestamp::now()),
            Some(_) => self.taken_at,
        };
        Ok(facts)
    }

    /// Every namespace's name.
    pub async fn namespaces(&self, limits: &Limits) -> Result<Vec<String>, ReadError> {
        let api = Api::<Namespace>::all(self.client.clone());
        let names = list_all(api, ListParams::default(), limits, "").await?;
        Ok(names.into_iter().filter_map(|n| n.metadata.name).collect())
    }

    /// Whether the API server answers (its version), within `timeout`.
    pub async fn reachable(&self, timeout: Duration) -> Result<(), String> {
        match tokio::time::timeout(timeout, self.client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("the Kubernetes API server is not reachable: {e}")),
            Err(_) => Err("the Kubernetes API server did not answer in time".to_string()),
        }
    }
}

/// Loads a dump, logging what was left out of it.
pub fn load_dump(path: &Path) -> Result<Dump, DumpError> {
    let dump = Dump::load(path)?;
    let r = &dump.report;
    tracing::info!(files = r.files, objects = r.objects, logs = r.logs, "loaded dump {}", path.display());
    if r.secrets_dropped > 0 {
        tracing::info!("dropped {} Secret(s): kubechat never serves secrets", r.secrets_dropped);
    }
    for (kind, count) in &r.skipped {
        tracing::warn!("skipped {count} object(s) of kind {kind}: not served by the replay server");
    }
    for problem in r.invalid.iter().take(20) {
        tracing::warn!("skipped {problem} (an API server would not have stored it)");
    }
    if r.invalid.len() > 20 {
        tracing::warn!("skipped {} more objects of the wrong shape", r.invalid.len() - 20);
    }
    Ok(dump)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_keep_what_the_analyzers_read_and_no_spare_room() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "team": "shop"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"containers": [{"name": "app", "image": "web:1", "env": [{"name": "A", "value": "1"}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "app", "image": "web:1", "imageID": "", "ready": true, "restartCount": 0}]},
        }))
        .unwrap();
        slim_meta(&mut pod.metadata);
        slim_pod(&mut pod);
        assert_eq!(pod.metadata.managed_fields, None);
        let annotations = pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
        let status = pod.status.as_ref().unwrap();
        let statuses = status.container_statuses.as_ref().unwrap();
        assert_eq!((statuses.len(), statuses.capacity()), (1, 1));
        assert_eq!(status.conditions.as_ref().unwrap().capacity(), 1);
        assert_eq!(pod.spec.as_ref().unwrap().containers[0].env.as_ref().unwrap()[0].value.as_deref(), Some("1"));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("payments-eu.1"), "payments-eu.1");
        assert_eq!(segment("secret-project/pods?x=-dev"), "secret-project%2Fpods%3Fx%3D-dev");
        assert_eq!(segment("a/../b"), "a%2F..%2Fb");
        assert_eq!(segment("payments%2Fx"), "payments%252Fx");
        assert_eq!(segment("ß"), "%C3%9F");
    }

    #[test]
    fn forbidden_errors_name_the_rule_to_add() {
        let call =
            Call { verb: "get", resource: "pods/log".into(), group: "", namespace: Some("shop".into()), name: None };
        let text = ReadError::Forbidden { call, message: "nope".into() }.to_string();
        assert!(
            text.starts_with("cannot get pods/log in namespace shop: the API server refused it (403 Forbidden: nope)"),
            "{text}"
        );
        assert!(text.contains(r#"{apiGroups: [""], resources: ["pods/log"], verbs: ["get"]}"#), "{text}");
    }
}
