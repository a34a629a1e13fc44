"""The ``hf`` rollout backend: in-process transformers generation, colocated with the
learner. It is the simple case of the asynchronous backend interface: ``agenerate``
runs the whole batch at once."""

from __future__ import annotations

from typing import Any

from grpo_plug.config import TrainConfig
from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import RolloutBackendFactory, RolloutContext


def make_hf_backend(cfg: TrainConfig, ctx: RolloutContext) -> Any:
    """In-process transformers generation sharing the learner's model."""
    from grpo_plug.hf_generation import HFBackend

    if ctx.model is None:
        raise ValueError("rollout.backend=hf needs the learner's model (colocated)")
    return HFBackend(ctx.model, ctx.tokenizer, max_batch_size=cfg.rollout.max_batch_size)


@hookimpl
def register_rollout_backends(registry: ComponentRegistry[RolloutBackendFactory]) -> None:
    registry.register("hf", make_hf_backend)
