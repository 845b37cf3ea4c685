//! Where container usage comes from: the metrics API
//! (`metrics.k8s.io/v1beta1` PodMetrics, listed per namespace) or
//! Prometheus (one instant query per resource, whose series carry
//! `namespace`, `pod` and `container` labels). With Prometheus, the
//! history of each newly seen pod warms its forecasters up: range queries
//! over the lookback, restricted to a batch of pods of one namespace by
//! the history query templates ([`HistoryConfig`], [`fill_history_query`]).

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use prescient_core::Resource;
use serde::Deserialize;

use crate::plan::ContainerKey;
use crate::quantity::parse_quantity;
use crate::snapshot::{Usage, UsageMap};

/// Prometheus's CPU usage per container, cores (cAdvisor metrics).
pub const DEFAULT_CPU_QUERY: &str = r#"sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!="", container!="POD"}[5m]))"#;
/// Prometheus's memory working set per container, bytes.
pub const DEFAULT_MEMORY_QUERY: &str = r#"sum by (namespace, pod, container) (container_memory_working_set_bytes{container!="", container!="POD"})"#;
/// [`DEFAULT_CPU_QUERY`] for the pods of one history batch: `{namespace}`
/// and `{pods}` are filled in by [`fill_history_query`].
pub const DEFAULT_CPU_HISTORY_QUERY: &str = r#"sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{namespace="{namespace}", pod=~"{pods}", container!="", container!="POD"}[5m]))"#;
/// [`DEFAULT_MEMORY_QUERY`] for the pods of one history batch.
pub const DEFAULT_MEMORY_HISTORY_QUERY: &str = r#"sum by (namespace, pod, container) (container_memory_working_set_bytes{namespace="{namespace}", pod=~"{pods}", container!="", container!="POD"})"#;

/// How the history of new pods is read from Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryConfig {
    /// How far back (zero: no history).
    pub lookback: Duration,
    /// The CPU range query (cores per container), a template of
    /// `{namespace}` and `{pods}` (see [`fill_history_query`]).
    pub cpu_query: String,
    /// The memory range query (bytes per container), the same way.
    pub memory_query: String,
    /// At most this many pods' history is read per cycle (a controller
    /// starting on a large cluster spreads the reads over its first
    /// cycles).
    pub pods_per_cycle: usize,
    /// At most this many pods per range query.
    pub pods_per_query: usize,
    /// After a failed read, the wait before the pods' next try: doubled at
    /// each failure in a row, up to `retry_max`.
    pub retry: Duration,
    /// The longest wait between tries.
    pub retry_max: Duration,
}

impl Default for HistoryConfig {
    /// 14 days, the default queries, 500 pods a cycle in queries of 50,
    /// retried after 1 minute, doubling up to an hour.
    fn default() -> Self {
        HistoryConfig {
            lookback: Duration::from_secs(14 * 86_400),
            cpu_query: DEFAULT_CPU_HISTORY_QUERY.to_string(),
            memory_query: DEFAULT_MEMORY_HISTORY_QUERY.to_string(),
            pods_per_cycle: 500,
            pods_per_query: 50,
            retry: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
        }
    }
}

impl HistoryConfig {
    /// The wait after the `failures`-th failed read in a row.
    pub fn retry_delay(&self, failures: u32) -> Duration {
        prescient_prometheus::Retry {
            attempts: failures.max(1),
            initial: self.retry,
            max: self.retry_max,
        }
        .delay(failures)
    }
}

/// Fills a history query template: `{namespace}` with `namespace` (for a
/// PromQL double-quoted string) and `{pods}` with a regular expression
/// matching exactly `pods` (an anchored alternation, each name's regex
/// metacharacters escaped, then escaped for a PromQL string), so that a
/// name can neither end the string nor widen the match.
pub fn fill_history_query(template: &str, namespace: &str, pods: &[&str]) -> String {
    fn string(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out
    }
    fn regex(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if "\\.+*?()|[]{}^$".contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }
    let alternation = pods.iter().map(|p| regex(p)).collect::<Vec<_>>().join("|");
    template
        .replace("{namespace}", &string(namespace))
        .replace("{pods}", &string(&alternation))
}

/// Where usage comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum UsageSource {
    /// The metrics API (metrics-server).
    MetricsApi,
    /// A Prometheus server.
    Prometheus {
        /// Its base URL.
        url: String,
        /// The CPU query (cores per container).
        cpu_query: String,
        /// The memory query (bytes per container).
        memory_query: String,
        /// The history read for each new pod, to warm its forecasters up.
        history: HistoryConfig,
    },
}

impl UsageSource {
    /// Prometheus at `url` with the default queries and 14 days of history.
    pub fn prometheus(url: &str) -> Self {
        UsageSource::Prometheus {
            url: url.to_string(),
            cpu_query: DEFAULT_CPU_QUERY.to_string(),
            memory_query: DEFAULT_MEMORY_QUERY.to_string(),
            history: HistoryConfig::default(),
        }
    }
}

