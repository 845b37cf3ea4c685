//! The learned model in the agent (`[forecast] learned`): one forest of
//! gradient-boosted quantile trees ([`prescient_forecast::learned`]) for
//! all of the agent's series, trained on the store's history of those
//! series on a background thread, and trained again on a schedule.
//!
//! As with `[history]` ([`crate::history`]), the loop submits a
//! [`TrainJob`] to a [`Trainer`] thread and goes on; at each pass it takes
//! the result when it is ready ([`Trainer::ready`]) and swaps the forest
//! into the [`SharedForest`](prescient_forecast::learned::SharedForest) every series' learned model holds. The
//! history comes through a [`TrainingSource`]: the store
//! ([`StoreHistory`], on a connection of the thread's own), or a fake in
//! tests. Training runs in a rayon pool of one thread, so that it never
//! takes more than one core from the machine it is partitioning.
//!
//! The forest is saved in the store (`agent/forest/{host}`, see
//! [`encode_forest`]) with the time it was trained, so that a restart
//! forecasts with it at once and retrains when it is due.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};

use prescient_core::{Resource, SeriesKey, TimestampMs};
use prescient_forecast::learned::{
    LearnedError, QuantileForest, TrainConfig, TrainingSeries, train,
};
use prescient_store::{Resolution, Store};

/// Where the training history comes from.
pub trait TrainingSource: Send {
    /// The history of `keys` in `[from, to)`, one training series per key
    /// that has any (gaps as NaN).
    fn history(
        &mut self,
        keys: &[SeriesKey],
        from: TimestampMs,
        to: TimestampMs,
    ) -> Result<Vec<TrainingSeries>, String>;
}

/// The store's one-minute rollups: CPU, I/O and network as the minute's
/// mean, memory as its peak (as the agent rolls samples up for its
/// forecasters).
pub struct StoreHistory {
    path: PathBuf,
    store: Option<Store>,
}

impl StoreHistory {
    /// Reads the store at `path` (opened on first use, by the thread that
    /// trains; a path with no store is an error, never a new store).
    pub fn new(path: impl Into<PathBuf>) -> StoreHistory {
        StoreHistory {
            path: path.into(),
            store: None,
        }
    }
}

/// One-minute rollups, the finest the store keeps for weeks.
const ROLLUP_MS: i64 = 60_000;

impl TrainingSource for StoreHistory {
    fn history(
        &mut self,
        keys: &[SeriesKey],
        from: TimestampMs,
        to: TimestampMs,
    ) -> Result<Vec<TrainingSeries>, String> {
        if self.store.is_none() {
            if !self.path.is_file() {
                return Err(format!("no store at {}", self.path.display()));
            }
            let store = Store::open(&self.path)
                .map_err(|e| format!("opening {}: {e}", self.path.display()))?;
            self.store = Some(store);
        }
        let Some(store) = &self.store else {
            return Err("no store".into());
        };
        let ids = store.series_list().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for key in keys {
            let Some((id, _)) = ids.iter().find(|(_, k)| k == key) else {
                continue;
            };
            let buckets = store
                .range_buckets(*id, from, to, Resolution::Minute)
                .map_err(|e| format!("{key}: {e}"))?;
            let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
                continue;
            };
            let n = usize::try_from((last.ts - first.ts) / ROLLUP_MS + 1).unwrap_or(0);
            let mut values = vec![f64::NAN; n];
            for b in &buckets {
                if let Ok(i) = usize::try_from((b.ts - first.ts) / ROLLUP_MS)
                    && let Some(v) = values.get_mut(i)
                {
                    *v = if key.resource == Resource::Memory {
                        b.max
                    } else {
                        b.mean
                    };
                }
            }
            out.push(TrainingSeries {
                step_ms: ROLLUP_MS,
                start_ms: first.ts,
                values,
            });
        }
        Ok(out)
    }
}

/// One training.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The agent's series.
    pub keys: Vec<SeriesKey>,
    /// The history's start.
    pub from: TimestampMs,
    /// Its end (the loop's now when it asked).
    pub to: TimestampMs,
    /// No training unless some series spans this long.
    pub min_history_ms: i64,
    /// How to train.
    pub config: TrainConfig,
}

/// A trained forest, and what it was trained on.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The forest.
    pub forest: QuantileForest,
    /// Series with history.
    pub series: usize,
    /// The longest history, ms.
    pub span_ms: i64,
}

