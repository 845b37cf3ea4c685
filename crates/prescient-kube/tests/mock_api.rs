//! The controller against a mock API server (tower-test's `mock::pair`
//! behind a real `kube::Client`): every request it makes is recorded, with
//! the (paused, virtual) time it came, and answered by the scenario.
//! Watches are held open until a scenario pushes events into them, as an
//! API server does.
//!
//! Each scenario is an `async fn` returning the calls it saw, run by its
//! own test and again by `every_call_is_granted_and_every_grant_is_used`,
//! which ties the ClusterRole (`rbac::API_CALLS`) to the calls made.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::client::Body;
use prescient_kube::controller::{ClusterState, CycleReport};
use prescient_kube::quantity::parse_quantity;
use prescient_kube::rbac::API_CALLS;
use prescient_kube::snapshot::{WatchedPod, trim};
use prescient_kube::{Controller, ControllerConfig, Mode, Outcome, PlannerConfig, PrescientPolicy};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

const NS: &str = "shop";
const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;
const GI: f64 = 1_073_741_824.0;

/// A request the controller made.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    query: String,
    content_type: String,
    body: Value,
    /// When it came (tokio's clock, paused in these tests).
    at: Instant,
}

impl Call {
    fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1")
    }

    fn is_list(&self, path: &str) -> bool {
        self.method == "GET" && self.path == path && !self.is_watch()
    }
}

/// How the mock answers.
enum Reply {
    Json(u16, Value),
    /// A watch: held open; events pushed for its path are sent then.
    Watch,
}

type Responder = Box<dyn FnMut(&Call) -> Reply + Send>;

struct Mock {
    client: kube::Client,
    calls: Arc<Mutex<Vec<Call>>>,
    usage: Arc<Mutex<Value>>,
    push: mpsc::UnboundedSender<(String, Value)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: Vec<u8>) {
    send.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap(),
    );
}

/// The lines of a watch answer.
fn lines(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .map(|e| format!("{e}\n"))
        .collect::<String>()
        .into_bytes()
}

impl Mock {
    /// A mock API that answers metrics and events itself, holds watches
    /// open (see [`Mock::push`]), and answers everything else with
    /// `responder`.
    fn new(usage: Value, mut responder: Responder) -> Mock {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = calls.clone();
        let (push, mut pushed) = mpsc::unbounded_channel::<(String, Value)>();
        let usage = Arc::new(Mutex::new(usage));
        let metrics = usage.clone();
        let task = tokio::spawn(async move {
            // Per watched path: the open watch, and events not sent yet.
            let mut open: HashMap<String, tower_test::mock::SendResponse<Response<Body>>> =
                HashMap::new();
            let mut queued: HashMap<String, Vec<Value>> = HashMap::new();
            loop {
                tokio::select! {
                    next = handle.next_request() => {
                        let Some((req, send)) = next else { return };
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect_bytes().await.unwrap_or_default();
                        let call = Call {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query: parts.uri.query().unwrap_or("").to_string(),
                            content_type: parts
                                .headers
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string(),
                            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                            at: Instant::now(),
                        };
                        log.lock().unwrap().push(call.clone());
                        let reply = if call.path.starts_with("/apis/events.k8s.io/") {
                            let mut ev = call.body.clone();
                            ev["eventTime"] = json!("2023-11-14T22:13:20.000000Z");
                            Reply::Json(if call.method == "POST" { 201 } else { 200 }, ev)
                        } else if call.path
                            == format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods")
                        {
                            Reply::Json(200, metrics.lock().unwrap().clone())
                        } else {
                            responder(&call)
                        };
                        match reply {
                            Reply::Json(code, v) => respond(send, code, serde_json::to_vec(&v).unwrap()),
                            Reply::Watch => match queued.remove(&call.path) {
                                Some(events) if !events.is_empty() => respond(send, 200, lines(&events)),
                                // A newer watch of the path replaces an
                                // older one (ended by its idle timeout).
                                _ => drop(open.insert(call.path.clone(), send)),
                            },
                        }
                    }
                    Some((path, event)) = pushed.recv() => {
                        // The event ends the open watch's answer; the
                        // watcher then watches again from its
                        // resourceVersion, as after a server timeout.
                        match open.remove(&path) {
                            Some(send) => respond(send, 200, lines(&[event])),
                            None => queued.entry(path).or_default().push(event),
                        }
                    }
                }
            }
        });
        Mock {
            client: kube::Client::new(service, "default"),
            calls,
            usage,
            push,
            task,
        }
    }

    /// What the metrics API answers from now on.
    fn set_usage(&self, usage: Value) {
        *self.usage.lock().unwrap() = usage;
    }

    /// Sends a watch event to the watch of `path` (now, or when it is next
    /// opened).
    fn push(&self, path: &str, event: Value) {
        self.push.send((path.to_string(), event)).unwrap();
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The PATCHes of pods' resize subresource.
    fn resizes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.path.ends_with("/resize"))
            .collect()
    }

    /// The reasons of the Events published (created or patched).
    fn event_reasons(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.path.starts_with("/apis/events.k8s.io/"))
            .map(|c| c.body["reason"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

fn node() -> Node {
    serde_json::from_value(node_json()).unwrap()
}

fn node_json() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "resourceVersion": "1"},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}
    })
}

/// A pod with one container `app`, opted in by label.
fn pod_json(name: &str, rv: &str, extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": rv, "uid": format!("uid-{name}"),
                     "labels": {"app": name, "prescient.io/managed": "true"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "app:1",
            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}}]},
        "status": {"phase": "Running", "qosClass": "Burstable"}
    });
    merge(&mut p, extra);
    p
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn pod(name: &str, extra: Value) -> WatchedPod {
    serde_json::from_value(pod_json(name, "7", extra)).unwrap()
}

