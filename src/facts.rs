//! A namespace's state as kubechat read it, and the pure helpers over it: event ordering, the choice of problem pods,
//! narrowing to one object, near-miss names. Data only: the analyzers, the context and redaction import this, not the
//! client that filled it ([`crate::cluster`]).

use std::collections::BTreeSet;
use std::fmt;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Endpoints, Event, Node, PersistentVolumeClaim, Pod, Service};
use serde::{Deserialize, Serialize};

use crate::request::Scope;

/// An object a finding, an event or a question is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.to_lowercase(), self.name)
    }
}

/// One container log as read; `text` is the error message when it could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerLog {
    pub pod: String,
    pub container: String,
    pub previous: bool,
    pub text: Result<String, String>,
}

/// A namespace's state as read from the API server.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    pub namespace: String,
    pub pods: Vec<Pod>,
    /// Warning first, then newest first; repeats of the same event folded into one.
    pub events: Vec<Event>,
    pub deployments: Vec<Deployment>,
    pub replicasets: Vec<ReplicaSet>,
    pub statefulsets: Vec<StatefulSet>,
    pub daemonsets: Vec<DaemonSet>,
    pub jobs: Vec<Job>,
    pub cronjobs: Vec<CronJob>,
    pub services: Vec<Service>,
    pub endpoints: Vec<Endpoints>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub quotas: Vec<k8s_openapi::api::core::v1::ResourceQuota>,
    pub hpas: Vec<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
    pub ingresses: Vec<k8s_openapi::api::networking::v1::Ingress>,
    pub pdbs: Vec<k8s_openapi::api::policy::v1::PodDisruptionBudget>,
    pub limit_ranges: Vec<k8s_openapi::api::core::v1::LimitRange>,
    pub network_policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>,
    /// The cluster's IngressClasses, read only when the namespace has Ingresses.
    pub ingress_classes: Vec<k8s_openapi::api::networking::v1::IngressClass>,
    /// The nodes that matter to the namespace (see [`NodeJudge`]): those its problem pods run on, those its
    /// unscheduled pods could go to but cannot, and those its DaemonSets are kept off by a taint.
    pub nodes: Vec<Node>,
    pub logs: Vec<ContainerLog>,
    /// What could not be read, each with a precise message; the diagnosis goes on without it.
    pub gaps: Vec<Gap>,
    /// The resources (plurals) whose list failed, so analyzers do not mistake "not read" for "none".
    pub unread: BTreeSet<String>,
    /// When a live cluster was read; none for a snapshot (a dump), whose newest timestamp stands in (see
    /// [`Facts::now`]).
    pub observed_at: Option<jiff::Timestamp>,
}

/// Something the reader could not read, typed so that nothing has to read the message to know why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub cause: Cause,
    /// What failed and how to fix it, for people and the model.
    pub message: String,
}

/// Why a read failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// 403: kubechat's role lacks the rule.
    Forbidden,
    /// No answer within the call's timeout.
    Timeout,
    /// No connection to the API server.
    Unreachable,
    /// Another status from the API server.
    Status(u16),
}

