//! A question as kubechat answers it, whichever front-end it came from: who asks ([`Asker`]), what they want
//! ([`Intent`]), about what ([`Scope`]: a cluster, a namespace in it, optionally one object), in their words, with the
//! conversation so far.
//!
//! Every front-end (HTTP, Slack, Matrix, Alertmanager, the CLI) builds its [`Scope`] with [`Scope::parse`], the one
//! parser of cluster names, namespaces and `KIND/NAME`. It refuses anything the Kubernetes API would not accept as a
//! name, before access is checked and long before a name reaches an API path: a namespace is an RFC 1123 label, an
//! object name an RFC 1123 subdomain, and a kind one of those [`NARROWABLE`] from the [`resources`] table. Whether
//! kubechat knows the cluster is the core's to say ([`crate::clusters`]); here it is only a well-formed name.

use std::fmt;

use crate::access::Asker;
use crate::resources::{self, Resource};

/// What the asker wants: a diagnosis of what is wrong, or an answer to their own question.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Ask,
    Diagnose,
}

impl Intent {
    pub fn prompt_name(self) -> &'static str {
        match self {
            Intent::Ask => "ask",
            Intent::Diagnose => "diagnose",
        }
    }
}

/// One earlier exchange of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub question: String,
    pub answer: String,
}

/// The kinds a question can be narrowed to: those whose pods the reader can find.
pub const NARROWABLE: [&Resource; 7] = [
    &resources::PODS,
    &resources::DEPLOYMENTS,
    &resources::STATEFULSETS,
    &resources::DAEMONSETS,
    &resources::JOBS,
    &resources::CRONJOBS,
    &resources::SERVICES,
];

/// The longest namespace (an RFC 1123 label) and object name (an RFC 1123 subdomain).
const LABEL_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;

/// A name or object that is refused before anything is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error(
        "cluster {value:?} is not a cluster name: it {problem}; a cluster name is at most 63 lowercase letters, digits, '-', '.' and '_', starting and ending with a letter or digit"
    )]
    Cluster { value: String, problem: String },
    #[error(
        "namespace {value:?} is not a namespace name: it {problem}; a namespace is an RFC 1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    Namespace { value: String, problem: String },
    #[error(
        "{kind} name {value:?} is not an object name: it {problem}; object names are RFC 1123 subdomains: at most 253 lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit"
    )]
    Name { kind: &'static str, value: String, problem: String },
    #[error("object {0:?} is not KIND/NAME: name one object, e.g. deployment/checkout or pod/web-1")]
    Object(String),
    #[error("kubechat cannot narrow a question to kind {0:?}: name a {kinds}", kinds = narrowable_kinds())]
    Kind(String),
}

/// One object a question is narrowed to: a kind from [`NARROWABLE`] and a valid name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    resource: &'static Resource,
    name: String,
}

impl Target {
    pub fn resource(&self) -> &'static Resource {
        self.resource
    }

    /// The kind as kubectl's singular resource name: `deployment`, `cronjob`, …
    pub fn singular(&self) -> &'static str {
        self.resource.singular
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.resource.singular, self.name)
    }
}

/// What to read: a cluster by kubechat's name for it, a valid namespace in it, optionally narrowed to one object.
/// Only [`Scope::parse`] makes one, so whatever holds a `Scope` holds names the API server would accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    cluster: String,
    namespace: String,
    object: Option<Target>,
}

impl Scope {
    /// Checks `cluster`, `namespace` and, when given, `object` (`KIND/NAME`, kinds by kubectl's names, short names and
    /// plurals).
    pub fn parse(cluster: &str, namespace: &str, object: Option<&str>) -> Result<Scope, Invalid> {
        Ok(Scope {
            cluster: parse_cluster(cluster)?,
            namespace: parse_namespace(namespace)?,
            object: object.map(parse_object).transpose()?,
        })
    }

    /// kubechat's name of the cluster (`clusters[].name`), not the kubeconfig's.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn object(&self) -> Option<&Target> {
        self.object.as_ref()
    }

    /// The whole namespace, without the object.
    pub fn whole_namespace(&self) -> Scope {
        Scope { cluster: self.cluster.clone(), namespace: self.namespace.clone(), object: None }
    }
}

/// The longest cluster name.
const CLUSTER_MAX: usize = 63;

