//! Autopilot's ML recommender (Rzadca et al., EuroSys 2020, section 3.2):
//! an ensemble of simple models, each a (decay, margin) pair, and a
//! recommender that picks among them by their recent cost.
//!
//! Each model keeps a decaying histogram of usage. For each limit `L` on
//! the bucket grid (bucket upper edges) it has
//! - the overrun `o(L)`: decayed share of samples above `L`,
//! - the underrun `u(L)`: decayed mean of the slack below `L`,
//!
//! and picks `L' = argmin w_o o(L) + w_u u(L) + w_dL [L != its previous L']`
//! ([`ml_argmin`], O(buckets) with prefix sums), then adds its margin:
//! `L_m = L' x (1 + M_m)`. Each model's cost `c_m` is the cost of its own
//! limits against the usage that followed, exponentially forgotten:
//! `c_m <- r c_m + (1 - r)(w_o [x > L_m] + w_u underrun(L_m, x) + w_dL [L_m changed])`.
//! The recommender picks `argmin c_m + w_dm [m != previous model] + w_dL [L_m != previous limit]`
//! ([`choose_model`]). The knob is an extra margin on the chosen limit.
//!
//! Choices where the paper gives no numbers (it publishes the form, not the
//! tuned hyperparameters):
//! - Models: retention {0.5, 0.8, 0.95, 0.99} per 5-minute step (half-lives
//!   of 5 min, 16 min, 68 min and 5.7 h) x margins {0, 0.05, 0.1}; twelve
//!   models, four histograms (the margin does not change the argmin).
//!   "Decay" here is the share of the old sums kept per step, scaled to the
//!   trace's step (`r^(step / 5 min)`).
//! - Sums are normalised as the paper writes them, `o <- r o + (1 - r) new`,
//!   so `o` is a share of samples and `u` a mean, and the change penalties
//!   compare with those.
//! - The underrun is relative: `(L - x) / L`, the share of the limit left
//!   unused. The paper's is absolute in Borg's normalised units; relative
//!   keeps the weights meaningful across cores and bytes.
//! - Weights ([`MlWeights::default`]): overrun 1, underrun 0.05 (an overrun
//!   costs 20 times a step of a fully idle limit), limit change 0.005,
//!   model change 0.005; the recommender's cost retention 0.99 per
//!   5 minutes (half-life 5.7 h).
//! - Margins multiply (`L' x (1 + M)`), for the same reason.
//! - Before the first decision every model's cost is 0 and the first model
//!   (fastest decay, no margin) is picked; before the first observation
//!   the limit is 0.

use prescient_core::{Resource, TimestampMs};

use super::{FIVE_MIN_MS, fill_scaled, margin_factors, margin_knob, usable};
use crate::policy::{Knob, Policy, SeriesInfo, SeriesState};
use prescient_forecast::histogram::{BucketScheme, DecayingHistogram};

/// The cost weights of the ML recommender.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlWeights {
    /// `w_o`: per (decayed) sample above the limit.
    pub overrun: f64,
    /// `w_u`: per (decayed) share of the limit left unused.
    pub underrun: f64,
    /// `w_dL`: for changing a limit.
    pub limit_change: f64,
    /// `w_dm`: for switching model.
    pub model_change: f64,
}

impl Default for MlWeights {
    fn default() -> Self {
        MlWeights {
            overrun: 1.0,
            underrun: 0.05,
            limit_change: 0.005,
            model_change: 0.005,
        }
    }
}

/// The ensemble and its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct MlConfig {
    /// Per-model share of the decayed sums kept per 5-minute step.
    pub retentions: Vec<f64>,
    /// Per-model safety margins (`L' x (1 + M)`).
    pub margins: Vec<f64>,
    /// Cost weights.
    pub weights: MlWeights,
    /// Share of a model's cost kept per 5-minute step.
    pub cost_retention: f64,
}

