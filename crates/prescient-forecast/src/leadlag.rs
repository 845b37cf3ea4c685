//! Lead-lag relationships between the series of one host: when one
//! workload's rise reliably precedes another's by a few steps (a front end
//! before its database, an ingest job before the indexer), the follower's
//! forecast for the next steps can use what the leader already did.
//!
//! [`LeadLag`] is fed all of a host's series at a common step, one step at
//! a time. For each series it standardises the first differences online
//! (exponentially weighted mean and variance of the differences winsorised
//! at `clip` standard deviations, so that a spike weighs as a few ordinary
//! moves, not as the whole variance), and for every ordered pair (i, j) and
//! lag l in 0..=`max_lag` it keeps the exponentially weighted correlation
//! of z_i(t - l) with z_j(t). Differences rather than levels, because
//! levels that merely trend or follow the same daily cycle are correlated
//! at every lag.
//!
//! A pair "i leads j by l" is trusted only when, for `stable_steps`
//! consecutive steps, the best lag l in 1..=`max_lag` has been the same and
//! its correlation has been
//! - at least `min_corr`, and significant: |r| * sqrt(n_eff) >= `min_z`,
//!   n_eff being the effective number of samples behind the average (this
//!   guards against the many pairs and lags tested: 60 series, 12 lags is
//!   42,480 tests a step),
//! - above the same pair's lag-0 correlation by `margin` (a common driver
//!   moves both at once: that is not a lead),
//! - above the reverse direction's (j leading i) by `margin`,
//!
//! after at least `min_samples` differences. It stays trusted while its
//! correlation at the trusted lag holds 0.8 of those thresholds. The
//! averages forget with a half-life of `half_life_steps`, so relationships
//! that end are dropped and new ones learned.
//!
//! The adjustment ([`LeadLag::adjustment`]) is a regression of the
//! follower's change on the leader's change `lag` steps earlier
//! (slope = r * sd_j / sd_i): the follower's change at t + k is predicted
//! from the leader's at t + k - lag, known for k <= lag. The shifts are the
//! cumulative sum of those predicted changes, held after `lag` steps. Only
//! the strongest trusted leader of a follower is used (leaders are often
//! correlated with each other; adding them would count one move twice).
//!
//! Cost per step, n series and L = `max_lag`: n^2 (L + 1) multiply-adds to
//! update the correlations and about 2 n^2 L comparisons to evaluate the
//! pairs; state n^2 (L + 1) 4-byte floats plus 24 bytes a pair. For 60
//! series and L = 12 that is 46,000 multiply-adds a step, measured at
//! 0.23-0.33 ms a step on a loaded 2-core machine (the ignored `cost`
//! test, in release), and 224 KB of state as postcard.

use std::collections::{HashMap, VecDeque};

use prescient_core::{SeriesKey, TimestampMs};
use serde::{Deserialize, Serialize};

/// How [`LeadLag`] decides what to trust.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeadLagConfig {
    /// The longest lead looked for, in steps.
    pub max_lag: usize,
    /// Half-life of the averages, in steps (576 = 2 days of 5-minute steps).
    pub half_life_steps: f64,
    /// Differences a pair needs before it can be trusted.
    pub min_samples: u32,
    /// The weakest correlation worth using (0.3 explains 9 % of the
    /// follower's changes).
    pub min_corr: f64,
    /// The correlation must be this many standard errors from 0.
    pub min_z: f64,
    /// By how much the lead must beat the same pair's lag 0 and the
    /// reverse direction.
    pub margin: f64,
    /// Consecutive steps a pair must pass, at the same lag, to be trusted.
    pub stable_steps: u32,
    /// Standardised differences are clipped to +-this (a spike must not
    /// make a correlation).
    pub clip: f64,
    /// Differences a series needs before its standardised values are used.
    pub warmup: u32,
}

impl Default for LeadLagConfig {
    fn default() -> Self {
        LeadLagConfig {
            max_lag: 12,
            half_life_steps: 576.0,
            min_samples: 288,
            min_corr: 0.3,
            min_z: 5.0,
            margin: 0.1,
            stable_steps: 144,
            clip: 4.0,
            warmup: 30,
        }
    }
}

