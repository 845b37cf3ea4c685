//! Tests every model must pass, and model-specific behaviour.

use super::*;
use prescient_core::Resource;

const STEP: i64 = 300_000;
const DAY: i64 = 86_400_000;

fn ctx() -> SeriesContext {
    SeriesContext {
        step_ms: STEP,
        resource: Resource::Cpu,
    }
}

fn daily(ts: i64) -> f64 {
    10.0 + 5.0 * (ts as f64 / DAY as f64 * std::f64::consts::TAU).sin()
}

fn forecast(m: &dyn Model, start: i64, horizon: usize, levels: &[f64]) -> Vec<f64> {
    let mut out = vec![f64::NAN; horizon * levels.len()];
    m.forecast(start, horizon, levels, &mut out);
    out
}

#[test]
fn every_model_gives_valid_rows_before_and_after_data_and_on_bad_input() {
    for kind in ModelKind::ALL {
        let mut m = kind.build(ctx());
        let levels = [0.1, 0.5, 0.9, 0.999];
        // Before any data.
        let out = forecast(&m, 0, 3, &levels);
        assert!(
            out.iter().all(|v| v.is_finite() && *v >= 0.0),
            "{kind:?} {out:?}"
        );
        // NaN, infinities, huge, negative and out-of-order values.
        for (i, v) in [f64::NAN, f64::INFINITY, -5.0, 1e300, 3.0, f64::NEG_INFINITY]
            .into_iter()
            .enumerate()
        {
            m.update(i as i64 * STEP, v);
        }
        m.update(0, 7.0);
        for t in 10..(3 * 288) {
            m.update(t * STEP, daily(t * STEP));
        }
        let out = forecast(&m, 3 * 288 * STEP, 300, &levels);
        for row in out.chunks(levels.len()) {
            assert!(
                row.iter().all(|v| v.is_finite() && *v >= 0.0),
                "{kind:?} {row:?}"
            );
            assert!(row.windows(2).all(|w| w[0] <= w[1]), "{kind:?} {row:?}");
        }
        // A short output buffer is filled as far as it goes, no panic.
        let mut short = vec![0.0; 5];
        m.forecast(0, 10, &levels, &mut short);
        m.forecast(0, 10, &[], &mut short);
        assert!(
            m.state_bytes() > 0 && m.state_bytes() < 64 * 1024,
            "{kind:?}"
        );
        assert_eq!(m.name(), kind.name());
    }
}

#[test]
fn seasonal_profile_forecasts_tomorrow_like_today() {
    let mut m = SeasonalProfile::new(ctx());
    for t in 0..(3 * 288) {
        m.update(t * STEP, daily(t * STEP));
    }
    let start = 3 * DAY;
    let out = forecast(&m, start, 288, &[0.5]);
    let mut total = 0.0;
    for (h, v) in out.iter().enumerate() {
        let want = daily(start + h as i64 * STEP);
        // Smoothing over an hour flattens the sine's peak a little.
        assert!((v - want).abs() < 0.5, "step {h}: {v} vs {want}");
        total += (v - want).abs();
    }
    assert!(total / 288.0 < 0.1, "mean abs error {}", total / 288.0);
}

#[test]
fn holt_winters_learns_the_detected_season() {
    use crate::season::SeasonDetector;
    let mut m = HoltWinters::new(ctx());
    let mut d = SeasonDetector::new(STEP);
    for t in 0..(4 * 288) {
        let ts = t * STEP;
        let v = daily(ts) + 0.001 * t as f64;
        m.update(ts, v);
        if d.observe(ts, v) {
            m.season_changed(d.season().unwrap(), &d.recent());
        }
    }
    assert_eq!(m.period(), 288);
    let start = 4 * 288 * STEP;
    let out = forecast(&m, start, 288, &[0.5]);
    let err: f64 = out
        .iter()
        .enumerate()
        .map(|(h, v)| (v - daily(start + h as i64 * STEP) - 0.001 * (4 * 288 + h) as f64).abs())
        .sum::<f64>()
        / 288.0;
    // The damped trend (phi 0.95) gives up most of the 0.001/step slope a
    // day out (up to 0.27 by the end): that, not the season, is the error.
    assert!(err < 0.2, "mean abs error {err}");
}

