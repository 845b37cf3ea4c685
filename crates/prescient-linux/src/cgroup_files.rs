//! Parsers for the cgroup files the collector reads, v2 and v1, as pure
//! functions of the file's text. Counters stay raw (cumulative, in the
//! kernel's unit); rates come from [`crate::rates`].

use serde::{Deserialize, Serialize};

use crate::parse::{ParseError, for_each_flat, for_each_nested, u64_at};

// ---------------------------------------------------------------- cgroup v2

/// `cpu.stat` (v2). The first three keys are always there; the throttling
/// ones only where the cpu controller is enabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuStat {
    /// Total CPU time, µs.
    pub usage_usec: Option<u64>,
    /// User CPU time, µs.
    pub user_usec: Option<u64>,
    /// System CPU time, µs.
    pub system_usec: Option<u64>,
    /// Enforcement periods that elapsed.
    pub nr_periods: Option<u64>,
    /// Periods in which the cgroup was throttled.
    pub nr_throttled: Option<u64>,
    /// Time throttled, µs.
    pub throttled_usec: Option<u64>,
    /// Periods in which a burst was used.
    pub nr_bursts: Option<u64>,
    /// Burst time used, µs.
    pub burst_usec: Option<u64>,
}

/// Parses v2 `cpu.stat`.
pub fn parse_cpu_stat(text: &str) -> Result<CpuStat, ParseError> {
    let mut s = CpuStat::default();
    for_each_flat(text, |line, k, v| {
        let slot = match k {
            "usage_usec" => &mut s.usage_usec,
            "user_usec" => &mut s.user_usec,
            "system_usec" => &mut s.system_usec,
            "nr_periods" => &mut s.nr_periods,
            "nr_throttled" => &mut s.nr_throttled,
            "throttled_usec" => &mut s.throttled_usec,
            "nr_bursts" => &mut s.nr_bursts,
            "burst_usec" => &mut s.burst_usec,
            _ => return Ok(()),
        };
        *slot = Some(u64_at(line, k, v)?);
        Ok(())
    })?;
    Ok(s)
}

/// The parts of `memory.stat` the agent uses (v2 names; v1's `rss` and
/// `cache` map to `anon` and `file`). Bytes unless named a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStat {
    /// Anonymous memory.
    pub anon: Option<u64>,
    /// Page cache, including tmpfs and shared memory.
    pub file: Option<u64>,
    /// Kernel memory (v2 only).
    pub kernel: Option<u64>,
    /// Swap-backed page cache (tmpfs, shm).
    pub shmem: Option<u64>,
    /// Socket buffers (v2 only).
    pub sock: Option<u64>,
    /// Page cache mapped with mmap.
    pub file_mapped: Option<u64>,
    /// Dirty page cache.
    pub file_dirty: Option<u64>,
    /// Page cache under writeback.
    pub file_writeback: Option<u64>,
    /// Inactive anonymous memory.
    pub inactive_anon: Option<u64>,
    /// Active anonymous memory.
    pub active_anon: Option<u64>,
    /// Inactive page cache: the easiest to reclaim.
    pub inactive_file: Option<u64>,
    /// Active page cache.
    pub active_file: Option<u64>,
    /// Unevictable memory.
    pub unevictable: Option<u64>,
    /// Slab memory (v2 only).
    pub slab: Option<u64>,
    /// Page faults (count).
    pub pgfault: Option<u64>,
    /// Major page faults (count).
    pub pgmajfault: Option<u64>,
    /// Refaults of evicted anonymous pages (count): thrashing.
    pub workingset_refault_anon: Option<u64>,
    /// Refaults of evicted file pages (count): thrashing.
    pub workingset_refault_file: Option<u64>,
}

