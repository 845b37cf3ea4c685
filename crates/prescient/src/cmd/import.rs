//! `prescient import`: a trace into the store.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use prescient_core::Sample;
use prescient_store::{IngestReport, SeriesId, Store};
use prescient_trace::TraceReader;

use crate::progress;

/// Samples written per transaction.
const BATCH: usize = 50_000;

/// Import a trace into the store: every row becomes a raw sample of its
/// series (rolled up to 1 minute and 1 hour as it goes in). Samples already
/// stored are left as they are, so importing twice changes nothing.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The trace: long CSV `timestamp,host,workload,resource,value`, plain or gzip.
    #[arg(value_name = "TRACE")]
    trace: PathBuf,

    /// The store (a SQLite file, created on first use).
    #[arg(long, value_name = "FILE", default_value = "prescient.db")]
    db: PathBuf,
}

/// Runs `prescient import`.
pub fn run(args: ImportArgs) -> Result<()> {
    let started = Instant::now();
    let mut store = Store::open(&args.db)?;
    let mut reader = TraceReader::open(&args.trace)?;
    let bar = progress::bytes(reader.total_bytes(), "importing");
    let mut batch: Vec<(SeriesId, Sample)> = Vec::with_capacity(BATCH);
    let mut total = IngestReport::default();
    let mut rows = 0u64;
    let mut flush = |store: &mut Store, batch: &mut Vec<(SeriesId, Sample)>| -> Result<()> {
        let report = store.ingest(batch)?;
        total.inserted += report.inserted;
        total.duplicates += report.duplicates;
        total.too_old += report.too_old;
        batch.clear();
        Ok(())
    };
    while let Some(record) = reader.next() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                // Keep what was read before the broken line: it is valid.
                flush(&mut store, &mut batch)?;
                bar.finish_and_clear();
                return Err(anyhow::Error::new(e).context(format!(
                    "import stopped; the {} rows before it are in {} (fix the line and import again: rows already stored are skipped)",
                    rows,
                    args.db.display()
                )));
            }
        };
        rows += 1;
        let id = store.series_id(&record.key())?;
        batch.push((id, Sample::new(record.ts_ms(), record.value)));
        if batch.len() == BATCH {
            flush(&mut store, &mut batch)?;
            bar.set_position(reader.bytes_read());
        }
    }
    flush(&mut store, &mut batch)?;
    bar.finish_and_clear();

    let summary = store
        .summary()
        .with_context(|| format!("cannot summarise {}", args.db.display()))?;
    println!(
        "imported {} rows from {} into {} in {:.1}s: {} new samples, {} already stored{}",
        rows,
        args.trace.display(),
        args.db.display(),
        started.elapsed().as_secs_f64(),
        total.inserted,
        total.duplicates,
        if total.too_old > 0 {
            format!(
                ", {} older than the retention cutoff (skipped)",
                total.too_old
            )
        } else {
            String::new()
        }
    );
    match (summary.first_ts, summary.last_ts) {
        (Some(first), Some(last)) => println!(
            "the store holds {} series, {} samples, from t={}s to t={}s ({})",
            summary.series,
            summary.samples,
            first / 1000,
            last / 1000,
            span((last - first) / 1000)
        ),
        _ => println!("the store holds {} series and no samples", summary.series),
    }
    Ok(())
}

/// A duration in seconds, in the largest whole units that fit.
fn span(seconds: i64) -> String {
    let (d, h, m) = (
        seconds / 86_400,
        seconds % 86_400 / 3600,
        seconds % 3600 / 60,
    );
    match (d, h, m) {
        (0, 0, m) => format!("{m} min"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}
