//! `kubechat serve`'s configuration: one YAML file plus `KUBECHAT_*` environment overrides, validated at start-up.
//!
//! Two steps: [`load`] reads the file over the defaults and applies the environment (every setting `a.b` can be set by
//! `KUBECHAT_A_B`), refusing unknown keys; [`RawConfig::validate`] checks what the values mean and names the setting at
//! fault. Every setting is documented in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::access::{Access, Rate, Rule};
use crate::alerts::{AlertmanagerConfig, RawAlertmanager};
use crate::cluster::{Limits, Source};
use crate::clusters::{self, ClusterConfig, RawCluster};
use crate::llm::{Api, LlmConfig};
use crate::matrix::{MatrixConfig, RawMatrix};
use crate::request::parse_namespace;
use crate::secret::Secret;
use crate::server::HttpAuth;
pub use crate::settings::ConfigError;
use crate::settings::{check_http_url, invalid};
use crate::slack::config::{RawSlack, SlackConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: String,
    pub namespace: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub dump: Option<PathBuf>,
    /// Named clusters, the first the default (docs/clusters.md); instead of `kubeconfig` and `dump`.
    pub clusters: Vec<RawCluster>,
    pub api_timeout_seconds: u64,
    /// The prompt directory; none: [`DEFAULT_PROMPTS`] when it holds prompts, else the prompts built into kubechat.
    pub prompts: Option<PathBuf>,
    pub prompts_reload_seconds: u64,
    /// On SIGTERM, how long the answers in flight may take to finish (docs/configuration.md).
    pub drain_seconds: u64,
    pub llm: RawLlm,
    pub reader: RawReader,
    pub slack: RawSlack,
    pub matrix: RawMatrix,
    pub access: RawAccess,
    pub limits: RawLimits,
    pub audit: RawAudit,
    pub metrics: RawMetrics,
    pub http: RawHttp,
    pub alertmanager: RawAlertmanager,
    pub leader: RawLeader,
}

/// Leader election among replicas (docs/configuration.md): off while `lease` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLeader {
    /// The Lease's name in kubechat's namespace; empty: no election, this process does everything.
    pub lease: String,
    /// This replica's name in the Lease; empty: `HOSTNAME` (the pod's name).
    pub identity: String,
    pub duration_seconds: u64,
    /// Where the other replicas reach this one, written into the Lease while it leads; empty: `http://` and the
    /// `POD_IP` variable (or the listen address, when it names one) with the listen port.
    pub address: String,
}

impl Default for RawLeader {
    fn default() -> RawLeader {
        RawLeader { lease: String::new(), identity: String::new(), duration_seconds: 15, address: String::new() }
    }
}

