//! An open-loop load generator against the server beside a real agent:
//! `prescient_agent::replay::run` replays 200 workloads of the PlanetLab
//! trace (the full one in `/work/shared/traces/`, or `PRESCIENT_TRACES`;
//! without it, the committed sample, which has fewer: a warning says so on
//! stderr and every result line is marked as not the target's setting) fast enough
//! that the loop samples, forecasts, plans and writes to the store
//! throughout, and the server runs on its control handle and store. After a
//! warm-up (until the loop has made a few plans and stored samples), it
//! offers 500 requests/s of mixed reads (workloads, a one-day series at
//! 1-minute resolution, plans, status, metrics, the newest audit page) for
//! 20 s over a pool of connections, each request with a viewer's bearer
//! token (the server has tokens configured and the default rate limit, so
//! the access gate runs on every request; checked first: without the
//! token the server answers 401). Reports the achieved rate, p50/p99/max
//! latency (from each request's scheduled time, so a stall is not hidden),
//! errors, and the agent's own counters over the run (plans made, samples
//! stored, trace time covered) to show that it was working meanwhile.
//! Target: p99 < 50 ms, no errors.
//!
//! `cargo bench -p prescient-api --bench load` (`LOAD_SECS`, `LOAD_RATE`,
//! `LOAD_CONNECTIONS`, `LOAD_SPEED` (trace time per wall time, default
//! 1200: a 5-minute trace step every 0.25 s), `LOAD_TRACE` (a trace
//! file) and `LOAD_TOKENS=0` (no tokens: the open read-only API) override
//! the defaults).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prescient_agent::config::{Config, ConfigSource, Role, TokenConfig};
use prescient_agent::control::{Control, ControlHandle, LiveView};
use prescient_agent::ports::Signals;
use prescient_agent::replay::{LoadedTrace, ReplayOptions};

/// Workloads the agent manages.
const WORKLOADS: usize = 200;
/// Plans the loop makes before the load starts.
const WARM_UP_PLANS: u64 = 3;
const DAY: i64 = 86_400_000;
/// The requests, in the order the load cycles through them.
const KINDS: [&str; 6] = ["workloads", "series", "plans", "status", "metrics", "audit"];

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The token the load's requests carry (a viewer's).
const TOKEN: &str = "load-bench-viewer-token";

/// The trace to replay: `LOAD_TRACE`, else the full PlanetLab trace of
/// `PRESCIENT_TRACES` (default `/work/shared/traces`, the workspace's
/// `../shared/traces`), else the committed sample. The second value is
/// why the sample was taken, when it was: the caller says so loudly.
fn trace() -> (PathBuf, Option<String>) {
    if let Some(p) = std::env::var_os("LOAD_TRACE") {
        return (PathBuf::from(p), None);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let dir = std::env::var_os("PRESCIENT_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/traces"));
    let full = dir.join("planetlab.csv.gz");
    if full.is_file() {
        return (full, None);
    }
    let why = if dir.is_dir() {
        format!("{} is absent", full.display())
    } else {
        format!(
            "the shared traces directory {} is absent (set PRESCIENT_TRACES to where they are)",
            dir.display()
        )
    };
    (root.join("data/sample/planetlab.csv.gz"), Some(why))
}

/// What the agent had done by one moment.
#[derive(Debug, Clone, Copy)]
struct Progress {
    plans: u64,
    samples: u64,
    stored: u64,
    trace_ms: i64,
}

impl Progress {
    fn of(view: &LiveView) -> Progress {
        Progress {
            plans: view.counters.plans,
            samples: view.counters.samples,
            stored: view.store.stored_samples,
            trace_ms: view.updated_at,
        }
    }
}

