//! Property tests of the request parsers: arbitrary input never panics, and
//! either parses or is a 4xx error.

use prescient_agent::control::LiveView;
use prescient_api::ApiError;
use prescient_api::dto::{ModeBody, NewEventBody, NewIntentBody, NewRequestBody};
use prescient_api::parse::{Params, json};
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
