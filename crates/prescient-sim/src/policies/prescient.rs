//! `prescient`: each workload's allocation for the next step is the
//! calibrated SLO quantile of its forecast demand.
//!
//! One [`SeriesForecaster`] per workload (the forecast engine's models,
//! ensemble and online calibration), fed every observation. The knob is the
//! SLO quantile: the share of steps a workload's demand should fit in its
//! allocation. Each swept quantile is calibrated on its own
//! ([`SeriesForecaster::track_level`]), so a workload at SLO 0.99 really is
//! short about 1% of the time, whatever its forecast's shape.

use prescient_core::TimestampMs;
use prescient_forecast::{ModelKind, SeriesContext, SeriesForecaster};

use crate::policy::{Knob, Policy, SeriesInfo, SeriesState};

/// SLO quantiles a sweep runs.
pub const SLO_SWEEP: [f64; 22] = [
    0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99, 0.9925,
    0.995, 0.996, 0.997, 0.998, 0.999, 0.9995,
];

/// The forecast-driven policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prescient {
    /// The forecast models (empty: every classic model).
    pub models: Vec<ModelKind>,
}

impl Policy for Prescient {
    fn name(&self) -> &str {
        "prescient"
    }

    fn describe(&self) -> &str {
        "the calibrated SLO quantile of each workload's one-step demand forecast"
    }

    fn knob(&self) -> Knob {
        Knob {
            name: "SLO quantile",
            default: 0.95,
            sweep: SLO_SWEEP.to_vec(),
            range: (0.5, 0.9995),
        }
    }

    fn start(&self, series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState> {
        Box::new(Workload::new(self, series, knobs))
    }
}

/// One workload's forecaster.
struct Workload {
    forecaster: SeriesForecaster,
    knobs: Vec<f64>,
}

impl Workload {
    fn new(policy: &Prescient, series: &SeriesInfo<'_>, knobs: &[f64]) -> Self {
        let ctx = SeriesContext {
            step_ms: series.step_ms,
            resource: series.key.resource,
        };
        let mut forecaster = SeriesForecaster::new(ctx, &policy.models);
        for &k in knobs {
            forecaster.track_level(k);
        }
        Workload {
            forecaster,
            knobs: knobs.to_vec(),
        }
    }
}

impl SeriesState for Workload {
    fn recommend(&mut self, out: &mut [f64]) {
        self.forecaster.one_step(&self.knobs, out);
    }

    fn observe(&mut self, ts: TimestampMs, demand: f64, _allocations: &[f64]) {
        self.forecaster.observe(ts, demand);
    }
}
