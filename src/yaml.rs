//! YAML dumps read by the schema: a plain scalar that looks like a number or a boolean is a string where the
//! object's type says string.
//!
//! YAML gives a plain scalar its type from its spelling, so `pod-template-hash: 2e7696897` reads as a float too large
//! for any number, `version: 1.10` as 1.1 and `build: 0123` as 123, although the API server stores all three as the
//! strings written (tools other than kubectl write them unquoted). Each document is read untyped first; an object
//! whose type then expects a string where the reading holds something else is read again from its text, as its
//! type, which keeps a string field's text as written, and those fields take the typed reading's strings. Everything
//! else, fields kubechat's types do not know included, stays as the untyped reading has it. Objects of kinds kubechat
//! does not serve, and objects that do not fit their type in other ways, stay untyped (the loader reports the latter).

use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::resources::{self, Resource, WithType};

mod block;

/// A document read from YAML, and for each object it holds (itself, or each item when it is a list) whether that
/// object was found to fit its type while reading by the schema, so the loader need not check it again.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    pub fits: Vec<bool>,
}

/// Every document in `text` (documents that are empty or null left out), scalars read by the schema. A document in
/// the block style dumps are written in is read by `block` (this module's own reader); any other by the general parser.
pub fn documents(text: &str) -> Result<Vec<Document>, String> {
    let mut documents = Vec::new();
    let mut scalars = block::Scalars::default();
    for chunk in split(text) {
        let document = match block::read(chunk, &mut scalars) {
            Ok(document) => document,
            Err(gave_up) => {
                tracing::debug!(line = gave_up.line, "a YAML document read by the general parser: {}", gave_up.reason);
                serde_saphyr::from_str_with_options(chunk, options(chunk.len())).map_err(|e| e.to_string())?
            }
        };
        if document.is_null() {
            continue;
        }
        documents.push(by_schema(document, chunk));
    }
    Ok(documents)
}

/// Every object in `text`, scalars read by the schema, a list's items one by one: `prepare` turns each into what the
/// caller keeps, given whether the object was found to fit its type, and `keep` keeps what `prepare` made once the
/// document it is in has been read. A list the block reader reads is never held whole: each item is prepared as it is
/// read (a dump of 4,000 pods is one list), and what is prepared is kept only if the whole document reads.
pub fn objects<P>(
    text: &str,
    prepare: &mut dyn FnMut(Value, bool) -> P,
    keep: &mut dyn FnMut(P),
) -> Result<(), String> {
    /// An item of a list as the block reader hands it over: prepared, or waiting for the list's kind.
    enum Item<'t, P> {
        Prepared(P),
        Untyped(Value, &'t str),
    }
    let mut scalars = block::Scalars::default();
    for chunk in split(text) {
        let (mut items, mut handed) = (Vec::new(), false);
        let read = block::read_items(chunk, &mut scalars, &mut |item, item_text| {
            handed = true;
            // Items without their own apiVersion and kind take the list's, which the document may give after them.
            if !["apiVersion", "kind"].iter().all(|k| item.get(k).is_some_and(Value::is_string)) {
                items.push(Item::Untyped(item, item_text));
                return;
            }
            let (item, fits) = item_by_schema(item, item_text, "", "");
            items.extend(flatten(item, &[fits]).into_iter().map(|(o, fits)| Item::Prepared(prepare(o, fits))));
        });
        let read = match read {
            Ok(list) if list.as_object().is_some_and(is_list) => {
                let version = list["apiVersion"].as_str().unwrap_or_default().to_string();
                let kind = list["kind"].as_str().and_then(|k| k.strip_suffix("List")).unwrap_or_default().to_string();
                // In the order of the document: a name given twice is the last one's.
                for item in items {
                    match item {
                        Item::Prepared(prepared) => keep(prepared),
                        Item::Untyped(mut item, item_text) => {
                            give_type(&mut item, &version, &kind);
                            let (item, fits) = item_by_schema(item, item_text, &version, &kind);
                            for (object, fits) in flatten(item, &[fits]) {
                                keep(prepare(object, fits));
                            }
                        }
                    }
                }
                // Items the reader kept (an anchored `items`) are read as `documents` reads them.
                let rest = by_schema(list, chunk);
                for (object, fits) in flatten(rest.value, &rest.fits) {
                    keep(prepare(object, fits));
                }
                continue;
            }
            other => other,
        };
        // Not a list the block reader read: the document is read whole, as `documents` reads it.
        drop(items);
        let general =
            |chunk: &str| serde_saphyr::from_str_with_options(chunk, options(chunk.len())).map_err(|e| e.to_string());
        let document = match read {
            Ok(document) if !handed => document,
            // Items were handed over from a document that is not a list: read again, keeping them.
            Ok(_) => match block::read(chunk, &mut scalars) {
                Ok(document) => document,
                Err(_) => general(chunk)?,
            },
            Err(gave_up) => {
                tracing::debug!(line = gave_up.line, "a YAML document read by the general parser: {}", gave_up.reason);
                general(chunk)?
            }
        };
        if document.is_null() {
            continue;
        }
        let document = by_schema(document, chunk);
        for (object, fits) in flatten(document.value, &document.fits) {
            keep(prepare(object, fits));
        }
    }
    Ok(())
}

