//! The replay engine: at each step every workload's allocation comes from
//! what its policy saw up to the step before; the workload is served
//! `min(demand, allocation)` under a hard limit, or its allocation plus a
//! share of what others leave unused under shares.
//!
//! Uncontended runs have no capacity. Contended runs give each host a
//! capacity; when a policy's allocations exceed it, the policy's own
//! [`Policy::arbitrate`] decides.

use std::collections::HashMap;

use prescient_core::{SeriesKey, TimestampMs};
use rayon::prelude::*;
use serde::Serialize;

use crate::metrics::Tally;
use crate::policy::{Policy, SeriesInfo};
use crate::trace::{HostTrace, ReplayTrace};

/// The warm-up of `DESIGN.md`: steps before scoring starts.
pub const DEFAULT_WARMUP_STEPS: usize = 36;

/// The capacity of each host for the replayed resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Capacity {
    /// The same capacity for every host.
    All(f64),
    /// A capacity per host; a host without one is an error.
    PerHost(HashMap<String, f64>),
}

impl Capacity {
    fn of(&self, host: &str) -> Option<f64> {
        match self {
            Capacity::All(c) => Some(*c),
            Capacity::PerHost(map) => map.get(host).copied(),
        }
    }
}

/// How allocations are enforced when hosts have a capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// A workload never gets more than its allocation (`cpu.max`, `memory.max`).
    Hard,
    /// The allocation is a guarantee; capacity others leave unused goes to
    /// workloads still short, in proportion to their allocations (`cpu.weight`).
    Shares,
}

/// How to run a replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Steps of each host's grid before scoring starts.
    pub warmup_steps: usize,
    /// Host capacities; `None` for an uncontended run.
    pub capacity: Option<Capacity>,
    /// Hard limits or shares (shares need a capacity).
    pub enforcement: Enforcement,
    /// Keep every allocation (only for a run at a single knob setting).
    pub record_allocations: bool,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            warmup_steps: DEFAULT_WARMUP_STEPS,
            capacity: None,
            enforcement: Enforcement::Hard,
            record_allocations: false,
        }
    }
}

/// A replay that cannot run as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    /// The policy cannot size this trace.
    #[error("policy '{policy}' cannot size {series}: {reason}")]
    Unsupported {
        /// The policy.
        policy: String,
        /// The first series it refused.
        series: String,
        /// Why.
        reason: String,
    },
    /// A host without a capacity in a per-host capacity table.
    #[error(
        "no capacity given for host '{0}' (add it to the capacity file, or give one capacity for all hosts)"
    )]
    NoCapacity(String),
    /// A capacity that is not a positive number.
    #[error("capacity {capacity} for host '{host}' must be a finite number > 0")]
    BadCapacity {
        /// The host.
        host: String,
        /// The capacity.
        capacity: f64,
    },
    /// Shares without a capacity.
    #[error("shares enforcement needs a capacity: there is nothing to share in an uncontended run")]
    SharesWithoutCapacity,
    /// No knob settings.
    #[error("no knob settings to run")]
    NoKnobs,
    /// Recording asked for a sweep.
    #[error("allocations can only be recorded for a run at one knob setting, not {0}")]
    RecordSweep(usize),
}

/// What a policy did over a trace, at each knob setting.
#[derive(Debug, Clone)]
pub struct Run {
    /// The policy's name.
    pub policy: String,
    /// The knob settings, in the order given.
    pub knobs: Vec<f64>,
    /// One tally per knob setting.
    pub tallies: Vec<Tally>,
    /// The allocations of every series at every step, when recorded.
    pub allocations: Option<Vec<RecordedSeries>>,
}

/// The allocations one series got during a recorded run.
#[derive(Debug, Clone)]
pub struct RecordedSeries {
    /// The series.
    pub key: SeriesKey,
    /// `(timestamp, allocation)` for every step the series had a sample.
    pub allocations: Vec<(TimestampMs, f64)>,
}

