//! Samples: ingest, rollups, range queries and retention.

use prescient_core::{Sample, TimestampMs};
use std::sync::OnceLock;

use rusqlite::{Statement, TransactionBehavior};

use crate::{Result, SeriesId, Store, StoreError};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// Rows per multi-row `INSERT` into `samples` (3 parameters each). One
/// statement per row spends most of its time starting and finishing the
/// statement; a hundred rows a statement roughly halves the cost of a row.
///
/// The insert is `OR ROLLBACK`: ingest has already removed duplicates, so a
/// conflict can only come from a stale cache (see `write_batch`), and
/// rolling back the whole transaction is what ingest does then anyway. It
/// also spares SQLite a statement journal, which a multi-row statement that
/// may abort half-way must keep of every page it touches.
const RAW_ROWS: usize = 100;
/// Rows per multi-row rollup UPSERT (6 parameters each).
const ROLLUP_ROWS: usize = 50;

fn insert_raw_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?)"; rows].join(", ");
    format!("INSERT OR ROLLBACK INTO samples (series_id, ts, value) VALUES {values}")
}

/// Merging buckets' aggregates into what is stored. `min(a, b)` with two
/// arguments is SQLite's scalar min.
fn upsert_sql(table: &str, rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO {table} (series_id, ts_bucket, count, sum, min, max) VALUES {values}
         ON CONFLICT (series_id, ts_bucket) DO UPDATE SET
             count = count + excluded.count,
             sum = sum + excluded.sum,
             min = min(min, excluded.min),
             max = max(max, excluded.max)"
    )
}

/// The SQL of the statements ingest uses, built once.
struct IngestSql {
    raw_many: String,
    raw_one: String,
    up_many: [String; 2],
    up_one: [String; 2],
}

fn ingest_sql() -> &'static IngestSql {
    static SQL: OnceLock<IngestSql> = OnceLock::new();
    SQL.get_or_init(|| IngestSql {
        raw_many: insert_raw_sql(RAW_ROWS),
        raw_one: insert_raw_sql(1),
        up_many: [
            upsert_sql("rollup_1m", ROLLUP_ROWS),
            upsert_sql("rollup_1h", ROLLUP_ROWS),
        ],
        up_one: [upsert_sql("rollup_1m", 1), upsert_sql("rollup_1h", 1)],
    })
}

/// What [`Store::ingest`] did with a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Samples written.
    pub inserted: u64,
    /// Samples whose `(series, ts)` was already stored (or came earlier in
    /// the same batch): ignored, the first value wins.
    pub duplicates: u64,
    /// Samples older than the newest retention cutoff: refused.
    pub too_old: u64,
}

/// The resolution of a range query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The samples as ingested.
    Raw,
    /// One-minute rollups.
    Minute,
    /// One-hour rollups.
    Hour,
}

impl Resolution {
    /// Bucket width in milliseconds (`None` for raw).
    pub fn bucket_ms(self) -> Option<i64> {
        match self {
            Resolution::Raw => None,
            Resolution::Minute => Some(MINUTE_MS),
            Resolution::Hour => Some(HOUR_MS),
        }
    }
}

/// One bucket of a range query: a rollup row, or one raw sample (count 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Start of the bucket (the sample's ts at raw resolution).
    pub ts: TimestampMs,
    /// Raw samples in the bucket.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Their minimum.
    pub min: f64,
    /// Their maximum.
    pub max: f64,
}

/// How long each level of samples is kept, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionPolicy {
    /// Raw samples (default 2 days).
    pub raw_ms: i64,
    /// One-minute rollups (default 30 days).
    pub minute_ms: i64,
    /// One-hour rollups (default 400 days).
    pub hour_ms: i64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        const DAY: i64 = 86_400_000;
        RetentionPolicy {
            raw_ms: 2 * DAY,
            minute_ms: 30 * DAY,
            hour_ms: 400 * DAY,
        }
    }
}

/// Rows deleted by [`Store::apply_retention`], per level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Raw samples.
    pub raw: u64,
    /// Raw counter readings (kept as long as raw samples).
    pub counters: u64,
    /// One-minute rollup rows.
    pub minute: u64,
    /// One-hour rollup rows.
    pub hour: u64,
}

