//! The partition engine: splits each pool's capacity among its workloads by
//! their forecast demand, their policies and their priorities. Pure and
//! deterministic: no I/O, and the same problem gives the same plan whatever
//! the order of its workloads.
//!
//! # The problem
//!
//! Pools (a machine, a slice, a tier group) nest, and each has a capacity
//! per resource. Each workload sits in a pool and has, per resource, a
//! demand profile (quantiles per horizon step, read as a piecewise-linear
//! CDF), a policy ([`ResourcePolicy`]: guarantee `g`, limit, priority class
//! and weight `w`, SLO quantile `s`, change cost `c`, lendable) and maybe a
//! current allocation. Workloads or operators may add [`Request`]s for more
//! than the forecast. Allocations move in units `u` (default 1/8 core,
//! 64 MiB, 1 MiB/s, 10 ops/s; configurable per resource): a workload gets its
//! guarantee plus a whole number `k` of units, `a = g + k u`.
//!
//! # The objective
//!
//! Under a hard limit a workload is served `min(D, a)`, so the value of an
//! allocation is its expected satisfied demand `E[min(D, a)]`, whose
//! derivative is `P(D > a)`: the marginal gain of allocation is the
//! probability demand exceeds it, times the weight. Over the planned steps
//! the gain is averaged. Each unit `k` of a workload is worth
//!
//! ```text
//! v(k) = w · mean of P(D > x) over x in [g + k u, g + (k+1) u]   (its exact share of w·E[min(D, a)])
//!        ± c                                                    (+c below the current allocation, -c above)
//! ```
//!
//! and is labelled with a phase. In order, lexicographically:
//!
//! 1. every guarantee holds (if a pool's guarantees exceed its capacity,
//!    they are cut by priority class, then in proportion within the class
//!    that does not fit, the plan is marked degraded and the cut workloads
//!    named: see [`Overcommit`]);
//! 2. phase by phase from the highest priority class down: units up to a
//!    request of that priority (or held by a workload of that class that
//!    may not lend), then units up to the SLO quantile of the workloads of
//!    that class — higher classes reach their SLO before lower ones get
//!    anything above their guarantee;
//! 3. spare capacity, by marginal gain, across classes, unless the pool
//!    keeps it as a reserve or a priced tier costs more than the gain;
//! 4. optionally ([`Spare::Spread`]) capacity no forecast wants, spread in
//!    proportion to weight times predicted peak, so that under hard limits
//!    nothing is left idle.
//!
//! Within a phase the objective is the sum of the values of the units
//! taken; a unit worth nothing (`v <= 0`) is never taken, except an
//! explicit one: a request, or what a workload that may not lend holds
//! (ranked as a request at its own priority, so peers of its class cannot
//! take it and higher classes can). Those are taken whatever the forecast
//! says they are worth (counted at `max(v, 0)`, then by number). So the change
//! cost is an L1 penalty `c |a - a_current|` on the objective: a workload
//! grows only where a unit buys more than `c` and shrinks only where the
//! unit goes to one that gains more than its own gain plus `c`, which keeps
//! allocations still between steps when the forecast wobbles (no flapping).
//!
//! # Why the greedy is optimal
//!
//! `E[min(D, a)]` is concave in `a` (its derivative `P(D > a)` never rises)
//! and `-c |a - a_cur|` is concave, so along one workload the unit values
//! `v(k)` never rise; phases never fall (a unit is in the first phase whose
//! target reaches past it). Hence the key (phase, −value) only gets worse
//! along a workload, and any set of `m` units of a workload is beaten, in
//! every phase sum at once, by its first `m`: the constraint that a
//! workload's units be taken in order costs nothing. Without it the
//! problem is "choose at most `N` unit-sized items" (per pool, with pools
//! nesting: a laminar family), whose feasible sets form a matroid, and on a
//! matroid the greedy that takes items best-first while every pool above
//! them has room is optimal for every objective consistent with that order
//! — in particular for the lexicographic vector of phase sums. Units are
//! discrete, so this is exact for the discrete problem; the continuous
//! problem is its limit as `u` goes to 0. A unit that straddles the
//! boundary of two priced tiers pays the blend of their prices. (A fixed
//! cost per change, rather
//! than per unit moved, would make the problem non-concave — a knapsack
//! with set-up costs — and is not modelled.) The property tests check the
//! solver against exhaustive search and against an LP (good_lp + microlp)
//! on small instances, to 1e-6 of every phase sum.
//!
//! Priced tiers keep this structure: the `j`-th unit of a tiered pool comes
//! from the cheapest tier with room, so its price rises with `j` while
//! values fall, and units are taken while they are worth more than their
//! price (a concave objective in the pool's total).
//!
//! # The algorithm
//!
//! The greedy is not run unit by unit (100,000 workloads may hold millions
//! of units). What it takes is, for each pool, every unit whose key ranks at
//! or before the key of the pool's `N`-th best unit, where `N` is the
//! pool's budget in units (net of guarantees, reserve and tier prices); a
//! pool's threshold caps the curves under it, so pools are solved from the
//! leaves up, each on the curves as its sub-pools left them. The `N`-th
//! key is found by a threshold search on the marginal gain
//! ([`search`](self)): pick the phase from per-phase totals, then bracket
//! the value — first from a sample of 256 curves, whose rank of the
//! threshold, give or take four standard deviations, brackets it for all in
//! one pass; then with pivots (weighted medians of sampled candidates) — each
//! curve counts the units above a value with a galloping search started at
//! the inverse of its survival curve, which is nearly always right at once
//! — dropping curves that have no candidate left, and sort the last few
//! hundred candidates. Ties in value (a point mass, identical workloads) go
//! to the lower allocation first, then by name, which levels allocations
//! and makes the plan independent of the input order. Each pass is linear
//! in the curves still undecided; a few passes decide most of them.
//!
//! # What the plan says
//!
//! [`Solution`] has, per workload and resource, the allocation, its
//! coverage (mean over the planned steps of `P(D <= a)`), the expected
//! unmet demand (mean of `E[(D - a)+]`), and a [`Reason`] that
//! [`Entry::reason_text`] writes out ("raised 0.5 core ahead of the rise to
//! 1.5 cores at 09:00: covers its p95 (1.5 cores)", "held at guarantee
//! 0.25 core: pool 'host' full, SLOs of priority 5 first"); per request,
//! whether it was granted and from where ([`RequestOutcome`]); the moves
//! between tiers ([`Move`]); and each pool's usage. [`Solution::plans`]
//! turns it into [`prescient_core::Plan`]s.

