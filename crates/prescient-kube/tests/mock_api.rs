//! The controller against a mock API server (tower-test's `mock::pair`
//! behind a real `kube::Client`): every request it makes is recorded and
//! answered by the scenario.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::client::Body;
use prescient_kube::controller::{ClusterState, CycleReport};
use prescient_kube::quantity::parse_quantity;
use prescient_kube::{Controller, ControllerConfig, Mode, Outcome, PlannerConfig, PrescientPolicy};
use serde_json::{Value, json};

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
}

/// How the mock answers.
enum Reply {
    Json(u16, Value),
    Raw(Vec<u8>),
    /// Never answered (an open watch with nothing to say).
    Hang,
}

type Responder = Box<dyn FnMut(&Call) -> Reply + Send>;

struct Mock {
    client: kube::Client,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mock {
    /// A mock API that answers metrics and events itself and everything
    /// else with `responder`.
    fn new(usage: Value, mut responder: Responder) -> Mock {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = calls.clone();
        let task = tokio::spawn(async move {
            let mut hanging = Vec::new();
            while let Some((req, send)) = handle.next_request().await {
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
                };
                log.lock().unwrap().push(call.clone());
                let reply = if call.path.starts_with("/apis/events.k8s.io/") {
                    let mut ev = call.body.clone();
                    ev["eventTime"] = json!("2023-11-14T22:13:20.000000Z");
                    Reply::Json(201, ev)
                } else if call.path == format!("/apis/metrics.k8s.io/v1beta1/namespaces/{NS}/pods")
                {
                    Reply::Json(200, usage.clone())
                } else {
                    responder(&call)
                };
                let (status, body) = match reply {
                    Reply::Json(code, v) => (code, serde_json::to_vec(&v).unwrap()),
                    Reply::Raw(b) => (200, b),
                    Reply::Hang => {
                        hanging.push(send);
                        continue;
                    }
                };
                send.send_response(
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body))
                        .unwrap(),
                );
            }
        });
        Mock {
            client: kube::Client::new(service, "default"),
            calls,
            task,
        }
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
}

fn node() -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1", "resourceVersion": "1"},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}}
    }))
    .unwrap()
}

/// A pod with one container `app`, opted in by label.
fn pod_json(name: &str, rv: &str, extra: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "resourceVersion": rv, "uid": format!("uid-{name}"),
                     "labels": {"app": name, "prescient.io/managed": "true"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "app:1",
            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}}]},
        "status": {"phase": "Running"}
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

fn pod(name: &str, extra: Value) -> Pod {
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

fn seed(state: &Mutex<ClusterState>, pods: Vec<Pod>) {
    let mut st = state.lock().unwrap();
    st.nodes.insert(node());
    for p in pods {
        st.pods.insert(p);
    }
}

/// The pod as the API server answers a resize: the patch applied, with
/// `conditions`.
fn resized(call: &Call, conditions: Value) -> Value {
    let name = call.path.split('/').nth(6).unwrap().to_string();
    let mut p = pod_json(&name, "8", json!({"status": {"conditions": conditions}}));
    let spec_patch = call.body["spec"].clone();
    let c = &spec_patch["containers"][0]["resources"];
    merge(&mut p["spec"]["containers"][0]["resources"], c.clone());
    p
}

/// An enforcing controller over `mock` with pod `web` on the node, past
/// its learning cycles ([`learn`]), and the time of its next cycle.
async fn enforcing_web(mock: &Mock) -> (Controller, i64) {
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Enforce));
    seed(&ctl.state(), vec![pod("web", json!({}))]);
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

#[tokio::test]
async fn pods_from_the_watch_get_planned() {
    let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "10"},
                      "items": [pod_json("a", "5", json!({}))]});
    let added = json!({"type": "ADDED", "object": pod_json("b", "11", json!({}))});
    let mut pod_watches = 0;
    let mock = Mock::new(
        usage(&["a", "b"], "1Gi"),
        Box::new(move |c| {
            let watch = c.query.contains("watch=true");
            let empty = |kind: &str| json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": []});
            match (c.path.as_str(), watch) {
                ("/api/v1/pods", false) => Reply::Json(200, list.clone()),
                ("/api/v1/pods", true) => {
                    pod_watches += 1;
                    if pod_watches == 1 {
                        Reply::Raw(format!("{added}\n").into_bytes())
                    } else {
                        Reply::Hang
                    }
                }
                ("/api/v1/nodes", false) => Reply::Json(
                    200,
                    json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "1"},
                           "items": [serde_json::to_value(node()).unwrap()]}),
                ),
                ("/apis/policy/v1/poddisruptionbudgets", false) => {
                    Reply::Json(200, empty("PodDisruptionBudgetList"))
                }
                ("/apis/prescient.io/v1alpha1/prescientpolicies", false) => {
                    Reply::Json(200, empty("PrescientPolicyList"))
                }
                (_, true) => Reply::Hang,
                _ => Reply::Json(
                    404,
                    json!({"kind": "Status", "code": 404, "message": "not found"}),
                ),
            }
        }),
    );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Recommend));
    let watches = tokio::spawn(ctl.watches());
    let state = ctl.state();
    let mut seen = false;
    for _ in 0..500 {
        {
            let st = state.lock().unwrap();
            if st.pods.len() == 2 && st.nodes.len() == 1 {
                seen = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen, "the watch did not deliver both pods and the node");
    let calls = mock.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.path == "/api/v1/pods" && !c.query.contains("watch=true"))
    );
    assert!(
        calls
            .iter()
            .any(|c| c.path == "/api/v1/pods" && c.query.contains("watch=true"))
    );
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
}

