//! A blocking client for Prometheus's HTTP API, enough to read history out
//! of a Prometheus server (`prescient import --prometheus`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let now = 1_700_000_000_000; // ms since the epoch
//! let series = prescient_prometheus::range_query(
//!     "http://127.0.0.1:9090",
//!     "rate(container_cpu_usage_seconds_total[1m])",
//!     now - 14 * 86_400_000,
//!     now,
//!     Duration::from_secs(60),
//! )?;
//! for s in &series {
//!     println!("{:?}: {} points", s.labels, s.points.len());
//! }
//! # Ok::<(), prescient_prometheus::PromError>(())
//! ```
//!
//! - A range is split into chunks of at most [`DEFAULT_MAX_POINTS`] points
//!   per series (Prometheus refuses a query of more than 11,000), and the
//!   chunks' series are joined back by their labels.
//! - Each request is retried with exponential backoff ([`Retry`]) when the
//!   server cannot be reached, answers 429 (too many requests) or a 5xx;
//!   any other 4xx (a bad query, for one) fails at once with Prometheus's
//!   own message.
//! - Every error names the URL, the query and the chunk.
//!
//! With the `testing` feature, [`testing`] starts a real Prometheus on
//! loopback for tests.

#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Points per series one request asks for, at most, by default.
/// Prometheus refuses more than 11,000.
pub const DEFAULT_MAX_POINTS: usize = 10_000;

/// The most points per series Prometheus answers for.
pub const PROMETHEUS_MAX_POINTS: usize = 11_000;

/// One series of a range query: its labels and its points.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    /// Its labels (with `__name__` when the query keeps it).
    pub labels: BTreeMap<String, String>,
    /// (ms since the epoch, value), in time order.
    pub points: Vec<(i64, f64)>,
}

/// Why a query failed. Each names the server's URL, the query, and which
/// part of it (the chunk of a range, or the instant).
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The base URL is not an `http://` or `https://` URL.
    #[error("{url:?} is not a Prometheus URL: expected http://HOST:PORT or https://HOST:PORT")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// The range or step cannot be queried.
    #[error("query {query:?}: {reason}")]
    BadRange {
        /// The query.
        query: String,
        /// What is wrong.
        reason: String,
    },
    /// The server could not be reached (or the connection broke), on every
    /// attempt.
    #[error(
        "{url}: query {query:?}, {part}: Prometheus could not be reached after {attempts} attempt(s): {reason}"
    )]
    Unreachable {
        /// The endpoint.
        url: String,
        /// The query.
        query: String,
        /// Which chunk, or the instant.
        part: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        reason: String,
    },
    /// Prometheus answered with an error: at once for a 4xx other than 429,
    /// after the last attempt for a 429 or 5xx, or a 2xx whose status is
    /// `error`.
    #[error("{url}: query {query:?}, {part}: Prometheus answered HTTP {status}{}: {message}", error_type.as_ref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Api {
        /// The endpoint.
        url: String,
        /// The query.
        query: String,
        /// Which chunk, or the instant.
        part: String,
        /// The HTTP status.
        status: u16,
        /// Prometheus's `errorType` (`bad_data`, `execution`, `timeout`…).
        error_type: Option<String>,
        /// Prometheus's `error`, or the start of the body when it is not
        /// Prometheus's JSON.
        message: String,
    },
    /// The answer is not what the API documents.
    #[error("{url}: query {query:?}, {part}: cannot read Prometheus's answer: {reason}")]
    Decode {
        /// The endpoint.
        url: String,
        /// The query.
        query: String,
        /// Which chunk, or the instant.
        part: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How requests are retried: `attempts` in all, waiting `initial`, then
/// twice as long each time, at most `max`, between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Retry {
    /// 5 attempts, waiting 250 ms, 500 ms, 1 s, 2 s.
    fn default() -> Self {
        Retry {
            attempts: 5,
            initial: Duration::from_millis(250),
            max: Duration::from_secs(8),
        }
    }
}

