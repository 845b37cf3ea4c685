//! `prescient backtest` end to end, on the committed Alibaba sample (4 days
//! at 10 s: one origin, midnight of day 3).

use std::collections::HashMap;

mod common;
use common::{fails, ok, sample};

#[test]
fn table_scores_every_model_and_the_ensemble() {
    let trace = sample("alibaba2018.csv.gz");
    let out = ok(&["backtest", "--trace", trace.to_str().unwrap()]);
    for name in [
        "seasonal",
        "holt-winters",
        "histogram",
        "recent",
        "ensemble (uncalibrated)",
        "ensemble",
    ] {
        assert!(
            out.contains(&format!("│ {name} ")),
            "{name} missing from\n{out}"
        );
    }
    assert!(out.contains("origins at the midnights of day 3"), "{out}");
    assert!(
        out.contains("ensemble weights at the end, day band"),
        "{out}"
    );
}

#[test]
fn out_csv_rescored_by_hand_matches_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("forecasts.csv");
    let trace = sample("alibaba2018.csv.gz");
    let report = ok(&[
        "backtest",
        "--trace",
        trace.to_str().unwrap(),
        "--resource",
        "memory",
        "--out",
        csv.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["resource"], "memory");
    assert_eq!(report["origins"], serde_json::json!([259200]));
    let forecasters = report["forecasters"].as_array().unwrap();
    assert_eq!(forecasters.len(), 6);
    let ens = forecasters
        .iter()
        .find(|f| f["name"] == "ensemble")
        .unwrap();
    let weights = &report["series_state"][0]["weights"];
    assert_eq!(weights["bands"].as_array().unwrap().len(), 3);

    // The 5-minute means of the trace, computed here independently.
    let text = std::io::read_to_string(flate2::read::GzDecoder::new(
        std::fs::File::open(&trace).unwrap(),
    ))
    .unwrap();
    let mut sums: HashMap<i64, (f64, u32)> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[3] == "memory" {
            let e = sums
                .entry(f[0].parse::<i64>().unwrap() / 300 * 300)
                .or_default();
            e.0 += f[4].parse::<f64>().unwrap();
            e.1 += 1;
        }
    }
    let written = std::fs::read_to_string(&csv).unwrap();
    let mut lines = written.lines();
    assert_eq!(
        lines.next(),
        Some("origin,timestamp,host,workload,resource,quantile,value")
    );
    let levels = [0.5, 0.9, 0.95, 0.99];
    let mut rows: HashMap<i64, Vec<(f64, f64)>> = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(&f[..3], &["259200", f[1], "alibaba"][..]);
        assert_eq!((f[3], f[4]), ("cluster", "memory"));
        rows.entry(f[1].parse().unwrap())
            .or_default()
            .push((f[5].parse().unwrap(), f[6].parse().unwrap()));
    }
    assert_eq!(rows.len(), 288);
    let (mut loss, mut abs, mut n, mut covered) = ([0.0; 4], 0.0, 0, 0);
    for (ts, q) in &rows {
        assert_eq!(q.iter().map(|x| x.0).collect::<Vec<_>>(), levels);
        assert!(q.windows(2).all(|w| w[0].1 <= w[1].1), "{ts}: {q:?}");
        let Some(&(s, c)) = sums.get(ts) else {
            continue;
        };
        let y = s / c as f64;
        for i in 0..4 {
            let e = y - q[i].1;
            loss[i] += if e >= 0.0 {
                levels[i] * e
            } else {
                (levels[i] - 1.0) * e
            };
        }
        abs += y.abs();
        n += 1;
        covered += (y <= q[2].1) as u32;
    }
    assert_eq!(n, ens["actuals"].as_u64().unwrap());
    let wql = loss.iter().map(|l| 2.0 * l / abs).sum::<f64>() / 4.0;
    // The CSV's numbers are printed in full: the hand score matches closely.
    let reported = ens["wql"].as_f64().unwrap();
    assert!(
        (wql - reported).abs() < 1e-9 * reported.max(1e-12),
        "{wql} vs {reported}"
    );
    assert_eq!(
        covered as f64 / n as f64,
        ens["coverage95"].as_f64().unwrap()
    );
}

#[test]
fn models_can_be_chosen() {
    let trace = sample("alibaba2018.csv.gz");
    let out = ok(&[
        "backtest",
        "--trace",
        trace.to_str().unwrap(),
        "--models",
        "seasonal,recent",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = report["forecasters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["seasonal", "recent", "ensemble (uncalibrated)", "ensemble"]
    );
}

#[test]
fn errors_name_what_and_where() {
    let trace = sample("alibaba2018.csv.gz");
    let t = trace.to_str().unwrap();
    let err = fails(&["backtest", "--trace", t, "--models", "seasonal,arima"]);
    assert!(err.contains("--models") && err.contains("'arima'"), "{err}");
    assert!(err.contains("holt-winters"), "{err}");
    // One day of PlanetLab: no origin at day 3.
    let short = sample("planetlab.csv.gz");
    let err = fails(&["backtest", "--trace", short.to_str().unwrap()]);
    assert!(err.contains("planetlab.csv.gz"), "{err}");
    assert!(
        err.contains("spans 1.00 days") && err.contains("day 3"),
        "{err}"
    );
    let err = fails(&["backtest", "--trace", "/nonexistent/t.csv"]);
    assert!(err.contains("/nonexistent/t.csv"), "{err}");
    let err = fails(&[
        "backtest",
        "--trace",
        short.to_str().unwrap(),
        "--resource",
        "memory",
    ]);
    assert!(err.contains("no 'memory' series"), "{err}");
}
