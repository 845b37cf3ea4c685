//! The online engine end to end: restarts, bad input, gaps, calibration,
//! size. On the committed Alibaba sample (4 days at 10 s) where real data
//! matters.

use std::path::Path;

use prescient_core::Resource;
use prescient_forecast::{
    Band, DEFAULT_LEVELS, ModelKind, STATE_VERSION, SeriesContext, SeriesForecaster, StateError,
};
use prescient_trace::TraceReader;
use proptest::prelude::*;

fn sample(resource: Resource) -> Vec<(i64, f64)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/alibaba2018.csv.gz");
    TraceReader::open(&path)
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|r| r.resource == resource)
        .map(|r| (r.ts_ms(), r.value))
        .collect()
}

fn ctx(step_ms: i64, resource: Resource) -> SeriesContext {
    SeriesContext { step_ms, resource }
}

#[test]
fn a_restart_mid_trace_gives_bit_identical_forecasts() {
    for resource in [Resource::Cpu, Resource::Memory] {
        let data = sample(resource);
        assert!(data.len() > 30_000);
        let levels = [0.5, 0.9, 0.95, 0.99, 0.999];
        let mut a = SeriesForecaster::new(ctx(10_000, resource), &[]);
        a.track_level(0.9995);
        // Restart at 2.5 days: after season detection, with checks pending.
        let cut = data.len() * 5 / 8;
        for &(ts, v) in &data[..cut] {
            a.observe(ts, v);
        }
        let bytes = a.to_bytes();
        assert_eq!(bytes[0], STATE_VERSION);
        let mut b = SeriesForecaster::from_bytes(&bytes).unwrap();
        assert!(b.to_bytes() == bytes);
        let (mut oa, mut ob) = ([0.0; 5], [0.0; 5]);
        for &(ts, v) in &data[cut..] {
            a.observe(ts, v);
            b.observe(ts, v);
            a.one_step(&levels, &mut oa);
            b.one_step(&levels, &mut ob);
            assert_eq!(oa.map(f64::to_bits), ob.map(f64::to_bits), "at {ts}");
        }
        let end = data.last().unwrap().0 + 10_000;
        let fa = a.forecast(end, 8640, &DEFAULT_LEVELS).unwrap();
        let fb = b.forecast(end, 8640, &DEFAULT_LEVELS).unwrap();
        assert_eq!(fa, fb);
        assert_eq!(a.weights(), b.weights());
        assert!(a.to_bytes() == b.to_bytes());
    }
}

#[test]
fn state_fits_the_budget_after_days_of_data() {
    for resource in [Resource::Cpu, Resource::Memory] {
        let mut f = SeriesForecaster::new(ctx(10_000, resource), &[]);
        for (ts, v) in sample(resource) {
            f.observe(ts, v);
        }
        assert!(f.state_bytes() <= 64 * 1024, "{} bytes", f.state_bytes());
        assert!(f.memory_bytes() <= 64 * 1024, "{} bytes", f.memory_bytes());
        assert!(f.horizon_scores(Band::Day) > 100);
    }
}

#[test]
fn other_versions_and_broken_state_are_refused_clearly() {
    let mut f = SeriesForecaster::new(ctx(300_000, Resource::Cpu), &[]);
    for t in 0..100 {
        f.observe(t * 300_000, (t % 7) as f64);
    }
    let mut bytes = f.to_bytes();
    assert_eq!(
        SeriesForecaster::from_bytes(&[]).unwrap_err(),
        StateError::Empty
    );
    bytes[0] = STATE_VERSION + 1;
    let err = SeriesForecaster::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, StateError::UnknownVersion { found, expected } if found == STATE_VERSION + 1 && expected == STATE_VERSION)
    );
    assert!(err.to_string().contains("relearn"), "{err}");
    bytes[0] = STATE_VERSION;
    let err = SeriesForecaster::from_bytes(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn bad_values_and_time_going_back_are_ignored() {
    let mut f = SeriesForecaster::new(ctx(300_000, Resource::Cpu), &[ModelKind::Recent]);
    f.observe(0, 1.0);
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300] {
        f.observe(300_000, v);
    }
    f.observe(0, 5.0); // not after the last observation
    assert_eq!(f.observations(), 1);
    f.observe(300_000, -3.0); // negative demand counts as 0
    assert_eq!(f.observations(), 2);
    let p = f.forecast(600_000, 3, &[0.5, 0.95]).unwrap();
    assert_eq!(p.horizon(), 3);
    assert!(f.forecast(0, 3, &[0.95, 0.5]).is_err());
    assert!(f.forecast(0, 3, &[]).is_err());
    // A forecaster that has seen nothing says zeros, not an error.
    let empty = SeriesForecaster::new(ctx(300_000, Resource::Cpu), &[]);
    let p = empty.forecast(0, 2, &[0.5]).unwrap();
    assert_eq!(p.step(1).unwrap().values(), &[0.0]);
}

