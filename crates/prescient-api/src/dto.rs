//! The API's request and response bodies. The agent's and the store's own
//! types are mirrored here (rather than serialised directly) so that the
//! OpenAPI document describes exactly what goes over the wire; each
//! conversion is a `From` below.

use std::collections::BTreeMap;

use prescient_agent::config::Mode;
use prescient_agent::control::{
    AlertState, AlertView, AnomalyView, Caller, NewRequest, PoolView, RequestState, RequestView,
    ResourceView, WorkloadView,
};
use prescient_core::{Plan, PlanEntry, Resource, TimestampMs};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A resource, as named in the API (the store's and the CLI's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceName {
    /// CPU, cores.
    Cpu,
    /// Memory, bytes.
    Memory,
    /// Block-device reads, bytes/s.
    IoRead,
    /// Block-device writes, bytes/s.
    IoWrite,
    /// Network received, bytes/s.
    NetRx,
    /// Network sent, bytes/s.
    NetTx,
    /// Disk activity, percent.
    DiskIo,
    /// Block-device read operations, ops/s.
    IoReadOps,
    /// Block-device write operations, ops/s.
    IoWriteOps,
}

/// A mode of the agent, as named in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    /// Plans and records; changes nothing.
    Recommend,
    /// Applies plans to cgroups.
    Enforce,
}

impl From<ModeName> for Mode {
    fn from(m: ModeName) -> Mode {
        match m {
            ModeName::Recommend => Mode::Recommend,
            ModeName::Enforce => Mode::Enforce,
        }
    }
}

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The host's name (empty before the loop's first pass).
    pub host: String,
    /// The mode in force.
    #[schema(value_type = ModeName)]
    pub mode: Mode,
    /// The server's version.
    pub version: String,
}

/// One stage's durations.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StageStatsDto {
    /// Times the stage ran.
    pub count: u64,
    /// Total time, seconds.
    pub sum_seconds: f64,
    /// The last run, seconds.
    pub last_seconds: f64,
    /// The longest run, seconds.
    pub max_seconds: f64,
    /// The mean, seconds.
    pub mean_seconds: f64,
}

/// The store as the loop sees it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StoreStateDto {
    /// Its file.
    pub path: String,
    /// Samples written this run.
    pub stored_samples: u64,
    /// Samples held in memory, not yet written.
    pub buffered_samples: u64,
    /// Samples dropped because memory was full while the store failed.
    pub dropped_samples: u64,
    /// Why writes fail, while they do.
    pub failing: Option<String>,
}

/// `GET /status`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// The host's name in the store.
    pub host: String,
    /// The mode in force.
    #[schema(value_type = ModeName)]
    pub mode: Mode,
    /// Who sizes the workloads.
    pub policy: String,
    /// When the loop started, ms since the epoch (the agent's clock).
    pub started_at: TimestampMs,
    /// When the view was published (the agent's clock: a replayed trace's
    /// time in replay).
    pub updated_at: TimestampMs,
    /// What the loop did, by counter name (`sample_passes`, `plans`,
    /// `writes`, ...).
    pub counters: BTreeMap<String, u64>,
    /// Each stage's durations, by stage name.
    pub stages: BTreeMap<String, StageStatsDto>,
    /// The store.
    pub store: StoreStateDto,
    /// Workloads tracked.
    pub workloads: usize,
}

/// A quantile of a forecast.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuantileDto {
    /// The level, in (0, 1).
    pub level: f64,
    /// The value, in the resource's unit.
    pub value: f64,
}

/// A model's weight in a series' ensemble.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelWeightDto {
    /// The model.
    pub model: String,
    /// Its weight (they add up to 1).
    pub weight: f64,
}

/// The calibration of one quantile level.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CalibrationDto {
    /// The nominal level.
    pub level: f64,
    /// The level the raw forecast is read at after adjustment.
    pub adjusted_level: f64,
    /// Realised coverage of this level so far.
    pub realised: Option<f64>,
}

/// One resource of a workload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResourceDto {
    /// The resource.
    #[schema(value_type = ResourceName)]
    pub resource: Resource,
    /// Its unit (`cores`, `bytes`, ...).
    pub unit: String,
    /// The newest sample.
    pub usage: Option<f64>,
    /// The allocation of the plan in force.
    pub allocation: Option<f64>,
    /// The SLO quantile of its policy.
    pub slo_quantile: f64,
    /// The next step's forecast, levels increasing.
    pub forecast: Vec<QuantileDto>,
    /// Realised share of recent steps at or under the SLO quantile.
    pub coverage: Option<f64>,
    /// Rollup steps learnt.
    pub observations: u64,
}

