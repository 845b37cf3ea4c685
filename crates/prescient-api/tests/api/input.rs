//! Bad input: oversized and malformed bodies, unknown fields, bad query
//! parameters, unknown ids, and injection attempts — refused with a 4xx
//! naming what is wrong, or treated as plain data; never a panic or a 5xx.

use reqwest::Method;
use serde_json::json;

use crate::fixture::*;

fn error_of(r: reqwest::blocking::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"));
    (status, body)
}

#[test]
fn an_oversized_body_is_413() {
    let f = Fixture::with(true, |c| {
        c.api.max_body = prescient_agent::config::ByteSize(1024)
    });
    let body = json!({"kind": "x".repeat(4096), "selector": "web",
        "schedule": {"once": {"start": 0, "end": 1}}, "effect": {"multiply": 1.0}});
    let (status, e) = error_of(f.send_json(Method::POST, "/api/v1/events", Some(OPERATOR), &body));
    assert_eq!(status, 413, "{e}");
    assert_eq!(e["detail"]["limit_bytes"], 1024, "{e}");
    assert!(f.get_json("/api/v1/events").as_array().unwrap().len() == 2);
}

#[test]
fn a_configuration_body_that_is_not_utf8_toml_or_too_large_never_reaches_the_loop() {
    let f = Fixture::with(true, |c| {
        c.api.max_body = prescient_agent::config::ByteSize(1024)
    });
    let put = |content_type: &str, body: Vec<u8>| {
        f.req(Method::PUT, "/api/v1/config", Some(ADMIN))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .unwrap()
    };
    let (s, e) = error_of(put(
        "application/toml",
        b"[agent]\nhost = \"\xff\xfe\"\n".to_vec(),
    ));
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("not UTF-8 text (byte 16"),
        "{e}"
    );
    let (s, e) = error_of(put("application/json", b"{}".to_vec()));
    assert_eq!(s, 415, "{e}");
    assert!(e["error"].as_str().unwrap().contains("TOML"), "{e}");
    let big = format!("# {}\n", "x".repeat(4096)).into_bytes();
    let (s, e) = error_of(put("text/plain", big));
    assert_eq!(s, 413, "{e}");
    assert_eq!(e["detail"]["limit_bytes"], 1024, "{e}");
    assert!(
        !f.fake.commands().iter().any(|c| c.starts_with("config")),
        "{:?}",
        f.fake.commands()
    );
    // A configuration the stand-in loop refuses: 422 with each bad key.
    let (s, e) = error_of(put(
        "text/plain; charset=utf-8",
        b"[agent]\nsample_interval = \"0s\"\nplan_steps = 0\n".to_vec(),
    ));
    assert_eq!(s, 422, "{e}");
    let keys: Vec<&str> = e["detail"]["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"agent.sample_interval"), "{e}");
    // Refusals are not audited.
    assert!(!f.audit().iter().any(|a| a["action"] == "api.config"));
}

#[test]
fn malformed_json_and_unknown_fields_are_400_naming_the_field() {
    let f = Fixture::new();
    let post = |body: &str| {
        f.req(Method::POST, "/api/v1/events", Some(OPERATOR))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    let (s, e) = error_of(post("{\"kind\": "));
    assert_eq!(s, 400, "{e}");
    let (s, e) = error_of(post(
        r#"{"kind":"sale","selector":"web","schedule":{"once":{"start":"soon","end":1}},"effect":{"multiply":1}}"#,
    ));
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["detail"]["field"], "schedule.once.start", "{e}");
    let (s, e) = error_of(post(
        r#"{"kind":"sale","selector":"web","schedule":{"once":{"start":0,"end":1}},"effect":{"multiply":1},"colour":"red"}"#,
    ));
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("colour"), "{e}");
    let (s, e) = error_of(post(r#"{"kind":"sale"}"#));
    assert_eq!(s, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("selector"), "{e}");
    // Not JSON at all.
    let r = f
        .req(Method::POST, "/api/v1/events", Some(OPERATOR))
        .header("Content-Type", "text/plain")
        .body("kind=sale")
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    // Well-formed but not a valid event: 422 naming the field.
    let (s, e) = error_of(f.send_json(
        Method::POST,
        "/api/v1/events",
        Some(OPERATOR),
        &json!({"kind": "sale", "selector": "web", "schedule": {"once": {"start": 10, "end": 5}},
            "effect": {"multiply": 1.0}}),
    ));
    assert_eq!(s, 422, "{e}");
    assert!(e["error"].as_str().unwrap().contains("schedule"), "{e}");
    let (s, e) = error_of(f.send_json(
        Method::POST,
        "/api/v1/events",
        Some(OPERATOR),
        &json!({"kind": "sale", "selector": "web", "schedule": {"cron": {"spec": "61 * * * *", "duration_ms": 1000}},
            "effect": {"add": 1.0}, "resource": "cpu"}),
    ));
    assert_eq!(s, 422, "{e}");
    assert!(e["error"].as_str().unwrap().contains("cron"), "{e}");
    let (s, e) = error_of(f.send_json(
        Method::PUT,
        "/api/v1/mode",
        Some(ADMIN),
        &json!({"mode": "turbo"}),
    ));
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["detail"]["field"], "mode", "{e}");
    let (s, e) = error_of(f.send_json(
        Method::POST,
        "/api/v1/requests",
        Some(OPERATOR),
        &json!({"workload": "web", "resource": "gpu", "amount": 1.0, "priority": 0,
            "justification": "", "duration_s": 1}),
    ));
    assert_eq!(s, 400, "{e}");
    assert_eq!(e["detail"]["field"], "resource", "{e}");
    // Nothing reached the loop or the store.
    assert!(f.fake.commands().is_empty(), "{:?}", f.fake.commands());
    assert_eq!(f.get_json("/api/v1/events").as_array().unwrap().len(), 2);
}

