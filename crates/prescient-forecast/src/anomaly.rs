//! Anomalies in a series: memory leaks, level shifts and outliers, each
//! with the time, the series and a reason a person can read.
//!
//! [`SeriesAnomalyDetector`] is fed one observation at a time, with the
//! one-step forecast's median and scale when the engine has them
//! ([`OneStep`]). It returns a [`Verdict`]: the value the models should
//! learn (the observation, or an outlier clipped), whether models should
//! forget what came before a level shift, and the anomalies found. The
//! three detectors are also usable alone ([`LevelShiftDetector`],
//! [`LeakDetector`]).
//!
//! What is expected: the forecast median when given; otherwise two
//! expectations of the detector's own, from the last `baseline_len` learned
//! values: a fast one for outliers (a line through them with their median
//! step as slope, one step on: it follows a ramp) and a slow one for shifts
//! (their median: it lags a change, so a shift shows as a run of
//! residuals).
//!
//! - **Outliers**: the residual against the fast expectation as a robust
//!   z-score: centred on the median of the recent residuals (a steady bias
//!   is not anomalous) and divided by the largest of 1.4826 x their median
//!   absolute deviation, their 90th-percentile absolute deviation / 1.645
//!   (both estimate a Gaussian's standard deviation; the second makes what
//!   happens one step in ten usual), the forecast's scale, and a floor
//!   (`rel_floor` of the level: a flat series has no spread). Beyond
//!   `threshold`, and at least `min_deviation_abs` away, it is an outlier,
//!   learned clipped to `clip_at` scales. A run of outliers on one side
//!   stops being outliers after `max_run`: it is more likely a change of
//!   level, which the models must see.
//! - **Level shifts**: a two-sided CUSUM (Page) of the same kind of z-score
//!   against the slow expectation, clipped to `clip`, with allowance `k`
//!   and threshold `h`. The start of the shift is located within the
//!   CUSUM's excursion, an alarm needs `min_run` steps since it, and the
//!   shift must be material (`min_shift_rel` of the level, and
//!   `min_deviation_abs`). CUSUM rather than augurs-changepoint: it is
//!   online and O(1) a step, its state is a few numbers (serde-able), its
//!   delay and false-alarm rate follow from `k` and `h`, and it runs on the
//!   residuals of whatever forecast the engine has, so a daily cycle the
//!   models know is not a shift. augurs-changepoint wraps the `changepoint`
//!   crate's Bayesian detectors behind a batch `detect_changepoints(&[f64])`
//!   (re-run over a window each step, that is O(window) or more a step),
//!   with state outside serde and a large dependency tree.
//! - **Memory leaks** (memory only by default): values are averaged in
//!   buckets (`window_ms / buckets` long); when a bucket closes, the last
//!   window of buckets is tested: growth (Theil-Sen slope x window) of at
//!   least `min_growth_abs` (default: one allocation unit of the resource)
//!   and `min_growth_rel` of the level; rising throughout (the share of
//!   bucket pairs, earlier to later, that rise is at least
//!   `min_concordance`); no fall back (no drop from a running peak of more
//!   than `max_fallback` of the growth: a sawtooth is not a leak); and not
//!   the daily pattern: the level reached is above the previous day's peak
//!   by at least `above_previous_day` of the growth. Without a day of
//!   history before the window that last test cannot be made, and by
//!   default (`require_daily_reference`) nothing is flagged.

use std::collections::VecDeque;
use std::fmt::Write as _;

use prescient_core::{Quantiles, Resource, SeriesKey, TimestampMs};
use serde::{Deserialize, Serialize};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What kind of anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// Sustained growth that does not fall back and is not the daily pattern.
    MemoryLeak,
    /// A change of level that persists.
    LevelShift,
    /// One value far from what was expected.
    Outlier,
}

impl AnomalyKind {
    /// The name used in reports and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::MemoryLeak => "memory_leak",
            AnomalyKind::LevelShift => "level_shift",
            AnomalyKind::Outlier => "outlier",
        }
    }
}

/// Something unusual in a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// When it was detected (the observation that showed it).
    pub ts: TimestampMs,
    /// When it began, as far as can be told (an outlier: `ts`).
    pub since: TimestampMs,
    /// The series.
    pub key: SeriesKey,
    /// What kind.
    pub kind: AnomalyKind,
    /// For people: what was seen, in the resource's unit.
    pub reason: String,
    /// Its size in the resource's unit: the outlier's distance from the
    /// expected value, the shift, or the growth over the window (signed).
    pub magnitude: f64,
    /// How strong the evidence is: the outlier's robust z, the CUSUM over
    /// its threshold, the growth over the least growth that counts.
    pub score: f64,
}

/// The engine's one-step forecast, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OneStep {
    /// The forecast median.
    pub median: f64,
    /// A robust standard deviation of the forecast (e.g. the interquartile
    /// range / 1.349).
    pub scale: f64,
}

impl OneStep {
    /// The median and scale of a forecast row (quantiles at `levels`, read
    /// as core's piecewise-linear CDF): the scale is the interquartile range
    /// / 1.349, or the 5-95 % range / 3.29 if that is 0. `None` if the row
    /// is not a valid set of quantiles.
    pub fn from_quantiles(levels: &[f64], row: &[f64]) -> Option<OneStep> {
        let q = Quantiles::new(levels, row).ok()?;
        let median = q.quantile(0.5);
        let mut scale = (q.quantile(0.75) - q.quantile(0.25)) / 1.349;
        if scale <= 0.0 {
            scale = (q.quantile(0.95) - q.quantile(0.05)) / 3.29;
        }
        Some(OneStep { median, scale })
    }
}

/// Outlier detection settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OutlierConfig {
    /// Robust z beyond which a value is an outlier.
    pub threshold: f64,
    /// An outlier is learned as the expected value plus this many scales.
    pub clip_at: f64,
    /// Consecutive outliers on one side after which they stop being
    /// outliers (and the level-shift detector has its say).
    pub max_run: u32,
    /// Residuals needed before anything is flagged.
    pub min_history: u32,
    /// Residuals the scale is measured over.
    pub window: u32,
    /// The scale is at least this share of the expected level.
    pub rel_floor: f64,
    /// Own baseline (without a forecast): the median of this many recent values.
    pub baseline_len: u32,
    /// Least deviation from the expected that can be an outlier or a shift,
    /// in the resource's unit (default: 1/8 of its allocation unit, e.g.
    /// 8 MiB, 1/64 core: less changes no allocation).
    pub min_deviation_abs: Option<f64>,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            threshold: 6.0,
            clip_at: 3.0,
            max_run: 3,
            min_history: 12,
            window: 48,
            rel_floor: 0.01,
            baseline_len: 12,
            min_deviation_abs: None,
        }
    }
}

