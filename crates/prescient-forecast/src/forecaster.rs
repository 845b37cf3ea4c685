//! [`SeriesForecaster`]: everything the engine knows about one series (its
//! models, ensemble weights, calibration, season and pending checks), fed
//! one observation at a time and asked for calibrated quantiles.
//!
//! Each observation, in constant amortised time:
//! 1. scores the one-step quantiles issued after the previous observation
//!    (when it is the next step: after a gap there is nothing to score),
//!    updating the one-step ensemble weights and calibration;
//! 2. scores the *checks* that fall due. This is how skill hours and a day
//!    ahead is learnt online, at a bounded cost:
//!    - every 3 hours of series time, what each model forecast (at every
//!      fixed level) for 12 moments 30 minutes to 25 hours ahead: when the
//!      moment comes, these feed the hours and day bands' weights (about 40
//!      pending at a time);
//!    - every 30 minutes, the ensemble's median for 12 moments 5 minutes to
//!      25 hours ahead: these feed the hours and day bands' calibration
//!      (about 300 pending, 13 bytes each).
//!
//!    The offsets rotate from one set to the next so that, over days, every
//!    time of day is checked at every horizon;
//! 3. updates the models, the volatility scale and the season detector
//!    (which, twice a day, tells the models what it found);
//! 4. precomputes the next step's calibrated quantiles, which
//!    [`SeriesForecaster::one_step`] then only copies.
//!
//! The whole state serialises ([`SeriesForecaster::to_bytes`]) with a
//! version byte, and a forecaster read back continues bit for bit as the
//! one that was written.

use prescient_core::{DemandProfile, ProfileError, Quantiles, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::calibrate::{Calibrator, Tracker};
use crate::ensemble::{Band, Ensemble, Weights};
use crate::learned::SharedForest;
use crate::model::{DEFAULT_LEVELS, Model, SeriesContext};
use crate::models::{AnyModel, ModelKind};
use crate::season::SeasonDetector;
use crate::stats::{ewma_alpha, tidy_rows, usable};

const L: usize = DEFAULT_LEVELS.len();
/// Index of the median in [`DEFAULT_LEVELS`].
const MEDIAN: usize = 3;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
/// How often (series time) a set of full checks (for the weights) is recorded.
const CHECK_EVERY_MS: i64 = 3 * HOUR_MS;
/// How often (series time) a set of median checks (for calibration) is recorded.
const MEDIAN_CHECK_EVERY_MS: i64 = 30 * MINUTE_MS;
/// Offsets of the median checks of the hours band, before rotation.
const MEDIAN_HOURS_OFFSETS_MS: [i64; 6] = [
    5 * MINUTE_MS,
    65 * MINUTE_MS,
    125 * MINUTE_MS,
    185 * MINUTE_MS,
    245 * MINUTE_MS,
    305 * MINUTE_MS,
];
/// Rotation of the median hours offsets: +11 minutes a set, modulo 55 minutes.
const MEDIAN_HOURS_ROTATION_MS: (i64, i64) = (11 * MINUTE_MS, 55 * MINUTE_MS);
/// The first checks are recorded after this much history.
const FIRST_CHECK_AFTER_MS: i64 = HOUR_MS;
/// Offsets of the checks of the hours band, before rotation.
const HOURS_OFFSETS_MS: [i64; 6] = [
    30 * MINUTE_MS,
    HOUR_MS,
    2 * HOUR_MS,
    3 * HOUR_MS,
    4 * HOUR_MS,
    5 * HOUR_MS,
];
/// Rotation of the hours offsets: +7 minutes a set, modulo 30 minutes.
const HOURS_ROTATION_MS: (i64, i64) = (7 * MINUTE_MS, 30 * MINUTE_MS);
/// Offsets of the checks of the day band, before rotation.
const DAY_OFFSETS_MS: [i64; 6] = [
    7 * HOUR_MS,
    10 * HOUR_MS,
    13 * HOUR_MS,
    16 * HOUR_MS,
    19 * HOUR_MS,
    22 * HOUR_MS,
];
/// Rotation of the day offsets: +37 minutes a set, modulo 3 hours.
const DAY_ROTATION_MS: (i64, i64) = (37 * MINUTE_MS, 3 * HOUR_MS);
/// The most models a forecaster has (the state check refuses more).
const MAX_MODELS: usize = 8;
/// Half-life of the volatility scale.
const SCALE_HALF_LIFE_MS: i64 = 24 * HOUR_MS;

/// The format of [`SeriesForecaster::to_bytes`]; bump on any change to the
/// serialised state.
pub const STATE_VERSION: u8 = 1;

/// Why serialised state could not be read back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StateError {
    /// No bytes at all.
    #[error("forecast model state is empty (expected a version byte and the state)")]
    Empty,
    /// Written by a build with another state format.
    #[error(
        "forecast model state has format version {found}, but this build reads version {expected} only: \
         it was written by another version of Prescient; drop it and let the series relearn"
    )]
    UnknownVersion {
        /// The version byte found.
        found: u8,
        /// The version this build writes and reads.
        expected: u8,
    },
    /// The bytes do not decode, or decode to inconsistent state.
    #[error("forecast model state (format version {version}) is corrupt: {reason}")]
    Corrupt {
        /// The version byte.
        version: u8,
        /// What is wrong.
        reason: String,
    },
}

