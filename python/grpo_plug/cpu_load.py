"""Other processes' load on a run's cores: the warning at a run's start (and in
``doctor``), and ``cluster.adapt_threads``, which lowers a one-rank CPU learner's torch
threads to the cores the others leave free. The plan it adapts is ``threads.py``'s.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from grpo_plug.metrics import names as mn
from grpo_plug.threads import ThreadPlan, affinity

BUSY_WARN_CORES = 0.5  # other processes using this much of the run's cores: warn
ADAPT_EVERY_S = 2.0  # cluster.adapt_threads looks at the load at most this often


@dataclass(frozen=True)
class Busy:
    """CPU other processes used on the run's cores over a window."""

    cores_busy: float  # in cores: 1.0 = one core fully busy
    cores: int
    seconds: float
    top: tuple[tuple[int, str, float], ...]  # (pid, name, cores) busiest first

    def warning(self, threshold: float = BUSY_WARN_CORES) -> str | None:
        if self.cores_busy < threshold:
            return None
        names = ", ".join(f"{name} (pid {pid}) {c:.0%}" for pid, name, c in self.top[:3])
        return (
            f"other processes kept {self.cores_busy:.1f} of this run's {self.cores} cores "
            f"busy over {self.seconds:.1f}s ({names}): steps will be slower; lower "
            "cluster.cpu_threads or stop them"
        )


class BusyCheck:
    """:func:`busy_elsewhere` on a thread of its own, started now: the load of other
    processes while this run sets up, read once it starts."""

    def __init__(self, cores: Sequence[int], seconds: float = 1.0) -> None:
        self.result: Busy | None = None
        self._thread = threading.Thread(
            target=self._run, args=(tuple(cores), seconds), name="busy-check", daemon=True
        )
        self._thread.start()

    def _run(self, cores: tuple[int, ...], seconds: float) -> None:
        with contextlib.suppress(Exception):  # a check must never break a run
            self.result = busy_elsewhere(cores, seconds)

    def warning(self, timeout: float = 10.0) -> str | None:
        self._thread.join(timeout)
        return self.result.warning() if self.result is not None else None


def _own_tree(root: int) -> set[int]:
    import psutil

    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(root)
        return {root, *(c.pid for c in proc.children(recursive=True))}
    return {root}


def _others_cpu(cores: Sequence[int]) -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU seconds so far) of every process that may run on ``cores``,
    this process's tree left out."""
    import psutil

    mine, skip = set(cores), _own_tree(os.getpid())
    out = {}
    for p in psutil.process_iter(["name", "cpu_times", "cpu_affinity"]):
        info = p.info
        times, aff = info.get("cpu_times"), info.get("cpu_affinity")
        if p.pid in skip or times is None or (aff and not mine.intersection(aff)):
            continue
        out[p.pid] = (str(info.get("name") or "?"), times.user + times.system)
    return out


def _used(
    before: Mapping[int, tuple[str, float]], after: Mapping[int, tuple[str, float]], wall: float
) -> list[tuple[int, str, float]]:
    """(pid, name, cores used) between two samples, busiest first."""
    used = [
        (pid, name, (t - before[pid][1]) / wall)
        for pid, (name, t) in after.items()
        if pid in before
    ]
    return sorted(used, key=lambda x: -x[2])


def busy_elsewhere(cores: Sequence[int] | None = None, seconds: float = 0.5) -> Busy:
    """CPU time that processes outside this one's tree spent, over ``seconds``, that may
    run on ``cores`` (default: this process's affinity)."""
    cores = tuple(cores) if cores is not None else affinity()
    before, t0 = _others_cpu(cores), time.monotonic()
    time.sleep(seconds)
    after, wall = _others_cpu(cores), time.monotonic() - t0
    used = _used(before, after, wall)
    total = sum(c for _, _, c in used)
    top = tuple((pid, name, c) for pid, name, c in used if c >= 0.05)
    return Busy(min(total, float(len(cores))), len(cores), wall, top)


class Adaptive:
    """Each step, the torch threads of a one-rank CPU learner (and its in-process
    generator): the plan's, lowered to the cores other processes left free during the
    last step (``cluster.adapt_threads``). Two runs on two cores then settle at one
    thread each instead of four threads taking turns on two cores."""

    def __init__(self, plan: ThreadPlan, every: float = ADAPT_EVERY_S) -> None:
        self.plan = plan
        self.every = every
        self._last, self._t = _others_cpu(plan.cores), time.monotonic()
        self._figures: dict[str, float] = {}

    def others(self) -> float:
        """Cores other processes kept busy since the last call."""
        now, t = _others_cpu(self.plan.cores), time.monotonic()
        used = _used(self._last, now, max(t - self._t, 1e-3))
        self._last, self._t = now, t
        return min(sum(c for _, _, c in used), float(len(self.plan.cores)))

    def fit(self, limit: int, others: float) -> int:
        free = len(self.plan.cores) - others
        return max(1, min(limit, int(free + 0.5)))

    def step(self, backend: object) -> dict[str, float]:
        """Set the threads for the coming step; the figures to log."""
        import torch

        if self._figures and time.monotonic() - self._t < self.every:
            return self._figures  # short steps: a sample costs ~25 ms, keep the last
        others = self.others()
        learner = self.fit(self.plan.learner, others)
        torch.set_num_threads(learner)
        if self.plan.generator and hasattr(backend, "threads"):
            backend.threads = self.fit(self.plan.generator, others)
        self._figures = {mn.CPU_THREADS: float(learner), mn.CPU_OTHERS_BUSY: others}
        return self._figures
