//! What the writer writes, the reader reads back identical.

use prescient_core::Resource;
use prescient_trace::{TraceError, TraceReader, TraceRecord, TraceWriter};
use proptest::prelude::*;

fn write(records: &[TraceRecord], gzip: bool) -> Result<Vec<u8>, TraceError> {
    let mut writer = if gzip {
        TraceWriter::new_gzip("out", Vec::new())?
    } else {
        TraceWriter::new("out", Vec::new())?
    };
    for r in records {
        writer.write(r)?;
    }
    writer.finish()
}

fn read(bytes: &[u8]) -> Result<Vec<TraceRecord>, TraceError> {
    TraceReader::from_reader("out", bytes)?.collect()
}

/// Bit-for-bit equality, so that 0.0 and -0.0 differ.
fn assert_identical(read: &[TraceRecord], written: &[TraceRecord]) {
    assert_eq!(read, written);
    for (a, b) in read.iter().zip(written) {
        assert_eq!(a.value.to_bits(), b.value.to_bits(), "{a:?} vs {b:?}");
    }
}

#[test]
fn awkward_values_round_trip() {
    let values = [
        0.0,
        -0.0,
        4.79051e11,
        0.1 + 0.2,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        1e300,
        123_456_789.012_345_68,
    ];
    let records: Vec<TraceRecord> = values
        .iter()
        .enumerate()
        .map(|(i, &value)| TraceRecord {
            timestamp: i as i64 * 10,
            host: "h".into(),
            workload: "ünïcödé ,\"w\"".into(),
            resource: Resource::Memory,
            value,
        })
        .collect();
    for gzip in [false, true] {
        let bytes = write(&records, gzip).expect("write");
        assert_identical(&read(&bytes).expect("read"), &records);
    }
}

fn resource() -> impl Strategy<Value = Resource> {
    prop::sample::select(Resource::ALL.to_vec())
}

fn value() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{NORMAL, POSITIVE, SUBNORMAL, ZERO};
    prop_oneof![
        POSITIVE | NORMAL | SUBNORMAL | ZERO,
        0.0..1e3f64,
        Just(-0.0),
    ]
}

fn records() -> impl Strategy<Value = Vec<TraceRecord>> {
    // Names with separators, quotes, spaces and non-ASCII, but no line break.
    let name = "[a-z0-9 ,\"'/.é日-]{1,12}";
    let row = (
        -1_000_000i64..1_000_000,
        prop::sample::select(vec![0usize, 1, 2]),
        name,
        resource(),
        value(),
    );
    (
        prop::collection::vec(name, 3),
        prop::collection::vec(row, 0..200),
    )
        .prop_map(|(hosts, rows)| {
            let mut records: Vec<TraceRecord> = rows
                .into_iter()
                .map(|(timestamp, h, workload, resource, value)| TraceRecord {
                    timestamp,
                    host: hosts[h].clone(),
                    workload,
                    resource,
                    value,
                })
                .collect();
            // Time order within a series, no repeated timestamp.
            records.sort_by(|a, b| {
                (&a.host, &a.workload, a.timestamp, a.resource).cmp(&(
                    &b.host,
                    &b.workload,
                    b.timestamp,
                    b.resource,
                ))
            });
            records.dedup_by(|a, b| a.key() == b.key() && a.timestamp == b.timestamp);
            records
        })
}

proptest! {
    #[test]
    fn random_records_round_trip(records in records(), gzip in any::<bool>()) {
        let bytes = write(&records, gzip).expect("write");
        let read = read(&bytes).expect("read");
        assert_identical(&read, &records);
    }
}
