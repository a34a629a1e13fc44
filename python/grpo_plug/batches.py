"""Stages 1-3 of step ``M`` for any ``M``: the step's prompts (the epoch order), its
request seeds, its rounds of scored groups (dynamic sampling), and the JSON form of a
sampled step, which recover points hold.

Everything here depends on ``(seed, M)`` and the weights that sample, never on the
step the learner is at: a step sampled ahead of the learner
(``rollout.max_head_offpolicyness``), or again in a resumed run, draws what it would
have drawn anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grpo_plug import group_sampling as gs
from grpo_plug.config import TrainConfig
from grpo_plug.data.prompts import build_prompt
from grpo_plug.rewards import RewardSpec
from grpo_plug.rollout.controller import RolloutController
from grpo_plug.types import Example, GenerationRequest, Sample, Task

Stage = Callable[..., None]  # RunEvents.stage: (name, step, total=)


@dataclass
class SampledStep:
    """Step ``index``'s rollout: its rounds (one, or more with dynamic sampling) and
    the rollout layer's counters while it was sampled."""

    index: int
    rounds: list[gs.ScoredGroups]
    stats: dict[str, float]

    def merged(self) -> gs.ScoredGroups:
        return gs.merge(self.rounds)


class StepSampler:
    def __init__(
        self,
        cfg: TrainConfig,
        tokenizer: Any,
        task: Task,
        reward_fns: Sequence[RewardSpec],
        train_data: Sequence[Example],
    ) -> None:
        self.cfg, self.tokenizer, self.task = cfg, tokenizer, task
        self.reward_fns, self.train_data = reward_fns, train_data
        self.batch_size = cfg.train_dataset.batch_size
        self.steps_per_epoch = len(train_data) // self.batch_size
        self.prompt_cache: dict[str, list[int]] = {}
        self._by_uid: dict[str, Example] | None = None

    # ------------------------------------------------------------------ which prompts

    def prompt_ids(self, ex: Example) -> list[int]:
        if ex.uid not in self.prompt_cache:
            self.prompt_cache[ex.uid] = build_prompt(self.tokenizer, self.task, ex)
        return self.prompt_cache[ex.uid]

    def epoch_order(self, epoch: int) -> np.ndarray:
        n = len(self.train_data)
        if not self.cfg.train_dataset.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(n)

    def batch(self, index: int) -> list[Example]:
        """The prompts of step ``index``: its slice of its epoch's order."""
        epoch, pos = divmod(index, self.steps_per_epoch)
        bs = self.batch_size
        return [self.train_data[i] for i in self.epoch_order(epoch)[pos * bs : (pos + 1) * bs]]

    def request_seed(self, step: int, index: int) -> int:
        """Seed of request ``index`` of ``step`` (backends with per-request seeds): the
        same in a resumed run as in the uninterrupted one."""
        seq = np.random.SeedSequence([self.cfg.seed, step, index])
        return int(seq.generate_state(1)[0]) * self.cfg.gconfig.n_samples

    def requests(
        self, batch: Sequence[Example], step: int, first_index: int
    ) -> list[GenerationRequest]:
        g = self.cfg.gconfig
        sp = gs.training_sampling(self.cfg)
        return [
            GenerationRequest(
                ex.uid,
                self.prompt_ids(ex),
                g.n_samples,
                sp,
                seed=self.request_seed(step, first_index + i),
            )
            for i, ex in enumerate(batch)
        ]

    # ------------------------------------------------------------------ sampling

    def sample(
        self,
        rollout: RolloutController,
        step: int,
        batch: Sequence[Example] | None = None,
        *,
        min_version: int | None = None,
        stage: Stage | None = None,
    ) -> SampledStep:
        """Stages 1-3 of ``step`` (``batch``: its prompts, default :meth:`batch`), with
        the extra rounds of dynamic sampling; ``min_version``: see
        :func:`group_sampling.sample_groups`. ``stage`` hears each round start."""
        cfg = self.cfg
        batch = self.batch(step) if batch is None else batch
        rounds = [self.sample_round(rollout, batch, step, 0, min_version, stage)]
        while gs.wants_another_round(cfg, rounds):  # dynamic sampling
            extra = gs.extra_prompts(self.train_data, cfg.seed, step, len(rounds), len(batch))
            first = sum(len(r.examples) for r in rounds)
            rounds.append(self.sample_round(rollout, extra, step, first, min_version, stage))
        return SampledStep(step, rounds, rollout.pop_metrics())

    def sample_round(
        self,
        rollout: RolloutController,
        batch: Sequence[Example],
        step: int,
        first_index: int,
        min_version: int | None = None,
        stage: Stage | None = None,
    ) -> gs.ScoredGroups:
        """Stages 1-3 for ``batch``; its requests are numbered from ``first_index``."""
        reqs = self.requests(batch, step, first_index)
        if stage is not None:
            stage("rollout", step + 1, total=len(reqs) * self.cfg.gconfig.n_samples)
        return gs.sample_groups(
            rollout, self.tokenizer, self.task, self.reward_fns, self.cfg, batch, reqs, min_version
        )

    # ------------------------------------------------------------------ JSON (recover points)

    def to_json(self, step: SampledStep) -> dict[str, Any]:
        """What a recover point keeps of a sampled step: its prompts and samples; the
        rewards and advantages are computed again from them on load (deterministic)."""
        return {
            "index": step.index,
            "stats": step.stats,
            "rounds": [
                {
                    "uids": [ex.uid for ex in r.examples],
                    "samples": [_sample_json(s) for s in r.samples],
                    "regenerated": r.regenerated,
                }
                for r in step.rounds
            ],
        }

    def from_json(self, data: dict[str, Any]) -> SampledStep:
        """A step saved by :meth:`to_json`, scored again."""
        if self._by_uid is None:
            self._by_uid = {ex.uid: ex for ex in self.train_data}
        G = self.cfg.gconfig.n_samples
        rounds = []
        for r in data["rounds"]:
            examples = [self._by_uid[uid] for uid in r["uids"]]
            flat = [Sample(**s) for s in r["samples"]]
            groups = [flat[i * G : (i + 1) * G] for i in range(len(examples))]
            prompts = [self.prompt_ids(ex) for ex in examples]
            rounds.append(
                gs.score_groups(
                    self.tokenizer,
                    self.task,
                    self.reward_fns,
                    self.cfg,
                    examples,
                    prompts,
                    groups,
                    0.0,
                    regenerated=int(r["regenerated"]),
                )
            )
            rounds[-1].seconds_rollout = rounds[-1].seconds_reward = 0.0
        stats = {str(k): float(v) for k, v in data["stats"].items()}
        return SampledStep(int(data["index"]), rounds, stats)


def _sample_json(s: Sample) -> dict[str, Any]:
    return {
        "rid": s.rid,
        "output_ids": list(s.output_ids),
        "logprobs": list(s.logprobs),  # floats round-trip through JSON exactly
        "finish_reason": s.finish_reason,
        "policy_version": s.policy_version,
        "policy_versions": list(s.policy_versions),
        "token_versions": list(s.token_versions),
    }
