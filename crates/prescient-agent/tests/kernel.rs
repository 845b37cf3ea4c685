//! The real agent on the real kernel, for a few seconds, in recommend and
//! in enforce mode, against a cgroup subtree each test creates under the
//! test process's own cgroup (read from /proc/self/cgroup), with `sleep`
//! and busy-loop children it starts and moves itself. Only those children
//! are ever killed (through their `Child` handles); the subtree is removed
//! when the test ends, on a panic too (an RAII guard).
//!
//! They need root and a cgroup filesystem. Without them they print why and
//! skip, unless PRESCIENT_REQUIRE_KERNEL_TESTS=1 (as CI sets), when they
//! fail instead.
//!
//! The subtree guard follows prescient-linux's kernel tests (same naming,
//! same stale-subtree cleanup, same CPU lock file, so that busy loops here
//! and their latency measurement never overlap).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::Duration;

use prescient_agent::config::{Config, Mode, RelativeTo};
use prescient_agent::{ConfigSource, RunOptions, Signals};
use prescient_core::{HostId, Resource, SeriesKey};
use prescient_linux::layout::{HierarchyId, Version};
use prescient_linux::{CgroupFs, CgroupPath, Grouper, LayoutKind, ProcFs, Root};
use prescient_store::{Resolution, Store};

const REQUIRE: &str = "PRESCIENT_REQUIRE_KERNEL_TESTS";
const V1_USED: [&str; 4] = ["cpu", "cpuacct", "memory", "blkio"];

fn p(s: &str) -> CgroupPath {
    CgroupPath::parse(s).unwrap()
}

