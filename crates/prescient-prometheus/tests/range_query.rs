//! The client against a real Prometheus on loopback (scraping a gauge whose
//! value is a known function of its timestamp), and against fakes that
//! fail in known ways.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use prescient_prometheus::testing::{Prometheus, Reply, TinyServer, free_port, now_ms};
use prescient_prometheus::{Client, PromError, RangeSeries, Retry};

/// The gauge's value at `ts_ms`: exact in f64, different every ms.
fn wave(ts_ms: i64) -> f64 {
    (ts_ms % 10_000_000) as f64 / 8.0
}

/// Serves `test_wave{series="a"}` and `{series="b"}` (b = 2a), each sample
/// with its timestamp, so that Prometheus stores exactly (ts, wave(ts)).
fn exporter() -> TinyServer {
    TinyServer::timestamped_gauge(
        "test_wave",
        &[(r#"series="a""#, 1.0), (r#"series="b""#, 2.0)],
        wave,
    )
    .unwrap()
}

/// The raw samples Prometheus holds for `test_wave` at `at`.
fn raw(client: &Client, at: i64) -> Vec<RangeSeries> {
    client.query("test_wave[10m]", Some(at)).unwrap()
}

#[test]
fn a_chunked_range_query_gives_what_prometheus_holds() {
    let exporter = exporter();
    let prom = Prometheus::start("wave", exporter.addr(), "/metrics").unwrap();
    // At least 6 scrapes of both series.
    let held = prom
        .wait_until(Duration::from_secs(60), "6 samples of test_wave", |c| {
            let r = c.query("test_wave[10m]", None).ok()?;
            (r.len() == 2 && r.iter().all(|s| s.points.len() >= 6)).then_some(r)
        })
        .unwrap();
    // Prometheus holds exactly what the exporter served.
    for s in &held {
        let k = if s.labels["series"] == "a" { 1.0 } else { 2.0 };
        assert_eq!(s.labels["job"], "wave");
        for &(ts, v) in &s.points {
            assert_eq!(v, k * wave(ts), "sample at {ts}");
        }
    }

    // A range over the samples held, at a step finer than the scrapes, and
    // chunks of 3 points: several chunks.
    let first = held.iter().map(|s| s.points[0].0).max().unwrap();
    let last = held
        .iter()
        .map(|s| *s.points.last().unwrap())
        .map(|p| p.0)
        .min()
        .unwrap();
    let step = Duration::from_millis(250);
    let client = prom.client().with_max_points(3);
    let chunks = client.chunks("test_wave", first, last, step).unwrap();
    assert!(chunks.len() >= 5, "{} chunks", chunks.len());
    let got = client.range_query("test_wave", first, last, step).unwrap();
    let at = raw(&prom.client(), last);
    assert_eq!(got.len(), 2);
    for (g, r) in got.iter().zip(&at) {
        assert_eq!(g.labels, r.labels, "series sorted by labels, names kept");
        // Each step's value is the newest raw sample at or before it.
        let expected: Vec<(i64, f64)> = (0..)
            .map(|k| first + k * 250)
            .take_while(|&t| t <= last)
            .map(|t| {
                let v = r.points.iter().rev().find(|p| p.0 <= t).unwrap().1;
                (t, v)
            })
            .collect();
        assert_eq!(g.points, expected, "{:?}", g.labels);
    }
    // One chunk gives the same.
    let whole = prom
        .client()
        .range_query("test_wave", first, last, step)
        .unwrap();
    assert_eq!(whole, got);
    // And the convenience function too.
    assert_eq!(
        prescient_prometheus::range_query(prom.url(), "test_wave", first, last, step).unwrap(),
        got
    );
}

#[test]
fn bad_promql_fails_at_once_with_prometheus_message() {
    let exporter = exporter();
    let prom = Prometheus::start("wave", exporter.addr(), "/metrics").unwrap();
    let t = now_ms();
    let err = prom
        .client()
        .range_query("rate(test_wave[", t - 60_000, t, Duration::from_secs(1))
        .unwrap_err();
    match &err {
        PromError::Api {
            status,
            error_type,
            message,
            ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error_type.as_deref(), Some("bad_data"));
            assert!(message.contains("parse error"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let s = err.to_string();
    assert!(
        s.contains(prom.url()) && s.contains("rate(test_wave[") && s.contains("chunk 1 of 1"),
        "{s}"
    );
}

#[test]
fn an_unreachable_server_fails_after_the_bounded_retries_naming_it() {
    let port = free_port().unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new(&url).unwrap().with_retry(Retry {
        attempts: 3,
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
    });
    let err = client
        .range_query("up", 0, 60_000, Duration::from_secs(15))
        .unwrap_err();
    assert!(
        matches!(err, PromError::Unreachable { attempts: 3, .. }),
        "{err:?}"
    );
    let s = err.to_string();
    assert!(
        s.contains(&url) && s.contains("\"up\"") && s.contains("3 attempt"),
        "{s}"
    );
}

const MATRIX: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"x"},"values":[[60,"1.5"],[75,"NaN"],[90,"+Inf"]]}]}}"#;

