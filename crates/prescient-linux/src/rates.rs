//! Rates from raw counters: pure functions of (sample, previous, elapsed).
//!
//! A counter that went down (the cgroup or process was recreated, or the
//! counter wrapped) gives no rate rather than a negative or huge one, and
//! so does an elapsed time that is not positive.

use serde::{Deserialize, Serialize};

use crate::cgroup_files::{IoStat, PsiLine};
use crate::collect::CgroupSample;
use crate::procfs::{NetDev, ProcessSample};

/// `(cur - prev)` per second over `elapsed_ms`; `None` when the counter
/// went back or no time passed (prescient-core's, shared with the store's
/// rederivation of rates from stored counters).
pub use prescient_core::counter_rate;

fn opt_rate(cur: Option<u64>, prev: Option<u64>, elapsed_ms: i64) -> Option<f64> {
    counter_rate(cur?, prev?, elapsed_ms)
}

/// The rates of one cgroup between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupRates {
    /// CPU used, in cores.
    pub cpu_cores: Option<f64>,
    /// Share of enforcement periods in which the cgroup was throttled.
    pub cpu_throttled_share: Option<f64>,
    /// Memory in use at the later sample, bytes (a gauge, not a rate).
    pub memory_bytes: Option<f64>,
    /// OOM kills between the samples.
    pub oom_kills: Option<u64>,
    /// Major page faults per second.
    pub major_faults_per_sec: Option<f64>,
    /// Bytes read per second, all devices.
    pub io_read_bytes_per_sec: Option<f64>,
    /// Bytes written per second, all devices.
    pub io_write_bytes_per_sec: Option<f64>,
    /// Read operations per second.
    pub io_read_ops_per_sec: Option<f64>,
    /// Write operations per second.
    pub io_write_ops_per_sec: Option<f64>,
    /// Share of time some task was stalled on CPU (0..=1).
    pub cpu_some_stall: Option<f64>,
    /// Share of time some task was stalled on memory.
    pub memory_some_stall: Option<f64>,
    /// Share of time all tasks were stalled on memory.
    pub memory_full_stall: Option<f64>,
    /// Share of time some task was stalled on I/O.
    pub io_some_stall: Option<f64>,
    /// Share of time all tasks were stalled on I/O.
    pub io_full_stall: Option<f64>,
}

/// Rates of a cgroup between `prev` and `cur`, `elapsed_ms` apart.
pub fn cgroup_rates(cur: &CgroupSample, prev: &CgroupSample, elapsed_ms: i64) -> CgroupRates {
    let cpu = cur.cpu.zip(prev.cpu);
    let usec_share = |c: Option<u64>, p: Option<u64>| opt_rate(c, p, elapsed_ms).map(|r| r / 1e6);
    let stall = |c: Option<PsiLine>, p: Option<PsiLine>| {
        usec_share(c.map(|l| l.total_usec), p.map(|l| l.total_usec))
    };
    let (rb, wb, ro, wo) = match (&cur.io, &prev.io) {
        (Some(c), Some(p)) => io_rates(c, p, elapsed_ms),
        _ => (None, None, None, None),
    };
    CgroupRates {
        cpu_cores: cpu.and_then(|(c, p)| usec_share(c.usage_usec, p.usage_usec)),
        cpu_throttled_share: cpu.and_then(|(c, p)| {
            let periods = c.nr_periods?.checked_sub(p.nr_periods?)?;
            let throttled = c.nr_throttled?.checked_sub(p.nr_throttled?)?;
            (periods > 0).then(|| throttled as f64 / periods as f64)
        }),
        memory_bytes: cur.memory_current.map(|b| b as f64),
        oom_kills: cur
            .memory_events
            .zip(prev.memory_events)
            .and_then(|(c, p)| c.oom_kill?.checked_sub(p.oom_kill?)),
        major_faults_per_sec: cur
            .memory_stat
            .zip(prev.memory_stat)
            .and_then(|(c, p)| opt_rate(c.pgmajfault, p.pgmajfault, elapsed_ms)),
        io_read_bytes_per_sec: rb,
        io_write_bytes_per_sec: wb,
        io_read_ops_per_sec: ro,
        io_write_ops_per_sec: wo,
        cpu_some_stall: stall(
            cur.cpu_pressure.and_then(|p| p.some),
            prev.cpu_pressure.and_then(|p| p.some),
        ),
        memory_some_stall: stall(
            cur.memory_pressure.and_then(|p| p.some),
            prev.memory_pressure.and_then(|p| p.some),
        ),
        memory_full_stall: stall(
            cur.memory_pressure.and_then(|p| p.full),
            prev.memory_pressure.and_then(|p| p.full),
        ),
        io_some_stall: stall(
            cur.io_pressure.and_then(|p| p.some),
            prev.io_pressure.and_then(|p| p.some),
        ),
        io_full_stall: stall(
            cur.io_pressure.and_then(|p| p.full),
            prev.io_pressure.and_then(|p| p.full),
        ),
    }
}

