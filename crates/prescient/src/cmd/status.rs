//! `prescient status`: what the agent knows, read from its store.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use prescient_agent::logger::utc;
use prescient_agent::status;
use prescient_core::Resource;
use prescient_solver::fmt_amount;
use prescient_store::Store;

/// Show the workloads the agent tracks (with their last usage and forecast
/// accuracy), each series' forecaster (ensemble weights one step and a day
/// ahead, and calibration), the current plan of each pool, and the last
/// limit changes, from the agent's store.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The store (default: PRESCIENT_STORE, else the configuration's default).
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,

    /// How many of the last audited changes to show.
    #[arg(long, value_name = "N", default_value_t = 10)]
    changes: usize,

    /// The quantile level to show the forecasters' weights and calibration
    /// at (default: each series' SLO quantile when the agent calibrates one
    /// besides the fixed levels, else 0.95).
    #[arg(long, value_name = "Q", value_parser = level)]
    level: Option<f64>,
}

fn level(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(q) if q > 0.0 && q < 1.0 => Ok(q),
        _ => Err(format!(
            "{s:?} is not a quantile level: expected a number strictly between 0 and 1, such as 0.95"
        )),
    }
}

pub fn run(args: StatusArgs) -> Result<()> {
    let path = args
        .store
        .or_else(|| std::env::var_os("PRESCIENT_STORE").map(PathBuf::from))
        .unwrap_or_else(|| prescient_agent::config::StoreConfig::default().path);
    if !path.is_file() {
        bail!(
            "{}: no store there (run `prescient agent`, or give --store FILE)",
            path.display()
        );
    }
    let mut store = Store::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let s = status::read(&mut store, args.changes, args.level)?;
    println!(
        "store {}: {} series, {} samples{}",
        path.display(),
        s.summary.series,
        s.summary.samples,
        match (s.summary.first_ts, s.summary.last_ts) {
            (Some(a), Some(b)) => format!(" from {} to {}", utc(a), utc(b)),
            _ => String::new(),
        }
    );

    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "host",
        "workload",
        "found by",
        "cpu now",
        "memory now",
        "forecasts scored",
        "p95 coverage",
        "median error",
    ]);
    for w in &s.workloads {
        let last = |r: Resource| {
            w.series
                .iter()
                .find(|x| x.resource == r)
                .and_then(|x| x.last)
                .map(|(_, v)| fmt_amount(r, v))
                .unwrap_or_else(|| "-".into())
        };
        let acc: Vec<String> = w
            .series
            .iter()
            .filter(|x| x.accuracy.scored > 0)
            .map(|x| format!("{} {}", x.resource, x.accuracy.scored))
            .collect();
        let cov: Vec<String> = w
            .series
            .iter()
            .filter(|x| x.accuracy.scored > 0)
            .map(|x| format!("{} {:.0}%", x.resource, x.accuracy.coverage95 * 100.0))
            .collect();
        let err: Vec<String> = w
            .series
            .iter()
            .filter(|x| x.accuracy.scored > 0)
            .map(|x| format!("{} {:.0}%", x.resource, x.accuracy.median_error * 100.0))
            .collect();
        t.add_row([
            w.host.0.clone(),
            w.name.clone(),
            w.selector.clone(),
            last(Resource::Cpu),
            last(Resource::Memory),
            acc.join(", "),
            cov.join(", "),
            err.join(", "),
        ]);
    }
    println!("\nworkloads\n{t}");

    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "workload",
        "resource",
        "learnt",
        "level",
        "weights one step ahead",
        "weights a day ahead",
        "calibration one step ahead",
        "calibration a day ahead",
    ]);
    let mut any = false;
    for w in &s.workloads {
        for x in &w.series {
            let Some(f) = &x.forecaster else { continue };
            any = true;
            let f = match f {
                Ok(f) => f,
                Err(e) => {
                    t.add_row([
                        w.name.clone(),
                        x.resource.to_string(),
                        format!("saved state unreadable: {e}"),
                    ]);
                    continue;
                }
            };
            t.add_row([
                w.name.clone(),
                x.resource.to_string(),
                format!("{} steps", f.observations),
                if f.weights_level == f.level {
                    format!("{}", f.level)
                } else {
                    format!("{} (weights at {})", f.level, f.weights_level)
                },
                weights(&f.step),
                weights(&f.day),
                f.one_step.map_or_else(
                    || "not scored yet".to_string(),
                    |c| {
                        format!(
                            "covers {:.1}% of {} steps, offset {:+.2} x volatility",
                            c.coverage * 100.0,
                            c.scored,
                            c.offset
                        )
                    },
                ),
                match f.day_offset {
                    Some(o) => format!(
                        "median {}{} from {} checks",
                        if o < 0.0 { "-" } else { "+" },
                        fmt_amount(x.resource, o.abs()),
                        f.day_checks
                    ),
                    None => format!("not yet ({} checks)", f.day_checks),
                },
            ]);
        }
    }
    if any {
        println!("\nforecasters (ensemble weights by model; calibration at the level)\n{t}");
    }

    for p in &s.plans {
        let mut t = Table::new();
        t.load_style(UTF8_FULL_CONDENSED);
        t.set_header(["workload", "resource", "allocation", "covers", "why"]);
        for e in &p.entries {
            t.add_row([
                e.workload.0.clone(),
                e.resource.to_string(),
                fmt_amount(e.resource, e.allocation),
                format!("{:.1}%", e.coverage * 100.0),
                e.reason.clone(),
            ]);
        }
        println!(
            "\nplan of pool {} made at {}{}\n{t}",
            p.pool,
            utc(p.made_at),
            if p.degraded { " (degraded)" } else { "" }
        );
    }
    if s.plans.is_empty() {
        println!("\nno plan yet");
    }

    if args.changes > 0 {
        if s.audit.is_empty() {
            println!("\nno limit changes recorded");
        } else {
            let mut t = Table::new();
            t.load_style(UTF8_FULL_CONDENSED);
            t.set_header(["when", "by", "target", "before", "after", "why"]);
            for a in &s.audit {
                t.add_row([
                    utc(a.ts),
                    a.actor.clone(),
                    a.target.clone(),
                    a.before.clone().unwrap_or_else(|| "-".into()),
                    a.after.clone().unwrap_or_else(|| "-".into()),
                    a.reason.clone(),
                ]);
            }
            println!("\nlast changes\n{t}");
        }
    }
    Ok(())
}

/// "seasonal 0.30, recent 0.41, ...".
fn weights(w: &[(String, f64)]) -> String {
    w.iter()
        .map(|(m, x)| format!("{m} {x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}