/// PodMetrics of pods `names`, each using 0.5 core and `memory`.
fn usage(names: &[&str], memory: &str) -> Value {
    let items: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({"metadata": {"name": n, "namespace": NS}, "timestamp": "2023-11-14T22:13:20Z",
                   "window": "30s", "containers": [{"name": "app", "usage": {"cpu": "500m", "memory": memory}}]})
        })
        .collect();
    json!({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetricsList", "metadata": {}, "items": items})
}

fn config(mode: Mode) -> ControllerConfig {
    ControllerConfig {
        planner: PlannerConfig {
            mode,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn seed(state: &Mutex<ClusterState>, pods: Vec<WatchedPod>) {
    let mut st = state.lock().unwrap();
    st.nodes.insert(node());
    for p in pods {
        st.pods.insert(p);
    }
}

fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .to_string()
}

/// The pod as the API server answers a resize at `at`: the patch applied,
/// resourceVersion `rv`, with `conditions`, and the managedFields entry of
/// the controller's field manager for the resize subresource stamped `at`.
fn resized_at(call: &Call, rv: &str, conditions: Value, at: i64) -> Value {
    let name = call.path.split('/').nth(6).unwrap().to_string();
    let mut p = pod_json(&name, rv, json!({"status": {"conditions": conditions}}));
    let c = &call.body["spec"]["containers"][0]["resources"];
    merge(&mut p["spec"]["containers"][0]["resources"], c.clone());
    let manager = call
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("fieldManager="))
        .unwrap_or("unnamed")
        .to_string();
    p["metadata"]["managedFields"] = json!([
        {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
         "time": "2023-11-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}},
        {"manager": manager, "operation": "Update", "apiVersion": "v1", "subresource": "resize",
         "time": rfc3339(at), "fieldsType": "FieldsV1",
         "fieldsV1": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:resources": {}}}}}}
    ]);
    p
}

/// [`resized_at`] at T0 + 2 min (the first cycle that resizes), rv 8.
fn resized(call: &Call, conditions: Value) -> Value {
    resized_at(call, "8", conditions, T0 + 2 * MIN)
}

/// An enforcing controller over `mock` with pod `web` on the node, past
/// its learning cycles ([`learn`]), and the time of its next cycle.
async fn enforcing_web(mock: &Mock) -> (Controller, i64) {
    enforcing(mock, vec![pod("web", json!({}))]).await
}

async fn enforcing(mock: &Mock, pods: Vec<WatchedPod>) -> (Controller, i64) {
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Enforce));
    seed(&ctl.state(), pods);
    let next = learn(&mut ctl).await;
    (ctl, next)
}

/// Asserts what a cycle did to pod `name` (of namespace `NS`).
fn assert_outcome(report: &CycleReport, name: &str, expected: &Outcome) {
    assert_eq!(
        report.outcome(NS, name),
        Some(expected),
        "{name}: {:?}",
        report.outcomes
    );
}

/// Runs learning cycles until the pods have enough usage; returns the time
/// of the next cycle.
async fn learn(ctl: &mut Controller) -> i64 {
    for i in 0..2 {
        let r = ctl.cycle(T0 + i * MIN).await;
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(
            r.outcomes
                .iter()
                .all(|o| matches!(&o.outcome, Outcome::Skipped(w) if w.contains("learning"))),
            "{:?}",
            r.outcomes
        );
    }
    T0 + 2 * MIN
}

fn quantity(v: &Value) -> f64 {
    parse_quantity(v.as_str().unwrap()).unwrap()
}

const PODS: &str = "/api/v1/pods";

fn list(kind: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": rv}, "items": items})
}

/// Answers the watches' lists: pods from `pod_lists` in turn (the last one
/// again once they run out; an `Err` is a 500), the node, no PDB, no
/// policy. Anything else is a 404.
fn lists(mut pod_lists: Vec<Result<Value, ()>>) -> impl FnMut(&Call) -> Option<Reply> {
    pod_lists.reverse();
    move |c| {
        if c.is_watch() {
            return Some(Reply::Watch);
        }
        if c.method != "GET" {
            return None;
        }
        Some(match c.path.as_str() {
            PODS => {
                let next = if pod_lists.len() > 1 {
                    pod_lists.pop().unwrap()
                } else {
                    pod_lists[0].clone()
                };
                match next {
                    Ok(v) => Reply::Json(200, v),
                    Err(()) => Reply::Json(
                        500,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                               "reason": "InternalError", "message": "etcdserver: request timed out"}),
                    ),
                }
            }
            "/api/v1/nodes" => Reply::Json(200, list("NodeList", "1", vec![node_json()])),
            "/apis/policy/v1/poddisruptionbudgets" => {
                Reply::Json(200, list("PodDisruptionBudgetList", "1", vec![]))
            }
            "/apis/prescient.io/v1alpha1/prescientpolicies" => {
                Reply::Json(200, list("PrescientPolicyList", "1", vec![]))
            }
            _ => return None,
        })
    }
}

fn not_found() -> Reply {
    Reply::Json(
        404,
        json!({"kind": "Status", "code": 404, "message": "not found"}),
    )
}

