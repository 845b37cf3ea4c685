use std::fmt;
use std::io;
use std::path::PathBuf;

use prescient_core::{SeriesKey, UnknownResource};

use crate::HEADER;

/// What went wrong reading or writing a trace, and where.
///
/// Displays as `{file}:{line}: column {n} ({name}): {message}` for a field,
/// `{file}:{line}: {message}` for a line and `{file}: {message}` for the
/// whole file. Boxed, so that results stay small.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TraceError(Box<Inner>);

#[derive(Debug, thiserror::Error)]
#[error("{}{kind}", Location { file, line: *line, column: *column })]
struct Inner {
    file: String,
    line: Option<u64>,
    column: Option<Column>,
    kind: TraceErrorKind,
}

/// A field of a trace line: its 1-based number and its header name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// 1-based field number.
    pub index: usize,
    /// The field's name in the header.
    pub name: &'static str,
}

impl Column {
    pub(crate) const TIMESTAMP: Column = Column::new(1);
    pub(crate) const HOST: Column = Column::new(2);
    pub(crate) const WORKLOAD: Column = Column::new(3);
    pub(crate) const RESOURCE: Column = Column::new(4);
    pub(crate) const VALUE: Column = Column::new(5);

    const fn new(index: usize) -> Column {
        let name = match index {
            1 => "timestamp",
            2 => "host",
            3 => "workload",
            4 => "resource",
            _ => "value",
        };
        Column { index, name }
    }
}

/// What is wrong, with what was expected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceErrorKind {
    /// The file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The file could not be created.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The path as given.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Reading the input failed.
    #[error("read error: {0}")]
    Read(io::Error),
    /// Writing the output failed.
    #[error("write error: {0}")]
    Write(io::Error),
    /// The input holds no line at all, not even the header.
    #[error("empty file: expected the header \"{HEADER}\"")]
    Empty,
    /// The first line is not the header.
    #[error("wrong or missing header: expected \"{HEADER}\", found {found:?}")]
    Header {
        /// The first line (shortened when long).
        found: String,
    },
    /// A line with other than five fields.
    #[error("wrong number of fields: expected 5 ({HEADER}), found {found}")]
    FieldCount {
        /// How many fields the line has.
        found: usize,
    },
    /// A quoted field that is not closed on its line, or has text after its
    /// closing quote.
    #[error("malformed quoted field: {reason}")]
    Quote {
        /// What is wrong with the quotes.
        reason: &'static str,
    },
    /// A timestamp or value that does not parse.
    #[error("malformed number {text:?}: expected {expected}")]
    MalformedNumber {
        /// The field as found (shortened when long).
        text: String,
        /// What the column holds.
        expected: &'static str,
    },
    /// A timestamp whose milliseconds do not fit an `i64`.
    #[error("timestamp {timestamp} out of range: expected at most {max} seconds either side of 0")]
    TimestampRange {
        /// The timestamp, in seconds.
        timestamp: i64,
        /// The largest magnitude accepted.
        max: i64,
    },
    /// An empty host or workload.
    #[error("empty field: expected a name")]
    EmptyName,
    /// A host or workload the format cannot hold (writing only).
    #[error("name {name:?} contains a line break, which a trace line cannot hold")]
    Unwritable {
        /// The name (shortened when long).
        name: String,
    },
    /// A resource name that is not one of `prescient_core::Resource`'s.
    #[error(transparent)]
    UnknownResource(#[from] UnknownResource),
    /// A NaN or infinite value.
    #[error("value {text:?} is not finite: expected a finite number >= 0")]
    NotFinite {
        /// The value as found.
        text: String,
    },
    /// A value below zero.
    #[error("negative value {text:?}: expected a finite number >= 0")]
    Negative {
        /// The value as found.
        text: String,
    },
    /// A row earlier in time than the previous row of its series.
    #[error(
        "timestamp {timestamp} goes back in series {series}: line {previous_line} had timestamp {previous} (rows of a series must be in time order)"
    )]
    TimeGoesBack {
        /// The series.
        series: SeriesKey,
        /// This row's timestamp.
        timestamp: i64,
        /// The previous row's timestamp.
        previous: i64,
        /// The previous row's line.
        previous_line: u64,
    },
    /// A second row for the same series and timestamp.
    #[error(
        "duplicate row: series {series} already has timestamp {timestamp} at line {first_line}"
    )]
    Duplicate {
        /// The series.
        series: SeriesKey,
        /// The repeated timestamp.
        timestamp: i64,
        /// The line of the first row.
        first_line: u64,
    },
    /// The gzip input ends inside the compressed data.
    #[error(
        "truncated gzip stream: the file ends before the compressed data does (was the download cut short?)"
    )]
    TruncatedGzip,
    /// The gzip input is damaged (a bad header, bad compressed data or checksum).
    #[error("corrupt gzip stream: {0}")]
    CorruptGzip(io::Error),
    /// Bytes that are not UTF-8.
    #[error("invalid UTF-8 at byte {byte} of the line: a trace is UTF-8 text")]
    InvalidUtf8 {
        /// 1-based byte offset of the first bad byte in the line.
        byte: usize,
    },
    /// A line longer than any trace line should be (binary data, or no line breaks).
    #[error("line longer than {max} bytes: is this a trace?")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
}

impl TraceError {
    /// The input or output as its user named it (usually the path as given).
    pub fn file(&self) -> &str {
        &self.0.file
    }

    /// The 1-based line, when the error belongs to one.
    pub fn line(&self) -> Option<u64> {
        self.0.line
    }

    /// The field, when the error belongs to one.
    pub fn column(&self) -> Option<Column> {
        self.0.column
    }

    /// What is wrong.
    pub fn kind(&self) -> &TraceErrorKind {
        &self.0.kind
    }

    /// What is wrong, by value.
    pub fn into_kind(self) -> TraceErrorKind {
        self.0.kind
    }

    fn new(file: &str, line: Option<u64>, column: Option<Column>, kind: TraceErrorKind) -> Self {
        let file = file.to_string();
        TraceError(Box::new(Inner {
            file,
            line,
            column,
            kind,
        }))
    }

    pub(crate) fn at_file(file: &str, kind: TraceErrorKind) -> Self {
        Self::new(file, None, None, kind)
    }

    pub(crate) fn at_line(file: &str, line: u64, kind: TraceErrorKind) -> Self {
        Self::new(file, Some(line), None, kind)
    }

    pub(crate) fn at_field(file: &str, line: u64, column: Column, kind: TraceErrorKind) -> Self {
        Self::new(file, Some(line), Some(column), kind)
    }
}

/// The `{file}:{line}: column {n} ({name}): ` prefix, as much of it as is known.
struct Location<'a> {
    file: &'a str,
    line: Option<u64>,
    column: Option<Column>,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(c) = self.column {
            write!(f, "column {} ({}): ", c.index, c.name)?;
        }
        Ok(())
    }
}

/// `s`, cut to a length fit for an error message.
pub(crate) fn snippet(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    match s.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_string(),
    }
}
