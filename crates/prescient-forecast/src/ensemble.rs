//! The ensemble: per series, horizon band and quantile level, a weight per
//! model from its recent pinball loss (exponential weights, Hedge), with
//! exponential forgetting and a cost for switching.
//!
//! - **Bands.** Which model is best depends on how far ahead one looks: one
//!   step ahead the recent level wins, a day ahead the seasonal profile
//!   does. Weights are kept per [`Band`]: one step, up to 6 hours, beyond.
//!   The one-step band learns from every observation; the others from the
//!   engine's sampled checks of past forecasts (see `forecaster`).
//! - **Losses** are pinball losses divided by the series' volatility scale,
//!   summed with exponential forgetting (half-life 1 day for one step, 3
//!   days beyond, in series time).
//! - **Experts.** Hedge runs over each model and each equal-weight pair of
//!   models (with 4 models, 10 experts), and a model's weight is what its
//!   experts give it. Hedge alone converges on the single best expert; on
//!   our traces two different models are often about equally good a day
//!   ahead (Alibaba memory: the recent level and the seasonal profile) and
//!   their average beats both, which the pairs let Hedge find.
//! - **Hedge** weights are `exp(-beta * (L_e - L_min) / L_mean)` over the
//!   experts' forgotten mean losses `L`: Hedge with a learning rate scaled
//!   by the mean loss, so it means the same on every series whatever its
//!   unit, and shrunk toward uniform while a band has seen few samples.
//! - **Switching cost**, as Autopilot's ML recommender has: the published
//!   weights move to the Hedge target only when the target's expected loss
//!   is lower by more than `SWITCH_COST` (relative) times the share of
//!   weight that would move; otherwise they stay. Weights thus stay put
//!   while models are about as good as each other.

use serde::{Deserialize, Serialize};

use crate::model::DEFAULT_LEVELS;
use crate::stats::pinball;

const L: usize = DEFAULT_LEVELS.len();

/// How far ahead a forecast looks, for weights and calibration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// The next step.
    Step,
    /// More than one step, up to 6 hours.
    Hours,
    /// More than 6 hours.
    Day,
}

/// Six hours, the end of [`Band::Hours`].
pub const HOURS_BAND_MS: i64 = 6 * 3_600_000;

impl Band {
    /// Every band, in order.
    pub const ALL: [Band; 3] = [Band::Step, Band::Hours, Band::Day];

    /// The band of a forecast `ahead_ms` after the last observation of a
    /// series observed every `step_ms`.
    pub fn of(ahead_ms: i64, step_ms: i64) -> Band {
        if ahead_ms <= step_ms.saturating_add(step_ms / 2) {
            Band::Step
        } else if ahead_ms <= HOURS_BAND_MS {
            Band::Hours
        } else {
            Band::Day
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Band::Step => "step",
            Band::Hours => "hours",
            Band::Day => "day",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    fn half_life_ms(self) -> i64 {
        match self {
            Band::Step => 24 * 3_600_000,
            Band::Hours | Band::Day => 3 * 24 * 3_600_000,
        }
    }
}

/// Hedge's learning rate on relative loss differences.
const BETA: f64 = 8.0;
/// Samples at which a band's learning rate reaches half of `BETA`.
const SHRINK_SAMPLES: f64 = 20.0;
/// Relative expected-loss gain per unit of weight moved needed to switch.
const SWITCH_COST: f64 = 0.02;
/// At most this many experts (models and pairs): 10 models.
const MAX_EXPERTS: usize = 55;

/// The experts over `models` models: each model, then each pair `(i, j)`
/// with `i < j`, as the models they average.
fn experts(models: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..models)
        .map(|i| (i, i))
        .chain((0..models).flat_map(move |i| (i + 1..models).map(move |j| (i, j))))
}

fn expert_count(models: usize) -> usize {
    models * (models + 1) / 2
}

/// Per band, level and expert: forgotten losses and the published weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    models: usize,
    /// `[band][level][expert]`.
    loss: Vec<f64>,
    /// `[band]`: forgotten number of samples.
    mass: [f64; 3],
    /// `[band]`: series time of the last update.
    last_ts: [Option<i64>; 3],
    /// `[band][level][expert]`, each `[expert]` slice summing to 1.
    expert_weights: Vec<f64>,
    /// `[band][level][model]`: the models' weights, derived from the experts'.
    weights: Vec<f64>,
}