/// Waits (on tokio's clock) until `f` holds of the watched state.
async fn until(state: &Mutex<ClusterState>, what: &str, f: impl Fn(&ClusterState) -> bool) {
    for _ in 0..1000 {
        if f(&state.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the watches never showed {what}");
}

fn pod_names(st: &ClusterState) -> Vec<String> {
    st.pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

fn cpu_request(st: &ClusterState, name: &str) -> Option<f64> {
    let p = st.pods.get(NS, name)?;
    let r = p.spec.as_ref()?.containers[0].resources.as_ref()?;
    parse_quantity(&r.requests.as_ref()?.get("cpu")?.0).ok()
}

// ---- scenarios -------------------------------------------------------

async fn pods_from_the_watch_get_planned() -> Vec<Call> {
    let mut answer = lists(vec![Ok(list(
        "PodList",
        "10",
        vec![pod_json("a", "5", json!({}))],
    ))]);
    let mock = Mock::new(
        usage(&["a", "b"], "1Gi"),
        Box::new(move |c| answer(c).unwrap_or_else(not_found)),
    );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Recommend));
    let watches = tokio::spawn(ctl.watches());
    let state = ctl.state();
    until(&state, "pod a and the node", |st| {
        st.pods.len() == 1 && st.nodes.len() == 1
    })
    .await;
    mock.push(
        PODS,
        json!({"type": "ADDED", "object": pod_json("b", "11", json!({}))}),
    );
    until(&state, "pod b", |st| st.pods.len() == 2).await;
    let calls = mock.calls();
    assert!(calls.iter().any(|c| c.is_list(PODS)));
    assert!(calls.iter().any(|c| c.path == PODS && c.is_watch()));
    let next = learn(&mut ctl).await;
    let report = ctl.cycle(next).await;
    for name in ["a", "b"] {
        assert_outcome(&report, name, &Outcome::Recommended);
        let plan = report.plan(NS, name).unwrap();
        let cpu = plan.containers[0].cpu.unwrap();
        assert!(cpu.request < 1.0, "{cpu:?}");
    }
    assert!(mock.resizes().is_empty(), "recommend mode never resizes");
    watches.abort();
    mock.calls()
}

async fn a_shard_watches_and_plans_only_its_node() -> Vec<Call> {
    let mut answer = lists(vec![Ok(list(
        "PodList",
        "10",
        vec![pod_json("a", "5", json!({}))],
    ))]);
    let mock = Mock::new(
        usage(&["a", "elsewhere"], "1Gi"),
        Box::new(move |c| answer(c).unwrap_or_else(not_found)),
    );
    let mut ctl = Controller::new(
        mock.client.clone(),
        ControllerConfig {
            node: Some("n1".into()),
            ..config(Mode::Recommend)
        },
    );
    let watches = tokio::spawn(ctl.watches());
    let state = ctl.state();
    until(&state, "pod a and node n1", |st| {
        st.pods.len() == 1 && st.nodes.len() == 1
    })
    .await;
    let calls = mock.calls();
    let selector = |path: &str| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.path == path)
            .map(|c| c.query.clone())
            .collect()
    };
    for q in selector(PODS) {
        assert!(q.contains("fieldSelector=spec.nodeName%3Dn1"), "{q}");
    }
    for q in selector("/api/v1/nodes") {
        assert!(q.contains("fieldSelector=metadata.name%3Dn1"), "{q}");
    }
    // A pod and a node of another shard, as a wider watch would show them:
    // not planned here.
    {
        let mut st = state.lock().unwrap();
        let mut other = node_json();
        other["metadata"]["name"] = json!("n2");
        st.nodes.insert(serde_json::from_value(other).unwrap());
        st.pods
            .insert(pod("elsewhere", json!({"spec": {"nodeName": "n2"}})));
    }
    let next = learn(&mut ctl).await;
    let report = ctl.cycle(next).await;
    assert_eq!(report.nodes.len(), 1);
    assert_eq!(report.nodes[0].node, "n1");
    assert_eq!(report.outcome(NS, "a"), Some(&Outcome::Recommended));
    assert_eq!(report.outcome(NS, "elsewhere"), None);
    watches.abort();
    mock.calls()
}

async fn modified_and_deleted_pods_are_followed() -> Vec<Call> {
    let mut answer = lists(vec![Ok(list(
        "PodList",
        "10",
        vec![pod_json("a", "5", json!({})), pod_json("b", "6", json!({}))],
    ))]);
    let mock = Mock::new(
        usage(&["a", "b"], "1Gi"),
        Box::new(move |c| answer(c).unwrap_or_else(not_found)),
    );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Recommend));
    let watches = tokio::spawn(ctl.watches());
    let state = ctl.state();
    until(&state, "pods a and b", |st| {
        st.pods.len() == 2 && st.nodes.len() == 1
    })
    .await;
    let next = learn(&mut ctl).await;
    // Someone resizes a to 3 cores; b is deleted.
    let mut a = pod_json("a", "12", json!({}));
    a["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("3");
    mock.push(PODS, json!({"type": "MODIFIED", "object": a}));
    until(&state, "a at 3 cores", |st| {
        cpu_request(st, "a") == Some(3.0)
    })
    .await;
    mock.push(
        PODS,
        json!({"type": "DELETED", "object": pod_json("b", "13", json!({}))}),
    );
    until(&state, "b deleted", |st| pod_names(st) == ["a"]).await;
    let report = ctl.cycle(next).await;
    assert_eq!(report.outcomes.len(), 1, "{:?}", report.outcomes);
    let cpu = report.plan(NS, "a").unwrap().containers[0].cpu.unwrap();
    assert_eq!(
        cpu.current_request, 3.0,
        "the plan starts from the modified pod"
    );
    // The watch resumed from the last resourceVersion each time.
    let watches_of_pods: Vec<Call> = mock
        .calls()
        .into_iter()
        .filter(|c| c.path == PODS && c.is_watch())
        .collect();
    assert!(watches_of_pods.len() >= 3, "{watches_of_pods:?}");
    assert!(
        watches_of_pods
            .iter()
            .any(|c| c.query.contains("resourceVersion=13")),
        "{watches_of_pods:?}"
    );
    watches.abort();
    mock.calls()
}