/// A trusted relationship: `leader`'s changes precede `follower`'s by `lag`
/// steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    /// The series that moves first.
    pub leader: SeriesKey,
    /// The series that follows.
    pub follower: SeriesKey,
    /// How many steps later.
    pub lag: usize,
    /// Correlation of the standardised changes at that lag.
    pub corr: f64,
    /// Follower's change per unit of leader's change.
    pub beta: f64,
    /// When it became trusted.
    pub since: TimestampMs,
}

/// Shifts for a follower's forecast: see [`LeadLag::adjustment`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Adjustment {
    /// The relationship used.
    pub lead: Lead,
    /// Amount to add to every quantile of step h (0 = the next step).
    pub shifts: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SeriesState {
    key: SeriesKey,
    /// The last observation.
    last: Option<(TimestampMs, f64)>,
    /// Differences seen.
    n: u32,
    mean: f64,
    var: f64,
    /// Running mean of z^2 (the winsorised z's variance, for normalising).
    zz: f64,
    /// Standardised differences, newest first (NaN: none that step);
    /// `max_lag + 1` long.
    z: VecDeque<f64>,
    /// Centred, clipped differences in the series' unit, newest first.
    d: VecDeque<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct PairState {
    /// Steps at which both series had a standardised difference.
    n: u32,
    /// Consecutive steps passing the tests at `lag`.
    streak: u32,
    /// The lag under test or trusted (0: none).
    lag: u8,
    trusted: bool,
    since: TimestampMs,
}

/// Online lead-lag detection over the series of one host; see the module
/// documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadLag {
    config: LeadLagConfig,
    step_ms: i64,
    series: Vec<SeriesState>,
    /// `cross[(i * n + j) * (max_lag + 1) + l]`: running mean of
    /// z_i(t - l) * z_j(t). f32: the state is n^2 (L + 1) numbers.
    cross: Vec<f32>,
    /// `pairs[i * n + j]`: i leading j.
    pairs: Vec<PairState>,
    last_ts: Option<TimestampMs>,
    /// Key to slot; rebuilt after deserialising.
    #[serde(skip)]
    index: HashMap<SeriesKey, usize>,
}

