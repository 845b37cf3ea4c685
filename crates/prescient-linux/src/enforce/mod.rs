//! Enforcement: cgroup limits behind the small [`Enforcer`] trait (read a
//! cgroup's limits, write one), with a v2 backend ([`V2Enforcer`]), a v1
//! backend ([`V1Enforcer`]) and a recording fake ([`FakeEnforcer`]); and the
//! [`Reconciler`], which holds cgroups at desired limits through any of
//! them, with guardrails, drift detection, retries and audit records.
//!
//! Values are in v2 terms throughout ([`Setting`]); the v1 backend
//! converts (`cpu.max` to `cpu.cfs_quota_us`/`cpu.cfs_period_us`,
//! `cpu.weight` to `cpu.shares`, `memory.high` to
//! `memory.soft_limit_in_bytes`, `memory.max` to `memory.limit_in_bytes`,
//! `io.max` to `blkio.throttle.*_device`).

mod error;
mod fake;
mod guard;
mod plan;
mod reconcile;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::cgroup_files::{BlockDevice, Device};
use crate::path::CgroupPath;
pub use error::{Disposition, EnforceError};
pub use fake::FakeEnforcer;
pub use guard::{Capacity, Guarantee, Guardrails, MaxStep, guard_setting};
pub use plan::{
    IO_FLOOR_BYTES_DEFAULT, IO_FLOOR_OPS_DEFAULT, PlanStyle, desired_from_plan, limits_from_plan,
};
pub use reconcile::{Action, AuditRecord, Desired, Reconciler, RetryPolicy};
pub use v1::V1Enforcer;
pub use v2::V2Enforcer;

/// Parsers of the v2 limit files (pure functions of the text).
pub mod v2_parsers {
    pub use super::v2::{parse_cpu_max, parse_io_max, parse_memory_limit};
}

/// Parsers of the v1 limit files (pure functions of the text).
pub mod v1_parsers {
    pub use super::v1::{parse_blkio_throttle, parse_cfs_quota, parse_v1_memory_limit};
}

/// Bounds the kernel puts on `cpu.max` (and the v1 CFS files), in µs.
pub const CPU_PERIOD_MIN_US: u64 = 1_000;
/// Longest CFS period.
pub const CPU_PERIOD_MAX_US: u64 = 1_000_000;
/// Smallest CFS quota.
pub const CPU_QUOTA_MIN_US: u64 = 1_000;
/// The default CFS period.
pub const CPU_PERIOD_DEFAULT_US: u64 = 100_000;

/// `cpu.max`: at most `quota_us` of CPU time per `period_us` (`None`:
/// no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuMax {
    /// CPU time per period, µs; `None` for "max".
    pub quota_us: Option<u64>,
    /// The period, µs.
    pub period_us: u64,
}

impl CpuMax {
    /// No limit, default period.
    pub const UNLIMITED: CpuMax = CpuMax {
        quota_us: None,
        period_us: CPU_PERIOD_DEFAULT_US,
    };

    /// `cores` of CPU over the default period (rounded to the µs).
    pub fn cores(cores: f64) -> CpuMax {
        CpuMax::cores_per(cores, CPU_PERIOD_DEFAULT_US)
    }

    /// `cores` of CPU over `period_us`.
    pub fn cores_per(cores: f64, period_us: u64) -> CpuMax {
        let q = (cores.max(0.0) * period_us as f64).round();
        CpuMax {
            quota_us: Some(if q.is_finite() { q as u64 } else { u64::MAX }),
            period_us,
        }
    }

    /// The limit in cores; `None` when unlimited.
    pub fn as_cores(&self) -> Option<f64> {
        self.quota_us
            .map(|q| q as f64 / self.period_us.max(1) as f64)
    }
}

/// `memory.high` / `memory.max`: `max` or a number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryLimit {
    /// No limit.
    Max,
    /// At most this many bytes.
    Bytes(u64),
}

impl MemoryLimit {
    /// Bytes, with `Max` as `u64::MAX` (for comparisons).
    pub fn as_u64(&self) -> u64 {
        match self {
            MemoryLimit::Max => u64::MAX,
            MemoryLimit::Bytes(b) => *b,
        }
    }
}

