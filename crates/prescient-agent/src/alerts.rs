//! Alerts: the rules of `[[alerts.rule]]` evaluated over the loop's
//! [`LiveView`], with hold times, one alert per rule and subject, and
//! resolution when the condition clears.
//!
//! [`AlertEngine::evaluate`] is pure (the view and the time in, the
//! transitions out): the loop calls it after each pass, puts
//! [`AlertEngine::alerts`] into the view, logs each [`Transition`], hands
//! it to the [`webhook`](crate::webhook) sender, and applies its
//! [`Remediation`] in enforce mode.
//!
//! An alert's subject is a pool and resource (`host/cpu`: utilisation), a
//! pool (`host`: a degraded plan), a workload and resource (`web/memory`:
//! coverage, anomalies) or the host (`host`: planning and enforcement
//! failures). Its id is `rule/subject`. A condition that holds opens a
//! pending alert; once it has held for the rule's `hold` the alert fires
//! (one notification); when it clears the alert resolves (one more) and is
//! kept, resolved, for [`RESOLVED_KEPT_MS`]. A pending alert whose
//! condition clears is dropped without a word: short blips make no noise.

use std::collections::{BTreeMap, VecDeque};

use prescient_core::{Resource, TimestampMs};
use prescient_linux::glob::Glob;

use crate::agent::Counters;
use crate::config::{AlertCondition, AlertRule, RemediationAction};
use crate::control::{AlertState, AlertView, LiveView};

/// How long a resolved alert stays in [`AlertEngine::alerts`].
pub const RESOLVED_KEPT_MS: i64 = 3_600_000;

/// What a firing alert asks the agent to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Remediation {
    /// Plan (and enforce) at once.
    Replan,
    /// Raise a workload's SLO quantile for a resource by `step`, up to `max`.
    RaiseSlo {
        /// The workload.
        workload: String,
        /// The resource.
        resource: Resource,
        /// The step.
        step: f64,
        /// The highest quantile.
        max: f64,
    },
    /// Move a workload to another pool.
    MoveTier {
        /// The workload.
        workload: String,
        /// The pool.
        pool: String,
    },
}

/// An alert that fired or resolved in one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The alert, as it is after the transition.
    pub alert: AlertView,
    /// The rule's action, on firing (none on resolving).
    pub remediation: Option<Remediation>,
}

impl Transition {
    /// Whether the alert fired (else it resolved).
    pub fn fired(&self) -> bool {
        self.alert.state == AlertState::Firing
    }
}

/// One condition that holds now.
struct Holding {
    subject: String,
    message: String,
    workload: Option<(String, Resource)>,
}

/// Evaluates alert rules; keeps the alerts' states between evaluations.
#[derive(Debug, Default)]
pub struct AlertEngine {
    rules: Vec<AlertRule>,
    globs: Vec<Option<Glob>>,
    /// By id.
    alerts: BTreeMap<String, AlertView>,
    last: Option<Counters>,
    /// Times planning failed.
    plan_failures: VecDeque<TimestampMs>,
    /// (time, failed writes) per evaluation that saw some.
    enforce_failures: VecDeque<(TimestampMs, u64)>,
}

impl AlertEngine {
    /// An engine for `rules` (validated: see
    /// [`Config::validate`](crate::config::Config::validate); a workload
    /// glob that does not compile matches nothing).
    pub fn new(rules: &[AlertRule]) -> Self {
        let mut e = AlertEngine::default();
        e.set_rules(rules);
        e
    }

    /// Replaces the rules (a configuration reload). Alerts of rules that
    /// are gone, or whose condition changed, are dropped; the others keep
    /// their state.
    pub fn set_rules(&mut self, rules: &[AlertRule]) {
        let kept: Vec<&str> = rules
            .iter()
            .filter(|r| {
                self.rules
                    .iter()
                    .any(|o| o.name == r.name && o.when == r.when)
            })
            .map(|r| r.name.as_str())
            .collect();
        self.alerts.retain(|_, a| kept.contains(&a.rule.as_str()));
        self.rules = rules.to_vec();
        self.globs = rules
            .iter()
            .map(|r| r.workload.as_deref().and_then(|g| Glob::new(g).ok()))
            .collect();
    }