impl Retry {
    /// The wait after failed attempt `n` (1-based).
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// A Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    agent: ureq::Agent,
    retry: Retry,
    max_points: usize,
}

impl Client {
    /// A client of the server at `base_url` (`http://host:9090`, or with a
    /// path prefix when Prometheus is served under one), with the default
    /// retries, chunk size, and a 60 s timeout per request.
    pub fn new(base_url: &str) -> Result<Self, PromError> {
        let trimmed = base_url.trim().trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("http://")
            .or_else(|| trimmed.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return Err(PromError::BadUrl {
                url: base_url.to_string(),
            });
        }
        Ok(Client {
            base: trimmed.to_string(),
            agent: agent(Duration::from_secs(60)),
            retry: Retry::default(),
            max_points: DEFAULT_MAX_POINTS,
        })
    }

    /// Retries requests as `retry` says.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = Retry {
            attempts: retry.attempts.max(1),
            ..retry
        };
        self
    }

    /// Asks for at most `n` points per series per request (clamped to
    /// 1..=[`PROMETHEUS_MAX_POINTS`]).
    pub fn with_max_points(mut self, n: usize) -> Self {
        self.max_points = n.clamp(1, PROMETHEUS_MAX_POINTS);
        self
    }

    /// Gives up on one request after `timeout` (and retries it).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.agent = agent(timeout);
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The chunks [`range_query`](Self::range_query) splits
    /// `start_ms..=end_ms` into: (start, end) pairs, ms, each of at most
    /// the chunk size in points, on the grid `start_ms + k * step`.
    pub fn chunks(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step: Duration,
    ) -> Result<Vec<(i64, i64)>, PromError> {
        let bad = |reason: String| PromError::BadRange {
            query: query.to_string(),
            reason,
        };
        let step_ms = i64::try_from(step.as_millis()).unwrap_or(i64::MAX);
        if step_ms < 1 {
            return Err(bad(format!("the step ({step:?}) must be at least 1 ms")));
        }
        if end_ms < start_ms {
            return Err(bad(format!(
                "the range ends (t={end_ms} ms) before it starts (t={start_ms} ms)"
            )));
        }
        let span = i64::try_from(self.max_points - 1)
            .unwrap_or(i64::MAX)
            .saturating_mul(step_ms);
        let mut out = Vec::new();
        let mut s = start_ms;
        while s <= end_ms {
            let e = s.saturating_add(span).min(end_ms);
            out.push((s, e));
            // The next chunk starts one step after this one's last point,
            // so the grid is kept and no point is asked for twice.
            match e.checked_add(step_ms) {
                Some(n) => s = n,
                None => break,
            }
        }
        Ok(out)
    }

    /// Runs `query` over `start_ms..=end_ms` (ms since the epoch) at
    /// `step`, in chunks, and joins the chunks' series by their labels.
    /// Series are sorted by their labels; points by time.
    pub fn range_query(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, PromError> {
        let chunks = self.chunks(query, start_ms, end_ms, step)?;
        let url = format!("{}/api/v1/query_range", self.base);
        let step_s = seconds_param(i64::try_from(step.as_millis()).unwrap_or(i64::MAX));
        let mut joined: BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>> = BTreeMap::new();
        let n = chunks.len();
        for (i, &(s, e)) in chunks.iter().enumerate() {
            let part = format!("chunk {} of {n} (t={s} ms to t={e} ms)", i + 1);
            let params = [
                ("query", query.to_string()),
                ("start", seconds_param(s)),
                ("end", seconds_param(e)),
                ("step", step_s.clone()),
            ];
            let data = self.get(&url, query, &part, &params)?;
            let ctx = Ctx {
                url: &url,
                query,
                part: &part,
            };
            for series in parse_result(data, &ctx, true)? {
                joined
                    .entry(series.labels)
                    .or_default()
                    .extend(series.points);
            }
        }
        Ok(joined
            .into_iter()
            .map(|(labels, mut points)| {
                // Chunks are in time order already; sorting is a guard
                // against a server that answers out of order.
                points.sort_by_key(|p| p.0);
                RangeSeries { labels, points }
            })
            .collect())
    }

    /// Runs `query` at the instant `at_ms` (ms since the epoch; the
    /// server's now when `None`). Each series has one point for a vector
    /// result, or the raw samples for a range-vector selector such as
    /// `up[5m]`; a scalar result is one series without labels.
    pub fn query(&self, query: &str, at_ms: Option<i64>) -> Result<Vec<RangeSeries>, PromError> {
        let url = format!("{}/api/v1/query", self.base);
        let part = match at_ms {
            Some(t) => format!("instant t={t} ms"),
            None => "instant now".to_string(),
        };
        let mut params = vec![("query", query.to_string())];
        if let Some(t) = at_ms {
            params.push(("time", seconds_param(t)));
        }
        let data = self.get(&url, query, &part, &params)?;
        let ctx = Ctx {
            url: &url,
            query,
            part: &part,
        };
        parse_result(data, &ctx, false)
    }

    /// GETs `url` with `params`, retrying as configured, and returns the
    /// `data` of a successful answer.
    fn get(
        &self,
        url: &str,
        query: &str,
        part: &str,
        params: &[(&str, String)],
    ) -> Result<serde_json::Value, PromError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.attempts;
            let mut req = self.agent.get(url);
            for (k, v) in params {
                req = req.query(*k, v);
            }
            let retry_after;
            match req.call() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = resp.body_mut().read_to_string();
                    let retryable = status == 429 || (500..600).contains(&status);
                    match body {
                        Ok(body) if (200..300).contains(&status) => {
                            return decode(&body, status, url, query, part);
                        }
                        Ok(body) if !retryable || last => {
                            let (error_type, message) = api_error(&body);
                            return Err(PromError::Api {
                                url: url.to_string(),
                                query: query.to_string(),
                                part: part.to_string(),
                                status,
                                error_type,
                                message: if retryable {
                                    format!("{message} (after {attempt} attempt(s))")
                                } else {
                                    message
                                },
                            });
                        }
                        Ok(_) => log::warn!(
                            "{url}: query {query:?}, {part}: HTTP {status}, attempt {attempt} of {}",
                            self.retry.attempts
                        ),
                        // The body broke off: the connection failed.
                        Err(e) if last => {
                            return Err(unreachable(url, query, part, attempt, &e));
                        }
                        Err(e) => log::warn!(
                            "{url}: query {query:?}, {part}: reading the answer: {e}, attempt {attempt} of {}",
                            self.retry.attempts
                        ),
                    }
                }
                Err(e) if is_transient(&e) && !last => {
                    retry_after = None;
                    log::warn!(
                        "{url}: query {query:?}, {part}: {e}, attempt {attempt} of {}",
                        self.retry.attempts
                    );
                }
                Err(e) => return Err(unreachable(url, query, part, attempt, &e)),
            }
            let wait = self
                .retry
                .delay(attempt)
                .max(retry_after.unwrap_or_default().min(self.retry.max));
            std::thread::sleep(wait);
        }
    }
}

