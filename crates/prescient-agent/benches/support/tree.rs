//! A real cgroup subtree for the live benchmarks (shared by
//! prescient-agent's `reaction` and prescient's `agent_overhead` through a
//! `#[path]` module).
//!
//! `prescient-bench-<pid>-<name>` is created under the bench process's own
//! cgroup (read from /proc/self/cgroup) in the v2 hierarchy and the v1 cpu,
//! cpuacct, memory and blkio ones. Every process it holds was started by
//! the bench (`sleep`s, kept as `Child` handles); dropping the tree, on a
//! panic too, kills those children by their handles, waits for them, and
//! removes every cgroup of the subtree, children first. Subtrees left by a
//! bench process that no longer exists are removed first.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use prescient_linux::layout::{HierarchyId, Version};
use prescient_linux::{CgroupFs, CgroupPath, Grouper, LayoutKind, ProcFs, Root};

const V1_USED: [&str; 4] = ["cpu", "cpuacct", "memory", "blkio"];
const PREFIX: &str = "prescient-bench-";

/// Why the live benchmarks cannot run here (not root, no cgroupfs).
pub fn unavailable() -> Option<String> {
    let me = std::process::id() as i32;
    let euid = ProcFs::new(Root::live())
        .status(me, None)
        .ok()
        .flatten()
        .and_then(|s| s.uid)
        .map(|u| u[1]);
    if euid != Some(0) {
        return Some(format!("not running as root (euid {euid:?})"));
    }
    match CgroupFs::detect(Root::live()) {
        Ok(fs) if fs.layout().kind() != LayoutKind::None => None,
        Ok(_) => Some("no cgroup filesystem is mounted".into()),
        Err(e) => Some(format!("cannot read the mounts: {e}")),
    }
}

/// The subtree, its `sleep` children and their cgroups.
pub struct Tree {
    /// `prescient-bench-<pid>-<name>`, relative to the bench's own cgroup.
    pub name: String,
    /// The hierarchies based at the subtree.
    pub fs: CgroupFs,
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
}

impl Tree {
    /// Creates the (empty) subtree.
    pub fn new(name: &str) -> Result<Tree, String> {
        let live = CgroupFs::detect(Root::live()).map_err(|e| e.to_string())?;
        let name = format!("{PREFIX}{}-{name}", std::process::id());
        let own = live
            .clone()
            .based_at_process("self", &CgroupPath::root())
            .map_err(|e| e.to_string())?;
        let sub = CgroupPath::parse(&name).map_err(|e| e.to_string())?;
        let fs = live
            .based_at_process("self", &sub)
            .map_err(|e| e.to_string())?;
        let mut tree = Tree {
            name,
            fs,
            dirs: Vec::new(),
            children: Vec::new(),
        };
        let used: Vec<HierarchyId> = own
            .hierarchies()
            .filter(|h| h.mount.version == Version::V2 || V1_USED.iter().any(|c| h.has(c)))
            .map(|h| own.id_of(h))
            .collect();
        for id in &used {
            let Some(h) = own.hierarchy(id) else { continue };
            let own_dir = h.dir(&CgroupPath::root());
            remove_stale(&own_dir);
            let dir = own_dir.join(&tree.name);
            fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
            tree.dirs.push(dir);
        }
        Ok(tree)
    }

    /// Starts `sleep 3600` in a new cgroup `/<cg>` of the subtree (in every
    /// hierarchy). Returns its pid.
    pub fn sleeper(&mut self, cg: &str) -> Result<i32, String> {
        let child = Command::new("sleep")
            .arg("3600")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning sleep: {e}"))?;
        let pid = child.id() as i32;
        self.children.push(child);
        let path = CgroupPath::parse(cg).map_err(|e| e.to_string())?;
        let g = Grouper::new(&self.fs);
        g.ensure_group(&path).map_err(|e| format!("{cg}: {e}"))?;
        let r = g.move_pids(&path, &[pid]);
        if r.moved != [pid] {
            return Err(format!("moving {pid} into {cg}: {r:?}"));
        }
        Ok(pid)
    }

    /// The subtree's directory in the hierarchy holding `controller`.
    pub fn dir(&self, controller: &str, cg: &str) -> Option<PathBuf> {
        let h = self.fs.for_controller(controller)?;
        Some(h.dir(&CgroupPath::parse(cg).ok()?))
    }
}

impl Drop for Tree {
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

/// Removes subtrees of bench processes that no longer exist.
fn remove_stale(own_dir: &Path) {
    let Ok(rd) = fs::read_dir(own_dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
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
