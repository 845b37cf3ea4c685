//! The decaying histogram shared by the VPA and Autopilot recommenders.
//!
//! It follows the VPA recommender's `util` package: exponential buckets
//! (`histogram_options.go`), bucket weights with an epsilon below which a
//! bucket counts as empty (`histogram.go`), and exponential decay done by
//! giving *new* samples larger weights, `2^((t - reference) / half_life)`,
//! and renormalising when the exponent passes 100 (`decaying_histogram.go`).
//! Nothing is touched per step except the bucket a sample falls in.
//!
//! Beyond the VPA's histogram it keeps, per bucket, the weighted sum of the
//! exact sample values, which Autopilot needs (the weighted mean, and the
//! underrun of the ML recommender).
//!
//! It lives here (rather than in `prescient-sim`, whose VPA and Autopilot
//! policies use it too) because the forecast engine's histogram model is
//! built on it, and its state is serialised with the rest of a series'
//! model state.

use std::sync::{Arc, OnceLock};

use prescient_core::{Resource, TimestampMs};

/// A bucket with less weight than this is empty (the VPA's `epsilon`).
pub const EPSILON: f64 = 1e-4;

/// Bucket growth: each bucket is 5% wider than the one before it.
pub const BUCKET_GROWTH_RATIO: f64 = 1.05;

/// When a new sample's weight would pass `2^MAX_DECAY_EXPONENT`, the
/// reference time moves forward and all weights are rescaled (the VPA's
/// `maxDecayExponent`).
const MAX_DECAY_EXPONENT: f64 = 100.0;

/// Exponential bucket boundaries: bucket 0 is `[0, first)`, bucket `n >= 1`
/// starts at `first * (ratio^n - 1) / (ratio - 1)`, and the last bucket
/// (which starts at or above `max`) has no upper end.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketScheme {
    first: f64,
    ratio: f64,
    max: f64,
    starts: Vec<f64>,
    /// `upper_edge(b)` for every bucket.
    edges: Vec<f64>,
}

impl BucketScheme {
    /// The VPA's `NewExponentialHistogramOptions(max, first, ratio)`.
    /// Non-positive or non-finite arguments fall back to a one-bucket scheme
    /// rather than panicking.
    pub fn new(first: f64, ratio: f64, max: f64) -> BucketScheme {
        let ok = first > 0.0 && ratio > 1.0 && max > 0.0 && first.is_finite() && max.is_finite();
        let (first, ratio, max) = if ok {
            (first, ratio, max)
        } else {
            (1.0, 2.0, 1.0)
        };
        // numBuckets := ceil(log_ratio(max * (ratio - 1) / first + 1)) + 1
        let n = ((max * (ratio - 1.0) / first + 1.0).ln() / ratio.ln()).ceil() as usize + 1;
        let n = n.clamp(1, 100_000);
        let starts = (0..n)
            .map(|b| {
                if b == 0 {
                    0.0
                } else {
                    first * (ratio.powi(b as i32) - 1.0) / (ratio - 1.0)
                }
            })
            .collect::<Vec<f64>>();
        let edges = (0..n)
            .map(|b| starts[if b + 1 < n { b + 1 } else { b }])
            .collect();
        BucketScheme {
            first,
            ratio,
            max,
            starts,
            edges,
        }
    }

    /// CPU: first bucket 0.01 core, max 1000 cores (the VPA's options).
    pub fn cpu() -> Arc<BucketScheme> {
        static S: OnceLock<Arc<BucketScheme>> = OnceLock::new();
        S.get_or_init(|| Arc::new(BucketScheme::new(0.01, BUCKET_GROWTH_RATIO, 1000.0)))
            .clone()
    }

    /// Memory: first bucket 10 MB (1e7 bytes), max 1e12 bytes (the VPA's options).
    pub fn memory() -> Arc<BucketScheme> {
        static S: OnceLock<Arc<BucketScheme>> = OnceLock::new();
        S.get_or_init(|| Arc::new(BucketScheme::new(1e7, BUCKET_GROWTH_RATIO, 1e12)))
            .clone()
    }

