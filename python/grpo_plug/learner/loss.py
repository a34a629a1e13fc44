"""The GRPO policy loss, as small pure functions over per-token tensors.

Aggregation is expressed as a per-token weight so that gradient accumulation over
micro-batches gives exactly the loss of the whole minibatch:

- ``token-mean``:              w = 1 / (completion tokens in the minibatch)
- ``seq-mean-token-mean``:     w = 1 / (len(seq) * sequences in the minibatch)
- ``seq-mean-token-sum-norm``: w = 1 / (max_new_tokens * sequences in the minibatch)
  (Dr. GRPO: a constant normaliser, so long answers are not down-weighted)
"""

from __future__ import annotations

from typing import Literal, NamedTuple

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


class DecoupledTerms(NamedTuple):
    """Per-token terms of :func:`decoupled_surrogate`, all ``[N]``."""

    loss: torch.Tensor  # w * PPO loss relative to pi_prox; 0 where masked
    clipped: torch.Tensor  # 1.0 where the clipped branch was taken
    ratio: torch.Tensor  # pi_theta / pi_prox
    weight: torch.Tensor  # w = pi_prox / pi_behav, 0 where masked (no gradient)
    kept: torch.Tensor  # 1.0 where w is within the cap, 0.0 where masked


def decoupled_surrogate(
    logp: torch.Tensor,
    prox_logp: torch.Tensor,
    behav_logp: torch.Tensor,
    adv: torch.Tensor,
    eps_low: float,
    eps_high: float,
    cap: float | None,
) -> DecoupledTerms:
    """AReaL's decoupled PPO loss per token (``actor.use_decoupled_loss``).

    ``loss_t = w_t * max(-A r_t, -A clip(r_t, 1-eps_low, 1+eps_high))`` with
    ``r_t = pi_theta/pi_prox`` and ``w_t = pi_prox/pi_behav``; tokens with ``w_t > cap``
    get ``w_t = 0`` (masked). pi_behav generated the tokens (the sampler's log-probs);
    pi_prox is the learner's weights when the step starts.

    As AReaL's ``ppo_actor_loss_fn`` with ``behav_imp_weight_cap`` (the seed's configs):
    the ratio and the clip are relative to pi_prox; w is a constant (both log-probs
    carry no gradient); a token is kept when ``w <= cap``, with no cap none is masked
    and w is not bounded; masked tokens stay in the loss's normaliser (AReaL divides by
    the loss-mask count taken before the cap), so masking does not scale up the
    others; the clip ratio counts every token, masked ones included; pi_prox is
    computed once per step, before the first minibatch's update (AReaL's
    ``compute_logp`` before ``ppo_update``). With ``behav_logp == prox_logp`` w is
    exactly 1 and this is :func:`clipped_surrogate`.

    Where it differs: no dual clip (grpo-plug has no ``c_clip``); AReaL adds the KL
    penalty to the reward (so w scales it), grpo-plug's ``actor.kl_ctl`` is a loss term,
    which the cap masks but w does not scale; the other ``actor.loss_agg_mode``s weight
    tokens their way (AReaL's loss is the token mean); newer AReaL replaces the cap
    with ``rejection_sampling`` (mask or clamp, per token or sequence): this is its
    token-level mask.
    """
    loss, clipped, ratio = clipped_surrogate(logp, prox_logp, adv, eps_low, eps_high)
    w = torch.exp(prox_logp.detach() - behav_logp.detach())
    kept = torch.ones_like(w) if cap is None else (w <= cap).to(w.dtype)  # NaN: masked
    w = torch.where(kept > 0, w, torch.zeros_like(w))
    return DecoupledTerms(loss * w, clipped, ratio, w, kept)


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
