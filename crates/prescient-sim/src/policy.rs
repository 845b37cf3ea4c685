//! The interface between the replay engine and a sizing policy.
//!
//! A [`Policy`] is a configured recommender (VPA, Autopilot, ...). For each
//! series it starts a [`SeriesState`], which the engine drives step by step:
//!
//! ```text
//! for each step t:
//!     state.recommend(&mut alloc)          // from what it saw up to t-1
//!     (contended: policy.arbitrate per host)
//!     served = min(demand[t], alloc)
//!     state.observe(ts[t], demand[t], &alloc)
//! ```
//!
//! Every policy has one knob (VPA: the target percentile; the others: a
//! margin). A sweep runs many knob settings, and most of a policy's state
//! (histograms, decayed sums) does not depend on the knob, so one state
//! serves every setting at once: `recommend` fills one allocation per
//! setting, and `observe` gets the allocation each setting had (which
//! matters for knob-dependent events such as an OOM kill).

use prescient_core::{SeriesKey, TimestampMs};

/// What a policy is told about a series when it starts sizing it.
#[derive(Debug, Clone)]
pub struct SeriesInfo<'a> {
    /// Host, workload and resource.
    pub key: &'a SeriesKey,
    /// The trace's step (time between samples).
    pub step_ms: i64,
    /// Steps before scoring starts.
    pub warmup_steps: usize,
    /// The host's capacity for this resource, when the run has one.
    pub host_capacity: Option<f64>,
    /// How many workloads share the host for this resource.
    pub host_workloads: usize,
}

/// The knob a policy sweeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Knob {
    /// What it is, e.g. "target percentile" or "margin".
    pub name: &'static str,
    /// The policy's own default setting.
    pub default: f64,
    /// Settings tried by a sweep, in increasing order of allocation size
    /// (so violation falls along the sweep).
    pub sweep: Vec<f64>,
    /// The range a user may set with `--knob`, inclusive.
    pub range: (f64, f64),
}

/// A configured sizing policy.
pub trait Policy: Send + Sync {
    /// Short name used on the command line and in reports, e.g. "vpa".
    fn name(&self) -> &str;

    /// One line on what it does, for `--help` and reports.
    fn describe(&self) -> &str;

    /// The knob it sweeps.
    fn knob(&self) -> Knob;

    /// Whether it can size this series; `Err` says why not (e.g. an equal
    /// share needs a host capacity). The engine reports the reason and
    /// leaves the policy out.
    fn check(&self, _series: &SeriesInfo<'_>) -> Result<(), String> {
        Ok(())
    }

    /// A fresh state for one series, which will produce one allocation per
    /// entry of `knobs`.
    fn start(&self, series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState>;

    /// Splits a host's capacity when the allocations asked for exceed it.
    /// `requests` are the allocations the policy's states recommended; the
    /// granted allocations go to `out` and must sum to at most `capacity`.
    /// The default scales every request down in proportion.
    fn arbitrate(&self, requests: &[f64], capacity: f64, out: &mut [f64]) {
        scale_down_proportionally(requests, capacity, out);
    }
}

/// Per-series state of a policy.
pub trait SeriesState: Send {
    /// The allocation for the next step, one per knob setting.
    fn recommend(&mut self, out: &mut [f64]);

    /// What happened at the step starting at `ts`: the workload's demand and
    /// the allocation each knob setting gave it (after any arbitration).
    fn observe(&mut self, ts: TimestampMs, demand: f64, allocations: &[f64]);
}

/// Proportional arbitration: when the requests sum above `capacity`, every
/// request is multiplied by `capacity / sum`; otherwise they are granted.
pub fn scale_down_proportionally(requests: &[f64], capacity: f64, out: &mut [f64]) {
    let total: f64 = requests.iter().sum();
    let factor = if total > capacity && total > 0.0 {
        capacity / total
    } else {
        1.0
    };
    for (o, r) in out.iter_mut().zip(requests) {
        *o = r * factor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_scaling_only_when_over() {
        let mut out = [0.0; 3];
        scale_down_proportionally(&[1.0, 2.0, 1.0], 8.0, &mut out);
        assert_eq!(out, [1.0, 2.0, 1.0]);
        scale_down_proportionally(&[1.0, 2.0, 1.0], 2.0, &mut out);
        assert_eq!(out, [0.5, 1.0, 0.5]);
    }
}
