//! The API's errors and how they are answered: a status and a JSON body
//! `{"error": "...", "detail": ...}`.

use std::path::PathBuf;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Why the server could not start, or why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    // --- starting the server -------------------------------------------
    /// `api.listen` is not an address, or cannot be bound.
    #[error("api.listen {addr:?}: {reason}")]
    Listen {
        /// The configured address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A TLS certificate or key file cannot be used.
    #[error("{key} {}: {reason}", path.display())]
    Tls {
        /// `api.tls_cert` or `api.tls_key`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The `[api]` configuration cannot be used as it is.
    #[error("{0}")]
    Config(String),
    /// The server's runtime or thread could not be started.
    #[error("starting the API server: {0}")]
    Runtime(String),

    // --- answering a request -------------------------------------------
    /// Bad input (a query parameter, a body field): 400. `field` names it.
    #[error("{message}")]
    BadRequest {
        /// What is wrong, naming the parameter or field.
        message: String,
        /// The parameter or field at fault, when there is one.
        field: Option<String>,
    },
    /// No or an unknown bearer token: 401.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this: 403.
    #[error("{0}")]
    Forbidden(String),
    /// No such workload, event, request, ...: 404 naming the id.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// `workload`, `event`, `request`, ...
        what: &'static str,
        /// The id as given.
        id: String,
    },
    /// The state does not allow it (an event cancelled twice): 409.
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than `api.max_body`: 413.
    #[error("request body larger than {limit} bytes (api.max_body)")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// The body is not JSON (`Content-Type`): 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but refused (validation, the loop's answer): 422.
    #[error("{0}")]
    Unprocessable(String),
    /// A configuration refused (`PUT /config`): 422, naming each bad key
    /// and its value in the message and in `detail`.
    #[error("configuration refused, the running one kept: {0}")]
    ConfigRefused(#[source] prescient_agent::ConfigError),
    /// Over the caller's rate limit: 429 with `Retry-After`.
    #[error("rate limit of {limit} requests/s exceeded for {caller}; retry in {retry_after_s} s")]
    RateLimited {
        /// Who.
        caller: String,
        /// The configured rate.
        limit: u32,
        /// Seconds until a request is allowed again.
        retry_after_s: u64,
    },
    /// The agent loop did not answer in time, or has stopped: 503.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed: 500.
    #[error("store: {0}")]
    Store(#[from] prescient_store::StoreError),
    /// Anything else that should not happen: 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) | ApiError::ConfigRefused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Listen { .. }
            | ApiError::Tls { .. }
            | ApiError::Config(_)
            | ApiError::Runtime(_)
            | ApiError::Store(_)
            | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn detail(&self) -> serde_json::Value {
        match self {
            ApiError::BadRequest {
                field: Some(field), ..
            } => serde_json::json!({ "field": field }),
            ApiError::NotFound { what, id } => serde_json::json!({ "kind": what, "id": id }),
            ApiError::TooLarge { limit } => serde_json::json!({ "limit_bytes": limit }),
            ApiError::RateLimited {
                retry_after_s,
                limit,
                ..
            } => serde_json::json!({ "retry_after_s": retry_after_s, "limit_per_s": limit }),
            ApiError::ConfigRefused(e) => config_error_detail(e),
            _ => serde_json::Value::Null,
        }
    }
}

/// `{"issues": [{"key", "value", "problem"}]}` for bad values,
/// `{"key", "at", "problem"}` for text that does not parse (an unknown
/// key, a value of the wrong type).
fn config_error_detail(e: &prescient_agent::ConfigError) -> serde_json::Value {
    use prescient_agent::ConfigError;
    match e {
        ConfigError::Invalid { issues, .. } => serde_json::json!({
            "issues": issues
                .iter()
                .map(|i| serde_json::json!({ "key": i.key, "value": i.value, "problem": i.problem }))
                .collect::<Vec<_>>()
        }),
        ConfigError::Parse {
            key, at, message, ..
        } => {
            serde_json::json!({ "key": key, "at": at.trim_start_matches(':'), "problem": message })
        }
        ConfigError::Read { .. } | ConfigError::Env { .. } => serde_json::Value::Null,
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, in words a person can read.
    pub error: String,
    /// Machine-readable details (the field at fault, the id not found, ...),
    /// or null.
    #[schema(value_type = Object, nullable = true)]
    pub detail: serde_json::Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            log::warn!("API: {self}");
        }
        let body = ErrorBody {
            error: self.to_string(),
            detail: self.detail(),
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_s, .. } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(1)));
        }
        response
    }
}