impl Cause {
    /// The label the metrics count it under: the status code, `timeout` or `unreachable`.
    pub fn label(self) -> String {
        match self {
            Cause::Forbidden => "403".to_string(),
            Cause::Timeout => "timeout".to_string(),
            Cause::Unreachable => "unreachable".to_string(),
            Cause::Status(code) => code.to_string(),
        }
    }
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Facts {
    /// The time the facts describe: when a live cluster was read, else the newest timestamp they hold (an event, a
    /// condition's transition, a container's start or end), which is when a snapshot was taken, give or take. Pure:
    /// analyzers judge "recent" and "still starting" against this, never against a clock of their own.
    pub fn now(&self) -> Option<jiff::Timestamp> {
        self.observed_at.or_else(|| self.newest_timestamp())
    }

    fn newest_timestamp(&self) -> Option<jiff::Timestamp> {
        use k8s_openapi::api::core::v1::ContainerStatus;
        let container = |c: &ContainerStatus| {
            let state = [c.state.as_ref(), c.last_state.as_ref()].into_iter().flatten();
            state
                .flat_map(|s| {
                    [
                        s.running.as_ref().and_then(|r| r.started_at.as_ref()),
                        s.terminated.as_ref().and_then(|t| t.finished_at.as_ref()),
                    ]
                })
                .flatten()
                .map(|t| t.0)
                .max()
        };
        let pods = self.pods.iter().filter_map(|p| p.status.as_ref()).flat_map(|s| {
            let conditions = s.conditions.iter().flatten().filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0));
            let containers = s.container_statuses.iter().chain(s.init_container_statuses.iter()).flatten();
            conditions.chain(containers.filter_map(container))
        });
        let events = self.events.iter().filter_map(event_time);
        let deployments = self
            .deployments
            .iter()
            .filter_map(|d| d.status.as_ref())
            .flat_map(|s| s.conditions.iter().flatten().filter_map(|c| c.last_update_time.as_ref().map(|t| t.0)));
        pods.chain(events).chain(deployments).max()
    }

    pub fn log(&self, pod: &str, container: &str, previous: bool) -> Option<&ContainerLog> {
        self.logs.iter().find(|l| l.pod == pod && l.container == container && l.previous == previous)
    }
}

/// Keeps only what concerns the scoped object: its pods (already listed by selector), the workloads that own them,
/// the services that select them, the claims they use, and the events about any of those.
pub fn narrow(facts: &mut Facts, scope: &Scope) {
    use std::collections::HashSet;
    let Some(target) = scope.object() else { return };
    let (kind, name) = (target.singular(), target.name().to_string());
    let named = |k: &str, n: &Option<String>| k == kind && n.as_deref() == Some(name.as_str());
    let owner = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| -> Option<String> {
        meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)).map(|o| o.name.clone())
    };
    let pods: HashSet<String> = facts.pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let pod_owners: HashSet<String> = facts.pods.iter().filter_map(|p| owner(&p.metadata)).collect();
    facts.replicasets.retain(|rs| {
        pod_owners.contains(rs.metadata.name.as_deref().unwrap_or_default())
            || (kind == "deployment" && owner(&rs.metadata).as_deref() == Some(name.as_str()))
    });
    let rs_owners: HashSet<String> = facts.replicasets.iter().filter_map(|rs| owner(&rs.metadata)).collect();
    facts.deployments.retain(|d| {
        named("deployment", &d.metadata.name) || rs_owners.contains(d.metadata.name.as_deref().unwrap_or_default())
    });
    let owns_pod = |n: &Option<String>| pod_owners.contains(n.as_deref().unwrap_or_default());
    facts.statefulsets.retain(|s| named("statefulset", &s.metadata.name) || owns_pod(&s.metadata.name));
    facts.daemonsets.retain(|d| named("daemonset", &d.metadata.name) || owns_pod(&d.metadata.name));
    // A CronJob's own Jobs stay with it, those that have no pod left too.
    let of_cronjob = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        kind == "cronjob" && owner(meta).as_deref() == Some(name.as_str())
    };
    facts.jobs.retain(|j| named("job", &j.metadata.name) || owns_pod(&j.metadata.name) || of_cronjob(&j.metadata));
    let job_owners: HashSet<String> = facts.jobs.iter().filter_map(|j| owner(&j.metadata)).collect();
    facts.cronjobs.retain(|c| {
        named("cronjob", &c.metadata.name) || job_owners.contains(c.metadata.name.as_deref().unwrap_or_default())
    });
    let selects_a_pod = |selector: &std::collections::BTreeMap<String, String>| {
        !selector.is_empty()
            && facts
                .pods
                .iter()
                .any(|p| selector.iter().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)))
    };
    facts.services.retain(|s| {
        named("service", &s.metadata.name)
            || s.spec.as_ref().and_then(|s| s.selector.as_ref()).is_some_and(selects_a_pod)
    });
    let services: HashSet<String> = facts.services.iter().filter_map(|s| s.metadata.name.clone()).collect();
    facts.endpoints.retain(|e| services.contains(e.metadata.name.as_deref().unwrap_or_default()));
    let claims: HashSet<String> = facts
        .pods
        .iter()
        .flat_map(|p| p.spec.iter().flat_map(|s| s.volumes.iter().flatten()))
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
        .collect();
    facts.pvcs.retain(|c| claims.contains(c.metadata.name.as_deref().unwrap_or_default()));
    let workloads: HashSet<String> = facts
        .deployments
        .iter()
        .map(|d| &d.metadata)
        .chain(facts.statefulsets.iter().map(|s| &s.metadata))
        .filter_map(|m| m.name.clone())
        .collect();
    facts.hpas.retain(|h| h.spec.as_ref().is_some_and(|s| workloads.contains(&s.scale_target_ref.name)));
    facts.ingresses.retain(|i| {
        let rules = i.spec.iter().flat_map(|s| s.rules.iter().flatten());
        let paths = rules.flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()));
        let default = i.spec.iter().filter_map(|s| s.default_backend.as_ref());
        default.chain(paths.map(|p| &p.backend)).any(|b| b.service.as_ref().is_some_and(|s| services.contains(&s.name)))
    });
    facts.pdbs.retain(|b| {
        let selector = b.spec.as_ref().and_then(|s| s.selector.as_ref()).and_then(|s| s.match_labels.as_ref());
        selector.is_some_and(|selector| {
            facts
                .pods
                .iter()
                .any(|p| selector.iter().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v)))
        })
    });
    // LimitRanges hold for the whole namespace, and a policy that selects none of the pods does not concern them.
    facts.network_policies.retain(|np| {
        let all = Default::default();
        let selector = np.spec.as_ref().and_then(|s| s.pod_selector.as_ref()).unwrap_or(&all);
        facts.pods.iter().any(|p| selects(selector, p.metadata.labels.as_ref()))
    });
    let mut kept: HashSet<(&str, String)> = HashSet::new();
    kept.extend(pods.into_iter().map(|n| ("Pod", n)));
    kept.extend(names("ReplicaSet", facts.replicasets.iter().map(|o| &o.metadata)));
    kept.extend(names("Deployment", facts.deployments.iter().map(|o| &o.metadata)));
    kept.extend(names("StatefulSet", facts.statefulsets.iter().map(|o| &o.metadata)));
    kept.extend(names("DaemonSet", facts.daemonsets.iter().map(|o| &o.metadata)));
    kept.extend(names("Job", facts.jobs.iter().map(|o| &o.metadata)));
    kept.extend(names("CronJob", facts.cronjobs.iter().map(|o| &o.metadata)));
    kept.extend(names("Service", facts.services.iter().map(|o| &o.metadata)));
    kept.extend(names("PersistentVolumeClaim", facts.pvcs.iter().map(|o| &o.metadata)));
    facts.events.retain(|e| {
        let kind = e.involved_object.kind.as_deref().unwrap_or_default();
        kept.contains(&(kind, e.involved_object.name.clone().unwrap_or_default()))
    });
}