/// Summed I/O rates over the devices present in both samples (a device
/// that appeared has no previous value; one whose counters went back is
/// skipped): (read bytes, write bytes, read ops, write ops) per second.
pub fn io_rates(
    cur: &[IoStat],
    prev: &[IoStat],
    elapsed_ms: i64,
) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    if elapsed_ms <= 0 {
        return (None, None, None, None);
    }
    let mut sums = [0.0f64; 4];
    for c in cur {
        let Some(p) = prev.iter().find(|p| p.device == c.device) else {
            continue;
        };
        let pairs = [
            (c.rbytes, p.rbytes),
            (c.wbytes, p.wbytes),
            (c.rios, p.rios),
            (c.wios, p.wios),
        ];
        if pairs.iter().any(|(c, p)| c < p) {
            continue;
        }
        for (sum, (c, p)) in sums.iter_mut().zip(pairs) {
            *sum += counter_rate(c, p, elapsed_ms).unwrap_or(0.0);
        }
    }
    (Some(sums[0]), Some(sums[1]), Some(sums[2]), Some(sums[3]))
}

/// The rates of one process between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRates {
    /// CPU used, in cores.
    pub cpu_cores: Option<f64>,
    /// Bytes read from storage per second (`read_bytes` of `/proc/<pid>/io`).
    pub read_bytes_per_sec: Option<f64>,
    /// Bytes written to storage per second.
    pub write_bytes_per_sec: Option<f64>,
    /// Major page faults per second.
    pub major_faults_per_sec: Option<f64>,
    /// Resident memory at the later sample, bytes (a gauge).
    pub rss_bytes: Option<f64>,
}

/// Rates of a process between `prev` and `cur`, `elapsed_ms` apart, with
/// CPU time counted in `clock_ticks` per second (USER_HZ, 100 on Linux).
/// Two samples of different processes (a reused pid: another start time)
/// give no rates.
pub fn process_rates(
    cur: &ProcessSample,
    prev: &ProcessSample,
    elapsed_ms: i64,
    clock_ticks: u64,
) -> ProcessRates {
    let same = cur.stat.starttime == prev.stat.starttime && cur.stat.pid == prev.stat.pid;
    if !same || clock_ticks == 0 {
        return ProcessRates {
            rss_bytes: cur
                .status
                .as_ref()
                .and_then(|s| s.vm_rss_kb)
                .map(|kb| kb as f64 * 1024.0),
            ..ProcessRates::default()
        };
    }
    let ticks = |s: &ProcessSample| s.stat.utime.saturating_add(s.stat.stime);
    ProcessRates {
        cpu_cores: counter_rate(ticks(cur), ticks(prev), elapsed_ms)
            .map(|r| r / clock_ticks as f64),
        read_bytes_per_sec: cur
            .io
            .zip(prev.io)
            .and_then(|(c, p)| counter_rate(c.read_bytes, p.read_bytes, elapsed_ms)),
        write_bytes_per_sec: cur
            .io
            .zip(prev.io)
            .and_then(|(c, p)| counter_rate(c.write_bytes, p.write_bytes, elapsed_ms)),
        major_faults_per_sec: counter_rate(cur.stat.majflt, prev.stat.majflt, elapsed_ms),
        rss_bytes: cur
            .status
            .as_ref()
            .and_then(|s| s.vm_rss_kb)
            .map(|kb| kb as f64 * 1024.0),
    }
}

