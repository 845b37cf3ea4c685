//! Prescient's vocabulary, shared by every stage of the loop
//! (collect → store → forecast → plan → enforce → feedback).
//!
//! Nothing here does I/O: these are plain values with validation.
//!
//! - [`Resource`]: what is allocated, with its unit and allocation unit.
//! - [`HostId`], [`WorkloadId`], [`SeriesKey`]: who uses it.
//! - [`Sample`]: one observation of usage.
//! - [`DemandProfile`]: forecast demand, quantiles per horizon step, read as a
//!   piecewise-linear CDF through [`Quantiles`].
//! - [`ResourcePolicy`]: guarantees, limits, priority and SLO of one workload.
//! - [`Plan`]: the partition the solver decided, with reasons.

mod ids;
mod plan;
mod policy;
mod profile;
mod resource;
mod sample;

pub use ids::{HostId, SeriesKey, WorkloadId};
pub use plan::{Plan, PlanEntry};
pub use policy::{PolicyError, ResourcePolicy};
pub use profile::{DemandProfile, ProfileError, Quantiles};
pub use resource::{Resource, UnknownResource};
pub use sample::{Sample, TimestampMs, counter_rate};
