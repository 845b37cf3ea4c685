//! Network bytes per workload.
//!
//! Neither cgroup v1 nor v2 counts network bytes: the kernel counts them
//! per interface, and `/proc/<pid>/net/dev` shows the interfaces of the
//! process's *network namespace*. So a workload's network use is known
//! only when it has namespaces of its own (a container, a pod, a service
//! with `PrivateNetwork=`): the bytes of a namespace are a workload's when
//! every process of the workload is in namespaces that
//!
//! - are not the agent's own (on a host, the host's: its bytes are
//!   everybody's, and cannot be split per workload), and
//! - hold no process of another workload.
//!
//! A workload sharing the host's namespace gets no network series at all,
//! rather than a wrong one. A namespace shared with a process that belongs
//! to no workload is not detected (that would need a scan of every
//! process): its bytes go to the workload. [`attribute`] decides this
//! (pure), [`NetMeter`] applies it: namespaces are assigned when workloads
//! are discovered, and each sample reads one `net/dev` per assigned
//! namespace (none at all on a host where no workload has its own).
//!
//! Loopback is not counted ([`net_rates`]): bytes a workload sends itself
//! never use a link, which is what a network allocation divides.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use prescient_core::TimestampMs;

use crate::io::{ReadError, is_vanished, read_text};
use crate::layout::Hierarchy;
use crate::path::CgroupPath;
use crate::procfs::{NetDev, ProcFs};
use crate::rates::net_rates;

/// The processes of `cgroup` and of every cgroup below it in `h`
/// (`cgroup.procs` lists only a cgroup's own), ascending, each once.
/// `None` when the cgroup is gone; cgroups below that vanish during the
/// walk are skipped.
pub fn tree_pids(h: &Hierarchy, cgroup: &CgroupPath) -> Result<Option<Vec<i32>>, ReadError> {
    let mut out = Vec::new();
    if !collect_pids(&h.dir(cgroup), &mut out)? {
        return Ok(None);
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// Appends the pids of the cgroup directory `dir` and its children;
/// `false` when `dir` is gone.
fn collect_pids(dir: &std::path::Path, out: &mut Vec<i32>) -> Result<bool, ReadError> {
    let procs = dir.join("cgroup.procs");
    let Some(text) = read_text(&procs)? else {
        return Ok(false);
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let pid = line.parse::<i32>().map_err(|_| ReadError::Parse {
            path: procs.clone(),
            source: crate::parse::ParseError::new(i + 1, "expected a pid", line),
        })?;
        out.push(pid);
    }
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if is_vanished(&e) => return Ok(true),
        Err(source) => {
            return Err(ReadError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut children: Vec<_> = rd
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    children.sort();
    for c in children {
        collect_pids(&c, out)?;
    }
    Ok(true)
}

/// Whether a workload's network bytes can be told, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetAttribution<K> {
    /// Its processes are in these namespaces (inode numbers, ascending),
    /// used by no other workload and not by the agent.
    Own(Vec<u64>),
    /// None of its processes' namespaces could be read (it has none, or
    /// they all exited).
    NoProcesses,
    /// The agent's own network namespace is not known, so no namespace can
    /// be told apart from the host's.
    AgentUnknown,
    /// Some of its processes are in the agent's own namespace (the host's).
    AgentNamespace,
    /// A namespace of its processes holds processes of another workload.
    Shared {
        /// The namespace.
        ns: u64,
        /// The other workload (the first, in order, besides this one).
        with: K,
    },
    /// The namespace of one of its processes could not be read (other than
    /// because it exited: e.g. not permitted).
    Unreadable {
        /// The process.
        pid: i32,
        /// The error.
        error: String,
    },
}

impl<K: fmt::Display> fmt::Display for NetAttribution<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetAttribution::Own(ns) => {
                let ns: Vec<String> = ns.iter().map(u64::to_string).collect();
                write!(
                    f,
                    "counted from its own network namespace(s) net:[{}]",
                    ns.join("], net:[")
                )
            }
            NetAttribution::NoProcesses => {
                f.write_str("not counted: no process whose network namespace could be read")
            }
            NetAttribution::AgentUnknown => f.write_str(
                "not counted: the agent's own network namespace is unknown, so no namespace can be told from the host's",
            ),
            NetAttribution::AgentNamespace => f.write_str(
                "not counted: it shares the agent's (the host's) network namespace, whose bytes cannot be split per workload",
            ),
            NetAttribution::Shared { ns, with } => write!(
                f,
                "not counted: its network namespace net:[{ns}] is shared with workload {with}"
            ),
            NetAttribution::Unreadable { pid, error } => write!(
                f,
                "not counted: the network namespace of its process {pid} cannot be read: {error}"
            ),
        }
    }
}

