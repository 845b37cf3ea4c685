//! The solver against exact solvers on small instances: exhaustive search
//! over every allocation (the lexicographic phase objective, with classes,
//! requests, change costs, nested pools, reserves and priced tiers), and a
//! linear program (good_lp + microlp) on larger single-class instances.

mod common;

use common::{Features, Objective, random_problem, solver_units};
use good_lp::{
    Expression, ProblemVariables, Solution as _, SolverModel, Variable, microlp, variable,
};
use prescient_core::Resource;
use prescient_solver::solve;
use proptest::prelude::*;

fn check_against_exhaustive(seed: u64, n: usize, f: Features) -> Result<(), TestCaseError> {
    let max_units = 6;
    let p = random_problem(seed, n, max_units, f);
    let s = solve(&p).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}")))?;
    let obj = Objective::new(&p);
    let ks = solver_units(&p, &s);
    let got = obj.evaluate(&ks).ok_or_else(|| {
        TestCaseError::fail(format!("seed {seed}: solver allocation {ks:?} infeasible"))
    })?;
    let (best_ks, best) = obj.exhaustive(max_units as u32 + 1);
    for (ph, (a, b)) in got.iter().zip(&best).enumerate() {
        prop_assert!(
            (a - b).abs() <= 1e-6,
            "seed {seed}: phase {ph}: solver {a} vs exact {b}\nsolver {ks:?} -> {got:?}\nexact  {best_ks:?} -> {best:?}\n{p:#?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn one_class_matches_exhaustive_search(seed in any::<u64>(), n in 1usize..=4) {
        check_against_exhaustive(seed, n, Features::PLAIN)?;
    }

    #[test]
    fn every_rule_matches_exhaustive_search(seed in any::<u64>(), n in 1usize..=4) {
        check_against_exhaustive(seed, n, Features::ALL)?;
    }
}

/// The greedy against the LP over unit variables `0 <= x_ik <= 1` with
/// `x_i,k+1 <= x_ik`, nested pool capacities and limits, solved phase by
/// phase (first the SLO phase's sum, then, holding it, the spare phase's):
/// concavity makes the LP's optimum integral and the greedy's.
fn check_against_lp(seed: u64, n: usize) -> Result<(), TestCaseError> {
    let max_units = 40;
    let f = Features {
        nesting: true,
        guarantees: true,
        steps: true,
        ..Features::PLAIN
    };
    let p = random_problem(seed, n, max_units, f);
    let s = solve(&p).map_err(|e| TestCaseError::fail(format!("seed {seed}: {e}")))?;
    let obj = Objective::new(&p);
    let ks = solver_units(&p, &s);
    let got = obj.evaluate(&ks).expect("feasible");
    let u = p.unit(Resource::Cpu);

    let mut held: Vec<f64> = Vec::new();
    for phase in 0..obj.phases() {
        let mut vars = ProblemVariables::new();
        let mut x: Vec<Vec<Variable>> = Vec::new();
        let mut sums = vec![Expression::from(0.0); obj.phases()];
        // No requests nor holdings here: every unit counts at its value.
        for i in 0..n {
            let k_max = obj.limit_units(i).min(max_units as u32 + 1);
            let mut row = Vec::new();
            for k in 0..k_max {
                let v = vars.add(variable().min(0.0).max(1.0));
                sums[obj.phase_of(i, k)].add_mul(obj.unit_value(i, k), v);
                row.push(v);
            }
            x.push(row);
        }
        let mut model = vars.maximise(sums[phase].clone()).using(microlp);
        for (q, &h) in held.iter().enumerate() {
            model.add_constraint(sums[q].clone().geq(h - 1e-9));
        }
        for row in &x {
            for k in 1..row.len() {
                model.add_constraint(Expression::from(row[k]).leq(row[k - 1]));
            }
        }
        for (pi, pool) in p.pools.iter().enumerate() {
            let Some(&cap) = pool.capacity.get(&Resource::Cpu) else {
                continue;
            };
            let mut used = Expression::from(0.0);
            let mut guaranteed = 0.0;
            for (i, w) in p.workloads.iter().enumerate() {
                let mut q = Some(w.pool);
                let mut under = false;
                while let Some(y) = q {
                    under |= y == pi;
                    q = p.pools[y].parent;
                }
                if under {
                    guaranteed += w.resources[0].policy.guarantee;
                    for &v in &x[i] {
                        used.add_mul(1.0, v);
                    }
                }
            }
            let budget = common::units_within(cap - guaranteed, u) as f64;
            model.add_constraint(used.leq(budget));
        }
        let sol = model
            .solve()
            .map_err(|e| TestCaseError::fail(format!("seed {seed}: LP: {e}")))?;
        let best = sol.eval(&sums[phase]);
        let mine = got[obj.component(phase)];
        prop_assert!(
            (mine - best).abs() <= 1e-6 * (1.0 + best.abs()),
            "seed {seed}: phase {phase}: greedy {mine} vs LP {best}"
        );
        held.push(best);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(60))]

    #[test]
    fn matches_the_lp_on_larger_instances(seed in any::<u64>(), n in 2usize..=12) {
        check_against_lp(seed, n)?;
    }
}