/// Level-shift (CUSUM) settings, in robust z units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LevelShiftConfig {
    /// Allowance: drift per step the CUSUM ignores.
    pub k: f64,
    /// Alarm threshold.
    pub h: f64,
    /// z-scores are clipped to +-this before summing, so that a burst of
    /// a few spikes cannot raise an alarm alone: three clipped spikes bring
    /// the sum to 3 (clip - k) = 6 of the 10 needed, and from there
    /// ordinary noise (drifting down by k a step) rarely climbs the rest
    /// (about e^(-2 k 4) = 3 in 10,000 for Gaussian z).
    pub clip: f64,
    /// Steps since the CUSUM left 0 before an alarm.
    pub min_run: u32,
    /// Steps after an alarm before the next can be raised.
    pub cooldown: u32,
    /// Least shift worth reporting (and resetting models for), as a share
    /// of the level before it.
    pub min_shift_rel: f64,
}

impl Default for LevelShiftConfig {
    fn default() -> Self {
        LevelShiftConfig {
            k: 1.0,
            h: 10.0,
            clip: 3.0,
            min_run: 6,
            cooldown: 12,
            min_shift_rel: 0.05,
        }
    }
}

/// Memory-leak settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakConfig {
    /// Resources watched.
    pub resources: Vec<Resource>,
    /// How long the growth must be sustained.
    pub window_ms: i64,
    /// Buckets per window.
    pub buckets: u32,
    /// Least growth over the window, in the resource's unit (default: one
    /// allocation unit of the resource).
    pub min_growth_abs: Option<f64>,
    /// Least growth over the window, as a share of the level at its start.
    pub min_growth_rel: f64,
    /// Least share of bucket pairs (earlier, later) that rise.
    pub min_concordance: f64,
    /// Largest drop from a running peak, as a share of the growth.
    pub max_fallback: f64,
    /// The level reached must exceed the previous day's peak by this share
    /// of the growth.
    pub above_previous_day: f64,
    /// Flag nothing until there is a day of history before the window.
    pub require_daily_reference: bool,
    /// While a leak goes on, report it again after this long.
    pub repeat_ms: i64,
}

impl Default for LeakConfig {
    fn default() -> Self {
        LeakConfig {
            resources: vec![Resource::Memory],
            window_ms: 6 * HOUR_MS,
            buckets: 24,
            min_growth_abs: None,
            min_growth_rel: 0.1,
            min_concordance: 0.8,
            max_fallback: 0.25,
            above_previous_day: 0.5,
            require_daily_reference: true,
            repeat_ms: DAY_MS,
        }
    }
}

/// All the detectors' settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomalyConfig {
    /// Outliers.
    pub outlier: OutlierConfig,
    /// Level shifts.
    pub level: LevelShiftConfig,
    /// Memory leaks.
    pub leak: LeakConfig,
}

/// What to do with an observation: see [`SeriesAnomalyDetector::observe`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The value the models should learn: the observation, or an outlier
    /// clipped.
    pub learn: f64,
    /// Whether the observation is an outlier.
    pub outlier: bool,
    /// A level shift began at this time: models should forget (or weigh
    /// down) what they learned before it.
    pub reset_since: Option<TimestampMs>,
    /// What was found.
    pub anomalies: Vec<Anomaly>,
}

// ---------------------------------------------------------------------------
// Level shifts

/// Page's two-sided CUSUM over robust z-scores, online.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelShiftDetector {
    config: LevelShiftConfig,
    up: Side,
    down: Side,
    cooldown: u32,
}

/// One side of the CUSUM.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Side {
    sum: f64,
    /// The excursion (since the sum last was 0) as (ts, clipped z on this
    /// side), at most [`MAX_EXCURSION`] steps.
    excursion: VecDeque<(TimestampMs, f64)>,
}

/// Steps of an excursion kept for locating the start of a shift.
const MAX_EXCURSION: usize = 256;

impl Side {
    fn step(&mut self, ts: TimestampMs, x: f64, k: f64) {
        self.sum = (self.sum + x - k).max(0.0);
        if self.sum <= 0.0 {
            self.excursion.clear();
            return;
        }
        if self.excursion.len() == MAX_EXCURSION {
            self.excursion.pop_front();
        }
        self.excursion.push_back((ts, x));
    }

    /// Where in the excursion the shift starts, and the steps since: the
    /// split that maximises the sum of (x - d/2) after it, d being the
    /// shift's size (the median x over the last `recent` steps). The
    /// classic estimate, the start of the excursion, runs early when noise
    /// keeps the sum a little above 0 before the change.
    fn locate(&self, recent: usize) -> Option<(TimestampMs, u32)> {
        let n = self.excursion.len();
        let mut tail: Vec<f64> = self
            .excursion
            .iter()
            .skip(n.saturating_sub(recent.max(1)))
            .map(|e| e.1)
            .collect();
        let half = 0.5 * median(&mut tail)?;
        let (mut best, mut best_at, mut suffix) = (f64::NEG_INFINITY, 0, 0.0);
        for (i, e) in self.excursion.iter().enumerate().rev() {
            suffix += e.1 - half;
            if suffix > best {
                (best, best_at) = (suffix, i);
            }
        }
        Some((self.excursion[best_at].0, (n - best_at) as u32))
    }
}

/// A level shift found by [`LevelShiftDetector::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    /// Estimated start.
    pub since: TimestampMs,
    /// Up (+1) or down (-1).
    pub direction: f64,
    /// The CUSUM over its threshold.
    pub score: f64,
    /// Steps since the start.
    pub steps: u32,
}

impl LevelShiftDetector {
    /// A detector with `config`.
    pub fn new(config: LevelShiftConfig) -> LevelShiftDetector {
        LevelShiftDetector {
            config,
            up: Side::default(),
            down: Side::default(),
            cooldown: 0,
        }
    }

    /// Feeds the robust z-score of the residual at `ts`; a shift if the
    /// CUSUM raises an alarm (it then starts over).
    pub fn observe(&mut self, ts: TimestampMs, z: f64) -> Option<Shift> {
        let c = self.config;
        if !z.is_finite() {
            return None;
        }
        let clip = if c.clip > 0.0 { c.clip } else { 3.0 };
        let z = z.clamp(-clip, clip);
        self.up.step(ts, z, c.k);
        self.down.step(ts, -z, c.k);
        if self.cooldown > 0 {
            self.cooldown -= 1;
            return None;
        }
        let recent = c.min_run.max(1) as usize;
        let alarm = |s: &Side| {
            if s.sum <= c.h {
                return None;
            }
            let (since, steps) = s.locate(recent)?;
            (steps >= c.min_run).then_some((since, steps, s.sum))
        };
        let ((since, steps, sum), direction) = if let Some(a) = alarm(&self.up) {
            (a, 1.0)
        } else if let Some(a) = alarm(&self.down) {
            (a, -1.0)
        } else {
            return None;
        };
        self.reset();
        self.cooldown = c.cooldown;
        Some(Shift {
            since,
            direction,
            score: sum / c.h,
            steps,
        })
    }