async fn a_relist_replaces_the_pods_seen() -> Vec<Call> {
    // The first list has a and b; after the watch expires (410 Gone) the
    // relist has a and c: b went while the watch was down.
    let mut answer = lists(vec![
        Ok(list(
            "PodList",
            "10",
            vec![pod_json("a", "5", json!({})), pod_json("b", "6", json!({}))],
        )),
        Ok(list(
            "PodList",
            "40",
            vec![
                pod_json("a", "5", json!({})),
                pod_json("c", "30", json!({})),
            ],
        )),
    ]);
    let mock = Mock::new(
        usage(&["a", "b", "c"], "1Gi"),
        Box::new(move |c| answer(c).unwrap_or_else(not_found)),
    );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Recommend));
    let watches = tokio::spawn(ctl.watches());
    let state = ctl.state();
    until(&state, "pods a and b", |st| pod_names(st) == ["a", "b"]).await;
    mock.push(
        PODS,
        json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
               "status": "Failure", "message": "too old resource version: 10 (35)",
               "reason": "Expired", "code": 410}}),
    );
    until(&state, "the relist (a and c)", |st| {
        pod_names(st) == ["a", "c"]
    })
    .await;
    let lists_of_pods = mock.calls().into_iter().filter(|c| c.is_list(PODS)).count();
    assert_eq!(lists_of_pods, 2, "one list, then one relist after 410");
    let report = ctl.cycle(T0).await;
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("watch of Pod") && p.contains("too old")),
        "{:?}",
        report.problems
    );
    watches.abort();
    mock.calls()
}

async fn a_failed_list_is_retried_with_backoff() -> Vec<Call> {
    // The API server fails the first list of pods (500): the watcher waits
    // (0.8 s to 1.6 s, jittered, on the paused clock) and lists again.
    let mut answer = lists(vec![
        Err(()),
        Err(()),
        Ok(list("PodList", "10", vec![pod_json("a", "5", json!({}))])),
    ]);
    let mock = Mock::new(
        usage(&["a"], "1Gi"),
        Box::new(move |c| answer(c).unwrap_or_else(not_found)),
    );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Recommend));
    let watches = tokio::spawn(ctl.watches());
    let state = ctl.state();
    until(&state, "pod a", |st| st.pods.len() == 1).await;
    let tries: Vec<Instant> = mock
        .calls()
        .into_iter()
        .filter(|c| c.is_list(PODS))
        .map(|c| c.at)
        .collect();
    assert_eq!(tries.len(), 3, "two failures, then success");
    // kube's default backoff: 0.8 s, jittered up to twice that. (Each
    // retry of a list starts with an `Init` event, which resets it, so it
    // does not grow between failed lists.)
    for gap in [tries[1] - tries[0], tries[2] - tries[1]] {
        assert!(gap >= Duration::from_millis(800), "{gap:?}");
    }
    let report = ctl.cycle(T0).await;
    let failed = report
        .problems
        .iter()
        .filter(|p| p.contains("watch of Pod") && p.contains("500"))
        .count();
    assert_eq!(failed, 2, "{:?}", report.problems);
    assert!(
        ctl.cycle(T0 + MIN).await.problems.is_empty(),
        "reported once"
    );
    watches.abort();
    mock.calls()
}

async fn resize_accepted() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| match c.method.as_str() {
            "PATCH" => Reply::Json(200, resized(c, json!([]))),
            _ => not_found(),
        }),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    let report = ctl.cycle(next).await;
    assert_outcome(&report, "web", &Outcome::Resized);
    let calls = mock.resizes();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.path,
        format!("/api/v1/namespaces/{NS}/pods/web/resize")
    );
    assert!(
        call.query.contains("fieldManager=prescient-kube"),
        "{}",
        call.query
    );
    assert_eq!(call.content_type, "application/strategic-merge-patch+json");
    assert_eq!(call.body["metadata"]["resourceVersion"], "7");
    let c = &call.body["spec"]["containers"][0];
    assert_eq!(c["name"], "app");
    let (req, lim) = (
        quantity(&c["resources"]["requests"]["cpu"]),
        quantity(&c["resources"]["limits"]["cpu"]),
    );
    assert!(req > 0.5 && req < 0.7, "{c}");
    // The pod's limit/request ratio (4/2) is kept.
    assert!((lim / req - 2.0).abs() < 0.02, "{c}");
    let mem = quantity(&c["resources"]["requests"]["memory"]);
    assert!((1.1 * GI..2.0 * GI).contains(&mem), "{c}");
    assert_eq!(mock.event_reasons(), ["Resized"]);
    mock.calls()
}

