//! The solve: checks the problem, then for each resource (in parallel when
//! there are several) builds the curves, cuts guarantees where a pool cannot
//! hold them, walks the pools from the leaves up finding each one's
//! threshold, and writes the plan.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use prescient_core::{ProfileError, Resource};
use rayon::prelude::*;

use crate::curve::{self, Scratch, Survival};
use crate::error::{InputError, Overcommit, ProblemError};
use crate::problem::{Demand, Problem, Spare, Workload, WorkloadResource};
use crate::search::{Curve, NO_POOL, Phase, SearchSpace, Seg, View, first_false, unit_value};
use crate::solution::{
    Claim, Entry, Move, Outcome, PoolUsage, Reason, RequestOutcome, RequestStatus, Solution,
    SolveStats, TierShare,
};

/// Workloads from which a parallel solve checks the workloads in chunks in
/// parallel, and that their names are unique alongside.
const NAMES_APART: usize = 4096;

/// Workloads per chunk of a parallel check.
const CHECK_CHUNK: usize = 4096;

/// Entries from which a parallel solve merges the resources' entries in
/// parallel.
const MERGE_APART: usize = 16_384;

/// The most allocation units a capacity (or a limit) may hold.
pub const MAX_UNITS: u32 = 1 << 30;

/// A solver with working space kept between solves, so that solving every
/// step of a replay allocates little once warm.
///
/// Resources are independent problems; a solve with several solves them on
/// rayon's thread pool, each in its own working space, unless
/// [`Solver::set_parallel`] turned that off. The plan is the same either way.
#[derive(Debug)]
pub struct Solver {
    /// One working space per resource of the last solves.
    spaces: Vec<Workspace>,
    parallel: bool,
}

impl Default for Solver {
    fn default() -> Self {
        Solver {
            spaces: Vec::new(),
            parallel: true,
        }
    }
}

/// The working space of one resource's solve.
#[derive(Debug, Default)]
struct Workspace {
    xs: Vec<f64>,
    ss: Vec<f64>,
    scratch: Scratch,
    curves: Vec<Curve>,
    segs: Vec<Seg>,
    search: SearchSpace,
    /// Curve indices in pool pre-order (each pool's subtree contiguous).
    order: Vec<u32>,
    targets: Vec<(u32, Phase)>,
    /// Per curve (pre-order): (workload, resource slot), its index in the
    /// resource's member list, guarantee, priority, the pool that cut its
    /// guarantee, the end of its explicit requests.
    raw: Vec<(u32, u32)>,
    member: Vec<u32>,
    g: Vec<f64>,
    prio: Vec<u32>,
    /// Per curve, copied from the input: its pool, limit (NaN: none), what
    /// it holds when it may not lend (NaN otherwise), and its demand at its
    /// SLO quantile.
    pool: Vec<u32>,
    limit: Vec<f64>,
    held: Vec<f64>,
    slo: Vec<f64>,
    cut_pool: Vec<u32>,
    request_end: Vec<u32>,
    /// Per curve, what the reasons need besides what the search reads.
    notes: Vec<Notes>,
    count_at: Vec<usize>,
    start_of: Vec<usize>,
    /// `1 - levels` of the last levels seen (most profiles share theirs),
    /// and whether those levels are valid.
    one_minus: Vec<f64>,
    levels_seen: Option<(usize, usize, bool)>,
    /// Per workload: its allocation of the resource being solved (only
    /// when there are requests to report on).
    alloc: Vec<f64>,
    /// The plan's entries of this resource, in member order (the order of
    /// the workloads in the problem).
    entries: Vec<Entry>,
    /// Largest working set of this resource's solves.
    peak_bytes: usize,
}

impl Workspace {
    fn bytes(&self) -> usize {
        self.xs.capacity() * 8
            + self.ss.capacity() * 8
            + self.scratch.bytes()
            + self.curves.capacity() * std::mem::size_of::<Curve>()
            + self.segs.capacity() * std::mem::size_of::<Seg>()
            + self.search.bytes()
            + self.order.capacity() * 4
            + self.targets.capacity() * std::mem::size_of::<(u32, Phase)>()
            + self.raw.capacity() * 8
            + self.member.capacity() * 4
            + self.g.capacity() * 8
            + self.prio.capacity() * 4
            + self.pool.capacity() * 4
            + (self.limit.capacity() + self.held.capacity() + self.slo.capacity()) * 8
            + self.cut_pool.capacity() * 4
            + self.request_end.capacity() * 4
            + self.notes.capacity() * std::mem::size_of::<Notes>()
            + (self.count_at.capacity() + self.start_of.capacity()) * 8
            + self.one_minus.capacity() * 8
            + self.alloc.capacity() * 8
            + self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}

/// What the reasons need of a curve besides what the search reads (kept
/// apart so that the passes of the search read less).
#[derive(Debug, Clone, Copy)]
struct Notes {
    /// Units up to its SLO target.
    t: u32,
    /// Units allowed by its limit (`u32::MAX`: no limit).
    lim: u32,
    /// The pool that cut its guarantee or last lowered its floor, and the
    /// phase that pool was serving.
    cut_by: u32,
    cut_phase: Phase,
}

/// Solves `problem` with a fresh [`Solver`].
pub fn solve(problem: &Problem) -> Result<Solution, ProblemError> {
    Solver::default().solve(problem)
}

/// The pool tree, checked.
struct Tree {
    /// Pools in pre-order, and each pool's position in it.
    pre: Vec<usize>,
    pos: Vec<usize>,
    /// Size of each pool's subtree (itself included).
    size: Vec<usize>,
}

/// What the check of a problem's structure gives the solve.
struct Checked {
    tree: Tree,
    /// Per resource planned (in order): who has it, `(workload, slot)` in
    /// the order of the workloads.
    members: Vec<ResourceJob>,
    /// Per entry of the plan (workloads, then their resources): the index
    /// of its resource in `members`.
    entry_resource: Vec<u8>,
}

/// A workload-resource the check of the structure let through is not valid
/// (its policy, demand, current allocation or tier): the whole problem is
/// checked again to name every error.
struct Invalid;

/// What a workload's forecast says, as the reasons quote it.
pub(crate) struct DemandFacts {
    /// Demand at the SLO quantile: the highest over the planned steps.
    pub slo_demand: f64,
    /// The step that sets it, and the first step's.
    pub slo_step: usize,
    pub first_step_demand: f64,
    /// The largest demand predicted.
    pub peak: f64,
}

/// The SLO demand and peak of a workload-resource's forecast.
pub(crate) fn demand_facts(problem: &Problem, wr: &WorkloadResource) -> DemandFacts {
    let d = &wr.demand;
    let n = d.levels.len();
    let steps = problem.steps.max(1).min(d.horizon()).max(1);
    let mut f = DemandFacts {
        slo_demand: 0.0,
        slo_step: 0,
        first_step_demand: 0.0,
        peak: 0.0,
    };
    for h in 0..steps {
        let Some(row) = d.values.get(h * n..(h + 1) * n) else {
            break;
        };
        let q = step_quantile(&d.levels, row, wr.policy.slo_quantile);
        if h == 0 {
            f.first_step_demand = q;
        }
        if h == 0 || q > f.slo_demand {
            f.slo_demand = q;
            f.slo_step = h;
        }
        f.peak = f.peak.max(curve::step_top(&d.levels, row));
    }
    f
}

/// One resource's share of a solve: the resource and who has it, as
/// `(workload, slot)`.
type ResourceJob = (Resource, Vec<(u32, u32)>);

/// What the solve of every resource shares, read-only.
struct Ctx<'a> {
    problem: &'a Problem,
    tree: &'a Tree,
    /// Requests by (workload, resource).
    requests: &'a HashMap<(usize, Resource), Vec<usize>>,
    /// Each workload's pool's position in the tree's pre-order.
    pool_pos: &'a [u32],
}

/// What one resource's solve adds to the plan besides its entries.
#[derive(Default)]
struct ResourceOut {
    pools: Vec<PoolUsage>,
    moves: Vec<Move>,
    tier_shares: Vec<TierShare>,
    overcommitted: Vec<Overcommit>,
    requests: Vec<RequestOutcome>,
}

impl Solver {
    /// A solver with empty working space.
    pub fn new() -> Self {
        Solver::default()
    }

    /// Whether to solve the resources of a problem in parallel (the
    /// default) or one after another on the calling thread. The plan is the
    /// same either way.
    pub fn set_parallel(&mut self, parallel: bool) -> &mut Self {
        self.parallel = parallel;
        self
    }

    /// Bytes held by the working space now (from the capacities of its
    /// buffers).
    pub fn working_bytes(&self) -> usize {
        self.spaces.iter().map(Workspace::bytes).sum()
    }

