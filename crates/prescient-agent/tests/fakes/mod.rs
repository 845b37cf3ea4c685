//! Fakes of the loop's ports shared by the test files: a clock that jumps
//! to whatever is waited for, an observer of scripted workloads, an
//! in-memory store, and a two-workload configuration.
//!
//! Each test binary uses part of this module.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use prescient_agent::config::{Config, ConfigError, Mode, WorkloadConfig};
use prescient_agent::{
    Agent, Clock, Found, Machine, Observer, Signals, Sink, SinkError, Usage, resolve,
};
use prescient_core::{DemandProfile, HostId, Plan, Sample, SeriesKey, TimestampMs, WorkloadId};
use prescient_linux::CgroupPath;
use prescient_linux::enforce::{AuditRecord, FakeEnforcer, Observed};

pub const T0: TimestampMs = 1_700_000_000_000;
pub const GIB: u64 = 1 << 30;

pub fn p(s: &str) -> CgroupPath {
    CgroupPath::parse(s).unwrap()
}

/// A clock that jumps to whatever is waited for; stops the loop at
/// `stop_at` (as a signal would).
pub struct FakeClock {
    pub now: TimestampMs,
    pub stop_at: Option<(TimestampMs, Signals)>,
}

impl Clock for FakeClock {
    fn now_ms(&self) -> TimestampMs {
        self.now
    }
    fn wait_until(&mut self, t: TimestampMs, _: &Signals) {
        self.now = self.now.max(t);
        if let Some((at, s)) = &self.stop_at
            && self.now >= *at
        {
            s.stop();
        }
    }
}

pub fn clock() -> FakeClock {
    FakeClock {
        now: T0,
        stop_at: None,
    }
}

/// A workload's usage at a time: (CPU cores, memory bytes).
pub type UsageFn = Box<dyn Fn(&str, TimestampMs) -> (f64, f64)>;

/// By default two workloads: `busy` uses 1.5 cores and 1 GiB, `idle` 0.1
/// core and 256 MiB (each with a small wobble in CPU); `usage` may be
/// replaced to script them.
pub struct FakeObserver {
    pub found: Vec<Found>,
    pub discovered: usize,
    pub usage: UsageFn,
    /// Network (received, sent) bytes/s, where scripted (none by default:
    /// a workload sharing the host's network namespace).
    pub net: Option<NetFn>,
    /// Block I/O, where scripted (none by default).
    pub io: Option<IoFn>,
}

/// A workload's block I/O at a time: [io_read, io_write, io_read_ops,
/// io_write_ops], each where counted (a process workload read from
/// `/proc` has no operations).
pub type IoFn = Box<dyn Fn(&str, TimestampMs) -> [Option<f64>; 4]>;

/// A workload's network at a time: (received, sent) bytes/s, if counted.
pub type NetFn = Box<dyn Fn(&str, TimestampMs) -> Option<(f64, f64)>>;

pub fn found(name: &str) -> Found {
    Found {
        id: WorkloadId(name.into()),
        selector: name.into(),
        cgroup: p(&format!("/{name}")),
        labels: BTreeMap::new(),
    }
}

/// The default usage: see [`FakeObserver`].
pub fn steady(cgroup: &str, ts: TimestampMs) -> (f64, f64) {
    let wobble = ((ts / 1000) % 5) as f64 * 0.01;
    if cgroup == "/busy" {
        (1.5 + wobble, GIB as f64)
    } else {
        (0.1 + wobble, (256 << 20) as f64)
    }
}

impl FakeObserver {
    pub fn new() -> Self {
        FakeObserver {
            found: vec![found("busy"), found("idle")],
            discovered: 0,
            usage: Box::new(steady),
            net: None,
            io: None,
        }
    }

    /// With usage scripted by `f` (cgroup, time).
    pub fn with_usage(f: impl Fn(&str, TimestampMs) -> (f64, f64) + 'static) -> Self {
        FakeObserver {
            usage: Box::new(f),
            ..FakeObserver::new()
        }
    }
}

