//! Ingest throughput and range-query latency of the store, with reference
//! figures from the same run (a bare rusqlite table: no key, no rollups).
//!
//! `cargo bench -p prescient-store` (add `-- ingest`, `-- range` or
//! `-- profiles` to run one group). Data: the real traces in /work/shared/traces (or
//! `PRESCIENT_TRACES=dir`), else synthetic data of the same shapes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prescient_core::{DemandProfile, Resource, Sample, SeriesKey};
use prescient_store::{PROFILE_BUCKET_MS, Resolution, SeriesId, Store};
use rusqlite::Connection;

/// Samples per ingest batch.
const BATCH: usize = 10_000;
/// Samples of the time-ordered ingest case.
const TIME_ORDER_SAMPLES: usize = 300_000;
const DAY_MS: i64 = 86_400_000;

/// The alibaba series used for the range query.
fn alibaba_cpu() -> SeriesKey {
    SeriesKey::new("alibaba", "cluster", Resource::Cpu)
}

/// A 1 s-step series over two days, as a live agent sampling every second writes.
fn live_1s() -> (SeriesKey, Vec<Sample>) {
    let key = SeriesKey::new("bench", "live-1s", Resource::Cpu);
    let samples = (0..2 * 86_400)
        .map(|i| {
            Sample::new(
                i * 1000,
                2.0 + (i as f64 / 600.0).sin() + (i % 7) as f64 * 0.01,
            )
        })
        .collect();
    (key, samples)
}

/// Every sample of the traces, in file order (grouped by series, in time
/// order within a series), and what they came from.
fn load_data() -> (Vec<(SeriesKey, Sample)>, String) {
    let dir = std::env::var_os("PRESCIENT_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/traces"));
    let files = ["alibaba2018.csv.gz", "gcd.csv.gz", "planetlab.csv.gz"];
    if files.iter().all(|f| dir.join(f).is_file()) {
        let mut rows = Vec::new();
        for f in files {
            read_trace(&dir.join(f), &mut rows);
        }
        let what = format!("the traces in {} ({})", dir.display(), files.join(", "));
        return (rows, what);
    }
    eprintln!(
        "full traces absent ({}): benchmarking on synthetic data",
        dir.display()
    );
    (synthetic(), "synthetic data".into())
}

/// Reads one gzip CSV trace: `timestamp,host,workload,resource,value`,
/// timestamp in seconds.
fn read_trace(path: &Path, out: &mut Vec<(SeriesKey, Sample)>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = BufReader::new(flate2::read::GzDecoder::new(file));
    let mut last: Option<SeriesKey> = None;
    for (i, line) in reader.lines().enumerate() {
        let line = line.unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
        if i == 0 {
            continue; // header
        }
        let bad = || panic!("{}:{}: bad row {line:?}", path.display(), i + 1);
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 5 {
            bad();
        }
        let (Ok(ts), Ok(resource), Ok(value)) = (
            f[0].parse::<i64>(),
            f[3].parse::<Resource>(),
            f[4].parse::<f64>(),
        ) else {
            bad()
        };
        let key = match &last {
            Some(k) if k.host.0 == f[1] && k.workload.0 == f[2] && k.resource == resource => {
                k.clone()
            }
            _ => SeriesKey::new(f[1], f[2], resource),
        };
        last = Some(key.clone());
        out.push((key, Sample::new(ts * 1000, value)));
    }
}

/// Synthetic stand-ins of the traces' shapes: 5 series of 8 days at 10 s
/// steps, and 3,800 series of one day at 5 min steps.
fn synthetic() -> Vec<(SeriesKey, Sample)> {
    let mut out = Vec::new();
    for r in [
        Resource::Cpu,
        Resource::Memory,
        Resource::NetRx,
        Resource::NetTx,
        Resource::DiskIo,
    ] {
        let key = SeriesKey::new("alibaba", "cluster", r);
        for i in 0..67_242i64 {
            out.push((
                key.clone(),
                Sample::new(i * 10_000, 10.0 + (i % 8640) as f64 * 0.001),
            ));
        }
    }
    for s in 0..3_800 {
        let key = SeriesKey::new(format!("h{:03}", s / 40), format!("vm{s}"), Resource::Cpu);
        for i in 0..288i64 {
            out.push((
                key.clone(),
                Sample::new(i * 300_000, ((s * 31 + i as usize * 7) % 100) as f64 / 50.0),
            ));
        }
    }
    out
}

