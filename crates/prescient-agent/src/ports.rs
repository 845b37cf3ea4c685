//! The agent's I/O behind small traits, so that the loop runs on fakes in
//! tests: a [`Clock`], an [`Observer`] (discovery and sampling), a [`Sink`]
//! (the store); limits are written through prescient-linux's
//! [`Enforcer`](prescient_linux::Enforcer). Each trait has its real
//! implementation here ([`SystemClock`], [`LinuxObserver`], [`StoreSink`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prescient_core::Resource;
use prescient_core::{DemandProfile, HostId, Plan, Sample, SeriesKey, TimestampMs, WorkloadId};
use prescient_linux::enforce::AuditRecord;
use prescient_linux::net::{NetAttribution, NetMeter, tree_pids};
use prescient_linux::procfs::ProcessSample;
use prescient_linux::rates::{cgroup_rates, group_rates};
use prescient_linux::{
    CgroupFs, CgroupPath, CgroupSample, Collector, Discovery, Grouper, ProcFs, Reads,
};
use prescient_store::{AuditEntry, Counter, Store};

use crate::config::WorkloadConfig;

/// Stop and reload requests: set by signal handlers (or by a caller such as
/// `prescient demo`), read by the loop. Cheap to clone; clones share the
/// flags.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    stop: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    /// Flags that nothing has set.
    pub fn new() -> Self {
        Signals::default()
    }

    /// Asks the loop to stop (what SIGTERM and SIGINT do).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Asks the loop to reload its configuration (what SIGHUP does).
    pub fn reload(&self) {
        self.reload.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether a reload was asked for since the last call (clears it).
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    /// Whether a reload is pending (without clearing it).
    pub fn reload_pending(&self) -> bool {
        self.reload.load(Ordering::SeqCst)
    }

    /// Routes SIGTERM and SIGINT to [`Signals::stop`] and SIGHUP to
    /// [`Signals::reload`] for the whole process.
    pub fn install_handlers(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        signal_hook::flag::register(SIGTERM, Arc::clone(&self.stop))?;
        signal_hook::flag::register(SIGINT, Arc::clone(&self.stop))?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&self.reload))?;
        Ok(())
    }
}

/// Time: what the loop reads and waits on.
pub trait Clock {
    /// Now, ms since the Unix epoch.
    fn now_ms(&self) -> TimestampMs;
    /// Waits until `t`, or less when a stop or reload is asked for.
    fn wait_until(&mut self, t: TimestampMs, signals: &Signals);
}

/// The wall clock; waits in short slices so that signals are seen within
/// 20 ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Clock for SystemClock {
    fn now_ms(&self) -> TimestampMs {
        wall_ms()
    }

    fn wait_until(&mut self, t: TimestampMs, signals: &Signals) {
        loop {
            if signals.stop_requested() || signals.reload_pending() {
                return;
            }
            let left = t - wall_ms();
            if left <= 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(left.min(20) as u64));
        }
    }
}

/// A workload found on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Its id.
    pub id: WorkloadId,
    /// The `[[workload]]` (selector) name that found it.
    pub selector: String,
    /// Its cgroup, relative to the agent's subtree. For a process
    /// workload in recommend mode (its processes left where they are, and
    /// read from `/proc`): the group it would be moved into in enforce
    /// mode, which names it.
    pub cgroup: CgroupPath,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// One workload's usage at one sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU, cores (a rate: none at a cgroup's first sample).
    pub cpu_cores: Option<f64>,
    /// Memory in use, bytes.
    pub memory_bytes: Option<f64>,
    /// Block reads, bytes/s.
    pub io_read: Option<f64>,
    /// Block writes, bytes/s.
    pub io_write: Option<f64>,
    /// Block read operations, ops/s (cgroups only: `/proc/<pid>/io` counts
    /// read syscalls, not block operations, so a process workload observed
    /// from `/proc` has none).
    pub io_read_ops: Option<f64>,
    /// Block write operations, ops/s (likewise).
    pub io_write_ops: Option<f64>,
    /// Network bytes received, bytes/s (only for a workload with network
    /// namespaces of its own: see [`prescient_linux::net`]).
    pub net_rx: Option<f64>,
    /// Network bytes sent, bytes/s (likewise).
    pub net_tx: Option<f64>,
    /// Share of CPU periods throttled.
    pub cpu_throttled: Option<f64>,
}