/// A finished job: the forest, or why there is none.
#[derive(Debug)]
pub struct TrainDone {
    /// When the job was asked for (its `to`).
    pub asked_at: TimestampMs,
    /// The result.
    pub result: Result<Trained, String>,
}

/// Runs training jobs on a thread of its own.
pub struct Trainer {
    jobs: Option<Sender<TrainJob>>,
    done: Receiver<TrainDone>,
}

impl Trainer {
    /// Starts the thread over `source`.
    pub fn start(source: Box<dyn TrainingSource>) -> std::io::Result<Trainer> {
        let (jobs, rx) = channel::<TrainJob>();
        let (tx, done) = channel();
        // Detached: a training in hand when the agent stops runs to its
        // end and its result is dropped (joining would hold up the stop).
        std::thread::Builder::new()
            .name("prescient-learned".into())
            .spawn(move || {
                let mut source = source;
                // One thread: training never takes more than one core.
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(|_| "prescient-learned-pool".into())
                    .build();
                while let Ok(job) = rx.recv() {
                    let result = match &pool {
                        Ok(pool) => pool.install(|| run(source.as_mut(), &job)),
                        Err(e) => Err(format!("cannot start the training pool: {e}")),
                    };
                    let d = TrainDone {
                        asked_at: job.to,
                        result,
                    };
                    if tx.send(d).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Trainer {
            jobs: Some(jobs),
            done,
        })
    }

    /// Queues a job; `false` when the thread has stopped.
    pub fn submit(&self, job: TrainJob) -> bool {
        self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok())
    }

    /// The job finished since the last call, if any.
    pub fn ready(&self) -> Option<TrainDone> {
        self.done.try_recv().ok()
    }

    /// Waits for the job in hand to finish (`None` when the thread has
    /// stopped). For tests and tools that must not race the thread.
    pub fn wait(&self) -> Option<TrainDone> {
        self.done.recv().ok()
    }
}

/// Reads the history of `job` and trains a forest on it.
fn run(source: &mut dyn TrainingSource, job: &TrainJob) -> Result<Trained, String> {
    let series = source.history(&job.keys, job.from, job.to)?;
    let span = |s: &TrainingSeries| {
        let first = s.values.iter().position(|v| v.is_finite());
        let last = s.values.iter().rposition(|v| v.is_finite());
        match (first, last) {
            (Some(a), Some(b)) => (b - a + 1) as i64 * s.step_ms,
            _ => 0,
        }
    };
    let span_ms = series.iter().map(span).max().unwrap_or(0);
    if span_ms < job.min_history_ms {
        return Err(format!(
            "too little history to train on: the longest of {} series with data spans {}, forecast.min_history is {}",
            series.len(),
            crate::units::Interval(u64::try_from(span_ms).unwrap_or(0)),
            crate::units::Interval(u64::try_from(job.min_history_ms).unwrap_or(0)),
        ));
    }
    let forest = train(&series, &job.config).map_err(|e: LearnedError| e.to_string())?;
    Ok(Trained {
        forest,
        series: series.len(),
        span_ms,
    })
}

/// The settings the agent trains with: the library's defaults, with fewer
/// rows (a few hundred series of two weeks give more than enough, and the
/// training then takes seconds on one core rather than minutes).
pub fn agent_train_config() -> TrainConfig {
    TrainConfig {
        max_rows: 200_000,
        ..TrainConfig::default()
    }
}

/// The version of [`encode_forest`]'s blob.
pub const FOREST_STATE_VERSION: u32 = 1;

/// The forest as saved: when it was trained (8 bytes, little-endian ms),
/// then [`QuantileForest::to_bytes`] (which has its own magic number and
/// version).
pub fn encode_forest(trained_at: TimestampMs, forest: &QuantileForest) -> Result<Vec<u8>, String> {
    let mut out = trained_at.to_le_bytes().to_vec();
    out.extend(forest.to_bytes().map_err(|e| e.to_string())?);
    Ok(out)
}

/// Reads back what [`encode_forest`] wrote.
pub fn decode_forest(blob: &[u8]) -> Result<(TimestampMs, QuantileForest), String> {
    let (at, rest) = blob
        .split_first_chunk::<8>()
        .ok_or_else(|| format!("{} bytes: too short for a saved forest", blob.len()))?;
    let forest = QuantileForest::from_bytes(rest).map_err(|e| e.to_string())?;
    Ok((TimestampMs::from_le_bytes(*at), forest))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<TrainingSeries>);