/// One item of a list, read from `text` (its lines) again as its type where its type expects strings the untyped
/// reading lost; and whether it was found to fit its type. `list_version` and `list_kind` stand in for its own.
fn item_by_schema(mut item: Value, text: &str, list_version: &str, list_kind: &str) -> (Value, bool) {
    let resource = match shape(&item, list_version, list_kind) {
        Shape::WantsStrings(resource) => resource,
        other => return (item, matches!(other, Shape::Fits)),
    };
    let kinds = [Some(resource)];
    let typed = serde_saphyr::with_deserializer_from_str_with_options(text, options(text.len()), |d| {
        Ok(ItemList(&kinds).deserialize(d).ok())
    });
    if let Ok(Some(typed)) = typed
        && let Some(Some(typed)) = typed.first()
    {
        take_strings(&mut item, typed);
    }
    (item, false)
}

/// A `List` (or `PodList`, …) becomes its items, each given the list's kind without `List` when it has none. Each
/// object comes with whether it is known to fit its type: `fits` says so for the document, or for each of a list's
/// items.
pub fn flatten(document: Value, fits: &[bool]) -> Vec<(Value, bool)> {
    match document {
        Value::Array(items) => items.into_iter().flat_map(|item| flatten(item, &[])).collect(),
        Value::Object(mut map) if is_list(&map) => {
            let item_kind = map["kind"].as_str().and_then(|k| k.strip_suffix("List")).unwrap_or_default().to_string();
            let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
            let Some(Value::Array(items)) = map.remove("items") else { return Vec::new() };
            items
                .into_iter()
                .enumerate()
                .flat_map(|(i, mut item)| {
                    give_type(&mut item, &api_version, &item_kind);
                    flatten(item, fits.get(i..=i).unwrap_or_default())
                })
                .collect()
        }
        other => vec![(other, fits.first() == Some(&true))],
    }
}

/// A list's item given the list's `kind` (without `List`) and `apiVersion` where it has none.
fn give_type(item: &mut Value, api_version: &str, kind: &str) {
    if let Value::Object(fields) = item
        && !kind.is_empty()
    {
        fields.entry("kind").or_insert_with(|| Value::String(kind.to_string()));
        if !api_version.is_empty() {
            fields.entry("apiVersion").or_insert_with(|| Value::String(api_version.to_string()));
        }
    }
}

/// Why the block reader left each document of `text` it did not read to the general parser (`line N: reason`); and
/// a panic when it reads one other than the general parser does, or when [`objects`], one by one, gives other objects
/// than [`documents`] read whole. For the fuzz target, and for tests that hold the dumps real tools write to the block
/// reader.
pub fn readings_agree(text: &str) -> Vec<String> {
    let whole = documents(text).map(|d| d.into_iter().flat_map(|d| flatten(d.value, &d.fits)).collect::<Vec<_>>());
    let mut streamed = Vec::new();
    let read = objects(text, &mut |object, fits| (object, fits), &mut |object| streamed.push(object));
    assert_eq!(read.map(|()| streamed), whole, "the objects of {text:?}, one by one and whole");
    let mut left = Vec::new();
    for chunk in split(text) {
        match block::read(chunk, &mut block::Scalars::default()) {
            Ok(value) => {
                let general = serde_saphyr::from_str_with_options::<Value>(chunk, options(chunk.len()));
                assert_eq!(Ok(value), general.map_err(|e| e.to_string()), "the readings of {chunk:?}");
            }
            Err(gave_up) => left.push(format!("line {}: {}", gave_up.line, gave_up.reason)),
        }
    }
    left
}

