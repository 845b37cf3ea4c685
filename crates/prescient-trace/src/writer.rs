use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::error::{Column, TraceError, TraceErrorKind, snippet};
use crate::{HEADER, TraceRecord, check_timestamp, check_value};

/// Rows are gathered into a buffer of about this size before they are
/// written (or compressed): one call per row would be slow.
const BUFFER: usize = 64 * 1024;

/// Writes a trace, plain or gzip, checking each row the way the reader will.
///
/// Call [`TraceWriter::finish`], which reports errors; a writer dropped
/// without it writes what it buffered and ignores errors, as `BufWriter` does.
pub struct TraceWriter<W: Write> {
    name: String,
    /// `None` once finished.
    sink: Option<Sink<W>>,
    /// Rows not yet written to the sink.
    buf: Vec<u8>,
    /// The line last written (1: the header).
    line: u64,
}

enum Sink<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
}

impl<W: Write> Sink<W> {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.write_all(bytes),
            Sink::Gzip(w) => w.write_all(bytes),
        }
    }
}

impl TraceWriter<Box<dyn Write + Send>> {
    /// Creates (or truncates) a file, gzip-compressed when the path ends in `.gz`.
    pub fn create(path: &Path) -> Result<Self, TraceError> {
        let name = path.display().to_string();
        let file = File::create(path).map_err(|source| {
            let path = path.to_path_buf();
            TraceError::at_file(&name, TraceErrorKind::Create { path, source })
        })?;
        let file: Box<dyn Write + Send> = Box::new(file);
        if path.extension().is_some_and(|e| e == "gz") {
            Self::new_gzip(name, file)
        } else {
            Self::new(name, file)
        }
    }
}

impl<W: Write> TraceWriter<W> {
    /// Writes a plain trace to `writer`, starting with the header. `name` is
    /// what errors call the output.
    pub fn new(name: impl Into<String>, writer: W) -> Result<Self, TraceError> {
        Self::start(name.into(), Sink::Plain(writer))
    }

    /// Writes a gzip-compressed trace to `writer`, starting with the header.
    pub fn new_gzip(name: impl Into<String>, writer: W) -> Result<Self, TraceError> {
        let encoder = GzEncoder::new(writer, Compression::default());
        Self::start(name.into(), Sink::Gzip(encoder))
    }

    fn start(name: String, mut sink: Sink<W>) -> Result<Self, TraceError> {
        // Written at once, so that an output that cannot be written fails here.
        let header = format!("{HEADER}\n");
        if let Err(e) = sink.write_all(header.as_bytes()) {
            return Err(TraceError::at_line(&name, 1, TraceErrorKind::Write(e)));
        }
        Ok(TraceWriter {
            name,
            sink: Some(sink),
            buf: Vec::with_capacity(BUFFER + 1024),
            line: 1,
        })
    }

    /// Writes one row. A row the reader would reject (a NaN, infinite or
    /// negative value, an empty name, a name with a line break, a timestamp
    /// out of range) is an error and is not written; the writer stays usable.
    /// The order of rows is the caller's to keep.
    pub fn write(&mut self, r: &TraceRecord) -> Result<(), TraceError> {
        let line = self.line + 1;
        let field_error = |column, kind| TraceError::at_field(&self.name, line, column, kind);
        check_timestamp(r.timestamp).map_err(|k| field_error(Column::TIMESTAMP, k))?;
        check_name(&r.host).map_err(|k| field_error(Column::HOST, k))?;
        check_name(&r.workload).map_err(|k| field_error(Column::WORKLOAD, k))?;
        check_value(r.value, || r.value.to_string()).map_err(|k| field_error(Column::VALUE, k))?;

        let start = self.buf.len();
        let written = (|| {
            write!(self.buf, "{},", r.timestamp)?;
            push_field(&mut self.buf, &r.host);
            self.buf.push(b',');
            push_field(&mut self.buf, &r.workload);
            // `{}` of an f64 is the shortest text that parses back to it.
            writeln!(self.buf, ",{},{}", r.resource, r.value)
        })();
        if let Err(e) = written {
            self.buf.truncate(start);
            return Err(TraceError::at_line(
                &self.name,
                line,
                TraceErrorKind::Write(e),
            ));
        }
        self.line = line;
        if self.buf.len() >= BUFFER {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Writes what is buffered, ends the gzip stream if any, flushes, and
    /// returns the writer.
    pub fn finish(mut self) -> Result<W, TraceError> {
        self.flush_buf()?;
        let at_end = |e| TraceError::at_line(&self.name, self.line, TraceErrorKind::Write(e));
        let mut writer = match self.sink.take() {
            Some(Sink::Plain(w)) => w,
            Some(Sink::Gzip(gz)) => gz.finish().map_err(at_end)?,
            None => {
                let e = io::Error::other("the writer is already finished");
                return Err(at_end(e));
            }
        };
        writer.flush().map_err(at_end)?;
        Ok(writer)
    }

    fn flush_buf(&mut self) -> Result<(), TraceError> {
        if let Some(sink) = &mut self.sink
            && !self.buf.is_empty()
        {
            let result = sink.write_all(&self.buf);
            self.buf.clear();
            if let Err(e) = result {
                let kind = TraceErrorKind::Write(e);
                return Err(TraceError::at_line(&self.name, self.line, kind));
            }
        }
        Ok(())
    }
}

impl<W: Write> Drop for TraceWriter<W> {
    fn drop(&mut self) {
        // Best effort, as `BufWriter` does; `finish` reports errors. A gzip
        // encoder ends its stream when dropped.
        let _ = self.flush_buf();
    }
}

impl<W: Write> std::fmt::Debug for TraceWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceWriter")
            .field("name", &self.name)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

fn check_name(name: &str) -> Result<(), TraceErrorKind> {
    if name.is_empty() {
        Err(TraceErrorKind::EmptyName)
    } else if name.contains(['\n', '\r']) {
        Err(TraceErrorKind::Unwritable {
            name: snippet(name),
        })
    } else {
        Ok(())
    }
}

/// Appends a name, quoted CSV-style when it holds a comma or a quote.
fn push_field(buf: &mut Vec<u8>, name: &str) {
    if name.contains([',', '"']) {
        buf.push(b'"');
        for part in name.split_inclusive('"') {
            buf.extend_from_slice(part.as_bytes());
            if part.ends_with('"') {
                buf.push(b'"');
            }
        }
        buf.push(b'"');
    } else {
        buf.extend_from_slice(name.as_bytes());
    }
}
