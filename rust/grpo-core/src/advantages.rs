//! Group-relative advantages for GRPO-style training.
//!
//! Rewards come as a flat array of consecutive groups of `group_size`
//! samples of the same prompt. Per group, with mean `m` and unbiased
//! (ddof = 1) standard deviation `s`:
//!
//! * `grpo`: `(r - m) / (s + eps)` (DeepSeekMath; `s` as in TRL and verl);
//! * `dr_grpo`: `r - m` (Dr. GRPO: no std division);
//! * `rloo`: `r - mean(others) = (r - m) * G / (G - 1)` (leave-one-out).
//!
//! A group whose rewards are all equal (including any group of size 1) gets
//! exactly 0. With `normalize_batch`, the group-centred values (`r - m` for
//! `grpo` and `dr_grpo`, the leave-one-out values for `rloo`) are divided by
//! the batch's unbiased std plus `eps` instead of a per-group std; when that
//! std is 0 every advantage is 0. Arithmetic is in `f64`, the result `f32`;
//! sums use NumPy's pairwise order, so means and standard deviations equal
//! NumPy's float64 ones bit for bit (the division by `s + eps` is done as a
//! multiplication by its reciprocal, which may differ from NumPy in the last
//! bit of the f64 before rounding to f32). Every value depends only on its
//! group and on a batch sum taken in a fixed order, so results are identical
//! for any thread count.

use std::str::FromStr;

use rayon::prelude::*;

use crate::error::CoreError;

/// Below this many rewards everything runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 16;

/// How advantages are computed from a group's rewards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdvantageMode {
    /// Group mean and std.
    Grpo,
    /// Group mean only.
    DrGrpo,
    /// Leave-one-out baseline.
    Rloo,
}

impl FromStr for AdvantageMode {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<AdvantageMode, CoreError> {
        match s {
            "grpo" => Ok(AdvantageMode::Grpo),
            "dr_grpo" => Ok(AdvantageMode::DrGrpo),
            "rloo" => Ok(AdvantageMode::Rloo),
            other => Err(CoreError::UnknownMode(other.to_owned())),
        }
    }
}

/// Options of [`group_advantages`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdvantageConfig {
    /// The formula.
    pub mode: AdvantageMode,
    /// Added to standard deviations before dividing (finite, >= 0).
    pub eps: f64,
    /// Divide by the batch std instead of the group std.
    pub normalize_batch: bool,
}

impl Default for AdvantageConfig {
    fn default() -> AdvantageConfig {
        AdvantageConfig {
            mode: AdvantageMode::Grpo,
            eps: 1e-6,
            normalize_batch: false,
        }
    }
}

/// A reward value: `f32` or `f64`, read as `f64` (exactly) where used, so a
/// float32 array needs no converted copy.
pub trait Reward: Copy + Send + Sync {
    /// The value as `f64`.
    fn get(self) -> f64;
}

impl Reward for f64 {
    #[inline(always)]
    fn get(self) -> f64 {
        self
    }
}

impl Reward for f32 {
    #[inline(always)]
    fn get(self) -> f64 {
        f64::from(self)
    }
}

/// Sum of `f(x)` over `a` in NumPy's pairwise order (eight partial sums
/// combined as a tree, halving above 128 values), so means and deviations
/// match NumPy's float64 results bit for bit; the dependency chains are also
/// shorter than a left-to-right sum's.
#[inline(always)]
fn pairwise_map<R: Reward, F: Fn(f64) -> f64>(a: &[R], f: &F) -> f64 {
    if a.len() <= 128 {
        return pairwise_leaf(a, f);
    }
    // NumPy's recursion (left half rounded down to a multiple of 8, then
    // `left + right`), run with explicit stacks so all of it inlines into
    // the caller's instance (AVX2 or not).
    enum Job {
        Sum(usize, usize),
        Combine,
    }
    let mut jobs = vec![Job::Sum(0, a.len())];
    let mut sums: Vec<f64> = Vec::with_capacity(32);
    while let Some(job) = jobs.pop() {
        match job {
            Job::Sum(lo, len) if len <= 128 => sums.push(pairwise_leaf(&a[lo..lo + len], f)),
            Job::Sum(lo, len) => {
                let mut half = len / 2;
                half -= half % 8;
                jobs.push(Job::Combine);
                jobs.push(Job::Sum(lo + half, len - half));
                jobs.push(Job::Sum(lo, half));
            }
            Job::Combine => {
                let right = sums.pop().unwrap_or(0.0);
                let left = sums.pop().unwrap_or(0.0);
                sums.push(left + right);
            }
        }
    }
    sums.pop().unwrap_or(0.0)
}

