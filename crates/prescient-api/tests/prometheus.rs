//! `/metrics` scraped by a real Prometheus: the API server on a loopback
//! port serving a `LiveView` the test publishes, `/usr/bin/prometheus`
//! scraping it every second (with a viewer token), and the values read back
//! through Prometheus's HTTP API, polled until they arrive. Every query of
//! the Grafana dashboard is then run against that Prometheus.

mod prometheus_support;

use std::path::Path;
use std::time::Duration;

use prescient_agent::config::{Config, Role, TokenConfig};
use prescient_agent::control::{Control, ControlPort};
use prescient_api::Server;
use prescient_prometheus::testing::{Prometheus, Scrape, now_ms};
use prometheus_support::{ODD, dashboard, dashboard_queries, full_view, instantiate};

const WITHIN: Duration = Duration::from_secs(60);

/// The viewer token Prometheus scrapes with.
const TOKEN: &str = "scrape-secret";

/// The API server on a loopback port (its store in `dir`, `TOKEN` a
/// viewer token) serving `full_view(2.5, 3, 4, now)`, and the port that
/// publishes the view (the agent loop's side).
fn serve_full_view(dir: &Path) -> (Server, ControlPort) {
    let mut config = Config::default();
    config.store.path = dir.join("prescient.db");
    config.api.listen = "127.0.0.1:0".into();
    config.api.tokens = vec![TokenConfig {
        name: "prometheus".into(),
        role: Role::Viewer,
        sha256: prescient_api::hash_token(TOKEN),
    }];
    let (handle, port) = Control::new();
    port.publish(full_view(2.5, 3, 4, now_ms()));
    (prescient_api::serve(&config, handle).unwrap(), port)
}

/// The one value of an instant query, when it has exactly one series.
fn value(c: &prescient_prometheus::Client, q: &str) -> Option<f64> {
    let r = c.query(q, None).ok()?;
    (r.len() == 1).then(|| r[0].points[0].1)
}

#[test]
fn prometheus_scrapes_what_the_view_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = serve_full_view(dir.path());

    let prom = Prometheus::start_scraping(&Scrape {
        job: "prescient".into(),
        target: server.addr(),
        metrics_path: "/metrics".into(),
        bearer_token: Some(TOKEN.into()),
    })
    .unwrap();

    let web_cpu = r#"prescient_workload_allocation{job="prescient",workload="web",resource="cpu"}"#;
    prom.wait_until(WITHIN, "web's cpu allocation 2.5", |c| {
        (value(c, web_cpu)? == 2.5).then_some(())
    })
    .unwrap();
    let c = prom.client();
    // The scrape is healthy: up, and every sample taken.
    assert_eq!(value(&c, r#"up{job="prescient"}"#), Some(1.0));
    // The odd name came through the text format and Prometheus's parser
    // whole.
    let odd = c
        .query(r#"prescient_workload_usage{resource="cpu"}"#, None)
        .unwrap();
    let names: Vec<&str> = odd.iter().map(|s| s.labels["workload"].as_str()).collect();
    assert!(names.contains(&ODD), "{names:?}");
    assert_eq!(value(&c, "prescient_plans_total"), Some(3.0));
    assert_eq!(
        value(
            &c,
            r#"prescient_stage_duration_seconds_count{stage="solve"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &c,
            r#"prescient_stage_duration_seconds_bucket{stage="solve",le="+Inf"}"#
        ),
        Some(4.0)
    );
    assert_eq!(
        value(
            &c,
            r#"prescient_workload_forecast{workload="web",resource="cpu",quantile="0.95"}"#
        ),
        Some(1.875)
    );
    let info = c.query("prescient_agent_info", None).unwrap();
    assert_eq!(info[0].labels["mode"], "enforce");

    // The view changes: Prometheus follows.
    port.publish(full_view(3.75, 5, 6, now_ms()));
    prom.wait_until(WITHIN, "web's cpu allocation 3.75", |c| {
        (value(c, web_cpu)? == 3.75).then_some(())
    })
    .unwrap();
    prom.wait_until(WITHIN, "5 plans", |c| {
        (value(c, "prescient_plans_total")? == 5.0).then_some(())
    })
    .unwrap();

    // Every dashboard query is valid PromQL that Prometheus runs over these
    // series; those without rate() (which needs two scrapes in its window,
    // there by now) give data.
    for (place, expr) in dashboard_queries(&dashboard()) {
        let q = instantiate(&expr);
        if place.starts_with("variable") {
            // label_values() is Grafana's, not PromQL: its selector is.
            let inner = q
                .trim_start_matches("label_values(")
                .rsplit_once(',')
                .map_or(q.as_str(), |(sel, _)| sel);
            let r = c
                .query(inner, None)
                .unwrap_or_else(|e| panic!("{place}: {e}"));
            assert!(!r.is_empty(), "{place}: {inner} gives nothing");
            continue;
        }
        let r = prom
            .wait_until(WITHIN, &format!("{place}: {q}"), |c| {
                let r = c.query(&q, None).map_err(|e| panic!("{place}: {e}")).ok()?;
                (!r.is_empty()).then_some(r)
            })
            .unwrap();
        assert!(r.iter().all(|s| !s.points.is_empty()), "{place}");
    }
}

#[test]
fn without_the_token_the_scrape_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _port) = serve_full_view(dir.path());
    let prom = Prometheus::start("prescient", server.addr(), "/metrics").unwrap();
    // The target is scraped, and down: no series of ours.
    prom.wait_until(WITHIN, "a failed scrape", |c| {
        (value(c, r#"up{job="prescient"}"#)? == 0.0).then_some(())
    })
    .unwrap();
    assert!(
        prom.client()
            .query("prescient_plans_total", None)
            .unwrap()
            .is_empty()
    );
}
