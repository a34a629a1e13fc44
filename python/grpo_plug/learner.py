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

from grpo_plug.batching import cache_kwarg, pad_batch
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
        ids, mask = pad_batch([mb.input_ids[cu[s] : cu[s + 1]] for s in range(s0, s1)], left=False)
        hidden = decoder(input_ids=ids.to(device), attention_mask=mask.to(device))[0]  # [S,L,H]
        part = sel[cu[s0] : cu[s1]]
        rows = torch.from_numpy(seq_of_tok[cu[s0] : cu[s1]][part] - s0)
        cols = torch.from_numpy(mb.position_ids[cu[s0] : cu[s1]][part])
        targets = torch.from_numpy(mb.input_ids[cu[s0] : cu[s1]][part]).to(device)
        # Token at position j is predicted by the hidden state at j-1.
        h = hidden[rows.to(device), (cols - 1).to(device)]  # [N, H]
        logp, ent = _head_logprobs(head, h, targets, temperature, with_entropy)
        logps.append(logp)
        if ent is not None:
            ents.append(ent)
    logp = torch.cat(logps)
    ent = torch.cat(ents) if ents else torch.zeros_like(logp.detach())
    return logp, ent


def _head_logprobs(
    head: Any, h: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of ``targets`` [N] (and entropy) from predicting hidden states ``h`` [N, H]."""
    logits = head(h).float()  # [N, V]
    if temperature != 1.0:
        logits = logits / temperature
    # cross_entropy is log_softmax + gather fused: autograd keeps one [N, V] buffer.
    logp = -torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    if not with_entropy:
        return logp, None
    ents = []
    with torch.no_grad():  # in slices, so no extra [N, V] buffers pile up
        for part in logits.detach().split(256):
            lp = torch.log_softmax(part, dim=-1)
            ents.append(-(lp.exp() * lp).sum(-1))
    return logp, torch.cat(ents) if ents else logits.new_zeros(0)


def shared_prompt_logprobs(
    model: Any, mb: Any, *, temperature: float, max_seqs: int, with_entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`completion_logprobs`, but each distinct prompt is run once.

    The n samples of a GRPO group share their prompt, so the prompt goes through the
    decoder once and its key/value cache is repeated for every completion; gradients
    flow back through the shared cache. With 55-token prompts, 20-token answers and
    8 samples this is ~3x fewer tokens than running every sequence whole.
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    cache_kw = cache_kwarg(decoder)
    cu = mb.cu_seqlens.astype(np.int64)
    n_seqs = len(cu) - 1
    seqs = []  # (prompt ids, completion ids, offset of its first completion token in [N])
    offset = 0
    for s in range(n_seqs):
        toks, mask = mb.input_ids[cu[s] : cu[s + 1]], mb.loss_mask[cu[s] : cu[s + 1]]
        plen = int(np.argmax(mask > 0)) if mask.any() else len(toks)
        seqs.append((toks[:plen], toks[plen:], offset))
        offset += len(toks) - plen
    groups: dict[bytes, list[int]] = {}
    for s, (prompt, _, _) in enumerate(seqs):
        groups.setdefault(prompt.tobytes(), []).append(s)
    # Whole groups per forward, at most max_seqs sequences (a bigger group goes alone).
    chunks: list[list[list[int]]] = [[]]
    for members in groups.values():
        if chunks[-1] and sum(map(len, chunks[-1])) + len(members) > max_seqs:
            chunks.append([])
        chunks[-1].append(members)
    parts, where, ent_parts = [], [], []
    for chunk in chunks:
        if not chunk:
            continue
        prompts = [seqs[m[0]][0] for m in chunk]
        ids, pmask = pad_batch(prompts, left=True)  # left: the last column predicts token 0
        ppos = (pmask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()

        def extend(
            ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any = cache
        ) -> torch.Tensor:
            """Hidden states of ``ids``, appended to ``cache`` (prompt, then completions)."""
            out = decoder(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=pos.to(device),
                use_cache=True,
                **{cache_kw: cache},
            )
            return out[0]  # type: ignore[no-any-return]

        hp = extend(ids, pmask, ppos)
        members = [s for m in chunk for s in m]
        owner = torch.tensor([gi for gi, m in enumerate(chunk) for _ in m])
        cache.batch_select_indices(owner.to(device))  # repeat each prompt's cache per sample
        comps = [seqs[s][1] for s in members]
        cids, cmask = pad_batch(comps, left=False, min_width=1)
        lc_max = cids.shape[1]
        plens = torch.tensor([len(seqs[s][0]) for s in members])
        cpos = plens[:, None] + torch.arange(lc_max)[None, :]
        full_mask = torch.cat([pmask[owner], cmask], dim=1)
        hc = extend(cids, full_mask, cpos)
        # Token j of a completion is predicted by position j-1; token 0 by the prompt's end.
        pred = torch.cat([hp[owner.to(device), -1:, :], hc[:, :-1, :]], dim=1)  # [S, Lc, H]
        valid = cmask.bool()
        logp, ent = _head_logprobs(
            head, pred[valid.to(device)], cids[valid].to(device), temperature, with_entropy
        )
        parts.append(logp)
        if ent is not None:
            ent_parts.append(ent)
        where.append(torch.cat([seqs[s][2] + torch.arange(len(seqs[s][1])) for s in members]))
    order = torch.argsort(torch.cat(where)).to(device)  # back to the packed token order
    logp_all = torch.cat(parts)[order]
    ent_all = torch.cat(ent_parts)[order] if ent_parts else torch.zeros_like(logp_all.detach())
    return logp_all, ent_all


def learner_logprobs(
    model: Any, mb: Any, cfg: ActorConfig, temperature: float, with_entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt-sharing path unless gradient checkpointing (which forbids a cache) is on."""
    if cfg.gradient_checkpointing:
        return completion_logprobs(
            model, mb, temperature=temperature, max_seqs=cfg.batch_size, with_entropy=with_entropy
        )
    return shared_prompt_logprobs(
        model, mb, temperature=temperature, max_seqs=cfg.batch_size, with_entropy=with_entropy
    )


def token_batch(model: Any, mb: Any, cfg: ActorConfig, temperature: float) -> TokenBatch:
    sel = mb.loss_mask > 0
    logp, ent = learner_logprobs(model, mb, cfg, temperature)
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
                ref_logp, _ = learner_logprobs(ref_model, mb, cfg, temperature, False)
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
        logp, _ = learner_logprobs(model, mb, cfg, temperature, with_entropy=False)
        mb.old_logprobs[mb.loss_mask > 0] = logp.float().cpu().numpy()
