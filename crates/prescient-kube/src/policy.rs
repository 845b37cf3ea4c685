//! A pod's policy: defaults, then its [`PrescientPolicy`](crate::PrescientPolicy)'s
//! spec, then its `prescient.io/*` annotations. A bad value names the pod,
//! the annotation (or policy field) and the value; the pod is then skipped.

use std::collections::BTreeMap;

use crate::crd::{Mode, PrescientPolicySpec};
use crate::quantity::parse_quantity;

/// The label that opts a pod in (`prescient.io/managed: "true"`).
pub const MANAGED_LABEL: &str = "prescient.io/managed";
/// Annotation: the SLO quantile, inside (0, 1).
pub const ANN_SLO_QUANTILE: &str = "prescient.io/slo-quantile";
/// Annotation: the priority class (an unsigned integer).
pub const ANN_PRIORITY: &str = "prescient.io/priority";
/// Annotation: the weight within the class (> 0).
pub const ANN_WEIGHT: &str = "prescient.io/weight";
/// Annotation: the smallest CPU request (a quantity).
pub const ANN_MIN_CPU: &str = "prescient.io/min-cpu";
/// Annotation: the largest CPU request.
pub const ANN_MAX_CPU: &str = "prescient.io/max-cpu";
/// Annotation: the smallest memory request.
pub const ANN_MIN_MEMORY: &str = "prescient.io/min-memory";
/// Annotation: the largest memory request.
pub const ANN_MAX_MEMORY: &str = "prescient.io/max-memory";
/// Annotation: `recommend` or `enforce`, for this pod.
pub const ANN_MODE: &str = "prescient.io/mode";

/// Every annotation the controller reads.
pub const ANNOTATIONS: [&str; 8] = [
    ANN_SLO_QUANTILE,
    ANN_PRIORITY,
    ANN_WEIGHT,
    ANN_MIN_CPU,
    ANN_MAX_CPU,
    ANN_MIN_MEMORY,
    ANN_MAX_MEMORY,
    ANN_MODE,
];

/// A policy value that cannot be used: the pod is skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "pod {namespace}/{pod}: {source_name} = {value:?}: {why}; the pod is skipped until it is fixed"
)]
pub struct PolicyError {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// Where the value came from: `annotation prescient.io/min-cpu`, or
    /// `PrescientPolicy web field minCpu`.
    pub source_name: String,
    /// The value as written.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

/// The policy of every container of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPolicy {
    /// The share of predicted demand requests cover.
    pub slo_quantile: f64,
    /// Priority class.
    pub priority: u32,
    /// Weight within the class.
    pub weight: f64,
    /// Smallest CPU request, cores.
    pub min_cpu: Option<f64>,
    /// Largest CPU request, cores.
    pub max_cpu: Option<f64>,
    /// Smallest memory request, bytes.
    pub min_memory: Option<f64>,
    /// Largest memory request, bytes.
    pub max_memory: Option<f64>,
    /// The mode asked for this pod, if any.
    pub mode: Option<Mode>,
}

impl Default for PodPolicy {
    fn default() -> Self {
        PodPolicy {
            slo_quantile: 0.95,
            priority: 0,
            weight: 1.0,
            min_cpu: None,
            max_cpu: None,
            min_memory: None,
            max_memory: None,
            mode: None,
        }
    }
}

/// One value to apply: where it came from and its text.
struct Setting<'a> {
    source_name: String,
    value: String,
    key: &'a str,
}

