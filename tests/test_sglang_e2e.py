"""Against the real SGLang server (one per session, see conftest.sglang_server): the
backend's generations, and short GRPO runs with the sglang backend and disk sync
whose server weights equal the learner's after every step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grpo_plug.plugins import PluginHost
from grpo_plug.rollout.controller import Limits, RolloutController
from grpo_plug.rollout.sglang.backend import SGLangBackend
from grpo_plug.types import GenerationRequest, SamplingParams
from tests.helpers import train_through_server

pytestmark = [pytest.mark.slow, pytest.mark.sglang]


def test_generate_on_the_real_server(sglang_server: Any) -> None:
    server, _model = sglang_server
    backend = SGLangBackend([server.spec.addr], [2], dtype="float32")
    ctl = RolloutController(backend, Limits(max_concurrent=2, timeout=120, retries=0))
    try:
        sp = SamplingParams(max_new_tokens=5, temperature=1.0)
        reqs = [GenerationRequest(f"r{i}", [1, 4 + i, 5, 2, 1], 3, sp) for i in range(4)]
        groups = ctl.generate(reqs)
        assert [len(g) for g in groups] == [3] * 4
        for s in (s for g in groups for s in g):
            assert 1 <= len(s.output_ids) <= 5 and len(s.logprobs) == len(s.output_ids)
            assert all(lp <= 0 for lp in s.logprobs)
            if s.finish_reason == "stop":
                assert s.output_ids[-1] == 2  # the stop token id sent
            else:
                assert (s.finish_reason, len(s.output_ids)) == ("length", 5)
        greedy = SamplingParams(max_new_tokens=5, temperature=0.0)
        a, b = ctl.generate([GenerationRequest(f"g{i}", [1, 6, 2, 1], 1, greedy) for i in "ab"])
        assert a[0].output_ids == b[0].output_ids
        assert ctl.pop_metrics()["rollout/server0/requests"] == 6.0
    finally:
        ctl.close()


def test_grpo_with_sglang_and_disk_sync(
    sglang_server: Any, tmp_path: Path, host: PluginHost
) -> None:
    def is_disk(trainer: Any) -> None:
        assert trainer.weight_sync.name == "disk"  # auto, on a machine with no GPU

    rows, cap = train_through_server(
        sglang_server, tmp_path, host, "weight_sync.strategy=auto", inspect=is_disk
    )
    for r in rows:
        assert r["rollout/server0/requests"] >= 4  # 4 prompts, one request each
        assert r["timeperf/weight_sync"] > 0
        # ... split into the strategy's phases.
        assert r["timeperf/weight_sync/save"] > 0 and r["timeperf/weight_sync/load"] > 0
    assert any("disk weight sync of version 0" in m for m in cap.messages)
