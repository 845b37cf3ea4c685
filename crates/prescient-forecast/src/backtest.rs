//! The day-ahead backtest of DESIGN.md ("How results are scored"): a series
//! as 5-minute means; an origin every midnight from day 3 (day 7 where the
//! trace spans 14 days or more); at each origin, forecast the next 288
//! steps at quantiles 0.5, 0.9, 0.95 and 0.99 from the history before it;
//! score wQL (the mean over the quantiles of 2 x the summed pinball loss
//! over the summed |actual|) and coverage95 (the share of actuals at or
//! below the 0.95 forecast).
//!
//! The engine runs exactly as live: one [`SeriesForecaster`] per series,
//! fed every 5-minute mean in order, asked at each origin. Besides the
//! ensemble, every model's own quantiles are scored, and the ensemble
//! before calibration, so a report shows what each part adds. Pure: the
//! caller reads the trace.

use prescient_core::{DemandProfile, Resource, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::forecaster::SeriesForecaster;
use crate::learned::SharedForest;
use crate::model::SeriesContext;
use crate::models::ModelKind;
use crate::stats::pinball;

/// The quantile levels of the protocol.
pub const LEVELS: [f64; 4] = [0.5, 0.9, 0.95, 0.99];
/// The protocol's step: 5-minute means.
pub const STEP_MS: i64 = 300_000;
/// Steps forecast from each origin: one day.
pub const HORIZON: usize = 288;
const DAY_MS: i64 = 86_400_000;
/// Index of 0.95 in [`LEVELS`].
const Q95: usize = 2;

/// Why a series cannot be backtested.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BacktestError {
    /// The series is too short for any origin.
    #[error(
        "the series spans {span_days:.2} days; the day-ahead protocol's first origin is midnight of day {first_day}, \
         so it needs more than {first_day} days of data"
    )]
    TooShort {
        /// The span of the series, in days.
        span_days: f64,
        /// The day of the first origin (3, or 7 for traces of 14 days or more).
        first_day: i64,
    },
    /// The series has no finite value.
    #[error("the series has no finite value")]
    Empty,
}

/// Means of `samples` (time order, any step) over 5-minute buckets, each
/// stamped with its bucket's start; non-finite values are skipped, and a
/// bucket with none is absent.
pub fn resample(samples: &[(TimestampMs, f64)], bucket_ms: i64) -> Vec<(TimestampMs, f64)> {
    let bucket_ms = bucket_ms.max(1);
    let mut out: Vec<(TimestampMs, f64)> = Vec::new();
    let mut current: Option<(i64, f64, u32)> = None;
    for &(ts, v) in samples {
        if !v.is_finite() {
            continue;
        }
        let b = ts.div_euclid(bucket_ms);
        match &mut current {
            Some((cb, sum, n)) if *cb == b => {
                *sum += v;
                *n += 1;
            }
            _ => {
                if let Some((cb, sum, n)) = current {
                    out.push((cb * bucket_ms, sum / n as f64));
                }
                current = Some((b, v, 1));
            }
        }
    }
    if let Some((cb, sum, n)) = current {
        out.push((cb * bucket_ms, sum / n as f64));
    }
    // Input out of order would give repeated or decreasing buckets: keep
    // the first of each and drop what goes back.
    out.dedup_by(|b, a| b.0 <= a.0);
    out
}

/// The origins of the protocol for a series from `first` to `last`
/// (timestamps of its first and last 5-minute means): midnights (multiples
/// of a day) from day 3 after the day `first` falls in (day 7 when the
/// series spans 14 days or more), up to the last midnight before `last`.
pub fn origins(first: TimestampMs, last: TimestampMs) -> Result<Vec<TimestampMs>, BacktestError> {
    let span = last.saturating_sub(first).saturating_add(STEP_MS);
    let first_day = if span >= 14 * DAY_MS { 7 } else { 3 };
    let day0 = first.div_euclid(DAY_MS) * DAY_MS;
    let out: Vec<TimestampMs> = (first_day..)
        .map(|d| day0.saturating_add(d * DAY_MS))
        .take_while(|&o| o <= last)
        .collect();
    if out.is_empty() {
        return Err(BacktestError::TooShort {
            span_days: span as f64 / DAY_MS as f64,
            first_day,
        });
    }
    Ok(out)
}

