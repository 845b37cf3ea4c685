//! `prescient loadgen`: play a trace host's workloads as real processes in
//! cgroups of their own, and record the CPU each asked for and got.
//! `prescient loadgen-worker` (hidden) is the worker process it starts.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use prescient_linux::CgroupPath;
use prescient_loadgen::{
    Loadgen, Options, Pick, Record, Scenario, StepRow, Summary, Totals, WorkerCommand, live_fs,
};

/// Play the workloads of one host of a trace as real processes: each burns
/// the CPU (busy/idle duty cycles) and holds the memory (touched pages) the
/// trace gives it, in a cgroup of its own, at compressed time. Records per
/// workload and step the CPU asked for and got (from the cgroup's usage
/// counter) and the memory asked for and held; ends its processes and
/// removes its cgroups on exit, Ctrl-C and SIGTERM.
#[derive(Debug, Args)]
pub struct LoadgenArgs {
    /// The trace: long CSV `timestamp,host,workload,resource,value`, plain or gzip.
    #[arg(long, value_name = "FILE")]
    trace: PathBuf,

    /// The host whose workloads to play.
    #[arg(long, value_name = "HOST")]
    host: String,

    /// Trace seconds per wall second (PlanetLab's 300 s steps at 150: one
    /// step every 2 s).
    #[arg(long, default_value_t = 300.0)]
    speed: f64,

    /// Play only this many of the host's workloads.
    #[arg(long, value_name = "N")]
    workloads: Option<usize>,

    /// Which workloads `--workloads` keeps.
    #[arg(long, value_enum, default_value_t = PickArg::First)]
    pick: PickArg,

    /// The first trace step to play.
    #[arg(long, value_name = "STEP", default_value_t = 0)]
    start_step: usize,

    /// Stop after about this many wall seconds (whole steps); default: at
    /// the end of the trace.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// The parent cgroup to create the loadgen's subtree under (the same
    /// path in every hierarchy); default: this process's own cgroups.
    #[arg(long, value_name = "PATH")]
    cgroup_root: Option<String>,

    /// Cap the whole subtree at this many cores (a contended run).
    #[arg(long, value_name = "CORES")]
    cap_cores: Option<f64>,

    /// A CPU weight for the whole subtree (1..=10000, default 100; v1
    /// cpu.shares in proportion): a high one shields the run from other
    /// work on a shared machine.
    #[arg(long, value_name = "W")]
    weight: Option<u64>,

    /// Multiply every CPU demand by this.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    cpu_scale: f64,

    /// Multiply every memory demand by this.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    memory_scale: f64,

    /// The duty-cycle slice of the workers, milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10.0)]
    slice_ms: f64,

    /// Write the record (one row per workload and step) as CSV.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,

    /// Print no line per step.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PickArg {
    /// The first workloads in trace order.
    First,
    /// The workloads with the highest mean CPU demand.
    Busiest,
}

/// The worker process of `prescient loadgen` (internal).
#[derive(Debug, Args)]
pub struct LoadgenWorkerArgs {
    /// The worker's arguments (`--slice-us N --seed N`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run_worker(args: LoadgenWorkerArgs) -> Result<()> {
    match prescient_loadgen::worker_main(&args.args) {
        0 => Ok(()),
        code => std::process::exit(code),
    }
}