    /// Solves `problem`: every error of the input at once, or the plan.
    /// Guarantees above a pool's capacity do not fail: the plan is degraded
    /// and says so ([`Solution::overcommitted`]).
    pub fn solve(&mut self, problem: &Problem) -> Result<Solution, ProblemError> {
        // The structure first (pools, names, units, requests, who has which
        // resource); each workload-resource is checked as its curve is
        // built, and should anything be wrong the whole problem is checked
        // again, the way that names every error.
        // On large problems unique names are checked alongside the rest of
        // the check (whose workloads are checked in chunks in parallel:
        // reading every name is a good share of the work there, and the
        // solves then have every thread), and should they not be, the
        // problem is checked again in full.
        let names_apart = self.parallel && problem.workloads.len() >= NAMES_APART;
        let (checked, names_unique) = if names_apart {
            rayon::join(
                || check(problem, false, false, true),
                || duplicate_names(problem).is_empty(),
            )
        } else {
            (check(problem, false, true, false), true)
        };
        let checked = match checked {
            Ok(c) if names_unique => c,
            Ok(_) => {
                return Err(check(problem, true, true, false)
                    .err()
                    .unwrap_or(ProblemError { errors: Vec::new() }));
            }
            Err(e) => return Err(check(problem, true, true, false).err().unwrap_or(e)),
        };
        let Checked {
            tree,
            members,
            entry_resource,
        } = checked;
        // Requests by (workload, resource).
        let mut requests: HashMap<(usize, Resource), Vec<usize>> = HashMap::new();
        if !problem.requests.is_empty() {
            let by_name: HashMap<&str, usize> = problem
                .workloads
                .iter()
                .enumerate()
                .map(|(i, w)| (w.name.0.as_str(), i))
                .collect();
            for (i, r) in problem.requests.iter().enumerate() {
                // Checked: the workload exists.
                if let Some(&w) = by_name.get(r.workload.0.as_str()) {
                    requests.entry((w, r.resource)).or_default().push(i);
                }
            }
        }
        let pool_pos: Vec<u32> = problem
            .workloads
            .iter()
            .map(|w| tree.pos[w.pool] as u32)
            .collect();
        let cx = Ctx {
            problem,
            tree: &tree,
            requests: &requests,
            pool_pos: &pool_pos,
        };
        if self.spaces.len() < members.len() {
            self.spaces.resize_with(members.len(), Workspace::default);
        }
        let jobs = self.spaces.iter_mut().zip(&members);
        let run = |(ws, job): (&mut Workspace, &ResourceJob)| solve_one(ws, &cx, job.0, &job.1);
        type Out = Result<(ResourceOut, usize), Invalid>;
        let outs: Vec<Out> = if self.parallel && members.len() > 1 {
            jobs.collect::<Vec<_>>().into_par_iter().map(run).collect()
        } else {
            jobs.map(run).collect()
        };
        let mut out = Solution {
            at: problem.at,
            entries: Vec::with_capacity(entry_resource.len()),
            pools: Vec::new(),
            requests: Vec::new(),
            moves: Vec::new(),
            tier_shares: Vec::new(),
            overcommitted: Vec::new(),
            stats: SolveStats::default(),
        };
        let mut outcomes: Vec<Option<RequestOutcome>> = vec![None; problem.requests.len()];
        let mut passes = 0;
        for o in outs {
            let Ok((o, p)) = o else {
                return Err(check(problem, true, true, false)
                    .err()
                    .unwrap_or(ProblemError { errors: Vec::new() }));
            };
            passes += p;
            out.pools.extend(o.pools);
            out.moves.extend(o.moves);
            out.tier_shares.extend(o.tier_shares);
            out.overcommitted.extend(o.overcommitted);
            for r in o.requests {
                let i = r.request;
                outcomes[i] = Some(r);
            }
        }
        // The entries: each resource's, in the order of the workloads,
        // merged (on large problems in parallel: each entry's place in its
        // resource's list first, then the copies).
        let spaces = &self.spaces[..members.len()];
        let mut next = vec![0u32; members.len()];
        if self.parallel && entry_resource.len() >= MERGE_APART {
            let at: Vec<u32> = entry_resource
                .iter()
                .map(|&r| {
                    let i = next[r as usize];
                    next[r as usize] += 1;
                    i
                })
                .collect();
            entry_resource
                .par_iter()
                .zip(&at)
                .map(|(&r, &i)| spaces[r as usize].entries[i as usize].clone())
                .collect_into_vec(&mut out.entries);
        } else {
            for &r in &entry_resource {
                let r = r as usize;
                out.entries
                    .push(spaces[r].entries[next[r] as usize].clone());
                next[r] += 1;
            }
        }
        out.requests = outcomes.into_iter().flatten().collect();
        out.stats.curves = entry_resource.len();
        // Working memory: what all the working spaces in use hold at their
        // peak, for all the workload-resources (they run side by side).
        out.stats.working_bytes = spaces.iter().map(|w| w.peak_bytes).sum();
        out.stats.working_curves = entry_resource.len();
        out.stats.passes = passes;
        Ok(out)
    }
}

/// Solves one resource in `ws`: with requests, first without them (for the
/// report of what each request changed). Leaves the entries in `ws`.
fn solve_one(
    ws: &mut Workspace,
    cx: &Ctx<'_>,
    resource: Resource,
    members: &[(u32, u32)],
) -> Result<(ResourceOut, usize), Invalid> {
    ws.search.passes = 0;
    ws.peak_bytes = 0;
    let has_requests = cx.requests.keys().any(|k| k.1 == resource);
    let mut out = ResourceOut::default();
    let baseline = if has_requests {
        let no_requests = HashMap::new();
        Some(solve_resource(
            ws,
            cx,
            resource,
            members,
            &no_requests,
            None,
        )?)
    } else {
        None
    };
    let result = solve_resource(ws, cx, resource, members, cx.requests, Some(&mut out))?;
    if let Some(base) = baseline {
        let mut outcomes = vec![None; cx.problem.requests.len()];
        request_outcomes(
            cx.problem,
            resource,
            cx.requests,
            &base,
            &result,
            &mut outcomes,
        );
        out.requests = outcomes.into_iter().flatten().collect();
    }
    Ok((out, ws.search.passes))
}

