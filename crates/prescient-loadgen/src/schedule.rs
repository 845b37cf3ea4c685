//! Pure arithmetic of the load: how a CPU demand becomes busy threads and
//! duty cycles, how memory is held in chunks, and how trace steps map to
//! wall time.

use std::time::Duration;

/// The most busy threads one worker runs (a demand above this many cores
/// is played as this many full threads).
pub const MAX_THREADS: usize = 256;

/// Memory is held in chunks of this size (allocated, every page touched).
pub const CHUNK_BYTES: u64 = 4 << 20;

/// How a CPU demand is played within each slice: `threads` busy threads,
/// each consuming `busy` of CPU time per slice (then idle until the slice
/// ends). The demand in cores is `threads * busy / slice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DutyCycle {
    /// How many threads are busy.
    pub threads: usize,
    /// CPU time each busy thread consumes per slice.
    pub busy: Duration,
    /// The slice length.
    pub slice: Duration,
}

impl DutyCycle {
    /// The duty cycle for `cores` (negative, NaN and zero: no thread): as
    /// few threads as can carry it (`ceil(cores)`), sharing it evenly, so
    /// that 1.5 cores is two threads each busy 75% of every slice.
    pub fn for_cores(cores: f64, slice: Duration) -> DutyCycle {
        let idle = DutyCycle {
            threads: 0,
            busy: Duration::ZERO,
            slice,
        };
        if cores.is_nan() || cores <= 0.0 || slice.is_zero() {
            return idle;
        }
        let threads = cores.ceil().min(MAX_THREADS as f64) as usize;
        let per_thread = (cores / threads as f64).min(1.0);
        let busy = slice.mul_f64(per_thread);
        if busy.is_zero() {
            return idle;
        }
        DutyCycle {
            threads,
            busy,
            slice,
        }
    }

    /// The cores this duty cycle burns.
    pub fn cores(&self) -> f64 {
        if self.slice.is_zero() {
            return 0.0;
        }
        self.threads as f64 * self.busy.as_secs_f64() / self.slice.as_secs_f64()
    }
}

/// How many [`CHUNK_BYTES`] chunks hold `bytes` (rounded to the nearest
/// chunk, so a demand of 1 byte holds nothing and 3 MiB holds one chunk).
pub fn chunks_for(bytes: u64) -> usize {
    (bytes.saturating_add(CHUNK_BYTES / 2) / CHUNK_BYTES) as usize
}

/// The end of the slice that holds `elapsed` (time since the worker's
/// epoch): the next multiple of `slice` strictly after `elapsed`.
pub fn slice_end(elapsed: Duration, slice: Duration) -> Duration {
    let s = slice.as_nanos().max(1);
    let k = elapsed.as_nanos() / s + 1;
    Duration::from_nanos(u64::try_from(k * s).unwrap_or(u64::MAX))
}

/// A phase in `[0, slice)` taken from `seed`, so that workers do not all
/// start their busy time at the same instant.
pub fn phase(seed: u64, slice: Duration) -> Duration {
    let s = slice.as_nanos().max(1) as u64;
    // splitmix64: neighbouring seeds land far apart.
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    Duration::from_nanos(z % s)
}

/// How trace time maps to wall time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Trace seconds per step.
    pub step_secs: f64,
    /// Trace seconds per wall second.
    pub speed: f64,
}

impl Timing {
    /// Wall time of one step.
    pub fn step_wall(&self) -> Duration {
        Duration::from_secs_f64(self.step_secs / self.speed)
    }

    /// How many steps fill `wall` (at least one; `None`: every step of the
    /// `available` ones), never more than `available`.
    pub fn steps_for(&self, wall: Option<Duration>, available: usize) -> usize {
        let Some(wall) = wall else {
            return available;
        };
        let per = self.step_wall().as_secs_f64();
        let n = if per > 0.0 {
            (wall.as_secs_f64() / per - 1e-9).ceil().max(1.0)
        } else {
            1.0
        };
        (n as usize).min(available)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS10: Duration = Duration::from_millis(10);

    #[test]
    fn cores_become_threads_and_duty() {
        let d = DutyCycle::for_cores(0.25, MS10);
        assert_eq!((d.threads, d.busy), (1, Duration::from_micros(2500)));
        let d = DutyCycle::for_cores(1.5, MS10);
        assert_eq!((d.threads, d.busy), (2, Duration::from_micros(7500)));
        let d = DutyCycle::for_cores(2.0, MS10);
        assert_eq!((d.threads, d.busy), (2, MS10));
        assert!((DutyCycle::for_cores(2.7, MS10).cores() - 2.7).abs() < 1e-6);
        for bad in [0.0, -1.0, f64::NAN, 1e-12] {
            assert_eq!(DutyCycle::for_cores(bad, MS10).threads, 0, "{bad}");
        }
        assert_eq!(DutyCycle::for_cores(1.0, Duration::ZERO).threads, 0);
        let huge = DutyCycle::for_cores(f64::INFINITY, MS10);
        assert_eq!((huge.threads, huge.busy), (MAX_THREADS, MS10));
        assert_eq!(DutyCycle::for_cores(1e9, MS10).threads, MAX_THREADS);
    }

    #[test]
    fn memory_is_held_in_chunks() {
        assert_eq!(chunks_for(0), 0);
        assert_eq!(chunks_for(1), 0);
        assert_eq!(chunks_for(3 << 20), 1);
        assert_eq!(chunks_for(219_172_181), 52);
        assert_eq!(chunks_for(u64::MAX), (u64::MAX / CHUNK_BYTES) as usize);
    }

    #[test]
    fn slices_end_after_now() {
        assert_eq!(slice_end(Duration::ZERO, MS10), MS10);
        assert_eq!(slice_end(Duration::from_millis(25), MS10), 3 * MS10);
        assert_eq!(slice_end(MS10, MS10), 2 * MS10);
        assert!(phase(1, MS10) < MS10);
        assert_ne!(phase(1, MS10), phase(2, MS10));
        assert_eq!(phase(7, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn trace_steps_in_wall_time() {
        let t = Timing {
            step_secs: 300.0,
            speed: 150.0,
        };
        assert_eq!(t.step_wall(), Duration::from_secs(2));
        assert_eq!(t.steps_for(None, 288), 288);
        assert_eq!(t.steps_for(Some(Duration::from_secs(60)), 288), 30);
        assert_eq!(t.steps_for(Some(Duration::from_secs(61)), 288), 31);
        assert_eq!(t.steps_for(Some(Duration::from_millis(1)), 288), 1);
        assert_eq!(t.steps_for(Some(Duration::from_secs(10_000)), 288), 288);
    }
}
