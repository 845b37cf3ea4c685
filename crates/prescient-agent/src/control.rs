//! How the running loop is seen and steered from other threads (the API
//! server): a [`LiveView`] the loop publishes after every pass, and
//! [`Command`]s it takes at the start of every pass.
//!
//! [`Control::new`] gives the two ends: a [`ControlHandle`] (cheap to
//! clone, for the server: read the view, send commands) and a
//! [`ControlPort`] (for the loop: publish, drain). The view is replaced
//! whole under a short write lock, so a reader never sees half a pass.
//! What the store already keeps (sample history, forecast history, plans,
//! the audit log, events) is read from the store, not from here.

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, RwLock};

use prescient_core::{Plan, Resource, TimestampMs};
use serde::Serialize;

use crate::agent::Counters;
use crate::config::{Config, ConfigError, Mode};
use crate::timing::StageTimes;

/// Everything the loop knows now that the store does not keep.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveView {
    /// The host's name in the store.
    pub host: String,
    /// The mode in force.
    pub mode: Mode,
    /// Who sizes the workloads (`prescient` or a reference policy).
    pub policy: String,
    /// When the loop started, ms since the epoch.
    pub started_at: TimestampMs,
    /// When this view was published.
    pub updated_at: TimestampMs,
    /// Counts of what the loop did.
    pub counters: Counters,
    /// Durations of each stage of the loop.
    pub times: StageTimes,
    /// The pools and their capacities.
    pub pools: Vec<PoolView>,
    /// The workloads tracked.
    pub workloads: Vec<WorkloadView>,
    /// The newest plan of each root pool.
    pub plans: Vec<Plan>,
    /// Recent anomalies, oldest first (bounded).
    pub anomalies: Vec<AnomalyView>,
    /// Alerts firing, pending, or resolved recently.
    pub alerts: Vec<AlertView>,
    /// Resource requests, open and recently ended.
    pub requests: Vec<RequestView>,
    /// The store as the loop sees it.
    pub store: StoreView,
    /// The last planning pass's solve.
    pub solver: SolverView,
    /// The configuration in force (`None` until the loop publishes). Not
    /// serialised: it holds the token hashes of `[api]`.
    #[serde(skip)]
    pub config: Option<Arc<Config>>,
}

/// A pool and its capacity per resource (cores, bytes).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PoolView {
    /// Its name.
    pub name: String,
    /// The pool it nests in.
    pub parent: Option<String>,
    /// Capacity per resource.
    pub capacity: BTreeMap<Resource, f64>,
}

/// A tracked workload.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WorkloadView {
    /// Its id (the name in the store).
    pub id: String,
    /// The `[[workload]]` selector that found it.
    pub selector: String,
    /// Its cgroup, relative to the agent's subtree.
    pub cgroup: String,
    /// Its pool.
    pub pool: Option<String>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Per resource.
    pub resources: Vec<ResourceView>,
}

/// One resource of a workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceView {
    /// The resource.
    pub resource: Resource,
    /// The newest sample, in the resource's unit.
    pub usage: Option<f64>,
    /// The allocation of the plan in force.
    pub allocation: Option<f64>,
    /// The SLO quantile its policy asks for.
    pub slo_quantile: f64,
    /// The next step's forecast: (quantile level, value), levels increasing.
    pub forecast: Vec<(f64, f64)>,
    /// Realised share of recent steps at or under the forecast's SLO
    /// quantile (`None` before any step was scored).
    pub coverage: Option<f64>,
    /// Rollup steps learnt.
    pub observations: u64,
    /// The ensemble's weight of each model (they add up to 1).
    pub weights: Vec<ModelWeight>,
    /// The conformal calibration per quantile level.
    pub calibration: Vec<CalibrationView>,
}

/// One model's weight in a series' ensemble.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelWeight {
    /// The model's name.
    pub model: String,
    /// Its weight.
    pub weight: f64,
}

/// The calibration of one quantile level of a series.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CalibrationView {
    /// The nominal level.
    pub level: f64,
    /// The level the raw forecast is read at after adjustment.
    pub adjusted_level: f64,
    /// Realised coverage of this level so far.
    pub realised: Option<f64>,
}

/// An anomaly the loop found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyView {
    /// When (the rollup step it was found at).
    pub at: TimestampMs,
    /// The workload.
    pub workload: String,
    /// The resource.
    pub resource: Resource,
    /// `memory_leak`, `level_shift` or `outlier`.
    pub kind: String,
    /// Why, in words a person can read.
    pub reason: String,
}

