//! Small numerical helpers shared by the models, the ensemble and the
//! calibration: the normal quantile function, pinball loss, weighted
//! quantiles, time-based decay.

use prescient_core::TimestampMs;

/// Values whose magnitude is above this are treated as missing: no demand is
/// that large, and squaring one would overflow.
pub const MAX_VALUE: f64 = 1e150;

/// A value a model may learn from: finite, not absurdly large, negatives
/// as 0 (demand is never negative).
pub fn usable(value: f64) -> Option<f64> {
    (value.is_finite() && value.abs() <= MAX_VALUE).then(|| value.max(0.0))
}

/// The standard normal quantile function (Acklam's rational approximation,
/// relative error below 1.2e-9), for `p` clamped into [1e-12, 1 - 1e-12].
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = if p.is_nan() {
        0.5
    } else {
        p.clamp(1e-12, 1.0 - 1e-12)
    };
    let low = 0.02425;
    if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// The pinball (quantile) loss of forecasting `q` at `level` when `actual`
/// happened.
pub fn pinball(actual: f64, q: f64, level: f64) -> f64 {
    let e = actual - q;
    if e >= 0.0 {
        level * e
    } else {
        (level - 1.0) * e
    }
}

/// The factor by which something with half-life `half_life_ms` decays over
/// `dt_ms` (1 for `dt_ms <= 0`).
pub fn decay(dt_ms: i64, half_life_ms: i64) -> f64 {
    if dt_ms <= 0 || half_life_ms <= 0 {
        return 1.0;
    }
    (-(dt_ms as f64) / half_life_ms as f64).exp2()
}

/// The weight an exponentially weighted average gives a new sample after
/// `dt_ms`: `1 - decay(dt)`, so that irregular steps (and gaps) are handled
/// as if every missing step had been observed at the old average.
pub fn ewma_alpha(dt_ms: i64, half_life_ms: i64) -> f64 {
    1.0 - decay(dt_ms, half_life_ms)
}

/// Time elapsed from `from` to `to` in ms, saturating instead of overflowing.
pub fn elapsed(from: TimestampMs, to: TimestampMs) -> i64 {
    to.saturating_sub(from)
}

/// Sorts each row of a row-major table (`width` values a row) ascending,
/// floors it at 0 and replaces anything non-finite, so that it is a valid
/// row of a [`prescient_core::DemandProfile`]. Sorting (rearrangement)
/// rather than a running maximum keeps every quantile's coverage.
pub fn tidy_rows(values: &mut [f64], width: usize) {
    if width == 0 {
        return;
    }
    for row in values.chunks_mut(width) {
        let fallback = row
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        for v in row.iter_mut() {
            if !v.is_finite() {
                *v = fallback;
            }
            *v = v.clamp(0.0, MAX_VALUE);
        }
        row.sort_by(f64::total_cmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantile_matches_known_values() {
        assert!(normal_quantile(0.5).abs() < 1e-12);
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((normal_quantile(0.05) + 1.644_853_627).abs() < 1e-8);
        assert!((normal_quantile(0.999) - 3.090_232_306).abs() < 1e-8);
        assert!(normal_quantile(f64::NAN) == 0.0);
        assert!(normal_quantile(0.0).is_finite() && normal_quantile(1.0).is_finite());
    }

    #[test]
    fn pinball_is_asymmetric() {
        assert!((pinball(10.0, 8.0, 0.9) - 1.8).abs() < 1e-12);
        assert!((pinball(8.0, 10.0, 0.9) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn tidy_rows_sorts_and_repairs() {
        let mut v = [3.0, f64::NAN, 1.0, -2.0, 5.0, f64::INFINITY];
        tidy_rows(&mut v, 3);
        assert_eq!(v, [1.0, 3.0, 3.0, 0.0, 5.0, 5.0]);
    }

    #[test]
    fn decay_halves_per_half_life() {
        assert!((decay(10, 10) - 0.5).abs() < 1e-15);
        assert_eq!(decay(-5, 10), 1.0);
        assert!((ewma_alpha(20, 10) - 0.75).abs() < 1e-15);
    }
}
