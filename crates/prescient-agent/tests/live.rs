//! The loop seen and steered through its control port, on the fakes of
//! `fakes` (and a real store for events): the live view, replans, mode
//! switches, events, requests and anomalies.

mod fakes;

use std::sync::mpsc::{Receiver, channel};

use prescient_agent::agent::PLANNED;
use prescient_agent::config::{Config, ConfigError, Mode};
use prescient_agent::control::{
    CONFIG_TEXT_NAME, Caller, Command, ConfigChange, Control, ControlHandle, LiveView, NewRequest,
    RequestState, RequestView,
};
use prescient_agent::{Agent, Sink, StoreSink, resolve};
use prescient_core::{Plan, Resource, TimestampMs};
use prescient_linux::enforce::{FakeEnforcer, MemoryLimit};
use prescient_store::{NewEvent, Store};

use fakes::*;

fn ops() -> Caller {
    Caller {
        name: "ops".into(),
        address: "127.0.0.1:4242".into(),
    }
}

/// An agent over `sink` connected to a control channel.
fn connected<S: Sink>(
    mode: Mode,
    sink: S,
    enforcer: Option<FakeEnforcer>,
) -> (
    Agent<FakeObserver, S, FakeEnforcer, FakeClock>,
    ControlHandle,
) {
    connected_with(config(mode), FakeObserver::new(), sink, enforcer)
}

/// An agent of config `c` observing through `observer`, over `sink`,
/// connected to a control channel.
fn connected_with<S: Sink>(
    c: Config,
    observer: FakeObserver,
    sink: S,
    enforcer: Option<FakeEnforcer>,
) -> (
    Agent<FakeObserver, S, FakeEnforcer, FakeClock>,
    ControlHandle,
) {
    let (handle, port) = Control::new();
    let mut a = Agent::new(c, MACHINE, observer, sink, enforcer, clock());
    a.set_control(port);
    (a, handle)
}

/// Sets the clock to `t` and runs one pass.
fn tick_at<S: Sink>(a: &mut Agent<FakeObserver, S, FakeEnforcer, FakeClock>, t: TimestampMs) {
    a.clock_mut().now = t;
    a.tick();
}

fn alloc(plans: &[Plan], w: &str, r: Resource) -> f64 {
    plans
        .iter()
        .flat_map(|p| &p.entries)
        .find(|e| e.workload.0 == w && e.resource == r)
        .map(|e| e.allocation)
        .unwrap_or_else(|| panic!("no {r} entry for {w} in {plans:?}"))
}

fn reason(plans: &[Plan], w: &str, r: Resource) -> String {
    plans
        .iter()
        .flat_map(|p| &p.entries)
        .find(|e| e.workload.0 == w && e.resource == r)
        .map(|e| e.reason.clone())
        .unwrap()
}

fn request(workload: &str, resource: Resource, amount: f64, duration_s: u64) -> NewRequest {
    NewRequest {
        workload: workload.into(),
        resource,
        amount,
        priority: 0,
        justification: "load test".into(),
        duration_s,
    }
}

/// Sends a request, runs a pass, and returns the reply.
fn ask<S: Sink>(
    a: &mut Agent<FakeObserver, S, FakeEnforcer, FakeClock>,
    h: &ControlHandle,
    r: NewRequest,
) -> Result<RequestView, String> {
    let (tx, rx) = channel();
    assert!(h.send(Command::Request {
        request: r,
        by: ops(),
        reply: tx,
    }));
    a.tick();
    rx.try_recv().expect("answered within one pass")
}

fn cancel<S: Sink>(
    a: &mut Agent<FakeObserver, S, FakeEnforcer, FakeClock>,
    h: &ControlHandle,
    id: u64,
) -> Result<RequestView, String> {
    let (tx, rx) = channel();
    assert!(h.send(Command::CancelRequest {
        id,
        by: ops(),
        reply: tx,
    }));
    a.tick();
    rx.try_recv().expect("answered within one pass")
}

