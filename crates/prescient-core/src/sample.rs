use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (live data) or since the start of a
/// trace (recorded data). The store and the live agent use this unit
/// throughout; the trace format counts seconds and converts on import.
pub type TimestampMs = i64;

/// One observation of a series: mean usage over the step that starts at `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Start of the step the value covers.
    pub ts: TimestampMs,
    /// Mean usage over the step, in the resource's unit.
    pub value: f64,
}

impl Sample {
    /// A sample at `ts` with `value`.
    pub fn new(ts: TimestampMs, value: f64) -> Self {
        Sample { ts, value }
    }
}

/// The rate of a cumulative counter: `(cur - prev)` per second over
/// `elapsed_ms`; `None` when the counter went back (it was reset: a cgroup
/// or process recreated, an interface re-added, a wrap) or no time passed.
/// The live rates and the rates rederived from stored counters both come
/// from this.
pub fn counter_rate(cur: u64, prev: u64, elapsed_ms: i64) -> Option<f64> {
    if elapsed_ms <= 0 || cur < prev {
        return None;
    }
    Some((cur - prev) as f64 * 1000.0 / elapsed_ms as f64)
}
