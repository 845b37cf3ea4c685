//! Property tests of the request parsers: arbitrary input never panics, and
//! either parses or is a 4xx error. The `Authorization` header's parser is
//! tested the same way in `src/auth.rs` (it is private), and here through
//! a real server with the path ids.

use prescient_agent::control::LiveView;
use prescient_api::ApiError;
use prescient_api::dto::{ModeBody, NewEventBody, NewIntentBody, NewRequestBody};
use prescient_api::parse::{MAX_ID_LEN, Params, json, path_id};
use prescient_api::routes::{event_of_body, event_of_intent};
use prescient_api::series::SeriesQuery;
use proptest::prelude::*;

fn is_4xx(e: &ApiError) -> bool {
    e.status().is_client_error()
}

fn view() -> LiveView {
    LiveView {
        updated_at: 1_700_000_000_000,
        ..LiveView::default()
    }
}

/// Query strings made of the real parameter names and odd values.
fn query() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("resource".to_string()),
        Just("resolution".to_string()),
        Just("from".to_string()),
        Just("to".to_string()),
        "[a-z%&=]{0,6}",
    ];
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        Just("cpu".to_string()),
        Just("auto".to_string()),
        Just("1m".to_string()),
        Just("raw".to_string()),
        ".{0,12}",
    ];
    prop::collection::vec((key, value), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

/// JSON-ish bodies: real field names with values of any type, and noise.
fn body() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        ".{0,10}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("now")),
        Just(serde_json::Value::from("* * * * *")),
    ];
    let value = leaf.prop_recursive(3, 24, 4, |inner| {
        let names = prop_oneof![
            Just("kind"),
            Just("name"),
            Just("selector"),
            Just("schedule"),
            Just("once"),
            Just("cron"),
            Just("spec"),
            Just("duration_ms"),
            Just("start"),
            Just("end"),
            Just("effect"),
            Just("multiply"),
            Just("add"),
            Just("resource"),
            Just("workload"),
            Just("amount"),
            Just("priority"),
            Just("justification"),
            Just("duration_s"),
            Just("mode"),
            Just("at"),
            Just("next_time_of_day"),
            Just("hour"),
            Just("minute"),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            prop::collection::btree_map(names.prop_map(String::from), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        value.prop_map(|v| v.to_string()),
        ".{0,40}",
        Just("{\"kind\":".to_string()),
    ]
}

/// Path ids: any text, and lengths around the limit.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        Just(String::new()),
        (MAX_ID_LEN - 2..MAX_ID_LEN + 3).prop_map(|n| "x".repeat(n)),
        // Multi-byte characters: the limit is in bytes.
        (80_usize..90).prop_map(|n| "é€".repeat(n)),
        "[0-9-]{0,24}",
        Just("../../etc/passwd".to_string()),
        Just("1 OR 1=1; --".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn path_ids_are_taken_when_1_to_256_bytes_and_else_a_400_naming_the_id(id in id()) {
        match path_id("workload", &id) {
            Ok(()) => prop_assert!(!id.is_empty() && id.len() <= MAX_ID_LEN, "{id:?}"),
            Err(e) => {
                prop_assert!(id.is_empty() || id.len() > MAX_ID_LEN, "{id:?}: {e}");
                prop_assert_eq!(e.status().as_u16(), 400);
                let text = e.to_string();
                prop_assert!(text.starts_with("workload id is"), "{}", text);
                // A long id is not echoed back.
                prop_assert!(text.len() < 100, "{}", text);
            }
        }
    }

    #[test]
    fn query_parsers_parse_or_give_a_4xx(q in query()) {
        match SeriesQuery::parse(&q, &view()) {
            Ok(s) => prop_assert!(s.from <= s.to),
            Err(e) => prop_assert!(is_4xx(&e), "{q:?}: {e}"),
        }
        match Params::parse(&q) {
            Ok(mut p) => {
                for e in [p.ms("from").err(), p.count("limit", 10).err(), p.flag("to").err()]
                    .into_iter()
                    .flatten()
                {
                    prop_assert!(is_4xx(&e), "{q:?}: {e}");
                }
            }
            Err(e) => prop_assert!(is_4xx(&e), "{q:?}: {e}"),
        }
    }

    #[test]
    fn body_parsers_parse_or_give_a_4xx(b in body()) {
        let bytes = b.as_bytes();
        match json::<NewEventBody>(bytes) {
            Ok(ev) => if let Err(e) = event_of_body(&ev) {
                prop_assert!(is_4xx(&e), "{b}: {e}");
            },
            Err(e) => prop_assert!(is_4xx(&e), "{b}: {e}"),
        }
        match json::<NewIntentBody>(bytes) {
            Ok(i) => if let Err(e) = event_of_intent(&i, 1_700_000_000_000) {
                prop_assert!(is_4xx(&e), "{b}: {e}");
            },
            Err(e) => prop_assert!(is_4xx(&e), "{b}: {e}"),
        }
        if let Err(e) = json::<NewRequestBody>(bytes) {
            prop_assert!(is_4xx(&e), "{b}: {e}");
        }
        if let Err(e) = json::<ModeBody>(bytes) {
            prop_assert!(is_4xx(&e), "{b}: {e}");
        }
    }

    #[test]
    fn valid_event_bodies_round_trip(
        start in -1_000_000_000_000_i64..4_000_000_000_000,
        len in 0_i64..1_000_000_000,
        factor in 0.0_f64..100.0,
    ) {
        let b = serde_json::json!({"kind": "k", "selector": "web-*,env=prod",
            "schedule": {"once": {"start": start, "end": start + len}},
            "effect": {"multiply": factor}});
        let parsed: NewEventBody = json(b.to_string().as_bytes()).unwrap();
        let ev = event_of_body(&parsed).unwrap();
        let stored = ev.to_stored();
        prop_assert_eq!(stored.start, start);
        prop_assert_eq!(stored.end, start + len);
    }
}

/// Junk over HTTP: a real server (tokens configured, no loop behind it),
/// each route taking a path id called with any id and any `Authorization`
/// header. Never a server error: 401 unless the header is a known token,
/// then the route's own 4xx (400 for a bad id, 404 for an unknown one).
#[test]
fn junk_ids_and_authorization_headers_over_http_are_4xx() {
    use prescient_agent::config::{Config, Role, TokenConfig};
    use prescient_agent::control::Control;
    use proptest::test_runner::{Config as RunnerConfig, TestRunner};

    const OPERATOR: &str = "props-operator";
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.store.path = dir.path().join("props.db");
    config.api.listen = "127.0.0.1:0".into();
    config.api.rate_limit = 0;
    config.api.tokens = vec![TokenConfig {
        name: "ops".into(),
        role: Role::Operator,
        sha256: prescient_api::hash_token(OPERATOR),
    }];
    let (handle, _port) = Control::new();
    let server = prescient_api::serve(&config, handle).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::blocking::Client::new();
    let auth = prop_oneof![
        Just(None),
        Just(Some(format!("Bearer {OPERATOR}"))),
        "[ -~]{0,30}".prop_map(Some),
        "(?i)bearer [ -~]{0,30}".prop_map(Some),
    ];
    let routes = prop_oneof![
        Just((reqwest::Method::GET, "workloads", "")),
        Just((reqwest::Method::GET, "workloads", "/series?resource=cpu")),
        Just((reqwest::Method::DELETE, "events", "")),
        Just((reqwest::Method::DELETE, "requests", "")),
    ];
    let mut runner = TestRunner::new(RunnerConfig::with_cases(96));
    runner
        .run(
            &(routes, id(), auth),
            |((method, route, rest), id, auth)| {
                // Every byte of the id percent-encoded: it arrives as given.
                let enc: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
                let url = format!("{}/api/v1/{route}/{enc}{rest}", server.url());
                let mut r = http.request(method.clone(), &url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                let resp = r.send().unwrap();
                let status = resp.status().as_u16();
                let body = resp.text().unwrap();
                let known = auth.as_deref() == Some(&format!("Bearer {OPERATOR}"));
                if known {
                    // An empty id does not match the route at all: its 404 is
                    // the fallback's.
                    prop_assert!(
                        status == 400 || status == 404,
                        "{method} {url}: {status} {body}"
                    );
                } else {
                    prop_assert_eq!(status, 401, "{} {}: {}", method, url, body);
                }
                let e: serde_json::Value = serde_json::from_str(&body).unwrap();
                prop_assert!(e["error"].is_string(), "{}", body);
                Ok(())
            },
        )
        .unwrap();
    server.shutdown();
}
