//! The real agent loop on a recorded trace instead of live cgroups.
//!
//! [`run`] loads a trace (the long CSV of prescient-trace: `data/sample/`,
//! `../shared/traces/`), presents each of its (host, workload) pairs as a
//! workload through a [`TraceObserver`], and runs the agent's loop on a
//! [`TraceClock`] that starts at the trace's first timestamp and runs at a
//! speed factor (600: ten minutes of trace per second). Everything else is
//! the live agent's: the store, the forecasters, the solver, the control
//! channel the API server reads. Nothing is enforced: a replay always runs
//! in recommend mode, with no cgroup writer (a `SetMode` to enforce is
//! answered with the loop's own "no enforcer" error).
//!
//! # What the trace becomes
//!
//! - Each (host, workload) of the trace is a workload with id
//!   `HOST.WORKLOAD`, cgroup `/HOST/WORKLOAD` and the labels `trace_host`
//!   and `trace_workload`. CPU (cores) and memory (bytes) are observed, the
//!   trace's units; other resources of the trace are not.
//! - At trace time `t` a workload's usage is the value of the trace step
//!   that covers `t` (`[timestamp, timestamp + step)`), or nothing when the
//!   trace has no value there.
//! - Times are the trace's own: milliseconds from the trace's start (the
//!   store's convention for replayed data), not wall time.
//!
//! # The configuration in replay mode
//!
//! - `[[workload]]` selectors with a `cgroup` glob are matched against the
//!   replayed cgroup paths, `HOST/WORKLOAD` (so `cgroup = "pl000/*"` picks
//!   the VMs of host `pl000`); the first that matches gives a workload its
//!   policy and pool, and one that matches no selector is not tracked.
//!   Process selectors never match a trace and are ignored. With no
//!   `cgroup` selector at all, one selector per trace host is made (named
//!   after the host, `cgroup = "HOST/*"`).
//! - With no `[[pool]]`, one pool per trace host is made, each workload of
//!   that host in it, with the host's peak total usage (CPU rounded up to
//!   whole cores, memory to whole GiB) as capacity: the smallest machine
//!   that held the trace. Configured pools keep their capacities; those left
//!   out get the peak total of all the replayed workloads.
//! - Intervals (`sample_interval`, `forecast_step`, `plan_interval`,
//!   `flush_interval`, `checkpoint_interval`) are in trace time; those
//!   shorter than the trace's step are raised to it, since the trace holds
//!   one value per step.
//! - `agent.host` defaults to `replay-STEM` (`replay-gcd` for
//!   `gcd.csv.gz`); the store must not already hold that host's series (a
//!   second replay would resume forecasters from the end of the first).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prescient_core::{Resource, TimestampMs, WorkloadId};
use prescient_linux::glob::Glob;
use prescient_linux::{CgroupPath, Enforcer};
use prescient_sim::{LoadError, ReplayTrace};

use crate::AgentError;
use crate::agent::{Agent, Machine, RunSummary, resolve};
use crate::config::{Config, ConfigError, ConfigSource, Mode, PoolConfig, WorkloadConfig};
use crate::control::{CONFIG_TEXT_NAME, ControlPort};
use crate::ports::{Clock, Found, Observer, Signals, StoreSink, Usage};
use crate::units::{ByteSize, Interval};

/// The resources a replay observes.
const OBSERVED: [Resource; 2] = [Resource::Cpu, Resource::Memory];

const GIB: f64 = (1u64 << 30) as f64;

/// How a replay runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOptions {
    /// Trace time per wall time: 600 replays ten minutes of trace per
    /// second. `f64::INFINITY` runs as fast as the loop goes (the clock
    /// jumps to whatever the loop waits for).
    pub speed: f64,
    /// Only the first N workloads, in the order the trace lists them.
    pub max_workloads: Option<usize>,
    /// Only the workloads of this trace host.
    pub host: Option<String>,
    /// Replay only this much of the trace from its start (`None`: to its
    /// end).
    pub span: Option<Duration>,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            speed: 600.0,
            max_workloads: None,
            host: None,
            span: None,
        }
    }
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The trace could not be read.
    #[error("replay: {0}")]
    Trace(#[from] LoadError),
    /// The trace has nothing this replay can observe.
    #[error("replay: {file}: {why}")]
    NoWorkloads {
        /// The trace.
        file: String,
        /// What was missing.
        why: String,
    },
    /// A speed that is not a number > 0.
    #[error("replay: speed {0} must be a number > 0 (or infinite: as fast as possible)")]
    Speed(f64),
    /// The store already holds the replay host's series.
    #[error(
        "replay: the store {store} already holds series of host {host:?} (an earlier replay?); use a fresh store or set agent.host to another name"
    )]
    HostInStore {
        /// The store's file.
        store: PathBuf,
        /// The host.
        host: String,
    },
    /// The configuration, the store, or the agent.
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl From<ConfigError> for ReplayError {
    fn from(e: ConfigError) -> Self {
        ReplayError::Agent(AgentError::Config(e))
    }
}

