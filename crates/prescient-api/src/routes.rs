//! The `/api/v1` handlers (the series endpoint is in [`crate::series`]).
//!
//! Reads come from the loop's latest view ([`ControlHandle::view`]) and the
//! store; writes go to the store (events, intents) or to the loop as
//! [`Command`]s, and each is recorded in the audit log with its caller.
//!
//! [`ControlHandle::view`]: prescient_agent::control::ControlHandle::view

use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use prescient_agent::config::Config;
use prescient_agent::control::{Command, LiveView};
use prescient_core::{HostId, TimestampMs};
use prescient_forecast::events::{
    CronSpec, Effect, Event, Intent, IntentStart, Schedule, Selector, StoredEvent,
};
use prescient_store::{AuditEntry, EventId, NewEvent, StoreError};

use crate::auth::{Admin, Identity, Operator};
use crate::dto::*;
use crate::error::{ApiError, ErrorBody};
use crate::parse::{JsonBody, Params, TomlBody, clip, path_id};
use crate::state::AppState;

/// The OpenAPI tag of every `/api/v1` route.
pub const TAG: &str = "prescient";

/// A day, ms: the default range of history queries.
pub const DAY_MS: i64 = 86_400_000;

/// The agent's "now": the view's time (a replayed trace's clock in replay),
/// or the wall clock before the loop's first pass.
pub fn now_of(view: &LiveView) -> TimestampMs {
    if view.updated_at > 0 {
        view.updated_at
    } else {
        wall_ms()
    }
}

/// Milliseconds since the epoch by the wall clock.
pub fn wall_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn params(q: Option<String>) -> Result<Params, ApiError> {
    Params::parse(q.as_deref().unwrap_or(""))
}

/// Appends an audit entry for a call made by `who`.
async fn audit(
    state: &AppState,
    who: &Identity,
    action: &str,
    target: String,
    before: Option<String>,
    after: Option<String>,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        ts: now_of(&state.control.view()),
        actor: who.actor(),
        action: action.into(),
        target,
        before,
        after,
        reason: format!("through the API from {}", who.address),
    };
    state
        .with_store_mut(move |s| Ok(s.append_audit(&entry)?))
        .await
        .map(|_| ())
}

/// Sends a command built around a reply channel, and waits for the loop's
/// answer (503 when it has stopped or does not answer in time).
async fn ask<T: Send + 'static, E: Send + 'static>(
    state: &AppState,
    make: impl FnOnce(Sender<Result<T, E>>) -> Command,
) -> Result<Result<T, E>, ApiError> {
    let (tx, rx) = channel();
    if !state.control.send(make(tx)) {
        return Err(ApiError::Unavailable("the agent loop has stopped".into()));
    }
    let timeout = state.reply_timeout;
    let got = tokio::task::spawn_blocking(move || rx.recv_timeout(timeout))
        .await
        .map_err(|e| ApiError::Internal(format!("waiting for the loop: {e}")))?;
    match got {
        Ok(answer) => Ok(answer),
        Err(RecvTimeoutError::Timeout) => Err(ApiError::Unavailable(format!(
            "the agent loop did not answer within {:.1} s",
            timeout.as_secs_f64()
        ))),
        Err(RecvTimeoutError::Disconnected) => Err(ApiError::Unavailable(
            "the agent loop stopped before answering".into(),
        )),
    }
}

// ---------------------------------------------------------------------------
// Reads

