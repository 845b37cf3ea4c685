//! Training: series in, forest out.
//!
//! Each series is resampled to the model's step, then rows are drawn:
//! an origin (a bucket with data, the history up to it), a horizon drawn
//! log-uniformly from 1 to `max_horizon` buckets, and the target, the bucket
//! `horizon` after the origin, divided by the series' scale at the origin.
//! Only the past of each origin enters its features, so a model trained on
//! series cut at some time has seen nothing after it.

use prescient_core::TimestampMs;
use rayon::prelude::*;

use super::LearnedError;
use super::features::{
    Bucketer, DayWindow, N_FEATURES, SliceHistory, Spans, baseline, check_step, fill_row,
    origin_features,
};
use super::forest::{MAX_LEVELS, QuantileForest, TrainInfo};
use super::gbt::{BoostParams, MAX_DEPTH, boost};
use super::rng::SplitMix64;
use crate::DEFAULT_LEVELS;

/// The longest series the trainer accepts, in buckets of the model's step
/// (about 100 years at 5 minutes), so a wild step cannot exhaust memory.
const MAX_SERIES_BUCKETS: i64 = 1 << 23;

/// Scaled targets are clipped to +-this.
const MAX_TARGET: f64 = 1e4;

/// One series to learn from: equally spaced observations, NaN for gaps.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingSeries {
    /// Time between observations (each value is the mean over its step).
    pub step_ms: i64,
    /// Timestamp of the first value.
    pub start_ms: TimestampMs,
    /// The observations; NaN (or any non-finite value) for a gap.
    pub values: Vec<f64>,
}

impl TrainingSeries {
    /// The part of the series that starts before `end_ms` (for training on
    /// the past of a replay only).
    pub fn before(&self, end_ms: TimestampMs) -> TrainingSeries {
        let n = if end_ms <= self.start_ms || self.step_ms <= 0 {
            0
        } else {
            let span = end_ms.saturating_sub(self.start_ms);
            // Values whose step starts before end_ms (a ceiling division).
            let steps = span / self.step_ms + i64::from(span % self.step_ms != 0);
            usize::try_from(steps)
                .unwrap_or(usize::MAX)
                .min(self.values.len())
        };
        TrainingSeries {
            step_ms: self.step_ms,
            start_ms: self.start_ms,
            values: self.values[..n].to_vec(),
        }
    }

    /// Bucket means at `step_ms`, oldest first, and the first bucket's index
    /// (time / step); NaN for buckets without data.
    pub(crate) fn buckets(&self, step_ms: i64) -> (i64, Vec<f32>) {
        let mut b = Bucketer::new();
        let mut first: Option<i64> = None;
        let mut out: Vec<f32> = Vec::new();
        for (i, &v) in self.values.iter().enumerate() {
            let ts = self
                .start_ms
                .saturating_add(self.step_ms.saturating_mul(i as i64));
            b.push(ts, v, self.step_ms, step_ms, usize::MAX, |idx, mean| {
                let f = *first.get_or_insert(idx);
                let j = usize::try_from(idx - f).unwrap_or(0);
                if j >= out.len() {
                    out.resize(j + 1, f32::NAN);
                }
                out[j] = mean;
            });
        }
        (first.unwrap_or(0), out)
    }
}

