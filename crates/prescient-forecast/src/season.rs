//! Season detection: is there a period (a day, a week, an hour, ...) in a
//! series, and how long is it?
//!
//! Written here rather than taken from `augurs-seasons`, which we tried on
//! our traces: its Welch periodogram works on power-of-two segments, so a
//! long period can only come out as `n / k` of the segment length (on the
//! Alibaba CPU series at 5-minute steps, whose clear daily cycle is 288
//! steps, it answers 256), and its threshold is relative to the strongest
//! peak, so it always finds a period, even in white noise (510 on 2,000
//! draws of N(10, 1)). The engine needs "none" when there is none, and the
//! exact length of a daily or weekly cycle.
//!
//! The method: the autocorrelation function of the detrended series over
//! the candidate lags; a season is the strongest local maximum that is
//! clearly positive and stands clearly above the trough before it (a
//! slowly wandering series has a decaying ACF with no such peak). Of peaks
//! nearly as strong as the best, the shortest wins (a daily cycle also
//! peaks at two days). A lag within 5% of a day or a week snaps to it:
//! workloads follow the clock.
//!
//! Online, [`SeasonDetector`] keeps two rings of bucket means (fine: a
//! bucket of max(step, 5 min), 3 days' worth at 5 minutes; coarse: hourly,
//! 5 weeks) and reruns the detection every 12 hours of series time: a
//! bounded cost, so constant amortised time per observation.

use std::collections::VecDeque;

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

/// A detected period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Period {
    /// Its length in buckets of the series it was found in.
    pub lag: usize,
    /// The autocorrelation at that lag (in (0, 1]).
    pub strength: f64,
}

/// What the detector knows about a series' seasonality.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Season {
    /// Width of the buckets the fine history (and `period_buckets`) counts in.
    pub bucket_ms: i64,
    /// The dominant period in fine buckets, when there is one: the fine
    /// ring's period if it found one, else the coarse ring's, converted.
    pub period_buckets: Option<usize>,
    /// Whether a daily cycle was found.
    pub daily: bool,
    /// Whether a weekly cycle was found.
    pub weekly: bool,
    /// Start of the bucket after the last completed one (the fine history
    /// passed with this season ends here).
    pub history_end: TimestampMs,
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// Autocorrelation a peak must reach.
const MIN_STRENGTH: f64 = 0.2;
/// How far a peak must rise above the lowest autocorrelation before it.
const MIN_PROMINENCE: f64 = 0.1;
/// Peaks at least this share of the best one's strength count as "as good".
const NEAR_BEST: f64 = 0.85;

/// The strongest period of `values` (`NaN` = missing) between `min_lag` and
/// `max_lag` buckets, or `None`. At least two full cycles are needed, so
/// lags past half the series are not considered. `snap` lists calendar
/// periods (in buckets) that a lag within 5% of is moved to.
pub fn detect_period(
    values: &[f64],
    min_lag: usize,
    max_lag: usize,
    snap: &[usize],
) -> Option<Period> {
    let n = values.len();
    let min_lag = min_lag.max(2);
    let max_lag = max_lag.min(n / 2);
    if max_lag <= min_lag + 1 {
        return None;
    }
    // Detrend with a least-squares line through the finite values.
    let (mut sx, mut sy, mut sxx, mut sxy, mut cnt) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &v) in values.iter().enumerate() {
        if v.is_finite() {
            let x = i as f64;
            sx += x;
            sy += v;
            sxx += x * x;
            sxy += x * v;
            cnt += 1.0;
        }
    }
    if cnt < (2 * min_lag) as f64 {
        return None;
    }
    let denom = cnt * sxx - sx * sx;
    let slope = if denom.abs() > 0.0 {
        (cnt * sxy - sx * sy) / denom
    } else {
        0.0
    };
    let intercept = (sy - slope * sx) / cnt;
    let x: Vec<f64> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.is_finite() {
                v - (intercept + slope * i as f64)
            } else {
                f64::NAN
            }
        })
        .collect();
    let var = x
        .iter()
        .filter(|v| v.is_finite())
        .map(|v| v * v)
        .sum::<f64>()
        / cnt;
    if !(var > 0.0 && var.is_finite()) {
        return None;
    }
    // r(k) for k in 0..=max_lag+1 over the pairs where both are present.
    let acf: Vec<f64> = (0..=max_lag + 1)
        .map(|k| {
            let (mut s, mut m) = (0.0, 0usize);
            for t in 0..n.saturating_sub(k) {
                let p = x[t] * x[t + k];
                if p.is_finite() {
                    s += p;
                    m += 1;
                }
            }
            if m * 4 < n.saturating_sub(k) || m == 0 {
                f64::NAN
            } else {
                // The usual biased estimator (sum over n), with missing
                // pairs made up at the mean product: it tapers with the lag,
                // so a peak sits at the period rather than drifting past it.
                s / m as f64 / var * (n - k) as f64 / n as f64
            }
        })
        .collect();
    let mut peaks: Vec<Period> = Vec::new();
    let mut trough = f64::INFINITY;
    for k in 1..=max_lag {
        let r = acf[k];
        if !r.is_finite() {
            continue;
        }
        if k >= min_lag
            && r >= MIN_STRENGTH
            && r - trough >= MIN_PROMINENCE
            && r >= acf[k - 1]
            && (acf[k + 1].is_nan() || acf[k + 1] <= r)
        {
            peaks.push(Period {
                lag: k,
                strength: r,
            });
        }
        trough = trough.min(r);
    }
    let best = peaks.iter().map(|p| p.strength).fold(0.0, f64::max);
    let mut chosen = *peaks.iter().find(|p| p.strength >= NEAR_BEST * best)?;
    for &s in snap {
        if s >= 2 && s <= max_lag && (chosen.lag as f64 - s as f64).abs() <= 0.05 * s as f64 {
            chosen = Period {
                lag: s,
                strength: if acf[s].is_finite() {
                    acf[s]
                } else {
                    chosen.strength
                },
            };
        }
    }
    Some(chosen)
}

