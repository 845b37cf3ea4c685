//! `prescient plan`: solve one step of a trace with the partition solver
//! and print the plan.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use comfy_table::{Cell, CellAlignment, Table, presets::UTF8_FULL_CONDENSED};
use prescient_core::{Plan, Resource, ResourcePolicy, WorkloadId};
use prescient_sim::ReplayTrace;
use prescient_solver::{
    Demand, Pool, Problem, Request, RequestStatus, Solution, Spare, Tier, Workload,
    WorkloadResource, fmt_amount,
};
use serde::{Deserialize, Serialize};

use super::replay::{Format, parse_amount, parse_capacities};

/// Quantile levels of the profiles built from history (the forecast
/// engine's defaults).
const LEVELS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999,
];

/// Plan one step of a trace: every workload's demand profile is the
/// distribution of its history before `--at`, and the partition solver
/// splits each host's capacity by those profiles, the policies and the
/// priorities. Prints per workload and resource the allocation, the
/// probability it covers demand, the expected unmet demand and why.
#[derive(Debug, Args)]
#[command(after_long_help = POLICY_FILE_EXAMPLE)]
pub struct PlanArgs {
    /// The trace: long CSV `timestamp,host,workload,resource,value`, plain or gzip.
    #[arg(long, value_name = "FILE")]
    trace: PathBuf,

    /// The step to plan, in the trace's seconds: profiles come from the
    /// history before it.
    #[arg(long, value_name = "TIMESTAMP")]
    at: i64,

    /// Capacity of every host, as RESOURCE=AMOUNT (e.g. cpu=4.5,memory=16GiB);
    /// the resources given are the ones planned.
    #[arg(long, value_name = "RESOURCE=AMOUNT", required = true)]
    capacity: Vec<String>,

    /// Per-workload policies (by workload name glob), requests, reserve and
    /// units, as TOML or JSON (an example ends `prescient plan --help`).
    #[arg(long, value_name = "FILE")]
    policy_file: Option<PathBuf>,

    /// Plan only this host (default: every host, each its own pool).
    #[arg(long, value_name = "HOST")]
    host: Option<String>,

    /// Steps of history in each profile (default: all before --at).
    #[arg(long, value_name = "STEPS")]
    history: Option<usize>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// What `prescient plan --help` shows of the policy file.
const POLICY_FILE_EXAMPLE: &str = r#"A policy file (TOML; JSON with the same keys works too). Rules apply in
order, a later match overriding an earlier one's fields:

  spare = "spread"               # or "keep" (default): capacity no forecast wants
  reserve = { cpu = 0.5 }        # kept free of spare lending, per host
  units = { cpu = 0.01 }         # allocation units (default 1/8 core, 64 MiB)

  [[tier]]                       # optional: each host's capacity in priced tiers
  name = "guaranteed"
  capacity = { cpu = 3 }         # per host
  [[tier]]
  name = "burstable"
  capacity = { cpu = 1.5 }
  unit_cost = { cpu = 0.05 }     # per unit allocated, in expected satisfied demand

  [[workload]]
  match = "vm0*"                 # glob on the workload name, or host/name
  resource = "cpu"               # optional: one resource only
  guarantee = 0.25               # amounts: numbers or "2GiB"-style strings
  limit = 2
  priority = 5
  weight = 2.0
  slo_quantile = 0.99
  change_cost = 0.1
  lendable = false
  current = 0.5                  # what it holds now
  tier = "guaranteed"            # the tier that holds it now

