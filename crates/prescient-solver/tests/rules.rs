//! One test (or a few) per rule of the objective, and the bad-input errors.

use std::sync::Arc;

use prescient_core::{PolicyError, ProfileError, Resource, ResourcePolicy, WorkloadId};
use prescient_solver::{
    Claim, Demand, InputError, Outcome, Pool, Problem, Request, RequestStatus, Solution, Spare,
    Tier, Workload, WorkloadResource, solve,
};

const CPU: Resource = Resource::Cpu;

/// Uniform demand on [lo, hi] (quantiles 0.25/0.5/0.75, tails continue).
fn uniform(lo: f64, hi: f64) -> Demand {
    let q = |p: f64| lo + (hi - lo) * p;
    Demand {
        start: 0,
        step_ms: 300_000,
        levels: Arc::from([0.25, 0.5, 0.75]),
        values: vec![q(0.25), q(0.5), q(0.75)],
    }
}

fn policy(priority: u32) -> ResourcePolicy {
    ResourcePolicy {
        priority,
        ..Default::default()
    }
}

fn machine(cap: f64) -> Problem {
    let mut p = Problem::new(0);
    p.pools.push(Pool {
        name: "host".into(),
        capacity: [(CPU, cap)].into(),
        ..Default::default()
    });
    p
}

fn add(p: &mut Problem, name: &str, demand: Demand, policy: ResourcePolicy, current: Option<f64>) {
    p.workloads.push(Workload {
        name: WorkloadId(name.into()),
        pool: 0,
        resources: vec![WorkloadResource {
            resource: CPU,
            demand,
            policy,
            current,
            current_tier: None,
        }],
    });
}

fn alloc(p: &Problem, s: &Solution, name: &str) -> f64 {
    let i = p.workloads.iter().position(|w| w.name.0 == name).unwrap();
    s.allocation(i, CPU).unwrap()
}

fn reason(p: &Problem, s: &Solution, name: &str) -> String {
    let i = p.workloads.iter().position(|w| w.name.0 == name).unwrap();
    s.entries
        .iter()
        .find(|e| e.workload == i)
        .unwrap()
        .reason_text(p)
}

fn total(s: &Solution) -> f64 {
    s.entries.iter().map(|e| e.allocation).sum()
}

#[test]
fn guarantees_above_capacity_give_a_degraded_plan_that_names_the_cuts() {
    let mut p = machine(4.0);
    for (name, prio, g) in [("a", 2, 2.0), ("b", 1, 2.0), ("c", 1, 2.0), ("d", 0, 1.0)] {
        let pol = ResourcePolicy {
            guarantee: g,
            ..policy(prio)
        };
        add(&mut p, name, uniform(0.0, 4.0), pol, None);
    }
    let s = solve(&p).unwrap();
    assert!(s.degraded());
    // Priority 2 whole, priority 1 in proportion (2 of 4), priority 0 nothing.
    assert_eq!(alloc(&p, &s, "a"), 2.0);
    assert_eq!(alloc(&p, &s, "b"), 1.0);
    assert_eq!(alloc(&p, &s, "c"), 1.0);
    assert_eq!(alloc(&p, &s, "d"), 0.0);
    let o = &s.overcommitted[0];
    let msg = o.to_string();
    assert!(
        msg.contains("pool 'host' cpu: guarantees total 7 cores but the capacity is 4 cores"),
        "{msg}"
    );
    assert!(msg.contains("'b' (priority 1) 2 cores -> 1 core"), "{msg}");
    assert!(msg.contains("'d' (priority 0) 1 core -> 0 core"), "{msg}");
    assert!(!msg.contains("'a'"), "{msg}");
    let r = reason(&p, &s, "b");
    assert!(
        r.contains("guarantee cut from 2 cores to 1 core") && r.contains("degraded"),
        "{r}"
    );
    let plans = s.plans(&p);
    assert_eq!(plans.len(), 1);
    assert!(plans[0].degraded);
    assert_eq!(plans[0].pool.0, "host");
}