/// Dumps of large namespaces are far bigger than the defaults for configuration files allow: the budget scales with
/// the input (every YAML event needs at least one byte); the limits on aliases and nesting stay. A float too large
/// for a number reads as null rather than failing the document: the schema may want the text instead.
fn options(size: usize) -> serde_saphyr::Options {
    let size = size.max(1024);
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: size,
            max_nodes: size,
            max_documents: size,
            max_total_scalar_bytes: size,
        },
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    }
}

/// The text of each document in a YAML stream. A document starts at a `---` line (or at directives before one) and
/// ends before the next or at a `...` line: markers YAML allows nowhere else at the start of a line, so each piece
/// reads as the stream would.
fn split(text: &str) -> Vec<&str> {
    let marker = |line: &str, mark: &str| {
        line.strip_prefix(mark).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
    };
    let mut chunks = Vec::new();
    let (mut start, mut content) = (0, false);
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if content && !matches!(line.as_bytes()[0], b'-' | b'.' | b'%') {
            // Inside a document only a marker or a directive matters.
            at += line.len();
            continue;
        }
        let bare = line.trim_end_matches('\n');
        let directive = bare.starts_with('%');
        if (marker(bare, "---") || directive) && content {
            chunks.push(&text[start..at]);
            (start, content) = (at, false);
        }
        at += line.len();
        if marker(bare, "...") {
            chunks.push(&text[start..at]);
            (start, content) = (at, false);
        } else if !directive && !bare.trim().is_empty() && !bare.trim_start().starts_with('#') {
            content = true;
        }
    }
    chunks.push(&text[start..]);
    chunks.retain(|c| !c.trim().is_empty());
    chunks
}

/// `document`, with the strings its objects' types expect taken from `text` where the untyped reading lost them.
fn by_schema(mut document: Value, text: &str) -> Document {
    let Some(map) = document.as_object() else { return Document { value: document, fits: Vec::new() } };
    if is_list(map) {
        let item_kind = map["kind"].as_str().and_then(|k| k.strip_suffix("List")).unwrap_or_default();
        let list_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let Some(Value::Array(items)) = map.get("items") else { return Document { value: document, fits: Vec::new() } };
        let shapes: Vec<Shape> = items.iter().map(|item| shape(item, list_version, item_kind)).collect();
        let fits = shapes.iter().map(|s| matches!(s, Shape::Fits)).collect();
        let kinds: Vec<Option<&'static Resource>> =
            shapes.iter().map(|s| if let Shape::WantsStrings(r) = s { Some(*r) } else { None }).collect();
        if kinds.iter().all(Option::is_none) {
            return Document { value: document, fits };
        }
        // One item that does not fit its type fails the typed reading of the list: the list stays as it was read.
        let typed = serde_saphyr::with_deserializer_from_str_with_options(text, options(text.len()), |d| {
            Ok(Items(&kinds).deserialize(d).ok())
        });
        if let (Ok(Some(typed)), Some(Value::Array(items))) = (typed, document.get_mut("items")) {
            for (item, typed) in items.iter_mut().zip(typed) {
                if let Some(typed) = typed {
                    take_strings(item, &typed);
                }
            }
        }
        return Document { value: document, fits };
    }
    let resource = match shape(&document, "", "") {
        Shape::WantsStrings(resource) => resource,
        other => return Document { fits: vec![matches!(other, Shape::Fits)], value: document },
    };
    let typed = serde_saphyr::with_deserializer_from_str_with_options(text, options(text.len()), |d| {
        Ok(Typed(resource).deserialize(d).ok())
    });
    if let Ok(Some(typed)) = typed {
        take_strings(&mut document, &typed);
    }
    Document { value: document, fits: vec![false] }
}

