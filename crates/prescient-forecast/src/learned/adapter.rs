//! The per-series adapter: a [`Model`] that keeps its series' recent history
//! and forecasts with the shared forest.

use std::sync::{Arc, RwLock};

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use super::LearnedError;
use super::features::{Bucketer, DayWindow, History, Spans, origin_features};
use super::forest::{LevelMap, MAX_LEVELS, QuantileForest};
use crate::{Model, SeriesContext};

/// Version of [`LearnedState::to_bytes`]'s format.
pub const STATE_FORMAT_VERSION: u32 = 1;

const STATE_MAGIC: [u8; 4] = *b"PRLS";

/// The trained forest every series of an engine shares, swappable in place:
/// the agent retrains in the background and [`replace`](Self::replace)s it,
/// and every [`LearnedModel`] holding a clone of this handle forecasts with
/// the new forest from its next call on.
#[derive(Debug, Clone)]
pub struct SharedForest {
    inner: Arc<RwLock<Arc<QuantileForest>>>,
}

impl SharedForest {
    /// A handle to `forest`.
    pub fn new(forest: impl Into<Arc<QuantileForest>>) -> SharedForest {
        SharedForest {
            inner: Arc::new(RwLock::new(forest.into())),
        }
    }

    /// The forest in use now.
    pub fn current(&self) -> Arc<QuantileForest> {
        // A poisoned lock only means a writer panicked between two plain
        // assignments: the value inside is still a whole forest.
        match self.inner.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Swaps in a retrained forest, returning the old one. Refuses a forest
    /// with another step, which the series' kept history would not fit.
    pub fn replace(
        &self,
        forest: impl Into<Arc<QuantileForest>>,
    ) -> Result<Arc<QuantileForest>, LearnedError> {
        let forest = forest.into();
        let mut g = match self.inner.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if g.step_ms() != forest.step_ms() {
            return Err(LearnedError::StepMismatch {
                kept_ms: g.step_ms(),
                new_ms: forest.step_ms(),
            });
        }
        Ok(std::mem::replace(&mut *g, forest))
    }
}

/// What a [`LearnedModel`] keeps of its series (serialisable, about 8 KiB at
/// the default 5-minute step): a week of bucket means in a ring, and the
/// bucket being filled. In memory it also keeps the last day sorted (1 KiB
/// more, rebuilt from the ring on loading).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnedState {
    ctx: SeriesContext,
    /// The model step the ring is kept at.
    bucket_ms: i64,
    /// Bucket means, NaN where missing; `ring[head]` is the newest bucket.
    ring: Vec<f32>,
    head: usize,
    bucketer: Bucketer,
    /// The last day's values, sorted: derived from the ring, rebuilt on
    /// loading rather than stored.
    #[serde(skip)]
    day: DayWindow,
}

impl LearnedState {
    /// An empty history for a series, kept at the forest's step.
    pub fn new(ctx: SeriesContext, forest: &QuantileForest) -> LearnedState {
        LearnedState {
            ctx,
            bucket_ms: forest.step_ms(),
            ring: vec![f32::NAN; forest.history_len()],
            head: 0,
            bucketer: Bucketer::new(),
            day: DayWindow::default(),
        }
    }

    /// Buckets in a day at the state's step.
    fn day_len(&self) -> usize {
        Spans::new(self.bucket_ms).day
    }

    /// Recomputes the sorted last day from the ring.
    fn rebuild_day(&mut self) {
        let n = self.day_len();
        let h = RingHistory {
            ring: &self.ring,
            head: self.head,
        };
        self.day = if self.ring.is_empty() || self.bucketer.newest.is_none() {
            DayWindow::default()
        } else {
            let n = n.min(self.ring.len());
            let mut sorted: Vec<f32> = (0..n).map(|b| h.at(b)).filter(|v| v.is_finite()).collect();
            sorted.sort_unstable_by(f32::total_cmp);
            DayWindow { sorted }
        };
    }

    /// The series this history is of.
    pub fn context(&self) -> SeriesContext {
        self.ctx
    }

