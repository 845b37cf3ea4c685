//! Reaction: how long after the solver makes a plan its last cgroup write
//! has landed, in the real agent ([`Agent`] stepped plan by plan, with
//! the real collector and discovery, the real store, and the real
//! enforcer for this host's hierarchies) on 200 real cgroups, each holding
//! a `sleep` this bench started. The target is 100 ms for every plan.
//!
//! Every plan changes every cgroup's memory limits: before each planning
//! tick the configuration is reloaded with the workloads' memory guarantee
//! flipped between 48 MiB and 80 MiB (the `sleep`s want none, so the
//! allocation is the guarantee), so each plan is at least 400 writes
//! (`memory.high` and `memory.max`, or v1 `memory.soft_limit_in_bytes` and
//! `memory.limit_in_bytes`). The clock is stepped by hand, one planning
//! interval per tick, so every tick plans.
//!
//! Measured per plan, with a wrapper around the enforcer that stamps each
//! call (`Instant`):
//! - reaction (upper bound): the last write's return minus the end of the
//!   solve stage. The solve end is not observed directly; it is bounded
//!   from below by the tick's start plus the durations the agent recorded
//!   for this tick's stages before enforcement (sample, rollup, discover,
//!   forecast, solve), so the figure can only overstate the reaction.
//! - reference: the plan's memory-limit writes (same files, same values)
//!   done again directly, one open and `write(2)` each, with no reads or
//!   guardrails, timed in the same run right after each plan.
//! - the enforce stage as the agent timed it (reads, guardrails, writes).
//!
//! After each plan one cgroup's files are read back to check the writes
//! landed.
//!
//! `cargo bench -p prescient-agent --bench reaction` (40 plans; `--quick`
//! or PRESCIENT_BENCH_PLANS=N to change). Needs root and a cgroup
//! filesystem; without them it says why and exits.

mod support;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use prescient_agent::config::Config;
use prescient_agent::{Agent, Clock, LinuxObserver, Machine, Signals, StoreSink, resolve};
use prescient_core::TimestampMs;
use prescient_linux::enforce::{EnforceError, Knob, Observed, Setting};
use prescient_linux::{CgroupPath, Enforcer, ProcFs, Root};

use support::tree::{Tree, sleepers};

const CGROUPS: usize = 200;
const TARGET_MS: f64 = 100.0;
const PLAN_INTERVAL_MS: i64 = 10_000;
const GUARANTEES_MIB: [u64; 2] = [48, 80];

/// The agent's clock, stepped by the bench.
#[derive(Clone)]
struct ManualClock(Rc<Cell<TimestampMs>>);

impl Clock for ManualClock {
    fn now_ms(&self) -> TimestampMs {
        self.0.get()
    }
    fn wait_until(&mut self, _t: TimestampMs, _signals: &Signals) {}
}

/// The real enforcer, with every write stamped.
struct Stamped<E> {
    inner: E,
    writes: RefCell<Vec<(Instant, CgroupPath, Setting)>>,
}

impl<E: Enforcer> Enforcer for Stamped<E> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn read(&self, cgroup: &CgroupPath) -> Result<Observed, EnforceError> {
        self.inner.read(cgroup)
    }
    fn read_knobs(&self, cgroup: &CgroupPath, knobs: &[Knob]) -> Result<Observed, EnforceError> {
        self.inner.read_knobs(cgroup, knobs)
    }
    fn write(&mut self, cgroup: &CgroupPath, setting: &Setting) -> Result<(), EnforceError> {
        let r = self.inner.write(cgroup, setting);
        if r.is_ok() {
            self.writes
                .borrow_mut()
                .push((Instant::now(), cgroup.clone(), *setting));
        }
        r
    }
    fn target(&self, cgroup: &CgroupPath, knob: Knob) -> String {
        self.inner.target(cgroup, knob)
    }
}

