//! Resampling to the model's step and the feature vector.
//!
//! Training and inference share every line here: [`Bucketer`] turns
//! observations into bucket means (the series at the model's own step), and
//! [`origin_features`] + [`fill_row`] turn a view of those buckets
//! ([`History`]) into a feature row. The trainer reads history from a slice,
//! the adapter from its ring buffer; both produce bit-identical rows.
//!
//! Every feature is scale-free: values are divided by the series' scale, the
//! mean of its last day of buckets, so one model serves cores and bytes.
//! Windows and lags are spans of time converted to buckets of the model's
//! step (5 minutes by default: lags of 1, 2, 3, 6 and 12 buckets, windows of
//! 12, 72 and 288 buckets, yesterday 288 and last week 2016 buckets back).

use serde::{Deserialize, Serialize};

pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 86_400_000;
pub(crate) const WEEK_MS: i64 = 7 * DAY_MS;

/// Names of the features, in the order of a row (for reports and debugging).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "horizon_hours",
    "lag_1",
    "lag_2",
    "lag_3",
    "lag_6",
    "lag_12",
    "mean_1h",
    "max_1h",
    "std_1h",
    "mean_6h",
    "max_6h",
    "max_1d",
    "std_1d",
    "q50_1d",
    "q75_1d",
    "q90_1d",
    "q95_1d",
    "q99_1d",
    "history_fraction",
    "tod_sin",
    "tod_cos",
    "dow_sin",
    "dow_cos",
    "yesterday",
    "yesterday_mean",
    "yesterday_max",
    "last_week",
];

/// Number of features in a row.
pub const N_FEATURES: usize = 27;

/// Lags, as time before the end of the origin bucket: the bucket that ends
/// this long before the origin's end (5 min = the origin bucket itself at the
/// default step). The first lag is always the origin bucket, whatever the step.
const LAGS_MS: [i64; 5] = [
    5 * MINUTE_MS,
    10 * MINUTE_MS,
    15 * MINUTE_MS,
    30 * MINUTE_MS,
    HOUR_MS,
];

/// Levels of the last day's empirical quantiles among the features.
const DAY_QUANTILES: [f64; 5] = [0.5, 0.75, 0.9, 0.95, 0.99];

/// Half-width of the window around "same time yesterday", in buckets.
const YESTERDAY_HALF_WIDTH: usize = 2;

/// The spans of the features in buckets of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Spans {
    /// The model's step.
    pub step_ms: i64,
    /// Buckets back from the origin of each lag (0 = the origin bucket).
    pub lags: [usize; 5],
    pub hour: usize,
    pub six_hours: usize,
    pub day: usize,
    pub week: usize,
}

impl Spans {
    /// The spans for a step, which must divide one hour (checked by the
    /// caller: [`check_step`]).
    pub fn new(step_ms: i64) -> Spans {
        let step = step_ms.max(1);
        let buckets = |ms: i64| usize::try_from((ms / step).max(1)).unwrap_or(1);
        let mut lags = LAGS_MS.map(|ms| buckets(ms) - 1);
        lags[0] = 0;
        Spans {
            step_ms: step,
            lags,
            hour: buckets(HOUR_MS),
            six_hours: buckets(6 * HOUR_MS),
            day: buckets(DAY_MS),
            week: buckets(WEEK_MS),
        }
    }

    /// Buckets of history the features can reach back to, origin included:
    /// last week's value for a target one bucket ahead is `week - 1` back.
    pub fn history_len(&self) -> usize {
        self.week + 1
    }
}

/// Why a model step is unusable, or `None` when it is fine. The step must
/// divide one hour (so hours, days and weeks are whole numbers of buckets)
/// and be at least a minute (so a week of history stays within the state
/// budget: 10,080 buckets of 4 bytes).
pub(crate) fn check_step(step_ms: i64) -> Option<String> {
    if !(MINUTE_MS..=HOUR_MS).contains(&step_ms) || HOUR_MS % step_ms != 0 {
        Some(format!(
            "{step_ms} ms: the model's step must divide one hour and be at least one minute (e.g. 300000 for 5 minutes)"
        ))
    } else {
        None
    }
}

/// A view of bucket means going back from an origin bucket.
pub(crate) trait History {
    /// The mean of the bucket `back` buckets before the origin (0 = the
    /// origin), NaN when missing or beyond what is known.
    fn at(&self, back: usize) -> f32;
}

