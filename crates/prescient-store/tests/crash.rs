//! Crash safety: a child process ingesting batch after batch is killed with
//! SIGKILL in the middle of its work; the database must then open, pass
//! `PRAGMA integrity_check`, hold every batch the child reported committed,
//! in full, hold no batch in part, and have rollups that agree with raw.
//!
//! The child is this test binary again (`current_exe`), running this same
//! test with an environment variable telling it to be the child, so it works
//! under `cargo test` and `cargo nextest run` alike.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use prescient_core::{Resource, Sample, SeriesKey};
use prescient_store::{Resolution, SeriesId, Store};
use rusqlite::Connection;

const TEST_NAME: &str = "a_killed_writer_loses_no_committed_batch";
const CHILD_ENV: &str = "PRESCIENT_STORE_CRASH_CHILD";
const SERIES: i64 = 20;
/// Samples per series per batch: 20 x 500 = 10,000 samples a batch.
const PER_SERIES: i64 = 500;
/// One sample a minute: every sample opens a 1 min rollup bucket, so the
/// rollup part of a batch is as long as the raw part (a kill lands in either).
const STEP_MS: i64 = 60_000;
const BATCH_SPAN_MS: i64 = PER_SERIES * STEP_MS;
const ROUNDS: usize = 5;

fn series_key(s: i64) -> SeriesKey {
    SeriesKey::new("crash-host", format!("w{s:02}"), Resource::Cpu)
}

fn value(series: i64, ts: i64) -> f64 {
    ((series * 1_000_003 + ts / STEP_MS) % 977) as f64 / 8.0
}

fn batch(b: i64, ids: &[SeriesId]) -> Vec<(SeriesId, Sample)> {
    // Time-major, as an agent delivers samples: every series, then the next step.
    (0..PER_SERIES)
        .flat_map(|i| {
            let ts = b * BATCH_SPAN_MS + i * STEP_MS;
            ids.iter()
                .enumerate()
                .map(move |(s, &id)| (id, Sample::new(ts, value(s as i64, ts))))
        })
        .collect()
}

/// The child: continues after the newest batch in the file, reporting each
/// batch on stdout once `ingest` has returned (committed). Bounded in time
/// in case the parent is gone.
fn child(path: &Path) {
    let mut store = Store::open(path).expect("child: open");
    let ids: Vec<SeriesId> = (0..SERIES)
        .map(|s| store.series_id(&series_key(s)).expect("child: series"))
        .collect();
    let first = store
        .summary()
        .expect("child: summary")
        .last_ts
        .map_or(0, |t| t / BATCH_SPAN_MS + 1);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out = std::io::stdout().lock();
    for b in first.. {
        store.ingest(&batch(b, &ids)).expect("child: ingest");
        writeln!(out, "committed {b}")
            .and_then(|()| out.flush())
            .expect("child: stdout");
        if Instant::now() > deadline {
            break;
        }
    }
}

/// Kills the child if the parent fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one child until it has reported a few batches, then kills it with
/// SIGKILL while it works on the next. Returns the batches it reported.
fn run_and_kill(path: &Path, kill_at: f64) -> Vec<(i64, Instant)> {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = KillOnDrop(
        Command::new(exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child"),
    );
    let stdout = child.0.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest prints its own lines too; only ours count.
            // (With --nocapture, the first of ours may share a line with
            // libtest's "test ... ".)
            if let Some(at) = line.find("committed ") {
                let n: i64 = line[at + "committed ".len()..]
                    .trim()
                    .parse()
                    .expect("batch number");
                if tx.send((n, Instant::now())).is_err() {
                    break;
                }
            }
        }
    });
    let mut reported = Vec::new();
    let mut times = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reported.len() < 6 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((n, at)) => {
                reported.push(n);
                times.push(at);
            }
            Err(e) => panic!("the child reported {reported:?} and then nothing ({e})"),
        }
    }
    // The child spends nearly all its time inside `ingest`: kill it at a
    // different point of the next batch each round.
    let per_batch = (times[5] - times[1]) / 4;
    std::thread::sleep(per_batch.mul_f64(kill_at));
    child.0.kill().expect("kill the child");
    let status = child.0.wait().expect("wait for the child");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the child was not killed by SIGKILL: {status}"
        );
    }
    #[cfg(not(unix))]
    assert!(!status.success());
    // Whatever it printed before it died was committed too.
    reader.join().expect("reader thread");
    eprintln!("a batch takes {per_batch:?}; killed {kill_at:.1} of the way into one");
    reported
        .into_iter()
        .zip(times)
        .chain(rx.try_iter())
        .collect()
}