/// One raw counter of a workload at a sample: a cumulative count that one
/// of its rates comes from (see [`prescient_store::Counter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCounter {
    /// The rate it is a counter of.
    pub resource: Resource,
    /// Which counter of the rate (`""`, a device, an interface, a process).
    pub name: String,
    /// Its value, in the counter's unit ([`Resource::counter_scale`]).
    pub value: u64,
}

/// Discovery and sampling.
pub trait Observer {
    /// Finds the workloads of `workloads`' selectors. With `group`, the
    /// processes matched by process selectors are moved into their group
    /// cgroups first (enforce mode); without (recommend mode), they are
    /// left where they are, and observed from `/proc`.
    fn discover(&mut self, workloads: &[WorkloadConfig], group: bool)
    -> Result<Vec<Found>, String>;
    /// Reads the usage of `cgroups` at `ts`; a cgroup that is gone is left
    /// out.
    fn observe(&mut self, cgroups: &[CgroupPath], ts: TimestampMs) -> Vec<(CgroupPath, Usage)>;
    /// The raw counters the last [`Observer::observe`] read, which its
    /// rates came from (taken: a second call gives none). An observer that
    /// reads no counters (a trace's, which holds rates) has none.
    fn take_counters(&mut self) -> Vec<(CgroupPath, RawCounter)> {
        Vec::new()
    }
}

/// The real observer: prescient-linux's discovery, grouper and collector
/// over a [`CgroupFs`] based at the agent's subtree.
///
/// - A cgroup workload (and, in enforce mode, a process workload, once its
///   processes are moved into its group) is read through its cgroup's
///   counters.
/// - A process workload in recommend mode is read from `/proc`: the CPU
///   (`stat` utime + stime), resident memory (`status` VmRSS) and storage
///   I/O (`io`) of the processes discovery matched, summed (see
///   [`group_rates`] for what that misses against a cgroup's counters).
///   Discovery (each plan interval) refreshes the processes.
/// - Network bytes, which no cgroup counts, come from the network
///   namespaces a workload's processes have to themselves
///   ([`prescient_linux::net`]), assigned at each discovery.
pub struct LinuxObserver {
    fs: CgroupFs,
    procfs: ProcFs,
    collector: Collector,
    grouper: Grouper,
    prev: HashMap<CgroupPath, CgroupSample>,
    /// The process workloads observed from `/proc`, by the cgroup that
    /// names them: their processes, as of the last discovery.
    procs: HashMap<CgroupPath, Vec<i32>>,
    /// Their last pass.
    procs_prev: HashMap<CgroupPath, (TimestampMs, Vec<ProcessSample>)>,
    clock_ticks: u64,
    net: NetMeter<CgroupPath>,
    /// Each workload's network attribution as last logged.
    net_said: HashMap<CgroupPath, String>,
    /// The raw counters of the last pass.
    raw: Vec<(CgroupPath, RawCounter)>,
}

impl LinuxObserver {
    /// Over `fs` (based at the subtree), reading processes from `procfs`;
    /// the agent's own network namespace is that of `procfs`'s `self`.
    pub fn new(fs: CgroupFs, procfs: ProcFs) -> Self {
        let own_ns = match procfs.own_net_ns() {
            Ok(ns) => ns,
            Err(e) => {
                log::warn!("reading the agent's own network namespace: {e}");
                None
            }
        };
        if own_ns.is_none() {
            log::warn!(
                "the agent's own network namespace is unknown: no workload's network bytes will be counted"
            );
        }
        LinuxObserver {
            // Usage only: the loop keeps CPU, memory in use, I/O and
            // throttling, so memory.stat, memory events and pressure are
            // not read (most of a pass's cost on a v1 host).
            collector: Collector::new(&fs).with_reads(Reads::USAGE),
            grouper: Grouper::new(&fs),
            fs,
            procfs,
            prev: HashMap::new(),
            procs: HashMap::new(),
            procs_prev: HashMap::new(),
            clock_ticks: prescient_linux::procfs::clock_ticks(),
            net: NetMeter::new(own_ns),
            net_said: HashMap::new(),
            raw: Vec::new(),
        }
    }

