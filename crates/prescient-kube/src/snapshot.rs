//! What the planner sees of one node: its allocatable capacity and its
//! pods, each with containers (requests, limits, resize policy, usage),
//! opt-in, policy, PodDisruptionBudget and resize conditions. Built from
//! Kubernetes objects by [`node_snapshot`], or directly (tests, benches).

use std::collections::{BTreeMap, HashMap};

use std::borrow::Cow;

use k8s_openapi::api::core::v1::{
    Container, ContainerResizePolicy, Node, Pod, PodCondition, ResourceRequirements,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use prescient_core::TimestampMs;

use crate::crd::PrescientPolicy;
use crate::policy::{MANAGED_LABEL, PodPolicy, PolicyError};
use crate::quantity::parse_quantity;

/// The field manager the controller writes resizes under. The API server
/// stamps the pod's `managedFields` entry of this manager and the `resize`
/// subresource with the time of each write that changes a value: that is
/// where a restarted controller reads when it last resized a pod (an
/// annotation cannot carry it: the resize subresource drops metadata
/// changes).
pub const FIELD_MANAGER: &str = "prescient-kube";

/// Latest usage of one container: CPU in cores, memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// CPU, cores.
    pub cpu: Option<f64>,
    /// Memory (working set), bytes.
    pub memory: Option<f64>,
}

/// Usage per container, keyed by (namespace, pod, container).
pub type UsageMap = HashMap<(String, String, String), Usage>;

/// One node and its pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeSnapshot {
    /// The node's name.
    pub name: String,
    /// Allocatable CPU, cores.
    pub allocatable_cpu: f64,
    /// Allocatable memory, bytes.
    pub allocatable_memory: f64,
    /// Every pod bound to the node that still holds its requests.
    pub pods: Vec<PodSnapshot>,
    /// What was wrong with pods or objects while building the snapshot
    /// (each names the object): those pods were left out of planning.
    pub problems: Vec<String>,
}

/// Why a pod is managed.
#[derive(Debug, Clone, PartialEq)]
pub enum OptIn {
    /// It carries `prescient.io/managed=true`.
    Label,
    /// A PrescientPolicy of its namespace selects it.
    Policy(String),
}

/// The PodDisruptionBudget that covers a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PdbState {
    /// Its name.
    pub name: String,
    /// `status.disruptionsAllowed` (0 when it has no status yet).
    pub disruptions_allowed: i32,
}

/// A pod as the controller keeps it from its watch: only the fields it
/// reads. The watch deserializes the API server's answer straight into it
/// (unknown fields are skipped), so the rest of a pod (its environment,
/// volumes, probes, container statuses...) never takes memory: 50,000 of
/// them stay small. [`trim`] then drops the metadata it does not read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchedPod {
    /// Name, namespace, resourceVersion, labels, annotations, managedFields.
    pub metadata: ObjectMeta,
    /// What of the spec is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<WatchedPodSpec>,
    /// What of the status is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<WatchedPodStatus>,
}

/// The part of a pod's spec the controller reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedPodSpec {
    /// The node it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Its containers.
    #[serde(default)]
    pub containers: Vec<WatchedContainer>,
    /// Its init containers (for its QoS class).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<WatchedContainer>,
}

/// The part of a container the controller reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedContainer {
    /// Its name.
    pub name: String,
    /// Requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// How a resize of each resource is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize_policy: Option<Vec<ContainerResizePolicy>>,
}

impl From<Container> for WatchedContainer {
    fn from(c: Container) -> Self {
        WatchedContainer {
            name: c.name,
            resources: c.resources,
            resize_policy: c.resize_policy,
        }
    }
}

/// The part of a pod's status the controller reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchedPodStatus {
    /// `Pending`, `Running`, `Succeeded`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// `Guaranteed`, `Burstable` or `BestEffort`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
    /// Its conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
}

impl From<Pod> for WatchedPod {
    fn from(p: Pod) -> Self {
        WatchedPod {
            metadata: p.metadata,
            spec: p.spec.map(|s| WatchedPodSpec {
                node_name: s.node_name,
                containers: s.containers.into_iter().map(Into::into).collect(),
                init_containers: s
                    .init_containers
                    .into_iter()
                    .flatten()
                    .map(Into::into)
                    .collect(),
            }),
            status: p.status.map(|s| WatchedPodStatus {
                phase: s.phase,
                qos_class: s.qos_class,
                conditions: s.conditions.unwrap_or_default(),
            }),
        }
    }
}

