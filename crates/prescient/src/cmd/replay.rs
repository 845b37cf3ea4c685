//! `prescient replay`: score sizing policies on a recorded trace.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use prescient_core::Resource;
use prescient_sim::replay::{RecordedSeries, oracle_unmet};
use prescient_sim::{
    Capacity, Crossing, Curve, Enforcement, Policy, ReplayConfig, ReplayTrace, Run, Score,
    policies, replay,
};
use serde::Serialize;

use crate::progress;

/// Violation levels at which `--sweep` reports slack.
const SLACK_AT: [f64; 3] = [0.001, 0.01, 0.05];

/// Replay a trace: every policy sizes every workload step by step from what
/// it saw before, and is scored on violation, unmet demand and slack.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The trace: long CSV `timestamp,host,workload,resource,value`, plain or gzip.
    #[arg(long, value_name = "FILE")]
    trace: PathBuf,

    /// The resource to replay.
    #[arg(long, default_value = "cpu")]
    resource: Resource,

    /// Policies to run (repeat or separate with commas); default: prescient
    /// and every reference policy (vpa, autopilot-mw, autopilot-ml,
    /// reactive, window-max, static-equal, static-peak). Also: prescient-share,
    /// prescient-ensemble (the forecast engine's calibrated SLO quantile
    /// alone), partition, partition-keep, partition-proportional.
    #[arg(long = "policy", value_name = "NAME", value_delimiter = ',')]
    policies: Vec<String>,

    /// Run each policy at this setting of its knob instead of its default
    /// (VPA: the target percentile, where values above 1 mean the top
    /// bucket's edge times the value; the others: a margin, 0.1 = +10%).
    #[arg(long, value_name = "X", conflicts_with = "sweep")]
    knob: Option<f64>,

    /// Capacity of every host, as RESOURCE=AMOUNT (e.g. cpu=4.5,
    /// memory=16GiB): makes the run contended.
    #[arg(long, value_name = "RESOURCE=AMOUNT", conflicts_with = "capacity_file")]
    capacity: Vec<String>,

    /// Capacity per host from a CSV file with the header
    /// `host,resource,capacity`: makes the run contended.
    #[arg(long, value_name = "FILE")]
    capacity_file: Option<PathBuf>,

    /// How a contended host enforces allocations: `hard` limits, or
    /// `shares` (what others leave unused flows to who is short).
    #[arg(long, value_enum, default_value_t = EnforceArg::Hard)]
    enforce: EnforceArg,

    /// Sweep each policy's knob and report its slack where its curve crosses
    /// 0.1%, 1% and 5% violation.
    #[arg(long)]
    sweep: bool,

    /// Steps of each host before scoring starts.
    #[arg(long, value_name = "STEPS", default_value_t = prescient_sim::replay::DEFAULT_WARMUP_STEPS)]
    warmup: usize,

    /// Write the allocations of this run as CSV
    /// (`timestamp,host,workload,resource,allocation`); needs exactly one
    /// policy and no sweep.
    #[arg(long, value_name = "FILE", conflicts_with = "sweep")]
    out: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EnforceArg {
    Hard,
    Shares,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
}

/// The whole result of a replay, as `--format json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    trace: String,
    resource: Resource,
    unit: &'static str,
    hosts: usize,
    series: usize,
    samples: usize,
    step_seconds: f64,
    warmup_steps: usize,
    setting: Setting,
    /// Least unmet share any partition could reach (contended runs only).
    oracle_unmet: Option<f64>,
    policies: Vec<PolicyReport>,
    elapsed_seconds: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
enum Setting {
    Uncontended,
    Contended { enforcement: Enforcement },
}

