//! Tests of the learned model as a whole: training, forecasting, the
//! adapter, serialisation and robustness.

use std::sync::{Arc, OnceLock};

use prescient_core::Resource;

use super::rng::SplitMix64;
use super::*;
use crate::{DEFAULT_LEVELS, Model, SeriesContext};

const STEP: i64 = 300_000;
const DAY: usize = 288;

fn ctx() -> SeriesContext {
    SeriesContext {
        step_ms: STEP,
        resource: Resource::Cpu,
    }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut SplitMix64) -> f64 {
    let u = rng.next_f64().max(1e-12);
    let v = rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The noise-free level of the synthetic series `i` at bucket `t`: a daily
/// sine around `scale`.
fn truth(scale: f64, t: usize) -> f64 {
    let tod = (t % DAY) as f64 / DAY as f64;
    scale * (1.0 + 0.5 * (std::f64::consts::TAU * tod).sin())
}

const NOISE: f64 = 0.1;

/// Series of a daily sine with Gaussian noise (sd NOISE x scale), of scales
/// spanning nine orders of magnitude (cores to bytes), `days` long.
fn sine_series(n: usize, days: usize, seed: u64) -> Vec<TrainingSeries> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|i| {
            let scale = 10f64.powi((i % 10) as i32);
            let values = (0..days * DAY)
                .map(|t| (truth(scale, t) + NOISE * scale * normal(&mut rng)).max(0.0))
                .collect();
            TrainingSeries {
                step_ms: STEP,
                start_ms: 0,
                values,
            }
        })
        .collect()
}

fn small_config() -> TrainConfig {
    TrainConfig {
        max_rows: 40_000,
        rounds: 50,
        learning_rate: 0.15,
        max_depth: 5,
        min_leaf: 50,
        ..TrainConfig::default()
    }
}

/// Trained once on the first 8 days of 20 sine series; days 8 and 9 are
/// held out.
fn sine_forest() -> &'static (Vec<TrainingSeries>, Arc<QuantileForest>) {
    static F: OnceLock<(Vec<TrainingSeries>, Arc<QuantileForest>)> = OnceLock::new();
    F.get_or_init(|| {
        let all = sine_series(20, 10, 1);
        let cut = 8 * DAY as i64 * STEP;
        let past: Vec<TrainingSeries> = all.iter().map(|s| s.before(cut)).collect();
        let forest = train(&past, &small_config()).unwrap();
        assert!(forest.info().latest_target_ms.unwrap() < cut);
        (all, Arc::new(forest))
    })
}

fn fed_model(forest: &Arc<QuantileForest>, values: &[f64]) -> LearnedModel {
    let mut m = LearnedModel::new(SharedForest::new(Arc::clone(forest)), ctx());
    for (t, &v) in values.iter().enumerate() {
        m.update(t as i64 * STEP, v);
    }
    m
}

fn assert_rows_valid(out: &[f64], n: usize) {
    for row in out.chunks(n) {
        assert!(row.iter().all(|v| v.is_finite() && *v >= 0.0), "{row:?}");
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "crossing: {row:?}");
    }
}

#[test]
fn learns_a_daily_sine_on_held_out_days() {
    let (all, forest) = sine_forest();
    let levels = [0.5, 0.9];
    let z90 = 1.281_551_6;
    let (mut err50, mut err90, mut covered, mut n) = (0.0, 0.0, 0usize, 0usize);
    for (i, s) in all.iter().enumerate() {
        let scale = 10f64.powi((i % 10) as i32);
        for day in [8usize, 9] {
            let origin = day * DAY;
            let m = fed_model(forest, &s.values[..origin]);
            let mut out = vec![0.0; DAY * 2];
            m.forecast(origin as i64 * STEP, DAY, &levels, &mut out);
            assert_rows_valid(&out, 2);
            for h in 0..DAY {
                let t = origin + h;
                let mu = truth(scale, t);
                err50 += (out[2 * h] - mu).abs() / scale;
                err90 += (out[2 * h + 1] - (mu + z90 * NOISE * scale)).abs() / scale;
                covered += usize::from(s.values[t] <= out[2 * h + 1]);
                n += 1;
            }
        }
    }
    let (err50, err90, cov) = (
        err50 / n as f64,
        err90 / n as f64,
        covered as f64 / n as f64,
    );
    eprintln!(
        "held-out sine: |q50 - truth| {err50:.4}, |q90 - truth| {err90:.4} of the scale, 0.9 coverage {cov:.3}"
    );
    // The noise's sd is 0.1 of the scale and the daily swing 0.5 of it: a
    // model that missed the pattern would be off by about 0.3 on average.
    assert!(err50 < 0.05, "median off by {err50} of the scale");
    assert!(err90 < 0.06, "0.9 quantile off by {err90} of the scale");
    assert!((0.84..=0.96).contains(&cov), "0.9 coverage {cov}");
}

