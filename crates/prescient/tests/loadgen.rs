//! `prescient loadgen` end to end: clear errors for bad input, and on the
//! real kernel a short run (record written, summary printed, cgroups
//! removed) and a run stopped by SIGTERM that still cleans up.
//!
//! The kernel tests need root and a cgroup filesystem; without them they
//! print why and skip, unless PRESCIENT_REQUIRE_KERNEL_TESTS=1, when they
//! fail instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const REQUIRE: &str = "PRESCIENT_REQUIRE_KERNEL_TESTS";

fn prescient(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn fails(args: &[&str]) -> String {
    let out = prescient(args);
    assert!(!out.status.success(), "prescient {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn write_trace(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("trace.csv");
    std::fs::write(
        &p,
        format!("timestamp,host,workload,resource,value\n{body}"),
    )
    .unwrap();
    p
}

/// Two workloads of host `h`, `cores` each, `steps` steps of 300 s.
fn two_workloads(dir: &Path, cores: f64, steps: usize) -> PathBuf {
    let mut body = String::new();
    for w in ["a", "b"] {
        for s in 0..steps {
            body.push_str(&format!("{},h,{w},cpu,{cores}\n", s * 300));
        }
    }
    write_trace(dir, &body)
}

#[test]
fn bad_input_gets_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = two_workloads(tmp.path(), 0.1, 3);
    let t = t.to_str().unwrap();
    let e = fails(&["loadgen", "--trace", t, "--host", "nope"]);
    assert!(e.contains("host \"nope\" is not in the trace"), "{e}");
    assert!(e.contains("include: h"), "{e}");
    let mem = write_trace(tmp.path(), "0,h,a,memory,1000\n300,h,a,memory,2000\n");
    let e = fails(&["loadgen", "--trace", mem.to_str().unwrap(), "--host", "h"]);
    assert!(e.contains("no cpu series"), "{e}");
    let t = two_workloads(tmp.path(), 0.1, 3);
    let t = t.to_str().unwrap();
    let e = fails(&["loadgen", "--trace", t, "--host", "h", "--speed", "0"]);
    assert!(e.contains("--speed 0"), "{e}");
    let e = fails(&["loadgen", "--trace", t, "--host", "h", "--workloads", "0"]);
    assert!(e.contains("--workloads 0"), "{e}");
    let e = fails(&["loadgen", "--trace", t, "--host", "h", "--duration=-1"]);
    assert!(e.contains("--duration"), "{e}");
    let e = fails(&["loadgen", "--trace", "/nonexistent.csv", "--host", "h"]);
    assert!(e.contains("/nonexistent.csv"), "{e}");
    // The hidden worker refuses arguments it does not know.
    let e = fails(&["loadgen-worker", "--bogus", "1"]);
    assert!(e.contains("unknown worker argument"), "{e}");
}

/// Whether the kernel tests can run here (root, cgroups), or why not.
fn kernel(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string));
    let why = if euid.as_deref() != Some("0") {
        Some(format!("not running as root (euid {euid:?})"))
    } else if !Path::new("/sys/fs/cgroup").is_dir() {
        Some("no /sys/fs/cgroup".to_string())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            if std::env::var(REQUIRE).as_deref() == Ok("1") {
                panic!("{test}: {REQUIRE}=1 but {why}");
            }
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
            false
        }
    }
}

/// The cgroup directories a loadgen run printed.
fn cgroup_dirs(stderr: &str) -> Vec<PathBuf> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("loadgen: cgroups in "))
        .filter_map(|l| l.split_once(": ").map(|(_, d)| PathBuf::from(d)))
        .collect()
}

#[test]
fn a_short_run_records_and_cleans_up() {
    if !kernel("a_short_run_records_and_cleans_up") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = two_workloads(tmp.path(), 0.1, 10);
    let rec = tmp.path().join("rec.csv");
    let out = prescient(&[
        "loadgen",
        "--trace",
        t.to_str().unwrap(),
        "--host",
        "h",
        "--speed",
        "1200",
        "--duration",
        "1",
        "--record",
        rec.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("│ total"), "{stdout}");
    assert!(stdout.contains("4 steps"), "{stdout}");
    let dirs = cgroup_dirs(&stderr);
    assert!(!dirs.is_empty(), "{stderr}");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let csv = std::fs::read_to_string(&rec).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 2, "{csv}");
    assert!(csv.starts_with("step,trace_ts,"), "{csv}");
}

#[test]
fn sigterm_stops_the_run_and_cleans_up() {
    if !kernel("sigterm_stops_the_run_and_cleans_up") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = two_workloads(tmp.path(), 0.05, 100);
    let mut child = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["loadgen", "--trace", t.to_str().unwrap(), "--host", "h"])
        .args(["--speed", "1200"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.starts_with("step ") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("step "), "{seen}");
    let dirs = cgroup_dirs(&seen);
    assert!(dirs.iter().all(|d| d.is_dir()), "{seen}");
    // Our own child, by its pid.
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{seen}{rest}");
    assert!(rest.contains("stopped by a signal"), "{rest}");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
}
