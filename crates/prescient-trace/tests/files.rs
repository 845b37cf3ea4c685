//! Reading and writing real files, and the writer's checks.

use std::fs;
use std::io::{self, Write};

use prescient_core::Resource;
use prescient_trace::{HEADER, TraceError, TraceErrorKind, TraceReader, TraceRecord, TraceWriter};

fn record(
    timestamp: i64,
    host: &str,
    workload: &str,
    resource: Resource,
    value: f64,
) -> TraceRecord {
    TraceRecord {
        timestamp,
        host: host.into(),
        workload: workload.into(),
        resource,
        value,
    }
}

fn sample() -> Vec<TraceRecord> {
    let mut records = Vec::new();
    for t in 0..50 {
        for (w, resource) in [
            ("vm,1", Resource::Cpu),
            ("vm,1", Resource::Memory),
            ("vm \"2\"", Resource::Cpu),
        ] {
            let value = if resource == Resource::Memory {
                4.79051e11 + t as f64
            } else {
                0.1 * t as f64
            };
            records.push(record(t * 300, "pl000", w, resource, value));
        }
    }
    records
}

fn write_file(path: &std::path::Path, records: &[TraceRecord]) {
    let mut writer = TraceWriter::create(path).expect("create");
    for r in records {
        writer.write(r).expect("write");
    }
    writer.finish().expect("finish");
}

fn read_file(path: &std::path::Path) -> Result<Vec<TraceRecord>, TraceError> {
    TraceReader::open(path)?.collect()
}

#[test]
fn create_and_open_plain_and_gzip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = sample();
    for name in ["t.csv", "t.csv.gz"] {
        let path = dir.path().join(name);
        write_file(&path, &records);
        let bytes = fs::read(&path).expect("read back");
        assert_eq!(
            bytes.starts_with(&[0x1f, 0x8b]),
            name.ends_with(".gz"),
            "{name}"
        );

        let mut reader = TraceReader::open(&path).expect("open");
        assert_eq!(reader.is_gzip(), name.ends_with(".gz"));
        assert_eq!(reader.total_bytes(), Some(bytes.len() as u64));
        let read: Result<Vec<_>, _> = reader.by_ref().collect();
        assert_eq!(read.expect("valid"), records, "{name}");
        assert_eq!(reader.bytes_read(), bytes.len() as u64);
        assert_eq!(reader.tracked_series(), 3);
    }
}

#[test]
fn gzip_is_detected_from_content_not_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = sample();
    let gz = dir.path().join("t.csv.gz");
    write_file(&gz, &records);
    let misnamed_gz = dir.path().join("really-gzip.csv");
    fs::rename(&gz, &misnamed_gz).expect("rename");
    assert_eq!(read_file(&misnamed_gz).expect("valid"), records);

    let plain = dir.path().join("t.csv");
    write_file(&plain, &records);
    let misnamed_plain = dir.path().join("really-plain.csv.gz");
    fs::rename(&plain, &misnamed_plain).expect("rename");
    assert_eq!(read_file(&misnamed_plain).expect("valid"), records);
}

#[test]
fn open_errors_name_the_path_and_the_os_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.csv.gz");
    let e = TraceReader::open(&missing).expect_err("missing");
    let p = missing.display();
    assert_eq!(
        e.to_string(),
        format!("{p}: cannot open {p}: No such file or directory (os error 2)")
    );
    assert!(matches!(e.kind(), TraceErrorKind::Open { .. }));

    let e = TraceReader::open(dir.path()).expect_err("a directory");
    let p = dir.path().display();
    assert_eq!(
        e.to_string(),
        format!("{p}: cannot open {p}: is a directory")
    );

    let e = TraceWriter::create(&dir.path().join("no/such/dir/t.csv")).expect_err("no dir");
    let p = dir.path().join("no/such/dir/t.csv");
    let p = p.display();
    assert_eq!(
        e.to_string(),
        format!("{p}: cannot create {p}: No such file or directory (os error 2)")
    );
}

#[test]
fn errors_in_a_file_name_it_as_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.csv");
    fs::write(&path, format!("{HEADER}\n0,h,w,cpu,1\n300,h,w,cpu,0.3.1\n")).expect("write");
    let e = read_file(&path).expect_err("bad value");
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3: column 5 (value): malformed number \"0.3.1\": expected a number such as 0.25 or 4.79e+11",
            path.display()
        )
    );
}