/// Solves one resource. With `out`, writes its entries (into `ws`), pool
/// usage, moves and overcommits. Returns each workload's allocation (NaN
/// where it has none of this resource; only when there are requests) and
/// pool usage.
fn solve_resource(
    ws: &mut Workspace,
    cx: &Ctx<'_>,
    resource: Resource,
    members: &[(u32, u32)],
    requests: &HashMap<(usize, Resource), Vec<usize>>,
    out: Option<&mut ResourceOut>,
) -> Result<ResourceResult, Invalid> {
    let problem = cx.problem;
    let tree = cx.tree;
    let u = problem.unit(resource);
    let steps_wanted = problem.steps.max(1);
    let npools = problem.pools.len();

    // Curves in pool pre-order (counting sort), so each subtree is a range.
    ws.count_at.clear();
    ws.count_at.resize(npools + 1, 0);
    for &(wi, _) in members {
        ws.count_at[cx.pool_pos[wi as usize] as usize + 1] += 1;
    }
    for i in 0..npools {
        ws.count_at[i + 1] += ws.count_at[i];
    }
    ws.start_of.clear();
    ws.start_of.extend_from_slice(&ws.count_at);
    let start_of = &ws.start_of;
    let n = start_of[npools];
    ws.raw.clear();
    ws.raw.resize(n, (0, 0));
    ws.member.clear();
    ws.member.resize(n, 0);
    for (m, &(wi, slot)) in members.iter().enumerate() {
        let p = cx.pool_pos[wi as usize] as usize;
        let i = ws.count_at[p];
        ws.count_at[p] += 1;
        ws.raw[i] = (wi, slot);
        ws.member[i] = m as u32;
    }
    let range_of = |p: usize| -> (usize, usize) {
        let a = tree.pos[p];
        (start_of[a], start_of[a + tree.size[p]])
    };

    // One pass over the input, in that order: each workload-resource
    // checked, its curve built, and what the rest of the solve needs of it
    // copied out (so that nothing below reads the problem's workloads
    // again, whose data is scattered over the heap).
    ws.xs.clear();
    ws.ss.clear();
    ws.curves.clear();
    ws.g.clear();
    ws.prio.clear();
    ws.pool.clear();
    ws.limit.clear();
    ws.held.clear();
    ws.slo.clear();
    ws.levels_seen = None;
    let mut priorities: Vec<u32> = Vec::new();
    // Where the survival values most recent curves of several steps share
    // start, and where the standard survival values of the levels last
    // seen are (see curve::build_one), with the levels' key.
    let mut shared_ss: Option<usize> = None;
    let mut standard_ss: Option<((usize, usize), u32)> = None;
    // The SLO quantile's place among the levels last seen.
    let mut slo_at = SloAt::default();
    for i in 0..n {
        let (wi, slot) = ws.raw[i];
        let w = &problem.workloads[wi as usize];
        let wr = &w.resources[slot as usize];
        let pol = &wr.policy;
        let d = &wr.demand;
        if !valid_resource(
            wr,
            problem.pools[w.pool].tiers.len(),
            &mut ws.levels_seen,
            &mut ws.one_minus,
        ) {
            return Err(Invalid);
        }
        let steps = steps_wanted.min(d.horizon()).max(1);
        let pts = ws.xs.len() as u32;
        let ss_at = ws.ss.len();
        let nl = d.levels.len();
        let levels_key = (Arc::as_ptr(&d.levels) as *const f64 as usize, nl);
        // Most curves of one step with the same levels have the very same
        // survival values (1, 1 - levels, 0), only their x differ: those
        // share one copy of them, which halves the points the passes below read.
        let sso = if steps == 1 {
            if curve::build_one(&d.levels, &d.values, &ws.one_minus, &mut ws.xs, &mut ws.ss) {
                match standard_ss {
                    Some((key, at)) if key == levels_key => at,
                    _ => {
                        curve::push_standard(&ws.one_minus[..nl], &mut ws.ss);
                        standard_ss = Some((levels_key, ss_at as u32));
                        ss_at as u32
                    }
                }
            } else {
                ss_at as u32
            }
        } else {
            curve::build(
                &d.levels,
                &d.values,
                steps,
                &mut ws.xs,
                &mut ws.ss,
                &mut ws.scratch,
            );
            // Several steps: shared with the last such curve if the same.
            let new_ss = &ws.ss[ss_at..];
            (match shared_ss {
                Some(at)
                    if ws.ss.get(at..at + new_ss.len()).is_some_and(|t| {
                        at + t.len() <= ss_at
                            && t.iter()
                                .zip(new_ss)
                                .all(|(a, b)| a.to_bits() == b.to_bits())
                    }) =>
                {
                    ws.ss.truncate(ss_at);
                    at
                }
                _ => {
                    shared_ss = Some(ss_at);
                    ss_at
                }
            }) as u32
        };
        let npts = ws.xs.len() as u32 - pts;
        // SLO target: the highest SLO quantile over the planned steps.
        let mut slo = 0.0f64;
        for h in 0..steps {
            slo = slo.max(slo_at.quantile(
                levels_key,
                &d.levels,
                &d.values[h * nl..(h + 1) * nl],
                pol.slo_quantile,
            ));
        }
        let (c, cur) = match wr.current {
            Some(cur) if pol.change_cost > 0.0 => (pol.change_cost, cur),
            _ => (0.0, f64::NAN),
        };
        ws.curves.push(Curve {
            workload: wi,
            pts,
            sso,
            npts,
            seg: 0,
            nseg: 0,
            g: pol.guarantee,
            w: pol.weight,
            c,
            cur,
            sw: 0.0,
            z: 0,
            floor: 0,
        });
        ws.g.push(pol.guarantee);
        ws.prio.push(pol.priority);
        ws.pool.push(w.pool as u32);
        ws.limit.push(pol.limit.unwrap_or(f64::NAN));
        ws.held.push(match wr.current {
            Some(cur) if !pol.lendable => cur,
            _ => f64::NAN,
        });
        ws.slo.push(slo);
        if priorities.last() != Some(&pol.priority) && !priorities.contains(&pol.priority) {
            priorities.push(pol.priority);
        }
    }

    // Priority classes, highest first: requests 2r, SLOs 2r + 1.
    for (&(_, r), list) in requests {
        if r == resource {
            priorities.extend(list.iter().map(|&i| problem.requests[i].priority));
        }
    }
    priorities.sort_unstable_by(|a, b| b.cmp(a));
    priorities.dedup();
    let rank = |p: u32| priorities.partition_point(|&x| x > p) as Phase;
    let extra: Phase = 2 * priorities.len() as Phase;
    let spare: Phase = extra + 1;
    let claim = |phase: Phase| -> Claim {
        if phase == spare {
            Claim::Spread
        } else if phase == extra {
            Claim::Spare
        } else if phase.is_multiple_of(2) {
            Claim::Requests(priorities[(phase / 2) as usize])
        } else {
            Claim::Slos(priorities[(phase / 2) as usize])
        }
    };

    // Guarantees, cut where a pool cannot hold them (leaves first).
    let capacity: Vec<Option<f64>> = problem
        .pools
        .iter()
        .map(|p| {
            let own = p.capacity.get(&resource).copied();
            if p.tiers.is_empty() {
                own
            } else {
                let tiers: f64 = p
                    .tiers
                    .iter()
                    .map(|t| t.capacity.get(&resource).copied().unwrap_or(0.0))
                    .sum();
                Some(own.map_or(tiers, |c| c.min(tiers)))
            }
        })
        .collect();
    let mut overcommits = Vec::new();
    ws.cut_pool.clear();
    ws.cut_pool.resize(n, NO_POOL);
    for &p in tree.pre.iter().rev() {
        let Some(cap) = capacity[p] else { continue };
        let (a, b) = range_of(p);
        let total: f64 = ws.g[a..b].iter().sum();
        if total <= cap * (1.0 + 1e-12) {
            continue;
        }
        overcommits.push(degrade(
            problem,
            &ws.raw,
            &mut ws.g,
            a,
            b,
            cap,
            total,
            p,
            resource,
            &mut ws.cut_pool,
        ));
    }

    // Each pool's budget in units beyond guarantees, and the tightest
    // budget on the way to the root.
    let mut budget: Vec<Option<u32>> = vec![None; npools];
    let mut guaranteed = vec![0.0; npools];
    for p in 0..npools {
        let (a, b) = range_of(p);
        guaranteed[p] = ws.g[a..b].iter().sum();
        if let Some(cap) = capacity[p] {
            budget[p] = Some(units_within(cap - guaranteed[p], u));
        }
    }
    let mut bound: Vec<u32> = vec![MAX_UNITS; npools];
    let mut finite_bound = vec![false; npools];
    for &p in &tree.pre {
        let parent = problem.pools[p].parent;
        let up = parent.map_or(MAX_UNITS, |q| bound[q]);
        bound[p] = budget[p].map_or(up, |b| b.min(up));
        finite_bound[p] = parent.is_some_and(|q| finite_bound[q]) || capacity[p].is_some();
    }
    let spreads_in: Vec<bool> = (0..npools)
        .map(|p| problem.pools[p].spare == Spare::Spread && finite_bound[p])
        .collect();

    // Each curve's units: how many it may take, which are worth something,
    // and the phase of each stretch.
    ws.segs.clear();
    ws.request_end.clear();
    ws.notes.clear();
    for i in 0..n {
        let gi = ws.g[i];
        let degraded = ws.cut_pool[i] != NO_POOL;
        let pool = ws.pool[i] as usize;
        let cv = &mut ws.curves[i];
        cv.g = gi;
        cv.seg = ws.segs.len() as u32;
        let (c, cur) = (cv.c, cv.cur);
        let wi = cv.workload;
        let s = Survival {
            xs: &ws.xs[cv.pts as usize..(cv.pts + cv.npts) as usize],
            ss: &ws.ss[cv.sso as usize..(cv.sso + cv.npts) as usize],
        };
        let top = s.top();
        let limit = ws.limit[i];
        let limit_units = if degraded {
            0
        } else if limit.is_nan() {
            MAX_UNITS
        } else {
            units_within(limit - gi, u)
        };
        let lim = if !limit.is_nan() && !degraded {
            limit_units
        } else {
            u32::MAX
        };
        let cap_units = limit_units.min(bound[pool]);
        // The first unit worth nothing: past the top of demand (and,
        // with a change cost, where the gain falls below the cost).
        let z_value = if c == 0.0 {
            // Without a change cost a unit is worth something exactly
            // when it starts below the top of demand.
            let guess = ((top - gi) / u).min(cap_units as f64) as u32;
            first_false(0, cap_units, guess, |k| gi + k as f64 * u < top)
        } else {
            let mut z_cap = ceil((top - gi) / u).max(ceil((cur - gi) / u)).max(0.0);
            z_cap = (z_cap + 1.0).min(MAX_UNITS as f64);
            let z_hi = (z_cap as u32).min(cap_units);
            // Units below the current allocation are worth w S + c > 0;
            // above it w S - c, which reaches 0 where S falls to c / w:
            // guess there (any guess gives the same answer, a good one
            // fewer evaluations than one at the top of demand).
            let at = s.inverse(c / cv.w).max(cur);
            let guess = ((at - gi) / u).max(0.0).min(z_hi as f64) as u32;
            // Worth nothing within rounding (w S - c where S = c / w
            // comes out as 1e-17) counts as nothing.
            let eps = 1e-12 * (cv.w + c);
            let cvv = *cv;
            first_false(0, z_hi, guess, |k| unit_value(s, &cvv, k, u) > eps)
        };
        // Explicit targets are taken whatever the forecast says they are
        // worth: what a workload that may not lend holds, and requests.
        let held = ws.held[i];
        let keep = if held.is_nan() {
            0
        } else {
            units_within(held - gi, u).min(cap_units)
        };
        let list = if requests.is_empty() {
            None
        } else {
            requests.get(&(wi as usize, resource))
        };
        let mut explicit = keep;
        let mut request_end = 0;
        if let Some(list) = list {
            for &ri in list {
                let q = units_above(problem.requests[ri].amount - gi, u).min(cap_units);
                explicit = explicit.max(q);
                request_end = request_end.max(q);
            }
        }
        let z = z_value.max(explicit);
        let spreads = spreads_in[pool] && c == 0.0 && !degraded;
        let hi = if spreads { cap_units } else { z };
        if spreads && hi > z {
            cv.sw = cv.w * top.max(u);
        }
        cv.z = z;
        cv.floor = hi;
        // Units up to the SLO (not capped: the reasons compare with it).
        let t = units_above(ws.slo[i] - gi, u);
        ws.notes.push(Notes {
            t,
            lim,
            cut_by: ws.cut_pool[i],
            cut_phase: 0,
        });
        let prio = ws.prio[i];
        let slo_phase = 2 * rank(prio) + 1;
        let first = cv.seg as usize;
        let mut prev = 0;
        if keep == 0 && list.is_none() {
            // The common case: the SLO, then spare capacity.
            let end = t.min(hi).min(z);
            if end > 0 {
                push_seg(&mut ws.segs, first, end, slo_phase);
                prev = end;
            }
        } else {
            ws.targets.clear();
            // Holdings rank as a request at the workload's own priority:
            // peers of its class cannot take them, higher classes can.
            if keep > 0 {
                ws.targets.push((keep, 2 * rank(prio)));
            }
            for &ri in list.into_iter().flatten() {
                let r = &problem.requests[ri];
                let q = units_above(r.amount - gi, u).min(cap_units);
                ws.targets.push((q, 2 * rank(r.priority)));
            }
            ws.targets.push((t.min(hi), slo_phase));
            for x in ws.targets.iter_mut() {
                x.0 = x.0.min(z);
            }
            // The staircase of phases: unit k is in the first phase of the
            // targets that reach past it.
            ws.targets.sort_unstable();
            for j in 0..ws.targets.len() {
                let end = ws.targets[j].0;
                if end > prev {
                    let phase = ws.targets[j..].iter().map(|x| x.1).min().unwrap_or(extra);
                    push_seg(&mut ws.segs, first, end, phase);
                    prev = end;
                }
            }
        }
        if z > prev {
            push_seg(&mut ws.segs, first, z, extra);
        }
        if hi > z.max(prev) {
            push_seg(&mut ws.segs, first, hi, spare);
        }
        cv.nseg = ws.segs.len() as u32 - cv.seg;
        ws.request_end.push(request_end);
    }

    // The pools, leaves first: each one's threshold lowers the floors of
    // the curves under it.
    let mut full_at: Vec<Option<Phase>> = vec![None; npools];
    ws.search.totals.clear();
    ws.search.totals.resize(spare as usize + 1, 0);
    ws.order.clear();
    ws.order.extend(0..n as u32);
    for &p in tree.pre.iter().rev() {
        let Some(b) = budget[p] else { continue };
        let (ra, rb) = range_of(p);
        if ra == rb {
            continue;
        }
        let view = View {
            curves: &ws.curves,
            segs: &ws.segs,
            xs: &ws.xs,
            ss: &ws.ss,
            u,
            inv_u: 1.0 / u,
            workloads: &problem.workloads,
            spare,
        };
        let range = &ws.order[ra..rb];
        let (mut available, mut before_extra) = (0u64, 0u64);
        for &ci in range {
            let c = &ws.curves[ci as usize];
            available += c.floor as u64;
            before_extra += view.phase_span(ci, extra).0 as u64;
        }
        let pool = &problem.pools[p];
        let mut n_take = b as u64;
        // Priced tiers: beyond what guarantees, requests and SLOs need,
        // a unit comes from the cheapest tier with room and is taken
        // only when it is worth more than that tier's price.
        if !pool.tiers.is_empty() {
            let mut tiers: Vec<(f64, f64)> = pool
                .tiers
                .iter()
                .map(|t| {
                    (
                        t.unit_cost.get(&resource).copied().unwrap_or(0.0),
                        t.capacity.get(&resource).copied().unwrap_or(0.0),
                    )
                })
                .collect();
            tiers.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Unit j spans [G + j u, G + (j + 1) u] of the pool, filled
            // cheapest tier first; its price is the mean price over that
            // span (a unit across a tier boundary pays a blend). Prices
            // change only at the units holding a boundary, so walk the
            // stretches between those, checking each against the units
            // worth more than its price.
            let g_p = guaranteed[p];
            let mut breaks: Vec<u64> = vec![0];
            let mut cum = 0.0;
            for &(_, cap) in &tiers {
                cum += cap;
                let j = ((cum - g_p) / u).floor().max(0.0) as u64;
                breaks.push(j);
                breaks.push(j + 1);
            }
            breaks.push(b as u64);
            breaks.retain(|&j| j <= b as u64);
            breaks.sort_unstable();
            breaks.dedup();
            let mut take = b as u64;
            for win in breaks.windows(2) {
                let (j0, j1) = (win[0], win[1]);
                let price = unit_price(&tiers, g_p, u, j0);
                let good = if price > 0.0 {
                    view.count_above(range, extra, price)
                } else {
                    u64::MAX
                };
                if good < j1 {
                    take = good.max(j0);
                    break;
                }
            }
            n_take = take.min(b as u64);
        }
        if let Some(&reserve) = pool.reserve.get(&resource) {
            let keep = units_above(reserve, u) as u64;
            n_take = n_take.min(before_extra.max((b as u64).saturating_sub(keep)));
        }
        if n_take >= available {
            continue;
        }
        let phase = if n_take == 0 {
            ws.search.counts.clear();
            ws.search.counts.resize(rb - ra, 0);
            0
        } else {
            view.nth(range, n_take, &mut ws.search).phase
        };
        full_at[p] = Some(phase);
        for (j, ci) in (ra..rb).enumerate() {
            let c = &mut ws.curves[ci];
            let f = ws.search.counts[j].min(c.floor);
            if f < c.floor {
                c.floor = f;
                if ws.cut_pool[ci] == NO_POOL {
                    ws.notes[ci].cut_by = p as u32;
                    ws.notes[ci].cut_phase = phase;
                }
            }
        }
    }

    // Allocations (for the request report).
    ws.alloc.clear();
    if !requests.is_empty() || out.is_none() {
        ws.alloc.resize(problem.workloads.len(), f64::NAN);
        for c in &ws.curves {
            ws.alloc[c.workload as usize] = c.g + c.floor as f64 * u;
        }
    }
    let usage = pool_usage(
        problem,
        resource,
        &capacity,
        &guaranteed,
        &full_at,
        &claim,
        &range_of,
        &ws.curves,
        u,
    );
    let Some(out) = out else {
        ws.peak_bytes = ws.peak_bytes.max(ws.bytes());
        return Ok(ResourceResult {
            alloc: ws.alloc.clone(),
            usage,
        });
    };

    // Entries: allocation, coverage, expected unmet demand, reason.
    if ws.entries.len() != members.len() {
        ws.entries.clear();
        ws.entries.resize(members.len(), BLANK);
    }
    for (ci, c) in ws.curves.iter().enumerate() {
        let k = c.floor;
        let allocation = c.g + k as f64 * u;
        let s = Survival {
            xs: &ws.xs[c.pts as usize..(c.pts + c.npts) as usize],
            ss: &ws.ss[c.sso as usize..(c.sso + c.npts) as usize],
        };
        let notes = ws.notes[ci];
        let degraded = ws.cut_pool[ci] != NO_POOL;
        let cut = notes.cut_by != NO_POOL;
        let targets_end = notes.t.max(ws.request_end[ci]);
        let at_limit = k >= notes.lim;
        let top = s.top();
        let held = c.c > 0.0 && !cut && (allocation - c.cur).abs() < u && allocation < top;
        let outcome = if degraded {
            Outcome::Degraded
        } else if cut && k == 0 && targets_end > 0 {
            Outcome::AtGuarantee
        } else if cut && k < targets_end {
            Outcome::ShortOfSlo
        } else if k > c.z {
            Outcome::Spread
        } else if !cut && at_limit && allocation < top {
            Outcome::AtLimit
        } else if held && k < targets_end {
            Outcome::HeldShort
        } else if k == c.z && allocation >= top - 1e-12 {
            Outcome::AllDemand
        } else if k > targets_end {
            Outcome::AboveSlo
        } else {
            Outcome::AtSlo
        };
        let (coverage, expected_unmet) = s.coverage_and_excess(allocation);
        ws.entries[ws.member[ci] as usize] = Entry {
            workload: c.workload as usize,
            resource,
            allocation,
            coverage,
            expected_unmet,
            reason: Reason {
                outcome,
                held_by_change_cost: held,
                cut_by: cut.then_some(notes.cut_by),
                cut_at: (cut && !degraded).then(|| claim(notes.cut_phase)),
                guarantee: c.g,
            },
        };
    }

    // Pools: usage, tiers and moves.
    let mut usage_out = usage.clone();
    for usage_p in usage_out.iter_mut() {
        let p = usage_p.pool;
        if problem.pools[p].tiers.is_empty() {
            continue;
        }
        let (a, b) = range_of(p);
        let members: Vec<(usize, f64)> = ws.curves[a..b]
            .iter()
            .map(|c| (c.workload as usize, c.g + c.floor as f64 * u))
            .collect();
        assign_tiers(
            problem,
            p,
            resource,
            &members,
            usage_p,
            &mut out.moves,
            &mut out.tier_shares,
        );
    }
    out.pools.extend(usage_out);
    out.overcommitted.extend(overcommits);
    ws.peak_bytes = ws.peak_bytes.max(ws.bytes());
    Ok(ResourceResult {
        alloc: ws.alloc.clone(),
        usage,
    })
}

