"""Built-in loggers: console lines, JSONL file, Weights & Biases, TensorBoard.

Loggers get plain text and plain floats; rich markup is the dashboard's business.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from grpo_plug.config import TrainConfig
from grpo_plug.metrics import names
from grpo_plug.types import RunInfo


def step_line(metrics: Mapping[str, float], step: int, epoch: int) -> str:
    """The one plain line per step: the console logger's and ``watch --no-tui``'s."""
    parts = [f"step {step} epoch {epoch}"]
    for shown in names.CONSOLE:
        if shown.key in metrics:
            parts.append(f"{shown.label} {metrics[shown.key]:{shown.fmt}}")
    return "  ".join(parts)


class ConsoleLogger:
    """One line per step with the headline metrics."""

    name = "console"

    def __init__(self, cfg: TrainConfig, run: RunInfo, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        self.console.print(step_line(metrics, step, epoch), highlight=False, markup=False)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False)

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

    def start_fresh(self) -> None:
        """The run starts at step 0: rows left by an earlier attempt (one that died before
        its first recover point, or a re-run of a finished trial) move to
        ``metrics.jsonl.<k>`` rather than mixing with this run's."""
        if self.path.stat().st_size == 0:
            return
        self._fh.close()
        k = 1
        while self.path.with_name(f"{self.path.name}.{k}").exists():
            k += 1
        os.replace(self.path, self.path.with_name(f"{self.path.name}.{k}"))
        self._fh = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._fh.close()


def wandb_has_credentials() -> bool:
    netrc = Path.home() / ".netrc"
    return bool(os.environ.get("WANDB_API_KEY")) or (
        netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    )


class WandbLogger:
    """Weights & Biases run ``{experiment}_{trial}_train`` in project ``wandb.project``.

    The run id is derived from experiment and trial, so a recovered run continues the
    same WandB run. ``online`` without credentials falls back to ``offline`` (and says
    how to upload later) instead of stopping the run.
    """

    name = "wandb"

    def __init__(self, cfg: TrainConfig, run: RunInfo) -> None:
        import wandb

        mode = cfg.wandb.mode
        if mode == "online" and not wandb_has_credentials():
            mode = "offline"
            sys.stderr.write(
                "wandb: no API key (WANDB_API_KEY or ~/.netrc): logging offline; upload "
                f"later with `wandb sync {run.log_dir}/wandb/offline-run-*`\n"
            )
        self.run_id = f"{run.experiment_name}_{run.trial_name}_train".replace("/", "-")
        self._run = wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            name=f"{run.experiment_name}_{run.trial_name}_train",
            id=self.run_id,
            resume="allow",
            mode=mode,
            dir=run.log_dir,
            config=dict(run.config),
        )

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        self._run.log({**metrics, "epoch": epoch}, step=step)

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        import wandb

        self._run.finish()
        # finish() returns before the service has flushed the run file; teardown waits
        # for it, so the data is on disk when close() returns (and no atexit is needed).
        wandb.teardown()


class TensorBoardLogger:
    """TensorBoard event files in ``{log_dir}/tensorboard``, one scalar per metric."""

    name = "tensorboard"

    def __init__(self, cfg: TrainConfig, run: RunInfo) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run.log_dir) / "tensorboard"
        self._w = SummaryWriter(log_dir=str(self.dir))

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        for k, v in metrics.items():
            self._w.add_scalar(k, float(v), global_step=step)
        self._w.flush()

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        self._w.close()