/// What the store holds, in brief.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSummary {
    /// Number of series.
    pub series: u64,
    /// Number of raw samples.
    pub samples: u64,
    /// Oldest raw sample.
    pub first_ts: Option<TimestampMs>,
    /// Newest raw sample.
    pub last_ts: Option<TimestampMs>,
}

/// The aggregate of the new samples of one rollup bucket.
#[derive(Debug, Clone, Copy)]
struct Agg {
    series: i64,
    bucket: i64,
    count: i64,
    sum: f64,
    min: f64,
    max: f64,
}

/// Aggregates `rows` (sorted by series, then ts) into buckets of `width`.
fn aggregate(rows: &[(i64, i64, f64)], width: i64) -> Vec<Agg> {
    let mut out: Vec<Agg> = Vec::new();
    for &(series, ts, value) in rows {
        let bucket = bucket_of(ts, width);
        match out.last_mut() {
            Some(a) if a.series == series && a.bucket == bucket => {
                a.count += 1;
                a.sum += value;
                a.min = a.min.min(value);
                a.max = a.max.max(value);
            }
            _ => out.push(Agg {
                series,
                bucket,
                count: 1,
                sum: value,
                min: value,
                max: value,
            }),
        }
    }
    out
}

/// Runs `many` (a statement of `per` rows of `width` parameters) over whole
/// chunks of `items` and `one` (a single row) over the rest.
fn execute_rows<T>(
    many: &mut Statement<'_>,
    one: &mut Statement<'_>,
    per: usize,
    items: &[T],
    bind: impl Fn(&mut Statement<'_>, usize, &T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut chunks = items.chunks_exact(per);
    for chunk in &mut chunks {
        for (i, item) in chunk.iter().enumerate() {
            bind(many, i, item)?;
        }
        many.raw_execute()?;
    }
    for item in chunks.remainder() {
        bind(one, 0, item)?;
        one.raw_execute()?;
    }
    Ok(())
}

/// Start of the bucket of width `width` that holds `ts` (also for ts < 0).
fn bucket_of(ts: i64, width: i64) -> i64 {
    // The bucket of a ts within `width` of i64::MIN starts below i64::MIN:
    // clamp it rather than overflow.
    ts.div_euclid(width).checked_mul(width).unwrap_or(i64::MIN)
}

impl Store {
    /// Writes a batch of samples in one transaction, and merges them into the
    /// rollups. The batch may be in any order and hold any number of series.
    ///
    /// Refused whole, before anything is written: a series id the store does
    /// not have, a value that is NaN or infinite. Within the batch, samples
    /// already stored are ignored and samples older than the last retention
    /// cutoff refused (see the crate docs); both are counted in the report.
    pub fn ingest(&mut self, batch: &[(SeriesId, Sample)]) -> Result<IngestReport> {
        // Sorting by (series, ts) makes the B-tree inserts local and each
        // rollup bucket contiguous. Stable, so within a batch the first of two
        // samples with the same (series, ts) is the one kept.
        let mut sorted = batch.to_vec();
        sorted.sort_by_key(|(id, s)| (id.0, s.ts));

        let mut last = None;
        for &(id, s) in &sorted {
            if last != Some(id) {
                if !self.keys.contains_key(&id) {
                    // Another process may have created it since we loaded the cache.
                    self.load_series()?;
                }
                last = Some(id);
            }
            let Some(key) = self.keys.get(&id) else {
                return Err(StoreError::UnknownSeries {
                    path: self.path.clone(),
                    series: id,
                });
            };
            if !s.value.is_finite() {
                return Err(StoreError::NonFinite {
                    series: id,
                    key: key.clone(),
                    ts: s.ts,
                    value: s.value,
                });
            }
        }

        match self.write_batch(&sorted, false) {
            // A stale cache of the newest stored ts (another process wrote
            // to the series since) let a duplicate through to the insert,
            // which the primary key refused; the transaction was rolled
            // back. Do it again, this time looking up every series.
            Err(StoreError::Sqlite { source, .. })
                if source.sqlite_error().map(|e| e.extended_code)
                    == Some(rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) =>
            {
                self.last_ts.clear();
                self.write_batch(&sorted, true)
            }
            other => other,
        }
    }

    /// Writes a batch sorted by (series, ts), in one transaction.
    ///
    /// Duplicates are found before anything is written, so that the inserts
    /// can be plain multi-row statements: for each series of the batch, the
    /// samples newer than the newest stored one are new (the common case of
    /// appending: no lookup), and the others are looked up in one range
    /// query. The newest stored ts per series is cached in `last_ts`; with
    /// `probe_all` the cache is not trusted.
    fn write_batch(
        &mut self,
        sorted: &[(SeriesId, Sample)],
        probe_all: bool,
    ) -> Result<IngestReport> {
        let err = self.sql("ingest");
        let sql = ingest_sql();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut report = IngestReport::default();
        let mut fresh: Vec<(i64, i64, f64)> = Vec::with_capacity(sorted.len());
        let mut newest: Vec<(SeriesId, Option<i64>)> = Vec::new();
        {
            let floor: Option<i64> = tx
                .prepare_cached("SELECT max(cutoff_ms) FROM retention")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(&err)?;
            let floor = floor.unwrap_or(i64::MIN);
            let mut max_stmt = tx
                .prepare_cached("SELECT max(ts) FROM samples WHERE series_id = ?1")
                .map_err(&err)?;
            let mut probe = tx
                .prepare_cached(
                    "SELECT ts FROM samples WHERE series_id = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts",
                )
                .map_err(&err)?;
            let mut existing: Vec<i64> = Vec::new();
            for run in sorted.chunk_by(|a, b| a.0 == b.0) {
                let id = run[0].0;
                // Sorted by ts: the samples below the floor are a prefix.
                let old = run.partition_point(|(_, s)| s.ts < floor);
                report.too_old += old as u64;
                let run = &run[old..];
                let (Some(first), Some(last)) = (run.first(), run.last()) else {
                    continue;
                };
                let stored_max = match self.last_ts.get(&id) {
                    Some(&m) if !probe_all => m,
                    _ => max_stmt
                        .query_row([id.0], |r| r.get::<_, Option<i64>>(0))
                        .map_err(&err)?,
                };
                existing.clear();
                if probe_all || stored_max.is_some_and(|m| first.1.ts <= m) {
                    let rows = probe
                        .query_map((id.0, first.1.ts, last.1.ts), |r| r.get(0))
                        .map_err(&err)?;
                    for ts in rows {
                        existing.push(ts.map_err(&err)?);
                    }
                }
                // Merge the run with the stored timestamps; a repeat within
                // the batch is a duplicate too (the first one is kept).
                let (mut e, mut prev) = (0, None);
                for &(_, s) in run {
                    if prev == Some(s.ts) {
                        report.duplicates += 1;
                        continue;
                    }
                    prev = Some(s.ts);
                    while e < existing.len() && existing[e] < s.ts {
                        e += 1;
                    }
                    if existing.get(e) == Some(&s.ts) {
                        report.duplicates += 1;
                        continue;
                    }
                    fresh.push((id.0, s.ts, s.value));
                }
                newest.push((id, stored_max.max(Some(last.1.ts))));
            }
            report.inserted = fresh.len() as u64;

            let mut many = tx.prepare_cached(&sql.raw_many).map_err(&err)?;
            let mut one = tx.prepare_cached(&sql.raw_one).map_err(&err)?;
            execute_rows(
                &mut many,
                &mut one,
                RAW_ROWS,
                &fresh,
                |st, i, &(id, ts, v)| {
                    st.raw_bind_parameter(3 * i + 1, id)?;
                    st.raw_bind_parameter(3 * i + 2, ts)?;
                    st.raw_bind_parameter(3 * i + 3, v)
                },
            )
            .map_err(&err)?;
            drop((many, one));

            for (level, width) in [MINUTE_MS, HOUR_MS].into_iter().enumerate() {
                let aggs = aggregate(&fresh, width);
                let mut many = tx.prepare_cached(&sql.up_many[level]).map_err(&err)?;
                let mut one = tx.prepare_cached(&sql.up_one[level]).map_err(&err)?;
                execute_rows(&mut many, &mut one, ROLLUP_ROWS, &aggs, |st, i, a| {
                    st.raw_bind_parameter(6 * i + 1, a.series)?;
                    st.raw_bind_parameter(6 * i + 2, a.bucket)?;
                    st.raw_bind_parameter(6 * i + 3, a.count)?;
                    st.raw_bind_parameter(6 * i + 4, a.sum)?;
                    st.raw_bind_parameter(6 * i + 5, a.min)?;
                    st.raw_bind_parameter(6 * i + 6, a.max)
                })
                .map_err(&err)?;
            }
        }
        tx.commit().map_err(&err)?;
        // Only now that the batch is in: a rolled-back batch must not leave
        // the cache claiming rows that are not there.
        for (id, max) in newest {
            self.last_ts.insert(id, max);
        }
        Ok(report)
    }

    /// The samples of `series` in `[from, to)`. At a rollup resolution: one
    /// sample per bucket that overlaps the window, at the bucket's start,
    /// holding the mean of its raw values.
    pub fn range(
        &self,
        series: SeriesId,
        from: TimestampMs,
        to: TimestampMs,
        resolution: Resolution,
    ) -> Result<Vec<Sample>> {
        if resolution != Resolution::Raw {
            return Ok(self
                .range_buckets(series, from, to, resolution)?
                .into_iter()
                .map(|b| Sample::new(b.ts, b.mean))
                .collect());
        }
        let read = || -> rusqlite::Result<Vec<Sample>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ts, value FROM samples
                 WHERE series_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts",
            )?;
            let mut rows = stmt.query((series.0, from, to))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(Sample::new(r.get(0)?, r.get(1)?));
            }
            Ok(out)
        };
        read().map_err(self.sql("range query"))
    }

    /// Like [`Store::range`], with the count, mean, minimum and maximum of
    /// each bucket (at raw resolution, each sample is a bucket of one).
    pub fn range_buckets(
        &self,
        series: SeriesId,
        from: TimestampMs,
        to: TimestampMs,
        resolution: Resolution,
    ) -> Result<Vec<Bucket>> {
        if resolution == Resolution::Raw {
            return Ok(self
                .range(series, from, to, resolution)?
                .into_iter()
                .map(|s| Bucket {
                    ts: s.ts,
                    count: 1,
                    mean: s.value,
                    min: s.value,
                    max: s.value,
                })
                .collect());
        }
        let err = self.sql("range query");
        let read = || -> rusqlite::Result<Vec<Bucket>> {
            let (sql, width) = rollup_query(resolution);
            let mut stmt = self.conn.prepare_cached(sql)?;
            let mut rows = stmt.query((series.0, bucket_of(from, width), to))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let count: i64 = r.get(1)?;
                let sum: f64 = r.get(2)?;
                out.push(Bucket {
                    ts: r.get(0)?,
                    count: count.max(0) as u64,
                    mean: sum / count as f64,
                    min: r.get(3)?,
                    max: r.get(4)?,
                });
            }
            Ok(out)
        };
        read().map_err(err)
    }

    /// The retention policy stored in the file.
    pub fn retention(&self) -> Result<RetentionPolicy> {
        let err = self.sql("read the retention policy");
        let mut policy = RetentionPolicy::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT level, keep_ms FROM retention")
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(&err)?;
        for row in rows {
            let (level, keep) = row.map_err(&err)?;
            match level.as_str() {
                "raw" => policy.raw_ms = keep,
                "1m" => policy.minute_ms = keep,
                "1h" => policy.hour_ms = keep,
                _ => {}
            }
        }
        Ok(policy)
    }

    /// Stores a new retention policy (applied by the next
    /// [`Store::apply_retention`]), and records the change in the audit log.
    pub fn set_retention(
        &mut self,
        policy: &RetentionPolicy,
        actor: &str,
        at: TimestampMs,
    ) -> Result<()> {
        for (name, keep) in [
            ("raw_ms", policy.raw_ms),
            ("minute_ms", policy.minute_ms),
            ("hour_ms", policy.hour_ms),
        ] {
            if keep <= 0 {
                return Err(self.invalid(format!(
                    "retention {name} is {keep}: it must be a positive number of milliseconds"
                )));
            }
        }
        let before = self.retention()?;
        let err = self.sql("set the retention policy");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        for (level, keep) in [
            ("raw", policy.raw_ms),
            ("1m", policy.minute_ms),
            ("1h", policy.hour_ms),
        ] {
            tx.execute(
                "UPDATE retention SET keep_ms = ?2 WHERE level = ?1",
                (level, keep),
            )
            .map_err(&err)?;
        }
        crate::records::append_audit_in(
            &tx,
            &crate::AuditEntry {
                ts: at,
                actor: actor.to_string(),
                action: "retention.set".into(),
                target: "retention".into(),
                before: serde_json::to_string(&before).ok(),
                after: serde_json::to_string(policy).ok(),
                reason: String::new(),
            },
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// Deletes what the retention policy no longer keeps at `now_ms`: raw
    /// samples older than `now - raw_ms`, and rollup buckets that start
    /// before `now - minute_ms` (resp. `hour_ms`) rounded down to a whole
    /// bucket. Cutoffs never move back: a call with an earlier `now_ms` than
    /// a previous one deletes nothing. One transaction.
    pub fn apply_retention(&mut self, now_ms: TimestampMs) -> Result<RetentionReport> {
        let policy = self.retention()?;
        let err = self.sql("apply retention");
        let series: Vec<i64> = self.read_series_ids().map_err(&err)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut report = RetentionReport::default();
        let mut report_counters = 0;
        let levels: [(&str, &str, &str, i64, i64, &mut u64); 3] = [
            ("raw", "samples", "ts", policy.raw_ms, 1, &mut report.raw),
            (
                "1m",
                "rollup_1m",
                "ts_bucket",
                policy.minute_ms,
                MINUTE_MS,
                &mut report.minute,
            ),
            (
                "1h",
                "rollup_1h",
                "ts_bucket",
                policy.hour_ms,
                HOUR_MS,
                &mut report.hour,
            ),
        ];
        for (level, table, column, keep, width, deleted) in levels {
            let old: Option<i64> = tx
                .query_row(
                    "SELECT cutoff_ms FROM retention WHERE level = ?1",
                    [level],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            let cutoff = bucket_of(now_ms.saturating_sub(keep), width).max(old.unwrap_or(i64::MIN));
            // Per series, so each delete is a range scan of the primary key
            // rather than a scan of the whole table.
            let mut delete = tx
                .prepare(&format!(
                    "DELETE FROM {table} WHERE series_id = ?1 AND {column} < ?2"
                ))
                .map_err(&err)?;
            for &id in &series {
                *deleted += delete.execute((id, cutoff)).map_err(&err)? as u64;
            }
            drop(delete);
            if level == "raw" {
                let mut delete = tx
                    .prepare("DELETE FROM counters WHERE series_id = ?1 AND ts < ?2")
                    .map_err(&err)?;
                for &id in &series {
                    report_counters += delete.execute((id, cutoff)).map_err(&err)? as u64;
                }
            }
            tx.execute(
                "UPDATE retention SET cutoff_ms = ?2 WHERE level = ?1",
                (level, cutoff),
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)?;
        report.counters = report_counters;
        Ok(report)
    }

    /// Counts of series and samples, and the time span of the raw samples.
    pub fn summary(&self) -> Result<StoreSummary> {
        let err = self.sql("summarise");
        let series: i64 = self
            .conn
            .query_row("SELECT count(*) FROM series", [], |r| r.get(0))
            .map_err(&err)?;
        let (samples, first_ts, last_ts): (i64, Option<i64>, Option<i64>) = self
            .conn
            .query_row("SELECT count(*), min(ts), max(ts) FROM samples", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(&err)?;
        Ok(StoreSummary {
            series: series.max(0) as u64,
            samples: samples.max(0) as u64,
            first_ts,
            last_ts,
        })
    }

    /// Every series id in the file (including those of resources this build
    /// does not know, whose samples retention must still delete).
    fn read_series_ids(&self) -> rusqlite::Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached("SELECT id FROM series")?;
        stmt.query_map([], |r| r.get(0))?.collect()
    }
}

/// The query of a rollup resolution, and its bucket width.
fn rollup_query(resolution: Resolution) -> (&'static str, i64) {
    match resolution {
        Resolution::Hour => (
            "SELECT ts_bucket, count, sum, min, max FROM rollup_1h
             WHERE series_id = ?1 AND ts_bucket >= ?2 AND ts_bucket < ?3 ORDER BY ts_bucket",
            HOUR_MS,
        ),
        _ => (
            "SELECT ts_bucket, count, sum, min, max FROM rollup_1m
             WHERE series_id = ?1 AND ts_bucket >= ?2 AND ts_bucket < ?3 ORDER BY ts_bucket",
            MINUTE_MS,
        ),
    }
}
