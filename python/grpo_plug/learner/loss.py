"""The GRPO policy loss, as small pure functions over per-token tensors.

Aggregation is expressed as a per-token weight so that gradient accumulation over
micro-batches gives exactly the loss of the whole minibatch:

- ``token-mean``:              w = 1 / (completion tokens in the minibatch)
- ``seq-mean-token-mean``:     w = 1 / (len(seq) * sequences in the minibatch)
- ``seq-mean-token-sum-norm``: w = 1 / (max_new_tokens * sequences in the minibatch)
  (Dr. GRPO: a constant normaliser, so long answers are not down-weighted)
"""

from __future__ import annotations

from typing import Literal

import torch

KlEstimator = Literal["k1", "k2", "k3"]
AggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped objective per token, negated as a loss.

    Returns ``(loss, clipped, ratio)``, all ``[N]``; ``clipped`` is 1.0 where the
    clipped branch was the one taken (its gradient is zero).
    """
    ratio = torch.exp(logp - old_logp)
    unclipped = -adv * ratio
    clipped_obj = -adv * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(unclipped, clipped_obj)
    clipped = (clipped_obj > unclipped).float()
    return loss, clipped, ratio


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: KlEstimator) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from samples of pi (Schulman's k1/k2/k3)."""
    log_ratio = logp - ref_logp
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio.square()
    if kind == "k3":
        # exp(-x) - 1 + x with x = log pi/ref: unbiased and always >= 0.
        return torch.exp(-log_ratio) - 1.0 + log_ratio
    raise ValueError(f"actor.kl_estimator: unknown estimator {kind!r}")


def token_weights(
    seq_lens: torch.Tensor,
    mode: AggMode,
    *,
    total_tokens: int,
    total_seqs: int,
    max_new_tokens: int,
) -> torch.Tensor:
    """Weight of each completion token, given ``seq_lens`` [N] = its sequence's length."""
    if mode == "token-mean":
        return torch.full_like(seq_lens, 1.0 / max(total_tokens, 1), dtype=torch.float32)
    if mode == "seq-mean-token-mean":
        return 1.0 / (seq_lens.float() * max(total_seqs, 1))
    if mode == "seq-mean-token-sum-norm":
        return torch.full_like(
            seq_lens, 1.0 / (max_new_tokens * max(total_seqs, 1)), dtype=torch.float32
        )
    raise ValueError(f"actor.loss_agg_mode: unknown mode {mode!r}")
