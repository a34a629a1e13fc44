//! Packing sequences into micro-batches for a varlen (flash-attention
//! style) learner, spread over data-parallel ranks.
//!
//! Each sequence is its prompt followed by its completion. The plan:
//!
//! 1. Sort sequences by length, longest first (ties: lower index first).
//! 2. First-fit-decreasing into bins of at most `max_tokens` tokens (a
//!    segment tree finds the first bin with room in `O(log n)`). A sequence
//!    longer than `max_tokens` gets a bin of its own (the only way a bin
//!    exceeds the budget).
//! 3. With `B` bins and `R` ranks every rank gets `K = ceil(B / R)` bins: the
//!    heaviest bins with at least two sequences are split in two until there
//!    are `R * K`. This needs at least `R * K` sequences; with fewer (for
//!    example fewer sequences than ranks) it is an
//!    [`CoreError::Infeasible`] error. No sequences at all gives `R` empty
//!    lists.
//! 4. Bins, heaviest first, go to the least-loaded rank (in tokens) that has
//!    fewer than `K` bins (ties: lower rank). Each rank's micro-batches are in
//!    that order (heaviest first); sequences inside a micro-batch are in
//!    input order.
//!
//! Everything is deterministic and independent of the thread count; only
//! step 5, building the flat arrays of every micro-batch, runs in parallel.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::error::CoreError;

/// Rows of values of varying length stored in one buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Ragged<T> {
    data: Vec<T>,
    offsets: Vec<usize>,
}

impl<T: Copy> Default for Ragged<T> {
    fn default() -> Ragged<T> {
        Ragged::new()
    }
}

impl<T: Copy> Ragged<T> {
    /// No rows.
    pub fn new() -> Ragged<T> {
        Ragged {
            data: Vec::new(),
            offsets: vec![0],
        }
    }

    /// No rows, with room for `rows` rows and `values` values.
    pub fn with_capacity(rows: usize, values: usize) -> Ragged<T> {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Ragged {
            data: Vec::with_capacity(values),
            offsets,
        }
    }

    /// Rows from slices.
    pub fn from_rows<R: AsRef<[T]>>(rows: &[R]) -> Ragged<T> {
        let mut r = Ragged::new();
        for row in rows {
            r.push_row(row.as_ref());
        }
        r
    }

    /// Remove all rows, keeping the allocated capacity for reuse.
    pub fn clear(&mut self) {
        self.data.clear();
        self.offsets.truncate(1);
    }

    /// Reserve room for `additional` more values.
    pub fn reserve(&mut self, additional: usize) {
        self.data.reserve(additional);
    }

    /// Bytes of values the buffer can hold without reallocating.
    pub fn capacity_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<T>()
    }

    /// Append a whole row.
    pub fn push_row(&mut self, row: &[T]) {
        self.data.extend_from_slice(row);
        self.offsets.push(self.data.len());
    }

    /// Append one value to the row being built (see [`Ragged::end_row`]).
    pub fn push_value(&mut self, v: T) {
        self.data.push(v);
    }

    /// Close the row being built.
    pub fn end_row(&mut self) {
        self.offsets.push(self.data.len());
    }

    /// Drop the values pushed since the last closed row.
    pub fn discard_open_row(&mut self) {
        let start = self.offsets[self.offsets.len() - 1];
        self.data.truncate(start);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `i`. Panics if `i >= len()`.
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Length of row `i`.
    pub fn row_len(&self, i: usize) -> usize {
        self.offsets[i + 1] - self.offsets[i]
    }
}

/// Per-sequence inputs of [`pack_microbatches`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackInput {
    /// Prompt token ids of each sequence.
    pub prompt_ids: Ragged<i64>,
    /// Completion token ids of each sequence.
    pub completion_ids: Ragged<i64>,
    /// Rollout log-probability of each completion token.
    pub completion_logprobs: Ragged<f32>,
    /// One advantage per sequence.
    pub advantages: Vec<f64>,
}

/// One packed micro-batch of `T` tokens holding `S` sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct MicroBatch {
    /// `[T]` prompt then completion tokens of each sequence, back to back.
    pub input_ids: Vec<i64>,
    /// `[T]` position inside its own sequence (restarts at 0).
    pub position_ids: Vec<i64>,
    /// `[T]` 1 on completion tokens, 0 on prompt tokens.
    pub loss_mask: Vec<f32>,
    /// `[T]` rollout log-prob of token `t` at position `t`, 0 on prompts.
    pub old_logprobs: Vec<f32>,
    /// `[T]` the sequence's advantage on completion tokens, 0 on prompts.
    pub advantages: Vec<f32>,
    /// `[S + 1]` sequence boundaries: sequence `k` is `cu[k]..cu[k + 1]`.
    pub cu_seqlens: Vec<i32>,
    /// `[S]` index of each packed sequence in the input.
    pub seq_indices: Vec<i64>,
}

