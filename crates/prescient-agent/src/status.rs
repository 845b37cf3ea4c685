//! What `prescient status` shows, read from the store: the workloads with
//! their last usage, the current plans, forecast accuracy, and the last
//! audited changes.

use std::collections::BTreeMap;

use prescient_core::{HostId, Plan, Resource, TimestampMs};
use prescient_store::{AuditEntry, Resolution, Store, StoreError, StoreSummary};

/// How well a series' recent forecasts did: each stored profile's first
/// step against the mean of the samples that came in it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Accuracy {
    /// Profiles scored (their step has passed and has samples).
    pub scored: usize,
    /// Share of scored steps whose actual was at or below the 0.95
    /// quantile (a calibrated forecast gives about 0.95).
    pub coverage95: f64,
    /// Mean of |actual - median| / max(actual, small), over scored steps.
    pub median_error: f64,
}

/// One series of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesStatus {
    /// The resource.
    pub resource: Resource,
    /// The newest sample (time, value).
    pub last: Option<(TimestampMs, f64)>,
    /// Forecast accuracy.
    pub accuracy: Accuracy,
}

/// One workload.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadStatus {
    /// Its host.
    pub host: HostId,
    /// Its name.
    pub name: String,
    /// How it is found.
    pub selector: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Per resource.
    pub series: Vec<SeriesStatus>,
}

/// Everything `prescient status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Sample counts and span.
    pub summary: StoreSummary,
    /// The workloads.
    pub workloads: Vec<WorkloadStatus>,
    /// The newest plan of each pool.
    pub plans: Vec<Plan>,
    /// The newest audit entries, oldest first.
    pub audit: Vec<AuditEntry>,
}

/// Profiles scored per series.
const SCORED_PROFILES: usize = 48;

/// Reads the status from `store`, with the last `audit_limit` changes.
pub fn read(store: &mut Store, audit_limit: usize) -> Result<Status, StoreError> {
    let summary = store.summary()?;
    let series = store.series_list()?;
    let mut workloads: BTreeMap<(String, String), WorkloadStatus> = BTreeMap::new();
    for w in store.workloads()? {
        workloads.insert(
            (w.host.0.clone(), w.name.0.clone()),
            WorkloadStatus {
                host: w.host,
                name: w.name.0,
                selector: w.selector,
                labels: w.labels,
                series: Vec::new(),
            },
        );
    }
    for (id, key) in series {
        let last = summary.last_ts.and_then(|t| {
            store
                .range(id, t.saturating_sub(3_600_000), t + 1, Resolution::Raw)
                .ok()
                .and_then(|v| v.last().map(|s| (s.ts, s.value)))
        });
        let mut acc = Accuracy::default();
        let mut covered = 0usize;
        let mut err_sum = 0.0;
        for (_, p) in store.profile_history(id, SCORED_PROFILES)? {
            let Some(q) = p.step(0) else { continue };
            let actual = store.range(id, p.start, p.start + p.step_ms, Resolution::Raw)?;
            if actual.is_empty() {
                continue;
            }
            let mean = actual.iter().map(|s| s.value).sum::<f64>() / actual.len() as f64;
            acc.scored += 1;
            if mean <= q.quantile(0.95) + 1e-12 {
                covered += 1;
            }
            let floor = if key.resource == Resource::Memory {
                1.0
            } else {
                1e-3
            };
            err_sum += (mean - q.quantile(0.5)).abs() / mean.abs().max(floor);
        }
        if acc.scored > 0 {
            acc.coverage95 = covered as f64 / acc.scored as f64;
            acc.median_error = err_sum / acc.scored as f64;
        }
        let w = workloads
            .entry((key.host.0.clone(), key.workload.0.clone()))
            .or_insert_with(|| WorkloadStatus {
                host: key.host.clone(),
                name: key.workload.0.clone(),
                selector: String::new(),
                labels: BTreeMap::new(),
                series: Vec::new(),
            });
        w.series.push(SeriesStatus {
            resource: key.resource,
            last,
            accuracy: acc,
        });
    }
    for w in workloads.values_mut() {
        w.series.sort_by_key(|s| s.resource);
    }
    let plans = store.latest_plans()?.into_iter().map(|(_, p)| p).collect();
    let mut audit: Vec<AuditEntry> = Vec::new();
    if audit_limit > 0 {
        // The newest entries: read from a day back, widening if too few.
        let newest = summary.last_ts.unwrap_or(i64::MAX / 2);
        for back in [86_400_000i64, 30 * 86_400_000, i64::MAX / 4] {
            let all = store.audit_since(newest.saturating_sub(back), usize::MAX)?;
            audit = all.into_iter().map(|(_, e)| e).collect();
            if audit.len() >= audit_limit {
                break;
            }
        }
        let skip = audit.len().saturating_sub(audit_limit);
        audit.drain(..skip);
    }
    Ok(Status {
        summary,
        workloads: workloads.into_values().collect(),
        plans,
        audit,
    })
}
