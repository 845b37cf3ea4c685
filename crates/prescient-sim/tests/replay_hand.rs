//! The replay engine on tiny traces whose scores are computed by hand.

use prescient_core::{HostId, Resource, SeriesKey, TimestampMs};
use prescient_sim::replay::{RecordedSeries, hindsight_distribution_unmet, oracle_unmet, serve};
use prescient_sim::{
    Capacity, Enforcement, HostTrace, Knob, Policy, ReplayConfig, ReplayError, ReplayTrace,
    SeriesInfo, SeriesState, SeriesTrace, replay,
};

/// Allocates the last demand it saw times the knob (nothing before the first).
struct LastTimes;

struct LastTimesState {
    last: f64,
    seen: Vec<(TimestampMs, f64, Vec<f64>)>,
}

impl Policy for LastTimes {
    fn name(&self) -> &str {
        "last-times"
    }
    fn describe(&self) -> &str {
        "last demand times the knob"
    }
    fn knob(&self) -> Knob {
        Knob {
            name: "factor",
            default: 1.0,
            sweep: vec![1.0, 2.0],
            range: (0.0, 10.0),
        }
    }
    fn start(&self, _: &SeriesInfo<'_>, _knobs: &[f64]) -> Box<dyn SeriesState> {
        Box::new(LastTimesState {
            last: 0.0,
            seen: Vec::new(),
        })
    }
}

impl SeriesState for LastTimesState {
    fn recommend(&mut self, out: &mut [f64]) {
        // Knob settings are 1 and 2 in these tests.
        for (j, o) in out.iter_mut().enumerate() {
            *o = self.last * (j + 1) as f64;
        }
    }
    fn observe(&mut self, ts: TimestampMs, demand: f64, allocations: &[f64]) {
        self.last = demand;
        self.seen.push((ts, demand, allocations.to_vec()));
    }
}

