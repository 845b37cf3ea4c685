//! `prescient kube` end to end, without a cluster: the CRD it prints is the
//! committed one, the health probe, and bad flags give a clear error
//! naming the flag, before anything connects.

mod common;
use common::{fails, ok, prescient};

use std::path::Path;

fn deploy(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn crd_output_is_the_committed_crd() {
    let out = ok(&["kube", "crd"]);
    assert!(out.contains("kind: CustomResourceDefinition"), "{out}");
    assert_eq!(
        out,
        deploy("crd.yaml"),
        "deploy/kubernetes/crd.yaml drifted: run `prescient kube crd > deploy/kubernetes/crd.yaml`"
    );
}

#[test]
fn health_probe_reads_the_health_file() {
    let dir = std::env::temp_dir().join(format!("prescient-kube-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("alive");
    let path = file.to_str().unwrap();
    let err = fails(&["kube", "health", "--health-file", path]);
    assert!(err.contains("no cycle has finished yet"), "{err}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::fs::write(&file, now.to_string()).unwrap();
    ok(&["kube", "health", "--health-file", path]);
    std::fs::write(&file, (now - 600_000).to_string()).unwrap();
    let err = fails(&["kube", "health", "--health-file", path, "--max-age", "5m"]);
    assert!(err.contains("10m ago, more than 5m"), "{err}");
    let err = fails(&["kube", "health", "--health-file", path, "--max-age", "soon"]);
    assert!(
        err.contains("--max-age") && err.contains("\"soon\""),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Each: (flags, what the error must say).
const BAD: &[(&[&str], &[&str])] = &[
    (
        &["--mode", "sometimes"],
        &[
            "--mode",
            "\"sometimes\" is not a mode: expected \"recommend\" or \"enforce\"",
        ],
    ),
    (&["--interval", "10"], &["--interval", "\"10\" has no unit"]),
    (
        &["--interval", "500ms"],
        &["--interval 500ms: must be at least 1s"],
    ),
    (
        &["--in-cluster", "--kubeconfig", "/k"],
        &["--in-cluster", "cannot be used with", "--kubeconfig"],
    ),
    (
        &["--history-lookback", "7d"],
        &["--history-lookback", "--prometheus"],
    ),
    (
        &["--prometheus", "http://p:9090", "--history-cpu-query", "up"],
        &["--history-cpu-query", "\"up\" has no {namespace}"],
    ),
    (
        &["--prometheus", "http://p:9090", "--history-lookback", "30s"],
        &["--history-lookback 30s is shorter than --interval 60s"],
    ),
    (
        &["--kubeconfig", "/nonexistent/kubeconfig"],
        &["reading kubeconfig /nonexistent/kubeconfig"],
    ),
];

#[test]
fn bad_flags_are_named() {
    for (flags, says) in BAD {
        let mut args = vec!["kube"];
        args.extend_from_slice(flags);
        let err = fails(&args);
        for s in *says {
            assert!(
                err.contains(s),
                "prescient {args:?}: expected {s:?} in\n{err}"
            );
        }
    }
    // An unknown subcommand-like word is refused, not taken as a flag value.
    let out = prescient(&["kube", "--no-such-flag"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-flag"), "{err}");
}
