//! The control loop: sample → store → forecast → plan → enforce, each at
//! its own interval, every stage timed. I/O goes through the traits of
//! [`crate::ports`], so the whole loop runs on a fake clock, observer,
//! sink and enforcer in tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use prescient_core::{
    DemandProfile, HostId, Plan, PlanEntry, Quantiles, Resource, ResourcePolicy, Sample, SeriesKey,
    TimestampMs, WorkloadId,
};
use prescient_forecast::anomaly::{AnomalyConfig, AnomalyKind, OneStep, SeriesAnomalyDetector};
use prescient_forecast::events::{Applied, Calendar, EffectLearner, LearnerConfig, StoredEvent};
use prescient_forecast::leadlag::{Adjustment, LeadLag, LeadLagConfig};
use prescient_forecast::learned::{QuantileForest, SharedForest, TrainConfig};
use prescient_forecast::{
    Band, ChangePoint, DEFAULT_LEVELS, ModelKind, SeriesContext, SeriesForecaster,
};
use prescient_linux::enforce::{
    Action, AuditRecord, Capacity, Desired, Guarantee, Guardrails, MaxStep, PlanStyle, Setting,
    desired_from_plan,
};
use prescient_linux::{CgroupPath, Enforcer, Reconciler};
use prescient_solver::{
    Demand, Pool, Problem, RequestStatus, Spare, Workload, WorkloadResource, fmt_amount,
};
use serde::Serialize;

use crate::alerts::{AlertEngine, Remediation, Transition};
use crate::config::{
    Config, ConfigError, IO_RESOURCES, Mode, PoolConfig, WorkloadConfig, reference_policy,
};
use crate::control::{
    AnomalyView, CONFIG_TEXT_NAME, CalibrationView, Caller, Command, ConfigChange, ControlPort,
    LiveView, ModelWeight, NewRequest, PoolView, RequestState, RequestView, ResourceView,
    SolverView, StoreView, WorkloadView,
};
use crate::history::{HistoryFetcher, HistorySource, Job, PrometheusHistory, fill_template};
use crate::learned::{
    FOREST_STATE_VERSION, StoreHistory, TrainDone, TrainJob, Trainer, TrainingSource,
    agent_train_config, decode_forest, encode_forest,
};
use crate::outbox::{Outbox, Record};
use crate::persist;
use crate::planning::PlanningTails;
use crate::ports::{Clock, Found, Observer, Signals, Sink, Usage};
use crate::timing::StageTimes;
use crate::webhook::{Notification, WebhookConfig, WebhookSender};

/// The resources always forecast and planned. CPU and memory are also
/// enforced; network only planned and reported (against a pool's `net_rx`
/// / `net_tx` when given, else unlimited), for neither cgroup version has
/// a knob for it. Block I/O (bytes and operations) joins them only where
/// a pool gives it a capacity: see [`planned_resources`].
pub const PLANNED: [Resource; 4] = [
    Resource::Cpu,
    Resource::Memory,
    Resource::NetRx,
    Resource::NetTx,
];

/// The resources `config` plans: [`PLANNED`], then each block I/O
/// resource ([`IO_RESOURCES`]) that some pool gives a capacity for, in
/// [`Resource::ALL`] order. Only those get forecasters and planning tails,
/// so a configuration without I/O capacities costs nothing for the I/O it
/// samples and stores. The I/O planned is capped (`io.max` / v1
/// `blkio.throttle.*`) on `enforce.io_devices` in enforce mode.
pub fn planned_resources(config: &Config) -> Vec<Resource> {
    let mut out = PLANNED.to_vec();
    for r in IO_RESOURCES {
        if config.pools.iter().any(|p| p.capacity(r).is_some()) {
            out.push(r);
        }
    }
    out
}

/// Usage at this share of a hard cap (CPU with `enforce.hard_cpu`, block
/// I/O on `enforce.io_devices`) or more counts as capped.
pub const CAPPED_SHARE: f64 = 0.9;

/// What a capped bucket teaches the forecaster: this times the cap.
pub const PROBE_FACTOR: f64 = 1.5;

/// Version of the saved originals' format.
const ORIGINALS_VERSION: u32 = 1;

/// Version of the saved calendar's format (what was learned of events).
const CALENDAR_VERSION: u32 = 1;

/// Version of the saved lead-lag detectors' format: postcard of the step
/// and each resource's [`LeadLag`].
const LEADLAG_VERSION: u32 = 1;

/// The lead-lag detectors are saved at most this often (and at a stop):
/// their state grows with the square of the series (2 MB for 200 series of
/// a resource), and after a crash relearning what was lost since takes no
/// longer than this.
const LEADLAG_SAVE_EVERY_MS: i64 = 600_000;

/// The version of the planning tails' saved state (see
/// [`PlanningTails::to_bytes`]).
const TAILS_VERSION: u32 = 1;

/// The planning tails are saved this often (and at a graceful stop).
const TAILS_SAVE_EVERY_MS: i64 = 1_800_000;

/// Lead-lag is looked for among at most this many series of a resource (a
/// detector's state and cost grow with the square of the series: 256
/// series is 3.4 MB and 0.9 M multiply-adds a step).
pub const MAX_LEADLAG_SERIES: usize = 256;

/// How often a loop with a control port looks for commands between
/// passes, ms.
pub const COMMAND_POLL_MS: i64 = 50;

/// Anomalies kept for the live view.
pub const MAX_ANOMALIES: usize = 200;

/// Scored rollup steps a series' realised coverage is measured over.
pub const COVERAGE_STEPS: usize = 100;

/// How long an ended (expired or cancelled) request stays in the view.
pub const ENDED_REQUEST_KEEP_MS: i64 = 3_600_000;

/// One-off events that ended longer ago than this are dropped from the
/// calendar when the events are read again.
const EVENT_KEEP_MS: i64 = 3_600_000;

/// What the machine has: pools without a capacity get these.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    /// CPUs.
    pub cpus: f64,
    /// Memory, bytes.
    pub memory_bytes: u64,
}

impl Machine {
    /// This machine: its CPUs available to this process and `MemTotal`.
    pub fn detect() -> Machine {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(1 << 30);
        Machine { cpus, memory_bytes }
    }
}

/// `config` with its pools made explicit (one pool `host` of the whole
/// machine when none is given; missing capacities from `machine`), then
/// validated again: guarantees are checked against the real capacity.
pub fn resolve(mut config: Config, machine: &Machine) -> Result<Config, ConfigError> {
    if config.pools.is_empty() {
        config.pools.push(PoolConfig {
            name: "host".into(),
            parent: None,
            cpu: None,
            memory: None,
            net_rx: None,
            net_tx: None,
            io_read: None,
            io_write: None,
            io_read_ops: None,
            io_write_ops: None,
            spread_spare: false,
        });
    }
    for p in &mut config.pools {
        if p.cpu.is_none() && p.parent.is_none() {
            p.cpu = Some(machine.cpus);
        }
        if p.memory.is_none() && p.parent.is_none() {
            p.memory = Some(crate::units::ByteSize(machine.memory_bytes));
        }
    }
    config.validate(std::path::Path::new(
        "<config with the machine's capacities>",
    ))?;
    Ok(config)
}

/// Counts of what the loop did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Sampling passes.
    pub sample_passes: u64,
    /// Samples taken (one per workload, resource and pass).
    pub samples: u64,
    /// Plans made (one per root pool and planning pass).
    pub plans: u64,
    /// Planning passes that failed.
    pub plan_errors: u64,
    /// Plans that could not meet every guarantee and were cut back.
    pub degraded_plans: u64,
    /// Passes over the curves made by the solver's threshold searches.
    pub solver_passes: u64,
    /// Limits written.
    pub writes: u64,
    /// Limits found changed by someone else.
    pub drift: u64,
    /// Values a guardrail refused.
    pub refused: u64,
    /// Failed reads or writes (retried or dropped).
    pub enforce_failures: u64,
    /// Limits restored at exit or at a restart after a crash.
    pub restored: u64,
    /// Configuration reloads applied.
    pub reloads: u64,
    /// Configuration reloads refused (the old configuration kept).
    pub reloads_refused: u64,
    /// Forecasters resumed from the store.
    pub resumed_forecasters: u64,
    /// Plans resumed from the store.
    pub resumed_plans: u64,
    /// Learned-model forests trained and put in use.
    pub forests_trained: u64,
    /// Learned-model trainings that failed (retried).
    pub training_failures: u64,
    /// Forecasters told of a level shift (made to forget the old level).
    pub forecaster_resets: u64,
}

/// What a run did, handed back when it stops.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Host name in the store.
    pub host: String,
    /// The mode it ran in.
    pub mode: Mode,
    /// When it started and stopped, ms since the epoch.
    pub started_at: TimestampMs,
    /// When it stopped.
    pub stopped_at: TimestampMs,
    /// The workloads tracked at the end.
    pub workloads: Vec<String>,
    /// Counts.
    pub counters: Counters,
    /// Stage durations.
    pub times: StageTimes,
    /// The last plans (one per root pool).
    pub plans: Vec<Plan>,
    /// Samples written to the store.
    pub stored_samples: u64,
    /// Samples still in memory at exit (the store could not take them).
    pub unwritten_samples: usize,
    /// Samples dropped because memory was full while the store failed.
    pub dropped_samples: u64,
}

/// A tracked workload.
#[derive(Debug, Clone)]
struct Tracked {
    found: Found,
    /// Index into `config.workloads`.
    config: usize,
}

/// One workload-resource series: its rollup bucket and forecaster.
struct SeriesState {
    key: SeriesKey,
    forecaster: SeriesForecaster,
    /// The open rollup bucket: (start, sum, count, max).
    bucket: Option<(TimestampMs, f64, u32, f64)>,
    /// The last raw sample.
    last: Option<f64>,
    /// Learnt since the last checkpoint.
    dirty: bool,
    /// The reference policy's state (when `agent.policy` names one).
    reference: Option<RefState>,
    /// Outliers, level shifts and leaks.
    detector: SeriesAnomalyDetector,
    /// The forecast of the next rollup step and what the view shows of the
    /// forecaster, refreshed at each completed step (and when the events
    /// change).
    next: Option<NextStep>,
    /// Whether each recent scored step was at or under the forecast's SLO
    /// quantile (at most [`COVERAGE_STEPS`]).
    covered: VecDeque<bool>,
    /// While history is being fetched for this series: the steps learnt
    /// meanwhile, replayed onto the forecaster trained on the history.
    awaiting_history: Option<Vec<(TimestampMs, f64)>>,
}

/// Steps kept for replay while a series waits for its history; beyond
/// this the history is dropped when it comes (it would be too stale).
const MAX_STEPS_AWAITING_HISTORY: usize = 50_000;

/// A series' forecast of its next rollup step, and what the live view
/// shows of its forecaster (kept so that publishing the view is cheap).
#[derive(Debug, Clone)]
struct NextStep {
    /// The step's start.
    at: TimestampMs,
    /// The levels of `raw` and `shifted`, increasing: the fixed levels and
    /// the SLO quantile.
    levels: Vec<f64>,
    /// The calibrated forecast without events (what the effect learner
    /// takes as the baseline).
    raw: Vec<f64>,
    /// With the active events' effects (what the plan and the anomaly
    /// detector expect).
    shifted: Vec<f64>,
    /// The SLO quantile.
    slo: f64,
    /// The ensemble's one-step weight of each model, averaged over levels.
    weights: Vec<ModelWeight>,
    /// The one-step calibration of each tracked level.
    calibration: Vec<CalibrationView>,
}

/// A resource request and its bookkeeping.
#[derive(Debug, Clone)]
struct OpenRequest {
    view: RequestView,
    /// When it expired or was cancelled.
    ended_at: Option<TimestampMs>,
}

