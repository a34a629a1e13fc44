"""The rollout controller against a scripted backend: the honest tool for checking its
own logic (caps, timeouts, retries, abort resubmission) call by call. The real server
is exercised in test_sglang.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from grpo_plug.errors import RequestFailed, RolloutError
from grpo_plug.rollout.controller import Limits, RolloutController
from grpo_plug.types import GenerationRequest, Sample, SamplingParams

Step = Callable[[GenerationRequest], "list[Sample] | Exception | None"]


@dataclass
class Scripted:
    """Answers each call with the next scripted step (None: a normal answer)."""

    steps: list[Step] = field(default_factory=list)
    delay: float = 0.0
    name: str = "scripted"
    colocated: bool = False
    in_process: bool = False
    version: int = 0
    calls: list[GenerationRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        (req,) = requests
        self.calls.append(req)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            step = self.steps.pop(0) if self.steps else None
            out = step(req) if step else None
            if isinstance(out, Exception):
                raise out
            return [out if out is not None else self.finished(req)]
        finally:
            self.in_flight -= 1

    def finished(self, req: GenerationRequest) -> list[Sample]:
        k = req.sampling.max_new_tokens
        return [Sample(req.rid, [5] * k, [-0.5] * k, "length", self.version) for _ in range(req.n)]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        raise NotImplementedError

    def set_policy_version(self, version: int) -> None:
        self.version = version

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass


def req(rid: str = "r", n: int = 2, max_new: int = 6) -> GenerationRequest:
    return GenerationRequest(rid, [1, 2, 3], n, SamplingParams(max_new_tokens=max_new))


FAST = Limits(max_concurrent=4, timeout=5.0, retries=2, backoff_base=0.01, backoff_max=0.02)


def run(
    backend: Scripted, reqs: list[GenerationRequest], limits: Limits = FAST
) -> list[list[Sample]]:
    ctl = RolloutController(backend, limits)
    try:
        return ctl.generate(reqs)
    finally:
        ctl.close()


def test_results_come_back_in_request_order_under_the_cap() -> None:
    backend = Scripted(delay=0.02)
    reqs = [req(f"r{i}", n=1, max_new=i + 1) for i in range(12)]
    out = run(backend, reqs)
    assert [len(g[0].output_ids) for g in out] == list(range(1, 13))
    assert backend.max_in_flight == 4  # rollout.max_concurrent_rollouts


def test_retryable_failures_are_retried_then_succeed() -> None:
    fail = RequestFailed("503 overloaded", retryable=True)
    backend = Scripted(steps=[lambda r: fail, lambda r: fail])
    ctl = RolloutController(backend, FAST)
    (group,) = ctl.generate([req()])
    assert len(group) == 2 and len(backend.calls) == 3
    assert ctl.pop_metrics()["rollout/retries"] == 2.0
    ctl.close()


def test_retries_run_out_with_the_cause_named() -> None:
    fail = RequestFailed("connection refused", retryable=True)
    backend = Scripted(steps=[lambda r: fail] * 3)
    with pytest.raises(RolloutError, match=r"request r: connection refused \(gave up after 3"):
        run(backend, [req()])


def test_a_bad_request_is_not_retried() -> None:
    backend = Scripted(steps=[lambda r: RequestFailed("HTTP 400: too long", retryable=False)])
    with pytest.raises(RolloutError, match="HTTP 400: too long"):
        run(backend, [req()])
    assert len(backend.calls) == 1


def test_timeouts_count_as_retryable() -> None:
    backend = Scripted(delay=0.3)
    limits = Limits(max_concurrent=1, timeout=0.05, retries=1, backoff_base=0.01)
    with pytest.raises(RolloutError, match=r"request_timeout=0.05s \(gave up after 2"):
        run(backend, [req()], limits)


def aborted_after(k: int, version: int) -> Step:
    def step(r: GenerationRequest) -> list[Sample]:
        return [Sample(r.rid, [7] * k, [-1.0] * k, "abort", version) for _ in range(r.n)]

    return step


def test_aborts_resume_with_the_tokens_so_far() -> None:
    backend = Scripted(steps=[aborted_after(2, version=3)], version=4)
    ctl = RolloutController(backend, FAST)
    (group,) = ctl.generate([req(n=2, max_new=6)])
    for s in group:
        # 2 tokens of v3, then the resubmission's 4 of v4: the budget is kept exactly.
        assert s.output_ids == [7, 7, 5, 5, 5, 5]
        assert s.finish_reason == "length"
        assert (s.policy_version, s.policy_versions) == (3, [3, 4])
        assert s.token_versions == [3, 3, 4, 4, 4, 4]  # each token's own version
    conts = backend.calls[1:]
    assert len(conts) == 2 and all(c.n == 1 for c in conts)
    assert conts[0].prompt_ids == [1, 2, 3, 7, 7]
    assert conts[0].sampling.max_new_tokens == 4
    assert ctl.pop_metrics()["rollout/aborts_resubmitted"] == 2.0
    ctl.close()


def test_an_abort_with_no_budget_left_is_a_length_cut() -> None:
    backend = Scripted(steps=[aborted_after(6, version=0)])
    (group,) = run(backend, [req(n=1, max_new=6)])
    assert group[0].finish_reason == "length" and len(backend.calls) == 1


def test_endless_aborts_stop() -> None:
    limits = Limits(max_concurrent=2, retries=0, max_resubmits=3)
    backend = Scripted(steps=[aborted_after(0, version=0)] * 10)
    with pytest.raises(RolloutError, match="aborted 3 times in a row"):
        run(backend, [req(n=1)], limits)


def test_wrong_sample_count_is_an_error() -> None:
    backend = Scripted(steps=[lambda r: [Sample(r.rid, [1], [0.0], "stop", 0)]])
    with pytest.raises(RolloutError, match="returned 1 samples, 2 asked"):
        run(backend, [req(n=2)])
