"""Built-in weight-sync strategies."""

from __future__ import annotations

from typing import Any

from grpo_plug.config import TrainConfig
from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import RolloutBackend, WeightSyncFactory


class InplaceSync:
    """Colocated: the backend generates with the learner's own module, so only the
    policy version moves. Refuses a backend that holds its own copy of the weights."""

    name = "inplace"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> None:
        if not backend.colocated:
            raise RuntimeError(
                f"weight_sync.strategy=inplace needs a colocated rollout backend; "
                f"{backend.name!r} keeps its own weights"
            )
        backend.set_policy_version(version)


def resolve_strategy_name(cfg: TrainConfig, backend: RolloutBackend) -> str:
    """``auto``: in-place when colocated, disk on a single GPU, broadcast otherwise."""
    if cfg.weight_sync.strategy != "auto":
        return cfg.weight_sync.strategy
    if backend.colocated:
        return "inplace"
    if cfg.cluster.n_nodes * cfg.cluster.n_gpus_per_node <= 1:
        return "disk"
    return "distributed"


@hookimpl
def register_weight_sync_strategies(registry: ComponentRegistry[WeightSyncFactory]) -> None:
    registry.register("inplace", InplaceSync)
