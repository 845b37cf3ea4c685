//! What the agent's forecasters use beyond their own series, on the fake
//! clock: the learned model (trained on a background thread on a schedule,
//! put in use by every forecaster, saved, retried after a failure), a
//! forecaster reset at a level shift, and the anomaly detectors kept
//! across a restart.

mod fakes;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prescient_agent::Agent;
use prescient_agent::config::{Config, Interval, Mode};
use prescient_core::{Resource, TimestampMs, WorkloadId};
use prescient_forecast::ModelKind;
use prescient_forecast::anomaly::{AnomalyConfig, LeakConfig};
use prescient_linux::enforce::FakeEnforcer;

use fakes::*;

const MINUTE: i64 = 60_000;

fn w(name: &str) -> WorkloadId {
    WorkloadId(name.into())
}

/// The fakes' configuration, sampling once a step (5 s), with the learned
/// model's schedule short enough for a test.
fn forecast_config() -> Config {
    let mut c = config(Mode::Recommend);
    c.agent.sample_interval = Interval::secs(5);
    c.forecast.min_history = Interval::secs(60);
    c.forecast.retrain_interval = Interval::secs(600);
    c.forecast.retry_interval = Interval::secs(120);
    c
}

fn agent_with(c: Config, observer: FakeObserver, sink: &FakeSink, now: TimestampMs) -> TestAgent {
    let mut clk = clock();
    clk.now = now;
    Agent::new(
        c,
        MACHINE,
        observer,
        sink.clone(),
        None::<FakeEnforcer>,
        clk,
    )
}

/// Ticks until `until`; a training the loop started is waited for before
/// the next tick, so that when its forest comes into use does not depend
/// on how fast the thread is.
fn drive_training(a: &mut TestAgent, until: TimestampMs) -> usize {
    let mut trained = 0;
    loop {
        let wake = a.tick();
        trained += usize::from(a.await_training());
        if wake > until {
            break;
        }
        a.clock_mut().now = wake;
    }
    trained
}

/// Every forecaster of `a` forecasts with the agent's forest.
fn all_use_the_forest(a: &TestAgent) -> bool {
    let Some(forest) = a.forest() else {
        return false;
    };
    ["busy", "idle"].iter().all(|name| {
        [Resource::Cpu, Resource::Memory].iter().all(|&r| {
            a.forecaster(&w(name), r)
                .and_then(|f| f.forest())
                .is_some_and(|f| Arc::ptr_eq(&f, &forest))
        })
    })
}

