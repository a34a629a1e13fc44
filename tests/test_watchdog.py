"""The zero-reward watchdog: stops when servers misbehaved, warns once when not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grpo_plug.api import hookimpl
from grpo_plug.errors import ZeroRewardError
from grpo_plug.metrics.watchdog import ZeroRewardWatchdog
from grpo_plug.plugins import PluginHost
from grpo_plug.types import Example
from tests.helpers import run_trainer, tiny_config

QUIET = {"rollout/retries": 0.0, "rollout/server_restarts": 0.0}


def test_zero_reward_with_server_errors_stops_naming_them() -> None:
    dog = ZeroRewardWatchdog(steps=3)
    assert dog.observe(0.0, {"rollout/retries": 2.0}) is None
    assert dog.observe(0.0, QUIET) is None
    with pytest.raises(ZeroRewardError, match=r"3 steps .*retries=2.*zero_reward_steps=0"):
        dog.observe(0.0, {"rollout/server_restarts": 0.0, "rollout/timeouts": 1.0})


def test_zero_reward_without_errors_warns_once() -> None:
    dog = ZeroRewardWatchdog(steps=2)
    assert dog.observe(0.0, QUIET) is None
    warning = dog.observe(0.0, QUIET)
    assert warning is not None and "2 steps" in warning
    assert dog.observe(0.0, QUIET) is None  # once per run


def test_a_rewarded_step_resets_the_streak_and_its_errors() -> None:
    dog = ZeroRewardWatchdog(steps=2)
    dog.observe(0.0, {"rollout/retries": 5.0})
    assert dog.observe(0.25, QUIET) is None
    assert dog.observe(0.0, QUIET) is None
    warning = dog.observe(0.0, QUIET)  # errors from before the reset do not count
    assert warning is not None and "no server errors" in warning


def test_off_when_steps_is_zero() -> None:
    dog = ZeroRewardWatchdog(steps=0)
    assert all(dog.observe(0.0, {"rollout/retries": 9.0}) is None for _ in range(20))


class NeverTask:
    """Answers no tiny model can produce in 3 tokens: task reward is exactly 0."""

    name = "never"

    def __init__(self, cfg: Any, seed: int) -> None:
        self.n = cfg.max_samples or 16

    def load(self) -> list[Example]:
        return [Example(f"never-{i}", "1 2 3", "#### 987654321") for i in range(self.n)]

    def user_message(self, example: Example) -> str:
        return example.question


class NeverPlugin:
    @hookimpl
    def register_tasks(self, registry: Any) -> None:
        registry.register("never", NeverTask)


def test_a_run_with_zero_reward_warns_once(
    tmp_path: Path, tiny_model_dir: Path, host: PluginHost
) -> None:
    host.register(NeverPlugin(), name="never")
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "train_dataset.task=never",
        "valid_dataset.task=never",
        "total_train_steps=3",
        "rollout.zero_reward_steps=2",
    )
    run = run_trainer(cfg, host)
    summary, cap = run.summary, run.capture
    assert summary.steps == 3  # no server errors: it warns, training goes on
    warned = [m for m in cap.messages if "exactly 0 for 2 steps" in m]
    assert len(warned) == 1, cap.messages
