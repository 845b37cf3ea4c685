//! Histogram gradient-boosted trees with one shared structure and one head
//! per quantile level.
//!
//! Why our own code rather than a crate (checked against what resolves
//! from crates.io here): `forust-ml` 0.8 has only log and squared loss;
//! `gbdt` 0.1 has squared, logistic and absolute (median only) loss with
//! exact, unbinned splits; `linfa-trees` has single decision trees, no
//! boosting; `perpetual` 3.0 (a release candidate) has a quantile loss, but
//! one booster per level, leaves set by a plain gradient step (slow for tail
//! levels, where the gradient is 0.01 on 99 rows out of 100) and pulls in
//! `sysinfo` and a second `rand`. Thirteen boosters would also cost thirteen
//! tree walks per forecast, against the few microseconds the ensemble leaves
//! a model.
//!
//! What this does instead (LightGBM's quantile objective, shared across
//! levels):
//!
//! - Features are binned once (at most `max_bins` bins by quantiles of the
//!   values, bin 0 for NaN); a split is "value <= edge", NaN going the side
//!   that gains more.
//! - Every round grows one depth-limited tree for all levels at once. A
//!   split's gain is the sum over levels of the usual second-order gain of
//!   the pinball gradient (`g = 1{y < F_k} - tau_k`, hessian 1), each divided
//!   by `tau_k (1 - tau_k)`, the gradient's variance, so that tail levels
//!   count as much as the median.
//! - Histograms hold counts per rank rather than gradient sums: a row's rank
//!   is the number of levels whose current prediction is at or below its
//!   target, and when the predictions are ordered a level's gradient sum is
//!   a prefix sum over ranks. One increment per row and feature, whatever the
//!   number of levels. (When a row's predictions cross, the rank stands for
//!   them approximately; this only steers the split search: leaves are exact.)
//! - The smaller child's histogram is built, the larger one's is the
//!   parent's minus it.
//! - Each row starts from its own baseline per level (given by the caller:
//!   the series' empirical quantiles) plus a constant per level.
//! - Each leaf then holds, per level, the `tau_k` quantile of the residuals
//!   `y - F_k` of its rows (the exact pinball minimiser, as LightGBM renews
//!   quantile leaves), times the learning rate.
//! - Rows are subsampled per round; everything random comes from one seed, and
//!   parallel work is split by feature or by row, so results do not depend on
//!   the number of threads.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::rng::SplitMix64;

/// Marks a child reference as a leaf index (in trees being grown).
pub(crate) const LEAF: u32 = 1 << 31;

/// Deepest tree a forest may hold. Trees are stored complete, so depth costs
/// memory whether or not the tree grew that deep: at 10, 1,024 leaves.
pub(crate) const MAX_DEPTH: u8 = 10;

/// A node of a stored tree: rows with `x[feature] > threshold` go right, and
/// NaN goes right when `nan_right`. A node that does not split (below a leaf
/// that ended early) has an infinite threshold: everything goes left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Node {
    pub threshold: f32,
    pub feature: u16,
    pub nan_right: bool,
}

const PASS: Node = Node {
    threshold: f32::INFINITY,
    feature: 0,
    nan_right: false,
};

/// A tree stored complete: `2^depth - 1` nodes in breadth-first order (the
/// children of node `i` are `2i + 1` and `2i + 2`), then `2^depth` leaves of
/// one value per level. A walk is `depth` steps without a branch to
/// mispredict, which is what keeps a forecast within a few microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tree {
    pub depth: u8,
    pub nodes: Vec<Node>,
    /// `leaves[leaf * levels + k]`.
    pub leaves: Vec<f32>,
}

impl Tree {
    /// The leaf a row falls in. The tree must be valid ([`Tree::check`]).
    #[inline]
    pub fn leaf(&self, x: &[f32]) -> usize {
        let mut i = 0usize;
        for _ in 0..self.depth {
            let n = self.nodes[i];
            let v = x[usize::from(n.feature)];
            // `v > t` is false for NaN, so NaN goes right only if nan_right.
            let right = (v > n.threshold) | (v.is_nan() & n.nan_right);
            i = 2 * i + 1 + usize::from(right);
        }
        i - self.nodes.len()
    }

