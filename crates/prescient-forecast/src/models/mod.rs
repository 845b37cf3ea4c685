//! The classic models, and [`AnyModel`], the enum the engine keeps them in
//! (enum dispatch: no allocation or virtual call per update, and one serde
//! representation for the store).
//!
//! | name | model | good at |
//! | --- | --- | --- |
//! | `seasonal` | [`SeasonalProfile`]: decayed demand by time of day (and day of week), smoothed, with a decaying correction toward the current level | workloads that repeat daily or weekly; day-ahead |
//! | `holt-winters` | [`HoltWinters`]: additive Holt-Winters with a damped trend on 5-minute means, the season length found by [`crate::season`] (none when there is none), smoothing parameters refit on the recent history | seasonal series with a moving level |
//! | `histogram` | [`HistogramModel`]: the VPA's decaying histogram (24 h half-life) | a stable reference: what the VPA sees |
//! | `recent` | [`RecentLevel`]: EWMA of level and absolute deviation, fast and slow | regime shifts; one step ahead; flat series such as memory |
//!
//! Each model serialises with serde; none of them does I/O.

mod ewma;
mod histogram;
mod holt_winters;
mod seasonal;

pub use ewma::RecentLevel;
pub use histogram::HistogramModel;
pub use holt_winters::HoltWinters;
pub use seasonal::SeasonalProfile;

use std::str::FromStr;
use std::sync::OnceLock;

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use crate::learned::LearnedModel;
use crate::model::{DEFAULT_LEVELS, Model, SeriesContext};
use crate::season::Season;
use crate::stats::normal_quantile;

/// Which model: what the CLI's `--models` and the engine's configuration name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// [`SeasonalProfile`].
    Seasonal,
    /// [`HoltWinters`].
    HoltWinters,
    /// [`HistogramModel`].
    Histogram,
    /// [`RecentLevel`].
    Recent,
    /// [`LearnedModel`]: gradient-boosted quantile trees shared by all
    /// series (needs a trained forest: see [`SeriesForecaster::attach_forest`](crate::SeriesForecaster::attach_forest)).
    Learned,
}

impl ModelKind {
    /// Every classic model, in report order.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Seasonal,
        ModelKind::HoltWinters,
        ModelKind::Histogram,
        ModelKind::Recent,
    ];

    /// The model's name in reports, weights and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Seasonal => "seasonal",
            ModelKind::HoltWinters => "holt-winters",
            ModelKind::Histogram => "histogram",
            ModelKind::Recent => "recent",
            ModelKind::Learned => "learned",
        }
    }

    /// A fresh model of this kind for a series.
    pub fn build(self, ctx: SeriesContext) -> AnyModel {
        match self {
            ModelKind::Seasonal => AnyModel::Seasonal(SeasonalProfile::new(ctx)),
            ModelKind::HoltWinters => AnyModel::HoltWinters(HoltWinters::new(ctx)),
            ModelKind::Histogram => AnyModel::Histogram(HistogramModel::new(ctx)),
            ModelKind::Recent => AnyModel::Recent(RecentLevel::new(ctx)),
            ModelKind::Learned => AnyModel::Learned(LearnedModel::detached(ctx)),
        }
    }
}

/// A model name that is not one of [`ModelKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown model '{name}' (expected one of: seasonal, holt-winters, histogram, recent, learned)"
)]
pub struct UnknownModel {
    /// The name as given.
    pub name: String,
}

impl FromStr for ModelKind {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .chain([ModelKind::Learned])
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownModel {
                name: s.to_string(),
            })
    }
}

/// One of the engine's models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnyModel {
    /// [`SeasonalProfile`].
    Seasonal(SeasonalProfile),
    /// [`HoltWinters`].
    HoltWinters(HoltWinters),
    /// [`HistogramModel`].
    Histogram(HistogramModel),
    /// [`RecentLevel`].
    Recent(RecentLevel),
    /// [`LearnedModel`].
    Learned(LearnedModel),
}

