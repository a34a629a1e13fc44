"""The shared_prompt layout: each group's prompt once in the packed row, and micro-batches
that keep a group's samples together."""

from __future__ import annotations

import numpy as np
import pytest

from grpo_plug import core
from grpo_plug.learner.shared import pack_groups, plan_groups, shared_row


def micro_batch(prompts: list[list[int]], comps: list[list[int]]) -> core.MicroBatch:
    lps = [[-1.0] * len(c) for c in comps]
    adv = np.arange(len(prompts), dtype=np.float64)
    (mbs,) = core.pack_microbatches(prompts, comps, lps, adv, max_tokens=10_000)
    (mb,) = mbs
    return mb


def test_the_row_holds_each_prompt_once_and_keeps_the_loss_order() -> None:
    a, b = [5, 6, 7], [8, 9]
    mb = micro_batch([a, b, a], [[10, 11], [12], [13, 14, 15]])
    row = shared_row(mb)
    assert row.input_ids.tolist() == [5, 6, 7, 10, 11, 13, 14, 15, 8, 9, 12]
    assert row.position_ids.tolist() == [0, 1, 2, 3, 4, 3, 4, 5, 0, 1, 2]
    assert row.groups == ((0, 3, ((3, 2), (5, 3))), (8, 2, ((10, 1),)))
    # the loss tokens in the micro-batch's order: 10 11 | 12 | 13 14 15, each predicted
    # by the token before it in its own sequence (the prompt's last for the first)
    assert row.keep.tolist() == [2, 3, 9, 2, 5, 6]
    targets = mb.input_ids[mb.loss_mask > 0]
    assert targets.tolist() == [10, 11, 12, 13, 14, 15]


def test_a_sequence_without_completion_adds_only_its_prompt() -> None:
    mb = micro_batch([[5, 6], [5, 6]], [[], [7]])
    row = shared_row(mb)
    assert row.input_ids.tolist() == [5, 6, 7]
    assert row.groups == ((0, 2, ((2, 1),)),)
    assert row.keep.tolist() == [1]


def test_an_empty_prompt_is_refused() -> None:
    mb = micro_batch([[], [4]], [[7, 8], [9]])
    with pytest.raises(ValueError, match="position 0 has no prompt"):
        shared_row(mb)


def groups_of(n_groups: int, group: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    rng = np.random.default_rng(seed)
    prompts, comps = [], []
    for g in range(n_groups):
        prompt = [g + 1] * int(rng.integers(5, 30))
        for _ in range(group):
            prompts.append(prompt)
            comps.append(rng.integers(100, 200, size=int(rng.integers(1, 60))).tolist())
    return prompts, comps


def weight(seqs: list[int], prompts: list[list[int]], comps: list[list[int]]) -> int:
    """Tokens of a micro-batch with each prompt once."""
    distinct = {tuple(prompts[i]) for i in seqs}
    return sum(map(len, distinct)) + sum(len(comps[i]) for i in seqs)


@pytest.mark.parametrize("n_ranks", [1, 2, 3])
def test_groups_stay_whole_within_the_budget_and_ranks_get_equal_counts(n_ranks: int) -> None:
    prompts, comps = groups_of(9, 4)
    plan = plan_groups(prompts, [len(c) for c in comps], 200, n_ranks, None)
    assert plan is not None and len(plan) == n_ranks
    assert len({len(r) for r in plan}) == 1  # every rank runs as many micro-batches
    flat = [seqs for rank in plan for seqs in rank]
    assert sorted(i for seqs in flat for i in seqs) == list(range(len(prompts)))
    for seqs in flat:
        assert seqs and weight(seqs, prompts, comps) <= 200
    home = {}
    for b, seqs in enumerate(flat):
        for i in seqs:
            home.setdefault(tuple(prompts[i]), set()).add(b)
    split = sum(len(bins) > 1 for bins in home.values())
    # one rank: no group is split; more: only to give every rank as many micro-batches
    assert split == 0 if n_ranks == 1 else split <= n_ranks - 1


def test_a_group_over_the_budget_or_the_sequence_cap_is_cut_into_runs() -> None:
    prompts = [[1] * 10] * 6  # one group of 6 samples of 20 tokens: 10 + 6 x 20 = 130 tokens
    plan = plan_groups(prompts, [20] * 6, 60, 1, None)
    assert plan is not None
    assert [len(seqs) for seqs in plan[0]] == [2, 2, 2]  # 10 + 2 x 20 = 50 each
    plan = plan_groups(prompts, [20] * 6, 1000, 1, 4)
    assert plan is not None and sorted(len(s) for s in plan[0]) == [2, 4]


def test_too_few_sequences_for_the_ranks_give_no_plan() -> None:
    assert plan_groups([[1, 2]], [3], 100, 2, None) is None


def test_packed_groups_hold_the_original_sequences() -> None:
    prompts, comps = groups_of(5, 3, seed=1)
    lps = [[-0.5] * len(c) for c in comps]
    adv = [float(i) for i in range(len(prompts))]
    ranks = pack_groups(prompts, comps, lps, adv, max_tokens=150, n_ranks=2, max_seqs=None)
    assert ranks is not None and len(ranks) == 2
    seen = []
    for mb in (mb for rank in ranks for mb in rank):
        cu = mb.cu_seqlens
        for k, i in enumerate(mb.seq_indices.tolist()):
            toks = mb.input_ids[cu[k] : cu[k + 1]].tolist()
            assert toks == prompts[i] + comps[i]
            adv_k = mb.advantages[cu[k] : cu[k + 1]][mb.loss_mask[cu[k] : cu[k + 1]] > 0]
            assert np.all(adv_k == adv[i])
            seen.append(i)
    assert sorted(seen) == list(range(len(prompts)))