#[tokio::test]
async fn resize_accepted() {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| match c.method.as_str() {
            "PATCH" => Reply::Json(200, resized(c, json!([]))),
            _ => Reply::Json(404, json!({"kind": "Status", "code": 404})),
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
    assert!(
        mock.calls()
            .iter()
            .any(|c| c.method == "POST" && c.path.ends_with("/events"))
    );
}

#[tokio::test]
async fn resize_deferred_is_retried_at_a_later_cycle() {
    let mut patches = 0;
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(move |c| {
            patches += 1;
            if patches == 1 {
                let cond = json!([{"type": "PodResizePending", "status": "True", "reason": "Deferred",
                                   "message": "Node didn't have enough resource: cpu"}]);
                Reply::Json(200, resized(c, cond))
            } else {
                Reply::Json(200, resized(c, json!([])))
            }
        }),
    );
    let (mut ctl, next) = enforcing_web(&mock).await;
    let report = ctl.cycle(next).await;
    match report.outcome(NS, "web") {
        Some(Outcome::Deferred(m)) => assert!(m.contains("enough resource"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.resizes().len(), 1, "not retried at once");
    let report = ctl.cycle(next + MIN).await;
    assert_outcome(&report, "web", &Outcome::Resized);
    assert_eq!(mock.resizes().len(), 2);
}

#[tokio::test]
async fn infeasible_is_reported_and_not_retried() {
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
    for k in 1..4 {
        let report = ctl.cycle(next + k * MIN).await;
        match report.outcome(NS, "web") {
            Some(Outcome::Held(why)) => assert!(why.contains("Infeasible"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(mock.resizes().len(), 1);
    assert!(
        mock.calls()
            .iter()
            .any(|c| c.path.ends_with("/events") && c.body["reason"] == "ResizeInfeasible")
    );
}

#[tokio::test]
async fn conflict_then_success_after_a_fresh_get() {
    let mut patches = 0;
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(move |c| match c.method.as_str() {
            "PATCH" => {
                patches += 1;
                if patches == 1 {
                    Reply::Json(
                        409,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                        "reason": "Conflict", "message": "the object has been modified"}),
                    )
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
            _ => Reply::Json(404, json!({"kind": "Status", "code": 404})),
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
}

#[tokio::test]
async fn conflicts_are_bounded_and_reported() {
    let mock = Mock::new(
        usage(&["web"], "1Gi"),
        Box::new(|c| match c.method.as_str() {
            "PATCH" => Reply::Json(
                409,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                "reason": "Conflict", "message": "the object has been modified"}),
            ),
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
}

#[tokio::test]
async fn second_resize_within_five_minutes_is_held_back() {
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
}

#[tokio::test]
async fn memory_never_below_current_usage() {
    let mock = Mock::new(
        usage(&["web", "capped"], "3Gi"),
        Box::new(|c| Reply::Json(200, resized(c, json!([])))),
    );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Enforce));
    let capped = pod(
        "capped",
        json!({"metadata": {"annotations": {"prescient.io/max-memory": "2Gi"}}}),
    );
    seed(&ctl.state(), vec![pod("web", json!({})), capped]);
    let next = learn(&mut ctl).await;
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
}

#[tokio::test]
async fn restart_container_without_disruption_budget_is_skipped() {
    let mock = Mock::new(
        usage(&["db"], "1Gi"),
        Box::new(|c| Reply::Json(200, resized(c, json!([])))),
    );
    let mut ctl = Controller::new(mock.client.clone(), config(Mode::Enforce));
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
}

#[tokio::test]
async fn recommend_mode_writes_status_and_never_patches_pods() {
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
}