#[test]
fn holt_winters_without_a_season_is_damped_holt() {
    let mut m = HoltWinters::new(ctx());
    let mut d = crate::season::SeasonDetector::new(STEP);
    for t in 0..(3 * 288) {
        let ts = t * STEP;
        m.update(ts, 4.0);
        if d.observe(ts, 4.0) {
            m.season_changed(d.season().unwrap(), &d.recent());
        }
    }
    assert_eq!(m.period(), 0);
    let out = forecast(&m, 3 * 288 * STEP, 10, &[0.5]);
    assert!(out.iter().all(|v| (v - 4.0).abs() < 1e-9), "{out:?}");
}

#[test]
fn recent_level_follows_a_regime_shift_within_minutes() {
    let mut m = RecentLevel::new(SeriesContext {
        step_ms: 10_000,
        resource: Resource::Memory,
    });
    for t in 0..600 {
        m.update(t * 10_000, 1e9);
    }
    for t in 600..660 {
        m.update(t * 10_000, 2e9);
    }
    // Ten minutes after the shift, the next step is close to the new level.
    let out = forecast(&m, 660 * 10_000, 1, &[0.5]);
    assert!(out[0] > 1.7e9, "{}", out[0]);
}

#[test]
fn histogram_model_quantiles_are_interpolated() {
    let mut m = HistogramModel::new(ctx());
    for t in 0..1000 {
        m.update(t * STEP, (t % 100) as f64 / 10.0);
    }
    let out = forecast(&m, 1000 * STEP, 2, &[0.5, 0.9]);
    assert!((out[0] - 5.0).abs() < 0.4, "{out:?}");
    assert!((out[1] - 9.0).abs() < 0.6, "{out:?}");
    assert_eq!(out[0], out[2]);
}

#[test]
fn model_kinds_parse_and_round_trip() {
    for k in ModelKind::ALL {
        assert_eq!(k.name().parse::<ModelKind>().unwrap(), k);
        let m = k.build(ctx());
        let bytes = postcard::to_stdvec(&m).unwrap();
        let back: AnyModel = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.kind(), k);
    }
    let err = "arima".parse::<ModelKind>().unwrap_err();
    assert!(err.to_string().contains("'arima'"), "{err}");
}

#[test]
fn a_seasonal_profile_moved_to_a_new_level_keeps_its_shape_and_its_next_steps() {
    // Three days of the cycle, then two hours of it doubled.
    let mut plain = SeasonalProfile::new(ctx());
    let shift_at = 3 * DAY;
    let truth = |ts: i64| daily(ts) * if ts >= shift_at { 2.0 } else { 1.0 };
    let mut since = Vec::new();
    for t in 0..(3 * DAY + 2 * 3_600_000) / STEP {
        let ts = t * STEP;
        plain.update(ts, truth(ts));
        if ts >= shift_at {
            since.push((ts, truth(ts)));
        }
    }
    let last = since.last().unwrap().0;
    let mut moved = plain.clone();
    // The cycle's mean is 10: doubled, it moves by 10.
    assert!(moved.move_level(10.0, &since));
    let median = |m: &SeasonalProfile, ts: i64| forecast(m, ts, 1, &[0.5])[0];
    // The next step: the correction had followed most of the new level
    // already, and still serves it (no jump of the whole shift on top).
    let next = last + STEP;
    let (m, p) = (median(&moved, next), median(&plain, next));
    assert!((m - p).abs() < 1e-9, "next step: moved {m}, plain {p}");
    // A day on, at every time of day (the doubled hours included, which
    // must not have been scaled twice), the doubled cycle.
    let mut worst_moved = 0.0f64;
    let mut worst_plain = 0.0f64;
    for k in 0..288 {
        let ts = last + DAY + k * STEP;
        let want = 2.0 * daily(ts);
        worst_moved = worst_moved.max((median(&moved, ts) - want).abs());
        worst_plain = worst_plain.max((median(&plain, ts) - want).abs());
    }
    // The profile smooths over an hour of the cycle: 0.5 off at most.
    assert!(worst_moved < 0.5, "moved profile off by {worst_moved}");
    assert!(
        worst_plain > 5.0,
        "the unmoved profile is off by {worst_plain}"
    );
    // A fall to nothing scales it to zero, never below.
    let mut gone = plain.clone();
    assert!(gone.move_level(-50.0, &since));
    assert!(
        (0..288).all(|k| median(&gone, last + DAY + k * STEP) >= 0.0),
        "negative forecasts"
    );
    // Bad input, or no data, moves nothing.
    let mut same = plain.clone();
    assert!(!same.move_level(f64::NAN, &since));
    assert!(!same.move_level(0.0, &since));
    assert_eq!(same, plain);
    assert!(!SeasonalProfile::new(ctx()).move_level(1.0, &[]));
}
