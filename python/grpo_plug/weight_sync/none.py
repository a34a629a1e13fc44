"""``none``: for a rollout backend with no weights of this run (one that replays
recorded completions, or calls a model elsewhere): only the policy version moves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grpo_plug.config import TrainConfig
from grpo_plug.errors import WeightSyncError
from grpo_plug.types import RolloutBackend, ServerBackend, WeightUpdateSurface
from grpo_plug.weight_sync import sync_weights


class NoSync:
    """Refuses a backend that has the policy's weights (its own copy, or the learner's
    model): there skipping the sync would sample from a stale policy, silently."""

    name = "none"
    phases: tuple[str | None, str] = (None, "push")
    verify = False

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> Mapping[str, float]:
        return sync_weights(self, model, backend, version)

    def surface(self, backend: RolloutBackend) -> None:
        if backend.colocated:
            why = "shares the learner's model: use weight_sync.strategy=inplace"
        elif isinstance(backend, WeightUpdateSurface):
            why = "keeps its own weights: use weight_sync.strategy=disk or distributed"
        else:
            return None
        raise WeightSyncError(
            f"weight_sync.strategy=none is for backends without weights; {backend.name!r} {why}"
        )

    def prepare(self, model: Any, version: int) -> None:
        pass

    def push(self, model: Any, surface: Any, version: int) -> None:
        pass

    def pushed(self, model: Any, version: int) -> None:
        pass

    def restore(self, backend: ServerBackend, index: int) -> bool:
        return True  # nothing to restore

    def close(self) -> None:
        pass
