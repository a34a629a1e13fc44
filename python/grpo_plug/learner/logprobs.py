"""Log-probs of the completion tokens of one packed micro-batch, three ways.

Micro-batches arrive packed (1-D arrays from the Rust packer). Every path applies the
LM head only at completion positions: the prompt's logits are never materialised.

- ``packed``: the micro-batch runs as it is, ``[1, T]``, no padding; position ids that
  restart at 0 give each document its rotary positions, and the model's attention
  kernel (``learner.attention``) gets the documents' boundaries: varlen kernels cost the
  sum of the squared document lengths; transformers' stock sdpa (``packed_dense``)
  turns the position ids into a dense ``T x T`` block-diagonal mask. One root
  ``forward`` per micro-batch, which is what FSDP2's hooks need.
- ``padded`` (fallback): right-padded ``[S, L]`` chunks with a mask built from lengths
  (SmolLM2's pad token equals EOS, so masks never come from token ids).
- ``shared_prompt``: each distinct prompt runs once and its KV cache is repeated for the
  group's samples; cheapest on one rank without gradient checkpointing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grpo_plug.config import ActorConfig
from grpo_plug.learner.attention import packed_kwargs
from grpo_plug.padding import cache_kwarg, pad_batch


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
    return logits_logprobs(head(h), targets, temperature, with_entropy)


def logits_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of ``targets`` [N] (and entropy) under ``logits`` [N, V], in fp32."""
    if not with_entropy:
        logits = logits.float()
        if temperature != 1.0:
            logits = logits / temperature
        # cross_entropy is log_softmax + gather fused: autograd keeps one [N, V] buffer.
        return -torch.nn.functional.cross_entropy(logits, targets, reduction="none"), None
    logp, ent = HeadLogprobs.apply(logits, targets, temperature)
    return logp, ent


class HeadLogprobs(torch.autograd.Function):
    """``log softmax(logits / t)[target]`` per row of ``[N, V]`` logits, with the entropy
    (no gradient), computed in slices of :meth:`rows` rows in fp32.

    The head is a large share of a small model's step and its cost is passes over
    ``[N, V]``: log_softmax, gather and entropy each allocate and walk a full buffer, and
    their backwards walk more. Here a slice is read while it sits in cache, only the
    logits (in their own dtype) and one value per row are kept, and the backward writes
    ``(one_hot - softmax) / t`` straight into the one gradient buffer it must return.
    """

    ROWS = 64  # on a CPU: a [64, 49152] fp32 slice is 12 MiB, about a cache's size
    ROWS_CUDA = 1024  # a GPU wants fewer, larger kernels (not measured: no GPU was lent)

    @staticmethod
    def rows(device: torch.device) -> int:
        """Rows per slice on ``device``."""
        return HeadLogprobs.ROWS if device.type == "cpu" else HeadLogprobs.ROWS_CUDA

    @staticmethod
    def forward(
        ctx: Any, logits: torch.Tensor, targets: torch.Tensor, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, step = logits.shape[0], HeadLogprobs.rows(logits.device)
        lse = torch.empty(n, dtype=torch.float32, device=logits.device)
        ent = torch.empty(n, dtype=torch.float32, device=logits.device)
        for r0 in range(0, n, step):
            x = logits[r0 : r0 + step].float() / temperature  # a copy
            m = x.amax(-1, keepdim=True)
            x.sub_(m)  # shifted: the entropy below subtracts numbers of its own size
            e = x.exp()
            z = e.sum(-1)
            lse[r0 : r0 + len(x)] = m[:, 0] + z.log()
            # entropy = lse - E_p[x] = log z - E_p[x - m]
            ent[r0 : r0 + len(x)] = z.log() - e.mul_(x).sum(-1) / z
        picked = logits.gather(-1, targets[:, None])[:, 0].float() / temperature
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        ctx.mark_non_differentiable(ent)
        return picked - lse, ent

    @staticmethod
    def backward(
        ctx: Any, g_logp: torch.Tensor, _g_ent: torch.Tensor | None
    ) -> tuple[torch.Tensor, None, None]:
        logits, targets, lse = ctx.saved_tensors
        t = ctx.temperature
        grad = torch.empty_like(logits)
        g = g_logp.float() / t
        step = HeadLogprobs.rows(logits.device)
        for r0 in range(0, logits.shape[0], step):
            r1 = r0 + step
            p = (logits[r0:r1].float() / t).sub_(lse[r0:r1, None]).exp_()  # softmax
            p.mul_(-g[r0:r1, None]).scatter_add_(-1, targets[r0:r1, None], g[r0:r1, None])
            grad[r0:r1] = p  # (one_hot - softmax) * g / t, cast to the logits' dtype
        return grad, None, None


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


def packed_logprobs(
    model: Any, mb: Any, *, temperature: float, with_entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`completion_logprobs`, with the micro-batch run packed as ``[1, T]``.

    No padding, and no token attends across documents: the model's varlen kernel gets
    the boundaries from ``mb.cu_seqlens`` (:func:`~grpo_plug.learner.attention.packed_kwargs`);
    transformers' own kernels read them from the position ids, which restart at 0.
    """
    device = next(model.parameters()).device
    sel = np.flatnonzero(mb.loss_mask > 0)
    if len(sel) and int(mb.position_ids[sel].min()) < 1:
        raise ValueError("a completion token at position 0 has no prompt to be predicted from")
    ids = torch.from_numpy(mb.input_ids)[None].to(device)  # [1, T]
    pos = torch.from_numpy(mb.position_ids)[None].to(device)  # [1, T]
    keep = torch.from_numpy(sel - 1).to(device)  # token t is predicted at t - 1  # [N]
    docs = packed_kwargs(model, mb.cu_seqlens, device)
    out = model(input_ids=ids, position_ids=pos, logits_to_keep=keep, use_cache=False, **docs)
    targets = torch.from_numpy(mb.input_ids[sel]).to(device)
    # flatten, not [0]: select's backward would zero-fill and copy a whole [1, N, V] buffer
    logits = out.logits.flatten(0, 1)  # [N, V]
    logp, ent = logits_logprobs(logits, targets, temperature, with_entropy)
    return logp, ent if ent is not None else torch.zeros_like(logp.detach())


def learner_logprobs(
    model: Any, mb: Any, cfg: ActorConfig, temperature: float, *, path: str, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of the completion tokens of ``mb`` by ``path``, ``[N]``."""
    if path == "packed":
        return packed_logprobs(model, mb, temperature=temperature, with_entropy=with_entropy)
    fn = completion_logprobs if path == "padded" else shared_prompt_logprobs
    return fn(
        model, mb, temperature=temperature, max_seqs=cfg.batch_size, with_entropy=with_entropy
    )