/// The longest horizon a forecast may ask for, in steps (a year of 5-minute
/// steps): beyond it a forecast says no rather than allocating without
/// bound.
pub const MAX_HORIZON: usize = 105_120;

/// Why a forecast could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    /// The levels asked for are not valid quantile levels.
    #[error(transparent)]
    Levels(#[from] ProfileError),
    /// Too many steps asked for.
    #[error("a forecast of {horizon} steps was asked for; at most {max} are forecast")]
    HorizonTooLong {
        /// Steps asked for.
        horizon: usize,
        /// [`MAX_HORIZON`].
        max: usize,
    },
}

/// A recorded forecast for one future moment, scored when it comes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Check {
    target: TimestampMs,
    band: Band,
    /// The volatility scale when the check was made.
    scale: f64,
    /// `[model * L + level]`.
    models: Vec<f32>,
}

/// A recorded ensemble median for one future moment, scored when it comes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct MedianCheck {
    target: TimestampMs,
    band: Band,
    median: f32,
}

/// A lasting change of level found in a series (by the level-shift
/// detector of [`crate::anomaly::SeriesAnomalyDetector`], say): what
/// [`SeriesForecaster::change_point`] needs to forget the old level.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePoint {
    /// When the new level began.
    pub since: TimestampMs,
    /// How far the level moved, in the series' unit (signed).
    pub shift: f64,
    /// The observations from `since` on (those already learnt), oldest
    /// first, as the models should know them.
    pub recent: Vec<(TimestampMs, f64)>,
}

/// What [`SeriesForecaster::change_point`] made a forecaster forget.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forgotten {
    /// Models started afresh and taught the observations since the change
    /// (their state was all level: the decaying histogram, the recent
    /// levels).
    pub rebuilt: Vec<ModelKind>,
    /// Models that kept their shape by time of day and scaled it to the new
    /// level (the seasonal profile).
    pub moved: Vec<ModelKind>,
    /// Observations the rebuilt models were taught.
    pub replayed: usize,
    /// Pending checks of past forecasts dropped (made at the old level).
    pub checks: usize,
    /// Hours and day calibration scores dropped.
    pub scores: usize,
}

impl std::fmt::Display for Forgotten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[ModelKind]| v.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ");
        write!(
            f,
            "ensemble losses reset; {} restarted from the {} observation(s) since the change",
            names(&self.rebuilt),
            self.replayed
        )?;
        if !self.moved.is_empty() {
            write!(f, "; {} moved to the new level", names(&self.moved))?;
        }
        write!(
            f,
            "; {} pending check(s) and {} horizon calibration score(s) dropped; season kept",
            self.checks, self.scores
        )
    }
}

