//! How close can a contended split get? Unmet demand on PlanetLab CPU
//! under hard limits, for the prescient policy and the VPA at its best knob
//! (the least unmet over its sweep), next to two yardsticks measured in the
//! same run:
//!
//! - the *oracle* (knows each step's demand: only a host's total above
//!   its capacity goes unmet);
//! - the *hindsight distribution* ([`hindsight_distribution_unmet`]):
//!   knows each workload's demand distribution over the 30 min, 1 h or 2 h
//!   on either side of a step, future included, but not the step itself.
//!
//! The gap between the two yardsticks is the step-to-step noise of 5-minute
//! VM data: no forecast of a workload's level and spread can place it. A
//! policy at the hindsight figure has nothing left to gain from better
//! distributions.
//!
//! Second, the live benchmark's scenario (`cargo bench -p prescient --bench
//! live`) replayed: host pl038's 8 busiest VMs, 1.5 cores, the first 80
//! steps, scored from the first step (the live runs start cold).
//!
//! ```sh
//! cargo run --release -p prescient-sim --example contended_bound -- [TRACE]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use prescient_core::Resource;
use prescient_sim::policies::prescient::Prescient;
use prescient_sim::replay::{hindsight_distribution_unmet, oracle_unmet};
use prescient_sim::{Capacity, Policy, ReplayConfig, ReplayTrace, policies, replay};

/// Half-windows of the hindsight distribution, in 5-minute steps.
const HALF_WINDOWS: [usize; 3] = [6, 12, 24];

fn main() -> ExitCode {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/traces/planetlab.csv.gz")
        });
    if !path.is_file() {
        eprintln!(
            "{}: not found (the full PlanetLab trace lives in ../shared/traces; give a trace path)",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    let trace = match ReplayTrace::load(&path, Resource::Cpu, &|_| {}) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}: {} hosts, {} series, cpu, hard limits\n",
        path.display(),
        trace.hosts.len(),
        trace.series_count()
    );
    let vpa = policies::by_name("vpa").expect("the VPA is a reference policy");
    let prescient = Prescient::default();
    println!(
        "| cores a host | oracle | hindsight ±30 min | ±1 h | ±2 h | prescient | vpa at its best knob | prescient / vpa | ±2 h / vpa |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for cap in [4.0, 4.5, 5.0] {
        let config = ReplayConfig {
            capacity: Some(Capacity::All(cap)),
            ..Default::default()
        };
        let row = Row::measure(&trace, &config, vpa.as_ref(), &prescient);
        row.print(&format!("{cap}"));
    }

    let Some(live) = live_scenario(&trace, "pl038", 8, 80) else {
        println!("\nhost pl038 is not in this trace: the live scenario is skipped");
        return ExitCode::SUCCESS;
    };
    println!(
        "\nThe live benchmark's scenario: pl038's 8 busiest VMs ({}), 1.5 cores, steps 0-79, no warm-up\n",
        live.hosts[0]
            .series
            .iter()
            .map(|s| s.key.workload.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "| cores | oracle | hindsight ±30 min | ±1 h | ±2 h | prescient | vpa at its best knob | prescient / vpa | ±2 h / vpa |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let config = ReplayConfig {
        warmup_steps: 0,
        capacity: Some(Capacity::All(1.5)),
        ..Default::default()
    };
    Row::measure(&live, &config, vpa.as_ref(), &prescient).print("1.5");
    let equal = policies::by_name("static-equal").expect("a reference policy");
    let run = replay(&live, equal.as_ref(), &[0.0], &config, &|_| {}).expect("replays");
    println!(
        "\nstatic-equal on the same scenario: {:.2}% unmet",
        100.0 * run.tallies[0].score().unmet
    );
    ExitCode::SUCCESS
}

struct Row {
    oracle: f64,
    hindsight: Vec<f64>,
    prescient: f64,
    vpa_best: f64,
    vpa_knob: f64,
}

impl Row {
    fn measure(
        trace: &ReplayTrace,
        config: &ReplayConfig,
        vpa: &dyn Policy,
        prescient: &dyn Policy,
    ) -> Row {
        let cap = config.capacity.as_ref().expect("a contended config");
        let w = config.warmup_steps;
        let sweep = vpa.knob().sweep;
        let run = replay(trace, vpa, &sweep, config, &|_| {}).expect("replays");
        let (vpa_best, vpa_knob) = run
            .tallies
            .iter()
            .zip(&sweep)
            .map(|(t, &k)| (t.score().unmet, k))
            .fold(
                (f64::INFINITY, f64::NAN),
                |a, b| if b.0 < a.0 { b } else { a },
            );
        let run = replay(
            trace,
            prescient,
            &[prescient.knob().default],
            config,
            &|_| {},
        )
        .expect("replays");
        Row {
            oracle: oracle_unmet(trace, cap, w).expect("capacity is valid"),
            hindsight: HALF_WINDOWS
                .iter()
                .map(|&h| hindsight_distribution_unmet(trace, cap, w, h).expect("valid"))
                .collect(),
            prescient: run.tallies[0].score().unmet,
            vpa_best,
            vpa_knob,
        }
    }

    fn print(&self, cores: &str) {
        let pct = |x: f64| format!("{:.2}%", 100.0 * x);
        println!(
            "| {cores} | {} | {} | {} | {} | {} | {} (p{}) | {:.3} | {:.3} |",
            pct(self.oracle),
            pct(self.hindsight[0]),
            pct(self.hindsight[1]),
            pct(self.hindsight[2]),
            pct(self.prescient),
            pct(self.vpa_best),
            self.vpa_knob * 100.0,
            self.prescient / self.vpa_best,
            self.hindsight[2] / self.vpa_best,
        );
    }
}

/// Host `host`'s `n` busiest series (by mean demand), its first `steps`
/// steps, as a trace of its own.
fn live_scenario(trace: &ReplayTrace, host: &str, n: usize, steps: usize) -> Option<ReplayTrace> {
    let h = trace.hosts.iter().find(|h| h.host.0 == host)?;
    let mean = |d: &[f64]| {
        let v: Vec<f64> = d.iter().copied().filter(|x| !x.is_nan()).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let mut by_mean: Vec<(usize, f64)> = h
        .series
        .iter()
        .enumerate()
        .map(|(i, s)| (i, mean(&s.demand)))
        .collect();
    by_mean.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut keep: Vec<usize> = by_mean.iter().take(n).map(|&(i, _)| i).collect();
    keep.sort_unstable();
    let mut host_trace = h.clone();
    host_trace.series = keep
        .iter()
        .map(|&i| {
            let mut s = h.series[i].clone();
            s.demand.truncate(steps);
            s
        })
        .collect();
    host_trace.timestamps.truncate(steps);
    Some(ReplayTrace {
        hosts: vec![host_trace],
        ..trace.clone()
    })
}
