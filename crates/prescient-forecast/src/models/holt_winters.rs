//! Additive Holt-Winters (ETS(A,Ad,A)) with a damped trend, on bucket means
//! of max(step, 5 minutes), with the season length found from the data.
//!
//! Written here rather than taken from `augurs-ets`, which fits only
//! non-seasonal ETS models in batch (its seasonal path goes through MSTL)
//! and gives symmetric intervals: the engine needs a model that updates in
//! constant time per observation, carries its seasonal state across
//! restarts, and takes a season length from the detector.
//!
//! The season comes from [`crate::season`]: when the detector reruns (twice
//! a day of series time) the model refits its smoothing parameters by grid
//! search on the detector's recent history (3 days of 5-minute means),
//! minimising one-step squared error, and rebuilds its state by running
//! through that history; between reruns it updates online once per
//! completed bucket. With no season found it is Holt's damped trend method.
//! Quantiles: the point forecast plus normal quantiles of the one-step error
//! scale, widened with the horizon as `sqrt(1 + (k - 1) alpha^2)`.

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use super::{normal_row, rows, z_scores};
use crate::model::{Model, SeriesContext};
use crate::season::{FINE_BUCKET_MS, Season};
use crate::stats::usable;

/// Longest season kept, in buckets (a week of 5-minute buckets).
const MAX_SEASON: usize = 2016;
const ALPHAS: [f64; 3] = [0.05, 0.15, 0.4];
const GAMMAS: [f64; 3] = [0.05, 0.2, 0.5];
const BETA_OVER_ALPHA: f64 = 0.1;
const PHI: f64 = 0.95;
/// Smoothing of the absolute one-step error.
const ERROR_SMOOTHING: f64 = 0.05;
const MAD_TO_SIGMA: f64 = 1.253_314;
/// Horizons (in buckets) past this widen no more.
const MAX_WIDEN: f64 = 288.0;

/// The smoothing state, separate so a refit can build one from history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    level: f64,
    trend: f64,
    season: Vec<f64>,
    /// Bucket index of the last update (the season index is
    /// `bucket.rem_euclid(season.len())`).
    last_bucket: Option<i64>,
    abs_err: f64,
    updates: u64,
}

impl State {
    fn new(period: usize) -> Self {
        State {
            level: 0.0,
            trend: 0.0,
            season: vec![0.0; period],
            last_bucket: None,
            abs_err: 0.0,
            updates: 0,
        }
    }

    fn seasonal(&self, bucket: i64) -> f64 {
        if self.season.is_empty() {
            0.0
        } else {
            self.season[bucket.rem_euclid(self.season.len() as i64) as usize]
        }
    }

    /// One smoothing step with the mean `y` of `bucket`; returns the squared
    /// one-step error (0 for the first).
    fn step(&mut self, bucket: i64, y: f64, p: &Params) -> f64 {
        let Some(last) = self.last_bucket else {
            self.level = y;
            self.last_bucket = Some(bucket);
            self.updates = 1;
            return 0.0;
        };
        // Buckets skipped by a gap: let the level follow its damped trend.
        let skipped = (bucket - last - 1).clamp(0, MAX_SEASON as i64);
        for _ in 0..skipped {
            self.level += PHI * self.trend;
            self.trend *= PHI;
        }
        let s = self.seasonal(bucket);
        let pred = self.level + PHI * self.trend + s;
        let err = y - pred;
        let level = p.alpha * (y - s) + (1.0 - p.alpha) * (self.level + PHI * self.trend);
        self.trend = p.beta * (level - self.level) + (1.0 - p.beta) * PHI * self.trend;
        self.level = level;
        if !self.season.is_empty() {
            let i = bucket.rem_euclid(self.season.len() as i64) as usize;
            self.season[i] = p.gamma * (y - level) + (1.0 - p.gamma) * s;
        }
        self.abs_err = if self.updates == 1 {
            err.abs()
        } else {
            self.abs_err + ERROR_SMOOTHING * (err.abs() - self.abs_err)
        };
        self.last_bucket = Some(bucket);
        self.updates += 1;
        err * err
    }

    /// The point forecast for `bucket` (after the last update).
    fn point(&self, bucket: i64) -> f64 {
        let k = self.last_bucket.map_or(1, |l| (bucket - l).max(1));
        // Sum of PHI^i for i = 1..=k, in closed form.
        let damp = PHI * (1.0 - PHI.powi(k.min(100_000) as i32)) / (1.0 - PHI);
        self.level + damp * self.trend + self.seasonal(bucket)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Params {
    alpha: f64,
    beta: f64,
    gamma: f64,
}

/// Additive Holt-Winters on bucket means, season length from the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoltWinters {
    step_ms: i64,
    bucket_ms: i64,
    params: Params,
    state: State,
    current: Option<i64>,
    sum: f64,
    count: u32,
    last_ts: Option<TimestampMs>,
}

impl HoltWinters {
    /// A fresh model (no season until the detector finds one).
    pub fn new(ctx: SeriesContext) -> Self {
        HoltWinters {
            step_ms: ctx.step_ms.max(1),
            bucket_ms: ctx.step_ms.max(FINE_BUCKET_MS),
            params: Params {
                alpha: 0.15,
                beta: 0.15 * BETA_OVER_ALPHA,
                gamma: 0.2,
            },
            state: State::new(0),
            current: None,
            sum: 0.0,
            count: 0,
            last_ts: None,
        }
    }

