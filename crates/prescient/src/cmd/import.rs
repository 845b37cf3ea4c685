//! `prescient import`: a trace, or a Prometheus server's history, into the
//! store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use prescient_agent::units::Interval;
use prescient_core::{Resource, Sample, SeriesKey};
use prescient_prometheus::{Client, RangeSeries};
use prescient_store::{IngestReport, SeriesId, Store};
use prescient_trace::TraceReader;

use crate::progress;

/// Samples written per transaction.
const BATCH: usize = 50_000;

/// Import a trace, or history from Prometheus, into the store: every row
/// (every point of every series) becomes a raw sample of its series (rolled
/// up to 1 minute and 1 hour as it goes in). Samples already stored are left
/// as they are, so importing twice changes nothing.
///
/// From Prometheus: `--prometheus URL --query PROMQL` runs the query over
/// the last `--since` at `--step`; each series it gives becomes the
/// `--resource` of one workload on one host, named from its labels. CPU
/// queries should give cores (`rate(container_cpu_usage_seconds_total[1m])`),
/// memory queries bytes.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The trace: long CSV `timestamp,host,workload,resource,value`, plain or gzip.
    #[arg(
        value_name = "TRACE",
        required_unless_present = "prometheus",
        conflicts_with = "prometheus"
    )]
    trace: Option<PathBuf>,

    /// The store (a SQLite file, created on first use).
    #[arg(
        long,
        visible_alias = "store",
        value_name = "FILE",
        default_value = "prescient.db"
    )]
    db: PathBuf,

    #[command(flatten)]
    prometheus: PrometheusArgs,
}

/// `prescient import --prometheus`.
#[derive(Debug, Args)]
#[command(next_help_heading = "From Prometheus")]
struct PrometheusArgs {
    /// Import from the Prometheus server at this URL (`http://host:9090`).
    #[arg(long, value_name = "URL", requires = "query")]
    prometheus: Option<String>,

    /// The PromQL query whose series to import.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    query: Option<String>,

    /// How far back from now: a number with a unit, `s`, `m`, `h`, `d` or
    /// `w` (`14d`, `6h`).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "14d",
        requires = "prometheus"
    )]
    since: String,

    /// The resolution of the imported series (`60s`, `5m`).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "60s",
        requires = "prometheus"
    )]
    step: String,

    /// The resource the series measure (cpu in cores, memory in bytes, ...).
    #[arg(
        long,
        value_name = "RESOURCE",
        default_value = "cpu",
        requires = "prometheus"
    )]
    resource: Resource,

    /// The label that names the workload [default: the first of workload,
    /// container, pod, job that a series has].
    #[arg(long, value_name = "LABEL", requires = "prometheus")]
    workload_label: Option<String>,

    /// The label that names the host.
    #[arg(
        long,
        value_name = "LABEL",
        default_value = "instance",
        conflicts_with = "host",
        requires = "prometheus"
    )]
    host_label: String,

    /// The host of every series (instead of a label).
    #[arg(long, value_name = "NAME", requires = "prometheus")]
    host: Option<String>,

    /// Points per series per request (Prometheus answers at most 11,000).
    #[arg(long, hide = true, default_value_t = prescient_prometheus::DEFAULT_MAX_POINTS)]
    max_points: usize,
}

/// The workload labels tried, in order, without `--workload-label`.
const WORKLOAD_LABELS: [&str; 4] = ["workload", "container", "pod", "job"];

/// Runs `prescient import`.
pub fn run(args: ImportArgs) -> Result<()> {
    match (&args.trace, &args.prometheus.prometheus) {
        (Some(trace), _) => import_trace(trace, &args.db),
        (None, Some(url)) => import_prometheus(url, &args.prometheus, &args.db),
        (None, None) => bail!("give a TRACE to import, or --prometheus URL --query PROMQL"),
    }
}

fn import_trace(trace: &Path, db: &Path) -> Result<()> {
    let started = Instant::now();
    let mut store = Store::open(db)?;
    let mut reader = TraceReader::open(trace)?;
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
                    db.display()
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

    println!(
        "imported {} rows from {} into {} in {:.1}s: {}",
        rows,
        trace.display(),
        db.display(),
        started.elapsed().as_secs_f64(),
        outcome(&total),
    );
    print_summary(&store, db)
}

