//! The series endpoint returns the stored actual, forecast and allocation
//! series at the resolution asked for; and the other reads return the
//! view and the store.

use prescient_core::{DemandProfile, Resource, SeriesKey};
use prescient_store::Store;

use crate::fixture::*;

fn pairs(v: &serde_json::Value) -> Vec<(i64, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn one_minute_series_has_the_rollup_means_forecasts_and_allocations() {
    let f = Fixture::new();
    let from = T0;
    let to = T0 + 3_600_000;
    let s = f.get_json(&format!(
        "/api/v1/workloads/web/series?resource=cpu&from={from}&to={to}&resolution=1m"
    ));
    assert_eq!(s["workload"], "web");
    assert_eq!(s["resource"], "cpu");
    assert_eq!(s["unit"], "cores");
    assert_eq!(s["resolution"], "1m");
    assert_eq!(s["from"], from);
    assert_eq!(s["to"], to);
    assert_eq!(s["slo_quantile"], 0.95);
    // 60 minutes, each the mean of its 12 samples (i = 12m .. 12m+11).
    let actual = pairs(&s["actual"]);
    assert_eq!(actual.len(), 60);
    for (m, &(ts, v)) in actual.iter().enumerate() {
        let m = m as i64;
        assert_eq!(ts, T0 + m * 60_000);
        let mean = (12 * m..12 * m + 12).map(cpu).sum::<f64>() / 12.0;
        assert!(close(v, mean), "minute {m}: {v} vs {mean}");
    }
    // Forecasts: the first step of each profile made in the hour, at the
    // step's time (10 s after the plan).
    assert_eq!(s["forecast"]["levels"], serde_json::json!(LEVELS));
    let points = s["forecast"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 6);
    for (k, p) in points.iter().enumerate() {
        let k = k as i64;
        assert_eq!(p[0], T0 + k * PLAN_EVERY_MS + 10_000);
        let want = profile_values(k);
        let got: Vec<f64> = p[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len());
        assert!(
            got.iter().zip(&want).all(|(&g, &w)| close(g, w)),
            "profile {k}: {got:?} vs {want:?}"
        );
    }
    // Allocations: the plan in force at `from` (plan 0, made at T0), then
    // each change.
    let alloc = pairs(&s["allocation"]);
    let want: Vec<(i64, f64)> = (0..6)
        .map(|k| (T0 + k * PLAN_EVERY_MS, web_cpu_allocation(k)))
        .collect();
    assert_eq!(alloc, want);
    // The web event and the view's anomaly, not db's event.
    let events = s["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["kind"], "release");
    assert_eq!(events[0]["start"], T0 + 1_800_000);
    assert_eq!(events[0]["end"], T0 + 2_400_000);
    let anomalies = s["anomalies"].as_array().unwrap();
    assert!(
        anomalies.is_empty(),
        "the anomaly is at T0 + 1 h, outside: {anomalies:?}"
    );
}

#[test]
fn memory_is_the_peak_and_ten_seconds_and_raw_come_from_the_samples() {
    let f = Fixture::new();
    let (from, to) = (T0, T0 + 600_000);
    let s = f.get_json(&format!(
        "/api/v1/workloads/web/series?resource=memory&from={from}&to={to}&resolution=1m"
    ));
    assert_eq!(s["unit"], "bytes");
    for (m, (_, v)) in pairs(&s["actual"]).into_iter().enumerate() {
        assert_eq!(v, memory(12 * m as i64 + 11), "peak of minute {m}");
    }
    let s = f.get_json(&format!(
        "/api/v1/workloads/web/series?resource=cpu&from={from}&to={to}&resolution=10s"
    ));
    let actual = pairs(&s["actual"]);
    assert_eq!(actual.len(), 60);
    for (b, &(ts, v)) in actual.iter().enumerate() {
        let b = b as i64;
        assert_eq!(ts, T0 + b * 10_000);
        let mean = (cpu(2 * b) + cpu(2 * b + 1)) / 2.0;
        assert!(close(v, mean), "bucket {b}: {v} vs {mean}");
    }
    let s = f.get_json(&format!(
        "/api/v1/workloads/web/series?from={from}&to={to}&resolution=raw"
    ));
    let actual = pairs(&s["actual"]);
    assert_eq!(actual.len(), 120);
    assert!(
        actual
            .iter()
            .enumerate()
            .all(|(i, &(ts, v))| ts == T0 + i as i64 * STEP_MS && v == cpu(i as i64))
    );
    // Raw allocations: every plan in the range, and the one in force.
    assert_eq!(pairs(&s["allocation"]).len(), 1);
}

#[test]
fn auto_picks_the_resolution_and_the_defaults_end_at_the_view_time() {
    let f = Fixture::new();
    let s = f.get_json(&format!(
        "/api/v1/workloads/web/series?from={T0}&to={}",
        T0 + 3_600_000
    ));
    assert_eq!(s["resolution"], "10s", "360 points at 10 s, 60 at 1 min");
    assert_eq!(s["actual"].as_array().unwrap().len(), 360);
    // No range: the day before the view's time, at 1 min.
    let s = f.get_json("/api/v1/workloads/web/series");
    assert_eq!(s["resolution"], "1m");
    assert_eq!(s["to"], NOW + 1);
    assert_eq!(s["from"], NOW + 1 - 86_400_000);
    assert_eq!(s["actual"].as_array().unwrap().len(), 120);
    assert_eq!(s["anomalies"].as_array().unwrap().len(), 1);
    assert_eq!(s["anomalies"][0]["kind"], "level_shift");
    // db has no profiles: an empty forecast, not an error.
    let s = f.get_json("/api/v1/workloads/db/series?resource=cpu");
    assert_eq!(s["forecast"]["points"].as_array().unwrap().len(), 0);
    // Nothing in force a day back; db's allocation never changed after.
    assert_eq!(pairs(&s["allocation"]), vec![(T0, 1.0)]);
}

#[test]
fn reads_return_the_view_and_the_store() {
    let f = Fixture::new();
    let h = f.get_json("/api/v1/health");
    assert_eq!(h["status"], "ok");
    assert_eq!(h["host"], HOST);
    assert_eq!(h["mode"], "recommend");
    let st = f.get_json("/api/v1/status");
    assert_eq!(st["updated_at"], NOW);
    assert_eq!(st["policy"], "prescient");
    assert_eq!(st["store"]["stored_samples"], 5760);
    assert!(st["counters"]["plans"].is_u64(), "{st}");
    let ws = f.get_json("/api/v1/workloads");
    assert_eq!(ws.as_array().unwrap().len(), 2);
    let w = f.get_json("/api/v1/workloads/web");
    assert_eq!(w["labels"]["app"], "web");
    assert_eq!(w["resources"][0]["resource"], "cpu");
    assert_eq!(w["resources"][0]["forecast"][2]["level"], 0.95);
    let plans = f.get_json("/api/v1/plans");
    assert_eq!(plans[0]["pool"], POOL);
    assert!(
        plans[0]["entries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("p95")
    );
    let history = f.get_json(&format!("/api/v1/plans/history?from={T0}"));
    assert_eq!(history.as_array().unwrap().len(), PLANS as usize);
    let history = f.get_json(&format!("/api/v1/plans/history?pool=nosuch&from={T0}"));
    assert!(history.as_array().unwrap().is_empty());
    let last = f.get_json(&format!("/api/v1/plans/history?from={T0}&limit=1"));
    assert_eq!(last[0]["made_at"], T0 + (PLANS - 1) * PLAN_EVERY_MS);
    assert_eq!(f.get_json("/api/v1/pools")[0]["capacity"]["cpu"], 16.0);
    let models = f.get_json("/api/v1/models");
    assert_eq!(models.as_array().unwrap().len(), 4);
    let weights: f64 = models[0]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["weight"].as_f64().unwrap())
        .sum();
    assert_eq!(weights, 1.0);
    assert_eq!(f.get_json("/api/v1/alerts")[0]["state"], "firing");
    assert_eq!(f.get_json("/api/v1/anomalies")[0]["workload"], "web");
    let audit = f.get_json(&format!("/api/v1/audit?since={T0}&limit=10"));
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "cgroup.write")
    );
    let config = f.get_json("/api/v1/config");
    let tokens = config["api"]["token"].as_array().unwrap();
    assert_eq!(tokens.len(), 3);
    assert!(
        tokens.iter().all(|t| t["sha256"] == "<redacted>"),
        "{tokens:?}"
    );
    assert!(
        !config
            .to_string()
            .contains(&prescient_api::hash_token(ADMIN))
    );
    let events = f.get_json("/api/v1/events");
    assert_eq!(events.as_array().unwrap().len(), 2);
    assert_eq!(events[0]["schedule"]["once"]["start"], T0 + 600_000);
    assert_eq!(events[0]["effect"]["multiply"], 2.0);
    let metrics = f.get("/metrics", Some(VIEWER));
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(metrics.text().unwrap().contains("prescient_"));
}

