//! The loadgen itself: a cgroup subtree with one cgroup and one worker
//! process per workload, driven step by step, measured from the cgroups'
//! own counters.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use prescient_linux::discover::Grouper;
use prescient_linux::enforce::{CpuMax, Setting, enforcer_for};
use prescient_linux::layout::HierarchyId;
use prescient_linux::subtree::{remove_cgroup_tree, remove_stale_subtrees};
use prescient_linux::{CgroupFs, CgroupPath, Collector, LayoutKind, Root};

use crate::error::LoadgenError;
use crate::record::{Record, StepRow};
use crate::scenario::{Scenario, cgroup_names};
use crate::schedule::Timing;
use crate::worker::{Command, WorkerArgs};

/// The prefix of the subtrees the loadgen names itself
/// (`prescient-loadgen-<pid>`); subtrees of this form whose process is
/// gone are removed when a loadgen starts.
pub const SUBTREE_PREFIX: &str = "prescient-loadgen-";

/// The longest the workers are given to take their first memory.
pub const WARM_UP_LIMIT: Duration = Duration::from_secs(10);

/// How to start a worker process: a program and the arguments before the
/// worker's own (`--slice-us N --seed N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// The program.
    pub program: PathBuf,
    /// Its first arguments (a subcommand, say).
    pub args: Vec<String>,
}

impl WorkerCommand {
    /// `program args...`.
    pub fn new(program: impl Into<PathBuf>, args: &[&str]) -> Self {
        WorkerCommand {
            program: program.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// This very program with a subcommand (the `prescient` binary runs
    /// workers as `prescient loadgen-worker`).
    pub fn this_program(subcommand: &str) -> io::Result<Self> {
        Ok(WorkerCommand::new(std::env::current_exe()?, &[subcommand]))
    }

    /// The `prescient-loadgen-worker` binary beside this program or one
    /// directory up (where cargo puts a workspace's binaries relative to
    /// its test executables), if there is one.
    pub fn beside_this_program() -> Option<Self> {
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        [Some(dir), dir.parent()]
            .into_iter()
            .flatten()
            .map(|d| d.join("prescient-loadgen-worker"))
            .find(|p| p.is_file())
            .map(|p| WorkerCommand::new(p, &[]))
    }
}

/// How to play a [`Scenario`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Trace seconds per wall second.
    pub speed: f64,
    /// The first step of the scenario to play.
    pub start_step: usize,
    /// Play for about this long (whole steps; `None`: to the end).
    pub duration: Option<Duration>,
    /// The workers' duty-cycle slice.
    pub slice: Duration,
    /// The name of the subtree created under the parent cgroup.
    pub subtree: String,
    /// A CPU cap (cores) on the whole subtree, for contended runs.
    pub subtree_cpu_cap: Option<f64>,
    /// A CPU weight (v2 `cpu.weight`, 1..=10000; v1 `cpu.shares` in
    /// proportion) for the whole subtree: a high one shields a measured
    /// run from other work on a shared machine.
    pub subtree_cpu_weight: Option<u64>,
    /// How to start workers.
    pub worker: WorkerCommand,
}

impl Options {
    /// Defaults (speed 300, from step 0 to the end, 10 ms slices, subtree
    /// `prescient-loadgen-<pid>`, no cap) with workers started by `worker`.
    pub fn new(worker: WorkerCommand) -> Self {
        Options {
            speed: 300.0,
            start_step: 0,
            duration: None,
            slice: Duration::from_millis(10),
            subtree: format!("{SUBTREE_PREFIX}{}", std::process::id()),
            subtree_cpu_cap: None,
            subtree_cpu_weight: None,
            worker,
        }
    }
}

/// The cgroup hierarchies of this host based at `parent` (the same path
/// in every hierarchy) or, without one, at this process's own cgroups.
pub fn live_fs(parent: Option<&CgroupPath>) -> Result<CgroupFs, LoadgenError> {
    let fs = CgroupFs::detect(Root::live())?;
    if fs.layout().kind() == LayoutKind::None {
        return Err(LoadgenError::NoCgroups(
            "no cgroup filesystem is mounted".into(),
        ));
    }
    match parent {
        None => Ok(fs.based_at_process("self", &CgroupPath::root())?),
        Some(p) => {
            let ids: Vec<HierarchyId> = fs.hierarchies().map(|h| fs.id_of(h)).collect();
            let mut fs = fs;
            for id in ids {
                fs = fs.with_base(&id, p.clone())?;
            }
            Ok(fs)
        }
    }
}

/// One workload as started: where its cgroup is.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadCgroup {
    /// The workload's name in the trace.
    pub name: String,
    /// Its cgroup, relative to the bases of the [`CgroupFs`] the loadgen was
    /// started with (`/<subtree>/<name>`).
    pub cgroup: CgroupPath,
    /// Its directory in each hierarchy it was created in.
    pub dirs: Vec<(HierarchyId, PathBuf)>,
    /// The first worker's pid (a worker that dies is restarted with another).
    pub pid: i32,
}

