//! `prescient api hash-token`.

use std::io::Write;
use std::process::{Command, Stdio};

// sha256("abc"), a standard test vector.
const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn hash_token_prints_the_sha256_of_the_argument_or_of_stdin() {
    let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["api", "hash-token", "abc"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), ABC);

    let mut child = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["api", "hash-token"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), ABC);

    let mut child = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["api", "hash-token"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty"));
}