/// Whether a document is a list of objects (`List`, `PodList`, …) with its `items`.
pub(crate) fn is_list(map: &Map<String, Value>) -> bool {
    map.get("kind").and_then(Value::as_str).is_some_and(|k| k.ends_with("List")) && map.contains_key("items")
}

/// How an object read untyped fits the type of its resource.
enum Shape {
    Fits,
    /// Its type expects a string where the untyped reading holds something else (a number, a boolean, or null for
    /// a float too large): worth reading again.
    WantsStrings(&'static Resource),
    /// Of no resource kubechat serves, or not fitting in other ways: the loader says which.
    Other,
}

/// How `object` fits its type. `list_version` and `list_kind` stand in for an item's own, as in a `PodList`.
fn shape(object: &Value, list_version: &str, list_kind: &str) -> Shape {
    let version = object.get("apiVersion").and_then(Value::as_str).unwrap_or(list_version);
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or(list_kind);
    let Some(resource) = resources::by_kind(version, kind) else { return Shape::Other };
    // An object filed under an older version (`extensions/v1beta1`) is checked, as the loader stores it, as the
    // version served.
    let mut renamed;
    let object = if object.get("apiVersion").is_some_and(|v| !v.as_str().is_some_and(|v| resource.is_api_version(v))) {
        renamed = object.clone();
        renamed["apiVersion"] = Value::String(resource.api_version());
        &renamed
    } else {
        object
    };
    match resources::check_shape(resource, object) {
        Ok(()) => Shape::Fits,
        Err(problem) if problem.contains("expected a string") => Shape::WantsStrings(resource),
        Err(_) => Shape::Other,
    }
}

/// Replaces every non-string scalar of `untyped` with the string `typed` holds at the same place.
fn take_strings(untyped: &mut Value, typed: &Value) {
    match (untyped, typed) {
        (Value::Object(u), Value::Object(t)) => {
            for (key, value) in u.iter_mut() {
                if let Some(t) = t.get(key) {
                    take_strings(value, t);
                }
            }
        }
        (Value::Array(u), Value::Array(t)) if u.len() == t.len() => {
            u.iter_mut().zip(t).for_each(|(u, t)| take_strings(u, t));
        }
        (u @ (Value::Number(_) | Value::Bool(_) | Value::Null), Value::String(t)) => *u = Value::String(t.clone()),
        _ => {}
    }
}

/// An object read as the type of `resource`, back as JSON; an error when it does not fit the type.
struct Typed(&'static Resource);

impl<'de> DeserializeSeed<'de> for Typed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        struct Read<'de, D>(D, std::marker::PhantomData<&'de ()>);
        impl<'de, D: Deserializer<'de>> WithType for Read<'de, D> {
            type Out = Result<Value, D::Error>;
            fn with<K: serde::de::DeserializeOwned + serde::Serialize>(self) -> Self::Out {
                let object = K::deserialize(self.0)?;
                serde_json::to_value(object).map_err(de::Error::custom)
            }
        }
        let deserializer = AsVersion { inner: deserializer, version: self.0.api_version() };
        match resources::with_type(self.0, Read(deserializer, std::marker::PhantomData)) {
            Ok(read) => read,
            Err(Read(deserializer, _)) => Value::deserialize(deserializer.inner),
        }
    }
}

/// A deserializer of one object that reads its `apiVersion` as `version`, the one kubechat serves: an object filed
/// under an older version (`extensions/v1beta1`) is read as the type of the version served, as the loader stores it.
struct AsVersion<D> {
    inner: D,
    version: String,
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for AsVersion<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(Versioned { inner: visitor, version: self.version })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_map(Versioned { inner: visitor, version: self.version })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner.deserialize_struct(name, fields, Versioned { inner: visitor, version: self.version })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit unit_struct
        newtype_struct seq tuple tuple_struct enum identifier ignored_any
    }
}

/// [`AsVersion`]'s visitor: the object's mapping read through [`VersionedMap`].
struct Versioned<V> {
    inner: V,
    version: String,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Versioned<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(VersionedMap { inner: map, version: Some(self.version), at_version: false })
    }
}