  [[request]]
  workload = "pl000/vm03"
  resource = "cpu"
  amount = 1.5
  priority = 5
  justification = "nightly build""#;

/// The policy file: defaults, per-workload policies, requests.
///
/// ```toml
/// spare = "spread"               # or "keep" (default)
/// reserve = { cpu = 0.5 }        # kept free of spare lending, per host
/// units = { cpu = 0.01 }         # allocation units (default 1/8 core, 64 MiB)
///
/// [[tier]]                       # optional: each host's capacity in priced tiers
/// name = "guaranteed"
/// capacity = { cpu = 3 }         # per host
/// [[tier]]
/// name = "burstable"
/// capacity = { cpu = 1.5 }
/// unit_cost = { cpu = 0.05 }     # per unit allocated, in expected satisfied demand
///
/// [[workload]]
/// match = "vm0*"                 # glob on the workload name, or host/name
/// resource = "cpu"               # optional: one resource only
/// guarantee = 0.25               # amounts: numbers or "2GiB"-style strings
/// limit = 2
/// priority = 5
/// weight = 2.0
/// slo_quantile = 0.99
/// change_cost = 0.1
/// lendable = false
/// current = 0.5                  # what it holds now
/// tier = "guaranteed"            # the tier that holds it now
///
/// [[request]]
/// workload = "pl000/vm03"
/// resource = "cpu"
/// amount = 1.5
/// priority = 5
/// justification = "nightly build"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    spare: Option<String>,
    #[serde(default)]
    reserve: BTreeMap<String, AmountValue>,
    #[serde(default)]
    units: BTreeMap<String, AmountValue>,
    #[serde(default, rename = "tier")]
    tiers: Vec<TierRule>,
    #[serde(default, rename = "workload")]
    workloads: Vec<WorkloadRule>,
    #[serde(default, rename = "request")]
    requests: Vec<RequestRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadRule {
    #[serde(rename = "match")]
    pattern: String,
    resource: Option<String>,
    guarantee: Option<AmountValue>,
    limit: Option<AmountValue>,
    priority: Option<u32>,
    weight: Option<f64>,
    slo_quantile: Option<f64>,
    change_cost: Option<f64>,
    lendable: Option<bool>,
    current: Option<AmountValue>,
    tier: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TierRule {
    name: String,
    #[serde(default)]
    capacity: BTreeMap<String, AmountValue>,
    #[serde(default)]
    unit_cost: BTreeMap<String, f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestRule {
    workload: String,
    resource: String,
    amount: AmountValue,
    #[serde(default)]
    priority: u32,
    #[serde(default)]
    justification: String,
}

/// An amount as a number or a string with a suffix ("16GiB").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum AmountValue {
    Number(f64),
    Text(String),
}

impl AmountValue {
    fn get(&self) -> Result<f64> {
        match self {
            AmountValue::Number(x) if x.is_finite() && *x >= 0.0 => Ok(*x),
            AmountValue::Number(x) => bail!("{x} is not an amount >= 0"),
            AmountValue::Text(t) if t.trim() == "0" => Ok(0.0),
            AmountValue::Text(t) => parse_amount(t.trim()),
        }
    }

    fn show(&self) -> String {
        match self {
            AmountValue::Number(x) => x.to_string(),
            AmountValue::Text(t) => format!("{t:?}"),
        }
    }
}

/// What `--format json` prints.
#[derive(Debug, Serialize)]
struct Report {
    trace: String,
    at: i64,
    history_steps: Option<usize>,
    plans: Vec<Plan>,
    pools: Vec<PoolReport>,
    requests: Vec<RequestReport>,
    moves: Vec<MoveReport>,
    degraded: Vec<String>,
}

#[derive(Debug, Serialize)]
struct PoolReport {
    host: String,
    resource: Resource,
    capacity: f64,
    guaranteed: f64,
    allocated: f64,
    free: f64,
    full_at: Option<prescient_solver::Claim>,
    /// Allocated from each tier (cheapest first), when the host has tiers.
    tiers: Vec<(String, f64)>,
    /// The cost of what is allocated from priced tiers.
    cost: f64,
}

#[derive(Debug, Serialize)]
struct RequestReport {
    workload: String,
    resource: Resource,
    justification: String,
    status: RequestStatus,
    asked: f64,
    granted: f64,
    without: f64,
    from_free: f64,
    borrowed: Vec<(String, f64)>,
    queued_because: Option<String>,
}

#[derive(Debug, Serialize)]
struct MoveReport {
    workload: String,
    resource: Resource,
    from: String,
    to: String,
    amount: f64,
    cost_change: f64,
}

/// Runs `prescient plan`.
pub fn run(args: PlanArgs) -> Result<()> {
    let caps = parse_capacities(&args.capacity)?;
    let mut capacity: BTreeMap<Resource, f64> = BTreeMap::new();
    for (r, c) in caps {
        capacity.insert(r, c);
    }
    let policy = match &args.policy_file {
        Some(path) => read_policy_file(path)?,
        None => PolicyFile::default(),
    };
    let at_ms = args
        .at
        .checked_mul(1000)
        .with_context(|| format!("--at {} is out of range", args.at))?;

    // History before --at, per resource; the demand at --at for hindsight.
    let mut traces = Vec::new();
    for &r in capacity.keys() {
        let trace = ReplayTrace::load(&args.trace, r, &|_| {})?;
        traces.push(trace);
    }
    let (first, _) = traces[0].span();
    if at_ms <= first {
        bail!(
            "--at {}: there is no history before it (the trace starts at {} s)",
            args.at,
            first / 1000
        );
    }
    if let Some(h) = &args.host
        && !traces[0].hosts.iter().any(|x| &x.host.0 == h)
    {
        let hosts: Vec<&str> = traces[0].hosts.iter().map(|x| x.host.0.as_str()).collect();
        bail!(
            "--host {h}: no such host in {} (it has: {})",
            args.trace.display(),
            hosts.join(", ")
        );
    }

    let mut problem = Problem::new(at_ms);
    for (key, value) in &policy.units {
        let r = resource_key(key, "units", args.policy_file.as_deref())?;
        let u = value.get().with_context(|| {
            file_key(
                args.policy_file.as_deref(),
                &format!("units.{key}"),
                &value.show(),
            )
        })?;
        problem.units.insert(r, u);
    }
    let spare = match policy.spare.as_deref() {
        None | Some("keep") => Spare::Keep,
        Some("spread") => Spare::Spread,
        Some(other) => bail!(
            "{}: key 'spare': '{other}' is not one of keep, spread",
            file_name(args.policy_file.as_deref())
        ),
    };
    let mut reserve = BTreeMap::new();
    for (key, value) in &policy.reserve {
        let r = resource_key(key, "reserve", args.policy_file.as_deref())?;
        let x = value.get().with_context(|| {
            file_key(
                args.policy_file.as_deref(),
                &format!("reserve.{key}"),
                &value.show(),
            )
        })?;
        reserve.insert(r, x);
    }

    let tiers = read_tiers(&policy.tiers, args.policy_file.as_deref())?;

    // Pools (one per host) and workloads, with the demand at --at.
    let mut pool_of: HashMap<String, usize> = HashMap::new();
    let mut index_of: HashMap<(String, String), usize> = HashMap::new();
    let mut actual: HashMap<(usize, Resource), f64> = HashMap::new();
    let mut matched = vec![0usize; policy.workloads.len()];
    for trace in &traces {
        let r = trace.resource;
        for host in &trace.hosts {
            if args.host.as_ref().is_some_and(|h| h != &host.host.0) {
                continue;
            }
            let pool = *pool_of.entry(host.host.0.clone()).or_insert_with(|| {
                problem.pools.push(Pool {
                    name: host.host.0.clone(),
                    capacity: capacity.clone(),
                    reserve: reserve.clone(),
                    tiers: tiers.clone(),
                    spare,
                    ..Default::default()
                });
                problem.pools.len() - 1
            });
            let end = host.timestamps.partition_point(|&t| t < at_ms);
            let start = args.history.map_or(0, |h| end.saturating_sub(h));
            for s in &host.series {
                let mut history: Vec<f64> = s.demand[start..end]
                    .iter()
                    .copied()
                    .filter(|d| d.is_finite())
                    .map(|d| d.max(0.0))
                    .collect();
                if history.is_empty() {
                    continue;
                }
                history.sort_by(f64::total_cmp);
                let values: Vec<f64> = LEVELS.iter().map(|&l| empirical(&history, l)).collect();
                let name = format!("{}/{}", host.host.0, s.key.workload.0);
                let wi = *index_of
                    .entry((host.host.0.clone(), s.key.workload.0.clone()))
                    .or_insert_with(|| {
                        problem.workloads.push(Workload {
                            name: WorkloadId(name.clone()),
                            pool,
                            resources: Vec::new(),
                        });
                        problem.workloads.len() - 1
                    });
                if let Some(&d) = host
                    .timestamps
                    .get(end)
                    .filter(|&&t| t == at_ms)
                    .and_then(|_| s.demand.get(end))
                    && d.is_finite()
                {
                    actual.insert((wi, r), d);
                }
                let mut pol = ResourcePolicy::default();
                let mut current = None;
                let mut current_tier = None;
                for (ri, rule) in policy.workloads.iter().enumerate() {
                    if !(glob(&rule.pattern, &s.key.workload.0) || glob(&rule.pattern, &name)) {
                        continue;
                    }
                    if let Some(res) = &rule.resource {
                        let rr = resource_key(
                            res,
                            &format!("workload[{ri}].resource"),
                            args.policy_file.as_deref(),
                        )?;
                        if rr != r {
                            continue;
                        }
                    }
                    matched[ri] += 1;
                    apply(
                        rule,
                        ri,
                        &mut pol,
                        &mut current,
                        args.policy_file.as_deref(),
                    )?;
                    if let Some(t) = &rule.tier {
                        current_tier = Some(tier_index(
                            &tiers,
                            t,
                            ri,
                            rule,
                            args.policy_file.as_deref(),
                        )?);
                    }
                }
                problem.workloads[wi].resources.push(WorkloadResource {
                    resource: r,
                    demand: Demand {
                        start: at_ms,
                        step_ms: trace.step_ms.max(1),
                        levels: Arc::from(LEVELS),
                        values,
                    },
                    policy: pol,
                    current,
                    current_tier,
                });
            }
        }
    }
    if problem.workloads.is_empty() {
        bail!(
            "{}: no history before --at {}",
            args.trace.display(),
            args.at
        );
    }
    for (ri, rule) in policy.workloads.iter().enumerate() {
        if matched[ri] == 0 {
            bail!(
                "{}: workload[{ri}]: match '{}' matches no workload of the trace",
                file_name(args.policy_file.as_deref()),
                rule.pattern
            );
        }
    }
    for (qi, rule) in policy.requests.iter().enumerate() {
        let r = resource_key(
            &rule.resource,
            &format!("request[{qi}].resource"),
            args.policy_file.as_deref(),
        )?;
        let amount = rule.amount.get().with_context(|| {
            file_key(
                args.policy_file.as_deref(),
                &format!("request[{qi}].amount"),
                &rule.amount.show(),
            )
        })?;
        // A bare workload name is looked up on every host planned.
        let names: Vec<String> = if rule.workload.contains('/') {
            vec![rule.workload.clone()]
        } else {
            problem
                .workloads
                .iter()
                .filter(|w| w.name.0.rsplit('/').next() == Some(rule.workload.as_str()))
                .map(|w| w.name.0.clone())
                .collect()
        };
        if names.is_empty() {
            bail!(
                "{}: request[{qi}]: workload '{}' is not in the trace at --at",
                file_name(args.policy_file.as_deref()),
                rule.workload
            );
        }
        for name in names {
            problem.requests.push(Request {
                workload: WorkloadId(name),
                resource: r,
                amount,
                priority: rule.priority,
                justification: rule.justification.clone(),
            });
        }
    }

    let solution = prescient_solver::solve(&problem).map_err(|e| match &args.policy_file {
        Some(p) => anyhow::anyhow!("with the policies of {}: {e}", p.display()),
        None => anyhow::anyhow!("{e}"),
    })?;
    let report = report(&args, &problem, &solution);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Table => print_table(&mut out, &args, &problem, &solution, &actual, &report)?,
    }
    out.flush()?;
    if solution.degraded() {
        let msgs: Vec<String> = solution
            .overcommitted
            .iter()
            .map(|o| o.to_string())
            .collect();
        bail!("{}", msgs.join("\n"));
    }
    Ok(())
}

/// Each host's tiers from the policy file's `[[tier]]` tables.
fn read_tiers(rules: &[TierRule], file: Option<&Path>) -> Result<Vec<Tier>> {
    let mut tiers: Vec<Tier> = Vec::with_capacity(rules.len());
    for (ti, rule) in rules.iter().enumerate() {
        if tiers.iter().any(|t| t.name == rule.name) {
            bail!(
                "{}: tier[{ti}]: name '{}' is used by an earlier tier",
                file_name(file),
                rule.name
            );
        }
        let mut tier = Tier {
            name: rule.name.clone(),
            ..Default::default()
        };
        for (key, value) in &rule.capacity {
            let r = resource_key(key, &format!("tier[{ti}].capacity"), file)?;
            let x = value.get().with_context(|| {
                file_key(file, &format!("tier[{ti}].capacity.{key}"), &value.show())
            })?;
            tier.capacity.insert(r, x);
        }
        for (key, &cost) in &rule.unit_cost {
            let r = resource_key(key, &format!("tier[{ti}].unit_cost"), file)?;
            if !(cost.is_finite() && cost >= 0.0) {
                bail!(
                    "{}: key 'tier[{ti}].unit_cost.{key}': value {cost} is not a cost >= 0",
                    file_name(file)
                );
            }
            tier.unit_cost.insert(r, cost);
        }
        tiers.push(tier);
    }
    Ok(tiers)
}

/// The index of the tier a workload rule names.
fn tier_index(
    tiers: &[Tier],
    name: &str,
    ri: usize,
    rule: &WorkloadRule,
    file: Option<&Path>,
) -> Result<usize> {
    tiers.iter().position(|t| t.name == name).with_context(|| {
        let names: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
        format!(
            "{}: workload[{ri}] (match '{}').tier: no tier '{name}' (the file has: {})",
            file_name(file),
            rule.pattern,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )
    })
}

/// The empirical quantile at `p` of sorted `xs` (linear between order statistics).
fn empirical(xs: &[f64], p: f64) -> f64 {
    let pos = p * (xs.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(xs.len() - 1);
    xs[i] + (xs[j] - xs[i]) * (pos - i as f64)
}

/// Applies a matching rule's fields to a policy.
fn apply(
    rule: &WorkloadRule,
    ri: usize,
    pol: &mut ResourcePolicy,
    current: &mut Option<f64>,
    file: Option<&Path>,
) -> Result<()> {
    let key = |k: &str| format!("workload[{ri}] (match '{}').{k}", rule.pattern);
    let amount =
        |v: &AmountValue, k: &str| v.get().with_context(|| file_key(file, &key(k), &v.show()));
    if let Some(v) = &rule.guarantee {
        pol.guarantee = amount(v, "guarantee")?;
    }
    if let Some(v) = &rule.limit {
        pol.limit = Some(amount(v, "limit")?);
    }
    if let Some(v) = rule.priority {
        pol.priority = v;
    }
    if let Some(v) = rule.weight {
        pol.weight = v;
    }
    if let Some(v) = rule.slo_quantile {
        pol.slo_quantile = v;
    }
    if let Some(v) = rule.change_cost {
        pol.change_cost = v;
    }
    if let Some(v) = rule.lendable {
        pol.lendable = v;
    }
    if let Some(v) = &rule.current {
        *current = Some(amount(v, "current")?);
    }
    // Check each rule's values where they are written, so the error names
    // the file and key rather than a workload it happened to match.
    pol.validate()
        .with_context(|| format!("{}: {}", file_name(file), key("*")))?;
    Ok(())
}

fn file_name(file: Option<&Path>) -> String {
    file.map_or_else(|| "the policy file".into(), |p| p.display().to_string())
}

fn file_key(file: Option<&Path>, key: &str, value: &str) -> String {
    format!("{}: key '{key}': value {value}", file_name(file))
}

fn resource_key(name: &str, key: &str, file: Option<&Path>) -> Result<Resource> {
    name.parse::<Resource>()
        .with_context(|| format!("{}: key '{key}'", file_name(file)))
}

/// Reads a policy file as TOML, or as JSON when it says `.json` or starts
/// with `{`.
fn read_policy_file(path: &Path) -> Result<PolicyFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    if json {
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a valid policy file", path.display()))
    } else {
        toml::from_str(&text)
            .with_context(|| format!("{}: not a valid policy file", path.display()))
    }
}

/// `*` matches any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn report(args: &PlanArgs, problem: &Problem, s: &Solution) -> Report {
    let wname = |i: usize| problem.workloads[i].name.0.clone();
    Report {
        trace: args.trace.display().to_string(),
        at: args.at,
        history_steps: args.history,
        plans: s.plans(problem),
        pools: s
            .pools
            .iter()
            .map(|u| PoolReport {
                host: problem.pools[u.pool].name.clone(),
                resource: u.resource,
                capacity: u.capacity,
                guaranteed: u.guaranteed,
                allocated: u.allocated,
                free: u.free,
                full_at: u.full_at,
                tiers: u
                    .tiers
                    .iter()
                    .map(|&(t, x)| (problem.pools[u.pool].tiers[t].name.clone(), x))
                    .collect(),
                cost: u.cost,
            })
            .collect(),
        requests: s
            .requests
            .iter()
            .map(|o| {
                let r = &problem.requests[o.request];
                RequestReport {
                    workload: r.workload.0.clone(),
                    resource: r.resource,
                    justification: r.justification.clone(),
                    status: o.status,
                    asked: o.asked,
                    granted: o.granted,
                    without: o.without,
                    from_free: o.from_free,
                    borrowed: o.borrowed.iter().map(|&(w, x)| (wname(w), x)).collect(),
                    queued_because: o.queued_because.clone(),
                }
            })
            .collect(),
        moves: s
            .moves
            .iter()
            .map(|m| MoveReport {
                workload: wname(m.workload),
                resource: m.resource,
                from: problem.pools[m.pool].tiers[m.from].name.clone(),
                to: problem.pools[m.pool].tiers[m.to].name.clone(),
                amount: m.amount,
                cost_change: m.cost_change,
            })
            .collect(),
        degraded: s.overcommitted.iter().map(|o| o.to_string()).collect(),
    }
}

