"""grpo_plug.core.pack_microbatches: every token exactly once, budgets, equal counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grpo_plug import core


def make_inputs(
    lengths: list[tuple[int, int]], as_numpy: bool
) -> tuple[list[object], list[object], list[object], list[float]]:
    prompts: list[object] = []
    completions: list[object] = []
    logprobs: list[object] = []
    nxt = 0
    for p, c in lengths:
        prompt = list(range(nxt, nxt + p))
        nxt += p
        comp = list(range(nxt, nxt + c))
        nxt += c
        lp = [-(t % 97) / 10.0 for t in comp]
        if as_numpy:
            prompts.append(np.array(prompt, dtype=np.int64))
            completions.append(np.array(comp, dtype=np.int32))
            logprobs.append(np.array(lp, dtype=np.float32))
        else:
            prompts.append(prompt)
            completions.append(comp)
            logprobs.append(lp)
    advantages = [float(i) - 0.5 for i in range(len(lengths))]
    return prompts, completions, logprobs, advantages


def check(
    out: list[list[core.MicroBatch]],
    lengths: list[tuple[int, int]],
    max_tokens: int,
    n_ranks: int,
) -> None:
    prompts, completions, logprobs, advantages = make_inputs(lengths, as_numpy=False)
    assert len(out) == n_ranks
    assert len({len(rank) for rank in out}) == 1
    seen: list[int] = []
    for rank in out:
        for mb in rank:
            assert mb.num_sequences >= 1
            assert mb.num_tokens <= max_tokens or mb.num_sequences == 1
            for name, dtype in [
                ("input_ids", np.int64),
                ("position_ids", np.int64),
                ("loss_mask", np.float32),
                ("old_logprobs", np.float32),
                ("advantages", np.float32),
                ("cu_seqlens", np.int32),
                ("seq_indices", np.int64),
            ]:
                arr = getattr(mb, name)
                assert arr.dtype == dtype and arr.ndim == 1 and arr.flags.c_contiguous
            assert mb.cu_seqlens[0] == 0 and mb.cu_seqlens[-1] == mb.num_tokens
            for k, i in enumerate(mb.seq_indices.tolist()):
                seen.append(i)
                a, b = int(mb.cu_seqlens[k]), int(mb.cu_seqlens[k + 1])
                p = len(prompts[i])  # type: ignore[arg-type]
                assert mb.input_ids[a : a + p].tolist() == prompts[i]
                assert mb.input_ids[a + p : b].tolist() == completions[i]
                assert mb.position_ids[a:b].tolist() == list(range(b - a))
                assert mb.loss_mask[a : a + p].tolist() == [0.0] * p
                assert mb.loss_mask[a + p : b].tolist() == [1.0] * (b - a - p)
                np.testing.assert_array_equal(
                    mb.old_logprobs[a + p : b], np.array(logprobs[i], dtype=np.float32)
                )
                assert not mb.old_logprobs[a : a + p].any()
                assert mb.advantages[a + p : b].tolist() == [np.float32(advantages[i])] * (
                    b - a - p
                )
                assert not mb.advantages[a : a + p].any()
    assert sorted(seen) == list(range(len(lengths)))


@given(
    lengths=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=80),
    max_tokens=st.integers(1, 128),
    n_ranks=st.integers(1, 4),
    as_numpy=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_packing_properties(
    lengths: list[tuple[int, int]], max_tokens: int, n_ranks: int, as_numpy: bool
) -> None:
    inputs = make_inputs(lengths, as_numpy)
    try:
        out = core.pack_microbatches(*inputs, max_tokens=max_tokens, n_ranks=n_ranks)
    except ValueError as e:
        assert "same number of micro-batches" in str(e)
        return
    check(out, lengths, max_tokens, n_ranks)
    again = core.pack_microbatches(*inputs, max_tokens=max_tokens, n_ranks=n_ranks)
    for r1, r2 in zip(out, again, strict=True):
        for m1, m2 in zip(r1, r2, strict=True):
            assert np.array_equal(m1.input_ids, m2.input_ids)
            assert np.array_equal(m1.seq_indices, m2.seq_indices)


def test_example_layout() -> None:
    out = core.pack_microbatches(
        [[1, 2], [3]], [[4], [5, 6]], [[-0.5], [-0.25, -0.125]], [2.0, -1.0], max_tokens=8
    )
    (mb,) = out[0]
    assert mb.input_ids.tolist() == [1, 2, 4, 3, 5, 6]
    assert mb.position_ids.tolist() == [0, 1, 2, 0, 1, 2]
    assert mb.loss_mask.tolist() == [0, 0, 1, 0, 1, 1]
    assert mb.old_logprobs.tolist() == [0, 0, -0.5, 0, -0.25, -0.125]
    assert mb.advantages.tolist() == [0, 0, 2.0, 0, -1.0, -1.0]
    assert mb.cu_seqlens.tolist() == [0, 3, 6]
    assert mb.seq_indices.tolist() == [0, 1]
    mb.input_ids[0] = 7  # writable: torch.from_numpy works without a copy


def test_array_inputs_match_lists_and_are_not_aliased() -> None:
    rng = np.random.default_rng(3)
    n = 24
    prompts = [rng.integers(0, 1000, size=int(rng.integers(1, 9))) for _ in range(n)]
    comps = [rng.integers(0, 1000, size=int(rng.integers(0, 9))) for _ in range(n)]
    lps = [-rng.random(len(c)).astype(np.float32) for c in comps]
    adv = rng.standard_normal(n)

    def unaligned(a: np.ndarray) -> np.ndarray:
        raw = np.frombuffer(b"\0" + a.tobytes(), dtype=a.dtype, offset=1)
        assert raw.ctypes.data % a.dtype.itemsize != 0
        return raw

    want = core.pack_microbatches(
        [p.tolist() for p in prompts],
        [c.tolist() for c in comps],
        [x.tolist() for x in lps],
        adv,
        max_tokens=20,
        n_ranks=2,
    )
    variants = {
        "contiguous": (prompts, comps, lps),
        "strided": (
            [np.repeat(p, 2)[::2] for p in prompts],
            [np.repeat(c, 2)[::2] for c in comps],
            [np.repeat(x, 2)[::2] for x in lps],
        ),
        "unaligned": (
            [unaligned(p) for p in prompts],
            [unaligned(c) for c in comps],
            [unaligned(x) for x in lps],
        ),
        "other dtypes": (
            [p.astype(np.int32) for p in prompts],
            [c.astype(np.uint16) for c in comps],
            [x.astype(np.float64) for x in lps],
        ),
    }
    for name, (pr, co, lp) in variants.items():
        before = [c.copy() for c in co]
        got = core.pack_microbatches(pr, co, lp, adv, max_tokens=20, n_ranks=2)
        for g_rank, w_rank in zip(got, want, strict=True):
            for g, w in zip(g_rank, w_rank, strict=True):
                for field in ("input_ids", "position_ids", "loss_mask", "old_logprobs"):
                    assert np.array_equal(getattr(g, field), getattr(w, field)), (name, field)
                assert np.array_equal(g.cu_seqlens, w.cu_seqlens), name
                g.input_ids[:] = -1  # the output never aliases an input array
        assert all(np.array_equal(b, c) for b, c in zip(before, co, strict=True)), name


def test_micro_batches_are_disjoint_views() -> None:
    out = core.pack_microbatches(
        [[1, 2]] * 6, [[3, 4, 5]] * 6, [[-0.5] * 3] * 6, [1.0] * 6, max_tokens=10, n_ranks=3
    )
    mbs = [mb for rank in out for mb in rank]
    assert len(mbs) == 3
    for mb in mbs:
        assert mb.input_ids.flags.c_contiguous and mb.input_ids.flags.writeable
        assert torch.from_numpy(mb.input_ids).tolist() == [1, 2, 3, 4, 5] * 2
    mbs[0].input_ids[:] = 0
    mbs[0].cu_seqlens[:] = 0
    assert mbs[1].input_ids.tolist() == [1, 2, 3, 4, 5] * 2
    assert mbs[1].cu_seqlens.tolist() == [0, 5, 10]


def test_oversize_sequence_and_ranks() -> None:
    out = core.pack_microbatches(
        [[0] * 10, [1], [2], [3]],
        [[5], [], [], []],
        [[0.0], [], [], []],
        [0.0] * 4,
        max_tokens=4,
        n_ranks=2,
    )
    assert [len(r) for r in out] == [1, 1]
    assert out[0][0].seq_indices.tolist() == [0]  # 11 tokens > 4: alone
    assert out[1][0].seq_indices.tolist() == [1, 2, 3]
    assert core.pack_microbatches([], [], [], [], max_tokens=4, n_ranks=3) == [[], [], []]


def test_errors() -> None:
    ok = ([[1]], [[2, 3]], [[0.0, 0.0]], [1.0])
    with pytest.raises(ValueError, match="max_tokens"):
        core.pack_microbatches(*ok, max_tokens=0)
    with pytest.raises(ValueError, match="n_ranks"):
        core.pack_microbatches(*ok, max_tokens=8, n_ranks=0)
    with pytest.raises(ValueError, match="same number of micro-batches"):
        core.pack_microbatches(*ok, max_tokens=8, n_ranks=2)
    with pytest.raises(ValueError, match=r"completion_logprobs\[1\]"):
        core.pack_microbatches([[1], [1]], [[2], [2, 3]], [[0.0], [0.0]], [1.0, 1.0], max_tokens=8)
    with pytest.raises(ValueError, match="length"):
        core.pack_microbatches([[1]], [[2]], [[0.0]], [1.0, 2.0], max_tokens=8)
    with pytest.raises(ValueError, match=r"advantages\[0\]"):
        core.pack_microbatches([[1]], [[2]], [[0.0]], [float("nan")], max_tokens=8)
    with pytest.raises(TypeError, match=r"prompt_ids\[0\]"):
        core.pack_microbatches([["a"]], [[2]], [[0.0]], [1.0], max_tokens=8)
    with pytest.raises(TypeError, match=r"completion_ids\[0\]"):
        core.pack_microbatches([[1]], [np.zeros((2, 2))], [[0.0]], [1.0], max_tokens=8)
    with pytest.raises(TypeError, match=r"completion_ids\[0\]"):
        core.pack_microbatches([[1]], [np.array([1.5])], [[0.0]], [1.0], max_tokens=8)
    with pytest.raises(TypeError):
        core.pack_microbatches("abc", [[2]], [[0.0]], [1.0], max_tokens=8)  # type: ignore[arg-type]


def test_other_integer_dtypes_and_thread_independence() -> None:
    rng = np.random.default_rng(1)
    n = 600
    prompts = [rng.integers(0, 1000, size=rng.integers(1, 50)).astype(np.uint16) for _ in range(n)]
    comps = [rng.integers(0, 1000, size=rng.integers(1, 200)) for _ in range(n)]
    lps = [rng.normal(size=len(c)) for c in comps]  # float64 arrays
    adv = rng.normal(size=n)
    before = core.get_num_threads()
    try:
        core.set_num_threads(1)
        one = core.pack_microbatches(prompts, comps, lps, adv, max_tokens=1024, n_ranks=3)
        core.set_num_threads(2)
        two = core.pack_microbatches(prompts, comps, lps, adv, max_tokens=1024, n_ranks=3)
    finally:
        core.set_num_threads(before)
    for r1, r2 in zip(one, two, strict=True):
        assert len(r1) == len(r2)
        for m1, m2 in zip(r1, r2, strict=True):
            for name in ("input_ids", "old_logprobs", "advantages", "cu_seqlens", "seq_indices"):
                assert np.array_equal(getattr(m1, name), getattr(m2, name))
    total = sum(mb.num_tokens for rank in one for mb in rank)
    assert total == sum(len(p) + len(c) for p, c in zip(prompts, comps, strict=True))


def test_buffers_reused_between_calls_do_not_leak() -> None:
    big = core.pack_microbatches(
        [[1] * 50] * 40, [[2] * 50] * 40, [[0.5] * 50] * 40, [1.0] * 40, max_tokens=1000
    )
    assert sum(mb.num_tokens for mb in big[0]) == 4000
    small = core.pack_microbatches([[7]], [[8, 9]], [[-1.0, -2.0]], [3.0], max_tokens=10)
    (mb,) = small[0]
    assert mb.input_ids.tolist() == [7, 8, 9]
    assert mb.old_logprobs.tolist() == [0.0, -1.0, -2.0]


def test_output_memory_is_recycled_after_release() -> None:
    # 2,000 x 101 tokens: a size no other test uses, so the pool holds only ours.
    args = ([[1] * 51] * 2000, [[2] * 50] * 2000, [[-0.5] * 50] * 2000, [1.5] * 2000)
    first = core.pack_microbatches(*args, max_tokens=4096, n_ranks=2)
    want = [[(mb.input_ids.tolist(), mb.advantages.tolist()) for mb in r] for r in first]

    def starts(out: list[list[core.MicroBatch]]) -> tuple[set[int], set[int]]:
        mb = out[0][0]  # micro-batch 0 starts each field's buffer
        ints = {a.ctypes.data for a in (mb.input_ids, mb.position_ids)}
        floats = {a.ctypes.data for a in (mb.loss_mask, mb.old_logprobs, mb.advantages)}
        return ints, floats

    before = starts(first)
    first[0][0].advantages[:] = 99.0  # stale values must not leak into the next call
    del first
    second = core.pack_microbatches(*args, max_tokens=4096, n_ranks=2)
    assert starts(second) == before
    got = [[(mb.input_ids.tolist(), mb.advantages.tolist()) for mb in r] for r in second]
    assert got == want


@given(
    lengths=st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), min_size=1, max_size=60),
    max_tokens=st.integers(8, 256),
    n_ranks=st.integers(1, 3),
    max_seqs=st.integers(1, 5),
)
@settings(max_examples=100, deadline=None)
def test_max_seqs_caps_every_micro_batch_and_keeps_every_token(
    lengths: list[tuple[int, int]], max_tokens: int, n_ranks: int, max_seqs: int
) -> None:
    inputs = make_inputs(lengths, as_numpy=False)
    try:
        out = core.pack_microbatches(
            *inputs, max_tokens=max_tokens, n_ranks=n_ranks, max_seqs=max_seqs
        )
    except ValueError as e:  # too few sequences for the ranks, with or without the cap
        assert "micro-batches" in str(e)
        return
    check(out, lengths, max_tokens, n_ranks)  # every token once, equal counts per rank
    assert max(mb.num_sequences for rank in out for mb in rank) <= max_seqs
    uncapped = core.pack_microbatches(*inputs, max_tokens=max_tokens, n_ranks=n_ranks)
    if all(mb.num_sequences <= max_seqs for rank in uncapped for mb in rank):
        assert [len(r) for r in out] == [len(r) for r in uncapped]  # nothing to cut
