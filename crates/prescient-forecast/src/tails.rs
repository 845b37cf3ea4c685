//! Tail curves and a violation budget: each workload's one-step demand
//! distribution, learned online from its own history and its host's, and
//! the allocation that distribution buys at a price for violations. The
//! replay simulator's `prescient` policy and the live agent both size
//! workloads with it, so what a replay measures is what the agent does.
//!
//! # Why a budget and not a per-workload quantile
//!
//! Replay scores a policy on the share of (workload, step) pairs whose
//! demand exceeds their allocation, and on the slack summed over all of
//! them. Giving every workload the same quantile spends the violation
//! budget evenly, though a unit of violation probability buys very
//! different savings on different workloads (a flat workload's 0.999
//! quantile is barely above its median; a bursty one's is far above). The
//! best split of a budget is Lagrangian: for a price `λ` (allocation per
//! unit of exceedance probability), each workload takes the allocation `a`
//! minimising `a + λ P(D > a)` on its tail curve, so that every workload's
//! marginal saving per unit of probability is the same.
//!
//! # The loop, per host and step
//!
//! 1. **Tail curves.** Each expert gives every workload a curve: its
//!    allocation at each exceedance probability of a fixed grid
//!    ([`EXCEEDANCE`]). Experts: the workload's own empirical history
//!    ([`Expert::Own`]), a distribution of it that forgets
//!    ([`Expert::Decayed`]), and a ratio to the workload's recent maximum
//!    whose distribution is pooled over the host's workloads
//!    ([`Expert::PooledRatio`]: a tail seen once on any workload is
//!    priced for all). Past the data, tails extrapolate exponentially.
//! 2. **Price.** By default ([`Budget::Price`]) the knob (an SLO quantile)
//!    sets one price for the whole run, [`price_of`] the knob and the
//!    host's mean demand: a steady price lets the budget go to the
//!    (workload, step) pairs where cover is cheapest, which is what the
//!    trace-wide score rewards. Higher knobs buy fewer violations, but the
//!    realised violation share is not one minus the knob.
//!    [`Budget::Share`] keeps that meaning instead: its price is the one at
//!    which the host's predicted violations sum to `m (1 - q)`, with the
//!    curves' tails calibrated by the ratio of realised to predicted
//!    violations, averaged over a day; it is calibrated per host, and
//!    costs slack (gcd memory slack@1%: 5.4% against 3.8%) because every
//!    host is held to the same share.
//! 3. **Expert choice.** Each expert's allocation at each knob is scored
//!    after the fact by its Lagrangian cost, `Σ a + λ × violations`
//!    (decayed), and each knob uses the expert with the lowest cost — the
//!    quantity the replay's slack-at-violation score trades off.
//! 4. **Contention** is not split here: the curves of
//!    [`HostTails::contended_expert`] become the partition solver's demand
//!    profiles (the replay policy and the agent each build that problem).
//!
//! Everything is causal: step `t`'s allocations use demands up to `t - 1`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, LazyLock, Mutex};

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

/// A day in milliseconds, the experts' default cost half-life.
const DAY_MS: i64 = 86_400_000;

/// Pseudo-violations (at a realised/predicted ratio of 1) of the tail
/// calibration's prior.
const CALIBRATION_PRIOR: f64 = 2.0;

/// Number of points of a tail curve.
pub const NP: usize = 72;

/// Exceedance probabilities of the points of every tail curve, decreasing:
/// a few coarse points for the body, then geometric (x0.85) from 0.6 down
/// to about 1e-5, where 1 - 0.85 of a step keeps the Lagrangian choice fine
/// enough.
pub static EXCEEDANCE: LazyLock<[f64; NP]> = LazyLock::new(|| {
    let mut p = [0.0; NP];
    let body = [0.95, 0.9, 0.8, 0.7];
    p[..body.len()].copy_from_slice(&body);
    for (i, v) in p[body.len()..].iter_mut().enumerate() {
        *v = 0.6 * 0.85f64.powi(i as i32);
    }
    p
});

/// Where a tail curve comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Expert {
    /// The workload's own last `steps` demands.
    Own {
        /// Steps of history kept.
        steps: usize,
    },
    /// Demand over the workload's maximum of the last `window_ms`, with the
    /// distribution of that ratio pooled over the host's workloads.
    PooledRatio {
        /// Length of the recent maximum.
        window_ms: i64,
        /// Host steps of pooled ratios kept.
        steps: usize,
    },
    /// The workload's own recent demands, each weighted `2^(-age /
    /// half_life)`: follows a drifting level faster than [`Expert::Own`]
    /// while still reading a whole distribution.
    Decayed {
        /// Half-life of a demand's weight.
        half_life_ms: i64,
        /// Steps of history kept (older ones weigh almost nothing), at
        /// most [`MAX_WINDOW`].
        steps: usize,
    },
}

/// How the knob sets a host's price of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Budget {
    /// The price at which the host's calibrated predicted violation share
    /// is one minus the knob, averaged (in log) over the past day: a price
    /// that held every step's predicted share to the target would spend
    /// the budget evenly over time, though some steps are much cheaper to
    /// cover than others; a steady price lets them differ.
    Share,
    /// A fixed price, [`price_of`] the knob and the host's mean demand so
    /// far: one price for every step, so that the budget goes to the
    /// (workload, step) pairs where cover is cheapest.
    Price,
}

/// The price of a violation for knob `q` on a host whose mean demand is
/// `scale`: `0.1 x scale x (q / (1 - q))^1.5`, from 0.1 x scale at q = 0.5
/// to 1e5 x scale at q = 0.9999. Increasing in `q`; the exponent spreads
/// the sweep over violation shares from tens of percent to 0.01%.
pub fn price_of(q: f64, scale: f64) -> f64 {
    let q = if q.is_finite() {
        q.clamp(0.0, 0.99999)
    } else {
        0.95
    };
    0.1 * scale * (q / (1.0 - q)).powf(1.5)
}

/// Which experts compete, how the knob prices violations, and how fast
/// costs forget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TailConfig {
    /// The experts whose tail curves compete.
    pub experts: Vec<Expert>,
    /// How the knob sets each host's price.
    pub budget: Budget,
    /// Half-life of the experts' costs.
    pub cost_half_life_ms: i64,
    /// The expert whose curves are the solver's profiles in contended
    /// runs (it does not compete for uncontended allocations); `None`:
    /// each knob's chosen expert.
    ///
    /// Contention and right-sizing want different curves. A right-sizing
    /// allocation sits in a tail, where a long own history and host-pooled
    /// ratios price rare jumps best; a contended split sits in the body
    /// (planetlab at 4.5 cores runs at 86% of capacity on average), where
    /// what counts is the workload's current level. PlanetLab's 5-minute
    /// CPU is nearly white noise around a drifting level (median lag-1
    /// autocorrelation 0.04), so conditioning on the last value or the
    /// recent maximum loses (unmet 19.8% and 17.7-22.3% at 4.5 cores
    /// against 15.5% for the whole own history), while a distribution
    /// that forgets with a one-hour half-life gains (14.5%; half-lives of
    /// 30 min and 2 h: 14.7% and 14.6%; the whole day in hindsight, not
    /// causal: 14.95%; each workload's distribution over the two hours
    /// around each step, future included: 14.2%).
    pub contended_expert: Option<usize>,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            experts: vec![
                Expert::Own { steps: 7 * 288 },
                Expert::PooledRatio {
                    window_ms: 1_800_000,
                    steps: 7 * 288,
                },
                Expert::PooledRatio {
                    window_ms: 4 * 3_600_000,
                    steps: 7 * 288,
                },
                // Contended hosts only: see `contended_expert`.
                Expert::Decayed {
                    half_life_ms: 3_600_000,
                    steps: 240,
                },
            ],
            budget: Budget::Price,
            cost_half_life_ms: DAY_MS,
            contended_expert: Some(3),
        }
    }
}