    /// Adds the leaf values of every tree for `x` to `acc` (one per level).
    /// Trees are walked four at a time: four independent chains of loads
    /// keep the CPU busy where one would wait on each load in turn.
    #[inline]
    pub fn accumulate(trees: &[Tree], x: &[f32], acc: &mut [f32]) {
        let k = acc.len();
        let mut quads = trees.chunks_exact(4);
        for q in &mut quads {
            let depth = q[0].depth;
            if q.iter().any(|t| t.depth != depth) {
                for t in q {
                    t.add_leaf(x, acc);
                }
                continue;
            }
            let mut i = [0usize; 4];
            for _ in 0..depth {
                for (t, i) in q.iter().zip(i.iter_mut()) {
                    let n = t.nodes[*i];
                    let v = x[usize::from(n.feature)];
                    let right = (v > n.threshold) | (v.is_nan() & n.nan_right);
                    *i = 2 * *i + 1 + usize::from(right);
                }
            }
            for (t, &i) in q.iter().zip(&i) {
                let l = i - t.nodes.len();
                for (a, v) in acc.iter_mut().zip(&t.leaves[l * k..(l + 1) * k]) {
                    *a += v;
                }
            }
        }
        for t in quads.remainder() {
            t.add_leaf(x, acc);
        }
    }

    #[inline]
    fn add_leaf(&self, x: &[f32], acc: &mut [f32]) {
        let k = acc.len();
        let l = self.leaf(x);
        for (a, v) in acc.iter_mut().zip(&self.leaves[l * k..(l + 1) * k]) {
            *a += v;
        }
    }

    /// Whether the tree is safe to walk: sizes that match its depth, features
    /// in range, no NaN threshold, every value finite.
    pub fn check(&self, features: usize, levels: usize) -> Result<(), String> {
        if self.depth > MAX_DEPTH {
            return Err(format!("depth {} over {MAX_DEPTH}", self.depth));
        }
        let leaves = 1usize << self.depth;
        if self.nodes.len() != leaves - 1 || self.leaves.len() != leaves * levels {
            return Err(format!(
                "{} nodes and {} leaf values for depth {} and {levels} levels",
                self.nodes.len(),
                self.leaves.len(),
                self.depth
            ));
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if usize::from(n.feature) >= features {
                return Err(format!("node {i} splits on feature {}", n.feature));
            }
            if n.threshold.is_nan() {
                return Err(format!("node {i} has a NaN threshold"));
            }
        }
        if let Some(v) = self.leaves.iter().find(|v| !v.is_finite()) {
            return Err(format!("leaf value {v}"));
        }
        Ok(())
    }

    /// The complete form, `depth` deep, of a grown tree (`root` and `nodes`
    /// as grown, no deeper than `depth`; leaf values per grown leaf), with
    /// split thresholds from the bin edges. Every tree of a forest gets the
    /// same depth, so that several can be walked in lockstep.
    fn complete(
        root: u32,
        nodes: &[TrainNode],
        leaf_values: &[f32],
        levels: usize,
        edges: &[Vec<f32>],
        depth: u8,
    ) -> Tree {
        struct Out<'a> {
            depth: u8,
            nodes: Vec<Node>,
            leaves: Vec<f32>,
            grown: &'a [TrainNode],
            leaf_values: &'a [f32],
            levels: usize,
            edges: &'a [Vec<f32>],
        }
        fn place(o: &mut Out, r: u32, pos: usize, level: u8) {
            if level == o.depth {
                // A leaf slot: copy the values of the grown leaf.
                let slot = pos - o.nodes.len();
                let leaf = (r & !LEAF) as usize;
                let k = o.levels;
                o.leaves[slot * k..(slot + 1) * k]
                    .copy_from_slice(&o.leaf_values[leaf * k..(leaf + 1) * k]);
                return;
            }
            if r & LEAF != 0 {
                // The grown leaf ended early: pass through, everything left
                // (the right subtree repeats it, unreached).
                o.nodes[pos] = PASS;
                place(o, r, 2 * pos + 1, level + 1);
                place(o, r, 2 * pos + 2, level + 1);
            } else {
                let n = o.grown[r as usize];
                o.nodes[pos] = Node {
                    threshold: o.edges[n.split.feature][n.split.bin - 1],
                    feature: n.split.feature as u16,
                    nan_right: !n.split.missing_left,
                };
                place(o, n.left, 2 * pos + 1, level + 1);
                place(o, n.right, 2 * pos + 2, level + 1);
            }
        }
        let n_leaves = 1usize << depth;
        let mut o = Out {
            depth,
            nodes: vec![PASS; n_leaves - 1],
            leaves: vec![0.0; n_leaves * levels],
            grown: nodes,
            leaf_values,
            levels,
            edges,
        };
        place(&mut o, root, 0, 0);
        Tree {
            depth,
            nodes: o.nodes,
            leaves: o.leaves,
        }
    }
}