fn set_mode(h: &ControlHandle, mode: Mode) -> Receiver<Result<Mode, String>> {
    let (tx, rx) = channel();
    assert!(h.send(Command::SetMode {
        mode,
        by: ops(),
        reply: tx,
    }));
    rx
}

fn view_request(v: &LiveView, id: u64) -> Option<&RequestView> {
    v.requests.iter().find(|r| r.id == id)
}

#[test]
fn the_view_has_workloads_usage_forecasts_plans_weights_and_fake_clock_times() {
    let sink = FakeSink::default();
    let (mut a, h) = connected(Mode::Recommend, sink.clone(), None);
    a.start();
    assert_eq!(h.view().started_at, T0, "published at start");
    drive(&mut a, T0 + 30_000);
    let v = h.view();
    assert_eq!(v.host, "h1");
    assert_eq!(v.mode, Mode::Recommend);
    assert_eq!(v.policy, "prescient");
    assert_eq!(v.started_at, T0);
    assert_eq!(v.updated_at, T0 + 30_000, "the fake clock's time");
    assert_eq!(v.counters.sample_passes, 31);
    assert_eq!(v.counters.plans, 3);
    assert!(v.times.get("sample").is_some_and(|s| s.count == 31));
    assert_eq!(v.pools.len(), 1);
    assert_eq!(v.pools[0].name, "host");
    assert_eq!(v.pools[0].capacity[&Resource::Cpu], 2.0);
    assert_eq!(v.pools[0].capacity[&Resource::Memory], (4 * GIB) as f64);
    assert_eq!(v.plans.len(), 1);
    assert_eq!(v.plans[0].made_at, T0 + 30_000);
    assert!(v.anomalies.is_empty(), "{:?}", v.anomalies);
    assert!(v.alerts.is_empty());
    assert_eq!(v.store.path, "/nonexistent/unused.db");
    assert!(v.store.stored_samples > 0);
    assert_eq!(v.store.failing, None);
    let ids: Vec<&str> = v.workloads.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["busy", "idle"]);
    let busy = &v.workloads[0];
    assert_eq!(busy.selector, "busy");
    assert_eq!(busy.cgroup, "/busy");
    assert_eq!(busy.pool.as_deref(), Some("host"));
    // The planned resources it has series of: the fake observer counts no
    // network for it (as for a workload in the host's network namespace).
    let res: Vec<Resource> = busy.resources.iter().map(|r| r.resource).collect();
    assert_eq!(res, [Resource::Cpu, Resource::Memory]);
    assert!(PLANNED.contains(&Resource::NetRx));
    for r in &busy.resources {
        assert_eq!(r.slo_quantile, 0.95);
        assert_eq!(r.allocation, Some(alloc(&v.plans, "busy", r.resource)));
        assert!(r.observations >= 5, "{r:?}");
        assert!(!r.forecast.is_empty());
        assert!(
            r.forecast
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "levels and values increase: {:?}",
            r.forecast
        );
        let total: f64 = r.weights.iter().map(|w| w.weight).sum();
        assert!(r.weights.len() >= 2, "{:?}", r.weights);
        assert!((total - 1.0).abs() < 1e-9, "weights add up to {total}");
        assert!(r.calibration.iter().any(|c| c.level == 0.95));
        let c95 = r.calibration.iter().find(|c| c.level == 0.95).unwrap();
        assert!(c95.realised.is_some_and(|x| (0.0..=1.0).contains(&x)));
        assert!((0.0..=1.0).contains(&c95.adjusted_level));
        assert!(r.coverage.is_some_and(|c| (0.0..=1.0).contains(&c)));
    }
    let cpu = &busy.resources[0];
    assert_eq!(cpu.usage, Some(1.5), "the sample at 30 s (no wobble)");
    let median = cpu.forecast.iter().find(|(l, _)| *l == 0.5).unwrap().1;
    assert!((median - 1.52).abs() < 0.1, "median forecast {median}");
    assert_eq!(busy.resources[1].usage, Some(GIB as f64));

    // Without pools in the file, the one pool is the whole machine.
    let mut c = config(Mode::Recommend);
    c.pools.clear();
    for w in &mut c.workloads {
        w.cpu.guarantee = 0.0;
    }
    let (mut b, handle) = connected_with(
        resolve(c, &MACHINE).unwrap(),
        FakeObserver::new(),
        FakeSink::default(),
        None,
    );
    b.start();
    let v = handle.view();
    assert_eq!(v.pools.len(), 1);
    assert_eq!(v.pools[0].capacity[&Resource::Cpu], MACHINE.cpus);
    assert_eq!(
        v.pools[0].capacity[&Resource::Memory],
        MACHINE.memory_bytes as f64
    );
}

