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

    /// Whether `api_version` is this resource's ([`Self::api_version`]), compared without building it.
    pub fn is_api_version(&self, api_version: &str) -> bool {
        match api_version.split_once('/') {
            Some((group, version)) => !group.is_empty() && group == self.group && version == self.version,
            None => self.group.is_empty() && api_version == self.version,
        }
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
pub const RESOURCEQUOTAS: Resource = core("resourcequotas", "resourcequota", "ResourceQuota", true, &["quota"]);
pub const HPAS: Resource = Resource {
    version: "v2",
    ..grouped("autoscaling", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", &["hpa"])
};
pub const INGRESSES: Resource = grouped("networking.k8s.io", "ingresses", "ingress", "Ingress", &["ing"]);
pub const PDBS: Resource =
    grouped("policy", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", &["pdb"]);
pub const LIMITRANGES: Resource = core("limitranges", "limitrange", "LimitRange", true, &["limits"]);
pub const NETWORKPOLICIES: Resource =
    grouped("networking.k8s.io", "networkpolicies", "networkpolicy", "NetworkPolicy", &["netpol"]);
pub const INGRESSCLASSES: Resource = Resource {
    namespaced: false,
    ..grouped("networking.k8s.io", "ingressclasses", "ingressclass", "IngressClass", &[])
};

/// Every resource kubechat reads, core group first.
pub const ALL: [&Resource; 21] = [
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
    &RESOURCEQUOTAS,
    &LIMITRANGES,
    &HPAS,
    &INGRESSES,
    &INGRESSCLASSES,
    &NETWORKPOLICIES,
    &PDBS,
];

/// The API groups besides the core group; each serves one version, its resources' (see [`group_version`]).
pub const GROUPS: [&str; 5] = ["apps", "batch", "autoscaling", "networking.k8s.io", "policy"];

/// The version a group is served at.
pub fn group_version(group: &str) -> Option<&'static str> {
    ALL.into_iter().find(|r| r.group == group).map(|r| r.version)
}

/// The resource for an object's `apiVersion` and `kind`. The version is not compared, so objects from older clusters
/// (`extensions/v1beta1` Deployments, `batch/v1beta1` CronJobs) are still filed.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    // `extensions` held the workloads (now `apps`) and Ingresses (now `networking.k8s.io`) of old clusters.
    let groups: &[&str] = if group == "extensions" { &["apps", "networking.k8s.io"] } else { &[group] };
    ALL.into_iter().find(|r| r.kind == kind && groups.contains(&r.group))
}

/// The resource a word names as kubectl reads it: the plural, the singular or a short name, in any case
/// (`deploy`, `Deployments`, `po`).
pub fn by_name(word: &str) -> Option<&'static Resource> {
    let word = word.to_ascii_lowercase();
    ALL.into_iter().find(|r| r.plural == word || r.singular == word || r.short_names.contains(&word.as_str()))
}

/// The resource served at `/api/v1/{plural}` or `/apis/{group}/{version}/{plural}`.
pub fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    ALL.into_iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Something done with the Rust type of a resource kubechat serves (see [`with_type`]).
pub trait WithType {
    type Out;
    fn with<K: serde::de::DeserializeOwned + serde::Serialize>(self) -> Self::Out;
}

/// Calls `action` with the type of `resource`'s objects; gives `action` back for a resource without one.
pub fn with_type<A: WithType>(resource: &Resource, action: A) -> Result<A::Out, A> {
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::batch::v1 as batch;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::networking::v1 as networking;

    Ok(match resource.plural {
        "pods" => action.with::<core::Pod>(),
        "events" => action.with::<core::Event>(),
        "services" => action.with::<core::Service>(),
        "endpoints" => action.with::<core::Endpoints>(),
        "namespaces" => action.with::<core::Namespace>(),
        "nodes" => action.with::<core::Node>(),
        "persistentvolumeclaims" => action.with::<core::PersistentVolumeClaim>(),
        "configmaps" => action.with::<core::ConfigMap>(),
        "deployments" => action.with::<apps::Deployment>(),
        "replicasets" => action.with::<apps::ReplicaSet>(),
        "statefulsets" => action.with::<apps::StatefulSet>(),
        "daemonsets" => action.with::<apps::DaemonSet>(),
        "jobs" => action.with::<batch::Job>(),
        "cronjobs" => action.with::<batch::CronJob>(),
        "resourcequotas" => action.with::<core::ResourceQuota>(),
        "horizontalpodautoscalers" => action.with::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(),
        "ingresses" => action.with::<networking::Ingress>(),
        "poddisruptionbudgets" => action.with::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(),
        "limitranges" => action.with::<core::LimitRange>(),
        "networkpolicies" => action.with::<networking::NetworkPolicy>(),
        "ingressclasses" => action.with::<networking::IngressClass>(),
        _ => return Err(action),
    })
}

