//! The threshold search: the N-th best unit of a pool, in the order the
//! greedy would take them, found without sorting the units.
//!
//! Every curve's units are ranked by a key (phase, value, level, name),
//! best first; along one curve the keys only get worse, so what a threshold
//! key admits of a curve is a prefix, counted by a galloping search from a
//! guess taken from the inverse of the survival curve. The search narrows a
//! bracket of values around the N-th best with pivots drawn from the
//! remaining candidates (a weighted median of a sample), drops the curves
//! with no candidate left, and sorts the last few hundred candidates.

use crate::curve::Survival;

/// Phases are numbered so that lower is served first.
pub(crate) type Phase = u16;

/// A unit of some curve in the global order: lower phase first, then
/// higher value, then lower level `k` (so ties fill allocations evenly),
/// then the workload's name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Key {
    pub phase: Phase,
    pub value: f64,
    pub k: u32,
    pub curve: u32,
}

/// One stretch of a curve's units in one phase: units `[previous end, end)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Seg {
    pub end: u32,
    pub phase: Phase,
}

/// A workload-resource as the search sees it. Unit `k` is the allocation
/// step from `g + k u` to `g + (k + 1) u`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Curve {
    /// Index of the workload in the problem.
    pub workload: u32,
    /// Its survival points in the arenas: x at `pts`, S at `sso` (shared
    /// between curves with the same values), `npts` of each.
    pub pts: u32,
    pub sso: u32,
    pub npts: u32,
    /// Its segments in the arena.
    pub seg: u32,
    pub nseg: u32,
    /// Guarantee honoured (the origin of its units).
    pub g: f64,
    /// Weight within its class.
    pub w: f64,
    /// Change cost per unit of resource (0 without a current allocation).
    pub c: f64,
    /// Current allocation (absolute), when `c > 0`.
    pub cur: f64,
    /// Weight of the spare-spread phase (0: no spare units).
    pub sw: f64,
    /// First unit whose value is not positive (units from here on are spare).
    pub z: u32,
    /// Units allowed by the pools processed so far.
    pub floor: u32,
}

pub(crate) const NO_POOL: u32 = u32::MAX;

/// Read-only view of everything the search evaluates.
pub(crate) struct View<'a> {
    pub curves: &'a [Curve],
    pub segs: &'a [Seg],
    pub xs: &'a [f64],
    pub ss: &'a [f64],
    pub u: f64,
    /// `1 / u`, for guesses (never for values).
    pub inv_u: f64,
    /// The problem's workloads (their names break the last ties).
    pub workloads: &'a [crate::problem::Workload],
    /// The phase of spare capacity spread (after every other).
    pub spare: Phase,
}

/// Working space of the search, kept between solves.
#[derive(Debug, Default)]
pub(crate) struct SearchSpace {
    pub totals: Vec<u64>,
    /// After [`View::nth`]: for each curve of the slice, how many of its
    /// units rank at or before the threshold (capped by its floor).
    pub counts: Vec<u32>,
    active: Vec<Active>,
    sample: Vec<Active>,
    cands: Vec<(f64, u32, u32)>,
    samples: Vec<(f64, u64)>,
    ties: Vec<u32>,
    /// (value, relaxed count) pairs seen by the bracketing.
    points: Vec<(f64, f64)>,
    pub passes: usize,
    /// Half the width of the bracketing's band and a shift of its centre,
    /// in margins, when not the usual [`BAND`] and none (tests narrow and
    /// shift it to make the band miss).
    #[cfg(test)]
    pub band: Option<(f64, f64)>,
}

impl SearchSpace {
    pub fn bytes(&self) -> usize {
        self.totals.capacity() * 8
            + self.counts.capacity() * 4
            + (self.active.capacity() + self.sample.capacity()) * std::mem::size_of::<Active>()
            + self.cands.capacity() * 16
            + self.samples.capacity() * 16
            + self.ties.capacity() * 4
            + self.points.capacity() * 16
    }
}

/// A curve with candidates left: units `[a, b)` (absolute levels); `j` is
/// its position in the slice searched.
#[derive(Debug, Clone, Copy)]
struct Active {
    j: u32,
    a: u32,
    b: u32,
    /// Scratch: counts at the pivot.
    g: u32,
    ge: u32,
    /// Scratch of the bracketing: the curve's position at the first guess
    /// and its slope, to extrapolate its position at the band's edge.
    p0: f32,
    dp: f32,
}