/// One series: models, ensemble, calibration, season, pending checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesForecaster {
    ctx: SeriesContext,
    models: Vec<AnyModel>,
    ensemble: Ensemble,
    calibration: Calibrator,
    detector: SeasonDetector,
    pending: Vec<Check>,
    next_check: Option<TimestampMs>,
    checks_made: u64,
    pending_medians: Vec<MedianCheck>,
    next_median_check: Option<TimestampMs>,
    median_checks_made: u64,
    last_ts: Option<TimestampMs>,
    last_value: f64,
    /// EWMA of the absolute one-step change: the unit of losses and offsets.
    scale: f64,
    observations: u64,
    /// The models' quantiles for the next step, `[model * L + level]`.
    next_models: Vec<f64>,
    /// The ensemble's uncalibrated quantiles for the next step.
    next_base: Vec<f64>,
    /// The calibrated quantiles for the next step at the fixed levels.
    next_row: Vec<f64>,
    /// The calibrated quantile issued for the next step per tracker.
    next_issued: Vec<f64>,
}

impl SeriesForecaster {
    /// A forecaster with the given models (every classic model when `kinds`
    /// is empty; repeats are dropped).
    pub fn new(ctx: SeriesContext, kinds: &[ModelKind]) -> Self {
        let mut chosen: Vec<ModelKind> = Vec::new();
        for &k in if kinds.is_empty() {
            &ModelKind::ALL[..]
        } else {
            kinds
        } {
            if !chosen.contains(&k) {
                chosen.push(k);
            }
        }
        let ctx = SeriesContext {
            step_ms: ctx.step_ms.max(1),
            ..ctx
        };
        let models: Vec<AnyModel> = chosen.iter().map(|k| k.build(ctx)).collect();
        let m = models.len();
        let calibration = Calibrator::new();
        let trackers = calibration.trackers().len();
        SeriesForecaster {
            ctx,
            ensemble: Ensemble::new(m),
            calibration,
            detector: SeasonDetector::new(ctx.step_ms),
            pending: Vec::new(),
            next_check: None,
            checks_made: 0,
            pending_medians: Vec::new(),
            next_median_check: None,
            median_checks_made: 0,
            last_ts: None,
            last_value: 0.0,
            scale: 0.0,
            observations: 0,
            next_models: vec![0.0; m * L],
            next_base: vec![0.0; L],
            next_row: vec![0.0; L],
            next_issued: vec![0.0; trackers],
            models,
        }
    }

    /// Attaches the shared learned forest to the learned model, if the
    /// forecaster has one (after building it, or restoring it from bytes:
    /// the forest is stored once, not per series). Returns whether it has.
    pub fn attach_forest(&mut self, forest: &SharedForest) -> bool {
        let mut attached = false;
        for model in &mut self.models {
            if let AnyModel::Learned(m) = model {
                m.attach(forest.clone());
                attached = true;
            }
        }
        if attached && self.last_ts.is_some() {
            self.prepare_next_step();
        }
        attached
    }

    /// Adds a model of `kind` with fresh state (a forecaster saved before
    /// the model was configured, say); no-op when it has one, or has 8
    /// models already. Returns whether it has one now. The models, the
    /// calibration and the season are kept, but the ensemble starts over
    /// with equal weights (its losses are kept per pair of models, and the
    /// pairs change) and the pending checks of the models' forecasts are
    /// dropped.
    pub fn add_model(&mut self, kind: ModelKind) -> bool {
        if self.models.iter().any(|m| m.kind() == kind) {
            return true;
        }
        if self.models.len() >= MAX_MODELS {
            return false;
        }
        self.models.push(kind.build(self.ctx));
        let m = self.models.len();
        self.ensemble = Ensemble::new(m);
        self.pending.clear();
        self.next_models = vec![0.0; m * L];
        if self.last_ts.is_some() {
            self.prepare_next_step();
        }
        true
    }

