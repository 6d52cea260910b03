//! Ingresses whose backend Service, or the Service's port, does not exist: the route is there and answers 503.

use k8s_openapi::api::networking::v1::IngressServiceBackend;

use super::{Finding, Reason, Severity, name_of, object};
use crate::facts::{Facts, closest};

/// An `IngressBackendMissing` finding for each backend an Ingress names that the namespace does not have.
pub(super) fn ingress_findings(facts: &Facts) -> Vec<Finding> {
    if facts.unread.contains("services") {
        return Vec::new(); // the Services were not read (a gap says why): no basis for a finding
    }
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for ingress in &facts.ingresses {
        let name = name_of(&ingress.metadata);
        let Some(spec) = &ingress.spec else { continue };
        let mut backends: Vec<(String, &IngressServiceBackend)> = Vec::new();
        if let Some(service) = spec.default_backend.as_ref().and_then(|b| b.service.as_ref()) {
            backends.push(("the default backend".to_string(), service));
        }
        for rule in spec.rules.iter().flatten() {
            let host = rule.host.as_deref().unwrap_or("*");
            for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                if let Some(service) = path.backend.service.as_ref() {
                    backends.push((format!("{host}{}", path.path.as_deref().unwrap_or("/")), service));
                }
            }
        }
        for (route, backend) in backends {
            let service = facts.services.iter().find(|s| name_of(&s.metadata) == backend.name);
            let problem = match service {
                None => {
                    let names = facts.services.iter().map(|s| name_of(&s.metadata).to_string());
                    let near = closest(&backend.name, names);
                    let hint = near.first().map(|n| format!("; did you mean {n}?")).unwrap_or_default();
                    format!("its Service {} does not exist{hint}", backend.name)
                }
                Some(service) => {
                    let ports = service.spec.iter().flat_map(|s| s.ports.iter().flatten());
                    let wanted = backend.port.as_ref();
                    let (by_number, by_name) = (wanted.and_then(|p| p.number), wanted.and_then(|p| p.name.clone()));
                    let found = ports.clone().any(|p| {
                        Some(p.port) == by_number || (by_name.is_some() && p.name.as_deref() == by_name.as_deref())
                    });
                    if found || wanted.is_none() {
                        continue;
                    }
                    let has: Vec<String> = ports
                        .map(|p| {
                            format!("{}{}", p.port, p.name.as_deref().map(|n| format!("/{n}")).unwrap_or_default())
                        })
                        .collect();
                    let asked = by_number.map(|n| n.to_string()).or(by_name).unwrap_or_default();
                    format!("its Service {} has no port {asked} (it has {})", backend.name, has.join(", "))
                }
            };
            let mut f = Finding::new(
                Reason::IngressBackendMissing,
                Severity::Critical,
                object("Ingress", ns, name),
                format!("Ingress {name} routes {route} nowhere: {problem}"),
            );
            let port = backend
                .port
                .as_ref()
                .map(|p| p.number.map(|n| n.to_string()).or_else(|| p.name.clone()).unwrap_or_default());
            f.evidence.push(format!(
                "ingress {name} backend for {route}: service {} port {}",
                backend.name,
                port.unwrap_or_default()
            ));
            let services: Vec<&str> = facts.services.iter().map(|s| name_of(&s.metadata)).collect();
            f.evidence.push(format!("services in {ns}: {}", services.join(", ")));
            f.commands =
                vec![format!("kubectl describe ingress -n {ns} {name}"), format!("kubectl get services -n {ns}")];
            findings.push(f);
        }
    }
    findings
}
