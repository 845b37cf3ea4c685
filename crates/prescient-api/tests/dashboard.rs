//! The dashboard in a real headless Chromium (through chromedriver), over
//! a real API server in front of a real agent replaying the committed
//! sample trace `data/sample/gcd.csv.gz`.

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
async fn dashboard_shows_the_replayed_agent_and_creates_an_event() {
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
    // One pool (the trace's host gcd000): allocation segments per
    // workload, for CPU and memory.
    let bars = client
        .execute(
            "return [...document.querySelectorAll('svg.bar[data-kind=allocation]')].map(b => \
             [b.dataset.pool, b.dataset.resource, b.querySelectorAll('rect[data-workload]').length]);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        bars,
        json!([
            ["gcd000", "cpu", WORKLOADS],
            ["gcd000", "memory", WORKLOADS]
        ]),
        "allocation bars"
    );
    let overview_png = client.screenshot().await.unwrap();

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

    // Operate: an invalid event is refused, and the page shows the API's
    // reason.
    client.goto(&format!("{base}/#/operate")).await.unwrap();
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
    // reqwest is built without a default TLS provider (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
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
    assert!(
        rows.iter()
            .any(|r| r.contains("ops") && r.contains("event")),
        "no audit entry for the event: {rows:?}"
    );

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

    client.close().await.unwrap();
    drop(driver);
    drop(profile);
    drop(live);
}