/// How far an alert has got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds, not yet for the rule's hold time.
    #[default]
    Pending,
    /// The condition has held for the hold time.
    Firing,
    /// The condition cleared after firing.
    Resolved,
}

/// An alert: one rule's condition for one subject (a workload, a pool, the
/// host).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertView {
    /// Stable for a rule and subject: `rule/subject`.
    pub id: String,
    /// The rule's name.
    pub rule: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// Its state.
    pub state: AlertState,
    /// The workload, pool or `host` it is about.
    pub subject: String,
    /// What holds, in words a person can read.
    pub message: String,
    /// When the condition started to hold.
    pub since: TimestampMs,
    /// When it cleared (resolved alerts).
    pub resolved_at: Option<TimestampMs>,
}

/// Who asks, through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// The token's name (`anonymous` without one).
    pub name: String,
    /// The client's address.
    pub address: String,
}

/// A workload's (or an operator's) ask for more than its forecast.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// The workload's id.
    pub workload: String,
    /// The resource.
    pub resource: Resource,
    /// The allocation asked for, in total, in the resource's unit (cores,
    /// bytes).
    pub amount: f64,
    /// Its priority class (see the solver's requests).
    pub priority: u32,
    /// Why.
    pub justification: String,
    /// For how long, seconds from when it is made.
    pub duration_s: u64,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Not planned yet.
    #[default]
    Waiting,
    /// The whole amount is allocated.
    Granted,
    /// Part of it is allocated; the rest is queued.
    Partial,
    /// None of it beyond what the workload had anyway.
    Queued,
    /// Its time ran out.
    Expired,
    /// Cancelled.
    Cancelled,
}

/// A request and its outcome at the latest plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestView {
    /// Its id.
    pub id: u64,
    /// The request.
    pub request: NewRequest,
    /// Who made it.
    pub requested_by: Caller,
    /// When.
    pub created_at: TimestampMs,
    /// When it ends.
    pub until: TimestampMs,
    /// Where it stands.
    pub state: RequestState,
    /// The allocation granted at the latest plan.
    pub granted: Option<f64>,
    /// Which workloads lent capacity for it, and why it is queued if it is.
    pub reason: String,
}

/// The size and outcome of the last planning pass's solve (all zero before
/// the first).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SolverView {
    /// When it ran (0: not yet).
    pub at: TimestampMs,
    /// Workloads planned.
    pub workloads: usize,
    /// Workload-resource pairs planned.
    pub curves: usize,
    /// Resource requests given to the solver.
    pub requests: usize,
    /// Passes over the curves made by the solver's threshold searches (0
    /// for a reference policy, which does not search).
    pub passes: usize,
    /// Bytes held by the solver's working structures at the end of its
    /// largest resource's solve.
    pub working_bytes: usize,
    /// Pool and resource pairs whose guarantees exceeded the capacity, so
    /// that they were cut back.
    pub overcommitted: usize,
    /// Plans (root pools) that came out degraded.
    pub degraded_plans: usize,
}

/// The store as the loop sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreView {
    /// Its file.
    pub path: String,
    /// Samples written this run.
    pub stored_samples: u64,
    /// Samples held in memory, not yet written.
    pub buffered_samples: usize,
    /// Samples dropped because memory was full while the store failed.
    pub dropped_samples: u64,
    /// Why writes fail, while they do.
    pub failing: Option<String>,
}