    /// Any other resource (I/O and network in bytes/s, disk in percent):
    /// CPU-like, first bucket 0.01 of the unit, max 1e12 (1 TB/s), so
    /// bytes/s fit; about 600 buckets, of which a series only scans the
    /// few it uses.
    pub fn other() -> Arc<BucketScheme> {
        static S: OnceLock<Arc<BucketScheme>> = OnceLock::new();
        S.get_or_init(|| Arc::new(BucketScheme::new(0.01, BUCKET_GROWTH_RATIO, 1e12)))
            .clone()
    }

    /// The scheme the VPA (and our Autopilot) uses for a resource.
    pub fn for_resource(resource: Resource) -> Arc<BucketScheme> {
        match resource {
            Resource::Cpu => BucketScheme::cpu(),
            Resource::Memory => BucketScheme::memory(),
            _ => BucketScheme::other(),
        }
    }

    /// The scheme with these parameters, shared with every histogram that
    /// uses the same (the three standard schemes are built once).
    fn shared(first: f64, ratio: f64, max: f64) -> Arc<BucketScheme> {
        for s in [
            BucketScheme::cpu(),
            BucketScheme::memory(),
            BucketScheme::other(),
        ] {
            if s.first == first && s.ratio == ratio && s.max == max {
                return s;
            }
        }
        Arc::new(BucketScheme::new(first, ratio, max))
    }

    /// How many buckets.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Always false: a scheme has at least one bucket.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Where bucket `b` starts (0 for bucket 0).
    pub fn start(&self, b: usize) -> f64 {
        self.starts[b.min(self.starts.len() - 1)]
    }

    /// The value a percentile landing in bucket `b` returns: the bucket's
    /// upper edge, except for the last bucket, which has none and returns
    /// its start (as the VPA does).
    pub fn upper_edge(&self, b: usize) -> f64 {
        self.edges[b.min(self.edges.len() - 1)]
    }

    /// [`upper_edge`](Self::upper_edge) of every bucket.
    pub fn upper_edges(&self) -> &[f64] {
        &self.edges
    }

    /// The bucket a value falls in: the VPA's closed formula, then corrected
    /// against the stored boundaries so a value exactly on a boundary always
    /// lands in the upper bucket (the formula alone can be off by one
    /// through rounding). Values below `first` (negative too) go to bucket
    /// 0, values past the last start to the last bucket.
    pub fn bucket(&self, value: f64) -> usize {
        let last = self.starts.len() - 1;
        if value.is_nan() || value < self.first {
            return 0;
        }
        let guess =
            ((value * (self.ratio - 1.0) / self.first + 1.0).ln() / self.ratio.ln()).floor();
        let mut b = if guess.is_finite() && guess >= 0.0 {
            (guess as usize).min(last)
        } else {
            last
        };
        while b < last && value >= self.starts[b + 1] {
            b += 1;
        }
        while b > 0 && value < self.starts[b] {
            b -= 1;
        }
        b
    }
}

/// A histogram whose sample weights halve every `half_life`.
///
/// It serialises compactly: the bucket scheme's three parameters and only
/// the buckets that hold anything, exactly (so a histogram read back
/// behaves bit for bit as the one written).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(into = "HistogramState", try_from = "HistogramState")]
pub struct DecayingHistogram {
    scheme: Arc<BucketScheme>,
    weights: Vec<f64>,
    sums: Vec<f64>,
    total_weight: f64,
    total_sum: f64,
    min_bucket: usize,
    max_bucket: usize,
    half_life_ms: i64,
    reference_ms: Option<i64>,
    /// Bumped by every change, so callers can cache what they derive.
    version: u64,
}

impl DecayingHistogram {
    /// An empty histogram. A non-positive half-life is taken as 1 ms.
    pub fn new(scheme: Arc<BucketScheme>, half_life_ms: i64) -> DecayingHistogram {
        let n = scheme.len();
        DecayingHistogram {
            scheme,
            weights: vec![0.0; n],
            sums: vec![0.0; n],
            total_weight: 0.0,
            total_sum: 0.0,
            min_bucket: n - 1,
            max_bucket: 0,
            half_life_ms: half_life_ms.max(1),
            reference_ms: None,
            version: 0,
        }
    }

