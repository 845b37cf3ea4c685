//! The control loop: sample → store → forecast → plan → enforce, each at
//! its own interval, every stage timed. I/O goes through the traits of
//! [`crate::ports`], so the whole loop runs on a fake clock, observer,
//! sink and enforcer in tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use prescient_core::{
    HostId, Plan, PlanEntry, Resource, Sample, SeriesKey, TimestampMs, WorkloadId,
};
use prescient_forecast::{DEFAULT_LEVELS, STATE_VERSION, SeriesContext, SeriesForecaster};
use prescient_linux::enforce::{
    Action, Capacity, Desired, Guarantee, Guardrails, MaxStep, PlanStyle, Setting,
    desired_from_plan,
};
use prescient_linux::{CgroupPath, Enforcer, Reconciler};
use prescient_solver::{Demand, Pool, Problem, Spare, Workload, WorkloadResource};
use serde::Serialize;

use crate::config::{Config, ConfigError, Mode, PoolConfig, reference_policy};
use crate::outbox::{Outbox, Record};
use crate::ports::{Clock, Found, Observer, Signals, Sink, Usage};
use crate::timing::StageTimes;

/// The resources planned (those pools have capacities for).
pub const PLANNED: [Resource; 2] = [Resource::Cpu, Resource::Memory];

/// Usage at this share of a hard CPU cap or more counts as capped.
pub const CAPPED_SHARE: f64 = 0.9;

/// What a capped CPU bucket teaches the forecaster: this times the cap.
pub const PROBE_FACTOR: f64 = 1.5;

/// Version of the saved originals' format.
const ORIGINALS_VERSION: u32 = 1;

/// What the machine has: pools without a capacity get these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    /// CPUs.
    pub cpus: f64,
    /// Memory, bytes.
    pub memory_bytes: u64,
}

impl Machine {
    /// This machine: its CPUs available to this process and `MemTotal`.
    pub fn detect() -> Machine {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(1 << 30);
        Machine { cpus, memory_bytes }
    }
}

/// `config` with its pools made explicit (one pool `host` of the whole
/// machine when none is given; missing capacities from `machine`), then
/// validated again: guarantees are checked against the real capacity.
pub fn resolve(mut config: Config, machine: &Machine) -> Result<Config, ConfigError> {
    if config.pools.is_empty() {
        config.pools.push(PoolConfig {
            name: "host".into(),
            parent: None,
            cpu: None,
            memory: None,
            spread_spare: false,
        });
    }
    for p in &mut config.pools {
        if p.cpu.is_none() && p.parent.is_none() {
            p.cpu = Some(machine.cpus);
        }
        if p.memory.is_none() && p.parent.is_none() {
            p.memory = Some(crate::units::ByteSize(machine.memory_bytes));
        }
    }
    config.validate(std::path::Path::new(
        "<config with the machine's capacities>",
    ))?;
    Ok(config)
}

/// Counts of what the loop did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Sampling passes.
    pub sample_passes: u64,
    /// Samples taken (one per workload, resource and pass).
    pub samples: u64,
    /// Plans made (one per root pool and planning pass).
    pub plans: u64,
    /// Planning passes that failed.
    pub plan_errors: u64,
    /// Limits written.
    pub writes: u64,
    /// Limits found changed by someone else.
    pub drift: u64,
    /// Values a guardrail refused.
    pub refused: u64,
    /// Failed reads or writes (retried or dropped).
    pub enforce_failures: u64,
    /// Limits restored at exit or at a restart after a crash.
    pub restored: u64,
    /// Configuration reloads applied.
    pub reloads: u64,
    /// Configuration reloads refused (the old configuration kept).
    pub reloads_refused: u64,
    /// Forecasters resumed from the store.
    pub resumed_forecasters: u64,
    /// Plans resumed from the store.
    pub resumed_plans: u64,
}

/// What a run did, handed back when it stops.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Host name in the store.
    pub host: String,
    /// The mode it ran in.
    pub mode: Mode,
    /// When it started and stopped, ms since the epoch.
    pub started_at: TimestampMs,
    /// When it stopped.
    pub stopped_at: TimestampMs,
    /// The workloads tracked at the end.
    pub workloads: Vec<String>,
    /// Counts.
    pub counters: Counters,
    /// Stage durations.
    pub times: StageTimes,
    /// The last plans (one per root pool).
    pub plans: Vec<Plan>,
    /// Samples written to the store.
    pub stored_samples: u64,
    /// Samples still in memory at exit (the store could not take them).
    pub unwritten_samples: usize,
    /// Samples dropped because memory was full while the store failed.
    pub dropped_samples: u64,
}

/// A tracked workload.
#[derive(Debug, Clone)]
struct Tracked {
    found: Found,
    /// Index into `config.workloads`.
    config: usize,
}

/// One workload-resource series: its rollup bucket and forecaster.
struct SeriesState {
    key: SeriesKey,
    forecaster: SeriesForecaster,
    /// The open rollup bucket: (start, sum, count, max).
    bucket: Option<(TimestampMs, f64, u32, f64)>,
    /// The last raw sample.
    last: Option<f64>,
    /// Learnt since the last checkpoint.
    dirty: bool,
    /// The reference policy's state (when `agent.policy` names one).
    reference: Option<RefState>,
}

/// A reference policy's state for one series, and the number of workloads
/// sharing its pool when it was started (an equal split depends on it).
struct RefState {
    state: Box<dyn prescient_sim::SeriesState>,
    pool_workloads: usize,
}

