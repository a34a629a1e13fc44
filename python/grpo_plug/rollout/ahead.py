"""Asynchronous rollout (``rollout.max_head_offpolicyness = k >= 1``): a producer
thread samples the steps ahead of the learner while it trains.

The schedule, for step ``M`` (policy version ``v`` = the weights after ``v`` optimizer
steps; the learner trains step ``N`` with version ``N`` and syncs version ``N + 1``):

- the producer starts step ``M`` once the sampler holds version ``>= max(0, M - k)``;
  steps are sampled one after another, so at most ``k`` finished steps wait beyond the
  one the learner takes (the queue's bound);
- ``hf`` (in process): the producer samples with a frozen copy of the weights and a
  torch.Generator seeded by ``(seed, M)``. The sync of version ``v`` first waits until
  the producer has finished step ``v - 1 + k``, the last one that needs version
  ``v - 1``, then copies the weights. So step ``M`` is sampled by exactly version
  ``max(0, M - k)`` whatever the timing, and a seeded run repeats bit for bit;
- ``sglang`` (remote): the servers generate while the learner trains; a sync pauses
  them, pushes and resumes, and requests in flight continue under the new version
  (the controller resubmits the aborted part). A group with a token older than
  ``M - k`` is never kept: it is generated again and counted
  (``rollout/groups_regenerated``). Versions only rise, so this is a safety net;
- the learner checks every sample it consumes at step ``N``: its oldest token must come
  from version ``>= N - k``; anything else is a bug and stops the run.

A recover point after step ``N`` holds the finished steps ``>= N`` (on ``hf`` that is
``N .. N + k - 1``, all finished by then: the weights that sampled them are gone); the
steps after them are sampled again from the restored weights.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from grpo_plug.batches import SampledStep, StepSampler
from grpo_plug.errors import RolloutError, SetupError
from grpo_plug.group_sampling import ScoredGroups
from grpo_plug.metrics import names as mn
from grpo_plug.rollout.controller import RolloutController
from grpo_plug.types import Example, RolloutBackend, Sample

SEED_STRIDE = 1_000_003  # as the synchronous loop's torch.manual_seed(seed * this + step)


@runtime_checkable
class RunsAhead(Protocol):
    """An in-process backend that can sample beside the learner: it makes a twin with
    weights and random numbers of its own."""

    def detached(self, threads: int) -> Any:
        """The twin (a RolloutBackend that is also a :class:`Twin`)."""
        ...


@runtime_checkable
class Twin(Protocol):
    version: int

    def load_weights(self, model: Any, version: int) -> None: ...

    def reseed(self, seed: int) -> None: ...


class Cancelled(Exception):
    """The producer was closed while it sampled."""


def check_backend(backend: RolloutBackend, k: int) -> None:
    """A SetupError naming the key when ``backend`` cannot sample ahead."""
    if k == 0:
        return
    if backend.in_process and not isinstance(backend, RunsAhead):
        why = "generates in process with the learner's own weights and cannot make a twin"
    elif not backend.in_process and backend.colocated:
        why = "shares the learner's weights"
    else:
        return
    raise SetupError(
        f"rollout.max_head_offpolicyness={k}: rollout backend {backend.name!r} {why}; "
        "use hf or sglang, or set it to 0"
    )


def plain_loss_warning(k: int, decoupled: bool) -> str | None:
    """The warning a run with ``k >= 1`` gets at start when it trains with the plain
    PPO loss (AReaL pairs running ahead with its decoupled loss)."""
    if k == 0 or decoupled:
        return None
    return (
        f"rollout.max_head_offpolicyness={k} with actor.use_decoupled_loss=false: the "
        f"samples are off-policy by up to {k} policy version(s) and the plain PPO loss does "
        "not correct for it; set actor.use_decoupled_loss=true to weight them"
    )


# ---------------------------------------------------------------------------- the bound


def check_bound(samples: Sequence[Sample], step: int, k: int) -> None:
    """Every consumed token of ``step`` comes from policy version ``>= step - k``."""
    floor = step - k
    for s in samples:
        if s.policy_version < floor:
            raise RolloutError(
                f"rollout.max_head_offpolicyness={k}: step {step} got sample {s.rid} with "
                f"tokens of policy version {s.policy_version} (oldest allowed {floor}); "
                "this is a bug"
            )


def lag_metrics(samples: Sequence[Sample], step: int) -> dict[str, float]:
    """Version lag (``step`` - version) of the step's tokens, each token at the version
    that generated it (samples without tokens count only when no sample has any)."""
    lags = [step - v for s in samples for v in s.token_versions]
    lags = lags or [step - s.policy_version for s in samples]
    return {
        mn.VERSION_LAG_MIN: float(min(lags)),
        mn.VERSION_LAG_MEAN: sum(lags) / len(lags),
        mn.VERSION_LAG_MAX: float(max(lags)),
    }


# ---------------------------------------------------------------------------- schedule


@dataclass
class Intervals:
    """Closed time intervals (perf_counter); the last one may still be open."""

    spans: list[list[float]] = field(default_factory=list)

    def open(self, t: float) -> None:
        self.spans.append([t, float("inf")])

    def close(self, t: float) -> None:
        if self.spans and self.spans[-1][1] == float("inf"):
            self.spans[-1][1] = t

    def within(self, a: float, b: float) -> float:
        """Seconds covered inside ``[a, b]``; spans ending before ``a`` are dropped."""
        self.spans = [s for s in self.spans if s[1] > a]
        return sum(max(0.0, min(b, s[1]) - max(a, s[0])) for s in self.spans)


class Schedule:
    """The producer thread: step ``M`` starts once ``version >= max(0, M - k)``."""

    def __init__(
        self,
        k: int,
        start: int,
        stop: int,
        make: Callable[[int], SampledStep],
        version: int,
        ready: dict[int, SampledStep] | None = None,
    ) -> None:
        self.k, self.stop, self.make, self.version = k, stop, make, version
        self.done: dict[int, SampledStep] = dict(ready or {})
        self.next = start
        while self.next in self.done:
            self.next += 1
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        self.closed = False
        self.busy, self.waiting = Intervals(), Intervals()
        self.thread = threading.Thread(target=self._run, name="grpo-plug-ahead", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self.cond:
                    self.waiting.open(time.perf_counter())
                    while not self._can_start():
                        self.cond.wait()
                    now = time.perf_counter()
                    self.waiting.close(now)
                    if self.closed or self.next >= self.stop:
                        return
                    m = self.next
                    self.busy.open(now)
                got = self.make(m)
                with self.cond:
                    self.busy.close(time.perf_counter())
                    self.done[m] = got
                    self.next = m + 1
                    self.cond.notify_all()
        except Cancelled:
            pass
        except BaseException as e:
            with self.cond:
                self.error = e
                self.cond.notify_all()
        finally:
            with self.cond:
                self.busy.close(time.perf_counter())
                self.waiting.close(time.perf_counter())

    def _can_start(self) -> bool:
        if self.closed or self.next >= self.stop:
            return True
        return self.version >= max(0, self.next - self.k)

    def _wait(self, ready: Callable[[], bool]) -> None:
        """Block the caller until ``ready()``; the producer's error raised here."""
        while not ready():
            if self.error is not None:
                raise self.error
            if not self.thread.is_alive():
                raise RolloutError("the rollout producer thread ended unexpectedly")
            self.cond.wait(timeout=1.0)

    def take(self, step: int) -> SampledStep:
        """Step ``step``, once sampled (the learner's call)."""
        with self.cond:
            self._wait(lambda: step in self.done)
            return self.done.pop(step)

    def wait_finished_through(self, step: int) -> None:
        """Until every step ``<= step`` (and before ``stop``) is sampled."""
        last = min(step, self.stop - 1)
        with self.cond:
            self._wait(lambda: self.next > last)

    def set_version(self, version: int) -> None:
        with self.cond:
            self.version = version
            self.cond.notify_all()

    def finished(self, first: int, last: int) -> list[SampledStep]:
        """The sampled steps from ``first`` to ``last`` the learner has not taken."""
        with self.cond:
            return [self.done[m] for m in sorted(self.done) if first <= m <= last]

    def close(self, timeout: float = 10.0) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout)