/// A cluster name (lowercased: `Prod` and `prod` are one cluster), or why it is not one. Looser than a namespace:
/// `_` and `.` are allowed, as the `cluster` labels of Prometheus setups and kubeconfig contexts use them.
pub fn parse_cluster(value: &str) -> Result<String, Invalid> {
    let lowered = value.to_lowercase();
    let problem = if lowered.is_empty() {
        Some("is empty".to_string())
    } else if lowered.chars().count() > CLUSTER_MAX {
        Some(format!("is {} characters long", lowered.chars().count()))
    } else if let Some(c) =
        lowered.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(*c)))
    {
        Some(format!("has {c:?}"))
    } else if !lowered.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !lowered.ends_with(|c: char| c.is_ascii_alphanumeric())
    {
        Some("does not start and end with a letter or digit".to_string())
    } else {
        None
    };
    match problem {
        None => Ok(lowered),
        Some(problem) => Err(Invalid::Cluster { value: value.to_string(), problem }),
    }
}

/// A namespace name, or why it is not one.
pub fn parse_namespace(value: &str) -> Result<String, Invalid> {
    match label_problem(value, LABEL_MAX) {
        None => Ok(value.to_string()),
        Some(problem) => Err(Invalid::Namespace { value: value.to_string(), problem }),
    }
}

/// `KIND/NAME`, or why it is not one.
pub fn parse_object(value: &str) -> Result<Target, Invalid> {
    let Some((kind, name)) = value.split_once('/') else { return Err(Invalid::Object(value.to_string())) };
    if kind.is_empty() {
        return Err(Invalid::Object(value.to_string()));
    }
    let resource = narrowable(kind).ok_or_else(|| Invalid::Kind(kind.to_string()))?;
    match subdomain_problem(name) {
        None => Ok(Target { resource, name: name.to_string() }),
        Some(problem) => Err(Invalid::Name { kind: resource.singular, value: name.to_string(), problem }),
    }
}

/// The kinds a question can be narrowed to, for messages: `pod, deployment, … or service`.
pub fn narrowable_kinds() -> String {
    let kinds: Vec<&str> = NARROWABLE.iter().map(|r| r.singular).collect();
    let (last, rest) = kinds.split_last().expect("NARROWABLE is not empty");
    format!("{} or {last}", rest.join(", "))
}

/// The resource a kind word names (`deploy`, `Deployment`, `deployments`), when a question can be narrowed to it.
pub fn narrowable(kind: &str) -> Option<&'static Resource> {
    resources::by_name(kind).filter(|r| NARROWABLE.contains(r))
}

/// What keeps `value` from being an RFC 1123 label of at most `max` characters.
fn label_problem(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".to_string());
    }
    let length = value.chars().count();
    if length > max {
        return Some(format!("is {length} characters long"));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        return Some(if c.is_uppercase() { format!("has the upper-case {c:?}") } else { format!("has {c:?}") });
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Some("starts or ends with '-'".to_string());
    }
    None
}

/// What keeps `value` from being an RFC 1123 subdomain: dot-separated labels, at most 253 characters in all.
fn subdomain_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("is empty".to_string());
    }
    let length = value.chars().count();
    if length > SUBDOMAIN_MAX {
        return Some(format!("is {length} characters long"));
    }
    for part in value.split('.') {
        if part.is_empty() {
            return Some("has an empty part between dots".to_string());
        }
        if let Some(problem) = label_problem(part, LABEL_MAX) {
            return Some(problem);
        }
    }
    None
}

/// One question, whichever front-end it came from.
#[derive(Debug, Clone)]
pub struct Request {
    /// Named in the logs, the audit line and every reply.
    pub id: String,
    pub asker: Asker,
    pub intent: Intent,
    pub scope: Scope,
    /// The asker's words; for a bare diagnosis, the question a diagnosis asks.
    pub question: String,
    /// Earlier questions and answers of the same conversation (a chat thread), oldest first.
    pub history: Vec<Turn>,
}

impl Request {
    /// A request for `scope`; an empty `question` asks what a bare `diagnose` asks.
    pub fn new(id: &str, asker: Asker, intent: Intent, scope: Scope, question: &str, history: Vec<Turn>) -> Request {
        let question = match question.trim() {
            "" => format!(
                "What is wrong in namespace {}, what is the root cause, and how do I fix it?",
                scope.namespace()
            ),
            text => text.to_string(),
        };
        Request { id: id.to_string(), asker, intent, scope, question, history }
    }