/// Decides, for each workload, whether the namespaces of its processes
/// (`members`: workload → the namespaces its processes are in) are its own
/// (see the module's documentation). `agent` is the agent's own namespace.
pub fn attribute<K: Ord + Clone>(
    agent: Option<u64>,
    members: &BTreeMap<K, BTreeSet<u64>>,
) -> BTreeMap<K, NetAttribution<K>> {
    let mut users: BTreeMap<u64, Vec<&K>> = BTreeMap::new();
    for (k, set) in members {
        for ns in set {
            users.entry(*ns).or_default().push(k);
        }
    }
    members
        .iter()
        .map(|(k, set)| {
            let a = if set.is_empty() {
                NetAttribution::NoProcesses
            } else if let Some(agent) = agent {
                if set.contains(&agent) {
                    NetAttribution::AgentNamespace
                } else if let Some((ns, with)) = set.iter().find_map(|ns| {
                    users
                        .get(ns)
                        .and_then(|u| u.iter().find(|o| **o != k))
                        .map(|o| (*ns, (*o).clone()))
                }) {
                    NetAttribution::Shared { ns, with }
                } else {
                    NetAttribution::Own(set.iter().copied().collect())
                }
            } else {
                NetAttribution::AgentUnknown
            };
            (k.clone(), a)
        })
        .collect()
}

/// Network rates of one workload: bytes per second received and sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetUsage {
    /// Received, bytes/s.
    pub rx_bytes_per_sec: f64,
    /// Sent, bytes/s.
    pub tx_bytes_per_sec: f64,
}

/// Reads the network bytes of workloads keyed by `K` (see the module's
/// documentation): [`NetMeter::assign`] at discovery, [`NetMeter::sample`]
/// at each sample.
#[derive(Debug)]
pub struct NetMeter<K> {
    agent: Option<u64>,
    /// Per workload: its namespaces, each with the processes to read it
    /// through.
    sources: BTreeMap<K, Vec<(u64, Vec<i32>)>>,
    /// The last counters of each (workload, namespace), and when.
    prev: BTreeMap<(K, u64), (TimestampMs, Vec<NetDev>)>,
}

impl<K: Ord + Clone> NetMeter<K> {
    /// A meter for an agent whose own network namespace is `agent` (see
    /// [`ProcFs::own_net_ns`]).
    pub fn new(agent: Option<u64>) -> Self {
        NetMeter {
            agent,
            sources: BTreeMap::new(),
            prev: BTreeMap::new(),
        }
    }

    /// Assigns namespaces to the workloads of `members` (workload → its
    /// processes), replacing the previous assignment; returns why each
    /// workload's bytes are counted or not. The counters kept of
    /// namespaces that stay assigned to the same workload are kept.
    pub fn assign(
        &mut self,
        procfs: &ProcFs,
        members: &BTreeMap<K, Vec<i32>>,
    ) -> BTreeMap<K, NetAttribution<K>> {
        let mut sets: BTreeMap<K, BTreeSet<u64>> = BTreeMap::new();
        let mut through: BTreeMap<(K, u64), Vec<i32>> = BTreeMap::new();
        let mut unreadable: BTreeMap<K, (i32, String)> = BTreeMap::new();
        for (k, pids) in members {
            let set = sets.entry(k.clone()).or_default();
            for &pid in pids {
                match procfs.net_ns(pid) {
                    Ok(Some(ns)) => {
                        set.insert(ns);
                        through.entry((k.clone(), ns)).or_default().push(pid);
                    }
                    // Exited since it was listed.
                    Ok(None) => {}
                    Err(e) => {
                        unreadable
                            .entry(k.clone())
                            .or_insert_with(|| (pid, e.to_string()));
                    }
                }
            }
        }
        let mut out = attribute(self.agent, &sets);
        for (k, (pid, error)) in unreadable {
            // A process whose namespace is unknown might share it: not
            // counted. (Its other namespaces still count against others.)
            out.insert(k, NetAttribution::Unreadable { pid, error });
        }
        self.sources.clear();
        for (k, a) in &out {
            if let NetAttribution::Own(nss) = a {
                let v = nss
                    .iter()
                    .map(|ns| {
                        let pids = through.remove(&(k.clone(), *ns)).unwrap_or_default();
                        (*ns, pids)
                    })
                    .collect();
                self.sources.insert(k.clone(), v);
            }
        }
        let sources = &self.sources;
        self.prev.retain(|(k, ns), _| {
            sources
                .get(k)
                .is_some_and(|v| v.iter().any(|(n, _)| n == ns))
        });
        out
    }

