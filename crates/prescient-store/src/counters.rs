//! Raw counters: the cumulative counts the live rates come from (CPU time,
//! bytes read and written, bytes received and sent), kept so that the
//! rates can be derived again from what was read, by the same pure
//! function ([`prescient_core::counter_rate`]) the agent uses live.
//!
//! A series' rate is often the sum of several counters: one per block
//! device, one per interface of each network namespace, one per process of
//! a process workload. Each is stored under its `name` within the series,
//! and a rate is the sum over the counters present at both of two
//! consecutive readings of the series, as the agent sums them live: a
//! counter that appeared has no rate yet, one that went back (reset)
//! adds nothing, and when every counter went back or none is in both,
//! there is no rate at all.

use prescient_core::{Sample, TimestampMs, counter_rate};
use rusqlite::TransactionBehavior;

use crate::{IngestReport, Result, SeriesId, Store, StoreError};

/// One reading of a raw counter of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// When it was read.
    pub ts: TimestampMs,
    /// Which counter of the series: `""` for a cgroup's CPU time, a device
    /// (`8:0`), an interface of a namespace (`net:[4026532100]/eth0`), a
    /// process (`pid 4242 started 123456`).
    pub name: String,
    /// Its value, in the counter's unit (see [`Resource::counter_scale`]).
    pub value: u64,
}

impl Counter {
    /// A reading of `name` at `ts`.
    pub fn new(ts: TimestampMs, name: impl Into<String>, value: u64) -> Self {
        Counter {
            ts,
            name: name.into(),
            value,
        }
    }
}

/// Rates in the resource's unit from the readings of one series
/// (`counters`, in any order), `scale` counter units per unit-second (see
/// [`Resource::counter_scale`]): one sample at each reading time but the
/// first, from that reading and the one before (see the module's
/// documentation for the sum). Pure.
pub fn rates_from_counters(counters: &[Counter], scale: f64) -> Vec<Sample> {
    let mut sorted: Vec<&Counter> = counters.iter().collect();
    sorted.sort_by(|a, b| (a.ts, &a.name).cmp(&(b.ts, &b.name)));
    let passes: Vec<&[&Counter]> = sorted.chunk_by(|a, b| a.ts == b.ts).collect();
    let mut out = Vec::with_capacity(passes.len().saturating_sub(1));
    for w in passes.windows(2) {
        let (prev, cur) = (w[0], w[1]);
        let elapsed = cur[0].ts - prev[0].ts;
        let mut sum: Option<f64> = None;
        for c in cur {
            // Both passes are sorted by name.
            let Ok(i) = prev.binary_search_by(|p| p.name.as_str().cmp(&c.name)) else {
                continue;
            };
            // A counter that went back adds nothing.
            if let Some(r) = counter_rate(c.value, prev[i].value, elapsed) {
                *sum.get_or_insert(0.0) += r;
            }
        }
        if let Some(s) = sum {
            out.push(Sample::new(cur[0].ts, s / scale));
        }
    }
    out
}