/// Replays `trace` under `policy` at each of `knobs`. `progress` is called
/// with the number of series finished by each host as it completes.
pub fn replay(
    trace: &ReplayTrace,
    policy: &dyn Policy,
    knobs: &[f64],
    config: &ReplayConfig,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Run, ReplayError> {
    if knobs.is_empty() {
        return Err(ReplayError::NoKnobs);
    }
    if config.record_allocations && knobs.len() > 1 {
        return Err(ReplayError::RecordSweep(knobs.len()));
    }
    if config.enforcement == Enforcement::Shares && config.capacity.is_none() {
        return Err(ReplayError::SharesWithoutCapacity);
    }
    let capacities = host_capacities(trace, config.capacity.as_ref())?;
    for (host, &capacity) in trace.hosts.iter().zip(&capacities) {
        for series in &host.series {
            let info = series_info(trace, host, &series.key, config, capacity);
            policy
                .check(&info)
                .map_err(|reason| ReplayError::Unsupported {
                    policy: policy.name().to_string(),
                    series: series.key.to_string(),
                    reason,
                })?;
        }
    }

    let per_host: Vec<HostOutcome> = trace
        .hosts
        .par_iter()
        .zip(&capacities)
        .map(|(host, &capacity)| {
            let outcome = replay_host(trace, host, policy, knobs, config, capacity);
            progress(host.series.len() as u64);
            outcome
        })
        .collect();

    let mut tallies = vec![Tally::default(); knobs.len()];
    let mut allocations = config.record_allocations.then(Vec::new);
    for outcome in per_host {
        for (total, t) in tallies.iter_mut().zip(&outcome.tallies) {
            total.merge(t);
        }
        if let (Some(all), Some(recorded)) = (allocations.as_mut(), outcome.recorded) {
            all.extend(recorded);
        }
    }
    Ok(Run {
        policy: policy.name().to_string(),
        knobs: knobs.to_vec(),
        tallies,
        allocations,
    })
}

fn host_capacities(
    trace: &ReplayTrace,
    capacity: Option<&Capacity>,
) -> Result<Vec<Option<f64>>, ReplayError> {
    trace
        .hosts
        .iter()
        .map(|h| match capacity {
            None => Ok(None),
            Some(c) => {
                let cap = c
                    .of(&h.host.0)
                    .ok_or_else(|| ReplayError::NoCapacity(h.host.0.clone()))?;
                if !(cap.is_finite() && cap > 0.0) {
                    return Err(ReplayError::BadCapacity {
                        host: h.host.0.clone(),
                        capacity: cap,
                    });
                }
                Ok(Some(cap))
            }
        })
        .collect()
}

fn series_info<'a>(
    trace: &ReplayTrace,
    host: &HostTrace,
    key: &'a SeriesKey,
    config: &ReplayConfig,
    capacity: Option<f64>,
) -> SeriesInfo<'a> {
    SeriesInfo {
        key,
        step_ms: trace.step_ms,
        warmup_steps: config.warmup_steps,
        host_capacity: capacity,
        host_workloads: host.series.len(),
    }
}

struct HostOutcome {
    tallies: Vec<Tally>,
    recorded: Option<Vec<RecordedSeries>>,
}

