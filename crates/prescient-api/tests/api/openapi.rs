//! The committed OpenAPI document is the one the code generates, and the
//! server serves it.

use std::path::Path;

use crate::fixture::*;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

#[test]
fn openapi_document_matches_the_committed_one() {
    let generated = prescient_api::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("PRESCIENT_BLESS").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(Path::new(COMMITTED)).unwrap_or_default();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        let line = |t: &str| t.lines().nth(first).unwrap_or("<end of file>").to_string();
        panic!(
            "crates/prescient-api/openapi.json drifted from the code at line {}:\n  committed: {}\n  generated: {}\n\
             regenerate it with `PRESCIENT_BLESS=1 cargo test -p prescient-api --test api openapi`",
            first + 1,
            line(&committed),
            line(&generated)
        );
    }
}

#[test]
fn openapi_json_is_served_and_describes_the_series_shape() {
    let f = Fixture::new();
    let served = f.get_json("/api/v1/openapi.json");
    assert_eq!(
        served,
        serde_json::to_value(prescient_api::openapi()).unwrap()
    );
    let series = &served["components"]["schemas"]["Series"]["properties"];
    for key in [
        "workload",
        "resource",
        "unit",
        "resolution",
        "from",
        "to",
        "actual",
        "forecast",
        "slo_quantile",
        "allocation",
        "anomalies",
        "events",
    ] {
        assert!(series.get(key).is_some(), "Series has no {key}: {series}");
    }
    assert!(served["components"]["securitySchemes"]["bearer"].is_object());
}