    /// The season length in buckets (0: none).
    pub fn period(&self) -> usize {
        self.state.season.len()
    }

    /// Whether deserialised state has the shape this code expects.
    pub(crate) fn is_consistent(&self) -> bool {
        self.bucket_ms > 0 && self.state.season.len() <= MAX_SEASON
    }

    /// Fits the parameters on `history` (bucket means, the last ending at
    /// bucket `last_bucket`) for a season of `period` buckets; returns the
    /// best parameters and the state after running through the history.
    fn fit(history: &[f64], last_bucket: i64, period: usize) -> (Params, State) {
        let first_bucket = last_bucket - history.len() as i64 + 1;
        let mut best: Option<(f64, Params, State)> = None;
        for &alpha in &ALPHAS {
            for &gamma in if period > 0 {
                &GAMMAS[..]
            } else {
                &GAMMAS[..1]
            } {
                let p = Params {
                    alpha,
                    beta: alpha * BETA_OVER_ALPHA,
                    gamma: if period > 0 { gamma } else { 0.0 },
                };
                let mut st = State::new(period);
                // Start the season from the first cycle's deviations from its mean.
                if period > 0 && history.len() >= period {
                    let first = &history[..period];
                    let (sum, cnt) = first
                        .iter()
                        .filter(|v| v.is_finite())
                        .fold((0.0, 0.0), |(s, c), v| (s + v, c + 1.0));
                    if cnt > 0.0 {
                        let mean = sum / cnt;
                        for (i, v) in first.iter().enumerate() {
                            if v.is_finite() {
                                let b = first_bucket + i as i64;
                                st.season[b.rem_euclid(period as i64) as usize] = v - mean;
                            }
                        }
                    }
                }
                let mut sse = 0.0;
                for (i, &y) in history.iter().enumerate() {
                    if y.is_finite() {
                        let e2 = st.step(first_bucket + i as i64, y, &p);
                        if i >= period {
                            sse += e2;
                        }
                    }
                }
                if best.as_ref().is_none_or(|b| sse < b.0) && sse.is_finite() {
                    best = Some((sse, p, st));
                }
            }
        }
        match best {
            Some((_, p, st)) => (p, st),
            None => (
                Params {
                    alpha: 0.15,
                    beta: 0.015,
                    gamma: 0.0,
                },
                State::new(0),
            ),
        }
    }
}

impl Model for HoltWinters {
    fn name(&self) -> &'static str {
        "holt-winters"
    }

    fn update(&mut self, ts: TimestampMs, value: f64) {
        let Some(v) = usable(value) else { return };
        if self.last_ts.is_some_and(|l| ts <= l) {
            return;
        }
        self.last_ts = Some(ts);
        let b = ts.div_euclid(self.bucket_ms);
        if let Some(c) = self.current
            && c != b
        {
            if self.count > 0 {
                let mean = self.sum / self.count as f64;
                let p = self.params;
                self.state.step(c, mean, &p);
            }
            self.sum = 0.0;
            self.count = 0;
        }
        self.current = Some(b);
        self.sum += v;
        self.count += 1;
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
        let partial = (self.count > 0).then(|| self.sum / self.count as f64);
        let sigma1 = MAD_TO_SIGMA * self.state.abs_err;
        for h in 0..rows(horizon, levels, out) {
            let ts = start.saturating_add((h as i64).saturating_mul(self.step_ms));
            let b = ts.div_euclid(self.bucket_ms);
            let row = &mut out[h * n..(h + 1) * n];
            if self.state.last_bucket.is_none() {
                // Not one bucket complete yet: the mean so far, no spread.
                normal_row(partial.unwrap_or(0.0), 0.0, z, row);
                continue;
            }
            let k = self.state.last_bucket.map_or(1, |l| (b - l).max(1)) as f64;
            let center = self.state.point(b);
            let sigma =
                sigma1 * (1.0 + (k.min(MAX_WIDEN) - 1.0) * self.params.alpha.powi(2)).sqrt();
            normal_row(center, sigma, z, row);
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 8 * self.state.season.len()
    }

    fn season_changed(&mut self, season: &Season, recent: &[f64]) {
        if season.bucket_ms != self.bucket_ms || recent.is_empty() {
            return;
        }
        let period = season
            .period_buckets
            .filter(|&p| p <= MAX_SEASON && 2 * p <= recent.len())
            .unwrap_or(0);
        let last_bucket = season.history_end.div_euclid(self.bucket_ms) - 1;
        let (params, state) = HoltWinters::fit(recent, last_bucket, period);
        // The refit state must end where the online one does (the last bucket
        // with data; a gap at the end of the history is missing in both).
        if self.state.last_bucket.is_none() || state.last_bucket == self.state.last_bucket {
            self.params = params;
            self.state = state;
        }
    }
}
