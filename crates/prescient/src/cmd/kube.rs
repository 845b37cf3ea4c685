//! `prescient kube`: the Kubernetes controller, its CRD and its health check.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use prescient_agent::logger;
use prescient_agent::units::Interval;
use prescient_kube::controller::check_health;
use prescient_kube::usage::{
    DEFAULT_CPU_HISTORY_QUERY, DEFAULT_CPU_QUERY, DEFAULT_MEMORY_HISTORY_QUERY,
    DEFAULT_MEMORY_QUERY, HistoryConfig,
};
use prescient_kube::{Controller, ControllerConfig, Mode, PlannerConfig, UsageSource};

/// Run the Kubernetes controller: size the CPU and memory requests of the
/// pods that opt in (label prescient.io/managed=true or a PrescientPolicy)
/// from forecast usage, node by node; in enforce mode resize them in place
/// (pods/resize, Kubernetes 1.33+), in recommend mode write the
/// recommendations into the PrescientPolicy status. See docs/kubernetes.md.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct KubeArgs {
    #[command(subcommand)]
    command: Option<KubeCommand>,
    /// The kubeconfig file (default: in-cluster configuration, else
    /// KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// Use the in-cluster service account, whatever else is configured.
    #[arg(long, conflicts_with = "kubeconfig")]
    in_cluster: bool,
    /// recommend (write PrescientPolicy status, resize nothing) or enforce.
    #[arg(long, value_name = "MODE", default_value = "recommend")]
    mode: Mode,
    /// Time between cycles (usage sample, plan, act).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_interval)]
    interval: Duration,
    /// Plan only this node (shard by node: one controller per node).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Read usage from this Prometheus (http://host:9090) rather than the
    /// metrics API; the history of each new pod warms its forecasters up.
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
    /// With --prometheus: the CPU usage query (cores per container; series
    /// labelled namespace, pod and container).
    #[arg(long, value_name = "PROMQL", default_value = DEFAULT_CPU_QUERY, requires = "prometheus")]
    prometheus_cpu_query: String,
    /// With --prometheus: the memory usage query (bytes per container).
    #[arg(long, value_name = "PROMQL", default_value = DEFAULT_MEMORY_QUERY, requires = "prometheus")]
    prometheus_memory_query: String,
    /// With --prometheus: how much history of each new pod to read (0s:
    /// none). Its planning tails keep the newest 20 hours of it, one sample
    /// per 5 minutes; more warms only a forecaster, and only when there is
    /// less than an hour.
    #[arg(long, value_name = "DURATION", default_value = "1d", value_parser = parse_lookback, requires = "prometheus")]
    history_lookback: Duration,
    /// With --prometheus: the CPU history query, with {namespace} and
    /// {pods} (a regex of a batch of pod names) filled in.
    #[arg(long, value_name = "PROMQL", default_value = DEFAULT_CPU_HISTORY_QUERY, value_parser = parse_history_query, requires = "prometheus")]
    history_cpu_query: String,
    /// With --prometheus: the memory history query, the same way.
    #[arg(long, value_name = "PROMQL", default_value = DEFAULT_MEMORY_HISTORY_QUERY, value_parser = parse_history_query, requires = "prometheus")]
    history_memory_query: String,
    /// At most one resize per pod in this long.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_interval)]
    min_resize_interval: Duration,
    /// Write the time of each finished cycle here (for `prescient kube health`).
    #[arg(long, value_name = "PATH")]
    health_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KubeCommand {
    /// Print the PrescientPolicy CustomResourceDefinition (YAML).
    Crd,
    /// Exit 0 when the controller's health file shows a recent cycle (a
    /// liveness probe), 1 otherwise.
    Health {
        /// The health file the controller writes.
        #[arg(long, value_name = "PATH")]
        health_file: PathBuf,
        /// The oldest a last cycle may be.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_interval)]
        max_age: Duration,
    },
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    Interval::parse(s).map(Interval::as_duration)
}

fn parse_lookback(s: &str) -> Result<Duration, String> {
    // "0" alone means none, without a unit.
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_interval(s)
}

/// A history query must name its batch: `{namespace}` and `{pods}`, or it
/// would read the whole cluster's history for every new pod.
fn parse_history_query(s: &str) -> Result<String, String> {
    for placeholder in ["{namespace}", "{pods}"] {
        if !s.contains(placeholder) {
            return Err(format!(
                "{s:?} has no {placeholder}: a history query reads one batch of pods, e.g. \
                 container_memory_working_set_bytes{{namespace=\"{{namespace}}\", pod=~\"{{pods}}\"}}"
            ));
        }
    }
    Ok(s.to_string())
}

pub fn run(args: KubeArgs) -> Result<()> {
    match args.command {
        Some(KubeCommand::Crd) => {
            print!("{}", prescient_kube::crd::crd_yaml());
            return Ok(());
        }
        Some(KubeCommand::Health {
            health_file,
            max_age,
        }) => {
            return check_health(&health_file, max_age).map_err(anyhow::Error::msg);
        }
        None => {}
    }
    let level = std::env::var("PRESCIENT_LOG")
        .ok()
        .and_then(|l| logger::parse_level(&l))
        .unwrap_or(log::LevelFilter::Info);
    logger::init(level);
    if args.interval < Duration::from_secs(1) {
        bail!("--interval {:?}: must be at least 1s", args.interval);
    }
    if !args.history_lookback.is_zero() && args.history_lookback < args.interval {
        bail!(
            "--history-lookback {:?} is shorter than --interval {:?}: give at least one interval, or 0 for no history",
            args.history_lookback,
            args.interval
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let config = if args.in_cluster {
            kube::Config::incluster().context("in-cluster configuration")?
        } else if let Some(path) = &args.kubeconfig {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        } else {
            kube::Config::infer()
                .await
                .context("no in-cluster configuration and no kubeconfig (try --kubeconfig PATH)")?
        };
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        let usage = match &args.prometheus {
            Some(url) => {
                prescient_prometheus::Client::new(url)?;
                UsageSource::Prometheus {
                    url: url.clone(),
                    cpu_query: args.prometheus_cpu_query.clone(),
                    memory_query: args.prometheus_memory_query.clone(),
                    history: HistoryConfig {
                        lookback: args.history_lookback,
                        cpu_query: args.history_cpu_query.clone(),
                        memory_query: args.history_memory_query.clone(),
                        ..Default::default()
                    },
                }
            }
            None => UsageSource::MetricsApi,
        };
        let config = ControllerConfig {
            planner: PlannerConfig {
                mode: args.mode,
                min_resize_interval_ms: i64::try_from(args.min_resize_interval.as_millis())
                    .unwrap_or(i64::MAX),
                ..Default::default()
            },
            interval: args.interval,
            node: args.node.clone(),
            usage,
            health_file: args.health_file.clone(),
            ..Default::default()
        };
        log::info!(
            "prescient kube: {} mode, every {:?}, {}, usage from {}",
            args.mode,
            args.interval,
            args.node.as_deref().map_or("all nodes".to_string(), |n| format!("node {n}")),
            args.prometheus.as_deref().unwrap_or("the metrics API")
        );
        let shutdown = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            log::info!("stopping");
        };
        Controller::new(client, config).run(shutdown).await;
        Ok(())
    })
}