impl From<prescient_store::StoreError> for ReplayError {
    fn from(e: prescient_store::StoreError) -> Self {
        ReplayError::Agent(AgentError::Store(e))
    }
}

/// One resource of one replayed workload: its values on its host's grid.
#[derive(Debug, Clone)]
struct Series {
    /// The host's time grid for this resource, increasing.
    timestamps: Arc<[TimestampMs]>,
    /// One value per grid step; `NaN` where the trace has none.
    values: Vec<f64>,
}

impl Series {
    /// The value of the step that covers `ts`.
    fn at(&self, ts: TimestampMs, step_ms: i64) -> Option<f64> {
        let i = self.timestamps.partition_point(|&t| t <= ts);
        let j = i.checked_sub(1)?;
        let v = self.values[j];
        (ts < self.timestamps[j].saturating_add(step_ms) && v.is_finite()).then_some(v)
    }
}

/// One (host, workload) of a trace.
#[derive(Debug, Clone)]
pub struct TraceWorkload {
    /// Its id in the agent: `HOST.WORKLOAD`.
    pub id: WorkloadId,
    /// The trace's host.
    pub host: String,
    /// The trace's workload name.
    pub workload: String,
    /// Its cgroup path: `/HOST/WORKLOAD`.
    pub cgroup: CgroupPath,
    series: BTreeMap<Resource, Series>,
}

impl TraceWorkload {
    /// The resources the trace has for it.
    pub fn resources(&self) -> impl Iterator<Item = Resource> + '_ {
        self.series.keys().copied()
    }

    /// Its usage of `resource` at trace time `ts`.
    pub fn usage_at(&self, resource: Resource, ts: TimestampMs, step_ms: i64) -> Option<f64> {
        self.series.get(&resource)?.at(ts, step_ms)
    }
}

/// The part of a trace a replay observes: CPU and memory of the selected
/// workloads.
#[derive(Debug, Clone)]
pub struct LoadedTrace {
    /// The file, for messages.
    pub name: String,
    /// The trace's step (the most common gap between samples).
    pub step_ms: i64,
    /// The first timestamp.
    pub start: TimestampMs,
    /// The end of the last step.
    pub end: TimestampMs,
    /// The workloads, in the order the trace lists them.
    pub workloads: Vec<TraceWorkload>,
}

