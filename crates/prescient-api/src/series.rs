//! `GET /api/v1/workloads/{id}/series`: one series' actual usage, forecasts
//! and allocations over a range, at one resolution.
//!
//! - actual: the store's samples (raw, or aggregated into 10 s buckets) or
//!   rollups (1 min, 1 h): the mean of each bucket for CPU and I/O, the
//!   peak for memory;
//! - forecast: the first step of each stored demand profile, at that
//!   step's time (the store keeps every recent profile, then one per
//!   5 minutes for 7 days, so a day's chart has a band across the day);
//! - allocation: from the stored plans, as a step function: the value in
//!   force at `from`, then each change. Plans hold every workload of a
//!   pool, so reading a day of them for each query would parse hundreds of
//!   megabytes of JSON; an [`AllocationCache`] keeps each series' changes,
//!   read once and then only the plans made since.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use prescient_agent::control::LiveView;
use prescient_core::{Resource, ResourcePolicy, SeriesKey, TimestampMs};
use prescient_forecast::events::{Event, StoredEvent};
use prescient_store::{Resolution, SeriesId, Store};

use crate::dto::{ForecastSeries, Series, SeriesAnomaly, SeriesEvent};
use crate::error::{ApiError, ErrorBody};
use crate::parse::{Params, clip, path_id};
use crate::routes::{TAG, range};
use crate::state::AppState;

/// Most points one series query returns (per series kind).
pub const MAX_POINTS: i64 = 100_000;

/// The longest range of a raw query, ms (6 h).
pub const MAX_RAW_RANGE_MS: i64 = 6 * 3_600_000;

/// `auto` picks the coarsest resolution with at least this many points.
pub const AUTO_MIN_POINTS: i64 = 200;

/// Event windows listed at most per event.
const MAX_WINDOWS: usize = 1_000;

/// The resolution of a series query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesResolution {
    /// The samples as stored.
    Raw,
    /// 10-second buckets of the raw samples.
    TenSeconds,
    /// The store's one-minute rollups.
    Minute,
    /// The store's one-hour rollups.
    Hour,
}

impl SeriesResolution {
    /// Its name in the API.
    pub fn name(self) -> &'static str {
        match self {
            SeriesResolution::Raw => "raw",
            SeriesResolution::TenSeconds => "10s",
            SeriesResolution::Minute => "1m",
            SeriesResolution::Hour => "1h",
        }
    }

    /// Bucket width, ms (`None` for raw).
    pub fn width_ms(self) -> Option<i64> {
        match self {
            SeriesResolution::Raw => None,
            SeriesResolution::TenSeconds => Some(10_000),
            SeriesResolution::Minute => Some(60_000),
            SeriesResolution::Hour => Some(3_600_000),
        }
    }

    /// Parses the `resolution` parameter for the range `[from, to)`:
    /// `auto` (the default) is the coarsest that gives at least
    /// [`AUTO_MIN_POINTS`] points. A range too long for the resolution is
    /// an error naming the parameter.
    pub fn choose(text: Option<&str>, from: i64, to: i64) -> Result<SeriesResolution, ApiError> {
        let span = to.saturating_sub(from);
        let r = match text.map(str::trim).unwrap_or("auto") {
            "raw" => SeriesResolution::Raw,
            "10s" => SeriesResolution::TenSeconds,
            "1m" => SeriesResolution::Minute,
            "1h" => SeriesResolution::Hour,
            "auto" => [
                SeriesResolution::Hour,
                SeriesResolution::Minute,
                SeriesResolution::TenSeconds,
            ]
            .into_iter()
            .find(|r| r.width_ms().is_some_and(|w| span / w >= AUTO_MIN_POINTS))
            .unwrap_or(SeriesResolution::Raw),
            other => {
                return Err(ApiError::bad(
                    "resolution",
                    format!(
                        "resolution={:?}: expected auto, raw, 10s, 1m or 1h",
                        clip(other)
                    ),
                ));
            }
        };
        match r.width_ms() {
            None if span > MAX_RAW_RANGE_MS => Err(ApiError::bad(
                "resolution",
                format!(
                    "resolution=raw covers at most {} h; ask for 10s or coarser",
                    MAX_RAW_RANGE_MS / 3_600_000
                ),
            )),
            Some(w) if span / w > MAX_POINTS => Err(ApiError::bad(
                "resolution",
                format!(
                    "resolution={} over {span} ms gives more than {MAX_POINTS} points: ask for a coarser one",
                    r.name()
                ),
            )),
            _ => Ok(r),
        }
    }
}

/// Each series' allocation changes, from the plans read so far.
#[derive(Debug, Default)]
pub(crate) struct AllocationCache {
    /// Per pool, the (made_at, id) of the newest plan read.
    cursors: HashMap<String, (TimestampMs, i64)>,
    /// Per (workload, resource), the allocation at each change, by time.
    changes: HashMap<(String, Resource), Vec<(TimestampMs, f64)>>,
}

