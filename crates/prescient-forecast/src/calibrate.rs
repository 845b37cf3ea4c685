//! Calibration: each quantile's realised coverage should track its nominal
//! level, also after the workload changes behaviour.
//!
//! Two mechanisms, because one step ahead and a day ahead are different
//! problems:
//!
//! - **One step ahead: online quantile tracking** (adaptive conformal
//!   inference in value space, the "P" of conformal PID control, Angelopoulos
//!   et al. 2023). Per level `tau`, an offset `theta` in units of the
//!   series' volatility scale is added to the ensemble's quantile, and after
//!   each observation `theta += eta * (miss - (1 - tau))`, where `miss` is 1
//!   when the observation exceeded the calibrated quantile. Whatever the
//!   base forecast does, the long-run miss rate is then `1 - tau`, and after
//!   a change in behaviour the offset moves within a few dozen misses.
//!   Levels beyond the fixed ones (a policy's SLO quantiles) are tracked
//!   too, once registered.
//! - **Hours and a day ahead: split conformal on past forecasts' errors.**
//!   The engine checks a dense sample of its own ensemble medians at many
//!   horizons (see `forecaster`); each check gives the score
//!   `actual - median`, in the series' unit. The calibrated `tau` quantile
//!   is the median plus the `tau` quantile of the band's recent scores,
//!   weighted by recency (half-life two days, so a changed workload is
//!   calibrated anew within days). The median itself moves by the median
//!   score: a persistent bias (a level that keeps rising) is corrected. A day-ahead error is
//!   only known a day later, and consecutive errors of one forecast are
//!   strongly correlated, so step-wise tracking would chase noise; an
//!   empirical quantile of many past errors does not, and it serves any
//!   level asked for. Anchoring on the median rather than on each level's
//!   own quantile is deliberate: on the Alibaba trace, day-ahead spreads
//!   that vary with the time of day (the models' own) scored worse than one
//!   spread per horizon band. So did scores divided by the one-step
//!   volatility or by the level (tried: coverage95 0.87-0.93 against
//!   0.94-0.96 in the series' unit).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::ensemble::Band;
use crate::model::DEFAULT_LEVELS;

/// Step of the one-step offset, in units of the volatility scale.
const ETA: f64 = 0.05;
/// Bound of the one-step offset, in units of the volatility scale.
const MAX_THETA: f64 = 100.0;
/// Scores kept per band: four days of checks (see `forecaster`: 48 sets a
/// day, 6 checks of each band a set).
const SCORES: usize = 1152;
/// Recency half-life of the scores, in scores: two days of checks.
const SCORES_HALF_LIFE: f64 = 576.0;
/// Fewer scores than this: no horizon calibration yet.
const MIN_SCORES: usize = 24;
/// At most this many extra levels are tracked one step ahead.
pub const MAX_EXTRA_LEVELS: usize = 16;

/// A level tracked one step ahead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    /// The quantile level.
    pub level: f64,
    /// The offset in units of the volatility scale.
    pub theta: f64,
    /// Observations scored and how many fell above the quantile.
    pub seen: u64,
    /// How many of them fell above.
    pub misses: u64,
}

impl Tracker {
    fn new(level: f64) -> Self {
        Tracker {
            level,
            theta: 0.0,
            seen: 0,
            misses: 0,
        }
    }

    fn update(&mut self, actual: f64, issued: f64) {
        let miss = actual > issued;
        self.theta = (self.theta + ETA * (f64::from(miss as u8) - (1.0 - self.level)))
            .clamp(-MAX_THETA, MAX_THETA);
        self.seen += 1;
        self.misses += miss as u64;
    }
}

/// The calibration state of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibrator {
    /// The fixed levels' trackers, then the extra ones.
    trackers: Vec<Tracker>,
    /// `[band - 1]`: recent scores of the hours and day bands.
    scores: Vec<VecDeque<f32>>,
}

impl Default for Calibrator {
    fn default() -> Self {
        Self::new()
    }
}

impl Calibrator {
    /// Fresh calibration: no offsets.
    pub fn new() -> Self {
        Calibrator {
            trackers: DEFAULT_LEVELS.iter().map(|&l| Tracker::new(l)).collect(),
            scores: vec![VecDeque::new(); 2],
        }
    }

    /// Whether deserialised state has the expected shape.
    pub(crate) fn is_consistent(&self) -> bool {
        self.trackers.len() >= DEFAULT_LEVELS.len()
            && self.trackers.len() <= DEFAULT_LEVELS.len() + MAX_EXTRA_LEVELS
            && self
                .trackers
                .iter()
                .zip(DEFAULT_LEVELS)
                .all(|(t, l)| t.level == l)
            && self.trackers.iter().all(|t| t.level > 0.0 && t.level < 1.0)
            && self.scores.len() == 2
    }

    /// Every tracked level's state: the fixed levels, then the extra ones.
    pub fn trackers(&self) -> &[Tracker] {
        &self.trackers
    }

    /// Starts tracking `level` one step ahead (no-op when it is already
    /// tracked, outside (0, 1), or the extra levels are full); returns
    /// whether it is tracked now.
    pub fn track(&mut self, level: f64) -> bool {
        if self.position(level).is_some() {
            return true;
        }
        if !(level > 0.0 && level < 1.0)
            || self.trackers.len() >= DEFAULT_LEVELS.len() + MAX_EXTRA_LEVELS
        {
            return false;
        }
        self.trackers.push(Tracker::new(level));
        true
    }

