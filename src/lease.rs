//! One leader among kubechat's replicas, by a `coordination.k8s.io/v1` Lease in kubechat's namespace: work that must
//! happen once (the Slack Socket Mode connection) is done by the holder only.
//!
//! The Lease API itself, not a crate: it is three calls (get, create, replace with the resourceVersion read), and the
//! rules are client-go's. A replica holds the Lease while it renews it every third of `leader.duration_seconds`; the
//! others take it over once they have seen it unchanged for a whole duration (measured on their own clock, so clock
//! skew between nodes does not matter), or at once when the holder releases it on a graceful shutdown. A holder that
//! cannot renew for a whole duration stops leading before anyone else may start.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's name (setting `leader.lease`).
    pub name: String,
    pub namespace: String,
    /// This replica's name in the Lease (the pod's name).
    pub identity: String,
    pub duration: Duration,
}

/// What this replica knows of the Lease.
struct Seen {
    resource_version: String,
    since: Instant,
}

/// An election, ready to run: the Lease in the client's namespace (the pod's, in the cluster).
pub struct Election {
    client: kube::Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
}

impl Election {
    pub fn new(client: kube::Client, lease: &str, identity: String, duration: Duration) -> Election {
        let namespace = client.default_namespace().to_string();
        let config = LeaseConfig { name: lease.to_string(), namespace, identity, duration };
        tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "electing a leader by a Lease");
        Election { client, config, leading: watch::Sender::new(false) }
    }

    /// Whether this replica leads, as it changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// Runs the election until `stop` turns true.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        run(self.client, self.config, self.leading, stop).await
    }
}

/// Holds or watches the Lease until `stop` turns true, telling `leading` whether this replica leads; on stop, releases
/// the Lease if it holds it, so another replica takes over at once.
async fn run(client: kube::Client, config: LeaseConfig, leading: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let renew_every = config.duration / 3;
    let retry_every = (config.duration / 3).min(Duration::from_secs(2));
    let mut seen: Option<Seen> = None;
    let mut renewed: Option<Instant> = None;
    loop {
        let attempted = attempt(&api, &config, &mut seen).await;
        match attempted {
            Ok(Some(true)) => {
                renewed = Some(Instant::now());
                if !*leading.borrow() {
                    tracing::info!(lease = %config.name, identity = %config.identity, "leading: this replica holds the Lease");
                }
                leading.send_replace(true);
            }
            Ok(Some(false)) => {
                if *leading.borrow() {
                    tracing::warn!(lease = %config.name, "another replica holds the Lease now; stepping down");
                }
                leading.send_replace(false);
            }
            // Another write came first (a conflict), or the API server failed: read again soon, leading as before,
            // but step down before another replica may take over.
            Ok(None) | Err(_) => {
                if let Err(e) = &attempted {
                    tracing::warn!(lease = %config.name, "cannot read or renew the Lease: {e}");
                }
                if *leading.borrow() && renewed.is_none_or(|at| at.elapsed() >= config.duration * 2 / 3) {
                    tracing::warn!(lease = %config.name, "could not renew the Lease in time; stepping down");
                    leading.send_replace(false);
                }
            }
        }
        let wait = if *leading.borrow() { renew_every } else { retry_every };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        match release(&api, &config).await {
            Ok(()) => tracing::info!(lease = %config.name, "released the Lease for another replica"),
            Err(e) => {
                tracing::warn!(lease = %config.name, "cannot release the Lease; another replica takes it when it expires: {e}")
            }
        }
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn seconds(duration: Duration) -> i32 {
    duration.as_secs().clamp(1, i32::MAX as u64) as i32
}

/// One round: creates the Lease, renews it, or takes it over when it expired; whether this replica holds it after,
/// or none when another write came first and the Lease must be read again.
async fn attempt(api: &Api<Lease>, config: &LeaseConfig, seen: &mut Option<Seen>) -> Result<Option<bool>, kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(config.name.clone()), ..ObjectMeta::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(seconds(config.duration)),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Some(true)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(e),
        };
    };
    let version = lease.metadata.resource_version.clone().unwrap_or_default();
    if seen.as_ref().is_none_or(|s| s.resource_version != version) {
        *seen = Some(Seen { resource_version: version, since: Instant::now() });
    }
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let duration = spec.lease_duration_seconds.map(|s| Duration::from_secs(s.max(1) as u64)).unwrap_or(config.duration);
    let expired = seen.as_ref().is_some_and(|s| s.since.elapsed() >= duration);
    if holder.as_deref() == Some(config.identity.as_str()) {
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(seconds(config.duration));
    } else if holder.is_none() || expired {
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(now());
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(seconds(config.duration));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    } else {
        return Ok(Some(false));
    }
    match api.replace(&config.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Some(true)),
        // Someone else wrote it first: read it again next round.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up: no holder, so the next replica to look takes it.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    let mut lease = api.get(&config.name).await?;
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(1);
    api.replace(&config.name, &PostParams::default(), &lease).await.map(drop)
}
