//! CronJobs whose runs no longer succeed: the schedule has come due at least twice since the last success (or since
//! the CronJob was made, when it never succeeded), so the run after the last success had a whole period to finish.
//! Suspended CronJobs and missed schedules have their own findings; this is the quiet failure behind a report that
//! stopped arriving, a backup that stopped being taken.

use jiff::tz::TimeZone;

use super::{Finding, Reason, Severity, controller_of, how_long, name_of, object};
use crate::cron::Schedule;
use crate::facts::Facts;

/// Runs due since the last success before it is a finding.
const DUE: usize = 2;

pub(super) fn findings(facts: &Facts, now: Option<jiff::Timestamp>, earlier: &[Finding]) -> Vec<Finding> {
    let Some(now) = now else { return Vec::new() };
    let ns = facts.namespace.as_str();
    let mut findings = Vec::new();
    for cronjob in &facts.cronjobs {
        let name = name_of(&cronjob.metadata);
        let Some(spec) = &cronjob.spec else { continue };
        let said = earlier.iter().any(|f| {
            matches!(f.reason, Reason::CronJobSuspended | Reason::CronJobMissedSchedule)
                && f.object.kind == "CronJob"
                && f.object.name == name
        });
        if spec.suspend == Some(true) || said {
            continue;
        }
        // `CRON_TZ=Europe/Berlin 0 3 * * *` (before the timeZone field) or spec.timeZone; UTC otherwise, as the
        // controller's own zone usually is. A zone this machine does not know is no basis for a finding.
        let (zone, schedule) = match spec.schedule.split_once(' ') {
            Some((prefix, rest)) if prefix.starts_with("CRON_TZ=") || prefix.starts_with("TZ=") => {
                (Some(prefix.split_once('=').map_or("", |(_, z)| z)), rest)
            }
            _ => (spec.time_zone.as_deref(), spec.schedule.as_str()),
        };
        let Ok(tz) = zone.map_or(Ok(TimeZone::UTC), TimeZone::get) else { continue };
        let Ok(parsed) = Schedule::parse(schedule) else { continue };
        let jobs: Vec<_> =
            facts.jobs.iter().filter(|j| controller_of(&j.metadata) == Some(("CronJob", name))).collect();
        let condition = |job: &k8s_openapi::api::batch::v1::Job, kind: &str| {
            let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions.into_iter().flatten().any(|c| c.type_ == kind && c.status == "True")
        };
        let status = cronjob.status.as_ref();
        let last_success = jobs
            .iter()
            .filter(|j| condition(j, "Complete"))
            .filter_map(|j| j.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
            .chain(status.and_then(|s| s.last_successful_time.as_ref()).map(|t| t.0))
            .max();
        let Some(since) = last_success.or(cronjob.metadata.creation_timestamp.as_ref().map(|t| t.0)) else { continue };
        let due = parsed.due_between(since.to_zoned(tz.clone()).datetime(), now.to_zoned(tz).datetime(), DUE + 1);
        if due < DUE {
            continue;
        }
        let due = if due > DUE { format!("more than {DUE} times") } else { format!("{due} times") };
        let ago = how_long(now.duration_since(since));
        let summary = match last_success {
            Some(at) => format!(
                "CronJob {name} has not succeeded for {ago} (last success {at}): its schedule {} has come due {due} since",
                spec.schedule
            ),
            None => format!(
                "CronJob {name} has never succeeded since it was made {ago} ago: its schedule {} has come due {due}",
                spec.schedule
            ),
        };
        let mut f =
            Finding::new(Reason::CronJobNoRecentSuccess, Severity::Warning, object("CronJob", ns, name), summary);
        let when = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.map_or("never".to_string(), |t| t.0.to_string())
        };
        f.evidence.push(format!(
            "status: lastScheduleTime {}, lastSuccessfulTime {}, {} active",
            when(status.and_then(|s| s.last_schedule_time.as_ref())),
            when(status.and_then(|s| s.last_successful_time.as_ref())),
            status.and_then(|s| s.active.as_ref()).map_or(0, Vec::len)
        ));
        f.evidence.push(format!(
            "spec.schedule: {}{}",
            spec.schedule,
            spec.time_zone.as_deref().map(|z| format!(", spec.timeZone: {z}")).unwrap_or_default()
        ));
        // The runs since, newest first, and the failure of the newest failed one as the cause.
        let mut since_success: Vec<_> = jobs
            .iter()
            .filter(|j| j.metadata.creation_timestamp.as_ref().is_some_and(|t| last_success.is_none_or(|s| t.0 > s)))
            .collect();
        since_success.sort_by_key(|j| std::cmp::Reverse(j.metadata.creation_timestamp.as_ref().map(|t| t.0)));
        for job in since_success.iter().take(3) {
            let state = if condition(job, "Failed") {
                "failed"
            } else if job.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0 {
                "still running"
            } else {
                "not finished"
            };
            let started = job.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
            f.evidence.push(format!("job {} started {started}: {state}", name_of(&job.metadata)));
        }
        f.caused_by = since_success.iter().find_map(|j| {
            let job = name_of(&j.metadata);
            earlier.iter().find(|o| o.reason == Reason::JobFailed && o.object.name == job).map(Finding::link)
        });
        f.commands = vec![
            format!("kubectl describe cronjob -n {ns} {name}"),
            format!("kubectl get jobs -n {ns} --sort-by=.metadata.creationTimestamp"),
        ];
        findings.push(f);
    }
    findings
}

#[cfg(test)]
mod scenario_tests {
    use super::super::testing::*;

    #[test]
    fn a_cron_job_that_stopped_succeeding_is_found_by_its_schedule() {
        let findings = analyze(&facts("backups"));
        let stale =
            findings.iter().find(|f| f.reason == Reason::CronJobNoRecentSuccess).expect("CronJobNoRecentSuccess");
        assert_eq!(stale.object.name, "nightly-backup");
        assert!(
            stale.summary.contains("has not succeeded for 4d 9h (last success 2026-11-26T02:04:12Z)"),
            "{}",
            stale.summary
        );
        assert_eq!(stale.caused_by.as_ref().map(|c| c.reason), Some(Reason::JobFailed));
        let failed = findings.iter().find(|f| f.reason == Reason::JobFailed).unwrap();
        assert!(evidence(failed).contains("password authentication failed"), "{}", evidence(failed));
        // The hourly neighbour ran an hour ago; nothing is said of it.
        assert!(!findings.iter().any(|f| f.object.name.starts_with("hourly-metrics")));
        // The jobs scenario's report ran last night.
        assert!(!analyze(&facts("jobs")).iter().any(|f| f.reason == Reason::CronJobNoRecentSuccess));
    }
}
