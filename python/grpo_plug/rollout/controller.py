"""The rollout controller: the one thing between the trainer and any rollout backend.

For a remote backend it keeps at most ``rollout.max_concurrent_rollouts`` requests in
flight, gives each attempt ``rollout.request_timeout`` seconds, retries retryable
failures ``rollout.request_retries`` times with exponential backoff, and resubmits
samples that come back ``abort`` (SGLang answers 200 for those) with the tokens
produced so far, so they finish as ``stop`` or ``length`` like any other. Every
sample keeps the policy versions of its tokens.

An in-process backend is handed the whole batch in one ``generate`` call: it runs in
this thread, so its sampling order, and with it every seeded run, stays unchanged.

``progress`` (optional) hears ``(samples finished, tokens generated)`` increments while
a batch runs: per finished request for remote backends; an in-process backend that is
a ``ReportsProgress`` reports from inside its decode loop.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from grpo_plug.errors import RequestFailed, RolloutError
from grpo_plug.metrics import names as mn
from grpo_plug.types import GenerationRequest, ReportsProgress, RolloutBackend, Sample

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    max_concurrent: int = 32
    timeout: float = 3600.0  # seconds per attempt
    retries: int = 3
    backoff_base: float = 1.0  # first retry waits this long, then doubles ...
    backoff_max: float = 30.0  # ... up to this
    max_resubmits: int = 16  # aborts of one sample before giving up


@dataclass
class RolloutStats:
    requests: int = 0  # attempts sent, resubmissions included
    retries: int = 0
    timeouts: int = 0
    aborts_resubmitted: int = 0

    def metrics(self) -> dict[str, float]:
        return {
            mn.ROLLOUT_REQUESTS: float(self.requests),
            mn.ROLLOUT_RETRIES: float(self.retries),
            mn.ROLLOUT_TIMEOUTS: float(self.timeouts),
            mn.ROLLOUT_ABORTS_RESUBMITTED: float(self.aborts_resubmitted),
        }


def merge_continuation(head: Sample, tail: Sample) -> Sample:
    """An aborted sample ``head`` followed by the continuation that finished it."""
    return Sample(
        rid=head.rid,
        output_ids=head.output_ids + tail.output_ids,
        logprobs=head.logprobs + tail.logprobs,
        finish_reason=tail.finish_reason,
        policy_version=min(head.policy_version, tail.policy_version),
        policy_versions=sorted(set(head.policy_versions) | set(tail.policy_versions)),
        token_versions=head.token_versions + tail.token_versions,
    )


class RolloutController:
    """Drives ``backend``; ``generate`` is the synchronous entry the trainer calls.

    Remote requests run on one event loop in a background thread that lives as long
    as the controller, so a backend's async HTTP client stays bound to one loop.
    """

    def __init__(
        self,
        backend: RolloutBackend,
        limits: Limits | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.backend = backend
        self.limits = limits or Limits()
        self.stats = RolloutStats()
        self._jitter = random.Random(0)  # backoff jitter only; never touches sampling
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._loop_lock = threading.Lock()  # a producer thread and the trainer both call
        self.progress = progress

    # ------------------------------------------------------------------ entry points

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        """``n`` samples per request, in request order; none of them ``abort``."""
        if self.backend.in_process:
            if isinstance(self.backend, ReportsProgress):
                self.backend.set_progress(self.progress)
            return self._finish_in_process(requests, self.backend.generate(requests))
        return self._run(self.agenerate(requests))

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        sem = asyncio.Semaphore(self.limits.max_concurrent)
        return list(await asyncio.gather(*(self._request(r, sem) for r in requests)))

    def set_policy_version(self, version: int) -> None:
        self.backend.set_policy_version(version)

    def pop_metrics(self) -> dict[str, float]:
        """This controller's and the backend's counters since the last call."""
        out = {**self.stats.metrics(), **self.backend.stats()}
        self.stats = RolloutStats()
        return out

    def close(self) -> None:
        try:
            self.backend.close()
        finally:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                if self._thread is not None:
                    self._thread.join(timeout=10)
                self._loop = None

    # ------------------------------------------------------------------ internals

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="grpo-plug-rollout", daemon=True
                )
                self._thread.start()
                self._loop = loop
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _finish_in_process(
        self, requests: Sequence[GenerationRequest], groups: list[list[Sample]]
    ) -> list[list[Sample]]:
        for req, group in zip(requests, groups, strict=True):
            for s in group:
                if s.finish_reason == "abort":
                    raise RolloutError(
                        f"in-process backend {self.backend.name!r} aborted request {req.rid}"
                    )
        return groups

    async def _request(self, req: GenerationRequest, sem: asyncio.Semaphore) -> list[Sample]:
        samples = await self._attempts(req, sem)
        done = [await self._complete(req, s, sem) for s in samples]
        if self.progress is not None:
            self.progress(len(done), sum(len(s.output_ids) for s in done))
        return done

    async def _complete(
        self, req: GenerationRequest, sample: Sample, sem: asyncio.Semaphore
    ) -> Sample:
        """Resubmit an aborted sample with its tokens so far until it finishes."""
        resubmits = 0
        while sample.finish_reason == "abort":
            left = req.sampling.max_new_tokens - len(sample.output_ids)
            if left <= 0:  # the budget ran out as it was aborted: that is a length cut
                sample.finish_reason = "length"
                break
            if resubmits >= self.limits.max_resubmits:
                raise RolloutError(
                    f"request {req.rid}: aborted {resubmits} times in a row; giving up"
                )
            resubmits += 1
            self.stats.aborts_resubmitted += 1
            cont = GenerationRequest(
                rid=f"{req.rid}~{resubmits}",
                prompt_ids=[*req.prompt_ids, *sample.output_ids],
                n=1,
                sampling=replace(req.sampling, max_new_tokens=left),
            )
            (tail,) = await self._attempts(cont, sem)
            sample = merge_continuation(sample, tail)
        return sample

    async def _attempts(self, req: GenerationRequest, sem: asyncio.Semaphore) -> list[Sample]:
        """One request, retried with exponential backoff (waits outside the cap)."""
        lim = self.limits
        for attempt in range(lim.retries + 1):
            async with sem:
                self.stats.requests += 1
                try:
                    (samples,) = await asyncio.wait_for(self.backend.agenerate([req]), lim.timeout)
                except TimeoutError:
                    self.stats.timeouts += 1
                    cause = f"no answer within rollout.request_timeout={lim.timeout:g}s"
                except RequestFailed as e:
                    if not e.retryable:
                        raise RolloutError(f"request {req.rid} failed: {e}") from e
                    cause = str(e)
                else:
                    if len(samples) != req.n:
                        raise RolloutError(
                            f"request {req.rid}: backend {self.backend.name!r} returned "
                            f"{len(samples)} samples, {req.n} asked"
                        )
                    return samples
            if attempt == lim.retries:
                break
            self.stats.retries += 1
            delay = min(lim.backoff_max, lim.backoff_base * 2**attempt)
            await asyncio.sleep(delay * (1.0 + 0.1 * self._jitter.random()))
        raise RolloutError(
            f"request {req.rid}: {cause} (gave up after {lim.retries + 1} attempts; "
            f"see rollout.request_retries / rollout.request_timeout)"
        )


def limits_from_config(cfg: Any) -> Limits:
    """The ``rollout.*`` keys that bound requests."""
    r = cfg.rollout
    return Limits(
        max_concurrent=r.max_concurrent_rollouts,
        timeout=r.request_timeout,
        retries=r.request_retries,
        backoff_base=r.retry_backoff,
    )
