//! What the loadgen plays: one host's workloads from a trace, their CPU
//! (cores) and memory (bytes) per step on a common timeline.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use prescient_core::Resource;
use prescient_trace::TraceReader;

use crate::error::LoadgenError;

/// One workload's demand, one value per step of its [`Scenario`].
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadTrace {
    /// The name in the trace.
    pub name: String,
    /// CPU demand per step, cores (0 where the trace has no row).
    pub cpu: Vec<f64>,
    /// Memory demand per step, bytes (`None`: the trace has no memory for
    /// this workload, so none is held).
    pub memory: Option<Vec<f64>>,
}

impl WorkloadTrace {
    /// The mean CPU demand over every step.
    pub fn mean_cpu(&self) -> f64 {
        if self.cpu.is_empty() {
            0.0
        } else {
            self.cpu.iter().sum::<f64>() / self.cpu.len() as f64
        }
    }
}

/// Which workloads of a host to play when asked for fewer than it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pick {
    /// The first ones, in trace order.
    #[default]
    First,
    /// Those with the highest mean CPU demand (kept in trace order).
    Busiest,
}

/// One host's workloads on a common timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The host.
    pub host: String,
    /// The trace timestamp of step 0, seconds.
    pub start: i64,
    /// Trace seconds per step (the smallest gap between timestamps).
    pub step_secs: i64,
    /// The workloads, in trace order.
    pub workloads: Vec<WorkloadTrace>,
}

/// The rows of one workload as read.
#[derive(Default)]
struct Series {
    cpu: BTreeMap<i64, f64>,
    memory: BTreeMap<i64, f64>,
}

impl Scenario {
    /// Reads host `host` of the trace at `path`.
    pub fn from_trace(path: &Path, host: &str) -> Result<Scenario, LoadgenError> {
        let reader = TraceReader::open(path)?;
        Scenario::from_reader(reader, host)
    }

