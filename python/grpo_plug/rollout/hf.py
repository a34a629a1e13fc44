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

Three CPU speed-ups, measured by ``bench/bench_rollout.py``:

- the KV cache is allocated once per batch for prompt + ``max_new_tokens`` and written
  in place (``PreallocLayer``), instead of ``torch.cat`` re-copying it every step;
  leaving rows are compacted inside the same buffer;
- ``rollout.sample_dtype``: sampling may run on a bfloat16 copy of the learner's fp32
  weights (AMX / AVX-512 BF16 matmuls are ~4x faster), refreshed whenever the
  learner's parameters change; the loss then uses the learner's own log-probs
  (the run plan switches ``actor.recompute_logprob`` on); greedy requests (the
  held-out eval) still decode with the learner's weights;
- the next token is drawn by inverse CDF (``draw_from``) instead of
  ``torch.multinomial``, whose CPU kernel draws one exponential per vocabulary entry.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from grpo_plug.config import TrainConfig
from grpo_plug.faults import fault_point
from grpo_plug.padding import cache_kwarg, pad_batch
from grpo_plug.plan import resolve as resolve_plan
from grpo_plug.threads import plan_for, torch_threads
from grpo_plug.types import (
    FinishReason,
    GenerationRequest,
    ReportsProgress,
    RolloutContext,
    Sample,
    SamplingParams,
)

Draw = Literal["cdf", "multinomial"]


def draw_from(
    probs: torch.Tensor, draw: Draw = "cdf", generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token per row of ``probs`` [N, V] (rows need not sum to 1).

    ``cdf``: one uniform number per row looked up in the cumulative sum. On CPU
    ``torch.multinomial`` draws an exponential variate for every vocabulary entry
    (~56 ms per decode step at 64 x 49152, a fifth of the step; bench_rollout);
    this is ~2 ms. A zero-probability token spans an empty interval, so it is never
    drawn. ``generator``: the random numbers' source (None: torch's global one)."""
    if draw == "multinomial":
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, device=probs.device, dtype=cdf.dtype, generator=generator)
    u = u * cdf[:, -1:]
    tok = torch.searchsorted(cdf, u, right=True).squeeze(-1)
    return tok.clamp_(max=probs.shape[-1] - 1)


def sample_next(
    logits: torch.Tensor,
    sp: SamplingParams,
    draw: Draw = "cdf",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token [N], its log-prob [N]) from raw logits [N, V]."""
    greedy = sp.temperature <= 0.0
    scaled = logits.float() / (1.0 if greedy else sp.temperature)
    logp = torch.log_softmax(scaled, dim=-1)
    if greedy:
        tok = logp.argmax(dim=-1)
    elif sp.top_k <= 0 and sp.top_p >= 1.0:
        tok = draw_from(logp.exp(), draw, generator)  # the full distribution: no second softmax
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
        tok = draw_from(torch.softmax(filt, dim=-1), draw, generator)
    return tok, logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)


CacheKind = Literal["prealloc", "dynamic"]


class PreallocLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A layer's KV cache in one buffer ``[B, H, capacity, D]`` written in place;
    ``keys``/``values`` are views of its filled part. Grows (doubling) only if a
    caller goes past ``capacity``."""

    def __init__(self, capacity: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.capacity = capacity
        self.length = 0
        self.kbuf: torch.Tensor | None = None
        self.vbuf: torch.Tensor | None = None

    def _views(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.kbuf is not None and self.vbuf is not None
        self.keys = self.kbuf[:, :, : self.length]
        self.values = self.vbuf[:, :, : self.length]
        return self.keys, self.values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + key_states.shape[-2]
        if self.kbuf is None or self.vbuf is None or end > self.kbuf.shape[2]:
            cap = max(self.capacity, end) if self.kbuf is None else max(2 * self.capacity, end)
            b, h, _, d = key_states.shape
            kbuf = key_states.new_empty(b, h, cap, d)
            vbuf = value_states.new_empty(b, h, cap, value_states.shape[-1])
            if self.kbuf is not None and self.vbuf is not None:
                kbuf[:, :, : self.length] = self.kbuf[:, :, : self.length]
                vbuf[:, :, : self.length] = self.vbuf[:, :, : self.length]
            self.kbuf, self.vbuf, self.capacity = kbuf, vbuf, cap
            self.device = key_states.device
            self.is_initialized = True
        self.kbuf[:, :, self.length : end] = key_states
        self.vbuf[:, :, self.length : end] = value_states
        self.length = end
        return self._views()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.kbuf is None or self.vbuf is None:
            return
        self.kbuf = self.kbuf.repeat_interleave(repeats, dim=0)
        self.vbuf = self.vbuf.repeat_interleave(repeats, dim=0)
        self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (ascending): gathered into the buffer's first rows, so
        only the filled part is copied and the buffer is not reallocated."""
        if self.kbuf is None or self.vbuf is None:
            return
        k, n = len(indices), self.length
        self.kbuf[:k, :, :n] = self.kbuf[indices, :, :n]
        self.vbuf[:k, :, :n] = self.vbuf[indices, :, :n]
        self.kbuf, self.vbuf = self.kbuf[:k], self.vbuf[:k]
        self._views()


