//! [`Controller`]: watches pods, nodes, PodDisruptionBudgets and
//! PrescientPolicies into an in-memory [`ClusterState`]; every interval
//! ([`Controller::cycle`]) reads usage, plans each node with the
//! [`Planner`], and then, per pod, resizes it in place (enforce mode:
//! `PATCH pods/{name}/resize`, then the pod's resize conditions are read),
//! or writes the recommendation into its PrescientPolicy's status
//! (recommend mode). API errors are reported with the pod and status and
//! never stop the loop.
//!
//! State: everything but what the planner learnt of usage (tail curves,
//! forecasters while they are cold) and the resize history is re-read
//! from the API server (the watches), so a restarted controller only
//! relearns usage (from Prometheus history when it has it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use prescient_core::TimestampMs;
use serde_json::json;

use crate::crd::{PrescientPolicy, Recommendation};
use crate::plan::{Action, AttemptResult, NodePlan, Planner, PlannerConfig, PodPlan};
use crate::quantity::{format_cpu, format_memory};
use crate::snapshot::{
    FIELD_MANAGER, NodeSnapshot, ResizeStatus, SnapshotContext, UsageMap, WatchedPod,
    node_snapshot_in, policy_for, trim,
};
use crate::usage::{
    HistoryConfig, UsageSource, fill_history_query, metrics_api_usage, prometheus_history,
    prometheus_usage,
};
use rayon::prelude::*;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The planner's settings (mode, step = interval, resize interval...).
    pub planner: PlannerConfig,
    /// Time between cycles.
    pub interval: Duration,
    /// Plan only this node (sharding: one controller per node or group).
    pub node: Option<String>,
    /// Where usage comes from.
    pub usage: UsageSource,
    /// How many times a resize answered 409 Conflict is retried after a
    /// fresh GET.
    pub conflict_retries: u32,
    /// The name Events are reported under.
    pub reporter: String,
    /// A file whose content is set to the time of each finished cycle, for
    /// a liveness probe ([`check_health`]).
    pub health_file: Option<std::path::PathBuf>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            planner: PlannerConfig::default(),
            interval: Duration::from_secs(60),
            node: None,
            usage: UsageSource::MetricsApi,
            conflict_retries: 3,
            reporter: "prescient-kube".into(),
            health_file: None,
        }
    }
}

/// Objects of one kind, by (namespace, name), fed by a watcher.
#[derive(Debug)]
pub struct Store<K> {
    items: BTreeMap<(String, String), K>,
    /// Objects of a relist in progress (`Init` .. `InitDone`).
    relist: Option<BTreeMap<(String, String), K>>,
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            items: BTreeMap::new(),
            relist: None,
        }
    }
}

fn key_of<K: kube::Resource>(k: &K) -> (String, String) {
    let m = k.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

impl<K: kube::Resource + Clone> Store<K> {
    /// Applies one watcher event: a relist replaces everything at its end.
    pub fn apply(&mut self, event: Event<K>) {
        match event {
            Event::Apply(k) => {
                self.items.insert(key_of(&k), k);
            }
            Event::Delete(k) => {
                self.items.remove(&key_of(&k));
            }
            Event::Init => self.relist = Some(BTreeMap::new()),
            Event::InitApply(k) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key_of(&k), k);
            }
            Event::InitDone => {
                if let Some(items) = self.relist.take() {
                    self.items = items;
                }
            }
        }
    }

    /// Adds or replaces one object.
    pub fn insert(&mut self, k: K) {
        self.items.insert(key_of(&k), k);
    }

    /// The object `namespace/name` ("" namespace for cluster objects).
    pub fn get(&self, namespace: &str, name: &str) -> Option<&K> {
        self.items.get(&(namespace.to_string(), name.to_string()))
    }

    /// Every object.
    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.items.values()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// What the watches have seen.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// Pods.
    pub pods: Store<WatchedPod>,
    /// Nodes.
    pub nodes: Store<Node>,
    /// PodDisruptionBudgets.
    pub pdbs: Store<PodDisruptionBudget>,
    /// PrescientPolicies.
    pub policies: Store<PrescientPolicy>,
    /// Watch errors since the last cycle (each watch retries with backoff);
    /// a cycle reports them as problems.
    pub watch_errors: Vec<String>,
}

impl ClusterState {
    /// The nodes planned: all, or only `node` (sharding).
    fn planned_nodes<'a>(&'a self, node: Option<&'a str>) -> impl Iterator<Item = &'a Node> {
        self.nodes
            .iter()
            .filter(move |n| node.is_none_or(|want| n.metadata.name.as_deref() == Some(want)))
    }

