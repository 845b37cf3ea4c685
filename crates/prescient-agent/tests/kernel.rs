//! The real agent on the real kernel, for a few seconds, in recommend and
//! in enforce mode, against a cgroup subtree each test creates under the
//! test process's own cgroup (read from /proc/self/cgroup), with `sleep`
//! and busy-loop children it starts and moves itself. Only those children
//! are ever killed (through their `Child` handles); the subtree is removed
//! when the test ends, on a panic too (an RAII guard).
//!
//! They need root and a cgroup filesystem. Without them they print why and
//! skip, unless PRESCIENT_REQUIRE_KERNEL_TESTS=1 (as CI sets), when they
//! fail instead.
//!
//! The subtree guard, the skip and the CPU lock (so that busy loops here
//! and prescient-linux's latency measurement never overlap) are
//! `prescient_linux::testing`'s.

use std::path::Path;
use std::time::Duration;

use prescient_agent::config::{Config, Mode, RelativeTo};
use prescient_agent::{ConfigSource, RunOptions, Signals};
use prescient_core::{HostId, Resource, SeriesKey};
use prescient_linux::enforce::Device;
use prescient_linux::testing::{TestTree, root_disk, skip_or_fail};
use prescient_store::{Resolution, Store};

/// The CPU weight knob of `cg` as the enforcer writes it: v2 `cpu.weight`
/// or v1 `cpu.shares`.
fn cpu_weight(tree: &TestTree, cg: &str) -> String {
    tree.read("cpu", cg, "cpu.weight")
        .or_else(|| tree.read("cpu", cg, "cpu.shares"))
        .unwrap_or_else(|| panic!("no cpu.weight or cpu.shares for {cg}"))
}

/// A config for the tree: `busy` and `idle` by cgroup glob, fast intervals.
fn config(tree: &TestTree, store: &Path, mode: Mode, restore: bool) -> Config {
    let text = format!(
        r#"
[agent]
mode = "{mode}"
host = "kernel-test"
sample_interval = "100ms"
forecast_step = "500ms"
plan_interval = "1s"
plan_steps = 2
[store]
path = "{}"
flush_interval = "1s"
checkpoint_interval = "1s"
[cgroup]
subtree = "/{}"
relative_to = "self"
restore_on_exit = {restore}
[[pool]]
name = "pool"
cpu = 2
memory = "2GiB"
[[workload]]
name = "busy"
cgroup = "/busy"
[[workload]]
name = "idle"
cgroup = "/idle"
"#,
        store.display(),
        tree.name
    );
    let c = Config::from_toml(&text, Path::new("kernel-test.toml")).unwrap();
    assert_eq!(c.cgroup.relative_to, RelativeTo::SelfCgroup);
    c
}

fn run(c: Config, secs: f64) -> prescient_agent::RunSummary {
    prescient_agent::run(
        &ConfigSource::Fixed(c),
        &RunOptions {
            duration: Some(Duration::from_secs_f64(secs)),
            control: None,
        },
        &Signals::new(),
    )
    .unwrap()
}

/// The tree of `test` with `busy` and `idle`; `None` (after a skip) where
/// kernel tests cannot run or no hierarchy gives the tree a cpu
/// controller to write (a pure v2 host that does not delegate it).
fn setup(test: &str) -> Option<TestTree> {
    let mut tree = TestTree::for_test(test)?;
    if !tree.can_enforce(test, &["cpu"]) {
        return None;
    }
    let busy = tree.spawn_busy().unwrap();
    let idle = tree.spawn_sleep().unwrap();
    tree.move_into("/busy", busy).unwrap();
    tree.move_into("/idle", idle).unwrap();
    Some(tree)
}

