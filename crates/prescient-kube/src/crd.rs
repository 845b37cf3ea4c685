//! The `PrescientPolicy` custom resource (`prescient.io/v1alpha1`,
//! namespaced): which pods Prescient manages and how, and, in recommend
//! mode, what it recommends for them (its status).
//!
//! ```yaml
//! apiVersion: prescient.io/v1alpha1
//! kind: PrescientPolicy
//! metadata: {name: web, namespace: shop}
//! spec:
//!   selector: {matchLabels: {app: web}}
//!   sloQuantile: 0.95
//!   priority: 10
//!   minCpu: 100m
//!   maxMemory: 2Gi
//!   mode: recommend
//! ```

use std::collections::BTreeMap;

use kube::CustomResource;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the controller does with its plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Only write recommendations (into the policy's status) and log them.
    #[default]
    Recommend,
    /// Resize pods in place (`pods/{name}/resize`).
    Enforce,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Recommend => "recommend",
            Mode::Enforce => "enforce",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "recommend" => Ok(Mode::Recommend),
            "enforce" => Ok(Mode::Enforce),
            other => Err(format!(
                "{other:?} is not a mode: expected \"recommend\" or \"enforce\""
            )),
        }
    }
}

/// The pods a policy applies to: those of its namespace carrying every
/// label listed (an empty list selects every pod of the namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelector {
    /// Labels a pod must carry, with these values.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// The spec of a [`PrescientPolicy`]: which pods, and the policy of each of
/// their containers. Every field but the selector is optional; the pod's
/// `prescient.io/*` annotations override it, and defaults fill the rest.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[kube(
    group = "prescient.io",
    version = "v1alpha1",
    kind = "PrescientPolicy",
    plural = "prescientpolicies",
    shortname = "ppol",
    namespaced,
    status = "PrescientPolicyStatus",
    derive = "PartialEq",
    derive = "Default",
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"SLO","type":"number","jsonPath":".spec.sloQuantile"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PrescientPolicySpec {
    /// The pods of this namespace the policy manages.
    pub selector: PolicySelector,
    /// The share of predicted demand to cover, inside (0, 1): 0.95 sizes
    /// requests to the 95th percentile of forecast usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_quantile: Option<f64>,
    /// Priority class: pods of a higher class reach their SLO on a full
    /// node before pods of a lower one get anything above their minimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Weight within the priority class (> 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
    /// The CPU request never goes below this (a quantity, e.g. "100m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cpu: Option<String>,
    /// The CPU request never goes above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cpu: Option<String>,
    /// The memory request never goes below this (e.g. "128Mi").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory: Option<String>,
    /// The memory request never goes above this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    /// Overrides the controller's mode for these pods (a controller started
    /// in recommend mode never resizes, whatever this says).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

/// What the controller recommends for the pods of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PrescientPolicyStatus {
    /// Per container, keyed `POD/CONTAINER`: written with JSON merge
    /// patches, so that controllers sharded by node each update only their
    /// own pods' entries.
    #[serde(default)]
    pub recommendations: BTreeMap<String, Recommendation>,
}

/// The recommendation for one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// Recommended CPU request (a quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    /// Recommended memory request (a quantity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// When it was made (RFC 3339).
    pub time: String,
}

/// The CRD as YAML, the way `prescient kube crd` prints it and
/// `deploy/kubernetes/crd.yaml` holds it.
pub fn crd_yaml() -> String {
    let crd = PrescientPolicy::crd();
    let yaml = serde_yaml::to_string(&crd).unwrap_or_default();
    format!("# Generated by `prescient kube crd`: do not edit.\n{yaml}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_names_and_scope() {
        let crd = PrescientPolicy::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("prescientpolicies.prescient.io")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        assert!(crd_yaml().contains("kind: CustomResourceDefinition"));
    }

    #[test]
    fn spec_reads_camel_case() {
        let spec: PrescientPolicySpec = serde_json::from_value(serde_json::json!({
            "selector": {"matchLabels": {"app": "web"}},
            "sloQuantile": 0.99, "minCpu": "100m", "mode": "enforce"
        }))
        .unwrap();
        assert_eq!(spec.slo_quantile, Some(0.99));
        assert_eq!(spec.min_cpu.as_deref(), Some("100m"));
        assert_eq!(spec.mode, Some(Mode::Enforce));
        assert_eq!(spec.selector.match_labels["app"], "web");
    }
}