    /// Forgets what no longer holds after a lasting change of level
    /// (see [`ChangePoint`]); returns what was forgotten.
    ///
    /// - The decaying histogram (24 h half-life) and the recent levels
    ///   (whose slow level has a 1 h half-life) are all level: they start
    ///   afresh from the observations since the change.
    /// - The seasonal profile keeps its shape by time of day and is scaled
    ///   so that its daily mean moves by `shift`. Holt-Winters keeps its state: its level
    ///   follows within its smoothing time, and it refits on the recent
    ///   history twice a day. The learned model reads the change from its
    ///   own lags.
    /// - The ensemble's losses are reset ([`Ensemble::forget`]): the weights
    ///   in force stay until the scores from now on move them, which they
    ///   do quickly.
    /// - Pending checks (forecasts made at the old level, to be scored
    ///   hours on) and the hours and day bands' calibration scores are
    ///   dropped, so that neither the weights nor the offsets learn from
    ///   errors against the old level; the one-step calibration is kept
    ///   (it follows within a few dozen steps). The season found is kept.
    ///
    /// The state stays what [`to_bytes`](Self::to_bytes) writes (nothing of
    /// the change is kept beyond its effect). Before any observation it
    /// does nothing.
    pub fn change_point(&mut self, cp: &ChangePoint) -> Forgotten {
        let mut out = Forgotten::default();
        let Some(last) = self.last_ts else {
            return out;
        };
        let mut recent: Vec<(TimestampMs, f64)> = cp
            .recent
            .iter()
            .filter(|(t, _)| *t >= cp.since && *t <= last)
            .filter_map(|&(t, v)| usable(v).map(|v| (t, v)))
            .collect();
        recent.sort_by_key(|p| p.0);
        recent.dedup_by_key(|p| p.0);
        if recent.is_empty() {
            // Nothing since the change was given: the last value at least,
            // so that a restarted model does not forecast zero.
            recent.push((last, self.last_value));
        }
        out.replayed = recent.len();
        for model in &mut self.models {
            match model {
                AnyModel::Histogram(_) | AnyModel::Recent(_) => {
                    let kind = model.kind();
                    let mut fresh = kind.build(self.ctx);
                    for &(t, v) in &recent {
                        fresh.update(t, v);
                    }
                    *model = fresh;
                    out.rebuilt.push(kind);
                }
                AnyModel::Seasonal(m) => {
                    if m.move_level(cp.shift, &recent) {
                        out.moved.push(ModelKind::Seasonal);
                    }
                }
                AnyModel::HoltWinters(_) | AnyModel::Learned(_) => {}
            }
        }
        self.ensemble.forget();
        out.checks = self.pending.len() + self.pending_medians.len();
        self.pending.clear();
        self.pending_medians.clear();
        out.scores = self.calibration.forget_horizon();
        self.prepare_next_step();
        out
    }

    /// The forest its learned model forecasts with, when it has a learned
    /// model with a forest attached.
    pub fn forest(&self) -> Option<std::sync::Arc<crate::learned::QuantileForest>> {
        self.models.iter().find_map(|m| match m {
            AnyModel::Learned(l) => l.forest().map(SharedForest::current),
            _ => None,
        })
    }

    /// The series' context.
    pub fn context(&self) -> SeriesContext {
        self.ctx
    }

    /// The models, in weight order.
    pub fn model_kinds(&self) -> Vec<ModelKind> {
        self.models.iter().map(|m| m.kind()).collect()
    }

    /// Observations learnt from.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// Time of the last observation learnt from.
    pub fn last_ts(&self) -> Option<TimestampMs> {
        self.last_ts
    }

    /// Learns from the observation at `ts`. Non-finite (and absurdly large)
    /// values are ignored, as are observations not after the last one;
    /// negative values count as 0. A gap in time is missing observations:
    /// nothing is scored across it, and the models treat it as such.
    pub fn observe(&mut self, ts: TimestampMs, value: f64) {
        let Some(v) = usable(value) else { return };
        if self.last_ts.is_some_and(|l| ts <= l) {
            return;
        }
        let step = self.ctx.step_ms;
        let next_step = self
            .last_ts
            .is_some_and(|l| ts.saturating_sub(l) <= step.saturating_add(step / 2));
        let scale = self.scale_or_floor();

        // 1. Score last step's one-step forecasts.
        if next_step {
            self.ensemble
                .update(Band::Step, ts, v, &self.next_models, scale);
            self.calibration.update_one_step(v, &self.next_issued);
        }

        // 2. Score the checks that fall due.
        if !self.pending.is_empty() {
            self.score_checks(ts, v);
        }
        if !self.pending_medians.is_empty() {
            self.score_median_checks(ts, v);
        }

        // 3. Learn.
        if let Some(last) = self.last_ts {
            let change = (v - self.last_value).abs();
            if next_step {
                self.scale = if self.observations == 1 {
                    change
                } else {
                    self.scale + ewma_alpha(ts - last, SCALE_HALF_LIFE_MS) * (change - self.scale)
                };
            }
        }
        for model in &mut self.models {
            model.update(ts, v);
        }
        if self.detector.observe(ts, v)
            && let Some(season) = self.detector.season().copied()
        {
            let recent = self.detector.recent();
            for model in &mut self.models {
                model.season_changed(&season, &recent);
            }
        }
        self.last_ts = Some(ts);
        self.last_value = v;
        self.observations += 1;

        // 4. Record checks, and precompute the next step.
        let due = *self
            .next_check
            .get_or_insert(ts.saturating_add(FIRST_CHECK_AFTER_MS));
        if ts >= due {
            self.record_checks(ts);
            self.next_check = Some(ts.saturating_add(CHECK_EVERY_MS));
        }
        let due = *self
            .next_median_check
            .get_or_insert(ts.saturating_add(FIRST_CHECK_AFTER_MS));
        if ts >= due {
            self.record_median_checks(ts);
            self.next_median_check = Some(ts.saturating_add(MEDIAN_CHECK_EVERY_MS));
        }
        self.prepare_next_step();
    }