    /// Serialises the state (postcard behind a magic number and
    /// [`STATE_FORMAT_VERSION`]); NaN gaps survive, unlike in JSON.
    pub fn to_bytes(&self) -> Result<Vec<u8>, LearnedError> {
        let mut out = STATE_MAGIC.to_vec();
        let body = postcard::to_stdvec(&(STATE_FORMAT_VERSION, self))
            .map_err(|e| LearnedError::Encode(e.to_string()))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads what [`to_bytes`](Self::to_bytes) wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<LearnedState, LearnedError> {
        let body = bytes
            .strip_prefix(&STATE_MAGIC)
            .ok_or(LearnedError::NotAState)?;
        let (version, rest) = postcard::take_from_bytes::<u32>(body)
            .map_err(|e| LearnedError::Decode(e.to_string()))?;
        if version != STATE_FORMAT_VERSION {
            return Err(LearnedError::UnsupportedVersion {
                what: "learned model state",
                found: version,
                supported: STATE_FORMAT_VERSION,
            });
        }
        let mut state: LearnedState =
            postcard::from_bytes(rest).map_err(|e| LearnedError::Decode(e.to_string()))?;
        if state.head >= state.ring.len().max(1) {
            return Err(LearnedError::Corrupt(format!(
                "state ring of {} buckets with head {}",
                state.ring.len(),
                state.head
            )));
        }
        state.rebuild_day();
        Ok(state)
    }

    fn push(&mut self, ts: TimestampMs, value: f64) {
        let cap = self.ring.len();
        let day_len = self.day_len();
        if cap <= day_len {
            return;
        }
        let Self {
            ring,
            head,
            bucketer,
            ctx,
            bucket_ms,
            day,
        } = self;
        let mut newest = bucketer.newest;
        bucketer.push(ts, value, ctx.step_ms, *bucket_ms, cap, |b, mean| {
            match newest {
                Some(n) if b == n => day.remove(ring[*head]),
                Some(n) if b > n && b - n < cap as i64 => {
                    for _ in n..b {
                        *head = (*head + 1) % cap;
                        // The slot reused held a bucket a ring ago, long out
                        // of the day; the bucket a day back now leaves it.
                        ring[*head] = f32::NAN;
                        day.remove(ring[(*head + cap - day_len) % cap]);
                    }
                }
                _ => {
                    // First bucket, or a gap longer than the ring: start over.
                    ring.fill(f32::NAN);
                    day.sorted.clear();
                    *head = 0;
                }
            }
            newest = Some(b);
            ring[*head] = mean;
            day.insert(mean);
        });
    }
}

/// The ring seen from its newest bucket.
struct RingHistory<'a> {
    ring: &'a [f32],
    head: usize,
}

impl History for RingHistory<'_> {
    #[inline]
    fn at(&self, back: usize) -> f32 {
        let cap = self.ring.len();
        if back >= cap {
            return f32::NAN;
        }
        let i = if back <= self.head {
            self.head - back
        } else {
            self.head + cap - back
        };
        self.ring[i]
    }
}

/// The learned model of one series: its own recent history, and the forest
/// shared by all series.
///
/// The forest forecasts means over buckets of its step (5 minutes by
/// default). A series with a finer step is averaged into buckets, and each of
/// its steps gets the quantiles of its bucket's mean (narrower than those of a
/// single 10-s value); a step inside the bucket being filled gets those of the
/// next bucket. A coarser step fills every bucket it covers.
///
/// Serialised, a model is its [`LearnedState`] only: the forest is stored
/// once for all series, and a restored model forecasts its series' own
/// empirical quantiles of the last day (the forest's starting point) until
/// the forest is attached again with [`LearnedModel::attach`].
#[derive(Debug, Clone)]
pub struct LearnedModel {
    forest: Option<SharedForest>,
    state: LearnedState,
}

impl PartialEq for LearnedModel {
    fn eq(&self, other: &Self) -> bool {
        self.state == other.state
    }
}

impl Serialize for LearnedModel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.state.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LearnedModel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut state = LearnedState::deserialize(d)?;
        if state.head >= state.ring.len().max(1) {
            return Err(serde::de::Error::custom(format!(
                "learned model state: ring of {} buckets with head {}",
                state.ring.len(),
                state.head
            )));
        }
        state.rebuild_day();
        Ok(LearnedModel {
            forest: None,
            state,
        })
    }
}

impl LearnedModel {
    /// A model of a new series.
    pub fn new(forest: SharedForest, ctx: SeriesContext) -> LearnedModel {
        let state = LearnedState::new(ctx, &forest.current());
        LearnedModel {
            forest: Some(forest),
            state,
        }
    }

    /// A model of a new series whose forest is not known yet: it keeps its
    /// history at the default 5-minute step and forecasts empirical
    /// quantiles of its last day until [`attach`](Self::attach).
    pub fn detached(ctx: SeriesContext) -> LearnedModel {
        let spans = Spans::new(DETACHED_STEP_MS);
        LearnedModel {
            forest: None,
            state: LearnedState {
                ctx,
                bucket_ms: DETACHED_STEP_MS,
                ring: vec![f32::NAN; spans.history_len()],
                head: 0,
                bucketer: Bucketer::new(),
                day: DayWindow::default(),
            },
        }
    }