async fn deferred_in_the_answer_is_not_sent_again() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(move |c| {
            let cond = json!([{"type": "PodResizePending", "status": "True", "reason": "Deferred",
                               "message": "Node didn't have enough resource: cpu"}]);
            Reply::Json(200, resized(c, cond))
        }),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    let report = ctl.cycle(next).await;
    match report.outcome(NS, "web") {
        Some(Outcome::Deferred(m)) => assert!(m.contains("enough resource"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The kubelet retries a deferred resize itself: the same target is
    // not sent again, even past the rate limit, while the watch still
    // shows the pod as planned from.
    for k in [1, 10] {
        match ctl.cycle(next + k * MIN).await.outcome(NS, "web") {
            Some(Outcome::Deferred(m)) => assert!(m.contains("enough resource"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(mock.resizes().len(), 1);
    assert_eq!(mock.event_reasons(), ["ResizeDeferred"], "reported once");
    mock.calls()
}

/// Pod `web` as the watch shows it after its resize (at the patched
/// requests, resourceVersion `rv`) with `conditions`.
fn web_after(patch: &Call, rv: &str, conditions: Value) -> Value {
    resized_at(patch, rv, conditions, T0 + 2 * MIN)
}

async fn pending_conditions_set_later_on_the_pod() -> Vec<Call> {
    // The PATCH is answered plainly; the kubelet's PodResizePending comes
    // later, on the pod, through the watch.
    let mut answer = lists(vec![Ok(list(
        "PodList",
        "10",
        vec![pod_json("web", "7", json!({}))],
    ))]);
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(move |c| match c.method.as_str() {
            "PATCH" => Reply::Json(200, resized(c, json!([]))),
            _ => answer(c).unwrap_or_else(not_found),
        }),
    );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Enforce));
    let watches = tokio::spawn(ctl.watches());
    let state = ctl.state();
    until(&state, "pod web", |st| {
        st.pods.len() == 1 && st.nodes.len() == 1
    })
    .await;
    let next = learn(&mut ctl).await;
    assert_outcome(&ctl.cycle(next).await, "web", &Outcome::Resized);
    let patch = mock.resizes()[0].clone();

    // 1. The kubelet defers it.
    let deferred = json!([{"type": "PodResizePending", "status": "True", "reason": "Deferred",
                           "message": "Node didn't have enough resource: memory"}]);
    mock.push(
        PODS,
        json!({"type": "MODIFIED", "object": web_after(&patch, "9", deferred)}),
    );
    until(&state, "rv 9", |st| {
        st.pods
            .get(NS, "web")
            .unwrap()
            .metadata
            .resource_version
            .as_deref()
            == Some("9")
    })
    .await;
    for k in [1, 2, 8] {
        match ctl.cycle(next + k * MIN).await.outcome(NS, "web") {
            Some(Outcome::Deferred(m)) => assert!(m.contains("resource: memory"), "{m}"),
            other => panic!("cycle +{k}: {other:?}"),
        }
    }
    // 2. Then finds it infeasible.
    let infeasible = json!([{"type": "PodResizePending", "status": "True", "reason": "Infeasible",
                             "message": "Node didn't have enough capacity: memory, requested: 9Gi"}]);
    mock.push(
        PODS,
        json!({"type": "MODIFIED", "object": web_after(&patch, "10", infeasible)}),
    );
    until(&state, "rv 10", |st| {
        st.pods
            .get(NS, "web")
            .unwrap()
            .metadata
            .resource_version
            .as_deref()
            == Some("10")
    })
    .await;
    for k in [9, 10, 30] {
        match ctl.cycle(next + k * MIN).await.outcome(NS, "web") {
            Some(Outcome::Infeasible(m)) => assert!(m.contains("enough capacity"), "{m}"),
            other => panic!("cycle +{k}: {other:?}"),
        }
    }
    assert_eq!(
        mock.resizes().len(),
        1,
        "the same target is never sent again"
    );
    assert_eq!(
        mock.event_reasons(),
        ["Resized", "ResizeDeferred", "ResizeInfeasible"],
        "each condition reported once"
    );
    // 3. The kubelet applies it after all: nothing to do.
    mock.push(
        PODS,
        json!({"type": "MODIFIED", "object": web_after(&patch, "11", json!([]))}),
    );
    until(&state, "rv 11", |st| {
        st.pods
            .get(NS, "web")
            .unwrap()
            .metadata
            .resource_version
            .as_deref()
            == Some("11")
    })
    .await;
    assert_outcome(
        &ctl.cycle(next + 31 * MIN).await,
        "web",
        &Outcome::Unchanged,
    );
    watches.abort();
    mock.calls()
}

async fn infeasible_is_reported_and_not_retried() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| {
            let cond = json!([{"type": "PodResizePending", "status": "True", "reason": "Infeasible",
                               "message": "Node didn't have enough capacity"}]);
            Reply::Json(200, resized(c, cond))
        }),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    let report = ctl.cycle(next).await;
    assert!(
        matches!(report.outcome(NS, "web"), Some(Outcome::Infeasible(_))),
        "{:?}",
        report.outcomes
    );
    for k in [1, 2, 3, 30] {
        let report = ctl.cycle(next + k * MIN).await;
        match report.outcome(NS, "web") {
            Some(Outcome::Infeasible(why)) => assert!(why.contains("enough capacity"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(mock.resizes().len(), 1);
    assert_eq!(mock.event_reasons(), ["ResizeInfeasible"]);
    mock.calls()
}

fn conflict() -> Reply {
    Reply::Json(
        409,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
        "reason": "Conflict", "message": "the object has been modified"}),
    )
}

async fn conflict_then_success_after_a_fresh_get() -> Vec<Call> {
    let mut patches = 0;
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(move |c| match c.method.as_str() {
            "PATCH" => {
                patches += 1;
                if patches == 1 {
                    conflict()
                } else {
                    Reply::Json(200, resized(c, json!([])))
                }
            }
            "GET" if c.path == format!("/api/v1/namespaces/{NS}/pods/web") => {
                // Someone raised the CPU limit ratio meanwhile: 3x.
                Reply::Json(
                    200,
                    pod_json(
                        "web",
                        "9",
                        json!({"spec": {"containers": [{"name": "app", "image": "app:1",
                    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "6", "memory": "8Gi"}}}]}}),
                    ),
                )
            }
            _ => not_found(),
        }),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    let report = ctl.cycle(next).await;
    assert_outcome(&report, "web", &Outcome::Resized);
    let resizes = mock.resizes();
    assert_eq!(resizes.len(), 2);
    assert_eq!(resizes[0].body["metadata"]["resourceVersion"], "7");
    assert_eq!(resizes[1].body["metadata"]["resourceVersion"], "9");
    let r = &resizes[1].body["spec"]["containers"][0]["resources"];
    let ratio = quantity(&r["limits"]["cpu"]) / quantity(&r["requests"]["cpu"]);
    assert!((ratio - 3.0).abs() < 0.02, "{r}");
    // The memory limit is not lowered in place after the fresh GET either.
    assert!(quantity(&r["limits"]["memory"]) >= 8.0 * GI, "{r}");
    let calls = mock.calls();
    let get = calls
        .iter()
        .position(|c| c.method == "GET" && c.path.ends_with("/pods/web"))
        .unwrap();
    let patches: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.method == "PATCH")
        .map(|(i, _)| i)
        .collect();
    assert!(patches[0] < get && get < patches[1]);
    calls
}