impl LoadedTrace {
    /// Loads the CPU and memory series of `path`, keeping those of `host`
    /// (if given) and then the first `max_workloads` (if given).
    pub fn load(
        path: &Path,
        host: Option<&str>,
        max_workloads: Option<usize>,
    ) -> Result<LoadedTrace, ReplayError> {
        let name = path.display().to_string();
        let mut loaded = Vec::new();
        let mut missing = Vec::new();
        for r in OBSERVED {
            match ReplayTrace::load(path, r, &|_| {}) {
                Ok(t) => loaded.push(t),
                Err(e @ LoadError::NoSuchResource { .. }) => missing.push(e.to_string()),
                Err(e) => return Err(e.into()),
            }
        }
        if loaded.is_empty() {
            return Err(ReplayError::NoWorkloads {
                file: name,
                why: format!("nothing to observe: {}", missing.join("; ")),
            });
        }
        let step_ms = loaded.iter().map(|t| t.step_ms).min().unwrap_or(1).max(1);
        let mut workloads: Vec<TraceWorkload> = Vec::new();
        let mut index: HashMap<(String, String), usize> = HashMap::new();
        let mut hosts_seen: Vec<String> = Vec::new();
        for t in loaded {
            for h in t.hosts {
                if !hosts_seen.contains(&h.host.0) {
                    hosts_seen.push(h.host.0.clone());
                }
                if host.is_some_and(|want| want != h.host.0) {
                    continue;
                }
                let grid: Arc<[TimestampMs]> = Arc::from(h.timestamps);
                for s in h.series {
                    let key = (h.host.0.clone(), s.key.workload.0.clone());
                    let at = match index.get(&key) {
                        Some(&i) => i,
                        None => {
                            let Some(cgroup) = cgroup_of(&key.0, &key.1) else {
                                log::warn!(
                                    "{name}: workload {:?} of host {:?} cannot be named as a cgroup; skipped",
                                    key.1,
                                    key.0
                                );
                                continue;
                            };
                            workloads.push(TraceWorkload {
                                id: WorkloadId(format!("{}.{}", key.0, key.1)),
                                host: key.0.clone(),
                                workload: key.1.clone(),
                                cgroup,
                                series: BTreeMap::new(),
                            });
                            index.insert(key, workloads.len() - 1);
                            workloads.len() - 1
                        }
                    };
                    workloads[at].series.insert(
                        t.resource,
                        Series {
                            timestamps: Arc::clone(&grid),
                            values: s.demand,
                        },
                    );
                }
            }
        }
        if let Some(want) = host
            && workloads.is_empty()
        {
            return Err(ReplayError::NoWorkloads {
                file: name,
                why: format!("no host {want:?} (hosts: {})", abbreviate(&hosts_seen, 10)),
            });
        }
        if let Some(n) = max_workloads {
            workloads.truncate(n);
        }
        if workloads.is_empty() {
            return Err(ReplayError::NoWorkloads {
                file: name,
                why: "no workload selected".into(),
            });
        }
        let series = || workloads.iter().flat_map(|w| w.series.values());
        let start = series()
            .filter_map(|s| s.timestamps.first())
            .min()
            .copied()
            .unwrap_or(0);
        let end = series()
            .filter_map(|s| s.timestamps.last())
            .max()
            .map_or(start, |t| t.saturating_add(step_ms));
        Ok(LoadedTrace {
            name,
            step_ms,
            start,
            end,
            workloads,
        })
    }

    /// The trace hosts of the workloads, in order.
    pub fn hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for w in &self.workloads {
            if !out.contains(&w.host) {
                out.push(w.host.clone());
            }
        }
        out
    }

    /// The peak over time of the summed usage of `resource` by the
    /// workloads of `host` (all hosts: `None`), 0 when there is none.
    pub fn peak_total(&self, host: Option<&str>, resource: Resource) -> f64 {
        // Each host's series of one resource share that host's grid, so
        // totals are summed per host by grid index, then per timestamp
        // across hosts.
        let mut totals: BTreeMap<TimestampMs, f64> = BTreeMap::new();
        for w in &self.workloads {
            if host.is_some_and(|h| h != w.host) {
                continue;
            }
            if let Some(s) = w.series.get(&resource) {
                for (t, v) in s.timestamps.iter().zip(&s.values) {
                    if v.is_finite() {
                        *totals.entry(*t).or_insert(0.0) += v;
                    }
                }
            }
        }
        totals.values().copied().fold(0.0, f64::max)
    }
}

/// `/HOST/WORKLOAD`, with `/` in either name replaced by `_`; `None` for a
/// name that cannot be a path component (`.`, `..`, a NUL or newline).
fn cgroup_of(host: &str, workload: &str) -> Option<CgroupPath> {
    let h = host.replace('/', "_");
    let w = workload.replace('/', "_");
    if h.is_empty() || w.is_empty() {
        return None;
    }
    let p = CgroupPath::parse(&format!("/{h}/{w}")).ok()?;
    (p.components().count() == 2).then_some(p)
}

fn abbreviate(names: &[String], n: usize) -> String {
    let mut s = names.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > n {
        s.push_str(&format!(", ... ({} in all)", names.len()));
    }
    s
}

/// The observer of a replay: the trace's workloads, their usage at the
/// clock's time.
pub struct TraceObserver {
    trace: Arc<LoadedTrace>,
    by_cgroup: HashMap<CgroupPath, usize>,
}