/// [`pairwise_map`] for at most 128 values: eight partial sums, then a tree.
#[inline(always)]
fn pairwise_leaf<R: Reward, F: Fn(f64) -> f64>(a: &[R], f: &F) -> f64 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0;
        for x in a {
            res += f(x.get());
        }
        return res;
    }
    let mut r = [0.0f64; 8];
    for (rj, x) in r.iter_mut().zip(a) {
        *rj = f(x.get());
    }
    let full = n - n % 8;
    for block in a[8..full].chunks_exact(8) {
        for (rj, x) in r.iter_mut().zip(block) {
            *rj += f(x.get());
        }
    }
    let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for x in &a[full..] {
        res += f(x.get());
    }
    res
}

/// [`pairwise_map`] of the identity.
fn pairwise_sum<R: Reward>(a: &[R]) -> f64 {
    pairwise_map(a, &|x| x)
}

/// Per-group statistics: (uniform, mean, sum of squared deviations).
/// Branch-free (no early exit), so the unrolled instances vectorise and
/// random 0/1 rewards cause no mispredictions.
#[inline(always)]
fn group_stats<R: Reward>(grp: &[R], need_ss: bool) -> (bool, f64, f64) {
    let first = grp[0].get();
    let uniform = grp.iter().fold(true, |acc, x| acc & (x.get() == first));
    let mean = pairwise_sum(grp) / grp.len() as f64;
    let ss = if need_ss {
        pairwise_map(grp, &|x| (x - mean) * (x - mean))
    } else {
        0.0
    };
    (uniform, mean, ss)
}

/// Advantages of the consecutive groups (size `g`, a compile-time constant
/// in the unrolled instances) of `r` into `out`: statistics per group, then
/// all scales in one vectorisable pass (square roots and divisions do not
/// sit on a per-group dependency chain), then the outputs. Exactly 0 for a
/// uniform group; sums in member order.
#[inline(always)]
fn groups_generic<R: Reward, T>(
    r: &[R],
    g: usize,
    cfg: &AdvantageConfig,
    out: &mut [T],
    convert: &impl Fn(f64) -> T,
) {
    let ng = r.len() / g;
    let group_std = cfg.mode == AdvantageMode::Grpo && !cfg.normalize_batch;
    let ddof = (g.max(2) - 1) as f64;
    let mut uniform = vec![false; ng];
    let mut mean = vec![0.0f64; ng];
    let mut scale = vec![0.0f64; ng];
    for (k, grp) in r.chunks_exact(g).enumerate() {
        (uniform[k], mean[k], scale[k]) = group_stats(grp, group_std);
    }
    if group_std {
        scale
            .iter_mut()
            .for_each(|ss| *ss = 1.0 / ((*ss / ddof).sqrt() + cfg.eps));
    } else if cfg.mode == AdvantageMode::Rloo {
        scale.fill(g as f64 / ddof);
    } else {
        scale.fill(1.0);
    }
    for (k, (og, grp)) in out.chunks_exact_mut(g).zip(r.chunks_exact(g)).enumerate() {
        // A select, not a branch: the value is computed either way.
        let (u, m, sc) = (uniform[k], mean[k], scale[k]);
        for (o, x) in og.iter_mut().zip(grp) {
            let v = (x.get() - m) * sc;
            *o = convert(if u { 0.0 } else { v });
        }
    }
}

/// Advantages of the consecutive groups of `r` into `out`, with unrolled
/// code for the usual group sizes. The same arithmetic in the same order
/// whatever the path, so results do not depend on how work is split.
fn groups_into<R: Reward, T>(
    r: &[R],
    g: usize,
    cfg: &AdvantageConfig,
    out: &mut [T],
    convert: &impl Fn(f64) -> T,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { groups_into_avx2(r, g, cfg, out, convert) };
        return;
    }
    groups_into_any(r, g, cfg, out, convert);
}

/// [`groups_into_any`] compiled for AVX2 (wider vectors; no FMA, so every
/// operation rounds exactly as the portable build does).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn groups_into_avx2<R: Reward, T>(
    r: &[R],
    g: usize,
    cfg: &AdvantageConfig,
    out: &mut [T],
    convert: &impl Fn(f64) -> T,
) {
    groups_into_any(r, g, cfg, out, convert);
}