/// Candidates left when the search stops bracketing and sorts.
const SORT_BELOW: u64 = 256;
/// Curves sampled for a pivot.
const SAMPLE: usize = 31;
/// Curves sampled to bracket the threshold before the first full pass.
const BRACKET_SAMPLE: usize = 256;
/// Passes of relaxed counting at most, to place the band.
const RELAXED_ROUNDS: usize = 5;
/// Half the width of the band the bracketing's Newton step places, in
/// margins (see [`View::bracket`]).
const BAND: f64 = 3.0;
/// Exact passes at most to find the band around the threshold.
const EXACT_TRIES: usize = 4;

/// Where the exact pass of the bracketing guesses each curve's count.
#[derive(Clone, Copy)]
enum Guessed {
    /// Extrapolated from the curve's position and slope at this value.
    From(f64),
    /// Its count at this value, in `g`.
    At(f64),
    /// From its position.
    Position,
}

impl<'a> View<'a> {
    #[inline]
    pub fn survival(&self, c: &Curve) -> Survival<'a> {
        let (a, n, o) = (c.pts as usize, c.npts as usize, c.sso as usize);
        Survival {
            xs: &self.xs[a..a + n],
            ss: &self.ss[o..o + n],
        }
    }

    #[inline]
    pub fn segs(&self, c: &Curve) -> &'a [Seg] {
        &self.segs[c.seg as usize..(c.seg + c.nseg) as usize]
    }

    /// The value of unit `k` of curve `c` in `phase`: the weighted mean gain
    /// over the unit plus the change-cost term; in the spare phase, a
    /// water-filling order proportional to `sw`.
    #[inline]
    pub fn value(&self, c: &Curve, k: u32, phase: Phase) -> f64 {
        if phase == self.spare {
            return -((k - c.z) as f64 + 1.0) / c.sw;
        }
        unit_value(self.survival(c), c, k, self.u)
    }

    /// Where the value of `c`'s units crosses `theta`, in units above its
    /// guarantee, as a real number: the number of units worth more than
    /// `theta` is this give or take one half (away from the curve's kinks),
    /// so it serves both as a guess for the exact count and, summed over
    /// curves, as a relaxed count of the units above a threshold.
    #[inline]
    fn position(&self, c: &Curve, theta: f64, phase: Phase) -> f64 {
        if phase == self.spare {
            // Unit k is worth more than theta exactly when k < z - 1 - theta sw.
            return c.z as f64 - 0.5 - theta * c.sw;
        }
        let s = self.survival(c);
        let a = if c.c > 0.0 {
            let above = s.inverse((theta + c.c) / c.w);
            if above > c.cur {
                above
            } else {
                let below = s.inverse((theta - c.c) / c.w);
                if below < c.cur { below } else { c.cur }
            }
        } else {
            s.inverse(theta / c.w)
        };
        (a - c.g) * self.inv_u
    }

    /// [`View::position`] and its derivative in `theta` (0 where the
    /// position jumps or stands still): what a Newton step on the relaxed
    /// count needs.
    #[inline]
    fn position_and_slope(&self, c: &Curve, theta: f64, phase: Phase) -> (f64, f64) {
        if phase == self.spare {
            return (c.z as f64 - 0.5 - theta * c.sw, -c.sw);
        }
        let s = self.survival(c);
        let (a, da) = if c.c > 0.0 {
            let above = s.inverse_and_slope((theta + c.c) / c.w);
            if above.0 > c.cur {
                above
            } else {
                let below = s.inverse_and_slope((theta - c.c) / c.w);
                if below.0 < c.cur { below } else { (c.cur, 0.0) }
            }
        } else {
            s.inverse_and_slope(theta / c.w)
        };
        ((a - c.g) * self.inv_u, da / c.w * self.inv_u)
    }

    /// A guess of the first unit (in `[lo, hi)`) whose value is at most `theta`.
    #[inline]
    fn guess(&self, c: &Curve, theta: f64, phase: Phase, lo: u32, hi: u32) -> u32 {
        clamp_unit(self.position(c, theta, phase), lo, hi)
    }

    /// Number of units of `[lo, hi)` in `phase` whose value is above
    /// `theta` (`strict`) or at least `theta`.
    fn count_value(
        &self,
        ci: u32,
        phase: Phase,
        lo: u32,
        hi: u32,
        theta: f64,
        strict: bool,
    ) -> u32 {
        let c = &self.curves[ci as usize];
        let guess = self.guess(c, theta, phase, lo, hi);
        let end = if strict {
            first_false(lo, hi, guess, |k| self.value(c, k, phase) > theta)
        } else {
            first_false(lo, hi, guess, |k| self.value(c, k, phase) >= theta)
        };
        end - lo
    }

    /// The name of curve `ci`'s workload.
    #[inline]
    pub fn name(&self, ci: u32) -> &'a str {
        &self.workloads[self.curves[ci as usize].workload as usize]
            .name
            .0
    }

    /// Units of curve `ci` in phases before `phase`, and the stretch
    /// `[start, end)` it has in `phase` (both capped by its floor).
    pub fn phase_span(&self, ci: u32, phase: Phase) -> (u32, u32, u32) {
        let c = &self.curves[ci as usize];
        let mut start = 0;
        for seg in self.segs(c) {
            if seg.phase < phase {
                start = seg.end;
                continue;
            }
            if seg.phase > phase {
                break;
            }
            return (start.min(c.floor), start.min(c.floor), seg.end.min(c.floor));
        }
        let s = start.min(c.floor);
        (s, s, s)
    }

    /// Units of `curves` ranked above the key `(phase, theta)`: all units of
    /// earlier phases and those of `phase` worth more than `theta`.
    pub fn count_above(&self, curves: &[u32], phase: Phase, theta: f64) -> u64 {
        let mut total = 0u64;
        for &ci in curves {
            let (before, s, e) = self.phase_span(ci, phase);
            total += before as u64;
            if s < e {
                total += self.count_value(ci, phase, s, e, theta, true) as u64;
            }
        }
        total
    }

    /// First unit in `[lo, hi)` worth at most `theta` (so `- lo` units
    /// of the range are worth more), and its value when the search saw it
    /// (NaN otherwise).
    #[inline]
    fn first_at_most(&self, c: &Curve, phase: Phase, lo: u32, hi: u32, theta: f64) -> (u32, f64) {
        let guess = self.guess(c, theta, phase, lo, hi);
        self.first_at_most_from(c, phase, lo, hi, theta, guess)
    }

    /// [`View::first_at_most`] searching from `guess` (any guess gives the
    /// same answer; a good one, fewer evaluations).
    #[inline]
    fn first_at_most_from(
        &self,
        c: &Curve,
        phase: Phase,
        lo: u32,
        hi: u32,
        theta: f64,
        guess: u32,
    ) -> (u32, f64) {
        let mut seen = (u32::MAX, f64::NAN);
        let k = first_false(lo, hi, guess, |k| {
            let v = self.value(c, k, phase);
            if v <= theta && k < seen.0 {
                seen = (k, v);
            }
            v > theta
        });
        (k, if seen.0 == k { seen.1 } else { f64::NAN })
    }

    /// First unit in `[lo, hi)` worth less than `theta`, for `lo` worth at
    /// most `theta` (its value `v_lo` if known): ties are rare, so this is
    /// usually free.
    #[inline]
    fn first_below(&self, c: &Curve, phase: Phase, lo: u32, hi: u32, theta: f64, v_lo: f64) -> u32 {
        if lo >= hi {
            return lo;
        }
        let v = if v_lo.is_nan() {
            self.value(c, lo, phase)
        } else {
            v_lo
        };
        if v < theta {
            return lo;
        }
        first_false(lo + 1, hi, lo + 1, |k| self.value(c, k, phase) >= theta)
    }

    /// The key of the `n`-th best unit (1-based) of `curves`, which hold at
    /// least `n` units below their floors; `space.counts[j]` says how many
    /// units of `curves[j]` rank at or before it.
    pub fn nth(&self, curves: &[u32], n: u64, space: &mut SearchSpace) -> Key {
        // The phase the n-th unit is in.
        let phases = space.totals.len();
        space.totals.iter_mut().for_each(|t| *t = 0);
        for &ci in curves {
            let c = &self.curves[ci as usize];
            let mut start = 0;
            for seg in self.segs(c) {
                let len = seg.end.min(c.floor).saturating_sub(start);
                space.totals[seg.phase as usize] += len as u64;
                start = seg.end;
            }
        }
        let mut need = n;
        let mut phase = 0;
        while phase + 1 < phases && space.totals[phase] < need {
            need -= space.totals[phase];
            phase += 1;
        }
        let phase = phase as Phase;

        space.active.clear();
        space.counts.clear();
        for (j, &ci) in curves.iter().enumerate() {
            let (before, s, e) = self.phase_span(ci, phase);
            space.counts.push(before);
            if s < e {
                space.active.push(Active {
                    j: j as u32,
                    a: s,
                    b: e,
                    g: s,
                    ge: s,
                    p0: 0.0,
                    dp: 0.0,
                });
            }
        }
        let mut above = 0u64;
        if space.active.len() > 4 * BRACKET_SAMPLE {
            above = self.bracket(curves, phase, need, space);
        }
        let SearchSpace {
            counts,
            active,
            cands,
            samples,
            ties,
            passes,
            ..
        } = space;
        self.pivot_loop(
            curves,
            phase,
            need,
            above,
            active,
            Some(counts),
            cands,
            samples,
            ties,
            passes,
        )
    }

    /// Narrows every active curve's candidates to a narrow band of values
    /// around the threshold, in one exact pass, and returns the units now
    /// ranked above every candidate.
    ///
    /// The band comes from the relaxed count: summed over the curves, where
    /// each one's value crosses a value (in units, [`View::position`]). It
    /// is within half a unit of the exact count of a curve away from its
    /// kinks, and the errors of many curves mostly cancel, so the relaxed
    /// count (cheap: one inverse of the survival curve per curve) places a
    /// band of some `√n` units that nearly always holds the threshold: a
    /// first guess from a sample, then one Newton step on the relaxed count
    /// of all the curves (its slope comes with each inverse). The exact pass
    /// then keeps only the candidates inside the band; should the band
    /// miss, the side that missed stays and the next exact pass looks further
    /// out on it, and the pivots carry on from wherever that leaves them, so
    /// the result is exact either way. (Without a slope, a few passes of
    /// relaxed counts interpolated between their points place the band.)
    fn bracket(&self, curves: &[u32], phase: Phase, need: u64, space: &mut SearchSpace) -> u64 {
        #[cfg(test)]
        let space_band = space.band;
        let stride = (space.active.len() / BRACKET_SAMPLE).max(1);
        let total: u64 = space.active.iter().map(|x| (x.b - x.a) as u64).sum();
        space.sample.clear();
        space
            .sample
            .extend(space.active.iter().step_by(stride).copied());
        let in_sample: u64 = space.sample.iter().map(|x| (x.b - x.a) as u64).sum();
        let r = need as f64 * in_sample as f64 / total as f64;
        let SearchSpace {
            sample,
            active,
            cands,
            samples,
            ties,
            passes,
            points,
            ..
        } = space;
        let keep = sample.clone();
        // The sample's value at its rank of the n-th unit: a first guess.
        let r_mid = (r.round().max(1.0) as u64).min(in_sample);
        let t0 = self
            .pivot_loop(
                curves, phase, r_mid, 0, sample, None, cands, samples, ties, passes,
            )
            .value;

        // Refine on the relaxed count of all the active curves: a band
        // [lo, hi] of values whose relaxed counts sit `margin` either side of
        // `need` (the errors of n curves add up to some sqrt(n / 12) units).
        // First a Newton step from the guess: the relaxed count there and
        // its slope (a sum of smooth pieces, so nearly linear nearby) say
        // where it reaches `need`.
        let target = need as f64;
        let margin = 3.0 * (active.len() as f64).sqrt() + 64.0;
        points.clear();
        *passes += 1;
        let (mut c0, mut d0) = (0.0, 0.0);
        for x in active.iter_mut() {
            let c = &self.curves[curves[x.j as usize] as usize];
            let (a, b) = (x.a as f64, x.b as f64);
            let (pos, slope) = self.position_and_slope(c, t0, phase);
            (x.p0, x.dp) = (pos as f32, slope as f32);
            c0 += pos.clamp(a, b) - a;
            if pos > a && pos < b {
                d0 += slope;
            }
        }
        points.push((t0, c0));
        let newton = t0 + (target - c0) / d0;
        // Where each curve's exact count above the band's upper edge is
        // looked for first.
        let mut guessed = Guessed::Position;
        let (mut hi, mut lo) = if d0 < 0.0 && newton.is_finite() {
            // Counts fall as values rise (d0 < 0): hi above, lo below. The
            // relaxed count is within about a margin of the exact one, so a
            // band three margins either side of the Newton step nearly always
            // holds the n-th unit (the exact pass tries further out when it
            // does not); each curve's position at its edge is extrapolated
            // from the step.
            guessed = Guessed::From(t0);
            #[cfg(not(test))]
            let (band, newton) = (BAND, newton);
            #[cfg(test)]
            let (band, newton) = match space_band {
                Some((band, shift)) => (band, newton - shift * margin / d0),
                None => (BAND, newton),
            };
            (newton - band * margin / d0, newton + band * margin / d0)
        } else {
            // No slope to follow: the sample's values at its rank give
            // or take its sampling error, refined on the relaxed count.
            let spread = 4.0 * r.max(1.0).sqrt() + 2.0;
            let r_hi = ((r - spread).floor().max(1.0) as u64).min(in_sample);
            let r_lo = ((r + spread).ceil().max(1.0) as u64).min(in_sample);
            sample.clear();
            sample.extend_from_slice(&keep);
            let t_hi = self
                .pivot_loop(
                    curves, phase, r_hi, 0, sample, None, cands, samples, ties, passes,
                )
                .value;
            sample.clear();
            sample.extend_from_slice(&keep);
            let t_lo = self
                .pivot_loop(
                    curves, phase, r_lo, 0, sample, None, cands, samples, ties, passes,
                )
                .value;
            let (mut hi, mut lo) = (t_hi, t_lo);
            // The best band edges so far: (value, relaxed count).
            let mut best_hi: Option<(f64, f64)> = None;
            let mut best_lo: Option<(f64, f64)> = None;
            if c0 <= target - margin {
                best_hi = Some((t0, c0));
            }
            if c0 >= target + margin {
                best_lo = Some((t0, c0));
            }
            for round in 0..RELAXED_ROUNDS {
                *passes += 1;
                let (mut c_hi, mut c_lo) = (0.0, 0.0);
                for x in active.iter_mut() {
                    let c = &self.curves[curves[x.j as usize] as usize];
                    let (a, b) = (x.a as f64, x.b as f64);
                    let pos = self.position(c, hi, phase);
                    // Each curve's guess of its count above `hi`, for the
                    // exact pass when it counts above that same `hi`.
                    x.g = clamp_unit(pos, x.a, x.b);
                    c_hi += pos.clamp(a, b) - a;
                    if lo != hi {
                        c_lo += self.position(c, lo, phase).clamp(a, b) - a;
                    }
                }
                guessed = Guessed::At(hi);
                if lo == hi {
                    c_lo = c_hi;
                }
                for (t, cnt) in [(hi, c_hi), (lo, c_lo)] {
                    points.push((t, cnt));
                    if cnt <= target - margin && best_hi.is_none_or(|(bt, _)| t < bt) {
                        best_hi = Some((t, cnt));
                    }
                    if cnt >= target + margin && best_lo.is_none_or(|(bt, _)| t > bt) {
                        best_lo = Some((t, cnt));
                    }
                }
                if let (Some(h), Some(l)) = (best_hi, best_lo)
                    && l.1 - h.1 <= 8.0 * margin
                {
                    break;
                }
                if round + 1 == RELAXED_ROUNDS {
                    break;
                }
                // Next guesses: where the relaxed count, interpolated
                // between the points seen, reaches need -/+ twice the margin.
                match (
                    interpolate(points, target - 2.0 * margin),
                    interpolate(points, target + 2.0 * margin),
                ) {
                    (Some(h), Some(l)) if h >= l => (hi, lo) = (h, l),
                    _ => break,
                }
            }
            (
                best_hi.map_or(f64::INFINITY, |x| x.0),
                best_lo.map_or(f64::NEG_INFINITY, |x| x.0),
            )
        };
        if hi == f64::INFINITY && lo == f64::NEG_INFINITY {
            return 0;
        }

        // Exact passes: units worth more than `hi`, and than `lo`. Should
        // the band miss, the side that missed is kept and the next pass
        // looks further out on it, twice as far each time, a few times at
        // most (then the pivots carry on from there); the result is exact
        // either way.
        let width = hi - lo;
        let mut above = 0u64;
        for attempt in 0..EXACT_TRIES {
            *passes += 1;
            let (mut above_hi, mut above_lo) = (0u64, 0u64);
            for x in active.iter_mut() {
                let c = &self.curves[curves[x.j as usize] as usize];
                let (g, vg) = if hi == f64::INFINITY {
                    (x.a, f64::NAN)
                } else {
                    let guess = match guessed {
                        Guessed::From(t0) => {
                            let pos = x.p0 as f64 + x.dp as f64 * (hi - t0);
                            clamp_unit(pos, x.a, x.b)
                        }
                        Guessed::At(t) if t == hi => x.g,
                        _ => self.guess(c, hi, phase, x.a, x.b),
                    };
                    self.first_at_most_from(c, phase, x.a, x.b, hi, guess)
                };
                x.g = g;
                let walk = lo < hi && g < x.b;
                x.ge = if lo == f64::NEG_INFINITY {
                    x.b
                } else if walk && vg.is_nan() {
                    // Unit g unseen: from g itself.
                    first_false(g, x.b, g, |k| self.value(c, k, phase) > lo)
                } else if walk && vg > lo {
                    // Usually one or two units further: walk from g.
                    first_false(g + 1, x.b, g + 1, |k| self.value(c, k, phase) > lo)
                } else {
                    g
                };
                above_hi += (x.g - x.a) as u64;
                above_lo += (x.ge - x.a) as u64;
            }
            guessed = Guessed::Position;
            let last = attempt + 1 == EXACT_TRIES || !(width > 0.0 && width.is_finite());
            if above + above_hi >= need {
                // The n-th is worth more than `hi` (the band missed high):
                // every unit left is worth more than this `hi`.
                active.iter_mut().for_each(|x| x.b = x.g);
                if last {
                    return above;
                }
                (hi, lo) = (hi + width * (1 << attempt) as f64, f64::NEG_INFINITY);
            } else if above + above_lo >= need {
                // Worth at most `hi` and more than `lo`: in the band.
                active.iter_mut().for_each(|x| (x.a, x.b) = (x.g, x.ge));
                return above + above_hi;
            } else {
                // Worth at most `lo` (the band missed low): every unit left
                // is worth at most this `lo`.
                active.iter_mut().for_each(|x| x.a = x.ge);
                above += above_lo;
                if last {
                    return above;
                }
                (hi, lo) = (f64::INFINITY, lo - width * (1 << attempt) as f64);
            }
        }
        above
    }

    /// Brackets the `need`-th best candidate (1-based, counting the `above`
    /// units already ranked before every candidate) with pivots until few
    /// are left, then sorts them. With `counts`, records for each curve how
    /// many of its units rank at or before the result.
    #[allow(clippy::too_many_arguments)]
    fn pivot_loop(
        &self,
        curves: &[u32],
        phase: Phase,
        need: u64,
        mut above: u64,
        active: &mut Vec<Active>,
        mut counts: Option<&mut Vec<u32>>,
        cands: &mut Vec<(f64, u32, u32)>,
        samples: &mut Vec<(f64, u64)>,
        ties: &mut Vec<u32>,
        passes: &mut usize,
    ) -> Key {
        let curve_of = |x: &Active| &self.curves[curves[x.j as usize] as usize];
        let drop_done = |active: &mut Vec<Active>, counts: &mut Option<&mut Vec<u32>>| {
            active.retain(|x| {
                if x.a < x.b {
                    return true;
                }
                if let Some(c) = counts.as_deref_mut() {
                    c[x.j as usize] = x.a;
                }
                false
            });
        };
        drop_done(active, &mut counts);
        loop {
            *passes += 1;
            let left: u64 = active.iter().map(|x| (x.b - x.a) as u64).sum();
            if left <= SORT_BELOW || active.len() <= 1 && left <= 4 * SORT_BELOW {
                return self.sort_the_rest(curves, phase, need - above, active, counts, cands);
            }
            let theta = self.pivot(curves, phase, active, samples);
            let (mut gt, mut ge) = (above, above);
            for x in active.iter_mut() {
                let c = curve_of(x);
                let (g, vg) = self.first_at_most(c, phase, x.a, x.b, theta);
                x.g = g;
                x.ge = self.first_below(c, phase, g, x.b, theta, vg);
                gt += (x.g - x.a) as u64;
                ge += (x.ge - x.a) as u64;
            }
            match (gt >= need, ge >= need) {
                (true, _) => {
                    // The n-th is worth more than theta.
                    for x in active.iter_mut() {
                        x.b = x.g;
                    }
                }
                (false, true) => {
                    // The n-th is worth exactly theta: a tie to break.
                    return self.break_tie(curves, phase, theta, need - gt, active, counts, ties);
                }
                (false, false) => {
                    above = ge;
                    for x in active.iter_mut() {
                        x.a = x.ge;
                    }
                }
            }
            drop_done(active, &mut counts);
        }
    }

    /// A pivot value among the candidates: the weighted median of the
    /// middle candidate of up to [`SAMPLE`] active curves.
    fn pivot(
        &self,
        curves: &[u32],
        phase: Phase,
        active: &[Active],
        samples: &mut Vec<(f64, u64)>,
    ) -> f64 {
        samples.clear();
        let step = active.len().div_ceil(SAMPLE).max(1);
        for x in active.iter().step_by(step) {
            let c = &self.curves[curves[x.j as usize] as usize];
            let mid = x.a + (x.b - x.a) / 2;
            samples.push((self.value(c, mid, phase), (x.b - x.a) as u64));
        }
        samples.sort_by(|a, b| b.0.total_cmp(&a.0));
        let half = samples.iter().map(|s| s.1).sum::<u64>().div_ceil(2);
        let mut acc = 0;
        for &(v, w) in samples.iter() {
            acc += w;
            if acc >= half {
                return v;
            }
        }
        samples[0].0
    }

    /// Sorts the remaining candidates and returns the `rank`-th (1-based).
    fn sort_the_rest(
        &self,
        curves: &[u32],
        phase: Phase,
        rank: u64,
        active: &[Active],
        counts: Option<&mut Vec<u32>>,
        cands: &mut Vec<(f64, u32, u32)>,
    ) -> Key {
        cands.clear();
        for x in active {
            let c = &self.curves[curves[x.j as usize] as usize];
            for k in x.a..x.b {
                cands.push((self.value(c, k, phase), k, x.j));
            }
        }
        let name = |j: u32| self.name(curves[j as usize]);
        cands.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.cmp(&b.1))
                .then_with(|| name(a.2).cmp(name(b.2)))
        });
        let i = (rank.max(1) - 1).min(cands.len().saturating_sub(1) as u64) as usize;
        if let Some(counts) = counts {
            for x in active {
                counts[x.j as usize] = x.a;
            }
            for &(_, _, j) in &cands[..=i] {
                counts[j as usize] += 1;
            }
        }
        let (value, k, j) = cands[i];
        Key {
            phase,
            value,
            k,
            curve: curves[j as usize],
        }
    }

    /// Among the units worth exactly `theta` (`[g, ge)` of each active
    /// curve), the `rank`-th in (level, name) order.
    #[allow(clippy::too_many_arguments)]
    fn break_tie(
        &self,
        curves: &[u32],
        phase: Phase,
        theta: f64,
        rank: u64,
        active: &[Active],
        counts: Option<&mut Vec<u32>>,
        ties: &mut Vec<u32>,
    ) -> Key {
        let tied = || active.iter().filter(|x| x.g < x.ge);
        // The lowest level K such that at least `rank` tied units sit at
        // levels <= K: allocations are levelled up evenly.
        let upto = |level: u32| -> u64 {
            tied()
                .map(|x| (level.saturating_add(1).min(x.ge).saturating_sub(x.g)) as u64)
                .sum()
        };
        let mut lo = tied().map(|x| x.g).min().unwrap_or(0);
        let mut hi = tied().map(|x| x.ge).max().unwrap_or(0);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if upto(mid) >= rank {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let level = lo;
        let below = if level == 0 { 0 } else { upto(level - 1) };
        ties.clear();
        ties.extend(tied().filter(|x| x.g <= level && level < x.ge).map(|x| x.j));
        let name = |j: u32| self.name(curves[j as usize]);
        ties.sort_by(|&a, &b| name(a).cmp(name(b)));
        let i = ((rank - below).max(1) - 1).min(ties.len().saturating_sub(1) as u64) as usize;
        let chosen = ties[i];
        if let Some(counts) = counts {
            let cut = name(chosen);
            for x in active {
                // Worth more than theta, then tied units below the level,
                // then at the level those whose names come first.
                let mut n = x.g + level.min(x.ge).saturating_sub(x.g);
                if x.g <= level && level < x.ge && name(x.j) <= cut {
                    n += 1;
                }
                counts[x.j as usize] = n;
            }
        }
        Key {
            phase,
            value: theta,
            k: level,
            curve: curves[chosen as usize],
        }
    }
}