/// Running sums for wQL and coverage95; tallies add up across origins and
/// series (the pooled figure, not a mean of per-series figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Sum of the pinball loss at each of [`LEVELS`].
    pub pinball: [f64; 4],
    /// Sum of |actual|.
    pub abs_actual: f64,
    /// Actuals at or below the 0.95 forecast.
    pub covered95: u64,
    /// Actuals scored.
    pub n: u64,
}

impl Tally {
    /// Scores one forecast step (values at [`LEVELS`]) against its actual.
    pub fn add(&mut self, actual: f64, q: &[f64]) {
        for (i, (&level, &v)) in LEVELS.iter().zip(q).enumerate() {
            self.pinball[i] += pinball(actual, v, level);
        }
        self.abs_actual += actual.abs();
        self.covered95 += (q.get(Q95).is_some_and(|&v| actual <= v)) as u64;
        self.n += 1;
    }

    /// Adds another tally.
    pub fn merge(&mut self, o: &Tally) {
        for i in 0..4 {
            self.pinball[i] += o.pinball[i];
        }
        self.abs_actual += o.abs_actual;
        self.covered95 += o.covered95;
        self.n += o.n;
    }

    /// wQL per level: 2 x sum of pinball / sum of |actual| (NaN when no
    /// actual is scored or all are 0).
    pub fn wql_per_level(&self) -> [f64; 4] {
        self.pinball.map(|p| {
            if self.abs_actual > 0.0 {
                2.0 * p / self.abs_actual
            } else {
                f64::NAN
            }
        })
    }

    /// wQL: the mean over the levels.
    pub fn wql(&self) -> f64 {
        self.wql_per_level().iter().sum::<f64>() / 4.0
    }

    /// Share of actuals at or below the 0.95 forecast (NaN with none).
    pub fn coverage95(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.covered95 as f64 / self.n as f64
        }
    }
}

/// What is scored: a model, the ensemble, or the ensemble before calibration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "model")]
pub enum Forecaster {
    /// One model's own quantiles.
    Model(ModelKind),
    /// The weighted ensemble, before calibration.
    EnsembleUncalibrated,
    /// The calibrated ensemble: what the engine hands out.
    Ensemble,
}

impl Forecaster {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Forecaster::Model(k) => k.name(),
            Forecaster::EnsembleUncalibrated => "ensemble (uncalibrated)",
            Forecaster::Ensemble => "ensemble",
        }
    }
}

/// The forecasts of one origin.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginForecast {
    /// The origin: the first forecast step starts here.
    pub origin: TimestampMs,
    /// The calibrated ensemble forecast, [`HORIZON`] steps at [`LEVELS`].
    pub ensemble: DemandProfile,
}

/// The backtest of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesBacktest {
    /// The origins' ensemble forecasts, in order.
    pub forecasts: Vec<OriginForecast>,
    /// Per forecaster (models in the order given, then the uncalibrated and
    /// calibrated ensemble), the tally over every origin.
    pub tallies: Vec<(Forecaster, Tally)>,
    /// The engine's state at the end (weights, calibration, size).
    pub end_state: SeriesForecaster,
}

