//! `prescient import --prometheus` end to end: a tiny exporter serves a
//! gauge whose value is a known function of its timestamp, a real
//! Prometheus on loopback scrapes it every second, and the binary imports
//! it into a temporary store in several chunks; the store then holds what
//! Prometheus gives for the same grid. Errors: bad PromQL, an unreachable
//! server.

mod common;

use std::time::Duration;

use common::{fails, ok};
use prescient_core::{Resource, SeriesKey};
use prescient_prometheus::testing::{Prometheus, TinyServer, free_port};
use prescient_store::{Resolution, Store};

/// Bytes, exact in f64, different every ms.
fn wave(ts_ms: i64) -> f64 {
    1e9 + (ts_ms % 1_000_000) as f64 * 4.0
}

/// Serves `mem{container="web"}` and `{container="db"}` (db = web / 2),
/// each sample with its timestamp.
fn exporter() -> TinyServer {
    TinyServer::timestamped_gauge(
        "mem",
        &[(r#"container="web""#, 1.0), (r#"container="db""#, 0.5)],
        wave,
    )
    .unwrap()
}

/// `prescient import` of `mem` from `prom` into `store` (the last 2
/// minutes at 1 s, as the memory of host `node-1`), with `extra`
/// arguments; its output.
fn import_mem(prom: &Prometheus, store: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "import",
        "--prometheus",
        prom.url(),
        "--query",
        "mem",
        "--since",
        "2m",
        "--step",
        "1s",
        "--resource",
        "memory",
        "--host",
        "node-1",
        "--store",
        store,
    ];
    args.extend_from_slice(extra);
    ok(&args)
}

#[test]
fn import_from_prometheus_stores_what_prometheus_holds() {
    let exporter = exporter();
    let prom = Prometheus::start("wave", exporter.addr(), "/metrics").unwrap();
    prom.wait_until(Duration::from_secs(60), "5 samples of mem", |c| {
        let r = c.query("mem[10m]", None).ok()?;
        (r.len() == 2 && r.iter().all(|s| s.points.len() >= 5)).then_some(())
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let db_s = db.to_str().unwrap();
    let out = import_mem(&prom, db_s, &["--max-points", "7"]);
    assert!(out.contains("imported 2 series"), "{out}");

    let mut store = Store::open(&db).unwrap();
    let list = store.series_list().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let c = prom.client();
    for (workload, k) in [("web", 1.0), ("db", 0.5)] {
        let id = store
            .series_id(&SeriesKey::new("node-1", workload, Resource::Memory))
            .unwrap();
        let stored = store.range(id, 0, i64::MAX, Resolution::Raw).unwrap();
        // 2 minutes back at 1 s, but Prometheus has data for only the last
        // few seconds of them: at least the 5 scrapes, over several chunks
        // of 7 points.
        assert!(stored.len() >= 5, "{workload}: {} samples", stored.len());
        let (first, last) = (stored[0].ts, stored.last().unwrap().ts);
        let expected = c
            .range_query(
                &format!("mem{{container=\"{workload}\"}}"),
                first,
                last,
                Duration::from_secs(1),
            )
            .unwrap();
        let expected: Vec<(i64, f64)> = expected[0].points.clone();
        let got: Vec<(i64, f64)> = stored.iter().map(|s| (s.ts, s.value)).collect();
        assert_eq!(got, expected, "{workload}");
        // And each value is the exporter's function of a scrape time at or
        // before it.
        for (t, v) in got {
            let scraped_at = (v / k - 1e9) / 4.0;
            // (Modulo the function's period, in case it wrapped.)
            let back = (t.rem_euclid(1_000_000) as f64 - scraped_at).rem_euclid(1_000_000.0);
            assert!((0.0..3000.0).contains(&back), "{workload} at {t}: {v}");
        }
    }
    // Importing again adds nothing.
    let again = import_mem(&prom, db_s, &[]);
    assert!(again.contains("already stored"), "{again}");

    // Named from the labels by default: instance for the host, container
    // for the workload.
    let db2 = dir.path().join("q.db");
    ok(&[
        "import",
        "--prometheus",
        prom.url(),
        "--query",
        "mem",
        "--since",
        "1m",
        "--step",
        "5s",
        "--store",
        db2.to_str().unwrap(),
    ]);
    let keys: Vec<SeriesKey> = Store::open(&db2)
        .unwrap()
        .series_list()
        .unwrap()
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    let host = exporter.addr().to_string();
    assert!(
        keys.contains(&SeriesKey::new(host.as_str(), "web", Resource::Cpu)),
        "{keys:?}"
    );

    // Bad PromQL: Prometheus's message, at once.
    let err = fails(&[
        "import",
        "--prometheus",
        prom.url(),
        "--query",
        "rate(mem[",
        "--store",
        db_s,
    ]);
    assert!(
        err.contains("parse error") && err.contains(prom.url()),
        "{err}"
    );
}

#[test]
fn an_unreachable_prometheus_fails_naming_it() {
    let url = format!("http://127.0.0.1:{}", free_port().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let err = fails(&[
        "import",
        "--prometheus",
        &url,
        "--query",
        "up",
        "--store",
        db.to_str().unwrap(),
    ]);
    assert!(
        err.contains(&url) && err.contains("could not be reached after 5 attempt"),
        "{err}"
    );
}

#[test]
fn import_needs_a_trace_or_a_prometheus_query() {
    let err = fails(&["import"]);
    assert!(
        err.contains("TRACE") || err.contains("--prometheus"),
        "{err}"
    );
    let err = fails(&["import", "--prometheus", "http://127.0.0.1:1"]);
    assert!(err.contains("--query"), "{err}");
    let err = fails(&[
        "import",
        "x.csv",
        "--prometheus",
        "http://127.0.0.1:1",
        "--query",
        "up",
    ]);
    assert!(err.contains("cannot be used with"), "{err}");
}
