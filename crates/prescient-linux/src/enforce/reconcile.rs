//! The reconciler: holds cgroups at desired limits through an
//! [`Enforcer`], idempotently, with guardrails, drift detection, retries
//! with backoff, and an audit record for every write.

use std::collections::BTreeMap;

use prescient_core::TimestampMs;
use serde::{Deserialize, Serialize};

use super::guard::{Guarantee, Guardrails, guard_setting};
use super::{Disposition, EnforceError, Enforcer, Knob, Limits, MemoryLimit, Observed, Setting};
use crate::path::CgroupPath;

/// What one cgroup should be held at, and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// The limits.
    pub limits: Limits,
    /// What the workload is promised: no limit goes below it.
    pub guarantee: Guarantee,
    /// Why (the plan and its reasons); goes into every audit record.
    pub reason: String,
}

/// One write, as the audit log keeps it (the fields of
/// `prescient_store::AuditEntry`, which the caller stores it as).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When.
    pub ts: TimestampMs,
    /// Who (the reconciler's actor, `agent` by default).
    pub actor: String,
    /// `cgroup.write`.
    pub action: String,
    /// The file (or files) written.
    pub target: String,
    /// The value before, as a v2 file shows it.
    pub before: Option<String>,
    /// The value written.
    pub after: Option<String>,
    /// Why: the desired state's reason, then what the guardrails changed.
    pub reason: String,
}

/// What a reconcile did or found, per cgroup and knob.
#[derive(Debug)]
pub enum Action {
    /// A value was written.
    Wrote {
        /// The cgroup.
        cgroup: CgroupPath,
        /// What was written.
        setting: Setting,
        /// The value before.
        before: Setting,
        /// The record to store.
        audit: AuditRecord,
    },
    /// Someone else changed a value this reconciler had set; it is set
    /// back in the same reconcile.
    Drift {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The knob.
        knob: Knob,
        /// What this reconciler had set.
        expected: Setting,
        /// What was found.
        found: Setting,
    },
    /// A guardrail refused the value; nothing was written. Reported once
    /// per desired value.
    Refused {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The knob.
        knob: Knob,
        /// Why, with the values.
        error: EnforceError,
    },
    /// A read or write failed and will be retried at `retry_at`.
    Failed {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The knob (`None`: reading the cgroup failed).
        knob: Option<Knob>,
        /// The failure.
        error: EnforceError,
        /// Attempts so far.
        attempt: u32,
        /// When the next attempt may be made.
        retry_at: TimestampMs,
    },
    /// A failure that is not retried (or retried too often): dropped with
    /// a log line; tried again when the desired value changes. A vanished
    /// cgroup is dropped with `knob: None` and forgotten.
    Dropped {
        /// The cgroup.
        cgroup: CgroupPath,
        /// The knob (`None`: the whole cgroup).
        knob: Option<Knob>,
        /// The failure.
        error: EnforceError,
    },
}

impl Action {
    /// The audit record of a write.
    pub fn audit(&self) -> Option<&AuditRecord> {
        match self {
            Action::Wrote { audit, .. } => Some(audit),
            _ => None,
        }
    }
}

/// Backoff for retried failures: `first_delay_ms` doubling per attempt up
/// to `max_delay_ms`, dropped after `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay after the first failure.
    pub first_delay_ms: i64,
    /// Longest delay.
    pub max_delay_ms: i64,
    /// Failures of the same value before it is dropped.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay_ms: 500,
            max_delay_ms: 30_000,
            max_attempts: 6,
        }
    }
}

impl RetryPolicy {
    /// The delay after `attempt` failures (1-based).
    pub fn delay_ms(&self, attempt: u32) -> i64 {
        let shift = attempt.saturating_sub(1).min(30);
        self.first_delay_ms
            .saturating_mul(1 << shift)
            .min(self.max_delay_ms)
    }
}

