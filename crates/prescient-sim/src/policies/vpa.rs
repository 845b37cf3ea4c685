//! The Kubernetes Vertical Pod Autoscaler's recommender
//! (`vertical-pod-autoscaler/pkg/recommender`), per series.
//!
//! - CPU (and any resource but memory): every sample goes into a decaying
//!   histogram (24 h half-life).
//! - Memory: one sample per 24 h aggregation interval, its peak, stamped
//!   with the interval's end (`container.go`); a higher peak in the same
//!   interval replaces the previous one. Intervals start at the series'
//!   first sample, as in current VPA releases.
//! - Target = percentile (knob, default p90) x 1.15; lower bound p50, upper
//!   bound p95, each x 1.15 and scaled by the confidence multipliers
//!   (see [`vpa_recommendation`]); minimums 25 millicores and 250 MiB.
//! - After an OOM kill, an extra memory sample of
//!   `max(used + 100 MiB, 1.2 x used)` goes into the interval, `used` being
//!   the allocation the setting had when it was killed.
//!
//! What we do differently from the VPA, and why:
//! - The VPA weights each CPU sample by the container's CPU request (at
//!   least 0.1 core), so that raising the request quickly "forgets" history.
//!   We weigh every sample 1: DESIGN.md does not ask for it, in the replay
//!   the request is the VPA's own target (a feedback loop the replay would
//!   model poorly), and it would make the whole histogram knob-dependent.
//! - `used` in the OOM bump: the VPA takes `max(request, memory peak of the
//!   interval)`. On a real node usage cannot pass the limit, which the
//!   replay sets to the allocation, so that is the allocation; our usage
//!   samples are the unthrottled demand, which would overstate it.
//! - The VPA drops a higher peak when the interval's peak so far is exactly
//!   0 (`oldMaxMem != 0`); we replace it like any other peak (a zero at an
//!   interval's start would otherwise hide a whole day).
//! - Confidence counts the series' own samples. The VPA counts CPU samples
//!   only, at one a minute; we keep its `samples / 1440` as DESIGN.md says,
//!   so on 5-minute data the confidence after a day is 0.2. Only the bounds
//!   use it; the replay enforces the target.
//! - Knob values above 1 (our extension, so the sweep reaches violations
//!   below 0.1%): the top bucket's edge (p100) times the value.
//! - OOM samples differ per knob setting, so a lower setting's histogram
//!   can hold a higher sample than a higher setting's. To keep the sweep
//!   monotone at every step, each setting's target is at least the targets
//!   of the settings below it (a running maximum along the knob); this only
//!   ever binds after OOMs.

use std::sync::Arc;

use prescient_core::{Resource, TimestampMs};

use super::{DAY_MS, usable};
use crate::policy::{Knob, Policy, SeriesInfo, SeriesState};
use prescient_forecast::histogram::{BucketScheme, DecayingHistogram};

/// The VPA's minimum CPU recommendation: 25 millicores.
pub const MIN_CPU_CORES: f64 = 0.025;
/// The VPA's minimum memory recommendation: `--pod-recommendation-min-memory-mb=250`,
/// which the VPA multiplies by 1024 x 1024 (so 250 MiB = 262,144,000 bytes).
pub const MIN_MEMORY_BYTES: f64 = 250.0 * 1024.0 * 1024.0;
/// The VPA's safety margin (`--recommendation-margin-fraction`).
pub const SAFETY_MARGIN: f64 = 0.15;
/// The VPA's `OOMMinBumpUp`: 100 MiB.
pub const OOM_MIN_BUMP_BYTES: f64 = 100.0 * 1024.0 * 1024.0;
/// The VPA's `OOMBumpUpRatio`.
pub const OOM_BUMP_RATIO: f64 = 1.2;
/// Percentile of the lower bound.
pub const LOWER_BOUND_PERCENTILE: f64 = 0.5;
/// Percentile of the upper bound.
pub const UPPER_BOUND_PERCENTILE: f64 = 0.95;