    /// Index of the tracker of `level`.
    pub fn position(&self, level: f64) -> Option<usize> {
        self.trackers.iter().position(|t| t.level == level)
    }

    /// The one-step offset of tracker `i`, in units of scale.
    pub fn theta(&self, i: usize) -> f64 {
        self.trackers.get(i).map_or(0.0, |t| t.theta)
    }

    /// Scores the one-step quantiles issued for this observation
    /// (`issued[i]` for tracker `i`).
    pub fn update_one_step(&mut self, actual: f64, issued: &[f64]) {
        for (t, &q) in self.trackers.iter_mut().zip(issued) {
            t.update(actual, q);
        }
    }

    /// Records a checked median forecast of `band` (hours or day): `score`
    /// is `actual - median`.
    pub fn add_score(&mut self, band: Band, score: f64) {
        let Some(b) = band.index().checked_sub(1) else {
            return;
        };
        if !score.is_finite() {
            return;
        }
        let ring = &mut self.scores[b];
        if ring.len() == SCORES {
            ring.pop_front();
        }
        ring.push_back(score as f32);
    }

    /// Drops the hours and day bands' scores (after a change of behaviour:
    /// errors against the old level would set the new offsets); returns
    /// how many were dropped. Until 24 new ones come in, those
    /// bands are not calibrated. The one-step trackers are kept: they
    /// follow a change within a few dozen steps on their own.
    pub fn forget_horizon(&mut self) -> usize {
        self.scores
            .iter_mut()
            .map(|r| std::mem::take(r).len())
            .sum()
    }

    /// How many scores `band` holds.
    pub fn score_count(&self, band: Band) -> usize {
        band.index()
            .checked_sub(1)
            .map_or(0, |b| self.scores[b].len())
    }

    /// The offsets (in the series' unit) to add to the median forecast in
    /// `band` (hours or day) for each of `levels` (ascending), or `None`
    /// while it has too few scores.
    pub fn horizon_offsets(&self, band: Band, levels: &[f64], out: &mut [f64]) -> bool {
        let Some(b) = band.index().checked_sub(1) else {
            return false;
        };
        let ring = &self.scores[b];
        let n = ring.len();
        if n < MIN_SCORES {
            return false;
        }
        // Sort once, then read every level from the cumulative weights.
        let mut pairs: Vec<(f32, f64)> = ring
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, (-((n - 1 - i) as f64) / SCORES_HALF_LIFE).exp2()))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = pairs.iter().map(|p| p.1).sum();
        for (&level, o) in levels.iter().zip(out.iter_mut()) {
            let threshold = level.clamp(0.0, 1.0) * total;
            let mut acc = 0.0;
            *o = pairs.last().map_or(0.0, |p| p.0 as f64);
            for &(v, w) in &pairs {
                acc += w;
                if acc >= threshold {
                    *o = v as f64;
                    break;
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_reaches_the_nominal_miss_rate() {
        // Base forecast 0 for uniform noise on [0, 1): the offset must
        // climb to the level itself (scale 1).
        let mut c = Calibrator::new();
        let i95 = c.position(0.95).unwrap();
        let mut x: u64 = 12345;
        let (mut seen, mut miss) = (0, 0);
        for t in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let actual = (x % 1_000_000) as f64 / 1e6;
            let issued: Vec<f64> = (0..c.trackers().len()).map(|i| c.theta(i)).collect();
            if t >= 10_000 {
                seen += 1;
                miss += (actual > issued[i95]) as u32;
            }
            c.update_one_step(actual, &issued);
        }
        let rate = miss as f64 / seen as f64;
        assert!((rate - 0.05).abs() < 0.01, "miss rate {rate}");
        assert!((c.theta(i95) - 0.95).abs() < 0.1, "{}", c.theta(i95));
    }

    #[test]
    fn extra_levels_are_tracked_up_to_a_limit() {
        let mut c = Calibrator::new();
        assert!(c.track(0.95)); // already a fixed level
        assert_eq!(c.trackers().len(), DEFAULT_LEVELS.len());
        assert!(c.track(0.9999));
        assert!(!c.track(1.0) && !c.track(f64::NAN));
        for i in 0..100 {
            c.track(0.5 + i as f64 * 1e-4);
        }
        assert_eq!(c.trackers().len(), DEFAULT_LEVELS.len() + MAX_EXTRA_LEVELS);
    }

    #[test]
    fn horizon_offsets_are_recent_weighted_score_quantiles() {
        let mut c = Calibrator::new();
        let mut off = [0.0; 3];
        assert!(!c.horizon_offsets(Band::Day, &[0.05, 0.5, 0.95], &mut off));
        for i in 0..SCORES {
            c.add_score(Band::Day, i as f64 / SCORES as f64);
        }
        assert!(c.horizon_offsets(Band::Day, &[0.05, 0.5, 0.95], &mut off));
        // Recent scores are the larger ones and weigh more.
        assert!(off[1] > 0.5, "{off:?}");
        assert!(off[0] < off[1] && off[1] < off[2]);
        assert!(!c.horizon_offsets(Band::Hours, &[0.5], &mut off));
        c.add_score(Band::Step, 1.0); // ignored: no scores for one step
        c.add_score(Band::Day, f64::NAN); // ignored
        assert_eq!(c.score_count(Band::Step), 0);
        assert_eq!(c.score_count(Band::Day), SCORES);
    }
}
