//! Demand profiles: forecast demand as quantiles per horizon step.
//!
//! Each step's quantiles are read as a piecewise-linear CDF through the points
//! `(value_i, level_i)`. The tails continue the nearest segment's slope until
//! the CDF reaches 0 (never below a value of 0: demand is not negative, so a
//! line that would cross 0 leaves a point mass there) and 1. When two
//! neighbouring quantiles are equal the segment is vertical, i.e. a point
//! mass; a single quantile is a point mass at its value. Every step is thus a
//! proper distribution with bounded support, so the probability of exceeding
//! an allocation and the expected unmet demand both have closed forms.

use serde::{Deserialize, Serialize};

use crate::TimestampMs;

/// What is wrong with a profile's levels or values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    /// No quantile levels.
    #[error("a demand profile needs at least one quantile level")]
    NoLevels,
    /// A level outside (0, 1) or not strictly above the one before.
    #[error("quantile level #{index} is {level}: levels must be strictly increasing inside (0, 1)")]
    BadLevel {
        /// Position of the level.
        index: usize,
        /// The level.
        level: f64,
    },
    /// The values are not a whole number of steps.
    #[error("{values} quantile values do not split into steps of {levels} levels")]
    Ragged {
        /// Number of values given.
        values: usize,
        /// Number of levels.
        levels: usize,
    },
    /// A value that is NaN, infinite or negative.
    #[error("step {step}: the {level} quantile is {value}: demand must be a finite number >= 0")]
    BadValue {
        /// Horizon step (0 = the next step).
        step: usize,
        /// The level of the bad quantile.
        level: f64,
        /// The value.
        value: f64,
    },
    /// A quantile below the quantile of a lower level.
    #[error(
        "step {step}: quantiles are not increasing: the {upper_level} quantile ({upper}) is below the {lower_level} quantile ({lower})"
    )]
    NotIncreasing {
        /// Horizon step (0 = the next step).
        step: usize,
        /// The lower level.
        lower_level: f64,
        /// Its value.
        lower: f64,
        /// The higher level.
        upper_level: f64,
        /// Its (smaller) value.
        upper: f64,
    },
}

/// Predicted demand of one series over the coming horizon: for each step, the
/// quantiles of demand at fixed levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedProfile")]
pub struct DemandProfile {
    /// Start of the first step of the horizon.
    pub start: TimestampMs,
    /// Length of a step.
    pub step_ms: i64,
    levels: Vec<f64>,
    /// Row-major: `values[h * levels.len() + i]` is step `h`'s quantile at `levels[i]`.
    values: Vec<f64>,
}

impl DemandProfile {
    /// A profile from levels and a row-major table of values
    /// (`values[h * levels.len() + i]`), checked for consistency.
    pub fn new(
        start: TimestampMs,
        step_ms: i64,
        levels: Vec<f64>,
        values: Vec<f64>,
    ) -> Result<Self, ProfileError> {
        validate_levels(&levels)?;
        if !values.len().is_multiple_of(levels.len()) {
            return Err(ProfileError::Ragged {
                values: values.len(),
                levels: levels.len(),
            });
        }
        for (step, row) in values.chunks(levels.len()).enumerate() {
            validate_row(step, &levels, row)?;
        }
        Ok(DemandProfile {
            start,
            step_ms,
            levels,
            values,
        })
    }

    /// A one-step profile that puts all its mass on `value`.
    pub fn point(start: TimestampMs, step_ms: i64, value: f64) -> Result<Self, ProfileError> {
        DemandProfile::new(start, step_ms, vec![0.5], vec![value])
    }

    /// The quantile levels, strictly increasing inside (0, 1).
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// Number of horizon steps.
    pub fn horizon(&self) -> usize {
        self.values.len() / self.levels.len()
    }