impl From<&ResourceView> for ResourceDto {
    fn from(r: &ResourceView) -> Self {
        ResourceDto {
            resource: r.resource,
            unit: r.resource.unit().into(),
            usage: r.usage,
            allocation: r.allocation,
            slo_quantile: r.slo_quantile,
            forecast: r
                .forecast
                .iter()
                .map(|&(level, value)| QuantileDto { level, value })
                .collect(),
            coverage: r.coverage,
            observations: r.observations,
        }
    }
}

/// A tracked workload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkloadDto {
    /// Its id.
    pub id: String,
    /// The `[[workload]]` selector that found it.
    pub selector: String,
    /// Its cgroup, relative to the agent's subtree.
    pub cgroup: String,
    /// Its pool.
    pub pool: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Per resource.
    pub resources: Vec<ResourceDto>,
}

impl From<&WorkloadView> for WorkloadDto {
    fn from(w: &WorkloadView) -> Self {
        WorkloadDto {
            id: w.id.clone(),
            selector: w.selector.clone(),
            cgroup: w.cgroup.clone(),
            pool: w.pool.clone(),
            labels: w.labels.clone(),
            resources: w.resources.iter().map(ResourceDto::from).collect(),
        }
    }
}

/// The models of one series.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeriesModelsDto {
    /// The workload.
    pub workload: String,
    /// The resource.
    #[schema(value_type = ResourceName)]
    pub resource: Resource,
    /// Rollup steps learnt.
    pub observations: u64,
    /// Realised coverage of the SLO quantile.
    pub coverage: Option<f64>,
    /// The SLO quantile.
    pub slo_quantile: f64,
    /// The ensemble's weights.
    pub weights: Vec<ModelWeightDto>,
    /// The calibration per level.
    pub calibration: Vec<CalibrationDto>,
}

impl SeriesModelsDto {
    /// The models of `r`, a resource of workload `w`.
    pub fn new(w: &WorkloadView, r: &ResourceView) -> Self {
        SeriesModelsDto {
            workload: w.id.clone(),
            resource: r.resource,
            observations: r.observations,
            coverage: r.coverage,
            slo_quantile: r.slo_quantile,
            weights: r
                .weights
                .iter()
                .map(|m| ModelWeightDto {
                    model: m.model.clone(),
                    weight: m.weight,
                })
                .collect(),
            calibration: r
                .calibration
                .iter()
                .map(|c| CalibrationDto {
                    level: c.level,
                    adjusted_level: c.adjusted_level,
                    realised: c.realised,
                })
                .collect(),
        }
    }
}

/// A pool and its capacity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PoolDto {
    /// Its name.
    pub name: String,
    /// The pool it nests in.
    pub parent: Option<String>,
    /// Capacity per resource name, in the resource's unit.
    pub capacity: BTreeMap<String, f64>,
}

impl From<&PoolView> for PoolDto {
    fn from(p: &PoolView) -> Self {
        PoolDto {
            name: p.name.clone(),
            parent: p.parent.clone(),
            capacity: p
                .capacity
                .iter()
                .map(|(r, c)| (r.as_str().to_string(), *c))
                .collect(),
        }
    }
}

/// One workload's allocation of one resource in a plan.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanEntryDto {
    /// The workload.
    pub workload: String,
    /// The resource.
    #[schema(value_type = ResourceName)]
    pub resource: Resource,
    /// The allocation, in the resource's unit.
    pub allocation: f64,
    /// Probability that it covers demand over the planned steps.
    pub coverage: f64,
    /// Expected demand left unmet.
    pub expected_unmet: f64,
    /// Why.
    pub reason: String,
}

impl From<&PlanEntry> for PlanEntryDto {
    fn from(e: &PlanEntry) -> Self {
        PlanEntryDto {
            workload: e.workload.0.clone(),
            resource: e.resource,
            allocation: e.allocation,
            coverage: e.coverage,
            expected_unmet: e.expected_unmet,
            reason: e.reason.clone(),
        }
    }
}

/// A plan of one pool.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanDto {
    /// The store's id (history only).
    pub id: Option<i64>,
    /// The pool.
    pub pool: String,
    /// When it was made.
    pub made_at: TimestampMs,
    /// Whether guarantees could not all be met.
    pub degraded: bool,
    /// Per workload and resource.
    pub entries: Vec<PlanEntryDto>,
}

