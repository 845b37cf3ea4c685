//! The scores of `DESIGN.md`, over every scored (workload, step):
//!
//! - violation = share of (workload, step) where the workload was short
//!   (demand above what it was served);
//! - unmet = Σ(demand − served) / Σ demand;
//! - slack = Σ(allocation − served) / Σ allocation;
//! - slack@X% = the slack where the curve of a policy swept over its knob
//!   crosses violation X%, interpolated linearly between the two nearest
//!   settings.

use serde::Serialize;

/// Running sums over scored (workload, step) pairs; tallies add up.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Scored (workload, step) pairs.
    pub steps: u64,
    /// Pairs where the workload was short.
    pub short: u64,
    /// Σ demand.
    pub demand: f64,
    /// Σ served.
    pub served: f64,
    /// Σ allocation.
    pub allocated: f64,
}

impl Tally {
    /// Adds one scored (workload, step). Under a hard limit `served` is
    /// `min(demand, allocation)`; under shares it may exceed the allocation.
    #[inline]
    pub fn add(&mut self, demand: f64, allocation: f64, served: f64) {
        self.steps += 1;
        if demand > served {
            self.short += 1;
        }
        self.demand += demand;
        self.served += served;
        self.allocated += allocation;
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        self.steps += other.steps;
        self.short += other.short;
        self.demand += other.demand;
        self.served += other.served;
        self.allocated += other.allocated;
    }

    /// The scores.
    pub fn score(&self) -> Score {
        Score {
            violation: ratio(self.short as f64, self.steps as f64),
            unmet: ratio(self.demand - self.served, self.demand),
            slack: ratio(self.allocated - self.served, self.allocated),
            steps: self.steps,
            mean_allocation: ratio(self.allocated, self.steps as f64),
        }
    }
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 { num / den } else { 0.0 }
}

/// A policy's scores at one knob setting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// Share of scored (workload, step) where demand exceeded what was served.
    pub violation: f64,
    /// Share of demand not served.
    pub unmet: f64,
    /// Share of the allocation not used.
    pub slack: f64,
    /// Number of scored (workload, step) pairs.
    pub steps: u64,
    /// Mean allocation per scored (workload, step), in the resource's unit.
    pub mean_allocation: f64,
}

/// How a curve meets a violation level (see [`Curve::crossing`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "slack")]
pub enum Crossing {
    /// The curve crosses the level at this slack.
    At(f64),
    /// Every setting stays under the level; the least slack among them.
    AllBelow(f64),
    /// No setting gets down to the level.
    NotReached,
}

/// A policy's scores along its knob, in sweep order (growing allocation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Curve {
    /// `(knob setting, score)` pairs.
    pub points: Vec<(f64, Score)>,
}

impl Curve {
    /// The slack where the curve crosses violation `target` (a fraction,
    /// 0.01 for 1%), interpolated linearly in violation between the two
    /// neighbouring settings that bracket it. Along the sweep the first
    /// crossing counts (the least allocation that reaches the target).
    /// `None` when the curve never reaches the target.
    pub fn slack_at(&self, target: f64) -> Option<f64> {
        for pair in self.points.windows(2) {
            let (a, b) = (pair[0].1, pair[1].1);
            let (hi, lo) = if a.violation >= b.violation {
                (a, b)
            } else {
                (b, a)
            };
            if hi.violation >= target && target >= lo.violation {
                if hi.violation == lo.violation {
                    return Some(hi.slack.min(lo.slack));
                }
                let t = (hi.violation - target) / (hi.violation - lo.violation);
                return Some(hi.slack + t * (lo.slack - hi.slack));
            }
        }
        // A single setting that lands exactly on the target.
        self.points
            .iter()
            .find(|(_, s)| s.violation == target)
            .map(|(_, s)| s.slack)
    }

    /// Where the curve stands against violation `target`: crossing it (the
    /// interpolated slack), entirely under it (then the least slack of any
    /// setting, an upper bound on the slack at the target), or above it.
    pub fn crossing(&self, target: f64) -> Crossing {
        if let Some(slack) = self.slack_at(target) {
            return Crossing::At(slack);
        }
        match self.best_within(target) {
            Some((_, score)) if self.points.iter().all(|(_, s)| s.violation <= target) => {
                Crossing::AllBelow(score.slack)
            }
            _ => Crossing::NotReached,
        }
    }

    /// The setting whose violation is closest to `target` without exceeding
    /// it, if any.
    pub fn best_within(&self, target: f64) -> Option<(f64, Score)> {
        self.points
            .iter()
            .filter(|(_, s)| s.violation <= target)
            .min_by(|a, b| a.1.slack.total_cmp(&b.1.slack))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(violation: f64, slack: f64) -> Score {
        Score {
            violation,
            unmet: 0.0,
            slack,
            steps: 1,
            mean_allocation: 0.0,
        }
    }

    #[test]
    fn hand_computed_tally() {
        // Three steps under a hard limit:
        //   demand 1, alloc 2 → served 1 (slack 1)
        //   demand 3, alloc 2 → served 2 (short by 1)
        //   demand 2, alloc 2 → served 2
        let mut t = Tally::default();
        for (d, a) in [(1.0, 2.0), (3.0, 2.0), (2.0, 2.0)] {
            t.add(d, a, f64::min(d, a));
        }
        let s = t.score();
        assert_eq!(s.steps, 3);
        assert!((s.violation - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.unmet - 1.0 / 6.0).abs() < 1e-12);
        assert!((s.slack - 1.0 / 6.0).abs() < 1e-12);
        assert!((s.mean_allocation - 2.0).abs() < 1e-12);
    }

    #[test]
    fn empty_tally_scores_zero() {
        let s = Tally::default().score();
        assert_eq!((s.violation, s.unmet, s.slack), (0.0, 0.0, 0.0));
    }

    #[test]
    fn slack_at_interpolates_between_the_bracketing_settings() {
        let curve = Curve {
            points: vec![
                (0.0, score(0.20, 0.10)),
                (0.5, score(0.04, 0.30)),
                (1.0, score(0.00, 0.50)),
            ],
        };
        // 1% lies between 4% (slack 0.3) and 0% (slack 0.5): a quarter of the way.
        assert!((curve.slack_at(0.01).unwrap() - 0.45).abs() < 1e-12);
        assert!((curve.slack_at(0.12).unwrap() - 0.20).abs() < 1e-12);
        assert_eq!(curve.slack_at(0.04), Some(0.30));
        assert_eq!(curve.slack_at(0.5), None);
        let short = Curve {
            points: vec![(0.0, score(0.2, 0.1)), (1.0, score(0.05, 0.2))],
        };
        assert_eq!(short.slack_at(0.01), None);
        assert_eq!(curve.best_within(0.05).unwrap().0, 0.5);
        assert_eq!(curve.crossing(0.01), Crossing::At(0.45));
        assert_eq!(curve.crossing(0.5), Crossing::AllBelow(0.10));
        assert_eq!(short.crossing(0.01), Crossing::NotReached);
    }
}