impl LeadLag {
    /// A detector for series observed every `step_ms`.
    pub fn new(step_ms: i64, config: LeadLagConfig) -> LeadLag {
        let mut config = config;
        // The lag is kept in a u8.
        config.max_lag = config.max_lag.clamp(1, 255);
        // `clamp` needs a positive clip.
        if config.clip.is_nan() || config.clip <= 0.0 {
            config.clip = LeadLagConfig::default().clip;
        }
        LeadLag {
            config,
            step_ms: step_ms.max(1),
            series: Vec::new(),
            cross: Vec::new(),
            pairs: Vec::new(),
            last_ts: None,
            index: HashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LeadLagConfig {
        &self.config
    }

    /// Series tracked.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether no series is tracked.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Approximate size of the state in bytes.
    pub fn state_bytes(&self) -> usize {
        self.cross.len() * 4
            + self.pairs.len() * std::mem::size_of::<PairState>()
            + self.series.len() * (96 + 16 * (self.config.max_lag + 1))
    }

    fn weight(&self) -> f64 {
        // Per-step weight of a new value in a running mean with this half-life.
        1.0 - 0.5f64.powf(1.0 / self.config.half_life_steps.max(1.0))
    }

    fn slot(&mut self, key: &SeriesKey) -> usize {
        if self.index.len() != self.series.len() {
            self.index = self
                .series
                .iter()
                .enumerate()
                .map(|(i, s)| (s.key.clone(), i))
                .collect();
        }
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let lags = self.config.max_lag + 1;
        let old = self.series.len();
        let new = old + 1;
        let mut cross = vec![0f32; new * new * lags];
        let mut pairs = vec![PairState::default(); new * new];
        for i in 0..old {
            for j in 0..old {
                let (from, to) = ((i * old + j) * lags, (i * new + j) * lags);
                cross[to..to + lags].copy_from_slice(&self.cross[from..from + lags]);
                pairs[i * new + j] = self.pairs[i * old + j];
            }
        }
        self.cross = cross;
        self.pairs = pairs;
        self.series.push(SeriesState {
            key: key.clone(),
            last: None,
            n: 0,
            mean: 0.0,
            var: 0.0,
            zz: 1.0,
            z: std::iter::repeat_n(f64::NAN, lags).collect(),
            d: std::iter::repeat_n(f64::NAN, lags).collect(),
        });
        self.index.insert(key.clone(), old);
        old
    }

    /// Stops tracking a series (a workload that went away).
    pub fn remove(&mut self, key: &SeriesKey) -> bool {
        let Some(gone) = self.series.iter().position(|s| &s.key == key) else {
            return false;
        };
        let lags = self.config.max_lag + 1;
        let old = self.series.len();
        let new = old - 1;
        let keep: Vec<usize> = (0..old).filter(|&i| i != gone).collect();
        let mut cross = vec![0f32; new * new * lags];
        let mut pairs = vec![PairState::default(); new * new];
        for (ni, &i) in keep.iter().enumerate() {
            for (nj, &j) in keep.iter().enumerate() {
                let (from, to) = ((i * old + j) * lags, (ni * new + nj) * lags);
                cross[to..to + lags].copy_from_slice(&self.cross[from..from + lags]);
                pairs[ni * new + nj] = self.pairs[i * old + j];
            }
        }
        self.cross = cross;
        self.pairs = pairs;
        self.series.remove(gone);
        self.index.clear();
        true
    }

    /// Feeds the observations of the step at `ts` (any subset of the
    /// host's series, new ones are added). Values that are not
    /// [`crate::stats::usable`] count as missing; a step at or before the
    /// previous one is ignored. A series whose previous observation is not
    /// one step back (within half a step) has no difference this step.
    pub fn update(&mut self, ts: TimestampMs, observations: &[(SeriesKey, f64)]) {
        if self.last_ts.is_some_and(|last| ts <= last) {
            return;
        }
        self.last_ts = Some(ts);
        let a_ew = self.weight();
        let (clip, warmup) = (self.config.clip, self.config.warmup);
        let step = self.step_ms;
        let mut fresh: Vec<(usize, f64, f64)> = Vec::with_capacity(observations.len());
        for (key, value) in observations {
            // Absurdly large values count as missing: their squares would
            // overflow the variance.
            let Some(value) = crate::stats::usable(*value) else {
                continue;
            };
            let i = self.slot(key);
            let s = &mut self.series[i];
            let prev = s.last.replace((ts, value));
            let Some((lt, lv)) = prev else { continue };
            let off_grid = ts.saturating_sub(lt).saturating_sub(step).saturating_abs();
            if off_grid.saturating_mul(2) > step {
                continue;
            }
            let d = value - lv;
            if !d.is_finite() {
                continue;
            }
            // Standardise with the statistics before this value, so that
            // z is what the past would have predicted.
            let sd = s.var.sqrt();
            let usable = s.n >= warmup && sd > 0.0;
            let z = if usable {
                ((d - s.mean) / sd).clamp(-clip, clip)
            } else {
                f64::NAN
            };
            let usable = usable && z.is_finite();
            let centred = if usable {
                (d - s.mean).clamp(-clip * sd, clip * sd)
            } else {
                f64::NAN
            };
            // Early on the average is a plain mean, later exponential. The
            // statistics learn from the difference winsorised like z: a
            // spike would otherwise inflate the variance, shrink every
            // ordinary z, and leave correlations to a few coincidences
            // of spikes.
            let a = a_ew.max(1.0 / f64::from(s.n.saturating_add(1)));
            let dw = if usable { s.mean + centred } else { d };
            let diff = dw - s.mean;
            s.mean += a * diff;
            s.var = (1.0 - a) * (s.var + a * diff * diff);
            s.n = s.n.saturating_add(1);
            if usable {
                let b = a_ew.max(1.0 / f64::from(s.n.saturating_sub(warmup).saturating_add(1)));
                s.zz += b * (z * z - s.zz);
            }
            fresh.push((i, z, centred));
        }
        // Every series gets this step's entry (NaN if it had none).
        let mut current = vec![(f64::NAN, f64::NAN); self.series.len()];
        for &(i, z, d) in &fresh {
            current[i] = (z, d);
        }
        for (s, &(z, d)) in self.series.iter_mut().zip(&current) {
            s.z.pop_back();
            s.z.push_front(z);
            s.d.pop_back();
            s.d.push_front(d);
        }
        self.update_cross(a_ew);
        self.evaluate(ts);
    }

    fn update_cross(&mut self, a_ew: f64) {
        let n = self.series.len();
        let lags = self.config.max_lag + 1;
        // Lagged z's of every series, flat, for a tight inner loop.
        let mut hist = vec![f64::NAN; n * lags];
        for (i, s) in self.series.iter().enumerate() {
            for (l, &z) in s.z.iter().enumerate().take(lags) {
                hist[i * lags + l] = z;
            }
        }
        for j in 0..n {
            let zj = hist[j * lags];
            if zj.is_nan() {
                continue;
            }
            for i in 0..n {
                if i == j {
                    continue;
                }
                let p = &mut self.pairs[i * n + j];
                if hist[i * lags].is_nan() {
                    // Lag 0 missing: count the step only for the lags that
                    // have values, without advancing the pair's count.
                } else {
                    p.n = p.n.saturating_add(1);
                }
                let a = a_ew.max(1.0 / f64::from(p.n.max(1))) as f32;
                let row = &mut self.cross[(i * n + j) * lags..(i * n + j + 1) * lags];
                let zi = &hist[i * lags..(i + 1) * lags];
                for (c, &z) in row.iter_mut().zip(zi) {
                    if !z.is_nan() {
                        *c += a * ((z * zj) as f32 - *c);
                    }
                }
            }
        }
    }

    /// The correlation of i's change with j's change `l` steps later.
    fn corr(&self, i: usize, j: usize, l: usize) -> f64 {
        let n = self.series.len();
        let lags = self.config.max_lag + 1;
        let norm = (self.series[i].zz * self.series[j].zz).sqrt();
        if norm > 0.0 {
            f64::from(self.cross[(i * n + j) * lags + l]) / norm
        } else {
            0.0
        }
    }

    fn evaluate(&mut self, ts: TimestampMs) {
        let c = self.config;
        let n = self.series.len();
        let lags = c.max_lag + 1;
        let lam = 1.0 - self.weight();
        let n_eff_max = (1.0 + lam) / (1.0 - lam).max(1e-12);
        let inv_sd: Vec<f64> = self
            .series
            .iter()
            .map(|s| if s.zz > 0.0 { 1.0 / s.zz.sqrt() } else { 0.0 })
            .collect();
        for i in 0..n {
            for j in 0..n {
                let p = self.pairs[i * n + j];
                // Too few samples to pass: nothing to update.
                if i == j || (p.n < c.min_samples && !p.trusted) {
                    continue;
                }
                let n_eff = f64::from(p.n).min(n_eff_max);
                let norm = inv_sd[i] * inv_sd[j];
                let row = &self.cross[(i * n + j) * lags..(i * n + j + 1) * lags];
                let rev = &self.cross[(j * n + i) * lags..(j * n + i + 1) * lags];
                let (mut best, mut best_lag, mut reverse) = (0f32, 0usize, 0f32);
                for l in 1..lags {
                    if row[l].abs() > best.abs() {
                        (best, best_lag) = (row[l], l);
                    }
                    reverse = reverse.max(rev[l].abs());
                }
                let best = f64::from(best) * norm;
                let reverse = f64::from(reverse) * norm;
                let lag0 = f64::from(row[0].abs()) * norm;
                let passes = |r: f64, scale: f64| {
                    p.n >= c.min_samples
                        && r.abs() >= scale * c.min_corr
                        && r.abs() * n_eff.sqrt() >= scale * c.min_z
                        && r.abs() >= lag0 + scale * c.margin
                        && r.abs() >= reverse + scale * c.margin
                };
                let mut q = p;
                if passes(best, 1.0) {
                    if usize::from(q.lag) == best_lag {
                        q.streak = q.streak.saturating_add(1);
                    } else if !q.trusted {
                        q.lag = best_lag as u8;
                        q.streak = 1;
                    }
                } else if !q.trusted {
                    q.streak = 0;
                }
                if q.trusted {
                    let r = f64::from(row[usize::from(q.lag)]) * norm;
                    if !passes(r, 0.8) {
                        q.trusted = false;
                        q.streak = 0;
                    }
                } else if q.streak >= c.stable_steps {
                    q.trusted = true;
                    q.since = ts;
                }
                self.pairs[i * n + j] = q;
            }
        }
    }

    fn lead(&self, i: usize, j: usize) -> Lead {
        let p = self.pairs[i * self.series.len() + j];
        let lag = usize::from(p.lag);
        let corr = self.corr(i, j, lag);
        let (si, sj) = (&self.series[i], &self.series[j]);
        let beta = if si.var > 0.0 {
            corr * (sj.var / si.var).sqrt()
        } else {
            0.0
        };
        Lead {
            leader: si.key.clone(),
            follower: sj.key.clone(),
            lag,
            corr,
            beta,
            since: p.since,
        }
    }

    /// Every trusted relationship.
    pub fn leads(&self) -> Vec<Lead> {
        let n = self.series.len();
        let mut out = Vec::new();
        for i in 0..n {
            for j in 0..n {
                if i != j && self.pairs[i * n + j].trusted {
                    out.push(self.lead(i, j));
                }
            }
        }
        out
    }

    /// The strongest trusted leader of `follower`.
    pub fn leader_of(&self, follower: &SeriesKey) -> Option<Lead> {
        let n = self.series.len();
        let j = self.series.iter().position(|s| &s.key == follower)?;
        (0..n)
            .filter(|&i| i != j && self.pairs[i * n + j].trusted)
            .map(|i| self.lead(i, j))
            .max_by(|a, b| a.corr.abs().total_cmp(&b.corr.abs()))
    }

    /// What the leader's recent changes say about the follower's next
    /// `horizon` steps, as amounts to add to its forecast (step 0 = the step
    /// after the last update), if it has a trusted leader.
    pub fn adjustment(&self, follower: &SeriesKey, horizon: usize) -> Option<Adjustment> {
        let lead = self.leader_of(follower)?;
        let leader = self.series.iter().find(|s| s.key == lead.leader)?;
        let mut shifts = Vec::with_capacity(horizon);
        let mut total = 0.0;
        for h in 0..horizon {
            // Step h is t + h + 1; its change follows the leader's at
            // t + h + 1 - lag, which is `lag - h - 1` entries back.
            let k = h + 1;
            if k <= lead.lag {
                let d = leader.d.get(lead.lag - k).copied().unwrap_or(f64::NAN);
                if d.is_finite() {
                    total += lead.beta * d;
                }
            }
            shifts.push(total);
        }
        Some(Adjustment { lead, shifts })
    }

    /// [`LeadLag::adjust`] for a table whose first row is the step starting
    /// at `start`, which may come later than the step after the last
    /// update (a plan made while a step is still open starts after it):
    /// the rows get the shifts of their own steps, those of the steps
    /// before them included (a shift is the sum of the changes predicted
    /// up to its step). Before any update, or for a `start` not after the
    /// last update, as [`LeadLag::adjust`].
    pub fn adjust_from(
        &self,
        follower: &SeriesKey,
        start: TimestampMs,
        levels: &[f64],
        values: &mut [f64],
    ) -> Option<Adjustment> {
        let width = levels.len();
        if width == 0 {
            return None;
        }
        // Steps between the step after the last update and `start`, rounded
        // to the nearest; past `max_lag` the shifts hold.
        let skip = self.last_ts.map_or(0, |last| {
            let ahead = start.saturating_sub(last).saturating_sub(self.step_ms);
            let steps = (ahead.saturating_add(self.step_ms / 2)).div_euclid(self.step_ms);
            usize::try_from(steps.max(0))
                .unwrap_or(usize::MAX)
                .min(self.config.max_lag)
        });
        let rows = values.len() / width;
        let mut adj = self.adjustment(follower, skip + rows)?;
        adj.shifts.drain(..skip);
        for (row, shift) in values.chunks_exact_mut(width).zip(&adj.shifts) {
            for v in row.iter_mut() {
                *v += shift;
            }
            crate::stats::tidy_rows(row, width);
        }
        Some(adj)
    }

    /// Adds the [`LeadLag::adjustment`] of `follower` to a row-major
    /// quantile table of `values.len() / levels.len()` steps, keeping rows
    /// non-negative and non-decreasing; returns it, or `None` (table
    /// untouched) without a trusted leader.
    pub fn adjust(
        &self,
        follower: &SeriesKey,
        levels: &[f64],
        values: &mut [f64],
    ) -> Option<Adjustment> {
        let width = levels.len();
        if width == 0 {
            return None;
        }
        let adj = self.adjustment(follower, values.len() / width)?;
        for (row, shift) in values.chunks_exact_mut(width).zip(&adj.shifts) {
            for v in row.iter_mut() {
                *v += shift;
            }
            crate::stats::tidy_rows(row, width);
        }
        Some(adj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescient_core::Resource;
    use proptest::prelude::*;

    const STEP: i64 = 300_000;

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
            (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
        }
    }

    fn key(name: &str) -> SeriesKey {
        SeriesKey::new("h", name, Resource::Cpu)
    }

    /// A and B where B(t) = 0.8 A(t - 3) + its own walk + noise, and
    /// `others` independent walks; returns the series, A and B first.
    fn follow_world(seed: u64, steps: usize, others: usize) -> Vec<Vec<f64>> {
        let mut rng = Rng(seed);
        // Levels far enough from 0 that the walks stay positive (demand is
        // never negative; the detector reads negatives as 0).
        let mut a = vec![500.0];
        for _ in 1..steps {
            let last = *a.last().unwrap();
            a.push(last + rng.normal());
        }
        let mut own = 0.0;
        let b: Vec<f64> = (0..steps)
            .map(|t| {
                own += 0.4 * rng.normal();
                0.8 * a[t.saturating_sub(3)] + own + 0.2 * rng.normal() + 20.0
            })
            .collect();
        let mut out = vec![a, b];
        for _ in 0..others {
            let mut x = 300.0;
            out.push(
                (0..steps)
                    .map(|_| {
                        x += rng.normal();
                        x + 0.3 * rng.normal()
                    })
                    .collect(),
            );
        }
        out
    }

    fn feed(ll: &mut LeadLag, series: &[Vec<f64>], t: usize) {
        let obs: Vec<(SeriesKey, f64)> = series
            .iter()
            .enumerate()
            .map(|(i, s)| (key(&format!("s{i}")), s[t]))
            .collect();
        ll.update(t as i64 * STEP, &obs);
    }

    #[test]
    fn b_following_a_by_three_steps_is_found_and_improves_its_forecast() {
        let steps = 2500;
        let world = follow_world(11, steps, 8);
        let mut ll = LeadLag::new(STEP, LeadLagConfig::default());
        let mut found_at = None;
        let b = key("s1");
        // RMSE of B's forecast at h = 1, 2, 3, 6 after detection: last
        // value, and last value plus the adjustment.
        let hs = [1usize, 2, 3, 6];
        let (mut base_se, mut adj_se, mut count) = ([0.0; 4], [0.0; 4], 0usize);
        for t in 0..steps {
            feed(&mut ll, &world, t);
            if found_at.is_none() && !ll.leads().is_empty() {
                found_at = Some(t);
            }
            if found_at.is_some() && t + 6 < steps {
                let adj = ll.adjustment(&b, 6).expect("B keeps its leader");
                for (k, &h) in hs.iter().enumerate() {
                    let actual = world[1][t + h];
                    let base = world[1][t];
                    base_se[k] += (actual - base).powi(2);
                    adj_se[k] += (actual - base - adj.shifts[h - 1]).powi(2);
                }
                count += 1;
            }
        }
        let leads = ll.leads();
        assert_eq!(leads.len(), 1, "{leads:?}");
        let lead = &leads[0];
        assert_eq!(
            (
                lead.leader.workload.0.as_str(),
                lead.follower.workload.0.as_str()
            ),
            ("s0", "s1")
        );
        assert_eq!(lead.lag, 3);
        assert!((lead.beta - 0.8).abs() < 0.15, "{lead:?}");
        let found_at = found_at.unwrap();
        let rmse = |se: f64| (se / count as f64).sqrt();
        let mut report = format!(
            "found after {found_at} steps, corr {:.2}, beta {:.2};",
            lead.corr, lead.beta
        );
        for (k, h) in hs.iter().enumerate() {
            let (b0, b1) = (rmse(base_se[k]), rmse(adj_se[k]));
            report += &format!(
                " h={h}: rmse {b0:.3} -> {b1:.3} ({:+.0} %);",
                100.0 * (b1 / b0 - 1.0)
            );
            if *h <= 3 {
                assert!(b1 < 0.75 * b0, "{report}");
            } else {
                assert!(b1 < b0, "{report}");
            }
        }
        eprintln!("lead-lag A->B lag 3: {report}");
        assert!(found_at < 2 * 288 + 144, "{report}");
    }

    /// Independent series of several kinds, and series that share a daily
    /// cycle (a common driver, no lead): nothing may be trusted.
    #[test]
    fn independent_series_are_not_linked() {
        let seeds = 40u64;
        let (n, steps) = (10usize, 2000usize);
        let mut trusted_ever = 0usize;
        let mut pairs = 0usize;
        for seed in 0..seeds {
            let mut rng = Rng(1000 + seed);
            let daily = seed % 2 == 1;
            let world: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    let (mut x, mut ar) = (300.0, 0.0);
                    (0..steps)
                        .map(|t| {
                            let e = rng.normal();
                            let cycle = if daily {
                                5.0 * (t as f64 / 288.0 * std::f64::consts::TAU).sin()
                            } else {
                                0.0
                            };
                            match i % 3 {
                                // A random walk.
                                0 => {
                                    x += e;
                                    x + cycle
                                }
                                // AR(1) around a level.
                                1 => {
                                    ar = 0.9 * ar + e;
                                    10.0 + ar + cycle
                                }
                                // Noise with rare spikes.
                                _ => {
                                    let spike = if rng.uniform() < 0.01 { 20.0 } else { 0.0 };
                                    10.0 + 0.5 * e + spike + cycle
                                }
                            }
                        })
                        .collect()
                })
                .collect();
            let mut ll = LeadLag::new(STEP, LeadLagConfig::default());
            let mut ever = std::collections::BTreeSet::new();
            for t in 0..steps {
                feed(&mut ll, &world, t);
                for l in ll.leads() {
                    ever.insert((l.leader, l.follower));
                }
            }
            trusted_ever += ever.len();
            pairs += n * (n - 1);
        }
        eprintln!(
            "lead-lag false positives: {trusted_ever} of {pairs} ordered pairs ({} seeds x {n} series x {steps} steps, half with a shared daily cycle)",
            seeds
        );
        assert_eq!(trusted_ever, 0);
    }

    #[test]
    fn a_relationship_that_ends_is_forgotten() {
        let steps = 2000;
        let world = follow_world(5, steps, 2);
        let mut ll = LeadLag::new(STEP, LeadLagConfig::default());
        for t in 0..steps {
            feed(&mut ll, &world, t);
        }
        assert_eq!(ll.leads().len(), 1);
        // From now on B is its own walk.
        let mut rng = Rng(99);
        let mut b = world[1][steps - 1];
        let mut other = world.clone();
        for s in &mut other {
            s.clear();
        }
        let more = 3000;
        let mut a = world[0][steps - 1];
        for _ in 0..more {
            a += rng.normal();
            b += rng.normal();
            other[0].push(a);
            other[1].push(b);
            other[2].push(10.0 + rng.normal());
            other[3].push(10.0 + rng.normal());
        }
        let mut gone_at = None;
        for t in 0..more {
            let obs: Vec<(SeriesKey, f64)> = other
                .iter()
                .enumerate()
                .map(|(i, s)| (key(&format!("s{i}")), s[t]))
                .collect();
            ll.update((steps + t) as i64 * STEP, &obs);
            if gone_at.is_none() && ll.leads().is_empty() {
                gone_at = Some(t);
            }
        }
        let gone_at = gone_at.expect("the relationship is dropped");
        assert!(gone_at < 1500, "dropped after {gone_at} steps");
    }

    #[test]
    fn state_round_trips_and_series_come_and_go() {
        let world = follow_world(3, 1200, 2);
        let mut ll = LeadLag::new(STEP, LeadLagConfig::default());
        for t in 0..1200 {
            feed(&mut ll, &world, t);
        }
        assert_eq!(ll.len(), 4);
        let lead = ll.leader_of(&key("s1")).expect("trusted by now");
        let bytes = postcard::to_stdvec(&ll).unwrap();
        let mut back: LeadLag = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.leader_of(&key("s1")), Some(lead.clone()));
        // JSON keeps the relationships (its floats may differ in the last digit).
        let json: LeadLag = serde_json::from_str(&serde_json::to_string(&ll).unwrap()).unwrap();
        let shape = |l: Vec<Lead>| -> Vec<(SeriesKey, SeriesKey, usize)> {
            l.into_iter()
                .map(|l| (l.leader, l.follower, l.lag))
                .collect()
        };
        assert_eq!(shape(json.leads()), shape(ll.leads()));
        // Updates after loading use the rebuilt index (no duplicate series).
        let obs = [(key("s0"), 1.0), (key("s1"), 2.0)];
        back.update(1200 * STEP, &obs);
        assert_eq!(back.len(), 4);
        // Removing a distractor keeps the relationship; removing the leader ends it.
        assert!(back.remove(&key("s3")));
        assert_eq!(back.len(), 3);
        assert_eq!(back.leader_of(&key("s1")).map(|l| l.lag), Some(3));
        assert!(back.remove(&key("s0")));
        assert_eq!(back.leader_of(&key("s1")), None);
        assert!(!back.remove(&key("s0")));
        // A new series joins.
        back.update(1201 * STEP, &[(key("new"), 1.0)]);
        assert_eq!(back.len(), 3);
        eprintln!(
            "lead-lag state: {} bytes as postcard for 4 series",
            bytes.len()
        );
    }

