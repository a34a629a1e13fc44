"""The zero-reward watchdog: the seed's "SGLang crash" symptom, noticed.

A server that breaks without dying (an engine error answered as empty or aborted
generations, a restart loop, retries that barely succeed) shows up first as a task
reward of exactly 0 for several steps. Training on that teaches nothing and can
damage the policy, so after ``rollout.zero_reward_steps`` such steps in a row the run
stops when the rollout layer reported errors in those steps, and warns once when it
did not (a task that is simply too hard looks the same from here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from grpo_plug.errors import ZeroRewardError
from grpo_plug.metrics import names as mn

# Rollout counters (per step) that mean a server misbehaved.
ERROR_COUNTERS = (mn.ROLLOUT_RETRIES, mn.ROLLOUT_TIMEOUTS, mn.HEALTH_FAILURES, mn.SERVER_RESTARTS)


def zero_reward_streak(task_rewards: Sequence[float]) -> int:
    """Steps at the end of ``task_rewards`` whose task reward was exactly 0: the rule
    the watchdog stops or warns by, and the dashboard's alert."""
    n = 0
    for r in reversed(task_rewards):
        if r != 0.0:
            break
        n += 1
    return n


@dataclass
class ZeroRewardWatchdog:
    steps: int  # 0 = off
    streak: int = 0
    errors: dict[str, float] = field(default_factory=dict)
    warned: bool = False
    rewards: list[float] = field(default_factory=list)

    def observe(self, task_reward: float, metrics: Mapping[str, float]) -> str | None:
        """One finished step. Returns a warning to show once, raises ZeroRewardError
        when the run must stop, else None."""
        if self.steps <= 0:
            return None
        self.rewards = [*self.rewards, task_reward][-10_000:]
        self.streak = zero_reward_streak(self.rewards)
        if self.streak == 0:
            self.errors = {}
            return None
        for key in ERROR_COUNTERS:
            if metrics.get(key, 0.0) > 0:
                self.errors[key] = self.errors.get(key, 0.0) + metrics[key]
        if self.streak < self.steps:
            return None
        if self.errors:
            seen = ", ".join(f"{k.removeprefix('rollout/')}={v:g}" for k, v in self.errors.items())
            raise ZeroRewardError(
                f"task reward was exactly 0 for {self.streak} steps in a row while the "
                f"rollout servers reported errors ({seen}): the servers are likely broken "
                "(read their logs in the run's log dir). Stopped instead of training on "
                "nothing; the last recover point is intact. Set rollout.zero_reward_steps=0 "
                "to train on regardless."
            )
        if self.warned:
            return None
        self.warned = True
        return (
            f"task reward has been exactly 0 for {self.streak} steps in a row (no server "
            "errors): check the task, the reward function and a sample in the log "
            "before spending more time"
        )