#[test]
fn a_killed_writer_loses_no_committed_batch() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.db");
    let mut reported = Vec::new();
    for round in 0..ROUNDS {
        let got = run_and_kill(&path, (round as f64 + 0.5) / ROUNDS as f64);
        assert!(
            got.windows(2).all(|w| w[1].0 == w[0].0 + 1),
            "round {round}: {got:?}"
        );
        reported.extend(got.iter().map(|&(n, _)| n));
        check(&path, &reported, round);
    }
}

fn check(path: &Path, reported: &[i64], round: usize) {
    // Opening recovers the WAL (and must not need anything else).
    let mut store =
        Store::open(path).unwrap_or_else(|e| panic!("round {round}: open after the kill: {e}"));
    let conn = Connection::open(path).expect("open for checks");
    let integrity: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("integrity_check");
    assert_eq!(integrity, ["ok"], "round {round}");

    // Samples per batch: every reported batch complete; at most the one in
    // flight after it also complete (committed, but killed before printing);
    // nothing partial, nothing later.
    let mut per_batch: BTreeMap<i64, i64> = BTreeMap::new();
    let mut stmt = conn
        .prepare("SELECT ts / ?1, count(*) FROM samples GROUP BY 1")
        .unwrap();
    for row in stmt
        .query_map([BATCH_SPAN_MS], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
    {
        let (b, n) = row.unwrap();
        per_batch.insert(b, n);
    }
    let last = *reported.last().expect("some batches");
    eprintln!(
        "round {round}: reported up to batch {last}; stored (batch, samples): {:?}",
        per_batch.range(last - 2..).collect::<Vec<_>>()
    );
    for b in 0..=last {
        assert_eq!(
            per_batch.get(&b),
            Some(&(SERIES * PER_SERIES)),
            "round {round}: batch {b} was reported committed"
        );
    }
    for (&b, &n) in per_batch.range(last + 1..) {
        assert!(
            b == last + 1 && n == SERIES * PER_SERIES,
            "round {round}: batch {b} holds {n} samples"
        );
    }

    // The values are the ones written.
    let ids: Vec<SeriesId> = (0..SERIES)
        .map(|s| store.series_id(&series_key(s)).unwrap())
        .collect();
    for (s, &id) in ids.iter().enumerate() {
        let got = store
            .range(id, 0, (last + 1) * BATCH_SPAN_MS, Resolution::Raw)
            .unwrap();
        assert_eq!(got.len() as i64, (last + 1) * PER_SERIES);
        assert!(
            got.iter().all(|x| x.value == value(s as i64, x.ts)),
            "round {round}: series {s}: wrong values"
        );
    }

    // Rollups agree with raw, bucket for bucket.
    for (table, width) in [("rollup_1m", 60_000i64), ("rollup_1h", 3_600_000)] {
        let sql = format!(
            "SELECT count(*) FROM (
                 SELECT series_id, ts - ts % {width} AS b, count(*) AS n, sum(value) AS s,
                        min(value) AS lo, max(value) AS hi
                 FROM samples GROUP BY series_id, b
             ) AS raw FULL JOIN {table} AS r ON r.series_id = raw.series_id AND r.ts_bucket = raw.b
             WHERE r.count IS NOT raw.n OR abs(r.sum - raw.s) > 1e-6 OR r.min IS NOT raw.lo
                   OR r.max IS NOT raw.hi"
        );
        let mismatched: i64 = conn.query_row(&sql, [], |r| r.get(0)).unwrap();
        assert_eq!(mismatched, 0, "round {round}: {table} disagrees with raw");
    }
}