    /// The volatility scale, floored so that divisions by it stay finite.
    fn scale_or_floor(&self) -> f64 {
        let floor = 1e-6 * self.last_value.abs() + 1e-12;
        if self.scale.is_finite() {
            self.scale.max(floor)
        } else {
            floor
        }
    }

    fn score_checks(&mut self, ts: TimestampMs, v: f64) {
        let step = self.ctx.step_ms;
        let m = self.models.len();
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain(|c| {
            if c.target > ts {
                return true;
            }
            // The observation covers [ts, ts + step): it is the check's
            // moment only if that moment is not further back than a step.
            if ts - c.target < step && c.models.len() == m * L {
                let scale = if c.scale > 0.0 { c.scale } else { 1e-12 };
                let rows: Vec<f64> = c.models.iter().map(|&x| x as f64).collect();
                self.ensemble.update(c.band, ts, v, &rows, scale);
            }
            false
        });
        self.pending = pending;
    }

    fn score_median_checks(&mut self, ts: TimestampMs, v: f64) {
        let step = self.ctx.step_ms;
        let mut pending = std::mem::take(&mut self.pending_medians);
        pending.retain(|c| {
            if c.target > ts {
                return true;
            }
            if ts - c.target < step {
                self.calibration.add_score(c.band, v - c.median as f64);
            }
            false
        });
        self.pending_medians = pending;
    }

    fn record_median_checks(&mut self, ts: TimestampMs) {
        let k = self.median_checks_made as i64;
        let hours_phase = (k * MEDIAN_HOURS_ROTATION_MS.0).rem_euclid(MEDIAN_HOURS_ROTATION_MS.1);
        let day_phase = (k * DAY_ROTATION_MS.0).rem_euclid(DAY_ROTATION_MS.1);
        let offsets = MEDIAN_HOURS_OFFSETS_MS
            .iter()
            .map(|o| o + hours_phase)
            .chain(DAY_OFFSETS_MS.iter().map(|o| o + day_phase));
        let m = self.models.len();
        let mut rows = vec![0.0; m * L];
        let mut base = [0.0; L];
        for offset in offsets {
            let target = ts.saturating_add(offset);
            let band = Band::of(offset, self.ctx.step_ms);
            if band == Band::Step {
                continue;
            }
            for (i, model) in self.models.iter().enumerate() {
                model.forecast(target, 1, &DEFAULT_LEVELS, &mut rows[i * L..(i + 1) * L]);
            }
            self.ensemble.combine(band, &rows, &mut base);
            self.pending_medians.push(MedianCheck {
                target,
                band,
                median: base[MEDIAN] as f32,
            });
        }
        self.median_checks_made += 1;
    }

