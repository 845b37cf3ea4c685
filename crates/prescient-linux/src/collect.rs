//! The collector: one [`CgroupSample`] of raw counters per cgroup, read
//! from wherever each controller lives (v2, or the v1 hierarchy that holds
//! it on hybrid and v1 hosts).
//!
//! A file that is missing (the controller is not there, or the cgroup
//! went away mid-pass) leaves its field `None`; only unreadable or
//! malformed files are errors, and they are collected, not fatal.
//!
//! Files stay open from one pass to the next and are read again from
//! offset 0 (one `pread` instead of open, read, close): see [`Collector`]
//! for the open-file budget, and [`Collector::with_threads`] to split a
//! pass over threads.

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use crate::cgroup_files::{
    CpuStat, IoStat, MemoryEvents, MemoryStat, Pressure, parse_blkio_rwstat, parse_cpu_stat,
    parse_cpuacct_stat, parse_io_stat, parse_memory_events, parse_memory_stat, parse_pressure,
    parse_v1_cpu_stat, parse_v1_oom_control, v1_io_stats,
};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::io::{ReadError, is_vanished};
use crate::layout::{CgroupFs, Hierarchy, Version};
use crate::parse::{ParseError, parse_single_u64};
use crate::path::CgroupPath;

/// One cgroup's raw counters at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CgroupSample {
    /// The cgroup (relative to the hierarchies' bases).
    pub cgroup: CgroupPath,
    /// When it was read.
    pub ts: TimestampMs,
    /// CPU time and throttling (µs).
    pub cpu: Option<CpuStat>,
    /// Memory in use now, bytes (`memory.current`, v1 `memory.usage_in_bytes`).
    pub memory_current: Option<u64>,
    /// The memory breakdown.
    pub memory_stat: Option<MemoryStat>,
    /// Memory events: OOM kills and limit hits (v1: OOM kills only).
    pub memory_events: Option<MemoryEvents>,
    /// Block I/O per device.
    pub io: Option<Vec<IoStat>>,
    /// CPU pressure (v2 only).
    pub cpu_pressure: Option<Pressure>,
    /// Memory pressure (v2 only).
    pub memory_pressure: Option<Pressure>,
    /// I/O pressure (v2 only).
    pub io_pressure: Option<Pressure>,
}

impl CgroupSample {
    /// A sample with nothing read yet.
    pub fn empty(cgroup: CgroupPath, ts: TimestampMs) -> Self {
        CgroupSample {
            cgroup,
            ts,
            cpu: None,
            memory_current: None,
            memory_stat: None,
            memory_events: None,
            io: None,
            cpu_pressure: None,
            memory_pressure: None,
            io_pressure: None,
        }
    }

    /// Whether nothing at all could be read (the cgroup is gone).
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none()
            && self.memory_current.is_none()
            && self.memory_stat.is_none()
            && self.memory_events.is_none()
            && self.io.is_none()
            && self.cpu_pressure.is_none()
            && self.memory_pressure.is_none()
            && self.io_pressure.is_none()
    }
}

/// What one collection pass produced.
#[derive(Debug, Default)]
pub struct Pass {
    /// One sample per cgroup that still exists.
    pub samples: Vec<CgroupSample>,
    /// Files that could not be read or parsed; their fields are `None`.
    pub errors: Vec<ReadError>,
}

/// Which of the counters beyond the basic usage a pass reads. The basic
/// usage (CPU time and throttling, memory in use, block I/O) is always
/// read; each of these costs files per cgroup per pass, and a reader that
/// has no use for them (the agent's loop, which keeps usage only) saves
/// those system calls and the kernel's formatting of the files (v1
/// `memory.stat` above all) by leaving them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// CPU time split into user and system (v1: `cpuacct.usage_user`,
    /// `cpuacct.usage_sys`, or `cpuacct.stat`; v2 has it in `cpu.stat`
    /// anyway).
    pub cpu_split: bool,
    /// `memory.stat`.
    pub memory_stat: bool,
    /// `memory.events` (v1 `memory.oom_control`).
    pub memory_events: bool,
    /// `cpu.pressure`, `memory.pressure`, `io.pressure`.
    pub pressure: bool,
}