impl Store {
    /// Writes raw counter readings in one transaction. Refused whole,
    /// before anything is written: a series id the store does not have, a
    /// series whose resource is a gauge (memory: stored as samples), a
    /// value beyond SQLite's integers (2^63 - 1). Readings already stored
    /// (same series, name and time) are ignored, and readings older than
    /// the raw samples' retention cutoff refused; both are counted.
    pub fn ingest_counters(&mut self, batch: &[(SeriesId, Counter)]) -> Result<IngestReport> {
        let mut checked: Option<SeriesId> = None;
        for (id, c) in batch {
            if checked != Some(*id) {
                if !self.keys.contains_key(id) {
                    self.load_series()?;
                }
                let Some(key) = self.keys.get(id) else {
                    return Err(StoreError::UnknownSeries {
                        path: self.path.clone(),
                        series: *id,
                    });
                };
                if key.resource.counter_scale().is_none() {
                    return Err(self.invalid(format!(
                        "series {id} ({key}): {} is a gauge, stored as samples, not counters",
                        key.resource
                    )));
                }
                checked = Some(*id);
            }
            if i64::try_from(c.value).is_err() {
                let key = self.keys.get(id).map(|k| k.to_string()).unwrap_or_default();
                return Err(self.invalid(format!(
                    "series {id} ({key}): counter {:?} at {} is {}, beyond the store's integers",
                    c.name, c.ts, c.value
                )));
            }
        }
        let err = self.sql("ingest counters");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let mut report = IngestReport::default();
        {
            let floor: Option<i64> = tx
                .prepare_cached("SELECT cutoff_ms FROM retention WHERE level = 'raw'")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(&err)?;
            let floor = floor.unwrap_or(i64::MIN);
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO counters (series_id, name, ts, value) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (series_id, name, ts) DO NOTHING",
                )
                .map_err(&err)?;
            for (id, c) in batch {
                if c.ts < floor {
                    report.too_old += 1;
                    continue;
                }
                let value = i64::try_from(c.value).unwrap_or(i64::MAX);
                match insert
                    .execute((id.0, c.name.as_str(), c.ts, value))
                    .map_err(&err)?
                {
                    0 => report.duplicates += 1,
                    _ => report.inserted += 1,
                }
            }
        }
        tx.commit().map_err(&err)?;
        Ok(report)
    }

    /// The counter readings of `series` in `[from, to)`, by time then name.
    pub fn counters(
        &self,
        series: SeriesId,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Result<Vec<Counter>> {
        let read = || -> rusqlite::Result<Vec<Counter>> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT ts, name, value FROM counters
                 WHERE series_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts, name",
            )?;
            let mut rows = stmt.query((series.0, from, to))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let v: i64 = r.get(2)?;
                out.push(Counter {
                    ts: r.get(0)?,
                    name: r.get(1)?,
                    value: u64::try_from(v).unwrap_or(0),
                });
            }
            Ok(out)
        };
        read().map_err(self.sql("read counters"))
    }

    /// The rates of `series` in `[from, to)` derived again from its stored
    /// counters ([`rates_from_counters`]); the first reading in the window
    /// only serves as the previous one of the second.
    pub fn rates_from_counters(
        &mut self,
        series: SeriesId,
        from: TimestampMs,
        to: TimestampMs,
    ) -> Result<Vec<Sample>> {
        let Some(key) = self.series_key(series)? else {
            return Err(StoreError::UnknownSeries {
                path: self.path.clone(),
                series,
            });
        };
        let Some(scale) = key.resource.counter_scale() else {
            return Err(self.invalid(format!(
                "series {series} ({key}): {} is a gauge, with no counters",
                key.resource
            )));
        };
        Ok(rates_from_counters(
            &self.counters(series, from, to)?,
            scale,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_sum_the_counters_in_both_readings() {
        let c = |ts, name: &str, v| Counter::new(ts, name, v);
        let readings = [
            c(0, "8:0", 1_000),
            c(0, "8:16", 0),
            c(1_000, "8:0", 3_000),
            c(1_000, "8:16", 500),
            // Appeared: no rate yet.
            c(1_000, "8:32", 9_999),
            // 8:0 was reset: adds nothing; the others count.
            c(3_000, "8:0", 10),
            c(3_000, "8:16", 4_500),
            c(3_000, "8:32", 10_999),
            // Every counter went back: no rate at all.
            c(4_000, "8:16", 1),
            // Out of order in the input.
            c(500, "8:0", 2_000),
        ];
        let r = rates_from_counters(&readings, 1.0);
        assert_eq!(
            r,
            vec![
                Sample::new(500, 2_000.0),
                // 8:16 was not read at 500 ms.
                Sample::new(1_000, 2_000.0),
                Sample::new(3_000, 2_000.0 + 500.0),
            ]
        );
        // CPU time in µs to cores.
        let cpu = [c(0, "", 0), c(2_000, "", 1_000_000)];
        assert_eq!(
            rates_from_counters(&cpu, 1e6),
            vec![Sample::new(2_000, 0.5)]
        );
        assert!(rates_from_counters(&[], 1.0).is_empty());
        assert!(rates_from_counters(&cpu[..1], 1.0).is_empty());
    }
}