/// Target percentiles swept: fine from p50 to p99.9, then p100 (the top
/// bucket's edge) and multiples of it.
pub const VPA_SWEEP: [f64; 40] = [
    0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.875, 0.9, 0.925, 0.94, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985,
    0.99, 0.9925, 0.995, 0.9975, 0.999, 1.0, 1.02, 1.05, 1.075, 1.1, 1.15, 1.2, 1.25, 1.3, 1.4,
    1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 5.0,
];

/// A VPA recommendation for one resource.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpaRecommendation {
    /// What the VPA sets the request to.
    pub target: f64,
    /// Below this the updater evicts the pod to resize it.
    pub lower: f64,
    /// Above this the updater evicts the pod to resize it.
    pub upper: f64,
}

/// The VPA's confidence in a history: `min(history length in days,
/// samples / 1440)`, 1440 being a day of one-minute samples.
pub fn vpa_confidence(first_ms: TimestampMs, last_ms: TimestampMs, samples: u64) -> f64 {
    let days = (last_ms as f64 - first_ms as f64) / DAY_MS as f64;
    days.min(samples as f64 / 1440.0).max(0.0)
}

/// The VPA's estimators on a histogram, as `logic/recommender.go` chains
/// them: percentile, then x (1 + 0.15), then the confidence multiplier
/// (upper bound x (1 + 1/confidence), lower bound x (1 + 0.001/confidence)^-2),
/// then the minimum. `target_percentile` is clamped to [0, 1]. With
/// confidence 0 the upper bound is infinite (the VPA saturates it to its
/// largest amount) and the lower bound is the minimum.
pub fn vpa_recommendation(
    hist: &DecayingHistogram,
    target_percentile: f64,
    confidence: f64,
    minimum: f64,
) -> VpaRecommendation {
    let with_margin = |q: f64| hist.percentile(q.clamp(0.0, 1.0)) * (1.0 + SAFETY_MARGIN);
    let scaled = |v: f64, multiplier: f64, exponent: f64| {
        if v == 0.0 {
            0.0
        } else {
            v * (1.0 + multiplier / confidence).powf(exponent)
        }
    };
    VpaRecommendation {
        target: with_margin(target_percentile).max(minimum),
        lower: scaled(with_margin(LOWER_BOUND_PERCENTILE), 0.001, -2.0).max(minimum),
        upper: scaled(with_margin(UPPER_BOUND_PERCENTILE), 1.0, 1.0).max(minimum),
    }
}

/// The VPA recommender. Fields are the VPA's flags; `Default` is the VPA's
/// defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Vpa {
    /// `--cpu-histogram-decay-half-life` (24 h); also used for resources
    /// other than memory.
    pub cpu_half_life_ms: i64,
    /// `--memory-histogram-decay-half-life` (24 h).
    pub memory_half_life_ms: i64,
    /// `--memory-aggregation-interval` (24 h).
    pub memory_interval_ms: i64,
}

impl Default for Vpa {
    fn default() -> Self {
        Vpa {
            cpu_half_life_ms: DAY_MS,
            memory_half_life_ms: DAY_MS,
            memory_interval_ms: DAY_MS,
        }
    }
}

impl Policy for Vpa {
    fn name(&self) -> &str {
        "vpa"
    }

    fn describe(&self) -> &str {
        "Kubernetes VPA recommender: decaying histogram (24 h half-life; memory: daily peaks and OOM bumps), target percentile x 1.15, minimums 25m / 250Mi"
    }

    fn knob(&self) -> Knob {
        Knob {
            name: "target percentile",
            default: 0.9,
            sweep: VPA_SWEEP.to_vec(),
            range: (0.0, 5.0),
        }
    }

