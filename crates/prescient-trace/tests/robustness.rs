//! No input makes the reader panic: it returns records or a `TraceError`,
//! and nothing after the first error.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use prescient_trace::{HEADER, TraceErrorKind, TraceReader};
use proptest::prelude::*;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).expect("writing to a Vec");
    gz.finish().expect("writing to a Vec")
}

/// Reads `bytes` to the end, checking that the reader stops at its first
/// error. Returns how many records it read and the error, if any.
fn read_all(bytes: &[u8]) -> (usize, Option<TraceErrorKind>) {
    let mut reader = match TraceReader::from_reader("fuzz", bytes) {
        Ok(reader) => reader,
        Err(e) => {
            // Every error renders.
            assert!(e.to_string().starts_with("fuzz"));
            return (0, Some(e.into_kind()));
        }
    };
    let mut n = 0;
    while let Some(item) = reader.next() {
        match item {
            Ok(r) => {
                assert!(r.value.is_finite() && r.value >= 0.0, "{r:?}");
                assert!(!r.host.is_empty() && !r.workload.is_empty(), "{r:?}");
                n += 1;
            }
            Err(e) => {
                assert!(e.to_string().starts_with("fuzz:"), "{e}");
                assert!(reader.next().is_none(), "a record after an error");
                return (n, Some(e.into_kind()));
            }
        }
    }
    (n, None)
}

fn valid_trace() -> Vec<u8> {
    let mut text = format!("{HEADER}\n");
    for t in 0..40 {
        for (w, resource, value) in [
            ("vm00", "cpu", "0.032"),
            ("vm00", "memory", "4.79051e+11"),
            ("\"a,b\"", "net_rx", "17"),
        ] {
            text.push_str(&format!("{},pl000,{w},{resource},{value}\r\n", t * 300));
        }
    }
    text.into_bytes()
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    // Bytes that matter to the format, and any byte.
    let byte = prop_oneof![prop::sample::select(b",\n\r\"0.-e+".to_vec()), any::<u8>(),];
    let edit = prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, mask)| Edit::Flip(i, mask)),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ];
    prop::collection::vec(edit, 1..8)
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        if bytes.is_empty() {
            break;
        }
        match *edit {
            Edit::Flip(i, mask) => {
                let i = i % bytes.len();
                bytes[i] ^= mask;
            }
            Edit::Insert(i, b) => {
                let i = i % (bytes.len() + 1);
                bytes.insert(i, b);
            }
            Edit::Delete(i) => {
                let i = i % bytes.len();
                bytes.remove(i);
            }
        }
    }
    bytes
}

#[test]
fn the_valid_trace_is_valid() {
    let bytes = valid_trace();
    for input in [bytes.clone(), gzip(&bytes)] {
        let (n, kind) = read_all(&input);
        assert!(kind.is_none(), "{kind:?}");
        assert_eq!(n, 120);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        read_all(&bytes);
        read_all(&gzip(&bytes));
        let mut with_header = format!("{HEADER}\n").into_bytes();
        with_header.extend_from_slice(&bytes);
        read_all(&with_header);
        read_all(&gzip(&with_header));
    }

    #[test]
    fn arbitrary_bytes_after_the_gzip_magic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut input = vec![0x1f, 0x8b];
        input.extend_from_slice(&bytes);
        read_all(&input);
    }

    #[test]
    fn mutated_plain_trace(edits in edits()) {
        read_all(&apply(valid_trace(), &edits));
    }

    #[test]
    fn mutated_trace_then_gzipped(edits in edits()) {
        read_all(&gzip(&apply(valid_trace(), &edits)));
    }

    #[test]
    fn mutated_gzip_stream(edits in edits()) {
        read_all(&apply(gzip(&valid_trace()), &edits));
    }
}

#[test]
fn gzip_cut_anywhere_is_a_truncated_stream() {
    let gz = gzip(&valid_trace());
    for cut in 2..gz.len() {
        let (n, kind) = read_all(&gz[..cut]);
        // What was read before the cut is good rows; the cut is always noticed.
        assert!(n <= 120);
        assert!(
            matches!(kind, Some(TraceErrorKind::TruncatedGzip)),
            "cut at {cut} of {}: {kind:?}",
            gz.len()
        );
    }
}
