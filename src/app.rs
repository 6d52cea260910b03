//! The composition root: [`App::build`] turns a validated [`Config`] into a running kubechat (the cluster, the prompts,
//! the model, the policy, and each front-end the configuration turns on), and [`App::serve`] serves it until shutdown.
//! `kubechat serve`, `kubechat demo`, the integration tests and the benchmarks all start kubechat through here, so
//! there is one wiring to keep right.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::access::Buckets;
use crate::alerts::{self, Alerts};
use crate::audit::AuditLog;
use crate::cluster::{Cluster, ConnectError, Source};
use crate::clusters::{Clusters, LoadError};
use crate::config::{Config, PromptSource};
use crate::llm::{Llm, LlmError};
use crate::prompt::{PromptError, PromptStore, Prompts};
use crate::server::{self, Http, HttpAuth};
use crate::service::{AppState, Policy, Replica};
use crate::slack::{self, Slack, SlackMode};

/// Why kubechat cannot start; each names the setting to look at.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot load the prompts from {} (setting prompts): {source}", path.display())]
    Prompts { path: PathBuf, source: PromptError },
    #[error("{0}")]
    Llm(#[from] LlmError),
    #[error("{0}")]
    Cluster(#[from] LoadError),
    #[error("cannot open the audit log {} (setting audit.path): {source}", path.display())]
    Audit { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {address} (setting metrics.listen): {source}")]
    Metrics { address: SocketAddr, source: std::io::Error },
    #[error("cannot connect to Slack (settings slack.bot_token and slack.api_url): {0}")]
    Slack(#[from] slack::api::ApiError),
    #[cfg(feature = "matrix")]
    #[error("cannot connect to Matrix at {homeserver}: {source}")]
    Matrix { homeserver: String, source: crate::matrix::StartError },
    #[error("setting leader.identity is empty and so is HOSTNAME: name this replica (the pod's name)")]
    Identity,
    #[error(
        "setting leader.lease: the Lease is kept in the cluster kubechat runs in, and no entry of clusters is in_cluster: {0}"
    )]
    Lease(ConnectError),
}

/// A kubechat ready to serve.
pub struct App {
    state: Arc<AppState>,
    router: Router,
    slack: Option<Arc<Slack>>,
    socket_mode: bool,
    #[cfg(feature = "matrix")]
    matrix: Option<Arc<crate::matrix::Matrix>>,
    metrics: Option<TcpListener>,
    /// Leader election, when `leader.lease` is set.
    lease: Option<crate::lease::Election>,
    _prompt_watch: Option<KillOnDrop>,
}

impl App {
    /// Connects to what `config` names and builds every front-end it turns on; fails naming the setting at fault.
    pub async fn build(config: Config) -> Result<App, BuildError> {
        crate::install_tls_provider();
        let (prompts, watch) = match &config.prompts {
            PromptSource::Dir(path) => {
                let store =
                    PromptStore::open(path).map_err(|source| BuildError::Prompts { path: path.clone(), source })?;
                tracing::info!(
                    "prompts from {}, read again when they change (every {} s)",
                    path.display(),
                    config.prompts_reload.as_secs()
                );
                let store = Arc::new(store);
                let watch = KillOnDrop(store.watch(config.prompts_reload));
                (store, Some(watch))
            }
            PromptSource::Builtin => {
                tracing::info!(
                    "prompts: the ones built into kubechat (no prompts directory configured, and none at {})",
                    crate::config::DEFAULT_PROMPTS
                );
                (Arc::new(PromptStore::fixed(Prompts::builtin())), None)
            }
        };
        let llm = Llm::new(config.llm.clone())?;
        let clusters = Clusters::connect(&config.clusters, config.namespace.as_deref()).await?;
        if config.clusters.len() > 1 {
            let others: Vec<&str> = clusters.names().skip(1).collect();
            let default = &clusters.default().name;
            tracing::info!("reading {} clusters: {default} (the default), {}", others.len() + 1, others.join(", "));
        }
        let lease = match &config.leader {
            None => None,
            Some(leader) => {
                let identity = leader
                    .identity
                    .clone()
                    .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
                    .ok_or(BuildError::Identity)?;
                let address = leader.address.clone().or_else(|| replica_address(config.listen));
                // The Lease is in the cluster kubechat runs in, whether or not questions may read it.
                let client = match clusters.home() {
                    Some(home) => home.cluster.client().clone(),
                    None => Cluster::connect(&Source::InCluster).await.map_err(BuildError::Lease)?.client().clone(),
                };
                let election = crate::lease::Election::new(client, &leader.lease, identity, leader.duration, address);
                Some(election)
            }
        };
        let audit = match &config.audit {
            Some(path) => AuditLog::file(path).map_err(|source| BuildError::Audit { path: path.clone(), source })?,
            None => AuditLog::stdout(),
        };
        match &config.http_auth {
            HttpAuth::Open => tracing::warn!(
                "http.auth is open: anyone who can reach kubechat's HTTP API may ask, as `anonymous`; it answers only at loopback names"
            ),
            HttpAuth::Header(name) => tracing::warn!(
                "http.auth trusts the {name} header: only the authenticating proxy may reach kubechat's HTTP port (a NetworkPolicy), or anyone can claim any identity"
            ),
            HttpAuth::Tokens(_) => {}
        }
        // A receiver that names namespaces is held to them; one that names none, to its destination's entry.
        let mut access = config.access.clone();
        access.alertmanager = config
            .alertmanager
            .receivers
            .iter()
            .filter(|r| !r.namespaces.is_empty())
            .map(|r| crate::access::Rule {
                place: r.name.clone(),
                namespaces: r.namespaces.clone(),
                users: vec![],
                clusters: r.clusters.clone(),
            })
            .collect();
        #[cfg(feature = "matrix")]
        if let Some(matrix) = &config.matrix {
            crate::matrix::resolve_aliases(&matrix.homeserver_url, &mut access.matrix)
                .await
                .map_err(|source| BuildError::Matrix { homeserver: matrix.homeserver_url.clone(), source })?;
        }
        let policy = Policy {
            access,
            user_rate: config.user_rate.map(Buckets::new),
            place_rate: config.place_rate.map(Buckets::new),
            in_flight: crate::service::InFlight::new(config.in_flight),
            audit,
        };
        let leader = lease.as_ref().map_or_else(crate::lease::Leadership::alone, |e| e.leadership());
        let replica = Replica { drain: config.drain, leader };
        let state = AppState::new(clusters, prompts, llm, config.limits.clone(), policy, replica);
        let http = Http { core: state.clone(), auth: config.http_auth.clone(), cors_origins: config.cors_origins };
        let mut router = server::router(http);
        let metrics = match config.metrics {
            Some(address) => {
                Some(TcpListener::bind(address).await.map_err(|source| BuildError::Metrics { address, source })?)
            }
            None => None,
        };
        let mut slack = None;
        let mut socket_mode = false;
        if let Some(slack_config) = config.slack {
            let mode = slack_config.mode;
            let started = Slack::start(slack_config, state.clone()).await?;
            match mode {
                SlackMode::Http => router = router.merge(slack::http::routes(started.clone())),
                SlackMode::Socket => socket_mode = true,
            }
            tracing::info!("answering on Slack ({mode:?} mode)");
            slack = Some(started);
        }
        #[cfg(feature = "matrix")]
        let matrix = match config.matrix {
            Some(matrix_config) => {
                let homeserver = matrix_config.homeserver_url.clone();
                let matrix = crate::matrix::Matrix::start(matrix_config, state.clone())
                    .await
                    .map_err(|source| BuildError::Matrix { homeserver: homeserver.clone(), source })?;
                tracing::info!("answering on Matrix at {homeserver}");
                Some(matrix)
            }
            None => None,
        };
        if !config.alertmanager.token.is_empty() {
            let alerts = Alerts::new(
                config.alertmanager,
                state.clone(),
                slack.clone(),
                #[cfg(feature = "matrix")]
                matrix.clone(),
            );
            router = router.merge(alerts::routes(alerts));
            tracing::info!("taking Alertmanager's webhook at /alertmanager");
        }
        Ok(App {
            state,
            router,
            slack,
            socket_mode,
            #[cfg(feature = "matrix")]
            matrix,
            metrics,
            lease,
            _prompt_watch: watch,
        })
    }

    /// The core: the clusters, the prompts, the model, the policy and the metrics.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The Slack front-end, when `slack.enabled`.
    pub fn slack(&self) -> Option<&Arc<Slack>> {
        self.slack.as_ref()
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves the HTTP API on `listener`, `/metrics` on its own port, Slack's Socket Mode and Matrix's sync, until
    /// `shutdown` resolves; then drains ([`crate::drain`]): `/readyz` turns 503, no new question is taken, Socket
    /// Mode and Matrix stop receiving, and the answers in flight finish (or, past `drain_seconds`, their askers are
    /// told to ask again) before the server and the background front-ends stop.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut background = Vec::new();
        if let Some(metrics) = self.metrics {
            let router = server::metrics_router(self.state.clone());
            background.push(KillOnDrop(tokio::spawn(async move {
                if let Err(e) = axum::serve(metrics, router).await {
                    tracing::error!("the metrics server failed: {e}");
                }
            })));
        }
        // Whether each cluster answers, for readiness, `/clusters` and `/metrics`.
        let state = self.state.clone();
        background.push(KillOnDrop(tokio::spawn(async move {
            state.clusters.watch(state.limits.call_timeout, crate::service::READY_CACHE).await;
        })));
        // The front-ends that receive questions; on shutdown each stops receiving by itself.
        let mut receiving = Vec::new();
        if let Some(election) = self.lease {
            // The Lease is let go as soon as shutdown begins: the next leader opens Socket Mode at once, while this
            // replica finishes its answers.
            let closing = self.state.drain.subscribe_closing();
            receiving.push(KillOnDrop(tokio::spawn(election.run(closing))));
        }
        if let (true, Some(slack)) = (self.socket_mode, &self.slack) {
            receiving.push(KillOnDrop(tokio::spawn(slack::socket::run(slack.clone()))));
        }
        #[cfg(feature = "matrix")]
        if let Some(matrix) = &self.matrix {
            receiving.push(KillOnDrop(tokio::spawn(matrix.clone().run())));
        }
        let state = self.state.clone();
        let drained = async move {
            shutdown.await;
            state.drain.drain().await;
        };
        let served = server::serve(listener, self.router, drained).await;
        // Let them finish stopping (closing the WebSocket, noting in the Matrix store where to resume) before the
        // process exits.
        for mut task in receiving {
            if tokio::time::timeout(STOP_TIME, &mut task.0).await.is_err() {
                tracing::warn!("a front-end did not stop within {} s", STOP_TIME.as_secs());
            }
        }
        drop(background);
        served
    }
}

/// Logs to standard error at `RUST_LOG`, else at `default_level` ([`log_filter`]); colours only on a terminal without
/// `NO_COLOR`.
pub fn init_logging(default_level: &str) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), default_level);
    // Colour only for a person at a terminal: a log file, a pipe or `kubectl logs` gets plain lines, and so does a
    // terminal with NO_COLOR set (no-color.org).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .init();
}