fn names<'a>(
    kind: &'static str,
    metas: impl Iterator<Item = &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> + 'a,
) -> impl Iterator<Item = (&'static str, String)> + 'a {
    metas.filter_map(move |m| m.name.clone().map(|n| (kind, n)))
}

/// Up to three names closest to `wanted`, best first.
pub fn closest(wanted: &str, names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut scored: Vec<(f64, String)> = names
        .into_iter()
        .map(|name| {
            let mut score = strsim::jaro_winkler(wanted, &name);
            if name.contains(wanted) || wanted.contains(name.as_str()) {
                score += 0.2;
            }
            (score, name)
        })
        .filter(|(score, _)| *score >= 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.into_iter().take(3).map(|(_, name)| name).collect()
}

/// `matchLabels` and `matchExpressions` as a label selector string.
pub fn label_selector_string(selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    let mut terms: Vec<String> = selector.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        terms.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    terms.join(",")
}

/// Warning before Normal, newest first, repeats (same object, reason and message) folded into one with the counts
/// added up.
pub fn order_events(events: Vec<Event>) -> Vec<Event> {
    // Folded by position, the events staying where they are until the kept ones are taken in place: a map of whole
    // events (each over a kilobyte) held 100 MB for 30,000, and a second list of them as much again.
    let n = events.len();
    let mut group: Vec<usize> = (0..n).collect();
    {
        let mut first: foldhash::HashMap<(&str, &str, &str, &str), usize> =
            foldhash::HashMap::with_capacity_and_hasher(n, Default::default());
        for (i, event) in events.iter().enumerate() {
            let key = (
                event.involved_object.kind.as_deref().unwrap_or_default(),
                event.involved_object.name.as_deref().unwrap_or_default(),
                event.reason.as_deref().unwrap_or_default(),
                event.message.as_deref().unwrap_or_default(),
            );
            group[i] = *first.entry(key).or_insert(i);
        }
    }
    // Per group (named by its first event): the latest event, kept, and the counts added up.
    let mut latest: Vec<usize> = (0..n).collect();
    let mut count: Vec<i32> = events.iter().map(|e| e.count.unwrap_or(1)).collect();
    let mut folded = vec![false; n];
    for i in 0..n {
        let g = group[i];
        if g != i {
            count[g] += events[i].count.unwrap_or(1);
            folded[g] = true;
            if event_time(&events[i]) > event_time(&events[latest[g]]) {
                latest[g] = i;
            }
        }
    }
    let mut events: Vec<Event> = events
        .into_iter()
        .enumerate()
        .filter_map(|(i, mut event)| {
            let g = group[i];
            (latest[g] == i).then(|| {
                if folded[g] {
                    event.count = Some(count[g]);
                }
                event
            })
        })
        .collect();
    // Each event moved once, not once per comparison.
    events.sort_by_cached_key(|e| {
        (e.type_.as_deref() != Some("Warning"), std::cmp::Reverse(event_time(e)), e.metadata.name.clone())
    });
    events
}

/// When an event last happened: `lastTimestamp`, else `eventTime`, else when it was created.
pub fn event_time(event: &Event) -> Option<jiff::Timestamp> {
    event
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| event.series.as_ref().and_then(|s| s.last_observed_time.as_ref()).map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Whether a pod needs a closer look, judged by its containers' states rather than its phase: a crash-looping pod
/// is usually `Running`.
pub fn is_problem_pod(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    match status.phase.as_deref() {
        Some("Succeeded") => return false,
        Some("Failed") | Some("Pending") | Some("Unknown") => return true,
        _ => {}
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let containers = status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten());
    containers.into_iter().any(|c| {
        let state = c.state.as_ref();
        let waiting = state.and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref());
        let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        waiting.is_some_and(|r| r != "PodInitializing" && r != "ContainerCreating")
            || last.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
            || (!c.ready && state.and_then(|s| s.running.as_ref()).is_some())
            || state.and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code != 0)
    })
}

/// Whether a label selector (matchLabels and matchExpressions) selects an object with these labels; the empty
/// selector selects everything, as for NetworkPolicies and PodDisruptionBudgets.
pub fn selects(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k));
    let matched = selector.match_labels.iter().flatten().all(|(k, v)| label(k) == Some(v));
    matched
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => label(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => label(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => label(&e.key).is_some(),
                "DoesNotExist" => label(&e.key).is_none(),
                _ => false,
            }
        })
}

