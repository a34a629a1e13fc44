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
    /// All rows as slices, for a [`PackInput`].
    pub fn rows(&self) -> Vec<&[T]> {
        (0..self.len()).map(|i| self.row(i)).collect()
    }
}

/// Per-sequence inputs of [`pack_microbatches`], borrowed: callers may point
/// the rows straight at their own buffers (no copy).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackInput<'a> {
    /// Prompt token ids of each sequence.
    pub prompt_ids: Vec<&'a [i64]>,
    /// Completion token ids of each sequence.
    pub completion_ids: Vec<&'a [i64]>,
    /// Rollout log-probability of each completion token.
    pub completion_logprobs: Vec<&'a [f32]>,
    /// One advantage per sequence.
    pub advantages: &'a [f64],
}

/// One packed micro-batch of `T` tokens holding `S` sequences (a view into
/// a [`Packed`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MicroBatch<'a> {
    /// `[T]` prompt then completion tokens of each sequence, back to back.
    pub input_ids: &'a [i64],
    /// `[T]` position inside its own sequence (restarts at 0).
    pub position_ids: &'a [i64],
    /// `[T]` 1 on completion tokens, 0 on prompt tokens.
    pub loss_mask: &'a [f32],
    /// `[T]` rollout log-prob of token `t` at position `t`, 0 on prompts.
    pub old_logprobs: &'a [f32],
    /// `[T]` the sequence's advantage on completion tokens, 0 on prompts.
    pub advantages: &'a [f32],
    /// `[S + 1]` sequence boundaries: sequence `k` is `cu[k]..cu[k + 1]`.
    pub cu_seqlens: &'a [i32],
    /// `[S]` index of each packed sequence in the input.
    pub seq_indices: &'a [i64],
}

/// Every micro-batch of every rank, each field in one buffer: micro-batch
/// `k` (rank-major, `k = rank * per_rank + m`) holds tokens
/// `token_offsets[k]..token_offsets[k + 1]` of the token fields, sequences
/// `seq_offsets[k]..seq_offsets[k + 1]` of `seq_indices` and entries
/// `seq_offsets[k] + k..=seq_offsets[k + 1] + k` of `cu_seqlens`. One
/// allocation per field instead of one per micro-batch and field: fresh
/// pages cost a fault each, which dominates on virtual machines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Packed {
    /// Token ids of all micro-batches.
    pub input_ids: Vec<i64>,
    /// Positions of all micro-batches.
    pub position_ids: Vec<i64>,
    /// Loss masks of all micro-batches.
    pub loss_mask: Vec<f32>,
    /// Rollout log-probs of all micro-batches.
    pub old_logprobs: Vec<f32>,
    /// Per-token advantages of all micro-batches.
    pub advantages: Vec<f32>,
    /// `cu_seqlens` of all micro-batches, each starting at 0.
    pub cu_seqlens: Vec<i32>,
    /// Sequence indices of all micro-batches.
    pub seq_indices: Vec<i64>,
    /// Token range of each micro-batch (`micro_batches + 1` entries).
    pub token_offsets: Vec<usize>,
    /// Sequence range of each micro-batch (`micro_batches + 1` entries).
    pub seq_offsets: Vec<usize>,
    /// Number of ranks.
    pub n_ranks: usize,
    /// Micro-batches per rank (the same for every rank).
    pub per_rank: usize,
}

impl Packed {
    /// Micro-batch `k` in rank-major order.
    pub fn micro_batch(&self, k: usize) -> MicroBatch<'_> {
        let (a, b) = (self.token_offsets[k], self.token_offsets[k + 1]);
        let (sa, sb) = (self.seq_offsets[k], self.seq_offsets[k + 1]);
        MicroBatch {
            input_ids: &self.input_ids[a..b],
            position_ids: &self.position_ids[a..b],
            loss_mask: &self.loss_mask[a..b],
            old_logprobs: &self.old_logprobs[a..b],
            advantages: &self.advantages[a..b],
            cu_seqlens: &self.cu_seqlens[sa + k..=sb + k],
            seq_indices: &self.seq_indices[sa..sb],
        }
    }

    /// `[rank][micro_batch]` views.
    pub fn ranks(&self) -> Vec<Vec<MicroBatch<'_>>> {
        (0..self.n_ranks)
            .map(|r| {
                (0..self.per_rank)
                    .map(|m| self.micro_batch(r * self.per_rank + m))
                    .collect()
            })
            .collect()
    }
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