/// Whether the server is up (always open).
#[utoipa::path(get, path = "/api/v1/health", tag = TAG, security(()),
    responses((status = 200, description = "The server answers", body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let view = state.control.view();
    Json(Health {
        status: "ok".into(),
        host: view.host.clone(),
        mode: view.mode,
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// The loop: mode, policy, times, counters, stage durations, store.
#[utoipa::path(get, path = "/api/v1/status", tag = TAG,
    responses((status = 200, description = "The loop's state", body = Status),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> Result<Json<Status>, ApiError> {
    let view = state.control.view();
    // The counters as a map, so that a counter the loop adds shows without
    // a change here.
    let counters = match serde_json::to_value(&view.counters) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| v.as_u64().map(|v| (k, v)))
            .collect(),
        _ => Default::default(),
    };
    let stages = view
        .times
        .stages
        .iter()
        .map(|(k, s)| {
            (
                (*k).to_string(),
                StageStatsDto {
                    count: s.count,
                    sum_seconds: s.sum_seconds,
                    last_seconds: s.last_seconds,
                    max_seconds: s.max_seconds,
                    mean_seconds: s.mean_seconds(),
                },
            )
        })
        .collect();
    Ok(Json(Status {
        host: view.host.clone(),
        mode: view.mode,
        policy: view.policy.clone(),
        started_at: view.started_at,
        updated_at: view.updated_at,
        counters,
        stages,
        store: StoreStateDto {
            path: view.store.path.clone(),
            stored_samples: view.store.stored_samples,
            buffered_samples: view.store.buffered_samples as u64,
            dropped_samples: view.store.dropped_samples,
            failing: view.store.failing.clone(),
        },
        workloads: view.workloads.len(),
    }))
}

/// The workloads tracked, with usage, allocation and forecast per resource.
#[utoipa::path(get, path = "/api/v1/workloads", tag = TAG,
    responses((status = 200, body = Vec<WorkloadDto>), (status = 401, body = ErrorBody)))]
pub async fn workloads(State(state): State<AppState>) -> Json<Vec<WorkloadDto>> {
    let view = state.control.view();
    Json(view.workloads.iter().map(WorkloadDto::from).collect())
}

/// One workload.
#[utoipa::path(get, path = "/api/v1/workloads/{id}", tag = TAG,
    params(("id" = String, Path, description = "The workload's id")),
    responses((status = 200, body = WorkloadDto), (status = 404, body = ErrorBody)))]
pub async fn workload(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<WorkloadDto>, ApiError> {
    path_id("workload", &id)?;
    let view = state.control.view();
    view.workloads
        .iter()
        .find(|w| w.id == id)
        .map(|w| Json(WorkloadDto::from(w)))
        .ok_or(ApiError::NotFound {
            what: "workload",
            id: clip(&id),
        })
}

/// The newest plan of each root pool, with each entry's reason.
#[utoipa::path(get, path = "/api/v1/plans", tag = TAG,
    responses((status = 200, body = Vec<PlanDto>), (status = 401, body = ErrorBody)))]
pub async fn plans(State(state): State<AppState>) -> Json<Vec<PlanDto>> {
    let view = state.control.view();
    Json(view.plans.iter().map(|p| PlanDto::new(None, p)).collect())
}

/// Most plans one history query returns.
pub const MAX_PLANS: usize = 10_000;

/// Stored plans made in `[from, to)`, oldest first.
#[utoipa::path(get, path = "/api/v1/plans/history", tag = TAG,
    params(
        ("pool" = Option<String>, Query, description = "One pool (default: every pool)"),
        ("from" = Option<i64>, Query, description = "ms; default: `to` - 1 day"),
        ("to" = Option<i64>, Query, description = "ms, exclusive; default: the view's time"),
        ("limit" = Option<usize>, Query, description = "At most this many, the newest (default and maximum 10000)")),
    responses((status = 200, body = Vec<PlanDto>), (status = 400, body = ErrorBody)))]
