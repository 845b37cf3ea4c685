//! A real cgroup subtree for the live benchmarks (shared by
//! prescient-agent's `reaction` and prescient's `agent_overhead` through a
//! `#[path]` module): `prescient_linux::testing`'s [`TestTree`] with the
//! `prescient-bench-` prefix.
//!
//! `prescient-bench-<pid>-<name>-<n>` is created under the bench process's
//! own cgroup (read from /proc/self/cgroup) in the v2 hierarchy and the v1
//! cpu, cpuacct, memory and blkio ones. Every process it holds was started
//! by the bench (`sleep`s, kept as `Child` handles); dropping the tree, on
//! a panic too, kills those children by their handles, waits for them, and
//! removes every cgroup of the subtree, children first. Subtrees left by a
//! bench process that no longer exists are removed first.

#![allow(dead_code)]

use std::fs;

pub use prescient_linux::testing::TestTree as Tree;
use prescient_linux::testing::{BENCH_PREFIX, live_fs};

/// Why the live benchmarks cannot run here (not root, no cgroupfs).
pub fn unavailable() -> Option<String> {
    live_fs().err()
}

/// The subtree for bench `name`, with a `sleep` child in each of
/// `cgroups` (made in every hierarchy).
pub fn sleepers(name: &str, cgroups: &[String]) -> Result<Tree, String> {
    let mut tree = Tree::create(BENCH_PREFIX, name).map_err(|e| e.to_string())?;
    for cg in cgroups {
        let pid = tree.spawn_sleep().map_err(|e| e.to_string())?;
        tree.move_into(cg, pid).map_err(|e| e.to_string())?;
    }
    Ok(tree)
}

/// utime + stime of a process or thread from its `stat` file, in clock
/// ticks.
pub fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let text = fs::read_to_string(stat_path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}
