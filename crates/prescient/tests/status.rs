//! `prescient status` shows each series' forecaster from the store: its
//! ensemble weights one step and a day ahead, and its calibration, at the
//! workload's SLO quantile (or a level asked for).

mod common;

use std::collections::BTreeMap;

use common::{fails, ok};
use prescient_agent::persist;
use prescient_core::{HostId, Resource, Sample, SeriesKey, WorkloadId};
use prescient_forecast::anomaly::{AnomalyConfig, SeriesAnomalyDetector};
use prescient_forecast::{Band, SeriesContext, SeriesForecaster};
use prescient_store::Store;

const STEP: i64 = 300_000;

/// Three days of a daily cycle with noise, learnt at 5 minutes.
fn trained(resource: Resource, slo: f64) -> SeriesForecaster {
    let mut f = SeriesForecaster::new(
        SeriesContext {
            step_ms: STEP,
            resource,
        },
        &[],
    );
    f.track_level(slo);
    let scale = if resource == Resource::Memory {
        1e9
    } else {
        1.0
    };
    let mut x: u64 = 99;
    for t in 0..3 * 288i64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let noise = (x % 1000) as f64 / 1000.0 - 0.5;
        let tod = (t % 288) as f64 / 288.0;
        let v = scale * (1.0 + 0.4 * (tod * std::f64::consts::TAU).sin() + 0.1 * noise);
        f.observe(t * STEP, v);
    }
    f
}

#[test]
fn status_shows_each_forecasters_weights_and_calibration_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.db");
    let host = HostId("h1".into());
    let key = |w: &str, r| SeriesKey::new("h1", w, r);
    let (cpu, mem, idle) = (
        key("busy", Resource::Cpu),
        key("busy", Resource::Memory),
        key("idle", Resource::Cpu),
    );
    // busy's CPU has an SLO of 0.9995 (calibrated besides the fixed levels),
    // saved as the agent saves it now; its memory as an agent before the
    // anomaly detectors were saved did; idle's state is damaged.
    let f_cpu = trained(Resource::Cpu, 0.9995);
    let f_mem = trained(Resource::Memory, 0.95);
    {
        let mut store = Store::open(&path).unwrap();
        for w in ["busy", "idle"] {
            store
                .set_workload_meta(
                    &host,
                    &WorkloadId(w.into()),
                    &format!("{w} (/{w})"),
                    &BTreeMap::new(),
                    "agent",
                    0,
                )
                .unwrap();
        }
        let mut rows = Vec::new();
        for k in [&cpu, &mem, &idle] {
            let id = store.series_id(k).unwrap();
            rows.push((id, Sample::new(3 * 288 * STEP, 1.0)));
        }
        store.ingest(&rows).unwrap();
        let detector = SeriesAnomalyDetector::new(Resource::Cpu, &AnomalyConfig::default());
        let (v, blob) = persist::encode(&f_cpu, &detector);
        store
            .save_model_state(&persist::state_key(&cpu), v, &blob)
            .unwrap();
        store
            .save_model_state(
                &persist::state_key(&mem),
                persist::FORECASTER_ONLY_VERSION,
                &f_mem.to_bytes(),
            )
            .unwrap();
        store
            .save_model_state(
                &persist::state_key(&idle),
                persist::SERIES_STATE_VERSION,
                b"not a forecaster",
            )
            .unwrap();
    }
    let db = path.to_str().unwrap();
    let out = ok(&["status", "--store", db]);
    assert!(out.contains("\nforecasters ("), "{out}");
    let row = |w: &str, r: &str| -> String {
        out.lines()
            .find(|l| {
                l.contains(&format!(" {w} "))
                    && l.contains(&format!(" {r} "))
                    && l.contains("steps")
            })
            .unwrap_or_else(|| panic!("no forecaster row for {w} {r}:\n{out}"))
            .to_string()
    };
    // Each model's weight at the SLO level (at the fixed level above it:
    // weights are kept at the fixed levels), one step and a day ahead, as
    // the saved forecaster has them.
    let busy_cpu = row("busy", "cpu");
    assert!(busy_cpu.contains(" 864 steps "), "{busy_cpu}");
    assert!(
        busy_cpu.contains(" 0.9995 (weights at 0.999) "),
        "{busy_cpu}"
    );
    let weights = f_cpu.weights();
    for band in [Band::Step, Band::Day] {
        let text: Vec<String> = weights
            .models
            .iter()
            .map(|m| format!("{m} {:.2}", weights.get(band, m, 0.999).unwrap()))
            .collect();
        assert!(
            busy_cpu.contains(&text.join(", ")),
            "{band:?} {text:?}: {busy_cpu}"
        );
    }
    // The day band's weights are not the step band's: they were learnt.
    assert_ne!(
        weights.get(Band::Step, "recent", 0.999),
        weights.get(Band::Day, "recent", 0.999)
    );
    // One step ahead: the SLO's own tracker's coverage and offset.
    let t = f_cpu
        .calibration()
        .iter()
        .find(|t| t.level == 0.9995)
        .unwrap();
    let covers = format!(
        "covers {:.1}% of {} steps, offset {:+.2} x volatility",
        100.0 * (1.0 - t.misses as f64 / t.seen as f64),
        t.seen,
        t.theta
    );
    assert!(busy_cpu.contains(&covers), "{covers}: {busy_cpu}");
    // A day ahead: the offset above the median for 0.9995, from the checks.
    let offset = f_cpu.horizon_offset(Band::Day, 0.9995).unwrap();
    let checks = f_cpu.horizon_scores(Band::Day);
    assert!(checks > 24);
    assert!(
        busy_cpu.contains(&format!("from {checks} checks")),
        "{busy_cpu}"
    );
    assert!(
        busy_cpu.contains(&prescient_solver::fmt_amount(Resource::Cpu, offset.abs())),
        "{offset}: {busy_cpu}"
    );
    // Memory: saved by an older agent, read all the same; shown at 0.95.
    let busy_mem = row("busy", "memory");
    assert!(busy_mem.contains(" 0.95 "), "{busy_mem}");
    let w = f_mem.weights();
    assert!(
        busy_mem.contains(&format!(
            "recent {:.2}",
            w.get(Band::Step, "recent", 0.95).unwrap()
        )),
        "{busy_mem}"
    );
    // A damaged state is said to be, not a failure of the command.
    let idle_row = out
        .lines()
        .find(|l| l.contains(" idle ") && l.contains("saved state unreadable"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(idle_row.contains("does not decode"), "{idle_row}");

    // Another level on request: 0.9 is a fixed level.
    let out = ok(&["status", "--store", db, "--level", "0.9"]);
    let line = out
        .lines()
        .find(|l| l.contains(" busy ") && l.contains(" cpu ") && l.contains("steps"))
        .unwrap();
    assert!(line.contains(" 0.9 "), "{line}");
    assert!(
        line.contains(&format!(
            "recent {:.2}",
            weights.get(Band::Step, "recent", 0.9).unwrap()
        )),
        "{line}"
    );
    // Between fixed levels, the weights of the next one up.
    let out = ok(&["status", "--store", db, "--level", "0.96"]);
    assert!(out.contains("0.96 (weights at 0.97)"), "{out}");
    let err = fails(&["status", "--store", db, "--level", "1.5"]);
    assert!(
        err.contains("--level") && err.contains("strictly between 0 and 1"),
        "{err}"
    );
}
