//! One leader among kubechat's replicas, by a `coordination.k8s.io/v1` Lease in kubechat's namespace: work that must
//! happen once (the Slack Socket Mode connection, Alertmanager's diagnoses, the deduplication of Slack's deliveries)
//! is done by the holder only. The holder writes the address the other replicas reach it at into the Lease
//! (annotation `kubechat.io/address`), and a follower hands such work to it over HTTP ([`Leadership::to_leader`]).
//! What that work must remember across a handover (the alerts diagnosed, for their cooldowns and resolved notes; the
//! Slack events seen, for Slack's retries) the holder writes into the Lease too (annotations `kubechat.io/memory-…`),
//! and the next holder recalls it.
//!
//! The Lease API itself, not a crate: it is three calls (get, create, replace with the resourceVersion read), and the
//! rules are client-go's. A replica holds the Lease while it renews it every third of `leader.duration_seconds`; the
//! others take it over once they have seen it unchanged for a whole duration (measured on their own clock, so clock
//! skew between nodes does not matter), or at once when the holder releases it on a graceful shutdown. A holder that
//! cannot renew for a whole duration stops leading before anyone else may start.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
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
    /// Where the other replicas reach this one (`http://10.1.2.3:8080`), written into the Lease while it leads.
    pub address: Option<String>,
}

/// The annotation on the Lease that holds its holder's address.
pub const ADDRESS: &str = "kubechat.io/address";

/// The annotations on the Lease that hold what the once-only work remembers, one per kind of work
/// ([`Leadership::remember`]): `kubechat.io/memory-alerts`, say.
pub const MEMORY: &str = "kubechat.io/memory-";

/// The largest memory of one kind written into the Lease: annotations are limited to 256 KiB in all, and the Lease is
/// written at every renewal.
pub const MEMORY_LIMIT: usize = 64 * 1024;

/// What the leader's work remembers, by kind, on its way into the Lease and out of it.
#[derive(Debug, Default)]
struct Memory {
    /// What this replica writes into the Lease while it holds it.
    written: std::collections::BTreeMap<&'static str, String>,
    /// What the previous holder left, read when this replica took the Lease over, until the work recalls it.
    recalled: std::collections::BTreeMap<String, String>,
}

type SharedMemory = std::sync::Arc<std::sync::Mutex<Memory>>;

/// The header a forwarded request carries, naming the replica that forwarded it: it is never forwarded twice.
pub const FORWARDED_BY: &str = "x-kubechat-forwarded-by";

/// Who holds the Lease, as this replica last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Not read yet, or nobody holds it (between a release and the next take-over).
    Unknown,
    /// This replica.
    Me,
    /// Another replica, reachable at `address` when it wrote one.
    Other { identity: String, address: Option<String> },
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
    holder: watch::Sender<Holder>,
    memory: SharedMemory,
}

impl Election {
    pub fn new(
        client: kube::Client,
        lease: &str,
        identity: String,
        duration: Duration,
        address: Option<String>,
    ) -> Election {
        let namespace = client.default_namespace().to_string();
        let config = LeaseConfig { name: lease.to_string(), namespace, identity, duration, address };
        tracing::info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, address = ?config.address, "electing a leader by a Lease");
        if config.address.is_none() {
            tracing::warn!(
                "leader.address is not set and neither POD_IP nor a listen address names this replica: when it leads, the others cannot hand it alerts or Slack's deliveries"
            );
        }
        Election { client, config, holder: watch::Sender::new(Holder::Unknown), memory: SharedMemory::default() }
    }

    /// What the front-ends need to know of the election.
    pub fn leadership(&self) -> Leadership {
        Leadership {
            holder: Some(self.holder.subscribe()),
            identity: self.config.identity.clone(),
            http: forwarder(),
            memory: self.memory.clone(),
        }
    }

    /// Runs the election until `stop` turns true.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        run(self.client, self.config, self.holder, self.memory, stop).await
    }
}

