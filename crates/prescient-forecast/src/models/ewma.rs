//! Recent level and volatility: exponentially weighted averages of the
//! level and of the absolute deviation from it, one fast and one slow.
//!
//! The fast pair (level half-life 5 minutes) follows a regime shift within
//! minutes and is what the next step most likely looks like; the slow pair
//! (1 hour) is the better guess further out, where the fast level's last
//! wiggle has no bearing. A forecast blends them by how far ahead it looks
//! (the fast level's weight decays with a 30-minute time constant). Every
//! half-life is in time, not steps, so 10-second and 5-minute series (and
//! gaps) behave alike.

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use super::{normal_row, rows, z_scores};
use crate::model::{Model, SeriesContext};
use crate::stats::{elapsed, ewma_alpha, usable};

const MINUTE_MS: i64 = 60_000;
const FAST_LEVEL_HALF_LIFE_MS: i64 = 5 * MINUTE_MS;
const SLOW_LEVEL_HALF_LIFE_MS: i64 = 60 * MINUTE_MS;
const FAST_DEV_HALF_LIFE_MS: i64 = 60 * MINUTE_MS;
const SLOW_DEV_HALF_LIFE_MS: i64 = 6 * 60 * MINUTE_MS;
/// Time constant of the hand-over from the fast to the slow level.
const BLEND_MS: f64 = 30.0 * MINUTE_MS as f64;
/// Mean absolute deviation to standard deviation, for a normal.
const MAD_TO_SIGMA: f64 = 1.253_314;

/// EWMA of level and absolute deviation, fast and slow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentLevel {
    step_ms: i64,
    fast: f64,
    slow: f64,
    dev_fast: f64,
    dev_slow: f64,
    last_ts: Option<TimestampMs>,
    /// Observations seen (the first few set the deviations directly).
    seen: u64,
}

impl RecentLevel {
    /// A fresh model.
    pub fn new(ctx: SeriesContext) -> Self {
        RecentLevel {
            step_ms: ctx.step_ms.max(1),
            fast: 0.0,
            slow: 0.0,
            dev_fast: 0.0,
            dev_slow: 0.0,
            last_ts: None,
            seen: 0,
        }
    }

    /// The fast level (for tests and diagnostics).
    pub fn level(&self) -> f64 {
        self.fast
    }
}

impl Model for RecentLevel {
    fn name(&self) -> &'static str {
        "recent"
    }

    fn update(&mut self, ts: TimestampMs, value: f64) {
        let Some(v) = usable(value) else { return };
        let dt = match self.last_ts {
            None => {
                self.fast = v;
                self.slow = v;
                self.last_ts = Some(ts);
                self.seen = 1;
                return;
            }
            Some(last) if ts <= last => return,
            Some(last) => elapsed(last, ts).min(self.step_ms.saturating_mul(1000)),
        };
        // Deviations are measured against the levels before this sample, so
        // they are one-step-ahead errors.
        let (ef, es) = ((v - self.fast).abs(), (v - self.slow).abs());
        if self.seen == 1 {
            self.dev_fast = ef;
            self.dev_slow = es;
        } else {
            self.dev_fast += ewma_alpha(dt, FAST_DEV_HALF_LIFE_MS) * (ef - self.dev_fast);
            self.dev_slow += ewma_alpha(dt, SLOW_DEV_HALF_LIFE_MS) * (es - self.dev_slow);
        }
        self.fast += ewma_alpha(dt, FAST_LEVEL_HALF_LIFE_MS) * (v - self.fast);
        self.slow += ewma_alpha(dt, SLOW_LEVEL_HALF_LIFE_MS) * (v - self.slow);
        self.last_ts = Some(ts);
        self.seen += 1;
    }

    fn forecast(&self, start: TimestampMs, horizon: usize, levels: &[f64], out: &mut [f64]) {
        let n = levels.len();
        let mut z = [0.0; 32];
        let mut zv;
        let z: &mut [f64] = if n <= 32 {
            &mut z[..n]
        } else {
            zv = vec![0.0; n];
            &mut zv
        };
        z_scores(levels, z);
        let last = self.last_ts.unwrap_or(start);
        for h in 0..rows(horizon, levels, out) {
            let ts = start.saturating_add((h as i64).saturating_mul(self.step_ms));
            let ahead = elapsed(last, ts).max(self.step_ms) as f64;
            let w = (-ahead / BLEND_MS).exp();
            let center = w * self.fast + (1.0 - w) * self.slow;
            let sigma = MAD_TO_SIGMA * (w * self.dev_fast + (1.0 - w) * self.dev_slow);
            normal_row(center, sigma, z, &mut out[h * n..(h + 1) * n]);
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
    }
}
