//! Overhead: the release `prescient agent`, in enforce mode, managing 200
//! real cgroups (each holding a `sleep` this bench started) at a 1 s
//! sample interval. Its CPU time is read from its own /proc/<pid>/stat
//! (utime + stime) over the measured window (5 minutes by default). The
//! target is under 2% of one core.
//!
//! Same-run references, each a thread of this bench reading the same
//! cgroup files as often as the agent's collector does (each file it
//! reads of the 200 cgroups once a second: CPU time and throttling, memory
//! in use, block I/O), its CPU time from /proc/thread-self/stat:
//! `reference_open_read_close` opens, reads and closes each file every
//! time; `reference_pread` keeps them open and reads from offset 0, as the
//! collector does.
//!
//! The subtree `prescient-bench-<pid>-overhead-<n>` is created under this
//! process's own cgroup in each hierarchy and removed at the end (on a
//! failure too); only processes this bench started are moved or ended.
//!
//! `cargo bench -p prescient --bench agent_overhead` (5 minutes), or
//! `cargo bench -p prescient --bench agent_overhead -- --quick` (60 s), or
//! `PRESCIENT_BENCH_SECS=120 cargo bench -p prescient --bench agent_overhead`.
//! Needs root and a cgroup filesystem; without them it says why and exits.

#[path = "../../prescient-agent/benches/support/tree.rs"]
mod tree;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tree::{Tree, cpu_ticks, sleepers};

const CGROUPS: usize = 200;
const TARGET_PERCENT: f64 = 2.0;
const WARM_UP: Duration = Duration::from_secs(5);

/// The counter files the agent's collector reads (usage only: CPU time
/// and throttling, memory in use, block I/O); the ones a cgroup has on
/// this host are the ones read.
const FILES: [(&str, &str); 7] = [
    ("cpu", "cpu.stat"),
    ("cpuacct", "cpuacct.usage"),
    ("memory", "memory.current"),
    ("memory", "memory.usage_in_bytes"),
    ("io", "io.stat"),
    ("blkio", "blkio.throttle.io_service_bytes"),
    ("blkio", "blkio.throttle.io_serviced"),
];

/// The agent child: killed (by its handle) if the bench fails before it
/// ends by itself.
struct AgentProc(Child);