/// Runs the protocol on one series: `samples` in time order at any step
/// (they are resampled to 5-minute means), `models` the ensemble's models
/// (all when empty). With the learned model among them, `forest_at(origin)`
/// gives the forest to forecast that origin with, which must have been
/// trained on data before the origin only (`None` leaves the one attached,
/// or the model's own empirical fallback). `progress` is called after each
/// origin.
pub fn backtest_series(
    samples: &[(TimestampMs, f64)],
    resource: Resource,
    models: &[ModelKind],
    forest_at: &mut dyn FnMut(TimestampMs) -> Option<SharedForest>,
    progress: &mut dyn FnMut(),
) -> Result<SeriesBacktest, BacktestError> {
    let means = resample(samples, STEP_MS);
    let (Some(&(first, _)), Some(&(last, _))) = (means.first(), means.last()) else {
        return Err(BacktestError::Empty);
    };
    let origins = origins(first, last)?;
    let ctx = SeriesContext {
        step_ms: STEP_MS,
        resource,
    };
    let mut engine = SeriesForecaster::new(ctx, models);
    let kinds = engine.model_kinds();
    let mut forecasters: Vec<Forecaster> = kinds.iter().map(|&k| Forecaster::Model(k)).collect();
    forecasters.push(Forecaster::EnsembleUncalibrated);
    forecasters.push(Forecaster::Ensemble);
    let mut tallies: Vec<(Forecaster, Tally)> =
        forecasters.iter().map(|&f| (f, Tally::default())).collect();
    let mut forecasts = Vec::new();
    let mut next = 0; // index into means of the next mean to feed
    for &origin in &origins {
        while next < means.len() && means[next].0 < origin {
            engine.observe(means[next].0, means[next].1);
            next += 1;
        }
        if kinds.contains(&ModelKind::Learned)
            && let Some(forest) = forest_at(origin)
        {
            engine.attach_forest(&forest);
        }
        // Actuals of the horizon, by step.
        let end = origin.saturating_add(HORIZON as i64 * STEP_MS);
        let actuals: Vec<(usize, f64)> = means[next..]
            .iter()
            .take_while(|m| m.0 < end)
            .map(|&(ts, v)| (((ts - origin) / STEP_MS) as usize, v))
            .collect();
        for (f, tally) in tallies.iter_mut() {
            let profile = match *f {
                Forecaster::Model(k) => engine.model_forecast(k, origin, HORIZON, &LEVELS),
                Forecaster::EnsembleUncalibrated => {
                    Some(engine.forecast_uncalibrated(origin, HORIZON, &LEVELS))
                }
                Forecaster::Ensemble => Some(engine.forecast(origin, HORIZON, &LEVELS)),
            };
            // The levels are the protocol's, valid by construction.
            let Some(Ok(profile)) = profile else { continue };
            for &(h, actual) in &actuals {
                if let Some(q) = profile.step(h) {
                    tally.add(actual, q.values());
                }
            }
            if *f == Forecaster::Ensemble {
                forecasts.push(OriginForecast {
                    origin,
                    ensemble: profile,
                });
            }
        }
        progress();
    }
    while next < means.len() {
        engine.observe(means[next].0, means[next].1);
        next += 1;
    }
    Ok(SeriesBacktest {
        forecasts,
        tallies,
        end_state: engine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_averages_buckets_and_skips_gaps_and_nan() {
        let s = [
            (0, 1.0),
            (100_000, 3.0),
            (200_000, f64::NAN),
            (900_000, 5.0),
            (950_000, 7.0),
        ];
        assert_eq!(resample(&s, STEP_MS), vec![(0, 2.0), (900_000, 6.0)]);
        assert!(resample(&[], STEP_MS).is_empty());
    }

    #[test]
    fn origins_start_at_day_3_or_day_7() {
        let o = origins(0, 7 * DAY_MS + 3 * 3_600_000).unwrap();
        assert_eq!(o, (3..=7).map(|d| d * DAY_MS).collect::<Vec<_>>());
        let o = origins(0, 20 * DAY_MS).unwrap();
        assert_eq!(o.first(), Some(&(7 * DAY_MS)));
        let err = origins(0, DAY_MS - STEP_MS).unwrap_err();
        assert_eq!(
            err,
            BacktestError::TooShort {
                span_days: 1.0,
                first_day: 3
            }
        );
        assert!(err.to_string().contains("spans 1.00 days"), "{err}");
    }

    #[test]
    fn tally_matches_the_definition() {
        let mut t = Tally::default();
        t.add(10.0, &[8.0, 9.0, 11.0, 12.0]);
        t.add(10.0, &[10.0, 10.0, 10.0, 10.0]);
        // pinball at 0.5: 1.0, 0.9: 0.9, 0.95: 0.05, 0.99: 0.02; |y| sum 20.
        let w = t.wql_per_level();
        assert!((w[0] - 0.1).abs() < 1e-12 && (w[1] - 0.09).abs() < 1e-12);
        assert!((w[2] - 0.005).abs() < 1e-12 && (w[3] - 0.002).abs() < 1e-12);
        assert_eq!(t.coverage95(), 1.0);
        assert!(Tally::default().wql().is_nan());
    }

    /// A daily cycle at 5-minute steps whose noise is `noise(day)` wide.
    fn cycle(days: i64, noise: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
        let mut x: u64 = 4242;
        (0..days * 288)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let ts = i * STEP_MS;
                let phase = ts as f64 / DAY_MS as f64 * std::f64::consts::TAU;
                let u = (x % 1_000_000) as f64 / 1e6 - 0.5;
                (ts, 20.0 + 5.0 * phase.sin() + noise(ts / DAY_MS) * u)
            })
            .collect()
    }

    #[test]
    fn day_ahead_calibration_follows_when_the_noise_triples() {
        // 13 days: origins at days 3 to 12. The noise triples from day 6:
        // the intervals must widen and cover again. (Measured: widths 1.8
        // before, 3.0 after, where a run with the larger noise throughout
        // settles at 3.2; the day of the change covers 0.69.)
        let samples = cycle(13, |day| if day < 6 { 2.0 } else { 6.0 });
        let r = backtest_series(&samples, Resource::Cpu, &[], &mut |_| None, &mut || {}).unwrap();
        assert_eq!(r.forecasts.len(), 10);
        let actual: std::collections::HashMap<i64, f64> = samples.iter().copied().collect();
        // Per origin: mean width q0.95 - q0.5, and the tally.
        let per_origin: Vec<(f64, Tally)> = r
            .forecasts
            .iter()
            .map(|f| {
                let mut t = Tally::default();
                let mut width = 0.0;
                for (h, q) in f.ensemble.steps().enumerate() {
                    let v = q.values();
                    width += (v[Q95] - v[0]) / HORIZON as f64;
                    if let Some(&y) = actual.get(&(f.origin + h as i64 * STEP_MS)) {
                        t.add(y, v);
                    }
                }
                (width, t)
            })
            .collect();
        for (i, (w, t)) in per_origin.iter().enumerate() {
            eprintln!(
                "day {}: width {w:.3} cov {:.3} wql {:.4}",
                i + 3,
                t.coverage95(),
                t.wql()
            );
        }
        let before = per_origin[2].0; // day 5
        let after = per_origin[9].0; // day 12
        assert!(
            (1.4..=4.0).contains(&(after / before)),
            "width {before} before, {after} after"
        );
        let mut late = Tally::default();
        for (_, t) in &per_origin[7..] {
            late.merge(t);
        }
        let c = late.coverage95();
        assert!((0.87..=0.99).contains(&c), "coverage95 from day 10: {c}");
    }

    #[test]
    fn a_repeating_series_is_forecast_well() {
        // Four days of a clean daily cycle at 1-minute steps plus noise.
        let mut x: u64 = 99;
        let samples: Vec<(i64, f64)> = (0..(5 * 1440))
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let ts = i as i64 * 60_000;
                let phase = ts as f64 / DAY_MS as f64 * std::f64::consts::TAU;
                (ts, 10.0 + 5.0 * phase.sin() + (x % 1000) as f64 / 1000.0)
            })
            .collect();
        let mut calls = 0;
        let r = backtest_series(&samples, Resource::Cpu, &[], &mut |_| None, &mut || {
            calls += 1
        })
        .unwrap();
        assert_eq!(calls, 2); // days 3 and 4
        assert_eq!(r.forecasts.len(), 2);
        let ens = r
            .tallies
            .iter()
            .find(|t| t.0 == Forecaster::Ensemble)
            .unwrap()
            .1;
        assert_eq!(ens.n, 2 * 288);
        assert!(ens.wql() < 0.05, "wQL {}", ens.wql());
        let hist = r
            .tallies
            .iter()
            .find(|t| t.0 == Forecaster::Model(ModelKind::Histogram))
            .unwrap()
            .1;
        assert!(ens.wql() < hist.wql(), "{} vs {}", ens.wql(), hist.wql());
    }
}
