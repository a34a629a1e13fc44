"""Log-probs of the completion tokens of one packed micro-batch, three ways.

Micro-batches arrive packed (1-D arrays from the Rust packer). Every path applies the
LM head only at completion positions: the prompt's logits are never materialised; for
a plain linear head, nor are the completions' (``learner.head``).

- ``packed``: the micro-batch runs as it is, ``[1, T]``, no padding; position ids that
  restart at 0 give each document its rotary positions, and the model's attention
  kernel (``learner.attention``) gets the documents' boundaries: varlen kernels cost the
  sum of the squared document lengths; transformers' stock sdpa (``packed_dense``)
  turns the position ids into a dense ``T x T`` block-diagonal mask. Under FSDP, one
  root ``forward`` per micro-batch (its hooks gather the head there).
- ``padded`` (fallback): right-padded ``[S, L]`` chunks with a mask built from lengths
  (SmolLM2's pad token equals EOS, so masks never come from token ids).
- ``shared_prompt``: the packed row with each group's prompt once, its completions
  attending to it (``learner.shared``): a group of n samples runs its prompt once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from grpo_plug.config import ActorConfig
from grpo_plug.learner.attention import packed_kwargs, shared_prompt_kwargs
from grpo_plug.learner.head import hidden_logprobs, linear_head_weight, logits_logprobs
from grpo_plug.learner.shared import shared_row
from grpo_plug.padding import pad_batch


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
        logp, ent = _head_logprobs(model, h, targets, temperature, with_entropy)
        logps.append(logp)
        if ent is not None:
            ents.append(ent)
    logp = torch.cat(logps)
    ent = torch.cat(ents) if ents else torch.zeros_like(logp.detach())
    return logp, ent


def _head_logprobs(
    model: Any, h: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of ``targets`` [N] (and entropy) from predicting hidden states ``h`` [N, H]."""
    weight = linear_head_weight(model)
    if weight is not None:
        return hidden_logprobs(h, weight, targets, temperature, with_entropy)
    return logits_logprobs(model.get_output_embeddings()(h), targets, temperature, with_entropy)


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
    docs = packed_kwargs(model, mb.cu_seqlens, device)
    return _row_logprobs(
        model,
        mb.input_ids,
        mb.position_ids,
        sel - 1,
        mb.input_ids[sel],
        docs,
        temperature=temperature,
        with_entropy=with_entropy,
    )


def shared_prompt_logprobs(
    model: Any, mb: Any, *, temperature: float, with_entropy: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`packed_logprobs`, with each group's prompt once in the row
    (:mod:`grpo_plug.learner.shared`): a group of n samples runs its prompt once, not n
    times, and gradients reach the prompt from every completion that attends to it."""
    row = shared_row(mb)
    docs = shared_prompt_kwargs(model, row.groups)
    targets = mb.input_ids[mb.loss_mask > 0]
    return _row_logprobs(
        model,
        row.input_ids,
        row.position_ids,
        row.keep,
        targets,
        docs,
        temperature=temperature,
        with_entropy=with_entropy,
    )


def _row_logprobs(
    model: Any,
    input_ids: np.ndarray,
    position_ids: np.ndarray,
    keep: np.ndarray,
    targets: np.ndarray,
    docs: dict[str, Any],
    *,
    temperature: float,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``targets`` [N] predicted at the row indices ``keep`` of one packed
    row run as ``[1, R]``; ``docs``: the kernel's keyword arguments (its segments)."""
    device = next(model.parameters()).device
    ids = torch.from_numpy(input_ids)[None].to(device)  # [1, R]
    pos = torch.from_numpy(position_ids)[None].to(device)  # [1, R]
    keep_t = torch.from_numpy(keep).to(device)  # [N]
    tgt = torch.from_numpy(targets).to(device)
    weight = linear_head_weight(model)
    if weight is not None:  # the head on the kept hidden states, without [N, V] logits
        hidden = model.get_decoder()(input_ids=ids, position_ids=pos, use_cache=False, **docs)
        h = hidden[0].flatten(0, 1)[keep_t]  # [N, H]
        logp, ent = hidden_logprobs(h, weight, tgt, temperature, with_entropy)
    else:  # the model's own head, inside its root forward (FSDP gathers it there)
        out = model(input_ids=ids, position_ids=pos, logits_to_keep=keep_t, use_cache=False, **docs)
        # flatten, not [0]: select's backward would zero-fill and copy a whole [1, N, V] buffer
        logits = out.logits.flatten(0, 1)  # [N, V]
        logp, ent = logits_logprobs(logits, tgt, temperature, with_entropy)
    return logp, ent if ent is not None else torch.zeros_like(logp.detach())


def learner_logprobs(
    model: Any, mb: Any, cfg: ActorConfig, temperature: float, *, path: str, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs (and entropies) of the completion tokens of ``mb`` by ``path``, ``[N]``."""
    if path == "padded":
        return completion_logprobs(
            model, mb, temperature=temperature, max_seqs=cfg.batch_size, with_entropy=with_entropy
        )
    fn = packed_logprobs if path == "packed" else shared_prompt_logprobs
    return fn(model, mb, temperature=temperature, with_entropy=with_entropy)