impl TraceObserver {
    /// Over `trace`.
    pub fn new(trace: Arc<LoadedTrace>) -> Self {
        let by_cgroup = trace
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| (w.cgroup.clone(), i))
            .collect();
        TraceObserver { trace, by_cgroup }
    }
}

impl Observer for TraceObserver {
    fn discover(
        &mut self,
        workloads: &[WorkloadConfig],
        _group: bool,
    ) -> Result<Vec<Found>, String> {
        let mut globs = Vec::new();
        for w in workloads {
            if let Some(g) = &w.cgroup {
                let glob = Glob::new(g).map_err(|e| format!("workload {}: {e}", w.name))?;
                globs.push((w, glob));
            }
        }
        let mut out = Vec::new();
        for tw in &self.trace.workloads {
            let Some((wc, _)) = globs.iter().find(|(_, g)| g.matches(tw.cgroup.relative())) else {
                continue;
            };
            let mut labels = wc.labels.clone();
            labels.insert("trace_host".into(), tw.host.clone());
            labels.insert("trace_workload".into(), tw.workload.clone());
            out.push(Found {
                id: tw.id.clone(),
                selector: wc.name.clone(),
                cgroup: tw.cgroup.clone(),
                labels,
            });
        }
        Ok(out)
    }

    fn observe(&mut self, cgroups: &[CgroupPath], ts: TimestampMs) -> Vec<(CgroupPath, Usage)> {
        let step = self.trace.step_ms;
        let mut out = Vec::with_capacity(cgroups.len());
        for cg in cgroups {
            let Some(w) = self.by_cgroup.get(cg).map(|&i| &self.trace.workloads[i]) else {
                continue;
            };
            let usage = Usage {
                cpu_cores: w.usage_at(Resource::Cpu, ts, step),
                memory_bytes: w.usage_at(Resource::Memory, ts, step),
                ..Usage::default()
            };
            if usage.cpu_cores.is_some() || usage.memory_bytes.is_some() {
                out.push((cg.clone(), usage));
            }
        }
        out
    }
}

/// Trace time: starts at the trace's first timestamp and runs `speed`
/// times faster than the wall clock; at infinite speed it jumps to
/// whatever the loop waits for.
#[derive(Debug, Clone)]
pub struct TraceClock {
    origin: TimestampMs,
    speed: f64,
    started: Instant,
    /// Now, at infinite speed.
    jumped: TimestampMs,
}

impl TraceClock {
    /// A clock at `origin` now, running at `speed` (> 0, may be infinite).
    pub fn new(origin: TimestampMs, speed: f64) -> Result<TraceClock, ReplayError> {
        if speed.is_nan() || speed <= 0.0 {
            return Err(ReplayError::Speed(speed));
        }
        Ok(TraceClock {
            origin,
            speed,
            started: Instant::now(),
            jumped: origin,
        })
    }
}

impl Clock for TraceClock {
    fn now_ms(&self) -> TimestampMs {
        if self.speed.is_infinite() {
            return self.jumped;
        }
        let trace_ms = self.started.elapsed().as_secs_f64() * 1000.0 * self.speed;
        // `as` saturates: a clock run for centuries stays at i64::MAX.
        self.origin.saturating_add(trace_ms as i64)
    }

    fn wait_until(&mut self, t: TimestampMs, signals: &Signals) {
        if self.speed.is_infinite() {
            self.jumped = self.jumped.max(t);
            return;
        }
        loop {
            if signals.stop_requested() || signals.reload_pending() {
                return;
            }
            let left = t.saturating_sub(self.now_ms());
            if left <= 0 {
                return;
            }
            // Wall time to wait, in slices of at most 20 ms so that signals
            // are seen as promptly as on the system clock.
            let wall_ms = (left as f64 / self.speed).clamp(0.05, 20.0);
            std::thread::sleep(Duration::from_secs_f64(wall_ms / 1000.0));
        }
    }
}