/// An entry before the solve writes it.
const BLANK: Entry = Entry {
    workload: 0,
    resource: Resource::Cpu,
    allocation: 0.0,
    coverage: 0.0,
    expected_unmet: 0.0,
    reason: Reason {
        outcome: Outcome::AtSlo,
        held_by_change_cost: false,
        cut_by: None,
        cut_at: None,
        guarantee: 0.0,
    },
};

/// Whether a workload-resource passes the checks [`check`] makes of it
/// (policy, demand, current allocation and tier), quickly: most demands
/// share their levels, which are checked once.
fn valid_resource(
    wr: &WorkloadResource,
    tiers: usize,
    levels_seen: &mut Option<(usize, usize, bool)>,
    one_minus: &mut Vec<f64>,
) -> bool {
    if wr.policy.validate().is_err() {
        return false;
    }
    if let Some(cur) = wr.current
        && !(cur.is_finite() && cur >= 0.0)
    {
        return false;
    }
    if wr.current_tier.is_some_and(|t| t >= tiers) {
        return false;
    }
    let d = &wr.demand;
    let levels = &d.levels;
    let key = (Arc::as_ptr(levels) as *const f64 as usize, levels.len());
    let levels_ok = match *levels_seen {
        Some((p, n, ok)) if (p, n) == key => ok,
        _ => {
            let ok = levels_valid(levels);
            *levels_seen = Some((key.0, key.1, ok));
            one_minus.clear();
            if ok {
                one_minus.extend(levels.iter().map(|&l| 1.0 - l));
            }
            ok
        }
    };
    levels_ok && values_valid(levels.len(), &d.values)
}

