//! The inner wall: who may see which cluster and namespace through kubechat. The API server's RBAC decides what
//! kubechat can read; this decides what each asker may see of it. Each Slack channel, Matrix room and HTTP identity
//! maps to cluster and namespace globs, optionally for listed users only; anything not configured gets the default
//! entry, which is empty (deny) unless configured. An entry that names no clusters covers the default cluster (the
//! first of `clusters`) only, so adding a cluster opens it to nobody until an entry names it. A refusal names the
//! namespace and whom to ask, and nothing else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Where a question comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Slack,
    Matrix,
    Http,
    /// Alertmanager's webhook: the receiver is the user, the destination (`slack:C123`, `matrix:!room:server`) the
    /// place; held to the receiver's namespaces, else to the destination's entry.
    Alertmanager,
    /// The command line, as whoever runs it: their own kubeconfig decides what they read.
    Cli,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Slack => "slack",
            Platform::Matrix => "matrix",
            Platform::Http => "http",
            Platform::Alertmanager => "alertmanager",
            Platform::Cli => "cli",
        }
    }
}

/// Who asks, from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker {
    pub platform: Platform,
    /// The Slack channel or Matrix room; none over HTTP.
    pub place: Option<String>,
    /// The Slack user id, Matrix user id, or HTTP identity (a token's name, or the proxy's user header).
    pub user: String,
}

/// One entry: a place (a channel, a room, or an HTTP identity; `*` globs) and the clusters and namespaces it may read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Slack channel id, Matrix room id or alias, or HTTP identity; a glob.
    #[serde(alias = "channel", alias = "room", alias = "user")]
    pub place: String,
    /// Namespace globs (`payments`, `shop-*`, `*`).
    pub namespaces: Vec<String>,
    /// When set, the entry applies to these users only (Slack user ids, Matrix ids).
    #[serde(default)]
    pub users: Vec<String>,
    /// Cluster globs (kubechat's names: `prod`, `staging-*`, `*`) the namespaces are in; none: the default cluster.
    #[serde(default)]
    pub clusters: Vec<String>,
}

/// The configured policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub slack: Vec<Rule>,
    pub matrix: Vec<Rule>,
    pub http: Vec<Rule>,
    /// Alertmanager receivers that name the namespaces they may diagnose (place: the receiver's name); a receiver
    /// that names none is held to its destination channel's or room's entry.
    pub alertmanager: Vec<Rule>,
    /// Namespaces for askers no entry matches; empty denies them.
    pub default: Vec<String>,
    /// The clusters of the default entry's namespaces; none: the default cluster.
    pub default_clusters: Vec<String>,
    /// The cluster an entry that names none covers: the first of `clusters`.
    pub default_cluster: String,
    /// Whom to ask for access, named in every refusal.
    pub contact: String,
}

impl Default for Access {
    /// Nobody may read anything; the one cluster of a configuration without `clusters` is the default.
    fn default() -> Access {
        Access {
            slack: Vec::new(),
            matrix: Vec::new(),
            http: Vec::new(),
            alertmanager: Vec::new(),
            default: Vec::new(),
            default_clusters: Vec::new(),
            // `clusters::DEFAULT`, which this leaf module does not import (a test holds them equal).
            default_cluster: "default".to_string(),
            contact: String::new(),
        }
    }
}

/// What one matching entry grants: namespace globs in the clusters its globs match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub clusters: Vec<String>,
    pub namespaces: Vec<String>,
}

impl Grant {
    pub fn covers_cluster(&self, cluster: &str) -> bool {
        self.clusters.iter().any(|g| glob(g, cluster))
    }
}

/// Why a question is not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you may not diagnose namespace {namespace} from here; ask {contact} for access")]
    Namespace { namespace: String, contact: String },
    /// A cluster kubechat does not read, or (the same to the asker) one they may not see; `known` lists those they may.
    #[error("kubechat reads no cluster named {cluster} that you may ask about; {}", known_clusters(.known, .contact))]
    UnknownCluster { cluster: String, known: Vec<String>, contact: String },
    #[error("you are asking faster than kubechat answers; try again in {} s", whole_seconds(*retry_after))]
    RateLimited { retry_after: Duration },
    #[error("kubechat is answering as many questions as it takes at once ({in_flight}); please ask again in a minute")]
    Busy { in_flight: usize },
}

/// A wait in whole seconds, rounded up (at least one): asking again after the seconds said is never too early.
pub fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn known_clusters(known: &[String], contact: &str) -> String {
    match known {
        [] => format!("ask {contact} for access"),
        [one] => format!("name {one}, or leave the cluster out"),
        many => format!("name one of {}", many.join(", ")),
    }
}