/// Which nodes the analyzers need: those named here are read one by one; when `list` is set, every node is listed
/// (in pages) and those [`NodeJudge::matters`] says matter are kept.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeNeeds {
    pub named: BTreeSet<String>,
    pub list: bool,
}

/// The nodes the problem pods run on, and whether the others must be looked through: when a pod waits to be
/// scheduled, or a DaemonSet may be kept off some nodes.
pub fn node_needs(facts: &Facts) -> NodeNeeds {
    let named = facts
        .pods
        .iter()
        .filter(|p| is_problem_pod(p))
        .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
        .collect();
    NodeNeeds { named, list: facts.pods.iter().any(unscheduled) || !facts.daemonsets.is_empty() }
}

/// A pod the scheduler has not placed yet.
pub fn unscheduled(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
        && pod.spec.as_ref().is_none_or(|s| s.node_name.is_none())
}

/// Which listed nodes matter to the namespace, judged with what is worked out once per read (the waiting pods, where
/// the DaemonSets' pods run) rather than once per node of a large cluster.
pub struct NodeJudge<'a> {
    facts: &'a Facts,
    /// Pods waiting to be scheduled that the scheduler says nodes refuse.
    refused: Vec<&'a Pod>,
    /// (DaemonSet, node) for every DaemonSet pod placed on a node.
    placed: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> NodeJudge<'a> {
    pub fn new(facts: &'a Facts) -> NodeJudge<'a> {
        let refused = facts.pods.iter().filter(|p| unscheduled(p) && refused_by_nodes(p)).collect();
        let placed = facts
            .pods
            .iter()
            .filter_map(|p| {
                let node = p.spec.as_ref()?.node_name.as_deref()?;
                let owner = p.metadata.owner_references.iter().flatten().find(|o| o.kind == "DaemonSet")?;
                Some((owner.name.as_str(), node))
            })
            .collect();
        NodeJudge { facts, refused, placed }
    }

    /// Whether a listed node matters: an unscheduled pod could go there (its nodeSelector matches) but the node
    /// refuses it ([`refuses`]), or a DaemonSet has no pod there because of a taint it does not tolerate.
    pub fn matters(&self, node: &Node) -> bool {
        self.refused.iter().any(|p| selects_node(p, node) && !refuses(node, p).is_empty())
            || self.facts.daemonsets.iter().any(|d| !self.kept_off(d, node).is_empty())
    }

    /// The taints that keep a DaemonSet off a node it has no pod on, as [`untolerated`] words them.
    fn kept_off(&self, daemonset: &DaemonSet, node: &Node) -> Vec<String> {
        let (owner, name) = (daemonset.metadata.name.as_deref(), node.metadata.name.as_deref());
        let runs_there = owner.zip(name).is_some_and(|placed| self.placed.contains(&placed));
        let template = daemonset.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        match template {
            Some(t) if !runs_there => untolerated(node, t.tolerations.as_deref(), true),
            _ => Vec::new(),
        }
    }
}