fn config(tree: &Tree, db: &Path, guarantee_mib: u64) -> Config {
    let text = format!(
        r#"[agent]
mode = "enforce"
host = "bench"
sample_interval = "1s"
forecast_step = "10s"
plan_interval = "10s"
plan_steps = 3
[store]
path = "{}"
flush_interval = "10s"
checkpoint_interval = "60s"
[cgroup]
subtree = "/{}"
relative_to = "self"
restore_on_exit = true
[enforce]
memory_max_factor = 1.5
memory_headroom = "1MiB"
[[pool]]
name = "host"
[[workload]]
name = "w"
cgroup = "/w*"
[workload.memory]
guarantee = "{guarantee_mib}MiB"
"#,
        db.display(),
        tree.name
    );
    Config::from_toml(&text, Path::new("reaction.toml")).expect("the bench's config is valid")
}

fn plans_wanted() -> usize {
    if let Some(n) = std::env::var("PRESCIENT_BENCH_PLANS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    if std::env::args().any(|a| a == "--quick") {
        10
    } else {
        40
    }
}

fn main() {
    if let Some(why) = support::tree::unavailable() {
        println!("reaction: SKIPPED: {why}");
        return;
    }
    if let Err(e) = run(plans_wanted()) {
        eprintln!("reaction: FAILED: {e}");
        std::process::exit(1);
    }
}

fn stage_last(agent_times: &prescient_agent::StageTimes, stage: &str) -> (u64, f64) {
    agent_times
        .get(stage)
        .map_or((0, 0.0), |s| (s.count, s.last_seconds))
}

/// The file a v1 or v2 memory setting lands in, and its text.
fn file_of(tree: &Tree, cg: &CgroupPath, s: &Setting) -> Option<(PathBuf, String)> {
    let h = tree.fs.for_controller("memory")?;
    let v2 = h.mount.version == prescient_linux::layout::Version::V2;
    let dir = h.dir(cg);
    let (file, text) = match s {
        Setting::MemoryHigh(m) if v2 => ("memory.high", Setting::MemoryHigh(*m).v2_text()),
        Setting::MemoryMax(m) if v2 => ("memory.max", Setting::MemoryMax(*m).v2_text()),
        Setting::MemoryHigh(m) => ("memory.soft_limit_in_bytes", m.as_u64().to_string()),
        Setting::MemoryMax(m) => ("memory.limit_in_bytes", m.as_u64().to_string()),
        _ => return None,
    };
    Some((dir.join(file), text))
}

