//! The clusters kubechat reads (setting `clusters`), each by kubechat's own name for it: its client, its aliases (the
//! `cluster` label an alert carries, say), the namespace of questions that name none, and whether its API server
//! answers. The first is the default: a question that names no cluster reads it, and an access entry that names no
//! clusters covers it alone. A cluster whose credentials cannot be loaded stops kubechat at start-up, by name: never a
//! silent fallback to another cluster or to kubechat's own ServiceAccount. One that does not answer costs only its own
//! questions, which say so; readiness and `/metrics` report each one, as [`Clusters::watch`] finds them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, ConnectError, Source};
use crate::request::{parse_cluster, parse_namespace};
use crate::settings::{ConfigError, invalid};

/// The name of the one cluster of a configuration without `clusters`.
pub const DEFAULT: &str = "default";

/// One entry of the `clusters` setting, as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCluster {
    /// kubechat's name for it: what questions, access entries, answers, audit lines and metrics say.
    pub name: String,
    /// Other names a question or an alert's `cluster` label may use for it.
    pub aliases: Vec<String>,
    /// The cluster kubechat runs in, through its own ServiceAccount.
    pub in_cluster: bool,
    /// A kubeconfig file (mounted from a Secret).
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use; its current context when unset.
    pub context: Option<String>,
    /// A dump, served by an in-process replay server (offline, and tests).
    pub dump: Option<PathBuf>,
    /// The namespace of questions that name none; the top-level `namespace`, else the kubeconfig's, when unset.
    pub namespace: Option<String>,
}

/// One cluster to read, validated.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: String,
    pub aliases: Vec<String>,
    pub source: Source,
    pub namespace: Option<String>,
    /// kubechat runs in it (its Lease is there): an `in_cluster` entry, or the one cluster of a configuration
    /// without `clusters`, however it is reached.
    pub home: bool,
}

impl ClusterConfig {
    pub fn new(name: &str, source: Source) -> ClusterConfig {
        let home = matches!(source, Source::InCluster | Source::Infer);
        ClusterConfig { name: name.to_string(), aliases: Vec::new(), source, namespace: None, home }
    }
}

/// Checks the `clusters` entries: a valid name, unique with the aliases, and exactly one of `in_cluster`,
/// `kubeconfig` (with `context`) or `dump`.
pub fn validate(raw: Vec<RawCluster>) -> Result<Vec<ClusterConfig>, ConfigError> {
    let mut out: Vec<ClusterConfig> = Vec::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let label = if entry.name.is_empty() { format!("entry {}", i + 1) } else { entry.name.clone() };
        let wrong = |message: String| invalid("clusters", format!("{label}: {message}"));
        let name = parse_cluster(&entry.name).map_err(|e| wrong(e.to_string()))?;
        let mut aliases = Vec::new();
        for alias in &entry.aliases {
            aliases.push(parse_cluster(alias).map_err(|e| wrong(format!("alias {e}")))?);
        }
        for known in std::iter::once(&name).chain(&aliases) {
            if let Some(other) = out.iter().find(|c| &c.name == known || c.aliases.contains(known)) {
                return Err(wrong(format!("the name {known} is taken by cluster {}", other.name)));
            }
        }
        let source = match (entry.in_cluster, entry.kubeconfig, entry.dump) {
            (true, None, None) => Source::InCluster,
            (false, Some(path), None) => Source::Kubeconfig { path, context: entry.context.clone() },
            (false, None, Some(path)) => Source::Dump { path, forbid: Vec::new() },
            _ => return Err(wrong("set exactly one of in_cluster: true, kubeconfig or dump".into())),
        };
        if entry.context.is_some() && !matches!(source, Source::Kubeconfig { .. }) {
            return Err(wrong("context picks a kubeconfig's context: set kubeconfig too".into()));
        }
        let namespace = match entry.namespace {
            Some(ns) => Some(parse_namespace(&ns).map_err(|e| wrong(e.to_string()))?),
            None => None,
        };
        let home = matches!(source, Source::InCluster);
        out.push(ClusterConfig { name, aliases, source, namespace, home });
    }
    Ok(out)
}

/// A cluster whose credentials cannot be loaded: kubechat does not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot load cluster {name}: {source}")]
pub struct LoadError {
    pub name: String,
    #[source]
    pub source: ConnectError,
}

/// Whether a cluster's API server answered when last asked.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// When it was last asked; none before the first check.
    pub checked: Option<Instant>,
    pub reachable: Option<bool>,
    /// Since when it has been as it is.
    pub since: Option<jiff::Timestamp>,
    /// Why it did not answer.
    pub error: Option<String>,
}