/// History held in a slice of consecutive buckets, the origin at `origin`.
pub(crate) struct SliceHistory<'a> {
    pub buckets: &'a [f32],
    pub origin: usize,
}

impl History for SliceHistory<'_> {
    #[inline]
    fn at(&self, back: usize) -> f32 {
        match self.origin.checked_sub(back) {
            Some(i) => self.buckets.get(i).copied().unwrap_or(f32::NAN),
            None => f32::NAN,
        }
    }
}

/// Number of features that depend on the origin only.
const ORIGIN_FEATURES: usize = 18;

/// What does not depend on the horizon: the scale and the origin's features
/// (already divided by the scale).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OriginFeatures {
    /// Mean of the last day of buckets: positive and finite (else there is
    /// no [`OriginFeatures`]).
    pub scale: f64,
    /// Features 1..=18 of a row (lags to history fraction).
    pub values: [f32; ORIGIN_FEATURES],
}

/// The scale and origin features, or `Err(last)` when the last day has no
/// positive mean (no data in the last day, or all zeros): then there is
/// nothing to scale by, and the caller forecasts `last`, the origin value
/// (NaN when the origin bucket is missing). `day` holds the finite values
/// of the last day's buckets (`back` 0 to `spans.day - 1`), sorted
/// ([`DayWindow`]).
pub(crate) fn origin_features<H: History>(
    h: &H,
    spans: &Spans,
    day: &[f32],
) -> Result<OriginFeatures, f32> {
    let (mut n1, mut s1, mut q1, mut m1) = (0u32, 0.0f64, 0.0f64, f64::NEG_INFINITY);
    let (mut n6, mut s6, mut m6) = (0u32, 0.0f64, f64::NEG_INFINITY);
    let (mut nd, mut sd, mut qd, mut md) = (0u32, 0.0f64, 0.0f64, f64::NEG_INFINITY);
    for back in 0..spans.day {
        let v = h.at(back);
        if !v.is_finite() {
            continue;
        }
        let v = f64::from(v);
        nd += 1;
        sd += v;
        qd += v * v;
        md = md.max(v);
        if back < spans.six_hours {
            n6 += 1;
            s6 += v;
            m6 = m6.max(v);
        }
        if back < spans.hour {
            n1 += 1;
            s1 += v;
            q1 += v * v;
            m1 = m1.max(v);
        }
    }
    let scale = if nd > 0 { sd / f64::from(nd) } else { f64::NAN };
    if !(scale.is_finite() && scale > 0.0) {
        return Err(h.at(0));
    }
    let norm = |v: f64| (v / scale) as f32;
    let mean = |s: f64, n: u32| if n > 0 { s / f64::from(n) } else { f64::NAN };
    let std = |s: f64, q: f64, n: u32| {
        if n > 0 {
            let m = s / f64::from(n);
            (q / f64::from(n) - m * m).max(0.0).sqrt()
        } else {
            f64::NAN
        }
    };
    let max = |m: f64| if m.is_finite() { m } else { f64::NAN };
    let lag = |i: usize| (f64::from(h.at(spans.lags[i])) / scale) as f32;
    Ok(OriginFeatures {
        scale,
        values: [
            lag(0),
            lag(1),
            lag(2),
            lag(3),
            lag(4),
            norm(mean(s1, n1)),
            norm(max(m1)),
            norm(std(s1, q1, n1)),
            norm(mean(s6, n6)),
            norm(max(m6)),
            norm(max(md)),
            norm(std(sd, qd, nd)),
            norm(quantile_sorted(day, DAY_QUANTILES[0])),
            norm(quantile_sorted(day, DAY_QUANTILES[1])),
            norm(quantile_sorted(day, DAY_QUANTILES[2])),
            norm(quantile_sorted(day, DAY_QUANTILES[3])),
            norm(quantile_sorted(day, DAY_QUANTILES[4])),
            nd as f32 / spans.day as f32,
        ],
    })
}

