//! What the solver is asked: pools with capacities, workloads with demand
//! profiles, policies and current allocations, and explicit requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use prescient_core::{DemandProfile, Resource, ResourcePolicy, TimestampMs, WorkloadId};

/// An amount per resource (capacities, reserves, costs).
pub type Amounts = BTreeMap<Resource, f64>;

/// One planning problem: every pool and workload of a machine (or of any
/// tree of pools), solved at once.
#[derive(Debug, Clone, Default)]
pub struct Problem {
    /// When the plan is made (the start of the first planned step).
    pub at: TimestampMs,
    /// How many horizon steps of each profile the plan must cover (at least
    /// 1): the allocation holds for all of them, and its value is the mean
    /// over them of the expected satisfied demand.
    pub steps: usize,
    /// Allocation units, for resources whose unit is not the default
    /// ([`Resource::default_allocation_unit`]).
    pub units: Amounts,
    /// The pools; a pool's parent comes before it or after it, any order.
    pub pools: Vec<Pool>,
    /// The workloads.
    pub workloads: Vec<Workload>,
    /// Explicit requests for more than the forecast.
    pub requests: Vec<Request>,
}

impl Problem {
    /// An empty problem at `at`, planning one step.
    pub fn new(at: TimestampMs) -> Self {
        Problem {
            at,
            steps: 1,
            ..Default::default()
        }
    }

    /// The allocation unit of `resource`.
    pub fn unit(&self, resource: Resource) -> f64 {
        self.units
            .get(&resource)
            .copied()
            .unwrap_or_else(|| resource.default_allocation_unit())
    }
}

/// A capacity to partition: a machine, a slice, a tier group. Pools nest:
/// what the workloads of a pool and of all the pools under it are given
/// never exceeds its capacity.
#[derive(Debug, Clone, Default)]
pub struct Pool {
    /// Its name, unique among pools.
    pub name: String,
    /// The index of the pool it nests in, if any.
    pub parent: Option<usize>,
    /// Capacity per resource, in the resource's unit. A resource without a
    /// capacity is not limited by this pool.
    pub capacity: Amounts,
    /// Capacity kept free rather than lent beyond the workloads' SLOs: it
    /// serves guarantees, SLOs and requests, never the spare-capacity phases.
    pub reserve: Amounts,
    /// Tiers the pool's capacity comes from, each with a cost per unit of
    /// resource; empty for one free tier of the whole capacity.
    pub tiers: Vec<Tier>,
    /// What to do with capacity that no forecast wants.
    pub spare: Spare,
}

/// Part of a pool's capacity with its own price, e.g. a guaranteed tier and
/// a cheaper burstable one.
#[derive(Debug, Clone, Default)]
pub struct Tier {
    /// Its name, unique within the pool.
    pub name: String,
    /// Its capacity per resource (a resource it does not list: none).
    pub capacity: Amounts,
    /// The cost of allocating one unit of the resource (one core, one byte)
    /// from this tier, in units of expected satisfied demand of that
    /// resource: a unit of spare capacity is lent from it only when it buys
    /// more than this.
    pub unit_cost: Amounts,
}

/// What becomes of capacity left once every workload has all the capacity
/// with any predicted gain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Spare {
    /// It stays free (and is reported as such).
    #[default]
    Keep,
    /// It is spread over the workloads (of change cost 0) in proportion to
    /// their weight times their predicted peak: under hard limits, headroom
    /// for demand the forecast did not see coming.
    Spread,
}

/// A workload, its pool, and what it asks of each resource.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Its name, unique in the problem.
    pub name: WorkloadId,
    /// The index of its pool.
    pub pool: usize,
    /// One entry per resource it is planned for.
    pub resources: Vec<WorkloadResource>,
}

/// A workload's demand, policy and current allocation for one resource.
#[derive(Debug, Clone)]
pub struct WorkloadResource {
    /// The resource.
    pub resource: Resource,
    /// Forecast demand.
    pub demand: Demand,
    /// Guarantee, limit, priority, weight, SLO, change cost, lending.
    pub policy: ResourcePolicy,
    /// What it holds now, if anything: changes from it cost
    /// `policy.change_cost` per unit of resource moved.
    pub current: Option<f64>,
    /// In a pool with tiers, the tier (index into the pool's tiers) that
    /// holds its current allocation.
    pub current_tier: Option<usize>,
}

/// Forecast demand of one workload and resource: quantiles of demand for
/// each horizon step at fixed levels, read as a piecewise-linear CDF exactly
/// as [`prescient_core::Quantiles`] reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// Start of the first step.
    pub start: TimestampMs,
    /// Length of a step.
    pub step_ms: i64,
    /// The quantile levels, strictly increasing in (0, 1); shared between
    /// workloads where they are the same.
    pub levels: Arc<[f64]>,
    /// Row-major: `values[h * levels.len() + i]` is step `h`'s quantile at
    /// `levels[i]`.
    pub values: Vec<f64>,
}

impl Demand {
    /// A demand from a (valid) profile.
    pub fn from_profile(profile: &DemandProfile) -> Self {
        let mut values = Vec::with_capacity(profile.horizon() * profile.levels().len());
        for step in profile.steps() {
            values.extend_from_slice(step.values());
        }
        Demand {
            start: profile.start,
            step_ms: profile.step_ms,
            levels: profile.levels().into(),
            values,
        }
    }

    /// Demand known exactly: all the mass on `value` for one step.
    pub fn point(start: TimestampMs, step_ms: i64, value: f64) -> Self {
        Demand {
            start,
            step_ms,
            levels: Arc::from([0.5]),
            values: vec![value],
        }
    }

    /// Number of steps.
    pub fn horizon(&self) -> usize {
        if self.levels.is_empty() {
            0
        } else {
            self.values.len() / self.levels.len()
        }
    }
}

/// An explicit ask for more than the forecast, by the workload or an
/// operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The workload.
    pub workload: WorkloadId,
    /// The resource.
    pub resource: Resource,
    /// The allocation asked for (in total, not on top of anything).
    pub amount: f64,
    /// Its priority: it ranks just before the SLOs of workloads of this
    /// priority class, and after those of higher classes.
    pub priority: u32,
    /// Why, in the requester's words.
    pub justification: String,
}
