//! Trace replay: score sizing policies on a recorded trace, exactly as
//! `DESIGN.md` ("How results are scored") defines it.
//!
//! - [`ReplayTrace`] loads one resource of a trace, grouped by host on a
//!   common time grid.
//! - [`policy`] is the interface a sizing policy implements; [`policies`]
//!   holds the reference policies (VPA, Autopilot, simple ones).
//! - [`replay()`] runs a policy at one or many knob settings, uncontended or
//!   on hosts with a capacity (hard limits or shares), and [`metrics`] turns
//!   what happened into violation, unmet, slack and slack@X%.

pub mod metrics;
pub mod policies;
pub mod policy;
pub mod replay;
pub mod trace;

pub use metrics::{Crossing, Curve, Score, Tally};
pub use policy::{HostState, Knob, Policy, SeriesInfo, SeriesState};
pub use replay::{Capacity, Enforcement, ReplayConfig, ReplayError, Run, replay};
pub use trace::{HostTrace, LoadError, ReplayTrace, SeriesTrace};