#[test]
fn the_learned_model_trains_on_schedule_reaches_every_forecaster_and_survives_failures() {
    let sink = FakeSink::default();
    let source = FakeTraining::new();
    let mut a = agent_with(forecast_config(), FakeObserver::new(), &sink, T0);
    a.set_training_source(source.handle());
    a.set_train_config(small_training());
    a.start();
    // Before a minute of history: nothing asked.
    assert_eq!(drive_training(&mut a, T0 + 50_000), 0);
    assert!(source.calls.lock().unwrap().is_empty());
    assert!(a.forest().is_none());
    let f = a.forecaster(&w("busy"), Resource::Cpu).unwrap();
    assert!(f.model_kinds().contains(&ModelKind::Learned));
    assert!(f.forest().is_none());

    // A minute learnt (12 steps): trained on the thread, then in use.
    assert_eq!(drive_training(&mut a, T0 + 70_000), 1);
    let first = a.counters().clone();
    assert_eq!(first.forests_trained, 1);
    let calls = source.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (keys, from, to) = &calls[0];
    assert_eq!(keys.len(), 4, "busy and idle, cpu and memory: {keys:?}");
    assert_eq!(to - from, 14 * 86_400_000, "the training window");
    let asked_at = *to;
    assert!(all_use_the_forest(&a));
    assert_eq!(a.next_training(), asked_at + 10 * MINUTE);
    let forest = a.forest().unwrap();
    assert_eq!(forest.info().series, 4);

    // The next training comes when due, not before.
    drive_training(&mut a, asked_at + 10 * MINUTE - 5_000);
    assert_eq!(source.calls.lock().unwrap().len(), 1);
    assert_eq!(drive_training(&mut a, asked_at + 10 * MINUTE), 1);
    assert_eq!(a.counters().forests_trained, 2);
    assert!(all_use_the_forest(&a));

    // A failure: logged, counted, retried after retry_interval; the forest
    // in use stays, and the loop goes on planning.
    source.fail.store(true, Ordering::SeqCst);
    let due = a.next_training();
    let plans = a.counters().plans;
    assert_eq!(drive_training(&mut a, due), 1);
    assert_eq!(a.counters().training_failures, 1);
    assert_eq!(a.counters().forests_trained, 2);
    assert!(all_use_the_forest(&a));
    let retry = a.next_training();
    assert_eq!(retry, a.clock_mut().now + 2 * MINUTE);
    drive_training(&mut a, retry - 5_000);
    assert_eq!(source.calls.lock().unwrap().len(), 4 - 1);
    assert_eq!(drive_training(&mut a, retry), 1);
    assert_eq!(a.counters().training_failures, 2);
    // Recovered: the next retry trains again.
    source.fail.store(false, Ordering::SeqCst);
    let retry = a.next_training();
    assert_eq!(drive_training(&mut a, retry), 1);
    assert_eq!(a.counters().forests_trained, 3);
    assert!(a.counters().plans > plans + 10, "planning went on");

    // Audited (each success), and the forest saved for a restart.
    a.shutdown();
    let st = sink.0.borrow();
    let audit: Vec<_> = st
        .audit
        .iter()
        .filter(|r| r.action == "forecast.learned")
        .collect();
    assert_eq!(audit.len(), 3);
    assert!(
        audit[0].after.as_deref().unwrap().contains("from 4 series"),
        "{:?}",
        audit[0]
    );
    assert!(st.states.contains_key("agent/forest/h1"));
}

#[test]
fn a_restart_forecasts_with_the_saved_forest_and_retrains_when_due() {
    let sink = FakeSink::default();
    let source = FakeTraining::new();
    let mut a = agent_with(forecast_config(), FakeObserver::new(), &sink, T0);
    a.set_training_source(source.handle());
    a.set_train_config(small_training());
    a.start();
    assert_eq!(drive_training(&mut a, T0 + 70_000), 1);
    let trained = a.forest().unwrap();
    let due = a.next_training();
    a.shutdown();

    // A new agent over the same store: the forest is in use from the first
    // step, without training; the next training is when it was due.
    let later = T0 + 3 * MINUTE;
    let mut b = agent_with(forecast_config(), FakeObserver::new(), &sink, later);
    b.set_training_source(source.handle());
    b.set_train_config(small_training());
    b.start();
    assert_eq!(b.forest().as_deref(), Some(&*trained));
    assert_eq!(b.next_training(), due);
    assert_eq!(drive_training(&mut b, later + 30_000), 0);
    assert!(all_use_the_forest(&b));
    assert_eq!(source.calls.lock().unwrap().len(), 1);
    assert_eq!(drive_training(&mut b, due), 1);
    assert_eq!(source.calls.lock().unwrap().len(), 2);

    // Without the learned model configured, no training and no forest.
    let mut c = forecast_config();
    c.forecast.learned = false;
    let quiet = FakeTraining::new();
    let mut off = agent_with(c, FakeObserver::new(), &FakeSink::default(), T0);
    off.set_training_source(quiet.handle());
    off.start();
    assert_eq!(drive_training(&mut off, T0 + 20 * MINUTE), 0);
    assert!(quiet.calls.lock().unwrap().is_empty());
    let f = off.forecaster(&w("busy"), Resource::Cpu).unwrap();
    assert!(!f.model_kinds().contains(&ModelKind::Learned));
}

