//! Properties of every plan: capacity, guarantees and limits hold; the plan
//! does not depend on the order of the workloads; and on large instances
//! (where the threshold search brackets rather than sorts) it matches the
//! greedy run unit by unit.

mod common;

use common::{Features, Objective, Rng, random_problem, solver_units, unit_greedy, with_spread};
use prescient_core::Resource;
use prescient_solver::{Problem, Solution, solve};
use proptest::prelude::*;

fn check_constraints(p: &Problem, s: &Solution) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.entries.len(), p.workloads.len());
    let mut used = vec![0.0; p.pools.len()];
    let mut guaranteed = vec![0.0; p.pools.len()];
    for e in &s.entries {
        let w = &p.workloads[e.workload];
        let pol = &w.resources[0].policy;
        prop_assert!(e.allocation.is_finite());
        if !s.degraded() {
            prop_assert!(
                e.allocation >= pol.guarantee - 1e-12,
                "{} below guarantee {}",
                e.allocation,
                pol.guarantee
            );
        }
        if let Some(l) = pol.limit {
            prop_assert!(e.allocation <= l + 1e-9, "{} above limit {l}", e.allocation);
        }
        prop_assert!((0.0..=1.0).contains(&e.coverage));
        prop_assert!(e.expected_unmet >= 0.0);
        let mut q = Some(w.pool);
        while let Some(x) = q {
            used[x] += e.allocation;
            guaranteed[x] += pol.guarantee;
            q = p.pools[x].parent;
        }
    }
    for (x, pool) in p.pools.iter().enumerate() {
        let mut cap = pool.capacity.get(&Resource::Cpu).copied();
        if !pool.tiers.is_empty() {
            let t: f64 = pool.tiers.iter().map(|t| t.capacity[&Resource::Cpu]).sum();
            cap = Some(cap.map_or(t, |c| c.min(t)));
        }
        if let Some(cap) = cap {
            prop_assert!(
                used[x] <= cap * (1.0 + 1e-12) + 1e-9,
                "pool {}: {} > {cap}",
                pool.name,
                used[x]
            );
        }
    }
    Ok(())
}

/// The same problem with its workloads (and requests) in another order.
fn shuffled(p: &Problem, seed: u64) -> Problem {
    let mut q = p.clone();
    let mut rng = Rng::new(seed ^ 0xABCD);
    for i in (1..q.workloads.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        q.workloads.swap(i, j);
    }
    for i in (1..q.requests.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        q.requests.swap(i, j);
    }
    q
}

fn by_name(p: &Problem, s: &Solution) -> Vec<(String, f64, String)> {
    let mut v: Vec<_> = s
        .entries
        .iter()
        .map(|e| {
            (
                p.workloads[e.workload].name.0.clone(),
                e.allocation,
                e.reason_text(p),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn capacity_guarantees_and_limits_hold(seed in any::<u64>(), n in 1usize..=30, spread in any::<bool>()) {
        let mut p = random_problem(seed, n, 60, Features::ALL);
        if spread {
            p = with_spread(p);
        }
        let s = solve(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check_constraints(&p, &s)?;
    }

    #[test]
    fn the_order_of_workloads_does_not_matter(seed in any::<u64>(), n in 1usize..=30, spread in any::<bool>()) {
        let mut p = random_problem(seed, n, 60, Features::ALL);
        if spread {
            p = with_spread(p);
        }
        let a = solve(&p).unwrap();
        let b = solve(&shuffled(&p, seed)).unwrap();
        prop_assert_eq!(by_name(&p, &a), by_name(&shuffled(&p, seed), &b));
        // And the same input gives the same plan.
        prop_assert_eq!(solve(&p).unwrap(), a);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn large_instances_match_the_unit_greedy(seed in any::<u64>(), n in 50usize..=250) {
        let f = Features { reserve: false, tiers: false, ..Features::ALL };
        let mut p = random_problem(seed, n, 40 * n as u64, f);
        // Finer units: hundreds of units a workload, thousands a pool.
        p.units.insert(Resource::Cpu, 0.01);
        for w in &mut p.workloads {
            let pol = &mut w.resources[0].policy;
            pol.guarantee = (pol.guarantee * 100.0).round() / 100.0;
        }
        let s = solve(&p).unwrap();
        check_constraints(&p, &s)?;
        let obj = Objective::new(&p);
        let got = obj.evaluate(&solver_units(&p, &s)).expect("feasible");
        let want = obj.evaluate(&unit_greedy(&obj)).expect("feasible");
        for (ph, (a, b)) in got.iter().zip(&want).enumerate() {
            prop_assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "seed {seed}: phase {ph}: {a} vs {b} (passes {})", s.stats.passes);
        }
    }
}