#[test]
fn recommend_mode_on_the_real_kernel_records_and_changes_nothing() {
    let test = "agent_recommend";
    let Some(tree) = setup(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let before = (cpu_weight(&tree, "/busy"), cpu_weight(&tree, "/idle"));
    let s = run(config(&tree, &db, Mode::Recommend, true), 3.0);
    assert_eq!(s.mode, Mode::Recommend);
    assert_eq!(s.workloads, ["busy", "idle"]);
    assert!(s.counters.sample_passes >= 15, "{:?}", s.counters);
    assert!(s.counters.plans >= 1, "{:?}", s.counters);
    assert_eq!(s.counters.writes, 0);
    assert_eq!(
        (cpu_weight(&tree, "/busy"), cpu_weight(&tree, "/idle")),
        before,
        "recommend mode writes nothing"
    );
    // The store has the busy loop's CPU (about one core) and the plans.
    let mut store = Store::open(&db).unwrap();
    let id = store
        .series_id(&SeriesKey {
            host: HostId("kernel-test".into()),
            workload: prescient_core::WorkloadId("busy".into()),
            resource: Resource::Cpu,
        })
        .unwrap();
    let cpu = store.range(id, 0, i64::MAX, Resolution::Raw).unwrap();
    assert!(cpu.len() >= 10, "{} samples", cpu.len());
    let mean = cpu.iter().map(|s| s.value).sum::<f64>() / cpu.len() as f64;
    assert!(mean > 0.3, "busy used {mean} cores");
    // The raw counters are stored too, and give the same rates again.
    let again = store.rates_from_counters(id, 0, i64::MAX).unwrap();
    assert_eq!(again.len(), cpu.len());
    for (a, b) in again.iter().zip(&cpu) {
        assert_eq!(a.ts, b.ts);
        assert!((a.value - b.value).abs() < 1e-9, "{a:?} {b:?}");
    }
    let plan = store
        .latest_plan(&HostId("pool".into()))
        .unwrap()
        .unwrap()
        .1;
    assert!(plan.entries.iter().any(|e| e.workload.0 == "busy"));
    for stage in ["sample", "forecast", "solve", "flush"] {
        assert!(s.times.get(stage).is_some(), "{stage} timed");
    }
    let st = prescient_agent::status::read(&mut store, 10, None).unwrap();
    assert_eq!(st.workloads.len(), 2);
    assert!(
        st.audit.iter().all(|a| a.action != "cgroup.write"),
        "{:?}",
        st.audit
    );
}

#[test]
fn enforce_mode_on_the_real_kernel_writes_the_plan_and_restores_it() {
    let test = "agent_enforce";
    let Some(tree) = setup(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let before = (cpu_weight(&tree, "/busy"), cpu_weight(&tree, "/idle"));

    // Without restore: the plan stays on the cgroups after the run.
    let s = run(config(&tree, &db, Mode::Enforce, false), 3.0);
    assert_eq!(s.mode, Mode::Enforce);
    assert!(s.counters.writes >= 2, "{:?}", s.counters);
    let busy: u64 = cpu_weight(&tree, "/busy").parse().unwrap();
    let idle: u64 = cpu_weight(&tree, "/idle").parse().unwrap();
    assert!(busy > idle, "busy {busy} idle {idle}");
    assert_ne!((busy.to_string(), idle.to_string()), before);
    let store = Store::open(&db).unwrap();
    let audit = store.audit_since(0, 1000).unwrap();
    assert!(
        audit
            .iter()
            .any(|(_, a)| a.action == "cgroup.write" && a.target.contains("busy")),
        "{audit:?}"
    );
    drop(store);

    // With restore: the run ends with the limits it found (the previous
    // run's), and a restart resumed the forecasters from the store.
    let s = run(config(&tree, &db, Mode::Enforce, true), 2.0);
    assert!(s.counters.resumed_forecasters >= 2, "{:?}", s.counters);
    assert!(s.counters.resumed_plans >= 1);
    assert_eq!(cpu_weight(&tree, "/busy"), busy.to_string(), "restored");
    assert_eq!(cpu_weight(&tree, "/idle"), idle.to_string(), "restored");
}

/// The read-ops cap of `dev` on `cg` as the enforcer wrote it: v1
/// `blkio.throttle.read_iops_device` ("254:0 250"; no line, or 0: none) or
/// v2 `io.max` ("254:0 rbps=max wbps=max riops=250 wiops=max").
fn riops(tree: &TestTree, cg: &str, dev: Device) -> Option<u64> {
    let key = format!("{dev} ");
    if let Some(t) = tree.read("blkio", cg, "blkio.throttle.read_iops_device") {
        return t
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .filter(|v| *v > 0);
    }
    tree.read("io", cg, "io.max")?
        .lines()
        .find_map(|l| l.strip_prefix(&key))?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("riops="))?
        .parse()
        .ok()
}

#[test]
fn enforce_mode_on_the_real_kernel_caps_read_ops_on_a_real_device() {
    let test = "agent_io";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    // The cpu controller too: the enforcer is v1 where cpu is (a hybrid
    // host like this one, whose v2 hierarchy has no io controller).
    if !tree.can_enforce(test, &["cpu"]) {
        return;
    }
    let v1 = tree.fs.v1().iter().any(|h| h.has("cpu"));
    if !(if v1 {
        tree.has_v1(test, &["blkio"])
    } else {
        tree.has_v2(test, &["io"])
    }) {
        return;
    }
    let Some(dev) = root_disk() else {
        skip_or_fail(test, "cannot tell the disk that holds /");
        return;
    };
    // Two sleeping workloads: their cgroups' I/O counters give 0 ops/s,
    // samples all the same, so both are planned.
    for cg in ["/busy", "/idle"] {
        let pid = tree.spawn_sleep().unwrap();
        tree.move_into(cg, pid).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let io_config = |restore: bool| {
        let mut c = config(&tree, &db, Mode::Enforce, restore);
        c.pools[0].io_read_ops = Some(1000.0);
        c.enforce.io_devices = vec![dev.to_string()];
        c.workloads[0].io_read_ops.guarantee = 200.0;
        c
    };
    assert_eq!(riops(&tree, "/busy", dev), None, "no cap to start with");

    // Without restore: the caps stay after the run.
    let s = run(io_config(false), 3.0);
    assert_eq!(s.mode, Mode::Enforce);
    let planned = |w: &str| {
        s.plans
            .iter()
            .flat_map(|p| &p.entries)
            .find(|e| e.workload.0 == w && e.resource == Resource::IoReadOps)
            .unwrap_or_else(|| panic!("no io_read_ops for {w} in {:?}", s.plans))
            .allocation
    };
    let (busy, idle) = (planned("busy"), planned("idle"));
    assert!(busy >= 200.0, "the guarantee: {busy}");
    assert!(busy + idle <= 1000.0 + 1e-6, "{busy} + {idle}");
    assert_eq!(riops(&tree, "/busy", dev), Some(busy as u64));
    // (A cap is at least 1 op/s: 0 would be none.)
    assert_eq!(riops(&tree, "/idle", dev), Some((idle as u64).max(1)));
    let store = Store::open(&db).unwrap();
    let audit = store.audit_since(0, 1000).unwrap();
    assert!(
        audit.iter().any(|(_, a)| a.target.contains("busy")
            && a.after.as_deref().unwrap_or("").contains("riops=")),
        "{audit:?}"
    );
    drop(store);

    // With restore: the run resumes the plan, and ends with the limits it
    // found (the previous run's caps).
    let s = run(io_config(true), 2.0);
    assert!(s.counters.resumed_plans >= 1, "{:?}", s.counters);
    assert_eq!(riops(&tree, "/busy", dev), Some(busy as u64), "restored");
}

/// Runs `cmd` to success, or panics with its output.
fn must(cmd: &mut std::process::Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (iproute2 and util-linux are needed)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads one line of a child's stdout.
fn line_of(tree: &mut TestTree, pid: i32) -> String {
    use std::io::BufRead;
    let out = tree.child(pid).unwrap().stdout.as_mut().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    line.trim().to_string()
}

/// Observes `cgroups` every 100 ms after a first pass at `since` until
/// `done` holds for the sums of each workload's rates x time since (net
/// received, net sent, CPU), or a minute passes (the machine is shared).
fn observe_until(
    o: &mut prescient_agent::LinuxObserver,
    cgroups: &[prescient_linux::CgroupPath],
    since: i64,
    done: impl Fn(&std::collections::BTreeMap<String, [f64; 3]>) -> bool,
) -> std::collections::BTreeMap<String, [f64; 3]> {
    use prescient_agent::Observer;
    let start = std::time::Instant::now();
    let mut sums = std::collections::BTreeMap::new();
    let mut last = since;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = prescient_agent::ports::wall_ms();
        for (cg, u) in o.observe(cgroups, now) {
            let s: &mut [f64; 3] = sums.entry(cg.to_string()).or_default();
            let dt = (now - last) as f64 / 1000.0;
            s[0] += u.net_rx.unwrap_or(0.0) * dt;
            s[1] += u.net_tx.unwrap_or(0.0) * dt;
            s[2] += u.cpu_cores.unwrap_or(0.0) * dt;
        }
        last = now;
        if done(&sums) {
            return sums;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not seen within a minute: {sums:?}"
        );
    }
}

fn workloads(text: &str) -> Vec<prescient_agent::config::WorkloadConfig> {
    Config::from_toml(text, Path::new("observer.toml"))
        .unwrap()
        .workloads
}

#[test]
fn the_observer_counts_the_bytes_of_a_workloads_own_network_namespace() {
    use prescient_agent::{LinuxObserver, Observer};
    use prescient_linux::{ProcFs, Root};
    use std::process::{Command, Stdio};
    let test = "agent_net";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    // Two network namespaces, each held by a process of this test
    // (`unshare -n` executes its command in place: the pid is the
    // process's), joined by a veth pair created directly inside them:
    // nothing is added to the host's namespace, and everything goes when
    // the processes end.
    let sink = tree
        .spawn(
            Command::new("unshare")
                .args(["-n", "sh", "-c", "echo ready; exec sleep 3600"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        )
        .unwrap();
    // The workload sends 100 datagrams of 1,000 bytes to the sink when
    // told to.
    let sender = tree
        .spawn(
            Command::new("unshare")
                .args([
                    "-n",
                    "bash",
                    "-c",
                    "echo ready; read go; for i in $(seq 1 100); do printf '%01000d' 0 > /dev/udp/10.77.0.2/9; done; echo sent; exec sleep 3600",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped()),
        )
        .unwrap();
    assert_eq!(line_of(&mut tree, sink), "ready");
    assert_eq!(line_of(&mut tree, sender), "ready");
    let (s, w) = (sink.to_string(), sender.to_string());
    must(Command::new("ip").args([
        "link", "add", "veth0", "netns", &w, "type", "veth", "peer", "name", "veth0", "netns", &s,
    ]));
    for (pid, addr) in [(&w, "10.77.0.1/24"), (&s, "10.77.0.2/24")] {
        must(
            Command::new("nsenter")
                .args(["-t", pid, "-n", "ip", "addr", "add", addr, "dev", "veth0"]),
        );
        must(Command::new("nsenter").args(["-t", pid, "-n", "ip", "link", "set", "veth0", "up"]));
    }
    tree.move_into("/net", sender).unwrap();
    let host = tree.spawn_sleep().unwrap();
    tree.move_into("/host", host).unwrap();

    let mut o = LinuxObserver::new(tree.fs.clone(), ProcFs::new(Root::live()));
    let found = o
        .discover(
            &workloads(
                "[[workload]]\nname = \"net\"\ncgroup = \"/net\"\n\
                 [[workload]]\nname = \"host\"\ncgroup = \"/host\"\n",
            ),
            false,
        )
        .unwrap();
    let cgroups: Vec<_> = found.iter().map(|f| f.cgroup.clone()).collect();
    assert_eq!(cgroups.len(), 2, "{found:?}");
    let since = prescient_agent::ports::wall_ms();
    o.observe(&cgroups, since);
    {
        use std::io::Write;
        let stdin = tree.child(sender).unwrap().stdin.as_mut().unwrap();
        writeln!(stdin, "go").unwrap();
    }
    assert_eq!(line_of(&mut tree, sender), "sent");
    // Each datagram is 1,000 bytes + 8 (UDP) + 20 (IPv4) + 14 (Ethernet).
    let want = 100.0 * 1042.0;
    let sums = observe_until(&mut o, &cgroups, since, |s| {
        s.get("/net").is_some_and(|n| n[1] >= want - 0.5)
    });
    let net = sums["/net"];
    // Only what the namespace's links carried (some IPv6 and ARP chatter
    // besides the datagrams); the sink's answers (ARP, ICMP) came back.
    assert!(net[1] < want + 20_000.0, "{net:?}");
    assert!(net[0] > 0.0, "{net:?}");
    // The `sleep` in the host's namespace: its bytes are not told.
    let h = o.observe(&cgroups, prescient_agent::ports::wall_ms() + 1000);
    let h = h.iter().find(|(c, _)| c.to_string() == "/host").unwrap();
    assert_eq!((h.1.net_rx, h.1.net_tx), (None, None));
}

#[test]
fn recommend_mode_observes_a_process_workload_from_proc_without_moving_it() {
    use prescient_agent::{LinuxObserver, Observer};
    use prescient_linux::{ProcFs, Root};
    use std::process::{Command, Stdio};
    let test = "agent_proc_workload";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    tree.hog_cpu().unwrap();
    let token = format!("prescient-busy-{}", std::process::id());
    let busy = tree
        .spawn(
            Command::new("sh")
                .args(["-c", "while :; do :; done", &token])
                .stdin(Stdio::null()),
        )
        .unwrap();
    let cgroups_before = std::fs::read_to_string(format!("/proc/{busy}/cgroup")).unwrap();
    let mut o = LinuxObserver::new(tree.fs.clone(), ProcFs::new(Root::live()));
    let found = o
        .discover(
            &workloads(&format!(
                "[[workload]]\nname = \"busy\"\ncommand_regex = \"{token}\"\n"
            )),
            false,
        )
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let cg = vec![found[0].cgroup.clone()];
    // A busy loop: about a core; seen as soon as a few tenths of a
    // core-second add up.
    let since = prescient_agent::ports::wall_ms();
    o.observe(&cg, since);
    let sums = observe_until(&mut o, &cg, since, |s| {
        s.get("/busy").is_some_and(|b| b[2] > 0.3)
    });
    assert!(sums["/busy"][2] > 0.3);
    let u = o.observe(&cg, prescient_agent::ports::wall_ms() + 1000);
    assert!(u[0].1.memory_bytes.is_some_and(|m| m > 0.0), "{u:?}");
    // Left where it was: no group made, not moved.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{busy}/cgroup")).unwrap(),
        cgroups_before
    );
    assert!(tree.dirs().iter().all(|d| !d.join("busy").exists()));
}
