"""The LM head's log-probs and entropies (learner.head) against log_softmax + gather,
and the model's own logits against the head that never holds them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_plug.learner import head as headmod
from grpo_plug.learner.head import HeadLogprobs, hidden_logprobs, logits_logprobs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_sliced_head_matches_log_softmax(dtype: torch.dtype, temperature: float) -> None:
    """The head's log-probs, entropies and logit gradients equal log_softmax + gather's
    (more rows than one slice, so the slicing is exercised)."""
    torch.manual_seed(0)
    n, v = HeadLogprobs.ROWS * 2 + 5, 300
    logits = (torch.randn(n, v) * 3).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,))
    weights = torch.randn(n)
    logp, ent = logits_logprobs(logits, targets, temperature, with_entropy=True)
    assert ent is not None
    (logp * weights).sum().backward()
    got = logits.grad
    logits.grad = None
    lp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
    want = lp_all.gather(-1, targets[:, None])[:, 0]
    (want * weights).sum().backward()
    want_ent = -(lp_all.exp() * lp_all).sum(-1)
    assert torch.allclose(logp, want, atol=1e-5)
    assert torch.allclose(ent, want_ent.detach(), atol=1e-4)
    assert got is not None and got.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(got.float(), logits.grad.float(), atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_linear_head_matches_log_softmax_of_its_logits(
    dtype: torch.dtype, temperature: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From hidden states and the head's weight, over vocabulary slices (64 columns here,
    the last one shorter): log-probs, entropies and the gradients of the hidden states
    and the weight equal log_softmax + gather of the logits ``h @ W.T`` in ``dtype``."""
    monkeypatch.setattr(headmod, "_vocab_slice", lambda n, vocab, device: 64)
    torch.manual_seed(0)
    n, d, v = 37, 16, 300
    h = torch.randn(n, d).to(dtype).requires_grad_()
    w = (torch.randn(v, d) * 0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,))
    targets[:3] = torch.tensor([0, v - 1, 64])  # the edges of slices
    weights = torch.randn(n)
    logp, ent = hidden_logprobs(h, w, targets, temperature, with_entropy=True)
    assert ent is not None
    (logp * weights).sum().backward()
    got_h, got_w = h.grad, w.grad
    h.grad = w.grad = None
    lp_all = torch.log_softmax((h @ w.t()).float() / temperature, dim=-1)
    want = lp_all.gather(-1, targets[:, None])[:, 0]
    (want * weights).sum().backward()
    want_ent = -(lp_all.exp() * lp_all).sum(-1)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(logp, want.detach(), atol=tol, rtol=0)
    torch.testing.assert_close(ent, want_ent.detach(), atol=tol * 10, rtol=0)
    assert got_h is not None and got_w is not None
    assert got_h.dtype == got_w.dtype == dtype
    gtol = 1e-5 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got_h.float(), h.grad.float(), atol=gtol, rtol=gtol)
    torch.testing.assert_close(got_w.float(), w.grad.float(), atol=gtol, rtol=gtol)
    no_ent, none = hidden_logprobs(h.detach(), w.detach(), targets, temperature, False)
    assert none is None
    torch.testing.assert_close(no_ent, want.detach(), atol=tol, rtol=0)


def test_no_rows_give_no_log_probs() -> None:
    w = torch.randn(300, 16, requires_grad=True)
    logp, ent = hidden_logprobs(torch.zeros(0, 16), w, torch.zeros(0, dtype=torch.long), 1.0, True)
    assert logp.shape == (0,) and ent is not None and ent.shape == (0,)


@pytest.mark.parametrize("path", ["packed", "padded", "shared_prompt"])
def test_each_path_gives_the_model_logits_numbers_without_them(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Llama's head runs as the linear head (no ``[N, V]`` logits, the model's
    ``lm_head`` never called); with the architecture off the list the model computes its
    own logits: same log-probs, entropies and parameter gradients (fp32)."""
    from grpo_plug.learner import attention
    from grpo_plug.learner.logprobs import learner_logprobs
    from grpo_plug.testing.model import build_tiny_model
    from tests.helpers import load_for_training, packed_micro_batch

    model = load_for_training(build_tiny_model(tmp_path / "m", seed=3, hidden=64))
    attention.use(model, {"packed": "packed_sdpa"}.get(path, path))
    mb = packed_micro_batch(seed=4)
    cfg: Any = type("Cfg", (), {"batch_size": 3})()
    calls: list[int] = []
    model.get_output_embeddings().register_forward_hook(lambda *a: calls.append(1))

    def run() -> tuple[torch.Tensor, ...]:
        model.zero_grad()
        logp, ent = learner_logprobs(model, mb, cfg, 0.7, path=path, with_entropy=True)
        (logp * torch.linspace(-1, 1, len(logp))).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        return logp.detach(), ent, grads

    assert headmod.linear_head_weight(model) is not None
    got = run()
    assert calls == []
    monkeypatch.setattr(headmod, "LINEAR_HEADS", ())
    assert headmod.linear_head_weight(model) is None
    want = run()
    assert calls, "the fallback runs the model's own head"
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
