//! An open-loop load generator against the server: 500 requests/s of mixed
//! reads (workloads, series, plans, status, metrics) for 20 s over a pool of
//! connections, against a store holding 200 workloads with a day of data
//! and a view republished every second (from a thread standing in for the
//! agent loop, with views shaped as an agent managing 200 workloads would
//! publish). Reports the achieved rate, p50/p99 latency (from each
//! request's scheduled time, so a stall is not hidden) and errors.
//! Target: p99 < 50 ms, no errors.
//!
//! `cargo bench -p prescient-api --bench load` (`LOAD_SECS`, `LOAD_RATE`
//! and `LOAD_CONNECTIONS` override the defaults).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prescient_agent::config::Config;
use prescient_agent::control::{Control, LiveView, PoolView, ResourceView, WorkloadView};
use prescient_core::{
    DemandProfile, HostId, Plan, PlanEntry, Resource, Sample, SeriesKey, WorkloadId,
};
use prescient_store::Store;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_700_006_400_000;
const WORKLOADS: usize = 200;
const RESOURCES: [Resource; 2] = [Resource::Cpu, Resource::Memory];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn name(w: usize) -> String {
    format!("w{w:03}")
}

fn fill(path: &std::path::Path) {
    let mut s = Store::open(path).unwrap();
    let mut batch = Vec::new();
    for w in 0..WORKLOADS {
        for r in RESOURCES {
            let id = s.series_id(&SeriesKey::new("h", name(w), r)).unwrap();
            // A sample a minute for a day.
            for m in 0..1440 {
                let v = match r {
                    Resource::Memory => 1e9 + (m % 90) as f64 * 1e6,
                    _ => 0.5 + (m % 60) as f64 / 60.0,
                };
                batch.push((id, Sample::new(T0 + m * 60_000, v)));
            }
            for k in 0..48 {
                let made = T0 + DAY - (k + 1) * 600_000;
                let p = DemandProfile::new(
                    made + 60_000,
                    60_000,
                    vec![0.5, 0.9, 0.95, 0.99],
                    vec![1.0, 1.2, 1.3, 1.5],
                )
                .unwrap();
                s.save_profile(id, made, &p).unwrap();
            }
        }
        if batch.len() > 100_000 {
            s.ingest(&batch).unwrap();
            batch.clear();
        }
    }
    s.ingest(&batch).unwrap();
    // A plan every 10 minutes for a day, of all 200 workloads.
    for k in 0..144 {
        let made_at = T0 + k * 600_000;
        let entries = (0..WORKLOADS)
            .flat_map(|w| {
                RESOURCES.map(|r| PlanEntry {
                    workload: WorkloadId(name(w)),
                    resource: r,
                    allocation: if r == Resource::Cpu {
                        1.0 + (k % 4) as f64 * 0.25
                    } else {
                        2e9
                    },
                    coverage: 0.95,
                    expected_unmet: 0.0,
                    reason: "forecast p95 plus headroom".into(),
                })
            })
            .collect();
        s.save_plan(&Plan {
            made_at,
            pool: HostId("host".into()),
            degraded: false,
            entries,
        })
        .unwrap();
    }
}

fn view(now: i64) -> LiveView {
    let workloads = (0..WORKLOADS)
        .map(|w| WorkloadView {
            id: name(w),
            selector: "svc-*".into(),
            cgroup: format!("/svc/{}", name(w)),
            pool: Some("host".into()),
            labels: BTreeMap::from([("tier".to_string(), "web".to_string())]),
            resources: RESOURCES
                .iter()
                .map(|&r| ResourceView {
                    resource: r,
                    usage: Some(1.0),
                    allocation: Some(1.5),
                    slo_quantile: 0.95,
                    forecast: vec![(0.5, 1.0), (0.9, 1.2), (0.95, 1.3), (0.99, 1.5)],
                    coverage: Some(0.96),
                    observations: 1440,
                    weights: Vec::new(),
                    calibration: Vec::new(),
                })
                .collect(),
        })
        .collect();
    LiveView {
        host: "h".into(),
        policy: "prescient".into(),
        started_at: T0,
        updated_at: now,
        pools: vec![PoolView {
            name: "host".into(),
            parent: None,
            capacity: BTreeMap::from([(Resource::Cpu, 64.0), (Resource::Memory, 512e9)]),
        }],
        workloads,
        ..LiveView::default()
    }
}

fn main() {
    let secs = env("LOAD_SECS", 20);
    let rate = env("LOAD_RATE", 500);
    let connections = env("LOAD_CONNECTIONS", 16) as usize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("load.db");
    let t = Instant::now();
    fill(&path);
    println!(
        "load: store of {WORKLOADS} workloads x 2 resources, a day each, filled in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut config = Config::default();
    config.store.path = path;
    config.api.listen = "127.0.0.1:0".into();
    config.api.rate_limit = 0;
    let (handle, port) = Control::new();
    port.publish(view(T0 + DAY - 1));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut now = T0 + DAY - 1;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                now += 1000;
                port.publish(view(now));
            }
        })
    };
    let server = prescient_api::serve(&config, handle).unwrap();
    let base = server.url();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (latencies, errors, took, sent) = rt.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        // Warm-up: the plan history cache and the connections.
        for w in 0..4 {
            let _ = client
                .get(format!("{base}/api/v1/workloads/{}/series", name(w)))
                .send()
                .await;
        }
        let total = secs * rate;
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let limit = Arc::new(tokio::sync::Semaphore::new(connections));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(total as usize);
        for i in 0..total {
            let due = start + interval * i as u32;
            tokio::time::sleep_until(due).await;
            let path = match i % 5 {
                0 => "/api/v1/workloads".to_string(),
                1 => format!(
                    "/api/v1/workloads/{}/series?resource={}",
                    name((i as usize * 7) % WORKLOADS),
                    if i % 2 == 0 { "cpu" } else { "memory" }
                ),
                2 => "/api/v1/plans".to_string(),
                3 => "/api/v1/status".to_string(),
                _ => "/metrics".to_string(),
            };
            let (client, url, limit) =
                (client.clone(), format!("{base}{path}"), Arc::clone(&limit));
            tasks.push(tokio::spawn(async move {
                // At most `connections` requests in flight (one per connection).
                let _permit = limit.acquire_owned().await.unwrap();
                let ok = match client.get(&url).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                (due.elapsed(), ok)
            }));
        }
        let mut latencies = Vec::with_capacity(tasks.len());
        let mut errors = 0u64;
        for t in tasks {
            let (d, ok) = t.await.unwrap();
            latencies.push(d);
            if !ok {
                errors += 1;
            }
        }
        (latencies, errors, start.elapsed(), total)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = publisher.join();
    server.shutdown();
    let mut l = latencies;
    l.sort();
    let pct = |p: f64| l[((l.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "load: {sent} requests at {rate}/s offered over {connections} connections: achieved {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {errors} errors (target p99 < 50 ms, no errors)",
        sent as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
    );
}