/// A mapping whose `apiVersion` value is read as `version`.
struct VersionedMap<A> {
    inner: A,
    version: Option<String>,
    at_version: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for VersionedMap<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        use serde::de::IntoDeserializer as _;
        let Some(key) = self.inner.next_key::<String>()? else { return Ok(None) };
        self.at_version = key == "apiVersion";
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        use serde::de::IntoDeserializer as _;
        match (self.at_version, self.version.take()) {
            (true, Some(version)) => {
                self.inner.next_value::<de::IgnoredAny>()?;
                seed.deserialize(version.into_deserializer())
            }
            (_, version) => {
                self.version = version;
                self.inner.next_value_seed(seed)
            }
        }
    }
}

/// A list's `items`, each one `kinds` names read as its type, the others skipped.
struct Items<'a>(&'a [Option<&'static Resource>]);

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = Vec<Option<Value>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of Kubernetes objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                items = map.next_value_seed(ItemList(self.0))?;
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        Ok(items)
    }
}

struct ItemList<'a>(&'a [Option<&'static Resource>]);

impl<'de> DeserializeSeed<'de> for ItemList<'_> {
    type Value = Vec<Option<Value>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ItemList<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of Kubernetes objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(self.0.len());
        for kind in self.0 {
            let item = match kind {
                Some(resource) => seq.next_element_seed(Typed(resource))?,
                None => seq.next_element::<de::IgnoredAny>()?.map(|_| Value::Null),
            };
            let Some(item) = item else { break };
            items.push(kind.map(|_| item));
        }
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every YAML file of the scenario dump, with its path.
    pub(super) fn scenario_dumps() -> Vec<(std::path::PathBuf, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/scenarios");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect();
        files.sort();
        assert!(files.len() >= 40, "{} scenario files", files.len());
        files
    }

    fn values(text: &str) -> Vec<Value> {
        documents(text).unwrap().into_iter().map(|d| d.value).collect()
    }

    #[test]
    fn documents_split_at_markers_only() {
        let text = "%YAML 1.2\n---\na: 1\n...\n# between\n--- {b: 2}\n---\nc: |\n  ---\n  not a marker\n---\n";
        let chunks = split(text);
        assert_eq!(
            chunks,
            ["%YAML 1.2\n---\na: 1\n...\n", "# between\n--- {b: 2}\n", "---\nc: |\n  ---\n  not a marker\n", "---\n"]
        );
        // The last, empty, document is left out.
        let values: Vec<Value> = documents(text).unwrap().into_iter().map(|d| d.value).collect();
        assert_eq!(
            values,
            [serde_json::json!({"a": 1}), serde_json::json!({"b": 2}), serde_json::json!({"c": "---\nnot a marker\n"})]
        );
    }

    #[test]
    fn strings_stay_strings_where_the_type_says_string() {
        let text = r#"
apiVersion: v1
kind: Pod
metadata:
  name: 0123
  namespace: shop
  labels: {pod-template-hash: 2e7696897, version: 1.10, canary: yes, build: 0123}
  annotations: {note: 1e5}
spec:
  nodeName: 10
  containers:
  - name: app
    image: web:1.10
    args: [--workers, 4, --ratio, 0.50]
    ports: [{containerPort: 8080}]
  unknownField: 1.10
status: {phase: Running}
"#;
        let [pod] = values(text).try_into().unwrap();
        let labels = &pod["metadata"]["labels"];
        assert_eq!(labels["pod-template-hash"], "2e7696897");
        assert_eq!(labels["version"], "1.10");
        assert_eq!(labels["canary"], "yes");
        assert_eq!(labels["build"], "0123");
        assert_eq!(pod["metadata"]["name"], "0123");
        assert_eq!(pod["metadata"]["annotations"]["note"], "1e5");
        assert_eq!(pod["spec"]["nodeName"], "10");
        assert_eq!(pod["spec"]["containers"][0]["args"], serde_json::json!(["--workers", "4", "--ratio", "0.50"]));
        // Numbers the type says are numbers, and fields it does not know, stay as YAML read them.
        assert_eq!(pod["spec"]["containers"][0]["ports"][0]["containerPort"], 8080);
        assert_eq!(pod["spec"]["unknownField"], 1.1);
        assert_eq!(resources::check_shape(&resources::PODS, &pod), Ok(()));
    }

    #[test]
    fn list_items_are_read_by_their_own_type() {
        let text = r#"
apiVersion: v1
kind: PodList
items:
- metadata: {name: a, labels: {pod-template-hash: 2e7696897}}
- metadata: {name: b, labels: {app: web}}
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata: {name: web-2e7696897, labels: {pod-template-hash: 2e7696897}}
  spec: {replicas: 2, selector: {matchLabels: {pod-template-hash: 2e7696897}}}
- apiVersion: example.com/v1
  kind: Widget
  metadata: {name: w, labels: {size: 1.10}}
"#;
        let [list] = values(text).try_into().unwrap();
        let items = list["items"].as_array().unwrap();
        assert_eq!(items[0]["metadata"]["labels"]["pod-template-hash"], "2e7696897");
        assert_eq!(items[1]["metadata"]["labels"]["app"], "web");
        assert_eq!(items[2]["spec"]["selector"]["matchLabels"]["pod-template-hash"], "2e7696897");
        assert_eq!(items[2]["spec"]["replicas"], 2);
        // A kind kubechat has no type for keeps the reading YAML gives it.
        assert_eq!(items[3]["metadata"]["labels"]["size"], 1.1);
    }

    #[test]
    fn the_loader_learns_which_objects_fit_their_type_already() {
        let text = "kind: List\napiVersion: v1\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n\
                    - {apiVersion: v1, kind: Pod, metadata: {name: b}, spec: {containers: web}}\n\
                    - {apiVersion: v1, kind: Pod, metadata: {name: c, labels: {v: 1.10}}}\n\
                    - {apiVersion: example.com/v1, kind: Widget, metadata: {name: w}}\n\
                    ---\napiVersion: v1\nkind: Pod\nmetadata: {name: d}\n";
        let fits: Vec<Vec<bool>> = documents(text).unwrap().into_iter().map(|d| d.fits).collect();
        // The one read again is checked again by the loader, as are the one that does not fit and the unknown kind.
        assert_eq!(fits, [vec![true, false, false, false], vec![true]]);
    }

    #[test]
    fn objects_one_by_one_are_the_documents_read_whole() {
        let mut texts: Vec<String> = scenario_dumps().into_iter().map(|(_, text)| text).collect();
        let item = |name: &str| {
            format!("- apiVersion: v1\n  kind: Pod\n  metadata:\n    name: {name}\n    labels: {{v: 1.10}}\n")
        };
        // The third item is outside the block reader's subset: the list is read whole by the general parser.
        let given_up = format!(
            "apiVersion: v1\nitems:\n{}{}- {{apiVersion: v1, kind: Pod, metadata: {{name: c}}}}\nkind: List\n",
            item("a"),
            item("b")
        );
        let mut streamed = 0;
        objects(&given_up, &mut |o, _| o, &mut |_| streamed += 1).unwrap();
        assert_eq!(streamed, 3, "every item of a list the general parser read, once");
        texts.extend([
            given_up,
            // An item without a kind before one with it: the objects keep the document's order.
            format!("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  knd: Pod\n  metadata: {{name: a}}\n{}", item("a")),
            // Items indented under their key, the list's kind first, items without a kind of their own.
            "kind: PodList\napiVersion: v1\nitems:\n  - metadata: {name: a}\n  - metadata:\n      name: b\nmetadata: {}\n".into(),
            // `items` in something that is not a list, anchored items, and a list in a list.
            format!("apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w}}\nitems:\n{}", item("a")),
            format!("apiVersion: v1\nkind: List\nitems: &all\n{}", item("a")),
            format!("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items:\n  {}", item("a").replace("\n  ", "\n    ")),
            format!("---\n{}---\nnote: not an object\n", item("x").trim_start_matches("- ").replace("\n  ", "\n")),
        ]);
        for text in &texts {
            // Panics where the objects read one by one differ from the documents read whole.
            readings_agree(text);
        }
    }

    #[test]
    fn an_object_that_does_not_fit_its_type_stays_as_read() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {v: 1.10}}\nspec: {containers: web}\n";
        let [pod] = values(text).try_into().unwrap();
        assert_eq!(pod["spec"]["containers"], "web");
        assert!(resources::check_shape(&resources::PODS, &pod).is_err());
    }
}
