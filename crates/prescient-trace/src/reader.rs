use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Chain, Cursor, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;
use prescient_core::Resource;

use crate::error::{Column, TraceError, TraceErrorKind, snippet};
use crate::{HEADER, TraceRecord, check_timestamp, check_value};

/// Buffer of decompressed (or plain) text the lines are cut from.
const TEXT_BUFFER: usize = 256 * 1024;
/// Buffer of compressed input the decoder reads from.
const GZIP_BUFFER: usize = 64 * 1024;
/// The longest line accepted, without its line break. Real lines are tens of
/// bytes; the limit keeps memory bounded on input that is not a trace.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Streams the rows of a trace, checking each (see the crate documentation).
///
/// Yields `Ok(record)` per row, then `None` at the end. After the first
/// `Err` it yields `None`: a reader does not guess past a broken line.
pub struct TraceReader<R> {
    name: String,
    input: BufReader<Decoded<R>>,
    gzip: bool,
    total_bytes: Option<u64>,
    /// The current line, without its line break; reused across lines.
    line: Vec<u8>,
    /// 1-based number of the line in `line`.
    line_no: u64,
    done: bool,
    series: SeriesTracker,
}

impl TraceReader<Box<dyn Read + Send>> {
    /// Opens a file; gzip is detected from the first bytes (magic 1f 8b),
    /// never from the name. Reads and checks the header.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let name = path.display().to_string();
        let open_error = |source| {
            let path = path.to_path_buf();
            TraceError::at_file(&name, TraceErrorKind::Open { path, source })
        };
        let file = File::open(path).map_err(open_error)?;
        let meta = file.metadata().map_err(open_error)?;
        if meta.is_dir() {
            return Err(open_error(io::Error::new(
                io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        let total = meta.is_file().then_some(meta.len());
        let mut reader = Self::from_reader(name, Box::new(file) as Box<dyn Read + Send>)?;
        reader.total_bytes = total;
        Ok(reader)
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads a trace from `reader`, plain or gzip (detected from the first
    /// bytes). `name` is what errors call the input (usually the path as
    /// given). Reads and checks the header.
    pub fn from_reader(name: impl Into<String>, reader: R) -> Result<Self, TraceError> {
        let name = name.into();
        let mut counting = Counting {
            inner: reader,
            count: 0,
        };
        let mut head = [0u8; 2];
        let mut got = 0;
        while got < head.len() {
            match counting.read(&mut head[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TraceError::at_line(&name, 1, TraceErrorKind::Read(e))),
            }
        }
        let gzip = head[..got] == [0x1f, 0x8b];
        let raw = Cursor::new(head[..got].to_vec()).chain(counting);
        let decoded = if gzip {
            Decoded::Gzip(MultiGzDecoder::new(BufReader::with_capacity(
                GZIP_BUFFER,
                raw,
            )))
        } else {
            Decoded::Plain(raw)
        };
        let mut reader = TraceReader {
            name,
            input: BufReader::with_capacity(TEXT_BUFFER, decoded),
            gzip,
            total_bytes: None,
            line: Vec::new(),
            line_no: 0,
            done: false,
            series: SeriesTracker::default(),
        };
        reader.read_header()?;
        Ok(reader)
    }

    /// Bytes consumed from the underlying (compressed) input so far, for
    /// progress bars. Runs ahead of the rows returned by up to a buffer.
    pub fn bytes_read(&self) -> u64 {
        match self.input.get_ref() {
            Decoded::Plain(raw) => raw.get_ref().1.count,
            Decoded::Gzip(gz) => gz.get_ref().get_ref().get_ref().1.count,
        }
    }

    /// Total size of the input when known (a regular file), for progress bars.
    pub fn total_bytes(&self) -> Option<u64> {
        self.total_bytes
    }

    /// Whether the input is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// How many series the reader has seen, each of which it remembers (its
    /// last timestamp and line) to check the order of the rows.
    pub fn tracked_series(&self) -> usize {
        self.series.count
    }

    fn read_header(&mut self) -> Result<(), TraceError> {
        loop {
            if !self.next_line()? {
                return Err(TraceError::at_file(&self.name, TraceErrorKind::Empty));
            }
            if !self.line.is_empty() {
                break;
            }
        }
        // A byte-order mark, as some spreadsheet programs write.
        let line = self
            .line
            .strip_prefix("\u{feff}".as_bytes())
            .unwrap_or(&self.line);
        if line == HEADER.as_bytes() {
            Ok(())
        } else {
            let found = snippet(&String::from_utf8_lossy(line));
            Err(TraceError::at_line(
                &self.name,
                self.line_no,
                TraceErrorKind::Header { found },
            ))
        }
    }

    /// Reads the next line into `self.line`, without its line break. False at
    /// the end of the input.
    fn next_line(&mut self) -> Result<bool, TraceError> {
        self.line.clear();
        // One more than the limit, for the line break.
        let limit = MAX_LINE as u64 + 1;
        let n = match (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.line)
        {
            Ok(n) => n,
            Err(e) => {
                let kind = self.io_error_kind(e);
                return Err(TraceError::at_line(&self.name, self.line_no + 1, kind));
            }
        };
        if n == 0 {
            return Ok(false);
        }
        self.line_no += 1;
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
        } else if self.line.len() > MAX_LINE {
            let kind = TraceErrorKind::LineTooLong { max: MAX_LINE };
            return Err(TraceError::at_line(&self.name, self.line_no, kind));
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(true)
    }

    fn io_error_kind(&self, e: io::Error) -> TraceErrorKind {
        if !self.gzip {
            return TraceErrorKind::Read(e);
        }
        // The decoder reports input that ends inside a member as
        // UnexpectedEof, and damaged data as InvalidInput or InvalidData.
        match e.kind() {
            io::ErrorKind::UnexpectedEof => TraceErrorKind::TruncatedGzip,
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
                TraceErrorKind::CorruptGzip(e)
            }
            _ => TraceErrorKind::Read(e),
        }
    }

    fn next_record(&mut self) -> Option<Result<TraceRecord, TraceError>> {
        loop {
            match self.next_line() {
                Ok(false) => return None,
                Ok(true) if self.line.is_empty() => continue,
                Ok(true) => break,
                Err(e) => return Some(Err(e)),
            }
        }
        let record = match parse_line(&self.line) {
            Ok(record) => record,
            Err((column, kind)) => {
                return Some(Err(match column {
                    Some(c) => TraceError::at_field(&self.name, self.line_no, c, kind),
                    None => TraceError::at_line(&self.name, self.line_no, kind),
                }));
            }
        };
        if let Err(kind) = self.series.observe(&record, self.line_no) {
            return Some(Err(TraceError::at_line(&self.name, self.line_no, kind)));
        }
        Some(Ok(record))
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<TraceRecord, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_record();
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

// `next` keeps returning `None` after the end or an error.
impl<R: Read> std::iter::FusedIterator for TraceReader<R> {}

impl<R> std::fmt::Debug for TraceReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceReader")
            .field("name", &self.name)
            .field("gzip", &self.gzip)
            .field("line", &self.line_no)
            .field("tracked_series", &self.series.count)
            .finish_non_exhaustive()
    }
}

/// Parses one non-empty line (without its line break) into a record. The
/// error carries the column when it belongs to one.
fn parse_line(line: &[u8]) -> Result<TraceRecord, (Option<Column>, TraceErrorKind)> {
    let line = std::str::from_utf8(line).map_err(|e| {
        let byte = e.valid_up_to() + 1;
        (None, TraceErrorKind::InvalidUtf8 { byte })
    })?;
    let mut fields: [Cow<'_, str>; 5] = Default::default();
    let n = split_fields(line, &mut fields)?;
    if n != fields.len() {
        return Err((None, TraceErrorKind::FieldCount { found: n }));
    }
    let [timestamp, host, workload, resource, value] = fields;

    let at = |column| move |kind| (Some(column), kind);
    let timestamp = timestamp.parse::<i64>().map_err(|_| {
        let kind = TraceErrorKind::MalformedNumber {
            text: snippet(&timestamp),
            expected: "an integer number of seconds",
        };
        (Some(Column::TIMESTAMP), kind)
    })?;
    check_timestamp(timestamp).map_err(at(Column::TIMESTAMP))?;
    if host.is_empty() {
        return Err((Some(Column::HOST), TraceErrorKind::EmptyName));
    }
    if workload.is_empty() {
        return Err((Some(Column::WORKLOAD), TraceErrorKind::EmptyName));
    }
    let resource = resource
        .parse::<Resource>()
        .map_err(|mut e| {
            e.name = snippet(&e.name);
            TraceErrorKind::UnknownResource(e)
        })
        .map_err(at(Column::RESOURCE))?;
    let number = value.parse::<f64>().map_err(|_| {
        let kind = TraceErrorKind::MalformedNumber {
            text: snippet(&value),
            expected: "a number such as 0.25 or 4.79e+11",
        };
        (Some(Column::VALUE), kind)
    })?;
    check_value(number, || snippet(&value)).map_err(at(Column::VALUE))?;

    Ok(TraceRecord {
        timestamp,
        host: host.into_owned(),
        workload: workload.into_owned(),
        resource,
        value: number,
    })
}

/// Splits `line` at commas into `fields`. A field that starts with a quote
/// runs to its closing quote, with `""` standing for a quote inside it.
/// Returns the number of fields, which may be more than `fields` holds: the
/// extra ones are counted, not kept.
fn split_fields<'a>(
    line: &'a str,
    fields: &mut [Cow<'a, str>; 5],
) -> Result<usize, (Option<Column>, TraceErrorKind)> {
    let mut n = 0;
    let mut rest = line;
    loop {
        let (field, next) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let (field, next) = unquote(quoted)
                    .map_err(|reason| (column_at(n), TraceErrorKind::Quote { reason }))?;
                (Cow::Owned(field), next)
            }
            // A plain loop: fields are short, too short for `memchr` to pay.
            None => match rest.bytes().position(|b| b == b',') {
                Some(i) => (Cow::Borrowed(&rest[..i]), Some(&rest[i + 1..])),
                None => (Cow::Borrowed(rest), None),
            },
        };
        if let Some(slot) = fields.get_mut(n) {
            *slot = field;
        }
        n += 1;
        match next {
            Some(next) => rest = next,
            None => return Ok(n),
        }
    }
}

/// The column of 0-based field `n`, when it is one of the five.
fn column_at(n: usize) -> Option<Column> {
    [
        Column::TIMESTAMP,
        Column::HOST,
        Column::WORKLOAD,
        Column::RESOURCE,
        Column::VALUE,
    ]
    .get(n)
    .copied()
}

/// Reads a quoted field from just after its opening quote: returns its text
/// and what follows the comma after it (`None` at the end of the line).
fn unquote(s: &str) -> Result<(String, Option<&str>), &'static str> {
    let mut text = String::new();
    let mut rest = s;
    loop {
        let Some(i) = rest.find('"') else {
            return Err("no closing quote on this line (a field cannot span lines)");
        };
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(after) = after.strip_prefix('"') {
            text.push('"');
            rest = after;
        } else if after.is_empty() {
            return Ok((text, None));
        } else if let Some(after) = after.strip_prefix(',') {
            return Ok((text, Some(after)));
        } else {
            return Err(
                "text after the closing quote (a quote inside a quoted field is written \"\")",
            );
        }
    }
}

/// The last row seen of one series.
struct Last {
    resource: Resource,
    timestamp: i64,
    line: u64,
}

/// What the reader remembers per series to reject rows that go back in time
/// or repeat. Grows with the number of series, never with the rows.
#[derive(Default)]
struct SeriesTracker {
    /// host -> workload -> index into `groups`.
    index: HashMap<String, HashMap<String, usize>>,
    /// Per host and workload, the last row of each of its series (at most one
    /// per resource).
    groups: Vec<Vec<Last>>,
    /// The group of the previous row, with its names: rows come grouped by
    /// host and workload, so most rows need no hash lookup.
    current: Option<usize>,
    current_host: String,
    current_workload: String,
    count: usize,
}

impl SeriesTracker {
    fn observe(&mut self, r: &TraceRecord, line: u64) -> Result<(), TraceErrorKind> {
        let g = match self.current {
            Some(g) if self.current_host == r.host && self.current_workload == r.workload => g,
            _ => self.switch(&r.host, &r.workload),
        };
        let Some(group) = self.groups.get_mut(g) else {
            // `switch` only hands out indices of existing groups.
            return Ok(());
        };
        match group.iter_mut().find(|last| last.resource == r.resource) {
            Some(last) if r.timestamp == last.timestamp => Err(TraceErrorKind::Duplicate {
                series: r.key(),
                timestamp: r.timestamp,
                first_line: last.line,
            }),
            Some(last) if r.timestamp < last.timestamp => Err(TraceErrorKind::TimeGoesBack {
                series: r.key(),
                timestamp: r.timestamp,
                previous: last.timestamp,
                previous_line: last.line,
            }),
            Some(last) => {
                last.timestamp = r.timestamp;
                last.line = line;
                Ok(())
            }
            None => {
                group.push(Last {
                    resource: r.resource,
                    timestamp: r.timestamp,
                    line,
                });
                self.count += 1;
                Ok(())
            }
        }
    }

    /// Makes `host`/`workload` the current group, creating it if new.
    fn switch(&mut self, host: &str, workload: &str) -> usize {
        // Looked up before inserting, so that a known host costs no allocation.
        let workloads = match self.index.get_mut(host) {
            Some(workloads) => workloads,
            None => self.index.entry(host.to_string()).or_default(),
        };
        let g = match workloads.get(workload) {
            Some(&g) => g,
            None => {
                let g = self.groups.len();
                workloads.insert(workload.to_string(), g);
                self.groups.push(Vec::new());
                g
            }
        };
        self.current = Some(g);
        self.current_host.clear();
        self.current_host.push_str(host);
        self.current_workload.clear();
        self.current_workload.push_str(workload);
        g
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The raw input: the bytes read to sniff for gzip, then the rest.
type Raw<R> = Chain<Cursor<Vec<u8>>, Counting<R>>;

/// The input as text.
enum Decoded<R> {
    Plain(Raw<R>),
    Gzip(MultiGzDecoder<BufReader<Raw<R>>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(raw) => raw.read(buf),
            Decoded::Gzip(gz) => gz.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generates a trace of `rows` rows over 10 series (5 workloads on 2
    /// hosts, cpu and memory each), time-major so that every row switches
    /// workload, without ever holding it in memory.
    struct Generated {
        rows: u64,
        next_row: u64,
        pending: Vec<u8>,
        pos: usize,
        produced: u64,
    }

    impl Generated {
        fn new(rows: u64) -> Self {
            Generated {
                rows,
                next_row: 0,
                pending: format!("{HEADER}\n").into_bytes(),
                pos: 0,
                produced: 0,
            }
        }
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            use std::io::Write as _;
            while self.pos == self.pending.len() && self.next_row < self.rows {
                self.pending.clear();
                self.pos = 0;
                // Up to 64 rows at a time.
                for _ in 0..64 {
                    if self.next_row == self.rows {
                        break;
                    }
                    let i = self.next_row;
                    let (t, s) = (i / 10, i % 10);
                    let resource = if s % 2 == 0 { "cpu" } else { "memory" };
                    writeln!(
                        self.pending,
                        "{},host{},vm{},{resource},{}",
                        t * 10,
                        s / 2 % 2,
                        s / 2,
                        (i % 1000) as f64 * 0.5
                    )?;
                    self.next_row += 1;
                }
            }
            let n = (self.pending.len() - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
            self.pos += n;
            self.produced += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn memory_stays_flat_over_two_million_rows() {
        const ROWS: u64 = 2_000_000;
        let mut reader = TraceReader::from_reader("generated", Generated::new(ROWS))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut n = 0u64;
        let mut max_line_capacity = 0;
        while let Some(record) = reader.next() {
            if let Err(e) = record {
                panic!("{e}");
            }
            n += 1;
            max_line_capacity = max_line_capacity.max(reader.line.capacity());
            if n.is_multiple_of(100_000) {
                assert_eq!(reader.tracked_series(), 10, "after {n} rows");
            }
        }
        assert_eq!(n, ROWS);
        assert_eq!(reader.tracked_series(), 10);
        assert_eq!(reader.series.groups.len(), 5);
        assert!(reader.series.groups.iter().all(|g| g.len() == 2));
        // Lines are about 30 bytes; the buffer is reused, never grown past that.
        assert!(
            max_line_capacity <= 64,
            "line buffer of {max_line_capacity} bytes"
        );
        assert!(reader.input.capacity() == TEXT_BUFFER);
        let Decoded::Plain(raw) = reader.input.get_ref() else {
            panic!("plain text taken for gzip");
        };
        assert_eq!(reader.bytes_read(), raw.get_ref().1.inner.produced);
    }

    #[test]
    fn split_fields_counts_all_and_keeps_five() {
        let mut fields: [Cow<'_, str>; 5] = Default::default();
        let mut count = |line| split_fields(line, &mut fields).map_err(|e| e.0);
        assert_eq!(count("a,b,c,d,e,f,g"), Ok(7));
        assert_eq!(count(""), Ok(1));
        assert_eq!(count(","), Ok(2));
        assert_eq!(count("a,b,c,d,e,\"x"), Err(None));
        assert_eq!(count("a,\"b"), Err(Some(Column::HOST)));
        assert_eq!(split_fields("a,b,c,d,e,f,g", &mut fields).ok(), Some(7));
        assert_eq!(fields, ["a", "b", "c", "d", "e"]);
        assert_eq!(split_fields("\"\",\"x\"\"\"", &mut fields).ok(), Some(2));
        assert_eq!(fields[..2], ["", "x\""]);
    }
}