/// One cluster kubechat reads.
pub struct Entry {
    pub name: String,
    pub aliases: Vec<String>,
    pub cluster: Cluster,
    /// The namespace of questions that name none.
    pub namespace: String,
    /// kubechat runs in it (where its Lease lives).
    home: bool,
    health: std::sync::Mutex<Health>,
}

impl Entry {
    pub fn health(&self) -> Health {
        self.health.lock().expect("not poisoned").clone()
    }

    /// Notes whether its API server answered just now.
    pub fn record(&self, result: Result<(), String>) {
        let mut health = self.health.lock().expect("not poisoned");
        let reachable = result.is_ok();
        if health.reachable != Some(reachable) {
            health.since = Some(jiff::Timestamp::now());
            match &result {
                Ok(()) => tracing::info!(cluster = %self.name, "the cluster's API server answers"),
                Err(why) => tracing::warn!(cluster = %self.name, "the cluster's API server does not answer: {why}"),
            }
        }
        health.reachable = Some(reachable);
        health.error = result.err();
        health.checked = Some(Instant::now());
    }

    /// The cluster's status as `/clusters` shows it (`/readyz`, unauthenticated, shows its name and reachability only).
    pub fn status(&self, default: bool) -> serde_json::Value {
        let health = self.health();
        serde_json::json!({
            "name": self.name,
            "default": default,
            "namespace": self.namespace,
            "reachable": health.reachable,
            "since": health.since.map(|t| t.to_string()),
            "error": health.error,
        })
    }
}

/// Every cluster kubechat reads; the first is the default.
pub struct Clusters {
    entries: Vec<Entry>,
    /// One round of checks at a time.
    probing: tokio::sync::Mutex<()>,
}

impl Clusters {
    /// Loads each cluster's credentials (none is contacted yet); the first that cannot be loaded stops it, by name.
    /// A cluster's default namespace is its own `namespace`, else `namespace`, else its kubeconfig's.
    pub async fn connect(configs: &[ClusterConfig], namespace: Option<&str>) -> Result<Clusters, LoadError> {
        assert!(!configs.is_empty(), "the configuration names at least one cluster");
        let mut entries = Vec::new();
        for config in configs {
            let cluster = Cluster::connect(&config.source)
                .await
                .map_err(|source| LoadError { name: config.name.clone(), source })?;
            let namespace = config
                .namespace
                .clone()
                .or_else(|| namespace.map(str::to_string))
                .unwrap_or_else(|| cluster.default_namespace().to_string());
            entries.push(Entry {
                name: config.name.clone(),
                aliases: config.aliases.clone(),
                cluster,
                namespace,
                home: config.home,
                health: Default::default(),
            });
        }
        Ok(Clusters { entries, probing: tokio::sync::Mutex::new(()) })
    }

    /// The cluster of questions that name none.
    pub fn default(&self) -> &Entry {
        &self.entries[0]
    }

