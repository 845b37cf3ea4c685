//! The control loop on a fake clock, observer, store and enforcer: what
//! each mode does, stage timing, store failures, reloads, stops, and
//! resuming after a crash.

mod fakes;

use std::path::Path;

use prescient_agent::config::{Config, Mode};
use prescient_agent::{Agent, Signals, resolve};
use prescient_core::{Plan, Resource, WorkloadId};
use prescient_linux::CgroupPath;
use prescient_linux::enforce::{FakeEnforcer, Observed, Setting};

use fakes::*;

#[test]
fn recommend_mode_samples_forecasts_plans_and_records_without_writing() {
    let sink = FakeSink::default();
    let mut a = agent(Mode::Recommend, &sink);
    assert!(!a.enforcing());
    let s = a.run(&Signals::new(), Some(T0 + 60_000), &no_reload);
    assert_eq!(s.mode, Mode::Recommend);
    assert_eq!(s.workloads, ["busy", "idle"]);
    // Samples at T0, T0+1s, ..., T0+59s: 60 passes, 2 workloads x (cpu, memory).
    assert_eq!(s.counters.sample_passes, 60);
    let st = sink.0.borrow();
    assert_eq!(
        st.samples.len(),
        60 * 2 * 2,
        "every sample reached the store"
    );
    assert_eq!(s.stored_samples, 240);
    // Plans at 10 s, 20 s, ..., 50 s.
    assert_eq!(s.counters.plans, 5);
    assert_eq!(st.plans.len(), 5);
    assert!(st.profiles > 0, "profiles are recorded");
    assert!(st.audit.is_empty(), "recommend mode changes nothing");
    let plan = st.plans.last().unwrap();
    let alloc = |w: &str, r: Resource| {
        plan.entries
            .iter()
            .find(|e| e.workload.0 == w && e.resource == r)
            .map(|e| e.allocation)
            .unwrap()
    };
    assert!(alloc("busy", Resource::Cpu) >= 1.5, "{plan:?}");
    assert!(alloc("busy", Resource::Cpu) > alloc("idle", Resource::Cpu));
    assert!(alloc("busy", Resource::Memory) >= GIB as f64 * 0.99);
    // The forecasters learnt one rollup per 5 s step and were saved at exit.
    assert!(
        a.observations(&WorkloadId("busy".into()), Resource::Cpu)
            .unwrap()
            >= 11
    );
    assert!(st.states.keys().any(|k| k == "forecast/h1/busy/cpu"));
    // Every stage was timed.
    for stage in [
        "discover",
        "sample",
        "rollup",
        "forecast",
        "solve",
        "flush",
        "checkpoint",
    ] {
        let t = s
            .times
            .get(stage)
            .unwrap_or_else(|| panic!("{stage} not timed"));
        assert!(t.count > 0, "{stage}");
    }
    assert!(s.times.get("enforce").is_none());
}

#[test]
fn enforce_mode_applies_plans_audits_and_restores_on_exit() {
    let sink = FakeSink::default();
    let mut a = agent(Mode::Enforce, &sink);
    assert!(a.enforcing());
    a.start();
    drive(&mut a, T0 + 30_000);
    let e = a.enforcer().unwrap();
    let busy = e.state(&p("/busy")).unwrap().clone();
    let idle = e.state(&p("/idle")).unwrap().clone();
    assert!(
        busy.cpu_weight.unwrap() > idle.cpu_weight.unwrap(),
        "busy {busy:?} idle {idle:?}"
    );
    assert!(busy.cpu_weight.unwrap() >= 150);
    assert!(matches!(
        busy.memory_high,
        Some(prescient_linux::enforce::MemoryLimit::Bytes(_))
    ));
    assert!(a.counters().writes >= 4);
    let s = a.shutdown();
    assert!(s.counters.restored >= 4, "{:?}", s.counters);
    let e = a.enforcer().unwrap();
    for cg in ["/busy", "/idle"] {
        let o = e.state(&p(cg)).unwrap();
        assert_eq!(o.cpu_weight, Some(100), "{cg} restored");
        assert_eq!(
            o.memory_high,
            Some(prescient_linux::enforce::MemoryLimit::Max)
        );
    }
    let st = sink.0.borrow();
    assert!(st.audit.len() as u64 >= s.counters.writes + s.counters.restored);
    assert!(
        st.audit
            .iter()
            .all(|r| r.action == "cgroup.write" && !r.reason.is_empty())
    );
    assert!(st.audit.iter().any(|r| r.reason.contains("restored")));
    assert!(s.times.get("enforce").unwrap().count >= 3);
}