pub async fn plan_history(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<PlanDto>>, ApiError> {
    let mut p = params(q)?;
    let pool = p.take("pool");
    let view = state.control.view();
    let (from, to) = range(&mut p, &view)?;
    let limit = p.count("limit", MAX_PLANS)?.unwrap_or(MAX_PLANS);
    p.finish()?;
    let mut pools: Vec<String> = match pool {
        Some(pool) => vec![pool],
        None => view
            .pools
            .iter()
            .map(|p| p.name.clone())
            .chain(view.plans.iter().map(|p| p.pool.0.clone()))
            .collect(),
    };
    let all_pools = pools.is_empty();
    pools.sort();
    pools.dedup();
    let mut out = state
        .with_store(move |s| {
            let mut pools = pools;
            if all_pools {
                // No view yet: the pools that have plans in the store.
                pools = s
                    .latest_plans()?
                    .into_iter()
                    .map(|(_, p)| p.pool.0)
                    .collect();
            }
            let mut out = Vec::new();
            for pool in pools {
                for (id, plan) in s.plans(&HostId(pool), from, to)? {
                    out.push(PlanDto::new(Some(id.0), &plan));
                }
            }
            Ok(out)
        })
        .await?;
    out.sort_by_key(|p| (p.made_at, p.id));
    let skip = out.len().saturating_sub(limit);
    out.drain(..skip);
    Ok(Json(out))
}

/// `from` and `to` of a history query: `to` defaults to the view's time
/// (inclusive of it), `from` to a day before `to`; `from <= to`.
pub(crate) fn range(p: &mut Params, view: &LiveView) -> Result<(i64, i64), ApiError> {
    let to = p
        .ms("to")?
        .unwrap_or_else(|| now_of(view).saturating_add(1));
    let from = p.ms("from")?.unwrap_or_else(|| to.saturating_sub(DAY_MS));
    if from > to {
        return Err(ApiError::bad(
            "from",
            format!("from ({from} ms) is after to ({to} ms)"),
        ));
    }
    Ok((from, to))
}

/// The pools and their capacities.
#[utoipa::path(get, path = "/api/v1/pools", tag = TAG,
    responses((status = 200, body = Vec<PoolDto>), (status = 401, body = ErrorBody)))]
pub async fn pools(State(state): State<AppState>) -> Json<Vec<PoolDto>> {
    let view = state.control.view();
    Json(view.pools.iter().map(PoolDto::from).collect())
}

/// The ensemble weights and calibration of every series.
#[utoipa::path(get, path = "/api/v1/models", tag = TAG,
    responses((status = 200, body = Vec<SeriesModelsDto>), (status = 401, body = ErrorBody)))]
pub async fn models(State(state): State<AppState>) -> Json<Vec<SeriesModelsDto>> {
    let view = state.control.view();
    Json(
        view.workloads
            .iter()
            .flat_map(|w| w.resources.iter().map(move |r| SeriesModelsDto::new(w, r)))
            .collect(),
    )
}

/// Recent anomalies, oldest first.
#[utoipa::path(get, path = "/api/v1/anomalies", tag = TAG,
    responses((status = 200, body = Vec<AnomalyDto>), (status = 401, body = ErrorBody)))]
pub async fn anomalies(State(state): State<AppState>) -> Json<Vec<AnomalyDto>> {
    let view = state.control.view();
    Json(view.anomalies.iter().map(AnomalyDto::from).collect())
}

/// Alerts firing, pending, or resolved recently.
#[utoipa::path(get, path = "/api/v1/alerts", tag = TAG,
    responses((status = 200, body = Vec<AlertDto>), (status = 401, body = ErrorBody)))]
pub async fn alerts(State(state): State<AppState>) -> Json<Vec<AlertDto>> {
    let view = state.control.view();
    Json(view.alerts.iter().map(AlertDto::from).collect())
}

/// Most audit entries one query returns.
pub const MAX_AUDIT: usize = 10_000;

