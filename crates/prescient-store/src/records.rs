//! Everything but samples: workload metadata, demand profiles, plans,
//! events, the audit log and model state.

use std::collections::BTreeMap;
use std::fmt;

use prescient_core::{DemandProfile, HostId, Plan, TimestampMs, WorkloadId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::{Result, SeriesId, Store, StoreError};

/// How many of a series' newest demand profiles are all kept. Older ones
/// are thinned to one per [`PROFILE_BUCKET_MS`] for [`PROFILE_KEEP_MS`]
/// (see [`Store::save_profile`]).
pub const PROFILE_HISTORY: usize = 48;

/// The width of the buckets older profiles are thinned to (5 minutes):
/// beyond the newest [`PROFILE_HISTORY`], a series keeps the newest profile
/// of each bucket.
pub const PROFILE_BUCKET_MS: i64 = 300_000;

/// How far back thinned profiles are kept (7 days, the newest bucket
/// included); older ones are dropped, except that the newest
/// [`PROFILE_HISTORY`] are always kept.
pub const PROFILE_KEEP_MS: i64 = 7 * 86_400_000;

/// The start of the profile bucket holding `t`.
fn profile_bucket(t: TimestampMs) -> TimestampMs {
    // Saturating: a time within one bucket of i64::MIN has no bucket start.
    t.div_euclid(PROFILE_BUCKET_MS)
        .saturating_mul(PROFILE_BUCKET_MS)
}

/// A workload and its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// The host it runs on.
    pub host: HostId,
    /// Its stable name, unique within the host.
    pub name: WorkloadId,
    /// How the collector finds it (a cgroup path glob, a process match, ...).
    pub selector: String,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// When the row was created (wall clock).
    pub created_at: TimestampMs,
    /// When its metadata last changed.
    pub updated_at: TimestampMs,
}

/// A plan's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlanId(pub i64);

/// An event's row id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub i64);

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A known future change in demand, as it is created.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What kind of event (`release`, `sale`, `maintenance`, ...).
    pub kind: String,
    /// Which workloads it affects (a selector, as in [`Workload::selector`]).
    pub selector: String,
    /// When it starts.
    pub start: TimestampMs,
    /// When it ends (>= `start`).
    pub end: TimestampMs,
    /// What it does to demand, for the forecast to read.
    pub effect: serde_json::Value,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: TimestampMs,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its id.
    pub id: EventId,
    /// The event as created.
    pub event: NewEvent,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<TimestampMs>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// When the change was made.
    pub ts: TimestampMs,
    /// Who or what made it (`agent`, `user:alice`, ...).
    pub actor: String,
    /// What was done (`cgroup.write`, `event.create`, ...).
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The state before, if there was one.
    pub before: Option<String>,
    /// The state after, if there is one.
    pub after: Option<String>,
    /// Why.
    pub reason: String,
}

/// Appends `entry` to the audit log on `conn` (inside the caller's
/// transaction when there is one), returning its id.
pub(crate) fn append_audit_in(conn: &Connection, entry: &AuditEntry) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO audit (ts, actor, action, target, before, after, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute((
        entry.ts,
        &entry.actor,
        &entry.action,
        &entry.target,
        &entry.before,
        &entry.after,
        &entry.reason,
    ))?;
    Ok(conn.last_insert_rowid())
}