#[test]
fn a_failing_store_holds_samples_in_memory_and_catches_up() {
    let sink = FakeSink::default();
    let mut a = agent(Mode::Recommend, &sink);
    a.start();
    drive(&mut a, T0 + 9_999);
    let before = sink.0.borrow().samples.len();
    assert_eq!(before, 5 * 4 + 4, "flushed at 0 s and 5 s");
    sink.0.borrow_mut().fail = true;
    drive(&mut a, T0 + 39_999);
    assert_eq!(sink.0.borrow().samples.len(), before, "nothing written");
    assert!(sink.0.borrow().failed_writes >= 5);
    // Samples of 6 s .. 39 s.
    assert_eq!(a.outbox().samples_len(), 34 * 4, "held in memory");
    assert!(a.outbox().failing.is_some());
    assert!(a.counters().plans >= 3, "planning went on");
    sink.0.borrow_mut().fail = false;
    drive(&mut a, T0 + 40_000);
    assert!(a.outbox().failing.is_none(), "writes resumed");
    assert_eq!(a.outbox().samples_len(), 0);
    let s = a.shutdown();
    let st = sink.0.borrow();
    assert_eq!(st.samples.len(), 41 * 4, "no sample lost");
    assert_eq!(s.dropped_samples, 0);
    assert_eq!(
        st.plans.len() as u64,
        s.counters.plans,
        "plans written late"
    );
}

#[test]
fn memory_held_for_a_failing_store_is_bounded() {
    let sink = FakeSink::default();
    sink.0.borrow_mut().fail = true;
    let mut c = config(Mode::Recommend);
    c.store.max_buffered_samples = 50;
    let mut a = Agent::new(
        c,
        MACHINE,
        FakeObserver::new(),
        sink.clone(),
        None::<FakeEnforcer>,
        clock(),
    );
    a.start();
    drive(&mut a, T0 + 60_000);
    assert_eq!(a.outbox().samples_len(), 50);
    let s = a.shutdown();
    assert_eq!(s.unwritten_samples, 50);
    assert_eq!(s.dropped_samples, 61 * 4 - 50);
    assert!(sink.0.borrow().samples.is_empty());
}

#[test]
fn reload_applies_a_valid_config_and_refuses_an_invalid_one() {
    let sink = FakeSink::default();
    let mut a = agent(Mode::Recommend, &sink);
    a.start();
    drive(&mut a, T0 + 5_000);
    // Invalid: refused, the running configuration kept.
    let mut bad = config(Mode::Recommend);
    bad.workloads[0].slo_quantile = 1.5;
    a.reload(Ok(bad));
    a.reload(Config::from_toml(
        "[agent]\nnope = 1\n",
        Path::new("new.toml"),
    ));
    assert_eq!(a.counters().reloads_refused, 2);
    assert_eq!(a.config().workloads[0].slo_quantile, 0.95);
    assert_eq!(a.workloads().len(), 2);
    // Valid: drop `idle`, sample faster; the mode change is kept back.
    let mut good = config(Mode::Enforce);
    good.workloads.truncate(1);
    good.agent.sample_interval = prescient_agent::config::Interval::ms(500);
    a.reload(Ok(good));
    assert_eq!(a.counters().reloads, 1);
    assert_eq!(
        a.config().agent.mode,
        Mode::Recommend,
        "mode changes take a restart"
    );
    assert_eq!(a.workloads(), vec![(WorkloadId("busy".into()), p("/busy"))]);
    let passes = a.counters().sample_passes;
    drive(&mut a, T0 + 10_000);
    // At 5 s (right after the reload), then every 500 ms up to 10 s.
    assert_eq!(a.counters().sample_passes - passes, 11, "every 500 ms now");
}

