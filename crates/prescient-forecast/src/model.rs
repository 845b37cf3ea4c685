//! The interface every forecasting model implements.

use prescient_core::{Resource, TimestampMs};

/// The quantile levels the engine forecasts at unless asked for others:
/// dense in the upper tail, where allocations are decided.
pub const DEFAULT_LEVELS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999,
];

/// What a model knows about the series it forecasts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesContext {
    /// Time between observations.
    pub step_ms: i64,
    /// The resource (memory and CPU behave differently: memory leaks,
    /// CPU spikes).
    pub resource: Resource,
}

/// A forecasting model of one series.
///
/// The engine calls `update` with each observation in time order (finite
/// values only; a gap in time means missing observations), then asks for
/// forecasts. Both must be cheap: `update` in constant amortised time.
pub trait Model: Send {
    /// Short name for reports and weights ("seasonal", "ets", ...).
    fn name(&self) -> &'static str;

    /// Learns from the observation at `ts`.
    fn update(&mut self, ts: TimestampMs, value: f64);

    /// Quantiles of demand for the `horizon` steps starting at `start`
    /// (`start`, `start + step`, ...), at `levels` (strictly increasing in
    /// (0, 1)), row-major into `out` (`out[h * levels.len() + i]`, length
    /// `horizon * levels.len()`). Each row is non-decreasing and >= 0.
    /// Before the model has seen enough to say anything, it says what it can
    /// (e.g. the last value) rather than failing.
    fn forecast(&self, start: TimestampMs, horizon: usize, levels: &[f64], out: &mut [f64]);

    /// Approximate size of the model's state in bytes (budget: 64 KiB a
    /// series for all models together).
    fn state_bytes(&self) -> usize;

    /// Told when the engine's season detector has (re)examined the series:
    /// `season` is what it found, `recent` the series' recent history as
    /// means over `season.bucket_ms` buckets (oldest first, `NaN` where a
    /// bucket had no observation), the last one ending where the latest
    /// completed bucket ends. Models that use a season refit here; the
    /// default ignores it. Called rarely (about twice a day of series time).
    fn season_changed(&mut self, season: &crate::season::Season, recent: &[f64]) {
        let _ = (season, recent);
    }
}
