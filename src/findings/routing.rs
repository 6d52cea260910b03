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

/// The class an Ingress asks for: `spec.ingressClassName`, or the older `kubernetes.io/ingress.class` annotation.
fn class_of(ingress: &k8s_openapi::api::networking::v1::Ingress) -> Option<&str> {
    let annotation = ingress.metadata.annotations.as_ref().and_then(|a| a.get("kubernetes.io/ingress.class"));
    ingress.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()).or(annotation.map(String::as_str))
}

/// An `IngressClassMissing` finding for each Ingress that names a class the cluster does not have, or names none
/// where the cluster has no default class: no controller serves it, so its routes answer nothing.
pub(super) fn ingress_class_findings(facts: &Facts) -> Vec<Finding> {
    if facts.ingress_classes.is_empty() || facts.unread.contains("ingressclasses") {
        return Vec::new(); // not read, or a cluster whose controllers predate IngressClasses: no basis
    }
    let ns = facts.namespace.as_str();
    let classes: Vec<&str> = facts.ingress_classes.iter().map(|c| name_of(&c.metadata)).collect();
    let default = facts.ingress_classes.iter().find(|c| {
        let annotations = c.metadata.annotations.as_ref();
        annotations.and_then(|a| a.get("ingressclass.kubernetes.io/is-default-class")).is_some_and(|v| v == "true")
    });
    let mut findings = Vec::new();
    for ingress in &facts.ingresses {
        let name = name_of(&ingress.metadata);
        let summary = match class_of(ingress) {
            Some(class) if classes.contains(&class) => continue,
            Some(class) => {
                let near = closest(class, classes.iter().map(|c| c.to_string()));
                let hint = near.first().map(|n| format!("; did you mean {n}?")).unwrap_or_default();
                format!("Ingress {name} asks for the IngressClass {class}, which the cluster does not have{hint}")
            }
            None if default.is_some() => continue,
            None => format!("Ingress {name} names no IngressClass and the cluster has no default one"),
        };
        let mut f = Finding::new(
            Reason::IngressClassMissing,
            Severity::Critical,
            object("Ingress", ns, name),
            format!("{summary}: no ingress controller serves it"),
        );
        f.evidence.push(format!("ingress {name} spec.ingressClassName: {}", class_of(ingress).unwrap_or("(none)")));
        let described: Vec<String> = facts
            .ingress_classes
            .iter()
            .map(|c| {
                let controller = c.spec.as_ref().and_then(|s| s.controller.as_deref()).unwrap_or("?");
                let default = if default.is_some_and(|d| std::ptr::eq(d, c)) { ", default" } else { "" };
                format!("{} ({controller}{default})", name_of(&c.metadata))
            })
            .collect();
        f.evidence.push(format!("ingressclasses: {}", described.join(", ")));
        f.commands = vec![format!("kubectl describe ingress -n {ns} {name}"), "kubectl get ingressclasses".to_string()];
        findings.push(f);
    }
    findings
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn an_ingress_asking_for_a_class_nobody_serves() {
        let facts = facts("ingressclass");
        assert_eq!(facts.ingress_classes.len(), 2);
        let findings = analyze(&facts);
        assert_eq!(summary(&findings), [(Reason::IngressClassMissing, "Ingress", "docs")]);
        assert!(
            findings[0].summary.contains("IngressClass ngnix, which the cluster does not have; did you mean nginx?")
        );
        assert!(evidence(&findings[0]).contains("ingressclasses: nginx (k8s.io/ingress-nginx, default), traefik"));
    }

    #[test]
    fn ingresses_autoscalers_and_budgets_that_get_in_the_way() {
        let ingress = analyze(&facts("ingress"));
        assert_eq!(summary(&ingress), [(Reason::IngressBackendMissing, "Ingress", "shop")]);
        assert_eq!(
            ingress[0].summary,
            "Ingress shop routes shop.example.com/api nowhere: its Service api-gatway does not exist; did you mean api-gateway?"
        );
        let hpa = analyze(&facts("hpa"));
        assert_eq!(
            summary(&hpa),
            [
                (Reason::HPAScalingInactive, "HorizontalPodAutoscaler", "search-api"),
                (Reason::HPAAtMaximum, "HorizontalPodAutoscaler", "thumbnails")
            ]
        );
        let inactive = evidence(&hpa[0]);
        assert!(inactive.contains("unable to fetch metrics from resource metrics API"), "{inactive}");
        assert!(evidence(&hpa[1]).contains("metric cpu: 184% (target 70%)"), "{}", evidence(&hpa[1]));
        let pdb = analyze(&facts("pdb"));
        assert_eq!(summary(&pdb), [(Reason::PDBBlocking, "PodDisruptionBudget", "ledger-api")]);
        assert!(
            pdb[0].summary.contains("allows no disruption (minAvailable 2, 2 of 2 pods healthy)"),
            "{}",
            pdb[0].summary
        );
    }
}
