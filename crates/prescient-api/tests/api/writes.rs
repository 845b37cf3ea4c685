//! Writes end to end: events, intents, requests, mode and replan reach the
//! store or the (stand-in) loop, and each is audited with its caller.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::fixture::*;

/// Waits (bounded) until the stand-in loop has logged `line`.
fn wait_for_command(f: &Fixture, line: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while !f.fake.commands().iter().any(|c| c == line) {
        assert!(
            Instant::now() < until,
            "no {line:?} in {:?}",
            f.fake.commands()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn events_are_created_and_cancelled_in_the_store_and_the_loop_is_told() {
    let f = Fixture::new();
    let r = f.send_json(
        Method::POST,
        "/api/v1/events",
        Some(OPERATOR),
        &json!({"kind": "sale", "name": "spring sale", "selector": "app=web",
            "schedule": {"cron": {"spec": "0 2 * * *", "duration_ms": 3_600_000}},
            "effect": {"add": 2.0}, "resource": "cpu"}),
    );
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().unwrap();
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "spring sale");
    assert_eq!(created["schedule"]["cron"]["spec"], "0 2 * * *");
    assert_eq!(created["effect"]["add"], 2.0);
    assert_eq!(created["created_by"], "user:ops");
    wait_for_command(&f, "events by ops");
    let listed = f.get_json("/api/v1/events");
    assert!(listed.as_array().unwrap().iter().any(|e| e["id"] == id));
    let audit = f.audit();
    assert!(
        audit.iter().any(|e| e["action"] == "event.create"
            && e["actor"] == "user:ops"
            && e["target"] == format!("event/{id}")),
        "{audit:?}"
    );

    let r = f
        .req(Method::DELETE, &format!("/api/v1/events/{id}"), Some(ADMIN))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let cancelled: serde_json::Value = r.json().unwrap();
    assert!(cancelled["cancelled_at"].is_i64(), "{cancelled}");
    wait_for_command(&f, "events by root");
    let again = f
        .req(Method::DELETE, &format!("/api/v1/events/{id}"), Some(ADMIN))
        .send()
        .unwrap();
    assert_eq!(again.status(), 409);
    assert!(
        !f.get_json("/api/v1/events")
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id)
    );
    assert!(
        f.audit()
            .iter()
            .any(|e| e["action"] == "event.cancel" && e["actor"] == "user:root")
    );
}

#[test]
fn intents_become_events_of_kind_intent_at_the_view_time() {
    let f = Fixture::new();
    let r = f.send_json(
        Method::POST,
        "/api/v1/intents",
        Some(OPERATOR),
        &json!({"name": "video edit", "selector": "web", "start": "now",
            "duration_ms": 3_600_000, "effect": {"add": 4e9}, "resource": "memory"}),
    );
    assert_eq!(r.status(), 201);
    let e: serde_json::Value = r.json().unwrap();
    assert_eq!(e["kind"], "intent");
    assert_eq!(
        e["schedule"]["once"]["start"], NOW,
        "now is the agent's clock"
    );
    assert_eq!(e["schedule"]["once"]["end"], NOW + 3_600_000);
    let r = f.send_json(
        Method::POST,
        "/api/v1/intents",
        Some(OPERATOR),
        &json!({"name": "import", "selector": "db", "start": {"next_time_of_day": {"hour": 2, "minute": 0}},
            "duration_ms": 7_200_000, "effect": {"multiply": 3.0}}),
    );
    assert_eq!(r.status(), 201);
    let intents = f.get_json("/api/v1/intents");
    assert_eq!(intents.as_array().unwrap().len(), 2);
    assert!(
        intents
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] == "intent")
    );
    // An intent that cannot work: 422 naming the field.
    let r = f.send_json(
        Method::POST,
        "/api/v1/intents",
        Some(OPERATOR),
        &json!({"name": "bad", "selector": "db", "start": {"next_time_of_day": {"hour": 25, "minute": 0}},
            "duration_ms": 1000, "effect": {"multiply": 3.0}}),
    );
    assert_eq!(r.status(), 422);
    assert!(r.text().unwrap().contains("start"));
}

#[test]
fn requests_go_to_the_loop_and_its_answer_comes_back() {
    let f = Fixture::new();
    let body = json!({"workload": "web", "resource": "cpu", "amount": 6.0, "priority": 2,
        "justification": "launch day", "duration_s": 3600});
    let r = f.send_json(Method::POST, "/api/v1/requests", Some(OPERATOR), &body);
    assert_eq!(r.status(), 202);
    let req: serde_json::Value = r.json().unwrap();
    assert_eq!(req["id"], 1);
    assert_eq!(req["state"], "waiting");
    assert_eq!(req["requested_by"]["name"], "ops");
    assert_eq!(req["until"], NOW + 3_600_000);
    assert_eq!(f.get_json("/api/v1/requests")[0]["request"]["amount"], 6.0);
    assert!(f.audit().iter().any(|e| e["action"] == "api.request.create"
        && e["actor"] == "user:ops"
        && e["target"] == "request/1"));
    // The loop's refusal is a 422 with its reason.
    let mut unknown = body.clone();
    unknown["workload"] = json!("nosuch");
    let r = f.send_json(Method::POST, "/api/v1/requests", Some(OPERATOR), &unknown);
    assert_eq!(r.status(), 422);
    assert!(r.text().unwrap().contains("unknown workload"));
    // Cancel.
    let r = f
        .req(Method::DELETE, "/api/v1/requests/1", Some(OPERATOR))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["state"], "cancelled");
    let r = f
        .req(Method::DELETE, "/api/v1/requests/1", Some(OPERATOR))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    assert!(
        f.audit()
            .iter()
            .any(|e| e["action"] == "api.request.cancel")
    );
}

#[test]
fn mode_and_replan_reach_the_loop_with_the_caller_and_are_audited() {
    let f = Fixture::new();
    let r = f.send_json(
        Method::PUT,
        "/api/v1/mode",
        Some(ADMIN),
        &json!({"mode": "enforce"}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["mode"], "enforce");
    assert_eq!(f.get_json("/api/v1/status")["mode"], "enforce");
    assert!(f.audit().iter().any(|e| e["action"] == "api.mode"
        && e["actor"] == "user:root"
        && e["before"] == "recommend"
        && e["after"] == "enforce"));
    let r = f
        .req(Method::POST, "/api/v1/replan", Some(ADMIN))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    wait_for_command(&f, "replan by root");
    assert!(f.audit().iter().any(
        |e| e["action"] == "api.replan" && e["reason"].as_str().unwrap().contains("127.0.0.1")
    ));
}

#[test]
fn a_loop_that_does_not_answer_gives_503_and_no_audit_entry() {
    let f = Fixture::build(
        true,
        true,
        |_| {},
        |s| s.reply_timeout = Duration::from_millis(200),
    );
    let r = f.send_json(
        Method::POST,
        "/api/v1/requests",
        Some(OPERATOR),
        &json!({"workload": "web", "resource": "cpu", "amount": 6.0, "priority": 2,
            "justification": "", "duration_s": 60}),
    );
    assert_eq!(r.status(), 503);
    assert!(r.text().unwrap().contains("did not answer"));
    let r = f.send_json(
        Method::PUT,
        "/api/v1/mode",
        Some(ADMIN),
        &json!({"mode": "enforce"}),
    );
    assert_eq!(r.status(), 503);
    assert!(
        !f.audit()
            .iter()
            .any(|e| e["action"].as_str().unwrap().starts_with("api."))
    );
}
