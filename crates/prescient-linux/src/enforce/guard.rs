//! Guardrails: a pure function from (desired, current, usage, guarantee,
//! limits of change) to the setting to write now, or a refusal.

use serde::{Deserialize, Serialize};

use super::{
    CPU_PERIOD_MAX_US, CPU_PERIOD_MIN_US, CPU_QUOTA_MIN_US, CpuMax, EnforceError, IoLimit, Knob,
    MemoryLimit, Setting, page_align,
};
use crate::path::CgroupPath;

/// What a workload is promised: no limit is ever set below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guarantee {
    /// CPU, cores (checked against `cpu.max`).
    pub cpu_cores: f64,
    /// Memory, bytes (checked against `memory.high` and `memory.max`).
    pub memory_bytes: u64,
    /// Read bandwidth, bytes/s (checked against `io.max` rbps).
    pub io_read_bytes_per_sec: u64,
    /// Write bandwidth, bytes/s (checked against `io.max` wbps).
    pub io_write_bytes_per_sec: u64,
    /// Read operations, ops/s (checked against `io.max` riops).
    pub io_read_ops_per_sec: u64,
    /// Write operations, ops/s (checked against `io.max` wiops).
    pub io_write_ops_per_sec: u64,
}

/// The largest change one reconcile makes to each knob (`None`: any).
/// Larger moves take several reconciles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaxStep {
    /// `cpu.max`, cores.
    pub cpu_cores: Option<f64>,
    /// `cpu.weight`.
    pub cpu_weight: Option<u64>,
    /// `memory.high` and `memory.max`, bytes.
    pub memory_bytes: Option<u64>,
    /// `io.max` rbps and wbps, bytes/s.
    pub io_bytes_per_sec: Option<u64>,
    /// `io.max` riops and wiops.
    pub io_ops_per_sec: Option<u64>,
}

/// What the machine has: a step away from "no limit" starts from here.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// CPUs.
    pub cpu_cores: f64,
    /// Memory, bytes.
    pub memory_bytes: u64,
}

/// The guardrails of a [`super::Reconciler`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Guardrails {
    /// Hard memory limits stay at least this far above usage...
    pub memory_headroom_bytes: u64,
    /// ...or this share of usage above it, whichever is more.
    pub memory_headroom_ratio: f64,
    /// The largest change per reconcile.
    pub max_step: MaxStep,
    /// The machine's capacity.
    pub capacity: Capacity,
    /// Restore each cgroup's original limits on shutdown and when it
    /// leaves the desired set.
    pub restore_originals: bool,
}

impl Guardrails {
    /// 64 MiB or 10% of usage of memory headroom, no step limit, originals
    /// restored.
    pub fn new(capacity: Capacity) -> Self {
        Guardrails {
            memory_headroom_bytes: 64 << 20,
            memory_headroom_ratio: 0.10,
            max_step: MaxStep::default(),
            capacity,
            restore_originals: true,
        }
    }

    /// The headroom kept above `usage`.
    pub fn headroom(&self, usage: u64) -> u64 {
        let ratio = (usage as f64 * self.memory_headroom_ratio.max(0.0)) as u64;
        self.memory_headroom_bytes.max(ratio)
    }
}

