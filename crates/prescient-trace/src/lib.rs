//! The long CSV trace format: a streaming reader and writer.
//!
//! A trace is CSV text, plain or gzip-compressed, with the header
//!
//! ```text
//! timestamp,host,workload,resource,value
//! ```
//!
//! and one row per observation:
//!
//! - `timestamp`: integer seconds from the start of the trace;
//! - `host`: the machine whose capacity the workloads share;
//! - `workload`: a name unique within its host;
//! - `resource`: a [`Resource`] name (`cpu`, `memory`, `io_read`, `io_write`,
//!   `net_rx`, `net_tx`, `disk_io`, `io_read_ops`, `io_write_ops`);
//! - `value`: mean usage over the step that starts at `timestamp`, a finite
//!   number >= 0 (`0.25`, `4.79051e+11`).
//!
//! A series is a host, workload and resource. Rows are grouped by host and
//! workload and in time order within a series; the series of one workload may
//! interleave (`cpu,memory,cpu,memory,...`). A field may be quoted CSV-style
//! (`"a,b"`, with `""` for a quote inside), but a line break cannot appear
//! inside one. Lines end in `\n` or `\r\n`; blank lines are skipped.
//!
//! [`TraceReader`] streams [`TraceRecord`]s in constant memory, apart from the
//! last timestamp it keeps per series to reject rows that go back in time or
//! repeat. It detects gzip from the first two bytes, never from the name.
//! [`TraceWriter`] writes the same format, values in Rust's shortest
//! round-trip form, so what it writes reads back identical.
//!
//! Errors ([`TraceError`]) say where and what:
//!
//! ```text
//! gcd.csv.gz:17: column 5 (value): malformed number "0.3.1": expected a number such as 0.25 or 4.79e+11
//! gcd.csv.gz:9: wrong number of fields: expected 5 (timestamp,host,workload,resource,value), found 4
//! gcd.csv.gz: cannot open gcd.csv.gz: No such file or directory (os error 2)
//! ```

mod error;
mod reader;
mod writer;

use prescient_core::{Resource, SeriesKey, TimestampMs};

pub use error::{Column, TraceError, TraceErrorKind};
pub use reader::TraceReader;
pub use writer::TraceWriter;

/// The header line every trace starts with.
pub const HEADER: &str = "timestamp,host,workload,resource,value";

/// The largest timestamp magnitude, in seconds, whose milliseconds fit an `i64`.
pub const MAX_ABS_TIMESTAMP: i64 = i64::MAX / 1000;

/// One row of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRecord {
    /// Seconds from the start of the trace.
    pub timestamp: i64,
    /// The machine whose capacity the workloads share.
    pub host: String,
    /// The workload, unique within its host.
    pub workload: String,
    /// The resource measured.
    pub resource: Resource,
    /// Mean usage over the step that starts at `timestamp`, in the resource's unit.
    pub value: f64,
}

impl TraceRecord {
    /// The series this row belongs to.
    pub fn key(&self) -> SeriesKey {
        SeriesKey::new(self.host.as_str(), self.workload.as_str(), self.resource)
    }

    /// The timestamp in milliseconds, the unit of the store and the agent.
    /// Saturates for timestamps beyond [`MAX_ABS_TIMESTAMP`], which the reader
    /// and writer reject.
    pub fn ts_ms(&self) -> TimestampMs {
        self.timestamp.saturating_mul(1000)
    }
}

/// Checks what both the reader and the writer require of a timestamp.
fn check_timestamp(timestamp: i64) -> Result<(), TraceErrorKind> {
    if timestamp
        .checked_abs()
        .is_some_and(|t| t <= MAX_ABS_TIMESTAMP)
    {
        Ok(())
    } else {
        Err(TraceErrorKind::TimestampRange {
            timestamp,
            max: MAX_ABS_TIMESTAMP,
        })
    }
}

/// Checks what both the reader and the writer require of a value; `text` is
/// the value as it appears in the file.
fn check_value(value: f64, text: impl FnOnce() -> String) -> Result<(), TraceErrorKind> {
    if !value.is_finite() {
        Err(TraceErrorKind::NotFinite { text: text() })
    } else if value < 0.0 {
        Err(TraceErrorKind::Negative { text: text() })
    } else {
        Ok(())
    }
}
