//! Support for tests and benchmarks on the real kernel (the `testing`
//! feature): whether they can run here, a shared CPU lock, and
//! [`TestTree`], a cgroup subtree of their own.
//!
//! A [`TestTree`] is `<prefix><pid>-<name>-<n>` under the calling
//! process's own cgroup (read from /proc/self/cgroup) in the v2 hierarchy
//! and the v1 cpu, cpuacct, memory and blkio ones (those mounted). Every
//! process it holds is one it started (kept as a `Child` handle); dropping
//! it, on a panic too, kills those children by their handles, waits for
//! them, and removes every cgroup of the subtree, children first. Subtrees
//! of the same prefix left by a process that no longer exists are removed
//! when a tree is made.
//!
//! Tests need root and a cgroup filesystem: without them [`live`] and
//! [`TestTree::for_test`] print why and skip, unless
//! `PRESCIENT_REQUIRE_KERNEL_TESTS=1` (as CI sets), when they fail instead.
//!
//! What a host does not have at all is another matter: a v1 hierarchy on
//! a pure-v2 host, a v2 controller that is not in the `cgroup.controllers`
//! of the test's subtree. No setting of the test run can give it those, so
//! the tests of them skip with the reason printed, in CI too
//! ([`skip_absent`], [`TestTree::has_v1`], [`TestTree::has_v2`],
//! [`TestTree::can_enforce`]); what the host has and the test then cannot
//! use is a failure.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::discover::GroupError;
use crate::enforce::{BlockDevice, Device};
use crate::layout::{BaseError, HierarchyId, Version};
use crate::path::PathError;
use crate::subtree::{remove_cgroup_tree, remove_stale_subtrees};
use crate::{CgroupFs, CgroupPath, Grouper, LayoutKind, ProcFs, ReadError, Root};

/// Set to `1` to make a kernel test fail, rather than skip, where it
/// cannot run.
pub const REQUIRE_KERNEL_TESTS: &str = "PRESCIENT_REQUIRE_KERNEL_TESTS";
/// The prefix of the kernel tests' subtrees.
pub const TEST_PREFIX: &str = "prescient-test-";
/// The prefix of the live benchmarks' subtrees.
pub const BENCH_PREFIX: &str = "prescient-bench-";
/// The v1 hierarchies a [`TestTree`] is made in (and the v2 one).
pub const V1_USED: [&str; 4] = ["cpu", "cpuacct", "memory", "blkio"];

