//! What the solver answers: an allocation per workload and resource with
//! its coverage, expected unmet demand and reason, and what happened to
//! requests, tiers and pools.

use std::fmt::Write as _;

use prescient_core::{HostId, Plan, PlanEntry, Resource, TimestampMs};
use serde::Serialize;

use crate::error::Overcommit;
use crate::fmt_amount;
use crate::problem::Problem;

/// The solver's answer to a [`Problem`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Solution {
    /// When the plan was made ([`Problem::at`]).
    pub at: TimestampMs,
    /// One entry per workload and resource, in the problem's order
    /// (workloads, then each workload's resources).
    pub entries: Vec<Entry>,
    /// Per pool and resource with a capacity: how it was used.
    pub pools: Vec<PoolUsage>,
    /// What became of each request, in the problem's order.
    pub requests: Vec<RequestOutcome>,
    /// Shares moved between tiers.
    pub moves: Vec<Move>,
    /// How allocations in pools with tiers are split over the tiers.
    pub tier_shares: Vec<TierShare>,
    /// Pools whose guarantees exceed their capacity (the plan is degraded).
    pub overcommitted: Vec<Overcommit>,
    /// Size of the solve.
    pub stats: SolveStats,
}

/// What one workload gets of one resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// Index of the workload in [`Problem::workloads`].
    pub workload: usize,
    /// The resource.
    pub resource: Resource,
    /// The allocation, in the resource's unit.
    pub allocation: f64,
    /// Mean over the planned steps of P(demand <= allocation).
    pub coverage: f64,
    /// Mean over the planned steps of E[(demand - allocation)+].
    pub expected_unmet: f64,
    /// Why: the facts the reason is written from (with the problem, see
    /// [`Entry::reason_text`]).
    pub reason: Reason,
}

/// The facts behind an allocation that only the solve knows; the rest
/// (SLO, forecast, request) [`Entry::reason_text`] reads from the problem.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reason {
    /// Where the allocation stands.
    pub outcome: Outcome,
    /// Whether the change cost kept the allocation where it was.
    pub held_by_change_cost: bool,
    /// The pool whose capacity stopped the allocation (or cut its
    /// guarantee), if one did.
    pub cut_by: Option<u32>,
    /// What that pool was serving when it filled up.
    pub cut_at: Option<Claim>,
    /// The guarantee honoured (below the policy's in a degraded plan).
    pub guarantee: f64,
}

/// Where an allocation stands against the workload's policy and forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its guarantee was cut: the pool's guarantees exceed its capacity.
    Degraded,
    /// At its guarantee, the pool being full.
    AtGuarantee,
    /// Above its guarantee, short of its SLO, the pool being full.
    ShortOfSlo,
    /// At its limit, below its SLO or request.
    AtLimit,
    /// Short of its SLO where it was: moving would cost more than it gains.
    HeldShort,
    /// At its SLO (or request).
    AtSlo,
    /// Above its SLO: spare capacity lent by marginal gain.
    AboveSlo,
    /// Covers all predicted demand.
    AllDemand,
    /// All predicted demand, plus spread spare capacity.
    Spread,
}

/// What a pool's capacity was serving when it ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "priority")]
pub enum Claim {
    /// Requests of this priority.
    Requests(u32),
    /// SLOs of this priority class.
    Slos(u32),
    /// Spare capacity, by marginal gain.
    Spare,
    /// Spare capacity spread beyond any forecast.
    Spread,
}

/// How a pool's capacity of one resource was used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolUsage {
    /// Index of the pool in [`Problem::pools`].
    pub pool: usize,
    /// The resource.
    pub resource: Resource,
    /// Its capacity (the least of its own and its tiers' total).
    pub capacity: f64,
    /// Guarantees of its workloads and sub-pools' (after any cut).
    pub guaranteed: f64,
    /// Allocated in all.
    pub allocated: f64,
    /// Left unallocated.
    pub free: f64,
    /// What its capacity was serving when it ran out, if it did.
    pub full_at: Option<Claim>,
    /// Allocated from each tier, `(tier index, amount)`, cheapest first.
    pub tiers: Vec<(usize, f64)>,
    /// The cost of what is allocated from priced tiers.
    pub cost: f64,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestOutcome {
    /// Index in [`Problem::requests`].
    pub request: usize,
    /// Granted, partly granted, or queued.
    pub status: RequestStatus,
    /// The allocation asked for (capped at the workload's limit).
    pub asked: f64,
    /// The allocation granted.
    pub granted: f64,
    /// What the workload would have had without any request.
    pub without: f64,
    /// Of the increase, what came from free capacity.
    pub from_free: f64,
    /// Of the increase, what came from other workloads: `(workload index, amount)`.
    pub borrowed: Vec<(usize, f64)>,
    /// Why it is queued, when it is.
    pub queued_because: Option<String>,
}

