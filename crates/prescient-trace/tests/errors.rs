//! Every kind of bad input, with the full message: file, line, column, what
//! is wrong and what was expected.

use std::io::{self, Read, Write};

use flate2::Compression;
use flate2::write::GzEncoder;
use prescient_core::{Resource, UnknownResource};
use prescient_trace::{Column, HEADER, TraceError, TraceErrorKind, TraceReader, TraceRecord};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).expect("writing to a Vec");
    gz.finish().expect("writing to a Vec")
}

/// Reads everything; the records before the error, and the error.
fn read(name: &str, bytes: &[u8]) -> (Vec<TraceRecord>, Option<TraceError>) {
    let reader = match TraceReader::from_reader(name, bytes) {
        Ok(reader) => reader,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut records = Vec::new();
    for item in reader {
        match item {
            Ok(r) => records.push(r),
            Err(e) => return (records, Some(e)),
        }
    }
    (records, None)
}

/// The error reading `text` (after the header) as `t.csv`.
fn error_in(text: &str) -> TraceError {
    let input = format!("{HEADER}\n{text}");
    match read("t.csv", input.as_bytes()) {
        (_, Some(e)) => e,
        (records, None) => panic!("no error reading {text:?}, got {records:?}"),
    }
}

fn message(text: &str) -> String {
    error_in(text).to_string()
}

#[test]
fn empty_file() {
    let expected = format!("t.csv: empty file: expected the header \"{HEADER}\"");
    for input in [&b""[..], b"\n", b"\r\n\n"] {
        let (_, e) = read("t.csv", input);
        let e = e.expect("an error");
        assert_eq!(e.to_string(), expected);
        assert!(matches!(e.kind(), TraceErrorKind::Empty));
        assert_eq!((e.line(), e.column()), (None, None));
    }
    let (_, e) = read("t.csv", &gzip(b""));
    assert_eq!(e.expect("an error").to_string(), expected);
}

#[test]
fn missing_header() {
    let (_, e) = read("t.csv", b"0,h,w,cpu,1\n300,h,w,cpu,2\n");
    assert_eq!(
        e.expect("an error").to_string(),
        format!("t.csv:1: wrong or missing header: expected \"{HEADER}\", found \"0,h,w,cpu,1\"")
    );
}

#[test]
fn wrong_header() {
    let (_, e) = read("t.csv", b"time,host,workload,resource,value\n0,h,w,cpu,1\n");
    assert_eq!(
        e.expect("an error").to_string(),
        format!(
            "t.csv:1: wrong or missing header: expected \"{HEADER}\", found \"time,host,workload,resource,value\""
        )
    );
    // A long first line is shortened in the message.
    let long = "x".repeat(10_000);
    let (_, e) = read("t.csv", long.as_bytes());
    let msg = e.expect("an error").to_string();
    assert!(
        msg.ends_with(&format!("found \"{}...\"", "x".repeat(80))),
        "{msg}"
    );
}

#[test]
fn header_with_byte_order_mark_and_crlf() {
    let input = format!("\u{feff}{HEADER}\r\n0,h,w,cpu,1\r\n");
    let (records, e) = read("t.csv", input.as_bytes());
    assert!(e.is_none(), "{e:?}");
    assert_eq!(records.len(), 1);
}

#[test]
fn wrong_number_of_fields() {
    assert_eq!(
        message("0,h,w,cpu,1\n300,h,w,cpu\n"),
        format!("t.csv:3: wrong number of fields: expected 5 ({HEADER}), found 4")
    );
    assert_eq!(
        message("0,h,w,cpu,1,extra\n"),
        format!("t.csv:2: wrong number of fields: expected 5 ({HEADER}), found 6")
    );
    // A comma inside quotes is not a separator; outside it is.
    assert_eq!(
        message("0,\"h,x\",w,cpu,1\n0,h,x,w,cpu,1\n"),
        format!("t.csv:3: wrong number of fields: expected 5 ({HEADER}), found 6")
    );
}

#[test]
fn malformed_timestamp() {
    for ts in ["1.5", "", "3e2", "12a", " 300"] {
        let e = error_in(&format!("{ts},h,w,cpu,1\n"));
        assert_eq!(
            e.to_string(),
            format!(
                "t.csv:2: column 1 (timestamp): malformed number {ts:?}: expected an integer number of seconds"
            )
        );
        assert_eq!(
            e.column(),
            Some(Column {
                index: 1,
                name: "timestamp"
            })
        );
    }
}

#[test]
fn timestamp_out_of_range() {
    assert_eq!(
        message("9223372036854776,h,w,cpu,1\n"),
        "t.csv:2: column 1 (timestamp): timestamp 9223372036854776 out of range: expected at most 9223372036854775 seconds either side of 0"
    );
    assert_eq!(
        message("-9223372036854775808,h,w,cpu,1\n"),
        "t.csv:2: column 1 (timestamp): timestamp -9223372036854775808 out of range: expected at most 9223372036854775 seconds either side of 0"
    );
}

#[test]
fn malformed_value_in_gzip_file_at_line_17() {
    let mut text = format!("{HEADER}\n");
    for i in 0..15 {
        text.push_str(&format!("{},gcd000,job,cpu,0.5\n", i * 300));
    }
    text.push_str("4500,gcd000,job,cpu,0.3.1\n");
    let (records, e) = read("gcd.csv.gz", &gzip(text.as_bytes()));
    assert_eq!(records.len(), 15);
    assert_eq!(
        e.expect("an error").to_string(),
        "gcd.csv.gz:17: column 5 (value): malformed number \"0.3.1\": expected a number such as 0.25 or 4.79e+11"
    );
}

#[test]
fn malformed_value() {
    for value in ["", "abc", "1,5", "0x10", "1e"] {
        let line = format!("0,h,w,cpu,{value}\n");
        let e = error_in(&line);
        if value == "1,5" {
            assert!(matches!(e.kind(), TraceErrorKind::FieldCount { found: 6 }));
            continue;
        }
        assert_eq!(
            e.to_string(),
            format!(
                "t.csv:2: column 5 (value): malformed number {value:?}: expected a number such as 0.25 or 4.79e+11"
            )
        );
    }
}

#[test]
fn unknown_resource() {
    let core = UnknownResource { name: "gpu".into() }.to_string();
    assert_eq!(
        message("0,h,w,gpu,1\n"),
        format!("t.csv:2: column 4 (resource): {core}")
    );
    assert!(core.contains("cpu, memory, io_read"), "{core}");
    assert!(core.contains("io_read_ops, io_write_ops"), "{core}");
    // The operations resources are names a trace may use.
    let input = format!("{HEADER}\n0,h,w,io_read_ops,250\n0,h,w,io_write_ops,80\n");
    let (records, e) = read("t.csv", input.as_bytes());
    assert!(e.is_none(), "{e:?}");
    let resources: Vec<Resource> = records.iter().map(|r| r.resource).collect();
    assert_eq!(resources, [Resource::IoReadOps, Resource::IoWriteOps]);
    // Names are case-sensitive, as in prescient_core.
    assert!(matches!(
        error_in("0,h,w,CPU,1\n").kind(),
        TraceErrorKind::UnknownResource(_)
    ));
}

#[test]
fn values_that_are_not_finite_or_negative() {
    for value in ["NaN", "nan", "inf", "-inf", "infinity", "1e400"] {
        assert_eq!(
            message(&format!("0,h,w,cpu,{value}\n")),
            format!(
                "t.csv:2: column 5 (value): value {value:?} is not finite: expected a finite number >= 0"
            )
        );
    }
    for value in ["-0.5", "-1e-300", "-4.79051e+11"] {
        assert_eq!(
            message(&format!("0,h,w,cpu,{value}\n")),
            format!(
                "t.csv:2: column 5 (value): negative value {value:?}: expected a finite number >= 0"
            )
        );
    }
}

#[test]
fn exponent_forms_and_zero_are_values() {
    let input = format!("{HEADER}\n0,h,w,memory,4.79051e+11\n0,h,w,cpu,0\n0,h,w,net_rx,-0\n");
    let (records, e) = read("t.csv", input.as_bytes());
    assert!(e.is_none(), "{e:?}");
    let values: Vec<f64> = records.iter().map(|r| r.value).collect();
    assert_eq!(values, [4.79051e11, 0.0, 0.0]);
}

#[test]
fn empty_names() {
    assert_eq!(
        message("0,,w,cpu,1\n"),
        "t.csv:2: column 2 (host): empty field: expected a name"
    );
    assert_eq!(
        message("0,h,\"\",cpu,1\n"),
        "t.csv:2: column 3 (workload): empty field: expected a name"
    );
}

#[test]
fn quoted_fields() {
    let input = format!("{HEADER}\n0,\"a,b\",\"say \"\"hi\"\"\",\"cpu\",\"0.5\"\n");
    let (records, e) = read("t.csv", input.as_bytes());
    assert!(e.is_none(), "{e:?}");
    assert_eq!(records[0].host, "a,b");
    assert_eq!(records[0].workload, "say \"hi\"");
    assert_eq!(records[0].value, 0.5);
    // A quote inside an unquoted field is just a character.
    let (records, _) = read("t.csv", format!("{HEADER}\n0,a\"b,w,cpu,1\n").as_bytes());
    assert_eq!(records[0].host, "a\"b");

    assert_eq!(
        message("0,\"open,w,cpu,1\n"),
        "t.csv:2: column 2 (host): malformed quoted field: no closing quote on this line (a field cannot span lines)"
    );
    assert_eq!(
        message("0,h,\"w\"x,cpu,1\n"),
        "t.csv:2: column 3 (workload): malformed quoted field: text after the closing quote (a quote inside a quoted field is written \"\")"
    );
}

#[test]
fn time_going_back_within_a_series() {
    let text = "0,h,w,cpu,1\n0,h,w,memory,1\n300,h,w,cpu,1\n300,h,w,memory,1\n200,h,w,cpu,1\n";
    let e = error_in(text);
    assert_eq!(
        e.to_string(),
        "t.csv:6: timestamp 200 goes back in series h/w/cpu: line 4 had timestamp 300 (rows of a series must be in time order)"
    );
    assert_eq!(e.line(), Some(6));
    // Across a return to an earlier host and workload, too.
    let text = "600,h1,w,cpu,1\n0,h2,w,cpu,1\n300,h1,w,cpu,1\n";
    assert_eq!(
        message(text),
        "t.csv:4: timestamp 300 goes back in series h1/w/cpu: line 2 had timestamp 600 (rows of a series must be in time order)"
    );
}

#[test]
fn duplicate_row() {
    let text = "0,h,w,cpu,1\n0,h,w,memory,1\n0,h,w,cpu,2\n";
    assert_eq!(
        message(text),
        "t.csv:4: duplicate row: series h/w/cpu already has timestamp 0 at line 2"
    );
    // The line of the first row, not of the latest one.
    let text = "0,h,w,cpu,1\n300,h,w,cpu,1\n300,h,w,memory,1\n300,h,w,cpu,1\n";
    assert_eq!(
        message(text),
        "t.csv:5: duplicate row: series h/w/cpu already has timestamp 300 at line 3"
    );
}

#[test]
fn same_names_on_other_hosts_or_resources_are_other_series() {
    let input = format!(
        "{HEADER}\n0,h1,w,cpu,1\n0,h2,w,cpu,1\n0,h1,w,memory,1\n0,h1,v,cpu,1\n300,h1,w,cpu,1\n"
    );
    let mut reader = TraceReader::from_reader("t.csv", input.as_bytes()).expect("a header");
    let records: Result<Vec<_>, _> = reader.by_ref().collect();
    assert_eq!(records.expect("valid rows").len(), 5);
    assert_eq!(reader.tracked_series(), 4);
}

#[test]
fn invalid_utf8() {
    let mut input = format!("{HEADER}\n0,h,w,cpu,1\n").into_bytes();
    input.extend_from_slice(b"0,h\xff,w,cpu,1\n");
    let (records, e) = read("t.csv", &input);
    assert_eq!(records.len(), 1);
    assert_eq!(
        e.expect("an error").to_string(),
        "t.csv:3: invalid UTF-8 at byte 4 of the line: a trace is UTF-8 text"
    );
}

#[test]
fn line_too_long() {
    let text = format!("0,h,{},cpu,1\n", "w".repeat(70_000));
    assert_eq!(
        message(&text),
        "t.csv:2: line longer than 65536 bytes: is this a trace?"
    );
    // Also without any line break at all.
    let (_, e) = read("t.csv", "x".repeat(200_000).as_bytes());
    assert_eq!(
        e.expect("an error").to_string(),
        "t.csv:1: line longer than 65536 bytes: is this a trace?"
    );
}

#[test]
fn line_endings_and_blank_lines_are_tolerated() {
    let inputs = [
        format!("{HEADER}\n0,h,w,cpu,1\n300,h,w,cpu,2\n"),
        format!("{HEADER}\n0,h,w,cpu,1\n300,h,w,cpu,2"),
        format!("{HEADER}\r\n0,h,w,cpu,1\r\n300,h,w,cpu,2\r\n"),
        format!("{HEADER}\r\n0,h,w,cpu,1\r\n300,h,w,cpu,2"),
        format!("{HEADER}\n0,h,w,cpu,1\n\n300,h,w,cpu,2\n\n\n"),
    ];
    for input in inputs {
        let (records, e) = read("t.csv", input.as_bytes());
        assert!(e.is_none(), "{input:?}: {e:?}");
        let got: Vec<(i64, f64)> = records.iter().map(|r| (r.timestamp, r.value)).collect();
        assert_eq!(got, [(0, 1.0), (300, 2.0)], "{input:?}");
        assert!(
            records
                .iter()
                .all(|r| r.host == "h" && r.resource == Resource::Cpu)
        );
    }
}

#[test]
fn line_numbers_count_blank_lines() {
    assert_eq!(
        message("0,h,w,cpu,1\n\n\n0,h,w,cpux,1\n"),
        format!(
            "t.csv:5: column 4 (resource): {}",
            UnknownResource {
                name: "cpux".into()
            }
        )
    );
}

#[test]
fn no_records_after_the_first_error() {
    let input = format!("{HEADER}\n0,h,w,cpu,1\n0,h,w,cpu,x\n300,h,w,cpu,1\n600,h,w,cpu,1\n");
    let mut reader = TraceReader::from_reader("t.csv", input.as_bytes()).expect("a header");
    assert!(matches!(reader.next(), Some(Ok(_))));
    assert!(matches!(reader.next(), Some(Err(_))));
    assert!(reader.next().is_none());
    assert!(reader.next().is_none());
}

fn valid_trace(rows: usize) -> String {
    let mut text = format!("{HEADER}\n");
    for i in 0..rows {
        text.push_str(&format!(
            "{},host{},vm{},cpu,{}\n",
            (i / 7) * 300,
            i % 7 % 3,
            i % 7,
            i as f64 * 0.001
        ));
    }
    text
}

#[test]
fn truncated_gzip() {
    let text = valid_trace(20_000);
    let gz = gzip(text.as_bytes());
    for cut in [gz.len() / 2, gz.len() - 1, gz.len() - 9] {
        let (records, e) = read("t.csv.gz", &gz[..cut]);
        assert!(records.len() <= 20_000);
        // The line reached: the header, the whole rows, then the broken one.
        assert_eq!(
            e.expect("an error").to_string(),
            format!(
                "t.csv.gz:{}: truncated gzip stream: the file ends before the compressed data does (was the download cut short?)",
                records.len() + 2
            ),
            "cut at {cut} of {}",
            gz.len()
        );
    }
    // Cut inside the gzip header: still truncated, at the first line.
    let (_, e) = read("t.csv.gz", &gz[..5]);
    let e = e.expect("an error");
    assert!(matches!(e.kind(), TraceErrorKind::TruncatedGzip), "{e}");
    assert_eq!(e.line(), Some(1));
}

#[test]
fn corrupt_gzip() {
    let text = valid_trace(2_000);
    let mut gz = gzip(text.as_bytes());
    // The CRC-32 of the data, in the trailer.
    let crc = gz.len() - 8;
    gz[crc] ^= 0x55;
    let (records, e) = read("t.csv.gz", &gz);
    assert_eq!(records.len(), 2_000);
    let e = e.expect("an error");
    assert!(matches!(e.kind(), TraceErrorKind::CorruptGzip(_)), "{e}");
    assert!(
        e.to_string()
            .starts_with("t.csv.gz:2002: corrupt gzip stream: "),
        "{e}"
    );
    // Trailing garbage after the last member.
    let mut gz = gzip(text.as_bytes());
    gz.extend_from_slice(b"this is not gzip data at all");
    let (_, e) = read("t.csv.gz", &gz);
    let e = e.expect("an error");
    assert!(
        e.to_string()
            .starts_with("t.csv.gz:2002: corrupt gzip stream: "),
        "{e}"
    );
}

#[test]
fn concatenated_gzip_members_are_one_trace() {
    let text = valid_trace(1_000);
    let (head, tail) = text.split_at(text.len() / 2);
    let mut gz = gzip(head.as_bytes());
    gz.extend(gzip(tail.as_bytes()));
    let (records, e) = read("t.csv.gz", &gz);
    assert!(e.is_none(), "{e:?}");
    assert_eq!(records.len(), 1_000);
}

/// A reader that yields `ok` bytes of `data`, one byte per call, then fails.
#[derive(Debug)]
struct Failing {
    data: Vec<u8>,
    ok: usize,
    pos: usize,
}

impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.ok {
            return Err(io::Error::other("the disk is on fire"));
        }
        match (self.data.get(self.pos), buf.first_mut()) {
            (Some(&b), Some(slot)) => {
                *slot = b;
                self.pos += 1;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

#[test]
fn read_error() {
    let data = format!("{HEADER}\n0,h,w,cpu,1\n300,h,w,cpu,1\n").into_bytes();
    let ok = HEADER.len() + 1 + "0,h,w,cpu,1\n".len() + 3;
    let reader =
        TraceReader::from_reader("t.csv", Failing { data, ok, pos: 0 }).expect("the header reads");
    let items: Vec<_> = reader.collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    let Err(e) = &items[1] else {
        panic!("expected an error, got {:?}", items[1])
    };
    assert_eq!(e.to_string(), "t.csv:3: read error: the disk is on fire");
    // Before the header is read, the error comes from the constructor.
    let failing = Failing {
        data: Vec::new(),
        ok: 0,
        pos: 0,
    };
    let e = TraceReader::from_reader("t.csv", failing).expect_err("a read error");
    assert_eq!(e.to_string(), "t.csv:1: read error: the disk is on fire");
}

#[test]
fn gzip_is_detected_from_bytes_even_one_at_a_time() {
    let text = valid_trace(100);
    let gz = gzip(text.as_bytes());
    let ok = gz.len() + 1;
    let reader = TraceReader::from_reader(
        "plain-looking.csv",
        Failing {
            data: gz,
            ok,
            pos: 0,
        },
    )
    .expect("the header reads");
    assert!(reader.is_gzip());
    assert_eq!(reader.filter(Result::is_ok).count(), 100);
}
