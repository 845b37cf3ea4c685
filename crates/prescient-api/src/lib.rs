//! Prescient's HTTP server: the REST API under `/api/v1`, the web
//! dashboard at `/`, and Prometheus metrics at `/metrics`, served from a
//! running agent's [`ControlHandle`](prescient_agent::control::ControlHandle)
//! and its store.
//!
//! ```no_run
//! use prescient_agent::config::Config;
//! use prescient_agent::control::Control;
//!
//! let mut config = Config::default();
//! config.store.path = "/tmp/prescient.db".into();
//! config.api.listen = "127.0.0.1:0".into();
//! let (handle, _port) = Control::new(); // the port goes to the agent loop
//! let server = prescient_api::serve(&config, handle)?;
//! println!("http://{}/api/v1/health", server.addr());
//! server.shutdown();
//! # Ok::<(), prescient_api::ApiError>(())
//! ```
//!
//! - [`serve`] starts the server on a background thread (its own tokio
//!   runtime, two workers) and returns a [`Server`] that stops it
//!   gracefully on [`Server::shutdown`] or drop.
//! - [`router`] is the whole application, for tests to drive directly.
//! - [`AppState`] is what handlers share (`state.control.view()`,
//!   `state.with_store(..)`).
//! - Access control and rate limits: [`auth`]. The document of every route
//!   is [`openapi()`], served at `/api/v1/openapi.json` and committed as
//!   `crates/prescient-api/openapi.json`.

pub mod auth;
pub mod dashboard;
pub mod dto;
pub mod error;
pub mod metrics;
pub mod parse;
pub mod routes;
pub mod series;
mod server;
pub mod state;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use auth::hash_token;
pub use error::ApiError;
pub use server::{Server, serve, serve_state};
pub use state::AppState;

/// The content type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The document's header; the paths and schemas come from the routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Prescient API",
        description = "Predictive resource partitioning: the live state of an agent, its history, and the calls that steer it. With `[[api.token]]` configured, every route but `/api/v1/health` needs `Authorization: Bearer <token>`; writes need the operator role (events, intents, requests) or admin (mode, replan, configuration). Without tokens the API is read-only. Times are ms since the epoch on the agent's clock.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Declares the bearer scheme and applies it to every operation.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The routes that are documented, with their document.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::status))
        .routes(routes!(routes::workloads))
        .routes(routes!(routes::workload))
        .routes(routes!(series::series))
        .routes(routes!(routes::plans))
        .routes(routes!(routes::plan_history))
        .routes(routes!(routes::pools))
        .routes(routes!(routes::models))
        .routes(routes!(routes::anomalies))
        .routes(routes!(routes::alerts))
        .routes(routes!(routes::audit_log))
        .routes(routes!(routes::list_events, routes::create_event))
        .routes(routes!(routes::cancel_event))
        .routes(routes!(routes::list_intents, routes::create_intent))
        .routes(routes!(routes::list_requests, routes::create_request))
        .routes(routes!(routes::cancel_request))
        .routes(routes!(routes::config, routes::put_config))
        .routes(routes!(routes::set_mode))
        .routes(routes!(routes::replan))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics_text))
}

/// The OpenAPI document of every route, generated from the handlers and
/// the DTOs.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().into_openapi()
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = routes::TAG,
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> impl IntoResponse {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| openapi().to_pretty_json().unwrap_or_default());
    ([(header::CONTENT_TYPE, "application/json")], doc.as_str())
}

/// Prometheus metrics of the agent (the OpenMetrics text format).
#[utoipa::path(get, path = "/metrics", tag = routes::TAG,
    responses((status = 200, description = "OpenMetrics text exposition", body = String,
        content_type = "application/openmetrics-text")))]
async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let view = state.control.view();
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        metrics::render(&view),
    )
}

/// The whole application: the API, `/metrics` and the dashboard, behind the
/// access gate ([`auth::gate`]), with the body limit of `api.max_body`.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    let app = api.merge(dashboard::router());
    app.fallback(not_found)
        .layer(DefaultBodyLimit::max(state.max_body()))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::gate,
        ))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound {
        what: "route",
        id: parse::clip(uri.path()),
    }
}