impl PodPolicy {
    /// The policy of pod `namespace/pod`: `spec` (its PrescientPolicy,
    /// named `policy_name`), then its annotations.
    pub fn resolve(
        namespace: &str,
        pod: &str,
        policy: Option<(&str, &PrescientPolicySpec)>,
        annotations: &BTreeMap<String, String>,
    ) -> Result<PodPolicy, PolicyError> {
        let mut settings: Vec<Setting<'_>> = Vec::new();
        if let Some((name, spec)) = policy {
            let mut field = |field: &str, key: &'static str, value: Option<String>| {
                if let Some(value) = value {
                    settings.push(Setting {
                        source_name: format!("PrescientPolicy {name} field {field}"),
                        value,
                        key,
                    });
                }
            };
            field(
                "sloQuantile",
                ANN_SLO_QUANTILE,
                spec.slo_quantile.map(|v| v.to_string()),
            );
            field(
                "priority",
                ANN_PRIORITY,
                spec.priority.map(|v| v.to_string()),
            );
            field("weight", ANN_WEIGHT, spec.weight.map(|v| v.to_string()));
            field("minCpu", ANN_MIN_CPU, spec.min_cpu.clone());
            field("maxCpu", ANN_MAX_CPU, spec.max_cpu.clone());
            field("minMemory", ANN_MIN_MEMORY, spec.min_memory.clone());
            field("maxMemory", ANN_MAX_MEMORY, spec.max_memory.clone());
            field("mode", ANN_MODE, spec.mode.map(|m| m.to_string()));
        }
        for key in ANNOTATIONS {
            if let Some(value) = annotations.get(key) {
                settings.push(Setting {
                    source_name: format!("annotation {key}"),
                    value: value.clone(),
                    key,
                });
            }
        }
        let mut p = PodPolicy::default();
        for s in &settings {
            let fail = |why: String| PolicyError {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                source_name: s.source_name.clone(),
                value: s.value.clone(),
                why,
            };
            let v = s.value.trim();
            let number = || -> Result<f64, PolicyError> {
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| fail("not a number".to_string()))
            };
            let quantity = || parse_quantity(v).map(Some).map_err(|e| fail(e.to_string()));
            match s.key {
                ANN_SLO_QUANTILE => {
                    let q = number()?;
                    if !(q > 0.0 && q < 1.0) {
                        return Err(fail("must be inside (0, 1), e.g. 0.95".to_string()));
                    }
                    p.slo_quantile = q;
                }
                ANN_PRIORITY => {
                    p.priority = v
                        .parse()
                        .map_err(|_| fail("must be a whole number >= 0".to_string()))?;
                }
                ANN_WEIGHT => {
                    let w = number()?;
                    if w <= 0.0 {
                        return Err(fail("must be > 0".to_string()));
                    }
                    p.weight = w;
                }
                ANN_MIN_CPU => p.min_cpu = quantity()?,
                ANN_MAX_CPU => p.max_cpu = quantity()?,
                ANN_MIN_MEMORY => p.min_memory = quantity()?,
                ANN_MAX_MEMORY => p.max_memory = quantity()?,
                ANN_MODE => p.mode = Some(v.parse().map_err(fail)?),
                _ => {}
            }
        }
        for (min, max, what) in [
            (p.min_cpu, p.max_cpu, "CPU"),
            (p.min_memory, p.max_memory, "memory"),
        ] {
            if let (Some(lo), Some(hi)) = (min, max)
                && lo > hi
            {
                return Err(PolicyError {
                    namespace: namespace.to_string(),
                    pod: pod.to_string(),
                    source_name: format!("the {what} bounds"),
                    value: format!("min {lo}, max {hi}"),
                    why: format!("the minimum {what} is above the maximum"),
                });
            }
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_override_the_policy() {
        let spec = PrescientPolicySpec {
            slo_quantile: Some(0.9),
            priority: Some(3),
            min_cpu: Some("100m".into()),
            mode: Some(Mode::Enforce),
            ..Default::default()
        };
        let p = PodPolicy::resolve(
            "ns",
            "web-1",
            Some(("web", &spec)),
            &ann(&[(ANN_SLO_QUANTILE, "0.99"), (ANN_MAX_MEMORY, "1Gi")]),
        )
        .unwrap();
        assert_eq!(p.slo_quantile, 0.99);
        assert_eq!(p.priority, 3);
        assert_eq!(p.min_cpu, Some(0.1));
        assert_eq!(p.max_memory, Some(1_073_741_824.0));
        assert_eq!(p.mode, Some(Mode::Enforce));
    }

    #[test]
    fn bad_values_name_pod_and_annotation() {
        let cases = [
            (ANN_SLO_QUANTILE, "1.5", "inside (0, 1)"),
            (ANN_SLO_QUANTILE, "high", "not a number"),
            (ANN_PRIORITY, "-2", "whole number"),
            (ANN_WEIGHT, "0", "> 0"),
            (ANN_MIN_CPU, "lots", "not a Kubernetes quantity"),
            (ANN_MODE, "yolo", "not a mode"),
        ];
        for (key, value, why) in cases {
            let err = PodPolicy::resolve("ns", "web-1", None, &ann(&[(key, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("pod ns/web-1"), "{text}");
            assert!(text.contains(key), "{text}");
            assert!(text.contains(value), "{text}");
            assert!(text.contains(why), "{text}");
        }
        let spec = PrescientPolicySpec {
            max_memory: Some("a lot".into()),
            ..Default::default()
        };
        let err =
            PodPolicy::resolve("ns", "p", Some(("big", &spec)), &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("PrescientPolicy big field maxMemory"),
            "{err}"
        );
        let err = PodPolicy::resolve(
            "ns",
            "p",
            None,
            &ann(&[(ANN_MIN_CPU, "2"), (ANN_MAX_CPU, "1")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("minimum CPU is above"), "{err}");
    }
}