    /// Starts over (after a shift, or when the models were reset).
    pub fn reset(&mut self) {
        (self.up, self.down) = (Side::default(), Side::default());
    }
}

// ---------------------------------------------------------------------------
// Memory leaks

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Bucket {
    /// Start of the bucket.
    start: TimestampMs,
    sum: f64,
    n: u32,
}

impl Bucket {
    fn mean(&self) -> f64 {
        self.sum / f64::from(self.n.max(1))
    }
}

/// Sustained growth found by [`LeakDetector::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Leak {
    /// Start of the window that grew.
    pub since: TimestampMs,
    /// Growth over the window (Theil-Sen slope x window).
    pub growth: f64,
    /// Growth per hour.
    pub per_hour: f64,
    /// Fitted level at the end of the window.
    pub level: f64,
    /// The previous day's peak (bucket means), when known.
    pub previous_day_peak: Option<f64>,
    /// Growth over the least growth that counts.
    pub score: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Episode {
    peak: f64,
    growth: f64,
    reported: TimestampMs,
}

/// Sustained growth that does not fall back and is not the daily pattern;
/// see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakDetector {
    config: LeakConfig,
    /// Least growth that counts, in the unit.
    min_growth_abs: f64,
    current: Option<Bucket>,
    /// Closed buckets, oldest first, covering the window and the day before.
    closed: VecDeque<Bucket>,
    episode: Option<Episode>,
}

impl LeakDetector {
    /// A detector for a series of `resource`.
    pub fn new(resource: Resource, config: LeakConfig) -> LeakDetector {
        let min_growth_abs = config
            .min_growth_abs
            .unwrap_or_else(|| resource.default_allocation_unit());
        LeakDetector {
            config,
            min_growth_abs,
            current: None,
            closed: VecDeque::new(),
            episode: None,
        }
    }

    fn bucket_ms(&self) -> i64 {
        (self.config.window_ms / i64::from(self.config.buckets.max(2))).max(1)
    }

    /// Feeds the value at `ts` (in time order: earlier values are ignored);
    /// a leak when a bucket closes on one.
    pub fn observe(&mut self, ts: TimestampMs, value: f64) -> Option<Leak> {
        if !value.is_finite() {
            return None;
        }
        let width = self.bucket_ms();
        let start = ts.div_euclid(width).saturating_mul(width);
        let mut found = None;
        match self.current {
            Some(b) if start == b.start => {}
            Some(b) if start < b.start => return None,
            Some(b) => {
                self.closed.push_back(b);
                let keep_from = b
                    .start
                    .saturating_sub(self.config.window_ms.saturating_add(DAY_MS));
                while self.closed.front().is_some_and(|f| f.start < keep_from) {
                    self.closed.pop_front();
                }
                found = self.evaluate(b.start.saturating_add(width));
                self.current = None;
            }
            None => {}
        }
        let b = self.current.get_or_insert(Bucket {
            start,
            sum: 0.0,
            n: 0,
        });
        b.sum += value;
        b.n = b.n.saturating_add(1);
        found
    }

    /// Tests the window that ends at `end` (the end of the bucket just closed).
    fn evaluate(&mut self, end: TimestampMs) -> Option<Leak> {
        let c = &self.config;
        let width = self.bucket_ms();
        let last = self.closed.back()?.mean();
        // An episode ends when the level falls back half its growth.
        if let Some(ep) = &mut self.episode {
            ep.peak = ep.peak.max(last);
            if last < ep.peak - 0.5 * ep.growth {
                self.episode = None;
            }
        }
        let window_start = end.saturating_sub(c.window_ms);
        let win: Vec<Bucket> = self
            .closed
            .iter()
            .filter(|b| b.start >= window_start)
            .copied()
            .collect();
        let expected = (c.window_ms / width).max(2) as usize;
        // At least 80 % of the window's buckets, and its first.
        if win.len() * 5 < expected * 4 || win.first()?.start >= window_start.saturating_add(width)
        {
            return None;
        }
        let hours: Vec<f64> = win
            .iter()
            .map(|b| (b.start - window_start) as f64 / HOUR_MS as f64)
            .collect();
        let means: Vec<f64> = win.iter().map(Bucket::mean).collect();
        let slope = theil_sen(&hours, &means)?;
        let window_h = c.window_ms as f64 / HOUR_MS as f64;
        let growth = slope * window_h;
        let intercept = median(
            &mut hours
                .iter()
                .zip(&means)
                .map(|(t, m)| m - slope * t)
                .collect::<Vec<_>>(),
        )?;
        let min_growth = self.min_growth_abs.max(c.min_growth_rel * intercept.abs());
        if !(growth >= min_growth && growth > 0.0) {
            return None;
        }
        // Rising throughout: the share of (earlier, later) pairs that rise.
        let (mut rising, mut pairs) = (0usize, 0usize);
        for i in 0..means.len() {
            for m in &means[i + 1..] {
                pairs += 1;
                rising += usize::from(*m > means[i]);
            }
        }
        if (rising as f64) < c.min_concordance * pairs as f64 {
            return None;
        }
        // No fall back from a running peak.
        let mut peak = f64::NEG_INFINITY;
        let mut fallback = 0.0f64;
        for &m in &means {
            peak = peak.max(m);
            fallback = fallback.max(peak - m);
        }
        if fallback > c.max_fallback * growth {
            return None;
        }
        // Not the daily pattern: above the previous day's peak.
        let level = intercept + growth;
        let day_start = window_start.saturating_sub(DAY_MS);
        let day: Vec<f64> = self
            .closed
            .iter()
            .filter(|b| b.start >= day_start && b.start < window_start)
            .map(Bucket::mean)
            .collect();
        let day_known = day.len() as i64 * 2 >= DAY_MS / width
            && self
                .closed
                .front()
                .is_some_and(|b| b.start < day_start + width);
        let previous_day_peak = if day_known {
            let p = day.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if level < p + c.above_previous_day * growth {
                return None;
            }
            Some(p)
        } else if c.require_daily_reference {
            return None;
        } else {
            None
        };
        match &mut self.episode {
            Some(ep) if end.saturating_sub(ep.reported) < c.repeat_ms => return None,
            Some(ep) => ep.reported = end,
            None => {
                self.episode = Some(Episode {
                    peak: last,
                    growth,
                    reported: end,
                })
            }
        }
        Some(Leak {
            since: window_start,
            growth,
            per_hour: slope,
            level,
            previous_day_peak,
            score: growth / min_growth,
        })
    }
}

/// The median of pairwise slopes (Theil-Sen), robust to a few bad points.
fn theil_sen(x: &[f64], y: &[f64]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(x.len() * x.len() / 2);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let dx = x[j] - x[i];
            if dx != 0.0 {
                slopes.push((y[j] - y[i]) / dx);
            }
        }
    }
    median(&mut slopes)
}