#[test]
fn replan_plans_before_the_interval_and_the_audit_names_the_caller() {
    let sink = FakeSink::default();
    let (mut a, h) = connected(Mode::Recommend, sink.clone(), None);
    a.start();
    drive(&mut a, T0 + 12_000);
    assert_eq!(a.counters().plans, 1, "planned at 10 s");
    assert!(h.send(Command::Replan { by: ops() }));
    tick_at(&mut a, T0 + 13_500);
    assert_eq!(a.counters().plans, 2, "planned at once");
    let v = h.view();
    assert_eq!(v.plans[0].made_at, T0 + 13_500);
    assert_eq!(v.updated_at, T0 + 13_500);
    let st = sink.0.borrow();
    let r = st
        .audit
        .iter()
        .find(|r| r.action == "plan.replan")
        .expect("audited");
    assert_eq!(r.actor, "ops");
    assert_eq!(r.ts, T0 + 13_500);
    assert!(r.reason.contains("127.0.0.1:4242"), "{}", r.reason);
}

#[test]
fn set_mode_writes_only_while_enforcing_and_restores_on_the_way_back() {
    let sink = FakeSink::default();
    let (mut a, h) = connected(Mode::Recommend, sink.clone(), Some(fake_enforcer()));
    a.start();
    drive(&mut a, T0 + 25_000);
    assert!(
        a.enforcer().unwrap().writes.is_empty(),
        "recommend writes nothing"
    );
    assert!(!a.enforcing());

    let reply = set_mode(&h, Mode::Enforce);
    tick_at(&mut a, T0 + 25_500);
    assert_eq!(reply.try_recv().unwrap(), Ok(Mode::Enforce));
    assert!(a.enforcing());
    assert_eq!(h.view().mode, Mode::Enforce);
    let e = a.enforcer().unwrap();
    assert!(
        !e.writes.is_empty(),
        "the plan in force was applied at once"
    );
    let busy = e.state(&p("/busy")).unwrap();
    assert!(busy.cpu_weight.unwrap() > 100, "{busy:?}");
    assert!(matches!(busy.memory_high, Some(MemoryLimit::Bytes(_))));

    // A reload keeps the mode set at run time.
    a.reload(Ok(config(Mode::Recommend)));
    assert_eq!(a.mode(), Mode::Enforce);
    assert_eq!(a.config().agent.mode, Mode::Enforce);
    drive(&mut a, T0 + 40_000);

    let reply = set_mode(&h, Mode::Recommend);
    tick_at(&mut a, T0 + 40_500);
    assert_eq!(reply.try_recv().unwrap(), Ok(Mode::Recommend));
    assert!(!a.enforcing());
    assert_eq!(h.view().mode, Mode::Recommend);
    let e = a.enforcer().unwrap();
    for cg in ["/busy", "/idle"] {
        let o = e.state(&p(cg)).unwrap();
        assert_eq!(o.cpu_weight, Some(100), "{cg} restored");
        assert_eq!(o.memory_high, Some(MemoryLimit::Max), "{cg} restored");
    }
    let writes = e.writes.len();
    drive(&mut a, T0 + 70_000);
    assert!(a.counters().plans >= 6);
    assert_eq!(
        a.enforcer().unwrap().writes.len(),
        writes,
        "no writes in recommend mode"
    );
    a.shutdown();
    let st = sink.0.borrow();
    let modes: Vec<(&str, Option<&str>)> = st
        .audit
        .iter()
        .filter(|r| r.action == "agent.mode")
        .map(|r| (r.actor.as_str(), r.after.as_deref()))
        .collect();
    assert_eq!(
        modes,
        [("ops", Some("enforce")), ("ops", Some("recommend"))]
    );
    assert!(
        st.audit
            .iter()
            .any(|r| r.action == "cgroup.write" && r.reason.contains("restored")),
        "the restores are audited"
    );

    // Without a cgroup writer, enforce is refused with why.
    let (mut b, h) = connected(Mode::Recommend, FakeSink::default(), None);
    b.set_no_enforcer_reason("no cgroup controller is writable here");
    b.start();
    let reply = set_mode(&h, Mode::Enforce);
    b.tick();
    let err = reply.try_recv().unwrap().unwrap_err();
    assert!(
        err.contains("no cgroup controller is writable here"),
        "{err}"
    );
    assert_eq!(b.mode(), Mode::Recommend);
    assert_eq!(h.view().mode, Mode::Recommend);
}