    /// The alerts pending, firing, or resolved within the last hour, by id.
    pub fn alerts(&self) -> Vec<AlertView> {
        self.alerts.values().cloned().collect()
    }

    /// Evaluates every rule over `view` at `now`; returns the alerts that
    /// fired or resolved.
    pub fn evaluate(&mut self, view: &LiveView, now: TimestampMs) -> Vec<Transition> {
        self.note_failures(&view.counters, now);
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for (ri, rule) in self.rules.iter().enumerate() {
            for h in self.holding(ri, rule, view, now) {
                let id = format!("{}/{}", rule.name, h.subject);
                seen.push(id.clone());
                let alert = self.alerts.entry(id.clone()).or_insert_with(|| AlertView {
                    id: id.clone(),
                    rule: rule.name.clone(),
                    severity: rule.severity.to_string(),
                    state: AlertState::Pending,
                    subject: h.subject.clone(),
                    message: String::new(),
                    since: now,
                    resolved_at: None,
                });
                if alert.state == AlertState::Resolved {
                    // It holds again: a new episode.
                    alert.state = AlertState::Pending;
                    alert.since = now;
                    alert.resolved_at = None;
                }
                alert.message = h.message;
                if alert.state == AlertState::Pending && now - alert.since >= rule.hold.as_ms_i64()
                {
                    alert.state = AlertState::Firing;
                    out.push(Transition {
                        alert: alert.clone(),
                        remediation: remediation(rule, h.workload),
                    });
                }
            }
        }
        self.alerts.retain(|id, a| {
            if seen.contains(id) {
                return true;
            }
            match a.state {
                AlertState::Pending => false,
                AlertState::Firing => {
                    a.state = AlertState::Resolved;
                    a.resolved_at = Some(now);
                    out.push(Transition {
                        alert: a.clone(),
                        remediation: None,
                    });
                    true
                }
                AlertState::Resolved => a.resolved_at.is_some_and(|t| now - t < RESOLVED_KEPT_MS),
            }
        });
        out
    }

    /// Records planning and enforcement failures since the last evaluation
    /// (the counters only grow; a restart starts them again).
    fn note_failures(&mut self, c: &Counters, now: TimestampMs) {
        let (plan, enforce) = match &self.last {
            Some(l) => (
                c.plan_errors.saturating_sub(l.plan_errors),
                c.enforce_failures.saturating_sub(l.enforce_failures),
            ),
            None => (c.plan_errors, c.enforce_failures),
        };
        if plan > 0 {
            self.plan_failures.push_back(now);
        }
        if enforce > 0 {
            self.enforce_failures.push_back((now, enforce));
        }
        let longest = self
            .rules
            .iter()
            .map(|r| r.window.as_ms_i64())
            .max()
            .unwrap_or(0);
        while self
            .plan_failures
            .front()
            .is_some_and(|&t| now - t > longest)
        {
            self.plan_failures.pop_front();
        }
        while self
            .enforce_failures
            .front()
            .is_some_and(|&(t, _)| now - t > longest)
        {
            self.enforce_failures.pop_front();
        }
        self.last = Some(c.clone());
    }