impl OpenRequest {
    fn active(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// A reference policy's state for one series, and the number of workloads
/// sharing its pool when it was started (an equal split depends on it).
struct RefState {
    state: Box<dyn prescient_sim::SeriesState>,
    pool_workloads: usize,
}

impl SeriesState {
    /// Adds a raw sample to the open rollup bucket; returns the bucket
    /// this sample closed, as (start, value), if it closed one.
    fn push(&mut self, ts: TimestampMs, v: f64, step: i64) -> Option<(TimestampMs, f64)> {
        self.last = Some(v);
        let start = ts.div_euclid(step) * step;
        match &mut self.bucket {
            Some((b, sum, n, max)) if *b == start => {
                *sum += v;
                *n += 1;
                *max = max.max(v);
                None
            }
            _ => {
                let done = self.close();
                self.bucket = Some((start, v, 1, v));
                done
            }
        }
    }

    /// Closes the open bucket: (start, value), the value being the mean
    /// of its samples (CPU and I/O) or their peak (memory).
    fn close(&mut self) -> Option<(TimestampMs, f64)> {
        let (b, sum, n, max) = self.bucket.take()?;
        let value = if self.key.resource == Resource::Memory {
            max
        } else {
            sum / f64::from(n.max(1))
        };
        Some((b, value))
    }

    /// Realised share of the recent scored steps at or under the SLO
    /// quantile.
    fn coverage(&self) -> Option<f64> {
        (!self.covered.is_empty())
            .then(|| self.covered.iter().filter(|c| **c).count() as f64 / self.covered.len() as f64)
    }
}

/// The loop's state. Build it with [`Agent::new`], then [`Agent::run`] (or
/// drive it step by step with [`Agent::start`], [`Agent::tick`],
/// [`Agent::shutdown`]).
pub struct Agent<O, S, E: Enforcer, C> {
    config: Config,
    /// The resources planned: [`planned_resources`] of `config`.
    planned: Vec<Resource>,
    /// `config`, shared with the live view (replaced whenever `config`
    /// changes: see [`Agent::config_changed`]).
    shared_config: Arc<Config>,
    /// Reads a configuration sent as text ([`Command::SetConfig`]) the way
    /// a reload reads the file (see [`Agent::set_config_loader`]).
    config_loader: ConfigLoader,
    /// Answers to [`Command::SetConfig`], sent once the view showing the
    /// new configuration is published.
    config_replies: Vec<ConfigReply>,
    machine: Machine,
    host: HostId,
    observer: O,
    sink: S,
    clock: C,
    reconciler: Option<Reconciler<E>>,
    workloads: BTreeMap<WorkloadId, Tracked>,
    series: BTreeMap<(WorkloadId, Resource), SeriesState>,
    outbox: Outbox,
    plans: Vec<Plan>,
    times: StageTimes,
    counters: Counters,
    started_at: TimestampMs,
    next_sample: TimestampMs,
    next_plan: TimestampMs,
    next_flush: TimestampMs,
    next_checkpoint: TimestampMs,
    levels: Arc<[f64]>,
    /// The reference policy sizing the workloads instead of the solver
    /// (`agent.policy` other than `prescient`).
    reference: Option<Box<dyn prescient_sim::Policy>>,
    /// The last plan's median forecast of the first planned step, per
    /// workload and resource.
    forecasts: BTreeMap<(WorkloadId, Resource), f64>,
    /// The last sample's share of CPU periods throttled, per workload.
    throttled: BTreeMap<WorkloadId, f64>,
    /// Where the live view goes and commands come from.
    control: Option<ControlPort>,
    /// The mode in force (enforce only with a reconciler).
    mode: Mode,
    /// Who set the mode at run time (a reload keeps it).
    mode_set_by: Option<Caller>,
    /// Why there is no cgroup writer, when there is none.
    no_enforcer: Option<String>,
    /// The known events, and what was learned of their effects.
    calendar: Calendar,
    /// Learns the events' real effects from what happens in their windows.
    learner: EffectLearner,
    /// The calendar learned something since it was last saved.
    calendar_dirty: bool,
    /// The anomaly detectors' settings.
    anomaly_config: AnomalyConfig,
    /// Recent anomalies, oldest first (at most [`MAX_ANOMALIES`]).
    anomalies: VecDeque<AnomalyView>,
    /// Resource requests, open and recently ended, by id.
    requests: BTreeMap<u64, OpenRequest>,
    /// The next request's id.
    next_request_id: u64,
    /// The alert rules' states.
    alerts: AlertEngine,
    /// Sends alerts to `alerts.webhook`, when set.
    webhook: Option<WebhookSender>,
    /// SLO quantiles raised by alert remediation, per workload and resource.
    slo_overrides: BTreeMap<(WorkloadId, Resource), f64>,
    /// Pools (tiers) workloads were moved to by alert remediation.
    pool_overrides: BTreeMap<WorkloadId, String>,
    /// Fetches the history of new series (`[history]`).
    history: Option<HistoryFetcher>,
    /// The last solve's size and outcome.
    solver: SolverView,
    /// The one-step distributions plans are made of (see [`crate::planning`]).
    tails: PlanningTails,
    /// When the tails were last saved.
    tails_saved_at: TimestampMs,
    /// The learned model's forest and its training (`[forecast] learned`).
    learning: Learning,
    /// Lead-lag between the series of each resource (`[forecast] lead_lag`).
    leadlag: BTreeMap<Resource, LeadLag>,
    /// The lead-lag detectors learnt since they were last saved.
    leadlag_dirty: bool,
    /// When they were last saved.
    leadlag_saved_at: TimestampMs,
    /// Resources with too many series for lead-lag (said once).
    leadlag_skipped: Vec<Resource>,
}

/// The learned model's forest, and when and how it is trained.
struct Learning {
    /// The forest every learned model holds, once there is one.
    forest: Option<SharedForest>,
    /// When the forest in use was trained (its history's end).
    trained_at: Option<TimestampMs>,
    /// When the next training is due (it starts then if some series has
    /// `forecast.min_history`).
    next_train: TimestampMs,
    /// The training thread, started at the first training.
    trainer: Option<Trainer>,
    /// Where the thread will read history (taken when it starts).
    source: Option<Box<dyn TrainingSource>>,
    /// A job is on the thread.
    in_flight: bool,
    /// Failures in a row.
    failures: u32,
    /// How to train.
    config: TrainConfig,
}

/// Reads a configuration from TOML text: see [`Agent::set_config_loader`].
pub type ConfigLoader = Box<dyn Fn(&str) -> Result<Config, ConfigError> + Send>;

/// A [`Command::SetConfig`]'s answer, waiting for the view to be published.
type ConfigReply = (
    std::sync::mpsc::Sender<Result<ConfigChange, ConfigError>>,
    Result<ConfigChange, ConfigError>,
);

/// The default [`ConfigLoader`]: the text is the whole configuration,
/// validated (as [`crate::ConfigSource::Fixed`] reads it).
fn text_loader() -> ConfigLoader {
    Box::new(|text| {
        crate::ConfigSource::Fixed(Config::default())
            .load_text(text, std::path::Path::new(CONFIG_TEXT_NAME))
    })
}

/// `demand` read at `levels` (increasing), step by step: for storing a
/// planned demand at the forecaster's levels.
fn at_levels(demand: &Demand, levels: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let n = demand.levels.len().max(1);
    let mut values = Vec::with_capacity(levels.len() * demand.values.len() / n);
    for row in demand.values.chunks(n) {
        match Quantiles::new(&demand.levels, row) {
            Ok(q) => values.extend(levels.iter().map(|&l| q.quantile(l))),
            // Valid by construction (increasing levels, sorted curve).
            Err(_) => values.extend(levels.iter().map(|_| row[n / 2])),
        }
    }
    (levels.to_vec(), values)
}

/// The reference policy `config` names (none for prescient's own; an
/// unknown name, which validation refuses, falls back to it with a log
/// line).
fn reference_of(config: &Config) -> Option<Box<dyn prescient_sim::Policy>> {
    reference_policy(&config.agent.policy).unwrap_or_else(|e| {
        log::error!(
            "agent.policy {:?}: {e}; using prescient",
            config.agent.policy
        );
        None
    })
}

/// The webhook sender `[alerts]` asks for (none without a URL; a thread
/// that cannot start is a log line).
fn webhook_of(config: &Config) -> Option<WebhookSender> {
    let a = &config.alerts;
    let url = a.webhook.clone()?;
    let sender = WebhookSender::start(
        WebhookConfig {
            url: url.clone(),
            attempts: a.webhook_attempts,
            backoff: a.webhook_backoff.as_duration(),
            timeout: a.webhook_timeout.as_duration(),
        },
        |_| {},
    );
    match sender {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!(
                "alert webhook {url}: cannot start its sender thread: {e}; alerts go to the log and the API only"
            );
            None
        }
    }
}

/// The history fetcher `[history]` asks for (none without a URL; a
/// source that cannot be set up is a log line).
fn history_of(config: &Config) -> Option<HistoryFetcher> {
    let h = &config.history;
    let url = h.prometheus.as_deref()?;
    let source = PrometheusHistory::new(url, h.timeout.as_duration())
        .map_err(|e| log::error!("history.prometheus: {e}; new workloads start without history"))
        .ok()?;
    HistoryFetcher::start(Box::new(source))
        .map_err(|e| log::error!("history: cannot start its thread: {e}"))
        .ok()
}

fn guardrails(config: &Config, machine: &Machine) -> Guardrails {
    let mut g = Guardrails::new(Capacity {
        cpu_cores: machine.cpus,
        memory_bytes: machine.memory_bytes,
    });
    g.memory_headroom_bytes = config.enforce.memory_headroom.0;
    g.restore_originals = config.cgroup.restore_on_exit;
    g.max_step = MaxStep {
        cpu_cores: config.enforce.max_cpu_step,
        memory_bytes: config.enforce.max_memory_step.map(|b| b.0),
        ..MaxStep::default()
    };
    g
}

/// The machine's host name (`/proc/sys/kernel/hostname`), or `host`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}

impl<O: Observer, S: Sink, E: Enforcer, C: Clock> Agent<O, S, E, C> {
    /// An agent over `config` (resolved: see [`resolve`]). `enforcer`
    /// writes limits while the mode is enforce (set by the configuration,
    /// or at run time by a [`Command::SetMode`]); enforce mode without one
    /// runs as recommend, with a log line.
    pub fn new(
        mut config: Config,
        machine: Machine,
        observer: O,
        sink: S,
        enforcer: Option<E>,
        clock: C,
    ) -> Self {
        let host = HostId(config.agent.host.clone().unwrap_or_else(host_name));
        let reconciler = enforcer.map(|e| Reconciler::new(e, guardrails(&config, &machine)));
        let mode = match (config.agent.mode, &reconciler) {
            (Mode::Enforce, Some(_)) => Mode::Enforce,
            (Mode::Enforce, None) => {
                log::warn!("enforce mode without a cgroup writer: running in recommend mode");
                Mode::Recommend
            }
            (Mode::Recommend, _) => Mode::Recommend,
        };
        // The configuration in force says the mode in force.
        config.agent.mode = mode;
        for w in config.warnings() {
            log::warn!("configuration: {w}");
        }
        let now = clock.now_ms();
        let reference = reference_of(&config);
        let alert_rules = config.alerts.rules.clone();
        let webhook = webhook_of(&config);
        let history = history_of(&config);
        let tails = PlanningTails::new(config.agent.forecast_step.as_ms_i64());
        let store_path = config.store.path.clone();
        Agent {
            outbox: Outbox::new(config.store.max_buffered_samples),
            shared_config: Arc::new(config.clone()),
            planned: planned_resources(&config),
            config_loader: text_loader(),
            config_replies: Vec::new(),
            config,
            machine,
            host,
            observer,
            sink,
            clock,
            reconciler,
            workloads: BTreeMap::new(),
            series: BTreeMap::new(),
            plans: Vec::new(),
            times: StageTimes::default(),
            counters: Counters::default(),
            started_at: now,
            next_sample: now,
            next_plan: now,
            next_flush: now,
            next_checkpoint: now,
            levels: Arc::from(&DEFAULT_LEVELS[..]),
            reference,
            forecasts: BTreeMap::new(),
            throttled: BTreeMap::new(),
            control: None,
            mode,
            mode_set_by: None,
            no_enforcer: None,
            calendar: Calendar::new(),
            learner: EffectLearner::new(LearnerConfig::default()),
            calendar_dirty: false,
            anomaly_config: AnomalyConfig::default(),
            anomalies: VecDeque::new(),
            requests: BTreeMap::new(),
            next_request_id: 1,
            alerts: AlertEngine::new(&alert_rules),
            webhook,
            slo_overrides: BTreeMap::new(),
            pool_overrides: BTreeMap::new(),
            tails,
            tails_saved_at: now,
            history,
            solver: SolverView::default(),
            learning: Learning {
                forest: None,
                trained_at: None,
                next_train: now,
                trainer: None,
                source: Some(Box::new(StoreHistory::new(store_path))),
                in_flight: false,
                failures: 0,
                config: agent_train_config(),
            },
            leadlag: BTreeMap::new(),
            leadlag_dirty: false,
            leadlag_saved_at: now,
            leadlag_skipped: Vec::new(),
        }
    }

    /// Reads the history of new series from `source` (instead of the
    /// Prometheus of `[history]`): tests, and other sources.
    pub fn set_history_source(&mut self, source: Box<dyn HistorySource>) {
        self.history = HistoryFetcher::start(source)
            .map_err(|e| log::error!("history: cannot start its thread: {e}"))
            .ok();
    }

    /// Reads the learned model's training history from `source` (instead
    /// of the store): tests, and other sources. A training in hand goes on
    /// on the old thread, its result dropped.
    pub fn set_training_source(&mut self, source: Box<dyn TrainingSource>) {
        self.learning.source = Some(source);
        self.learning.trainer = None;
        self.learning.in_flight = false;
    }

    /// Trains the learned model with `config` (default:
    /// [`agent_train_config`]).
    pub fn set_train_config(&mut self, config: TrainConfig) {
        self.learning.config = config;
    }

    /// The learned model's forest in use, if one has been trained (or
    /// resumed from the store).
    pub fn forest(&self) -> Option<Arc<QuantileForest>> {
        self.learning.forest.as_ref().map(SharedForest::current)
    }

    /// When the learned model's next training is due.
    pub fn next_training(&self) -> TimestampMs {
        self.learning.next_train
    }

    /// Waits for the training on the background thread, if one is in
    /// hand, and puts its forest in use (or counts its failure) as a pass
    /// would; returns whether there was one. For tests and tools that step
    /// the loop by hand and must not race the thread.
    pub fn await_training(&mut self) -> bool {
        if !self.learning.in_flight {
            return false;
        }
        let done = self.learning.trainer.as_ref().and_then(Trainer::wait);
        let now = self.clock.now_ms();
        match done {
            Some(d) => self.trained(d, now),
            None => {
                self.learning.in_flight = false;
                self.learning.trainer = None;
            }
        }
        true
    }

    /// The models a new forecaster gets.
    fn model_kinds(&self) -> Vec<ModelKind> {
        let mut kinds = ModelKind::ALL.to_vec();
        if self.config.forecast.learned {
            kinds.push(ModelKind::Learned);
        }
        kinds
    }

    /// Whether some series has learnt `forecast.min_history`.
    fn enough_history(&self) -> bool {
        let need = self.config.forecast.min_history.as_ms_i64();
        self.series.values().any(|s| {
            let f = &s.forecaster;
            i64::try_from(f.observations())
                .unwrap_or(i64::MAX)
                .saturating_mul(f.context().step_ms)
                >= need
        })
    }

    /// Takes a finished training and starts one when it is due.
    fn train_learned(&mut self, now: TimestampMs) -> bool {
        if !self.config.forecast.learned {
            return false;
        }
        let mut changed = false;
        if self.learning.in_flight
            && let Some(done) = self.learning.trainer.as_ref().and_then(Trainer::ready)
        {
            self.trained(done, now);
            changed = true;
        }
        if !self.learning.in_flight && now >= self.learning.next_train && self.enough_history() {
            self.start_training(now);
        }
        changed
    }

    /// Submits a training on the store's history of the agent's series.
    fn start_training(&mut self, now: TimestampMs) {
        let retry = self.config.forecast.retry_interval.as_ms_i64();
        if self.learning.trainer.is_none() {
            let Some(source) = self.learning.source.take() else {
                log::error!("learned model: no training source; not trained");
                self.learning.next_train = now + retry;
                return;
            };
            match Trainer::start(source) {
                Ok(t) => self.learning.trainer = Some(t),
                Err(e) => {
                    log::error!("learned model: cannot start its training thread: {e}");
                    self.learning.next_train = now + retry;
                    return;
                }
            }
        }
        let f = &self.config.forecast;
        let job = TrainJob {
            keys: self.series.values().map(|s| s.key.clone()).collect(),
            from: now - f.training_window.as_ms_i64(),
            to: now,
            min_history_ms: f.min_history.as_ms_i64(),
            config: self.learning.config.clone(),
        };
        log::info!(
            "learned model: training on the last {} of {} series",
            f.training_window,
            job.keys.len()
        );
        if self
            .learning
            .trainer
            .as_ref()
            .is_some_and(|t| t.submit(job))
        {
            self.learning.in_flight = true;
        } else {
            log::error!(
                "learned model: its training thread has stopped; starting another at the next try"
            );
            self.learning.trainer = None;
            self.learning.next_train = now + retry;
        }
    }

    /// Puts a trained forest in use, or counts a failure and schedules the
    /// retry. A failure is never fatal: the forecasters go on with the
    /// forest they have (or without one: their learned model then forecasts
    /// its series' own last day).
    fn trained(&mut self, done: TrainDone, now: TimestampMs) {
        self.learning.in_flight = false;
        let f = self.config.forecast.clone();
        match done.result {
            Ok(t) => {
                self.learning.failures = 0;
                self.learning.trained_at = Some(done.asked_at);
                self.learning.next_train = done.asked_at + f.retrain_interval.as_ms_i64();
                self.counters.forests_trained += 1;
                let what = format!(
                    "{} trees from {} series (longest {}), {} rows",
                    t.forest.n_trees(),
                    t.series,
                    crate::units::Interval(u64::try_from(t.span_ms).unwrap_or(0)),
                    t.forest.info().rows
                );
                log::info!(
                    "learned model: trained ({what}); next training at {}",
                    crate::logger::utc(self.learning.next_train)
                );
                match encode_forest(done.asked_at, &t.forest) {
                    Ok(blob) => self.outbox.push(Record::State(
                        self.forest_key(),
                        FOREST_STATE_VERSION,
                        blob,
                    )),
                    Err(e) => log::warn!("learned model: cannot save the forest: {e}"),
                }
                self.install_forest(t.forest);
                self.audit(AuditRecord {
                    ts: now,
                    actor: "agent".into(),
                    action: "forecast.learned".into(),
                    target: self.host.0.clone(),
                    before: None,
                    after: Some(what),
                    reason: format!(
                        "learned model trained on the store's history of the agent's series (every {})",
                        f.retrain_interval
                    ),
                });
            }
            Err(e) => {
                self.learning.failures += 1;
                self.counters.training_failures += 1;
                self.learning.next_train = now + f.retry_interval.as_ms_i64();
                log::warn!(
                    "learned model: training failed ({e}); {} in a row; next try at {}{}",
                    self.learning.failures,
                    crate::logger::utc(self.learning.next_train),
                    if self.learning.forest.is_some() {
                        ", forecasting with the forest in use meanwhile"
                    } else {
                        ""
                    }
                );
            }
        }
    }