impl Drop for AgentProc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn measure_secs() -> u64 {
    if let Some(s) = std::env::var("PRESCIENT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
    {
        return s;
    }
    if std::env::args().any(|a| a == "--quick") {
        60
    } else {
        300
    }
}

/// The files of the 200 cgroups the collector reads on this host.
fn files(tree: &Tree, cgroups: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for cg in cgroups {
        let mut seen = std::collections::HashSet::new();
        for (controller, file) in FILES {
            let dir = if controller == "io" {
                tree.fs
                    .v2()
                    .map(|h| h.dir(&prescient_linux::CgroupPath::parse(cg).unwrap()))
            } else {
                tree.dir(controller, cg)
            };
            if let Some(p) = dir.map(|d| d.join(file))
                && p.is_file()
                && seen.insert(p.clone())
            {
                out.push(p);
            }
        }
    }
    out
}

/// A reference thread: reads `files` once a second until `stop`, then
/// returns its CPU ticks over the window it was told to measure.
fn reference(
    files: Vec<PathBuf>,
    keep_open: bool,
    start: Instant,
    window: (Duration, Duration),
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(u64, f64, u64)> {
    thread::spawn(move || {
        let open: Vec<fs::File> = if keep_open {
            files
                .iter()
                .filter_map(|p| fs::File::open(p).ok())
                .collect()
        } else {
            Vec::new()
        };
        let mut buf = vec![0u8; 16 << 10];
        let mut reads = 0u64;
        let mut t0 = None;
        let mut next = start;
        loop {
            let now = start.elapsed();
            if t0.is_none() && now >= window.0 {
                t0 = Some((cpu_ticks("/proc/thread-self/stat").unwrap_or(0), now, reads));
            }
            if now >= window.1 || stop.load(Ordering::Relaxed) {
                let (c0, w0, r0) = t0.unwrap_or((0, Duration::ZERO, 0));
                let c1 = cpu_ticks("/proc/thread-self/stat").unwrap_or(0);
                return (c1 - c0, (now - w0).as_secs_f64(), reads - r0);
            }
            if keep_open {
                for f in &open {
                    let _ = f.read_at(&mut buf, 0);
                    reads += 1;
                }
            } else {
                for p in &files {
                    if let Ok(f) = fs::File::open(p) {
                        let _ = f.read_at(&mut buf, 0);
                        reads += 1;
                    }
                }
            }
            next += Duration::from_secs(1);
            let left = next.saturating_duration_since(Instant::now());
            thread::sleep(left.min(window.1.saturating_sub(start.elapsed())));
        }
    })
}

fn main() {
    if let Some(why) = tree::unavailable() {
        println!("agent_overhead: SKIPPED: {why}");
        return;
    }
    let secs = measure_secs();
    if let Err(e) = run(secs) {
        eprintln!("agent_overhead: FAILED: {e}");
        std::process::exit(1);
    }
}

fn run(secs: u64) -> Result<(), String> {
    let hz = rustix::param::clock_ticks_per_second().max(1) as f64;
    let cgroups: Vec<String> = (0..CGROUPS).map(|i| format!("/w{i:03}")).collect();
    let tree = sleepers("overhead", &cgroups)?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config = tmp.path().join("agent.toml");
    let text = format!(
        r#"[agent]
mode = "enforce"
host = "bench"
sample_interval = "1s"
forecast_step = "10s"
plan_interval = "10s"
plan_steps = 3
[store]
path = "{}"
flush_interval = "10s"
checkpoint_interval = "60s"
[cgroup]
subtree = "/{}"
relative_to = "self"
restore_on_exit = true
[[pool]]
name = "host"
[[workload]]
name = "w"
cgroup = "/w*"
"#,
        tmp.path().join("agent.db").display(),
        tree.name
    );
    fs::write(&config, text).map_err(|e| e.to_string())?;
    let log = fs::File::create(tmp.path().join("agent.log")).map_err(|e| e.to_string())?;
    let total = WARM_UP.as_secs() + secs + 3;
    let start = Instant::now();
    let agent = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["agent", "--mode", "enforce", "--json", "--config"])
        .arg(&config)
        .args(["--duration", &total.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting the agent: {e}"))?;
    let mut agent = AgentProc(agent);
    let pid = agent.0.id();
    let stat = format!("/proc/{pid}/stat");
    println!(
        "agent_overhead: `prescient agent --mode enforce` (pid {pid}) managing {CGROUPS} cgroups under {}, sampling every 1 s, planning every 10 s; measuring {secs} s after a {} s warm-up",
        tree.name,
        WARM_UP.as_secs()
    );

    let files = files(&tree, &cgroups);
    let window = (WARM_UP, WARM_UP + Duration::from_secs(secs));
    let stop = Arc::new(AtomicBool::new(false));
    let orc = reference(files.clone(), false, start, window, Arc::clone(&stop));
    let pread = reference(files.clone(), true, start, window, Arc::clone(&stop));

    thread::sleep(WARM_UP.saturating_sub(start.elapsed()));
    let c0 = cpu_ticks(&stat).ok_or("the agent exited during the warm-up")?;
    let w0 = Instant::now();
    thread::sleep(window.1.saturating_sub(start.elapsed()));
    let c1 = cpu_ticks(&stat).ok_or("the agent exited before the window ended")?;
    let wall = w0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (orc_ticks, orc_wall, orc_reads) = orc.join().map_err(|_| "reference panicked")?;
    let (pr_ticks, pr_wall, pr_reads) = pread.join().map_err(|_| "reference panicked")?;

    let out = agent
        .0
        .wait_with_output_ref()
        .map_err(|e| format!("waiting for the agent: {e}"))?;
    let summary: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
        let log = fs::read_to_string(tmp.path().join("agent.log")).unwrap_or_default();
        format!("the agent's summary: {e}; stdout {out:?}; log:\n{log}")
    })?;

    let pct = |ticks: u64, wall: f64| ticks as f64 / hz / wall.max(1e-9) * 100.0;
    let agent_pct = pct(c1 - c0, wall);
    let counters = &summary["counters"];
    println!(
        "  agent run: {} workloads, {} sample passes, {} plans, {} limit writes, {} enforce failures",
        summary["workloads"].as_array().map_or(0, |w| w.len()),
        counters["sample_passes"],
        counters["plans"],
        counters["writes"],
        counters["enforce_failures"]
    );
    if let Some(stages) = summary["times"]["stages"].as_object() {
        let mut line = String::from("  agent stage means (ms):");
        for (name, s) in stages {
            let count = s["count"].as_f64().unwrap_or(0.0);
            let sum = s["sum_seconds"].as_f64().unwrap_or(0.0);
            line += &format!(" {name} {:.2} (x{count})", sum / count.max(1.0) * 1000.0);
        }
        println!("{line}");
    }
    println!(
        "  reference_open_read_close: {:.3}% of one core ({orc_reads} reads of {} files over {orc_wall:.0} s)",
        pct(orc_ticks, orc_wall),
        files.len()
    );
    println!(
        "  reference_pread:           {:.3}% of one core ({pr_reads} reads of {} files over {pr_wall:.0} s)",
        pct(pr_ticks, pr_wall),
        files.len()
    );
    println!(
        "  agent:                     {agent_pct:.3}% of one core ({} ticks at {hz} Hz over {wall:.0} s)",
        c1 - c0
    );
    println!(
        "agent_overhead: agent CPU {agent_pct:.3}% of one core, target < {TARGET_PERCENT}%: {}",
        if agent_pct < TARGET_PERCENT {
            "MET"
        } else {
            "NOT MET"
        }
    );
    drop(agent);
    drop(tree);
    Ok(())
}

trait WaitOutput {
    fn wait_with_output_ref(&mut self) -> std::io::Result<String>;
}

impl WaitOutput for Child {
    /// Reads all of stdout, then waits (the child keeps its handle, so the
    /// guard can still end it on a failure).
    fn wait_with_output_ref(&mut self) -> std::io::Result<String> {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut o) = self.stdout.take() {
            o.read_to_string(&mut s)?;
        }
        self.wait()?;
        Ok(s)
    }
}