/// What went wrong making or using a [`TestTree`].
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The cgroup mounts could not be read.
    #[error("reading the cgroup mounts: {0}")]
    Detect(#[from] ReadError),
    /// This process's own cgroups could not be resolved.
    #[error("basing the hierarchies at this process's cgroups: {0}")]
    Base(#[from] BaseError),
    /// A bad cgroup path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// mkdir of the subtree failed.
    #[error("mkdir {}: {source}", path.display())]
    Create {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// A child could not be started.
    #[error("spawning {command}: {source}")]
    Spawn {
        /// The command, as `Debug` shows it.
        command: String,
        /// Why.
        source: io::Error,
    },
    /// A group cgroup could not be made.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A child could not be moved into a group.
    #[error("moving {pid} into {cgroup}: {report}")]
    Move {
        /// The child.
        pid: i32,
        /// The group.
        cgroup: String,
        /// The move report, as `Debug` shows it.
        report: String,
    },
    /// The CPU lock file could not be opened or locked.
    #[error("CPU lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The live cgroup filesystem (hierarchies at their mount roots), or why
/// the kernel tests and live benchmarks cannot run here: not root, the
/// mounts unreadable, no cgroup filesystem.
pub fn live_fs() -> Result<CgroupFs, String> {
    let me = std::process::id() as i32;
    let euid = ProcFs::new(Root::live())
        .status(me, None)
        .ok()
        .flatten()
        .and_then(|s| s.uid)
        .map(|u| u[1]);
    if euid != Some(0) {
        return Err(format!("not running as root (euid {euid:?})"));
    }
    match CgroupFs::detect(Root::live()) {
        Ok(fs) if fs.layout().kind() != LayoutKind::None => Ok(fs),
        Ok(_) => Err("no cgroup filesystem is mounted".into()),
        Err(e) => Err(format!("cannot read the mounts: {e}")),
    }
}

/// Skips `test` (printing why) or, when
/// `PRESCIENT_REQUIRE_KERNEL_TESTS=1`, fails it (panics).
pub fn skip_or_fail(test: &str, why: &str) {
    if std::env::var(REQUIRE_KERNEL_TESTS).as_deref() == Ok("1") {
        panic!("{test}: {REQUIRE_KERNEL_TESTS}=1 but {why}");
    }
    // Written to stderr directly: the test harness captures eprintln! of
    // passing tests, and a skip must be seen.
    let _ = writeln!(
        io::stderr(),
        "SKIPPED {test}: {why} (set {REQUIRE_KERNEL_TESTS}=1 to make this a failure)"
    );
}

/// Skips `test`, printing why, whatever [`REQUIRE_KERNEL_TESTS`] says:
/// for what this host does not have at all (see the module's
/// documentation). Never for what it has but the test cannot use: that is
/// [`skip_or_fail`]'s, or a failure.
pub fn skip_absent(test: &str, why: &str) {
    let _ = writeln!(
        io::stderr(),
        "SKIPPED {test}: {why} (this host does not have it; skipped even with {REQUIRE_KERNEL_TESTS}=1)"
    );
}

/// [`live_fs`] for `test`, or `None` after [`skip_or_fail`].
pub fn live(test: &str) -> Option<CgroupFs> {
    match live_fs() {
        Ok(fs) => Some(fs),
        Err(why) => {
            skip_or_fail(test, &why);
            None
        }
    }
}

/// A lock shared by every kernel test and bench of the workspace: those
/// that keep CPUs busy hold it shared; prescient-linux's latency test
/// holds it exclusive, so that it measures the enforcement path rather
/// than the scheduler's queue behind busy loops (on a 2-core machine). A
/// file lock (flock), so that it holds between the threads of `cargo test`
/// and between processes alike; it goes with its file descriptor, however
/// the holder ends.
#[derive(Debug)]
pub struct CpuLock {
    _file: fs::File,
}

/// Takes the [`CpuLock`], shared or exclusive, waiting for it.
///
/// # Errors
/// The lock file (in the temp directory) cannot be opened or locked.
pub fn cpu_lock(exclusive: bool) -> Result<CpuLock, TreeError> {
    use rustix::fs::{FlockOperation, flock};
    let path = std::env::temp_dir().join("prescient-linux-kernel-tests.lock");
    let lock_err = |source: io::Error| TreeError::Lock {
        path: path.clone(),
        source,
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(lock_err)?;
    let op = if exclusive {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::LockShared
    };
    flock(&file, op).map_err(|e| lock_err(e.into()))?;
    Ok(CpuLock { _file: file })
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The whole disk that holds `/` (from /proc/self/mountinfo), as
/// MAJ:MIN: a partition's parent, for the kernel caps whole disks only.
/// `None` where it cannot be told (no such line, `/` not on a block
/// device: an overlay or tmpfs root).
pub fn root_disk() -> Option<Device> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dev = mi.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(4) == Some(&"/")).then(|| f[2].to_string())
    })?;
    let dev = Device::parse(0, &dev).ok()?;
    match dev.block_device_in(Path::new("/sys/dev/block")) {
        BlockDevice::Disk => Some(dev),
        BlockDevice::Partition(disk) => disk,
        // Not a block device: an overlay, a tmpfs, ...
        BlockDevice::Missing => None,
    }
}

/// A subtree of the caller's own cgroups, with the children it started
/// (see the module's documentation).
#[derive(Debug)]
pub struct TestTree {
    /// `<prefix><pid>-<name>-<n>`, relative to the caller's own cgroups.
    pub name: String,
    /// The hierarchies based at the subtree.
    pub fs: CgroupFs,
    /// The subtree's directory in each hierarchy it was made in.
    dirs: Vec<PathBuf>,
    children: Vec<Child>,
    /// Held while the tree's children keep CPUs busy (dropped after they
    /// are killed: fields drop after `Drop::drop`).
    hogging: Option<CpuLock>,
}

impl TestTree {
    /// The tree of kernel test `test` (prefix [`TEST_PREFIX`]), or `None`
    /// after [`skip_or_fail`] where kernel tests cannot run.
    ///
    /// # Panics
    /// When the subtree cannot be made although the kernel tests can run
    /// (a test failure).
    pub fn for_test(test: &str) -> Option<TestTree> {
        let live = live(test)?;
        Some(
            TestTree::create_in(live, TEST_PREFIX, test)
                .unwrap_or_else(|e| panic!("{test}: making its cgroup subtree: {e}")),
        )
    }

    /// Makes the (empty) subtree `<prefix><pid>-<name>-<n>` (`name` with
    /// anything but ASCII letters and digits as `_`), after removing the
    /// stale subtrees of `prefix`.
    ///
    /// # Errors
    /// Reading the mounts or this process's cgroups, or a mkdir, failed;
    /// what was made by then is removed.
    pub fn create(prefix: &str, name: &str) -> Result<TestTree, TreeError> {
        TestTree::create_in(CgroupFs::detect(Root::live())?, prefix, name)
    }

    fn create_in(live: CgroupFs, prefix: &str, name: &str) -> Result<TestTree, TreeError> {
        let name = format!(
            "{prefix}{}-{}-{}",
            std::process::id(),
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let own = live.clone().based_at_process("self", &CgroupPath::root())?;
        let fs = live.based_at_process("self", &CgroupPath::parse(&name)?)?;
        let mut tree = TestTree {
            name,
            fs,
            dirs: Vec::new(),
            children: Vec::new(),
            hogging: None,
        };
        let used: Vec<HierarchyId> = own
            .hierarchies()
            .filter(|h| h.mount.version == Version::V2 || V1_USED.iter().any(|c| h.has(c)))
            .map(|h| own.id_of(h))
            .collect();
        for id in &used {
            let Some(h) = own.hierarchy(id) else { continue };
            let own_dir = h.dir(&CgroupPath::root());
            remove_stale_subtrees(&own_dir, prefix);
            let dir = own_dir.join(&tree.name);
            // On an error `tree` drops, removing the directories made.
            fs::create_dir(&dir).map_err(|source| TreeError::Create {
                path: dir.clone(),
                source,
            })?;
            tree.dirs.push(dir);
        }
        // Hierarchies not used (name=systemd, freezer, ...) are based at a
        // subtree that does not exist there: nothing is made in them.
        Ok(tree)
    }

    /// The subtree's directory in each hierarchy it was made in.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Whether this host has a v1 hierarchy for each of `controllers`;
    /// when it has not, skips `test` with the reason ([`skip_absent`]).
    pub fn has_v1(&self, test: &str, controllers: &[&str]) -> bool {
        let missing: Vec<&str> = controllers
            .iter()
            .copied()
            .filter(|c| !self.fs.v1().iter().any(|h| h.has(c)))
            .collect();
        if missing.is_empty() {
            return true;
        }
        skip_absent(
            test,
            &format!(
                "no v1 {} hierarchy (layout {:?})",
                missing.join(", "),
                self.fs.layout().kind()
            ),
        );
        false
    }

    /// The v2 controllers this tree's cgroups can have: those in the
    /// `cgroup.controllers` of its v2 directory (what the test process's
    /// own cgroup enables for its children). Empty without a v2 hierarchy.
    pub fn v2_controllers(&self) -> Vec<String> {
        let Some(h) = self.fs.v2() else {
            return Vec::new();
        };
        fs::read_to_string(h.base_dir().join("cgroup.controllers"))
            .map(|t| t.split_ascii_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Whether each of `controllers` is available to this tree in v2 (see
    /// [`TestTree::v2_controllers`]); when one is not, skips `test` with
    /// the reason ([`skip_absent`]). One that is listed and then cannot be
    /// used is the test's failure.
    pub fn has_v2(&self, test: &str, controllers: &[&str]) -> bool {
        let Some(h) = self.fs.v2() else {
            skip_absent(test, "no cgroup v2 hierarchy");
            return false;
        };
        let have = self.v2_controllers();
        let missing: Vec<&str> = controllers
            .iter()
            .copied()
            .filter(|c| !have.iter().any(|h| h == c))
            .collect();
        if missing.is_empty() {
            return true;
        }
        skip_absent(
            test,
            &format!(
                "the v2 controller(s) {} are not in {} (available: {}); the parent cgroup does not enable them for its children",
                missing.join(", "),
                h.base_dir().join("cgroup.controllers").display(),
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(" ")
                }
            ),
        );
        false
    }

    /// For tests that enforce through whichever version holds the
    /// controllers (as [`crate::enforce::enforcer_for`] picks): whether
    /// each of `controllers` is in a v1 hierarchy or available to this
    /// tree in v2; when one is in neither, skips `test` with the reason
    /// ([`skip_absent`]).
    pub fn can_enforce(&self, test: &str, controllers: &[&str]) -> bool {
        let v2 = self.v2_controllers();
        let missing: Vec<&str> = controllers
            .iter()
            .copied()
            .filter(|c| !self.fs.v1().iter().any(|h| h.has(c)) && !v2.iter().any(|h| h == c))
            .collect();
        if missing.is_empty() {
            return true;
        }
        skip_absent(
            test,
            &format!(
                "{} is neither a v1 hierarchy of this host nor a v2 controller available to this test's cgroup (available in v2: {})",
                missing.join(", "),
                if v2.is_empty() {
                    "none".to_string()
                } else {
                    v2.join(" ")
                }
            ),
        );
        false
    }

    /// Starts `cmd`, keeping its handle so that only it is ever killed.
    /// Returns its pid.
    ///
    /// # Errors
    /// The command could not be started.
    pub fn spawn(&mut self, cmd: &mut Command) -> Result<i32, TreeError> {
        let child = cmd.spawn().map_err(|source| TreeError::Spawn {
            command: format!("{cmd:?}"),
            source,
        })?;
        let pid = child.id() as i32;
        self.children.push(child);
        Ok(pid)
    }

    /// Marks this tree as one whose children keep CPUs busy: takes the
    /// [`CpuLock`] shared, until the tree is dropped.
    ///
    /// # Errors
    /// See [`cpu_lock`].
    pub fn hog_cpu(&mut self) -> Result<(), TreeError> {
        if self.hogging.is_none() {
            self.hogging = Some(cpu_lock(false)?);
        }
        Ok(())
    }

    /// Starts a process burning one CPU (a shell loop, no forks), after
    /// [`TestTree::hog_cpu`].
    ///
    /// # Errors
    /// See [`TestTree::hog_cpu`] and [`TestTree::spawn`].
    pub fn spawn_busy(&mut self) -> Result<i32, TreeError> {
        self.hog_cpu()?;
        self.spawn(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null()),
        )
    }

    /// Starts `sleep 3600`.
    ///
    /// # Errors
    /// See [`TestTree::spawn`].
    pub fn spawn_sleep(&mut self) -> Result<i32, TreeError> {
        self.spawn(Command::new("sleep").arg("3600").stdin(Stdio::null()))
    }

    /// Creates `cg` (relative to the subtree) in every hierarchy and moves
    /// `pid` there.
    ///
    /// # Errors
    /// `cg` is not a cgroup path, a mkdir failed, or `pid` was not moved
    /// into every hierarchy.
    pub fn move_into(&self, cg: &str, pid: i32) -> Result<(), TreeError> {
        let path = CgroupPath::parse(cg)?;
        let g = Grouper::new(&self.fs);
        g.ensure_group(&path)?;
        let r = g.move_pids(&path, &[pid]);
        if r.moved != [pid] {
            return Err(TreeError::Move {
                pid,
                cgroup: cg.to_string(),
                report: format!("{r:?}"),
            });
        }
        Ok(())
    }

    /// The handle of the child `pid` started by [`TestTree::spawn`].
    pub fn child(&mut self, pid: i32) -> Option<&mut Child> {
        self.children.iter_mut().find(|c| c.id() as i32 == pid)
    }

    /// The directory of `cg` (relative to the subtree) in the hierarchy
    /// holding `controller`.
    pub fn dir(&self, controller: &str, cg: &str) -> Option<PathBuf> {
        let h = self.fs.for_controller(controller)?;
        Some(h.dir(&CgroupPath::parse(cg).ok()?))
    }

    /// A file of `cg` in the hierarchy holding `controller`, trimmed.
    pub fn read(&self, controller: &str, cg: &str, file: &str) -> Option<String> {
        let text = fs::read_to_string(self.dir(controller, cg)?.join(file)).ok()?;
        Some(text.trim().to_string())
    }
}

impl Drop for TestTree {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in &self.dirs {
            if let Err(e) = remove_cgroup_tree(d) {
                eprintln!("could not remove {}: {e}", d.display());
            }
        }
    }
}
