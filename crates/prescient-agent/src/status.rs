//! What `prescient status` shows, read from the store: the workloads with
//! their last usage, the current plans, forecast accuracy, each series'
//! forecaster (ensemble weights and calibration, from its saved state), and
//! the last audited changes.

use std::collections::BTreeMap;

use prescient_core::{HostId, Plan, Resource, SeriesKey, TimestampMs};
use prescient_forecast::{Band, DEFAULT_LEVELS, SeriesForecaster};
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
    /// The forecaster as last saved by the agent (`None`: none saved; an
    /// error: saved, but it does not load).
    pub forecaster: Option<Result<ForecasterStatus, String>>,
}

/// What a series' saved forecaster says of itself, at one quantile level.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecasterStatus {
    /// Steps it has learnt from.
    pub observations: u64,
    /// The level shown: the one asked for, else the highest level the
    /// agent calibrates besides the fixed ones (a workload's SLO quantile
    /// such as 0.999), else 0.95.
    pub level: f64,
    /// The fixed level the weights are kept at nearest above `level` (the
    /// ensemble weighs at [`DEFAULT_LEVELS`] only).
    pub weights_level: f64,
    /// Each model's weight at `weights_level`, one step ahead: (model,
    /// weight), in the ensemble's order.
    pub step: Vec<(String, f64)>,
    /// The same more than 6 hours ahead (the day band).
    pub day: Vec<(String, f64)>,
    /// One step ahead at `level`: the calibration offset (in units of the
    /// series' volatility), the steps scored, and the share at or under the
    /// calibrated quantile.
    pub one_step: Option<OneStepCalibration>,
    /// The day band's checks of past forecasts kept.
    pub day_checks: usize,
    /// What the day band's calibration adds to the median for `level`,
    /// in the series' unit (`None` while it has too few checks).
    pub day_offset: Option<f64>,
}

/// One step ahead calibration of one level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneStepCalibration {
    /// The offset, in units of the volatility scale.
    pub offset: f64,
    /// Steps scored.
    pub scored: u64,
    /// Share of them at or under the calibrated quantile.
    pub coverage: f64,
}

impl ForecasterStatus {
    /// What `f` says of itself at `level` (see [`ForecasterStatus::level`]).
    pub fn of(f: &SeriesForecaster, level: Option<f64>) -> ForecasterStatus {
        let extra = f.calibration().get(DEFAULT_LEVELS.len()..).unwrap_or(&[]);
        let level = level
            .filter(|l| *l > 0.0 && *l < 1.0)
            .or_else(|| extra.iter().map(|t| t.level).reduce(f64::max))
            .unwrap_or(0.95);
        let weights_level = DEFAULT_LEVELS
            .iter()
            .copied()
            .find(|&l| l >= level)
            .unwrap_or(DEFAULT_LEVELS[DEFAULT_LEVELS.len() - 1]);
        let w = f.weights();
        let band = |b: Band| -> Vec<(String, f64)> {
            w.models
                .iter()
                .map(|m| (m.clone(), w.get(b, m, weights_level).unwrap_or(0.0)))
                .collect()
        };
        // The tracker of the level, or of the fixed level the weights use.
        let tracker = f
            .calibration()
            .iter()
            .find(|t| t.level == level)
            .or_else(|| f.calibration().iter().find(|t| t.level == weights_level));
        ForecasterStatus {
            observations: f.observations(),
            level,
            weights_level,
            step: band(Band::Step),
            day: band(Band::Day),
            one_step: tracker.filter(|t| t.seen > 0).map(|t| OneStepCalibration {
                offset: t.theta,
                scored: t.seen,
                coverage: 1.0 - t.misses as f64 / t.seen as f64,
            }),
            day_checks: f.horizon_scores(Band::Day),
            day_offset: f.horizon_offset(Band::Day, level),
        }
    }
}

/// The saved forecaster of `key`, if the agent saved one.
fn forecaster_status(
    store: &Store,
    key: &SeriesKey,
    level: Option<f64>,
) -> Result<Option<Result<ForecasterStatus, String>>, StoreError> {
    let Some((version, blob)) = store.load_model_state(&crate::persist::state_key(key))? else {
        return Ok(None);
    };
    Ok(Some(
        crate::persist::decode(version, &blob)
            .map(|(f, _)| ForecasterStatus::of(&f, level))
            .map_err(|e| e.to_string()),
    ))
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

/// Reads the status from `store`, with the last `audit_limit` changes and
/// the forecasters at quantile `level` (see [`ForecasterStatus::level`]).
pub fn read(
    store: &mut Store,
    audit_limit: usize,
    level: Option<f64>,
) -> Result<Status, StoreError> {
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
        let forecaster = forecaster_status(store, &key, level)?;
        w.series.push(SeriesStatus {
            resource: key.resource,
            last,
            accuracy: acc,
            forecaster,
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