/// `config` made fit to replay `trace` (see the module documentation):
/// host, mode, intervals, selectors, pools.
pub fn prepare(mut config: Config, trace: &LoadedTrace, trace_path: &Path) -> Config {
    if config.agent.host.is_none() {
        let file = trace_path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "trace".into());
        let stem = file
            .split('.')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("trace");
        config.agent.host = Some(format!("replay-{stem}"));
    }
    if config.agent.mode == Mode::Enforce {
        log::warn!("replay: nothing is enforced on a trace; running in recommend mode");
        config.agent.mode = Mode::Recommend;
    }
    let step = Interval::ms(u64::try_from(trace.step_ms).unwrap_or(1));
    for (name, i) in [
        ("agent.sample_interval", &mut config.agent.sample_interval),
        ("agent.forecast_step", &mut config.agent.forecast_step),
        ("agent.plan_interval", &mut config.agent.plan_interval),
        ("store.flush_interval", &mut config.store.flush_interval),
        (
            "store.checkpoint_interval",
            &mut config.store.checkpoint_interval,
        ),
    ] {
        if *i < step {
            log::info!(
                "replay: {name} raised from {} ms to the trace's step, {} ms",
                i.as_ms(),
                step.as_ms()
            );
            *i = step;
        }
    }
    let make_pools = config.pools.is_empty();
    if make_pools {
        for h in trace.hosts() {
            config.pools.push(PoolConfig {
                name: h.clone(),
                parent: None,
                cpu: Some(trace.peak_total(Some(&h), Resource::Cpu).ceil().max(1.0)),
                memory: Some(ByteSize(gib_ceil(
                    trace.peak_total(Some(&h), Resource::Memory),
                ))),
                net_rx: None,
                net_tx: None,
                io_read: None,
                io_write: None,
                io_read_ops: None,
                io_write_ops: None,
                spread_spare: false,
            });
        }
    }
    if !config.workloads.iter().any(|w| w.cgroup.is_some()) {
        let own: Vec<WorkloadConfig> = trace
            .hosts()
            .into_iter()
            .filter_map(|h| {
                let sel = serde_json::json!({
                    "name": h,
                    "cgroup": format!("{}/*", h.replace('/', "_")),
                    "pool": make_pools.then_some(&h),
                });
                // Every other field has a default.
                serde_json::from_value::<WorkloadConfig>(sel)
                    .map_err(|e| log::error!("replay: a selector for host {h}: {e}"))
                    .ok()
            })
            .collect();
        config.workloads = own;
    }
    config
}

/// Bytes rounded up to whole GiB (at least 1 GiB).
fn gib_ceil(bytes: f64) -> u64 {
    ((bytes / GIB).ceil().max(1.0) * GIB) as u64
}

/// A machine as big as the trace's peak total usage: pools configured
/// without a capacity get this.
fn trace_machine(trace: &LoadedTrace) -> Machine {
    Machine {
        cpus: trace.peak_total(None, Resource::Cpu).ceil().max(1.0),
        memory_bytes: gib_ceil(trace.peak_total(None, Resource::Memory)),
    }
}

