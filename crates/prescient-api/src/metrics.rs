//! Prometheus metrics (served at `/metrics`): [`render`] turns the loop's
//! latest [`LiveView`] into the OpenMetrics text exposition, at scrape time.
//!
//! Every metric is named `prescient_…`, with its unit in the name where it
//! has a fixed one (`_seconds`, `_ratio`). The per-workload figures are in
//! the resource's own unit (cores, bytes, bytes/s, percent), which the
//! `unit` label names. Labels: `workload`, `pool`, `resource`, `unit`,
//! `quantile`, `model`, `stage`, `rule`, `severity`, `kind`, `state`.
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | `prescient_agent_info` | info | `host`, `mode`, `policy`, `version` | the mode and who sizes the workloads |
//! | `prescient_agent_start_timestamp_seconds` | gauge | | when the loop started |
//! | `prescient_view_updated_timestamp_seconds` | gauge | | when the loop last published |
//! | `prescient_view_age_seconds` | gauge | | how old the published view is at the scrape |
//! | `prescient_workload_usage` | gauge | `workload`, `pool`, `resource`, `unit` | the newest sample |
//! | `prescient_workload_allocation` | gauge | same | the allocation of the plan in force |
//! | `prescient_workload_forecast` | gauge | same, `quantile` | the next step's forecast, each level |
//! | `prescient_workload_coverage_ratio` | gauge | same | realised share of steps at or under the SLO quantile |
//! | `prescient_workload_slo_quantile` | gauge | same | the SLO quantile its policy asks for |
//! | `prescient_workload_observations` | gauge | same | rollup steps learnt |
//! | `prescient_workload_model_weight` | gauge | same, `model` | the ensemble's weight of each model |
//! | `prescient_pool_capacity` | gauge | `pool`, `parent`, `resource`, `unit` | a pool's capacity |
//! | `prescient_plan_degraded` | gauge | `pool` | 1 when the newest plan was cut back |
//! | `prescient_plan_made_timestamp_seconds` | gauge | `pool` | when the newest plan was made |
//! | `prescient_plans_total`, `prescient_plan_errors_total` | counter | | plans made, planning passes that failed |
//! | `prescient_plans_degraded_total` | counter | | plans cut back (guarantees over a capacity) |
//! | `prescient_solver_passes_total` | counter | | passes over the curves by the solver's threshold searches |
//! | `prescient_solver_workloads`, `prescient_solver_curves`, `prescient_solver_requests` | gauge | | the last solve's size: workloads, workload-resources, requests |
//! | `prescient_solver_search_passes`, `prescient_solver_working_bytes` | gauge | | the last solve's search passes and working memory |
//! | `prescient_solver_overcommitted`, `prescient_solver_degraded_plans` | gauge | | the last solve's pool-resources over capacity and plans cut back |
//! | `prescient_solver_last_timestamp_seconds` | gauge | | when the last solve ran |
//! | `prescient_limit_writes_total`, `prescient_limit_drift_total`, `prescient_limit_refusals_total`, `prescient_enforce_failures_total`, `prescient_limits_restored_total` | counter | | what enforcement did |
//! | `prescient_sample_passes_total`, `prescient_samples_total` | counter | | sampling |
//! | `prescient_config_reloads_total`, `prescient_config_reloads_refused_total` | counter | | reloads |
//! | `prescient_stage_duration_seconds` | histogram | `stage` | each stage of the loop (`solve` is the solver) |
//! | `prescient_stage_last_duration_seconds`, `prescient_stage_max_duration_seconds` | gauge | `stage` | the last and longest run |
//! | `prescient_store_stored_samples_total`, `prescient_store_dropped_samples_total` | counter | | samples written, dropped |
//! | `prescient_store_buffered_samples` | gauge | | samples held in memory |
//! | `prescient_store_failing` | gauge | | 1 while store writes fail |
//! | `prescient_alerts_firing`, `prescient_alerts_pending` | gauge | `rule`, `severity` | alerts by state |
//! | `prescient_anomalies_recent` | gauge | `kind` | anomalies in the view's recent window |
//! | `prescient_requests` | gauge | `state` | resource requests by state |
//!
//! The exposition is built with `prometheus-client`: a collector encodes a
//! snapshot of the view, taken per scrape. Its text encoder escapes label
//! values (`\`, `"`, newline; since 0.25.2, which the manifest asks for).
//! Values that are not finite are left out rather than exported.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use prescient_agent::control::{AlertState, LiveView, RequestState};
use prescient_agent::timing::BUCKETS_SECONDS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// The OpenMetrics exposition of `view`, as of now.
pub fn render(view: &LiveView) -> String {
    render_at(view, wall_ms())
}

