//! What publishing the live view costs the loop: [`Agent::live_view`]
//! (everything the API server reads, built from what the agent holds)
//! for 10 and 200 workloads, on fakes (a clock stepped by hand, scripted
//! usage, a store that keeps nothing) after 10 minutes of fake time, so
//! that every series has forecasts, weights and calibration.
//!
//! `cargo bench -p prescient-agent --bench live_view`

use std::collections::BTreeMap;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use prescient_agent::config::Config;
use prescient_agent::control::Control;
use prescient_agent::{
    Agent, Clock, Found, Machine, Observer, Signals, Sink, SinkError, Usage, resolve,
};
use prescient_core::{DemandProfile, HostId, Plan, Sample, SeriesKey, TimestampMs, WorkloadId};
use prescient_linux::CgroupPath;
use prescient_linux::enforce::{AuditRecord, FakeEnforcer};

const T0: TimestampMs = 1_700_000_000_000;

struct StepClock(TimestampMs);

impl Clock for StepClock {
    fn now_ms(&self) -> TimestampMs {
        self.0
    }
    fn wait_until(&mut self, t: TimestampMs, _: &Signals) {
        self.0 = self.0.max(t);
    }
}

/// `n` workloads, each with its own level and a wobble.
struct Scripted(Vec<Found>);

impl Observer for Scripted {
    fn discover(
        &mut self,
        _: &[prescient_agent::config::WorkloadConfig],
        _: bool,
    ) -> Result<Vec<Found>, String> {
        Ok(self.0.clone())
    }
    fn observe(&mut self, cgroups: &[CgroupPath], ts: TimestampMs) -> Vec<(CgroupPath, Usage)> {
        cgroups
            .iter()
            .enumerate()
            .map(|(i, cg)| {
                let wobble = ((ts / 1000 + i as i64) % 7) as f64 * 0.01;
                (
                    cg.clone(),
                    Usage {
                        cpu_cores: Some(0.05 + 0.01 * (i % 10) as f64 + wobble),
                        memory_bytes: Some(((64 + i % 32) << 20) as f64),
                        ..Usage::default()
                    },
                )
            })
            .collect()
    }
}

/// Keeps nothing.
struct NullSink;

impl Sink for NullSink {
    fn ingest(&mut self, _: &[(SeriesKey, Sample)]) -> Result<(), SinkError> {
        Ok(())
    }
    fn save_plan(&mut self, _: &Plan) -> Result<(), SinkError> {
        Ok(())
    }
    fn append_audit(&mut self, _: &AuditRecord) -> Result<(), SinkError> {
        Ok(())
    }
    fn save_profile(
        &mut self,
        _: &SeriesKey,
        _: TimestampMs,
        _: &DemandProfile,
    ) -> Result<(), SinkError> {
        Ok(())
    }
    fn save_state(&mut self, _: &str, _: u32, _: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }
    fn load_state(&mut self, _: &str) -> Result<Option<(u32, Vec<u8>)>, SinkError> {
        Ok(None)
    }
    fn latest_plan(&mut self, _: &HostId) -> Result<Option<Plan>, SinkError> {
        Ok(None)
    }
    fn set_workload_meta(
        &mut self,
        _: &HostId,
        _: &Found,
        _: TimestampMs,
    ) -> Result<(), SinkError> {
        Ok(())
    }
    fn events(&mut self) -> Result<Vec<prescient_store::Event>, SinkError> {
        Ok(Vec::new())
    }
}

type BenchAgent = Agent<Scripted, NullSink, FakeEnforcer, StepClock>;

fn agent(n: usize) -> BenchAgent {
    let mut text = String::from(
        "[agent]\nhost = \"bench\"\nsample_interval = \"1s\"\nforecast_step = \"5s\"\nplan_interval = \"30s\"\nplan_steps = 6\n[store]\npath = \"/nonexistent/unused.db\"\n",
    );
    let mut found = Vec::new();
    for i in 0..n {
        text.push_str(&format!(
            "[[workload]]\nname = \"w{i}\"\ncgroup = \"/w{i}\"\n"
        ));
        found.push(Found {
            id: WorkloadId(format!("w{i}")),
            selector: format!("w{i}"),
            cgroup: CgroupPath::parse(&format!("/w{i}")).unwrap(),
            labels: BTreeMap::new(),
        });
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
    let (_handle, port) = Control::new();
    let mut a = Agent::new(
        config,
        machine,
        Scripted(found),
        NullSink,
        None,
        StepClock(T0),
    );
    a.set_control(port);
    a.start();
    loop {
        let wake = a.tick();
        if wake > T0 + 600_000 {
            break;
        }
        a.clock_mut().0 = wake;
    }
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
