//! Prescient's durable state: one SQLite file (WAL mode), created on first
//! use by [`Store::open`].
//!
//! # Schema (version 3)
//!
//! Every timestamp is an `INTEGER` of milliseconds ([`TimestampMs`]): since
//! the Unix epoch for live data, since the start of a trace for replayed
//! data. Every table is `STRICT`. The version is `PRAGMA user_version`; the
//! file's `PRAGMA application_id` is `0x50525343` ("PRSC"), so that a SQLite
//! file of another program is refused rather than migrated.
//!
//! | table | key | columns | what for |
//! | --- | --- | --- | --- |
//! | `workloads` | `id`; unique `(host, name)` | `host`, `name` (the [`WorkloadId`]), `selector` (text: how the collector finds it), `labels` (JSON object of string to string), `created_at`, `updated_at` | what gets an allocation |
//! | `series` | `id`; unique `(workload_id, resource)` | `workload_id` → `workloads`, `resource` ([`Resource::as_str`]) | one resource of one workload; its `id` is the [`SeriesId`] |
//! | `samples` | `(series_id, ts)`, `WITHOUT ROWID` | `value` (`REAL`, finite, in the resource's unit) | raw samples, clustered by series then time, so a range query reads one contiguous run |
//! | `counters` | `(series_id, ts, name)`, `WITHOUT ROWID` | `value` (`INTEGER` ≥ 0: a cumulative count in the counter's unit, [`Resource::counter_scale`]: CPU time in µs, bytes) | the raw counters a rate series' samples were derived from, one row per counter of the series at each reading (`name`: `""` for a cgroup's CPU time, a device, a namespace's interface, a process); kept as long as raw samples; [`Store::rates_from_counters`] derives the rates again (version 3) |
//! | `rollup_1m`, `rollup_1h` | `(series_id, ts_bucket)`, `WITHOUT ROWID` | `count`, `sum`, `min`, `max` of the raw values whose `ts` falls in `[ts_bucket, ts_bucket + 60 000)` (resp. `3 600 000`) | long history at coarser resolution |
//! | `retention` | `level` (`raw`, `1m`, `1h`) | `keep_ms` (how long rows are kept), `cutoff_ms` (the cutoff of the last [`Store::apply_retention`], `NULL` before the first) | retention policy per level |
//! | `profiles` | `id`; index `(series_id, made_at)` | `series_id` → `series`, `made_at`, `start`, `step_ms`, `body` (the [`DemandProfile`](prescient_core::DemandProfile) as JSON) | forecasts: per series the newest [`PROFILE_HISTORY`], then the newest of each 5-minute bucket for 7 days ([`Store::save_profile`]) |
//! | `plans` | `id`; indexes `(pool, made_at)`, `(made_at)` | `pool`, `made_at`, `degraded` (0/1), `body` (the [`Plan`](prescient_core::Plan) as JSON) | the solver's decisions |
//! | `events` | `id`; index `(start_ms)` | `kind`, `selector` (which workloads), `start_ms`, `end_ms` (≥ `start_ms`), `effect` (JSON), `created_by`, `created_at`, `cancelled_at` (`NULL` while active) | known future changes (a release, a sale, maintenance) the forecast should take into account |
//! | `audit` | `id` (order of appending); index `(ts)` | `ts`, `actor`, `action`, `target`, `before`, `after` (text, often JSON, `NULL` when there is none), `reason` | every change the system makes; triggers refuse `UPDATE` and `DELETE` |
//! | `model_state` | `key` | `version` (the model's own format version), `blob`, `updated_at` | forecast models' learnt state |
//!
//! `samples` and the rollups have no foreign key to `series`: the store checks
//! the series ids of a batch itself, once per series, before writing it,
//! rather than have SQLite look up `series` for every row inserted.
//!
//! # Samples and rollups
//!
//! [`Store::ingest`] writes a batch in one transaction: each new sample into
//! `samples`, and the rollups merged incrementally (the batch is sorted by
//! series and time, each bucket of the new samples aggregated in memory,
//! then UPSERTed: `count + n`, `sum + s`, `min(min, m)`, `max(max, M)`). So
//! the rollups of a bucket always equal the aggregate of the raw samples of
//! that bucket that were ever stored, and a crash leaves both or neither.
//! Duplicates are sorted out before writing (no lookup at all for samples
//! newer than the newest stored one of their series, the usual case), so
//! rows go in through multi-row `INSERT`s of 100 rows.
//!
//! Cost grows with the number of distinct series in a batch more than with
//! its size: each series touched rewrites about three pages (its newest raw,
//! 1 min and 1 h leaves) in the WAL. A live agent should hand over several
//! steps of its series per call (say 10-60 s of samples) rather than one.
//!
//! A sample whose `(series, ts)` is already stored is **ignored** (the first
//! value wins) and counted in [`IngestReport::duplicates`], so re-ingesting a
//! batch changes nothing. A sample older than the newest retention cutoff
//! (`max(cutoff_ms)`) is refused and counted in [`IngestReport::too_old`]:
//! its raw row may have been deleted already, so it could not be told apart
//! from a duplicate, and it would land in a rollup bucket that retention has
//! partly or wholly removed. The rollup cutoffs are aligned to their bucket
//! width, so retention removes whole buckets only.
//!
//! # Durability
//!
//! WAL mode with `synchronous = NORMAL`: a committed batch survives the
//! process being killed at any moment (a test does exactly that); a power
//! loss may roll back the last few commits but never corrupts the file.
//!
//! # Opening
//!
//! [`Store::open`] creates the file (and its directory) if missing, refuses a
//! file that is not a SQLite database (its 16-byte header is checked before
//! SQLite sees it), a SQLite file of another program, or a file from a newer
//! schema version, leaving such a file byte for byte as it was, and migrates
//! an older file forward in one transaction.