def make_cache(kind: CacheKind, capacity: int) -> DynamicCache:
    cache = DynamicCache()
    if kind == "prealloc":
        cache.layer_class_to_replicate = lambda: PreallocLayer(capacity)  # type: ignore[assignment]
    return cache


class HFBackend(ReportsProgress):
    name = "hf"
    colocated = True
    in_process = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 64,
        sample_dtype: torch.dtype | None = None,
        cache: CacheKind = "prealloc",
        draw: Draw = "cdf",
        threads: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        """``sample_dtype``: sample with a copy of ``model`` in that dtype (``None`` or
        the model's own dtype: with ``model`` itself). ``cache``: ``dynamic`` is
        transformers' growing cache, kept as the reference the tests compare with;
        ``draw``: ``multinomial`` is the former sampler, kept for the benchmark.
        ``threads``: torch threads while generating (0 = the caller's; the thread plan
        gives rank 0 every core while the other learner ranks wait). ``generator``: the
        sampling noise's source (None: torch's global generator, the learner's too)."""
        self.model = model
        self.generator = generator
        self.threads = threads
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.cache_kind: CacheKind = cache
        self.draw: Draw = draw
        own = next(model.parameters()).dtype
        self.sample_dtype = own if sample_dtype is None else sample_dtype
        self._copy: Any | None = None
        self._copied_at: tuple[int, ...] | None = None  # the learner's tensor versions
        self.version = 0
        eos = tokenizer.eos_token_id
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids = {eos} | (set(gen_eos) if isinstance(gen_eos, list) else {gen_eos})
        self.eos_ids = sorted(i for i in ids if i is not None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        self.cache_kw = cache_kwarg(model)
        # (rows finished, tokens generated) increments per decode step, for progress.
        self.progress: Callable[[int, int], None] | None = None

    def set_progress(self, callback: Callable[[int, int], None] | None) -> None:
        self.progress = callback

    def set_policy_version(self, version: int) -> None:
        self.version = version
        self._copied_at = None  # the inplace sync: new weights, refresh the copy

    def sampler(self) -> Any:
        """The module that samples: the learner's own, or its copy in ``sample_dtype``,
        refreshed if any learner parameter changed since the last copy (an optimizer
        step or a checkpoint load bumps the tensors' version counters)."""
        if self.sample_dtype == next(self.model.parameters()).dtype:
            return self.model
        params = list(self.model.parameters())
        seen = tuple(p._version for p in params)
        if self._copy is None:
            self._copy = copy.deepcopy(self.model)
            for p in self._copy.parameters():
                p.requires_grad_(False)
                p.grad = None
                p.data = p.data.to(self.sample_dtype)  # buffers (rope) stay fp32
        elif seen != self._copied_at:
            with torch.no_grad():
                for dst, src in zip(self._copy.parameters(), params, strict=True):
                    dst.copy_(src)
        self._copied_at = seen
        return self._copy

    def detached(self, threads: int) -> HFBackend:
        """A backend for a producer thread (``rollout.max_head_offpolicyness``): a
        frozen copy of the weights in ``sample_dtype``, which only :meth:`load_weights`
        changes, and a torch.Generator of its own, so the learner's updates and its
        global random stream never reach it. Greedy requests also use the copy."""
        snap = copy.deepcopy(self.model)
        for p in snap.parameters():
            p.requires_grad_(False)
            p.grad = None
            p.data = p.data.to(self.sample_dtype)  # buffers (rope) stay fp32
        device = next(snap.parameters()).device
        twin = HFBackend(
            snap,
            self.tokenizer,
            max_batch_size=self.max_batch_size,
            cache=self.cache_kind,
            draw=self.draw,
            threads=threads,
            generator=torch.Generator(device=device),
        )
        twin.version = self.version
        return twin

    def reseed(self, seed: int) -> None:
        """Restart this backend's own random stream (see :meth:`detached`) at ``seed``."""
        if self.generator is None:
            self.generator = torch.Generator(device=next(self.model.parameters()).device)
        self.generator.manual_seed(seed)

    def load_weights(self, model: Any, version: int) -> None:
        """Copy ``model``'s parameters into this backend's own (see :meth:`detached`)."""
        with torch.no_grad():
            for dst, src in zip(self.model.parameters(), model.parameters(), strict=True):
                dst.copy_(src)
        self.set_policy_version(version)

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        return await asyncio.to_thread(self.generate, requests)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        with torch_threads(self.threads):
            return self._generate(requests)

    def _generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
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
        # Greedy decoding is the held-out eval: it runs the learner's own weights, so
        # the accuracy is the saved model's (what `grpo-plug eval` re-measures).
        model = self.model if sp.temperature <= 0.0 else self.sampler()  # as sample_next
        was_training = model.training
        model.eval()
        try:
            tokens, logps, finish = self._sample(model, *self._prefill(model, prompts, n, sp), sp)
        finally:
            model.train(was_training)
        return [
            Sample(
                rid="",
                output_ids=tokens[r],
                logprobs=logps[r],
                finish_reason=finish[r],
                policy_version=self.version,
            )
            for r in range(len(tokens))
        ]

    def _prefill(
        self, model: Any, prompts: Sequence[Sequence[int]], n: int, sp: SamplingParams
    ) -> tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each prompt's prefill, once: (cache, last logits, mask, next position), each
        repeated for the prompt's ``n`` samples."""
        device = next(model.parameters()).device
        ids, mask = pad_batch(prompts, left=True, pad_id=self.pad_id)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
        cache = make_cache(self.cache_kind, ids.shape[1] + sp.max_new_tokens)
        res = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_kw: cache},
        )
        logits = res.logits[:, -1, :]  # [P, V]
        if n > 1:  # the prompt's cache shared by its n samples
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)
            mask = mask.repeat_interleave(n, dim=0)
            pos = pos.repeat_interleave(n, dim=0)
        return cache, logits, mask, pos[:, -1:] + 1

    def _sample(
        self,
        model: Any,
        cache: Any,
        logits: torch.Tensor,
        mask: torch.Tensor,
        next_pos: torch.Tensor,
        sp: SamplingParams,
    ) -> tuple[list[list[int]], list[list[float]], list[FinishReason]]:
        """Decode every row from its prefill: (tokens, log-probs, finish reason) per row;
        finished rows leave the batch and its cache."""
        rows = logits.shape[0]
        alive = torch.arange(rows)  # original row of each batch row
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logps: list[list[float]] = [[] for _ in range(rows)]
        finish: list[FinishReason] = ["length"] * rows
        eos = torch.tensor(self.eos_ids, device=logits.device)
        for step in range(sp.max_new_tokens):
            if step < sp.min_new_tokens:  # no stop token yet (SGLang's min_new_tokens)
                logits = logits.index_fill(-1, eos, float("-inf"))
            tok, lp = sample_next(logits, sp, self.draw, self.generator)
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
            res = model(
                input_ids=tok.unsqueeze(-1),
                attention_mask=mask,
                position_ids=next_pos,
                use_cache=True,
                **{self.cache_kw: cache},
            )
            logits = res.logits[:, -1, :]
            next_pos = next_pos + 1
        return tokens, logps, finish

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass


def make_hf_backend(cfg: TrainConfig, ctx: RolloutContext) -> HFBackend:
    """In-process transformers generation sharing the learner's model; it samples in
    the plan's ``sample_dtype`` (a copy when that is not the learner's dtype)."""
    if ctx.model is None:
        raise ValueError("rollout.backend=hf needs the learner's model (colocated)")
    plan = ctx.plan or resolve_plan(cfg, device=ctx.device)
    dtype = getattr(torch, plan.sample_dtype)
    if ctx.message is not None and dtype != next(ctx.model.parameters()).dtype:
        ctx.message(
            f"hf rollout samples in {plan.sample_dtype} "
            "(rollout.sample_dtype); the loss recomputes log-probs with the learner"
        )
    return HFBackend(
        ctx.model,
        ctx.tokenizer,
        max_batch_size=cfg.rollout.max_batch_size,
        sample_dtype=dtype,
        threads=plan_for(cfg, gpu=False).generator if ctx.device == "cpu" else 0,
    )