/// Means of a series over fixed buckets, the latest `capacity` kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRing {
    width_ms: i64,
    capacity: usize,
    /// Index (`ts.div_euclid(width)`) of the bucket being filled.
    current: Option<i64>,
    sum: f64,
    count: u32,
    /// Completed bucket means, oldest first; `NaN` for empty buckets.
    means: VecDeque<f32>,
}

impl BucketRing {
    /// An empty ring of `capacity` buckets of `width_ms` (at least 1 ms, 1 bucket).
    pub fn new(width_ms: i64, capacity: usize) -> Self {
        BucketRing {
            width_ms: width_ms.max(1),
            capacity: capacity.max(1),
            current: None,
            sum: 0.0,
            count: 0,
            means: VecDeque::new(),
        }
    }

    /// Adds an observation; returns true when it completed a bucket.
    pub fn push(&mut self, ts: TimestampMs, value: f64) -> bool {
        let b = ts.div_euclid(self.width_ms);
        let mut completed = false;
        match self.current {
            Some(c) if c == b => {}
            Some(c) if b < c => return false,
            Some(c) => {
                let mean = if self.count > 0 {
                    (self.sum / self.count as f64) as f32
                } else {
                    f32::NAN
                };
                self.append(mean);
                // Buckets skipped by a gap are missing (at most a ring's worth).
                let gap = (b - c - 1).clamp(0, self.capacity as i64) as usize;
                for _ in 0..gap {
                    self.append(f32::NAN);
                }
                if b - c - 1 > self.capacity as i64 {
                    // The whole ring is older than the gap: forget it.
                    self.means.clear();
                }
                self.sum = 0.0;
                self.count = 0;
                completed = true;
            }
            None => {}
        }
        self.current = Some(b);
        self.sum += value;
        self.count += 1;
        completed
    }

    fn append(&mut self, mean: f32) {
        if self.means.len() == self.capacity {
            self.means.pop_front();
        }
        self.means.push_back(mean);
    }

    /// The completed bucket means, oldest first, as f64.
    pub fn values(&self) -> Vec<f64> {
        self.means.iter().map(|&v| v as f64).collect()
    }

    /// How many completed buckets are kept.
    pub fn len(&self) -> usize {
        self.means.len()
    }

    /// Whether no bucket has completed.
    pub fn is_empty(&self) -> bool {
        self.means.is_empty()
    }

    /// Start of the bucket being filled (where the completed history ends).
    pub fn current_start(&self) -> Option<TimestampMs> {
        self.current.map(|c| c.saturating_mul(self.width_ms))
    }

    /// Bucket width.
    pub fn width_ms(&self) -> i64 {
        self.width_ms
    }
}

/// Finds and tracks a series' season online.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonDetector {
    fine: BucketRing,
    coarse: BucketRing,
    next_run: Option<TimestampMs>,
    season: Option<Season>,
}

/// Fine buckets are at least this wide.
pub const FINE_BUCKET_MS: i64 = 5 * MINUTE_MS;
/// Fine history kept, in buckets (3 days at 5 minutes).
const FINE_CAPACITY: usize = 864;
/// Coarse (hourly) history kept, in buckets (5 weeks).
const COARSE_CAPACITY: usize = 840;
/// How often (series time) the detection reruns.
const RUN_EVERY_MS: i64 = 12 * HOUR_MS;

impl SeasonDetector {
    /// A detector for a series observed every `step_ms`.
    pub fn new(step_ms: i64) -> Self {
        SeasonDetector {
            fine: BucketRing::new(step_ms.max(FINE_BUCKET_MS), FINE_CAPACITY),
            coarse: BucketRing::new(HOUR_MS.max(step_ms), COARSE_CAPACITY),
            next_run: None,
            season: None,
        }
    }

    /// The fine bucket width.
    pub fn bucket_ms(&self) -> i64 {
        self.fine.width_ms()
    }

    /// The latest detection's result (`None` before the first run).
    pub fn season(&self) -> Option<&Season> {
        self.season.as_ref()
    }

