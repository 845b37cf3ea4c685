//! Bad input, and capacity that cannot honour the guarantees.

use std::fmt;

use prescient_core::{PolicyError, ProfileError, Resource};
use serde::Serialize;

/// One thing wrong with a problem, naming what is at fault and the numbers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// A workload's policy cannot be honoured as written (a limit below the
    /// guarantee, an SLO quantile outside (0, 1), ...).
    #[error("workload '{workload}' {resource}: {source}")]
    Policy {
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
        /// What is wrong.
        source: PolicyError,
    },
    /// A workload's demand profile is malformed (quantiles not increasing, ...).
    #[error("workload '{workload}' {resource}: demand profile: {source}")]
    Profile {
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
        /// What is wrong.
        source: ProfileError,
    },
    /// A demand profile with no steps.
    #[error("workload '{workload}' {resource}: the demand profile has no steps")]
    EmptyProfile {
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
    },
    /// A capacity, reserve or tier amount that is negative or not a number.
    #[error("pool '{pool}' {resource}: {what} {value} must be a finite number >= 0")]
    BadAmount {
        /// The pool.
        pool: String,
        /// The resource.
        resource: Resource,
        /// Which amount ("capacity", "reserve", "tier 'x' capacity", ...).
        what: String,
        /// The value.
        value: f64,
    },
    /// An allocation unit that is not positive.
    #[error("allocation unit {unit} for {resource} must be a finite number > 0")]
    BadUnit {
        /// The resource.
        resource: Resource,
        /// The unit.
        unit: f64,
    },
    /// A capacity of more allocation units than the solver counts.
    #[error(
        "pool '{pool}' {resource}: capacity {capacity} is {units:.0} allocation units of {unit}; at most {max} are supported: use a larger unit"
    )]
    TooManyUnits {
        /// The pool.
        pool: String,
        /// The resource.
        resource: Resource,
        /// The capacity.
        capacity: f64,
        /// The unit.
        unit: f64,
        /// Capacity / unit.
        units: f64,
        /// The most supported.
        max: u32,
    },
    /// Two workloads with one name.
    #[error("workload '{0}' appears twice: names must be unique")]
    DuplicateWorkload(String),
    /// A workload planned twice for one resource.
    #[error("workload '{workload}' lists {resource} twice")]
    DuplicateResource {
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
    },
    /// Two pools with one name.
    #[error("pool '{0}' appears twice: names must be unique")]
    DuplicatePool(String),
    /// A reference to a pool that does not exist.
    #[error("{what} refers to pool #{index}, but there are {pools} pools")]
    NoSuchPool {
        /// Who refers to it.
        what: String,
        /// The index.
        index: usize,
        /// How many pools there are.
        pools: usize,
    },
    /// Pools whose parents go round in a circle.
    #[error("pool '{0}' is its own ancestor: pools must form a tree")]
    PoolCycle(String),
    /// A current tier that the workload's pool does not have.
    #[error(
        "workload '{workload}' {resource}: current tier #{tier}, but pool '{pool}' has {tiers} tiers"
    )]
    NoSuchTier {
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
        /// The tier index.
        tier: usize,
        /// The pool.
        pool: String,
        /// How many tiers it has.
        tiers: usize,
    },
    /// A current allocation that is negative or not a number.
    #[error(
        "workload '{workload}' {resource}: current allocation {value} must be a finite number >= 0"
    )]
    BadCurrent {
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
        /// The value.
        value: f64,
    },
    /// A request for a workload the problem does not have.
    #[error(
        "request #{index} ({justification:?}) is for workload '{workload}', which is not in the problem"
    )]
    RequestUnknownWorkload {
        /// Position of the request.
        index: usize,
        /// The workload named.
        workload: String,
        /// Its justification, to find it.
        justification: String,
    },
    /// A request for a resource the workload is not planned for.
    #[error(
        "request #{index} is for {resource} of workload '{workload}', which lists no {resource} demand"
    )]
    RequestUnknownResource {
        /// Position of the request.
        index: usize,
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
    },
    /// A request amount that is negative or not a number.
    #[error(
        "request #{index} for workload '{workload}' {resource}: amount {amount} must be a finite number >= 0"
    )]
    BadRequest {
        /// Position of the request.
        index: usize,
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
        /// The amount.
        amount: f64,
    },
}

/// Everything wrong with a problem (the solver checks it all before it
/// refuses it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ProblemError {
    /// Each thing wrong, in the order found.
    pub errors: Vec<InputError>,
}

impl fmt::Display for ProblemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

/// Guarantees above a pool's capacity: the plan honours them by priority
/// class, then in proportion to the guarantee, and says whom it cut.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
pub struct Overcommit {
    /// The pool.
    pub pool: String,
    /// The resource.
    pub resource: Resource,
    /// The guarantees of the pool's workloads (and its sub-pools'), in total.
    pub guaranteed: f64,
    /// The pool's capacity.
    pub capacity: f64,
    /// The workloads whose guarantee was cut: `(name, priority, guarantee, granted)`.
    pub cut: Vec<(String, u32, f64, f64)>,
}

impl fmt::Display for Overcommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pool '{}' {}: guarantees total {} but the capacity is {}; degraded plan, cut by priority then in proportion: ",
            self.pool,
            self.resource,
            crate::fmt_amount(self.resource, self.guaranteed),
            crate::fmt_amount(self.resource, self.capacity)
        )?;
        for (i, (name, priority, g, got)) in self.cut.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if i == 8 {
                write!(f, "and {} more", self.cut.len() - 8)?;
                break;
            }
            write!(
                f,
                "'{name}' (priority {priority}) {} -> {}",
                crate::fmt_amount(self.resource, *g),
                crate::fmt_amount(self.resource, *got)
            )?;
        }
        Ok(())
    }
}
