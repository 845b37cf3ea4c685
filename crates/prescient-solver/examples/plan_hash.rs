//! A fingerprint of the plans of a few thousand random problems, to show
//! that a change to the solver leaves every plan bit for bit as it was:
//! run it before and after, and compare the hashes it prints.
//!
//! ```text
//! cargo run --release -p prescient-solver --example plan_hash
//! ```
//!
//! It hashes, per problem, the whole solution but its statistics (entries
//! with every f64 bit, pool usage, requests, moves, tier shares,
//! overcommits), the reasons in words, and the errors of refused problems.
//! The problems: small ones of every feature (the property tests'
//! generator), large ones with fine units (where the search brackets rather
//! than sorts), several resources and steps, and some made invalid.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use common::{Features, Rng, random_problem, with_spread};
use prescient_core::{Resource, ResourcePolicy, WorkloadId};
use prescient_solver::{Demand, Pool, Problem, Solver, Workload, WorkloadResource};

/// Hashes what the solver makes of `p` into `h`.
fn hash_solve(solver: &mut Solver, p: &Problem, h: &mut DefaultHasher) {
    match solver.solve(p) {
        Ok(s) => {
            for e in &s.entries {
                (e.workload, e.resource as u8).hash(h);
                for x in [e.allocation, e.coverage, e.expected_unmet] {
                    x.to_bits().hash(h);
                }
                format!("{:?}", e.reason).hash(h);
                e.reason_text(p).hash(h);
            }
            format!(
                "{:?} {:?} {:?} {:?} {:?} {}",
                s.pools, s.requests, s.moves, s.tier_shares, s.overcommitted, s.at
            )
            .hash(h);
            format!("{:?}", s.plans(p)).hash(h);
        }
        Err(e) => e.to_string().hash(h),
    }
}

/// The same workloads planned for more resources: Memory a scaled copy of
/// CPU, IoRead with a coarser unit.
fn more_resources(mut p: Problem, rng: &mut Rng) -> Problem {
    p.units.insert(Resource::Memory, 64.0);
    p.units.insert(Resource::IoRead, 0.5);
    for pool in &mut p.pools {
        if let Some(&c) = pool.capacity.get(&Resource::Cpu) {
            pool.capacity.insert(Resource::Memory, 1024.0 * c);
            if rng.chance(0.5) {
                pool.capacity.insert(Resource::IoRead, 0.7 * c);
            }
        }
    }
    for w in &mut p.workloads {
        let cpu = w.resources[0].clone();
        let mut mem: WorkloadResource = cpu.clone();
        mem.resource = Resource::Memory;
        mem.demand.values.iter_mut().for_each(|v| *v *= 1024.0);
        mem.policy.guarantee *= 1024.0;
        mem.policy.limit = mem.policy.limit.map(|l| l * 1024.0);
        mem.current = mem.current.map(|c| c * 1024.0);
        mem.current_tier = None;
        w.resources.push(mem);
        if rng.chance(0.7) {
            let mut io = cpu;
            io.resource = Resource::IoRead;
            io.current_tier = None;
            w.resources.insert(0, io);
        }
    }
    p
}

/// Breaks `p` in one of a few ways.
fn break_it(p: &mut Problem, rng: &mut Rng) {
    let i = rng.below(p.workloads.len() as u64) as usize;
    let wr = &mut p.workloads[i].resources[0];
    match rng.below(6) {
        0 => wr.demand.values[0] = f64::NAN,
        1 => wr.policy.slo_quantile = 1.5,
        2 => wr.current = Some(-1.0),
        3 => {
            let name = p.workloads[0].name.clone();
            p.workloads[i].name = name;
        }
        4 => wr.demand.values.clear(),
        _ => {
            let v = &mut wr.demand.values;
            if v.len() > 1 {
                v.swap(0, 1);
                v[0] += 1.0;
            }
        }
    }
}

