"""The ``hf`` rollout backend: in-process generation with the learner's own module.

It is the simple case of the rollout-backend interface: colocated (weight sync only
moves the policy version) and in-process (the controller hands it whole batches).

A small decode loop over a transformers causal LM and its KV cache, instead of
``generate()``, for three reasons:

- log-probs are ``log_softmax(logits / T)`` of the raw logits at the sampled token —
  the learner's formula — computed on the fly for one token per row (asking
  ``generate`` for all step logits kept [N, V] per step and cost ~70% more time);
- each prompt is prefilled once and its cache repeated for its n samples;
- rows that hit EOS leave the batch (the cache shrinks), so one long answer does
  not make every finished row keep decoding.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import torch

from grpo_plug.batching import cache_kwarg, pad_batch
from grpo_plug.checkpoint import fault_point
from grpo_plug.config import TrainConfig
from grpo_plug.types import (
    FinishReason,
    GenerationRequest,
    RolloutContext,
    Sample,
    SamplingParams,
)


def sample_next(logits: torch.Tensor, sp: SamplingParams) -> tuple[torch.Tensor, torch.Tensor]:
    """(token [N], its log-prob [N]) from raw logits [N, V]."""
    greedy = sp.temperature <= 0.0
    scaled = logits.float() / (1.0 if greedy else sp.temperature)
    logp = torch.log_softmax(scaled, dim=-1)
    if greedy:
        tok = logp.argmax(dim=-1)
    else:
        filt = scaled
        if sp.top_k > 0 and sp.top_k < filt.shape[-1]:
            kth = torch.topk(filt, sp.top_k, dim=-1).values[:, -1:]
            filt = filt.masked_fill(filt < kth, float("-inf"))
        if sp.top_p < 1.0:
            sorted_logits, order = torch.sort(filt, descending=True, dim=-1)
            probs = torch.softmax(sorted_logits, dim=-1)
            # Drop a token once the mass before it already exceeds top_p.
            drop = probs.cumsum(dim=-1) - probs > sp.top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            filt = torch.full_like(filt, float("-inf")).scatter(-1, order, sorted_logits)
        tok = torch.multinomial(torch.softmax(filt, dim=-1), 1).squeeze(-1)
    return tok, logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)


class HFBackend:
    name = "hf"
    colocated = True
    in_process = True

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.version = 0
        eos = tokenizer.eos_token_id
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids = {eos} | (set(gen_eos) if isinstance(gen_eos, list) else {gen_eos})
        self.eos_ids = sorted(i for i in ids if i is not None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        self.cache_kw = cache_kwarg(model)
        # (rows finished, tokens generated) increments per decode step, for progress.
        self.progress: Callable[[int, int], None] | None = None

    def set_policy_version(self, version: int) -> None:
        self.version = version

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        return await asyncio.to_thread(self.generate, requests)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        out: list[list[Sample]] = [[] for _ in requests]
        # Chunks of whole requests with equal sampling params, <= max_batch_size rows each.
        by_params: dict[tuple[SamplingParams, int], list[int]] = {}
        for i, req in enumerate(requests):
            by_params.setdefault((req.sampling, req.n), []).append(i)
        for (sp, n), idxs in by_params.items():
            per_chunk = max(1, self.max_batch_size // max(n, 1))
            for start in range(0, len(idxs), per_chunk):
                chunk = idxs[start : start + per_chunk]
                rows = self._decode([requests[i].prompt_ids for i in chunk], n, sp)
                for k, i in enumerate(chunk):
                    for sample in rows[k * n : (k + 1) * n]:
                        sample.rid = requests[i].rid
                        out[i].append(sample)
                fault_point("mid_rollout")
        return out

    @torch.no_grad()
    def _decode(self, prompts: Sequence[Sequence[int]], n: int, sp: SamplingParams) -> list[Sample]:
        from transformers import DynamicCache

        device = next(self.model.parameters()).device
        ids, mask = pad_batch(prompts, left=True, pad_id=self.pad_id)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
        was_training = self.model.training
        self.model.eval()
        try:
            cache = DynamicCache()
            res = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                use_cache=True,
                logits_to_keep=1,
                **{self.cache_kw: cache},
            )
            logits = res.logits[:, -1, :]  # [P, V]
            if n > 1:  # one prefill per prompt, its cache shared by its n samples
                cache.batch_repeat_interleave(n)
                logits = logits.repeat_interleave(n, dim=0)
                mask = mask.repeat_interleave(n, dim=0)
                pos = pos.repeat_interleave(n, dim=0)
            rows = logits.shape[0]
            alive = torch.arange(rows)  # original row of each batch row
            tokens: list[list[int]] = [[] for _ in range(rows)]
            logps: list[list[float]] = [[] for _ in range(rows)]
            finish: list[FinishReason] = ["length"] * rows
            eos = torch.tensor(self.eos_ids, device=device)
            next_pos = pos[:, -1:] + 1
            for step in range(sp.max_new_tokens):
                tok, lp = sample_next(logits, sp)
                tok_l, lp_l = tok.tolist(), lp.tolist()
                for b, r in enumerate(alive.tolist()):
                    tokens[r].append(tok_l[b])
                    logps[r].append(lp_l[b])
                done = torch.isin(tok, eos)
                finished = done.nonzero().flatten().tolist()
                for b in finished:
                    finish[int(alive[b])] = "stop"
                last = step == sp.max_new_tokens - 1
                if self.progress is not None:
                    self.progress(len(alive) if last else len(finished), len(alive))
                if last:
                    break
                keep = (~done).nonzero().flatten()
                if len(keep) == 0:
                    break
                if len(keep) < len(alive):
                    cache.batch_select_indices(keep)
                    alive, tok = alive[keep.cpu()], tok[keep]
                    mask, next_pos = mask[keep], next_pos[keep]
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                res = self.model(
                    input_ids=tok.unsqueeze(-1),
                    attention_mask=mask,
                    position_ids=next_pos,
                    use_cache=True,
                    **{self.cache_kw: cache},
                )
                logits = res.logits[:, -1, :]
                next_pos = next_pos + 1
        finally:
            self.model.train(was_training)
        return [
            Sample(
                rid="",
                output_ids=tokens[r],
                logprobs=logps[r],
                finish_reason=finish[r],
                policy_version=self.version,
            )
            for r in range(rows)
        ]

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass


def make_hf_backend(cfg: TrainConfig, ctx: RolloutContext) -> HFBackend:
    """In-process transformers generation sharing the learner's model."""
    if ctx.model is None:
        raise ValueError("rollout.backend=hf needs the learner's model (colocated)")
    return HFBackend(ctx.model, ctx.tokenizer, max_batch_size=cfg.rollout.max_batch_size)