/// Levels strictly increasing in (0, 1) (as [`check_demand`] wants them).
fn levels_valid(levels: &[f64]) -> bool {
    let mut prev = 0.0;
    for &l in levels {
        if !(l > prev && l < 1.0) {
            return false;
        }
        prev = l;
    }
    !levels.is_empty()
}

/// Values that are whole non-empty steps of finite, non-negative,
/// non-decreasing quantiles (as [`check_demand`] wants them).
fn values_valid(n: usize, values: &[f64]) -> bool {
    if n == 0 || values.is_empty() || !values.len().is_multiple_of(n) {
        return false;
    }
    let mut ok = true;
    for row in values.chunks_exact(n) {
        // The first value at least 0, each at least the one before (so
        // that NaN anywhere fails a comparison), the last below +inf: then
        // all are finite and >= 0. Without a branch per value, so that it
        // vectorizes.
        ok &= (row[0] >= 0.0) & (row[n - 1] < f64::INFINITY);
        for (a, b) in row.iter().zip(&row[1..]) {
            ok &= b >= a;
        }
    }
    ok
}

/// How each pool with a capacity was used.
#[allow(clippy::too_many_arguments)]
fn pool_usage(
    problem: &Problem,
    resource: Resource,
    capacity: &[Option<f64>],
    guaranteed: &[f64],
    full_at: &[Option<Phase>],
    claim: &dyn Fn(Phase) -> Claim,
    range_of: &dyn Fn(usize) -> (usize, usize),
    curves: &[Curve],
    u: f64,
) -> Vec<PoolUsage> {
    let mut usage = Vec::new();
    for p in 0..problem.pools.len() {
        let Some(cap) = capacity[p] else { continue };
        let (a, b) = range_of(p);
        let allocated: f64 = curves[a..b].iter().map(|c| c.g + c.floor as f64 * u).sum();
        usage.push(PoolUsage {
            pool: p,
            resource,
            capacity: cap,
            guaranteed: guaranteed[p],
            allocated,
            free: (cap - allocated).max(0.0),
            full_at: full_at[p].map(claim),
            tiers: Vec::new(),
            cost: 0.0,
        });
    }
    usage
}

/// What one resource's solve leaves for the request report.
struct ResourceResult {
    /// Allocation per workload (NaN without this resource).
    alloc: Vec<f64>,
    usage: Vec<PoolUsage>,
}

/// The mean price per unit of resource of the `j`-th unit beyond a pool's
/// guarantees `g`, with tiers `(price, capacity)` filled cheapest first
/// (guarantees first); infinite past the last tier.
fn unit_price(tiers: &[(f64, f64)], g: f64, u: f64, j: u64) -> f64 {
    let (a, b) = (g + j as f64 * u, g + (j as f64 + 1.0) * u);
    let mut start = 0.0;
    let mut cost = 0.0;
    for &(price, cap) in tiers {
        let end = start + cap;
        let overlap = b.min(end) - a.max(start);
        if overlap > 0.0 {
            cost += price * overlap;
        }
        start = end;
    }
    if b > start + 1e-12 * b.abs().max(1.0) {
        return f64::INFINITY;
    }
    cost / (b - a)
}

/// Appends a segment to the curve whose segments start at `first`,
/// merging it into the previous one when they share a phase.
fn push_seg(segs: &mut Vec<Seg>, first: usize, end: u32, phase: Phase) {
    if segs.len() > first
        && let Some(last) = segs.last_mut()
        && last.phase == phase
    {
        last.end = end;
        return;
    }
    segs.push(Seg { end, phase });
}

/// Whole units in `amount` (0 for a negative amount), robust to rounding
/// (`amount / u` a hair below an integer still counts it).
fn units_within(amount: f64, u: f64) -> u32 {
    if amount.is_nan() || amount <= 0.0 {
        return 0;
    }
    let x = amount / u;
    let (f, r) = floor_round(x);
    let k = if (x - r).abs() <= 1e-9 * r.max(1.0) {
        r
    } else {
        f
    };
    k.min(MAX_UNITS as f64) as u32
}

/// Units needed to reach `amount` (0 for a non-positive amount), robust to
/// rounding.
fn units_above(amount: f64, u: f64) -> u32 {
    if amount.is_nan() || amount <= 0.0 {
        return 0;
    }
    let x = amount / u;
    let (f, r) = floor_round(x);
    let k = if (x - r).abs() <= 1e-9 * r.max(1.0) {
        r
    } else if x > f {
        f + 1.0
    } else {
        f
    };
    k.min(MAX_UNITS as f64) as u32
}

/// 2^52: from here on every f64 is a whole number.
const WHOLE: f64 = 4_503_599_627_370_496.0;

/// `(x.floor(), x.round())` of a positive `x`, the same to the bit, without
/// a call into libm (the baseline x86-64 target has no rounding
/// instruction, and these run a few times per curve).
#[inline]
fn floor_round(x: f64) -> (f64, f64) {
    if x < WHOLE {
        // The cast truncates, which is the floor of a positive x; x minus
        // its floor is exact.
        let f = x as u64 as f64;
        (f, if x - f >= 0.5 { f + 1.0 } else { f })
    } else {
        (x.floor(), x.round())
    }
}

/// `x.ceil()` without a call into libm (but for the sign of a zero result,
/// which the callers do not see).
#[inline]
fn ceil(x: f64) -> f64 {
    if x.abs() < WHOLE {
        let t = x as i64 as f64;
        if t < x { t + 1.0 } else { t }
    } else {
        x.ceil()
    }
}

/// Where an SLO quantile falls among the levels last seen, so that the
/// many profiles sharing their levels and SLO find it once.
#[derive(Default)]
struct SloAt {
    /// The levels' key and the quantile's bits, when seen.
    seen: Option<((usize, usize), u64)>,
    /// The level `j` with `levels[j - 1] < p <= levels[j]`, and how far
    /// between them `p` is (`None` outside the levels).
    at: Option<(usize, f64)>,
}

impl SloAt {
    /// [`step_quantile`] of one step's `values` at `levels` (whose key is
    /// `key`), the same to the bit.
    #[inline]
    fn quantile(&mut self, key: (usize, usize), levels: &[f64], values: &[f64], p: f64) -> f64 {
        if self.seen != Some((key, p.to_bits())) {
            let n = levels.len();
            self.at = (n >= 2 && p > levels[0] && p <= levels[n - 1]).then(|| {
                let j = levels.partition_point(|&l| l < p);
                let (la, lb) = (levels[j - 1], levels[j]);
                (j, ((p - la) / (lb - la)).max(0.0))
            });
            self.seen = Some((key, p.to_bits()));
        }
        match self.at {
            Some((j, t)) => {
                let (va, vb) = (values[j - 1], values[j]);
                va + (vb - va) * t
            }
            None => step_quantile(levels, values, p),
        }
    }
}