/// Leader election's settings, validated.
#[derive(Debug, Clone)]
pub struct Leader {
    pub lease: String,
    /// None: `HOSTNAME`, read at start-up.
    pub identity: Option<String>,
    pub duration: Duration,
    /// None: `POD_IP` or the listen address, read at start-up.
    pub address: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccess {
    pub contact: String,
    pub default: Vec<String>,
    pub default_clusters: Vec<String>,
    pub slack: Vec<Rule>,
    pub matrix: Vec<Rule>,
    pub http: Vec<Rule>,
}

impl Default for RawAccess {
    fn default() -> RawAccess {
        RawAccess {
            contact: "your kubechat operator".into(),
            default: Vec::new(),
            default_clusters: Vec::new(),
            slack: Vec::new(),
            matrix: Vec::new(),
            http: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub user_per_minute: u32,
    pub user_burst: u32,
    pub place_per_minute: u32,
    pub place_burst: u32,
    pub in_flight: usize,
}

impl Default for RawLimits {
    fn default() -> RawLimits {
        RawLimits {
            user_per_minute: 6,
            user_burst: 3,
            place_per_minute: 20,
            place_burst: 10,
            in_flight: crate::service::DEFAULT_IN_FLIGHT,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// Empty: standard output.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Empty: no metrics endpoint.
    pub listen: String,
}

impl Default for RawMetrics {
    fn default() -> RawMetrics {
        RawMetrics { listen: "0.0.0.0:9090".into() }
    }
}

/// How the HTTP API knows who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Token,
    Header,
    Open,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHttp {
    pub auth: AuthMode,
    /// `name:token` each; the name is the identity access rules match.
    pub tokens: Vec<Secret>,
    pub user_header: String,
    pub cors_origins: Vec<String>,
}

impl Default for RawHttp {
    fn default() -> RawHttp {
        RawHttp {
            auth: AuthMode::Token,
            tokens: Vec::new(),
            user_header: "X-Forwarded-User".into(),
            cors_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLlm {
    pub url: String,
    pub api: Api,
    pub model: String,
    pub num_ctx: usize,
    pub answer_tokens: usize,
    pub temperature: f32,
    pub keep_alive: String,
    pub fold_system: bool,
    pub concurrency: usize,
    pub connect_timeout_seconds: u64,
    pub first_token_timeout_seconds: u64,
    pub timeout_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReader {
    pub log_pods: usize,
    pub healthy_log_pods: usize,
    pub tail_lines: i64,
    pub limit_bytes: i64,
    pub concurrency: usize,
}

impl Default for RawConfig {
    fn default() -> RawConfig {
        RawConfig {
            listen: "0.0.0.0:8080".into(),
            namespace: None,
            kubeconfig: None,
            dump: None,
            clusters: Vec::new(),
            api_timeout_seconds: 10,
            prompts: None,
            prompts_reload_seconds: 5,
            drain_seconds: 120,
            llm: RawLlm::default(),
            reader: RawReader::default(),
            slack: RawSlack::default(),
            matrix: RawMatrix::default(),
            access: RawAccess::default(),
            limits: RawLimits::default(),
            audit: RawAudit::default(),
            metrics: RawMetrics::default(),
            http: RawHttp::default(),
            alertmanager: RawAlertmanager::default(),
            leader: RawLeader::default(),
        }
    }
}

impl Default for RawLlm {
    fn default() -> RawLlm {
        let d = LlmConfig::default();
        RawLlm {
            url: d.url,
            api: d.api,
            model: d.model,
            num_ctx: d.num_ctx,
            answer_tokens: d.answer_tokens,
            temperature: d.temperature,
            keep_alive: d.keep_alive,
            fold_system: d.fold_system,
            concurrency: d.concurrency,
            connect_timeout_seconds: d.connect_timeout.as_secs(),
            first_token_timeout_seconds: d.first_token_timeout.as_secs(),
            timeout_seconds: d.total_timeout.as_secs(),
        }
    }
}

impl Default for RawReader {
    fn default() -> RawReader {
        let d = Limits::default();
        RawReader {
            log_pods: d.log_pods,
            healthy_log_pods: d.healthy_log_pods,
            tail_lines: d.tail_lines,
            limit_bytes: d.limit_bytes,
            concurrency: d.reads,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The namespace of questions that name none; the cluster's default when unset.
    pub namespace: Option<String>,
    /// The clusters read, the first the default (setting `clusters`; else one, [`clusters::DEFAULT`], from the
    /// settings `kubeconfig` and `dump`).
    pub clusters: Vec<ClusterConfig>,
    pub prompts: PromptSource,
    pub prompts_reload: Duration,
    /// On shutdown, how long answers in flight may take to finish before their askers are told to ask again.
    pub drain: Duration,
    pub llm: LlmConfig,
    pub limits: Limits,
    /// Set when `slack.enabled`.
    pub slack: Option<SlackConfig>,
    /// Set when `matrix.enabled`.
    pub matrix: Option<MatrixConfig>,
    pub access: Access,
    /// Token buckets per user and per channel or room; none when disabled (0 per minute).
    pub user_rate: Option<Rate>,
    pub place_rate: Option<Rate>,
    /// Questions answered at once, all front-ends together; past it, askers are told kubechat is busy.
    pub in_flight: usize,
    /// The audit log file; none for standard output.
    pub audit: Option<PathBuf>,
    /// The metrics endpoint's address; none when disabled.
    pub metrics: Option<SocketAddr>,
    pub http_auth: HttpAuth,
    pub cors_origins: Vec<String>,
    pub alertmanager: AlertmanagerConfig,
    /// Set when `leader.lease` is.
    pub leader: Option<Leader>,
}

/// Where the manifests mount the prompts' ConfigMap: read when the `prompts` setting names no directory.
pub const DEFAULT_PROMPTS: &str = "/etc/kubechat/prompts";

/// Where the prompts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSource {
    /// A directory of prompt files (the ConfigMap Argo CD delivers), reloaded when they change.
    Dir(PathBuf),
    /// The prompts compiled into kubechat.
    Builtin,
}

impl PromptSource {
    /// The directory `given`, else `default_dir` when it holds prompts, else the prompts compiled into kubechat.
    pub fn pick(given: Option<PathBuf>, default_dir: &Path) -> PromptSource {
        match given {
            Some(dir) => PromptSource::Dir(dir),
            None if default_dir.join("diagnose.md").exists() => PromptSource::Dir(default_dir.to_path_buf()),
            None => PromptSource::Builtin,
        }
    }
}

impl Config {
    /// The demo: the web chat on the cluster compiled into kubechat, open to whoever can reach `listen`, with no
    /// chat platform, metrics endpoint or rate limit.
    pub fn demo(listen: SocketAddr, llm: LlmConfig, prompts: PromptSource) -> Config {
        Config {
            listen,
            namespace: Some("imagepull".to_string()),
            clusters: vec![ClusterConfig::new("demo", Source::Demo)],
            prompts,
            prompts_reload: Duration::from_secs(5),
            drain: Duration::from_secs(RawConfig::default().drain_seconds),
            llm,
            limits: Limits::default(),
            slack: None,
            matrix: None,
            access: Access::open(),
            user_rate: None,
            place_rate: None,
            in_flight: crate::service::DEFAULT_IN_FLIGHT,
            audit: None,
            metrics: None,
            http_auth: HttpAuth::Open,
            cors_origins: Vec::new(),
            alertmanager: RawAlertmanager::default().validate().expect("the defaults are valid"),
            leader: None,
        }
    }
}

/// Reads `file` (when given) over the defaults, then applies the `KUBECHAT_*` variables of `env`.
pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<RawConfig, ConfigError> {
    let mut value = serde_json::to_value(RawConfig::default()).expect("the defaults serialize");
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let parse = |message: String| ConfigError::Parse { path: path.to_path_buf(), message };
        let from_file: Value = serde_saphyr::from_str(&text).map_err(|e| parse(e.to_string()))?;
        merge(&mut value, from_file, "").map_err(parse)?;
    }
    let defaults = serde_json::to_value(RawConfig::default()).expect("the defaults serialize");
    let settings = leaves(&defaults, "");
    for (name, raw) in env {
        let Some(setting) = setting_named(&settings, &name) else { continue };
        // An empty variable (an optional Secret key that is absent, say) leaves the setting as it was.
        if raw.trim().is_empty() {
            continue;
        }
        // A text setting takes the variable as it is (YAML would read `off` or `no` as false, `1.0` as a number).
        let text = setting.split('.').fold(&defaults, |v, part| &v[part]).is_string();
        let parsed: Value = if text {
            Value::String(raw)
        } else {
            match serde_saphyr::from_str(&raw) {
                Ok(Value::Null) | Err(_) => Value::String(raw),
                Ok(parsed) => parsed,
            }
        };
        set(&mut value, setting, parsed);
    }
    serde_json::from_value(value).map_err(|e| invalid("(configuration)", e.to_string()))
}

/// `llm.num_ctx` → `LLM_NUM_CTX`.
pub fn env_name(setting: &str) -> String {
    setting.replace('.', "_").to_uppercase()
}

/// The `KUBECHAT_*` variables kubechat reads besides the settings' own: the configuration file, the prompts directory
/// of the command line, and the prompts' Git revision (docs/prompts.md).
pub const OTHER_VARIABLES: &[&str] = &["KUBECHAT_CONFIG", "KUBECHAT_PROMPTS", "KUBECHAT_PROMPTS_REVISION"];

/// Every setting's dotted name.
fn settings() -> Vec<String> {
    leaves(&serde_json::to_value(RawConfig::default()).expect("the defaults serialize"), "")
}

/// The one of `settings` that the `KUBECHAT_*` variable `name` sets, if any.
fn setting_named<'a>(settings: &'a [String], name: &str) -> Option<&'a String> {
    let rest = name.strip_prefix("KUBECHAT_")?;
    settings.iter().find(|setting| env_name(setting) == rest)
}

/// The setting a `KUBECHAT_*` variable sets (`KUBECHAT_LLM_NUM_CTX` → `llm.num_ctx`), if any.
pub fn variable_setting(name: &str) -> Option<String> {
    setting_named(&settings(), name).cloned()
}

/// The `KUBECHAT_*` variables of `env` that kubechat does not read: a misspelt key in the Secret, say, which would
/// otherwise be ignored without a word.
pub fn unknown_variables(env: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let settings = settings();
    let mut unknown: Vec<String> = env
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| {
            name.starts_with("KUBECHAT_")
                && !OTHER_VARIABLES.contains(&name.as_str())
                && setting_named(&settings, name).is_none()
        })
        .collect();
    unknown.sort();
    unknown
}

/// Every setting's dotted name.
pub fn leaves(value: &Value, prefix: &str) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                if v.is_object() { leaves(v, &name) } else { vec![name] }
            })
            .collect(),
        _ => vec![prefix.to_string()],
    }
}

fn merge(into: &mut Value, from: Value, prefix: &str) -> Result<(), String> {
    match from {
        Value::Null => Ok(()),
        Value::Object(map) => {
            for (key, v) in map {
                let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                let Some(slot) = into.get_mut(&key) else {
                    return Err(format!("unknown setting {name}; see docs/configuration.md"));
                };
                if slot.is_object() {
                    merge(slot, v, &name)?;
                } else {
                    *slot = v;
                }
            }
            Ok(())
        }
        other => Err(format!("expected a mapping of settings, found {other}")),
    }
}

fn set(value: &mut Value, setting: &str, new: Value) {
    let mut slot = value;
    for part in setting.split('.') {
        slot = &mut slot[part];
    }
    *slot = new;
}

impl RawConfig {
    /// Checks the values, naming the setting at fault.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let listen = self
            .listen
            .parse()
            .map_err(|e| invalid("listen", format!("{:?} is not an address like 0.0.0.0:8080: {e}", self.listen)))?;
        check_http_url("llm.url", &self.llm.url, format!("{:?} must start with http:// or https://", self.llm.url))?;
        if self.llm.model.trim().is_empty() {
            return Err(invalid("llm.model", "is empty"));
        }
        if self.llm.num_ctx < self.llm.answer_tokens + 1024 {
            return Err(invalid(
                "llm.num_ctx",
                format!(
                    "{} leaves too little room beside llm.answer_tokens ({}): the prompt and the context need at least 1024 tokens",
                    self.llm.num_ctx, self.llm.answer_tokens
                ),
            ));
        }
        if !(0.0..=2.0).contains(&self.llm.temperature) {
            return Err(invalid("llm.temperature", format!("{} is outside 0 to 2", self.llm.temperature)));
        }
        for (setting, value) in [
            ("llm.concurrency", self.llm.concurrency as u64),
            ("llm.connect_timeout_seconds", self.llm.connect_timeout_seconds),
            ("llm.first_token_timeout_seconds", self.llm.first_token_timeout_seconds),
            ("llm.timeout_seconds", self.llm.timeout_seconds),
            ("api_timeout_seconds", self.api_timeout_seconds),
            ("prompts_reload_seconds", self.prompts_reload_seconds),
            ("drain_seconds", self.drain_seconds),
            ("reader.log_pods", self.reader.log_pods as u64),
            ("reader.tail_lines", self.reader.tail_lines.max(0) as u64),
            ("reader.limit_bytes", self.reader.limit_bytes.max(0) as u64),
            ("reader.concurrency", self.reader.concurrency as u64),
            ("limits.in_flight", self.limits.in_flight as u64),
        ] {
            if value == 0 {
                return Err(invalid(setting, "must be more than 0"));
            }
        }
        if self.dump.is_some() && self.kubeconfig.is_some() {
            return Err(invalid("dump", "set dump or kubeconfig, not both"));
        }
        let named = !self.clusters.is_empty();
        if named && (self.dump.is_some() || self.kubeconfig.is_some()) {
            return Err(invalid(
                "clusters",
                "set clusters, or kubeconfig or dump for one cluster, not both: name that cluster in clusters",
            ));
        }
        let clusters = if named {
            clusters::validate(self.clusters)?
        } else {
            let source = match (&self.dump, &self.kubeconfig) {
                (Some(path), _) => Source::Dump { path: path.clone(), forbid: Vec::new() },
                (None, Some(path)) => Source::Kubeconfig { path: path.clone(), context: None },
                (None, None) => Source::Infer,
            };
            // Whatever it is reached by, the one cluster is kubechat's own: its Lease is there.
            vec![ClusterConfig { home: true, ..ClusterConfig::new(clusters::DEFAULT, source) }]
        };
        if let Some(ns) = &self.namespace {
            parse_namespace(ns).map_err(|e| invalid("namespace", e.to_string()))?;
        }
        let llm = LlmConfig {
            url: self.llm.url,
            api: self.llm.api,
            model: self.llm.model,
            num_ctx: self.llm.num_ctx,
            answer_tokens: self.llm.answer_tokens,
            temperature: self.llm.temperature,
            keep_alive: self.llm.keep_alive,
            fold_system: self.llm.fold_system,
            connect_timeout: Duration::from_secs(self.llm.connect_timeout_seconds),
            first_token_timeout: Duration::from_secs(self.llm.first_token_timeout_seconds),
            total_timeout: Duration::from_secs(self.llm.timeout_seconds),
            concurrency: self.llm.concurrency,
        };
        let limits = Limits {
            call_timeout: Duration::from_secs(self.api_timeout_seconds),
            log_pods: self.reader.log_pods,
            healthy_log_pods: self.reader.healthy_log_pods,
            tail_lines: self.reader.tail_lines,
            limit_bytes: self.reader.limit_bytes,
            reads: self.reader.concurrency,
            ..Limits::default()
        };
        let slack = if self.slack.enabled { Some(self.slack.validate()?) } else { None };
        let matrix = if self.matrix.enabled {
            if !cfg!(feature = "matrix") {
                return Err(invalid("matrix.enabled", "this kubechat was built without the matrix feature"));
            }
            Some(self.matrix.validate()?)
        } else {
            None
        };
        let access = Access {
            slack: self.access.slack,
            matrix: self.access.matrix,
            http: self.access.http,
            // The receivers' own, added where the policy is built (`App::build`).
            alertmanager: Vec::new(),
            default: self.access.default,
            default_clusters: self.access.default_clusters,
            default_cluster: clusters[0].name.clone(),
            contact: self.access.contact,
        };
        for (setting, rules) in
            [("access.slack", &access.slack), ("access.matrix", &access.matrix), ("access.http", &access.http)]
        {
            if let Some(rule) = rules.iter().find(|r| r.place.is_empty() || r.namespaces.is_empty()) {
                return Err(invalid(
                    setting,
                    format!("{rule:?} needs a channel, room or user and at least one namespace"),
                ));
            }
            for rule in rules {
                check_cluster_globs(setting, &rule.clusters, &clusters)?;
            }
        }
        check_cluster_globs("access.default_clusters", &access.default_clusters, &clusters)?;
        let rate = |per_minute: u32, burst: u32| (per_minute > 0).then_some(Rate { burst: burst.max(1), per_minute });
        let audit = Some(PathBuf::from(&self.audit.path)).filter(|p| !p.as_os_str().is_empty());
        let metrics = match self.metrics.listen.trim() {
            "" | "off" => None,
            address => Some(address.parse().map_err(|e| {
                invalid("metrics.listen", format!("{address:?} is not an address like 0.0.0.0:9090: {e}"))
            })?),
        };
        let http_auth = match self.http.auth {
            AuthMode::Open => HttpAuth::Open,
            AuthMode::Header if self.http.user_header.trim().is_empty() => {
                return Err(invalid(
                    "http.user_header",
                    "is empty; name the header your proxy sets, e.g. X-Forwarded-User",
                ));
            }
            AuthMode::Header => HttpAuth::Header(self.http.user_header.trim().to_lowercase()),
            AuthMode::Token => {
                let mut tokens = Vec::new();
                for entry in &self.http.tokens {
                    match entry.expose().split_once(':') {
                        Some((name, token)) if !name.trim().is_empty() && token.trim().len() >= 16 => {
                            tokens.push((name.trim().to_string(), Secret::new(token.trim())));
                        }
                        _ => {
                            return Err(invalid(
                                "http.tokens",
                                "each entry must be NAME:TOKEN with a token of 16 characters or more",
                            ));
                        }
                    }
                }
                HttpAuth::Tokens(tokens)
            }
        };
        let alertmanager = self.alertmanager.validate()?;
        for receiver in &alertmanager.receivers {
            check_cluster_globs("alertmanager.receivers", &receiver.clusters, &clusters)?;
        }
        let leader = if self.leader.lease.is_empty() {
            None
        } else {
            parse_namespace(&self.leader.lease)
                .map_err(|e| invalid("leader.lease", format!("{:?} is not a Lease name: {e}", self.leader.lease)))?;
            if self.dump.is_some() {
                return Err(invalid("leader.lease", "leader election needs a cluster; a dump has no Leases"));
            }
            if self.leader.duration_seconds < 3 {
                return Err(invalid("leader.duration_seconds", "must be at least 3"));
            }
            let address = Some(self.leader.address.trim().trim_end_matches('/').to_string()).filter(|a| !a.is_empty());
            if let Some(address) = &address {
                check_http_url(
                    "leader.address",
                    address,
                    format!("{address:?} must be a URL like http://10.1.2.3:8080"),
                )?;
            }
            Some(Leader {
                lease: self.leader.lease,
                identity: Some(self.leader.identity).filter(|i| !i.is_empty()),
                duration: Duration::from_secs(self.leader.duration_seconds),
                address,
            })
        };
        Ok(Config {
            leader,
            access,
            user_rate: rate(self.limits.user_per_minute, self.limits.user_burst),
            place_rate: rate(self.limits.place_per_minute, self.limits.place_burst),
            in_flight: self.limits.in_flight,
            audit,
            metrics,
            http_auth,
            cors_origins: self.http.cors_origins,
            alertmanager,
            slack,
            matrix,
            listen,
            namespace: self.namespace,
            clusters,
            prompts: PromptSource::pick(self.prompts, Path::new(DEFAULT_PROMPTS)),
            prompts_reload: Duration::from_secs(self.prompts_reload_seconds),
            drain: Duration::from_secs(self.drain_seconds),
            llm,
            limits,
        })
    }
}

/// Every cluster glob of an entry matches a cluster kubechat reads: a misspelt name would otherwise grant nothing,
/// without a word.
fn check_cluster_globs(setting: &str, globs: &[String], clusters: &[ClusterConfig]) -> Result<(), ConfigError> {
    for pattern in globs {
        if !clusters.iter().any(|c| crate::access::glob(pattern, &c.name)) {
            let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
            return Err(invalid(
                setting,
                format!("cluster {pattern:?} matches none of the clusters kubechat reads ({})", names.join(", ")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_file_then_the_environment_override_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubechat.yaml");
        std::fs::write(&file, "listen: 127.0.0.1:9000\nllm:\n  model: mistral:7b-instruct\n  num_ctx: 16384\n")
            .unwrap();
        let raw = load(
            Some(&file),
            env(&[("KUBECHAT_LLM_NUM_CTX", "4096"), ("KUBECHAT_LLM_API", "openai"), ("HOME", "/root")]),
        )
        .unwrap();
        let config = raw.validate().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.llm.model, "mistral:7b-instruct");
        assert_eq!(config.llm.num_ctx, 4096, "the environment wins over the file");
        assert_eq!(config.llm.api, Api::Openai);
        assert_eq!(config.limits.log_pods, 10, "defaults fill the rest");
    }

    #[test]
    fn mistakes_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubechat.yaml");
        std::fs::write(&file, "llm:\n  modle: x\n").unwrap();
        let err = load(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown setting llm.modle"), "{err}");
        for (pairs, expected) in [
            (&[("KUBECHAT_LISTEN", "everywhere")][..], "setting listen:"),
            (&[("KUBECHAT_LLM_URL", "ftp://x")][..], "setting llm.url:"),
            (&[("KUBECHAT_LLM_NUM_CTX", "1024")][..], "setting llm.num_ctx:"),
            (&[("KUBECHAT_LLM_CONCURRENCY", "0")][..], "setting llm.concurrency: must be more than 0"),
            (&[("KUBECHAT_NAMESPACE", "Shop")][..], "setting namespace:"),
            (&[("KUBECHAT_SLACK_ENABLED", "true")][..], "setting slack.bot_token:"),
            (
                &[("KUBECHAT_SLACK_ENABLED", "true"), ("KUBECHAT_SLACK_BOT_TOKEN", "xoxb-1")][..],
                "setting slack.app_token:",
            ),
            (
                &[
                    ("KUBECHAT_SLACK_ENABLED", "true"),
                    ("KUBECHAT_SLACK_BOT_TOKEN", "xoxb-1"),
                    ("KUBECHAT_SLACK_MODE", "http"),
                ][..],
                "setting slack.signing_secret:",
            ),
            (
                &[
                    ("KUBECHAT_SLACK_ENABLED", "true"),
                    ("KUBECHAT_SLACK_BOT_TOKEN", "xoxb-1"),
                    ("KUBECHAT_SLACK_APP_TOKEN", "xapp-1"),
                    ("KUBECHAT_SLACK_CHANNEL_NAMESPACES", "[C1=Payments]"),
                ][..],
                "setting slack.channel_namespaces:",
            ),
        ] {
            let err = load(None, env(pairs)).unwrap().validate().unwrap_err().to_string();
            assert!(err.starts_with(expected), "{pairs:?}: {err}");
        }
        let slack = load(
            None,
            env(&[
                ("KUBECHAT_SLACK_ENABLED", "true"),
                ("KUBECHAT_SLACK_BOT_TOKEN", "xoxb-very-secret"),
                ("KUBECHAT_SLACK_APP_TOKEN", "xapp-very-secret"),
                ("KUBECHAT_SLACK_CHANNEL_NAMESPACES", "[C0123=payments, C0456=shop]"),
            ]),
        )
        .unwrap()
        .validate()
        .unwrap()
        .slack
        .unwrap();
        assert_eq!(slack.channel_namespaces[1], ("C0456".to_string(), "shop".to_string()));
        assert!(!format!("{slack:?}").contains("very-secret"), "secrets never print");
        let matrix = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("KUBECHAT_MATRIX_ENABLED", "true"),
                ("KUBECHAT_MATRIX_HOMESERVER_URL", "https://matrix.example.org"),
                ("KUBECHAT_MATRIX_USER_ID", "@kubechat:example.org"),
                ("KUBECHAT_MATRIX_PASSWORD", "hunter2-secret"),
            ];
            pairs.extend_from_slice(extra);
            load(None, env(&pairs)).unwrap().validate()
        };
        let config = matrix(&[]).unwrap().matrix.unwrap();
        assert_eq!(config.allowed_servers, ["example.org"], "the bot's own server by default");
        assert!(!format!("{config:?}").contains("hunter2"), "secrets never print");
        for (extra, expected) in [
            (("KUBECHAT_MATRIX_USER_ID", "kubechat"), "setting matrix.user_id:"),
            (("KUBECHAT_MATRIX_ALLOWED_ROOMS", "[ops]"), "setting matrix.allowed_rooms:"),
            (("KUBECHAT_MATRIX_HOMESERVER_URL", "matrix.example.org"), "setting matrix.homeserver_url:"),
        ] {
            let err = matrix(&[extra]).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{extra:?}: {err}");
        }
        let off = load(None, env(&[("KUBECHAT_METRICS_LISTEN", "off"), ("KUBECHAT_ACCESS_CONTACT", "no")])).unwrap();
        assert_eq!((off.metrics.listen.as_str(), off.access.contact.as_str()), ("off", "no"), "text stays text");
        assert!(off.validate().unwrap().metrics.is_none());
        let no_password = env(&[
            ("KUBECHAT_MATRIX_ENABLED", "true"),
            ("KUBECHAT_MATRIX_HOMESERVER_URL", "https://matrix.example.org"),
            ("KUBECHAT_MATRIX_USER_ID", "@kubechat:example.org"),
            ("KUBECHAT_MATRIX_PASSWORD", ""),
        ]);
        let err = load(None, no_password).unwrap().validate().unwrap_err().to_string();
        assert!(err.starts_with("setting matrix.password:"), "an empty variable is no password: {err}");
        let err = load(None, env(&[("KUBECHAT_LLM_API", "bard")])).unwrap_err().to_string();
        assert!(err.contains("bard"), "{err}");
    }

    #[test]
    fn clusters_are_named_and_access_entries_name_clusters_that_exist() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kubechat.yaml");
        let yaml = |access: &str| {
            format!(
                "clusters:\n  - name: prod\n    in_cluster: true\n  - name: staging\n    kubeconfig: /etc/kubechat/clusters/staging/kubeconfig\n    namespace: shop\naccess:\n{access}"
            )
        };
        std::fs::write(&file, yaml("  slack: [{channel: C1, namespaces: [\"*\"], clusters: [\"staging*\"]}]\n"))
            .unwrap();
        let config = load(Some(&file), env(&[])).unwrap().validate().unwrap();
        assert_eq!(config.clusters.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["prod", "staging"]);
        assert_eq!(config.access.default_cluster, "prod", "the first is the default");
        std::fs::write(&file, yaml("  slack: [{channel: C1, namespaces: [\"*\"], clusters: [stagign]}]\n")).unwrap();
        let err = load(Some(&file), env(&[])).unwrap().validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "setting access.slack: cluster \"stagign\" matches none of the clusters kubechat reads (prod, staging)"
        );
        std::fs::write(&file, yaml("  default_clusters: [dev]\n")).unwrap();
        let err = load(Some(&file), env(&[])).unwrap().validate().unwrap_err().to_string();
        assert!(err.starts_with("setting access.default_clusters: cluster \"dev\""), "{err}");
        let both =
            env(&[("KUBECHAT_KUBECONFIG", "/kubeconfig"), ("KUBECHAT_CLUSTERS", "[{name: a, in_cluster: true}]")]);
        let err = load(None, both).unwrap().validate().unwrap_err().to_string();
        assert!(err.starts_with("setting clusters: set clusters, or kubeconfig or dump"), "{err}");
        let one = load(None, env(&[])).unwrap().validate().unwrap();
        assert_eq!(one.clusters[0].name, "default", "without clusters, one cluster named default");
        assert!(matches!(one.clusters[0].source, Source::Infer));
    }