    /// Assigns network namespaces to the workloads `found` (with the
    /// processes matched for process workloads), logging each workload's
    /// attribution when it changes.
    fn assign_namespaces(&mut self, found: &[(CgroupPath, WorkloadId, Vec<i32>)]) {
        let mut members = BTreeMap::new();
        for (cg, id, pids) in found {
            let pids = if self.procs.contains_key(cg) {
                pids.clone()
            } else {
                let Some(h) = self.fs.primary() else {
                    continue;
                };
                match tree_pids(h, cg) {
                    Ok(Some(p)) => p,
                    Ok(None) => continue,
                    Err(e) => {
                        log::debug!("workload {id}: listing its processes: {e}");
                        continue;
                    }
                }
            };
            members.insert(cg.clone(), pids);
        }
        let attribution = self.net.assign(&self.procfs, &members);
        let mut said = HashMap::with_capacity(attribution.len());
        for (cg, a) in attribution {
            let text = a.to_string();
            if self.net_said.get(&cg) != Some(&text) {
                let id = found
                    .iter()
                    .find(|(c, ..)| *c == cg)
                    .map_or_else(|| cg.to_string(), |(_, id, _)| id.to_string());
                if matches!(a, NetAttribution::Own(_)) {
                    log::info!("workload {id}: network bytes {text}");
                } else {
                    log::debug!("workload {id}: network bytes {text}");
                }
            }
            said.insert(cg, text);
        }
        self.net_said = said;
    }

    /// Keeps the raw counters of a cgroup's sample: its CPU time and the
    /// bytes and operations of each block device.
    fn raw_of_cgroup(&mut self, s: &CgroupSample) {
        let cg = &s.cgroup;
        if let Some(usec) = s.cpu.and_then(|c| c.usage_usec) {
            self.raw.push((
                cg.clone(),
                RawCounter {
                    resource: Resource::Cpu,
                    name: String::new(),
                    value: usec,
                },
            ));
        }
        for d in s.io.iter().flatten() {
            let Some(dev) = d.device else { continue };
            for (resource, value) in [
                (Resource::IoRead, d.rbytes),
                (Resource::IoWrite, d.wbytes),
                (Resource::IoReadOps, d.rios),
                (Resource::IoWriteOps, d.wios),
            ] {
                self.raw.push((
                    cg.clone(),
                    RawCounter {
                        resource,
                        name: format!("{}:{}", dev.major, dev.minor),
                        value,
                    },
                ));
            }
        }
    }