/// The store's pragmas, for the reference table's file.
fn bare_db(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open the reference database");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;
         CREATE TABLE bare (series_id INTEGER, ts INTEGER, value REAL);",
    )
    .expect("create the reference table");
    conn
}

/// Registers the series (ids are assigned in order of first appearance, so
/// every fresh store gives the same ids) and cuts `data` into batches.
fn batches(store: &mut Store, data: &[(SeriesKey, Sample)]) -> Vec<Vec<(SeriesId, Sample)>> {
    let mut last: Option<(&SeriesKey, SeriesId)> = None;
    let mut rows = Vec::with_capacity(data.len());
    for (key, s) in data {
        let id = match last {
            Some((k, id)) if k == key => id,
            _ => store.series_id(key).expect("register a series"),
        };
        last = Some((key, id));
        rows.push((id, *s));
    }
    rows.chunks(BATCH).map(<[_]>::to_vec).collect()
}

fn ingest(c: &mut Criterion) {
    let (data, what) = load_data();
    // Time order (as a live agent delivers it: every series' next sample,
    // then the next step) is the hard case: each batch touches every series.
    // Each batch then writes a page or three per series, so it is an order of
    // magnitude slower: measured on the first TIME_ORDER_SAMPLES only.
    let mut time_order = data.clone();
    time_order.sort_by(|a, b| (a.1.ts, &a.0).cmp(&(b.1.ts, &b.0)));
    time_order.truncate(TIME_ORDER_SAMPLES);
    let series = data
        .iter()
        .map(|(k, _)| k)
        .collect::<std::collections::HashSet<_>>()
        .len();
    eprintln!(
        "ingest data: {what}: {} samples, {series} series, batches of {BATCH}",
        data.len()
    );

    let mut group = c.benchmark_group("ingest");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    for (name, order) in [("file_order", &data), ("time_order", &time_order)] {
        group.throughput(Throughput::Elements(order.len() as u64));
        group.bench_function(format!("store/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let mut store = Store::open(dir.path().join("store.db")).expect("open");
                    let batches = batches(&mut store, order);
                    let start = Instant::now();
                    for batch in &batches {
                        let report = store.ingest(batch).expect("ingest");
                        assert_eq!(report.inserted as usize, batch.len());
                    }
                    // Closing checkpoints what is left in the WAL: part of the cost.
                    drop(store);
                    total += start.elapsed();
                }
                total
            })
        });
        group.bench_function(format!("reference_bare_table/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let mut store = Store::open(dir.path().join("ids.db")).expect("open");
                    let batches = batches(&mut store, order);
                    let mut conn = bare_db(&dir.path().join("bare.db"));
                    let start = Instant::now();
                    for batch in &batches {
                        let tx = conn.transaction().expect("begin");
                        {
                            let mut stmt = tx
                                .prepare_cached("INSERT INTO bare VALUES (?1, ?2, ?3)")
                                .expect("prepare");
                            for (id, s) in batch {
                                stmt.execute((id.0, s.ts, s.value)).expect("insert");
                            }
                        }
                        tx.commit().expect("commit");
                    }
                    drop(conn);
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

fn range(c: &mut Criterion) {
    let (data, what) = load_data();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let mut store = Store::open(&path).expect("open");
    for batch in batches(&mut store, &data) {
        store.ingest(&batch).expect("ingest");
    }
    let (live_key, live) = live_1s();
    let live_id = store.series_id(&live_key).expect("register");
    let rows: Vec<_> = live.iter().map(|s| (live_id, *s)).collect();
    for batch in rows.chunks(BATCH) {
        store.ingest(batch).expect("ingest");
    }
    let ali = store.series_id(&alibaba_cpu()).expect("alibaba series");
    let summary = store.summary().expect("summary");
    eprintln!(
        "range data: {what} plus a 1 s series over two days: {} samples in {} series",
        summary.samples, summary.series
    );

    // Day 2 of each series (day 1 of a trace may start part-way into its warm-up).
    let (from, to) = (DAY_MS, 2 * DAY_MS);
    let cases = [
        ("alibaba_cpu_10s/raw", ali, Resolution::Raw),
        ("alibaba_cpu_10s/minute", ali, Resolution::Minute),
        ("live_1s/raw", live_id, Resolution::Raw),
        ("live_1s/minute", live_id, Resolution::Minute),
        ("live_1s/hour", live_id, Resolution::Hour),
    ];
    let mut group = c.benchmark_group("range_one_day");
    for (name, id, res) in cases {
        let n = store.range(id, from, to, res).expect("range").len();
        eprintln!("range_one_day/{name}: {n} points");
        assert!(n > 0, "{name}: no data in the day");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(name, |b| {
            b.iter(|| store.range(id, from, to, res).expect("range"))
        });
    }
    // Reference: SQLite walking the same rows without handing them out.
    let conn = Connection::open(&path).expect("open");
    conn.execute_batch("PRAGMA cache_size = -65536")
        .expect("cache size");
    for (name, id) in [("alibaba_cpu_10s", ali), ("live_1s", live_id)] {
        let n = store
            .range(id, from, to, Resolution::Raw)
            .expect("range")
            .len();
        group.throughput(Throughput::Elements(n as u64));
        let mut stmt = conn
            .prepare("SELECT count(*), sum(value) FROM samples WHERE series_id = ?1 AND ts >= ?2 AND ts < ?3")
            .expect("prepare");
        group.bench_function(format!("reference_count_in_sqlite/{name}"), |b| {
            b.iter(|| {
                stmt.query_row((id.0, from, to), |r| r.get::<_, i64>(0))
                    .expect("count")
            })
        });
    }
    group.finish();
}

/// A profile as the agent saves one by default: 3 steps of 10 s, 7 levels.
fn bench_profile(made_at: i64) -> DemandProfile {
    let levels = vec![0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95];
    let values = (0..3)
        .flat_map(|h| (0..7).map(move |i| 1.0 + h as f64 * 0.1 + i as f64 * 0.05))
        .collect();
    DemandProfile::new(made_at + 10_000, 10_000, levels, values).expect("profile")
}

/// The cost of saving a demand profile, with and without the thinning of
/// older ones, on a series already holding a day of thinned history (a
/// profile every 10 s, as the agent saves them).
///
/// - `plain`: a save that does not start a new 5-minute bucket (no
///   thinning: 29 saves in 30 at 10 s);
/// - `crossing`: a save that starts one, and so thins the 30 profiles that
///   left the newest 48 meanwhile (timed alone, the 29 saves between two
///   of them untimed);
/// - `every_10s`: the mean over saves every 10 s, as the agent pays it.
fn profiles(c: &mut Criterion) {
    const STEP: i64 = 10_000;
    let per_bucket = PROFILE_BUCKET_MS / STEP;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(dir.path().join("store.db")).expect("open");
    let series = store
        .series_id(&SeriesKey::new("bench", "profiles", Resource::Cpu))
        .expect("series");
    let mut t = 0;
    while t <= DAY_MS {
        store
            .save_profile(series, t, &bench_profile(t))
            .expect("save");
        t += STEP;
    }
    let save = |store: &mut Store, t: &mut i64| {
        store
            .save_profile(series, *t, &bench_profile(*t))
            .expect("save");
        *t += STEP;
    };
    let mut group = c.benchmark_group("profiles");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("save/plain", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Never the first save of a bucket.
                if t.rem_euclid(PROFILE_BUCKET_MS) == 0 {
                    save(&mut store, &mut t);
                }
                let start = Instant::now();
                save(&mut store, &mut t);
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("save/crossing", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                while t.rem_euclid(PROFILE_BUCKET_MS) != 0 {
                    save(&mut store, &mut t);
                }
                let start = Instant::now();
                save(&mut store, &mut t);
                total += start.elapsed();
            }
            total
        })
    });
    group.bench_function("save/every_10s", |b| b.iter(|| save(&mut store, &mut t)));
    group.finish();
    let stored = store
        .profile_history(series, usize::MAX)
        .expect("history")
        .len();
    eprintln!(
        "profiles: {stored} stored after saving up to {} ms ({per_bucket} saves per bucket)",
        t - STEP
    );
}

criterion_group!(benches, ingest, range, profiles);
criterion_main!(benches);