/// `*` matches any run of characters, `?` one character; everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

impl Access {
    /// Everything to everyone: the demo and local use, when configured so.
    pub fn open() -> Access {
        Access {
            default: vec!["*".into()],
            default_clusters: vec!["*".into()],
            contact: "the kubechat operator".into(),
            ..Access::default()
        }
    }

    /// What `asker` may read: the grants of the entries that match it, else the default entry's.
    pub fn grants(&self, asker: &Asker) -> Vec<Grant> {
        let rules = match asker.platform {
            Platform::Slack => &self.slack,
            Platform::Matrix => &self.matrix,
            Platform::Http => &self.http,
            Platform::Alertmanager => return self.alert_grants(asker),
            Platform::Cli => return vec![Grant { clusters: vec!["*".into()], namespaces: vec!["*".into()] }],
        };
        let place = asker.place.as_deref().unwrap_or(&asker.user);
        let matching: Vec<&Rule> = rules
            .iter()
            .filter(|r| glob(&r.place, place))
            .filter(|r| r.users.is_empty() || r.users.iter().any(|u| glob(u, &asker.user)))
            .collect();
        self.grants_of(&matching)
    }

    /// The grants of `rules`, or the default entry's when there are none.
    fn grants_of(&self, rules: &[&Rule]) -> Vec<Grant> {
        if rules.is_empty() {
            return vec![Grant {
                clusters: self.clusters_or_default(&self.default_clusters),
                namespaces: self.default.clone(),
            }];
        }
        rules
            .iter()
            .map(|r| Grant { clusters: self.clusters_or_default(&r.clusters), namespaces: r.namespaces.clone() })
            .collect()
    }

    fn clusters_or_default(&self, clusters: &[String]) -> Vec<String> {
        if clusters.is_empty() { vec![self.default_cluster.clone()] } else { clusters.to_vec() }
    }

    /// An alert's: its receiver's when it names namespaces, else those of the channel or room it is posted to
    /// (entries for listed users only do not apply: no user asked), else the default.
    fn alert_grants(&self, asker: &Asker) -> Vec<Grant> {
        let receiver: Vec<&Rule> = self.alertmanager.iter().filter(|r| r.place == asker.user).collect();
        if !receiver.is_empty() {
            return self.grants_of(&receiver);
        }
        let destination = asker.place.as_deref().and_then(|p| p.split_once(':'));
        let rules = match destination {
            Some(("slack", _)) => &self.slack,
            Some(("matrix", _)) => &self.matrix,
            _ => return self.grants_of(&[]),
        };
        let place = destination.map_or("", |(_, place)| place);
        let matching: Vec<&Rule> = rules.iter().filter(|r| r.users.is_empty() && glob(&r.place, place)).collect();
        self.grants_of(&matching)
    }

    /// The namespace globs `asker` may read in `cluster`.
    pub fn globs(&self, asker: &Asker, cluster: &str) -> Vec<String> {
        let grants = self.grants(asker);
        grants.into_iter().filter(|g| g.covers_cluster(cluster)).flat_map(|g| g.namespaces).collect()
    }

    pub fn check(&self, asker: &Asker, cluster: &str, namespace: &str) -> Result<(), Refusal> {
        if self.globs(asker, cluster).iter().any(|g| glob(g, namespace)) {
            Ok(())
        } else {
            Err(Refusal::Namespace { namespace: namespace.to_string(), contact: self.contact.clone() })
        }
    }

    /// The namespaces of `all` in `cluster` that `asker` may read, for pickers and help.
    pub fn visible(&self, asker: &Asker, cluster: &str, all: &[String]) -> Vec<String> {
        let globs = self.globs(asker, cluster);
        all.iter().filter(|ns| globs.iter().any(|g| glob(g, ns))).cloned().collect()
    }

    /// The clusters of `all` where `asker` may read some namespace.
    pub fn clusters<'a>(&self, asker: &Asker, all: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let grants = self.grants(asker);
        all.into_iter()
            .filter(|c| grants.iter().any(|g| !g.namespaces.is_empty() && g.covers_cluster(c)))
            .map(str::to_string)
            .collect()
    }
}

/// A token bucket's settings: `burst` questions at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub burst: u32,
    pub per_minute: u32,
}