    /// Changes whenever the histogram does.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The bucket scheme.
    pub fn scheme(&self) -> &BucketScheme {
        &self.scheme
    }

    /// The weight a sample taken at `ts` gets (or got) relative to the
    /// current reference time: `2^((ts - reference) / half_life)`.
    pub fn weight_at(&self, ts: TimestampMs) -> f64 {
        match self.reference_ms {
            None => 1.0,
            Some(r) => ((ts as f64 - r as f64) / self.half_life_ms as f64).exp2(),
        }
    }

    /// Adds a sample of `value` taken at `ts` with the decayed weight of
    /// `ts`. Non-finite values are ignored; negative ones count as 0.
    pub fn add(&mut self, value: f64, ts: TimestampMs) {
        if !value.is_finite() {
            return;
        }
        self.shift_reference_if_needed(ts);
        let w = self.weight_at(ts);
        self.add_weighted(value.max(0.0), w);
    }

    /// Removes a sample added earlier with [`add`](Self::add) at the same
    /// `ts` (the VPA's `SubtractSample`: a bucket within epsilon of the
    /// weight removed is emptied).
    pub fn subtract(&mut self, value: f64, ts: TimestampMs) {
        if !value.is_finite() {
            return;
        }
        let value = value.max(0.0);
        let b = self.scheme.bucket(value);
        let mut w = self.weight_at(ts);
        let mut s = w * value;
        if w > self.weights[b] - EPSILON {
            w = self.weights[b];
            s = self.sums[b];
        }
        self.version += 1;
        self.weights[b] -= w;
        self.sums[b] -= s;
        self.total_weight -= w;
        self.total_sum -= s;
        self.update_min_max();
    }

    fn add_weighted(&mut self, value: f64, w: f64) {
        let b = self.scheme.bucket(value);
        self.version += 1;
        self.weights[b] += w;
        self.sums[b] += w * value;
        self.total_weight += w;
        self.total_sum += w * value;
        if self.weights[b] >= EPSILON {
            self.min_bucket = self.min_bucket.min(b);
            self.max_bucket = self.max_bucket.max(b);
        }
    }

    /// The VPA's renormalisation: the reference is a multiple of the
    /// half-life; when `ts` is more than 100 half-lives past it, it moves to
    /// `ts` rounded to a multiple of the half-life and every weight is
    /// scaled by the matching power of two.
    fn shift_reference_if_needed(&mut self, ts: TimestampMs) {
        let hl = self.half_life_ms as i128;
        let rounded = {
            let t = ts as i128;
            ((t + hl / 2).div_euclid(hl) * hl).clamp(i64::MIN as i128, i64::MAX as i128) as i64
        };
        match self.reference_ms {
            None => self.reference_ms = Some(rounded),
            Some(r) => {
                if (ts as f64 - r as f64) > MAX_DECAY_EXPONENT * self.half_life_ms as f64 {
                    let exponent = ((r as f64 - rounded as f64) / self.half_life_ms as f64).round();
                    self.scale(exponent.exp2());
                    self.reference_ms = Some(rounded);
                }
            }
        }
    }

    fn scale(&mut self, factor: f64) {
        self.version += 1;
        for b in self.min_bucket..=self.max_bucket.max(self.min_bucket) {
            self.weights[b] *= factor;
            self.sums[b] *= factor;
        }
        // Buckets outside [min, max] hold less than epsilon and are left as
        // they are, as in the VPA.
        self.total_weight *= factor;
        self.total_sum *= factor;
        self.update_min_max();
    }

    fn update_min_max(&mut self) {
        let last = self.weights.len() - 1;
        while self.weights[self.min_bucket] < EPSILON && self.min_bucket < last {
            self.min_bucket += 1;
        }
        while self.weights[self.max_bucket] < EPSILON && self.max_bucket > 0 {
            self.max_bucket -= 1;
        }
    }

    /// Whether no bucket holds at least epsilon of weight.
    pub fn is_empty(&self) -> bool {
        self.weights[self.min_bucket] < EPSILON
    }