impl kube::Resource for WatchedPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What the kubelet says of the pod's last resize (its conditions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResizeStatus {
    /// `PodResizePending`: its reason (`Deferred`, `Infeasible`) and message.
    pub pending: Option<(String, String)>,
    /// `PodResizeInProgress` is true.
    pub in_progress: bool,
}

impl ResizeStatus {
    /// Reads the resize conditions of `pod` (as a resize answers it).
    pub fn of(pod: &Pod) -> ResizeStatus {
        let conditions = pod.status.as_ref().and_then(|st| st.conditions.as_ref());
        Self::of_conditions(conditions.map_or(&[][..], Vec::as_slice))
    }

    /// Reads the resize conditions among `conditions`.
    pub fn of_conditions(conditions: &[PodCondition]) -> ResizeStatus {
        let mut s = ResizeStatus::default();
        for c in conditions {
            if c.status != "True" {
                continue;
            }
            match c.type_.as_str() {
                "PodResizePending" => {
                    s.pending = Some((
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default(),
                    ))
                }
                "PodResizeInProgress" => s.in_progress = true,
                _ => {}
            }
        }
        s
    }
}

/// A pod's quality-of-service class. Kubernetes refuses an in-place
/// resize that would change it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QosClass {
    /// Every container (init containers too) has CPU and memory limits
    /// equal to its requests.
    Guaranteed,
    /// Some request or limit, not Guaranteed.
    #[default]
    Burstable,
    /// No CPU or memory request or limit anywhere.
    BestEffort,
}

impl QosClass {
    /// The class `status.qosClass` names (set by the API server when the
    /// pod is created, and never changed).
    pub fn from_status(s: &str) -> Option<QosClass> {
        match s {
            "Guaranteed" => Some(QosClass::Guaranteed),
            "Burstable" => Some(QosClass::Burstable),
            "BestEffort" => Some(QosClass::BestEffort),
            _ => None,
        }
    }

    /// The class of containers with these CPU and memory states, by the
    /// rules of Kubernetes (requests default to limits).
    pub fn of<'a>(
        containers: impl IntoIterator<Item = (&'a ResourceState, &'a ResourceState)>,
    ) -> QosClass {
        let mut any = false;
        let mut guaranteed = true;
        for (cpu, memory) in containers {
            for r in [cpu, memory] {
                any |= r.request.is_some() || r.limit.is_some();
                guaranteed &=
                    matches!((r.request, r.limit), (Some(q), Some(l)) if same_amount(q, l));
            }
        }
        match (any, guaranteed) {
            (false, _) => QosClass::BestEffort,
            (true, true) => QosClass::Guaranteed,
            (true, false) => QosClass::Burstable,
        }
    }
}

/// Whether two amounts (as parsed or as rounded for writing) are the same.
pub fn same_amount(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// A pod on the node.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSnapshot {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.resourceVersion`, sent with resizes so that a pod changed
    /// meanwhile answers 409 Conflict rather than being resized blindly.
    pub resource_version: Option<String>,
    /// Why it is managed (`None`: it is not, and its requests are simply
    /// taken off the node's capacity).
    pub opt_in: Option<OptIn>,
    /// Its policy, or why it cannot be read (the pod is then skipped).
    pub policy: Result<PodPolicy, PolicyError>,
    /// Its containers (not init containers).
    pub containers: Vec<ContainerSnapshot>,
    /// The PDB that covers it, if any (the tightest when several do).
    pub pdb: Option<PdbState>,
    /// Its resize conditions.
    pub resize: ResizeStatus,
    /// Its QoS class (`status.qosClass`, or worked out from its
    /// containers).
    pub qos: QosClass,
    /// When this controller last changed its resources (the time of its
    /// [`FIELD_MANAGER`] entry for the `resize` subresource in
    /// `managedFields`), ms since the epoch.
    pub last_resize: Option<TimestampMs>,
}

/// When [`FIELD_MANAGER`] last changed a pod's resources through the
/// resize subresource, from the `managedFields` of its metadata.
pub fn last_resize_of(metadata: &ObjectMeta) -> Option<TimestampMs> {
    metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER)
                && m.subresource.as_deref() == Some("resize")
        })
        .filter_map(|m| m.time.as_ref().map(|t| t.0.as_millisecond()))
        .max()
}