#[test]
fn the_view_has_the_last_solves_figures_and_searches_run_only_under_contention() {
    // 1.6 of 2 cores: everything fits, no threshold search.
    let (mut a, h) = connected(Mode::Recommend, FakeSink::default(), None);
    a.start();
    drive(&mut a, T0 + 30_000);
    let v = h.view();
    let s = &v.solver;
    assert_eq!(s.at, T0 + 30_000);
    assert_eq!((s.workloads, s.curves, s.requests), (2, 4, 0), "{s:?}");
    assert!(s.working_bytes > 0, "{s:?}");
    assert_eq!(
        (s.passes, s.overcommitted, s.degraded_plans),
        (0, 0, 0),
        "{s:?}"
    );
    assert_eq!(v.counters.solver_passes, 0);
    assert_eq!(v.counters.degraded_plans, 0);

    // 2.6 of 2 cores: the solver searches for the split, every plan.
    let contended = FakeObserver::with_usage(|cg, _| match cg {
        "/busy" => (1.8, GIB as f64),
        _ => (0.8, 256.0 * 1048576.0),
    });
    let (mut b, h) = connected_with(
        config(Mode::Recommend),
        contended,
        FakeSink::default(),
        None,
    );
    b.start();
    drive(&mut b, T0 + 20_000);
    let first = h.view().solver.clone();
    assert!(first.passes > 0, "{first:?}");
    let before = h.view().counters.solver_passes;
    drive(&mut b, T0 + 30_000);
    let v = h.view();
    assert_eq!(v.solver.at, T0 + 30_000);
    assert!(v.solver.passes > 0);
    assert_eq!(
        v.counters.solver_passes,
        before + v.solver.passes as u64,
        "the counter adds each solve's passes"
    );
    assert_eq!(
        v.counters.degraded_plans, 0,
        "guarantees fit: cut back nowhere"
    );
}

/// Sends a configuration as text, runs a pass, and returns the reply.
fn send_config<S: Sink>(
    a: &mut Agent<FakeObserver, S, FakeEnforcer, FakeClock>,
    h: &ControlHandle,
    toml: &str,
) -> Result<ConfigChange, ConfigError> {
    let (tx, rx) = channel();
    assert!(h.send(Command::SetConfig {
        toml: toml.into(),
        by: ops(),
        reply: tx,
    }));
    a.tick();
    rx.try_recv().expect("answered within one pass")
}

