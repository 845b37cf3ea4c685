//! `PUT /api/v1/config` against a real agent replaying a committed sample
//! trace: read as a SIGHUP reload reads the file (the trace's preparation
//! included), refused with the bad key and value named and the running
//! configuration kept, or applied through the reload path and audited with
//! who asked. Who may call it is in the role table (access.rs).

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::dashboard_support::{ADMIN_TOKEN, Live, OPERATOR_TOKEN, wait_for};
use crate::fixture::client;

/// A valid configuration: one alert rule more than the agent started with
/// (no `[store]` or `[api]`: those take a restart and are kept).
const VALID: &str = "[[alerts.rule]]\nname = \"api-hot\"\nwhen = \"utilisation\"\n\
                     resource = \"cpu\"\nabove = 0.99\nhold = \"10m\"\n";

struct Api {
    live: Live,
    http: reqwest::blocking::Client,
}

impl Api {
    fn send(&self, method: Method, path: &str, token: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.live.url()))
            .bearer_auth(token)
    }

    fn get(&self, path: &str) -> Value {
        let r = self.send(Method::GET, path, OPERATOR_TOKEN).send().unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().unwrap()
    }

    fn put_config(&self, token: &str, toml: &str) -> (u16, Value) {
        let r = self
            .send(Method::PUT, "/api/v1/config", token)
            .header("content-type", "application/toml")
            .body(toml.to_string())
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    }
}

#[test]
fn put_config_refuses_an_invalid_one_keeping_the_old_and_applies_a_valid_one() {
    // 60x: the trace's 9,600 s last 160 s of wall time, well past this test.
    let api = Api {
        live: Live::start("gcd.csv.gz", 4, 60.0, 1),
        http: client(),
    };
    let before = api.get("/api/v1/config");
    assert_eq!(before["agent"]["host"], "replay-gcd", "{before}");
    assert_eq!(before["alerts"]["rule"], Value::Array(vec![]));
    assert_eq!(before["api"]["token"][1]["sha256"], "<redacted>");

    // The operator may not.
    let (status, body) = api.put_config(OPERATOR_TOKEN, VALID);
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("admin"), "{body}");

    // A bad value: 422 naming the key and the value; nothing changes.
    let (status, body) =
        api.put_config(ADMIN_TOKEN, "[alerts]\nwebhook = \"ftp://example.net/x\"\n");
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("alerts.webhook = \"ftp://example.net/x\"")
            && error.contains("http:// or https://")
            && error.contains("the running one kept"),
        "{error}"
    );
    assert_eq!(body["detail"]["issues"][0]["key"], "alerts.webhook");
    assert_eq!(
        body["detail"]["issues"][0]["value"],
        "\"ftp://example.net/x\""
    );
    // A key that does not exist: named, with its line.
    let (status, body) = api.put_config(
        ADMIN_TOKEN,
        "[agent]\nplan_steps = 4\n\n[store]\npaht = \"/x\"\n",
    );
    assert_eq!(status, 422, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("<PUT /api/v1/config>:5:1") && error.contains("unknown field `paht`"),
        "{error}"
    );
    assert_eq!(body["detail"]["key"], "store.paht", "{body}");
    // Not TOML's content type: 415 before the loop is asked.
    let r = api
        .send(Method::PUT, "/api/v1/config", ADMIN_TOKEN)
        .json(&serde_json::json!({"agent": {}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_eq!(api.get("/api/v1/config"), before, "the old one kept");
    let counters = &api.get("/api/v1/status")["counters"];
    assert_eq!(counters["reloads_refused"], 2, "{counters}");
    assert_eq!(counters["reloads"], 0, "{counters}");

    // A valid one: applied through the reload path, the trace's
    // preparation included (its pools and selectors are unchanged).
    let (status, body) = api.put_config(ADMIN_TOKEN, VALID);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["changed"], serde_json::json!(["alerts"]), "{body}");
    let kept: Vec<&str> = body["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        kept.iter().any(|k| k.contains("[store] path")) && kept.iter().any(|k| k.contains("[api]")),
        "{kept:?}"
    );
    let after = api.get("/api/v1/config");
    assert_eq!(body["config"], after);
    assert_eq!(after["alerts"]["rule"][0]["name"], "api-hot");
    assert_eq!(after["alerts"]["rule"][0]["above"], 0.99);
    assert_eq!(after["pool"], before["pool"], "prepared for the trace");
    assert_eq!(after["workload"], before["workload"]);
    assert_eq!(after["store"], before["store"], "kept until a restart");
    assert_eq!(after["api"], before["api"]);
    let counters = &api.get("/api/v1/status")["counters"];
    assert_eq!(counters["reloads"], 1, "{counters}");

    // Audited with who asked: by the server at once, and by the loop (its
    // records reach the store with its next flush).
    let audited = wait_for(Duration::from_secs(60), || {
        let log = api.get("/api/v1/audit?order=desc&limit=50");
        let entries = log.as_array().unwrap().clone();
        let by_api = entries
            .iter()
            .find(|e| e["action"] == "api.config")?
            .clone();
        let by_loop = entries
            .iter()
            .find(|e| e["action"] == "agent.config")?
            .clone();
        Some((by_api, by_loop))
    });
    let (by_api, by_loop) = audited.expect("both audit entries within 60 s");
    assert_eq!(by_api["actor"], "user:root");
    assert!(
        by_api["after"]
            .as_str()
            .unwrap()
            .starts_with("changed: alerts"),
        "{by_api}"
    );
    assert_eq!(by_loop["actor"], "root");
    assert!(
        by_loop["reason"].as_str().unwrap().contains("127.0.0.1"),
        "{by_loop}"
    );
    assert_eq!(
        api.live
            .view()
            .config
            .as_ref()
            .map(|c| c.alerts.rules.len()),
        Some(1)
    );
}