/// The value of unit `k` of `c` (outside the spare phase).
#[inline]
pub(crate) fn unit_value(s: Survival<'_>, c: &Curve, k: u32, u: f64) -> f64 {
    let a = c.g + k as f64 * u;
    let b = c.g + (k as f64 + 1.0) * u;
    let mut v = c.w * s.mean_over(a, b);
    if c.c > 0.0 {
        // d/da of -c |a - cur|, averaged over the unit.
        v += if b <= c.cur {
            c.c
        } else if a >= c.cur {
            -c.c
        } else {
            c.c * (2.0 * (c.cur - a) / (b - a) - 1.0)
        };
    }
    v
}

/// The value at which the relaxed count, interpolated linearly between the
/// `(value, count)` points seen (the count falls as the value rises), is
/// `target`; extrapolated from the nearest two when outside them.
fn interpolate(points: &mut [(f64, f64)], target: f64) -> Option<f64> {
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let finite = |x: f64| x.is_finite().then_some(x);
    // The last point (by value) whose count is at least the target.
    let i = points.iter().rposition(|p| p.1 >= target);
    let (p, q) = match i {
        Some(i) if i + 1 < points.len() => (points[i], points[i + 1]),
        // Every count is at least the target: beyond the highest value.
        Some(_) => {
            let n = points.len();
            if n < 2 {
                return None;
            }
            (points[n - 2], points[n - 1])
        }
        // Every count is below it: below the lowest value.
        None => {
            if points.len() < 2 {
                return None;
            }
            (points[0], points[1])
        }
    };
    if p.0 == q.0 {
        return None;
    }
    if p.1 == q.1 {
        // Flat between them: move beyond by their distance.
        return finite(if p.1 >= target {
            q.0 + (q.0 - p.0)
        } else {
            p.0 - (q.0 - p.0)
        });
    }
    finite(p.0 + (q.0 - p.0) * (p.1 - target) / (p.1 - q.1))
}