    fn record_checks(&mut self, ts: TimestampMs) {
        let k = self.checks_made as i64;
        let hours_phase = (k * HOURS_ROTATION_MS.0).rem_euclid(HOURS_ROTATION_MS.1);
        let day_phase = (k * DAY_ROTATION_MS.0).rem_euclid(DAY_ROTATION_MS.1);
        let offsets = HOURS_OFFSETS_MS
            .iter()
            .map(|o| o + hours_phase)
            .chain(DAY_OFFSETS_MS.iter().map(|o| o + day_phase));
        let m = self.models.len();
        let mut rows = vec![0.0; m * L];
        let scale = self.scale_or_floor();
        for offset in offsets {
            let target = ts.saturating_add(offset);
            let band = Band::of(offset, self.ctx.step_ms);
            if band == Band::Step {
                continue;
            }
            for (i, model) in self.models.iter().enumerate() {
                model.forecast(target, 1, &DEFAULT_LEVELS, &mut rows[i * L..(i + 1) * L]);
            }
            self.pending.push(Check {
                target,
                band,
                scale,
                models: rows.iter().map(|&x| x as f32).collect(),
            });
        }
        self.checks_made += 1;
    }

    fn prepare_next_step(&mut self) {
        let Some(last) = self.last_ts else { return };
        let next = last.saturating_add(self.ctx.step_ms);
        for (i, model) in self.models.iter().enumerate() {
            model.forecast(
                next,
                1,
                &DEFAULT_LEVELS,
                &mut self.next_models[i * L..(i + 1) * L],
            );
        }
        self.ensemble
            .combine(Band::Step, &self.next_models, &mut self.next_base);
        let scale = self.scale_or_floor();
        // Each level's tracker is scored on its own value, before the row is
        // rearranged: sorting first would hand a tracker another level's
        // value and break its feedback loop.
        let trackers = self.calibration.trackers().len();
        self.next_issued.resize(trackers, 0.0);
        for i in 0..trackers {
            let base = if i < L {
                self.next_base[i]
            } else {
                read_level(&self.next_base, self.calibration.trackers()[i].level)
            };
            self.next_issued[i] = (base + self.calibration.theta(i) * scale).max(0.0);
        }
        self.next_row.copy_from_slice(&self.next_issued[..L]);
        tidy_rows(&mut self.next_row, L);
    }

    /// Starts calibrating `level` one step ahead on its own (a policy's SLO
    /// quantile, say 0.999 or 0.9995); the fixed levels ([`DEFAULT_LEVELS`])
    /// always are. Returns false when the level is outside (0, 1) or 16
    /// extra levels are tracked already.
    pub fn track_level(&mut self, level: f64) -> bool {
        let tracked = self.calibration.track(level);
        if tracked && self.last_ts.is_some() {
            self.prepare_next_step();
        }
        tracked
    }

    /// The calibrated quantiles of the next step (one step after the last
    /// observation) at `levels`, into `out` (same length; levels in (0, 1),
    /// any order). The fast path the replay policy calls every step: tracked
    /// levels are precomputed, others are read from the calibrated fixed
    /// levels as a piecewise-linear CDF. Before any observation, zeros.
    pub fn one_step(&self, levels: &[f64], out: &mut [f64]) {
        for (o, &level) in out.iter_mut().zip(levels) {
            *o = match self.calibration.position(level) {
                Some(i) => self.next_issued.get(i).copied().unwrap_or(0.0),
                None => read_level(&self.next_row, level),
            };
        }
        // Rearrange so that higher levels never get lower values.
        let n = out.len().min(levels.len());
        if n > 1 && levels[..n].windows(2).all(|w| w[0] < w[1]) {
            tidy_rows(&mut out[..n], n);
        }
    }

    /// Calibrated quantiles of demand at `levels` for the `horizon` steps
    /// starting at `start` (`start`, `start + step`, ...).
    pub fn forecast(
        &self,
        start: TimestampMs,
        horizon: usize,
        levels: &[f64],
    ) -> Result<DemandProfile, ForecastError> {
        self.forecast_with(start, horizon, levels, true)
    }

    /// The ensemble's quantiles before calibration (for backtests and
    /// diagnostics: what the calibration adds).
    pub fn forecast_uncalibrated(
        &self,
        start: TimestampMs,
        horizon: usize,
        levels: &[f64],
    ) -> Result<DemandProfile, ForecastError> {
        self.forecast_with(start, horizon, levels, false)
    }