/// `gpu-1 (taint dedicated=gpu:NoSchedule)`, for each node read whose taints keep the DaemonSet off.
pub fn kept_off_nodes(facts: &Facts, daemonset: &DaemonSet) -> Vec<String> {
    let judge = NodeJudge::new(facts);
    facts
        .nodes
        .iter()
        .filter_map(|n| {
            let taints = judge.kept_off(daemonset, n);
            (!taints.is_empty())
                .then(|| format!("{} ({})", n.metadata.name.as_deref().unwrap_or_default(), taints.join(", ")))
        })
        .collect()
}

/// Whether the scheduler says nodes refuse the pod for something about themselves (cordoned, tainted, not ready),
/// or has not said why yet; a pod waiting for its volume or for room is not kept off by any node's state.
pub fn refused_by_nodes(pod: &Pod) -> bool {
    scheduler_message(pod).is_none_or(|m| m.contains("unschedulable") || m.contains("taint"))
}

/// Whether a pod's nodeSelector admits the node (required node affinity is left to the scheduler's message).
pub fn selects_node(pod: &Pod, node: &Node) -> bool {
    let selector = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    let labels = node.metadata.labels.as_ref();
    selector.into_iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Why a node refuses a pod, in kubectl's words: `cordoned`, `NotReady`, `DiskPressure`, or a taint the pod does
/// not tolerate (`taint dedicated=gpu:NoSchedule`). Where the scheduler has said why the pod waits, only what it
/// names counts (`were unschedulable`, `{node.kubernetes.io/unreachable: }`, `{dedicated: gpu}`). Empty when
/// nothing about the node itself keeps the pod off.
pub fn refuses(node: &Node, pod: &Pod) -> Vec<String> {
    // Each reason with the words the scheduler uses for it.
    let mut why: Vec<(String, String)> = Vec::new();
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        why.push(("cordoned".to_string(), "unschedulable".to_string()));
    }
    for c in node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten() {
        let marker = match c.type_.as_str() {
            "Ready" if c.status != "True" => "node.kubernetes.io/not-ready|node.kubernetes.io/unreachable",
            "MemoryPressure" if c.status == "True" => "memory-pressure",
            "DiskPressure" if c.status == "True" => "disk-pressure",
            "PIDPressure" if c.status == "True" => "pid-pressure",
            "NetworkUnavailable" if c.status == "True" => "network-unavailable",
            _ => continue,
        };
        let word = if c.type_ == "Ready" { "NotReady".to_string() } else { c.type_.clone() };
        why.push((word, marker.to_string()));
    }
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
    // Cordons and conditions are said above; their `node.kubernetes.io/` taints would say them twice.
    for taint in untolerated_taints(node, tolerations, true) {
        why.push((taint_words(taint), format!("{{{}:", taint.key)));
    }
    let message = scheduler_message(pod);
    why.into_iter()
        .filter(|(_, marker)| message.is_none_or(|m| marker.split('|').any(|w| m.contains(w))))
        .map(|(word, _)| word)
        .collect()
}