/// How to train. `Default` is what the benchmarks measure.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// The model's step (must divide an hour, at least a minute): series are
    /// resampled to means over buckets of this length.
    pub step_ms: i64,
    /// Quantile levels to fit, strictly increasing in (0, 1), at most 32;
    /// others are interpolated at forecast time.
    pub levels: Vec<f64>,
    /// Longest horizon trained for, in buckets (288 = a day at 5 minutes).
    pub max_horizon: usize,
    /// Horizons drawn per sampled origin (at least; origins with a day of
    /// history may get more, see `long_history_share`).
    pub horizons_per_origin: usize,
    /// Share of the rows reserved for origins with at least a day of history
    /// before them, the only ones that show what yesterday says about
    /// tomorrow. Traces of a day (most public ones) have none, so without a
    /// reserve the few long series would be a percent of the rows. When they
    /// have fewer origins than that, each gets up to 16 horizons; rows left
    /// over go to the others.
    pub long_history_share: f64,
    /// At most this many training rows (origins are subsampled to fit).
    pub max_rows: usize,
    /// Origins need at least this many buckets up to and including them.
    pub min_history: usize,
    /// Boosting rounds (trees).
    pub rounds: usize,
    /// Shrinkage of each tree's leaves.
    pub learning_rate: f64,
    /// Depth of each tree.
    pub max_depth: usize,
    /// Fewest rows in a leaf.
    pub min_leaf: usize,
    /// Bins per feature (at most 255).
    pub max_bins: usize,
    /// Share of the rows each tree is grown on.
    pub row_subsample: f64,
    /// Everything random derives from this.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            step_ms: 300_000,
            levels: DEFAULT_LEVELS.to_vec(),
            max_horizon: 288,
            horizons_per_origin: 2,
            long_history_share: 0.25,
            max_rows: 1_000_000,
            min_history: 1,
            rounds: 120,
            learning_rate: 0.1,
            max_depth: 6,
            min_leaf: 100,
            max_bins: 64,
            row_subsample: 0.5,
            seed: 0x5EED,
        }
    }
}

impl TrainConfig {
    fn check(&self) -> Result<(), LearnedError> {
        let bad = |field: &'static str, reason: String| {
            Err(LearnedError::InvalidConfig { field, reason })
        };
        if let Some(why) = check_step(self.step_ms) {
            return bad("step_ms", why);
        }
        let l = &self.levels;
        if l.is_empty() || l.len() > MAX_LEVELS {
            return bad("levels", format!("{} levels: 1 to {MAX_LEVELS}", l.len()));
        }
        if !l.iter().all(|&v| v > 0.0 && v < 1.0) || l.windows(2).any(|w| w[0] >= w[1]) {
            return bad(
                "levels",
                format!("{l:?}: must be strictly increasing inside (0, 1)"),
            );
        }
        let positive = [
            ("max_horizon", self.max_horizon),
            ("horizons_per_origin", self.horizons_per_origin),
            ("max_rows", self.max_rows),
            ("min_history", self.min_history),
            ("min_leaf", self.min_leaf),
        ];
        for (field, v) in positive {
            if v == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if self.max_depth == 0 || self.max_depth > usize::from(MAX_DEPTH) {
            return bad("max_depth", format!("{}: 1 to {MAX_DEPTH}", self.max_depth));
        }
        if !(2..=255).contains(&self.max_bins) {
            return bad("max_bins", format!("{}: 2 to 255", self.max_bins));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad(
                "learning_rate",
                format!("{}: in (0, 1]", self.learning_rate),
            );
        }
        if !(0.0..=1.0).contains(&self.long_history_share) {
            return bad(
                "long_history_share",
                format!("{}: in [0, 1]", self.long_history_share),
            );
        }
        if !(self.row_subsample > 0.0 && self.row_subsample <= 1.0) {
            return bad(
                "row_subsample",
                format!("{}: in (0, 1]", self.row_subsample),
            );
        }
        Ok(())
    }
}

/// Training rows: features (row-major), scaled targets, and where boosting
/// starts for each (the series' own quantiles of its last day, per level).
#[derive(Debug, Clone)]
pub struct TrainingSet {
    x: Vec<f32>,
    y: Vec<f32>,
    base: Vec<f32>,
    levels: Vec<f64>,
    series: usize,
    latest_target_ms: Option<TimestampMs>,
}