#[test]
fn a_configuration_sent_as_text_is_refused_or_applied_as_a_reload_and_audited() {
    let sink = FakeSink::default();
    let (mut a, h) = connected(Mode::Recommend, sink.clone(), None);
    a.start();
    drive(&mut a, T0 + 12_000);
    let old = a.config().clone();
    assert_eq!(h.view().config.as_deref(), Some(&old), "the view shows it");

    // Invalid: refused naming the key and its value; the old one kept.
    let mut bad = old.clone();
    bad.workloads[0].slo_quantile = 1.5;
    let err = send_config(&mut a, &h, &bad.to_toml()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("workload[0].slo_quantile = 1.5") && text.contains(CONFIG_TEXT_NAME),
        "{text}"
    );
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
    let err = send_config(&mut a, &h, "[agent]\nplan_interval = \"soon\"\n").unwrap_err();
    assert!(
        err.to_string().contains("agent.plan_interval"),
        "a value of the wrong kind names the key: {err}"
    );
    assert_eq!(a.config(), &old);
    assert_eq!(h.view().config.as_deref(), Some(&old));
    assert_eq!(a.counters().reloads_refused, 2);
    assert_eq!(a.counters().reloads, 0);

    // Valid: applied, with what changed and what takes a restart.
    let mut new = old.clone();
    new.agent.plan_interval = prescient_agent::units::Interval::secs(20);
    new.workloads[0].slo_quantile = 0.99;
    new.store.path = "/elsewhere/other.db".into();
    let change = send_config(&mut a, &h, &new.to_toml()).unwrap();
    assert_eq!(change.changed, ["agent", "workload"]);
    assert_eq!(change.kept.len(), 1, "{:?}", change.kept);
    assert!(
        change.kept[0].contains("[store] path") && change.kept[0].contains("unused.db"),
        "{:?}",
        change.kept
    );
    assert_eq!(a.counters().reloads, 1);
    let now = a.config().clone();
    assert_eq!(now.agent.plan_interval.as_ms(), 20_000);
    assert_eq!(now.workloads[0].slo_quantile, 0.99);
    assert_eq!(now.store.path, old.store.path, "kept until a restart");
    let v = h.view();
    assert_eq!(
        v.config.as_deref(),
        Some(&now),
        "published before the reply"
    );
    let busy = v.workloads.iter().find(|w| w.id == "busy").unwrap();
    assert_eq!(busy.resources[0].slo_quantile, 0.99);
    // Planned on the new interval: 20 s after the change.
    let plans = a.counters().plans;
    drive(&mut a, T0 + 31_000);
    assert_eq!(a.counters().plans, plans, "no plan 10 s after the change");
    drive(&mut a, T0 + 33_000);
    assert_eq!(a.counters().plans, plans + 1);

    a.shutdown();
    let st = sink.0.borrow();
    let audits: Vec<_> = st
        .audit
        .iter()
        .filter(|r| r.action == "agent.config")
        .collect();
    assert_eq!(audits.len(), 1, "only the applied one: {audits:?}");
    assert_eq!(audits[0].actor, "ops");
    assert_eq!(audits[0].after.as_deref(), Some("agent, workload"));
    assert!(
        audits[0].reason.contains("127.0.0.1:4242") && audits[0].reason.contains("[store] path"),
        "{}",
        audits[0].reason
    );
}

/// The idle workload's CPU triples during [from, to).
fn sale(from: TimestampMs, to: TimestampMs) -> impl Fn(&str, TimestampMs) -> (f64, f64) {
    move |cg, ts| {
        let (cpu, mem) = steady(cg, ts);
        if cg == "/idle" && (from..to).contains(&ts) {
            (cpu * 3.0, mem)
        } else {
            (cpu, mem)
        }
    }
}

fn new_event(name: &str, selector: &str, start: TimestampMs, end: TimestampMs) -> NewEvent {
    NewEvent {
        kind: "sale".into(),
        selector: selector.into(),
        start,
        end,
        effect: serde_json::json!({"name": name, "resource": "cpu", "multiply": 3.0}),
        created_by: "ops".into(),
        created_at: T0,
    }
}