    /// The pods bound to the planned nodes, by node name.
    fn pods_by_node<'a>(&'a self, node: Option<&'a str>) -> HashMap<&'a str, Vec<&'a WatchedPod>> {
        let mut by_node: HashMap<&str, Vec<&WatchedPod>> = self
            .planned_nodes(node)
            .map(|n| (n.metadata.name.as_deref().unwrap_or(""), Vec::new()))
            .collect();
        for p in self.pods.iter() {
            if let Some(list) = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| by_node.get_mut(n))
            {
                list.push(p);
            }
        }
        by_node
    }

    /// The managed pods (namespace, name) of the planned nodes: labelled
    /// `prescient.io/managed=true` or selected by a PrescientPolicy.
    pub fn managed_pods(&self, node: Option<&str>) -> BTreeSet<(String, String)> {
        let policies: Vec<&PrescientPolicy> = self.policies.iter().collect();
        self.pods_by_node(node)
            .into_values()
            .flatten()
            .filter(|p| {
                let labelled = p
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::policy::MANAGED_LABEL))
                    .is_some_and(|v| v == "true");
                labelled || policy_for(p, &policies).is_some()
            })
            .map(key_of)
            .collect()
    }

    /// What a cycle plans from: the snapshot of each planned node, from the
    /// watched objects and `usage`, built in parallel over nodes; and the
    /// problems met (each naming its node).
    pub fn snapshots(
        &self,
        node: Option<&str>,
        usage: &UsageMap,
    ) -> (Vec<NodeSnapshot>, Vec<String>) {
        let by_node = self.pods_by_node(node);
        let pdbs: Vec<&PodDisruptionBudget> = self.pdbs.iter().collect();
        let policies: Vec<&PrescientPolicy> = self.policies.iter().collect();
        let nodes: Vec<&Node> = self.planned_nodes(node).collect();
        // Indexed once for every node.
        let context = SnapshotContext::new(&pdbs, &policies, usage);
        let results: Vec<Result<NodeSnapshot, String>> = nodes
            .par_iter()
            .map(|n| {
                let pods = by_node
                    .get(n.metadata.name.as_deref().unwrap_or(""))
                    .map_or(&[][..], Vec::as_slice);
                node_snapshot_in(n, pods, &context)
            })
            .collect();
        let mut snapshots = Vec::with_capacity(results.len());
        let mut problems = Vec::new();
        for r in results {
            match r {
                Ok(s) => snapshots.push(s),
                Err(e) => problems.push(e),
            }
        }
        (snapshots, problems)
    }
}

/// What became of one pod in a cycle.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Resized: the API server took the new requests.
    Resized,
    /// The kubelet deferred the resize (`PodResizePending`/`Deferred`, in
    /// the answer to the PATCH or later on the pod): it actuates it when
    /// the node has room; the same target is not sent again.
    Deferred(String),
    /// The kubelet cannot fit it (`PodResizePending`/`Infeasible`, in the
    /// answer or later on the pod): not tried again for the same target.
    Infeasible(String),
    /// The recommendation was written (or logged, without a policy).
    Recommended,
    /// Requests are where the plan wants them.
    Unchanged,
    /// A change was planned but held back: why.
    Held(String),
    /// Not planned: why.
    Skipped(String),
    /// The API call failed: what and the status.
    Failed(String),
}

/// One pod's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct PodOutcome {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// What happened.
    pub outcome: Outcome,
}

/// What one cycle did.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    /// The plans, per node.
    pub nodes: Vec<NodePlan>,
    /// Per managed pod, what happened.
    pub outcomes: Vec<PodOutcome>,
    /// Problems met (usage, nodes, status writes), each naming its object.
    pub problems: Vec<String>,
}

impl CycleReport {
    /// The outcome of pod `namespace/pod`.
    pub fn outcome(&self, namespace: &str, pod: &str) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|o| o.namespace == namespace && o.pod == pod)
            .map(|o| &o.outcome)
    }

    /// The plan of pod `namespace/pod`.
    pub fn plan(&self, namespace: &str, pod: &str) -> Option<&PodPlan> {
        self.nodes
            .iter()
            .flat_map(|n| &n.pods)
            .find(|p| p.namespace == namespace && p.name == pod)
    }
}