    /// The usage of the process workload `cg` from `/proc` at `ts`.
    fn observe_processes(&mut self, cg: &CgroupPath, ts: TimestampMs) -> Option<Usage> {
        let pids = self.procs.get(cg)?;
        let mut cur = Vec::with_capacity(pids.len());
        for &pid in pids {
            match self.procfs.sample(pid, None, ts) {
                Ok(Some(s)) => cur.push(s),
                Ok(None) => {}
                Err(e) => log::debug!("observe {cg}: {e}"),
            }
        }
        if cur.is_empty() {
            self.procs_prev.remove(cg);
            return None;
        }
        let (pts, prev) = self
            .procs_prev
            .get(cg)
            .map_or((ts, &[][..]), |(t, p)| (*t, p.as_slice()));
        let r = group_rates(&cur, prev, ts - pts, self.clock_ticks);
        // Per process (a process is its pid and start time), as the rates
        // pair them: CPU time in µs, bytes read and written.
        for p in &cur {
            let name = format!("pid {} started {}", p.stat.pid, p.stat.starttime);
            let ticks = p.stat.utime.saturating_add(p.stat.stime);
            let usec = u64::try_from(u128::from(ticks) * 1_000_000 / u128::from(self.clock_ticks))
                .unwrap_or(u64::MAX);
            let mut push = |resource, value| {
                self.raw.push((
                    cg.clone(),
                    RawCounter {
                        resource,
                        name: name.clone(),
                        value,
                    },
                ));
            };
            push(Resource::Cpu, usec);
            if let Some(io) = p.io {
                push(Resource::IoRead, io.read_bytes);
                push(Resource::IoWrite, io.write_bytes);
            }
        }
        self.procs_prev.insert(cg.clone(), (ts, cur));
        // No I/O operations: `/proc/<pid>/io`'s syscr / syscw count read
        // and write system calls (page-cache hits, pipes and sockets
        // included), not block-device operations, so they would be no
        // measure of what `riops` / `wiops` cap.
        Some(Usage {
            cpu_cores: r.cpu_cores,
            memory_bytes: r.rss_bytes,
            io_read: r.read_bytes_per_sec,
            io_write: r.write_bytes_per_sec,
            ..Usage::default()
        })
    }

    /// The filesystem it reads.
    pub fn fs(&self) -> &CgroupFs {
        &self.fs
    }
}

impl Observer for LinuxObserver {
    fn discover(
        &mut self,
        workloads: &[WorkloadConfig],
        group: bool,
    ) -> Result<Vec<Found>, String> {
        let selectors = workloads.iter().map(WorkloadConfig::selector).collect();
        let d = Discovery::new(selectors, CgroupPath::root()).map_err(|e| e.to_string())?;
        let found = d
            .discover(&self.fs, &self.procfs)
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(found.len());
        let mut procs = HashMap::new();
        let mut members = Vec::with_capacity(found.len());
        for w in found {
            if !w.pids.is_empty() {
                if group {
                    if let Err(e) = self.grouper.ensure_group(&w.cgroup) {
                        log::warn!("workload {}: {e}", w.id);
                        continue;
                    }
                    let r = self.grouper.move_pids(&w.cgroup, &w.pids);
                    for (pid, dir, e) in &r.failed {
                        log::warn!(
                            "workload {}: moving pid {pid} into {}: {e}",
                            w.id,
                            dir.display()
                        );
                    }
                } else {
                    procs.insert(w.cgroup.clone(), w.pids.clone());
                }
            }
            members.push((w.cgroup.clone(), w.id.clone(), w.pids));
            out.push(Found {
                id: w.id,
                selector: w.selector,
                cgroup: w.cgroup,
                labels: w.labels,
            });
        }
        self.procs_prev.retain(|cg, _| procs.contains_key(cg));
        self.procs = procs;
        self.assign_namespaces(&members);
        Ok(out)
    }