impl Store {
    /// Sets a workload's selector and labels (creating the workload if
    /// needed), and records the change in the audit log. Setting what is
    /// already stored changes nothing and logs nothing.
    pub fn set_workload_meta(
        &mut self,
        host: &HostId,
        name: &WorkloadId,
        selector: &str,
        labels: &BTreeMap<String, String>,
        actor: &str,
        at: TimestampMs,
    ) -> Result<()> {
        if host.0.is_empty() || name.0.is_empty() {
            return Err(self.invalid(format!(
                "workload {host}/{name}: the host and workload names must not be empty"
            )));
        }
        let labels_json = serde_json::to_string(labels).map_err(|e| self.invalid(e.to_string()))?;
        let err = self.sql("set workload metadata");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let id = crate::ensure_workload(&tx, host, name, at).map_err(&err)?;
        let (old_selector, old_labels): (String, String) = tx
            .query_row(
                "SELECT selector, labels FROM workloads WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&err)?;
        let old_labels: BTreeMap<String, String> =
            serde_json::from_str(&old_labels).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("workloads row {id} (labels)"),
                detail: e.to_string(),
            })?;
        if old_selector == selector && &old_labels == labels {
            return Ok(());
        }
        tx.execute(
            "UPDATE workloads SET selector = ?2, labels = ?3, updated_at = ?4 WHERE id = ?1",
            (id, selector, &labels_json, at),
        )
        .map_err(&err)?;
        let state = |selector: &str, labels: &BTreeMap<String, String>| {
            serde_json::json!({ "selector": selector, "labels": labels }).to_string()
        };
        append_audit_in(
            &tx,
            &AuditEntry {
                ts: at,
                actor: actor.to_string(),
                action: "workload.meta".into(),
                target: format!("{host}/{name}"),
                before: Some(state(&old_selector, &old_labels)),
                after: Some(state(selector, labels)),
                reason: String::new(),
            },
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// Every workload, ordered by host and name.
    pub fn workloads(&self) -> Result<Vec<Workload>> {
        let err = self.sql("read the workloads");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, host, name, selector, labels, created_at, updated_at
                 FROM workloads ORDER BY host, name",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, host, name, selector, labels, created_at, updated_at) = row.map_err(&err)?;
            let labels = serde_json::from_str(&labels)
                .map_err(|e| self.corrupt(format!("workloads row {id} (labels)"), e))?;
            out.push(Workload {
                host: HostId(host),
                name: WorkloadId(name),
                selector,
                labels,
                created_at,
                updated_at,
            });
        }
        Ok(out)
    }

    /// Saves a demand profile of `series`, made at `made_at`, and thins the
    /// series' history:
    ///
    /// - the newest [`PROFILE_HISTORY`] profiles are all kept;
    /// - older ones are thinned to the newest of each [`PROFILE_BUCKET_MS`]
    ///   bucket (5 minutes);
    /// - those of buckets more than [`PROFILE_KEEP_MS`] (7 days) older than
    ///   the newest profile's are dropped.
    ///
    /// Thinning runs only when a save crosses into a new bucket for the
    /// series (or is older than its newest profile), over the few profiles
    /// that left the newest [`PROFILE_HISTORY`] since the last crossing: a
    /// range scan of the `(series_id, made_at)` index. So between two
    /// crossings up to one bucket's worth of profiles wait to be thinned: a
    /// series holds at most `PROFILE_HISTORY` + 2016 (7 days of buckets) +
    /// the number saved since its newest bucket began.
    pub fn save_profile(
        &mut self,
        series: SeriesId,
        made_at: TimestampMs,
        profile: &DemandProfile,
    ) -> Result<()> {
        self.save_profiles(&[(series, made_at, profile)])
    }

    /// Saves several profiles as [`Store::save_profile`] does, in one
    /// transaction: all or none. What the agent does at each plan (one
    /// profile per workload and resource), at the cost of one commit.
    pub fn save_profiles(
        &mut self,
        items: &[(SeriesId, TimestampMs, &DemandProfile)],
    ) -> Result<()> {
        let mut bodies = Vec::with_capacity(items.len());
        for &(series, _, profile) in items {
            if self.series_key(series)?.is_none() {
                return Err(StoreError::UnknownSeries {
                    path: self.path.clone(),
                    series,
                });
            }
            bodies.push(serde_json::to_string(profile).map_err(|e| self.invalid(e.to_string()))?);
        }
        let err = self.sql("save a demand profile");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        for (&(series, made_at, profile), body) in items.iter().zip(&bodies) {
            save_profile_in(&tx, series, made_at, profile, body).map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// The newest profile of `series` and when it was made.
    pub fn latest_profile(&self, series: SeriesId) -> Result<Option<(TimestampMs, DemandProfile)>> {
        Ok(self.profile_history(series, 1)?.into_iter().next())
    }

    /// Up to `limit` profiles of `series`, newest first.
    pub fn profile_history(
        &self,
        series: SeriesId,
        limit: usize,
    ) -> Result<Vec<(TimestampMs, DemandProfile)>> {
        self.read_profiles(
            "SELECT id, made_at, body FROM profiles WHERE series_id = ?1
             ORDER BY made_at DESC, id DESC LIMIT ?2",
            (series.0, clamp_limit(limit)),
            series,
        )
    }

    /// Runs a query of `(id, made_at, body)` rows of profiles of `series`.
    fn read_profiles(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        series: SeriesId,
    ) -> Result<Vec<(TimestampMs, DemandProfile)>> {
        let err = self.sql("read demand profiles");
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, made_at, body) = row.map_err(&err)?;
            let what = || format!("profiles row {id} (series {series})");
            // Deserialising checks the profile, so a damaged row is an error.
            let p: DemandProfile =
                serde_json::from_str(&body).map_err(|e| self.corrupt(what(), e))?;
            out.push((made_at, p));
        }
        Ok(out)
    }

