"""``distributed`` weight sync over gloo against the real SGLang server (the session's,
see conftest.sglang_server): a GRPO run whose server weights equal the learner's after
every step, and refusals that end in a clear error instead of a hung broadcast."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_plug import config as cfgmod
from grpo_plug.errors import RequestFailed, WeightSyncError
from grpo_plug.plugins import PluginHost
from grpo_plug.rollout.sglang.backend import SGLangBackend
from grpo_plug.weight_sync.distributed import DistributedSync, broadcast, buckets, flatten, metas
from tests.helpers import train_through_server

pytestmark = [pytest.mark.slow, pytest.mark.sglang]


def test_grpo_with_sglang_and_distributed_sync(
    sglang_server: Any, tmp_path: Path, host: PluginHost
) -> None:
    groups = []

    def joined(trainer: Any) -> None:
        assert isinstance(trainer.weight_sync, DistributedSync)
        assert trainer.weight_sync.group is not None  # joined by the first push
        groups.append(trainer.weight_sync.group)

    _rows, cap = train_through_server(
        sglang_server,
        tmp_path,
        host,
        "sglang.device=cpu",
        "weight_sync.strategy=distributed",
        "weight_sync.bucket_mb=0.05",  # several buckets: the tiny model is 0.2 MiB
        inspect=joined,
    )
    assert any("distributed weight sync of version 0" in m for m in cap.messages)
    # The group is gone from the server: destroying it again is refused.
    server, _model = sglang_server
    client = SGLangBackend([server.spec.addr], [2], dtype="float32").clients[0]
    with pytest.raises(RequestFailed, match="does not exist"):
        client.call("POST", "/destroy_weights_update_group", {"group_name": groups[0]})


def _sync(server: Any, model_dir: Path, device: str = "cpu") -> tuple[DistributedSync, Any, Any]:
    from transformers import AutoModelForCausalLM

    cfg = cfgmod.load(overrides=["rollout.backend=sglang", "sglang.dtype=float32"])
    backend = SGLangBackend([server.spec.addr], [2], dtype="float32", device=device)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return DistributedSync(cfg), backend, model


def test_an_update_the_server_refuses_fails_fast_and_the_next_sync_recovers(
    sglang_server: Any,
) -> None:
    server, model_dir = sglang_server
    sync, backend, model = _sync(server, model_dir)
    try:
        sync.sync(model, backend, 41)
        assert sync.pg is not None and sync.group is not None
        # Outside a begin/end session SGLang 0.5.23 answers 400 before receiving
        # anything: the learner's broadcast must not hang the caller.
        (chunk,) = buckets(model, torch.float32, 1 << 30)
        group = sync.group
        start = time.monotonic()
        with pytest.raises(WeightSyncError, match=r"the server.*begin_weight_update"):
            sync._together(
                lambda: backend.update_weights_from_distributed(group, metas(chunk), 42, last=True),
                lambda: broadcast(sync.pg, flatten(chunk, "cpu")),
                "weight sync to version 42",
            )
        assert time.monotonic() - start < 30 and sync.broken
        # A broken group is left and a fresh one joined; the weights arrive.
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.5)
        sync.sync(model, backend, 43)
        assert not sync.broken and backend.weight_versions() == ["43"]
        (got,) = backend.read_weights("model.norm.weight", rows=1 << 20)
        assert torch.equal(got, model.model.norm.weight.detach())
    finally:
        sync.close()


def test_nccl_on_a_cpu_server_is_a_clear_error_not_a_hang(sglang_server: Any) -> None:
    server, model_dir = sglang_server
    sync, backend, model = _sync(server, model_dir, device="cuda")
    try:
        assert backend.comm_backend == "nccl"
        start = time.monotonic()
        with pytest.raises(WeightSyncError, match=r"joining process group .*nccl"):
            sync.sync(model, backend, 7)
        assert time.monotonic() - start < 60
    finally:
        sync.close()
    # The server still serves and keeps its weights.
    assert backend.weight_versions() != ["7"]
    backend.clients[0].call("GET", "/health_generate", timeout=120)  # raises unless 200
