//! After a change of behaviour: what a forecaster told of a level shift
//! forgets, and how its errors and its day-ahead calibration recover.

use prescient_core::{Resource, SeriesKey};
use prescient_forecast::anomaly::{AnomalyConfig, OneStep, SeriesAnomalyDetector};
use prescient_forecast::{ChangePoint, DEFAULT_LEVELS, ModelKind, SeriesContext, SeriesForecaster};

const STEP: i64 = 300_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// Deterministic standard normal draws.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

fn ctx() -> SeriesContext {
    SeriesContext {
        step_ms: STEP,
        resource: Resource::Cpu,
    }
}

/// A daily cycle around `level` with noise.
fn value(ts: i64, level: f64, rng: &mut Rng) -> f64 {
    let tod = (ts.rem_euclid(DAY)) as f64 / DAY as f64;
    (level * (1.0 + 0.3 * (std::f64::consts::TAU * tod).sin()) + 0.05 * level * rng.normal())
        .max(0.0)
}

fn median_at(f: &SeriesForecaster, ts: i64) -> f64 {
    f.forecast(ts, 1, &[0.5]).unwrap().step(0).unwrap().values()[0]
}

/// Errors of one run, after the alarm: mean absolute error of the told
/// and of the untold forecaster's median, one step ahead and 6 to 24 hours
/// ahead (forecasts issued every hour of the day after the alarm); and
/// how long after the shift the alarm came.
struct Recovery {
    step: [f64; 2],
    day: [f64; 2],
    alarm_after: i64,
}

/// A daily cycle around `before`, then around `after` from 10:00 of day 8,
/// fed to a forecaster and an anomaly detector as the agent feeds them. At
/// the detector's level-shift alarm the forecaster is copied: the copy
/// goes on untold, the original is told ([`SeriesForecaster::change_point`]).
///
/// The detector often misses a fall to half (the forecast's spread widens
/// as the recent levels follow it, so its residuals do not add up to an
/// alarm): with `by_hand`, a shift it has not found 30 minutes after it
/// began is told by hand, with its size.
fn recovery(seed: u64, before: f64, after: f64, by_hand: bool) -> Recovery {
    let mut rng = Rng(seed);
    let shift_at = 8 * DAY + 10 * HOUR;
    let end = shift_at + 2 * DAY;
    let key = SeriesKey::new("h", "w", Resource::Cpu);
    let mut told = SeriesForecaster::new(ctx(), &[]);
    let mut detector = SeriesAnomalyDetector::new(Resource::Cpu, &AnomalyConfig::default());
    let mut alarm: Option<(i64, SeriesForecaster)> = None;
    let (mut step_err, mut day_err) = ([0.0f64; 2], [0.0f64; 2]);
    let (mut steps, mut days) = (0usize, 0usize);
    // Day-ahead medians issued after the alarm: (target, told, untold).
    let mut issued: Vec<(i64, f64, f64)> = Vec::new();
    let mut ts = 0;
    while ts < end {
        let v = value(ts, if ts >= shift_at { after } else { before }, &mut rng);
        if let Some((_, untold)) = &alarm {
            step_err[0] += (median_at(&told, ts) - v).abs();
            step_err[1] += (median_at(untold, ts) - v).abs();
            steps += 1;
        }
        issued.retain(|&(t, a, b)| {
            if t != ts {
                return true;
            }
            day_err[0] += (a - v).abs();
            day_err[1] += (b - v).abs();
            days += 1;
            false
        });
        let mut row = [0.0; DEFAULT_LEVELS.len()];
        told.one_step(&DEFAULT_LEVELS, &mut row);
        let one = (told.observations() > 0)
            .then(|| OneStep::from_quantiles(&DEFAULT_LEVELS, &row))
            .flatten();
        let verdict = detector.observe(&key, ts, v, one);
        told.observe(ts, verdict.learn);
        if let Some((_, untold)) = &mut alarm {
            untold.observe(ts, verdict.learn);
        }
        if by_hand && alarm.is_none() && ts == shift_at + 30 * 60_000 {
            let untold = told.clone();
            told.change_point(&ChangePoint {
                since: shift_at,
                shift: after - before,
                recent: detector.observed_since(shift_at),
            });
            alarm = Some((ts, untold));
        } else if let Some(since) = verdict.reset_since {
            assert!(alarm.is_none(), "seed {seed}: one shift, found twice");
            let shift = verdict
                .anomalies
                .iter()
                .find(|a| a.kind.as_str() == "level_shift")
                .expect("a level shift anomaly comes with the reset")
                .magnitude;
            let untold = told.clone();
            let forgot = told.change_point(&ChangePoint {
                since,
                shift,
                recent: detector.observed_since(since),
            });
            assert!(forgot.checks > 0 && forgot.scores > 0, "{forgot}");
            assert_eq!(forgot.replayed, detector.observed_since(since).len());
            alarm = Some((ts, untold));
        }
        if let Some((at, untold)) = &alarm
            && (ts - at) % HOUR == 0
            && ts - at < DAY
        {
            for ahead in [6 * HOUR, 12 * HOUR, 18 * HOUR, 24 * HOUR] {
                let t = ts + ahead;
                issued.push((t, median_at(&told, t), median_at(untold, t)));
            }
        }
        ts += STEP;
    }
    let (at, _) = alarm.unwrap_or_else(|| panic!("seed {seed}: the shift is not found"));
    Recovery {
        step: step_err.map(|e| e / steps as f64),
        day: day_err.map(|e| e / days as f64),
        alarm_after: at - shift_at,
    }
}

