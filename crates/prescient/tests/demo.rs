//! `prescient demo` end to end on the real kernel: a short run of both
//! policies prints the live table and the comparison, and leaves no cgroup
//! and no temporary file behind.
//!
//! Needs root and a cgroup filesystem; without them it prints why and
//! skips, unless PRESCIENT_REQUIRE_KERNEL_TESTS=1, when it fails instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const REQUIRE: &str = "PRESCIENT_REQUIRE_KERNEL_TESTS";

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

#[test]
fn a_short_demo_compares_the_policies_and_cleans_up() {
    if !kernel("a_short_demo_compares_the_policies_and_cleans_up") {
        return;
    }
    let running = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args([
            "demo",
            "--duration",
            "4",
            "--speed",
            "600",
            "--refresh",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let pid = running.id();
    let child = running.wait_with_output().expect("the demo ends");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(child.status.success(), "{pid:?}\n{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stdout.contains("── prescient (enforce mode): live table ──"),
        "{stdout}"
    );
    assert!(
        stdout.contains("┆ forecast ┆ allocation ┆ throttled"),
        "{stdout}"
    );
    assert!(stdout.contains("comparison (same trace steps"), "{stdout}");
    assert!(stdout.contains("│ prescient    ┆ enforce"), "{stdout}");
    assert!(stdout.contains("│ static-equal ┆ enforce"), "{stdout}");
    assert!(
        stdout.contains("unserved CPU under prescient is"),
        "{stdout}"
    );
    let dirs: Vec<PathBuf> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("cgroups in "))
        .filter_map(|l| l.split_once(": ").map(|(_, d)| PathBuf::from(d)))
        .collect();
    assert!(dirs.len() >= 2, "{stdout}");
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    let prefix = format!("prescient-demo-{pid}-");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "temporary files left behind: {left:?}");
}