    fn forecast_with(
        &self,
        start: TimestampMs,
        horizon: usize,
        levels: &[f64],
        calibrated: bool,
    ) -> Result<DemandProfile, ForecastError> {
        self.check_request(start, horizon, levels)?;
        let n = levels.len();
        let mut values = vec![0.0; horizon * n];
        let Some(last) = self.last_ts else {
            return Ok(DemandProfile::new(
                start,
                self.ctx.step_ms,
                levels.to_vec(),
                values,
            )?);
        };
        let m = self.models.len();
        let mut rows = vec![0.0; m * horizon * L];
        for (i, model) in self.models.iter().enumerate() {
            model.forecast(
                start,
                horizon,
                &DEFAULT_LEVELS,
                &mut rows[i * horizon * L..(i + 1) * horizon * L],
            );
        }
        let mut offsets = [[0.0; L]; 3];
        let mut have = [false; 3];
        for band in [Band::Hours, Band::Day] {
            let b = band.index();
            have[b] = self
                .calibration
                .horizon_offsets(band, &DEFAULT_LEVELS, &mut offsets[b]);
        }
        let scale = self.scale_or_floor();
        let mut step_rows = vec![0.0; m * L];
        let mut base = [0.0; L];
        let mut row = [0.0; L];
        for h in 0..horizon {
            let ts = start.saturating_add((h as i64).saturating_mul(self.ctx.step_ms));
            let band = Band::of(ts.saturating_sub(last), self.ctx.step_ms);
            for i in 0..m {
                step_rows[i * L..(i + 1) * L]
                    .copy_from_slice(&rows[(i * horizon + h) * L..(i * horizon + h + 1) * L]);
            }
            self.ensemble.combine(band, &step_rows, &mut base);
            let b = band.index();
            for l in 0..L {
                row[l] = if !calibrated {
                    base[l]
                } else if band == Band::Step {
                    base[l] + scale * self.calibration.theta(l)
                } else if have[b] {
                    base[MEDIAN] + offsets[b][l]
                } else {
                    base[l]
                };
            }
            tidy_rows(&mut row, L);
            let out = &mut values[h * n..(h + 1) * n];
            if levels == DEFAULT_LEVELS {
                out.copy_from_slice(&row);
            } else {
                for (o, &level) in out.iter_mut().zip(levels) {
                    *o = match (band, self.calibration.position(level)) {
                        (Band::Step, Some(i)) if calibrated && i >= L => {
                            (read_level(&base, level) + self.calibration.theta(i) * scale).max(0.0)
                        }
                        _ => read_level(&row, level),
                    };
                }
                tidy_rows(out, n);
            }
        }
        Ok(DemandProfile::new(
            start,
            self.ctx.step_ms,
            levels.to_vec(),
            values,
        )?)
    }

    /// Checks the levels and the horizon before any work is done.
    fn check_request(
        &self,
        start: TimestampMs,
        horizon: usize,
        levels: &[f64],
    ) -> Result<(), ForecastError> {
        if horizon > MAX_HORIZON {
            return Err(ForecastError::HorizonTooLong {
                horizon,
                max: MAX_HORIZON,
            });
        }
        DemandProfile::new(
            start,
            self.ctx.step_ms,
            levels.to_vec(),
            vec![0.0; levels.len()],
        )?;
        Ok(())
    }

    /// One model's own (uncalibrated) quantiles, as [`forecast`](Self::forecast)
    /// gives the ensemble's; `None` when the forecaster has no such model.
    pub fn model_forecast(
        &self,
        kind: ModelKind,
        start: TimestampMs,
        horizon: usize,
        levels: &[f64],
    ) -> Option<Result<DemandProfile, ForecastError>> {
        let model = self.models.iter().find(|m| m.kind() == kind)?;
        if let Err(e) = self.check_request(start, horizon, levels) {
            return Some(Err(e));
        }
        let mut values = vec![0.0; horizon * levels.len()];
        if self.last_ts.is_some() {
            model.forecast(start, horizon, levels, &mut values);
        }
        tidy_rows(&mut values, levels.len());
        Some(
            DemandProfile::new(start, self.ctx.step_ms, levels.to_vec(), values)
                .map_err(ForecastError::from),
        )
    }

    /// The ensemble weights, per band, model and fixed level.
    pub fn weights(&self) -> Weights {
        let names: Vec<&str> = self.models.iter().map(|m| m.name()).collect();
        self.ensemble.report(&names)
    }

    /// The one-step calibration of every tracked level: its offset and its
    /// realised miss count.
    pub fn calibration(&self) -> &[Tracker] {
        self.calibration.trackers()
    }