    /// Puts `forest` in use by every series' learned model.
    fn install_forest(&mut self, forest: QuantileForest) {
        let forest = Arc::new(forest);
        let shared = match &self.learning.forest {
            // The same handle: every learned model sees the new forest.
            Some(sf) if sf.replace(Arc::clone(&forest)).is_ok() => sf.clone(),
            // None yet, or one at another step (which the models' kept
            // history does not fit): a new handle for all.
            _ => SharedForest::new(forest),
        };
        self.learning.forest = Some(shared.clone());
        let keys: Vec<(WorkloadId, Resource)> = self.series.keys().cloned().collect();
        for (w, r) in keys {
            if let Some(s) = self.series.get_mut(&(w.clone(), r)) {
                // Recomputes the next step's forecast with the new forest.
                s.forecaster.attach_forest(&shared);
            }
            self.refresh_next(&w, r);
        }
    }

    fn forest_key(&self) -> String {
        format!("agent/forest/{}", self.host)
    }

    /// Resumes the learned model's forest from the store: forecasts use it
    /// at once, and it is trained again when it is due.
    fn load_forest(&mut self, now: TimestampMs) {
        if !self.config.forecast.learned {
            return;
        }
        let key = self.forest_key();
        match self.sink.load_state(&key) {
            Ok(Some((FOREST_STATE_VERSION, blob))) => match decode_forest(&blob) {
                Ok((at, forest)) => {
                    self.learning.trained_at = Some(at);
                    self.learning.next_train =
                        (at + self.config.forecast.retrain_interval.as_ms_i64()).max(now);
                    log::info!(
                        "learned model: resumed the forest trained at {} ({} trees); next training at {}",
                        crate::logger::utc(at),
                        forest.n_trees(),
                        crate::logger::utc(self.learning.next_train)
                    );
                    self.install_forest(forest);
                }
                Err(e) => log::warn!("{key}: {e}; training afresh"),
            },
            Ok(Some((v, _))) => log::info!("{key}: saved forest of version {v}; training afresh"),
            Ok(None) => {}
            Err(e) => log::warn!("reading the saved forest: {e}; training afresh"),
        }
    }

    fn tails_key(&self) -> String {
        format!("agent/tails/{}", self.host)
    }

    /// Resumes the planning tails (those of another rollup step, or that do
    /// not decode, are dropped with a log line: the series plan from their
    /// forecasters until the tails are warm again).
    fn load_tails(&mut self) {
        let key = self.tails_key();
        let step = self.config.agent.forecast_step.as_ms_i64().max(1);
        match self.sink.load_state(&key) {
            Ok(Some((TAILS_VERSION, blob))) => match PlanningTails::from_bytes(&blob, step) {
                Ok(t) => self.tails = t,
                Err(e) => log::info!("{key}: {e}; starting afresh"),
            },
            Ok(Some((v, _))) => log::info!("{key}: version {v}; starting afresh"),
            Ok(None) => {}
            Err(e) => log::warn!("reading the planning tails: {e}"),
        }
    }

    /// Saves the planning tails, if they learnt since the last save.
    fn save_tails(&mut self, now: TimestampMs) {
        if !self.tails.dirty() {
            return;
        }
        match self.tails.to_bytes() {
            Ok(blob) => {
                self.tails_saved_at = now;
                self.outbox
                    .push(Record::State(self.tails_key(), TAILS_VERSION, blob));
            }
            Err(e) => log::warn!("saving the planning tails: {e}"),
        }
    }

    fn leadlag_key(&self) -> String {
        format!("agent/leadlag/{}", self.host)
    }

    /// Resumes the lead-lag detectors (those of another forecast step are
    /// dropped: their lags are in steps).
    fn load_leadlag(&mut self) {
        if !self.config.forecast.lead_lag {
            return;
        }
        let key = self.leadlag_key();
        let step = self.config.agent.forecast_step.as_ms_i64().max(1);
        match self.sink.load_state(&key) {
            Ok(Some((LEADLAG_VERSION, blob))) => {
                match postcard::from_bytes::<(i64, Vec<(Resource, LeadLag)>)>(&blob) {
                    Ok((s, saved)) if s == step => self.leadlag = saved.into_iter().collect(),
                    Ok(_) => log::info!("{key}: saved at another forecast step; starting afresh"),
                    Err(e) => log::warn!("{key} does not decode: {e}; starting afresh"),
                }
            }
            Ok(Some((v, _))) => log::info!("{key}: version {v}; starting afresh"),
            Ok(None) => {}
            Err(e) => log::warn!("reading the lead-lag detectors: {e}"),
        }
    }

