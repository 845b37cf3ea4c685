//! `/proc` readers, per process and per thread: `stat`, `status`, `io`,
//! `cmdline`, the owner, the libraries mapped (`maps`), the cgroups, and
//! network bytes per network namespace (`net/dev`). Parsers are pure
//! functions of the text; [`ProcFs`] reads them under a [`Root`], and a
//! process that exits mid-read gives `None`, not an error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use crate::io::{ReadError, Root, is_vanished, read_parsed, read_text};
use crate::layout::{ProcCgroup, parse_proc_cgroup};
use crate::parse::{ParseError, i64_at, u64_at};

/// The fields of `/proc/<pid>/stat` (or `task/<tid>/stat`) the agent uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStat {
    /// Process (or thread) id.
    pub pid: i32,
    /// The command name (at most 15 bytes; may hold spaces and parentheses).
    pub comm: String,
    /// State: R, S, D, Z, T, t, X, I, ...
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Session.
    pub session: i32,
    /// Minor faults.
    pub minflt: u64,
    /// Major faults.
    pub majflt: u64,
    /// User time, clock ticks.
    pub utime: u64,
    /// System time, clock ticks.
    pub stime: u64,
    /// Nice value.
    pub nice: i64,
    /// Threads in the process.
    pub num_threads: i64,
    /// Start time after boot, clock ticks: with the pid, tells a reused
    /// pid apart.
    pub starttime: u64,
    /// Virtual memory, bytes.
    pub vsize: u64,
    /// Resident pages.
    pub rss_pages: i64,
    /// CPU last run on (absent on very old kernels).
    pub processor: Option<i64>,
}

/// Parses `/proc/<pid>/stat`. The command name is between the first `(`
/// and the *last* `)`: it may itself hold `)` and spaces.
pub fn parse_stat(text: &str) -> Result<ProcStat, ParseError> {
    let text = text.trim_end();
    let open = text
        .find('(')
        .ok_or_else(|| ParseError::new(1, "stat without '('", text))?;
    let close = text
        .rfind(')')
        .ok_or_else(|| ParseError::new(1, "stat without ')'", text))?;
    if close < open {
        return Err(ParseError::new(1, "stat with ')' before '('", text));
    }
    let pid = i64_at(1, "pid", text[..open].trim())?;
    let pid = i32::try_from(pid).map_err(|_| ParseError::new(1, "pid out of range", text))?;
    let comm = text[open + 1..close].to_string();
    // Fields from 3 (state) on.
    let rest: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| -> Result<&str, ParseError> {
        rest.get(n - 3)
            .copied()
            .ok_or_else(|| ParseError::new(1, format!("stat with no field {n}"), text))
    };
    let u = |n: usize, name: &str| -> Result<u64, ParseError> { u64_at(1, name, field(n)?) };
    let i = |n: usize, name: &str| -> Result<i64, ParseError> { i64_at(1, name, field(n)?) };
    let i32f = |n: usize, name: &str| -> Result<i32, ParseError> {
        i32::try_from(i(n, name)?)
            .map_err(|_| ParseError::new(1, format!("{name} out of range"), text))
    };
    let state = field(3)?.chars().next().unwrap_or('?');
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid: i32f(4, "ppid")?,
        pgrp: i32f(5, "pgrp")?,
        session: i32f(6, "session")?,
        minflt: u(10, "minflt")?,
        majflt: u(12, "majflt")?,
        utime: u(14, "utime")?,
        stime: u(15, "stime")?,
        nice: i(19, "nice")?,
        num_threads: i(20, "num_threads")?,
        starttime: u(22, "starttime")?,
        vsize: u(23, "vsize")?,
        rss_pages: i(24, "rss")?,
        processor: rest.get(39 - 3).and_then(|v| v.parse().ok()),
    })
}