/// Max-segment tree over bin capacities; leaf `k` is bin `k`. A leaf holds
/// `room + 1` for an open bin and 0 for a closed one (an over-budget
/// sequence's own bin), so even an empty sequence cannot join a closed bin.
struct CapacityTree {
    size: usize,
    t: Vec<usize>,
}

impl CapacityTree {
    fn new(n: usize, cap: usize) -> CapacityTree {
        let size = n.max(1).next_power_of_two();
        let mut t = vec![0; 2 * size];
        t[size..size + n].fill(cap + 1);
        for i in (1..size).rev() {
            t[i] = t[2 * i].max(t[2 * i + 1]);
        }
        CapacityTree { size, t }
    }

    /// First open leaf with room for `need` tokens.
    fn first_fit(&self, need: usize) -> Option<usize> {
        let need = need + 1;
        if self.t[1] < need {
            return None;
        }
        let mut i = 1;
        while i < self.size {
            i = if self.t[2 * i] >= need {
                2 * i
            } else {
                2 * i + 1
            };
        }
        Some(i - self.size)
    }

    fn set(&mut self, leaf: usize, v: usize) {
        let mut i = leaf + self.size;
        self.t[i] = v;
        while i > 1 {
            i /= 2;
            self.t[i] = self.t[2 * i].max(self.t[2 * i + 1]);
        }
    }
}

#[derive(Clone, Debug)]
struct Bin {
    items: Vec<usize>,
    tokens: usize,
}

/// Split a bin's items (longest first) into two non-empty halves balanced
/// by tokens: the first two items open the halves, each further item goes
/// to the lighter half (ties: first half).
fn split_bin(bin: &Bin, lengths: &[usize]) -> (Bin, Bin) {
    let mut a = Bin {
        items: vec![bin.items[0]],
        tokens: lengths[bin.items[0]],
    };
    let mut b = Bin {
        items: vec![bin.items[1]],
        tokens: lengths[bin.items[1]],
    };
    for &i in &bin.items[2..] {
        let half = if b.tokens < a.tokens { &mut b } else { &mut a };
        half.items.push(i);
        half.tokens += lengths[i];
    }
    (a, b)
}

/// The packing plan: `[rank][micro_batch] -> sequence indices` (see the
/// module docs).
pub fn plan_packing(
    lengths: &[usize],
    max_tokens: usize,
    n_ranks: usize,
) -> Result<Vec<Vec<Vec<usize>>>, CoreError> {
    if max_tokens < 1 {
        return Err(CoreError::InvalidArgument(format!(
            "max_tokens must be >= 1, got {max_tokens}"
        )));
    }
    if n_ranks < 1 {
        return Err(CoreError::InvalidArgument(format!(
            "n_ranks must be >= 1, got {n_ranks}"
        )));
    }
    let n = lengths.len();
    if n == 0 {
        return Ok(vec![Vec::new(); n_ranks]);
    }
    // 1. longest first
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (Reverse(lengths[i]), i));
    // 2. first-fit-decreasing
    let mut tree = CapacityTree::new(n, max_tokens);
    let mut bins: Vec<Bin> = Vec::new();
    for &i in &order {
        let len = lengths[i];
        let leaf = tree.first_fit(len).unwrap_or(bins.len());
        if leaf == bins.len() {
            bins.push(Bin {
                items: Vec::new(),
                tokens: 0,
            });
        }
        let bin = &mut bins[leaf];
        bin.items.push(i);
        bin.tokens += len;
        let open = bin.tokens <= max_tokens;
        tree.set(leaf, if open { max_tokens - bin.tokens + 1 } else { 0 });
    }
    // 3. equal number of bins per rank
    let per_rank = bins.len().div_ceil(n_ranks);
    let target = per_rank * n_ranks;
    if n < target {
        return Err(CoreError::Infeasible(format!(
            "cannot give each of {n_ranks} ranks the same number of micro-batches: \
             {n} sequences need {} bins under max_tokens={max_tokens}, so each rank needs \
             {per_rank} and {target} non-empty micro-batches need at least {target} sequences",
            bins.len()
        )));
    }
    let mut heap: BinaryHeap<(usize, Reverse<usize>)> = bins
        .iter()
        .enumerate()
        .filter(|(_, b)| b.items.len() >= 2)
        .map(|(k, b)| (b.tokens, Reverse(k)))
        .collect();
    while bins.len() < target {
        // n >= target guarantees a bin with two or more sequences remains.
        let Some((_, Reverse(k))) = heap.pop() else {
            return Err(CoreError::Infeasible("no bin left to split".into()));
        };
        let (a, b) = split_bin(&bins[k], lengths);
        let new_k = bins.len();
        if a.items.len() >= 2 {
            heap.push((a.tokens, Reverse(k)));
        }
        if b.items.len() >= 2 {
            heap.push((b.tokens, Reverse(new_k)));
        }
        bins[k] = a;
        bins.push(b);
    }
    // 4. heaviest bins first, to the least-loaded rank with room
    let mut bin_order: Vec<usize> = (0..bins.len()).collect();
    bin_order.sort_by_key(|&k| (Reverse(bins[k].tokens), k));
    let mut load = vec![0usize; n_ranks];
    let mut plan: Vec<Vec<Vec<usize>>> = vec![Vec::with_capacity(per_rank); n_ranks];
    for k in bin_order {
        let rank = (0..n_ranks)
            .filter(|&r| plan[r].len() < per_rank)
            .min_by_key(|&r| (load[r], r))
            .unwrap_or(0);
        load[rank] += bins[k].tokens;
        let mut items = std::mem::take(&mut bins[k].items);
        items.sort_unstable();
        plan[rank].push(items);
    }
    Ok(plan)
}