mod counters;
mod error;
mod records;
mod samples;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use prescient_core::{HostId, Resource, SeriesKey, TimestampMs, WorkloadId};
use rusqlite::{Connection, ErrorCode, OpenFlags};

pub use counters::{Counter, rates_from_counters};
pub use error::{Result, StoreError};
pub use records::{
    AuditEntry, Event, EventId, NewEvent, PROFILE_BUCKET_MS, PROFILE_HISTORY, PROFILE_KEEP_MS,
    PlanId, Workload,
};
pub use samples::{
    Bucket, IngestReport, Resolution, RetentionPolicy, RetentionReport, StoreSummary,
};
pub use schema::SCHEMA_VERSION;

/// How long a writer waits for another connection's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's page cache for this connection, in KiB (negative = KiB in the
/// pragma). Ingest of many series touches one leaf page per series; a cache
/// that holds them saves rereading them for every batch.
const CACHE_KIB: i64 = 64 * 1024;

/// The 16 bytes every SQLite 3 database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// A series' row id in the store: what [`Store::ingest`] and the queries take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(pub i64);

impl fmt::Display for SeriesId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An open store: one connection to one file, with the series ids cached.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    ids: HashMap<SeriesKey, SeriesId>,
    keys: HashMap<SeriesId, SeriesKey>,
    /// Newest stored ts per series (`None`: no samples), as far as this
    /// connection knows: lets ingest skip the duplicate lookup when a batch
    /// only appends. Another process may have written since; ingest copes.
    last_ts: HashMap<SeriesId, Option<TimestampMs>>,
}