/// Rates of a group of processes observed one by one (a process-match
/// workload read from `/proc`, not through a cgroup), between two passes
/// over its processes: CPU and storage I/O summed over the processes in
/// both `cur` and `prev` (the same pid and start time), resident memory
/// summed over `cur`. A process that started between the passes adds
/// nothing to the rates until the next pass, and one that exited takes
/// its last interval with it: a cgroup's counters do not have these gaps.
/// CPU and I/O are `None` when no process is in both passes (I/O also
/// when no such process's `io` could be read).
pub fn group_rates(
    cur: &[ProcessSample],
    prev: &[ProcessSample],
    elapsed_ms: i64,
    clock_ticks: u64,
) -> ProcessRates {
    let mut out = ProcessRates::default();
    let add = |sum: &mut Option<f64>, v: Option<f64>| {
        if let Some(v) = v {
            *sum = Some(sum.unwrap_or(0.0) + v);
        }
    };
    for c in cur {
        let rss = c
            .status
            .as_ref()
            .and_then(|s| s.vm_rss_kb)
            .map(|kb| kb as f64 * 1024.0);
        add(&mut out.rss_bytes, rss);
        let Some(p) = prev
            .iter()
            .find(|p| p.stat.pid == c.stat.pid && p.stat.starttime == c.stat.starttime)
        else {
            continue;
        };
        let r = process_rates(c, p, elapsed_ms, clock_ticks);
        add(&mut out.cpu_cores, r.cpu_cores);
        add(&mut out.read_bytes_per_sec, r.read_bytes_per_sec);
        add(&mut out.write_bytes_per_sec, r.write_bytes_per_sec);
        add(&mut out.major_faults_per_sec, r.major_faults_per_sec);
    }
    out
}

