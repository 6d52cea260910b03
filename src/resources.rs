//! The Kubernetes resources kubechat reads, described once.
//!
//! The replay server builds its discovery documents and routes from this table, and the dump loader uses it to file
//! each object under its resource. Secrets are deliberately absent: kubechat never reads them.

/// One served resource, as Kubernetes discovery describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Resource {
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources that can be read (only `pods/log`).
    pub subresources: &'static [&'static str],
}

impl Resource {
    /// `v1` for the core group, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

const fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource { plural, singular, kind, group: "", version: "v1", namespaced, short_names, subresources: &[] }
}

const fn grouped(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    short_names: &'static [&'static str],
) -> Resource {
    Resource { plural, singular, kind, group, version: "v1", namespaced: true, short_names, subresources: &[] }
}

pub const PODS: Resource = Resource { subresources: &["log"], ..core("pods", "pod", "Pod", true, &["po"]) };
pub const EVENTS: Resource = core("events", "event", "Event", true, &["ev"]);
pub const SERVICES: Resource = core("services", "service", "Service", true, &["svc"]);
pub const ENDPOINTS: Resource = core("endpoints", "endpoints", "Endpoints", true, &["ep"]);
pub const NAMESPACES: Resource = core("namespaces", "namespace", "Namespace", false, &["ns"]);
pub const NODES: Resource = core("nodes", "node", "Node", false, &["no"]);
pub const PVCS: Resource =
    core("persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, &["pvc"]);
pub const CONFIGMAPS: Resource = core("configmaps", "configmap", "ConfigMap", true, &["cm"]);
pub const DEPLOYMENTS: Resource = grouped("apps", "deployments", "deployment", "Deployment", &["deploy"]);
pub const REPLICASETS: Resource = grouped("apps", "replicasets", "replicaset", "ReplicaSet", &["rs"]);
pub const STATEFULSETS: Resource = grouped("apps", "statefulsets", "statefulset", "StatefulSet", &["sts"]);
pub const DAEMONSETS: Resource = grouped("apps", "daemonsets", "daemonset", "DaemonSet", &["ds"]);
pub const JOBS: Resource = grouped("batch", "jobs", "job", "Job", &[]);
pub const CRONJOBS: Resource = grouped("batch", "cronjobs", "cronjob", "CronJob", &["cj"]);

/// Every resource kubechat reads, core group first.
pub const ALL: [&Resource; 14] = [
    &PODS,
    &EVENTS,
    &SERVICES,
    &ENDPOINTS,
    &NAMESPACES,
    &NODES,
    &PVCS,
    &CONFIGMAPS,
    &DEPLOYMENTS,
    &REPLICASETS,
    &STATEFULSETS,
    &DAEMONSETS,
    &JOBS,
    &CRONJOBS,
];

/// The API groups besides the core group, with their one served version.
pub const GROUPS: [&str; 2] = ["apps", "batch"];

/// The resource for an object's `apiVersion` and `kind`. The version is not compared, so objects from older clusters
/// (`extensions/v1beta1` Deployments, `batch/v1beta1` CronJobs) are still filed.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let group = if group == "extensions" { "apps" } else { group };
    ALL.into_iter().find(|r| r.kind == kind && r.group == group)
}

/// The resource served at `/api/v1/{plural}` or `/apis/{group}/{version}/{plural}`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    ALL.into_iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_resolve_across_group_versions() {
        assert_eq!(by_kind("v1", "Pod"), Some(&PODS));
        assert_eq!(by_kind("apps/v1", "Deployment"), Some(&DEPLOYMENTS));
        assert_eq!(by_kind("extensions/v1beta1", "Deployment"), Some(&DEPLOYMENTS));
        assert_eq!(by_kind("batch/v1beta1", "CronJob"), Some(&CRONJOBS));
        assert_eq!(by_kind("events.k8s.io/v1", "Event"), None);
        assert_eq!(by_kind("v1", "Secret"), None);
    }

    #[test]
    fn paths_resolve_to_resources() {
        assert_eq!(by_path("", "v1", "persistentvolumeclaims"), Some(&PVCS));
        assert_eq!(by_path("batch", "v1", "jobs"), Some(&JOBS));
        assert_eq!(by_path("", "v1", "secrets"), None);
        assert_eq!(by_path("apps", "v1beta1", "deployments"), None);
    }
}