impl PlanDto {
    /// The DTO of `plan`, with its store id if it has one.
    pub fn new(id: Option<i64>, plan: &Plan) -> Self {
        PlanDto {
            id,
            pool: plan.pool.0.clone(),
            made_at: plan.made_at,
            degraded: plan.degraded,
            entries: plan.entries.iter().map(PlanEntryDto::from).collect(),
        }
    }
}

/// An anomaly the loop found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AnomalyDto {
    /// When.
    pub at: TimestampMs,
    /// The workload.
    pub workload: String,
    /// The resource.
    #[schema(value_type = ResourceName)]
    pub resource: Resource,
    /// `memory_leak`, `level_shift` or `outlier`.
    pub kind: String,
    /// Why.
    pub reason: String,
}

impl From<&AnomalyView> for AnomalyDto {
    fn from(a: &AnomalyView) -> Self {
        AnomalyDto {
            at: a.at,
            workload: a.workload.clone(),
            resource: a.resource,
            kind: a.kind.clone(),
            reason: a.reason.clone(),
        }
    }
}

/// An alert.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertDto {
    /// `rule/subject`.
    pub id: String,
    /// The rule.
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    /// What it is about.
    pub subject: String,
    /// What holds.
    pub message: String,
    /// Since when.
    pub since: TimestampMs,
    /// When it cleared.
    pub resolved_at: Option<TimestampMs>,
}

impl From<&AlertView> for AlertDto {
    fn from(a: &AlertView) -> Self {
        AlertDto {
            id: a.id.clone(),
            rule: a.rule.clone(),
            severity: a.severity.clone(),
            state: match a.state {
                AlertState::Pending => "pending",
                AlertState::Firing => "firing",
                AlertState::Resolved => "resolved",
            }
            .into(),
            subject: a.subject.clone(),
            message: a.message.clone(),
            since: a.since,
            resolved_at: a.resolved_at,
        }
    }
}

/// `POST /requests`: ask for more than a workload's forecast.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequestBody {
    /// The workload's id.
    pub workload: String,
    /// The resource.
    #[schema(value_type = ResourceName)]
    pub resource: Resource,
    /// The allocation asked for, in total, in the resource's unit.
    pub amount: f64,
    /// Its priority class.
    pub priority: u32,
    /// Why.
    pub justification: String,
    /// For how long, seconds from now.
    pub duration_s: u64,
}

impl From<NewRequestBody> for NewRequest {
    fn from(b: NewRequestBody) -> NewRequest {
        NewRequest {
            workload: b.workload,
            resource: b.resource,
            amount: b.amount,
            priority: b.priority,
            justification: b.justification,
            duration_s: b.duration_s,
        }
    }
}

/// Who made a call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CallerDto {
    /// The token's name.
    pub name: String,
    /// The client's address.
    pub address: String,
}

impl From<&Caller> for CallerDto {
    fn from(c: &Caller) -> Self {
        CallerDto {
            name: c.name.clone(),
            address: c.address.clone(),
        }
    }
}

/// A resource request and where it stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RequestDto {
    /// Its id.
    pub id: u64,
    /// The request.
    pub request: NewRequestBody,
    /// Who made it.
    pub requested_by: CallerDto,
    /// When.
    pub created_at: TimestampMs,
    /// When it ends.
    pub until: TimestampMs,
    /// `waiting`, `granted`, `partial`, `queued`, `expired` or `cancelled`.
    pub state: String,
    /// The allocation granted at the latest plan.
    pub granted: Option<f64>,
    /// Which workloads lent capacity, or why it is queued.
    pub reason: String,
}

impl From<&RequestView> for RequestDto {
    fn from(r: &RequestView) -> Self {
        let q = &r.request;
        RequestDto {
            id: r.id,
            request: NewRequestBody {
                workload: q.workload.clone(),
                resource: q.resource,
                amount: q.amount,
                priority: q.priority,
                justification: q.justification.clone(),
                duration_s: q.duration_s,
            },
            requested_by: CallerDto::from(&r.requested_by),
            created_at: r.created_at,
            until: r.until,
            state: match r.state {
                RequestState::Waiting => "waiting",
                RequestState::Granted => "granted",
                RequestState::Partial => "partial",
                RequestState::Queued => "queued",
                RequestState::Expired => "expired",
                RequestState::Cancelled => "cancelled",
            }
            .into(),
            granted: r.granted,
            reason: r.reason.clone(),
        }
    }
}