/// The median of sorted values; `None` if empty.
fn sorted_median(v: &[f64]) -> Option<f64> {
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(0.5 * (v[n / 2 - 1] + v[n / 2])),
    }
}

/// The median (reorders `v`); `None` if empty or not all finite.
fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let mid = v.len() / 2;
    let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if v.len() % 2 == 1 {
        return Some(m);
    }
    let lower = v[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(0.5 * (lower + m))
}

// ---------------------------------------------------------------------------
// The per-series detector

/// One observation as the detector keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Step {
    ts: TimestampMs,
    observed: f64,
    learned: f64,
    /// What was expected (NaN: nothing yet).
    expected: f64,
    /// Whether `expected` was the engine's forecast (else the own baseline).
    forecast: bool,
}

/// Steps of history kept (for the own baseline and measuring shifts).
const HISTORY: usize = 64;

/// All three detectors for one series, sharing the residuals; see the
/// module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesAnomalyDetector {
    config: OutlierConfig,
    min_shift_rel: f64,
    /// Least deviation that counts, in the unit.
    min_deviation: f64,
    resource: Resource,
    history: VecDeque<Step>,
    /// The own baseline uses only steps from here on (the last shift).
    baseline_from: TimestampMs,
    /// Recent residuals (as learned: outliers clipped) as (ts, residual),
    /// against the fast expectation (for outliers) and the slow one (for
    /// shifts); the same with a forecast.
    fast: VecDeque<(TimestampMs, f64)>,
    slow: VecDeque<(TimestampMs, f64)>,
    /// Consecutive outliers, with their side.
    run: u32,
    run_side: f64,
    last_ts: Option<TimestampMs>,
    level: LevelShiftDetector,
    leak: Option<LeakDetector>,
}

impl SeriesAnomalyDetector {
    /// Detectors for a series of `resource` (the leak detector only for the
    /// resources `config.leak` lists).
    pub fn new(resource: Resource, config: &AnomalyConfig) -> SeriesAnomalyDetector {
        SeriesAnomalyDetector {
            config: config.outlier,
            min_shift_rel: config.level.min_shift_rel,
            min_deviation: config
                .outlier
                .min_deviation_abs
                .unwrap_or_else(|| resource.default_allocation_unit() / 8.0),
            resource,
            history: VecDeque::new(),
            baseline_from: TimestampMs::MIN,
            fast: VecDeque::new(),
            slow: VecDeque::new(),
            run: 0,
            run_side: 0.0,
            last_ts: None,
            level: LevelShiftDetector::new(config.level),
            leak: config
                .leak
                .resources
                .contains(&resource)
                .then(|| LeakDetector::new(resource, config.leak.clone())),
        }
    }