impl TailConfig {
    /// What a live planner needs: only the curves that split a capacity
    /// ([`TailConfig::contended_expert`] of the default, a distribution
    /// that forgets with a one-hour half-life), for series observed every
    /// `step_ms`. The agent and the Kubernetes controller always plan with
    /// a capacity, so the other experts' right-sizing allocations would go
    /// unused. The window keeps 8 hours (eight half-lives: what is older
    /// weighs under 0.4%), within 240 steps (20 hours at 5-minute steps, as
    /// the default keeps) and 4,096 (a bound on memory and on saved state
    /// at short steps).
    pub fn for_planning(step_ms: i64) -> Self {
        let steps = (8 * 3_600_000 / step_ms.max(1)).clamp(240, 4_096) as usize;
        TailConfig {
            experts: vec![Expert::Decayed {
                half_life_ms: 3_600_000,
                steps,
            }],
            budget: Budget::Price,
            cost_half_life_ms: DAY_MS,
            contended_expert: Some(0),
        }
    }

    /// The levels of demand profiles built from curves: one minus
    /// [`EXCEEDANCE`], increasing.
    pub fn levels() -> Vec<f64> {
        EXCEEDANCE.iter().map(|p| 1.0 - p).collect()
    }
}

/// The last `cap` values, in arrival order and sorted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SortedWindow {
    cap: usize,
    order: VecDeque<f64>,
    sorted: Vec<f64>,
}

impl SortedWindow {
    fn new(cap: usize) -> Self {
        SortedWindow {
            cap: cap.max(1),
            order: VecDeque::new(),
            sorted: Vec::new(),
        }
    }

    fn push(&mut self, v: f64) {
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            let i = self.sorted.partition_point(|&x| x < old);
            if i < self.sorted.len() {
                self.sorted.remove(i);
            }
        }
        self.order.push_back(v);
        let i = self.sorted.partition_point(|&x| x <= v);
        self.sorted.insert(i, v);
    }

    /// Values at the exceedance probabilities `ps` (decreasing) into `out`.
    fn curve(&self, ps: &[f64], floor: f64, out: &mut [f64]) {
        let s = &self.sorted;
        let n = s.len();
        if n == 0 {
            out.iter_mut().for_each(|o| *o = 0.0);
            return;
        }
        let nf = n as f64;
        // Plotting position: the k-th smallest (0-based) of n is exceeded by
        // a new value with probability about (n - k - 0.5) / (n + 1).
        let at = |p: f64| -> f64 {
            let pos = nf - 0.5 - p * (nf + 1.0);
            if pos <= 0.0 {
                return s[0];
            }
            let i = pos.floor() as usize;
            if i + 1 >= n {
                return s[n - 1];
            }
            let t = pos - i as f64;
            s[i] + (s[i + 1] - s[i]) * t
        };
        let p_top = 0.5 / (nf + 1.0);
        let max = s[n - 1];
        // Past its maximum, a workload's tail grows by at least `floor` per
        // e-fold (a workload idle so far can still wake up).
        let slope = tail_slope(max, at((10.0 * p_top).min(0.5))).max(floor);
        for (o, &p) in out.iter_mut().zip(ps) {
            *o = if p >= p_top {
                at(p)
            } else {
                extrapolate(max, slope, p_top / p)
            };
        }
    }
}

/// The last `cap` values, sorted, each weighted `decay^age` (age in
/// pushes): a weighted empirical distribution that forgets smoothly.
///
/// A live planner holds one per container and resource, so it is kept
/// small: values and their push numbers in two arrays (10 bytes a value
/// rather than 16 for `(f64, u64)` pairs), grown up to `cap` and no
/// further, and the weights of [`DecayedWindow::curve`] in the caller's
/// scratch. Push numbers wrap at 2^16: an age is a difference of less
/// than `cap` pushes, and `cap` is at most [`MAX_WINDOW`], so wrapping
/// never confuses two of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "SavedWindow", from = "SavedWindow")]
struct DecayedWindow {
    cap: usize,
    decay: f64,
    /// Pushes so far (wrapping); a value's age is `seq - its seq - 1`.
    seq: u16,
    /// The values, sorted (equal ones in push order).
    values: Vec<f64>,
    /// `seqs[i]`: the push number of `values[i]`.
    seqs: Vec<u16>,
    /// `decay^age` for every age in the window (shared).
    pow: Arc<[f64]>,
}

/// `decay^age` for ages `0..cap`, one table shared by every window of the
/// same decay and length: reading it is several times cheaper than
/// `powi`, whose values it holds bit for bit. Tables are kept for the
/// life of the process (one per configuration in use; at most 64 KiB
/// each at the largest planning window).
fn decay_table(decay: f64, cap: usize) -> Arc<[f64]> {
    type Tables = HashMap<(u64, usize), Arc<[f64]>>;
    static TABLES: LazyLock<Mutex<Tables>> = LazyLock::new(Mutex::default);
    // A poisoned lock only means another thread panicked while inserting
    // a complete table: the map is still sound.
    let mut tables = TABLES.lock().unwrap_or_else(|e| e.into_inner());
    tables
        .entry((decay.to_bits(), cap))
        .or_insert_with(|| (0..cap).map(|a| decay.powi(a as i32)).collect())
        .clone()
}

/// The largest window a [`DecayedWindow`] keeps (push numbers are 16-bit):
/// at any half-life of a few steps or more, values that old weigh nothing.
pub const MAX_WINDOW: usize = u16::MAX as usize;

/// Makes room for one more element in `v`, growing geometrically but
/// never beyond `cap` (a `Vec` left to itself would reach the next power
/// of two).
fn reserve_up_to<T>(v: &mut Vec<T>, cap: usize) {
    let n = v.len();
    if n == v.capacity() {
        let want = (2 * n).clamp(8, cap.max(n + 1));
        v.reserve_exact(want - n);
    }
}

impl DecayedWindow {
    fn new(cap: usize, decay: f64) -> Self {
        let cap = cap.clamp(1, MAX_WINDOW);
        let decay = decay.clamp(1e-9, 1.0);
        DecayedWindow {
            cap,
            decay,
            seq: 0,
            values: Vec::new(),
            seqs: Vec::new(),
            pow: decay_table(decay, cap),
        }
    }

    fn push(&mut self, v: f64) {
        if self.values.len() == self.cap {
            // The oldest value has seq `self.seq - cap`.
            // (`cap` <= MAX_WINDOW fits in 16 bits.)
            let old = self.seq.wrapping_sub(self.cap as u16);
            if let Some(i) = self.seqs.iter().position(|&q| q == old) {
                self.values.remove(i);
                self.seqs.remove(i);
            }
        }
        let i = self.values.partition_point(|&x| x <= v);
        reserve_up_to(&mut self.values, self.cap);
        reserve_up_to(&mut self.seqs, self.cap);
        self.values.insert(i, v);
        self.seqs.insert(i, self.seq);
        self.seq = self.seq.wrapping_add(1);
    }

    /// Values at the exceedance probabilities `ps` (decreasing) into `out`:
    /// the weighted plotting position, and past the top the tail of
    /// [`SortedWindow::curve`] (which this is, without decay). `weights` is
    /// scratch.
    fn curve(&self, ps: &[f64], floor: f64, out: &mut [f64], weights: &mut Vec<f64>) {
        let n = self.values.len();
        if n == 0 {
            out.iter_mut().for_each(|o| *o = 0.0);
            return;
        }
        weights.clear();
        let mut total = 0.0;
        for &q in &self.seqs {
            let age = self.seq.wrapping_sub(q).wrapping_sub(1) as usize;
            // Ages are below `cap`, the table's length.
            let w = match self.pow.get(age) {
                Some(&w) => w,
                None => self.decay.powi(age as i32),
            };
            weights.push(w);
            total += w;
        }
        // A new value would weigh 1: the plotting position of
        // `SortedWindow::curve`, (weight above + half its own) / (total + 1).
        let mut walk = Walk {
            s: &self.values,
            w: weights,
            total,
            denom: total + 1.0,
            i: 0,
            below: 0.0,
        };
        let exceed_top = 0.5 * walk.w[n - 1] / walk.denom;
        let max = walk.s[n - 1];
        let slope = {
            let mut probe = walk.clone();
            tail_slope(max, probe.value_at((10.0 * exceed_top).min(0.5))).max(floor)
        };
        for (o, &p) in out.iter_mut().zip(ps) {
            *o = if p < exceed_top {
                extrapolate(max, slope, exceed_top / p)
            } else {
                walk.value_at(p)
            };
        }
    }
}

