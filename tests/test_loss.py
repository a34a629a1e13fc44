"""The loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from grpo_plug.learner.loss import clipped_surrogate, kl_penalty, token_weights


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def test_surrogate_unclipped_inside_the_range() -> None:
    # ratio = e^0.1 = 1.10517 is inside [0.8, 1.2]: loss = -A * ratio.
    loss, clipped, ratio = clipped_surrogate(t(0.1), t(0.0), t(2.0), 0.2, 0.2)
    assert ratio.item() == pytest.approx(math.exp(0.1))
    assert loss.item() == pytest.approx(-2.0 * math.exp(0.1))
    assert clipped.item() == 0.0


def test_surrogate_clips_above_for_positive_advantage() -> None:
    # ratio = e^0.5 = 1.6487 > 1.2 with A > 0: objective capped at 1.2 * A.
    loss, clipped, _ = clipped_surrogate(t(0.5), t(0.0), t(1.0), 0.2, 0.2)
    assert loss.item() == pytest.approx(-1.2)
    assert clipped.item() == 1.0


def test_surrogate_clips_below_for_negative_advantage() -> None:
    # ratio = e^-0.5 = 0.6065 < 0.8 with A < 0: loss = max(0.6065, 0.8) * 1 = 0.8.
    loss, clipped, _ = clipped_surrogate(t(-0.5), t(0.0), t(-1.0), 0.2, 0.2)
    assert loss.item() == pytest.approx(0.8)
    assert clipped.item() == 1.0


def test_surrogate_no_clip_where_it_would_help() -> None:
    # ratio below range with A > 0: the unclipped (smaller) objective is kept.
    loss, clipped, _ = clipped_surrogate(t(-0.5), t(0.0), t(1.0), 0.2, 0.2)
    assert loss.item() == pytest.approx(-math.exp(-0.5))
    assert clipped.item() == 0.0


def test_clip_higher_uses_the_upper_bound() -> None:
    loss, _, _ = clipped_surrogate(t(0.5), t(0.0), t(1.0), 0.2, 0.28)
    assert loss.item() == pytest.approx(-1.28)


def test_surrogate_gradient_sign() -> None:
    logp = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)
    loss, _, _ = clipped_surrogate(logp, t(0.0, 0.0), t(1.0, -1.0), 0.2, 0.2)
    loss.sum().backward()
    assert logp.grad is not None
    # Minimising the loss raises the log-prob of the good sample and lowers the bad one.
    assert logp.grad[0].item() == pytest.approx(-1.0)
    assert logp.grad[1].item() == pytest.approx(1.0)


def test_kl_estimators() -> None:
    logp, ref = t(-1.0), t(-1.5)  # log(pi/ref) = 0.5
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(0.5)
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.125)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(math.exp(-0.5) - 1 + 0.5)
    assert kl_penalty(t(-2.0), t(-2.0), "k3").item() == 0.0
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_penalty(logp, ref, "k4")  # type: ignore[arg-type]


def test_aggregation_weights() -> None:
    # Two sequences: lengths 2 and 4 -> six tokens.
    lens = torch.tensor([2.0, 2.0, 4.0, 4.0, 4.0, 4.0])
    loss = torch.tensor([1.0, 1.0, 4.0, 4.0, 4.0, 4.0])
    tm = token_weights(lens, "token-mean", total_tokens=6, total_seqs=2, max_new_tokens=8)
    assert (loss * tm).sum().item() == pytest.approx(18 / 6)
    sm = token_weights(lens, "seq-mean-token-mean", total_tokens=6, total_seqs=2, max_new_tokens=8)
    assert (loss * sm).sum().item() == pytest.approx((1.0 + 4.0) / 2)
    dr = token_weights(
        lens, "seq-mean-token-sum-norm", total_tokens=6, total_seqs=2, max_new_tokens=8
    )
    assert (loss * dr).sum().item() == pytest.approx(18 / (2 * 8))
    with pytest.raises(ValueError, match="loss_agg_mode"):
        token_weights(lens, "mean", total_tokens=6, total_seqs=2, max_new_tokens=8)  # type: ignore[arg-type]
