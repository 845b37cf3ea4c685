//! The partition solver as a host's arbitration, with the simplest demand
//! profiles: each series' empirical distribution over a recent window.
//!
//! This measures the solver before the forecast engine exists: every step,
//! each workload's profile is the quantiles of its last `window` demands,
//! and a contended host is split by `prescient-solver` (SLO quantile = the
//! knob; spare capacity lent by marginal gain, then spread). Without a
//! capacity, a workload gets the knob's quantile of its window, like a
//! recommender's percentile. `partition-proportional` uses the same
//! profiles but splits a contended host the way the reference policies do
//! (each workload asks its SLO quantile; asks are scaled down in
//! proportion), to separate what the solver adds from what the profiles do.
//!
//! Priorities are what a user would configure: critical workloads (one in
//! `critical_one_in`, by a hash of the name) get a priority class, a weight
//! within their class and an SLO quantile. The profiles may weight recent
//! demand more ([`Profile::Decaying`]), which sharpens every forecast and
//! makes protecting critical workloads cheaper for the others.

use std::collections::VecDeque;
use std::sync::Arc;

use prescient_core::{Resource, ResourcePolicy, TimestampMs, WorkloadId};
use prescient_solver::{Demand, Pool, Problem, Solver, Spare, Workload, WorkloadResource};

use crate::policy::{HostState, Knob, Policy, SeriesInfo, SeriesState, scale_down_proportionally};

/// How a contended host is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arbitration {
    /// `prescient-solver`.
    Solver,
    /// Each workload's SLO quantile, scaled down in proportion when over.
    Proportional,
}

/// How a workload's demand profile is made from its history.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Profile {
    /// The quantiles of its demands over the window: what it needs over a
    /// day, whatever the hour.
    #[default]
    Window,
    /// The quantiles of its demands over the window, each weighted
    /// `2^(-age / half_life)` (in steps): recent demand counts more.
    Decaying {
        /// Half-life of a sample's weight, in steps.
        half_life: f64,
    },
}

/// The levels of the empirical profiles: the forecast engine's defaults.
pub const PROFILE_LEVELS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999,
];

/// Empirical profiles split by the partition solver.
#[derive(Debug, Clone, PartialEq)]
pub struct Partition {
    /// Name in reports.
    pub name: &'static str,
    /// Steps of history in each profile.
    pub window_steps: usize,
    /// Allocation units per host capacity (the unit is capacity / this).
    pub units_per_capacity: f64,
    /// Marks one workload in this many as critical, chosen by a hash of its
    /// name; `None`: no workload is critical.
    pub critical_one_in: Option<u64>,
    /// The priority class of critical workloads (the others are in class 0).
    pub critical_priority: u32,
    /// The weight of critical workloads (the others weigh 1): the solver
    /// values a unit of their satisfied demand this many times more.
    pub critical_weight: f64,
    /// The SLO quantile of critical workloads, when not the knob's.
    pub critical_slo: Option<f64>,
    /// How every workload's profile is made.
    pub profile: Profile,
    /// How a contended host is split.
    pub arbitration: Arbitration,
    /// What the solver does with capacity no profile wants.
    pub spare: Spare,
}

impl Default for Partition {
    fn default() -> Self {
        Partition {
            name: "partition",
            window_steps: 288,
            units_per_capacity: 4096.0,
            critical_one_in: None,
            critical_priority: 1,
            critical_weight: 1.0,
            critical_slo: None,
            profile: Profile::Window,
            arbitration: Arbitration::Solver,
            spare: Spare::Spread,
        }
    }
}

impl Partition {
    /// The same profiles, split in proportion (the reference arbitration).
    pub fn proportional() -> Self {
        Partition {
            name: "partition-proportional",
            arbitration: Arbitration::Proportional,
            ..Default::default()
        }
    }

    /// The solver without spreading spare capacity no profile wants.
    pub fn keep_spare() -> Self {
        Partition {
            name: "partition-keep",
            spare: Spare::Keep,
            ..Default::default()
        }
    }

    /// Whether a workload is critical under `critical_one_in`.
    pub fn is_critical(&self, workload: &str) -> bool {
        self.critical_one_in
            .is_some_and(|n| n > 0 && fnv1a(workload.as_bytes()).is_multiple_of(n))
    }
}