impl AllocationCache {
    /// Reads the plans made since the last call.
    fn refresh(&mut self, store: &Store) -> Result<(), ApiError> {
        for (newest_id, newest) in store.latest_plans()? {
            let pool = newest.pool.0.clone();
            let cursor = self.cursors.get(&pool).copied();
            if cursor == Some((newest.made_at, newest_id.0)) {
                continue;
            }
            let from = cursor.map_or(i64::MIN, |c| c.0);
            let mut last = cursor;
            for (id, plan) in store.plans(&newest.pool, from, i64::MAX)? {
                let at = (plan.made_at, id.0);
                if cursor.is_some_and(|c| at <= c) {
                    continue;
                }
                for e in plan.entries {
                    let points = self.changes.entry((e.workload.0, e.resource)).or_default();
                    if points.last().is_none_or(|&(_, v)| v != e.allocation) {
                        points.push((plan.made_at, e.allocation));
                    }
                }
                last = Some(last.map_or(at, |l| l.max(at)));
            }
            if let Some(l) = last {
                self.cursors.insert(pool, l);
            }
        }
        Ok(())
    }

    /// The allocation of a series over `[from, to)`: the value in force at
    /// `from`, then each change (the last one of each bucket of `width`).
    fn range(
        &self,
        workload: &str,
        resource: Resource,
        from: TimestampMs,
        to: TimestampMs,
        width: Option<i64>,
    ) -> Vec<(TimestampMs, f64)> {
        let Some(points) = self.changes.get(&(workload.to_string(), resource)) else {
            return Vec::new();
        };
        // The value in force at `from` (set at or before it), then the
        // changes after it.
        let first = points.partition_point(|&(t, _)| t <= from);
        let mut out = Vec::new();
        if first > 0 {
            out.push((from, points[first - 1].1));
        }
        for &(t, v) in &points[first..] {
            if t >= to {
                break;
            }
            push_bucketed(&mut out, (t, v), width);
        }
        out
    }
}

/// Appends `p`, replacing the last point when both fall in one bucket of
/// `width` (so each bucket keeps its last point).
fn push_bucketed<V>(out: &mut Vec<(TimestampMs, V)>, p: (TimestampMs, V), width: Option<i64>) {
    if let (Some(w), Some(last)) = (width, out.last_mut())
        && last.0.div_euclid(w) == p.0.div_euclid(w)
    {
        *last = p;
        return;
    }
    out.push(p);
}

/// The actual usage of a series at `resolution`: the bucket's mean, or
/// (memory) its peak.
fn actual(
    store: &Store,
    series: SeriesId,
    resource: Resource,
    from: TimestampMs,
    to: TimestampMs,
    resolution: SeriesResolution,
) -> Result<Vec<(TimestampMs, f64)>, ApiError> {
    let peak = resource == Resource::Memory;
    let stored = match resolution {
        SeriesResolution::Raw | SeriesResolution::TenSeconds => Resolution::Raw,
        SeriesResolution::Minute => Resolution::Minute,
        SeriesResolution::Hour => Resolution::Hour,
    };
    let buckets = store.range_buckets(series, from, to, stored)?;
    if resolution != SeriesResolution::TenSeconds {
        return Ok(buckets
            .into_iter()
            .map(|b| (b.ts, if peak { b.max } else { b.mean }))
            .collect());
    }
    // Aggregate raw samples into 10-second buckets.
    let w = 10_000;
    let mut out: Vec<(TimestampMs, f64)> = Vec::new();
    let mut count = 0u64;
    for b in buckets {
        let start = b.ts.div_euclid(w) * w;
        match out.last_mut() {
            Some(last) if last.0 == start => {
                count += 1;
                if peak {
                    last.1 = last.1.max(b.max);
                } else {
                    // Running mean.
                    last.1 += (b.mean - last.1) / count as f64;
                }
            }
            _ => {
                count = 1;
                out.push((start, if peak { b.max } else { b.mean }));
            }
        }
    }
    Ok(out)
}

/// How long before its first step a profile may have been made: the agent
/// makes one for the step after its plan's time, so within one forecast
/// step; this allows for steps up to an hour.
const PROFILE_LEAD_MS: i64 = 3_600_000;