/// The setting to write now to move `cgroup` from `current` toward
/// `desired`, and notes on what the guardrails changed; or why nothing may
/// be written. In order:
///
/// 1. the desired value must be one the kernel takes (quota ≥ 1 ms, period
///    in 1 ms..=1 s, weight in 1..=10000, no zero I/O limit);
/// 2. it must not be below the guarantee;
/// 3. memory values are rounded down to whole pages (as the kernel keeps
///    them, so that reading back compares equal);
/// 4. the change is cut to the maximum step (from "max", a step starts at
///    the machine's capacity), but never below the guarantee;
/// 5. a hard memory limit (`memory.max`) is not lowered under usage plus
///    headroom, nor at all while usage is unknown. Raising one is always
///    allowed, even when it stays under usage: it only makes things better.
///    `memory.high` may go under usage: that is how memory is shrunk (the
///    kernel throttles and reclaims, and never OOM-kills for it).
pub fn guard_setting(
    cgroup: &CgroupPath,
    desired: &Setting,
    current: &Setting,
    usage: Option<u64>,
    guarantee: &Guarantee,
    rails: &Guardrails,
) -> Result<(Setting, Vec<String>), EnforceError> {
    let mut notes = Vec::new();
    let step = rails.max_step;
    let out = match (*desired, *current) {
        (Setting::CpuMax(d), Setting::CpuMax(c)) => {
            if !(CPU_PERIOD_MIN_US..=CPU_PERIOD_MAX_US).contains(&d.period_us) {
                return Err(EnforceError::CpuPeriodOutOfRange {
                    cgroup: cgroup.clone(),
                    period_us: d.period_us,
                });
            }
            if let Some(q) = d.quota_us
                && q < CPU_QUOTA_MIN_US
            {
                return Err(EnforceError::CpuQuotaTooSmall {
                    cgroup: cgroup.clone(),
                    quota_us: q,
                });
            }
            if let Some(cores) = d.as_cores()
                && cores + 1e-9 < guarantee.cpu_cores
            {
                return Err(EnforceError::CpuBelowGuarantee {
                    cgroup: cgroup.clone(),
                    limit_cores: cores,
                    guarantee_cores: guarantee.cpu_cores,
                });
            }
            let cap = rails.capacity.cpu_cores;
            let want = d.as_cores().unwrap_or(cap);
            let have = c.as_cores().unwrap_or(cap);
            match step.cpu_cores {
                Some(s) if (want - have).abs() > s + 1e-9 => {
                    let mut n = if want > have { have + s } else { have - s };
                    n = n.max(guarantee.cpu_cores);
                    let next = if n >= cap && d.quota_us.is_none() {
                        CpuMax {
                            quota_us: None,
                            period_us: d.period_us,
                        }
                    } else {
                        let q = ((n * d.period_us as f64).round() as u64).max(CPU_QUOTA_MIN_US);
                        CpuMax {
                            quota_us: Some(q),
                            period_us: d.period_us,
                        }
                    };
                    notes.push(format!(
                        "cut to a step of {s} cores: {} toward {}",
                        Setting::CpuMax(next).v2_text(),
                        Setting::CpuMax(d).v2_text()
                    ));
                    Setting::CpuMax(next)
                }
                _ => Setting::CpuMax(d),
            }
        }
        (Setting::CpuWeight(d), Setting::CpuWeight(c)) => {
            if !(1..=10_000).contains(&d) {
                return Err(EnforceError::CpuWeightOutOfRange {
                    cgroup: cgroup.clone(),
                    weight: d,
                });
            }
            match step.cpu_weight {
                Some(s) if d.abs_diff(c) > s => {
                    let n = if d > c {
                        c + s
                    } else {
                        c.saturating_sub(s).max(1)
                    };
                    notes.push(format!("cut to a step of {s}: {n} toward {d}"));
                    Setting::CpuWeight(n)
                }
                _ => Setting::CpuWeight(d),
            }
        }
        (Setting::MemoryHigh(d), Setting::MemoryHigh(c)) => Setting::MemoryHigh(memory(
            cgroup,
            Knob::MemoryHigh,
            d,
            c,
            None,
            guarantee,
            rails,
            &mut notes,
        )?),
        (Setting::MemoryMax(d), Setting::MemoryMax(c)) => Setting::MemoryMax(memory(
            cgroup,
            Knob::MemoryMax,
            d,
            c,
            Some(usage),
            guarantee,
            rails,
            &mut notes,
        )?),
        (Setting::IoMax(dev, d), Setting::IoMax(_, c)) => {
            let knob = Knob::IoMax(dev);
            if [d.rbps, d.wbps, d.riops, d.wiops].contains(&Some(0)) {
                return Err(EnforceError::IoLimitZero {
                    cgroup: cgroup.clone(),
                    knob,
                });
            }
            for (direction, unit, limit, g) in [
                ("read", "bytes/s", d.rbps, guarantee.io_read_bytes_per_sec),
                ("write", "bytes/s", d.wbps, guarantee.io_write_bytes_per_sec),
                ("read", "ops/s", d.riops, guarantee.io_read_ops_per_sec),
                ("write", "ops/s", d.wiops, guarantee.io_write_ops_per_sec),
            ] {
                if let Some(l) = limit
                    && l < g
                {
                    return Err(EnforceError::IoBelowGuarantee {
                        cgroup: cgroup.clone(),
                        knob,
                        direction,
                        unit,
                        limit: l,
                        guarantee: g,
                    });
                }
            }
            // A step only between two numbers: from or to "max" there is
            // no device capacity to start from.
            let cut = |want: Option<u64>, have: Option<u64>, s: Option<u64>, floor: u64| match (
                want, have, s,
            ) {
                (Some(w), Some(h), Some(s)) if w.abs_diff(h) > s => Some(if w > h {
                    h + s
                } else {
                    h.saturating_sub(s).max(floor).max(1)
                }),
                _ => want,
            };
            let n = IoLimit {
                rbps: cut(
                    d.rbps,
                    c.rbps,
                    step.io_bytes_per_sec,
                    guarantee.io_read_bytes_per_sec,
                ),
                wbps: cut(
                    d.wbps,
                    c.wbps,
                    step.io_bytes_per_sec,
                    guarantee.io_write_bytes_per_sec,
                ),
                riops: cut(
                    d.riops,
                    c.riops,
                    step.io_ops_per_sec,
                    guarantee.io_read_ops_per_sec,
                ),
                wiops: cut(
                    d.wiops,
                    c.wiops,
                    step.io_ops_per_sec,
                    guarantee.io_write_ops_per_sec,
                ),
            };
            if n != d {
                notes.push(format!(
                    "cut to the maximum step: {} toward {}",
                    Setting::IoMax(dev, n).v2_text(),
                    Setting::IoMax(dev, d).v2_text()
                ));
            }
            Setting::IoMax(dev, n)
        }
        // Mismatched knobs: a caller bug, refused as nothing to do.
        _ => *current,
    };
    Ok((out, notes))
}