/// Runs the agent on the trace at `trace_path` until the trace's end (or
/// the end of `options.span` of it) or a stop request. `source` is the
/// configuration, prepared for the trace as the module documentation says
/// (and again on a reload request); `control`, if given, gets the loop's
/// live view and commands, as on a live agent.
pub fn run(
    source: &ConfigSource,
    trace_path: &Path,
    options: &ReplayOptions,
    signals: &Signals,
    control: Option<ControlPort>,
) -> Result<RunSummary, ReplayError> {
    // Checked before the trace is read; the clock starts with the loop.
    TraceClock::new(0, options.speed)?;
    let trace = Arc::new(LoadedTrace::load(
        trace_path,
        options.host.as_deref(),
        options.max_workloads,
    )?);
    let machine = trace_machine(&trace);
    let config = resolve(prepare(source.load()?, &trace, trace_path), &machine)?;
    let host = config.agent.host.clone().unwrap_or_default();
    let store = prescient_store::Store::open(&config.store.path)?;
    if store.series_list()?.iter().any(|(_, k)| k.host.0 == host) {
        return Err(ReplayError::HostInStore {
            store: config.store.path.clone(),
            host,
        });
    }
    let sink = StoreSink::new(store);
    let until = match options.span {
        Some(d) => trace
            .start
            .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .min(trace.end),
        None => trace.end,
    };
    log::info!(
        "replaying {}: {} workload(s) of {} host(s), {} s of trace at {}x, host {host}, store {}",
        trace.name,
        trace.workloads.len(),
        trace.hosts().len(),
        (until - trace.start) / 1000,
        options.speed,
        config.store.path.display()
    );
    let observer = TraceObserver::new(Arc::clone(&trace));
    let clock = TraceClock::new(trace.start, options.speed)?;
    let mut agent: Agent<_, _, Box<dyn Enforcer + Send>, _> =
        Agent::new(config, machine, observer, sink, None, clock);
    if let Some(port) = control {
        agent.set_control(port);
    }
    let reload = || -> Result<Config, ConfigError> {
        resolve(prepare(source.load()?, &trace, trace_path), &machine)
    };
    // A configuration sent through the API is prepared for the trace as
    // the file is on a reload.
    {
        let (source, trace, path) = (source.clone(), Arc::clone(&trace), trace_path.to_path_buf());
        agent.set_config_loader(Box::new(move |text| {
            let c = source.load_text(text, Path::new(CONFIG_TEXT_NAME))?;
            resolve(prepare(c, &trace, &path), &machine)
        }));
    }
    let summary = agent.run(signals, Some(until), &reload);
    log::info!(
        "replay stopped at trace time {} s: {} sample passes, {} plans",
        summary.stopped_at / 1000,
        summary.counters.sample_passes,
        summary.counters.plans
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::{HostId, SeriesKey};
    use prescient_store::Store;

    fn sample(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../data/sample")
            .join(name)
    }

    #[test]
    fn loads_cpu_and_memory_per_host_and_workload() {
        let t = LoadedTrace::load(&sample("gcd.csv.gz"), None, None).unwrap();
        assert_eq!(t.step_ms, 300_000);
        assert_eq!(t.start, 0);
        assert_eq!(t.end, 86_400_000);
        assert_eq!(t.workloads.len(), 40);
        assert_eq!(t.hosts(), vec!["gcd000".to_string(), "gcd001".to_string()]);
        let w = &t.workloads[0];
        assert_eq!(w.id.0, "gcd000.vm_1218322450_1");
        assert_eq!(w.cgroup.as_str(), "/gcd000/vm_1218322450_1");
        assert_eq!(
            w.resources().collect::<Vec<_>>(),
            vec![Resource::Cpu, Resource::Memory]
        );
        // The first rows of the file: 0 -> 0.06763 cores, 219172181 bytes;
        // 300 s -> 0.07288 cores.
        assert_eq!(w.usage_at(Resource::Cpu, 0, t.step_ms), Some(0.06763));
        assert_eq!(w.usage_at(Resource::Cpu, 299_999, t.step_ms), Some(0.06763));
        assert_eq!(w.usage_at(Resource::Cpu, 300_000, t.step_ms), Some(0.07288));
        assert_eq!(
            w.usage_at(Resource::Memory, 150_000, t.step_ms),
            Some(219_172_181.0)
        );
        assert_eq!(w.usage_at(Resource::Cpu, -1, t.step_ms), None);
        assert_eq!(w.usage_at(Resource::Cpu, t.end, t.step_ms), None);
    }

    #[test]
    fn selects_a_host_and_the_first_n_and_names_what_is_missing() {
        let t = LoadedTrace::load(&sample("gcd.csv.gz"), Some("gcd001"), Some(3)).unwrap();
        assert_eq!(t.workloads.len(), 3);
        assert!(t.workloads.iter().all(|w| w.host == "gcd001"));
        let e = LoadedTrace::load(&sample("gcd.csv.gz"), Some("nope"), None).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("no host \"nope\""), "{msg}");
        assert!(msg.contains("gcd000, gcd001"), "{msg}");
        let e = LoadedTrace::load(Path::new("/nonexistent/x.csv.gz"), None, None).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/x.csv.gz"), "{e}");
        // PlanetLab has CPU only: memory is simply not observed.
        let t = LoadedTrace::load(&sample("planetlab.csv.gz"), None, Some(2)).unwrap();
        assert_eq!(
            t.workloads[0].resources().collect::<Vec<_>>(),
            vec![Resource::Cpu]
        );
    }

    #[test]
    fn peak_total_sums_workloads_at_each_step() {
        let t = LoadedTrace::load(&sample("gcd.csv.gz"), Some("gcd000"), Some(2)).unwrap();
        let a = &t.workloads[0];
        let b = &t.workloads[1];
        let mut want: f64 = 0.0;
        let mut ts = 0;
        while ts < t.end {
            let s = a.usage_at(Resource::Cpu, ts, t.step_ms).unwrap_or(0.0)
                + b.usage_at(Resource::Cpu, ts, t.step_ms).unwrap_or(0.0);
            want = want.max(s);
            ts += t.step_ms;
        }
        assert!(want > 0.0);
        assert!((t.peak_total(None, Resource::Cpu) - want).abs() < 1e-9);
        assert_eq!(t.peak_total(Some("gcd001"), Resource::Cpu), 0.0);
    }

    #[test]
    fn prepare_makes_pools_and_selectors_per_host_and_raises_short_intervals() {
        let path = sample("gcd.csv.gz");
        let t = LoadedTrace::load(&path, None, None).unwrap();
        let c = prepare(Config::default(), &t, &path);
        assert_eq!(c.agent.host.as_deref(), Some("replay-gcd"));
        assert_eq!(c.agent.sample_interval, Interval::secs(300));
        assert_eq!(c.agent.forecast_step, Interval::secs(300));
        assert_eq!(c.store.flush_interval, Interval::secs(300));
        assert_eq!(
            c.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["gcd000", "gcd001"]
        );
        let cpu = c.pools[0].cpu.unwrap();
        assert_eq!(cpu, t.peak_total(Some("gcd000"), Resource::Cpu).ceil());
        let mem = c.pools[1].memory.unwrap().0 as f64;
        assert!(mem >= t.peak_total(Some("gcd001"), Resource::Memory));
        assert_eq!(c.workloads.len(), 2);
        assert_eq!(c.workloads[1].cgroup.as_deref(), Some("gcd001/*"));
        assert_eq!(c.workloads[1].pool.as_deref(), Some("gcd001"));
        resolve(c.clone(), &trace_machine(&t)).unwrap();

        let mut obs = TraceObserver::new(Arc::new(t));
        let found = obs.discover(&c.workloads, false).unwrap();
        assert_eq!(found.len(), 40);
        let f = found
            .iter()
            .find(|f| f.id.0.starts_with("gcd001."))
            .unwrap();
        assert_eq!(f.selector, "gcd001");
        assert_eq!(f.labels["trace_host"], "gcd001");
    }

    #[test]
    fn configured_cgroup_selectors_pick_the_workloads_they_match() {
        let path = sample("gcd.csv.gz");
        let t = LoadedTrace::load(&path, None, None).unwrap();
        let config = Config::from_toml(
            "[agent]\nhost = \"h\"\n[[workload]]\nname = \"first\"\ncgroup = \"gcd001/vm_*\"\nslo_quantile = 0.9\n",
            Path::new("test.toml"),
        )
        .unwrap();
        let c = prepare(config, &t, &path);
        assert_eq!(c.agent.host.as_deref(), Some("h"));
        assert_eq!(c.workloads.len(), 1);
        let mut obs = TraceObserver::new(Arc::new(t));
        let found = obs.discover(&c.workloads, false).unwrap();
        assert_eq!(found.len(), 20);
        assert!(
            found
                .iter()
                .all(|f| f.selector == "first" && f.id.0.starts_with("gcd001."))
        );
        // A bad glob is an error naming the selector.
        let mut bad = c.workloads.clone();
        bad[0].cgroup = Some("a**b".into());
        let e = obs.discover(&bad, false).unwrap_err();
        assert!(e.contains("workload first"), "{e}");
    }

    #[test]
    fn observe_gives_the_values_of_the_step_at_the_time_asked() {
        let t = Arc::new(LoadedTrace::load(&sample("gcd.csv.gz"), None, Some(1)).unwrap());
        let mut obs = TraceObserver::new(Arc::clone(&t));
        let cg = t.workloads[0].cgroup.clone();
        let unknown = CgroupPath::parse("/nope/x").unwrap();
        let got = obs.observe(&[cg.clone(), unknown], 310_000);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, cg);
        assert_eq!(got[0].1.cpu_cores, Some(0.07288));
        assert_eq!(got[0].1.memory_bytes, Some(220_718_369.0));
        assert!(obs.observe(&[cg], t.end + 1).is_empty());
    }

    #[test]
    fn clock_runs_at_its_speed_and_jumps_at_infinite_speed() {
        assert!(matches!(
            TraceClock::new(0, 0.0),
            Err(ReplayError::Speed(_))
        ));
        assert!(matches!(
            TraceClock::new(0, f64::NAN),
            Err(ReplayError::Speed(_))
        ));
        let signals = Signals::new();
        let mut c = TraceClock::new(1000, f64::INFINITY).unwrap();
        assert_eq!(c.now_ms(), 1000);
        c.wait_until(50_000, &signals);
        assert_eq!(c.now_ms(), 50_000);
        c.wait_until(10, &signals);
        assert_eq!(c.now_ms(), 50_000);
        // At 1e6x, a wait for 10 s of trace ends after about 10 ms and
        // leaves the clock at or past the time waited for.
        let mut c = TraceClock::new(0, 1e6).unwrap();
        c.wait_until(10_000, &signals);
        assert!(c.now_ms() >= 10_000);
        // A stop request ends a wait at once.
        let mut c = TraceClock::new(0, 1.0).unwrap();
        signals.stop();
        c.wait_until(3_600_000, &signals);
        assert!(c.now_ms() < 3_600_000);
    }

    #[test]
    fn a_replay_fills_the_store_with_samples_profiles_and_plans_and_publishes_a_view() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.store.path = dir.path().join("replay.db");
        let (handle, port) = crate::control::Control::new();
        let path = sample("gcd.csv.gz");
        let options = ReplayOptions {
            speed: f64::INFINITY,
            max_workloads: Some(4),
            host: None,
            span: Some(Duration::from_secs(6 * 3600)),
        };
        let summary = run(
            &ConfigSource::Fixed(config.clone()),
            &path,
            &options,
            &Signals::new(),
            Some(port),
        )
        .unwrap();
        assert_eq!(summary.host, "replay-gcd");
        assert_eq!(summary.workloads.len(), 4);
        // 6 h of 5-min steps: a sample pass per step.
        assert_eq!(summary.counters.sample_passes, 72);
        assert!(summary.counters.plans >= 70, "{:?}", summary.counters);
        assert_eq!(summary.stopped_at, 6 * 3_600_000);

        let view = handle.view();
        assert_eq!(view.host, "replay-gcd");
        assert_eq!(view.workloads.len(), 4);
        assert!(view.updated_at > 0 && view.updated_at <= 6 * 3_600_000);

        let store = Store::open(&config.store.path).unwrap();
        let trace = LoadedTrace::load(&path, None, Some(4)).unwrap();
        let mut plans = Vec::new();
        for pool in ["gcd000", "gcd001"] {
            plans.extend(store.plans(&HostId(pool.into()), 0, i64::MAX).unwrap());
        }
        assert!(!plans.is_empty());
        let series = store.series_list().unwrap();
        for w in &trace.workloads {
            for r in [Resource::Cpu, Resource::Memory] {
                let key = SeriesKey {
                    host: HostId("replay-gcd".into()),
                    workload: w.id.clone(),
                    resource: r,
                };
                let id = series
                    .iter()
                    .find(|(_, k)| *k == key)
                    .map(|(id, _)| *id)
                    .unwrap_or_else(|| panic!("no series {key}"));
                let samples = store
                    .range(id, 0, 6 * 3_600_000, prescient_store::Resolution::Raw)
                    .unwrap();
                assert_eq!(samples.len(), 72, "{key}");
                // The stored samples are the trace's values.
                for s in &samples {
                    assert_eq!(Some(s.value), w.usage_at(r, s.ts, trace.step_ms));
                }
                let profiles = store.profile_history(id, 10).unwrap();
                assert!(!profiles.is_empty(), "no profile for {key}");
            }
            assert!(
                plans
                    .iter()
                    .any(|(_, p)| p.entries.iter().any(|e| e.workload == w.id)),
                "no plan entry for {}",
                w.id
            );
        }

        // A second replay into the same store is refused.
        let e = run(
            &ConfigSource::Fixed(config),
            &path,
            &options,
            &Signals::new(),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, ReplayError::HostInStore { .. }), "{e}");
    }
}