/// Fills `row` for the target `k` buckets after the origin (`k >= 1`), whose
/// bucket starts at `target_ms`.
pub(crate) fn fill_row<H: History>(
    h: &H,
    spans: &Spans,
    origin: &OriginFeatures,
    k: usize,
    target_ms: i64,
    row: &mut [f32; N_FEATURES],
) {
    let scale = origin.scale;
    row[0] = (k as f64 * spans.step_ms as f64 / HOUR_MS as f64) as f32;
    row[1..=ORIGIN_FEATURES].copy_from_slice(&origin.values);
    let tod = target_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
    // Day 0 (1970-01-01) was a Thursday; Monday is 0.
    let dow = (target_ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as f64 / 7.0;
    let tau = std::f64::consts::TAU;
    row[19] = (tau * tod).sin() as f32;
    row[20] = (tau * tod).cos() as f32;
    row[21] = (tau * dow).sin() as f32;
    row[22] = (tau * dow).cos() as f32;
    // Same time yesterday and last week, relative to the target: `day - k`
    // buckets before the origin (only known when the target is within a day
    // of the origin: beyond that these are NaN, as in training).
    let norm = |v: f32| (f64::from(v) / scale) as f32;
    match spans.day.checked_sub(k) {
        Some(back) => {
            row[23] = norm(h.at(back));
            let (mut n, mut s, mut m) = (0u32, 0.0f64, f64::NEG_INFINITY);
            let lo = back.saturating_sub(YESTERDAY_HALF_WIDTH);
            for b in lo..=back + YESTERDAY_HALF_WIDTH {
                let v = h.at(b);
                if v.is_finite() {
                    n += 1;
                    s += f64::from(v);
                    m = m.max(f64::from(v));
                }
            }
            if n > 0 {
                row[24] = (s / f64::from(n) / scale) as f32;
                row[25] = (m / scale) as f32;
            } else {
                row[24] = f32::NAN;
                row[25] = f32::NAN;
            }
        }
        None => {
            row[23] = f32::NAN;
            row[24] = f32::NAN;
            row[25] = f32::NAN;
        }
    }
    row[26] = match spans.week.checked_sub(k) {
        Some(back) => norm(h.at(back)),
        None => f32::NAN,
    };
}

/// The `tau` empirical quantile of sorted values (the pinball-loss
/// minimiser: the smallest value with at least `tau` of them at or below
/// it), NaN when there are none.
pub(crate) fn quantile_sorted(sorted: &[f32], tau: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let i = ((tau * n as f64).ceil() as usize).clamp(1, n) - 1;
    f64::from(sorted[i])
}

/// Where boosting starts for each level: the series' own empirical quantile
/// of its last day at that level, scaled. The trees learn corrections to it
/// (a tree approximates "the series' 0.99 quantile" only coarsely, piece by
/// piece, but adjusts it well). `day` must be non-empty when `scale` is
/// defined, which [`origin_features`] guarantees.
pub(crate) fn baseline(day: &[f32], scale: f64, levels: &[f64], out: &mut [f32]) {
    for (o, &tau) in out.iter_mut().zip(levels) {
        let q = quantile_sorted(day, tau);
        *o = if q.is_finite() {
            (q / scale) as f32
        } else {
            1.0
        };
    }
}

/// The finite values of the last day's buckets, kept sorted as buckets
/// change, enter and leave (a few hundred values: insertion and removal are
/// short memmoves, far cheaper than sorting a day at every forecast).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DayWindow {
    pub sorted: Vec<f32>,
}

impl DayWindow {
    pub fn insert(&mut self, v: f32) {
        if v.is_finite() {
            let i = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
            self.sorted.insert(i, v);
        }
    }

    pub fn remove(&mut self, v: f32) {
        if v.is_finite() {
            let i = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
            if self.sorted.get(i).is_some_and(|x| x.total_cmp(&v).is_eq()) {
                self.sorted.remove(i);
            }
        }
    }

    /// The window of `h` computed afresh (for history held in a slice).
    pub fn of<H: History>(h: &H, spans: &Spans) -> DayWindow {
        let mut sorted: Vec<f32> = (0..spans.day)
            .map(|b| h.at(b))
            .filter(|v| v.is_finite())
            .collect();
        sorted.sort_unstable_by(f32::total_cmp);
        DayWindow { sorted }
    }
}