/// `N new samples, M already stored[, K older than the retention cutoff]`.
fn outcome(total: &IngestReport) -> String {
    format!(
        "{} new samples, {} already stored{}",
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
    )
}

/// What the store holds now.
fn print_summary(store: &Store, db: &Path) -> Result<()> {
    let summary = store
        .summary()
        .with_context(|| format!("cannot summarise {}", db.display()))?;
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

fn import_prometheus(url: &str, args: &PrometheusArgs, db: &Path) -> Result<()> {
    let started = Instant::now();
    let query = args
        .query
        .as_deref()
        .context("--prometheus needs --query PROMQL")?;
    let since = parse_duration(&args.since).context("--since")?;
    let step = parse_duration(&args.step).context("--step")?;
    if step.is_zero() {
        bail!("--step must be more than 0");
    }
    let end = now_ms();
    let start = end - i64::try_from(since.as_millis()).unwrap_or(i64::MAX / 2);
    let client = Client::new(url)?.with_max_points(args.max_points);
    let chunks = client.chunks(query, start, end, step)?.len();
    eprintln!(
        "querying {} for {query:?} over the last {} at {} ({} request{})",
        client.base_url(),
        args.since.trim(),
        args.step.trim(),
        chunks,
        if chunks == 1 { "" } else { "s" }
    );
    let series = client.range_query(query, start, end, step)?;
    if series.is_empty() {
        bail!(
            "{query:?} gives no series at {} over the last {}: nothing to import",
            client.base_url(),
            args.since.trim()
        );
    }

    let keyed = series_keys(&series, args)?;
    let mut store = Store::open(db)?;
    let mut total = IngestReport::default();
    let (mut points, mut skipped) = (0u64, 0u64);
    for (key, s) in keyed {
        let id = store.series_id(&key)?;
        let mut batch = Vec::with_capacity(s.points.len());
        for &(ts, v) in &s.points {
            // NaN and ±Inf (a rate over a counter reset, a division by 0)
            // are not usage: the store refuses them.
            if v.is_finite() {
                batch.push((id, Sample::new(ts, v)));
            } else {
                skipped += 1;
            }
        }
        points += batch.len() as u64;
        for part in batch.chunks(BATCH) {
            let r = store
                .ingest(part)
                .with_context(|| format!("writing {key} into {}", db.display()))?;
            total.inserted += r.inserted;
            total.duplicates += r.duplicates;
            total.too_old += r.too_old;
        }
    }
    println!(
        "imported {} series, {} samples from {} ({:?}, {}) into {} in {:.1}s: {}{}",
        series.len(),
        points,
        client.base_url(),
        query,
        args.resource,
        db.display(),
        started.elapsed().as_secs_f64(),
        outcome(&total),
        if skipped > 0 {
            format!(", {skipped} NaN or infinite values skipped")
        } else {
            String::new()
        }
    );
    print_summary(&store, db)
}

/// Each series with the store's key for it, named from its labels as
/// `args` says. Two series that would get the same key are an error (their
/// samples would mix).
fn series_keys<'a>(
    series: &'a [RangeSeries],
    args: &PrometheusArgs,
) -> Result<Vec<(SeriesKey, &'a RangeSeries)>> {
    let show = |labels: &BTreeMap<String, String>| {
        let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        format!("{{{}}}", inner.join(", "))
    };
    let mut seen: HashMap<SeriesKey, &BTreeMap<String, String>> = HashMap::new();
    let mut out = Vec::with_capacity(series.len());
    for s in series {
        let host = match &args.host {
            Some(h) => h.clone(),
            None => s.labels.get(&args.host_label).cloned().with_context(|| {
                format!(
                    "the series {} has no label {:?} to name its host: pass --host-label LABEL or --host NAME",
                    show(&s.labels),
                    args.host_label
                )
            })?,
        };
        let workload = match &args.workload_label {
            Some(l) => s.labels.get(l).cloned().with_context(|| {
                format!(
                    "the series {} has no label {l:?} (--workload-label) to name its workload",
                    show(&s.labels)
                )
            })?,
            None => WORKLOAD_LABELS
                .iter()
                .find_map(|l| s.labels.get(*l))
                .cloned()
                .with_context(|| {
                    format!(
                        "the series {} has none of the labels {} to name its workload: pass --workload-label LABEL",
                        show(&s.labels),
                        WORKLOAD_LABELS.join(", ")
                    )
                })?,
        };
        let key = SeriesKey::new(host, workload, args.resource);
        if let Some(other) = seen.insert(key.clone(), &s.labels) {
            bail!(
                "the series {} and {} would both be {key}: pick labels that tell them apart (--workload-label, --host-label), or aggregate them in the query (sum by (...))",
                show(other),
                show(&s.labels)
            );
        }
        out.push((key, s));
    }
    Ok(out)
}

