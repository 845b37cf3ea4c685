//! What can go wrong.

use std::path::PathBuf;

use prescient_linux::discover::GroupError;
use prescient_linux::layout::BaseError;
use prescient_linux::{EnforceError, ReadError};

/// A loadgen error: bad input (trace, host, options) or a kernel
/// interface that refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The trace could not be read.
    #[error(transparent)]
    Trace(#[from] prescient_trace::TraceError),
    /// The host is not in the trace.
    #[error("host {host:?} is not in the trace (hosts there include: {known})")]
    UnknownHost {
        /// The host asked for.
        host: String,
        /// Some hosts the trace has.
        known: String,
    },
    /// None of the host's workloads has CPU rows.
    #[error(
        "host {host:?} has no cpu series in the trace (resources found: {found}); the loadgen plays cpu, and memory beside it"
    )]
    NoCpu {
        /// The host.
        host: String,
        /// The resources the host has.
        found: String,
    },
    /// An option out of range.
    #[error("invalid option {name}: {why}")]
    Option {
        /// The option.
        name: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// No cgroup hierarchy can hold the workloads.
    #[error("cgroups are unusable here: {0}")]
    NoCgroups(String),
    /// The cgroup layout or the process's own cgroups could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A base cgroup could not be set.
    #[error(transparent)]
    Base(#[from] BaseError),
    /// A cgroup could not be created or removed.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A limit could not be written.
    #[error(transparent)]
    Enforce(#[from] EnforceError),
    /// A worker process could not be started.
    #[error("starting worker {program} for workload {workload:?}: {source}")]
    Spawn {
        /// The workload.
        workload: String,
        /// The program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A worker could not be moved into its cgroup.
    #[error("moving worker {pid} of workload {workload:?} into its cgroup: {why}")]
    Move {
        /// The workload.
        workload: String,
        /// The worker's pid.
        pid: i32,
        /// Why.
        why: String,
    },
    /// Writing the record failed.
    #[error("writing the record {}: {source}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The loadgen thread panicked.
    #[error("the loadgen thread panicked")]
    Panicked,
}
