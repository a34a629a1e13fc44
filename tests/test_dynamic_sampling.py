"""Dynamic sampling's pieces: when a step draws another round, and which prompts."""

from __future__ import annotations

import numpy as np
import pytest

from grpo_plug import config as cfgmod
from grpo_plug import group_sampling
from grpo_plug.types import Example


def scored(signal: list[bool]) -> group_sampling.ScoredGroups:
    n = len(signal)
    zeros = np.zeros(n * 2, dtype=np.float32)
    return group_sampling.ScoredGroups(
        examples=[Example(str(i), "q", "1") for i in range(n)],
        questions=["q"] * (2 * n),
        prompts=[[1]] * (2 * n),
        samples=[],
        texts=[""] * (2 * n),
        no_eos=np.zeros(2 * n, dtype=bool),
        rewards=zeros,
        task_reward=zeros,
        per_function={"math_accuracy": zeros},
        advantages=zeros,
        has_signal=np.array(signal),
        seconds_rollout=1.0,
        seconds_reward=0.5,
    )


def test_another_round_only_while_short_of_signal_and_rounds_remain() -> None:
    cfg = cfgmod.load(overrides=["train_dataset.batch_size=4", "dynamic_sampling.max_rounds=2"])
    one = scored([True, False, False, False])
    assert group_sampling.wants_another_round(cfg, [one])  # 1 of 4 wanted
    assert group_sampling.wants_another_round(cfg, [one, one])  # 2 of 4
    assert not group_sampling.wants_another_round(cfg, [one, one, one])  # out of rounds
    full = scored([True, True, True, True])
    assert not group_sampling.wants_another_round(cfg, [full])
    cfg.dynamic_sampling.min_groups = 2
    assert not group_sampling.wants_another_round(cfg, [one, one])
    off = cfgmod.load(overrides=["train_dataset.batch_size=4"])
    assert not group_sampling.wants_another_round(off, [scored([False] * 4)])  # max_rounds 0


def test_merge_keeps_the_rounds_in_order() -> None:
    a, b = scored([True, False]), scored([False, True, True])
    got = group_sampling.merge([a, b])
    assert [ex.uid for ex in got.examples] == ["0", "1", "0", "1", "2"]
    assert got.has_signal.tolist() == [True, False, False, True, True]
    assert got.rewards.shape == (10,) and got.per_function["math_accuracy"].shape == (10,)
    assert got.seconds_rollout == 2.0 and got.seconds_reward == 1.0


def test_extra_prompts_are_distinct_and_the_same_on_resume() -> None:
    data = [Example(f"u{i}", f"q{i}", "1") for i in range(50)]
    first = group_sampling.extra_prompts(data, seed=1, step=3, round_index=1, n=8)
    assert first == group_sampling.extra_prompts(data, seed=1, step=3, round_index=1, n=8)
    assert len({ex.uid for ex in first}) == 8
    assert first != group_sampling.extra_prompts(data, seed=1, step=3, round_index=2, n=8)
    assert first != group_sampling.extra_prompts(data, seed=1, step=4, round_index=1, n=8)
    assert len(group_sampling.extra_prompts(data[:3], seed=1, step=0, round_index=1, n=8)) == 3


def test_unreachable_min_groups_is_refused_naming_the_key() -> None:
    with pytest.raises(cfgmod.ConfigError, match=r"dynamic_sampling.min_groups: 13 .* 12 groups"):
        cfgmod.load(
            overrides=[
                "train_dataset.batch_size=4",
                "dynamic_sampling.max_rounds=2",
                "dynamic_sampling.min_groups=13",
            ]
        )
