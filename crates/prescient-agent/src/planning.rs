//! The one-step demand distributions the agent plans with: one
//! [`HostTails`] per pool and resource, the code the replay simulator's
//! `prescient` policy splits a contended host with, so that what a replay
//! with a capacity measures is what the agent does.
//!
//! Each completed rollup step's value (the same value the workload's
//! forecaster learns: events taken out, outliers clipped, usage at a hard
//! cap probed upwards) is fed to its pool's tails, all the series that
//! completed the same step together ([`PlanningTails::learn`], then
//! [`PlanningTails::flush`]). At plan time each workload's demand for every
//! planned step is its tail curve ([`PlanningTails::demand`]), a
//! distribution that forgets with a one-hour half-life, which the solver
//! splits with the workload's own policy (guarantee, limit, priority, SLO
//! quantile). Until a series has learnt [`WARM_STEPS`] steps (a new
//! workload, or one whose tails a crash lost) the agent plans
//! it from its forecaster, which the store restores and history may have
//! trained. The tails are saved with the agent's state
//! ([`PlanningTails::to_bytes`]: at a graceful stop and every half hour,
//! since a window of a few thousand values per series is too much to write
//! at every checkpoint), so a restart after a stop plans as an
//! uninterrupted run would; after a crash, the series run on their
//! forecasters until the tails are warm again.
//!
//! The forecasters still give everything beyond the next steps: the
//! forecast bands the API and dashboard show, events and their learned
//! effects, anomalies, day-ahead views.

use std::collections::BTreeMap;
use std::sync::Arc;

use prescient_core::{Resource, TimestampMs, WorkloadId};
use prescient_forecast::tails::{HostTails, TailConfig};
use prescient_solver::Demand;
use serde::{Deserialize, Serialize};

/// Steps a series learns before its tail curve replaces its forecaster's
/// profile in plans.
pub const WARM_STEPS: usize = 12;

/// The planning tails of every pool and resource.
pub struct PlanningTails {
    step_ms: i64,
    levels: Arc<[f64]>,
    pools: BTreeMap<(String, Resource), PoolTails>,
    /// Completed steps not yet fed: (pool, workload, resource, step, value).
    pending: Vec<(String, WorkloadId, Resource, TimestampMs, f64)>,
    /// Scratch for [`HostTails::allocate`]'s (unused) allocations.
    scratch: Vec<f64>,
    /// Learnt since last saved.
    dirty: bool,
}

/// One pool's tails as saved.
#[derive(Serialize, Deserialize)]
struct SavedPool {
    pool: String,
    resource: Resource,
    tails: HostTails,
    slots: Vec<(WorkloadId, usize)>,
    free: Vec<usize>,
}

/// One pool's tails for one resource, and which slot is whose.
struct PoolTails {
    tails: HostTails,
    slots: BTreeMap<WorkloadId, usize>,
    /// Slots of workloads that left, reused (forgotten first) by new ones.
    free: Vec<usize>,
}

impl PlanningTails {
    /// Tails for series rolled up every `step_ms`.
    pub fn new(step_ms: i64) -> Self {
        PlanningTails {
            step_ms: step_ms.max(1),
            levels: TailConfig::levels().into(),
            pools: BTreeMap::new(),
            pending: Vec::new(),
            scratch: Vec::new(),
            dirty: false,
        }
    }

    /// Whether they learnt since [`PlanningTails::to_bytes`].
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Their saved form (postcard): the rollup step, and per pool and
    /// resource what the tails learnt and which slot is whose. Marks them
    /// saved.
    pub fn to_bytes(&mut self) -> Result<Vec<u8>, String> {
        let pools: Vec<SavedPool> = self
            .pools
            .iter()
            .map(|((pool, resource), pt)| SavedPool {
                pool: pool.clone(),
                resource: *resource,
                tails: pt.tails.clone(),
                slots: pt.slots.iter().map(|(w, &s)| (w.clone(), s)).collect(),
                free: pt.free.clone(),
            })
            .collect();
        let bytes = postcard::to_stdvec(&(self.step_ms, pools)).map_err(|e| e.to_string())?;
        self.dirty = false;
        Ok(bytes)
    }