#[test]
fn a_forecaster_told_of_a_level_shift_recovers_faster_than_one_not_told() {
    for (before, after, by_hand) in [(2.0, 4.0, false), (4.0, 2.0, true)] {
        for seed in 1..=3 {
            let r = recovery(seed, before, after, by_hand);
            eprintln!(
                "level {before} -> {after}, seed {seed}: alarm {} min after; mean absolute error one step told {:.3} untold {:.3}, 6-24 h ahead told {:.3} untold {:.3}",
                r.alarm_after / 60_000,
                r.step[0],
                r.step[1],
                r.day[0],
                r.day[1]
            );
            assert!(r.alarm_after <= HOUR, "alarm {} ms after", r.alarm_after);
            // Day ahead the untold forecaster's seasonal profile and
            // histogram stay at the old level for a day or more; the told
            // one's moved at once.
            assert!(r.day[0] < 0.5 * r.day[1], "{:?}", r.day);
            // One step ahead both follow the new level quickly (the recent
            // levels); the told one is no worse.
            assert!(r.step[0] <= 1.02 * r.step[1], "{:?}", r.step);
        }
    }
}

/// Day-band coverage of the 0.95 quantile (the share of actuals at or below
/// it, for the steps of each midnight forecast more than 6 hours ahead),
/// per day of the series, for a series whose level doubles at 10:00 of
/// day 8; the forecaster is not told (as in a backtest).
fn day_band_coverage(seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed);
    let change = 8 * DAY + 10 * HOUR;
    let days = 18;
    let mut f = SeriesForecaster::new(ctx(), &[]);
    let mut due: Vec<(i64, f64)> = Vec::new();
    let mut per_day = vec![(0usize, 0usize); days];
    for t in 0..days as i64 * DAY / STEP {
        let ts = t * STEP;
        let v = value(ts, if ts >= change { 4.0 } else { 2.0 }, &mut rng);
        due.retain(|&(at, q)| {
            if at != ts {
                return true;
            }
            let d = &mut per_day[(ts / DAY) as usize];
            d.0 += 1;
            d.1 += usize::from(v <= q);
            false
        });
        f.observe(ts, v);
        let origin = ts + STEP;
        if origin % DAY == 0 && origin >= 3 * DAY && origin < days as i64 * DAY {
            let p = f.forecast(origin, 288, &[0.95]).unwrap();
            for h in 73..288 {
                due.push((origin + h as i64 * STEP, p.step(h).unwrap().values()[0]));
            }
        }
    }
    per_day
        .iter()
        .map(|&(n, c)| {
            if n == 0 {
                f64::NAN
            } else {
                c as f64 / n as f64
            }
        })
        .collect()
}

/// After the level doubles, the day band's 0.95 coverage collapses, then
/// returns to 0.95.
///
/// The bound: the day band's offsets are the 0.95 quantile of its last
/// 1,152 scores (four days of checks: 48 sets a day, 6 day-band checks a
/// set), weighted with a two-day half-life. Forecasts made before the
/// change are scored up to 25 hours after it, so errors across the change
/// enter the ring until day 9.5 and have left it by day 13.5; the midnight
/// forecasts of days 14 to 17 are calibrated on errors after the change
/// only, and their coverage should be the steady state's, 0.95. Each
/// forecast's 215 day-band steps share one forecast, so a day's coverage is
/// one noisy draw (0.9 to 1 in these runs); over 4 days of 3 series the
/// mean is within 0.03 of 0.95. Before that the ring still holds the large
/// errors of the change and the band covers more than it should (about
/// 1.0 on days 10 to 12): that is the price of a four-day memory, which
/// the agent avoids by telling the forecaster of the shift.
#[test]
fn day_band_coverage_of_the_95_quantile_recovers_after_the_level_doubles() {
    let mut late = Vec::new();
    for seed in 1..=3 {
        let c = day_band_coverage(seed);
        let shown: Vec<String> = c[3..].iter().map(|x| format!("{x:.2}")).collect();
        eprintln!(
            "seed {seed}: day-band coverage of days 3-17: {}",
            shown.join(" ")
        );
        // Before the change, calibrated.
        assert!((0.9..=1.0).contains(&c[7]), "day 7: {}", c[7]);
        // The day of the change and the next: far below.
        assert!(c[8] < 0.5, "day 8: {}", c[8]);
        assert!(c[9] < 0.93, "day 9: {}", c[9]);
        late.extend_from_slice(&c[14..18]);
    }
    let mean = late.iter().sum::<f64>() / late.len() as f64;
    assert!(
        (mean - 0.95).abs() <= 0.03,
        "day-band coverage of days 14-17: {mean:.3} ({late:?})"
    );
}