    /// The subjects for which `rule`'s condition holds now.
    fn holding(
        &self,
        ri: usize,
        rule: &AlertRule,
        view: &LiveView,
        now: TimestampMs,
    ) -> Vec<Holding> {
        let window = rule.window.as_ms_i64();
        let workload_ok = |w: &str| match (&rule.workload, &self.globs[ri]) {
            (None, _) => true,
            (Some(_), Some(g)) => g.matches(w),
            (Some(_), None) => false,
        };
        let pool_ok = |p: &str| rule.pool.as_deref().is_none_or(|want| want == p);
        let mut out = Vec::new();
        match rule.when {
            AlertCondition::Utilisation => {
                let r = rule.resource.unwrap_or(Resource::Cpu);
                let above = rule.above.unwrap_or(f64::INFINITY);
                for pool in view.pools.iter().filter(|p| pool_ok(&p.name)) {
                    let Some(&cap) = pool.capacity.get(&r).filter(|c| **c > 0.0) else {
                        continue;
                    };
                    let used: f64 = view
                        .workloads
                        .iter()
                        .filter(|w| w.pool.as_deref() == Some(pool.name.as_str()))
                        .flat_map(|w| w.resources.iter())
                        .filter(|x| x.resource == r)
                        .filter_map(|x| x.usage)
                        .sum();
                    let share = used / cap;
                    if share > above {
                        out.push(Holding {
                            subject: format!("{}/{}", pool.name, r.as_str()),
                            message: format!(
                                "pool {} uses {} of {} {} ({:.0}%), above {:.0}%",
                                pool.name,
                                amount(r, used),
                                amount(r, cap),
                                r.as_str(),
                                share * 100.0,
                                above * 100.0
                            ),
                            workload: None,
                        });
                    }
                }
            }
            AlertCondition::Coverage => {
                let below = rule.below.unwrap_or(0.0);
                for w in view.workloads.iter().filter(|w| workload_ok(&w.id)) {
                    for x in &w.resources {
                        if rule.resource.is_some_and(|r| r != x.resource) {
                            continue;
                        }
                        if let Some(c) = x.coverage.filter(|c| *c < below) {
                            out.push(Holding {
                                subject: format!("{}/{}", w.id, x.resource.as_str()),
                                message: format!(
                                    "the {} forecast of {} covered {:.1}% of recent steps at its SLO quantile {}, below {:.1}%",
                                    x.resource.as_str(),
                                    w.id,
                                    c * 100.0,
                                    x.slo_quantile,
                                    below * 100.0
                                ),
                                workload: Some((w.id.clone(), x.resource)),
                            });
                        }
                    }
                }
            }
            AlertCondition::PlanDegraded => {
                for p in view
                    .plans
                    .iter()
                    .filter(|p| p.degraded && pool_ok(&p.pool.0))
                {
                    out.push(Holding {
                        subject: p.pool.0.clone(),
                        message: format!(
                            "the plan of pool {} is degraded: the guarantees of its workloads exceed its capacity",
                            p.pool.0
                        ),
                        workload: None,
                    });
                }
            }
            AlertCondition::PlanFailed => {
                let n = self
                    .plan_failures
                    .iter()
                    .filter(|&&t| now - t <= window)
                    .count();
                if n > 0 {
                    out.push(Holding {
                        subject: "host".into(),
                        message: format!(
                            "planning failed in {n} pass(es) within the last {} (see the agent's log)",
                            rule.window
                        ),
                        workload: None,
                    });
                }
            }
            AlertCondition::Anomaly => {
                // The newest matching anomaly per workload and resource.
                let mut newest: BTreeMap<(String, Resource), &crate::control::AnomalyView> =
                    BTreeMap::new();
                for a in &view.anomalies {
                    if now - a.at > window
                        || !workload_ok(&a.workload)
                        || rule.anomaly.as_deref().is_some_and(|k| k != a.kind)
                        || rule.resource.is_some_and(|r| r != a.resource)
                    {
                        continue;
                    }
                    let e = newest.entry((a.workload.clone(), a.resource)).or_insert(a);
                    if a.at >= e.at {
                        *e = a;
                    }
                }
                for ((w, r), a) in newest {
                    out.push(Holding {
                        subject: format!("{w}/{}", r.as_str()),
                        message: format!("{} of {w} ({}): {}", a.kind, r.as_str(), a.reason),
                        workload: Some((w, r)),
                    });
                }
            }
            AlertCondition::EnforceFailures => {
                let n: u64 = self
                    .enforce_failures
                    .iter()
                    .filter(|(t, _)| now - t <= window)
                    .map(|(_, n)| n)
                    .sum();
                if n as f64 >= rule.above.unwrap_or(1.0) {
                    out.push(Holding {
                        subject: "host".into(),
                        message: format!(
                            "{n} limit write(s) failed within the last {} (see the agent's log)",
                            rule.window
                        ),
                        workload: None,
                    });
                }
            }
        }
        out
    }
}

fn remediation(rule: &AlertRule, workload: Option<(String, Resource)>) -> Option<Remediation> {
    match rule.action? {
        RemediationAction::Replan => Some(Remediation::Replan),
        RemediationAction::RaiseSlo => workload.map(|(workload, resource)| Remediation::RaiseSlo {
            workload,
            resource,
            step: rule.slo_step,
            max: rule.slo_max,
        }),
        RemediationAction::MoveTier => match (workload, &rule.tier) {
            (Some((workload, _)), Some(pool)) => Some(Remediation::MoveTier {
                workload,
                pool: pool.clone(),
            }),
            _ => None,
        },
    }
}

