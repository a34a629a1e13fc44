"""Weight-sync strategies: ``inplace`` (colocated), ``disk`` (safetensors a server
loads), ``distributed`` (a broadcast the servers join). A strategy runs the phases
pause -> push -> verify -> resume against the backend's update surface
(types.WeightUpdateSurface, types.DistributedUpdateSurface)."""

from __future__ import annotations

from typing import Any

from grpo_plug.config import TrainConfig
from grpo_plug.types import DistributedUpdateSurface, RolloutBackend, WeightUpdateSurface


class WeightSyncError(RuntimeError):
    """A sync failed or the servers' weights differ from the learner's after it."""


def resolve_strategy_name(cfg: TrainConfig, backend: RolloutBackend) -> str:
    """``auto``: in-place when colocated; disk when learner and server share one GPU (or
    run on CPU); a distributed broadcast when they have GPUs of their own."""
    if cfg.weight_sync.strategy != "auto":
        return cfg.weight_sync.strategy
    if backend.colocated:
        return "inplace"
    if cfg.cluster.n_nodes * cfg.cluster.n_gpus_per_node <= 1:
        return "disk"
    return "distributed"


SURFACE = (
    "pause_generation",
    "continue_generation",
    "update_weights_from_disk",
    "read_weights",
    "weight_dtype",
)


DISTRIBUTED_SURFACE = (
    *SURFACE,
    "ranks_per_server",
    "init_weights_update_group",
    "begin_weight_update",
    "update_weights_from_distributed",
    "end_weight_update",
    "destroy_weights_update_group",
)


def update_surface(
    backend: RolloutBackend, strategy: str, required: tuple[str, ...] = SURFACE
) -> WeightUpdateSurface:
    """``backend`` as an update surface, or a WeightSyncError saying why not."""
    missing = [m for m in required if not hasattr(backend, m)]
    if backend.colocated or missing:
        raise WeightSyncError(
            f"weight_sync.strategy={strategy} needs a backend that keeps its own weights "
            f"(e.g. sglang); {backend.name!r} "
            + ("shares the learner's model: use inplace" if backend.colocated else "")
            + (f"lacks {', '.join(missing)}" if missing and not backend.colocated else "")
        )
    surface: Any = backend
    return surface  # type: ignore[no-any-return]


def distributed_surface(backend: RolloutBackend, strategy: str) -> DistributedUpdateSurface:
    """``backend`` as a surface that can join a broadcast, or a WeightSyncError."""
    surface: Any = update_surface(backend, strategy, DISTRIBUTED_SURFACE)
    return surface  # type: ignore[no-any-return]
