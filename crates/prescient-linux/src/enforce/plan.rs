//! From a [`Plan`] to the limits that enforce it.
//!
//! Every workload gets a CPU weight in proportion to its CPU allocation and
//! a memory.high at its memory allocation (shares: what others leave
//! unused still flows to it); hard caps (`cpu.max`, `memory.max`, `io.max`)
//! only where the style asks for them.

use std::collections::BTreeMap;

use prescient_core::{Plan, Resource, WorkloadId};
use serde::{Deserialize, Serialize};

use super::{
    CPU_PERIOD_DEFAULT_US, CpuMax, Desired, Device, Guarantee, IoLimit, Limits, MemoryLimit,
};
use crate::path::CgroupPath;

/// How allocations become limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlanStyle {
    /// Cap CPU at the allocation (`cpu.max`), not only weigh it.
    pub hard_cpu: bool,
    /// The `cpu.max` period, µs.
    pub cpu_period_us: u64,
    /// Cap memory (`memory.max`) at this multiple (≥ 1) of the allocation;
    /// `None` leaves memory.max alone (memory.high is always set).
    pub memory_max_factor: Option<f64>,
    /// Devices to cap I/O on at the io_read / io_write (rbps / wbps) and
    /// io_read_ops / io_write_ops (riops / wiops) allocations (none: no
    /// I/O caps).
    pub io_devices: Vec<Device>,
    /// The least a bandwidth cap (rbps, wbps) is set to, bytes/s.
    pub io_floor_bytes: u64,
    /// The least an operations cap (riops, wiops) is set to, ops/s.
    pub io_floor_ops: u64,
}

/// Default [`PlanStyle::io_floor_bytes`]: 1 MiB/s.
pub const IO_FLOOR_BYTES_DEFAULT: u64 = 1 << 20;

/// Default [`PlanStyle::io_floor_ops`]: 10 ops/s, one planning unit.
pub const IO_FLOOR_OPS_DEFAULT: u64 = 10;

impl Default for PlanStyle {
    fn default() -> Self {
        PlanStyle {
            hard_cpu: false,
            cpu_period_us: CPU_PERIOD_DEFAULT_US,
            memory_max_factor: None,
            io_devices: Vec::new(),
            io_floor_bytes: IO_FLOOR_BYTES_DEFAULT,
            io_floor_ops: IO_FLOOR_OPS_DEFAULT,
        }
    }
}

/// A CPU allocation in cores as a `cpu.weight`: 100 per core (a v2
/// cgroup's default weight is one core's worth), within 1..=10000.
pub fn cpu_weight_for(cores: f64) -> u64 {
    if !cores.is_finite() {
        return 1;
    }
    (cores * 100.0).round().clamp(1.0, 10_000.0) as u64
}

/// The limits enforcing `plan`'s entries for `workload`, and the reasons
/// of those entries.
pub fn limits_from_plan(
    plan: &Plan,
    workload: &WorkloadId,
    style: &PlanStyle,
) -> (Limits, Vec<String>) {
    let mut l = Limits::default();
    let mut reasons = Vec::new();
    // rbps, wbps, riops, wiops, as IoLimit orders them.
    let mut io = [None; 4];
    for e in plan.entries.iter().filter(|e| &e.workload == workload) {
        if !e.allocation.is_finite() || e.allocation < 0.0 {
            continue;
        }
        match e.resource {
            Resource::Cpu => {
                l.cpu_weight = Some(cpu_weight_for(e.allocation));
                if style.hard_cpu {
                    l.cpu_max = Some(CpuMax::cores_per(e.allocation, style.cpu_period_us));
                }
            }
            Resource::Memory => {
                let b = e.allocation as u64;
                l.memory_high = Some(MemoryLimit::Bytes(b));
                if let Some(f) = style.memory_max_factor {
                    l.memory_max = Some(MemoryLimit::Bytes((e.allocation * f.max(1.0)) as u64));
                }
            }
            Resource::IoRead => io[0] = Some(e.allocation as u64),
            Resource::IoWrite => io[1] = Some(e.allocation as u64),
            Resource::IoReadOps => io[2] = Some(e.allocation as u64),
            Resource::IoWriteOps => io[3] = Some(e.allocation as u64),
            Resource::NetRx | Resource::NetTx | Resource::DiskIo => continue,
        }
        if !e.reason.is_empty() {
            reasons.push(format!("{}: {}", e.resource, e.reason));
        }
    }
    if io.iter().any(Option::is_some) {
        // I/O caps are hard: a workload planned (next to) nothing would
        // wait on every request, and learn its need only slowly through
        // the cap. The floors keep it able to start; they are at least 1,
        // for the kernel reads 0 as "no limit" on v1 and refuses it on v2.
        let floor = |v: Option<u64>, f: u64| v.map(|v| v.max(f.max(1)));
        let [rbps, wbps, riops, wiops] = [
            floor(io[0], style.io_floor_bytes),
            floor(io[1], style.io_floor_bytes),
            floor(io[2], style.io_floor_ops),
            floor(io[3], style.io_floor_ops),
        ];
        for d in &style.io_devices {
            l.io_max.insert(
                *d,
                IoLimit {
                    rbps,
                    wbps,
                    riops,
                    wiops,
                },
            );
        }
    }
    (l, reasons)
}

