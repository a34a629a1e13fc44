"""The weight-sync phases (weight_sync.sync_weights), restoring a server that came
back, and the digest layout, without SGLang (tests/test_sglang_restore.py runs them
against real servers)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from grpo_plug import config as cfgmod
from grpo_plug.errors import WeightSyncError
from grpo_plug.rollout.sglang import digests
from grpo_plug.testing import build_tiny_model
from grpo_plug.types import (
    GenerationRequest,
    Sample,
    ServerBackend,
    WeightUpdateSurface,
)
from grpo_plug.weight_sync import sync_weights
from grpo_plug.weight_sync.disk import DiskSync
from grpo_plug.weight_sync.distributed import DistributedSync


class Servers(ServerBackend, WeightUpdateSurface):
    """Stands in for remote servers: records each call, holds the last loaded path."""

    name = "servers"
    colocated = False
    in_process = False
    weight_dtype = "float32"

    def __init__(self, model: Any, fail_load: bool = False) -> None:
        self.model = model  # what read_weights answers with
        self.fail_load = fail_load
        self.calls: list[str] = []
        self.loaded: list[tuple[int, str, int]] = []
        self.restore: Callable[[int], bool] | None = None
        self.version = -1

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        raise NotImplementedError

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        raise NotImplementedError

    def set_policy_version(self, version: int) -> None:
        self.calls.append("set_policy_version")
        self.version = version

    def stats(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        pass

    def pause_generation(self) -> None:
        self.calls.append("pause")

    def continue_generation(self) -> None:
        self.calls.append("continue")

    def update_weights_from_disk(self, path: str, version: int) -> None:
        self.calls.append("load")
        if self.fail_load:
            raise WeightSyncError("injected")

    def read_weights(self, name: str, rows: int) -> list[Any]:
        self.calls.append("read")
        return [dict(self.model.named_parameters())[name].detach()[:rows].float()]

    def server_addrs(self) -> list[str]:
        return ["a:1"]

    def server_states(self) -> dict[str, str]:
        return {"a:1": "up"}

    def on_server_back(self, restore: Callable[[int], bool]) -> None:
        self.restore = restore

    def load_server_weights(self, index: int, path: str, version: int) -> None:
        self.loaded.append((index, path, version))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("sync") / "m", hidden=64)


@pytest.fixture()
def model(model_dir: Path) -> Iterator[Any]:
    from transformers import AutoModelForCausalLM

    yield AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def config(tmp_path: Path) -> cfgmod.TrainConfig:
    return cfgmod.load(overrides=[f"weight_sync.disk_dir={tmp_path / 'w'}"])


def test_the_phases_run_in_order_and_return_their_seconds(model: Any, tmp_path: Path) -> None:
    backend, sync = Servers(model), DiskSync(config(tmp_path))
    try:
        phases = sync.sync(model, backend, 3)
        reads = ["read"] * 3  # no digests here: the first rows of three tensors
        assert backend.calls == ["pause", "load", *reads, "continue", "set_policy_version"]
        assert list(phases) == ["save", "pause", "load", "verify", "resume"]
        assert all(s >= 0 for s in phases.values()) and backend.version == 3
        # A restarted server is restored from the version every server holds.
        assert backend.restore is not None and backend.restore(0)
        assert backend.loaded == [(0, str(tmp_path / "w" / "v3"), 3)]
    finally:
        sync.close()


def test_a_failed_push_still_resumes_and_keeps_the_old_version(model: Any, tmp_path: Path) -> None:
    backend, sync = Servers(model), DiskSync(config(tmp_path))
    try:
        sync.sync(model, backend, 1)
        backend.fail_load = True
        with pytest.raises(WeightSyncError, match="injected"):
            sync_weights(sync, model, backend, 2)
        assert backend.calls[-2:] == ["load", "continue"] and backend.version == 1
        assert backend.restore is not None and backend.restore(0)
        assert backend.loaded[-1][1:] == (str(tmp_path / "w" / "v1"), 1)
    finally:
        sync.close()


def test_a_wrong_row_read_back_fails_the_sync(model: Any, tmp_path: Path) -> None:
    backend, sync = Servers(model), DiskSync(config(tmp_path))
    served = Servers(torch.nn.Module())
    served.model = type(model)(model.config)  # other weights, same names
    backend.read_weights = served.read_weights  # type: ignore[method-assign]
    try:
        with pytest.raises(WeightSyncError, match="differs from the learner's"):
            sync.sync(model, backend, 1)
        assert backend.calls[-1] == "continue"
    finally:
        sync.close()


def test_distributed_restores_from_a_copy_of_the_pushed_version(model: Any, tmp_path: Path) -> None:
    """Written from the learner's weights while they still are the pushed version;
    once training changed them the server waits (False) for the next push."""
    sync = DistributedSync(config(tmp_path))
    backend = Servers(model)
    try:
        sync.pushed(model, 5)
        assert sync.restore(backend, 1) and sync.restore(backend, 0)
        (path,) = {p for _, p, _ in backend.loaded}
        assert [(i, v) for i, _, v in backend.loaded] == [(1, 5), (0, 5)]
        assert (Path(path) / "model.safetensors").is_file()
        assert sync.broken  # the group no longer spans every server
        sync.pushed(model, 6)  # a newer push: the old copy goes
        assert not Path(path).exists()
        with torch.no_grad():
            next(model.parameters()).add_(1.0)  # an optimizer step
        assert not sync.restore(backend, 0) and len(backend.loaded) == 2
        assert not any((tmp_path / "w").glob("v*"))
    finally:
        sync.close()


def test_the_server_layout_fuses_and_pads_like_sglang(model: Any) -> None:
    named = list(model.named_parameters())
    layout = digests.server_layout(named)
    params = dict(named)
    q, k, v = (params[f"model.layers.0.self_attn.{x}_proj.weight"] for x in "qkv")
    qkv = layout["model.layers.0.self_attn.qkv_proj.weight"]
    assert torch.equal(qkv, torch.cat([q, k, v]))
    gate_up = layout["model.layers.1.mlp.gate_up_proj.weight"]
    assert gate_up.shape[0] == 2 * params["model.layers.1.mlp.up_proj.weight"].shape[0]
    assert not any(".q_proj." in n or ".up_proj." in n for n in layout)
    embed = layout["model.embed_tokens.weight"]
    assert (
        embed.shape[0] % 64 == 0 and embed.shape[0] >= params["model.embed_tokens.weight"].shape[0]
    )
    assert not embed[params["model.embed_tokens.weight"].shape[0] :].any()


def test_one_changed_value_anywhere_changes_one_digest(model: Any) -> None:
    before = digests.expected(model.named_parameters())
    name = "model.layers.1.mlp.down_proj.weight"
    with torch.no_grad():
        dict(model.named_parameters())[name][-1, -1] += 1e-6
    after = digests.expected(model.named_parameters())
    assert [n for n in before if before[n] != after[n]] == [name]


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* spell them) listening on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    found.append(local.rsplit(":", 1)[0])
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket tables")
def test_the_groups_store_listens_on_the_master_address_only() -> None:
    from grpo_plug.weight_sync.distributed import join_group, listen_on

    listener = listen_on("127.0.0.1")
    port = int(listener.getsockname()[1])
    pg = join_group("127.0.0.1", listener, 1, "grpo-plug-test-store", "gloo")
    try:
        assert _listening(port) == ["0100007F"]  # 127.0.0.1, and no wildcard address
    finally:
        with contextlib.suppress(Exception):  # as DistributedSync.leave does
            torch.distributed.destroy_process_group(pg)
    with pytest.raises(WeightSyncError, match=r"weight_sync\.master_address=192\.0\.2\.1: cannot"):
        listen_on("192.0.2.1")  # TEST-NET-1: no interface of this machine has it
