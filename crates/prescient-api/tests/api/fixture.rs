//! A real server on loopback over a temp store filled through
//! `prescient_store::Store`, and a thread standing in for the agent loop:
//! it publishes a `LiveView` and answers the commands sent to its port.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use prescient_agent::config::{Config, Mode, Role, TokenConfig};
use prescient_agent::control::{
    AlertState, AlertView, AnomalyView, CONFIG_TEXT_NAME, CalibrationView, Command, ConfigChange,
    Control, ControlPort, LiveView, ModelWeight, PoolView, RequestState, RequestView, ResourceView,
    StoreView, WorkloadView,
};
use prescient_api::{AppState, Server, hash_token, serve_state};
use prescient_core::{
    DemandProfile, HostId, Plan, PlanEntry, Resource, Sample, SeriesKey, WorkloadId,
};
use prescient_store::{AuditEntry, NewEvent, Store};

/// The start of the stored data: an hour boundary.
pub const T0: i64 = 1_699_999_200_000;
/// Two hours of samples, every 5 s.
pub const SAMPLES: i64 = 1440;
pub const STEP_MS: i64 = 5_000;
/// The view's time: the last sample's.
pub const NOW: i64 = T0 + (SAMPLES - 1) * STEP_MS;
pub const HOST: &str = "h1";
pub const POOL: &str = "pool";

pub const VIEWER: &str = "viewer-secret";
pub const OPERATOR: &str = "operator-secret";
pub const ADMIN: &str = "admin-secret";

/// CPU sample `i` (cores).
pub fn cpu(i: i64) -> f64 {
    1.0 + (i % 12) as f64 * 0.1
}

/// Memory sample `i` (bytes).
pub fn memory(i: i64) -> f64 {
    1e9 + i as f64 * 1000.0
}

/// Plan `k` (every 10 min): web's CPU allocation.
pub fn web_cpu_allocation(k: i64) -> f64 {
    2.0 + 0.5 * k as f64
}

pub const PLAN_EVERY_MS: i64 = 600_000;
pub const PLANS: i64 = 12;
pub const LEVELS: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Profile `k`'s first step (made with plan `k`, starting 10 s later).
pub fn profile_values(k: i64) -> Vec<f64> {
    let v = 1.0 + k as f64 * 0.1;
    vec![v, v * 1.2, v * 1.3, v * 1.5]
}

/// The config of a test server: its store, port 0, and (with `tokens`) a
/// viewer, an operator (`ops`) and an admin (`root`) token.
pub fn config(dir: &std::path::Path, tokens: bool) -> Config {
    let mut c = Config::default();
    c.store.path = dir.join("api.db");
    c.api.listen = "127.0.0.1:0".into();
    c.api.rate_limit = 0;
    if tokens {
        c.api.tokens = vec![
            token("watcher", Role::Viewer, VIEWER),
            token("ops", Role::Operator, OPERATOR),
            token("root", Role::Admin, ADMIN),
        ];
    }
    c
}

fn token(name: &str, role: Role, secret: &str) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        role,
        sha256: hash_token(secret),
    }
}

/// Fills the store: two workloads (web, db) with two hours of CPU and
/// memory samples, 12 profiles and plans, two events and an audit entry.
pub fn fill_store(path: &std::path::Path) {
    let mut s = Store::open(path).unwrap();
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "web".to_string());
    s.set_workload_meta(
        &HostId(HOST.into()),
        &WorkloadId("web".into()),
        "web.slice",
        &labels,
        "test",
        T0,
    )
    .unwrap();
    let mut batch = Vec::new();
    for w in ["web", "db"] {
        let c = s
            .series_id(&SeriesKey::new(HOST, w, Resource::Cpu))
            .unwrap();
        let m = s
            .series_id(&SeriesKey::new(HOST, w, Resource::Memory))
            .unwrap();
        for i in 0..SAMPLES {
            let ts = T0 + i * STEP_MS;
            batch.push((c, Sample::new(ts, cpu(i))));
            batch.push((m, Sample::new(ts, memory(i))));
        }
    }
    s.ingest(&batch).unwrap();
    let web_cpu = s
        .series_id(&SeriesKey::new(HOST, "web", Resource::Cpu))
        .unwrap();
    for k in 0..PLANS {
        let made = T0 + k * PLAN_EVERY_MS;
        let mut values = profile_values(k);
        values.extend(profile_values(k).iter().map(|v| v * 2.0));
        let p = DemandProfile::new(made + 10_000, 10_000, LEVELS.to_vec(), values).unwrap();
        s.save_profile(web_cpu, made, &p).unwrap();
        s.save_plan(&plan(made, web_cpu_allocation(k))).unwrap();
    }
    for (kind, selector, start, end) in [
        ("release", "web", T0 + 1_800_000, T0 + 2_400_000),
        ("maintenance", "db", T0 + 600_000, T0 + 900_000),
    ] {
        s.create_event(&NewEvent {
            kind: kind.into(),
            selector: selector.into(),
            start,
            end,
            effect: serde_json::json!({ "multiply": 2.0, "resource": "cpu" }),
            created_by: "test".into(),
            created_at: T0,
        })
        .unwrap();
    }
    s.append_audit(&AuditEntry {
        ts: T0,
        actor: "agent".into(),
        action: "cgroup.write".into(),
        target: "web/cpu.max".into(),
        before: None,
        after: Some("200000 100000".into()),
        reason: "plan".into(),
    })
    .unwrap();
}

