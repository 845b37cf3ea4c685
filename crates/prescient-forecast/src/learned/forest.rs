//! The trained model: one set of trees for all series, with a quantile head
//! per level, and its serialised form.

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use super::LearnedError;
use super::features::{
    DayWindow, History, N_FEATURES, OriginFeatures, SliceHistory, Spans, baseline, check_step,
    fill_row, origin_features,
};
use super::gbt::Tree;
use crate::stats::normal_quantile;

/// Version of [`QuantileForest::to_bytes`]'s format; bump it whenever the
/// serialised structure or the meaning of a feature changes.
pub const FOREST_FORMAT_VERSION: u32 = 1;

/// What every serialised forest starts with, so that other bytes are told
/// apart from a forest of an unknown version.
const MAGIC: [u8; 4] = *b"PRQF";

/// The most quantile levels a forest is trained at.
pub const MAX_LEVELS: usize = 32;

/// How a forest was trained (for reports and the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainInfo {
    /// Series given to the trainer.
    pub series: usize,
    /// Training rows (origin, horizon) the trees were fitted on.
    pub rows: usize,
    /// The seed.
    pub seed: u64,
    /// The latest bucket start any training target came from (ms), if any:
    /// what the model has seen, for checking causality in replays.
    pub latest_target_ms: Option<TimestampMs>,
}

/// Gradient-boosted quantile trees trained across series (see
/// [`train`](super::train)); forecasts with [`QuantileForest::predict`], or
/// per series through [`LearnedModel`](super::LearnedModel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantileForest {
    pub(crate) spans: Spans,
    pub(crate) levels: Vec<f64>,
    /// Offset per level added to the baseline (the series' own quantile of
    /// its last day), before the trees.
    pub(crate) init: Vec<f32>,
    pub(crate) trees: Vec<Tree>,
    pub(crate) info: TrainInfo,
}

impl QuantileForest {
    /// The model's step: the series is forecast as means over buckets of
    /// this length.
    pub fn step_ms(&self) -> i64 {
        self.spans.step_ms
    }

    /// The levels the forest was trained at (others are interpolated).
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// Number of trees (boosting rounds).
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// How it was trained.
    pub fn info(&self) -> &TrainInfo {
        &self.info
    }

    /// Buckets of history a series needs for every feature (one week).
    pub fn history_len(&self) -> usize {
        self.spans.history_len()
    }

    /// Quantiles at [`levels`](Self::levels) of the mean over the bucket
    /// `horizon` buckets after the origin (at least 1), from `history`: bucket
    /// means at the forest's step, oldest first, ending with the origin
    /// bucket, which starts at `origin_start_ms`; NaN for missing buckets.
    /// `out` gets one value per level (as many as fit), non-decreasing and
    /// at least 0. With no positive mean over the last day there is nothing
    /// to scale by: the forecast is the origin's value (0 if missing).
    pub fn predict(
        &self,
        history: &[f64],
        origin_start_ms: TimestampMs,
        horizon: usize,
        out: &mut [f64],
    ) {
        let buckets: Vec<f32> = history.iter().map(|&v| v as f32).collect();
        let h = SliceHistory {
            buckets: &buckets,
            origin: buckets.len().saturating_sub(1),
        };
        let day = DayWindow::of(&h, &self.spans);
        let origin = origin_features(&h, &self.spans, &day.sorted);
        let k = horizon.max(1);
        let step = self.spans.step_ms;
        let target_ms = origin_start_ms.saturating_add(step.saturating_mul(k as i64));
        let mut q = [0.0; MAX_LEVELS];
        self.quantiles(&h, &day.sorted, &origin, k, target_ms, &mut q);
        for (o, v) in out.iter_mut().zip(&q[..self.levels.len()]) {
            *o = *v;
        }
    }

    /// Quantiles at the trained levels into `out[..levels]`, sorted, in the
    /// series' units. `day` is the last day's values, sorted.
    pub(crate) fn quantiles<H: History>(
        &self,
        h: &H,
        day: &[f32],
        origin: &Result<OriginFeatures, f32>,
        k: usize,
        target_ms: i64,
        out: &mut [f64; MAX_LEVELS],
    ) {
        let n = self.levels.len();
        let origin = match origin {
            Ok(o) => o,
            Err(last) => {
                let v = if last.is_finite() {
                    f64::from(*last).max(0.0)
                } else {
                    0.0
                };
                out[..n].fill(v);
                return;
            }
        };
        let mut row = [0.0f32; N_FEATURES];
        fill_row(h, &self.spans, origin, k, target_ms, &mut row);
        let mut acc = [0.0f32; MAX_LEVELS];
        baseline(day, origin.scale, &self.levels, &mut acc[..n]);
        for (a, i) in acc[..n].iter_mut().zip(&self.init) {
            *a += i;
        }
        Tree::accumulate(&self.trees, &row, &mut acc[..n]);
        // Non-crossing: the heads are fitted separately, so sort them
        // (rearrangement never raises the summed pinball loss).
        acc[..n].sort_unstable_by(f32::total_cmp);
        for (o, a) in out[..n].iter_mut().zip(&acc[..n]) {
            *o = (f64::from(*a) * origin.scale).max(0.0);
        }
    }