/// FNV-1a: a stable hash of a name (the same on every machine and run).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Policy for Partition {
    fn name(&self) -> &str {
        self.name
    }

    fn describe(&self) -> &str {
        match (self.arbitration, self.spare) {
            (Arbitration::Proportional, _) => {
                "empirical profiles of the last day; a contended host scaled down in proportion"
            }
            (Arbitration::Solver, Spare::Spread) => {
                "empirical profiles of the last day split by the partition solver (spare spread)"
            }
            (Arbitration::Solver, Spare::Keep) => {
                "empirical profiles of the last day split by the partition solver (spare kept)"
            }
        }
    }

    fn knob(&self) -> Knob {
        Knob {
            name: "SLO quantile",
            default: 0.95,
            sweep: vec![
                0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985,
                0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999,
            ],
            range: (0.0001, 0.9999),
        }
    }

    /// Never used: the host state does the work.
    fn start(&self, _series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState> {
        Box::new(Nothing(knobs.len()))
    }

    fn start_host<'a>(
        &'a self,
        series: &[SeriesInfo<'_>],
        knobs: &[f64],
    ) -> Box<dyn HostState + 'a> {
        let resource = series.first().map_or(Resource::Cpu, |s| s.key.resource);
        Box::new(PartitionHost {
            policy: self,
            knobs: knobs.to_vec(),
            windows: series
                .iter()
                .map(|_| Window::new(self.window_steps.max(1)))
                .collect(),
            names: series.iter().map(|s| s.key.workload.clone()).collect(),
            critical: series
                .iter()
                .map(|s| self.is_critical(&s.key.workload.0))
                .collect(),
            resource,
            solver: Solver::new(),
            levels: Arc::from(PROFILE_LEVELS),
            asks: Vec::new(),
            granted: Vec::new(),
        })
    }
}

struct Nothing(usize);

impl SeriesState for Nothing {
    fn recommend(&mut self, out: &mut [f64]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        let _ = self.0;
    }

    fn observe(&mut self, _ts: TimestampMs, _demand: f64, _allocations: &[f64]) {}
}

/// The last `cap` demands of a series, in arrival order and sorted.
#[derive(Debug, Clone)]
struct Window {
    cap: usize,
    order: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl Window {
    fn new(cap: usize) -> Self {
        Window {
            cap,
            order: VecDeque::with_capacity(cap),
            sorted: Vec::with_capacity(cap),
        }
    }

    fn push(&mut self, v: f64) {
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            let i = self.sorted.partition_point(|&x| x < old);
            self.sorted.remove(i.min(self.sorted.len() - 1));
        }
        self.order.push_back(v);
        let i = self.sorted.partition_point(|&x| x <= v);
        self.sorted.insert(i, v);
    }

    /// The empirical quantile at `p` (linear between order statistics), 0
    /// when empty.
    fn quantile(&self, p: f64) -> f64 {
        let n = self.sorted.len();
        if n == 0 {
            return 0.0;
        }
        let pos = p.clamp(0.0, 1.0) * (n - 1) as f64;
        let i = pos.floor() as usize;
        let j = (i + 1).min(n - 1);
        let t = pos - i as f64;
        self.sorted[i] + (self.sorted[j] - self.sorted[i]) * t
    }

    /// The quantiles at `ps` (increasing) of the window with sample
    /// weights halving every `half_life` steps of age, into `out`: each
    /// sample sits at the middle of its weight on the probability axis,
    /// linear in between (with equal weights, close to [`Window::quantile`]).
    fn decayed_quantiles(&self, ps: &[f64], half_life: f64, out: &mut Vec<f64>) {
        out.clear();
        let n = self.order.len();
        if n == 0 {
            out.resize(ps.len(), 0.0);
            return;
        }
        let mut pts: Vec<(f64, f64)> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, (-((n - 1 - i) as f64) / half_life).exp2()))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total: f64 = pts.iter().map(|x| x.1).sum();
        // Walk the samples once, answering each level as its target passes.
        let (mut cum, mut prev) = (0.0, None::<(f64, f64)>);
        let mut i = 0;
        for &p in ps {
            let target = p.clamp(0.0, 1.0) * total;
            loop {
                if i == n {
                    out.push(pts[n - 1].0);
                    break;
                }
                let (v, w) = pts[i];
                let mid = cum + 0.5 * w;
                if mid >= target {
                    out.push(match prev {
                        Some((pv, pm)) if mid > pm => {
                            pv + (v - pv) * ((target - pm) / (mid - pm)).clamp(0.0, 1.0)
                        }
                        _ => v,
                    });
                    break;
                }
                prev = Some((v, mid));
                cum += w;
                i += 1;
            }
        }
    }
}

