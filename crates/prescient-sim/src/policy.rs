//! The interface between the replay engine and a sizing policy.
//!
//! A [`Policy`] is a configured recommender (VPA, Autopilot, Prescient...).
//! For each host the engine starts a [`HostState`], which it drives step by
//! step:
//!
//! ```text
//! for each step t:
//!     host.allocate(ts, present, capacity, &mut alloc)   // from what it saw up to t-1
//!     served = min(demand[t], alloc)  (or shares)
//!     host.observe(ts, present, demand[t], &alloc)
//! ```
//!
//! A host state sees all the host's workloads together, as an agent on that
//! machine would: it may pool what it learns across them and split a
//! contended capacity as it sees fit. Most policies size each workload on
//! its own: they implement [`Policy::start`] with a [`SeriesState`] per
//! series, and the default [`Policy::start_host`] runs those side by side and
//! calls [`Policy::arbitrate`] when a host is over its capacity.
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

    /// A fresh state for one host whose series are `series`. The default
    /// sizes each series with its own [`Policy::start`] state and splits a
    /// contended capacity with [`Policy::arbitrate`].
    fn start_host<'a>(
        &'a self,
        series: &[SeriesInfo<'_>],
        knobs: &[f64],
    ) -> Box<dyn HostState + 'a> {
        Box::new(PerSeries {
            policy: self,
            states: series.iter().map(|s| self.start(s, knobs)).collect(),
            knobs: knobs.len(),
            column_in: vec![0.0; series.len()],
            column_out: vec![0.0; series.len()],
        })
    }

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

/// The state of a policy for all the series of one host.
pub trait HostState: Send {
    /// Allocations for the next step of the series listed in `present`
    /// (indices into the host's series, increasing): `out[i * k + j]` is
    /// series `present[i]` at knob setting `j` of `k`. With a `capacity`,
    /// each setting's allocations should sum to at most it (the engine
    /// scales down any that do not).
    fn allocate(
        &mut self,
        ts: TimestampMs,
        present: &[usize],
        capacity: Option<f64>,
        out: &mut [f64],
    );

    /// What happened at the step: `demands[i]` of series `present[i]`, and
    /// the allocations it was granted, laid out as in `allocate`.
    fn observe(&mut self, ts: TimestampMs, present: &[usize], demands: &[f64], allocations: &[f64]);
}

/// The default host state: one [`SeriesState`] per series, arbitrated by
/// the policy when over capacity.
struct PerSeries<'a, P: ?Sized> {
    policy: &'a P,
    states: Vec<Box<dyn SeriesState>>,
    knobs: usize,
    column_in: Vec<f64>,
    column_out: Vec<f64>,
}

impl<P: Policy + ?Sized> HostState for PerSeries<'_, P> {
    fn allocate(
        &mut self,
        _ts: TimestampMs,
        present: &[usize],
        capacity: Option<f64>,
        out: &mut [f64],
    ) {
        let k = self.knobs;
        for (i, &s) in present.iter().enumerate() {
            self.states[s].recommend(&mut out[i * k..(i + 1) * k]);
        }
        let Some(cap) = capacity else { return };
        let m = present.len();
        for j in 0..k {
            for i in 0..m {
                self.column_in[i] = out[i * k + j];
            }
            self.policy
                .arbitrate(&self.column_in[..m], cap, &mut self.column_out[..m]);
            for i in 0..m {
                out[i * k + j] = self.column_out[i];
            }
        }
    }

    fn observe(
        &mut self,
        ts: TimestampMs,
        present: &[usize],
        demands: &[f64],
        allocations: &[f64],
    ) {
        let k = self.knobs;
        for (i, &s) in present.iter().enumerate() {
            self.states[s].observe(ts, demands[i], &allocations[i * k..(i + 1) * k]);
        }
    }
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