/// The fields of `/proc/<pid>/status` the agent uses. Memory in kB as the
/// kernel prints it; the `Vm*` lines are absent for kernel threads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStatus {
    /// Command name.
    pub name: Option<String>,
    /// Thread group id (the process id).
    pub tgid: Option<i32>,
    /// Parent pid.
    pub ppid: Option<i32>,
    /// Real, effective, saved and filesystem uid.
    pub uid: Option<[u32; 4]>,
    /// Real, effective, saved and filesystem gid.
    pub gid: Option<[u32; 4]>,
    /// Threads.
    pub threads: Option<u64>,
    /// Resident set, kB.
    pub vm_rss_kb: Option<u64>,
    /// Peak resident set, kB.
    pub vm_hwm_kb: Option<u64>,
    /// Swapped out, kB.
    pub vm_swap_kb: Option<u64>,
    /// Voluntary context switches.
    pub voluntary_ctxt_switches: Option<u64>,
    /// Involuntary context switches.
    pub nonvoluntary_ctxt_switches: Option<u64>,
}

/// Parses `/proc/<pid>/status` (`Key:\tvalue` lines; unknown keys skipped).
pub fn parse_status(text: &str) -> Result<ProcStatus, ParseError> {
    let mut s = ProcStatus::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let kb = |v: &str| -> Result<u64, ParseError> {
            u64_at(n, key, v.strip_suffix("kB").unwrap_or(v).trim())
        };
        let ids = |v: &str| -> Result<[u32; 4], ParseError> {
            let mut out = [0u32; 4];
            let mut it = v.split_ascii_whitespace();
            for slot in &mut out {
                let t = it
                    .next()
                    .ok_or_else(|| ParseError::new(n, format!("{key}: expected 4 ids"), v))?;
                *slot = t
                    .parse()
                    .map_err(|_| ParseError::new(n, format!("{key}: expected an id"), t))?;
            }
            Ok(out)
        };
        let int = |v: &str| -> Result<i32, ParseError> {
            v.parse()
                .map_err(|_| ParseError::new(n, format!("{key}: expected a pid"), v))
        };
        match key {
            "Name" => s.name = Some(value.to_string()),
            "Tgid" => s.tgid = Some(int(value)?),
            "PPid" => s.ppid = Some(int(value)?),
            "Uid" => s.uid = Some(ids(value)?),
            "Gid" => s.gid = Some(ids(value)?),
            "Threads" => s.threads = Some(u64_at(n, key, value)?),
            "VmRSS" => s.vm_rss_kb = Some(kb(value)?),
            "VmHWM" => s.vm_hwm_kb = Some(kb(value)?),
            "VmSwap" => s.vm_swap_kb = Some(kb(value)?),
            "voluntary_ctxt_switches" => s.voluntary_ctxt_switches = Some(u64_at(n, key, value)?),
            "nonvoluntary_ctxt_switches" => {
                s.nonvoluntary_ctxt_switches = Some(u64_at(n, key, value)?)
            }
            _ => {}
        }
    }
    Ok(s)
}

/// `/proc/<pid>/io`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcIo {
    /// Bytes read through read(2) and the like (cache hits included).
    pub rchar: u64,
    /// Bytes written through write(2) and the like.
    pub wchar: u64,
    /// Read system calls.
    pub syscr: u64,
    /// Write system calls.
    pub syscw: u64,
    /// Bytes fetched from storage.
    pub read_bytes: u64,
    /// Bytes sent to storage (dirtied pages).
    pub write_bytes: u64,
    /// Dirtied bytes truncated before writeback.
    pub cancelled_write_bytes: u64,
}

/// Parses `/proc/<pid>/io`.
pub fn parse_io(text: &str) -> Result<ProcIo, ParseError> {
    let mut s = ProcIo::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(ParseError::new(n, "expected 'key: value'", line));
        };
        let slot = match k {
            "rchar" => &mut s.rchar,
            "wchar" => &mut s.wchar,
            "syscr" => &mut s.syscr,
            "syscw" => &mut s.syscw,
            "read_bytes" => &mut s.read_bytes,
            "write_bytes" => &mut s.write_bytes,
            "cancelled_write_bytes" => &mut s.cancelled_write_bytes,
            _ => continue,
        };
        *slot = u64_at(n, k, v.trim())?;
    }
    Ok(s)
}