/// The audit log, a page at a time: oldest first from `since` (the
/// default), or newest first (`order=desc`), paging back with `before`.
#[utoipa::path(get, path = "/api/v1/audit", tag = TAG,
    params(
        ("order" = Option<String>, Query, description = "`asc` (default): oldest first, by time then id; `desc`: newest first, by id (the order entries were appended in)"),
        ("since" = Option<i64>, Query, description = "ms; only entries at or after (default: all)"),
        ("before" = Option<i64>, Query, description = "With `order=desc`: only entries with a smaller id. The next page back is `before` = the last id of this one"),
        ("after" = Option<i64>, Query, description = "With `order=asc`: only entries with a larger id, by id: the page just newer than entry `after`"),
        ("limit" = Option<usize>, Query, description = "At most this many (default 100, maximum 10000)")),
    responses((status = 200, body = Vec<AuditDto>), (status = 400, body = ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<AuditDto>>, ApiError> {
    let mut p = params(q)?;
    let newest_first = match p.take("order").as_deref().map(str::trim) {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "order",
                format!(
                    "query parameter order={:?}: expected asc or desc",
                    clip(other)
                ),
            ));
        }
    };
    let since = p.ms("since")?.unwrap_or(i64::MIN);
    let before = audit_id(&mut p, "before")?;
    let after = audit_id(&mut p, "after")?;
    let limit = p.count("limit", MAX_AUDIT)?.unwrap_or(100);
    p.finish()?;
    if newest_first && after.is_some() {
        return Err(ApiError::bad(
            "after",
            "query parameter after pages oldest first: use it with order=asc (or use before with order=desc)",
        ));
    }
    if !newest_first && before.is_some() {
        return Err(ApiError::bad(
            "before",
            "query parameter before pages newest first: add order=desc (or use after with order=asc)",
        ));
    }
    let rows = state
        .with_store(move |s| {
            Ok(match (newest_first, after) {
                (true, _) => s.audit_before(before, since, limit)?,
                (false, Some(after)) => s.audit_after(after, since, limit)?,
                (false, None) => s.audit_since(since, limit)?,
            })
        })
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, e)| AuditDto {
                id,
                ts: e.ts,
                actor: e.actor,
                action: e.action,
                target: e.target,
                before: e.before,
                after: e.after,
                reason: e.reason,
            })
            .collect(),
    ))
}

/// Takes an audit entry id (an integer >= 0).
fn audit_id(p: &mut Params, name: &str) -> Result<Option<i64>, ApiError> {
    p.take(name)
        .map(|v| match v.trim().parse::<i64>() {
            Ok(id) if id >= 0 => Ok(id),
            _ => Err(ApiError::bad(
                name,
                format!(
                    "query parameter {name}={:?}: expected an audit entry id (an integer >= 0)",
                    clip(&v)
                ),
            )),
        })
        .transpose()
}

/// The configuration in force: the loop's (after reloads and `PUT
/// /config`), or the one the server started with before the loop's first
/// view.
fn config_in_force(state: &AppState) -> Arc<Config> {
    state
        .control
        .view()
        .config
        .clone()
        .unwrap_or_else(|| Arc::clone(&state.config))
}

/// `config` as JSON, every `api.token[].sha256` replaced by `<redacted>`.
fn redacted(config: &Config) -> Result<serde_json::Value, ApiError> {
    let mut value = serde_json::to_value(config)
        .map_err(|e| ApiError::Internal(format!("serialising the configuration: {e}")))?;
    if let Some(tokens) = value
        .get_mut("api")
        .and_then(|a| a.get_mut("token"))
        .and_then(|t| t.as_array_mut())
    {
        for t in tokens {
            if let Some(h) = t.get_mut("sha256") {
                *h = serde_json::Value::String("<redacted>".into());
            }
        }
    }
    Ok(value)
}

/// The configuration in force, token hashes redacted.
#[utoipa::path(get, path = "/api/v1/config", tag = TAG,
    responses((status = 200, description = "The configuration in force (as `prescient config` shows it, after reloads and `PUT /config`), with every `api.token[].sha256` replaced by `<redacted>`", body = Object),
        (status = 401, body = ErrorBody)))]
pub async fn config(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(redacted(&config_in_force(&state))?))
}