    /// Serialises the forest (postcard, behind a magic number and
    /// [`FOREST_FORMAT_VERSION`]); stored once, not per series.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LearnedError> {
        let mut out = MAGIC.to_vec();
        let body = postcard::to_stdvec(&(FOREST_FORMAT_VERSION, self))
            .map_err(|e| LearnedError::Encode(e.to_string()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads what [`to_bytes`](Self::to_bytes) wrote, refusing other bytes,
    /// other versions and forests that would not be safe to evaluate.
    pub fn from_bytes(bytes: &[u8]) -> Result<QuantileForest, LearnedError> {
        let body = bytes.strip_prefix(&MAGIC).ok_or(LearnedError::NotAForest)?;
        let (version, rest) = postcard::take_from_bytes::<u32>(body)
            .map_err(|e| LearnedError::Decode(e.to_string()))?;
        if version != FOREST_FORMAT_VERSION {
            return Err(LearnedError::UnsupportedVersion {
                what: "forest",
                found: version,
                supported: FOREST_FORMAT_VERSION,
            });
        }
        let forest: QuantileForest =
            postcard::from_bytes(rest).map_err(|e| LearnedError::Decode(e.to_string()))?;
        forest.check().map_err(LearnedError::Corrupt)?;
        Ok(forest)
    }

    /// Whether the forest is consistent (what deserialisation cannot tell).
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(why) = check_step(self.spans.step_ms) {
            return Err(why);
        }
        if self.spans != Spans::new(self.spans.step_ms) {
            return Err("feature spans do not match the step".into());
        }
        let n = self.levels.len();
        if n == 0 || n > MAX_LEVELS {
            return Err(format!("{n} levels (1 to {MAX_LEVELS})"));
        }
        if !self.levels.iter().all(|l| *l > 0.0 && *l < 1.0)
            || self.levels.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(format!(
                "levels {:?} are not strictly increasing in (0, 1)",
                self.levels
            ));
        }
        if self.init.len() != n || !self.init.iter().all(|v| v.is_finite()) {
            return Err("bad starting values".into());
        }
        for (i, t) in self.trees.iter().enumerate() {
            t.check(N_FEATURES, n)
                .map_err(|e| format!("tree {i}: {e}"))?;
        }
        Ok(())
    }
}

/// Linear interpolation of quantiles between levels in normal-score space
/// (`normal_quantile(level)`), so that tails extrapolate like a normal's.
#[derive(Debug, Clone)]
pub(crate) struct LevelMap {
    /// Per requested level: the lower trained index and the weight of the
    /// next one (outside [0, 1] when extrapolating).
    pub at: Vec<(usize, f64)>,
}

impl LevelMap {
    pub fn new(trained: &[f64], wanted: &[f64]) -> LevelMap {
        let z: Vec<f64> = trained.iter().map(|&p| normal_quantile(p)).collect();
        let at = wanted
            .iter()
            .map(|&p| {
                if z.len() < 2 {
                    return (0, 0.0);
                }
                let p = if p.is_finite() { p } else { 0.5 };
                let zp = normal_quantile(p.clamp(1e-9, 1.0 - 1e-9));
                // The segment containing zp, or the outermost one.
                let i = trained
                    .partition_point(|&t| t <= p)
                    .saturating_sub(1)
                    .min(z.len() - 2);
                let w = (zp - z[i]) / (z[i + 1] - z[i]);
                (i, w)
            })
            .collect();
        LevelMap { at }
    }

    /// Quantiles at the wanted levels from sorted ones at the trained
    /// levels: non-decreasing (for increasing levels) and >= 0.
    #[inline]
    pub fn apply(&self, q: &[f64], out: &mut [f64]) {
        for (o, &(i, w)) in out.iter_mut().zip(&self.at) {
            let v = match (q.get(i), q.get(i + 1)) {
                (Some(a), Some(b)) => a + w * (b - a),
                (Some(a), None) => *a,
                _ => 0.0,
            };
            *o = v.max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_map_hits_trained_levels_and_extrapolates_monotonically() {
        let trained = [0.1, 0.5, 0.9];
        let q = [1.0, 2.0, 4.0];
        let wanted = [0.01, 0.1, 0.3, 0.5, 0.9, 0.99, 0.999];
        let m = LevelMap::new(&trained, &wanted);
        let mut out = [0.0; 7];
        m.apply(&q, &mut out);
        assert!((out[1] - 1.0).abs() < 1e-12);
        assert!((out[3] - 2.0).abs() < 1e-12);
        assert!((out[4] - 4.0).abs() < 1e-12);
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
        assert!(out[0] >= 0.0 && out[0] < 1.0);
        assert!(out[5] > 4.0 && out[6] > out[5]);
        // One trained level: flat.
        let m = LevelMap::new(&[0.5], &wanted);
        m.apply(&[3.0], &mut out);
        assert!(out.iter().all(|&v| v == 3.0));
    }
}