/// The demand at probability `p` of one step, as
/// [`prescient_core::Quantiles::quantile`] computes it, with a fast path
/// between the given levels.
pub(crate) fn step_quantile(levels: &[f64], values: &[f64], p: f64) -> f64 {
    let n = levels.len();
    if n >= 2 && p > levels[0] && p <= levels[n - 1] {
        let j = levels.partition_point(|&l| l < p);
        let (la, lb) = (levels[j - 1], levels[j]);
        let (va, vb) = (values[j - 1], values[j]);
        return va + (vb - va) * ((p - la) / (lb - la)).max(0.0);
    }
    match prescient_core::Quantiles::new(levels, values) {
        Ok(q) => q.quantile(p),
        Err(_) => values.last().copied().unwrap_or(0.0),
    }
}

/// Cuts the guarantees of curves `[a, b)` to fit `cap`: whole priority
/// classes from the highest, then the class that does not fit in
/// proportion to its guarantees; classes below get nothing.
#[allow(clippy::too_many_arguments)]
fn degrade(
    problem: &Problem,
    raw: &[(u32, u32)],
    g: &mut [f64],
    a: usize,
    b: usize,
    cap: f64,
    total: f64,
    pool: usize,
    resource: Resource,
    cut_pool: &mut [u32],
) -> Overcommit {
    let prio = |i: usize| {
        let (wi, slot) = raw[i];
        problem.workloads[wi as usize].resources[slot as usize]
            .policy
            .priority
    };
    let name = |i: usize| problem.workloads[raw[i].0 as usize].name.0.as_str();
    let mut idx: Vec<usize> = (a..b).collect();
    idx.sort_by(|&x, &y| prio(y).cmp(&prio(x)).then_with(|| name(x).cmp(name(y))));
    let before: Vec<f64> = g.to_vec();
    let mut left = cap.max(0.0);
    let mut i = 0;
    while i < idx.len() {
        let p = prio(idx[i]);
        let mut j = i;
        while j < idx.len() && prio(idx[j]) == p {
            j += 1;
        }
        let class: f64 = idx[i..j].iter().map(|&x| g[x]).sum();
        if class <= left {
            left -= class;
        } else {
            let f = if class > 0.0 { left / class } else { 0.0 };
            for &x in &idx[i..j] {
                g[x] *= f;
            }
            left = 0.0;
        }
        i = j;
    }
    let mut cut = Vec::new();
    for &x in &idx {
        if g[x] < before[x] {
            cut_pool[x] = pool as u32;
            cut.push((name(x).to_string(), prio(x), before[x], g[x]));
        }
    }
    Overcommit {
        pool: problem.pools[pool].name.clone(),
        resource,
        guaranteed: total,
        capacity: cap,
        cut,
    }
}

/// Splits the allocations of a tiered pool's workloads over its tiers:
/// cheapest tiers fill first; each workload keeps what it can where it is
/// (higher priority first), the rest goes to the cheapest tier with room,
/// and every share that changes tier is reported as a move.
fn assign_tiers(
    problem: &Problem,
    p: usize,
    resource: Resource,
    members: &[(usize, f64)],
    usage: &mut PoolUsage,
    moves: &mut Vec<Move>,
    shares_out: &mut Vec<TierShare>,
) {
    let pool = &problem.pools[p];
    let mut order: Vec<usize> = (0..pool.tiers.len()).collect();
    let cost = |t: usize| {
        pool.tiers[t]
            .unit_cost
            .get(&resource)
            .copied()
            .unwrap_or(0.0)
    };
    let cap = |t: usize| {
        pool.tiers[t]
            .capacity
            .get(&resource)
            .copied()
            .unwrap_or(0.0)
    };
    order.sort_by(|&a, &b| cost(a).total_cmp(&cost(b)).then(a.cmp(&b)));
    let total: f64 = members.iter().map(|m| m.1).sum();
    let mut quota = vec![0.0; pool.tiers.len()];
    let mut left = total;
    for &t in &order {
        let take = left.min(cap(t)).max(0.0);
        quota[t] = take;
        left -= take;
    }
    usage.tiers = order.iter().map(|&t| (t, quota[t])).collect();
    usage.cost = order.iter().map(|&t| quota[t] * cost(t)).sum();

    let wr_of = |wi: usize| {
        problem.workloads[wi]
            .resources
            .iter()
            .find(|r| r.resource == resource)
    };
    // Higher priority first, then by name.
    let mut ms: Vec<(usize, f64)> = members.to_vec();
    ms.sort_by(|a, b| {
        let pa = wr_of(a.0).map_or(0, |r| r.policy.priority);
        let pb = wr_of(b.0).map_or(0, |r| r.policy.priority);
        pb.cmp(&pa).then_with(|| {
            problem.workloads[a.0]
                .name
                .cmp(&problem.workloads[b.0].name)
        })
    });
    let mut remaining: Vec<f64> = ms.iter().map(|m| m.1).collect();
    let mut shares: Vec<Vec<(usize, f64)>> = vec![Vec::new(); ms.len()];
    let mut home: Vec<Option<(usize, f64)>> = vec![None; ms.len()];
    for (j, &(wi, alloc)) in ms.iter().enumerate() {
        if let Some(wr) = wr_of(wi)
            && let (Some(t), Some(cur)) = (wr.current_tier, wr.current)
            && t < quota.len()
        {
            let keep = alloc.min(cur).min(quota[t]).max(0.0);
            quota[t] -= keep;
            remaining[j] -= keep;
            if keep > 0.0 {
                shares[j].push((t, keep));
            }
            home[j] = Some((t, cur.min(alloc) - keep));
        }
    }
    for j in 0..ms.len() {
        for &t in &order {
            if remaining[j] <= 0.0 {
                break;
            }
            let take = remaining[j].min(quota[t]);
            if take > 0.0 {
                quota[t] -= take;
                remaining[j] -= take;
                match shares[j].iter_mut().find(|s| s.0 == t) {
                    Some(s) => s.1 += take,
                    None => shares[j].push((t, take)),
                }
                // The part of its current share that had to leave home.
                if let Some((h, movable)) = home[j].as_mut()
                    && *h != t
                    && *movable > 0.0
                {
                    let moved = take.min(*movable);
                    *movable -= moved;
                    moves.push(Move {
                        workload: ms[j].0,
                        resource,
                        pool: p,
                        from: *h,
                        to: t,
                        amount: moved,
                        cost_change: (cost(t) - cost(*h)) * moved,
                    });
                }
            }
        }
    }
    for (j, mut sh) in shares.into_iter().enumerate() {
        sh.sort_by_key(|s| s.0);
        shares_out.extend(sh.into_iter().map(|(tier, amount)| TierShare {
            workload: ms[j].0,
            resource,
            pool: p,
            tier,
            amount,
        }));
    }
}

