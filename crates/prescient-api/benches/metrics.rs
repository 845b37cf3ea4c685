//! `prescient_api::metrics::render` for 200 workloads x 4 resources (each
//! with 5 forecast quantiles and 4 model weights: about 11,000 samples),
//! with every stage timed, 3 pools, 20 alerts and 50 anomalies: what one
//! scrape of `/metrics` costs the server.
//!
//! `cargo bench -p prescient-api --bench metrics`

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prescient_agent::control::{
    AlertState, AlertView, AnomalyView, LiveView, ModelWeight, PoolView, ResourceView, WorkloadView,
};
use prescient_core::Resource;

fn view() -> LiveView {
    let resources = [
        Resource::Cpu,
        Resource::Memory,
        Resource::IoRead,
        Resource::IoWrite,
    ];
    let mut times = prescient_agent::StageTimes::default();
    for stage in [
        "discover",
        "sample",
        "forecast",
        "solve",
        "enforce",
        "flush",
        "checkpoint",
    ] {
        for i in 0..100u64 {
            times.record(stage, Duration::from_micros(50 * i));
        }
    }
    LiveView {
        host: "node-1".into(),
        policy: "prescient".into(),
        started_at: 1_700_000_000_000,
        updated_at: 1_700_000_600_000,
        times,
        pools: (0..3)
            .map(|p| PoolView {
                name: format!("pool-{p}"),
                parent: None,
                capacity: resources.iter().map(|&r| (r, 64.0)).collect(),
            })
            .collect(),
        workloads: (0..200)
            .map(|w| WorkloadView {
                id: format!("workload-{w:03}.service"),
                pool: Some(format!("pool-{}", w % 3)),
                resources: resources
                    .iter()
                    .map(|&r| ResourceView {
                        resource: r,
                        usage: Some(1.5 + w as f64),
                        allocation: Some(2.0 + w as f64),
                        slo_quantile: 0.95,
                        forecast: [0.5, 0.8, 0.9, 0.95, 0.99]
                            .iter()
                            .map(|&q| (q, q * 3.0 + w as f64))
                            .collect(),
                        coverage: Some(0.94),
                        observations: 1440,
                        weights: ["ets", "seasonal", "quantile_forest", "naive"]
                            .iter()
                            .map(|m| ModelWeight {
                                model: (*m).into(),
                                weight: 0.25,
                            })
                            .collect(),
                        calibration: vec![],
                    })
                    .collect(),
                ..WorkloadView::default()
            })
            .collect(),
        alerts: (0..20)
            .map(|i| AlertView {
                id: format!("rule-{}/w{i}", i % 4),
                rule: format!("rule-{}", i % 4),
                severity: "warning".into(),
                state: AlertState::Firing,
                subject: format!("w{i}"),
                ..AlertView::default()
            })
            .collect(),
        anomalies: (0..50)
            .map(|i| AnomalyView {
                at: i,
                workload: format!("workload-{i:03}.service"),
                resource: Resource::Cpu,
                kind: "outlier".into(),
                reason: "spike".into(),
            })
            .collect(),
        ..LiveView::default()
    }
}

fn render(c: &mut Criterion) {
    let v = view();
    let text = prescient_api::metrics::render(&v);
    eprintln!(
        "exposition: {} bytes, {} sample lines",
        text.len(),
        text.lines().filter(|l| !l.starts_with('#')).count()
    );
    c.bench_function("render 200 workloads x 4 resources", |b| {
        b.iter(|| prescient_api::metrics::render(std::hint::black_box(&v)))
    });
}

criterion_group!(benches, render);
criterion_main!(benches);
