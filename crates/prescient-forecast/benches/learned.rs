//! The learned model (gradient-boosted quantile trees): how long it takes
//! to train on every shared trace, how long a series' update and one-step
//! forecast take, and how accurate it is on data it has not seen.
//!
//! Reads ../shared/traces when present (set PRESCIENT_TRACES to point
//! elsewhere); otherwise says so and uses the committed sample.
//!
//! Printed before criterion's own output (run with `cargo bench -p
//! prescient-forecast --bench learned`; figures are for a shared machine, so
//! each comes with a reference measured in the same run):
//!
//! 1. Training on every series of every trace, next to the time to read the
//!    traces and to featurise them (the part before the trees).
//! 2. Day-ahead wQL on Alibaba CPU and memory (5-minute means, an origin
//!    every midnight from day 3, 288 steps, quantiles 0.5/0.9/0.95/0.99), for
//!    a forest trained on half the PlanetLab hosts, all of the Google jobs and
//!    the Alibaba series before day 3 only (so causal for every origin),
//!    against simple references in the same run.
//! 3. One-step accuracy on the other half of the PlanetLab hosts (never
//!    trained on): pinball loss, coverage and slack at 1% violation, against
//!    each series' empirical quantile of its own history.
//!
//! Then criterion measures a series' update + one-step forecast at the 13
//! default levels, next to an EWMA update + forecast.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use prescient_core::{Resource, SeriesKey};
use prescient_forecast::learned::{
    LearnedModel, QuantileForest, SharedForest, TrainConfig, TrainingSeries, TrainingSet, train,
};
use prescient_forecast::{DEFAULT_LEVELS, Model, SeriesContext};
use prescient_trace::TraceReader;

const STEP: i64 = 300_000;
const DAY_MS: i64 = 86_400_000;
const DAY: usize = 288;
/// The protocol's quantiles.
const EVAL_LEVELS: [f64; 4] = [0.5, 0.9, 0.95, 0.99];
/// The knob swept for slack at 1% violation.
const SWEEP: [f64; 8] = [0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999];
/// Steps of warm-up before scoring one-step forecasts (as replay does).
const WARM_UP: usize = 36;

fn traces_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let full = std::env::var_os("PRESCIENT_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/traces"));
    if full.join("planetlab.csv.gz").exists() {
        println!("full traces: {}", full.display());
        full
    } else {
        println!(
            "full traces absent: training on the committed sample data/sample/ (looked in {}); figures are not comparable",
            full.display()
        );
        root.join("data/sample")
    }
}

/// A trace's series, in file order, each with its key.
fn read_trace(path: &Path) -> Vec<(SeriesKey, TrainingSeries)> {
    let reader = TraceReader::open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut index: HashMap<SeriesKey, usize> = HashMap::new();
    let mut raw: Vec<(SeriesKey, Vec<(i64, f64)>)> = Vec::new();
    for record in reader {
        let r = record.unwrap_or_else(|e| panic!("{e}"));
        let key = r.key();
        let i = *index.entry(key.clone()).or_insert_with(|| {
            raw.push((key, Vec::new()));
            raw.len() - 1
        });
        raw[i].1.push((r.ts_ms(), r.value));
    }
    raw.into_iter()
        .filter(|(_, obs)| !obs.is_empty())
        .map(|(key, obs)| {
            let step = obs
                .windows(2)
                .map(|w| w[1].0 - w[0].0)
                .min()
                .unwrap_or(STEP)
                .max(1);
            let start = obs[0].0;
            let len = ((obs[obs.len() - 1].0 - start) / step) as usize + 1;
            let mut values = vec![f64::NAN; len];
            for (ts, v) in obs {
                values[((ts - start) / step) as usize] = v;
            }
            (
                key,
                TrainingSeries {
                    step_ms: step,
                    start_ms: start,
                    values,
                },
            )
        })
        .collect()
}

