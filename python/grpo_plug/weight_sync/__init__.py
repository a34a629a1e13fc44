"""Weight-sync strategies: ``inplace`` (colocated), ``disk`` (safetensors a server
loads), ``distributed`` (a broadcast the servers join). A strategy runs the phases
pause -> push -> verify -> resume against the backend's update surface
(types.WeightUpdateSurface, types.DistributedUpdateSurface)."""

from __future__ import annotations

from typing import Any

from grpo_plug.config import TrainConfig
from grpo_plug.errors import SetupError, WeightSyncError
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import (
    DistributedUpdateSurface,
    RolloutBackend,
    WeightSyncFactory,
    WeightUpdateSurface,
)


def auto_layout(cfg: TrainConfig, backend: RolloutBackend) -> str:
    """The layout ``weight_sync.strategy=auto`` chooses for: ``colocated`` (the backend
    shares the learner's model), ``one-device`` (learner and servers share one GPU, or
    run on CPU), ``devices`` (servers have GPUs of their own)."""
    if backend.colocated:
        return "colocated"
    if cfg.cluster.n_nodes * cfg.cluster.n_gpus_per_node <= 1:
        return "one-device"
    return "devices"


def resolve_strategy_name(
    cfg: TrainConfig, backend: RolloutBackend, registry: ComponentRegistry[WeightSyncFactory]
) -> str:
    """The configured strategy, or for ``auto`` the one registered with the trait
    ``auto:<layout>`` (see :func:`auto_layout`); a SetupError when none or several are."""
    if cfg.weight_sync.strategy != "auto":
        return cfg.weight_sync.strategy
    layout = auto_layout(cfg, backend)
    found = registry.with_trait(f"auto:{layout}")
    if len(found) != 1:
        which = ", ".join(f"{e.name} ({e.plugin})" for e in found) or "none is registered"
        raise SetupError(
            f"weight_sync.strategy=auto: one strategy must declare the trait auto:{layout} "
            f"for this layout; {which}: set weight_sync.strategy explicitly"
        )
    return found[0].name


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