    /// Tails saved by [`PlanningTails::to_bytes`], for rollups every
    /// `step_ms`: refused (with the reason) when saved at another step or
    /// broken, or when their slots do not fit their tails.
    pub fn from_bytes(bytes: &[u8], step_ms: i64) -> Result<Self, String> {
        let (saved_step, pools): (i64, Vec<SavedPool>) =
            postcard::from_bytes(bytes).map_err(|e| format!("does not decode: {e}"))?;
        if saved_step != step_ms.max(1) {
            return Err(format!(
                "saved for a {saved_step} ms rollup step, not {} ms",
                step_ms.max(1)
            ));
        }
        let mut out = PlanningTails::new(step_ms);
        for p in pools {
            let n = p.tails.series_count();
            if let Some(&(ref w, s)) = p.slots.iter().find(|(_, s)| *s >= n) {
                return Err(format!(
                    "pool {} {}: {w} has slot {s} of {n}",
                    p.pool, p.resource
                ));
            }
            out.pools.insert(
                (p.pool, p.resource),
                PoolTails {
                    tails: p.tails,
                    slots: p.slots.into_iter().collect(),
                    free: p.free.into_iter().filter(|&s| s < n).collect(),
                },
            );
        }
        Ok(out)
    }

    /// The rollup step they were made for; a different one (a reload
    /// changed `forecast_step`) needs new tails.
    pub fn step_ms(&self) -> i64 {
        self.step_ms
    }

    /// Queues `w`'s `r` value of the step starting at `at`, in `pool`.
    pub fn learn(&mut self, pool: &str, w: &WorkloadId, r: Resource, at: TimestampMs, value: f64) {
        self.pending
            .push((pool.to_string(), w.clone(), r, at, value));
    }