    fn start(&self, series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState> {
        Box::new(VpaState::new(self, series.key.resource, knobs))
    }
}

/// Memory's per-interval peaks and the per-setting OOM samples.
#[derive(Debug, Clone, Default)]
struct MemoryPeaks {
    /// Every interval so far: (end, peak usage). The last is the current one.
    windows: Vec<(TimestampMs, f64)>,
    /// Per knob setting: (interval index, largest OOM sample in it).
    ooms: Vec<Vec<(usize, f64)>>,
    /// Per knob setting: the adjusted percentile and the histogram version
    /// it was computed at (cleared when the setting's OOMs change).
    cache: Vec<Option<(u64, f64)>>,
}

#[derive(Debug, Clone)]
struct VpaState {
    hist: DecayingHistogram,
    memory: Option<MemoryPeaks>,
    interval_ms: i64,
    minimum: f64,
    first_ts: Option<TimestampMs>,
    last_ts: Option<TimestampMs>,
    samples: u64,
    /// The knob settings (sanitised).
    knobs: Vec<f64>,
    /// Knob indices sorted by setting.
    order: Vec<usize>,
    /// `min(knob, 1)` in `order`.
    sorted_qs: Vec<f64>,
    scratch: Vec<f64>,
    adjust: Vec<(usize, f64)>,
    adjust_scratch: Vec<f64>,
}

impl VpaState {
    fn new(cfg: &Vpa, resource: Resource, knobs: &[f64]) -> VpaState {
        let is_memory = resource == Resource::Memory;
        let scheme: Arc<BucketScheme> = BucketScheme::for_resource(resource);
        let half_life = if is_memory {
            cfg.memory_half_life_ms
        } else {
            cfg.cpu_half_life_ms
        };
        let knobs: Vec<f64> = knobs
            .iter()
            .map(|&q| if q.is_finite() { q.max(0.0) } else { 0.9 })
            .collect();
        let mut order: Vec<usize> = (0..knobs.len()).collect();
        order.sort_by(|&a, &b| knobs[a].total_cmp(&knobs[b]));
        let sorted_qs = order.iter().map(|&k| knobs[k].min(1.0)).collect();
        VpaState {
            hist: DecayingHistogram::new(scheme, half_life),
            memory: is_memory.then(|| MemoryPeaks {
                windows: Vec::new(),
                ooms: vec![Vec::new(); knobs.len()],
                cache: vec![None; knobs.len()],
            }),
            interval_ms: cfg.memory_interval_ms.max(1),
            minimum: match resource {
                Resource::Cpu => MIN_CPU_CORES,
                Resource::Memory => MIN_MEMORY_BYTES,
                // The VPA only knows CPU and memory; no floor for the rest.
                _ => 0.0,
            },
            first_ts: None,
            last_ts: None,
            samples: 0,
            scratch: vec![0.0; knobs.len()],
            knobs,
            order,
            sorted_qs,
            adjust: Vec::new(),
            adjust_scratch: Vec::new(),
        }
    }