fn validate(input: &PackInput) -> Result<Vec<usize>, CoreError> {
    let n = input.prompt_ids.len();
    let others = [
        ("prompt_ids and completion_ids", input.completion_ids.len()),
        (
            "prompt_ids and completion_logprobs",
            input.completion_logprobs.len(),
        ),
        ("prompt_ids and advantages", input.advantages.len()),
    ];
    for (what, len) in others {
        if len != n {
            return Err(CoreError::LengthMismatch {
                what: what.into(),
                left: n,
                right: len,
            });
        }
    }
    let mut lengths = Vec::with_capacity(n);
    for i in 0..n {
        let c = input.completion_ids.row_len(i);
        let l = input.completion_logprobs.row_len(i);
        if c != l {
            return Err(CoreError::InvalidArgument(format!(
                "completion_logprobs[{i}] has {l} values but completion_ids[{i}] has {c} tokens"
            )));
        }
        if let Some(j) = input
            .completion_logprobs
            .row(i)
            .iter()
            .position(|x| !x.is_finite())
        {
            return Err(CoreError::InvalidArgument(format!(
                "completion_logprobs[{i}][{j}] is not finite"
            )));
        }
        if !input.advantages[i].is_finite() {
            return Err(CoreError::NonFinite {
                what: "advantages",
                index: i,
            });
        }
        lengths.push(input.prompt_ids.row_len(i) + c);
    }
    Ok(lengths)
}

fn build(input: &PackInput, seqs: &[usize], lengths: &[usize]) -> MicroBatch {
    let total: usize = seqs.iter().map(|&i| lengths[i]).sum();
    let mut mb = MicroBatch {
        input_ids: Vec::with_capacity(total),
        position_ids: Vec::with_capacity(total),
        loss_mask: Vec::with_capacity(total),
        old_logprobs: Vec::with_capacity(total),
        advantages: Vec::with_capacity(total),
        cu_seqlens: Vec::with_capacity(seqs.len() + 1),
        seq_indices: Vec::with_capacity(seqs.len()),
    };
    mb.cu_seqlens.push(0);
    let mut offset = 0usize;
    for &i in seqs {
        let prompt = input.prompt_ids.row(i);
        let completion = input.completion_ids.row(i);
        let (p, c) = (prompt.len(), completion.len());
        mb.input_ids.extend_from_slice(prompt);
        mb.input_ids.extend_from_slice(completion);
        mb.position_ids.extend(0..(p + c) as i64);
        mb.loss_mask.extend(std::iter::repeat_n(0.0, p));
        mb.loss_mask.extend(std::iter::repeat_n(1.0, c));
        mb.old_logprobs.extend(std::iter::repeat_n(0.0, p));
        mb.old_logprobs
            .extend_from_slice(input.completion_logprobs.row(i));
        mb.advantages.extend(std::iter::repeat_n(0.0, p));
        mb.advantages
            .extend(std::iter::repeat_n(input.advantages[i] as f32, c));
        offset += p + c;
        // Checked by the caller: every micro-batch has at most i32::MAX tokens.
        mb.cu_seqlens.push(offset as i32);
        mb.seq_indices.push(i as i64);
    }
    mb
}

