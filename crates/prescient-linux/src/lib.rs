//! Prescient's Linux layer: what the agent reads from the kernel and how it
//! writes limits back.
//!
//! Reading (the collect stage):
//! - [`layout`]: where the cgroup hierarchies are (pure v2, hybrid, v1),
//!   from `/proc/self/mountinfo`; [`CgroupFs`] resolves a cgroup path in
//!   each hierarchy under a base.
//! - [`cgroup_files`], [`collect`]: cgroup counters (`cpu.stat`,
//!   `memory.current`, `memory.stat`, `memory.events`, `io.stat`, PSI; v1
//!   `cpuacct`, `memory`, `blkio`), one [`CgroupSample`] per cgroup.
//! - [`procfs`]: processes and threads (`stat`, `status`, `io`, `cmdline`,
//!   owner, libraries from `maps`, cgroups), network bytes per namespace.
//! - [`net`]: network bytes per workload, from the network namespaces its
//!   processes have to themselves.
//! - [`rates`]: rates as pure functions of (sample, previous, elapsed).
//! - [`discover`]: workloads by selectors (cgroup globs, process matches,
//!   labels), and grouping of matched processes into cgroups of the
//!   agent's own subtree.
//!
//! - [`subtree`]: removing a cgroup subtree a process made for itself,
//!   and ones left by processes that are gone.
//!
//! Writing (the enforce stage): [`enforce`], the [`Enforcer`] trait with v2,
//! v1 and fake backends, and the [`Reconciler`] with its guardrails.
//!
//! Everything is read under a [`Root`] (`/` live, a fixture tree in
//! tests). Parsers are pure functions of a file's text and never panic; a
//! file that vanished mid-read (`ENOENT`, `ESRCH`, `ENODEV`) is a missing
//! value, not an error.

pub mod cgroup_files;
pub mod collect;
pub mod discover;
pub mod enforce;
pub mod glob;
pub mod io;
pub mod layout;
pub mod net;
pub mod parse;
pub mod path;
pub mod procfs;
pub mod rates;
pub mod subtree;
#[cfg(feature = "testing")]
pub mod testing;

pub use collect::{CgroupSample, Collector, Pass, Reads};
pub use discover::{Discovery, Grouper, Selector, Workload};
pub use enforce::{Action, Desired, EnforceError, Enforcer, Limits, Reconciler};
pub use io::{ReadError, Root};
pub use layout::{CgroupFs, Layout, LayoutKind};
pub use parse::ParseError;
pub use path::CgroupPath;
pub use procfs::ProcFs;