/// Drops what the controller never reads from the metadata and status of
/// a watched pod: the managedFields of other managers, and the field sets
/// of all (only [`FIELD_MANAGER`]'s resize time is read); annotations but
/// the `prescient.io/` ones; owner references, finalizers and the like;
/// conditions but the resize ones.
pub fn trim(pod: &mut WatchedPod) {
    let m = &mut pod.metadata;
    if let Some(fields) = m.managed_fields.as_mut() {
        fields.retain(|m| m.manager.as_deref() == Some(FIELD_MANAGER));
        for f in fields.iter_mut() {
            f.fields_v1 = None;
        }
    }
    if m.managed_fields.as_ref().is_some_and(Vec::is_empty) {
        m.managed_fields = None;
    }
    if let Some(a) = m.annotations.as_mut() {
        a.retain(|k, _| k.starts_with("prescient.io/"));
    }
    if m.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
        m.annotations = None;
    }
    m.owner_references = None;
    m.finalizers = None;
    m.generate_name = None;
    m.uid = None;
    m.creation_timestamp = None;
    if let Some(status) = pod.status.as_mut() {
        status
            .conditions
            .retain(|c| c.type_.starts_with("PodResize"));
        status.conditions.shrink_to_fit();
    }
}

/// One resource of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ResourceState {
    /// Its request (`spec`), in the base unit.
    pub request: Option<f64>,
    /// Its limit.
    pub limit: Option<f64>,
    /// Whether resizing it restarts the container (`resizePolicy`
    /// `RestartContainer`).
    pub restart_on_resize: bool,
    /// Latest usage.
    pub usage: Option<f64>,
}

/// A container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSnapshot {
    /// Its name.
    pub name: String,
    /// CPU, cores.
    pub cpu: ResourceState,
    /// Memory, bytes.
    pub memory: ResourceState,
}

/// Whether `selector` selects `labels` (matchLabels and matchExpressions;
/// an empty selector selects everything, as in Kubernetes).
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expr = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator Kubernetes does not know selects nothing.
            _ => false,
        }
    });
    by_labels && by_expr
}