    /// Feeds the queued values, the series of a pool and resource that
    /// completed the same step together.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by(|a, b| (&a.0, a.2, a.3).cmp(&(&b.0, b.2, b.3)));
        let mut slots = Vec::new();
        let mut values = Vec::new();
        let mut i = 0;
        while i < pending.len() {
            let (pool, _, r, at, _) = &pending[i];
            let (pool, r, at) = (pool.clone(), *r, *at);
            let mut j = i;
            slots.clear();
            values.clear();
            let step_ms = self.step_ms;
            let pt = self
                .pools
                .entry((pool.clone(), r))
                .or_insert_with(|| PoolTails::new(step_ms));
            while j < pending.len()
                && pending[j].0 == pool
                && pending[j].2 == r
                && pending[j].3 == at
            {
                let s = pt.slot(&pending[j].1);
                // A workload seen twice in one step keeps its last value.
                if let Some(k) = slots.iter().position(|&x| x == s) {
                    values[k] = pending[j].4;
                } else {
                    slots.push(s);
                    values.push(pending[j].4);
                }
                j += 1;
            }
            pt.tails.observe(at, &slots, &values);
            self.dirty = true;
            i = j;
        }
        self.pending = pending;
        self.pending.clear();
    }

    /// Builds the curves of `workloads` in `pool` for `r` (call before
    /// [`PlanningTails::demand`] at each plan).
    pub fn prepare(&mut self, pool: &str, r: Resource, workloads: &[&WorkloadId]) {
        let Some(pt) = self.pools.get_mut(&(pool.to_string(), r)) else {
            return;
        };
        let present: Vec<usize> = workloads
            .iter()
            .filter_map(|w| pt.slots.get(*w).copied())
            .collect();
        self.scratch
            .resize(present.len() * pt.tails.knobs().len(), 0.0);
        pt.tails.allocate(&present, &mut self.scratch);
    }

    /// `w`'s demand in `pool` for `r`: its tail curve at every one of
    /// `horizon` steps from `start`, once it has learnt [`WARM_STEPS`]
    /// steps (`None` before: plan it from its forecaster).
    pub fn demand(
        &self,
        pool: &str,
        w: &WorkloadId,
        r: Resource,
        start: TimestampMs,
        horizon: usize,
    ) -> Option<Demand> {
        let pt = self.pools.get(&(pool.to_string(), r))?;
        let &s = pt.slots.get(w)?;
        if pt.tails.observations(s) < WARM_STEPS {
            return None;
        }
        let curve = pt.tails.curve(0, s);
        let mut values = Vec::with_capacity(curve.len() * horizon);
        for _ in 0..horizon.max(1) {
            values.extend_from_slice(curve);
        }
        Some(Demand {
            start,
            step_ms: self.step_ms,
            levels: self.levels.clone(),
            values,
        })
    }

    /// Frees the slots of workloads no longer in `live` (by pool and
    /// resource: a workload moved to another pool leaves its old one).
    pub fn retain(&mut self, live: &BTreeMap<(String, Resource), Vec<WorkloadId>>) {
        for (key, pt) in &mut self.pools {
            let keep = live.get(key);
            let gone: Vec<WorkloadId> = pt
                .slots
                .keys()
                .filter(|w| keep.is_none_or(|k| !k.contains(w)))
                .cloned()
                .collect();
            for w in gone {
                if let Some(s) = pt.slots.remove(&w) {
                    pt.free.push(s);
                }
            }
        }
    }

    /// Forgets what `w`'s `r` learnt in `pool` and learns `recent` (the
    /// steps since a level shift, in time order) instead.
    pub fn relearn(
        &mut self,
        pool: &str,
        w: &WorkloadId,
        r: Resource,
        recent: &[(TimestampMs, f64)],
    ) {
        let step_ms = self.step_ms;
        let pt = self
            .pools
            .entry((pool.to_string(), r))
            .or_insert_with(|| PoolTails::new(step_ms));
        let s = pt.slot(w);
        pt.tails.reset_series(s);
        self.dirty = true;
        for &(t, v) in recent {
            if v.is_finite() {
                pt.tails.observe(t, &[s], &[v]);
            }
        }
    }

    /// How many steps `w`'s `r` has learnt in `pool` (0 if none).
    pub fn observations(&self, pool: &str, w: &WorkloadId, r: Resource) -> usize {
        self.pools
            .get(&(pool.to_string(), r))
            .and_then(|pt| pt.slots.get(w).map(|&s| pt.tails.observations(s)))
            .unwrap_or(0)
    }
}

impl PoolTails {
    fn new(step_ms: i64) -> Self {
        PoolTails {
            // One knob: the planning config's curves do not depend on it.
            tails: HostTails::new(TailConfig::for_planning(step_ms), 0, step_ms, 0, &[0.95]),
            slots: BTreeMap::new(),
            free: Vec::new(),
        }
    }

