//! Access control: bearer tokens (kept as their SHA-256, compared in
//! constant time), roles, and a rate limit per caller.
//!
//! The rule, applied by [`gate`] to every request before it is routed:
//!
//! - With no `[[api.token]]` configured, every read is open and every write
//!   is refused (403: the API is read-only).
//! - With tokens, every `/api/v1` route but `/api/v1/health`, and
//!   `/metrics`, need `Authorization: Bearer <token>` (401 otherwise); the
//!   writes need the operator or admin role ([`Operator`], [`Admin`]).
//! - Every caller (a token's name, or the client's IP address without a
//!   valid token) may make `api.rate_limit` requests a second, in bursts of
//!   twice that (429 with `Retry-After` beyond it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prescient_agent::config::{Role, TokenConfig};
use prescient_agent::control::Caller;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The hex SHA-256 of a token, as `[[api.token]] sha256` wants it.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A configured token, its hash decoded.
#[derive(Debug, Clone)]
pub(crate) struct KnownToken {
    name: String,
    role: Role,
    sha256: [u8; 32],
}

/// Decodes the configured tokens' hashes; a hash that is not 64 hex digits
/// is an error naming the token.
pub(crate) fn known_tokens(tokens: &[TokenConfig]) -> Result<Vec<KnownToken>, ApiError> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let bad = || {
                ApiError::Config(format!(
                    "api.token[{i}].sha256 (token {:?}): must be 64 hex digits (`prescient api hash-token`)",
                    t.name
                ))
            };
            let hex = t.sha256.as_bytes();
            if hex.len() != 64 {
                return Err(bad());
            }
            let mut sha256 = [0u8; 32];
            for (k, pair) in hex.chunks(2).enumerate() {
                let text = std::str::from_utf8(pair).map_err(|_| bad())?;
                sha256[k] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
            }
            Ok(KnownToken {
                name: t.name.clone(),
                role: t.role,
                sha256,
            })
        })
        .collect()
}

/// Who is calling, as the gate found it (in the request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name, or `anonymous`.
    pub name: String,
    /// The token's role; `None` without a valid token.
    pub role: Option<Role>,
    /// The client's address (`ip:port`), or `unknown`.
    pub address: String,
}

impl Identity {
    /// The caller as the agent loop and the audit log name it.
    pub fn caller(&self) -> Caller {
        Caller {
            name: self.name.clone(),
            address: self.address.clone(),
        }
    }

    /// The audit log's actor for this caller.
    pub fn actor(&self) -> String {
        format!("user:{}", self.name)
    }
}

/// What the `Authorization` header says.
#[derive(Debug, PartialEq)]
enum Presented {
    None,
    Valid(String, Role),
    Invalid(&'static str),
}

impl Presented {
    /// The answer to a request that needs a token and presented this: none
    /// for a valid token, else a 401 saying why.
    fn refusal(&self) -> Option<ApiError> {
        match self {
            Presented::Valid(..) => None,
            Presented::None => Some(ApiError::Unauthorized(
                "this API needs `Authorization: Bearer <token>`".into(),
            )),
            Presented::Invalid(why) => Some(ApiError::Unauthorized((*why).into())),
        }
    }
}

fn presented(headers: &HeaderMap, tokens: &[KnownToken]) -> Presented {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Presented::None;
    };
    let Ok(value) = value.to_str() else {
        return Presented::Invalid("the Authorization header is not ASCII text");
    };
    let mut parts = value.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default().trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Presented::Invalid("the Authorization header must be `Bearer <token>`");
    }
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    // Compare with every token, without stopping at a match, so the time
    // taken does not tell which (or whether one) matched early.
    let mut found: Option<&KnownToken> = None;
    for t in tokens {
        if bool::from(t.sha256.ct_eq(&digest)) {
            found = Some(t);
        }
    }
    match found {
        Some(t) => Presented::Valid(t.name.clone(), t.role),
        None => Presented::Invalid("unknown bearer token"),
    }
}