fn plan(made_at: i64, web_cpu: f64) -> Plan {
    let entry = |w: &str, r, a| PlanEntry {
        workload: WorkloadId(w.into()),
        resource: r,
        allocation: a,
        coverage: 0.95,
        expected_unmet: 0.01,
        reason: format!("forecast p95 for {w}"),
    };
    Plan {
        made_at,
        pool: HostId(POOL.into()),
        degraded: false,
        entries: vec![
            entry("web", Resource::Cpu, web_cpu),
            entry("web", Resource::Memory, 2e9),
            entry("db", Resource::Cpu, 1.0),
        ],
    }
}

fn resource(r: Resource, usage: f64, allocation: f64) -> ResourceView {
    ResourceView {
        resource: r,
        usage: Some(usage),
        allocation: Some(allocation),
        slo_quantile: 0.95,
        forecast: LEVELS.iter().map(|&l| (l, usage * (1.0 + l))).collect(),
        coverage: Some(0.97),
        observations: 720,
        weights: vec![
            ModelWeight {
                model: "ets".into(),
                weight: 0.75,
            },
            ModelWeight {
                model: "seasonal".into(),
                weight: 0.25,
            },
        ],
        calibration: LEVELS
            .iter()
            .map(|&l| CalibrationView {
                level: l,
                adjusted_level: l,
                realised: Some(l),
            })
            .collect(),
    }
}

/// The view the stand-in loop publishes first.
pub fn view() -> LiveView {
    let mut labels = BTreeMap::new();
    labels.insert("app".to_string(), "web".to_string());
    let workload = |id: &str, labels: BTreeMap<String, String>| WorkloadView {
        id: id.into(),
        selector: format!("{id}.slice"),
        cgroup: format!("/{id}.slice"),
        pool: Some(POOL.into()),
        labels,
        resources: vec![
            resource(Resource::Cpu, cpu(SAMPLES - 1), 7.5),
            resource(Resource::Memory, memory(SAMPLES - 1), 2e9),
        ],
    };
    LiveView {
        host: HOST.into(),
        mode: Mode::Recommend,
        policy: "prescient".into(),
        started_at: T0,
        updated_at: NOW,
        pools: vec![PoolView {
            name: POOL.into(),
            parent: None,
            capacity: [(Resource::Cpu, 16.0), (Resource::Memory, 64e9)]
                .into_iter()
                .collect(),
        }],
        workloads: vec![workload("web", labels), workload("db", BTreeMap::new())],
        plans: vec![plan(
            T0 + (PLANS - 1) * PLAN_EVERY_MS,
            web_cpu_allocation(PLANS - 1),
        )],
        anomalies: vec![AnomalyView {
            at: T0 + 3_600_000,
            workload: "web".into(),
            resource: Resource::Cpu,
            kind: "level_shift".into(),
            reason: "mean rose from 1.5 to 3 cores".into(),
        }],
        alerts: vec![AlertView {
            id: "coverage/web".into(),
            rule: "coverage".into(),
            severity: "warning".into(),
            state: AlertState::Firing,
            subject: "web".into(),
            message: "coverage 0.80 under the SLO 0.95".into(),
            since: T0,
            resolved_at: None,
        }],
        requests: Vec::new(),
        store: StoreView {
            path: "api.db".into(),
            stored_samples: 5760,
            ..StoreView::default()
        },
        ..LiveView::default()
    }
}

/// What the stand-in loop was asked, in order (`replan by root`, ...).
pub type Log = Arc<Mutex<Vec<String>>>;

/// The stand-in loop: answers commands every 2 ms until dropped.
pub struct FakeLoop {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub log: Log,
}

