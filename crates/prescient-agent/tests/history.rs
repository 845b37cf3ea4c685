//! History for new workloads: a new series asks its history source for
//! the weeks before and learns them on a background thread; the loop goes
//! on meanwhile and swaps the trained forecaster in. On a fake source,
//! and on a real Prometheus on loopback that scraped a process of the test.

mod fakes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prescient_agent::history::HistorySource;
use prescient_agent::ports::wall_ms;
use prescient_agent::{Agent, config::Mode};
use prescient_core::{Resource, TimestampMs, WorkloadId};
use prescient_linux::enforce::FakeEnforcer;
use prescient_prometheus::testing::{Prometheus, TinyServer};

use fakes::*;

/// Answers `busy`'s queries with a day of a known pattern; fails others.
struct FakeHistory {
    queries: Arc<Mutex<Vec<String>>>,
}

impl HistorySource for FakeHistory {
    fn range(
        &self,
        query: &str,
        start: TimestampMs,
        end: TimestampMs,
        step_ms: i64,
    ) -> Result<Vec<(TimestampMs, f64)>, String> {
        self.queries.lock().unwrap().push(query.to_string());
        if !query.contains("\"busy\"") {
            return Err("no series matched".into());
        }
        let mut t = start.div_euclid(step_ms) * step_ms + step_ms;
        let mut out = Vec::new();
        while t <= end {
            let day = (t % 86_400_000) as f64 / 86_400_000.0;
            out.push((t, 1.0 + 0.5 * (day * std::f64::consts::TAU).sin()));
            t += step_ms;
        }
        Ok(out)
    }
}

fn wait_for_history<O, S, E, C>(
    a: &mut Agent<O, S, E, C>,
    w: &str,
    r: Resource,
    at_least: u64,
    mut step: impl FnMut(&mut Agent<O, S, E, C>),
) -> u64
where
    O: prescient_agent::Observer,
    S: prescient_agent::Sink,
    E: prescient_linux::Enforcer,
    C: prescient_agent::Clock,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        step(a);
        let n = a.observations(&WorkloadId(w.into()), r).unwrap_or(0);
        if n >= at_least || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_new_series_learns_its_history_and_one_without_keeps_going() {
    let mut c = config(Mode::Recommend);
    c.history.since = prescient_agent::config::Interval::secs(6 * 3600);
    c.history.cpu_query = Some(r#"cpu_cores{workload="{workload}"}"#.into());
    let sink = FakeSink::default();
    let mut a = Agent::new(
        c,
        MACHINE,
        FakeObserver::new(),
        sink.clone(),
        None::<FakeEnforcer>,
        clock(),
    );
    let queries = Arc::new(Mutex::new(Vec::new()));
    a.set_history_source(Box::new(FakeHistory {
        queries: Arc::clone(&queries),
    }));
    a.start();
    drive(&mut a, T0 + 20_000);
    // Six hours at the 5 s forecast step: 4,320 steps, learnt on the
    // fetcher's thread, then the steps seen since.
    let mut until = T0 + 20_000;
    let n = wait_for_history(&mut a, "busy", Resource::Cpu, 4_320, |a| {
        until += 1_000;
        drive(a, until);
    });
    assert!(n >= 4_320, "busy learnt only {n} steps");
    let idle = a
        .observations(&WorkloadId("idle".into()), Resource::Cpu)
        .unwrap();
    assert!(idle < 100, "idle had no history: {idle}");
    // Memory has no query: not asked.
    let q = queries.lock().unwrap().clone();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(
        q.contains(&r#"cpu_cores{workload="busy"}"#.to_string()),
        "{q:?}"
    );
    // The plan goes on: both workloads planned after the swap.
    drive(&mut a, until + 20_000);
    assert!(a.plans().iter().flat_map(|p| &p.entries).count() >= 2);
    let audit: Vec<String> = sink
        .0
        .borrow()
        .audit
        .iter()
        .filter(|r| r.action == "forecast.history")
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(audit, ["busy/cpu"]);
}

#[test]
fn history_comes_from_a_real_prometheus_that_scraped_a_process_of_the_test() {
    // The "process": an exporter serving busy's CPU use.
    let exporter = TinyServer::exporter(|| {
        "# TYPE workload_cpu_cores gauge\nworkload_cpu_cores{workload=\"busy\"} 1.25\n".into()
    })
    .unwrap();
    let prom = Prometheus::start("workloads", exporter.addr(), "/metrics").unwrap();
    prom.wait_until(Duration::from_secs(60), "12 scrapes", |c| {
        let r = c.query("workload_cpu_cores[5m]", None).ok()?;
        (r.len() == 1 && r[0].points.len() >= 12).then_some(())
    })
    .unwrap();

    let mut c = config(Mode::Recommend);
    c.history.prometheus = Some(prom.url().to_string());
    c.history.since = prescient_agent::config::Interval::secs(300);
    c.history.cpu_query = Some(r#"workload_cpu_cores{workload="{workload}"}"#.into());
    let sink = FakeSink::default();
    // The agent's clock must be the wall clock: history is read up to now.
    let mut clk = clock();
    clk.now = wall_ms();
    let mut a = Agent::new(
        c,
        MACHINE,
        FakeObserver::new(),
        sink.clone(),
        None::<FakeEnforcer>,
        clk,
    );
    a.start();
    // Until the history's audit record has been flushed (every 5 s).
    let history_audit = || -> Vec<(String, Option<String>)> {
        sink.0
            .borrow()
            .audit
            .iter()
            .filter(|r| r.action == "forecast.history")
            .map(|r| (r.target.clone(), r.after.clone()))
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while history_audit().is_empty() && std::time::Instant::now() < deadline {
        a.clock_mut().now = wall_ms();
        a.tick();
        std::thread::sleep(Duration::from_millis(20));
    }
    let n = a
        .observations(&WorkloadId("busy".into()), Resource::Cpu)
        .unwrap_or(0);
    let audit = history_audit();
    assert_eq!(
        audit.len(),
        1,
        "history read once: {audit:?} (observations {n})"
    );
    assert_eq!(audit[0].0, "busy/cpu");
    let steps: usize = audit[0]
        .1
        .as_deref()
        .and_then(|s| s.strip_suffix(" steps"))
        .and_then(|s| s.parse().ok())
        .unwrap();
    // Twelve scrapes a second apart span at least two 5 s steps.
    assert!(steps >= 2, "{steps}");
    assert!(n as usize >= steps, "{n} < {steps}");
}