impl Default for MlConfig {
    fn default() -> Self {
        MlConfig {
            retentions: vec![0.5, 0.8, 0.95, 0.99],
            margins: vec![0.0, 0.05, 0.1],
            weights: MlWeights::default(),
            cost_retention: 0.99,
        }
    }
}

/// Autopilot's ML recommender.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AutopilotMl {
    /// The ensemble.
    pub config: MlConfig,
}

impl Policy for AutopilotMl {
    fn name(&self) -> &str {
        "autopilot-ml"
    }

    fn describe(&self) -> &str {
        "Autopilot ML: 12 (decay, margin) models minimising overrun + underrun + change cost; the one with the lowest decayed cost wins"
    }

    fn knob(&self) -> Knob {
        margin_knob("extra margin", 0.0)
    }

    fn start(&self, series: &SeriesInfo<'_>, knobs: &[f64]) -> Box<dyn SeriesState> {
        Box::new(MlState::new(
            &self.config,
            series.key.resource,
            series.step_ms,
            knobs,
        ))
    }
}

/// The index (into the slices) of the limit minimising
/// `scale x (w_o o(L) + w_u u(L)) + w_dL [L != prev]` over `L = edges[j]`.
///
/// `weights[j]` and `sums[j]` are the (decayed) weight and weighted value
/// sum of bucket `j`, whose samples all lie below `edges[j]` and at or
/// above `edges[j - 1]`; `scale` turns them into shares. Ties go to the
/// lower limit. Two passes, O(buckets).
pub fn ml_argmin(
    weights: &[f64],
    sums: &[f64],
    edges: &[f64],
    scale: f64,
    w: &MlWeights,
    prev: Option<usize>,
) -> usize {
    let total: f64 = weights.iter().sum();
    let mut below_w = 0.0;
    let mut below_s = 0.0;
    let mut best = (f64::INFINITY, 0);
    for (j, ((&wj, &sj), &limit)) in weights.iter().zip(sums).zip(edges).enumerate() {
        below_w += wj;
        below_s += sj;
        let overrun = (total - below_w).max(0.0);
        let underrun = if limit > 0.0 {
            (below_w - below_s / limit).max(0.0)
        } else {
            0.0
        };
        let mut cost = scale * (w.overrun * overrun + w.underrun * underrun);
        if prev.is_some_and(|p| p != j) {
            cost += w.limit_change;
        }
        if cost < best.0 {
            best = (cost, j);
        }
    }
    best.1
}

/// The model the recommender picks:
/// `argmin costs[m] + w_dm [m != prev_model] + w_dL [limits[m] != prev_limit]`
/// (no penalties before the first pick). Ties go to the lower index.
pub fn choose_model(
    costs: &[f64],
    limits: &[f64],
    prev_model: Option<usize>,
    prev_limit: Option<f64>,
    w: &MlWeights,
) -> usize {
    let mut best = (f64::INFINITY, 0);
    for (m, (&c, &l)) in costs.iter().zip(limits).enumerate() {
        let mut score = c;
        if prev_model.is_some_and(|p| p != m) {
            score += w.model_change;
        }
        if prev_limit.is_some_and(|p| p != l) {
            score += w.limit_change;
        }
        if score < best.0 {
            best = (score, m);
        }
    }
    best.1
}

/// The cost of limit `limit` for one step of usage `x`.
fn step_cost(limit: f64, x: f64, w: &MlWeights) -> f64 {
    if x > limit {
        w.overrun
    } else if limit > 0.0 {
        w.underrun * (1.0 - x / limit)
    } else {
        0.0
    }
}

/// One decay: its histogram and its current argmin (a bucket index).
#[derive(Debug, Clone)]
struct Group {
    hist: DecayingHistogram,
    /// `1 - retention` per step: the normalised weight of the newest sample.
    new_share: f64,
    choice: Option<usize>,
}

#[derive(Debug, Clone)]
struct Model {
    group: usize,
    factor: f64,
    limit: Option<f64>,
    cost: f64,
}

