//! A restart through the real store: an agent stopped mid-run and started
//! again over the same SQLite file forecasts bit for bit as one that ran
//! through, with the learned model's forest, the anomaly detectors and the
//! lead-lag detectors resumed too.

mod fakes;

use prescient_agent::config::{Config, Interval, Mode};
use prescient_agent::{Agent, StoreSink};
use prescient_core::{Resource, TimestampMs, WorkloadId};
use prescient_forecast::{DEFAULT_LEVELS, ModelKind};
use prescient_linux::enforce::FakeEnforcer;

use fakes::*;

const MINUTE: i64 = 60_000;

type StoreAgent = Agent<FakeObserver, StoreSink, FakeEnforcer, FakeClock>;

fn cfg(path: &std::path::Path) -> Config {
    let mut c = config(Mode::Recommend);
    c.store.path = path.to_path_buf();
    c.agent.sample_interval = Interval::secs(5);
    c.forecast.min_history = Interval::secs(60);
    c.forecast.retrain_interval = Interval::secs(600);
    c
}

/// A daily cycle with noise (a function of time: the fakes' usage is).
fn usage(cg: &str, ts: TimestampMs) -> (f64, f64) {
    let mut z = (ts as u64) ^ if cg == "/busy" { 0x51 } else { 0x77 };
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let noise = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
    let tod = (ts % 86_400_000) as f64 / 86_400_000.0;
    let cycle = 1.0 + 0.3 * (tod * std::f64::consts::TAU).sin();
    let scale = if cg == "/busy" { 1.2 } else { 0.3 };
    (
        scale * cycle + 0.05 * noise,
        scale * GIB as f64 * (cycle + 0.01 * noise),
    )
}

fn agent(path: &std::path::Path, now: TimestampMs, source: &FakeTraining) -> StoreAgent {
    let mut clk = clock();
    clk.now = now;
    let mut a = Agent::new(
        cfg(path),
        MACHINE,
        FakeObserver::with_usage(usage),
        StoreSink::open(path).unwrap(),
        None,
        clk,
    );
    a.set_training_source(source.handle());
    a.set_train_config(small_training());
    a
}

/// Ticks until `until`, waiting for each training the loop starts before
/// the next tick (so that both runs put forests in use at the same step).
fn drive_store(a: &mut StoreAgent, until: TimestampMs) {
    loop {
        let wake = a.tick();
        a.await_training();
        if wake > until {
            break;
        }
        a.clock_mut().now = wake;
    }
}

#[test]
fn a_restart_through_the_store_forecasts_bit_for_bit_as_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.db"), dir.path().join("two.db"));
    let source = FakeTraining::new();
    // Trained at 1 minute and again at 11 (retrain every 10 minutes); the
    // stop is between the two, after a sample (so no step is half-seen).
    let (stop, end) = (T0 + 7 * MINUTE, T0 + 16 * MINUTE);

    let mut whole = agent(&one, T0, &source);
    whole.start();
    drive_store(&mut whole, end);
    assert_eq!(whole.counters().forests_trained, 2);

    let mut first = agent(&two, T0, &source);
    first.start();
    drive_store(&mut first, stop);
    assert_eq!(first.counters().forests_trained, 1);
    first.shutdown();
    drop(first);
    // Started again over the same file, at the next sample.
    let mut second = agent(&two, stop + 5_000, &source);
    second.start();
    assert!(
        second.forest().is_some(),
        "the forest is resumed from the store"
    );
    drive_store(&mut second, end);
    assert_eq!(second.counters().resumed_forecasters, 4);
    assert_eq!(second.counters().forests_trained, 1, "retrained when due");
    assert_eq!(whole.forest(), second.forest());

    let start = (end / 5_000 + 1) * 5_000;
    for name in ["busy", "idle"] {
        for r in [Resource::Cpu, Resource::Memory] {
            let id = WorkloadId(name.into());
            let (a, b) = (
                whole.forecaster(&id, r).unwrap(),
                second.forecaster(&id, r).unwrap(),
            );
            assert!(a.model_kinds().contains(&ModelKind::Learned));
            assert!(b.forest().is_some(), "{name} {r}: the forest is attached");
            assert_eq!(a.observations(), b.observations(), "{name} {r}");
            let (fa, fb) = (
                a.forecast(start, 8_640, &DEFAULT_LEVELS).unwrap(),
                b.forecast(start, 8_640, &DEFAULT_LEVELS).unwrap(),
            );
            for (h, (qa, qb)) in fa.steps().zip(fb.steps()).enumerate() {
                let bits = |q: &prescient_core::Quantiles| -> Vec<u64> {
                    q.values().iter().map(|v| v.to_bits()).collect()
                };
                assert_eq!(bits(&qa), bits(&qb), "{name} {r} step {h}");
            }
            let mut oa = [0.0; 3];
            let mut ob = [0.0; 3];
            a.one_step(&[0.5, 0.95, 0.999], &mut oa);
            b.one_step(&[0.5, 0.95, 0.999], &mut ob);
            assert_eq!(oa.map(f64::to_bits), ob.map(f64::to_bits), "{name} {r}");
            assert!(a.to_bytes() == b.to_bytes(), "{name} {r}: the whole state");
        }
    }
    // The plans made from them at the same moment agree too. (A restart
    // shifts the phase of the plan interval: each plans 10 s after its
    // start; both sampled last at `end`.)
    for a in [&mut whole, &mut second] {
        assert_eq!(a.clock_mut().now, end);
        a.replan();
        a.tick();
    }
    assert_eq!(
        whole.plans().last().map(|p| &p.entries),
        second.plans().last().map(|p| &p.entries)
    );
}