/// What another thread asks the loop to do. Each carries who asked, for the
/// audit log; those that answer carry a sender for the reply (the loop
/// answers within one pass).
#[derive(Debug)]
pub enum Command {
    /// Plan (and enforce) at once instead of at the next interval.
    Replan {
        /// Who asked.
        by: Caller,
    },
    /// Switch between recommend and enforce.
    SetMode {
        /// The new mode.
        mode: Mode,
        /// Who asked.
        by: Caller,
        /// The mode in force afterwards, or why it could not change.
        reply: Sender<Result<Mode, String>>,
    },
    /// The store's events changed (created or cancelled): read them again.
    EventsChanged {
        /// Who changed them.
        by: Caller,
    },
    /// A resource request.
    Request {
        /// The request.
        request: NewRequest,
        /// Who asked.
        by: Caller,
        /// The request as recorded (its id; its outcome comes with the next
        /// plan), or why it was refused (an unknown workload, a bad amount).
        reply: Sender<Result<RequestView, String>>,
    },
    /// Cancels a request.
    CancelRequest {
        /// Its id.
        id: u64,
        /// Who asked.
        by: Caller,
        /// The request as cancelled, or why not (an unknown id).
        reply: Sender<Result<RequestView, String>>,
    },
    /// Replaces the configuration with `toml`, read in place of the file
    /// (the environment's and the flags' layers still apply, and in replay
    /// the trace's preparation) and validated as a SIGHUP reload is; then
    /// applied through the same path, with the same parts kept until a
    /// restart. An invalid one is refused and the running one kept.
    SetConfig {
        /// The configuration, TOML (named [`CONFIG_TEXT_NAME`] in errors).
        toml: String,
        /// Who asked.
        by: Caller,
        /// What changed and what was kept, or why it was refused (naming
        /// the bad key and value). Sent after the view showing the new
        /// configuration is published.
        reply: Sender<Result<ConfigChange, ConfigError>>,
    },
}

/// How a configuration sent with [`Command::SetConfig`] is named in errors.
pub const CONFIG_TEXT_NAME: &str = "<PUT /api/v1/config>";

/// What a configuration change did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigChange {
    /// The top-level sections that changed (`agent`, `workload`,
    /// `alerts`, ...), in the file's order.
    pub changed: Vec<String>,
    /// Changes not applied because they take a restart (each says what
    /// was kept).
    pub kept: Vec<String>,
}

/// Makes the two ends of a control channel.
pub struct Control;

impl Control {
    /// A handle for the server and a port for the loop, sharing one view
    /// (empty until the loop publishes) and one command queue.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (ControlHandle, ControlPort) {
        let view = Arc::new(RwLock::new(Arc::new(LiveView::default())));
        let (tx, rx) = channel();
        (
            ControlHandle {
                view: Arc::clone(&view),
                tx,
            },
            ControlPort {
                view,
                rx: Arc::new(Mutex::new(rx)),
            },
        )
    }
}

/// The server's end: the latest view, and a way to send commands.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    view: Arc<RwLock<Arc<LiveView>>>,
    tx: Sender<Command>,
}

impl ControlHandle {
    /// The latest published view (shared; cheap).
    pub fn view(&self) -> Arc<LiveView> {
        match self.view.read() {
            Ok(v) => Arc::clone(&v),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Sends a command; `false` when the loop has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.tx.send(command).is_ok()
    }
}

/// The loop's end: publish views, take commands. Clones share the view
/// and the queue (so that [`crate::RunOptions`] can be cloned); one loop
/// should drain it.
#[derive(Debug, Clone)]
pub struct ControlPort {
    view: Arc<RwLock<Arc<LiveView>>>,
    rx: Arc<Mutex<Receiver<Command>>>,
}

impl ControlPort {
    /// Replaces the published view.
    pub fn publish(&self, view: LiveView) {
        let view = Arc::new(view);
        match self.view.write() {
            Ok(mut v) => *v = view,
            Err(poisoned) => *poisoned.into_inner() = view,
        }
    }

    /// The commands sent since the last call, in the order sent.
    pub fn drain(&self) -> Vec<Command> {
        let mut out = Vec::new();
        let rx = match self.rx.lock() {
            Ok(rx) => rx,
            Err(poisoned) => poisoned.into_inner(),
        };
        loop {
            match rx.try_recv() {
                Ok(c) => out.push(c),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_sees_what_the_port_publishes_and_the_port_gets_commands_in_order() {
        let (handle, port) = Control::new();
        assert!(handle.view().workloads.is_empty());
        port.publish(LiveView {
            host: "h".into(),
            ..LiveView::default()
        });
        assert_eq!(handle.view().host, "h");
        let by = Caller {
            name: "ops".into(),
            address: "127.0.0.1".into(),
        };
        assert!(handle.send(Command::Replan { by: by.clone() }));
        assert!(handle.send(Command::EventsChanged { by }));
        let got = port.drain();
        assert!(matches!(got[0], Command::Replan { .. }));
        assert!(matches!(got[1], Command::EventsChanged { .. }));
        assert!(port.drain().is_empty());
        drop(port);
        assert!(!handle.send(Command::Replan {
            by: Caller {
                name: "x".into(),
                address: "y".into()
            }
        }));
    }
}
