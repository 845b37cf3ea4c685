//! Shared by `prometheus.rs` and `prometheus_grafana.rs`: a `LiveView` in
//! which every metric family has samples, and the queries of the Grafana
//! dashboard.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use prescient_agent::Counters;
use prescient_agent::control::{
    AlertState, AlertView, AnomalyView, Caller, LiveView, ModelWeight, NewRequest, PoolView,
    RequestState, RequestView, ResourceView, SolverView, StoreView, WorkloadView,
};
use prescient_core::{HostId, Plan, Resource};

/// A workload name with a quote, a backslash and a newline.
pub const ODD: &str = "we\"ird\\name\nx";

fn resource(r: Resource, usage: f64, alloc: f64) -> ResourceView {
    ResourceView {
        resource: r,
        usage: Some(usage),
        allocation: Some(alloc),
        slo_quantile: 0.95,
        forecast: vec![(0.5, usage), (0.95, usage * 1.5), (0.99, usage * 2.0)],
        coverage: Some(0.9),
        observations: 10,
        weights: vec![ModelWeight {
            model: "ets".into(),
            weight: 1.0,
        }],
        calibration: vec![],
    }
}

/// A view of host `node-1` in which every family has samples: workload
/// `web` (cpu and memory, `web_cpu_alloc` cores), a workload named [`ODD`],
/// `plans` plans made, stages `solve` and `sample` run `runs` times.
pub fn full_view(web_cpu_alloc: f64, plans: u64, runs: u32, updated_at: i64) -> LiveView {
    let mut times = prescient_agent::StageTimes::default();
    for i in 0..runs {
        times.record("solve", Duration::from_micros(200 + 100 * u64::from(i)));
        times.record("sample", Duration::from_micros(50));
    }
    LiveView {
        host: "node-1".into(),
        mode: prescient_agent::Mode::Enforce,
        policy: "prescient".into(),
        started_at: updated_at - 60_000,
        updated_at,
        counters: Counters {
            sample_passes: plans * 10,
            samples: plans * 30,
            plans,
            plan_errors: 1,
            writes: plans * 2,
            drift: 1,
            refused: 1,
            enforce_failures: 1,
            solver_passes: plans * 4,
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
                    resource(Resource::Cpu, 1.25, web_cpu_alloc),
                    resource(Resource::Memory, 2.0e9, 3.0e9),
                ],
                ..WorkloadView::default()
            },
            WorkloadView {
                id: ODD.into(),
                pool: Some("main".into()),
                resources: vec![resource(Resource::Cpu, 0.5, 0.75)],
                ..WorkloadView::default()
            },
        ],
        plans: vec![Plan {
            made_at: updated_at,
            pool: HostId("main".into()),
            degraded: false,
            entries: vec![],
        }],
        anomalies: vec![AnomalyView {
            at: updated_at,
            workload: "web".into(),
            resource: Resource::Cpu,
            kind: "outlier".into(),
            reason: "a spike".into(),
        }],
        alerts: vec![AlertView {
            id: "coverage_low/web".into(),
            rule: "coverage_low".into(),
            severity: "warning".into(),
            state: AlertState::Firing,
            subject: "web".into(),
            message: "coverage under the SLO".into(),
            since: updated_at,
            resolved_at: None,
        }],
        requests: vec![RequestView {
            id: 1,
            request: NewRequest {
                workload: "web".into(),
                resource: Resource::Cpu,
                amount: 3.0,
                priority: 1,
                justification: "launch".into(),
                duration_s: 600,
            },
            requested_by: Caller {
                name: "ops".into(),
                address: "127.0.0.1".into(),
            },
            created_at: updated_at,
            until: updated_at + 600_000,
            state: RequestState::Granted,
            granted: Some(3.0),
            reason: String::new(),
        }],
        store: StoreView {
            path: "/tmp/x.db".into(),
            stored_samples: 500,
            buffered_samples: 2,
            dropped_samples: 0,
            failing: None,
        },
        solver: SolverView {
            at: updated_at,
            workloads: 2,
            curves: 3,
            requests: 1,
            passes: plans as usize,
            working_bytes: 2048,
            overcommitted: 0,
            degraded_plans: 0,
        },
        config: None,
    }
}

/// The dashboard's file.
pub fn dashboard_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/prescient.json")
}

/// The dashboard, parsed.
pub fn dashboard() -> serde_json::Value {
    let path = dashboard_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (where, PromQL) of every panel target (rows' nested panels too) and
/// every query variable.
pub fn dashboard_queries(d: &serde_json::Value) -> Vec<(String, String)> {
    fn panels(list: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: a target without expr"));
                out.push((format!("panel {title:?} {}", t["refId"]), expr.to_string()));
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .expect("a query variable has a query");
            out.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    out
}

/// The `prescient_…` metric names a PromQL expression refers to.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("prescient_") {
        // Only at the start of an identifier.
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// The sample names of an exposition (`prescient_x_total`,
/// `prescient_y_bucket`…).
pub fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l[..l.find(['{', ' ']).unwrap_or(l.len())].to_string())
        .collect()
}

/// A dashboard query with its variables replaced, ready for Prometheus.
pub fn instantiate(expr: &str) -> String {
    expr.replace("$instance", ".*")
        .replace("$workload", "web")
        .replace("$resource", "cpu")
        .replace("$__rate_interval", "1m")
}
