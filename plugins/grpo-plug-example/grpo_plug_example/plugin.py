"""Hook implementations of the example plugin: a reward function and a logger with
its own config section (``csv.*``)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from grpo_plug.api import (
    ComponentRegistry,
    LoggerFactory,
    RewardFunction,
    RunInfo,
    TrainConfig,
    hookimpl,
    option,
)


def brevity(
    prompts: Sequence[str], completions: Sequence[str], **keywords: object
) -> list[float | None]:
    """1.0 up to 200 characters, falling linearly to 0.0 at 1,000."""
    return [min(1.0, max(0.0, (1000 - len(c)) / 800)) for c in completions]


@dataclass
class CsvConfig:
    """Keys ``csv.*``: ``filename`` (in the run's log folder) and ``prefix``."""

    filename: str = option("metrics.csv", "csv logger: file in the run's log folder.")
    prefix: str = option("", "csv logger: only metrics whose names start with this.")


class CsvLogger:
    """Appends every step's metrics to a CSV file in the run's log dir."""

    name = "csv"

    def __init__(self, cfg: TrainConfig, run: RunInfo) -> None:
        self.settings = cfg.section(CsvConfig)
        self.path = Path(run.log_dir) / self.settings.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(["global_step", "epoch", "key", "value"])
            for key, value in sorted(metrics.items()):
                if key.startswith(self.settings.prefix):
                    writer.writerow([step, epoch, key, value])

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


@hookimpl
def register_reward_functions(registry: ComponentRegistry[RewardFunction]) -> None:
    registry.register("brevity", brevity)


@hookimpl
def register_loggers(registry: ComponentRegistry[LoggerFactory]) -> None:
    registry.register("csv", CsvLogger, config=CsvConfig)
