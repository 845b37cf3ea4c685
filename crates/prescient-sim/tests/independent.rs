//! Recomputes one policy's scores on a real trace with a plain loop that
//! shares no code with the engine (its own gzip CSV parsing, grouping,
//! policy and scoring), and checks the engine gets the same figures.
//!
//! The policy is `reactive` (last demand times 1 + margin); the trace is the
//! committed PlanetLab sample, and the full trace too when ../shared has it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use prescient_core::Resource;
use prescient_sim::{Capacity, ReplayConfig, ReplayTrace, policies, replay};

const MARGIN: f64 = 0.2;
const WARMUP: usize = 36;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// host -> workload -> demand per step, in file order.
fn read_plainly(path: &Path) -> BTreeMap<String, BTreeMap<String, Vec<f64>>> {
    let file = std::fs::File::open(path).unwrap();
    let lines = BufReader::new(flate2::read::MultiGzDecoder::new(file)).lines();
    let mut hosts: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    for line in lines.skip(1) {
        let line = line.unwrap();
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f[3], "cpu");
        hosts
            .entry(f[1].to_string())
            .or_default()
            .entry(f[2].to_string())
            .or_default()
            .push(f[4].parse().unwrap());
    }
    hosts
}

/// (violation, unmet, slack) of `reactive` at MARGIN, with an optional
/// capacity per host and proportional scaling when a host is over it.
fn plain_scores(
    hosts: &BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    capacity: Option<f64>,
) -> (f64, f64, f64) {
    let (mut n, mut short, mut demand, mut served, mut alloc) = (0u64, 0u64, 0.0, 0.0, 0.0);
    for workloads in hosts.values() {
        let series: Vec<&Vec<f64>> = workloads.values().collect();
        let steps = series[0].len();
        for t in 0..steps {
            let mut a: Vec<f64> = series
                .iter()
                .map(|d| {
                    if t == 0 {
                        0.0
                    } else {
                        d[t - 1] * (1.0 + MARGIN)
                    }
                })
                .collect();
            if let Some(cap) = capacity {
                let total: f64 = a.iter().sum();
                if total > cap {
                    a.iter_mut().for_each(|x| *x *= cap / total);
                }
            }
            if t < WARMUP {
                continue;
            }
            for (d, a) in series.iter().map(|d| d[t]).zip(a) {
                n += 1;
                if d > a {
                    short += 1;
                }
                demand += d;
                served += d.min(a);
                alloc += a;
            }
        }
    }
    (
        short as f64 / n as f64,
        (demand - served) / demand,
        (alloc - served) / alloc,
    )
}

fn check(path: &Path) {
    let plain = read_plainly(path);
    let trace = ReplayTrace::load(path, Resource::Cpu, &|_| {}).unwrap();
    let reactive = policies::by_name("reactive").unwrap();
    for capacity in [None, Some(4.5)] {
        let config = ReplayConfig {
            warmup_steps: WARMUP,
            capacity: capacity.map(Capacity::All),
            ..Default::default()
        };
        let run = replay(&trace, reactive.as_ref(), &[MARGIN], &config, &|_| {}).unwrap();
        let s = run.tallies[0].score();
        let (violation, unmet, slack) = plain_scores(&plain, capacity);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(
            close(s.violation, violation) && close(s.unmet, unmet) && close(s.slack, slack),
            "{}: capacity {capacity:?}: engine {s:?} vs plain loop ({violation}, {unmet}, {slack})",
            path.display()
        );
        // Guard against both sides being trivially zero.
        assert!(violation > 0.01 && unmet > 0.001 && slack > 0.01);
    }
}

#[test]
fn reactive_on_the_committed_sample() {
    check(&repo().join("data/sample/planetlab.csv.gz"));
}

#[test]
fn reactive_on_the_full_planetlab_trace() {
    let path = repo().join("../shared/traces/planetlab.csv.gz");
    if !path.exists() {
        eprintln!("skipped: {} not found (full traces absent)", path.display());
        return;
    }
    check(&path);
}
