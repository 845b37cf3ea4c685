//! One resource of a trace, loaded for replay: series grouped by host on the
//! host's time grid (the union of its series' timestamps), with `NaN` where a
//! series has no sample.

use std::collections::HashMap;
use std::path::Path;

use prescient_core::{HostId, Resource, SeriesKey, TimestampMs};
use prescient_trace::{TraceError, TraceReader};

/// Why a trace could not be loaded for replay.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The trace itself is broken (names file, line and column).
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The trace has no series of the resource asked for.
    #[error("{file}: no '{resource}' series in this trace (it has: {found})")]
    NoSuchResource {
        /// The trace.
        file: String,
        /// The resource asked for.
        resource: Resource,
        /// The resources it does have.
        found: String,
    },
}

/// One resource of a trace, ready to replay.
#[derive(Debug, Clone)]
pub struct ReplayTrace {
    /// Where it came from, for reports.
    pub name: String,
    /// The resource.
    pub resource: Resource,
    /// The step: the most common gap between a series' samples.
    pub step_ms: i64,
    /// Hosts, in the order they appear.
    pub hosts: Vec<HostTrace>,
}

/// The series of one host.
#[derive(Debug, Clone)]
pub struct HostTrace {
    /// The host.
    pub host: HostId,
    /// The host's time grid, increasing.
    pub timestamps: Vec<TimestampMs>,
    /// Its series, in the order they appear.
    pub series: Vec<SeriesTrace>,
}

/// One workload's demand on its host's grid.
#[derive(Debug, Clone)]
pub struct SeriesTrace {
    /// Host, workload, resource.
    pub key: SeriesKey,
    /// Demand per step of the host grid; `NaN` where the series has no sample.
    pub demand: Vec<f64>,
}

impl ReplayTrace {
    /// Reads `resource` from the trace at `path`. `progress` is called now
    /// and then with the bytes of the file read so far.
    pub fn load(
        path: &Path,
        resource: Resource,
        progress: &dyn Fn(u64),
    ) -> Result<Self, LoadError> {
        let reader = TraceReader::open(path)?;
        Self::from_reader(path.display().to_string(), reader, resource, progress)
    }

    /// Reads `resource` from an open trace.
    pub fn from_reader<R: std::io::Read>(
        name: String,
        mut reader: TraceReader<R>,
        resource: Resource,
        progress: &dyn Fn(u64),
    ) -> Result<Self, LoadError> {
        let mut hosts: Vec<(HostId, Vec<RawSeries>)> = Vec::new();
        let mut host_index: HashMap<String, usize> = HashMap::new();
        let mut series_index: HashMap<(usize, String), usize> = HashMap::new();
        let mut other_resources: Vec<Resource> = Vec::new();
        let mut rows = 0u64;
        while let Some(record) = reader.next() {
            let record = record?;
            rows += 1;
            if rows.is_multiple_of(65_536) {
                progress(reader.bytes_read());
            }
            if record.resource != resource {
                if !other_resources.contains(&record.resource) {
                    other_resources.push(record.resource);
                }
                continue;
            }
            let h = match host_index.get(&record.host) {
                Some(&h) => h,
                None => {
                    hosts.push((HostId(record.host.clone()), Vec::new()));
                    host_index.insert(record.host.clone(), hosts.len() - 1);
                    hosts.len() - 1
                }
            };
            let series = &mut hosts[h].1;
            let s = *series_index
                .entry((h, record.workload.clone()))
                .or_insert_with(|| {
                    series.push((record.key(), Vec::new()));
                    series.len() - 1
                });
            series[s].1.push((record.ts_ms(), record.value));
        }
        progress(reader.bytes_read());
        if hosts.is_empty() {
            other_resources.sort();
            let found: Vec<&str> = other_resources.iter().map(|r| r.as_str()).collect();
            return Err(LoadError::NoSuchResource {
                file: name,
                resource,
                found: if found.is_empty() {
                    "no rows at all".into()
                } else {
                    found.join(", ")
                },
            });
        }
        let step_ms = most_common_gap(hosts.iter().flat_map(|(_, s)| s.iter().map(|x| &x.1)));
        let hosts = hosts
            .into_iter()
            .map(|(host, series)| to_grid(host, series))
            .collect();
        Ok(ReplayTrace {
            name,
            resource,
            step_ms,
            hosts,
        })
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.hosts.iter().map(|h| h.series.len()).sum()
    }

    /// Number of (series, step) pairs that have a sample.
    pub fn sample_count(&self) -> usize {
        self.hosts
            .iter()
            .flat_map(|h| &h.series)
            .map(|s| s.demand.iter().filter(|d| !d.is_nan()).count())
            .sum()
    }

    /// First and last timestamp over all hosts.
    pub fn span(&self) -> (TimestampMs, TimestampMs) {
        let first = self.hosts.iter().filter_map(|h| h.timestamps.first()).min();
        let last = self.hosts.iter().filter_map(|h| h.timestamps.last()).max();
        (first.copied().unwrap_or(0), last.copied().unwrap_or(0))
    }
}

/// A series' samples as read, before they are put on the host's grid.
type RawSeries = (SeriesKey, Vec<(TimestampMs, f64)>);

/// The most common positive gap between consecutive samples of a series
/// (ties go to the smaller gap); 0 when no series has two samples.
fn most_common_gap<'a>(series: impl Iterator<Item = &'a Vec<(TimestampMs, f64)>>) -> i64 {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for samples in series {
        for pair in samples.windows(2) {
            *counts.entry(pair[1].0 - pair[0].0).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(gap, _)| gap)
        .unwrap_or(0)
}

fn to_grid(host: HostId, series: Vec<RawSeries>) -> HostTrace {
    let mut timestamps: Vec<TimestampMs> = series
        .iter()
        .flat_map(|(_, samples)| samples.iter().map(|s| s.0))
        .collect();
    timestamps.sort_unstable();
    timestamps.dedup();
    let series = series
        .into_iter()
        .map(|(key, samples)| {
            let mut demand = vec![f64::NAN; timestamps.len()];
            // Both are increasing (the reader refuses a series that goes back),
            // so one merge pass places every sample.
            let mut i = 0;
            for (ts, value) in samples {
                while timestamps[i] < ts {
                    i += 1;
                }
                demand[i] = value;
            }
            SeriesTrace { key, demand }
        })
        .collect();
    HostTrace {
        host,
        timestamps,
        series,
    }
}