    /// Attaches the shared forest (after a restore, or to a detached model).
    /// A history kept at another step than the forest's cannot be used:
    /// the model then starts its history afresh at the forest's step.
    pub fn attach(&mut self, forest: SharedForest) {
        let f = forest.current();
        if self.state.bucket_ms != f.step_ms() || self.state.ring.len() != f.history_len() {
            self.state = LearnedState::new(self.state.ctx, &f);
        }
        self.forest = Some(forest);
    }

    /// A model resumed from a saved state; refuses a state kept at another
    /// step than the forest's, or damaged.
    pub fn from_state(
        forest: SharedForest,
        state: LearnedState,
    ) -> Result<LearnedModel, LearnedError> {
        let f = forest.current();
        if state.bucket_ms != f.step_ms() {
            return Err(LearnedError::StepMismatch {
                kept_ms: state.bucket_ms,
                new_ms: f.step_ms(),
            });
        }
        if state.ring.len() != f.history_len() || state.head >= state.ring.len() {
            return Err(LearnedError::Corrupt(format!(
                "state ring of {} buckets with head {} (expected {} buckets)",
                state.ring.len(),
                state.head,
                f.history_len()
            )));
        }
        Ok(LearnedModel {
            forest: Some(forest),
            state,
        })
    }

    /// The state to save.
    pub fn state(&self) -> &LearnedState {
        &self.state
    }

    /// The shared forest handle, once attached.
    pub fn forest(&self) -> Option<&SharedForest> {
        self.forest.as_ref()
    }
}

/// The step a detached model keeps its history at: the forests' default.
const DETACHED_STEP_MS: i64 = 300_000;

/// The empirical quantile at `level` of sorted values, interpolated.
fn empirical_quantile(sorted: &[f32], level: f64) -> f64 {
    match sorted.len() {
        0 => 0.0,
        1 => sorted[0] as f64,
        n => {
            let pos = level.clamp(0.0, 1.0) * (n - 1) as f64;
            let i = (pos.floor() as usize).min(n - 2);
            let frac = pos - i as f64;
            sorted[i] as f64 + frac * (sorted[i + 1] as f64 - sorted[i] as f64)
        }
    }
}

impl Model for LearnedModel {
    fn name(&self) -> &'static str {
        "learned"
    }

    fn update(&mut self, ts: TimestampMs, value: f64) {
        self.state.push(ts, value);
    }

    fn forecast(&self, start: TimestampMs, horizon: usize, levels: &[f64], out: &mut [f64]) {
        let n = levels.len();
        if n == 0 {
            return;
        }
        let steps = horizon.min(out.len() / n);
        let out = &mut out[..steps * n];
        let Some(newest) = self.state.bucketer.newest else {
            out.fill(0.0);
            return;
        };
        let Some(forest) = self.forest.as_ref().map(SharedForest::current) else {
            // Not attached yet: the series' own last day, the forest's
            // starting point.
            for row in out.chunks_mut(n) {
                for (o, &level) in row.iter_mut().zip(levels) {
                    *o = empirical_quantile(&self.state.day.sorted, level).max(0.0);
                }
            }
            return;
        };
        let bucket = self.state.bucket_ms.max(1);
        let h = RingHistory {
            ring: &self.state.ring,
            head: self.state.head,
        };
        let origin = origin_features(&h, &forest.spans, &self.state.day.sorted);
        // Trained levels asked for (the usual case): no interpolation.
        let map = (levels != forest.levels()).then(|| LevelMap::new(forest.levels(), levels));
        let mut q = [0.0f64; MAX_LEVELS];
        let mut last_k = 0usize;
        for (j, row) in out.chunks_mut(n).enumerate() {
            let t = start.saturating_add(self.state.ctx.step_ms.saturating_mul(j as i64));
            // Buckets ahead of the origin; at least one (see the type's doc).
            let k = usize::try_from(t.div_euclid(bucket).saturating_sub(newest))
                .unwrap_or(0)
                .max(1);
            if k != last_k {
                let target_ms = newest.saturating_add(k as i64).saturating_mul(bucket);
                forest.quantiles(&h, &self.state.day.sorted, &origin, k, target_ms, &mut q);
                last_k = k;
            }
            match &map {
                None => row.copy_from_slice(&q[..n]),
                Some(m) => m.apply(&q[..forest.levels().len()], row),
            }
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.state.ring.capacity() + self.state.day.sorted.capacity())
                * std::mem::size_of::<f32>()
    }
}
