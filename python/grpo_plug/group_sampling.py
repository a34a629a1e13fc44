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

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grpo_plug import core
from grpo_plug.config import TrainConfig
from grpo_plug.errors import RolloutError
from grpo_plug.rewards import RewardSpec, score_samples
from grpo_plug.rollout.controller import RolloutController
from grpo_plug.types import Example, GenerationRequest, Sample, SamplingParams, Task


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
    regenerated: int = 0  # groups generated again for breaking the staleness bound


def sample_groups(
    rollout: RolloutController,
    tokenizer: object,
    task: Task,
    reward_fns: Sequence[RewardSpec],
    cfg: TrainConfig,
    examples: Sequence[Example],
    reqs: Sequence[GenerationRequest],
    min_version: int | None = None,
) -> ScoredGroups:
    """1. rollout, 2. reward, 3. advantages for ``reqs`` (one per example).

    ``min_version`` (asynchronous runs): a group with a token older than that policy
    version is never kept; it is generated again, and counted in ``regenerated``."""
    t0 = time.perf_counter()
    groups = rollout.generate(list(reqs))
    regenerated = 0
    if min_version is not None:
        groups, regenerated = regenerate_stale(rollout, reqs, groups, min_version)
    return score_groups(
        tokenizer, task, reward_fns, cfg, examples, reqs, groups, t0, regenerated=regenerated
    )


MAX_REGENERATIONS = 8  # rounds of regenerating stale groups before the step fails


def regenerate_stale(
    rollout: RolloutController,
    reqs: Sequence[GenerationRequest],
    groups: list[list[Sample]],
    min_version: int,
) -> tuple[list[list[Sample]], int]:
    """``groups`` with every group that has a token older than ``min_version`` generated
    again (the same request: versions only rise, so the new one is fresh); the count."""
    done = 0
    for _ in range(MAX_REGENERATIONS):
        stale = [i for i, g in enumerate(groups) if min(s.policy_version for s in g) < min_version]
        if not stale:
            return groups, done
        done += len(stale)
        for i, fresh in zip(stale, rollout.generate([reqs[i] for i in stale]), strict=True):
            groups[i] = fresh
    raise RolloutError(
        f"rollout.max_head_offpolicyness: groups still older than policy version "
        f"{min_version} after {MAX_REGENERATIONS} regenerations (the servers do not take "
        "the weight updates)"
    )


def score_groups(
    tokenizer: object,
    task: Task,
    reward_fns: Sequence[RewardSpec],
    cfg: TrainConfig,
    examples: Sequence[Example],
    reqs: Sequence[GenerationRequest] | Sequence[Sequence[int]],
    groups: Sequence[Sequence[Sample]],
    t0: float,
    *,
    regenerated: int = 0,
) -> ScoredGroups:
    """2. reward, 3. advantages for generated ``groups`` (one per example; ``reqs``:
    the requests or their prompt ids); ``t0``: when their generation started."""
    G = cfg.gconfig.n_samples
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
        reward_fns, task, questions, texts, golds, no_eos, cfg, completion_ids=ids
    )
    adv = group_advantages(scores.reward, cfg)
    prompt_ids = [r.prompt_ids if isinstance(r, GenerationRequest) else r for r in reqs]
    return ScoredGroups(
        examples=list(examples),
        questions=questions,
        prompts=[list(p) for p in prompt_ids for _ in range(G)],
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
        regenerated=regenerated,
    )


def group_advantages(rewards: np.ndarray, cfg: TrainConfig) -> np.ndarray:
    """Group-relative advantages of ``(reward + actor.reward_bias) * actor.reward_scaling``
    (AReaL's order; the logged rewards stay unscaled)."""
    shaped = (rewards + cfg.actor.reward_bias) * cfg.actor.reward_scaling
    return core.group_advantages(
        shaped,
        cfg.gconfig.n_samples,
        mode=cfg.actor.adv_mode,
        normalize_batch=cfg.actor.adv_batch_norm,
    )


def normalize_advantages(
    adv: np.ndarray,
    lengths: np.ndarray,
    kept: np.ndarray,
    group_size: int,
    mean_level: str,
    std_level: str,
) -> np.ndarray:
    """AReaL's ``adv_norm`` over completion tokens: every token of a sequence carries its
    advantage, so a sequence weighs its length. ``mean_level`` / ``std_level``: ``batch``
    (the sequences that train, ``kept``), ``group`` (each prompt's) or ``none``. The std
    is unbiased, plus 1e-5; sequences not kept stay as they were."""
    if mean_level == "none" and std_level == "none":
        return adv
    out = adv.astype(np.float64)
    w = np.where(kept, lengths, 0).astype(np.float64)
    if mean_level != "none":
        out = out - _weighted(out, w, group_size if mean_level == "group" else None, "mean")
    if std_level != "none":
        out = out / (_weighted(out, w, group_size if std_level == "group" else None, "std") + 1e-5)
    return np.where(kept, out, adv).astype(np.float32)


def _weighted(x: np.ndarray, w: np.ndarray, group: int | None, what: str) -> np.ndarray:
    """Token-weighted mean or unbiased std of ``x`` over the batch (``group`` None) or
    per consecutive group, broadcast back to ``x``'s shape."""
    xs, ws = (x, w) if group is None else (x.reshape(-1, group), w.reshape(-1, group))
    axis = None if group is None else 1
    n = ws.sum(axis=axis, keepdims=group is not None)
    mean = (xs * ws).sum(axis=axis, keepdims=group is not None) / np.maximum(n, 1.0)
    if what == "mean":
        res = mean
    else:
        var = (ws * (xs - mean) ** 2).sum(axis=axis, keepdims=group is not None)
        res = np.sqrt(var / np.maximum(n - 1.0, 1.0))
    return np.broadcast_to(res, xs.shape).reshape(x.shape)


def normalize_scored(got: ScoredGroups, cfg: TrainConfig) -> ScoredGroups:
    """The step's batch with ``actor.adv_norm`` applied over the groups that train."""
    norm = cfg.actor.adv_norm
    if norm.mean_level == "none" and norm.std_level == "none":
        return got
    G = cfg.gconfig.n_samples
    lengths = np.array([len(s.output_ids) for s in got.samples], dtype=np.float64)
    kept = np.repeat(got.has_signal, G)
    adv = normalize_advantages(got.advantages, lengths, kept, G, norm.mean_level, norm.std_level)
    return dataclasses.replace(got, advantages=adv)


def training_sampling(cfg: TrainConfig) -> SamplingParams:
    """How training rollouts sample: ``gconfig`` (greedy is temperature 0)."""
    g = cfg.gconfig
    return SamplingParams(
        g.max_new_tokens,
        0.0 if g.greedy else g.temperature,
        g.top_p,
        g.top_k,
        min_new_tokens=g.min_new_tokens,
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
        regenerated=sum(r.regenerated for r in rounds),
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