/// A fake Prometheus that answers `status` to the first `failures`
/// requests, then the matrix; and counts requests.
fn flaky(status: u16, failures: u32) -> (TinyServer, Arc<AtomicU32>) {
    let count = Arc::new(AtomicU32::new(0));
    let c = Arc::clone(&count);
    let server = TinyServer::start(move |target| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        assert!(target.starts_with("/api/v1/query_range?"), "{target}");
        if n < failures {
            Reply::new(
                status,
                "application/json",
                format!(
                    r#"{{"status":"error","errorType":"unavailable","error":"busy ({status})"}}"#
                ),
            )
        } else {
            Reply::new(200, "application/json", MATRIX)
        }
    })
    .unwrap();
    (server, count)
}

fn quick(url: &str) -> Client {
    Client::new(url).unwrap().with_retry(Retry {
        attempts: 4,
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
    })
}

#[test]
fn http_503_twice_then_200_succeeds_thanks_to_the_retry() {
    let (server, count) = flaky(503, 2);
    let got = quick(&server.url())
        .range_query("up", 60_000, 90_000, Duration::from_secs(15))
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels["job"], "x");
    assert_eq!(got[0].points[0], (60_000, 1.5));
    assert!(got[0].points[1].1.is_nan());
    assert_eq!(got[0].points[2], (90_000, f64::INFINITY));
}

#[test]
fn http_429_is_retried_and_a_lasting_5xx_gives_up_with_its_message() {
    let (server, count) = flaky(429, 1);
    assert!(
        quick(&server.url())
            .range_query("up", 0, 1000, Duration::from_secs(1))
            .is_ok()
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);

    let (server, count) = flaky(502, 100);
    let err = quick(&server.url())
        .range_query("up", 0, 1000, Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 4, "the bounded attempts");
    assert!(matches!(err, PromError::Api { status: 502, .. }), "{err:?}");
    assert!(
        err.to_string().contains("busy (502)") && err.to_string().contains("4 attempt"),
        "{err}"
    );
}

#[test]
fn a_4xx_other_than_429_is_not_retried() {
    let (server, count) = flaky(422, 100);
    let err = quick(&server.url())
        .range_query("up", 0, 1000, Duration::from_secs(1))
        .unwrap_err();
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(matches!(err, PromError::Api { status: 422, .. }), "{err:?}");
}

#[test]
fn chunks_are_requested_in_order_and_joined() {
    // A fake that answers each chunk with its own start as the value.
    let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = Arc::clone(&starts);
    let server = TinyServer::start(move |target| {
        let q: std::collections::HashMap<String, String> = target
            .split_once('?')
            .map(|(_, q)| q)
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let start: f64 = q["start"].parse().unwrap();
        let end: f64 = q["end"].parse().unwrap();
        s2.lock().unwrap().push((start, end));
        let mut values = Vec::new();
        let mut t = start;
        while t <= end + 1e-9 {
            values.push(format!("[{t},\"{t}\"]"));
            t += 10.0;
        }
        Reply::new(
            200,
            "application/json",
            format!(
                r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{"a":"1"}},"values":[{}]}}]}}}}"#,
                values.join(",")
            ),
        )
    })
    .unwrap();
    let got = quick(&server.url())
        .with_max_points(4)
        .range_query("q", 0, 100_000, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        *starts.lock().unwrap(),
        vec![(0.0, 30.0), (40.0, 70.0), (80.0, 100.0)]
    );
    assert_eq!(got.len(), 1);
    let ts: Vec<i64> = got[0].points.iter().map(|p| p.0).collect();
    assert_eq!(ts, (0..=10).map(|k| k * 10_000).collect::<Vec<_>>());
}