/// The OpenMetrics exposition of `view` as seen at `now_ms` (ms since the
/// epoch), which only `prescient_view_age_seconds` depends on.
pub fn render_at(view: &LiveView, now_ms: i64) -> String {
    let snapshot = Snapshot::of(view, now_ms);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    // Writing into a String cannot fail, and the collector's encoding only
    // fails when the writer does.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        log::error!("encoding the metrics failed: {e}");
    }
    out
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A label value. Workload ids, pools, rules come from outside (cgroup
/// names, the config) and may hold quotes, backslashes or newlines, which
/// the encoder escapes.
#[derive(Debug, Clone)]
enum Lv {
    Static(&'static str),
    Shared(Arc<str>),
    Num(f64),
}

impl EncodeLabelValue for Lv {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Lv::Static(s) => encoder.write_str(s),
            Lv::Shared(s) => encoder.write_str(s),
            // A level such as 0.5 or 0.95, written as Rust writes it (the
            // shortest form that reads back the same).
            Lv::Num(x) => write!(encoder, "{x}"),
        }
    }
}

type Labels = Vec<(&'static str, Lv)>;

/// One sample's value.
#[derive(Debug)]
enum Value {
    Gauge(f64),
    Counter(u64),
    /// Sum, count, and per-bucket (not cumulative) counts with their upper
    /// bounds, the last being `+Inf` (as prometheus-client takes them).
    Histogram(f64, u64, Vec<(f64, u64)>),
    /// An info metric's sample is its labels; the value is always 1.
    Info,
}

/// One metric family: its descriptor and samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: MetricType) -> Self {
        Family {
            name,
            help,
            unit: None,
            kind,
            samples: Vec::new(),
        }
    }

    fn unit(mut self, unit: Unit) -> Self {
        self.unit = Some(unit);
        self
    }

    /// Adds a gauge sample, unless `v` is not finite.
    fn gauge(&mut self, labels: Labels, v: f64) {
        if v.is_finite() {
            self.samples.push((labels, Value::Gauge(v)));
        }
    }

    fn counter(&mut self, labels: Labels, v: u64) {
        self.samples.push((labels, Value::Counter(v)));
    }
}

/// What one scrape exports: the view, reduced to families of samples.
#[derive(Debug)]
struct Snapshot {
    families: Vec<Family>,
}

/// `1.5` for 1500 ms.
fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

