//! Durations of the loop's stages, kept so that a metrics endpoint can
//! export them (count, sum, last, max, and a histogram with Prometheus-style
//! cumulative buckets).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The upper bounds of the histogram buckets, seconds.
pub const BUCKETS_SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// One stage's durations.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageStats {
    /// Times the stage ran.
    pub count: u64,
    /// Total time, seconds.
    pub sum_seconds: f64,
    /// The last run, seconds.
    pub last_seconds: f64,
    /// The longest run, seconds.
    pub max_seconds: f64,
    /// Runs at or under each bound of [`BUCKETS_SECONDS`] (cumulative).
    pub buckets: [u64; 12],
}

impl StageStats {
    /// Adds one run.
    pub fn record(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        self.count += 1;
        self.sum_seconds += s;
        self.last_seconds = s;
        if s > self.max_seconds {
            self.max_seconds = s;
        }
        for (b, &le) in self.buckets.iter_mut().zip(&BUCKETS_SECONDS) {
            if s <= le {
                *b += 1;
            }
        }
    }

    /// Mean, seconds.
    pub fn mean_seconds(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_seconds / self.count as f64
        }
    }
}

/// Every stage's durations, by stage name (`discover`, `sample`,
/// `forecast`, `solve`, `enforce`, `flush`, `checkpoint`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// By stage.
    pub stages: BTreeMap<&'static str, StageStats>,
}

impl StageTimes {
    /// Adds a run of `stage`.
    pub fn record(&mut self, stage: &'static str, d: Duration) {
        self.stages.entry(stage).or_default().record(d);
    }

    /// Runs `f`, recording how long it took as `stage`.
    pub fn time<T>(&mut self, stage: &'static str, f: impl FnOnce() -> T) -> T {
        let t = std::time::Instant::now();
        let out = f();
        self.record(stage, t.elapsed());
        out
    }

    /// One stage.
    pub fn get(&self, stage: &str) -> Option<&StageStats> {
        self.stages.get(stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let mut s = StageStats::default();
        s.record(Duration::from_micros(50));
        s.record(Duration::from_millis(3));
        s.record(Duration::from_secs(2));
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[5], 2, "<= 5 ms");
        assert_eq!(s.buckets[11], 2, "2 s is above every bound");
        assert_eq!(s.max_seconds, 2.0);
    }
}
