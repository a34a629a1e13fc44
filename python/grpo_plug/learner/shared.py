"""A packed micro-batch with each group's prompt once: the ``shared_prompt`` layout.

The samples of a GRPO group share their prompt, and under causal attention a prompt's
hidden states do not depend on what follows it. So the row holds each distinct prompt
once, followed by its samples' completions::

    [ P1 | C1a | C1b | C1c | P2 | C2a | ... ]      positions: P 0..p-1, each C p..p+c-1

and the attention kernel lets a completion see its own prompt and itself only
(:func:`grpo_plug.learner.attention.shared_prompt_kwargs`). The model runs ``p`` prompt
tokens per group instead of ``n * p``; log-probs, entropies and gradients are those of
running every sequence whole (tested against the padded path).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from grpo_plug.core import MicroBatch, pack_microbatches

# One group of the row: (prompt start, prompt length, ((completion start, length), ...)).
Group = tuple[int, int, tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class SharedRow:
    """One micro-batch laid out with each prompt once."""

    input_ids: np.ndarray  # [R] the row's tokens
    position_ids: np.ndarray  # [R]
    keep: np.ndarray  # [N] the row index whose hidden state predicts each completion token
    groups: tuple[Group, ...]  # the row's segments, in row order


def split_prompts(mb: MicroBatch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each sequence of a packed micro-batch as (prompt ids, completion ids): the prompt
    is everything before its first loss token."""
    cu = mb.cu_seqlens.astype(np.int64)
    out = []
    for s in range(len(cu) - 1):
        toks = mb.input_ids[cu[s] : cu[s + 1]]
        mask = mb.loss_mask[cu[s] : cu[s + 1]]
        plen = int(np.argmax(mask > 0)) if mask.any() else len(toks)
        out.append((toks[:plen], toks[plen:]))
    return out


def shared_row(mb: MicroBatch) -> SharedRow:
    """``mb`` with each distinct prompt once.

    Groups appear in the order of their first sequence; a sequence without loss tokens
    adds nothing. ``keep`` follows the micro-batch's own order of loss tokens, so the
    log-probs come back where the loss expects them.
    """
    seqs = split_prompts(mb)
    members: dict[bytes, list[int]] = {}
    for s, (prompt, _) in enumerate(seqs):
        members.setdefault(prompt.tobytes(), []).append(s)
    ids: list[np.ndarray] = []
    pos: list[np.ndarray] = []
    groups: list[Group] = []
    # where each sequence's tokens sit in the row: prompt start, completion start
    starts = np.zeros((len(seqs), 2), dtype=np.int64)
    cursor = 0
    for group in members.values():
        prompt = seqs[group[0]][0]
        p = len(prompt)
        if p == 0 and any(len(seqs[s][1]) for s in group):
            raise ValueError("a completion token at position 0 has no prompt to be predicted from")
        ids.append(prompt)
        pos.append(np.arange(p, dtype=np.int64))
        p_start, cursor = cursor, cursor + p
        comps = []
        for s in group:
            comp = seqs[s][1]
            starts[s] = (p_start, cursor)
            if len(comp):
                ids.append(comp)
                pos.append(np.arange(p, p + len(comp), dtype=np.int64))
                comps.append((cursor, len(comp)))
                cursor += len(comp)
        groups.append((p_start, p, tuple(comps)))
    return SharedRow(
        input_ids=np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64),
        position_ids=np.concatenate(pos) if pos else np.zeros(0, dtype=np.int64),
        keep=_predictors(mb, seqs, starts),
        groups=tuple(groups),
    )


def _predictors(
    mb: MicroBatch, seqs: list[tuple[np.ndarray, np.ndarray]], starts: np.ndarray
) -> np.ndarray:
    """The row index predicting each loss token of ``mb``, in ``mb``'s order: token ``j``
    of a sequence is predicted at ``j - 1``, in the prompt for the first completion token."""
    cu = mb.cu_seqlens.astype(np.int64)
    sel = np.flatnonzero(mb.loss_mask > 0)
    seq = np.searchsorted(cu, sel, side="right") - 1
    j = sel - cu[seq]  # position inside its sequence
    plen = np.array([len(p) for p, _ in seqs], dtype=np.int64)[seq]
    before = j - 1
    in_prompt = before < plen
    keep: np.ndarray = np.where(in_prompt, starts[seq, 0] + before, starts[seq, 1] + before - plen)
    return keep


# ------------------------------------------------------------ micro-batches of groups

Unit = list[int]  # positions (in the packed input) of sequences that share a prompt


