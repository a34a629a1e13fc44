"""Forward/backward of one minibatch's micro-batches: the GRPO loss per token.

Every token's weight comes from counts over the *global* minibatch (all ranks), so the
summed gradient is the same whatever the number of ranks: a rank's loss is its share
of the global loss, and FSDP sums (not averages) the ranks' gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from grpo_plug.config import ActorConfig
from grpo_plug.learner.logprobs import learner_logprobs
from grpo_plug.learner.loss import (
    clipped_surrogate,
    decoupled_surrogate,
    kl_penalty,
    token_weights,
)


@dataclass
class TokenBatch:
    """Completion tokens of one micro-batch, flattened: every field is ``[N]``."""

    logp: torch.Tensor
    entropy: torch.Tensor  # detached
    old_logp: torch.Tensor  # pi_old; pi_prox under the decoupled loss
    adv: torch.Tensor
    seq_lens: torch.Tensor  # completion length of each token's sequence
    real: torch.Tensor  # 1.0, or 0.0 on filler sequences that only keep a rank in step
    sampler_logp: torch.Tensor  # what the sampler reported (pi_behav), unless overwritten


@dataclass
class MinibatchStats:
    """Sums over this rank's tokens, each already divided by the global count, so the
    sum over ranks is the minibatch's value; the ``behav_*`` fields (decoupled loss)
    are plain sums and counts of real tokens."""

    loss: float = 0.0
    kl: float = 0.0
    clip_ratio: float = 0.0
    entropy: float = 0.0
    ratio_mean: float = 0.0
    logp_diff: float = 0.0  # mean |learner logp - sampler logp| before the update
    sampler_diff: float = 0.0  # the same against the sampler's own log-probs, when fused
    behav_weight: float = 0.0  # sum of pi_prox/pi_behav over the tokens within the cap
    behav_kept: float = 0.0  # tokens within the cap
    behav_masked: float = 0.0  # tokens over actor.behav_imp_weight_cap

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor([getattr(self, f.name) for f in fields(self)], dtype=torch.float64)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> MinibatchStats:
        return cls(*(float(v) for v in t.tolist()))


@dataclass(frozen=True)
class GlobalCounts:
    """Completion tokens and sequences of the whole minibatch, over all ranks."""

    tokens: int
    seqs: int


def token_batch(
    model: Any,
    mb: Any,
    cfg: ActorConfig,
    temperature: float,
    path: str,
    n_real: int,
    old_from_learner: bool = False,
    prox: np.ndarray | None = None,
) -> TokenBatch:
    """Learner log-probs and the sampler's data of ``mb``'s completion tokens.

    ``old_from_learner``: pi_old is the learner's own log-probs of this forward (detached),
    i.e. ``recompute_logprob`` without a second pass, exact when the step has one
    minibatch (this forward runs before any update). Else ``prox`` (``[N]``, from
    :func:`learner_old_logprobs`) when given, else the sampler's log-probs."""
    sel = mb.loss_mask > 0
    logp, ent = learner_logprobs(model, mb, cfg, temperature, path=path, with_entropy=True)
    device = logp.device
    lens = np.diff(mb.cu_seqlens.astype(np.int64))
    comp_lens = np.add.reduceat(mb.loss_mask, mb.cu_seqlens[:-1].astype(np.int64))
    per_tok_len = np.repeat(comp_lens, lens)[sel]
    real = np.repeat(mb.seq_indices < n_real, lens)[sel]
    sampler = torch.from_numpy(mb.old_logprobs[sel]).to(device)
    old = sampler if prox is None else torch.from_numpy(prox).to(device)
    return TokenBatch(
        logp=logp,
        entropy=ent,
        old_logp=logp.detach().to(sampler.dtype) if old_from_learner else old,
        sampler_logp=sampler,
        adv=torch.from_numpy(mb.advantages[sel]).to(device),
        seq_lens=torch.from_numpy(per_tok_len.astype(np.float32)).to(device),
        real=torch.from_numpy(real.astype(np.float32)).to(device),
    )


def count_real(microbatches: Sequence[Any], n_real: int) -> GlobalCounts:
    """Completion tokens and sequences in ``microbatches``, filler sequences left out."""
    tokens = seqs = 0
    for mb in microbatches:
        lens = np.diff(mb.cu_seqlens.astype(np.int64))
        real = mb.seq_indices < n_real
        comp = np.add.reduceat(mb.loss_mask, mb.cu_seqlens[:-1].astype(np.int64))
        tokens += int(comp[real].sum()) if len(lens) else 0
        seqs += int(real.sum())
    return GlobalCounts(tokens, seqs)


