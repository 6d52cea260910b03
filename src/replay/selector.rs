//! Label and field selectors, parsed as the API server parses them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<LabelRequirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        for term in split_terms(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_label_term(term)?);
        }
        Ok(LabelSelector(requirements))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            LabelRequirement::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelRequirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelRequirement::In(k, vs) => label(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            LabelRequirement::NotIn(k, vs) => label(k).is_none_or(|l| vs.iter().all(|v| v != l)),
            LabelRequirement::Exists(k) => label(k).is_some(),
            LabelRequirement::DoesNotExist(k) => label(k).is_none(),
        })
    }
}

/// Splits on commas that are not inside `in (…)` value sets.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn parse_label_term(term: &str) -> Result<LabelRequirement, String> {
    let invalid = || format!("unable to parse requirement: invalid label selector term {term:?}");
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(checked_key(key.trim(), term)?));
    }
    for (operator, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, values)) = term.split_once(operator) {
            let values = values.trim();
            let values = values.strip_prefix('(').and_then(|v| v.strip_suffix(')')).ok_or_else(invalid)?;
            let values = values.split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect();
            let key = checked_key(key.trim(), term)?;
            return Ok(if negated { LabelRequirement::NotIn(key, values) } else { LabelRequirement::In(key, values) });
        }
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(checked_key(key.trim(), term)?, value.trim().to_string()));
    }
    if let Some((key, value)) = term.split_once('=') {
        let value = value.strip_prefix('=').unwrap_or(value);
        return Ok(LabelRequirement::Equals(checked_key(key.trim(), term)?, value.trim().to_string()));
    }
    Ok(LabelRequirement::Exists(checked_key(term, term)?))
}

fn checked_key(key: &str, term: &str) -> Result<String, String> {
    let valid = !key.is_empty()
        && key.len() <= 317
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if valid { Ok(key.to_string()) } else { Err(format!("unable to parse requirement: invalid label key in {term:?}")) }
}

/// A parsed `fieldSelector`: `field=value`, `field==value` and `field!=value` terms joined by commas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, String, bool)>);

/// The fields every resource can be selected on; each resource adds its own.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The extra selectable fields per resource plural, as the real API server defines them.
fn resource_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &[
            "status.phase",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "namespaces" => &["status.phase"],
        "nodes" => &["spec.unschedulable"],
        "persistentvolumeclaims" => &[],
        "replicasets" => &["status.replicas"],
        "jobs" => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses a selector, refusing fields the resource cannot be selected on, as the API server does.
    pub fn parse(text: &str, plural: &str) -> Result<FieldSelector, String> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, negated) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, false)
            } else {
                return Err(format!("invalid field selector: {term:?} is not of the form field=value"));
            };
            let field = field.trim();
            if !COMMON_FIELDS.contains(&field) && !resource_fields(plural).contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            terms.push((field.to_string(), value.trim().to_string(), negated));
        }
        Ok(FieldSelector(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, value, negated)| {
            let actual = field_value(object, field);
            (actual == *value) != *negated
        })
    }
}

/// A field's value as the API server renders it for selection: missing fields are the empty string.
fn field_value(object: &Value, field: &str) -> String {
    if field == "source" {
        return object["source"]["component"].as_str().unwrap_or_default().to_string();
    }
    let mut current = object;
    for part in field.split('.') {
        current = &current[part];
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null if field == "spec.unschedulable" => "false".to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "shop", "labels": labels}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_selectors_follow_the_api_grammar() {
        let p = pod(json!({"app": "web", "tier": "front"}));
        for (selector, expected) in [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web,api)", false),
            ("app,tier=front", true),
            ("!release", true),
            ("release", false),
            ("app=web,tier in (back)", false),
            ("", true),
        ] {
            assert_eq!(LabelSelector::parse(selector).unwrap().matches(&p), expected, "{selector}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selectors_check_supported_fields() {
        let p = pod(json!({}));
        assert!(FieldSelector::parse("status.phase=Running", "pods").unwrap().matches(&p));
        assert!(!FieldSelector::parse("status.phase!=Running", "pods").unwrap().matches(&p));
        assert!(FieldSelector::parse("metadata.name==p,metadata.namespace=shop", "pods").unwrap().matches(&p));
        let err = FieldSelector::parse("spec.containers=x", "pods").unwrap_err();
        assert_eq!(err, "field label not supported: spec.containers");
        let event = json!({"type": "Warning", "involvedObject": {"kind": "Pod", "name": "p"}});
        let selector = FieldSelector::parse("involvedObject.name=p,involvedObject.kind=Pod,type=Warning", "events");
        assert!(selector.unwrap().matches(&event));
    }
}
