//! Maximum over a sliding time window, amortised O(1) per sample.

use std::collections::VecDeque;

use prescient_core::TimestampMs;

/// The maximum of the values pushed in the last `window_ms`: a sample
/// pushed at `t` counts while the newest timestamp is below `t + window_ms`
/// (so a one-hour window over 5-minute steps holds 12 samples).
#[derive(Debug, Clone)]
pub struct WindowMax {
    window_ms: i64,
    /// Candidates for the maximum: timestamps increasing, values decreasing.
    queue: VecDeque<(TimestampMs, f64)>,
}

impl WindowMax {
    /// An empty window of `window_ms` milliseconds.
    pub fn new(window_ms: i64) -> WindowMax {
        WindowMax {
            window_ms: window_ms.max(0),
            queue: VecDeque::new(),
        }
    }

    /// Adds `value` seen at `ts` (non-finite values are ignored) and drops
    /// what fell out of the window.
    pub fn push(&mut self, ts: TimestampMs, value: f64) {
        if !value.is_finite() {
            return;
        }
        while self.queue.back().is_some_and(|&(_, v)| v <= value) {
            self.queue.pop_back();
        }
        self.queue.push_back((ts, value));
        let cutoff = ts.saturating_sub(self.window_ms);
        while self.queue.front().is_some_and(|&(t, _)| t <= cutoff) && self.queue.len() > 1 {
            self.queue.pop_front();
        }
    }

    /// The maximum in the window, or `None` before the first value.
    pub fn max(&self) -> Option<f64> {
        self.queue.front().map(|&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN5: i64 = 300_000;

    #[test]
    fn one_hour_over_five_minutes_holds_twelve_samples() {
        let mut w = WindowMax::new(12 * MIN5);
        w.push(0, 9.0);
        for i in 1..12 {
            w.push(i * MIN5, 1.0);
        }
        assert_eq!(w.max(), Some(9.0));
        w.push(12 * MIN5, 1.0);
        assert_eq!(w.max(), Some(1.0));
    }

    #[test]
    fn keeps_the_largest_recent_value() {
        let mut w = WindowMax::new(10);
        assert_eq!(w.max(), None);
        w.push(0, 3.0);
        w.push(1, 5.0);
        w.push(2, 4.0);
        assert_eq!(w.max(), Some(5.0));
        w.push(11, 1.0);
        assert_eq!(w.max(), Some(4.0));
        w.push(12, f64::NAN);
        assert_eq!(w.max(), Some(4.0));
        w.push(13, 0.5);
        assert_eq!(w.max(), Some(1.0));
    }
}