/// Whether a pod still holds its requests on its node (not finished).
pub fn pod_is_active(pod: &WatchedPod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The quantity `key` of `map`; `what` names the map in an error (built
/// only then: this runs for every container every cycle).
fn quantity_of(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    key: &str,
    what: impl FnOnce() -> String,
) -> Result<Option<f64>, String> {
    match map.and_then(|m| m.get(key)) {
        None => Ok(None),
        Some(q) => parse_quantity(&q.0)
            .map(Some)
            .map_err(|e| format!("{} {key}: {e}", what())),
    }
}

fn container_snapshot(c: &WatchedContainer, usage: Usage) -> Result<ContainerSnapshot, String> {
    let res = c.resources.as_ref();
    let requests = res.and_then(|r| r.requests.as_ref());
    let limits = res.and_then(|r| r.limits.as_ref());
    let restart = |resource: &str| {
        c.resize_policy
            .iter()
            .flatten()
            .any(|p| p.resource_name == resource && p.restart_policy == "RestartContainer")
    };
    let what = || format!("container {}: resources", c.name);
    let mut cpu = ResourceState {
        request: quantity_of(requests, "cpu", || format!("{}.requests", what()))?,
        limit: quantity_of(limits, "cpu", || format!("{}.limits", what()))?,
        restart_on_resize: restart("cpu"),
        usage: usage.cpu,
    };
    let mut memory = ResourceState {
        request: quantity_of(requests, "memory", || format!("{}.requests", what()))?,
        limit: quantity_of(limits, "memory", || format!("{}.limits", what()))?,
        restart_on_resize: restart("memory"),
        usage: usage.memory,
    };
    // A limit without a request: Kubernetes defaults the request to it.
    for r in [&mut cpu, &mut memory] {
        if r.request.is_none() {
            r.request = r.limit;
        }
    }
    Ok(ContainerSnapshot {
        name: c.name.clone(),
        cpu,
        memory,
    })
}

/// The policy that selects `pod`, if any: the first by name of those of its
/// namespace whose selector matches.
pub fn policy_for<'a>(
    pod: &WatchedPod,
    policies: &[&'a PrescientPolicy],
) -> Option<&'a PrescientPolicy> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let no_labels = BTreeMap::new();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&no_labels);
    let mut matching: Vec<&PrescientPolicy> = policies
        .iter()
        .copied()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or("default") == ns)
        .filter(|p| {
            p.spec
                .selector
                .match_labels
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    matching.first().copied()
}

/// PodDisruptionBudgets indexed so that a pod is matched only against the
/// PDBs of its namespace that could select it: those whose first
/// `matchLabels` pair is among its labels, and those without `matchLabels`.
/// (Every candidate is still checked with [`selector_matches`].)
struct PdbIndex<'a> {
    by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a PodDisruptionBudget>>,
    others: HashMap<&'a str, Vec<&'a PodDisruptionBudget>>,
}

impl<'a> PdbIndex<'a> {
    fn new(pdbs: &[&'a PodDisruptionBudget]) -> Self {
        let mut index = PdbIndex {
            by_label: HashMap::new(),
            others: HashMap::new(),
        };
        for &b in pdbs {
            let ns = b.metadata.namespace.as_deref().unwrap_or("default");
            let first = b
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.match_labels.as_ref())
                .and_then(|m| m.iter().next());
            match first {
                Some((k, v)) => index.by_label.entry((ns, k, v)).or_default().push(b),
                None => index.others.entry(ns).or_default().push(b),
            }
        }
        index
    }

    fn candidates<'s>(
        &'s self,
        ns: &'s str,
        labels: &'s BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a PodDisruptionBudget> + 's {
        let by_label = labels.iter().flat_map(move |(k, v)| {
            self.by_label
                .get(&(ns, k.as_str(), v.as_str()))
                .into_iter()
                .flatten()
        });
        self.others
            .get(ns)
            .into_iter()
            .flatten()
            .chain(by_label)
            .copied()
    }
}

/// The snapshot of `node` with `pods` (those bound to it), the PDBs and
/// policies of the cluster and the latest usage. Pods that cannot be read
/// are left out and named in [`NodeSnapshot::problems`]; a node without
/// allocatable CPU or memory is an error naming it.
pub fn node_snapshot(
    node: &Node,
    pods: &[&WatchedPod],
    pdbs: &[&PodDisruptionBudget],
    policies: &[&PrescientPolicy],
    usage: &UsageMap,
) -> Result<NodeSnapshot, String> {
    let context = SnapshotContext {
        pdbs: PdbIndex::new(pdbs),
        policies,
        usage: UsageLookup::Map(usage),
    };
    node_snapshot_in(node, pods, &context)
}

/// What every node's snapshot is read against: the PDBs (indexed), the
/// policies and the usage. A cycle builds it once for all its nodes
/// ([`SnapshotContext::new`]), not once per node.
pub struct SnapshotContext<'a> {
    pdbs: PdbIndex<'a>,
    policies: &'a [&'a PrescientPolicy],
    usage: UsageLookup<'a>,
}