/// The controller.
pub struct Controller {
    client: Client,
    config: ControllerConfig,
    state: Arc<Mutex<ClusterState>>,
    planner: Planner,
    recorder: Recorder,
    /// Per policy (namespace, name): the recommendation keys written last,
    /// so that those of pods gone are removed.
    written: HashMap<(String, String), BTreeSet<String>>,
    /// Per pod: the pending condition last reported by an Event (reason,
    /// message), so that a condition is reported once, not every cycle.
    reported: HashMap<(String, String), (String, String)>,
    /// Per managed pod (Prometheus only): whether its history was read.
    history: HashMap<(String, String), HistoryState>,
}

/// Whether a pod's history was read from Prometheus.
#[derive(Debug, Clone, Copy, PartialEq)]
enum HistoryState {
    /// Read (or found empty: a new pod has none).
    Loaded,
    /// The last read failed: `failures` in a row, tried again at `next_try`.
    Failed {
        failures: u32,
        next_try: TimestampMs,
    },
}

fn lock(state: &Mutex<ClusterState>) -> MutexGuard<'_, ClusterState> {
    // A panic elsewhere while holding the lock leaves plain data behind,
    // still usable.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl Controller {
    /// A controller talking to the API server through `client`.
    pub fn new(client: Client, mut config: ControllerConfig) -> Self {
        config.planner.step_ms = i64::try_from(config.interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: config.reporter.clone(),
                instance: std::env::var("POD_NAME").ok(),
            },
        );
        Controller {
            planner: Planner::new(config.planner.clone()),
            client,
            config,
            state: Arc::default(),
            recorder,
            written: HashMap::new(),
            reported: HashMap::new(),
            history: HashMap::new(),
        }
    }

    /// The watched state (shared with the watches).
    pub fn state(&self) -> Arc<Mutex<ClusterState>> {
        self.state.clone()
    }

    /// The planner.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The watches of pods (of the node, when sharded), nodes, PDBs and
    /// policies, feeding [`Controller::state`]; runs until dropped.
    /// Watch errors are logged and retried with backoff.
    pub fn watches(&self) -> impl Future<Output = ()> + Send + 'static {
        let client = self.client.clone();
        let state = self.state.clone();
        let node = self.config.node.clone();
        async move {
            let mut pod_cfg = watcher::Config::default();
            let mut node_cfg = watcher::Config::default();
            if let Some(n) = &node {
                pod_cfg = pod_cfg.fields(&format!("spec.nodeName={n}"));
                node_cfg = node_cfg.fields(&format!("metadata.name={n}"));
            }
            let pods = feed(
                Api::<WatchedPod>::all(client.clone()),
                pod_cfg,
                state.clone(),
                |s| &mut s.pods,
                trim,
            );
            let nodes = feed(
                Api::<Node>::all(client.clone()),
                node_cfg,
                state.clone(),
                |s| &mut s.nodes,
                |_| {},
            );
            let pdbs = feed(
                Api::<PodDisruptionBudget>::all(client.clone()),
                watcher::Config::default(),
                state.clone(),
                |s| &mut s.pdbs,
                |_| {},
            );
            let policies = feed(
                Api::<PrescientPolicy>::all(client),
                watcher::Config::default(),
                state,
                |s| &mut s.policies,
                |_| {},
            );
            futures::join!(pods, nodes, pdbs, policies);
        }
    }

    /// Runs the watches and a cycle every interval until `shutdown`
    /// completes.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        let watches = tokio::spawn(self.watches());
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    let report = self.cycle(now_ms()).await;
                    let count = |f: fn(&Outcome) -> bool| report.outcomes.iter().filter(|o| f(&o.outcome)).count();
                    log::info!(
                        "cycle: {} node(s), {} managed pod(s): {} resized, {} recommended, {} held, {} failed, {} problem(s)",
                        report.nodes.len(),
                        report.outcomes.len(),
                        count(|o| matches!(o, Outcome::Resized)),
                        count(|o| matches!(o, Outcome::Recommended)),
                        count(|o| matches!(o, Outcome::Held(_))),
                        count(|o| matches!(o, Outcome::Failed(_))),
                        report.problems.len()
                    );
                    if let Some(path) = &self.config.health_file
                        && let Err(e) = std::fs::write(path, now_ms().to_string())
                    {
                        log::warn!("health file {}: {e}", path.display());
                    }
                }
            }
        }
        watches.abort();
    }

    /// One cycle at `now` (ms since the epoch): usage, plans, resizes or
    /// recommendations.
    pub async fn cycle(&mut self, now: TimestampMs) -> CycleReport {
        let mut report = CycleReport::default();
        // 1. What the watches saw: the managed pods of the nodes this
        // controller plans.
        let node = self.config.node.clone();
        let managed = {
            let mut st = lock(&self.state);
            report.problems.append(&mut st.watch_errors);
            st.managed_pods(node.as_deref())
        };

        // 2. Usage of the managed containers.
        let usage = self.usage(&managed, now, &mut report).await;
        // Looked up by reference: no key is copied.
        let live: HashSet<(&str, &str)> = managed
            .iter()
            .map(|(ns, pod)| (ns.as_str(), pod.as_str()))
            .collect();

        // 3. The nodes as the watches hold them now (read in place, under
        // the lock: no copy of 50,000 pods), with the usage: the planner
        // learns it (only managed pods', where they run), then plans.
        let (snapshots, problems) = lock(&self.state).snapshots(node.as_deref(), &usage);
        drop(usage);
        report.problems.extend(problems);
        self.planner.observe(&snapshots, now);
        self.planner.retain(|ns, pod| live.contains(&(ns, pod)));
        self.reported
            .retain(|(ns, pod), _| live.contains(&(ns.as_str(), pod.as_str())));
        report.nodes = self.planner.plan_nodes(&snapshots, now);

        // 4. Act.
        let mut recommendations: BTreeMap<(String, String), BTreeMap<String, Recommendation>> =
            BTreeMap::new();
        let plans: Vec<PodPlan> = report.nodes.iter().flat_map(|n| n.pods.clone()).collect();
        for problem in report.nodes.iter().flat_map(|n| &n.problems) {
            log::warn!("{problem}");
            report.problems.push(problem.clone());
        }
        for plan in plans {
            let outcome = match &plan.action {
                Action::Resize => self.resize(&plan, now).await,
                Action::Recommend => {
                    let recs = recommendations_of(&plan, now);
                    for (key, r) in &recs {
                        log::info!(
                            "recommend {}/{} {key}: cpu {} memory {}: {}",
                            plan.namespace,
                            plan.name,
                            r.cpu_request.as_deref().unwrap_or("-"),
                            r.memory_request.as_deref().unwrap_or("-"),
                            r.reason
                        );
                    }
                    if let Some(policy) = &plan.policy {
                        recommendations
                            .entry((plan.namespace.clone(), policy.clone()))
                            .or_default()
                            .extend(recs);
                    }
                    Outcome::Recommended
                }
                Action::NoChange => {
                    self.reported
                        .remove(&(plan.namespace.clone(), plan.name.clone()));
                    Outcome::Unchanged
                }
                Action::Deferred(m) => {
                    let outcome = Outcome::Deferred(m.clone());
                    self.report_pending(&plan, "Deferred", m, &outcome).await;
                    outcome
                }
                Action::Infeasible(m) => {
                    let outcome = Outcome::Infeasible(m.clone());
                    self.report_pending(&plan, "Infeasible", m, &outcome).await;
                    outcome
                }
                Action::Hold(why) => {
                    log::info!("hold {}/{}: {why}", plan.namespace, plan.name);
                    Outcome::Held(why.clone())
                }
                Action::Skip(why) => {
                    log::info!("skip {}/{}: {why}", plan.namespace, plan.name);
                    Outcome::Skipped(why.clone())
                }
            };
            report.outcomes.push(PodOutcome {
                namespace: plan.namespace.clone(),
                pod: plan.name.clone(),
                outcome,
            });
        }
        // Policies whose pods were recommended for before and are not now
        // get their stale entries removed.
        for key in self.written.keys() {
            recommendations.entry(key.clone()).or_default();
        }
        for ((ns, name), recs) in recommendations {
            if let Err(e) = self.write_status(&ns, &name, recs).await {
                log::warn!("{e}");
                report.problems.push(e);
            }
        }
        report
    }

    /// Usage from the configured source; a failure is a problem of the
    /// cycle (nothing is learnt this time), not an error.
    async fn usage(
        &mut self,
        managed: &BTreeSet<(String, String)>,
        now: TimestampMs,
        report: &mut CycleReport,
    ) -> UsageMap {
        if managed.is_empty() {
            return UsageMap::new();
        }
        let result = match &self.config.usage {
            UsageSource::MetricsApi => {
                let namespaces: BTreeSet<String> =
                    managed.iter().map(|(ns, _)| ns.clone()).collect();
                metrics_api_usage(&self.client, &namespaces).await
            }
            UsageSource::Prometheus {
                url,
                cpu_query,
                memory_query,
                history,
            } => {
                let client = match prescient_prometheus::Client::new(url) {
                    Ok(c) => c,
                    Err(e) => {
                        report.problems.push(e.to_string());
                        return UsageMap::new();
                    }
                };
                let (cpu_query, memory_query) = (cpu_query.clone(), memory_query.clone());
                let history = history.clone();
                self.load_history(&client, &history, managed, now, report)
                    .await;
                prometheus_usage(client, cpu_query, memory_query, now).await
            }
        };
        result.unwrap_or_else(|e| {
            log::warn!("usage: {e}");
            report.problems.push(format!("usage: {e}"));
            UsageMap::new()
        })
    }

    /// Reports a pending condition the kubelet set on a pod (an Event and
    /// a log line), once per condition and message.
    async fn report_pending(
        &mut self,
        plan: &PodPlan,
        reason: &str,
        message: &str,
        outcome: &Outcome,
    ) {
        let key = (plan.namespace.clone(), plan.name.clone());
        let seen = (reason.to_string(), message.to_string());
        if self.reported.get(&key) == Some(&seen) {
            log::debug!(
                "{}/{}: resize still {reason}: {message}",
                plan.namespace,
                plan.name
            );
            return;
        }
        self.reported.insert(key, seen);
        self.event(
            plan,
            outcome,
            &format!("requests as in the spec ({})", spec_summary(plan)),
        )
        .await;
    }

    /// Reads the history of the managed pods not read yet (or whose last
    /// read failed and is due again), at most `pods_per_cycle` of them, in
    /// range queries over batches of one namespace's pods, and has the
    /// planner learn it ([`Planner::learn_history`]). A failed batch is a
    /// problem of the cycle,
    /// tried again after a backoff.
    async fn load_history(
        &mut self,
        client: &prescient_prometheus::Client,
        h: &HistoryConfig,
        managed: &BTreeSet<(String, String)>,
        now: TimestampMs,
        report: &mut CycleReport,
    ) {
        self.history.retain(|k, _| managed.contains(k));
        let step = self.planner.config().step_ms;
        let lookback = i64::try_from(h.lookback.as_millis()).unwrap_or(i64::MAX);
        if lookback < step {
            return;
        }
        let mut due: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut n = 0;
        for (ns, pod) in managed {
            let key = (ns.clone(), pod.clone());
            let wanted = match self.history.get(&key) {
                None => true,
                Some(HistoryState::Loaded) => false,
                Some(HistoryState::Failed { next_try, .. }) => *next_try <= now,
            };
            if wanted && n < h.pods_per_cycle {
                due.entry(ns).or_default().push(pod);
                n += 1;
            }
        }
        for (ns, pods) in due {
            for batch in pods.chunks(h.pods_per_query.max(1)) {
                let read = prometheus_history(
                    client.clone(),
                    fill_history_query(&h.cpu_query, ns, batch),
                    fill_history_query(&h.memory_query, ns, batch),
                    now.saturating_sub(lookback),
                    now - step,
                    self.config.interval,
                )
                .await;
                let in_batch = |pod: &str| batch.contains(&pod);
                match read {
                    Ok(series) => {
                        let mut points = 0;
                        for (key, resource, values) in series {
                            // The templates select the batch; a query that
                            // ignores `{pods}` still only teaches these.
                            if key.0 == ns && in_batch(&key.1) {
                                points += self.planner.learn_history(&key, resource, &values);
                            }
                        }
                        log::info!(
                            "usage history: {points} point(s) for {} pod(s) of namespace {ns}",
                            batch.len()
                        );
                        for pod in batch {
                            self.history
                                .insert((ns.to_string(), pod.to_string()), HistoryState::Loaded);
                        }
                    }
                    Err(e) => {
                        let mut wait = h.retry;
                        for pod in batch {
                            let key = (ns.to_string(), pod.to_string());
                            let failures = match self.history.get(&key) {
                                Some(HistoryState::Failed { failures, .. }) => failures + 1,
                                _ => 1,
                            };
                            wait = h.retry_delay(failures);
                            let next_try = now.saturating_add(
                                i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
                            );
                            self.history
                                .insert(key, HistoryState::Failed { failures, next_try });
                        }
                        let problem = format!(
                            "usage history of {} pod(s) of namespace {ns} ({}{}): {e}; tried again in {}",
                            batch.len(),
                            batch[0],
                            if batch.len() > 1 { ", ..." } else { "" },
                            crate::plan::fmt_duration(
                                i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
                            )
                        );
                        log::warn!("{problem}");
                        report.problems.push(problem);
                    }
                }
            }
        }
    }

    /// Resizes one pod in place; a 409 Conflict is retried (bounded) after
    /// a fresh GET of the pod. Every attempt is recorded for the rate limit.
    async fn resize(&mut self, plan: &PodPlan, now: TimestampMs) -> Outcome {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &plan.namespace);
        let mut fresh: Option<Pod> = None;
        let mut attempt = 0;
        let where_ = format!("pod {}/{}", plan.namespace, plan.name);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let outcome = loop {
            let patch = resize_patch(plan, fresh.as_ref());
            match api
                .patch_resize(&plan.name, &params, &Patch::Strategic(&patch))
                .await
            {
                Ok(pod) => {
                    // The kubelet may already have answered (a node without
                    // room defers at once); more often its conditions come
                    // later, on the pod, and the next cycles read them.
                    let status = ResizeStatus::of(&pod);
                    break match status.pending {
                        Some((reason, message)) if reason == "Deferred" => {
                            Outcome::Deferred(message)
                        }
                        Some((reason, message)) if reason == "Infeasible" => {
                            Outcome::Infeasible(message)
                        }
                        _ => Outcome::Resized,
                    };
                }
                Err(kube::Error::Api(status))
                    if status.code == 409 && attempt < self.config.conflict_retries =>
                {
                    attempt += 1;
                    log::info!(
                        "{where_}: resize conflict (409: {}), re-reading the pod (retry {attempt} of {})",
                        status.message,
                        self.config.conflict_retries
                    );
                    match api.get(&plan.name).await {
                        Ok(p) => fresh = Some(p),
                        Err(e) => {
                            break Outcome::Failed(format!(
                                "{where_}: GET after a resize conflict failed: {}",
                                describe(&e)
                            ));
                        }
                    }
                }
                Err(e) => {
                    break Outcome::Failed(format!(
                        "{where_}: PATCH pods/{}/resize failed: {}",
                        plan.name,
                        describe(&e)
                    ));
                }
            }
        };
        let key = (plan.namespace.clone(), plan.name.clone());
        let result = match &outcome {
            Outcome::Deferred(m) => {
                self.reported.insert(key, ("Deferred".into(), m.clone()));
                AttemptResult::Deferred(m.clone())
            }
            Outcome::Infeasible(m) => {
                self.reported.insert(key, ("Infeasible".into(), m.clone()));
                AttemptResult::Infeasible(m.clone())
            }
            Outcome::Failed(m) => AttemptResult::Failed(m.clone()),
            _ => {
                self.reported.remove(&key);
                AttemptResult::Accepted
            }
        };
        self.planner.record_attempt(plan, now, result);
        self.event(plan, &outcome, &patch_summary(plan)).await;
        outcome
    }

    /// Publishes an Event on the pod for a resize and logs it.
    async fn event(&self, plan: &PodPlan, outcome: &Outcome, summary: &str) {
        let (type_, reason, note) = match outcome {
            Outcome::Resized => (
                EventType::Normal,
                "Resized",
                format!("resized in place: {summary}"),
            ),
            Outcome::Deferred(m) => (
                EventType::Normal,
                "ResizeDeferred",
                format!(
                    "resize deferred by the kubelet, which applies it when the node has room (not sent again): {summary}: {m}"
                ),
            ),
            Outcome::Infeasible(m) => (
                EventType::Warning,
                "ResizeInfeasible",
                format!(
                    "resize infeasible on this node, not retried for this target: {summary}: {m}"
                ),
            ),
            Outcome::Failed(m) => (EventType::Warning, "ResizeFailed", m.clone()),
            _ => return,
        };
        log::info!("{}/{}: {reason}: {note}", plan.namespace, plan.name);
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(plan.name.clone()),
            namespace: Some(plan.namespace.clone()),
            ..Default::default()
        };
        let mut note = note;
        truncate_utf8(&mut note, 1000);
        let ev = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Resize".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &reference).await {
            log::warn!(
                "pod {}/{}: could not publish the {reason} event: {}",
                plan.namespace,
                plan.name,
                describe(&e)
            );
        }
    }

    /// Writes a policy's recommendations (merge patch of its status).
    async fn write_status(
        &mut self,
        namespace: &str,
        name: &str,
        recs: BTreeMap<String, Recommendation>,
    ) -> Result<(), String> {
        let key = (namespace.to_string(), name.to_string());
        let before = self.written.get(&key).cloned().unwrap_or_default();
        let mut map = serde_json::Map::new();
        for gone in before.iter().filter(|k| !recs.contains_key(*k)) {
            map.insert(gone.clone(), serde_json::Value::Null);
        }
        let keys: BTreeSet<String> = recs.keys().cloned().collect();
        for (k, r) in recs {
            map.insert(k, serde_json::to_value(r).unwrap_or_default());
        }
        if map.is_empty() {
            self.written.remove(&key);
            return Ok(());
        }
        let api: Api<PrescientPolicy> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({"status": {"recommendations": map}});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                format!(
                    "PrescientPolicy {namespace}/{name}: writing status failed: {}",
                    describe(&e)
                )
            })?;
        if keys.is_empty() {
            self.written.remove(&key);
        } else {
            self.written.insert(key, keys);
        }
        Ok(())
    }
}

