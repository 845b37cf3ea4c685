//! The cgroup v1 backend: `cpu.cfs_quota_us` / `cpu.cfs_period_us`,
//! `cpu.shares`, `memory.soft_limit_in_bytes`, `memory.limit_in_bytes`,
//! `blkio.throttle.{read,write}_{bps,iops}_device`, each in its
//! controller's hierarchy, confined to that hierarchy's base.

use std::collections::BTreeMap;

use super::v2::Subtree;
use super::{
    CpuMax, EnforceError, Enforcer, IoLimit, Knob, MemoryLimit, Observed, Setting, page_align,
    shares_to_weight, weight_to_shares,
};
use crate::cgroup_files::Device;
use crate::layout::CgroupFs;
use crate::parse::{ParseError, i64_at, parse_single_u64, u64_at};
use crate::path::CgroupPath;

/// v1 reads "no limit" as LONG_MAX rounded down to a page
/// (9223372036854771712 with 4 KiB pages); anything this large is "max".
const V1_UNLIMITED_FROM: u64 = 1 << 62;

/// The four blkio throttle files, in `IoLimit` field order.
const BLKIO_FILES: [&str; 4] = [
    "blkio.throttle.read_bps_device",
    "blkio.throttle.write_bps_device",
    "blkio.throttle.read_iops_device",
    "blkio.throttle.write_iops_device",
];

/// Writes v1 limit files under each controller hierarchy's base.
#[derive(Debug, Clone)]
pub struct V1Enforcer {
    cpu: Option<Subtree>,
    memory: Option<Subtree>,
    blkio: Option<Subtree>,
}

impl V1Enforcer {
    /// An enforcer for the v1 cpu, memory and blkio hierarchies of `fs`
    /// (those mounted), each confined to its base.
    pub fn new(fs: &CgroupFs) -> Result<V1Enforcer, EnforceError> {
        let sub = |c: &str| -> Result<Option<Subtree>, EnforceError> {
            fs.v1()
                .iter()
                .find(|h| h.has(c))
                .map(Subtree::new)
                .transpose()
        };
        Ok(V1Enforcer {
            cpu: sub("cpu")?,
            memory: sub("memory")?,
            blkio: sub("blkio")?,
        })
    }

    fn unavailable(cgroup: &CgroupPath, knob: Knob, what: &str) -> EnforceError {
        EnforceError::ControllerUnavailable {
            cgroup: cgroup.clone(),
            knob,
            file: format!("(no v1 {what} hierarchy)").into(),
        }
    }
}

/// Parses `cpu.cfs_quota_us` (`-1` for no limit).
pub fn parse_cfs_quota(text: &str) -> Result<Option<u64>, ParseError> {
    let q = i64_at(1, "cfs quota", text.trim())?;
    Ok(u64::try_from(q).ok())
}

/// Parses a v1 memory limit (`memory.limit_in_bytes`,
/// `memory.soft_limit_in_bytes`).
pub fn parse_v1_memory_limit(text: &str) -> Result<MemoryLimit, ParseError> {
    let b = u64_at(1, "memory limit", text.trim())?;
    Ok(if b >= V1_UNLIMITED_FROM {
        MemoryLimit::Max
    } else {
        MemoryLimit::Bytes(b)
    })
}

/// Parses a `blkio.throttle.*_device` file: `MAJ:MIN value` lines.
pub fn parse_blkio_throttle(text: &str) -> Result<BTreeMap<Device, u64>, ParseError> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let mut it = line.split_ascii_whitespace();
        let Some(dev) = it.next() else { continue };
        let (Some(v), None) = (it.next(), it.next()) else {
            return Err(ParseError::new(n, "expected 'MAJ:MIN value'", line));
        };
        out.insert(Device::parse(n, dev)?, u64_at(n, "limit", v)?);
    }
    Ok(out)
}

fn v1_memory_text(m: MemoryLimit) -> String {
    match m {
        MemoryLimit::Max => "-1".into(),
        MemoryLimit::Bytes(b) => page_align(b).to_string(),
    }
}

