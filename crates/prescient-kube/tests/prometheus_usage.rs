//! Usage from a real Prometheus on loopback that scraped a process of the
//! test (an exporter of cAdvisor-shaped container metrics), through the
//! controller's default queries: the instant usage per container and the
//! history that warms the forecasters up.

use std::time::{Duration, Instant};

use prescient_core::Resource;
use prescient_kube::usage::{
    DEFAULT_CPU_HISTORY_QUERY, DEFAULT_CPU_QUERY, DEFAULT_MEMORY_HISTORY_QUERY,
    DEFAULT_MEMORY_QUERY, fill_history_query, prometheus_history, prometheus_usage,
};
use prescient_prometheus::testing::{Prometheus, TinyServer, now_ms};

const MEMORY: f64 = 123_456_768.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_history_come_from_prometheus_per_container() {
    let start = Instant::now();
    // web-1/app burns half a core: its CPU counter grows 0.5 s a second.
    let exporter = TinyServer::exporter(move || {
        let cpu = 0.5 * start.elapsed().as_secs_f64();
        format!(
            "# TYPE container_cpu_usage_seconds_total counter\n\
             container_cpu_usage_seconds_total{{namespace=\"shop\",pod=\"web-1\",container=\"app\"}} {cpu}\n\
             container_cpu_usage_seconds_total{{namespace=\"shop\",pod=\"web-1\",container=\"POD\"}} 1\n\
             # TYPE container_memory_working_set_bytes gauge\n\
             container_memory_working_set_bytes{{namespace=\"shop\",pod=\"web-1\",container=\"app\"}} {MEMORY}\n"
        )
    })
    .unwrap();
    let prom = Prometheus::start("cadvisor", exporter.addr(), "/metrics").unwrap();
    let client = prom.client();
    // A rate needs two samples; wait (off the async threads) for several.
    let prom = tokio::task::spawn_blocking(move || {
        prom.wait_until(Duration::from_secs(60), "8 scrapes", |c| {
            let r = c
                .query("container_memory_working_set_bytes[5m]", None)
                .ok()?;
            (r.len() == 1 && r[0].points.len() >= 8).then_some(())
        })
        .unwrap();
        prom
    })
    .await
    .unwrap();
    let now = now_ms();
    // The default query with a rate window this short test can fill
    // (Prometheus divides an increase by the whole window).
    let cpu_query = DEFAULT_CPU_QUERY.replace("[5m]", "[5s]");
    assert_ne!(cpu_query, DEFAULT_CPU_QUERY);
    let usage = prometheus_usage(
        client.clone(),
        cpu_query.clone(),
        DEFAULT_MEMORY_QUERY.into(),
        now,
    )
    .await
    .unwrap();
    let key = ("shop".to_string(), "web-1".to_string(), "app".to_string());
    let u = usage.get(&key).unwrap_or_else(|| panic!("{usage:?}"));
    assert_eq!(u.memory, Some(MEMORY));
    let cpu = u.cpu.unwrap();
    assert!(
        (cpu - 0.5).abs() < 0.1,
        "rate of a 0.5 core/s counter: {cpu}"
    );
    // The pause container is left out by the query.
    assert_eq!(usage.len(), 1, "{usage:?}");

    let history = prometheus_history(
        client.clone(),
        cpu_query,
        DEFAULT_MEMORY_QUERY.into(),
        now - 60_000,
        now,
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let mem: Vec<&(i64, f64)> = history
        .iter()
        .filter(|(k, r, _)| k == &key && *r == Resource::Memory)
        .flat_map(|(_, _, p)| p)
        .collect();
    assert!(mem.len() >= 5, "{history:?}");
    assert!(mem.iter().all(|(_, v)| *v == MEMORY));
    assert!(
        history
            .iter()
            .any(|(k, r, p)| k == &key && *r == Resource::Cpu && !p.is_empty())
    );
    // The history templates, filled for a batch of pods, are PromQL
    // Prometheus takes, and select exactly the batch's pods.
    let batch = |pods: &'static [&'static str]| {
        let client = client.clone();
        async move {
            prometheus_history(
                client,
                fill_history_query(
                    &DEFAULT_CPU_HISTORY_QUERY.replace("[5m]", "[5s]"),
                    "shop",
                    pods,
                ),
                fill_history_query(DEFAULT_MEMORY_HISTORY_QUERY, "shop", pods),
                now - 60_000,
                now,
                Duration::from_secs(1),
            )
            .await
            .unwrap()
        }
    };
    let of_batch = batch(&["db.0", "web-1"]).await;
    let keys: std::collections::BTreeSet<(&str, Resource)> = of_batch
        .iter()
        .map(|(k, r, _)| (k.1.as_str(), *r))
        .collect();
    assert_eq!(
        keys,
        [("web-1", Resource::Cpu), ("web-1", Resource::Memory)].into(),
        "{of_batch:?}"
    );
    // A regex metacharacter in a name is literal: "web.1" is not "web-1".
    assert!(batch(&["web.1", "web-"]).await.is_empty());
    // Prometheus is stopped (and its directory removed) on the blocking pool.
    tokio::task::spawn_blocking(move || drop(prom))
        .await
        .unwrap();
}