    #[test]
    fn every_setting_is_documented() {
        let docs = include_str!("../docs/configuration.md");
        for setting in leaves(&serde_json::to_value(RawConfig::default()).unwrap(), "") {
            assert!(docs.contains(&format!("`{setting}`")), "docs/configuration.md lacks {setting}");
            assert!(
                docs.contains(&format!("`KUBECHAT_{}`", env_name(&setting))),
                "docs/configuration.md lacks the variable of {setting}"
            );
        }
    }

    #[test]
    fn variables_that_name_no_setting_are_reported() {
        assert_eq!(variable_setting("KUBECHAT_LLM_NUM_CTX").as_deref(), Some("llm.num_ctx"));
        assert_eq!(variable_setting("KUBECHAT_SLACK_BOT_TOKEN").as_deref(), Some("slack.bot_token"));
        assert_eq!(variable_setting("LLM_NUM_CTX"), None);
        let unknown = unknown_variables(env(&[
            ("KUBECHAT_SLACK_BOT_TOKEN", "xoxb-1"),
            ("KUBECHAT_SLACK_TOKEN", "xoxb-1"),
            ("KUBECHAT_CONFIG", "/etc/kubechat.yaml"),
            ("KUBECHAT_PROMPTS_REVISION", "abc"),
            ("KUBECHAT_MATRIX_PASWORD", "x"),
            ("HOME", "/root"),
        ]));
        assert_eq!(unknown, ["KUBECHAT_MATRIX_PASWORD", "KUBECHAT_SLACK_TOKEN"]);
    }
}