#[test]
fn gaps_are_missing_steps_not_errors() {
    let mut f = SeriesForecaster::new(ctx(10_000, Resource::Cpu), &[]);
    let wave = |t: i64| 2.0 + ((t as f64) / 3.6e6).sin();
    for t in 0..2000 {
        f.observe(t * 10_000, wave(t * 10_000));
    }
    let scored = f.calibration()[7].seen;
    // Two hours missing: the first observation after the gap is not scored
    // against the forecast made for the step after the last one.
    let after = 2000 + 720;
    f.observe(after * 10_000, wave(after * 10_000));
    assert_eq!(f.calibration()[7].seen, scored);
    f.observe((after + 1) * 10_000, wave((after + 1) * 10_000));
    assert_eq!(f.calibration()[7].seen, scored + 1);
    let p = f
        .forecast((after + 2) * 10_000, 100, &DEFAULT_LEVELS)
        .unwrap();
    assert_eq!(p.horizon(), 100);
}

#[test]
fn one_step_coverage_tracks_the_level_through_a_change_of_behaviour() {
    // Noise whose scale triples half way: calibration must follow.
    let mut f = SeriesForecaster::new(ctx(60_000, Resource::Cpu), &[]);
    f.track_level(0.999);
    let mut x: u64 = 7;
    let mut noise = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 1_000_000) as f64 / 1e6 - 0.5
    };
    let (mut n, mut covered) = (0, 0);
    let mut q = [0.0];
    for t in 0..40_000i64 {
        let scale = if t < 20_000 { 1.0 } else { 3.0 };
        let v = 10.0 + scale * noise();
        if t >= 22_000 {
            n += 1;
            covered += (v <= q[0]) as u32;
        }
        f.observe(t * 60_000, v);
        f.one_step(&[0.95], &mut q);
    }
    let coverage = covered as f64 / n as f64;
    assert!((0.94..=0.96).contains(&coverage), "coverage {coverage}");
    let t999 = f.calibration().iter().find(|t| t.level == 0.999).unwrap();
    assert!(t999.seen > 30_000);
}

#[test]
fn weights_are_visible_per_band_model_and_level() {
    let mut f = SeriesForecaster::new(ctx(300_000, Resource::Cpu), &[]);
    for t in 0..(3 * 288) {
        f.observe(t * 300_000, 5.0 + ((t % 288) as f64 / 30.0).sin());
    }
    let w = f.weights();
    assert_eq!(
        w.models,
        ["seasonal", "holt-winters", "histogram", "recent"]
    );
    assert_eq!(w.bands.len(), 3);
    for b in &w.bands {
        for l in 0..w.levels.len() {
            let total: f64 = b.weights.iter().map(|row| row[l]).sum();
            assert!(
                (total - 1.0).abs() < 1e-9,
                "{:?} level {l}: {total}",
                b.band
            );
        }
    }
    assert!(w.bands[0].samples > 100.0);
    // The one-step band has learnt that the noiseless cycle is predictable
    // from the recent level: the histogram is worst at the median.
    let hist = w.get(Band::Step, "histogram", 0.5).unwrap();
    assert!(hist < 0.2, "{hist}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_input_gives_valid_profiles(
        values in prop::collection::vec(prop_oneof![
            Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(0.0), Just(1e12), 0.0f64..100.0
        ], 1..400),
        gaps in prop::collection::vec(1i64..50, 1..400),
    ) {
        let mut f = SeriesForecaster::new(ctx(60_000, Resource::Memory), &[]);
        let mut ts = 0i64;
        let mut q = [0.0; 3];
        for (v, g) in values.iter().zip(gaps.iter().cycle()) {
            ts += g * 60_000;
            f.observe(ts, *v);
            f.one_step(&[0.5, 0.9, 0.999], &mut q);
            prop_assert!(q.iter().all(|x| x.is_finite() && *x >= 0.0));
            prop_assert!(q[0] <= q[1] && q[1] <= q[2]);
        }
        let p = f.forecast(ts + 60_000, 50, &DEFAULT_LEVELS);
        prop_assert!(p.is_ok());
        // Bytes, not struct equality: missing buckets are NaN in the state.
        let back = SeriesForecaster::from_bytes(&f.to_bytes()).unwrap();
        prop_assert!(back.to_bytes() == f.to_bytes());
    }
}

#[test]
fn absurd_horizons_are_refused_not_allocated() {
    let mut f = SeriesForecaster::new(ctx(300_000, Resource::Cpu), &[]);
    f.observe(0, 1.0);
    let err = f.forecast(300_000, usize::MAX, &[0.5]).unwrap_err();
    assert!(err.to_string().contains("at most"), "{err}");
    assert!(
        f.model_forecast(ModelKind::Recent, 0, usize::MAX, &[0.5])
            .unwrap()
            .is_err()
    );
    assert!(
        f.forecast(300_000, prescient_forecast::MAX_HORIZON, &[0.5])
            .is_ok()
    );
}