impl AnyModel {
    /// Its kind.
    pub fn kind(&self) -> ModelKind {
        match self {
            AnyModel::Seasonal(_) => ModelKind::Seasonal,
            AnyModel::HoltWinters(_) => ModelKind::HoltWinters,
            AnyModel::Histogram(_) => ModelKind::Histogram,
            AnyModel::Recent(_) => ModelKind::Recent,
            AnyModel::Learned(_) => ModelKind::Learned,
        }
    }

    /// The model behind the trait.
    pub fn as_model(&self) -> &dyn Model {
        match self {
            AnyModel::Seasonal(m) => m,
            AnyModel::HoltWinters(m) => m,
            AnyModel::Histogram(m) => m,
            AnyModel::Recent(m) => m,
            AnyModel::Learned(m) => m,
        }
    }

    /// The model behind the trait, mutably.
    pub fn as_model_mut(&mut self) -> &mut dyn Model {
        match self {
            AnyModel::Seasonal(m) => m,
            AnyModel::HoltWinters(m) => m,
            AnyModel::Histogram(m) => m,
            AnyModel::Recent(m) => m,
            AnyModel::Learned(m) => m,
        }
    }
}

// Enum dispatch by hand: each arm is a direct (inlinable) call.
impl Model for AnyModel {
    fn name(&self) -> &'static str {
        self.kind().name()
    }

    fn update(&mut self, ts: TimestampMs, value: f64) {
        match self {
            AnyModel::Seasonal(m) => m.update(ts, value),
            AnyModel::HoltWinters(m) => m.update(ts, value),
            AnyModel::Histogram(m) => m.update(ts, value),
            AnyModel::Recent(m) => m.update(ts, value),
            AnyModel::Learned(m) => m.update(ts, value),
        }
    }

    fn forecast(&self, start: TimestampMs, horizon: usize, levels: &[f64], out: &mut [f64]) {
        match self {
            AnyModel::Seasonal(m) => m.forecast(start, horizon, levels, out),
            AnyModel::HoltWinters(m) => m.forecast(start, horizon, levels, out),
            AnyModel::Histogram(m) => m.forecast(start, horizon, levels, out),
            AnyModel::Recent(m) => m.forecast(start, horizon, levels, out),
            AnyModel::Learned(m) => m.forecast(start, horizon, levels, out),
        }
    }

    fn state_bytes(&self) -> usize {
        self.as_model().state_bytes()
    }

    fn season_changed(&mut self, season: &Season, recent: &[f64]) {
        self.as_model_mut().season_changed(season, recent)
    }
}

/// Standard normal quantiles of `levels` into `z` (cached for
/// [`DEFAULT_LEVELS`], which the engine's fast path uses every step).
pub(crate) fn z_scores(levels: &[f64], z: &mut [f64]) {
    static DEFAULT_Z: OnceLock<[f64; DEFAULT_LEVELS.len()]> = OnceLock::new();
    if levels == DEFAULT_LEVELS {
        let d = DEFAULT_Z.get_or_init(|| DEFAULT_LEVELS.map(normal_quantile));
        z.iter_mut().zip(d).for_each(|(o, v)| *o = *v);
    } else {
        z.iter_mut()
            .zip(levels)
            .for_each(|(o, &l)| *o = normal_quantile(l));
    }
}

/// Writes `center + z_i * sigma` for each level into `row` (floored at 0;
/// a non-finite centre or spread counts as 0).
pub(crate) fn normal_row(center: f64, sigma: f64, z: &[f64], row: &mut [f64]) {
    let c = if center.is_finite() { center } else { 0.0 };
    let s = if sigma.is_finite() {
        sigma.max(0.0)
    } else {
        0.0
    };
    for (o, &zi) in row.iter_mut().zip(z) {
        *o = (c + zi * s).max(0.0);
    }
}

/// The number of whole rows of `levels.len()` that fit in `out`, at most
/// `horizon` (so a wrongly sized buffer is filled as far as it goes).
pub(crate) fn rows(horizon: usize, levels: &[f64], out: &[f64]) -> usize {
    if levels.is_empty() {
        0
    } else {
        horizon.min(out.len() / levels.len())
    }
}

#[cfg(test)]
mod tests;