    /// The first and last non-empty buckets, or `None` when empty.
    pub fn range(&self) -> Option<(usize, usize)> {
        (!self.is_empty()).then_some((self.min_bucket, self.max_bucket.max(self.min_bucket)))
    }

    /// Weight per bucket.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Weighted sum of the exact sample values per bucket.
    pub fn sums(&self) -> &[f64] {
        &self.sums
    }

    /// Sum of all weights (current reference).
    pub fn total_weight(&self) -> f64 {
        self.total_weight
    }

    /// Weighted sum of all sample values.
    pub fn total_sum(&self) -> f64 {
        self.total_sum
    }

    /// The weighted mean of the exact sample values (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.is_empty() || self.total_weight <= 0.0 {
            0.0
        } else {
            (self.total_sum / self.total_weight).max(0.0)
        }
    }

    /// The VPA's `Percentile`: the upper edge of the first bucket at which
    /// the cumulative weight reaches `q` of the total (0 when empty).
    pub fn percentile(&self, q: f64) -> f64 {
        let mut out = [0.0];
        self.percentiles(&[q], &mut out);
        out[0]
    }

    /// [`percentile`](Self::percentile) for several `qs` sorted ascending,
    /// in one pass over the buckets.
    pub fn percentiles(&self, qs: &[f64], out: &mut [f64]) {
        let Some((lo, hi)) = self.range() else {
            out.iter_mut().for_each(|o| *o = 0.0);
            return;
        };
        let mut b = lo;
        let mut partial = self.weights[lo];
        for (q, o) in qs.iter().zip(out.iter_mut()) {
            let threshold = q * self.total_weight;
            while b < hi && partial < threshold {
                b += 1;
                partial += self.weights[b];
            }
            *o = self.scheme.upper_edge(b);
        }
    }

    /// The percentile `q` of this histogram with some weight moved:
    /// `adjust` lists `(bucket, weight change)` pairs (the VPA memory
    /// recommender's per-knob OOM samples replacing a window's peak).
    /// Effective weights are clamped at 0; `scratch` is reused between calls.
    pub fn percentile_adjusted(
        &self,
        q: f64,
        adjust: &[(usize, f64)],
        scratch: &mut Vec<f64>,
    ) -> f64 {
        if adjust.is_empty() {
            return self.percentile(q);
        }
        let n = self.weights.len();
        let (mut lo, mut hi) = self.range().unwrap_or((n - 1, 0));
        for &(b, _) in adjust {
            lo = lo.min(b.min(n - 1));
            hi = hi.max(b.min(n - 1));
        }
        if lo > hi {
            return 0.0;
        }
        scratch.clear();
        scratch.extend_from_slice(&self.weights[lo..=hi]);
        let mut total = self.total_weight;
        for &(b, dw) in adjust {
            let i = b.min(n - 1) - lo;
            scratch[i] += dw;
            total += dw;
        }
        for w in scratch.iter_mut() {
            *w = w.max(0.0);
        }
        let Some(first) = scratch.iter().position(|&w| w >= EPSILON) else {
            return 0.0;
        };
        let last = scratch.iter().rposition(|&w| w >= EPSILON).unwrap_or(first);
        let threshold = q * total.max(0.0);
        let mut b = first;
        let mut partial = scratch[first];
        while b < last && partial < threshold {
            b += 1;
            partial += scratch[b];
        }
        self.scheme.upper_edge(lo + b)
    }
}

/// The serialised form of a [`DecayingHistogram`].
#[derive(serde::Serialize, serde::Deserialize)]
struct HistogramState {
    first: f64,
    ratio: f64,
    max: f64,
    /// `(bucket, weight, sum)` of every bucket with a non-zero weight or sum.
    buckets: Vec<(u32, f64, f64)>,
    total_weight: f64,
    total_sum: f64,
    min_bucket: u32,
    max_bucket: u32,
    half_life_ms: i64,
    reference_ms: Option<i64>,
    version: u64,
}