/// Boosting parameters (checked by the caller).
#[derive(Debug, Clone)]
pub(crate) struct BoostParams {
    pub levels: Vec<f64>,
    pub rounds: usize,
    pub learning_rate: f64,
    pub max_depth: usize,
    pub min_leaf: usize,
    pub max_bins: usize,
    pub row_subsample: f64,
    pub seed: u64,
}

/// What boosting produces: per-level starting values and the trees.
pub(crate) struct Boosted {
    pub init: Vec<f32>,
    pub trees: Vec<Tree>,
}

/// Binned features, column-major.
struct Binned {
    rows: usize,
    features: usize,
    /// Bins per feature, including bin 0 (NaN).
    n_bins: Vec<usize>,
    /// The upper edges: bin `b >= 1` holds values in `(edges[b-2], edges[b-1]]`.
    edges: Vec<Vec<f32>>,
    /// `bins[f * rows + i]`.
    bins: Vec<u8>,
}

impl Binned {
    fn new(x: &[f32], rows: usize, features: usize, max_bins: usize, seed: u64) -> Binned {
        // Edges from a sample of at most this many values per feature.
        const SAMPLE: usize = 200_000;
        let max_bins = max_bins.clamp(2, 255);
        let stride = rows.div_ceil(SAMPLE).max(1);
        let offset = if stride > 1 {
            (SplitMix64::new(seed).next_u64() % stride as u64) as usize
        } else {
            0
        };
        let edges: Vec<Vec<f32>> = (0..features)
            .into_par_iter()
            .map(|f| {
                let mut v: Vec<f32> = (offset..rows)
                    .step_by(stride)
                    .map(|i| x[i * features + f])
                    .filter(|v| !v.is_nan())
                    .collect();
                v.sort_unstable_by(f32::total_cmp);
                let mut e: Vec<f32> = Vec::new();
                // max_bins - 1 value bins (bin 0 is NaN): up to max_bins - 2
                // inner edges; the last bin is open above.
                for j in 1..max_bins - 1 {
                    let Some(&q) = v.get(j * v.len() / (max_bins - 1)) else {
                        break;
                    };
                    if e.last().is_none_or(|&l| q > l) {
                        e.push(q);
                    }
                }
                e
            })
            .collect();
        let n_bins: Vec<usize> = edges.iter().map(|e| e.len() + 2).collect();
        let mut bins = vec![0u8; rows * features];
        bins.par_chunks_mut(rows.max(1))
            .enumerate()
            .for_each(|(f, col)| {
                let e = &edges[f];
                for (i, b) in col.iter_mut().enumerate() {
                    let v = x[i * features + f];
                    *b = if v.is_nan() {
                        0
                    } else {
                        // 1 + number of edges below v: v <= edges[b-1] iff bin <= b.
                        (1 + e.partition_point(|&edge| edge < v)) as u8
                    };
                }
            });
        Binned {
            rows,
            features,
            n_bins,
            edges,
            bins,
        }
    }

    #[inline]
    fn bin(&self, f: usize, i: usize) -> usize {
        usize::from(self.bins[f * self.rows + i])
    }
}

/// A split chosen during growth, in bins.
#[derive(Debug, Clone, Copy)]
struct Split {
    feature: usize,
    /// Bins `1..=bin` go left.
    bin: usize,
    missing_left: bool,
    gain: f64,
}

