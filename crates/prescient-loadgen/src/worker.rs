//! The worker: one process per workload, in the workload's cgroup, that
//! burns the CPU and holds the memory it is told to.
//!
//! It reads commands from standard input, one a line: `<cores> <bytes>`
//! (the level to hold from now on) or `quit`. At end of input (the loadgen
//! closed the pipe, or died) it exits, so a worker never outlives its
//! loadgen for long.
//!
//! CPU: `ceil(cores)` busy threads share the demand evenly
//! ([`DutyCycle`]). Time is cut into slices (10 ms by default); in each,
//! a busy thread spins until its own CPU clock shows its share of the time
//! since the current level was set (up to the slice's end), then sleeps to
//! the slice's end. So a thread held up for a moment (the scheduler ran
//! someone else) catches up later in the step, as a real service works
//! off its queue; but work not done when the next level arrives (the next
//! trace step: the trace gives the mean over a step) is dropped, not
//! carried. A throttled or starved worker gets less than it asked, and the
//! difference shows as unserved CPU, as in trace replay (served =
//! min(demand, allocation) per step). Each worker's slices start at a
//! phase of its own, so that workers do not all spin at once.
//!
//! Memory: held in [`CHUNK_BYTES`] chunks, every page written when a chunk
//! is allocated (so it is resident and charged to the cgroup), freed when
//! the demand shrinks.

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::schedule::{CHUNK_BYTES, DutyCycle, chunks_for, phase, slice_end};

/// A command to a worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    /// Hold this level from now on.
    Set {
        /// CPU, cores.
        cores: f64,
        /// Memory, bytes.
        bytes: u64,
    },
    /// Exit.
    Quit,
}

impl Command {
    /// The line that carries this command (with its line break).
    pub fn line(&self) -> String {
        match self {
            Command::Set { cores, bytes } => format!("{cores} {bytes}\n"),
            Command::Quit => "quit\n".to_string(),
        }
    }

    /// Parses one line (without its line break).
    pub fn parse(line: &str) -> Result<Command, String> {
        let line = line.trim();
        if line == "quit" {
            return Ok(Command::Quit);
        }
        let mut it = line.split_ascii_whitespace();
        let (Some(c), Some(b), None) = (it.next(), it.next(), it.next()) else {
            return Err(format!(
                "expected '<cores> <bytes>' or 'quit', got {line:?}"
            ));
        };
        let cores: f64 = c
            .parse()
            .map_err(|_| format!("cores {c:?} is not a number"))?;
        if !cores.is_finite() || cores < 0.0 {
            return Err(format!("cores {c:?} must be a finite number >= 0"));
        }
        let bytes: u64 = b
            .parse()
            .map_err(|_| format!("bytes {b:?} is not a whole number"))?;
        Ok(Command::Set { cores, bytes })
    }
}

/// The worker's settings, from its command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerArgs {
    /// The slice length.
    pub slice: Duration,
    /// Seeds the slice phase.
    pub seed: u64,
}

impl Default for WorkerArgs {
    fn default() -> Self {
        WorkerArgs {
            slice: Duration::from_millis(10),
            seed: 0,
        }
    }
}

impl WorkerArgs {
    /// The arguments that give these settings.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--slice-us".into(),
            self.slice.as_micros().to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ]
    }

    /// Parses `--slice-us N` and `--seed N` (in any order; others refused).
    pub fn parse(args: &[String]) -> Result<WorkerArgs, String> {
        let mut a = WorkerArgs::default();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it.next().ok_or_else(|| format!("{k} needs a value"))?;
            let n: u64 = v
                .parse()
                .map_err(|_| format!("{k} {v:?} is not a whole number"))?;
            match k.as_str() {
                "--slice-us" if (100..=1_000_000).contains(&n) => {
                    a.slice = Duration::from_micros(n)
                }
                "--slice-us" => return Err(format!("--slice-us {n} is outside 100..=1000000")),
                "--seed" => a.seed = n,
                _ => return Err(format!("unknown worker argument {k:?}")),
            }
        }
        Ok(a)
    }
}

/// What the burner threads share.
struct Shared {
    /// Threads that are busy (those with a lower index).
    active: AtomicUsize,
    /// CPU time per slice of each busy thread, ns.
    busy_ns: AtomicU64,
    /// Bumped at every new level: the threads restart their accounting.
    generation: AtomicU64,
}