impl SeriesState {
    /// Adds a raw sample; a completed bucket is handed to the forecaster
    /// (CPU and I/O: its mean; memory: its peak), and to the reference
    /// policy with the allocation in force (`alloc`).
    ///
    /// `cap` is the hard limit the samples were taken under, if any: usage
    /// at (or near) a hard cap only says that demand was at least that,
    /// so the forecaster is told more ([`PROBE_FACTOR`] times the cap),
    /// and the next plan gives more where there is room; without this a
    /// capped workload's forecast would only ever follow its cap down.
    /// Reference policies see the usage as measured, as they would on a
    /// real host.
    fn push(&mut self, ts: TimestampMs, v: f64, step: i64, alloc: f64, cap: Option<f64>) {
        self.last = Some(v);
        let start = ts.div_euclid(step) * step;
        match &mut self.bucket {
            Some((b, sum, n, max)) if *b == start => {
                *sum += v;
                *n += 1;
                *max = max.max(v);
            }
            _ => {
                if let Some((b, sum, n, max)) = self.bucket.take() {
                    let value = if self.key.resource == Resource::Memory {
                        max
                    } else {
                        sum / f64::from(n.max(1))
                    };
                    let learnt = match cap {
                        Some(c) if c.is_finite() && value >= CAPPED_SHARE * c => {
                            value.max(c) * PROBE_FACTOR
                        }
                        _ => value,
                    };
                    self.forecaster.observe(b, learnt);
                    if let Some(r) = &mut self.reference {
                        r.state.observe(b, value, &[alloc]);
                    }
                    self.dirty = true;
                }
                self.bucket = Some((start, v, 1, v));
            }
        }
    }
}

/// The loop's state. Build it with [`Agent::new`], then [`Agent::run`] (or
/// drive it step by step with [`Agent::start`], [`Agent::tick`],
/// [`Agent::shutdown`]).
pub struct Agent<O, S, E: Enforcer, C> {
    config: Config,
    machine: Machine,
    host: HostId,
    observer: O,
    sink: S,
    clock: C,
    reconciler: Option<Reconciler<E>>,
    workloads: BTreeMap<WorkloadId, Tracked>,
    series: BTreeMap<(WorkloadId, Resource), SeriesState>,
    outbox: Outbox,
    plans: Vec<Plan>,
    times: StageTimes,
    counters: Counters,
    started_at: TimestampMs,
    next_sample: TimestampMs,
    next_plan: TimestampMs,
    next_flush: TimestampMs,
    next_checkpoint: TimestampMs,
    levels: Arc<[f64]>,
    /// The reference policy sizing the workloads instead of the solver
    /// (`agent.policy` other than `prescient`).
    reference: Option<Box<dyn prescient_sim::Policy>>,
    /// The last plan's median forecast of the first planned step, per
    /// workload and resource.
    forecasts: BTreeMap<(WorkloadId, Resource), f64>,
    /// The last sample's share of CPU periods throttled, per workload.
    throttled: BTreeMap<WorkloadId, f64>,
}

/// The reference policy `config` names (none for prescient's own; an
/// unknown name, which validation refuses, falls back to it with a log
/// line).
fn reference_of(config: &Config) -> Option<Box<dyn prescient_sim::Policy>> {
    reference_policy(&config.agent.policy).unwrap_or_else(|e| {
        log::error!(
            "agent.policy {:?}: {e}; using prescient",
            config.agent.policy
        );
        None
    })
}

fn guardrails(config: &Config, machine: &Machine) -> Guardrails {
    let mut g = Guardrails::new(Capacity {
        cpu_cores: machine.cpus,
        memory_bytes: machine.memory_bytes,
    });
    g.memory_headroom_bytes = config.enforce.memory_headroom.0;
    g.restore_originals = config.cgroup.restore_on_exit;
    g.max_step = MaxStep {
        cpu_cores: config.enforce.max_cpu_step,
        memory_bytes: config.enforce.max_memory_step.map(|b| b.0),
        ..MaxStep::default()
    };
    g
}

/// The machine's host name (`/proc/sys/kernel/hostname`), or `host`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}