    /// Reads host `host` from a trace reader. Rows are grouped by host, so
    /// reading stops at the end of the host's rows. Errors: the host is not
    /// in the trace (naming some that are), or none of its workloads has
    /// CPU rows.
    pub fn from_reader<R: Read>(
        reader: TraceReader<R>,
        host: &str,
    ) -> Result<Scenario, LoadgenError> {
        let mut order: Vec<String> = Vec::new();
        let mut series: BTreeMap<String, Series> = BTreeMap::new();
        let mut others: BTreeSet<String> = BTreeSet::new();
        let mut resources: BTreeSet<Resource> = BTreeSet::new();
        let mut seen = false;
        for rec in reader {
            let rec = rec?;
            if rec.host != host {
                if seen {
                    break;
                }
                if others.len() < 1000 {
                    others.insert(rec.host);
                }
                continue;
            }
            seen = true;
            resources.insert(rec.resource);
            let s = match series.get_mut(&rec.workload) {
                Some(s) => s,
                None => {
                    order.push(rec.workload.clone());
                    series.entry(rec.workload.clone()).or_default()
                }
            };
            match rec.resource {
                Resource::Cpu => {
                    s.cpu.insert(rec.timestamp, rec.value);
                }
                Resource::Memory => {
                    s.memory.insert(rec.timestamp, rec.value);
                }
                _ => {}
            }
        }
        if !seen {
            let mut names: Vec<String> = others.into_iter().take(10).collect();
            if names.len() == 10 {
                names.push("...".into());
            }
            return Err(LoadgenError::UnknownHost {
                host: host.to_string(),
                known: names.join(", "),
            });
        }
        if series.values().all(|s| s.cpu.is_empty()) {
            return Err(LoadgenError::NoCpu {
                host: host.to_string(),
                found: resources
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let stamps: BTreeSet<i64> = series
            .values()
            .flat_map(|s| s.cpu.keys().chain(s.memory.keys()).copied())
            .collect();
        let start = *stamps.first().unwrap_or(&0);
        let end = *stamps.last().unwrap_or(&0);
        let step_secs = stamps
            .iter()
            .zip(stamps.iter().skip(1))
            .map(|(a, b)| b - a)
            .min()
            .unwrap_or(1)
            .max(1);
        let steps = usize::try_from((end - start) / step_secs + 1).unwrap_or(1);
        let index = |ts: i64| usize::try_from((ts - start) / step_secs).ok();
        let fill = |m: &BTreeMap<i64, f64>| {
            let mut v = vec![0.0; steps];
            for (&ts, &val) in m {
                if let Some(slot) = index(ts).and_then(|i| v.get_mut(i)) {
                    *slot = val;
                }
            }
            v
        };
        let workloads = order
            .into_iter()
            .filter_map(|name| {
                let s = series.remove(&name)?;
                Some(WorkloadTrace {
                    cpu: fill(&s.cpu),
                    memory: (!s.memory.is_empty()).then(|| fill(&s.memory)),
                    name,
                })
            })
            .collect();
        Ok(Scenario {
            host: host.to_string(),
            start,
            step_secs,
            workloads,
        })
    }

    /// How many steps the timeline has.
    pub fn steps(&self) -> usize {
        self.workloads
            .iter()
            .map(|w| w.cpu.len())
            .max()
            .unwrap_or(0)
    }

    /// Keeps `n` workloads, chosen by `pick` (all when `n` is at least as
    /// many as there are).
    pub fn select(mut self, n: usize, pick: Pick) -> Scenario {
        if n >= self.workloads.len() {
            return self;
        }
        match pick {
            Pick::First => self.workloads.truncate(n),
            Pick::Busiest => {
                let mut by_mean: Vec<(usize, f64)> = self
                    .workloads
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (i, w.mean_cpu()))
                    .collect();
                by_mean.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                let keep: BTreeSet<usize> = by_mean.into_iter().take(n).map(|(i, _)| i).collect();
                let mut i = 0;
                self.workloads.retain(|_| {
                    let k = keep.contains(&i);
                    i += 1;
                    k
                });
            }
        }
        self
    }

    /// Scales every CPU value by `cpu` and memory value by `memory`.
    pub fn scaled(mut self, cpu: f64, memory: f64) -> Scenario {
        for w in &mut self.workloads {
            w.cpu.iter_mut().for_each(|v| *v *= cpu);
            if let Some(m) = &mut w.memory {
                m.iter_mut().for_each(|v| *v *= memory);
            }
        }
        self
    }
}

/// A cgroup directory name for each workload name: characters other than
/// ASCII letters, digits, `-`, `_` and `.` become `_`; names that could
/// collide with cgroup files (those with a `.`, or `tasks` and the like)
/// or that are empty get a `w_` prefix; duplicates get `-2`, `-3`, ...
pub fn cgroup_names(names: &[&str]) -> Vec<String> {
    let mut used = BTreeSet::new();
    names
        .iter()
        .map(|n| {
            let mut s: String = n
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(100)
                .collect();
            if s.is_empty()
                || s.contains('.')
                || matches!(s.as_str(), "tasks" | "notify_on_release" | "release_agent")
            {
                s = format!("w_{s}");
            }
            let mut name = s.clone();
            let mut k = 2;
            while !used.insert(name.clone()) {
                name = format!("{s}-{k}");
                k += 1;
            }
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, host: &str) -> Result<Scenario, LoadgenError> {
        let r = TraceReader::from_reader("t.csv", text.as_bytes()).unwrap();
        Scenario::from_reader(r, host)
    }

    const TRACE: &str = "timestamp,host,workload,resource,value
0,h0,a,cpu,9
0,h1,a,cpu,0.5
0,h1,a,memory,1000
300,h1,a,cpu,0.25
300,h1,a,memory,2000
0,h1,b,cpu,1.5
600,h1,b,cpu,2
600,h1,c,cpu,0.1
0,h2,z,cpu,1
";

    #[test]
    fn a_host_on_a_common_timeline() {
        let s = read(TRACE, "h1").unwrap();
        assert_eq!((s.start, s.step_secs, s.steps()), (0, 300, 3));
        let names: Vec<&str> = s.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(s.workloads[0].cpu, [0.5, 0.25, 0.0]);
        assert_eq!(s.workloads[0].memory, Some(vec![1000.0, 2000.0, 0.0]));
        assert_eq!(s.workloads[1].cpu, [1.5, 0.0, 2.0]);
        assert_eq!(s.workloads[1].memory, None);
        assert_eq!(s.workloads[2].cpu, [0.0, 0.0, 0.1]);
        let busiest = s.clone().select(2, Pick::Busiest);
        let names: Vec<&str> = busiest.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let first = s.clone().select(1, Pick::First);
        assert_eq!(first.workloads.len(), 1);
        assert_eq!(s.clone().select(10, Pick::First), s);
        let scaled = s.scaled(2.0, 0.5);
        assert_eq!(scaled.workloads[0].cpu, [1.0, 0.5, 0.0]);
        assert_eq!(scaled.workloads[0].memory, Some(vec![500.0, 1000.0, 0.0]));
    }

    #[test]
    fn unknown_host_and_no_cpu_are_clear_errors() {
        let e = read(TRACE, "nope").unwrap_err().to_string();
        assert!(e.contains("host \"nope\" is not in the trace"), "{e}");
        assert!(e.contains("h0, h1, h2"), "{e}");
        let mem_only = "timestamp,host,workload,resource,value\n0,h,a,memory,5\n";
        let e = read(mem_only, "h").unwrap_err().to_string();
        assert!(e.contains("no cpu series"), "{e}");
        assert!(e.contains("memory"), "{e}");
        let bad = "timestamp,host,workload,resource,value\n0,h,a,cpu,x\n";
        let e = read(bad, "h").unwrap_err().to_string();
        assert!(e.contains("t.csv:2"), "{e}");
    }

    #[test]
    fn cgroup_names_are_safe_and_unique() {
        assert_eq!(
            cgroup_names(&["vm00", "a/b", "cpu.shares", "tasks", "", "vm00", "a_b"]),
            [
                "vm00",
                "a_b",
                "w_cpu.shares",
                "w_tasks",
                "w_",
                "vm00-2",
                "a_b-2"
            ]
        );
    }
}
