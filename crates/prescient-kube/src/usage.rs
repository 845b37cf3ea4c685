//! Where container usage comes from: the metrics API
//! (`metrics.k8s.io/v1beta1` PodMetrics, listed per namespace) or
//! Prometheus (one query per resource, whose series carry `namespace`,
//! `pod` and `container` labels; a range query over recent history warms
//! the forecasters up at start).

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
        /// History read at start to warm the forecasters up.
        history: Duration,
    },
}

impl UsageSource {
    /// Prometheus at `url` with the default queries and 6 hours of history.
    pub fn prometheus(url: &str) -> Self {
        UsageSource::Prometheus {
            url: url.to_string(),
            cpu_query: DEFAULT_CPU_QUERY.to_string(),
            memory_query: DEFAULT_MEMORY_QUERY.to_string(),
            history: Duration::from_secs(6 * 3600),
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