/// A request's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// All of it.
    Granted,
    /// Part of it; the rest is queued.
    Partial,
    /// None of it beyond what the workload had anyway; queued.
    Queued,
}

/// Part of an allocation drawn from one tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TierShare {
    /// Index of the workload.
    pub workload: usize,
    /// The resource.
    pub resource: Resource,
    /// The pool whose tier this is.
    pub pool: usize,
    /// The tier (index into the pool's tiers).
    pub tier: usize,
    /// How much.
    pub amount: f64,
}

/// A workload's share moved from one tier to another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Move {
    /// Index of the workload.
    pub workload: usize,
    /// The resource.
    pub resource: Resource,
    /// The pool whose tiers these are.
    pub pool: usize,
    /// The tier it leaves.
    pub from: usize,
    /// The tier it moves to.
    pub to: usize,
    /// How much.
    pub amount: f64,
    /// The change in cost (negative: a saving).
    pub cost_change: f64,
}

/// Size of a solve, and the memory its working structures held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SolveStats {
    /// Workload-resource pairs solved.
    pub curves: usize,
    /// Bytes held by the solver's working structures (from their
    /// capacities) at the end of the largest resource's solve (resources
    /// are solved one after another, reusing them), not counting the
    /// problem or the solution.
    pub working_bytes: usize,
    /// Workload-resources of that resource: `working_bytes /
    /// working_curves` is the working memory per workload-resource.
    pub working_curves: usize,
    /// Passes over the curves made by the threshold searches.
    pub passes: usize,
}

impl Solution {
    /// The allocation of `workload` (index) for `resource`, if planned.
    pub fn allocation(&self, workload: usize, resource: Resource) -> Option<f64> {
        self.entries
            .iter()
            .find(|e| e.workload == workload && e.resource == resource)
            .map(|e| e.allocation)
    }

    /// Whether guarantees had to be cut somewhere.
    pub fn degraded(&self) -> bool {
        !self.overcommitted.is_empty()
    }

    /// The plan in Prescient's vocabulary, one per root pool (a machine),
    /// with reasons in words.
    pub fn plans(&self, problem: &Problem) -> Vec<Plan> {
        let root_of = |mut p: usize| {
            let mut guard = 0;
            while let Some(parent) = problem.pools.get(p).and_then(|x| x.parent) {
                p = parent;
                guard += 1;
                if guard > problem.pools.len() {
                    break;
                }
            }
            p
        };
        let mut plans: Vec<(usize, Plan)> = Vec::new();
        for e in &self.entries {
            let w = &problem.workloads[e.workload];
            let root = root_of(w.pool);
            let i = match plans.iter().position(|(r, _)| *r == root) {
                Some(i) => i,
                None => {
                    let degraded = self.overcommitted.iter().any(|o| {
                        problem
                            .pools
                            .iter()
                            .position(|p| p.name == o.pool)
                            .is_some_and(|p| root_of(p) == root)
                    });
                    plans.push((
                        root,
                        Plan {
                            made_at: self.at,
                            pool: HostId(problem.pools[root].name.clone()),
                            degraded,
                            entries: Vec::new(),
                        },
                    ));
                    plans.len() - 1
                }
            };
            plans[i].1.entries.push(PlanEntry {
                workload: w.name.clone(),
                resource: e.resource,
                allocation: e.allocation,
                coverage: e.coverage,
                expected_unmet: e.expected_unmet,
                reason: e.reason_text(problem),
            });
        }
        plans.into_iter().map(|(_, p)| p).collect()
    }
}