#[test]
fn bad_query_parameters_are_400_naming_the_parameter() {
    let f = Fixture::new();
    for (query, param) in [
        ("resolution=5m", "resolution"),
        ("resolution=raw&from=0&to=86400000", "resolution"),
        ("from=10&to=5", "from"),
        ("from=yesterday", "from"),
        ("to=1e9", "to"),
        ("resource=gpu", "resource"),
        ("resource=cpu&resource=memory", "resource"),
        ("colour=red", "colour"),
    ] {
        let (s, e) = error_of(f.get(
            &format!("/api/v1/workloads/web/series?{query}"),
            Some(VIEWER),
        ));
        assert_eq!(s, 400, "{query}: {e}");
        assert_eq!(e["detail"]["field"], param, "{query}: {e}");
    }
    for (path, param) in [
        ("/api/v1/audit?limit=-1", "limit"),
        ("/api/v1/audit?limit=99999999", "limit"),
        ("/api/v1/audit?since=now", "since"),
        ("/api/v1/audit?order=newest", "order"),
        ("/api/v1/audit?order=desc&before=-1", "before"),
        ("/api/v1/audit?order=desc&before=last", "before"),
        ("/api/v1/audit?order=desc&before=1&before=2", "before"),
        ("/api/v1/audit?after=1.5", "after"),
        ("/api/v1/audit?before=10", "before"),
        ("/api/v1/audit?order=asc&before=10", "before"),
        ("/api/v1/audit?order=desc&after=10", "after"),
        (
            "/api/v1/events?include_cancelled=maybe",
            "include_cancelled",
        ),
        ("/api/v1/plans/history?from=2&to=1", "from"),
    ] {
        let (s, e) = error_of(f.get(path, Some(VIEWER)));
        assert_eq!(s, 400, "{path}: {e}");
        assert_eq!(e["detail"]["field"], param, "{path}: {e}");
    }
}

#[test]
fn unknown_ids_are_404_naming_the_id() {
    let f = Fixture::new();
    for (method, path, token, id) in [
        (Method::GET, "/api/v1/workloads/nosuch", VIEWER, "nosuch"),
        (
            Method::GET,
            "/api/v1/workloads/nosuch/series",
            VIEWER,
            "nosuch",
        ),
        (Method::DELETE, "/api/v1/events/999", OPERATOR, "999"),
        (Method::DELETE, "/api/v1/requests/999", OPERATOR, "999"),
    ] {
        let (s, e) = error_of(f.req(method.clone(), path, Some(token)).send().unwrap());
        assert_eq!(s, 404, "{method} {path}: {e}");
        assert_eq!(e["detail"]["id"], id, "{e}");
        assert!(e["error"].as_str().unwrap().contains(id), "{e}");
    }
    // Ids that are not numbers where numbers are wanted: 400.
    let (s, e) = error_of(
        f.req(Method::DELETE, "/api/v1/events/abc", Some(OPERATOR))
            .send()
            .unwrap(),
    );
    assert_eq!(s, 400, "{e}");
}

#[test]
fn injection_attempts_are_plain_data_and_never_a_server_error() {
    let f = Fixture::new();
    let long = "w".repeat(5000);
    let ids = [
        "..%2F..%2Fetc%2Fpasswd",
        "..",
        "web'%20OR%20'1'='1",
        "web%22%3B%20DROP%20TABLE%20samples%3B--",
        "*",
        "w%2A",
        "%00",
        "web%0D%0AX-Injected:%201",
        "%1B%5B31m",
        long.as_str(),
    ];
    for id in ids {
        for suffix in ["", "/series", "/series?resource=cpu"] {
            let r = f.get(&format!("/api/v1/workloads/{id}{suffix}"), Some(VIEWER));
            let status = r.status().as_u16();
            assert!(
                status == 404 || status == 400,
                "{id}{suffix}: {status} {}",
                r.text().unwrap()
            );
            assert!(r.headers().get("x-injected").is_none());
        }
        for path in [
            format!("/api/v1/events/{id}"),
            format!("/api/v1/requests/{id}"),
        ] {
            let r = f.req(Method::DELETE, &path, Some(OPERATOR)).send().unwrap();
            let status = r.status().as_u16();
            assert!(
                status == 404 || status == 400,
                "{path}: {status} {}",
                r.text().unwrap()
            );
        }
    }
    // Hostile selectors and kinds are stored as text, or refused as
    // selectors, and never change other rows.
    for selector in [
        "web'; DELETE FROM events; --",
        "*",
        "host=*,workload=../../*",
        "\u{0007}\u{001b}[2J",
        "a,,b",
        "",
    ] {
        let r = f.send_json(
            Method::POST,
            "/api/v1/events",
            Some(OPERATOR),
            &json!({"kind": "x'); DROP TABLE audit; --", "selector": selector,
                "schedule": {"once": {"start": NOW, "end": NOW + 1}}, "effect": {"multiply": 1.0}}),
        );
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().unwrap();
        assert!(
            status == 201 || status == 422,
            "{selector:?}: {status} {body}"
        );
        if status == 201 {
            assert!(body["selector"].is_string(), "{body}");
            assert_eq!(body["kind"], "x'); DROP TABLE audit; --", "{body}");
        }
    }
    let events = f.get_json("/api/v1/events?include_cancelled=true");
    assert!(events.as_array().unwrap().len() >= 2, "{events}");
    assert!(!f.audit().is_empty());
    // The store still answers, samples intact.
    let s = f.get_json(&format!(
        "/api/v1/workloads/web/series?resolution=1m&from={T0}"
    ));
    assert_eq!(s["actual"].as_array().unwrap().len(), 120);
}
