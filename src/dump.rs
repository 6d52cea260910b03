//! Cluster dumps: what `kubectl get … -o yaml` prints, plus container logs, loaded into memory for the replay server.
//!
//! A dump is a YAML or JSON file (a `v1 List`, one object, or multi-document YAML), or a directory of such files with
//! logs at `logs/<namespace>/<pod>/<container>.log` and `logs/<namespace>/<pod>/<container>.previous.log`.
//!
//! Loading drops what must never be served: Secrets are not kept at all and ConfigMap values are blanked, so no path
//! through the replay server can hand them out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::resources::{self, Resource};

/// What replaces every ConfigMap value in a dump.
pub const REDACTED_VALUE: &str = "<redacted: kubechat never serves configmap values>";

mod demo {
    include!(concat!(env!("OUT_DIR"), "/demo_files.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot read dump {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse dump file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("dump {} holds no Kubernetes objects that kubechat serves{found}; expected the output of `kubectl get … -o yaml` or a directory of such files", path.display())]
    Empty { path: PathBuf, found: String },
    #[error("dump file {} is {} MiB, over the {} MiB kubechat loads from one file; split it, e.g. one `kubectl get` per namespace or kind", path.display(), size >> 20, MAX_FILE_BYTES >> 20)]
    TooLarge { path: PathBuf, size: u64 },
}

/// How objects without a `kind` are counted in [`LoadReport::skipped`].
const NO_KIND: &str = "(no kind)";

/// The largest dump file loaded: objects take several times their text's size in memory once parsed.
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Where a container log is kept.
#[derive(Debug, Clone)]
pub enum LogSource {
    File(PathBuf),
    Text(Arc<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogKey {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub previous: bool,
}

/// What loading found, for the operator: counts and what was left out.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub files: usize,
    pub objects: usize,
    pub logs: usize,
    /// Objects of kinds the replay server does not serve, by `apiVersion/kind`.
    pub skipped: BTreeMap<String, usize>,
    pub secrets_dropped: usize,
    pub replaced: usize,
    /// Objects of served kinds left out because they do not have their type's shape (a field of the wrong type), as
    /// `Pod shop/web-1: spec.containers: invalid type: …`. An API server would never have stored them.
    pub invalid: Vec<String>,
}

impl LoadReport {
    /// What was left out, for an error about a dump with nothing served: empty when nothing was.
    fn left_out(&self) -> String {
        let mut parts: Vec<String> = self
            .skipped
            .iter()
            .map(|(kind, n)| if kind == NO_KIND { format!("{n} without a kind") } else { format!("{n} {kind}") })
            .collect();
        if self.secrets_dropped > 0 {
            parts.push(format!("{} v1/Secret (never served)", self.secrets_dropped));
        }
        if let Some(first) = self.invalid.first() {
            parts.push(format!("{} of the wrong shape, first {first}", self.invalid.len()));
        }
        if parts.is_empty() { String::new() } else { format!(" (it held {})", parts.join(", ")) }
    }
}

/// One object as a dump keeps it: its compact JSON, as the API server sends it. A fraction of the memory of the object
/// as a [`Value`] (a 19 MB dump's objects took 284 MB to diagnose as Values, 135 MB as this), and served without being
/// written out again; read into a `Value` only where a request looks inside it (a selector, a table, a log).
pub type Stored = Box<RawValue>;

/// A loaded dump: objects by resource, keyed by (namespace, name); cluster-scoped objects have an empty namespace.
#[derive(Debug, Default)]
pub struct Dump {
    objects: HashMap<&'static str, BTreeMap<(String, String), Stored>>,
    logs: HashMap<LogKey, LogSource>,
    /// How many objects of each resource each namespace holds, so a page of a list can say how many remain without
    /// counting them.
    counts: HashMap<(&'static str, String), usize>,
    pub report: LoadReport,
    /// When the dump was taken: the file `taken-at` at its root (RFC 3339, written by `scripts/take-dump`). The
    /// diagnosis judges "recent" and "still starting" against it; without it, against the newest timestamp inside.
    pub taken_at: Option<jiff::Timestamp>,
}

/// The file at a dump's root that says when it was taken.
pub const TAKEN_AT: &str = "taken-at";

fn taken_at(path: &Path, text: &str) -> Result<jiff::Timestamp, DumpError> {
    text.trim().parse().map_err(|e: jiff::Error| DumpError::Parse {
        path: path.to_path_buf(),
        message: format!("{:?} is not an RFC 3339 time like 2026-11-30T12:00:00Z: {e}", text.trim()),
    })
}

impl Dump {
    /// Loads a dump file or directory.
    pub fn load(path: &Path) -> Result<Dump, DumpError> {
        let read_err = |source| DumpError::Read { path: path.to_path_buf(), source };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mut dump = Dump::default();
        if meta.is_dir() {
            dump.load_dir(path, path)?;
        } else {
            dump.load_file(path)?;
        }
        dump.finish(path)
    }

    /// Loads a dump from the text of one file.
    pub fn from_text(text: &str) -> Result<Dump, DumpError> {
        let path = Path::new("(text)");
        let mut dump = Dump::default();
        dump.load_text(path, text)?;
        dump.finish(path)
    }

    /// A dump with nothing served is an error that says what it held; otherwise its namespaces are completed.
    fn finish(mut self, path: &Path) -> Result<Dump, DumpError> {
        if self.report.objects == 0 {
            return Err(DumpError::Empty { path: path.to_path_buf(), found: self.report.left_out() });
        }
        self.derive_namespaces();
        Ok(self)
    }

    /// Builds a dump from objects already in memory; used by tests and generated dumps.
    pub fn from_objects(objects: impl IntoIterator<Item = Value>) -> Dump {
        let mut dump = Dump::default();
        for object in objects {
            dump.insert(object, false);
        }
        dump.derive_namespaces();
        dump
    }

    /// Adds a log kept in memory.
    pub fn add_log(&mut self, key: LogKey, text: impl Into<Arc<str>>) {
        self.report.logs += 1;
        self.logs.insert(key, LogSource::Text(text.into()));
    }

    /// The objects of one resource, ordered by namespace and name.
    pub fn objects(&self, resource: &Resource) -> Option<&BTreeMap<(String, String), Stored>> {
        self.objects.get(resource.plural)
    }

    /// How many objects of `resource` are in `namespace`, or in all namespaces.
    pub fn count(&self, resource: &Resource, namespace: Option<&str>) -> usize {
        match namespace {
            None => self.objects.get(resource.plural).map_or(0, BTreeMap::len),
            Some(ns) => self.counts.get(&(resource.plural, ns.to_string())).copied().unwrap_or(0),
        }
    }

    pub fn log(&self, key: &LogKey) -> Option<&LogSource> {
        self.logs.get(key)
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.objects.get(resources::NAMESPACES.plural).into_iter().flat_map(|m| m.keys().map(|(_, name)| name.as_str()))
    }

    fn load_dir(&mut self, root: &Path, dir: &Path) -> Result<(), DumpError> {
        let read_err = |source| DumpError::Read { path: dir.to_path_buf(), source };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                if dir == root && path.file_name().is_some_and(|n| n == "logs") {
                    self.load_logs(&path)?;
                } else {
                    self.load_dir(root, &path)?;
                }
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")) {
                self.load_file(&path)?;
            } else if dir == root && path.file_name().is_some_and(|n| n == TAKEN_AT) {
                let text =
                    std::fs::read_to_string(&path).map_err(|source| DumpError::Read { path: path.clone(), source })?;
                self.taken_at = Some(taken_at(&path, &text)?);
            }
        }
        Ok(())
    }

    /// `logs/<namespace>/<pod>/<container>.log` and `<container>.previous.log`.
    fn load_logs(&mut self, logs: &Path) -> Result<(), DumpError> {
        let read_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DumpError::Read { path, source }
        };
        for ns in std::fs::read_dir(logs).map_err(read_err(logs))? {
            let ns = ns.map_err(read_err(logs))?.path();
            if !ns.is_dir() {
                continue;
            }
            for pod in std::fs::read_dir(&ns).map_err(read_err(&ns))? {
                let pod = pod.map_err(read_err(&ns))?.path();
                if !pod.is_dir() {
                    continue;
                }
                for file in std::fs::read_dir(&pod).map_err(read_err(&pod))? {
                    let file = file.map_err(read_err(&pod))?.path();
                    let Some(name) = file.file_name().and_then(|n| n.to_str()) else { continue };
                    let (container, previous) = match name.strip_suffix(".previous.log") {
                        Some(container) => (container, true),
                        None => match name.strip_suffix(".log") {
                            Some(container) => (container, false),
                            None => continue,
                        },
                    };
                    let key = LogKey {
                        namespace: file_name(&ns),
                        pod: file_name(&pod),
                        container: container.to_string(),
                        previous,
                    };
                    self.report.logs += 1;
                    self.logs.insert(key, LogSource::File(file));
                }
            }
        }
        Ok(())
    }

    /// The demo cluster compiled into the binary: the scenario dump, one broken namespace per failure kubechat knows
    /// and a healthy one.
    pub fn demo() -> Dump {
        let mut dump = Dump::default();
        for (path, text) in demo::FILES {
            let parts: Vec<&str> = path.split('/').collect();
            match parts.as_slice() {
                ["logs", namespace, pod, file] => {
                    let (container, previous) = match file.strip_suffix(".previous.log") {
                        Some(container) => (container, true),
                        None => (file.strip_suffix(".log").unwrap_or(file), false),
                    };
                    let key = LogKey {
                        namespace: namespace.to_string(),
                        pod: pod.to_string(),
                        container: container.to_string(),
                        previous,
                    };
                    dump.add_log(key, *text);
                }
                [file] if file.ends_with(".yaml") => {
                    dump.load_text(Path::new(path), text).expect("the demo dump parses");
                }
                [file] if *file == TAKEN_AT => {
                    dump.taken_at =
                        Some(taken_at(Path::new(path), text).expect("the demo dump says when it was taken"));
                }
                _ => {}
            }
        }
        dump.derive_namespaces();
        dump
    }

    fn load_file(&mut self, path: &Path) -> Result<(), DumpError> {
        let read_err = |source| DumpError::Read { path: path.to_path_buf(), source };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_FILE_BYTES {
            return Err(DumpError::TooLarge { path: path.to_path_buf(), size });
        }
        let text = std::fs::read_to_string(path).map_err(read_err)?;
        self.load_text(path, &text)
    }

    fn load_text(&mut self, path: &Path, text: &str) -> Result<(), DumpError> {
        let parse_error = |message| DumpError::Parse { path: path.to_path_buf(), message };
        let mut keep = |filed: Filed| {
            if let Filed::NotAnObject = filed {
                // A note beside the dump (an incident's details, a tool's index): not the dump's business.
                tracing::debug!(path = %path.display(), "a document that is not a Kubernetes object skipped");
            }
            self.keep(filed);
        };
        if text.trim_start().starts_with(['{', '[']) {
            let document: Value = serde_json::from_str(text).map_err(|e| parse_error(e.to_string()))?;
            for (object, fits) in crate::yaml::flatten(document, &[]) {
                keep(file(object, fits));
            }
        } else {
            crate::yaml::objects(text, &mut file, &mut keep).map_err(parse_error)?;
        }
        self.report.files += 1;
        Ok(())
    }

    /// Files one object under its resource, or counts it as skipped. `fits`: the object was found to fit its type
    /// while it was read (what the loader sets here, the namespace and the served apiVersion, cannot undo that).
    fn insert(&mut self, object: Value, fits: bool) {
        self.keep(file(object, fits));
    }

    /// Keeps what [`file`] made of an object.
    fn keep(&mut self, filed: Filed) {
        match filed {
            Filed::Object { plural, key, object } => {
                if self.objects.entry(plural).or_default().insert(key, object).is_some() {
                    self.report.replaced += 1;
                } else {
                    self.report.objects += 1;
                }
            }
            Filed::Skipped(label) => *self.report.skipped.entry(label).or_default() += 1,
            Filed::Secret => self.report.secrets_dropped += 1,
            Filed::Invalid(problem) => self.report.invalid.push(problem),
            Filed::NotAnObject => {}
        }
    }

    /// Adds a Namespace object for every namespace that objects or logs live in but the dump does not describe, and
    /// counts the objects in each.
    fn derive_namespaces(&mut self) {
        let mut seen: BTreeSet<String> = BTreeSet::new();
        for (plural, objects) in &self.objects {
            if *plural != resources::NAMESPACES.plural {
                seen.extend(objects.keys().filter(|(ns, _)| !ns.is_empty()).map(|(ns, _)| ns.clone()));
            }
        }
        seen.extend(self.logs.keys().map(|k| k.namespace.clone()));
        let namespaces = self.objects.entry(resources::NAMESPACES.plural).or_default();
        for name in seen {
            namespaces.entry((String::new(), name.clone())).or_insert_with(|| {
                stored(&json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
                    "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"},
                }))
            });
        }
        self.counts.clear();
        for (plural, objects) in &self.objects {
            for (ns, _) in objects.keys() {
                *self.counts.entry((*plural, ns.clone())).or_default() += 1;
            }
        }
    }
}

