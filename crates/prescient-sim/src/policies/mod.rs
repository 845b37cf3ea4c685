//! The reference sizing policies that Prescient is compared with, built to
//! DESIGN.md ("Reference policies") and, where it is silent, to the
//! originals (the Kubernetes VPA recommender's code, the Autopilot paper,
//! EuroSys 2020).
//!
//! | name | what | knob |
//! | --- | --- | --- |
//! | `vpa` | [`Vpa`]: decaying histogram, p90 x 1.15, memory from daily peaks and OOM bumps | target percentile (0.9) |
//! | `autopilot-mw` | [`AutopilotMw`]: weighted p95 (CPU) / window max (memory), margin, max over the last hour | margin (0.15) |
//! | `autopilot-ml` | [`AutopilotMl`]: models (decay, margin) minimising overrun + underrun + change cost | extra margin (0) |
//! | `reactive` | [`Reactive`]: the last value | margin (0.2) |
//! | `window-max` | [`WindowMaxPolicy`]: the max over the last hour | margin (0.1) |
//! | `static-equal` | [`StaticEqual`]: the host's capacity split equally | margin (0) |
//! | `static-peak` | [`StaticPeak`]: the warm-up's peak, then frozen | margin (0.1) |
//!
//! Every state keeps what does not depend on the knob once (histograms,
//! windows, model costs) and derives the allocation of each knob setting
//! from it at the end, so a sweep of ~25 settings costs about one run. The
//! only knob-dependent state is the VPA's memory OOM samples (a short list
//! per setting).
//!
//! Common conventions:
//! - A non-finite demand is a missing observation: nothing is learnt from
//!   it, and it cannot cause an OOM. A negative demand counts as 0.
//! - Margins multiply: the allocation is `base x (1 + margin)`, with the
//!   factor floored at 0. Every sweep is increasing in allocation.
//! - Before the first observation a policy recommends 0, except the VPA (its
//!   minimum, as the VPA does for an empty histogram) and `static-equal`
//!   (its share, which needs no history).

mod autopilot_ml;
mod autopilot_mw;
pub mod ensemble;
pub mod partition;
pub mod prescient;
mod simple;
mod vpa;
pub mod window;

#[cfg(test)]
mod tests;

/// The decaying histogram the VPA and Autopilot policies share; it lives in
/// `prescient-forecast`, whose histogram model uses it too.
pub use prescient_forecast::histogram;

pub use autopilot_ml::{AutopilotMl, MlConfig, MlWeights, choose_model, ml_argmin};
pub use autopilot_mw::{AutopilotMw, MwCpuStat, MwMemoryStat};
pub use simple::{Reactive, StaticEqual, StaticPeak, WindowMaxPolicy};
pub use vpa::{Vpa, VpaRecommendation, vpa_confidence, vpa_recommendation};

use crate::policy::Policy;

/// A policy name that is not one of the reference policies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy '{name}' (expected one of: {})", .expected.join(", "))]
pub struct UnknownPolicy {
    /// The name as given.
    pub name: String,
    /// The names that exist.
    pub expected: Vec<String>,
}

/// Every reference policy in its default configuration, in report order.
pub fn reference() -> Vec<Box<dyn Policy>> {
    vec![
        Box::new(Vpa::default()),
        Box::new(AutopilotMw::default()),
        Box::new(AutopilotMl::default()),
        Box::new(Reactive),
        Box::new(WindowMaxPolicy::default()),
        Box::new(StaticEqual),
        Box::new(StaticPeak),
    ]
}

/// Policies under evaluation, not part of the default report: `prescient`
/// first (see [`prescient`]), its calibrated-share variant, the forecast
/// engine's calibrated SLO quantile alone (see [`ensemble`]), and the
/// partition solver with simple empirical profiles (see [`partition`]).
pub fn experimental() -> Vec<Box<dyn Policy>> {
    vec![
        Box::new(prescient::Prescient::default()),
        Box::new(prescient::Prescient::variant(
            "prescient-share",
            prescient::Budget::Share,
            None,
        )),
        Box::new(ensemble::Ensemble::default()),
        Box::new(partition::Partition::default()),
        Box::new(partition::Partition::keep_spare()),
        Box::new(partition::Partition::proportional()),
    ]
}

/// The reference (or experimental) policy called `name`.
pub fn by_name(name: &str) -> Result<Box<dyn Policy>, UnknownPolicy> {
    let mut all = reference();
    all.extend(experimental());
    match all.iter().position(|p| p.name() == name) {
        Some(i) => Ok(all.swap_remove(i)),
        None => Err(UnknownPolicy {
            name: name.to_string(),
            expected: all.iter().map(|p| p.name().to_string()).collect(),
        }),
    }
}

/// The margin sweep shared by the margin-knob policies: -0.5 to 6.0, 44
/// settings, 0.01 apart near 0. On 5-minute VM data this takes violation
/// from tens of percent (half the usual allocation) to well under 0.1%.
/// The grid is dense where curves bend (memory's violation collapses
/// between x1.00 and x1.05): slack@X% interpolates linearly between
/// neighbouring settings, so a coarse grid would overstate a policy's slack.
pub const MARGIN_SWEEP: [f64; 44] = [
    -0.5, -0.4, -0.3, -0.25, -0.2, -0.15, -0.1, -0.08, -0.06, -0.04, -0.02, -0.01, 0.0, 0.01, 0.02,
    0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.125, 0.15, 0.175, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6,
    0.75, 0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0,
];

/// The range a user may set a margin to: a factor from 0.1 to 11.
pub const MARGIN_RANGE: (f64, f64) = (-0.9, 10.0);

/// A margin knob with `default`.
fn margin_knob(name: &'static str, default: f64) -> crate::policy::Knob {
    crate::policy::Knob {
        name,
        default,
        sweep: MARGIN_SWEEP.to_vec(),
        range: MARGIN_RANGE,
    }
}

/// The multiplying factor of each margin, floored at 0 (a non-finite
/// margin counts as 0).
fn margin_factors(knobs: &[f64]) -> Vec<f64> {
    knobs
        .iter()
        .map(|m| {
            if m.is_finite() {
                (1.0 + m).max(0.0)
            } else {
                1.0
            }
        })
        .collect()
}

/// `out[k] = base x factors[k]`, with a non-finite or negative base as 0.
fn fill_scaled(base: f64, factors: &[f64], out: &mut [f64]) {
    let base = if base.is_finite() { base.max(0.0) } else { 0.0 };
    for (o, f) in out.iter_mut().zip(factors) {
        *o = base * f;
    }
}

/// A demand as policies learn from it: `None` when missing (non-finite),
/// negative as 0.
fn usable(demand: f64) -> Option<f64> {
    demand.is_finite().then(|| demand.max(0.0))
}

/// Milliseconds in an hour.
const HOUR_MS: i64 = 3_600_000;
/// Milliseconds in a day.
const DAY_MS: i64 = 24 * HOUR_MS;
/// The 5-minute step the papers' per-step constants refer to.
const FIVE_MIN_MS: i64 = 300_000;