/// When an event is active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleBody {
    /// Once, during `[start, end)`.
    Once {
        /// When it starts, ms since the epoch.
        start: TimestampMs,
        /// When it ends (exclusive).
        end: TimestampMs,
    },
    /// From each time the cron spec fires (UTC), for `duration_ms`.
    Cron {
        /// A 5-field cron spec (`0 2 * * *`).
        spec: String,
        /// How long each occurrence lasts, ms (> 0).
        duration_ms: i64,
        /// No occurrence starts before this.
        #[serde(default)]
        from: Option<TimestampMs>,
        /// No occurrence starts at or after this.
        #[serde(default)]
        until: Option<TimestampMs>,
    },
}

/// What an event does to demand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum EffectBody {
    /// Demand times this factor (>= 0).
    Multiply(f64),
    /// Demand plus this amount, in the resource's unit.
    Add(f64),
}

/// `POST /events`: a known future change in demand.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEventBody {
    /// What kind (`release`, `sale`, `maintenance`, ...).
    pub kind: String,
    /// A name for people (default: the kind).
    #[serde(default)]
    pub name: Option<String>,
    /// Which workloads: comma-separated `host=GLOB`, `workload=GLOB` (or a
    /// bare glob), `LABEL=GLOB` terms; `*` for all.
    pub selector: String,
    /// When.
    pub schedule: ScheduleBody,
    /// What it does.
    pub effect: EffectBody,
    /// The resource (all if left out; an additive effect needs one).
    #[serde(default)]
    #[schema(value_type = Option<ResourceName>)]
    pub resource: Option<Resource>,
}

/// When an intent starts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum IntentStartBody {
    /// When it is announced (the agent's clock).
    Now,
    /// At this time, ms since the epoch.
    At(TimestampMs),
    /// At the next time the UTC clock shows `hour:minute`.
    NextTimeOfDay {
        /// 0-23.
        hour: u32,
        /// 0-59.
        minute: u32,
    },
}

/// `POST /intents`: a one-off event announced now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIntentBody {
    /// A name for people.
    pub name: String,
    /// Which workloads (see `NewEventBody.selector`).
    pub selector: String,
    /// The resource (all if left out; multiply only).
    #[serde(default)]
    #[schema(value_type = Option<ResourceName>)]
    pub resource: Option<Resource>,
    /// When it starts.
    pub start: IntentStartBody,
    /// How long it lasts, ms.
    pub duration_ms: i64,
    /// What it does.
    pub effect: EffectBody,
}

/// A stored event (intents are events of kind `intent`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventDto {
    /// Its id.
    pub id: i64,
    /// What kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Which workloads.
    pub selector: String,
    /// The resource, or all.
    #[schema(value_type = Option<ResourceName>)]
    pub resource: Option<Resource>,
    /// When.
    pub schedule: ScheduleBody,
    /// What it does.
    pub effect: EffectBody,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: TimestampMs,
    /// When it was cancelled.
    pub cancelled_at: Option<TimestampMs>,
}

/// One point of a forecast series: `[ts, [value per level]]`.
pub type ForecastPoint = (TimestampMs, Vec<f64>);

/// The schema of [`ForecastSeries::points`]: an array of
/// `[integer, [number, ...]]`.
fn forecast_points_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let ts = ObjectBuilder::new().schema_type(Type::Integer).format(Some(
        utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
    ));
    let values = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Number));
    ArrayBuilder::new()
        .items(
            ArrayBuilder::new()
                .prefix_items([
                    utoipa::openapi::Schema::Object(ts.build()),
                    utoipa::openapi::Schema::Array(values.build()),
                ])
                .items(utoipa::openapi::schema::ArrayItems::False)
                .min_items(Some(2))
                .max_items(Some(2)),
        )
        .description(Some("`[ts, [value at each level]]`, by time"))
        .build()
}

/// The forecast of a series.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ForecastSeries {
    /// The quantile levels, increasing.
    pub levels: Vec<f64>,
    /// `[ts, [value at each level]]`, by time: the first step of each
    /// stored forecast, at that step's time.
    #[schema(schema_with = forecast_points_schema)]
    pub points: Vec<ForecastPoint>,
}