    /// Feeds the steps just completed to the lead-lag detectors (one per
    /// resource), then refreshes the next-step forecasts of the series
    /// with a trusted leader.
    fn learn_leadlag(&mut self, steps: &[(WorkloadId, Resource, TimestampMs, f64)]) {
        if !self.config.forecast.lead_lag || steps.is_empty() {
            return;
        }
        let step = self.config.agent.forecast_step.as_ms_i64().max(1);
        let mut by: BTreeMap<(Resource, TimestampMs), Vec<(SeriesKey, f64)>> = BTreeMap::new();
        for (w, r, b, v) in steps {
            if let Some(s) = self.series.get(&(w.clone(), *r)) {
                by.entry((*r, *b)).or_default().push((s.key.clone(), *v));
            }
        }
        for ((r, b), obs) in by {
            if obs.len() > MAX_LEADLAG_SERIES {
                if !self.leadlag_skipped.contains(&r) {
                    self.leadlag_skipped.push(r);
                    log::warn!(
                        "lead-lag: {} series of {r}, more than the {MAX_LEADLAG_SERIES} it looks among; not used for {r}",
                        obs.len()
                    );
                }
                if self.leadlag.remove(&r).is_some() {
                    self.leadlag_dirty = true;
                }
                continue;
            }
            self.leadlag
                .entry(r)
                .or_insert_with(|| LeadLag::new(step, LeadLagConfig::default()))
                .update(b, &obs);
            self.leadlag_dirty = true;
        }
        let led: Vec<(WorkloadId, Resource)> = self
            .series
            .iter()
            .filter(|((_, r), s)| {
                self.leadlag
                    .get(r)
                    .is_some_and(|ll| ll.leader_of(&s.key).is_some())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (w, r) in led {
            self.refresh_next(&w, r);
        }
    }

    /// Asks for the history of a new series, when `[history]` has a source
    /// and a query for `r`.
    fn ask_history(&mut self, w: &WorkloadId, r: Resource) {
        let Some(fetcher) = &self.history else {
            return;
        };
        let Some(template) = self.config.history.query(r) else {
            return;
        };
        let Some(tr) = self.workloads.get(w) else {
            return;
        };
        let slo = self
            .config
            .workloads
            .get(tr.config)
            .map_or(0.95, |wc| self.policy_for(w, wc, r).slo_quantile);
        let query = fill_template(template, &w.0, &self.host.0, &tr.found.cgroup.to_string());
        let Some(s) = self.series.get_mut(&(w.clone(), r)) else {
            return;
        };
        let now = self.clock.now_ms();
        let job = Job {
            workload: w.clone(),
            resource: r,
            query,
            start: now - self.config.history.since.as_ms_i64(),
            end: now,
            context: s.forecaster.context(),
            track_level: slo,
            kinds: s.forecaster.model_kinds(),
        };
        log::info!("{}: asking for its history ({})", s.key, job.query);
        if fetcher.submit(job) {
            s.awaiting_history = Some(Vec::new());
        }
    }

    /// Swaps in the forecasters trained on history that are ready, with
    /// the steps learnt meanwhile replayed onto them.
    fn take_history(&mut self, now: TimestampMs) -> bool {
        let Some(fetcher) = &self.history else {
            return false;
        };
        let ready = fetcher.ready();
        let any = !ready.is_empty();
        for d in ready {
            let k = (d.workload.clone(), d.resource);
            let Some(s) = self.series.get_mut(&k) else {
                continue;
            };
            let Some(meanwhile) = s.awaiting_history.take() else {
                continue;
            };
            match d.result {
                Ok((mut f, n)) => {
                    let from = f.last_ts().unwrap_or(i64::MIN);
                    let mut replayed = 0;
                    for (b, v) in meanwhile {
                        if b > from {
                            f.observe(b, v);
                            replayed += 1;
                        }
                    }
                    if let Some(forest) = &self.learning.forest {
                        f.attach_forest(forest);
                    }
                    s.forecaster = f;
                    s.dirty = true;
                    log::info!(
                        "{}: learnt {n} steps of history, then the {replayed} seen since",
                        s.key
                    );
                    self.audit(AuditRecord {
                        ts: now,
                        actor: "agent".into(),
                        action: "forecast.history".into(),
                        target: format!("{}/{}", d.workload, d.resource.as_str()),
                        before: None,
                        after: Some(format!("{n} steps")),
                        reason: "history of a new workload read from [history]".into(),
                    });
                    self.refresh_next(&d.workload, d.resource);
                }
                Err(e) => log::warn!(
                    "{}: no history ({e}); forecasting from what it sees from now on",
                    s.key
                ),
            }
        }
        any
    }

    /// Records why there is no cgroup writer (given `None` for one): a
    /// switch to enforce mode is refused with this reason.
    pub fn set_no_enforcer_reason(&mut self, why: impl Into<String>) {
        self.no_enforcer = Some(why.into());
    }

    /// Sets the anomaly detectors' settings (default: prescient-forecast's)
    /// for the series seen from now on.
    pub fn set_anomaly_config(&mut self, config: AnomalyConfig) {
        self.anomaly_config = config;
    }

    /// The mode in force.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The known events (and what was learned of their effects).
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Connects the loop to a control channel: from now on it drains the
    /// port's commands at the start of each [`Agent::tick`] and publishes
    /// its [`LiveView`] after each tick that sampled, planned or obeyed
    /// a command (and at [`Agent::start`]).
    pub fn set_control(&mut self, port: ControlPort) {
        self.control = Some(port);
    }

    /// How a configuration sent as text ([`Command::SetConfig`]) is read:
    /// the way this run reads its file on a reload, with the text in
    /// place of the file ([`crate::ConfigSource::load_text`], and in replay
    /// the trace's preparation). By default the text is the whole
    /// configuration, validated.
    pub fn set_config_loader(&mut self, loader: ConfigLoader) {
        self.config_loader = loader;
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether limits are being written.
    pub fn enforcing(&self) -> bool {
        self.mode == Mode::Enforce && self.reconciler.is_some()
    }

    /// Stage durations so far.
    pub fn times(&self) -> &StageTimes {
        &self.times
    }

    /// Counts so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Plans at the next tick, whatever the plan interval says (as the
    /// replan command does, without its audit record: for programs that
    /// drive the loop themselves, and tests).
    pub fn replan(&mut self) {
        self.next_plan = self.clock.now_ms();
    }

    /// The last plans.
    pub fn plans(&self) -> &[Plan] {
        &self.plans
    }

    /// The workloads tracked, with their cgroups.
    pub fn workloads(&self) -> Vec<(WorkloadId, CgroupPath)> {
        self.workloads
            .iter()
            .map(|(id, t)| (id.clone(), t.found.cgroup.clone()))
            .collect()
    }

    /// The policy sizing the workloads (`prescient` or a reference
    /// policy's name).
    pub fn policy(&self) -> &str {
        self.reference
            .as_ref()
            .map_or(crate::config::PRESCIENT_POLICY, |p| p.name())
    }

    /// The last sample of a workload's resource (CPU: cores, a rate over
    /// the last sample interval; memory: bytes).
    pub fn last_usage(&self, w: &WorkloadId, r: Resource) -> Option<f64> {
        self.series.get(&(w.clone(), r)).and_then(|s| s.last)
    }

    /// The last plan's median forecast of its first step.
    pub fn forecast(&self, w: &WorkloadId, r: Resource) -> Option<f64> {
        self.forecasts.get(&(w.clone(), r)).copied()
    }

    /// The allocation of the plan in force.
    pub fn allocation(&self, w: &WorkloadId, r: Resource) -> Option<f64> {
        self.plans
            .iter()
            .flat_map(|p| p.entries.iter())
            .find(|e| &e.workload == w && e.resource == r)
            .map(|e| e.allocation)
    }

    /// The share of CPU periods throttled at the last sample.
    pub fn throttled(&self, w: &WorkloadId) -> Option<f64> {
        self.throttled.get(w).copied()
    }

    /// The queue in front of the store.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, mutably (tests make it fail and recover).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// The enforcer, when there is one (whatever the mode).
    pub fn enforcer(&self) -> Option<&E> {
        self.reconciler.as_ref().map(|r| r.enforcer())
    }

    /// The clock, mutably.
    pub fn clock_mut(&mut self) -> &mut C {
        &mut self.clock
    }

    /// The observer, mutably.
    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }

    /// A forecaster's observation count (tests, status).
    pub fn observations(&self, w: &WorkloadId, r: Resource) -> Option<u64> {
        self.series
            .get(&(w.clone(), r))
            .map(|s| s.forecaster.observations())
    }

    /// A series' forecaster (tests, tools).
    pub fn forecaster(&self, w: &WorkloadId, r: Resource) -> Option<&SeriesForecaster> {
        self.series.get(&(w.clone(), r)).map(|s| &s.forecaster)
    }

    /// The lead-lag detector of resource `r`'s series, once it has seen a
    /// step (with `[forecast] lead_lag`).
    pub fn leadlag(&self, r: Resource) -> Option<&LeadLag> {
        self.leadlag.get(&r)
    }

    fn state_key(&self, w: &WorkloadId, r: Resource) -> String {
        persist::state_key(&SeriesKey {
            host: self.host.clone(),
            workload: w.clone(),
            resource: r,
        })
    }

    fn originals_key(&self) -> String {
        format!("agent/originals/{}", self.host)
    }

    /// Resumes from the store (last plans; in enforce mode with
    /// restore-on-exit, the originals a crashed run left unrestored are
    /// written back first), discovers the workloads, and schedules the
    /// first sample now.
    pub fn start(&mut self) {
        let now = self.clock.now_ms();
        self.started_at = now;
        for p in self.root_pools() {
            match self.sink.latest_plan(&HostId(p.clone())) {
                Ok(Some(plan)) => {
                    self.counters.resumed_plans += 1;
                    self.plans.push(plan);
                }
                Ok(None) => {}
                Err(e) => log::warn!("reading the last plan of pool {p}: {e}"),
            }
        }
        if !self.enforcing() {
            for w in self.config.workloads.iter().filter(|w| w.cgroup.is_none()) {
                log::info!(
                    "workload {}: recommend mode: its processes are observed from /proc where they are (enforce mode groups them into a cgroup)",
                    w.name
                );
            }
        }
        // With a cgroup writer in either mode: a run that was killed while
        // enforcing left limits that no plan stands behind any more.
        if self.reconciler.is_some() && self.config.cgroup.restore_on_exit {
            self.restore_crashed_originals(now);
        }
        self.load_calendar();
        self.load_forest(now);
        self.load_leadlag();
        self.load_tails();
        self.discover(now);
        self.load_events(now);
        let a = &self.config.agent;
        self.next_sample = now;
        self.next_plan = now + a.plan_interval.as_ms_i64();
        self.next_flush = now + self.config.store.flush_interval.as_ms_i64();
        self.next_checkpoint = now + self.config.store.checkpoint_interval.as_ms_i64();
        if !self.plans.is_empty() {
            log::info!(
                "resumed {} plan(s) from the store, made at {:?}",
                self.plans.len(),
                self.plans.iter().map(|p| p.made_at).collect::<Vec<_>>()
            );
            self.enforce(now);
        }
        self.publish(now);
    }

    /// After a crash (SIGKILL) the limits the previous run changed were
    /// not restored; their originals were saved at each checkpoint: write
    /// them back so that this run starts from (and restores to) the true
    /// originals.
    fn restore_crashed_originals(&mut self, now: TimestampMs) {
        let key = self.originals_key();
        let saved = match self.sink.load_state(&key) {
            Ok(Some((ORIGINALS_VERSION, blob))) => {
                match serde_json::from_slice::<Vec<(CgroupPath, Vec<Setting>)>>(&blob) {
                    Ok(v) => v,
                    Err(e) => {
                        log::warn!("saved original limits ({key}) do not decode: {e}");
                        return;
                    }
                }
            }
            Ok(_) => return,
            Err(e) => {
                log::warn!("reading saved original limits: {e}");
                return;
            }
        };
        let Some(rec) = self.reconciler.as_mut() else {
            return;
        };
        let mut n = 0;
        for (cg, settings) in &saved {
            for s in settings {
                let before = rec.enforcer().read(cg).ok().and_then(|o| o.get(s.knob()));
                match rec.enforcer_mut().write(cg, s) {
                    Ok(()) => {
                        n += 1;
                        let target = rec.enforcer().target(cg, s.knob());
                        self.outbox
                            .push(Record::Audit(prescient_linux::enforce::AuditRecord {
                                ts: now,
                                actor: "agent".into(),
                                action: "cgroup.write".into(),
                                target,
                                before: before.map(|b| b.to_string()),
                                after: Some(s.to_string()),
                                reason: "restart after an unclean stop: original limit restored"
                                    .into(),
                            }));
                    }
                    Err(e) if e.is_vanished() => {}
                    Err(e) => log::warn!("restoring {} of {cg}: {e}", s.knob()),
                }
            }
        }
        if n > 0 {
            log::info!("restored {n} original limit(s) left by an unclean stop");
            self.counters.restored += n;
        }
        self.outbox
            .push(Record::State(key, ORIGINALS_VERSION, b"[]".to_vec()));
    }

    fn root_pools(&self) -> Vec<String> {
        self.config
            .pools
            .iter()
            .filter(|p| p.parent.is_none())
            .map(|p| p.name.clone())
            .collect()
    }

    /// Does whatever is due at the clock's now: the commands sent to the
    /// control port (if one is set), request expiry, sample, plan (with
    /// discovery and enforcement), flush, checkpoint; then publishes the
    /// live view if anything of it changed. Returns when the next thing is
    /// due.
    pub fn tick(&mut self) -> TimestampMs {
        let now = self.clock.now_ms();
        let mut changed = self.obey(now);
        changed |= self.take_history(now);
        changed |= self.train_learned(now);
        changed |= self.expire_requests(now);
        if now >= self.next_sample {
            changed = true;
            self.sample(now);
            self.next_sample = advance(
                self.next_sample,
                self.config.agent.sample_interval.as_ms_i64(),
                now,
            );
        }
        if now >= self.next_plan {
            changed = true;
            self.discover(now);
            self.plan(now);
            self.enforce(now);
            // Plans and audit records go out at once (a restart resumes
            // from them), with the samples queued so far.
            if self.outbox.records_len() > 0 && self.outbox.failing.is_none() {
                self.flush();
            }
            self.next_plan = advance(
                self.next_plan,
                self.config.agent.plan_interval.as_ms_i64(),
                now,
            );
        }
        if now >= self.next_checkpoint {
            self.checkpoint(now);
            self.next_checkpoint = advance(
                self.next_checkpoint,
                self.config.store.checkpoint_interval.as_ms_i64(),
                now,
            );
        }
        if now >= self.next_flush {
            self.flush();
            self.next_flush = advance(
                self.next_flush,
                self.config.store.flush_interval.as_ms_i64(),
                now,
            );
        }
        if changed {
            self.publish(now);
        }
        for (reply, r) in self.config_replies.drain(..) {
            // The asker may have given up waiting: nothing to do then.
            let _ = reply.send(r);
        }
        self.next_sample
            .min(self.next_plan)
            .min(self.next_checkpoint)
            .min(self.next_flush)
    }

    /// Runs until a stop is asked for or `until` (ms since the epoch) is
    /// reached: [`Agent::start`], [`Agent::tick`]s, then
    /// [`Agent::shutdown`]. On a reload request, `reload` is called for
    /// the new configuration (see [`Agent::reload`]). With a control port,
    /// commands are looked for every [`COMMAND_POLL_MS`].
    pub fn run(
        &mut self,
        signals: &Signals,
        until: Option<TimestampMs>,
        reload: &dyn Fn() -> Result<Config, ConfigError>,
    ) -> RunSummary {
        self.start();
        loop {
            if signals.stop_requested() {
                log::info!("stop requested: shutting down");
                break;
            }
            if signals.take_reload() {
                self.reload(reload());
            }
            if until.is_some_and(|u| self.clock.now_ms() >= u) {
                break;
            }
            let mut wake = self.tick();
            if let Some(u) = until {
                wake = wake.min(u);
            }
            if self.control.is_some() {
                // Commands are answered within this, not at the next
                // sample.
                wake = wake.min(self.clock.now_ms() + COMMAND_POLL_MS);
            }
            self.clock.wait_until(wake, signals);
        }
        self.shutdown()
    }

    /// Applies a reloaded configuration, or refuses an invalid one with a
    /// log line (the configuration in force is kept). The store, the
    /// cgroup subtree, the mode, the guardrails, the host name, `[api]`,
    /// `[history]` and `[forecast]` take a restart to change: they are
    /// kept, with a log line.
    pub fn reload(&mut self, new: Result<Config, ConfigError>) {
        if let Err(e) = self.apply_config(new) {
            log::error!("configuration reload refused, keeping the running one: {e}");
        }
    }

    /// What [`Agent::reload`] does, saying what changed and what was kept,
    /// or why the configuration was refused (counted in
    /// `reloads_refused`; the configuration in force is kept).
    pub fn apply_config(
        &mut self,
        new: Result<Config, ConfigError>,
    ) -> Result<ConfigChange, ConfigError> {
        let new = new.and_then(|c| resolve(c, &self.machine));
        let mut new = match new {
            Ok(c) => c,
            Err(e) => {
                self.counters.reloads_refused += 1;
                return Err(e);
            }
        };
        let old = &self.config;
        let mut kept = Vec::new();
        if new.store != old.store {
            if new.store.path != old.store.path {
                kept.push(format!(
                    "[store] path changes take a restart; kept {}",
                    old.store.path.display()
                ));
            }
            new.store.path = old.store.path.clone();
        }
        if new.cgroup != old.cgroup {
            kept.push("[cgroup] changes take a restart; kept".to_string());
            new.cgroup = old.cgroup.clone();
        }
        if let Some(by) = &self.mode_set_by {
            if new.agent.mode != self.mode {
                kept.push(format!(
                    "keeping mode {}, set at run time by {} (the new configuration says {})",
                    self.mode,
                    who(by),
                    new.agent.mode
                ));
            }
            new.agent.mode = self.mode;
        } else if new.agent.mode != old.agent.mode {
            kept.push(format!(
                "a mode change takes a restart (or PUT /api/v1/mode); kept {}",
                old.agent.mode
            ));
            new.agent.mode = old.agent.mode;
        }
        if new.enforce.memory_headroom != old.enforce.memory_headroom
            || new.enforce.max_cpu_step != old.enforce.max_cpu_step
            || new.enforce.max_memory_step != old.enforce.max_memory_step
        {
            kept.push("guardrail changes take a restart; kept".to_string());
            new.enforce.memory_headroom = old.enforce.memory_headroom;
            new.enforce.max_cpu_step = old.enforce.max_cpu_step;
            new.enforce.max_memory_step = old.enforce.max_memory_step;
        }
        // The host's name, the API server and the history fetcher are set
        // up once, from the configuration the run started with.
        if new.agent.host != old.agent.host {
            kept.push(format!(
                "agent.host changes take a restart; kept {}",
                self.host
            ));
            new.agent.host = old.agent.host.clone();
        }
        if new.api != old.api {
            kept.push("[api] changes take a restart of the agent; kept".to_string());
            new.api = old.api.clone();
        }
        if new.history != old.history {
            kept.push("[history] changes take a restart; kept".to_string());
            new.history = old.history.clone();
        }
        if new.forecast != old.forecast {
            kept.push("[forecast] changes take a restart; kept".to_string());
            new.forecast = old.forecast.clone();
        }
        for k in &kept {
            log::warn!("reload: {k}");
        }
        let changed = changed_sections(old, &new);
        let step_changed = new.agent.forecast_step != old.agent.forecast_step;
        let policy_changed = new.agent.policy != old.agent.policy;
        let now = self.clock.now_ms();
        self.outbox.set_max_samples(new.store.max_buffered_samples);
        let alerts_changed = new.alerts != self.config.alerts;
        self.config = new;
        self.config_changed();
        for w in self.config.warnings() {
            log::warn!("reload: configuration: {w}");
        }
        let planned = planned_resources(&self.config);
        if planned != self.planned {
            log::info!(
                "planned resources: {}",
                planned
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // Series of resources no longer planned are saved and dropped
            // (a capacity given again resumes them from the store).
            if self.series.keys().any(|(_, r)| !planned.contains(r)) {
                self.checkpoint(now);
                self.series.retain(|(_, r), _| planned.contains(r));
            }
            self.leadlag.retain(|r, _| planned.contains(r));
            self.forecasts.retain(|(_, r), _| planned.contains(r));
            self.planned = planned;
        }
        if alerts_changed {
            self.alerts.set_rules(&self.config.alerts.rules);
            // The old sender delivers what it has queued before it stops.
            self.webhook = webhook_of(&self.config);
        }
        if step_changed {
            // Forecasters learn at one step; a new step starts them afresh
            // (and lead-lag, whose lags are in steps).
            self.checkpoint(now);
            self.series.clear();
            self.leadlag.clear();
            self.leadlag_dirty = true;
        }
        if policy_changed || step_changed {
            self.reference = reference_of(&self.config);
            let keys: Vec<(WorkloadId, Resource)> = self.series.keys().cloned().collect();
            for (w, r) in keys {
                let fresh = self.reference_state(&w, r);
                if let Some(s) = self.series.get_mut(&(w, r)) {
                    s.reference = fresh;
                }
            }
            log::info!("policy: {}", self.policy());
        }
        self.next_sample = now;
        self.next_plan = now + self.config.agent.plan_interval.as_ms_i64();
        self.discover(now);
        self.counters.reloads += 1;
        log::info!(
            "configuration reloaded: {} workload selector(s), {} workload(s) found",
            self.config.workloads.len(),
            self.workloads.len()
        );
        Ok(ConfigChange { changed, kept })
    }

    /// Shares the configuration in force with the live view again (after
    /// every change of `self.config`).
    fn config_changed(&mut self) {
        self.shared_config = Arc::new(self.config.clone());
    }

    /// Saves the forecasters, restores limits when configured, and writes
    /// out what is queued. Returns the run's summary.
    pub fn shutdown(&mut self) -> RunSummary {
        let now = self.clock.now_ms();
        // Close the open rollup buckets so the last samples are learnt.
        let closed: Vec<(WorkloadId, Resource, TimestampMs, f64)> = self
            .series
            .iter_mut()
            .filter_map(|((w, r), s)| s.close().map(|(b, v)| (w.clone(), *r, b, v)))
            .collect();
        for (w, r, b, v) in &closed {
            let alloc = self.allocation(w, *r).unwrap_or(f64::INFINITY);
            self.learn_step(w, *r, *b, *v, alloc, None);
        }
        // As a pass would, so that a restart resumes where an uninterrupted
        // run would be.
        self.learn_leadlag(&closed);
        self.tails.flush();
        self.checkpoint(now);
        self.save_leadlag(now);
        self.save_tails(now);
        if self.reconciler.is_some() {
            let t = Instant::now();
            self.restore_originals(now, "");
            self.times.record("enforce", t.elapsed());
        }
        self.flush();
        if self.outbox.samples_len() > 0 {
            log::error!(
                "{} samples and {} records could not be written to the store and are lost",
                self.outbox.samples_len(),
                self.outbox.records_len()
            );
        }
        RunSummary {
            host: self.host.0.clone(),
            mode: self.mode,
            started_at: self.started_at,
            stopped_at: now,
            workloads: self.workloads.keys().map(|w| w.0.clone()).collect(),
            counters: self.counters.clone(),
            times: self.times.clone(),
            plans: self.plans.clone(),
            stored_samples: self.outbox.stored_samples,
            unwritten_samples: self.outbox.samples_len(),
            dropped_samples: self.outbox.dropped_samples,
        }
    }

    fn discover(&mut self, now: TimestampMs) {
        let t = Instant::now();
        let group = self.enforcing();
        let found = self.observer.discover(&self.config.workloads, group);
        self.times.record("discover", t.elapsed());
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                log::warn!("discovery failed, keeping the workloads known: {e}");
                return;
            }
        };
        let mut next = BTreeMap::new();
        for f in found {
            let Some(ci) = self
                .config
                .workloads
                .iter()
                .position(|w| w.name == f.selector)
            else {
                continue;
            };
            match self.workloads.get(&f.id) {
                Some(t) if t.found == f => {}
                _ => {
                    log::info!("workload {} at {} ({})", f.id, f.cgroup, f.selector);
                    self.outbox
                        .push(Record::Meta(self.host.clone(), f.clone(), now));
                }
            }
            next.insert(
                f.id.clone(),
                Tracked {
                    found: f,
                    config: ci,
                },
            );
        }
        for gone in self.workloads.keys().filter(|k| !next.contains_key(*k)) {
            log::info!("workload {gone} is gone");
            for ll in self.leadlag.values_mut() {
                for &r in &self.planned {
                    self.leadlag_dirty |= ll.remove(&SeriesKey {
                        host: self.host.clone(),
                        workload: gone.clone(),
                        resource: r,
                    });
                }
            }
        }
        self.workloads = next;
    }

    fn sample(&mut self, now: TimestampMs) {
        let cgroups: Vec<CgroupPath> = self
            .workloads
            .values()
            .map(|t| t.found.cgroup.clone())
            .collect();
        let t = Instant::now();
        let usage = self.observer.observe(&cgroups, now);
        let raw = self.observer.take_counters();
        self.times.record("sample", t.elapsed());
        self.counters.sample_passes += 1;
        let by_cgroup: BTreeMap<&CgroupPath, &WorkloadId> = self
            .workloads
            .iter()
            .map(|(id, t)| (&t.found.cgroup, id))
            .collect();
        let t = Instant::now();
        let step = self.config.agent.forecast_step.as_ms_i64().max(1);
        let mut learn: Vec<(WorkloadId, Resource, f64)> = Vec::new();
        for (cg, u) in &usage {
            let Some(&id) = by_cgroup.get(cg) else {
                continue;
            };
            if let Some(t) = u.cpu_throttled.filter(|t| t.is_finite()) {
                self.throttled.insert(id.clone(), t);
            }
            for (r, v) in values(u) {
                let Some(v) = v.filter(|v| v.is_finite() && *v >= 0.0) else {
                    continue;
                };
                let key = SeriesKey {
                    host: self.host.clone(),
                    workload: id.clone(),
                    resource: r,
                };
                self.outbox.push_sample(key, Sample::new(now, v));
                self.counters.samples += 1;
                if self.planned.contains(&r) {
                    learn.push((id.clone(), r, v));
                }
            }
        }
        // The raw counters the rates came from, so that the store can
        // derive them again.
        for (cg, c) in raw {
            let Some(&id) = by_cgroup.get(&cg) else {
                continue;
            };
            if c.resource.counter_scale().is_none() {
                continue;
            }
            let key = SeriesKey {
                host: self.host.clone(),
                workload: id.clone(),
                resource: c.resource,
            };
            self.outbox
                .push_counter(key, prescient_store::Counter::new(now, c.name, c.value));
        }
        let mut completed = Vec::new();
        // io.max is a hard cap: usage at it says as little of demand as
        // usage at a hard CPU cap does.
        let hard_io = !self.config.enforce.io_devices.is_empty();
        for (id, r, v) in learn {
            let alloc = self.allocation(&id, r).unwrap_or(f64::INFINITY);
            let hard = match r {
                Resource::Cpu => self.config.enforce.hard_cpu,
                r => hard_io && IO_RESOURCES.contains(&r),
            };
            // The cap in force: an I/O cap is never below its floor.
            let floor = match r {
                Resource::IoRead | Resource::IoWrite => self.config.enforce.io_floor.0 as f64,
                Resource::IoReadOps | Resource::IoWriteOps => {
                    self.config.enforce.io_floor_ops as f64
                }
                _ => 0.0,
            };
            let cap =
                (hard && self.enforcing() && self.reference.is_none()).then_some(alloc.max(floor));
            if let Some((b, value)) = self.series_state(&id, r).push(now, v, step) {
                self.learn_step(&id, r, b, value, alloc, cap);
                completed.push((id, r, b, value));
            }
        }
        self.tails.flush();
        self.learn_leadlag(&completed);
        self.times.record("rollup", t.elapsed());
    }

    /// A completed rollup step `b` of `w`'s `r` with `value`: scores the
    /// forecast made for it (coverage of the SLO quantile), checks it for
    /// anomalies, lets the effect learner see it against the forecast
    /// without events, and teaches the forecaster (and the reference
    /// policy, with the allocation in force `alloc`).
    ///
    /// What the forecaster learns: the value without the effects of the
    /// events active then (else a recurring event becomes part of the
    /// pattern it learns and is applied twice), an outlier clipped, and,
    /// under a hard cap `cap`, more than was seen: usage at (or near) a
    /// hard cap only says that demand was at least that, so the forecaster
    /// is told [`PROBE_FACTOR`] times the cap and the next plan gives more
    /// where there is room; without this a capped workload's forecast
    /// would only ever follow its cap down. Reference policies see the
    /// usage as measured, as they would on a real host.
    fn learn_step(
        &mut self,
        w: &WorkloadId,
        r: Resource,
        b: TimestampMs,
        value: f64,
        alloc: f64,
        cap: Option<f64>,
    ) {
        let labels = self
            .workloads
            .get(w)
            .map(|t| t.found.labels.clone())
            .unwrap_or_default();
        let Some(s) = self.series.get_mut(&(w.clone(), r)) else {
            return;
        };
        // The forecast made for this very step (not one for an earlier
        // step, after a gap).
        let next = s.next.take().filter(|n| n.at == b);
        let mut one_step = None;
        let mut baseline = f64::NAN;
        if let Some(n) = &next {
            if let Ok(q) = Quantiles::new(&n.levels, &n.shifted) {
                if s.covered.len() >= COVERAGE_STEPS {
                    s.covered.pop_front();
                }
                s.covered
                    .push_back(value <= q.quantile(n.slo) * (1.0 + 1e-9) + 1e-12);
            }
            one_step = OneStep::from_quantiles(&n.levels, &n.shifted);
            if let Ok(q) = Quantiles::new(&n.levels, &n.raw) {
                baseline = q.quantile(0.5);
            }
        }
        let verdict = s.detector.observe(&s.key, b, value, one_step);
        // A non-finite baseline only closes the windows that ended.
        for u in self
            .learner
            .observe(&mut self.calendar, &s.key, &labels, b, value, baseline)
        {
            log::info!("{u}");
            self.calendar_dirty = true;
        }
        let learnt = match cap {
            Some(c) if c.is_finite() && value >= CAPPED_SHARE * c => value.max(c) * PROBE_FACTOR,
            _ => verdict.learn,
        };
        let learnt = self.calendar.without_events(&s.key, &labels, b, learnt);
        s.forecaster.observe(b, learnt);
        let learnt_step = learnt;
        if let Some(buf) = &mut s.awaiting_history {
            if buf.len() < MAX_STEPS_AWAITING_HISTORY {
                buf.push((b, learnt));
            } else {
                log::warn!(
                    "{}: history took too long to come; going on without it",
                    s.key
                );
                s.awaiting_history = None;
            }
        }
        if let Some(rs) = &mut s.reference {
            rs.state.observe(b, value, &[alloc]);
        }
        s.dirty = true;
        let mut reset = None;
        let mut relearn: Option<Vec<(TimestampMs, f64)>> = None;
        if let Some(since) = verdict.reset_since
            && self.config.forecast.reset_on_level_shift
        {
            let shift = verdict
                .anomalies
                .iter()
                .find(|a| a.kind == AnomalyKind::LevelShift);
            // What the models relearn from: the observations since the
            // shift as observed (the first steps of a new level are often
            // clipped as outliers before the shift is recognised), without
            // the events' effects, as everything they learn.
            let recent: Vec<(TimestampMs, f64)> = s
                .detector
                .observed_since(since)
                .into_iter()
                .map(|(t, v)| (t, self.calendar.without_events(&s.key, &labels, t, v)))
                .collect();
            // The planning tails relearn the steps before this one (this
            // one follows, as every step does).
            relearn = Some(recent.iter().copied().filter(|&(t, _)| t < b).collect());
            let forgot = s.forecaster.change_point(&ChangePoint {
                since,
                shift: shift.map_or(f64::NAN, |a| a.magnitude),
                recent,
            });
            log::info!(
                "{}: level shift since {}: forecaster reset: {forgot}",
                s.key,
                crate::logger::utc(since)
            );
            reset = Some((
                s.key.clone(),
                shift.map_or_else(|| "level shift".to_string(), |a| a.reason.clone()),
                forgot,
            ));
        }
        if let Some((key, why, forgot)) = reset {
            self.counters.forecaster_resets += 1;
            self.audit(AuditRecord {
                ts: b,
                actor: "agent".into(),
                action: "forecast.reset".into(),
                target: format!("{}/{}", key.workload, key.resource.as_str()),
                before: None,
                after: Some(forgot.to_string()),
                reason: format!("level shift: {why}"),
            });
        }
        for a in verdict.anomalies {
            // Outliers are frequent and already clipped out of what is
            // learnt: the log notes them quietly; leaks and shifts warn.
            let level = if a.kind.as_str() == "outlier" {
                log::Level::Info
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                "anomaly: {} {} of {}: {}",
                a.kind.as_str(),
                a.key.resource,
                a.key.workload,
                a.reason
            );
            if self.anomalies.len() >= MAX_ANOMALIES {
                self.anomalies.pop_front();
            }
            self.anomalies.push_back(AnomalyView {
                at: a.ts,
                workload: a.key.workload.0.clone(),
                resource: a.key.resource,
                kind: a.kind.as_str().to_string(),
                reason: a.reason,
            });
        }
        // The planning tails learn the same value, with the series of the
        // workload's pool that completed the same step; after a level shift
        // they forget what came before it, as the forecaster does.
        if let Some(pool) = self
            .workloads
            .get(w)
            .and_then(|t| self.config.workloads.get(t.config))
            .and_then(|wc| self.pool_for(w, wc))
            .and_then(|i| self.config.pools.get(i))
        {
            if let Some(recent) = relearn {
                self.tails.relearn(&pool.name, w, r, &recent);
            }
            self.tails.learn(&pool.name, w, r, b, learnt_step);
        }
        self.refresh_next(w, r);
    }

    /// Makes the forecast of the series' next rollup step and what the
    /// view shows of its forecaster (none before it learnt anything).
    fn refresh_next(&mut self, w: &WorkloadId, r: Resource) {
        let slo = self
            .workloads
            .get(w)
            .and_then(|t| self.config.workloads.get(t.config))
            .map_or(0.95, |wc| self.policy_for(w, wc, r).slo_quantile);
        let labels = self.workloads.get(w).map(|t| &t.found.labels);
        let Some(s) = self.series.get_mut(&(w.clone(), r)) else {
            return;
        };
        let Some(last) = s.forecaster.last_ts() else {
            s.next = None;
            return;
        };
        let step = s.forecaster.context().step_ms;
        let at = last.saturating_add(step);
        let mut levels: Vec<f64> = DEFAULT_LEVELS.to_vec();
        if slo > 0.0 && slo < 1.0 && !levels.contains(&slo) {
            levels.push(slo);
            levels.sort_by(f64::total_cmp);
        }
        let mut raw = vec![0.0; levels.len()];
        s.forecaster.one_step(&levels, &mut raw);
        let mut shifted = raw.clone();
        let empty = BTreeMap::new();
        if let Err(e) = self.calendar.apply(
            &s.key,
            labels.unwrap_or(&empty),
            at,
            step,
            1,
            &levels,
            &mut shifted,
        ) {
            log::warn!("events for {}: {e}", s.key);
        }
        if self.config.forecast.lead_lag
            && let Some(ll) = self.leadlag.get(&r)
        {
            ll.adjust_from(&s.key, at, &levels, &mut shifted);
        }
        s.next = Some(NextStep {
            at,
            raw,
            shifted,
            slo,
            weights: step_weights(&s.forecaster),
            calibration: calibration_view(&s.forecaster, at, &levels),
            levels,
        });
    }

    /// The series' state, resumed from the store or new.
    fn series_state(&mut self, w: &WorkloadId, r: Resource) -> &mut SeriesState {
        let k = (w.clone(), r);
        if !self.series.contains_key(&k) {
            let step = self.config.agent.forecast_step.as_ms_i64().max(1);
            let key = self.state_key(w, r);
            let resumed = match self.sink.load_state(&key) {
                Ok(Some((v, blob))) => match persist::decode(v, &blob) {
                    Ok((f, detector)) if f.context().step_ms == step => Some((f, detector)),
                    Ok(_) => {
                        log::info!("{key}: saved at another forecast step; starting afresh");
                        None
                    }
                    Err(e) => {
                        log::warn!("{key}: {e}; starting afresh");
                        None
                    }
                },
                Ok(None) => None,
                Err(e) => {
                    log::warn!("{key}: reading saved state: {e}; starting afresh");
                    None
                }
            };
            let resumed_any = resumed.is_some();
            if resumed_any {
                self.counters.resumed_forecasters += 1;
            }
            let reference = self.reference_state(w, r);
            let kinds = self.model_kinds();
            let (mut forecaster, detector) = resumed.unwrap_or_else(|| {
                let ctx = SeriesContext {
                    step_ms: step,
                    resource: r,
                };
                (SeriesForecaster::new(ctx, &kinds), None)
            });
            let detector =
                detector.unwrap_or_else(|| SeriesAnomalyDetector::new(r, &self.anomaly_config));
            for k in kinds {
                if !forecaster.model_kinds().contains(&k) {
                    // Saved before the model was configured: it joins, and
                    // the ensemble starts over.
                    let added = forecaster.add_model(k);
                    log::info!(
                        "{key}: {} model {}",
                        k.name(),
                        if added {
                            "added (the ensemble weights start over)"
                        } else {
                            "not added: the forecaster has the most models it can"
                        }
                    );
                }
            }
            if let Some(forest) = &self.learning.forest {
                forecaster.attach_forest(forest);
            }
            // Calibrate the workload's SLO quantile one step ahead too (a
            // no-op for one of the fixed levels).
            if let Some(wc) = self
                .workloads
                .get(w)
                .and_then(|t| self.config.workloads.get(t.config))
            {
                forecaster.track_level(self.policy_for(w, wc, r).slo_quantile);
            }
            self.series.insert(
                k.clone(),
                SeriesState {
                    key: SeriesKey {
                        host: self.host.clone(),
                        workload: w.clone(),
                        resource: r,
                    },
                    forecaster,
                    bucket: None,
                    last: None,
                    dirty: false,
                    reference,
                    detector,
                    next: None,
                    covered: VecDeque::new(),
                    awaiting_history: None,
                },
            );
            if !resumed_any {
                self.ask_history(w, r);
            }
            self.refresh_next(w, r);
        }
        self.series.get_mut(&k).expect("inserted above")
    }

    /// The tracked workloads in the pool of workload `w`.
    fn pool_workloads(&self, w: &WorkloadId) -> (Option<usize>, usize) {
        let pool_of =
            |id: &WorkloadId, t: &Tracked| self.pool_for(id, &self.config.workloads[t.config]);
        let Some(pool) = self.workloads.get(w).and_then(|t| pool_of(w, t)) else {
            return (None, self.workloads.len().max(1));
        };
        let n = self
            .workloads
            .iter()
            .filter(|(id, t)| pool_of(id, t) == Some(pool))
            .count();
        (Some(pool), n.max(1))
    }

    /// A fresh state of the reference policy for `w`'s `r`, if one sizes
    /// the workloads.
    fn reference_state(&self, w: &WorkloadId, r: Resource) -> Option<RefState> {
        let policy = self.reference.as_ref()?;
        let (pool, n) = self.pool_workloads(w);
        let capacity = pool.and_then(|p| self.config.pools[p].capacity(r));
        let key = SeriesKey {
            host: self.host.clone(),
            workload: w.clone(),
            resource: r,
        };
        let info = prescient_sim::SeriesInfo {
            key: &key,
            step_ms: self.config.agent.forecast_step.as_ms_i64().max(1),
            warmup_steps: 0,
            host_capacity: capacity,
            host_workloads: n,
        };
        if let Err(why) = policy.check(&info) {
            log::warn!("policy {} cannot size {key}: {why}", policy.name());
            return None;
        }
        Some(RefState {
            state: policy.start(&info, &[policy.knob().default]),
            pool_workloads: n,
        })
    }

    /// Plans by the reference policy: each series' recommendation for the
    /// next step, scaled down in proportion where a pool's allocations
    /// would exceed its capacity (as `prescient replay` does).
    fn reference_plans(&mut self, now: TimestampMs, problem: &Problem) -> Vec<Plan> {
        let Some(mut policy) = self.reference.take() else {
            return Vec::new();
        };
        let name = policy.name().to_string();
        let mut plans: Vec<Plan> = Vec::new();
        let planned = self.planned.clone();
        for (pi, pool) in problem.pools.iter().enumerate() {
            for &r in &planned {
                let ids: Vec<WorkloadId> = problem
                    .workloads
                    .iter()
                    .filter(|w| w.pool == pi && w.resources.iter().any(|x| x.resource == r))
                    .map(|w| w.name.clone())
                    .collect();
                // No recommendation: 0 for CPU and memory (the smallest
                // weight, a memory.high the guardrails keep above usage);
                // no entry for I/O, whose 0 would be a hard cap.
                let io = IO_RESOURCES.contains(&r);
                let mut asked_by: Vec<&WorkloadId> = Vec::with_capacity(ids.len());
                let mut requests = Vec::with_capacity(ids.len());
                for id in &ids {
                    let stale = self.series.get(&(id.clone(), r)).is_none_or(|s| {
                        s.reference.as_ref().map(|x| x.pool_workloads) != Some(ids.len())
                    });
                    if stale {
                        // A new series, or the pool's workloads changed (an
                        // equal split depends on how many share it).
                        self.reference = Some(policy);
                        let fresh = self.reference_state(id, r);
                        policy = self.reference.take().expect("just put back");
                        if let Some(s) = self.series.get_mut(&(id.clone(), r)) {
                            s.reference = fresh;
                        }
                    }
                    let mut out = [f64::NAN];
                    if let Some(rs) = self
                        .series
                        .get_mut(&(id.clone(), r))
                        .and_then(|s| s.reference.as_mut())
                    {
                        rs.state.recommend(&mut out);
                    }
                    let asked = if out[0].is_finite() {
                        out[0].max(0.0)
                    } else if io {
                        continue;
                    } else {
                        0.0
                    };
                    asked_by.push(id);
                    requests.push(asked);
                }
                let mut granted = requests.clone();
                let capacity = pool.capacity.get(&r).copied();
                if let Some(c) = capacity {
                    policy.arbitrate(&requests, c, &mut granted);
                }
                let root = root_of(problem, pi);
                let plan = match plans
                    .iter()
                    .position(|p| p.pool.0 == problem.pools[root].name)
                {
                    Some(i) => &mut plans[i],
                    None => {
                        plans.push(Plan {
                            made_at: now,
                            pool: HostId(problem.pools[root].name.clone()),
                            degraded: false,
                            entries: Vec::new(),
                        });
                        plans.last_mut().expect("just pushed")
                    }
                };
                for ((id, asked), got) in asked_by.iter().zip(&requests).zip(&granted) {
                    let mut reason = format!("{name}: {asked:.4}");
                    if got < asked {
                        reason.push_str(&format!(
                            ", scaled down to {got:.4} to fit pool {}'s capacity",
                            pool.name
                        ));
                    }
                    plan.entries.push(PlanEntry {
                        workload: (*id).clone(),
                        resource: r,
                        allocation: *got,
                        // Not estimated by a reference policy.
                        coverage: 0.0,
                        expected_unmet: 0.0,
                        reason,
                    });
                }
            }
        }
        self.reference = Some(policy);
        plans
    }

    fn plan(&mut self, now: TimestampMs) {
        if self.workloads.is_empty() {
            return;
        }
        let t = Instant::now();
        let step = self.config.agent.forecast_step.as_ms_i64().max(1);
        let horizon = self.config.agent.plan_steps.max(1) as usize;
        let start = (now.div_euclid(step) + 1) * step;
        let mut problem = Problem::new(now);
        problem.steps = horizon;
        if let Some(u) = self.config.agent.cpu_unit {
            problem.units.insert(Resource::Cpu, u);
        }
        for p in &self.config.pools {
            let capacity = self
                .planned
                .iter()
                .filter_map(|&r| Some((r, p.capacity(r)?)))
                .collect();
            problem.pools.push(Pool {
                name: p.name.clone(),
                parent: p
                    .parent
                    .as_ref()
                    .and_then(|n| self.config.pools.iter().position(|q| &q.name == n)),
                capacity,
                spare: if p.spread_spare {
                    Spare::Spread
                } else {
                    Spare::Keep
                },
                ..Pool::default()
            });
        }
        let current: BTreeMap<(&WorkloadId, Resource), f64> = self
            .plans
            .iter()
            .flat_map(|p| p.entries.iter())
            .map(|e| ((&e.workload, e.resource), e.allocation))
            .collect();
        // The planning tails: made anew if the rollup step changed, the
        // slots of workloads gone freed, the curves of the rest built.
        if self.tails.step_ms() != step {
            self.tails = PlanningTails::new(step);
        }
        let mut live: BTreeMap<(String, Resource), Vec<WorkloadId>> = BTreeMap::new();
        for (id, tr) in &self.workloads {
            let wc = &self.config.workloads[tr.config];
            let Some(pool) = self.pool_for(id, wc).and_then(|i| self.config.pools.get(i)) else {
                continue;
            };
            for &r in &self.planned {
                if self.series.contains_key(&(id.clone(), r)) {
                    live.entry((pool.name.clone(), r))
                        .or_default()
                        .push(id.clone());
                }
            }
        }
        self.tails.retain(&live);
        for ((pool, r), ids) in &live {
            let ids: Vec<&WorkloadId> = ids.iter().collect();
            self.tails.prepare(pool, *r, &ids);
        }
        let mut profiles = Vec::new();
        let mut forecasts = BTreeMap::new();
        // The events that shifted each series' forecast, for the reasons.
        let mut shifted_by: BTreeMap<(WorkloadId, Resource), Vec<Applied>> = BTreeMap::new();
        // The leaders whose moves shifted it.
        let mut led_by: BTreeMap<(WorkloadId, Resource), Adjustment> = BTreeMap::new();
        for (id, tr) in &self.workloads {
            let wc = &self.config.workloads[tr.config];
            let Some(pool) = self.pool_for(id, wc) else {
                continue;
            };
            let mut resources = Vec::new();
            for &r in &self.planned {
                let Some(s) = self.series.get(&(id.clone(), r)) else {
                    continue;
                };
                let learnt = s.forecaster.observations() > 0;
                let pool_name = &self.config.pools[pool].name;
                let tails = self.tails.demand(pool_name, id, r, start, horizon);
                let from_tails = tails.is_some();
                let mut demand = if let Some(d) = tails {
                    d
                } else if learnt {
                    match s.forecaster.forecast(start, horizon, &self.levels) {
                        Ok(p) => Demand::from_profile(&p),
                        Err(e) => {
                            log::warn!("forecast of {}: {e}", s.key);
                            continue;
                        }
                    }
                } else if let Some(v) = s.last {
                    // Before the first rollup step: the last sample, held.
                    Demand {
                        start,
                        step_ms: step,
                        levels: Arc::from(&[0.5][..]),
                        values: vec![v; horizon],
                    }
                } else {
                    continue;
                };
                // Known events shift the forecast while they are active.
                match self.calendar.apply(
                    &s.key,
                    &tr.found.labels,
                    demand.start,
                    demand.step_ms,
                    horizon,
                    &demand.levels,
                    &mut demand.values,
                ) {
                    Ok(applied) if !applied.is_empty() => {
                        shifted_by.insert((id.clone(), r), applied);
                    }
                    Ok(_) => {}
                    Err(e) => log::warn!("events for {}: {e}", s.key),
                }
                // A trusted leader's recent moves shift the forecast of the
                // steps its moves reach.
                if learnt
                    && self.config.forecast.lead_lag
                    && let Some(ll) = self.leadlag.get(&r)
                    && let Some(adj) =
                        ll.adjust_from(&s.key, demand.start, &demand.levels, &mut demand.values)
                    && adj.shifts.iter().any(|x| *x != 0.0)
                {
                    led_by.insert((id.clone(), r), adj);
                }
                if let Ok(q) = Quantiles::new(&demand.levels, first_row(&demand)) {
                    forecasts.insert((id.clone(), r), q.quantile(0.5));
                }
                if learnt || from_tails {
                    // Stored at the forecaster's levels: the tails' 72
                    // would make every stored profile 5 times larger.
                    let (levels, values) = if from_tails {
                        at_levels(&demand, &self.levels)
                    } else {
                        (demand.levels.to_vec(), demand.values.clone())
                    };
                    match DemandProfile::new(demand.start, demand.step_ms, levels, values) {
                        Ok(p) => profiles.push((s.key.clone(), p)),
                        Err(e) => log::warn!("profile of {}: {e}", s.key),
                    }
                }
                resources.push(WorkloadResource {
                    resource: r,
                    demand,
                    policy: self.policy_for(id, wc, r),
                    current: current.get(&(id, r)).copied().filter(|c| c.is_finite()),
                    current_tier: None,
                });
            }
            if !resources.is_empty() {
                problem.workloads.push(Workload {
                    name: id.clone(),
                    pool,
                    resources,
                });
            }
        }
        self.times.record("forecast", t.elapsed());
        self.forecasts = forecasts;
        for (k, p) in profiles {
            self.outbox.push(Record::Profile(k, now, p));
        }
        if problem.workloads.is_empty() {
            return;
        }
        let asked = self.requests_into(&mut problem);
        let t = Instant::now();
        // The solver's figures and its overcommitted pool-resources.
        let mut stats: Option<(prescient_solver::SolveStats, usize)> = None;
        let solved = if self.reference.is_some() {
            Ok(self.reference_plans(now, &problem))
        } else {
            let mut solved = prescient_solver::solve(&problem);
            if let Err(e) = &solved
                && !problem.requests.is_empty()
            {
                // Validated when made, so this should not happen; if it
                // does, plan without them rather than not at all.
                let why = format!("the solver refused the requests: {e}");
                log::error!("{why}; planning without them");
                for id in &asked {
                    if let Some(r) = self.requests.get_mut(id) {
                        r.view.state = RequestState::Queued;
                        r.view.granted = None;
                        r.view.reason = why.clone();
                    }
                }
                problem.requests.clear();
                solved = prescient_solver::solve(&problem);
            }
            solved.map(|sol| {
                stats = Some((sol.stats, sol.overcommitted.len()));
                self.record_outcomes(&sol, &problem, &asked);
                let mut plans = sol.plans(&problem);
                for p in &mut plans {
                    for e in &mut p.entries {
                        if let Some(applied) = shifted_by.get(&(e.workload.clone(), e.resource)) {
                            e.reason.push_str(&events_reason(applied, horizon));
                        }
                        if let Some(adj) = led_by.get(&(e.workload.clone(), e.resource)) {
                            e.reason.push_str(&leadlag_reason(adj));
                        }
                    }
                }
                plans
            })
        };
        self.times.record("solve", t.elapsed());
        match solved {
            Ok(plans) => {
                if self.counters.plans == 0 {
                    for p in &plans {
                        log::info!(
                            "first plan of pool {}: {} entries{}",
                            p.pool,
                            p.entries.len(),
                            if p.degraded { " (degraded)" } else { "" }
                        );
                    }
                }
                for p in &plans {
                    self.outbox.push(Record::Plan(p.clone()));
                }
                self.counters.plans += plans.len() as u64;
                let degraded = plans.iter().filter(|p| p.degraded).count();
                self.counters.degraded_plans += degraded as u64;
                let (st, overcommitted) = stats.unwrap_or_default();
                self.counters.solver_passes += st.passes as u64;
                self.solver = SolverView {
                    at: now,
                    workloads: problem.workloads.len(),
                    // A reference policy does not solve: its curves are
                    // the problem's workload-resources all the same.
                    curves: if stats.is_some() {
                        st.curves
                    } else {
                        problem.workloads.iter().map(|w| w.resources.len()).sum()
                    },
                    requests: problem.requests.len(),
                    passes: st.passes,
                    working_bytes: st.working_bytes,
                    overcommitted,
                    degraded_plans: degraded,
                };
                // Keep the last plan of pools that had no workloads this time.
                let mut merged = plans;
                for old in self.plans.drain(..) {
                    if !merged.iter().any(|p| p.pool == old.pool) {
                        merged.push(old);
                    }
                }
                self.plans = merged;
            }
            Err(e) => {
                self.counters.plan_errors += 1;
                log::error!("planning failed: {e}");
            }
        }
    }

    /// Puts the open requests whose workload and resource are in
    /// `problem` into its requests; returns their ids, in the problem's
    /// order. The others are marked queued, with why.
    fn requests_into(&mut self, problem: &mut Problem) -> Vec<u64> {
        let mut asked = Vec::new();
        if self.reference.is_some() {
            return asked;
        }
        for (id, r) in self.requests.iter_mut().filter(|(_, r)| r.active()) {
            let q = &r.view.request;
            let planned = problem.workloads.iter().any(|w| {
                w.name.0 == q.workload && w.resources.iter().any(|x| x.resource == q.resource)
            });
            if planned {
                problem.requests.push(prescient_solver::Request {
                    workload: WorkloadId(q.workload.clone()),
                    resource: q.resource,
                    amount: q.amount,
                    priority: q.priority,
                    justification: q.justification.clone(),
                });
                asked.push(*id);
            } else {
                r.view.state = RequestState::Queued;
                r.view.granted = None;
                r.view.reason = format!(
                    "workload '{}' has no {} forecast in this plan (gone, or not sampled yet): queued until it has",
                    q.workload, q.resource
                );
            }
        }
        asked
    }

    /// Records what the solve made of each request asked (`asked[i]` is
    /// the id of the problem's request `i`).
    fn record_outcomes(
        &mut self,
        sol: &prescient_solver::Solution,
        problem: &Problem,
        asked: &[u64],
    ) {
        for o in &sol.requests {
            let Some(r) = asked
                .get(o.request)
                .and_then(|id| self.requests.get_mut(id))
            else {
                continue;
            };
            let res = r.view.request.resource;
            r.view.state = match o.status {
                RequestStatus::Granted => RequestState::Granted,
                RequestStatus::Partial => RequestState::Partial,
                RequestStatus::Queued => RequestState::Queued,
            };
            r.view.granted = Some(o.granted);
            let mut why = format!(
                "{} of {} asked ({} without the request)",
                fmt_amount(res, o.granted),
                fmt_amount(res, o.asked),
                fmt_amount(res, o.without)
            );
            if o.from_free > 0.0 {
                why.push_str(&format!(
                    "; {} from free capacity",
                    fmt_amount(res, o.from_free)
                ));
            }
            if !o.borrowed.is_empty() {
                let lenders: Vec<String> = o
                    .borrowed
                    .iter()
                    .map(|(w, x)| {
                        let name = problem.workloads.get(*w).map_or("?", |w| w.name.0.as_str());
                        format!("{name} ({})", fmt_amount(res, *x))
                    })
                    .collect();
                why.push_str(&format!("; lent by {}", lenders.join(", ")));
            }
            if let Some(q) = &o.queued_because {
                why.push_str(&format!("; rest queued: {q}"));
            }
            r.view.reason = why;
        }
    }

    fn enforce(&mut self, now: TimestampMs) {
        if self.mode != Mode::Enforce {
            return;
        }
        let Some(rec) = self.reconciler.as_mut() else {
            return;
        };
        let t = Instant::now();
        let mut targets = BTreeMap::new();
        for (id, tr) in &self.workloads {
            let wc = &self.config.workloads[tr.config];
            targets.insert(id.clone(), (tr.found.cgroup.clone(), guarantee_of(wc)));
        }
        let style = PlanStyle {
            hard_cpu: self.config.enforce.hard_cpu,
            memory_max_factor: self.config.enforce.memory_max_factor,
            io_devices: self.config.enforce.devices(),
            io_floor_bytes: self.config.enforce.io_floor.0,
            io_floor_ops: self.config.enforce.io_floor_ops,
            ..PlanStyle::default()
        };
        let mut desired: BTreeMap<CgroupPath, Desired> = BTreeMap::new();
        for p in &self.plans {
            desired.extend(desired_from_plan(p, &targets, &style));
        }
        let actions = rec.reconcile(&desired, now);
        let originals: Vec<(CgroupPath, Vec<Setting>)> = rec.originals().into_iter().collect();
        self.times.record("enforce", t.elapsed());
        for a in actions {
            match a {
                Action::Wrote { audit, .. } => {
                    self.counters.writes += 1;
                    self.outbox.push(Record::Audit(audit));
                }
                Action::Drift {
                    cgroup,
                    knob,
                    expected,
                    found,
                } => {
                    self.counters.drift += 1;
                    log::warn!(
                        "drift: {knob} of {cgroup} is {found}, set to {expected} by the agent; setting it back"
                    );
                }
                Action::Refused {
                    cgroup,
                    knob,
                    error,
                } => {
                    self.counters.refused += 1;
                    log::info!("guardrail: {knob} of {cgroup} not written: {error}");
                }
                Action::Failed {
                    cgroup,
                    knob,
                    error,
                    attempt,
                    ..
                } => {
                    self.counters.enforce_failures += 1;
                    log::warn!(
                        "writing {} of {cgroup} failed (attempt {attempt}, will retry): {error}",
                        knob.map(|k| k.to_string())
                            .unwrap_or_else(|| "limits".into())
                    );
                }
                Action::Dropped {
                    cgroup,
                    knob,
                    error,
                } => {
                    self.counters.enforce_failures += 1;
                    log::warn!(
                        "gave up on {} of {cgroup}: {error}",
                        knob.map(|k| k.to_string())
                            .unwrap_or_else(|| "limits".into())
                    );
                }
            }
        }
        if self.config.cgroup.restore_on_exit && !originals.is_empty() {
            // Saved with every change of the set, so that a restart after
            // a crash can put them back.
            if let Ok(blob) = serde_json::to_vec(&originals) {
                self.outbox
                    .push(Record::State(self.originals_key(), ORIGINALS_VERSION, blob));
            }
        }
    }

    fn checkpoint(&mut self, now: TimestampMs) {
        let t = Instant::now();
        let mut states = Vec::new();
        for s in self.series.values_mut() {
            if s.dirty {
                s.dirty = false;
                let (version, blob) = persist::encode(&s.forecaster, &s.detector);
                states.push((persist::state_key(&s.key), version, blob));
            }
        }
        for (k, v, b) in states {
            self.outbox.push(Record::State(k, v, b));
        }
        if now >= self.leadlag_saved_at + LEADLAG_SAVE_EVERY_MS {
            self.save_leadlag(now);
        }
        if now >= self.tails_saved_at + TAILS_SAVE_EVERY_MS {
            self.save_tails(now);
        }
        if self.calendar_dirty {
            // What was learned of the events' effects survives a restart.
            match serde_json::to_vec(&self.calendar) {
                Ok(blob) => {
                    self.calendar_dirty = false;
                    self.outbox
                        .push(Record::State(self.calendar_key(), CALENDAR_VERSION, blob));
                }
                Err(e) => log::warn!("saving the calendar: {e}"),
            }
        }
        self.times.record("checkpoint", t.elapsed());
    }

    /// Saves the lead-lag detectors, if they learnt since the last save.
    fn save_leadlag(&mut self, now: TimestampMs) {
        if !self.leadlag_dirty {
            return;
        }
        let step = self.config.agent.forecast_step.as_ms_i64().max(1);
        let saved: Vec<(&Resource, &LeadLag)> = self.leadlag.iter().collect();
        match postcard::to_stdvec(&(step, saved)) {
            Ok(blob) => {
                self.leadlag_dirty = false;
                self.leadlag_saved_at = now;
                self.outbox
                    .push(Record::State(self.leadlag_key(), LEADLAG_VERSION, blob));
            }
            Err(e) => log::warn!("saving the lead-lag detectors: {e}"),
        }
    }

    fn flush(&mut self) {
        let t = Instant::now();
        let _ = self.outbox.flush(&mut self.sink);
        self.times.record("flush", t.elapsed());
    }
}

/// The live view and the commands: what the API server sees and asks.
impl<O: Observer, S: Sink, E: Enforcer, C: Clock> Agent<O, S, E, C> {
    /// Carries out the commands sent since the last pass; whether there
    /// were any.
    fn obey(&mut self, now: TimestampMs) -> bool {
        let commands = match &self.control {
            Some(port) => port.drain(),
            None => return false,
        };
        let any = !commands.is_empty();
        for c in commands {
            match c {
                Command::Replan { by } => {
                    log::info!("replan asked by {}", who(&by));
                    self.audit(
                        audit_by(now, &by, "plan.replan", &self.host.0)
                            .because("plan and enforce at once"),
                    );
                    self.next_plan = now;
                }
                Command::SetMode { mode, by, reply } => {
                    let r = self.set_mode(mode, &by, now);
                    if let Err(e) = &r {
                        log::warn!("mode change to {mode} asked by {} refused: {e}", who(&by));
                    }
                    // The asker may have given up waiting: nothing to do then.
                    let _ = reply.send(r);
                }
                Command::EventsChanged { by } => {
                    log::info!("events changed by {}: reading them again", who(&by));
                    self.load_events(now);
                }
                Command::Request { request, by, reply } => {
                    let r = self.open_request(request, &by, now);
                    if let Err(e) = &r {
                        log::info!("request by {} refused: {e}", who(&by));
                    }
                    let _ = reply.send(r);
                }
                Command::CancelRequest { id, by, reply } => {
                    let _ = reply.send(self.cancel_request(id, &by, now));
                }
                Command::SetConfig { toml, by, reply } => {
                    let r = self.set_config(&toml, &by, now);
                    // Answered once the view shows it (end of this tick).
                    self.config_replies.push((reply, r));
                }
            }
        }
        any
    }