#[derive(Debug, Clone)]
struct MlState {
    groups: Vec<Group>,
    models: Vec<Model>,
    weights: MlWeights,
    /// Share of a model's cost kept per step.
    cost_keep: f64,
    chosen: Option<usize>,
    limit: Option<f64>,
    factors: Vec<f64>,
    costs: Vec<f64>,
    limits: Vec<f64>,
}

/// A retention per 5 minutes as a retention per step, kept in (0, 1).
fn per_step(retention_5min: f64, step_ms: i64) -> f64 {
    let r = if retention_5min.is_finite() {
        retention_5min.clamp(1e-6, 1.0 - 1e-9)
    } else {
        0.9
    };
    let steps = step_ms as f64 / FIVE_MIN_MS as f64;
    r.powf(steps).clamp(1e-12, 1.0 - 1e-12)
}

impl MlState {
    fn new(cfg: &MlConfig, resource: Resource, step_ms: i64, knobs: &[f64]) -> MlState {
        let step_ms = if step_ms > 0 { step_ms } else { FIVE_MIN_MS };
        let scheme = BucketScheme::for_resource(resource);
        let groups: Vec<Group> = cfg
            .retentions
            .iter()
            .map(|&r| {
                let keep = per_step(r, step_ms);
                // keep = 2^(-step / half_life)
                let half_life = (step_ms as f64 * std::f64::consts::LN_2 / -keep.ln()).round();
                Group {
                    hist: DecayingHistogram::new(scheme.clone(), half_life.clamp(1.0, 1e15) as i64),
                    new_share: 1.0 - keep,
                    choice: None,
                }
            })
            .collect();
        let mut models = Vec::new();
        for g in 0..groups.len() {
            for &m in &cfg.margins {
                models.push(Model {
                    group: g,
                    factor: if m.is_finite() {
                        (1.0 + m).max(0.0)
                    } else {
                        1.0
                    },
                    limit: None,
                    cost: 0.0,
                });
            }
        }
        MlState {
            groups,
            weights: cfg.weights,
            cost_keep: per_step(cfg.cost_retention, step_ms),
            chosen: None,
            limit: None,
            factors: margin_factors(knobs),
            costs: vec![0.0; models.len()],
            limits: vec![0.0; models.len()],
            models,
        }
    }
}

impl SeriesState for MlState {
    fn recommend(&mut self, out: &mut [f64]) {
        fill_scaled(self.limit.unwrap_or(0.0), &self.factors, out);
    }

    fn observe(&mut self, ts: TimestampMs, demand: f64, _allocations: &[f64]) {
        let Some(x) = usable(demand) else {
            return;
        };
        let w = self.weights;
        let keep = self.cost_keep;
        // 1. Each model pays for the limit it set for this step.
        for m in &mut self.models {
            if let Some(limit) = m.limit {
                m.cost = keep * m.cost + (1.0 - keep) * step_cost(limit, x, &w);
            }
        }
        // 2. Each decay learns the sample and picks its limit on the grid.
        for g in &mut self.groups {
            g.hist.add(x, ts);
            let Some((mut lo, mut hi)) = g.hist.range() else {
                continue;
            };
            if let Some(p) = g.choice {
                lo = lo.min(p);
                hi = hi.max(p);
            }
            // Normalise so the newest sample weighs (1 - retention).
            let newest = g.hist.weight_at(ts);
            let scale = if newest > 0.0 {
                g.new_share / newest
            } else {
                0.0
            };
            let j = ml_argmin(
                &g.hist.weights()[lo..=hi],
                &g.hist.sums()[lo..=hi],
                &g.hist.scheme().upper_edges()[lo..=hi],
                scale,
                &w,
                g.choice.map(|p| p - lo),
            );
            g.choice = Some(lo + j);
        }
        // 3. Each model adds its margin; a changed limit costs w_dL.
        for (i, m) in self.models.iter_mut().enumerate() {
            let g = &self.groups[m.group];
            let Some(choice) = g.choice else {
                continue;
            };
            let limit = g.hist.scheme().upper_edge(choice) * m.factor;
            if m.limit.is_some_and(|l| l != limit) {
                m.cost += (1.0 - keep) * w.limit_change;
            }
            m.limit = Some(limit);
            self.costs[i] = m.cost;
            self.limits[i] = limit;
        }
        if self.models.iter().any(|m| m.limit.is_none()) {
            return;
        }
        // 4. The recommender picks a model.
        let m = choose_model(&self.costs, &self.limits, self.chosen, self.limit, &w);
        self.chosen = Some(m);
        self.limit = Some(self.limits[m]);
    }
}

