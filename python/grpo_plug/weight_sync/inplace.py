"""``inplace``: the backend generates with the learner's own module."""

from __future__ import annotations

from typing import Any

from grpo_plug.config import TrainConfig
from grpo_plug.types import RolloutBackend


class InplaceSync:
    """Colocated: only the policy version moves. Refuses a backend that holds its own
    copy of the weights."""

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

    def close(self) -> None:
        pass