/// Compares the solve with requests to the one without: who got what, from
/// free capacity or from whom.
fn request_outcomes(
    problem: &Problem,
    resource: Resource,
    requests: &HashMap<(usize, Resource), Vec<usize>>,
    base: &ResourceResult,
    with: &ResourceResult,
    outcomes: &mut [Option<RequestOutcome>],
) {
    let unit = problem.unit(resource);
    let root_of = |mut p: usize| {
        while let Some(q) = problem.pools[p].parent {
            p = q;
        }
        p
    };
    // Free capacity each root lost, and the lenders under it.
    let free_of = |usage: &[PoolUsage], root: usize| {
        usage
            .iter()
            .find(|x| x.pool == root)
            .map_or(0.0, |x| x.free)
    };
    let mut list: Vec<usize> = requests
        .iter()
        .filter(|(k, _)| k.1 == resource)
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    list.sort_by(|&a, &b| {
        problem.requests[b]
            .priority
            .cmp(&problem.requests[a].priority)
            .then(a.cmp(&b))
    });
    let by_name: HashMap<&str, usize> = problem
        .workloads
        .iter()
        .enumerate()
        .map(|(i, w)| (w.name.0.as_str(), i))
        .collect();
    let requesters: HashSet<usize> = list
        .iter()
        .map(|&r| by_name[problem.requests[r].workload.0.as_str()])
        .collect();
    let mut free_left: HashMap<usize, f64> = HashMap::new();
    let mut lenders: HashMap<usize, Vec<(usize, f64)>> = HashMap::new();
    for (wi, w) in problem.workloads.iter().enumerate() {
        let (b, a) = (base.alloc[wi], with.alloc[wi]);
        if b.is_nan() || requesters.contains(&wi) {
            continue;
        }
        if a < b - 1e-9 * unit {
            lenders
                .entry(root_of(w.pool))
                .or_default()
                .push((wi, b - a));
        }
    }
    for v in lenders.values_mut() {
        v.sort_by(|x, y| {
            y.1.total_cmp(&x.1).then_with(|| {
                problem.workloads[x.0]
                    .name
                    .cmp(&problem.workloads[y.0].name)
            })
        });
    }
    let mut increase_left: HashMap<usize, f64> = HashMap::new();
    for &ri in &list {
        let r = &problem.requests[ri];
        let wi = by_name[r.workload.0.as_str()];
        let w = &problem.workloads[wi];
        let root = root_of(w.pool);
        let wr = w.resources.iter().find(|x| x.resource == resource);
        let limit = wr.and_then(|x| x.policy.limit);
        let asked = limit.map_or(r.amount, |l| r.amount.min(l));
        let (b, a) = (base.alloc[wi], with.alloc[wi]);
        let left = increase_left.entry(wi).or_insert((a - b).max(0.0));
        let wanted = (asked - b).max(0.0);
        let inc = left.min(wanted);
        *left -= inc;
        let free = free_left
            .entry(root)
            .or_insert_with(|| (free_of(&base.usage, root) - free_of(&with.usage, root)).max(0.0));
        let from_free = free.min(inc);
        *free -= from_free;
        let mut need = inc - from_free;
        let mut borrowed = Vec::new();
        if let Some(ls) = lenders.get_mut(&root) {
            for l in ls.iter_mut() {
                if need <= 1e-12 * unit {
                    break;
                }
                let take = l.1.min(need);
                if take > 0.0 {
                    borrowed.push((l.0, take));
                    l.1 -= take;
                    need -= take;
                }
            }
        }
        let granted = a;
        let status = if a + 0.5 * unit >= asked {
            RequestStatus::Granted
        } else if a > b + 0.5 * unit {
            RequestStatus::Partial
        } else {
            RequestStatus::Queued
        };
        let queued_because = (status != RequestStatus::Granted).then(|| {
            let mut why = String::new();
            if let Some(l) = limit
                && r.amount > l
            {
                why.push_str(&format!(
                    "asked {} above its limit {}; ",
                    crate::fmt_amount(resource, r.amount),
                    crate::fmt_amount(resource, l)
                ));
            }
            let pool_full = with
                .usage
                .iter()
                .filter(|x| x.full_at.is_some())
                .find(|x| is_ancestor_or_self(problem, x.pool, w.pool));
            match pool_full {
                Some(x) => {
                    let claim = match x.full_at {
                        Some(Claim::Requests(p)) if p == r.priority => {
                            format!("requests of priority {p}, ranked by marginal gain")
                        }
                        Some(Claim::Requests(p)) => format!("requests of priority {p} first"),
                        Some(Claim::Slos(p)) => format!("SLOs of priority {p} first"),
                        _ => "capacity exhausted".into(),
                    };
                    why.push_str(&format!(
                        "pool '{}' full ({} of {} allocated, {} guaranteed): {claim}; queued until capacity frees",
                        problem.pools[x.pool].name,
                        crate::fmt_amount(resource, x.allocated),
                        crate::fmt_amount(resource, x.capacity),
                        crate::fmt_amount(resource, x.guaranteed),
                    ));
                }
                None => why.push_str("capped by its limit or change cost"),
            }
            why
        });
        outcomes[ri] = Some(RequestOutcome {
            request: ri,
            status,
            asked,
            granted,
            without: b,
            from_free,
            borrowed,
            queued_because,
        });
    }
}

fn is_ancestor_or_self(problem: &Problem, anc: usize, mut p: usize) -> bool {
    let mut guard = 0;
    loop {
        if p == anc {
            return true;
        }
        match problem.pools[p].parent {
            Some(q) => p = q,
            None => return false,
        }
        guard += 1;
        if guard > problem.pools.len() {
            return false;
        }
    }
}

/// Checks the problem; every error found, or the pool tree and who has
/// which resource. Without `names`, whether names are unique is left to
/// [`duplicate_names`]; with `parallel`, the workloads of large problems
/// are checked in chunks on rayon's threads. Without `full`, what
/// [`valid_resource`] checks as the curves are built (each
/// workload-resource's policy, demand, current allocation and tier) is
/// left to it.
fn check(
    problem: &Problem,
    full: bool,
    names: bool,
    parallel: bool,
) -> Result<Checked, ProblemError> {
    let mut errors = Vec::new();
    let npools = problem.pools.len();
    let mut seen = HashSet::new();
    for pool in &problem.pools {
        if !seen.insert(pool.name.as_str()) {
            errors.push(InputError::DuplicatePool(pool.name.clone()));
        }
        for (what, map) in [("capacity", &pool.capacity), ("reserve", &pool.reserve)] {
            for (&r, &v) in map {
                if !(v.is_finite() && v >= 0.0) {
                    errors.push(InputError::BadAmount {
                        pool: pool.name.clone(),
                        resource: r,
                        what: what.into(),
                        value: v,
                    });
                }
            }
        }
        for t in &pool.tiers {
            for (what, map) in [("capacity", &t.capacity), ("unit cost", &t.unit_cost)] {
                for (&r, &v) in map {
                    if !(v.is_finite() && v >= 0.0) {
                        errors.push(InputError::BadAmount {
                            pool: pool.name.clone(),
                            resource: r,
                            what: format!("tier '{}' {what}", t.name),
                            value: v,
                        });
                    }
                }
            }
        }
        if let Some(parent) = pool.parent
            && parent >= npools
        {
            errors.push(InputError::NoSuchPool {
                what: format!("pool '{}' (its parent)", pool.name),
                index: parent,
                pools: npools,
            });
        }
    }
    // The workloads: who has which resource (their errors are reported
    // below, after those of the pools). On large problems, in chunks in
    // parallel (reading each workload's resources is most of the check's
    // time), merged in order: the same lists and errors either way.
    let parts: Vec<CheckedWorkloads> = if parallel && problem.workloads.len() >= NAMES_APART {
        problem
            .workloads
            .par_chunks(CHECK_CHUNK)
            .enumerate()
            .map(|(c, ws)| check_workloads(problem, c * CHECK_CHUNK, ws, full))
            .collect()
    } else {
        vec![check_workloads(problem, 0, &problem.workloads, full)]
    };
    // Resources planned, and their units.
    let resources: BTreeSet<Resource> = Resource::ALL
        .iter()
        .enumerate()
        .filter(|&(r, _)| parts.iter().any(|p| !p.by_resource[r].is_empty()))
        .map(|(_, &resource)| resource)
        .collect();
    for &r in &resources {
        let u = problem.unit(r);
        if !(u.is_finite() && u > 0.0) {
            errors.push(InputError::BadUnit {
                resource: r,
                unit: u,
            });
            continue;
        }
        for pool in &problem.pools {
            if let Some(&cap) = pool.capacity.get(&r)
                && cap.is_finite()
                && cap / u > MAX_UNITS as f64
            {
                errors.push(InputError::TooManyUnits {
                    pool: pool.name.clone(),
                    resource: r,
                    capacity: cap,
                    unit: u,
                    units: cap / u,
                    max: MAX_UNITS,
                });
            }
        }
    }
    // The tree: parents exist and do not loop.
    let mut tree = None;
    if errors.is_empty() {
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); npools];
        let mut roots = Vec::new();
        for (i, p) in problem.pools.iter().enumerate() {
            match p.parent {
                Some(q) => children[q].push(i),
                None => roots.push(i),
            }
        }
        let mut pre = Vec::with_capacity(npools);
        let mut stack: Vec<usize> = roots.iter().rev().copied().collect();
        while let Some(p) = stack.pop() {
            pre.push(p);
            stack.extend(children[p].iter().rev());
        }
        if pre.len() < npools {
            let reached: HashSet<usize> = pre.iter().copied().collect();
            if let Some(p) = (0..npools).find(|p| !reached.contains(p)) {
                errors.push(InputError::PoolCycle(problem.pools[p].name.clone()));
            }
        } else {
            let mut pos = vec![0; npools];
            for (i, &p) in pre.iter().enumerate() {
                pos[p] = i;
            }
            let mut size = vec![1; npools];
            for &p in pre.iter().rev() {
                if let Some(q) = problem.pools[p].parent {
                    size[q] += size[p];
                }
            }
            tree = Some(Tree { pre, pos, size });
        }
    }
    // Workloads, and who has which resource.
    if names {
        errors.extend(
            duplicate_names(problem)
                .into_iter()
                .map(InputError::DuplicateWorkload),
        );
    }
    let mut by_resource: [Vec<(u32, u32)>; Resource::ALL.len()] = Default::default();
    let mut entry_resource: Vec<u8> = Vec::with_capacity(problem.workloads.len());
    for (r, list) in by_resource.iter_mut().enumerate() {
        list.reserve_exact(parts.iter().map(|p| p.by_resource[r].len()).sum());
    }
    for part in parts {
        errors.extend(part.errors);
        entry_resource.extend_from_slice(&part.entry_resource);
        for (list, more) in by_resource.iter_mut().zip(&part.by_resource) {
            list.extend_from_slice(more);
        }
    }
    // Requests.
    if !problem.requests.is_empty() {
        let by_name: HashMap<&str, usize> = problem
            .workloads
            .iter()
            .enumerate()
            .map(|(i, w)| (w.name.0.as_str(), i))
            .collect();
        for (index, r) in problem.requests.iter().enumerate() {
            match by_name.get(r.workload.0.as_str()) {
                None => errors.push(InputError::RequestUnknownWorkload {
                    index,
                    workload: r.workload.0.clone(),
                    justification: r.justification.clone(),
                }),
                Some(&wi) => {
                    if !problem.workloads[wi]
                        .resources
                        .iter()
                        .any(|x| x.resource == r.resource)
                    {
                        errors.push(InputError::RequestUnknownResource {
                            index,
                            workload: r.workload.0.clone(),
                            resource: r.resource,
                        });
                    }
                }
            }
            if !(r.amount.is_finite() && r.amount >= 0.0) {
                errors.push(InputError::BadRequest {
                    index,
                    workload: r.workload.0.clone(),
                    resource: r.resource,
                    amount: r.amount,
                });
            }
        }
    }
    match (errors.is_empty(), tree) {
        (true, Some(tree)) => {
            // Resources in order, and each entry's index among them.
            let mut index = [0u8; Resource::ALL.len()];
            let mut members = Vec::new();
            for (r, list) in by_resource.into_iter().enumerate() {
                if !list.is_empty() {
                    index[r] = members.len() as u8;
                    members.push((Resource::ALL[r], list));
                }
            }
            for r in entry_resource.iter_mut() {
                *r = index[*r as usize];
            }
            Ok(Checked {
                tree,
                members,
                entry_resource,
            })
        }
        _ => Err(ProblemError { errors }),
    }
}

