"""Registers the built-in weight-sync strategies (python/grpo_plug/weight_sync/)."""

from __future__ import annotations

from grpo_plug.config import TrainConfig
from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import WeightSync, WeightSyncFactory
from grpo_plug.weight_sync.inplace import InplaceSync
from grpo_plug.weight_sync.none import NoSync


def make_disk_sync(cfg: TrainConfig) -> WeightSync:
    """Safetensors in a versioned (RAM-backed) folder, loaded by every server; verified."""
    from grpo_plug.weight_sync.disk import DiskSync  # torch loads on use only

    return DiskSync(cfg)


def make_distributed_sync(cfg: TrainConfig) -> WeightSync:
    """A broadcast from the learner (rank 0) to every server's process group; verified."""
    from grpo_plug.weight_sync.distributed import DistributedSync

    return DistributedSync(cfg)


@hookimpl
def register_weight_sync_strategies(registry: ComponentRegistry[WeightSyncFactory]) -> None:
    registry.register("inplace", InplaceSync, traits=["auto:colocated", "syncs:shared"])
    registry.register("disk", make_disk_sync, traits=["auto:one-device", "syncs:own"])
    registry.register("distributed", make_distributed_sync, traits=["auto:devices", "syncs:own"])
    registry.register(
        "none",
        NoSync,
        description="For a backend without weights of this run: only the version moves.",
        traits=["auto:weightless", "syncs:none"],
    )