impl Observer for FakeObserver {
    fn discover(&mut self, w: &[WorkloadConfig], _group: bool) -> Result<Vec<Found>, String> {
        self.discovered += 1;
        Ok(self
            .found
            .iter()
            .filter(|f| w.iter().any(|w| w.name == f.selector))
            .cloned()
            .collect())
    }
    fn observe(&mut self, cgroups: &[CgroupPath], ts: TimestampMs) -> Vec<(CgroupPath, Usage)> {
        cgroups
            .iter()
            .filter(|cg| self.found.iter().any(|f| &f.cgroup == *cg))
            .map(|cg| {
                let (cpu, mem) = (self.usage)(cg.as_str(), ts);
                let net = self.net.as_ref().and_then(|f| f(cg.as_str(), ts));
                let [io_read, io_write, io_read_ops, io_write_ops] =
                    self.io.as_ref().map_or([None; 4], |f| f(cg.as_str(), ts));
                (
                    cg.clone(),
                    Usage {
                        cpu_cores: Some(cpu),
                        memory_bytes: Some(mem),
                        net_rx: net.map(|n| n.0),
                        net_tx: net.map(|n| n.1),
                        io_read,
                        io_write,
                        io_read_ops,
                        io_write_ops,
                        ..Usage::default()
                    },
                )
            })
            .collect()
    }
}

#[derive(Default)]
pub struct Stored {
    pub samples: Vec<(SeriesKey, Sample)>,
    pub counters: Vec<(SeriesKey, prescient_store::Counter)>,
    pub plans: Vec<Plan>,
    pub audit: Vec<AuditRecord>,
    pub profiles: usize,
    pub states: BTreeMap<String, (u32, Vec<u8>)>,
    pub meta: usize,
    pub events: Vec<prescient_store::Event>,
    /// Writes fail while set (a full disk).
    pub fail: bool,
    pub failed_writes: usize,
}

/// A store in memory, shared so that it outlives an agent (a restart).
#[derive(Clone, Default)]
pub struct FakeSink(pub Rc<RefCell<Stored>>);

impl FakeSink {
    fn check(&self) -> Result<(), SinkError> {
        let mut s = self.0.borrow_mut();
        if s.fail {
            s.failed_writes += 1;
            Err(SinkError("database or disk is full".into()))
        } else {
            Ok(())
        }
    }
}

impl Sink for FakeSink {
    fn ingest(&mut self, batch: &[(SeriesKey, Sample)]) -> Result<(), SinkError> {
        self.check()?;
        self.0.borrow_mut().samples.extend_from_slice(batch);
        Ok(())
    }
    fn ingest_counters(
        &mut self,
        batch: &[(SeriesKey, prescient_store::Counter)],
    ) -> Result<(), SinkError> {
        self.check()?;
        self.0.borrow_mut().counters.extend_from_slice(batch);
        Ok(())
    }
    fn save_plan(&mut self, plan: &Plan) -> Result<(), SinkError> {
        self.check()?;
        self.0.borrow_mut().plans.push(plan.clone());
        Ok(())
    }
    fn append_audit(&mut self, r: &AuditRecord) -> Result<(), SinkError> {
        self.check()?;
        self.0.borrow_mut().audit.push(r.clone());
        Ok(())
    }
    fn save_profile(
        &mut self,
        _: &SeriesKey,
        _: TimestampMs,
        _: &DemandProfile,
    ) -> Result<(), SinkError> {
        self.check()?;
        self.0.borrow_mut().profiles += 1;
        Ok(())
    }
    fn save_state(&mut self, key: &str, version: u32, blob: &[u8]) -> Result<(), SinkError> {
        self.check()?;
        self.0
            .borrow_mut()
            .states
            .insert(key.into(), (version, blob.to_vec()));
        Ok(())
    }
    fn load_state(&mut self, key: &str) -> Result<Option<(u32, Vec<u8>)>, SinkError> {
        Ok(self.0.borrow().states.get(key).cloned())
    }
    fn latest_plan(&mut self, pool: &HostId) -> Result<Option<Plan>, SinkError> {
        Ok(self
            .0
            .borrow()
            .plans
            .iter()
            .rev()
            .find(|p| &p.pool == pool)
            .cloned())
    }
    fn set_workload_meta(
        &mut self,
        _: &HostId,
        _: &Found,
        _: TimestampMs,
    ) -> Result<(), SinkError> {
        self.check()?;
        self.0.borrow_mut().meta += 1;
        Ok(())
    }
    fn events(&mut self) -> Result<Vec<prescient_store::Event>, SinkError> {
        Ok(self.0.borrow().events.clone())
    }
}

pub const MACHINE: Machine = Machine {
    cpus: 2.0,
    memory_bytes: 4 * GIB,
};

