use std::path::PathBuf;

use prescient_core::{SeriesKey, TimestampMs};

use crate::{EventId, SeriesId};

/// Everything that can go wrong with the store. Each variant names the file
/// and, where there is one, the series, event or row at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file or its directory could not be read or created.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The file exists but is not a SQLite database, or one too damaged to
    /// read its schema. Nothing was written.
    #[error("{}: not a usable SQLite database ({reason}); the file was left unchanged", .path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },

    /// The file is a SQLite database of some other program. Nothing was written.
    #[error("{}: a SQLite database, but not a Prescient store ({reason}); the file was left unchanged", .path.display())]
    NotPrescient {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        reason: String,
    },

    /// The file was written by a newer Prescient. Nothing was written.
    #[error(
        "{}: schema version {found} is newer than the newest this build of prescient knows ({supported}): upgrade prescient; the file was left unchanged",
        .path.display()
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The file's schema version.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },

    /// A migration failed; its transaction was rolled back, so the file is
    /// still at version `from`.
    #[error("{}: migrating the schema from version {from} to {to} failed (the file is still at version {from}): {source}", .path.display())]
    Migration {
        /// The file.
        path: PathBuf,
        /// The version the file is at.
        from: u32,
        /// The version whose migration failed.
        to: u32,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },

    /// SQLite refused an operation.
    #[error("{}: {op}: {source}", .path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What the store was doing.
        op: &'static str,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },

    /// A row holds something this build cannot read back.
    #[error("{}: {what} is damaged: {detail}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Which row (table and key).
        what: String,
        /// What is wrong with it.
        detail: String,
    },

    /// A sample value that is NaN or infinite. Nothing of its batch was written.
    #[error(
        "series {series} ({key}): the sample at ts {ts} ms is {value}: values must be finite; nothing of this batch was written"
    )]
    NonFinite {
        /// The series id.
        series: SeriesId,
        /// The series it names.
        key: SeriesKey,
        /// The sample's timestamp.
        ts: TimestampMs,
        /// The value.
        value: f64,
    },

    /// A series id that is not in the store (ids come from [`crate::Store::series_id`]).
    #[error("{}: no series has id {series}", .path.display())]
    UnknownSeries {
        /// The file.
        path: PathBuf,
        /// The id.
        series: SeriesId,
    },

    /// An event id that is not in the store.
    #[error("{}: no event has id {id}", .path.display())]
    UnknownEvent {
        /// The file.
        path: PathBuf,
        /// The id.
        id: EventId,
    },

    /// Cancelling an event that was already cancelled.
    #[error("{}: event {id} was already cancelled at {at} ms", .path.display())]
    EventAlreadyCancelled {
        /// The file.
        path: PathBuf,
        /// The event.
        id: EventId,
        /// When it was cancelled.
        at: TimestampMs,
    },

    /// An argument the store refuses (an empty name, a negative retention, ...).
    #[error("{}: {what}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the argument.
        what: String,
    },
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
