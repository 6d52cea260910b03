//! PersistentVolumeClaims that stay pending.

use super::*;

pub(super) fn pvc_findings(facts: &Facts, index: &EventIndex<'_>) -> Vec<Finding> {
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for pvc in &facts.pvcs {
        let name = name_of(&pvc.metadata);
        let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
        if phase != Some("Pending") {
            continue;
        }
        let class = pvc.spec.as_ref().and_then(|s| s.storage_class_name.as_deref());
        let events: Vec<&Event> = events_with(
            events_of(index, "PersistentVolumeClaim", name),
            &["ProvisioningFailed", "FailedBinding", "ExternalProvisioning"],
        )
        .collect();
        let why = events.first().and_then(|e| e.message.as_deref()).unwrap_or("no volume has been bound to it");
        let mut f = Finding::new(
            Reason::PVCPending,
            Severity::Critical,
            object("PersistentVolumeClaim", ns, name),
            format!("PersistentVolumeClaim {name} is not bound: {}", why.trim()),
        );
        f.evidence.push("status.phase: Pending".into());
        f.evidence.push(format!("spec.storageClassName: {}", class.unwrap_or("<none>")));
        f.evidence.extend(events.iter().take(3).map(|e| quote_event(e)));
        f.commands = vec![
            format!("kubectl describe pvc -n {ns} {name}"),
            "kubectl get storageclass".into(),
            format!("kubectl get events -n {ns} --field-selector involvedObject.name={name}"),
        ];
        findings.push(f);
    }
    findings
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn pending_claim_is_the_root_of_the_unschedulable_pod() {
        let findings = analyze(&facts("storage"));
        assert_eq!(
            summary(&findings),
            [
                (Reason::PVCPending, "PersistentVolumeClaim", "data-postgres-0"),
                (Reason::Unschedulable, "Pod", "postgres-0")
            ]
        );
        assert!(evidence(&findings[0]).contains(r#"storageclass.storage.k8s.io "fast-ssd" not found"#));
        assert_eq!(findings[1].caused_by, Some(findings[0].link()));
    }
}