/// A worker process.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    restarts: u32,
}

/// A running loadgen. Dropping it ends its workers (by pid) and removes
/// its cgroups.
pub struct Loadgen {
    scenario: Scenario,
    opts: Options,
    timing: Timing,
    steps: usize,
    next_step: usize,
    fs: CgroupFs,
    grouper: Grouper,
    collector: Collector,
    subtree: CgroupPath,
    workloads: Vec<WorkloadCgroup>,
    workers: Vec<Option<Worker>>,
    record: Arc<Mutex<Record>>,
    started: Option<Instant>,
    /// Usage (µs) at the end of the last step, per workload.
    last_usage: Vec<Option<u64>>,
    cleaned: bool,
}

impl std::fmt::Debug for Loadgen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loadgen")
            .field("host", &self.scenario.host)
            .field("subtree", &self.subtree)
            .field("workloads", &self.workloads.len())
            .field("steps", &self.steps)
            .finish()
    }
}

impl Loadgen {
    /// Creates the subtree `opts.subtree` under the bases of `fs` (see
    /// [`live_fs`]), a cgroup and a worker per workload of `scenario`
    /// (idle until [`Loadgen::run`]); caps the subtree when asked. On an
    /// error, whatever was made is undone.
    pub fn start(
        fs: &CgroupFs,
        scenario: Scenario,
        opts: Options,
    ) -> Result<Loadgen, LoadgenError> {
        if !(opts.speed.is_finite() && opts.speed > 0.0) {
            return Err(LoadgenError::Option {
                name: "speed",
                why: format!("{} is not a positive number", opts.speed),
            });
        }
        let timing = Timing {
            step_secs: scenario.step_secs as f64,
            speed: opts.speed,
        };
        if timing.step_wall() < Duration::from_millis(50) {
            return Err(LoadgenError::Option {
                name: "speed",
                why: format!(
                    "{} makes a {} s trace step last {:?}; at least 50 ms is needed to measure it",
                    opts.speed,
                    scenario.step_secs,
                    timing.step_wall()
                ),
            });
        }
        if !(Duration::from_micros(100)..=Duration::from_secs(1)).contains(&opts.slice) {
            return Err(LoadgenError::Option {
                name: "slice",
                why: format!("{:?} is outside 100 µs ..= 1 s", opts.slice),
            });
        }
        if scenario.workloads.is_empty() {
            return Err(LoadgenError::Option {
                name: "workloads",
                why: format!("host {:?} has no workload to play", scenario.host),
            });
        }
        let available = scenario.steps();
        if opts.start_step >= available {
            return Err(LoadgenError::Option {
                name: "start step",
                why: format!(
                    "{} is past the trace's last step ({})",
                    opts.start_step,
                    available.saturating_sub(1)
                ),
            });
        }
        if let Some(c) = opts.subtree_cpu_cap
            && !(c.is_finite() && c > 0.0)
        {
            return Err(LoadgenError::Option {
                name: "subtree cpu cap",
                why: format!("{c} is not a positive number of cores"),
            });
        }
        if let Some(w) = opts.subtree_cpu_weight
            && !(1..=10_000).contains(&w)
        {
            return Err(LoadgenError::Option {
                name: "subtree cpu weight",
                why: format!("{w} is outside 1..=10000"),
            });
        }
        let subtree = CgroupPath::root()
            .join(&opts.subtree)
            .map_err(|e| LoadgenError::Option {
                name: "subtree",
                why: e.to_string(),
            })?;
        let steps = timing.steps_for(opts.duration, available - opts.start_step);
        let peak = peak_memory(&scenario, opts.start_step, steps);
        if let Some(avail) = mem_available()
            && peak > avail / 10 * 8
        {
            return Err(LoadgenError::Option {
                name: "memory",
                why: format!(
                    "the workloads would hold up to {} MiB together, more than 80% of the {} MiB available; scale memory down",
                    peak >> 20,
                    avail >> 20
                ),
            });
        }
        let grouper = Grouper::new(fs);
        if grouper.hierarchies().is_empty() {
            return Err(LoadgenError::NoCgroups(
                "no v2, cpu, cpuacct or memory hierarchy is mounted".into(),
            ));
        }
        for h in grouper.hierarchies() {
            remove_stale_subtrees(h.base_dir(), SUBTREE_PREFIX);
            let dir = h.dir(&subtree);
            if dir.exists() {
                return Err(LoadgenError::NoCgroups(format!(
                    "{} exists already (another loadgen's?)",
                    dir.display()
                )));
            }
        }
        let mut lg = Loadgen {
            workloads: Vec::new(),
            workers: Vec::new(),
            last_usage: vec![None; scenario.workloads.len()],
            scenario,
            opts,
            timing,
            steps,
            next_step: 0,
            fs: fs.clone(),
            collector: Collector::new(fs),
            grouper,
            subtree,
            record: Arc::new(Mutex::new(Record::default())),
            started: None,
            cleaned: false,
        };
        // From here on, Drop undoes what is done.
        lg.grouper.ensure_group(&lg.subtree)?;
        if lg.opts.subtree_cpu_cap.is_some() || lg.opts.subtree_cpu_weight.is_some() {
            let mut e = enforcer_for(&lg.fs)?;
            if let Some(cores) = lg.opts.subtree_cpu_cap {
                e.write(&lg.subtree, &Setting::CpuMax(CpuMax::cores(cores)))?;
            }
            if let Some(w) = lg.opts.subtree_cpu_weight {
                e.write(&lg.subtree, &Setting::CpuWeight(w))?;
            }
        }
        let names: Vec<&str> = lg
            .scenario
            .workloads
            .iter()
            .map(|w| w.name.as_str())
            .collect();
        let dirs = cgroup_names(&names);
        for (i, dir) in dirs.iter().enumerate() {
            let cg = lg.subtree.join(dir).map_err(|e| LoadgenError::Option {
                name: "workload",
                why: e.to_string(),
            })?;
            lg.grouper.ensure_group(&cg)?;
            let name = lg.scenario.workloads[i].name.clone();
            let w = lg.spawn_worker(i, &name, &cg)?;
            lg.workloads.push(WorkloadCgroup {
                dirs: lg
                    .grouper
                    .hierarchies()
                    .iter()
                    .map(|h| (lg.fs.id_of(h), h.dir(&cg)))
                    .collect(),
                pid: w.child.id() as i32,
                name,
                cgroup: cg,
            });
            lg.workers.push(Some(w));
        }
        Ok(lg)
    }

