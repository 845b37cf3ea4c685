//! A full disk for real: the agent's SQLite store on a 2 MiB tmpfs that a
//! filler file fills. The loop runs on the fake clock and observer of
//! `fakes` (so that it is stepped, not timed); the store and the
//! filesystem are real. Writes fail with the kernel's ENOSPC (SQLite's
//! "database or disk is full"); the agent keeps sampling and planning with
//! the samples held in memory and the error logged; deleting the filler
//! frees the space, and every held sample reaches the store.
//!
//! Needs root (mount). Skips with the reason where it cannot run, unless
//! PRESCIENT_REQUIRE_KERNEL_TESTS=1 (as CI sets), when it fails instead.
//! The tmpfs is unmounted when the test ends, on a panic too (a guard).

mod fakes;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use prescient_agent::config::Mode;
use prescient_agent::{Agent, Found, StoreSink};
use prescient_core::{HostId, Resource, SeriesKey, WorkloadId};
use prescient_linux::enforce::FakeEnforcer;
use prescient_linux::testing::{live_fs, skip_or_fail};
use prescient_store::{Resolution, Store};

use fakes::*;

/// The log lines of this test binary.
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

static CAPTURE: Capture = Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            LOG.lock()
                .unwrap()
                .push(format!("{} {}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

/// A tmpfs mounted at `dir`, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "prescient-test",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs on {}: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still open somewhere (a panic mid-test): detach it now; the
            // kernel frees it when the last file closes.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Writes zeros to `path` until the filesystem is full; returns how many
/// bytes went in.
fn fill(path: &Path) -> u64 {
    let mut f = fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    let mut n = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(k) => n += k as u64,
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Also the last partial page.
    while let Ok(k) = f.write(&chunk[..1]) {
        if k == 0 {
            break;
        }
        n += 1;
    }
    n
}

type DiskAgent = Agent<FakeObserver, StoreSink, FakeEnforcer, FakeClock>;

fn step(a: &mut DiskAgent) {
    let wake = a.tick();
    a.clock_mut().now = wake;
}

#[test]
fn a_really_full_disk_holds_samples_in_memory_and_writes_them_when_space_is_freed() {
    let test = "agent_full_disk";
    if let Err(why) = live_fs() {
        skip_or_fail(test, &why);
        return;
    }
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Info);
    let dir = tempfile::tempdir().unwrap();
    // Declared before the agent: dropped (unmounted) after it closes the
    // store, on a panic too.
    let _mnt = match Tmpfs::mount(dir.path(), "2m") {
        Ok(m) => m,
        Err(why) => {
            skip_or_fail(test, &why);
            return;
        }
    };
    let db = dir.path().join("agent.db");
    let filler = dir.path().join("filler");

    // 40 workloads sampled every second: 80 samples a second.
    let mut observer = FakeObserver::new();
    observer.found = (0..40)
        .map(|i| Found {
            id: WorkloadId(format!("w{i:02}")),
            selector: "busy".into(),
            cgroup: p(&format!("/w{i:02}")),
            labels: Default::default(),
        })
        .collect();
    let mut c = config(Mode::Recommend);
    c.store.path = db.clone();
    let mut a: DiskAgent = Agent::new(
        c,
        MACHINE,
        observer,
        StoreSink::open(&db).unwrap(),
        None,
        clock(),
    );
    a.start();
    while a.clock_mut().now < T0 + 20_000 {
        step(&mut a);
    }
    assert!(a.outbox().failing.is_none());
    assert!(a.outbox().stored_samples > 0);

    // The disk fills up (another program's file, say).
    let filled = fill(&filler);
    assert!(filled > 0);
    // The loop goes on until a write needs space the store does not have
    // (SQLite reuses space it already holds, so not necessarily the first).
    let plans_before = a.counters().plans;
    while a.outbox().failing.is_none() {
        step(&mut a);
        assert!(
            a.clock_mut().now < T0 + 6 * 3_600_000,
            "no store write failed in six hours of samples on a full disk"
        );
    }
    let failing = a.outbox().failing.clone().unwrap();
    assert!(
        failing.contains("full") || failing.contains("No space left"),
        "{failing}"
    );
    // It keeps running: a minute more of samples and plans, all held.
    let held = a.outbox().samples_len();
    let passes = a.counters().sample_passes;
    let until = a.clock_mut().now + 60_000;
    while a.clock_mut().now < until {
        step(&mut a);
    }
    assert!(a.outbox().failing.is_some(), "the disk is still full");
    assert_eq!(a.counters().sample_passes, passes + 60);
    assert!(a.outbox().samples_len() >= held + 60 * 80);
    assert!(a.counters().plans > plans_before, "planning went on");
    assert_eq!(a.outbox().dropped_samples, 0);
    {
        let log = LOG.lock().unwrap();
        let errors: Vec<&String> = log
            .iter()
            .filter(|l| l.starts_with("ERROR store write failed"))
            .collect();
        assert_eq!(errors.len(), 1, "logged once per streak: {log:?}");
        assert!(errors[0].contains("holding"), "{}", errors[0]);
    }

    // Space comes back.
    fs::remove_file(&filler).unwrap();
    while a.outbox().failing.is_some() || a.outbox().samples_len() > 0 {
        step(&mut a);
        assert!(a.clock_mut().now < until + 60_000, "writes did not resume");
    }
    assert!(
        LOG.lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("INFO store writes resumed")),
        "resumption logged"
    );
    let s = a.shutdown();
    assert_eq!(s.unwritten_samples, 0);
    assert_eq!(s.dropped_samples, 0);
    drop(a);

    // Every sample of every pass is in the store.
    let mut store = Store::open(&db).unwrap();
    for w in ["w00", "w39"] {
        for r in [Resource::Cpu, Resource::Memory] {
            let id = store
                .series_id(&SeriesKey {
                    host: HostId("h1".into()),
                    workload: WorkloadId(w.into()),
                    resource: r,
                })
                .unwrap();
            let n = store.range(id, 0, i64::MAX, Resolution::Raw).unwrap().len();
            assert_eq!(n as u64, s.counters.sample_passes, "{w} {r}");
        }
    }
}