    fn observe_memory(&mut self, ts: TimestampMs, usage: f64, allocations: &[f64]) {
        let interval = self.interval_ms;
        let Some(mem) = self.memory.as_mut() else {
            return;
        };
        let idx = match mem.windows.last_mut() {
            Some((end, peak)) if ts < *end => {
                if usage > *peak {
                    self.hist.subtract(*peak, *end);
                    self.hist.add(usage, *end);
                    *peak = usage;
                }
                mem.windows.len() - 1
            }
            last => {
                // container.go: shift = (ts - end) truncated to the interval,
                // plus one interval; the first interval starts at the first
                // sample.
                let end = match last {
                    Some((end, _)) => {
                        let elapsed = ts.saturating_sub(*end);
                        end.saturating_add(elapsed - elapsed % interval)
                            .saturating_add(interval)
                    }
                    None => ts.saturating_add(interval),
                };
                mem.windows.push((end, usage));
                self.hist.add(usage, end);
                mem.windows.len() - 1
            }
        };
        for ((ooms, cache), &alloc) in mem.ooms.iter_mut().zip(&mut mem.cache).zip(allocations) {
            if alloc.is_finite() && alloc >= 0.0 && usage > alloc {
                let bump = (alloc + OOM_MIN_BUMP_BYTES).max(alloc * OOM_BUMP_RATIO);
                *cache = None;
                match ooms.last_mut() {
                    Some((w, b)) if *w == idx => *b = b.max(bump),
                    _ => ooms.push((idx, bump)),
                }
            }
        }
    }
}

/// The target for knob `q` given the (possibly adjusted) histogram's
/// percentile at `min(q, 1)`.
fn target(q: f64, percentile: f64, minimum: f64) -> f64 {
    let raw = if q > 1.0 { percentile * q } else { percentile };
    (raw * (1.0 + SAFETY_MARGIN)).max(minimum)
}

impl SeriesState for VpaState {
    fn recommend(&mut self, out: &mut [f64]) {
        self.hist.percentiles(&self.sorted_qs, &mut self.scratch);
        for (rank, &k) in self.order.iter().enumerate() {
            if let Some(o) = out.get_mut(k) {
                *o = target(self.knobs[k], self.scratch[rank], self.minimum);
            }
        }
        if let Some(mem) = &mut self.memory {
            let version = self.hist.version();
            for (k, ooms) in mem.ooms.iter().enumerate() {
                if ooms.is_empty() || k >= out.len() {
                    continue;
                }
                let q = self.knobs[k];
                if let Some((v, p)) = mem.cache[k]
                    && v == version
                {
                    out[k] = target(q, p, self.minimum);
                    continue;
                }
                // The OOM samples replace their interval's usage peak where
                // they are higher; both carry the interval end's weight.
                self.adjust.clear();
                for &(w, bump) in ooms {
                    let (end, peak) = mem.windows[w];
                    if bump > peak {
                        let weight = self.hist.weight_at(end);
                        let scheme = self.hist.scheme();
                        self.adjust.push((scheme.bucket(peak), -weight));
                        self.adjust.push((scheme.bucket(bump), weight));
                    }
                }
                let p = if self.adjust.is_empty() {
                    self.hist.percentile(q.min(1.0))
                } else {
                    self.hist.percentile_adjusted(
                        q.min(1.0),
                        &self.adjust,
                        &mut self.adjust_scratch,
                    )
                };
                mem.cache[k] = Some((version, p));
                out[k] = target(q, p, self.minimum);
            }
        }
        // Running maximum along the knob (see the module notes).
        let mut floor = 0.0f64;
        for &k in &self.order {
            if let Some(o) = out.get_mut(k) {
                *o = o.max(floor);
                floor = *o;
            }
        }
    }

    fn observe(&mut self, ts: TimestampMs, demand: f64, allocations: &[f64]) {
        let Some(usage) = usable(demand) else {
            return;
        };
        // The VPA discards out-of-order samples: CPU ones not after the
        // last, memory ones before it.
        if let Some(last) = self.last_ts {
            let stale = if self.memory.is_some() {
                ts < last
            } else {
                ts <= last
            };
            if stale {
                return;
            }
        }
        self.first_ts.get_or_insert(ts);
        self.last_ts = Some(ts);
        self.samples += 1;
        if self.memory.is_some() {
            self.observe_memory(ts, usage, allocations);
        } else {
            self.hist.add(usage, ts);
        }
    }
}

#[cfg(test)]
mod tests {
    use prescient_core::SeriesKey;

    use super::*;

    const HOUR: i64 = 3_600_000;

    fn state(resource: Resource, knobs: &[f64]) -> Box<dyn SeriesState> {
        let key = SeriesKey::new("h", "w", resource);
        let info = SeriesInfo {
            key: &key,
            step_ms: 300_000,
            warmup_steps: 36,
            host_capacity: None,
            host_workloads: 1,
        };
        Vpa::default().start(&info, knobs)
    }

    fn recommend(s: &mut Box<dyn SeriesState>, n: usize) -> Vec<f64> {
        let mut out = vec![0.0; n];
        s.recommend(&mut out);
        out
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
    }

