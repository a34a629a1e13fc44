"""The packed and prompt-sharing learner paths against the padded one: same log-probs,
same gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grpo_plug import core
from grpo_plug.learner import (
    attention,
    completion_logprobs,
    packed_logprobs,
    shared_prompt_logprobs,
)
from tests.helpers import TinyModels


@pytest.mark.parametrize(
    ("dtype", "checkpointing"),
    [(torch.float32, False), (torch.float32, True), (torch.bfloat16, False)],
)
def test_shared_prompt_path_matches_plain_path(
    tiny_models: TinyModels, dtype: torch.dtype, checkpointing: bool
) -> None:
    """Each group's prompt once in the packed row against every sequence whole, padded:
    same log-probs, entropies and gradients, with the groups' samples interleaved, also
    when checkpointing recomputes the forward."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models(seed=1), dtype=dtype)
    attention.use(model, "shared_prompt")
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    rng = np.random.default_rng(0)
    group_prompts = [rng.integers(3, 14, size=int(rng.integers(5, 12))).tolist() for _ in range(3)]
    prompts, comps, lps = [], [], []
    for i in range(12):  # 3 groups of 4 samples, interleaved, prompts of different lengths
        c = rng.integers(3, 14, size=int(rng.integers(1, 7))).tolist()
        prompts.append(group_prompts[i % 3])
        comps.append(c)
        lps.append([-1.0] * len(c))
    adv = rng.normal(size=len(prompts)).astype(np.float32)
    (mbs,) = core.pack_microbatches(prompts, comps, lps, adv, max_tokens=10_000)
    (mb,) = mbs
    results = []
    for fn, kwargs in ((completion_logprobs, {"max_seqs": 5}), (shared_prompt_logprobs, {})):
        model.zero_grad()
        logp, ent = fn(model, mb, temperature=0.7, **kwargs)
        (logp * torch.arange(len(logp))).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((logp.detach(), ent, grads))
    (a_lp, a_ent, a_g), (b_lp, b_ent, b_g) = results
    assert a_lp.shape == (int(mb.loss_mask.sum()),)
    # fp32: round-off of summing in another order; bf16: one rounding of ~4e-3 per op
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 0, "atol": 0.1}
    torch.testing.assert_close(a_lp, b_lp, **tol)
    torch.testing.assert_close(a_ent, b_ent, **tol)
    scale = float(a_g.abs().max())
    gtol = (1e-4, 1e-6 * scale) if dtype == torch.float32 else (0, 0.05 * scale)
    torch.testing.assert_close(a_g, b_g, rtol=gtol[0], atol=gtol[1])