/// The first step of each stored profile of `series` whose step starts in
/// `[from, to)` (the last of each bucket of `width`), at the levels of the
/// newest of them.
fn forecast(
    store: &Store,
    series: SeriesId,
    from: TimestampMs,
    to: TimestampMs,
    width: Option<i64>,
) -> Result<ForecastSeries, ApiError> {
    let made = store.profiles_between(
        series,
        from.saturating_sub(PROFILE_LEAD_MS),
        to,
        MAX_POINTS as usize,
    )?;
    let mut steps: Vec<(TimestampMs, &[f64], Vec<f64>)> = made
        .iter()
        .filter(|(_, p)| p.start >= from && p.start < to)
        .filter_map(|(_, p)| {
            p.step(0)
                .map(|q| (p.start, p.levels(), q.values().to_vec()))
        })
        .collect();
    // Oldest made first from the store; by step time, the newest made last
    // on a tie (a stable sort).
    steps.sort_by_key(|(t, _, _)| *t);
    let Some(levels) = steps.last().map(|(_, l, _)| l.to_vec()) else {
        return Ok(ForecastSeries {
            levels: Vec::new(),
            points: Vec::new(),
        });
    };
    let mut points = Vec::with_capacity(steps.len());
    for (t, l, v) in steps {
        if l == levels.as_slice() {
            push_bucketed(&mut points, (t, v), width);
        }
    }
    Ok(ForecastSeries { levels, points })
}

/// The windows in `[from, to)` of the active events that select `key`.
fn events(
    store: &Store,
    key: &SeriesKey,
    labels: Option<std::collections::BTreeMap<String, String>>,
    from: TimestampMs,
    to: TimestampMs,
) -> Result<Vec<SeriesEvent>, ApiError> {
    let rows = store.events(from, to, false)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let labels = match labels {
        Some(l) => l,
        None => store
            .workloads()?
            .into_iter()
            .find(|w| w.host == key.host && w.name == key.workload)
            .map(|w| w.labels)
            .unwrap_or_default(),
    };
    let mut out = Vec::new();
    for row in rows {
        let stored = StoredEvent {
            kind: row.event.kind.clone(),
            selector: row.event.selector.clone(),
            start: row.event.start,
            end: row.event.end,
            effect: row.event.effect.clone(),
        };
        let Ok(ev) = Event::from_stored(row.id.0, &stored, row.cancelled_at) else {
            continue;
        };
        if !ev.selects(key, &labels) {
            continue;
        }
        for (start, end) in ev.windows(from, to).take(MAX_WINDOWS) {
            out.push(SeriesEvent {
                id: row.id.0,
                kind: ev.kind.clone(),
                start,
                end,
            });
        }
    }
    out.sort_by_key(|e| (e.start, e.id));
    Ok(out)
}

/// The parameters of a series query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesQuery {
    /// `resource` (default cpu).
    pub resource: Resource,
    /// `resolution`, `auto` resolved.
    pub resolution: SeriesResolution,
    /// `from`, ms.
    pub from: TimestampMs,
    /// `to`, ms, exclusive.
    pub to: TimestampMs,
}

impl SeriesQuery {
    /// Parses a query string; the defaults are relative to `view`'s time.
    pub fn parse(query: &str, view: &LiveView) -> Result<SeriesQuery, ApiError> {
        let mut p = Params::parse(query)?;
        let resource = p.resource("resource")?.unwrap_or(Resource::Cpu);
        let resolution_text = p.take("resolution");
        let (from, to) = range(&mut p, view)?;
        p.finish()?;
        let resolution = SeriesResolution::choose(resolution_text.as_deref(), from, to)?;
        Ok(SeriesQuery {
            resource,
            resolution,
            from,
            to,
        })
    }
}