/// Working state of one boosting run.
struct Grower<'a> {
    data: &'a Binned,
    y: &'a [f32],
    levels: &'a [f64],
    /// Gain weight per level: 1 / (tau (1 - tau)).
    weights: Vec<f64>,
    /// Histogram stride per feature: max bins times (levels + 1) ranks.
    stride: usize,
    ranks_n: usize,
    min_leaf: usize,
    max_depth: usize,
    /// Current predictions, `pred[i * levels + k]`.
    pred: Vec<f32>,
    /// Rank of each row (see the module documentation).
    rank: Vec<u8>,
}

/// Rows per parallel task when building histograms or updating predictions;
/// below this, one thread does it.
const PAR_ROWS: usize = 16_384;

impl Grower<'_> {
    fn hist_len(&self) -> usize {
        self.stride * self.data.features
    }

    /// Counts per (feature, bin, rank) over `rows`.
    fn histogram(&self, rows: &[u32]) -> Vec<u32> {
        let mut h = vec![0u32; self.hist_len()];
        let fill = |f: usize, hf: &mut [u32]| {
            let col = &self.data.bins[f * self.data.rows..(f + 1) * self.data.rows];
            for &i in rows {
                let i = i as usize;
                let b = usize::from(col[i]);
                hf[b * self.ranks_n + usize::from(self.rank[i])] += 1;
            }
        };
        if rows.len() >= PAR_ROWS {
            h.par_chunks_mut(self.stride)
                .enumerate()
                .for_each(|(f, hf)| fill(f, hf));
        } else {
            for (f, hf) in h.chunks_mut(self.stride).enumerate() {
                fill(f, hf);
            }
        }
        h
    }

    /// Gain of a node (without the constant parent term) from its count and
    /// per-rank counts: sum over levels of G_k^2 / n / (tau (1 - tau)).
    #[inline]
    fn score(&self, n: f64, by_rank: &[f64]) -> f64 {
        if n <= 0.0 {
            return 0.0;
        }
        let mut below = 0.0;
        let mut s = 0.0;
        for (k, (&tau, &w)) in self.levels.iter().zip(&self.weights).enumerate() {
            // Rows of rank <= k have y < F_k.
            below += by_rank[k];
            let g = below - tau * n;
            s += g * g * w;
        }
        s / n
    }

    /// The best split of a node, from its histogram.
    fn best_split(&self, hist: &[u32], n_rows: usize) -> Option<Split> {
        let r = self.ranks_n;
        let per_feature: Vec<Option<Split>> = (0..self.data.features)
            .into_par_iter()
            .map(|f| {
                let hf = &hist[f * self.stride..(f + 1) * self.stride];
                let nb = self.data.n_bins[f];
                let mut total = vec![0.0f64; r];
                for b in 0..nb {
                    for (t, &c) in total.iter_mut().zip(&hf[b * r..(b + 1) * r]) {
                        *t += f64::from(c);
                    }
                }
                let n = n_rows as f64;
                let parent = self.score(n, &total);
                let missing: Vec<f64> = hf[..r].iter().map(|&c| f64::from(c)).collect();
                let n_missing: f64 = missing.iter().sum();
                let mut best: Option<Split> = None;
                // Per-rank counts left of the split (without NaNs), and the
                // two sides of the candidate being scored.
                let mut left = vec![0.0f64; r];
                let mut side_l = vec![0.0f64; r];
                let mut side_r = vec![0.0f64; r];
                let mut n_left = 0.0;
                for b in 1..nb.saturating_sub(1) {
                    for (l, &c) in left.iter_mut().zip(&hf[b * r..(b + 1) * r]) {
                        *l += f64::from(c);
                        n_left += f64::from(c);
                    }
                    // NaN right, then (when there are NaNs) NaN left.
                    for missing_left in [false, true] {
                        if missing_left && n_missing == 0.0 {
                            continue;
                        }
                        let nl = if missing_left {
                            n_left + n_missing
                        } else {
                            n_left
                        };
                        let nr = n - nl;
                        if nl < self.min_leaf as f64 || nr < self.min_leaf as f64 {
                            continue;
                        }
                        for j in 0..r {
                            side_l[j] = if missing_left {
                                left[j] + missing[j]
                            } else {
                                left[j]
                            };
                            side_r[j] = total[j] - side_l[j];
                        }
                        let gain = self.score(nl, &side_l) + self.score(nr, &side_r) - parent;
                        if gain > best.map_or(1e-9, |s| s.gain) {
                            best = Some(Split {
                                feature: f,
                                bin: b,
                                missing_left,
                                gain,
                            });
                        }
                    }
                }
                best
            })
            .collect();
        // Ties go to the lowest feature: deterministic.
        per_feature
            .into_iter()
            .flatten()
            .fold(None, |acc: Option<Split>, s| match acc {
                Some(a) if a.gain >= s.gain => Some(a),
                _ => Some(s),
            })
    }

    /// Grows one tree over `rows` (sorted), filling `leaf_rows` with each
    /// leaf's rows.
    fn grow(&self, rows: &mut [u32], leaf_rows: &mut Vec<Vec<u32>>) -> (u32, Vec<TrainNode>) {
        let mut nodes = Vec::new();
        let hist = self.histogram(rows);
        let root = self.grow_node(rows, hist, 0, &mut nodes, leaf_rows);
        (root, nodes)
    }

    fn grow_node(
        &self,
        rows: &mut [u32],
        hist: Vec<u32>,
        depth: usize,
        nodes: &mut Vec<TrainNode>,
        leaf_rows: &mut Vec<Vec<u32>>,
    ) -> u32 {
        let split = if depth < self.max_depth && rows.len() >= 2 * self.min_leaf {
            self.best_split(&hist, rows.len())
        } else {
            None
        };
        let Some(split) = split else {
            leaf_rows.push(rows.to_vec());
            return (leaf_rows.len() - 1) as u32 | LEAF;
        };
        // Stable partition: rows stay sorted on both sides.
        let goes_left = |i: u32| {
            let b = self.data.bin(split.feature, i as usize);
            if b == 0 {
                split.missing_left
            } else {
                b <= split.bin
            }
        };
        let mut right: Vec<u32> = Vec::new();
        let mut n_left = 0;
        for j in 0..rows.len() {
            let i = rows[j];
            if goes_left(i) {
                rows[n_left] = i;
                n_left += 1;
            } else {
                right.push(i);
            }
        }
        rows[n_left..].copy_from_slice(&right);
        let (left_rows, right_rows) = rows.split_at_mut(n_left);
        let small_is_left = left_rows.len() <= right_rows.len();
        let small_hist = self.histogram(if small_is_left { left_rows } else { right_rows });
        let mut large_hist = hist;
        for (l, s) in large_hist.iter_mut().zip(&small_hist) {
            *l -= s;
        }
        let (left_hist, right_hist) = if small_is_left {
            (small_hist, large_hist)
        } else {
            (large_hist, small_hist)
        };
        let index = nodes.len();
        nodes.push(TrainNode {
            split,
            left: 0,
            right: 0,
        });
        let left = self.grow_node(left_rows, left_hist, depth + 1, nodes, leaf_rows);
        let right = self.grow_node(right_rows, right_hist, depth + 1, nodes, leaf_rows);
        nodes[index].left = left;
        nodes[index].right = right;
        index as u32
    }

    fn update_ranks(&mut self) {
        let k = self.levels.len();
        let y = self.y;
        self.rank
            .par_chunks_mut(PAR_ROWS)
            .zip(self.pred.par_chunks(PAR_ROWS * k))
            .enumerate()
            .for_each(|(c, (ranks, preds))| {
                for (j, (r, p)) in ranks.iter_mut().zip(preds.chunks(k)).enumerate() {
                    let yi = y[c * PAR_ROWS + j];
                    *r = p.iter().filter(|&&f| yi >= f).count() as u8;
                }
            });
    }
}