#[inline(always)]
fn groups_into_any<R: Reward, T>(
    r: &[R],
    g: usize,
    cfg: &AdvantageConfig,
    out: &mut [T],
    convert: &impl Fn(f64) -> T,
) {
    match g {
        2 => groups_generic(r, 2, cfg, out, convert),
        4 => groups_generic(r, 4, cfg, out, convert),
        8 => groups_generic(r, 8, cfg, out, convert),
        16 => groups_generic(r, 16, cfg, out, convert),
        _ => groups_generic(r, g, cfg, out, convert),
    }
}

/// [`groups_into`] over all groups, in parallel (same result) for large inputs.
fn all_groups<R: Reward, T: Send>(
    rewards: &[R],
    group_size: usize,
    cfg: &AdvantageConfig,
    out: &mut [T],
    convert: impl Fn(f64) -> T + Sync,
) {
    if rewards.len() >= PARALLEL_MIN {
        let per_task = group_size * (4096 / group_size).max(1);
        out.par_chunks_mut(per_task)
            .zip(rewards.par_chunks(per_task))
            .for_each(|(o, r)| groups_into(r, group_size, cfg, o, &convert));
    } else {
        groups_into(rewards, group_size, cfg, out, &convert);
    }
}

/// Advantages for `rewards` (consecutive groups of `group_size`).
///
/// Errors: `group_size < 1`, length not divisible by `group_size`, a NaN or
/// infinite reward (naming its index), a negative or non-finite `eps`.
pub fn group_advantages<R: Reward>(
    rewards: &[R],
    group_size: usize,
    cfg: &AdvantageConfig,
) -> Result<Vec<f32>, CoreError> {
    if group_size < 1 {
        return Err(CoreError::InvalidArgument(format!(
            "group_size must be >= 1, got {group_size}"
        )));
    }
    if !rewards.len().is_multiple_of(group_size) {
        return Err(CoreError::InvalidArgument(format!(
            "len(rewards) = {} is not divisible by group_size = {group_size}",
            rewards.len()
        )));
    }
    if !(cfg.eps.is_finite() && cfg.eps >= 0.0) {
        return Err(CoreError::InvalidArgument(format!(
            "eps must be finite and >= 0, got {}",
            cfg.eps
        )));
    }
    // A branch-free scan first (vectorises); the index only when needed.
    if rewards
        .iter()
        .fold(false, |acc, x| acc | !x.get().is_finite())
    {
        let index = rewards
            .iter()
            .position(|x| !x.get().is_finite())
            .unwrap_or(0);
        return Err(CoreError::NonFinite {
            what: "rewards",
            index,
        });
    }
    if !cfg.normalize_batch {
        let mut out = vec![0.0f32; rewards.len()];
        all_groups(rewards, group_size, cfg, &mut out, |v| v as f32);
        return Ok(out);
    }
    let mut centred = vec![0.0f64; rewards.len()];
    all_groups(rewards, group_size, cfg, &mut centred, |v| v);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return Ok(unsafe { batch_normalize_avx2(&centred, cfg.eps) });
    }
    Ok(batch_normalize(&centred, cfg.eps))
}

/// [`batch_normalize`] compiled for AVX2 (no FMA: identical rounding).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn batch_normalize_avx2(centred: &[f64], eps: f64) -> Vec<f32> {
    batch_normalize(centred, eps)
}