/// One device's `io.max`: `None` for no limit on that key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoLimit {
    /// Read bytes per second.
    pub rbps: Option<u64>,
    /// Write bytes per second.
    pub wbps: Option<u64>,
    /// Read operations per second.
    pub riops: Option<u64>,
    /// Write operations per second.
    pub wiops: Option<u64>,
}

impl IoLimit {
    /// No limit at all.
    pub fn is_unlimited(&self) -> bool {
        *self == IoLimit::default()
    }
}

/// One limit knob of a cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Knob {
    /// `cpu.max` (v1: `cpu.cfs_quota_us` and `cpu.cfs_period_us`).
    CpuMax,
    /// `cpu.weight` (v1: `cpu.shares`).
    CpuWeight,
    /// `memory.high` (v1: `memory.soft_limit_in_bytes`).
    MemoryHigh,
    /// `memory.max` (v1: `memory.limit_in_bytes`).
    MemoryMax,
    /// `io.max` for one device (v1: `blkio.throttle.*_device`).
    IoMax(Device),
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Knob::CpuMax => f.write_str("cpu.max"),
            Knob::CpuWeight => f.write_str("cpu.weight"),
            Knob::MemoryHigh => f.write_str("memory.high"),
            Knob::MemoryMax => f.write_str("memory.max"),
            Knob::IoMax(d) => write!(f, "io.max[{d}]"),
        }
    }
}

/// A value for one knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Setting {
    /// `cpu.max`.
    CpuMax(CpuMax),
    /// `cpu.weight`, 1..=10000.
    CpuWeight(u64),
    /// `memory.high`.
    MemoryHigh(MemoryLimit),
    /// `memory.max`.
    MemoryMax(MemoryLimit),
    /// `io.max` of one device.
    IoMax(Device, IoLimit),
}

impl Setting {
    /// The knob it sets.
    pub fn knob(&self) -> Knob {
        match self {
            Setting::CpuMax(_) => Knob::CpuMax,
            Setting::CpuWeight(_) => Knob::CpuWeight,
            Setting::MemoryHigh(_) => Knob::MemoryHigh,
            Setting::MemoryMax(_) => Knob::MemoryMax,
            Setting::IoMax(d, _) => Knob::IoMax(*d),
        }
    }

    /// The text a v2 file holds for it (also what audit records show).
    pub fn v2_text(&self) -> String {
        fn max_or(v: Option<u64>) -> String {
            v.map_or_else(|| "max".to_string(), |v| v.to_string())
        }
        match self {
            Setting::CpuMax(c) => format!("{} {}", max_or(c.quota_us), c.period_us),
            Setting::CpuWeight(w) => w.to_string(),
            Setting::MemoryHigh(m) | Setting::MemoryMax(m) => match m {
                MemoryLimit::Max => "max".into(),
                MemoryLimit::Bytes(b) => b.to_string(),
            },
            Setting::IoMax(d, l) => format!(
                "{d} rbps={} wbps={} riops={} wiops={}",
                max_or(l.rbps),
                max_or(l.wbps),
                max_or(l.riops),
                max_or(l.wiops)
            ),
        }
    }
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.knob(), self.v2_text())
    }
}

/// The limits to hold one cgroup at. `None` (or a device not listed)
/// leaves that knob alone.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// `cpu.max`.
    pub cpu_max: Option<CpuMax>,
    /// `cpu.weight`.
    pub cpu_weight: Option<u64>,
    /// `memory.high`.
    pub memory_high: Option<MemoryLimit>,
    /// `memory.max`.
    pub memory_max: Option<MemoryLimit>,
    /// `io.max`, per device.
    pub io_max: BTreeMap<Device, IoLimit>,
}

