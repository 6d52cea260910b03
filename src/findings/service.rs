//! Services: no ready endpoints (with the near-miss label and the cause), and target ports no container declares.

use super::*;

pub(super) fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

pub(super) fn service_findings(facts: &Facts, pod_findings: &[Finding]) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for service in &facts.services {
        let name = name_of(&service.metadata);
        let Some(spec) = &service.spec else { continue };
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        if facts.unread.contains("endpoints") {
            continue; // endpoints were not read (a gap says why): no basis for a finding
        }
        // A selector service has an Endpoints object once the controller has seen it; none means no addresses.
        let endpoints = facts.endpoints.iter().find(|e| name_of(&e.metadata) == name);
        let subsets = endpoints.and_then(|e| e.subsets.as_ref()).into_iter().flatten();
        let ready: usize = subsets.clone().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
        let not_ready: usize = subsets.map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len)).sum();
        if ready > 0 {
            continue;
        }
        let selected: Vec<&Pod> = facts.pods.iter().filter(|p| selects(selector, p)).collect();
        let selector_text = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let near = near_miss(facts, selector);
        let summary = if selected.is_empty() {
            let hint = near.as_ref().map(|(pod, key, wanted, found)| {
                format!("; pod {pod} (and its like) carries {key}={found}, not {key}={wanted}")
            });
            format!(
                "Service {name} has no endpoints: no pod matches its selector {selector_text}{}",
                hint.unwrap_or_default()
            )
        } else {
            format!(
                "Service {name} has no ready endpoints: {} pod(s) match {selector_text} but none is ready",
                selected.len()
            )
        };
        let mut f = Finding::new(Reason::ServiceNoEndpoints, Severity::Critical, object("Service", ns, name), summary);
        f.evidence.push(format!("service {name} spec.selector: {selector_text}"));
        if let (true, Some((pod, key, wanted, found))) = (selected.is_empty(), &near) {
            f.evidence.push(format!("near miss: pod {pod} has label {key}={found}; the selector wants {key}={wanted}"));
        }
        // No pod, because the workload that would make them cannot: that is the cause.
        if selected.is_empty()
            && let Some(refused) = pod_findings.iter().find(|f| {
                f.reason == Reason::FailedCreate
                    && template_labels(facts, &f.object.kind, &f.object.name)
                        .is_some_and(|labels| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            })
        {
            f.evidence.push(format!(
                "{} {}: {}",
                refused.object.kind.to_lowercase(),
                refused.object.name,
                refused.summary
            ));
            f.caused_by = Some(refused.link());
        }
        f.evidence.push(format!("endpoints {name}: {ready} ready addresses, {not_ready} not ready"));
        for pod in selected.iter().take(5) {
            let pod_name = name_of(&pod.metadata);
            let problems: Vec<String> = pod_findings
                .iter()
                .filter(|f| {
                    f.object.kind == "Pod"
                        && (f.object.name == pod_name || f.also_affected.iter().any(|a| a == pod_name))
                })
                .map(|f| f.reason.to_string())
                .collect();
            if f.caused_by.is_none() {
                f.caused_by = pod_findings
                    .iter()
                    .find(|f| f.object.kind == "Pod" && f.object.name == pod_name)
                    .map(Finding::link);
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
            let detail = if problems.is_empty() { String::new() } else { format!(" ({})", problems.join(", ")) };
            f.evidence.push(format!("selected pod {pod_name}: phase {phase}, not ready{detail}"));
        }
        f.commands = vec![
            format!("kubectl get endpoints -n {ns} {name}"),
            format!("kubectl get pods -n {ns} -l {selector_text} -o wide"),
            format!("kubectl describe service -n {ns} {name}"),
        ];
        findings.push(f);
    }
    findings
}

/// The pod whose labels match `selector` in every key but one, with that key, the value wanted and the value found.
pub(super) fn near_miss(
    facts: &Facts,
    selector: &BTreeMap<String, String>,
) -> Option<(String, String, String, String)> {
    facts.pods.iter().find_map(|pod| {
        let labels = pod.metadata.labels.as_ref()?;
        let mut missed = selector.iter().filter(|(k, v)| labels.get(*k) != Some(*v));
        let (key, wanted) = missed.next()?;
        if missed.next().is_some() {
            return None;
        }
        let found = labels.get(key)?;
        Some((name_of(&pod.metadata).to_string(), key.clone(), wanted.clone(), found.clone()))
    })
}

/// The ports a pod's containers declare: (name, number, container).
type Declared = Vec<(Option<String>, i32, String)>;