async fn conflicts_are_bounded_and_reported() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| match c.method.as_str() {
            "PATCH" => conflict(),
            _ => Reply::Json(200, pod_json("web", "9", json!({}))),
        }),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    let report = ctl.cycle(next).await;
    match report.outcome(NS, "web") {
        Some(Outcome::Failed(m)) => {
            assert!(m.contains("pod shop/web") && m.contains("409"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // The first attempt and three retries.
    assert_eq!(mock.resizes().len(), 4);
    mock.calls()
}

async fn failed_resizes_back_off() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| match c.method.as_str() {
            "PATCH" => Reply::Json(
                500,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                       "reason": "InternalError", "message": "etcdserver: leader changed"}),
            ),
            _ => not_found(),
        }),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    let mut sent_at = Vec::new();
    for k in 0..10 {
        let report = ctl.cycle(next + k * MIN).await;
        let before = sent_at.len();
        if mock.resizes().len() > before {
            sent_at.push(k);
            assert!(
                matches!(report.outcome(NS, "web"), Some(Outcome::Failed(m)) if m.contains("500")),
                "{:?}",
                report.outcomes
            );
        } else {
            match report.outcome(NS, "web") {
                Some(Outcome::Held(why)) => {
                    assert!(why.contains("the last resize failed"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // Tried at once, then after 2, 4 and 5 (the cap) minutes: not every
    // cycle.
    assert_eq!(sent_at, [0, 2, 6], "{sent_at:?}");
    // Each failure is an Event; repeats patch the first (a series).
    let events: Vec<Call> = mock
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/apis/events.k8s.io/"))
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].method, "POST");
    assert!(
        events[1..].iter().all(|e| e.method == "PATCH"),
        "{events:?}"
    );
    mock.calls()
}

async fn second_resize_within_five_minutes_is_held_back() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| Reply::Json(200, resized(c, json!([])))),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    assert_eq!(
        ctl.cycle(next).await.outcome(NS, "web"),
        Some(&Outcome::Resized)
    );
    // The watch has not shown the new requests yet: the plan still wants a
    // change, and it waits.
    for k in 1..5 {
        match ctl.cycle(next + k * MIN).await.outcome(NS, "web") {
            Some(Outcome::Held(why)) => {
                assert!(why.contains("at most one resize per pod every 5m"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(mock.resizes().len(), 1);
    assert_eq!(
        ctl.cycle(next + 5 * MIN).await.outcome(NS, "web"),
        Some(&Outcome::Resized)
    );
    assert_eq!(mock.resizes().len(), 2);
    mock.calls()
}

async fn a_restarted_controller_honours_the_last_resize() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| Reply::Json(200, resized_at(c, "8", json!([]), T0 + 2 * MIN))),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    assert_outcome(&ctl.cycle(next).await, "web", &Outcome::Resized);
    // As the watch delivers it.
    let answered: WatchedPod =
        serde_json::from_value(resized_at(&mock.resizes()[0], "8", json!([]), next)).unwrap();
    drop(ctl);
    // A new controller (its memory empty) sees the pod as the API server
    // keeps it: the resize time is in its managedFields. Usage moved, so
    // the plan wants another change: it waits out the interval.
    let mut pod = answered;
    trim(&mut pod);
    let fields = pod.metadata.managed_fields.as_ref().unwrap();
    assert_eq!(
        fields.len(),
        1,
        "only our manager's entry is kept: {fields:?}"
    );
    assert!(fields[0].fields_v1.is_none());
    pod.spec.as_mut().unwrap().containers[0]
        .resources
        .as_mut()
        .unwrap()
        .requests
        .as_mut()
        .unwrap()
        .insert(
            "cpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("3".into()),
        );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Enforce));
    seed(&ctl.state(), vec![pod]);
    for k in 1..3 {
        ctl.cycle(next + k * MIN).await;
    }
    for k in 3..5 {
        match ctl.cycle(next + k * MIN).await.outcome(NS, "web") {
            Some(Outcome::Held(why)) => assert!(why.contains("the pod's managedFields"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    assert_outcome(&ctl.cycle(next + 5 * MIN).await, "web", &Outcome::Resized);
    assert_eq!(mock.resizes().len(), 2);
    mock.calls()
}

async fn memory_never_below_current_usage() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web", "capped"], "3Gi"),
        Box::new(|c| Reply::Json(200, resized(c, json!([])))),
    );
    let capped = pod(
        "capped",
        json!({"metadata": {"annotations": {"prescient.io/max-memory": "2Gi"}}}),
    );
    let (mut ctl, next) = enforcing(&mock, vec![pod("web", json!({})), capped]).await;
    let report = ctl.cycle(next).await;
    let resizes = mock.resizes();
    assert!(
        resizes.iter().all(|c| c.path.ends_with("/pods/web/resize")),
        "{resizes:?}"
    );
    let mem =
        quantity(&resizes[0].body["spec"]["containers"][0]["resources"]["requests"]["memory"]);
    assert!(
        mem >= 3.0 * GI * 1.1,
        "memory {mem} under usage plus headroom"
    );
    match report.outcome(NS, "capped") {
        Some(Outcome::Held(why)) => assert!(why.contains("under its usage"), "{why}"),
        other => panic!("{other:?}"),
    }
    mock.calls()
}

async fn memory_is_not_lowered_when_its_usage_is_unknown() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| Reply::Json(200, resized(c, json!([])))),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    assert_outcome(&ctl.cycle(next).await, "web", &Outcome::Resized);
    let r = &mock.resizes()[0].body["spec"]["containers"][0]["resources"];
    assert!(quantity(&r["requests"]["memory"]) < 2.0 * GI, "{r}");
    // From now on the metrics have the pod's CPU but not its memory (and
    // the watch still shows the pod at 4Gi): memory is not lowered blind.
    let mut metrics = usage(&["web"], "1Gi");
    metrics["items"][0]["containers"][0]["usage"] = json!({"cpu": "500m"});
    mock.set_usage(metrics);
    for k in 1..5 {
        ctl.cycle(next + k * MIN).await;
    }
    let report = ctl.cycle(next + 5 * MIN).await;
    assert_outcome(&report, "web", &Outcome::Resized);
    let r = &mock.resizes()[1].body["spec"]["containers"][0]["resources"];
    assert!(quantity(&r["requests"]["cpu"]) < 1.0, "{r}");
    assert!(
        r["requests"].get("memory").is_none(),
        "memory left alone: {r}"
    );
    let reason = &report.plan(NS, "web").unwrap().containers[0].reason;
    assert!(reason.contains("its usage is unknown"), "{reason}");
    mock.calls()
}

async fn guaranteed_pods_stay_guaranteed() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["db"], "1Gi"),
        Box::new(|c| Reply::Json(200, resized(c, json!([])))),
    );
    let db = pod(
        "db",
        json!({"spec": {"containers": [{"name": "app", "image": "db:1",
            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
            "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"},
                             {"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]},
              "status": {"qosClass": "Guaranteed"}}),
    );
    let (mut ctl, next) = enforcing(&mock, vec![db]).await;
    assert_outcome(&ctl.cycle(next).await, "db", &Outcome::Resized);
    let r = &mock.resizes()[0].body["spec"]["containers"][0]["resources"];
    for resource in ["cpu", "memory"] {
        assert_eq!(r["requests"][resource], r["limits"][resource], "{r}");
    }
    assert!(quantity(&r["requests"]["cpu"]) < 1.0, "{r}");
    assert!(quantity(&r["requests"]["memory"]) < 2.0 * GI, "{r}");
    mock.calls()
}

async fn restart_container_without_disruption_budget_is_skipped() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["db"], "1Gi"),
        Box::new(|c| Reply::Json(200, resized(c, json!([])))),
    );
    let db = pod(
        "db",
        json!({"spec": {"containers": [{"name": "app", "image": "db:1",
            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}},
            "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"},
                             {"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]}}),
    );
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "db-pdb", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "db"}}, "minAvailable": 1},
        "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
    }))
    .unwrap();
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Enforce));
    seed(&ctl.state(), vec![db]);
    ctl.state().lock().unwrap().pdbs.insert(pdb);
    let next = learn(&mut ctl).await;
    let report = ctl.cycle(next).await;
    match report.outcome(NS, "db") {
        Some(Outcome::Held(why)) => {
            assert!(
                why.contains("restarts container app (resizePolicy RestartContainer)"),
                "{why}"
            );
            assert!(
                why.contains("PodDisruptionBudget db-pdb allows no disruption"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(mock.resizes().is_empty());
    mock.calls()
}

async fn recommend_mode_writes_status_and_never_patches_pods() -> Vec<Call> {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| match c.method.as_str() {
            "PATCH" if c.path.ends_with("/status") => {
                let mut p = json!({"apiVersion": "prescient.io/v1alpha1", "kind": "PrescientPolicy",
                    "metadata": {"name": "web-policy", "namespace": NS}, "spec": {"selector": {"matchLabels": {"app": "web"}}}});
                merge(&mut p, c.body.clone());
                Reply::Json(200, p)
            }
            _ => Reply::Json(
                500,
                json!({"kind": "Status", "code": 500, "message": "unexpected"}),
            ),
        }),
    );
    // Enforce at the controller, recommend by the policy.
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Enforce));
    let policy: PrescientPolicy = serde_json::from_value(json!({
        "apiVersion": "prescient.io/v1alpha1", "kind": "PrescientPolicy",
        "metadata": {"name": "web-policy", "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "sloQuantile": 0.99, "mode": "recommend"}
    }))
    .unwrap();
    let mut web = pod_json("web", "7", json!({}));
    web["metadata"]["labels"] = json!({"app": "web"});
    seed(&ctl.state(), vec![serde_json::from_value(web).unwrap()]);
    ctl.state().lock().unwrap().policies.insert(policy);
    let next = learn(&mut ctl).await;
    let report = ctl.cycle(next).await;
    assert_eq!(
        report.outcome(NS, "web"),
        Some(&Outcome::Recommended),
        "{:?}",
        report
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let calls = mock.calls();
    let status: Vec<&Call> = calls
        .iter()
        .filter(|c| c.path.ends_with("/status"))
        .collect();
    assert_eq!(status.len(), 1);
    assert_eq!(
        status[0].path,
        format!("/apis/prescient.io/v1alpha1/namespaces/{NS}/prescientpolicies/web-policy/status")
    );
    assert_eq!(status[0].content_type, "application/merge-patch+json");
    let rec = &status[0].body["status"]["recommendations"]["web/app"];
    assert_eq!(rec["pod"], "web");
    assert_eq!(rec["container"], "app");
    let cpu = quantity(&rec["cpuRequest"]);
    assert!(cpu > 0.5 && cpu < 0.8, "{rec}");
    assert!(quantity(&rec["memoryRequest"]) >= 1.1 * GI, "{rec}");
    let reason = rec["reason"].as_str().unwrap();
    assert!(
        reason.contains("cpu: lowered") && reason.contains("memory: lowered"),
        "{rec}"
    );
    assert!(
        rec["time"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T22:15:20"),
        "{rec}"
    );
    assert!(
        calls
            .iter()
            .all(|c| !(c.method == "PATCH" && c.path.contains("/pods/"))),
        "no pod patches"
    );
    // The pod goes: its entry is removed.
    ctl.state().lock().unwrap().pods = Default::default();
    ctl.cycle(next + MIN).await;
    let calls = mock.calls();
    let last = calls
        .iter()
        .rev()
        .find(|c| c.path.ends_with("/status"))
        .unwrap();
    assert_eq!(
        last.body["status"]["recommendations"]["web/app"],
        Value::Null
    );
    assert!(
        last.body["status"]["recommendations"]
            .as_object()
            .unwrap()
            .contains_key("web/app")
    );
    mock.calls()
}

// ---- the tests -------------------------------------------------------

/// One test per scenario, on a paused clock (backoffs and idle timeouts
/// pass in virtual time).
macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        mod scenario {
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name().await;
                }
            )*
        }

        /// Every scenario's calls.
        async fn all_scenarios() -> Vec<(&'static str, Vec<Call>)> {
            vec![$((stringify!($name), $name().await)),*]
        }
    };
}