/// Divide by the batch's unbiased std plus `eps` (all zeros when it is 0).
#[inline(always)]
fn batch_normalize(centred: &[f64], eps: f64) -> Vec<f32> {
    let n = centred.len();
    let std = if n >= 2 {
        let mean = pairwise_sum(centred) / n as f64;
        let ss = pairwise_map(centred, &|x| (x - mean) * (x - mean));
        let var = ss / (n - 1) as f64;
        var.sqrt()
    } else {
        0.0
    };
    if std == 0.0 {
        return vec![0.0; n];
    }
    let scale = 1.0 / (std + eps);
    centred.iter().map(|x| (x * scale) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: AdvantageMode, normalize_batch: bool) -> AdvantageConfig {
        AdvantageConfig {
            mode,
            eps: 1e-6,
            normalize_batch,
        }
    }

    #[test]
    fn grpo_matches_formula() {
        let a =
            group_advantages(&[1.0, 0.0, 0.0, 1.0], 4, &cfg(AdvantageMode::Grpo, false)).unwrap();
        let std = (1.0f64 / 3.0).sqrt();
        let want = (0.5 * (1.0 / (std + 1e-6))) as f32;
        assert_eq!(a, vec![want, -want, -want, want]);
    }

    #[test]
    fn uniform_group_is_exactly_zero() {
        for mode in [
            AdvantageMode::Grpo,
            AdvantageMode::DrGrpo,
            AdvantageMode::Rloo,
        ] {
            for nb in [false, true] {
                let a = group_advantages(&[0.1; 6], 3, &cfg(mode, nb)).unwrap();
                assert!(a.iter().all(|x| *x == 0.0));
            }
        }
        let a = group_advantages(&[1.0, 2.0, 3.0], 1, &AdvantageConfig::default()).unwrap();
        assert_eq!(a, vec![0.0; 3]);
    }

    #[test]
    fn rloo_is_leave_one_out() {
        let r = [1.0, 0.0, 0.0, 0.5];
        let a = group_advantages(&r, 4, &cfg(AdvantageMode::Rloo, false)).unwrap();
        for i in 0..4 {
            let others: f64 = r
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, x)| x)
                .sum();
            let want = r[i] - others / 3.0;
            assert!((f64::from(a[i]) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn dr_grpo_is_centred() {
        let a = group_advantages(&[1.0, 0.0], 2, &cfg(AdvantageMode::DrGrpo, false)).unwrap();
        assert_eq!(a, vec![0.5, -0.5]);
    }

    #[test]
    fn batch_normalisation() {
        let r = [1.0, 0.0, 0.0, 0.0, 5.0, 5.0];
        let a = group_advantages(&r, 2, &cfg(AdvantageMode::Grpo, true)).unwrap();
        let c = [0.5f64, -0.5, 0.0, 0.0, 0.0, 0.0];
        let var = c.iter().map(|x| x * x).sum::<f64>() / 5.0;
        let scale = 1.0 / (var.sqrt() + 1e-6);
        let want: Vec<f32> = c.iter().map(|x| (x * scale) as f32).collect();
        assert_eq!(a, want);
    }

    #[test]
    fn float32_rewards_equal_their_float64_values() {
        let r32: Vec<f32> = (0..96).map(|i| ((i * 37) % 11) as f32 / 7.0).collect();
        let r64: Vec<f64> = r32.iter().map(|x| f64::from(*x)).collect();
        for mode in [
            AdvantageMode::Grpo,
            AdvantageMode::DrGrpo,
            AdvantageMode::Rloo,
        ] {
            for nb in [false, true] {
                for g in [3, 8, 96] {
                    assert_eq!(
                        group_advantages(&r32, g, &cfg(mode, nb)),
                        group_advantages(&r64, g, &cfg(mode, nb))
                    );
                }
            }
        }
    }

    #[test]
    fn pairwise_sum_is_exact_on_integers() {
        for n in [0usize, 1, 7, 8, 9, 64, 128, 129, 1000, 4097] {
            let want = (n * n.saturating_sub(1) / 2) as f64;
            let v: Vec<f64> = (0..n).map(|i| i as f64).collect();
            assert_eq!(pairwise_sum(&v), want, "n = {n}");
        }
    }

    #[test]
    fn errors() {
        let d = AdvantageConfig::default();
        assert!(matches!(
            group_advantages(&[1.0; 3], 2, &d),
            Err(CoreError::InvalidArgument(_))
        ));
        assert!(matches!(
            group_advantages(&[1.0; 3], 0, &d),
            Err(CoreError::InvalidArgument(_))
        ));
        assert_eq!(
            group_advantages(&[1.0, f64::NAN], 2, &d),
            Err(CoreError::NonFinite {
                what: "rewards",
                index: 1
            })
        );
        let bad_eps = AdvantageConfig { eps: -1.0, ..d };
        assert!(group_advantages(&[1.0; 2], 2, &bad_eps).is_err());
        assert!(
            matches!("ppo".parse::<AdvantageMode>(), Err(CoreError::UnknownMode(m)) if m == "ppo")
        );
        assert_eq!(group_advantages::<f64>(&[], 4, &d), Ok(vec![]));
    }
}