fn replay_host(
    trace: &ReplayTrace,
    host: &HostTrace,
    policy: &dyn Policy,
    knobs: &[f64],
    config: &ReplayConfig,
    capacity: Option<f64>,
) -> HostOutcome {
    let n = host.series.len();
    let k = knobs.len();
    let infos: Vec<SeriesInfo<'_>> = host
        .series
        .iter()
        .map(|s| series_info(trace, host, &s.key, config, capacity))
        .collect();
    let mut state = policy.start_host(&infos, knobs);
    // Tables over the series present at a step: entry [i * k + j] is the
    // i-th present series at knob setting j.
    let mut granted = vec![0.0; n * k];
    let mut served = vec![0.0; n * k];
    let mut present: Vec<usize> = Vec::with_capacity(n);
    let mut demands = vec![0.0; n];
    let mut column = vec![0.0; n];
    let mut column_served = vec![0.0; n];
    let mut tallies = vec![Tally::default(); k];
    let mut recorded: Option<Vec<RecordedSeries>> = config.record_allocations.then(|| {
        host.series
            .iter()
            .map(|s| RecordedSeries {
                key: s.key.clone(),
                allocations: Vec::new(),
            })
            .collect()
    });

    for (t, &ts) in host.timestamps.iter().enumerate() {
        present.clear();
        for (s, series) in host.series.iter().enumerate() {
            let demand = series.demand[t];
            if !demand.is_nan() {
                demands[present.len()] = demand;
                present.push(s);
            }
        }
        let m = present.len();
        if m == 0 {
            continue;
        }
        let alloc = &mut granted[..m * k];
        state.allocate(ts, &present, capacity, alloc);
        for a in alloc.iter_mut() {
            // A policy's NaN or negative answer allocates nothing.
            if a.is_nan() || *a < 0.0 {
                *a = 0.0;
            }
        }
        for j in 0..k {
            for i in 0..m {
                column[i] = alloc[i * k + j];
            }
            if let Some(cap) = capacity {
                // Whatever the policy says, a host never hands out more
                // than it has.
                let total: f64 = column[..m].iter().sum();
                if total > cap {
                    column[..m].iter_mut().for_each(|a| *a *= cap / total);
                }
            }
            serve(
                config.enforcement,
                capacity,
                &demands[..m],
                &column[..m],
                &mut column_served[..m],
            );
            for i in 0..m {
                alloc[i * k + j] = column[i];
                served[i * k + j] = column_served[i];
            }
        }
        if t >= config.warmup_steps {
            for i in 0..m {
                for j in 0..k {
                    tallies[j].add(demands[i], alloc[i * k + j], served[i * k + j]);
                }
            }
        }
        if let Some(rec) = recorded.as_mut() {
            for (i, &s) in present.iter().enumerate() {
                rec[s].allocations.push((ts, alloc[i * k]));
            }
        }
        state.observe(ts, &present, &demands[..m], alloc);
    }
    HostOutcome { tallies, recorded }
}

/// What each workload is served at one step, given demands and allocations.
/// Under a hard limit: `min(demand, allocation)`. Under shares: that, plus
/// the capacity left unused, handed to workloads still short in proportion
/// to their allocations (equally when all of theirs are 0), repeatedly,
/// until nothing is left or nobody is short (water-filling).
pub fn serve(
    enforcement: Enforcement,
    capacity: Option<f64>,
    demand: &[f64],
    allocation: &[f64],
    served: &mut [f64],
) {
    for ((s, &d), &a) in served.iter_mut().zip(demand).zip(allocation) {
        *s = d.min(a);
    }
    let (Enforcement::Shares, Some(cap)) = (enforcement, capacity) else {
        return;
    };
    let mut left = cap - served.iter().sum::<f64>();
    // Each round either satisfies a workload or hands out all that is left,
    // so it ends within `n` rounds. Short workloads with a zero allocation
    // get nothing while others with weight are short, then equal parts.
    // Short, beyond the rounding of adding up shares.
    let short = |d: f64, s: f64| d - s > 1e-12 * d;
    for _ in 0..served.len() {
        if left <= 1e-12 * cap {
            break;
        }
        let (mut weight, mut count) = (0.0, 0usize);
        for ((&s, &d), &a) in served.iter().zip(demand).zip(allocation) {
            if short(d, s) {
                weight += a;
                count += 1;
            }
        }
        if count == 0 {
            break;
        }
        let mut handed = 0.0;
        for ((s, &d), &a) in served.iter_mut().zip(demand).zip(allocation) {
            if !short(d, *s) {
                continue;
            }
            let share = if weight > 0.0 {
                left * a / weight
            } else {
                left / count as f64
            };
            let give = share.min(d - *s);
            *s += give;
            handed += give;
        }
        left -= handed;
    }
    // Water-filling adds up shares in floating point: a workload within
    // rounding of its demand got all of it.
    for (s, &d) in served.iter_mut().zip(demand) {
        if d - *s <= 1e-12 * d {
            *s = d;
        }
    }
}

