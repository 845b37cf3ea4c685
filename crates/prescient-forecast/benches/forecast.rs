//! Speed and size of the online engine on the Alibaba 2018 series (10 s
//! steps): one observation plus the one-step calibrated quantiles, per
//! series, with the whole ensemble; next to references measured in the same
//! run (a plain EWMA update, the decaying histogram alone), because the
//! machines are shared and noisy. Also prints the state size per series.
//!
//! And the lead-lag detector's cost per step over the VMs of one PlanetLab
//! host (about 40 series), next to the cost of just building the step's
//! observations.
//!
//! Reads ../shared/traces when present (set PRESCIENT_TRACES to point
//! elsewhere); otherwise says so and uses the committed sample.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prescient_core::{Resource, SeriesKey};
use prescient_forecast::histogram::{BucketScheme, DecayingHistogram};
use prescient_forecast::leadlag::{LeadLag, LeadLagConfig};
use prescient_forecast::models::RecentLevel;
use prescient_forecast::{DEFAULT_LEVELS, Model, SeriesContext, SeriesForecaster};
use prescient_trace::TraceReader;

fn trace() -> PathBuf {
    trace_file("alibaba2018.csv.gz")
}

fn trace_file(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let full = std::env::var_os("PRESCIENT_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/traces"))
        .join(name);
    if full.exists() {
        full
    } else {
        eprintln!(
            "full trace absent ({}): benchmarking on the committed sample",
            full.display()
        );
        root.join("data/sample").join(name)
    }
}

fn series(resource: Resource) -> Vec<(i64, f64)> {
    TraceReader::open(&trace())
        .expect("the trace opens")
        .map(|r| r.expect("the trace reads"))
        .filter(|r| r.resource == resource)
        .map(|r| (r.ts_ms(), r.value))
        .collect()
}

/// Feeds `samples` forever: after the end, again, shifted by the span.
struct Feed {
    samples: Vec<(i64, f64)>,
    i: usize,
    shift: i64,
}

impl Feed {
    fn next(&mut self) -> (i64, f64) {
        if self.i == self.samples.len() {
            self.i = 0;
            let span = self.samples.last().unwrap().0 - self.samples[0].0;
            self.shift += span + 10_000;
        }
        let (ts, v) = self.samples[self.i];
        self.i += 1;
        (ts + self.shift, v)
    }
}

fn bench(c: &mut Criterion) {
    let levels = [0.9, 0.95, 0.99, 0.999];
    for resource in [Resource::Cpu, Resource::Memory] {
        let samples = series(resource);
        let ctx = SeriesContext {
            step_ms: 10_000,
            resource,
        };
        // Warm up on the first three days, so that the season is found, the
        // checks are pending and the weights have learnt.
        let warm = samples.len().min(3 * 8640);
        let mut engine = SeriesForecaster::new(ctx, &[]);
        for &(ts, v) in &samples[..warm] {
            engine.observe(ts, v);
        }
        for &l in &levels {
            engine.track_level(l);
        }
        eprintln!(
            "{resource}: state after {warm} observations: {} bytes serialised, ~{} bytes in memory",
            engine.state_bytes(),
            engine.memory_bytes()
        );
        let mut group = c.benchmark_group(format!("alibaba_{resource}"));
        group
            .sample_size(50)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));

        let mut feed = Feed {
            samples: samples[warm..].to_vec(),
            i: 0,
            shift: 0,
        };
        let mut out = [0.0; 4];
        group.bench_function("ensemble: observe + one-step quantiles", |b| {
            b.iter(|| {
                let (ts, v) = feed.next();
                engine.observe(ts, v);
                engine.one_step(&levels, &mut out);
                black_box(out[1])
            })
        });

        let mut ewma = RecentLevel::new(ctx);
        let mut row = [0.0; DEFAULT_LEVELS.len()];
        let mut feed = Feed {
            samples: samples.clone(),
            i: 0,
            shift: 0,
        };
        group.bench_function("reference: EWMA model update + forecast", |b| {
            b.iter(|| {
                let (ts, v) = feed.next();
                ewma.update(ts, v);
                ewma.forecast(ts + 10_000, 1, &DEFAULT_LEVELS, &mut row);
                black_box(row[7])
            })
        });

        let mut hist = DecayingHistogram::new(BucketScheme::for_resource(resource), 24 * 3_600_000);
        let mut feed = Feed {
            samples: samples.clone(),
            i: 0,
            shift: 0,
        };
        group.bench_function("reference: decaying histogram add + p95", |b| {
            b.iter(|| {
                let (ts, v) = feed.next();
                hist.add(v, ts);
                black_box(hist.percentile(0.95))
            })
        });
        group.finish();
    }
}

/// Lead-lag detection over the VMs of the first PlanetLab host.
fn bench_leadlag(c: &mut Criterion) {
    let mut host = None;
    let mut series: Vec<(SeriesKey, Vec<f64>)> = Vec::new();
    for r in TraceReader::open(&trace_file("planetlab.csv.gz")).expect("the trace opens") {
        let r = r.expect("the trace reads");
        if host.get_or_insert_with(|| r.host.clone()) != &r.host {
            break;
        }
        match series.last_mut() {
            Some((k, v)) if k.workload.0 == r.workload => v.push(r.value),
            _ => series.push((r.key(), vec![r.value])),
        }
    }
    let steps = series.iter().map(|s| s.1.len()).min().unwrap_or(0);
    let step_ms = 300_000;
    let mut group = c.benchmark_group(format!("leadlag_{}_series", series.len()));
    group.measurement_time(Duration::from_secs(5));
    let observations = |t: usize| -> Vec<(SeriesKey, f64)> {
        series
            .iter()
            .map(|(k, v)| (k.clone(), v[t % steps]))
            .collect()
    };
    let mut ll = LeadLag::new(step_ms, LeadLagConfig::default());
    let mut t = 0usize;
    group.bench_function("update one step", |b| {
        b.iter(|| {
            let obs = observations(t);
            ll.update(t as i64 * step_ms, &obs);
            t += 1;
        })
    });
    let mut t = 0usize;
    group.bench_function("reference: build the step's observations", |b| {
        b.iter(|| {
            t += 1;
            black_box(observations(t))
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_leadlag);
criterion_main!(benches);