/// Splits `/proc/<pid>/cmdline` (NUL-separated) into arguments. Empty for
/// kernel threads and zombies.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The shared libraries mapped by a process, from `/proc/<pid>/maps`:
/// every file-backed mapping whose file name has `.so` as a suffix or
/// followed by a version (`libc.so.6`), once each, sorted. A library
/// replaced on disk keeps its ` (deleted)` mark.
pub fn parse_maps_libraries(text: &str) -> Vec<String> {
    let mut libs = BTreeSet::new();
    for line in text.lines() {
        // address perms offset dev inode pathname; the pathname (which may
        // hold spaces) starts after the fifth field.
        let mut rest = line;
        let mut fields = 0;
        while fields < 5 {
            rest = rest.trim_start();
            match rest.find(char::is_whitespace) {
                Some(i) => rest = &rest[i..],
                None => {
                    rest = "";
                    break;
                }
            }
            fields += 1;
        }
        let path = rest.trim();
        if !path.starts_with('/') {
            continue;
        }
        let file = path.rsplit('/').next().unwrap_or(path);
        let file = file.strip_suffix(" (deleted)").unwrap_or(file);
        if file.ends_with(".so") || file.contains(".so.") {
            libs.insert(path.to_string());
        }
    }
    libs.into_iter().collect()
}

/// One interface's counters from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDev {
    /// Interface name.
    pub interface: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}

/// Parses `/proc/<pid>/net/dev` (two header lines, then
/// `iface: 8 receive counters 8 transmit counters`).
pub fn parse_net_dev(text: &str) -> Result<Vec<NetDev>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        // Header lines have '|' and no colon; a line with a colon and '|'
        // is not one of ours either.
        if name.is_empty() || name.contains('|') {
            continue;
        }
        let v: Vec<&str> = counters.split_ascii_whitespace().collect();
        if v.len() < 16 {
            return Err(ParseError::new(
                n,
                "expected 16 counters after the interface",
                line,
            ));
        }
        let c = |k: usize| u64_at(n, "counter", v[k]);
        out.push(NetDev {
            interface: name.to_string(),
            rx_bytes: c(0)?,
            rx_packets: c(1)?,
            rx_errors: c(2)?,
            rx_dropped: c(3)?,
            tx_bytes: c(8)?,
            tx_packets: c(9)?,
            tx_errors: c(10)?,
            tx_dropped: c(11)?,
        });
    }
    Ok(out)
}

/// Parses the target of a namespace link (`net:[4026531833]`) into its
/// inode number.
pub fn parse_ns_link(target: &str) -> Option<u64> {
    let inner = target.split_once(":[")?.1.strip_suffix(']')?;
    inner.parse().ok()
}

/// Users from `/etc/passwd`: uid to name.
pub fn parse_passwd(text: &str) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        let (Some(name), Some(_pw), Some(uid)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if let Ok(uid) = uid.parse::<u32>() {
            out.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    out
}

/// A process's counters at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessSample {
    /// When it was read.
    pub ts: TimestampMs,
    /// `stat`.
    pub stat: ProcStat,
    /// `status` (`None` if it vanished after `stat` was read).
    pub status: Option<ProcStatus>,
    /// `io` (`None` when not permitted or vanished).
    pub io: Option<ProcIo>,
    /// The command line.
    pub cmdline: Vec<String>,
}

/// Clock ticks per second (`USER_HZ`), the unit of the CPU times of
/// `stat`: what [`crate::rates::process_rates`] takes.
pub fn clock_ticks() -> u64 {
    rustix::param::clock_ticks_per_second().max(1)
}

/// Reads `/proc` under a [`Root`].
#[derive(Debug, Clone)]
pub struct ProcFs {
    root: Root,
    proc_dir: PathBuf,
}

impl ProcFs {
    /// `/proc` under `root`.
    pub fn new(root: Root) -> Self {
        let proc_dir = root.join("/proc");
        ProcFs { root, proc_dir }
    }

    fn path(&self, pid: i32, tid: Option<i32>, file: &str) -> PathBuf {
        let mut p = self.proc_dir.join(pid.to_string());
        if let Some(tid) = tid {
            p = p.join("task").join(tid.to_string());
        }
        p.join(file)
    }