#[test]
fn bad_input_is_refused_with_every_error_naming_workload_and_numbers() {
    let mut p = machine(4.0);
    p.pools.push(Pool {
        name: "slice".into(),
        parent: Some(0),
        capacity: [(CPU, -1.0)].into(),
        ..Default::default()
    });
    let limit_below = ResourcePolicy {
        guarantee: 2.0,
        limit: Some(1.0),
        ..Default::default()
    };
    add(&mut p, "db", uniform(0.0, 1.0), limit_below, None);
    let bad_slo = ResourcePolicy {
        slo_quantile: 1.5,
        ..Default::default()
    };
    add(&mut p, "web", uniform(0.0, 1.0), bad_slo, None);
    let decreasing = Demand {
        start: 0,
        step_ms: 300_000,
        levels: Arc::from([0.5, 0.9]),
        values: vec![1.0, 0.5],
    };
    add(&mut p, "batch", decreasing, ResourcePolicy::default(), None);
    add(
        &mut p,
        "batch",
        uniform(0.0, 1.0),
        ResourcePolicy::default(),
        None,
    );
    p.requests.push(Request {
        workload: WorkloadId("ghost".into()),
        resource: CPU,
        amount: 1.0,
        priority: 0,
        justification: "nightly".into(),
    });
    let err = solve(&p).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("6 problems:"), "{msg}");
    for want in [
        "pool 'slice' cpu: capacity -1 must be a finite number >= 0",
        "workload 'db' cpu: limit 1 is below the guarantee 2",
        "workload 'web' cpu: SLO quantile 1.5 must be inside (0, 1)",
        "workload 'batch' cpu: demand profile: step 0: quantiles are not increasing: the 0.9 quantile (0.5) is below the 0.5 quantile (1)",
        "workload 'batch' appears twice",
        "request #0 (\"nightly\") is for workload 'ghost', which is not in the problem",
    ] {
        assert!(msg.contains(want), "missing {want:?} in\n{msg}");
    }
    assert!(err.errors.iter().any(|e| matches!(
        e,
        InputError::Policy {
            source: PolicyError::LimitBelowGuarantee { .. },
            ..
        }
    )));
    assert!(err.errors.iter().any(|e| matches!(
        e,
        InputError::Profile {
            source: ProfileError::NotIncreasing { step: 0, .. },
            ..
        }
    )));
}

#[test]
fn higher_classes_reach_their_slo_before_lower_ones_get_anything() {
    let mut p = machine(2.0);
    add(&mut p, "critical", uniform(0.0, 2.0), policy(1), None);
    add(&mut p, "batch", uniform(0.0, 2.0), policy(0), None);
    let s = solve(&p).unwrap();
    // The p95 of U(0, 2) is 1.9: 16 units of 1/8 core (2.0 with the unit).
    assert_eq!(alloc(&p, &s, "critical"), 2.0);
    assert_eq!(alloc(&p, &s, "batch"), 0.0);
    let r = reason(&p, &s, "batch");
    assert_eq!(
        r,
        "held at guarantee 0 core: pool 'host' full, SLOs of priority 1 first"
    );
    assert_eq!(s.pools[0].full_at, Some(Claim::Slos(1)));
    // With room for both SLOs, both get them.
    p.pools[0].capacity.insert(CPU, 4.0);
    let s = solve(&p).unwrap();
    assert_eq!(alloc(&p, &s, "critical"), 2.0);
    assert_eq!(alloc(&p, &s, "batch"), 2.0);
}

#[test]
fn within_a_class_capacity_goes_where_it_buys_the_most() {
    // Same demand, weights 1 and 3: the heavier one is worth more per unit
    // until P(D > a) x 3 falls to the other's P(D > a) x 1.
    let mut p = machine(2.0);
    add(&mut p, "light", uniform(0.0, 2.0), policy(0), None);
    let heavy = ResourcePolicy {
        weight: 3.0,
        ..Default::default()
    };
    add(&mut p, "heavy", uniform(0.0, 2.0), heavy, None);
    let s = solve(&p).unwrap();
    let (l, h) = (alloc(&p, &s, "light"), alloc(&p, &s, "heavy"));
    assert_eq!(l + h, 2.0);
    // Equal marginal gain: 1 x (1 - l/2) = 3 x (1 - h/2) with l + h = 2:
    // l = 0.5, h = 1.5.
    assert_eq!((l, h), (0.5, 1.5));
    let r = reason(&p, &s, "light");
    assert!(
        r.starts_with("short of its p95 (1.9 cores): pool 'host' full"),
        "{r}"
    );
    // Marginal gains at the cut are equal: coverage matches the weights.
    let cov: Vec<f64> = s.entries.iter().map(|e| e.coverage).collect();
    assert!(
        (1.0 - cov[0] - 3.0 * (1.0 - cov[1])).abs() < 1e-12,
        "{cov:?}"
    );
}

