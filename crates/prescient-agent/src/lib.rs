//! Prescient's live agent: watches the workloads of a machine, forecasts
//! their demand, plans a partition and enforces it, continuously.
//!
//! # Entry point
//!
//! [`run`] is what `prescient agent` (and `prescient demo`) call:
//!
//! ```no_run
//! use prescient_agent::{ConfigSource, RunOptions, Signals, config::Config};
//!
//! let mut config = Config::default();
//! config.store.path = "/tmp/prescient.db".into();
//! let signals = Signals::new();
//! // signals.install_handlers()?;  // SIGTERM/SIGINT stop, SIGHUP reloads
//! let summary = prescient_agent::run(
//!     &ConfigSource::Fixed(config),
//!     &RunOptions { duration: Some(std::time::Duration::from_secs(5)), control: None },
//!     &signals,
//! )?;
//! println!("{} plans, {} samples", summary.counters.plans, summary.stored_samples);
//! # Ok::<(), prescient_agent::AgentError>(())
//! ```
//!
//! Another thread may call [`Signals::stop`] to end a run early, or
//! [`Signals::reload`] to reload its configuration.
//!
//! # The loop ([`agent`])
//!
//! Every `sample_interval` the workloads' cgroups are read (prescient-linux's
//! collector); samples are queued for the store ([`outbox`]) and rolled up
//! to `forecast_step` (CPU and I/O: mean, memory: peak) for one
//! [`SeriesForecaster`](prescient_forecast::SeriesForecaster) per workload
//! and resource, and to each pool's planning tails ([`planning`]: the
//! one-step distributions the replay simulator's `prescient` policy splits
//! a host with). Every `plan_interval` workloads are rediscovered, each
//! workload's tail curve (its forecaster's profile until the tails are
//! warm) gives a demand profile of `plan_steps` steps, the solver
//! splits each pool, and (in enforce mode) the plan goes to the cgroups
//! through the reconciler and its guardrails; in recommend mode plans are
//! recorded and nothing is changed. Samples are written in batches every
//! `flush_interval`; forecaster state every `checkpoint_interval`. Each
//! stage's durations are kept ([`timing`]).
//!
//! # Beyond one series (`[forecast]`)
//!
//! The learned model ([`learned`]) is trained on the store's history of the
//! agent's series on a background thread and swapped into every
//! forecaster; lead-lag between the workloads of a resource shifts a
//! follower's forecast; a level shift makes a forecaster forget the old
//! level. Each series' forecaster and anomaly detectors are saved together
//! ([`persist`]).
//!
//! # Robustness
//!
//! - SIGTERM/SIGINT: the loop stops within 20 ms, saves the forecasters,
//!   restores the original limits (when `restore_on_exit`), flushes.
//! - SIGHUP: the file is read again; an invalid one is refused with a log
//!   line and the running configuration kept.
//! - SIGKILL: a restart resumes each forecaster and the last plans from the
//!   store; limits a killed run left changed are restored to their saved
//!   originals first.
//! - A store that cannot be written (a full disk): samples and records are
//!   held in memory (bounded by `max_buffered_samples`), the error is
//!   logged once, and writes resume when the store takes them again.
//!
//! # Control ([`control`])
//!
//! With a [`control::ControlPort`] ([`RunOptions::control`],
//! [`Agent::set_control`]) the loop publishes a [`control::LiveView`]
//! after each pass that sampled, planned or obeyed (workloads with usage,
//! allocation, next-step forecast, coverage, ensemble weights and
//! calibration; plans; anomalies; requests; counters; stage times) and
//! obeys [`control::Command`]s at the start of each pass: replan at once,
//! switch recommend/enforce (a cgroup writer is built whenever the host
//! allows; a reload keeps a mode set this way), read the store's events
//! again (they shift the forecasts of the workloads they select while
//! active, and their real effect is learned), resource requests
//! (validated at once, planned by the solver, expired at their end), and
//! a new configuration as text (read in place of the file, validated and
//! applied as a SIGHUP reload is: [`control::Command::SetConfig`]). Each
//! is audited with who asked.
//!
//! I/O sits behind the traits of [`ports`] ([`Clock`], [`Observer`],
//! [`Sink`], and prescient-linux's `Enforcer`), so the loop is tested on
//! fakes.

pub mod agent;
pub mod alerts;
pub mod config;
pub mod control;
pub mod history;
pub mod learned;
pub mod logger;
pub mod outbox;
pub mod persist;
pub mod planning;
pub mod ports;
pub mod replay;
pub mod status;
pub mod timing;
pub mod units;
pub mod webhook;

use std::time::Duration;

pub use agent::{Agent, Counters, Machine, RunSummary, resolve};
pub use config::{Config, ConfigError, ConfigSource, Mode, Overrides};
pub use ports::{
    Clock, Found, LinuxObserver, Observer, RawCounter, Signals, Sink, SinkError, StoreSink,
    SystemClock, Usage,
};
pub use timing::{StageStats, StageTimes};

