"""The prompt-sharing learner path against the plain one: same log-probs, same gradients."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from grpo_plug import core
from grpo_plug.learner import completion_logprobs, shared_prompt_logprobs
from tests.tiny import build_tiny_model


def test_shared_prompt_path_matches_plain_path(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "m", seed=1))
    model.train()
    rng = np.random.default_rng(0)
    prompts, comps, lps = [], [], []
    for _g in range(3):  # 3 groups of 4 samples, prompts of different lengths
        prompt = rng.integers(3, 14, size=int(rng.integers(5, 12))).tolist()
        for _ in range(4):
            c = rng.integers(3, 14, size=int(rng.integers(1, 7))).tolist()
            prompts.append(prompt)
            comps.append(c)
            lps.append([-1.0] * len(c))
    adv = rng.normal(size=len(prompts)).astype(np.float32)
    (mbs,) = core.pack_microbatches(prompts, comps, lps, adv, max_tokens=10_000)
    (mb,) = mbs
    results = []
    for fn, kwargs in ((completion_logprobs, {}), (shared_prompt_logprobs, {})):
        model.zero_grad()
        logp, ent = fn(model, mb, temperature=0.7, max_seqs=5, **kwargs)
        (logp * torch.arange(len(logp))).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((logp.detach(), ent, grads))
    (a_lp, a_ent, a_g), (b_lp, b_ent, b_g) = results
    assert a_lp.shape == (int(mb.loss_mask.sum()),)
    torch.testing.assert_close(a_lp, b_lp, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a_ent, b_ent, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a_g, b_g, rtol=1e-3, atol=1e-5)