/// Feeds a watcher of `api` into `state`, each object trimmed by `trim`.
/// Errors are recorded for the next cycle's report; the watcher retries
/// with backoff (and relists when its resourceVersion is too old).
async fn feed<K>(
    api: Api<K>,
    config: watcher::Config,
    state: Arc<Mutex<ClusterState>>,
    store: fn(&mut ClusterState) -> &mut Store<K>,
    trim: fn(&mut K),
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    watcher::watcher(api, config)
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(ev) => store(&mut lock(&state)).apply(ev.modify(trim)),
                Err(e) => {
                    log::warn!("watch of {kind}: {e} (retried with backoff)");
                    let mut st = lock(&state);
                    // Bounded: a cycle drains them; a long outage keeps
                    // the first ones.
                    if st.watch_errors.len() < 100 {
                        st.watch_errors.push(format!("watch of {kind}: {e}"));
                    }
                }
            }
            futures::future::ready(())
        })
        .await;
}

/// A kube error with the HTTP status, when it is an API error.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// The body of a resize: each planned container's requests and limits,
/// with the resourceVersion planned from (so that a pod changed meanwhile
/// answers 409). With `fresh` (the pod re-read after a conflict), its
/// resourceVersion and limit/request ratios are used instead.
pub fn resize_patch(plan: &PodPlan, fresh: Option<&Pod>) -> serde_json::Value {
    let mut containers = Vec::new();
    for c in &plan.containers {
        let mut requests = serde_json::Map::new();
        let mut limits = serde_json::Map::new();
        let fresh_ratio = |resource: &str| -> Option<(f64, f64)> {
            let spec = fresh?.spec.as_ref()?;
            let res = spec
                .containers
                .iter()
                .find(|x| x.name == c.name)?
                .resources
                .as_ref()?;
            let read = |m: Option<
                &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
            >| {
                m.and_then(|m| m.get(resource))
                    .and_then(|q| crate::quantity::parse_quantity(&q.0).ok())
            };
            let (r, l) = (read(res.requests.as_ref())?, read(res.limits.as_ref())?);
            (r > 0.0).then_some((l / r, l))
        };
        let fresh_restarts = |resource: &str| {
            fresh
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.containers.iter().find(|x| x.name == c.name))
                .and_then(|x| x.resize_policy.as_ref())
                .is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p.resource_name == resource && p.restart_policy == "RestartContainer"
                    })
                })
        };
        for (resource, target, fmt) in [
            ("cpu", c.cpu, format_cpu as fn(f64) -> String),
            ("memory", c.memory, format_memory),
        ] {
            let Some(t) = target.filter(|t| t.changed) else {
                continue;
            };
            requests.insert(resource.into(), json!(fmt(t.request)));
            let limit = match fresh_ratio(resource) {
                Some((r, old)) => {
                    let new = (t.request * r).max(t.request);
                    // As planned: a memory limit is not lowered in place.
                    if resource == "memory" && !fresh_restarts(resource) {
                        Some(new.max(old))
                    } else {
                        Some(new)
                    }
                }
                None => t.limit,
            };
            if let Some(l) = limit {
                limits.insert(resource.into(), json!(fmt(l)));
            }
        }
        if requests.is_empty() {
            continue;
        }
        let mut resources = serde_json::Map::new();
        resources.insert("requests".into(), requests.into());
        if !limits.is_empty() {
            resources.insert("limits".into(), limits.into());
        }
        containers.push(json!({"name": c.name, "resources": resources}));
    }
    let rv = fresh
        .and_then(|p| p.metadata.resource_version.clone())
        .or_else(|| plan.resource_version.clone());
    let mut patch = json!({"spec": {"containers": containers}});
    if let Some(rv) = rv {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    patch
}

