//! The controller reading each new pod's history from Prometheus: a fake
//! Prometheus HTTP API on loopback (`TinyServer`) answers the real client,
//! records every query, and fails the first range query. The history
//! templates' PromQL itself is checked against a real Prometheus in
//! `prometheus_usage.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Response;
use k8s_openapi::api::core::v1::Node;
use kube::client::Body;
use prescient_kube::snapshot::WatchedPod;
use prescient_kube::usage::{DEFAULT_CPU_QUERY, DEFAULT_MEMORY_QUERY, HistoryConfig};
use prescient_kube::{Controller, ControllerConfig, Mode, Outcome, PlannerConfig, UsageSource};
use prescient_prometheus::testing::{Reply, TinyServer};
use serde_json::{Value, json};

const NS: &str = "shop";
const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

/// `%XX` and `+` decoded.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A request's path and its decoded query parameters.
type Request = (String, BTreeMap<String, String>);

fn parse(target: &str) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect();
    (path.to_string(), params)
}

/// The pods a filled history query selects: its `pod=~"..."` alternation.
fn pods_of(query: &str) -> Vec<String> {
    let start = query.find("pod=~\"").expect("a pod regex") + 6;
    let end = start + query[start..].find('"').unwrap();
    query[start..end]
        .split('|')
        .map(|p| p.replace("\\\\.", "."))
        .collect()
}

/// A fake Prometheus: usage of the pods `live` at any instant (CPU 0.5
/// core, memory 1 GiB), and a history of every pod asked for (CPU 0.25
/// core, memory 2 GiB, every step of the range); the first `fail` range
/// queries answer 422.
struct FakePrometheus {
    server: TinyServer,
    queries: Arc<Mutex<Vec<Request>>>,
    live: Arc<Mutex<Vec<String>>>,
}

impl FakePrometheus {
    fn start(fail: usize) -> FakePrometheus {
        let queries = Arc::new(Mutex::new(Vec::new()));
        let live: Arc<Mutex<Vec<String>>> = Arc::default();
        let failures = Arc::new(AtomicUsize::new(fail));
        let (log, pods) = (queries.clone(), live.clone());
        let server = TinyServer::start(move |target| {
            let (path, params) = parse(target);
            log.lock().unwrap().push((path.clone(), params.clone()));
            let query = params.get("query").cloned().unwrap_or_default();
            let cpu = query.contains("cpu");
            let series = |pod: &str, values: Value| {
                json!({"metric": {"namespace": NS, "pod": pod, "container": "app"}, "value": values})
            };
            match path.as_str() {
                "/api/v1/query" => {
                    let t: f64 = params["time"].parse().unwrap();
                    let v = if cpu { "0.5" } else { "1073741824" };
                    let result: Vec<Value> = pods
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|p: &String| series(p, json!([t, v])))
                        .collect();
                    let body = json!({"status": "success", "data": {"resultType": "vector", "result": result}});
                    Reply::new(200, "application/json", body.to_string())
                }
                "/api/v1/query_range" => {
                    if failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        let body = json!({"status": "error", "errorType": "execution",
                                          "error": "query processing would load too many samples into memory"});
                        return Reply::new(422, "application/json", body.to_string());
                    }
                    let (start, end, step): (f64, f64, f64) = (
                        params["start"].parse().unwrap(),
                        params["end"].parse().unwrap(),
                        params["step"].parse().unwrap(),
                    );
                    let v = if cpu { "0.25" } else { "2147483648" };
                    let mut points = Vec::new();
                    let mut t = start;
                    while t <= end {
                        points.push(json!([t, v]));
                        t += step;
                    }
                    let result: Vec<Value> = pods_of(&query)
                        .iter()
                        .map(|p| {
                            json!({"metric": {"namespace": NS, "pod": p, "container": "app"},
                                   "values": points})
                        })
                        .collect();
                    let body = json!({"status": "success", "data": {"resultType": "matrix", "result": result}});
                    Reply::new(200, "application/json", body.to_string())
                }
                _ => Reply::new(404, "text/plain", "not found"),
            }
        })
        .unwrap();
        FakePrometheus {
            server,
            queries,
            live,
        }
    }

    /// The range queries made so far: (query, start s, end s).
    fn range_queries(&self) -> Vec<(String, f64, f64)> {
        self.queries
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/api/v1/query_range")
            .map(|(_, q)| {
                (
                    q["query"].clone(),
                    q["start"].parse().unwrap(),
                    q["end"].parse().unwrap(),
                )
            })
            .collect()
    }
}