def plan_groups(
    prompts: Sequence[Sequence[int]],
    lengths: Sequence[int],
    max_tokens: int,
    n_ranks: int,
    max_seqs: int | None,
) -> list[list[Unit]] | None:
    """Bins of whole groups, ``[rank][micro_batch]`` as lists of sequence positions, or
    None when the ranks cannot get equal counts of non-empty bins.

    A bin's weight is its tokens with each prompt once (``lengths``: completion tokens).
    First-fit-decreasing by weight, within ``max_tokens`` and ``max_seqs`` sequences; a
    group over either is cut into runs of its samples (each run repeats the prompt).
    Bins are then split, heaviest first, until every rank can get as many, and dealt
    heaviest first to the rank with the fewest tokens.
    """
    cap = max_seqs or len(prompts) or 1
    by_prompt: dict[tuple[int, ...], Unit] = {}
    for i, p in enumerate(prompts):
        by_prompt.setdefault(tuple(p), []).append(i)

    def weight(unit: Unit) -> int:  # a unit is never empty: its prompt counts once
        return len(prompts[unit[0]]) + sum(lengths[i] for i in unit)

    units: list[Unit] = []
    for members in by_prompt.values():
        run: Unit = []
        for i in members:
            if run and (weight([*run, i]) > max_tokens or len(run) == cap):
                units.append(run)
                run = []
            run.append(i)
        units.append(run)
    bins: list[list[Unit]] = []
    loads: list[int] = []
    for unit in sorted(units, key=lambda u: (-weight(u), u[0])):
        w, n = weight(unit), len(unit)
        fit = next(
            (
                b
                for b, load in enumerate(loads)
                if load + w <= max_tokens and sum(map(len, bins[b])) + n <= cap
            ),
            None,
        )
        if fit is None:
            bins.append([])
            loads.append(0)
            fit = len(bins) - 1
        bins[fit].append(unit)
        loads[fit] += w
    return _deal(bins, n_ranks, weight)


def _deal(
    bins: list[list[Unit]], n_ranks: int, weight: Callable[[Unit], int]
) -> list[list[Unit]] | None:
    """``bins`` (each a list of units) split until the ranks can get equal counts, then
    dealt heaviest first; each dealt bin flattened to its sequence positions."""

    def load(b: list[Unit]) -> int:
        return sum(weight(u) for u in b)

    per_rank = max(1, -(-len(bins) // n_ranks))
    while len(bins) < n_ranks * per_rank:
        # a bin of several groups first; a group's samples only when no bin has two
        several = [b for b in bins if len(b) >= 2]
        if several:
            heavy = max(several, key=load)
            half = len(heavy) // 2
            halves = [heavy[:half], heavy[half:]]
        else:
            splittable = [b for b in bins if len(b[0]) >= 2]
            if not splittable:
                return None
            heavy = max(splittable, key=load)
            (unit,) = heavy
            halves = [[unit[: len(unit) // 2]], [unit[len(unit) // 2 :]]]
        bins.remove(heavy)
        bins += halves
    ranks: list[list[Unit]] = [[] for _ in range(n_ranks)]
    tokens = [0] * n_ranks
    for b in sorted(bins, key=lambda b: -load(b)):
        r = min((r for r in range(n_ranks) if len(ranks[r]) < per_rank), key=lambda r: tokens[r])
        ranks[r].append(sorted(i for u in b for i in u))
        tokens[r] += load(b)
    return ranks


def pack_groups(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    logprobs: Sequence[Sequence[float]],
    advantages: Sequence[float],
    *,
    max_tokens: int,
    n_ranks: int,
    max_seqs: int | None,
) -> list[list[MicroBatch]] | None:
    """Like :func:`grpo_plug.core.pack_microbatches`, with every group's samples in one
    micro-batch where the budget allows (:func:`plan_groups`), so its prompt runs once;
    None when the ranks cannot get equal counts this way."""
    plan = plan_groups(prompts, [len(c) for c in completions], max_tokens, n_ranks, max_seqs)
    if plan is None:
        return None
    out: list[list[MicroBatch]] = []
    for rank in plan:
        out.append([])
        for seqs in rank:
            total = sum(len(prompts[i]) + len(completions[i]) for i in seqs)
            ((mb,),) = pack_microbatches(
                [prompts[i] for i in seqs],
                [completions[i] for i in seqs],
                [logprobs[i] for i in seqs],
                np.asarray([advantages[i] for i in seqs], dtype=np.float64),
                max_tokens=max(total, 1),
            )
            out[-1].append(
                replace(mb, seq_indices=np.asarray(seqs, dtype=np.int64)[mb.seq_indices])
            )
    return out
