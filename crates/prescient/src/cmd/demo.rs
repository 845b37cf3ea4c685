//! `prescient demo`: the newcomer's main job. Plays one host of a bundled
//! real trace (PlanetLab) as real processes in a CPU-capped cgroup subtree,
//! runs the agent on them in enforce mode with a live table, then runs the
//! same steps again under a static equal split (and any other reference
//! policy asked for), enforced the same way, and compares.
//!
//! Each policy gets its own run on the same trace steps, one after the
//! other: running them side by side would make them compete for the same
//! cores. Every run starts cold (no forecaster state, an empty VPA
//! histogram).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use prescient_agent::config::{Config, Mode};
use prescient_agent::{
    Agent, Clock, LinuxObserver, Machine, Signals, StoreSink, SystemClock, logger, resolve,
};
use prescient_core::{Resource, WorkloadId};
use prescient_linux::{ProcFs, Root};
use prescient_loadgen::{Loadgen, Options, Pick, Scenario, Summary, WorkerCommand, live_fs};
use serde::Serialize;

/// The PlanetLab sample, bundled so that the demo runs from anywhere.
const SAMPLE: &[u8] = include_bytes!("../../../../data/sample/planetlab.csv.gz");

/// Watch Prescient manage real workloads: plays one host of a real trace
/// (PlanetLab, bundled) as processes in a cgroup subtree capped at
/// --cap-cores, runs the agent on them in enforce mode with a live table
/// (per workload: demand, forecast, allocation, throttling), then plays the
/// same steps under a static equal split enforced the same way (cpu.max and
/// cpu.weight per workload) and compares unserved CPU and slack. Needs
/// root (or a delegated cgroup); where the cpu controller cannot be
/// written it says why and runs in recommend mode. Ends its processes and
/// removes its cgroups on exit, Ctrl-C and SIGTERM.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Seconds each policy runs (whole trace steps).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    duration: f64,

    /// The trace (long CSV, plain or gzip); default: the bundled PlanetLab
    /// sample.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,

    /// The host whose workloads to play.
    #[arg(long, value_name = "HOST", default_value = "pl002")]
    host: String,

    /// Play the host's N busiest workloads.
    #[arg(long, value_name = "N", default_value_t = 8)]
    workloads: usize,

    /// Trace seconds per wall second (150: a 5-minute step every 2 s).
    #[arg(long, default_value_t = 150.0)]
    speed: f64,

    /// The CPU cap on the whole subtree, cores.
    #[arg(long, value_name = "CORES", default_value_t = 1.5)]
    cap_cores: f64,

    /// Multiply every CPU demand by this.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    cpu_scale: f64,

    /// The first trace step to play.
    #[arg(long, value_name = "STEP", default_value_t = 0)]
    start_step: usize,

    /// The policies to compare with, each run on the same steps after
    /// prescient's (reference policies of `prescient replay`, comma
    /// separated).
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "static-equal"
    )]
    compare: Vec<String>,

    /// Seconds between refreshes of the live table.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    refresh: f64,

    /// The CPU weight of the whole subtree (1..=10000, default 1000; v1
    /// cpu.shares in proportion): shields the measurement from other work
    /// on a shared machine.
    #[arg(long, value_name = "W", default_value_t = 1000)]
    weight: u64,

    /// Enforce with cpu.weight only (work-conserving shares), not cpu.max
    /// at the allocation too.
    #[arg(long)]
    shares_only: bool,

    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// One policy's run.
#[derive(Debug, Clone, Serialize)]
struct Outcome {
    policy: String,
    mode: String,
    steps: usize,
    /// Core-seconds asked for, got, and unserved (sum of max(0, asked - got)).
    cpu_asked: f64,
    cpu_got: f64,
    cpu_unserved: f64,
    /// Core-seconds allocated (the plans in force, integrated over time).
    cpu_allocated: f64,
    /// (allocated - got) / allocated.
    slack: f64,
    /// Limits written.
    writes: u64,
    /// Per workload: asked, got, unserved.
    workloads: Vec<(String, f64, f64, f64)>,
}

