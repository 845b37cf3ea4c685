//! What publishing the live view costs the loop: [`Agent::live_view`]
//! (everything the API server reads, built from what the agent holds)
//! for 10 and 200 workloads, on the tests' fakes (`tests/fakes`: a clock
//! stepped by hand, scripted usage, an in-memory store) after 10 minutes
//! of fake time, so that every series has forecasts, weights and
//! calibration.
//!
//! `cargo bench -p prescient-agent --bench live_view`

#[path = "../tests/fakes/mod.rs"]
mod fakes;

use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use prescient_agent::config::Config;
use prescient_agent::control::Control;
use prescient_agent::{Agent, Machine, resolve};
use prescient_core::TimestampMs;
use prescient_linux::enforce::FakeEnforcer;

use fakes::{FakeClock, FakeObserver, FakeSink, T0, clock, drive, found};

/// Workload `/w<i>`'s usage at `ts`: its own level and a wobble.
fn scripted(cgroup: &str, ts: TimestampMs) -> (f64, f64) {
    let i: usize = cgroup.trim_start_matches("/w").parse().unwrap_or(0);
    let wobble = ((ts / 1000 + i as i64) % 7) as f64 * 0.01;
    (
        0.05 + 0.01 * (i % 10) as f64 + wobble,
        ((64 + i % 32) << 20) as f64,
    )
}

type BenchAgent = Agent<FakeObserver, FakeSink, FakeEnforcer, FakeClock>;

/// An agent of `n` workloads after 10 minutes of fake time.
fn agent(n: usize) -> BenchAgent {
    let mut text = String::from(
        "[agent]\nhost = \"bench\"\nsample_interval = \"1s\"\nforecast_step = \"5s\"\nplan_interval = \"30s\"\nplan_steps = 6\n[store]\npath = \"/nonexistent/unused.db\"\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[workload]]\nname = \"w{i}\"\ncgroup = \"/w{i}\"\n"
        ));
    }
    let machine = Machine {
        cpus: 64.0,
        memory_bytes: 256 << 30,
    };
    let config = resolve(
        Config::from_toml(&text, Path::new("bench.toml")).unwrap(),
        &machine,
    )
    .unwrap();
    let observer = FakeObserver {
        found: (0..n).map(|i| found(&format!("w{i}"))).collect(),
        ..FakeObserver::with_usage(scripted)
    };
    let (_handle, port) = Control::new();
    let mut a = Agent::new(
        config,
        machine,
        observer,
        FakeSink::default(),
        None,
        clock(),
    );
    a.set_control(port);
    a.start();
    drive(&mut a, T0 + 600_000);
    a
}

fn live_view(c: &mut Criterion) {
    for n in [10, 200] {
        let a = agent(n);
        let v = a.live_view(T0 + 600_000);
        assert_eq!(v.workloads.len(), n);
        assert!(
            v.workloads
                .iter()
                .all(|w| w.resources.iter().all(|r| !r.weights.is_empty()))
        );
        c.bench_function(&format!("live_view/{n}_workloads"), |b| {
            b.iter(|| a.live_view(T0 + 600_000))
        });
    }
}

criterion_group!(benches, live_view);
criterion_main!(benches);