    /// The same question about the whole namespace (the object is gone, say).
    pub fn whole_namespace(&self) -> Request {
        Request { scope: self.scope.whole_namespace(), ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_rfc_1123_labels() {
        assert_eq!(parse_namespace("payments-eu-1"), Ok("payments-eu-1".to_string()));
        for (value, problem) in [
            ("secret-project/pods?x=-dev", "has '/'"),
            ("a/../b", "has '/'"),
            ("payments%2Fx", "has '%'"),
            ("Payments", "has the upper-case 'P'"),
            ("", "is empty"),
            ("-dev", "starts or ends with '-'"),
            ("shop.eu", "has '.'"),
            ("ns with spaces", "has ' '"),
        ] {
            let err = parse_namespace(value).unwrap_err();
            assert_eq!(err, Invalid::Namespace { value: value.to_string(), problem: problem.to_string() }, "{value}");
            assert!(err.to_string().contains("RFC 1123 label"), "{err}");
        }
        let long = "a".repeat(64);
        assert!(parse_namespace(&long).unwrap_err().to_string().contains("is 64 characters long"));
        assert!(parse_namespace(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn objects_are_a_known_kind_and_an_rfc_1123_subdomain() {
        let scope = Scope::parse("prod", "shop", Some("deploy/checkout")).unwrap();
        assert_eq!(scope.object().unwrap().to_string(), "deployment/checkout", "short names are canonical");
        for (value, expected) in [
            ("po/web-1", "pod/web-1"),
            ("Pods/web-1.eu", "pod/web-1.eu"),
            ("cj/nightly", "cronjob/nightly"),
            ("cronjobs/nightly", "cronjob/nightly"),
            ("svc/web", "service/web"),
            ("sts/db-0", "statefulset/db-0"),
        ] {
            assert_eq!(parse_object(value).map(|t| t.to_string()), Ok(expected.to_string()), "{value}");
        }
        assert_eq!(
            parse_object("pod/"),
            Err(Invalid::Name { kind: "pod", value: "".into(), problem: "is empty".into() })
        );
        assert_eq!(parse_object("checkout"), Err(Invalid::Object("checkout".into())));
        assert_eq!(parse_object("/checkout"), Err(Invalid::Object("/checkout".into())));
        assert_eq!(parse_object("secret/db"), Err(Invalid::Kind("secret".into())), "never a Secret");
        assert_eq!(
            Invalid::Kind("secret".into()).to_string(),
            "kubechat cannot narrow a question to kind \"secret\": name a pod, deployment, statefulset, daemonset, job, cronjob or service"
        );
        assert_eq!(parse_object("a/../b"), Err(Invalid::Kind("a".into())));
        assert!(matches!(parse_object("pod/../../secrets"), Err(Invalid::Name { .. })));
        assert!(matches!(parse_object("pod/web?watch=1"), Err(Invalid::Name { .. })));
        assert!(matches!(parse_object("pod/Web"), Err(Invalid::Name { .. })));
        assert!(matches!(parse_object("pod/a..b"), Err(Invalid::Name { .. })));
        assert!(parse_object(&format!("pod/{}", "a".repeat(64))).is_err(), "each part is a label");
        let err = Scope::parse("prod", "shop", Some("pod/")).unwrap_err().to_string();
        assert!(err.starts_with("pod name \"\" is not an object name: it is empty"), "{err}");
    }

    #[test]
    fn a_bare_diagnosis_asks_the_diagnosis_question() {
        let asker = Asker { platform: crate::access::Platform::Http, place: None, user: "alice".into() };
        let scope = Scope::parse("prod", "shop", None).unwrap();
        let request = Request::new("r1", asker, Intent::Diagnose, scope, "  ", Vec::new());
        assert_eq!(request.question, "What is wrong in namespace shop, what is the root cause, and how do I fix it?");
        assert!(request.whole_namespace().scope.object().is_none());
        assert_eq!(request.whole_namespace().scope.cluster(), "prod", "the cluster stays");
    }

    #[test]
    fn cluster_names_are_lowercased_and_checked() {
        assert_eq!(parse_cluster("Prod-EU_1.a"), Ok("prod-eu_1.a".to_string()));
        for (value, problem) in [
            ("", "is empty"),
            ("prod/eu", "has '/'"),
            ("prod eu", "has ' '"),
            ("-prod", "does not start and end with a letter or digit"),
            ("prod.", "does not start and end with a letter or digit"),
            ("prod?x=1", "has '?'"),
        ] {
            let err = parse_cluster(value).unwrap_err();
            assert_eq!(err, Invalid::Cluster { value: value.to_string(), problem: problem.to_string() }, "{value}");
            assert!(err.to_string().contains("a cluster name is at most 63"), "{err}");
        }
        assert!(parse_cluster(&"a".repeat(64)).is_err());
        assert!(Scope::parse("a b", "shop", None).is_err(), "the cluster is checked with the rest");
    }
}
