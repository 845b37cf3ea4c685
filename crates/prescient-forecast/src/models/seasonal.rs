//! The seasonal profile: demand by time of day (and day of week), with
//! decay, for workloads that repeat.
//!
//! Two tables of decayed sums: 288 bins of 5 minutes over the day (half-life
//! 12 hours, so yesterday dominates: on the Alibaba trace, whose daily
//! shape drifts, averaging several past days evenly forecast worse than
//! yesterday alone) and 336 bins of 30 minutes over the week (half-life one
//! week), used once the season detector has found a weekly cycle. Decay is
//! done as in the VPA's histogram: newer samples get larger weights, and all
//! bins are rescaled now and then, so an update touches one bin of each
//! table.
//!
//! A forecast for time `t` is the weighted mean of the daily bins within 30
//! minutes of `t`'s time of day (smoothing away the noise of single bins),
//! plus, with a weekly cycle, the week table's deviation from the day table
//! at that time of week, plus a correction toward the current level that
//! fades with a time constant of 8 hours. The correction is an EWMA
//! (half-life 15 minutes) of the recent observations' departures from the
//! profile at their own time: comparing an EWMA of the level with the
//! profile now instead would lag on every steep part of the cycle. The spread is the spread of the samples in the
//! window (day-to-day and within the hour).

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use super::{normal_row, rows, z_scores};
use crate::model::{Model, SeriesContext};
use crate::season::Season;
use crate::stats::{elapsed, ewma_alpha, usable};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
const DAY_BIN_MS: i64 = 5 * MINUTE_MS;
const DAY_BINS: usize = (DAY_MS / DAY_BIN_MS) as usize;
const WEEK_BIN_MS: i64 = 30 * MINUTE_MS;
const WEEK_BINS: usize = (WEEK_MS / WEEK_BIN_MS) as usize;
const DAY_HALF_LIFE_MS: i64 = 12 * 60 * MINUTE_MS;
const WEEK_HALF_LIFE_MS: i64 = WEEK_MS;
/// Daily bins on each side of the forecast time that are averaged (30 min).
const SMOOTH_BINS: i64 = 6;
/// Daily bins on each side matched against a weekly bin and its neighbours
/// (45 min: three 30-minute bins).
const WEEK_MATCH_BINS: i64 = 9;
const LEVEL_HALF_LIFE_MS: i64 = 15 * MINUTE_MS;
const DEV_HALF_LIFE_MS: i64 = 6 * 60 * MINUTE_MS;
/// Time constant of the fading level correction.
const CORRECTION_MS: f64 = 8.0 * 60.0 * MINUTE_MS as f64;
/// Rescale the weights when a new sample's weight exponent passes this.
const MAX_EXPONENT: f64 = 40.0;
const MAD_TO_SIGMA: f64 = 1.253_314;

/// Decayed sums of the samples in one bin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Bin {
    w: f64,
    s: f64,
    s2: f64,
}

impl Bin {
    fn add(&mut self, v: f64, w: f64) {
        self.w += w;
        self.s += w * v;
        self.s2 += w * v * v;
    }

    fn scale(&mut self, f: f64) {
        self.w *= f;
        self.s *= f;
        self.s2 *= f;
    }

    /// Scales every value the bin holds by `r`.
    fn scale_values(&mut self, r: f64) {
        self.s *= r;
        self.s2 *= r * r;
    }

    /// Takes back the scaling by `r` of one value `v` (weight `w`) that
    /// [`Bin::scale_values`] made `r v`.
    fn unscale_value(&mut self, v: f64, w: f64, r: f64) {
        self.s -= w * v * (r - 1.0);
        self.s2 -= w * v * v * (r * r - 1.0);
    }

    fn merge(&mut self, o: &Bin) {
        self.w += o.w;
        self.s += o.s;
        self.s2 += o.s2;
    }

    /// Mean and variance, when the bin holds any weight.
    fn moments(&self) -> Option<(f64, f64)> {
        if self.w.is_nan() || self.w <= 0.0 {
            return None;
        }
        let mean = self.s / self.w;
        Some((mean, (self.s2 / self.w - mean * mean).max(0.0)))
    }
}

/// Decayed demand by time of day and day of week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonalProfile {
    step_ms: i64,
    day: Vec<Bin>,
    week: Vec<Bin>,
    /// Weights are `2^((ts - reference) / half_life)`.
    reference_ms: Option<TimestampMs>,
    use_week: bool,
    /// EWMA of `value - profile(ts)`.
    departure: f64,
    level: f64,
    dev: f64,
    last_ts: Option<TimestampMs>,
    seen: u64,
}