/// 5-minute means of a series (the protocol's resolution), from its start.
fn five_minute_means(s: &TrainingSeries) -> Vec<f64> {
    let per = (STEP / s.step_ms).max(1) as usize;
    s.values
        .chunks(per)
        .map(|c| {
            let v: Vec<f64> = c.iter().copied().filter(|v| v.is_finite()).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        })
        .collect()
}

fn pinball(y: f64, q: f64, tau: f64) -> f64 {
    if y >= q {
        tau * (y - q)
    } else {
        (1.0 - tau) * (q - y)
    }
}

/// Accumulates wQL (mean over levels of 2 x sum pinball / sum |actual|) and
/// coverage of the 0.95 quantile.
#[derive(Default)]
struct Score {
    pinball: [f64; 4],
    actual: f64,
    covered95: usize,
    n: usize,
}

impl Score {
    /// `q` at [`EVAL_LEVELS`].
    fn add(&mut self, y: f64, q: &[f64]) {
        for (i, &tau) in EVAL_LEVELS.iter().enumerate() {
            self.pinball[i] += pinball(y, q[i], tau);
        }
        self.actual += y.abs();
        self.covered95 += usize::from(y <= q[2]);
        self.n += 1;
    }

    fn wql(&self) -> f64 {
        self.pinball
            .iter()
            .map(|p| 2.0 * p / self.actual)
            .sum::<f64>()
            / 4.0
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name:<44} wQL {:.4}  coverage95 {:.3}  (n = {})",
            self.wql(),
            self.covered95 as f64 / self.n.max(1) as f64,
            self.n
        )
    }
}