/// What becomes of one object read from a dump.
enum Filed {
    /// Kept under its resource's plural and (namespace, name), as compact JSON.
    Object { plural: &'static str, key: (String, String), object: Stored },
    /// Of a kind the replay server does not serve (`apiVersion/kind`, or [`NO_KIND`]).
    Skipped(String),
    /// A Secret: never kept.
    Secret,
    /// Not of its type's shape: `Pod shop/web-1: spec.containers: invalid type: …`.
    Invalid(String),
    /// A document that is not meant as a Kubernetes object at all.
    NotAnObject,
}

/// What the loader makes of one object, and nothing else: the namespace filled in, the served apiVersion, its shape
/// checked unless it was found to fit its type while read (`fits`; what is set here cannot undo that), ConfigMap values
/// blanked; then written as compact JSON. Pure, so a document's objects can be filed as they are read and kept only
/// once the whole document has read.
fn file(mut object: Value, fits: bool) -> Filed {
    if !is_object(&object) {
        return Filed::NotAnObject;
    }
    let api_version = object["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    if kind == "Secret" && api_version == "v1" {
        return Filed::Secret;
    }
    let name = object["metadata"]["name"].as_str().map(str::to_string);
    let (Some(resource), Some(name)) = (resources::by_kind(&api_version, &kind), name) else {
        return Filed::Skipped(if kind.is_empty() { NO_KIND.to_string() } else { format!("{api_version}/{kind}") });
    };
    let namespace = if resource.namespaced {
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        object["metadata"]["namespace"] = Value::String(namespace.clone());
        namespace
    } else {
        String::new()
    };
    object["apiVersion"] = Value::String(resource.api_version());
    if let Err(problem) = if fits { Ok(()) } else { resources::check_shape(resource, &object) } {
        let at = if namespace.is_empty() { name } else { format!("{namespace}/{name}") };
        return Filed::Invalid(format!("{} {at}: {problem}", resource.kind));
    }
    if resource == &resources::CONFIGMAPS {
        blank_values(&mut object);
    }
    Filed::Object { plural: resource.plural, key: (namespace, name), object: stored(&object) }
}

/// An object's compact JSON.
fn stored(object: &Value) -> Stored {
    serde_json::value::to_raw_value(object).expect("a JSON value always serializes")
}

/// A stored object, read back as a [`Value`].
pub fn value(object: &RawValue) -> Value {
    serde_json::from_str(object.get()).expect("a stored object is the JSON it was written as")
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn blank_values(configmap: &mut Value) {
    for field in ["data", "binaryData"] {
        if let Some(Value::Object(values)) = configmap.get_mut(field) {
            for value in values.values_mut() {
                *value = Value::String(REDACTED_VALUE.to_string());
            }
        }
    }
    if let Some(Value::Object(annotations)) = configmap.pointer_mut("/metadata/annotations") {
        // `kubectl apply` keeps a full copy of the object, values included, in this annotation.
        annotations.remove(crate::redact::LAST_APPLIED);
    }
}

/// Whether a document is meant as a Kubernetes object: a mapping with an `apiVersion`, a `kind` or `metadata`. One
/// with some of them but not a kind is a broken object and is counted ([`NO_KIND`]); one with none is something else.
fn is_object(document: &Value) -> bool {
    document.as_object().is_some_and(|map| ["apiVersion", "kind", "metadata"].iter().any(|k| map.contains_key(*k)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_multi_document_yaml_are_flattened() {
        let yaml = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: shop}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Secret
metadata: {name: db, namespace: shop}
data: {password: aHVudGVyMg==}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web, namespace: shop}
"#;
        let dump = Dump::from_text(yaml).unwrap();
        assert_eq!(dump.report.objects, 2);
        assert_eq!(dump.report.secrets_dropped, 1);
        assert_eq!(dump.report.skipped.get("rbac.authorization.k8s.io/v1/Role"), Some(&1));
        assert!(dump.objects(&resources::PODS).unwrap().contains_key(&("shop".into(), "a".into())));
        assert_eq!(dump.namespaces().collect::<Vec<_>>(), ["shop"]);
    }

    #[test]
    fn typed_lists_give_their_items_a_kind() {
        let json = r#"{"apiVersion":"v1","kind":"PodList","items":[{"metadata":{"name":"a","namespace":"x"}}]}"#;
        // In YAML, the list's kind may come after its items (keys sorted, as kubectl writes them).
        let yaml = "apiVersion: v1\nitems:\n- metadata:\n    name: a\n    namespace: x\n    labels: {v: 1.10}\nkind: PodList\n";
        for text in [json, yaml] {
            let dump = Dump::from_text(text).unwrap();
            let pod = value(&dump.objects(&resources::PODS).unwrap()[&("x".into(), "a".into())]);
            assert_eq!((&pod["kind"], &pod["apiVersion"]), (&json!("Pod"), &json!("v1")), "{text}");
        }
        let dump = Dump::from_text(yaml).unwrap();
        let pod = value(&dump.objects(&resources::PODS).unwrap()[&("x".into(), "a".into())]);
        assert_eq!(pod["metadata"]["labels"]["v"], "1.10", "read by its type, which it took from the list");
    }

    #[test]
    fn configmap_values_are_never_kept() {
        let dump = Dump::from_objects([json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "x", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"hunter2\"}}"}},
            "data": {"password": "hunter2"}, "binaryData": {"blob": "aHVudGVyMg=="},
        })]);
        let text =
            serde_json::to_string(&dump.objects(&resources::CONFIGMAPS).unwrap().values().collect::<Vec<_>>()).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("aHVudGVyMg=="), "{text}");
        assert!(text.contains("password"), "keys stay: {text}");
    }

    #[test]
    fn the_demo_dump_is_the_scenario_dump() {
        let demo = Dump::demo();
        let on_disk = Dump::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/scenarios"))).unwrap();
        assert_eq!(demo.report.objects, on_disk.report.objects);
        assert_eq!(demo.report.logs, on_disk.report.logs);
        assert!(demo.namespaces().any(|n| n == "imagepull"));
        assert_eq!(on_disk.report.invalid, Vec::<String>::new(), "every object of the corpus has its type's shape");
    }

    #[test]
    fn unquoted_number_like_label_values_load_as_the_strings_written() {
        // As tools other than kubectl write a ReplicaSet's pods: the hash unquoted, read by YAML as a float too large.
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-2e7696897-x\n  namespace: shop\n  labels:\n    pod-template-hash: 2e7696897\n    version: 1.10\nspec:\n  containers: [{name: app, image: web}]\n";
        let dump = Dump::from_text(yaml).unwrap();
        assert_eq!(dump.report.invalid, Vec::<String>::new());
        let pod = value(&dump.objects(&resources::PODS).unwrap()[&("shop".into(), "web-2e7696897-x".into())]);
        assert_eq!(pod["metadata"]["labels"], json!({"pod-template-hash": "2e7696897", "version": "1.10"}));
    }

    #[test]
    fn number_like_strings_of_an_older_apis_objects_load_as_written() {
        // Filed under the versions clusters before 1.16 and 1.22 served, alone and in a List, as the version served.
        let deployment = "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\n  labels:\n    version: 1.10\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web, pod-template-hash: 2e7696897}}\n    spec: {containers: [{name: app, image: web}]}\n";
        let ingress = "- apiVersion: extensions/v1beta1\n  kind: Ingress\n  metadata: {name: web, namespace: shop, labels: {release: 2.0}}\n";
        for yaml in [deployment.to_string(), format!("apiVersion: v1\nkind: List\nitems:\n{ingress}")] {
            let dump = Dump::from_text(&yaml).unwrap();
            assert_eq!(dump.report.invalid, Vec::<String>::new(), "{yaml}");
        }
        let dump = Dump::from_text(deployment).unwrap();
        let stored = value(&dump.objects(&resources::DEPLOYMENTS).unwrap()[&("shop".into(), "web".into())]);
        assert_eq!(stored["apiVersion"], "apps/v1");
        assert_eq!(stored["metadata"]["labels"]["version"], "1.10");
        assert_eq!(stored["spec"]["template"]["metadata"]["labels"]["pod-template-hash"], "2e7696897");
        let list = Dump::from_text(&format!("apiVersion: v1\nkind: List\nitems:\n{ingress}")).unwrap();
        let ingress = value(&list.objects(&resources::INGRESSES).unwrap()[&("shop".into(), "web".into())]);
        assert_eq!(ingress["metadata"]["labels"]["release"], "2.0");
    }

    #[test]
    fn malformed_yaml_names_the_problem() {
        let err = Dump::from_text("kind: Pod\n  metadata: [").unwrap_err();
        assert!(matches!(&err, DumpError::Parse { message, .. } if !message.is_empty()), "{err}");
    }
}
