"""Registers the built-in tasks (python/grpo_plug/data/tasks.py)."""

from __future__ import annotations

from grpo_plug.data.tasks import ArithTask, Gsm8kTask
from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import TaskFactory


@hookimpl
def register_tasks(registry: ComponentRegistry[TaskFactory]) -> None:
    registry.register("gsm8k", Gsm8kTask, description="GSM8K math (bundled, hub or file)")
    registry.register("arith", ArithTask, description="generated arithmetic word problems")