#[test]
fn quantiles_never_cross_at_any_levels_or_history() {
    let (all, forest) = sine_forest();
    let odd_levels = [0.01, 0.3, 0.5, 0.77, 0.9, 0.999];
    let mut rng = SplitMix64::new(3);
    let histories: Vec<Vec<f64>> = vec![
        all[3].values[..5].to_vec(),
        all[4].values[..DAY * 3].to_vec(),
        (0..500).map(|_| rng.next_f64() * 1e6).collect(),
        (0..500)
            .map(|i| if i % 50 == 0 { 1e9 } else { 1e-3 })
            .collect(),
        vec![0.0; 40].into_iter().chain([5.0]).collect(),
    ];
    for values in &histories {
        let m = fed_model(forest, values);
        let start = values.len() as i64 * STEP;
        for levels in [&DEFAULT_LEVELS[..], &odd_levels[..]] {
            let mut out = vec![0.0; 300 * levels.len()];
            m.forecast(start, 300, levels, &mut out);
            assert_rows_valid(&out, levels.len());
        }
    }
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let series = sine_series(6, 3, 9);
    let config = TrainConfig {
        rounds: 10,
        max_rows: 5_000,
        min_leaf: 20,
        ..TrainConfig::default()
    };
    let a = train(&series, &config).unwrap().to_bytes().unwrap();
    let b = train(&series, &config).unwrap().to_bytes().unwrap();
    assert_eq!(a, b);
    let other = TrainConfig { seed: 1, ..config };
    let c = train(&series, &other).unwrap().to_bytes().unwrap();
    assert_ne!(a, c, "the seed drives the sampling");
}

#[test]
fn a_forest_round_trips_and_unknown_bytes_are_refused() {
    let (_, forest) = sine_forest();
    let bytes = forest.to_bytes().unwrap();
    let back = QuantileForest::from_bytes(&bytes).unwrap();
    assert_eq!(&back, forest.as_ref());

    // Another version: refused, saying which.
    let mut v2 = bytes.clone();
    v2[4] = (FOREST_FORMAT_VERSION + 1) as u8;
    let err = QuantileForest::from_bytes(&v2).unwrap_err();
    assert!(
        matches!(err, LearnedError::UnsupportedVersion { found, .. } if found == FOREST_FORMAT_VERSION + 1)
    );
    assert!(
        err.to_string().contains("version 2 is not supported"),
        "{err}"
    );
    assert_eq!(
        QuantileForest::from_bytes(b"{\"json\": 1}").unwrap_err(),
        LearnedError::NotAForest
    );
    // Truncated or damaged bytes: an error or a forest that is safe to use,
    // never a panic.
    for cut in [4, 5, 20, bytes.len() / 2, bytes.len() - 1] {
        assert!(QuantileForest::from_bytes(&bytes[..cut]).is_err());
    }
    let mut rng = SplitMix64::new(5);
    for _ in 0..200 {
        let mut damaged = bytes.clone();
        let i = 5 + (rng.next_u64() as usize % (damaged.len() - 5));
        damaged[i] ^= 1 << (rng.next_u64() % 8);
        if let Ok(f) = QuantileForest::from_bytes(&damaged) {
            let mut out = vec![0.0; f.levels().len()];
            f.predict(&[1.0, 2.0, f64::NAN, 3.0], 0, 7, &mut out);
        }
    }
}

#[test]
fn the_adapter_matches_the_forest_and_its_state_round_trips() {
    let (all, forest) = sine_forest();
    let values = &all[7].values[..DAY * 9 + 17];
    let m = fed_model(forest, values);
    let levels = forest.levels();
    let n = levels.len();
    let origin = values.len() - 1;
    let origin_ms = origin as i64 * STEP;
    let mut out = vec![0.0; 40 * n];
    m.forecast(origin_ms + STEP, 40, levels, &mut out);
    let mut direct = vec![0.0; n];
    for k in 1..=40 {
        forest.predict(values, origin_ms, k, &mut direct);
        assert_eq!(&out[(k - 1) * n..k * n], &direct[..], "horizon {k}");
    }
    assert!(m.state_bytes() <= 64 * 1024, "{}", m.state_bytes());

    let bytes = m.state().to_bytes().unwrap();
    let state = LearnedState::from_bytes(&bytes).unwrap();
    assert_eq!(&state, m.state());
    let resumed = LearnedModel::from_state(m.forest().unwrap().clone(), state).unwrap();
    let mut again = vec![0.0; 40 * n];
    resumed.forecast(origin_ms + STEP, 40, levels, &mut again);
    assert_eq!(out, again);

    let mut v9 = bytes.clone();
    v9[4] = 9;
    assert!(matches!(
        LearnedState::from_bytes(&v9),
        Err(LearnedError::UnsupportedVersion { found: 9, .. })
    ));
    assert_eq!(
        LearnedState::from_bytes(&bytes[..3]).unwrap_err(),
        LearnedError::NotAState
    );
}

