"""Metrics and status lines to every logger; per-process resource figures."""

from __future__ import annotations

import resource
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from grpo_plug.metrics import names as mn
from grpo_plug.metrics.emit import RunEvents
from grpo_plug.types import Logger, Sample


def version_metrics(samples: Sequence[Sample], current: int) -> dict[str, float]:
    """Samples by the policy versions of their tokens (the current one, or older)."""
    stale = sum(1 for s in samples if s.policy_version < current)
    mixed = sum(1 for s in samples if len(s.policy_versions) > 1)
    return {
        mn.SAMPLES_CURRENT_VERSION: float(len(samples) - stale),
        mn.SAMPLES_STALE_VERSION: float(stale),
        mn.SAMPLES_MIXED_VERSIONS: float(mixed),
    }


def step_metrics(
    rewards: np.ndarray,
    task_reward: np.ndarray,
    lens: np.ndarray,
    no_eos: np.ndarray,
    group_has_signal: np.ndarray,
    learner: Mapping[str, float],
) -> dict[str, float]:
    """The step's reward, length and learner figures under the seed's names, ``[B*G]``
    arrays in (``group_has_signal`` is ``[B]``)."""
    return {
        mn.TASK_REWARD: float(task_reward.mean()),
        mn.TASK_REWARD_MIN: float(task_reward.min()),
        mn.TASK_REWARD_MAX: float(task_reward.max()),
        mn.REWARD: float(rewards.mean()),
        **learner,
        mn.SEQ_LEN: float(lens.mean()),
        mn.SEQ_LEN_MAX: float(lens.max()),
        mn.NO_EOS: float(no_eos.mean()),
        mn.ZERO_ADV: float(1.0 - group_has_signal.mean()),
    }


def gpu_memory_gb() -> float | None:
    """GPU memory this process holds now (None without CUDA)."""
    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.memory_allocated() / 2**30)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class LoggerFanout:
    """The run's loggers behind one door: a failing logger (network down, disk full)
    warns once and never stops the run. Thread-safe: server health threads report
    through :meth:`message` too."""

    def __init__(
        self,
        loggers: Sequence[Logger],
        events: RunEvents,
        *,
        quiet: bool,
        terminal: bool = False,
    ) -> None:
        """``terminal``: one of ``loggers`` prints status lines to the terminal itself
        (a logger registered with the trait ``terminal``)."""
        self.loggers = list(loggers)
        self.terminal = terminal
        self.events = events
        self.quiet = quiet
        self.failed: set[str] = set()
        self._lock = threading.Lock()

    def tell(self, method: str, *args: object) -> None:
        """Call a logger's optional ``method`` (``resume``, ``start_fresh``) where it has one."""
        for lg in self.loggers:
            fn = getattr(lg, method, None)
            if fn is not None:
                fn(*args)

    def message(self, text: str) -> None:
        with self._lock:
            self.events.message(text)
            for lg in self.loggers:
                self._guard(lg, lg.message, text)
            if not self.quiet and not self.terminal:
                # Status lines (resume, fresh start) must reach the terminal anyway.
                print(f"grpo-plug: {text}", file=sys.stderr)

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        with self._lock:
            for lg in self.loggers:
                self._guard(lg, lg.log, metrics, step, epoch)

    def _guard(self, lg: Logger, call: Callable[..., None], *args: Any) -> None:
        try:
            call(*args)
        except Exception as e:
            if lg.name in self.failed:
                return
            self.failed.add(lg.name)
            text = f"logger {lg.name!r} failed ({type(e).__name__}: {e}); training goes on"
            self.events.warning(text)  # the dashboard shows it
            if not self.quiet:
                print(f"grpo-plug: warning: {text}", file=sys.stderr)

    def close(self) -> None:
        """Close every logger; one that raises warns once, as in a step, and the others
        still close (the run's own ending goes on after this)."""
        with self._lock:
            for lg in self.loggers:
                self._guard(lg, lg.close)