struct PartitionHost<'a> {
    policy: &'a Partition,
    knobs: Vec<f64>,
    windows: Vec<Window>,
    names: Vec<WorkloadId>,
    critical: Vec<bool>,
    resource: Resource,
    solver: Solver,
    levels: Arc<[f64]>,
    asks: Vec<f64>,
    granted: Vec<f64>,
}

impl PartitionHost<'_> {
    /// Series `s`'s profile at the probabilities `ps` (increasing).
    fn quantiles(&self, s: usize, ps: &[f64], out: &mut Vec<f64>) {
        out.clear();
        match self.policy.profile {
            Profile::Decaying { half_life } => {
                self.windows[s].decayed_quantiles(ps, half_life, out)
            }
            Profile::Window => out.extend(ps.iter().map(|&p| self.windows[s].quantile(p))),
        }
    }

    /// Series `s`'s profile at probability `p`.
    fn quantile(&self, s: usize, p: f64) -> f64 {
        let mut out = Vec::with_capacity(1);
        self.quantiles(s, &[p], &mut out);
        out[0]
    }

    fn problem(&self, present: &[usize], capacity: f64, ts: TimestampMs) -> Problem {
        let mut p = Problem::new(ts);
        p.units.insert(
            self.resource,
            (capacity / self.policy.units_per_capacity).max(1e-9),
        );
        p.pools.push(Pool {
            name: "host".into(),
            capacity: [(self.resource, capacity)].into(),
            spare: self.policy.spare,
            ..Default::default()
        });
        for &s in present {
            let mut values = Vec::with_capacity(PROFILE_LEVELS.len());
            self.quantiles(s, &PROFILE_LEVELS, &mut values);
            p.workloads.push(Workload {
                name: self.names[s].clone(),
                pool: 0,
                resources: vec![WorkloadResource {
                    resource: self.resource,
                    demand: Demand {
                        start: ts,
                        step_ms: 1,
                        levels: self.levels.clone(),
                        values,
                    },
                    policy: if self.critical[s] {
                        ResourcePolicy {
                            priority: self.policy.critical_priority,
                            weight: self.policy.critical_weight,
                            ..Default::default()
                        }
                    } else {
                        ResourcePolicy::default()
                    },
                    current: None,
                    current_tier: None,
                }],
            });
        }
        p
    }
}