/// A duration with a unit: `ms`, `s`, `m`, `h` (as in the configuration),
/// or `d`, `w`.
fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let days = |n: &str, per: f64| -> Result<Duration> {
        let v: f64 = n
            .parse()
            .with_context(|| format!("{s:?}: {n:?} is not a number"))?;
        if !(v.is_finite() && v >= 0.0 && v * per < 1e12) {
            bail!("{s:?} is not a duration this can use");
        }
        Ok(Duration::from_secs_f64(v * per))
    };
    if let Some(n) = t.strip_suffix('d') {
        days(n, 86_400.0)
    } else if let Some(n) = t.strip_suffix('w') {
        days(n, 7.0 * 86_400.0)
    } else {
        Interval::parse(t)
            .map(Interval::as_duration)
            .map_err(|e| anyhow::anyhow!("{e} (or d, w)"))
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_days_and_weeks() {
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert_eq!(
            parse_duration("1w").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(parse_duration("0.5d").unwrap(), Duration::from_secs(43_200));
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        for bad in ["", "d", "xd", "-1d", "14", "3y"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn args(workload_label: Option<&str>, host: Option<&str>) -> PrometheusArgs {
        PrometheusArgs {
            prometheus: Some("http://p".into()),
            query: Some("q".into()),
            since: "1d".into(),
            step: "60s".into(),
            resource: Resource::Memory,
            workload_label: workload_label.map(Into::into),
            host_label: "instance".into(),
            host: host.map(Into::into),
            max_points: 100,
        }
    }

    fn series(labels: &[(&str, &str)]) -> RangeSeries {
        RangeSeries {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: vec![],
        }
    }

    #[test]
    fn series_are_named_from_their_labels() {
        let s = [
            series(&[
                ("instance", "h1:9100"),
                ("job", "node"),
                ("container", "web"),
            ]),
            series(&[("instance", "h1:9100"), ("job", "db")]),
        ];
        let keys = series_keys(&s, &args(None, None)).unwrap();
        assert_eq!(
            keys[0].0,
            SeriesKey::new("h1:9100", "web", Resource::Memory),
            "container before job"
        );
        assert_eq!(keys[1].0, SeriesKey::new("h1:9100", "db", Resource::Memory));
        let keys = series_keys(&s[..1], &args(Some("job"), Some("box"))).unwrap();
        assert_eq!(keys[0].0, SeriesKey::new("box", "node", Resource::Memory));
    }

    #[test]
    fn missing_labels_and_collisions_are_clear_errors() {
        let e = series_keys(&[series(&[("job", "x")])], &args(None, None)).unwrap_err();
        assert!(
            e.to_string().contains("no label \"instance\"") && e.to_string().contains("--host"),
            "{e}"
        );
        let e = series_keys(&[series(&[("instance", "h")])], &args(None, None)).unwrap_err();
        assert!(e.to_string().contains("--workload-label"), "{e}");
        let e = series_keys(
            &[
                series(&[("instance", "h"), ("job", "a"), ("mode", "user")]),
                series(&[("instance", "h"), ("job", "a"), ("mode", "system")]),
            ],
            &args(None, None),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("would both be") && e.to_string().contains("system"),
            "{e}"
        );
    }
}