    /// What the hours or day band's calibration adds to the ensemble's
    /// median to give the quantile at `level` (in the series' unit), or
    /// `None` while the band has too few scores (or for the step band,
    /// which is calibrated per level: see [`calibration`](Self::calibration)).
    pub fn horizon_offset(&self, band: Band, level: f64) -> Option<f64> {
        let mut out = [0.0];
        self.calibration
            .horizon_offsets(band, &[level], &mut out)
            .then_some(out[0])
    }

    /// How many day-band and hours-band checks have been scored (kept).
    pub fn horizon_scores(&self, band: Band) -> usize {
        self.calibration.score_count(band)
    }

    /// The whole state: a version byte, then the state in postcard.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        // Serialising plain structs, vectors and numbers into a Vec cannot fail.
        out.extend(postcard::to_stdvec(self).unwrap_or_default());
        out
    }

    /// Reads back what [`to_bytes`](Self::to_bytes) wrote; refuses other
    /// versions and inconsistent state with a [`StateError`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        let (&version, rest) = bytes.split_first().ok_or(StateError::Empty)?;
        if version != STATE_VERSION {
            return Err(StateError::UnknownVersion {
                found: version,
                expected: STATE_VERSION,
            });
        }
        let corrupt = |reason: String| StateError::Corrupt { version, reason };
        let f: SeriesForecaster =
            postcard::from_bytes(rest).map_err(|e| corrupt(format!("cannot decode: {e}")))?;
        f.check().map_err(|r| corrupt(r.to_string()))?;
        Ok(f)
    }

    /// Shape checks on deserialised state, so that bad bytes are refused
    /// here rather than causing a panic later.
    fn check(&self) -> Result<(), &'static str> {
        let m = self.models.len();
        if m == 0 || m > MAX_MODELS {
            return Err("a forecaster has 1 to 8 models");
        }
        if self.ctx.step_ms <= 0 {
            return Err("the step must be positive");
        }
        if !self.ensemble.is_consistent(m) {
            return Err("the ensemble weights do not match the models");
        }
        if !self.calibration.is_consistent() {
            return Err("the calibration levels are inconsistent");
        }
        if self.next_models.len() != m * L
            || self.next_base.len() != L
            || self.next_row.len() != L
            || self.next_issued.len() != self.calibration.trackers().len()
        {
            return Err("the next step's forecasts do not match the models");
        }
        for model in &self.models {
            let ok = match model {
                AnyModel::Seasonal(s) => s.is_consistent(),
                AnyModel::HoltWinters(h) => h.is_consistent(),
                // The learned model's state is checked as it is decoded.
                AnyModel::Histogram(_) | AnyModel::Recent(_) | AnyModel::Learned(_) => true,
            };
            if !ok {
                return Err("a model's state has the wrong shape");
            }
        }
        Ok(())
    }

    /// Size of the serialised state in bytes (what the store holds).
    pub fn state_bytes(&self) -> usize {
        self.to_bytes().len()
    }

    /// Approximate size of the state in memory.
    pub fn memory_bytes(&self) -> usize {
        let models: usize = self.models.iter().map(|m| m.state_bytes()).sum();
        let checks = self.pending.len()
            * (std::mem::size_of::<Check>() + 4 * self.models.len() * L)
            + self.pending_medians.len() * std::mem::size_of::<MedianCheck>();
        std::mem::size_of::<Self>()
            + models
            + checks
            + 8 * (self.next_models.len() + 3 * L + self.next_issued.len())
            + 2 * 8 * 3 * L * self.models.len()
            + 4 * 2 * 1152
            + 4 * (864 + 840)
    }
}

/// The quantile at `level` of a row at the fixed levels, read as a
/// piecewise-linear CDF (tails extended as [`Quantiles`] does); the median
/// if the row is not a valid one.
fn read_level(row: &[f64], level: f64) -> f64 {
    if let Some(i) = DEFAULT_LEVELS.iter().position(|&l| l == level) {
        return row.get(i).copied().unwrap_or(0.0);
    }
    match Quantiles::new(&DEFAULT_LEVELS, row) {
        Ok(q) => q.quantile(level),
        Err(_) => row.get(3).copied().unwrap_or(0.0),
    }
}