/// Accumulates observations into bucket means of one step.
///
/// An observation at `ts` with value `v` is the mean over `[ts, ts + step)`;
/// each bucket it overlaps gets `v` weighted by the overlap, so a 10-s series
/// becomes 5-minute means and an hourly one fills twelve 5-minute buckets.
/// Only the newest bucket can still change: an observation that reaches back
/// before it contributes only its part from the newest bucket on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Bucketer {
    /// Index (time / step) of the newest bucket, if any.
    pub newest: Option<i64>,
    /// Weighted sum and covered time of the newest bucket.
    pub sum: f64,
    pub covered_ms: i64,
    /// End of the latest observation.
    pub end_ms: i64,
}

impl Bucketer {
    pub fn new() -> Bucketer {
        Bucketer {
            newest: None,
            sum: 0.0,
            covered_ms: 0,
            end_ms: i64::MIN,
        }
    }

    /// Adds the observation; calls `emit(bucket, mean)` for each bucket whose
    /// mean it changes, in increasing bucket order (the newest last). At most
    /// `max_buckets` buckets are emitted: the last ones of the observation.
    /// Non-finite values and observations that end before the latest one
    /// are ignored.
    pub fn push(
        &mut self,
        ts: i64,
        value: f64,
        obs_step_ms: i64,
        bucket_ms: i64,
        max_buckets: usize,
        mut emit: impl FnMut(i64, f32),
    ) {
        if !value.is_finite() || bucket_ms <= 0 {
            return;
        }
        let end = ts.saturating_add(obs_step_ms.max(1));
        // Only time after everything seen so far counts.
        let start = ts.max(self.end_ms);
        if end <= start {
            return;
        }
        self.end_ms = end;
        let first = start.div_euclid(bucket_ms);
        let last = (end - 1).div_euclid(bucket_ms);
        let max_buckets = i64::try_from(max_buckets.max(1)).unwrap_or(i64::MAX);
        let first = first.max(last.saturating_sub(max_buckets - 1));
        for b in first..=last {
            let lo = start.max(b.saturating_mul(bucket_ms));
            let hi = end.min(b.saturating_add(1).saturating_mul(bucket_ms));
            let overlap = hi.saturating_sub(lo);
            if overlap <= 0 {
                continue;
            }
            if self.newest == Some(b) {
                self.sum += value * overlap as f64;
                self.covered_ms += overlap;
            } else {
                self.newest = Some(b);
                self.sum = value * overlap as f64;
                self.covered_ms = overlap;
            }
            emit(b, (self.sum / self.covered_ms as f64) as f32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_at_five_minutes_match_the_step_counts() {
        let s = Spans::new(300_000);
        assert_eq!(s.lags, [0, 1, 2, 5, 11]);
        assert_eq!((s.hour, s.six_hours, s.day, s.week), (12, 72, 288, 2016));
        let m = Spans::new(60_000);
        assert_eq!(m.lags, [0, 9, 14, 29, 59]);
        assert_eq!(m.day, 1440);
    }

    #[test]
    fn steps_that_do_not_divide_an_hour_are_refused() {
        assert!(check_step(300_000).is_none());
        assert!(check_step(60_000).is_none());
        assert!(check_step(10_000).is_some());
        assert!(check_step(7 * 60_000).is_some());
        assert!(check_step(2 * HOUR_MS).is_some());
        assert!(check_step(0).is_some());
        assert!(check_step(-300_000).is_some());
    }

    fn bucket_all(obs: &[(i64, f64)], step: i64, bucket: i64) -> Vec<(i64, f32)> {
        let mut b = Bucketer::new();
        let mut out: Vec<(i64, f32)> = Vec::new();
        for &(ts, v) in obs {
            b.push(ts, v, step, bucket, 100, |i, m| match out.last_mut() {
                Some(last) if last.0 == i => last.1 = m,
                _ => out.push((i, m)),
            });
        }
        out
    }

    #[test]
    fn fine_observations_average_into_buckets() {
        // 10-s observations into 30-s buckets: means of three.
        let obs: Vec<(i64, f64)> = (0..7).map(|i| (i * 10_000, i as f64)).collect();
        let got = bucket_all(&obs, 10_000, 30_000);
        assert_eq!(got, vec![(0, 1.0), (1, 4.0), (2, 6.0)]);
    }

    #[test]
    fn coarse_observations_fill_every_bucket_they_cover() {
        let got = bucket_all(&[(0, 2.0), (60_000, 4.0)], 60_000, 30_000);
        assert_eq!(got, vec![(0, 2.0), (1, 2.0), (2, 4.0), (3, 4.0)]);
    }

    #[test]
    fn unaligned_observations_are_weighted_by_overlap() {
        // [15 s, 45 s) at 3 then [45 s, 75 s) at 6, into 30-s buckets:
        // bucket 0 gets 15 s of 3; bucket 1 gets 15 s of 3 and 15 s of 6.
        let got = bucket_all(&[(15_000, 3.0), (45_000, 6.0)], 30_000, 30_000);
        assert_eq!(got, vec![(0, 3.0), (1, 4.5), (2, 6.0)]);
    }

    #[test]
    fn repeated_nan_and_backward_observations_are_ignored() {
        let got = bucket_all(
            &[
                (0, 1.0),
                (0, 9.0),
                (30_000, f64::NAN),
                (60_000, 2.0),
                (30_000, 7.0),
            ],
            30_000,
            30_000,
        );
        assert_eq!(got, vec![(0, 1.0), (2, 2.0)]);
    }

    #[test]
    fn huge_steps_emit_at_most_the_cap() {
        let mut b = Bucketer::new();
        let mut n = 0;
        b.push(0, 1.0, i64::MAX, 300_000, 10, |_, _| n += 1);
        assert_eq!(n, 10);
        b.push(i64::MAX - 5, 1.0, i64::MAX, 300_000, 10, |_, _| n += 1);
        assert_eq!(n, 10, "nothing after the end of time");
    }

    #[test]
    fn features_are_scale_free() {
        let spans = Spans::new(300_000);
        let base: Vec<f32> = (0..600)
            .map(|i| 1.0 + (i as f32 * 0.1).sin() * 0.5)
            .collect();
        let big: Vec<f32> = base.iter().map(|v| v * 1e9).collect();
        let h1 = SliceHistory {
            buckets: &base,
            origin: 599,
        };
        let h2 = SliceHistory {
            buckets: &big,
            origin: 599,
        };
        let o1 = origin_features(&h1, &spans, &DayWindow::of(&h1, &spans).sorted).unwrap();
        let o2 = origin_features(&h2, &spans, &DayWindow::of(&h2, &spans).sorted).unwrap();
        let (mut r1, mut r2) = ([0.0; N_FEATURES], [0.0; N_FEATURES]);
        fill_row(&h1, &spans, &o1, 5, 600 * 300_000, &mut r1);
        fill_row(&h2, &spans, &o2, 5, 600 * 300_000, &mut r2);
        for (i, (a, b)) in r1.iter().zip(&r2).enumerate() {
            if a.is_nan() {
                assert!(b.is_nan(), "{}", FEATURE_NAMES[i]);
            } else {
                assert!(
                    (a - b).abs() <= 1e-4 * a.abs().max(1.0),
                    "{}",
                    FEATURE_NAMES[i]
                );
            }
        }
        // Last week is beyond 600 buckets of history.
        assert!(r1[26].is_nan());
        assert!(r1[23].is_finite());
    }

    #[test]
    fn the_day_window_stays_sorted_and_drops_what_leaves() {
        let mut w = DayWindow::default();
        for v in [3.0, 1.0, f32::NAN, 2.0, 1.0] {
            w.insert(v);
        }
        assert_eq!(w.sorted, vec![1.0, 1.0, 2.0, 3.0]);
        w.remove(1.0);
        w.remove(7.0);
        w.remove(f32::NAN);
        assert_eq!(w.sorted, vec![1.0, 2.0, 3.0]);
        assert_eq!(quantile_sorted(&w.sorted, 0.5), 2.0);
        assert_eq!(quantile_sorted(&w.sorted, 0.99), 3.0);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn an_idle_or_empty_day_has_no_scale() {
        let spans = Spans::new(300_000);
        let zeros = vec![0.0f32; 300];
        let h = SliceHistory {
            buckets: &zeros,
            origin: 299,
        };
        assert_eq!(origin_features(&h, &spans, &[0.0; 300]).unwrap_err(), 0.0);
        let h = SliceHistory {
            buckets: &[],
            origin: 0,
        };
        assert!(origin_features(&h, &spans, &[]).unwrap_err().is_nan());
    }
}
