"""Registers the ``hf`` rollout backend (python/grpo_plug/rollout/hf.py)."""

from __future__ import annotations

from grpo_plug.config import TrainConfig
from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import RolloutBackend, RolloutBackendFactory, RolloutContext


def make_hf_backend(cfg: TrainConfig, ctx: RolloutContext) -> RolloutBackend:
    """In-process transformers generation sharing the learner's model."""
    from grpo_plug.rollout.hf import make_hf_backend as make  # torch loads on use only

    return make(cfg, ctx)


@hookimpl
def register_rollout_backends(registry: ComponentRegistry[RolloutBackendFactory]) -> None:
    registry.register("hf", make_hf_backend, traits=["weights:shared"])