    #[test]
    fn target_is_the_bucket_upper_edge_times_the_margin() {
        // 0.032 cores is in bucket 3, [0.031525, 0.04310125): the target is
        // 0.04310125 x 1.15 = 0.0495664375.
        let mut s = state(Resource::Cpu, &[0.9]);
        s.observe(0, 0.032, &[1.0]);
        let out = recommend(&mut s, 1);
        assert!(close(out[0], 0.0495664375), "{}", out[0]);
    }

    #[test]
    fn each_percentile_is_its_bucket_upper_edge() {
        // 20 samples 0.1, 0.2, ..., 2.0 of equal weight (same time).
        let mut h = DecayingHistogram::new(BucketScheme::cpu(), DAY_MS);
        for i in 1..=20 {
            h.add(i as f64 / 10.0, 0);
        }
        let s = BucketScheme::cpu();
        let edge = |v: f64| s.upper_edge(s.bucket(v));
        // p50 reaches 10 of 20: the 10th sample, 1.0; p90 the 18th; p95 the 19th.
        assert_eq!(h.percentile(0.5), edge(1.0));
        assert_eq!(h.percentile(0.9), edge(1.8));
        assert_eq!(h.percentile(0.95), edge(1.9));
        assert_eq!(h.percentile(1.0), edge(2.0));
        // By hand: 1.0 is in bucket 36, [0.2 (1.05^36 - 1), 0.2 (1.05^37 - 1))
        // = [0.95837, 1.01628).
        assert_eq!(s.bucket(1.0), 36);
        assert!((edge(1.0) - 1.01628).abs() < 1e-5, "{}", edge(1.0));

        let rec = vpa_recommendation(&h, 0.9, 1.0, 0.0);
        assert!(close(rec.target, edge(1.8) * 1.15));
    }

    #[test]
    fn bounds_use_p50_p95_the_margin_and_the_confidence_multipliers() {
        let mut h = DecayingHistogram::new(BucketScheme::cpu(), DAY_MS);
        for i in 1..=20 {
            h.add(i as f64 / 10.0, 0);
        }
        let s = BucketScheme::cpu();
        let edge = |v: f64| s.upper_edge(s.bucket(v));
        let rec = vpa_recommendation(&h, 0.9, 0.5, 0.0);
        assert!(close(rec.upper, edge(1.9) * 1.15 * 3.0), "{rec:?}");
        assert!(
            close(rec.lower, edge(1.0) * 1.15 / (1.002 * 1.002)),
            "{rec:?}"
        );
        let rec = vpa_recommendation(&h, 0.9, 2.0, 0.0);
        assert!(close(rec.upper, edge(1.9) * 1.15 * 1.5));
        assert!(close(rec.lower, edge(1.0) * 1.15 / (1.0005 * 1.0005)));
        // No confidence: an unbounded upper bound, the lower bound at the minimum.
        let rec = vpa_recommendation(&h, 0.9, 0.0, 0.025);
        assert_eq!(rec.upper, f64::INFINITY);
        assert_eq!(rec.lower, 0.025);
    }

    #[test]
    fn confidence_is_the_lesser_of_days_and_samples_per_1440() {
        assert_eq!(vpa_confidence(0, 2 * DAY_MS, 1440), 1.0);
        assert_eq!(vpa_confidence(0, 2 * DAY_MS, 4320), 2.0);
        assert_eq!(vpa_confidence(0, DAY_MS / 2, 4320), 0.5);
        // A day of 5-minute samples: 288 / 1440.
        assert!(close(vpa_confidence(0, DAY_MS, 288), 0.2));
        assert_eq!(vpa_confidence(0, 0, 0), 0.0);
    }

    #[test]
    fn a_cpu_sample_a_day_older_weighs_half() {
        let mut s = state(Resource::Cpu, &[0.33, 0.34]);
        s.observe(0, 0.1, &[1.0, 1.0]);
        s.observe(DAY_MS, 1.0, &[1.0, 1.0]);
        let out = recommend(&mut s, 2);
        let sch = BucketScheme::cpu();
        // Weights 1 and 2: p33 is still the older sample, p34 the newer.
        assert!(close(out[0], sch.upper_edge(sch.bucket(0.1)) * 1.15));
        assert!(close(out[1], sch.upper_edge(sch.bucket(1.0)) * 1.15));
    }