/// A value in a unit a person reads: cores with two decimals, bytes in MiB.
fn amount(r: Resource, v: f64) -> String {
    match r {
        Resource::Memory => format!("{:.0} MiB", v / 1048576.0),
        _ => format!("{v:.2}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Interval, Severity};
    use crate::control::{AnomalyView, PoolView, ResourceView, WorkloadView};
    use prescient_core::{HostId, Plan};

    fn rule(name: &str, when: AlertCondition) -> AlertRule {
        AlertRule {
            name: name.into(),
            when,
            severity: Severity::Warning,
            hold: Interval::ms(0),
            resource: None,
            pool: None,
            workload: None,
            above: None,
            below: None,
            anomaly: None,
            window: Interval::secs(600),
            action: None,
            slo_step: 0.01,
            slo_max: 0.999,
            tier: None,
        }
    }

    fn res(r: Resource, usage: f64, coverage: Option<f64>) -> ResourceView {
        ResourceView {
            resource: r,
            usage: Some(usage),
            allocation: Some(usage),
            slo_quantile: 0.95,
            forecast: vec![],
            coverage,
            observations: 10,
            weights: vec![],
            calibration: vec![],
        }
    }

    fn view(cpu_a: f64, cpu_b: f64, coverage_b: Option<f64>) -> LiveView {
        LiveView {
            pools: vec![PoolView {
                name: "host".into(),
                parent: None,
                capacity: [(Resource::Cpu, 4.0)].into_iter().collect(),
            }],
            workloads: vec![
                WorkloadView {
                    id: "a".into(),
                    pool: Some("host".into()),
                    resources: vec![res(Resource::Cpu, cpu_a, Some(0.97))],
                    ..WorkloadView::default()
                },
                WorkloadView {
                    id: "b".into(),
                    pool: Some("host".into()),
                    resources: vec![res(Resource::Cpu, cpu_b, coverage_b)],
                    ..WorkloadView::default()
                },
            ],
            ..LiveView::default()
        }
    }

    #[test]
    fn utilisation_fires_after_its_hold_once_and_resolves_once() {
        let mut r = rule("hot", AlertCondition::Utilisation);
        r.above = Some(0.9);
        r.hold = Interval::secs(60);
        let mut e = AlertEngine::new(&[r]);
        // 3.8 of 4 cores: holds, pending for the hold time.
        assert!(e.evaluate(&view(2.0, 1.8, None), 0).is_empty());
        assert_eq!(e.alerts()[0].state, AlertState::Pending);
        assert!(e.evaluate(&view(2.0, 1.8, None), 30_000).is_empty());
        let t = e.evaluate(&view(2.0, 1.8, None), 60_000);
        assert_eq!(t.len(), 1);
        assert!(t[0].fired());
        assert_eq!(t[0].alert.id, "hot/host/cpu");
        assert!(t[0].alert.message.contains("95%"), "{}", t[0].alert.message);
        assert_eq!(t[0].alert.since, 0);
        // Still holding: no second notification (no storm).
        for i in 0..10 {
            assert!(
                e.evaluate(&view(2.0, 1.9, None), 70_000 + i * 1000)
                    .is_empty()
            );
        }
        assert_eq!(e.alerts().len(), 1);
        // Clears: resolved once.
        let t = e.evaluate(&view(1.0, 1.0, None), 100_000);
        assert_eq!(t.len(), 1);
        assert!(!t[0].fired());
        assert_eq!(t[0].alert.resolved_at, Some(100_000));
        assert!(e.evaluate(&view(1.0, 1.0, None), 101_000).is_empty());
        assert_eq!(e.alerts()[0].state, AlertState::Resolved);
        // Kept an hour, then dropped.
        e.evaluate(&view(1.0, 1.0, None), 100_000 + RESOLVED_KEPT_MS);
        assert!(e.alerts().is_empty());
    }

    #[test]
    fn a_blip_shorter_than_the_hold_makes_no_notification() {
        let mut r = rule("hot", AlertCondition::Utilisation);
        r.above = Some(0.9);
        r.hold = Interval::secs(60);
        let mut e = AlertEngine::new(&[r]);
        assert!(e.evaluate(&view(2.0, 1.8, None), 0).is_empty());
        assert!(e.evaluate(&view(1.0, 1.0, None), 10_000).is_empty());
        assert!(e.alerts().is_empty());
        // A new episode starts its hold afresh.
        assert!(e.evaluate(&view(2.0, 1.8, None), 20_000).is_empty());
        assert!(e.evaluate(&view(2.0, 1.8, None), 70_000).is_empty());
        assert_eq!(e.evaluate(&view(2.0, 1.8, None), 80_000).len(), 1);
    }

    #[test]
    fn coverage_names_the_workload_and_carries_its_remediation() {
        let mut r = rule("covered", AlertCondition::Coverage);
        r.below = Some(0.9);
        r.action = Some(RemediationAction::RaiseSlo);
        r.workload = Some("b*".into());
        let mut e = AlertEngine::new(&[r]);
        let t = e.evaluate(&view(1.0, 1.0, Some(0.8)), 5);
        assert_eq!(t.len(), 1, "only b is below and selected");
        assert_eq!(t[0].alert.id, "covered/b/cpu");
        assert_eq!(
            t[0].remediation,
            Some(Remediation::RaiseSlo {
                workload: "b".into(),
                resource: Resource::Cpu,
                step: 0.01,
                max: 0.999
            })
        );
        // Not scored yet: no alert, and the open one resolves.
        let t = e.evaluate(&view(1.0, 1.0, None), 6);
        assert_eq!(t.len(), 1);
        assert!(!t[0].fired());
        assert_eq!(t[0].remediation, None);
    }

    #[test]
    fn anomalies_and_failures_hold_for_their_window() {
        let mut leak = rule("leak", AlertCondition::Anomaly);
        leak.anomaly = Some("memory_leak".into());
        leak.window = Interval::secs(60);
        let mut fail = rule("writes", AlertCondition::EnforceFailures);
        fail.above = Some(2.0);
        fail.window = Interval::secs(60);
        let mut planfail = rule("planning", AlertCondition::PlanFailed);
        planfail.window = Interval::secs(60);
        let mut e = AlertEngine::new(&[leak, fail, planfail]);
        let mut v = view(1.0, 1.0, None);
        v.anomalies = vec![
            AnomalyView {
                at: 1_000,
                workload: "a".into(),
                resource: Resource::Memory,
                kind: "outlier".into(),
                reason: "a spike".into(),
            },
            AnomalyView {
                at: 2_000,
                workload: "a".into(),
                resource: Resource::Memory,
                kind: "memory_leak".into(),
                reason: "grew 10 MiB/h for 6 h".into(),
            },
        ];
        v.counters.enforce_failures = 1;
        let t = e.evaluate(&v, 3_000);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0].alert.id, "leak/a/memory");
        assert!(t[0].alert.message.contains("grew 10 MiB/h"));
        // One more failed write: two within the window.
        v.counters.enforce_failures = 2;
        v.counters.plan_errors = 1;
        let t = e.evaluate(&v, 4_000);
        let ids: Vec<&str> = t.iter().map(|t| t.alert.id.as_str()).collect();
        assert_eq!(ids, vec!["writes/host", "planning/host"]);
        // The window passes with nothing new: all resolve.
        let t = e.evaluate(&v, 70_000);
        assert_eq!(t.len(), 3);
        assert!(t.iter().all(|t| !t.fired()));
    }

    #[test]
    fn degraded_plans_and_reloads() {
        let mut r = rule("degraded", AlertCondition::PlanDegraded);
        r.severity = Severity::Critical;
        let mut e = AlertEngine::new(&[r.clone()]);
        let mut v = view(1.0, 1.0, None);
        v.plans = vec![Plan {
            made_at: 0,
            pool: HostId("host".into()),
            degraded: true,
            entries: vec![],
        }];
        let t = e.evaluate(&v, 0);
        assert_eq!(t[0].alert.severity, "critical");
        // A reload that keeps the rule keeps the alert (no second firing).
        e.set_rules(&[r]);
        assert!(e.evaluate(&v, 1).is_empty());
        // One that drops it drops the alert.
        e.set_rules(&[]);
        assert!(e.alerts().is_empty());
        assert!(e.evaluate(&v, 2).is_empty());
    }
}