/// "web: cpu 400m, memory 768Mi": the requests a plan holds.
fn spec_summary(plan: &PodPlan) -> String {
    let mut parts = Vec::new();
    for c in &plan.containers {
        let mut s = Vec::new();
        if let Some(t) = c.cpu {
            s.push(format!("cpu {}", format_cpu(t.request)));
        }
        if let Some(t) = c.memory {
            s.push(format!("memory {}", format_memory(t.request)));
        }
        if !s.is_empty() {
            parts.push(format!("{}: {}", c.name, s.join(", ")));
        }
    }
    parts.join("; ")
}

/// "web: cpu 250m→400m, memory 512Mi→768Mi".
fn patch_summary(plan: &PodPlan) -> String {
    let mut parts = Vec::new();
    for c in &plan.containers {
        let mut s = Vec::new();
        if let Some(t) = c.cpu.filter(|t| t.changed) {
            s.push(format!(
                "cpu {}→{}",
                format_cpu(t.current_request),
                format_cpu(t.request)
            ));
        }
        if let Some(t) = c.memory.filter(|t| t.changed) {
            s.push(format!(
                "memory {}→{}",
                format_memory(t.current_request),
                format_memory(t.request)
            ));
        }
        if !s.is_empty() {
            parts.push(format!("{}: {}", c.name, s.join(", ")));
        }
    }
    parts.join("; ")
}