/// Replaces the configuration (admin): the body is the whole configuration
/// file's text (TOML), read in place of the file (the environment's and
/// the command line's overrides still apply), validated and applied as a
/// SIGHUP reload is. An invalid one is refused (422 naming each bad key and
/// its value) and the running one kept. Parts set up once (the store's
/// path, the cgroup subtree, the mode, guardrails, the host name, `[api]`,
/// `[history]`) take a restart: they are kept, and the answer says so. The
/// file on disk is not changed: a SIGHUP or a restart reads it again.
#[utoipa::path(put, path = "/api/v1/config", tag = TAG,
    request_body(content = String, content_type = "application/toml",
        description = "The configuration, TOML (`application/toml`, `text/toml` or `text/plain`)"),
    responses((status = 200, description = "Applied", body = ConfigChanged),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "Refused, the running configuration kept: `detail.issues` names each bad key and value (`detail.key` and `detail.at` for text that does not parse)", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn put_config(
    State(state): State<AppState>,
    Admin(who): Admin,
    TomlBody(toml): TomlBody,
) -> Result<Json<ConfigChanged>, ApiError> {
    let by = who.caller();
    let answer = ask(&state, |reply| Command::SetConfig { toml, by, reply }).await?;
    let change = answer.map_err(ApiError::ConfigRefused)?;
    let mut summary = format!("changed: {}", or_nothing(&change.changed));
    if !change.kept.is_empty() {
        summary.push_str(&format!(
            "; kept until a restart: {}",
            change.kept.join("; ")
        ));
    }
    audit(
        &state,
        &who,
        "api.config",
        "agent/config".into(),
        None,
        Some(summary),
    )
    .await?;
    // The loop answers after publishing the view that holds it.
    let config = redacted(&config_in_force(&state))?;
    Ok(Json(ConfigChanged {
        changed: change.changed,
        kept: change.kept,
        config,
    }))
}

/// `a, b`, or `nothing`.
fn or_nothing(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

// ---------------------------------------------------------------------------
// Events and intents

fn event_dto(e: &prescient_store::Event) -> Result<EventDto, ApiError> {
    let stored = StoredEvent {
        kind: e.event.kind.clone(),
        selector: e.event.selector.clone(),
        start: e.event.start,
        end: e.event.end,
        effect: e.event.effect.clone(),
    };
    let ev = Event::from_stored(e.id.0, &stored, e.cancelled_at)
        .map_err(|err| ApiError::Internal(err.to_string()))?;
    Ok(EventDto {
        id: e.id.0,
        kind: ev.kind,
        name: ev.name,
        selector: ev.selector.as_str().to_string(),
        resource: ev.resource,
        schedule: match ev.schedule {
            Schedule::Once { start, end } => ScheduleBody::Once { start, end },
            Schedule::Recurring {
                cron,
                duration_ms,
                from,
                until,
            } => ScheduleBody::Cron {
                spec: cron.as_str().to_string(),
                duration_ms,
                from,
                until,
            },
        },
        effect: match ev.effect {
            Effect::Multiply(f) => EffectBody::Multiply(f),
            Effect::Add(x) => EffectBody::Add(x),
        },
        created_by: e.event.created_by.clone(),
        created_at: e.event.created_at,
        cancelled_at: e.cancelled_at,
    })
}

/// The stored events overlapping `[from, to)` whose rows describe an event
/// (a row that does not is logged and left out).
async fn read_events(
    state: &AppState,
    from: i64,
    to: i64,
    include_cancelled: bool,
    only_kind: Option<&'static str>,
) -> Result<Vec<EventDto>, ApiError> {
    let rows = state
        .with_store(move |s| Ok(s.events(from, to, include_cancelled)?))
        .await?;
    let mut out = Vec::new();
    for row in rows {
        if only_kind.is_some_and(|k| row.event.kind != k) {
            continue;
        }
        match event_dto(&row) {
            Ok(dto) => out.push(dto),
            Err(e) => log::warn!("API: events row {}: {e}", row.id),
        }
    }
    Ok(out)
}

fn event_filter(q: Option<String>) -> Result<(i64, i64, bool), ApiError> {
    let mut p = params(q)?;
    let from = p.ms("from")?.unwrap_or(i64::MIN);
    let to = p.ms("to")?.unwrap_or(i64::MAX);
    let cancelled = p.flag("include_cancelled")?.unwrap_or(false);
    p.finish()?;
    if from > to {
        return Err(ApiError::bad(
            "from",
            format!("from ({from} ms) is after to ({to} ms)"),
        ));
    }
    Ok((from, to, cancelled))
}

/// The events (intents included) overlapping `[from, to)`, by start.
#[utoipa::path(get, path = "/api/v1/events", tag = TAG,
    params(
        ("from" = Option<i64>, Query, description = "ms (default: no bound)"),
        ("to" = Option<i64>, Query, description = "ms, exclusive (default: no bound)"),
        ("include_cancelled" = Option<bool>, Query, description = "Also cancelled ones (default false)")),
    responses((status = 200, body = Vec<EventDto>), (status = 400, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<EventDto>>, ApiError> {
    let (from, to, cancelled) = event_filter(q)?;
    Ok(Json(read_events(&state, from, to, cancelled, None).await?))
}

/// The forecast's event of a body, checked (422 naming what is wrong).
pub fn event_of_body(body: &NewEventBody) -> Result<Event, ApiError> {
    let name = body.name.clone().unwrap_or_else(|| body.kind.clone());
    if body.kind.trim().is_empty() {
        return Err(ApiError::Unprocessable("kind: must not be empty".into()));
    }
    let selector = Selector::parse(&body.selector)
        .map_err(|e| ApiError::Unprocessable(format!("selector: {e}")))?;
    let schedule = match &body.schedule {
        ScheduleBody::Once { start, end } => Schedule::Once {
            start: *start,
            end: *end,
        },
        ScheduleBody::Cron {
            spec,
            duration_ms,
            from,
            until,
        } => Schedule::Recurring {
            cron: CronSpec::parse(spec)
                .map_err(|e| ApiError::Unprocessable(format!("schedule.cron.spec: {e}")))?,
            duration_ms: *duration_ms,
            from: *from,
            until: *until,
        },
    };
    let event = Event {
        id: 0,
        name,
        kind: body.kind.clone(),
        selector,
        resource: body.resource,
        schedule,
        effect: effect_of(body.effect),
        cancelled_at: None,
    };
    event
        .validate()
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    Ok(event)
}

fn effect_of(e: EffectBody) -> Effect {
    match e {
        EffectBody::Multiply(f) => Effect::Multiply(f),
        EffectBody::Add(x) => Effect::Add(x),
    }
}

/// The forecast's event of an intent body announced at `now` (422 naming
/// what is wrong).
pub fn event_of_intent(body: &NewIntentBody, now: TimestampMs) -> Result<Event, ApiError> {
    let selector = Selector::parse(&body.selector)
        .map_err(|e| ApiError::Unprocessable(format!("selector: {e}")))?;
    let intent = Intent {
        name: body.name.clone(),
        selector,
        resource: body.resource,
        start: match body.start {
            IntentStartBody::Now => IntentStart::Now,
            IntentStartBody::At(t) => IntentStart::At(t),
            IntentStartBody::NextTimeOfDay { hour, minute } => {
                IntentStart::NextTimeOfDay { hour, minute }
            }
        },
        duration_ms: body.duration_ms,
        effect: effect_of(body.effect),
    };
    intent
        .to_event(0, now)
        .map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// Stores `event`, tells the loop, and returns it as stored.
async fn store_event(
    state: &AppState,
    who: &Identity,
    event: Event,
) -> Result<(StatusCode, Json<EventDto>), ApiError> {
    let stored = event.to_stored();
    let new = NewEvent {
        kind: stored.kind,
        selector: stored.selector,
        start: stored.start,
        end: stored.end,
        effect: stored.effect,
        created_by: who.actor(),
        created_at: now_of(&state.control.view()),
    };
    // The store writes the audit entry (`event.create`) in the same
    // transaction as the event.
    let row = state
        .with_store_mut(move |s| {
            let id = s.create_event(&new)?;
            Ok(prescient_store::Event {
                id,
                event: new,
                cancelled_at: None,
            })
        })
        .await?;
    // Not sent: the loop has stopped, and reads the store when it starts.
    state
        .control
        .send(Command::EventsChanged { by: who.caller() });
    Ok((StatusCode::CREATED, Json(event_dto(&row)?)))
}

/// Creates an event (operator).
#[utoipa::path(post, path = "/api/v1/events", tag = TAG, request_body = NewEventBody,
    responses((status = 201, body = EventDto), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_event(
    State(state): State<AppState>,
    Operator(who): Operator,
    JsonBody(body): JsonBody<NewEventBody>,
) -> Result<(StatusCode, Json<EventDto>), ApiError> {
    let event = event_of_body(&body)?;
    store_event(&state, &who, event).await
}

/// Cancels an event (operator).
#[utoipa::path(delete, path = "/api/v1/events/{id}", tag = TAG,
    params(("id" = i64, Path, description = "The event's id")),
    responses((status = 200, body = EventDto), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel_event(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path(id): Path<String>,
) -> Result<Json<EventDto>, ApiError> {
    path_id("event", &id)?;
    let n: i64 = id
        .parse()
        .map_err(|_| ApiError::bad("id", format!("event id {:?} is not an integer", clip(&id))))?;
    let at = now_of(&state.control.view());
    let actor = who.actor();
    let row = state
        .with_store_mut(move |s| {
            match s.cancel_event(EventId(n), &actor, at, "cancelled through the API") {
                Ok(()) => {}
                Err(StoreError::UnknownEvent { .. }) => {
                    return Err(ApiError::NotFound {
                        what: "event",
                        id: n.to_string(),
                    });
                }
                Err(StoreError::EventAlreadyCancelled { at, .. }) => {
                    return Err(ApiError::Conflict(format!(
                        "event {n} was already cancelled at {at} ms"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            s.events(i64::MIN, i64::MAX, true)?
                .into_iter()
                .find(|e| e.id.0 == n)
                .ok_or_else(|| ApiError::Internal(format!("event {n} vanished")))
        })
        .await?;
    state
        .control
        .send(Command::EventsChanged { by: who.caller() });
    Ok(Json(event_dto(&row)?))
}

/// The intents (events of kind `intent`).
#[utoipa::path(get, path = "/api/v1/intents", tag = TAG,
    params(
        ("from" = Option<i64>, Query, description = "ms (default: no bound)"),
        ("to" = Option<i64>, Query, description = "ms, exclusive (default: no bound)"),
        ("include_cancelled" = Option<bool>, Query, description = "Also cancelled ones (default false)")),
    responses((status = 200, body = Vec<EventDto>), (status = 400, body = ErrorBody)))]
pub async fn list_intents(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Vec<EventDto>>, ApiError> {
    let (from, to, cancelled) = event_filter(q)?;
    Ok(Json(
        read_events(&state, from, to, cancelled, Some("intent")).await?,
    ))
}

/// Announces an intent: a one-off event of kind `intent` (operator).
#[utoipa::path(post, path = "/api/v1/intents", tag = TAG, request_body = NewIntentBody,
    responses((status = 201, body = EventDto), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_intent(
    State(state): State<AppState>,
    Operator(who): Operator,
    JsonBody(body): JsonBody<NewIntentBody>,
) -> Result<(StatusCode, Json<EventDto>), ApiError> {
    let event = event_of_intent(&body, now_of(&state.control.view()))?;
    store_event(&state, &who, event).await
}

// ---------------------------------------------------------------------------
// Requests

/// Resource requests, open and recently ended.
#[utoipa::path(get, path = "/api/v1/requests", tag = TAG,
    responses((status = 200, body = Vec<RequestDto>), (status = 401, body = ErrorBody)))]
pub async fn list_requests(State(state): State<AppState>) -> Json<Vec<RequestDto>> {
    let view = state.control.view();
    Json(view.requests.iter().map(RequestDto::from).collect())
}

/// Asks for more than a workload's forecast (operator). The loop records
/// it at once; its outcome comes with the next plan.
#[utoipa::path(post, path = "/api/v1/requests", tag = TAG, request_body = NewRequestBody,
    responses((status = 202, body = RequestDto), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 422, description = "The loop refused it", body = ErrorBody),
        (status = 503, description = "The loop did not answer", body = ErrorBody)))]
pub async fn create_request(
    State(state): State<AppState>,
    Operator(who): Operator,
    JsonBody(body): JsonBody<NewRequestBody>,
) -> Result<(StatusCode, Json<RequestDto>), ApiError> {
    let by = who.caller();
    let request = body.clone().into();
    let answer = ask(&state, |reply| Command::Request { request, by, reply }).await?;
    let view = answer.map_err(ApiError::Unprocessable)?;
    let dto = RequestDto::from(&view);
    audit(
        &state,
        &who,
        "api.request.create",
        format!("request/{}", view.id),
        None,
        serde_json::to_string(&body).ok(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(dto)))
}

/// Cancels a request (operator).
#[utoipa::path(delete, path = "/api/v1/requests/{id}", tag = TAG,
    params(("id" = u64, Path, description = "The request's id")),
    responses((status = 200, body = RequestDto), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn cancel_request(
    State(state): State<AppState>,
    Operator(who): Operator,
    Path(id): Path<String>,
) -> Result<Json<RequestDto>, ApiError> {
    path_id("request", &id)?;
    let n: u64 = id.parse().map_err(|_| {
        ApiError::bad(
            "id",
            format!("request id {:?} is not a non-negative integer", clip(&id)),
        )
    })?;
    if !state.control.view().requests.iter().any(|r| r.id == n) {
        return Err(ApiError::NotFound {
            what: "request",
            id: n.to_string(),
        });
    }
    let by = who.caller();
    let answer = ask(&state, |reply| Command::CancelRequest { id: n, by, reply }).await?;
    let view = answer.map_err(ApiError::Conflict)?;
    audit(
        &state,
        &who,
        "api.request.cancel",
        format!("request/{n}"),
        None,
        None,
    )
    .await?;
    Ok(Json(RequestDto::from(&view)))
}

// ---------------------------------------------------------------------------
// Admin

/// Switches between recommend and enforce (admin).
#[utoipa::path(put, path = "/api/v1/mode", tag = TAG, request_body = ModeBody,
    responses((status = 200, body = ModeBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The loop could not change mode", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn set_mode(
    State(state): State<AppState>,
    Admin(who): Admin,
    JsonBody(body): JsonBody<ModeBody>,
) -> Result<Json<ModeBody>, ApiError> {
    let before = state.control.view().mode;
    let by = who.caller();
    let mode = body.mode.into();
    let answer = ask(&state, |reply| Command::SetMode { mode, by, reply }).await?;
    let now = answer.map_err(ApiError::Conflict)?;
    audit(
        &state,
        &who,
        "api.mode",
        "agent/mode".into(),
        Some(before.to_string()),
        Some(now.to_string()),
    )
    .await?;
    Ok(Json(ModeBody {
        mode: match now {
            prescient_agent::Mode::Recommend => ModeName::Recommend,
            prescient_agent::Mode::Enforce => ModeName::Enforce,
        },
    }))
}

/// Plans (and enforces) at once instead of at the next interval (admin).
#[utoipa::path(post, path = "/api/v1/replan", tag = TAG,
    responses((status = 202, body = Accepted), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn replan(
    State(state): State<AppState>,
    Admin(who): Admin,
) -> Result<impl IntoResponse, ApiError> {
    if !state.control.send(Command::Replan { by: who.caller() }) {
        return Err(ApiError::Unavailable("the agent loop has stopped".into()));
    }
    audit(&state, &who, "api.replan", "agent/plan".into(), None, None).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: "replan".into(),
        }),
    ))
}
