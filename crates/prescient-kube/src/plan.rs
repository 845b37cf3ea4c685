//! The pure core: from a [`NodeSnapshot`] and what the planner has learnt
//! (tail curves per node and resource, forecasters while a container's
//! tails are cold, the resizes done), a [`NodePlan`]: per managed
//! container the requests (and limits, keeping the pod's limit/request
//! ratio) the solver chose, why, and whether the pod may be resized now.
//!
//! # Profiles
//!
//! The demand profiles are those the replay's `prescient` policy splits
//! contended capacity with, from the same code
//! ([`prescient_forecast::tails`]): per node and resource a [`HostTails`]
//! ([`TailConfig::for_planning`]) whose series are the node's containers,
//! each curve a one-hour-half-life decayed distribution of the container's
//! own usage, read at [`TailConfig::levels`] and repeated over the plan's
//! horizon. A container whose tails have fewer than
//! [`PlannerConfig::tail_min_observations`] samples is planned from its
//! [`SeriesForecaster`] instead (as before the tails), which exists only
//! until its tails are warm: Prometheus history warms the tails directly,
//! so a forecaster serves new containers without history for their first
//! hour, or with a short one.
//!
//! The tails take one sample per [`PlannerConfig::tail_step_ms`] (5
//! minutes by default, the step the replays validated the curves at),
//! not one per cycle: their window holds about 20 hours of samples, which
//! at one a minute would be 1,200 samples, 14 KiB per container and
//! resource, 1.3 GiB for 46,000 containers; at 5 minutes it is 240, and
//! a container's tails take about 8 KiB (both resources). The sample is
//! the usage of the cycle that takes it, an unbiased draw of the usage
//! distribution the curves estimate (an average or a maximum over the 5
//! minutes would estimate another one). Curves are rebuilt when a sample
//! is taken; the cycles in between plan from the same curves.
//!
//! Containers come and go: each takes a slot on its node's tails (a dead
//! one first, reset), a pod recreated with its name on another node takes
//! its memory along, and a node's tails drop their dead slots when they
//! are more than half (and more than 4), so churn cannot grow them
//! without bound.
//!
//! Per node, the solver gets one pool whose capacity is the node's
//! allocatable minus what unmanaged pods (and managed ones not planned this
//! cycle) request, and whose whole capacity is kept as a reserve: requests
//! go up to each container's SLO quantile of forecast usage when the node
//! has room, and by priority class when it has not — never beyond the SLO,
//! since a request is a reservation the scheduler honours, not a cap.
//!
//! A pod is resized only when a request moves by more than the dead band
//! ([`PlannerConfig::min_change_fraction`]); at most once per
//! [`PlannerConfig::min_resize_interval_ms`], counting every attempt
//! (accepted, deferred, infeasible; a failed one waits a shorter, growing
//! backoff) and the last resize recorded on the pod itself (its
//! managedFields, so a restarted controller honours it); never to a memory
//! request under its usage plus headroom, and never lower when its usage is
//! unknown; never while a resize is in progress or while the kubelet holds
//! the same target pending (`PodResizePending`: `Deferred` waits for the
//! kubelet, `Infeasible` is not tried again until the target changes);
//! never to requests that would change the pod's QoS class (a Guaranteed
//! pod keeps requests equal to limits); and, for a resource whose
//! `resizePolicy` is `RestartContainer`, only when its PodDisruptionBudget
//! allows a disruption.

use std::collections::HashMap;
use std::sync::Arc;

use prescient_core::{Resource, ResourcePolicy, TimestampMs, WorkloadId};
use prescient_forecast::tails::{Expert, HostTails, SeriesTails, TailConfig};
use prescient_forecast::{DEFAULT_LEVELS, ModelKind, SeriesContext, SeriesForecaster};
use prescient_solver::{Demand, Pool, Problem, Solver, Workload, WorkloadResource, fmt_amount};
use rayon::prelude::*;

use crate::crd::Mode;
use crate::quantity::{rounded_cpu, rounded_memory};
use crate::snapshot::{NodeSnapshot, OptIn, PodSnapshot, QosClass, ResourceState, Usage};

/// How the planner plans.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConfig {
    /// The controller's mode: in recommend mode nothing is ever resized.
    pub mode: Mode,
    /// Time between usage samples (the controller's interval).
    pub step_ms: i64,
    /// Steps of forecast a plan covers (1: the next interval, read from the
    /// forecasters' precomputed next step, the cheap path).
    pub horizon_steps: usize,
    /// At most one resize per pod in this long (every attempt counts).
    pub min_resize_interval_ms: i64,
    /// After a failed resize, the wait before the next attempt: doubled at
    /// each failure in a row, at least two steps, at most
    /// `min_resize_interval_ms`.
    pub failed_resize_backoff_ms: i64,
    /// Memory requests stay at least this share above current usage...
    pub memory_headroom_fraction: f64,
    /// ...and at least this many bytes above it.
    pub memory_headroom_min_bytes: f64,
    /// A request moving by less than this share of it is left alone.
    pub min_change_fraction: f64,
    /// Samples a series needs before it is planned.
    pub min_observations: u64,
    /// The forecasting models of the forecasters of containers whose
    /// tails are cold (all classic ones if empty).
    pub models: Vec<ModelKind>,
    /// The solver's CPU step, cores.
    pub cpu_unit: f64,
    /// The solver's memory step, bytes.
    pub memory_unit: f64,
    /// The tail curves take one sample of each container's usage in this
    /// long (at least `step_ms`; see [`Planner`]).
    pub tail_step_ms: i64,
    /// Samples a container's tail curves need before they plan it; until
    /// then its forecaster does.
    pub tail_min_observations: usize,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            mode: Mode::Recommend,
            step_ms: 60_000,
            horizon_steps: 1,
            min_resize_interval_ms: 5 * 60_000,
            failed_resize_backoff_ms: 2 * 60_000,
            memory_headroom_fraction: 0.1,
            memory_headroom_min_bytes: 32.0 * 1_048_576.0,
            min_change_fraction: 0.05,
            min_observations: 3,
            // The recent level alone: a forecaster only serves a container
            // until its tails are warm (its first hour, without history),
            // where the decaying histogram's 24-hour memory has nothing to
            // add. At a cold start every container has one: 2.8 KiB a
            // series, against 7.3 KiB with the histogram (650 MiB for
            // 46,000 containers).
            models: vec![ModelKind::Recent],
            cpu_unit: 0.01,
            memory_unit: 4.0 * 1_048_576.0,
            tail_step_ms: 5 * 60_000,
            tail_min_observations: 12,
        }
    }
}

impl PlannerConfig {
    /// The smallest memory request allowed for a container using `usage`
    /// bytes: usage plus headroom.
    pub fn memory_floor(&self, usage: f64) -> f64 {
        usage + (usage * self.memory_headroom_fraction).max(self.memory_headroom_min_bytes)
    }

    /// The wait after the `failures`-th failed resize in a row.
    pub fn failure_backoff(&self, failures: u32) -> i64 {
        let base = self.failed_resize_backoff_ms.max(2 * self.step_ms);
        let factor = 1i64 << failures.saturating_sub(1).min(20);
        base.saturating_mul(factor).min(self.min_resize_interval_ms)
    }
}

/// A container of a pod: (namespace, pod, container).
pub type ContainerKey = (String, String, String);

/// The planned change of one resource of one container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The request now (spec).
    pub current_request: f64,
    /// The request planned (rounded as it will be written).
    pub request: f64,
    /// The limit now.
    pub current_limit: Option<f64>,
    /// The limit planned: the request times the current limit/request ratio.
    pub limit: Option<f64>,
    /// Whether it differs from the current request by more than the dead band.
    pub changed: bool,
}

/// The plan of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    /// The container.
    pub name: String,
    /// CPU (cores), when planned.
    pub cpu: Option<Target>,
    /// Memory (bytes), when planned.
    pub memory: Option<Target>,
    /// Why, in words (the solver's reasons and the planner's notes).
    pub reason: String,
}

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Resize it now (enforce mode).
    Resize,
    /// Write the recommendation (recommend mode).
    Recommend,
    /// Its requests are where the plan wants them.
    NoChange,
    /// The kubelet holds a resize to the target the plan wants pending
    /// (`PodResizePending`/`Deferred`, with its message): it actuates it
    /// when the node has room, so it is not sent again.
    Deferred(String),
    /// The kubelet found the target the plan wants `Infeasible` (its
    /// message): not tried again until the plan wants another target.
    Infeasible(String),
    /// A change is planned but may not be applied now: why.
    Hold(String),
    /// Not planned: why (bad policy, not enough usage yet).
    Skip(String),
}

/// How a resize attempt went.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// The API server took it, and the kubelet had not objected.
    Accepted,
    /// Taken, but the kubelet answered `PodResizePending`/`Deferred`.
    Deferred(String),
    /// Taken, but the kubelet answered `PodResizePending`/`Infeasible`.
    Infeasible(String),
    /// The API call failed (after the conflict retries).
    Failed(String),
}

/// The last resize the controller attempted on a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// When, ms since the epoch.
    pub at: TimestampMs,
    /// The requests it asked for, per container.
    pub targets: Vec<ContainerRequests>,
    /// The pod's resourceVersion it was planned from: while the watch
    /// still shows that version, the pod seen predates the attempt, and the
    /// attempt's own answer is the newest word on it.
    pub from_version: Option<String>,
    /// How it went.
    pub result: AttemptResult,
    /// Failed attempts in a row, this one included.
    pub failures: u32,
}

/// The plan of one managed pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPlan {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The resourceVersion planned from.
    pub resource_version: Option<String>,
    /// The PrescientPolicy that manages it, if one does.
    pub policy: Option<String>,
    /// The effective mode.
    pub mode: Mode,
    /// Per container.
    pub containers: Vec<ContainerPlan>,
    /// What to do.
    pub action: Action,
}

/// The plan of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePlan {
    /// The node.
    pub node: String,
    /// CPU left to managed pods, cores.
    pub capacity_cpu: f64,
    /// Memory left to managed pods, bytes.
    pub capacity_memory: f64,
    /// Per managed pod.
    pub pods: Vec<PodPlan>,
    /// Problems met (from the snapshot, and a solve that failed).
    pub problems: Vec<String>,
    /// The managed pods' minimums exceed the capacity left: some were cut.
    pub degraded: bool,
}