#[test]
fn spare_capacity_is_lent_by_marginal_gain_unless_kept_in_reserve() {
    // SLO at the median: 1 core each; spare up to all demand (2 cores each).
    let median = ResourcePolicy {
        slo_quantile: 0.5,
        ..Default::default()
    };
    let mut p = machine(10.0);
    add(&mut p, "a", uniform(0.0, 2.0), median.clone(), None);
    add(&mut p, "b", uniform(0.0, 2.0), median.clone(), None);
    let s = solve(&p).unwrap();
    assert_eq!((alloc(&p, &s, "a"), alloc(&p, &s, "b")), (2.0, 2.0));
    assert_eq!(s.pools[0].free, 6.0);
    assert_eq!(s.entries[0].outcome(), Outcome::AllDemand);
    // Less room: the spare goes evenly (equal gains), beyond the SLOs.
    p.pools[0].capacity.insert(CPU, 3.0);
    let s = solve(&p).unwrap();
    assert_eq!((alloc(&p, &s, "a"), alloc(&p, &s, "b")), (1.5, 1.5));
    let r = reason(&p, &s, "a");
    assert!(
        r.contains("covers its p50 (1 core) plus 0.5 core of spare capacity lent by marginal gain"),
        "{r}"
    );
    // A reserve of 1 core keeps spare capacity back, not SLO capacity.
    p.pools[0].reserve.insert(CPU, 1.0);
    let s = solve(&p).unwrap();
    assert_eq!(total(&s), 2.0);
    p.pools[0].reserve.insert(CPU, 2.5);
    let s = solve(&p).unwrap();
    assert_eq!(total(&s), 2.0, "the SLOs still get theirs");
}

trait OutcomeOf {
    fn outcome(&self) -> Outcome;
}
impl OutcomeOf for prescient_solver::Entry {
    fn outcome(&self) -> Outcome {
        self.reason.outcome
    }
}

#[test]
fn change_costs_keep_allocations_still_when_the_forecast_wobbles() {
    // Two equal workloads hold 1 core each; then "a"'s forecast rises a
    // little. Without a change cost a unit moves from "b" to "a"; with
    // one, nothing moves.
    let run = |change_cost: f64, a_demand: Demand| {
        let pol = ResourcePolicy {
            change_cost,
            ..Default::default()
        };
        let mut p = machine(2.0);
        add(&mut p, "a", a_demand, pol.clone(), Some(1.0));
        add(&mut p, "b", uniform(0.0, 2.0), pol, Some(1.0));
        let s = solve(&p).unwrap();
        (alloc(&p, &s, "a"), alloc(&p, &s, "b"), reason(&p, &s, "a"))
    };
    let (a, b, _) = run(0.0, uniform(0.0, 2.6));
    assert_eq!((a, b), (1.125, 0.875));
    let (a, b, r) = run(0.2, uniform(0.0, 2.6));
    assert_eq!((a, b), (1.0, 1.0), "{r}");
    // A large rise beats the change cost (paid on both sides of a move):
    // a's units gain 1 - 0.2; b's below 1 core are worth P(D > x) + 0.2.
    let (a, b, r) = run(0.2, uniform(4.0, 8.0));
    assert_eq!((a, b), (1.25, 0.75));
    assert!(r.starts_with("raised 0.25 core: short of its p95"), "{r}");
    // Uncontended, a change cost holds an allocation whose extra units gain
    // less than it costs.
    let pol = ResourcePolicy {
        change_cost: 0.3,
        ..Default::default()
    };
    let mut p = machine(10.0);
    add(&mut p, "c", uniform(0.0, 2.0), pol, Some(1.5));
    let s = solve(&p).unwrap();
    // Units above 1.5 gain at most P(D > 1.5) = 0.25 < 0.3; the p95 (1.9)
    // would need them: the change cost wins (it is part of the objective).
    assert_eq!(alloc(&p, &s, "c"), 1.5);
    let r = reason(&p, &s, "c");
    assert_eq!(
        r,
        "kept at 1.5 cores: moving costs more than it gains; short of its p95 (1.9 cores)"
    );
}