impl Snapshot {
    fn of(view: &LiveView, now_ms: i64) -> Self {
        use MetricType::{Counter, Gauge, Histogram, Info};
        let mut families = Vec::with_capacity(40);

        // The agent.
        let mut info = Family::new("prescient_agent", "The agent: its mode and policy.", Info);
        info.samples.push((
            vec![
                ("host", Lv::Shared(view.host.as_str().into())),
                (
                    "mode",
                    Lv::Static(match view.mode {
                        prescient_agent::Mode::Recommend => "recommend",
                        prescient_agent::Mode::Enforce => "enforce",
                    }),
                ),
                ("policy", Lv::Shared(view.policy.as_str().into())),
                ("version", Lv::Static(env!("CARGO_PKG_VERSION"))),
            ],
            Value::Info,
        ));
        families.push(info);
        let mut started = Family::new(
            "prescient_agent_start_timestamp",
            "When the loop started, seconds since the epoch.",
            Gauge,
        )
        .unit(Unit::Seconds);
        let mut updated = Family::new(
            "prescient_view_updated_timestamp",
            "When the loop last published its view, seconds since the epoch.",
            Gauge,
        )
        .unit(Unit::Seconds);
        let mut age = Family::new(
            "prescient_view_age",
            "How old the loop's published view is at this scrape.",
            Gauge,
        )
        .unit(Unit::Seconds);
        // A view never published (the loop has not finished a pass) has no
        // times: leave them out rather than export 1970.
        if view.started_at > 0 {
            started.gauge(vec![], seconds(view.started_at));
        }
        if view.updated_at > 0 {
            updated.gauge(vec![], seconds(view.updated_at));
            age.gauge(vec![], seconds((now_ms - view.updated_at).max(0)));
        }
        families.extend([started, updated, age]);

        // Workloads.
        let mut usage = Family::new(
            "prescient_workload_usage",
            "A workload's newest sample, in the resource's unit (the unit label).",
            Gauge,
        );
        let mut allocation = Family::new(
            "prescient_workload_allocation",
            "A workload's allocation in the plan in force, in the resource's unit.",
            Gauge,
        );
        let mut forecast = Family::new(
            "prescient_workload_forecast",
            "A workload's forecast for the next step at each quantile level, in the resource's unit.",
            Gauge,
        );
        let mut coverage = Family::new(
            "prescient_workload_coverage",
            "Realised share of recent steps at or under the forecast's SLO quantile.",
            Gauge,
        )
        .unit(Unit::Other("ratio".into()));
        let mut slo = Family::new(
            "prescient_workload_slo_quantile",
            "The SLO quantile a workload's policy asks for.",
            Gauge,
        );
        let mut observations = Family::new(
            "prescient_workload_observations",
            "Rollup steps a workload's forecaster has learnt.",
            Gauge,
        );
        let mut weights = Family::new(
            "prescient_workload_model_weight",
            "The ensemble's weight of each model for a workload's series (they add up to 1).",
            Gauge,
        );
        for w in &view.workloads {
            let id: Arc<str> = w.id.as_str().into();
            let pool: Arc<str> = w.pool.as_deref().unwrap_or("").into();
            for r in &w.resources {
                let base = vec![
                    ("workload", Lv::Shared(Arc::clone(&id))),
                    ("pool", Lv::Shared(Arc::clone(&pool))),
                    ("resource", Lv::Static(r.resource.as_str())),
                    ("unit", Lv::Static(r.resource.unit())),
                ];
                if let Some(u) = r.usage {
                    usage.gauge(base.clone(), u);
                }
                if let Some(a) = r.allocation {
                    allocation.gauge(base.clone(), a);
                }
                for &(level, value) in &r.forecast {
                    let mut l = base.clone();
                    l.push(("quantile", Lv::Num(level)));
                    forecast.gauge(l, value);
                }
                if let Some(c) = r.coverage {
                    coverage.gauge(base.clone(), c);
                }
                observations.gauge(base.clone(), r.observations as f64);
                for m in &r.weights {
                    let mut l = base.clone();
                    l.push(("model", Lv::Shared(m.model.as_str().into())));
                    weights.gauge(l, m.weight);
                }
                slo.gauge(base, r.slo_quantile);
            }
        }
        families.extend([
            usage,
            allocation,
            forecast,
            coverage,
            slo,
            observations,
            weights,
        ]);

        // Pools and plans.
        let mut capacity = Family::new(
            "prescient_pool_capacity",
            "A pool's capacity, in the resource's unit (the unit label).",
            Gauge,
        );
        for p in &view.pools {
            let name: Arc<str> = p.name.as_str().into();
            let parent: Arc<str> = p.parent.as_deref().unwrap_or("").into();
            for (&resource, &cap) in &p.capacity {
                capacity.gauge(
                    vec![
                        ("pool", Lv::Shared(Arc::clone(&name))),
                        ("parent", Lv::Shared(Arc::clone(&parent))),
                        ("resource", Lv::Static(resource.as_str())),
                        ("unit", Lv::Static(resource.unit())),
                    ],
                    cap,
                );
            }
        }
        let mut degraded = Family::new(
            "prescient_plan_degraded",
            "1 when the newest plan of a pool could not meet every guarantee and was cut back.",
            Gauge,
        );
        let mut made = Family::new(
            "prescient_plan_made_timestamp",
            "When the newest plan of a pool was made, seconds since the epoch.",
            Gauge,
        )
        .unit(Unit::Seconds);
        for plan in &view.plans {
            let pool = || vec![("pool", Lv::Shared(plan.pool.0.as_str().into()))];
            degraded.gauge(pool(), if plan.degraded { 1.0 } else { 0.0 });
            made.gauge(pool(), seconds(plan.made_at));
        }
        families.extend([capacity, degraded, made]);

        // What the loop did.
        let c = &view.counters;
        for (name, help, v) in [
            (
                "prescient_sample_passes",
                "Sampling passes.",
                c.sample_passes,
            ),
            (
                "prescient_samples",
                "Samples taken (one per workload, resource and pass).",
                c.samples,
            ),
            (
                "prescient_plans",
                "Plans made (one per root pool and planning pass).",
                c.plans,
            ),
            (
                "prescient_plan_errors",
                "Planning passes that failed.",
                c.plan_errors,
            ),
            (
                "prescient_plans_degraded",
                "Plans that could not meet every guarantee and were cut back.",
                c.degraded_plans,
            ),
            (
                "prescient_solver_passes",
                "Passes over the workload curves made by the solver's threshold searches (none when everything fits).",
                c.solver_passes,
            ),
            ("prescient_limit_writes", "Limits written.", c.writes),
            (
                "prescient_limit_drift",
                "Limits found changed by someone else.",
                c.drift,
            ),
            (
                "prescient_limit_refusals",
                "Limit values a guardrail refused.",
                c.refused,
            ),
            (
                "prescient_enforce_failures",
                "Failed limit reads or writes (retried or dropped).",
                c.enforce_failures,
            ),
            (
                "prescient_limits_restored",
                "Limits restored at exit or after a crash.",
                c.restored,
            ),
            (
                "prescient_config_reloads",
                "Configuration reloads applied.",
                c.reloads,
            ),
            (
                "prescient_config_reloads_refused",
                "Configuration reloads refused (the old configuration kept).",
                c.reloads_refused,
            ),
        ] {
            let mut f = Family::new(name, help, Counter);
            f.counter(vec![], v);
            families.push(f);
        }

        // The last solve (none before the first).
        let sv = &view.solver;
        if sv.at > 0 {
            let mut at = Family::new(
                "prescient_solver_last_timestamp",
                "When the last solve ran, seconds since the epoch.",
                Gauge,
            )
            .unit(Unit::Seconds);
            at.gauge(vec![], seconds(sv.at));
            families.push(at);
            let mut working = Family::new(
                "prescient_solver_working",
                "Memory held by the solver's working structures in the last solve.",
                Gauge,
            )
            .unit(Unit::Bytes);
            working.gauge(vec![], sv.working_bytes as f64);
            families.push(working);
            for (name, help, v) in [
                (
                    "prescient_solver_workloads",
                    "Workloads in the last solve.",
                    sv.workloads,
                ),
                (
                    "prescient_solver_curves",
                    "Workload-resource pairs in the last solve.",
                    sv.curves,
                ),
                (
                    "prescient_solver_requests",
                    "Resource requests in the last solve.",
                    sv.requests,
                ),
                (
                    "prescient_solver_search_passes",
                    "Passes over the curves by the last solve's threshold searches.",
                    sv.passes,
                ),
                (
                    "prescient_solver_overcommitted",
                    "Pool-resources whose guarantees exceeded the capacity in the last solve.",
                    sv.overcommitted,
                ),
                (
                    "prescient_solver_degraded_plans",
                    "Plans the last solve cut back.",
                    sv.degraded_plans,
                ),
            ] {
                let mut f = Family::new(name, help, Gauge);
                f.gauge(vec![], v as f64);
                families.push(f);
            }
        }

        // Stage durations.
        let mut hist = Family::new(
            "prescient_stage_duration",
            "Durations of each stage of the loop (the solve stage is the solver).",
            Histogram,
        )
        .unit(Unit::Seconds);
        let mut last = Family::new(
            "prescient_stage_last_duration",
            "The last run of each stage of the loop.",
            Gauge,
        )
        .unit(Unit::Seconds);
        let mut max = Family::new(
            "prescient_stage_max_duration",
            "The longest run of each stage of the loop.",
            Gauge,
        )
        .unit(Unit::Seconds);
        for (&stage, s) in &view.times.stages {
            // The view's buckets are cumulative; prometheus-client wants
            // per-bucket counts (it accumulates them again) and a +Inf
            // bucket, which holds what is above the last bound.
            let mut buckets = Vec::with_capacity(BUCKETS_SECONDS.len() + 1);
            let mut below = 0u64;
            for (&le, &cum) in BUCKETS_SECONDS.iter().zip(&s.buckets) {
                buckets.push((le, cum.saturating_sub(below)));
                below = below.max(cum);
            }
            buckets.push((f64::INFINITY, s.count.saturating_sub(below)));
            let labels = || vec![("stage", Lv::Static(stage))];
            hist.samples
                .push((labels(), Value::Histogram(s.sum_seconds, s.count, buckets)));
            last.gauge(labels(), s.last_seconds);
            max.gauge(labels(), s.max_seconds);
        }
        families.extend([hist, last, max]);

        // The store.
        let st = &view.store;
        let mut stored = Family::new(
            "prescient_store_stored_samples",
            "Samples written to the store this run.",
            Counter,
        );
        stored.counter(vec![], st.stored_samples);
        let mut dropped = Family::new(
            "prescient_store_dropped_samples",
            "Samples dropped because memory was full while the store failed.",
            Counter,
        );
        dropped.counter(vec![], st.dropped_samples);
        let mut buffered = Family::new(
            "prescient_store_buffered_samples",
            "Samples held in memory, not yet written to the store.",
            Gauge,
        );
        buffered.gauge(vec![], st.buffered_samples as f64);
        let mut failing = Family::new(
            "prescient_store_failing",
            "1 while writes to the store fail.",
            Gauge,
        );
        failing.gauge(vec![], if st.failing.is_some() { 1.0 } else { 0.0 });
        families.extend([stored, dropped, buffered, failing]);

        // Alerts, by rule and severity: every pair in the view gets both
        // states, so that a series drops to 0 instead of vanishing.
        let mut by_rule: BTreeMap<(&str, &str), (u64, u64)> = BTreeMap::new();
        for a in &view.alerts {
            let e = by_rule
                .entry((a.rule.as_str(), a.severity.as_str()))
                .or_default();
            match a.state {
                AlertState::Firing => e.0 += 1,
                AlertState::Pending => e.1 += 1,
                AlertState::Resolved => {}
            }
        }
        let mut firing = Family::new(
            "prescient_alerts_firing",
            "Alerts firing, by rule and severity.",
            Gauge,
        );
        let mut pending = Family::new(
            "prescient_alerts_pending",
            "Alerts pending (their condition holds, not yet for the hold time), by rule and severity.",
            Gauge,
        );
        for ((rule, severity), (f, p)) in by_rule {
            let labels = || {
                vec![
                    ("rule", Lv::Shared(rule.into())),
                    ("severity", Lv::Shared(severity.into())),
                ]
            };
            firing.gauge(labels(), f as f64);
            pending.gauge(labels(), p as f64);
        }
        families.extend([firing, pending]);

        // Anomalies, by kind (every known kind, so that each has a series).
        let mut kinds: BTreeMap<&str, u64> = ["level_shift", "memory_leak", "outlier"]
            .into_iter()
            .map(|k| (k, 0))
            .collect();
        for a in &view.anomalies {
            *kinds.entry(a.kind.as_str()).or_default() += 1;
        }
        let mut anomalies = Family::new(
            "prescient_anomalies_recent",
            "Anomalies in the loop's recent window (bounded), by kind.",
            Gauge,
        );
        for (kind, n) in kinds {
            anomalies.gauge(vec![("kind", Lv::Shared(kind.into()))], n as f64);
        }
        families.push(anomalies);

        // Requests, by state (every state, so that each has a series).
        let states = [
            (RequestState::Waiting, "waiting"),
            (RequestState::Granted, "granted"),
            (RequestState::Partial, "partial"),
            (RequestState::Queued, "queued"),
            (RequestState::Expired, "expired"),
            (RequestState::Cancelled, "cancelled"),
        ];
        let mut requests = Family::new(
            "prescient_requests",
            "Resource requests, open and recently ended, by state.",
            Gauge,
        );
        for (state, name) in states {
            let n = view.requests.iter().filter(|r| r.state == state).count();
            requests.gauge(vec![("state", Lv::Static(name))], n as f64);
        }
        families.push(requests);

        Snapshot { families }
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut metric = encoder.encode_descriptor(f.name, f.help, f.unit.as_ref(), f.kind)?;
            for (labels, value) in &f.samples {
                if let Value::Info = value {
                    // An info metric's labels are its value.
                    metric.encode_info(labels)?;
                } else if labels.is_empty() {
                    // Without labels: `name 1`, not `name{} 1`.
                    encode_value(&mut metric, value)?;
                } else {
                    encode_value(&mut metric.encode_family(labels)?, value)?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(m: &mut MetricEncoder, value: &Value) -> Result<(), std::fmt::Error> {
    match value {
        Value::Gauge(v) => m.encode_gauge(v),
        Value::Counter(v) => m.encode_counter::<NoLabelSet, _, f64>(v, None),
        Value::Histogram(sum, count, buckets) => {
            m.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)
        }
        Value::Info => m.encode_info(&Vec::<(&str, Lv)>::new()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prescient_agent::Counters;
    use prescient_agent::control::{
        AlertView, AnomalyView, Caller, ModelWeight, NewRequest, PoolView, RequestView,
        ResourceView, SolverView, StoreView, WorkloadView,
    };
    use prescient_core::{HostId, Plan, Resource};

    use super::*;

    /// One sample line: name, labels, value.
    type Line = (String, BTreeMap<String, String>, f64);

    /// Parses the sample lines of an exposition, unescaping label values.
    fn parse(text: &str) -> Vec<Line> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name_end = line.find(['{', ' ']).expect(line);
            let name = line[..name_end].to_string();
            let mut labels = BTreeMap::new();
            let mut rest = &line[name_end..];
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices();
                let mut key = String::new();
                let mut val = String::new();
                let mut in_val = false;
                let end = loop {
                    let (i, c) = chars.next().expect(line);
                    match (in_val, c) {
                        (false, '}') => break i,
                        (false, '=') => {
                            assert_eq!(chars.next().map(|x| x.1), Some('"'), "{line}");
                            in_val = true;
                        }
                        (false, ',') => {}
                        (false, c) => key.push(c),
                        (true, '\\') => match chars.next().expect(line).1 {
                            'n' => val.push('\n'),
                            c => val.push(c),
                        },
                        (true, '"') => {
                            labels.insert(std::mem::take(&mut key), std::mem::take(&mut val));
                            in_val = false;
                        }
                        (true, c) => val.push(c),
                    }
                };
                rest = &r[end + 1..];
            }
            let value = rest.trim().parse::<f64>().expect(line);
            out.push((name, labels, value));
        }
        out
    }

    fn get(lines: &[Line], name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        lines
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|x| x.2)
            .collect()
    }

    fn one(lines: &[Line], name: &str, labels: &[(&str, &str)]) -> f64 {
        let v = get(lines, name, labels);
        assert_eq!(v.len(), 1, "{name} {labels:?}: {v:?}");
        v[0]
    }

    const ODD: &str = "we\"ird\\name\nx";

    fn resource(r: Resource, usage: f64, alloc: f64) -> ResourceView {
        ResourceView {
            resource: r,
            usage: Some(usage),
            allocation: Some(alloc),
            slo_quantile: 0.95,
            forecast: vec![(0.5, usage), (0.95, usage * 1.5), (0.99, usage * 2.0)],
            coverage: Some(0.93),
            observations: 42,
            weights: vec![
                ModelWeight {
                    model: "ets".into(),
                    weight: 0.75,
                },
                ModelWeight {
                    model: "seasonal".into(),
                    weight: 0.25,
                },
            ],
            calibration: vec![],
        }
    }

    fn view() -> LiveView {
        let mut times = prescient_agent::StageTimes::default();
        times.record("solve", Duration::from_micros(300)); // <= 0.0005
        times.record("solve", Duration::from_millis(20)); // <= 0.025
        times.record("solve", Duration::from_secs(3)); // above every bound
        times.record("sample", Duration::from_micros(50));
        let request = |id, state| RequestView {
            id,
            request: NewRequest {
                workload: "web".into(),
                resource: Resource::Cpu,
                amount: 2.0,
                priority: 1,
                justification: "launch".into(),
                duration_s: 60,
            },
            requested_by: Caller {
                name: "ops".into(),
                address: "127.0.0.1".into(),
            },
            created_at: 1,
            until: 2,
            state,
            granted: None,
            reason: String::new(),
        };
        let alert = |rule: &str, severity: &str, state, subject: &str| AlertView {
            id: format!("{rule}/{subject}"),
            rule: rule.into(),
            severity: severity.into(),
            state,
            subject: subject.into(),
            ..AlertView::default()
        };
        let anomaly = |kind: &str| AnomalyView {
            at: 1,
            workload: "web".into(),
            resource: Resource::Memory,
            kind: kind.into(),
            reason: "because".into(),
        };
        LiveView {
            host: "node-1".into(),
            mode: prescient_agent::Mode::Enforce,
            policy: "prescient".into(),
            started_at: 1_700_000_000_000,
            updated_at: 1_700_000_100_000,
            counters: Counters {
                sample_passes: 11,
                samples: 12,
                plans: 13,
                plan_errors: 14,
                writes: 15,
                drift: 16,
                refused: 17,
                enforce_failures: 18,
                restored: 19,
                reloads: 20,
                reloads_refused: 21,
                degraded_plans: 22,
                solver_passes: 23,
                ..Counters::default()
            },
            times,
            pools: vec![PoolView {
                name: "main".into(),
                parent: None,
                capacity: [(Resource::Cpu, 8.0), (Resource::Memory, 16e9)]
                    .into_iter()
                    .collect(),
            }],
            workloads: vec![
                WorkloadView {
                    id: "web".into(),
                    pool: Some("main".into()),
                    resources: vec![
                        resource(Resource::Cpu, 1.25, 2.5),
                        resource(Resource::Memory, 2.0e9, 3.0e9),
                    ],
                    ..WorkloadView::default()
                },
                WorkloadView {
                    id: ODD.into(),
                    pool: Some("main".into()),
                    resources: vec![ResourceView {
                        usage: None,
                        allocation: None,
                        coverage: None,
                        ..resource(Resource::Cpu, 0.5, 1.0)
                    }],
                    ..WorkloadView::default()
                },
            ],
            plans: vec![Plan {
                made_at: 1_700_000_090_000,
                pool: HostId("main".into()),
                degraded: true,
                entries: vec![],
            }],
            anomalies: vec![
                anomaly("outlier"),
                anomaly("outlier"),
                anomaly("memory_leak"),
            ],
            alerts: vec![
                alert("coverage_low", "warning", AlertState::Firing, "web"),
                alert("coverage_low", "warning", AlertState::Firing, "db"),
                alert("coverage_low", "warning", AlertState::Pending, "x"),
                alert("store_failing", "critical", AlertState::Resolved, "host"),
            ],
            requests: vec![
                request(1, RequestState::Granted),
                request(2, RequestState::Granted),
                request(3, RequestState::Queued),
            ],
            store: StoreView {
                path: "/tmp/p.db".into(),
                stored_samples: 1000,
                buffered_samples: 7,
                dropped_samples: 3,
                failing: Some("disk full".into()),
            },
            solver: SolverView {
                at: 1_700_000_090_000,
                workloads: 31,
                curves: 62,
                requests: 3,
                passes: 9,
                working_bytes: 4096,
                overcommitted: 1,
                degraded_plans: 1,
            },
            config: None,
        }
    }

    const NOW: i64 = 1_700_000_102_500;

    #[test]
    fn workload_figures_round_trip_with_their_labels() {
        let text = render_at(&view(), NOW);
        let l = parse(&text);
        let web_cpu = [("workload", "web"), ("resource", "cpu"), ("pool", "main")];
        assert_eq!(one(&l, "prescient_workload_usage", &web_cpu), 1.25);
        assert_eq!(one(&l, "prescient_workload_allocation", &web_cpu), 2.5);
        assert_eq!(
            one(
                &l,
                "prescient_workload_allocation",
                &[
                    ("workload", "web"),
                    ("resource", "memory"),
                    ("unit", "bytes")
                ]
            ),
            3.0e9
        );
        assert_eq!(
            get(&l, "prescient_workload_usage", &[("unit", "cores")]).len(),
            1
        );
        for (q, v) in [("0.5", 1.25), ("0.95", 1.875), ("0.99", 2.5)] {
            let mut labels = web_cpu.to_vec();
            labels.push(("quantile", q));
            assert_eq!(one(&l, "prescient_workload_forecast", &labels), v, "q={q}");
        }
        assert_eq!(one(&l, "prescient_workload_coverage_ratio", &web_cpu), 0.93);
        assert_eq!(one(&l, "prescient_workload_slo_quantile", &web_cpu), 0.95);
        assert_eq!(one(&l, "prescient_workload_observations", &web_cpu), 42.0);
        let mut ets = web_cpu.to_vec();
        ets.push(("model", "ets"));
        assert_eq!(one(&l, "prescient_workload_model_weight", &ets), 0.75);
        assert!(
            text.contains("# UNIT prescient_workload_coverage_ratio ratio"),
            "{text}"
        );
    }

    #[test]
    fn odd_workload_names_are_escaped_and_read_back_whole() {
        let text = render_at(&view(), NOW);
        // On the wire: every quote, backslash and newline escaped.
        assert!(text.contains(r#"workload="we\"ird\\name\nx""#), "{text}");
        // No sample line is broken by the newline in the name.
        let l = parse(&text);
        let odd = [("workload", ODD), ("resource", "cpu")];
        assert_eq!(one(&l, "prescient_workload_slo_quantile", &odd), 0.95);
        assert_eq!(get(&l, "prescient_workload_forecast", &odd).len(), 3);
        // What it does not know is left out, not exported as 0.
        assert!(get(&l, "prescient_workload_usage", &odd).is_empty());
        assert!(get(&l, "prescient_workload_allocation", &odd).is_empty());
        assert!(get(&l, "prescient_workload_coverage_ratio", &odd).is_empty());
    }

    #[test]
    fn counters_pools_plans_store_alerts_anomalies_requests() {
        let l = parse(&render_at(&view(), NOW));
        for (name, v) in [
            ("prescient_sample_passes_total", 11.0),
            ("prescient_samples_total", 12.0),
            ("prescient_plans_total", 13.0),
            ("prescient_plan_errors_total", 14.0),
            ("prescient_limit_writes_total", 15.0),
            ("prescient_limit_drift_total", 16.0),
            ("prescient_limit_refusals_total", 17.0),
            ("prescient_enforce_failures_total", 18.0),
            ("prescient_limits_restored_total", 19.0),
            ("prescient_config_reloads_total", 20.0),
            ("prescient_config_reloads_refused_total", 21.0),
            ("prescient_plans_degraded_total", 22.0),
            ("prescient_solver_passes_total", 23.0),
            ("prescient_solver_last_timestamp_seconds", 1_700_000_090.0),
            ("prescient_solver_workloads", 31.0),
            ("prescient_solver_curves", 62.0),
            ("prescient_solver_requests", 3.0),
            ("prescient_solver_search_passes", 9.0),
            ("prescient_solver_working_bytes", 4096.0),
            ("prescient_solver_overcommitted", 1.0),
            ("prescient_solver_degraded_plans", 1.0),
            ("prescient_store_stored_samples_total", 1000.0),
            ("prescient_store_dropped_samples_total", 3.0),
            ("prescient_store_buffered_samples", 7.0),
            ("prescient_store_failing", 1.0),
            ("prescient_agent_start_timestamp_seconds", 1_700_000_000.0),
            ("prescient_view_updated_timestamp_seconds", 1_700_000_100.0),
            ("prescient_view_age_seconds", 2.5),
        ] {
            assert_eq!(one(&l, name, &[]), v, "{name}");
        }
        let info = l.iter().find(|x| x.0 == "prescient_agent_info").unwrap();
        assert_eq!(info.1["mode"], "enforce");
        assert_eq!(info.1["policy"], "prescient");
        assert_eq!(info.1["host"], "node-1");
        assert_eq!(info.2, 1.0);
        assert_eq!(
            one(
                &l,
                "prescient_pool_capacity",
                &[("pool", "main"), ("resource", "memory")]
            ),
            16e9
        );
        assert_eq!(one(&l, "prescient_plan_degraded", &[("pool", "main")]), 1.0);
        assert_eq!(
            one(
                &l,
                "prescient_plan_made_timestamp_seconds",
                &[("pool", "main")]
            ),
            1_700_000_090.0
        );
        let cov = [("rule", "coverage_low"), ("severity", "warning")];
        assert_eq!(one(&l, "prescient_alerts_firing", &cov), 2.0);
        assert_eq!(one(&l, "prescient_alerts_pending", &cov), 1.0);
        let store = [("rule", "store_failing"), ("severity", "critical")];
        assert_eq!(
            one(&l, "prescient_alerts_firing", &store),
            0.0,
            "resolved: 0, still there"
        );
        assert_eq!(
            one(&l, "prescient_anomalies_recent", &[("kind", "outlier")]),
            2.0
        );
        assert_eq!(
            one(&l, "prescient_anomalies_recent", &[("kind", "memory_leak")]),
            1.0
        );
        assert_eq!(
            one(&l, "prescient_anomalies_recent", &[("kind", "level_shift")]),
            0.0
        );
        assert_eq!(one(&l, "prescient_requests", &[("state", "granted")]), 2.0);
        assert_eq!(one(&l, "prescient_requests", &[("state", "queued")]), 1.0);
        assert_eq!(one(&l, "prescient_requests", &[("state", "waiting")]), 0.0);
    }

    #[test]
    fn stage_histograms_are_cumulative_with_an_inf_bucket() {
        let l = parse(&render_at(&view(), NOW));
        let solve = [("stage", "solve")];
        assert_eq!(
            one(&l, "prescient_stage_duration_seconds_count", &solve),
            3.0
        );
        let sum = one(&l, "prescient_stage_duration_seconds_sum", &solve);
        assert!((sum - 3.0203).abs() < 1e-9, "{sum}");
        let bucket = |le: &str| {
            one(
                &l,
                "prescient_stage_duration_seconds_bucket",
                &[("stage", "solve"), ("le", le)],
            )
        };
        assert_eq!(bucket("0.00025"), 0.0);
        assert_eq!(bucket("0.0005"), 1.0);
        assert_eq!(bucket("0.01"), 1.0);
        assert_eq!(bucket("0.025"), 2.0);
        assert_eq!(bucket("1.0"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
        assert_eq!(
            get(&l, "prescient_stage_duration_seconds_bucket", &solve).len(),
            BUCKETS_SECONDS.len() + 1
        );
        assert_eq!(
            one(&l, "prescient_stage_last_duration_seconds", &solve),
            3.0
        );
        assert_eq!(one(&l, "prescient_stage_max_duration_seconds", &solve), 3.0);
        assert_eq!(
            one(
                &l,
                "prescient_stage_duration_seconds_bucket",
                &[("stage", "sample"), ("le", "0.0001")]
            ),
            1.0
        );
    }

    #[test]
    fn an_empty_view_has_descriptors_and_no_workload_or_time_samples() {
        let text = render_at(&LiveView::default(), NOW);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(text.contains("# TYPE prescient_workload_usage gauge"));
        assert!(text.contains("# TYPE prescient_stage_duration_seconds histogram"));
        let l = parse(&text);
        for name in [
            "prescient_workload_usage",
            "prescient_workload_forecast",
            "prescient_pool_capacity",
            "prescient_view_age_seconds",
            "prescient_agent_start_timestamp_seconds",
            "prescient_stage_duration_seconds_count",
            "prescient_alerts_firing",
            "prescient_solver_workloads",
            "prescient_solver_search_passes",
        ] {
            assert!(get(&l, name, &[]).is_empty(), "{name}");
        }
        assert_eq!(one(&l, "prescient_solver_passes_total", &[]), 0.0);
        assert_eq!(one(&l, "prescient_plans_total", &[]), 0.0);
        assert_eq!(one(&l, "prescient_store_failing", &[]), 0.0);
        assert_eq!(
            l.iter().find(|x| x.0 == "prescient_agent_info").unwrap().1["mode"],
            "recommend"
        );
    }

    #[test]
    fn every_family_has_help_and_type_and_names_are_prefixed() {
        let text = render_at(&view(), NOW);
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types.len(), helps);
        let distinct: std::collections::BTreeSet<_> =
            types.iter().map(|t| t.split(' ').nth(2)).collect();
        assert_eq!(distinct.len(), types.len(), "a family declared twice");
        for (name, _, _) in parse(&text) {
            assert!(name.starts_with("prescient_"), "{name}");
        }
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