#[test]
fn a_swapped_in_forest_serves_every_series_at_once() {
    let (all, forest) = sine_forest();
    let shared = SharedForest::new(Arc::clone(forest));
    let mut a = LearnedModel::new(shared.clone(), ctx());
    let mut b = LearnedModel::new(shared.clone(), ctx());
    for (t, v) in all[2].values[..DAY].iter().enumerate() {
        a.update(t as i64 * STEP, *v);
        b.update(t as i64 * STEP, *v);
    }
    let forecast = |m: &LearnedModel| {
        let mut out = vec![0.0; DEFAULT_LEVELS.len()];
        m.forecast(DAY as i64 * STEP, 1, &DEFAULT_LEVELS, &mut out);
        out
    };
    let before = forecast(&a);
    // A forest trained on something else: constant series at 5.
    let constant = vec![
        TrainingSeries {
            step_ms: STEP,
            start_ms: 0,
            values: vec![5.0; DAY * 2],
        };
        3
    ];
    let other = train(&constant, &small_config()).unwrap();
    let old = shared.replace(other).unwrap();
    assert!(Arc::ptr_eq(&old, forest));
    let after_a = forecast(&a);
    assert_ne!(before, after_a);
    assert_eq!(after_a, forecast(&b));
    // Constant series teach nothing beyond the starting point: each level
    // at the series' own empirical quantile of its last day.
    let mut day = all[2].values[..DAY].to_vec();
    day.sort_by(f64::total_cmp);
    for (v, tau) in after_a.iter().zip(DEFAULT_LEVELS) {
        let q = day[((tau * DAY as f64).ceil() as usize).clamp(1, DAY) - 1];
        assert!((v - q).abs() < 1e-4 * q, "{tau}: {v} vs {q}");
    }

    let long: Vec<TrainingSeries> = (0..3)
        .map(|_| TrainingSeries {
            step_ms: STEP,
            start_ms: 0,
            values: vec![5.0; DAY * 60],
        })
        .collect();
    let hourly = train(
        &long,
        &TrainConfig {
            step_ms: 3_600_000,
            ..small_config()
        },
    )
    .unwrap();
    assert!(matches!(
        shared.replace(hourly),
        Err(LearnedError::StepMismatch {
            kept_ms: 300_000,
            new_ms: 3_600_000
        })
    ));
}