/// [`Client::new`]`(base_url)?.`[`range_query`](Client::range_query)`(…)`.
pub fn range_query(
    base_url: &str,
    query: &str,
    start_ms: i64,
    end_ms: i64,
    step: Duration,
) -> Result<Vec<RangeSeries>, PromError> {
    Client::new(base_url)?.range_query(query, start_ms, end_ms, step)
}

/// Parses one of Prometheus's sample values: a decimal float, `NaN`,
/// `+Inf`, `-Inf` (`Inf` too).
pub fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        // Rust's parser also takes "inf", "infinity", "nan" in any case,
        // which Prometheus never writes; it is lenient with them too.
        _ => s.parse().ok(),
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        // Non-2xx answers come back as responses so that Prometheus's JSON
        // error can be read.
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .new_agent()
}

/// ms since the epoch as Prometheus's seconds (`1700000000.5`).
fn seconds_param(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    let (s, frac) = (abs / 1000, abs % 1000);
    if frac == 0 {
        format!("{sign}{s}")
    } else {
        format!("{sign}{s}.{frac:03}")
    }
}

/// Whether a failed request is worth trying again: the server could not be
/// reached, the connection broke, or it did not answer in time.
fn is_transient(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

fn unreachable(
    url: &str,
    query: &str,
    part: &str,
    attempts: u32,
    e: &dyn fmt::Display,
) -> PromError {
    PromError::Unreachable {
        url: url.to_string(),
        query: query.to_string(),
        part: part.to_string(),
        attempts,
        reason: e.to_string(),
    }
}

/// Prometheus's `errorType` and `error` from an error answer, or the start
/// of the body when it is not Prometheus's JSON (a proxy's page, say).
fn api_error(body: &str) -> (Option<String>, String) {
    #[derive(Deserialize)]
    struct Err {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
        error: Option<String>,
    }
    match serde_json::from_str::<Err>(body) {
        Ok(Err {
            error_type,
            error: Some(error),
        }) => (error_type, error),
        _ => {
            let text = body.trim();
            let cut: String = text.chars().take(200).collect();
            let message = if cut.is_empty() {
                "(empty body)".to_string()
            } else if cut.len() < text.len() {
                format!("{cut}…")
            } else {
                cut
            };
            (None, message)
        }
    }
}

/// The `data` of a 2xx answer.
fn decode(
    body: &str,
    status: u16,
    url: &str,
    query: &str,
    part: &str,
) -> Result<serde_json::Value, PromError> {
    #[derive(Deserialize)]
    struct Answer {
        status: String,
        data: Option<serde_json::Value>,
        #[serde(rename = "errorType")]
        error_type: Option<String>,
        error: Option<String>,
        #[serde(default)]
        warnings: Vec<String>,
    }
    let a: Answer = serde_json::from_str(body).map_err(|e| PromError::Decode {
        url: url.to_string(),
        query: query.to_string(),
        part: part.to_string(),
        reason: format!("not Prometheus's JSON ({e})"),
    })?;
    for w in &a.warnings {
        log::warn!("{url}: query {query:?}, {part}: Prometheus warns: {w}");
    }
    match (a.status.as_str(), a.data) {
        ("success", Some(data)) => Ok(data),
        ("success", None) => Err(PromError::Decode {
            url: url.to_string(),
            query: query.to_string(),
            part: part.to_string(),
            reason: "status success without data".into(),
        }),
        _ => Err(PromError::Api {
            url: url.to_string(),
            query: query.to_string(),
            part: part.to_string(),
            status,
            error_type: a.error_type,
            message: a.error.unwrap_or_else(|| format!("status {:?}", a.status)),
        }),
    }
}

/// Where an answer came from, for its errors.
struct Ctx<'a> {
    url: &'a str,
    query: &'a str,
    part: &'a str,
}