def train_minibatch(
    model: Any,
    ref_model: Any | None,
    microbatches: Sequence[Any],
    cfg: ActorConfig,
    *,
    temperature: float,
    max_new_tokens: int,
    path: str,
    counts: GlobalCounts | None = None,
    n_real: int | None = None,
    old_from_learner: bool = False,
    prox: Sequence[np.ndarray] | None = None,
) -> MinibatchStats:
    """Forward/backward every micro-batch of this rank (gradients accumulate).

    ``counts`` are the global totals (default: this rank's micro-batches alone);
    sequences with index ``>= n_real`` are filler with zero weight; ``old_from_learner``
    and ``prox`` (one array per micro-batch) as in :func:`token_batch`. Under
    ``actor.use_decoupled_loss`` pi_prox is one of the two, and pi_behav the sampler's.
    """
    if cfg.use_decoupled_loss and not old_from_learner and prox is None:
        raise ValueError("actor.use_decoupled_loss: no proximal log-probs (recompute them)")
    n_real = n_real if n_real is not None else 1 << 62
    counts = counts or count_real(microbatches, n_real)
    total_tokens = max(counts.tokens, 1)
    st = MinibatchStats()
    for i, mb in enumerate(microbatches):
        mb_prox = prox[i] if prox is not None else None
        tb = token_batch(model, mb, cfg, temperature, path, n_real, old_from_learner, mb_prox)
        w = tb.real * token_weights(
            tb.seq_lens,
            cfg.loss_agg_mode,
            total_tokens=total_tokens,
            total_seqs=counts.seqs,
            max_new_tokens=max_new_tokens,
        )
        pg, clipped, ratio, kept = policy_terms(tb, cfg, st)
        per_tok = pg
        if ref_model is not None and cfg.kl_ctl > 0:
            with torch.no_grad():
                ref_logp, _ = learner_logprobs(
                    ref_model, mb, cfg, temperature, path=path, with_entropy=False
                )
            kl = kl_penalty(tb.logp, ref_logp, cfg.kl_estimator)
            per_tok = pg + cfg.kl_ctl * (kl if kept is None else kl * kept)
            st.kl += float((kl.detach() * w).sum())
        loss = (per_tok * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        share = tb.real / total_tokens  # each real token's share of the token mean
        st.loss += float(loss.detach())
        st.clip_ratio += float((clipped * share).sum())
        st.entropy += float((tb.entropy * share).sum())
        st.ratio_mean += float((ratio.detach() * share).sum())
        st.logp_diff += float(((tb.logp.detach() - tb.old_logp).abs() * share).sum())
        if old_from_learner:  # otherwise old_logp is the sampler's: logp_diff already
            st.sampler_diff += float(((tb.logp.detach() - tb.sampler_logp).abs() * share).sum())
    return st


def policy_terms(
    tb: TokenBatch, cfg: ActorConfig, st: MinibatchStats
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(loss, clipped, ratio, kept)`` per token: PPO's clipped loss against pi_old, or
    under ``actor.use_decoupled_loss`` the decoupled one (``kept``: 0.0 on tokens over
    the cap; None without the decoupled loss), whose weights ``st`` counts."""
    eps_high = cfg.eps_clip_higher if cfg.eps_clip_higher is not None else cfg.eps_clip
    if not cfg.use_decoupled_loss:
        pg, clipped, ratio = clipped_surrogate(tb.logp, tb.old_logp, tb.adv, cfg.eps_clip, eps_high)
        return pg, clipped, ratio, None
    d = decoupled_surrogate(
        tb.logp,
        tb.old_logp,
        tb.sampler_logp,
        tb.adv,
        cfg.eps_clip,
        eps_high,
        cfg.behav_imp_weight_cap,
    )
    st.behav_weight += float((d.weight * tb.real).sum())
    st.behav_kept += float((d.kept * tb.real).sum())
    st.behav_masked += float(((1.0 - d.kept) * tb.real).sum())
    return d.loss, d.clipped, d.ratio, d.kept


@torch.no_grad()
def learner_old_logprobs(
    model: Any, microbatches: Sequence[Any], cfg: ActorConfig, temperature: float, path: str
) -> tuple[list[np.ndarray], float, int]:
    """The learner's log-probs of each micro-batch's completion tokens (``[N]`` float32
    each; pi_prox of the decoupled loss), with the sum of |sampler - learner| over them
    and their count."""
    out: list[np.ndarray] = []
    total, count = 0.0, 0
    for mb in microbatches:
        logp, _ = learner_logprobs(model, mb, cfg, temperature, path=path, with_entropy=False)
        mask = mb.loss_mask > 0
        mine = logp.float().cpu().numpy()
        total += float(np.abs(mb.old_logprobs[mask] - mine).sum())
        count += int(mask.sum())
        out.append(mine)
    return out, total, count


@torch.no_grad()
def recompute_old_logprobs(
    model: Any, microbatches: Sequence[Any], cfg: ActorConfig, temperature: float, path: str
) -> tuple[float, int]:
    """Overwrite the sampler's log-probs with the learner's (``actor.recompute_logprob``).

    Returns (sum of |sampler - learner| over the loss tokens, their count): the mismatch
    the recompute hides, e.g. of a bf16 sampling copy."""
    mine, total, count = learner_old_logprobs(model, microbatches, cfg, temperature, path)
    for mb, logp in zip(microbatches, mine, strict=True):
        mb.old_logprobs[mb.loss_mask > 0] = logp
    return total, count