    /// Every process id, ascending.
    pub fn pids(&self) -> Result<Vec<i32>, ReadError> {
        numeric_entries(&self.proc_dir).map(Option::unwrap_or_default)
    }

    /// The thread ids of `pid`; `None` when the process is gone.
    pub fn tids(&self, pid: i32) -> Result<Option<Vec<i32>>, ReadError> {
        numeric_entries(&self.proc_dir.join(pid.to_string()).join("task"))
    }

    /// `stat` of a process (or of its thread `tid`).
    pub fn stat(&self, pid: i32, tid: Option<i32>) -> Result<Option<ProcStat>, ReadError> {
        read_parsed(&self.path(pid, tid, "stat"), parse_stat)
    }

    /// `status` of a process or thread.
    pub fn status(&self, pid: i32, tid: Option<i32>) -> Result<Option<ProcStatus>, ReadError> {
        read_parsed(&self.path(pid, tid, "status"), parse_status)
    }

    /// `io` of a process or thread (needs the same user or root).
    pub fn io(&self, pid: i32, tid: Option<i32>) -> Result<Option<ProcIo>, ReadError> {
        read_parsed(&self.path(pid, tid, "io"), parse_io)
    }

    /// The command line.
    pub fn cmdline(&self, pid: i32) -> Result<Option<Vec<String>>, ReadError> {
        let path = self.path(pid, None, "cmdline");
        let mut buf = Vec::new();
        if !crate::io::read_into(&path, &mut buf)? {
            return Ok(None);
        }
        Ok(Some(parse_cmdline(&buf)))
    }

    /// The shared libraries mapped.
    pub fn libraries(&self, pid: i32) -> Result<Option<Vec<String>>, ReadError> {
        Ok(read_text(&self.path(pid, None, "maps"))?.map(|t| parse_maps_libraries(&t)))
    }

    /// The cgroups (`/proc/<pid>/cgroup`).
    pub fn cgroups(&self, pid: i32) -> Result<Option<Vec<ProcCgroup>>, ReadError> {
        read_parsed(&self.path(pid, None, "cgroup"), parse_proc_cgroup)
    }

    /// The owner: the real uid from `status`, and its user name from
    /// `/etc/passwd` under the same root when listed there.
    pub fn owner(&self, pid: i32) -> Result<Option<(u32, Option<String>)>, ReadError> {
        let Some(status) = self.status(pid, None)? else {
            return Ok(None);
        };
        let Some([uid, ..]) = status.uid else {
            return Ok(None);
        };
        Ok(Some((uid, self.users()?.remove(&uid))))
    }

    /// uid to user name, from `/etc/passwd` under the root (empty when
    /// there is none).
    pub fn users(&self) -> Result<BTreeMap<u32, String>, ReadError> {
        Ok(read_text(&self.root.join("/etc/passwd"))?
            .map(|t| parse_passwd(&t))
            .unwrap_or_default())
    }

    /// The inode of the process's network namespace.
    pub fn net_ns(&self, pid: i32) -> Result<Option<u64>, ReadError> {
        let path = self.path(pid, None, "ns/net");
        match std::fs::read_link(&path) {
            Ok(t) => Ok(parse_ns_link(&t.to_string_lossy())),
            Err(e) if is_vanished(&e) => Ok(None),
            Err(source) => Err(ReadError::Io { path, source }),
        }
    }

    /// The inode of the reading process's own network namespace
    /// (`/proc/self/ns/net` under the root): on a host, the host's.
    pub fn own_net_ns(&self) -> Result<Option<u64>, ReadError> {
        let path = self.proc_dir.join("self/ns/net");
        match std::fs::read_link(&path) {
            Ok(t) => Ok(parse_ns_link(&t.to_string_lossy())),
            Err(e) if is_vanished(&e) => Ok(None),
            Err(source) => Err(ReadError::Io { path, source }),
        }
    }

    /// Interface counters of the process's network namespace.
    pub fn net_dev(&self, pid: i32) -> Result<Option<Vec<NetDev>>, ReadError> {
        read_parsed(&self.path(pid, None, "net/dev"), parse_net_dev)
    }

