"""``inplace``: the backend generates with the learner's own module."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grpo_plug.config import TrainConfig
from grpo_plug.errors import WeightSyncError
from grpo_plug.types import RolloutBackend, ServerBackend
from grpo_plug.weight_sync import sync_weights


class InplaceSync:
    """Colocated: only the policy version moves. Refuses a backend that holds its own
    copy of the weights."""

    name = "inplace"
    phases: tuple[str | None, str] = (None, "push")
    verify = False

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> Mapping[str, float]:
        return sync_weights(self, model, backend, version)

    def surface(self, backend: RolloutBackend) -> None:
        if not backend.colocated:
            raise WeightSyncError(
                f"weight_sync.strategy=inplace needs a colocated rollout backend; "
                f"{backend.name!r} keeps its own weights"
            )
        return None

    def prepare(self, model: Any, version: int) -> None:
        pass

    def push(self, model: Any, surface: Any, version: int) -> None:
        pass

    def pushed(self, model: Any, version: int) -> None:
        pass

    def restore(self, backend: ServerBackend, index: int) -> bool:
        return True  # nothing of its own to restore

    def close(self) -> None:
        pass