/// Token buckets by key (a user, a channel); the least recently used are forgotten past a bound.
pub struct Buckets {
    rate: Rate,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Keys remembered before the idle ones are dropped; a dropped key starts full again, which errs on the kind side.
const BUCKETS: usize = 50_000;

impl Buckets {
    pub fn new(rate: Rate) -> Buckets {
        Buckets { rate, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says how long until one is there.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let per_second = f64::from(self.rate.per_minute) / 60.0;
        let burst = f64::from(self.rate.burst);
        let mut buckets = self.buckets.lock().expect("not poisoned");
        if buckets.len() >= BUCKETS && !buckets.contains_key(key) {
            let full = |(tokens, at): &(f64, Instant)| tokens + at.elapsed().as_secs_f64() * per_second >= burst;
            buckets.retain(|_, bucket| !full(bucket));
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        if per_second <= 0.0 {
            return Err(Duration::from_secs(3600));
        }
        Err(Duration::from_secs_f64((1.0 - *tokens) / per_second).max(Duration::from_secs(1)))
    }

    /// Returns the token a question took from `key` when the question is refused after all (by another bucket, or
    /// because kubechat is busy): a refusal does not count against the asker.
    pub fn give_back(&self, key: &str) {
        let burst = f64::from(self.rate.burst);
        if let Some((tokens, _)) = self.buckets.lock().expect("not poisoned").get_mut(key) {
            *tokens = (*tokens + 1.0).min(burst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asker(platform: Platform, place: Option<&str>, user: &str) -> Asker {
        Asker { platform, place: place.map(str::to_string), user: user.to_string() }
    }

    #[test]
    fn globs_match_like_shells() {
        assert!(glob("shop-*", "shop-eu"));
        assert!(glob("*", "anything"));
        assert!(glob("pay?ents", "payments"));
        assert!(glob("*-prod", "shop-eu-prod"));
        assert!(!glob("shop-*", "payments"));
        assert!(!glob("shop", "shop-eu"));
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXbYY"));
    }

    #[test]
    fn places_map_to_namespaces_and_the_rest_is_denied() {
        let access = Access {
            slack: vec![
                Rule {
                    place: "C-PAY".into(),
                    namespaces: vec!["payments".into(), "payments-*".into()],
                    users: vec![],
                    clusters: vec![],
                },
                Rule {
                    place: "C-OPS".into(),
                    namespaces: vec!["*".into()],
                    users: vec!["U-SRE".into()],
                    clusters: vec![],
                },
            ],
            matrix: vec![Rule {
                place: "#ops:example.org".into(),
                namespaces: vec!["shop".into()],
                users: vec![],
                clusters: vec![],
            }],
            http: vec![Rule { place: "alice".into(), namespaces: vec!["*".into()], users: vec![], clusters: vec![] }],
            alertmanager: vec![],
            default: vec![],
            default_clusters: vec![],
            default_cluster: "prod".into(),
            contact: "#platform-help".into(),
        };
        let pay = asker(Platform::Slack, Some("C-PAY"), "U-DEV");
        assert_eq!(access.check(&pay, "prod", "payments-eu"), Ok(()));
        let refused = access.check(&pay, "prod", "kube-system").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "you may not diagnose namespace kube-system from here; ask #platform-help for access"
        );
        assert!(access.check(&asker(Platform::Slack, Some("C-OPS"), "U-SRE"), "prod", "kube-system").is_ok());
        assert!(
            access.check(&asker(Platform::Slack, Some("C-OPS"), "U-DEV"), "prod", "kube-system").is_err(),
            "users only"
        );
        assert!(
            access.check(&asker(Platform::Slack, Some("C-RANDOM"), "U-SRE"), "prod", "payments").is_err(),
            "deny by default"
        );
        assert!(access.check(&asker(Platform::Matrix, Some("#ops:example.org"), "@a:x"), "prod", "shop").is_ok());
        assert!(access.check(&asker(Platform::Http, None, "alice"), "prod", "anything").is_ok());
        assert!(access.check(&asker(Platform::Http, None, "mallory"), "prod", "shop").is_err());
        let all: Vec<String> = ["payments", "payments-eu", "shop", "kube-system"].map(String::from).to_vec();
        assert_eq!(access.visible(&pay, "prod", &all), ["payments", "payments-eu"]);
        let open = Access { default: vec!["shop".into()], ..access };
        assert!(open.check(&asker(Platform::Slack, Some("C-RANDOM"), "U"), "prod", "shop").is_ok(), "a default entry");
    }

    #[test]
    fn buckets_refill_and_say_when() {
        let buckets = Buckets::new(Rate { burst: 2, per_minute: 60 });
        assert!(buckets.take("u").is_ok());
        assert!(buckets.take("u").is_ok());
        let wait = buckets.take("u").unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2), "{wait:?}");
        assert!(buckets.take("v").is_ok(), "buckets are per key");
        buckets.give_back("u");
        assert!(buckets.take("u").is_ok(), "a token given back is there to take");
        assert!(buckets.take("u").is_err());
        for _ in 0..5 {
            buckets.give_back("v");
        }
        assert!(
            buckets.take("v").is_ok() && buckets.take("v").is_ok() && buckets.take("v").is_err(),
            "never past the burst"
        );
    }

    #[test]
    fn retry_hints_round_up() {
        let said = |wait| Refusal::RateLimited { retry_after: wait }.to_string();
        assert!(
            said(Duration::from_millis(1200)).ends_with("try again in 2 s"),
            "{}",
            said(Duration::from_millis(1200))
        );
        assert!(said(Duration::from_secs(2)).ends_with("try again in 2 s"));
        assert!(said(Duration::from_millis(1)).ends_with("try again in 1 s"));
        assert!(said(Duration::ZERO).ends_with("try again in 1 s"));
    }

    #[test]
    fn alerts_are_held_to_their_receiver_or_their_destination() {
        let access = Access {
            slack: vec![
                Rule { place: "CPAY".into(), namespaces: vec!["payments".into()], users: vec![], clusters: vec![] },
                Rule {
                    place: "CPAY".into(),
                    namespaces: vec!["*".into()],
                    users: vec!["UADMIN".into()],
                    clusters: vec![],
                },
            ],
            alertmanager: vec![Rule {
                place: "team-shop".into(),
                namespaces: vec!["shop-*".into()],
                users: vec![],
                clusters: vec![],
            }],
            default_cluster: "prod".into(),
            ..Access::default()
        };
        let alert = |receiver: &str, place: &str| asker(Platform::Alertmanager, Some(place), receiver);
        assert!(access.check(&alert("team-shop", "slack:CPAY"), "prod", "shop-eu").is_ok());
        assert!(
            access.check(&alert("team-shop", "slack:CPAY"), "prod", "payments").is_err(),
            "the receiver's own namespaces"
        );
        assert!(access.check(&alert("team-pay", "slack:CPAY"), "prod", "payments").is_ok(), "the channel's entry");
        assert!(access.check(&alert("team-pay", "slack:CPAY"), "prod", "kube-system").is_err(), "not a user's entry");
        assert!(access.check(&alert("team-pay", "slack:COTHER"), "prod", "payments").is_err(), "deny by default");
        assert!(access.check(&alert("team-pay", "matrix:!room:example.org"), "prod", "payments").is_err());
    }

    #[test]
    fn entries_cover_the_clusters_they_name_and_the_default_cluster_otherwise() {
        let rule = |place: &str, namespaces: &[&str], clusters: &[&str]| Rule {
            place: place.into(),
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            users: vec![],
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
        };
        let access = Access {
            slack: vec![
                rule("CPAY", &["payments"], &[]),
                rule("CPAY", &["payments-*"], &["staging-*"]),
                rule("COPS", &["*"], &["*"]),
            ],
            default: vec!["shop".into()],
            default_cluster: "prod".into(),
            contact: "#platform-help".into(),
            ..Access::default()
        };
        let pay = asker(Platform::Slack, Some("CPAY"), "U1");
        assert!(access.check(&pay, "prod", "payments").is_ok(), "no clusters: the default cluster");
        assert!(access.check(&pay, "staging-eu", "payments").is_err(), "not the other clusters");
        assert!(access.check(&pay, "staging-eu", "payments-v2").is_ok(), "a cluster glob");
        assert!(access.check(&pay, "prod", "payments-v2").is_err(), "each entry's namespaces in its own clusters");
        let all = ["prod", "staging-eu", "dev"];
        assert_eq!(access.clusters(&pay, all), ["prod", "staging-eu"]);
        assert_eq!(access.clusters(&asker(Platform::Slack, Some("COPS"), "U1"), all), all);
        let anyone = asker(Platform::Slack, Some("CRANDOM"), "U1");
        assert_eq!(access.clusters(&anyone, all), ["prod"], "the default entry: the default cluster");
        assert!(access.check(&anyone, "dev", "shop").is_err());
        let everywhere = Access { default_clusters: vec!["*".into()], ..access.clone() };
        assert!(everywhere.check(&anyone, "dev", "shop").is_ok(), "access.default_clusters");
        let denied = Access { default: vec![], ..access };
        assert!(denied.clusters(&anyone, all).is_empty(), "no namespace anywhere: no cluster either");
        let unknown = Refusal::UnknownCluster {
            cluster: "qa".into(),
            known: vec!["prod".into(), "dev".into()],
            contact: "#help".into(),
        };
        assert_eq!(
            unknown.to_string(),
            "kubechat reads no cluster named qa that you may ask about; name one of prod, dev"
        );
    }
}
