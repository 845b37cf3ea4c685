//! Small random problems and an objective computed independently of the
//! solver (from prescient-core's reading of the quantiles), shared by the
//! property tests.

#![allow(dead_code)]

use std::sync::Arc;

use prescient_core::{Quantiles, Resource, ResourcePolicy, WorkloadId};
use prescient_solver::{
    Demand, Pool, Problem, Request, Solution, Spare, Tier, Workload, WorkloadResource,
};

/// A tiny deterministic generator (xorshift), so a failing case can be
/// replayed from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

/// What the random problems may contain.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    pub classes: bool,
    pub change_costs: bool,
    pub nesting: bool,
    pub requests: bool,
    pub reserve: bool,
    pub tiers: bool,
    pub guarantees: bool,
    pub steps: bool,
}

impl Features {
    pub const ALL: Features = Features {
        classes: true,
        change_costs: true,
        nesting: true,
        requests: true,
        reserve: true,
        tiers: true,
        guarantees: true,
        steps: true,
    };
    pub const PLAIN: Features = Features {
        classes: false,
        change_costs: false,
        nesting: false,
        requests: false,
        reserve: false,
        tiers: false,
        guarantees: false,
        steps: false,
    };
}

/// A random problem of `n` workloads on one resource (CPU), whose
/// capacities hold the guarantees.
pub fn random_problem(seed: u64, n: usize, max_units: u64, f: Features) -> Problem {
    let mut rng = Rng::new(seed);
    let u = rng.pick(&[0.25, 0.5, 0.125]);
    let mut p = Problem::new(0);
    p.steps = if f.steps {
        1 + rng.below(2) as usize
    } else {
        1
    };
    p.units.insert(Resource::Cpu, u);
    let root_cap = u * (1 + rng.below(max_units)) as f64 + if rng.chance(0.3) { 0.1 } else { 0.0 };
    let mut root = Pool {
        name: "root".into(),
        capacity: [(Resource::Cpu, root_cap)].into(),
        ..Default::default()
    };
    let tiered = f.tiers && rng.chance(0.4);
    if tiered {
        let cheap = u * (1 + rng.below(max_units / 2 + 1)) as f64;
        root.tiers = vec![
            Tier {
                name: "burstable".into(),
                capacity: [(Resource::Cpu, cheap)].into(),
                unit_cost: [(Resource::Cpu, rng.pick(&[0.0, 0.1]))].into(),
            },
            Tier {
                name: "guaranteed".into(),
                capacity: [(Resource::Cpu, root_cap)].into(),
                unit_cost: [(Resource::Cpu, rng.pick(&[0.2, 0.45, 0.8]))].into(),
            },
        ];
    }
    if f.reserve && rng.chance(0.3) {
        root.reserve.insert(Resource::Cpu, u * rng.below(3) as f64);
    }
    p.pools.push(root);
    if f.nesting && !tiered && rng.chance(0.5) {
        for i in 0..2 {
            let cap = u * (1 + rng.below(max_units)) as f64;
            p.pools.push(Pool {
                name: format!("slice{i}"),
                parent: Some(0),
                capacity: [(Resource::Cpu, cap)].into(),
                ..Default::default()
            });
        }
    }
    let level_sets: [&[f64]; 3] = [&[0.1, 0.5, 0.9], &[0.05, 0.25, 0.5, 0.75, 0.95], &[0.5]];
    let mut guaranteed = vec![0.0; p.pools.len()];
    for i in 0..n {
        let levels: Arc<[f64]> = Arc::from(rng.pick(&level_sets));
        let mut values = Vec::new();
        for _ in 0..p.steps {
            let mut row: Vec<f64> = (0..levels.len())
                .map(|_| {
                    // Coarse values make ties (point masses, equal workloads) common.
                    if rng.chance(0.5) {
                        0.25 * rng.below(9) as f64
                    } else {
                        2.0 * rng.unit()
                    }
                })
                .collect();
            row.sort_by(f64::total_cmp);
            values.extend(row);
        }
        let pool = rng.below(p.pools.len() as u64) as usize;
        let mut policy = ResourcePolicy {
            priority: if f.classes { rng.below(3) as u32 } else { 0 },
            weight: rng.pick(&[1.0, 1.0, 0.5, 2.0, 1.3]),
            slo_quantile: rng.pick(&[0.5, 0.9, 0.95, 0.99]),
            ..Default::default()
        };
        if f.guarantees && rng.chance(0.3) {
            let g = rng.pick(&[0.1, 0.25, 0.3]);
            // Keep the guarantees within every capacity above.
            let mut q = Some(pool);
            let mut fits = true;
            while let Some(x) = q {
                let cap = p.pools[x].capacity[&Resource::Cpu];
                if guaranteed[x] + g > cap {
                    fits = false;
                }
                q = p.pools[x].parent;
            }
            if fits {
                let mut q = Some(pool);
                while let Some(x) = q {
                    guaranteed[x] += g;
                    q = p.pools[x].parent;
                }
                policy.guarantee = g;
            }
        }
        if rng.chance(0.3) {
            policy.limit = Some(policy.guarantee + rng.pick(&[0.3, 0.5, 1.0, 1.25]));
        }
        let mut current = None;
        if f.change_costs && rng.chance(0.5) {
            current = Some(
                rng.pick(&[0.0f64, 0.25, 0.5, 0.6, 1.0])
                    .max(policy.guarantee),
            );
            policy.change_cost = rng.pick(&[0.0, 0.05, 0.2, 0.5]);
            policy.lendable = rng.chance(0.7);
        }
        p.workloads.push(Workload {
            name: WorkloadId(format!("w{i}")),
            pool,
            resources: vec![WorkloadResource {
                resource: Resource::Cpu,
                demand: Demand {
                    start: 0,
                    step_ms: 300_000,
                    levels,
                    values,
                },
                policy,
                current,
                current_tier: None,
            }],
        });
    }
    if f.requests {
        for _ in 0..rng.below(3) {
            let w = rng.below(n as u64) as usize;
            p.requests.push(Request {
                workload: WorkloadId(format!("w{w}")),
                resource: Resource::Cpu,
                amount: rng.pick(&[0.5, 1.0, 1.5]),
                priority: rng.below(3) as u32,
                justification: "test".into(),
            });
        }
    }
    p
}