scenario_tests!(
    pods_from_the_watch_get_planned,
    a_shard_watches_and_plans_only_its_node,
    modified_and_deleted_pods_are_followed,
    a_relist_replaces_the_pods_seen,
    a_failed_list_is_retried_with_backoff,
    resize_accepted,
    deferred_in_the_answer_is_not_sent_again,
    pending_conditions_set_later_on_the_pod,
    infeasible_is_reported_and_not_retried,
    conflict_then_success_after_a_fresh_get,
    conflicts_are_bounded_and_reported,
    failed_resizes_back_off,
    second_resize_within_five_minutes_is_held_back,
    a_restarted_controller_honours_the_last_resize,
    memory_never_below_current_usage,
    memory_is_not_lowered_when_its_usage_is_unknown,
    guaranteed_pods_stay_guaranteed,
    restart_container_without_disruption_budget_is_skipped,
    recommend_mode_writes_status_and_never_patches_pods,
);

/// The RBAC rule a call needs: (API group, resource[/subresource], verb).
fn rule_of(c: &Call) -> (String, String, String) {
    let parts: Vec<&str> = c.path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not an API path: {}", c.path),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, name, sub) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => panic!("unexpected API path: {}", c.path),
    };
    let verb = match (c.method.as_str(), name) {
        ("GET", _) if c.is_watch() => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("DELETE", _) => "delete",
        (m, _) => panic!("unexpected method {m} on {}", c.path),
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    (group.to_string(), resource, verb.to_string())
}