#[test]
fn writer_rejects_rows_the_reader_would_and_stays_usable() {
    let mut writer = TraceWriter::new("out.csv", Vec::new()).expect("header");
    writer
        .write(&record(0, "h", "w", Resource::Cpu, 1.0))
        .expect("valid");
    let bad = [
        (
            record(300, "h", "w", Resource::Cpu, f64::NAN),
            "out.csv:3: column 5 (value): value \"NaN\" is not finite: expected a finite number >= 0",
        ),
        (
            record(300, "h", "w", Resource::Cpu, f64::INFINITY),
            "out.csv:3: column 5 (value): value \"inf\" is not finite: expected a finite number >= 0",
        ),
        (
            record(300, "h", "w", Resource::Cpu, -0.5),
            "out.csv:3: column 5 (value): negative value \"-0.5\": expected a finite number >= 0",
        ),
        (
            record(300, "", "w", Resource::Cpu, 1.0),
            "out.csv:3: column 2 (host): empty field: expected a name",
        ),
        (
            record(300, "h", "a\nb", Resource::Cpu, 1.0),
            "out.csv:3: column 3 (workload): name \"a\\nb\" contains a line break, which a trace line cannot hold",
        ),
        (
            record(i64::MAX, "h", "w", Resource::Cpu, 1.0),
            "out.csv:3: column 1 (timestamp): timestamp 9223372036854775807 out of range: expected at most 9223372036854775 seconds either side of 0",
        ),
    ];
    for (r, expected) in bad {
        assert_eq!(
            writer.write(&r).expect_err("rejected").to_string(),
            expected
        );
    }
    writer
        .write(&record(300, "h", "w", Resource::Cpu, 2.0))
        .expect("valid");
    let bytes = writer.finish().expect("finish");
    assert_eq!(
        String::from_utf8(bytes).expect("utf-8"),
        format!("{HEADER}\n0,h,w,cpu,1\n300,h,w,cpu,2\n")
    );
}

#[test]
fn writer_quotes_names_with_commas_and_quotes() {
    let mut writer = TraceWriter::new("out.csv", Vec::new()).expect("header");
    writer
        .write(&record(0, "a,b", "say \"hi\"", Resource::NetRx, 0.25))
        .expect("valid");
    let bytes = writer.finish().expect("finish");
    assert_eq!(
        String::from_utf8(bytes).expect("utf-8"),
        format!("{HEADER}\n0,\"a,b\",\"say \"\"hi\"\"\",net_rx,0.25\n")
    );
}

/// Accepts `limit` bytes, then fails.
#[derive(Debug)]
struct Full {
    limit: usize,
    written: usize,
}

impl Write for Full {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written >= self.limit {
            return Err(io::Error::other("no space left on device"));
        }
        let n = buf.len().min(self.limit - self.written);
        self.written += n;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn write_errors_are_reported() {
    let full = Full {
        limit: 10,
        written: 0,
    };
    let e = TraceWriter::new("out.csv", full).expect_err("the header does not fit");
    assert_eq!(
        e.to_string(),
        "out.csv:1: write error: no space left on device"
    );

    let full = Full {
        limit: 100_000,
        written: 0,
    };
    let mut writer = TraceWriter::new("out.csv", full).expect("header");
    let mut error = None;
    for t in 0..100_000 {
        if let Err(e) = writer.write(&record(t, "h", "w", Resource::Cpu, 1.0)) {
            error = Some(e);
            break;
        }
    }
    let e = match error {
        Some(e) => e,
        None => writer.finish().expect_err("the rows do not fit"),
    };
    assert!(matches!(e.kind(), TraceErrorKind::Write(_)), "{e}");
    assert!(e.to_string().starts_with("out.csv:"), "{e}");
}

#[test]
fn dropped_writer_writes_what_it_buffered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = sample();
    for name in ["t.csv", "t.csv.gz"] {
        let path = dir.path().join(name);
        let mut writer = TraceWriter::create(&path).expect("create");
        for r in &records {
            writer.write(r).expect("write");
        }
        drop(writer);
        assert_eq!(read_file(&path).expect("valid"), records, "{name}");
    }
}

#[test]
fn file_readers_and_writers_can_move_to_other_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<TraceReader<Box<dyn std::io::Read + Send>>>();
    assert_send::<TraceWriter<Box<dyn Write + Send>>>();
    assert_send::<TraceError>();
}
