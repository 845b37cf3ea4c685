//! What the end-to-end tests of the binary share: the committed samples and
//! running `prescient` with a verdict on its exit.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/sample")
        .join(name)
}

pub fn prescient(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Runs `prescient args`, checks it succeeded, and gives its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = prescient(args);
    assert!(
        out.status.success(),
        "prescient {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `prescient args`, checks it failed without a panic, and gives its
/// stderr.
pub fn fails(args: &[&str]) -> String {
    let out = prescient(args);
    assert!(!out.status.success(), "prescient {args:?} should fail");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    err
}