/// Parses `memory.stat`, v2 or v1 (v1's `rss`/`cache`/`mapped_file`/`dirty`/
/// `writeback` are read as `anon`/`file`/`file_mapped`/`file_dirty`/
/// `file_writeback`; v1's hierarchical `total_*` keys are ignored).
pub fn parse_memory_stat(text: &str) -> Result<MemoryStat, ParseError> {
    let mut s = MemoryStat::default();
    for_each_flat(text, |line, k, v| {
        let slot = match k {
            "anon" | "rss" => &mut s.anon,
            "file" | "cache" => &mut s.file,
            "kernel" => &mut s.kernel,
            "shmem" => &mut s.shmem,
            "sock" => &mut s.sock,
            "file_mapped" | "mapped_file" => &mut s.file_mapped,
            "file_dirty" | "dirty" => &mut s.file_dirty,
            "file_writeback" | "writeback" => &mut s.file_writeback,
            "inactive_anon" => &mut s.inactive_anon,
            "active_anon" => &mut s.active_anon,
            "inactive_file" => &mut s.inactive_file,
            "active_file" => &mut s.active_file,
            "unevictable" => &mut s.unevictable,
            "slab" => &mut s.slab,
            "pgfault" => &mut s.pgfault,
            "pgmajfault" => &mut s.pgmajfault,
            "workingset_refault_anon" => &mut s.workingset_refault_anon,
            "workingset_refault_file" => &mut s.workingset_refault_file,
            _ => return Ok(()),
        };
        *slot = Some(u64_at(line, k, v)?);
        Ok(())
    })?;
    Ok(s)
}

/// `memory.events` (v2), or the OOM kills of v1's `memory.oom_control`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEvents {
    /// Reclaims under the low boundary.
    pub low: Option<u64>,
    /// Times throttled over memory.high.
    pub high: Option<u64>,
    /// Times about to go over memory.max.
    pub max: Option<u64>,
    /// Times the limit was hit and an allocation about to fail.
    pub oom: Option<u64>,
    /// Processes killed by the OOM killer.
    pub oom_kill: Option<u64>,
    /// Group OOM kills.
    pub oom_group_kill: Option<u64>,
}

/// Parses v2 `memory.events` (or `memory.events.local`).
pub fn parse_memory_events(text: &str) -> Result<MemoryEvents, ParseError> {
    let mut s = MemoryEvents::default();
    for_each_flat(text, |line, k, v| {
        let slot = match k {
            "low" => &mut s.low,
            "high" => &mut s.high,
            "max" => &mut s.max,
            "oom" => &mut s.oom,
            "oom_kill" => &mut s.oom_kill,
            "oom_group_kill" => &mut s.oom_group_kill,
            _ => return Ok(()),
        };
        *slot = Some(u64_at(line, k, v)?);
        Ok(())
    })?;
    Ok(s)
}

/// A block device, `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Device {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl Device {
    /// Parses `8:16`.
    pub fn parse(line: usize, s: &str) -> Result<Device, ParseError> {
        let bad = || ParseError::new(line, "expected a device as MAJOR:MINOR", s);
        let (a, b) = s.split_once(':').ok_or_else(bad)?;
        Ok(Device {
            major: a.parse().map_err(|_| bad())?,
            minor: b.parse().map_err(|_| bad())?,
        })
    }
}

/// What the kernel's block-device directory (`/sys/dev/block`) says of a
/// [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockDevice {
    /// Not a block device there.
    Missing,
    /// A whole disk: what the kernel caps I/O on.
    Disk,
    /// A partition, and its disk where that can be read.
    Partition(Option<Device>),
}

impl Device {
    /// What `sys_dev_block` (the kernel's `/sys/dev/block`, or a fixture)
    /// says this device is.
    pub fn block_device_in(self, sys_dev_block: &std::path::Path) -> BlockDevice {
        let dir = sys_dev_block.join(self.to_string());
        if !dir.exists() {
            BlockDevice::Missing
        } else if dir.join("partition").exists() {
            BlockDevice::Partition(
                std::fs::read_to_string(dir.join("../dev"))
                    .ok()
                    .and_then(|t| Device::parse(0, t.trim()).ok()),
            )
        } else {
            BlockDevice::Disk
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// One device's line of `io.stat` (v2) or its v1 blkio equivalent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoStat {
    /// The device.
    pub device: Option<Device>,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Read operations.
    pub rios: u64,
    /// Write operations.
    pub wios: u64,
    /// Bytes discarded.
    pub dbytes: u64,
    /// Discard operations.
    pub dios: u64,
}

/// Parses v2 `io.stat`: `8:16 rbytes=1459200 wbytes=314773504 rios=192 ...`.
/// Keys other than the six counters (`cost.*`, `depth`, latency debug
/// stats, some with decimals) are skipped.
pub fn parse_io_stat(text: &str) -> Result<Vec<IoStat>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (dev, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let mut s = IoStat {
            device: Some(Device::parse(line_no, dev)?),
            ..IoStat::default()
        };
        for_each_nested(line_no, rest, |k, v| {
            let slot = match k {
                "rbytes" => &mut s.rbytes,
                "wbytes" => &mut s.wbytes,
                "rios" => &mut s.rios,
                "wios" => &mut s.wios,
                "dbytes" => &mut s.dbytes,
                "dios" => &mut s.dios,
                _ => return Ok(()),
            };
            *slot = u64_at(line_no, k, v)?;
            Ok(())
        })?;
        out.push(s);
    }
    Ok(out)
}

/// One line of a PSI file: the share of wall time some (or all) tasks were
/// stalled, as running averages in percent and a cumulative total in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PsiLine {
    /// Average over 10 s, percent.
    pub avg10: f64,
    /// Average over 60 s, percent.
    pub avg60: f64,
    /// Average over 300 s, percent.
    pub avg300: f64,
    /// Total stall time, µs (a counter).
    pub total_usec: u64,
}