/// A [`DecayedWindow`] as saved: its values, their push numbers and the
/// count of pushes (the weights' table follows from the decay and cap).
#[derive(Serialize, Deserialize)]
struct SavedWindow {
    cap: usize,
    decay: f64,
    seq: u16,
    values: Vec<f64>,
    seqs: Vec<u16>,
}

impl From<DecayedWindow> for SavedWindow {
    fn from(w: DecayedWindow) -> Self {
        SavedWindow {
            cap: w.cap,
            decay: w.decay,
            seq: w.seq,
            values: w.values,
            seqs: w.seqs,
        }
    }
}

impl From<SavedWindow> for DecayedWindow {
    fn from(s: SavedWindow) -> Self {
        let mut w = DecayedWindow::new(s.cap, s.decay);
        w.seq = s.seq;
        // Saved state that does not add up (values and push numbers of
        // different lengths, more than the cap, unsorted) keeps only the
        // pairs that do, re-sorted, rather than failing the whole host.
        let n = s.values.len().min(s.seqs.len()).min(w.cap);
        let mut pairs: Vec<(f64, u16)> = s.values[..n]
            .iter()
            .copied()
            .zip(s.seqs[..n].iter().copied())
            .filter(|(v, _)| v.is_finite())
            .collect();
        let age = |q: u16| s.seq.wrapping_sub(q).wrapping_sub(1);
        // By value, then oldest first (the order pushes keep).
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(age(b.1).cmp(&age(a.1))));
        w.values = pairs.iter().map(|p| p.0).collect();
        w.seqs = pairs.iter().map(|p| p.1).collect();
        w
    }
}

/// A cursor over a weighted sorted window: the exceedance of point `i`
/// falls as `i` rises, so asking for falling exceedances walks up once.
#[derive(Clone)]
struct Walk<'a> {
    s: &'a [f64],
    w: &'a [f64],
    total: f64,
    denom: f64,
    /// The current point and the weight strictly below it.
    i: usize,
    below: f64,
}

impl Walk<'_> {
    fn exceedance(&self, below: f64, i: usize) -> f64 {
        (self.total - below - 0.5 * self.w[i]) / self.denom
    }

    /// The value exceeded with probability `p`, linear between points;
    /// `p` must not rise between calls.
    fn value_at(&mut self, p: f64) -> f64 {
        let n = self.s.len();
        while self.i + 1 < n && self.exceedance(self.below + self.w[self.i], self.i + 1) >= p {
            self.below += self.w[self.i];
            self.i += 1;
        }
        let i = self.i;
        let e0 = self.exceedance(self.below, i);
        if i + 1 >= n || e0 <= p {
            return self.s[i];
        }
        let e1 = self.exceedance(self.below + self.w[i], i + 1);
        let t = ((e0 - p) / (e0 - e1)).clamp(0.0, 1.0);
        self.s[i] + (self.s[i + 1] - self.s[i]) * t
    }
}

/// A tail's value `fold` times further out than its maximum (`fold > 1`):
/// exponential (`slope` per e-fold) times a mild power law, so that very
/// high prices can still buy cover against the jumps of workloads whose
/// history never showed one.
fn extrapolate(max: f64, slope: f64, fold: f64) -> f64 {
    (max + slope * fold.ln()) * fold.powf(TAIL_POWER)
}

/// The power-law part of [`extrapolate`].
const TAIL_POWER: f64 = 0.25;

/// The slope (value per e-fold of exceedance probability) of an exponential
/// tail through `max` (at `p_top`) and `below` (at `10 p_top`), floored so a
/// flat history still grows past its maximum.
fn tail_slope(max: f64, below: f64) -> f64 {
    ((max - below) / std::f64::consts::LN_10).max(0.02 * max.abs())
}

/// A sliding-window histogram of positive ratios on a log scale: constant
/// time to add, one pass for a whole tail curve. Pools ratios from every
/// workload of a host, which a sorted window could not hold cheaply.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogHist {
    counts: Vec<u32>,
    order: VecDeque<u32>,
    cap: usize,
}

/// Smallest ratio resolved; at or below it a ratio counts as 0.
const HIST_MIN: f64 = 1e-3;
/// Bin width in log ratio: 0.2%.
const HIST_WIDTH: f64 = 0.002;
/// Bins: ratios from 1e-3 to 1e3, and bin 0 for smaller ones.
const HIST_BINS: usize = 1 + 6908;

impl LogHist {
    fn new(cap: usize) -> Self {
        LogHist {
            counts: vec![0; HIST_BINS],
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn bin(r: f64) -> usize {
        if r <= HIST_MIN || r.is_nan() {
            return 0;
        }
        let b = ((r / HIST_MIN).ln() / HIST_WIDTH).floor() as usize + 1;
        b.min(HIST_BINS - 1)
    }

    /// The upper edge of bin `b` (0 for bin 0).
    fn edge(b: usize) -> f64 {
        if b == 0 {
            0.0
        } else {
            HIST_MIN * (b as f64 * HIST_WIDTH).exp()
        }
    }

    fn push(&mut self, r: f64) {
        if self.order.len() == self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.counts[old as usize] -= 1;
        }
        let b = Self::bin(r);
        self.counts[b] += 1;
        self.order.push_back(b as u32);
    }

    /// Ratios at the exceedance probabilities `ps` (decreasing) into `out`,
    /// with the plotting position of [`SortedWindow::curve`], linear within
    /// a bin.
    fn curve(&self, ps: &[f64], out: &mut [f64]) {
        let n = self.order.len();
        if n == 0 {
            out.iter_mut().for_each(|o| *o = 1.0);
            return;
        }
        let nf = n as f64;
        let top = self.counts.iter().rposition(|&c| c > 0).unwrap_or(0);
        let max = Self::edge(top);
        let p_top = 0.5 / (nf + 1.0);
        // The value with a fractional `g` values above it, walking down
        // from the top bin (once, for the tail's slope).
        let below = {
            let g = (10.0 * p_top).min(0.5) * (nf + 1.0) - 0.5;
            let (mut b, mut above) = (top, 0.0);
            loop {
                let c = self.counts[b] as f64;
                if b == 0 {
                    break 0.0;
                }
                if above + c > g {
                    let frac = ((g - above) / c).clamp(0.0, 1.0);
                    let hi = Self::edge(b);
                    let lo = if b == 1 { HIST_MIN } else { Self::edge(b - 1) };
                    break hi - (hi - lo) * frac;
                }
                above += c;
                b -= 1;
            }
        };
        let slope = tail_slope(max, below);
        // `value_at` only walks down, so ask in increasing g: `ps` is
        // decreasing, so go backwards.
        let mut b2 = top;
        let mut above2 = 0.0;
        for (o, &p) in out.iter_mut().zip(ps).rev() {
            if p < p_top {
                // Pooled ratios have seen every workload's jumps: an
                // exponential tail is enough.
                *o = max + slope * (p_top / p).ln();
                continue;
            }
            let g = p * (nf + 1.0) - 0.5;
            *o = loop {
                let c = self.counts[b2] as f64;
                if b2 == 0 {
                    break 0.0;
                }
                if above2 + c > g {
                    let frac = ((g - above2) / c).clamp(0.0, 1.0);
                    let hi = Self::edge(b2);
                    let lo = if b2 == 1 {
                        HIST_MIN
                    } else {
                        Self::edge(b2 - 1)
                    };
                    break hi - (hi - lo) * frac;
                }
                above2 += c;
                b2 -= 1;
            };
        }
    }
}

/// What one workload's experts remember.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SeriesMem {
    own: Vec<SortedWindow>,
    /// Per expert: the decayed window of a `Decayed` expert (empty otherwise).
    decayed: Vec<DecayedWindow>,
    /// Recent demands, for the pooled-ratio experts' bases (longest window).
    recent: VecDeque<f64>,
    /// The base each pooled-ratio expert used at the last allocation.
    bases: Vec<f64>,
    seen: usize,
}

