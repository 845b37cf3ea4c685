//! The dashboard in a real headless Chromium (through chromedriver), over
//! a real API server in front of a real agent replaying the committed
//! sample trace `data/sample/gcd.csv.gz`: the overview's partition bars
//! (allocated now and planned), the request, intent and event forms
//! reaching the loop, the store and the audit trail, and a workload's
//! charts with their series and their anomaly and event marks.

mod dashboard_support;

use std::time::Duration;

use dashboard_support::{Chromedriver, Live, OPERATOR_TOKEN, browser, load_and_measure};
use fantoccini::elements::Element;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};

/// Workloads replayed.
const WORKLOADS: usize = 6;

/// Polls `script` in the page (it returns a value) until `ok` accepts it.
async fn wait_js(client: &Client, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..300 {
        match client.execute(script, vec![]).await {
            Ok(v) if ok(&v) => return v,
            Ok(v) => last = v,
            Err(e) => last = json!(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let error = client
        .execute(ERROR_TEXT, vec![])
        .await
        .unwrap_or(Value::Null);
    panic!("{what}: not so after 30 s (last: {last}; page error: {error})");
}

async fn find(client: &Client, css: &str) -> Element {
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

/// The element `css` inside `form`.
async fn field(form: &Element, css: &str) -> Element {
    form.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} in the form: {e}"))
}

/// Types `text` into the field `css` of `form`.
async fn type_into(form: &Element, css: &str, text: &str) {
    let f = field(form, css).await;
    f.send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
}

/// Selects the option of value `value` in the select `css` of `form`.
async fn choose(form: &Element, css: &str, value: &str) {
    let f = field(form, css).await;
    f.select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("choosing {value} in {css}: {e}"));
}

/// Submits `form` with its submit button.
async fn submit(form: &Element) {
    let f = field(form, "button[type=submit]").await;
    f.click()
        .await
        .unwrap_or_else(|e| panic!("submitting the form: {e}"));
}

/// Event `id` as `GET /api/v1/events<query>` lists it.
async fn api_event(http: &reqwest::Client, base: &str, query: &str, id: i64) -> Value {
    let events: Value = http
        .get(format!("{base}/api/v1/events{query}"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    events
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == json!(id)).cloned())
        .unwrap_or_else(|| panic!("event {id} not in /api/v1/events{query}: {events}"))
}

/// The text of the page's error box, when it shows one.
const ERROR_TEXT: &str =
    "const e = document.getElementById('error'); return e && !e.hidden ? e.textContent : null;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_replayed_agent_and_its_forms_reach_the_api() {
    // Declared in this order so that they are dropped in the reverse one:
    // the browser session, chromedriver (which quits Chromium), the
    // profile directory, then the server and the agent.
    let live = Live::start("gcd.csv.gz", WORKLOADS, 1200.0, 12);
    let profile = tempfile::tempdir().unwrap();
    let driver = Chromedriver::start().unwrap();
    let client = browser(&driver, profile.path()).await.unwrap();
    let base = live.url();

    // Without a token every read is refused: the page says so readably.
    client.goto(&format!("{base}/")).await.unwrap();
    let error = wait_js(&client, "the 401 shown", ERROR_TEXT, Value::is_string).await;
    let error = error.as_str().unwrap();
    assert!(error.contains("HTTP 401"), "{error}");
    assert!(error.contains("set a token"), "{error}");

    // The token field keeps the token in localStorage and sends it.
    let token = find(&client, "#token").await;
    token.send_keys(OPERATOR_TOKEN).await.unwrap();
    find(&client, "#token-form button")
        .await
        .click()
        .await
        .unwrap();
    find(&client, "#overview tr[data-workload]").await;
    let stored = client
        .execute("return localStorage.getItem('prescient.token');", vec![])
        .await
        .unwrap();
    assert_eq!(stored, json!(OPERATOR_TOKEN));
    // No background refresh while the test reads the page.
    client
        .execute(
            "localStorage.setItem('prescient.refresh', 'off'); return null;",
            vec![],
        )
        .await
        .unwrap();

    // A fresh load, with the token: time to interactive.
    let tti = load_and_measure(&client, &format!("{base}/"))
        .await
        .unwrap();
    println!("dashboard time to interactive: {tti:.0} ms (navigation start to first data render)");
    assert!(tti > 0.0);

    // The overview: every workload of the agent, the partition bars, the
    // counts and the mode.
    let view = live.view();
    let mut want: Vec<String> = view.workloads.iter().map(|w| w.id.clone()).collect();
    want.sort();
    assert_eq!(want.len(), WORKLOADS);
    let shown = wait_js(
        &client,
        "the workloads listed",
        "return [...document.querySelectorAll('#workloads tr[data-workload]')].map(r => r.dataset.workload);",
        |v| v.as_array().is_some_and(|a| a.len() == WORKLOADS),
    )
    .await;
    let mut shown: Vec<String> = serde_json::from_value(shown).unwrap();
    shown.sort();
    assert_eq!(shown, want);
    let count = find(&client, "#count-workloads .v")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(count, WORKLOADS.to_string());
    let mode = find(&client, "#mode").await.text().await.unwrap();
    assert_eq!(mode, "recommend");
    // One pool (the trace's host gcd000): the partition allocated now and
    // the one planned, a segment per workload (each a positive width), for
    // CPU and memory.
    for kind in ["allocation", "planned"] {
        let bars = client
            .execute(
                &format!(
                    "return [...document.querySelectorAll('svg.bar[data-kind={kind}]')].map(b => {{\
                       const rects = [...b.querySelectorAll('rect[data-workload]')];\
                       return [b.dataset.pool, b.dataset.resource, rects.length,\
                         rects.every(r => Number(r.getAttribute('width')) > 0),\
                         rects.map(r => r.dataset.workload).sort()];\
                     }});"
                ),
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            bars,
            json!([
                ["gcd000", "cpu", WORKLOADS, true, want],
                ["gcd000", "memory", WORKLOADS, true, want]
            ]),
            "{kind} bars"
        );
    }
    let overview_png = client.screenshot().await.unwrap();

    // reqwest is built without a default TLS provider (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    // Operate. A resource request first: the loop answers it, so it must
    // run while the replay does (72 s of wall time at 1200x).
    client.goto(&format!("{base}/#/operate")).await.unwrap();
    let form = find(&client, "#request-form").await;
    let asked_for = want[1].clone();
    choose(&form, "#rq-workload", &asked_for).await;
    choose(&form, "#rq-resource", "cpu").await;
    type_into(&form, "#rq-amount", "0.75").await;
    type_into(&form, "#rq-why", "dashboard test request").await;
    submit(&form).await;
    let notice = wait_js(
        &client,
        "the request's notice",
        "const n = document.querySelector('#op-result .notice'); return n ? n.textContent : null;",
        Value::is_string,
    )
    .await;
    let notice = notice.as_str().unwrap();
    assert!(notice.contains("POST /requests: done (id "), "{notice}");
    let request_id: u64 = notice
        .rsplit("(id ")
        .next()
        .and_then(|t| t.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no id in {notice:?}"));
    let row = find(
        &client,
        &format!("#requests tr[data-request='{request_id}']"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(row.contains(&asked_for) && row.contains("cpu"), "{row}");
    // The loop has it, with its caller and what was asked.
    let requests: Value = http
        .get(format!("{base}/api/v1/requests"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = requests
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == json!(request_id)))
        .unwrap_or_else(|| panic!("request {request_id} not in {requests}"));
    assert_eq!(r["request"]["workload"], json!(asked_for), "{r}");
    assert_eq!(r["request"]["resource"], "cpu", "{r}");
    assert_eq!(r["request"]["amount"], json!(0.75), "{r}");
    assert_eq!(
        r["request"]["justification"], "dashboard test request",
        "{r}"
    );
    assert_eq!(r["requested_by"]["name"], "ops", "{r}");

    // An intent: starts now, an hour, CPU times 2.
    let form = find(&client, "#intent-form").await;
    type_into(&form, "#in-name", "dashboard test intent").await;
    choose(&form, "#in-when", "now").await;
    choose(&form, "#in-resource", "cpu").await;
    submit(&form).await;
    let row = wait_js(
        &client,
        "the intent listed",
        "const r = [...document.querySelectorAll('#intents tr[data-event]')]\
           .find(r => r.textContent.includes('dashboard test intent'));\
         return r ? [r.dataset.event, r.textContent] : null;",
        Value::is_array,
    )
    .await;
    let intent_id: i64 = row[0].as_str().unwrap().parse().unwrap();
    assert!(row[1].as_str().unwrap().contains("×2"), "{row}");
    let intents: Value = http
        .get(format!("{base}/api/v1/intents"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let intent = intents
        .as_array()
        .and_then(|a| a.iter().find(|e| e["id"] == json!(intent_id)))
        .unwrap_or_else(|| panic!("intent {intent_id} not in {intents}"));
    assert_eq!(intent["kind"], "intent");
    assert_eq!(intent["name"], "dashboard test intent");
    assert_eq!(intent["created_by"], "user:ops");
    assert_eq!(intent["effect"], json!({"multiply": 2.0}));
    let once = &intent["schedule"]["once"];
    assert_eq!(
        once["end"].as_i64().unwrap() - once["start"].as_i64().unwrap(),
        3_600_000,
        "{intent}"
    );

    // An invalid event is refused, and the page shows the API's reason.
    let form = find(&client, "#event-form").await;
    type_into(&form, "#ev-name", "dashboard test event").await;
    choose(&form, "#ev-schedule", "cron").await;
    type_into(&form, "#ev-cron", "not a cron").await;
    submit(&form).await;
    let error = wait_js(&client, "the refusal shown", ERROR_TEXT, Value::is_string).await;
    let error = error.as_str().unwrap();
    assert!(error.contains("POST /events"), "{error}");
    assert!(
        error.contains("HTTP 400") || error.contains("HTTP 422"),
        "{error}"
    );
    assert!(error.contains("cron"), "{error}");

    // A valid one: a window (the defaults: the agent's now for an hour),
    // CPU times 3.
    let form = find(&client, "#event-form").await;
    choose(&form, "#ev-schedule", "once").await;
    let amount = field(&form, "#ev-amount").await;
    amount.clear().await.unwrap();
    amount.send_keys("3").await.unwrap();
    choose(&form, "#ev-resource", "cpu").await;
    submit(&form).await;
    let row = wait_js(
        &client,
        "the event listed",
        "const r = [...document.querySelectorAll('#events tr[data-event]')]\
           .find(r => r.textContent.includes('dashboard test event'));\
         return r ? [r.dataset.event, r.textContent] : null;",
        Value::is_array,
    )
    .await;
    let event_id: i64 = row[0].as_str().unwrap().parse().unwrap();
    let text = row[1].as_str().unwrap();
    assert!(
        text.contains("×3") && text.contains("cpu") && text.contains("active"),
        "{text}"
    );
    let notice = find(&client, "#op-result .notice")
        .await
        .text()
        .await
        .unwrap();
    assert!(notice.contains("POST /events: done"), "{notice}");
    assert_eq!(
        client.execute(ERROR_TEXT, vec![]).await.unwrap(),
        Value::Null
    );

    // The API has it.
    let ev = api_event(&http, &base, "", event_id).await;
    assert_eq!(ev["name"], "dashboard test event");
    assert_eq!(ev["effect"], json!({"multiply": 3.0}));
    assert_eq!(ev["resource"], "cpu");
    assert!(ev["cancelled_at"].is_null());

    // The audit trail shows its creation, newest first.
    client.goto(&format!("{base}/#/audit")).await.unwrap();
    let rows = wait_js(
        &client,
        "the audit trail",
        "return [...document.querySelectorAll('#audit-table tbody tr')].map(r => r.textContent);",
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let rows: Vec<String> = serde_json::from_value(rows).unwrap();
    for (what, target) in [
        ("event.create", format!("event/{event_id}")),
        ("event.create", format!("event/{intent_id}")),
        ("api.request.create", format!("request/{request_id}")),
    ] {
        assert!(
            rows.iter()
                .any(|r| r.contains("user:ops") && r.contains(what) && r.contains(&target)),
            "no audit entry {what} {target} by ops: {rows:?}"
        );
    }

    // Cancelling it from the page.
    client.goto(&format!("{base}/#/operate")).await.unwrap();
    find(&client, &format!("button[data-cancel-event='{event_id}']"))
        .await
        .click()
        .await
        .unwrap();
    wait_js(
        &client,
        "the event cancelled",
        &format!(
            "const b = document.querySelector(\"button[data-cancel-event='{event_id}']\");\
             const n = document.querySelector('#op-result .notice');\
             return !b && n ? n.textContent : null;"
        ),
        Value::is_string,
    )
    .await;
    let ev = api_event(&http, &base, "?include_cancelled=true", event_id).await;
    assert!(ev["cancelled_at"].is_i64(), "{ev}");

    // A workload's page: each chart has the actual, forecast band and
    // allocation series, with points and path data.
    let id = want[0].clone();
    client
        .goto(&format!("{base}/#/workload/{id}?range=1d"))
        .await
        .unwrap();
    let charts = wait_js(
        &client,
        "the workload's charts drawn",
        &format!(
            "const page = document.querySelector('#workload[data-workload=\"{id}\"]');\
             if (!page) return null;\
             return [...page.querySelectorAll('svg.chart')].map(c => ({{\
               resource: c.dataset.resource,\
               series: Object.fromEntries([...c.querySelectorAll('path[data-series]')].map(p =>\
                 [p.dataset.series, [Number(p.dataset.points), (p.getAttribute('d') || '').length]]))\
             }}));"
        ),
        |v| v.as_array().is_some_and(|a| a.len() == 2),
    )
    .await;
    for chart in charts.as_array().unwrap() {
        let r = chart["resource"].as_str().unwrap();
        // The API gives the allocation at its changes only (a step
        // function), so one point is a line held to the end of the window.
        for (s, min) in [
            ("actual", 2.0),
            ("forecast", 2.0),
            ("forecast-median", 2.0),
            ("allocation", 1.0),
        ] {
            let points = chart["series"][s][0].as_f64().unwrap_or(0.0);
            let d = chart["series"][s][1].as_f64().unwrap_or(0.0);
            assert!(points >= min, "{r} {s}: {points} points ({chart})");
            assert!(d > 10.0, "{r} {s}: empty path ({chart})");
        }
    }
    assert_eq!(
        charts
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["resource"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["cpu", "memory"]
    );
    // The range selector: 6 h is a link to the same page with that range.
    let six = find(&client, ".ranges a[data-range='6h']").await;
    six.click().await.unwrap();
    wait_js(
        &client,
        "the 6h range active",
        "const a = document.querySelector('.ranges a.active'); return a ? a.dataset.range : null;",
        |v| v == "6h",
    )
    .await;
    let png = client.screenshot().await.unwrap();
    let dir = dashboard_support::target_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard-screenshot.png"), &png).unwrap();
    std::fs::write(dir.join("dashboard-overview.png"), &overview_png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));

    // Anomaly and event marks. The replay finds outliers in this trace
    // (the first about 10,500 s into it): wait for one, mark an event
    // around it through the API, and look at its workload's chart.
    let anomaly = dashboard_support::wait_for(Duration::from_secs(120), || {
        live.view().anomalies.first().cloned()
    })
    .unwrap_or_else(|| panic!("the replay found no anomaly within 120 s"));
    let (aw, ar) = (anomaly.workload.clone(), anomaly.resource.as_str());
    let created: Value = http
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(OPERATOR_TOKEN)
        .json(
            &json!({"kind": "maintenance", "name": "around the anomaly", "selector": aw,
            "schedule": {"once": {"start": anomaly.at - 1_800_000, "end": anomaly.at + 1_800_000}},
            "effect": {"multiply": 1.0}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mark_id = created["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{created}"));
    client
        .goto(&format!("{base}/#/workload/{aw}?range=1d"))
        .await
        .unwrap();
    let marks = wait_js(
        &client,
        "the anomaly and event marks drawn",
        &format!(
            "const page = document.querySelector('#workload[data-workload=\"{aw}\"]');\
             const c = page && page.querySelector('svg.chart[data-resource=\"{ar}\"]');\
             if (!c) return null;\
             const ev = c.querySelector('rect.event[data-event=\"{mark_id}\"]');\
             return {{\
               anomalies: [...c.querySelectorAll('g.anomaly-mark')].map(g => [g.dataset.kind,\
                 Number(g.querySelector('line').getAttribute('x1'))]),\
               event: ev ? [Number(ev.getAttribute('x')), Number(ev.getAttribute('width'))] : null\
             }};"
        ),
        |v| v["event"].is_array() && v["anomalies"].as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    // The anomaly's mark sits inside the event's span drawn around it.
    let (ex, ew) = (
        marks["event"][0].as_f64().unwrap(),
        marks["event"][1].as_f64().unwrap(),
    );
    assert!(ew > 0.0, "{marks}");
    let inside: Vec<&Value> = marks["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m[0] == json!(anomaly.kind))
        .filter(|m| m[1].as_f64().is_some_and(|x| x > ex && x < ex + ew))
        .collect();
    assert!(
        !inside.is_empty(),
        "no {} mark inside the event's span [{ex}, {}]: {marks}",
        anomaly.kind,
        ex + ew
    );

    client.close().await.unwrap();
    drop(driver);
    drop(profile);
    drop(live);
}
