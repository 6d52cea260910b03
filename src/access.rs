//! The inner wall: who may see which namespace through kubechat. The API server's RBAC decides what kubechat can read;
//! this decides what each asker may see of it. Each Slack channel, Matrix room and HTTP identity maps to namespace
//! globs, optionally for listed users only; anything not configured gets the default entry, which is empty (deny) unless
//! configured. A refusal names the namespace and whom to ask, and nothing else.

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

/// One entry: a place (a channel, a room, or an HTTP identity; `*` globs) and the namespaces it may read.
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
}

/// The configured policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub slack: Vec<Rule>,
    pub matrix: Vec<Rule>,
    pub http: Vec<Rule>,
    /// Alertmanager receivers that name the namespaces they may diagnose (place: the receiver's name); a receiver
    /// that names none is held to its destination channel's or room's entry.
    pub alertmanager: Vec<Rule>,
    /// Namespaces for askers no entry matches; empty denies them.
    pub default: Vec<String>,
    /// Whom to ask for access, named in every refusal.
    pub contact: String,
}

/// Why a question is not answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("you may not diagnose namespace {namespace} from here; ask {contact} for access")]
    Namespace { namespace: String, contact: String },
    #[error("you are asking faster than kubechat answers; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration },
    #[error("kubechat is answering as many questions as it takes at once ({in_flight}); please ask again in a minute")]
    Busy { in_flight: usize },
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
        Access { default: vec!["*".into()], contact: "the kubechat operator".into(), ..Access::default() }
    }

    /// The namespace globs `asker` may read: the union of the entries that match it, else the default.
    pub fn globs(&self, asker: &Asker) -> Vec<String> {
        let rules = match asker.platform {
            Platform::Slack => &self.slack,
            Platform::Matrix => &self.matrix,
            Platform::Http => &self.http,
            Platform::Alertmanager => return self.alert_globs(asker),
            Platform::Cli => return vec!["*".into()],
        };
        let place = asker.place.as_deref().unwrap_or(&asker.user);
        let matching: Vec<&Rule> = rules
            .iter()
            .filter(|r| glob(&r.place, place))
            .filter(|r| r.users.is_empty() || r.users.iter().any(|u| glob(u, &asker.user)))
            .collect();
        if matching.is_empty() {
            return self.default.clone();
        }
        matching.iter().flat_map(|r| r.namespaces.iter().cloned()).collect()
    }

    /// An alert's: its receiver's namespaces when it names some, else those of the channel or room it is posted to
    /// (entries for listed users only do not apply: no user asked), else the default.
    fn alert_globs(&self, asker: &Asker) -> Vec<String> {
        let receiver: Vec<String> = self
            .alertmanager
            .iter()
            .filter(|r| r.place == asker.user)
            .flat_map(|r| r.namespaces.iter().cloned())
            .collect();
        if !receiver.is_empty() {
            return receiver;
        }
        let destination = asker.place.as_deref().and_then(|p| p.split_once(':'));
        let rules = match destination {
            Some(("slack", _)) => &self.slack,
            Some(("matrix", _)) => &self.matrix,
            _ => return self.default.clone(),
        };
        let place = destination.map_or("", |(_, place)| place);
        let matching: Vec<&Rule> = rules.iter().filter(|r| r.users.is_empty() && glob(&r.place, place)).collect();
        if matching.is_empty() {
            return self.default.clone();
        }
        matching.iter().flat_map(|r| r.namespaces.iter().cloned()).collect()
    }

    pub fn check(&self, asker: &Asker, namespace: &str) -> Result<(), Refusal> {
        if self.globs(asker).iter().any(|g| glob(g, namespace)) {
            Ok(())
        } else {
            Err(Refusal::Namespace { namespace: namespace.to_string(), contact: self.contact.clone() })
        }
    }

    /// The namespaces of `all` that `asker` may read, for pickers and help.
    pub fn visible(&self, asker: &Asker, all: &[String]) -> Vec<String> {
        let globs = self.globs(asker);
        all.iter().filter(|ns| globs.iter().any(|g| glob(g, ns))).cloned().collect()
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
                Rule { place: "C-PAY".into(), namespaces: vec!["payments".into(), "payments-*".into()], users: vec![] },
                Rule { place: "C-OPS".into(), namespaces: vec!["*".into()], users: vec!["U-SRE".into()] },
            ],
            matrix: vec![Rule { place: "#ops:example.org".into(), namespaces: vec!["shop".into()], users: vec![] }],
            http: vec![Rule { place: "alice".into(), namespaces: vec!["*".into()], users: vec![] }],
            alertmanager: vec![],
            default: vec![],
            contact: "#platform-help".into(),
        };
        let pay = asker(Platform::Slack, Some("C-PAY"), "U-DEV");
        assert_eq!(access.check(&pay, "payments-eu"), Ok(()));
        let refused = access.check(&pay, "kube-system").unwrap_err();
        assert_eq!(
            refused.to_string(),
            "you may not diagnose namespace kube-system from here; ask #platform-help for access"
        );
        assert!(access.check(&asker(Platform::Slack, Some("C-OPS"), "U-SRE"), "kube-system").is_ok());
        assert!(access.check(&asker(Platform::Slack, Some("C-OPS"), "U-DEV"), "kube-system").is_err(), "users only");
        assert!(
            access.check(&asker(Platform::Slack, Some("C-RANDOM"), "U-SRE"), "payments").is_err(),
            "deny by default"
        );
        assert!(access.check(&asker(Platform::Matrix, Some("#ops:example.org"), "@a:x"), "shop").is_ok());
        assert!(access.check(&asker(Platform::Http, None, "alice"), "anything").is_ok());
        assert!(access.check(&asker(Platform::Http, None, "mallory"), "shop").is_err());
        let all: Vec<String> = ["payments", "payments-eu", "shop", "kube-system"].map(String::from).to_vec();
        assert_eq!(access.visible(&pay, &all), ["payments", "payments-eu"]);
        let open = Access { default: vec!["shop".into()], ..access };
        assert!(open.check(&asker(Platform::Slack, Some("C-RANDOM"), "U"), "shop").is_ok(), "a default entry");
    }

    #[test]
    fn buckets_refill_and_say_when() {
        let buckets = Buckets::new(Rate { burst: 2, per_minute: 60 });
        assert!(buckets.take("u").is_ok());
        assert!(buckets.take("u").is_ok());
        let wait = buckets.take("u").unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(2), "{wait:?}");
        assert!(buckets.take("v").is_ok(), "buckets are per key");
    }

    #[test]
    fn alerts_are_held_to_their_receiver_or_their_destination() {
        let access = Access {
            slack: vec![
                Rule { place: "CPAY".into(), namespaces: vec!["payments".into()], users: vec![] },
                Rule { place: "CPAY".into(), namespaces: vec!["*".into()], users: vec!["UADMIN".into()] },
            ],
            alertmanager: vec![Rule { place: "team-shop".into(), namespaces: vec!["shop-*".into()], users: vec![] }],
            ..Access::default()
        };
        let alert = |receiver: &str, place: &str| asker(Platform::Alertmanager, Some(place), receiver);
        assert!(access.check(&alert("team-shop", "slack:CPAY"), "shop-eu").is_ok());
        assert!(access.check(&alert("team-shop", "slack:CPAY"), "payments").is_err(), "the receiver's own namespaces");
        assert!(access.check(&alert("team-pay", "slack:CPAY"), "payments").is_ok(), "the channel's entry");
        assert!(access.check(&alert("team-pay", "slack:CPAY"), "kube-system").is_err(), "not a user's entry");
        assert!(access.check(&alert("team-pay", "slack:COTHER"), "payments").is_err(), "deny by default");
        assert!(access.check(&alert("team-pay", "matrix:!room:example.org"), "payments").is_err());
    }
}