/// One workload's memory on a host ([`HostTails::take_series`]), to carry
/// it to another host ([`HostTails::put_series`]).
#[derive(Debug, Clone)]
pub struct SeriesTails(SeriesMem);

impl SeriesTails {
    /// How many demands it has learnt from.
    pub fn observations(&self) -> usize {
        self.0.seen
    }
}

/// The lower convex hull of a curve `(p_h, c_h)`, for `min c + λ p`:
/// vertex indices and the price at which each vertex takes over from the
/// one before (increasing).
#[derive(Debug, Clone, Copy)]
struct Hull {
    len: u8,
    idx: [u8; NP],
    thr: [f64; NP],
}

impl Hull {
    fn empty() -> Self {
        Hull {
            len: 0,
            idx: [0; NP],
            thr: [0.0; NP],
        }
    }

    /// Builds the hull of `c` over [`EXCEEDANCE`] (p decreasing, c
    /// non-decreasing along the curve).
    fn build(&mut self, c: &[f64; NP]) {
        let p = &*EXCEEDANCE;
        let mut len = 0usize;
        for h in 0..NP {
            // With equal allocations the lower probability wins outright.
            while len > 0 && c[self.idx[len - 1] as usize] >= c[h] {
                len -= 1;
            }
            while len >= 2 {
                let a = self.idx[len - 2] as usize;
                let b = self.idx[len - 1] as usize;
                // b is above the chord a-h: drop it.
                let s_ab = (c[b] - c[a]) / (p[a] - p[b]);
                let s_ah = (c[h] - c[a]) / (p[a] - p[h]);
                if s_ab >= s_ah {
                    len -= 1;
                } else {
                    break;
                }
            }
            self.idx[len] = h as u8;
            self.thr[len] = if len == 0 {
                0.0
            } else {
                let a = self.idx[len - 1] as usize;
                (c[h] - c[a]) / (p[a] - p[h])
            };
            len += 1;
        }
        self.len = len as u8;
    }

    /// The vertex (curve index) minimising `c + λ p`.
    fn pick(&self, lambda: f64) -> usize {
        let n = self.len as usize;
        if n == 0 {
            return 0;
        }
        let k = self.thr[1..n].partition_point(|&t| t <= lambda);
        self.idx[k] as usize
    }
}

/// One host's tail curves: every series' memory under every expert, the
/// curves and hulls of the last [`HostTails::allocate`], the prices and
/// the experts' costs. Pure: fed demands, it hands out allocations.
///
/// It serialises (serde) with what it learnt and without what
/// [`HostTails::allocate`] rebuilds: a restored host gives the same
/// allocations as one that ran through.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostTails {
    config: TailConfig,
    knobs: Vec<f64>,
    /// Target violation share per knob.
    taus: Vec<f64>,
    /// Steps in each pooled-ratio expert's recent window (0 for `Own`).
    base_steps: Vec<usize>,
    series: Vec<SeriesMem>,
    /// A new series' memory, for [`HostTails::add_series`].
    fresh: SeriesMem,
    pools: Vec<Option<LogHist>>,
    /// `curves[(e * n + s)]`: series s's curve under expert e (rebuilt by
    /// every allocation, so not saved).
    #[serde(skip)]
    curves: Vec<[f64; NP]>,
    /// Laid out as `curves`, but empty until the first
    /// [`HostTails::allocate`]: a planner that only reads curves
    /// ([`HostTails::refresh_curves`]) never needs them.
    #[serde(skip)]
    hulls: Vec<Hull>,
    /// Scratch for the weights of decayed windows.
    #[serde(skip)]
    weights: Vec<f64>,
    /// Decayed realised violations and predicted violations (the sum of
    /// the exceedance probabilities of the allocations made) per (knob,
    /// expert): their ratio calibrates the curves' tails.
    vsum: Vec<f64>,
    psum: Vec<f64>,
    /// `phyp[(s * k + j) * E + e]`: the exceedance probability of `hyp`'s
    /// allocation on its curve.
    phyp: Vec<f64>,
    /// Host steps observed, to start calibrating after the warm-up.
    steps_seen: usize,
    warmup_steps: usize,
    calib_decay: f64,
    /// Smoothed `log λ*` per (knob, expert), with its count of steps and
    /// the forgetting rate once past it.
    log_price: Vec<f64>,
    price_n: Vec<f64>,
    price_rate: f64,
    /// The price used at the last allocation per (knob, expert).
    lambda: Vec<f64>,
    /// Decayed Lagrangian cost per (knob, expert).
    cost: Vec<f64>,
    /// `hyp[(s * k + j) * E + e]`: the allocation expert e gave series s at
    /// knob j at the last allocation.
    hyp: Vec<f64>,
    cost_decay: f64,
    /// Sum and count of all demands seen, for the host's scale.
    demand_sum: f64,
    demand_count: f64,
    last_ts: Option<TimestampMs>,
    #[serde(skip)]
    breaks: Vec<(f64, f64)>,
}

impl HostTails {
    /// Tails for `series` series observed every `step_ms`, scored after
    /// `warmup_steps` steps, allocating at each of `knobs` (SLO quantiles).
    pub fn new(
        config: TailConfig,
        series: usize,
        step_ms: i64,
        warmup_steps: usize,
        knobs: &[f64],
    ) -> Self {
        let policy = config;
        let n = series;
        let k = knobs.len();
        let step_ms = step_ms.max(1);
        let ne = policy.experts.len().max(1);
        let base_steps: Vec<usize> = policy
            .experts
            .iter()
            .map(|e| match e {
                Expert::Own { .. } | Expert::Decayed { .. } => 0,
                Expert::PooledRatio { window_ms, .. } => {
                    ((*window_ms as f64 / step_ms as f64).round() as usize).max(1)
                }
            })
            .collect();
        let longest = base_steps.iter().copied().max().unwrap_or(0);
        let pools = policy
            .experts
            .iter()
            .map(|e| match e {
                Expert::Own { .. } | Expert::Decayed { .. } => None,
                Expert::PooledRatio { steps, .. } => Some(LogHist::new(steps * n.max(1))),
            })
            .collect();
        let mem = SeriesMem {
            own: policy
                .experts
                .iter()
                .map(|e| match e {
                    Expert::Own { steps } => SortedWindow::new(*steps),
                    Expert::PooledRatio { .. } | Expert::Decayed { .. } => SortedWindow::new(1),
                })
                .collect(),
            decayed: policy
                .experts
                .iter()
                .map(|e| match e {
                    Expert::Decayed {
                        half_life_ms,
                        steps,
                    } => DecayedWindow::new(
                        *steps,
                        0.5f64.powf(step_ms as f64 / (*half_life_ms).max(1) as f64),
                    ),
                    _ => DecayedWindow::new(1, 1.0),
                })
                .collect(),
            // Without a pooled-ratio expert nothing is kept (see `observe`).
            recent: VecDeque::with_capacity(if longest > 0 { longest + 1 } else { 0 }),
            bases: vec![0.0; ne],
            seen: 0,
        };
        let half_life_steps = (policy.cost_half_life_ms as f64 / step_ms as f64).max(1.0);
        HostTails {
            taus: knobs
                .iter()
                .map(|q| {
                    if q.is_finite() {
                        (1.0 - q).clamp(1e-5, 0.99)
                    } else {
                        0.05
                    }
                })
                .collect(),
            knobs: knobs.to_vec(),
            base_steps,
            series: vec![mem.clone(); n],
            fresh: mem,
            pools,
            curves: vec![[0.0; NP]; ne * n],
            hulls: Vec::new(),
            weights: Vec::new(),
            vsum: vec![0.0; k * ne],
            psum: vec![0.0; k * ne],
            phyp: vec![0.0; n * k * ne],
            steps_seen: 0,
            warmup_steps,
            calib_decay: 0.5f64.powf(1.0 / half_life_steps),
            log_price: vec![0.0; k * ne],
            price_n: vec![0.0; k * ne],
            price_rate: 1.0 / (half_life_steps * std::f64::consts::LOG2_E),
            lambda: vec![0.0; k * ne],
            cost: vec![0.0; k * ne],
            hyp: vec![0.0; n * k * ne],
            cost_decay: 0.5f64.powf(1.0 / half_life_steps),
            demand_sum: 0.0,
            demand_count: 0.0,
            last_ts: None,
            breaks: Vec::new(),
            config: policy,
        }
    }