/// A Kubernetes API, which recommend mode with pods opted in by label
/// never calls: every request is recorded and answered 404.
type Calls = Arc<Mutex<Vec<String>>>;

fn idle_api() -> (kube::Client, Calls, tokio::task::JoinHandle<()>) {
    let (service, mut handle) = tower_test::mock::pair::<http::Request<Body>, Response<Body>>();
    let calls = Calls::default();
    let log = calls.clone();
    let task = tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            log.lock()
                .unwrap()
                .push(format!("{} {}", req.method(), req.uri()));
            send.send_response(Response::builder().status(404).body(Body::empty()).unwrap());
        }
    });
    (kube::Client::new(service, "default"), calls, task)
}

fn pod(name: &str) -> WatchedPod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": NS, "resourceVersion": "1",
                     "labels": {"prescient.io/managed": "true"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "app",
            "resources": {"requests": {"cpu": "1", "memory": "4Gi"}}}]},
        "status": {"phase": "Running"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_new_pod_gets_its_history_and_failed_reads_back_off() {
    let prom = FakePrometheus::start(1);
    let (client, api_calls, api) = idle_api();
    let history = HistoryConfig {
        lookback: Duration::from_secs(86_400),
        retry: Duration::from_secs(120),
        ..Default::default()
    };
    let mut ctl = Controller::new(
        client,
        ControllerConfig {
            planner: PlannerConfig {
                mode: Mode::Recommend,
                ..Default::default()
            },
            usage: UsageSource::Prometheus {
                url: prom.server.url(),
                cpu_query: DEFAULT_CPU_QUERY.into(),
                memory_query: DEFAULT_MEMORY_QUERY.into(),
                history,
            },
            ..Default::default()
        },
    );
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}
    }))
    .unwrap();
    {
        let state = ctl.state();
        let mut st = state.lock().unwrap();
        st.nodes.insert(node);
        st.pods.insert(pod("a"));
    }
    prom.live.lock().unwrap().push("a".into());

    // 1. The history read fails: reported, and pod a learns live.
    let r = ctl.cycle(T0).await;
    let problem = r.problems.join("\n");
    assert!(
        problem.contains("usage history of 1 pod(s) of namespace shop (a)")
            && problem.contains("too many samples")
            && problem.contains("tried again in 2m"),
        "{problem}"
    );
    assert!(matches!(r.outcome(NS, "a"), Some(Outcome::Skipped(w)) if w.contains("learning")));
    let ranges = prom.range_queries();
    assert_eq!(ranges.len(), 1, "{ranges:?}");
    let (q, start, end) = &ranges[0];
    assert!(q.contains(r#"namespace="shop", pod=~"a""#), "{q}");
    assert_eq!(
        (*start, *end),
        ((T0 - 86_400_000) as f64 / 1e3, (T0 - MIN) as f64 / 1e3)
    );

    // 2. Within the backoff: not asked again.
    let r = ctl.cycle(T0 + MIN).await;
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(prom.range_queries().len(), 1);
    assert!(matches!(r.outcome(NS, "a"), Some(Outcome::Skipped(_))));

    // 3. Due again: read (both resources), and a is planned at once, from
    // a day of history.
    let r = ctl.cycle(T0 + 2 * MIN).await;
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(prom.range_queries().len(), 3);
    assert_eq!(r.outcome(NS, "a"), Some(&Outcome::Recommended));
    let mem = r.plan(NS, "a").unwrap().containers[0].memory.unwrap();
    // The history says 2 GiB (live: 1 GiB): a day of it warms the tail
    // curves at once (one sample per 5 minutes, the newest 240), which
    // plan from it.
    assert!(mem.request > 1.5 * 1_073_741_824.0, "{mem:?}");

    // 4. A new pod: only its history is read.
    {
        let state = ctl.state();
        state.lock().unwrap().pods.insert(pod("b"));
    }
    prom.live.lock().unwrap().push("b".into());
    let r = ctl.cycle(T0 + 3 * MIN).await;
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let ranges = prom.range_queries();
    assert_eq!(ranges.len(), 5);
    for (q, start, _) in &ranges[3..] {
        assert_eq!(pods_of(q), ["b"], "{q}");
        assert_eq!(*start, (T0 + 3 * MIN - 86_400_000) as f64 / 1e3);
    }
    assert_eq!(r.outcome(NS, "b"), Some(&Outcome::Recommended));

    // 5. Nothing new: no range query.
    ctl.cycle(T0 + 4 * MIN).await;
    assert_eq!(prom.range_queries().len(), 5);
    assert!(api_calls.lock().unwrap().is_empty(), "{api_calls:?}");
    api.abort();
}
