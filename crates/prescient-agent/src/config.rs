//! The agent's configuration: one TOML file, layered file → environment
//! (`PRESCIENT_*`) → command-line flags.
//!
//! - [`Config::from_toml`] parses a file's text; unknown keys are refused
//!   with their path (`workload[1].cpu.guarante`), and every error names
//!   the file, line and key.
//! - [`Config::validate`] checks what the types cannot: intervals, SLO
//!   quantiles in (0, 1), guarantees above a pool's capacity, selectors
//!   that do not compile, ... and names each bad key and value.
//! - [`Overrides`] are the environment's and the flags' layers;
//!   [`ConfigSource`] puts the layers together (and does it again on
//!   SIGHUP).
//! - [`EXAMPLE`] is the commented default that `prescient config example`
//!   prints (committed as `config/prescient.example.toml`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use prescient_core::{Resource, ResourcePolicy};
use prescient_linux::discover::{CommandMatch, Rule, UserMatch};
use prescient_linux::enforce::{BlockDevice, Device};
use prescient_linux::{CgroupPath, Discovery, Selector};
use prescient_solver::fmt_amount;
use serde::{Deserialize, Serialize};

pub use crate::units::{ByteSize, Interval};

/// The block I/O resources a pool can give a capacity for (and a workload
/// a policy): bandwidth in bytes/s, operations in ops/s.
pub const IO_RESOURCES: [Resource; 4] = [
    Resource::IoRead,
    Resource::IoWrite,
    Resource::IoReadOps,
    Resource::IoWriteOps,
];

/// Where the kernel lists the block devices by `MAJ:MIN`.
pub const SYS_DEV_BLOCK: &str = "/sys/dev/block";

/// The shortest sample interval.
pub const MIN_SAMPLE_INTERVAL: Interval = Interval::ms(100);

/// The commented default configuration (`prescient config example`).
pub const EXAMPLE: &str = include_str!("example.toml");

/// Whether the agent changes limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Plans and records; changes nothing on the host.
    #[default]
    Recommend,
    /// Applies plans to cgroups, within the guardrails.
    Enforce,
}

impl Mode {
    /// Parses `recommend` or `enforce`.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s.trim() {
            "recommend" => Ok(Mode::Recommend),
            "enforce" => Ok(Mode::Enforce),
            other => Err(format!(
                "{other:?} is not a mode (expected recommend or enforce)"
            )),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Recommend => "recommend",
            Mode::Enforce => "enforce",
        })
    }
}

/// Where the agent's cgroup subtree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelativeTo {
    /// The top of each hierarchy.
    #[default]
    Root,
    /// The agent process's own cgroup in each hierarchy (tests, demos).
    #[serde(rename = "self")]
    SelfCgroup,
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Mode, host name, intervals.
    #[serde(default)]
    pub agent: AgentConfig,
    /// The store.
    #[serde(default)]
    pub store: StoreConfig,
    /// The cgroup subtree the agent works in.
    #[serde(default)]
    pub cgroup: CgroupConfig,
    /// How plans become limits, and the guardrails.
    #[serde(default)]
    pub enforce: EnforceConfig,
    /// Capacities to partition (`[[pool]]`); none: one pool, `host`, of the
    /// whole machine.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolConfig>,
    /// Workloads (`[[workload]]`): how each is found and its policy.
    #[serde(default, rename = "workload")]
    pub workloads: Vec<WorkloadConfig>,
    /// The REST API, dashboard and metrics server.
    #[serde(default)]
    pub api: ApiConfig,
    /// Alert rules and where alerts go.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Where the history of new workloads comes from.
    #[serde(default)]
    pub history: HistoryConfig,
    /// What the forecasters use beyond their own series: the learned model,
    /// lead-lag between workloads, resets after level shifts.
    #[serde(default)]
    pub forecast: ForecastConfig,
}

/// `[forecast]`: the parts of forecasting that look beyond one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// Use the learned model (gradient-boosted quantile trees shared by
    /// every series): trained on the store's history of the agent's series
    /// on a background thread, retrained every `retrain_interval`.
    pub learned: bool,
    /// How often the learned model is trained again.
    pub retrain_interval: Interval,
    /// After a failed training (too little history, a store that cannot be
    /// read), the next try comes after this long.
    pub retry_interval: Interval,
    /// No training before some series has this much history.
    pub min_history: Interval,
    /// How far back the training reads the store (its one-minute rollups
    /// are kept 30 days by default).
    pub training_window: Interval,
    /// When a workload's changes reliably follow another's by a few steps
    /// (same resource), raise or lower its forecast by what the leader
    /// already did.
    pub lead_lag: bool,
    /// When a series' level shifts for good (an anomaly of kind
    /// level_shift), make its forecaster forget the old level.
    pub reset_on_level_shift: bool,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        ForecastConfig {
            learned: true,
            retrain_interval: Interval::secs(86_400),
            retry_interval: Interval::secs(3_600),
            min_history: Interval::secs(86_400),
            training_window: Interval::secs(14 * 86_400),
            lead_lag: true,
            reset_on_level_shift: true,
        }
    }
}

/// `[history]`: the history of workloads the agent has not seen before,
/// read from Prometheus so that their forecasts start from weeks of data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Prometheus's URL (`http://prometheus:9090`); unset: no history.
    pub prometheus: Option<String>,
    /// How far back.
    pub since: Interval,
    /// The query giving a workload's CPU use in cores; `{workload}`,
    /// `{host}` and `{cgroup}` are replaced by its id, the agent's host
    /// and its cgroup path (escaped for a PromQL string). Several series
    /// in the answer are summed.
    pub cpu_query: Option<String>,
    /// The query giving a workload's memory use in bytes.
    pub memory_query: Option<String>,
    /// How long one request to Prometheus may take.
    pub timeout: Interval,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            prometheus: None,
            since: Interval::secs(14 * 86_400),
            cpu_query: None,
            memory_query: None,
            timeout: Interval::secs(30),
        }
    }
}

impl HistoryConfig {
    /// The query template for `r`, if any.
    pub fn query(&self, r: Resource) -> Option<&str> {
        match r {
            Resource::Cpu => self.cpu_query.as_deref(),
            Resource::Memory => self.memory_query.as_deref(),
            _ => None,
        }
    }
}

/// `[alerts]`: where alerts go, and the rules (`[[alerts.rule]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// An http:// or https:// URL each alert is POSTed to (JSON) when it
    /// fires and when it resolves.
    pub webhook: Option<String>,
    /// Tries per notification before it is dropped with a log line.
    pub webhook_attempts: u32,
    /// The wait before the first retry; doubled after each failure (at most
    /// five minutes).
    pub webhook_backoff: Interval,
    /// How long one webhook request may take.
    pub webhook_timeout: Interval,
    /// The rules.
    #[serde(rename = "rule")]
    pub rules: Vec<AlertRule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhook: None,
            webhook_attempts: 5,
            webhook_backoff: Interval::secs(1),
            webhook_timeout: Interval::secs(5),
            rules: Vec::new(),
        }
    }
}

/// What an alert rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCondition {
    /// A pool's usage of `resource` above `above` (a share of its capacity).
    Utilisation,
    /// A workload's realised forecast coverage of its SLO quantile below
    /// `below`.
    Coverage,
    /// A pool's plan is degraded (guarantees above capacity).
    PlanDegraded,
    /// Planning failed within the last `window`.
    PlanFailed,
    /// An anomaly (of kind `anomaly`, or any) found within the last `window`.
    Anomaly,
    /// At least `above` (default 1) failed limit writes within the last
    /// `window`.
    EnforceFailures,
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Someone should look.
    #[default]
    Warning,
    /// Someone should look now.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        })
    }
}

/// What the agent does when an alert fires (enforce mode only; audited).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemediationAction {
    /// Plan (and enforce) at once.
    Replan,
    /// Raise the workload's SLO quantile for the resource by `slo_step`, up
    /// to `slo_max`.
    RaiseSlo,
    /// Move the workload to the pool (tier) named by `tier`.
    MoveTier,
}

/// `[[alerts.rule]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Its name (alert ids are `name/subject`).
    pub name: String,
    /// What it watches.
    pub when: AlertCondition,
    /// How bad.
    #[serde(default)]
    pub severity: Severity,
    /// How long the condition must hold before the alert fires.
    #[serde(default = "zero_interval")]
    pub hold: Interval,
    /// The resource (utilisation: default cpu; coverage: default all).
    #[serde(default)]
    pub resource: Option<Resource>,
    /// Only this pool (utilisation, plan_degraded).
    #[serde(default)]
    pub pool: Option<String>,
    /// Only workloads whose id matches this glob (coverage, anomaly).
    #[serde(default)]
    pub workload: Option<String>,
    /// Threshold above which the condition holds (utilisation: a share of
    /// capacity; enforce_failures: a count).
    #[serde(default)]
    pub above: Option<f64>,
    /// Threshold below which the condition holds (coverage).
    #[serde(default)]
    pub below: Option<f64>,
    /// The anomaly kind (`memory_leak`, `level_shift`, `outlier`; default any).
    #[serde(default)]
    pub anomaly: Option<String>,
    /// How long a finding (anomaly, failure) keeps the condition true.
    #[serde(default = "ten_minutes")]
    pub window: Interval,
    /// What to do when it fires.
    #[serde(default)]
    pub action: Option<RemediationAction>,
    /// raise_slo: the step.
    #[serde(default = "slo_step")]
    pub slo_step: f64,
    /// raise_slo: the highest SLO quantile it goes to.
    #[serde(default = "slo_max")]
    pub slo_max: f64,
    /// move_tier: the pool to move the workload to.
    #[serde(default)]
    pub tier: Option<String>,
}

fn zero_interval() -> Interval {
    Interval::ms(0)
}