    fn spawn_worker(
        &self,
        index: usize,
        name: &str,
        cg: &CgroupPath,
    ) -> Result<Worker, LoadgenError> {
        let args = WorkerArgs {
            slice: self.opts.slice,
            seed: index as u64 ^ u64::from(std::process::id()) << 16,
        };
        let mut cmd = std::process::Command::new(&self.opts.worker.program);
        cmd.args(&self.opts.worker.args)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // Its own process group: a terminal's Ctrl-C reaches the loadgen,
        // which ends the workers itself (and they end at the pipe's close
        // if it cannot).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|source| LoadgenError::Spawn {
            workload: name.to_string(),
            program: self.opts.worker.program.clone(),
            source,
        })?;
        let pid = child.id() as i32;
        let r = self.grouper.move_pids(cg, &[pid]);
        if r.moved != [pid] {
            let _ = child.kill();
            let _ = child.wait();
            let why = match r.failed.first() {
                Some((_, dir, e)) => format!("{}: {e}", dir.display()),
                None => "it exited at once (is the worker command right?)".into(),
            };
            return Err(LoadgenError::Move {
                workload: name.to_string(),
                pid,
                why,
            });
        }
        let stdin = child.stdin.take();
        Ok(Worker {
            child,
            stdin,
            restarts: 0,
        })
    }

    /// The workloads, their cgroups and first pids, in scenario order.
    pub fn workloads(&self) -> &[WorkloadCgroup] {
        &self.workloads
    }

    /// The subtree (relative to the bases of the [`CgroupFs`] given).
    pub fn subtree(&self) -> &CgroupPath {
        &self.subtree
    }

    /// The subtree's directory in each hierarchy.
    pub fn subtree_dirs(&self) -> Vec<(HierarchyId, PathBuf)> {
        self.grouper
            .hierarchies()
            .iter()
            .map(|h| (self.fs.id_of(h), h.dir(&self.subtree)))
            .collect()
    }

    /// How many steps a full run plays.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The wall time of one step.
    pub fn step_wall(&self) -> Duration {
        self.timing.step_wall()
    }

    /// The scenario played.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The record so far.
    pub fn record(&self) -> Record {
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A handle on the record that fills as the loadgen runs (for a live
    /// view from another thread).
    pub fn shared_record(&self) -> Arc<Mutex<Record>> {
        self.record.clone()
    }

    /// Plays the steps not played yet, until the last or until `stop` is
    /// set (the step under way is then recorded for the time it ran).
    /// Calls `on_step` with each step's rows.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_step: impl FnMut(&[StepRow]),
    ) -> Result<(), LoadgenError> {
        let step_wall = self.timing.step_wall();
        if self.next_step == 0 {
            self.warm_up(stop);
            for i in 0..self.workloads.len() {
                self.last_usage[i] = self.read(i).0;
            }
        }
        let t0 = *self.started.get_or_insert_with(Instant::now);
        while self.next_step < self.steps && !stop.load(Ordering::Relaxed) {
            let step = self.next_step;
            let idx = self.opts.start_step + step;
            let begin = Instant::now();
            let asked: Vec<(f64, u64)> = self
                .scenario
                .workloads
                .iter()
                .map(|w| {
                    let cpu = w.cpu.get(idx).copied().unwrap_or(0.0).max(0.0);
                    let mem = w
                        .memory
                        .as_ref()
                        .and_then(|m| m.get(idx).copied())
                        .unwrap_or(0.0);
                    (cpu, mem.clamp(0.0, u64::MAX as f64) as u64)
                })
                .collect();
            for (i, &(cores, bytes)) in asked.iter().enumerate() {
                self.command(i, Command::Set { cores, bytes });
            }
            let deadline = t0 + step_wall * (step as u32 + 1);
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                thread::sleep((deadline - now).min(Duration::from_millis(20)));
            }
            let end = Instant::now();
            let wall = end.duration_since(begin).as_secs_f64();
            let mut rows = Vec::with_capacity(asked.len());
            for (i, &(cores, bytes)) in asked.iter().enumerate() {
                let (usage, mem) = self.read(i);
                let got = match (self.last_usage[i], usage) {
                    (Some(a), Some(b)) if wall > 0.0 => {
                        Some(b.saturating_sub(a) as f64 / 1e6 / wall)
                    }
                    _ => None,
                };
                self.last_usage[i] = usage;
                rows.push(StepRow {
                    step,
                    trace_ts: self.scenario.start + idx as i64 * self.scenario.step_secs,
                    start_s: begin.duration_since(t0).as_secs_f64(),
                    wall_s: wall,
                    workload: self.workloads[i].name.clone(),
                    cpu_asked: cores,
                    cpu_got: got,
                    mem_asked: bytes,
                    mem_held: mem,
                    restarts: self.workers[i].as_ref().map_or(0, |w| w.restarts),
                });
            }
            on_step(&rows);
            self.record
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .rows
                .extend(rows);
            self.next_step += 1;
            if !stop.load(Ordering::Relaxed) {
                self.restart_dead()?;
            }
        }
        Ok(())
    }

    /// Before the clock starts: has the workers take the first step's
    /// memory (no CPU yet) and waits, up to [`WARM_UP_LIMIT`], until their
    /// cgroups hold 90% of it, so the first step's CPU figures are not
    /// those of page faults.
    fn warm_up(&mut self, stop: &AtomicBool) {
        let idx = self.opts.start_step;
        let want: Vec<u64> = self
            .scenario
            .workloads
            .iter()
            .map(|w| {
                let m = w.memory.as_ref().and_then(|m| m.get(idx).copied());
                m.unwrap_or(0.0).clamp(0.0, u64::MAX as f64) as u64
            })
            .collect();
        if want.iter().all(|&b| b == 0) {
            return;
        }
        for (i, &bytes) in want.iter().enumerate() {
            self.command(i, Command::Set { cores: 0.0, bytes });
        }
        let t = Instant::now();
        while t.elapsed() < WARM_UP_LIMIT && !stop.load(Ordering::Relaxed) {
            let held = (0..want.len()).all(|i| {
                let m = self.read(i).1.unwrap_or(0);
                m as f64 >= 0.9 * want[i] as f64
            });
            if held {
                return;
            }
            let died = self
                .workers
                .iter_mut()
                .flatten()
                .any(|w| !matches!(w.child.try_wait(), Ok(None)));
            if died {
                // Over a memory limit, say: the steps will restart it.
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        log::warn!("loadgen: the workers did not take their memory within {WARM_UP_LIMIT:?}");
    }

    /// The cpu usage (µs) and memory (bytes) of workload `i`'s cgroup.
    fn read(&mut self, i: usize) -> (Option<u64>, Option<u64>) {
        let mut errors = Vec::new();
        let s = self
            .collector
            .sample(&self.workloads[i].cgroup, 0, &mut errors);
        for e in errors {
            log::warn!("loadgen: {e}");
        }
        match s {
            Some(s) => (s.cpu.and_then(|c| c.usage_usec), s.memory_current),
            None => (None, None),
        }
    }

    /// Sends a command to worker `i`; a worker that cannot take it is
    /// left for [`Loadgen::restart_dead`].
    fn command(&mut self, i: usize, c: Command) {
        if let Some(w) = self.workers[i].as_mut()
            && let Some(stdin) = w.stdin.as_mut()
            && stdin
                .write_all(c.line().as_bytes())
                .and_then(|()| stdin.flush())
                .is_err()
        {
            w.stdin = None;
        }
    }

    /// Restarts the workers that died (an OOM kill, say) in their
    /// cgroups; they take their level at the next step.
    fn restart_dead(&mut self) -> Result<(), LoadgenError> {
        for i in 0..self.workers.len() {
            let dead = match self.workers[i].as_mut() {
                Some(w) => !matches!(w.child.try_wait(), Ok(None)),
                None => true,
            };
            if !dead {
                continue;
            }
            let restarts = self.workers[i].as_ref().map_or(0, |w| w.restarts) + 1;
            if let Some(mut old) = self.workers[i].take() {
                let status = old.child.wait();
                log::warn!(
                    "loadgen: the worker of {} ended ({status:?}); restarting it",
                    self.workloads[i].name
                );
            }
            let (name, cg) = (
                self.workloads[i].name.clone(),
                self.workloads[i].cgroup.clone(),
            );
            let mut w = self.spawn_worker(i, &name, &cg)?;
            w.restarts = restarts;
            self.workers[i] = Some(w);
        }
        Ok(())
    }

    /// Ends the workers and removes the cgroups; returns the record.
    pub fn finish(mut self) -> Record {
        self.cleanup();
        self.record()
    }

    /// Runs the loadgen to its end on a thread of its own.
    pub fn spawn(mut self) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let record = self.shared_record();
        let workloads = self.workloads.clone();
        let subtree = self.subtree.clone();
        let step_wall = self.step_wall();
        let steps = self.steps;
        let s = stop.clone();
        let handle = thread::spawn(move || {
            let r = self.run(&s, |_| {});
            let record = self.finish();
            r.map(|()| record)
        });
        Running {
            workloads,
            subtree,
            step_wall,
            steps,
            stop,
            record,
            handle: Some(handle),
        }
    }

    fn cleanup(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        for w in self.workers.iter_mut().flatten() {
            w.stdin = None;
            let _ = w.child.kill();
            let _ = w.child.wait();
        }
        for h in self.grouper.hierarchies() {
            let dir = h.dir(&self.subtree);
            if let Err(e) = remove_cgroup_tree(&dir) {
                log::warn!("loadgen: could not remove cgroup {}: {e}", dir.display());
            }
        }
    }
}