#[test]
fn a_workload_that_does_not_lend_keeps_what_it_holds_within_its_class() {
    let mut p = machine(2.0);
    let keep = ResourcePolicy {
        lendable: false,
        ..Default::default()
    };
    add(&mut p, "cache", uniform(0.0, 0.5), keep, Some(1.5));
    add(&mut p, "web", uniform(0.0, 2.0), policy(0), None);
    let s = solve(&p).unwrap();
    assert_eq!(alloc(&p, &s, "cache"), 1.5);
    // Lendable, it would give most of it to "web".
    p.workloads[0].resources[0].policy.lendable = true;
    let s = solve(&p).unwrap();
    assert!(alloc(&p, &s, "cache") < 0.75, "{}", alloc(&p, &s, "cache"));
    // A higher class still takes it.
    p.workloads[0].resources[0].policy.lendable = false;
    p.workloads[1].resources[0].policy.priority = 1;
    let s = solve(&p).unwrap();
    assert_eq!(alloc(&p, &s, "web"), 2.0);
}

#[test]
fn requests_are_granted_from_free_capacity_then_borrowed_and_say_from_whom() {
    let mut p = machine(4.0);
    add(&mut p, "etl", uniform(0.0, 1.0), policy(0), None);
    add(&mut p, "api", uniform(0.0, 2.0), policy(0), None);
    p.requests.push(Request {
        workload: WorkloadId("etl".into()),
        resource: CPU,
        amount: 3.0,
        priority: 5,
        justification: "month-end batch".into(),
    });
    let s = solve(&p).unwrap();
    assert_eq!(alloc(&p, &s, "etl"), 3.0);
    assert_eq!(alloc(&p, &s, "api"), 1.0);
    let o = &s.requests[0];
    assert_eq!(o.status, RequestStatus::Granted);
    // Without it: etl 1 (all its demand), api 2 (all its), 1 core free.
    assert_eq!((o.without, o.from_free), (1.0, 1.0));
    assert_eq!(o.borrowed, vec![(1, 1.0)], "borrowed 1 core from api");
    let r = reason(&p, &s, "etl");
    assert!(r.contains("request for 3 cores granted"), "{r}");

    // A request that cannot fit is queued with the reason; what it can
    // have, it gets.
    p.requests[0].amount = 10.0;
    let s = solve(&p).unwrap();
    let o = &s.requests[0];
    assert_eq!(o.status, RequestStatus::Partial);
    assert_eq!(o.granted, 4.0);
    let why = o.queued_because.as_deref().unwrap();
    assert!(
        why.contains("pool 'host' full (4 cores of 4 cores allocated"),
        "{why}"
    );
    assert!(why.contains("queued until capacity frees"), "{why}");
}

#[test]
fn requests_take_from_lower_priorities_first() {
    let mut p = machine(3.0);
    add(&mut p, "low", uniform(0.0, 1.5), policy(0), None);
    add(&mut p, "high", uniform(0.0, 1.5), policy(2), None);
    add(&mut p, "asker", uniform(0.0, 0.1), policy(1), None);
    p.requests.push(Request {
        workload: WorkloadId("asker".into()),
        resource: CPU,
        amount: 1.5,
        priority: 1,
        justification: "deploy".into(),
    });
    let s = solve(&p).unwrap();
    // "high" keeps its SLO (p95 of U(0, 1.5) = 1.425 -> 1.5); the request
    // (priority 1) takes from "low" (priority 0).
    assert_eq!(alloc(&p, &s, "high"), 1.5);
    assert_eq!(alloc(&p, &s, "asker"), 1.5);
    assert_eq!(alloc(&p, &s, "low"), 0.0);
    assert_eq!(s.requests[0].status, RequestStatus::Granted);
    assert_eq!(s.requests[0].borrowed, vec![(0, 1.375)]);
}