impl TrainingSet {
    /// Resamples and featurises the series (the part of training before the
    /// trees; deterministic for a seed).
    pub fn build(
        series: &[TrainingSeries],
        config: &TrainConfig,
    ) -> Result<TrainingSet, LearnedError> {
        config.check()?;
        let spans = Spans::new(config.step_ms);
        for (index, s) in series.iter().enumerate() {
            let reason = if s.step_ms <= 0 {
                Some(format!("step {} ms: must be positive", s.step_ms))
            } else {
                let span = (s.values.len() as i64).saturating_mul(s.step_ms) / config.step_ms;
                (span > MAX_SERIES_BUCKETS).then(|| {
                    format!(
                        "{} values of {} ms are {span} buckets of the model's step, over the limit of {MAX_SERIES_BUCKETS}",
                        s.values.len(),
                        s.step_ms
                    )
                })
            };
            if let Some(reason) = reason {
                return Err(LearnedError::InvalidSeries { index, reason });
            }
        }
        let resampled: Vec<(i64, Vec<f32>)> = series
            .par_iter()
            .map(|s| s.buckets(config.step_ms))
            .collect();
        // Origins: buckets with data and enough history, without and with
        // a day of it.
        let (mut short, mut long) = (0usize, 0usize);
        for (_, b) in &resampled {
            for (i, v) in b.iter().enumerate() {
                if i + 1 >= config.min_history && v.is_finite() {
                    if i >= spans.day {
                        long += 1;
                    } else {
                        short += 1;
                    }
                }
            }
        }
        let long_budget = config.long_history_share * config.max_rows as f64;
        let long_plan = Draw::plan(long, long_budget, config.horizons_per_origin);
        let short_budget = config.max_rows as f64 - long_plan.expected_rows(long);
        let short_plan = Draw::plan(short, short_budget, config.horizons_per_origin);
        let per_series: Vec<Rows> = resampled
            .par_iter()
            .enumerate()
            .map(|(i, (first, b))| {
                let seed = config.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                featurise(*first, b, &spans, config, [short_plan, long_plan], seed)
            })
            .collect();
        let mut set = TrainingSet {
            x: Vec::new(),
            y: Vec::new(),
            base: Vec::new(),
            levels: config.levels.clone(),
            series: series.len(),
            latest_target_ms: None,
        };
        for rows in per_series {
            set.x.extend_from_slice(&rows.x);
            set.y.extend_from_slice(&rows.y);
            set.base.extend_from_slice(&rows.base);
            set.latest_target_ms = set.latest_target_ms.max(rows.latest);
        }
        // Sampling is by probability: trim a (rare) overshoot to the cap.
        if set.y.len() > config.max_rows {
            let mut rng = SplitMix64::new(config.seed ^ 0x7121);
            let n = set.y.len();
            let mut keep: Vec<usize> = (0..n).collect();
            // Partial Fisher-Yates: a uniform subset, then back in order.
            for i in 0..config.max_rows {
                let j = i + (rng.next_u64() % (n - i) as u64) as usize;
                keep.swap(i, j);
            }
            keep.truncate(config.max_rows);
            keep.sort_unstable();
            let x = keep
                .iter()
                .flat_map(|&i| set.x[i * N_FEATURES..(i + 1) * N_FEATURES].iter().copied())
                .collect();
            let y = keep.iter().map(|&i| set.y[i]).collect();
            let k = set.levels.len();
            let base = keep
                .iter()
                .flat_map(|&i| set.base[i * k..(i + 1) * k].iter().copied())
                .collect();
            set.x = x;
            set.y = y;
            set.base = base;
        }
        Ok(set)
    }

    /// Number of training rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Fits the trees.
    pub fn fit(&self, config: &TrainConfig) -> Result<QuantileForest, LearnedError> {
        config.check()?;
        if config.levels != self.levels {
            return Err(LearnedError::InvalidConfig {
                field: "levels",
                reason: format!(
                    "{:?}: the training set was built for {:?}",
                    config.levels, self.levels
                ),
            });
        }
        if self.y.len() < 2 * config.min_leaf.max(1) {
            return Err(LearnedError::NotEnoughData {
                rows: self.y.len(),
                needed: 2 * config.min_leaf.max(1),
            });
        }
        let params = BoostParams {
            levels: config.levels.clone(),
            rounds: config.rounds,
            learning_rate: config.learning_rate,
            max_depth: config.max_depth,
            min_leaf: config.min_leaf,
            max_bins: config.max_bins,
            row_subsample: config.row_subsample,
            seed: config.seed,
        };
        let boosted = boost(&self.x, &self.y, &self.base, N_FEATURES, &params);
        let forest = QuantileForest {
            spans: Spans::new(config.step_ms),
            levels: config.levels.clone(),
            init: boosted.init,
            trees: boosted.trees,
            info: TrainInfo {
                series: self.series,
                rows: self.y.len(),
                seed: config.seed,
                latest_target_ms: self.latest_target_ms,
            },
        };
        // What training built is valid by construction; checking costs
        // microseconds and keeps the promise `from_bytes` makes.
        forest.check().map_err(LearnedError::Corrupt)?;
        Ok(forest)
    }
}

