//! The survival function of forecast demand, S(a) = P(demand > a), averaged
//! over the planned steps: the marginal gain of allocation (times the weight).
//!
//! One step's quantiles are read exactly as [`prescient_core::Quantiles`]
//! reads them (linear between quantiles, tails continuing the nearest
//! segment's slope, a point mass at 0 where the lower tail would cross it,
//! vertical segments where quantiles tie). The mean of several steps'
//! survival functions is again piecewise linear, with knots at the union of
//! theirs, so a curve is stored as points `(x_j, s_j)`: `x` non-decreasing,
//! `s` non-increasing from 1 to 0, linear between neighbours, and a jump
//! where two neighbours share an `x`. S is 1 left of the first point, 0
//! right of the last, and right-continuous.

/// Appends to `xs`/`ss` the CDF points of one step, as `(x, F)` pairs, in
/// the order of [`prescient_core::Quantiles`]'s knots (the caller turns
/// them into survival). `levels` and `values` are already checked.
fn step_cdf_points(levels: &[f64], values: &[f64], out: &mut Vec<(f64, f64)>) {
    let n = levels.len();
    let slope = |i: usize| -> f64 {
        if n < 2 {
            return f64::NAN;
        }
        let dx = values[i + 1] - values[i];
        let dp = levels[i + 1] - levels[i];
        if dx == 0.0 { f64::INFINITY } else { dp / dx }
    };
    let (v0, p0) = (values[0], levels[0]);
    let s0 = slope(0);
    if s0.is_finite() && s0 > 0.0 {
        let x = v0 - p0 / s0;
        if x >= 0.0 {
            out.push((x, 0.0));
        } else {
            // The line crosses value 0 above probability 0: a point mass there.
            out.push((0.0, 0.0));
            out.push((0.0, p0 - v0 * s0));
        }
    } else {
        out.push((v0, 0.0));
    }
    for i in 0..n {
        out.push((values[i], levels[i]));
    }
    let (vn, pn) = (values[n - 1], levels[n - 1]);
    let sn = slope(n.saturating_sub(2));
    if sn.is_finite() && sn > 0.0 {
        out.push((vn + (1.0 - pn) / sn, 1.0));
    } else {
        out.push((vn, 1.0));
    }
}

/// The largest demand one step's quantiles allow: where the upper tail
/// reaches probability 1.
pub(crate) fn step_top(levels: &[f64], values: &[f64]) -> f64 {
    let n = levels.len();
    if n == 0 {
        return 0.0;
    }
    let (vn, pn) = (values[n - 1], levels[n - 1]);
    if n >= 2 {
        let dx = values[n - 1] - values[n - 2];
        let dp = levels[n - 1] - levels[n - 2];
        if dx > 0.0 {
            return vn + (1.0 - pn) * dx / dp;
        }
    }
    vn
}

/// [`build`] of one step (the first row of `values`), given `one_minus[i]
/// = 1 - levels[i]` (shared by the many profiles with the same levels): the
/// same points, written straight into `xs`/`ss`, except that survival
/// values that are the standard ones, `[1, one_minus.., 0]` (no point mass
/// at 0: nearly every profile), are not written, and `true` says so.
pub(crate) fn build_one(
    levels: &[f64],
    values: &[f64],
    one_minus: &[f64],
    xs: &mut Vec<f64>,
    ss: &mut Vec<f64>,
) -> bool {
    let n = levels.len();
    let values = &values[..n];
    xs.reserve(n + 3);
    let slope = |i: usize| -> f64 {
        if n < 2 {
            return f64::NAN;
        }
        let dx = values[i + 1] - values[i];
        let dp = levels[i + 1] - levels[i];
        if dx == 0.0 { f64::INFINITY } else { dp / dx }
    };
    // The lower tail, as step_cdf_points reads it (S = 1 - F).
    let (v0, p0) = (values[0], levels[0]);
    let s0 = slope(0);
    let mut standard = true;
    if s0.is_finite() && s0 > 0.0 {
        let x = v0 - p0 / s0;
        if x >= 0.0 {
            xs.push(x);
        } else {
            // A point mass at 0.
            xs.push(0.0);
            xs.push(0.0);
            ss.reserve(n + 3);
            ss.push(1.0);
            ss.push(1.0 - (p0 - v0 * s0));
            standard = false;
        }
    } else {
        xs.push(v0);
    }
    xs.extend_from_slice(values);
    let (vn, pn) = (values[n - 1], levels[n - 1]);
    let sn = slope(n.saturating_sub(2));
    if sn.is_finite() && sn > 0.0 {
        xs.push(vn + (1.0 - pn) / sn);
    } else {
        xs.push(vn);
    }
    if !standard {
        ss.extend_from_slice(&one_minus[..n]);
        ss.push(0.0);
    }
    standard
}