/// Whether `object` has the shape of its resource's type, as an API server would have enforced before storing it:
/// `Err` names the first field that does not fit (`spec.containers: invalid type: string "web", expected a sequence`).
pub fn check_shape(resource: &Resource, object: &serde_json::Value) -> Result<(), String> {
    struct Shaped<'a>(&'a serde_json::Value);
    impl WithType for Shaped<'_> {
        type Out = Result<(), String>;
        fn with<K: serde::de::DeserializeOwned + serde::Serialize>(self) -> Result<(), String> {
            // Most objects fit: the reading that tracks where it is, for the message, only for those that do not.
            if K::deserialize(self.0).is_ok() {
                return Ok(());
            }
            serde_path_to_error::deserialize::<_, K>(self.0).map(drop).map_err(|e| match e.path().to_string() {
                path if path == "." => e.inner().to_string(),
                path => format!("{path}: {}", e.inner()),
            })
        }
    }
    with_type(resource, Shaped(object))
        .unwrap_or_else(|_| Err(format!("no type is known for resource {}", resource.plural)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_version_is_compared_as_it_is_written() {
        for resource in ALL {
            assert!(resource.is_api_version(&resource.api_version()), "{}", resource.plural);
        }
        assert!(!PODS.is_api_version("apps/v1") && !PODS.is_api_version("/v1") && !PODS.is_api_version("v1beta1"));
        assert!(!DEPLOYMENTS.is_api_version("v1") && !DEPLOYMENTS.is_api_version("extensions/v1beta1"));
        assert!(!DEPLOYMENTS.is_api_version("apps/v1/x") && !DEPLOYMENTS.is_api_version("apps"));
    }

    #[test]
    fn kinds_resolve_across_group_versions() {
        assert_eq!(by_kind("v1", "Pod"), Some(&PODS));
        assert_eq!(by_kind("apps/v1", "Deployment"), Some(&DEPLOYMENTS));
        assert_eq!(by_kind("extensions/v1beta1", "Deployment"), Some(&DEPLOYMENTS));
        assert_eq!(by_kind("batch/v1beta1", "CronJob"), Some(&CRONJOBS));
        assert_eq!(by_kind("extensions/v1beta1", "Ingress"), Some(&INGRESSES));
        assert_eq!(by_kind("autoscaling/v2beta2", "HorizontalPodAutoscaler"), Some(&HPAS));
        assert_eq!(by_kind("policy/v1beta1", "PodDisruptionBudget"), Some(&PDBS));
        assert_eq!(by_kind("networking.k8s.io/v1", "IngressClass"), Some(&INGRESSCLASSES));
        assert_eq!(by_kind("extensions/v1beta1", "NetworkPolicy"), Some(&NETWORKPOLICIES));
        assert_eq!(by_kind("events.k8s.io/v1", "Event"), None);
        assert_eq!(by_kind("v1", "Secret"), None);
    }

    #[test]
    fn shapes_are_checked_against_the_resource_type() {
        let pod =
            |spec| serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": spec});
        assert_eq!(check_shape(&PODS, &pod(serde_json::json!({"containers": [{"name": "app"}]}))), Ok(()));
        let err = check_shape(&PODS, &pod(serde_json::json!({"containers": "app"}))).unwrap_err();
        assert!(err.starts_with("spec.containers: invalid type: string \"app\""), "{err}");
        let err = check_shape(
            &PODS,
            &pod(serde_json::json!({"containers": [{"name": "app", "ports": [{"containerPort": "80"}]}]})),
        )
        .unwrap_err();
        assert!(err.starts_with("spec.containers[0].ports[0].containerPort:"), "{err}");
    }

    #[test]
    fn names_resolve_as_kubectl_reads_them() {
        assert_eq!(by_name("deploy"), Some(&DEPLOYMENTS));
        assert_eq!(by_name("Deployments"), Some(&DEPLOYMENTS));
        assert_eq!(by_name("cj"), Some(&CRONJOBS));
        assert_eq!(by_name("po"), Some(&PODS));
        assert_eq!(by_name("secrets"), None);
    }

    #[test]
    fn paths_resolve_to_resources() {
        assert_eq!(by_path("", "v1", "persistentvolumeclaims"), Some(&PVCS));
        assert_eq!(by_path("batch", "v1", "jobs"), Some(&JOBS));
        assert_eq!(by_path("", "v1", "secrets"), None);
        assert_eq!(by_path("apps", "v1beta1", "deployments"), None);
    }
}