impl Reads {
    /// Every counter (the default).
    pub const ALL: Reads = Reads {
        cpu_split: true,
        memory_stat: true,
        memory_events: true,
        pressure: true,
    };
    /// The basic usage only.
    pub const USAGE: Reads = Reads {
        cpu_split: false,
        memory_stat: false,
        memory_events: false,
        pressure: false,
    };
}

impl Default for Reads {
    fn default() -> Self {
        Reads::ALL
    }
}

/// Where each kind of counter is read, decided once from the layout.
#[derive(Debug, Clone)]
enum Source {
    V2(Hierarchy),
    V1(Hierarchy),
}

/// Reads cgroup counters. Holds a reusable buffer: one collector per
/// thread.
#[derive(Debug)]
pub struct Collector {
    src: Sources,
    /// One per thread of a pass; cgroups go to a worker by a hash of their
    /// path, so each keeps its open files from pass to pass.
    workers: Vec<Worker>,
}

/// Where each counter is read: shared by the workers.
#[derive(Debug)]
struct Sources {
    cpu_usage: Option<Source>,
    cpu_throttle: Option<Source>,
    memory: Option<Source>,
    io: Option<Source>,
    psi: Option<Hierarchy>,
    clock_ticks: u64,
    reads: Reads,
}

/// A read buffer and a table of open files.
#[derive(Debug, Default)]
struct Worker {
    buf: Vec<u8>,
    files: OpenFiles,
}

impl Collector {
    /// A collector for the hierarchies of `fs`:
    /// CPU usage from v2 when the cpu controller is enabled there, else v1
    /// cpuacct, else v2's always-present `cpu.stat`; throttling from
    /// wherever the cpu controller is; memory and I/O from wherever their
    /// controllers are; pressure from v2.
    pub fn new(fs: &CgroupFs) -> Self {
        let pick = |c: &str| {
            fs.for_controller(c).map(|h| match h.mount.version {
                Version::V2 => Source::V2(h.clone()),
                Version::V1 => Source::V1(h.clone()),
            })
        };
        let cpu_usage = match fs.v2() {
            Some(v2) if v2.has("cpu") => Some(Source::V2(v2.clone())),
            _ => pick("cpuacct").or_else(|| fs.v2().map(|h| Source::V2(h.clone()))),
        };
        Collector {
            src: Sources {
                cpu_usage,
                cpu_throttle: pick("cpu"),
                memory: pick("memory"),
                io: pick("io").or_else(|| pick("blkio")),
                psi: fs.v2().cloned(),
                clock_ticks: rustix::param::clock_ticks_per_second().max(1),
                reads: Reads::ALL,
            },
            workers: vec![Worker {
                buf: Vec::new(),
                files: OpenFiles {
                    budget: open_files_soft_limit() / 2,
                    ..OpenFiles::default()
                },
            }],
        }
    }

    /// Reads a pass with `n` threads (at least 1; the default is 1). Each
    /// thread keeps its own open files, for the cgroups hashed to it.
    pub fn with_threads(mut self, n: usize) -> Self {
        let budget: usize = self.workers.iter().map(|w| w.files.budget).sum();
        let n = n.max(1);
        self.workers = (0..n)
            .map(|_| Worker {
                buf: Vec::new(),
                files: OpenFiles {
                    budget: budget / n,
                    ..OpenFiles::default()
                },
            })
            .collect();
        self
    }

    /// Reads only `reads` beyond the basic usage (the default:
    /// [`Reads::ALL`]). Fields left out stay `None`.
    pub fn with_reads(mut self, reads: Reads) -> Self {
        self.src.reads = reads;
        self
    }

    /// Keeps at most `n` files open between passes (0: reopen every file
    /// every time). The default is half this process's soft limit on open
    /// files: an agent watching many cgroups should raise that limit
    /// (systemd's default soft limit is 1024; 8 files per cgroup).
    pub fn with_open_files(mut self, n: usize) -> Self {
        let k = self.workers.len();
        for w in &mut self.workers {
            w.files.budget = n / k;
            w.files.clear();
        }
        self
    }

