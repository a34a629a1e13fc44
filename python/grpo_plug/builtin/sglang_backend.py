"""Registers the ``sglang`` rollout backend (python/grpo_plug/rollout/sglang/)."""

from __future__ import annotations

from grpo_plug.config import SGLangConfig, TrainConfig
from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import RolloutBackend, RolloutBackendFactory, RolloutContext


def make_sglang_backend(cfg: TrainConfig, ctx: RolloutContext) -> RolloutBackend:
    """SGLang servers over HTTP: launched from allocation_mode, or rollout.server_addrs."""
    from grpo_plug.rollout.sglang.backend import make_sglang_backend as make

    return make(cfg, ctx)


@hookimpl
def register_rollout_backends(registry: ComponentRegistry[RolloutBackendFactory]) -> None:
    # Its section stays in the built-in schema (cfg.sglang), so `sglang.*` keys and
    # presets work as before; declaring it records that the backend owns them.
    registry.register("sglang", make_sglang_backend, config=SGLangConfig, traits=["weights:own"])
