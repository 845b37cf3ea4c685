//! `prescient config`, `prescient agent` (its API included) and
//! `prescient status` end to end.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn prescient(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(args)
        .env_remove("PRESCIENT_CONFIG")
        .env_remove("PRESCIENT_STORE")
        .env_remove("PRESCIENT_MODE")
        .output()
        .expect("the binary runs")
}

fn committed_example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/prescient.example.toml")
}

#[test]
fn the_committed_example_is_what_config_example_prints() {
    let out = prescient(&["config", "example"]);
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let committed = fs::read_to_string(committed_example()).unwrap();
    assert!(
        printed == committed,
        "config/prescient.example.toml drifted from `prescient config example`: \
         regenerate it with `prescient config example > config/prescient.example.toml`"
    );
    let out = prescient(&["config", "check", committed_example().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
}

#[test]
fn config_check_names_the_bad_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    fs::write(
        &f,
        "[agent]\nsample_interval = \"0s\"\n[[pool]]\nname = \"h\"\ncpu = 1\n\
         [[workload]]\nname = \"web\"\ncgroup = \"/web\"\nslo_quantile = 1.5\ncpu.guarantee = 2\n",
    )
    .unwrap();
    let out = prescient(&["config", "check", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("agent.sample_interval = \"0ms\": must be positive"),
        "{err}"
    );
    assert!(
        err.contains("workload[0].slo_quantile = 1.5: must be in (0, 1)"),
        "{err}"
    );
    assert!(err.contains("pool[0].cpu = 1: the CPU guarantees"), "{err}");
    assert!(err.contains("3 problem(s)"), "{err}");
    assert!(!err.contains("panicked"));

    fs::write(
        &f,
        "[agent]\nmode = \"recommend\"\n\n[store]\npaht = \"/x\"\n",
    )
    .unwrap();
    let out = prescient(&["config", "check", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml:5:1"), "{err}");
    assert!(err.contains("store"), "{err}");
    assert!(err.contains("unknown field `paht`"), "{err}");

    let out = prescient(&["config", "check", "/nonexistent/prescient.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/prescient.toml"));
}

#[test]
fn config_check_names_bad_io_devices_and_warns_of_caps_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("io.toml");
    fs::write(
        &f,
        "[agent]\nmode = \"enforce\"\n[enforce]\nio_devices = [\"sda\"]\n\
         [[pool]]\nname = \"h\"\nio_read_ops = 0\n",
    )
    .unwrap();
    let out = prescient(&["config", "check", f.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("enforce.io_devices[0] = \"sda\": must be a block device as \"MAJOR:MINOR\""),
        "{err}"
    );
    assert!(
        err.contains("pool[0].io_read_ops = 0: must be at least 1"),
        "{err}"
    );
    assert!(err.contains("2 problem(s)"), "{err}");

    // Valid, with warnings: a device no host has, and (in a second file)
    // an I/O capacity in enforce mode with no device to cap.
    fs::write(
        &f,
        "[agent]\nmode = \"enforce\"\n[enforce]\nio_devices = [\"4095:1048575\"]\n\
         [[pool]]\nname = \"h\"\nio_read = \"200MiB\"\n",
    )
    .unwrap();
    let out = prescient(&["config", "check", f.to_str().unwrap()]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: enforce.io_devices[0] = \"4095:1048575\": is not a block device of this host"
        ),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    fs::write(
        &f,
        "[agent]\nmode = \"enforce\"\n[[pool]]\nname = \"h\"\nio_read = \"200MiB\"\n",
    )
    .unwrap();
    let out = prescient(&["config", "check", f.to_str().unwrap()]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: pool[0].io_read = \"200MiB\": enforce mode without enforce.io_devices"
        ),
        "{err}"
    );
}

/// Waits (up to a minute: the machine is shared) for `what` in the file.
fn wait_for(file: &Path, what: &str, child: &mut Child) -> String {
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(file).unwrap_or_default();
        if text.contains(what) {
            return text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent exited ({status}) before {what:?}:\n{text}");
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no {what:?} in the agent's log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("sh")
        .args(["-c", &format!("kill -{sig} {}", child.id())])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Kills the agent if the test fails before it stops it.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_agent_reloads_on_sighup_stops_on_sigterm_and_status_reads_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let cfg = dir.path().join("agent.toml");
    let log = dir.path().join("agent.log");
    // The test process's own cgroup, read only (recommend mode).
    let good = format!(
        "[agent]\nmode = \"recommend\"\nhost = \"cli-test\"\nsample_interval = \"100ms\"\n\
         forecast_step = \"200ms\"\nplan_interval = \"300ms\"\n\
         [store]\npath = \"{}\"\nflush_interval = \"200ms\"\n\
         [cgroup]\nrelative_to = \"self\"\n\
         [[pool]]\nname = \"pool\"\ncpu = 1\nmemory = \"64GiB\"\n\
         [[workload]]\nname = \"me\"\ncgroup = \"/\"\n",
        db.display()
    );
    fs::write(&cfg, &good).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["agent", "--config", cfg.to_str().unwrap()])
        .env_remove("PRESCIENT_MODE")
        .env_remove("PRESCIENT_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut g = Guard(Some(child));
    let c = g.0.as_mut().unwrap();
    wait_for(&log, "agent starting", c);
    wait_for(&log, "workload / at /", c);
    wait_for(&log, "first plan of pool pool", c);

    // An invalid file is refused on SIGHUP; the agent goes on.
    fs::write(
        &cfg,
        good.replace("sample_interval = \"100ms\"", "sample_interval = \"1ms\""),
    )
    .unwrap();
    signal(c, "HUP");
    let text = wait_for(&log, "reload refused", c);
    assert!(text.contains("agent.sample_interval = \"1ms\""), "{text}");
    // A valid one is applied.
    fs::write(&cfg, &good).unwrap();
    signal(c, "HUP");
    wait_for(&log, "configuration reloaded", c);

    // SIGTERM: a graceful stop, with the summary.
    signal(c, "TERM");
    let child = g.0.take().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("stop requested"), "{text}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("recommend mode on cli-test: 1 workloads"),
        "{stdout}"
    );
    assert!(stdout.contains("sample "), "{stdout}");

    let out = prescient(&["status", "--store", db.to_str().unwrap()]);
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("workloads"), "{s}");
    assert!(s.contains("cli-test"), "{s}");
    assert!(s.contains("plan of pool pool"), "{s}");

    let out = prescient(&["status", "--store", "/nonexistent/agent.db"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store there"));
}

#[test]
fn after_sigkill_a_restart_resumes_forecasters_and_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let cfg = dir.path().join("agent.toml");
    let log = dir.path().join("agent.log");
    fs::write(
        &cfg,
        format!(
            "[agent]\nhost = \"cli-kill\"\nsample_interval = \"100ms\"\n\
             forecast_step = \"200ms\"\nplan_interval = \"300ms\"\n\
             [store]\npath = \"{}\"\nflush_interval = \"200ms\"\ncheckpoint_interval = \"200ms\"\n\
             [cgroup]\nrelative_to = \"self\"\n\
             [[pool]]\nname = \"pool\"\ncpu = 1\nmemory = \"64GiB\"\n\
             [[workload]]\nname = \"me\"\ncgroup = \"/\"\n",
            db.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["agent", "--config", cfg.to_str().unwrap()])
        .env_remove("PRESCIENT_MODE")
        .env_remove("PRESCIENT_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut g = Guard(Some(child));
    let c = g.0.as_mut().unwrap();
    wait_for(&log, "first plan of pool pool", c);
    // Until a checkpoint of the CPU forecaster and a plan are in the store.
    let start = Instant::now();
    loop {
        let saved = prescient_store::Store::open(&db).ok().is_some_and(|s| {
            s.load_model_state("forecast/cli-kill///cpu")
                .is_ok_and(|x| x.is_some())
                && s.latest_plan(&prescient_core::HostId("pool".into()))
                    .is_ok_and(|x| x.is_some())
        });
        if saved {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(c, "KILL");
    let _ = c.wait();
    g.0 = None;

    let out = prescient(&[
        "agent",
        "--config",
        cfg.to_str().unwrap(),
        "--duration",
        "0.5",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counters = &v["counters"];
    assert!(counters["resumed_plans"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        counters["resumed_forecasters"].as_u64().unwrap() >= 1,
        "{v}"
    );
}

/// `GET url` as JSON (the API without tokens is open for reads).
fn get_json(url: &str) -> serde_json::Value {
    let mut r = ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    r.body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

#[test]
fn the_agent_replaying_a_trace_serves_its_api_where_its_log_says() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("replay.db");
    let cfg = dir.path().join("agent.toml");
    let log = dir.path().join("agent.log");
    // Port 0: the kernel picks a free one, which the log line names.
    fs::write(
        &cfg,
        format!(
            "[store]\npath = \"{}\"\n[api]\nlisten = \"127.0.0.1:0\"\n",
            db.display()
        ),
    )
    .unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/sample/gcd.csv.gz");
    // 600x: the trace's day lasts 144 s, well past this test.
    let child = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["agent", "--config", cfg.to_str().unwrap()])
        .args(["--replay", sample.to_str().unwrap()])
        .args(["--speed", "600", "--max-workloads", "5"])
        .env_remove("PRESCIENT_CONFIG")
        .env_remove("PRESCIENT_MODE")
        .env_remove("PRESCIENT_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut g = Guard(Some(child));
    let c = g.0.as_mut().unwrap();
    let text = wait_for(&log, "API listening on ", c);
    let url = text
        .lines()
        .find_map(|l| l.split("API listening on ").nth(1))
        .unwrap()
        .trim()
        .to_string();
    let addr: std::net::SocketAddr = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url}"))
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{url}");

    let health = get_json(&format!("{url}/api/v1/health"));
    assert_eq!(health["status"], "ok", "{health}");
    // Until the loop has planned its workloads.
    let start = Instant::now();
    let status = loop {
        let s = get_json(&format!("{url}/api/v1/status"));
        if s["counters"]["plans"].as_u64().unwrap_or(0) >= 2 && s["workloads"] == 5 {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no plans within 60 s: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["host"], "replay-gcd", "{status}");
    assert_eq!(status["mode"], "recommend", "{status}");
    let workloads = get_json(&format!("{url}/api/v1/workloads"));
    let ids: Vec<&str> = workloads
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "{workloads}");
    assert!(ids.iter().all(|i| i.starts_with("gcd000.")), "{ids:?}");
    let plans = get_json(&format!("{url}/api/v1/plans"));
    assert_eq!(plans[0]["pool"], "gcd000", "{plans}");
    let config = get_json(&format!("{url}/api/v1/config"));
    assert_eq!(config["api"]["listen"], "127.0.0.1:0");
    assert_eq!(config["store"]["path"], db.to_str().unwrap());
    let metrics = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(metrics.contains("prescient_plans_total"), "{metrics}");
    assert!(
        metrics.contains("prescient_solver_workloads 5"),
        "{metrics}"
    );
    assert!(metrics.contains("prescient_solver_curves 10"), "{metrics}");
    // Writes are refused without tokens.
    let refused = ureq::post(&format!("{url}/api/v1/replan"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_empty()
        .unwrap();
    assert_eq!(refused.status(), 403);

    signal(c, "TERM");
    let child = g.0.take().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("recommend mode on replay-gcd: 5 workloads"),
        "{stdout}"
    );
    // The server stopped with the agent.
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "{addr} still accepts connections"
    );
}

#[test]
fn the_default_api_listen_address_is_loopback() {
    let default = prescient_agent::Config::default().api.listen;
    let addr: std::net::SocketAddr = default.parse().unwrap();
    assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST, "{default}");
    // The commented defaults `prescient config example` prints say so too
    // (and the example is checked against the code above).
    let out = prescient(&["config", "example"]);
    assert!(out.status.success());
    let example: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(example["api"]["listen"].as_str(), Some(default.as_str()));
}

/// The CPU weight knob of `cg` as the enforcer writes it: v2 `cpu.weight`
/// or v1 `cpu.shares`.
fn cpu_weight(tree: &prescient_linux::testing::TestTree, cg: &str) -> String {
    tree.read("cpu", cg, "cpu.weight")
        .or_else(|| tree.read("cpu", cg, "cpu.shares"))
        .unwrap_or_else(|| panic!("no cpu.weight or cpu.shares for {cg}"))
}

/// Waits (up to a minute) until `cond` holds.
fn wait_until(what: &str, child: &mut Child, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the agent exited ({status}) before {what}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "no {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In enforce mode on real cgroups (a subtree of this test's own): a run
/// killed with SIGKILL leaves the limits it wrote; the next run puts the
/// originals back first (they were checkpointed), resumes its forecasters
/// and plan and enforces again; SIGINT stops it gracefully, restoring the
/// originals on the way out.
#[test]
fn after_sigkill_in_enforce_mode_a_restart_restores_resumes_and_sigint_restores_again() {
    use prescient_linux::testing::TestTree;
    let test = "cli_enforce_kill";
    let Some(mut tree) = TestTree::for_test(test) else {
        return;
    };
    if !tree.can_enforce(test, &["cpu"]) {
        return;
    }
    let busy = tree.spawn_busy().unwrap();
    let idle = tree.spawn_sleep().unwrap();
    tree.move_into("/busy", busy).unwrap();
    tree.move_into("/idle", idle).unwrap();
    let original = (cpu_weight(&tree, "/busy"), cpu_weight(&tree, "/idle"));

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let cfg = dir.path().join("agent.toml");
    fs::write(
        &cfg,
        format!(
            "[agent]\nmode = \"enforce\"\nhost = \"cli-enforce\"\nsample_interval = \"100ms\"\n\
             forecast_step = \"200ms\"\nplan_interval = \"300ms\"\n\
             [store]\npath = \"{}\"\nflush_interval = \"200ms\"\ncheckpoint_interval = \"200ms\"\n\
             [cgroup]\nsubtree = \"/{}\"\nrelative_to = \"self\"\nrestore_on_exit = true\n\
             [[pool]]\nname = \"pool\"\ncpu = 2\nmemory = \"2GiB\"\n\
             [[workload]]\nname = \"busy\"\ncgroup = \"/busy\"\n\
             [[workload]]\nname = \"idle\"\ncgroup = \"/idle\"\n",
            db.display(),
            tree.name
        ),
    )
    .unwrap();
    let start = |log: &Path| {
        Command::new(env!("CARGO_BIN_EXE_prescient"))
            .args(["agent", "--config", cfg.to_str().unwrap(), "--json"])
            .env_remove("PRESCIENT_MODE")
            .env_remove("PRESCIENT_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(log).unwrap())
            .spawn()
            .unwrap()
    };

    // The first run: until it has changed the limits, checkpointed the
    // originals and the CPU forecaster, and stored a plan; then SIGKILL.
    let log1 = dir.path().join("first.log");
    let mut g = Guard(Some(start(&log1)));
    let c = g.0.as_mut().unwrap();
    wait_for(&log1, "first plan of pool pool", c);
    wait_until("limits written and checkpointed", c, || {
        let changed = cpu_weight(&tree, "/busy") != original.0;
        changed
            && prescient_store::Store::open(&db).ok().is_some_and(|s| {
                let saved = |k: &str| {
                    s.load_model_state(k)
                        .is_ok_and(|x| x.is_some_and(|(_, b)| b.len() > 2))
                };
                saved("agent/originals/cli-enforce")
                    && saved("forecast/cli-enforce/busy/cpu")
                    && s.latest_plan(&prescient_core::HostId("pool".into()))
                        .is_ok_and(|x| x.is_some())
            })
    });
    signal(c, "KILL");
    let _ = c.wait();
    g.0 = None;
    // Killed: nothing put the limits back.
    let left = cpu_weight(&tree, "/busy");
    assert_ne!(left, original.0, "the killed run's limit stays");

    // The restart: the originals go back first (audited), the plan and
    // forecasters resume, and it enforces again.
    let log2 = dir.path().join("second.log");
    g.0 = Some(start(&log2));
    let c = g.0.as_mut().unwrap();
    let text = wait_for(&log2, "original limit(s) left by an unclean stop", c);
    assert!(text.contains("resumed 1 plan(s) from the store"), "{text}");
    wait_until("the plan enforced again", c, || {
        cpu_weight(&tree, "/busy") != original.0
    });
    // SIGINT: a graceful stop, like SIGTERM.
    signal(c, "INT");
    let child = g.0.take().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = fs::read_to_string(&log2).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("stop requested"), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counters = &v["counters"];
    assert!(counters["resumed_plans"].as_u64().unwrap() >= 1, "{v}");
    assert!(
        counters["resumed_forecasters"].as_u64().unwrap() >= 2,
        "{v}"
    );
    // At least the two CPU weights, at the restart and again at the stop.
    assert!(counters["restored"].as_u64().unwrap() >= 4, "{v}");
    assert_eq!(
        (cpu_weight(&tree, "/busy"), cpu_weight(&tree, "/idle")),
        original,
        "restored at the stop"
    );
    let store = prescient_store::Store::open(&db).unwrap();
    let audit = store.audit_since(0, 10_000).unwrap();
    assert!(
        audit
            .iter()
            .any(|(_, a)| a.reason.contains("unclean stop") && a.target.contains("busy")),
        "{audit:?}"
    );
}

#[test]
fn sigint_stops_the_agent_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agent.db");
    let cfg = dir.path().join("agent.toml");
    let log = dir.path().join("agent.log");
    fs::write(
        &cfg,
        format!(
            "[agent]\nmode = \"recommend\"\nhost = \"cli-int\"\nsample_interval = \"100ms\"\n\
             forecast_step = \"200ms\"\nplan_interval = \"300ms\"\n\
             [store]\npath = \"{}\"\nflush_interval = \"200ms\"\n\
             [cgroup]\nrelative_to = \"self\"\n\
             [[pool]]\nname = \"pool\"\ncpu = 1\nmemory = \"64GiB\"\n\
             [[workload]]\nname = \"me\"\ncgroup = \"/\"\n",
            db.display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_prescient"))
        .args(["agent", "--config", cfg.to_str().unwrap()])
        .env_remove("PRESCIENT_MODE")
        .env_remove("PRESCIENT_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut g = Guard(Some(child));
    let c = g.0.as_mut().unwrap();
    wait_for(&log, "first plan of pool pool", c);
    signal(c, "INT");
    let out = g.0.take().unwrap().wait_with_output().unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("stop requested"), "{text}");
    assert!(text.contains("agent stopped"), "{text}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("recommend mode on cli-int: 1 workloads"),
        "{stdout}"
    );
    // What was sampled up to the stop reached the store.
    let store = prescient_store::Store::open(&db).unwrap();
    assert!(
        store
            .latest_plan(&prescient_core::HostId("pool".into()))
            .unwrap()
            .is_some()
    );
}

/// The layers for real: `PRESCIENT_*` in the agent's environment over the
/// file, its flags over the environment, on the same keys (the store's
/// path: which file the run creates; the policy: what its plans say).
#[test]
fn the_environment_overrides_the_file_and_flags_override_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (file_db, env_db, flag_db) = (
        dir.path().join("file.db"),
        dir.path().join("env.db"),
        dir.path().join("flag.db"),
    );
    let cfg = dir.path().join("agent.toml");
    fs::write(
        &cfg,
        format!(
            "[agent]\nmode = \"recommend\"\nhost = \"cli-layers\"\npolicy = \"window-max\"\n\
             sample_interval = \"100ms\"\nforecast_step = \"200ms\"\nplan_interval = \"300ms\"\n\
             [store]\npath = \"{}\"\n\
             [cgroup]\nrelative_to = \"self\"\n\
             [[pool]]\nname = \"pool\"\ncpu = 1\nmemory = \"64GiB\"\n\
             [[workload]]\nname = \"me\"\ncgroup = \"/\"\n",
            file_db.display()
        ),
    )
    .unwrap();
    let run = |flags: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_prescient"))
            .args([
                "agent",
                "--config",
                cfg.to_str().unwrap(),
                "--duration",
                "1",
                "--json",
            ])
            .args(flags)
            .env_remove("PRESCIENT_MODE")
            .env("PRESCIENT_STORE", &env_db)
            .env("PRESCIENT_POLICY", "vpa")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let reasons = |v: &serde_json::Value| -> Vec<String> {
        v["plans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["entries"].as_array().unwrap().clone())
            .map(|e| e["reason"].as_str().unwrap().to_string())
            .collect()
    };
    let v = run(&[]);
    assert!(env_db.is_file(), "the environment's store");
    assert!(!file_db.exists(), "not the file's");
    let r = reasons(&v);
    assert!(
        !r.is_empty() && r.iter().all(|r| r.starts_with("vpa:")),
        "{r:?}"
    );

    let v = run(&["--store", flag_db.to_str().unwrap(), "--policy", "reactive"]);
    assert!(flag_db.is_file(), "the flag's store");
    assert!(!file_db.exists());
    let r = reasons(&v);
    assert!(
        !r.is_empty() && r.iter().all(|r| r.starts_with("reactive:")),
        "{r:?}"
    );
}
