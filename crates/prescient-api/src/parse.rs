//! Request parsing: query parameters and JSON bodies, each error a 4xx
//! naming the parameter or field at fault. Public so that they can be
//! tested on arbitrary input directly, not only through HTTP.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use prescient_core::{Resource, TimestampMs};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// Longest id (workload, in a path) accepted; longer ones are refused
/// rather than echoed back in errors.
pub const MAX_ID_LEN: usize = 256;

/// Query parameters, taken one by one; [`Params::finish`] refuses any left
/// over (a misspelt parameter is an error, not silently ignored).
#[derive(Debug)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses a raw query string (`a=1&b=x`, percent-decoded).
    pub fn parse(query: &str) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| ApiError::BadRequest {
                message: format!("query string: {e}"),
                field: None,
            })?;
        for (i, (k, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(other, _)| other == k) {
                return Err(ApiError::bad(
                    k.clone(),
                    format!("query parameter {k:?} is given more than once"),
                ));
            }
        }
        Ok(Params { pairs })
    }

    /// Takes parameter `name`'s text.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == name)?;
        Some(self.pairs.swap_remove(i).1)
    }

    /// Takes an integer of milliseconds.
    pub fn ms(&mut self, name: &str) -> Result<Option<TimestampMs>, ApiError> {
        self.take(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ApiError::bad(
                        name,
                        format!(
                            "query parameter {name}={:?}: expected an integer of milliseconds since the epoch",
                            clip(&v)
                        ),
                    )
                })
            })
            .transpose()
    }

    /// Takes a count.
    pub fn count(&mut self, name: &str, max: usize) -> Result<Option<usize>, ApiError> {
        self.take(name)
            .map(|v| match v.trim().parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ApiError::bad(
                    name,
                    format!(
                        "query parameter {name}={:?}: expected an integer from 0 to {max}",
                        clip(&v)
                    ),
                )),
            })
            .transpose()
    }

    /// Takes a boolean (`true`/`false`).
    pub fn flag(&mut self, name: &str) -> Result<Option<bool>, ApiError> {
        self.take(name)
            .map(|v| match v.trim() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiError::bad(
                    name,
                    format!(
                        "query parameter {name}={:?}: expected true or false",
                        clip(&v)
                    ),
                )),
            })
            .transpose()
    }

    /// Takes a resource name.
    pub fn resource(&mut self, name: &str) -> Result<Option<Resource>, ApiError> {
        self.take(name)
            .map(|v| {
                v.trim()
                    .parse::<Resource>()
                    .map_err(|e| ApiError::bad(name, format!("query parameter {name}: {e}")))
            })
            .transpose()
    }

    /// Refuses parameters not taken.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::bad(
                clip(k),
                format!("unknown query parameter {:?}", clip(k)),
            )),
        }
    }
}

/// The first 100 characters of `s`, for error messages.
pub fn clip(s: &str) -> String {
    if s.chars().count() <= 100 {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(100).collect();
        out.push('…');
        out
    }
}

/// Checks an id taken from a path: not empty, not too long.
pub fn path_id(what: &'static str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad("id", format!("{what} id is empty")));
    }
    if id.len() > MAX_ID_LEN {
        return Err(ApiError::bad(
            "id",
            format!("{what} id is {} bytes long: at most {MAX_ID_LEN}", id.len()),
        ));
    }
    Ok(())
}

/// Parses a JSON body as `T`; an error names the field at fault
/// (`schedule.once.start`) and is a 400.
pub fn json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = (path != ".").then_some(path);
        ApiError::BadRequest {
            message: match &field {
                Some(f) => format!("JSON body: field `{f}`: {inner}"),
                None => format!("JSON body: {inner}"),
            },
            field,
        }
    })?;
    // Trailing characters after the value are an error too.
    let mut rest = serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>();
    rest.next();
    if rest.next().is_some() {
        return Err(ApiError::BadRequest {
            message: "JSON body: more than one value".into(),
            field: None,
        });
    }
    Ok(value)
}

/// A UTF-8 text body (`text/plain`, `application/toml`, `text/toml` or
/// `text/x-toml`), for `PUT /config`: 413 past `api.max_body`, 415 for
/// another content type, 400 when it is not UTF-8.
#[derive(Debug, Clone)]
pub struct TomlBody(pub String);

/// The content types [`TomlBody`] takes.
pub const TOML_TYPES: [&str; 4] = ["application/toml", "text/toml", "text/x-toml", "text/plain"];

impl FromRequest<AppState> for TomlBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let text_type =
            media_type(&req).is_some_and(|m| TOML_TYPES.iter().any(|t| m.eq_ignore_ascii_case(t)));
        if !text_type {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be the configuration as TOML (Content-Type: application/toml or text/plain)".into(),
            ));
        }
        let bytes = body_bytes(req, state).await?;
        String::from_utf8(bytes.to_vec())
            .map(TomlBody)
            .map_err(|e| ApiError::BadRequest {
                message: format!(
                    "the body is not UTF-8 text (byte {} is not)",
                    e.utf8_error().valid_up_to()
                ),
                field: None,
            })
    }
}

/// The media type of a request's `Content-Type`, without parameters.
fn media_type(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
}

/// The whole body: 413 past `api.max_body`, 400 when it cannot be read.
async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: state.max_body(),
            }
        } else {
            ApiError::BadRequest {
                message: format!("reading the body: {}", e.body_text()),
                field: None,
            }
        }
    })
}

/// A JSON body extractor whose errors are the API's (400 naming the field,
/// 413 past `api.max_body`, 415 without a JSON content type).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T> FromRequest<AppState> for JsonBody<T>
where
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let json_type = media_type(&req).is_some_and(|m| {
            m.eq_ignore_ascii_case("application/json")
                || (m.starts_with("application/") && m.ends_with("+json"))
        });
        if !json_type {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be JSON (Content-Type: application/json)".into(),
            ));
        }
        let bytes = body_bytes(req, state).await?;
        json(&bytes).map(JsonBody)
    }
}
