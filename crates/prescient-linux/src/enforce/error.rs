//! What can go wrong enforcing a limit, with the values that broke it, and
//! what to do about each: retry with backoff, or drop with a log line.

use std::io;
use std::path::PathBuf;

use rustix::io::Errno;

use super::Knob;
use crate::io::ReadError;
use crate::path::CgroupPath;

/// An enforcement failure. Guardrail refusals (the value never reached the
/// kernel) and kernel errors both name the cgroup and the values.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    // ---- guardrails: refused before the kernel saw anything
    /// A CPU limit below the workload's guarantee.
    #[error(
        "cgroup {cgroup}: cpu.max of {limit_cores} cores is below the guarantee of {guarantee_cores} cores"
    )]
    CpuBelowGuarantee {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The limit asked for.
        limit_cores: f64,
        /// The guarantee.
        guarantee_cores: f64,
    },
    /// A memory limit below the workload's guarantee.
    #[error("cgroup {cgroup}: {knob} of {limit} bytes is below the guarantee of {guarantee} bytes")]
    MemoryBelowGuarantee {
        /// The cgroup.
        cgroup: CgroupPath,
        /// memory.high or memory.max.
        knob: Knob,
        /// The limit asked for.
        limit: u64,
        /// The guarantee.
        guarantee: u64,
    },
    /// An I/O limit below the workload's guarantee.
    #[error(
        "cgroup {cgroup}: {knob} {direction} limit of {limit} {unit} is below the guarantee of {guarantee} {unit}"
    )]
    IoBelowGuarantee {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The device's knob.
        knob: Knob,
        /// `read` or `write`.
        direction: &'static str,
        /// `bytes/s` (rbps, wbps) or `ops/s` (riops, wiops).
        unit: &'static str,
        /// The limit asked for.
        limit: u64,
        /// The guarantee.
        guarantee: u64,
    },
    /// A hard memory limit under current usage plus headroom: writing it
    /// would make the kernel reclaim hard or OOM-kill. Shrink through
    /// memory.high first.
    #[error(
        "cgroup {cgroup}: memory limit {limit} bytes is under usage {usage} bytes plus headroom {headroom} bytes; shrink through memory.high first"
    )]
    MemoryBelowUsage {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The limit that would have been written.
        limit: u64,
        /// Memory in use.
        usage: u64,
        /// The headroom kept above usage.
        headroom: u64,
    },
    /// Lowering a hard memory limit while usage cannot be read.
    #[error(
        "cgroup {cgroup}: memory usage is unknown, so memory.max is not lowered (to {limit} bytes)"
    )]
    MemoryUsageUnknown {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The limit that would have been written.
        limit: u64,
    },
    /// A CFS quota under the kernel's minimum.
    #[error(
        "cgroup {cgroup}: cpu.max quota {quota_us} µs is under the kernel's minimum of 1000 µs"
    )]
    CpuQuotaTooSmall {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The quota.
        quota_us: u64,
    },
    /// A CFS period out of the kernel's range.
    #[error("cgroup {cgroup}: cpu.max period {period_us} µs is outside 1000..=1000000 µs")]
    CpuPeriodOutOfRange {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The period.
        period_us: u64,
    },
    /// A weight out of 1..=10000.
    #[error("cgroup {cgroup}: cpu.weight {weight} is outside 1..=10000")]
    CpuWeightOutOfRange {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The weight.
        weight: u64,
    },
    /// A zero I/O limit (the kernel reads 0 as "no limit" on v1 and refuses
    /// it on v2).
    #[error("cgroup {cgroup}: {knob} has a zero limit; use no limit or a positive one")]
    IoLimitZero {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The device's knob.
        knob: Knob,
    },
    /// A path that resolves outside the subtree the enforcer may write.
    #[error("{}: outside the subtree {} the enforcer may write", path.display(), root.display())]
    OutsideSubtree {
        /// The path, resolved.
        path: PathBuf,
        /// The subtree, resolved.
        root: PathBuf,
    },

    // ---- the host
    /// The knob's file is not there: the controller is not enabled for the
    /// cgroup (v2) or not mounted (v1).
    #[error("cgroup {cgroup}: {knob} is not available ({} is missing: controller not enabled)", file.display())]
    ControllerUnavailable {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The knob.
        knob: Knob,
        /// The file that is missing.
        file: PathBuf,
    },
    /// The cgroup does not exist (any more).
    #[error("cgroup {cgroup} is gone ({})", path.display())]
    Vanished {
        /// The cgroup.
        cgroup: CgroupPath,
        /// Its directory.
        path: PathBuf,
    },
    /// The kernel refused a write.
    #[error("writing {value:?} to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        value: String,
        /// What the kernel said (EBUSY, EINVAL, EPERM, ...).
        source: io::Error,
    },
    /// A limit file could not be read or parsed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: try again later, with backoff.
    Retry,
    /// Will not get better by retrying the same value: drop it with a log
    /// line (it is tried again when the desired value changes).
    Drop,
}