fn ten_minutes() -> Interval {
    Interval::secs(600)
}

fn slo_step() -> f64 {
    0.01
}

fn slo_max() -> f64 {
    0.999
}

/// What a bearer token may do. Each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also creates and cancels events, intents and resource requests.
    Operator,
    /// Also changes the mode, asks for a re-plan, and replaces the
    /// configuration.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// `[[api.token]]`: a bearer token, stored as the SHA-256 of its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (the audit log names callers by it).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, 64 lowercase hex digits
    /// (`prescient api hash-token` prints it).
    pub sha256: String,
}

/// `[api]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Serve the API, the dashboard and `/metrics`.
    pub enabled: bool,
    /// Address and port to listen on (loopback only by default).
    pub listen: String,
    /// PEM certificate chain: with `tls_key`, serve HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Largest request body accepted.
    pub max_body: ByteSize,
    /// Requests per second allowed per caller (token, or address without
    /// one), with bursts of twice as many; 0: no limit.
    pub rate_limit: u32,
    /// Bearer tokens; with none, the API is read-only for everyone.
    #[serde(rename = "token")]
    pub tokens: Vec<TokenConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            listen: "127.0.0.1:9470".into(),
            tls_cert: None,
            tls_key: None,
            max_body: ByteSize(64 << 10),
            rate_limit: 1000,
            tokens: Vec::new(),
        }
    }
}

/// `[agent]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// `recommend` or `enforce`.
    pub mode: Mode,
    /// The host's name in the store (default: the machine's host name).
    pub host: Option<String>,
    /// How often cgroups are read (at least 100 ms).
    pub sample_interval: Interval,
    /// Samples are rolled up to this step before the forecaster sees them.
    pub forecast_step: Interval,
    /// How often a plan is made (and workloads rediscovered).
    pub plan_interval: Interval,
    /// Forecast steps a plan covers.
    pub plan_steps: u32,
    /// Who sizes the workloads: `prescient` (forecasts and the partition
    /// solver) or a reference policy of the replay simulator by name
    /// (`vpa`, `static-equal`, ...: see [`policies`]), enforced the same
    /// way, for comparison.
    pub policy: String,
    /// The CPU allocation unit, cores (default: the solver's, 1/8 core).
    pub cpu_unit: Option<f64>,
}

/// The agent's own policy: forecasts and the partition solver.
pub const PRESCIENT_POLICY: &str = "prescient";

/// The policies `agent.policy` may name: [`PRESCIENT_POLICY`], then the
/// replay simulator's reference policies (the same algorithms `prescient
/// replay` scores).
pub fn policies() -> Vec<String> {
    std::iter::once(PRESCIENT_POLICY.to_string())
        .chain(
            prescient_sim::policies::reference()
                .iter()
                .map(|p| p.name().to_string()),
        )
        .collect()
}

/// The reference policy called `name`, or `None` for
/// [`PRESCIENT_POLICY`]; an unknown name is an error listing the known ones.
pub fn reference_policy(name: &str) -> Result<Option<Box<dyn prescient_sim::Policy>>, String> {
    if name == PRESCIENT_POLICY {
        return Ok(None);
    }
    let mut all = prescient_sim::policies::reference();
    match all.iter().position(|p| p.name() == name) {
        Some(i) => Ok(Some(all.swap_remove(i))),
        None => Err(format!(
            "unknown policy (expected one of: {})",
            policies().join(", ")
        )),
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            mode: Mode::Recommend,
            host: None,
            sample_interval: Interval::secs(1),
            forecast_step: Interval::secs(10),
            plan_interval: Interval::secs(10),
            plan_steps: 3,
            policy: PRESCIENT_POLICY.to_string(),
            cpu_unit: None,
        }
    }
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite file.
    pub path: PathBuf,
    /// Samples are written in batches this often.
    pub flush_interval: Interval,
    /// Samples held in memory while the store cannot be written (the
    /// oldest are dropped beyond it).
    pub max_buffered_samples: usize,
    /// Forecaster state is saved this often (and on exit).
    pub checkpoint_interval: Interval,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/prescient/prescient.db"),
            flush_interval: Interval::secs(10),
            max_buffered_samples: 100_000,
            checkpoint_interval: Interval::secs(60),
        }
    }
}

/// `[cgroup]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// The subtree the agent reads and writes under: cgroup globs and
    /// process groups are relative to it, and no write leaves it.
    pub subtree: String,
    /// `root` (the top of each hierarchy) or `self` (the agent's own cgroup).
    pub relative_to: RelativeTo,
    /// Put limits back as they were when the agent stops.
    pub restore_on_exit: bool,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        CgroupConfig {
            subtree: "/".into(),
            relative_to: RelativeTo::Root,
            restore_on_exit: true,
        }
    }
}

/// `[enforce]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforceConfig {
    /// Cap CPU at the allocation (`cpu.max`), not only weigh it.
    pub hard_cpu: bool,
    /// Cap memory (`memory.max`) at this multiple (≥ 1) of the allocation;
    /// unset: memory.high only.
    pub memory_max_factor: Option<f64>,
    /// Hard memory limits stay at least this far above usage.
    pub memory_headroom: ByteSize,
    /// The largest change of a CPU limit per plan, cores.
    pub max_cpu_step: Option<f64>,
    /// The largest change of a memory limit per plan.
    pub max_memory_step: Option<ByteSize>,
    /// The block devices whose I/O is capped, as `"MAJ:MIN"` (`"8:0"`; see
    /// `/sys/dev/block` or `lsblk`): each gets `io.max` (v1:
    /// `blkio.throttle.*_device`) at the allocations of the I/O resources
    /// a pool gives a capacity for. Empty: I/O is planned but not capped.
    pub io_devices: Vec<String>,
    /// The least a bandwidth cap (rbps, wbps) is set to, bytes/s: a
    /// workload planned next to nothing can still start reading.
    pub io_floor: ByteSize,
    /// The least an operations cap (riops, wiops) is set to, ops/s.
    pub io_floor_ops: u64,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        EnforceConfig {
            hard_cpu: false,
            memory_max_factor: None,
            memory_headroom: ByteSize(64 << 20),
            max_cpu_step: None,
            max_memory_step: None,
            io_devices: Vec::new(),
            io_floor: ByteSize(prescient_linux::enforce::IO_FLOOR_BYTES_DEFAULT),
            io_floor_ops: prescient_linux::enforce::IO_FLOOR_OPS_DEFAULT,
        }
    }
}

impl EnforceConfig {
    /// The devices of `io_devices` that parse (every one, once the
    /// configuration is validated).
    pub fn devices(&self) -> Vec<Device> {
        self.io_devices
            .iter()
            .filter_map(|d| Device::parse(0, d).ok())
            .collect()
    }
}

/// `[[pool]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Its name (the plan's pool in the store).
    pub name: String,
    /// The pool it nests in.
    #[serde(default)]
    pub parent: Option<String>,
    /// CPU cores (default: the machine's CPUs).
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Memory (default: the machine's memory).
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// Network receive capacity, bytes per second (e.g. `"125MB"` for a
    /// 1 Gbit/s link). Without it, received bytes are planned unlimited
    /// (each workload at its forecast). Network is planned and reported,
    /// never enforced: cgroups have no network knob.
    #[serde(default)]
    pub net_rx: Option<ByteSize>,
    /// Network send capacity, bytes per second (likewise).
    #[serde(default)]
    pub net_tx: Option<ByteSize>,
    /// Block I/O read bandwidth, bytes per second (`"200MiB"`). With it,
    /// io_read is forecast and planned for the pool's workloads, and
    /// capped (`rbps`) on `enforce.io_devices` in enforce mode.
    #[serde(default)]
    pub io_read: Option<ByteSize>,
    /// Block I/O write bandwidth, bytes per second (`wbps`; likewise).
    #[serde(default)]
    pub io_write: Option<ByteSize>,
    /// Block read operations per second (`riops`; likewise).
    #[serde(default)]
    pub io_read_ops: Option<f64>,
    /// Block write operations per second (`wiops`; likewise).
    #[serde(default)]
    pub io_write_ops: Option<f64>,
    /// Spread capacity no forecast wants over the workloads.
    #[serde(default)]
    pub spread_spare: bool,
}

impl PoolConfig {
    /// Its capacity of `r` in the resource's unit, where it has one.
    pub fn capacity(&self, r: Resource) -> Option<f64> {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory.map(|m| m.0 as f64),
            Resource::NetRx => self.net_rx.map(|m| m.0 as f64),
            Resource::NetTx => self.net_tx.map(|m| m.0 as f64),
            Resource::IoRead => self.io_read.map(|m| m.0 as f64),
            Resource::IoWrite => self.io_write.map(|m| m.0 as f64),
            Resource::IoReadOps => self.io_read_ops,
            Resource::IoWriteOps => self.io_write_ops,
            Resource::DiskIo => None,
        }
    }
}