impl FakeLoop {
    /// Starts it on `port`; with `mute`, it takes commands but never
    /// answers (the server's timeout path).
    pub fn start(port: ControlPort, mute: bool) -> FakeLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let log: Log = Arc::default();
        let (s, l) = (Arc::clone(&stop), Arc::clone(&log));
        let thread = std::thread::spawn(move || {
            let mut view = view();
            port.publish(view.clone());
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                for c in port.drain() {
                    if mute {
                        // Kept (not dropped) so the server sees no answer
                        // rather than a closed channel.
                        held.push(c);
                        continue;
                    }
                    answer(c, &mut view, &l);
                    port.publish(view.clone());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        FakeLoop {
            stop,
            thread: Some(thread),
            log,
        }
    }

    pub fn commands(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(c: Command, view: &mut LiveView, log: &Log) {
    let mut log = log.lock().unwrap();
    match c {
        Command::Replan { by } => log.push(format!("replan by {}", by.name)),
        Command::EventsChanged { by } => log.push(format!("events by {}", by.name)),
        Command::SetMode { mode, by, reply } => {
            log.push(format!("mode {mode} by {}", by.name));
            view.mode = mode;
            let _ = reply.send(Ok(mode));
        }
        Command::Request { request, by, reply } => {
            log.push(format!("request {} by {}", request.workload, by.name));
            if !view.workloads.iter().any(|w| w.id == request.workload) {
                let _ = reply.send(Err(format!("unknown workload {:?}", request.workload)));
                return;
            }
            let r = RequestView {
                id: view.requests.len() as u64 + 1,
                until: view.updated_at + request.duration_s as i64 * 1000,
                request,
                requested_by: by,
                created_at: view.updated_at,
                state: RequestState::Waiting,
                granted: None,
                reason: String::new(),
            };
            view.requests.push(r.clone());
            let _ = reply.send(Ok(r));
        }
        Command::SetConfig { toml, by, reply } => {
            log.push(format!("config by {}", by.name));
            // Read as the agent's default loader reads it; the real path
            // (layers, reload rules) is tested against a real agent in
            // config.rs.
            let read =
                Config::from_toml(&toml, std::path::Path::new(CONFIG_TEXT_NAME)).and_then(|c| {
                    c.validate(std::path::Path::new(CONFIG_TEXT_NAME))
                        .map(|()| c)
                });
            match read {
                Ok(c) => {
                    view.config = Some(Arc::new(c));
                    let _ = reply.send(Ok(ConfigChange {
                        changed: vec!["agent".into()],
                        kept: Vec::new(),
                    }));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        Command::CancelRequest { id, by, reply } => {
            log.push(format!("cancel {id} by {}", by.name));
            match view.requests.iter_mut().find(|r| r.id == id) {
                Some(r) if r.state != RequestState::Cancelled => {
                    r.state = RequestState::Cancelled;
                    let _ = reply.send(Ok(r.clone()));
                }
                Some(_) => {
                    let _ = reply.send(Err(format!("request {id} is already cancelled")));
                }
                None => {
                    let _ = reply.send(Err(format!("no request {id}")));
                }
            }
        }
    }
}

/// An HTTP client (rustls needs its crypto provider chosen once per
/// process: ring, as the server uses).
pub fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A store, a stand-in loop and a server on loopback.
pub struct Fixture {
    // Dropped in this order: server, loop, then the directory.
    pub server: Server,
    pub fake: FakeLoop,
    pub _dir: tempfile::TempDir,
    pub http: reqwest::blocking::Client,
}

impl Fixture {
    /// With tokens, the default limits.
    pub fn new() -> Fixture {
        Fixture::with(true, |_| {})
    }

    /// With or without tokens; `adjust` may change the config first.
    pub fn with(tokens: bool, adjust: impl FnOnce(&mut Config)) -> Fixture {
        Fixture::build(tokens, false, adjust, |_| {})
    }

    pub fn build(
        tokens: bool,
        mute: bool,
        adjust: impl FnOnce(&mut Config),
        adjust_state: impl FnOnce(&mut AppState),
    ) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path(), tokens);
        adjust(&mut c);
        fill_store(&c.store.path);
        let (handle, port) = Control::new();
        let fake = FakeLoop::start(port, mute);
        // Wait for the first view, as a server started beside a loop would
        // see it after the loop's first pass.
        while handle.view().host.is_empty() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut state = AppState::new(&c, handle).unwrap();
        adjust_state(&mut state);
        let server = serve_state(state).unwrap();
        Fixture {
            server,
            fake,
            _dir: dir,
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// A request with `token` as the bearer (none: no header).
    pub fn req(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::blocking::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
        self.req(reqwest::Method::GET, path, token).send().unwrap()
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self.get(path, Some(VIEWER));
        assert_eq!(r.status(), 200, "GET {path}: {}", r.text().unwrap());
        r.json().unwrap()
    }

    pub fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::blocking::Response {
        self.req(method, path, token).json(body).send().unwrap()
    }

    /// The audit log.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        self.get_json("/api/v1/audit?limit=1000")
            .as_array()
            .unwrap()
            .clone()
    }
}