/// Appends the standard survival values of [`build_one`]: `[1, one_minus.., 0]`.
pub(crate) fn push_standard(one_minus: &[f64], ss: &mut Vec<f64>) {
    ss.push(1.0);
    ss.extend_from_slice(one_minus);
    ss.push(0.0);
}

/// Builds the mean survival curve of `steps` rows of `values` at `levels`
/// into `xs`/`ss` (appending). `scratch` is reused working space.
pub(crate) fn build(
    levels: &[f64],
    values: &[f64],
    steps: usize,
    xs: &mut Vec<f64>,
    ss: &mut Vec<f64>,
    scratch: &mut Scratch,
) {
    let n = levels.len();
    if steps == 1 {
        scratch.cdf.clear();
        step_cdf_points(levels, &values[..n], &mut scratch.cdf);
        for &(x, p) in &scratch.cdf {
            xs.push(x);
            ss.push(1.0 - p);
        }
        return;
    }
    // Several steps: the union of their knots, and at each the mean of the
    // steps' left and right limits.
    scratch.per_step.clear();
    scratch.bounds.clear();
    for h in 0..steps {
        let start = scratch.per_step.len();
        let mut pts = std::mem::take(&mut scratch.cdf);
        pts.clear();
        step_cdf_points(levels, &values[h * n..(h + 1) * n], &mut pts);
        scratch
            .per_step
            .extend(pts.iter().map(|&(x, p)| (x, 1.0 - p)));
        scratch.cdf = pts;
        scratch.bounds.push((start, scratch.per_step.len()));
    }
    scratch.union.clear();
    scratch.union.extend(scratch.per_step.iter().map(|p| p.0));
    scratch.union.sort_by(f64::total_cmp);
    scratch.union.dedup();
    // Division rather than multiplication by 1/steps keeps the ends exact:
    // steps x 1.0 / steps is 1.0.
    let steps_f = steps as f64;
    for &x in &scratch.union {
        let (mut left, mut right) = (0.0, 0.0);
        for &(a, b) in &scratch.bounds {
            let pts = &scratch.per_step[a..b];
            left += limit_left(pts, x);
            right += eval_points(pts, x);
        }
        let (left, right) = (left / steps_f, right / steps_f);
        if left != right {
            xs.push(x);
            ss.push(left);
        }
        xs.push(x);
        ss.push(right);
    }
}

/// Reusable working space for [`build`].
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    cdf: Vec<(f64, f64)>,
    per_step: Vec<(f64, f64)>,
    bounds: Vec<(usize, usize)>,
    union: Vec<f64>,
}

impl Scratch {
    pub(crate) fn bytes(&self) -> usize {
        self.cdf.capacity() * 16
            + self.per_step.capacity() * 16
            + self.bounds.capacity() * 16
            + self.union.capacity() * 8
    }
}

/// S(x) of `(x, s)` points (right-continuous).
fn eval_points(pts: &[(f64, f64)], x: f64) -> f64 {
    // The last point at or left of x.
    let j = pts.partition_point(|p| p.0 <= x);
    if j == 0 {
        return 1.0;
    }
    if j == pts.len() {
        return 0.0;
    }
    let (xa, sa) = pts[j - 1];
    let (xb, sb) = pts[j];
    sa + (sb - sa) * ((x - xa) / (xb - xa))
}

/// lim S(y) as y rises to x.
fn limit_left(pts: &[(f64, f64)], x: f64) -> f64 {
    // The first point at or right of x.
    let j = pts.partition_point(|p| p.0 < x);
    if j == 0 {
        return 1.0;
    }
    if j == pts.len() {
        return 0.0;
    }
    let (xa, sa) = pts[j - 1];
    let (xb, sb) = pts[j];
    sa + (sb - sa) * ((x - xa) / (xb - xa))
}

/// A survival curve: a view of points `(xs[j], ss[j])`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Survival<'a> {
    pub xs: &'a [f64],
    pub ss: &'a [f64],
}