    #[test]
    fn adjust_shifts_the_table_and_keeps_it_valid() {
        let world = follow_world(3, 1200, 0);
        let mut ll = LeadLag::new(STEP, LeadLagConfig::default());
        for t in 0..1200 {
            feed(&mut ll, &world, t);
        }
        let b = key("s1");
        let adj = ll.adjustment(&b, 5).unwrap();
        // Held after `lag` steps.
        assert_eq!(adj.shifts[2], adj.shifts[3]);
        assert_eq!(adj.shifts[2], adj.shifts[4]);
        let levels = [0.1, 0.5, 0.9];
        let mut values: Vec<f64> = (0..5).flat_map(|_| [0.0, 0.5, 1.0]).collect();
        let used = ll.adjust(&b, &levels, &mut values).unwrap();
        assert_eq!(used.shifts, adj.shifts);
        for (row, s) in values.chunks(3).zip(&adj.shifts) {
            assert!(row[0] >= 0.0 && row[0] <= row[1] && row[1] <= row[2]);
            assert!((row[2] - (1.0 + s).max(0.0)).abs() < 1e-12);
        }
        // The leader has no leader: nothing to do.
        let mut untouched = vec![1.0, 2.0, 3.0];
        assert!(ll.adjust(&key("s0"), &levels, &mut untouched).is_none());
        assert_eq!(untouched, [1.0, 2.0, 3.0]);
        // A table starting one step later gets the shifts from step 1 on;
        // far later, the held shift.
        let last = 1199 * STEP;
        let mut later: Vec<f64> = (0..4).flat_map(|_| [0.0, 0.5, 1.0]).collect();
        let used = ll
            .adjust_from(&b, last + 2 * STEP, &levels, &mut later)
            .unwrap();
        assert_eq!(used.shifts, adj.shifts[1..5]);
        let mut next: Vec<f64> = (0..5).flat_map(|_| [0.0, 0.5, 1.0]).collect();
        let same = ll.adjust_from(&b, last + STEP, &levels, &mut next).unwrap();
        assert_eq!(same.shifts, adj.shifts);
        let mut far = vec![0.0, 0.5, 1.0];
        let held = ll
            .adjust_from(&b, last + 1000 * STEP, &levels, &mut far)
            .unwrap();
        assert_eq!(held.shifts, [adj.shifts[4]]);
    }

    proptest! {
        #[test]
        fn any_input_is_survived(
            obs in prop::collection::vec((0usize..4, prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -1e300f64..1e300, -10.0f64..10.0], -3i64..4), 0..400),
        ) {
            let config = LeadLagConfig { min_samples: 5, stable_steps: 2, warmup: 2, ..LeadLagConfig::default() };
            let mut ll = LeadLag::new(STEP, config);
            let mut ts = 0i64;
            for (i, v, dt) in obs {
                ts += dt * STEP / 2;
                ll.update(ts, &[(key(&format!("s{i}")), v), (key("x"), v * 0.5)]);
                let _ = ll.leads();
                let mut table = vec![0.0, 1.0, 2.0, 3.0];
                if let Some(a) = ll.adjust(&key("x"), &[0.5, 0.9], &mut table) {
                    prop_assert_eq!(a.shifts.len(), 2);
                }
                prop_assert!(table[0] <= table[1] && table[2] <= table[3]);
            }
        }
    }
}