/// The desired state of every workload of `plan` that has a cgroup in
/// `workloads` (workload → its cgroup and guarantee).
pub fn desired_from_plan(
    plan: &Plan,
    workloads: &BTreeMap<WorkloadId, (CgroupPath, Guarantee)>,
    style: &PlanStyle,
) -> BTreeMap<CgroupPath, Desired> {
    let mut out = BTreeMap::new();
    for (w, (cg, g)) in workloads {
        let (limits, reasons) = limits_from_plan(plan, w, style);
        if limits == Limits::default() {
            continue;
        }
        let mut reason = format!("plan of {} at {} for {w}", plan.pool, plan.made_at);
        if plan.degraded {
            reason.push_str(" (degraded)");
        }
        for r in reasons {
            reason.push_str("; ");
            reason.push_str(&r);
        }
        out.insert(
            cg.clone(),
            Desired {
                limits,
                guarantee: *g,
                reason,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::Setting;
    use prescient_core::{HostId, PlanEntry};

    fn entry(w: &str, r: Resource, a: f64) -> PlanEntry {
        PlanEntry {
            workload: WorkloadId(w.into()),
            resource: r,
            allocation: a,
            coverage: 0.95,
            expected_unmet: 0.0,
            reason: format!("p95 of {w}"),
        }
    }

    #[test]
    fn plan_to_limits() {
        let plan = Plan {
            made_at: 1000,
            pool: HostId("h".into()),
            degraded: false,
            entries: vec![
                entry("web", Resource::Cpu, 1.5),
                entry("web", Resource::Memory, 1e9),
                entry("web", Resource::IoRead, 5e6),
                entry("db", Resource::Cpu, 0.001),
            ],
        };
        let dev = Device { major: 8, minor: 0 };
        let style = PlanStyle {
            hard_cpu: true,
            memory_max_factor: Some(1.25),
            io_devices: vec![dev],
            ..PlanStyle::default()
        };
        let (l, reasons) = limits_from_plan(&plan, &WorkloadId("web".into()), &style);
        assert_eq!(l.cpu_weight, Some(150));
        assert_eq!(l.cpu_max, Some(CpuMax::cores(1.5)));
        assert_eq!(l.memory_high, Some(MemoryLimit::Bytes(1_000_000_000)));
        assert_eq!(l.memory_max, Some(MemoryLimit::Bytes(1_250_000_000)));
        assert_eq!(l.io_max[&dev].rbps, Some(5_000_000));
        assert_eq!(l.io_max[&dev].wbps, None);
        assert_eq!((l.io_max[&dev].riops, l.io_max[&dev].wiops), (None, None));
        assert_eq!(reasons.len(), 3);
        let (l, _) = limits_from_plan(&plan, &WorkloadId("db".into()), &PlanStyle::default());
        assert_eq!(l.cpu_weight, Some(1), "weights never reach 0");
        assert_eq!(l.cpu_max, None, "shares only by default");
        let mut w = BTreeMap::new();
        w.insert(
            WorkloadId("web".into()),
            (CgroupPath::parse("/web").unwrap(), Guarantee::default()),
        );
        w.insert(
            WorkloadId("idle".into()),
            (CgroupPath::parse("/idle").unwrap(), Guarantee::default()),
        );
        let d = desired_from_plan(&plan, &w, &style);
        assert_eq!(d.len(), 1, "a workload without entries is left alone");
        assert!(
            d[&CgroupPath::parse("/web").unwrap()]
                .reason
                .starts_with("plan of h at 1000 for web")
        );
    }

    #[test]
    fn io_ops_allocations_cap_riops_and_wiops_on_each_device() {
        let plan = Plan {
            made_at: 1000,
            pool: HostId("h".into()),
            degraded: false,
            entries: vec![
                entry("db", Resource::IoWrite, 8e6),
                entry("db", Resource::IoReadOps, 250.0),
                entry("db", Resource::IoWriteOps, 120.0),
                entry("idle", Resource::IoReadOps, 0.0),
            ],
        };
        let (sda, nvme) = (
            Device { major: 8, minor: 0 },
            Device {
                major: 259,
                minor: 0,
            },
        );
        let style = PlanStyle {
            io_devices: vec![sda, nvme],
            ..PlanStyle::default()
        };
        let (l, reasons) = limits_from_plan(&plan, &WorkloadId("db".into()), &style);
        let want = IoLimit {
            rbps: None,
            wbps: Some(8_000_000),
            riops: Some(250),
            wiops: Some(120),
        };
        assert_eq!(l.io_max, BTreeMap::from([(sda, want), (nvme, want)]));
        assert_eq!(
            Setting::IoMax(sda, want).v2_text(),
            "8:0 rbps=max wbps=8000000 riops=250 wiops=120"
        );
        assert_eq!(reasons.len(), 3);
        assert!(reasons[1].starts_with("io_read_ops: "), "{reasons:?}");
        // Zero ops is capped at the floor (10 ops/s by default), never 0
        // (no limit on v1), and a floor of 0 still gives 1.
        let (l, _) = limits_from_plan(&plan, &WorkloadId("idle".into()), &style);
        assert_eq!(l.io_max[&sda].riops, Some(IO_FLOOR_OPS_DEFAULT));
        assert_eq!(l.io_max[&sda].wiops, None);
        let bare = PlanStyle {
            io_floor_ops: 0,
            ..style.clone()
        };
        let (l, _) = limits_from_plan(&plan, &WorkloadId("idle".into()), &bare);
        assert_eq!(l.io_max[&sda].riops, Some(1));
        let high = PlanStyle {
            io_floor_ops: 500,
            io_floor_bytes: 16 << 20,
            ..style.clone()
        };
        let (l, _) = limits_from_plan(&plan, &WorkloadId("db".into()), &high);
        assert_eq!(l.io_max[&sda].riops, Some(500), "raised to the floor");
        assert_eq!(l.io_max[&sda].wbps, Some(16 << 20), "raised to the floor");
        // Without devices, no caps.
        let (l, _) = limits_from_plan(&plan, &WorkloadId("db".into()), &PlanStyle::default());
        assert_eq!(l, Limits::default());
    }
}