    /// The raw counters of `key` as its last [`NetMeter::sample`] read
    /// them: each interface but loopback of each of its namespaces, named
    /// `net:[<namespace>]/<interface>`.
    pub fn counters(&self, key: &K) -> Vec<(String, &NetDev)> {
        let Some(sources) = self.sources.get(key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (ns, _) in sources {
            let Some((_, devs)) = self.prev.get(&(key.clone(), *ns)) else {
                continue;
            };
            for d in devs.iter().filter(|d| d.interface != "lo") {
                out.push((format!("net:[{ns}]/{}", d.interface), d));
            }
        }
        out
    }

    /// Whether `key`'s bytes are counted (it has namespaces of its own).
    pub fn counts(&self, key: &K) -> bool {
        self.sources.contains_key(key)
    }

    /// The network rates of `key` since its previous sample, at `ts`,
    /// summed over its namespaces (loopback excluded); `None` when its
    /// bytes are not counted, at its first sample, or when none of its
    /// namespaces could be read (their processes exited). A namespace is
    /// read through the first of its processes still in it.
    pub fn sample(&mut self, procfs: &ProcFs, key: &K, ts: TimestampMs) -> Option<NetUsage> {
        let sources = self.sources.get(key)?;
        let mut sum: Option<NetUsage> = None;
        for (ns, pids) in sources {
            let mut devs = None;
            for &pid in pids {
                // The pid may have been reused by a process elsewhere.
                if procfs.net_ns(pid).ok().flatten() != Some(*ns) {
                    continue;
                }
                if let Ok(Some(d)) = procfs.net_dev(pid) {
                    devs = Some(d);
                    break;
                }
            }
            let pk = (key.clone(), *ns);
            let Some(devs) = devs else {
                self.prev.remove(&pk);
                continue;
            };
            if let Some((pts, pdevs)) = self.prev.get(&pk)
                && let (Some(rx), Some(tx)) = net_rates(&devs, pdevs, ts - pts)
            {
                let s = sum.get_or_insert(NetUsage {
                    rx_bytes_per_sec: 0.0,
                    tx_bytes_per_sec: 0.0,
                });
                s.rx_bytes_per_sec += rx;
                s.tx_bytes_per_sec += tx;
            }
            self.prev.insert(pk, (ts, devs));
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(m: &[(&str, &[u64])]) -> BTreeMap<String, BTreeSet<u64>> {
        m.iter()
            .map(|(k, v)| (k.to_string(), v.iter().copied().collect()))
            .collect()
    }

    #[test]
    fn only_namespaces_of_one_workload_and_not_the_agents_are_counted() {
        let host = 4026531840;
        let a = attribute(
            Some(host),
            &members(&[
                ("alone", &[11]),
                ("two-own", &[12, 13]),
                ("on-host", &[host]),
                ("half-host", &[14, host]),
                ("pod-a", &[20]),
                ("pod-b", &[20, 21]),
                ("none", &[]),
            ]),
        );
        assert_eq!(a["alone"], NetAttribution::Own(vec![11]));
        assert_eq!(a["two-own"], NetAttribution::Own(vec![12, 13]));
        assert_eq!(a["on-host"], NetAttribution::AgentNamespace);
        assert_eq!(a["half-host"], NetAttribution::AgentNamespace);
        assert_eq!(
            a["pod-a"],
            NetAttribution::Shared {
                ns: 20,
                with: "pod-b".to_string()
            }
        );
        assert_eq!(
            a["pod-b"],
            NetAttribution::Shared {
                ns: 20,
                with: "pod-a".to_string()
            }
        );
        assert_eq!(a["none"], NetAttribution::NoProcesses);
        let msg = a["on-host"].to_string();
        assert!(msg.contains("host"), "{msg}");
        assert!(a["pod-a"].to_string().contains("pod-b"));
        // Without the agent's namespace nothing can be told apart.
        let b = attribute(None, &members(&[("alone", &[11])]));
        assert_eq!(b["alone"], NetAttribution::AgentUnknown);
    }
}