#[test]
fn an_event_in_the_store_raises_the_forecast_while_it_is_open_and_not_after() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let (open, close) = (T0 + 125_000, T0 + 185_000);
    let (mut a, handle) = connected_with(
        config(Mode::Recommend),
        FakeObserver::with_usage(sale(open, close)),
        StoreSink::open(&db).unwrap(),
        None,
    );
    a.start();
    drive(&mut a, T0 + 100_000);
    let before = alloc(a.plans(), "idle", Resource::Cpu);
    assert!(before < 0.2, "{before}");

    // Created through another connection, as the API server does.
    let mut store = Store::open(&db).unwrap();
    store
        .create_event(&new_event("sale", "idle", open, close))
        .unwrap();
    store
        .create_event(&new_event("nothing", "no-such-*", open, close))
        .unwrap();
    drive(&mut a, T0 + 110_000);
    assert_eq!(
        alloc(a.plans(), "idle", Resource::Cpu),
        before,
        "not known before EventsChanged"
    );
    assert!(handle.send(Command::EventsChanged { by: ops() }));
    drive(&mut a, T0 + 120_000);
    assert_eq!(a.calendar().events().count(), 2);
    // The plan made at 120 s covers 125-135 s: raised before the window
    // opens, before any sample shows it.
    let plans = a.plans().to_vec();
    assert_eq!(plans[0].made_at, T0 + 120_000);
    let during = alloc(&plans, "idle", Resource::Cpu);
    assert!(during > 2.0 * before, "{during} vs {before}");
    let why = reason(&plans, "idle", Resource::Cpu);
    assert!(why.contains("event 'sale'") && why.contains("x3"), "{why}");
    assert!(!reason(&plans, "busy", Resource::Cpu).contains("event"));
    assert!(!reason(&plans, "idle", Resource::Memory).contains("event"));
    drive(&mut a, T0 + 150_000);
    let v = handle.view();
    let idle = v.workloads.iter().find(|w| w.id == "idle").unwrap();
    let median = idle.resources[0]
        .forecast
        .iter()
        .find(|(l, _)| *l == 0.5)
        .unwrap()
        .1;
    assert!(
        median > 0.25,
        "the next step's forecast is shifted: {median}"
    );
    assert!(alloc(a.plans(), "idle", Resource::Cpu) > 2.0 * before);

    // After the window: back, and without lag (the forecaster learnt the
    // window's values without the event's effect).
    drive(&mut a, T0 + 200_000);
    let after = alloc(a.plans(), "idle", Resource::Cpu);
    assert!(after < 0.2, "{after}");
    assert!(!reason(a.plans(), "idle", Resource::Cpu).contains("event"));
    drive(&mut a, T0 + 210_000);
    let learned = a
        .calendar()
        .all_learned()
        .map(|(_, _, l)| l.clone())
        .next()
        .expect("the effect was learned from the occurrence");
    assert_eq!(learned.occurrences, 1);

    // A second event, picked up, then cancelled.
    let id = store
        .create_event(&new_event("launch", "idle", T0 + 245_000, T0 + 400_000))
        .unwrap();
    assert!(handle.send(Command::EventsChanged { by: ops() }));
    drive(&mut a, T0 + 240_000);
    assert!(
        alloc(a.plans(), "idle", Resource::Cpu) > 2.0 * before,
        "the new event is in force"
    );
    store
        .cancel_event(id, "ops", T0 + 245_000, "called off")
        .unwrap();
    assert!(handle.send(Command::EventsChanged { by: ops() }));
    drive(&mut a, T0 + 250_000);
    assert!(
        alloc(a.plans(), "idle", Resource::Cpu) < 0.2,
        "the cancelled event no longer shifts the forecast"
    );
    assert!(!reason(a.plans(), "idle", Resource::Cpu).contains("launch"));
}