    #[test]
    fn memory_keeps_one_peak_per_day() {
        let mut s = VpaState::new(&Vpa::default(), Resource::Memory, &[0.5]);
        s.observe(0, 3e8, &[1e12]);
        s.observe(HOUR, 5e8, &[1e12]);
        s.observe(2 * HOUR, 4e8, &[1e12]);
        // One sample, the peak, stamped with the interval's end.
        assert_eq!(s.memory.as_ref().unwrap().windows, vec![(DAY_MS, 5e8)]);
        assert!(close(s.hist.total_weight(), s.hist.weight_at(DAY_MS)));
        let sch = BucketScheme::memory();
        let mut out = [0.0];
        s.recommend(&mut out);
        assert!(close(out[0], sch.upper_edge(sch.bucket(5e8)) * 1.15));
        // The next day opens a new interval ending a day later.
        s.observe(DAY_MS + HOUR, 3e8, &[1e12]);
        assert_eq!(
            s.memory.as_ref().unwrap().windows,
            vec![(DAY_MS, 5e8), (2 * DAY_MS, 3e8)]
        );
        let want = s.hist.weight_at(DAY_MS) + s.hist.weight_at(2 * DAY_MS);
        assert!(close(s.hist.total_weight(), want));
        // The newer peak weighs twice the older: p50 is the newer 3e8.
        s.recommend(&mut out);
        assert!(close(out[0], sch.upper_edge(sch.bucket(3e8)) * 1.15));
        // Skipping a day: the interval after next.
        s.observe(3 * DAY_MS + 5 * HOUR, 1e8, &[1e12]);
        assert_eq!(s.memory.as_ref().unwrap().windows[2], (4 * DAY_MS, 1e8));
    }

    #[test]
    fn an_oom_adds_a_bumped_sample() {
        let sch = BucketScheme::memory();
        let edge = |v: f64| sch.upper_edge(sch.bucket(v)) * 1.15;
        // Killed at 4e8: max(4e8 + 100 MiB, 4.8e8) = 504,857,600 beats the
        // 4.5e8 usage peak of the interval.
        let mut s = state(Resource::Memory, &[0.9]);
        s.observe(0, 4.5e8, &[4e8]);
        let out = recommend(&mut s, 1);
        assert!(close(out[0], edge(504_857_600.0)), "{}", out[0]);
        assert!(sch.bucket(504_857_600.0) != sch.bucket(4.5e8));
        // The sample recorded for that interval, exactly.
        let mut v = VpaState::new(&Vpa::default(), Resource::Memory, &[0.9]);
        v.observe(0, 4.5e8, &[4e8]);
        assert_eq!(v.memory.as_ref().unwrap().ooms[0], vec![(0, 504_857_600.0)]);
        v.observe(HOUR, 4.6e8, &[4.2e8]);
        assert_eq!(v.memory.as_ref().unwrap().ooms[0], vec![(0, 524_857_600.0)]);
        // Killed at 1e9: 1.2e9 beats 1e9 + 100 MiB.
        let mut s = state(Resource::Memory, &[0.9]);
        s.observe(0, 1.1e9, &[1e9]);
        assert!(close(recommend(&mut s, 1)[0], edge(1.2e9)));
        // No kill: the usage peak alone.
        let mut s = state(Resource::Memory, &[0.9]);
        s.observe(0, 4.5e8, &[7e8]);
        assert!(close(recommend(&mut s, 1)[0], edge(4.5e8)));
    }