/// An anomaly on a series' time axis.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeriesAnomaly {
    /// When.
    pub at: TimestampMs,
    /// What kind.
    pub kind: String,
    /// Why.
    pub reason: String,
}

/// An event window on a series' time axis.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeriesEvent {
    /// The event's id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// The window's start.
    pub start: TimestampMs,
    /// The window's end.
    pub end: TimestampMs,
}

/// `GET /workloads/{id}/series`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Series {
    /// The workload.
    pub workload: String,
    /// The resource.
    pub resource: String,
    /// Its unit.
    pub unit: String,
    /// `raw`, `10s`, `1m` or `1h`.
    pub resolution: String,
    /// The range's start, ms.
    pub from: TimestampMs,
    /// The range's end (exclusive), ms.
    pub to: TimestampMs,
    /// `[ts, value]` by time: the mean of each bucket (memory: the peak).
    pub actual: Vec<(TimestampMs, f64)>,
    /// The forecasts.
    pub forecast: ForecastSeries,
    /// The SLO quantile of the workload's policy.
    pub slo_quantile: f64,
    /// `[ts, allocation]` by time, from the plans: the value in force at
    /// `from`, then each change.
    pub allocation: Vec<(TimestampMs, f64)>,
    /// Anomalies in the range.
    pub anomalies: Vec<SeriesAnomaly>,
    /// Event windows in the range that select this series.
    pub events: Vec<SeriesEvent>,
}

/// An audit entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditDto {
    /// Its id (growing in the order appended).
    pub id: i64,
    /// When.
    pub ts: TimestampMs,
    /// Who (`agent`, `user:NAME`).
    pub actor: String,
    /// What (`event.create`, `api.mode`, ...).
    pub action: String,
    /// To what.
    pub target: String,
    /// The state before.
    pub before: Option<String>,
    /// The state after.
    pub after: Option<String>,
    /// Why.
    pub reason: String,
}

/// `PUT /mode`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeBody {
    /// The mode wanted.
    pub mode: ModeName,
}

/// `PUT /config`'s answer: the configuration now in force.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigChanged {
    /// The top-level sections that changed (`agent`, `workload`,
    /// `alerts`, ...), by name.
    pub changed: Vec<String>,
    /// Changes not applied because they take a restart (the store's path,
    /// the cgroup subtree, the mode, guardrails, the host name, `[api]`,
    /// `[history]`), each saying what was kept.
    pub kept: Vec<String>,
    /// The configuration now in force, as `GET /config` gives it.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// An accepted command.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// What was accepted.
    pub accepted: String,
}

/// Converts the agent's resource to the schema's mirror (checked by a test
/// to name the same values).
pub fn resource_name(r: Resource) -> ResourceName {
    match r {
        Resource::Cpu => ResourceName::Cpu,
        Resource::Memory => ResourceName::Memory,
        Resource::IoRead => ResourceName::IoRead,
        Resource::IoWrite => ResourceName::IoWrite,
        Resource::NetRx => ResourceName::NetRx,
        Resource::NetTx => ResourceName::NetTx,
        Resource::DiskIo => ResourceName::DiskIo,
        Resource::IoReadOps => ResourceName::IoReadOps,
        Resource::IoWriteOps => ResourceName::IoWriteOps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_enums_serialise_as_the_originals() {
        for r in Resource::ALL {
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::to_value(resource_name(r)).unwrap()
            );
        }
        for (m, n) in [
            (Mode::Recommend, ModeName::Recommend),
            (Mode::Enforce, ModeName::Enforce),
        ] {
            assert_eq!(
                serde_json::to_value(m).unwrap(),
                serde_json::to_value(n).unwrap()
            );
            assert_eq!(Mode::from(n), m);
        }
        for s in [
            RequestState::Waiting,
            RequestState::Granted,
            RequestState::Partial,
            RequestState::Queued,
            RequestState::Expired,
            RequestState::Cancelled,
        ] {
            let view = RequestView {
                id: 1,
                request: NewRequest {
                    workload: "w".into(),
                    resource: Resource::Cpu,
                    amount: 1.0,
                    priority: 0,
                    justification: String::new(),
                    duration_s: 1,
                },
                requested_by: Caller {
                    name: "n".into(),
                    address: "a".into(),
                },
                created_at: 0,
                until: 1,
                state: s,
                granted: None,
                reason: String::new(),
            };
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(RequestDto::from(&view).state)
            );
        }
    }
}