    /// The cluster `name` (kubechat's name or an alias, in any case) names.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        let name = name.to_lowercase();
        self.entries.iter().find(|e| e.name == name || e.aliases.contains(&name))
    }

    /// kubechat's name of the cluster a question names (`None`: the default); a name it does not know stays as it
    /// was typed, for the question to be refused naming the known ones.
    pub fn canonical(&self, named: Option<&str>) -> String {
        match named.map(str::trim).filter(|n| !n.is_empty()) {
            None => self.default().name.clone(),
            Some(name) => self.get(name).map_or_else(|| name.to_string(), |e| e.name.clone()),
        }
    }

    /// The namespace of questions about `cluster` that name none (the default cluster's for one kubechat does not
    /// know: such a question is refused anyway).
    pub fn namespace(&self, cluster: &str) -> &str {
        &self.get(cluster).unwrap_or(self.default()).namespace
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// The cluster kubechat runs in (where its Lease is), when it reads it: the first `in_cluster` entry, or the one
    /// cluster of a configuration without `clusters`.
    pub fn home(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.home)
    }

    /// Asks each cluster's API server whose last answer is older than `max_age` (`Duration::MAX`: only those never
    /// asked) whether it answers, all at once, each within `timeout`.
    pub async fn check(&self, timeout: Duration, max_age: Duration) {
        let _one_round = self.probing.lock().await;
        let stale = self.entries.iter().filter(|e| e.health().checked.is_none_or(|at| at.elapsed() >= max_age));
        futures::future::join_all(stale.map(|e| async move { e.record(e.cluster.reachable(timeout).await) })).await;
    }

    /// Asks every cluster's API server whether it answers, `every` so often, for as long as kubechat runs: readiness,
    /// `/clusters` and `/metrics` read what it found, so none of them waits on a cluster that does not answer.
    pub async fn watch(&self, timeout: Duration, every: Duration) {
        loop {
            self.check(timeout, Duration::ZERO).await;
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(name: &str, source: &str) -> RawCluster {
        let mut raw = RawCluster { name: name.into(), ..RawCluster::default() };
        match source {
            "in_cluster" => raw.in_cluster = true,
            "kubeconfig" => raw.kubeconfig = Some("/etc/kubechat/clusters/x/kubeconfig".into()),
            "dump" => raw.dump = Some("/tmp/dump".into()),
            _ => {}
        }
        raw
    }

    #[test]
    fn an_access_policy_by_default_covers_the_cluster_of_a_configuration_without_clusters() {
        assert_eq!(crate::access::Access::default().default_cluster, DEFAULT);
    }

    #[test]
    fn entries_name_one_source_and_unique_names() {
        let mut staging = raw("Staging", "kubeconfig");
        staging.context = Some("staging-admin".into());
        staging.aliases = vec!["stg-eu-1".into()];
        let clusters = validate(vec![raw("prod", "in_cluster"), staging]).unwrap();
        assert_eq!(clusters[1].name, "staging", "names are lowercased");
        assert!(matches!(&clusters[1].source, Source::Kubeconfig { context: Some(c), .. } if c == "staging-admin"));
        assert!(matches!(clusters[0].source, Source::InCluster), "in_cluster never falls back to a kubeconfig");
        for (entries, expected) in [
            (vec![raw("prod", "")], "setting clusters: prod: set exactly one of in_cluster: true, kubeconfig or dump"),
            (vec![raw("", "in_cluster")], "setting clusters: entry 1: cluster \"\" is not a cluster name"),
            (
                vec![raw("prod", "in_cluster"), raw("PROD", "dump")],
                "setting clusters: PROD: the name prod is taken by cluster prod",
            ),
            (
                vec![RawCluster { context: Some("x".into()), ..raw("prod", "in_cluster") }],
                "setting clusters: prod: context picks a kubeconfig's context: set kubeconfig too",
            ),
            (
                vec![RawCluster { in_cluster: true, ..raw("prod", "dump") }],
                "setting clusters: prod: set exactly one of in_cluster: true, kubeconfig or dump",
            ),
            (
                vec![RawCluster { namespace: Some("Shop".into()), ..raw("prod", "dump") }],
                "setting clusters: prod: namespace \"Shop\" is not a namespace name",
            ),
        ] {
            let err = validate(entries).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
        let mut aliased = raw("dev", "dump");
        aliased.aliases = vec!["stg-eu-1".into()];
        let err = validate(vec![
            raw("prod", "in_cluster"),
            RawCluster { aliases: vec!["stg-eu-1".into()], ..raw("staging", "dump") },
            aliased,
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("the name stg-eu-1 is taken by cluster staging"), "{err}");
    }

    #[tokio::test]
    async fn a_cluster_whose_credentials_cannot_be_loaded_stops_kubechat_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("staging.kubeconfig");
        std::fs::write(
            &kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: https://127.0.0.1:6443\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: staging\n  context:\n    cluster: s\n    user: u\ncurrent-context: staging\n",
        )
        .unwrap();
        let config = |name: &str, path: &std::path::Path, context: Option<&str>| {
            let source = Source::Kubeconfig { path: path.to_path_buf(), context: context.map(str::to_string) };
            ClusterConfig::new(name, source)
        };
        let ok = config("staging", &kubeconfig, Some("staging"));
        let clusters = Clusters::connect(std::slice::from_ref(&ok), Some("shop")).await.unwrap();
        assert_eq!((clusters.default().name.as_str(), clusters.namespace("staging")), ("staging", "shop"));
        let missing = config("prod", &dir.path().join("absent"), None);
        let Err(err) = Clusters::connect(&[ok.clone(), missing], None).await else { panic!("a missing kubeconfig") };
        assert!(err.to_string().starts_with("cannot load cluster prod: cannot read kubeconfig"), "{err}");
        let Err(err) = Clusters::connect(&[config("staging", &kubeconfig, Some("prod"))], None).await else {
            panic!("a missing context")
        };
        assert!(err.to_string().contains("it has no context \"prod\" (it has staging)"), "{err}");
        let Err(err) = Clusters::connect(&[ClusterConfig::new("home", Source::InCluster)], None).await else {
            panic!("not in a pod")
        };
        assert!(
            err.to_string().starts_with("cannot load cluster home: cannot load the in-cluster configuration"),
            "{err}"
        );
    }
}
