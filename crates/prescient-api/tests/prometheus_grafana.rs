//! The Grafana dashboard (`deploy/grafana/prescient.json`) against what
//! `/metrics` serves: every metric its queries use is one `render` emits,
//! so that the JSON cannot drift from the code.

mod prometheus_support;

use prometheus_support::{dashboard, dashboard_queries, full_view, metric_names, sample_names};

#[test]
fn every_metric_the_dashboard_queries_is_rendered() {
    let d = dashboard();
    let rendered = sample_names(&prescient_api::metrics::render(&full_view(
        2.5,
        3,
        4,
        1_700_000_000_000,
    )));
    let queries = dashboard_queries(&d);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let mut used = std::collections::BTreeSet::new();
    for (place, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "{place}: {expr:?} queries no prescient metric"
        );
        for n in names {
            assert!(
                rendered.contains(&n),
                "{place}: {n} is not a metric /metrics serves (it serves {rendered:?})"
            );
            used.insert(n);
        }
    }
    // The panels the brief asks for are there.
    for must in [
        "prescient_workload_usage",
        "prescient_workload_allocation",
        "prescient_workload_forecast",
        "prescient_workload_coverage_ratio",
        "prescient_workload_slo_quantile",
        "prescient_limit_writes_total",
        "prescient_stage_duration_seconds_bucket",
        "prescient_store_buffered_samples",
        "prescient_alerts_firing",
        "prescient_solver_passes_total",
        "prescient_solver_curves",
        "prescient_plans_degraded_total",
    ] {
        assert!(used.contains(must), "no panel queries {must}");
    }
}

#[test]
fn the_dashboard_has_a_datasource_variable_and_workload_and_resource_variables() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().unwrap();
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["workload", "resource"] {
        assert_eq!(var(name)["type"], "query");
        assert_eq!(var(name)["datasource"]["uid"], "${datasource}");
    }
    // Every panel and target reads from the chosen data source, and the
    // workload panels use the variables.
    let mut n = 0;
    for p in d["panels"].as_array().unwrap() {
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            n += 1;
        }
    }
    assert!(n >= 20);
    let usage = dashboard_queries(&d)
        .into_iter()
        .find(|(_, e)| e.starts_with("prescient_workload_usage"))
        .unwrap()
        .1;
    assert!(
        usage.contains("$workload") && usage.contains("$resource"),
        "{usage}"
    );
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        "histogram_quantile(0.5, sum by (le) (rate(prescient_stage_duration_seconds_bucket{stage=\"solve\"}[1m]))) / xprescient_no",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["prescient_stage_duration_seconds_bucket"]
    );
}