    /// Up to `limit` profiles of `series` made in `[from, to)`, oldest
    /// first (a range scan of the `(series_id, made_at)` index). See
    /// [`Store::save_profile`] for which are kept.
    pub fn profiles_between(
        &self,
        series: SeriesId,
        from: TimestampMs,
        to: TimestampMs,
        limit: usize,
    ) -> Result<Vec<(TimestampMs, DemandProfile)>> {
        self.read_profiles(
            "SELECT id, made_at, body FROM profiles
             WHERE series_id = ?1 AND made_at >= ?2 AND made_at < ?3
             ORDER BY made_at, id LIMIT ?4",
            (series.0, from, to, clamp_limit(limit)),
            series,
        )
    }

    /// Saves a plan, returning its id.
    pub fn save_plan(&mut self, plan: &Plan) -> Result<PlanId> {
        let body = serde_json::to_string(plan).map_err(|e| self.invalid(e.to_string()))?;
        // JSON has no NaN or infinity (serde_json writes them as null): make
        // sure what is stored reads back, rather than failing at load time.
        if serde_json::from_str::<Plan>(&body).is_err() {
            return Err(self.invalid(format!(
                "plan of pool {} made at {} ms holds a number that is not finite",
                plan.pool, plan.made_at
            )));
        }
        let err = self.sql("save a plan");
        self.conn
            .prepare_cached(
                "INSERT INTO plans (pool, made_at, degraded, body) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| s.execute((&plan.pool.0, plan.made_at, plan.degraded, &body)))
            .map_err(&err)?;
        Ok(PlanId(self.conn.last_insert_rowid()))
    }

    /// The plans of `pool` made in `[from, to)`, oldest first.
    pub fn plans(
        &self,
        pool: &HostId,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Result<Vec<(PlanId, Plan)>> {
        self.read_plans(
            "SELECT id, body FROM plans WHERE pool = ?1 AND made_at >= ?2 AND made_at < ?3
             ORDER BY made_at, id",
            (&pool.0, from, to),
        )
    }

    /// The newest plan of `pool`.
    pub fn latest_plan(&self, pool: &HostId) -> Result<Option<(PlanId, Plan)>> {
        Ok(self
            .read_plans(
                "SELECT id, body FROM plans WHERE pool = ?1 ORDER BY made_at DESC, id DESC LIMIT 1",
                [&pool.0],
            )?
            .pop())
    }

    /// The newest plan of every pool, by pool name.
    pub fn latest_plans(&self) -> Result<Vec<(PlanId, Plan)>> {
        self.read_plans(
            "SELECT p.id, p.body FROM plans p
             WHERE p.id = (SELECT q.id FROM plans q WHERE q.pool = p.pool
                           ORDER BY q.made_at DESC, q.id DESC LIMIT 1)
             ORDER BY p.pool",
            [],
        )
    }

    fn read_plans(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<(PlanId, Plan)>> {
        let err = self.sql("read plans");
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row.map_err(&err)?;
            let plan = serde_json::from_str(&body)
                .map_err(|e| self.corrupt(format!("plans row {id}"), e))?;
            out.push((PlanId(id), plan));
        }
        Ok(out)
    }

    /// Stores an event, and records its creation in the audit log.
    pub fn create_event(&mut self, event: &NewEvent) -> Result<EventId> {
        if event.end < event.start {
            return Err(self.invalid(format!(
                "event '{}' ends ({} ms) before it starts ({} ms)",
                event.kind, event.end, event.start
            )));
        }
        let effect = event.effect.to_string();
        let err = self.sql("create an event");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        tx.execute(
            "INSERT INTO events (kind, selector, start_ms, end_ms, effect, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            (
                &event.kind,
                &event.selector,
                event.start,
                event.end,
                &effect,
                &event.created_by,
                event.created_at,
            ),
        )
        .map_err(&err)?;
        let id = EventId(tx.last_insert_rowid());
        let after = serde_json::json!({
            "kind": event.kind, "selector": event.selector, "start": event.start,
            "end": event.end, "effect": event.effect,
        });
        append_audit_in(
            &tx,
            &AuditEntry {
                ts: event.created_at,
                actor: event.created_by.clone(),
                action: "event.create".into(),
                target: format!("event/{id}"),
                before: None,
                after: Some(after.to_string()),
                reason: String::new(),
            },
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(id)
    }

    /// The events that overlap `[from, to)` (start before `to`, end at or
    /// after `from`), by start; cancelled ones only if asked for.
    pub fn events(
        &self,
        from: TimestampMs,
        to: TimestampMs,
        include_cancelled: bool,
    ) -> Result<Vec<Event>> {
        let err = self.sql("read events");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, kind, selector, start_ms, end_ms, effect, created_by, created_at,
                        cancelled_at
                 FROM events
                 WHERE start_ms < ?2 AND end_ms >= ?1 AND (?3 OR cancelled_at IS NULL)
                 ORDER BY start_ms, id",
            )
            .map_err(&err)?;
        let rows = stmt
            .query_map((from, to, include_cancelled), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    NewEvent {
                        kind: r.get(1)?,
                        selector: r.get(2)?,
                        start: r.get(3)?,
                        end: r.get(4)?,
                        effect: serde_json::Value::Null,
                        created_by: r.get(6)?,
                        created_at: r.get(7)?,
                    },
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<i64>>(8)?,
                ))
            })
            .map_err(&err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, mut event, effect, cancelled_at) = row.map_err(&err)?;
            event.effect = serde_json::from_str(&effect)
                .map_err(|e| self.corrupt(format!("events row {id} (effect)"), e))?;
            out.push(Event {
                id: EventId(id),
                event,
                cancelled_at,
            });
        }
        Ok(out)
    }

    /// Cancels an event, and records it in the audit log.
    pub fn cancel_event(
        &mut self,
        id: EventId,
        actor: &str,
        at: TimestampMs,
        reason: &str,
    ) -> Result<()> {
        let err = self.sql("cancel an event");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let found: Option<Option<i64>> = tx
            .query_row(
                "SELECT cancelled_at FROM events WHERE id = ?1",
                [id.0],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        match found {
            None => {
                return Err(StoreError::UnknownEvent {
                    path: self.path.clone(),
                    id,
                });
            }
            Some(Some(at)) => {
                return Err(StoreError::EventAlreadyCancelled {
                    path: self.path.clone(),
                    id,
                    at,
                });
            }
            Some(None) => {}
        }
        tx.execute(
            "UPDATE events SET cancelled_at = ?2 WHERE id = ?1",
            (id.0, at),
        )
        .map_err(&err)?;
        append_audit_in(
            &tx,
            &AuditEntry {
                ts: at,
                actor: actor.to_string(),
                action: "event.cancel".into(),
                target: format!("event/{id}"),
                before: None,
                after: None,
                reason: reason.to_string(),
            },
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)
    }

    /// Appends an entry to the audit log, returning its id (ids grow in the
    /// order entries are appended).
    pub fn append_audit(&mut self, entry: &AuditEntry) -> Result<i64> {
        append_audit_in(&self.conn, entry).map_err(self.sql("append to the audit log"))
    }

    /// Appends several entries in one transaction (all or none).
    pub fn append_audits(&mut self, entries: &[AuditEntry]) -> Result<()> {
        let err = self.sql("append to the audit log");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        for entry in entries {
            append_audit_in(&tx, entry).map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Up to `limit` audit entries with `ts >= since`, oldest first (by
    /// time, then id), with their ids.
    pub fn audit_since(&self, since: TimestampMs, limit: usize) -> Result<Vec<(i64, AuditEntry)>> {
        self.read_audit(
            "SELECT id, ts, actor, action, target, before, after, reason
             FROM audit WHERE ts >= ?1 ORDER BY ts, id LIMIT ?2",
            (since, clamp_limit(limit)),
        )
    }

    /// Up to `limit` audit entries with an id below `before` (all, when
    /// `None`) and `ts >= since`, newest first: by id, the order they were
    /// appended in. Paging back through the log is calling it again with
    /// the last id returned.
    pub fn audit_before(
        &self,
        before: Option<i64>,
        since: TimestampMs,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>> {
        self.read_audit(
            "SELECT id, ts, actor, action, target, before, after, reason
             FROM audit WHERE id < ?1 AND ts >= ?2 ORDER BY id DESC LIMIT ?3",
            (before.unwrap_or(i64::MAX), since, clamp_limit(limit)),
        )
    }

    /// Up to `limit` audit entries with an id above `after` and
    /// `ts >= since`, oldest first by id (the order they were appended in):
    /// the entries just newer than entry `after`.
    pub fn audit_after(
        &self,
        after: i64,
        since: TimestampMs,
        limit: usize,
    ) -> Result<Vec<(i64, AuditEntry)>> {
        self.read_audit(
            "SELECT id, ts, actor, action, target, before, after, reason
             FROM audit WHERE id > ?1 AND ts >= ?2 ORDER BY id LIMIT ?3",
            (after, since, clamp_limit(limit)),
        )
    }

    fn read_audit(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<(i64, AuditEntry)>> {
        let err = self.sql("read the audit log");
        let mut stmt = self.conn.prepare_cached(sql).map_err(&err)?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get(0)?,
                    AuditEntry {
                        ts: r.get(1)?,
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        target: r.get(4)?,
                        before: r.get(5)?,
                        after: r.get(6)?,
                        reason: r.get(7)?,
                    },
                ))
            })
            .map_err(&err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(err)
    }

    /// Stores a model's state under `key`, replacing what was there.
    /// `version` is the model's own format version, returned by
    /// [`Store::load_model_state`] so the model can refuse a format it does not know.
    pub fn save_model_state(&mut self, key: &str, version: u32, blob: &[u8]) -> Result<()> {
        let err = self.sql("save model state");
        self.conn
            .prepare_cached(
                "INSERT INTO model_state (key, version, blob, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET
                     version = excluded.version, blob = excluded.blob,
                     updated_at = excluded.updated_at",
            )
            .and_then(|mut s| s.execute((key, version, blob, crate::now_ms())))
            .map_err(err)?;
        Ok(())
    }

    /// A model's state and its format version, if stored.
    pub fn load_model_state(&self, key: &str) -> Result<Option<(u32, Vec<u8>)>> {
        let err = self.sql("load model state");
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT version, blob FROM model_state WHERE key = ?1")
            .and_then(|mut s| {
                s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(err)?;
        row.map(|(version, blob)| {
            u32::try_from(version).map(|v| (v, blob)).map_err(|e| {
                self.corrupt(format!("model_state row '{key}' (version {version})"), e)
            })
        })
        .transpose()
    }
}

/// One profile's insert and the thinning it calls for, inside the caller's
/// transaction (see [`Store::save_profile`]).
fn save_profile_in(
    tx: &rusqlite::Transaction<'_>,
    series: SeriesId,
    made_at: TimestampMs,
    profile: &DemandProfile,
    body: &str,
) -> rusqlite::Result<()> {
    let newest: Option<TimestampMs> = tx
        .prepare_cached("SELECT max(made_at) FROM profiles WHERE series_id = ?1")
        .and_then(|mut s| s.query_row([series.0], |r| r.get(0)))?;
    // Profiles made since the newest bucket began, before this one.
    let in_newest_bucket = |tx: &rusqlite::Transaction<'_>, newest: TimestampMs| {
        tx.prepare_cached("SELECT count(*) FROM profiles WHERE series_id = ?1 AND made_at >= ?2")
            .and_then(|mut s| {
                s.query_row((series.0, profile_bucket(newest)), |r| r.get::<_, i64>(0))
            })
    };
    // Where thinning must start (`None`: no need to thin).
    let thin_from = match newest {
        None => None,
        Some(newest) if made_at >= newest => {
            if profile_bucket(made_at) > profile_bucket(newest) {
                // A new bucket: the profiles that left the newest
                // PROFILE_HISTORY since the last crossing are those of
                // the bucket just ended (ranks 49.. after this insert).
                Some((in_newest_bucket(tx, newest)?, None))
            } else {
                None
            }
        }
        // Out of order (a backfill): it may push a profile out of the
        // newest PROFILE_HISTORY, or land among the thinned ones.
        Some(newest) => Some((in_newest_bucket(tx, newest)?, Some(made_at))),
    };
    tx.prepare_cached(
        "INSERT INTO profiles (series_id, made_at, start, step_ms, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute((series.0, made_at, profile.start, profile.step_ms, &body)))?;
    if let Some((recent, also)) = thin_from {
        thin_profiles(
            tx,
            series,
            recent,
            also,
            made_at.max(newest.unwrap_or(made_at)),
        )?;
    }
    Ok(())
}

/// Thins the profiles of `series` after a save (in its transaction): of
/// those beyond the newest [`PROFILE_HISTORY`], keeps the newest of each
/// [`PROFILE_BUCKET_MS`] bucket, and drops those older than
/// [`PROFILE_KEEP_MS`] before the bucket of `newest`.
///
/// `recent` is how many profiles the series' newest bucket held before the
/// save: after the last thinning only the profiles that have left the
/// newest `PROFILE_HISTORY` since (at most `recent + 1`, the newest of them
/// at rank `PROFILE_HISTORY + 1`) can share a bucket with another kept one,
/// so thinning starts at the bucket of the profile at rank
/// `PROFILE_HISTORY + recent + 1` (one more than needed, for safety), or
/// at the bucket of `also` (an out-of-order save) if that is older.
fn thin_profiles(
    tx: &Connection,
    series: SeriesId,
    recent: i64,
    also: Option<TimestampMs>,
    newest: TimestampMs,
) -> rusqlite::Result<()> {
    let history = PROFILE_HISTORY as i64;
    let nth = |offset: i64| {
        tx.prepare_cached(
            "SELECT made_at, id FROM profiles WHERE series_id = ?1
             ORDER BY made_at DESC, id DESC LIMIT 1 OFFSET ?2",
        )
        .and_then(|mut s| {
            s.query_row((series.0, offset), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })
            .optional()
        })
    };
    // The oldest of the newest PROFILE_HISTORY: it and everything newer are
    // kept as they are. With no more than that, there is nothing to thin.
    let Some((cut_at, cut_id)) = nth(history - 1)? else {
        return Ok(());
    };
    let from = match nth(history + recent)? {
        Some((at, _)) => profile_bucket(at.min(also.unwrap_or(at))),
        // Fewer profiles than that: thin all of them.
        None => i64::MIN,
    };
    // Row values compare (made_at, id) as the history orders them.
    tx.prepare_cached(
        "DELETE FROM profiles WHERE id IN (
             SELECT id FROM (
                 SELECT id, row_number() OVER (
                     PARTITION BY made_at - ((made_at % ?4) + ?4) % ?4
                     ORDER BY made_at DESC, id DESC) AS rank
                 FROM profiles
                 WHERE series_id = ?1 AND made_at >= ?5 AND (made_at, id) < (?2, ?3))
             WHERE rank > 1)",
    )?
    .execute((series.0, cut_at, cut_id, PROFILE_BUCKET_MS, from))?;
    let keep_from = profile_bucket(newest)
        .saturating_add(PROFILE_BUCKET_MS)
        .saturating_sub(PROFILE_KEEP_MS);
    tx.prepare_cached(
        "DELETE FROM profiles
         WHERE series_id = ?1 AND made_at < ?4 AND (made_at, id) < (?2, ?3)",
    )?
    .execute((series.0, cut_at, cut_id, keep_from))?;
    Ok(())
}

/// A `usize` limit as SQLite's `LIMIT` (which is signed).
fn clamp_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