/// Samples every second, rolls up to 5 s, plans every 10 s two steps
/// ahead; one pool of 2 cores and 4 GiB; `busy` (0.25 core guaranteed)
/// and `idle`.
pub fn config(mode: Mode) -> Config {
    let text = format!(
        r#"
[agent]
mode = "{mode}"
host = "h1"
sample_interval = "1s"
forecast_step = "5s"
plan_interval = "10s"
plan_steps = 2
[store]
path = "/nonexistent/unused.db"
flush_interval = "5s"
checkpoint_interval = "20s"
[[pool]]
name = "host"
cpu = 2
memory = "4GiB"
[[workload]]
name = "busy"
cgroup = "/busy"
[workload.cpu]
guarantee = 0.25
[[workload]]
name = "idle"
cgroup = "/idle"
"#
    );
    let c = Config::from_toml(&text, Path::new("test.toml")).unwrap();
    resolve(c, &MACHINE).unwrap()
}

pub type TestAgent = Agent<FakeObserver, FakeSink, FakeEnforcer, FakeClock>;

pub fn fake_enforcer() -> FakeEnforcer {
    let mut e = FakeEnforcer::new();
    for cg in ["/busy", "/idle"] {
        let mut o = Observed::unlimited();
        o.memory_usage = Some(GIB);
        e.add(&p(cg), o);
    }
    e
}

pub fn agent(mode: Mode, sink: &FakeSink) -> TestAgent {
    let enforcer = (mode == Mode::Enforce).then(fake_enforcer);
    Agent::new(
        config(mode),
        MACHINE,
        FakeObserver::new(),
        sink.clone(),
        enforcer,
        clock(),
    )
}

/// Ticks until the clock reaches `until` (without shutting down).
pub fn drive<S: Sink>(a: &mut Agent<FakeObserver, S, FakeEnforcer, FakeClock>, until: TimestampMs) {
    loop {
        let wake = a.tick();
        if wake > until {
            break;
        }
        a.clock_mut().now = wake;
    }
}

pub fn no_reload() -> Result<Config, ConfigError> {
    Err(ConfigError::Read {
        path: "unused".into(),
        source: std::io::Error::other("no reload in this test"),
    })
}

/// What a [`FakeTraining`] was asked: (series, from, to).
pub type TrainingCall = (Vec<SeriesKey>, TimestampMs, TimestampMs);

/// A training source for the learned model: three days of a daily cycle
/// for each series asked (at 5 minutes, scaled by the series' resource),
/// or an error while `fail` is set. Records what it was asked.
pub struct FakeTraining {
    pub calls: std::sync::Arc<std::sync::Mutex<Vec<TrainingCall>>>,
    pub fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FakeTraining {
    pub fn new() -> Self {
        FakeTraining {
            calls: Default::default(),
            fail: Default::default(),
        }
    }

    /// A source sharing this one's record and switch (to hand to an agent).
    pub fn handle(&self) -> Box<FakeTraining> {
        Box::new(FakeTraining {
            calls: std::sync::Arc::clone(&self.calls),
            fail: std::sync::Arc::clone(&self.fail),
        })
    }
}

impl prescient_agent::learned::TrainingSource for FakeTraining {
    fn history(
        &mut self,
        keys: &[SeriesKey],
        from: TimestampMs,
        to: TimestampMs,
    ) -> Result<Vec<prescient_forecast::learned::TrainingSeries>, String> {
        self.calls.lock().unwrap().push((keys.to_vec(), from, to));
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("the store is locked (a test said so)".into());
        }
        Ok(keys
            .iter()
            .map(|k| {
                let scale = if k.resource == prescient_core::Resource::Memory {
                    GIB as f64
                } else {
                    1.0
                };
                prescient_forecast::learned::TrainingSeries {
                    step_ms: 300_000,
                    start_ms: to - 3 * 86_400_000,
                    values: (0..3 * 288)
                        .map(|t| {
                            let tod = (t % 288) as f64 / 288.0;
                            scale * (1.0 + 0.5 * (tod * std::f64::consts::TAU).sin())
                        })
                        .collect(),
                }
            })
            .collect())
    }
}

/// Small trainings, for tests: the agent's settings with fewer trees.
pub fn small_training() -> prescient_forecast::learned::TrainConfig {
    prescient_forecast::learned::TrainConfig {
        rounds: 15,
        ..prescient_agent::learned::agent_train_config()
    }
}