/// A PSI file (`cpu.pressure`, `memory.pressure`, `io.pressure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// Some tasks stalled.
    pub some: Option<PsiLine>,
    /// All non-idle tasks stalled at once (absent from older kernels'
    /// `cpu.pressure`).
    pub full: Option<PsiLine>,
}

/// Parses a PSI file:
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0`.
pub fn parse_pressure(text: &str) -> Result<Pressure, ParseError> {
    let mut p = Pressure::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (kind, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let mut l = PsiLine::default();
        let mut total = None;
        for_each_nested(line_no, rest, |k, v| {
            let f = |v: &str| {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| ParseError::new(line_no, format!("{k}: expected a number"), v))
            };
            match k {
                "avg10" => l.avg10 = f(v)?,
                "avg60" => l.avg60 = f(v)?,
                "avg300" => l.avg300 = f(v)?,
                "total" => total = Some(u64_at(line_no, k, v)?),
                _ => {}
            }
            Ok(())
        })?;
        l.total_usec =
            total.ok_or_else(|| ParseError::new(line_no, "PSI line without total=", line))?;
        match kind {
            "some" => p.some = Some(l),
            "full" => p.full = Some(l),
            _ => {
                return Err(ParseError::new(
                    line_no,
                    "expected a 'some' or 'full' line",
                    line,
                ));
            }
        }
    }
    Ok(p)
}

// ---------------------------------------------------------------- cgroup v1

/// v1 `cpu.stat` of the cpu controller (throttling only; usage is in
/// cpuacct). Its times are in nanoseconds; this converts to µs so the
/// fields line up with v2's [`CpuStat`].
pub fn parse_v1_cpu_stat(text: &str) -> Result<CpuStat, ParseError> {
    let mut s = CpuStat::default();
    for_each_flat(text, |line, k, v| {
        match k {
            "nr_periods" => s.nr_periods = Some(u64_at(line, k, v)?),
            "nr_throttled" => s.nr_throttled = Some(u64_at(line, k, v)?),
            "throttled_time" => s.throttled_usec = Some(u64_at(line, k, v)? / 1000),
            "nr_bursts" => s.nr_bursts = Some(u64_at(line, k, v)?),
            "burst_time" => s.burst_usec = Some(u64_at(line, k, v)? / 1000),
            _ => {}
        }
        Ok(())
    })?;
    Ok(s)
}

/// v1 `cpuacct.stat`: user and system time in USER_HZ ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuacctStat {
    /// User time, ticks.
    pub user_ticks: Option<u64>,
    /// System time, ticks.
    pub system_ticks: Option<u64>,
}

/// Parses v1 `cpuacct.stat`.
pub fn parse_cpuacct_stat(text: &str) -> Result<CpuacctStat, ParseError> {
    let mut s = CpuacctStat::default();
    for_each_flat(text, |line, k, v| {
        match k {
            "user" => s.user_ticks = Some(u64_at(line, k, v)?),
            "system" => s.system_ticks = Some(u64_at(line, k, v)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(s)
}

/// v1 `cpuacct.usage_percpu`: nanoseconds per CPU, space separated.
pub fn parse_cpuacct_percpu(text: &str) -> Result<Vec<u64>, ParseError> {
    text.split_ascii_whitespace()
        .map(|v| u64_at(1, "per-cpu usage", v))
        .collect()
}

/// v1 `memory.oom_control`: `oom_kill_disable`, `under_oom`, `oom_kill`.
/// Returns the OOM kill count (absent before Linux 4.13).
pub fn parse_v1_oom_control(text: &str) -> Result<MemoryEvents, ParseError> {
    let mut e = MemoryEvents::default();
    for_each_flat(text, |line, k, v| {
        if k == "oom_kill" {
            e.oom_kill = Some(u64_at(line, k, v)?);
        }
        Ok(())
    })?;
    Ok(e)
}

/// v1 `blkio.throttle.io_service_bytes` (or `io_serviced`): lines of
/// `MAJ:MIN Op value` with Op in Read, Write, Sync, Async, Discard, Total,
/// and a final `Total value`. Returns per device (read, write, discard).
pub fn parse_blkio_rwstat(text: &str) -> Result<Vec<(Device, u64, u64, u64)>, ParseError> {
    let mut out: Vec<(Device, u64, u64, u64)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let mut it = line.split_ascii_whitespace();
        let Some(first) = it.next() else { continue };
        if first == "Total" {
            continue;
        }
        let dev = Device::parse(line_no, first)?;
        let (Some(op), Some(value), None) = (it.next(), it.next(), it.next()) else {
            return Err(ParseError::new(
                line_no,
                "expected 'MAJ:MIN Op value'",
                line,
            ));
        };
        let value = u64_at(line_no, op, value)?;
        let idx = match out.iter().position(|e| e.0 == dev) {
            Some(i) => i,
            None => {
                out.push((dev, 0, 0, 0));
                out.len() - 1
            }
        };
        match op {
            "Read" => out[idx].1 = value,
            "Write" => out[idx].2 = value,
            "Discard" => out[idx].3 = value,
            _ => {}
        }
    }
    Ok(out)
}

/// Combines v1 `blkio.throttle.io_service_bytes` and `io_serviced` into
/// v2-shaped [`IoStat`] lines.
pub fn v1_io_stats(
    bytes: &[(Device, u64, u64, u64)],
    ios: &[(Device, u64, u64, u64)],
) -> Vec<IoStat> {
    let mut out: Vec<IoStat> = bytes
        .iter()
        .map(|&(d, r, w, disc)| IoStat {
            device: Some(d),
            rbytes: r,
            wbytes: w,
            dbytes: disc,
            ..IoStat::default()
        })
        .collect();
    for &(d, r, w, disc) in ios {
        match out.iter_mut().find(|s| s.device == Some(d)) {
            Some(s) => {
                s.rios = r;
                s.wios = w;
                s.dios = disc;
            }
            None => out.push(IoStat {
                device: Some(d),
                rios: r,
                wios: w,
                dios: disc,
                ..IoStat::default()
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

    fn fixture(rel: &str) -> String {
        std::fs::read_to_string(format!("{FIX}/{rel}")).unwrap()
    }

    #[test]
    fn v2_cpu_stat_on_this_machine_has_usage_only() {
        // Captured from the unified hierarchy of a hybrid host, where the
        // cpu controller is not enabled in v2.
        let s = parse_cpu_stat(&fixture("hybrid/sys/fs/cgroup/unified/cpu.stat")).unwrap();
        assert_eq!(s.usage_usec, Some(7016524358));
        assert_eq!(s.user_usec.unwrap() + s.system_usec.unwrap(), 7016524358);
        assert_eq!(s.nr_periods, None);
    }

    #[test]
    fn v2_cpu_stat_with_controller() {
        let s = parse_cpu_stat(&fixture(
            "v2/sys/fs/cgroup/system.slice/nginx.service/cpu.stat",
        ))
        .unwrap();
        assert_eq!(s.usage_usec, Some(183_417_245));
        assert_eq!(s.nr_throttled, Some(212));
        assert_eq!(s.throttled_usec, Some(4_203_117));
    }

    #[test]
    fn psi_of_this_machine() {
        let p = parse_pressure(&fixture("hybrid/sys/fs/cgroup/unified/cpu.pressure")).unwrap();
        let some = p.some.unwrap();
        assert_eq!(some.avg10, 58.89);
        assert_eq!(some.total_usec, 913173806);
        assert_eq!(p.full.unwrap().total_usec, 0);
        let io = parse_pressure(&fixture("hybrid/sys/fs/cgroup/unified/io.pressure")).unwrap();
        assert_eq!(io.full.unwrap().total_usec, 140619872);
        assert!(parse_pressure("some avg10=x avg60=0 avg300=0 total=0").is_err());
        assert!(parse_pressure("some avg10=0.00").is_err());
        assert!(parse_pressure("half avg10=0.00 total=1").is_err());
    }

    #[test]
    fn memory_stat_v1_of_this_machine_maps_to_v2_names() {
        let text = fixture(
            "hybrid/sys/fs/cgroup/memory/process_api/a1eaec25681f9e416ac77a6942c369a3/memory.stat",
        );
        let s = parse_memory_stat(&text).unwrap();
        assert_eq!(s.anon, Some(2686976)); // rss
        assert_eq!(s.file, Some(3239936)); // cache
        assert_eq!(s.file_dirty, Some(331776));
        assert_eq!(s.pgmajfault, Some(46));
        assert_eq!(s.kernel, None);
    }

    #[test]
    fn memory_stat_and_events_v2() {
        let dir = "v2/sys/fs/cgroup/system.slice/nginx.service";
        let s = parse_memory_stat(&fixture(&format!("{dir}/memory.stat"))).unwrap();
        assert_eq!(s.anon, Some(46_301_184));
        assert_eq!(s.kernel, Some(3_526_656));
        assert_eq!(s.workingset_refault_file, Some(118));
        let e = parse_memory_events(&fixture(&format!("{dir}/memory.events"))).unwrap();
        assert_eq!(e.oom_kill, Some(2));
        assert_eq!(e.high, Some(41));
        let v1 = parse_v1_oom_control(&fixture(
            "hybrid/sys/fs/cgroup/memory/process_api/a1eaec25681f9e416ac77a6942c369a3/memory.oom_control",
        ))
        .unwrap();
        assert_eq!(v1.oom_kill, Some(0));
    }

    #[test]
    fn io_stat_v2_with_extra_keys() {
        let lines = parse_io_stat(
            "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
             8:0 rbytes=90430464 wbytes=299008000 rios=8950 wios=1252 dbytes=50331648 dios=3021 cost.vrate=100.00 cost.usage=0\n",
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].device, Some(Device { major: 8, minor: 0 }));
        assert_eq!(lines[1].dbytes, 50331648);
        assert!(parse_io_stat("8:16 rbytes=x").is_err());
        assert!(parse_io_stat("sda rbytes=1").is_err());
        assert!(parse_io_stat("").unwrap().is_empty());
    }

    #[test]
    fn v1_cpu_files_of_this_machine() {
        let s = parse_v1_cpu_stat(&fixture("hybrid/sys/fs/cgroup/cpu/cpu.stat")).unwrap();
        assert_eq!(s.nr_periods, Some(0));
        assert_eq!(s.throttled_usec, Some(0));
        let a = parse_cpuacct_stat(&fixture("hybrid/sys/fs/cgroup/cpuacct/cpuacct.stat")).unwrap();
        assert_eq!(a.user_ticks, Some(638135));
        let per = parse_cpuacct_percpu(&fixture(
            "hybrid/sys/fs/cgroup/cpuacct/cpuacct.usage_percpu",
        ))
        .unwrap();
        assert_eq!(per, vec![3154053246408, 3883682526428]);
    }

    #[test]
    fn v1_blkio_of_this_machine() {
        let dir = "hybrid/sys/fs/cgroup/blkio/prescient-capture";
        let bytes = parse_blkio_rwstat(&fixture(&format!("{dir}/blkio.throttle.io_service_bytes")))
            .unwrap();
        let ios =
            parse_blkio_rwstat(&fixture(&format!("{dir}/blkio.throttle.io_serviced"))).unwrap();
        let s = v1_io_stats(&bytes, &ios);
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0].device,
            Some(Device {
                major: 254,
                minor: 0
            })
        );
        assert_eq!((s[0].rbytes, s[0].wbytes), (8388608, 8388608));
        assert_eq!((s[0].rios, s[0].wios), (16, 8));
        // A cgroup with no I/O has only the Total line.
        assert!(parse_blkio_rwstat("Total 0\n").unwrap().is_empty());
        assert!(parse_blkio_rwstat("254:0 Read\n").is_err());
    }
}