#[derive(Debug, Serialize)]
struct Report {
    trace: String,
    host: String,
    workloads: usize,
    speed: f64,
    cap_cores: f64,
    cpu_scale: f64,
    start_step: usize,
    step_seconds: f64,
    enforcement: String,
    outcomes: Vec<Outcome>,
}

/// Removes the demo's temporary files (the store, the unpacked sample).
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut s = p.clone().into_os_string();
                s.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(s));
            }
        }
    }
}

pub fn run(args: DemoArgs) -> Result<()> {
    let level = std::env::var("PRESCIENT_LOG")
        .ok()
        .and_then(|l| logger::parse_level(&l))
        .unwrap_or(log::LevelFilter::Warn);
    logger::init(level);
    for (name, v) in [
        ("--duration", args.duration),
        ("--speed", args.speed),
        ("--cap-cores", args.cap_cores),
        ("--cpu-scale", args.cpu_scale),
        ("--refresh", args.refresh),
    ] {
        if !(v.is_finite() && v > 0.0 && v < 1e9) {
            bail!("{name} {v}: expected a positive number");
        }
    }
    if args.workloads == 0 {
        bail!("--workloads 0: expected at least 1");
    }
    for p in &args.compare {
        match prescient_agent::config::reference_policy(p) {
            Ok(Some(_)) => {}
            Ok(None) => bail!("--compare {p}: prescient always runs first"),
            Err(e) => bail!("--compare {p}: {e}"),
        }
    }
    let pid = std::process::id();
    let tmp = std::env::temp_dir();
    let mut temp = TempFiles(Vec::new());
    let (trace, trace_name) = match &args.trace {
        Some(t) => (t.clone(), t.display().to_string()),
        None => {
            let p = tmp.join(format!("prescient-demo-{pid}-planetlab.csv.gz"));
            std::fs::write(&p, SAMPLE).with_context(|| format!("writing {}", p.display()))?;
            temp.0.push(p.clone());
            (
                p,
                "the bundled PlanetLab sample (data/sample/planetlab.csv.gz)".into(),
            )
        }
    };
    let scenario = Scenario::from_trace(&trace, &args.host)
        .with_context(|| format!("reading host {} of {trace_name}", args.host))?
        .select(args.workloads, Pick::Busiest)
        .scaled(args.cpu_scale, 1.0);
    let step_wall = scenario.step_secs as f64 / args.speed;
    if step_wall < 0.5 {
        bail!(
            "--speed {}: a {} s trace step would last {step_wall:.2} s; the agent needs at least 0.5 s per step",
            args.speed,
            scenario.step_secs
        );
    }

    let signals = Signals::new();
    signals
        .install_handlers()
        .context("installing the signal handlers")?;
    let worker = WorkerCommand::this_program("loadgen-worker")
        .context("finding this program to start workers")?;
    let fs = live_fs(None).context(
        "the demo plays its workloads in cgroups of its own: it needs a cgroup filesystem it can write (run it as root, or in a delegated cgroup)",
    )?;
    // Enforce where the cpu controller can be written; otherwise say why
    // and recommend.
    let (mode, why_not) = match prescient_linux::enforce::enforcer_for(&fs) {
        Ok(_) if has_cpu_controller(&fs) => (Mode::Enforce, None),
        Ok(_) => (
            Mode::Recommend,
            Some("no cpu controller is available under this process's cgroup".to_string()),
        ),
        Err(e) => (Mode::Recommend, Some(e.to_string())),
    };
    let enforcement = if args.shares_only {
        "cpu.weight from each allocation (shares only)"
    } else {
        "cpu.max at each allocation, and cpu.weight in proportion"
    };
    println!(
        "prescient demo: host {} of {trace_name}: its {} busiest workloads as real processes, CPU x{}, in a subtree capped at {} cores; one {} s trace step every {step_wall:.1} s, {:.0} s per policy",
        args.host,
        scenario.workloads.len(),
        args.cpu_scale,
        args.cap_cores,
        scenario.step_secs,
        args.duration
    );
    match &why_not {
        None => println!("enforcement: {enforcement}, the same for every policy"),
        Some(why) => println!(
            "cgroup limits cannot be written here ({why}): the agent runs in recommend mode and changes nothing"
        ),
    }

    let mut policies = vec![prescient_agent::config::PRESCIENT_POLICY.to_string()];
    policies.extend(args.compare.iter().cloned());
    let mut outcomes = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        if signals.stop_requested() {
            break;
        }
        let db = tmp.join(format!("prescient-demo-{pid}-{policy}.db"));
        temp.0.push(db.clone());
        let live = i == 0;
        println!();
        println!(
            "── {policy} ({} mode){} ──",
            mode,
            if live { ": live table" } else { "" }
        );
        let o = run_policy(&RunSpec {
            args: &args,
            scenario: &scenario,
            fs: &fs,
            worker: &worker,
            policy,
            mode,
            db: &db,
            signals: &signals,
            live,
        })
        .with_context(|| format!("running {policy}"))?;
        outcomes.push(o);
    }
    if signals.stop_requested() {
        println!("stopped by a signal: processes ended, limits restored, cgroups removed");
    }
    print_comparison(&outcomes);
    if let Some(path) = &args.json {
        let report = Report {
            trace: trace_name,
            host: args.host.clone(),
            workloads: scenario.workloads.len(),
            speed: args.speed,
            cap_cores: args.cap_cores,
            cpu_scale: args.cpu_scale,
            start_step: args.start_step,
            step_seconds: step_wall,
            enforcement: enforcement.into(),
            outcomes,
        };
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn has_cpu_controller(fs: &prescient_linux::CgroupFs) -> bool {
    fs.hierarchies().any(|h| {
        let d = h.base_dir();
        d.join("cpu.max").exists() || d.join("cpu.cfs_quota_us").exists()
    }) || fs.v2().is_some_and(|v| v.has("cpu"))
}

struct RunSpec<'a> {
    args: &'a DemoArgs,
    scenario: &'a Scenario,
    fs: &'a prescient_linux::CgroupFs,
    worker: &'a WorkerCommand,
    policy: &'a str,
    mode: Mode,
    db: &'a Path,
    signals: &'a Signals,
    live: bool,
}

