//! Replay speed on the real traces: reading a trace (the reference measured
//! in the same run), then each reference policy's full knob sweep, and all
//! of them together, as `prescient replay --sweep` runs them.
//!
//! Reads ../shared/traces when present (set PRESCIENT_TRACES to point
//! elsewhere); otherwise says so and uses the committed sample.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prescient_core::Resource;
use prescient_sim::{ReplayConfig, ReplayTrace, policies, replay};

fn traces_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let full = std::env::var_os("PRESCIENT_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/traces"));
    if full.join("planetlab.csv.gz").exists() {
        full
    } else {
        eprintln!(
            "full traces absent ({}): benchmarking on the committed sample, figures are not comparable",
            full.display()
        );
        root.join("data/sample")
    }
}

fn bench_trace(c: &mut Criterion, file: &str, resource: Resource) {
    let path = traces_dir().join(file);
    let name = format!("{}_{}", file.trim_end_matches(".csv.gz"), resource);
    let mut group = c.benchmark_group(&name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("read trace (reference)", |b| {
        b.iter(|| ReplayTrace::load(&path, resource, &|_| {}).unwrap())
    });
    let trace = ReplayTrace::load(&path, resource, &|_| {}).unwrap();
    let config = ReplayConfig::default();
    let runnable: Vec<_> = policies::reference()
        .into_iter()
        .filter(|p| p.name() != "static-equal") // needs a capacity
        .collect();
    for p in &runnable {
        let sweep = p.knob().sweep;
        group.bench_function(format!("sweep {}", p.name()), |b| {
            b.iter(|| replay(&trace, p.as_ref(), &sweep, &config, &|_| {}).unwrap())
        });
    }
    group.bench_function("sweep every policy", |b| {
        b.iter(|| {
            for p in &runnable {
                replay(&trace, p.as_ref(), &p.knob().sweep, &config, &|_| {}).unwrap();
            }
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_trace(c, "planetlab.csv.gz", Resource::Cpu);
    bench_trace(c, "gcd.csv.gz", Resource::Memory);
}

criterion_group!(replay_benches, benches);
criterion_main!(replay_benches);