def test_packed_path_matches_padded_path(tiny_models: TinyModels) -> None:
    """[1, T] with no padding (documents told apart by position ids) against the
    right-padded [S, L] fallback: same log-probs, entropies and gradients."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models(seed=2))
    model.train()
    rng = np.random.default_rng(1)
    prompts, comps, lps = [], [], []
    for _ in range(7):  # lengths differ, so padding is real in the fallback
        prompts.append(rng.integers(3, 14, size=int(rng.integers(2, 12))).tolist())
        comps.append(rng.integers(3, 14, size=int(rng.integers(1, 9))).tolist())
        lps.append([-1.0] * len(comps[-1]))
    adv = rng.normal(size=len(prompts)).astype(np.float32)
    (mbs,) = core.pack_microbatches(prompts, comps, lps, adv, max_tokens=10_000)
    (mb,) = mbs
    results = []
    for fn, kwargs in ((completion_logprobs, {"max_seqs": 3}), (packed_logprobs, {})):
        model.zero_grad()
        logp, ent = fn(model, mb, temperature=0.7, **kwargs)
        (logp * torch.arange(len(logp))).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((logp.detach(), ent, grads))
    (a_lp, a_ent, a_g), (b_lp, b_ent, b_g) = results
    assert a_lp.shape == (int(mb.loss_mask.sum()),)
    torch.testing.assert_close(a_lp, b_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a_ent, b_ent, rtol=1e-5, atol=1e-5)
    # The two paths sum in different orders, so fp32 round-off scales with the largest
    # gradient, not each element's (on an AMD EPYC an element of 8e-3 moved by 3e-6).
    torch.testing.assert_close(a_g, b_g, rtol=1e-4, atol=1e-6 * float(a_g.abs().max()))
    # The boundaries come from the position ids: one long document gives other values.
    mb.position_ids[:] = np.arange(len(mb.position_ids))
    wrong, _ = packed_logprobs(model, mb, temperature=0.7)
    assert not torch.allclose(wrong.detach(), b_lp, atol=1e-3)


def test_too_few_sequences_for_the_ranks_get_zero_weight_filler() -> None:
    """3 sequences, 4 ranks: every rank still gets a micro-batch (same forwards and
    backwards everywhere), and the counts that normalise the loss leave filler out."""
    from grpo_plug.learner.actor import LearnerBatch, pack_for_ranks
    from grpo_plug.learner.step import GlobalCounts, count_real

    comps = [[4, 5], [6], [7, 8, 9]]
    batch = LearnerBatch(
        prompts=[[1, 2, 3]] * 3,
        completions=comps,
        logprobs=[[-1.0] * len(c) for c in comps],
        advantages=np.ones(3, dtype=np.float32),
        kept=np.arange(3),
    )
    per_rank, n_real = pack_for_ranks(batch, np.arange(3), 1000, 4)
    assert n_real == 3 and len(per_rank) == 4
    assert {len(r) for r in per_rank} == {1}
    everything = [mb for r in per_rank for mb in r]
    assert sum(mb.num_sequences for mb in everything) > 3  # filler was added
    assert count_real(everything, n_real) == GlobalCounts(tokens=6, seqs=3)


def test_rank_from_torchrun_variables() -> None:
    import pytest

    from grpo_plug.learner import dist

    info = dist.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, cuda=False)
    assert (info.rank, info.world_size, info.is_main, info.backend) == (1, 2, False, "gloo")
    assert dist.from_env({}, cuda=False).is_main
    with pytest.raises(ValueError, match="outside WORLD_SIZE"):
        dist.from_env({"RANK": "2", "WORLD_SIZE": "2"}, cuda=False)


def test_fused_recompute_gives_the_separate_passes_gradients(tiny_models: TinyModels) -> None:
    """One minibatch with recompute_logprob: pi_old from the training forward itself
    (detached) gives the gradients of a no-grad recompute pass followed by training,
    and reports the same sampler mismatch."""

    from transformers import AutoModelForCausalLM

    from grpo_plug.config import ActorConfig
    from grpo_plug.learner.step import recompute_old_logprobs, train_minibatch

    model = AutoModelForCausalLM.from_pretrained(tiny_models(seed=3))
    model.train()
    rng = np.random.default_rng(4)
    prompts = [rng.integers(3, 14, size=int(rng.integers(2, 9))).tolist() for _ in range(6)]
    comps = [rng.integers(3, 14, size=int(rng.integers(1, 7))).tolist() for _ in range(6)]
    sampler = [(-2.0 + 0.1 * rng.normal(size=len(c))).tolist() for c in comps]
    adv = rng.normal(size=6).astype(np.float32)
    cfg = ActorConfig(recompute_logprob=True, attention="packed")
    grads, diffs = [], []
    for fused in (False, True):
        (mbs,) = core.pack_microbatches(prompts, comps, sampler, adv, max_tokens=10_000)
        model.zero_grad()
        if not fused:
            total, count = recompute_old_logprobs(model, mbs, cfg, 1.0, "packed")
            diffs.append(total / count)
        st = train_minibatch(
            model,
            None,
            mbs,
            cfg,
            temperature=1.0,
            max_new_tokens=8,
            path="packed",
            old_from_learner=fused,
        )
        if fused:
            diffs.append(st.sampler_diff)
            assert st.logp_diff == 0.0 and st.clip_ratio == 0.0
        grads.append(torch.cat([p.grad.flatten().clone() for p in model.parameters()]))
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)
    assert diffs[1] == pytest.approx(diffs[0], rel=1e-5) and diffs[0] > 0.1
    # Without the recompute the sampler's log-probs are pi_old: other gradients.
    (mbs,) = core.pack_microbatches(prompts, comps, sampler, adv, max_tokens=10_000)
    model.zero_grad()
    train_minibatch(model, None, mbs, cfg, temperature=1.0, max_new_tokens=8, path="packed")
    other = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert not torch.allclose(other, grads[1], rtol=1e-3, atol=1e-6)