#[test]
fn tiers_fill_cheapest_first_and_moves_are_reported() {
    let mut p = Problem::new(0);
    p.pools.push(Pool {
        name: "node".into(),
        tiers: vec![
            Tier {
                name: "guaranteed".into(),
                capacity: [(CPU, 4.0)].into(),
                unit_cost: [(CPU, 0.4)].into(),
            },
            Tier {
                name: "burstable".into(),
                capacity: [(CPU, 2.0)].into(),
                unit_cost: [(CPU, 0.0)].into(),
            },
        ],
        ..Default::default()
    });
    let median = ResourcePolicy {
        slo_quantile: 0.5,
        ..Default::default()
    };
    add(&mut p, "a", uniform(0.0, 2.0), median.clone(), Some(1.0));
    p.workloads[0].resources[0].current_tier = Some(0);
    add(&mut p, "b", uniform(0.0, 2.0), median, None);
    let s = solve(&p).unwrap();
    // SLOs (1 core each) fill the free tier; a unit from the paid tier is
    // taken while its mean P(D > x) beats the price 0.4: [1, 1.125] (0.469)
    // and [1.125, 1.25] (0.406), not [1.25, 1.375] (0.344).
    let (a, b) = (alloc(&p, &s, "a"), alloc(&p, &s, "b"));
    assert_eq!((a, b), (1.25, 1.25));
    let usage = &s.pools[0];
    assert_eq!(usage.tiers, vec![(1, 2.0), (0, 0.5)]);
    assert!((usage.cost - 0.2).abs() < 1e-12);
    // "a" held 1 core in the guaranteed tier; now the free tier has room.
    assert_eq!(s.moves.len(), 1, "{:?}", s.moves);
    let m = &s.moves[0];
    assert_eq!((m.workload, m.from, m.to), (0, 0, 1));
    assert!(m.cost_change < 0.0);
}

#[test]
fn reasons_say_when_an_allocation_rises_ahead_of_a_predicted_rise() {
    let mut p = machine(8.0);
    p.at = 8 * 3_600_000 + 55 * 60_000;
    p.steps = 2;
    let demand = Demand {
        start: p.at,
        step_ms: 300_000,
        levels: Arc::from([0.5, 0.95]),
        values: vec![0.5, 0.5, 1.0, 1.0],
    };
    add(&mut p, "web", demand, policy(0), Some(0.5));
    let s = solve(&p).unwrap();
    assert_eq!(alloc(&p, &s, "web"), 1.0);
    let r = reason(&p, &s, "web");
    assert_eq!(
        r,
        "raised 0.5 core ahead of the rise to 1 core at 09:00: covers all predicted demand (peak 1 core)"
    );
}

#[test]
fn spread_hands_out_what_no_forecast_wants_in_proportion() {
    let mut p = machine(8.0);
    p.pools[0].spare = Spare::Spread;
    add(&mut p, "small", Demand::point(0, 1, 1.0), policy(0), None);
    add(&mut p, "big", Demand::point(0, 1, 3.0), policy(0), None);
    let s = solve(&p).unwrap();
    // All demand (1 + 3), then 4 cores spread 1:3.
    assert_eq!((alloc(&p, &s, "small"), alloc(&p, &s, "big")), (2.0, 6.0));
    assert_eq!(s.entries[0].reason.outcome, Outcome::Spread);
    let r = reason(&p, &s, "big");
    assert_eq!(
        r,
        "covers all predicted demand (peak 3 cores) plus 3 cores of spare capacity spread"
    );
}

#[test]
fn nested_pools_hold_their_own_capacity() {
    let mut p = machine(4.0);
    p.pools.push(Pool {
        name: "batch.slice".into(),
        parent: Some(0),
        capacity: [(CPU, 1.0)].into(),
        ..Default::default()
    });
    add(&mut p, "web", uniform(0.0, 1.0), policy(0), None);
    add(&mut p, "job1", uniform(0.0, 2.0), policy(0), None);
    add(&mut p, "job2", uniform(0.0, 2.0), policy(0), None);
    p.workloads[1].pool = 1;
    p.workloads[2].pool = 1;
    let s = solve(&p).unwrap();
    assert_eq!(alloc(&p, &s, "web"), 1.0);
    assert_eq!(alloc(&p, &s, "job1") + alloc(&p, &s, "job2"), 1.0);
    let r = reason(&p, &s, "job1");
    assert!(r.contains("pool 'batch.slice' full"), "{r}");
}

#[test]
fn allocations_move_in_whole_units_above_the_guarantee() {
    let mut p = machine(10.0);
    p.units.insert(CPU, 0.3);
    let g = ResourcePolicy {
        guarantee: 0.2,
        ..Default::default()
    };
    add(&mut p, "a", uniform(0.0, 1.0), g, None);
    let s = solve(&p).unwrap();
    // p95 of U(0, 1) = 0.95: 0.2 + 3 x 0.3 = 1.1 covers it (and all demand).
    assert!((alloc(&p, &s, "a") - 1.1).abs() < 1e-12);
    // A bad unit is an error.
    p.units.insert(CPU, 0.0);
    let err = solve(&p).unwrap_err().to_string();
    assert_eq!(err, "allocation unit 0 for cpu must be a finite number > 0");
}