impl Ensemble {
    /// Uniform weights over `models` models (at most 10; more are
    /// treated as 10).
    pub fn new(models: usize) -> Self {
        let models = models.min(10);
        let e = expert_count(models);
        let mut out = Ensemble {
            models,
            loss: vec![0.0; 3 * L * e],
            mass: [0.0; 3],
            last_ts: [None; 3],
            expert_weights: vec![1.0 / e.max(1) as f64; 3 * L * e],
            weights: vec![0.0; 3 * L * models],
        };
        for band in Band::ALL {
            for l in 0..L {
                out.derive(band, l);
            }
        }
        out
    }

    /// Whether deserialised state has the shape for `models` models.
    pub(crate) fn is_consistent(&self, models: usize) -> bool {
        let e = expert_count(models);
        self.models == models
            && models <= 10
            && self.loss.len() == 3 * L * e
            && self.expert_weights.len() == 3 * L * e
            && self.weights.len() == 3 * L * models
    }

    fn expert_slot(&self, band: Band, level: usize) -> std::ops::Range<usize> {
        let e = expert_count(self.models);
        let start = (band.index() * L + level) * e;
        start..start + e
    }

    fn model_slot(&self, band: Band, level: usize) -> std::ops::Range<usize> {
        let start = (band.index() * L + level) * self.models;
        start..start + self.models
    }

    /// Recomputes the models' weights at one band and level from the experts'.
    fn derive(&mut self, band: Band, level: usize) {
        let er = self.expert_slot(band, level);
        let mr = self.model_slot(band, level);
        self.weights[mr.clone()].iter_mut().for_each(|w| *w = 0.0);
        for ((i, j), &w) in experts(self.models).zip(&self.expert_weights[er]) {
            self.weights[mr.start + i] += 0.5 * w;
            self.weights[mr.start + j] += 0.5 * w;
        }
    }

    /// Forgets every band's losses (after a change of behaviour: what the
    /// models scored before it says little about them after). The weights
    /// in force stay until the losses scored from now on move them; with
    /// few samples Hedge's learning rate is small, so the first scores
    /// after the change count as much as a day of scores did before.
    pub fn forget(&mut self) {
        self.loss.iter_mut().for_each(|l| *l = 0.0);
        self.mass = [0.0; 3];
        self.last_ts = [None; 3];
    }

    /// The weights of every model at fixed level `level` (an index into
    /// [`DEFAULT_LEVELS`]) in `band`.
    pub fn weights(&self, band: Band, level: usize) -> &[f64] {
        &self.weights[self.model_slot(band, level)]
    }

    /// How many samples (forgotten) the band has learnt from.
    pub fn samples(&self, band: Band) -> f64 {
        self.mass[band.index()]
    }