#[test]
fn requests_are_granted_queued_expired_cancelled_or_refused() {
    let sink = FakeSink::default();
    let (mut a, h) = connected(Mode::Recommend, sink.clone(), None);
    a.start();
    drive(&mut a, T0 + 20_500);
    let busy_before = alloc(a.plans(), "busy", Resource::Cpu);
    assert!(busy_before < 1.75, "{busy_before}");

    // From free capacity: granted at once (a plan is made for it).
    a.clock_mut().now = T0 + 21_000;
    let r = ask(&mut a, &h, request("busy", Resource::Cpu, 1.8, 30)).unwrap();
    assert_eq!(r.state, RequestState::Waiting);
    assert_eq!(r.created_at, T0 + 21_000);
    assert_eq!(r.until, T0 + 51_000);
    assert_eq!(r.requested_by, ops());
    let v = h.view();
    let got = view_request(&v, r.id).unwrap();
    assert_eq!(got.state, RequestState::Granted, "{got:?}");
    assert!(got.granted.unwrap() >= 1.8 - 1e-9, "{got:?}");
    assert!(got.reason.contains("free capacity"), "{}", got.reason);
    assert!(alloc(a.plans(), "busy", Resource::Cpu) >= 1.8 - 1e-9);

    // It expires at its end, stays in the view an hour, then goes.
    drive(&mut a, T0 + 51_000);
    let v = h.view();
    let got = view_request(&v, r.id).unwrap();
    assert_eq!(got.state, RequestState::Expired);
    assert_eq!(got.granted, None);
    assert!(alloc(a.plans(), "busy", Resource::Cpu) < 1.75);
    tick_at(&mut a, T0 + 51_000 + 3_600_000);
    assert!(
        view_request(&h.view(), r.id).is_none(),
        "dropped after an hour"
    );
    let now = T0 + 51_000 + 3_600_000;

    // Beyond the pool: partly granted, lent by idle, the rest queued.
    let big = ask(&mut a, &h, request("busy", Resource::Cpu, 3.0, 600)).unwrap();
    let v = h.view();
    let got = view_request(&v, big.id).unwrap();
    assert_eq!(got.state, RequestState::Partial, "{got:?}");
    let granted = got.granted.unwrap();
    assert!(
        granted > busy_before && granted <= 2.0 + 1e-9,
        "more than without, at most the pool: {got:?}"
    );
    assert!(got.reason.contains("lent by idle"), "{}", got.reason);
    assert!(got.reason.contains("pool 'host' full"), "{}", got.reason);
    assert!(got.reason.contains("queued"), "{}", got.reason);

    // Cancel: once, not twice; an unknown id is refused.
    let c = cancel(&mut a, &h, big.id).unwrap();
    assert_eq!(c.state, RequestState::Cancelled);
    assert_eq!(
        view_request(&h.view(), big.id).unwrap().state,
        RequestState::Cancelled
    );
    assert!(alloc(a.plans(), "busy", Resource::Cpu) < 1.75, "given back");
    let err = cancel(&mut a, &h, big.id).unwrap_err();
    assert!(err.contains("already ended"), "{err}");
    let err = cancel(&mut a, &h, 999).unwrap_err();
    assert!(err.contains("999"), "{err}");

    // Refused with what is wrong.
    let err = ask(&mut a, &h, request("nope", Resource::Cpu, 1.0, 60)).unwrap_err();
    assert!(err.contains("unknown workload 'nope'"), "{err}");
    assert!(err.contains("busy, idle"), "{err}");
    let err = ask(&mut a, &h, request("busy", Resource::IoRead, 1.0, 60)).unwrap_err();
    assert!(err.contains("not planned"), "{err}");
    // No pool has an I/O capacity: the planned ones are listed.
    assert!(
        err.contains("requests are for cpu, memory, net_rx, net_tx;"),
        "{err}"
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = ask(&mut a, &h, request("busy", Resource::Cpu, bad, 60)).unwrap_err();
        assert!(err.starts_with("amount:"), "{bad}: {err}");
    }
    let err = ask(&mut a, &h, request("busy", Resource::Memory, 1e9, 0)).unwrap_err();
    assert!(err.starts_with("duration_s:"), "{err}");

    // A request for a workload that then vanishes waits for it.
    let idle = ask(&mut a, &h, request("idle", Resource::Memory, 1e9, 600)).unwrap();
    assert_eq!(
        view_request(&h.view(), idle.id).unwrap().state,
        RequestState::Granted
    );
    a.observer_mut().found.retain(|f| f.id.0 != "idle");
    drive(&mut a, now + 30_000);
    let v = h.view();
    let got = view_request(&v, idle.id).unwrap();
    assert_eq!(got.state, RequestState::Queued, "{got:?}");
    assert!(got.reason.contains("'idle'"), "{}", got.reason);
    assert!(a.counters().plan_errors == 0);

    let st = sink.0.borrow();
    let actions: Vec<&str> = st
        .audit
        .iter()
        .filter(|r| r.action.starts_with("request."))
        .map(|r| r.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "request.create",
            "request.expire",
            "request.create",
            "request.cancel",
            "request.create"
        ]
    );
    let created = st
        .audit
        .iter()
        .find(|r| r.action == "request.create")
        .unwrap();
    assert_eq!(created.actor, "ops");
    assert_eq!(created.target, format!("request/{}", r.id));
    assert!(created.reason.contains("load test"), "{}", created.reason);
}