/// Lengths of every sequence, after checking the inputs agree; errors name
/// the lowest offending index whatever the thread count.
fn validate(input: &PackInput<'_>) -> Result<Vec<usize>, CoreError> {
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
    let ok: Vec<bool> = (0..n)
        .into_par_iter()
        .with_min_len(256)
        .map(|i| {
            let lp = input.completion_logprobs[i];
            lp.len() == input.completion_ids[i].len()
                && lp.iter().all(|x| x.is_finite())
                && input.advantages[i].is_finite()
        })
        .collect();
    if let Some(i) = ok.iter().position(|good| !good) {
        let c = input.completion_ids[i].len();
        let lp = input.completion_logprobs[i];
        if lp.len() != c {
            return Err(CoreError::InvalidArgument(format!(
                "completion_logprobs[{i}] has {} values but completion_ids[{i}] has {c} tokens",
                lp.len()
            )));
        }
        if let Some(j) = lp.iter().position(|x| !x.is_finite()) {
            return Err(CoreError::InvalidArgument(format!(
                "completion_logprobs[{i}][{j}] is not finite"
            )));
        }
        return Err(CoreError::NonFinite {
            what: "advantages",
            index: i,
        });
    }
    Ok((0..n)
        .map(|i| input.prompt_ids[i].len() + input.completion_ids[i].len())
        .collect())
}

/// Make `v` hold exactly `n` values without writing the ones it keeps: the
/// packer overwrites every value, so stale contents of a reused buffer are
/// fine and a warm buffer costs no page faults.
fn set_len<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() >= n {
        v.truncate(n);
    } else {
        v.resize(n, T::default());
    }
}

/// Split `buf` into consecutive chunks of the given lengths.
fn split_chunks<T>(mut buf: &mut [T], lens: impl Iterator<Item = usize>) -> Vec<&mut [T]> {
    let mut out = Vec::new();
    for len in lens {
        let (head, tail) = buf.split_at_mut(len);
        out.push(head);
        buf = tail;
    }
    out
}

/// The output slices of one micro-batch.
struct Slots<'a> {
    input_ids: &'a mut [i64],
    position_ids: &'a mut [i64],
    loss_mask: &'a mut [f32],
    old_logprobs: &'a mut [f32],
    advantages: &'a mut [f32],
    cu_seqlens: &'a mut [i32],
    seq_indices: &'a mut [i64],
}

/// Fill one micro-batch's slots with `seqs`, writing every value.
fn fill(input: &PackInput<'_>, seqs: &[usize], out: Slots<'_>) {
    let mut offset = 0usize;
    out.cu_seqlens[0] = 0;
    for (s, &i) in seqs.iter().enumerate() {
        let prompt = input.prompt_ids[i];
        let completion = input.completion_ids[i];
        let (p, c) = (prompt.len(), completion.len());
        let (a, m, b) = (offset, offset + p, offset + p + c);
        out.input_ids[a..m].copy_from_slice(prompt);
        out.input_ids[m..b].copy_from_slice(completion);
        for (pos, slot) in out.position_ids[a..b].iter_mut().enumerate() {
            *slot = pos as i64;
        }
        out.loss_mask[a..m].fill(0.0);
        out.loss_mask[m..b].fill(1.0);
        out.old_logprobs[a..m].fill(0.0);
        out.old_logprobs[m..b].copy_from_slice(input.completion_logprobs[i]);
        out.advantages[a..m].fill(0.0);
        out.advantages[m..b].fill(input.advantages[i] as f32);
        offset = b;
        // Checked by the caller: every micro-batch has at most i32::MAX tokens.
        out.cu_seqlens[s + 1] = offset as i32;
        out.seq_indices[s] = i as i64;
    }
}

