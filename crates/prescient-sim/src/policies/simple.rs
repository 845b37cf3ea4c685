//! The simple policies people run when they run nothing clever: the last
//! value, the recent maximum, an equal share, and sizing once from history.

use prescient_core::TimestampMs;

use super::window::WindowMax;
use super::{HOUR_MS, fill_scaled, margin_factors, margin_knob, usable};
use crate::policy::{Knob, Policy, SeriesInfo, SeriesState};

/// The last observed demand times (1 + margin); 0 before the first.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reactive;

impl Policy for Reactive {
    fn name(&self) -> &str {
        "reactive"
    }

    fn describe(&self) -> &str {
        "the last observed value x (1 + margin)"
    }

    fn knob(&self) -> Knob {
        margin_knob("margin", 0.2)
    }

    fn start(&self, _series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState> {
        Box::new(BaseState {
            base: 0.0,
            factors: margin_factors(knobs),
            rule: Rule::Last,
        })
    }
}

/// The maximum over the last hour times (1 + margin); 0 before the first
/// observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowMaxPolicy {
    /// The window: 1 hour.
    pub window_ms: i64,
}

impl Default for WindowMaxPolicy {
    fn default() -> Self {
        WindowMaxPolicy { window_ms: HOUR_MS }
    }
}

impl Policy for WindowMaxPolicy {
    fn name(&self) -> &str {
        "window-max"
    }

    fn describe(&self) -> &str {
        "the maximum over the last hour x (1 + margin)"
    }

    fn knob(&self) -> Knob {
        margin_knob("margin", 0.1)
    }

    fn start(&self, _series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState> {
        Box::new(BaseState {
            base: 0.0,
            factors: margin_factors(knobs),
            rule: Rule::Window(WindowMax::new(self.window_ms)),
        })
    }
}

/// An equal share of the host, `capacity / workloads x (1 + margin)`,
/// fixed from the start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StaticEqual;

impl Policy for StaticEqual {
    fn name(&self) -> &str {
        "static-equal"
    }

    fn describe(&self) -> &str {
        "an equal share of the host's capacity x (1 + margin), never changed"
    }

    fn knob(&self) -> Knob {
        margin_knob("margin", 0.0)
    }

    fn check(&self, series: &SeriesInfo<'_>) -> Result<(), String> {
        match series.host_capacity {
            None => Err("needs a host capacity (--capacity)".to_string()),
            Some(c) if !(c.is_finite() && c >= 0.0) => Err(format!(
                "needs a finite, non-negative host capacity (got {c})"
            )),
            Some(_) => Ok(()),
        }
    }

    /// Without a usable capacity (which `check` refuses) the share is 0.
    fn start(&self, series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState> {
        let share = match series.host_capacity {
            Some(c) if c.is_finite() && c >= 0.0 => c / series.host_workloads.max(1) as f64,
            _ => 0.0,
        };
        Box::new(BaseState {
            base: share,
            factors: margin_factors(knobs),
            rule: Rule::Fixed,
        })
    }
}

/// The peak of the warm-up (the first `warmup_steps` observations, at
/// least one) times (1 + margin), then frozen; during the warm-up, the
/// running peak; 0 before the first observation. What a person does who
/// sizes a workload once from a day of history.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StaticPeak;

impl Policy for StaticPeak {
    fn name(&self) -> &str {
        "static-peak"
    }

    fn describe(&self) -> &str {
        "the warm-up's peak x (1 + margin), then frozen"
    }

    fn knob(&self) -> Knob {
        margin_knob("margin", 0.1)
    }

    fn start(&self, series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState> {
        Box::new(BaseState {
            base: 0.0,
            factors: margin_factors(knobs),
            // A warm-up of 0 steps would freeze at 0; size from one step.
            rule: Rule::PeakFor(series.warmup_steps.max(1)),
        })
    }
}

#[derive(Debug, Clone)]
enum Rule {
    Last,
    Window(WindowMax),
    Fixed,
    /// Steps (observations, missing or not) left in the warm-up.
    PeakFor(usize),
}

/// A knob-independent base times each setting's factor.
#[derive(Debug, Clone)]
struct BaseState {
    base: f64,
    factors: Vec<f64>,
    rule: Rule,
}

impl SeriesState for BaseState {
    fn recommend(&mut self, out: &mut [f64]) {
        fill_scaled(self.base, &self.factors, out);
    }

