//! The VPA's view: a decaying histogram of usage (24-hour half-life,
//! exponential buckets 5% apart), read at each quantile level. The same
//! histogram as the VPA and Autopilot reference policies
//! ([`crate::histogram`]); unlike the VPA, which answers a bucket's upper
//! edge, a quantile is interpolated inside its bucket, since the engine
//! wants the best estimate rather than a safe one (calibration adds the
//! safety). Its forecast is the same for every step ahead.

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use super::rows;
use crate::histogram::{BucketScheme, DecayingHistogram};
use crate::model::{Model, SeriesContext};
use crate::stats::usable;

const HALF_LIFE_MS: i64 = 24 * 3_600_000;

/// Quantiles of a decaying histogram of usage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistogramModel {
    hist: DecayingHistogram,
    last_ts: Option<TimestampMs>,
}

impl PartialEq for HistogramModel {
    fn eq(&self, other: &Self) -> bool {
        self.last_ts == other.last_ts
            && self.hist.weights() == other.hist.weights()
            && self.hist.sums() == other.hist.sums()
            && self.hist.total_weight() == other.hist.total_weight()
    }
}

impl HistogramModel {
    /// A fresh model, with the VPA's buckets for the series' resource.
    pub fn new(ctx: SeriesContext) -> Self {
        HistogramModel {
            hist: DecayingHistogram::new(BucketScheme::for_resource(ctx.resource), HALF_LIFE_MS),
            last_ts: None,
        }
    }

    /// The `level` quantile, interpolated linearly inside its bucket.
    fn quantiles(&self, levels: &[f64], out: &mut [f64]) {
        let Some((lo, hi)) = self.hist.range() else {
            out.iter_mut().for_each(|o| *o = 0.0);
            return;
        };
        let weights = self.hist.weights();
        let scheme = self.hist.scheme();
        let total = self.hist.total_weight();
        let mut b = lo;
        let mut below = 0.0; // weight of buckets before b
        for (&q, o) in levels.iter().zip(out.iter_mut()) {
            let threshold = q.clamp(0.0, 1.0) * total;
            while b < hi && below + weights[b] < threshold {
                below += weights[b];
                b += 1;
            }
            let (start, end) = (scheme.start(b), scheme.upper_edge(b));
            let frac = if weights[b] > 0.0 {
                ((threshold - below) / weights[b]).clamp(0.0, 1.0)
            } else {
                1.0
            };
            *o = start + (end - start) * frac;
        }
    }
}

impl Model for HistogramModel {
    fn name(&self) -> &'static str {
        "histogram"
    }

    fn update(&mut self, ts: TimestampMs, value: f64) {
        let Some(v) = usable(value) else { return };
        if self.last_ts.is_some_and(|l| ts <= l) {
            return;
        }
        self.hist.add(v, ts);
        self.last_ts = Some(ts);
    }

    fn forecast(&self, _start: TimestampMs, horizon: usize, levels: &[f64], out: &mut [f64]) {
        let n = levels.len();
        let rows = rows(horizon, levels, out);
        if rows == 0 {
            return;
        }
        self.quantiles(levels, &mut out[..n]);
        for h in 1..rows {
            out.copy_within(0..n, h * n);
        }
    }

    fn state_bytes(&self) -> usize {
        // In memory: a weight and a sum per bucket (the scheme is shared by
        // every series). Serialised, only the non-empty buckets are written.
        std::mem::size_of::<Self>() + 2 * 8 * self.hist.weights().len()
    }
}