    fn experts(&self) -> usize {
        self.config.experts.len()
    }

    /// The host's typical demand, a floor for ratio bases and prices.
    fn scale(&self) -> f64 {
        if self.demand_count > 0.0 {
            (self.demand_sum / self.demand_count).max(1e-12)
        } else {
            1e-12
        }
    }

    /// The expert with the lowest cost at knob `j` (the first on a tie).
    /// The contended-only expert never wins; with no other, expert 0.
    fn chosen(&self, j: usize) -> usize {
        let ne = self.experts();
        let row = &self.cost[j * ne..(j + 1) * ne];
        let only = self.config.contended_expert.filter(|_| ne > 1);
        let mut best: Option<usize> = None;
        for e in 0..ne {
            if Some(e) != only && best.is_none_or(|b| row[e] < row[b]) {
                best = Some(e);
            }
        }
        best.unwrap_or(0)
    }

    /// Builds every present series' curve under every expert, and its hull
    /// when `hulls` (for the budget).
    fn build_curves(&mut self, present: &[usize], hulls: bool) {
        let n = self.series.len();
        if self.curves.len() != self.experts() * n {
            // Restored from saved state, which leaves them out.
            self.curves = vec![[0.0; NP]; self.experts() * n];
            self.hulls.clear();
        }
        let eps = 1e-2 * self.scale();
        let ps = &*EXCEEDANCE;
        if hulls && self.hulls.len() != self.curves.len() {
            self.hulls = vec![Hull::empty(); self.curves.len()];
        }
        for e in 0..self.experts() {
            match self.config.experts[e] {
                Expert::Own { .. } => {
                    for &s in present {
                        let mut c = [0.0; NP];
                        self.series[s].own[e].curve(ps, 5.0 * eps, &mut c);
                        self.curves[e * n + s] = c;
                    }
                }
                Expert::Decayed { .. } => {
                    for &s in present {
                        let mut c = [0.0; NP];
                        self.series[s].decayed[e].curve(ps, 5.0 * eps, &mut c, &mut self.weights);
                        self.curves[e * n + s] = c;
                    }
                }
                Expert::PooledRatio { .. } => {
                    let mut ratio = [0.0; NP];
                    if let Some(pool) = &self.pools[e] {
                        pool.curve(ps, &mut ratio);
                    }
                    let w = self.base_steps[e];
                    for &s in present {
                        let mem = &mut self.series[s];
                        let base = mem
                            .recent
                            .iter()
                            .rev()
                            .take(w)
                            .fold(0.0f64, |a, &b| a.max(b))
                            + eps;
                        mem.bases[e] = base;
                        let c = &mut self.curves[e * n + s];
                        for (ci, r) in c.iter_mut().zip(&ratio) {
                            *ci = base * r;
                        }
                    }
                }
            }
            for &s in present {
                let c = &mut self.curves[e * n + s];
                // Curves must not fall as the exceedance falls.
                for h in 1..NP {
                    // (NaN fails the comparison too and is replaced.)
                    if c[h].partial_cmp(&c[h - 1]) == Some(std::cmp::Ordering::Less)
                        || c[h].is_nan()
                    {
                        c[h] = c[h - 1];
                    }
                }
                for v in c.iter_mut() {
                    if !v.is_finite() || *v < 0.0 {
                        *v = 0.0;
                    }
                }
                if hulls {
                    let curve = *c;
                    self.hulls[e * n + s].build(&curve);
                }
            }
        }
    }

    /// Knob `j`'s target violation share in expert `e`'s terms: the curves'
    /// tails may be off (short histories, extrapolation), so the target is
    /// divided by the ratio of realised to predicted violations, with a
    /// prior worth `CALIBRATION_PRIOR` violations at ratio 1. A ratio
    /// rather than an integrator (adaptive conformal steps on the price)
    /// cannot wind up while histories are short.
    fn calibrated_tau(&self, j: usize, e: usize) -> f64 {
        let x = j * self.experts() + e;
        let ratio = (self.vsum[x] + CALIBRATION_PRIOR) / (self.psum[x] + CALIBRATION_PRIOR);
        (self.taus[j] / ratio.clamp(0.05, 20.0)).min(0.99)
    }

    /// The price at which the present series' predicted violations under
    /// expert `e` sum to `m τ`, for every knob (`out[j]`).
    fn predicted_prices(&mut self, e: usize, present: &[usize], out: &mut [f64]) {
        let n = self.series.len();
        let p = &*EXCEEDANCE;
        let floor = 1e-9 * self.scale();
        self.breaks.clear();
        let mut total = 0.0;
        for &s in present {
            let hull = &self.hulls[e * n + s];
            let len = hull.len as usize;
            if len == 0 {
                continue;
            }
            total += p[hull.idx[0] as usize];
            for h in 1..len {
                let dp = p[hull.idx[h - 1] as usize] - p[hull.idx[h] as usize];
                self.breaks.push((hull.thr[h], dp));
            }
        }
        self.breaks
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let m = present.len() as f64;
        // Knobs in any order: walk the breakpoints once per knob from where
        // the previous tighter target stopped would need sorted knobs; the
        // list is short, so search each.
        let mut cum = Vec::with_capacity(self.breaks.len());
        let mut t = total;
        for &(_, dp) in &self.breaks {
            t -= dp;
            cum.push(t);
        }
        for (j, o) in out.iter_mut().enumerate() {
            let target = m * self.calibrated_tau(j, e);
            let lam = if total <= target {
                floor
            } else {
                // First breakpoint after which the predicted total is within
                // the target.
                let i = cum.partition_point(|&c| c > target + 1e-12);
                if i < self.breaks.len() {
                    self.breaks[i].0
                } else {
                    self.breaks.last().map_or(floor, |b| b.0) * 2.0
                }
            };
            *o = lam.max(floor);
        }
    }

    /// Fills `out` (the replay's layout) with expert `chosen(j)`'s
    /// allocation at each knob, keeping every expert's in `hyp`.
    fn budget(&mut self, present: &[usize], out: &mut [f64]) {
        let n = self.series.len();
        let k = self.knobs.len();
        let ne = self.experts();
        let mut prices = vec![0.0; k];
        for e in 0..ne {
            match self.config.budget {
                Budget::Share => self.predicted_prices(e, present, &mut prices),
                Budget::Price => {
                    let scale = self.scale();
                    for (p, q) in prices.iter_mut().zip(&self.knobs) {
                        *p = price_of(*q, scale);
                    }
                }
            }
            for (j, &price) in prices.iter().enumerate() {
                let x = j * ne + e;
                let lam = match self.config.budget {
                    Budget::Share => {
                        // Running mean of log λ*, then exponential
                        // forgetting once a half-life's worth is seen.
                        // Before the warm-up ends histories are too short
                        // for their prices to stand for the host's: follow
                        // the current one and start averaging afterwards.
                        if self.steps_seen < self.warmup_steps {
                            self.price_n[x] = 0.0;
                        }
                        self.price_n[x] += 1.0;
                        let a = (1.0 / self.price_n[x]).max(self.price_rate);
                        self.log_price[x] += a * (price.max(1e-300).ln() - self.log_price[x]);
                        self.log_price[x].exp()
                    }
                    Budget::Price => price,
                };
                self.lambda[x] = lam;
                for &s in present {
                    let h = self.hulls[e * n + s].pick(lam);
                    self.hyp[(s * k + j) * ne + e] = self.curves[e * n + s][h];
                    self.phyp[(s * k + j) * ne + e] = EXCEEDANCE[h];
                }
            }
        }
        for j in 0..k {
            let e = self.chosen(j);
            for (i, &s) in present.iter().enumerate() {
                out[i * k + j] = self.hyp[(s * k + j) * ne + e];
            }
        }
    }