    impl TrainingSource for Fixed {
        fn history(
            &mut self,
            _: &[SeriesKey],
            _: TimestampMs,
            _: TimestampMs,
        ) -> Result<Vec<TrainingSeries>, String> {
            Ok(self.0.clone())
        }
    }

    fn daily(days: usize, scale: f64) -> TrainingSeries {
        TrainingSeries {
            step_ms: 300_000,
            start_ms: 0,
            values: (0..days * 288)
                .map(|t| scale * (1.5 + ((t % 288) as f64 / 288.0 * std::f64::consts::TAU).sin()))
                .collect(),
        }
    }

    fn job(min_history_ms: i64) -> TrainJob {
        TrainJob {
            keys: Vec::new(),
            from: 0,
            to: 0,
            min_history_ms,
            config: TrainConfig {
                rounds: 10,
                ..agent_train_config()
            },
        }
    }

    #[test]
    fn too_little_history_is_an_error_that_says_how_much() {
        let mut src = Fixed(vec![daily(1, 1.0)]);
        let e = run(&mut src, &job(2 * 86_400_000)).unwrap_err();
        assert!(
            e.contains("spans 1d") && e.contains("min_history is 2d"),
            "{e}"
        );
        let mut none = Fixed(Vec::new());
        let e = run(&mut none, &job(1)).unwrap_err();
        assert!(e.contains("0 series"), "{e}");
    }

    #[test]
    fn the_store_gives_minute_means_of_cpu_peaks_of_memory_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let missing = dir.path().join("none.db");
        let e = StoreHistory::new(&missing).history(&[], 0, 1).unwrap_err();
        assert!(e.contains("no store at"), "{e}");
        assert!(!missing.exists(), "a reader never creates a store");
        let mut store = Store::open(&path).unwrap();
        let cpu = SeriesKey::new("h", "w", Resource::Cpu);
        let mem = SeriesKey::new("h", "w", Resource::Memory);
        let (c, m) = (
            store.series_id(&cpu).unwrap(),
            store.series_id(&mem).unwrap(),
        );
        let mut rows = Vec::new();
        // Minutes 0 and 2 (minute 1 missing), two samples each.
        for (ts, v) in [(0, 1.0), (30_000, 3.0), (120_000, 5.0), (150_000, 7.0)] {
            rows.push((c, prescient_core::Sample::new(ts, v)));
            rows.push((m, prescient_core::Sample::new(ts, v * 100.0)));
        }
        store.ingest(&rows).unwrap();
        drop(store);
        let unknown = SeriesKey::new("h", "other", Resource::Cpu);
        let got = StoreHistory::new(&path)
            .history(&[cpu, unknown, mem], 0, 180_000)
            .unwrap();
        assert_eq!(got.len(), 2, "a series with no data is left out");
        assert_eq!((got[0].step_ms, got[0].start_ms), (60_000, 0));
        assert_eq!(got[0].values[0], 2.0);
        assert!(got[0].values[1].is_nan());
        assert_eq!(got[0].values[2], 6.0);
        assert_eq!(got[1].values[0], 300.0, "memory: the minute's peak");
        assert_eq!(got[1].values[2], 700.0);
    }

    #[test]
    fn a_forest_trains_on_the_thread_and_round_trips() {
        let t = Trainer::start(Box::new(Fixed(vec![daily(3, 1.0), daily(3, 1e9)]))).unwrap();
        assert!(t.ready().is_none());
        assert!(t.submit(job(86_400_000)));
        let done = t.wait().unwrap();
        let trained = done.result.unwrap();
        assert_eq!(trained.series, 2);
        assert_eq!(trained.span_ms, 3 * 86_400_000);
        let blob = encode_forest(42, &trained.forest).unwrap();
        let (at, back) = decode_forest(&blob).unwrap();
        assert_eq!(at, 42);
        assert_eq!(back, trained.forest);
        assert!(decode_forest(&blob[..5]).unwrap_err().contains("too short"));
        assert!(decode_forest(&blob[..40]).is_err());
    }
}
