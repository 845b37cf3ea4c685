use serde::{Deserialize, Serialize};

use crate::{HostId, Resource, TimestampMs, WorkloadId};

/// The partition decided for one pool at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// When the plan was made.
    pub made_at: TimestampMs,
    /// The pool (machine, slice or tier) it partitions.
    pub pool: HostId,
    /// True when guarantees could not all be met and the plan was cut back
    /// by priority, then in proportion.
    pub degraded: bool,
    /// One entry per workload and resource.
    pub entries: Vec<PlanEntry>,
}

/// What one workload gets of one resource, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanEntry {
    /// The workload.
    pub workload: WorkloadId,
    /// The resource.
    pub resource: Resource,
    /// The allocation, in the resource's unit.
    pub allocation: f64,
    /// Probability that the allocation covers demand over the planned steps.
    pub coverage: f64,
    /// Expected demand left unmet, in the resource's unit.
    pub expected_unmet: f64,
    /// Why, in words a person can read.
    pub reason: String,
}