#[test]
fn a_forecaster_saved_before_the_learned_model_gains_it_on_resume() {
    let sink = FakeSink::default();
    let mut c = forecast_config();
    c.forecast.learned = false;
    let mut a = agent_with(c, FakeObserver::new(), &sink, T0);
    a.start();
    drive(&mut a, T0 + 60_000);
    a.shutdown();
    let mut b = agent_with(forecast_config(), FakeObserver::new(), &sink, T0 + 65_000);
    b.set_training_source(FakeTraining::new().handle());
    b.start();
    drive(&mut b, T0 + 70_000);
    let f = b.forecaster(&w("busy"), Resource::Cpu).unwrap();
    assert_eq!(b.counters().resumed_forecasters, 4);
    assert!(f.observations() >= 12, "resumed: {}", f.observations());
    assert!(f.model_kinds().contains(&ModelKind::Learned));
}

/// Noise in [-1, 1] from a time (a hash: the fakes' usage is a function).
fn noise(ts: TimestampMs) -> f64 {
    let mut z = (ts as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

#[test]
fn a_level_shift_resets_the_forecaster_and_is_audited_with_its_reason() {
    let shift_at = T0 + 40 * MINUTE;
    let usage = move |cg: &str, ts: TimestampMs| {
        let cpu = if cg == "/busy" && ts >= shift_at {
            1.5
        } else {
            0.5
        };
        (cpu + 0.02 * noise(ts), GIB as f64)
    };
    let run = |reset: bool| {
        let sink = FakeSink::default();
        let mut c = forecast_config();
        c.forecast.learned = false;
        c.forecast.reset_on_level_shift = reset;
        let mut a = agent_with(c, FakeObserver::with_usage(usage), &sink, T0);
        a.start();
        drive(&mut a, shift_at + 10 * MINUTE);
        // What the decaying histogram (24 h half-life) says of the next
        // step: the new level only if it forgot the old one.
        let next = a.clock_mut().now + 5_000;
        let median = a
            .forecaster(&w("busy"), Resource::Cpu)
            .unwrap()
            .model_forecast(ModelKind::Histogram, next, 1, &[0.5])
            .unwrap()
            .unwrap()
            .step(0)
            .unwrap()
            .values()[0];
        a.shutdown();
        (a.counters().forecaster_resets, sink, median)
    };
    let (resets, sink, histogram) = run(true);
    assert_eq!(resets, 1);
    let st = sink.0.borrow();
    let audit: Vec<_> = st
        .audit
        .iter()
        .filter(|r| r.action == "forecast.reset")
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    let r = audit[0];
    assert_eq!(r.target, "busy/cpu");
    assert!(
        r.ts > shift_at && r.ts <= shift_at + 5 * MINUTE,
        "{}",
        r.ts - shift_at
    );
    assert!(
        r.reason.starts_with("level shift: cpu level rose by 1"),
        "{}",
        r.reason
    );
    let after = r.after.as_deref().unwrap();
    assert!(
        after.contains("histogram, recent restarted") && after.contains("seasonal"),
        "{after}"
    );
    // Without it, the shift is seen (the anomaly) but nothing is reset.
    let (resets, sink, kept) = run(false);
    eprintln!("histogram median 10 minutes after the shift: reset {histogram:.3}, kept {kept:.3}");
    assert_eq!(resets, 0);
    assert!(
        !sink
            .0
            .borrow()
            .audit
            .iter()
            .any(|r| r.action == "forecast.reset")
    );
    // The histogram forgot the old level when told; untold, 40 minutes at
    // 0.5 core outweigh 10 at 1.5 in its day-long memory.
    assert!((histogram - 1.5).abs() < 0.1, "reset: {histogram}");
    assert!(kept < 0.6, "kept: {kept}");
}

#[test]
fn a_restart_keeps_the_anomaly_detectors_so_a_leak_under_way_is_still_found() {
    // Memory flat at 1 GiB, then growing 20 MiB a minute from 20 minutes
    // on; the leak detector watches 10-minute windows.
    let leak_from = T0 + 20 * MINUTE;
    let usage = move |_: &str, ts: TimestampMs| {
        let grown = (ts - leak_from).max(0) as f64 / MINUTE as f64 * 20.0 * (1 << 20) as f64;
        (0.5, GIB as f64 + grown)
    };
    let leak = AnomalyConfig {
        leak: LeakConfig {
            window_ms: 10 * MINUTE,
            buckets: 10,
            require_daily_reference: false,
            ..LeakConfig::default()
        },
        ..AnomalyConfig::default()
    };
    let end = leak_from + 30 * MINUTE;
    // When each agent first reported busy's leak.
    let found = |a: &TestAgent| {
        a.live_view(0)
            .anomalies
            .iter()
            .find(|x| x.kind == "memory_leak" && x.workload == "busy")
            .map(|x| x.at)
    };
    let fresh = |sink: &FakeSink, now: TimestampMs| {
        let mut c = forecast_config();
        c.forecast.learned = false;
        let mut a = agent_with(c, FakeObserver::with_usage(usage), sink, now);
        a.set_anomaly_config(leak.clone());
        a
    };
    let mut whole = fresh(&FakeSink::default(), T0);
    whole.start();
    drive(&mut whole, end);
    let at = found(&whole).expect("the leak is found");
    eprintln!("leak found {} s in", (at - leak_from) / 1000);
    assert!(
        at > leak_from + 3 * MINUTE,
        "found {} ms in",
        at - leak_from
    );

    // Stopped 3 minutes into the leak, resumed from the store.
    let restart = leak_from + 3 * MINUTE;
    let sink = FakeSink::default();
    let mut a = fresh(&sink, T0);
    a.start();
    drive(&mut a, restart);
    a.shutdown();
    let mut b = fresh(&sink, restart + 1);
    b.start();
    drive(&mut b, end);
    assert_eq!(b.counters().resumed_forecasters, 4);
    assert_eq!(
        found(&b),
        Some(at),
        "the resumed detector finds it when the uninterrupted one does"
    );

    // The same restart from what an agent before version 2 saved (the
    // forecaster alone): the leak is found only a whole window later.
    let old = FakeSink::default();
    let mut a = fresh(&old, T0);
    a.start();
    drive(&mut a, restart);
    a.shutdown();
    for (k, (v, blob)) in old.0.borrow_mut().states.iter_mut() {
        if k.starts_with("forecast/") {
            let (f, _) = prescient_agent::persist::decode(*v, blob).unwrap();
            *v = prescient_agent::persist::FORECASTER_ONLY_VERSION;
            *blob = f.to_bytes();
        }
    }
    let mut c = fresh(&old, restart + 1);
    c.start();
    drive(&mut c, end);
    assert_eq!(c.counters().resumed_forecasters, 4, "version 1 still loads");
    let late = found(&c).expect("found after a window of its own");
    eprintln!(
        "without the detector's state: found {} s after the restart",
        (late - restart) / 1000
    );
    assert!(
        late >= at + 3 * MINUTE,
        "found {} ms after the restart",
        late - restart
    );
}

/// Deterministic standard normal draws.
struct Rng(u64);

impl Rng {
    fn normal(&mut self) -> f64 {
        let mut uniform = || {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let (u, v) = (uniform().max(1e-12), uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[test]
fn a_follower_gets_its_forecast_raised_when_its_leader_rises_before_it_does() {
    // busy's CPU is a random walk; idle follows it 3 steps (15 s) later,
    // with noise of its own. At step RISE busy rises by 0.5 core and stays;
    // idle rises 3 steps later.
    const STEPS: usize = 1300;
    const RISE: usize = 1000;
    const LAG: usize = 3;
    let mut rng = Rng(17);
    let mut lead = vec![1.0f64];
    for t in 1..STEPS {
        let last = lead[t - 1];
        let jump = if t == RISE { 0.5 } else { 0.0 };
        // Reflected at 0.3 so that demand stays positive.
        lead.push((last + 0.05 * rng.normal() + jump).max(0.3));
    }
    let follow: Vec<f64> = (0..STEPS)
        .map(|t| 0.8 * lead[t.saturating_sub(LAG)] + 0.2 + 0.01 * rng.normal())
        .collect();
    let will_be = follow[RISE + LAG];
    let last_seen = follow[RISE + 1];
    assert!(last_seen < will_be - 0.3, "idle has not risen yet");
    let (lead, follow) = (Arc::new(lead), Arc::new(follow));
    let usage = move |cg: &str, ts: TimestampMs| {
        let t = usize::try_from((ts - T0) / 5_000)
            .unwrap_or(0)
            .min(STEPS - 1);
        let cpu = if cg == "/busy" { lead[t] } else { follow[t] };
        (cpu, GIB as f64)
    };
    let sink = FakeSink::default();
    let agent = |lead_lag: bool, sink: &FakeSink, now: TimestampMs| {
        let mut c = forecast_config();
        c.forecast.learned = false;
        c.forecast.lead_lag = lead_lag;
        // Room for both: allocations follow the forecasts.
        c.pools[0].cpu = Some(8.0);
        let mut a = agent_with(c, FakeObserver::with_usage(usage.clone()), sink, now);
        a.start();
        a
    };
    let (mut on, mut off) = (
        agent(true, &sink, T0),
        agent(false, &FakeSink::default(), T0),
    );
    let at = |step: usize| T0 + step as i64 * 5_000;
    // Up to the tick before the one that learns busy's rise.
    drive(&mut on, at(RISE));
    drive(&mut off, at(RISE));
    let idle_cpu = |a: &TestAgent| a.forecast(&w("idle"), Resource::Cpu).unwrap();
    let ll = on.leadlag(Resource::Cpu).expect("fed every step");
    let lead = ll
        .leader_of(&prescient_core::SeriesKey::new("h1", "idle", Resource::Cpu))
        .expect("idle's leader is trusted by now");
    assert_eq!(lead.leader.workload.0, "busy");
    assert_eq!(lead.lag, LAG);
    assert!(off.leadlag(Resource::Cpu).is_none(), "off: not even fed");
    // The tick at RISE + 2 learns the step RISE + 1 and plans from RISE + 3,
    // idle's first step up; idle itself has not moved yet.
    drive(&mut on, at(RISE + 2));
    drive(&mut off, at(RISE + 2));
    assert_eq!(on.counters().plans, off.counters().plans);
    let (raised, plain) = (idle_cpu(&on), idle_cpu(&off));
    eprintln!(
        "idle's forecast of step {}: {raised:.3} with lead-lag, {plain:.3} without; its last step {last_seen:.3}, that step {will_be:.3}",
        RISE + 3,
    );
    // Raised by what busy's rise says (the detector clips a move at 4 of
    // its usual sizes: 0.8 x 4 x 0.05 = 0.16 core). (The forecasters
    // themselves lag this fast a walk: their forecast is below idle's last
    // step either way.)
    assert!(raised > plain + 0.1, "{raised} vs {plain}");
    let (more, less) = (
        on.allocation(&w("idle"), Resource::Cpu).unwrap(),
        off.allocation(&w("idle"), Resource::Cpu).unwrap(),
    );
    assert!(more > less, "the plan gives idle more: {more} vs {less}");
    // What was learnt of the pair survives a restart.
    on.shutdown();
    let again = agent(true, &sink, at(RISE + 3));
    let lead = again
        .leadlag(Resource::Cpu)
        .and_then(|ll| ll.leader_of(&prescient_core::SeriesKey::new("h1", "idle", Resource::Cpu)));
    assert_eq!(
        lead.map(|l| (l.leader.workload.0, l.lag)),
        Some(("busy".to_string(), LAG))
    );
    // The plan says why.
    let plan = on.plans().last().unwrap();
    let entry = plan
        .entries
        .iter()
        .find(|e| e.workload.0 == "idle" && e.resource == Resource::Cpu)
        .unwrap();
    assert!(
        entry
            .reason
            .contains("following busy, whose moves it follows 3 step(s) later"),
        "{}",
        entry.reason
    );
}