#[test]
fn a_stop_signal_ends_the_run_gracefully() {
    let sink = FakeSink::default();
    let signals = Signals::new();
    let mut a = Agent::new(
        config(Mode::Enforce),
        MACHINE,
        FakeObserver::new(),
        sink.clone(),
        Some(fake_enforcer()),
        FakeClock {
            now: T0,
            stop_at: Some((T0 + 25_000, signals.clone())),
        },
    );
    let s = a.run(&signals, None, &no_reload);
    assert_eq!(s.stopped_at, T0 + 25_000);
    assert!(s.counters.writes > 0);
    assert!(s.counters.restored > 0, "limits restored at the stop");
    assert_eq!(s.unwritten_samples, 0, "flushed at the stop");
    // Samples at 0 s .. 24 s; the stop came before the one at 25 s.
    assert_eq!(sink.0.borrow().samples.len(), 25 * 4);
}

#[test]
fn a_restart_after_a_crash_resumes_forecasters_plans_and_restores_originals() {
    let sink = FakeSink::default();
    let mut a = agent(Mode::Enforce, &sink);
    a.start();
    drive(&mut a, T0 + 45_000);
    let learnt = a
        .observations(&WorkloadId("busy".into()), Resource::Cpu)
        .unwrap();
    assert!(learnt >= 8);
    // SIGKILL: no shutdown. What the host is left with:
    let left: Vec<(CgroupPath, Observed)> = ["/busy", "/idle"]
        .iter()
        .map(|c| (p(c), a.enforcer().unwrap().state(&p(c)).unwrap().clone()))
        .collect();
    assert_ne!(left[0].1.cpu_weight, Some(100));
    drop(a);

    let mut e = FakeEnforcer::new();
    for (cg, o) in &left {
        e.add(cg, o.clone());
    }
    let mut b = Agent::new(
        config(Mode::Enforce),
        MACHINE,
        FakeObserver::new(),
        sink.clone(),
        Some(e),
        FakeClock {
            now: T0 + 60_000,
            stop_at: None,
        },
    );
    b.start();
    assert!(b.counters().resumed_plans >= 1);
    assert!(!b.plans().is_empty());
    assert!(b.counters().restored >= 2, "{:?}", b.counters());
    // The originals went back, then the resumed plan was applied again.
    let writes = &b.enforcer().unwrap().writes;
    assert!(
        writes.contains(&(p("/busy"), Setting::CpuWeight(100))),
        "{writes:?}"
    );
    assert_eq!(
        b.enforcer().unwrap().state(&p("/busy")).unwrap().cpu_weight,
        left[0].1.cpu_weight,
        "the last plan is held"
    );
    drive(&mut b, T0 + 61_000);
    assert_eq!(b.counters().resumed_forecasters, 4);
    // Saved at the 20 s and 40 s checkpoints: what was learnt by 40 s.
    let resumed = b
        .observations(&WorkloadId("busy".into()), Resource::Cpu)
        .unwrap();
    assert!(resumed >= 7, "resumed with {resumed} observations");
    // A clean stop now restores the true originals.
    b.shutdown();
    assert_eq!(
        b.enforcer().unwrap().state(&p("/busy")).unwrap().cpu_weight,
        Some(100)
    );
}

/// An agent sizing with the reference policy `policy`, its pool of `cpu`
/// cores.
fn reference_agent(policy: &str, cpu: f64, sink: &FakeSink) -> TestAgent {
    let mut c = config(Mode::Enforce);
    c.agent.policy = policy.into();
    c.pools[0].cpu = Some(cpu);
    let c = resolve(c, &MACHINE).unwrap();
    Agent::new(
        c,
        MACHINE,
        FakeObserver::new(),
        sink.clone(),
        Some(fake_enforcer()),
        clock(),
    )
}

fn last_cpu(plans: &[Plan], w: &str) -> f64 {
    let plan = plans.last().unwrap();
    plan.entries
        .iter()
        .find(|e| e.workload.0 == w && e.resource == Resource::Cpu)
        .map(|e| e.allocation)
        .unwrap()
}

#[test]
fn a_static_equal_split_gives_each_workload_its_share_and_is_enforced() {
    let sink = FakeSink::default();
    let mut a = reference_agent("static-equal", 2.0, &sink);
    assert_eq!(a.policy(), "static-equal");
    let s = a.run(&Signals::new(), Some(T0 + 60_000), &no_reload);
    assert_eq!(s.counters.plans, 5);
    assert!(
        (last_cpu(&s.plans, "busy") - 1.0).abs() < 1e-9,
        "{:?}",
        s.plans
    );
    assert!((last_cpu(&s.plans, "idle") - 1.0).abs() < 1e-9);
    let st = sink.0.borrow();
    assert!(!st.audit.is_empty(), "the split was written to the cgroups");
    assert!(
        st.plans
            .last()
            .unwrap()
            .entries
            .iter()
            .all(|e| e.reason.starts_with("static-equal:"))
    );
}