#[test]
fn working_memory_stays_under_a_kibibyte_per_workload_resource() {
    // 13 levels, one step: the forecast engine's default profile.
    let levels: Arc<[f64]> = Arc::from([
        0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999,
    ]);
    let mut p = machine(500.0);
    for i in 0..2000 {
        let m = 0.1 + (i % 13) as f64 * 0.05;
        let values = levels.iter().map(|l| m * (0.5 + l)).collect();
        let d = Demand {
            start: 0,
            step_ms: 300_000,
            levels: levels.clone(),
            values,
        };
        add(&mut p, &format!("w{i}"), d, policy(i % 3), None);
    }
    p.pools[0].capacity.insert(CPU, 300.0);
    let s = solve(&p).unwrap();
    let per = s.stats.working_bytes as f64 / s.stats.working_curves as f64;
    assert!(per <= 1024.0, "{per} bytes per workload-resource");
}

#[test]
fn duplicate_names_are_refused_in_large_problems_too() {
    // Large enough that a parallel solve checks names alongside the
    // resources' solves, with two resources so that it runs them in parallel.
    let mut p = machine(1000.0);
    p.pools[0].capacity.insert(Resource::Memory, 1e12);
    for i in 0..20_000 {
        let name = if i == 19_999 {
            "w7".into()
        } else {
            format!("w{i}")
        };
        add(&mut p, &name, uniform(0.0, 0.1), policy(0), None);
        let mem = WorkloadResource {
            resource: Resource::Memory,
            demand: uniform(0.0, 1e8),
            policy: policy(0),
            current: None,
            current_tier: None,
        };
        p.workloads.last_mut().unwrap().resources.push(mem);
    }
    let err = solve(&p).unwrap_err();
    assert!(
        err.errors
            .iter()
            .any(|e| matches!(e, InputError::DuplicateWorkload(n) if n == "w7")),
        "{err}"
    );
    p.workloads[19_999].name = WorkloadId("w19999".into());
    let s = solve(&p).unwrap();
    assert_eq!(s.entries.len(), 40_000);
    // The check of workloads runs in chunks there: errors of any chunk
    // still name their workload.
    let cpu = p.workloads[18_000].resources[0].clone();
    p.workloads[18_000].resources.push(cpu);
    let err = solve(&p).unwrap_err();
    assert!(
        err.errors.iter().any(|e| matches!(e,
            InputError::DuplicateResource { workload, .. } if workload == "w18000")),
        "{err}"
    );
}

#[test]
fn io_operations_are_planned_in_units_of_10_ops_and_read_as_ops_per_second() {
    const OPS: Resource = Resource::IoReadOps;
    let mut p = Problem::new(0);
    p.pools.push(Pool {
        name: "host".into(),
        capacity: [(OPS, 1000.0)].into(),
        ..Default::default()
    });
    for (name, demand, priority) in [
        ("db", uniform(0.0, 805.0), 1),
        ("batch", uniform(0.0, 600.0), 0),
    ] {
        p.workloads.push(Workload {
            name: WorkloadId(name.into()),
            pool: 0,
            resources: vec![WorkloadResource {
                resource: OPS,
                demand,
                policy: policy(priority),
                current: None,
                current_tier: None,
            }],
        });
    }
    assert_eq!(p.unit(OPS), 10.0, "the default unit");
    let s = solve(&p).unwrap();
    let a = |i: usize| s.allocation(i, OPS).unwrap();
    // db's p95 is 764.75 ops/s: 77 units of 10.
    assert_eq!(a(0), 770.0);
    // batch gets the rest of the pool.
    assert_eq!(a(1), 230.0);
    let text = |i: usize| {
        s.entries
            .iter()
            .find(|e| e.workload == i)
            .unwrap()
            .reason_text(&p)
    };
    assert_eq!(
        text(0),
        "covers its p95 (764.75 ops/s); pool 'host' full, SLOs of priority 0 first"
    );
    assert_eq!(
        text(1),
        "short of its p95 (570 ops/s): pool 'host' full, priority-0 SLOs shared by marginal gain"
    );
    assert_eq!(prescient_solver::fmt_amount(OPS, 2.5), "2.5 ops/s");
    assert_eq!(
        prescient_solver::fmt_amount(Resource::IoWriteOps, 12_000.0),
        "12000 ops/s"
    );
}