fn run_policy(spec: &RunSpec<'_>) -> Result<Outcome> {
    let args = spec.args;
    let mut opts = Options::new(spec.worker.clone());
    opts.speed = args.speed;
    opts.start_step = args.start_step;
    opts.duration = Some(Duration::from_secs_f64(args.duration));
    opts.subtree_cpu_cap = Some(args.cap_cores);
    opts.subtree_cpu_weight = Some(args.weight);
    let step_ms = (spec.scenario.step_secs as f64 * 1000.0 / args.speed).round() as i64;
    let lg = Loadgen::start(spec.fs, spec.scenario.clone(), opts)
        .context("starting the workloads (the demo needs to create cgroups: run it as root)")?;
    for (h, dir) in lg.subtree_dirs() {
        println!("cgroups in {h}: {}", dir.display());
    }
    let sample_ms = (step_ms / 8).max(100);
    let text = format!(
        r#"
[agent]
mode = "{mode}"
host = "demo"
policy = "{policy}"
sample_interval = "{sample_ms}ms"
forecast_step = "{step_ms}ms"
plan_interval = "{step_ms}ms"
plan_steps = 1
cpu_unit = 0.025
[store]
path = "{db}"
flush_interval = "5s"
checkpoint_interval = "600s"
[cgroup]
subtree = "{subtree}"
relative_to = "self"
restore_on_exit = true
[enforce]
hard_cpu = {hard}
[[pool]]
name = "demo"
cpu = {cap}
spread_spare = true
[[workload]]
name = "loadgen"
cgroup = "/*"
"#,
        mode = spec.mode,
        policy = spec.policy,
        db = spec.db.display(),
        subtree = lg.subtree().as_str(),
        hard = !args.shares_only,
        cap = args.cap_cores,
    );
    let config = Config::from_toml(&text, Path::new("<demo>"))?;
    let machine = Machine::detect();
    let config = resolve(config, &machine)?;
    let agent_fs = prescient_agent::cgroup_fs(Root::live(), &config.cgroup)?;
    let enforcer = match spec.mode {
        Mode::Enforce => Some(prescient_linux::enforce::enforcer_for(&agent_fs)?),
        Mode::Recommend => None,
    };
    let sink = StoreSink::open(spec.db)?;
    let observer = LinuxObserver::new(agent_fs, ProcFs::new(Root::live()));
    let mut agent = Agent::new(config, machine, observer, sink, enforcer, SystemClock);

    // The agent's rollup buckets are aligned on the step in wall time and
    // each sample measures the interval before it: start the workloads
    // one sample interval before a bucket boundary, so that each bucket
    // holds exactly one trace step.
    let now = prescient_agent::ports::wall_ms();
    let mut boundary = (now.div_euclid(step_ms) + 1) * step_ms;
    if boundary - sample_ms - now < 50 {
        boundary += step_ms;
    }
    sleep_until_ms(boundary - sample_ms);
    let running = lg.spawn();
    sleep_until_ms(boundary);
    agent.start();

    let names: Vec<(String, WorkloadId)> = running
        .workloads()
        .iter()
        .map(|w| {
            (
                w.name.clone(),
                WorkloadId(last(w.cgroup.as_str()).to_string()),
            )
        })
        .collect();
    let ids: Vec<(WorkloadId, String)> = agent
        .workloads()
        .into_iter()
        .map(|(id, cg)| (id, last(cg.as_str()).to_string()))
        .collect();
    let id_of = |cg_name: &WorkloadId| {
        ids.iter()
            .find(|(_, c)| *c == cg_name.0)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| cg_name.clone())
    };
    let names: Vec<(String, WorkloadId)> = names.into_iter().map(|(n, c)| (n, id_of(&c))).collect();

    let started = Instant::now();
    let refresh = Duration::from_secs_f64(args.refresh);
    let mut next_print = started + refresh;
    let mut allocated = 0.0;
    let mut last_tick = Instant::now();
    let total_steps = running.steps();
    loop {
        if spec.signals.stop_requested() || running.is_finished() {
            break;
        }
        let wake = agent.tick();
        let dt = last_tick.elapsed().as_secs_f64();
        last_tick = Instant::now();
        allocated += dt
            * names
                .iter()
                .filter_map(|(_, id)| agent.allocation(id, Resource::Cpu))
                .sum::<f64>();
        if Instant::now() >= next_print {
            next_print += refresh;
            let snap = running.snapshot();
            if spec.live {
                print_live(&agent, &names, &snap, total_steps, started.elapsed());
            } else {
                let s = snap.summary();
                println!(
                    "  {:>5.1} s, step {:>3}/{total_steps}: unserved so far {:.1} of {:.1} core·s asked",
                    started.elapsed().as_secs_f64(),
                    s.steps,
                    s.total.cpu_unserved,
                    s.total.cpu_asked
                );
            }
        }
        let next_print_ms = prescient_agent::ports::wall_ms()
            + next_print
                .saturating_duration_since(Instant::now())
                .as_millis() as i64;
        let mut clock = SystemClock;
        clock.wait_until(wake.min(next_print_ms), spec.signals);
        let _ = std::io::stdout().flush();
    }
    // Restore the limits before the cgroups go.
    let summary = agent.shutdown();
    let record = if spec.signals.stop_requested() {
        running.stop()?
    } else {
        running.wait()?
    };
    let s: Summary = record.summary();
    let got = s.total.cpu_got;
    Ok(Outcome {
        policy: spec.policy.to_string(),
        mode: summary.mode.to_string(),
        steps: s.steps,
        cpu_asked: s.total.cpu_asked,
        cpu_got: got,
        cpu_unserved: s.total.cpu_unserved,
        cpu_allocated: allocated,
        slack: if allocated > 0.0 {
            ((allocated - got) / allocated).max(0.0)
        } else {
            0.0
        },
        writes: summary.counters.writes,
        workloads: s
            .workloads
            .iter()
            .map(|(n, t)| (n.clone(), t.cpu_asked, t.cpu_got, t.cpu_unserved))
            .collect(),
    })
}

