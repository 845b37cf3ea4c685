//! A Kubernetes controller that sizes the CPU and memory requests of the
//! pods that opt in from forecast usage, node by node, and applies them by
//! in-place pod resize (`pods/{name}/resize`, Kubernetes 1.33+) or writes
//! them as recommendations into [`PrescientPolicy`] status.
//!
//! - [`quantity`]: Kubernetes quantities to numbers and back;
//! - [`crd`]: the `PrescientPolicy` custom resource;
//! - [`policy`]: a pod's policy from its PrescientPolicy and annotations;
//! - [`snapshot`]: a node and its pods as the planner sees them;
//! - [`plan`]: the pure core, [`Planner`]: forecasts, solve, and whether a
//!   resize may be applied now;
//! - [`controller`]: [`Controller`], the watches, usage, resizes and status;
//! - [`rbac`]: the API calls the controller makes (checked against the
//!   ClusterRole in `deploy/kubernetes/`).

pub mod controller;
pub mod crd;
pub mod plan;
pub mod policy;
pub mod quantity;
pub mod rbac;
pub mod snapshot;
pub mod usage;

pub use controller::{Controller, ControllerConfig, CycleReport, Outcome, PodOutcome};
pub use crd::{Mode, PrescientPolicy, PrescientPolicySpec, PrescientPolicyStatus, Recommendation};
pub use plan::{Action, ContainerPlan, NodePlan, Planner, PlannerConfig, PodPlan, Target};
pub use policy::{PodPolicy, PolicyError};
pub use snapshot::{NodeSnapshot, PodSnapshot, Usage, UsageMap};
pub use usage::UsageSource;
