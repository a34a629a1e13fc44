"""Built-in loggers: rich console, JSONL file, Weights & Biases."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from grpo_plug.config import TrainConfig
from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import LoggerFactory, RunInfo

CONSOLE_KEYS = (
    ("grpo_actor/task_reward/avg", "reward"),
    ("grpo_actor/loss", "loss"),
    ("grpo_actor/grad_norm", "gnorm"),
    ("grpo_actor/clip_ratio", "clip"),
    ("grpo_actor/no_eos_ratio", "no-eos"),
    ("timeperf/step", "s/step"),
    ("grpo-eval/task_reward/avg", "eval"),
)


class ConsoleLogger:
    """One line per step with the headline metrics."""

    name = "console"

    def __init__(self, cfg: TrainConfig, run: RunInfo, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        parts = [f"[bold]step {step}[/bold] epoch {epoch}"]
        for key, short in CONSOLE_KEYS:
            if key in metrics:
                parts.append(f"{short} {metrics[key]:.4g}")
        self.console.print("  ".join(parts), highlight=False)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def close(self) -> None:
        pass


class JsonlLogger:
    """``metrics.jsonl`` in the run's log dir: one object per line."""

    name = "jsonl"

    def __init__(self, cfg: TrainConfig, run: RunInfo) -> None:
        self.path = Path(run.log_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        row: dict[str, Any] = {"global_step": step, "epoch": epoch, "timestamp": time.time()}
        row.update({k: float(v) for k, v in metrics.items()})
        self._fh.write(json.dumps(row, allow_nan=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def message(self, text: str) -> None:
        pass

    def resume(self, global_step: int) -> None:
        """Drop rows logged after the recover point, so the stream continues exactly."""
        self._fh.close()
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                if json.loads(line)["global_step"] <= global_step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line torn by the crash
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, self.path)
        self._fh = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._fh.close()


class WandbLogger:
    """Weights & Biases run ``{experiment}_{trial}_train`` in project ``wandb.project``."""

    name = "wandb"

    def __init__(self, cfg: TrainConfig, run: RunInfo) -> None:
        import wandb

        self._run = wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            name=f"{run.experiment_name}_{run.trial_name}_train",
            id=f"{run.experiment_name}_{run.trial_name}_train".replace("/", "-"),
            resume="allow",
            mode=cfg.wandb.mode,
            dir=run.log_dir,
            config=dict(run.config),
        )

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        self._run.log({**metrics, "epoch": epoch}, step=step)

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        self._run.finish()


@hookimpl
def register_loggers(registry: ComponentRegistry[LoggerFactory]) -> None:
    registry.register("console", ConsoleLogger)
    registry.register("jsonl", JsonlLogger)
    registry.register("wandb", WandbLogger)