#[test]
fn a_change_point_is_survived_by_any_forecaster_and_kept_in_its_state() {
    let cp = |since: i64| ChangePoint {
        since,
        shift: 3.0,
        recent: vec![
            (since + 2 * STEP, 7.0),
            (since, 5.0),
            (since, 6.0),
            (since + STEP, f64::NAN),
        ],
    };
    // Nothing learnt yet: nothing to forget.
    let mut f = SeriesForecaster::new(ctx(), &[]);
    assert_eq!(f.change_point(&cp(0)), Default::default());
    let mut rng = Rng(3);
    for t in 0..(2 * DAY / STEP) {
        f.observe(t * STEP, value(t * STEP, 2.0, &mut rng));
    }
    let last = f.last_ts().unwrap();
    let forgot = f.change_point(&cp(last - STEP));
    // The second value at a repeated time, the one not learnt yet (after
    // the last observation) and NaN are left out.
    assert_eq!(forgot.replayed, 1, "{forgot}");
    assert_eq!(forgot.rebuilt, [ModelKind::Histogram, ModelKind::Recent]);
    assert_eq!(forgot.moved, [ModelKind::Seasonal]);
    assert_eq!(f.horizon_scores(prescient_forecast::Band::Day), 0);
    let text = forgot.to_string();
    assert!(
        text.contains("histogram, recent restarted") && text.contains("season kept"),
        "{text}"
    );
    // Forecasts stay valid, and the state round-trips bit for bit.
    let p = f.forecast(last + STEP, 300, &DEFAULT_LEVELS).unwrap();
    assert!(
        p.steps()
            .all(|q| q.values().iter().all(|v| v.is_finite() && *v >= 0.0))
    );
    let back = SeriesForecaster::from_bytes(&f.to_bytes()).unwrap();
    assert!(back.to_bytes() == f.to_bytes());
    // Without observations since the change, the restarted models start
    // from the last value (not from zero).
    let mut g = back.clone();
    let forgot = g.change_point(&ChangePoint {
        since: last + 1,
        shift: f64::NAN,
        recent: Vec::new(),
    });
    assert_eq!(forgot.replayed, 1);
    assert!(forgot.moved.is_empty(), "a NaN shift moves nothing");
    let recent = g
        .model_forecast(ModelKind::Recent, last + STEP, 1, &[0.5])
        .unwrap()
        .unwrap();
    assert!(recent.step(0).unwrap().values()[0] > 1.0, "{recent:?}");
}

#[test]
fn a_model_added_to_a_saved_forecaster_joins_the_ensemble() {
    let mut f = SeriesForecaster::new(ctx(), &[]);
    let mut rng = Rng(4);
    for t in 0..(DAY / STEP) {
        f.observe(t * STEP, value(t * STEP, 2.0, &mut rng));
    }
    let mut g = SeriesForecaster::from_bytes(&f.to_bytes()).unwrap();
    assert!(g.add_model(ModelKind::Learned));
    assert!(g.add_model(ModelKind::Learned), "already there: a no-op");
    assert_eq!(g.model_kinds().len(), 5);
    assert_eq!(g.observations(), f.observations());
    // The ensemble starts over with equal weights.
    let w = g.weights();
    for b in &w.bands {
        for row in &b.weights {
            assert!(row.iter().all(|x| (x - 0.2).abs() < 1e-12), "{row:?}");
        }
    }
    let mut rng = Rng(5);
    let start = DAY / STEP;
    for t in start..start + 288 {
        g.observe(t * STEP, value(t * STEP, 2.0, &mut rng));
    }
    assert!(
        g.weights()
            .get(prescient_forecast::Band::Step, "learned", 0.5)
            .is_some()
    );
    let back = SeriesForecaster::from_bytes(&g.to_bytes()).unwrap();
    assert!(back.to_bytes() == g.to_bytes());
    // At most 8 models.
    let mut full = SeriesForecaster::new(ctx(), &[ModelKind::Recent]);
    assert!(full.add_model(ModelKind::Seasonal));
    assert_eq!(full.model_kinds(), [ModelKind::Recent, ModelKind::Seasonal]);
}