fn last(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn sleep_until_ms(t: i64) {
    let now = prescient_agent::ports::wall_ms();
    if t > now {
        std::thread::sleep(Duration::from_millis((t - now) as u64));
    }
}

fn num(s: String) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}

fn print_live(
    agent: &Agent<LinuxObserver, StoreSink, Box<dyn prescient_linux::Enforcer + Send>, SystemClock>,
    names: &[(String, WorkloadId)],
    snap: &prescient_loadgen::Record,
    total_steps: usize,
    elapsed: Duration,
) {
    let last_step = snap.rows.iter().map(|r| r.step).max();
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "workload",
        "demand",
        "got",
        "used now",
        "forecast",
        "allocation",
        "throttled",
        "unserved so far",
    ]);
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    for (name, id) in names {
        let rows: Vec<_> = snap.workload(name).collect();
        let now = rows.iter().rev().find(|r| Some(r.step) == last_step);
        let unserved: f64 = rows.iter().map(|r| r.cpu_unserved()).sum();
        t.add_row(vec![
            Cell::new(name),
            num(f(now.map(|r| r.cpu_asked))),
            num(f(now.and_then(|r| r.cpu_got))),
            num(f(agent.last_usage(id, Resource::Cpu))),
            num(f(agent.forecast(id, Resource::Cpu))),
            num(f(agent.allocation(id, Resource::Cpu))),
            num(agent
                .throttled(id)
                .map_or_else(|| "-".into(), |v| format!("{:.0}%", 100.0 * v))),
            num(format!("{unserved:.2}")),
        ]);
    }
    let s = snap.summary();
    println!(
        "{:.0} s, step {}/{total_steps} (cores; demand and got: the last whole step; throttled: share of CPU periods)",
        elapsed.as_secs_f64(),
        s.steps
    );
    println!("{t}");
}