impl EnforceError {
    /// Whether the value never reached the kernel because a guardrail
    /// refused it.
    pub fn is_guardrail(&self) -> bool {
        matches!(
            self,
            EnforceError::CpuBelowGuarantee { .. }
                | EnforceError::MemoryBelowGuarantee { .. }
                | EnforceError::IoBelowGuarantee { .. }
                | EnforceError::MemoryBelowUsage { .. }
                | EnforceError::MemoryUsageUnknown { .. }
                | EnforceError::CpuQuotaTooSmall { .. }
                | EnforceError::CpuPeriodOutOfRange { .. }
                | EnforceError::CpuWeightOutOfRange { .. }
                | EnforceError::IoLimitZero { .. }
                | EnforceError::OutsideSubtree { .. }
        )
    }

    /// The retry policy: `EBUSY` (v1 memory could not be reclaimed below
    /// the new limit yet, a cpuset in use), `EAGAIN`, `EINTR`, `ENOMEM` and
    /// unknown I/O errors are retried; `EINVAL` (a value the kernel will
    /// not take, such as a quota above the parent's), `EPERM`/`EACCES`,
    /// `EROFS`, a missing controller, a vanished cgroup and every guardrail
    /// refusal are dropped.
    pub fn disposition(&self) -> Disposition {
        match self {
            EnforceError::Write { source, .. } => match Errno::from_io_error(source) {
                Some(
                    Errno::INVAL
                    | Errno::PERM
                    | Errno::ACCESS
                    | Errno::ROFS
                    | Errno::NOENT
                    | Errno::NODEV,
                )
                | Some(Errno::OPNOTSUPP) => Disposition::Drop,
                _ => Disposition::Retry,
            },
            EnforceError::Read(ReadError::Io { source, .. }) => {
                match Errno::from_io_error(source) {
                    Some(Errno::PERM | Errno::ACCESS) => Disposition::Drop,
                    _ => Disposition::Retry,
                }
            }
            EnforceError::Read(ReadError::Parse { .. }) => Disposition::Drop,
            _ => Disposition::Drop,
        }
    }

    /// Whether the error means the cgroup is gone (its state is then
    /// forgotten).
    pub fn is_vanished(&self) -> bool {
        match self {
            EnforceError::Vanished { .. } => true,
            EnforceError::Write { source, .. } => crate::io::is_vanished(source),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_err(e: Errno) -> EnforceError {
        EnforceError::Write {
            path: "/x".into(),
            value: "1".into(),
            source: e.into(),
        }
    }

    #[test]
    fn which_errors_are_retried() {
        assert_eq!(write_err(Errno::BUSY).disposition(), Disposition::Retry);
        assert_eq!(write_err(Errno::AGAIN).disposition(), Disposition::Retry);
        assert_eq!(write_err(Errno::INTR).disposition(), Disposition::Retry);
        assert_eq!(write_err(Errno::INVAL).disposition(), Disposition::Drop);
        assert_eq!(write_err(Errno::PERM).disposition(), Disposition::Drop);
        assert_eq!(write_err(Errno::NODEV).disposition(), Disposition::Drop);
        assert!(write_err(Errno::NODEV).is_vanished());
        assert!(write_err(Errno::NOENT).is_vanished());
        assert!(!write_err(Errno::BUSY).is_vanished());
        let g = EnforceError::MemoryBelowUsage {
            cgroup: CgroupPath::parse("/a").unwrap(),
            limit: 1,
            usage: 2,
            headroom: 3,
        };
        assert!(g.is_guardrail());
        assert_eq!(g.disposition(), Disposition::Drop);
        assert_eq!(
            g.to_string(),
            "cgroup /a: memory limit 1 bytes is under usage 2 bytes plus headroom 3 bytes; shrink through memory.high first"
        );
    }
}