    /// The fine history (oldest first, `NaN` = missing).
    pub fn recent(&self) -> Vec<f64> {
        self.fine.values()
    }

    /// Learns from an observation (already checked usable); returns true
    /// when the detection reran, so the caller can tell the models.
    pub fn observe(&mut self, ts: TimestampMs, value: f64) -> bool {
        let completed = self.fine.push(ts, value);
        self.coarse.push(ts, value);
        let next = *self.next_run.get_or_insert(ts.saturating_add(RUN_EVERY_MS));
        if !(completed && ts >= next) {
            return false;
        }
        self.next_run = Some(ts.saturating_add(RUN_EVERY_MS));
        self.detect();
        true
    }

    fn detect(&mut self) {
        let w = self.fine.width_ms();
        let per = |span: i64, width: i64| (span / width) as usize;
        // Search a quarter past the calendar period, so that a peak at it
        // is seen as a peak.
        let fine = detect_period(
            &self.fine.values(),
            2,
            per(DAY_MS + DAY_MS / 4, w).max(3),
            &[per(DAY_MS, w), per(HOUR_MS, w)],
        );
        let cw = self.coarse.width_ms();
        let coarse = detect_period(
            &self.coarse.values(),
            per(DAY_MS, cw) + 1,
            per(WEEK_MS + DAY_MS, cw),
            &[per(WEEK_MS, cw)],
        );
        let day = per(DAY_MS, w);
        let daily = fine.is_some_and(|p| p.lag == day);
        let weekly = coarse.is_some_and(|p| p.lag == per(WEEK_MS, cw));
        let period_buckets = fine
            .map(|p| p.lag)
            .or_else(|| coarse.map(|p| (p.lag as i64 * cw / w) as usize));
        self.season = Some(Season {
            bucket_ms: w,
            period_buckets,
            daily,
            weekly,
            history_end: self.fine.current_start().unwrap_or(0),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<f64> {
        // A small xorshift: tests need no RNG crate.
        let mut s = seed.max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 10_000) as f64 / 10_000.0 - 0.5
            })
            .collect()
    }

    #[test]
    fn finds_a_daily_cycle_and_snaps_it_to_the_day() {
        let e = noise(864, 7);
        let y: Vec<f64> = (0..864)
            .map(|t| 10.0 + 3.0 * (t as f64 * std::f64::consts::TAU / 287.0).sin() + e[t])
            .collect();
        let p = detect_period(&y, 2, 433, &[288, 12]).unwrap();
        assert_eq!(p.lag, 288);
        assert!(p.strength > 0.5);
    }

    #[test]
    fn finds_short_periods_and_prefers_the_shortest() {
        let y: Vec<f64> = (0..600).map(|t| ((t % 24) as f64 - 12.0).abs()).collect();
        assert_eq!(detect_period(&y, 2, 300, &[]).unwrap().lag, 24);
    }

    #[test]
    fn none_in_noise_or_a_random_walk_or_a_trend() {
        assert_eq!(detect_period(&noise(2000, 3), 2, 1000, &[]), None);
        let mut w = 0.0;
        let walk: Vec<f64> = noise(2000, 5)
            .into_iter()
            .map(|e| {
                w += e;
                w
            })
            .collect();
        assert_eq!(detect_period(&walk, 2, 1000, &[]), None);
        let trend: Vec<f64> = (0..500).map(|t| t as f64 * 0.3).collect();
        assert_eq!(detect_period(&trend, 2, 250, &[]), None);
    }

    #[test]
    fn degenerate_inputs_say_none() {
        assert_eq!(detect_period(&[], 2, 10, &[]), None);
        assert_eq!(detect_period(&[1.0; 100], 2, 50, &[]), None);
        assert_eq!(detect_period(&[f64::NAN; 100], 2, 50, &[]), None);
    }

    #[test]
    fn missing_buckets_are_skipped() {
        let mut y: Vec<f64> = (0..600).map(|t| ((t % 24) as f64 - 12.0).abs()).collect();
        for i in (0..600).step_by(7) {
            y[i] = f64::NAN;
        }
        assert_eq!(detect_period(&y, 2, 300, &[]).unwrap().lag, 24);
    }

    #[test]
    fn detector_finds_the_day_online_and_marks_gaps() {
        let step = 5 * MINUTE_MS;
        let mut d = SeasonDetector::new(step);
        let mut reruns = 0;
        for t in 0..(3 * 288) {
            let ts = t as i64 * step;
            if (400..420).contains(&t) {
                continue; // a gap
            }
            let v = 5.0 + (ts as f64 * std::f64::consts::TAU / DAY_MS as f64).sin();
            reruns += d.observe(ts, v) as usize;
        }
        assert!(reruns >= 4, "{reruns}");
        let s = d.season().unwrap();
        assert!(s.daily && !s.weekly);
        assert_eq!(s.period_buckets, Some(288));
        assert_eq!(d.recent().iter().filter(|v| v.is_nan()).count(), 20);
    }
}
