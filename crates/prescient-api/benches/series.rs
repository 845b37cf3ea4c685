//! `GET /api/v1/workloads/{id}/series` for one day at 1-minute resolution
//! (1,440 points of actual usage, with the stored forecasts and a plan a
//! minute) through HTTP on loopback, against the bare `Store::range_buckets`
//! call it is built on. Target: median and p99 < 20 ms.
//!
//! `cargo bench -p prescient-api --bench series`

use std::time::{Duration, Instant};

use prescient_agent::config::Config;
use prescient_agent::control::{Control, LiveView};
use prescient_core::{
    DemandProfile, HostId, Plan, PlanEntry, Resource, Sample, SeriesKey, WorkloadId,
};
use prescient_store::{PROFILE_HISTORY, Resolution, Store};

const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_006_400_000; // a day boundary
const RUNS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let mut store = Store::open(&path).unwrap();
    let key = SeriesKey::new("h", "web", Resource::Cpu);
    let sid = store.series_id(&key).unwrap();
    // A sample every 10 s for a day.
    let samples: Vec<_> = (0..8640)
        .map(|i| {
            (
                sid,
                Sample::new(T0 + i * 10_000, 1.0 + (i % 60) as f64 / 60.0),
            )
        })
        .collect();
    store.ingest(&samples).unwrap();
    // A plan a minute for a day (8 workloads), and the profiles the store keeps.
    for m in 0..1440 {
        let made_at = T0 + m * 60_000;
        let entries = (0..8)
            .map(|w| PlanEntry {
                workload: WorkloadId(if w == 0 {
                    "web".into()
                } else {
                    format!("w{w}")
                }),
                resource: Resource::Cpu,
                allocation: 2.0 + (m % 7) as f64 * 0.25,
                coverage: 0.95,
                expected_unmet: 0.0,
                reason: "forecast p95".into(),
            })
            .collect();
        store
            .save_plan(&Plan {
                made_at,
                pool: HostId("host".into()),
                degraded: false,
                entries,
            })
            .unwrap();
    }
    for k in 0..PROFILE_HISTORY as i64 {
        let made = T0 + DAY - (k + 1) * 60_000;
        let p = DemandProfile::new(
            made + 10_000,
            10_000,
            vec![0.5, 0.9, 0.95, 0.99],
            vec![1.0, 1.2, 1.3, 1.5],
        )
        .unwrap();
        store.save_profile(sid, made, &p).unwrap();
    }

    let mut config = Config::default();
    config.store.path = path.clone();
    config.api.listen = "127.0.0.1:0".into();
    config.api.rate_limit = 0;
    let (handle, port) = Control::new();
    port.publish(LiveView {
        host: "h".into(),
        updated_at: T0 + DAY - 1,
        ..LiveView::default()
    });
    let server = prescient_api::serve(&config, handle).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::new();
    let url = format!(
        "{}/api/v1/workloads/web/series?resource=cpu&from={T0}&to={}&resolution=1m",
        server.url(),
        T0 + DAY
    );

    // Warm up (the first query reads the plan history into the cache).
    let mut points = 0;
    for _ in 0..20 {
        let v: serde_json::Value = client.get(&url).send().unwrap().json().unwrap();
        points = v["actual"].as_array().unwrap().len();
    }
    let mut http = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = client.get(&url).send().unwrap();
        let body = r.bytes().unwrap();
        http.push(t.elapsed());
        assert!(body.len() > 1000);
    }
    let reader = Store::open(&path).unwrap();
    let mut bare = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let b = reader
            .range_buckets(sid, T0, T0 + DAY, Resolution::Minute)
            .unwrap();
        bare.push(t.elapsed());
        assert_eq!(b.len(), 1440);
    }
    http.sort();
    bare.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("series: one day at 1 min, {points} points of actual, {RUNS} runs");
    println!(
        "  HTTP series query   median {:.3} ms  p99 {:.3} ms  (target < 20 ms)",
        ms(percentile(&http, 0.5)),
        ms(percentile(&http, 0.99))
    );
    println!(
        "  Store::range_buckets median {:.3} ms  p99 {:.3} ms",
        ms(percentile(&bare, 0.5)),
        ms(percentile(&bare, 0.99))
    );
    println!(
        "  ratio HTTP / bare (median): {:.1}x",
        ms(percentile(&http, 0.5)) / ms(percentile(&bare, 0.5))
    );
    server.shutdown();
}
