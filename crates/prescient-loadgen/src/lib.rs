//! Prescient's load generator: plays one host's workloads from a trace as
//! real processes, each in its own cgroup, at compressed time, and records
//! per workload and step the CPU (cores) and memory (bytes) it asked for
//! and what the workload got, read from the cgroup's own counters.
//!
//! - [`Scenario`]: a host's workloads from a trace on a common timeline.
//! - [`schedule`]: the pure arithmetic: a demand in cores as busy threads
//!   and duty cycles, memory in chunks, trace steps in wall time.
//! - [`worker`]: the worker process (one per workload): burns CPU in duty
//!   cycles and holds touched memory at the level it is told, over a pipe.
//! - [`Loadgen`]: creates a subtree under a parent cgroup (the
//!   hierarchies of a [`CgroupFs`](prescient_linux::CgroupFs), v2 and the
//!   v1 cpu, cpuacct, memory and blkio ones, whichever are mounted), one
//!   cgroup and worker per workload; drives them step by step; measures
//!   CPU from `cpu.stat` (v2 with the cpu controller) or `cpuacct.usage`
//!   (v1) and memory from `memory.current` / `memory.usage_in_bytes`. It
//!   ends its workers (by pid) and removes its cgroups when dropped, on a
//!   panic too; a worker whose loadgen vanished ends at its pipe's close.
//! - [`Record`]: the rows and their [`Summary`]: unserved CPU is the sum
//!   of `max(0, asked - got)` over (workload, step).
//!
//! For another component (a demo, a benchmark): build a [`Scenario`],
//! [`Loadgen::start`] it under a parent cgroup (see [`live_fs`]), read
//! [`Loadgen::workloads`] for the cgroups to manage, then
//! [`Loadgen::run`] it (or [`Loadgen::spawn`] it on a thread and poll
//! [`Running::snapshot`]), and take the [`Record`].
//!
//! Workers are separate processes started by a [`WorkerCommand`]: the
//! `prescient` binary's hidden `loadgen-worker` subcommand, or this
//! crate's `prescient-loadgen-worker` binary; both call
//! [`worker_main`]. Inside the `prescient` binary use
//! `WorkerCommand::this_program("loadgen-worker")`; in that crate's tests
//! and benches `WorkerCommand::new(env!("CARGO_BIN_EXE_prescient"),
//! &["loadgen-worker"])`; in this crate's,
//! `env!("CARGO_BIN_EXE_prescient-loadgen-worker")`.
//!
//! A sketch (the demo's shape):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use prescient_loadgen::{Loadgen, Options, Pick, Scenario, WorkerCommand, live_fs};
//! let scenario = Scenario::from_trace("data/sample/planetlab.csv.gz".as_ref(), "pl000")?
//!     .select(8, Pick::Busiest);
//! let mut opts = Options::new(WorkerCommand::this_program("loadgen-worker")?);
//! opts.speed = 150.0;
//! opts.duration = Some(std::time::Duration::from_secs(60));
//! opts.subtree_cpu_cap = Some(1.5);
//! let fs = live_fs(None)?; // under this process's own cgroups
//! let lg = Loadgen::start(&fs, scenario, opts)?;
//! for w in lg.workloads() {
//!     println!("{} in {} ({:?})", w.name, w.cgroup, w.dirs);
//! }
//! let running = lg.spawn(); // the agent manages the cgroups meanwhile
//! let live = running.snapshot(); // per step: asked, got, memory
//! # let _ = live;
//! let record = running.wait()?; // or .stop()
//! let s = record.summary();
//! println!("unserved {:.1}%", 100.0 * s.total.unserved_share());
//! # Ok(()) }
//! ```

pub mod error;
pub mod record;
pub mod run;
pub mod scenario;
pub mod schedule;
pub mod worker;

pub use error::LoadgenError;
pub use record::{Record, StepRow, Summary, Totals};
pub use run::{Loadgen, Options, Running, WorkerCommand, WorkloadCgroup, live_fs};
pub use scenario::{Pick, Scenario, WorkloadTrace};

/// The entry point of a worker process: parses `args` (those after the
/// program or subcommand name), then serves commands from standard input.
/// Returns the process exit code (0, or 2 with a message on stderr).
pub fn worker_main(args: &[String]) -> i32 {
    let parsed = match worker::WorkerArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("prescient loadgen worker: {e}");
            return 2;
        }
    };
    match worker::run_worker(parsed, std::io::stdin().lock()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("prescient loadgen worker: {e}");
            2
        }
    }
}