/// Holds or watches the Lease until `stop` turns true, telling `holder` who leads; on stop, releases the Lease if it
/// holds it, so another replica takes over at once.
async fn run(
    client: kube::Client,
    config: LeaseConfig,
    holder: watch::Sender<Holder>,
    memory: SharedMemory,
    mut stop: watch::Receiver<bool>,
) {
    let leading = |holder: &watch::Sender<Holder>| *holder.borrow() == Holder::Me;
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let renew_every = config.duration / 3;
    let retry_every = (config.duration / 3).min(Duration::from_secs(2));
    let mut seen: Option<Seen> = None;
    let mut renewed: Option<Instant> = None;
    loop {
        let attempted = attempt(&api, &config, &memory, &mut seen).await;
        match attempted {
            Ok(Some(Holder::Me)) => {
                renewed = Some(Instant::now());
                if !leading(&holder) {
                    tracing::info!(lease = %config.name, identity = %config.identity, "leading: this replica holds the Lease");
                }
                holder.send_replace(Holder::Me);
            }
            Ok(Some(other)) => {
                if leading(&holder) {
                    tracing::warn!(lease = %config.name, "another replica holds the Lease now; stepping down");
                }
                holder.send_if_modified(|h| std::mem::replace(h, other.clone()) != other);
            }
            // Another write came first (a conflict), or the API server failed: read again soon, leading as before,
            // but step down before another replica may take over.
            Ok(None) | Err(_) => {
                if let Err(e) = &attempted {
                    tracing::warn!(lease = %config.name, "cannot read or renew the Lease: {e}");
                }
                if leading(&holder) && renewed.is_none_or(|at| at.elapsed() >= config.duration * 2 / 3) {
                    tracing::warn!(lease = %config.name, "could not renew the Lease in time; stepping down");
                    holder.send_replace(Holder::Unknown);
                }
            }
        }
        let wait = if leading(&holder) { renew_every } else { retry_every };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if holder.send_replace(Holder::Unknown) == Holder::Me {
        match release(&api, &config, &memory).await {
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

/// The Lease's metadata as its holder writes it: its address and its memory among the annotations.
fn mark(metadata: &mut ObjectMeta, config: &LeaseConfig, memory: &SharedMemory) {
    let annotations = metadata.annotations.get_or_insert_with(Default::default);
    match &config.address {
        Some(address) => annotations.insert(ADDRESS.to_string(), address.clone()),
        None => annotations.remove(ADDRESS),
    };
    for (kind, written) in &memory.lock().expect("not poisoned").written {
        annotations.insert(format!("{MEMORY}{kind}"), written.clone());
    }
}

/// One round: creates the Lease, renews it, or takes it over when it expired; who holds it after, or none when
/// another write came first and the Lease must be read again.
async fn attempt(
    api: &Api<Lease>,
    config: &LeaseConfig,
    memory: &SharedMemory,
    seen: &mut Option<Seen>,
) -> Result<Option<Holder>, kube::Error> {
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let mut metadata = ObjectMeta { name: Some(config.name.clone()), ..ObjectMeta::default() };
        mark(&mut metadata, config, memory);
        let lease = Lease {
            metadata,
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
            Ok(_) => Ok(Some(Holder::Me)),
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
        // Taking over: what the last holder left is this replica's to recall, and stays in the Lease as it is until
        // the work, having recalled it, writes its own (what this replica wrote when it last led is older).
        let left: std::collections::BTreeMap<String, String> = lease
            .metadata
            .annotations
            .iter()
            .flatten()
            .filter_map(|(key, value)| Some((key.strip_prefix(MEMORY)?.to_string(), value.clone())))
            .collect();
        let mut memory = memory.lock().expect("not poisoned");
        memory.written.clear();
        memory.recalled = left;
        drop(memory);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(now());
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(seconds(config.duration));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    } else {
        let address = lease.metadata.annotations.as_ref().and_then(|a| a.get(ADDRESS)).cloned();
        let identity = holder.unwrap_or_default();
        return Ok(Some(Holder::Other { identity, address }));
    }
    mark(&mut lease.metadata, config, memory);
    match api.replace(&config.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(Some(Holder::Me)),
        // Someone else wrote it first: read it again next round.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives the Lease up, with the memory as it is now: no holder, so the next replica to look takes it.
async fn release(api: &Api<Lease>, config: &LeaseConfig, memory: &SharedMemory) -> Result<(), kube::Error> {
    let mut lease = api.get(&config.name).await?;
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = Some(now());
    spec.lease_duration_seconds = Some(1);
    mark(&mut lease.metadata, config, memory);
    api.replace(&config.name, &PostParams::default(), &lease).await.map(drop)
}

/// How long a follower waits for the leader to take a request it hands over: the leader only acknowledges (the work
/// runs in the background), and Slack gives up on an acknowledgement after 3 s.
const FORWARD_TIME: Duration = Duration::from_millis(1500);

fn forwarder() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(FORWARD_TIME)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client builds")
}

/// Whether this replica does the work that must happen once, and where the one that does is.
#[derive(Clone)]
pub struct Leadership {
    /// None: no election; this process does everything.
    holder: Option<watch::Receiver<Holder>>,
    identity: String,
    http: reqwest::Client,
    memory: SharedMemory,
}

/// What became of a request handed to the leader.
pub enum ToLeader {
    /// This replica leads (or there is no election): do the work here.
    Here,
    /// The leader took it and answered this.
    Answered { status: StatusCode, content_type: Option<header::HeaderValue>, body: Bytes },
    /// No leader could take it now; why, for the log and the reply. The sender should deliver it again later.
    Unavailable(String),
}

impl Leadership {
    /// No election: this process is the only one.
    pub fn alone() -> Leadership {
        Leadership { holder: None, identity: String::new(), http: forwarder(), memory: SharedMemory::default() }
    }

    /// Keeps the `memory` of one `kind` of work in the Lease while this replica holds it, for the next holder to
    /// recall; refused (and logged) over [`MEMORY_LIMIT`]. It is made only on the leader: without an election nothing
    /// outlives the process, and a follower's memory is not written (a replica taking over starts from the Lease's).
    pub fn remember(&self, kind: &'static str, memory: impl FnOnce() -> String) {
        if self.holder.as_ref().is_none_or(|h| *h.borrow() != Holder::Me) {
            return;
        }
        let memory = memory();
        if memory.len() > MEMORY_LIMIT {
            tracing::warn!(kind, bytes = memory.len(), "the memory to keep in the Lease is over {MEMORY_LIMIT} bytes");
            return;
        }
        self.memory.lock().expect("not poisoned").written.insert(kind, memory);
    }

    /// What the previous holder left in the Lease of one `kind` of work when this replica took it over, once.
    pub fn recall(&self, kind: &str) -> Option<String> {
        self.memory.lock().expect("not poisoned").recalled.remove(kind)
    }

    /// Whether this replica does the once-only work now.
    pub fn leads(&self) -> bool {
        self.holder.as_ref().is_none_or(|h| *h.borrow() == Holder::Me)
    }

    /// Waits until this replica leads (at once without an election); false when the election has ended first.
    pub async fn until_leading(&self) -> bool {
        match &self.holder {
            None => true,
            Some(holder) => holder.clone().wait_for(|h| *h == Holder::Me).await.is_ok(),
        }
    }

    /// Waits until this replica no longer leads; without an election, never.
    pub async fn until_following(&self) {
        match &self.holder {
            None => std::future::pending().await,
            Some(holder) => {
                let _ = holder.clone().wait_for(|h| *h != Holder::Me).await;
            }
        }
    }

    /// Hands the request (`path`, its headers and body) to the leader, unless this replica leads. A request another
    /// replica forwarded is never forwarded again: a replica that no longer leads refuses it, and the sender retries.
    pub async fn to_leader(&self, path: &str, headers: &HeaderMap, body: &Bytes) -> ToLeader {
        let Some(holder) = &self.holder else { return ToLeader::Here };
        let holder = holder.borrow().clone();
        let (identity, address) = match holder {
            Holder::Me => return ToLeader::Here,
            _ if headers.contains_key(FORWARDED_BY) => {
                return ToLeader::Unavailable(format!(
                    "{} handed this to {} as the leader, which it no longer is",
                    headers[FORWARDED_BY].to_str().unwrap_or("a replica"),
                    self.identity
                ));
            }
            Holder::Unknown => {
                return ToLeader::Unavailable("no replica leads at the moment (the Lease is changing hands)".into());
            }
            Holder::Other { identity, address: None } => {
                return ToLeader::Unavailable(format!(
                    "the leader {identity} wrote no address into the Lease (setting leader.address)"
                ));
            }
            Holder::Other { identity, address: Some(address) } => (identity, address),
        };
        let mut forwarded = HeaderMap::new();
        for (name, value) in headers {
            if !matches!(*name, header::HOST | header::CONTENT_LENGTH | header::CONNECTION | header::TRANSFER_ENCODING)
            {
                forwarded.append(name.clone(), value.clone());
            }
        }
        let by = header::HeaderValue::from_str(&self.identity).unwrap_or(header::HeaderValue::from_static("replica"));
        forwarded.insert(FORWARDED_BY, by);
        let url = format!("{}{path}", address.trim_end_matches('/'));
        let sent = self.http.post(&url).headers(forwarded).body(body.clone()).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return ToLeader::Unavailable(format!("cannot reach the leader {identity} at {address}: {e}")),
        };
        let status = response.status();
        let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
        match response.bytes().await {
            Ok(body) => ToLeader::Answered { status, content_type, body },
            Err(e) => ToLeader::Unavailable(format!("the leader {identity} at {address} did not answer whole: {e}")),
        }
    }
}

impl ToLeader {
    /// The leader's answer as this replica's, or a 503 that tells the sender to deliver again; none when the work
    /// is this replica's.
    pub fn response(self) -> Option<axum::response::Response> {
        use axum::response::IntoResponse;
        match self {
            ToLeader::Here => None,
            ToLeader::Answered { status, content_type, body } => {
                let mut response = (status, body).into_response();
                if let Some(content_type) = content_type {
                    response.headers_mut().insert(header::CONTENT_TYPE, content_type);
                }
                Some(response)
            }
            ToLeader::Unavailable(why) => {
                tracing::warn!("cannot hand a request to the leader; asking the sender to deliver it again: {why}");
                let body = axum::Json(serde_json::json!({"error": format!("{why}; deliver it again shortly")}));
                Some((StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "5")], body).into_response())
            }
        }
    }
}
