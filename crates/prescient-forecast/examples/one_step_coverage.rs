//! One-step calibration on a whole trace, as the `prescient-ensemble`
//! replay policy uses the engine: every series fed at its own step, asked
//! after each observation for the next step's 0.95 quantile; after a warm-up of 36 steps, the share
//! of next observations at or below it (pooled over the trace's series).
//!
//! `cargo run --release -p prescient-forecast --example one_step_coverage -- TRACE [RESOURCE]`

use std::collections::HashMap;
use std::path::PathBuf;

use prescient_core::{Resource, SeriesKey};
use prescient_forecast::{SeriesContext, SeriesForecaster};
use prescient_trace::TraceReader;

const WARMUP: usize = 36;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: one_step_coverage TRACE [RESOURCE]");
        std::process::exit(2);
    };
    let resource: Resource = args
        .next()
        .map(|r| r.parse().unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or(Resource::Cpu);
    let mut series: HashMap<SeriesKey, Vec<(i64, f64)>> = HashMap::new();
    let reader = TraceReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
    for r in reader {
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        if r.resource == resource {
            series
                .entry(r.key())
                .or_default()
                .push((r.ts_ms(), r.value));
        }
    }
    let started = std::time::Instant::now();
    let (mut n, mut covered, mut within) = (0u64, 0u64, 0usize);
    let mut q = [0.0];
    for samples in series.values() {
        let step = samples
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .min()
            .unwrap_or(300_000)
            .max(1);
        let mut f = SeriesForecaster::new(
            SeriesContext {
                step_ms: step,
                resource,
            },
            &[],
        );
        f.track_level(0.95);
        let (mut sn, mut sc) = (0u64, 0u64);
        for (i, &(ts, v)) in samples.iter().enumerate() {
            if i >= WARMUP && v.is_finite() {
                sn += 1;
                sc += (v <= q[0]) as u64;
            }
            f.observe(ts, v);
            f.one_step(&[0.95], &mut q);
        }
        n += sn;
        covered += sc;
        if sn > 0 && (0.94..=0.96).contains(&(sc as f64 / sn as f64)) {
            within += 1;
        }
    }
    println!(
        "{}: {resource}, {} series, {n} one-step forecasts after a warm-up of {WARMUP} steps: coverage95 {:.4}; series individually within [0.94, 0.96]: {within}; {:.1} s",
        path.display(),
        series.len(),
        covered as f64 / n.max(1) as f64,
        started.elapsed().as_secs_f64()
    );
}
