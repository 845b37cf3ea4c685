//! Reads the real traces, when they are present (under `$PRESCIENT_TRACES`,
//! or `shared/traces` next to the repository), and checks their shape
//! against `shared/traces/README.md`. Without them the tests say they
//! skipped, and pass.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use prescient_core::{Resource, SeriesKey};
use prescient_trace::TraceReader;

fn traces_dir() -> PathBuf {
    match std::env::var_os("PRESCIENT_TRACES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces"),
    }
}

struct Shape {
    rows: usize,
    /// Steps per series.
    series: BTreeMap<SeriesKey, usize>,
    hosts: BTreeSet<String>,
    step: i64,
}

impl Shape {
    fn series_of(&self, resource: Resource) -> usize {
        self.series
            .keys()
            .filter(|k| k.resource == resource)
            .count()
    }

    fn steps(&self) -> BTreeSet<usize> {
        self.series.values().copied().collect()
    }
}

/// Reads a trace whole; `None`, having said so, when it is absent.
fn read(file: &str) -> Option<Shape> {
    let path = traces_dir().join(file);
    if !path.exists() {
        // Straight to stderr: the test harness captures `println!`.
        let _ = writeln!(std::io::stderr(), "skipped: {} not found", path.display());
        return None;
    }
    let mut reader = TraceReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut shape = Shape {
        rows: 0,
        series: BTreeMap::new(),
        hosts: BTreeSet::new(),
        step: i64::MAX,
    };
    let mut last: BTreeMap<SeriesKey, i64> = BTreeMap::new();
    for record in reader.by_ref() {
        let r = record.unwrap_or_else(|e| panic!("{e}"));
        shape.rows += 1;
        if !shape.hosts.contains(&r.host) {
            shape.hosts.insert(r.host.clone());
        }
        let key = r.key();
        if let Some(prev) = last.insert(key.clone(), r.timestamp) {
            shape.step = shape.step.min(r.timestamp - prev);
        }
        *shape.series.entry(key).or_default() += 1;
    }
    assert_eq!(reader.tracked_series(), shape.series.len());
    assert_eq!(Some(reader.bytes_read()), reader.total_bytes());
    Some(shape)
}

#[test]
fn planetlab() {
    let Some(shape) = read("planetlab.csv.gz") else {
        return;
    };
    // The README says 2,194 cpu series of 27-67 VMs a host; the file holds
    // 2,146, of 27-65 VMs a host.
    assert_eq!(shape.series_of(Resource::Cpu), 2146);
    assert_eq!(shape.series.len(), 2146);
    assert_eq!(shape.hosts.len(), 50);
    assert_eq!(shape.steps(), BTreeSet::from([288]));
    assert_eq!(shape.step, 300);
    assert_eq!(shape.rows, 2146 * 288);
}

#[test]
fn gcd() {
    let Some(shape) = read("gcd.csv.gz") else {
        return;
    };
    assert_eq!(shape.series_of(Resource::Cpu), 800);
    assert_eq!(shape.series_of(Resource::Memory), 800);
    assert_eq!(shape.series.len(), 1600);
    assert_eq!(shape.hosts.len(), 40, "20 jobs to a host");
    assert_eq!(shape.steps(), BTreeSet::from([288]));
    assert_eq!(shape.step, 300);
    assert_eq!(shape.rows, 1600 * 288);
}

#[test]
fn alibaba2018() {
    let Some(shape) = read("alibaba2018.csv.gz") else {
        return;
    };
    let resources: BTreeSet<Resource> = shape.series.keys().map(|k| k.resource).collect();
    assert_eq!(
        resources,
        BTreeSet::from([
            Resource::Cpu,
            Resource::Memory,
            Resource::NetRx,
            Resource::NetTx,
            Resource::DiskIo
        ])
    );
    assert_eq!(shape.series.len(), 5);
    assert_eq!(shape.steps(), BTreeSet::from([67_242]));
    assert_eq!(shape.step, 10);
    assert_eq!(shape.rows, 5 * 67_242);
}