    /// Replaces the configuration: see [`Command::SetConfig`]. Audited
    /// (`agent.config`) with who asked when applied; a refusal is logged.
    fn set_config(
        &mut self,
        toml: &str,
        by: &Caller,
        now: TimestampMs,
    ) -> Result<ConfigChange, ConfigError> {
        let loaded = (self.config_loader)(toml);
        match self.apply_config(loaded) {
            Ok(change) => {
                let mut why = format!(
                    "configuration replaced; changed: {}",
                    list_or_none(&change.changed)
                );
                if !change.kept.is_empty() {
                    why.push_str(&format!(
                        "; kept until a restart: {}",
                        change.kept.join("; ")
                    ));
                }
                let mut record = audit_by(now, by, "agent.config", &self.host.0).because(&why);
                record.after = Some(list_or_none(&change.changed));
                self.audit(record);
                log::info!("{why} (asked by {})", who(by));
                Ok(change)
            }
            Err(e) => {
                log::warn!(
                    "configuration sent by {} refused, keeping the running one: {e}",
                    who(by)
                );
                Err(e)
            }
        }
    }

    fn audit(&mut self, record: AuditRecord) {
        self.outbox.push(Record::Audit(record));
    }

    /// Switches between recommend and enforce: see [`Command::SetMode`].
    fn set_mode(&mut self, mode: Mode, by: &Caller, now: TimestampMs) -> Result<Mode, String> {
        let before = self.mode;
        if mode == before {
            return Ok(mode);
        }
        match mode {
            Mode::Enforce => {
                if self.reconciler.is_none() {
                    return Err(format!(
                        "cannot enforce: no cgroup writer ({})",
                        self.no_enforcer
                            .as_deref()
                            .unwrap_or("none was given to the agent")
                    ));
                }
            }
            Mode::Recommend => {
                // Stop writing; put back what was changed when configured
                // to (else the limits stay as they are).
                self.restore_originals(now, " on leaving enforce mode");
            }
        }
        self.mode = mode;
        self.config.agent.mode = mode;
        self.config_changed();
        self.mode_set_by = Some(by.clone());
        let mut record = audit_by(now, by, "agent.mode", &self.host.0)
            .because(&format!("mode {before} -> {mode}"));
        record.before = Some(before.to_string());
        record.after = Some(mode.to_string());
        self.audit(record);
        log::info!("mode {before} -> {mode}, set by {}", who(by));
        if mode == Mode::Enforce {
            // Process selectors are grouped into cgroups only while
            // enforcing; then the plan in force goes to the cgroups.
            self.discover(now);
            self.enforce(now);
        }
        Ok(mode)
    }