#[derive(Debug, Default)]
struct KnobState {
    /// The value before this reconciler first wrote (or first saw) it.
    original: Option<Setting>,
    /// The value this reconciler holds the knob at (written or confirmed).
    held: Option<Setting>,
    /// A failing target: attempts, next attempt, the target.
    retry: Option<(u32, TimestampMs, Setting)>,
    /// A target dropped after failing; not tried again until it changes.
    dropped: Option<Setting>,
    /// The desired value last refused by a guardrail (reported once).
    refused: Option<Setting>,
}

#[derive(Debug, Default)]
struct CgroupState {
    knobs: BTreeMap<Knob, KnobState>,
    read_retry: Option<(u32, TimestampMs)>,
}

/// Holds cgroups at [`Desired`] limits. See [`Reconciler::reconcile`].
pub struct Reconciler<E> {
    enforcer: E,
    rails: Guardrails,
    retry: RetryPolicy,
    actor: String,
    state: BTreeMap<CgroupPath, CgroupState>,
}

impl<E: Enforcer> Reconciler<E> {
    /// A reconciler writing through `enforcer` within `rails`.
    pub fn new(enforcer: E, rails: Guardrails) -> Self {
        Reconciler {
            enforcer,
            rails,
            retry: RetryPolicy::default(),
            actor: "agent".into(),
            state: BTreeMap::new(),
        }
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the audit records' actor.
    pub fn with_actor(mut self, actor: &str) -> Self {
        self.actor = actor.into();
        self
    }

    /// The enforcer.
    pub fn enforcer(&self) -> &E {
        &self.enforcer
    }

    /// The enforcer, mutably (tests use it to script the fake).
    pub fn enforcer_mut(&mut self) -> &mut E {
        &mut self.enforcer
    }

    /// The guardrails.
    pub fn guardrails(&self) -> &Guardrails {
        &self.rails
    }

    /// The original value of every knob touched, per cgroup: what
    /// [`Reconciler::restore`] writes back. A caller may store them to
    /// restore after a crash.
    pub fn originals(&self) -> BTreeMap<CgroupPath, Vec<Setting>> {
        self.state
            .iter()
            .map(|(cg, st)| {
                (
                    cg.clone(),
                    st.knobs.values().filter_map(|k| k.original).collect(),
                )
            })
            .collect()
    }

    /// Brings every cgroup of `desired` toward its limits, at time `now`:
    ///
    /// - reads each cgroup's current limits and memory use;
    /// - reports drift where a value this reconciler set was changed by
    ///   someone else, and sets it back;
    /// - passes each desired value through the guardrails
    ///   ([`guard_setting`]); when memory.max may not come down yet
    ///   (usage), memory.high is brought down to the desired memory.max
    ///   instead, so the kernel reclaims toward it;
    /// - writes only what differs (a second call with the same desired
    ///   state and no change on the host writes nothing), lowering
    ///   memory.high before memory.max and raising memory.max first;
    /// - retries failures with backoff ([`RetryPolicy`]) or drops them
    ///   with a log line ([`EnforceError::disposition`]); never panics;
    /// - hands back cgroups that left the desired set (restoring their
    ///   originals when [`Guardrails::restore_originals`]).
    pub fn reconcile(
        &mut self,
        desired: &BTreeMap<CgroupPath, Desired>,
        now: TimestampMs,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let gone: Vec<CgroupPath> = self
            .state
            .keys()
            .filter(|c| !desired.contains_key(*c))
            .cloned()
            .collect();
        for cg in gone {
            if self.rails.restore_originals {
                self.restore_cgroup(
                    &cg,
                    now,
                    "no longer in the plan: original limits restored",
                    &mut actions,
                );
            }
            self.state.remove(&cg);
        }
        for (cg, d) in desired {
            self.reconcile_cgroup(cg, d, now, &mut actions);
        }
        actions
    }

    /// Writes back every original value and forgets all state.
    pub fn restore(&mut self, now: TimestampMs) -> Vec<Action> {
        let mut actions = Vec::new();
        let cgroups: Vec<CgroupPath> = self.state.keys().cloned().collect();
        for cg in cgroups {
            self.restore_cgroup(&cg, now, "shutdown: original limits restored", &mut actions);
        }
        self.state.clear();
        actions
    }

    /// On shutdown: [`Reconciler::restore`] when configured to, else
    /// nothing (limits stay as they are).
    pub fn shutdown(&mut self, now: TimestampMs) -> Vec<Action> {
        if self.rails.restore_originals {
            self.restore(now)
        } else {
            self.state.clear();
            Vec::new()
        }
    }

    fn reconcile_cgroup(
        &mut self,
        cg: &CgroupPath,
        d: &Desired,
        now: TimestampMs,
        actions: &mut Vec<Action>,
    ) {
        let st = self.state.entry(cg.clone()).or_default();
        if let Some((_, at)) = st.read_retry
            && now < at
        {
            return;
        }
        let knobs: Vec<Knob> = d.limits.settings().iter().map(Setting::knob).collect();
        let obs = match self.enforcer.read_knobs(cg, &knobs) {
            Ok(o) => {
                st.read_retry = None;
                o
            }
            Err(error) => {
                if error.is_vanished() {
                    log::warn!("dropping cgroup {cg}: {error}");
                    self.state.remove(cg);
                    actions.push(Action::Dropped {
                        cgroup: cg.clone(),
                        knob: None,
                        error,
                    });
                    return;
                }
                let attempt = st.read_retry.map_or(0, |r| r.0) + 1;
                if error.disposition() == Disposition::Retry && attempt <= self.retry.max_attempts {
                    let retry_at = now + self.retry.delay_ms(attempt);
                    st.read_retry = Some((attempt, retry_at));
                    actions.push(Action::Failed {
                        cgroup: cg.clone(),
                        knob: None,
                        error,
                        attempt,
                        retry_at,
                    });
                } else {
                    log::warn!("reading cgroup {cg} failed, dropped: {error}");
                    // Try again after the longest delay rather than never.
                    st.read_retry = Some((0, now + self.retry.max_delay_ms));
                    actions.push(Action::Dropped {
                        cgroup: cg.clone(),
                        knob: None,
                        error,
                    });
                }
                return;
            }
        };

        // Knobs no longer asked for are left alone: no drift is watched
        // for them (their originals are kept for restoring).
        for (k, ks) in st.knobs.iter_mut() {
            if !knobs.contains(k) {
                ks.held = None;
                ks.retry = None;
                ks.refused = None;
            }
        }

        // Guard every desired value against what is there now.
        let mut planned: Vec<Planned> = Vec::new();
        for want in d.limits.settings() {
            let knob = want.knob();
            let Some(cur) = obs.get(knob) else {
                let file = self.enforcer.target(cg, knob).into();
                let error = EnforceError::ControllerUnavailable {
                    cgroup: cg.clone(),
                    knob,
                    file,
                };
                let ks = st.knobs.entry(knob).or_default();
                if ks.dropped != Some(want) {
                    log::warn!("{error}");
                    ks.dropped = Some(want);
                    actions.push(Action::Dropped {
                        cgroup: cg.clone(),
                        knob: Some(knob),
                        error,
                    });
                }
                continue;
            };
            let ks = st.knobs.entry(knob).or_default();
            ks.original.get_or_insert(cur);
            if let Some(held) = ks.held
                && held != cur
            {
                log::warn!(
                    "cgroup {cg}: {knob} drifted: set {}, found {}",
                    held.v2_text(),
                    cur.v2_text()
                );
                actions.push(Action::Drift {
                    cgroup: cg.clone(),
                    knob,
                    expected: held,
                    found: cur,
                });
                ks.held = None;
            }
            let res = guard_setting(cg, &want, &cur, obs.memory_usage, &d.guarantee, &self.rails);
            planned.push((want, cur, res));
        }

        shrink_through_high(cg, &mut planned, &obs, d, &self.rails);
        // memory.high may have been added above: its original counts too.
        for (want, cur, _) in &planned {
            st.knobs
                .entry(want.knob())
                .or_default()
                .original
                .get_or_insert(*cur);
        }
        order_memory_writes(&mut planned);

        for (want, cur, res) in planned {
            let knob = want.knob();
            let (target, notes) = match res {
                Ok(t) => t,
                Err(error) => {
                    let ks = st.knobs.entry(knob).or_default();
                    if ks.refused != Some(want) {
                        ks.refused = Some(want);
                        actions.push(Action::Refused {
                            cgroup: cg.clone(),
                            knob,
                            error,
                        });
                    }
                    continue;
                }
            };
            let ks = st.knobs.entry(knob).or_default();
            ks.refused = None;
            if target == cur {
                ks.held = Some(target);
                ks.retry = None;
                ks.dropped = None;
                continue;
            }
            if ks.dropped == Some(target) {
                continue;
            }
            if let Some((_, at, t)) = ks.retry
                && t == target
                && now < at
            {
                continue;
            }
            match self.enforcer.write(cg, &target) {
                Ok(()) => {
                    let mut reason = d.reason.clone();
                    for n in notes {
                        if !reason.is_empty() {
                            reason.push_str("; ");
                        }
                        reason.push_str(&n);
                    }
                    let audit = AuditRecord {
                        ts: now,
                        actor: self.actor.clone(),
                        action: "cgroup.write".into(),
                        target: self.enforcer.target(cg, knob),
                        before: Some(cur.v2_text()),
                        after: Some(target.v2_text()),
                        reason,
                    };
                    ks.held = Some(target);
                    ks.retry = None;
                    ks.dropped = None;
                    actions.push(Action::Wrote {
                        cgroup: cg.clone(),
                        setting: target,
                        before: cur,
                        audit,
                    });
                }
                Err(error) if error.is_vanished() => {
                    log::warn!("dropping cgroup {cg}: {error}");
                    self.state.remove(cg);
                    actions.push(Action::Dropped {
                        cgroup: cg.clone(),
                        knob: None,
                        error,
                    });
                    return;
                }
                Err(error) => {
                    let attempt = match ks.retry {
                        Some((a, _, t)) if t == target => a + 1,
                        _ => 1,
                    };
                    if error.disposition() == Disposition::Retry
                        && attempt <= self.retry.max_attempts
                    {
                        let retry_at = now + self.retry.delay_ms(attempt);
                        ks.retry = Some((attempt, retry_at, target));
                        actions.push(Action::Failed {
                            cgroup: cg.clone(),
                            knob: Some(knob),
                            error,
                            attempt,
                            retry_at,
                        });
                    } else {
                        log::warn!(
                            "cgroup {cg}: {knob} = {} dropped: {error}",
                            target.v2_text()
                        );
                        ks.retry = None;
                        ks.dropped = Some(target);
                        actions.push(Action::Dropped {
                            cgroup: cg.clone(),
                            knob: Some(knob),
                            error,
                        });
                    }
                }
            }
        }
    }

    fn restore_cgroup(
        &mut self,
        cg: &CgroupPath,
        now: TimestampMs,
        why: &str,
        actions: &mut Vec<Action>,
    ) {
        let Some(st) = self.state.get(cg) else { return };
        let obs = match self.enforcer.read(cg) {
            Ok(o) => o,
            Err(error) => {
                if !error.is_vanished() {
                    log::warn!("restoring cgroup {cg}: {error}");
                    actions.push(Action::Dropped {
                        cgroup: cg.clone(),
                        knob: None,
                        error,
                    });
                }
                return;
            }
        };
        let mut planned: Vec<Planned> = Vec::new();
        for (knob, ks) in &st.knobs {
            let (Some(orig), Some(cur)) = (ks.original, obs.get(*knob)) else {
                continue;
            };
            if orig == cur {
                continue;
            }
            // Originals bypass steps and guarantees, but a hard memory
            // limit still never goes under usage plus headroom.
            let res = match (orig, cur) {
                (Setting::MemoryMax(MemoryLimit::Bytes(b)), Setting::MemoryMax(c))
                    if b < c.as_u64() =>
                {
                    match obs.memory_usage {
                        Some(u) if b >= u.saturating_add(self.rails.headroom(u)) => {
                            Ok((orig, Vec::new()))
                        }
                        Some(u) => Err(EnforceError::MemoryBelowUsage {
                            cgroup: cg.clone(),
                            limit: b,
                            usage: u,
                            headroom: self.rails.headroom(u),
                        }),
                        None => Err(EnforceError::MemoryUsageUnknown {
                            cgroup: cg.clone(),
                            limit: b,
                        }),
                    }
                }
                _ => Ok((orig, Vec::new())),
            };
            planned.push((orig, cur, res));
        }
        order_memory_writes(&mut planned);
        for (orig, cur, res) in planned {
            let knob = orig.knob();
            match res {
                Err(error) => actions.push(Action::Refused {
                    cgroup: cg.clone(),
                    knob,
                    error,
                }),
                Ok((target, _)) => match self.enforcer.write(cg, &target) {
                    Ok(()) => actions.push(Action::Wrote {
                        cgroup: cg.clone(),
                        setting: target,
                        before: cur,
                        audit: AuditRecord {
                            ts: now,
                            actor: self.actor.clone(),
                            action: "cgroup.write".into(),
                            target: self.enforcer.target(cg, knob),
                            before: Some(cur.v2_text()),
                            after: Some(target.v2_text()),
                            reason: why.into(),
                        },
                    }),
                    Err(error) => {
                        log::warn!(
                            "restoring cgroup {cg}: {knob} = {}: {error}",
                            target.v2_text()
                        );
                        actions.push(Action::Dropped {
                            cgroup: cg.clone(),
                            knob: Some(knob),
                            error,
                        });
                    }
                },
            }
        }
    }
}

type Planned = (
    Setting,
    Setting,
    Result<(Setting, Vec<String>), EnforceError>,
);

/// When memory.max may not come down yet because of usage, bring
/// memory.high down to the desired memory.max (or keep a lower desired
/// memory.high): the kernel then reclaims toward it without OOM kills,
/// and a later reconcile lowers memory.max once usage allows.
fn shrink_through_high(
    cg: &CgroupPath,
    planned: &mut Vec<Planned>,
    obs: &Observed,
    d: &Desired,
    rails: &Guardrails,
) {
    let Some((want_max, _, res)) = planned.iter().find(|p| p.0.knob() == Knob::MemoryMax) else {
        return;
    };
    let (Setting::MemoryMax(MemoryLimit::Bytes(max_bytes)), Err(e)) = (want_max, res) else {
        return;
    };
    if !matches!(
        e,
        EnforceError::MemoryBelowUsage { .. } | EnforceError::MemoryUsageUnknown { .. }
    ) {
        return;
    }
    let Some(cur_high) = obs.get(Knob::MemoryHigh) else {
        return;
    };
    let high = match d.limits.memory_high {
        Some(MemoryLimit::Bytes(h)) => h.min(*max_bytes),
        _ => *max_bytes,
    };
    let want = Setting::MemoryHigh(MemoryLimit::Bytes(high));
    let res = guard_setting(cg, &want, &cur_high, obs.memory_usage, &d.guarantee, rails).map(
        |(s, mut notes)| {
            notes.push(
                "memory.max must wait for usage to come down: shrinking through memory.high".into(),
            );
            (s, notes)
        },
    );
    planned.retain(|p| p.0.knob() != Knob::MemoryHigh);
    planned.push((want, cur_high, res));
}

/// Lowering memory: memory.high before memory.max; raising: memory.max
/// first. Other knobs keep their order.
fn order_memory_writes(planned: &mut [Planned]) {
    let lowering_max = planned.iter().any(|(_, cur, res)| match (cur, res) {
        (Setting::MemoryMax(c), Ok((Setting::MemoryMax(n), _))) => n.as_u64() < c.as_u64(),
        _ => false,
    });
    let rank = |k: Knob| match (k, lowering_max) {
        (Knob::MemoryHigh, true) | (Knob::MemoryMax, false) => 0,
        (Knob::MemoryMax, true) | (Knob::MemoryHigh, false) => 1,
        _ => 2,
    };
    // Stable: non-memory knobs keep their relative order after memory.
    planned.sort_by_key(|p| rank(p.0.knob()));
}
