//! Alerts in the loop, on the fakes of `fakes`: a rule fires after its
//! hold, once, reaches a real HTTP receiver as JSON, shows in the live
//! view, resolves when its condition clears; remediation acts (and is
//! audited) in enforce mode only.

mod fakes;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prescient_agent::Agent;
use prescient_agent::config::{AlertsConfig, Config, Mode};
use prescient_agent::control::{AlertState, Control};
use prescient_core::{Resource, TimestampMs};

use fakes::*;

fn alerts(text: &str) -> AlertsConfig {
    Config::from_toml(text, Path::new("alerts.toml"))
        .unwrap()
        .alerts
}

/// A local webhook receiver that answers 200 and keeps each body.
fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            if let Ok(v) = serde_json::from_slice(&body) {
                seen.lock().unwrap().push(v);
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

/// Waits (bounded) until the receiver holds `n` bodies.
fn wait_for(bodies: &Mutex<Vec<serde_json::Value>>, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let b = bodies.lock().unwrap().clone();
        if b.len() >= n || Instant::now() > deadline {
            return b;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `busy` uses 1.5 cores until `until`, 0.2 after; `idle` 0.1.
fn busy_until(until: TimestampMs) -> FakeObserver {
    FakeObserver::with_usage(move |cg, ts| match cg {
        "/busy" if ts < until => (1.5, GIB as f64),
        "/busy" => (0.2, GIB as f64),
        _ => (0.1, 256.0 * 1048576.0),
    })
}

#[test]
fn a_utilisation_alert_fires_after_its_hold_reaches_the_webhook_once_and_resolves() {
    let (url, bodies) = receiver();
    let mut c = config(Mode::Recommend);
    c.alerts = alerts(&format!(
        "[alerts]\nwebhook = \"{url}\"\nwebhook_backoff = \"10ms\"\n\
         [[alerts.rule]]\nname = \"cpu-hot\"\nwhen = \"utilisation\"\nresource = \"cpu\"\n\
         above = 0.7\nhold = \"10s\"\nseverity = \"critical\"\naction = \"replan\"\n"
    ));
    let (handle, port) = Control::new();
    let sink = FakeSink::default();
    let mut a = Agent::new(
        c,
        MACHINE,
        busy_until(T0 + 60_000),
        sink.clone(),
        None,
        clock(),
    );
    a.set_control(port);
    a.start();
    // 1.6 of 2 cores: 80%, above 70%; pending until it has held 10 s.
    drive(&mut a, T0 + 5_000);
    let v = handle.view();
    assert_eq!(v.alerts.len(), 1, "{:?}", v.alerts);
    assert_eq!(v.alerts[0].state, AlertState::Pending);
    drive(&mut a, T0 + 50_000);
    let v = handle.view();
    let alert = &v.alerts[0];
    assert_eq!(alert.state, AlertState::Firing);
    assert_eq!(alert.id, "cpu-hot/host/cpu");
    assert_eq!(alert.severity, "critical");
    assert!(alert.message.contains("80%"), "{}", alert.message);
    // After the drop to 0.3 cores the condition clears: resolved.
    drive(&mut a, T0 + 70_000);
    let v = handle.view();
    assert_eq!(v.alerts[0].state, AlertState::Resolved);
    assert!(v.alerts[0].resolved_at.is_some());
    // Replan is a remediation: not applied in recommend mode.
    assert!(
        !sink
            .0
            .borrow()
            .audit
            .iter()
            .any(|r| r.action.starts_with("alert.")),
        "no remediation in recommend mode"
    );
    drop(a); // the webhook sender delivers what is queued, then stops
    let got = wait_for(&bodies, 2);
    let states: Vec<&str> = got.iter().map(|b| b["status"].as_str().unwrap()).collect();
    assert_eq!(
        states,
        ["firing", "resolved"],
        "one notification each: {got:?}"
    );
    assert_eq!(got[0]["alert"]["id"], "cpu-hot/host/cpu");
    assert_eq!(got[0]["host"], "h1");
}

#[test]
fn in_enforce_mode_a_replan_remediation_plans_at_once_and_is_audited_and_not_in_recommend_mode() {
    // 1.6 of 2 cores (80%) from the start; held 12 s, the rule fires
    // between two plans of the 10 s interval.
    let rule = "[[alerts.rule]]\nname = \"cpu-hot\"\nwhen = \"utilisation\"\nresource = \"cpu\"\n\
                above = 0.7\nhold = \"12s\"\naction = \"replan\"\n";
    for mode in [Mode::Enforce, Mode::Recommend] {
        let mut c = config(mode);
        c.alerts = alerts(rule);
        let (handle, port) = Control::new();
        let sink = FakeSink::default();
        let enforcer = (mode == Mode::Enforce).then(fake_enforcer);
        let mut a = Agent::new(
            c,
            MACHINE,
            busy_until(T0 + 60_000),
            sink.clone(),
            enforcer,
            clock(),
        );
        a.set_control(port);
        a.start();
        drive(&mut a, T0 + 30_000);
        let v = handle.view();
        let alert = v
            .alerts
            .iter()
            .find(|x| x.rule == "cpu-hot")
            .unwrap_or_else(|| panic!("{mode}: no alert in {:?}", v.alerts));
        assert_eq!(alert.state, AlertState::Firing, "{mode}");
        let st = sink.0.borrow();
        let replans: Vec<_> = st
            .audit
            .iter()
            .filter(|r| r.action == "alert.replan")
            .collect();
        let made: Vec<TimestampMs> = st.plans.iter().map(|p| p.made_at).collect();
        match mode {
            Mode::Enforce => {
                assert_eq!(replans.len(), 1, "{replans:?}");
                let r = replans[0];
                assert_eq!(r.actor, "alert:cpu-hot");
                assert_eq!(r.target, "h1");
                assert!(r.reason.contains("alert cpu-hot/host/cpu"), "{}", r.reason);
                // Planned at once (the loop wakes for the plan due now, at
                // the same time), off the interval's grid of T0 + 10 s k:
                // the remediation's plan, not the interval's.
                assert_ne!((r.ts - T0) % 10_000, 0, "fired at T0 + {} ms", r.ts - T0);
                assert!(made.contains(&r.ts), "{made:?}, fired at {}", r.ts);
                // The plan was enforced: limits were written for it.
                assert!(!a.enforcer().unwrap().writes.is_empty());
            }
            Mode::Recommend => {
                assert!(replans.is_empty(), "{replans:?}");
                assert!(
                    made.iter().all(|t| (t - T0) % 10_000 == 0),
                    "only the interval's plans in recommend mode: {made:?}"
                );
            }
        }
    }
}

#[test]
fn in_enforce_mode_a_coverage_alert_raises_the_slo_quantile_and_is_audited() {
    let rule = "[[alerts.rule]]\nname = \"covered\"\nwhen = \"coverage\"\nresource = \"cpu\"\n\
                workload = \"busy\"\nbelow = 0.999\naction = \"raise_slo\"\nslo_step = 0.02\n";
    for mode in [Mode::Enforce, Mode::Recommend] {
        let mut c = config(mode);
        c.alerts = alerts(rule);
        let (handle, port) = Control::new();
        let sink = FakeSink::default();
        // A jump the forecast cannot foresee: some step goes uncovered.
        let observer = FakeObserver::with_usage(|cg, ts| match cg {
            "/busy" if ts < T0 + 60_000 => (0.3, GIB as f64),
            "/busy" => (1.8, GIB as f64),
            _ => (0.1, 256.0 * 1048576.0),
        });
        let enforcer = (mode == Mode::Enforce).then(fake_enforcer);
        let mut a = Agent::new(c, MACHINE, observer, sink.clone(), enforcer, clock());
        a.set_control(port);
        a.start();
        drive(&mut a, T0 + 120_000);
        let v = handle.view();
        let fired = v
            .alerts
            .iter()
            .find(|x| x.id == "covered/busy/cpu")
            .unwrap_or_else(|| panic!("{mode}: no coverage alert in {:?}", v.alerts));
        assert_ne!(fired.state, AlertState::Pending);
        let busy = v.workloads.iter().find(|w| w.id == "busy").unwrap();
        let cpu = busy
            .resources
            .iter()
            .find(|r| r.resource == Resource::Cpu)
            .unwrap();
        let audits: Vec<_> = sink
            .0
            .borrow()
            .audit
            .iter()
            .filter(|r| r.action == "alert.raise_slo")
            .cloned()
            .collect();
        match mode {
            Mode::Enforce => {
                assert!(
                    (cpu.slo_quantile - 0.97).abs() < 1e-9,
                    "{}",
                    cpu.slo_quantile
                );
                assert_eq!(audits.len(), 1, "{audits:?}");
                assert_eq!(audits[0].actor, "alert:covered");
                assert_eq!(audits[0].target, "busy/cpu");
                assert_eq!(audits[0].before.as_deref(), Some("0.95"));
                assert_eq!(audits[0].after.as_deref(), Some("0.97"));
            }
            Mode::Recommend => {
                assert_eq!(cpu.slo_quantile, 0.95, "recommend mode changes nothing");
                assert!(audits.is_empty());
            }
        }
    }
}

#[test]
fn a_rule_moves_a_workload_to_another_tier_in_enforce_mode_only() {
    for mode in [Mode::Enforce, Mode::Recommend] {
        move_tier_in(mode);
    }
}

fn move_tier_in(mode: Mode) {
    let text = format!(
        r#"
[agent]
mode = "{mode}"
host = "h1"
sample_interval = "1s"
forecast_step = "5s"
plan_interval = "10s"
plan_steps = 2
[store]
path = "/nonexistent/unused.db"
flush_interval = "5s"
[[pool]]
name = "host"
cpu = 2
memory = "4GiB"
[[pool]]
name = "burst"
cpu = 4
memory = "4GiB"
[[workload]]
name = "busy"
cgroup = "/busy"
[[workload]]
name = "idle"
cgroup = "/idle"
[[alerts.rule]]
name = "covered"
when = "coverage"
resource = "cpu"
workload = "busy"
below = 0.999
action = "move_tier"
tier = "burst"
"#
    );
    let c = prescient_agent::resolve(
        Config::from_toml(&text, Path::new("t.toml")).unwrap(),
        &MACHINE,
    )
    .unwrap();
    let (handle, port) = Control::new();
    let sink = FakeSink::default();
    let observer = FakeObserver::with_usage(|cg, ts| match cg {
        "/busy" if ts < T0 + 60_000 => (0.3, GIB as f64),
        "/busy" => (1.8, GIB as f64),
        _ => (0.1, 256.0 * 1048576.0),
    });
    let enforcer = (mode == Mode::Enforce).then(fake_enforcer);
    let mut a = Agent::new(c, MACHINE, observer, sink.clone(), enforcer, clock());
    a.set_control(port);
    a.start();
    drive(&mut a, T0 + 120_000);
    let v = handle.view();
    // The rule fired in both modes.
    let alert = v
        .alerts
        .iter()
        .find(|x| x.id == "covered/busy/cpu")
        .unwrap_or_else(|| panic!("{mode}: no coverage alert in {:?}", v.alerts));
    assert_ne!(alert.state, AlertState::Pending, "{mode}");
    let busy = v.workloads.iter().find(|w| w.id == "busy").unwrap();
    if mode == Mode::Recommend {
        assert_eq!(
            busy.pool.as_deref(),
            Some("host"),
            "recommend mode moves nothing"
        );
        assert!(
            v.plans
                .iter()
                .all(|p| p.pool.0 != "burst" || p.entries.iter().all(|e| e.workload.0 != "busy"))
        );
        assert!(
            !sink
                .0
                .borrow()
                .audit
                .iter()
                .any(|r| r.action.starts_with("alert.")),
            "no remediation audited in recommend mode"
        );
        return;
    }
    assert_eq!(busy.pool.as_deref(), Some("burst"), "{:?}", v.alerts);
    let idle = v.workloads.iter().find(|w| w.id == "idle").unwrap();
    assert_eq!(idle.pool.as_deref(), Some("host"));
    let burst_plan = v.plans.iter().find(|p| p.pool.0 == "burst").unwrap();
    assert!(burst_plan.entries.iter().any(|e| e.workload.0 == "busy"));
    let moves: Vec<_> = sink
        .0
        .borrow()
        .audit
        .iter()
        .filter(|r| r.action == "alert.move_tier")
        .map(|r| (r.target.clone(), r.before.clone(), r.after.clone()))
        .collect();
    assert_eq!(
        moves,
        [(
            "busy".to_string(),
            Some("host".to_string()),
            Some("burst".to_string())
        )]
    );
}