impl HostState for PartitionHost<'_> {
    fn allocate(
        &mut self,
        ts: TimestampMs,
        present: &[usize],
        capacity: Option<f64>,
        out: &mut [f64],
    ) {
        let k = self.knobs.len();
        let m = present.len();
        let Some(cap) = capacity.filter(|c| c.is_finite() && *c > 0.0) else {
            for (i, &s) in present.iter().enumerate() {
                for j in 0..k {
                    out[i * k + j] = self.quantile(s, self.knobs[j]);
                }
            }
            return;
        };
        match self.policy.arbitration {
            Arbitration::Proportional => {
                self.asks.resize(m, 0.0);
                self.granted.resize(m, 0.0);
                for j in 0..k {
                    for (i, &s) in present.iter().enumerate() {
                        self.asks[i] = self.quantile(s, self.knobs[j]);
                    }
                    scale_down_proportionally(&self.asks[..m], cap, &mut self.granted[..m]);
                    for i in 0..m {
                        out[i * k + j] = self.granted[i];
                    }
                }
            }
            Arbitration::Solver => {
                let mut problem = self.problem(present, cap, ts);
                for j in 0..k {
                    let knob = self.knobs[j].clamp(1e-4, 0.9999);
                    for (w, &s) in problem.workloads.iter_mut().zip(present) {
                        w.resources[0].policy.slo_quantile = match self.policy.critical_slo {
                            Some(q) if self.critical[s] => q.clamp(1e-4, 0.9999),
                            _ => knob,
                        };
                    }
                    match self.solver.solve(&problem) {
                        Ok(solution) => {
                            for e in &solution.entries {
                                out[e.workload * k + j] = e.allocation;
                            }
                        }
                        // The problem is built valid; should it not be,
                        // fall back to the reference arbitration rather
                        // than stop the replay.
                        Err(_) => {
                            self.asks.resize(m, 0.0);
                            self.granted.resize(m, 0.0);
                            for (i, &s) in present.iter().enumerate() {
                                self.asks[i] = self.quantile(s, self.knobs[j]);
                            }
                            scale_down_proportionally(&self.asks[..m], cap, &mut self.granted[..m]);
                            for i in 0..m {
                                out[i * k + j] = self.granted[i];
                            }
                        }
                    }
                }
            }
        }
    }

    fn observe(
        &mut self,
        _ts: TimestampMs,
        present: &[usize],
        demands: &[f64],
        _allocations: &[f64],
    ) {
        for (&s, &d) in present.iter().zip(demands) {
            if d.is_finite() {
                self.windows[s].push(d.max(0.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::SeriesKey;

    #[test]
    fn window_quantiles_slide() {
        let mut w = Window::new(3);
        assert_eq!(w.quantile(0.5), 0.0);
        for v in [5.0, 1.0, 3.0, 2.0] {
            w.push(v);
        }
        // Holds 1, 3, 2.
        assert_eq!(w.sorted, vec![1.0, 2.0, 3.0]);
        assert_eq!(w.quantile(0.5), 2.0);
        assert_eq!(w.quantile(0.75), 2.5);
        assert_eq!(w.quantile(1.0), 3.0);
    }

    #[test]
    fn decaying_quantiles_follow_recent_demand() {
        let mut w = Window::new(100);
        for i in 0..100 {
            w.push(if i < 80 { 1.0 } else { 3.0 });
        }
        let mut out = Vec::new();
        // Equal weights (a very long half-life): mostly the old level.
        w.decayed_quantiles(&[0.1, 0.5, 0.9], 1e9, &mut out);
        assert_eq!(out[..2], [1.0, 1.0]);
        assert_eq!(out[2], 3.0);
        // Half-life of 5 steps: the last 20 steps hold 94% of the weight.
        w.decayed_quantiles(&[0.1, 0.5, 0.9], 5.0, &mut out);
        assert_eq!(out, [3.0, 3.0, 3.0]);
        // Increasing levels give non-decreasing values, within the window.
        w.decayed_quantiles(&PROFILE_LEVELS, 20.0, &mut out);
        assert!(out.windows(2).all(|x| x[0] <= x[1]), "{out:?}");
        assert!(out.iter().all(|&x| (1.0..=3.0).contains(&x)), "{out:?}");
    }

    #[test]
    fn critical_marking_is_stable_and_about_one_in_five() {
        let p = Partition {
            critical_one_in: Some(5),
            ..Default::default()
        };
        let marked = (0..1000)
            .filter(|i| p.is_critical(&format!("vm{i}")))
            .count();
        assert!((150..250).contains(&marked), "{marked}");
        assert_eq!(p.is_critical("vm7"), p.is_critical("vm7"));
        assert!(!Partition::default().is_critical("vm7"));
    }

    #[test]
    fn contended_host_is_split_within_capacity_and_critical_first() {
        let p = Partition {
            critical_one_in: Some(5),
            ..Default::default()
        };
        // One critical workload and three others.
        let critical = (0..)
            .map(|i| format!("w{i}"))
            .find(|n| p.is_critical(n))
            .unwrap();
        let others: Vec<String> = (0..)
            .map(|i| format!("w{i}"))
            .filter(|n| !p.is_critical(n))
            .take(3)
            .collect();
        let keys: Vec<SeriesKey> = std::iter::once(&critical)
            .chain(&others)
            .map(|n| SeriesKey::new("h", n.as_str(), Resource::Cpu))
            .collect();
        let infos: Vec<SeriesInfo<'_>> = keys
            .iter()
            .map(|key| SeriesInfo {
                key,
                step_ms: 300_000,
                warmup_steps: 0,
                host_capacity: Some(2.0),
                host_workloads: 4,
            })
            .collect();
        let mut host = p.start_host(&infos, &[0.95]);
        let present = [0, 1, 2, 3];
        for t in 0..50 {
            let d = [1.0, 1.0, 1.0, 1.0 + (t % 2) as f64];
            host.observe(t, &present, &d, &[0.0; 4]);
        }
        let mut out = [0.0; 4];
        host.allocate(50, &present, Some(2.0), &mut out);
        let total: f64 = out.iter().sum();
        assert!(total <= 2.0 + 1e-9, "{out:?}");
        assert!(out.iter().all(|&a| a >= 0.0));
        // The critical one gets all its demand; the others share the rest.
        assert!((out[0] - 1.0).abs() < 1e-3, "{out:?}");
        // Uncontended: the knob's quantile of each window.
        host.allocate(50, &present, None, &mut out);
        assert_eq!(out, [1.0, 1.0, 1.0, 2.0]);
    }
}
