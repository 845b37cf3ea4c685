use std::sync::Arc;
use std::time::Instant;
use prescient_core::{Resource, ResourcePolicy, WorkloadId};
use prescient_solver::{Demand, Pool, Problem, Solver, Workload, WorkloadResource};
include!("/tmp/machine.rs");
fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(100_000);
    let reps: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(5);
    let p = machine(n);
    let mut s = Solver::new();
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        let sol = s.solve(&p).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(sol);
    }
    let sol = last.unwrap();
    let sum: f64 = sol.entries.iter().map(|e| e.allocation + e.coverage + e.expected_unmet).sum();
    println!("n={n} best {:.2} ms passes {} bytes/curve {:.0} checksum {sum:.9}", best*1e3, sol.stats.passes, sol.stats.working_bytes as f64 / sol.stats.working_curves as f64);
}