    /// How many files are kept open.
    pub fn open_files(&self) -> usize {
        self.workers.iter().map(|w| w.files.open).sum()
    }

    /// Reads one cgroup. `None` when nothing could be read at all (the
    /// cgroup does not exist, or vanished); errors of single files go to
    /// `errors` and leave their fields `None`.
    pub fn sample(
        &mut self,
        cgroup: &CgroupPath,
        ts: TimestampMs,
        errors: &mut Vec<ReadError>,
    ) -> Option<CgroupSample> {
        let i = worker_of(cgroup, self.workers.len());
        self.src.sample(&mut self.workers[i], cgroup, ts, errors)
    }

    /// One pass over `cgroups`, all stamped `ts`, samples in the order
    /// given. Files of cgroups not in this pass are closed at its end.
    pub fn collect(&mut self, cgroups: &[CgroupPath], ts: TimestampMs) -> Pass {
        let n = self.workers.len();
        for w in &mut self.workers {
            w.files.pass += 1;
        }
        let mut pass = Pass {
            samples: Vec::with_capacity(cgroups.len()),
            errors: Vec::new(),
        };
        if n == 1 {
            let w = &mut self.workers[0];
            for cg in cgroups {
                if let Some(s) = self.src.sample(w, cg, ts, &mut pass.errors) {
                    pass.samples.push(s);
                }
            }
        } else {
            let src = &self.src;
            let results: Vec<WorkerPass> = std::thread::scope(|scope| {
                let handles: Vec<_> = self
                    .workers
                    .iter_mut()
                    .enumerate()
                    .map(|(k, w)| {
                        scope.spawn(move || {
                            let mut out = Vec::new();
                            let mut errors = Vec::new();
                            for (i, cg) in cgroups.iter().enumerate() {
                                if worker_of(cg, n) == k
                                    && let Some(s) = src.sample(w, cg, ts, &mut errors)
                                {
                                    out.push((i, s));
                                }
                            }
                            (out, errors)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            });
            let mut all: Vec<(usize, CgroupSample)> = Vec::with_capacity(cgroups.len());
            for (samples, errors) in results {
                all.extend(samples);
                pass.errors.extend(errors);
            }
            all.sort_unstable_by_key(|(i, _)| *i);
            pass.samples = all.into_iter().map(|(_, s)| s).collect();
        }
        for w in &mut self.workers {
            w.files.close_unused();
        }
        pass
    }
}

/// What one worker read in a threaded pass: (input index, sample), errors.
type WorkerPass = (Vec<(usize, CgroupSample)>, Vec<ReadError>);

/// The worker a cgroup goes to: a stable hash of its path (FNV-1a).
fn worker_of(cgroup: &CgroupPath, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in cgroup.as_str().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % n as u64) as usize
}

impl Sources {
    /// Reads one cgroup. `None` when nothing could be read at all (the
    /// cgroup does not exist, or vanished); errors of single files go to
    /// `errors` and leave their fields `None`.
    fn sample(
        &self,
        w: &mut Worker,
        cgroup: &CgroupPath,
        ts: TimestampMs,
        errors: &mut Vec<ReadError>,
    ) -> Option<CgroupSample> {
        let mut s = CgroupSample::empty(cgroup.clone(), ts);
        let pass = w.files.pass;
        let (slots, used) = w
            .files
            .cgroups
            .entry(cgroup.clone())
            .or_insert_with(|| ((0..SLOTS).map(|_| None).collect(), pass));
        *used = pass;
        let r = &mut Reader {
            buf: &mut w.buf,
            errors,
            slots,
            open: &mut w.files.open,
            budget: w.files.budget,
        };

        // CPU usage, then throttling (which may live in another hierarchy).
        match &self.cpu_usage {
            Some(Source::V2(h)) => s.cpu = r.get(0, h, cgroup, "cpu.stat", parse_cpu_stat),
            Some(Source::V1(h)) => {
                if let Some(ns) = r.get(1, h, cgroup, "cpuacct.usage", parse_single_u64) {
                    let mut c = CpuStat {
                        usage_usec: Some(ns / 1000),
                        ..CpuStat::default()
                    };
                    // cpuacct.usage_user/_sys are in ns (since Linux 4.7);
                    // cpuacct.stat, in clock ticks, is the fallback.
                    if self.reads.cpu_split {
                        let user = r.get(2, h, cgroup, "cpuacct.usage_user", parse_single_u64);
                        let sys = r.get(3, h, cgroup, "cpuacct.usage_sys", parse_single_u64);
                        if let (Some(u), Some(sy)) = (user, sys) {
                            c.user_usec = Some(u / 1000);
                            c.system_usec = Some(sy / 1000);
                        } else if let Some(a) =
                            r.get(4, h, cgroup, "cpuacct.stat", parse_cpuacct_stat)
                        {
                            let us = |t: u64| t.saturating_mul(1_000_000) / self.clock_ticks;
                            c.user_usec = a.user_ticks.map(us);
                            c.system_usec = a.system_ticks.map(us);
                        }
                    }
                    s.cpu = Some(c);
                }
            }
            None => {}
        }
        if let Some(Source::V1(h)) = &self.cpu_throttle
            && let Some(t) = r.get(5, h, cgroup, "cpu.stat", parse_v1_cpu_stat)
        {
            let c = s.cpu.get_or_insert_with(CpuStat::default);
            c.nr_periods = t.nr_periods;
            c.nr_throttled = t.nr_throttled;
            c.throttled_usec = t.throttled_usec;
            c.nr_bursts = t.nr_bursts;
            c.burst_usec = t.burst_usec;
        }

        match &self.memory {
            Some(Source::V2(h)) => {
                s.memory_current = r.get(6, h, cgroup, "memory.current", parse_single_u64);
                if self.reads.memory_stat {
                    s.memory_stat = r.get(7, h, cgroup, "memory.stat", parse_memory_stat);
                }
                if self.reads.memory_events {
                    s.memory_events = r.get(8, h, cgroup, "memory.events", parse_memory_events);
                }
            }
            Some(Source::V1(h)) => {
                s.memory_current = r.get(9, h, cgroup, "memory.usage_in_bytes", parse_single_u64);
                if self.reads.memory_stat {
                    s.memory_stat = r.get(10, h, cgroup, "memory.stat", parse_memory_stat);
                }
                if self.reads.memory_events {
                    s.memory_events =
                        r.get(11, h, cgroup, "memory.oom_control", parse_v1_oom_control);
                }
            }
            None => {}
        }

        match &self.io {
            Some(Source::V2(h)) => s.io = r.get(12, h, cgroup, "io.stat", parse_io_stat),
            Some(Source::V1(h)) => {
                let bytes = r.get(
                    13,
                    h,
                    cgroup,
                    "blkio.throttle.io_service_bytes",
                    parse_blkio_rwstat,
                );
                let ios = r.get(
                    14,
                    h,
                    cgroup,
                    "blkio.throttle.io_serviced",
                    parse_blkio_rwstat,
                );
                if let (Some(b), Some(i)) = (bytes, ios) {
                    s.io = Some(v1_io_stats(&b, &i));
                }
            }
            None => {}
        }

        if let Some(h) = self.psi.as_ref().filter(|_| self.reads.pressure) {
            s.cpu_pressure = r.get(15, h, cgroup, "cpu.pressure", parse_pressure);
            s.memory_pressure = r.get(16, h, cgroup, "memory.pressure", parse_pressure);
            s.io_pressure = r.get(17, h, cgroup, "io.pressure", parse_pressure);
        }

        if s.is_empty() {
            // Gone: keep nothing for it.
            if let Some((files, _)) = w.files.cgroups.remove(cgroup) {
                w.files.open -= files.iter().filter(|f| f.is_some()).count();
            }
            return None;
        }
        Some(s)
    }
}

/// The files one cgroup's sample reads: a fixed slot for each (hierarchy,
/// file) the collector may read.
const SLOTS: usize = 18;

/// Files kept open between passes, read again from offset 0 with
/// `pread`: on cgroupfs that makes the kernel generate the file afresh, and
/// it costs one system call instead of three (open, read, close), which is
/// most of a pass's time. A file whose cgroup was removed fails with
/// `ENODEV` and is reopened once (the cgroup may have been recreated under
/// the same name). On a plain filesystem (a fixture tree) a file rewritten
/// in place reads fresh too; one replaced by another inode would not, so
/// tests rewrite fixture files in place.
#[derive(Debug, Default)]
struct OpenFiles {
    cgroups: HashMap<CgroupPath, (Vec<Option<File>>, u64)>,
    open: usize,
    budget: usize,
    pass: u64,
}

impl OpenFiles {
    /// Closes the files of cgroups not read in the current pass.
    fn close_unused(&mut self) {
        let pass = self.pass;
        let mut closed = 0;
        self.cgroups.retain(|_, (files, used)| {
            let keep = *used == pass;
            if !keep {
                closed += files.iter().filter(|f| f.is_some()).count();
            }
            keep
        });
        self.open -= closed;
    }

    fn clear(&mut self) {
        self.cgroups.clear();
        self.open = 0;
    }
}

/// Reads a whole file from offset 0 into `buf`, returning its length
/// (`buf` keeps its size, so it is not zeroed again on every read). A read
/// that does not fill the buffer ends the file: cgroup files are generated
/// whole by one `show` call, so the first read returns all of it when the
/// buffer is large enough (it grows until it is), and a regular file's
/// short read is its end.
fn read_from_start(f: &File, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    if buf.len() < 16 << 10 {
        buf.resize(16 << 10, 0);
    }
    let mut filled = 0;
    loop {
        let n = f.read_at(&mut buf[filled..], filled as u64)?;
        filled += n;
        if filled < buf.len() {
            return Ok(filled);
        }
        let grown = buf.len() * 2;
        buf.resize(grown, 0);
    }
}

/// This process's soft limit on open files (`RLIMIT_NOFILE`).
fn open_files_soft_limit() -> usize {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Reads files of one cgroup into a shared buffer, filing errors away.
struct Reader<'a> {
    buf: &'a mut Vec<u8>,
    errors: &'a mut Vec<ReadError>,
    /// The cgroup's kept-open files, by slot.
    slots: &'a mut [Option<File>],
    open: &'a mut usize,
    budget: usize,
}

impl Reader<'_> {
    fn get<T>(
        &mut self,
        slot: usize,
        h: &Hierarchy,
        cgroup: &CgroupPath,
        file: &str,
        parse: impl FnOnce(&str) -> Result<T, ParseError>,
    ) -> Option<T> {
        match self.read(slot, h, cgroup, file) {
            Ok(Some(n)) => {
                let bytes = &self.buf[..n];
                let text = match std::str::from_utf8(bytes) {
                    Ok(t) => std::borrow::Cow::Borrowed(t),
                    Err(_) => String::from_utf8_lossy(bytes),
                };
                parse(&text)
                    .map_err(|source| {
                        self.errors.push(ReadError::Parse {
                            path: h.dir(cgroup).join(file),
                            source,
                        })
                    })
                    .ok()
            }
            Ok(None) => None,
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    /// Reads the file into the start of the buffer, returning its length;
    /// `Ok(None)` when it vanished.
    fn read(
        &mut self,
        slot: usize,
        h: &Hierarchy,
        cgroup: &CgroupPath,
        file: &str,
    ) -> Result<Option<usize>, ReadError> {
        if let Some(f) = &self.slots[slot] {
            match read_from_start(f, self.buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if is_vanished(&e) => {
                    self.slots[slot] = None;
                    *self.open -= 1;
                }
                Err(source) => {
                    return Err(ReadError::Io {
                        path: h.dir(cgroup).join(file),
                        source,
                    });
                }
            }
        }
        let path = h.dir(cgroup).join(file);
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_vanished(&e) => return Ok(None),
            Err(source) => return Err(ReadError::Io { path, source }),
        };
        let n = match read_from_start(&f, self.buf) {
            Ok(n) => n,
            Err(e) if is_vanished(&e) => return Ok(None),
            Err(source) => return Err(ReadError::Io { path, source }),
        };
        if *self.open < self.budget {
            self.slots[slot] = Some(f);
            *self.open += 1;
        }
        Ok(Some(n))
    }
}