/// Waits (up to `limit`) for `ready` to hold of the loop's view.
fn wait_for(handle: &ControlHandle, limit: Duration, ready: impl Fn(&LiveView) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready(&handle.view()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn main() {
    let secs = env("LOAD_SECS", 20);
    let rate = env("LOAD_RATE", 500);
    let connections = env("LOAD_CONNECTIONS", 16) as usize;
    let speed = env("LOAD_SPEED", 1200) as f64;
    let tokens = env("LOAD_TOKENS", 1) != 0;
    let (path, fell_back) = trace();
    let loaded = LoadedTrace::load(&path, None, Some(WORKLOADS))
        .unwrap_or_else(|e| panic!("load: reading {}: {e}", path.display()));
    // Not silent: on stderr (seen even when stdout is filtered) and on
    // every result line.
    let caveat = match &fell_back {
        Some(why) => {
            eprintln!(
                "load: WARNING: {why}: replaying the committed sample {} instead, {} workloads, \
                 not the target's {WORKLOADS}: the figures below are NOT comparable with the target",
                path.display(),
                loaded.workloads.len()
            );
            format!(
                " [SAMPLE TRACE, {} workloads: not the target's setting]",
                loaded.workloads.len()
            )
        }
        None => String::new(),
    };
    println!(
        "load: replaying {} workloads of {} ({} trace hosts, step {} s) at {speed}x{}",
        loaded.workloads.len(),
        path.display(),
        loaded.hosts().len(),
        loaded.step_ms / 1000,
        if loaded.workloads.len() < WORKLOADS {
            format!(" (fewer than {WORKLOADS}: the trace has no more)")
        } else {
            String::new()
        }
    );
    let workloads: Vec<String> = loaded.workloads.iter().map(|w| w.id.0.clone()).collect();
    drop(loaded);

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().join("load.db");
    config.api.listen = "127.0.0.1:0".into();
    // The default limit per caller (all the load is one caller), raised
    // if the offered rate would pass it: the limiter runs, never refuses.
    config.api.rate_limit = config
        .api
        .rate_limit
        .max(u32::try_from(rate.saturating_mul(2)).unwrap_or(u32::MAX));
    if tokens {
        config.api.tokens = vec![TokenConfig {
            name: "load".into(),
            role: Role::Viewer,
            sha256: prescient_api::hash_token(TOKEN),
        }];
    }
    let (handle, port) = Control::new();
    let signals = Signals::new();
    let agent = {
        let (signals, source, path) = (
            signals.clone(),
            ConfigSource::Fixed(config.clone()),
            path.clone(),
        );
        let options = ReplayOptions {
            speed,
            max_workloads: Some(WORKLOADS),
            ..ReplayOptions::default()
        };
        std::thread::spawn(move || {
            prescient_agent::replay::run(&source, &path, &options, &signals, Some(port))
        })
    };
    let t = Instant::now();
    let warm = wait_for(&handle, Duration::from_secs(300), |v| {
        v.counters.plans >= WARM_UP_PLANS && v.store.stored_samples > 0
    });
    if !warm {
        signals.stop();
        let why = match agent.join() {
            Ok(Ok(s)) => format!("it stopped at trace time {} ms", s.stopped_at),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "it panicked".into(),
        };
        panic!("load: the agent made no {WARM_UP_PLANS} plans within 300 s: {why}");
    }
    let before = Progress::of(&handle.view());
    println!(
        "load: warmed up in {:.1} s: {} plans, {} samples stored, trace time {} s",
        t.elapsed().as_secs_f64(),
        before.plans,
        before.stored,
        before.trace_ms / 1000
    );

    // The agent made the store; the server opens its own connections.
    let server = prescient_api::serve(&config, handle.clone()).unwrap();
    let base = server.url();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let workloads = Arc::new(workloads);
    let (latencies, failures, took, sent) = rt.block_on(async move {
        let mut headers = reqwest::header::HeaderMap::new();
        if tokens {
            // The gate is on: without the token a read is refused.
            let bare = reqwest::get(format!("{base}/api/v1/status")).await.unwrap();
            assert_eq!(
                bare.status(),
                401,
                "load: the server should refuse a read without the token"
            );
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {TOKEN}").parse().unwrap(),
            );
            println!("load: every request carries a viewer's bearer token (without it: 401)");
        } else {
            println!("load: no tokens (LOAD_TOKENS=0): the open read-only API");
        }
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(10))
            .default_headers(headers)
            .build()
            .unwrap();
        // Warm-up: the plan history cache and the connections.
        for w in workloads.iter().take(4) {
            let _ = client
                .get(format!("{base}/api/v1/workloads/{w}/series?resolution=1m"))
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
            let kind = (i % 6) as usize;
            let path = match kind {
                0 => "/api/v1/workloads".to_string(),
                // The default range is the day up to the view's time.
                1 => format!(
                    "/api/v1/workloads/{}/series?resource=cpu&resolution=1m",
                    workloads[(i as usize * 7) % workloads.len()]
                ),
                2 => "/api/v1/plans".to_string(),
                3 => "/api/v1/status".to_string(),
                4 => "/metrics".to_string(),
                _ => "/api/v1/audit?order=desc&limit=50".to_string(),
            };
            let (client, url, limit) =
                (client.clone(), format!("{base}{path}"), Arc::clone(&limit));
            tasks.push(tokio::spawn(async move {
                // At most `connections` requests in flight (one per connection).
                let _permit = limit.acquire_owned().await.unwrap();
                let failure = match client.get(&url).send().await {
                    Ok(r) if r.status().is_success() => match r.bytes().await {
                        Ok(_) => None,
                        Err(e) => Some(format!("{path}: reading the body: {e}")),
                    },
                    Ok(r) => Some(format!("{path}: {}", r.status())),
                    Err(e) => Some(format!("{path}: {e}")),
                };
                (kind, due.elapsed(), failure)
            }));
        }
        let mut latencies = Vec::with_capacity(tasks.len());
        let mut failures = Vec::new();
        for t in tasks {
            let (kind, d, failure) = t.await.unwrap();
            latencies.push((kind, d));
            failures.extend(failure);
        }
        (latencies, failures, start.elapsed(), total)
    });
    let after = Progress::of(&handle.view());
    server.shutdown();
    signals.stop();
    let ended = match agent.join() {
        Ok(Ok(s)) => format!("ran until trace time {} s", s.stopped_at / 1000),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(_) => "panicked".into(),
    };

    let pct =
        |l: &[Duration], p: f64| l[((l.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    let mut by_kind = String::new();
    for (k, name) in KINDS.iter().enumerate() {
        let mut l: Vec<Duration> = latencies
            .iter()
            .filter(|(kind, _)| *kind == k)
            .map(|&(_, d)| d)
            .collect();
        l.sort();
        if !l.is_empty() {
            by_kind.push_str(&format!(" {name} {:.1}/{:.1}", pct(&l, 0.99), pct(&l, 1.0)));
        }
    }
    let mut l: Vec<Duration> = latencies.into_iter().map(|(_, d)| d).collect();
    l.sort();
    let pct = |p: f64| pct(&l, p);
    println!(
        "load: {sent} requests at {rate}/s offered over {connections} connections: achieved {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors (target p99 < 50 ms, no errors){caveat}",
        sent as f64 / took.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        pct(1.0),
        failures.len(),
    );
    println!("load: p99/max ms by request:{by_kind}{caveat}");
    for f in failures.iter().take(5) {
        println!("load: error: {f}");
    }
    let trace_s = (after.trace_ms - before.trace_ms) / 1000;
    println!(
        "load: the agent during the load ({:.1} s): {} plans made, {} samples taken, {} samples stored, {trace_s} s of trace ({:.1} h of the {:.0} h one-day series window filled); it {ended}{caveat}",
        took.as_secs_f64(),
        after.plans - before.plans,
        after.samples - before.samples,
        after.stored.saturating_sub(before.stored),
        after.trace_ms as f64 / 3.6e6,
        DAY as f64 / 3.6e6,
    );
}