/// Runs a worker: reads commands from `input` until `quit` or its end.
/// Returns an error for a malformed command (the loadgen never sends one).
pub fn run_worker(args: WorkerArgs, input: impl BufRead) -> Result<(), String> {
    let shared = Arc::new(Shared {
        active: AtomicUsize::new(0),
        busy_ns: AtomicU64::new(0),
        generation: AtomicU64::new(0),
    });
    let quit = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now() + phase(args.seed, args.slice);
    let mut burners = 0usize;
    let mut memory: Vec<Vec<u8>> = Vec::new();
    let result = (|| {
        for line in input.lines() {
            let line = line.map_err(|e| format!("reading commands: {e}"))?;
            if line.trim().is_empty() {
                continue;
            }
            match Command::parse(&line)? {
                Command::Quit => return Ok(()),
                Command::Set { cores, bytes } => {
                    let d = DutyCycle::for_cores(cores, args.slice);
                    while burners < d.threads {
                        let (s, q, i) = (shared.clone(), quit.clone(), burners);
                        thread::Builder::new()
                            .name(format!("burn-{i}"))
                            .spawn(move || burn(i, &s, &q, epoch, args.slice))
                            .map_err(|e| format!("starting a busy thread: {e}"))?;
                        burners += 1;
                    }
                    // The duty first, then the count: a thread that sees the
                    // new count with the old duty is off for one slice only.
                    shared
                        .busy_ns
                        .store(d.busy.as_nanos() as u64, Ordering::Relaxed);
                    shared.active.store(d.threads, Ordering::Relaxed);
                    shared.generation.fetch_add(1, Ordering::Release);
                    hold_memory(&mut memory, bytes);
                }
            }
        }
        Ok(())
    })();
    quit.store(true, Ordering::Relaxed);
    result
}

/// Grows or shrinks `memory` to the chunks that hold `bytes`, writing
/// every page of a new chunk.
fn hold_memory(memory: &mut Vec<Vec<u8>>, bytes: u64) {
    let want = chunks_for(bytes);
    memory.truncate(want);
    let page = 4096;
    while memory.len() < want {
        let mut c = vec![0u8; CHUNK_BYTES as usize];
        for i in (0..c.len()).step_by(page) {
            c[i] = 1;
        }
        memory.push(std::hint::black_box(c));
    }
}

/// The CPU time this thread has used.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// A little work the compiler cannot drop.
fn spin(mut x: u64) -> u64 {
    for _ in 0..2_000 {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
    x
}

/// Burner thread `index`: while `index < active`, keeps its CPU clock at
/// its share of the time since the level was set, slice by slice; asleep
/// otherwise.
fn burn(index: usize, s: &Shared, quit: &AtomicBool, epoch: Instant, slice: Duration) {
    let mut x = index as u64;
    let mut seen = u64::MAX;
    let (mut cpu0, mut t0) = (Duration::ZERO, Instant::now());
    while !quit.load(Ordering::Relaxed) {
        let now = Instant::now();
        let end = epoch + slice_end(now.saturating_duration_since(epoch), slice);
        let generation = s.generation.load(Ordering::Acquire);
        if generation != seen {
            seen = generation;
            cpu0 = thread_cpu();
            t0 = now;
        }
        let busy = s.busy_ns.load(Ordering::Relaxed) as f64;
        let share = (busy / slice.as_nanos().max(1) as f64).min(1.0);
        if index < s.active.load(Ordering::Relaxed) && share > 0.0 {
            let target = cpu0 + end.duration_since(t0).mul_f64(share);
            loop {
                x = spin(x);
                if thread_cpu() >= target
                    || Instant::now() >= end
                    || s.generation.load(Ordering::Relaxed) != seen
                {
                    break;
                }
            }
        }
        let now = Instant::now();
        if now < end && s.generation.load(Ordering::Relaxed) == seen {
            thread::sleep(end - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_bad_ones_are_refused() {
        for c in [
            Command::Set {
                cores: 0.25,
                bytes: 1 << 20,
            },
            Command::Set {
                cores: 0.0,
                bytes: 0,
            },
            Command::Quit,
        ] {
            assert_eq!(Command::parse(c.line().trim_end()).unwrap(), c);
        }
        for bad in ["", "1", "1 2 3", "x 2", "1 -2", "-1 2", "NaN 1", "inf 1"] {
            assert!(Command::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn worker_args_round_trip() {
        let a = WorkerArgs {
            slice: Duration::from_millis(5),
            seed: 42,
        };
        assert_eq!(WorkerArgs::parse(&a.to_args()).unwrap(), a);
        assert_eq!(WorkerArgs::parse(&[]).unwrap(), WorkerArgs::default());
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(WorkerArgs::parse(&s(&["--slice-us"])).is_err());
        assert!(WorkerArgs::parse(&s(&["--slice-us", "5"])).is_err());
        assert!(WorkerArgs::parse(&s(&["--bogus", "5"])).is_err());
    }

    #[test]
    fn a_worker_holds_memory_and_stops_at_quit_or_eof() {
        // No CPU asked: nothing spins; memory grows and shrinks.
        let mut m = Vec::new();
        hold_memory(&mut m, 3 * CHUNK_BYTES);
        assert_eq!(m.len(), 3);
        assert!(m.iter().all(|c| c[4096] == 1));
        hold_memory(&mut m, CHUNK_BYTES);
        assert_eq!(m.len(), 1);
        let input = format!("0 {}\n\nquit\n1 1\n", CHUNK_BYTES);
        run_worker(WorkerArgs::default(), input.as_bytes()).unwrap();
        run_worker(WorkerArgs::default(), "0 0\n".as_bytes()).unwrap();
        let e = run_worker(WorkerArgs::default(), "zzz\n".as_bytes()).unwrap_err();
        assert!(e.contains("zzz"), "{e}");
    }
}