/// Whether `path` needs a token when tokens are configured.
fn needs_token(path: &str) -> bool {
    (path.starts_with("/api/") && path != "/api/v1/health") || path == "/metrics"
}

/// The middleware applying the access rule and the rate limit (see the
/// module docs), and putting the [`Identity`] in the request's extensions.
pub async fn gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let address = peer.map_or_else(|| "unknown".to_string(), |a| a.to_string());
    let ip = peer.map_or_else(|| "unknown".to_string(), |a| a.ip().to_string());
    let seen = presented(req.headers(), &state.tokens);
    let (identity, key) = match &seen {
        Presented::Valid(name, role) => (
            Identity {
                name: name.clone(),
                role: Some(*role),
                address,
            },
            format!("token {name:?}"),
        ),
        Presented::None | Presented::Invalid(_) => (
            Identity {
                name: "anonymous".into(),
                role: None,
                address,
            },
            format!("address {ip}"),
        ),
    };
    if let Err(retry_after_s) = state.limiter.check(&key) {
        return ApiError::RateLimited {
            caller: key,
            limit: state.limiter.rate(),
            retry_after_s,
        }
        .into_response();
    }
    if !state.tokens.is_empty()
        && needs_token(req.uri().path())
        && let Some(refused) = seen.refusal()
    {
        return refused.into_response();
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// The caller's identity, required to hold at least `role` for a write.
fn require(parts: &Parts, state: &AppState, role: Role) -> Result<Identity, ApiError> {
    if state.tokens.is_empty() {
        return Err(ApiError::Forbidden(
            "the API is read-only: no tokens are configured".into(),
        ));
    }
    let identity = parts.extensions.get::<Identity>().cloned().ok_or_else(|| {
        ApiError::Unauthorized("no caller identity (not through the gate)".into())
    })?;
    match identity.role {
        Some(r) if r >= role => Ok(identity),
        Some(r) => Err(ApiError::Forbidden(format!(
            "token {:?} has the {r} role; this needs {role} or above",
            identity.name
        ))),
        None => Err(ApiError::Unauthorized(
            "this API needs `Authorization: Bearer <token>`".into(),
        )),
    }
}

/// Extracts the caller of a write that needs the operator role.
#[derive(Debug, Clone)]
pub struct Operator(pub Identity);

/// Extracts the caller of a write that needs the admin role.
#[derive(Debug, Clone)]
pub struct Admin(pub Identity);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(parts, state, Role::Operator).map(Operator)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(parts, state, Role::Admin).map(Admin)
    }
}

/// Callers tracked at most before idle ones are forgotten.
const MAX_TRACKED_CALLERS: usize = 10_000;

