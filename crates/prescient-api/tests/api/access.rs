//! Who may call what: every caller against every route, the read-only mode
//! without tokens, and the rate limit.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::json;

use crate::fixture::*;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing (`/health`).
    Open,
    /// A token of any role (when tokens are configured).
    Read,
    /// The operator role or above.
    Operator,
    /// The admin role.
    Admin,
}

/// A request body.
pub enum Body {
    Json(serde_json::Value),
    /// TOML text (`PUT /config`).
    Toml(&'static str),
}

/// One call of the table: the route's template (as the OpenAPI document
/// names it), the concrete path, and a body.
pub struct Call {
    pub method: Method,
    pub template: &'static str,
    pub path: String,
    pub body: Option<Body>,
    pub needs: Needs,
}

impl Call {
    /// `r` with this call's body.
    pub fn with_body(
        &self,
        r: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.body {
            None => r,
            Some(Body::Json(v)) => r.json(v),
            Some(Body::Toml(t)) => r.header("content-type", "application/toml").body(*t),
        }
    }
}

/// Every route of the API, each with a call that is valid for a caller
/// allowed to make it.
pub fn every_route() -> Vec<Call> {
    let call = |method, template, path: &str, body: Option<serde_json::Value>, needs| Call {
        method,
        template,
        path: path.to_string(),
        body: body.map(Body::Json),
        needs,
    };
    let g = Method::GET;
    vec![
        call(
            g.clone(),
            "/api/v1/health",
            "/api/v1/health",
            None,
            Needs::Open,
        ),
        call(
            g.clone(),
            "/api/v1/status",
            "/api/v1/status",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/workloads",
            "/api/v1/workloads",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/workloads/{id}",
            "/api/v1/workloads/web",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/workloads/{id}/series",
            "/api/v1/workloads/web/series?resource=cpu",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/plans",
            "/api/v1/plans",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/plans/history",
            "/api/v1/plans/history",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/pools",
            "/api/v1/pools",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/models",
            "/api/v1/models",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/anomalies",
            "/api/v1/anomalies",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/alerts",
            "/api/v1/alerts",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/audit",
            "/api/v1/audit?limit=5",
            None,
            Needs::Read,
        ),
        call(
            g.clone(),
            "/api/v1/events",
            "/api/v1/events",
            None,
            Needs::Read,
        ),
        call(
            Method::POST,
            "/api/v1/events",
            "/api/v1/events",
            Some(json!({"kind": "sale", "selector": "web",
                "schedule": {"once": {"start": NOW, "end": NOW + 3_600_000}},
                "effect": {"multiply": 1.5}})),
            Needs::Operator,
        ),
        call(
            Method::DELETE,
            "/api/v1/events/{id}",
            "/api/v1/events/1",
            None,
            Needs::Operator,
        ),
        call(
            g.clone(),
            "/api/v1/intents",
            "/api/v1/intents",
            None,
            Needs::Read,
        ),
        call(
            Method::POST,
            "/api/v1/intents",
            "/api/v1/intents",
            Some(json!({"name": "import", "selector": "db", "start": "now",
                "duration_ms": 3_600_000, "effect": {"multiply": 3.0}, "resource": "cpu"})),
            Needs::Operator,
        ),
        call(
            g.clone(),
            "/api/v1/requests",
            "/api/v1/requests",
            None,
            Needs::Read,
        ),
        call(
            Method::POST,
            "/api/v1/requests",
            "/api/v1/requests",
            Some(
                json!({"workload": "web", "resource": "cpu", "amount": 4.0, "priority": 1,
                "justification": "launch", "duration_s": 600}),
            ),
            Needs::Operator,
        ),
        call(
            Method::DELETE,
            "/api/v1/requests/{id}",
            "/api/v1/requests/1",
            None,
            Needs::Operator,
        ),
        call(
            g.clone(),
            "/api/v1/config",
            "/api/v1/config",
            None,
            Needs::Read,
        ),
        Call {
            method: Method::PUT,
            template: "/api/v1/config",
            path: "/api/v1/config".into(),
            body: Some(Body::Toml("[agent]\nplan_interval = \"20s\"\n")),
            needs: Needs::Admin,
        },
        call(
            Method::PUT,
            "/api/v1/mode",
            "/api/v1/mode",
            Some(json!({"mode": "enforce"})),
            Needs::Admin,
        ),
        call(
            Method::POST,
            "/api/v1/replan",
            "/api/v1/replan",
            None,
            Needs::Admin,
        ),
        call(
            g.clone(),
            "/api/v1/openapi.json",
            "/api/v1/openapi.json",
            None,
            Needs::Read,
        ),
        call(g, "/metrics", "/metrics", None, Needs::Read),
    ]
}

/// A caller of the table.
#[derive(Debug, Clone, Copy)]
enum Who {
    Nobody,
    Viewer,
    Operator,
    Admin,
    WrongToken,
    Malformed,
}

fn send(f: &Fixture, who: Who, c: &Call) -> reqwest::blocking::Response {
    let mut r = f.http.request(c.method.clone(), f.url(&c.path));
    r = match who {
        Who::Nobody => r,
        Who::Viewer => r.bearer_auth(VIEWER),
        Who::Operator => r.bearer_auth(OPERATOR),
        Who::Admin => r.bearer_auth(ADMIN),
        Who::WrongToken => r.bearer_auth("not-a-token"),
        Who::Malformed => r.header("Authorization", "Basic b3BzOnNlY3JldA=="),
    };
    c.with_body(r).send().unwrap()
}

#[test]
fn every_caller_against_every_route_is_allowed_or_refused_as_its_role_says() {
    let f = Fixture::new();
    let mut failures = Vec::new();
    for who in [
        Who::Nobody,
        Who::Viewer,
        Who::Operator,
        Who::Admin,
        Who::WrongToken,
        Who::Malformed,
    ] {
        for c in every_route() {
            let role_ok = match c.needs {
                Needs::Open => true,
                Needs::Read => matches!(who, Who::Viewer | Who::Operator | Who::Admin),
                Needs::Operator => matches!(who, Who::Operator | Who::Admin),
                Needs::Admin => matches!(who, Who::Admin),
            };
            let authenticated = matches!(who, Who::Viewer | Who::Operator | Who::Admin);
            let r = send(&f, who, &c);
            let status = r.status().as_u16();
            let text = r.text().unwrap_or_default();
            let expected_ok = if role_ok {
                // Allowed: a success, or (a delete made again by the next
                // caller) the resource's own answer, never 401/403.
                (200..300).contains(&status) || status == 409
            } else if authenticated {
                status == 403
            } else {
                status == 401
            };
            if !expected_ok {
                failures.push(format!(
                    "{who:?} {} {}: got {status} {text}",
                    c.method, c.path
                ));
            }
            if status == 401 || status == 403 {
                let body: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert!(body["error"].is_string(), "{text}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn without_tokens_every_read_is_open_and_every_write_refused() {
    let f = Fixture::with(false, |_| {});
    for c in every_route() {
        // A token is meaningless here: it neither opens nor closes anything.
        for token in [None, Some("anything")] {
            let mut r = f.http.request(c.method.clone(), f.url(&c.path));
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            let r = c.with_body(r).send().unwrap();
            let status = r.status().as_u16();
            let text = r.text().unwrap();
            match c.needs {
                Needs::Open | Needs::Read => {
                    assert_eq!(status, 200, "{} {}: {text}", c.method, c.path)
                }
                Needs::Operator | Needs::Admin => {
                    assert_eq!(status, 403, "{} {}: {text}", c.method, c.path);
                    assert!(
                        text.contains("the API is read-only: no tokens are configured"),
                        "{text}"
                    );
                }
            }
        }
    }
    // Nothing was written and nothing reached the loop.
    assert!(f.fake.commands().is_empty(), "{:?}", f.fake.commands());
    assert!(
        !f.audit()
            .iter()
            .any(|e| e["actor"].as_str().unwrap().starts_with("user:"))
    );
}

#[test]
fn the_table_covers_every_route_of_the_document_and_every_documented_route_is_served() {
    let doc = serde_json::to_value(prescient_api::openapi()).unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let tabled: BTreeSet<(String, String)> = every_route()
        .iter()
        .map(|c| (c.method.to_string(), c.template.to_string()))
        .collect();
    assert_eq!(documented, tabled, "the document and the table differ");
    // Each documented route is served (not the fallback's 404 for an
    // unknown route, nor 405 for an unknown method).
    let f = Fixture::new();
    for c in every_route() {
        let r = send(&f, Who::Admin, &c);
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        let unrouted = status == 404
            && serde_json::from_str::<serde_json::Value>(&text)
                .is_ok_and(|e| e["detail"]["kind"] == "route");
        assert!(
            status != 405 && !unrouted,
            "{} {}: {status} {text}",
            c.method,
            c.path
        );
    }
    let r = f.get("/api/v1/nope", Some(VIEWER));
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["detail"]["kind"],
        "route"
    );
}

#[test]
fn the_rate_limit_answers_429_with_retry_after_and_spares_other_callers() {
    let f = Fixture::with(true, |c| c.api.rate_limit = 2);
    // A burst of twice the rate passes; then 429.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(f.get("/api/v1/status", Some(VIEWER)).status().as_u16());
    }
    assert_eq!(&statuses[..4], &[200; 4], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = f.get("/api/v1/status", Some(VIEWER));
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let body: serde_json::Value = r.json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("rate limit"),
        "{body}"
    );
    // Another token is its own caller.
    assert_eq!(f.get("/api/v1/status", Some(OPERATOR)).status(), 200);
    assert_eq!(f.get("/api/v1/status", Some(ADMIN)).status(), 200);
}