/// A pod plan's recommendations, keyed `POD/CONTAINER`.
fn recommendations_of(plan: &PodPlan, now: TimestampMs) -> BTreeMap<String, Recommendation> {
    let time = rfc3339(now);
    plan.containers
        .iter()
        .filter(|c| c.cpu.is_some() || c.memory.is_some())
        .map(|c| {
            (
                format!("{}/{}", plan.name, c.name),
                Recommendation {
                    pod: plan.name.clone(),
                    container: c.name.clone(),
                    cpu_request: c.cpu.map(|t| format_cpu(t.request)),
                    memory_request: c.memory.map(|t| format_memory(t.request)),
                    reason: c.reason.clone(),
                    time: time.clone(),
                },
            )
        })
        .collect()
}

fn rfc3339(ms: TimestampMs) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// Now, in ms since the epoch.
pub fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Checks that the health file written by [`Controller::run`] shows a cycle
/// finished less than `max_age` ago (a liveness probe: `prescient kube
/// health`).
pub fn check_health(path: &std::path::Path, max_age: Duration) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "health file {}: {e} (no cycle has finished yet?)",
            path.display()
        )
    })?;
    let at: i64 = text.trim().parse().map_err(|_| {
        format!(
            "health file {}: {text:?} is not a time in ms",
            path.display()
        )
    })?;
    let age = now_ms() - at;
    let max = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    if age > max {
        return Err(format!(
            "the last cycle finished {} ago, more than {}",
            crate::plan::fmt_duration(age),
            crate::plan::fmt_duration(max)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> WatchedPod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"}})).unwrap()
    }

    fn names(s: &Store<WatchedPod>) -> Vec<String> {
        s.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn store_follows_watch_events_and_relists() {
        let mut s = Store::default();
        s.apply(Event::Init);
        s.apply(Event::InitApply(pod("a")));
        s.apply(Event::InitApply(pod("b")));
        assert!(s.is_empty(), "a list in progress is not shown");
        s.apply(Event::InitDone);
        assert_eq!(names(&s), ["a", "b"]);
        s.apply(Event::Apply(pod("c")));
        s.apply(Event::Delete(pod("a")));
        assert_eq!(names(&s), ["b", "c"]);
        // A relist: the old objects stay until it is done, then only what
        // it listed is left.
        s.apply(Event::Init);
        s.apply(Event::InitApply(pod("c")));
        assert_eq!(names(&s), ["b", "c"]);
        s.apply(Event::InitApply(pod("d")));
        s.apply(Event::InitDone);
        assert_eq!(names(&s), ["c", "d"]);
        assert_eq!(s.len(), 2);
        assert!(s.get("ns", "d").is_some() && s.get("ns", "b").is_none());
    }

    #[test]
    fn health_file_freshness() {
        let dir =
            std::env::temp_dir().join(format!("prescient-kube-health-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alive");
        assert!(
            check_health(&path, Duration::from_secs(60))
                .unwrap_err()
                .contains("no cycle")
        );
        std::fs::write(&path, now_ms().to_string()).unwrap();
        check_health(&path, Duration::from_secs(60)).unwrap();
        std::fs::write(&path, (now_ms() - 600_000).to_string()).unwrap();
        let err = check_health(&path, Duration::from_secs(300)).unwrap_err();
        assert!(err.contains("10m ago, more than 5m"), "{err}");
        std::fs::write(&path, "soon").unwrap();
        assert!(check_health(&path, Duration::from_secs(60)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