/// `floor(k)` within `[lo, hi)` (`lo` for NaN). No `floor` is needed: the
/// cast truncates, which is the floor for the `k >= lo >= 0` it is given.
fn clamp_unit(k: f64, lo: u32, hi: u32) -> u32 {
    if hi <= lo {
        return lo;
    }
    if k.is_nan() || k < lo as f64 {
        return lo;
    }
    if k >= (hi - 1) as f64 {
        return hi - 1;
    }
    k as u32
}

/// The first `k` in `[lo, hi)` where `pred` is false (`hi` if none), for
/// `pred` true then false; galloping out from `guess`.
#[inline]
pub(crate) fn first_false(lo: u32, hi: u32, guess: u32, mut pred: impl FnMut(u32) -> bool) -> u32 {
    if lo >= hi {
        return lo;
    }
    let g = guess.clamp(lo, hi - 1);
    let (mut l, mut h);
    if pred(g) {
        // The answer is above g.
        l = g + 1;
        h = hi;
        let mut step = 1u32;
        loop {
            let p = match g.checked_add(step) {
                Some(p) if p < hi => p,
                _ => break,
            };
            if pred(p) {
                l = p + 1;
                step = step.saturating_mul(2);
            } else {
                h = p;
                break;
            }
        }
    } else {
        // The answer is g or below.
        l = lo;
        h = g;
        let mut step = 1u32;
        while g >= lo + step {
            let p = g - step;
            if pred(p) {
                l = p + 1;
                break;
            }
            h = p;
            step = step.saturating_mul(2);
        }
    }
    while l < h {
        let mid = l + (h - l) / 2;
        if pred(mid) {
            l = mid + 1;
        } else {
            h = mid;
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_false_from_any_guess() {
        for boundary in 0..=20u32 {
            for guess in 0..25u32 {
                assert_eq!(
                    first_false(0, 20, guess, |k| k < boundary),
                    boundary.min(20)
                );
                assert_eq!(
                    first_false(3, 20, guess, |k| k < boundary),
                    boundary.clamp(3, 20)
                );
            }
        }
        assert_eq!(first_false(5, 5, 0, |_| true), 5);
        assert_eq!(
            first_false(0, u32::MAX, 7, |k| k < 4_000_000_000),
            4_000_000_000
        );
    }
}
