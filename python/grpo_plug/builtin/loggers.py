"""Registers the built-in loggers (python/grpo_plug/metrics/loggers.py)."""

from __future__ import annotations

from grpo_plug.hookspecs import hookimpl
from grpo_plug.metrics.loggers import ConsoleLogger, JsonlLogger, TensorBoardLogger, WandbLogger
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import LoggerFactory


@hookimpl
def register_loggers(registry: ComponentRegistry[LoggerFactory]) -> None:
    registry.register("console", ConsoleLogger, traits=["terminal"])
    registry.register("jsonl", JsonlLogger)
    registry.register("wandb", WandbLogger)
    registry.register("tensorboard", TensorBoardLogger)