# ---------------------------------------------------------------------------- the producer


class AheadRollout:
    """What the trainer drives when ``k >= 1``: the producer, the syncs it waits for,
    the bound, the figures of each step, and what a recover point keeps."""

    def __init__(
        self,
        k: int,
        sampler: StepSampler,
        rollout: RolloutController,
        steps: tuple[int, int],
        seed: int,
        threads: int,
    ) -> None:
        """Sample steps ``steps[0]`` (the learner's next) to ``steps[1]`` (excluded);
        ``threads``: torch threads of an in-process producer. Call :meth:`restore`,
        then the producer starts."""
        backend = rollout.backend
        check_backend(backend, k)
        self.k, self.sampler, self.seed = k, sampler, seed
        self.twin: Twin | None = None
        self.controller = rollout
        if backend.in_process:
            assert isinstance(backend, RunsAhead)  # check_backend said so
            made = backend.detached(threads)
            self.controller = RolloutController(made, rollout.limits, progress=self._cancel)
            if not isinstance(made, Twin):
                raise SetupError(f"rollout backend {backend.name!r}: its twin is no Twin")
            self.twin = made
        self.start, self.stop = steps
        self.restored = 0
        self.schedule: Schedule | None = None

    def restore(self, saved: Sequence[dict[str, Any]]) -> int:
        """Start the producer after the sampled steps of a recover point (:meth:`state`);
        returns how many were restored."""
        sampler, start = self.sampler, self.start
        ready = {int(d["index"]): sampler.from_json(d) for d in saved if d["index"] >= start}
        self.schedule = Schedule(self.k, start, self.stop, self._make, start, ready)
        self.restored = len(ready)
        self.schedule.start()
        return self.restored

    @property
    def running(self) -> Schedule:
        if self.schedule is None:
            raise RuntimeError("AheadRollout.restore() starts the producer first")
        return self.schedule

    def _cancel(self, samples: int, tokens: int) -> None:
        if self.running.closed:  # heard from inside the hf decode loop
            raise Cancelled

    def _make(self, step: int) -> SampledStep:
        if self.twin is None:  # remote: stale groups are sampled again
            return self.sampler.sample(self.controller, step, min_version=max(0, step - self.k))
        self.twin.reseed(self.seed * SEED_STRIDE + step)
        # The schedule's promise (a resumed run without its saved steps samples them
        # with the restored weights); anything else is a bug.
        want = [max(self.start, step - self.k)]
        got = self.sampler.sample(self.controller, step)
        for s in (s for r in got.rounds for s in r.samples):
            if s.policy_versions != want:
                raise RolloutError(
                    f"step {step} sampled by policy versions {s.policy_versions}, not {want}: "
                    "the producer's schedule is broken"
                )
        return got

    def take(self, step: int, batch: Sequence[Example]) -> tuple[SampledStep, float]:
        """Step ``step``'s rollout (of the prompts ``batch``, checked) and the seconds
        the learner waited for it."""
        t0 = time.perf_counter()
        got = self.running.take(step)
        if [ex.uid for ex in got.rounds[0].examples] != [ex.uid for ex in batch]:
            raise RolloutError(f"step {step}: the producer sampled other prompts (a bug)")
        check_bound([s for r in got.rounds for s in r.samples], step, self.k)
        return got, time.perf_counter() - t0

    def synced(self, model: Any, version: int) -> float:
        """After the weight sync of ``version``: let the producer use it (hf: once it
        has finished the steps that need the previous version, then copy the weights).
        Returns the seconds the learner waited for the producer."""
        t0 = time.perf_counter()
        if self.twin is not None:
            self.running.wait_finished_through(version - 1 + self.k)
            self.twin.load_weights(model, version)
        self.running.set_version(version)
        return time.perf_counter() - t0

    def figures(
        self,
        step: int,
        got: ScoredGroups,
        waited: float,
        times: tuple[float, float, float, float],
    ) -> dict[str, float]:
        """The figures of ``step``, trained on ``got``: the version lag of its
        tokens, groups sampled again, the learner's ``waited`` seconds; for ``times``
        (start, training, trained, end): the share of the step during which the
        producer sampled while the learner trained, and the producer's seconds waiting
        for newer weights."""
        t_start, t_train, t_trained, t_end = times
        sched = self.running
        with sched.cond:
            overlap = sched.busy.within(t_train, t_trained)
            idle = sched.waiting.within(t_start, t_end)
        return {
            **lag_metrics(got.samples, step),
            mn.GROUPS_REGENERATED: float(got.regenerated),
            mn.WAIT_FOR_DATA: waited,
            mn.ASYNC_OVERLAP: overlap / max(t_end - t_start, 1e-9),
            mn.WAIT_FOR_WEIGHTS: idle,
        }

    def state(self, step: int) -> list[dict[str, Any]]:
        """For a recover point after ``step`` steps: the sampled steps that weights older
        than ``step`` sampled (``step .. step + k - 1``); later ones are sampled again
        from the restored weights, so the point is the same whatever the timing."""
        done = self.running.finished(step, step + self.k - 1)
        return [self.sampler.to_json(s) for s in done]

    def close(self) -> None:
        if self.schedule is not None:
            self.schedule.close()