impl<O: Observer, S: Sink, E: Enforcer, C: Clock> Agent<O, S, E, C> {
    /// An agent over `config` (resolved: see [`resolve`]). `enforcer` is
    /// used in enforce mode only; enforce mode without one runs as
    /// recommend, with a log line.
    pub fn new(
        config: Config,
        machine: Machine,
        observer: O,
        sink: S,
        enforcer: Option<E>,
        clock: C,
    ) -> Self {
        let host = HostId(config.agent.host.clone().unwrap_or_else(host_name));
        let reconciler = match (config.agent.mode, enforcer) {
            (Mode::Enforce, Some(e)) => Some(Reconciler::new(e, guardrails(&config, &machine))),
            (Mode::Enforce, None) => {
                log::warn!("enforce mode without a cgroup writer: running in recommend mode");
                None
            }
            (Mode::Recommend, _) => None,
        };
        let now = clock.now_ms();
        let reference = reference_of(&config);
        Agent {
            outbox: Outbox::new(config.store.max_buffered_samples),
            config,
            machine,
            host,
            observer,
            sink,
            clock,
            reconciler,
            workloads: BTreeMap::new(),
            series: BTreeMap::new(),
            plans: Vec::new(),
            times: StageTimes::default(),
            counters: Counters::default(),
            started_at: now,
            next_sample: now,
            next_plan: now,
            next_flush: now,
            next_checkpoint: now,
            levels: Arc::from(&DEFAULT_LEVELS[..]),
            reference,
            forecasts: BTreeMap::new(),
            throttled: BTreeMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether limits are being written.
    pub fn enforcing(&self) -> bool {
        self.reconciler.is_some()
    }

    /// Stage durations so far.
    pub fn times(&self) -> &StageTimes {
        &self.times
    }

    /// Counts so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The last plans.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// The workloads tracked, with their cgroups.
    pub fn workloads(&self) -> Vec<(WorkloadId, CgroupPath)> {
        self.workloads
            .iter()
            .map(|(id, t)| (id.clone(), t.found.cgroup.clone()))
            .collect()
    }

    /// The policy sizing the workloads (`prescient` or a reference
    /// policy's name).
    pub fn policy(&self) -> &str {
        self.reference
            .as_ref()
            .map_or(crate::config::PRESCIENT_POLICY, |p| p.name())
    }

    /// The last sample of a workload's resource (CPU: cores, a rate over
    /// the last sample interval; memory: bytes).
    pub fn last_usage(&self, w: &WorkloadId, r: Resource) -> Option<f64> {
        self.series.get(&(w.clone(), r)).and_then(|s| s.last)
    }

    /// The last plan's median forecast of its first step.
    pub fn forecast(&self, w: &WorkloadId, r: Resource) -> Option<f64> {
        self.forecasts.get(&(w.clone(), r)).copied()
    }

    /// The allocation of the plan in force.
    pub fn allocation(&self, w: &WorkloadId, r: Resource) -> Option<f64> {
        self.plans
            .iter()
            .flat_map(|p| p.entries.iter())
            .find(|e| &e.workload == w && e.resource == r)
            .map(|e| e.allocation)
    }

    /// The share of CPU periods throttled at the last sample.
    pub fn throttled(&self, w: &WorkloadId) -> Option<f64> {
        self.throttled.get(w).copied()
    }

    /// The queue in front of the store.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, mutably (tests make it fail and recover).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// The enforcer, in enforce mode.
    pub fn enforcer(&self) -> Option<&E> {
        self.reconciler.as_ref().map(|r| r.enforcer())
    }

    /// The clock, mutably.
    pub fn clock_mut(&mut self) -> &mut C {
        &mut self.clock
    }

    /// The observer, mutably.
    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }

    /// A forecaster's observation count (tests, status).
    pub fn observations(&self, w: &WorkloadId, r: Resource) -> Option<u64> {
        self.series
            .get(&(w.clone(), r))
            .map(|s| s.forecaster.observations())
    }

    fn state_key(&self, w: &WorkloadId, r: Resource) -> String {
        format!("forecast/{}/{}/{}", self.host, w, r.as_str())
    }

    fn originals_key(&self) -> String {
        format!("agent/originals/{}", self.host)
    }

    /// Resumes from the store (last plans; in enforce mode with
    /// restore-on-exit, the originals a crashed run left unrestored are
    /// written back first), discovers the workloads, and schedules the
    /// first sample now.
    pub fn start(&mut self) {
        let now = self.clock.now_ms();
        self.started_at = now;
        for p in self.root_pools() {
            match self.sink.latest_plan(&HostId(p.clone())) {
                Ok(Some(plan)) => {
                    self.counters.resumed_plans += 1;
                    self.plans.push(plan);
                }
                Ok(None) => {}
                Err(e) => log::warn!("reading the last plan of pool {p}: {e}"),
            }
        }
        if self.reconciler.is_none() {
            for w in self.config.workloads.iter().filter(|w| w.cgroup.is_none()) {
                log::warn!(
                    "workload {}: process selectors group processes into cgroups, which only enforce mode does; not tracked in recommend mode",
                    w.name
                );
            }
        }
        if self.reconciler.is_some() && self.config.cgroup.restore_on_exit {
            self.restore_crashed_originals(now);
        }
        self.discover(now);
        let a = &self.config.agent;
        self.next_sample = now;
        self.next_plan = now + a.plan_interval.as_ms_i64();
        self.next_flush = now + self.config.store.flush_interval.as_ms_i64();
        self.next_checkpoint = now + self.config.store.checkpoint_interval.as_ms_i64();
        if !self.plans.is_empty() {
            log::info!(
                "resumed {} plan(s) from the store, made at {:?}",
                self.plans.len(),
                self.plans.iter().map(|p| p.made_at).collect::<Vec<_>>()
            );
            self.enforce(now);
        }
    }

    /// After a crash (SIGKILL) the limits the previous run changed were
    /// not restored; their originals were saved at each checkpoint: write
    /// them back so that this run starts from (and restores to) the true
    /// originals.
    fn restore_crashed_originals(&mut self, now: TimestampMs) {
        let key = self.originals_key();
        let saved = match self.sink.load_state(&key) {
            Ok(Some((ORIGINALS_VERSION, blob))) => {
                match serde_json::from_slice::<Vec<(CgroupPath, Vec<Setting>)>>(&blob) {
                    Ok(v) => v,
                    Err(e) => {
                        log::warn!("saved original limits ({key}) do not decode: {e}");
                        return;
                    }
                }
            }
            Ok(_) => return,
            Err(e) => {
                log::warn!("reading saved original limits: {e}");
                return;
            }
        };
        let Some(rec) = self.reconciler.as_mut() else {
            return;
        };
        let mut n = 0;
        for (cg, settings) in &saved {
            for s in settings {
                let before = rec.enforcer().read(cg).ok().and_then(|o| o.get(s.knob()));
                match rec.enforcer_mut().write(cg, s) {
                    Ok(()) => {
                        n += 1;
                        let target = rec.enforcer().target(cg, s.knob());
                        self.outbox
                            .push(Record::Audit(prescient_linux::enforce::AuditRecord {
                                ts: now,
                                actor: "agent".into(),
                                action: "cgroup.write".into(),
                                target,
                                before: before.map(|b| b.to_string()),
                                after: Some(s.to_string()),
                                reason: "restart after an unclean stop: original limit restored"
                                    .into(),
                            }));
                    }
                    Err(e) if e.is_vanished() => {}
                    Err(e) => log::warn!("restoring {} of {cg}: {e}", s.knob()),
                }
            }
        }
        if n > 0 {
            log::info!("restored {n} original limit(s) left by an unclean stop");
            self.counters.restored += n;
        }
        self.outbox
            .push(Record::State(key, ORIGINALS_VERSION, b"[]".to_vec()));
    }

    fn root_pools(&self) -> Vec<String> {
        self.config
            .pools
            .iter()
            .filter(|p| p.parent.is_none())
            .map(|p| p.name.clone())
            .collect()
    }

    /// Does whatever is due at the clock's now: sample, plan (with
    /// discovery and enforcement), flush, checkpoint. Returns when the
    /// next thing is due.
    pub fn tick(&mut self) -> TimestampMs {
        let now = self.clock.now_ms();
        if now >= self.next_sample {
            self.sample(now);
            self.next_sample = advance(
                self.next_sample,
                self.config.agent.sample_interval.as_ms_i64(),
                now,
            );
        }
        if now >= self.next_plan {
            self.discover(now);
            self.plan(now);
            self.enforce(now);
            // Plans and audit records go out at once (a restart resumes
            // from them), with the samples queued so far.
            if self.outbox.records_len() > 0 && self.outbox.failing.is_none() {
                self.flush();
            }
            self.next_plan = advance(
                self.next_plan,
                self.config.agent.plan_interval.as_ms_i64(),
                now,
            );
        }
        if now >= self.next_checkpoint {
            self.checkpoint(now);
            self.next_checkpoint = advance(
                self.next_checkpoint,
                self.config.store.checkpoint_interval.as_ms_i64(),
                now,
            );
        }
        if now >= self.next_flush {
            self.flush();
            self.next_flush = advance(
                self.next_flush,
                self.config.store.flush_interval.as_ms_i64(),
                now,
            );
        }
        self.next_sample
            .min(self.next_plan)
            .min(self.next_checkpoint)
            .min(self.next_flush)
    }

    /// Runs until a stop is asked for or `until` (ms since the epoch) is
    /// reached: [`Agent::start`], [`Agent::tick`]s, then
    /// [`Agent::shutdown`]. On a reload request, `reload` is called for
    /// the new configuration (see [`Agent::reload`]).
    pub fn run(
        &mut self,
        signals: &Signals,
        until: Option<TimestampMs>,
        reload: &dyn Fn() -> Result<Config, ConfigError>,
    ) -> RunSummary {
        self.start();
        loop {
            if signals.stop_requested() {
                log::info!("stop requested: shutting down");
                break;
            }
            if signals.take_reload() {
                self.reload(reload());
            }
            if until.is_some_and(|u| self.clock.now_ms() >= u) {
                break;
            }
            let mut wake = self.tick();
            if let Some(u) = until {
                wake = wake.min(u);
            }
            self.clock.wait_until(wake, signals);
        }
        self.shutdown()
    }

    /// Applies a reloaded configuration, or refuses an invalid one with a
    /// log line (the configuration in force is kept). The store, the
    /// cgroup subtree, the mode and the guardrails take a restart to
    /// change: they are kept, with a log line.
    pub fn reload(&mut self, new: Result<Config, ConfigError>) {
        let new = new.and_then(|c| resolve(c, &self.machine));
        let mut new = match new {
            Ok(c) => c,
            Err(e) => {
                self.counters.reloads_refused += 1;
                log::error!("configuration reload refused, keeping the running one: {e}");
                return;
            }
        };
        let old = &self.config;
        if new.store != old.store {
            if new.store.path != old.store.path {
                log::warn!("reload: [store] path changes take a restart; kept");
            }
            new.store.path = old.store.path.clone();
        }
        if new.cgroup != old.cgroup {
            log::warn!("reload: [cgroup] changes take a restart; kept");
            new.cgroup = old.cgroup.clone();
        }
        if new.agent.mode != old.agent.mode {
            log::warn!(
                "reload: a mode change takes a restart; kept {}",
                old.agent.mode
            );
            new.agent.mode = old.agent.mode;
        }
        if new.enforce.memory_headroom != old.enforce.memory_headroom
            || new.enforce.max_cpu_step != old.enforce.max_cpu_step
            || new.enforce.max_memory_step != old.enforce.max_memory_step
        {
            log::warn!("reload: guardrail changes take a restart; kept");
            new.enforce.memory_headroom = old.enforce.memory_headroom;
            new.enforce.max_cpu_step = old.enforce.max_cpu_step;
            new.enforce.max_memory_step = old.enforce.max_memory_step;
        }
        let step_changed = new.agent.forecast_step != old.agent.forecast_step;
        let policy_changed = new.agent.policy != old.agent.policy;
        let now = self.clock.now_ms();
        self.outbox.set_max_samples(new.store.max_buffered_samples);
        self.config = new;
        if step_changed {
            // Forecasters learn at one step; a new step starts them afresh.
            self.checkpoint(now);
            self.series.clear();
        }
        if policy_changed || step_changed {
            self.reference = reference_of(&self.config);
            let keys: Vec<(WorkloadId, Resource)> = self.series.keys().cloned().collect();
            for (w, r) in keys {
                let fresh = self.reference_state(&w, r);
                if let Some(s) = self.series.get_mut(&(w, r)) {
                    s.reference = fresh;
                }
            }
            log::info!("policy: {}", self.policy());
        }
        self.next_sample = now;
        self.next_plan = now + self.config.agent.plan_interval.as_ms_i64();
        self.discover(now);
        self.counters.reloads += 1;
        log::info!(
            "configuration reloaded: {} workload selector(s), {} workload(s) found",
            self.config.workloads.len(),
            self.workloads.len()
        );
    }

    /// Saves the forecasters, restores limits when configured, and writes
    /// out what is queued. Returns the run's summary.
    pub fn shutdown(&mut self) -> RunSummary {
        let now = self.clock.now_ms();
        // Close the open rollup buckets so the last samples are learnt.
        for s in self.series.values_mut() {
            if let Some((b, sum, n, max)) = s.bucket.take() {
                let v = if s.key.resource == Resource::Memory {
                    max
                } else {
                    sum / f64::from(n.max(1))
                };
                s.forecaster.observe(b, v);
                s.dirty = true;
            }
        }
        self.checkpoint(now);
        if let Some(rec) = self.reconciler.as_mut() {
            let t = Instant::now();
            let actions = rec.shutdown(now);
            self.times.record("enforce", t.elapsed());
            let mut restored = 0;
            for a in &actions {
                if let Some(audit) = a.audit() {
                    restored += 1;
                    self.outbox.push(Record::Audit(audit.clone()));
                }
            }
            if restored > 0 {
                log::info!("restored {restored} original limit(s)");
            }
            self.counters.restored += restored;
            // A clean stop leaves nothing to restore after a restart.
            self.outbox.push(Record::State(
                self.originals_key(),
                ORIGINALS_VERSION,
                b"[]".to_vec(),
            ));
        }
        self.flush();
        if self.outbox.samples_len() > 0 {
            log::error!(
                "{} samples and {} records could not be written to the store and are lost",
                self.outbox.samples_len(),
                self.outbox.records_len()
            );
        }
        RunSummary {
            host: self.host.0.clone(),
            mode: if self.reconciler.is_some() {
                Mode::Enforce
            } else {
                Mode::Recommend
            },
            started_at: self.started_at,
            stopped_at: now,
            workloads: self.workloads.keys().map(|w| w.0.clone()).collect(),
            counters: self.counters.clone(),
            times: self.times.clone(),
            plans: self.plans.clone(),
            stored_samples: self.outbox.stored_samples,
            unwritten_samples: self.outbox.samples_len(),
            dropped_samples: self.outbox.dropped_samples,
        }
    }

    fn discover(&mut self, now: TimestampMs) {
        let t = Instant::now();
        let group = self.reconciler.is_some();
        let found = self.observer.discover(&self.config.workloads, group);
        self.times.record("discover", t.elapsed());
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                log::warn!("discovery failed, keeping the workloads known: {e}");
                return;
            }
        };
        let mut next = BTreeMap::new();
        for f in found {
            let Some(ci) = self
                .config
                .workloads
                .iter()
                .position(|w| w.name == f.selector)
            else {
                continue;
            };
            match self.workloads.get(&f.id) {
                Some(t) if t.found == f => {}
                _ => {
                    log::info!("workload {} at {} ({})", f.id, f.cgroup, f.selector);
                    self.outbox
                        .push(Record::Meta(self.host.clone(), f.clone(), now));
                }
            }
            next.insert(
                f.id.clone(),
                Tracked {
                    found: f,
                    config: ci,
                },
            );
        }
        for gone in self.workloads.keys().filter(|k| !next.contains_key(*k)) {
            log::info!("workload {gone} is gone");
        }
        self.workloads = next;
    }

    fn sample(&mut self, now: TimestampMs) {
        let cgroups: Vec<CgroupPath> = self
            .workloads
            .values()
            .map(|t| t.found.cgroup.clone())
            .collect();
        let t = Instant::now();
        let usage = self.observer.observe(&cgroups, now);
        self.times.record("sample", t.elapsed());
        self.counters.sample_passes += 1;
        let by_cgroup: BTreeMap<&CgroupPath, &WorkloadId> = self
            .workloads
            .iter()
            .map(|(id, t)| (&t.found.cgroup, id))
            .collect();
        let t = Instant::now();
        let step = self.config.agent.forecast_step.as_ms_i64().max(1);
        let mut learn: Vec<(WorkloadId, Resource, f64)> = Vec::new();
        for (cg, u) in &usage {
            let Some(&id) = by_cgroup.get(cg) else {
                continue;
            };
            if let Some(t) = u.cpu_throttled.filter(|t| t.is_finite()) {
                self.throttled.insert(id.clone(), t);
            }
            for (r, v) in values(u) {
                let Some(v) = v.filter(|v| v.is_finite() && *v >= 0.0) else {
                    continue;
                };
                let key = SeriesKey {
                    host: self.host.clone(),
                    workload: id.clone(),
                    resource: r,
                };
                self.outbox.push_sample(key, Sample::new(now, v));
                self.counters.samples += 1;
                if PLANNED.contains(&r) {
                    learn.push((id.clone(), r, v));
                }
            }
        }
        for (id, r, v) in learn {
            let alloc = self.allocation(&id, r).unwrap_or(f64::INFINITY);
            let cap = (r == Resource::Cpu
                && self.config.enforce.hard_cpu
                && self.reconciler.is_some()
                && self.reference.is_none())
            .then_some(alloc);
            self.series_state(&id, r).push(now, v, step, alloc, cap);
        }
        self.times.record("rollup", t.elapsed());
    }

    /// The series' state, resumed from the store or new.
    fn series_state(&mut self, w: &WorkloadId, r: Resource) -> &mut SeriesState {
        let k = (w.clone(), r);
        if !self.series.contains_key(&k) {
            let step = self.config.agent.forecast_step.as_ms_i64().max(1);
            let key = self.state_key(w, r);
            let resumed = match self.sink.load_state(&key) {
                Ok(Some((v, blob))) if v == u32::from(STATE_VERSION) => {
                    match SeriesForecaster::from_bytes(&blob) {
                        Ok(f) if f.context().step_ms == step => Some(f),
                        Ok(_) => {
                            log::info!("{key}: saved at another forecast step; starting afresh");
                            None
                        }
                        Err(e) => {
                            log::warn!("{key}: {e}; starting afresh");
                            None
                        }
                    }
                }
                Ok(_) => None,
                Err(e) => {
                    log::warn!("{key}: reading saved state: {e}; starting afresh");
                    None
                }
            };
            if resumed.is_some() {
                self.counters.resumed_forecasters += 1;
            }
            let reference = self.reference_state(w, r);
            let forecaster = resumed.unwrap_or_else(|| {
                SeriesForecaster::new(
                    SeriesContext {
                        step_ms: step,
                        resource: r,
                    },
                    &[],
                )
            });
            self.series.insert(
                k.clone(),
                SeriesState {
                    key: SeriesKey {
                        host: self.host.clone(),
                        workload: w.clone(),
                        resource: r,
                    },
                    forecaster,
                    bucket: None,
                    last: None,
                    dirty: false,
                    reference,
                },
            );
        }
        self.series.get_mut(&k).expect("inserted above")
    }

    /// The tracked workloads in the pool of workload `w`.
    fn pool_workloads(&self, w: &WorkloadId) -> (Option<usize>, usize) {
        let pool_of = |t: &Tracked| self.config.pool_index(&self.config.workloads[t.config]);
        let Some(pool) = self.workloads.get(w).and_then(pool_of) else {
            return (None, self.workloads.len().max(1));
        };
        let n = self
            .workloads
            .values()
            .filter(|t| pool_of(t) == Some(pool))
            .count();
        (Some(pool), n.max(1))
    }

    /// A fresh state of the reference policy for `w`'s `r`, if one sizes
    /// the workloads.
    fn reference_state(&self, w: &WorkloadId, r: Resource) -> Option<RefState> {
        let policy = self.reference.as_ref()?;
        let (pool, n) = self.pool_workloads(w);
        let capacity = pool.and_then(|p| {
            let p = &self.config.pools[p];
            match r {
                Resource::Cpu => p.cpu,
                Resource::Memory => p.memory.map(|m| m.0 as f64),
                _ => None,
            }
        });
        let key = SeriesKey {
            host: self.host.clone(),
            workload: w.clone(),
            resource: r,
        };
        let info = prescient_sim::SeriesInfo {
            key: &key,
            step_ms: self.config.agent.forecast_step.as_ms_i64().max(1),
            warmup_steps: 0,
            host_capacity: capacity,
            host_workloads: n,
        };
        if let Err(why) = policy.check(&info) {
            log::warn!("policy {} cannot size {key}: {why}", policy.name());
            return None;
        }
        Some(RefState {
            state: policy.start(&info, &[policy.knob().default]),
            pool_workloads: n,
        })
    }

    /// Plans by the reference policy: each series' recommendation for the
    /// next step, scaled down in proportion where a pool's allocations
    /// would exceed its capacity (as `prescient replay` does).
    fn reference_plans(&mut self, now: TimestampMs, problem: &Problem) -> Vec<Plan> {
        let Some(mut policy) = self.reference.take() else {
            return Vec::new();
        };
        let name = policy.name().to_string();
        let mut plans: Vec<Plan> = Vec::new();
        for (pi, pool) in problem.pools.iter().enumerate() {
            for r in PLANNED {
                let ids: Vec<WorkloadId> = problem
                    .workloads
                    .iter()
                    .filter(|w| w.pool == pi && w.resources.iter().any(|x| x.resource == r))
                    .map(|w| w.name.clone())
                    .collect();
                let mut requests = Vec::with_capacity(ids.len());
                for id in &ids {
                    let stale = self.series.get(&(id.clone(), r)).is_none_or(|s| {
                        s.reference.as_ref().map(|x| x.pool_workloads) != Some(ids.len())
                    });
                    if stale {
                        // A new series, or the pool's workloads changed (an
                        // equal split depends on how many share it).
                        self.reference = Some(policy);
                        let fresh = self.reference_state(id, r);
                        policy = self.reference.take().expect("just put back");
                        if let Some(s) = self.series.get_mut(&(id.clone(), r)) {
                            s.reference = fresh;
                        }
                    }
                    let mut out = [f64::NAN];
                    if let Some(rs) = self
                        .series
                        .get_mut(&(id.clone(), r))
                        .and_then(|s| s.reference.as_mut())
                    {
                        rs.state.recommend(&mut out);
                    }
                    requests.push(if out[0].is_finite() {
                        out[0].max(0.0)
                    } else {
                        0.0
                    });
                }
                let mut granted = requests.clone();
                let capacity = pool.capacity.get(&r).copied();
                if let Some(c) = capacity {
                    policy.arbitrate(&requests, c, &mut granted);
                }
                let root = root_of(problem, pi);
                let plan = match plans
                    .iter()
                    .position(|p| p.pool.0 == problem.pools[root].name)
                {
                    Some(i) => &mut plans[i],
                    None => {
                        plans.push(Plan {
                            made_at: now,
                            pool: HostId(problem.pools[root].name.clone()),
                            degraded: false,
                            entries: Vec::new(),
                        });
                        plans.last_mut().expect("just pushed")
                    }
                };
                for ((id, asked), got) in ids.iter().zip(&requests).zip(&granted) {
                    let mut reason = format!("{name}: {asked:.4}");
                    if got < asked {
                        reason.push_str(&format!(
                            ", scaled down to {got:.4} to fit pool {}'s capacity",
                            pool.name
                        ));
                    }
                    plan.entries.push(PlanEntry {
                        workload: id.clone(),
                        resource: r,
                        allocation: *got,
                        // Not estimated by a reference policy.
                        coverage: 0.0,
                        expected_unmet: 0.0,
                        reason,
                    });
                }
            }
        }
        self.reference = Some(policy);
        plans
    }

    fn plan(&mut self, now: TimestampMs) {
        if self.workloads.is_empty() {
            return;
        }
        let t = Instant::now();
        let step = self.config.agent.forecast_step.as_ms_i64().max(1);
        let horizon = self.config.agent.plan_steps.max(1) as usize;
        let start = (now.div_euclid(step) + 1) * step;
        let mut problem = Problem::new(now);
        problem.steps = horizon;
        if let Some(u) = self.config.agent.cpu_unit {
            problem.units.insert(Resource::Cpu, u);
        }
        for p in &self.config.pools {
            let mut capacity = BTreeMap::new();
            if let Some(c) = p.cpu {
                capacity.insert(Resource::Cpu, c);
            }
            if let Some(m) = p.memory {
                capacity.insert(Resource::Memory, m.0 as f64);
            }
            problem.pools.push(Pool {
                name: p.name.clone(),
                parent: p
                    .parent
                    .as_ref()
                    .and_then(|n| self.config.pools.iter().position(|q| &q.name == n)),
                capacity,
                spare: if p.spread_spare {
                    Spare::Spread
                } else {
                    Spare::Keep
                },
                ..Pool::default()
            });
        }
        let current: BTreeMap<(&WorkloadId, Resource), f64> = self
            .plans
            .iter()
            .flat_map(|p| p.entries.iter())
            .map(|e| ((&e.workload, e.resource), e.allocation))
            .collect();
        let mut profiles = Vec::new();
        let mut forecasts = BTreeMap::new();
        for (id, tr) in &self.workloads {
            let wc = &self.config.workloads[tr.config];
            let Some(pool) = self.config.pool_index(wc) else {
                continue;
            };
            let mut resources = Vec::new();
            for r in PLANNED {
                let Some(s) = self.series.get(&(id.clone(), r)) else {
                    continue;
                };
                let demand = if s.forecaster.observations() > 0 {
                    match s.forecaster.forecast(start, horizon, &self.levels) {
                        Ok(p) => {
                            if let Some(q) = p.step(0) {
                                forecasts.insert((id.clone(), r), q.quantile(0.5));
                            }
                            let d = Demand::from_profile(&p);
                            profiles.push((s.key.clone(), p));
                            d
                        }
                        Err(e) => {
                            log::warn!("forecast of {}: {e}", s.key);
                            continue;
                        }
                    }
                } else if let Some(v) = s.last {
                    // Before the first rollup step: the last sample, held.
                    Demand {
                        start,
                        step_ms: step,
                        levels: Arc::from(&[0.5][..]),
                        values: vec![v; horizon],
                    }
                } else {
                    continue;
                };
                resources.push(WorkloadResource {
                    resource: r,
                    demand,
                    policy: wc.policy(r),
                    current: current.get(&(id, r)).copied().filter(|c| c.is_finite()),
                    current_tier: None,
                });
            }
            if !resources.is_empty() {
                problem.workloads.push(Workload {
                    name: id.clone(),
                    pool,
                    resources,
                });
            }
        }
        self.times.record("forecast", t.elapsed());
        self.forecasts = forecasts;
        for (k, p) in profiles {
            self.outbox.push(Record::Profile(k, now, p));
        }
        if problem.workloads.is_empty() {
            return;
        }
        let t = Instant::now();
        let solved = if self.reference.is_some() {
            Ok(self.reference_plans(now, &problem))
        } else {
            prescient_solver::solve(&problem).map(|sol| sol.plans(&problem))
        };
        self.times.record("solve", t.elapsed());
        match solved {
            Ok(plans) => {
                if self.counters.plans == 0 {
                    for p in &plans {
                        log::info!(
                            "first plan of pool {}: {} entries{}",
                            p.pool,
                            p.entries.len(),
                            if p.degraded { " (degraded)" } else { "" }
                        );
                    }
                }
                for p in &plans {
                    self.outbox.push(Record::Plan(p.clone()));
                }
                self.counters.plans += plans.len() as u64;
                // Keep the last plan of pools that had no workloads this time.
                let mut merged = plans;
                for old in self.plans.drain(..) {
                    if !merged.iter().any(|p| p.pool == old.pool) {
                        merged.push(old);
                    }
                }
                self.plans = merged;
            }
            Err(e) => {
                self.counters.plan_errors += 1;
                log::error!("planning failed: {e}");
            }
        }
    }

    fn enforce(&mut self, now: TimestampMs) {
        let Some(rec) = self.reconciler.as_mut() else {
            return;
        };
        let t = Instant::now();
        let mut targets = BTreeMap::new();
        for (id, tr) in &self.workloads {
            let wc = &self.config.workloads[tr.config];
            targets.insert(
                id.clone(),
                (
                    tr.found.cgroup.clone(),
                    Guarantee {
                        cpu_cores: wc.cpu.guarantee,
                        memory_bytes: wc.memory.guarantee.0,
                        ..Guarantee::default()
                    },
                ),
            );
        }
        let style = PlanStyle {
            hard_cpu: self.config.enforce.hard_cpu,
            memory_max_factor: self.config.enforce.memory_max_factor,
            ..PlanStyle::default()
        };
        let mut desired: BTreeMap<CgroupPath, Desired> = BTreeMap::new();
        for p in &self.plans {
            desired.extend(desired_from_plan(p, &targets, &style));
        }
        let actions = rec.reconcile(&desired, now);
        let originals: Vec<(CgroupPath, Vec<Setting>)> = rec.originals().into_iter().collect();
        self.times.record("enforce", t.elapsed());
        for a in actions {
            match a {
                Action::Wrote { audit, .. } => {
                    self.counters.writes += 1;
                    self.outbox.push(Record::Audit(audit));
                }
                Action::Drift {
                    cgroup,
                    knob,
                    expected,
                    found,
                } => {
                    self.counters.drift += 1;
                    log::warn!(
                        "drift: {knob} of {cgroup} is {found}, set to {expected} by the agent; setting it back"
                    );
                }
                Action::Refused {
                    cgroup,
                    knob,
                    error,
                } => {
                    self.counters.refused += 1;
                    log::info!("guardrail: {knob} of {cgroup} not written: {error}");
                }
                Action::Failed {
                    cgroup,
                    knob,
                    error,
                    attempt,
                    ..
                } => {
                    self.counters.enforce_failures += 1;
                    log::warn!(
                        "writing {} of {cgroup} failed (attempt {attempt}, will retry): {error}",
                        knob.map(|k| k.to_string())
                            .unwrap_or_else(|| "limits".into())
                    );
                }
                Action::Dropped {
                    cgroup,
                    knob,
                    error,
                } => {
                    self.counters.enforce_failures += 1;
                    log::warn!(
                        "gave up on {} of {cgroup}: {error}",
                        knob.map(|k| k.to_string())
                            .unwrap_or_else(|| "limits".into())
                    );
                }
            }
        }
        if self.config.cgroup.restore_on_exit && !originals.is_empty() {
            // Saved with every change of the set, so that a restart after
            // a crash can put them back.
            if let Ok(blob) = serde_json::to_vec(&originals) {
                self.outbox
                    .push(Record::State(self.originals_key(), ORIGINALS_VERSION, blob));
            }
        }
    }

    fn checkpoint(&mut self, _now: TimestampMs) {
        let t = Instant::now();
        let mut states = Vec::new();
        for ((w, r), s) in &mut self.series {
            if s.dirty {
                s.dirty = false;
                states.push((
                    format!("forecast/{}/{}/{}", self.host, w, r.as_str()),
                    s.forecaster.to_bytes(),
                ));
            }
        }
        for (k, b) in states {
            self.outbox
                .push(Record::State(k, u32::from(STATE_VERSION), b));
        }
        self.times.record("checkpoint", t.elapsed());
    }

    fn flush(&mut self) {
        let t = Instant::now();
        let _ = self.outbox.flush(&mut self.sink);
        self.times.record("flush", t.elapsed());
    }
}

/// The root of pool `p` of `problem`.
fn root_of(problem: &Problem, mut p: usize) -> usize {
    for _ in 0..problem.pools.len() {
        match problem.pools.get(p).and_then(|x| x.parent) {
            Some(parent) => p = parent,
            None => break,
        }
    }
    p
}

/// The usage of one sample as (resource, value).
fn values(u: &Usage) -> [(Resource, Option<f64>); 4] {
    [
        (Resource::Cpu, u.cpu_cores),
        (Resource::Memory, u.memory_bytes),
        (Resource::IoRead, u.io_read),
        (Resource::IoWrite, u.io_write),
    ]
}

/// The next tick after `prev` at `interval`; ticks missed while busy are
/// skipped rather than run in a burst.
fn advance(prev: TimestampMs, interval: i64, now: TimestampMs) -> TimestampMs {
    let next = prev + interval.max(1);
    if next <= now {
        now + interval.max(1)
    } else {
        next
    }
}