impl Store {
    /// Opens the store at `path`, creating it if it does not exist, and
    /// migrates it to [`SCHEMA_VERSION`]. See the crate docs for what it refuses.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        check_file(&path)?;
        // Nothing below writes to the file before the checks through SQLite
        // pass. SQLite itself may create `-wal` and `-shm` beside a WAL-mode
        // file to read it; it removes them when the connection closes (they
        // are not ours to delete: another process may be using them).
        Store::open_checked(path)
    }

    fn open_checked(path: PathBuf) -> Result<Store> {
        let sql = |op| {
            let path = path.clone();
            move |source| StoreError::Sqlite { path, op, source }
        };
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("set busy timeout"))?;

        // Identify the file through SQLite before changing anything: the
        // header check cannot see a version committed to the WAL only.
        let identity = conn.query_row(
            "SELECT (SELECT user_version FROM pragma_user_version),
                    (SELECT application_id FROM pragma_application_id),
                    (SELECT count(*) FROM sqlite_schema)",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i32>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        );
        let (version, app_id, objects) = match identity {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
                ) =>
            {
                return Err(StoreError::NotADatabase {
                    path,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(sql("read the schema version")(e)),
        };
        let version = u32::try_from(version).unwrap_or(u32::MAX);
        check_identity(&path, version, app_id, Some(objects))?;

        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .map_err(sql("set WAL mode"))
            .and_then(|mode| {
                if mode.eq_ignore_ascii_case("wal") {
                    Ok(())
                } else {
                    Err(StoreError::Invalid {
                        path: path.clone(),
                        what: format!(
                            "SQLite would not switch to WAL mode (journal mode is {mode})"
                        ),
                    })
                }
            })?;
        // - synchronous NORMAL: in WAL mode a commit is safe from a process
        //   crash; only a power loss can roll back the last commits.
        // - wal_autocheckpoint: checkpoint when the WAL reaches 64 MiB rather
        //   than 4 MiB: ingest rewrites the same pages (each series' newest
        //   leaf) batch after batch, and a page is checkpointed once however
        //   often it was rewritten; journal_size_limit gives the space back.
        // - temp_store MEMORY: multi-row statements keep their statement
        //   journal in memory rather than in a temporary file.
        conn.execute_batch(&format!(
            "PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA cache_size = -{CACHE_KIB};
             PRAGMA wal_autocheckpoint = 16384;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA temp_store = MEMORY;"
        ))
        .map_err(sql("set pragmas"))?;
        conn.set_prepared_statement_cache_capacity(32);

        schema::migrate(&mut conn, schema::MIGRATIONS).map_err(|e| match e {
            schema::MigrateError::TooNew(found) => StoreError::TooNew {
                path: path.clone(),
                found,
                supported: SCHEMA_VERSION,
            },
            schema::MigrateError::Begin(source) => StoreError::Sqlite {
                path: path.clone(),
                op: "begin the schema check and migration",
                source,
            },
            schema::MigrateError::Failed { from, to, source } => StoreError::Migration {
                path: path.clone(),
                from,
                to,
                source,
            },
        })?;

        let mut store = Store {
            conn,
            path,
            ids: HashMap::new(),
            keys: HashMap::new(),
            last_ts: HashMap::new(),
        };
        store.load_series()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the open file (always [`SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> Result<u32> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.sql("read the schema version"))
    }

    /// The id of a series, creating its workload and series rows if needed.
    pub fn series_id(&mut self, key: &SeriesKey) -> Result<SeriesId> {
        if let Some(&id) = self.ids.get(key) {
            return Ok(id);
        }
        if key.host.0.is_empty() || key.workload.0.is_empty() {
            return Err(self.invalid(format!(
                "series {key}: the host and workload names must not be empty"
            )));
        }
        let now = now_ms();
        let err = self.sql("create a series");
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let workload = ensure_workload(&tx, &key.host, &key.workload, now).map_err(&err)?;
        tx.execute(
            "INSERT INTO series (workload_id, resource) VALUES (?1, ?2)
             ON CONFLICT (workload_id, resource) DO NOTHING",
            (workload, key.resource.as_str()),
        )
        .map_err(&err)?;
        let id: i64 = tx
            .query_row(
                "SELECT id FROM series WHERE workload_id = ?1 AND resource = ?2",
                (workload, key.resource.as_str()),
                |r| r.get(0),
            )
            .map_err(&err)?;
        tx.commit().map_err(&err)?;
        let id = SeriesId(id);
        self.ids.insert(key.clone(), id);
        self.keys.insert(id, key.clone());
        Ok(id)
    }

    /// The key of a series id, if the store has it.
    pub fn series_key(&mut self, id: SeriesId) -> Result<Option<SeriesKey>> {
        if !self.keys.contains_key(&id) {
            // Another process may have created it since we loaded the cache.
            self.load_series()?;
        }
        Ok(self.keys.get(&id).cloned())
    }

    /// Every series this build can read, by id.
    pub fn series_list(&self) -> Result<Vec<(SeriesId, SeriesKey)>> {
        Ok(self.read_series()?.into_iter().collect())
    }

    /// (Re)loads the id cache from the file.
    fn load_series(&mut self) -> Result<()> {
        let all = self.read_series()?;
        self.ids = all.iter().map(|(id, key)| (key.clone(), *id)).collect();
        self.keys = all.into_iter().collect();
        Ok(())
    }

    /// Every series, ordered by id. A series of a resource this build does
    /// not know (written by a newer build that added one) is left out.
    fn read_series(&self) -> Result<Vec<(SeriesId, SeriesKey)>> {
        let err = self.sql("read the series");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT s.id, w.host, w.name, s.resource
                 FROM series s JOIN workloads w ON w.id = s.workload_id
                 ORDER BY s.id",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, host, name, resource) = row.map_err(&err)?;
            if let Ok(resource) = resource.parse::<Resource>() {
                out.push((SeriesId(id), SeriesKey::new(host, name, resource)));
            }
        }
        Ok(out)
    }

    /// A closure turning a SQLite error into [`StoreError::Sqlite`] for `op`.
    fn sql(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
        let path = self.path.clone();
        move |source| StoreError::Sqlite {
            path: path.clone(),
            op,
            source,
        }
    }

    fn invalid(&self, what: String) -> StoreError {
        StoreError::Invalid {
            path: self.path.clone(),
            what,
        }
    }

    fn corrupt(&self, what: String, detail: impl fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }
}

/// The id of the workload row `(host, name)`, created if missing.
fn ensure_workload(
    conn: &Connection,
    host: &HostId,
    name: &WorkloadId,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.execute(
        "INSERT INTO workloads (host, name, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (host, name) DO NOTHING",
        (&host.0, &name.0, now),
    )?;
    conn.query_row(
        "SELECT id FROM workloads WHERE host = ?1 AND name = ?2",
        (&host.0, &name.0),
        |r| r.get(0),
    )
}

/// Refuses a file that is not an empty file or a SQLite database, or is
/// recognisably from a newer schema or another program, from its header
/// alone, before SQLite opens it. Creates the directory of a new file.
fn check_file(path: &Path) -> Result<()> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io)?;
            }
            return Ok(());
        }
        Err(e) => return Err(io(e)),
    };
    if file.metadata().map_err(io)?.is_dir() {
        return Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
            reason: "it is a directory".into(),
        });
    }
    let mut header = Vec::with_capacity(100);
    file.by_ref()
        .take(100)
        .read_to_end(&mut header)
        .map_err(io)?;
    if header.is_empty() {
        return Ok(());
    }
    if !header.starts_with(SQLITE_MAGIC) {
        return Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
            reason: "it does not start with the SQLite header \"SQLite format 3\\0\"".into(),
        });
    }
    if header.len() < 100 {
        return Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
            reason: format!(
                "it is {} bytes long, shorter than a SQLite header",
                header.len()
            ),
        });
    }
    // Offsets from the SQLite file format. SQLite checks these two fields on
    // opening too; checking them here means that a damaged header is never
    // taken for a version or an application id.
    let page_size = u16::from_be_bytes([header[16], header[17]]);
    if !(page_size == 1 || (page_size >= 512 && page_size.is_power_of_two()))
        || header[21..24] != [64, 32, 32]
    {
        return Err(StoreError::NotADatabase {
            path: path.to_path_buf(),
            reason: "its header is damaged (page size or payload fractions)".into(),
        });
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let version = be32(60);
    let app_id = be32(68) as i32;
    check_identity(path, version, app_id, None)
}

/// Whether a file with this `user_version` and `application_id` may be
/// opened (and migrated) as a store. `objects` is the number of tables and
/// indexes in it, when known (not from the header alone): a file with no
/// application id and version 0 is a fresh store only when it is empty.
fn check_identity(path: &Path, version: u32, app_id: i32, objects: Option<i64>) -> Result<()> {
    if app_id == schema::APPLICATION_ID {
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        return Ok(());
    }
    let reason = match objects {
        _ if app_id != 0 => format!("its application_id is {app_id:#x}"),
        _ if version != 0 => format!("it has no application_id but user_version {version}"),
        None | Some(0) => return Ok(()),
        Some(n) => format!("it has no application_id but already holds {n} tables or indexes"),
    };
    Err(StoreError::NotPrescient {
        path: path.to_path_buf(),
        reason,
    })
}

/// Wall-clock time for the store's own bookkeeping (`created_at` of rows it
/// creates on its own).
fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