impl Enforcer for V1Enforcer {
    fn name(&self) -> &'static str {
        "v1"
    }

    fn read(&self, cgroup: &CgroupPath) -> Result<Observed, EnforceError> {
        let all = [
            Knob::CpuMax,
            Knob::CpuWeight,
            Knob::MemoryMax,
            Knob::IoMax(Device { major: 0, minor: 0 }),
        ];
        self.read_knobs(cgroup, &all)
    }

    fn read_knobs(&self, cgroup: &CgroupPath, knobs: &[Knob]) -> Result<Observed, EnforceError> {
        let (want_cpu_max, want_weight, want_memory, want_io) = super::needs(knobs);
        let mut o = Observed::default();
        if let Some(s) = &self.cpu
            && (want_cpu_max || want_weight)
        {
            let dir = s.dir(cgroup)?;
            if want_cpu_max {
                let quota = s.read(&dir, "cpu.cfs_quota_us", parse_cfs_quota)?;
                let period = s.read(&dir, "cpu.cfs_period_us", parse_single_u64)?;
                if let (Some(quota_us), Some(period_us)) = (quota, period) {
                    o.cpu_max = Some(CpuMax {
                        quota_us,
                        period_us,
                    });
                }
            }
            if want_weight {
                o.cpu_weight = s
                    .read(&dir, "cpu.shares", parse_single_u64)?
                    .map(shares_to_weight);
            }
        }
        if let Some(s) = &self.memory
            && want_memory
        {
            let dir = s.dir(cgroup)?;
            o.memory_high = s.read(&dir, "memory.soft_limit_in_bytes", parse_v1_memory_limit)?;
            o.memory_max = s.read(&dir, "memory.limit_in_bytes", parse_v1_memory_limit)?;
            o.memory_usage = s.read(&dir, "memory.usage_in_bytes", parse_single_u64)?;
        }
        if let Some(s) = &self.blkio
            && want_io
        {
            let dir = s.dir(cgroup)?;
            let mut files = Vec::new();
            for f in BLKIO_FILES {
                files.push(s.read(&dir, f, parse_blkio_throttle)?);
            }
            if files.iter().all(Option::is_some) {
                let mut m: BTreeMap<Device, IoLimit> = BTreeMap::new();
                for (i, f) in files.into_iter().enumerate() {
                    for (dev, v) in f.unwrap_or_default() {
                        let l = m.entry(dev).or_default();
                        let slot = match i {
                            0 => &mut l.rbps,
                            1 => &mut l.wbps,
                            2 => &mut l.riops,
                            _ => &mut l.wiops,
                        };
                        *slot = (v > 0).then_some(v);
                    }
                }
                m.retain(|_, l| !l.is_unlimited());
                o.io_max = Some(m);
            }
        }
        Ok(o)
    }

    fn write(&mut self, cgroup: &CgroupPath, setting: &Setting) -> Result<(), EnforceError> {
        let knob = setting.knob();
        match setting {
            Setting::CpuMax(c) => {
                let s = self
                    .cpu
                    .as_ref()
                    .ok_or_else(|| Self::unavailable(cgroup, knob, "cpu"))?;
                let dir = s.dir(cgroup)?;
                let period = s.read(&dir, "cpu.cfs_period_us", parse_single_u64)?;
                // Two files, not one atomic write: set the period first
                // (when it changes), then the quota against it.
                if period != Some(c.period_us) {
                    s.write(cgroup, knob, "cpu.cfs_period_us", &c.period_us.to_string())?;
                }
                let quota = c
                    .quota_us
                    .map_or_else(|| "-1".to_string(), |q| q.to_string());
                s.write(cgroup, knob, "cpu.cfs_quota_us", &quota)
            }
            Setting::CpuWeight(w) => {
                let s = self
                    .cpu
                    .as_ref()
                    .ok_or_else(|| Self::unavailable(cgroup, knob, "cpu"))?;
                s.write(
                    cgroup,
                    knob,
                    "cpu.shares",
                    &weight_to_shares(*w).to_string(),
                )
            }
            Setting::MemoryHigh(m) => {
                let s = self
                    .memory
                    .as_ref()
                    .ok_or_else(|| Self::unavailable(cgroup, knob, "memory"))?;
                s.write(
                    cgroup,
                    knob,
                    "memory.soft_limit_in_bytes",
                    &v1_memory_text(*m),
                )
            }
            Setting::MemoryMax(m) => {
                let s = self
                    .memory
                    .as_ref()
                    .ok_or_else(|| Self::unavailable(cgroup, knob, "memory"))?;
                s.write(cgroup, knob, "memory.limit_in_bytes", &v1_memory_text(*m))
            }
            Setting::IoMax(dev, l) => {
                let s = self
                    .blkio
                    .as_ref()
                    .ok_or_else(|| Self::unavailable(cgroup, knob, "blkio"))?;
                // 0 removes a device's rule in v1.
                for (file, v) in BLKIO_FILES.iter().zip([l.rbps, l.wbps, l.riops, l.wiops]) {
                    s.write(cgroup, knob, file, &format!("{dev} {}", v.unwrap_or(0)))?;
                }
                Ok(())
            }
        }
    }

    fn target(&self, cgroup: &CgroupPath, knob: Knob) -> String {
        let (s, files): (&Option<Subtree>, &[&str]) = match knob {
            Knob::CpuMax => (&self.cpu, &["cpu.cfs_quota_us", "cpu.cfs_period_us"]),
            Knob::CpuWeight => (&self.cpu, &["cpu.shares"]),
            Knob::MemoryHigh => (&self.memory, &["memory.soft_limit_in_bytes"]),
            Knob::MemoryMax => (&self.memory, &["memory.limit_in_bytes"]),
            Knob::IoMax(_) => (&self.blkio, &BLKIO_FILES),
        };
        match s {
            Some(s) => {
                let first = s.target(cgroup, files[0]).display().to_string();
                if files.len() == 1 {
                    first
                } else {
                    format!("{first} (+{})", files[1..].join(", "))
                }
            }
            None => format!("{cgroup}: {}", files.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEM: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hybrid/sys/fs/cgroup/memory/process_api/a1eaec25681f9e416ac77a6942c369a3"
    );

    #[test]
    fn v1_files_of_this_machine() {
        let limit = std::fs::read_to_string(format!("{MEM}/memory.limit_in_bytes")).unwrap();
        assert_eq!(limit.trim(), "9223372036854771712");
        assert_eq!(parse_v1_memory_limit(&limit).unwrap(), MemoryLimit::Max);
        assert_eq!(
            parse_v1_memory_limit("536870912\n").unwrap(),
            MemoryLimit::Bytes(536870912)
        );
        assert_eq!(parse_cfs_quota("-1\n").unwrap(), None);
        assert_eq!(parse_cfs_quota("20000\n").unwrap(), Some(20000));
        let throttle = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hybrid/sys/fs/cgroup/blkio/prescient-capture/blkio.throttle.read_bps_device"
        ))
        .unwrap();
        let t = parse_blkio_throttle(&throttle).unwrap();
        assert_eq!(
            t[&Device {
                major: 254,
                minor: 0
            }],
            104857600
        );
        assert!(parse_blkio_throttle("").unwrap().is_empty());
        assert!(parse_blkio_throttle("254:0\n").is_err());
    }
}