#[tokio::test(start_paused = true)]
async fn every_call_is_granted_and_every_grant_is_used() {
    let granted: BTreeSet<(String, String, String)> = API_CALLS
        .iter()
        .flat_map(|c| {
            c.verbs
                .iter()
                .map(|v| (c.group.to_string(), c.resource.to_string(), v.to_string()))
        })
        .collect();
    let mut used = BTreeSet::new();
    for (scenario, calls) in all_scenarios().await {
        assert!(!calls.is_empty(), "{scenario} made no call");
        for c in &calls {
            let rule = rule_of(c);
            assert!(
                granted.contains(&rule),
                "{scenario}: {} {}?{} needs {rule:?}, which rbac::API_CALLS (and so the ClusterRole) does not grant",
                c.method,
                c.path,
                c.query
            );
            used.insert(rule);
        }
    }
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "granted in rbac::API_CALLS but made by no scenario: {unused:?}"
    );
}

#[test]
fn rules_of_calls() {
    let call = |method: &str, path: &str, query: &str| Call {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        content_type: String::new(),
        body: Value::Null,
        at: Instant::now(),
    };
    let rule = |g: &str, r: &str, v: &str| (g.to_string(), r.to_string(), v.to_string());
    assert_eq!(
        rule_of(&call("GET", "/api/v1/pods", "")),
        rule("", "pods", "list")
    );
    assert_eq!(
        rule_of(&call("GET", "/api/v1/pods", "watch=true&resourceVersion=1")),
        rule("", "pods", "watch")
    );
    assert_eq!(
        rule_of(&call("PATCH", "/api/v1/namespaces/a/pods/b/resize", "")),
        rule("", "pods/resize", "patch")
    );
    assert_eq!(
        rule_of(&call("GET", "/api/v1/namespaces/a/pods/b", "")),
        rule("", "pods", "get")
    );
    assert_eq!(
        rule_of(&call(
            "POST",
            "/apis/events.k8s.io/v1/namespaces/a/events",
            ""
        )),
        rule("events.k8s.io", "events", "create")
    );
    assert_eq!(
        rule_of(&call(
            "GET",
            "/apis/metrics.k8s.io/v1beta1/namespaces/a/pods",
            ""
        )),
        rule("metrics.k8s.io", "pods", "list")
    );
}