/// The log filter: `rust_log` when set, else `default_level`, and for libraries it does not name, only what the
/// operator can act on. The kube client logs a body it cannot decode at WARN, and a body may hold a pod's env values:
/// its errors only. matrix-sdk logs every failed request at ERROR, the 404s of the secret storage and key backup that
/// kubechat does not use included, and its crypto warns on every sync that no key backup is set up: kubechat logs the
/// Matrix failures that matter itself (a sync, a send, a login).
pub fn log_filter(rust_log: Option<&str>, default_level: &str) -> String {
    let mut filter = rust_log.filter(|f| !f.trim().is_empty()).unwrap_or(default_level).to_string();
    let quiet = [
        ("kube_client", "kube_client=error"),
        ("matrix_sdk", "matrix_sdk::http_client=off,matrix_sdk_crypto::backups=error"),
    ];
    for (library, directives) in quiet {
        if !filter.contains(library) {
            filter.push(',');
            filter.push_str(directives);
        }
    }
    filter
}

/// Ctrl-C or SIGTERM (what Kubernetes sends on pod shutdown).
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate => {},
    }
    eprintln!("shutting down: taking no new questions, finishing the answers in flight");
}

/// Where the other replicas reach this one when `leader.address` is not set: the pod's address (`POD_IP`, from the
/// downward API), else the listen address when it names one, at the listen port.
fn replica_address(listen: SocketAddr) -> Option<String> {
    let pod_ip = std::env::var("POD_IP").ok().and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok());
    let ip = pod_ip.or_else(|| Some(listen.ip()).filter(|ip| !ip.is_unspecified()))?;
    Some(format!("http://{}", SocketAddr::new(ip, listen.port())))
}

/// How long a front-end may take to stop receiving once the answers are drained.
const STOP_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// Stops a background task when dropped.
struct KillOnDrop(tokio::task::JoinHandle<()>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