    /// Builds the curves of the `present` series and fills `out` with each
    /// knob's chosen expert's allocation: `out[i * k + j]` is series
    /// `present[i]` at knob `j` of `k`. Indices past the host's series are
    /// ignored.
    pub fn allocate(&mut self, present: &[usize], out: &mut [f64]) {
        let present: Vec<usize> = present
            .iter()
            .copied()
            .filter(|&s| s < self.series.len())
            .collect();
        self.build_curves(&present, true);
        self.budget(&present, out);
    }

    /// Builds the curves of the `present` series, and nothing else (no
    /// allocations, no hulls): for a planner that splits a capacity with
    /// the solver, the curves of [`HostTails::contended_expert`] as
    /// profiles, and reads them with [`HostTails::curve`]. Indices past
    /// the host's series are ignored.
    pub fn refresh_curves(&mut self, present: &[usize]) {
        let present: Vec<usize> = present
            .iter()
            .copied()
            .filter(|&s| s < self.series.len())
            .collect();
        self.build_curves(&present, false);
    }

    /// The timestamp of the last observed step.
    pub fn last_ts(&self) -> Option<TimestampMs> {
        self.last_ts
    }

    /// How many series the host has.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Adds a series that has seen nothing yet (a workload that appeared
    /// on a live host); returns its index.
    pub fn add_series(&mut self) -> usize {
        let n = self.series.len();
        if self.experts() == 1 {
            // One expert: the layouts by expert are by series, so the new
            // series' entries simply go last.
            let kn = self.knobs.len();
            self.curves.push([0.0; NP]);
            if !self.hulls.is_empty() {
                self.hulls.push(Hull::empty());
            }
            self.hyp.resize((n + 1) * kn, 0.0);
            self.phyp.resize((n + 1) * kn, 0.0);
        } else {
            let map: Vec<Option<usize>> = (0..n).map(Some).collect();
            self.relay(&map, n + 1);
        }
        self.series.push(self.fresh.clone());
        n
    }

    /// Re-lays the arrays kept per series (curves and hulls expert by
    /// expert, allocations series by series) for `new_n` series: old
    /// series `s` goes to `map[s]`, or is dropped when `None`; entries no
    /// old series maps to start empty. The series' memories themselves are
    /// the caller's to move.
    fn relay(&mut self, map: &[Option<usize>], new_n: usize) {
        let n = self.series.len();
        let ne = self.experts();
        let kn = self.knobs.len() * ne;
        let mut curves = vec![[0.0; NP]; ne * new_n];
        let mut hulls = if self.hulls.is_empty() {
            Vec::new()
        } else {
            vec![Hull::empty(); ne * new_n]
        };
        let mut hyp = vec![0.0; new_n * kn];
        let mut phyp = vec![0.0; new_n * kn];
        for (s, to) in map.iter().enumerate().take(n) {
            let Some(t) = *to else { continue };
            if t >= new_n {
                continue;
            }
            for e in 0..ne {
                curves[e * new_n + t] = self.curves[e * n + s];
                if !hulls.is_empty() {
                    hulls[e * new_n + t] = self.hulls[e * n + s];
                }
            }
            hyp[t * kn..(t + 1) * kn].copy_from_slice(&self.hyp[s * kn..(s + 1) * kn]);
            phyp[t * kn..(t + 1) * kn].copy_from_slice(&self.phyp[s * kn..(s + 1) * kn]);
        }
        self.curves = curves;
        self.hulls = hulls;
        self.hyp = hyp;
        self.phyp = phyp;
    }

    /// Empties series `s`'s curves and last allocations (its memory is
    /// the caller's).
    fn clear_slot(&mut self, s: usize) {
        let n = self.series.len();
        let kn = self.knobs.len() * self.experts();
        for e in 0..self.experts() {
            self.curves[e * n + s] = [0.0; NP];
            if !self.hulls.is_empty() {
                self.hulls[e * n + s] = Hull::empty();
            }
        }
        self.hyp[s * kn..(s + 1) * kn].fill(0.0);
        self.phyp[s * kn..(s + 1) * kn].fill(0.0);
    }

    /// Forgets everything series `s` learnt, so that its index can serve a
    /// workload that appeared (a live host reuses the indices of workloads
    /// gone rather than adding series without end). Nothing happens for an
    /// index past the host's series.
    pub fn reset_series(&mut self, s: usize) {
        if s < self.series.len() {
            self.series[s] = self.fresh.clone();
            self.clear_slot(s);
        }
    }

    /// Keeps the series `keep` accepts and drops the others, renumbering
    /// the kept ones in order; returns each old index's new one (`None`:
    /// dropped). A live host whose workloads come and go calls it when
    /// many of its series are dead, so that its memory follows its live
    /// workloads. Host-wide state (scale, prices, costs, pooled ratios)
    /// stays.
    pub fn retain_series(&mut self, mut keep: impl FnMut(usize) -> bool) -> Vec<Option<usize>> {
        let mut map = Vec::with_capacity(self.series.len());
        let mut kept = 0;
        for s in 0..self.series.len() {
            if keep(s) {
                map.push(Some(kept));
                kept += 1;
            } else {
                map.push(None);
            }
        }
        self.relay(&map, kept);
        let old = std::mem::take(&mut self.series);
        self.series = old
            .into_iter()
            .zip(&map)
            .filter_map(|(m, to)| to.map(|_| m))
            .collect();
        map
    }

    /// Moves series `s`'s memory out, leaving it fresh: to carry a workload
    /// to another host of the same configuration ([`HostTails::put_series`]).
    pub fn take_series(&mut self, s: usize) -> Option<SeriesTails> {
        if s >= self.series.len() {
            return None;
        }
        let mem = std::mem::replace(&mut self.series[s], self.fresh.clone());
        self.clear_slot(s);
        Some(SeriesTails(mem))
    }

    /// Puts a memory taken by [`HostTails::take_series`] into series `s`,
    /// replacing what it held (its curves are built at the next
    /// [`HostTails::allocate`] or [`HostTails::refresh_curves`]). Returns
    /// false, and changes nothing, when `s` is not a series of the host or
    /// the memory comes from a host of another configuration (other
    /// experts or windows).
    pub fn put_series(&mut self, s: usize, t: SeriesTails) -> bool {
        let f = &self.fresh;
        let m = &t.0;
        let compatible = m.own.len() == f.own.len()
            && m.decayed.len() == f.decayed.len()
            && m.bases.len() == f.bases.len()
            && m.own.iter().zip(&f.own).all(|(a, b)| a.cap == b.cap)
            && m.decayed
                .iter()
                .zip(&f.decayed)
                .all(|(a, b)| a.cap == b.cap && a.decay == b.decay);
        if s >= self.series.len() || !compatible {
            return false;
        }
        self.series[s] = t.0;
        self.clear_slot(s);
        true
    }

    /// Learns series `s`'s earlier demands, oldest first (a workload's
    /// history, read when it appears), without scoring them: the series'
    /// own experts take them as if observed. The pooled-ratio experts
    /// learn only from [`HostTails::observe`] (a ratio needs the recent
    /// maximum of its step's allocation). Non-finite demands are skipped;
    /// nothing happens for an index past the host's series.
    pub fn learn(&mut self, s: usize, demands: &[f64]) {
        if s >= self.series.len() {
            return;
        }
        let longest = self.base_steps.iter().copied().max().unwrap_or(0);
        let mem = &mut self.series[s];
        for &d in demands {
            if !d.is_finite() {
                continue;
            }
            let d = d.max(0.0);
            self.demand_sum += d;
            self.demand_count += 1.0;
            for (e, expert) in self.config.experts.iter().enumerate() {
                match expert {
                    Expert::Own { .. } => mem.own[e].push(d),
                    Expert::Decayed { .. } => mem.decayed[e].push(d),
                    Expert::PooledRatio { .. } => {}
                }
            }
            if longest > 0 {
                mem.recent.push_back(d);
                while mem.recent.len() > longest {
                    mem.recent.pop_front();
                }
            }
            mem.seen += 1;
        }
    }

    /// How many demands series `s` has learnt from (0 for an unknown one).
    pub fn observations(&self, s: usize) -> usize {
        self.series.get(s).map_or(0, |m| m.seen)
    }

    /// The knobs it allocates at.
    pub fn knobs(&self) -> &[f64] {
        &self.knobs
    }

