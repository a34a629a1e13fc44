"""In-process transformers generation (the ``hf`` rollout backend's engine).

Log-probs are computed as ``log_softmax(logits / T)`` of the raw logits at the sampled
token — the same formula the learner uses — so the importance ratio starts at 1
instead of drifting with top-p/top-k truncation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import torch

from grpo_plug.checkpoint import fault_point
from grpo_plug.types import FinishReason, GenerationRequest, Sample


class HFBackend:
    name = "hf"
    colocated = True

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 64) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.version = 0
        eos = tokenizer.eos_token_id
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        ids = {eos} | (set(gen_eos) if isinstance(gen_eos, list) else {gen_eos})
        self.eos_ids = sorted(i for i in ids if i is not None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    def set_policy_version(self, version: int) -> None:
        self.version = version

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        return await asyncio.to_thread(self.generate, requests)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        # Flatten to one row per sample; rows sharing sampling params are batched together.
        rows = [(ri, req) for ri, req in enumerate(requests) for _ in range(req.n)]
        out: list[list[Sample]] = [[] for _ in requests]
        for start in range(0, len(rows), self.max_batch_size):
            chunk = rows[start : start + self.max_batch_size]
            groups: dict[Any, list[tuple[int, GenerationRequest]]] = {}
            for row in chunk:
                groups.setdefault(row[1].sampling, []).append(row)
            for sampling, group in groups.items():
                for (ri, req), sample in zip(group, self._batch(group, sampling), strict=True):
                    sample.rid = req.rid
                    out[ri].append(sample)
                fault_point("mid_rollout")
        return out

    @torch.no_grad()  # type: ignore[untyped-decorator]
    def _batch(self, rows: list[tuple[int, GenerationRequest]], sp: Any) -> list[Sample]:
        device = next(self.model.parameters()).device
        prompts = [list(req.prompt_ids) for _, req in rows]
        width = max(len(p) for p in prompts)
        # Left padding; the mask comes from lengths because pad may equal EOS.
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p) :] = 1
        greedy = sp.temperature <= 0.0
        kwargs: dict[str, Any] = {
            "max_new_tokens": sp.max_new_tokens,
            "do_sample": not greedy,
            "eos_token_id": self.eos_ids,
            "pad_token_id": self.pad_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if not greedy:
            kwargs.update(temperature=sp.temperature, top_p=sp.top_p, top_k=max(sp.top_k, 0))
        was_training = self.model.training
        self.model.eval()
        try:
            res = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
            )
        finally:
            self.model.train(was_training)
        new = res.sequences[:, width:].cpu()  # [N, T]
        temp = 1.0 if greedy else sp.temperature
        # One step at a time: stacking [N, T, V] logits would cost ~1 GB at batch 64.
        cols = []
        for t, step_logits in enumerate(res.logits):  # each [N, V]
            lp = torch.log_softmax(step_logits.float() / temp, dim=-1)
            cols.append(lp.gather(-1, new[:, t : t + 1].to(lp.device)).squeeze(-1))
        tok_logp = torch.stack(cols, dim=1).cpu()  # [N, T]
        eos = torch.tensor(self.eos_ids)
        samples = []
        for i in range(new.shape[0]):
            ids = new[i].tolist()
            hit = torch.isin(new[i], eos).nonzero()
            finish: FinishReason = "length"
            n = len(ids)
            if len(hit) > 0:
                n = int(hit[0]) + 1  # keep the EOS token: the policy learns to stop
                finish = "stop"
            samples.append(
                Sample(
                    rid="",
                    output_ids=ids[:n],
                    logprobs=tok_logp[i, :n].tolist(),
                    finish_reason=finish,
                    policy_version=self.version,
                )
            )
        return samples

    def close(self) -> None:
        pass