impl Survival<'_> {
    /// Index of the last point at or left of `x` plus one (0: left of all).
    #[inline]
    fn locate(&self, x: f64) -> usize {
        // Branch-light binary search; curves have a dozen or so points.
        self.xs.partition_point(|&p| p <= x)
    }

    /// S(x) = P(demand > x).
    #[cfg(test)]
    pub fn at(&self, x: f64) -> f64 {
        let j = self.locate(x);
        self.at_located(x, j)
    }

    #[inline]
    fn at_located(&self, x: f64, j: usize) -> f64 {
        if j == 0 {
            return 1.0;
        }
        if j == self.xs.len() {
            return 0.0;
        }
        let (xa, sa) = (self.xs[j - 1], self.ss[j - 1]);
        let (xb, sb) = (self.xs[j], self.ss[j]);
        sa + (sb - sa) * ((x - xa) / (xb - xa))
    }

    /// Mean of S over `[a, b]` (a < b): the gain per unit of resource of
    /// growing an allocation from `a` to `b`. Within one linear piece it is
    /// S at the midpoint, so that units in a flat stretch have exactly equal
    /// values (ties are then broken fairly, see the search).
    #[inline]
    pub fn mean_over(&self, a: f64, b: f64) -> f64 {
        let ja = self.locate(a);
        let n = self.xs.len();
        // Both ends in the same piece (no point strictly inside (a, b)).
        if ja == n {
            return 0.0;
        }
        if self.xs[ja] >= b {
            return self.at_located(0.5 * (a + b), ja);
        }
        // Integrate piece by piece: from x to xs[j], where S reaches ss[j]
        // (two points that share an x, a jump, make a piece of width 0,
        // which adds exactly 0, and S goes on from the second's value).
        let mut total = 0.0;
        let mut x = a;
        let mut s = self.at_located(a, ja);
        let mut j = ja;
        while j < n && self.xs[j] < b {
            let xe = self.xs[j];
            let se = if j == 0 { 1.0 } else { self.ss[j] };
            total += (xe - x) * 0.5 * (s + se);
            x = xe;
            s = self.ss[j];
            j += 1;
        }
        let se = self.at_located(b, j);
        total += (b - x) * 0.5 * (s + se);
        total / (b - a)
    }

    /// sup{a : S(a) > p}: the allocation where the marginal gain falls to
    /// `p` (`-inf` for p >= 1, `+inf` for p < 0).
    pub fn inverse(&self, p: f64) -> f64 {
        if p >= 1.0 {
            return f64::NEG_INFINITY;
        }
        if p < 0.0 {
            return f64::INFINITY;
        }
        // The first point with s <= p (s is non-increasing).
        let j = self.ss.partition_point(|&s| s > p);
        if j == 0 {
            // S <= p from the first point on; S is 1 > p before it.
            return self.xs[0];
        }
        if j == self.xs.len() {
            return f64::INFINITY;
        }
        let (xa, sa) = (self.xs[j - 1], self.ss[j - 1]);
        let (xb, sb) = (self.xs[j], self.ss[j]);
        if xb == xa || sa == sb {
            return xb;
        }
        // S falls from sa > p to sb <= p linearly.
        (xa + (xb - xa) * ((sa - p) / (sa - sb))).clamp(xa, xb)
    }

    /// [`Survival::inverse`] and its derivative in `p` (0 where the inverse
    /// jumps or is infinite).
    pub fn inverse_and_slope(&self, p: f64) -> (f64, f64) {
        if p >= 1.0 {
            return (f64::NEG_INFINITY, 0.0);
        }
        if p < 0.0 {
            return (f64::INFINITY, 0.0);
        }
        let j = self.ss.partition_point(|&s| s > p);
        if j == 0 {
            return (self.xs[0], 0.0);
        }
        if j == self.xs.len() {
            return (f64::INFINITY, 0.0);
        }
        let (xa, sa) = (self.xs[j - 1], self.ss[j - 1]);
        let (xb, sb) = (self.xs[j], self.ss[j]);
        if xb == xa || sa == sb {
            return (xb, 0.0);
        }
        let x = (xa + (xb - xa) * ((sa - p) / (sa - sb))).clamp(xa, xb);
        (x, -(xb - xa) / (sa - sb))
    }

    /// `(P(demand <= a), E[(demand - a)+])`: the coverage and expected
    /// unmet demand of allocation `a`.
    pub fn coverage_and_excess(&self, a: f64) -> (f64, f64) {
        let j = self.locate(a);
        if j == 0 {
            // Left of every point: S is 1 there.
            return (0.0, self.expected_excess(a));
        }
        let s = self.at_located(a, j);
        (1.0 - s, self.excess_from(0.0, a, j, s))
    }

    /// E[(demand - a)+] = ∫_a^∞ S.
    pub fn expected_excess(&self, a: f64) -> f64 {
        let n = self.xs.len();
        if n == 0 {
            return 0.0;
        }
        let mut total = 0.0;
        let mut x = a;
        if a < self.xs[0] {
            total += self.xs[0] - a;
            x = self.xs[0];
        }
        let j = self.locate(x);
        self.excess_from(total, x, j, self.at_located(x, j))
    }

    /// `total` plus ∫_x^∞ S, for `j = locate(x)` and `s = S(x)`: trapezoids
    /// from point to point (two points that share an x, a jump, make one of
    /// width 0, which adds exactly 0).
    #[inline]
    fn excess_from(&self, mut total: f64, mut x: f64, j: usize, mut s: f64) -> f64 {
        for (&xe, &se) in self.xs[j..].iter().zip(&self.ss[j..]) {
            total += (xe - x) * 0.5 * (s + se);
            x = xe;
            s = se;
        }
        total
    }

    /// Where S reaches 0: the largest predicted demand.
    pub fn top(&self) -> f64 {
        self.xs.last().copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::Quantiles;
    use proptest::prelude::*;

    fn curve(levels: &[f64], values: &[f64], steps: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut xs, mut ss) = (Vec::new(), Vec::new());
        build(
            levels,
            values,
            steps,
            &mut xs,
            &mut ss,
            &mut Scratch::default(),
        );
        (xs, ss)
    }

    fn quantile_rows() -> impl Strategy<Value = (Vec<f64>, Vec<f64>, usize)> {
        (1usize..4, prop::collection::vec(0.001f64..0.999, 1..7)).prop_flat_map(|(steps, raw)| {
            let mut levels = raw;
            levels.sort_by(f64::total_cmp);
            levels.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
            let n = levels.len();
            prop::collection::vec(prop_oneof![Just(0.0), Just(1.0), 0.0f64..5.0], steps * n)
                .prop_map(move |mut values| {
                    for row in values.chunks_mut(n) {
                        row.sort_by(f64::total_cmp);
                    }
                    (levels.clone(), values, steps)
                })
        })
    }

    proptest! {
        /// The curve is the mean over steps of what prescient-core computes.
        #[test]
        fn matches_core((levels, values, steps) in quantile_rows(), x in -0.5f64..7.0, w in 0.01f64..2.0) {
            let (xs, ss) = curve(&levels, &values, steps);
            let s = Survival { xs: &xs, ss: &ss };
            let n = levels.len();
            let mut exceed = 0.0;
            let mut excess = 0.0;
            let mut mean_over = 0.0;
            for h in 0..steps {
                let q = Quantiles::new(&levels, &values[h * n..(h + 1) * n]).unwrap();
                exceed += q.exceedance(x) / steps as f64;
                excess += q.expected_excess(x) / steps as f64;
                mean_over += (q.expected_excess(x) - q.expected_excess(x + w)) / w / steps as f64;
            }
            prop_assert!((s.at(x) - exceed).abs() < 1e-9, "S({x}) = {} vs {exceed}", s.at(x));
            prop_assert!((s.expected_excess(x) - excess).abs() < 1e-9, "{} vs {excess}", s.expected_excess(x));
            prop_assert!((s.mean_over(x, x + w) - mean_over).abs() < 1e-9, "{} vs {mean_over}", s.mean_over(x, x + w));
            // The inverse: S is above p left of it and at most p right of it.
            let p = s.at(x);
            let a = s.inverse(p);
            prop_assert!(a <= x + 1e-9 || p >= 1.0, "inverse({p}) = {a} > {x}");
            if a.is_finite() {
                prop_assert!(s.at(a + 1e-9) <= p + 1e-6);
            }
        }
    }

    #[test]
    fn point_mass_and_tails() {
        // A single quantile: all mass at 3.
        let (xs, ss) = curve(&[0.5], &[3.0], 1);
        let s = Survival { xs: &xs, ss: &ss };
        assert_eq!(s.at(2.999), 1.0);
        assert_eq!(s.at(3.0), 0.0);
        assert_eq!(s.mean_over(2.0, 4.0), 0.5);
        assert_eq!(s.inverse(0.5), 3.0);
        assert_eq!(s.expected_excess(1.0), 2.0);
        // Uniform on [0, 4].
        let (xs, ss) = curve(&[0.25, 0.5, 0.75], &[1.0, 2.0, 3.0], 1);
        let s = Survival { xs: &xs, ss: &ss };
        assert!((s.at(3.0) - 0.25).abs() < 1e-12);
        assert!((s.inverse(0.25) - 3.0).abs() < 1e-12);
        assert!((s.mean_over(2.0, 4.0) - 0.25).abs() < 1e-12);
        assert_eq!(s.top(), 4.0);
    }
}
