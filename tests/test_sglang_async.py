"""Asynchronous training through the real SGLang server: the server generates the
coming steps while the learner trains, weight syncs land on requests in flight, and
every consumed token keeps the bound ``version >= step - k``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from grpo_plug.metrics import names as mn
from grpo_plug.plugins import PluginHost
from grpo_plug.rollout import ahead
from tests.helpers import run_trainer, tiny_config, with_seven

pytestmark = pytest.mark.sglang


def test_sglang_runs_ahead_within_the_bound(
    sglang_server: Any, tmp_path: Path, host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    from grpo_plug.learner.ranks import LearnerRanks

    server, model = sglang_server
    k, steps = 2, 5
    consumed: list[tuple[int, list[list[int]]]] = []
    real_take, real_train = ahead.AheadRollout.take, LearnerRanks.train_step

    def take(self: ahead.AheadRollout, step: int, batch: Any) -> Any:
        got, waited = real_take(self, step, batch)
        consumed.append((step, [list(s.policy_versions) for r in got.rounds for s in r.samples]))
        return got, waited

    def train_step(self: LearnerRanks, batch: Any) -> Any:
        time.sleep(1.0)  # a slow learner: the server runs ahead, syncs hit requests in flight
        return real_train(self, batch)

    monkeypatch.setattr(ahead.AheadRollout, "take", take)
    monkeypatch.setattr(LearnerRanks, "train_step", train_step)
    cfg = tiny_config(
        tmp_path,
        model,
        "rollout.backend=sglang",
        f"rollout.server_addrs=[{server.spec.addr}]",
        "sglang.dtype=float32",
        f"total_train_steps={steps}",
        "rollout.request_timeout=300",
        "reward.no_eos_reward=-1.0",
        "gconfig.max_new_tokens=24",
        f"rollout.max_head_offpolicyness={k}",
        "recover.mode=disabled",
    )
    run = run_trainer(cfg, with_seven(host))
    assert run.summary.steps == steps
    assert [step for step, _ in consumed] == list(range(steps))
    for step, versions in consumed:
        assert versions and all(min(v) >= step - k for v in versions), (step, versions)
    rows = [r for r in run.capture.rows if mn.POLICY_VERSION in r]
    assert len(rows) == steps
    assert all(r[mn.VERSION_LAG_MAX] <= k for r in rows)
    assert max(r[mn.VERSION_LAG_MAX] for r in rows) >= 1, rows  # it did run ahead
    assert sum(r[mn.ASYNC_OVERLAP] for r in rows) > 0.0, rows