impl From<DecayingHistogram> for HistogramState {
    fn from(h: DecayingHistogram) -> Self {
        let buckets = h
            .weights
            .iter()
            .zip(&h.sums)
            .enumerate()
            .filter(|(_, (w, s))| **w != 0.0 || **s != 0.0)
            .map(|(b, (&w, &s))| (b as u32, w, s))
            .collect();
        HistogramState {
            first: h.scheme.first,
            ratio: h.scheme.ratio,
            max: h.scheme.max,
            buckets,
            total_weight: h.total_weight,
            total_sum: h.total_sum,
            min_bucket: h.min_bucket as u32,
            max_bucket: h.max_bucket as u32,
            half_life_ms: h.half_life_ms,
            reference_ms: h.reference_ms,
            version: h.version,
        }
    }
}

/// Why serialised histogram state was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("histogram state is inconsistent: {0}")]
pub struct BadHistogramState(&'static str);

impl TryFrom<HistogramState> for DecayingHistogram {
    type Error = BadHistogramState;

    fn try_from(s: HistogramState) -> Result<Self, Self::Error> {
        let scheme = BucketScheme::shared(s.first, s.ratio, s.max);
        let n = scheme.len();
        if s.min_bucket as usize >= n || s.max_bucket as usize >= n {
            return Err(BadHistogramState("min or max bucket past the last bucket"));
        }
        if s.half_life_ms <= 0 {
            return Err(BadHistogramState("non-positive half-life"));
        }
        let mut h = DecayingHistogram::new(scheme, s.half_life_ms);
        for (b, w, sum) in s.buckets {
            let b = b as usize;
            if b >= n {
                return Err(BadHistogramState("a bucket past the last bucket"));
            }
            h.weights[b] = w;
            h.sums[b] = sum;
        }
        h.total_weight = s.total_weight;
        h.total_sum = s.total_sum;
        h.min_bucket = s.min_bucket as usize;
        h.max_bucket = s.max_bucket as usize;
        h.reference_ms = s.reference_ms;
        h.version = s.version;
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn cpu_bucket_boundaries_follow_the_vpa_formula() {
        let s = BucketScheme::cpu();
        // ceil(log_1.05(1000 * 0.05 / 0.01 + 1)) + 1 = ceil(174.57) + 1
        assert_eq!(s.len(), 176);
        assert_eq!(s.start(0), 0.0);
        assert!((s.start(1) - 0.01).abs() < 1e-15);
        assert!((s.start(2) - 0.0205).abs() < 1e-15);
        assert!((s.start(3) - 0.031525).abs() < 1e-15);
        for n in [10, 50, 175] {
            let want = 0.01 * (1.05f64.powi(n as i32) - 1.0) / 0.05;
            assert!((s.start(n) - want).abs() <= 1e-12 * want, "bucket {n}");
        }
        assert!(s.start(175) >= 1000.0 && s.start(174) < 1000.0);
        // Each bucket is 5% wider than the one before.
        let w = |b: usize| s.start(b + 1) - s.start(b);
        assert!((w(41) / w(40) - 1.05).abs() < 1e-9);
    }

    #[test]
    fn values_land_in_the_right_bucket_including_on_boundaries() {
        let s = BucketScheme::cpu();
        assert_eq!(s.bucket(0.0), 0);
        assert_eq!(s.bucket(-3.0), 0);
        assert_eq!(s.bucket(0.00999), 0);
        assert_eq!(s.bucket(0.01), 1);
        assert_eq!(s.bucket(0.0204999), 1);
        assert_eq!(s.bucket(0.0205), 2);
        for b in 1..s.len() {
            assert_eq!(s.bucket(s.start(b)), b, "start of bucket {b}");
        }
        assert_eq!(s.bucket(1e9), s.len() - 1);
        assert_eq!(s.upper_edge(1), s.start(2));
        assert_eq!(s.upper_edge(s.len() - 1), s.start(s.len() - 1));
    }

    #[test]
    fn memory_scheme_starts_at_ten_megabytes() {
        let s = BucketScheme::memory();
        assert_eq!(s.start(1), 1e7);
        assert!((s.start(2) - 2.05e7).abs() < 1e-6);
        assert!(s.start(s.len() - 1) >= 1e12);
    }

    #[test]
    fn a_sample_one_half_life_older_weighs_half() {
        let mut h = DecayingHistogram::new(BucketScheme::cpu(), DAY);
        h.add(1.0, 10 * DAY);
        h.add(2.0, 11 * DAY);
        let w1 = h.weights()[h.scheme().bucket(1.0)];
        let w2 = h.weights()[h.scheme().bucket(2.0)];
        assert!((w2 / w1 - 2.0).abs() < 1e-12, "{w1} {w2}");
        // Total weight 3: the older sample holds 1/3 of it.
        assert_eq!(
            h.percentile(0.33),
            h.scheme().upper_edge(h.scheme().bucket(1.0))
        );
        assert_eq!(
            h.percentile(0.34),
            h.scheme().upper_edge(h.scheme().bucket(2.0))
        );
    }

    #[test]
    fn renormalising_keeps_relative_weights() {
        let mut h = DecayingHistogram::new(BucketScheme::cpu(), HOUR);
        h.add(1.0, 0);
        h.add(2.0, 99 * HOUR);
        let before = h.percentile(0.5);
        // 150 half-lives later: the reference moves, old weights shrink.
        h.add(2.0, 150 * HOUR);
        assert!(h.total_weight().is_finite() && h.total_weight() < 4.0);
        assert_eq!(h.percentile(0.5), before);
        assert_eq!(
            h.percentile(0.0),
            h.scheme().upper_edge(h.scheme().bucket(2.0))
        );
    }

    #[test]
    fn percentiles_in_one_pass_match_one_at_a_time() {
        let mut h = DecayingHistogram::new(BucketScheme::cpu(), DAY);
        for (i, v) in [0.3, 0.05, 1.7, 0.9, 0.9, 2.5, 0.01].iter().enumerate() {
            h.add(*v, i as i64 * HOUR);
        }
        let qs = [0.0, 0.1, 0.5, 0.9, 0.95, 1.0];
        let mut out = [0.0; 6];
        h.percentiles(&qs, &mut out);
        for (q, o) in qs.iter().zip(out) {
            assert_eq!(o, h.percentile(*q), "q={q}");
        }
    }

    #[test]
    fn adjusted_percentile_moves_weight() {
        let mut h = DecayingHistogram::new(BucketScheme::cpu(), DAY);
        h.add(1.0, 0);
        let mut scratch = Vec::new();
        let (b1, b5) = (h.scheme().bucket(1.0), h.scheme().bucket(5.0));
        let adj = [(b1, -1.0), (b5, 1.0)];
        assert_eq!(
            h.percentile_adjusted(0.5, &adj, &mut scratch),
            h.scheme().upper_edge(b5)
        );
        assert_eq!(
            h.percentile_adjusted(0.5, &[], &mut scratch),
            h.scheme().upper_edge(b1)
        );
    }

    #[test]
    fn serialised_histogram_reads_back_identically() {
        let mut h = DecayingHistogram::new(BucketScheme::memory(), HOUR);
        for i in 0..500 {
            h.add(1e8 + (i % 37) as f64 * 3e7, i * 60_000);
        }
        let bytes = postcard::to_stdvec(&h).unwrap();
        let back: DecayingHistogram = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.weights(), h.weights());
        assert_eq!(back.sums(), h.sums());
        assert_eq!(back.total_weight(), h.total_weight());
        assert_eq!(back.percentile(0.95), h.percentile(0.95));
        // Only non-empty buckets are written: far less than 176 x 16 bytes.
        assert!(bytes.len() < 1200, "{} bytes", bytes.len());
        // A bucket index past the end is refused, not a panic later.
        let mut state = HistogramState::from(h);
        state.buckets.push((10_000, 1.0, 1.0));
        assert!(DecayingHistogram::try_from(state).is_err());
    }

    #[test]
    fn weighted_mean_is_exact() {
        let mut h = DecayingHistogram::new(BucketScheme::cpu(), DAY);
        h.add(1.0, 0);
        h.add(4.0, DAY);
        // weights 1 and 2: (1 + 8) / 3
        assert!((h.mean() - 3.0).abs() < 1e-12);
    }
}
