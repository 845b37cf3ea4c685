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
use prescient_linux::testing::TestTree;
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

fn setup(test: &str) -> Option<TestTree> {
    let mut tree = TestTree::for_test(test)?;
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
    let plan = store
        .latest_plan(&HostId("pool".into()))
        .unwrap()
        .unwrap()
        .1;
    assert!(plan.entries.iter().any(|e| e.workload.0 == "busy"));
    for stage in ["sample", "forecast", "solve", "flush"] {
        assert!(s.times.get(stage).is_some(), "{stage} timed");
    }
    let st = prescient_agent::status::read(&mut store, 10).unwrap();
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
