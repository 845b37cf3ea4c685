//! The loadgen on the real kernel: a short run under the test process's
//! own cgroups (read from /proc/self/cgroup), in a subtree the loadgen
//! creates and removes (its Drop runs on a panic too, ending the workers it
//! started, by pid).
//!
//! They need root and a cgroup filesystem. Without them they print why and
//! skip, unless PRESCIENT_REQUIRE_KERNEL_TESTS=1 (as CI sets), when they
//! fail instead. The skip and the CPU lock shared with the other kernel
//! tests (held shared: these tests keep CPUs busy) are
//! `prescient_linux::testing`'s.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use prescient_linux::enforce::{CpuMax, MemoryLimit, Setting, enforcer_for};
use prescient_linux::testing::{self, skip_or_fail};
use prescient_linux::{CgroupFs, CgroupPath, ProcFs, Root};
use prescient_loadgen::{Loadgen, Options, Scenario, WorkerCommand};

/// The live hierarchies based at this process's own cgroups, or `None`
/// after `skip_or_fail`.
fn live(test: &str) -> Option<CgroupFs> {
    testing::live(test)?;
    match prescient_loadgen::live_fs(None) {
        Ok(fs) => Some(fs),
        Err(e) => {
            skip_or_fail(test, &format!("cgroups are unusable: {e}"));
            None
        }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn options(speed: f64, duration: Duration) -> Options {
    let mut o = Options::new(WorkerCommand::new(
        env!("CARGO_BIN_EXE_prescient-loadgen-worker"),
        &[],
    ));
    o.speed = speed;
    o.duration = Some(duration);
    o.subtree = format!(
        "prescient-loadgen-{}-test{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    o
}

/// A trace of host `h`: workloads `capped` and `free`, `cores` each and
/// 16 MiB of memory, `steps` steps of 300 s.
fn trace(dir: &Path, cores: f64, steps: usize) -> PathBuf {
    trace_with_memory(dir, cores, 16 << 20, steps)
}

fn trace_with_memory(dir: &Path, cores: f64, memory: u64, steps: usize) -> PathBuf {
    let mut text = String::from("timestamp,host,workload,resource,value\n");
    for w in ["capped", "free"] {
        for s in 0..steps {
            let ts = s * 300;
            text.push_str(&format!("{ts},h,{w},cpu,{cores}\n"));
            text.push_str(&format!("{ts},h,{w},memory,{memory}\n"));
        }
    }
    let path = dir.join("trace.csv");
    fs::write(&path, text).unwrap();
    path
}

fn gone(dirs: &[(prescient_linux::layout::HierarchyId, PathBuf)]) {
    for (_, d) in dirs {
        assert!(!d.exists(), "{} is still there", d.display());
    }
}

#[test]
fn a_capped_workload_shows_unserved_cpu_and_an_uncapped_one_hardly_any() {
    let test = "a_capped_workload_shows_unserved_cpu";
    let Some(fs) = live(test) else { return };
    let _lock = testing::cpu_lock(false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_trace(&trace(tmp.path(), 0.4, 20), "h").unwrap();
    // 0.5 s a step, 6 steps.
    let mut lg = Loadgen::start(&fs, scenario, options(600.0, Duration::from_secs(3))).unwrap();
    assert_eq!(lg.steps(), 6);
    let subtree_dirs = lg.subtree_dirs();
    let w = lg.workloads().to_vec();
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].name, "capped");
    assert_eq!(
        w[0].cgroup,
        CgroupPath::root()
            .join(lg.subtree().name())
            .unwrap()
            .join("capped")
            .unwrap()
    );
    for (_, d) in w.iter().flat_map(|w| &w.dirs) {
        assert!(d.is_dir(), "{}", d.display());
    }
    // The worker is in its cgroup in every hierarchy.
    let lines = ProcFs::new(Root::live())
        .cgroups(w[1].pid)
        .unwrap()
        .unwrap();
    let in_own = lines
        .iter()
        .filter(|l| l.path.ends_with(&format!("{}/free", lg.subtree().name())))
        .count();
    assert_eq!(in_own, w[1].dirs.len(), "{lines:?}");

    let mut e = match enforcer_for(&fs) {
        Ok(e) => e,
        Err(err) => {
            skip_or_fail(test, &format!("no enforcer: {err}"));
            return;
        }
    };
    if let Err(err) = e.write(&w[0].cgroup, &Setting::CpuMax(CpuMax::cores(0.1))) {
        skip_or_fail(test, &format!("cannot cap a cgroup's CPU here: {err}"));
        return;
    }
    // A high weight for both: on a busy shared machine the uncapped one
    // still gets what it asks, and the capped one's shortfall is the cap's.
    for cg in w.iter().map(|x| &x.cgroup).chain([lg.subtree()]) {
        e.write(cg, &Setting::CpuWeight(10_000)).unwrap();
    }
    let mut steps_seen = 0;
    lg.run(&AtomicBool::new(false), |rows| {
        steps_seen += 1;
        assert_eq!(rows.len(), 2);
    })
    .unwrap();
    assert_eq!(steps_seen, 6);
    let rec = lg.finish();
    gone(&subtree_dirs);
    assert!(
        !Path::new(&format!("/proc/{}", w[0].pid)).exists()
            || fs::read_to_string(format!("/proc/{}/cmdline", w[0].pid))
                .map(|c| !c.contains("prescient-loadgen-worker"))
                .unwrap_or(true),
        "the worker was not ended"
    );
    let s = rec.summary();
    eprintln!("{s:#?}");
    assert_eq!(s.steps, 6);
    let capped = &s.workloads["capped"];
    let free = &s.workloads["free"];
    // Asked 0.4 cores, capped at 0.1: about 3/4 unserved.
    assert!(
        capped.unserved_share() > 0.5,
        "capped: {:.3} unserved",
        capped.unserved_share()
    );
    assert!(capped.cpu_got / capped.wall_s < 0.2, "{capped:?}");
    // Uncapped: served, give or take a busy shared machine.
    assert!(
        free.unserved_share() < 0.1,
        "uncapped: {:.3} unserved",
        free.unserved_share()
    );
    assert!(free.cpu_got / free.wall_s > 0.3, "{free:?}");
    // Memory: 16 MiB asked and held, in the cgroup.
    let last = rec.workload("free").last().unwrap();
    assert_eq!(last.mem_asked, 16 << 20);
    let held = last.mem_held.unwrap();
    assert!(held >= 12 << 20, "held {held}");
    assert_eq!(free.restarts, 0);
}

#[test]
fn a_stopped_background_run_keeps_its_partial_record_and_cleans_up() {
    let test = "a_stopped_background_run";
    let Some(fs) = live(test) else { return };
    let _lock = testing::cpu_lock(false).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let scenario = Scenario::from_trace(&trace(tmp.path(), 0.05, 50), "h").unwrap();
    // 0.25 s a step, to the end (50 steps): stopped long before.
    let mut o = options(1200.0, Duration::from_secs(60));
    o.subtree_cpu_cap = Some(0.5);
    o.subtree_cpu_weight = Some(200);
    let lg = Loadgen::start(&fs, scenario, o).unwrap();
    let dirs = lg.subtree_dirs();
    let running = lg.spawn();
    assert_eq!(running.steps(), 50);
    while running.snapshot().rows.len() < 4 {
        assert!(!running.is_finished());
        std::thread::sleep(Duration::from_millis(50));
    }
    let rec = running.stop().unwrap();
    gone(&dirs);
    let s = rec.summary();
    assert!((2..50).contains(&s.steps), "{s:?}");
    assert!(rec.rows.iter().all(|r| r.cpu_got.is_some()), "{rec:?}");
}

#[test]
fn a_worker_killed_over_its_memory_limit_is_restarted_and_counted() {
    let test = "a_worker_killed_over_its_memory_limit";
    let Some(fs) = live(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let t = trace_with_memory(tmp.path(), 0.02, 64 << 20, 20);
    let scenario = Scenario::from_trace(&t, "h").unwrap();
    // 0.25 s a step, 4 steps.
    let mut lg = Loadgen::start(&fs, scenario, options(1200.0, Duration::from_secs(1))).unwrap();
    let dirs = lg.subtree_dirs();
    let w = lg.workloads().to_vec();
    let mut e = enforcer_for(&fs).unwrap();
    let limit = Setting::MemoryMax(MemoryLimit::Bytes(16 << 20));
    if let Err(err) = e.write(&w[0].cgroup, &limit) {
        skip_or_fail(test, &format!("cannot limit a cgroup's memory here: {err}"));
        return;
    }
    lg.run(&AtomicBool::new(false), |_| {}).unwrap();
    let rec = lg.finish();
    gone(&dirs);
    let s = rec.summary();
    assert_eq!(s.steps, 4);
    assert!(s.workloads["capped"].restarts >= 1, "{s:#?}");
    assert_eq!(s.workloads["free"].restarts, 0, "{s:#?}");
    let held = rec.workload("free").last().unwrap().mem_held.unwrap();
    assert!(held >= 48 << 20, "held {held}");
    let capped = rec.workload("capped").last().unwrap().mem_held.unwrap_or(0);
    assert!(capped <= 16 << 20, "held {capped} under a 16 MiB limit");
}