impl Limits {
    /// The settings, one per managed knob, in a fixed order.
    pub fn settings(&self) -> Vec<Setting> {
        let mut out = Vec::new();
        if let Some(c) = self.cpu_max {
            out.push(Setting::CpuMax(c));
        }
        if let Some(w) = self.cpu_weight {
            out.push(Setting::CpuWeight(w));
        }
        if let Some(m) = self.memory_high {
            out.push(Setting::MemoryHigh(m));
        }
        if let Some(m) = self.memory_max {
            out.push(Setting::MemoryMax(m));
        }
        for (d, l) in &self.io_max {
            out.push(Setting::IoMax(*d, *l));
        }
        out
    }
}

/// A cgroup's limits and memory use as read back. A knob is `None` when
/// its file is not there (the controller is not enabled for the cgroup).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// `cpu.max`.
    pub cpu_max: Option<CpuMax>,
    /// `cpu.weight`.
    pub cpu_weight: Option<u64>,
    /// `memory.high`.
    pub memory_high: Option<MemoryLimit>,
    /// `memory.max`.
    pub memory_max: Option<MemoryLimit>,
    /// `io.max`: devices with a limit (others are unlimited); `None` when
    /// the io controller is not there.
    pub io_max: Option<BTreeMap<Device, IoLimit>>,
    /// Memory in use, bytes.
    pub memory_usage: Option<u64>,
}

impl Observed {
    /// The current value of `knob`, or `None` when not available.
    pub fn get(&self, knob: Knob) -> Option<Setting> {
        match knob {
            Knob::CpuMax => self.cpu_max.map(Setting::CpuMax),
            Knob::CpuWeight => self.cpu_weight.map(Setting::CpuWeight),
            Knob::MemoryHigh => self.memory_high.map(Setting::MemoryHigh),
            Knob::MemoryMax => self.memory_max.map(Setting::MemoryMax),
            Knob::IoMax(d) => self
                .io_max
                .as_ref()
                .map(|m| Setting::IoMax(d, m.get(&d).copied().unwrap_or_default())),
        }
    }

    /// Sets `s` (for the fake and for tests).
    pub fn set(&mut self, s: Setting) {
        match s {
            Setting::CpuMax(c) => self.cpu_max = Some(c),
            Setting::CpuWeight(w) => self.cpu_weight = Some(w),
            Setting::MemoryHigh(m) => self.memory_high = Some(m),
            Setting::MemoryMax(m) => self.memory_max = Some(m),
            Setting::IoMax(d, l) => {
                let m = self.io_max.get_or_insert_with(BTreeMap::new);
                if l.is_unlimited() {
                    m.remove(&d);
                } else {
                    m.insert(d, l);
                }
            }
        }
    }

    /// A v2 cgroup's defaults: no limits, weight 100.
    pub fn unlimited() -> Observed {
        Observed {
            cpu_max: Some(CpuMax::UNLIMITED),
            cpu_weight: Some(100),
            memory_high: Some(MemoryLimit::Max),
            memory_max: Some(MemoryLimit::Max),
            io_max: Some(BTreeMap::new()),
            memory_usage: Some(0),
        }
    }
}

/// Reads and writes the limits of cgroups, addressed relative to the
/// subtree the enforcer was configured with.
///
/// Implementations write exactly what they are given: guardrails,
/// ordering, drift and retries are the [`Reconciler`]'s.
pub trait Enforcer {
    /// Which backend (`v2`, `v1`, `fake`), for logs.
    fn name(&self) -> &'static str;

    /// The cgroup's current limits and memory use.
    /// [`EnforceError::Vanished`] when the cgroup does not exist.
    fn read(&self, cgroup: &CgroupPath) -> Result<Observed, EnforceError>;

    /// Like [`Enforcer::read`], reading only what `knobs` need (with the
    /// memory usage and both memory limits when a memory knob is among
    /// them); the rest is left `None`. The reconciler calls this: on a
    /// host with many cgroups, every file not read is a system call saved.
    fn read_knobs(&self, cgroup: &CgroupPath, knobs: &[Knob]) -> Result<Observed, EnforceError> {
        let _ = knobs;
        self.read(cgroup)
    }

    /// Writes one setting.
    fn write(&mut self, cgroup: &CgroupPath, setting: &Setting) -> Result<(), EnforceError>;