#[test]
fn a_one_day_series_has_forecasts_across_the_day() {
    let f = Fixture::new();
    const DAY: i64 = 86_400_000;
    const EVERY: i64 = 10_000;
    // A day of profiles of db's CPU, one every 10 s up to the view's time,
    // as the agent saves them: the store thins the older ones.
    let from = NOW - DAY;
    {
        let mut s = Store::open(f._dir.path().join("api.db")).unwrap();
        let sid = s
            .series_id(&SeriesKey::new(HOST, "db", Resource::Cpu))
            .unwrap();
        let mut made = from;
        while made <= NOW {
            let v = 1.0 + ((made - from) / 60_000) as f64 * 0.001;
            let p =
                DemandProfile::new(made + EVERY, EVERY, vec![0.5, 0.9], vec![v, v * 2.0]).unwrap();
            s.save_profile(sid, made, &p).unwrap();
            made += EVERY;
        }
    }
    let s = f.get_json(&format!(
        "/api/v1/workloads/db/series?resource=cpu&from={from}&to={}&resolution=1m",
        NOW + 1
    ));
    assert_eq!(s["forecast"]["levels"], serde_json::json!([0.5, 0.9]));
    let points: Vec<i64> = s["forecast"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_i64().unwrap())
        .collect();
    // At most one per minute, by time, within the range.
    assert!(
        points
            .windows(2)
            .all(|w| w[0].div_euclid(60_000) < w[1].div_euclid(60_000))
    );
    assert!(points.iter().all(|&t| t >= from && t <= NOW + 1));
    // Across the whole day: a point in every 5 minutes (the store keeps
    // one profile per 5 minutes beyond the newest 48), and one a minute
    // over the last few.
    for k in 0..288 {
        let bucket = from + k * 300_000;
        assert!(
            points
                .iter()
                .any(|&t| t >= bucket && t < bucket + 300_000 + EVERY),
            "no forecast point in the 5 minutes from {bucket} ({} points)",
            points.len()
        );
    }
    assert!(points[0] < from + 300_000 + EVERY, "first at {}", points[0]);
    let last_7_min = points.iter().filter(|&&t| t > NOW - 420_000).count();
    assert!(last_7_min >= 7, "{last_7_min} points in the last 7 minutes");
    // One per 5 minutes before the newest 48 (~8 minutes at one a minute).
    assert!(points.len() <= 289 + 10, "{}", points.len());
}