    /// Learns from one observation `actual` at series time `ts`, given what
    /// each model had forecast for it at the fixed levels
    /// (`rows[model * L + level]`); losses are divided by `unit` (the
    /// series' volatility scale).
    pub fn update(&mut self, band: Band, ts: i64, actual: f64, rows: &[f64], unit: f64) {
        let b = band.index();
        let m = self.models;
        let e = expert_count(m);
        if m == 0 || rows.len() < m * L || !actual.is_finite() || unit.is_nan() || unit <= 0.0 {
            return;
        }
        let forget = match self.last_ts[b] {
            Some(last) => crate::stats::decay(ts.saturating_sub(last), band.half_life_ms()),
            None => 1.0,
        };
        self.last_ts[b] = Some(self.last_ts[b].map_or(ts, |l| l.max(ts)));
        self.mass[b] = self.mass[b] * forget + 1.0;
        let mass = self.mass[b];
        let beta = BETA * mass / (mass + SHRINK_SAMPLES);
        let mut target = [0.0f64; MAX_EXPERTS];
        let mut losses = [0.0f64; MAX_EXPERTS];
        for (l, &level) in DEFAULT_LEVELS.iter().enumerate() {
            let mut worst = 0.0f64;
            for (k, (i, j)) in experts(m).enumerate() {
                let q = 0.5 * (rows[i * L + l] + rows[j * L + l]);
                losses[k] = pinball(actual, q, level) / unit;
                if losses[k].is_finite() {
                    worst = worst.max(losses[k]);
                }
            }
            let r = self.expert_slot(band, l);
            for (k, i) in r.clone().enumerate() {
                // A non-finite forecast scores as the worst expert did.
                let x = if losses[k].is_finite() {
                    losses[k]
                } else {
                    worst
                };
                self.loss[i] = self.loss[i] * forget + x;
            }
            let mean = |i: usize| self.loss[i] / mass;
            let (mut lo, mut avg) = (f64::INFINITY, 0.0);
            for i in r.clone() {
                lo = lo.min(mean(i));
                avg += mean(i) / e as f64;
            }
            if !(avg > 0.0 && avg.is_finite()) {
                continue;
            }
            let mut total = 0.0;
            for (k, i) in r.clone().enumerate() {
                target[k] = (-beta * (mean(i) - lo) / avg).exp();
                total += target[k];
            }
            let (mut gain, mut moved) = (0.0, 0.0);
            for (k, i) in r.clone().enumerate() {
                target[k] /= total;
                gain += (self.expert_weights[i] - target[k]) * mean(i) / avg;
                moved += (self.expert_weights[i] - target[k]).abs() / 2.0;
            }
            if gain > SWITCH_COST * moved {
                for (k, i) in r.enumerate() {
                    self.expert_weights[i] = target[k];
                }
                self.derive(band, l);
            }
        }
    }

    /// `out[level] = sum over models of weight * rows[model * L + level]`,
    /// for the fixed levels.
    pub fn combine(&self, band: Band, rows: &[f64], out: &mut [f64]) {
        for (l, o) in out.iter_mut().enumerate().take(L) {
            let w = self.weights(band, l);
            *o = w
                .iter()
                .enumerate()
                .map(|(m, &wm)| wm * rows.get(m * L + l).copied().unwrap_or(0.0))
                .sum();
        }
    }
}

/// The ensemble weights of a series, for the dashboard and the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    /// The models, in the order of each `weights` row.
    pub models: Vec<String>,
    /// The quantile levels, in the order of each row's columns.
    pub levels: Vec<f64>,
    /// One table per band.
    pub bands: Vec<BandWeights>,
}

/// The weights of one band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandWeights {
    /// The band.
    pub band: Band,
    /// How many samples (forgotten) it has learnt from.
    pub samples: f64,
    /// `weights[model][level]`.
    pub weights: Vec<Vec<f64>>,
}

impl Weights {
    /// The weight of `model` at `level` in `band`, when all three exist.
    pub fn get(&self, band: Band, model: &str, level: f64) -> Option<f64> {
        let m = self.models.iter().position(|x| x == model)?;
        let l = self.levels.iter().position(|&x| x == level)?;
        let b = self.bands.iter().find(|b| b.band == band)?;
        b.weights.get(m)?.get(l).copied()
    }
}