#[test]
fn the_vpa_sizes_from_usage_and_is_scaled_down_to_the_pool() {
    let sink = FakeSink::default();
    // Uncontended: the VPA's own target (p90 x 1.15 of what it saw).
    let mut a = reference_agent("vpa", 2.0, &sink);
    let s = a.run(&Signals::new(), Some(T0 + 60_000), &no_reload);
    let busy = last_cpu(&s.plans, "busy");
    let idle = last_cpu(&s.plans, "idle");
    assert!(busy > 1.5 * 1.1 && busy < 1.55 * 1.3, "{busy}");
    assert!(idle > 0.1 && idle < 0.3, "{idle}");
    // Contended: the same requests, scaled in proportion to fit 1.5 cores.
    let sink = FakeSink::default();
    let mut a = reference_agent("vpa", 1.5, &sink);
    let s = a.run(&Signals::new(), Some(T0 + 60_000), &no_reload);
    let (b2, i2) = (last_cpu(&s.plans, "busy"), last_cpu(&s.plans, "idle"));
    assert!((b2 + i2 - 1.5).abs() < 1e-6, "{b2} + {i2}");
    assert!((b2 / i2 - busy / idle).abs() < 1e-6 * busy / idle);
    let st = sink.0.borrow();
    let reason = &st.plans.last().unwrap().entries[0].reason;
    assert!(reason.contains("scaled down"), "{reason}");
}

#[test]
fn an_unknown_policy_is_refused_with_the_known_ones() {
    let e = Config::from_toml("[agent]\npolicy = \"vpaa\"\n", Path::new("t.toml"))
        .unwrap()
        .issues();
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].key, "agent.policy");
    assert!(e[0].problem.contains("prescient, vpa,"), "{e:?}");
    assert!(e[0].problem.contains("static-equal"), "{e:?}");
}

#[test]
fn network_is_stored_forecast_and_planned_within_the_pool_but_never_enforced() {
    const MB: f64 = 1e6;
    let sink = FakeSink::default();
    let mut c = config(Mode::Enforce);
    // A 10 MB/s uplink; received bytes have no capacity.
    c.pools[0].net_tx = Some(prescient_agent::units::ByteSize(10_000_000));
    let c = resolve(c, &MACHINE).unwrap();
    let mut observer = FakeObserver::new();
    // Both in network namespaces of their own: `busy` sends 8 MB/s and
    // `idle` 4 MB/s, 12 MB/s in all for 10 MB/s of uplink.
    observer.net = Some(Box::new(|cg, _| {
        Some(if cg == "/busy" {
            (1.0 * MB, 8.0 * MB)
        } else {
            (0.5 * MB, 4.0 * MB)
        })
    }));
    let mut a = Agent::new(
        c,
        MACHINE,
        observer,
        sink.clone(),
        Some(fake_enforcer()),
        clock(),
    );
    let s = a.run(&Signals::new(), Some(T0 + 60_000), &no_reload);
    let st = sink.0.borrow();
    // Stored: 60 passes x 2 workloads x (cpu, memory, net_rx, net_tx).
    assert_eq!(st.samples.len(), 60 * 2 * 4);
    assert!(st.samples.iter().any(|(k, s)| k.resource == Resource::NetTx
        && k.workload.0 == "busy"
        && s.value == 8.0 * MB));
    // Forecast...
    assert!(
        a.observations(&WorkloadId("busy".into()), Resource::NetTx)
            .unwrap()
            >= 11
    );
    assert!(st.states.keys().any(|k| k == "forecast/h1/busy/net_tx"));
    // ...and planned: the uplink partitioned, received bytes unlimited.
    let plan = st.plans.last().unwrap();
    let get = |w: &str, r: Resource| {
        plan.entries
            .iter()
            .find(|e| e.workload.0 == w && e.resource == r)
            .map(|e| e.allocation)
            .unwrap_or_else(|| panic!("no {r} for {w} in {plan:?}"))
    };
    let (busy_tx, idle_tx) = (get("busy", Resource::NetTx), get("idle", Resource::NetTx));
    assert!(
        busy_tx + idle_tx <= 10.0 * MB + 1.0,
        "{busy_tx} + {idle_tx}"
    );
    assert!(busy_tx > idle_tx, "{busy_tx} {idle_tx}");
    assert!(get("busy", Resource::NetRx) >= 1.0 * MB * 0.99);
    assert!(get("idle", Resource::NetRx) >= 0.5 * MB * 0.99);
    let pool = a.live_view(T0).pools.remove(0);
    assert_eq!(pool.capacity.get(&Resource::NetTx), Some(&10e6));
    assert_eq!(pool.capacity.get(&Resource::NetRx), None);
    // Never enforced: no cgroup knob for network; only CPU and memory
    // limits were written.
    assert!(s.counters.writes > 0);
    let writes = &a.enforcer().unwrap().writes;
    assert!(
        writes.iter().all(|(_, w)| !matches!(w, Setting::IoMax(..))),
        "{writes:?}"
    );
    assert!(
        st.audit
            .iter()
            .all(|r| !r.after.as_deref().unwrap_or("").contains("rbps"))
    );
}