/// The memory half of [`guard_setting`]; `usage` is `Some` for the hard
/// limit only.
#[allow(clippy::too_many_arguments)]
fn memory(
    cgroup: &CgroupPath,
    knob: Knob,
    desired: MemoryLimit,
    current: MemoryLimit,
    usage: Option<Option<u64>>,
    guarantee: &Guarantee,
    rails: &Guardrails,
    notes: &mut Vec<String>,
) -> Result<MemoryLimit, EnforceError> {
    let desired = match desired {
        MemoryLimit::Max => MemoryLimit::Max,
        MemoryLimit::Bytes(b) => {
            let a = page_align(b);
            if a < guarantee.memory_bytes {
                return Err(EnforceError::MemoryBelowGuarantee {
                    cgroup: cgroup.clone(),
                    knob,
                    limit: a,
                    guarantee: guarantee.memory_bytes,
                });
            }
            MemoryLimit::Bytes(a)
        }
    };
    let cap = rails.capacity.memory_bytes;
    let want = match desired {
        MemoryLimit::Max => cap,
        MemoryLimit::Bytes(b) => b,
    };
    let have = match current {
        MemoryLimit::Max => cap,
        MemoryLimit::Bytes(b) => b,
    };
    let mut next = desired;
    if let Some(s) = rails.max_step.memory_bytes
        && want.abs_diff(have) > s
    {
        let n = if want > have {
            have.saturating_add(s)
        } else {
            have.saturating_sub(s)
        };
        let n = page_align(n).max(page_align(guarantee.memory_bytes));
        next = if n >= cap && desired == MemoryLimit::Max {
            MemoryLimit::Max
        } else {
            MemoryLimit::Bytes(n)
        };
        notes.push(format!(
            "cut to a step of {s} bytes: {} toward {}",
            Setting::MemoryMax(next).v2_text(),
            Setting::MemoryMax(desired).v2_text()
        ));
    }
    if let (Some(usage), MemoryLimit::Bytes(n)) = (usage, next)
        && n < current.as_u64()
    {
        let Some(usage) = usage else {
            return Err(EnforceError::MemoryUsageUnknown {
                cgroup: cgroup.clone(),
                limit: n,
            });
        };
        let headroom = rails.headroom(usage);
        if n < usage.saturating_add(headroom) {
            return Err(EnforceError::MemoryBelowUsage {
                cgroup: cgroup.clone(),
                limit: n,
                usage,
                headroom,
            });
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn rails() -> Guardrails {
        Guardrails::new(Capacity {
            cpu_cores: 8.0,
            memory_bytes: 16 << 30,
        })
    }

    fn cg() -> CgroupPath {
        CgroupPath::parse("/w").unwrap()
    }

    #[test]
    fn memory_max_is_never_lowered_under_usage_plus_headroom() {
        let r = rails();
        let g = Guarantee::default();
        let d = Setting::MemoryMax(MemoryLimit::Bytes(100 * MIB));
        let c = Setting::MemoryMax(MemoryLimit::Max);
        // usage 80 MiB + 64 MiB headroom > 100 MiB: refused.
        let err = guard_setting(&cg(), &d, &c, Some(80 * MIB), &g, &r).unwrap_err();
        assert!(
            matches!(err, EnforceError::MemoryBelowUsage { limit, usage, headroom, .. }
                if limit == 100 * MIB && usage == 80 * MIB && headroom == 64 * MIB),
            "{err}"
        );
        // usage 30 MiB: accepted.
        let (s, notes) = guard_setting(&cg(), &d, &c, Some(30 * MIB), &g, &r).unwrap();
        assert_eq!(s, d);
        assert!(notes.is_empty());
        // Unknown usage: not lowered.
        assert!(matches!(
            guard_setting(&cg(), &d, &c, None, &g, &r),
            Err(EnforceError::MemoryUsageUnknown { .. })
        ));
        // Raising is fine even under usage.
        let low = Setting::MemoryMax(MemoryLimit::Bytes(50 * MIB));
        assert_eq!(
            guard_setting(&cg(), &d, &low, Some(80 * MIB), &g, &r)
                .unwrap()
                .0,
            d
        );
        // memory.high may go under usage.
        let h = Setting::MemoryHigh(MemoryLimit::Bytes(10 * MIB));
        assert_eq!(
            guard_setting(
                &cg(),
                &h,
                &Setting::MemoryHigh(MemoryLimit::Max),
                Some(80 * MIB),
                &g,
                &r
            )
            .unwrap()
            .0,
            h
        );
    }

    #[test]
    fn guarantees_are_never_undercut() {
        let r = rails();
        let g = Guarantee {
            cpu_cores: 1.0,
            memory_bytes: 512 * MIB,
            io_read_bytes_per_sec: 10 * MIB,
            ..Guarantee::default()
        };
        let e = guard_setting(
            &cg(),
            &Setting::CpuMax(CpuMax::cores(0.5)),
            &Setting::CpuMax(CpuMax::UNLIMITED),
            None,
            &g,
            &r,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cgroup /w: cpu.max of 0.5 cores is below the guarantee of 1 cores"
        );
        assert!(matches!(
            guard_setting(
                &cg(),
                &Setting::MemoryHigh(MemoryLimit::Bytes(256 * MIB)),
                &Setting::MemoryHigh(MemoryLimit::Max),
                Some(0),
                &g,
                &r
            ),
            Err(EnforceError::MemoryBelowGuarantee { limit, guarantee, .. }) if limit == 256 * MIB && guarantee == 512 * MIB
        ));
        let dev = super::super::Device { major: 8, minor: 0 };
        let io = IoLimit {
            rbps: Some(MIB),
            ..IoLimit::default()
        };
        assert!(matches!(
            guard_setting(
                &cg(),
                &Setting::IoMax(dev, io),
                &Setting::IoMax(dev, IoLimit::default()),
                None,
                &g,
                &r
            ),
            Err(EnforceError::IoBelowGuarantee {
                direction: "read",
                ..
            })
        ));
    }

    /// riops / wiops have the guardrails of rbps / wbps: never zero, never
    /// below the guarantee, cut to the step, a cut down stopping at the
    /// guarantee.
    #[test]
    fn iops_caps_have_the_bandwidth_guardrails() {
        let mut r = rails();
        r.max_step.io_ops_per_sec = Some(100);
        let g = Guarantee {
            io_read_ops_per_sec: 50,
            io_write_ops_per_sec: 20,
            ..Guarantee::default()
        };
        let dev = super::super::Device { major: 8, minor: 0 };
        let io = |riops, wiops| {
            Setting::IoMax(
                dev,
                IoLimit {
                    riops,
                    wiops,
                    ..IoLimit::default()
                },
            )
        };
        let none = io(None, None);
        let e = guard_setting(&cg(), &io(Some(40), None), &none, None, &g, &r).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cgroup /w: io.max[8:0] read limit of 40 ops/s is below the guarantee of 50 ops/s"
        );
        assert!(matches!(
            guard_setting(&cg(), &io(None, Some(10)), &none, None, &g, &r),
            Err(EnforceError::IoBelowGuarantee {
                direction: "write",
                unit: "ops/s",
                limit: 10,
                guarantee: 20,
                ..
            })
        ));
        assert!(matches!(
            guard_setting(&cg(), &io(Some(0), None), &none, None, &g, &r),
            Err(EnforceError::IoLimitZero { .. })
        ));
        // From "max" there is nothing to step from: written as asked.
        let (s, notes) = guard_setting(&cg(), &io(Some(60), None), &none, None, &g, &r).unwrap();
        assert_eq!(s, io(Some(60), None));
        assert!(notes.is_empty());
        // 1000 -> 60 read, 1000 -> 2000 write: one step of 100 each way.
        let (s, notes) = guard_setting(
            &cg(),
            &io(Some(60), Some(2000)),
            &io(Some(1000), Some(1000)),
            None,
            &g,
            &r,
        )
        .unwrap();
        assert_eq!(s, io(Some(900), Some(1100)));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("riops=900"), "{notes:?}");
        // 120 -> 60 with a guarantee of 50: within a step, straight there.
        let (s, _) = guard_setting(
            &cg(),
            &io(Some(60), None),
            &io(Some(120), None),
            None,
            &g,
            &r,
        )
        .unwrap();
        assert_eq!(s, io(Some(60), None));
    }

    #[test]
    fn steps_are_cut_and_start_from_capacity() {
        let mut r = rails();
        r.max_step = MaxStep {
            cpu_cores: Some(1.0),
            memory_bytes: Some(1 << 30),
            cpu_weight: Some(50),
            ..MaxStep::default()
        };
        let g = Guarantee {
            cpu_cores: 6.5,
            ..Guarantee::default()
        };
        // From max (8 cores) toward 7: one step, exact.
        let (s, notes) = guard_setting(
            &cg(),
            &Setting::CpuMax(CpuMax::cores(7.0)),
            &Setting::CpuMax(CpuMax::UNLIMITED),
            None,
            &g,
            &r,
        )
        .unwrap();
        assert_eq!(s, Setting::CpuMax(CpuMax::cores(7.0)));
        assert!(notes.is_empty());
        // From 8 toward 6.5 with a guarantee of 6.5: 7 cores.
        let (s, notes) = guard_setting(
            &cg(),
            &Setting::CpuMax(CpuMax::cores(6.5)),
            &Setting::CpuMax(CpuMax::cores(8.0)),
            None,
            &g,
            &r,
        )
        .unwrap();
        assert_eq!(s, Setting::CpuMax(CpuMax::cores(7.0)));
        assert_eq!(notes.len(), 1, "{notes:?}");
        // Back to max from 6.5: 7.5, then max once within a step of capacity.
        let (s, _) = guard_setting(
            &cg(),
            &Setting::CpuMax(CpuMax::UNLIMITED),
            &Setting::CpuMax(CpuMax::cores(6.5)),
            None,
            &g,
            &r,
        )
        .unwrap();
        assert_eq!(s, Setting::CpuMax(CpuMax::cores(7.5)));
        let (s, _) = guard_setting(
            &cg(),
            &Setting::CpuMax(CpuMax::UNLIMITED),
            &Setting::CpuMax(CpuMax::cores(7.5)),
            None,
            &g,
            &r,
        )
        .unwrap();
        assert_eq!(s, Setting::CpuMax(CpuMax::UNLIMITED));
        // Memory from max (16 GiB) toward 4 GiB: 15 GiB (usage is low).
        let (s, _) = guard_setting(
            &cg(),
            &Setting::MemoryMax(MemoryLimit::Bytes(4 << 30)),
            &Setting::MemoryMax(MemoryLimit::Max),
            Some(MIB),
            &Guarantee::default(),
            &r,
        )
        .unwrap();
        assert_eq!(s, Setting::MemoryMax(MemoryLimit::Bytes(15 << 30)));
        let (s, _) = guard_setting(
            &cg(),
            &Setting::CpuWeight(500),
            &Setting::CpuWeight(100),
            None,
            &g,
            &r,
        )
        .unwrap();
        assert_eq!(s, Setting::CpuWeight(150));
    }

    #[test]
    fn values_the_kernel_would_refuse_are_refused_first() {
        let r = rails();
        let g = Guarantee::default();
        let cur = Setting::CpuMax(CpuMax::UNLIMITED);
        let tiny = Setting::CpuMax(CpuMax {
            quota_us: Some(500),
            period_us: 100_000,
        });
        assert!(matches!(
            guard_setting(&cg(), &tiny, &cur, None, &g, &r),
            Err(EnforceError::CpuQuotaTooSmall { quota_us: 500, .. })
        ));
        let long = Setting::CpuMax(CpuMax {
            quota_us: None,
            period_us: 2_000_000,
        });
        assert!(matches!(
            guard_setting(&cg(), &long, &cur, None, &g, &r),
            Err(EnforceError::CpuPeriodOutOfRange { .. })
        ));
        assert!(matches!(
            guard_setting(
                &cg(),
                &Setting::CpuWeight(0),
                &Setting::CpuWeight(100),
                None,
                &g,
                &r
            ),
            Err(EnforceError::CpuWeightOutOfRange { weight: 0, .. })
        ));
        // Memory is page-aligned down.
        let (s, _) = guard_setting(
            &cg(),
            &Setting::MemoryHigh(MemoryLimit::Bytes(100 * MIB + 123)),
            &Setting::MemoryHigh(MemoryLimit::Max),
            None,
            &g,
            &r,
        )
        .unwrap();
        assert_eq!(s, Setting::MemoryHigh(MemoryLimit::Bytes(100 * MIB)));
    }
}
