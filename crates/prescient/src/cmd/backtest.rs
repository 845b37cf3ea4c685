//! `prescient backtest`: the day-ahead forecast protocol of DESIGN.md on a
//! trace, per model and for the ensemble.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use prescient_core::{Resource, SeriesKey};
use prescient_forecast::backtest::{
    self, BacktestError, Forecaster, HORIZON, LEVELS, OriginForecast, STEP_MS, Tally,
};
use prescient_forecast::learned::{SharedForest, TrainConfig, TrainingSeries, train};
use prescient_forecast::{Band, ModelKind, Weights};
use prescient_sim::ReplayTrace;
use prescient_trace::TraceReader;
use serde::Serialize;

use super::replay::{Format, pct};
use crate::progress;

/// Backtest the forecast engine day ahead, as DESIGN.md scores forecasts:
/// each series as 5-minute means; an origin every midnight from day 3 (day 7
/// when the trace spans 14 days or more); from each, the next 288 steps at
/// quantiles 0.5, 0.9, 0.95 and 0.99, learnt online from the history before
/// it. Prints wQL and coverage95 per model and for the ensemble.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The trace: long CSV `timestamp,host,workload,resource,value`, plain or gzip.
    #[arg(long, value_name = "FILE")]
    trace: PathBuf,

    /// The resource to forecast.
    #[arg(long, default_value = "cpu")]
    resource: Resource,

    /// Models of the ensemble (repeat or separate with commas); default:
    /// the classic models (seasonal, holt-winters, histogram, recent). Add
    /// `learned` for the gradient-boosted trees, trained at each origin on
    /// the history before it (and on --train-trace files).
    #[arg(long = "models", value_name = "LIST", value_delimiter = ',')]
    models: Vec<String>,

    /// More traces to train the learned model on (repeatable), besides the
    /// backtested trace's own history before each origin. Use traces other
    /// than the one backtested: the model must not see what it forecasts.
    #[arg(long = "train-trace", value_name = "FILE")]
    train_traces: Vec<PathBuf>,

    /// Write the ensemble's forecasts as CSV
    /// (`origin,timestamp,host,workload,resource,quantile,value`, times in
    /// seconds as in the trace).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// The whole result, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    trace: String,
    resource: Resource,
    unit: &'static str,
    series: usize,
    /// Series too short for any origin, with the reason.
    skipped: Vec<Skipped>,
    step_seconds: f64,
    horizon_steps: usize,
    levels: Vec<f64>,
    /// Origins (seconds) of the first backtested series.
    origins: Vec<i64>,
    forecasters: Vec<ForecasterReport>,
    /// Per series (up to 20 series): the ensemble weights and state size at
    /// the end of the trace.
    series_state: Vec<SeriesState>,
    elapsed_seconds: f64,
}