#[derive(Debug, Serialize)]
struct PolicyReport {
    name: String,
    description: String,
    knob: &'static str,
    default_knob: f64,
    /// The knob settings run and their scores, in sweep order.
    points: Vec<Point>,
    /// With `--sweep`: slack where the curve crosses each violation level.
    slack_at: Vec<SlackAt>,
    /// Why the policy did not run, when it did not.
    skipped: Option<String>,
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Point {
    knob: f64,
    #[serde(flatten)]
    score: Score,
}

#[derive(Debug, Serialize)]
struct SlackAt {
    violation: f64,
    #[serde(flatten)]
    crossing: Crossing,
}

/// Runs `prescient replay`.
pub fn run(args: ReplayArgs) -> Result<()> {
    let started = Instant::now();
    let chosen = choose_policies(&args.policies)?;
    if args.out.is_some() && chosen.len() != 1 {
        bail!(
            "--out writes one policy's allocations: name exactly one with --policy (got {})",
            chosen.len()
        );
    }
    let capacity = capacity(&args)?;
    let enforcement = match args.enforce {
        EnforceArg::Hard => Enforcement::Hard,
        EnforceArg::Shares => Enforcement::Shares,
    };
    if enforcement == Enforcement::Shares && capacity.is_none() {
        bail!("--enforce shares needs a capacity (--capacity or --capacity-file)");
    }
    if let Some(knob) = args.knob {
        for p in &chosen {
            let k = p.knob();
            if !(knob >= k.range.0 && knob <= k.range.1) {
                bail!(
                    "--knob {knob} is outside {}'s {} range [{}, {}]",
                    p.name(),
                    k.name,
                    k.range.0,
                    k.range.1
                );
            }
        }
    }

    let size = std::fs::metadata(&args.trace).ok().map(|m| m.len());
    let bar = progress::bytes(size, "reading");
    // Load errors name the file (and line and column) themselves.
    let trace = ReplayTrace::load(&args.trace, args.resource, &|b| bar.set_position(b))?;
    bar.finish_and_clear();

    let config = ReplayConfig {
        warmup_steps: args.warmup,
        capacity: capacity.clone(),
        enforcement,
        record_allocations: args.out.is_some(),
    };
    let oracle = capacity
        .as_ref()
        .map(|c| oracle_unmet(&trace, c, args.warmup))
        .transpose()?;

    let bar = progress::items((trace.series_count() * chosen.len()) as u64, "replaying");
    let mut reports = Vec::new();
    let mut recorded: Option<Vec<RecordedSeries>> = None;
    for policy in &chosen {
        let knob = policy.knob();
        let knobs = if args.sweep {
            knob.sweep.clone()
        } else {
            vec![args.knob.unwrap_or(knob.default)]
        };
        let policy_started = Instant::now();
        let mut report = PolicyReport {
            name: policy.name().to_string(),
            description: policy.describe().to_string(),
            knob: knob.name,
            default_knob: knob.default,
            points: Vec::new(),
            slack_at: Vec::new(),
            skipped: None,
            seconds: 0.0,
        };
        match replay(&trace, policy.as_ref(), &knobs, &config, &|n| bar.inc(n)) {
            Ok(run) => {
                let curve = curve(&run);
                if args.sweep {
                    report.slack_at = SLACK_AT
                        .iter()
                        .map(|&v| SlackAt {
                            violation: v,
                            crossing: curve.crossing(v),
                        })
                        .collect();
                }
                report.points = curve
                    .points
                    .into_iter()
                    .map(|(knob, score)| Point { knob, score })
                    .collect();
                recorded = run.allocations;
            }
            Err(prescient_sim::replay::ReplayError::Unsupported { reason, .. })
                if args.policies.is_empty() =>
            {
                // Running every policy by default: say why one sat out.
                bar.inc(trace.series_count() as u64);
                report.skipped = Some(reason);
            }
            Err(e) => return Err(e.into()),
        }
        report.seconds = policy_started.elapsed().as_secs_f64();
        reports.push(report);
    }
    bar.finish_and_clear();

    if let (Some(path), Some(series)) = (&args.out, &recorded) {
        write_allocations(path, series, args.resource)?;
    }

    let report = Report {
        trace: args.trace.display().to_string(),
        resource: args.resource,
        unit: args.resource.unit(),
        hosts: trace.hosts.len(),
        series: trace.series_count(),
        samples: trace.sample_count(),
        step_seconds: trace.step_ms as f64 / 1000.0,
        warmup_steps: args.warmup,
        setting: match capacity {
            None => Setting::Uncontended,
            Some(_) => Setting::Contended { enforcement },
        },
        oracle_unmet: oracle,
        policies: reports,
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Table => print_table(&mut out, &report, args.sweep)?,
    }
    if let Some(path) = &args.out {
        eprintln!("allocations written to {}", path.display());
    }
    Ok(())
}

fn choose_policies(names: &[String]) -> Result<Vec<Box<dyn Policy>>> {
    if names.is_empty() {
        let mut all: Vec<Box<dyn Policy>> =
            vec![Box::new(policies::prescient::Prescient::default())];
        all.extend(policies::reference());
        return Ok(all);
    }
    names
        .iter()
        .map(|n| policies::by_name(n.trim()).map_err(anyhow::Error::from))
        .collect()
}

fn curve(run: &Run) -> Curve {
    Curve {
        points: run
            .knobs
            .iter()
            .zip(&run.tallies)
            .map(|(&k, t)| (k, t.score()))
            .collect(),
    }
}

/// The capacity for the replayed resource, from `--capacity` or `--capacity-file`.
fn capacity(args: &ReplayArgs) -> Result<Option<Capacity>> {
    if let Some(path) = &args.capacity_file {
        return capacity_file(path, args.resource).map(Some);
    }
    if args.capacity.is_empty() {
        return Ok(None);
    }
    let found = parse_capacities(&args.capacity)?
        .into_iter()
        .filter(|(r, _)| *r == args.resource)
        .map(|(_, amount)| amount)
        .next_back();
    match found {
        Some(c) => Ok(Some(Capacity::All(c))),
        None => bail!(
            "--capacity gives no capacity for {} (the replayed resource): add --capacity {}=AMOUNT",
            args.resource,
            args.resource
        ),
    }
}

/// `--capacity` values: `RESOURCE=AMOUNT`, several per value separated by
/// commas (`cpu=4.5,memory=16GiB`) or in repeated flags, in order.
pub(crate) fn parse_capacities(specs: &[String]) -> Result<Vec<(Resource, f64)>> {
    let mut out = Vec::new();
    for spec in specs.iter().flat_map(|s| s.split(',')) {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        let (resource, amount) = spec.split_once('=').with_context(|| {
            format!("--capacity '{spec}': expected RESOURCE=AMOUNT, e.g. cpu=4.5 or memory=16GiB")
        })?;
        let resource: Resource = resource
            .trim()
            .parse()
            .with_context(|| format!("--capacity '{spec}'"))?;
        let amount = parse_amount(amount.trim()).with_context(|| format!("--capacity '{spec}'"))?;
        out.push((resource, amount));
    }
    Ok(out)
}

/// An amount, with an optional binary (KiB, MiB, GiB, TiB) or decimal
/// (K, M, G, T) suffix for byte counts.
pub(crate) fn parse_amount(text: &str) -> Result<f64> {
    const SUFFIXES: [(&str, f64); 8] = [
        ("KiB", 1024.0),
        ("MiB", 1024.0 * 1024.0),
        ("GiB", 1024.0 * 1024.0 * 1024.0),
        ("TiB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(s, f)| text.strip_suffix(s).map(|n| (n, *f)))
        .unwrap_or((text, 1.0));
    let value: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .with_context(|| format!("'{text}' is not a positive amount"))?;
    Ok(value * factor)
}

fn capacity_file(path: &Path, resource: Resource) -> Result<Capacity> {
    let name = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read capacity file {name}"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{name}: cannot read the header"))?
        .clone();
    if headers.iter().collect::<Vec<_>>() != ["host", "resource", "capacity"] {
        bail!(
            "{name}:1: the header must be host,resource,capacity (found {})",
            headers.iter().collect::<Vec<_>>().join(",")
        );
    }
    let mut map = HashMap::new();
    for row in reader.records() {
        let row = row.with_context(|| format!("{name}: malformed CSV"))?;
        let line = row.position().map(|p| p.line()).unwrap_or(0);
        let r: Resource = row[1]
            .parse()
            .with_context(|| format!("{name}:{line}: column 2 (resource)"))?;
        let amount =
            parse_amount(&row[2]).with_context(|| format!("{name}:{line}: column 3 (capacity)"))?;
        if r == resource && map.insert(row[0].to_string(), amount).is_some() {
            bail!(
                "{name}:{line}: host '{}' has a second {r} capacity",
                &row[0]
            );
        }
    }
    if map.is_empty() {
        bail!("{name}: no {resource} capacity for any host");
    }
    Ok(Capacity::PerHost(map))
}

fn write_allocations(path: &Path, series: &[RecordedSeries], resource: Resource) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = csv::Writer::from_writer(BufWriter::new(file));
    w.write_record(["timestamp", "host", "workload", "resource", "allocation"])?;
    for s in series {
        for &(ts, allocation) in &s.allocations {
            w.write_record([
                (ts / 1000).to_string(),
                s.key.host.0.clone(),
                s.key.workload.0.clone(),
                resource.to_string(),
                allocation.to_string(),
            ])?;
        }
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A share as a percentage with two decimals.
pub(crate) fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

fn print_table(out: &mut impl Write, r: &Report, sweep: bool) -> Result<()> {
    let setting = match (&r.setting, r.oracle_unmet) {
        (Setting::Contended { enforcement }, Some(oracle)) => format!(
            "contended ({} limits), oracle unmet {}",
            match enforcement {
                Enforcement::Hard => "hard",
                Enforcement::Shares => "shares",
            },
            pct(oracle)
        ),
        _ => "uncontended".to_string(),
    };
    writeln!(
        out,
        "{}: {} in {}, {} hosts, {} series, {} samples at {}s steps; warm-up {} steps; {}",
        r.trace,
        r.resource,
        r.unit,
        r.hosts,
        r.series,
        r.samples,
        r.step_seconds,
        r.warmup_steps,
        setting
    )?;
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    if sweep {
        table.set_header(vec![
            "policy",
            "knob",
            "settings",
            "violation range",
            "slack@0.1%",
            "slack@1%",
            "slack@5%",
        ]);
    } else {
        table.set_header(vec![
            "policy",
            "knob",
            "violation",
            "unmet",
            "slack",
            "mean allocation",
        ]);
    }
    for p in &r.policies {
        let mut row = vec![Cell::new(&p.name)];
        if let Some(reason) = &p.skipped {
            row.push(Cell::new(format!("skipped: {reason}")));
            table.add_row(row);
            continue;
        }
        if sweep {
            let lo = p
                .points
                .iter()
                .map(|x| x.score.violation)
                .fold(f64::INFINITY, f64::min);
            let hi = p
                .points
                .iter()
                .map(|x| x.score.violation)
                .fold(0.0, f64::max);
            row.push(Cell::new(p.knob));
            row.push(Cell::new(p.points.len()).set_alignment(CellAlignment::Right));
            row.push(Cell::new(format!("{} .. {}", pct(lo), pct(hi))));
            for s in &p.slack_at {
                let text = match s.crossing {
                    Crossing::At(slack) => pct(slack),
                    Crossing::AllBelow(slack) => format!("<= {} *", pct(slack)),
                    Crossing::NotReached => "not reached".into(),
                };
                row.push(Cell::new(text).set_alignment(CellAlignment::Right));
            }
        } else if let Some(point) = p.points.first() {
            row.push(Cell::new(format!("{} = {}", p.knob, point.knob)));
            for v in [point.score.violation, point.score.unmet, point.score.slack] {
                row.push(Cell::new(pct(v)).set_alignment(CellAlignment::Right));
            }
            row.push(
                Cell::new(format!("{:.4} {}", point.score.mean_allocation, r.unit))
                    .set_alignment(CellAlignment::Right),
            );
        }
        table.add_row(row);
    }
    writeln!(out, "{table}")?;
    if r.policies
        .iter()
        .flat_map(|p| &p.slack_at)
        .any(|s| matches!(s.crossing, Crossing::AllBelow(_)))
    {
        writeln!(
            out,
            "* every setting stays under this violation level: the least slack of any setting"
        )?;
    }
    writeln!(out, "took {:.2}s", r.elapsed_seconds)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_with_suffixes() {
        assert_eq!(parse_amount("4.5").unwrap(), 4.5);
        assert_eq!(
            parse_amount("16GiB").unwrap(),
            16.0 * 1024.0 * 1024.0 * 1024.0
        );
        assert_eq!(parse_amount("2G").unwrap(), 2e9);
        assert!(parse_amount("-1").is_err());
        assert!(
            parse_amount("lots")
                .unwrap_err()
                .to_string()
                .contains("'lots'")
        );
    }

    #[test]
    fn capacities_split_on_commas() {
        let caps = parse_capacities(&["cpu=4.5,memory=16GiB".into(), "io_read=1M".into()]).unwrap();
        assert_eq!(
            caps,
            vec![
                (Resource::Cpu, 4.5),
                (Resource::Memory, 16.0 * 1024.0 * 1024.0 * 1024.0),
                (Resource::IoRead, 1e6)
            ]
        );
        let err = format!("{:#}", parse_capacities(&["cpu".into()]).unwrap_err());
        assert!(err.contains("expected RESOURCE=AMOUNT"), "{err}");
    }
}