    /// Stops the reconciler: restores the original limits it changed (when
    /// `cgroup.restore_on_exit`), audits each, and clears the saved
    /// originals so that a restart has nothing to restore. `when` ends the
    /// log line.
    fn restore_originals(&mut self, now: TimestampMs, when: &str) {
        let Some(rec) = self.reconciler.as_mut() else {
            return;
        };
        let actions = rec.shutdown(now);
        let mut restored = 0;
        for a in &actions {
            if let Some(audit) = a.audit() {
                restored += 1;
                self.outbox.push(Record::Audit(audit.clone()));
            }
        }
        if restored > 0 {
            log::info!("restored {restored} original limit(s){when}");
        }
        self.counters.restored += restored;
        self.outbox.push(Record::State(
            self.originals_key(),
            ORIGINALS_VERSION,
            b"[]".to_vec(),
        ));
    }

    /// Validates and records a request: see [`Command::Request`].
    fn open_request(
        &mut self,
        request: NewRequest,
        by: &Caller,
        now: TimestampMs,
    ) -> Result<RequestView, String> {
        if self.reference.is_some() {
            return Err(format!(
                "requests cannot be honoured: agent.policy is '{}', a reference policy that sizes the workloads without prescient's solver",
                self.policy()
            ));
        }
        if !self
            .workloads
            .contains_key(&WorkloadId(request.workload.clone()))
        {
            let known: Vec<&str> = self.workloads.keys().map(|w| w.0.as_str()).collect();
            return Err(format!(
                "workload: unknown workload '{}' (tracked: {})",
                request.workload,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
        if !self.planned.contains(&request.resource) {
            return Err(format!(
                "resource: {} is not planned (requests are for {}; block I/O is planned where a pool gives it a capacity)",
                request.resource,
                self.planned
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !(request.amount.is_finite() && request.amount > 0.0) {
            return Err(format!(
                "amount: {} must be a finite number > 0 ({})",
                request.amount,
                request.resource.unit()
            ));
        }
        if request.duration_s == 0 {
            return Err("duration_s: must be > 0 seconds".into());
        }
        let duration_ms = i64::try_from(request.duration_s)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        let id = self.next_request_id;
        self.next_request_id += 1;
        let view = RequestView {
            id,
            requested_by: by.clone(),
            created_at: now,
            until: now.saturating_add(duration_ms),
            state: RequestState::Waiting,
            granted: None,
            reason: "waiting for the next plan".into(),
            request,
        };
        let mut record = audit_by(now, by, "request.create", &format!("request/{id}"))
            .because(&view.request.justification);
        record.after = serde_json::to_string(&view.request).ok();
        self.audit(record);
        log::info!(
            "request {id} by {}: {} of {} for {} until {} ({})",
            who(by),
            fmt_amount(view.request.resource, view.request.amount),
            view.request.resource,
            view.request.workload,
            crate::logger::utc(view.until),
            view.request.justification
        );
        self.requests.insert(
            id,
            OpenRequest {
                view: view.clone(),
                ended_at: None,
            },
        );
        // An explicit ask is planned at once, not at the next interval.
        self.next_plan = now;
        Ok(view)
    }

    /// Cancels a request: see [`Command::CancelRequest`].
    fn cancel_request(
        &mut self,
        id: u64,
        by: &Caller,
        now: TimestampMs,
    ) -> Result<RequestView, String> {
        let r = match self.requests.get_mut(&id) {
            None => return Err(format!("no request with id {id}")),
            Some(r) if !r.active() => {
                return Err(format!(
                    "request {id} has already ended ({})",
                    serde_json::to_value(r.view.state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                ));
            }
            Some(r) => r,
        };
        r.view.state = RequestState::Cancelled;
        r.view.granted = None;
        r.view.reason = format!("cancelled by {}", by.name);
        r.ended_at = Some(now);
        let view = r.view.clone();
        self.audit(
            audit_by(now, by, "request.cancel", &format!("request/{id}")).because("cancelled"),
        );
        log::info!("request {id} cancelled by {}", who(by));
        // Its allocation goes back at once.
        self.next_plan = now;
        Ok(view)
    }

    /// Ends the requests whose time ran out, and forgets those that ended
    /// long enough ago; whether anything changed.
    fn expire_requests(&mut self, now: TimestampMs) -> bool {
        let mut changed = false;
        let mut expired = Vec::new();
        for (id, r) in self.requests.iter_mut() {
            if r.active() && now >= r.view.until {
                r.view.state = RequestState::Expired;
                r.view.granted = None;
                r.view.reason = format!("expired at {}", crate::logger::utc(r.view.until));
                r.ended_at = Some(now);
                expired.push(*id);
            }
        }
        for id in expired {
            changed = true;
            log::info!("request {id} expired");
            let record = AuditRecord {
                ts: now,
                actor: "agent".into(),
                action: "request.expire".into(),
                target: format!("request/{id}"),
                before: None,
                after: None,
                reason: "its duration ran out".into(),
            };
            self.audit(record);
            self.next_plan = now;
        }
        let before = self.requests.len();
        self.requests
            .retain(|_, r| r.ended_at.is_none_or(|t| now < t + ENDED_REQUEST_KEEP_MS));
        changed || self.requests.len() != before
    }

    fn calendar_key(&self) -> String {
        format!("agent/calendar/{}", self.host)
    }

    /// Resumes what was learned of events' effects.
    fn load_calendar(&mut self) {
        let key = self.calendar_key();
        match self.sink.load_state(&key) {
            Ok(Some((CALENDAR_VERSION, blob))) => match serde_json::from_slice::<Calendar>(&blob) {
                Ok(c) => self.calendar = c,
                Err(e) => {
                    log::warn!("saved calendar ({key}) does not decode: {e}; starting afresh")
                }
            },
            Ok(Some((v, _))) => {
                log::info!("saved calendar ({key}) is of version {v}; starting afresh")
            }
            Ok(None) => {}
            Err(e) => log::warn!("reading the saved calendar: {e}"),
        }
    }

    /// Reads the events from the store again into the calendar (keeping
    /// what was learned of those whose effect is unchanged); a store that
    /// cannot be read keeps the calendar as it is.
    fn load_events(&mut self, now: TimestampMs) {
        let stored = match self.sink.events() {
            Ok(e) => e,
            Err(e) => {
                log::warn!(
                    "reading the events: {e}; keeping the {} known",
                    self.calendar.events().count()
                );
                return;
            }
        };
        let ids: Vec<i64> = stored.iter().map(|e| e.id.0).collect();
        let gone: Vec<i64> = self
            .calendar
            .events()
            .map(|e| e.id)
            .filter(|id| !ids.contains(id))
            .collect();
        for id in gone {
            self.calendar.remove(id);
        }
        for e in &stored {
            let row = StoredEvent {
                kind: e.event.kind.clone(),
                selector: e.event.selector.clone(),
                start: e.event.start,
                end: e.event.end,
                effect: e.event.effect.clone(),
            };
            match prescient_forecast::events::Event::from_stored(e.id.0, &row, e.cancelled_at)
                .and_then(|ev| self.calendar.insert(ev))
            {
                Ok(_) => {}
                Err(err) => {
                    log::warn!("event {} is not used: {err}", e.id);
                    self.calendar.remove(e.id.0);
                }
            }
        }
        self.calendar.prune(now.saturating_sub(EVENT_KEEP_MS));
        let selects = |ev: &prescient_forecast::events::Event| {
            self.workloads.iter().any(|(w, t)| {
                self.planned.iter().any(|&r| {
                    let key = SeriesKey {
                        host: self.host.clone(),
                        workload: w.clone(),
                        resource: r,
                    };
                    ev.selects(&key, &t.found.labels)
                })
            })
        };
        for ev in self.calendar.events() {
            if !selects(ev) {
                log::info!(
                    "event {} '{}' ({}) selects no workload tracked now",
                    ev.id,
                    ev.name,
                    ev.selector.as_str()
                );
            }
        }
        log::info!(
            "{} event(s) in the calendar",
            self.calendar.events().count()
        );
        // The next step's forecasts change with the events.
        let keys: Vec<(WorkloadId, Resource)> = self.series.keys().cloned().collect();
        for (w, r) in keys {
            self.refresh_next(&w, r);
        }
    }

    /// Evaluates the alert rules over the live view, acts on what fired
    /// or resolved, and publishes the view when a control port is
    /// connected.
    fn publish(&mut self, now: TimestampMs) {
        let rules = !self.config.alerts.rules.is_empty();
        if self.control.is_none() && !rules {
            return;
        }
        let mut view = self.live_view(now);
        if rules {
            let t = Instant::now();
            let transitions = self.alerts.evaluate(&view, now);
            view.alerts = self.alerts.alerts();
            self.times.record("alerts", t.elapsed());
            for tr in transitions {
                self.on_alert(tr, now);
            }
        }
        if let Some(port) = &self.control {
            port.publish(view);
        }
    }

    /// Logs an alert that fired or resolved, sends it to the webhook, and
    /// (in enforce mode) applies its remediation.
    fn on_alert(&mut self, tr: Transition, now: TimestampMs) {
        let a = &tr.alert;
        if tr.fired() {
            match a.severity.as_str() {
                "info" => log::info!("alert {} firing ({}): {}", a.id, a.severity, a.message),
                _ => log::warn!("alert {} firing ({}): {}", a.id, a.severity, a.message),
            }
        } else {
            log::info!("alert {} resolved", a.id);
        }
        if let Some(w) = &self.webhook {
            w.send(Notification {
                status: a.state,
                host: self.host.0.clone(),
                alert: a.clone(),
            });
        }
        let Some(action) = tr.remediation else {
            return;
        };
        if self.mode != Mode::Enforce {
            log::info!(
                "alert {}: remediation {action:?} not applied: the agent is in recommend mode",
                a.id
            );
            return;
        }
        let by = Caller {
            name: format!("alert:{}", a.rule),
            address: "agent".into(),
        };
        match action {
            Remediation::Replan => {
                self.audit(
                    audit_by(now, &by, "alert.replan", &self.host.0)
                        .because(&format!("alert {}: {}", a.id, a.message)),
                );
                self.next_plan = now;
            }
            Remediation::RaiseSlo {
                workload,
                resource,
                step,
                max,
            } => {
                let w = WorkloadId(workload);
                let Some(wc) = self
                    .workloads
                    .get(&w)
                    .and_then(|t| self.config.workloads.get(t.config))
                else {
                    return;
                };
                let before = self.policy_for(&w, wc, resource).slo_quantile;
                let after = (before + step).min(max);
                if after <= before {
                    log::info!(
                        "alert {}: the SLO quantile of {w} ({}) is already {before}, the rule's most",
                        a.id,
                        resource.as_str()
                    );
                    return;
                }
                self.slo_overrides.insert((w.clone(), resource), after);
                if let Some(s) = self.series.get_mut(&(w.clone(), resource)) {
                    s.forecaster.track_level(after);
                }
                let mut record = audit_by(
                    now,
                    &by,
                    "alert.raise_slo",
                    &format!("{w}/{}", resource.as_str()),
                )
                .because(&format!("alert {}: {}", a.id, a.message));
                record.before = Some(before.to_string());
                record.after = Some(after.to_string());
                self.audit(record);
                log::info!(
                    "alert {}: SLO quantile of {w} ({}) raised {before} -> {after}",
                    a.id,
                    resource.as_str()
                );
                self.next_plan = now;
            }
            Remediation::MoveTier { workload, pool } => {
                let w = WorkloadId(workload);
                let Some(wc) = self
                    .workloads
                    .get(&w)
                    .and_then(|t| self.config.workloads.get(t.config))
                else {
                    return;
                };
                let before = self
                    .pool_for(&w, wc)
                    .and_then(|i| self.config.pools.get(i))
                    .map(|p| p.name.clone());
                if before.as_deref() == Some(pool.as_str())
                    || !self.config.pools.iter().any(|p| p.name == pool)
                {
                    return;
                }
                self.pool_overrides.insert(w.clone(), pool.clone());
                let mut record = audit_by(now, &by, "alert.move_tier", &w.0)
                    .because(&format!("alert {}: {}", a.id, a.message));
                record.before = before.clone();
                record.after = Some(pool.clone());
                self.audit(record);
                log::info!(
                    "alert {}: {w} moved from pool {} to {pool}",
                    a.id,
                    before.as_deref().unwrap_or("-")
                );
                self.next_plan = now;
            }
        }
    }

    /// Workload `w`'s policy for `r`: its configuration's, with an SLO
    /// quantile raised by alert remediation.
    fn policy_for(&self, w: &WorkloadId, wc: &WorkloadConfig, r: Resource) -> ResourcePolicy {
        let mut p = wc.policy(r);
        if let Some(&q) = self.slo_overrides.get(&(w.clone(), r)) {
            p.slo_quantile = p.slo_quantile.max(q);
        }
        p
    }

    /// Workload `w`'s pool: its configuration's, or the one alert
    /// remediation moved it to.
    fn pool_for(&self, w: &WorkloadId, wc: &WorkloadConfig) -> Option<usize> {
        self.pool_overrides
            .get(w)
            .and_then(|name| self.config.pools.iter().position(|p| &p.name == name))
            .or_else(|| self.config.pool_index(wc))
    }

    /// What the loop knows now (see [`LiveView`]), at `now`.
    pub fn live_view(&self, now: TimestampMs) -> LiveView {
        let pools = self
            .config
            .pools
            .iter()
            .map(|p| {
                let capacity = self
                    .planned
                    .iter()
                    .filter_map(|&r| Some((r, p.capacity(r)?)))
                    .collect();
                PoolView {
                    name: p.name.clone(),
                    parent: p.parent.clone(),
                    capacity,
                }
            })
            .collect();
        let workloads = self
            .workloads
            .iter()
            .map(|(id, tr)| {
                let wc = self.config.workloads.get(tr.config);
                let resources = self
                    .planned
                    .iter()
                    .filter_map(|&r| {
                        let s = self.series.get(&(id.clone(), r))?;
                        let next = s.next.as_ref();
                        Some(ResourceView {
                            resource: r,
                            usage: s.last,
                            allocation: self.allocation(id, r),
                            slo_quantile: wc
                                .map_or(0.95, |wc| self.policy_for(id, wc, r).slo_quantile),
                            forecast: next.map_or_else(Vec::new, |n| {
                                n.levels
                                    .iter()
                                    .copied()
                                    .zip(n.shifted.iter().copied())
                                    .collect()
                            }),
                            coverage: s.coverage(),
                            observations: s.forecaster.observations(),
                            weights: next.map_or_else(Vec::new, |n| n.weights.clone()),
                            calibration: next.map_or_else(Vec::new, |n| n.calibration.clone()),
                        })
                    })
                    .collect();
                WorkloadView {
                    id: id.0.clone(),
                    selector: tr.found.selector.clone(),
                    cgroup: tr.found.cgroup.to_string(),
                    pool: wc
                        .and_then(|wc| self.pool_for(id, wc))
                        .and_then(|i| self.config.pools.get(i))
                        .map(|p| p.name.clone()),
                    labels: tr.found.labels.clone(),
                    resources,
                }
            })
            .collect();
        LiveView {
            host: self.host.0.clone(),
            mode: self.mode,
            policy: self.policy().to_string(),
            started_at: self.started_at,
            updated_at: now,
            counters: self.counters.clone(),
            times: self.times.clone(),
            pools,
            workloads,
            plans: self.plans.clone(),
            anomalies: self.anomalies.iter().cloned().collect(),
            alerts: self.alerts.alerts(),
            requests: self.requests.values().map(|r| r.view.clone()).collect(),
            store: StoreView {
                path: self.config.store.path.display().to_string(),
                stored_samples: self.outbox.stored_samples,
                buffered_samples: self.outbox.samples_len(),
                dropped_samples: self.outbox.dropped_samples,
                failing: self.outbox.failing.clone(),
            },
            solver: self.solver.clone(),
            config: Some(Arc::clone(&self.shared_config)),
        }
    }
}

/// What `wc` is promised, as the guardrails hold it: no limit is set below
/// it. I/O operations are whole numbers to the kernel: a guarantee of
/// 100.5 ops/s is 100, as an allocation of 100.5 caps at 100.
fn guarantee_of(wc: &WorkloadConfig) -> Guarantee {
    let ops = |g: f64| {
        if g.is_finite() && g > 0.0 {
            g as u64
        } else {
            0
        }
    };
    Guarantee {
        cpu_cores: wc.cpu.guarantee,
        memory_bytes: wc.memory.guarantee.0,
        io_read_bytes_per_sec: wc.io_read.guarantee.0,
        io_write_bytes_per_sec: wc.io_write.guarantee.0,
        io_read_ops_per_sec: ops(wc.io_read_ops.guarantee),
        io_write_ops_per_sec: ops(wc.io_write_ops.guarantee),
    }
}

/// "name (address)", for log lines.
fn who(by: &Caller) -> String {
    format!("{} ({})", by.name, by.address)
}

/// `a, b, c`, or `nothing`.
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".into()
    } else {
        items.join(", ")
    }
}

/// The top-level sections (`agent`, `workload`, ...) whose values differ
/// between `old` and `new`, by name.
fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return vec!["configuration".into()];
    };
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// An audit record of something `by` asked for.
fn audit_by(now: TimestampMs, by: &Caller, action: &str, target: &str) -> AuditRecord {
    AuditRecord {
        ts: now,
        actor: by.name.clone(),
        action: action.into(),
        target: target.into(),
        before: None,
        after: None,
        reason: format!("asked by {}", who(by)),
    }
}

/// Adds the why to an audit record.
trait Because {
    fn because(self, why: &str) -> Self;
}

impl Because for AuditRecord {
    fn because(mut self, why: &str) -> Self {
        if !why.is_empty() {
            self.reason = format!("{why}; {}", self.reason);
        }
        self
    }
}

/// The first step's row of a demand table.
fn first_row(d: &Demand) -> &[f64] {
    let n = d.levels.len().min(d.values.len());
    &d.values[..n]
}

/// What a plan entry's reason says of the events that shifted its
/// forecast.
fn events_reason(applied: &[Applied], horizon: usize) -> String {
    let mut out = String::new();
    for a in applied {
        let steps = if a.first_step == 0 && a.last_step + 1 >= horizon {
            "the whole horizon".to_string()
        } else if a.first_step == a.last_step {
            format!("step {}", a.first_step + 1)
        } else {
            format!("steps {}-{}", a.first_step + 1, a.last_step + 1)
        };
        let source = match a.source {
            prescient_forecast::events::EffectSource::Declared => "declared".to_string(),
            prescient_forecast::events::EffectSource::Learned { occurrences } => {
                format!("learned from {occurrences} occurrence(s)")
            }
        };
        out.push_str(&format!(
            "; forecast shifted by event '{}' ({} {source}, {steps})",
            a.name, a.effect
        ));
    }
    out
}

/// What a plan entry's reason says of the leader whose moves shifted its
/// forecast.
fn leadlag_reason(adj: &Adjustment) -> String {
    let r = adj.lead.follower.resource;
    let (first, last) = (
        adj.shifts.first().copied().unwrap_or(0.0),
        adj.shifts.last().copied().unwrap_or(0.0),
    );
    let sign = |x: f64| if x < 0.0 { "-" } else { "+" };
    format!(
        "; forecast shifted by {}{} (first step) to {}{} (last) following {}, whose moves it follows {} step(s) later (correlation {:.2})",
        sign(first),
        fmt_amount(r, first.abs()),
        sign(last),
        fmt_amount(r, last.abs()),
        adj.lead.leader.workload,
        adj.lead.lag,
        adj.lead.corr
    )
}

/// The ensemble's one-step weight of each model, averaged over the fixed
/// levels (each level's weights add up to 1, so the averages do too).
fn step_weights(f: &SeriesForecaster) -> Vec<ModelWeight> {
    let w = f.weights();
    let Some(band) = w.bands.iter().find(|b| b.band == Band::Step) else {
        return Vec::new();
    };
    let mut out: Vec<ModelWeight> = w
        .models
        .iter()
        .zip(&band.weights)
        .map(|(m, row)| ModelWeight {
            model: m.clone(),
            weight: if row.is_empty() {
                0.0
            } else {
                row.iter().sum::<f64>() / row.len() as f64
            },
        })
        .collect();
    let total: f64 = out.iter().map(|m| m.weight).sum();
    if total > 0.0 && total.is_finite() {
        for m in &mut out {
            m.weight /= total;
        }
    }
    out
}

/// The one-step calibration of each tracked level: the level the
/// ensemble's own forecast is read at to give the calibrated quantile
/// (its CDF at that quantile), and the realised coverage so far.
fn calibration_view(f: &SeriesForecaster, at: TimestampMs, levels: &[f64]) -> Vec<CalibrationView> {
    let uncalibrated = f.forecast_uncalibrated(at, 1, levels).ok();
    let raw = uncalibrated.as_ref().and_then(|p| p.step(0));
    f.calibration()
        .iter()
        .map(|t| {
            let mut issued = [0.0];
            f.one_step(&[t.level], &mut issued);
            CalibrationView {
                level: t.level,
                adjusted_level: raw.as_ref().map_or(t.level, |q| q.cdf(issued[0])),
                realised: (t.seen > 0).then(|| 1.0 - t.misses as f64 / t.seen as f64),
            }
        })
        .collect()
}

/// The root of pool `p` of `problem`.
fn root_of(problem: &Problem, mut p: usize) -> usize {
    for _ in 0..problem.pools.len() {
        match problem.pools.get(p).and_then(|x| x.parent) {
            Some(parent) => p = parent,
            None => break,
        }
    }
    p
}

/// The usage of one sample as (resource, value).
fn values(u: &Usage) -> [(Resource, Option<f64>); 8] {
    [
        (Resource::Cpu, u.cpu_cores),
        (Resource::Memory, u.memory_bytes),
        (Resource::IoRead, u.io_read),
        (Resource::IoWrite, u.io_write),
        (Resource::NetRx, u.net_rx),
        (Resource::NetTx, u.net_tx),
        (Resource::IoReadOps, u.io_read_ops),
        (Resource::IoWriteOps, u.io_write_ops),
    ]
}

/// The next tick after `prev` at `interval`; ticks missed while busy are
/// skipped rather than run in a burst.
fn advance(prev: TimestampMs, interval: i64, now: TimestampMs) -> TimestampMs {
    let next = prev + interval.max(1);
    if next <= now {
        now + interval.max(1)
    } else {
        next
    }
}