/// Pack the sequences of `input` into micro-batches of at most `max_tokens`
/// tokens, every rank with the same count (see the module docs). Errors
/// name the offending input and index.
pub fn pack_microbatches(
    input: &PackInput<'_>,
    max_tokens: usize,
    n_ranks: usize,
) -> Result<Packed, CoreError> {
    let mut out = Packed::default();
    pack_microbatches_into(input, max_tokens, n_ranks, &mut out)?;
    Ok(out)
}

/// [`pack_microbatches`] into the buffers of `out`, which may hold a
/// previous result: they are resized and every value is overwritten, so a
/// caller that recycles buffers between steps avoids fresh pages (on
/// virtual machines a page fault per 4 KiB costs more than the packing).
pub fn pack_microbatches_into(
    input: &PackInput<'_>,
    max_tokens: usize,
    n_ranks: usize,
    out: &mut Packed,
) -> Result<(), CoreError> {
    let lengths = validate(input)?;
    let plan = plan_packing(&lengths, max_tokens, n_ranks)?;
    let flat: Vec<&Vec<usize>> = plan.iter().flatten().collect();
    let per_rank = plan.first().map_or(0, Vec::len);
    let mut token_offsets = Vec::with_capacity(flat.len() + 1);
    let mut seq_offsets = Vec::with_capacity(flat.len() + 1);
    let (mut tokens, mut seqs) = (0usize, 0usize);
    token_offsets.push(0);
    seq_offsets.push(0);
    for (k, mb) in flat.iter().enumerate() {
        let total: usize = mb.iter().map(|&i| lengths[i]).sum();
        if total > i32::MAX as usize {
            return Err(CoreError::InvalidArgument(format!(
                "micro-batch {} of rank {} would hold {total} tokens, more than int32 \
                 cu_seqlens can address",
                k % per_rank.max(1),
                k / per_rank.max(1)
            )));
        }
        tokens += total;
        seqs += mb.len();
        token_offsets.push(tokens);
        seq_offsets.push(seqs);
    }
    set_len(&mut out.input_ids, tokens);
    set_len(&mut out.position_ids, tokens);
    set_len(&mut out.loss_mask, tokens);
    set_len(&mut out.old_logprobs, tokens);
    set_len(&mut out.advantages, tokens);
    set_len(&mut out.cu_seqlens, seqs + flat.len());
    set_len(&mut out.seq_indices, seqs);
    out.token_offsets = token_offsets;
    out.seq_offsets = seq_offsets;
    out.n_ranks = n_ranks;
    out.per_rank = per_rank;
    let tok_lens = || out.token_offsets.windows(2).map(|w| w[1] - w[0]);
    let seq_lens = || out.seq_offsets.windows(2).map(|w| w[1] - w[0]);
    let slots: Vec<Slots<'_>> = split_chunks(&mut out.input_ids, tok_lens())
        .into_iter()
        .zip(split_chunks(&mut out.position_ids, tok_lens()))
        .zip(split_chunks(&mut out.loss_mask, tok_lens()))
        .zip(split_chunks(&mut out.old_logprobs, tok_lens()))
        .zip(split_chunks(&mut out.advantages, tok_lens()))
        .zip(split_chunks(&mut out.cu_seqlens, seq_lens().map(|s| s + 1)))
        .zip(split_chunks(&mut out.seq_indices, seq_lens()))
        .map(|((((((ids, pos), mask), lp), adv), cu), si)| Slots {
            input_ids: ids,
            position_ids: pos,
            loss_mask: mask,
            old_logprobs: lp,
            advantages: adv,
            cu_seqlens: cu,
            seq_indices: si,
        })
        .collect();
    slots
        .into_par_iter()
        .zip(flat.par_iter())
        .for_each(|(slot, seqs)| fill(input, seqs, slot));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Owned test data; `view()` borrows it as a [`PackInput`].
    struct Data {
        prompts: Vec<Vec<i64>>,
        completions: Vec<Vec<i64>>,
        logprobs: Vec<Vec<f32>>,
        advantages: Vec<f64>,
    }

    impl Data {
        fn view(&self) -> PackInput<'_> {
            PackInput {
                prompt_ids: self.prompts.iter().map(Vec::as_slice).collect(),
                completion_ids: self.completions.iter().map(Vec::as_slice).collect(),
                completion_logprobs: self.logprobs.iter().map(Vec::as_slice).collect(),
                advantages: &self.advantages,
            }
        }
    }

    fn input(prompts: &[Vec<i64>], completions: &[Vec<i64>]) -> Data {
        Data {
            prompts: prompts.to_vec(),
            completions: completions.to_vec(),
            logprobs: completions
                .iter()
                .map(|c| c.iter().map(|t| -(*t as f32) / 10.0).collect())
                .collect(),
            advantages: (0..prompts.len()).map(|i| i as f64 + 0.5).collect(),
        }
    }

    #[test]
    fn packs_two_sequences() {
        let inp = input(&[vec![1, 2], vec![3]], &[vec![4], vec![5, 6]]);
        let packed = pack_microbatches(&inp.view(), 10, 1).unwrap();
        let out = packed.ranks();
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
        assert!(pack_microbatches(&inp.view(), 0, 1).is_err());
        assert!(pack_microbatches(&inp.view(), 1, 0).is_err());
        inp.logprobs = vec![vec![0.0f32]];
        let err = pack_microbatches(&inp.view(), 8, 1).unwrap_err();
        assert!(err.to_string().contains("completion_logprobs[0]"));
        let mut inp = input(&[vec![1]], &[vec![2]]);
        inp.advantages = vec![f64::NAN];
        assert_eq!(
            pack_microbatches(&inp.view(), 8, 1).unwrap_err(),
            CoreError::NonFinite {
                what: "advantages",
                index: 0
            }
        );
        let mut inp = input(&[vec![1]], &[vec![2]]);
        inp.advantages = vec![];
        assert!(matches!(
            pack_microbatches(&inp.view(), 8, 1),
            Err(CoreError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn reused_buffers_give_the_same_result() {
        let inp = input(
            &[vec![1], vec![2, 3], vec![4], vec![5, 6, 7]],
            &[vec![8, 9], vec![10], vec![11, 12, 13], vec![14]],
        );
        let fresh = pack_microbatches(&inp.view(), 4, 2).unwrap();
        let mut stale = Packed {
            input_ids: vec![-7; 100],
            position_ids: vec![-7; 3],
            loss_mask: vec![9.0; 100],
            old_logprobs: vec![9.0; 15],
            advantages: vec![9.0; 1],
            cu_seqlens: vec![-7; 50],
            seq_indices: vec![-7; 2],
            ..Packed::default()
        };
        pack_microbatches_into(&inp.view(), 4, 2, &mut stale).unwrap();
        assert_eq!(stale, fresh);
    }

    #[test]
    fn lowest_bad_index_is_reported() {
        let n = 3000;
        let mut inp = input(&vec![vec![1]; n], &vec![vec![2, 3]; n]);
        inp.logprobs[2500][1] = f32::INFINITY;
        inp.logprobs[700][0] = f32::NAN;
        inp.advantages[1200] = f64::NAN;
        let err = pack_microbatches(&inp.view(), 64, 1).unwrap_err();
        assert_eq!(err.to_string(), "completion_logprobs[700][0] is not finite");
    }

    #[test]
    fn flat_buffers_match_views() {
        let inp = input(
            &[vec![1], vec![2, 3], vec![4], vec![5, 6, 7]],
            &[vec![8, 9], vec![10], vec![11, 12, 13], vec![14]],
        );
        let packed = pack_microbatches(&inp.view(), 4, 2).unwrap();
        assert_eq!(packed.per_rank, 2);
        assert_eq!(*packed.token_offsets.last().unwrap(), 14);
        assert_eq!(packed.cu_seqlens.len(), 4 + 4);
        let mut tokens: Vec<i64> = packed
            .ranks()
            .iter()
            .flatten()
            .flat_map(|mb| mb.input_ids.iter().copied())
            .collect();
        tokens.sort_unstable();
        assert_eq!(tokens, (1..=14).collect::<Vec<i64>>());
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
        assert_eq!(r.rows(), vec![&[5][..]]);
    }
}