/// Day and time of a trace timestamp in seconds: "day 1 09:05".
fn when(secs: i64) -> String {
    let (day, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!("day {} {:02}:{:02}", day + 1, rest / 3600, rest % 3600 / 60)
}

fn print_table(
    out: &mut impl Write,
    args: &PlanArgs,
    problem: &Problem,
    s: &Solution,
    actual: &HashMap<(usize, Resource), f64>,
    report: &Report,
) -> Result<()> {
    writeln!(
        out,
        "{}: plan for {} s ({}) from {} of history; {} workloads on {} host{}{}",
        args.trace.display(),
        args.at,
        when(args.at),
        args.history.map_or_else(
            || "all the steps".to_string(),
            |h| format!("the last {h} steps")
        ),
        problem.workloads.len(),
        problem.pools.len(),
        if problem.pools.len() == 1 { "" } else { "s" },
        if s.degraded() {
            "; DEGRADED: guarantees above capacity"
        } else {
            ""
        }
    )?;
    let mut table = Table::new();
    table.load_style(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "workload",
        "resource",
        "allocation",
        "coverage",
        "expected unmet",
        "actual demand",
        "reason",
    ]);
    for e in &s.entries {
        let r = e.resource;
        let right = |x: String| Cell::new(x).set_alignment(CellAlignment::Right);
        table.add_row(vec![
            Cell::new(&problem.workloads[e.workload].name.0),
            Cell::new(r),
            right(fmt_amount(r, e.allocation)),
            right(format!("{:.1}%", 100.0 * e.coverage)),
            right(fmt_amount(r, e.expected_unmet)),
            right(
                actual
                    .get(&(e.workload, r))
                    .map_or_else(|| "-".into(), |&d| fmt_amount(r, d)),
            ),
            Cell::new(e.reason_text(problem)),
        ]);
    }
    writeln!(out, "{table}")?;
    for p in &report.pools {
        let full = match p.full_at {
            Some(prescient_solver::Claim::Requests(x)) => {
                format!("full at requests of priority {x}")
            }
            Some(prescient_solver::Claim::Slos(x)) => format!("full at SLOs of priority {x}"),
            Some(prescient_solver::Claim::Spare) => "full while lending spare capacity".into(),
            Some(prescient_solver::Claim::Spread) => "full while spreading spare capacity".into(),
            None => "not full".into(),
        };
        writeln!(
            out,
            "host {} {}: capacity {}, allocated {}, free {}, guaranteed {}; {full}",
            p.host,
            p.resource,
            fmt_amount(p.resource, p.capacity),
            fmt_amount(p.resource, p.allocated),
            fmt_amount(p.resource, p.free),
            fmt_amount(p.resource, p.guaranteed),
        )?;
        if !p.tiers.is_empty() {
            let shares: Vec<String> = p
                .tiers
                .iter()
                .map(|(t, x)| format!("{} from {t}", fmt_amount(p.resource, *x)))
                .collect();
            writeln!(out, "  tiers: {}; cost {:.4}", shares.join(", "), p.cost)?;
        }
    }
    for r in &report.requests {
        let res = r.resource;
        let mut line = format!(
            "request {} {} for {} ({:?}): {} {}",
            r.workload,
            res,
            fmt_amount(res, r.asked),
            r.justification,
            match r.status {
                RequestStatus::Granted => "granted",
                RequestStatus::Partial => "partly granted",
                RequestStatus::Queued => "queued",
            },
            fmt_amount(res, r.granted)
        );
        line.push_str(&format!(
            " (had {} without it; {} from free capacity",
            fmt_amount(res, r.without),
            fmt_amount(res, r.from_free)
        ));
        for (w, x) in &r.borrowed {
            line.push_str(&format!(", {} borrowed from {w}", fmt_amount(res, *x)));
        }
        line.push(')');
        if let Some(why) = &r.queued_because {
            line.push_str(&format!("; {why}"));
        }
        writeln!(out, "{line}")?;
    }
    for m in &report.moves {
        writeln!(
            out,
            "moved {} of {} {} from tier {} to {} (cost {:+.4})",
            fmt_amount(m.resource, m.amount),
            m.workload,
            m.resource,
            m.from,
            m.to,
            m.cost_change
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("vm*", "vm03"));
        assert!(glob("*03", "vm03"));
        assert!(glob("pl000/vm0?", "pl000/vm03"));
        assert!(glob("*", ""));
        assert!(!glob("vm?", "vm03"));
        assert!(!glob("db*", "vm03"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
    }

    #[test]
    fn amounts() {
        assert_eq!(AmountValue::Number(2.0).get().unwrap(), 2.0);
        assert_eq!(
            AmountValue::Text("1GiB".into()).get().unwrap(),
            1024.0 * 1024.0 * 1024.0
        );
        assert!(AmountValue::Number(-1.0).get().is_err());
        assert_eq!(AmountValue::Text("0".into()).get().unwrap(), 0.0);
    }

    #[test]
    fn when_formats_day_and_time() {
        assert_eq!(when(0), "day 1 00:00");
        assert_eq!(when(86_400 + 9 * 3600 + 5 * 60), "day 2 09:05");
    }

    #[test]
    fn empirical_quantiles() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(empirical(&xs, 0.5), 3.0);
        assert_eq!(empirical(&xs, 0.0), 1.0);
        assert_eq!(empirical(&xs, 1.0), 5.0);
        assert_eq!(empirical(&xs, 0.125), 1.5);
    }
}