#[test]
fn degenerate_input_neither_panics_nor_invents() {
    let config = small_config();
    // Nothing to learn from: clear errors.
    assert!(matches!(
        train(&[], &config),
        Err(LearnedError::NotEnoughData { rows: 0, .. })
    ));
    let gaps = TrainingSeries {
        step_ms: STEP,
        start_ms: 0,
        values: vec![f64::NAN; 1000],
    };
    assert!(matches!(
        train(std::slice::from_ref(&gaps), &config),
        Err(LearnedError::NotEnoughData { rows: 0, .. })
    ));
    let zeros = TrainingSeries {
        values: vec![0.0; 1000],
        ..gaps.clone()
    };
    assert!(matches!(
        train(&[zeros], &config),
        Err(LearnedError::NotEnoughData { .. })
    ));
    let bad_step = TrainingSeries {
        step_ms: 0,
        ..gaps.clone()
    };
    assert!(matches!(
        train(&[bad_step], &config),
        Err(LearnedError::InvalidSeries { index: 0, .. })
    ));
    let huge = TrainingSeries {
        step_ms: i64::MAX,
        start_ms: i64::MAX - 10,
        values: vec![1.0; 3],
    };
    assert!(matches!(
        train(&[huge], &config),
        Err(LearnedError::InvalidSeries { .. })
    ));
    for (field, c) in [
        (
            "levels",
            TrainConfig {
                levels: vec![0.5, 0.5],
                ..config.clone()
            },
        ),
        (
            "levels",
            TrainConfig {
                levels: vec![],
                ..config.clone()
            },
        ),
        (
            "step_ms",
            TrainConfig {
                step_ms: 7_000,
                ..config.clone()
            },
        ),
        (
            "max_bins",
            TrainConfig {
                max_bins: 300,
                ..config.clone()
            },
        ),
        (
            "max_depth",
            TrainConfig {
                max_depth: 11,
                ..config.clone()
            },
        ),
        (
            "learning_rate",
            TrainConfig {
                learning_rate: f64::NAN,
                ..config.clone()
            },
        ),
        (
            "row_subsample",
            TrainConfig {
                row_subsample: 0.0,
                ..config.clone()
            },
        ),
    ] {
        match train(&[], &c) {
            Err(LearnedError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }

    // Gappy series with NaNs and a constant one train fine.
    let mut rng = SplitMix64::new(2);
    let gappy = TrainingSeries {
        step_ms: STEP,
        start_ms: -7 * STEP,
        values: (0..2000)
            .map(|i| {
                if i % 7 == 3 {
                    f64::NAN
                } else {
                    2.0 + rng.next_f64()
                }
            })
            .collect(),
    };
    let constant = TrainingSeries {
        step_ms: STEP,
        start_ms: 0,
        values: vec![3.0; 2000],
    };
    let forest = Arc::new(train(&[gappy, constant], &config).unwrap());

    // A model that has seen nothing, only NaN, or only zeros.
    let levels = DEFAULT_LEVELS;
    let mut out = vec![f64::NAN; 10 * levels.len()];
    let mut m = LearnedModel::new(SharedForest::new(Arc::clone(&forest)), ctx());
    m.forecast(0, 10, &levels, &mut out);
    assert!(out.iter().all(|&v| v == 0.0));
    m.update(0, f64::NAN);
    m.update(STEP, f64::INFINITY);
    m.forecast(2 * STEP, 10, &levels, &mut out);
    assert!(out.iter().all(|&v| v == 0.0));
    for t in 0..50 {
        m.update(t * STEP, 0.0);
    }
    m.forecast(50 * STEP, 10, &levels, &mut out);
    assert!(out.iter().all(|&v| v == 0.0), "all zeros: forecast zero");
    // Odd calls: no levels, no horizon, a short buffer, the past, far future.
    m.update(50 * STEP, 4.0);
    m.forecast(0, 5, &[], &mut []);
    m.forecast(0, 0, &levels, &mut out);
    let mut short = vec![0.0; 5];
    m.forecast(51 * STEP, 10, &levels, &mut short);
    m.forecast(i64::MIN, 3, &levels, &mut out);
    assert_rows_valid(&out[..3 * levels.len()], levels.len());
    m.forecast(i64::MAX - 1, 3, &levels, &mut out);
    assert_rows_valid(&out[..3 * levels.len()], levels.len());
    // Observations out of order, repeated, or far apart.
    m.update(10 * STEP, 1.0);
    m.update(50 * STEP, 1.0);
    m.update(i64::MAX - 5, 1.0);
    m.update(i64::MIN, 1.0);
    m.forecast(i64::MAX - 1, 3, &levels, &mut out);
    assert_rows_valid(&out[..3 * levels.len()], levels.len());
    // A constant series forecasts its constant.
    let c = fed_model(&forest, &[3.0; 400]);
    c.forecast(400 * STEP, 5, &levels, &mut out);
    assert!(
        out[..5 * levels.len()]
            .iter()
            .all(|v| (v - 3.0).abs() < 1e-3),
        "{out:?}"
    );
}

#[test]
fn ten_second_series_are_averaged_into_the_model_step() {
    let (all, forest) = sine_forest();
    let five_min = &all[5].values[..DAY * 2];
    let ten_s = SeriesContext {
        step_ms: 10_000,
        resource: Resource::Memory,
    };
    let mut fine = LearnedModel::new(SharedForest::new(Arc::clone(forest)), ten_s);
    // Each 5-minute value as 30 ten-second values averaging to it.
    for (t, &v) in five_min.iter().enumerate() {
        for j in 0..30 {
            let wiggle = if j % 2 == 0 { 0.01 } else { -0.01 } * v;
            fine.update(t as i64 * STEP + j * 10_000, v + wiggle);
        }
    }
    let coarse = fed_model(forest, five_min);
    let start = five_min.len() as i64 * STEP;
    let n = DEFAULT_LEVELS.len();
    let (mut a, mut b) = (vec![0.0; 60 * n], vec![0.0; 2 * n]);
    fine.forecast(start, 60, &DEFAULT_LEVELS, &mut a);
    coarse.forecast(start, 2, &DEFAULT_LEVELS, &mut b);
    // Steps 0..29 are the first bucket, 30..59 the second.
    for (step, bucket) in [(0, 0), (29, 0), (30, 1), (59, 1)] {
        let fa = &a[step * n..(step + 1) * n];
        let fb = &b[bucket * n..(bucket + 1) * n];
        for (x, y) in fa.iter().zip(fb) {
            assert!(
                (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                "step {step}: {fa:?} vs {fb:?}"
            );
        }
    }
}