/// A token bucket per caller: `rate` tokens a second, holding up to twice
/// that.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests a second per caller; 0: no limit.
    pub(crate) fn new(rate: u32) -> RateLimiter {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn rate(&self) -> u32 {
        self.rate
    }

    /// Takes one token of `key`'s bucket, or gives the seconds to wait.
    pub(crate) fn check(&self, key: &str) -> Result<(), u64> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        let rate = f64::from(self.rate);
        let burst = 2.0 * rate;
        let mut buckets = match self.buckets.lock() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_TRACKED_CALLERS && !buckets.contains_key(key) {
            // A caller whose bucket has refilled is as if never seen.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((burst, now));
        let refilled =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(((1.0 - refilled) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn hash_token_is_the_hex_sha256() {
        // sha256("abc"), a standard test vector.
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn known_tokens_refuses_a_bad_hash_naming_the_token() {
        let bad = TokenConfig {
            name: "ops".into(),
            role: Role::Operator,
            sha256: "zz".repeat(32),
        };
        let err = known_tokens(&[bad]).unwrap_err().to_string();
        assert!(
            err.contains("api.token[0].sha256") && err.contains("ops"),
            "{err}"
        );
    }

    #[test]
    fn bucket_allows_a_burst_of_twice_the_rate_then_refills() {
        let l = RateLimiter::new(5);
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(l.check_at("a", t0).is_ok(), "request {i} of the burst");
        }
        assert_eq!(l.check_at("a", t0), Err(1));
        // Another caller has its own bucket.
        assert!(l.check_at("b", t0).is_ok());
        // 0.2 s later one token is back.
        let t1 = t0 + Duration::from_millis(200);
        assert!(l.check_at("a", t1).is_ok());
        assert!(l.check_at("a", t1).is_err());
    }

    /// Header values: arbitrary bytes, the scheme in any case with odd
    /// spacing, and near misses of the real token.
    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        let scheme = prop_oneof![
            Just("Bearer".to_string()),
            "(?i)bearer",
            "(?i)basic",
            "[ -~]{0,8}",
        ];
        let token = prop_oneof![
            Just(SECRET.to_string()),
            // One character changed, cut, or added.
            (0..SECRET.len(), any::<char>()).prop_map(|(i, c)| {
                let mut t: Vec<char> = SECRET.chars().collect();
                t[i] = c;
                t.into_iter().collect()
            }),
            (0..SECRET.len()).prop_map(|i| SECRET[..i].to_string()),
            "[ -~]{0,3}".prop_map(|x| format!("{SECRET}{x}")),
            ".{0,40}",
        ];
        let space = prop_oneof![Just(" "), Just("  "), Just("\t"), Just("")];
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..80),
            (space.clone(), scheme, space.clone(), token, space)
                .prop_map(|(a, s, b, t, c)| format!("{a}{s}{b}{t}{c}").into_bytes()),
        ]
    }

    const SECRET: &str = "s3cret-Token_value";

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        /// Whatever the header holds, reading it does not panic; it is
        /// valid exactly when it is the scheme `Bearer` (any case) and the
        /// token itself (spaces around it aside), and otherwise a 401.
        #[test]
        fn the_authorization_header_is_valid_only_for_the_token_and_else_a_401(
            bytes in header_value()
        ) {
            let tokens = known_tokens(&[TokenConfig {
                name: "ops".into(),
                role: Role::Operator,
                sha256: hash_token(SECRET),
            }])
            .unwrap();
            // Bytes HTTP cannot carry in a header never reach the parser.
            let Ok(value) = axum::http::HeaderValue::from_bytes(&bytes) else {
                return Ok(());
            };
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value);
            let seen = presented(&headers, &tokens);
            let text = String::from_utf8_lossy(&bytes);
            let exact = text
                .trim()
                .split_once(' ')
                .is_some_and(|(s, t)| s.eq_ignore_ascii_case("bearer") && t.trim() == SECRET);
            if exact {
                proptest::prop_assert_eq!(seen, Presented::Valid("ops".into(), Role::Operator));
            } else {
                let refused = seen.refusal();
                proptest::prop_assert!(
                    refused.as_ref().is_some_and(|e| e.status() == 401),
                    "{:?}: {:?}",
                    text,
                    refused
                );
            }
        }
    }

    #[test]
    fn no_header_and_a_wrong_scheme_are_401_with_why() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers, &[]), Presented::None);
        let why = Presented::None.refusal().unwrap().to_string();
        assert!(why.contains("Authorization: Bearer"), "{why}");
        headers.insert(
            header::AUTHORIZATION,
            "Basic b3BzOnNlY3JldA==".parse().unwrap(),
        );
        let seen = presented(&headers, &[]);
        assert_eq!(seen.refusal().unwrap().status(), 401);
        assert!(
            seen.refusal()
                .unwrap()
                .to_string()
                .contains("must be `Bearer <token>`"),
            "{seen:?}"
        );
    }

    #[test]
    fn rate_zero_is_no_limit() {
        let l = RateLimiter::new(0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert!(l.check_at("a", t0).is_ok());
        }
    }
}
