//! Demand forecasting: for every workload and resource, a calibrated
//! distribution of demand (quantiles) for each step of the coming horizon.
//!
//! Pure code, no I/O: the agent and the replay simulator feed it
//! observations and read forecasts; the store persists its state.
//!
//! - [`models`]: the classic models (seasonal profile, Holt-Winters, the
//!   VPA's decaying histogram, recent level and volatility) behind the
//!   [`Model`] trait, in the enum [`models::AnyModel`];
//! - [`season`]: season detection; [`histogram`]: the decaying histogram;
//! - [`ensemble`]: per-band, per-level Hedge weights with a switching cost;
//! - [`calibrate`]: one-step quantile tracking and horizon conformal offsets;
//! - [`forecaster`]: [`SeriesForecaster`], all of the above for one series,
//!   serialisable;
//! - [`backtest`]: the day-ahead protocol of DESIGN.md;
//! - [`tails`]: one-step tail curves per host and the allocation a
//!   violation budget buys on them, for the replay policy and the agent.

pub mod anomaly;
pub mod backtest;
pub mod calibrate;
pub mod ensemble;
pub mod events;
pub mod forecaster;
pub mod histogram;
pub mod leadlag;
pub mod learned;
pub mod model;
pub mod models;
pub mod season;
pub mod stats;
pub mod tails;

pub use ensemble::{Band, Weights};
pub use forecaster::{
    ChangePoint, ForecastError, Forgotten, MAX_HORIZON, STATE_VERSION, SeriesForecaster, StateError,
};
pub use model::{DEFAULT_LEVELS, Model, SeriesContext};
pub use models::{AnyModel, ModelKind};