/// Trains a forest on `series` (deterministic for `config.seed`).
pub fn train(
    series: &[TrainingSeries],
    config: &TrainConfig,
) -> Result<QuantileForest, LearnedError> {
    TrainingSet::build(series, config)?.fit(config)
}

/// Most horizons drawn for one origin.
const MAX_HORIZONS_PER_ORIGIN: usize = 16;

/// How to draw rows from a class of origins: keep each with probability
/// `keep`, then draw `horizons` horizons for it.
#[derive(Debug, Clone, Copy)]
struct Draw {
    keep: f64,
    horizons: usize,
}

impl Draw {
    /// About `budget` rows from `origins` origins.
    fn plan(origins: usize, budget: f64, min_horizons: usize) -> Draw {
        if origins == 0 || budget <= 0.0 {
            return Draw {
                keep: 0.0,
                horizons: min_horizons,
            };
        }
        let per_origin = (budget / origins as f64).ceil() as usize;
        let horizons = per_origin.clamp(min_horizons, MAX_HORIZONS_PER_ORIGIN.max(min_horizons));
        Draw {
            keep: (budget / (origins * horizons) as f64).min(1.0),
            horizons,
        }
    }

    fn expected_rows(&self, origins: usize) -> f64 {
        self.keep * (origins * self.horizons) as f64
    }
}

/// Training rows of one series.
struct Rows {
    x: Vec<f32>,
    y: Vec<f32>,
    base: Vec<f32>,
    latest: Option<i64>,
}

/// Rows of one resampled series, drawn by `plans[0]` for origins with less
/// than a day of history and `plans[1]` for the others.
fn featurise(
    first: i64,
    buckets: &[f32],
    spans: &Spans,
    config: &TrainConfig,
    plans: [Draw; 2],
    seed: u64,
) -> Rows {
    let mut rng = SplitMix64::new(seed);
    let mut out = Rows {
        x: Vec::new(),
        y: Vec::new(),
        base: Vec::new(),
        latest: None,
    };
    let mut row = [0.0f32; N_FEATURES];
    let mut base = vec![0.0f32; config.levels.len()];
    let log_max = ((config.max_horizon + 1) as f64).ln();
    for (o, v) in buckets.iter().enumerate() {
        let plan = plans[usize::from(o >= spans.day)];
        if o + 1 < config.min_history || !v.is_finite() || rng.next_f64() >= plan.keep {
            continue;
        }
        let h = SliceHistory { buckets, origin: o };
        let day = DayWindow::of(&h, spans);
        let Ok(origin) = origin_features(&h, spans, &day.sorted) else {
            continue;
        };
        baseline(&day.sorted, origin.scale, &config.levels, &mut base);
        for _ in 0..plan.horizons {
            // Log-uniform on [1, max_horizon]: short horizons, where most
            // forecasts are asked, get as many rows as long ones per octave.
            let k = ((rng.next_f64() * log_max).exp() as usize).clamp(1, config.max_horizon);
            let Some(&target) = buckets.get(o + k) else {
                continue;
            };
            if !target.is_finite() {
                continue;
            }
            let target_ms = (first + (o + k) as i64).saturating_mul(spans.step_ms);
            fill_row(&h, spans, &origin, k, target_ms, &mut row);
            out.x.extend_from_slice(&row);
            out.base.extend_from_slice(&base);
            // Clipped: a target ten thousand times the day's mean is an
            // outlier the quantiles do not need, and f32 must not overflow.
            out.y
                .push((f64::from(target) / origin.scale).clamp(-MAX_TARGET, MAX_TARGET) as f32);
            out.latest = out.latest.max(Some(target_ms));
        }
    }
    out
}