    fn observe(&mut self, cgroups: &[CgroupPath], ts: TimestampMs) -> Vec<(CgroupPath, Usage)> {
        let (by_proc, by_cgroup): (Vec<CgroupPath>, Vec<CgroupPath>) = cgroups
            .iter()
            .cloned()
            .partition(|cg| self.procs.contains_key(cg));
        let pass = self.collector.collect(&by_cgroup, ts);
        for e in pass.errors.iter().take(3) {
            log::debug!("collect: {e}");
        }
        let mut out = Vec::with_capacity(pass.samples.len() + by_proc.len());
        let mut next = HashMap::with_capacity(pass.samples.len());
        self.raw.clear();
        for s in pass.samples {
            self.raw_of_cgroup(&s);
            let u = match self.prev.get(&s.cgroup) {
                Some(p) => {
                    let r = cgroup_rates(&s, p, s.ts - p.ts);
                    Usage {
                        cpu_cores: r.cpu_cores,
                        memory_bytes: r.memory_bytes,
                        io_read: r.io_read_bytes_per_sec,
                        io_write: r.io_write_bytes_per_sec,
                        io_read_ops: r.io_read_ops_per_sec,
                        io_write_ops: r.io_write_ops_per_sec,
                        cpu_throttled: r.cpu_throttled_share,
                        ..Usage::default()
                    }
                }
                None => Usage {
                    memory_bytes: s.memory_current.map(|b| b as f64),
                    ..Usage::default()
                },
            };
            out.push((s.cgroup.clone(), u));
            next.insert(s.cgroup.clone(), s);
        }
        self.prev = next;
        for cg in by_proc {
            if let Some(u) = self.observe_processes(&cg, ts) {
                out.push((cg, u));
            }
        }
        for (cg, u) in &mut out {
            if let Some(n) = self.net.sample(&self.procfs, cg, ts) {
                u.net_rx = Some(n.rx_bytes_per_sec);
                u.net_tx = Some(n.tx_bytes_per_sec);
            }
            for (name, d) in self.net.counters(cg) {
                for (resource, value) in
                    [(Resource::NetRx, d.rx_bytes), (Resource::NetTx, d.tx_bytes)]
                {
                    self.raw.push((
                        cg.clone(),
                        RawCounter {
                            resource,
                            name: name.clone(),
                            value,
                        },
                    ));
                }
            }
        }
        out
    }

    fn take_counters(&mut self) -> Vec<(CgroupPath, RawCounter)> {
        std::mem::take(&mut self.raw)
    }
}

/// A store write or read that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// The durable state: what the agent writes to and reads back from the
/// store.
pub trait Sink {
    /// Writes a batch of samples (one transaction: all or nothing).
    fn ingest(&mut self, batch: &[(SeriesKey, Sample)]) -> Result<(), SinkError>;
    /// Writes a batch of raw counter readings (one transaction).
    fn ingest_counters(&mut self, batch: &[(SeriesKey, Counter)]) -> Result<(), SinkError>;
    /// Saves a plan.
    fn save_plan(&mut self, plan: &Plan) -> Result<(), SinkError>;
    /// Appends an audit record.
    fn append_audit(&mut self, record: &AuditRecord) -> Result<(), SinkError>;
    /// Appends several audit records, all or none (by default one by one).
    fn append_audits(&mut self, records: &[AuditRecord]) -> Result<(), SinkError> {
        records.iter().try_for_each(|r| self.append_audit(r))
    }
    /// Saves several demand profiles, all or none (by default one by one).
    fn save_profiles(
        &mut self,
        batch: &[(SeriesKey, TimestampMs, DemandProfile)],
    ) -> Result<(), SinkError> {
        batch
            .iter()
            .try_for_each(|(k, at, p)| self.save_profile(k, *at, p))
    }
    /// Saves a demand profile.
    fn save_profile(
        &mut self,
        key: &SeriesKey,
        made_at: TimestampMs,
        profile: &DemandProfile,
    ) -> Result<(), SinkError>;
    /// Saves a blob of state (forecasters, originals) under `key`.
    fn save_state(&mut self, key: &str, version: u32, blob: &[u8]) -> Result<(), SinkError>;
    /// Reads back a blob of state.
    fn load_state(&mut self, key: &str) -> Result<Option<(u32, Vec<u8>)>, SinkError>;
    /// The newest plan of a pool.
    fn latest_plan(&mut self, pool: &HostId) -> Result<Option<Plan>, SinkError>;
    /// Records a workload's selector and labels.
    fn set_workload_meta(
        &mut self,
        host: &HostId,
        found: &Found,
        at: TimestampMs,
    ) -> Result<(), SinkError>;
    /// Every stored event, cancelled ones included (with when they were
    /// cancelled), for the forecasts' calendar.
    fn events(&mut self) -> Result<Vec<prescient_store::Event>, SinkError>;
}

/// The real sink: a [`Store`].
pub struct StoreSink {
    store: Store,
}