#[test]
fn plans_use_the_workloads_tail_curves_once_warm_and_their_forecasters_before() {
    use prescient_agent::planning::WARM_STEPS;
    use prescient_forecast::tails::{HostTails, TailConfig};
    use prescient_solver::Demand;

    // busy's CPU repeats 1.0, 1.5, 2.0, 2.5 step after step (5 s steps).
    let level = |k: i64| 1.0 + 0.5 * (k % 4) as f64;
    let usage = move |cg: &str, ts: i64| {
        if cg == "/busy" {
            (level((ts - T0) / 5_000), GIB as f64)
        } else {
            steady(cg, ts)
        }
    };
    let sink = FakeSink::default();
    let mut a = Agent::new(
        config(Mode::Recommend),
        MACHINE,
        FakeObserver::with_usage(usage),
        sink.clone(),
        None,
        clock(),
    );
    // What the replay policy's code makes of the first `steps` steps.
    let tails_median = |steps: i64| {
        let mut t = HostTails::new(TailConfig::for_planning(5_000), 1, 5_000, 0, &[0.95]);
        let mut out = [0.0];
        for k in 0..steps {
            t.allocate(&[0], &mut out);
            t.observe(T0 + k * 5_000, &[0], &[level(k)]);
        }
        t.allocate(&[0], &mut out);
        let d = Demand {
            start: 0,
            step_ms: 5_000,
            levels: TailConfig::levels().into(),
            values: t.curve(0, 0).to_vec(),
        };
        prescient_core::Quantiles::new(&d.levels, &d.values)
            .unwrap()
            .quantile(0.5)
    };
    let busy = WorkloadId("busy".into());
    // The plan at 50 s has 10 steps (the sample at 50 s closed the 10th):
    // not yet warm, the forecaster plans.
    const { assert!(10 < WARM_STEPS) };
    drive(&mut a, T0 + 50_000);
    let early = a.forecast(&busy, Resource::Cpu).unwrap();
    assert!(
        (early - tails_median(10)).abs() > 1e-6,
        "{early} is the tails' median already"
    );
    // The plan at 100 s has 20: the tail curve, exactly.
    drive(&mut a, T0 + 100_000);
    let warm = a.forecast(&busy, Resource::Cpu).unwrap();
    let want = tails_median(20);
    assert!((warm - want).abs() < 1e-12, "{warm} vs {want}");
}

/// [`config`] in enforce mode with a pool capacity of 300 read ops/s,
/// capped on device 8:0, `busy` guaranteed 50 of them.
fn io_config() -> Config {
    let mut c = config(Mode::Enforce);
    c.pools[0].io_read_ops = Some(300.0);
    c.enforce.io_devices = vec!["8:0".into()];
    c.workloads[0].io_read_ops.guarantee = 50.0;
    resolve(c, &MACHINE).unwrap()
}

/// The last plan's allocation of `r` to `w`, if it has one.
fn planned(plans: &[Plan], w: &str, r: Resource) -> Option<f64> {
    plans
        .iter()
        .flat_map(|p| &p.entries)
        .find(|e| e.workload.0 == w && e.resource == r)
        .map(|e| e.allocation)
}