impl Ensemble {
    /// The weights as a report, with the models' names.
    pub fn report(&self, names: &[&str]) -> Weights {
        Weights {
            models: names.iter().map(|s| s.to_string()).collect(),
            levels: DEFAULT_LEVELS.to_vec(),
            bands: Band::ALL
                .iter()
                .map(|&band| BandWeights {
                    band,
                    samples: self.samples(band),
                    weights: (0..self.models)
                        .map(|m| (0..L).map(|l| self.weights(band, l)[m]).collect())
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where model `k` forecasts `actual + offsets[k]` at every level.
    fn rows(actual: f64, offsets: &[f64]) -> Vec<f64> {
        offsets
            .iter()
            .flat_map(|o| std::iter::repeat_n(actual + o, L))
            .collect()
    }

    #[test]
    fn weight_moves_to_the_better_model_and_sums_to_one() {
        let mut e = Ensemble::new(2);
        for t in 0..200 {
            e.update(Band::Step, t * 300_000, 10.0, &rows(10.0, &[0.0, 2.0]), 1.0);
        }
        for l in 0..L {
            let w = e.weights(Band::Step, l);
            assert!(w[0] > 0.9, "{w:?}");
            assert!((w[0] + w[1] - 1.0).abs() < 1e-12);
        }
        // Other bands did not learn.
        assert_eq!(e.weights(Band::Day, 0), &[0.5, 0.5]);
    }

    #[test]
    fn the_average_of_two_models_wins_when_it_is_better() {
        // One model is 1 too low, the other 1 too high: their average is
        // exact, so the pair takes the weight and both models share it.
        let mut e = Ensemble::new(3);
        for t in 0..300 {
            e.update(
                Band::Day,
                t * 300_000,
                5.0,
                &rows(5.0, &[-1.0, 1.0, 3.0]),
                1.0,
            );
        }
        let w = e.weights(Band::Day, 3);
        assert!(
            (w[0] - 0.5).abs() < 0.05 && (w[1] - 0.5).abs() < 0.05,
            "{w:?}"
        );
        assert!(w[2] < 0.02, "{w:?}");
    }

    #[test]
    fn equal_models_keep_their_weights() {
        let mut e = Ensemble::new(3);
        for t in 0..50 {
            e.update(Band::Hours, t, 1.0, &rows(1.0, &[0.5, 0.5, 0.5]), 1.0);
        }
        for w in e.weights(Band::Hours, 3) {
            assert!((w - 1.0 / 3.0).abs() < 1e-12);
        }
    }

    #[test]
    fn forgetting_lets_weights_come_back_after_a_change() {
        let mut e = Ensemble::new(2);
        let step = 300_000;
        for t in 0..600 {
            e.update(Band::Step, t * step, 1.0, &rows(1.0, &[0.0, 2.0]), 1.0);
        }
        assert!(e.weights(Band::Step, 3)[0] > 0.9);
        for t in 600..1400 {
            e.update(Band::Step, t * step, 1.0, &rows(1.0, &[2.0, 0.0]), 1.0);
        }
        assert!(
            e.weights(Band::Step, 3)[1] > 0.9,
            "{:?}",
            e.weights(Band::Step, 3)
        );
    }

    #[test]
    fn switching_cost_keeps_weights_for_small_gains() {
        let mut e = Ensemble::new(2);
        // Model 1 is 1% worse: below the switching cost, weights stay.
        for t in 0..500 {
            e.update(Band::Step, t, 0.0, &rows(0.0, &[1.0, 1.01]), 1.0);
        }
        assert_eq!(e.weights(Band::Step, 3), &[0.5, 0.5]);
    }

    #[test]
    fn non_finite_input_does_not_poison_weights() {
        let mut e = Ensemble::new(2);
        let mut r = rows(1.0, &[0.0, 0.0]);
        r[0] = f64::NAN;
        r[L + 1] = f64::INFINITY;
        e.update(Band::Step, 0, 1.0, &r, 1.0);
        e.update(Band::Step, 1, f64::NAN, &r, 1.0);
        e.update(Band::Step, 2, 1.0, &[1.0], 1.0);
        e.update(Band::Step, 3, 1.0, &r, 0.0);
        for l in 0..L {
            assert!(e.weights(Band::Step, l).iter().all(|w| w.is_finite()));
        }
    }

    #[test]
    fn bands_by_distance() {
        assert_eq!(Band::of(10_000, 10_000), Band::Step);
        assert_eq!(Band::of(20_000, 10_000), Band::Hours);
        assert_eq!(Band::of(HOURS_BAND_MS, 10_000), Band::Hours);
        assert_eq!(Band::of(HOURS_BAND_MS + 1, 10_000), Band::Day);
    }
}
