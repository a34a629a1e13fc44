"""Stages 1-3 of a step for one round of prompts: sample the groups, score them,
give them group-relative advantages; and dynamic sampling (DAPO, Yu et al., 2025),
which draws more rounds while too few groups have signal.

A group whose rewards are all equal has zero advantage and teaches nothing. When
``dynamic_sampling.max_rounds`` is set and fewer than ``dynamic_sampling.min_groups``
of the step's groups have signal, the step samples another ``train_dataset.batch_size``
prompts, up to ``max_rounds`` times. Extra prompts are drawn at random from the whole
training set by ``(seed, step, round)``, never from the epoch order, so the epoch order
and a resumed run's batches stay what they were.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grpo_plug import core
from grpo_plug.config import TrainConfig
from grpo_plug.rewards import RewardSpec, example_fields, score_samples
from grpo_plug.rollout.controller import RolloutController
from grpo_plug.types import Example, GenerationRequest, Sample, Task


@dataclass
class ScoredGroups:
    """``B`` prompts x ``G`` samples, flat ``[B*G]`` and grouped by prompt."""

    examples: list[Example]  # [B]
    questions: list[str]  # [B*G] question texts, as the reward functions got them
    prompts: list[list[int]]  # [B*G] prompt token ids
    samples: list[Sample]  # [B*G]
    texts: list[str]  # [B*G] decoded completions
    no_eos: np.ndarray  # [B*G] cut at max_new_tokens
    rewards: np.ndarray  # [B*G] weighted sum of the reward functions
    task_reward: np.ndarray  # [B*G] accuracy
    per_function: dict[str, np.ndarray]  # name -> [B*G]
    advantages: np.ndarray  # [B*G]
    has_signal: np.ndarray  # [B] some advantage is non-zero
    seconds_rollout: float
    seconds_reward: float


def sample_groups(
    rollout: RolloutController,
    tokenizer: object,
    task: Task,
    reward_fns: Sequence[RewardSpec],
    cfg: TrainConfig,
    examples: Sequence[Example],
    reqs: Sequence[GenerationRequest],
) -> ScoredGroups:
    """1. rollout, 2. reward, 3. advantages for ``reqs`` (one per example)."""
    G = cfg.gconfig.n_samples
    t0 = time.perf_counter()
    groups = rollout.generate(list(reqs))
    samples = [s for g in groups for s in g]  # [B*G], grouped by prompt
    decode = tokenizer.decode  # type: ignore[attr-defined]
    texts = [decode(s.output_ids, skip_special_tokens=True) for s in samples]
    # Cut at max_new_tokens; the controller has resubmitted every abort.
    no_eos = np.array([s.finish_reason == "length" for s in samples])
    t1 = time.perf_counter()

    golds = [ex.gold for ex in examples for _ in range(G)]
    questions = [ex.question for ex in examples for _ in range(G)]
    ids = [list(s.output_ids) for s in samples]
    scores = score_samples(
        reward_fns,
        task,
        questions,
        texts,
        golds,
        no_eos,
        cfg,
        completion_ids=ids,
        fields=example_fields(examples, G),
    )
    adv = core.group_advantages(
        scores.reward, G, mode=cfg.actor.adv_mode, normalize_batch=cfg.actor.adv_batch_norm
    )
    return ScoredGroups(
        examples=list(examples),
        questions=questions,
        prompts=[list(r.prompt_ids) for r in reqs for _ in range(G)],
        samples=samples,
        texts=texts,
        no_eos=no_eos,
        rewards=scores.reward,
        task_reward=scores.task_reward,
        per_function=scores.per_function,
        advantages=adv,
        has_signal=np.abs(adv.reshape(-1, G)).max(axis=1) > 0,
        seconds_rollout=t1 - t0,
        seconds_reward=time.perf_counter() - t1,
    )


def merge(rounds: Sequence[ScoredGroups]) -> ScoredGroups:
    """One step's rounds as one batch, in order (advantages stay per group)."""
    if len(rounds) == 1:
        return rounds[0]
    cat = np.concatenate
    names = rounds[0].per_function
    return ScoredGroups(
        examples=[ex for r in rounds for ex in r.examples],
        questions=[q for r in rounds for q in r.questions],
        prompts=[p for r in rounds for p in r.prompts],
        samples=[s for r in rounds for s in r.samples],
        texts=[t for r in rounds for t in r.texts],
        no_eos=cat([r.no_eos for r in rounds]),
        rewards=cat([r.rewards for r in rounds]),
        task_reward=cat([r.task_reward for r in rounds]),
        per_function={n: cat([r.per_function[n] for r in rounds]) for n in names},
        advantages=cat([r.advantages for r in rounds]),
        has_signal=cat([r.has_signal for r in rounds]),
        seconds_rollout=sum(r.seconds_rollout for r in rounds),
        seconds_reward=sum(r.seconds_reward for r in rounds),
    )


def wants_another_round(cfg: TrainConfig, rounds: Sequence[ScoredGroups]) -> bool:
    """Dynamic sampling: fewer groups with signal than wanted, and rounds left."""
    ds = cfg.dynamic_sampling
    if len(rounds) > ds.max_rounds:
        return False
    wanted = ds.min_groups or cfg.train_dataset.batch_size
    return int(sum(r.has_signal.sum() for r in rounds)) < wanted


def extra_prompts(
    data: Sequence[Example], seed: int, step: int, round_index: int, n: int
) -> list[Example]:
    """``n`` distinct training examples for extra round ``round_index`` of ``step``:
    the same in a resumed run as in the uninterrupted one."""
    rng = np.random.default_rng([seed, step, round_index, 0x44415030])  # "DAP0"
    picks = rng.choice(len(data), size=min(n, len(data)), replace=False)
    return [data[int(i)] for i in picks]