/// The names given to more than one workload (each once, in order of
/// first repetition).
fn duplicate_names(problem: &Problem) -> Vec<String> {
    let mut names: HashSet<&str, BuildHasherDefault<Fnv>> =
        HashSet::with_capacity_and_hasher(problem.workloads.len(), Default::default());
    let mut dups = Vec::new();
    for w in &problem.workloads {
        let name = w.name.0.as_str();
        if !names.insert(name) {
            dups.push(name.to_string());
        }
    }
    dups
}

/// What [`check_workloads`] finds in a run of workloads.
#[derive(Default)]
struct CheckedWorkloads {
    errors: Vec<InputError>,
    /// Per resource, `(workload, slot)` of those that have it.
    by_resource: [Vec<(u32, u32)>; Resource::ALL.len()],
    /// Per entry of the plan, its resource.
    entry_resource: Vec<u8>,
}

/// Checks `workloads`, which start at index `first` of the problem's: their
/// pools and resources, and with `full` each workload-resource.
fn check_workloads(
    problem: &Problem,
    first: usize,
    workloads: &[Workload],
    full: bool,
) -> CheckedWorkloads {
    let npools = problem.pools.len();
    let mut out = CheckedWorkloads::default();
    for (i, w) in workloads.iter().enumerate() {
        let wi = first + i;
        let name = w.name.0.as_str();
        if w.pool >= npools {
            out.errors.push(InputError::NoSuchPool {
                what: format!("workload '{name}'"),
                index: w.pool,
                pools: npools,
            });
        }
        let mut seen = 0u32;
        for (j, r) in w.resources.iter().enumerate() {
            let bit = 1u32 << r.resource as u32;
            out.entry_resource.push(r.resource as u8);
            out.by_resource[r.resource as usize].push((wi as u32, j as u32));
            if seen & bit != 0 {
                out.errors.push(InputError::DuplicateResource {
                    workload: name.to_string(),
                    resource: r.resource,
                });
            }
            seen |= bit;
            if !full {
                continue;
            }
            if let Err(source) = r.policy.validate() {
                out.errors.push(InputError::Policy {
                    workload: name.to_string(),
                    resource: r.resource,
                    source,
                });
            }
            if let Err(e) = check_demand(&r.demand) {
                out.errors.push(match e {
                    None => InputError::EmptyProfile {
                        workload: name.to_string(),
                        resource: r.resource,
                    },
                    Some(source) => InputError::Profile {
                        workload: name.to_string(),
                        resource: r.resource,
                        source,
                    },
                });
            }
            if let Some(cur) = r.current
                && !(cur.is_finite() && cur >= 0.0)
            {
                out.errors.push(InputError::BadCurrent {
                    workload: name.to_string(),
                    resource: r.resource,
                    value: cur,
                });
            }
            if let Some(t) = r.current_tier
                && let Some(pool) = problem.pools.get(w.pool)
                && t >= pool.tiers.len()
            {
                out.errors.push(InputError::NoSuchTier {
                    workload: name.to_string(),
                    resource: r.resource,
                    tier: t,
                    pool: pool.name.clone(),
                    tiers: pool.tiers.len(),
                });
            }
        }
    }
    out
}

/// Checks a demand table: `Err(None)` when it has no steps.
fn check_demand(d: &Demand) -> Result<(), Option<ProfileError>> {
    let levels = &d.levels[..];
    if levels.is_empty() {
        return Err(Some(ProfileError::NoLevels));
    }
    let mut prev = 0.0;
    for (index, &level) in levels.iter().enumerate() {
        if !(level > prev && level < 1.0) {
            return Err(Some(ProfileError::BadLevel { index, level }));
        }
        prev = level;
    }
    let n = levels.len();
    if !d.values.len().is_multiple_of(n) {
        return Err(Some(ProfileError::Ragged {
            values: d.values.len(),
            levels: n,
        }));
    }
    if d.values.is_empty() {
        return Err(None);
    }
    for (step, row) in d.values.chunks(n).enumerate() {
        for i in 0..n {
            let (level, value) = (levels[i], row[i]);
            if !(value.is_finite() && value >= 0.0) {
                return Err(Some(ProfileError::BadValue { step, level, value }));
            }
            if i > 0 && value < row[i - 1] {
                return Err(Some(ProfileError::NotIncreasing {
                    step,
                    lower_level: levels[i - 1],
                    lower: row[i - 1],
                    upper_level: level,
                    upper: value,
                }));
            }
        }
    }
    Ok(())
}

/// FNV-1a, for checking that names are unique (faster than SipHash on
/// short keys; the input is not adversarial, and collisions cost only time).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::{Pool, Workload};
    use prescient_core::{ResourcePolicy, WorkloadId};

    /// `n` workloads of two resources, some with change costs, on one
    /// machine that holds `share` of their median demand: the bracketing
    /// runs (thousands of curves).
    fn machine(n: usize, share: f64, seed: u64) -> Problem {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let levels: Arc<[f64]> = Arc::from([0.1, 0.5, 0.9, 0.99]);
        let mut p = Problem::new(0);
        let mut total = 0.0;
        for i in 0..n {
            let mut resources = Vec::new();
            for resource in [Resource::Cpu, Resource::IoRead] {
                let m = 0.5 + 4.0 * next();
                let values = vec![0.5 * m, m, m * (1.5 + next()), m * (2.5 + next())];
                total += m;
                let cost = i % 4 == 0;
                resources.push(WorkloadResource {
                    resource,
                    demand: Demand {
                        start: 0,
                        step_ms: 60_000,
                        levels: levels.clone(),
                        values,
                    },
                    policy: ResourcePolicy {
                        weight: 0.5 + next(),
                        slo_quantile: 0.9,
                        priority: (i % 3 == 0) as u32,
                        change_cost: if cost { 0.02 } else { 0.0 },
                        ..Default::default()
                    },
                    current: cost.then_some(m),
                    current_tier: None,
                });
            }
            p.workloads.push(Workload {
                name: WorkloadId(format!("w{i}")),
                pool: 0,
                resources,
            });
        }
        p.pools.push(Pool {
            name: "m".into(),
            capacity: [
                (Resource::Cpu, share * total / 2.0),
                (Resource::IoRead, share * total / 2.0),
            ]
            .into(),
            ..Default::default()
        });
        p
    }

    /// A band that misses (far too narrow) costs passes, never the plan:
    /// the exact passes look further out, then the pivots carry on.
    #[test]
    fn a_missed_band_gives_the_same_plan() {
        for (seed, share) in [(1, 0.4), (2, 0.8), (3, 1.1), (4, 1.6)] {
            let p = machine(3000, share, seed);
            let mut solver = Solver::new();
            let want = solver.solve(&p).unwrap();
            for band in [0.0, 1e-4, 0.05, 0.5] {
                for shift in [-40.0, -3.0, 0.0, 3.0, 40.0] {
                    for ws in &mut solver.spaces {
                        ws.search.band = Some((band, shift));
                    }
                    let got = solver.solve(&p).unwrap();
                    assert_eq!(
                        got.entries, want.entries,
                        "share {share} band {band} shift {shift}"
                    );
                    assert_eq!(got.pools, want.pools);
                }
            }
        }
    }
}