impl Ctx<'_> {
    fn err(&self, reason: impl Into<String>) -> PromError {
        PromError::Decode {
            url: self.url.to_string(),
            query: self.query.to_string(),
            part: self.part.to_string(),
            reason: reason.into(),
        }
    }

    /// A `[1700000000.123, "1.5"]` pair as (ms, value).
    fn point(&self, p: &(f64, String)) -> Result<(i64, f64), PromError> {
        let (t, v) = p;
        if !t.is_finite() {
            return Err(self.err(format!("timestamp {t} is not a number")));
        }
        let value = parse_value(v)
            .ok_or_else(|| self.err(format!("sample value {v:?} at t={t} is not a number")))?;
        Ok(((t * 1000.0).round() as i64, value))
    }
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// The series of a result: a `matrix` (required when `matrix_only`), a
/// `vector` (one point per series) or a `scalar` (one series, no labels).
fn parse_result(
    data: serde_json::Value,
    ctx: &Ctx,
    matrix_only: bool,
) -> Result<Vec<RangeSeries>, PromError> {
    #[derive(Deserialize)]
    struct Series {
        metric: BTreeMap<String, String>,
        #[serde(default)]
        values: Vec<(f64, String)>,
        value: Option<(f64, String)>,
    }
    let d: Data = serde_json::from_value(data).map_err(|e| ctx.err(e.to_string()))?;
    match d.result_type.as_str() {
        "matrix" | "vector" if !matrix_only || d.result_type == "matrix" => {
            let series: Vec<Series> = serde_json::from_value(d.result)
                .map_err(|e| ctx.err(format!("{}: {e}", d.result_type)))?;
            series
                .into_iter()
                .map(|s| {
                    let points = s
                        .values
                        .iter()
                        .chain(&s.value)
                        .map(|p| ctx.point(p))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok(RangeSeries {
                        labels: s.metric,
                        points,
                    })
                })
                .collect()
        }
        "scalar" if !matrix_only => {
            let p: (f64, String) =
                serde_json::from_value(d.result).map_err(|e| ctx.err(format!("scalar: {e}")))?;
            Ok(vec![RangeSeries {
                labels: BTreeMap::new(),
                points: vec![ctx.point(&p)?],
            }])
        }
        other => Err(ctx.err(format!(
            "{} gave a {other:?} result",
            if matrix_only {
                "a range query (which should give a matrix)"
            } else {
                "an instant query (which should give a vector, matrix or scalar)"
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        Client::new("http://127.0.0.1:9").unwrap()
    }

    #[test]
    fn values_parse_as_prometheus_writes_them() {
        assert_eq!(parse_value("1.5"), Some(1.5));
        assert_eq!(parse_value("-2e3"), Some(-2000.0));
        assert!(parse_value("NaN").unwrap().is_nan());
        assert_eq!(parse_value("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_value("-Inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_value("x"), None);
        assert_eq!(parse_value(""), None);
    }

    #[test]
    fn urls_must_be_http() {
        assert!(Client::new("http://h:9090/").is_ok());
        assert_eq!(
            Client::new("https://h/prom/").unwrap().base_url(),
            "https://h/prom"
        );
        for bad in ["h:9090", "ftp://h", "http://", "http:///x", ""] {
            let e = Client::new(bad).unwrap_err();
            assert!(matches!(e, PromError::BadUrl { .. }), "{bad}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn chunks_cover_the_range_on_the_step_grid_without_overlap() {
        let c = client().with_max_points(4);
        let step = Duration::from_secs(10);
        // 0, 10, ..., 100: 11 points; chunks of 4 points.
        let got = c.chunks("q", 0, 100_000, step).unwrap();
        assert_eq!(got, vec![(0, 30_000), (40_000, 70_000), (80_000, 100_000)]);
        // Every grid point falls in exactly one chunk.
        for k in 0..=10 {
            let t = k * 10_000;
            assert_eq!(got.iter().filter(|(s, e)| *s <= t && t <= *e).count(), 1);
        }
        // A range that ends between grid points.
        assert_eq!(
            c.chunks("q", 5, 42_000, step).unwrap(),
            vec![(5, 30_005), (40_005, 42_000)]
        );
        assert_eq!(c.chunks("q", 7, 7, step).unwrap(), vec![(7, 7)]);
        assert_eq!(
            client()
                .chunks("q", 0, 86_400_000, Duration::from_secs(60))
                .unwrap()
                .len(),
            1,
            "1441 points fit one default chunk"
        );
    }

    #[test]
    fn bad_ranges_are_refused_naming_the_query() {
        let e = client()
            .chunks("up", 10, 5, Duration::from_secs(1))
            .unwrap_err();
        assert!(
            e.to_string().contains("\"up\"") && e.to_string().contains("before it starts"),
            "{e}"
        );
        let e = client().chunks("up", 0, 5, Duration::ZERO).unwrap_err();
        assert!(e.to_string().contains("at least 1 ms"), "{e}");
    }

    #[test]
    fn max_points_is_clamped_to_what_prometheus_takes() {
        assert_eq!(client().with_max_points(0).max_points, 1);
        assert_eq!(
            client().with_max_points(50_000).max_points,
            PROMETHEUS_MAX_POINTS
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let r = Retry {
            attempts: 6,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let d: Vec<u128> = (1..=5).map(|n| r.delay(n).as_millis()).collect();
        assert_eq!(d, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn seconds_params_keep_milliseconds() {
        assert_eq!(seconds_param(1_700_000_000_000), "1700000000");
        assert_eq!(seconds_param(1_700_000_000_050), "1700000000.050");
        assert_eq!(seconds_param(-1), "-0.001");
        assert_eq!(seconds_param(-1500), "-1.500");
        assert_eq!(parse_value(&seconds_param(-1)), Some(-0.001));
    }

    fn ctx() -> Ctx<'static> {
        Ctx {
            url: "http://p/api/v1/query_range",
            query: "up",
            part: "chunk 1 of 1",
        }
    }

    #[test]
    fn matrices_parse_with_special_values() {
        let data = serde_json::json!({
            "resultType": "matrix",
            "result": [
                {"metric": {"job": "a"}, "values": [[1.5, "1"], [2.5, "NaN"], [3.5, "+Inf"]]},
                {"metric": {}, "values": [[1700000000.123, "-Inf"]]}
            ]
        });
        let got = parse_result(data, &ctx(), true).unwrap();
        assert_eq!(got[0].labels["job"], "a");
        assert_eq!(got[0].points[0], (1500, 1.0));
        assert!(got[0].points[1].1.is_nan());
        assert_eq!(got[0].points[2], (3500, f64::INFINITY));
        assert_eq!(got[1].points, vec![(1_700_000_000_123, f64::NEG_INFINITY)]);
    }

    #[test]
    fn wrong_shapes_are_decode_errors_naming_where() {
        let e = parse_result(
            serde_json::json!({"resultType": "vector", "result": []}),
            &ctx(),
            true,
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("http://p/api/v1/query_range") && s.contains("chunk 1 of 1"),
            "{s}"
        );
        assert!(s.contains("vector"), "{s}");
        let e = parse_result(
            serde_json::json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "x"]]}]}),
            &ctx(),
            true,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"x\""), "{e}");
    }

    #[test]
    fn instant_results_parse_as_vectors_and_scalars() {
        let v = parse_result(
            serde_json::json!({"resultType": "vector", "result": [{"metric": {"a": "b"}, "value": [2, "7"]}]}),
            &ctx(),
            false,
        )
        .unwrap();
        assert_eq!(v[0].labels["a"], "b");
        assert_eq!(v[0].points, vec![(2000, 7.0)]);
        let s = parse_result(
            serde_json::json!({"resultType": "scalar", "result": [3, "4.5"]}),
            &ctx(),
            false,
        )
        .unwrap();
        assert!(s[0].labels.is_empty());
        assert_eq!(s[0].points, vec![(3000, 4.5)]);
        let m = parse_result(
            serde_json::json!({"resultType": "matrix", "result": [{"metric": {}, "values": [[1, "1"], [2, "2"]]}]}),
            &ctx(),
            false,
        )
        .unwrap();
        assert_eq!(m[0].points.len(), 2, "raw samples of a range selector");
    }

    #[test]
    fn error_bodies_give_prometheus_message_or_the_body() {
        let (t, m) =
            api_error(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#);
        assert_eq!(
            (t.as_deref(), m.as_str()),
            (Some("bad_data"), "parse error")
        );
        let (t, m) = api_error("<html>bad gateway</html>");
        assert_eq!((t, m.as_str()), (None, "<html>bad gateway</html>"));
        assert_eq!(api_error("").1, "(empty body)");
        let e = decode(
            r#"{"status":"error","errorType":"execution","error":"boom"}"#,
            200,
            "u",
            "q",
            "p",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("boom") && e.to_string().contains("(execution)"),
            "{e}"
        );
    }
}