    /// The distribution of demand at step `h` (0 = the next step), or `None`
    /// past the horizon.
    pub fn step(&self, h: usize) -> Option<Quantiles<'_>> {
        let n = self.levels.len();
        self.values.get(h * n..(h + 1) * n).map(|values| Quantiles {
            levels: &self.levels,
            values,
        })
    }

    /// All steps, in order.
    pub fn steps(&self) -> impl Iterator<Item = Quantiles<'_>> {
        self.values
            .chunks(self.levels.len())
            .map(|values| Quantiles {
                levels: &self.levels,
                values,
            })
    }
}

/// The serialised form, checked by [`DemandProfile::new`] on the way in, so
/// that a profile read from a file or the network is as valid as one built
/// in code.
#[derive(Deserialize)]
struct UncheckedProfile {
    start: TimestampMs,
    step_ms: i64,
    levels: Vec<f64>,
    values: Vec<f64>,
}

impl TryFrom<UncheckedProfile> for DemandProfile {
    type Error = ProfileError;

    fn try_from(p: UncheckedProfile) -> Result<Self, Self::Error> {
        DemandProfile::new(p.start, p.step_ms, p.levels, p.values)
    }
}

fn validate_levels(levels: &[f64]) -> Result<(), ProfileError> {
    if levels.is_empty() {
        return Err(ProfileError::NoLevels);
    }
    let mut prev = 0.0;
    for (index, &level) in levels.iter().enumerate() {
        // `!(a < b)` rather than `a >= b` so that NaN is refused too.
        if !(level > prev && level < 1.0) {
            return Err(ProfileError::BadLevel { index, level });
        }
        prev = level;
    }
    Ok(())
}

fn validate_row(step: usize, levels: &[f64], row: &[f64]) -> Result<(), ProfileError> {
    for (i, (&level, &value)) in levels.iter().zip(row).enumerate() {
        if !(value.is_finite() && value >= 0.0) {
            return Err(ProfileError::BadValue { step, level, value });
        }
        if i > 0 && value < row[i - 1] {
            return Err(ProfileError::NotIncreasing {
                step,
                lower_level: levels[i - 1],
                lower: row[i - 1],
                upper_level: level,
                upper: value,
            });
        }
    }
    Ok(())
}

/// One step's distribution of demand: quantiles read as a piecewise-linear
/// CDF (see the module documentation for the tails).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles<'a> {
    levels: &'a [f64],
    values: &'a [f64],
}

impl<'a> Quantiles<'a> {
    /// Checked view of `values` at `levels` (same rules as [`DemandProfile::new`]).
    pub fn new(levels: &'a [f64], values: &'a [f64]) -> Result<Self, ProfileError> {
        validate_levels(levels)?;
        if values.len() != levels.len() {
            return Err(ProfileError::Ragged {
                values: values.len(),
                levels: levels.len(),
            });
        }
        validate_row(0, levels, values)?;
        Ok(Quantiles { levels, values })
    }