/// What the scheduler said about a pod it could not place (the PodScheduled=False condition's message).
pub fn scheduler_message(pod: &Pod) -> Option<&str> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let scheduled = conditions.into_iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False");
    scheduled.and_then(|c| c.message.as_deref())
}

/// The NoSchedule and NoExecute taints of a node that none of the tolerations matches, as `taint KEY=VALUE:EFFECT`.
/// `conditions` leaves out the `node.kubernetes.io/` taints, the node's conditions and cordon said another way (which
/// the DaemonSet controller tolerates for its pods).
pub fn untolerated(
    node: &Node,
    tolerations: Option<&[k8s_openapi::api::core::v1::Toleration]>,
    conditions: bool,
) -> Vec<String> {
    untolerated_taints(node, tolerations, conditions).map(taint_words).collect()
}

fn untolerated_taints<'a>(
    node: &'a Node,
    tolerations: Option<&'a [k8s_openapi::api::core::v1::Toleration]>,
    conditions: bool,
) -> impl Iterator<Item = &'a k8s_openapi::api::core::v1::Taint> + 'a {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten();
    taints
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .filter(move |t| !(conditions && t.key.starts_with("node.kubernetes.io/")))
        .filter(move |t| {
            !tolerations.into_iter().flatten().any(|tol| {
                let key = tol.key.as_deref().unwrap_or_default();
                let exists = tol.operator.as_deref() == Some("Exists");
                (key.is_empty() && exists || key == t.key)
                    && (exists || tol.value.as_deref().unwrap_or_default() == t.value.as_deref().unwrap_or_default())
                    && tol.effect.as_deref().is_none_or(|e| e.is_empty() || e == t.effect)
            })
        })
}

fn taint_words(t: &k8s_openapi::api::core::v1::Taint) -> String {
    match t.value.as_deref() {
        Some(v) if !v.is_empty() => format!("taint {}={v}:{}", t.key, t.effect),
        _ => format!("taint {}:{}", t.key, t.effect),
    }
}

/// How urgently a problem pod's logs matter: restarting containers first.
pub fn log_priority(pod: &Pod) -> i32 {
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    statuses.into_iter().flatten().map(|c| c.restart_count).sum::<i32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names_rank_near_misses_first() {
        let names = ["payments", "payment-gateway", "kube-system", "default"].map(String::from);
        assert_eq!(closest("payment", names.clone()).first().map(String::as_str), Some("payments"));
        assert!(closest("zzzz", names).is_empty());
    }

    #[test]
    fn events_fold_repeats_and_put_warnings_first() {
        let event = |name: &str, kind: &str, reason: &str, at: &str, count: i32| -> Event {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name}, "type": kind, "reason": reason, "message": "m", "count": count,
                "involvedObject": {"kind": "Pod", "name": "p"}, "lastTimestamp": at,
            }))
            .unwrap()
        };
        let events = order_events(vec![
            event("a", "Normal", "Pulled", "2026-01-01T00:00:05Z", 1),
            event("b", "Warning", "BackOff", "2026-01-01T00:00:01Z", 3),
            event("c", "Warning", "BackOff", "2026-01-01T00:00:09Z", 2),
            event("d", "Warning", "Unhealthy", "2026-01-01T00:00:03Z", 1),
        ]);
        let names: Vec<_> = events.iter().map(|e| e.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["c", "d", "a"]);
        assert_eq!(events[0].count, Some(5));
    }
}