    /// The own expectations without a forecast, from the last
    /// `baseline_len` learned values since the last shift: fast, a robust
    /// line through them one step on (it follows a ramp); slow,
    /// their median (it lags a change by half its length, which is what
    /// makes a shift show as a run of residuals).
    fn own_expectations(&self) -> Option<(f64, f64)> {
        let mut v: Vec<f64> = self
            .history
            .iter()
            .rev()
            .take_while(|s| s.ts >= self.baseline_from)
            .take(self.config.baseline_len.max(1) as usize)
            .map(|s| s.learned)
            .collect();
        v.reverse();
        let n = v.len();
        // The slope as the median step (cheaper than Theil-Sen's pairs,
        // and as robust to a spike, which moves two steps of eleven).
        let fast = if n >= 4 {
            let mut steps: Vec<f64> = v.windows(2).map(|w| w[1] - w[0]).collect();
            median(&mut steps).and_then(|slope| {
                let mut at0: Vec<f64> = v
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v - slope * i as f64)
                    .collect();
                median(&mut at0).map(|b| b + slope * n as f64)
            })
        } else {
            None
        };
        let slow = median(&mut v)?;
        Some((fast.unwrap_or(slow), slow))
    }

    /// Checks the observation `value` of `key` at `ts`, against `forecast`
    /// (the one-step forecast made before it) if given, else against its
    /// own expectations from recent values. Observations must come in time
    /// order; one at or before the previous, or not finite, is passed
    /// through unjudged.
    pub fn observe(
        &mut self,
        key: &SeriesKey,
        ts: TimestampMs,
        value: f64,
        forecast: Option<OneStep>,
    ) -> Verdict {
        let mut verdict = Verdict {
            learn: value,
            outlier: false,
            reset_since: None,
            anomalies: Vec::new(),
        };
        if !value.is_finite() || self.last_ts.is_some_and(|l| ts <= l) {
            return verdict;
        }
        self.last_ts = Some(ts);
        let c = self.config;
        let min_history = c.min_history.max(2) as usize;
        let forecast = forecast.filter(|f| f.median.is_finite());
        let expected = match forecast {
            Some(f) => Some((f.median, f.median)),
            None => self.own_expectations(),
        };
        if let Some((fast, slow)) = expected {
            let (r_fast, r_slow) = (value - fast, value - slow);
            let (mut keep_fast, mut keep_slow) = (r_fast, r_slow);
            if self.fast.len() >= min_history
                && let Some((centre, scale)) = self.residual_stats(&self.fast, fast, forecast)
            {
                let z = (r_fast - centre) / scale;
                let side = z.signum();
                let extreme =
                    z.abs() > c.threshold && (r_fast - centre).abs() >= self.min_deviation;
                let run = match (extreme, side == self.run_side) {
                    (true, true) => self.run + 1,
                    (true, false) => 1,
                    (false, _) => 0,
                };
                (self.run, self.run_side) = (run, if extreme { side } else { 0.0 });
                if extreme && run <= c.max_run {
                    let clipped = (fast + centre + side * c.clip_at * scale).max(0.0);
                    verdict.learn = clipped;
                    verdict.outlier = true;
                    (keep_fast, keep_slow) = (clipped - fast, clipped - slow);
                    verdict.anomalies.push(Anomaly {
                        ts,
                        since: ts,
                        key: key.clone(),
                        kind: AnomalyKind::Outlier,
                        reason: format!(
                            "{} {} is {:.1} times its usual variation {} the expected {} (variation {}); learned as {}",
                            self.resource,
                            amount(self.resource, value),
                            z.abs(),
                            if side > 0.0 { "above" } else { "below" },
                            amount(self.resource, fast + centre),
                            amount(self.resource, scale),
                            amount(self.resource, clipped),
                        ),
                        magnitude: r_fast - centre,
                        score: z.abs(),
                    });
                }
            }
            if self.slow.len() >= min_history
                && let Some((centre, scale)) = self.residual_stats(&self.slow, slow, forecast)
                && let Some(shift) = self.level.observe(ts, (r_slow - centre) / scale)
            {
                let now = Step {
                    ts,
                    observed: value,
                    learned: value,
                    expected: slow,
                    forecast: forecast.is_some(),
                };
                if let Some(anomaly) = self.shift_anomaly(key, now, shift) {
                    verdict.anomalies.retain(|a| a.kind != AnomalyKind::Outlier);
                    verdict.anomalies.push(anomaly);
                    verdict.reset_since = Some(shift.since);
                    verdict.outlier = false;
                    verdict.learn = value;
                    // What was measured against the old level no longer
                    // describes the series: the own expectations restart
                    // from the values since the shift, as observed.
                    self.baseline_from = shift.since;
                    for s in self.history.iter_mut().filter(|s| s.ts >= shift.since) {
                        s.learned = s.observed;
                    }
                    self.fast.retain(|r| r.0 < shift.since);
                    self.slow.retain(|r| r.0 < shift.since);
                    (self.run, self.run_side) = (0, 0.0);
                    (keep_fast, keep_slow) = (f64::NAN, f64::NAN);
                }
            }
            let window = c.window.max(2) as usize;
            for (ring, r) in [(&mut self.fast, keep_fast), (&mut self.slow, keep_slow)] {
                if r.is_finite() {
                    ring.push_back((ts, r));
                    while ring.len() > window {
                        ring.pop_front();
                    }
                }
            }
        }
        self.history.push_back(Step {
            ts,
            observed: value,
            learned: verdict.learn,
            expected: expected.map_or(f64::NAN, |e| e.1),
            forecast: forecast.is_some(),
        });
        while self.history.len() > HISTORY.max(c.baseline_len as usize) {
            self.history.pop_front();
        }
        if let Some(leak) = &mut self.leak
            && let Some(found) = leak.observe(ts, verdict.learn)
        {
            verdict.anomalies.push(leak_anomaly(
                key,
                self.resource,
                ts,
                &found,
                leak.config.window_ms,
            ));
        }
        verdict
    }

    /// The centre and scale of recent residuals (see the module documentation).
    fn residual_stats(
        &self,
        ring: &VecDeque<(TimestampMs, f64)>,
        expected: f64,
        forecast: Option<OneStep>,
    ) -> Option<(f64, f64)> {
        let mut r: Vec<f64> = ring.iter().map(|x| x.1).collect();
        let centre = median(&mut r)?;
        let mut dev: Vec<f64> = r.iter().map(|x| (x - centre).abs()).collect();
        dev.sort_unstable_by(f64::total_cmp);
        let mad = sorted_median(&dev)?;
        // The 90th percentile of the deviations too: a series that jumps
        // one step in ten has a median deviation of almost nothing, but its
        // jumps are its usual variation, not outliers.
        let q90 = dev[(dev.len() * 9 / 10).min(dev.len() - 1)];
        let floor = (self.config.rel_floor * expected.abs()).max(1e-9);
        let from_forecast = forecast
            .map(|f| f.scale)
            .filter(|s| s.is_finite())
            .unwrap_or(0.0);
        let spread = (1.4826 * mad).max(q90 / 1.645);
        Some((centre, spread.max(from_forecast).max(floor)))
    }

    /// The anomaly for a CUSUM alarm, if the shift is material: at least
    /// `min_shift_rel` of the level and the least deviation that counts.
    /// `now` is the current step (not yet in the history).
    fn shift_anomaly(&mut self, key: &SeriesKey, now: Step, shift: Shift) -> Option<Anomaly> {
        // The level before: what was expected at the first step of the
        // shift. The size: the median over the steps since of observed
        // minus expected, the expected being the forecast where there was
        // one (it knows the daily cycle, not the shift), else that level
        // before (the own baseline has partly caught up since).
        let steps: Vec<Step> = self
            .history
            .iter()
            .copied()
            .filter(|s| s.ts >= shift.since && s.expected.is_finite())
            .chain(std::iter::once(now))
            .collect();
        let before = steps[0].expected;
        let mut diffs: Vec<f64> = steps
            .iter()
            .map(|s| s.observed - if s.forecast { s.expected } else { before })
            .collect();
        let size = median(&mut diffs)?;
        let r = self.resource;
        if size.abs() < self.min_shift_rel * before.abs() || size.abs() < self.min_deviation {
            // Not worth a reset: the CUSUM starts over.
            return None;
        }
        Some(Anomaly {
            ts: now.ts,
            since: shift.since,
            key: key.clone(),
            kind: AnomalyKind::LevelShift,
            reason: format!(
                "{r} level {} by {} (from about {} to about {}) over the last {}, {} steps in a row away from the expected",
                if size > 0.0 { "rose" } else { "fell" },
                amount(r, size.abs()),
                amount(r, before),
                amount(r, (before + size).max(0.0)),
                duration(now.ts - shift.since),
                shift.steps,
            ),
            magnitude: size,
            score: shift.score,
        })
    }

    /// The observations from `since` on that it still holds (the last 64
    /// steps at most), as observed (outliers not clipped), oldest first:
    /// after a level shift, what a forecaster should relearn from (see
    /// [`crate::ChangePoint`]).
    pub fn observed_since(&self, since: TimestampMs) -> Vec<(TimestampMs, f64)> {
        self.history
            .iter()
            .filter(|s| s.ts >= since)
            .map(|s| (s.ts, s.observed))
            .collect()
    }

    /// Approximate size of the state in bytes.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.history.len() * std::mem::size_of::<Step>()
            + (self.fast.len() + self.slow.len()) * 16
            + self.leak.as_ref().map_or(0, |l| l.closed.len() * 24)
    }
}

fn leak_anomaly(
    key: &SeriesKey,
    r: Resource,
    ts: TimestampMs,
    leak: &Leak,
    window_ms: i64,
) -> Anomaly {
    let mut reason = format!(
        "{r} grew {} over {} ({}/h) without falling back, to {}",
        amount(r, leak.growth),
        duration(window_ms),
        signed(amount(r, leak.per_hour)),
        amount(r, leak.level),
    );
    match leak.previous_day_peak {
        Some(p) => {
            let _ = write!(reason, "; the previous day's peak was {}", amount(r, p));
        }
        None => reason.push_str("; no day of history to compare with"),
    }
    Anomaly {
        ts,
        since: leak.since,
        key: key.clone(),
        kind: AnomalyKind::MemoryLeak,
        reason,
        magnitude: leak.growth,
        score: leak.score,
    }
}

fn signed(s: String) -> String {
    if s.starts_with('-') {
        s
    } else {
        format!("+{s}")
    }
}

