"""One real GRPO step (or a few) with the plugin under test, selected by config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_plug.metrics import names
from grpo_plug.testing.fixtures import CaptureLogger, TestingPlugin, isolated_host, tiny_config
from grpo_plug.testing.model import tiny_model


@dataclass
class StepResult:
    """What a harness run produced: ``metrics`` (the last training step's metrics),
    ``rows`` (every row logged, eval rows included), ``messages`` (status lines),
    ``summary`` (the trainer's Summary) and ``log_dir`` (the run's log folder)."""

    metrics: dict[str, float]
    rows: list[dict[str, float]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    summary: Any = None
    log_dir: Path = Path(".")


def run_training_step(
    *plugins: object, workdir: Path, overrides: tuple[str, ...] = (), steps: int = 1
) -> StepResult:
    """Train the tiny model for ``steps`` steps on task ``seven`` with the built-ins,
    ``plugins`` and the testing plugin loaded (nothing else installed), after
    ``overrides`` such as ``("reward.functions=math_accuracy,mine", "reward.weights=1,0.5")``.
    The ``capture`` logger is always added, so ``loggers=mine`` runs yours beside it.
    The model is built once per ``workdir`` (a few seconds)."""
    from grpo_plug.trainer import Trainer  # torch loads on use only

    host = isolated_host(*plugins)
    model = tiny_model(workdir / "tiny-model")
    cfg = tiny_config(
        workdir,
        model,
        "loggers=capture",
        "valid_dataset.max_samples=4",
        "gconfig.n_samples=4",
        f"total_train_steps={steps}",
        *overrides,
        host=host,
    )
    if "capture" not in cfg.loggers:
        cfg = dataclasses.replace(cfg, loggers=[*cfg.loggers, "capture"])
    capture: CaptureLogger = next(
        p.capture for _, p in host.pm.list_name_plugin() if isinstance(p, TestingPlugin)
    )
    trainer = Trainer(cfg, host=host, quiet=True)
    try:
        summary = trainer.train()
    finally:
        trainer.close()
    trained = [r for r in capture.rows if names.LR in r]  # every step logs it, eval rows don't
    if not trained:
        raise AssertionError(f"no training step was logged; rows: {capture.rows}")
    return StepResult(
        metrics=trained[-1],
        rows=capture.rows,
        messages=capture.messages,
        summary=summary,
        log_dir=Path(trainer.log_dir),
    )
