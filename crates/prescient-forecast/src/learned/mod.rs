//! A learned model: gradient-boosted quantile trees trained across series.
//!
//! Per-series history is often short (a day), so the model is global: one
//! forest learns from every series, each scaled by its own recent mean, so
//! cores and bytes look alike. It forecasts the mean over buckets of its step
//! (5 minutes by default) for 1 to 288 buckets ahead directly, the horizon
//! being a feature, at a set of quantile levels (by default
//! [`DEFAULT_LEVELS`](crate::DEFAULT_LEVELS)) that share their trees.
//!
//! - [`train`] (or [`TrainingSet::build`] then [`TrainingSet::fit`]) turns
//!   [`TrainingSeries`] into a [`QuantileForest`], deterministically for a
//!   seed. Only the past of each training origin enters its features; cut the
//!   series with [`TrainingSeries::before`] to train on the past of a replay.
//! - [`QuantileForest::to_bytes`] / [`from_bytes`](QuantileForest::from_bytes)
//!   store the forest once (not per series), versioned.
//! - [`LearnedModel`] is the per-series [`Model`](crate::Model): a week of its
//!   series' bucket means ([`LearnedState`], serialisable) and a
//!   [`SharedForest`] handle, through which a retrained forest is swapped in
//!   for every series at once.
//!
//! Features ([`FEATURE_NAMES`]): the horizon; the latest buckets (lags 1, 2, 3,
//! 6 and 12 at 5 minutes); mean, max and spread over the last hour, six hours
//! and day; the last day's 0.5 to 0.99 quantiles; how much of the last day has
//! data; time of day and day of week of the target (sin/cos); the target's
//! bucket yesterday (and the mean and max around it) and last week. Lags and
//! windows are spans of time, so another step keeps their meaning.
//!
//! Boosting starts each level at the series' own empirical quantile of its
//! last day (what a per-series model would say), and the trees learn how to
//! correct it from the pooled data: that starting point is where most of the
//! accuracy on held-out series comes from, since trees approximate "the
//! series' own 0.99 quantile" only coarsely but adjust it well. How the trees
//! are grown, and why this is our own code rather than a crate, is in the
//! `gbt` module.

mod adapter;
mod features;
mod forest;
mod gbt;
mod rng;
mod train;

#[cfg(test)]
mod tests;

pub use adapter::{LearnedModel, LearnedState, STATE_FORMAT_VERSION, SharedForest};
pub use features::{FEATURE_NAMES, N_FEATURES};
pub use forest::{FOREST_FORMAT_VERSION, MAX_LEVELS, QuantileForest, TrainInfo};
pub use train::{TrainConfig, TrainingSeries, TrainingSet, train};

/// What can go wrong training, loading or swapping a learned model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnedError {
    /// A training setting out of range.
    #[error("learned model: invalid training setting {field}: {reason}")]
    InvalidConfig {
        /// The [`TrainConfig`] field.
        field: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A training series that cannot be used.
    #[error("learned model: training series #{index}: {reason}")]
    InvalidSeries {
        /// Position of the series in the input.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Too few training rows to grow a tree.
    #[error(
        "learned model: {rows} training rows, at least {needed} needed (series too short, all gaps, or all zero?)"
    )]
    NotEnoughData {
        /// Rows the series gave.
        rows: usize,
        /// Rows needed (two leaves' worth).
        needed: usize,
    },
    /// Bytes that do not start like a serialised forest.
    #[error("not a learned forest: the bytes do not start with the forest's magic number")]
    NotAForest,
    /// Bytes that do not start like a serialised model state.
    #[error("not a learned model state: the bytes do not start with the state's magic number")]
    NotAState,
    /// A format version this build does not read.
    #[error(
        "{what} format version {found} is not supported: this build reads version {supported}; retrain or upgrade"
    )]
    UnsupportedVersion {
        /// "forest" or "learned model state".
        what: &'static str,
        /// The version in the bytes.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Bytes of a supported version that do not decode.
    #[error("learned model: cannot decode: {0}")]
    Decode(String),
    /// Serialisation failed.
    #[error("learned model: cannot encode: {0}")]
    Encode(String),
    /// Decoded, but inconsistent (would not be safe to evaluate).
    #[error("learned model: corrupt: {0}")]
    Corrupt(String),
    /// A forest or state at another step than the one in use.
    #[error(
        "learned model: the history is kept in buckets of {kept_ms} ms, the forest forecasts buckets of {new_ms} ms"
    )]
    StepMismatch {
        /// The step in use (kept history).
        kept_ms: i64,
        /// The step of the forest offered.
        new_ms: i64,
    },
}