fn unavailable(test: &str, why: &str) {
    if std::env::var(REQUIRE).as_deref() == Ok("1") {
        panic!("{test}: {REQUIRE}=1 but {why}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why} (set {REQUIRE}=1 to make this a failure)"
    );
}

fn live(test: &str) -> Option<CgroupFs> {
    let me = std::process::id() as i32;
    let status = ProcFs::new(Root::live()).status(me, None);
    let euid = status.ok().flatten().and_then(|s| s.uid).map(|u| u[1]);
    if euid != Some(0) {
        unavailable(test, &format!("not running as root (euid {euid:?})"));
        return None;
    }
    let fs = match CgroupFs::detect(Root::live()) {
        Ok(fs) => fs,
        Err(e) => {
            unavailable(test, &format!("cannot read the mounts: {e}"));
            return None;
        }
    };
    if fs.layout().kind() == LayoutKind::None {
        unavailable(test, "no cgroup filesystem is mounted");
        return None;
    }
    Some(fs)
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// prescient-linux's kernel tests' CPU lock (see there): held shared while
/// a busy loop runs.
struct CpuLock(#[allow(dead_code)] fs::File);

fn cpu_lock() -> CpuLock {
    use rustix::fs::{FlockOperation, flock};
    let path = std::env::temp_dir().join("prescient-linux-kernel-tests.lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    flock(&f, FlockOperation::LockShared)
        .unwrap_or_else(|e| panic!("flock {}: {e}", path.display()));
    CpuLock(f)
}

/// The test's subtree `prescient-test-<pid>-<test>-<n>` under the test
/// process's cgroup in the v2 hierarchy and the v1 cpu, cpuacct, memory and
/// blkio ones. Dropping it kills the children it started, waits for them,
/// then removes every cgroup under the subtree, children first.
struct TestTree {
    name: String,
    fs: CgroupFs,
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
    _hogging: Option<CpuLock>,
}

impl TestTree {
    fn new(test: &str) -> Option<TestTree> {
        let live = live(test)?;
        let name = format!(
            "prescient-test-{}-{}-{}",
            std::process::id(),
            test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let own = live
            .clone()
            .based_at_process("self", &CgroupPath::root())
            .unwrap();
        let fs = live.based_at_process("self", &p(&name)).unwrap();
        let mut tree = TestTree {
            name,
            fs,
            dirs: Vec::new(),
            children: Vec::new(),
            _hogging: None,
        };
        let used: Vec<HierarchyId> = own
            .hierarchies()
            .filter(|h| h.mount.version == Version::V2 || V1_USED.iter().any(|c| h.has(c)))
            .map(|h| own.id_of(h))
            .collect();
        for id in &used {
            let own_dir = own.hierarchy(id).unwrap().dir(&CgroupPath::root());
            remove_stale(&own_dir);
            let dir = own_dir.join(&tree.name);
            fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            tree.dirs.push(dir);
        }
        Some(tree)
    }

    fn spawn(&mut self, cmd: &mut Command) -> i32 {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let pid = child.id() as i32;
        self.children.push(child);
        pid
    }

    fn spawn_busy(&mut self) -> i32 {
        if self._hogging.is_none() {
            self._hogging = Some(cpu_lock());
        }
        self.spawn(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null()),
        )
    }

    fn spawn_sleep(&mut self) -> i32 {
        self.spawn(Command::new("sleep").arg("600").stdin(Stdio::null()))
    }

    /// Creates `cg` in every hierarchy and moves `pid` there.
    fn group(&self, cg: &str, pid: i32) {
        let g = Grouper::new(&self.fs);
        g.ensure_group(&p(cg)).unwrap();
        let r = g.move_pids(&p(cg), &[pid]);
        assert_eq!(r.moved, vec![pid], "{r:?}");
    }

    /// A file of `cg` in the hierarchy holding `controller`.
    fn read(&self, controller: &str, cg: &str, file: &str) -> Option<String> {
        let h = self.fs.for_controller(controller)?;
        fs::read_to_string(h.dir(&p(cg)).join(file))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The CPU weight knob as the enforcer writes it: v2 `cpu.weight` or
    /// v1 `cpu.shares`.
    fn cpu_weight(&self, cg: &str) -> String {
        self.read("cpu", cg, "cpu.weight")
            .or_else(|| self.read("cpu", cg, "cpu.shares"))
            .unwrap_or_else(|| panic!("no cpu.weight or cpu.shares for {cg}"))
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            remove_cgroup_tree(d);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..100 {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => sleep(Duration::from_millis(20)),
        }
    }
    eprintln!("could not remove {}", dir.display());
}

fn remove_stale(own_dir: &Path) {
    let Ok(rd) = fs::read_dir(own_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("prescient-test-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            remove_cgroup_tree(&e.path());
        }
    }
}

/// A config for the tree: `busy` and `idle` by cgroup glob, fast intervals.
fn config(tree: &TestTree, store: &Path, mode: Mode, restore: bool) -> Config {
    let text = format!(
        r#"
[agent]
mode = "{mode}"
host = "kernel-test"
sample_interval = "100ms"
forecast_step = "500ms"
plan_interval = "1s"
plan_steps = 2
[store]
path = "{}"
flush_interval = "1s"
checkpoint_interval = "1s"
[cgroup]
subtree = "/{}"
relative_to = "self"
restore_on_exit = {restore}
[[pool]]
name = "pool"
cpu = 2
memory = "2GiB"
[[workload]]
name = "busy"
cgroup = "/busy"
[[workload]]
name = "idle"
cgroup = "/idle"
"#,
        store.display(),
        tree.name
    );
    let c = Config::from_toml(&text, Path::new("kernel-test.toml")).unwrap();
    assert_eq!(c.cgroup.relative_to, RelativeTo::SelfCgroup);
    c
}

fn run(c: Config, secs: f64) -> prescient_agent::RunSummary {
    prescient_agent::run(
        &ConfigSource::Fixed(c),
        &RunOptions {
            duration: Some(Duration::from_secs_f64(secs)),
            control: None,
        },
        &Signals::new(),
    )
    .unwrap()
}

fn setup(test: &str) -> Option<TestTree> {
    let mut tree = TestTree::new(test)?;
    let busy = tree.spawn_busy();
    let idle = tree.spawn_sleep();
    tree.group("/busy", busy);
    tree.group("/idle", idle);
    Some(tree)
}

#[test]
fn recommend_mode_on_the_real_kernel_records_and_changes_nothing() {
    let test = "agent_recommend";
    let Some(tree) = setup(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let before = (tree.cpu_weight("/busy"), tree.cpu_weight("/idle"));
    let s = run(config(&tree, &db, Mode::Recommend, true), 3.0);
    assert_eq!(s.mode, Mode::Recommend);
    assert_eq!(s.workloads, ["busy", "idle"]);
    assert!(s.counters.sample_passes >= 15, "{:?}", s.counters);
    assert!(s.counters.plans >= 1, "{:?}", s.counters);
    assert_eq!(s.counters.writes, 0);
    assert_eq!(
        (tree.cpu_weight("/busy"), tree.cpu_weight("/idle")),
        before,
        "recommend mode writes nothing"
    );
    // The store has the busy loop's CPU (about one core) and the plans.
    let mut store = Store::open(&db).unwrap();
    let id = store
        .series_id(&SeriesKey {
            host: HostId("kernel-test".into()),
            workload: prescient_core::WorkloadId("busy".into()),
            resource: Resource::Cpu,
        })
        .unwrap();
    let cpu = store.range(id, 0, i64::MAX, Resolution::Raw).unwrap();
    assert!(cpu.len() >= 10, "{} samples", cpu.len());
    let mean = cpu.iter().map(|s| s.value).sum::<f64>() / cpu.len() as f64;
    assert!(mean > 0.3, "busy used {mean} cores");
    let plan = store
        .latest_plan(&HostId("pool".into()))
        .unwrap()
        .unwrap()
        .1;
    assert!(plan.entries.iter().any(|e| e.workload.0 == "busy"));
    for stage in ["sample", "forecast", "solve", "flush"] {
        assert!(s.times.get(stage).is_some(), "{stage} timed");
    }
    let st = prescient_agent::status::read(&mut store, 10).unwrap();
    assert_eq!(st.workloads.len(), 2);
    assert!(
        st.audit.iter().all(|a| a.action != "cgroup.write"),
        "{:?}",
        st.audit
    );
}

#[test]
fn enforce_mode_on_the_real_kernel_writes_the_plan_and_restores_it() {
    let test = "agent_enforce";
    let Some(tree) = setup(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let before = (tree.cpu_weight("/busy"), tree.cpu_weight("/idle"));

    // Without restore: the plan stays on the cgroups after the run.
    let s = run(config(&tree, &db, Mode::Enforce, false), 3.0);
    assert_eq!(s.mode, Mode::Enforce);
    assert!(s.counters.writes >= 2, "{:?}", s.counters);
    let busy: u64 = tree.cpu_weight("/busy").parse().unwrap();
    let idle: u64 = tree.cpu_weight("/idle").parse().unwrap();
    assert!(busy > idle, "busy {busy} idle {idle}");
    assert_ne!((busy.to_string(), idle.to_string()), before);
    let store = Store::open(&db).unwrap();
    let audit = store.audit_since(0, 1000).unwrap();
    assert!(
        audit
            .iter()
            .any(|(_, a)| a.action == "cgroup.write" && a.target.contains("busy")),
        "{audit:?}"
    );
    drop(store);

    // With restore: the run ends with the limits it found (the previous
    // run's), and a restart resumed the forecasters from the store.
    let s = run(config(&tree, &db, Mode::Enforce, true), 2.0);
    assert!(s.counters.resumed_forecasters >= 2, "{:?}", s.counters);
    assert!(s.counters.resumed_plans >= 1);
    assert_eq!(tree.cpu_weight("/busy"), busy.to_string(), "restored");
    assert_eq!(tree.cpu_weight("/idle"), idle.to_string(), "restored");
}