/// The `tau` quantile of `v` the way the pinball loss wants it.
fn empirical_quantile(sorted: &[f64], tau: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((tau * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn report() -> Arc<QuantileForest> {
    let dir = traces_dir();
    let files = ["planetlab.csv.gz", "gcd.csv.gz", "alibaba2018.csv.gz"];

    // 1. Training time, with the time to read and to featurise as references.
    let t = Instant::now();
    let traces: Vec<Vec<(SeriesKey, TrainingSeries)>> =
        files.iter().map(|f| read_trace(&dir.join(f))).collect();
    let read = t.elapsed();
    let all: Vec<TrainingSeries> = traces.iter().flatten().map(|(_, s)| s.clone()).collect();
    let values: usize = all.iter().map(|s| s.values.len()).sum();
    let config = TrainConfig::default();
    let t = Instant::now();
    let set = TrainingSet::build(&all, &config).unwrap();
    let featurise = t.elapsed();
    let rows = set.rows();
    drop(set);
    let t = Instant::now();
    let forest = train(&all, &config).unwrap();
    let training = t.elapsed();
    let bytes = forest.to_bytes().unwrap();
    println!(
        "\n== training on every series of {} ({} series, {values} values; {rows} rows, {} trees at {} levels, {} threads)",
        files.join(", "),
        all.len(),
        forest.n_trees(),
        forest.levels().len(),
        rayon::current_num_threads(),
    );
    println!("read the traces (reference):        {:8.2} s", secs(read));
    println!(
        "featurise (reference):              {:8.2} s",
        secs(featurise)
    );
    println!(
        "train (featurise + fit):            {:8.2} s  = {:.1} x read, {:.1} x featurise; {} KiB serialised",
        secs(training),
        secs(training) / secs(read),
        secs(training) / secs(featurise),
        bytes.len() / 1024
    );
    let full = Arc::new(forest);

    // 2 and 3: one forest that has seen neither the held-out PlanetLab hosts
    // nor Alibaba from day 3 on.
    let mut hosts: Vec<&str> = traces[0].iter().map(|(k, _)| k.host.0.as_str()).collect();
    hosts.sort_unstable();
    hosts.dedup();
    let held_out: Vec<&str> = hosts.iter().skip(1).step_by(2).copied().collect();
    let cut = 3 * DAY_MS;
    let mut training_series: Vec<TrainingSeries> = traces[0]
        .iter()
        .filter(|(k, _)| !held_out.contains(&k.host.0.as_str()))
        .map(|(_, s)| s.clone())
        .collect();
    training_series.extend(traces[1].iter().map(|(_, s)| s.clone()));
    training_series.extend(traces[2].iter().map(|(_, s)| s.before(cut)));
    let t = Instant::now();
    let forest = Arc::new(train(&training_series, &config).unwrap());
    println!(
        "\n== holdout forest: {} of {} PlanetLab hosts, all Google jobs, Alibaba before day 3 ({} series, {:.1} s; latest target seen at {:.2} days)",
        hosts.len() - held_out.len(),
        hosts.len(),
        training_series.len(),
        secs(t.elapsed()),
        forest
            .info()
            .latest_target_ms
            .map_or(f64::NAN, |ms| ms as f64 / DAY_MS as f64),
    );
    alibaba_day_ahead(&traces[2], &forest);
    planetlab_one_step(&traces[0], &held_out, &forest);
    full
}

fn alibaba_day_ahead(alibaba: &[(SeriesKey, TrainingSeries)], forest: &Arc<QuantileForest>) {
    for resource in [Resource::Cpu, Resource::Memory] {
        let Some((_, s)) = alibaba.iter().find(|(k, _)| k.resource == resource) else {
            continue;
        };
        let y = five_minute_means(s);
        let days = y.len() / DAY;
        let first = if days >= 14 { 7 } else { 3 };
        if days <= first {
            println!("alibaba {resource}: {days} days, no origin to score");
            continue;
        }
        let mut learned = Score::default();
        let mut flat = Score::default();
        let mut naive = Score::default();
        let mut naive_q = Score::default();
        let ctx = SeriesContext {
            step_ms: STEP,
            resource,
        };
        let mut model = LearnedModel::new(SharedForest::new(Arc::clone(forest)), ctx);
        let mut fed = 0;
        let mut out = vec![0.0; DAY * EVAL_LEVELS.len()];
        for day in first..days {
            let origin = day * DAY;
            while fed < origin {
                if y[fed].is_finite() {
                    model.update(s.start_ms + fed as i64 * STEP, y[fed]);
                }
                fed += 1;
            }
            model.forecast(
                s.start_ms + origin as i64 * STEP,
                DAY,
                &EVAL_LEVELS,
                &mut out,
            );
            // References: the last day's empirical quantiles (flat); yesterday
            // (a point: every quantile the same); yesterday plus empirical
            // quantiles of the day-over-day change over all days so far.
            let mut last_day: Vec<f64> = y[origin - DAY..origin]
                .iter()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            last_day.sort_by(f64::total_cmp);
            let flat_q: Vec<f64> = EVAL_LEVELS
                .iter()
                .map(|&t| empirical_quantile(&last_day, t))
                .collect();
            let mut change: Vec<f64> = (DAY..origin)
                .map(|i| y[i] - y[i - DAY])
                .filter(|v| v.is_finite())
                .collect();
            change.sort_by(f64::total_cmp);
            let change_q: Vec<f64> = EVAL_LEVELS
                .iter()
                .map(|&t| empirical_quantile(&change, t))
                .collect();
            for h in 0..DAY {
                let actual = y[origin + h];
                if !actual.is_finite() {
                    continue;
                }
                learned.add(actual, &out[h * 4..h * 4 + 4]);
                flat.add(actual, &flat_q);
                let yesterday = y[origin + h - DAY];
                if yesterday.is_finite() {
                    naive.add(actual, &[yesterday; 4]);
                    let q: Vec<f64> = change_q.iter().map(|c| (yesterday + c).max(0.0)).collect();
                    naive_q.add(actual, &q);
                }
            }
        }
        println!(
            "alibaba {resource}, day-ahead from day {first} to {days} ({} origins):",
            days - first
        );
        println!("  {}", learned.line("learned forest"));
        println!(
            "  {}",
            flat.line("last day's empirical quantiles (reference)")
        );
        println!("  {}", naive.line("yesterday, as a point (reference)"));
        println!(
            "  {}",
            naive_q.line("yesterday + day-over-day quantiles (ref.)")
        );
    }
}

/// Violation and slack of allocations over (workload, step), as replay
/// scores a hard quota.
#[derive(Default, Clone, Copy)]
struct Slack {
    violations: usize,
    n: usize,
    alloc: f64,
    unused: f64,
}

impl Slack {
    fn add(&mut self, demand: f64, alloc: f64) {
        self.violations += usize::from(demand > alloc);
        self.n += 1;
        self.alloc += alloc;
        self.unused += alloc - demand.min(alloc);
    }

    fn point(&self) -> (f64, f64) {
        (
            self.violations as f64 / self.n.max(1) as f64,
            self.unused / self.alloc.max(f64::MIN_POSITIVE),
        )
    }
}

/// Slack where the (violation, slack) curve crosses `target` violation, by
/// linear interpolation between the two nearest settings.
fn slack_at(curve: &[(f64, f64)], target: f64) -> Option<f64> {
    let mut pts = curve.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts.windows(2).find_map(|w| {
        let ((v0, s0), (v1, s1)) = (w[0], w[1]);
        (v0 <= target && target <= v1 && v1 > v0)
            .then(|| s0 + (s1 - s0) * (target - v0) / (v1 - v0))
    })
}

fn planetlab_one_step(
    planetlab: &[(SeriesKey, TrainingSeries)],
    held_out: &[&str],
    forest: &Arc<QuantileForest>,
) {
    let mut learned = Score::default();
    let mut empirical = Score::default();
    let mut learned_sweep = [Slack::default(); SWEEP.len()];
    let mut empirical_sweep = [Slack::default(); SWEEP.len()];
    let mut series = 0;
    let mut out = vec![0.0; SWEEP.len()];
    let mut eval = vec![0.0; EVAL_LEVELS.len()];
    for (key, s) in planetlab
        .iter()
        .filter(|(k, _)| held_out.contains(&k.host.0.as_str()))
    {
        series += 1;
        let ctx = SeriesContext {
            step_ms: s.step_ms,
            resource: key.resource,
        };
        let mut model = LearnedModel::new(SharedForest::new(Arc::clone(forest)), ctx);
        let mut history: Vec<f64> = Vec::new();
        for (t, &y) in s.values.iter().enumerate() {
            let ts = s.start_ms + t as i64 * s.step_ms;
            if t >= WARM_UP && y.is_finite() {
                model.forecast(ts, 1, &EVAL_LEVELS, &mut eval);
                learned.add(y, &eval);
                model.forecast(ts, 1, &SWEEP, &mut out);
                for (acc, &a) in learned_sweep.iter_mut().zip(&out) {
                    acc.add(y, a);
                }
                let mut sorted = history.clone();
                sorted.sort_by(f64::total_cmp);
                let q: Vec<f64> = EVAL_LEVELS
                    .iter()
                    .map(|&tau| empirical_quantile(&sorted, tau))
                    .collect();
                empirical.add(y, &q);
                for (acc, &tau) in empirical_sweep.iter_mut().zip(&SWEEP) {
                    acc.add(y, empirical_quantile(&sorted, tau));
                }
            }
            if y.is_finite() {
                model.update(ts, y);
                history.push(y);
            }
        }
    }
    println!(
        "planetlab, one step ahead on {} held-out hosts ({series} VMs never trained on), after {WARM_UP} steps of warm-up:",
        held_out.len()
    );
    println!("  {}", learned.line("learned forest"));
    println!(
        "  {}",
        empirical.line("empirical quantile of history (reference)")
    );
    for (name, sweep) in [
        ("learned forest", &learned_sweep),
        ("empirical quantile of history", &empirical_sweep),
    ] {
        let curve: Vec<(f64, f64)> = sweep.iter().map(Slack::point).collect();
        let at1 = slack_at(&curve, 0.01).map_or("n/a".to_string(), |s| format!("{s:.3}"));
        let pts: Vec<String> = SWEEP
            .iter()
            .zip(&curve)
            .map(|(q, (v, s))| format!("q{q}: {:.2}%/{s:.3}", 100.0 * v))
            .collect();
        println!(
            "  {name:<30} slack@1% {at1}   (violation/slack: {})",
            pts.join(", ")
        );
    }
}

/// A plain EWMA with a forecast at the same levels: the reference for the
/// per-series cost.
struct Ewma {
    mean: f64,
    var: f64,
}

impl Ewma {
    fn update(&mut self, v: f64) {
        let d = v - self.mean;
        self.mean += 0.1 * d;
        self.var = 0.9 * (self.var + 0.1 * d * d);
    }

    fn forecast(&self, z: &[f64], out: &mut [f64]) {
        let sd = self.var.sqrt();
        for (o, z) in out.iter_mut().zip(z) {
            *o = (self.mean + z * sd).max(0.0);
        }
    }
}

fn bench_inference(c: &mut Criterion, forest: Arc<QuantileForest>) {
    let mut group = c.benchmark_group("learned_per_series");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    // A week and a day of a noisy daily pattern, then one step at a time.
    let value = |t: i64| {
        let tod = (t % DAY as i64) as f64 / DAY as f64;
        2.0 + (std::f64::consts::TAU * tod).sin() + 0.3 * ((t * 7919) % 13) as f64 / 13.0
    };
    let ctx = SeriesContext {
        step_ms: STEP,
        resource: Resource::Cpu,
    };
    let mut model = LearnedModel::new(SharedForest::new(forest), ctx);
    for t in 0..8 * DAY as i64 {
        model.update(t * STEP, value(t));
    }
    let mut out = vec![0.0; DEFAULT_LEVELS.len()];
    let mut t = 8 * DAY as i64;
    group.bench_function("update + one-step forecast, 13 levels", |b| {
        b.iter(|| {
            model.update(t * STEP, value(t));
            t += 1;
            model.forecast(t * STEP, 1, black_box(&DEFAULT_LEVELS), &mut out);
            black_box(&out);
        })
    });
    let z: Vec<f64> = [
        -1.645, -1.2816, -0.6745, 0.0, 0.6745, 0.8416, 1.2816, 1.645, 1.8808, 2.0537, 2.3263,
        2.5758, 3.0902,
    ]
    .to_vec();
    let mut ewma = Ewma {
        mean: 0.0,
        var: 0.0,
    };
    let mut u = 0i64;
    group.bench_function("ewma update + forecast, 13 levels (reference)", |b| {
        b.iter(|| {
            ewma.update(value(u));
            u += 1;
            ewma.forecast(black_box(&z), &mut out);
            black_box(&out);
        })
    });
    let mut day = vec![0.0; DAY * DEFAULT_LEVELS.len()];
    group.bench_function("day-ahead forecast (288 steps, 13 levels)", |b| {
        b.iter(|| {
            model.forecast(t * STEP, DAY, black_box(&DEFAULT_LEVELS), &mut day);
            black_box(&day);
        })
    });
    group.finish();
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let forest = if benching {
        report()
    } else {
        // `cargo test --benches` runs this once: a quick forest from the
        // committed sample, just to exercise the code.
        println!("learned: training and accuracy report skipped (run under cargo bench)");
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample");
        let series: Vec<TrainingSeries> = ["planetlab.csv.gz", "gcd.csv.gz"]
            .iter()
            .flat_map(|f| read_trace(&sample.join(f)))
            .map(|(_, s)| s)
            .collect();
        let config = TrainConfig {
            rounds: 5,
            max_rows: 20_000,
            ..TrainConfig::default()
        };
        Arc::new(train(&series, &config).unwrap())
    };
    // Inference on the forest trained on every trace.
    let mut c = Criterion::default().configure_from_args();
    bench_inference(&mut c, forest);
    c.final_summary();
}