/// The least unmet demand any partition can reach with these capacities:
/// at each scored step a host serves `min(Σ demand, capacity)`.
pub fn oracle_unmet(
    trace: &ReplayTrace,
    capacity: &Capacity,
    warmup_steps: usize,
) -> Result<f64, ReplayError> {
    let capacities = host_capacities(trace, Some(capacity))?;
    let (mut demand, mut unmet) = (0.0, 0.0);
    for (host, cap) in trace.hosts.iter().zip(capacities) {
        let cap = cap.unwrap_or(f64::INFINITY);
        for t in warmup_steps..host.timestamps.len() {
            let total: f64 = host
                .series
                .iter()
                .map(|s| s.demand[t])
                .filter(|d| !d.is_nan())
                .sum();
            demand += total;
            unmet += (total - cap).max(0.0);
        }
    }
    Ok(if demand > 0.0 { unmet / demand } else { 0.0 })
}

/// A yardstick for contended runs between the oracle and real policies:
/// the unmet demand of a partition that knows, at each step, the
/// distribution of every workload's demand over the `half_window` steps on
/// either side (past *and future*, the step itself left out) but not the
/// step's own demand, and splits each host's capacity to maximise the
/// expected served demand under that distribution.
///
/// No causal policy has this knowledge, and the oracle's knowledge (the
/// step's demand itself) is more than any forecast can have; a policy near
/// this figure is as good as its knowledge of each workload's *level and
/// spread* can make it, and what is left is the step-to-step noise no
/// distribution can place. Each workload's share is found by water-filling
/// on its empirical distribution: the expected served demand
/// `E[min(D, a)]` rises with slope `P(D > a)`, so capacity goes, segment by
/// segment between sample values, to the steepest slopes first (ties to the
/// lower index); capacity no sample asks for is spread in proportion to the
/// shares.
pub fn hindsight_distribution_unmet(
    trace: &ReplayTrace,
    capacity: &Capacity,
    warmup_steps: usize,
    half_window: usize,
) -> Result<f64, ReplayError> {
    let capacities = host_capacities(trace, Some(capacity))?;
    let (mut demand, mut unmet) = (0.0, 0.0);
    let mut samples: Vec<f64> = Vec::new();
    // (slope, length, series index) of every segment of every present series.
    let mut segments: Vec<(f64, f64, usize)> = Vec::new();
    let mut alloc: Vec<f64> = Vec::new();
    for (host, cap) in trace.hosts.iter().zip(capacities) {
        let cap = cap.unwrap_or(f64::INFINITY);
        let steps = host.timestamps.len();
        for t in warmup_steps..steps {
            segments.clear();
            alloc.clear();
            alloc.resize(host.series.len(), 0.0);
            let (lo, hi) = (
                t.saturating_sub(half_window),
                (t + half_window + 1).min(steps),
            );
            for (i, s) in host.series.iter().enumerate() {
                samples.clear();
                samples.extend(
                    (lo..hi)
                        .filter(|&j| j != t)
                        .map(|j| s.demand[j])
                        .filter(|d| !d.is_nan())
                        .map(|d| d.max(0.0)),
                );
                samples.sort_unstable_by(f64::total_cmp);
                let n = samples.len() as f64;
                let mut below = 0.0;
                for (k, &v) in samples.iter().enumerate() {
                    if v > below {
                        segments.push(((n - k as f64) / n, v - below, i));
                        below = v;
                    }
                }
            }
            segments.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)));
            let mut left = cap;
            for &(_, len, i) in &segments {
                let take = len.min(left);
                alloc[i] += take;
                left -= take;
                if left <= 0.0 {
                    break;
                }
            }
            let total: f64 = alloc.iter().sum();
            if left > 0.0 && left.is_finite() && total > 0.0 {
                alloc.iter_mut().for_each(|a| *a += left * *a / total);
            }
            for (s, &a) in host.series.iter().zip(&alloc) {
                let d = s.demand[t];
                if d.is_nan() {
                    continue;
                }
                demand += d.max(0.0);
                unmet += (d.max(0.0) - a).max(0.0);
            }
        }
    }
    Ok(if demand > 0.0 { unmet / demand } else { 0.0 })
}