/// Usage looked up by borrowed names (no key built per container), or in
/// the map itself for a single node.
enum UsageLookup<'a> {
    Map(&'a UsageMap),
    Index(HashMap<(&'a str, &'a str, &'a str), Usage>),
}

impl<'a> SnapshotContext<'a> {
    /// The PDBs indexed and the usage keyed by borrowed names, for the
    /// snapshots of many nodes.
    pub fn new(
        pdbs: &[&'a PodDisruptionBudget],
        policies: &'a [&'a PrescientPolicy],
        usage: &'a UsageMap,
    ) -> Self {
        SnapshotContext {
            pdbs: PdbIndex::new(pdbs),
            policies,
            usage: UsageLookup::Index(
                usage
                    .iter()
                    .map(|((ns, pod, c), u)| ((ns.as_str(), pod.as_str(), c.as_str()), *u))
                    .collect(),
            ),
        }
    }

    fn usage(&self, ns: &str, pod: &str, container: &str) -> Usage {
        match &self.usage {
            UsageLookup::Map(m) => m
                .get(&(ns.to_string(), pod.to_string(), container.to_string()))
                .copied(),
            UsageLookup::Index(i) => i.get(&(ns, pod, container)).copied(),
        }
        .unwrap_or_default()
    }
}

/// [`node_snapshot`] against a [`SnapshotContext`].
pub fn node_snapshot_in(
    node: &Node,
    pods: &[&WatchedPod],
    context: &SnapshotContext<'_>,
) -> Result<NodeSnapshot, String> {
    let policies = context.policies;
    let name = node.metadata.name.clone().unwrap_or_default();
    let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let read = |key: &str| -> Result<f64, String> {
        quantity_of(allocatable, key, || "status.allocatable".to_string())
            .and_then(|v| v.ok_or_else(|| format!("status.allocatable has no {key}")))
            .map_err(|e| format!("node {name}: {e}"))
    };
    let mut snap = NodeSnapshot {
        allocatable_cpu: read("cpu")?,
        allocatable_memory: read("memory")?,
        name: name.clone(),
        ..Default::default()
    };
    let pdb_index = &context.pdbs;
    for pod in pods.iter().filter(|p| pod_is_active(p)) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let no_map = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&no_map);
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&no_map);
        let policy = policy_for(pod, policies);
        let opt_in = if let Some(p) = policy {
            Some(OptIn::Policy(p.metadata.name.clone().unwrap_or_default()))
        } else if labels.get(MANAGED_LABEL).map(String::as_str) == Some("true") {
            Some(OptIn::Label)
        } else {
            None
        };
        let resolved = PodPolicy::resolve(
            &ns,
            &pod_name,
            policy.map(|p| (p.metadata.name.as_deref().unwrap_or(""), &p.spec)),
            annotations,
        );
        let mut containers = Vec::new();
        let mut bad = None;
        let mut init = Vec::new();
        for c in pod.spec.iter().flat_map(|s| &s.init_containers) {
            match container_snapshot(c, Usage::default()) {
                Ok(cs) => init.push(cs),
                Err(e) => bad = Some(format!("init {e}")),
            }
        }
        for c in pod.spec.iter().flat_map(|s| &s.containers) {
            let u = context.usage(&ns, &pod_name, &c.name);
            match container_snapshot(c, u) {
                Ok(cs) => containers.push(cs),
                Err(e) => bad = Some(e),
            }
        }
        if let Some(e) = bad {
            // Its requests cannot be read, so neither planned nor counted.
            snap.problems
                .push(format!("pod {ns}/{pod_name}: {e}; the pod is skipped"));
            continue;
        }
        let pdb = pdb_index
            .candidates(&ns, labels)
            .filter(|b| {
                b.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| selector_matches(sel, labels))
            })
            .map(|b| PdbState {
                name: b.metadata.name.clone().unwrap_or_default(),
                disruptions_allowed: b.status.as_ref().map_or(0, |s| s.disruptions_allowed),
            })
            .min_by_key(|b| b.disruptions_allowed);
        let qos = pod
            .status
            .as_ref()
            .and_then(|s| s.qos_class.as_deref())
            .and_then(QosClass::from_status)
            .unwrap_or_else(|| {
                QosClass::of(init.iter().chain(&containers).map(|c| (&c.cpu, &c.memory)))
            });
        snap.pods.push(PodSnapshot {
            namespace: ns,
            name: pod_name,
            resource_version: pod.metadata.resource_version.clone(),
            opt_in,
            policy: resolved,
            containers,
            pdb,
            resize: ResizeStatus::of_conditions(
                pod.status.as_ref().map_or(&[][..], |s| &s.conditions),
            ),
            qos,
            last_resize: last_resize_of(&pod.metadata),
        });
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> WatchedPod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reads_pods_pdbs_policies_and_usage() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}
        }))
        .unwrap();
        let web = pod(json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"prescient.io/priority": "5"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c",
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1"}},
                "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodResizePending", "status": "True", "reason": "Deferred", "message": "node full"}]}
        }));
        let labelled = pod(json!({
            "metadata": {"name": "db", "namespace": "shop", "labels": {"prescient.io/managed": "true"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "2Gi"}}}]}
        }));
        let other = pod(json!({
            "metadata": {"name": "x", "namespace": "shop"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "bad"}}}]}
        }));
        let done = pod(json!({
            "metadata": {"name": "job", "namespace": "shop"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Succeeded"}
        }));
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "web-pdb", "namespace": "shop"},
            "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
        }))
        .unwrap();
        let policy: PrescientPolicy = serde_json::from_value(json!({
            "apiVersion": "prescient.io/v1alpha1", "kind": "PrescientPolicy",
            "metadata": {"name": "web-policy", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "sloQuantile": 0.9}
        }))
        .unwrap();
        let mut usage = UsageMap::new();
        usage.insert(
            ("shop".into(), "web".into(), "c".into()),
            Usage {
                cpu: Some(0.3),
                memory: Some(5e8),
            },
        );
        let snap = node_snapshot(
            &node,
            &[&web, &labelled, &other, &done],
            &[&pdb],
            &[&policy],
            &usage,
        )
        .unwrap();
        // A cycle's shared context (PDBs indexed once, usage by borrowed
        // names) reads the same.
        let policies = [&policy];
        let context = SnapshotContext::new(&[&pdb], &policies, &usage);
        let shared = node_snapshot_in(&node, &[&web, &labelled, &other, &done], &context);
        assert_eq!(shared.as_ref(), Ok(&snap));
        assert_eq!(snap.allocatable_cpu, 4.0);
        assert_eq!(snap.allocatable_memory, 8.0 * 1_073_741_824.0);
        assert_eq!(snap.pods.len(), 2, "{:?}", snap.pods);
        assert_eq!(snap.problems.len(), 1);
        assert!(
            snap.problems[0].contains("pod shop/x"),
            "{:?}",
            snap.problems
        );
        let w = &snap.pods[0];
        assert_eq!(w.opt_in, Some(OptIn::Policy("web-policy".into())));
        let p = w.policy.as_ref().unwrap();
        assert_eq!((p.slo_quantile, p.priority), (0.9, 5));
        assert_eq!(w.containers[0].cpu.request, Some(0.5));
        assert_eq!(w.containers[0].cpu.limit, Some(1.0));
        assert_eq!(w.containers[0].cpu.usage, Some(0.3));
        assert!(w.containers[0].memory.restart_on_resize);
        assert!(!w.containers[0].cpu.restart_on_resize);
        assert_eq!(w.pdb.as_ref().unwrap().disruptions_allowed, 0);
        assert_eq!(w.resize.pending.as_ref().unwrap().0, "Deferred");
        assert_eq!(w.qos, QosClass::Burstable);
        assert_eq!(w.last_resize, None);
        let db = &snap.pods[1];
        assert_eq!(db.opt_in, Some(OptIn::Label));
        assert_eq!(db.containers[0].memory.request, Some(2.0 * 1_073_741_824.0));
        assert!(db.pdb.is_none());
    }

    #[test]
    fn qos_class_from_status_or_containers() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}
        }))
        .unwrap();
        let guaranteed = json!({"limits": {"cpu": "1", "memory": "1Gi"}});
        let mk = |name: &str, init: serde_json::Value, status: serde_json::Value| {
            pod(json!({
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"initContainers": init, "containers": [{"name": "c", "resources": guaranteed}]},
                "status": status
            }))
        };
        let pods = [
            // Limits only: requests default to them.
            mk("g", json!([]), json!({})),
            // An init container without limits makes the pod Burstable.
            mk(
                "b",
                json!([{"name": "i", "resources": {"requests": {"cpu": "1"}}}]),
                json!({}),
            ),
            // The API server's word wins.
            mk("s", json!([]), json!({"qosClass": "Burstable"})),
            pod(json!({"metadata": {"name": "e", "namespace": "ns"},
                       "spec": {"containers": [{"name": "c"}]}})),
        ];
        let refs: Vec<&WatchedPod> = pods.iter().collect();
        let snap = node_snapshot(&node, &refs, &[], &[], &UsageMap::new()).unwrap();
        let qos: Vec<(String, QosClass)> =
            snap.pods.iter().map(|p| (p.name.clone(), p.qos)).collect();
        assert_eq!(
            qos,
            [
                ("g".to_string(), QosClass::Guaranteed),
                ("b".to_string(), QosClass::Burstable),
                ("s".to_string(), QosClass::Burstable),
                ("e".to_string(), QosClass::BestEffort),
            ]
        );
    }

    #[test]
    fn last_resize_comes_from_our_managed_fields_entry() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "ns", "managedFields": [
                {"manager": "kubectl", "operation": "Update", "subresource": "resize",
                 "time": "2023-11-14T23:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}},
                {"manager": FIELD_MANAGER, "operation": "Update",
                 "time": "2023-11-14T21:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {}},
                {"manager": FIELD_MANAGER, "operation": "Update", "subresource": "resize",
                 "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {}}}
            ]},
            "spec": {"containers": [{"name": "c"}]}
        }));
        // Only our manager's resize entry counts (not kubectl's resize,
        // nor our own main-resource writes).
        assert_eq!(last_resize_of(&p.metadata), Some(1_700_000_000_000));
        let mut trimmed = p.clone();
        trim(&mut trimmed);
        let fields = trimmed.metadata.managed_fields.as_ref().unwrap();
        assert_eq!(fields.len(), 2);
        assert!(fields.iter().all(|f| f.fields_v1.is_none()));
        assert_eq!(last_resize_of(&trimmed.metadata), Some(1_700_000_000_000));
        let mut bare = pod(json!({"metadata": {"name": "x", "managedFields": [
            {"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {}}]},
            "spec": {"containers": []}}));
        trim(&mut bare);
        assert!(bare.metadata.managed_fields.is_none());
        assert_eq!(last_resize_of(&bare.metadata), None);
    }

    #[test]
    fn trimmed_pods_give_the_same_snapshots() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}
        }))
        .unwrap();
        let full = pod(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "9",
                "labels": {"app": "web", "prescient.io/managed": "true"},
                "annotations": {"prescient.io/priority": "3", "kubectl.kubernetes.io/restartedAt": "x"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "r"}],
                "managedFields": [{"manager": FIELD_MANAGER, "operation": "Update", "subresource": "resize",
                                   "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"nodeName": "n1",
                "initContainers": [{"name": "init", "image": "i:1", "resources": {"requests": {"cpu": "1"}}}],
                "containers": [{"name": "c", "image": "c:1", "env": [{"name": "A", "value": "1"}],
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                    "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}],
                "volumes": [{"name": "v", "emptyDir": {}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "PodResizePending", "status": "True", "reason": "Infeasible", "message": "no"},
                {"type": "PodResizeInProgress", "status": "True"}],
                "containerStatuses": [{"name": "c", "image": "c:1", "imageID": "", "ready": true, "restartCount": 0}]}
        }));
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 2, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
        }))
        .unwrap();
        let mut trimmed = full.clone();
        trim(&mut trimmed);
        assert!(trimmed.metadata.owner_references.is_none());
        assert_eq!(trimmed.metadata.annotations.as_ref().unwrap().len(), 1);
        assert_eq!(trimmed.status.as_ref().unwrap().conditions.len(), 2);
        // Only what is read was kept in the first place.
        let back = serde_json::to_value(&trimmed).unwrap();
        assert!(back["spec"].get("volumes").is_none(), "{back}");
        assert!(back["spec"]["containers"][0].get("env").is_none(), "{back}");
        assert!(back["status"].get("podIP").is_none(), "{back}");
        let snap =
            |p: &WatchedPod| node_snapshot(&node, &[p], &[&pdb], &[], &UsageMap::new()).unwrap();
        let (a, b) = (snap(&full), snap(&trimmed));
        assert_eq!(a, b);
        let w = &a.pods[0];
        assert_eq!(w.pdb.as_ref().map(|p| p.disruptions_allowed), Some(2));
        assert_eq!(w.qos, QosClass::Burstable);
        assert!(w.resize.in_progress && w.last_resize.is_some());
    }

    #[test]
    fn node_without_allocatable_is_named() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "bare"}})).unwrap();
        let err = node_snapshot(&node, &[], &[], &[], &UsageMap::new()).unwrap_err();
        assert!(err.contains("node bare"), "{err}");
    }

    #[test]
    fn selector_operators() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"a": "1"},
            "matchExpressions": [
                {"key": "b", "operator": "NotIn", "values": ["x"]},
                {"key": "c", "operator": "Exists"},
                {"key": "d", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector_matches(&sel, &labels(&[("a", "1"), ("c", "")])));
        assert!(!selector_matches(
            &sel,
            &labels(&[("a", "1"), ("c", ""), ("b", "x")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("a", "1"), ("c", ""), ("d", "")])
        ));
        assert!(!selector_matches(&sel, &labels(&[("a", "2"), ("c", "")])));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
    }
}