impl Drop for Loadgen {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// A loadgen running on its own thread ([`Loadgen::spawn`]). Dropping it
/// stops the loadgen and waits for its cleanup.
#[derive(Debug)]
pub struct Running {
    workloads: Vec<WorkloadCgroup>,
    subtree: CgroupPath,
    step_wall: Duration,
    steps: usize,
    stop: Arc<AtomicBool>,
    record: Arc<Mutex<Record>>,
    handle: Option<JoinHandle<Result<Record, LoadgenError>>>,
}

impl Running {
    /// The workloads and their cgroups.
    pub fn workloads(&self) -> &[WorkloadCgroup] {
        &self.workloads
    }

    /// The subtree.
    pub fn subtree(&self) -> &CgroupPath {
        &self.subtree
    }

    /// The wall time of one step.
    pub fn step_wall(&self) -> Duration {
        self.step_wall
    }

    /// How many steps a full run plays.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The record so far.
    pub fn snapshot(&self) -> Record {
        self.record
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the loadgen has ended (played every step, or failed).
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops the loadgen (the step under way is recorded for the time it
    /// ran), waits for its cleanup and returns the record.
    pub fn stop(mut self) -> Result<Record, LoadgenError> {
        self.stop.store(true, Ordering::Relaxed);
        self.join()
    }

    /// Waits for the loadgen to play every step, then returns the record.
    pub fn wait(mut self) -> Result<Record, LoadgenError> {
        self.join()
    }

    fn join(&mut self) -> Result<Record, LoadgenError> {
        match self.handle.take() {
            Some(h) => h.join().map_err(|_| LoadgenError::Panicked)?,
            None => Ok(self.snapshot()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.join();
    }
}

/// The most memory the workloads ask for together in any step of
/// `start..start + steps`, bytes.
pub fn peak_memory(scenario: &Scenario, start: usize, steps: usize) -> u64 {
    (start..start + steps)
        .map(|i| {
            scenario
                .workloads
                .iter()
                .filter_map(|w| w.memory.as_ref()?.get(i).copied())
                .map(|b| b.clamp(0.0, u64::MAX as f64) as u64)
                .fold(0u64, u64::saturating_add)
        })
        .max()
        .unwrap_or(0)
}

/// `MemAvailable` of /proc/meminfo, bytes.
fn mem_available() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::WorkloadTrace;

    #[test]
    fn peak_memory_is_the_largest_step_total() {
        let w = |cpu: Vec<f64>, memory: Option<Vec<f64>>| WorkloadTrace {
            name: "w".into(),
            cpu,
            memory,
        };
        let s = Scenario {
            host: "h".into(),
            start: 0,
            step_secs: 300,
            workloads: vec![
                w(vec![0.0; 3], Some(vec![1.0, 5.0, 2.0])),
                w(vec![0.0; 3], Some(vec![4.0, 1.0, 9.0])),
                w(vec![0.0; 3], None),
            ],
        };
        assert_eq!(peak_memory(&s, 0, 3), 11);
        assert_eq!(peak_memory(&s, 0, 2), 6);
        assert_eq!(peak_memory(&s, 5, 2), 0);
        assert!(mem_available().is_some_and(|m| m > 0));
    }
}