pub fn run(args: LoadgenArgs) -> Result<()> {
    for (name, v) in [
        ("--speed", args.speed),
        ("--cpu-scale", args.cpu_scale),
        ("--memory-scale", args.memory_scale),
        ("--slice-ms", args.slice_ms),
    ] {
        if !(v.is_finite() && v > 0.0) {
            bail!("{name} {v}: expected a positive number");
        }
    }
    let duration = match args.duration {
        Some(d) if d.is_finite() && d > 0.0 => Some(Duration::from_secs_f64(d)),
        Some(d) => bail!("--duration {d}: expected a positive number of seconds"),
        None => None,
    };
    let mut scenario =
        Scenario::from_trace(&args.trace, &args.host)?.scaled(args.cpu_scale, args.memory_scale);
    if let Some(n) = args.workloads {
        if n == 0 {
            bail!("--workloads 0: expected at least 1");
        }
        let pick = match args.pick {
            PickArg::First => Pick::First,
            PickArg::Busiest => Pick::Busiest,
        };
        scenario = scenario.select(n, pick);
    }
    let parent = args
        .cgroup_root
        .as_deref()
        .map(CgroupPath::parse)
        .transpose()
        .with_context(|| format!("--cgroup-root {:?}", args.cgroup_root.unwrap_or_default()))?;
    let fs = live_fs(parent.as_ref())?;

    let worker = WorkerCommand::this_program("loadgen-worker")
        .context("finding this program to start workers")?;
    let mut opts = Options::new(worker);
    opts.speed = args.speed;
    opts.start_step = args.start_step;
    opts.duration = duration;
    opts.slice = Duration::from_secs_f64(args.slice_ms / 1000.0);
    opts.subtree_cpu_cap = args.cap_cores;
    opts.subtree_cpu_weight = args.weight;

    // Signals only set a flag: the loop stops at its next check (within
    // 20 ms) and the loadgen cleans up as it returns.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone())
            .with_context(|| format!("handling signal {sig}"))?;
    }

    let host = scenario.host.clone();
    let step_secs = scenario.step_secs;
    let mut lg = Loadgen::start(&fs, scenario, opts).context("starting the loadgen")?;
    let steps = lg.steps();
    eprintln!(
        "loadgen: host {host}: {} workloads, {steps} steps of {step_secs} s at speed {} ({:.2} s each, about {:.0} s)",
        lg.workloads().len(),
        args.speed,
        lg.step_wall().as_secs_f64(),
        lg.step_wall().as_secs_f64() * steps as f64,
    );
    for (h, dir) in lg.subtree_dirs() {
        eprintln!("loadgen: cgroups in {h}: {}", dir.display());
    }
    let quiet = args.quiet;
    let result = lg.run(&stop, |rows| {
        if !quiet {
            print_step(rows, steps);
        }
    });
    let record = lg.finish();
    result?;
    if stop.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("loadgen: stopped by a signal; processes ended and cgroups removed");
    }
    if let Some(path) = &args.record {
        write_record(&record, path)?;
        eprintln!(
            "loadgen: wrote {} rows to {}",
            record.rows.len(),
            path.display()
        );
    }
    print_summary(&record.summary());
    Ok(())
}

fn print_step(rows: &[StepRow], steps: usize) {
    let Some(first) = rows.first() else { return };
    let asked: f64 = rows.iter().map(|r| r.cpu_asked).sum();
    let got: f64 = rows.iter().filter_map(|r| r.cpu_got).sum();
    let unserved: f64 = rows.iter().map(StepRow::cpu_unserved).sum();
    let mem: u64 = rows.iter().filter_map(|r| r.mem_held).sum();
    eprintln!(
        "step {:>4}/{steps}  trace t={:>7}s  cpu asked {asked:6.2}  got {got:6.2}  unserved {unserved:6.2} cores  memory held {:>6} MiB",
        first.step + 1,
        first.trace_ts,
        mem >> 20,
    );
}

fn write_record(record: &Record, path: &PathBuf) -> Result<()> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(f);
    record
        .write_csv(&mut w)
        .and_then(|()| w.flush())
        .with_context(|| format!("writing {}", path.display()))
}

fn print_summary(s: &Summary) {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "workload",
        "cpu asked (core·s)",
        "got",
        "unserved",
        "unserved %",
        "mem asked (MiB)",
        "mem held (MiB)",
        "restarts",
    ]);
    let row = |name: &str, x: &Totals| {
        let mib = |byte_s: f64| {
            if x.wall_s > 0.0 {
                format!("{:.0}", byte_s / x.wall_s / (1u64 << 20) as f64)
            } else {
                "-".into()
            }
        };
        vec![
            Cell::new(name),
            num(format!("{:.2}", x.cpu_asked)),
            num(format!("{:.2}", x.cpu_got)),
            num(format!("{:.2}", x.cpu_unserved)),
            num(format!("{:.1}", 100.0 * x.unserved_share())),
            num(mib(x.mem_asked)),
            num(mib(x.mem_held)),
            num(x.restarts.to_string()),
        ]
    };
    for (name, x) in &s.workloads {
        t.add_row(row(name, x));
    }
    // The total's memory is the sum of the workloads' means.
    let mut total = s.total.clone();
    total.wall_s /= s.workloads.len().max(1) as f64;
    t.add_row(row("total", &total));
    println!("{t}");
    println!(
        "{} steps; memory in mean MiB over the run; unserved = sum over workloads and steps of max(0, asked - got)",
        s.steps
    );
}

fn num(s: String) -> Cell {
    Cell::new(s).set_alignment(CellAlignment::Right)
}
