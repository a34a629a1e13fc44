"""Against real SGLang servers: verification that compares every weight (one value
corrupted outside the rows the old probe read is caught), and servers killed under
``distributed`` weight sync, several at once, restarted and brought back to the
pushed version, then into a fresh group at the next sync.

``disk``'s restart is in test_sglang_faults.py; ``inplace`` has no servers."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_plug import config as cfgmod
from grpo_plug.errors import WeightSyncError
from grpo_plug.rollout.sglang.backend import SGLangBackend
from grpo_plug.rollout.sglang.health import HealthPolicy
from grpo_plug.weight_sync import verify_rows, verify_weights
from grpo_plug.weight_sync.disk import DiskSync
from grpo_plug.weight_sync.distributed import DistributedSync

pytestmark = pytest.mark.slow

SHIFTED = "model.layers.1.mlp.down_proj.weight"  # middle of the list: not a probed one


def load(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def test_one_value_outside_the_probed_rows_is_caught(sglang_server: Any, tmp_path: Path) -> None:
    server, model_dir = sglang_server
    backend = SGLangBackend([server.spec.addr], [2], dtype="float32", device="cpu")
    model = load(model_dir)
    sync = DiskSync(cfgmod.load(overrides=[f"weight_sync.disk_dir={tmp_path / 'w'}"]))
    try:
        phases = sync.sync(model, backend, 61)  # verified by digests: passes
        assert phases["verify"] > 0
        # The servers now load a copy with one value changed, in row 40 of a tensor the
        # row probe never reads.
        bad = load(model_dir)
        with torch.no_grad():
            dict(bad.named_parameters())[SHIFTED][40, 3] += 1e-3
        bad.save_pretrained(tmp_path / "bad", safe_serialization=True)
        backend.update_weights_from_disk(str(tmp_path / "bad"), 62)
        verify_rows(model, backend, 62)  # the old check: passes, wrongly
        with pytest.raises(WeightSyncError, match=rf"1 of \d+ tensors differ \({SHIFTED}\)"):
            verify_weights(model, backend, 62)
        sync.sync(model, backend, 63)  # and the next sync puts it right
    finally:
        sync.close()


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two launched servers of this module's own (they get killed)."""
    from grpo_plug.rollout.sglang import servers as srv
    from grpo_plug.rollout.sglang.specs import server_specs
    from grpo_plug.testing import build_tiny_model
    from tests.helpers import cpu_server_overrides

    root = tmp_path_factory.mktemp("restore")
    model_dir = build_tiny_model(root / "tiny", hidden=64)
    cfg = cfgmod.load(overrides=["rollout.backend=sglang", *cpu_server_overrides()])
    specs = [server_specs(cfg, str(model_dir), root / "logs" / str(i))[0] for i in range(2)]
    launched = srv.start(specs, timeout=1800)
    try:
        yield launched, model_dir
    finally:
        srv.stop_all(launched)


def wait_for(
    backend: SGLangBackend, states: list[str], restarts: int, timeout: float = 1800
) -> None:
    """Until ``restarts`` restarts are done and the servers are in ``states``."""
    monitor = backend.monitor
    assert monitor is not None
    deadline = time.monotonic() + timeout
    while monitor.restarts < restarts or monitor.state != states:
        assert monitor.fatal is None, monitor.fatal
        assert time.monotonic() < deadline, f"states {monitor.state}, want {states}"
        time.sleep(1)


def kill(backend: SGLangBackend, *indices: int) -> None:
    for i in indices:
        server = backend.servers[i]
        assert server is not None
        os.killpg(server.pid, signal.SIGKILL)


def test_servers_killed_under_distributed_sync_come_back_at_the_pushed_version(
    two_servers: Any, tmp_path: Path
) -> None:
    launched, model_dir = two_servers
    policy = HealthPolicy(interval=1, timeout=120, max_restarts=2, backoff=1, startup_timeout=1800)
    backend = SGLangBackend(
        [s.spec.addr for s in launched], [2], dtype="float32", launched=launched, health=policy
    )
    sync = DistributedSync(cfgmod.load(overrides=[f"weight_sync.disk_dir={tmp_path / 'w'}"]))
    model = load(model_dir)
    try:
        sync.sync(model, backend, 1)
        first = sync.group
        assert sync.members == {0: 1, 1: 1}
        # Both at once, the learner idle: each restarts (in parallel) and loads a copy of
        # version 1 written from the learner's unchanged weights.
        kill(backend, 0, 1)
        wait_for(backend, ["up", "up"], restarts=2)
        assert backend.monitor is not None and backend.monitor.restarts == 2
        assert backend.weight_versions() == ["1", "1"]
        verify_weights(model, backend, 1)  # every tensor, on both servers
        # The next sync forms a fresh group with both.
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        sync.sync(model, backend, 2)
        assert sync.group != first and sync.members == {0: 1, 1: 1}
        assert backend.weight_versions() == ["2", "2"]
        # Killed while the learner trains: its weights are no longer version 2, so the
        # server waits out of rotation, and the next sync brings it to version 3.
        kill(backend, 0)
        with torch.no_grad():
            next(model.parameters()).add_(0.25)
        wait_for(backend, ["waiting", "up"], restarts=3)
        sync.sync(model, backend, 3)
        assert backend.monitor.state == ["up", "up"] and sync.members == {1: 1}
        assert backend.weight_versions() == ["3", "3"]
        verify_weights(model, backend, 3)
    finally:
        sync.close()
        backend.close()