    /// Interface counters for each network namespace of `pids`, read once
    /// per namespace (through the first of its processes still alive).
    /// Processes whose namespace cannot be told are skipped.
    pub fn net_by_namespace(&self, pids: &[i32]) -> Result<BTreeMap<u64, Vec<NetDev>>, ReadError> {
        let mut out = BTreeMap::new();
        for &pid in pids {
            let Some(ns) = self.net_ns(pid)? else {
                continue;
            };
            if out.contains_key(&ns) {
                continue;
            }
            if let Some(devs) = self.net_dev(pid)? {
                out.insert(ns, devs);
            }
        }
        Ok(out)
    }

    /// `stat`, `status`, `io` and `cmdline` of a process (or thread). `None`
    /// when it is gone. `io` is `None`, not an error, when not permitted.
    pub fn sample(
        &self,
        pid: i32,
        tid: Option<i32>,
        ts: TimestampMs,
    ) -> Result<Option<ProcessSample>, ReadError> {
        let Some(stat) = self.stat(pid, tid)? else {
            return Ok(None);
        };
        let status = self.status(pid, tid)?;
        let io = match self.io(pid, tid) {
            Ok(io) => io,
            Err(ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let cmdline = self.cmdline(pid)?.unwrap_or_default();
        Ok(Some(ProcessSample {
            ts,
            stat,
            status,
            io,
            cmdline,
        }))
    }
}

/// The numeric entries of a directory, ascending; `None` when it is gone.
fn numeric_entries(dir: &std::path::Path) -> Result<Option<Vec<i32>>, ReadError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if is_vanished(&e) => return Ok(None),
        Err(source) => {
            return Err(ReadError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut out: Vec<i32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    out.sort_unstable();
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_an_awkward_command_name() {
        // Constructed (not captured): a comm holding ") (" and spaces.
        let s = parse_stat(
            "42 (a) (b c) R 1 42 42 0 -1 4194304 10 0 3 0 7 5 0 0 20 0 1 0 620470 1000 25 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0",
        )
        .unwrap();
        assert_eq!(s.comm, "a) (b c");
        assert_eq!(s.state, 'R');
        assert_eq!((s.utime, s.stime, s.majflt), (7, 5, 3));
        assert_eq!(s.processor, Some(1));
        assert!(parse_stat("42 (x) R 1").is_err());
        assert!(parse_stat("42 x) R (").is_err());
        assert!(parse_stat("").is_err());
    }

    #[test]
    fn cmdline_and_ns_links() {
        assert_eq!(parse_cmdline(b"sleep\x0010\x00"), vec!["sleep", "10"]);
        assert_eq!(parse_cmdline(b""), Vec::<String>::new());
        assert_eq!(parse_cmdline(b"a\x00\x00b\x00"), vec!["a", "", "b"]);
        assert_eq!(parse_ns_link("net:[4026531833]"), Some(4026531833));
        assert_eq!(parse_ns_link("net:[x]"), None);
        assert_eq!(parse_ns_link("garbage"), None);
    }

    #[test]
    fn maps_with_spaces_and_deleted_files() {
        let text = "\
7f00-7f01 r-xp 00000000 fe:00 123 /usr/lib/x86_64-linux-gnu/libc.so.6
7f01-7f02 r--p 00000000 fe:00 124 /opt/my app/libfoo.so (deleted)
7f02-7f03 rw-p 00000000 00:00 0 
7f03-7f04 r--p 00000000 fe:00 125 /usr/lib/locale/C.utf8/LC_CTYPE
7f04-7f05 rw-p 00000000 00:00 0 [heap]
7f05-7f06 r-xp 00000000 fe:00 123 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        assert_eq!(
            parse_maps_libraries(text),
            vec![
                "/opt/my app/libfoo.so (deleted)".to_string(),
                "/usr/lib/x86_64-linux-gnu/libc.so.6".to_string(),
            ]
        );
    }

    #[test]
    fn passwd() {
        let u = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\nbad line\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n",
        );
        assert_eq!(u.get(&0).map(String::as_str), Some("root"));
        assert_eq!(u.get(&33).map(String::as_str), Some("www-data"));
        assert_eq!(u.len(), 2);
    }
}