fn print_comparison(outcomes: &[Outcome]) {
    if outcomes.is_empty() {
        return;
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "policy",
        "mode",
        "steps",
        "asked (core·s)",
        "got",
        "unserved",
        "unserved %",
        "allocated",
        "slack %",
        "limit writes",
    ]);
    for o in outcomes {
        t.add_row(vec![
            Cell::new(&o.policy),
            Cell::new(&o.mode),
            num(o.steps.to_string()),
            num(format!("{:.1}", o.cpu_asked)),
            num(format!("{:.1}", o.cpu_got)),
            num(format!("{:.1}", o.cpu_unserved)),
            num(format!(
                "{:.1}",
                100.0 * o.cpu_unserved / o.cpu_asked.max(1e-9)
            )),
            num(format!("{:.1}", o.cpu_allocated)),
            num(format!("{:.1}", 100.0 * o.slack)),
            num(o.writes.to_string()),
        ]);
    }
    println!();
    println!("comparison (same trace steps, same cap, same enforcement):");
    println!("{t}");
    let p = &outcomes[0];
    for o in &outcomes[1..] {
        if o.cpu_unserved > 0.0 {
            println!(
                "unserved CPU under {} is {:.2} x that under {} ({:.1} vs {:.1} core·s)",
                p.policy,
                p.cpu_unserved / o.cpu_unserved,
                o.policy,
                p.cpu_unserved,
                o.cpu_unserved
            );
        }
    }
    println!(
        "unserved = sum over workloads and steps of max(0, asked - got), from the cgroups' own CPU counters; slack = (allocated - got) / allocated"
    );
}