/// Same problem with every pool spreading its spare capacity.
pub fn with_spread(mut p: Problem) -> Problem {
    for pool in &mut p.pools {
        pool.spare = Spare::Spread;
    }
    p
}

/// Whole units in `x` / units to reach `x`, with the solver's tolerance.
pub fn units_within(x: f64, u: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let q = x / u;
    let r = q.round();
    (if (q - r).abs() <= 1e-9 * r.max(1.0) {
        r
    } else {
        q.floor()
    }) as u32
}
pub fn units_above(x: f64, u: f64) -> u32 {
    if x.is_nan() || x <= 0.0 {
        return 0;
    }
    let q = x / u;
    let r = q.round();
    (if (q - r).abs() <= 1e-9 * r.max(1.0) {
        r
    } else {
        q.ceil()
    }) as u32
}

/// The phase objective of a single-resource (CPU) problem, independent of
/// the solver: for allocations `g + k u`, the vector, phase by phase
/// (requests then SLOs per class from the highest, then spare capacity net
/// of tier prices), of the value taken and of the explicit units taken
/// (requested, or held by a workload that may not lend: taken whatever the
/// forecast says they are worth, so they count at max(value, 0) and by
/// number); `None` if the allocation breaks a constraint.
pub struct Objective<'a> {
    pub p: &'a Problem,
    pub u: f64,
    /// Distinct priorities, highest first.
    pub prios: Vec<u32>,
    /// Per workload: the ends of its targets and their phases.
    pub phase_ends: Vec<Vec<(u32, usize)>>,
    /// Per workload: units below this are explicit.
    pub explicit: Vec<u32>,
}

impl<'a> Objective<'a> {
    pub fn new(p: &'a Problem) -> Self {
        let u = p.unit(Resource::Cpu);
        let mut prios: Vec<u32> = p
            .workloads
            .iter()
            .map(|w| w.resources[0].policy.priority)
            .chain(p.requests.iter().map(|r| r.priority))
            .collect();
        prios.sort_unstable_by(|a, b| b.cmp(a));
        prios.dedup();
        let rank = |x: u32| prios.iter().position(|&y| y == x).unwrap();
        let mut phase_ends = Vec::new();
        let mut explicit = Vec::new();
        for w in &p.workloads {
            let wr = &w.resources[0];
            let pol = &wr.policy;
            let n = wr.demand.levels.len();
            let steps = p.steps.min(wr.demand.horizon()).max(1);
            let q = (0..steps)
                .map(|h| {
                    Quantiles::new(&wr.demand.levels, &wr.demand.values[h * n..(h + 1) * n])
                        .unwrap()
                        .quantile(pol.slo_quantile)
                })
                .fold(f64::NEG_INFINITY, f64::max);
            let t = units_above(q - pol.guarantee, u);
            let mut ends = vec![(t, 2 * rank(pol.priority) + 1)];
            let mut x = 0;
            if !pol.lendable
                && let Some(cur) = wr.current
            {
                // Held as if requested at its own priority.
                x = units_within(cur - pol.guarantee, u);
                ends.push((x, 2 * rank(pol.priority)));
            }
            for r in &p.requests {
                if r.workload == w.name {
                    let q = units_above(r.amount - pol.guarantee, u);
                    x = x.max(q);
                    ends.push((q, 2 * rank(r.priority)));
                }
            }
            phase_ends.push(ends);
            explicit.push(x);
        }
        Objective {
            p,
            u,
            prios,
            phase_ends,
            explicit,
        }
    }