/// Services whose `targetPort` no container of their pods declares: the endpoints exist, the connections fail.
pub(super) fn port_findings(facts: &Facts) -> Vec<Finding> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for service in &facts.services {
        let name = name_of(&service.metadata);
        let Some(spec) = &service.spec else { continue };
        let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else { continue };
        let selected: Vec<&Pod> = facts.pods.iter().filter(|p| selects(selector, p)).collect();
        let ports_of = |pod: &'_ Pod| -> Declared {
            pod.spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten().map(move |p| (p.name.clone(), p.container_port, c.name.clone())))
                .collect()
        };
        // Ports need not be declared: only pods that declare some are judged, and a port any of them has is fine.
        let declaring: Vec<(&Pod, Declared)> =
            selected.iter().map(|p| (*p, ports_of(p))).filter(|(_, ports)| !ports.is_empty()).collect();
        let Some((pod, first)) = declaring.first() else { continue };
        let declared: Vec<(Option<&str>, i32, &str)> =
            first.iter().map(|(n, p, c)| (n.as_deref(), *p, c.as_str())).collect();
        let all: Vec<&(Option<String>, i32, String)> = declaring.iter().flat_map(|(_, ports)| ports.iter()).collect();
        for port in spec.ports.iter().flatten() {
            let target = port.target_port.clone().unwrap_or(IntOrString::Int(port.port));
            let found = match &target {
                IntOrString::Int(number) => all.iter().any(|(_, p, _)| p == number),
                IntOrString::String(named) => all.iter().any(|(n, _, _)| n.as_deref() == Some(named.as_str())),
            };
            if found {
                continue;
            }
            let target = match &target {
                IntOrString::Int(number) => number.to_string(),
                IntOrString::String(named) => format!("the port named {named}"),
            };
            let listens: Vec<String> = declared
                .iter()
                .map(|(n, p, c)| format!("{p}{} (container {c})", n.map(|n| format!("/{n}")).unwrap_or_default()))
                .collect();
            let pod_name = name_of(&pod.metadata);
            let port_name = port.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            let mut f = Finding::new(
                Reason::ServicePortMismatch,
                Severity::Critical,
                object("Service", ns, name),
                format!(
                    "Service {name} sends port {}{port_name} to targetPort {target}, but its pods declare no such port: they listen on {}",
                    port.port,
                    listens.join(", ")
                ),
            );
            f.evidence.push(format!("service {name} port {}{port_name}: targetPort {target}", port.port));
            f.evidence.push(format!("pod {pod_name} containers' ports: {}", listens.join(", ")));
            f.evidence.push(format!("{} pod(s) selected", selected.len()));
            f.commands = vec![
                format!("kubectl describe service -n {ns} {name}"),
                format!("kubectl get endpoints -n {ns} {name}"),
                format!("kubectl get pod -n {ns} {pod_name} -o jsonpath='{{.spec.containers[*].ports}}'"),
            ];
            findings.push(f);
        }
    }
    findings
}

/// The labels a workload gives the pods it creates.
pub(super) fn template_labels<'a>(facts: &'a Facts, kind: &str, name: &str) -> Option<&'a BTreeMap<String, String>> {
    let named = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| name_of(meta) == name;
    let template = match kind {
        "ReplicaSet" => {
            facts.replicasets.iter().find(|o| named(&o.metadata)).and_then(|o| o.spec.as_ref()?.template.as_ref())
        }
        "StatefulSet" => {
            facts.statefulsets.iter().find(|o| named(&o.metadata)).and_then(|o| Some(&o.spec.as_ref()?.template))
        }
        "DaemonSet" => {
            facts.daemonsets.iter().find(|o| named(&o.metadata)).and_then(|o| Some(&o.spec.as_ref()?.template))
        }
        "Job" => facts.jobs.iter().find(|o| named(&o.metadata)).and_then(|o| Some(&o.spec.as_ref()?.template)),
        _ => None,
    }?;
    template.metadata.as_ref()?.labels.as_ref()
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn service_without_matching_pods_has_no_endpoints() {
        let findings = analyze(&facts("services"));
        assert_eq!(summary(&findings), [(Reason::ServiceNoEndpoints, "Service", "legacy-api")]);
        assert!(findings[0].summary.contains("no pod matches its selector app=legacy-api"));
    }

    #[test]
    fn services_pointing_nowhere_name_the_port_or_label_that_misses() {
        let ports = analyze(&facts("ports"));
        assert_eq!(summary(&ports), [(Reason::ServicePortMismatch, "Service", "recommendations")]);
        assert_eq!(
            ports[0].summary,
            "Service recommendations sends port 80 (http) to targetPort 8080, but its pods declare no such port: they listen on 3000/http (container recommendations)"
        );
        let selector = analyze(&facts("selector"));
        assert_eq!(summary(&selector), [(Reason::ServiceNoEndpoints, "Service", "payments-api")]);
        assert!(
            selector[0].summary.ends_with("carries app=payments-api, not app=paymnets-api"),
            "{}",
            selector[0].summary
        );
    }

    #[test]
    fn a_target_port_one_of_the_selected_pods_declares_is_no_mismatch() {
        // A Service over two workloads, one declaring the port: traffic reaches that one, so no finding.
        let mut facts = facts("ports");
        let mut other = facts.pods[facts.pods.len() - 1].clone();
        other.metadata.name = Some("recommendations-canary-0".into());
        let container = &mut other.spec.as_mut().unwrap().containers[0];
        container.ports.as_mut().unwrap()[0].container_port = 8080;
        facts.pods.push(other);
        let found = analyze(&facts);
        assert!(!summary(&found).iter().any(|(r, _, _)| *r == Reason::ServicePortMismatch), "{:?}", summary(&found));
    }
}
