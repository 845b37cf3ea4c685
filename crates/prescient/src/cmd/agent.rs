//! `prescient agent`: the live agent (prescient-agent's loop on this
//! machine).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use prescient_agent::{ConfigSource, Mode, Overrides, RunOptions, Signals, logger};

/// Run the live agent: sample the workloads' cgroups, store the samples,
/// forecast, plan with the solver and (in enforce mode) apply the plan to
/// the cgroups, until SIGTERM or SIGINT (or --duration). SIGHUP reloads
/// the configuration. The configuration is the file (--config, else
/// PRESCIENT_CONFIG, else the defaults), then PRESCIENT_* variables, then
/// these flags; `prescient config example` prints a commented one. Logs go
/// to stderr (PRESCIENT_LOG=debug for more).
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// recommend (plan and record, change nothing) or enforce.
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    mode: Option<Mode>,

    /// Who sizes the workloads, over the configuration's: prescient
    /// (forecasts and the solver) or a reference policy (vpa,
    /// static-equal, ...), enforced the same way.
    #[arg(long, value_name = "NAME")]
    policy: Option<String>,

    /// The store (SQLite file), over the configuration's.
    #[arg(long, value_name = "FILE")]
    store: Option<PathBuf>,

    /// Stop after this many seconds (default: run until stopped).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Print the run's summary as JSON on stdout when it ends.
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s)
}

pub fn run(args: AgentArgs) -> Result<()> {
    let level = std::env::var("PRESCIENT_LOG")
        .ok()
        .and_then(|l| logger::parse_level(&l))
        .unwrap_or(log::LevelFilter::Info);
    logger::init(level);
    let duration = match args.duration {
        None => None,
        Some(d) if d.is_finite() && d > 0.0 && d < 1e9 => Some(Duration::from_secs_f64(d)),
        Some(d) => bail!("--duration {d}: must be a positive number of seconds"),
    };
    let env = Overrides::from_env(std::env::vars())?;
    let file = args
        .config
        .or_else(|| std::env::var_os("PRESCIENT_CONFIG").map(PathBuf::from));
    let flags = Overrides {
        mode: args.mode,
        store_path: args.store,
        policy: args.policy,
        ..Overrides::default()
    };
    let source = ConfigSource::Layered { file, env, flags };
    let signals = Signals::new();
    signals
        .install_handlers()
        .context("installing the signal handlers")?;
    let summary = prescient_agent::run(&source, &RunOptions { duration }, &signals)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let c = &summary.counters;
        println!(
            "{} mode on {}: {} workloads, {} sample passes, {} samples stored, {} plans, {} limit writes, {} restored",
            summary.mode,
            summary.host,
            summary.workloads.len(),
            c.sample_passes,
            summary.stored_samples,
            c.plans,
            c.writes,
            c.restored
        );
        for (stage, t) in &summary.times.stages {
            println!(
                "  {stage:<10} {:>6} runs, mean {:.3} ms, max {:.3} ms",
                t.count,
                t.mean_seconds() * 1e3,
                t.max_seconds * 1e3
            );
        }
    }
    Ok(())
}