impl StoreSink {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<StoreSink, prescient_store::StoreError> {
        Ok(StoreSink {
            store: Store::open(path)?,
        })
    }

    /// Wraps an open store.
    pub fn new(store: Store) -> Self {
        StoreSink { store }
    }
}

fn e(err: prescient_store::StoreError) -> SinkError {
    SinkError(err.to_string())
}

/// The store's form of an audit record.
fn entry(r: &AuditRecord) -> AuditEntry {
    AuditEntry {
        ts: r.ts,
        actor: r.actor.clone(),
        action: r.action.clone(),
        target: r.target.clone(),
        before: r.before.clone(),
        after: r.after.clone(),
        reason: r.reason.clone(),
    }
}

impl Sink for StoreSink {
    fn ingest(&mut self, batch: &[(SeriesKey, Sample)]) -> Result<(), SinkError> {
        let mut rows = Vec::with_capacity(batch.len());
        for (k, s) in batch {
            rows.push((self.store.series_id(k).map_err(e)?, *s));
        }
        self.store.ingest(&rows).map_err(e)?;
        Ok(())
    }

    fn ingest_counters(&mut self, batch: &[(SeriesKey, Counter)]) -> Result<(), SinkError> {
        let mut rows = Vec::with_capacity(batch.len());
        for (k, c) in batch {
            rows.push((self.store.series_id(k).map_err(e)?, c.clone()));
        }
        self.store.ingest_counters(&rows).map_err(e)?;
        Ok(())
    }

    fn save_plan(&mut self, plan: &Plan) -> Result<(), SinkError> {
        self.store.save_plan(plan).map(|_| ()).map_err(e)
    }

    fn append_audit(&mut self, r: &AuditRecord) -> Result<(), SinkError> {
        self.store.append_audit(&entry(r)).map(|_| ()).map_err(e)
    }

    fn append_audits(&mut self, records: &[AuditRecord]) -> Result<(), SinkError> {
        let entries: Vec<AuditEntry> = records.iter().map(entry).collect();
        self.store.append_audits(&entries).map_err(e)
    }

    fn save_profiles(
        &mut self,
        batch: &[(SeriesKey, TimestampMs, DemandProfile)],
    ) -> Result<(), SinkError> {
        let mut items = Vec::with_capacity(batch.len());
        for (k, at, p) in batch {
            items.push((self.store.series_id(k).map_err(e)?, *at, p));
        }
        self.store.save_profiles(&items).map_err(e)
    }

    fn save_profile(
        &mut self,
        key: &SeriesKey,
        made_at: TimestampMs,
        profile: &DemandProfile,
    ) -> Result<(), SinkError> {
        let id = self.store.series_id(key).map_err(e)?;
        self.store.save_profile(id, made_at, profile).map_err(e)
    }

    fn save_state(&mut self, key: &str, version: u32, blob: &[u8]) -> Result<(), SinkError> {
        self.store.save_model_state(key, version, blob).map_err(e)
    }

    fn load_state(&mut self, key: &str) -> Result<Option<(u32, Vec<u8>)>, SinkError> {
        self.store.load_model_state(key).map_err(e)
    }

    fn latest_plan(&mut self, pool: &HostId) -> Result<Option<Plan>, SinkError> {
        Ok(self.store.latest_plan(pool).map_err(e)?.map(|(_, p)| p))
    }

    fn set_workload_meta(
        &mut self,
        host: &HostId,
        found: &Found,
        at: TimestampMs,
    ) -> Result<(), SinkError> {
        self.store
            .set_workload_meta(
                host,
                &found.id,
                &format!("{} ({})", found.selector, found.cgroup),
                &found.labels,
                "agent",
                at,
            )
            .map_err(e)
    }

    fn events(&mut self) -> Result<Vec<prescient_store::Event>, SinkError> {
        self.store
            .events(TimestampMs::MIN, TimestampMs::MAX, true)
            .map_err(e)
    }
}