fn day_bin(ts: TimestampMs) -> i64 {
    ts.rem_euclid(DAY_MS) / DAY_BIN_MS
}

fn week_bin(ts: TimestampMs) -> i64 {
    ts.rem_euclid(WEEK_MS) / WEEK_BIN_MS
}

impl SeasonalProfile {
    /// A fresh model.
    pub fn new(ctx: SeriesContext) -> Self {
        SeasonalProfile {
            step_ms: ctx.step_ms.max(1),
            day: vec![Bin::default(); DAY_BINS],
            week: vec![Bin::default(); WEEK_BINS],
            reference_ms: None,
            use_week: false,
            departure: 0.0,
            level: 0.0,
            dev: 0.0,
            last_ts: None,
            seen: 0,
        }
    }

    /// Whether deserialised state has the shape this code expects.
    pub(crate) fn is_consistent(&self) -> bool {
        self.day.len() == DAY_BINS && self.week.len() == WEEK_BINS
    }

    /// Daily bins `center - half ..= center + half` (wrapping) merged.
    fn day_window(&self, center: i64, half: i64) -> Bin {
        let mut acc = Bin::default();
        for j in -half..=half {
            acc.merge(&self.day[(center + j).rem_euclid(DAY_BINS as i64) as usize]);
        }
        acc
    }

    /// The profile's mean and variance at `ts`, or `None` where it has no
    /// data yet.
    fn profile(&self, ts: TimestampMs) -> Option<(f64, f64)> {
        let (mut mean, var) = self.day_window(day_bin(ts), SMOOTH_BINS).moments()?;
        if self.use_week {
            let wb = week_bin(ts);
            let mut wk = Bin::default();
            for j in -1..=1 {
                wk.merge(&self.week[(wb + j).rem_euclid(WEEK_BINS as i64) as usize]);
            }
            // The week table's deviation from the day table over the same
            // 90 minutes: the week's shape, without its older level.
            let matched_center =
                (wb * WEEK_BIN_MS + WEEK_BIN_MS / 2).rem_euclid(DAY_MS) / DAY_BIN_MS;
            if let (Some((wm, _)), Some((dm, _))) = (
                wk.moments(),
                self.day_window(matched_center, WEEK_MATCH_BINS).moments(),
            ) {
                mean += wm - dm;
            }
        }
        Some((mean, var))
    }

    /// A lasting change of level by `delta` that began before the values
    /// `learnt_since` (the observations since the change, as learnt).
    ///
    /// The profile is scaled so that its daily mean moves by `delta`: its
    /// shape by time of day and week is kept, and its swing scales with the
    /// level (a workload whose demand doubles usually doubles its daily
    /// swing too; and a scaled profile never goes below zero, which a
    /// profile moved down by a constant would in its troughs). The values
    /// in `learnt_since` were at the new level already and are not scaled.
    /// The correction toward the current level (which has followed the
    /// change since it began) loses what the profile gained at the next
    /// step, so the next steps' forecasts are unchanged and only those
    /// further out, where the correction has faded, move. Returns whether
    /// the profile moved (not without data or with a `delta` that is not
    /// finite or 0).
    pub(crate) fn move_level(&mut self, delta: f64, learnt_since: &[(TimestampMs, f64)]) -> bool {
        if !delta.is_finite() || delta == 0.0 {
            return false;
        }
        // The values since the change as they were added: (ts, value, day
        // weight, week weight), weights as they are after any rescaling.
        let reference = self.reference_ms.unwrap_or(0) as f64;
        let since: Vec<(TimestampMs, f64, f64, f64)> = learnt_since
            .iter()
            .filter(|(ts, _)| self.last_ts.is_some_and(|l| *ts <= l))
            .filter_map(|&(ts, v)| {
                let age = ts as f64 - reference;
                Some((
                    ts,
                    usable(v)?,
                    (age / DAY_HALF_LIFE_MS as f64).exp2(),
                    (age / WEEK_HALF_LIFE_MS as f64).exp2(),
                ))
            })
            .collect();
        // The daily mean before the change: the day bins without the values
        // since.
        let mut old = self.day.clone();
        for &(ts, v, wd, _) in &since {
            let b = &mut old[day_bin(ts) as usize];
            b.w -= wd;
            b.s -= wd * v;
        }
        let means: Vec<f64> = old
            .iter()
            .filter(|b| b.w > 1e-12 * self.day.iter().map(|b| b.w).fold(0.0, f64::max))
            .map(|b| b.s / b.w)
            .collect();
        if means.is_empty() {
            return false;
        }
        let mean = means.iter().sum::<f64>() / means.len() as f64;
        if mean.is_nan() || mean <= 0.0 {
            return false;
        }
        let r = ((mean + delta) / mean).max(0.0);
        let next = self.last_ts.map(|l| l.saturating_add(self.step_ms));
        let before = next.and_then(|t| self.profile(t));
        for b in self.day.iter_mut().chain(self.week.iter_mut()) {
            b.scale_values(r);
        }
        for &(ts, v, wd, ww) in &since {
            self.day[day_bin(ts) as usize].unscale_value(v, wd, r);
            self.week[week_bin(ts) as usize].unscale_value(v, ww, r);
        }
        // The correction reaches the next step faded by one step.
        let fade = (-(self.step_ms as f64) / CORRECTION_MS).exp();
        self.departure -= match (next.and_then(|t| self.profile(t)), before) {
            (Some((after, _)), Some((before, _))) => (after - before) / fade,
            _ => delta,
        };
        true
    }