    #[test]
    fn oom_samples_belong_to_their_knob_setting() {
        let sch = BucketScheme::memory();
        let edge = |v: f64| sch.upper_edge(sch.bucket(v)) * 1.15;
        // Settings p50, p90, p100 x 2: only the first is killed.
        let mut s = state(Resource::Memory, &[0.5, 0.9, 2.0]);
        s.observe(0, 4.5e8, &[4e8, 5e8, 2e9]);
        let out = recommend(&mut s, 3);
        assert!(close(out[0], edge(504_857_600.0)));
        // p90 saw no kill (its own histogram gives edge(4.5e8)), but the
        // running maximum keeps the sweep monotone.
        assert!(edge(4.5e8) < out[0]);
        assert!(close(out[1], out[0]));
        assert!(close(
            out[2],
            sch.upper_edge(sch.bucket(4.5e8)) * 2.0 * 1.15
        ));
    }

    #[test]
    fn cached_oom_percentiles_match_fresh_ones_across_renormalisation() {
        // Hourly memory for 120 days (past 100 half-lives), growing and
        // spiking so the low settings are killed again and again.
        let knobs = VPA_SWEEP;
        let mut s = VpaState::new(&Vpa::default(), Resource::Memory, &knobs);
        let mut out = vec![0.0; knobs.len()];
        let mut fresh = vec![0.0; knobs.len()];
        let mut kills = 0;
        for i in 0..120 * 24i64 {
            s.recommend(&mut out);
            let mut c = s.clone();
            c.memory.as_mut().unwrap().cache.fill(None);
            c.recommend(&mut fresh);
            assert_eq!(out, fresh, "step {i}");
            assert!(out.iter().all(|a| a.is_finite() && *a > 0.0));
            let demand = 3e8 + 1e6 * i as f64 + if i % 97 == 0 { 2e9 } else { 0.0 };
            kills += out.iter().filter(|&&a| demand > a).count();
            s.observe(i * HOUR, demand, &out);
        }
        assert!(kills > 100, "{kills}");
        assert!(s.hist.weight_at(119 * DAY_MS) < 2f64.powi(100));
    }

    #[test]
    fn minimums_apply() {
        let mut s = state(Resource::Cpu, &[0.9]);
        assert_eq!(recommend(&mut s, 1), vec![0.025]);
        s.observe(0, 0.001, &[1.0]);
        // 0.01 x 1.15 = 0.0115 < 0.025
        assert_eq!(recommend(&mut s, 1), vec![0.025]);
        let mut s = state(Resource::Memory, &[0.9]);
        assert_eq!(recommend(&mut s, 1), vec![262_144_000.0]);
        s.observe(0, 1e8, &[1e12]);
        assert_eq!(recommend(&mut s, 1), vec![262_144_000.0]);
        let mut s = state(Resource::NetRx, &[0.9]);
        assert_eq!(recommend(&mut s, 1), vec![0.0]);
    }

    #[test]
    fn the_state_matches_the_pure_function() {
        let mut s = VpaState::new(&Vpa::default(), Resource::Cpu, &[0.5, 0.9, 0.95]);
        for i in 0..300 {
            let v = 0.2 + 0.1 * ((i * 37 % 17) as f64);
            s.observe(i * 300_000, v, &[10.0; 3]);
        }
        let mut out = [0.0; 3];
        s.recommend(&mut out);
        for (k, q) in [0.5, 0.9, 0.95].into_iter().enumerate() {
            let rec = vpa_recommendation(&s.hist, q, 1.0, MIN_CPU_CORES);
            assert_eq!(out[k], rec.target);
        }
    }

    #[test]
    fn out_of_order_and_missing_samples_are_ignored() {
        let mut s = state(Resource::Cpu, &[0.9]);
        s.observe(HOUR, 1.0, &[1.0]);
        s.observe(HOUR, 50.0, &[1.0]);
        s.observe(0, 50.0, &[1.0]);
        s.observe(2 * HOUR, f64::NAN, &[1.0]);
        let sch = BucketScheme::cpu();
        assert!(close(
            recommend(&mut s, 1)[0],
            sch.upper_edge(sch.bucket(1.0)) * 1.15
        ));
    }
}