    /// The expert whose curves split a contended capacity at knob `j`:
    /// the configured contended expert, or else the knob's chosen one.
    pub fn contended_expert(&self, j: usize) -> usize {
        match self.config.contended_expert {
            Some(e) if e < self.experts() => e,
            _ => self.chosen(j),
        }
    }

    /// Series `s`'s curve under expert `e` at the last
    /// [`HostTails::allocate`]: its allocation at each exceedance
    /// probability of [`EXCEEDANCE`], non-decreasing.
    pub fn curve(&self, e: usize, s: usize) -> &[f64; NP] {
        &self.curves[e * self.series.len() + s]
    }

    /// What happened at the step starting at `ts`: `demands[i]` of series
    /// `present[i]`. Scores every expert's allocations of the last
    /// [`HostTails::allocate`] (whatever was enforced), then learns.
    pub fn observe(&mut self, ts: TimestampMs, present: &[usize], demands: &[f64]) {
        self.last_ts = Some(ts);
        let k = self.knobs.len();
        let ne = self.experts();
        let m = present.len().min(demands.len());
        // Score every expert's allocation at every knob (they were all
        // computed at `allocate`, whatever was enforced), then correct the
        // prices toward the target violation share.
        let mut viol = vec![0.0; k * ne];
        let mut alloc = vec![0.0; k * ne];
        let mut pred = vec![0.0; k * ne];
        let mut counted = 0.0;
        for i in 0..m {
            let (s, d) = (present[i], demands[i]);
            if s >= self.series.len() || !d.is_finite() || self.series[s].seen == 0 {
                continue;
            }
            let d = d.max(0.0);
            counted += 1.0;
            for j in 0..k {
                for e in 0..ne {
                    let a = self.hyp[(s * k + j) * ne + e];
                    alloc[j * ne + e] += a;
                    pred[j * ne + e] += self.phyp[(s * k + j) * ne + e];
                    if d > a {
                        viol[j * ne + e] += 1.0;
                    }
                }
            }
        }
        self.steps_seen += 1;
        let calibrate = self.steps_seen > self.warmup_steps;
        if counted > 0.0 {
            for j in 0..k {
                // A common price to compare the experts: the geometric mean
                // of theirs.
                let mean_log = (0..ne)
                    .map(|e| self.lambda[j * ne + e].max(1e-300).ln())
                    .sum::<f64>()
                    / ne as f64;
                let price = mean_log.exp();
                for e in 0..ne {
                    let x = j * ne + e;
                    if calibrate {
                        self.vsum[x] = self.calib_decay * self.vsum[x] + viol[x];
                        self.psum[x] = self.calib_decay * self.psum[x] + pred[x];
                    }
                    self.cost[x] = self.cost_decay * self.cost[x] + alloc[x] + price * viol[x];
                }
            }
        }
        // Learn from the demands.
        for i in 0..m {
            let (s, d) = (present[i], demands[i]);
            if s >= self.series.len() || !d.is_finite() {
                continue;
            }
            let d = d.max(0.0);
            self.demand_sum += d;
            self.demand_count += 1.0;
            let mem = &mut self.series[s];
            for e in 0..ne {
                match self.config.experts[e] {
                    Expert::Own { .. } => mem.own[e].push(d),
                    Expert::Decayed { .. } => mem.decayed[e].push(d),
                    Expert::PooledRatio { .. } => {
                        if mem.seen > 0
                            && mem.bases[e] > 0.0
                            && let Some(pool) = self.pools[e].as_mut()
                        {
                            pool.push(d / mem.bases[e]);
                        }
                    }
                }
            }
            let longest = self.base_steps.iter().copied().max().unwrap_or(0);
            if longest > 0 {
                mem.recent.push_back(d);
                while mem.recent.len() > longest {
                    mem.recent.pop_front();
                }
            }
            mem.seen += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decayed_window_without_decay_reads_like_the_sorted_window() {
        let mut plain = SortedWindow::new(50);
        let mut decayed = DecayedWindow::new(50, 1.0);
        for i in 0..80 {
            let v = ((i * 37) % 23) as f64 * 0.1;
            plain.push(v);
            decayed.push(v);
        }
        let (mut a, mut b) = ([0.0; NP], [0.0; NP]);
        plain.curve(&*EXCEEDANCE, 0.01, &mut a);
        decayed.curve(&*EXCEEDANCE, 0.01, &mut b, &mut Vec::new());
        for h in 0..NP {
            assert!(
                (a[h] - b[h]).abs() < 1e-9,
                "point {h}: {} vs {}",
                a[h],
                b[h]
            );
        }
    }

    #[test]
    fn a_decayed_window_follows_the_recent_level_and_keeps_its_cap() {
        // A long run at 1.0, then a short one at 3.0: with a half-life of
        // two pushes the median is already the new level, the body of the
        // whole window would still be the old one.
        let mut w = DecayedWindow::new(40, 0.5f64.powf(0.5));
        for _ in 0..30 {
            w.push(1.0);
        }
        for _ in 0..6 {
            w.push(3.0);
        }
        let ps = [0.9, 0.5, 0.2];
        let mut out = [0.0; 3];
        w.curve(&ps, 0.01, &mut out, &mut Vec::new());
        assert_eq!(out[1], 3.0, "median {out:?}");
        assert_eq!(out[0], 1.0, "p10 {out:?}");
        // The cap drops the oldest values first.
        for _ in 0..100 {
            w.push(2.0);
        }
        assert_eq!(w.values.len(), 40);
        assert!(w.values.iter().all(|&v| v == 2.0));
        assert!(w.values.capacity() <= 40, "grown past its cap");
        // Curves never fall as the exceedance falls, past the top too.
        let mut c = [0.0; NP];
        w.curve(&*EXCEEDANCE, 0.01, &mut c, &mut Vec::new());
        assert!(c.windows(2).all(|p| p[0] <= p[1]), "{c:?}");
        assert!(c[NP - 1] > 2.0);
    }

    #[test]
    fn push_numbers_wrap_without_confusing_ages() {
        // Past 2^16 pushes the window reads as one fed only its last values.
        let v = |i: usize| ((i * 7919) % 101) as f64 * 0.01;
        let mut long = DecayedWindow::new(50, 0.9);
        for i in 0..70_000 {
            long.push(v(i));
        }
        let mut short = DecayedWindow::new(50, 0.9);
        for i in 70_000 - 50..70_000 {
            short.push(v(i));
        }
        let (mut a, mut b) = ([0.0; NP], [0.0; NP]);
        long.curve(&*EXCEEDANCE, 0.01, &mut a, &mut Vec::new());
        short.curve(&*EXCEEDANCE, 0.01, &mut b, &mut Vec::new());
        assert_eq!(a, b);
        assert_eq!(long.values.len(), 50);
        assert_eq!(DecayedWindow::new(usize::MAX, 0.9).cap, MAX_WINDOW);
    }

    #[test]
    fn a_series_added_later_learns_on_its_own_and_leaves_the_others_alone() {
        let knobs = [0.95];
        let mut a = HostTails::new(TailConfig::for_planning(300_000), 2, 300_000, 0, &knobs);
        let mut out = [0.0; 3];
        for t in 0..50 {
            a.allocate(&[0, 1], &mut out[..2]);
            let d = [1.0 + (t % 5) as f64 * 0.1, 3.0];
            a.observe(t * 300_000, &[0, 1], &d);
        }
        a.allocate(&[0, 1], &mut out[..2]);
        let before = (*a.curve(0, 0), *a.curve(0, 1));
        assert_eq!(a.add_series(), 2);
        assert_eq!(a.series_count(), 2 + 1);
        assert_eq!(a.observations(2), 0);
        a.allocate(&[0, 1, 2], &mut out);
        assert_eq!((*a.curve(0, 0), *a.curve(0, 1)), before);
        assert!(
            a.curve(0, 2).iter().all(|&v| v == 0.0),
            "nothing learnt yet"
        );
        for t in 50..60 {
            a.observe(t * 300_000, &[0, 1, 2], &[1.2, 3.0, 7.0]);
            a.allocate(&[0, 1, 2], &mut out);
        }
        assert_eq!(a.observations(2), 10);
        // Its median is its own level, not its neighbours'.
        let c = a.curve(0, 2);
        let median = c[EXCEEDANCE.iter().position(|&p| p <= 0.5).unwrap()];
        assert!((median - 7.0).abs() < 1e-9, "{median}");
        // Curves never fall as the exceedance falls.
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
    }

    /// A planning host of `n` series fed `steps` steps of noisy demand.
    fn fed(n: usize, steps: i64) -> HostTails {
        let mut h = HostTails::new(TailConfig::for_planning(300_000), n, 300_000, 0, &[0.95]);
        let present: Vec<usize> = (0..n).collect();
        for t in 0..steps {
            let d: Vec<f64> = (0..n)
                .map(|s| (s + 1) as f64 + ((t * 7 + s as i64 * 3) % 11) as f64 * 0.1)
                .collect();
            h.observe(t * 300_000, &present, &d);
        }
        h
    }

    #[test]
    fn curves_alone_are_the_curves_of_an_allocation() {
        let mut a = fed(4, 80);
        let mut b = a.clone();
        let mut out = [0.0; 4];
        a.allocate(&[0, 1, 2, 3], &mut out);
        b.refresh_curves(&[0, 1, 2, 3, 99]);
        for s in 0..4 {
            assert_eq!(a.curve(0, s), b.curve(0, s));
        }
        assert!(b.hulls.is_empty(), "no hulls without an allocation");
    }

    #[test]
    fn history_learnt_reads_like_demands_observed() {
        let demands: Vec<f64> = (0..300)
            .map(|t| 1.0 + ((t * 13) % 17) as f64 * 0.2)
            .collect();
        let mut live = HostTails::new(TailConfig::for_planning(300_000), 1, 300_000, 0, &[0.95]);
        for (t, &d) in demands.iter().enumerate() {
            live.observe(t as i64 * 300_000, &[0], &[d]);
        }
        let mut read = HostTails::new(TailConfig::for_planning(300_000), 1, 300_000, 0, &[0.95]);
        read.learn(0, &demands);
        read.learn(0, &[f64::NAN]);
        read.learn(7, &demands);
        assert_eq!(read.observations(0), 300);
        live.refresh_curves(&[0]);
        read.refresh_curves(&[0]);
        assert_eq!(live.curve(0, 0), read.curve(0, 0));
    }

    #[test]
    fn series_are_reset_dropped_and_moved_between_hosts() {
        let mut a = fed(3, 60);
        a.refresh_curves(&[0, 1, 2]);
        let (c0, c1, c2) = (*a.curve(0, 0), *a.curve(0, 1), *a.curve(0, 2));
        // Series 1 moves to a host of one series (its slot 0).
        let moved = a.take_series(1).unwrap();
        assert_eq!(moved.observations(), 60);
        assert_eq!(a.observations(1), 0);
        let mut b = fed(1, 5);
        assert!(b.put_series(0, moved.clone()));
        b.refresh_curves(&[0]);
        // The same memory reads the same body (past the data, the tail's
        // floor follows the host's scale).
        let body = EXCEEDANCE.iter().filter(|&&p| p >= 0.05).count();
        assert_eq!(b.curve(0, 0)[..body], c1[..body]);
        // Not into a slot that does not exist, nor a host of another
        // configuration.
        assert!(!b.put_series(1, moved.clone()));
        let mut other = HostTails::new(TailConfig::for_planning(60_000), 1, 60_000, 0, &[0.95]);
        assert!(!other.put_series(0, moved));
        assert_eq!(other.observations(0), 0);
        // Dropping the dead slot renumbers the others and keeps them.
        let map = a.retain_series(|s| s != 1);
        assert_eq!(map, vec![Some(0), None, Some(1)]);
        assert_eq!(a.series_count(), 2);
        assert_eq!((*a.curve(0, 0), *a.curve(0, 1)), (c0, c2));
        a.refresh_curves(&[0, 1]);
        assert_eq!((*a.curve(0, 0), *a.curve(0, 1)), (c0, c2));
        // A reset slot starts again from nothing.
        a.reset_series(1);
        a.reset_series(5);
        assert_eq!(a.observations(1), 0);
        assert!(a.curve(0, 1).iter().all(|&v| v == 0.0));
        assert_eq!(a.observations(0), 60);
    }

    #[test]
    fn the_default_config_re_lays_its_experts_when_series_come_and_go() {
        let knobs = [0.9, 0.99];
        let mut h = HostTails::new(TailConfig::default(), 2, 300_000, 0, &knobs);
        let mut out = vec![0.0; 3 * knobs.len()];
        for t in 0..50 {
            h.allocate(&[0, 1], &mut out[..4]);
            h.observe(t * 300_000, &[0, 1], &[1.0 + (t % 3) as f64, 4.0]);
        }
        h.allocate(&[0, 1], &mut out[..4]);
        let before: Vec<[f64; NP]> = (0..4).map(|e| *h.curve(e, 1)).collect();
        assert_eq!(h.add_series(), 2);
        let map = h.retain_series(|s| s != 0);
        assert_eq!(map, vec![None, Some(0), Some(1)]);
        let after: Vec<[f64; NP]> = (0..4).map(|e| *h.curve(e, 0)).collect();
        assert_eq!(before, after);
        h.allocate(&[0, 1], &mut out[..4]);
        h.observe(50 * 300_000, &[0, 1], &[4.0, 2.0]);
    }

    #[test]
    fn the_planning_config_keeps_eight_hours_within_bounds() {
        let steps = |step_ms| match TailConfig::for_planning(step_ms).experts[0] {
            Expert::Decayed { steps, .. } => steps,
            e => panic!("{e:?}"),
        };
        assert_eq!(steps(300_000), 240);
        assert_eq!(steps(10_000), 2_880);
        assert_eq!(steps(1_000), 4_096);
        assert_eq!(steps(3_600_000), 240);
        assert_eq!(TailConfig::levels().len(), NP);
    }

    #[test]
    fn a_host_restored_from_its_saved_state_allocates_as_one_that_ran_through() {
        // The planning config past 2^16 pushes (push numbers wrap); the
        // default, with every expert, for fewer steps (it costs more).
        for (config, steps) in [
            (TailConfig::default(), 2_000i64),
            (TailConfig::for_planning(10_000), 70_000),
        ] {
            let knobs = [0.9, 0.99];
            let mut a = HostTails::new(config.clone(), 3, 10_000, 5, &knobs);
            let mut x = 99u64;
            let mut demand = |t: i64| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                [
                    1.0 + (x >> 61) as f64,
                    0.2 + ((x >> 40) % 100) as f64 / 100.0,
                    (t % 7) as f64,
                ]
            };
            let mut out = [0.0; 6];
            for t in 0..steps {
                // (Allocating now and then is enough to score the experts.)
                if t % 50 == 0 {
                    a.allocate(&[0, 1, 2], &mut out);
                }
                a.observe(t * 10_000, &[0, 1, 2], &demand(t));
            }
            let bytes = postcard::to_stdvec(&a).unwrap();
            let mut b: HostTails = postcard::from_bytes(&bytes).unwrap();
            for t in steps..steps + 100 {
                let (mut oa, mut ob) = ([0.0; 6], [0.0; 6]);
                a.allocate(&[0, 1, 2], &mut oa);
                b.allocate(&[0, 1, 2], &mut ob);
                assert_eq!(oa, ob, "step {t}");
                for s in 0..3 {
                    for e in 0..config.experts.len() {
                        assert_eq!(a.curve(e, s), b.curve(e, s), "step {t} series {s}");
                    }
                }
                let d = demand(t);
                a.observe(t * 10_000, &[0, 1, 2], &d);
                b.observe(t * 10_000, &[0, 1, 2], &d);
            }
            // The planning config's windows are saved as 10 bytes a value.
            if config.experts.len() == 1 {
                assert!(
                    bytes.len() < 3 * 2_880 * 11 + 4_096,
                    "{} bytes",
                    bytes.len()
                );
            }
            // Garbage does not decode into a host.
            assert!(postcard::from_bytes::<HostTails>(&bytes[..bytes.len() / 2]).is_err());
        }
    }
}