/// Network rates of one network namespace: bytes per second received and
/// sent, over the interfaces present in both samples, loopback excluded.
pub fn net_rates(cur: &[NetDev], prev: &[NetDev], elapsed_ms: i64) -> (Option<f64>, Option<f64>) {
    if elapsed_ms <= 0 {
        return (None, None);
    }
    let (mut rx, mut tx) = (0.0, 0.0);
    for c in cur.iter().filter(|d| d.interface != "lo") {
        let Some(p) = prev.iter().find(|p| p.interface == c.interface) else {
            continue;
        };
        rx += counter_rate(c.rx_bytes, p.rx_bytes, elapsed_ms).unwrap_or(0.0);
        tx += counter_rate(c.tx_bytes, p.tx_bytes, elapsed_ms).unwrap_or(0.0);
    }
    (Some(rx), Some(tx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup_files::{CpuStat, Device, MemoryEvents, Pressure};
    use crate::path::CgroupPath;

    #[test]
    fn counter_rates() {
        assert_eq!(counter_rate(2000, 1000, 1000), Some(1000.0));
        assert_eq!(counter_rate(1000, 2000, 1000), None, "a reset is no rate");
        assert_eq!(counter_rate(2000, 1000, 0), None);
        assert_eq!(counter_rate(2000, 1000, -5), None);
    }

    fn sample(
        ts: i64,
        usage: u64,
        periods: u64,
        throttled: u64,
        psi: u64,
        oom: u64,
    ) -> CgroupSample {
        let mut s = CgroupSample::empty(CgroupPath::parse("/a").unwrap(), ts);
        s.cpu = Some(CpuStat {
            usage_usec: Some(usage),
            nr_periods: Some(periods),
            nr_throttled: Some(throttled),
            ..CpuStat::default()
        });
        s.memory_current = Some(1 << 20);
        s.memory_events = Some(MemoryEvents {
            oom_kill: Some(oom),
            ..MemoryEvents::default()
        });
        s.io_pressure = Some(Pressure {
            some: Some(PsiLine {
                total_usec: psi,
                ..PsiLine::default()
            }),
            full: None,
        });
        s.io = Some(vec![IoStat {
            device: Some(Device { major: 8, minor: 0 }),
            rbytes: usage,
            wbytes: 0,
            rios: 0,
            wios: 0,
            dbytes: 0,
            dios: 0,
        }]);
        s
    }

    fn dev(name: &str, rx: u64, tx: u64) -> NetDev {
        NetDev {
            interface: name.into(),
            rx_bytes: rx,
            rx_packets: 0,
            rx_errors: 0,
            rx_dropped: 0,
            tx_bytes: tx,
            tx_packets: 0,
            tx_errors: 0,
            tx_dropped: 0,
        }
    }

    #[test]
    fn net_rates_sum_the_interfaces_in_both_samples_without_loopback() {
        let prev = [
            dev("lo", 1_000, 1_000),
            dev("eth0", 10_000, 5_000),
            dev("veth1", 0, 0),
        ];
        let cur = [
            // Loopback never leaves the namespace: not counted.
            dev("lo", 900_000, 900_000),
            dev("eth0", 14_000, 6_000),
            dev("veth1", 2_000, 1_000),
            // Appeared since: no previous value, no rate.
            dev("eth1", 50_000, 50_000),
        ];
        assert_eq!(
            net_rates(&cur, &prev, 2_000),
            (Some(3_000.0), Some(1_000.0))
        );
        // A counter that went back (an interface recreated) adds nothing;
        // the others still count.
        let reset = [dev("eth0", 100, 100), dev("veth1", 4_000, 3_000)];
        assert_eq!(
            net_rates(&reset, &cur, 1_000),
            (Some(2_000.0), Some(2_000.0))
        );
        // Only loopback: a namespace with no link uses none.
        assert_eq!(
            net_rates(&[dev("lo", 9, 9)], &[dev("lo", 1, 1)], 1_000),
            (Some(0.0), Some(0.0))
        );
        assert_eq!(net_rates(&cur, &prev, 0), (None, None));
        assert_eq!(net_rates(&cur, &prev, -1), (None, None));
    }

    fn proc_sample(pid: i32, start: u64, ticks: u64, rss_kb: u64, read: u64) -> ProcessSample {
        use crate::procfs::{ProcIo, ProcStatus, parse_stat};
        let mut stat = parse_stat(
            "1 (w) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0",
        )
        .unwrap();
        stat.pid = pid;
        stat.starttime = start;
        stat.utime = ticks;
        stat.stime = ticks;
        ProcessSample {
            ts: 0,
            stat,
            status: Some(ProcStatus {
                vm_rss_kb: Some(rss_kb),
                ..ProcStatus::default()
            }),
            io: Some(ProcIo {
                read_bytes: read,
                ..ProcIo::default()
            }),
            cmdline: vec!["w".into()],
        }
    }

    #[test]
    fn group_rates_sum_the_processes_in_both_passes() {
        let prev = [
            proc_sample(10, 100, 50, 1_000, 0),
            proc_sample(11, 100, 0, 2_000, 0),
            // Exits before the next pass.
            proc_sample(12, 100, 0, 4_000, 0),
            // Its pid is reused by another process (another start time).
            proc_sample(13, 100, 500, 8_000, 0),
        ];
        let cur = [
            // 100 ticks (utime + stime) more in 1 s at 100 ticks/s: 1 core.
            proc_sample(10, 100, 100, 1_000, 4_096),
            // Half a core.
            proc_sample(11, 100, 25, 2_000, 0),
            proc_sample(13, 200, 1, 16_000, 0),
            // New: its memory counts, its CPU from the next pass.
            proc_sample(14, 300, 900, 32_000, 0),
        ];
        let r = group_rates(&cur, &prev, 1_000, 100);
        assert_eq!(r.cpu_cores, Some(1.5));
        assert_eq!(r.read_bytes_per_sec, Some(4_096.0));
        assert_eq!(
            r.rss_bytes,
            Some((1_000 + 2_000 + 16_000 + 32_000) as f64 * 1024.0)
        );
        // A first pass: memory only.
        let first = group_rates(&cur, &[], 1_000, 100);
        assert_eq!(first.cpu_cores, None);
        assert_eq!(first.read_bytes_per_sec, None);
        assert!(first.rss_bytes.is_some());
        assert_eq!(group_rates(&[], &prev, 1_000, 100), ProcessRates::default());
    }

    #[test]
    fn cgroup_rates_from_two_samples() {
        let a = sample(0, 1_000_000, 10, 0, 0, 1);
        let b = sample(2000, 2_000_000, 30, 5, 500_000, 3);
        let r = cgroup_rates(&b, &a, 2000);
        assert_eq!(r.cpu_cores, Some(0.5));
        assert_eq!(r.cpu_throttled_share, Some(0.25));
        assert_eq!(r.memory_bytes, Some(1048576.0));
        assert_eq!(r.oom_kills, Some(2));
        assert_eq!(r.io_some_stall, Some(0.25));
        assert_eq!(r.io_full_stall, None);
        assert_eq!(r.io_read_bytes_per_sec, Some(500_000.0));
        // Swapped: every counter went back.
        let back = cgroup_rates(&a, &b, 2000);
        assert_eq!(back.cpu_cores, None);
        assert_eq!(back.oom_kills, None);
        assert_eq!(back.io_read_bytes_per_sec, Some(0.0));
    }
}