/// A container's planned requests: (name, CPU, memory).
pub type ContainerRequests = (String, Option<f64>, Option<f64>);

/// The resources planned, in the order of every per-resource array.
const RESOURCES: [Resource; 2] = [Resource::Cpu, Resource::Memory];

/// The index of `resource` in [`RESOURCES`].
fn resource_index(resource: Resource) -> Option<usize> {
    RESOURCES.iter().position(|&r| r == resource)
}

/// Where a container's profile comes from at the next plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Its tail curves on its node (warm: at least
    /// [`PlannerConfig::tail_min_observations`] samples).
    Tails,
    /// Its forecaster (tails still cold; Prometheus history may have
    /// trained it).
    Forecaster,
}

/// What the planner keeps of one container (by interned id).
#[derive(Debug, Default)]
struct ContainerState {
    /// Whether the id is in use.
    live: bool,
    /// Its node (index into [`Planner::nodes`]) and slot in that node's
    /// tails, once observed on a node.
    place: Option<(u32, u32)>,
    /// Per resource: its forecaster, while its tails are cold.
    forecasters: [Option<Box<SeriesForecaster>>; 2],
    /// Per resource: history read before it was seen on a node, as tail
    /// samples, learnt when it is placed.
    pending: Option<Box<[Vec<f64>; 2]>>,
    /// The observation (cycle) it was last seen in, with its usage then.
    seen: u64,
    usage: Usage,
}

/// A pod's containers (name, interned id) and the last resize attempted.
#[derive(Debug, Default)]
struct PodEntry {
    containers: Vec<(String, u32)>,
    attempt: Option<Attempt>,
}

/// One node's tail curves: a [`HostTails`] per resource, whose series
/// (slots) are the containers seen on the node.
#[derive(Debug)]
struct NodeTails {
    name: String,
    /// Per resource, the same slots.
    tails: [HostTails; 2],
    /// The container (id) in each slot; `None`: dead, reused first.
    slots: Vec<Option<u32>>,
    /// Dead slots.
    free: Vec<u32>,
    /// Slots whose curves must be rebuilt before the next plan (moved in,
    /// history learnt).
    dirty: Vec<u32>,
    /// This observation's containers: (slot, container id, usage).
    batch: Vec<(u32, u32, Usage)>,
    /// When the tails last took a sample.
    last_fed: Option<TimestampMs>,
    /// Where this node's tail steps start (ms into a tail step): nodes
    /// take their samples in different cycles, so that no cycle does all
    /// the work.
    phase_ms: i64,
}

impl NodeTails {
    fn new(name: &str, tail_step_ms: i64, step_ms: i64) -> Self {
        // Only the curves are read: the knob the tails would allocate at
        // does not matter.
        let make = || {
            HostTails::new(
                TailConfig::for_planning(tail_step_ms),
                0,
                tail_step_ms,
                0,
                &[0.95],
            )
        };
        NodeTails {
            name: name.to_string(),
            tails: [make(), make()],
            slots: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            batch: Vec::new(),
            last_fed: None,
            phase_ms: tail_phase(name, tail_step_ms, step_ms),
        }
    }

    /// Whether a sample is due at `ts`: the first one, then one in each of
    /// the node's tail steps. Cycles are not exactly one step apart: a
    /// cycle within half a step of the next tail step counts in it.
    fn due(&self, ts: TimestampMs, tail_step_ms: i64, step_ms: i64) -> bool {
        let Some(last) = self.last_fed else {
            return true;
        };
        let slot = |t: TimestampMs| {
            t.saturating_sub(self.phase_ms)
                .saturating_add(step_ms / 2)
                .div_euclid(tail_step_ms.max(1))
        };
        ts < last || slot(ts) > slot(last)
    }

    /// Containers in it.
    fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// A slot for container `id`: a dead one (fresh since it died) or a
    /// new one.
    fn take_slot(&mut self, id: u32) -> u32 {
        if let Some(s) = self.free.pop() {
            self.slots[s as usize] = Some(id);
            return s;
        }
        let s = self.tails[0].add_series();
        self.tails[1].add_series();
        self.slots.push(Some(id));
        s as u32
    }

    /// Kills slot `s`: what it learnt is forgotten at once (its memory
    /// freed), its index reused by the next container.
    fn release(&mut self, s: u32) {
        if let Some(slot) = self.slots.get_mut(s as usize)
            && slot.take().is_some()
        {
            for t in &mut self.tails {
                t.reset_series(s as usize);
            }
            self.free.push(s);
        }
    }

    /// Drops the dead slots when they are more than half of them (and more
    /// than a few), so that churn cannot grow a node's tails without
    /// bound; returns the old slot to new slot map when it did.
    fn compact(&mut self) -> Option<Vec<Option<usize>>> {
        if self.free.len() <= 4 || 2 * self.free.len() <= self.slots.len() {
            return None;
        }
        let slots = &self.slots;
        let map = self.tails[0].retain_series(|s| slots[s].is_some());
        self.tails[1].retain_series(|s| slots[s].is_some());
        self.slots.retain(Option::is_some);
        self.free.clear();
        self.dirty = self
            .dirty
            .iter()
            .filter_map(|&s| map.get(s as usize).copied().flatten().map(|t| t as u32))
            .collect();
        Some(map)
    }
}

/// The planner: what it learnt of each container (tail curves per node,
/// forecasters while they are cold), the resize history, and the planning
/// itself.
///
/// Containers are interned: looked up once per observation by namespace,
/// pod and name (borrowed, no key built), then known by a `u32` id.
#[derive(Debug)]
pub struct Planner {
    config: PlannerConfig,
    /// The tails' step: [`PlannerConfig::tail_step_ms`], at least the
    /// step.
    tail_step_ms: i64,
    /// Containers and attempts, by namespace then pod.
    pods: HashMap<String, HashMap<String, PodEntry>>,
    /// Per container id.
    containers: Vec<ContainerState>,
    free_ids: Vec<u32>,
    /// Node tails by name, and by index.
    node_index: HashMap<String, u32>,
    nodes: Vec<Option<NodeTails>>,
    free_nodes: Vec<u32>,
    /// Observations made (the current one's number).
    observation: u64,
    levels: Arc<[f64]>,
    tail_levels: Arc<[f64]>,
}