#[test]
fn read_ops_are_planned_within_the_pool_and_capped_as_riops_on_the_configured_device() {
    let sink = FakeSink::default();
    let mut observer = FakeObserver::new();
    // `busy` reads 250 ops/s and `idle` 100, 350 for a pool of 300; both
    // read and write bytes, which no pool has a capacity for.
    observer.io = Some(Box::new(|cg, _| {
        let ops = if cg == "/busy" { 250.0 } else { 100.0 };
        [Some(4e6), Some(1e6), Some(ops), Some(20.0)]
    }));
    let mut a = Agent::new(
        io_config(),
        MACHINE,
        observer,
        sink.clone(),
        Some(fake_enforcer()),
        clock(),
    );
    a.start();
    drive(&mut a, T0 + 60_000);
    let busy = WorkloadId("busy".into());
    // Forecast where planned; the other I/O only sampled and stored.
    assert!(a.observations(&busy, Resource::IoReadOps).unwrap() >= 11);
    for r in [Resource::IoRead, Resource::IoWrite, Resource::IoWriteOps] {
        assert!(a.forecaster(&busy, r).is_none(), "{r} is not planned");
    }
    {
        let st = sink.0.borrow();
        assert!(
            st.samples
                .iter()
                .any(|(k, s)| k.resource == Resource::IoWrite && s.value == 1e6)
        );
    }
    // The plan splits the pool's read ops, the guarantee kept.
    let plans = a.plans().to_vec();
    let (b, i) = (
        planned(&plans, "busy", Resource::IoReadOps).unwrap(),
        planned(&plans, "idle", Resource::IoReadOps).unwrap(),
    );
    assert!(b + i <= 300.0 + 1e-6, "{b} + {i}");
    assert!(b >= 50.0 && b > i, "busy {b} idle {i}");
    assert_eq!(planned(&plans, "busy", Resource::IoRead), None);
    let view = a.live_view(T0 + 60_000);
    assert_eq!(
        view.pools[0].capacity.get(&Resource::IoReadOps),
        Some(&300.0)
    );
    // The limits: riops at the allocation on 8:0, nothing else capped.
    let dev = prescient_linux::enforce::Device { major: 8, minor: 0 };
    let e = a.enforcer().unwrap();
    for (cg, alloc) in [("/busy", b), ("/idle", i)] {
        let io = e.state(&p(cg)).unwrap().io_max.clone().unwrap();
        let l = io.get(&dev).unwrap_or_else(|| panic!("{cg}: {io:?}"));
        assert_eq!(l.riops, Some(alloc as u64), "{cg}");
        assert_eq!((l.rbps, l.wbps, l.wiops), (None, None, None), "{cg}");
        assert_eq!(io.len(), 1, "{cg}: only the configured device");
    }
    assert!(
        e.writes
            .iter()
            .any(|(cg, s)| cg == &p("/busy") && matches!(s, Setting::IoMax(d, _) if *d == dev))
    );
    // Audited, naming the device and the cap.
    let st = sink.0.borrow();
    let rec = st
        .audit
        .iter()
        .find(|r| r.target.contains("/busy") && r.after.as_deref().unwrap_or("").contains("riops="))
        .unwrap_or_else(|| panic!("{:#?}", st.audit));
    assert!(
        rec.after
            .as_deref()
            .unwrap()
            .starts_with("8:0 rbps=max wbps=max riops="),
        "{rec:?}"
    );
    assert!(rec.reason.contains("io_read_ops: "), "{rec:?}");
    drop(st);
    // Restored at exit.
    a.shutdown();
    let e = a.enforcer().unwrap();
    for cg in ["/busy", "/idle"] {
        assert_eq!(
            e.state(&p(cg)).unwrap().io_max,
            Some(Default::default()),
            "{cg}"
        );
    }
}

