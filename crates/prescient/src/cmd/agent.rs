//! `prescient agent`: the live agent (prescient-agent's loop on this
//! machine).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use prescient_agent::control::Control;
use prescient_agent::replay::ReplayOptions;
use prescient_agent::{ConfigSource, Mode, Overrides, RunOptions, Signals, logger};

/// Run the live agent: sample the workloads' cgroups, store the samples,
/// forecast, plan with the solver and (in enforce mode) apply the plan to
/// the cgroups, until SIGTERM or SIGINT (or --duration). SIGHUP reloads
/// the configuration. The configuration is the file (--config, else
/// PRESCIENT_CONFIG, else the defaults), then PRESCIENT_* variables, then
/// these flags; `prescient config example` prints a commented one. With
/// `api.enabled` (the default) the REST API, the dashboard and /metrics are
/// served on `api.listen` while the loop runs. Logs go to stderr
/// (PRESCIENT_LOG=debug for more).
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

    /// Replay this trace (the long CSV, e.g. data/sample/gcd.csv.gz)
    /// instead of watching this machine's cgroups: each (host, workload)
    /// of the trace is a workload, time is the trace's, nothing is
    /// enforced, and the run ends at the trace's end. See
    /// prescient_agent::replay for how the configuration applies.
    #[arg(long, value_name = "TRACE")]
    replay: Option<PathBuf>,

    /// With --replay: trace time per wall time (600: ten minutes of trace
    /// a second; inf: as fast as the loop goes).
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 600.0,
        requires = "replay"
    )]
    speed: f64,

    /// With --replay: only the first N workloads of the trace.
    #[arg(long, value_name = "N", requires = "replay")]
    max_workloads: Option<usize>,

    /// With --replay: only the workloads of this trace host.
    #[arg(long, value_name = "HOST", requires = "replay")]
    trace_host: Option<String>,
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
    // The API server runs beside the loop, on its own thread, and stops
    // after the loop has ended. One that cannot start (its port taken) is
    // an error in the log, not a reason to leave the workloads unmanaged.
    let config = source.load()?;
    let (control, server) = if config.api.enabled {
        let (handle, port) = Control::new();
        match prescient_api::serve(&config, handle) {
            Ok(server) => (Some(port), Some(server)),
            Err(e) => {
                log::error!("the API server did not start ({e}): running without it");
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    let summary = match &args.replay {
        // --duration is wall time: that much of the trace at --speed.
        Some(trace) => prescient_agent::replay::run(
            &source,
            trace,
            &ReplayOptions {
                speed: args.speed,
                max_workloads: args.max_workloads,
                host: args.trace_host.clone(),
                span: duration
                    .filter(|_| args.speed.is_finite())
                    .and_then(|d| Duration::try_from_secs_f64(d.as_secs_f64() * args.speed).ok()),
            },
            &signals,
            control,
        )
        .map_err(anyhow::Error::from),
        None => prescient_agent::run(&source, &RunOptions { duration, control }, &signals)
            .map_err(anyhow::Error::from),
    };
    if let Some(server) = server {
        server.shutdown();
    }
    let summary = summary?;
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