    /// The levels.
    pub fn levels(&self) -> &'a [f64] {
        self.levels
    }

    /// The values at the levels.
    pub fn values(&self) -> &'a [f64] {
        self.values
    }

    /// Number of knots of the CDF: the given quantiles plus the two tail ends.
    fn knots(&self) -> usize {
        self.levels.len() + 2
    }

    /// Knot `k` of the CDF as `(value, probability)`: knot 0 is where the CDF
    /// leaves 0, the last knot where it reaches 1.
    fn knot(&self, k: usize) -> (f64, f64) {
        let n = self.levels.len();
        if k == 0 {
            let (v0, p0) = (self.values[0], self.levels[0]);
            let slope = self.slope(0);
            // Continue the first segment down to probability 0, but not below 0.
            if slope.is_finite() && slope > 0.0 {
                let x = v0 - p0 / slope;
                if x >= 0.0 {
                    return (x, 0.0);
                }
                // The line crosses value 0 at probability p0 - v0 * slope: a
                // point mass at 0 of that size; the knot sits at (0, 0) and the
                // CDF jumps there (see `cdf`).
                return (0.0, 0.0);
            }
            (v0, 0.0)
        } else if k == n + 1 {
            let (vn, pn) = (self.values[n - 1], self.levels[n - 1]);
            let slope = self.slope(n.saturating_sub(2));
            if slope.is_finite() && slope > 0.0 {
                (vn + (1.0 - pn) / slope, 1.0)
            } else {
                (vn, 1.0)
            }
        } else {
            (self.values[k - 1], self.levels[k - 1])
        }
    }

    /// Slope dp/dx of the segment between given quantiles `i` and `i + 1`
    /// (infinite for a vertical segment, NaN with a single quantile).
    fn slope(&self, i: usize) -> f64 {
        if self.levels.len() < 2 {
            return f64::NAN;
        }
        let dx = self.values[i + 1] - self.values[i];
        let dp = self.levels[i + 1] - self.levels[i];
        if dx == 0.0 { f64::INFINITY } else { dp / dx }
    }

    /// Probability at value 0, where the lower tail leaves a point mass.
    fn mass_at_zero(&self) -> f64 {
        let slope = self.slope(0);
        let (v0, p0) = (self.values[0], self.levels[0]);
        if slope.is_finite() && slope > 0.0 && v0 - p0 / slope < 0.0 {
            p0 - v0 * slope
        } else {
            0.0
        }
    }

    /// P(demand <= x).
    pub fn cdf(&self, x: f64) -> f64 {
        let (x0, _) = self.knot(0);
        if x < x0 {
            return 0.0;
        }
        let last = self.knots() - 1;
        if x >= self.knot(last).0 {
            return 1.0;
        }
        // The segment [x_k, x_{k+1}) that holds x; right-continuous at jumps.
        let mut k = 0;
        while k + 1 < last && self.knot(k + 1).0 <= x {
            k += 1;
        }
        let (xa, mut pa) = self.knot(k);
        let (xb, pb) = self.knot(k + 1);
        if k == 0 {
            pa = pa.max(self.mass_at_zero());
        }
        if xb > xa {
            pa + (pb - pa) * (x - xa) / (xb - xa)
        } else {
            pb
        }
    }

    /// P(demand > x): the chance that an allocation of `x` falls short.
    pub fn exceedance(&self, x: f64) -> f64 {
        1.0 - self.cdf(x)
    }

    /// The demand at probability `p` (the inverse CDF), for `p` in [0, 1].
    pub fn quantile(&self, p: f64) -> f64 {
        let p = p.clamp(0.0, 1.0);
        if p <= self.mass_at_zero() && self.knot(0).0 == 0.0 && self.mass_at_zero() > 0.0 {
            return 0.0;
        }
        let last = self.knots() - 1;
        for k in 0..last {
            let (xa, mut pa) = self.knot(k);
            let (xb, pb) = self.knot(k + 1);
            if k == 0 {
                pa = pa.max(self.mass_at_zero());
            }
            if p <= pb {
                if pb > pa {
                    return xa + (xb - xa) * ((p - pa) / (pb - pa)).max(0.0);
                }
                return xa;
            }
        }
        self.knot(last).0
    }

    /// Expected demand left unmet by an allocation of `a`: E[max(demand - a, 0)].
    pub fn expected_excess(&self, a: f64) -> f64 {
        // E[(D - a)+] = ∫_a^∞ (1 - F(x)) dx, and F is linear between knots.
        let last = self.knots() - 1;
        let (x0, _) = self.knot(0);
        let mut total = if a < x0 { x0 - a } else { 0.0 };
        for k in 0..last {
            let (xa, _) = self.knot(k);
            let (xb, _) = self.knot(k + 1);
            let lo = xa.max(a);
            if xb <= lo {
                continue;
            }
            let mean_cdf = 0.5 * (self.cdf(lo) + self.cdf_left(xb));
            total += (xb - lo) * (1.0 - mean_cdf);
        }
        total
    }

    /// lim F(y) as y rises to x (differs from `cdf` only at a jump).
    fn cdf_left(&self, x: f64) -> f64 {
        let last = self.knots() - 1;
        for k in 0..last {
            let (xa, mut pa) = self.knot(k);
            let (xb, pb) = self.knot(k + 1);
            if k == 0 {
                pa = pa.max(self.mass_at_zero());
            }
            if x > xa && x <= xb {
                return pa + (pb - pa) * (x - xa) / (xb - xa);
            }
        }
        self.cdf(x)
    }

    /// Expected demand.
    pub fn mean(&self) -> f64 {
        self.expected_excess(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn approx(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn interpolates_between_quantiles() {
        let levels = [0.25, 0.5, 0.75];
        let values = [1.0, 2.0, 3.0];
        let q = Quantiles::new(&levels, &values).unwrap();
        assert!(approx(q.cdf(2.0), 0.5));
        assert!(approx(q.cdf(2.5), 0.625));
        assert!(approx(q.quantile(0.625), 2.5));
        // Tails continue the slope of 0.25 per unit: support [0, 4].
        assert!(approx(q.cdf(0.0), 0.0));
        assert!(approx(q.cdf(4.0), 1.0));
        assert!(approx(q.quantile(1.0), 4.0));
        assert!(approx(q.quantile(0.0), 0.0));
        // Uniform on [0, 4]: mean 2, E[(D - 3)+] = 1/8.
        assert!(approx(q.mean(), 2.0));
        assert!(approx(q.expected_excess(3.0), 0.125));
        assert!(approx(q.expected_excess(-1.0), 3.0));
        assert!(approx(q.exceedance(3.0), 0.25));
    }

    #[test]
    fn lower_tail_stops_at_zero_with_a_point_mass() {
        let levels = [0.5, 0.9];
        let values = [0.1, 0.5];
        let q = Quantiles::new(&levels, &values).unwrap();
        // Slope 1 per unit: the line reaches value 0 at probability 0.4.
        assert!(approx(q.cdf(0.0), 0.4));
        assert!(approx(q.cdf(-0.001), 0.0));
        assert!(approx(q.quantile(0.3), 0.0));
        assert!(approx(q.quantile(0.45), 0.05));
        assert!(approx(q.quantile(0.9), 0.5));
        assert!(approx(q.quantile(1.0), 0.6));
    }

    #[test]
    fn single_quantile_is_a_point_mass() {
        let q = Quantiles::new(&[0.5], &[3.0]).unwrap();
        assert_eq!(q.cdf(2.999), 0.0);
        assert_eq!(q.cdf(3.0), 1.0);
        assert!(approx(q.mean(), 3.0));
        assert!(approx(q.expected_excess(1.0), 2.0));
        assert_eq!(q.expected_excess(3.0), 0.0);
    }

    #[test]
    fn flat_quantiles_are_a_point_mass() {
        let levels = [0.1, 0.5, 0.9];
        let values = [2.0, 2.0, 2.0];
        let q = Quantiles::new(&levels, &values).unwrap();
        assert_eq!(q.cdf(1.99), 0.0);
        assert_eq!(q.cdf(2.0), 1.0);
        assert!(approx(q.mean(), 2.0));
    }

    #[test]
    fn bad_profiles_are_refused_with_the_numbers() {
        let err = DemandProfile::new(0, 300_000, vec![0.5, 0.9], vec![1.0, 0.5]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "step 0: quantiles are not increasing: the 0.9 quantile (0.5) is below the 0.5 quantile (1)"
        );
        let err = DemandProfile::new(0, 1, vec![0.5, 1.0], vec![1.0, 2.0]).unwrap_err();
        assert!(
            matches!(err, ProfileError::BadLevel { index: 1, .. }),
            "{err}"
        );
        let err = DemandProfile::new(0, 1, vec![0.5], vec![f64::NAN]).unwrap_err();
        assert!(err.to_string().contains("NaN"), "{err}");
        let err = DemandProfile::new(0, 1, vec![0.5, 0.9], vec![1.0, 2.0, 3.0]).unwrap_err();
        assert!(matches!(err, ProfileError::Ragged { .. }));
        assert_eq!(
            DemandProfile::new(0, 1, vec![], vec![]).unwrap_err(),
            ProfileError::NoLevels
        );
    }

    #[test]
    fn deserialising_checks_the_profile() {
        let good = r#"{"start":0,"step_ms":1,"levels":[0.5,0.9],"values":[1.0,2.0]}"#;
        let p: DemandProfile = serde_json::from_str(good).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), good);
        let bad = r#"{"start":0,"step_ms":1,"levels":[0.5,0.9],"values":[2.0,1.0]}"#;
        let err = serde_json::from_str::<DemandProfile>(bad).unwrap_err();
        assert!(err.to_string().contains("not increasing"), "{err}");
        let empty = r#"{"start":0,"step_ms":1,"levels":[],"values":[]}"#;
        assert!(serde_json::from_str::<DemandProfile>(empty).is_err());
    }

    #[test]
    fn profile_steps() {
        let p = DemandProfile::new(0, 300_000, vec![0.5, 0.95], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(p.horizon(), 2);
        assert_eq!(p.step(1).unwrap().values(), &[3.0, 4.0]);
        assert!(p.step(2).is_none());
        assert_eq!(p.steps().count(), 2);
    }

    fn quantile_table() -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
        prop::collection::vec((0.001f64..0.999, 0.0f64..10.0), 1..8).prop_map(|pairs| {
            let mut levels: Vec<f64> = pairs.iter().map(|p| p.0).collect();
            let mut values: Vec<f64> = pairs.iter().map(|p| p.1).collect();
            levels.sort_by(f64::total_cmp);
            levels.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
            values.truncate(levels.len());
            values.sort_by(f64::total_cmp);
            (levels, values)
        })
    }

    proptest! {
        #[test]
        fn cdf_is_a_distribution((levels, values) in quantile_table(), x in -1.0f64..12.0, y in -1.0f64..12.0) {
            let q = Quantiles::new(&levels, &values).unwrap();
            let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
            prop_assert!((0.0..=1.0).contains(&q.cdf(lo)));
            prop_assert!(q.cdf(lo) <= q.cdf(hi) + 1e-12);
            prop_assert!(q.expected_excess(lo) + 1e-9 >= q.expected_excess(hi));
            prop_assert!(q.expected_excess(hi) >= 0.0);
        }

        #[test]
        fn quantile_inverts_cdf_at_the_given_levels((levels, values) in quantile_table()) {
            let q = Quantiles::new(&levels, &values).unwrap();
            for (&p, &v) in levels.iter().zip(&values) {
                // Where quantiles tie, the inverse returns the first of them.
                let back = q.quantile(p);
                prop_assert!(back <= v + 1e-9, "quantile({p}) = {back} > {v}");
                prop_assert!(q.cdf(v) + 1e-9 >= p, "cdf({v}) = {} < {p}", q.cdf(v));
            }
        }

        #[test]
        fn expected_excess_matches_numeric_integral((levels, values) in quantile_table(), a in 0.0f64..10.0) {
            let q = Quantiles::new(&levels, &values).unwrap();
            let top = q.quantile(1.0);
            let n = 20_000;
            let width = (top - a).max(0.0) / n as f64;
            let numeric: f64 = (0..n).map(|i| q.exceedance(a + (i as f64 + 0.5) * width) * width).sum();
            prop_assert!((numeric - q.expected_excess(a)).abs() < 1e-3 * (1.0 + top), "{numeric} vs {}", q.expected_excess(a));
        }
    }
}