/// Why usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The metrics API failed for a namespace.
    #[error("metrics API (metrics.k8s.io/v1beta1), namespace {namespace}: {source}")]
    MetricsApi {
        /// The namespace.
        namespace: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Prometheus failed.
    #[error(transparent)]
    Prometheus(#[from] Box<prescient_prometheus::PromError>),
    /// The blocking Prometheus task died.
    #[error("the Prometheus query task failed: {0}")]
    Task(String),
}

/// The PodMetrics kind of the metrics API.
pub fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

#[derive(Deserialize)]
struct PodMetricsData {
    #[serde(default)]
    containers: Vec<ContainerMetrics>,
}

#[derive(Deserialize)]
struct ContainerMetrics {
    name: String,
    #[serde(default)]
    usage: std::collections::BTreeMap<String, String>,
}

/// Usage of every container of `namespaces` from the metrics API, one
/// list per namespace. Entries that cannot be read are logged and skipped.
pub async fn metrics_api_usage(
    client: &kube::Client,
    namespaces: &BTreeSet<String>,
) -> Result<UsageMap, UsageError> {
    let ar = pod_metrics_resource();
    let mut out = UsageMap::new();
    for ns in namespaces {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let list =
            api.list(&ListParams::default())
                .await
                .map_err(|source| UsageError::MetricsApi {
                    namespace: ns.clone(),
                    source,
                })?;
        for item in list.items {
            let pod = item.metadata.name.clone().unwrap_or_default();
            let data: PodMetricsData = match serde_json::from_value(item.data) {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("metrics API: PodMetrics {ns}/{pod} does not parse: {e}");
                    continue;
                }
            };
            for c in data.containers {
                let read = |key: &str| {
                    c.usage.get(key).and_then(|q| match parse_quantity(q) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            log::warn!("metrics API: {ns}/{pod} container {}: {key}: {e}", c.name);
                            None
                        }
                    })
                };
                let u = Usage {
                    cpu: read("cpu"),
                    memory: read("memory"),
                };
                out.insert((ns.clone(), pod.clone(), c.name.clone()), u);
            }
        }
    }
    Ok(out)
}

fn key_of(labels: &std::collections::BTreeMap<String, String>) -> Option<ContainerKey> {
    Some((
        labels.get("namespace")?.clone(),
        labels.get("pod")?.clone(),
        labels.get("container")?.clone(),
    ))
}

/// Usage at `at_ms` from Prometheus: an instant query per resource.
pub async fn prometheus_usage(
    client: prescient_prometheus::Client,
    cpu_query: String,
    memory_query: String,
    at_ms: i64,
) -> Result<UsageMap, UsageError> {
    tokio::task::spawn_blocking(move || {
        let mut out = UsageMap::new();
        for (resource, q) in [
            (Resource::Cpu, &cpu_query),
            (Resource::Memory, &memory_query),
        ] {
            for s in client.query(q, Some(at_ms)).map_err(Box::new)? {
                let (Some(key), Some(&(_, v))) = (key_of(&s.labels), s.points.last()) else {
                    continue;
                };
                let u = out.entry(key).or_default();
                match resource {
                    Resource::Cpu => u.cpu = Some(v),
                    _ => u.memory = Some(v),
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| UsageError::Task(e.to_string()))?
}

/// One container's history of one resource.
pub type History = Vec<(ContainerKey, Resource, Vec<(i64, f64)>)>;

/// History from Prometheus over `start_ms..=end_ms` every `step`: a range
/// query per resource (split into chunks and retried by the client).
pub async fn prometheus_history(
    client: prescient_prometheus::Client,
    cpu_query: String,
    memory_query: String,
    start_ms: i64,
    end_ms: i64,
    step: Duration,
) -> Result<History, UsageError> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for (resource, q) in [
            (Resource::Cpu, &cpu_query),
            (Resource::Memory, &memory_query),
        ] {
            for s in client
                .range_query(q, start_ms, end_ms, step)
                .map_err(Box::new)?
            {
                if let Some(key) = key_of(&s.labels) {
                    out.push((key, resource, s.points));
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| UsageError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_queries_match_exactly_the_pods_of_the_batch() {
        let q = fill_history_query(
            r#"m{namespace="{namespace}", pod=~"{pods}"}"#,
            "shop",
            &["web-1", "db.primary-0"],
        );
        // In the PromQL string `\\.` is the regex `\.`: a literal dot.
        assert_eq!(q, r#"m{namespace="shop", pod=~"web-1|db\\.primary-0"}"#);
        // Names cannot break out of the string or widen the regex.
        let q = fill_history_query(
            r#"{pod=~"{pods}",ns="{namespace}"}"#,
            r#"a"b"#,
            &["x|.*", r#"q"\"#],
        );
        assert_eq!(q, r#"{pod=~"x\\|\\.\\*|q\"\\\\",ns="a\"b"}"#);
    }

    #[test]
    fn history_retries_back_off_to_a_cap() {
        let h = HistoryConfig::default();
        let waits: Vec<u64> = (1..=8).map(|f| h.retry_delay(f).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }
}
