//! The schema's migrations, in order. Version `n` of a file means that
//! `MIGRATIONS[..n]` have been applied to it; version 0 is an empty file.
//! The tables are described at the top of the crate (`lib.rs`); keep the two
//! in step (a test checks that every table is named there).
//!
//! To change the schema, append a migration: never edit one that has shipped.
//! The migration test builds a file at every earlier version, with data, and
//! opens it with this build.

use rusqlite::{Connection, TransactionBehavior};

/// `PRAGMA application_id` of a Prescient store: "PRSC" in ASCII. A file
/// with another (non-zero) id belongs to some other program.
pub(crate) const APPLICATION_ID: i32 = 0x5052_5343;

/// One step of the schema.
pub(crate) struct Migration {
    /// What it adds, for error messages and the docs.
    #[cfg_attr(not(test), allow(dead_code))]
    pub description: &'static str,
    /// SQL run in the migration's transaction.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        description: "workloads, series, raw samples, 1 min and 1 h rollups, retention",
        sql: r#"
PRAGMA application_id = 1347572547;

CREATE TABLE workloads (
    id         INTEGER PRIMARY KEY,
    host       TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    selector   TEXT    NOT NULL DEFAULT '',
    labels     TEXT    NOT NULL DEFAULT '{}'
               CHECK (json_valid(labels) AND json_type(labels) = 'object'),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (host, name)
) STRICT;

CREATE TABLE series (
    id          INTEGER PRIMARY KEY,
    workload_id INTEGER NOT NULL REFERENCES workloads (id),
    resource    TEXT    NOT NULL,
    UNIQUE (workload_id, resource)
) STRICT;

CREATE TABLE samples (
    series_id INTEGER NOT NULL,
    ts        INTEGER NOT NULL,
    value     REAL    NOT NULL,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID, STRICT;

CREATE TABLE rollup_1m (
    series_id INTEGER NOT NULL,
    ts_bucket INTEGER NOT NULL,
    count     INTEGER NOT NULL CHECK (count > 0),
    sum       REAL    NOT NULL,
    min       REAL    NOT NULL,
    max       REAL    NOT NULL,
    PRIMARY KEY (series_id, ts_bucket)
) WITHOUT ROWID, STRICT;

CREATE TABLE rollup_1h (
    series_id INTEGER NOT NULL,
    ts_bucket INTEGER NOT NULL,
    count     INTEGER NOT NULL CHECK (count > 0),
    sum       REAL    NOT NULL,
    min       REAL    NOT NULL,
    max       REAL    NOT NULL,
    PRIMARY KEY (series_id, ts_bucket)
) WITHOUT ROWID, STRICT;

CREATE TABLE retention (
    level     TEXT    PRIMARY KEY CHECK (level IN ('raw', '1m', '1h')),
    keep_ms   INTEGER NOT NULL CHECK (keep_ms > 0),
    cutoff_ms INTEGER
) STRICT;

INSERT INTO retention (level, keep_ms) VALUES
    ('raw', 172800000),     -- 2 days
    ('1m',  2592000000),    -- 30 days
    ('1h',  34560000000);   -- 400 days
"#,
    },
    Migration {
        description: "demand profiles, plans, events, audit log, model state",
        sql: r#"
CREATE TABLE profiles (
    id        INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL REFERENCES series (id),
    made_at   INTEGER NOT NULL,
    start     INTEGER NOT NULL,
    step_ms   INTEGER NOT NULL,
    body      TEXT    NOT NULL CHECK (json_valid(body))
) STRICT;
CREATE INDEX profiles_by_series ON profiles (series_id, made_at);

CREATE TABLE plans (
    id       INTEGER PRIMARY KEY,
    pool     TEXT    NOT NULL,
    made_at  INTEGER NOT NULL,
    degraded INTEGER NOT NULL CHECK (degraded IN (0, 1)),
    body     TEXT    NOT NULL CHECK (json_valid(body))
) STRICT;
CREATE INDEX plans_by_pool ON plans (pool, made_at);
CREATE INDEX plans_by_time ON plans (made_at);

CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL,
    selector     TEXT    NOT NULL,
    start_ms     INTEGER NOT NULL,
    end_ms       INTEGER NOT NULL,
    effect       TEXT    NOT NULL CHECK (json_valid(effect)),
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    cancelled_at INTEGER,
    CHECK (end_ms >= start_ms)
) STRICT;
CREATE INDEX events_by_start ON events (start_ms);

CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    ts     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT    NOT NULL,
    before TEXT,
    after  TEXT,
    reason TEXT    NOT NULL
) STRICT;
CREATE INDEX audit_by_ts ON audit (ts);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TABLE model_state (
    key        TEXT    PRIMARY KEY,
    version    INTEGER NOT NULL,
    blob       BLOB    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
"#,
    },
    Migration {
        description: "raw counters, so that rates can be derived again",
        sql: r#"
CREATE TABLE counters (
    series_id INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    ts        INTEGER NOT NULL,
    value     INTEGER NOT NULL CHECK (value >= 0),
    PRIMARY KEY (series_id, ts, name)
) WITHOUT ROWID, STRICT;
"#,
    },
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Why [`migrate`] stopped.
#[derive(Debug)]
pub(crate) enum MigrateError {
    /// The file is at a version newer than `migrations` reach.
    TooNew(u32),
    /// The transaction could not start, or the version could not be read
    /// (say, another process held the write lock past the busy timeout).
    Begin(rusqlite::Error),
    /// Migration to `to` failed; the transaction was rolled back.
    Failed {
        from: u32,
        to: u32,
        source: rusqlite::Error,
    },
}

/// Brings the file to `migrations.len()` in one IMMEDIATE transaction (so two
/// processes opening the same old file cannot both migrate it): either every
/// pending migration is applied, or none is. Returns the version it found.
pub(crate) fn migrate(
    conn: &mut Connection,
    migrations: &[Migration],
) -> Result<u32, MigrateError> {
    let target = migrations.len() as u32;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(MigrateError::Begin)?;
    // Read the version inside the transaction: another process may have
    // migrated the file since we looked.
    let found: u32 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(MigrateError::Begin)?;
    if found > target {
        return Err(MigrateError::TooNew(found));
    }
    if found == target {
        return Ok(found);
    }
    for (i, m) in migrations.iter().enumerate().skip(found as usize) {
        let to = i as u32 + 1;
        tx.execute_batch(m.sql)
            .map_err(|source| MigrateError::Failed {
                from: found,
                to,
                source,
            })?;
        tx.pragma_update(None, "user_version", to)
            .map_err(|source| MigrateError::Failed {
                from: found,
                to,
                source,
            })?;
    }
    tx.commit().map_err(|source| MigrateError::Failed {
        from: found,
        to: target,
        source,
    })?;
    Ok(found)
}