#[test]
fn a_reference_policy_refuses_requests() {
    let mut c = config(Mode::Recommend);
    c.agent.policy = "vpa".into();
    let (mut a, handle) = connected_with(
        resolve(c, &MACHINE).unwrap(),
        FakeObserver::new(),
        FakeSink::default(),
        None,
    );
    a.start();
    drive(&mut a, T0 + 15_000);
    let err = ask(&mut a, &handle, request("busy", Resource::Cpu, 1.8, 60)).unwrap_err();
    assert!(err.contains("reference policy"), "{err}");
    assert!(err.contains("vpa"), "{err}");
    assert!(handle.view().requests.is_empty());
}

#[test]
fn a_leak_like_ramp_in_memory_shows_as_a_memory_leak_anomaly() {
    // One sample and one rollup step a minute; a day and a bit of a flat
    // 1 GiB (the leak detector compares with the previous day), then
    // `leaky` grows 200 MiB an hour without falling back.
    let mut c = config(Mode::Recommend);
    c.agent.sample_interval = prescient_agent::config::Interval::ms(60_000);
    c.agent.forecast_step = prescient_agent::config::Interval::ms(60_000);
    c.agent.plan_interval = prescient_agent::config::Interval::ms(600_000);
    c.store.flush_interval = prescient_agent::config::Interval::ms(600_000);
    c.store.checkpoint_interval = prescient_agent::config::Interval::ms(3_600_000);
    let ramp_from = T0 + 25 * 3_600_000;
    let usage = move |cg: &str, ts: TimestampMs| {
        let (cpu, mem) = steady(cg, ts);
        if cg == "/busy" && ts >= ramp_from {
            let hours = (ts - ramp_from) as f64 / 3_600_000.0;
            (cpu, mem + hours * 200.0 * (1 << 20) as f64)
        } else {
            // A little noise, the same every day.
            let minute = (ts / 60_000) % 7;
            (cpu, mem + minute as f64 * (1 << 20) as f64)
        }
    };
    let (mut a, handle) = connected_with(
        c,
        FakeObserver::with_usage(usage),
        FakeSink::default(),
        None,
    );
    a.start();
    drive(&mut a, ramp_from);
    let v = handle.view();
    assert!(
        v.anomalies.iter().all(|x| x.kind != "memory_leak"),
        "no leak while flat: {:?}",
        v.anomalies
    );
    drive(&mut a, ramp_from + 8 * 3_600_000);
    let v = handle.view();
    let leak = v
        .anomalies
        .iter()
        .find(|x| x.kind == "memory_leak")
        .unwrap_or_else(|| panic!("no leak found: {:?}", v.anomalies));
    assert_eq!(leak.workload, "busy");
    assert_eq!(leak.resource, Resource::Memory);
    assert!(leak.at > ramp_from);
    assert!(leak.reason.contains("grew"), "{}", leak.reason);
    assert!(
        v.anomalies
            .iter()
            .filter(|x| x.kind == "memory_leak")
            .all(|x| x.workload == "busy"),
        "{:?}",
        v.anomalies
    );
    assert!(v.anomalies.len() <= prescient_agent::agent::MAX_ANOMALIES);
}