#[cfg(test)]
mod tests {
    use prescient_core::SeriesKey;

    use super::*;

    const MIN5: i64 = 300_000;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
    }

    // Three buckets with upper edges 1, 2, 4 holding samples 0.5 (weight
    // 0.5), 1.5 (0.3) and 3 (0.2). By hand, with w_o = 1:
    //   L = 1: o = 0.5, u = 0.5 - 0.25 / 1 = 0.25
    //   L = 2: o = 0.2, u = 0.8 - 0.70 / 2 = 0.45
    //   L = 4: o = 0,   u = 1.0 - 1.30 / 4 = 0.675
    const W: [f64; 3] = [0.5, 0.3, 0.2];
    const S: [f64; 3] = [0.25, 0.45, 0.6];
    const E: [f64; 3] = [1.0, 2.0, 4.0];

    fn weights(underrun: f64, limit_change: f64) -> MlWeights {
        MlWeights {
            overrun: 1.0,
            underrun,
            limit_change,
            model_change: 0.0,
        }
    }

    #[test]
    fn argmin_on_a_hand_made_histogram() {
        // w_u = 0.05: costs 0.5125, 0.2225, 0.03375 -> L = 4.
        assert_eq!(ml_argmin(&W, &S, &E, 1.0, &weights(0.05, 0.0), None), 2);
        // w_u = 1: costs 0.75, 0.65, 0.675 -> L = 2.
        assert_eq!(ml_argmin(&W, &S, &E, 1.0, &weights(1.0, 0.0), None), 1);
        // w_u = 0.05, staying at L = 2: moving costs 0.03375 + w_dL.
        assert_eq!(ml_argmin(&W, &S, &E, 1.0, &weights(0.05, 0.03), Some(1)), 2);
        assert_eq!(ml_argmin(&W, &S, &E, 1.0, &weights(0.05, 0.2), Some(1)), 1);
        // The scale multiplies o and u, not the penalty: x 0.1 makes the
        // costs 0.05125, 0.02225, 0.003375, and a 0.02 penalty keeps L = 2.
        assert_eq!(ml_argmin(&W, &S, &E, 0.1, &weights(0.05, 0.02), Some(1)), 1);
        assert_eq!(
            ml_argmin(&W, &S, &E, 0.1, &weights(0.05, 0.018), Some(1)),
            2
        );
    }

    #[test]
    fn model_switch_pays_its_penalty() {
        let w = MlWeights {
            overrun: 1.0,
            underrun: 0.05,
            limit_change: 0.005,
            model_change: 0.005,
        };
        // Model 1 is 0.003 cheaper but switching costs 0.005 + 0.005.
        assert_eq!(
            choose_model(&[0.100, 0.097], &[1.0, 1.2], Some(0), Some(1.0), &w),
            0
        );
        // 0.015 cheaper beats the 0.01 of penalties.
        assert_eq!(
            choose_model(&[0.100, 0.085], &[1.0, 1.2], Some(0), Some(1.0), &w),
            1
        );
        // Same limit: only the model change is paid.
        assert_eq!(
            choose_model(&[0.100, 0.097], &[1.0, 1.0], Some(0), Some(1.0), &w),
            0
        );
        assert_eq!(
            choose_model(&[0.100, 0.094], &[1.0, 1.0], Some(0), Some(1.0), &w),
            1
        );
        // The first pick has nothing to pay.
        assert_eq!(
            choose_model(&[0.100, 0.097], &[1.0, 1.2], None, None, &w),
            1
        );
        // Staying on a model whose limit moved still pays w_dL.
        // (0.100 + 0.005 against 0.1005 + 0.005, then 0.0985 + 0.005.)
        assert_eq!(
            choose_model(&[0.100, 0.1005], &[1.2, 1.0], Some(0), Some(1.0), &w),
            0
        );
        assert_eq!(
            choose_model(&[0.100, 0.0985], &[1.2, 1.0], Some(0), Some(1.0), &w),
            1
        );
    }

    #[test]
    fn step_cost_is_overrun_or_relative_underrun() {
        let w = MlWeights::default();
        assert_eq!(step_cost(1.0, 1.5, &w), 1.0);
        assert!(close(step_cost(2.0, 0.5, &w), 0.05 * 0.75));
        assert_eq!(step_cost(1.0, 1.0, &w), 0.0);
        assert_eq!(step_cost(0.0, 0.0, &w), 0.0);
    }

    #[test]
    fn retention_scales_with_the_step() {
        assert!(close(per_step(0.99, MIN5), 0.99));
        assert!(close(per_step(0.81, MIN5 / 2), 0.9));
        assert!(close(per_step(0.5, 2 * MIN5), 0.25));
    }

    fn start(resource: Resource, knobs: &[f64]) -> MlState {
        MlState::new(&MlConfig::default(), resource, MIN5, knobs)
    }

    #[test]
    fn a_steady_series_gets_a_limit_just_above_it() {
        let mut s = start(Resource::Cpu, &[0.0, 0.5]);
        let mut out = [0.0; 2];
        s.recommend(&mut out);
        assert_eq!(out, [0.0, 0.0]);
        for i in 0..100 {
            s.observe(i * MIN5, 1.0, &[0.0, 0.0]);
        }
        s.recommend(&mut out);
        let sch = BucketScheme::cpu();
        let edge = sch.upper_edge(sch.bucket(1.0));
        // The grid limit just above 1.0, possibly with a model margin.
        assert!(out[0] >= edge && out[0] <= edge * 1.1 + 1e-12, "{out:?}");
        assert!(close(out[1], out[0] * 1.5));
    }

    #[test]
    fn the_recommender_follows_a_level_shift_up() {
        let mut s = start(Resource::Cpu, &[0.0]);
        for i in 0..200 {
            s.observe(i * MIN5, 1.0, &[0.0]);
        }
        let before = s.limit.unwrap();
        for i in 200..210 {
            s.observe(i * MIN5, 3.0, &[0.0]);
        }
        let after = s.limit.unwrap();
        assert!(before < 1.2 && after >= 3.0, "{before} {after}");
        // The fast models are the ones that caught it first: the chosen
        // model's cost is the lowest (up to the switching penalties).
        let chosen = s.chosen.unwrap();
        let best = s
            .models
            .iter()
            .map(|m| m.cost)
            .fold(f64::INFINITY, f64::min);
        assert!(s.models[chosen].cost <= best + 0.01);
    }

    #[test]
    fn works_at_ten_second_steps() {
        let key = SeriesKey::new("h", "w", Resource::Memory);
        let info = SeriesInfo {
            key: &key,
            step_ms: 10_000,
            warmup_steps: 36,
            host_capacity: None,
            host_workloads: 1,
        };
        let mut s = AutopilotMl::default().start(&info, &[0.0]);
        for i in 0..2000 {
            s.observe(i * 10_000, 2e9 + (i % 7) as f64 * 1e7, &[0.0]);
        }
        let mut out = [0.0];
        s.recommend(&mut out);
        assert!(out[0] >= 2.06e9 && out[0] < 2.6e9, "{out:?}");
    }
}