fn run(plans: usize) -> Result<(), String> {
    let cgroups: Vec<String> = (0..CGROUPS).map(|i| format!("/w{i:03}")).collect();
    let tree = sleepers("reaction", &cgroups)?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let db = tmp.path().join("agent.db");
    let machine = Machine::detect();
    let first =
        resolve(config(&tree, &db, GUARANTEES_MIB[0]), &machine).map_err(|e| e.to_string())?;
    let fs = prescient_agent::cgroup_fs(Root::live(), &first.cgroup).map_err(|e| e.to_string())?;
    let enforcer = Stamped {
        inner: prescient_linux::enforce::enforcer_for(&fs).map_err(|e| e.to_string())?,
        writes: RefCell::new(Vec::new()),
    };
    let backend = enforcer.name();
    let observer = LinuxObserver::new(fs, ProcFs::new(Root::live()));
    let sink = StoreSink::open(&db).map_err(|e| e.to_string())?;
    let now = Rc::new(Cell::new(prescient_agent::ports::wall_ms()));
    let clock = ManualClock(Rc::clone(&now));
    let mut agent = Agent::new(first, machine, observer, sink, Some(enforcer), clock);
    agent.start();
    println!(
        "reaction: the agent ({backend} enforcer) planning for {CGROUPS} real cgroups under {}, memory guarantees flipped {:?} MiB every plan; {plans} plans",
        tree.name, GUARANTEES_MIB
    );

    let mut reactions = Vec::new();
    let mut enforce_ms = Vec::new();
    let mut references = Vec::new();
    let mut writes_per_plan = Vec::new();
    // Plan 0 writes the first limits (and cpu), then every plan flips them.
    for k in 0..=plans {
        let g = GUARANTEES_MIB[k % 2];
        agent.reload(Ok(config(&tree, &db, g)));
        now.set(now.get() + PLAN_INTERVAL_MS);
        let before: Vec<(u64, f64)> = [
            "sample", "rollup", "discover", "forecast", "solve", "enforce",
        ]
        .iter()
        .map(|s| stage_last(agent.times(), s))
        .collect();
        let plans_before = agent.counters().plans;
        if let Some(e) = agent.enforcer() {
            e.writes.borrow_mut().clear();
        }
        let tick_start = Instant::now();
        agent.tick();
        let after: Vec<(u64, f64)> = [
            "sample", "rollup", "discover", "forecast", "solve", "enforce",
        ]
        .iter()
        .map(|s| stage_last(agent.times(), s))
        .collect();
        if agent.counters().plans == plans_before {
            return Err(format!("tick {k} made no plan: {:?}", agent.counters()));
        }
        let writes = agent
            .enforcer()
            .map(|e| std::mem::take(&mut *e.writes.borrow_mut()))
            .unwrap_or_default();
        let Some((last, _, _)) = writes.last() else {
            return Err(format!("plan {k} wrote nothing: {:?}", agent.counters()));
        };
        // The stages before enforcement that ran in this tick.
        let before_enforce: f64 = (0..5)
            .filter(|&i| after[i].0 > before[i].0)
            .map(|i| after[i].1)
            .sum();
        let reaction = (last.duration_since(tick_start).as_secs_f64() - before_enforce) * 1000.0;
        // Check the writes landed: one cgroup's files read back.
        for (_, cg, s) in writes
            .iter()
            .filter(|(_, cg, _)| cg.as_str().ends_with("w000"))
        {
            if let Some((path, want)) = file_of(&tree, cg, s) {
                let got = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if got.trim() != want {
                    return Err(format!(
                        "{}: wrote {want}, reads {}",
                        path.display(),
                        got.trim()
                    ));
                }
            }
        }
        // Reference: the same writes, straight to the files (same values
        // again: the kernel does the same work).
        let files: Vec<(PathBuf, String)> = writes
            .iter()
            .filter_map(|(_, cg, s)| file_of(&tree, cg, s))
            .collect();
        let t = Instant::now();
        for (path, text) in &files {
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let reference = t.elapsed().as_secs_f64() * 1000.0;
        if k == 0 {
            // The first plan also sets every cgroup's cpu limits once.
            continue;
        }
        if files.len() < 2 * CGROUPS {
            return Err(format!(
                "plan {k}: {} writes, {} of them memory limits",
                writes.len(),
                files.len()
            ));
        }
        if k == 1 {
            let mut by_knob = std::collections::BTreeMap::new();
            for (_, _, s) in &writes {
                *by_knob.entry(s.knob().to_string()).or_insert(0) += 1;
            }
            println!("  writes of plan 1 by knob: {by_knob:?}");
        }
        reactions.push(reaction);
        enforce_ms.push(after[5].1 * 1000.0);
        references.push(reference);
        writes_per_plan.push(writes.len());
    }
    let summary = agent.shutdown();
    drop(agent);

    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (r_med, r_max) = stats(&mut reactions);
    let (e_med, e_max) = stats(&mut enforce_ms);
    let (ref_med, ref_max) = stats(&mut references);
    let n = writes_per_plan.len();
    println!(
        "  {n} plans measured, {} limit writes each (median), {} restored at shutdown",
        {
            writes_per_plan.sort_unstable();
            writes_per_plan[n / 2]
        },
        summary.counters.restored
    );
    println!(
        "  reference (the plan's memory-limit writes again, direct): median {ref_med:.2} ms, max {ref_max:.2} ms"
    );
    println!(
        "  enforce stage (reads, guardrails, writes): median {e_med:.2} ms, max {e_max:.2} ms"
    );
    println!(
        "reaction: plan made -> last cgroup write landed (upper bound): median {r_med:.2} ms, max {r_max:.2} ms; target every plan < {TARGET_MS} ms: {}",
        if r_max < TARGET_MS { "MET" } else { "NOT MET" }
    );
    drop(tmp);
    drop(tree);
    Ok(())
}