mod curve;
mod error;
mod problem;
mod search;
mod solution;
mod solve;

pub use error::{InputError, Overcommit, ProblemError};
pub use prescient_core::ResourcePolicy;
pub use problem::{
    Amounts, Demand, Pool, Problem, Request, Spare, Tier, Workload, WorkloadResource,
};
pub use solution::{
    Claim, Entry, Move, Outcome, PoolUsage, Reason, RequestOutcome, RequestStatus, Solution,
    SolveStats, TierShare,
};
pub use solve::{MAX_UNITS, Solver, solve};

use prescient_core::Resource;

/// An amount of `resource` for people: "0.5 core", "1.5 GiB", "12 MiB/s",
/// "250 ops/s".
pub fn fmt_amount(resource: Resource, x: f64) -> String {
    fn trim(x: f64, digits: usize) -> String {
        let s = format!("{x:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
    fn bytes(x: f64, suffix: &str) -> String {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = x;
        let mut i = 0;
        while v.abs() >= 1024.0 && i + 1 < UNITS.len() {
            v /= 1024.0;
            i += 1;
        }
        format!("{} {}{suffix}", trim(v, 2), UNITS[i])
    }
    match resource {
        Resource::Cpu => {
            let s = trim(x, 3);
            if x.abs() <= 1.0 {
                format!("{s} core")
            } else {
                format!("{s} cores")
            }
        }
        Resource::Memory => bytes(x, ""),
        Resource::IoRead | Resource::IoWrite | Resource::NetRx | Resource::NetTx => bytes(x, "/s"),
        Resource::DiskIo => format!("{}%", trim(x, 2)),
        Resource::IoReadOps | Resource::IoWriteOps => format!("{} ops/s", trim(x, 2)),
    }
}