/// An amount of a resource for people: "1.2 GiB", "205 MiB", "0.75 cores".
pub fn amount(resource: Resource, value: f64) -> String {
    match resource {
        Resource::Memory => bytes(value, ""),
        Resource::IoRead | Resource::IoWrite | Resource::NetRx | Resource::NetTx => {
            bytes(value, "/s")
        }
        Resource::Cpu => format!("{} cores", sig3(value)),
        Resource::DiskIo => format!("{} %", sig3(value)),
        Resource::IoReadOps | Resource::IoWriteOps => format!("{} ops/s", sig3(value)),
    }
}

fn bytes(v: f64, suffix: &str) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v;
    let mut u = 0;
    while x.abs() >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    format!("{} {}{suffix}", sig3(x), UNITS[u])
}

/// Three significant digits, without trailing zeros: 1.23, 12.3, 123, 1234.
fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    let decimals = if a >= 100.0 || a == 0.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        // Enough for three significant digits, at most 6.
        (2 - a.log10().floor() as i32).clamp(0, 6) as usize
    };
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A duration for people: "35 min", "6 h", "1.5 h", "2 d".
fn duration(ms: i64) -> String {
    if ms < HOUR_MS {
        format!("{} min", (ms as f64 / MINUTE_MS as f64).round())
    } else if ms < 2 * DAY_MS {
        format!("{} h", sig3(ms as f64 / HOUR_MS as f64))
    } else {
        format!("{} d", sig3(ms as f64 / DAY_MS as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const STEP: i64 = 300_000;
    const MIB: f64 = 1024.0 * 1024.0;
    const GIB: f64 = 1024.0 * MIB;

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

    fn mem_key() -> SeriesKey {
        SeriesKey::new("h", "app", Resource::Memory)
    }

    fn cpu_key() -> SeriesKey {
        SeriesKey::new("h", "app", Resource::Cpu)
    }

    /// Runs a series (one value per 5-minute step) through a detector
    /// without forecasts; returns every anomaly.
    fn run(resource: Resource, config: &AnomalyConfig, values: &[f64]) -> Vec<Anomaly> {
        let key = SeriesKey::new("h", "app", resource);
        let mut d = SeriesAnomalyDetector::new(resource, config);
        values
            .iter()
            .enumerate()
            .flat_map(|(i, &v)| d.observe(&key, i as i64 * STEP, v, None).anomalies)
            .collect()
    }

    fn of_kind(a: &[Anomaly], kind: AnomalyKind) -> Vec<&Anomaly> {
        a.iter().filter(|a| a.kind == kind).collect()
    }

    /// 1 GiB with a daily cycle of +-100 MiB and 5 MiB of noise.
    fn memory_day(rng: &mut Rng, i: usize) -> f64 {
        let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
        GIB + 100.0 * MIB * phase.sin() + 5.0 * MIB * rng.normal()
    }

    #[test]
    fn a_leak_is_found_with_a_reason() {
        let mut rng = Rng(1);
        // Two normal days, then +150 MiB/h from the start of day 3.
        let start = 2 * 288;
        let values: Vec<f64> = (0..4 * 288)
            .map(|i| {
                let leak = if i >= start {
                    150.0 * MIB * (i - start) as f64 / 12.0
                } else {
                    0.0
                };
                memory_day(&mut rng, i) + leak
            })
            .collect();
        let found = run(Resource::Memory, &AnomalyConfig::default(), &values);
        let leaks = of_kind(&found, AnomalyKind::MemoryLeak);
        assert!(!leaks.is_empty(), "{found:#?}");
        let first = leaks[0];
        let hours_in = (first.ts - start as i64 * STEP) as f64 / HOUR_MS as f64;
        assert!(
            (3.0..9.0).contains(&hours_in),
            "found {hours_in} h after the leak began"
        );
        assert!(first.reason.starts_with("memory grew "), "{}", first.reason);
        assert!(first.reason.contains(" over 6 h (+"), "{}", first.reason);
        assert!(
            first.reason.contains("MiB/h) without falling back"),
            "{}",
            first.reason
        );
        assert!(
            first.reason.contains("the previous day's peak was"),
            "{}",
            first.reason
        );
        // Found before the window is all leak: the growth it reports
        // is between the least that counts and the leak's 900 MiB per 6 h
        // (plus the daily cycle's rise).
        assert!(
            first.magnitude > 102.0 * MIB && first.magnitude < 1.25 * 900.0 * MIB,
            "{}",
            first.reason
        );
        // Reported once a day while it goes on.
        assert!(leaks.len() <= 2, "{leaks:#?}");
        eprintln!("leak: {}", first.reason);
    }

    #[test]
    fn a_sawtooth_is_not_a_leak() {
        let mut rng = Rng(2);
        // Grows 400 MiB over 3 h, then falls back (a cache flush, a GC), for 4 days;
        // and slower teeth of 10 h, longer than the window.
        for tooth_steps in [36usize, 120] {
            let values: Vec<f64> = (0..4 * 288)
                .map(|i| {
                    let within = (i % tooth_steps) as f64 / tooth_steps as f64;
                    GIB + 400.0 * MIB * within + 5.0 * MIB * rng.normal()
                })
                .collect();
            let found = run(Resource::Memory, &AnomalyConfig::default(), &values);
            assert!(
                of_kind(&found, AnomalyKind::MemoryLeak).is_empty(),
                "{found:#?}"
            );
        }
    }

    #[test]
    fn a_daily_cycle_is_not_a_leak() {
        let mut rng = Rng(3);
        // Memory that rises for 12 h and falls for 12 h, by 1 GiB, every day.
        let values: Vec<f64> = (0..5 * 288)
            .map(|i| {
                let phase = (i % 288) as f64 / 288.0;
                let tri = if phase < 0.5 {
                    phase * 2.0
                } else {
                    2.0 - phase * 2.0
                };
                2.0 * GIB + GIB * tri + 10.0 * MIB * rng.normal()
            })
            .collect();
        let found = run(Resource::Memory, &AnomalyConfig::default(), &values);
        assert!(
            of_kind(&found, AnomalyKind::MemoryLeak).is_empty(),
            "{found:#?}"
        );
        // Without the previous day to compare with, the rising half would
        // pass for a leak: that is what the daily reference is for.
        let config = AnomalyConfig {
            leak: LeakConfig {
                require_daily_reference: false,
                ..LeakConfig::default()
            },
            ..AnomalyConfig::default()
        };
        let found = run(Resource::Memory, &config, &values[..288]);
        let leaks = of_kind(&found, AnomalyKind::MemoryLeak);
        assert!(!leaks.is_empty());
        assert!(
            leaks[0]
                .reason
                .ends_with("no day of history to compare with")
        );
    }

    #[test]
    fn a_level_shift_is_found_once_with_its_start() {
        let mut rng = Rng(4);
        let at = 300usize;
        for (before, after) in [(1.0, 2.0), (2.0, 1.0)] {
            let values: Vec<f64> = (0..600)
                .map(|i| if i < at { before } else { after } + 0.05 * rng.normal())
                .collect();
            let found = run(Resource::Cpu, &AnomalyConfig::default(), &values);
            let shifts = of_kind(&found, AnomalyKind::LevelShift);
            assert_eq!(shifts.len(), 1, "{found:#?}");
            let s = shifts[0];
            let delay = (s.ts - at as i64 * STEP) / STEP;
            assert!((4..=10).contains(&delay), "detected {delay} steps late");
            assert!(
                (s.since - at as i64 * STEP).abs() <= 2 * STEP,
                "since {}",
                s.since
            );
            assert!((s.magnitude - (after - before)).abs() < 0.1, "{}", s.reason);
            let word = if after > before { "rose" } else { "fell" };
            assert!(
                s.reason.starts_with(&format!("cpu level {word} by ")),
                "{}",
                s.reason
            );
            assert!(s.reason.contains(" cores (from about "), "{}", s.reason);
            // The first steps of the new level were outliers; no more after.
            assert!(
                of_kind(&found, AnomalyKind::Outlier).len() <= 3,
                "{found:#?}"
            );
            eprintln!("level shift: {}", s.reason);
        }
    }

    #[test]
    fn a_level_shift_against_a_forecast_resets_the_models() {
        let mut rng = Rng(5);
        let mut d = SeriesAnomalyDetector::new(Resource::Cpu, &AnomalyConfig::default());
        let key = cpu_key();
        let mut reset = None;
        for i in 0..400i64 {
            // A daily cycle the forecast knows, and a step of +1 core at 250
            // that it does not.
            let cycle = (i as f64 / 288.0 * std::f64::consts::TAU).sin();
            let v = 3.0 + cycle + if i >= 250 { 1.0 } else { 0.0 } + 0.1 * rng.normal();
            // After the alarm the engine resets its models, which then
            // know the new level.
            let known = if reset.is_some() { 1.0 } else { 0.0 };
            let f = OneStep {
                median: 3.0 + cycle + known,
                scale: 0.1,
            };
            let verdict = d.observe(&key, i * STEP, v, Some(f));
            if verdict.reset_since.is_some() {
                assert!(reset.is_none(), "one alarm only, at {i}");
                reset = verdict.reset_since;
            }
        }
        let since = reset.expect("the shift is found") / STEP;
        assert!((248..=251).contains(&since), "since step {since}");
    }

    #[test]
    fn spikes_are_outliers_learned_clipped_and_not_shifts() {
        let mut rng = Rng(6);
        let mut d = SeriesAnomalyDetector::new(Resource::Cpu, &AnomalyConfig::default());
        let key = cpu_key();
        let spikes = [100i64, 180, 181, 182, 300];
        let mut flagged = Vec::new();
        for i in 0..400i64 {
            let base = 2.0 + 0.1 * rng.normal();
            let v = if spikes.contains(&i) { 8.0 } else { base };
            let verdict = d.observe(&key, i * STEP, v, None);
            assert!(verdict.reset_since.is_none(), "a level shift at {i}");
            if verdict.outlier {
                assert!(
                    verdict.learn < 3.0 && verdict.learn > 2.0,
                    "learned {}",
                    verdict.learn
                );
                let a = &verdict.anomalies[0];
                assert_eq!((a.kind, a.ts), (AnomalyKind::Outlier, i * STEP));
                assert!(a.reason.starts_with("cpu 8 cores is "), "{}", a.reason);
                assert!(a.reason.contains("above the expected "), "{}", a.reason);
                flagged.push(i);
            } else {
                assert_eq!(verdict.learn, v);
            }
        }
        assert_eq!(flagged, spikes);
        // A dip is an outlier too.
        let v = d.observe(&key, 400 * STEP, 0.2, None);
        assert!(v.outlier && v.anomalies[0].reason.contains("below the expected"));
    }

    #[test]
    fn a_run_of_outliers_stops_being_outliers() {
        let mut d = SeriesAnomalyDetector::new(Resource::Cpu, &AnomalyConfig::default());
        let key = cpu_key();
        let mut rng = Rng(7);
        for i in 0..100i64 {
            d.observe(&key, i * STEP, 1.0 + 0.02 * rng.normal(), None);
        }
        let outliers: Vec<bool> = (100..106i64)
            .map(|i| d.observe(&key, i * STEP, 5.0, None).outlier)
            .collect();
        assert_eq!(outliers, [true, true, true, false, false, false]);
    }

    #[test]
    fn one_step_from_quantiles() {
        let levels = [0.05, 0.25, 0.5, 0.75, 0.95];
        let f = OneStep::from_quantiles(&levels, &[1.0, 2.0, 3.0, 4.349, 6.0]).unwrap();
        assert_eq!(f.median, 3.0);
        assert!((f.scale - 2.349 / 1.349).abs() < 1e-12);
        // A flat middle falls back to the 5-95 % range.
        let f = OneStep::from_quantiles(&levels, &[1.0, 3.0, 3.0, 3.0, 4.29]).unwrap();
        assert!((f.scale - 1.0).abs() < 0.01, "{f:?}");
        assert!(OneStep::from_quantiles(&levels, &[3.0, 2.0, 1.0, 0.0, 0.0]).is_none());
    }

    #[test]
    fn amounts_read_well() {
        assert_eq!(amount(Resource::Memory, 1.2 * GIB), "1.2 GiB");
        assert_eq!(amount(Resource::Memory, 205.0 * MIB), "205 MiB");
        assert_eq!(amount(Resource::Memory, 512.0), "512 B");
        assert_eq!(amount(Resource::Cpu, 0.75), "0.75 cores");
        assert_eq!(amount(Resource::Cpu, 0.0123), "0.0123 cores");
        assert_eq!(amount(Resource::NetRx, 3.0 * MIB), "3 MiB/s");
        assert_eq!(amount(Resource::DiskIo, 12.34), "12.3 %");
        assert_eq!(amount(Resource::IoReadOps, 1234.0), "1234 ops/s");
        assert_eq!(amount(Resource::IoWriteOps, 2.5), "2.5 ops/s");
        assert_eq!(duration(35 * MINUTE_MS), "35 min");
        assert_eq!(duration(6 * HOUR_MS), "6 h");
        assert_eq!(duration(90 * MINUTE_MS), "1.5 h");
        assert_eq!(duration(3 * DAY_MS), "3 d");
    }

    #[test]
    fn state_round_trips() {
        let mut d = SeriesAnomalyDetector::new(Resource::Memory, &AnomalyConfig::default());
        let mut rng = Rng(8);
        for i in 0..500 {
            d.observe(&mem_key(), i * STEP, memory_day(&mut rng, i as usize), None);
        }
        let bytes = postcard::to_stdvec(&d).unwrap();
        let back: SeriesAnomalyDetector = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, d);
        // JSON keeps the shape (its floats may differ in the last digit).
        let json: SeriesAnomalyDetector =
            serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(json.state_bytes(), d.state_bytes());
        eprintln!(
            "anomaly state of a memory series: {} bytes as postcard",
            bytes.len()
        );
        assert!(bytes.len() < 16 * 1024);
    }

    /// The real Google cluster memory series (one day, 5-minute steps):
    /// how many series get flagged, with what, and how many flags
    /// hindsight (the rest of the day) contradicts.
    #[test]
    fn gcd_memory_sanity() {
        let dir = match std::env::var_os("PRESCIENT_TRACES") {
            Some(dir) => std::path::PathBuf::from(dir),
            None => {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces")
            }
        };
        let path = dir.join("gcd.csv.gz");
        if !path.exists() {
            eprintln!("skipped: {} not found", path.display());
            return;
        }
        let mut series: BTreeMap<SeriesKey, Vec<(i64, f64)>> = BTreeMap::new();
        for record in prescient_trace::TraceReader::open(&path).unwrap() {
            let r = record.unwrap();
            if r.resource == Resource::Memory {
                series
                    .entry(r.key())
                    .or_default()
                    .push((r.ts_ms(), r.value));
            }
        }
        assert_eq!(series.len(), 800);
        // The default detectors, and beside them a leak detector without
        // the daily reference (the trace is one day long, so with it no
        // leak can be flagged): what the shape tests alone would say.
        let shape_only = LeakConfig {
            require_daily_reference: false,
            ..LeakConfig::default()
        };
        let config = AnomalyConfig::default();
        let mut events: BTreeMap<&str, usize> = BTreeMap::new();
        let mut flagged: BTreeMap<&str, usize> = BTreeMap::new();
        // Flags the rest of the day contradicts: a leak whose series later
        // falls back by half the growth; a shift whose series is back within
        // a third of it an hour later.
        let mut contradicted: BTreeMap<&str, usize> = BTreeMap::new();
        let mut examples: BTreeMap<&str, String> = BTreeMap::new();
        let mut steps = 0usize;
        let started = std::time::Instant::now();
        // Unoptimised builds take every 4th series, to keep `cargo test`
        // quick; `cargo test --release` runs all 800.
        let every = if cfg!(debug_assertions) { 4 } else { 1 };
        let series: BTreeMap<SeriesKey, Vec<(i64, f64)>> =
            series.into_iter().step_by(every).collect();
        for (key, values) in &series {
            let mut d = SeriesAnomalyDetector::new(Resource::Memory, &config);
            let mut shape = LeakDetector::new(Resource::Memory, shape_only.clone());
            let mut kinds = std::collections::BTreeSet::new();
            for (i, &(ts, v)) in values.iter().enumerate() {
                steps += 1;
                let verdict = d.observe(key, ts, v, None);
                let mut found: Vec<(&str, Anomaly)> = verdict
                    .anomalies
                    .into_iter()
                    .map(|a| (a.kind.as_str(), a))
                    .collect();
                if let Some(leak) = shape.observe(ts, verdict.learn) {
                    let a = leak_anomaly(key, Resource::Memory, ts, &leak, shape_only.window_ms);
                    found.push(("memory_leak (shape only)", a));
                }
                for (kind, a) in found {
                    *events.entry(kind).or_default() += 1;
                    kinds.insert(kind);
                    examples
                        .entry(kind)
                        .or_insert_with(|| format!("{key}: {}", a.reason));
                    let later = &values[i + 1..];
                    let wrong = match a.kind {
                        AnomalyKind::MemoryLeak => {
                            later.iter().any(|x| x.1 < v - 0.5 * a.magnitude)
                        }
                        AnomalyKind::LevelShift if later.len() >= 12 => {
                            let mut hour: Vec<f64> = later[..12].iter().map(|x| x.1).collect();
                            let after = median(&mut hour).unwrap();
                            ((after - (v - a.magnitude)).abs()) < a.magnitude.abs() / 3.0
                        }
                        _ => false,
                    };
                    if wrong {
                        *contradicted.entry(kind).or_default() += 1;
                    }
                }
            }
            for k in kinds {
                *flagged.entry(k).or_default() += 1;
            }
        }
        let per_step = started.elapsed() / steps as u32;
        let mut report = format!(
            "gcd memory, no forecast given: {} series, {steps} steps, {per_step:?} per observation (all detectors, and the shape-only leak detector)\n",
            series.len()
        );
        let n = series.len() as f64;
        for kind in [
            "outlier",
            "level_shift",
            "memory_leak",
            "memory_leak (shape only)",
        ] {
            let get = |m: &BTreeMap<&str, usize>| m.get(kind).copied().unwrap_or(0);
            let (e, f, w) = (get(&events), get(&flagged), get(&contradicted));
            let _ = writeln!(
                report,
                "  {kind:<25} {e:>5} anomalies ({:.3} % of steps) in {f:>3} series ({:.1} %){}{}",
                100.0 * e as f64 / steps as f64,
                100.0 * f as f64 / n,
                if kind == "outlier" {
                    String::new()
                } else {
                    format!("; {w} contradicted later in the day")
                },
                examples
                    .get(kind)
                    .map(|x| format!("\n      e.g. {x}"))
                    .unwrap_or_default(),
            );
        }
        eprintln!("{report}");
        // Guards against a detector gone wild on real data.
        let share = |k| flagged.get(k).copied().unwrap_or(0) as f64 / n;
        let wrong = |k| {
            contradicted.get(k).copied().unwrap_or(0) as f64
                / events.get(k).copied().unwrap_or(0).max(1) as f64
        };
        assert!(share("outlier") < 0.4, "{report}");
        assert!(share("level_shift") < 0.25, "{report}");
        assert!(wrong("level_shift") < 0.25, "{report}");
        assert!(share("memory_leak (shape only)") < 0.1, "{report}");
        assert!(wrong("memory_leak (shape only)") < 0.3, "{report}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_input_is_survived(
            obs in prop::collection::vec((
                prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-1.0), Just(0.0), 0.0f64..1e12, -1e300f64..1e300],
                -2i64..6,
                prop::option::of((prop_oneof![Just(f64::NAN), -10.0f64..10.0, 0.0f64..1e12], prop_oneof![Just(f64::NAN), Just(0.0), Just(-1.0), 0.0f64..1e9])),
            ), 0..300),
        ) {
            let config = AnomalyConfig {
                leak: LeakConfig { require_daily_reference: false, window_ms: HOUR_MS, ..LeakConfig::default() },
                ..AnomalyConfig::default()
            };
            let mut d = SeriesAnomalyDetector::new(Resource::Memory, &config);
            let mut ts = 0i64;
            for (v, dt, f) in obs {
                ts += dt * STEP;
                let f = f.map(|(median, scale)| OneStep { median, scale });
                let verdict = d.observe(&mem_key(), ts, v, f);
                prop_assert!(verdict.learn == v || verdict.outlier || v.is_nan());
            }
        }
    }
}
