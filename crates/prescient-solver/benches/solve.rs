//! Solve speed: one plan for N workloads x 4 resources on one contended
//! machine, next to a reference measured in the same run (sorting the same
//! number of f64s: 4N), since the machine is shared and noisy.
//!
//! One group, `plan`, at 100, 1k, 10k and 100k workloads (the targets:
//! 10 ms at 10k, 100 ms at 100k), each size with the reference. Set `PRESCIENT_BENCH_QUICK=1` for short runs.
//! The working memory per workload-resource is printed once per size, and
//! at the end a table of how the time grows with the number of workloads
//! (best of a few plain timings of each size, next to the reference).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use prescient_core::{Resource, ResourcePolicy, WorkloadId};
use prescient_solver::{Demand, Pool, Problem, Solver, Workload, WorkloadResource};

/// The forecast engine's default levels.
const LEVELS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999,
];

const RESOURCES: [(Resource, f64); 4] = [
    (Resource::Cpu, 1.0),
    (Resource::Memory, 2.0 * 1024.0 * 1024.0 * 1024.0),
    (Resource::IoRead, 20.0 * 1024.0 * 1024.0),
    (Resource::NetRx, 10.0 * 1024.0 * 1024.0),
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` workloads with 13-level profiles of every resource, three priority
/// classes, weights, guarantees, limits and change costs on some, on one
/// machine with 70% of the sum of their p95s.
pub fn machine(n: usize) -> Problem {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
    let levels: Arc<[f64]> = Arc::from(LEVELS);
    let mut p = Problem::new(0);
    let mut p95 = [0.0; 4];
    for i in 0..n {
        let mut resources = Vec::with_capacity(4);
        for (r, &(resource, scale)) in RESOURCES.iter().enumerate() {
            // A skewed demand: median around scale x U(0.1, 1), spread up to 3x.
            let median = scale * (0.1 + 0.9 * rng.next());
            let spread = 0.2 + 2.0 * rng.next();
            let values: Vec<f64> = LEVELS
                .iter()
                .map(|&l| {
                    median
                        * (1.0 + spread * (l - 0.5)).max(0.05)
                        * (1.0 + (l - 0.5).max(0.0) * spread)
                })
                .collect();
            p95[r] += values[7];
            let current = (i % 3 == 0).then(|| values[6]);
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
                    weight: 0.5 + rng.next(),
                    slo_quantile: 0.95,
                    change_cost: if i % 3 == 0 { 0.05 } else { 0.0 },
                    lendable: true,
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

fn quick() -> bool {
    std::env::var_os("PRESCIENT_BENCH_QUICK").is_some()
}

fn reference_floats(n: usize) -> Vec<f64> {
    let mut rng = Rng(12345);
    (0..4 * n).map(|_| rng.next()).collect()
}

/// Best of `reps` timings of `f`, in milliseconds.
fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

/// One row of the growth table: workloads, solve ms, sort-4N ms, bytes per
/// workload-resource.
type Growth = (usize, f64, f64, f64);

fn bench_size(c: &mut Criterion, group: &str, n: usize, label: &str) -> Growth {
    let problem = machine(n);
    let mut solver = Solver::new();
    let solution = solver.solve(&problem).expect("valid problem");
    let st = solution.stats;
    eprintln!(
        "{label}: {} workload-resources; working memory of the largest resource's solve {} bytes for {} workload-resources = {:.0} bytes per workload-resource; {} search passes",
        st.curves,
        st.working_bytes,
        st.working_curves,
        st.working_bytes as f64 / st.working_curves.max(1) as f64,
        st.passes,
    );
    let floats = reference_floats(n);
    let mut g = c.benchmark_group(group);
    let (samples, time) = if quick() {
        (10, 2)
    } else if n >= 100_000 {
        (10, 10)
    } else {
        (20, 5)
    };
    g.sample_size(samples)
        .measurement_time(Duration::from_secs(time))
        .warm_up_time(Duration::from_secs(1));
    g.bench_function(BenchmarkId::new("solve", label), |b| {
        b.iter(|| black_box(solver.solve(black_box(&problem)).unwrap()))
    });
    g.bench_function(BenchmarkId::new("solve+plan text", label), |b| {
        b.iter(|| {
            let s = solver.solve(black_box(&problem)).unwrap();
            black_box(s.plans(&problem))
        })
    });
    g.bench_function(BenchmarkId::new("reference: sort 4N f64", label), |b| {
        b.iter(|| {
            let mut v = floats.clone();
            v.sort_unstable_by(f64::total_cmp);
            black_box(v)
        })
    });
    g.finish();
    // Best of a few plain timings, for the growth table printed at the end.
    let reps = if n >= 100_000 { 5 } else { 20 };
    let solve_ms = best_ms(reps, || {
        black_box(solver.solve(black_box(&problem)).unwrap());
    });
    let sort_ms = best_ms(reps, || {
        let mut v = floats.clone();
        v.sort_unstable_by(f64::total_cmp);
        black_box(v);
    });
    let bytes = st.working_bytes as f64 / st.working_curves.max(1) as f64;
    (n, solve_ms, sort_ms, bytes)
}

fn plan(c: &mut Criterion) {
    let mut rows = Vec::new();
    for (n, label) in [
        (100, "100"),
        (1_000, "1k"),
        (10_000, "10k"),
        (100_000, "100k"),
    ] {
        rows.push(bench_size(c, "plan", n, label));
    }
    // How the time grows with the number of workloads (4 resources each):
    // per workload-resource it should stay about flat (linear passes).
    eprintln!(
        "\n| workloads | solve (best) | per workload-resource | sort 4N f64 (best) | solve / sort | bytes per workload-resource |"
    );
    eprintln!("|---:|---:|---:|---:|---:|---:|");
    for (n, solve_ms, sort_ms, bytes) in rows {
        eprintln!(
            "| {n} | {solve_ms:.3} ms | {:.0} ns | {sort_ms:.3} ms | {:.1} | {bytes:.0} |",
            solve_ms * 1e6 / (4 * n) as f64,
            solve_ms / sort_ms
        );
    }
}

criterion_group!(benches, plan);
criterion_main!(benches);