#[test]
fn a_workload_without_samples_of_an_io_resource_is_neither_planned_nor_capped_on_it() {
    let sink = FakeSink::default();
    let mut observer = FakeObserver::new();
    // `idle` has read bytes but no operations (as a process workload
    // read from /proc); `busy` reads nothing at all, 0 ops/s.
    observer.io = Some(Box::new(|cg, _| {
        if cg == "/busy" {
            [Some(0.0), Some(0.0), Some(0.0), Some(0.0)]
        } else {
            [Some(1e6), Some(0.0), None, None]
        }
    }));
    let mut a = Agent::new(
        io_config(),
        MACHINE,
        observer,
        sink.clone(),
        Some(fake_enforcer()),
        clock(),
    );
    a.start();
    drive(&mut a, T0 + 40_000);
    let idle = WorkloadId("idle".into());
    assert!(a.forecaster(&idle, Resource::IoReadOps).is_none());
    let plans = a.plans().to_vec();
    assert_eq!(
        planned(&plans, "idle", Resource::IoReadOps),
        None,
        "{plans:?}"
    );
    let e = a.enforcer().unwrap();
    assert_eq!(
        e.state(&p("/idle")).unwrap().io_max,
        Some(Default::default()),
        "no cap without samples"
    );
    assert!(
        e.writes
            .iter()
            .all(|(cg, s)| !(cg == &p("/idle") && matches!(s, Setting::IoMax(..))))
    );
    // A workload that does no reads is planned (its guarantee: 50) and
    // capped there: a sample of 0 is demand of 0, not no demand known.
    let b = planned(&plans, "busy", Resource::IoReadOps).unwrap();
    assert!(b >= 50.0, "{b}");
}

#[test]
fn without_io_capacities_io_is_stored_but_gets_no_forecaster_and_no_cap() {
    let sink = FakeSink::default();
    let mut observer = FakeObserver::new();
    observer.io = Some(Box::new(|_, _| {
        [Some(1e6), Some(2e6), Some(10.0), Some(20.0)]
    }));
    let mut c = config(Mode::Enforce);
    // Devices given, but nothing planned to cap on them.
    c.enforce.io_devices = vec!["8:0".into()];
    let c = resolve(c, &MACHINE).unwrap();
    let mut a = Agent::new(
        c,
        MACHINE,
        observer,
        sink.clone(),
        Some(fake_enforcer()),
        clock(),
    );
    let s = a.run(&Signals::new(), Some(T0 + 30_000), &no_reload);
    // 30 passes x 2 workloads x (cpu, memory and the four I/O).
    assert_eq!(sink.0.borrow().samples.len(), 30 * 2 * 6);
    let busy = WorkloadId("busy".into());
    assert!(a.forecaster(&busy, Resource::Cpu).is_some());
    for r in prescient_agent::config::IO_RESOURCES {
        assert!(a.forecaster(&busy, r).is_none(), "{r}");
    }
    assert!(s.counters.writes > 0);
    assert!(
        a.enforcer()
            .unwrap()
            .writes
            .iter()
            .all(|(_, w)| !matches!(w, Setting::IoMax(..)))
    );
    assert!(s.plans.iter().all(|p| {
        p.entries
            .iter()
            .all(|e| matches!(e.resource, Resource::Cpu | Resource::Memory))
    }));
}

#[test]
fn a_reload_that_gives_or_takes_an_io_capacity_starts_or_drops_its_forecasters() {
    let sink = FakeSink::default();
    let mut observer = FakeObserver::new();
    observer.io = Some(Box::new(|_, _| [Some(1e6), None, Some(40.0), None]));
    let mut a = Agent::new(
        config(Mode::Recommend),
        MACHINE,
        observer,
        sink.clone(),
        None,
        clock(),
    );
    a.start();
    drive(&mut a, T0 + 20_000);
    let busy = WorkloadId("busy".into());
    assert!(a.forecaster(&busy, Resource::IoReadOps).is_none());
    // Given: planned from the next samples on.
    let mut c = config(Mode::Recommend);
    c.pools[0].io_read_ops = Some(100.0);
    a.reload(Ok(c));
    drive(&mut a, T0 + 50_000);
    assert!(a.observations(&busy, Resource::IoReadOps).unwrap() >= 4);
    assert!(planned(a.plans(), "busy", Resource::IoReadOps).is_some());
    assert!(a.forecaster(&busy, Resource::IoRead).is_none());
    // Taken: saved, dropped, no longer planned.
    a.reload(Ok(config(Mode::Recommend)));
    assert!(a.forecaster(&busy, Resource::IoReadOps).is_none());
    drive(&mut a, T0 + 70_000);
    assert!(a.forecaster(&busy, Resource::IoReadOps).is_none());
    assert!(
        sink.0
            .borrow()
            .states
            .contains_key("forecast/h1/busy/io_read_ops")
    );
    assert_eq!(planned(a.plans(), "busy", Resource::IoReadOps), None);
    assert_eq!(a.counters().reloads, 2);
}