/// The bench's machine (benches/solve.rs): `n` workloads with 13-level
/// profiles of four resources, three classes, guarantees, limits and change
/// costs on some, on one machine with 70% of the sum of their p95s.
fn machine(n: usize, seed: u64, steps: usize) -> Problem {
    const LEVELS: [f64; 13] = [
        0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999,
    ];
    const RESOURCES: [(Resource, f64); 4] = [
        (Resource::Cpu, 1.0),
        (Resource::Memory, 2.0 * 1024.0 * 1024.0 * 1024.0),
        (Resource::IoRead, 20.0 * 1024.0 * 1024.0),
        (Resource::NetRx, 10.0 * 1024.0 * 1024.0),
    ];
    let mut rng = Rng::new(seed);
    let levels: Arc<[f64]> = Arc::from(LEVELS);
    let mut p = Problem::new(0);
    p.steps = steps;
    let mut p95 = [0.0; 4];
    for i in 0..n {
        let mut resources = Vec::with_capacity(4);
        for (r, &(resource, scale)) in RESOURCES.iter().enumerate() {
            let mut values = Vec::new();
            for _ in 0..steps {
                let median = scale * (0.1 + 0.9 * rng.unit());
                let spread = 0.2 + 2.0 * rng.unit();
                values.extend(LEVELS.iter().map(|&l| {
                    median
                        * (1.0 + spread * (l - 0.5)).max(0.05)
                        * (1.0 + (l - 0.5).max(0.0) * spread)
                }));
            }
            p95[r] += values[7];
            let current = (i % 3 == 0).then(|| values[6]);
            let median = values[3];
            resources.push(WorkloadResource {
                resource,
                demand: Demand {
                    start: 0,
                    step_ms: 300_000,
                    levels: levels.clone(),
                    values,
                },
                policy: ResourcePolicy {
                    guarantee: if i % 10 == 0 { 0.1 * median } else { 0.0 },
                    limit: (i % 7 == 0).then_some(2.0 * median),
                    priority: (i % 5 == 0) as u32 + (i % 17 == 0) as u32,
                    weight: 0.5 + rng.unit(),
                    slo_quantile: 0.95,
                    change_cost: if i % 3 == 0 { 0.05 } else { 0.0 },
                    lendable: i % 11 != 0,
                },
                current,
                current_tier: None,
            });
        }
        p.workloads.push(Workload {
            name: WorkloadId(format!("workload-{i:06}")),
            pool: 0,
            resources,
        });
    }
    p.pools.push(Pool {
        name: "machine".into(),
        capacity: RESOURCES
            .iter()
            .zip(p95)
            .map(|(&(r, _), s)| (r, 0.7 * s))
            .collect(),
        ..Default::default()
    });
    p
}

fn main() {
    let mut total = DefaultHasher::new();
    let mut solver = Solver::new();
    let mut rng = Rng::new(7);
    let mut groups: Vec<(&str, u64)> = Vec::new();
    let mut group = |name: &'static str, run: &mut dyn FnMut(&mut DefaultHasher)| {
        let mut h = DefaultHasher::new();
        run(&mut h);
        let x = h.finish();
        x.hash(&mut total);
        groups.push((name, x));
    };
    group("small, every feature", &mut |h| {
        for seed in 0..2500u64 {
            let n = 1 + (seed % 40) as usize;
            let mut p = random_problem(seed, n, 60, Features::ALL);
            if seed % 3 == 0 {
                p = with_spread(p);
            }
            hash_solve(&mut solver, &p, h);
        }
    });
    group("several resources", &mut |h| {
        for seed in 0..600u64 {
            let n = 1 + (seed % 50) as usize;
            let p = random_problem(seed ^ 0x5eed, n, 80, Features::ALL);
            let p = more_resources(p, &mut rng);
            hash_solve(&mut solver, &p, h);
        }
    });
    group("large, fine units", &mut |h| {
        for seed in 0..120u64 {
            let n = 300 + (seed as usize * 97) % 3000;
            let f = Features {
                tiers: seed % 4 == 0,
                ..Features::ALL
            };
            let mut p = random_problem(seed ^ 0xb16, n, 40 * n as u64, f);
            p.units.insert(Resource::Cpu, 0.01);
            if seed % 5 == 0 {
                p = with_spread(p);
            }
            if seed % 3 == 0 {
                p = more_resources(p, &mut rng);
            }
            hash_solve(&mut solver, &p, h);
        }
    });
    group("invalid", &mut |h| {
        for seed in 0..300u64 {
            let n = 2 + (seed % 20) as usize;
            let mut p = random_problem(seed ^ 0xbad, n, 30, Features::ALL);
            if seed % 2 == 0 {
                p = more_resources(p, &mut rng);
            }
            break_it(&mut p, &mut rng);
            hash_solve(&mut solver, &p, h);
        }
    });
    group("the bench's machine", &mut |h| {
        for (n, seed, steps) in [(1000, 1, 1), (5000, 2, 1), (30_000, 3, 1), (2000, 4, 3)] {
            hash_solve(&mut solver, &machine(n, seed, steps), h);
        }
    });
    for (name, x) in &groups {
        println!("{x:016x}  {name}");
    }
    println!("{:016x}  all", total.finish());
}