fn trace(hosts: &[(&str, &[&[f64]])]) -> ReplayTrace {
    ReplayTrace {
        name: "hand".into(),
        resource: Resource::Cpu,
        step_ms: 300_000,
        hosts: hosts
            .iter()
            .map(|(host, series)| HostTrace {
                host: HostId(host.to_string()),
                timestamps: (0..series[0].len() as i64).map(|i| i * 300_000).collect(),
                series: series
                    .iter()
                    .enumerate()
                    .map(|(i, d)| SeriesTrace {
                        key: SeriesKey::new(*host, format!("w{i}"), Resource::Cpu),
                        demand: d.to_vec(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn no_progress(_: u64) {}

#[test]
fn uncontended_scores_by_hand() {
    // Demand 1, 2, 2, 4, 1 with warm-up 1: allocations (last value) are
    // -, 1, 2, 2, 4 at factor 1 and -, 2, 4, 4, 8 at factor 2.
    let t = trace(&[("h", &[&[1.0, 2.0, 2.0, 4.0, 1.0]])]);
    let config = ReplayConfig {
        warmup_steps: 1,
        ..Default::default()
    };
    let run = replay(&t, &LastTimes, &[1.0, 2.0], &config, &no_progress).unwrap();
    let s1 = run.tallies[0].score();
    // Factor 1: short at steps 1 (2>1) and 3 (4>2): 2 of 4.
    assert_eq!(s1.steps, 4);
    assert_eq!(s1.violation, 0.5);
    // Unmet: (2-1) + (4-2) = 3 of demand 9.
    assert!((s1.unmet - 3.0 / 9.0).abs() < 1e-12);
    // Served 1+2+2+1 = 6 of allocation 9: slack 3/9.
    assert!((s1.slack - 3.0 / 9.0).abs() < 1e-12);
    let s2 = run.tallies[1].score();
    // Factor 2: never short; served 9 of 18.
    assert_eq!(s2.violation, 0.0);
    assert_eq!(s2.unmet, 0.0);
    assert!((s2.slack - 0.5).abs() < 1e-12);
}

#[test]
fn missing_samples_are_neither_scored_nor_observed() {
    let t = trace(&[("h", &[&[1.0, f64::NAN, 3.0, 3.0]])]);
    let config = ReplayConfig {
        warmup_steps: 0,
        ..Default::default()
    };
    let run = replay(&t, &LastTimes, &[1.0], &config, &no_progress).unwrap();
    let s = run.tallies[0].score();
    // Scored steps 0, 2, 3 with allocations 0, 1, 3: short at 0 and 2.
    assert_eq!(s.steps, 3);
    assert!((s.violation - 2.0 / 3.0).abs() < 1e-12);
}

#[test]
fn contended_hard_scales_down_in_proportion() {
    // Two workloads on a host of capacity 3. Step 1 requests 2 + 4 = 6 > 3:
    // both scaled by 1/2 to 1 and 2; demands 2 and 2 → served 1 and 2.
    let t = trace(&[("h", &[&[2.0, 2.0], &[4.0, 2.0]])]);
    let config = ReplayConfig {
        warmup_steps: 1,
        capacity: Some(Capacity::All(3.0)),
        record_allocations: true,
        ..Default::default()
    };
    let run = replay(&t, &LastTimes, &[1.0], &config, &no_progress).unwrap();
    let s = run.tallies[0].score();
    assert_eq!(s.steps, 2);
    assert_eq!(s.violation, 0.5);
    assert!((s.unmet - 1.0 / 4.0).abs() < 1e-12);
    assert!(s.slack.abs() < 1e-12);
    let rec: &Vec<RecordedSeries> = run.allocations.as_ref().unwrap();
    assert_eq!(rec[0].allocations, vec![(0, 0.0), (300_000, 1.0)]);
    assert_eq!(rec[1].allocations, vec![(0, 0.0), (300_000, 2.0)]);
    // Oracle: step 1 demand 4 on capacity 3 leaves 1 of 4 unmet.
    assert!((oracle_unmet(&t, &Capacity::All(3.0), 1).unwrap() - 0.25).abs() < 1e-12);
}

#[test]
fn hindsight_distribution_splits_by_the_neighbours_of_each_step() {
    // A: 1, 5, 1; B: 2 throughout. Window of one step each side, warm-up 1.
    // Step 1 sees A {1, 1} and B {2, 2}: slopes tie at 1, A's segment
    // first: A 1, B 2 of capacity 3; A's 5 leaves 4 unmet. Step 2 sees
    // A {5}, B {2}: A takes all 3 first; B's 2 is unmet. 6 of 10.
    let t = trace(&[("h", &[&[1.0, 5.0, 1.0], &[2.0, 2.0, 2.0]])]);
    let u = hindsight_distribution_unmet(&t, &Capacity::All(3.0), 1, 1).unwrap();
    assert!((u - 0.6).abs() < 1e-12, "{u}");
    // With capacity 10, what no sample asks for is spread in proportion:
    // step 1 gives A 1 + 7/3, short of 5 by 5/3; step 2 covers both.
    let u = hindsight_distribution_unmet(&t, &Capacity::All(10.0), 1, 1).unwrap();
    assert!((u - (5.0 / 3.0) / 10.0).abs() < 1e-12, "{u}");
    // Never below the oracle.
    assert!(u >= oracle_unmet(&t, &Capacity::All(10.0), 1).unwrap());
}

#[test]
fn shares_hand_unused_capacity_to_who_is_short() {
    // Same as above under shares: allocations 1 and 2, demands 2 and 2:
    // served 1 and 2 first, no capacity left (3 = 1 + 2).
    let mut served = [0.0; 2];
    serve(
        Enforcement::Shares,
        Some(3.0),
        &[2.0, 2.0],
        &[1.0, 2.0],
        &mut served,
    );
    assert_eq!(served, [1.0, 2.0]);
    // Capacity 4: one more unit goes to the short workload.
    serve(
        Enforcement::Shares,
        Some(4.0),
        &[2.0, 2.0],
        &[1.0, 2.0],
        &mut served,
    );
    assert_eq!(served, [2.0, 2.0]);
    // Three workloads, capacity 6, allocations 1, 1, 4, demands 3, 2, 0.5:
    // first 1, 1, 0.5 (2.5 used, 3.5 left); the two short ones split it 1:1
    // (1.75 each), the second needs only 1 → 0.75 left over for the first,
    // which then has 3.
    let mut s3 = [0.0; 3];
    serve(
        Enforcement::Shares,
        Some(6.0),
        &[3.0, 2.0, 0.5],
        &[1.0, 1.0, 4.0],
        &mut s3,
    );
    assert!((s3[0] - 3.0).abs() < 1e-12 && (s3[1] - 2.0).abs() < 1e-12 && s3[2] == 0.5);
    // Hard limits never hand out more than the allocation.
    serve(
        Enforcement::Hard,
        Some(6.0),
        &[3.0, 2.0, 0.5],
        &[1.0, 1.0, 4.0],
        &mut s3,
    );
    assert_eq!(s3, [1.0, 1.0, 0.5]);
}

#[test]
fn contended_shares_replay() {
    let t = trace(&[("h", &[&[2.0, 2.0], &[4.0, 2.0]])]);
    let config = ReplayConfig {
        warmup_steps: 1,
        capacity: Some(Capacity::All(4.0)),
        enforcement: Enforcement::Shares,
        ..Default::default()
    };
    // Step 1: requests 2 and 4 scaled to 4/3 and 8/3; demands 2 and 2:
    // served 4/3 and 2, then the 2/3 left goes to the first: 2 and 2.
    let run = replay(&t, &LastTimes, &[1.0], &config, &no_progress).unwrap();
    let s = run.tallies[0].score();
    assert_eq!(s.violation, 0.0);
    assert!(s.unmet.abs() < 1e-12);
}

#[test]
fn bad_runs_are_refused_with_a_reason() {
    let t = trace(&[("h", &[&[1.0, 2.0]])]);
    let shares = ReplayConfig {
        enforcement: Enforcement::Shares,
        ..Default::default()
    };
    assert_eq!(
        replay(&t, &LastTimes, &[1.0], &shares, &no_progress).unwrap_err(),
        ReplayError::SharesWithoutCapacity
    );
    let per_host = ReplayConfig {
        capacity: Some(Capacity::PerHost(Default::default())),
        ..Default::default()
    };
    let err = replay(&t, &LastTimes, &[1.0], &per_host, &no_progress).unwrap_err();
    assert!(
        err.to_string().contains("no capacity given for host 'h'"),
        "{err}"
    );
    let negative = ReplayConfig {
        capacity: Some(Capacity::All(-1.0)),
        ..Default::default()
    };
    let err = replay(&t, &LastTimes, &[1.0], &negative, &no_progress).unwrap_err();
    assert!(matches!(err, ReplayError::BadCapacity { .. }), "{err}");
    let record = ReplayConfig {
        record_allocations: true,
        ..Default::default()
    };
    assert_eq!(
        replay(&t, &LastTimes, &[1.0, 2.0], &record, &no_progress).unwrap_err(),
        ReplayError::RecordSweep(2)
    );
    assert_eq!(
        replay(&t, &LastTimes, &[], &ReplayConfig::default(), &no_progress).unwrap_err(),
        ReplayError::NoKnobs
    );
}
