//! Every Kubernetes API call the controller makes, as RBAC rules: the
//! ClusterRole in `deploy/kubernetes/rbac.yaml` must grant exactly these
//! (a test checks it), no more — least privilege.

/// One API group and resource, and the verbs the controller uses on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiCall {
    /// The API group ("" for the core group).
    pub group: &'static str,
    /// The resource (or `resource/subresource`).
    pub resource: &'static str,
    /// The verbs.
    pub verbs: &'static [&'static str],
    /// Where the controller makes the call.
    pub why: &'static str,
}

/// The calls, one entry per group and resource.
pub const API_CALLS: &[ApiCall] = &[
    ApiCall {
        group: "",
        resource: "pods",
        verbs: &["get", "list", "watch"],
        why: "the pod watch; a fresh GET after a 409 Conflict on resize",
    },
    ApiCall {
        group: "",
        resource: "pods/resize",
        verbs: &["patch"],
        why: "in-place resize of requests and limits (enforce mode)",
    },
    ApiCall {
        group: "",
        resource: "nodes",
        verbs: &["list", "watch"],
        why: "the node watch (allocatable capacity)",
    },
    ApiCall {
        group: "policy",
        resource: "poddisruptionbudgets",
        verbs: &["list", "watch"],
        why: "the PDB watch (disruptions allowed, for RestartContainer resizes)",
    },
    ApiCall {
        group: "metrics.k8s.io",
        resource: "pods",
        verbs: &["list"],
        why: "PodMetrics listed per namespace (usage)",
    },
    ApiCall {
        group: "prescient.io",
        resource: "prescientpolicies",
        verbs: &["list", "watch"],
        why: "the PrescientPolicy watch",
    },
    ApiCall {
        group: "prescient.io",
        resource: "prescientpolicies/status",
        verbs: &["patch"],
        why: "recommendations (recommend mode), JSON merge patch",
    },
    ApiCall {
        group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        why: "Events on pods (the recorder patches a repeated event's count)",
    },
];