/// One series of a workload over a range.
#[utoipa::path(get, path = "/api/v1/workloads/{id}/series", tag = TAG,
    params(
        ("id" = String, Path, description = "The workload's id"),
        ("resource" = Option<String>, Query, description = "cpu (default), memory, io_read, io_write, net_rx, net_tx, disk_io, io_read_ops, io_write_ops"),
        ("from" = Option<i64>, Query, description = "ms; default: `to` - 1 day"),
        ("to" = Option<i64>, Query, description = "ms, exclusive; default: just after the view's time"),
        ("resolution" = Option<String>, Query, description = "auto (default: the coarsest with at least 200 points), raw, 10s, 1m or 1h")),
    responses((status = 200, body = Series), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn series(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Series>, ApiError> {
    path_id("workload", &id)?;
    let view = state.control.view();
    let SeriesQuery {
        resource,
        resolution,
        from,
        to,
    } = SeriesQuery::parse(q.as_deref().unwrap_or(""), &view)?;
    let width = resolution.width_ms();

    let live = view.workloads.iter().find(|w| w.id == id);
    let slo_quantile = live
        .and_then(|w| w.resources.iter().find(|r| r.resource == resource))
        .map_or(ResourcePolicy::default().slo_quantile, |r| r.slo_quantile);
    let labels = live.map(|w| w.labels.clone());
    let anomalies: Vec<SeriesAnomaly> = view
        .anomalies
        .iter()
        .filter(|a| a.workload == id && a.resource == resource && a.at >= from && a.at < to)
        .map(|a| SeriesAnomaly {
            at: a.at,
            kind: a.kind.clone(),
            reason: a.reason.clone(),
        })
        .collect();
    let host = if view.host.is_empty() {
        state.config.agent.host.clone()
    } else {
        Some(view.host.clone())
    };
    let known_live = live.is_some();
    let cache = std::sync::Arc::clone(&state.allocations);
    let workload = id.clone();
    let (actual, forecast, allocation, events) = state
        .with_store(move |s| {
            let series = s.series_list()?;
            // The series of this workload on the view's host (or, before
            // the first view, on any host).
            let mine = |k: &SeriesKey| {
                k.workload.0 == workload && host.as_ref().is_none_or(|h| &k.host.0 == h)
            };
            let Some(host) = host.clone().or_else(|| {
                series
                    .iter()
                    .find(|(_, k)| mine(k))
                    .map(|(_, k)| k.host.0.clone())
            }) else {
                return Err(ApiError::NotFound {
                    what: "workload",
                    id: clip(&workload),
                });
            };
            let key = SeriesKey::new(host, workload.clone(), resource);
            let sid = series.iter().find(|(_, k)| *k == key).map(|(i, _)| *i);
            if sid.is_none() && !known_live && !series.iter().any(|(_, k)| mine(k)) {
                return Err(ApiError::NotFound {
                    what: "workload",
                    id: clip(&workload),
                });
            }
            let (actual, forecast) = match sid {
                Some(sid) => (
                    actual(s, sid, resource, from, to, resolution)?,
                    forecast(s, sid, from, to, width)?,
                ),
                None => (
                    Vec::new(),
                    ForecastSeries {
                        levels: Vec::new(),
                        points: Vec::new(),
                    },
                ),
            };
            let allocation = {
                let mut cache = match cache.lock() {
                    Ok(c) => c,
                    Err(poisoned) => poisoned.into_inner(),
                };
                cache.refresh(s)?;
                cache.range(&workload, resource, from, to, width)
            };
            let events = events(s, &key, labels, from, to)?;
            Ok((actual, forecast, allocation, events))
        })
        .await?;
    Ok(Json(Series {
        workload: id,
        resource: resource.as_str().into(),
        unit: resource.unit().into(),
        resolution: resolution.name().into(),
        from,
        to,
        actual,
        forecast,
        slo_quantile,
        allocation,
        anomalies,
        events,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_the_coarsest_resolution_with_enough_points() {
        let day = 86_400_000;
        let pick = |span| SeriesResolution::choose(Some("auto"), 0, span).unwrap();
        assert_eq!(
            pick(day),
            SeriesResolution::Minute,
            "24 points at 1h is too few"
        );
        assert_eq!(pick(30 * day), SeriesResolution::Hour);
        assert_eq!(pick(3_600_000), SeriesResolution::TenSeconds);
        assert_eq!(pick(600_000), SeriesResolution::Raw);
        assert_eq!(
            SeriesResolution::choose(None, 0, day).unwrap(),
            SeriesResolution::Minute
        );
    }

    #[test]
    fn ranges_too_long_for_the_resolution_are_refused_naming_it() {
        let e = SeriesResolution::choose(Some("raw"), 0, 86_400_000).unwrap_err();
        assert!(matches!(e, ApiError::BadRequest { field: Some(ref f), .. } if f == "resolution"));
        let e = SeriesResolution::choose(Some("10s"), 0, 365 * 86_400_000).unwrap_err();
        assert!(e.to_string().contains("coarser"), "{e}");
        let e = SeriesResolution::choose(Some("5m"), 0, 1).unwrap_err();
        assert!(e.to_string().contains("\"5m\""), "{e}");
    }

    #[test]
    fn allocation_range_starts_with_the_value_in_force_and_keeps_the_last_per_bucket() {
        let mut c = AllocationCache::default();
        c.changes.insert(
            ("w".into(), Resource::Cpu),
            vec![
                (0, 1.0),
                (50_000, 2.0),
                (130_000, 3.0),
                (150_000, 4.0),
                (200_000, 5.0),
            ],
        );
        let got = c.range("w", Resource::Cpu, 60_000, 200_000, Some(60_000));
        assert_eq!(got, vec![(60_000, 2.0), (150_000, 4.0)]);
        // A change exactly at `from` is the value in force, once.
        let raw = c.range("w", Resource::Cpu, 50_000, 1_000_000, None);
        assert_eq!(
            raw,
            vec![
                (50_000, 2.0),
                (130_000, 3.0),
                (150_000, 4.0),
                (200_000, 5.0)
            ]
        );
        // Before the first plan: nothing in force.
        assert_eq!(c.range("w", Resource::Cpu, -10, 1, None), vec![(0, 1.0)]);
        assert!(c.range("x", Resource::Cpu, 0, 1, None).is_empty());
    }
}