    /// `w`'s slot, made (or a freed one reused) on its first step.
    fn slot(&mut self, w: &WorkloadId) -> usize {
        if let Some(&s) = self.slots.get(w) {
            return s;
        }
        let s = match self.free.pop() {
            Some(s) => {
                self.tails.reset_series(s);
                s
            }
            None => self.tails.add_series(),
        };
        self.slots.insert(w.clone(), s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str) -> WorkloadId {
        WorkloadId(name.to_string())
    }

    #[test]
    fn demand_comes_once_warm_and_is_the_tail_curve_of_the_workload() {
        let mut p = PlanningTails::new(10_000);
        let (a, b) = (w("a"), w("b"));
        for t in 0..WARM_STEPS as i64 {
            assert!(p.demand("host", &a, Resource::Cpu, 0, 3).is_none());
            p.learn("host", &a, Resource::Cpu, t * 10_000, 1.0 + (t % 3) as f64);
            p.learn("host", &b, Resource::Cpu, t * 10_000, 0.5);
            p.flush();
            p.prepare("host", Resource::Cpu, &[&a, &b]);
        }
        let d = p.demand("host", &a, Resource::Cpu, 5, 3).unwrap();
        assert_eq!((d.start, d.step_ms), (5, 10_000));
        let n = d.levels.len();
        assert_eq!(d.values.len(), 3 * n);
        assert_eq!(
            d.values[..n],
            d.values[n..2 * n],
            "the same curve every step"
        );
        // Between its own lowest and above its highest value, never falling.
        assert!(d.values[..n].windows(2).all(|x| x[0] <= x[1]));
        assert!(
            d.values[0] >= 1.0 - 1e-9 && d.values[n - 1] > 3.0,
            "{:?}",
            d.values
        );
        let db = p.demand("host", &b, Resource::Cpu, 5, 1).unwrap();
        let median = db.levels.iter().position(|&l| l >= 0.5).unwrap();
        assert!(
            (db.values[median] - 0.5).abs() < 1e-9,
            "b's own level: {:?}",
            db.values
        );
        // Another resource or pool has learnt nothing.
        assert!(p.demand("host", &a, Resource::Memory, 5, 1).is_none());
        assert!(p.demand("other", &a, Resource::Cpu, 5, 1).is_none());
    }

    #[test]
    fn a_workload_that_left_frees_its_slot_for_a_new_one_that_starts_cold() {
        let mut p = PlanningTails::new(10_000);
        let (a, b) = (w("a"), w("b"));
        for t in 0..20 {
            p.learn("host", &a, Resource::Cpu, t * 10_000, 2.0);
            p.flush();
        }
        assert_eq!(p.observations("host", &a, Resource::Cpu), 20);
        p.retain(&BTreeMap::from([(
            ("host".to_string(), Resource::Cpu),
            vec![],
        )]));
        assert_eq!(p.observations("host", &a, Resource::Cpu), 0);
        p.learn("host", &b, Resource::Cpu, 20 * 10_000, 1.0);
        p.flush();
        assert_eq!(
            p.observations("host", &b, Resource::Cpu),
            1,
            "reused, forgotten"
        );
        let pt = &p.pools[&("host".to_string(), Resource::Cpu)];
        assert_eq!(pt.tails.series_count(), 1, "no slot added");
        // A level shift: only the steps since it are kept.
        p.relearn(
            "host",
            &b,
            Resource::Cpu,
            &[(19 * 10_000, 5.0), (20 * 10_000, 5.0)],
        );
        assert_eq!(p.observations("host", &b, Resource::Cpu), 2);
        // A workload seen twice in a step counts once.
        p.learn("host", &b, Resource::Cpu, 21 * 10_000, 1.0);
        p.learn("host", &b, Resource::Cpu, 21 * 10_000, 3.0);
        p.flush();
        assert_eq!(p.observations("host", &b, Resource::Cpu), 3);
    }

    #[test]
    fn saved_tails_plan_as_the_ones_that_ran_through_and_refuse_another_step() {
        let mut p = PlanningTails::new(10_000);
        let (a, b) = (w("a"), w("b"));
        for t in 0..40i64 {
            p.learn("host", &a, Resource::Cpu, t * 10_000, 1.0 + (t % 5) as f64);
            p.learn("host", &b, Resource::Memory, t * 10_000, 5e8);
            p.flush();
        }
        assert!(p.dirty());
        let bytes = p.to_bytes().unwrap();
        assert!(!p.dirty());
        let mut q = PlanningTails::from_bytes(&bytes, 10_000).unwrap();
        for x in [&mut p, &mut q] {
            x.prepare("host", Resource::Cpu, &[&a]);
            x.prepare("host", Resource::Memory, &[&b]);
        }
        for (w, r) in [(&a, Resource::Cpu), (&b, Resource::Memory)] {
            let (dp, dq) = (
                p.demand("host", w, r, 0, 2).unwrap(),
                q.demand("host", w, r, 0, 2).unwrap(),
            );
            assert_eq!(dp.values, dq.values);
        }
        let e = PlanningTails::from_bytes(&bytes, 5_000).err().unwrap();
        assert!(e.contains("10000 ms rollup step"), "{e}");
        let e = PlanningTails::from_bytes(&bytes[..10], 10_000)
            .err()
            .unwrap();
        assert!(e.contains("does not decode"), "{e}");
    }
}