/// Pack the sequences of `input` into micro-batches of at most `max_tokens`
/// tokens, `[rank][micro_batch]`, every rank with the same count (see the
/// module docs). Errors name the offending input and index.
pub fn pack_microbatches(
    input: &PackInput,
    max_tokens: usize,
    n_ranks: usize,
) -> Result<Vec<Vec<MicroBatch>>, CoreError> {
    let lengths = validate(input)?;
    let plan = plan_packing(&lengths, max_tokens, n_ranks)?;
    for (r, rank) in plan.iter().enumerate() {
        for (m, seqs) in rank.iter().enumerate() {
            let total: usize = seqs.iter().map(|&i| lengths[i]).sum();
            if total > i32::MAX as usize {
                return Err(CoreError::InvalidArgument(format!(
                    "micro-batch {m} of rank {r} would hold {total} tokens, more than int32 \
                     cu_seqlens can address"
                )));
            }
        }
    }
    let per_rank = plan.first().map_or(0, Vec::len);
    let flat: Vec<&Vec<usize>> = plan.iter().flatten().collect();
    let mut built: Vec<MicroBatch> = flat
        .par_iter()
        .map(|seqs| build(input, seqs, &lengths))
        .collect();
    let mut out = Vec::with_capacity(n_ranks);
    for _ in 0..n_ranks {
        let rest = built.split_off(per_rank);
        out.push(std::mem::replace(&mut built, rest));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(prompts: &[Vec<i64>], completions: &[Vec<i64>]) -> PackInput {
        let logprobs: Vec<Vec<f32>> = completions
            .iter()
            .map(|c| c.iter().map(|t| -(*t as f32) / 10.0).collect())
            .collect();
        PackInput {
            prompt_ids: Ragged::from_rows(prompts),
            completion_ids: Ragged::from_rows(completions),
            completion_logprobs: Ragged::from_rows(&logprobs),
            advantages: (0..prompts.len()).map(|i| i as f64 + 0.5).collect(),
        }
    }

    #[test]
    fn packs_two_sequences() {
        let inp = input(&[vec![1, 2], vec![3]], &[vec![4], vec![5, 6]]);
        let out = pack_microbatches(&inp, 10, 1).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), 1);
        let mb = &out[0][0];
        assert_eq!(mb.input_ids, vec![1, 2, 4, 3, 5, 6]);
        assert_eq!(mb.position_ids, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(mb.loss_mask, vec![0.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
        assert_eq!(mb.old_logprobs, vec![0.0, 0.0, -0.4, 0.0, -0.5, -0.6]);
        assert_eq!(mb.advantages, vec![0.0, 0.0, 0.5, 0.0, 1.5, 1.5]);
        assert_eq!(mb.cu_seqlens, vec![0, 3, 6]);
        assert_eq!(mb.seq_indices, vec![0, 1]);
    }

    #[test]
    fn oversize_sequence_gets_own_bin() {
        let plan = plan_packing(&[10, 2, 2], 4, 1).unwrap();
        assert_eq!(plan, vec![vec![vec![0], vec![1, 2]]]);
    }

    #[test]
    fn ranks_get_equal_counts() {
        // Three bins of one sequence each cannot be split evenly over 2 ranks
        // without a fourth sequence.
        assert!(matches!(
            plan_packing(&[3, 3, 3], 4, 2),
            Err(CoreError::Infeasible(_))
        ));
        let plan = plan_packing(&[3, 3, 3, 1], 4, 2).unwrap();
        assert_eq!(plan[0].len(), plan[1].len());
        // One bin split across two ranks.
        let plan = plan_packing(&[1, 1, 1, 1], 100, 2).unwrap();
        assert_eq!(plan, vec![vec![vec![0, 2]], vec![vec![1, 3]]]);
        assert!(matches!(
            plan_packing(&[1], 100, 2),
            Err(CoreError::Infeasible(_))
        ));
        assert_eq!(
            plan_packing(&[], 100, 3).unwrap(),
            vec![Vec::<Vec<usize>>::new(); 3]
        );
    }

    #[test]
    fn validation() {
        let mut inp = input(&[vec![1]], &[vec![2, 3]]);
        assert!(pack_microbatches(&inp, 0, 1).is_err());
        assert!(pack_microbatches(&inp, 1, 0).is_err());
        inp.completion_logprobs = Ragged::from_rows(&[vec![0.0f32]]);
        let err = pack_microbatches(&inp, 8, 1).unwrap_err();
        assert!(err.to_string().contains("completion_logprobs[0]"));
        let mut inp = input(&[vec![1]], &[vec![2]]);
        inp.advantages = vec![f64::NAN];
        assert_eq!(
            pack_microbatches(&inp, 8, 1).unwrap_err(),
            CoreError::NonFinite {
                what: "advantages",
                index: 0
            }
        );
        let mut inp = input(&[vec![1]], &[vec![2]]);
        inp.advantages = vec![];
        assert!(matches!(
            pack_microbatches(&inp, 8, 1),
            Err(CoreError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn ragged_open_row() {
        let mut r: Ragged<i64> = Ragged::new();
        r.push_value(1);
        r.end_row();
        r.push_value(2);
        r.discard_open_row();
        r.push_row(&[3, 4]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.row(0), &[1]);
        assert_eq!(r.row(1), &[3, 4]);
        r.clear();
        assert!(r.is_empty());
        r.push_row(&[5]);
        assert_eq!(r.row(0), &[5]);
    }
}