    /// What an audit record names as the target of `knob` (the file or
    /// files written).
    fn target(&self, cgroup: &CgroupPath, knob: Knob) -> String;
}

impl<E: Enforcer + ?Sized> Enforcer for Box<E> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn read(&self, cgroup: &CgroupPath) -> Result<Observed, EnforceError> {
        (**self).read(cgroup)
    }
    fn read_knobs(&self, cgroup: &CgroupPath, knobs: &[Knob]) -> Result<Observed, EnforceError> {
        (**self).read_knobs(cgroup, knobs)
    }
    fn write(&mut self, cgroup: &CgroupPath, setting: &Setting) -> Result<(), EnforceError> {
        (**self).write(cgroup, setting)
    }
    fn target(&self, cgroup: &CgroupPath, knob: Knob) -> String {
        (**self).target(cgroup, knob)
    }
}

/// Which groups of files a set of knobs needs: (cpu.max, cpu.weight,
/// memory, io).
pub(crate) fn needs(knobs: &[Knob]) -> (bool, bool, bool, bool) {
    let has = |f: fn(&Knob) -> bool| knobs.iter().any(f);
    (
        has(|k| *k == Knob::CpuMax),
        has(|k| *k == Knob::CpuWeight),
        has(|k| matches!(k, Knob::MemoryHigh | Knob::MemoryMax)),
        has(|k| matches!(k, Knob::IoMax(_))),
    )
}

/// The backend for `fs`: v2 when the v2 hierarchy holds the cpu or memory
/// controller, else v1 (hybrid hosts like systemd's keep them on v1).
pub fn enforcer_for(
    fs: &crate::layout::CgroupFs,
) -> Result<Box<dyn Enforcer + Send>, EnforceError> {
    match fs.v2() {
        Some(v2) if v2.has("cpu") || v2.has("memory") => Ok(Box::new(V2Enforcer::new(fs)?)),
        _ => Ok(Box::new(V1Enforcer::new(fs)?)),
    }
}

/// The kernel's page size: memory limits are kept in whole pages.
pub fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// `b` rounded down to a whole number of pages, as the kernel stores it.
pub fn page_align(b: u64) -> u64 {
    let p = page_size().max(1);
    b / p * p
}

/// v2 `cpu.weight` to v1 `cpu.shares`: linear, so that the defaults (100
/// and 1024) meet. (runc's mapping is not linear and takes shares 1024 to
/// weight 39; ours keeps a v1 host's default cgroups at the default.)
pub fn weight_to_shares(weight: u64) -> u64 {
    ((weight as f64 * 1024.0 / 100.0).round() as u64).clamp(2, 262_144)
}

/// v1 `cpu.shares` to v2 `cpu.weight` (the inverse of
/// [`weight_to_shares`] for every weight in 1..=10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    ((shares as f64 * 100.0 / 1024.0).round() as u64).clamp(1, 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_through_shares() {
        for w in 1..=10_000 {
            assert_eq!(shares_to_weight(weight_to_shares(w)), w, "weight {w}");
        }
        assert_eq!(weight_to_shares(100), 1024);
        assert_eq!(shares_to_weight(2), 1);
    }

    #[test]
    fn settings_render_as_v2_files() {
        assert_eq!(
            Setting::CpuMax(CpuMax::cores(0.5)).v2_text(),
            "50000 100000"
        );
        assert_eq!(Setting::CpuMax(CpuMax::UNLIMITED).v2_text(), "max 100000");
        assert_eq!(Setting::MemoryMax(MemoryLimit::Max).v2_text(), "max");
        let d = Device {
            major: 8,
            minor: 16,
        };
        let l = IoLimit {
            rbps: Some(2097152),
            wiops: Some(120),
            ..IoLimit::default()
        };
        assert_eq!(
            Setting::IoMax(d, l).v2_text(),
            "8:16 rbps=2097152 wbps=max riops=max wiops=120"
        );
        assert_eq!(CpuMax::cores(1.5).as_cores(), Some(1.5));
    }
}