    fn observe(&mut self, ts: TimestampMs, demand: f64, _allocations: &[f64]) {
        let v = usable(demand);
        match &mut self.rule {
            Rule::Last => {
                if let Some(v) = v {
                    self.base = v;
                }
            }
            Rule::Window(w) => {
                if let Some(v) = v {
                    w.push(ts, v);
                    self.base = w.max().unwrap_or(0.0);
                }
            }
            Rule::Fixed => {}
            Rule::PeakFor(left) => {
                if *left > 0 {
                    *left -= 1;
                    if let Some(v) = v {
                        self.base = self.base.max(v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prescient_core::{Resource, SeriesKey};

    use super::*;

    const MIN5: i64 = 300_000;

    fn info(key: &SeriesKey, capacity: Option<f64>, warmup: usize) -> SeriesInfo<'_> {
        SeriesInfo {
            key,
            step_ms: MIN5,
            warmup_steps: warmup,
            host_capacity: capacity,
            host_workloads: 4,
        }
    }

    fn run(p: &dyn Policy, capacity: Option<f64>, knobs: &[f64], demand: &[f64]) -> Vec<Vec<f64>> {
        let key = SeriesKey::new("h", "w", Resource::Cpu);
        let mut s = p.start(&info(&key, capacity, 3), knobs);
        let mut recs = Vec::new();
        for (i, &d) in demand.iter().enumerate() {
            let mut out = vec![0.0; knobs.len()];
            s.recommend(&mut out);
            recs.push(out.clone());
            s.observe(i as i64 * MIN5, d, &out);
        }
        recs
    }

    #[test]
    fn reactive_is_the_last_value_times_the_margin() {
        let r = run(&Reactive, None, &[0.2, 0.0], &[1.0, 2.0, f64::NAN, 0.5]);
        assert_eq!(r[0], vec![0.0, 0.0]);
        assert_eq!(r[1], vec![1.2, 1.0]);
        assert_eq!(r[2], vec![2.4, 2.0]);
        // A missing value keeps the last one.
        assert_eq!(r[3], vec![2.4, 2.0]);
    }

    #[test]
    fn window_max_covers_the_last_hour() {
        let mut demand = vec![5.0];
        demand.extend(std::iter::repeat_n(1.0, 13));
        let r = run(&WindowMaxPolicy::default(), None, &[0.1], &demand);
        // After 12 samples (one hour) the 5.0 is still in; after 13, gone.
        assert_eq!(r[12], vec![5.5]);
        assert_eq!(r[13], vec![1.1]);
    }

    #[test]
    fn static_equal_needs_a_capacity_and_never_changes() {
        let key = SeriesKey::new("h", "w", Resource::Cpu);
        let err = StaticEqual.check(&info(&key, None, 36)).unwrap_err();
        assert_eq!(err, "needs a host capacity (--capacity)");
        assert!(StaticEqual.check(&info(&key, Some(f64::NAN), 36)).is_err());
        assert!(StaticEqual.check(&info(&key, Some(4.0), 36)).is_ok());
        let r = run(&StaticEqual, Some(4.0), &[0.0, 0.5], &[9.0, 0.1]);
        assert_eq!(r, vec![vec![1.0, 1.5], vec![1.0, 1.5]]);
        // Started anyway without a capacity: 0.
        assert_eq!(run(&StaticEqual, None, &[0.0], &[1.0]), vec![vec![0.0]]);
    }

    #[test]
    fn static_peak_freezes_after_the_warm_up() {
        // Warm-up of 3 steps.
        let r = run(&StaticPeak, None, &[0.1], &[1.0, 3.0, 2.0, 10.0, 0.0]);
        let got: Vec<f64> = r.iter().map(|v| v[0]).collect();
        assert_eq!(
            got,
            vec![
                0.0,
                1.1,
                3.3000000000000003,
                3.3000000000000003,
                3.3000000000000003
            ]
        );
    }
}