/// `[[workload]]`: a selector and a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadConfig {
    /// The selector's name (one cgroup path component); for a process
    /// selector also the workload's id and its group cgroup's name.
    pub name: String,
    /// The pool (default: the first).
    #[serde(default)]
    pub pool: Option<String>,
    /// Cgroups whose path (under the subtree) matches this glob.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Processes whose command name matches this glob (grouped into a
    /// cgroup of the agent's subtree, in enforce mode).
    #[serde(default)]
    pub command: Option<String>,
    /// Processes whose command line matches this regex.
    #[serde(default)]
    pub command_regex: Option<String>,
    /// Processes of this user (a name, or a numeric uid).
    #[serde(default)]
    pub user: Option<String>,
    /// Labels given to the workloads found.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Priority class (higher classes reach their SLO first).
    #[serde(default)]
    pub priority: u32,
    /// Weight within the class.
    #[serde(default = "one")]
    pub weight: f64,
    /// The quantile of demand to cover, in (0, 1).
    #[serde(default = "slo")]
    pub slo_quantile: f64,
    /// What changing an allocation costs, in units of satisfied demand.
    #[serde(default)]
    pub change_cost: f64,
    /// CPU policy (cores).
    #[serde(default)]
    pub cpu: CpuPolicy,
    /// Memory policy.
    #[serde(default)]
    pub memory: MemoryPolicy,
    /// Block read bandwidth policy, bytes per second (planned where the
    /// pool gives an `io_read` capacity).
    #[serde(default, skip_serializing_if = "is_default")]
    pub io_read: MemoryPolicy,
    /// Block write bandwidth policy, bytes per second.
    #[serde(default, skip_serializing_if = "is_default")]
    pub io_write: MemoryPolicy,
    /// Block read operations policy, ops per second.
    #[serde(default, skip_serializing_if = "is_default")]
    pub io_read_ops: CpuPolicy,
    /// Block write operations policy, ops per second.
    #[serde(default, skip_serializing_if = "is_default")]
    pub io_write_ops: CpuPolicy,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn one() -> f64 {
    1.0
}

fn slo() -> f64 {
    0.95
}

/// `[workload.cpu]` (cores), and `[workload.io_read_ops]` /
/// `[workload.io_write_ops]` (operations per second): amounts as numbers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CpuPolicy {
    /// Never less than this, cores.
    pub guarantee: f64,
    /// Never more than this, cores.
    pub max: Option<f64>,
    /// Overrides the workload's SLO quantile.
    pub slo_quantile: Option<f64>,
    /// Overrides the workload's weight.
    pub weight: Option<f64>,
    /// Overrides the workload's priority class.
    pub priority: Option<u32>,
}

/// `[workload.memory]`, and `[workload.io_read]` / `[workload.io_write]`
/// (bytes per second): amounts as sizes (`"64MiB"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryPolicy {
    /// Never less than this.
    pub guarantee: ByteSize,
    /// Never more than this.
    pub max: Option<ByteSize>,
    /// Overrides the workload's SLO quantile.
    pub slo_quantile: Option<f64>,
    /// Overrides the workload's weight.
    pub weight: Option<f64>,
    /// Overrides the workload's priority class.
    pub priority: Option<u32>,
}

impl WorkloadConfig {
    /// The selector this workload is found by.
    pub fn selector(&self) -> Selector {
        let rule = match &self.cgroup {
            Some(glob) => Rule::Cgroup { glob: glob.clone() },
            None => Rule::Process {
                command: match (&self.command, &self.command_regex) {
                    (Some(g), _) => Some(CommandMatch::Glob(g.clone())),
                    (None, Some(r)) => Some(CommandMatch::Regex(r.clone())),
                    (None, None) => None,
                },
                user: self.user.as_ref().map(|u| match u.parse::<u32>() {
                    Ok(uid) => UserMatch::Uid(uid),
                    Err(_) => UserMatch::Name(u.clone()),
                }),
            },
        };
        Selector {
            name: self.name.clone(),
            rule,
            labels: self.labels.clone(),
        }
    }

    /// The solver's policy for `resource` (in the resource's unit: cpu in
    /// cores, memory in bytes, I/O in bytes or operations per second).
    pub fn policy(&self, resource: Resource) -> ResourcePolicy {
        type Row = (f64, Option<f64>, Option<f64>, Option<f64>, Option<u32>);
        let bytes = |p: &MemoryPolicy| -> Row {
            (
                p.guarantee.0 as f64,
                p.max.map(|m| m.0 as f64),
                p.slo_quantile,
                p.weight,
                p.priority,
            )
        };
        let numbers =
            |p: &CpuPolicy| -> Row { (p.guarantee, p.max, p.slo_quantile, p.weight, p.priority) };
        let (guarantee, limit, slo, weight, priority) = match resource {
            Resource::Cpu => numbers(&self.cpu),
            Resource::Memory => bytes(&self.memory),
            Resource::IoRead => bytes(&self.io_read),
            Resource::IoWrite => bytes(&self.io_write),
            Resource::IoReadOps => numbers(&self.io_read_ops),
            Resource::IoWriteOps => numbers(&self.io_write_ops),
            Resource::NetRx | Resource::NetTx | Resource::DiskIo => (0.0, None, None, None, None),
        };
        ResourcePolicy {
            guarantee,
            limit,
            priority: priority.unwrap_or(self.priority),
            weight: weight.unwrap_or(self.weight),
            slo_quantile: slo.unwrap_or(self.slo_quantile),
            change_cost: self.change_cost,
            lendable: true,
        }
    }
}

/// One bad key of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The key's path (`workload[1].cpu.slo_quantile`).
    pub key: String,
    /// Its value as written (TOML).
    pub value: String,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.problem)
    }
}

/// Why a configuration cannot be used. Every variant names where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a key is unknown or of the wrong type.
    #[error("{}{}: {key}: {message}", .file.display(), .at)]
    Parse {
        /// The file (`<text>` when parsed from a string).
        file: PathBuf,
        /// `:line:column` where known.
        at: String,
        /// The key's path (`.` when the error is not at a key).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Keys with values that cannot be honoured.
    #[error("{}: {}", .file.display(), .issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every bad key.
        issues: Vec<Issue>,
    },
    /// An environment variable with a bad value.
    #[error("environment variable {var}={value:?}: {problem}")]
    Env {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: String,
    },
}