impl Planner {
    /// A planner with nothing learnt yet.
    pub fn new(config: PlannerConfig) -> Self {
        Planner {
            tail_step_ms: config.tail_step_ms.max(config.step_ms).max(1),
            config,
            pods: HashMap::new(),
            containers: Vec::new(),
            free_ids: Vec::new(),
            node_index: HashMap::new(),
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            observation: 0,
            levels: Arc::from(DEFAULT_LEVELS.as_slice()),
            tail_levels: TailConfig::levels().into(),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &PlannerConfig {
        &self.config
    }

    /// Number of containers it knows.
    pub fn series_count(&self) -> usize {
        self.containers.len() - self.free_ids.len()
    }

    /// Number of containers with a forecaster (tails still cold).
    pub fn forecaster_count(&self) -> usize {
        self.containers
            .iter()
            .filter(|c| c.forecasters.iter().any(Option::is_some))
            .count()
    }

    /// Node `name`'s tail slots: (live, all).
    pub fn node_slots(&self, name: &str) -> Option<(usize, usize)> {
        let n = self.node(name)?.1;
        Some((n.live(), n.slots.len()))
    }

    fn node(&self, name: &str) -> Option<(u32, &NodeTails)> {
        let &i = self.node_index.get(name)?;
        self.nodes.get(i as usize)?.as_ref().map(|n| (i, n))
    }

    /// The id of container `container` of pod `namespace/pod`, if known.
    fn id_of(&self, namespace: &str, pod: &str, container: &str) -> Option<u32> {
        self.pods
            .get(namespace)?
            .get(pod)?
            .containers
            .iter()
            .find(|(n, _)| n == container)
            .map(|&(_, id)| id)
    }

    /// The id of a container, interned if new.
    fn intern(&mut self, namespace: &str, pod: &str, container: &str) -> u32 {
        if let Some(id) = self.id_of(namespace, pod, container) {
            return id;
        }
        let id = match self.free_ids.pop() {
            Some(id) => id,
            None => {
                self.containers.push(ContainerState::default());
                (self.containers.len() - 1) as u32
            }
        };
        self.containers[id as usize] = ContainerState {
            live: true,
            ..Default::default()
        };
        let pods = match self.pods.get_mut(namespace) {
            Some(p) => p,
            None => self.pods.entry(namespace.to_string()).or_default(),
        };
        let entry = match pods.get_mut(pod) {
            Some(e) => e,
            None => pods.entry(pod.to_string()).or_default(),
        };
        entry.containers.push((container.to_string(), id));
        id
    }

    /// The index of node `name`'s tails, created if new.
    fn node_for(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.node_index.get(name) {
            return i;
        }
        let tails = NodeTails::new(name, self.tail_step_ms, self.config.step_ms);
        let i = match self.free_nodes.pop() {
            Some(i) => {
                self.nodes[i as usize] = Some(tails);
                i
            }
            None => {
                self.nodes.push(Some(tails));
                (self.nodes.len() - 1) as u32
            }
        };
        self.node_index.insert(name.to_string(), i);
        i
    }

    /// Places container `id` on node `ni`: a slot there, what it learnt
    /// elsewhere carried over (a pod recreated with its name on another
    /// node), history read before it was placed learnt. Returns the node
    /// it left, if it moved.
    fn place(&mut self, id: u32, ni: u32) -> Option<u32> {
        let state = &mut self.containers[id as usize];
        if state.place.is_some_and(|(n, _)| n == ni)
            || self.nodes.get(ni as usize).is_none_or(Option::is_none)
        {
            return None;
        }
        let mut carried: [Option<SeriesTails>; 2] = [None, None];
        let mut left = None;
        if let Some((old, s)) = state.place.take()
            && let Some(node) = self.nodes.get_mut(old as usize).and_then(Option::as_mut)
        {
            for (c, t) in carried.iter_mut().zip(&mut node.tails) {
                *c = t.take_series(s as usize);
            }
            node.release(s);
            left = Some(old);
        }
        let pending = state.pending.take();
        let node = self.nodes.get_mut(ni as usize).and_then(Option::as_mut)?;
        let s = node.take_slot(id);
        for (r, t) in node.tails.iter_mut().enumerate() {
            if let Some(c) = carried[r].take() {
                t.put_series(s as usize, c);
            }
            if let Some(h) = pending.as_ref().map(|p| &p[r]).filter(|h| !h.is_empty()) {
                t.reset_series(s as usize);
                t.learn(s as usize, h);
            }
        }
        node.dirty.push(s);
        self.containers[id as usize].place = Some((ni, s));
        left
    }

    /// Forgets container `id` and frees its slot.
    fn forget(&mut self, id: u32) {
        let Some(state) = self.containers.get_mut(id as usize) else {
            return;
        };
        if let Some((ni, s)) = state.place
            && let Some(node) = self.nodes.get_mut(ni as usize).and_then(Option::as_mut)
        {
            node.release(s);
        }
        *state = ContainerState::default();
        self.free_ids.push(id);
    }

    /// Compacts node `ni`'s tails if many of its slots are dead, and drops
    /// them when none is live.
    fn tidy_node(&mut self, ni: u32) {
        let Some(node) = self.nodes.get_mut(ni as usize).and_then(Option::as_mut) else {
            return;
        };
        if node.live() == 0 {
            self.node_index.remove(&node.name);
            self.nodes[ni as usize] = None;
            self.free_nodes.push(ni);
            return;
        }
        if node.compact().is_some() {
            for (s, id) in node.slots.iter().enumerate() {
                if let Some(c) = id.and_then(|id| self.containers.get_mut(id as usize)) {
                    c.place = Some((ni, s as u32));
                }
            }
        }
    }

    /// Learns the usage in `nodes` (as the snapshots carry it) of every
    /// container of a managed pod, observed at `ts`: each container's
    /// forecasters while its tails are cold (created on first sight), and
    /// every tail step each node's tail curves, in parallel over
    /// containers and nodes.
    pub fn observe(&mut self, nodes: &[NodeSnapshot], ts: TimestampMs) {
        self.observation += 1;
        let now = self.observation;
        let mut left = Vec::new();
        // Interning and placement, serially (cheap: a lookup per pod).
        for snap in nodes {
            let mut ni = None;
            for pod in snap.pods.iter().filter(|p| p.opt_in.is_some()) {
                for c in &pod.containers {
                    let id = self.intern(&pod.namespace, &pod.name, &c.name);
                    let n = match ni {
                        Some(n) => n,
                        None => *ni.insert(self.node_for(&snap.name)),
                    };
                    left.extend(self.place(id, n));
                    let state = &mut self.containers[id as usize];
                    state.seen = now;
                    state.usage = Usage {
                        cpu: c.cpu.usage,
                        memory: c.memory.usage,
                    };
                    if let Some((_, s)) = state.place
                        && let Some(node) = self.nodes[n as usize].as_mut()
                    {
                        node.batch.push((s, id, state.usage));
                    }
                }
            }
        }
        // Forecasters of cold tails (created where the tails are cold).
        let cfg = &self.config;
        let nodes_ro = &self.nodes;
        let min_tail = cfg.tail_min_observations;
        self.containers
            .par_iter_mut()
            .filter(|c| c.live && c.seen == now)
            .for_each(|state| {
                let usage = [state.usage.cpu, state.usage.memory];
                for (r, u) in usage.into_iter().enumerate() {
                    if warm_in(nodes_ro, state, r, min_tail) {
                        continue;
                    }
                    let Some(v) = u else { continue };
                    state.forecasters[r]
                        .get_or_insert_with(|| Box::new(new_forecaster(cfg, RESOURCES[r])))
                        .observe(ts, v);
                }
            });
        // Tails: a sample every tail step; curves rebuilt where they moved.
        let (tail_step, step) = (self.tail_step_ms, self.config.step_ms);
        self.nodes.par_iter_mut().flatten().for_each(|node| {
            // (A container listed on two nodes at once, which the API
            // server does not allow, lost its first slot: skip it.)
            let slots = &node.slots;
            node.batch
                .retain(|&(s, id, _)| slots.get(s as usize) == Some(&Some(id)));
            let due = node.due(ts, tail_step, step);
            let mut refresh: Vec<usize> = node.dirty.drain(..).map(|s| s as usize).collect();
            if due && !node.batch.is_empty() {
                let mut present = Vec::with_capacity(node.batch.len());
                let mut demands = Vec::with_capacity(node.batch.len());
                for (r, tails) in node.tails.iter_mut().enumerate() {
                    present.clear();
                    demands.clear();
                    for &(s, _, u) in &node.batch {
                        let v = if r == 0 { u.cpu } else { u.memory };
                        if let Some(v) = v.filter(|v| v.is_finite()) {
                            present.push(s as usize);
                            demands.push(v);
                        }
                    }
                    // Without usage (the metrics failed), no sample is
                    // taken: the next cycle tries again.
                    if !present.is_empty() {
                        tails.observe(ts, &present, &demands);
                        node.last_fed = Some(ts);
                        refresh.extend_from_slice(&present);
                    }
                }
                refresh.sort_unstable();
                refresh.dedup();
            }
            if !refresh.is_empty() {
                for tails in &mut node.tails {
                    tails.refresh_curves(&refresh);
                }
            }
            node.batch.clear();
        });
        // Forecasters whose tails are now warm are dropped.
        let nodes_ro = &self.nodes;
        self.containers
            .par_iter_mut()
            .filter(|c| c.live && c.seen == now)
            .for_each(|state| {
                for r in 0..RESOURCES.len() {
                    if state.forecasters[r].is_some() && warm_in(nodes_ro, state, r, min_tail) {
                        state.forecasters[r] = None;
                    }
                }
            });
        // Nodes containers moved away from.
        left.sort_unstable();
        left.dedup();
        for ni in left {
            self.tidy_node(ni);
        }
    }

    /// Replaces what was learnt of `key`'s `resource` by its history,
    /// `points` (time order, at the controller's step; the history covers
    /// the steps seen live so far too): the container's tail curves take
    /// one sample of it per tail step (the latest window's worth), and
    /// when that leaves them cold, a forecaster is trained on the whole
    /// history. Returns the points read; with none usable, what was learnt
    /// is kept.
    pub fn learn_history(
        &mut self,
        key: &ContainerKey,
        resource: Resource,
        points: &[(TimestampMs, f64)],
    ) -> usize {
        let Some(r) = resource_index(resource) else {
            return 0;
        };
        let usable = points.iter().filter(|(_, v)| v.is_finite()).count();
        if usable == 0 {
            return 0;
        }
        let samples = tail_samples(points, self.tail_step_ms, tail_window(self.tail_step_ms));
        let id = self.intern(&key.0, &key.1, &key.2);
        let state = &mut self.containers[id as usize];
        match state.place {
            Some((ni, s)) => {
                if let Some(node) = self.nodes.get_mut(ni as usize).and_then(Option::as_mut) {
                    let t = &mut node.tails[r];
                    t.reset_series(s as usize);
                    t.learn(s as usize, &samples);
                    t.refresh_curves(&[s as usize]);
                }
            }
            None => {
                state.pending.get_or_insert_with(Default::default)[r] = samples.clone();
            }
        }
        state.forecasters[r] = if samples.len() >= self.config.tail_min_observations {
            None
        } else {
            let mut f = new_forecaster(&self.config, resource);
            for &(t, v) in points {
                f.observe(t, v);
            }
            Some(Box::new(f))
        };
        usable
    }

    /// Drops what was learnt of the pods (namespace, name) `keep` does not
    /// accept (pods gone), and their resize history; compacts the tails of
    /// nodes left with many dead slots, and forgets nodes left with none.
    pub fn retain(&mut self, keep: impl Fn(&str, &str) -> bool) {
        let mut gone = Vec::new();
        for (ns, pods) in &mut self.pods {
            pods.retain(|pod, entry| {
                let k = keep(ns, pod);
                if !k {
                    gone.extend(entry.containers.iter().map(|&(_, id)| id));
                }
                k
            });
        }
        self.pods.retain(|_, pods| !pods.is_empty());
        let mut touched: Vec<u32> = Vec::new();
        for id in gone {
            if let Some((ni, _)) = self.containers.get(id as usize).and_then(|c| c.place) {
                touched.push(ni);
            }
            self.forget(id);
        }
        touched.sort_unstable();
        touched.dedup();
        for ni in touched {
            self.tidy_node(ni);
        }
    }

    /// Records an attempt to resize `plan`'s pod at `at`, and how it went.
    /// Every attempt counts for the rate limit.
    pub fn record_attempt(&mut self, plan: &PodPlan, at: TimestampMs, result: AttemptResult) {
        let pods = match self.pods.get_mut(plan.namespace.as_str()) {
            Some(p) => p,
            None => self.pods.entry(plan.namespace.clone()).or_default(),
        };
        let entry = match pods.get_mut(plan.name.as_str()) {
            Some(e) => e,
            None => pods.entry(plan.name.clone()).or_default(),
        };
        let failures = match (&result, &entry.attempt) {
            (AttemptResult::Failed(_), Some(a)) if matches!(a.result, AttemptResult::Failed(_)) => {
                a.failures + 1
            }
            (AttemptResult::Failed(_), _) => 1,
            _ => 0,
        };
        entry.attempt = Some(Attempt {
            at,
            targets: targets_of(plan),
            from_version: plan.resource_version.clone(),
            result,
            failures,
        });
    }

    /// The last resize attempted on pod `namespace/pod`.
    pub fn attempt(&self, namespace: &str, pod: &str) -> Option<&Attempt> {
        self.pods.get(namespace)?.get(pod)?.attempt.as_ref()
    }

    /// Where the profile of `resource` of container `container` of pod
    /// `namespace/pod` comes from at the next plan (on the node it was
    /// last observed on), if it has one yet.
    pub fn source(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        resource: Resource,
    ) -> Option<Source> {
        let id = self.id_of(namespace, pod, container)?;
        let r = resource_index(resource)?;
        let node = self.containers[id as usize]
            .place
            .and_then(|(n, _)| Some((n, self.nodes.get(n as usize)?.as_ref()?)));
        self.demand(node, Some(id), r, 0).ok().map(|(_, s)| s)
    }

    /// Plans every node, in parallel over nodes.
    pub fn plan_nodes(&self, nodes: &[NodeSnapshot], now: TimestampMs) -> Vec<NodePlan> {
        nodes
            .par_iter()
            .map_init(
                || {
                    let mut s = Solver::new();
                    // Parallel over nodes already.
                    s.set_parallel(false);
                    s
                },
                |solver, node| self.plan_node_with(node, now, solver),
            )
            .collect()
    }

    /// Plans one node.
    pub fn plan_node(&self, node: &NodeSnapshot, now: TimestampMs) -> NodePlan {
        self.plan_node_with(node, now, &mut Solver::new())
    }

    /// The demand profile of resource `r` of container `id` planned on
    /// `node` (its index and tails), and where it came from: its tail
    /// curve there once warm (the same profile at every step of the
    /// horizon), else its forecaster once it has enough samples; else the
    /// samples seen so far.
    fn demand(
        &self,
        node: Option<(u32, &NodeTails)>,
        id: Option<u32>,
        r: usize,
        now: TimestampMs,
    ) -> Result<(Demand, Source), u64> {
        let cfg = &self.config;
        let Some(state) = id.and_then(|id| self.containers.get(id as usize)) else {
            return Err(0);
        };
        let mut tail_samples = 0;
        if let (Some((ni, node)), Some((at, s))) = (node, state.place)
            && ni == at
        {
            let tails = &node.tails[r];
            let s = s as usize;
            tail_samples = tails.observations(s);
            if tail_samples >= cfg.tail_min_observations && s < tails.series_count() {
                let curve = tails.curve(tails.contended_expert(0), s);
                let steps = cfg.horizon_steps.max(1);
                let mut values = Vec::with_capacity(steps * curve.len());
                for _ in 0..steps {
                    values.extend_from_slice(curve);
                }
                let demand = Demand {
                    start: now,
                    step_ms: cfg.step_ms,
                    levels: self.tail_levels.clone(),
                    values,
                };
                return Ok((demand, Source::Tails));
            }
        }
        let Some(f) = state.forecasters[r].as_deref() else {
            return Err(tail_samples as u64);
        };
        if f.observations() < cfg.min_observations {
            return Err(f.observations());
        }
        let demand = if cfg.horizon_steps <= 1 {
            let mut values = vec![0.0; self.levels.len()];
            f.one_step(&self.levels, &mut values);
            Demand {
                start: now,
                step_ms: cfg.step_ms,
                levels: self.levels.clone(),
                values,
            }
        } else {
            match f.forecast(now, cfg.horizon_steps, &DEFAULT_LEVELS) {
                Ok(p) => Demand::from_profile(&p),
                Err(_) => return Err(f.observations()),
            }
        };
        Ok((demand, Source::Forecaster))
    }

    fn plan_node_with(
        &self,
        node: &NodeSnapshot,
        now: TimestampMs,
        solver: &mut Solver,
    ) -> NodePlan {
        let cfg = &self.config;
        let mut out = NodePlan {
            node: node.name.clone(),
            capacity_cpu: node.allocatable_cpu,
            capacity_memory: node.allocatable_memory,
            pods: Vec::new(),
            problems: node.problems.clone(),
            degraded: false,
        };
        let mut problem = Problem::new(now);
        problem.steps = cfg.horizon_steps.max(1);
        problem.units.insert(Resource::Cpu, cfg.cpu_unit);
        problem.units.insert(Resource::Memory, cfg.memory_unit);
        // Which (pod plan, container, resource) each workload resource is.
        let mut slots: Vec<(usize, usize)> = Vec::new();
        // Per pod plan, the index of its pod in the snapshot.
        let mut source: Vec<usize> = Vec::new();
        let mut used_cpu = 0.0;
        let mut used_memory = 0.0;
        // The node's tail curves, looked up once.
        let tails = self.node(&node.name);
        for (si, pod) in node.pods.iter().enumerate() {
            let fixed = |pod: &PodSnapshot, cpu: &mut f64, mem: &mut f64| {
                for c in &pod.containers {
                    *cpu += c.cpu.request.unwrap_or(0.0);
                    *mem += c.memory.request.unwrap_or(0.0);
                }
            };
            let Some(opt_in) = &pod.opt_in else {
                fixed(pod, &mut used_cpu, &mut used_memory);
                continue;
            };
            let policy_name = match opt_in {
                OptIn::Policy(n) => Some(n.clone()),
                OptIn::Label => None,
            };
            let mut plan = PodPlan {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                resource_version: pod.resource_version.clone(),
                policy: policy_name,
                mode: cfg.mode,
                containers: Vec::new(),
                action: Action::NoChange,
            };
            let policy = match &pod.policy {
                Ok(p) => p,
                Err(e) => {
                    fixed(pod, &mut used_cpu, &mut used_memory);
                    plan.action = Action::Skip(e.to_string());
                    out.pods.push(plan);
                    source.push(si);
                    continue;
                }
            };
            if cfg.mode == Mode::Enforce {
                plan.mode = policy.mode.unwrap_or(Mode::Enforce);
            }
            let mut learning = Vec::new();
            // What was learnt of the pod: one lookup, by borrowed names.
            let entry = self
                .pods
                .get(pod.namespace.as_str())
                .and_then(|m| m.get(pod.name.as_str()));
            for (ci, c) in pod.containers.iter().enumerate() {
                plan.containers.push(ContainerPlan {
                    name: c.name.clone(),
                    cpu: None,
                    memory: None,
                    reason: String::new(),
                });
                let id = entry.and_then(|e| {
                    e.containers
                        .iter()
                        .find(|(n, _)| *n == c.name)
                        .map(|&(_, id)| id)
                });
                let mut resources = Vec::new();
                for (resource, state) in [(Resource::Cpu, &c.cpu), (Resource::Memory, &c.memory)] {
                    let Some(request) = state.request else {
                        // No request to resize (and in-place resize may not
                        // change the pod's QoS class by adding one).
                        continue;
                    };
                    let r = resource_index(resource).unwrap_or(0);
                    let demand = match self.demand(tails, id, r, now) {
                        Ok((demand, _)) => demand,
                        Err(samples) => {
                            learning.push(format!(
                                "{}: {samples} of {} {resource} samples",
                                c.name, cfg.min_observations
                            ));
                            match resource {
                                Resource::Cpu => used_cpu += request,
                                _ => used_memory += request,
                            }
                            continue;
                        }
                    };
                    let (min, max) = match resource {
                        Resource::Cpu => (policy.min_cpu, policy.max_cpu),
                        _ => (policy.min_memory, policy.max_memory),
                    };
                    let mut guarantee = min.unwrap_or(0.0);
                    if resource == Resource::Memory {
                        guarantee = guarantee.max(match state.usage {
                            Some(u) => cfg.memory_floor(u),
                            // Usage unknown: the request is not lowered
                            // blind (see `target`), so the solver counts it
                            // whole.
                            None => request,
                        });
                    }
                    if let Some(max) = max {
                        guarantee = guarantee.min(max);
                    }
                    resources.push(WorkloadResource {
                        resource,
                        demand,
                        policy: ResourcePolicy {
                            guarantee,
                            limit: max,
                            priority: policy.priority,
                            weight: policy.weight,
                            slo_quantile: policy.slo_quantile,
                            change_cost: 0.0,
                            lendable: true,
                        },
                        current: Some(request),
                        current_tier: None,
                    });
                    slots.push((out.pods.len(), ci));
                }
                if !resources.is_empty() {
                    problem.workloads.push(Workload {
                        name: WorkloadId(format!("{}/{}/{}", pod.namespace, pod.name, c.name)),
                        pool: 0,
                        resources,
                    });
                }
            }
            if slots.last().is_none_or(|&(p, _)| p != out.pods.len()) {
                plan.action = Action::Skip(if learning.is_empty() {
                    "no container has a CPU or memory request to resize".to_string()
                } else {
                    format!("learning usage ({})", learning.join(", "))
                });
            }
            out.pods.push(plan);
            source.push(si);
        }
        out.capacity_cpu = (node.allocatable_cpu - used_cpu).max(0.0);
        out.capacity_memory = (node.allocatable_memory - used_memory).max(0.0);
        if problem.workloads.is_empty() {
            return out;
        }
        let capacity: prescient_solver::Amounts = [
            (Resource::Cpu, out.capacity_cpu),
            (Resource::Memory, out.capacity_memory),
        ]
        .into();
        problem.pools.push(Pool {
            name: node.name.clone(),
            parent: None,
            reserve: capacity.clone(),
            capacity,
            tiers: Vec::new(),
            spare: Default::default(),
        });
        let solution = match solver.solve(&problem) {
            Ok(s) => s,
            Err(e) => {
                out.problems.push(format!(
                    "node {}: the plan could not be made: {e}",
                    node.name
                ));
                for p in &mut out.pods {
                    if matches!(p.action, Action::NoChange) {
                        p.action = Action::Skip("the node's plan could not be made".into());
                    }
                }
                return out;
            }
        };
        out.degraded = solution.degraded();
        // Entries come in problem order: workloads, then their resources,
        // which is the order `slots` was filled in.
        for (entry, &(pi, ci)) in solution.entries.iter().zip(&slots) {
            let plan = &mut out.pods[pi];
            let Some(state) =
                node.pods[source[pi]]
                    .containers
                    .get(ci)
                    .map(|c| match entry.resource {
                        Resource::Cpu => c.cpu,
                        _ => c.memory,
                    })
            else {
                continue;
            };
            let qos = node.pods[source[pi]].qos;
            let (target, note) = self.target(entry.resource, state, entry.allocation, qos);
            let cp = &mut plan.containers[ci];
            let mut reason = entry.reason_text(&problem);
            if let Some(note) = note {
                reason.push_str(&format!(" ({note})"));
            }
            if entry.resource == Resource::Memory
                && target
                    .limit
                    .is_some_and(|l| l > target.request * ratio(state) + 1.0)
            {
                reason.push_str(" (limit kept: a memory limit is lowered only by a restart)");
            }
            if !cp.reason.is_empty() {
                cp.reason.push_str("; ");
            }
            cp.reason.push_str(&format!("{}: {reason}", entry.resource));
            match entry.resource {
                Resource::Cpu => cp.cpu = Some(target),
                _ => cp.memory = Some(target),
            }
        }
        for (plan, &si) in out.pods.iter_mut().zip(&source) {
            if !matches!(plan.action, Action::Skip(_)) {
                plan.action = self.decide(plan, &node.pods[si], now);
            }
        }
        out
    }

    /// The target of one resource of a pod of class `qos` for an
    /// allocation of `allocation`, and a note when it had to differ.
    fn target(
        &self,
        resource: Resource,
        state: ResourceState,
        allocation: f64,
        qos: QosClass,
    ) -> (Target, Option<&'static str>) {
        let current = state.request.unwrap_or(0.0);
        let round = |x: f64| match resource {
            Resource::Cpu => rounded_cpu(x),
            _ => rounded_memory(x),
        };
        let guaranteed = qos == QosClass::Guaranteed;
        let mut wanted = round(allocation);
        let mut note = None;
        if resource == Resource::Memory && wanted <= current {
            if state.usage.is_none() {
                // The floor under a memory request is its usage: unknown
                // usage, no floor, so no cut.
                wanted = current;
                note = Some("held at its request: its usage is unknown");
            } else if guaranteed && !state.restart_on_resize && wanted < current {
                // Requests must stay equal to limits, and a memory limit
                // is lowered only by a restart.
                wanted = current;
                note = Some(
                    "held at its request: the pod is Guaranteed (requests = limits) \
                     and its memory limit is lowered only by a restart",
                );
            }
        }
        let changed = (wanted - current).abs() > self.config.min_change_fraction * current;
        let request = if changed { wanted } else { current };
        let limit = state.limit.map(|l| {
            if !changed {
                return l;
            }
            if guaranteed {
                // A resize may not change the QoS class: a Guaranteed pod
                // keeps its limits equal to its requests.
                return request;
            }
            let new = round(request * ratio(state)).max(request);
            // Kubernetes 1.33 refuses to lower a memory limit in place
            // unless the container restarts.
            if resource == Resource::Memory && !state.restart_on_resize {
                new.max(l)
            } else {
                new
            }
        });
        let target = Target {
            current_request: current,
            request,
            current_limit: state.limit,
            limit,
            changed,
        };
        (target, note)
    }

    /// Whether `plan` of `pod` may be applied now, and if not, why.
    fn decide(&self, plan: &PodPlan, pod: &PodSnapshot, now: TimestampMs) -> Action {
        let cfg = &self.config;
        if plan.mode == Mode::Recommend {
            return Action::Recommend;
        }
        let targets = targets_of(plan);
        let changed = plan
            .containers
            .iter()
            .any(|c| c.cpu.is_some_and(|t| t.changed) || c.memory.is_some_and(|t| t.changed));
        let attempt = self.attempt(&pod.namespace, &pod.name);
        // While the watch still shows the pod as it was planned for the
        // last attempt, that attempt's answer is the newest word on it;
        // after, the pod's own conditions (set by the kubelet) are.
        let stale =
            attempt.filter(|a| a.from_version.is_some() && a.from_version == pod.resource_version);
        let pending = match stale {
            Some(a) => match &a.result {
                AttemptResult::Deferred(m) => Some(("Deferred".to_string(), m.clone())),
                AttemptResult::Infeasible(m) => Some(("Infeasible".to_string(), m.clone())),
                _ => None,
            },
            None => pod.resize.pending.clone(),
        };
        if let Some((reason, message)) = pending {
            // The kubelet holds the target the plan wants when the spec
            // already asks for it (no change planned) or when the last
            // attempt asked for exactly it.
            let same = !changed || attempt.is_some_and(|a| a.targets == targets);
            if same {
                let message = if message.is_empty() {
                    "no message".to_string()
                } else {
                    message
                };
                return match reason.as_str() {
                    "Infeasible" => Action::Infeasible(message),
                    "Deferred" => Action::Deferred(message),
                    // A reason this controller does not know: wait, as for
                    // Deferred, and say which.
                    other => Action::Deferred(format!("{other}: {message}")),
                };
            }
        }
        if !changed {
            return Action::NoChange;
        }
        if pod.resize.in_progress {
            return Action::Hold("a resize is in progress (PodResizeInProgress)".into());
        }
        let every = fmt_duration(cfg.min_resize_interval_ms);
        if let Some(at) = pod.last_resize
            && now - at < cfg.min_resize_interval_ms
        {
            return Action::Hold(format!(
                "resized {} ago (the pod's managedFields): at most one resize per pod every {every}",
                fmt_duration(now - at)
            ));
        }
        if let Some(a) = attempt {
            let since = now - a.at;
            match &a.result {
                AttemptResult::Failed(why) => {
                    let wait = cfg.failure_backoff(a.failures);
                    if since < wait {
                        return Action::Hold(format!(
                            "the last resize failed {} ago ({} in a row; {why}): tried again after {}",
                            fmt_duration(since),
                            a.failures,
                            fmt_duration(wait)
                        ));
                    }
                }
                _ if since < cfg.min_resize_interval_ms => {
                    return Action::Hold(format!(
                        "resized {} ago: at most one resize per pod every {every}",
                        fmt_duration(since)
                    ));
                }
                _ => {}
            }
        }
        for (c, snap) in plan.containers.iter().zip(&pod.containers) {
            if let Some(t) = c.memory.filter(|t| t.changed) {
                match snap.memory.usage {
                    Some(u) if t.request < cfg.memory_floor(u) => {
                        return Action::Hold(format!(
                            "container {}: memory {} would be under its usage {} plus headroom ({})",
                            c.name,
                            fmt_amount(Resource::Memory, t.request),
                            fmt_amount(Resource::Memory, u),
                            fmt_amount(Resource::Memory, cfg.memory_floor(u))
                        ));
                    }
                    None if t.request < t.current_request => {
                        return Action::Hold(format!(
                            "container {}: memory usage unknown: its request {} is not lowered",
                            c.name,
                            fmt_amount(Resource::Memory, t.current_request)
                        ));
                    }
                    _ => {}
                }
            }
            for (resource, t, state) in
                [("cpu", c.cpu, snap.cpu), ("memory", c.memory, snap.memory)]
            {
                if t.is_some_and(|t| t.changed) && state.restart_on_resize {
                    match &pod.pdb {
                        Some(pdb) if pdb.disruptions_allowed <= 0 => {
                            return Action::Hold(format!(
                                "resizing {resource} restarts container {} (resizePolicy RestartContainer) \
                                 and PodDisruptionBudget {} allows no disruption now",
                                c.name, pdb.name
                            ));
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Some(why) = qos_change(plan, pod) {
            return Action::Hold(why);
        }
        Action::Resize
    }
}

/// Why applying `plan` would change `pod`'s QoS class (which Kubernetes
/// refuses for an in-place resize), if it would.
fn qos_change(plan: &PodPlan, pod: &PodSnapshot) -> Option<String> {
    let after = |state: &ResourceState, t: Option<Target>| match t {
        Some(t) if t.changed => ResourceState {
            request: Some(t.request),
            limit: t.limit,
            ..*state
        },
        _ => *state,
    };
    let planned: Vec<(ResourceState, ResourceState)> = plan
        .containers
        .iter()
        .zip(&pod.containers)
        .map(|(c, s)| (after(&s.cpu, c.cpu), after(&s.memory, c.memory)))
        .collect();
    let shaped = |states: &[(ResourceState, ResourceState)]| {
        QosClass::of(states.iter().map(|(c, m)| (c, m))) == QosClass::Guaranteed
    };
    let before: Vec<(ResourceState, ResourceState)> =
        pod.containers.iter().map(|c| (c.cpu, c.memory)).collect();
    match pod.qos {
        QosClass::Guaranteed if !shaped(&planned) => Some(
            "the resize would make a Guaranteed pod Burstable (requests no longer equal to limits), \
             which Kubernetes refuses"
                .into(),
        ),
        // Init containers (not planned) may keep such a pod Burstable; a
        // change that could make it Guaranteed is not sent.
        QosClass::Burstable if shaped(&planned) && !shaped(&before) => Some(
            "the resize would set every request equal to its limit, making a Burstable pod \
             Guaranteed, which Kubernetes refuses"
                .into(),
        ),
        _ => None,
    }
}

/// A resource's limit/request ratio (1 without both).
fn ratio(state: ResourceState) -> f64 {
    match (state.request, state.limit) {
        (Some(r), Some(l)) if r > 0.0 => l / r,
        _ => 1.0,
    }
}

/// What a pod plan asks for, to compare with a refused one.
fn targets_of(plan: &PodPlan) -> Vec<ContainerRequests> {
    plan.containers
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.cpu.map(|t| t.request),
                c.memory.map(|t| t.request),
            )
        })
        .collect()
}

/// A forecaster of `resource` with the planner's step and models.
fn new_forecaster(config: &PlannerConfig, resource: Resource) -> SeriesForecaster {
    SeriesForecaster::new(
        SeriesContext {
            step_ms: config.step_ms,
            resource,
        },
        &config.models,
    )
}

/// Whether `state`'s tails of resource `r` (on its node) are warm.
fn warm_in(nodes: &[Option<NodeTails>], state: &ContainerState, r: usize, min: usize) -> bool {
    state
        .place
        .and_then(|(n, s)| {
            let node = nodes.get(n as usize)?.as_ref()?;
            Some(node.tails[r].observations(s as usize) >= min)
        })
        .unwrap_or(false)
}

/// Where node `name`'s tail steps start: a whole number of steps into a
/// tail step, from a hash of its name (FNV-1a), so that nodes spread their
/// samples evenly over the cycles of a tail step.
fn tail_phase(name: &str, tail_step_ms: i64, step_ms: i64) -> i64 {
    let steps = (tail_step_ms / step_ms.max(1)).max(1) as u64;
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % steps) as i64 * step_ms.max(1)
}

/// The most samples a planning tail keeps at `tail_step_ms`.
fn tail_window(tail_step_ms: i64) -> usize {
    TailConfig::for_planning(tail_step_ms)
        .experts
        .iter()
        .map(|e| match *e {
            Expert::Own { steps } | Expert::Decayed { steps, .. } => steps,
            Expert::PooledRatio { steps, .. } => steps,
        })
        .max()
        .unwrap_or(0)
}

/// A history's samples for the tails, oldest first: from the newest point
/// back, each one at least `step_ms` older than the one after it (the
/// cadence live samples are taken at), at most `window` of them.
/// Non-finite values are skipped.
fn tail_samples(points: &[(TimestampMs, f64)], step_ms: i64, window: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut next: Option<TimestampMs> = None;
    for &(t, v) in points.iter().rev() {
        if out.len() >= window {
            break;
        }
        if !v.is_finite() || next.is_some_and(|n| t > n) {
            continue;
        }
        out.push(v);
        next = Some(t.saturating_sub(step_ms));
    }
    out.reverse();
    out
}

/// "4m30s", "45s".
pub fn fmt_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PodPolicy;
    use crate::snapshot::{ContainerSnapshot, PdbState, ResizeStatus};
    use std::collections::HashSet;

    const GI: f64 = 1_073_741_824.0;
    const T0: TimestampMs = 1_700_000_000_000;

    fn pod(name: &str, cpu: (f64, f64), mem: (f64, f64), usage: (f64, f64)) -> PodSnapshot {
        PodSnapshot {
            namespace: "ns".into(),
            name: name.into(),
            resource_version: Some("7".into()),
            opt_in: Some(OptIn::Label),
            policy: Ok(PodPolicy::default()),
            containers: vec![ContainerSnapshot {
                name: "app".into(),
                cpu: ResourceState {
                    request: Some(cpu.0),
                    limit: Some(cpu.1),
                    restart_on_resize: false,
                    usage: Some(usage.0),
                },
                memory: ResourceState {
                    request: Some(mem.0),
                    limit: Some(mem.1),
                    restart_on_resize: false,
                    usage: Some(usage.1),
                },
            }],
            pdb: None,
            resize: ResizeStatus::default(),
            qos: QosClass::Burstable,
            last_resize: None,
        }
    }

    fn node(pods: Vec<PodSnapshot>) -> NodeSnapshot {
        NodeSnapshot {
            name: "n1".into(),
            allocatable_cpu: 8.0,
            allocatable_memory: 32.0 * GI,
            pods,
            problems: Vec::new(),
        }
    }

    /// A planner that has seen `n` minutes of the pods' usage (steady, with
    /// a little noise), the last sample at `T0`.
    fn learnt(mode: Mode, node: &NodeSnapshot, n: i64) -> Planner {
        let mut p = Planner::new(PlannerConfig {
            mode,
            ..Default::default()
        });
        for i in (0..n).rev() {
            let mut seen = node.clone();
            for pod in &mut seen.pods {
                for c in &mut pod.containers {
                    let wobble = 1.0 + 0.02 * ((i % 5) as f64 - 2.0);
                    c.cpu.usage = c.cpu.usage.map(|u| u * wobble);
                    c.memory.usage = c.memory.usage.map(|u| u * wobble);
                }
            }
            p.observe(&[seen], T0 - i * 60_000);
        }
        p
    }

    #[test]
    fn sizes_requests_to_usage_and_keeps_the_limit_ratio() {
        let n = node(vec![pod(
            "web",
            (2.0, 4.0),
            (4.0 * GI, 8.0 * GI),
            (0.5, GI),
        )]);
        let planner = learnt(Mode::Enforce, &n, 120);
        let plan = planner.plan_node(&n, T0 + 60_000);
        let p = &plan.pods[0];
        assert_eq!(p.action, Action::Resize, "{p:?}");
        let cpu = p.containers[0].cpu.unwrap();
        assert!(cpu.changed);
        assert!(cpu.request > 0.5 && cpu.request < 0.7, "{cpu:?}");
        assert!(
            (cpu.limit.unwrap() / cpu.request - 2.0).abs() < 0.02,
            "{cpu:?}"
        );
        let mem = p.containers[0].memory.unwrap();
        // Down from 4 GiB, never under usage plus headroom.
        assert!(mem.request < 2.0 * GI && mem.request >= GI * 1.1, "{mem:?}");
        // A memory limit is not lowered in place (resizePolicy NotRequired).
        assert_eq!(mem.limit, Some(8.0 * GI));
        assert!(
            p.containers[0].reason.contains("cpu:"),
            "{}",
            p.containers[0].reason
        );
    }

    #[test]
    fn capacity_is_what_unmanaged_pods_leave() {
        let mut other = pod("batch", (6.0, 6.0), (8.0 * GI, 8.0 * GI), (6.0, GI));
        other.opt_in = None;
        let n = node(vec![
            pod("web", (1.0, 1.0), (2.0 * GI, 2.0 * GI), (3.0, GI)),
            other,
        ]);
        let planner = learnt(Mode::Enforce, &n, 60);
        let plan = planner.plan_node(&n, T0 + 60_000);
        assert_eq!(plan.capacity_cpu, 2.0);
        assert_eq!(plan.pods.len(), 1, "unmanaged pods are not planned");
        let cpu = plan.pods[0].containers[0].cpu.unwrap();
        // Wants ~3 cores, gets what is left: 2.
        assert!((cpu.request - 2.0).abs() < 0.011, "{cpu:?}");
    }

    #[test]
    fn at_most_one_resize_per_interval() {
        let n = node(vec![pod(
            "web",
            (2.0, 2.0),
            (2.0 * GI, 2.0 * GI),
            (0.5, GI),
        )]);
        let mut planner = learnt(Mode::Enforce, &n, 60);
        let plan = planner.plan_node(&n, T0 - 60_000);
        planner.record_attempt(&plan.pods[0], T0 - 60_000, AttemptResult::Accepted);
        let plan = planner.plan_node(&n, T0 + 60_000);
        match &plan.pods[0].action {
            Action::Hold(why) => {
                assert!(why.contains("at most one resize per pod every 5m"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        let plan = planner.plan_node(&n, T0 + 4 * 60_000);
        assert_eq!(plan.pods[0].action, Action::Resize);
    }

    #[test]
    fn the_pods_own_last_resize_time_counts() {
        // A restarted planner knows nothing; the pod's managedFields do.
        let mut n = node(vec![pod(
            "web",
            (2.0, 2.0),
            (2.0 * GI, 2.0 * GI),
            (0.5, GI),
        )]);
        n.pods[0].last_resize = Some(T0 - 2 * 60_000);
        let planner = learnt(Mode::Enforce, &n, 60);
        match &planner.plan_node(&n, T0).pods[0].action {
            Action::Hold(why) => {
                assert!(
                    why.contains("resized 2m ago (the pod's managedFields)"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            planner.plan_node(&n, T0 + 3 * 60_000).pods[0].action,
            Action::Resize
        );
    }

    #[test]
    fn every_attempt_counts_and_failures_back_off() {
        let n = node(vec![pod(
            "web",
            (2.0, 2.0),
            (2.0 * GI, 2.0 * GI),
            (0.5, GI),
        )]);
        let mut planner = learnt(Mode::Enforce, &n, 60);
        let plan = planner.plan_node(&n, T0).pods[0].clone();
        // Deferred and infeasible attempts count like accepted ones.
        for result in [
            AttemptResult::Deferred("later".into()),
            AttemptResult::Infeasible("never".into()),
        ] {
            planner.record_attempt(&plan, T0, result);
            let mut moved = n.clone();
            // The watch shows a newer pod without conditions; the plan
            // wants another target (the spec was changed by someone).
            moved.pods[0].resource_version = Some("8".into());
            moved.pods[0].containers[0].cpu.request = Some(3.0);
            match &planner.plan_node(&moved, T0 + 60_000).pods[0].action {
                Action::Hold(why) => assert!(why.contains("at most one resize"), "{why}"),
                other => panic!("{other:?}"),
            }
        }
        // Failures: 2 min, then 4 min, then the 5 min cap.
        let cfg = planner.config().clone();
        assert_eq!(
            (1..=4).map(|f| cfg.failure_backoff(f)).collect::<Vec<_>>(),
            vec![120_000, 240_000, 300_000, 300_000]
        );
        let mut at = T0;
        for failures in 1..=3u32 {
            planner.record_attempt(&plan, at, AttemptResult::Failed("500".into()));
            assert_eq!(planner.attempt("ns", "web").unwrap().failures, failures);
            let wait = cfg.failure_backoff(failures);
            match &planner.plan_node(&n, at + wait - 60_000).pods[0].action {
                Action::Hold(why) => assert!(why.contains("the last resize failed"), "{why}"),
                other => panic!("{other:?}"),
            }
            assert_eq!(
                planner.plan_node(&n, at + wait).pods[0].action,
                Action::Resize
            );
            at += wait;
        }
        // A success resets the count.
        planner.record_attempt(&plan, at, AttemptResult::Accepted);
        planner.record_attempt(&plan, at, AttemptResult::Failed("500".into()));
        assert_eq!(planner.attempt("ns", "web").unwrap().failures, 1);
    }

    #[test]
    fn pending_conditions_on_the_pod_are_honoured() {
        // The attempt was answered plainly; the kubelet's condition shows
        // up later on the pod (a newer resourceVersion), with the spec
        // already at the target.
        let n = node(vec![pod(
            "web",
            (2.0, 2.0),
            (2.0 * GI, 2.0 * GI),
            (0.5, GI),
        )]);
        let mut planner = learnt(Mode::Enforce, &n, 60);
        let plan = planner.plan_node(&n, T0).pods[0].clone();
        assert_eq!(plan.action, Action::Resize);
        planner.record_attempt(&plan, T0, AttemptResult::Accepted);
        let mut later = n.clone();
        let p = &mut later.pods[0];
        p.resource_version = Some("8".into());
        let c = &plan.containers[0];
        p.containers[0].cpu.request = Some(c.cpu.unwrap().request);
        p.containers[0].cpu.limit = c.cpu.unwrap().limit;
        p.containers[0].memory.request = Some(c.memory.unwrap().request);
        p.containers[0].memory.limit = c.memory.unwrap().limit;
        assert_eq!(
            planner.plan_node(&later, T0 + 60_000).pods[0].action,
            Action::NoChange
        );
        for (reason, expect_infeasible) in [("Deferred", false), ("Infeasible", true)] {
            later.pods[0].resize.pending = Some((reason.into(), "node full".into()));
            // Long after the rate limit: still not sent again.
            for at in [T0 + 60_000, T0 + 60 * 60_000] {
                match (
                    &planner.plan_node(&later, at).pods[0].action,
                    expect_infeasible,
                ) {
                    (Action::Infeasible(m), true) | (Action::Deferred(m), false) => {
                        assert_eq!(m, "node full")
                    }
                    other => panic!("{reason}: {other:?}"),
                }
            }
        }
        // Still Infeasible, but usage grew and the plan wants another
        // target: that one is tried (once the rate limit allows).
        later.pods[0].containers[0].memory.usage = Some(1.5 * GI);
        let mut grown = learnt(Mode::Enforce, &later, 60);
        grown.record_attempt(&plan, T0, AttemptResult::Accepted);
        let pp = grown.plan_node(&later, T0 + 10 * 60_000).pods[0].clone();
        assert!(pp.containers[0].memory.unwrap().changed, "{pp:?}");
        assert_eq!(pp.action, Action::Resize, "a new target is tried");
    }

    #[test]
    fn the_answer_to_an_attempt_counts_until_the_watch_catches_up() {
        let n = node(vec![pod(
            "web",
            (2.0, 2.0),
            (2.0 * GI, 2.0 * GI),
            (0.5, GI),
        )]);
        let mut planner = learnt(Mode::Enforce, &n, 60);
        let plan = planner.plan_node(&n, T0).pods[0].clone();
        planner.record_attempt(&plan, T0, AttemptResult::Deferred("wait".into()));
        // The watch still shows resourceVersion 7 (planned from): the
        // answer says Deferred, and the same target is not sent again.
        match &planner.plan_node(&n, T0 + 60 * 60_000).pods[0].action {
            Action::Deferred(m) => assert_eq!(m, "wait"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn memory_is_never_lowered_when_its_usage_is_unknown() {
        let mut p = pod("web", (2.0, 4.0), (4.0 * GI, 8.0 * GI), (0.5, GI));
        let n = node(vec![p.clone()]);
        let planner = learnt(Mode::Enforce, &n, 60);
        // Usage of memory unknown this cycle (the metrics had none).
        p.containers[0].memory.usage = None;
        let plan = planner.plan_node(&node(vec![p]), T0 + 60_000);
        let pp = &plan.pods[0];
        let mem = pp.containers[0].memory.unwrap();
        assert!(!mem.changed, "{mem:?}");
        assert_eq!((mem.request, mem.limit), (4.0 * GI, Some(8.0 * GI)));
        assert!(
            pp.containers[0].reason.contains("its usage is unknown"),
            "{}",
            pp.containers[0].reason
        );
        // CPU still moves.
        assert!(pp.containers[0].cpu.unwrap().changed);
        assert_eq!(pp.action, Action::Resize);
    }

    #[test]
    fn guaranteed_pods_keep_requests_equal_to_limits() {
        let mut p = pod("db", (2.0, 2.0), (4.0 * GI, 4.0 * GI), (0.5, GI));
        p.qos = QosClass::Guaranteed;
        let n = node(vec![p.clone()]);
        let planner = learnt(Mode::Enforce, &n, 60);
        let plan = planner.plan_node(&n, T0 + 60_000);
        let pp = &plan.pods[0];
        assert_eq!(pp.action, Action::Resize, "{pp:?}");
        let cpu = pp.containers[0].cpu.unwrap();
        assert!(cpu.changed && cpu.request < 1.0, "{cpu:?}");
        assert_eq!(cpu.limit, Some(cpu.request));
        // Memory cannot go down without lowering its limit, which needs a
        // restart: held.
        let mem = pp.containers[0].memory.unwrap();
        assert!(!mem.changed);
        assert_eq!((mem.request, mem.limit), (4.0 * GI, Some(4.0 * GI)));
        assert!(pp.containers[0].reason.contains("Guaranteed"));
        // With RestartContainer for memory, both go down together.
        p.containers[0].memory.restart_on_resize = true;
        let n = node(vec![p.clone()]);
        let mem = planner.plan_node(&n, T0 + 60_000).pods[0].containers[0]
            .memory
            .unwrap();
        assert!(mem.changed && mem.request < 2.0 * GI, "{mem:?}");
        assert_eq!(mem.limit, Some(mem.request));
        // Usage up: both go up together.
        let mut hot = p.clone();
        hot.containers[0].cpu.usage = Some(3.0);
        let planner = learnt(Mode::Enforce, &node(vec![hot.clone()]), 60);
        let cpu = planner.plan_node(&node(vec![hot]), T0 + 60_000).pods[0].containers[0]
            .cpu
            .unwrap();
        assert!(cpu.request > 2.9, "{cpu:?}");
        assert_eq!(cpu.limit, Some(cpu.request));
    }

    #[test]
    fn a_resize_that_would_change_the_qos_class_is_held() {
        // Burstable only by its CPU (limit 4, request 2); memory already
        // request = limit. A plan making CPU request = limit would make it
        // Guaranteed.
        let p = pod("web", (2.0, 4.0), (4.0 * GI, 4.0 * GI), (0.5, 3.5 * GI));
        let mut plan = PodPlan {
            namespace: "ns".into(),
            name: "web".into(),
            resource_version: Some("7".into()),
            policy: None,
            mode: Mode::Enforce,
            containers: vec![ContainerPlan {
                name: "app".into(),
                cpu: Some(Target {
                    current_request: 2.0,
                    request: 3.0,
                    current_limit: Some(4.0),
                    limit: Some(3.0),
                    changed: true,
                }),
                memory: None,
                reason: String::new(),
            }],
            action: Action::NoChange,
        };
        let why = qos_change(&plan, &p).unwrap();
        assert!(why.contains("making a Burstable pod Guaranteed"), "{why}");
        plan.containers[0].cpu.as_mut().unwrap().limit = Some(6.0);
        assert_eq!(qos_change(&plan, &p), None);
        let mut g = pod("db", (2.0, 2.0), (GI, GI), (0.5, 0.5 * GI));
        g.qos = QosClass::Guaranteed;
        let why = qos_change(&plan, &g).unwrap();
        assert!(why.contains("Guaranteed pod Burstable"), "{why}");
    }

    #[test]
    fn memory_never_under_usage_plus_headroom() {
        let mut p = pod("web", (1.0, 1.0), (4.0 * GI, 4.0 * GI), (0.5, 3.0 * GI));
        // A cap under usage: the plan obeys it, the resize does not happen.
        p.policy = Ok(PodPolicy {
            max_memory: Some(GI),
            ..Default::default()
        });
        let n = node(vec![p]);
        let planner = learnt(Mode::Enforce, &n, 60);
        let plan = planner.plan_node(&n, T0 + 60_000);
        match &plan.pods[0].action {
            Action::Hold(why) => assert!(why.contains("under its usage"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn restart_needs_a_disruption_budget() {
        let mut p = pod("db", (2.0, 2.0), (2.0 * GI, 2.0 * GI), (0.5, GI));
        p.containers[0].cpu.restart_on_resize = true;
        p.pdb = Some(PdbState {
            name: "db-pdb".into(),
            disruptions_allowed: 0,
        });
        let mut n = node(vec![p]);
        let planner = learnt(Mode::Enforce, &n, 60);
        match &planner.plan_node(&n, T0 + 60_000).pods[0].action {
            Action::Hold(why) => {
                assert!(why.contains("RestartContainer"), "{why}");
                assert!(why.contains("db-pdb allows no disruption"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        n.pods[0].pdb.as_mut().unwrap().disruptions_allowed = 1;
        assert_eq!(
            planner.plan_node(&n, T0 + 60_000).pods[0].action,
            Action::Resize
        );
    }

    #[test]
    fn bad_policy_and_learning_pods_are_skipped_and_counted() {
        let mut bad = pod("bad", (1.0, 1.0), (GI, GI), (0.5, GI));
        bad.policy = PodPolicy::resolve(
            "ns",
            "bad",
            None,
            &[("prescient.io/slo-quantile".to_string(), "2".to_string())].into(),
        );
        let n = node(vec![bad.clone()]);
        let planner = Planner::new(PlannerConfig::default());
        let plan = planner.plan_node(&n, T0);
        match &plan.pods[0].action {
            Action::Skip(why) => assert!(why.contains("prescient.io/slo-quantile"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(plan.capacity_cpu, 7.0);
        let n = node(vec![pod("new", (1.0, 1.0), (GI, GI), (0.5, GI))]);
        match &planner.plan_node(&n, T0).pods[0].action {
            Action::Skip(why) => assert!(why.contains("learning usage"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn recommend_mode_and_infeasible_targets() {
        let n = node(vec![pod(
            "web",
            (2.0, 2.0),
            (2.0 * GI, 2.0 * GI),
            (0.5, GI),
        )]);
        let planner = learnt(Mode::Recommend, &n, 60);
        assert_eq!(planner.plan_node(&n, T0).pods[0].action, Action::Recommend);
        let mut planner = learnt(Mode::Enforce, &n, 60);
        let plan = planner.plan_node(&n, T0);
        planner.record_attempt(
            &plan.pods[0],
            T0,
            AttemptResult::Infeasible("no room".into()),
        );
        // Long past the rate limit, the same target is not tried again.
        match &planner.plan_node(&n, T0 + 60 * 60_000).pods[0].action {
            Action::Infeasible(why) => assert_eq!(why, "no room"),
            other => panic!("{other:?}"),
        }
    }

    /// `node` with the pods' CPU usage set to `cpu` and memory to 1 GiB.
    fn using(node: &NodeSnapshot, cpu: f64) -> NodeSnapshot {
        let mut n = node.clone();
        for p in &mut n.pods {
            for c in &mut p.containers {
                c.cpu.usage = Some(cpu);
                c.memory.usage = Some(GI);
            }
        }
        n
    }

    /// Container `app` of pod `pod`'s CPU demand as `planner` would plan
    /// it on `node`.
    fn cpu_demand(planner: &Planner, node: &NodeSnapshot, pod: &str) -> Option<(Demand, Source)> {
        let id = planner.id_of("ns", pod, "app");
        planner.demand(planner.node(&node.name), id, 0, T0).ok()
    }

    #[test]
    fn a_containers_profile_comes_from_its_tails_once_warm_and_from_its_forecaster_before() {
        let n = node(vec![pod(
            "web",
            (2.0, 4.0),
            (2.0 * GI, 4.0 * GI),
            (0.5, GI),
        )]);
        let mut planner = Planner::new(PlannerConfig::default());
        // The tails take a sample every 5 minutes; the forecaster every
        // minute.
        let cpu = |minute: i64| 0.4 + 0.05 * (minute % 7) as f64;
        let mut reference =
            HostTails::new(TailConfig::for_planning(300_000), 1, 300_000, 0, &[0.95]);
        let mut feeds = Vec::new();
        let mut minute = 0;
        while reference.observations(0) < 12 {
            let ts = T0 + minute * 60_000;
            planner.observe(&[using(&n, cpu(minute))], ts);
            if planner.node("n1").unwrap().1.last_fed == Some(ts) {
                reference.observe(ts, &[0], &[cpu(minute)]);
                feeds.push(minute);
            }
            let (demand, source) = match cpu_demand(&planner, &n, "web") {
                Some(d) => d,
                None => {
                    assert!(minute < 2, "minute {minute}: planned from 3 samples");
                    minute += 1;
                    continue;
                }
            };
            minute += 1;
            if reference.observations(0) < 12 {
                // 11 tail samples or fewer: the forecaster.
                assert_eq!(source, Source::Forecaster, "minute {minute}");
                assert_eq!(demand.levels.len(), DEFAULT_LEVELS.len());
                assert_eq!(planner.forecaster_count(), 1);
            } else {
                // The 12th: the tail curve, exactly, and the forecaster is
                // gone.
                assert_eq!(source, Source::Tails);
                reference.refresh_curves(&[0]);
                assert_eq!(demand.values, reference.curve(0, 0).to_vec());
                assert_eq!(&demand.levels[..], &TailConfig::levels()[..]);
                assert_eq!(planner.forecaster_count(), 0);
            }
        }
        // The first sample at once, then one every 5 minutes, in the
        // node's own phase.
        assert_eq!(feeds[0], 0);
        assert!(
            feeds.windows(2).skip(1).all(|w| w[1] - w[0] == 5),
            "{feeds:?}"
        );
        let end = minute;
        assert_eq!(
            planner.source("ns", "web", "app", Resource::Memory),
            Some(Source::Tails)
        );
        // Over a longer horizon the curve is every step's profile.
        let mut long = Planner::new(PlannerConfig {
            horizon_steps: 3,
            ..Default::default()
        });
        for minute in 0..end {
            long.observe(&[using(&n, cpu(minute))], T0 + minute * 60_000);
        }
        let (demand, source) = cpu_demand(&long, &n, "web").unwrap();
        assert_eq!(source, Source::Tails);
        assert_eq!(demand.values, reference.curve(0, 0).repeat(3));
        // The plan follows the tails: the SLO quantile of what was seen.
        let cp = &planner.plan_node(&using(&n, 0.5), T0 + end * 60_000).pods[0].containers[0];
        let request = cp.cpu.unwrap().request;
        assert!((0.65..=0.8).contains(&request), "{cp:?}");
    }

    #[test]
    fn nodes_take_their_tail_samples_in_different_cycles() {
        // 1,000 nodes over the 5 one-minute cycles of a tail step.
        let mut per_phase = [0; 5];
        for i in 0..1000 {
            let phase = tail_phase(&format!("node-{i}"), 300_000, 60_000);
            per_phase[(phase / 60_000) as usize] += 1;
        }
        assert!(
            per_phase.iter().all(|&n| (150..=250).contains(&n)),
            "{per_phase:?}"
        );
        // Cycles a little early or late still take one sample a step.
        let mut n = NodeTails::new("n", 300_000, 60_000);
        n.phase_ms = 0;
        let mut taken = Vec::new();
        for (k, jitter) in (0..30).zip([0, 2_000, -3_000, 1_000, -1_000].into_iter().cycle()) {
            let ts = T0 + k * 60_000 + jitter;
            if n.due(ts, 300_000, 60_000) {
                n.last_fed = Some(ts);
                taken.push(k);
            }
        }
        assert_eq!(taken.len(), 7, "{taken:?}");
        assert!(
            taken.windows(2).skip(1).all(|w| w[1] - w[0] == 5),
            "{taken:?}"
        );
    }

    #[test]
    fn history_warms_the_tails_at_once_or_trains_the_forecaster() {
        let n = node(vec![
            pod("old", (2.0, 4.0), (2.0 * GI, 4.0 * GI), (0.5, GI)),
            pod("young", (2.0, 4.0), (2.0 * GI, 4.0 * GI), (0.5, GI)),
        ]);
        let mut planner = Planner::new(PlannerConfig::default());
        let history = |minutes: i64| -> Vec<(TimestampMs, f64)> {
            (1..=minutes)
                .rev()
                .map(|m| (T0 - m * 60_000, 1.5))
                .collect()
        };
        let key = |pod: &str| ("ns".to_string(), pod.to_string(), "app".to_string());
        // Read before the pods are seen on a node (as the controller does).
        assert_eq!(
            planner.learn_history(&key("old"), Resource::Cpu, &history(120)),
            120
        );
        assert_eq!(
            planner.learn_history(&key("young"), Resource::Cpu, &history(30)),
            30
        );
        assert_eq!(
            planner.learn_history(&key("young"), Resource::Cpu, &[(T0, f64::NAN)]),
            0
        );
        planner.observe(std::slice::from_ref(&n), T0);
        // Two hours: 24 tail samples, planned from the tails at once; the
        // live sample (0.5) is one of 25, the newest.
        let (demand, source) = cpu_demand(&planner, &n, "old").unwrap();
        assert_eq!(source, Source::Tails);
        let median = demand.levels.iter().position(|&l| l >= 0.5).unwrap();
        assert_eq!(demand.values[median], 1.5, "{demand:?}");
        assert_eq!(demand.values[0], 0.5, "{demand:?}");
        // Half an hour: 6 samples, too few; its forecaster learnt it all.
        let (demand, source) = cpu_demand(&planner, &n, "young").unwrap();
        assert_eq!(source, Source::Forecaster);
        assert!(demand.values[3] > 1.0, "{demand:?}");
        // Read again once placed: replaces what the tails learnt.
        planner.learn_history(&key("young"), Resource::Cpu, &history(120));
        assert_eq!(cpu_demand(&planner, &n, "young").unwrap().1, Source::Tails);
        assert_eq!(tail_samples(&history(120), 300_000, 240).len(), 24);
        assert_eq!(tail_samples(&history(120), 300_000, 10).len(), 10);
    }

    #[test]
    fn churn_keeps_a_nodes_tails_bounded() {
        let pods = |round: usize| -> Vec<PodSnapshot> {
            // Ten pods live at a time: five stay, five are new each round.
            (0..5)
                .map(|i| format!("stay-{i}"))
                .chain((0..5).map(|i| format!("churn-{round}-{i}")))
                .map(|name| pod(&name, (1.0, 2.0), (GI, 2.0 * GI), (0.5, GI)))
                .collect()
        };
        let mut planner = Planner::new(PlannerConfig::default());
        let mut most = 0;
        for round in 0..200 {
            let n = node(pods(round));
            let live: HashSet<String> = n.pods.iter().map(|p| p.name.clone()).collect();
            planner.observe(&[n], T0 + round as i64 * 300_000);
            planner.retain(|_, pod| live.contains(pod));
            let (live, all) = planner.node_slots("n1").unwrap();
            assert_eq!(live, 10);
            most = most.max(all);
        }
        assert!(most <= 15, "{most} slots for 10 containers");
        assert_eq!(planner.series_count(), 10);
        // The pods that stayed kept what they learnt through compactions
        // and slot reuse: 200 samples (the window keeps 240).
        let n = node(pods(200));
        let id = planner.id_of("ns", "stay-0", "app").unwrap();
        let (ni, s) = planner.containers[id as usize].place.unwrap();
        let nt = planner.nodes[ni as usize].as_ref().unwrap();
        assert_eq!(nt.tails[0].observations(s as usize), 200);
        assert_eq!(cpu_demand(&planner, &n, "stay-0").unwrap().1, Source::Tails);
        // More dead than live: compacted down to the live ones.
        let few = node(pods(200).into_iter().take(2).collect());
        planner.observe(&[few], T0 + 201 * 300_000);
        planner.retain(|_, pod| pod == "stay-0" || pod == "stay-1");
        assert_eq!(planner.node_slots("n1"), Some((2, 2)));
        // A pod recreated with its name on another node takes what it
        // learnt along; the node it left, now empty, is forgotten.
        let mut other = node(vec![pod("stay-0", (1.0, 2.0), (GI, 2.0 * GI), (0.5, GI))]);
        other.name = "n2".into();
        let mut rest = node(vec![pod("stay-1", (1.0, 2.0), (GI, 2.0 * GI), (0.5, GI))]);
        planner.observe(&[other.clone(), rest.clone()], T0 + 202 * 300_000);
        // (A few dead slots are left for reuse.)
        assert_eq!(planner.node_slots("n1"), Some((1, 2)));
        assert_eq!(planner.node_slots("n2"), Some((1, 1)));
        assert_eq!(
            cpu_demand(&planner, &other, "stay-0").unwrap().1,
            Source::Tails
        );
        assert_eq!(planner.forecaster_count(), 0);
        rest.pods.clear();
        planner.observe(&[other, rest], T0 + 203 * 300_000);
        planner.retain(|_, pod| pod == "stay-0");
        assert_eq!(planner.node_slots("n1"), None);
        assert_eq!(planner.series_count(), 1);
    }

    #[test]
    fn parallel_plans_equal_serial_ones() {
        let nodes: Vec<NodeSnapshot> = (0..6)
            .map(|i| {
                let mut n = node(vec![pod(
                    &format!("p{i}"),
                    (1.0, 2.0),
                    (GI, 2.0 * GI),
                    (0.1 * (i + 1) as f64, 0.3 * GI),
                )]);
                n.name = format!("n{i}");
                n
            })
            .collect();
        let mut planner = Planner::new(PlannerConfig::default());
        for t in 0..10 {
            planner.observe(&nodes, T0 + t * 60_000);
        }
        let all = planner.plan_nodes(&nodes, T0 + 600_000);
        for (n, p) in nodes.iter().zip(&all) {
            assert_eq!(&planner.plan_node(n, T0 + 600_000), p);
        }
        assert_eq!(planner.series_count(), 6);
        planner.retain(|_, pod| pod != "p0");
        assert_eq!(planner.series_count(), 5);
    }
}
