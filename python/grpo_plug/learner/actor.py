"""The learner: model, reference model, optimizer, scheduler and one GRPO train step.

On one rank it is a plain module on one device. Under torchrun with more than one
rank every rank builds the same model from ``actor.path``, shards it with FSDP2 and
gets the same :class:`LearnerBatch`; the Rust packer gives each rank the same number
of micro-batches (balanced by tokens), so no rank waits in a collective, and every
token's weight uses the global counts, so the update does not depend on the number of
ranks.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from grpo_plug import core
from grpo_plug.config import ActorConfig, TrainConfig
from grpo_plug.errors import PackingInfeasible
from grpo_plug.faults import fault_point
from grpo_plug.learner import attention, fsdp
from grpo_plug.learner.dist import DistInfo, all_reduce_sum
from grpo_plug.learner.oom import oom_advice
from grpo_plug.learner.shared import pack_groups
from grpo_plug.learner.step import (
    MinibatchStats,
    count_real,
    learner_old_logprobs,
    recompute_old_logprobs,
    train_minibatch,
)
from grpo_plug.metrics import names as mn
from grpo_plug.models import disable_dropout, load_model
from grpo_plug.plan import RunPlan
from grpo_plug.plan import resolve as resolve_plan


@dataclass
class LearnerBatch:
    """One rollout batch as the learner needs it, ``B*G`` sequences (picklable, so
    rank 0 can broadcast it)."""

    prompts: list[list[int]]
    completions: list[list[int]]
    logprobs: list[list[float]]
    advantages: np.ndarray  # float32 [B*G]
    kept: np.ndarray  # int64 [K]: indices of the sequences that train (groups with signal)


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
        if cfg.lr_scheduler_type == "linear":
            return 1.0 - (1.0 - cfg.min_lr_ratio) * progress
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def pack_for_ranks(
    batch: LearnerBatch,
    idx: np.ndarray,
    max_tokens: int,
    n_ranks: int,
    max_seqs: int | None = None,
    *,
    groups: bool = False,
) -> tuple[list[list[core.MicroBatch]], int]:
    """``[rank][micro_batch]`` of the sequences ``idx``, and how many are real;
    ``max_seqs``: at most that many sequences per micro-batch; ``groups``: keep each
    group's samples together where the budget allows (the shared_prompt path).

    With too few sequences for equal micro-batch counts, copies of the shortest one are
    added as zero-weight filler: every rank still runs the same forwards and backwards.
    """
    prompts = [batch.prompts[i] for i in idx]
    comps = [batch.completions[i] for i in idx]
    lps = [batch.logprobs[i] for i in idx]
    adv = [float(batch.advantages[i]) for i in idx]
    n_real = len(prompts)
    if groups and n_real:
        grouped = pack_groups(
            prompts, comps, lps, adv, max_tokens=max_tokens, n_ranks=n_ranks, max_seqs=max_seqs
        )
        if grouped is not None:
            return grouped, n_real
    shortest = int(np.argmin([len(p) + len(c) for p, c in zip(prompts, comps, strict=True)]))
    for _ in range(4 * n_ranks + 1):
        try:
            packed = core.pack_microbatches(
                prompts,
                comps,
                lps,
                np.asarray(adv),
                max_tokens=max_tokens,
                n_ranks=n_ranks,
                max_seqs=max_seqs,
            )
            return packed, n_real
        except PackingInfeasible:
            pass  # too few sequences for the ranks: pad with zero-advantage copies
        prompts.append(prompts[shortest])
        comps.append(comps[shortest])
        lps.append(lps[shortest])
        adv.append(0.0)
    raise PackingInfeasible(f"could not pack {n_real} sequences for {n_ranks} ranks")


def decoupled_metrics(total: MinibatchStats) -> dict[str, float]:
    """The decoupled loss's weights over the step: their mean within the cap (left out
    when every token was over it) and the fraction masked."""
    out = {mn.BEHAV_MASKED: total.behav_masked / max(total.behav_kept + total.behav_masked, 1.0)}
    if total.behav_kept > 0:
        out[mn.BEHAV_IMP_WEIGHT] = total.behav_weight / total.behav_kept
    return out


def resolve_attention(cfg: ActorConfig, info: DistInfo) -> str:
    """What ``actor.attention`` runs on this rank layout and device (see
    :func:`grpo_plug.learner.attention.resolve`)."""
    return attention.resolve(
        cfg.attention,
        world_size=info.world_size,
        device=str(info.device),
    )


class Learner:
    """Owns the trained model and everything that changes it."""

    def __init__(
        self, cfg: TrainConfig, total_steps: int, info: DistInfo, plan: RunPlan | None = None
    ) -> None:
        self.cfg, self.actor, self.info = cfg, cfg.actor, info
        # Effective, not the config's: bf16 sampling turns it on (see grpo_plug.plan).
        self.recompute = (plan or resolve_plan(cfg)).recompute_logprob
        device = str(info.device)
        # A derived setting (the config is not changed): what actor.attention runs here.
        self.attention = resolve_attention(cfg.actor, info)
        self.path = attention.path_of(self.attention)
        dtype = cfg.actor.dtype
        if info.distributed and cfg.actor.mixed_precision and info.device.type == "cuda":
            dtype = "float32"  # master weights; FSDP computes in bf16
        self.model = load_model(cfg.actor.path, dtype=dtype, device=device)
        if cfg.actor.disable_dropout:
            disable_dropout(self.model)
        attention.use(self.model, self.attention)
        if cfg.actor.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.model.config.use_cache = True
        self.ref_model: Any | None = None
        if cfg.actor.kl_ctl > 0:
            self.ref_model = load_model(cfg.actor.path, dtype=dtype, device=device)
            self.ref_model.requires_grad_(False).eval()
            attention.use(self.ref_model, self.attention)
        if info.distributed:
            fsdp.shard_model(self.model, info, mixed_precision=cfg.actor.mixed_precision)
            if self.ref_model is not None:
                fsdp.shard_model(self.ref_model, info, mixed_precision=cfg.actor.mixed_precision)
        self.optimizer = make_optimizer(self.model, cfg.actor)
        self.scheduler = make_scheduler(self.optimizer, cfg.actor, total_steps)

    @property
    def temperature(self) -> float:
        t = self.cfg.gconfig.temperature
        return t if t > 0 else 1.0

    def train_step(self, batch: LearnerBatch) -> dict[str, float]:
        """Minibatch by minibatch: pack, forward/backward, clip, AdamW; then the LR step.

        Returns the step's metrics (loss and friends only when something trained).
        """
        stats: dict[str, float] = {}
        if len(batch.kept) > 0:
            with oom_advice(self.cfg, self.info.device):
                stats = self._minibatches(batch)
        stats[mn.LR] = float(self.scheduler.get_last_lr()[0])
        with warnings.catch_warnings():
            # The schedule follows global steps, also those with no optimizer step.
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        return stats

    def _recompute(
        self, minibatches: list[list[core.MicroBatch]]
    ) -> tuple[torch.Tensor, list[list[np.ndarray] | None]]:
        """The learner's log-probs of every minibatch, all before the first update: they
        replace the sampler's (pi_old), or under the decoupled loss come back beside them
        (pi_prox, one array per micro-batch). Also (sum |sampler - learner|, tokens)."""
        a = self.actor
        mismatch = torch.zeros(2, dtype=torch.float64)
        proxes: list[list[np.ndarray] | None] = []
        for mine in minibatches:
            prox: list[np.ndarray] | None = None
            if a.use_decoupled_loss:
                prox, diff, n = learner_old_logprobs(
                    self.model, mine, a, self.temperature, self.path
                )
            else:
                diff, n = recompute_old_logprobs(self.model, mine, a, self.temperature, self.path)
            mismatch += torch.tensor((diff, n), dtype=torch.float64)
            proxes.append(prox)
        return mismatch, proxes

    def micro_batch_seqs(self) -> int | None:
        """Most sequences in one packed micro-batch, or None (no cap).

        actor.batch_size is sequences per forward: the padded paths chunk each forward
        by it; on the packed paths (packed, shared_prompt) a micro-batch is one forward, so
        it caps its sequences.
        """
        return self.actor.batch_size if self.path != "padded" else None

    def pack(self, batch: LearnerBatch, idx: np.ndarray) -> tuple[list[list[core.MicroBatch]], int]:
        """The micro-batches this learner runs for the sequences ``idx`` of ``batch``
        (:func:`pack_for_ranks` with its budget, ranks and path)."""
        a = self.actor
        return pack_for_ranks(
            batch,
            idx,
            a.mb_max_tokens,
            self.info.world_size,
            self.micro_batch_seqs(),
            groups=self.path == "shared_prompt",
        )

    def _minibatches(self, batch: LearnerBatch) -> dict[str, float]:
        a = self.actor
        self.model.train()
        chunks = np.array_split(batch.kept, min(a.ppo_n_minibatches, len(batch.kept)))
        acc = torch.zeros(len(MinibatchStats().as_tensor()), dtype=torch.float64)
        norms = []
        packed = [self.pack(batch, i) for i in chunks]
        mismatch = torch.zeros(2, dtype=torch.float64)  # sum |sampler - learner|, tokens
        # One minibatch: its own forward is before any update, so pi_old is that forward's
        # detached log-probs and the separate no-grad pass is skipped.
        fused = self.recompute and len(chunks) == 1
        proxes: list[list[np.ndarray] | None] = [None] * len(packed)
        if self.recompute and not fused:
            mismatch, proxes = self._recompute([r[self.info.rank] for r, _ in packed])
        for (per_rank, n_real), prox_mb in zip(packed, proxes, strict=True):
            mine = per_rank[self.info.rank]
            st = train_minibatch(
                self.model,
                self.ref_model,
                mine,
                a,
                temperature=self.temperature,
                max_new_tokens=self.cfg.gconfig.max_new_tokens,
                path=self.path,
                counts=count_real([mb for r in per_rank for mb in r], n_real),
                n_real=n_real,
                old_from_learner=fused,
                prox=prox_mb,
            )
            max_norm = a.max_grad_norm if a.max_grad_norm > 0 else float("inf")
            norms.append(fsdp.grad_norm_and_clip(self.model, max_norm))
            fault_point("mid_optimizer_step")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            acc += st.as_tensor() / len(chunks)
        total = MinibatchStats.from_tensor(all_reduce_sum(acc, self.info))
        extra: dict[str, float] = {}
        if fused:
            extra[mn.SAMPLER_LOGPROB_DIFF] = total.sampler_diff
        elif self.recompute:
            diff_sum, n_tok = all_reduce_sum(mismatch, self.info).tolist()
            extra[mn.SAMPLER_LOGPROB_DIFF] = diff_sum / max(n_tok, 1.0)
        if a.use_decoupled_loss:
            extra.update(decoupled_metrics(total))
        return {
            **extra,
            mn.LOSS: total.loss,
            mn.KL: total.kl,
            mn.CLIP_RATIO: total.clip_ratio,
            mn.ENTROPY: total.entropy,
            mn.IMPORTANCE_WEIGHT: total.ratio_mean,
            mn.LOGPROB_DIFF: total.logp_diff,
            # Over all minibatches of the step, not the last one only.
            mn.GRAD_NORM: float(np.mean(norms)),
        }
