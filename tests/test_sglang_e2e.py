"""Against the real SGLang server (one per session, see conftest.sglang_server): the
backend's generations, and short GRPO runs with the sglang backend and disk sync
whose server weights equal the learner's after every step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_plug.plugins import PluginHost
from grpo_plug.rollout.controller import Limits, RolloutController
from grpo_plug.rollout.sglang.backend import SGLangBackend
from grpo_plug.types import GenerationRequest, RolloutBackend, SamplingParams
from tests.test_train import Capture, SevenPlugin, tiny_config

pytestmark = pytest.mark.slow


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


class Observer:
    """Wraps the trainer's real strategy: after each sync, reads every parameter back
    from the server in full and compares it with the learner's."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.checked: list[tuple[int, str]] = []
        self.snapshots: list[torch.Tensor] = []

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> Any:
        phases = self.inner.sync(model, backend, version)
        assert isinstance(backend, SGLangBackend)
        for name, p in model.named_parameters():
            (got,) = backend.read_weights(name, rows=1 << 20)
            got = got[: p.shape[0]]  # the server pads the embedding's vocabulary rows
            assert torch.equal(got, p.detach().float()), f"{name} differs at version {version}"
        self.snapshots.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        (served,) = backend.weight_versions()
        self.checked.append((version, served))
        return phases

    def close(self) -> None:
        self.inner.close()


def train_through_server(
    sglang_server: Any,
    tmp_path: Path,
    host: PluginHost,
    *extra: str,
    inspect: Callable[[Any], None] = lambda trainer: None,
) -> tuple[list[dict[str, Any]], Capture]:
    """Three GRPO steps on the session's server; checks what every strategy must give
    (the server's weights equal the learner's after each step, and they moved) and
    returns the step rows and the captured logs. ``inspect`` sees the trainer first."""
    from grpo_plug.trainer import Trainer

    server, model = sglang_server
    host.register(SevenPlugin(), name="seven")
    cfg = tiny_config(
        tmp_path,
        model,
        "rollout.backend=sglang",
        f"rollout.server_addrs=[{server.spec.addr}]",
        "sglang.dtype=float32",
        "total_train_steps=3",
        "rollout.request_timeout=300",
        # Cut completions score below stopped ones: some reward variance in every run,
        # whatever the shared server's sampling state, so the weights always move.
        "reward.no_eos_reward=-1.0",
        *extra,
    )
    cap = Capture()
    trainer = Trainer(cfg, host=host, loggers=[cap])
    try:
        inspect(trainer)
        obs = Observer(trainer.weight_sync)
        trainer.weight_sync = obs
        summary = trainer.train()
    finally:
        trainer.close()
    assert summary.steps == 3
    # Server weights equal the learner's after every step, under the step's version.
    assert obs.checked == [(1, "1"), (2, "2"), (3, "3")]
    # ... and those weights moved: each sync carried a new policy.
    assert not torch.equal(obs.snapshots[0], obs.snapshots[-1])
    rows = [r for r in cap.rows if "grpo_actor/lr" in r]
    assert len(rows) == 3
    assert all(r["rollout/samples_current_version"] == 32.0 for r in rows)
    # The learner's log-probs of the server's tokens match the server's (fp32 both).
    learned = [r for r in rows if "grpo_actor/logprob_abs_diff" in r]
    assert learned and all(r["grpo_actor/logprob_abs_diff"] < 1e-3 for r in learned)
    return rows, cap


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