#[derive(Debug, Serialize)]
struct Skipped {
    series: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct ForecasterReport {
    name: &'static str,
    wql: f64,
    coverage95: f64,
    /// wQL at 0.5, 0.9, 0.95, 0.99.
    wql_per_level: [f64; 4],
    actuals: u64,
}

#[derive(Debug, Serialize)]
struct SeriesState {
    series: String,
    state_bytes: usize,
    weights: Weights,
}

/// Runs `prescient backtest`.
pub fn run(args: BacktestArgs) -> Result<()> {
    let started = Instant::now();
    let models = args
        .models
        .iter()
        .map(|m| m.trim().parse::<ModelKind>())
        .collect::<Result<Vec<_>, _>>()
        .context("--models")?;

    let size = std::fs::metadata(&args.trace).ok().map(|m| m.len());
    let bar = progress::bytes(size, "reading");
    let trace = ReplayTrace::load(&args.trace, args.resource, &|b| bar.set_position(b))?;
    bar.finish_and_clear();

    let learned = if models.contains(&ModelKind::Learned) {
        Some(LearnedTraining::new(&trace, &args.train_traces)?)
    } else {
        None
    };

    let bar = progress::items(trace.series_count() as u64, "backtesting");
    let mut tallies: Vec<(Forecaster, Tally)> = Vec::new();
    let mut skipped = Vec::new();
    let mut origins = Vec::new();
    let mut series_state = Vec::new();
    let mut forecasts: Vec<(SeriesKey, Vec<OriginForecast>)> = Vec::new();
    for host in &trace.hosts {
        for series in &host.series {
            let samples: Vec<(i64, f64)> = host
                .timestamps
                .iter()
                .zip(&series.demand)
                .filter(|(_, d)| d.is_finite())
                .map(|(&t, &d)| (t, d))
                .collect();
            let mut forest_at = |origin| learned.as_ref().and_then(|l| l.forest_before(origin));
            match backtest::backtest_series(
                &samples,
                args.resource,
                &models,
                &mut forest_at,
                &mut || {},
            ) {
                Ok(result) => {
                    if origins.is_empty() {
                        origins = result.forecasts.iter().map(|f| f.origin / 1000).collect();
                    }
                    for (f, t) in &result.tallies {
                        match tallies.iter_mut().find(|(g, _)| g == f) {
                            Some((_, total)) => total.merge(t),
                            None => tallies.push((*f, *t)),
                        }
                    }
                    if series_state.len() < 20 {
                        series_state.push(SeriesState {
                            series: series.key.to_string(),
                            state_bytes: result.end_state.state_bytes(),
                            weights: result.end_state.weights(),
                        });
                    }
                    if args.out.is_some() {
                        forecasts.push((series.key.clone(), result.forecasts));
                    }
                }
                Err(e @ (BacktestError::TooShort { .. } | BacktestError::Empty)) => {
                    skipped.push(Skipped {
                        series: series.key.to_string(),
                        reason: e.to_string(),
                    });
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    if tallies.is_empty() {
        let reason = skipped
            .first()
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| "no series".into());
        bail!(
            "{}: no {} series can be backtested: {reason}",
            args.trace.display(),
            args.resource
        );
    }
    if let Some(path) = &args.out {
        write_forecasts(path, &forecasts, args.resource)?;
    }

    let report = Report {
        trace: args.trace.display().to_string(),
        resource: args.resource,
        unit: args.resource.unit(),
        series: trace.series_count(),
        skipped,
        step_seconds: STEP_MS as f64 / 1000.0,
        horizon_steps: HORIZON,
        levels: LEVELS.to_vec(),
        origins,
        forecasters: tallies
            .iter()
            .map(|(f, t)| ForecasterReport {
                name: f.name(),
                wql: t.wql(),
                coverage95: t.coverage95(),
                wql_per_level: t.wql_per_level(),
                actuals: t.n,
            })
            .collect(),
        series_state,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Table => print_table(&mut out, &report)?,
    }
    if let Some(path) = &args.out {
        eprintln!("forecasts written to {}", path.display());
    }
    Ok(())
}

fn write_forecasts(
    path: &Path,
    forecasts: &[(SeriesKey, Vec<OriginForecast>)],
    resource: Resource,
) -> Result<()> {
    let name = path.display();
    let file = File::create(path).with_context(|| format!("cannot create {name}"))?;
    let mut w = csv::Writer::from_writer(BufWriter::new(file));
    w.write_record([
        "origin",
        "timestamp",
        "host",
        "workload",
        "resource",
        "quantile",
        "value",
    ])
    .with_context(|| format!("cannot write {name}"))?;
    for (key, origins) in forecasts {
        for f in origins {
            let profile = &f.ensemble;
            for (h, step) in profile.steps().enumerate() {
                let ts = profile.start + h as i64 * profile.step_ms;
                for (&level, &value) in step.levels().iter().zip(step.values()) {
                    w.write_record([
                        (f.origin / 1000).to_string(),
                        (ts / 1000).to_string(),
                        key.host.0.clone(),
                        key.workload.0.clone(),
                        resource.to_string(),
                        level.to_string(),
                        value.to_string(),
                    ])
                    .with_context(|| format!("cannot write {name}"))?;
                }
            }
        }
    }
    w.flush().with_context(|| format!("cannot write {name}"))?;
    Ok(())
}

fn print_table(out: &mut impl Write, r: &Report) -> Result<()> {
    let days: Vec<String> = r
        .origins
        .iter()
        .map(|o| format!("{}", o / 86_400))
        .collect();
    writeln!(
        out,
        "{}: {} in {}, {} series{}; origins at the midnights of day {} (as of the first series); {} steps of {}s at quantiles 0.5/0.9/0.95/0.99",
        r.trace,
        r.resource,
        r.unit,
        r.series,
        if r.skipped.is_empty() {
            String::new()
        } else {
            format!(" ({} too short, skipped)", r.skipped.len())
        },
        days.join(", "),
        r.horizon_steps,
        r.step_seconds
    )?;
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "forecaster",
        "wQL",
        "wQL@0.5",
        "wQL@0.9",
        "wQL@0.95",
        "wQL@0.99",
        "coverage95",
        "actuals",
    ]);
    for f in &r.forecasters {
        let mut row = vec![Cell::new(f.name)];
        for v in std::iter::once(f.wql).chain(f.wql_per_level) {
            row.push(Cell::new(format!("{v:.4}")).set_alignment(CellAlignment::Right));
        }
        row.push(Cell::new(pct(f.coverage95)).set_alignment(CellAlignment::Right));
        row.push(Cell::new(f.actuals).set_alignment(CellAlignment::Right));
        table.add_row(row);
    }
    writeln!(out, "{table}")?;
    if let [state] = &r.series_state[..] {
        for band in [Band::Step, Band::Day] {
            let w = &state.weights;
            let parts: Vec<String> = w
                .models
                .iter()
                .filter_map(|m| {
                    let a = w.get(band, m, 0.5)?;
                    let b = w.get(band, m, 0.95)?;
                    Some(format!("{m} {a:.2}/{b:.2}"))
                })
                .collect();
            writeln!(
                out,
                "ensemble weights at the end, {} band, at 0.5/0.95: {}",
                band.name(),
                parts.join(", ")
            )?;
        }
        writeln!(out, "model state: {} bytes", state.state_bytes)?;
    }
    writeln!(out, "took {:.2}s", r.elapsed_seconds)?;
    Ok(())
}

/// Trains the learned model causally for the backtest: at each origin, on
/// the extra traces and on the backtested series' history before the
/// origin. Forests are kept per origin, shared by every series.
struct LearnedTraining {
    extra: Vec<TrainingSeries>,
    own: Vec<TrainingSeries>,
    forests: RefCell<HashMap<i64, SharedForest>>,
}

impl LearnedTraining {
    fn new(trace: &ReplayTrace, extra_traces: &[PathBuf]) -> Result<Self> {
        let mut extra = Vec::new();
        for path in extra_traces {
            extra.extend(training_series(path)?);
        }
        let own = trace
            .hosts
            .iter()
            .flat_map(|h| {
                h.series.iter().filter_map(|s| {
                    on_grid(
                        trace.step_ms,
                        h.timestamps.iter().copied().zip(s.demand.iter().copied()),
                    )
                })
            })
            .collect();
        Ok(LearnedTraining {
            extra,
            own,
            forests: RefCell::new(HashMap::new()),
        })
    }

    /// The forest trained on everything before `origin`; `None` when there
    /// is too little to train on (the model then keeps the forest it had, or
    /// its own fallback: its series' empirical last day).
    fn forest_before(&self, origin: i64) -> Option<SharedForest> {
        if let Some(f) = self.forests.borrow().get(&origin) {
            return Some(f.clone());
        }
        let mut series = self.extra.clone();
        series.extend(self.own.iter().map(|s| s.before(origin)));
        let forest = SharedForest::new(train(&series, &TrainConfig::default()).ok()?);
        self.forests.borrow_mut().insert(origin, forest.clone());
        Some(forest)
    }
}

/// Every series of a trace file as training series (each at its own step).
fn training_series(path: &Path) -> Result<Vec<TrainingSeries>> {
    let mut by_key: HashMap<SeriesKey, Vec<(i64, f64)>> = HashMap::new();
    let mut order = Vec::new();
    for record in TraceReader::open(path)? {
        let r = record?;
        let key = r.key();
        by_key
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push((r.ts_ms(), r.value));
    }
    Ok(order
        .into_iter()
        .filter_map(|k| {
            let samples = by_key.remove(&k)?;
            let step = samples
                .windows(2)
                .map(|w| w[1].0 - w[0].0)
                .filter(|d| *d > 0)
                .min()?;
            on_grid(step, samples.into_iter())
        })
        .collect())
}

/// Samples in time order as an equally spaced training series (NaN gaps).
fn on_grid(step_ms: i64, samples: impl Iterator<Item = (i64, f64)>) -> Option<TrainingSeries> {
    let mut samples = samples.filter(|(_, v)| v.is_finite()).peekable();
    let start_ms = samples.peek()?.0;
    let step_ms = step_ms.max(1);
    let mut values: Vec<f64> = Vec::new();
    for (ts, v) in samples {
        let i = usize::try_from((ts - start_ms) / step_ms).ok()?;
        if i >= values.len() {
            values.resize(i + 1, f64::NAN);
        }
        values[i] = v;
    }
    Some(TrainingSeries {
        step_ms,
        start_ms,
        values,
    })
}
