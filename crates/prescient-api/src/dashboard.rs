//! The web dashboard (served at `/`).
//!
//! One static page, a small hand-written script and a style sheet, all
//! embedded in the binary: the browser needs nothing but this server. The
//! script reads the JSON API under `/api/v1` (with the token kept in the
//! browser's `localStorage`, sent as `Authorization: Bearer`) and draws
//! everything itself, charts as inline SVG:
//!
//! - `#/`: the partition of each pool per resource (allocated now, planned,
//!   used), counts, the mode, alerts, and the workloads;
//! - `#/workload/ID?range=6h|1d|7d`: per resource, actual usage, the
//!   forecast band (median to the SLO quantile), the allocation over time,
//!   anomalies and events on the time axis;
//! - `#/audit`: the audit trail, newest first, paged;
//! - `#/operate`: forms to create and cancel events, intents and resource
//!   requests.
//!
//! After its first render with data the page sets the `performance` mark
//! `prescient-ready` (and `data-ready` on `<html>`): the time to
//! interactive the dashboard bench measures.
//!
//! The assets are served with a strict Content-Security-Policy (no inline
//! script or style, no other origin) and an `ETag`, so a reload costs a
//! `304` per asset.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// A quoted strong ETag, from the content's hash.
    etag: &'static str,
}

/// FNV-1a, 64 bits: a content hash computed at compile time for ETags.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// `"` + 16 hex digits of `h` + `"`.
const fn etag_bytes(h: u64) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($file:literal, $type:literal) => {{
        const BODY: &str = include_str!(concat!("../assets/", $file));
        const TAG: [u8; 18] = etag_bytes(fnv1a(BODY.as_bytes()));
        Asset {
            body: BODY,
            content_type: $type,
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => "\"0\"",
            },
        }
    }};
}

/// Where the page may load from: itself only; no inline script or style.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The dashboard's routes: `/` and `/assets/*`. Mounted by the server next
/// to the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/app.js", get(script))
        .route("/assets/app.css", get(style))
}

async fn index(headers: HeaderMap) -> Response {
    const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
    serve(&INDEX, &headers)
}

async fn script(headers: HeaderMap) -> Response {
    const SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8");
    serve(&SCRIPT, &headers)
}

async fn style(headers: HeaderMap) -> Response {
    const STYLE: Asset = asset!("app.css", "text/css; charset=utf-8");
    serve(&STYLE, &headers)
}

/// The asset, or `304 Not Modified` when the client holds this version.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    // Revalidate every time: the assets change with the binary.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (StatusCode::OK, headers, asset.body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_the_quoted_hash_of_the_content() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        // The published FNV-1a 64 test vector for "a".
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(&etag_bytes(0xaf63_dc4c_8601_ec8c), b"\"af63dc4c8601ec8c\"");
    }

    #[test]
    fn serve_answers_304_for_the_current_etag_only() {
        let a = asset!("app.css", "text/css; charset=utf-8");
        let mut h = HeaderMap::new();
        assert_eq!(serve(&a, &h).status(), StatusCode::OK);
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", a.etag)).unwrap(),
        );
        assert_eq!(serve(&a, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0\""));
        assert_eq!(serve(&a, &h).status(), StatusCode::OK);
    }

    #[test]
    fn the_page_loads_only_its_own_assets_and_has_no_inline_script() {
        let html = include_str!("../assets/index.html");
        assert!(html.contains("src=\"/assets/app.js\""));
        assert!(html.contains("href=\"/assets/app.css\""));
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains("<script>"), "inline script breaks the CSP");
        assert!(!html.contains("style="), "inline style breaks the CSP");
        let js = include_str!("../assets/app.js");
        assert!(
            !js.contains("innerHTML"),
            "text from the API must not be parsed as HTML"
        );
    }
}
