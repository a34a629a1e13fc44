"""Hook implementations of the example plugin."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grpo_plug import hookimpl


def brevity(prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float | None]:
    """1.0 up to 200 characters, falling linearly to 0.0 at 1,000."""
    return [min(1.0, max(0.0, (1000 - len(c)) / 800)) for c in completions]


class CsvLogger:
    """Appends every step's metrics to metrics.csv in the run's log dir."""

    name = "csv"

    def __init__(self, cfg: Any, run: Any) -> None:
        self.path = Path(run.log_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["global_step", "epoch", "key", "value"])
            for key, value in sorted(metrics.items()):
                writer.writerow([step, epoch, key, value])

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


@hookimpl
def register_reward_functions(registry: Any) -> None:
    registry.register("brevity", brevity)


@hookimpl
def register_loggers(registry: Any) -> None:
    registry.register("csv", CsvLogger)