use config::{CgroupConfig, RelativeTo};
use prescient_linux::layout::HierarchyId;
use prescient_linux::{CgroupFs, CgroupPath, LayoutKind, ProcFs, Root};

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error("store: {0}")]
    Store(#[from] prescient_store::StoreError),
    /// The cgroup filesystem cannot be used as configured.
    #[error("cgroups: {0}")]
    Cgroup(String),
    /// No cgroup writer for enforce mode.
    #[error("enforce mode: {0}")]
    Enforce(#[from] prescient_linux::EnforceError),
}

/// How [`run`] runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this long (`None`: until a stop signal).
    pub duration: Option<Duration>,
    /// The loop's end of a control channel (see [`control::Control`]): the
    /// loop publishes its [`control::LiveView`] there and obeys the
    /// [`control::Command`]s sent to it.
    pub control: Option<control::ControlPort>,
}

/// The cgroup hierarchies of this machine, each based at the configured
/// subtree.
pub fn cgroup_fs(root: Root, cfg: &CgroupConfig) -> Result<CgroupFs, AgentError> {
    let fs = CgroupFs::detect(root)
        .map_err(|e| AgentError::Cgroup(format!("reading the cgroup mounts: {e}")))?;
    if fs.layout().kind() == LayoutKind::None {
        return Err(AgentError::Cgroup("no cgroup filesystem is mounted".into()));
    }
    let sub = CgroupPath::parse(&cfg.subtree)
        .map_err(|e| AgentError::Cgroup(format!("cgroup.subtree: {e}")))?;
    match cfg.relative_to {
        RelativeTo::SelfCgroup => fs
            .based_at_process("self", &sub)
            .map_err(|e| AgentError::Cgroup(e.to_string())),
        RelativeTo::Root => {
            let ids: Vec<HierarchyId> = fs.hierarchies().map(|h| fs.id_of(h)).collect();
            let mut fs = fs;
            for id in ids {
                fs = fs
                    .with_base(&id, sub.clone())
                    .map_err(|e| AgentError::Cgroup(e.to_string()))?;
            }
            Ok(fs)
        }
    }
}

/// Runs the agent on this machine: loads the configuration from `source`,
/// opens the store, bases the cgroup hierarchies at the configured subtree,
/// and runs the loop until `signals` asks it to stop or `options.duration`
/// has passed; a reload request loads `source` again. Returns what the run
/// did. Signal handlers are not installed here: call
/// [`Signals::install_handlers`] first in a program that wants them.
pub fn run(
    source: &ConfigSource,
    options: &RunOptions,
    signals: &Signals,
) -> Result<RunSummary, AgentError> {
    let machine = Machine::detect();
    let config = resolve(source.load()?, &machine)?;
    let fs = cgroup_fs(Root::live(), &config.cgroup)?;
    if let Some(h) = fs.primary()
        && !h.base_dir().is_dir()
    {
        log::warn!(
            "the cgroup subtree {} does not exist: no workload will be found under it",
            h.base_dir().display()
        );
    }
    // A cgroup writer whenever the host allows, so that the mode can be
    // switched to enforce at run time (a recommend-mode run writes
    // nothing with it).
    let (enforcer, no_enforcer) = match prescient_linux::enforce::enforcer_for(&fs) {
        Ok(e) => (Some(e), None),
        Err(e) if config.agent.mode == Mode::Enforce => return Err(e.into()),
        Err(e) => {
            log::info!("no cgroup writer ({e}): a switch to enforce mode will be refused");
            (None, Some(e.to_string()))
        }
    };
    let sink = StoreSink::open(&config.store.path)?;
    let observer = LinuxObserver::new(fs, ProcFs::new(Root::live()));
    log::info!(
        "agent starting: mode {}, store {}, sampling every {}, planning every {}, {} workload selector(s)",
        config.agent.mode,
        config.store.path.display(),
        config.agent.sample_interval,
        config.agent.plan_interval,
        config.workloads.len()
    );
    let mut agent = Agent::new(config, machine, observer, sink, enforcer, SystemClock);
    if let Some(why) = no_enforcer {
        agent.set_no_enforcer_reason(why);
    }
    if let Some(port) = &options.control {
        agent.set_control(port.clone());
    }
    // A configuration sent through the API is the file's text, layered as
    // the file is.
    let text_source = source.clone();
    agent.set_config_loader(Box::new(move |text| {
        text_source.load_text(text, std::path::Path::new(control::CONFIG_TEXT_NAME))
    }));
    let until = options
        .duration
        .map(|d| ports::wall_ms() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2));
    let summary = agent.run(signals, until, &|| source.load());
    log::info!(
        "agent stopped: {} sample passes, {} plans, {} limit writes, {} restored",
        summary.counters.sample_passes,
        summary.counters.plans,
        summary.counters.writes,
        summary.counters.restored
    );
    Ok(summary)
}