impl Entry {
    /// The reason in words, e.g. "raised 0.5 core ahead of the rise to
    /// 1.5 cores at 09:00: covers its p95 (1.5 cores)" or "held at guarantee
    /// 0.25 core: pool 'host' full, SLOs of priority 5 first".
    pub fn reason_text(&self, problem: &Problem) -> String {
        let Some(wr) = problem
            .workloads
            .get(self.workload)
            .and_then(|w| w.resources.iter().find(|r| r.resource == self.resource))
        else {
            return String::new();
        };
        let r = &self.reason;
        let res = self.resource;
        let pol = &wr.policy;
        let f = crate::solve::demand_facts(problem, wr);
        let amt = |x: f64| fmt_amount(res, x);
        let pct = format_quantile(pol.slo_quantile);
        let pool_name = |p: Option<u32>| {
            p.and_then(|p| problem.pools.get(p as usize))
                .map(|p| p.name.as_str())
                .unwrap_or("?")
        };
        let full = || {
            let claim = match r.cut_at {
                Some(Claim::Requests(p)) => format!("requests of priority {p} first"),
                Some(Claim::Slos(p)) if p == pol.priority => {
                    format!("priority-{p} SLOs shared by marginal gain")
                }
                Some(Claim::Slos(p)) => format!("SLOs of priority {p} first"),
                Some(Claim::Spare) => "spare capacity shared by marginal gain".into(),
                Some(Claim::Spread) => "spare capacity spread".into(),
                None => "capacity exhausted".into(),
            };
            format!("pool '{}' full, {claim}", pool_name(r.cut_by))
        };
        let unit = problem.unit(res);
        let rise = (f.slo_step > 0 && f.slo_demand - f.first_step_demand >= unit).then(|| {
            (
                wr.demand.start + f.slo_step as i64 * wr.demand.step_ms,
                f.slo_demand,
            )
        });
        let mut s = String::new();
        // What changed.
        if let Some(cur) = wr.current {
            let d = self.allocation - cur;
            if r.held_by_change_cost && d.abs() < 0.5 * unit {
                let _ = write!(s, "kept at {}: moving costs more than it gains; ", amt(cur));
            } else if d >= 0.5 * unit {
                let _ = write!(s, "raised {}", amt(d));
                if let Some((ts, q)) = rise {
                    let _ = write!(s, " ahead of the rise to {} at {}", amt(q), clock(ts));
                }
                s.push_str(": ");
            } else if d <= -0.5 * unit {
                let _ = write!(s, "lowered {}: ", amt(-d));
            }
        } else if let Some((ts, q)) = rise {
            let _ = write!(s, "ahead of the rise to {} at {}: ", amt(q), clock(ts));
        }
        match r.outcome {
            Outcome::Degraded => {
                let _ = write!(
                    s,
                    "guarantee cut from {} to {}: pool '{}' has less capacity than its guarantees (degraded plan)",
                    amt(pol.guarantee),
                    amt(r.guarantee),
                    pool_name(r.cut_by)
                );
            }
            Outcome::AtGuarantee => {
                let _ = write!(s, "held at guarantee {}: {}", amt(r.guarantee), full());
            }
            Outcome::ShortOfSlo => {
                let _ = write!(s, "short of its {pct} ({}): {}", amt(f.slo_demand), full());
            }
            Outcome::AtLimit => {
                let _ = write!(
                    s,
                    "capped at its limit {} (its {pct} is {})",
                    amt(pol.limit.unwrap_or(self.allocation)),
                    amt(f.slo_demand)
                );
            }
            Outcome::HeldShort => {
                let _ = write!(s, "short of its {pct} ({})", amt(f.slo_demand));
            }
            Outcome::AtSlo => {
                let _ = write!(s, "covers its {pct} ({})", amt(f.slo_demand));
                if r.cut_by.is_some() {
                    let _ = write!(s, "; {}", full());
                }
            }
            Outcome::AboveSlo => {
                let _ = write!(
                    s,
                    "covers its {pct} ({}) plus {} of spare capacity lent by marginal gain",
                    amt(f.slo_demand),
                    amt((self.allocation - f.slo_demand).max(0.0))
                );
                if r.cut_by.is_some() {
                    let _ = write!(s, "; {}", full());
                }
            }
            Outcome::AllDemand => {
                let _ = write!(s, "covers all predicted demand (peak {})", amt(f.peak));
            }
            Outcome::Spread => {
                let _ = write!(
                    s,
                    "covers all predicted demand (peak {}) plus {} of spare capacity spread",
                    amt(f.peak),
                    amt((self.allocation - f.peak).max(0.0))
                );
            }
        }
        let asked = problem
            .requests
            .iter()
            .filter(|q| q.resource == res && q.workload == problem.workloads[self.workload].name)
            .map(|q| q.amount)
            .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.max(a))))
            .map(|a| pol.limit.map_or(a, |l| a.min(l)));
        if let Some(asked) = asked {
            if self.allocation + 0.5 * unit >= asked {
                let _ = write!(s, "; request for {} granted", amt(asked));
            } else {
                let _ = write!(
                    s,
                    "; request for {} queued ({} granted so far)",
                    amt(asked),
                    amt(self.allocation)
                );
            }
        }
        s
    }
}

/// "p95", "p99.9".
pub(crate) fn format_quantile(q: f64) -> String {
    let p = q * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("p{}", p.round())
    } else {
        format!("p{}", (p * 1000.0).round() / 1000.0)
    }
}

/// Time of day, HH:MM (UTC), of a timestamp in milliseconds.
pub(crate) fn clock(ts: TimestampMs) -> String {
    let minutes = ts.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}
