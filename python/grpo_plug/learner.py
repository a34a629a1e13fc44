"""The learner: log-probs of packed micro-batches, the GRPO loss, AdamW.

Micro-batches arrive packed (1-D arrays from the Rust packer). On CPU the learner
unpacks each into a right-padded ``[S, L]`` batch with an attention mask built from
lengths (SmolLM2's pad token equals EOS, so masks never come from token ids), runs the
decoder once, and applies the LM head only at completion positions: the prompt's
logits are never materialised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from grpo_plug.config import ActorConfig
from grpo_plug.loss import clipped_surrogate, kl_penalty, token_weights


@dataclass
class TokenBatch:
    """Completion tokens of one micro-batch, flattened: every field is ``[N]``."""

    logp: torch.Tensor
    entropy: torch.Tensor  # detached
    old_logp: torch.Tensor
    adv: torch.Tensor
    seq_lens: torch.Tensor  # completion length of each token's sequence


def make_optimizer(model: Any, cfg: ActorConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        eps=cfg.adam_eps,
        weight_decay=cfg.weight_decay,
    )


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: ActorConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(cfg.warmup_steps_proportion * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.lr_scheduler_type == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def completion_logprobs(
    model: Any, mb: Any, *, temperature: float, max_seqs: int, with_entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob (and entropy) of every completion token of a packed micro-batch, ``[N]``."""
    device = next(model.parameters()).device
    cu = mb.cu_seqlens.astype(np.int64)
    lens = np.diff(cu)
    n_seqs = len(lens)
    sel = mb.loss_mask > 0
    seq_of_tok = np.repeat(np.arange(n_seqs), lens)
    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    logps, ents = [], []
    for s0 in range(0, n_seqs, max_seqs):
        s1 = min(n_seqs, s0 + max_seqs)
        width = int(lens[s0:s1].max())
        ids = torch.zeros((s1 - s0, width), dtype=torch.long)
        mask = torch.zeros((s1 - s0, width), dtype=torch.long)
        for k, s in enumerate(range(s0, s1)):
            ids[k, : lens[s]] = torch.from_numpy(mb.input_ids[cu[s] : cu[s + 1]])
            mask[k, : lens[s]] = 1
        hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device))[0]  # [S,L,H]
        part = sel[cu[s0] : cu[s1]]
        rows = torch.from_numpy(seq_of_tok[cu[s0] : cu[s1]][part] - s0)
        cols = torch.from_numpy(mb.position_ids[cu[s0] : cu[s1]][part])
        targets = torch.from_numpy(mb.input_ids[cu[s0] : cu[s1]][part]).to(device)
        # Token at position j is predicted by the hidden state at j-1.
        h = hidden[rows.to(device), (cols - 1).to(device)]  # [N, H]
        logits = head(h).float() / temperature  # [N, V]
        logp_all = torch.log_softmax(logits, dim=-1)
        logps.append(logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
        if with_entropy:
            with torch.no_grad():
                ents.append(-(logp_all.exp() * logp_all).sum(-1))
    logp = torch.cat(logps)
    ent = torch.cat(ents) if ents else torch.zeros_like(logp.detach())
    return logp, ent


def token_batch(model: Any, mb: Any, cfg: ActorConfig, temperature: float) -> TokenBatch:
    sel = mb.loss_mask > 0
    logp, ent = completion_logprobs(model, mb, temperature=temperature, max_seqs=cfg.batch_size)
    device = logp.device
    lens = np.diff(mb.cu_seqlens.astype(np.int64))
    comp_lens = np.add.reduceat(mb.loss_mask, mb.cu_seqlens[:-1].astype(np.int64))
    per_tok_len = np.repeat(comp_lens, lens)[sel]
    return TokenBatch(
        logp=logp,
        entropy=ent,
        old_logp=torch.from_numpy(mb.old_logprobs[sel]).to(device),
        adv=torch.from_numpy(mb.advantages[sel]).to(device),
        seq_lens=torch.from_numpy(per_tok_len.astype(np.float32)).to(device),
    )


@dataclass
class MinibatchStats:
    loss: float = 0.0
    kl: float = 0.0
    clip_ratio: float = 0.0
    entropy: float = 0.0
    ratio_mean: float = 0.0
    logp_diff: float = 0.0  # mean |learner logp - sampler logp| before the update
    tokens: int = 0


def train_minibatch(
    model: Any,
    ref_model: Any | None,
    microbatches: Sequence[Any],
    cfg: ActorConfig,
    *,
    temperature: float,
    max_new_tokens: int,
) -> MinibatchStats:
    """Forward/backward every micro-batch of one minibatch (gradients accumulate)."""
    total_tokens = int(sum(float(mb.loss_mask.sum()) for mb in microbatches))
    total_seqs = sum(len(mb.seq_indices) for mb in microbatches)
    eps_high = cfg.eps_clip_higher if cfg.eps_clip_higher is not None else cfg.eps_clip
    st = MinibatchStats(tokens=total_tokens)
    for mb in microbatches:
        tb = token_batch(model, mb, cfg, temperature)
        w = token_weights(
            tb.seq_lens,
            cfg.loss_agg_mode,
            total_tokens=total_tokens,
            total_seqs=total_seqs,
            max_new_tokens=max_new_tokens,
        )
        pg, clipped, ratio = clipped_surrogate(tb.logp, tb.old_logp, tb.adv, cfg.eps_clip, eps_high)
        per_tok = pg
        if ref_model is not None and cfg.kl_ctl > 0:
            with torch.no_grad():
                ref_logp, _ = completion_logprobs(
                    ref_model,
                    mb,
                    temperature=temperature,
                    max_seqs=cfg.batch_size,
                    with_entropy=False,
                )
            kl = kl_penalty(tb.logp, ref_logp, cfg.kl_estimator)
            per_tok = pg + cfg.kl_ctl * kl
            st.kl += float((kl.detach() * w).sum())
        loss = (per_tok * w).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        n = len(tb.logp) / max(total_tokens, 1)
        st.loss += float(loss.detach())
        st.clip_ratio += float(clipped.mean()) * n
        st.entropy += float(tb.entropy.mean()) * n
        st.ratio_mean += float(ratio.detach().mean()) * n
        st.logp_diff += float((tb.logp.detach() - tb.old_logp).abs().mean()) * n
    return st


@torch.no_grad()
def recompute_old_logprobs(
    model: Any, microbatches: Sequence[Any], cfg: ActorConfig, temperature: float
) -> None:
    """Overwrite the sampler's log-probs with the learner's (``actor.recompute_logprob``)."""
    for mb in microbatches:
        logp, _ = completion_logprobs(
            model, mb, temperature=temperature, max_seqs=cfg.batch_size, with_entropy=False
        )
        mb.old_logprobs[mb.loss_mask > 0] = logp.float().cpu().numpy()