    fn rescale_if_needed(&mut self, ts: TimestampMs) {
        let reference = *self.reference_ms.get_or_insert(ts);
        let exponent = (ts as f64 - reference as f64) / DAY_HALF_LIFE_MS as f64;
        if exponent <= MAX_EXPONENT {
            return;
        }
        let shift = elapsed(reference, ts);
        let fd = (-(shift as f64) / DAY_HALF_LIFE_MS as f64).exp2();
        let fw = (-(shift as f64) / WEEK_HALF_LIFE_MS as f64).exp2();
        self.day.iter_mut().for_each(|b| b.scale(fd));
        self.week.iter_mut().for_each(|b| b.scale(fw));
        self.reference_ms = Some(ts);
    }
}

impl Model for SeasonalProfile {
    fn name(&self) -> &'static str {
        "seasonal"
    }

    fn update(&mut self, ts: TimestampMs, value: f64) {
        let Some(v) = usable(value) else { return };
        if self.last_ts.is_some_and(|l| ts <= l) {
            return;
        }
        // The departure from the profile, measured before the sample joins it.
        if let (Some(last), Some((p, _))) = (self.last_ts, self.profile(ts)) {
            let a = ewma_alpha(elapsed(last, ts), LEVEL_HALF_LIFE_MS);
            self.departure += a * ((v - p) - self.departure);
        }
        self.rescale_if_needed(ts);
        let age = (ts as f64 - self.reference_ms.unwrap_or(ts) as f64).max(0.0);
        let wd = (age / DAY_HALF_LIFE_MS as f64).exp2();
        let ww = (age / WEEK_HALF_LIFE_MS as f64).exp2();
        self.day[day_bin(ts) as usize].add(v, wd);
        self.week[week_bin(ts) as usize].add(v, ww);
        match self.last_ts {
            None => {
                self.level = v;
                self.dev = 0.0;
            }
            Some(last) => {
                let dt = elapsed(last, ts);
                let e = (v - self.level).abs();
                self.dev = if self.seen == 1 {
                    e
                } else {
                    self.dev + ewma_alpha(dt, DEV_HALF_LIFE_MS) * (e - self.dev)
                };
                self.level += ewma_alpha(dt, LEVEL_HALF_LIFE_MS) * (v - self.level);
            }
        }
        self.last_ts = Some(ts);
        self.seen += 1;
    }

    fn forecast(&self, start: TimestampMs, horizon: usize, levels: &[f64], out: &mut [f64]) {
        let n = levels.len();
        let mut zb = [0.0; 32];
        let mut zv;
        let z: &mut [f64] = if n <= 32 {
            &mut zb[..n]
        } else {
            zv = vec![0.0; n];
            &mut zv
        };
        z_scores(levels, z);
        let last = self.last_ts.unwrap_or(start);
        let correction = self.departure;
        for h in 0..rows(horizon, levels, out) {
            let ts = start.saturating_add((h as i64).saturating_mul(self.step_ms));
            let fade = (-(elapsed(last, ts).max(0) as f64) / CORRECTION_MS).exp();
            let (center, sigma) = match self.profile(ts) {
                Some((mean, var)) => (mean + correction * fade, var.sqrt()),
                None => (self.level, MAD_TO_SIGMA * self.dev),
            };
            normal_row(center, sigma, z, &mut out[h * n..(h + 1) * n]);
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.day.len() + self.week.len()) * std::mem::size_of::<Bin>()
    }

    fn season_changed(&mut self, season: &Season, _recent: &[f64]) {
        self.use_week = season.weekly;
    }
}