    /// Number of phases (the last: spare capacity).
    pub fn phases(&self) -> usize {
        2 * self.prios.len() + 1
    }

    /// Where phase `p`'s value sits in the objective vector.
    pub fn component(&self, p: usize) -> usize {
        2 * p
    }

    /// Length of the objective vector.
    pub fn components(&self) -> usize {
        2 * self.phases() - 1
    }

    /// Units allowed by the workload's limit.
    pub fn limit_units(&self, i: usize) -> u32 {
        let pol = &self.p.workloads[i].resources[0].policy;
        pol.limit
            .map_or(u32::MAX, |l| units_within(l - pol.guarantee, self.u))
    }

    pub fn phase_of(&self, i: usize, k: u32) -> usize {
        self.phase_ends[i]
            .iter()
            .filter(|(end, _)| *end > k)
            .map(|x| x.1)
            .min()
            .unwrap_or(self.phases() - 1)
    }

    /// The value (in satisfied demand) of unit `k` of workload `i`.
    pub fn unit_value(&self, i: usize, k: u32) -> f64 {
        let wr = &self.p.workloads[i].resources[0];
        let pol = &wr.policy;
        let a = pol.guarantee + k as f64 * self.u;
        let b = pol.guarantee + (k as f64 + 1.0) * self.u;
        let n = wr.demand.levels.len();
        let steps = self.p.steps.min(wr.demand.horizon()).max(1);
        let mut v = 0.0;
        for h in 0..steps {
            let q =
                Quantiles::new(&wr.demand.levels, &wr.demand.values[h * n..(h + 1) * n]).unwrap();
            v += q.expected_excess(a) - q.expected_excess(b);
        }
        v = pol.weight * v / steps as f64;
        if let Some(cur) = wr.current
            && pol.change_cost > 0.0
        {
            v += pol.change_cost * ((a - cur).abs() - (b - cur).abs());
        }
        v
    }

    /// The phase sums of allocating `ks[i]` units above each guarantee, or
    /// `None` when that breaks a capacity, limit or reserve.
    pub fn evaluate(&self, ks: &[u32]) -> Option<Vec<f64>> {
        let p = self.p;
        let u = self.u;
        let alloc: Vec<f64> = ks
            .iter()
            .zip(&p.workloads)
            .map(|(&k, w)| w.resources[0].policy.guarantee + k as f64 * u)
            .collect();
        for (i, &k) in ks.iter().enumerate() {
            if k > self.limit_units(i) {
                return None;
            }
        }
        let mut used = vec![0.0; p.pools.len()];
        let mut guaranteed = vec![0.0; p.pools.len()];
        for (i, w) in p.workloads.iter().enumerate() {
            let mut q = Some(w.pool);
            while let Some(x) = q {
                used[x] += alloc[i];
                guaranteed[x] += w.resources[0].policy.guarantee;
                q = p.pools[x].parent;
            }
        }
        let mut v = vec![0.0; self.components()];
        let (mut nonextra, mut total_units) = (0u64, 0u64);
        for (i, &k) in ks.iter().enumerate() {
            for j in 0..k {
                let ph = self.phase_of(i, j);
                let x = self.unit_value(i, j);
                if j < self.explicit[i] && x <= 1e-12 {
                    // Taken only because it was asked for.
                    v[self.component(ph) + 1] += 1.0;
                } else {
                    v[self.component(ph)] += x;
                }
                if ph + 1 < self.phases() {
                    nonextra += 1;
                }
                total_units += 1;
            }
        }
        for (x, pool) in p.pools.iter().enumerate() {
            let mut cap = pool.capacity.get(&Resource::Cpu).copied();
            if !pool.tiers.is_empty() {
                let t: f64 = pool.tiers.iter().map(|t| t.capacity[&Resource::Cpu]).sum();
                cap = Some(cap.map_or(t, |c| c.min(t)));
            }
            let Some(cap) = cap else { continue };
            let budget = units_within(cap - guaranteed[x], u) as f64;
            // The pool may hold at most its capacity in whole units beyond guarantees.
            let units_here = ((used[x] - guaranteed[x]) / u).round();
            if units_here > budget + 1e-9 {
                return None;
            }
            if let Some(&r) = pool.reserve.get(&Resource::Cpu) {
                let keep = units_above(r, u) as f64;
                // Only the root carries a reserve in these problems.
                if total_units as f64 > (nonextra as f64).max(budget - keep) + 1e-9 {
                    return None;
                }
            }
            if !pool.tiers.is_empty() {
                // Cheapest tiers fill first; the price is charged to the
                // spare-capacity phase.
                let mut tiers: Vec<(f64, f64)> = pool
                    .tiers
                    .iter()
                    .map(|t| (t.unit_cost[&Resource::Cpu], t.capacity[&Resource::Cpu]))
                    .collect();
                tiers.sort_by(|a, b| a.0.total_cmp(&b.0));
                let mut left = used[x];
                let mut cost = 0.0;
                for (c, capt) in tiers {
                    let take = left.min(capt);
                    cost += c * take;
                    left -= take;
                }
                let last = v.len() - 1;
                v[last] -= cost;
            }
        }
        Some(v)
    }