impl Config {
    /// Parses a file's text (`file` names it in errors). Does not validate.
    pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| parse_error(file, text, "", &e))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            parse_error(file, text, &key, &inner)
        })
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let c = Config::from_toml(&text, path)?;
        c.validate(path)?;
        Ok(c)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks every key the types cannot (see the module docs); `file`
    /// names the source in the error.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let issues = self.issues();
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                file: file.to_path_buf(),
                issues,
            })
        }
    }

    /// The bad keys of `[alerts]`.
    fn alert_issues(&self, bad: &mut impl FnMut(String, String, &str)) {
        let a = &self.alerts;
        if let Some(url) = &a.webhook
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            bad(
                "alerts.webhook".into(),
                format!("{url:?}"),
                "must be an http:// or https:// URL",
            );
        }
        if a.webhook_attempts == 0 {
            bad(
                "alerts.webhook_attempts".into(),
                "0".into(),
                "must be at least 1",
            );
        }
        if a.webhook_timeout.0 == 0 {
            bad(
                "alerts.webhook_timeout".into(),
                "\"0ms\"".into(),
                "must be positive",
            );
        }
        let mut names = BTreeSet::new();
        for (i, r) in a.rules.iter().enumerate() {
            let k = format!("alerts.rule[{i}]");
            if r.name.trim().is_empty() || r.name.contains('/') {
                bad(
                    format!("{k}.name"),
                    format!("{:?}", r.name),
                    "must be a non-empty name without '/'",
                );
            } else if !names.insert(r.name.as_str()) {
                bad(
                    format!("{k}.name"),
                    format!("{:?}", r.name),
                    "is used by an earlier rule",
                );
            }
            let num = |v: f64| format!("{v}");
            match r.when {
                AlertCondition::Utilisation => match r.above {
                    None => bad(
                        format!("{k}.above"),
                        "(missing)".into(),
                        "a utilisation rule needs `above`, a share of capacity such as 0.9",
                    ),
                    Some(v) if !(v.is_finite() && v > 0.0) => bad(
                        format!("{k}.above"),
                        num(v),
                        "must be a positive share of capacity",
                    ),
                    Some(_) => {}
                },
                AlertCondition::Coverage => match r.below {
                    None => bad(
                        format!("{k}.below"),
                        "(missing)".into(),
                        "a coverage rule needs `below`, a share in (0, 1] such as 0.9",
                    ),
                    Some(v) if !(v > 0.0 && v <= 1.0) => {
                        bad(format!("{k}.below"), num(v), "must be in (0, 1]")
                    }
                    Some(_) => {}
                },
                AlertCondition::EnforceFailures => {
                    if let Some(v) = r.above
                        && !(v.is_finite() && v >= 1.0)
                    {
                        bad(
                            format!("{k}.above"),
                            num(v),
                            "must be a count of at least 1",
                        );
                    }
                }
                _ => {}
            }
            if let Some(kind) = &r.anomaly
                && !["memory_leak", "level_shift", "outlier"].contains(&kind.as_str())
            {
                bad(
                    format!("{k}.anomaly"),
                    format!("{kind:?}"),
                    "unknown anomaly kind (expected memory_leak, level_shift or outlier)",
                );
            }
            if let Some(glob) = &r.workload
                && let Err(e) = prescient_linux::glob::Glob::new(glob)
            {
                bad(format!("{k}.workload"), format!("{glob:?}"), &e.to_string());
            }
            if let Some(pool) = &r.pool
                && !self.pools.is_empty()
                && !self.pools.iter().any(|p| &p.name == pool)
            {
                bad(
                    format!("{k}.pool"),
                    format!("{pool:?}"),
                    "no [[pool]] has this name",
                );
            }
            if !(r.slo_step > 0.0 && r.slo_step < 1.0) {
                bad(
                    format!("{k}.slo_step"),
                    num(r.slo_step),
                    "must be in (0, 1)",
                );
            }
            if !(r.slo_max > 0.0 && r.slo_max < 1.0) {
                bad(format!("{k}.slo_max"), num(r.slo_max), "must be in (0, 1)");
            }
            match (r.action, &r.tier) {
                (Some(RemediationAction::MoveTier), None) => bad(
                    format!("{k}.tier"),
                    "(missing)".into(),
                    "action move_tier needs `tier`, the pool to move the workload to",
                ),
                (Some(RemediationAction::MoveTier), Some(t))
                    if !self.pools.iter().any(|p| &p.name == t) =>
                {
                    bad(
                        format!("{k}.tier"),
                        format!("{t:?}"),
                        "no [[pool]] has this name",
                    )
                }
                _ => {}
            }
            if matches!(
                r.action,
                Some(RemediationAction::RaiseSlo | RemediationAction::MoveTier)
            ) && matches!(
                r.when,
                AlertCondition::Utilisation
                    | AlertCondition::PlanDegraded
                    | AlertCondition::PlanFailed
                    | AlertCondition::EnforceFailures
            ) {
                bad(
                    format!("{k}.action"),
                    match r.action {
                        Some(RemediationAction::RaiseSlo) => "\"raise_slo\"".into(),
                        _ => "\"move_tier\"".into(),
                    },
                    "raise_slo and move_tier act on a workload: use them with coverage or anomaly rules",
                );
            }
        }
    }

    /// Every bad key, in file order.
    pub fn issues(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        let mut bad = |key: String, value: String, problem: &str| {
            out.push(Issue {
                key,
                value,
                problem: problem.to_string(),
            })
        };
        let a = &self.agent;
        let iv = |i: Interval| format!("\"{i}\"");
        if a.sample_interval.0 == 0 {
            bad(
                "agent.sample_interval".into(),
                iv(a.sample_interval),
                "must be positive",
            );
        } else if a.sample_interval < MIN_SAMPLE_INTERVAL {
            bad(
                "agent.sample_interval".into(),
                iv(a.sample_interval),
                "must be at least 100ms",
            );
        }
        if a.forecast_step.0 == 0 {
            bad(
                "agent.forecast_step".into(),
                iv(a.forecast_step),
                "must be positive",
            );
        } else if a.forecast_step < a.sample_interval {
            bad(
                "agent.forecast_step".into(),
                iv(a.forecast_step),
                "must be at least agent.sample_interval",
            );
        }
        if a.plan_interval.0 == 0 {
            bad(
                "agent.plan_interval".into(),
                iv(a.plan_interval),
                "must be positive",
            );
        } else if a.plan_interval < a.sample_interval {
            bad(
                "agent.plan_interval".into(),
                iv(a.plan_interval),
                "must be at least agent.sample_interval",
            );
        }
        if let Some(u) = a.cpu_unit
            && !(u.is_finite() && u > 0.0 && u <= 64.0)
        {
            bad(
                "agent.cpu_unit".into(),
                u.to_string(),
                "must be in (0, 64] cores",
            );
        }
        if let Err(why) = reference_policy(&a.policy) {
            bad("agent.policy".into(), format!("{:?}", a.policy), &why);
        }
        if a.plan_steps == 0 || a.plan_steps > 10_000 {
            bad(
                "agent.plan_steps".into(),
                a.plan_steps.to_string(),
                "must be in 1..=10000",
            );
        }
        if let Some(h) = &a.host
            && (h.trim().is_empty() || h.contains(['\n', '\0']))
        {
            bad(
                "agent.host".into(),
                format!("{h:?}"),
                "must be a non-empty name",
            );
        }
        let s = &self.store;
        if s.path.as_os_str().is_empty() {
            bad("store.path".into(), "\"\"".into(), "must not be empty");
        }
        if s.flush_interval.0 == 0 {
            bad(
                "store.flush_interval".into(),
                iv(s.flush_interval),
                "must be positive",
            );
        }
        if s.checkpoint_interval.0 == 0 {
            bad(
                "store.checkpoint_interval".into(),
                iv(s.checkpoint_interval),
                "must be positive",
            );
        }
        if s.max_buffered_samples == 0 {
            bad(
                "store.max_buffered_samples".into(),
                "0".into(),
                "must be at least 1",
            );
        }
        if let Err(e) = CgroupPath::parse(&self.cgroup.subtree) {
            bad(
                "cgroup.subtree".into(),
                format!("{:?}", self.cgroup.subtree),
                &e.to_string(),
            );
        }
        let e = &self.enforce;
        if let Some(f) = e.memory_max_factor
            && !(f.is_finite() && f >= 1.0)
        {
            bad(
                "enforce.memory_max_factor".into(),
                f.to_string(),
                "must be at least 1",
            );
        }
        if let Some(c) = e.max_cpu_step
            && !(c.is_finite() && c > 0.0)
        {
            bad(
                "enforce.max_cpu_step".into(),
                c.to_string(),
                "must be positive",
            );
        }
        if let Some(m) = e.max_memory_step
            && m.0 == 0
        {
            bad(
                "enforce.max_memory_step".into(),
                format!("\"{m}\""),
                "must be positive",
            );
        }

        let mut devices = BTreeSet::new();
        for (i, d) in e.io_devices.iter().enumerate() {
            match Device::parse(0, d) {
                Ok(dev) if !devices.insert(dev) => bad(
                    format!("enforce.io_devices[{i}]"),
                    format!("{d:?}"),
                    "is listed twice",
                ),
                Ok(_) => {}
                Err(_) => bad(
                    format!("enforce.io_devices[{i}]"),
                    format!("{d:?}"),
                    "must be a block device as \"MAJOR:MINOR\" (such as \"8:0\"; see /sys/dev/block or `lsblk`)",
                ),
            }
        }

        // Pools.
        let mut names = BTreeSet::new();
        for (i, p) in self.pools.iter().enumerate() {
            let k = format!("pool[{i}]");
            if p.name.trim().is_empty() {
                bad(
                    format!("{k}.name"),
                    format!("{:?}", p.name),
                    "must not be empty",
                );
            } else if !names.insert(p.name.as_str()) {
                bad(
                    format!("{k}.name"),
                    format!("{:?}", p.name),
                    "is defined twice",
                );
            }
            if let Some(c) = p.cpu
                && !(c.is_finite() && c > 0.0)
            {
                bad(
                    format!("{k}.cpu"),
                    c.to_string(),
                    "must be a positive number of cores",
                );
            }
            for (key, v) in [
                ("memory", p.memory),
                ("net_rx", p.net_rx),
                ("net_tx", p.net_tx),
                ("io_read", p.io_read),
                ("io_write", p.io_write),
            ] {
                if let Some(m) = v
                    && m.0 == 0
                {
                    bad(format!("{k}.{key}"), format!("\"{m}\""), "must be positive");
                }
            }
            for (key, v) in [
                ("io_read_ops", p.io_read_ops),
                ("io_write_ops", p.io_write_ops),
            ] {
                if let Some(n) = v
                    && !(n.is_finite() && n >= 1.0)
                {
                    bad(
                        format!("{k}.{key}"),
                        n.to_string(),
                        "must be at least 1 operation per second",
                    );
                }
            }
        }
        for (i, p) in self.pools.iter().enumerate() {
            if let Some(parent) = &p.parent {
                if !names.contains(parent.as_str()) {
                    bad(
                        format!("pool[{i}].parent"),
                        format!("{parent:?}"),
                        "is not a pool's name",
                    );
                } else if self.pool_cycle(i) {
                    bad(
                        format!("pool[{i}].parent"),
                        format!("{parent:?}"),
                        "makes a cycle of pools",
                    );
                }
            }
        }

        // Workloads.
        let mut wnames = BTreeSet::new();
        for (i, w) in self.workloads.iter().enumerate() {
            let k = format!("workload[{i}]");
            if CgroupPath::parse(&w.name).map(|p| p.components().count()) != Ok(1) {
                bad(
                    format!("{k}.name"),
                    format!("{:?}", w.name),
                    "must be one cgroup path component (no '/', '.', '..')",
                );
            } else if !wnames.insert(w.name.as_str()) {
                bad(
                    format!("{k}.name"),
                    format!("{:?}", w.name),
                    "is defined twice",
                );
            }
            let process = w.command.is_some() || w.command_regex.is_some() || w.user.is_some();
            match (&w.cgroup, process) {
                (Some(g), true) => bad(
                    format!("{k}.cgroup"),
                    format!("{g:?}"),
                    "a workload is found by a cgroup glob or by a process match, not both",
                ),
                (None, false) => bad(
                    format!("{k}.name"),
                    format!("{:?}", w.name),
                    "needs a selector: cgroup, command, command_regex or user",
                ),
                _ => {}
            }
            if w.command.is_some() && w.command_regex.is_some() {
                bad(
                    format!("{k}.command_regex"),
                    format!("{:?}", w.command_regex.as_deref().unwrap_or("")),
                    "give command or command_regex, not both",
                );
            }
            if let Some(p) = &w.pool
                && !self.pools.is_empty()
                && !names.contains(p.as_str())
            {
                bad(
                    format!("{k}.pool"),
                    format!("{p:?}"),
                    "is not a pool's name",
                );
            }
            let slo_ok = |q: f64| q.is_finite() && q > 0.0 && q < 1.0;
            let weight_ok = |w: f64| w.is_finite() && w > 0.0;
            if !slo_ok(w.slo_quantile) {
                bad(
                    format!("{k}.slo_quantile"),
                    w.slo_quantile.to_string(),
                    "must be in (0, 1)",
                );
            }
            if !weight_ok(w.weight) {
                bad(
                    format!("{k}.weight"),
                    w.weight.to_string(),
                    "must be positive",
                );
            }
            if !(w.change_cost.is_finite() && w.change_cost >= 0.0) {
                bad(
                    format!("{k}.change_cost"),
                    w.change_cost.to_string(),
                    "must be zero or positive",
                );
            }
            for (r, q, wt) in [
                ("cpu", w.cpu.slo_quantile, w.cpu.weight),
                ("memory", w.memory.slo_quantile, w.memory.weight),
                ("io_read", w.io_read.slo_quantile, w.io_read.weight),
                ("io_write", w.io_write.slo_quantile, w.io_write.weight),
                (
                    "io_read_ops",
                    w.io_read_ops.slo_quantile,
                    w.io_read_ops.weight,
                ),
                (
                    "io_write_ops",
                    w.io_write_ops.slo_quantile,
                    w.io_write_ops.weight,
                ),
            ] {
                if let Some(q) = q
                    && !slo_ok(q)
                {
                    bad(
                        format!("{k}.{r}.slo_quantile"),
                        q.to_string(),
                        "must be in (0, 1)",
                    );
                }
                if let Some(x) = wt
                    && !weight_ok(x)
                {
                    bad(format!("{k}.{r}.weight"), x.to_string(), "must be positive");
                }
            }
            for (r, p) in [
                ("cpu", &w.cpu),
                ("io_read_ops", &w.io_read_ops),
                ("io_write_ops", &w.io_write_ops),
            ] {
                if !(p.guarantee.is_finite() && p.guarantee >= 0.0) {
                    bad(
                        format!("{k}.{r}.guarantee"),
                        p.guarantee.to_string(),
                        "must be zero or positive",
                    );
                }
                if let Some(m) = p.max
                    && !(m.is_finite() && m > 0.0 && m >= p.guarantee)
                {
                    bad(
                        format!("{k}.{r}.max"),
                        m.to_string(),
                        &format!("must be positive and at least {r}.guarantee"),
                    );
                }
            }
            for (r, p) in [
                ("memory", &w.memory),
                ("io_read", &w.io_read),
                ("io_write", &w.io_write),
            ] {
                if let Some(m) = p.max
                    && (m.0 == 0 || m < p.guarantee)
                {
                    bad(
                        format!("{k}.{r}.max"),
                        format!("\"{m}\""),
                        &format!("must be positive and at least {r}.guarantee"),
                    );
                }
            }
            if let Err(e) = Discovery::new(vec![w.selector()], CgroupPath::root()) {
                let key = if w.cgroup.is_some() {
                    "cgroup"
                } else if w.command.is_some() {
                    "command"
                } else if w.command_regex.is_some() {
                    "command_regex"
                } else {
                    "user"
                };
                let value = match key {
                    "cgroup" => w.cgroup.clone(),
                    "command" => w.command.clone(),
                    "command_regex" => w.command_regex.clone(),
                    _ => w.user.clone(),
                };
                // A bad name is reported above already.
                if !matches!(e, prescient_linux::discover::SelectorError::BadName { .. }) {
                    bad(
                        format!("{k}.{key}"),
                        format!("{:?}", value.unwrap_or_default()),
                        &e.to_string(),
                    );
                }
            }
        }

        // Guarantees within capacity, per pool given a capacity.
        for (pi, p) in self.pools.iter().enumerate() {
            let members: Vec<&WorkloadConfig> = self
                .workloads
                .iter()
                .filter(|w| self.pool_index(w) == Some(pi))
                .collect();
            if let Some(cap) = p.cpu {
                let sum: f64 = members.iter().map(|w| w.cpu.guarantee).sum();
                if sum > cap + 1e-9 {
                    bad(
                        format!("pool[{pi}].cpu"),
                        cap.to_string(),
                        &format!(
                            "the CPU guarantees of its workloads add up to {sum} cores ({}), above its capacity",
                            members
                                .iter()
                                .map(|w| format!("{} {}", w.name, w.cpu.guarantee))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
            if let Some(cap) = p.memory {
                let sum: u64 = members.iter().map(|w| w.memory.guarantee.0).sum();
                if sum > cap.0 {
                    bad(
                        format!("pool[{pi}].memory"),
                        format!("\"{cap}\""),
                        &format!(
                            "the memory guarantees of its workloads add up to {} ({}), above its capacity",
                            ByteSize(sum),
                            members
                                .iter()
                                .map(|w| format!("{} {}", w.name, w.memory.guarantee))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }

        // The I/O guarantees likewise (in the resource's unit).
        for (pi, p) in self.pools.iter().enumerate() {
            for r in IO_RESOURCES {
                // A capacity below 1 is reported above already.
                let Some(cap) = p.capacity(r).filter(|c| *c >= 1.0) else {
                    continue;
                };
                let members: Vec<(&str, f64)> = self
                    .workloads
                    .iter()
                    .filter(|w| self.pool_index(w) == Some(pi))
                    .map(|w| (w.name.as_str(), w.policy(r).guarantee))
                    .filter(|(_, g)| *g > 0.0)
                    .collect();
                let sum: f64 = members.iter().map(|(_, g)| g).sum();
                if sum > cap * (1.0 + 1e-9) {
                    bad(
                        format!("pool[{pi}].{r}"),
                        capacity_text(p, r),
                        &format!(
                            "the {r} guarantees of its workloads add up to {} ({}), above its capacity",
                            fmt_amount(r, sum),
                            members
                                .iter()
                                .map(|(n, g)| format!("{n} {}", fmt_amount(r, *g)))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        }

        self.alert_issues(&mut bad);

        let h = &self.history;
        if let Some(url) = &h.prometheus {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bad(
                    "history.prometheus".into(),
                    format!("{url:?}"),
                    "must be an http:// or https:// URL",
                );
            }
            if h.cpu_query.is_none() && h.memory_query.is_none() {
                bad(
                    "history.prometheus".into(),
                    format!("{url:?}"),
                    "needs history.cpu_query or history.memory_query",
                );
            }
        }
        if h.since.0 == 0 {
            bad("history.since".into(), "\"0ms\"".into(), "must be positive");
        }
        if h.timeout.0 == 0 {
            bad(
                "history.timeout".into(),
                "\"0ms\"".into(),
                "must be positive",
            );
        }

        let f = &self.forecast;
        for (key, v) in [
            ("forecast.retrain_interval", f.retrain_interval),
            ("forecast.retry_interval", f.retry_interval),
            ("forecast.min_history", f.min_history),
            ("forecast.training_window", f.training_window),
        ] {
            if v.0 == 0 {
                bad(key.into(), "\"0ms\"".into(), "must be positive");
            }
        }
        if f.training_window.0 < f.min_history.0 {
            bad(
                "forecast.training_window".into(),
                format!("\"{}\"", f.training_window),
                &format!(
                    "is shorter than forecast.min_history ({}): training could never start",
                    f.min_history
                ),
            );
        }

        let api = &self.api;
        if api.listen.parse::<std::net::SocketAddr>().is_err() {
            bad(
                "api.listen".into(),
                format!("{:?}", api.listen),
                "is not an address and port (such as 127.0.0.1:9470 or [::1]:9470)",
            );
        }
        if api.tls_cert.is_some() != api.tls_key.is_some() {
            let (key, v) = match (&api.tls_cert, &api.tls_key) {
                (Some(c), None) => ("api.tls_cert", c),
                (_, Some(k)) => ("api.tls_key", k),
                (None, None) => unreachable!("one of the two is set"),
            };
            bad(
                key.into(),
                format!("{:?}", v.display().to_string()),
                "api.tls_cert and api.tls_key go together: set both or neither",
            );
        }
        if api.max_body.0 == 0 {
            bad("api.max_body".into(), "0".into(), "must be positive");
        }
        let mut names = BTreeSet::new();
        for (i, t) in api.tokens.iter().enumerate() {
            if t.name.trim().is_empty() {
                bad(
                    format!("api.token[{i}].name"),
                    "\"\"".into(),
                    "must not be empty",
                );
            } else if !names.insert(t.name.as_str()) {
                bad(
                    format!("api.token[{i}].name"),
                    format!("{:?}", t.name),
                    "is used by an earlier token",
                );
            }
            if t.sha256.len() != 64
                || !t
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                bad(
                    format!("api.token[{i}].sha256"),
                    format!("{:?}", t.sha256),
                    "must be 64 lowercase hex digits (the SHA-256 of the token: `prescient api hash-token`)",
                );
            }
        }
        out
    }

    /// What is valid but will not do what it seems to, or depends on the
    /// host (checked against this host's [`SYS_DEV_BLOCK`]): `prescient
    /// config check` prints these and passes, the agent logs them at start
    /// and at each reload. See [`Config::warnings_at`].
    pub fn warnings(&self) -> Vec<Issue> {
        self.warnings_at(Path::new(SYS_DEV_BLOCK))
    }

    /// [`Config::warnings`] with the block devices looked for under
    /// `sys_dev_block`:
    ///
    /// - an `enforce.io_devices` entry that is not a block device here, or
    ///   is a partition (the kernel caps whole disks only). A warning, not
    ///   an error: a file is often checked on another machine than the one
    ///   it runs on, and devices come and go (hot-plug; loop and
    ///   device-mapper numbers are given at run time). Writing a cap for a
    ///   device that is not there fails (ENODEV), is logged and dropped;
    ///   the other knobs are written all the same.
    /// - a pool's I/O capacity in enforce mode without `enforce.io_devices`:
    ///   the I/O is planned and reported, but no cap can be written.
    /// - `enforce.io_devices` without any pool's I/O capacity: nothing is
    ///   planned for I/O, so nothing is capped.
    pub fn warnings_at(&self, sys_dev_block: &Path) -> Vec<Issue> {
        let mut out = Vec::new();
        for (i, d) in self.enforce.io_devices.iter().enumerate() {
            let Ok(dev) = Device::parse(0, d) else {
                continue; // An error of `issues`.
            };
            let problem = match dev.block_device_in(sys_dev_block) {
                BlockDevice::Disk => continue,
                BlockDevice::Missing => format!(
                    "is not a block device of this host (no {}): its I/O caps cannot be written until it appears",
                    sys_dev_block.join(dev.to_string()).display()
                ),
                BlockDevice::Partition(disk) => format!(
                    "is a partition: the kernel caps the I/O of whole disks only{}; writing its caps will fail",
                    disk.map(|d| format!(" (its disk is {d})"))
                        .unwrap_or_default()
                ),
            };
            out.push(Issue {
                key: format!("enforce.io_devices[{i}]"),
                value: format!("{d:?}"),
                problem,
            });
        }
        let io_capacities: Vec<(usize, Resource)> = self
            .pools
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                IO_RESOURCES
                    .into_iter()
                    .filter(|&r| p.capacity(r).is_some())
                    .map(move |r| (i, r))
            })
            .collect();
        if self.agent.mode == Mode::Enforce && self.enforce.io_devices.is_empty() {
            for &(i, r) in &io_capacities {
                out.push(Issue {
                    key: format!("pool[{i}].{r}"),
                    value: capacity_text(&self.pools[i], r),
                    problem: "enforce mode without enforce.io_devices: I/O is planned and reported, but no cap (io.max, v1 blkio.throttle.*) can be written; name the devices to cap in enforce.io_devices".into(),
                });
            }
        }
        if !self.enforce.io_devices.is_empty() && io_capacities.is_empty() {
            out.push(Issue {
                key: "enforce.io_devices".into(),
                value: format!("{:?}", self.enforce.io_devices),
                problem: "no pool gives an I/O capacity (io_read, io_write, io_read_ops, io_write_ops): I/O is not planned, so nothing is capped".into(),
            });
        }
        out
    }

    /// The index of `w`'s pool: its named one, else the first.
    pub fn pool_index(&self, w: &WorkloadConfig) -> Option<usize> {
        match &w.pool {
            Some(name) => self.pools.iter().position(|p| &p.name == name),
            None => (!self.pools.is_empty()).then_some(0),
        }
    }

    fn pool_cycle(&self, start: usize) -> bool {
        let mut at = start;
        for _ in 0..=self.pools.len() {
            let Some(parent) = &self.pools[at].parent else {
                return false;
            };
            match self.pools.iter().position(|p| &p.name == parent) {
                Some(p) if p == start => return true,
                Some(p) => at = p,
                None => return false,
            }
        }
        true
    }
}

/// `p`'s capacity of `r` as written in TOML (`"200MiB"`, `500`).
fn capacity_text(p: &PoolConfig, r: Resource) -> String {
    match r {
        Resource::IoRead => p.io_read.map(|b| format!("\"{b}\"")),
        Resource::IoWrite => p.io_write.map(|b| format!("\"{b}\"")),
        Resource::Memory => p.memory.map(|b| format!("\"{b}\"")),
        Resource::NetRx => p.net_rx.map(|b| format!("\"{b}\"")),
        Resource::NetTx => p.net_tx.map(|b| format!("\"{b}\"")),
        _ => p.capacity(r).map(|n| n.to_string()),
    }
    .unwrap_or_default()
}

/// A TOML or deserialisation error as a [`ConfigError::Parse`] with the
/// line and column.
fn parse_error(file: &Path, text: &str, key: &str, e: &toml::de::Error) -> ConfigError {
    let at = e
        .span()
        .map(|s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{col}")
        })
        .unwrap_or_default();
    ConfigError::Parse {
        file: file.to_path_buf(),
        at,
        key: if key.is_empty() {
            ".".into()
        } else {
            key.into()
        },
        message: e.message().trim().to_string(),
    }
}

/// One layer over the file: environment variables or command-line flags.
/// `None` leaves the value below alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `PRESCIENT_MODE`, `--mode`.
    pub mode: Option<Mode>,
    /// `PRESCIENT_HOST`.
    pub host: Option<String>,
    /// `PRESCIENT_STORE`, `--store`.
    pub store_path: Option<PathBuf>,
    /// `PRESCIENT_SAMPLE_INTERVAL`.
    pub sample_interval: Option<Interval>,
    /// `PRESCIENT_FORECAST_STEP`.
    pub forecast_step: Option<Interval>,
    /// `PRESCIENT_PLAN_INTERVAL`.
    pub plan_interval: Option<Interval>,
    /// `PRESCIENT_CGROUP_SUBTREE`.
    pub cgroup_subtree: Option<String>,
    /// `PRESCIENT_RESTORE_ON_EXIT` (`true`/`false`, `1`/`0`).
    pub restore_on_exit: Option<bool>,
    /// `PRESCIENT_POLICY`, `--policy`.
    pub policy: Option<String>,
}

/// The environment variables [`Overrides::from_env`] reads.
pub const ENV_VARS: [&str; 9] = [
    "PRESCIENT_MODE",
    "PRESCIENT_HOST",
    "PRESCIENT_STORE",
    "PRESCIENT_SAMPLE_INTERVAL",
    "PRESCIENT_FORECAST_STEP",
    "PRESCIENT_PLAN_INTERVAL",
    "PRESCIENT_CGROUP_SUBTREE",
    "PRESCIENT_RESTORE_ON_EXIT",
    "PRESCIENT_POLICY",
];

impl Overrides {
    /// The layer of the variables among `vars` (pass
    /// `std::env::vars()`); others are ignored.
    pub fn from_env<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Overrides, ConfigError> {
        let mut o = Overrides::default();
        for (var, value) in vars {
            let err = |problem: String| ConfigError::Env {
                var: var.clone(),
                value: value.clone(),
                problem,
            };
            match var.as_str() {
                "PRESCIENT_MODE" => o.mode = Some(Mode::parse(&value).map_err(err)?),
                "PRESCIENT_HOST" => o.host = Some(value.clone()),
                "PRESCIENT_STORE" => o.store_path = Some(PathBuf::from(&value)),
                "PRESCIENT_SAMPLE_INTERVAL" => {
                    o.sample_interval = Some(Interval::parse(&value).map_err(err)?)
                }
                "PRESCIENT_FORECAST_STEP" => {
                    o.forecast_step = Some(Interval::parse(&value).map_err(err)?)
                }
                "PRESCIENT_PLAN_INTERVAL" => {
                    o.plan_interval = Some(Interval::parse(&value).map_err(err)?)
                }
                "PRESCIENT_CGROUP_SUBTREE" => o.cgroup_subtree = Some(value.clone()),
                "PRESCIENT_POLICY" => o.policy = Some(value.trim().to_string()),
                "PRESCIENT_RESTORE_ON_EXIT" => {
                    o.restore_on_exit = Some(match value.trim() {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" => false,
                        _ => return Err(err("expected true or false".into())),
                    })
                }
                _ => {}
            }
        }
        Ok(o)
    }

    /// Sets what this layer gives.
    pub fn apply(&self, c: &mut Config) {
        if let Some(m) = self.mode {
            c.agent.mode = m;
        }
        if let Some(h) = &self.host {
            c.agent.host = Some(h.clone());
        }
        if let Some(p) = &self.store_path {
            c.store.path = p.clone();
        }
        if let Some(i) = self.sample_interval {
            c.agent.sample_interval = i;
        }
        if let Some(i) = self.forecast_step {
            c.agent.forecast_step = i;
        }
        if let Some(i) = self.plan_interval {
            c.agent.plan_interval = i;
        }
        if let Some(s) = &self.cgroup_subtree {
            c.cgroup.subtree = s.clone();
        }
        if let Some(r) = self.restore_on_exit {
            c.cgroup.restore_on_exit = r;
        }
        if let Some(p) = &self.policy {
            c.agent.policy = p.clone();
        }
    }
}

/// Where the configuration comes from: loaded at start and again on
/// SIGHUP.
// One per run: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file (or the defaults when `None`), then the environment's layer,
    /// then the flags'.
    Layered {
        /// The file.
        file: Option<PathBuf>,
        /// `PRESCIENT_*` variables.
        env: Overrides,
        /// Command-line flags.
        flags: Overrides,
    },
    /// A configuration built in code (loadgen, demo, tests); a reload
    /// gives it back unchanged.
    Fixed(Config),
}

impl ConfigSource {
    /// The configuration, validated.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::Fixed(c) => {
                c.validate(Path::new("<config>"))?;
                Ok(c.clone())
            }
            ConfigSource::Layered { file, env, flags } => {
                let (mut c, name) = match file {
                    Some(path) => {
                        let text =
                            std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                                path: path.clone(),
                                source,
                            })?;
                        (Config::from_toml(&text, path)?, path.clone())
                    }
                    None => (Config::default(), PathBuf::from("<defaults>")),
                };
                env.apply(&mut c);
                flags.apply(&mut c);
                c.validate(&name)?;
                Ok(c)
            }
        }
    }

    /// The configuration with `text` (TOML) in place of the file, layered
    /// and validated as [`ConfigSource::load`] does: for `Layered`, the
    /// environment's and the flags' layers go over it; for `Fixed`, the
    /// text is the whole configuration. `name` names the text in errors.
    /// This is how a configuration sent through the API is read (see
    /// [`crate::control::Command::SetConfig`]).
    pub fn load_text(&self, text: &str, name: &Path) -> Result<Config, ConfigError> {
        let mut c = Config::from_toml(text, name)?;
        if let ConfigSource::Layered { env, flags, .. } = self {
            env.apply(&mut c);
            flags.apply(&mut c);
        }
        c.validate(name)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("t.toml"))
    }

    fn issues(text: &str) -> Vec<Issue> {
        parse(text).unwrap().issues()
    }

    #[test]
    fn the_example_parses_validates_and_states_the_defaults() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.issues(), vec![]);
        let d = Config::default();
        assert_eq!(
            c.agent, d.agent,
            "[agent] of the example must be the defaults"
        );
        assert_eq!(c.store, d.store);
        assert_eq!(c.cgroup, d.cgroup);
        assert_eq!(c.enforce, d.enforce);
        assert_eq!(c.api, d.api, "[api] of the example must be the defaults");
        assert_eq!(
            c.alerts, d.alerts,
            "[alerts] of the example must be the defaults"
        );
        assert_eq!(
            c.history, d.history,
            "[history] of the example must be the defaults"
        );
        assert_eq!(
            c.forecast, d.forecast,
            "[forecast] of the example must be the defaults"
        );
        assert!(!c.workloads.is_empty());
        // The commented-out rules are valid when uncommented.
        let rules: String = EXAMPLE
            .lines()
            .skip_while(|l| !l.starts_with("# [[alerts.rule]]"))
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
            .collect();
        let c = parse(&rules).unwrap();
        assert_eq!(c.alerts.rules.len(), 3, "{rules}");
        assert_eq!(c.issues(), vec![]);
    }

    #[test]
    fn resources_are_named_as_everywhere_else() {
        let c = parse(
            "[[alerts.rule]]\nname = \"iops\"\nwhen = \"coverage\"\nbelow = 0.9\nresource = \"io_write_ops\"\n",
        )
        .unwrap();
        assert_eq!(c.alerts.rules[0].resource, Some(Resource::IoWriteOps));
        assert_eq!(c.issues(), vec![]);
        let e = parse("[[alerts.rule]]\nname = \"x\"\nwhen = \"coverage\"\nresource = \"iops\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("io_read_ops"), "{e}");
    }

    #[test]
    fn bad_api_and_alert_keys_are_named() {
        let keys =
            |text: &str| -> Vec<String> { issues(text).into_iter().map(|i| i.key).collect() };
        assert_eq!(
            keys("[api]\nlisten = \"localhost\"\ntls_cert = \"/c.pem\"\n"),
            vec!["api.listen", "api.tls_cert"]
        );
        assert_eq!(
            keys(
                "[[api.token]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"ABC\"\n\
                 [[api.token]]\nname = \"a\"\nrole = \"viewer\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n"
            ),
            vec!["api.token[0].sha256", "api.token[1].name"]
        );
        let e = parse("[[api.token]]\nname = \"a\"\nrole = \"root\"\nsha256 = \"\"\n").unwrap_err();
        assert!(e.to_string().contains("role"), "{e}");
        assert_eq!(
            keys(
                "[alerts]\nwebhook = \"ftp://x\"\n\
                 [[alerts.rule]]\nname = \"u\"\nwhen = \"utilisation\"\n\
                 [[alerts.rule]]\nname = \"c\"\nwhen = \"coverage\"\nbelow = 1.5\naction = \"move_tier\"\n\
                 [[alerts.rule]]\nname = \"c\"\nwhen = \"anomaly\"\nanomaly = \"leak\"\n\
                 [[alerts.rule]]\nname = \"p\"\nwhen = \"plan_degraded\"\naction = \"raise_slo\"\n"
            ),
            vec![
                "alerts.webhook",
                "alerts.rule[0].above",
                "alerts.rule[1].below",
                "alerts.rule[1].tier",
                "alerts.rule[2].name",
                "alerts.rule[2].anomaly",
                "alerts.rule[3].action",
            ]
        );
        assert_eq!(
            keys("[history]\nprometheus = \"prom:9090\"\nsince = \"0ms\"\n"),
            vec!["history.prometheus", "history.prometheus", "history.since"]
        );
        assert_eq!(
            keys(
                "[history]\nprometheus = \"http://p:9090\"\ncpu_query = \"up\"\nsince = \"14d\"\n"
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            keys("[forecast]\nretrain_interval = \"0s\"\nmin_history = \"30d\"\n"),
            vec!["forecast.retrain_interval", "forecast.training_window"]
        );
        let e = parse("[forecast]\nlearnd = true\n").unwrap_err();
        assert!(e.to_string().contains("learnd"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path_and_line() {
        let e = parse("[agent]\nmode = \"enforce\"\nsample_intervl = \"1s\"\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("t.toml:3:1"), "{s}");
        assert!(s.contains("agent"), "{s}");
        assert!(s.contains("sample_intervl"), "{s}");
        let e =
            parse("[[workload]]\nname = \"a\"\ncgroup = \"/a\"\n[workload.cpu]\nguarante = 1\n")
                .unwrap_err();
        let s = e.to_string();
        assert!(s.contains("workload[0].cpu"), "{s}");
        assert!(s.contains("guarante"), "{s}");
        let e = parse("[agent]\nmode = \"enforcing\"\n").unwrap_err();
        assert!(e.to_string().contains("agent.mode"), "{e}");
        let e = parse("[agent]\nsample_interval = 100\n").unwrap_err();
        assert!(e.to_string().contains("no unit"), "{e}");
        let e = parse("[agent\n").unwrap_err();
        assert!(e.to_string().contains("t.toml:1:"), "{e}");
    }

    #[test]
    fn semantic_checks_name_key_and_value() {
        let i = issues("[agent]\nsample_interval = \"0ms\"\n");
        assert_eq!(i[0].key, "agent.sample_interval");
        assert_eq!(i[0].value, "\"0ms\"");
        let i = issues("[agent]\nsample_interval = \"50ms\"\n");
        assert!(i[0].problem.contains("100ms"));
        let i = issues(
            "[[workload]]\nname = \"web\"\ncgroup = \"/web\"\nslo_quantile = 1.0\n[workload.memory]\nslo_quantile = 0\n",
        );
        let keys: Vec<&str> = i.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "workload[0].slo_quantile",
                "workload[0].memory.slo_quantile"
            ]
        );
        let i = issues(
            "[[pool]]\nname = \"h\"\ncpu = 2\nmemory = \"1GiB\"\n\
             [[workload]]\nname = \"a\"\ncgroup = \"/a\"\ncpu.guarantee = 1.5\nmemory.guarantee = \"768MiB\"\n\
             [[workload]]\nname = \"b\"\ncgroup = \"/b\"\ncpu.guarantee = 1\nmemory.guarantee = \"512MiB\"\n",
        );
        assert_eq!(i.len(), 2, "{i:?}");
        assert_eq!(i[0].key, "pool[0].cpu");
        assert!(i[0].problem.contains("2.5 cores (a 1.5, b 1)"), "{}", i[0]);
        assert_eq!(i[1].key, "pool[0].memory");
        let i = issues("[[pool]]\nname = \"h\"\nnet_rx = \"125MB\"\nnet_tx = 0\n");
        assert_eq!(i.len(), 1, "{i:?}");
        assert_eq!(i[0].key, "pool[0].net_tx");
        assert!(i[0].problem.contains("positive"), "{}", i[0]);
        let i = issues("[[workload]]\nname = \"a\"\ncgroup = \"/a/[\"\n");
        assert_eq!(i[0].key, "workload[0].cgroup", "{i:?}");
        let i = issues("[[workload]]\nname = \"a/b\"\n");
        assert_eq!(i[0].key, "workload[0].name");
        let i = issues("[[workload]]\nname = \"a\"\ncommand_regex = \"(\"\n");
        assert_eq!(i[0].key, "workload[0].command_regex", "{i:?}");
        let i = issues(
            "[[workload]]\nname = \"a\"\ncgroup = \"/a\"\npool = \"nope\"\n[[pool]]\nname = \"h\"\n",
        );
        assert_eq!(i[0].key, "workload[0].pool");
        let i = issues("[cgroup]\nsubtree = \"/a/../b\"\n");
        assert_eq!(i[0].key, "cgroup.subtree");
        let i = issues(
            "[[pool]]\nname = \"a\"\nparent = \"b\"\n[[pool]]\nname = \"b\"\nparent = \"a\"\n",
        );
        assert!(i.iter().all(|i| i.problem.contains("cycle")), "{i:?}");
        let e = parse("[agent]\nsample_interval = \"0s\"\n")
            .unwrap()
            .validate(Path::new("x.toml"))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("x.toml: agent.sample_interval = \"0ms\""),
            "{e}"
        );
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[agent]\nmode = \"enforce\"\nsample_interval = \"2s\"\n",
        )
        .unwrap();
        let env = Overrides::from_env([
            ("PRESCIENT_SAMPLE_INTERVAL".to_string(), "500ms".to_string()),
            ("PRESCIENT_STORE".to_string(), "/tmp/x.db".to_string()),
            ("PATH".to_string(), "whatever".to_string()),
        ])
        .unwrap();
        let flags = Overrides {
            mode: Some(Mode::Recommend),
            ..Overrides::default()
        };
        let c = ConfigSource::Layered {
            file: Some(path),
            env,
            flags,
        }
        .load()
        .unwrap();
        assert_eq!(c.agent.mode, Mode::Recommend, "flags over the file");
        assert_eq!(
            c.agent.sample_interval,
            Interval::ms(500),
            "env over the file"
        );
        assert_eq!(c.store.path, PathBuf::from("/tmp/x.db"));
        let e =
            Overrides::from_env([("PRESCIENT_MODE".to_string(), "on".to_string())]).unwrap_err();
        assert!(e.to_string().contains("PRESCIENT_MODE=\"on\""), "{e}");
    }

    #[test]
    fn on_one_key_the_environment_overrides_the_file_and_flags_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[agent]\npolicy = \"window-max\"\n[store]\npath = \"/file.db\"\n",
        )
        .unwrap();
        let env = Overrides::from_env([
            ("PRESCIENT_POLICY".to_string(), "vpa".to_string()),
            ("PRESCIENT_STORE".to_string(), "/env.db".to_string()),
        ])
        .unwrap();
        let layered = |flags: Overrides| {
            ConfigSource::Layered {
                file: Some(path.clone()),
                env: env.clone(),
                flags,
            }
            .load()
            .unwrap()
        };
        let c = layered(Overrides::default());
        assert_eq!(c.agent.policy, "vpa", "the environment over the file");
        assert_eq!(c.store.path, PathBuf::from("/env.db"));
        let c = layered(Overrides {
            policy: Some("reactive".into()),
            store_path: Some("/flag.db".into()),
            ..Overrides::default()
        });
        assert_eq!(c.agent.policy, "reactive", "the flags over the environment");
        assert_eq!(c.store.path, PathBuf::from("/flag.db"));
        // A layer that does not give the key leaves the one below it.
        let c = ConfigSource::Layered {
            file: Some(path.clone()),
            env: Overrides::default(),
            flags: Overrides::default(),
        }
        .load()
        .unwrap();
        assert_eq!(c.agent.policy, "window-max");
    }

    #[test]
    fn load_text_puts_the_text_under_the_same_layers_and_names_it_in_errors() {
        let env = Overrides::from_env([("PRESCIENT_PLAN_INTERVAL".to_string(), "30s".to_string())])
            .unwrap();
        let layered = ConfigSource::Layered {
            file: Some("/nonexistent/unread.toml".into()),
            env,
            flags: Overrides::default(),
        };
        let name = Path::new("<sent>");
        let text = "[agent]\nplan_interval = \"20s\"\nsample_interval = \"2s\"\n";
        let c = layered.load_text(text, name).unwrap();
        assert_eq!(
            c.agent.plan_interval,
            Interval::secs(30),
            "env over the text"
        );
        assert_eq!(c.agent.sample_interval, Interval::secs(2));
        let fixed = ConfigSource::Fixed(Config::default());
        let c = fixed.load_text(text, name).unwrap();
        assert_eq!(c.agent.plan_interval, Interval::secs(20), "no layers");
        // Invalid: the bad key and its value, and the text's name.
        let e = fixed
            .load_text("[agent]\nsample_interval = \"0s\"\n", name)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("<sent>") && e.contains("agent.sample_interval = \"0ms\""),
            "{e}"
        );
        let e = fixed
            .load_text("[store]\npaht = \"/x\"\n", name)
            .unwrap_err()
            .to_string();
        assert!(e.contains("<sent>:2:1") && e.contains("paht"), "{e}");
    }

    #[test]
    fn policies_fall_back_to_the_workload() {
        let c = parse(
            "[[workload]]\nname = \"a\"\ncgroup = \"/a\"\npriority = 3\nslo_quantile = 0.9\n\
             [workload.cpu]\nguarantee = 0.5\nmax = 2\nslo_quantile = 0.99\n\
             [workload.memory]\nguarantee = \"1GiB\"\n",
        )
        .unwrap();
        let w = &c.workloads[0];
        let p = w.policy(Resource::Cpu);
        assert_eq!(
            (p.guarantee, p.limit, p.priority, p.slo_quantile),
            (0.5, Some(2.0), 3, 0.99)
        );
        let p = w.policy(Resource::Memory);
        assert_eq!(p.guarantee, (1u64 << 30) as f64);
        assert_eq!(p.slo_quantile, 0.9);
    }

    #[test]
    fn block_io_capacities_policies_and_devices_parse() {
        let c = parse(
            "[agent]\nmode = \"enforce\"\n\
             [enforce]\nio_devices = [\"8:0\", \"259:0\"]\n\
             [[pool]]\nname = \"h\"\nio_read = \"200MiB\"\nio_write_ops = 1000\n\
             [[workload]]\nname = \"db\"\ncgroup = \"/db\"\n\
             [workload.io_read]\nguarantee = \"10MiB\"\nmax = \"100MiB\"\n\
             [workload.io_write_ops]\nguarantee = 100\nmax = 800\nslo_quantile = 0.99\n",
        )
        .unwrap();
        assert_eq!(c.issues(), vec![]);
        let p = &c.pools[0];
        assert_eq!(p.capacity(Resource::IoRead), Some(200.0 * 1048576.0));
        assert_eq!(p.capacity(Resource::IoWriteOps), Some(1000.0));
        assert_eq!(p.capacity(Resource::IoReadOps), None);
        assert_eq!(
            c.enforce.devices(),
            [
                Device { major: 8, minor: 0 },
                Device {
                    major: 259,
                    minor: 0
                }
            ]
        );
        let w = &c.workloads[0];
        let r = w.policy(Resource::IoRead);
        assert_eq!(
            (r.guarantee, r.limit),
            (10.0 * 1048576.0, Some(100.0 * 1048576.0))
        );
        let r = w.policy(Resource::IoWriteOps);
        assert_eq!(
            (r.guarantee, r.limit, r.slo_quantile),
            (100.0, Some(800.0), 0.99)
        );
        assert_eq!(w.policy(Resource::IoReadOps).guarantee, 0.0);
        // Round trip through the TOML the API shows; workloads without I/O
        // policies show none.
        let again = parse(&c.to_toml()).unwrap();
        assert_eq!(again, c);
        assert!(!Config::default().to_toml().contains("io_read"));
        // The example's commented I/O keys are valid when uncommented.
        let uncomment = |from: &str, lines: usize| -> String {
            EXAMPLE
                .lines()
                .skip_while(|l| !l.starts_with(from))
                .take(lines)
                .map(|l| format!("{}\n", l.trim_start_matches('#').trim_start()))
                .collect()
        };
        let text = format!(
            "[enforce]\n{}[[pool]]\nname = \"h\"\n{}[[workload]]\nname = \"w\"\ncgroup = \"/w\"\n{}",
            uncomment("# io_devices", 1),
            uncomment("# io_read = ", 4),
            uncomment("# [workload.io_read]", 6),
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.issues(), vec![], "{text}");
        assert_eq!(c.enforce.io_devices, ["8:0"], "{text}");
        assert_eq!(c.pools[0].io_write_ops, Some(1000.0), "{text}");
        assert_eq!(c.workloads[0].io_read_ops.max, Some(1000.0), "{text}");
    }

    #[test]
    fn bad_block_io_keys_are_named() {
        let i = issues(
            "[enforce]\nio_devices = [\"sda\", \"8:0\", \"8:0\", \"8\"]\n\
             [[pool]]\nname = \"h\"\nio_read_ops = 0\nio_write = 0\nio_write_ops = 100\n\
             [[workload]]\nname = \"a\"\ncgroup = \"/a\"\n\
             [workload.io_read_ops]\nguarantee = 50\nmax = 10\n\
             [workload.io_write]\nslo_quantile = 1.0\nmax = \"0B\"\n\
             [workload.io_write_ops]\nguarantee = 80\n\
             [[workload]]\nname = \"b\"\ncgroup = \"/b\"\n\
             [workload.io_write_ops]\nguarantee = 40\nweight = -1\n",
        );
        let keys: Vec<&str> = i.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "enforce.io_devices[0]",
                "enforce.io_devices[2]",
                "enforce.io_devices[3]",
                "pool[0].io_write",
                "pool[0].io_read_ops",
                "workload[0].io_write.slo_quantile",
                "workload[0].io_read_ops.max",
                "workload[0].io_write.max",
                "workload[1].io_write_ops.weight",
                "pool[0].io_write_ops",
            ],
            "{i:#?}"
        );
        assert_eq!(i[0].value, "\"sda\"");
        assert!(i[0].problem.contains("MAJOR:MINOR"), "{}", i[0]);
        assert!(i[1].problem.contains("twice"), "{}", i[1]);
        assert!(
            i[6].problem.contains("at least io_read_ops.guarantee"),
            "{}",
            i[6]
        );
        assert_eq!(i[9].value, "100");
        assert!(
            i[9].problem
                .contains("add up to 120 ops/s (a 80 ops/s, b 40 ops/s)"),
            "{}",
            i[9]
        );
        // Amounts parse as elsewhere: a size without a unit is refused.
        let e = parse("[[pool]]\nname = \"h\"\nio_read = \"12 parsecs\"\n").unwrap_err();
        assert!(e.to_string().contains("pool[0].io_read"), "{e}");
    }

    #[test]
    fn block_io_warnings_name_devices_not_here_and_caps_that_cannot_be_written() {
        let sys = tempfile::tempdir().unwrap();
        std::fs::create_dir(sys.path().join("8:0")).unwrap();
        std::fs::create_dir(sys.path().join("8:1")).unwrap();
        std::fs::write(sys.path().join("8:1/partition"), "1\n").unwrap();
        std::fs::write(sys.path().join("dev"), "8:0\n").unwrap();
        let c = parse(
            "[agent]\nmode = \"enforce\"\n\
             [enforce]\nio_devices = [\"8:0\", \"8:1\", \"259:7\"]\n\
             [[pool]]\nname = \"h\"\nio_read_ops = 500\n",
        )
        .unwrap();
        assert_eq!(c.issues(), vec![], "warnings are not errors");
        let w = c.warnings_at(sys.path());
        let keys: Vec<&str> = w.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["enforce.io_devices[1]", "enforce.io_devices[2]"]);
        assert!(w[0].problem.contains("partition"), "{}", w[0]);
        assert!(w[0].problem.contains("its disk is 8:0"), "{}", w[0]);
        assert!(w[1].problem.contains("not a block device"), "{}", w[1]);
        assert_eq!(w[1].value, "\"259:7\"");

        // An I/O capacity in enforce mode with no device to cap.
        let c = parse("[agent]\nmode = \"enforce\"\n[[pool]]\nname = \"h\"\nio_read = \"50MiB\"\n")
            .unwrap();
        let w = c.warnings_at(sys.path());
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].key, "pool[0].io_read");
        assert_eq!(w[0].value, "\"50MiB\"");
        assert!(w[0].problem.contains("enforce.io_devices"), "{}", w[0]);
        // ... is fine in recommend mode: planned and reported.
        let c = parse("[[pool]]\nname = \"h\"\nio_read = \"50MiB\"\n").unwrap();
        assert_eq!(c.warnings_at(sys.path()), vec![]);
        // Devices with nothing planned to cap.
        let c = parse("[enforce]\nio_devices = [\"8:0\"]\n").unwrap();
        let w = c.warnings_at(sys.path());
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].key, "enforce.io_devices");
        // The example has none.
        assert_eq!(parse(EXAMPLE).unwrap().warnings_at(sys.path()), vec![]);
    }
}