/// A node during training, split in bins.
#[derive(Debug, Clone, Copy)]
struct TrainNode {
    split: Split,
    left: u32,
    right: u32,
}

/// The `tau` quantile of `v` (reordered): the smallest value with at least
/// `tau` of the values at or below it, the pinball-loss minimiser.
pub(crate) fn quantile_in_place(v: &mut [f32], tau: f64) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let n = v.len();
    let idx = ((tau * n as f64).ceil() as usize).clamp(1, n) - 1;
    let (_, q, _) = v.select_nth_unstable_by(idx, f32::total_cmp);
    *q
}

/// Boosts on `x` (row-major, `features` a row) against `y`, starting each
/// row's level `j` at `base[row * levels + j]` plus a constant per level.
/// The rows must be finite in `y` and `base`; features may be NaN. `params`
/// must be valid.
pub(crate) fn boost(
    x: &[f32],
    y: &[f32],
    base: &[f32],
    features: usize,
    params: &BoostParams,
) -> Boosted {
    let rows = y.len();
    let k = params.levels.len();
    let data = Binned::new(x, rows, features, params.max_bins, params.seed);
    let mut residuals: Vec<f32> = Vec::with_capacity(rows);
    let init: Vec<f32> = params
        .levels
        .iter()
        .enumerate()
        .map(|(j, &tau)| {
            residuals.clear();
            residuals.extend((0..rows).map(|i| y[i] - base[i * k + j]));
            quantile_in_place(&mut residuals, tau)
        })
        .collect();
    let max_bins = data.n_bins.iter().copied().max().unwrap_or(1);
    let mut g = Grower {
        data: &data,
        y,
        levels: &params.levels,
        weights: params
            .levels
            .iter()
            .map(|&t| 1.0 / (t * (1.0 - t)).max(1e-6))
            .collect(),
        stride: max_bins * (k + 1),
        ranks_n: k + 1,
        min_leaf: params.min_leaf.max(1),
        max_depth: params.max_depth,
        pred: base
            .chunks(k)
            .flat_map(|b| b.iter().zip(&init).map(|(b, i)| b + i))
            .collect(),
        rank: vec![0; rows],
    };
    g.update_ranks();
    let mut trees = Vec::with_capacity(params.rounds);
    let mut rng = SplitMix64::new(params.seed ^ 0x05EE_D0FB_0057);
    for _ in 0..params.rounds {
        let mut sample: Vec<u32> = if params.row_subsample >= 1.0 {
            (0..rows as u32).collect()
        } else {
            (0..rows as u32)
                .filter(|_| rng.next_f64() < params.row_subsample)
                .collect()
        };
        if sample.len() < 2 * g.min_leaf {
            sample = (0..rows as u32).collect();
        }
        let mut leaf_rows = Vec::new();
        let (root, nodes) = g.grow(&mut sample, &mut leaf_rows);
        // Leaf values: per level, the quantile of the residuals, shrunk.
        let leaves: Vec<f32> = leaf_rows
            .par_iter()
            .flat_map_iter(|lr| {
                // Residuals level by level: res[j * n + r].
                let n = lr.len();
                let mut res = vec![0.0f32; n * k];
                for (r, &i) in lr.iter().enumerate() {
                    let i = i as usize;
                    for (j, p) in g.pred[i * k..(i + 1) * k].iter().enumerate() {
                        res[j * n + r] = y[i] - p;
                    }
                }
                let lr_ = params.learning_rate;
                params
                    .levels
                    .iter()
                    .enumerate()
                    .map(|(j, &tau)| {
                        let q = quantile_in_place(&mut res[j * n..(j + 1) * n], tau);
                        (f64::from(q) * lr_) as f32
                    })
                    .collect::<Vec<f32>>()
            })
            .collect();
        let depth = params.max_depth.min(usize::from(MAX_DEPTH)) as u8;
        let tree = Tree::complete(root, &nodes, &leaves, k, &data.edges, depth);
        // Every row moves by its leaf's values (walked on the raw features,
        // which the thresholds split exactly as the bins do).
        g.pred
            .par_chunks_mut(k)
            .with_min_len(PAR_ROWS)
            .enumerate()
            .for_each(|(i, p)| {
                let l = tree.leaf(&x[i * features..(i + 1) * features]);
                for (a, b) in p.iter_mut().zip(&tree.leaves[l * k..(l + 1) * k]) {
                    *a += b;
                }
            });
        g.update_ranks();
        trees.push(tree);
    }
    Boosted { init, trees }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(levels: &[f64]) -> BoostParams {
        BoostParams {
            levels: levels.to_vec(),
            rounds: 60,
            learning_rate: 0.2,
            max_depth: 4,
            min_leaf: 20,
            max_bins: 64,
            row_subsample: 0.7,
            seed: 7,
        }
    }

    /// Predictions at zero base, walking four trees at a time; checked
    /// against one at a time.
    fn predict(b: &Boosted, x: &[f32], k: usize) -> Vec<f32> {
        let mut out = b.init.clone();
        Tree::accumulate(&b.trees, x, &mut out);
        let mut one_by_one = b.init.clone();
        for t in &b.trees {
            t.add_leaf(x, &mut one_by_one);
        }
        assert_eq!(out, one_by_one);
        assert_eq!(out.len(), k);
        out
    }

    #[test]
    fn quantile_in_place_is_the_pinball_minimiser() {
        let mut v: Vec<f32> = (1..=10).map(|i| i as f32).collect();
        assert_eq!(quantile_in_place(&mut v, 0.5), 5.0);
        assert_eq!(quantile_in_place(&mut v, 0.9), 9.0);
        assert_eq!(quantile_in_place(&mut v, 0.91), 10.0);
        assert_eq!(quantile_in_place(&mut v, 0.01), 1.0);
        assert_eq!(quantile_in_place(&mut [], 0.5), 0.0);
    }

    #[test]
    fn learns_a_conditional_spread() {
        // y = x0 + noise whose spread depends on x1; x2 is NaN half the time
        // and useless.
        let mut rng = SplitMix64::new(1);
        let n = 20_000;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let a = rng.next_f64() as f32;
            let wide = (i % 2) as f32;
            let noise = rng.next_f64() as f32 * (0.1 + wide);
            x.extend([a, wide, if i % 3 == 0 { f32::NAN } else { 0.5 }]);
            y.push(a + noise);
        }
        let p = params(&[0.5, 0.9]);
        let b = boost(&x, &y, &vec![0.0; 2 * n], 3, &p);
        for t in &b.trees {
            t.check(3, 2).unwrap();
        }
        // Uniform noise on [0, s): median s/2, 0.9 quantile 0.9 s.
        for (a, wide) in [(0.2f32, 0.0f32), (0.7, 1.0)] {
            let q = predict(&b, &[a, wide, 0.5], 2);
            let s = 0.1 + wide;
            assert!((q[0] - (a + 0.5 * s)).abs() < 0.08, "{a} {wide}: {q:?}");
            assert!((q[1] - (a + 0.9 * s)).abs() < 0.1, "{a} {wide}: {q:?}");
        }
    }

    #[test]
    fn constant_targets_give_constant_predictions() {
        let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let y = vec![3.0f32; 1000];
        let b = boost(&x, &y, &[0.0; 2000], 1, &params(&[0.1, 0.9]));
        assert_eq!(predict(&b, &[5.0], 2), vec![3.0, 3.0]);
        assert_eq!(predict(&b, &[f32::NAN], 2), vec![3.0, 3.0]);
    }

    #[test]
    fn check_refuses_wrong_sizes_features_and_values() {
        let ok = Tree {
            depth: 1,
            nodes: vec![Node {
                threshold: 1.0,
                feature: 0,
                nan_right: true,
            }],
            leaves: vec![0.0, 1.0],
        };
        ok.check(1, 1).unwrap();
        assert_eq!(ok.leaf(&[0.5]), 0);
        assert_eq!(ok.leaf(&[1.5]), 1);
        assert_eq!(ok.leaf(&[f32::NAN]), 1);
        let short = Tree {
            leaves: vec![0.0],
            ..ok.clone()
        };
        assert!(short.check(1, 1).unwrap_err().contains("leaf values"));
        assert!(ok.check(1, 2).is_err());
        assert!(ok.check(0, 1).unwrap_err().contains("feature 0"));
        let deep = Tree {
            depth: 40,
            ..ok.clone()
        };
        assert!(deep.check(1, 1).unwrap_err().contains("depth"));
        let inf = Tree {
            leaves: vec![0.0, f32::INFINITY],
            ..ok.clone()
        };
        assert!(inf.check(1, 1).is_err());
        let nan = Tree {
            nodes: vec![Node {
                threshold: f32::NAN,
                ..ok.nodes[0]
            }],
            ..ok
        };
        assert!(nan.check(1, 1).unwrap_err().contains("NaN"));
    }
}