    /// The lexicographic best by exhaustive search over `ks[i] <= max_k`.
    pub fn exhaustive(&self, max_k: u32) -> (Vec<u32>, Vec<f64>) {
        let n = self.p.workloads.len();
        let bounds: Vec<u32> = (0..n).map(|i| self.limit_units(i).min(max_k)).collect();
        let mut ks = vec![0u32; n];
        let mut best: Option<(Vec<u32>, Vec<f64>)> = None;
        loop {
            if let Some(v) = self.evaluate(&ks)
                && best.as_ref().is_none_or(|(_, b)| lex_better(&v, b))
            {
                best = Some((ks.clone(), v));
            }
            let mut i = 0;
            while i < n {
                if ks[i] < bounds[i] {
                    ks[i] += 1;
                    break;
                }
                ks[i] = 0;
                i += 1;
            }
            if i == n {
                break;
            }
        }
        best.expect("the guarantees alone are feasible")
    }
}

/// `a` beats `b` lexicographically, beyond rounding.
pub fn lex_better(a: &[f64], b: &[f64]) -> bool {
    for (x, y) in a.iter().zip(b) {
        if x > &(y + 1e-9) {
            return true;
        }
        if x < &(y - 1e-9) {
            return false;
        }
    }
    false
}

/// The solver's allocation as units above each guarantee.
pub fn solver_units(p: &Problem, s: &Solution) -> Vec<u32> {
    let u = p.unit(Resource::Cpu);
    s.entries
        .iter()
        .map(|e| {
            let g = p.workloads[e.workload].resources[0].policy.guarantee;
            let k = (e.allocation - g) / u;
            assert!(
                (k - k.round()).abs() < 1e-6,
                "{} is not g + k u",
                e.allocation
            );
            k.round() as u32
        })
        .collect()
}

/// The matroid greedy, unit by unit: every unit of every workload sorted
/// best first (phase, then value), taken while it is worth something and
/// every pool above it has room.
pub fn unit_greedy(obj: &Objective<'_>) -> Vec<u32> {
    let p = obj.p;
    let u = obj.u;
    let mut units = Vec::new();
    let mut budget: Vec<Option<i64>> = p
        .pools
        .iter()
        .enumerate()
        .map(|(x, pool)| {
            let cap = pool.capacity.get(&Resource::Cpu).copied()?;
            let g: f64 = p
                .workloads
                .iter()
                .filter(|w| {
                    let mut q = Some(w.pool);
                    while let Some(y) = q {
                        if y == x {
                            return true;
                        }
                        q = p.pools[y].parent;
                    }
                    false
                })
                .map(|w| w.resources[0].policy.guarantee)
                .sum();
            Some(units_within(cap - g, u) as i64)
        })
        .collect();
    let max_budget = budget.iter().flatten().copied().max().unwrap_or(0).max(0) as u32;
    for i in 0..p.workloads.len() {
        let mut prev = f64::INFINITY;
        for k in 0..obj.limit_units(i).min(max_budget + 1) {
            // Rounding in the differences of expected excess can make a
            // unit in a flat stretch worth a hair more than the one before:
            // keep the order of units along a workload.
            let v = obj.unit_value(i, k).min(prev);
            prev = v;
            // Worth nothing, beyond rounding (w S - c computed as 4e-18),
            // and not asked for explicitly.
            if v <= 1e-12 && k >= obj.explicit[i] {
                break;
            }
            units.push((obj.phase_of(i, k), v, k, i));
        }
    }
    units.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(b.1.total_cmp(&a.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.cmp(&b.3))
    });
    let mut ks = vec![0u32; p.workloads.len()];
    for (_, _, k, i) in units {
        if ks[i] != k {
            continue; // an earlier unit of it did not fit
        }
        let mut q = Some(p.workloads[i].pool);
        let mut fits = true;
        while let Some(y) = q {
            if budget[y].is_some_and(|b| b <= 0) {
                fits = false;
            }
            q = p.pools[y].parent;
        }
        if !fits {
            continue;
        }
        let mut q = Some(p.workloads[i].pool);
        while let Some(y) = q {
            if let Some(b) = budget[y].as_mut() {
                *b -= 1;
            }
            q = p.pools[y].parent;
        }
        ks[i] += 1;
    }
    ks
}
