//! History for new workloads: when the agent starts tracking a series it
//! has no saved forecaster for, it can ask a history source (Prometheus:
//! `[history]`) for the weeks before, so that the forecaster starts from
//! the workload's daily and weekly pattern instead of from nothing.
//!
//! The fetch and the training run on a background thread
//! ([`HistoryFetcher`]): the loop submits a [`Job`], goes on sampling and
//! planning with a fresh forecaster, and at each pass takes the trained
//! forecasters that are ready ([`HistoryFetcher::ready`]); it then replays
//! onto the trained one the steps it learnt meanwhile and swaps it in.
//! A source that fails or answers nothing leaves the fresh forecaster in
//! place, with a log line.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use prescient_core::{Resource, TimestampMs, WorkloadId};
use prescient_forecast::{ModelKind, SeriesContext, SeriesForecaster};

/// Where history comes from.
pub trait HistorySource: Send {
    /// The values of `query` from `start` to `end` (ms since the epoch) at
    /// `step_ms`, in time order. Several series in the answer are summed
    /// per timestamp (the workload's containers, say).
    fn range(
        &self,
        query: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: i64,
    ) -> Result<Vec<(TimestampMs, f64)>, String>;
}

/// Prometheus's HTTP API (range queries in chunks, retried with backoff).
pub struct PrometheusHistory {
    client: prescient_prometheus::Client,
}

impl PrometheusHistory {
    /// A source reading `url` (`http://host:9090`), each request taking at
    /// most `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let client = prescient_prometheus::Client::new(url)
            .map_err(|e| e.to_string())?
            .with_timeout(timeout);
        Ok(PrometheusHistory { client })
    }
}

impl HistorySource for PrometheusHistory {
    fn range(
        &self,
        query: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: i64,
    ) -> Result<Vec<(TimestampMs, f64)>, String> {
        let step = Duration::from_millis(u64::try_from(step_ms.max(1)).unwrap_or(1));
        let series = self
            .client
            .range_query(query, start, end, step)
            .map_err(|e| e.to_string())?;
        Ok(sum_by_time(series.into_iter().map(|s| s.points)))
    }
}

/// Sums several series' points per timestamp (skipping values that are
/// not finite), in time order.
pub fn sum_by_time(
    series: impl IntoIterator<Item = Vec<(TimestampMs, f64)>>,
) -> Vec<(TimestampMs, f64)> {
    let mut sum = std::collections::BTreeMap::new();
    for points in series {
        for (t, v) in points {
            if v.is_finite() {
                *sum.entry(t).or_insert(0.0) += v;
            }
        }
    }
    sum.into_iter().collect()
}

/// Puts a workload's names into a query template: `{workload}`, `{host}`
/// and `{cgroup}`, each escaped for a PromQL double-quoted string (so a
/// name cannot end the string and change the query).
pub fn fill_template(template: &str, workload: &str, host: &str, cgroup: &str) -> String {
    fn esc(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out
    }
    template
        .replace("{workload}", &esc(workload))
        .replace("{host}", &esc(host))
        .replace("{cgroup}", &esc(cgroup))
}

/// One series to fetch history for and train on.
#[derive(Debug, Clone)]
pub struct Job {
    /// The series.
    pub workload: WorkloadId,
    /// Its resource.
    pub resource: Resource,
    /// The query, filled in.
    pub query: String,
    /// From.
    pub start: TimestampMs,
    /// To (the loop's now when it asked).
    pub end: TimestampMs,
    /// The forecaster's step and resource.
    pub context: SeriesContext,
    /// A quantile level to calibrate besides the fixed ones (the SLO).
    pub track_level: f64,
    /// The forecaster's models (empty: the classic ones).
    pub kinds: Vec<ModelKind>,
}

/// A finished job.
#[derive(Debug)]
pub struct Done {
    /// The series.
    pub workload: WorkloadId,
    /// Its resource.
    pub resource: Resource,
    /// The trained forecaster and the number of history points it learnt,
    /// or why there is none.
    pub result: Result<(SeriesForecaster, usize), String>,
}

/// Fetches history and trains forecasters on a background thread.
pub struct HistoryFetcher {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

impl HistoryFetcher {
    /// Starts the thread over `source`.
    pub fn start(source: Box<dyn HistorySource>) -> std::io::Result<HistoryFetcher> {
        let (jobs, rx) = channel::<Job>();
        let (tx, done) = channel();
        let thread = std::thread::Builder::new()
            .name("prescient-history".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let result = train(source.as_ref(), &job);
                    let d = Done {
                        workload: job.workload,
                        resource: job.resource,
                        result,
                    };
                    if tx.send(d).is_err() {
                        return;
                    }
                }
            })?;
        Ok(HistoryFetcher {
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    /// Queues a job; `false` when the thread has stopped.
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok())
    }

    /// The jobs finished since the last call.
    pub fn ready(&self) -> Vec<Done> {
        self.done.try_iter().collect()
    }
}

impl Drop for HistoryFetcher {
    fn drop(&mut self) {
        // Closing the queue ends the thread after the job in hand.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Fetches `job`'s history and trains a fresh forecaster on it.
fn train(source: &dyn HistorySource, job: &Job) -> Result<(SeriesForecaster, usize), String> {
    let step = job.context.step_ms.max(1);
    let points = source.range(&job.query, job.start, job.end, step)?;
    let mut f = SeriesForecaster::new(job.context, &job.kinds);
    f.track_level(job.track_level);
    let mut n = 0;
    let mut last = i64::MIN;
    for (t, v) in points {
        // Prometheus stamps a value at the end of its window; the
        // forecaster's steps are named by their start.
        let b = (t - 1).div_euclid(step) * step;
        if b <= last || !v.is_finite() || v < 0.0 {
            continue;
        }
        f.observe(b, v);
        last = b;
        n += 1;
    }
    if n == 0 {
        return Err(format!("no history for {:?} in the range", job.query));
    }
    Ok((f, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_escape_names_so_they_cannot_break_out_of_the_string() {
        let q = fill_template(
            r#"rate(cpu{pod="{workload}",node="{host}"}[1m])"#,
            r#"we"ird\ pod"#,
            "n1",
            "/x",
        );
        assert_eq!(q, r#"rate(cpu{pod="we\"ird\\ pod",node="n1"}[1m])"#);
    }

    #[test]
    fn several_series_are_summed_per_timestamp() {
        let s = sum_by_time(vec![
            vec![(1, 1.0), (2, 2.0)],
            vec![(2, 0.5), (3, f64::NAN), (4, 4.0)],
        ]);
        assert_eq!(s, vec![(1, 1.0), (2, 2.5), (4, 4.0)]);
    }
}
