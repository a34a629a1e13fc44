"""Built-in reward functions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import RewardFunction


def math_accuracy(
    prompts: Sequence[str], completions: Sequence[str], *, golds: Sequence[str], **_: Any
) -> list[float | None]:
    """1.0 when the completion's final answer equals the gold (Rust grader), else 0.0."""
    from grpo_plug import core

    return [float(x) for x in core.grade(list(completions), list(golds))]


_BOXED = re.compile(r"\\(?:boxed|fbox)\{[^{}]*\S[^{}]*\}")


def boxed_format(
    prompts: Sequence[str], completions: Sequence[str], **_: Any
) -> list[float | None]:
    """1.0 when the completion puts a non-empty answer in \\boxed{} as instructed."""
    return [1.0 if _BOXED.search(c) else 0.0 for c in completions]


@hookimpl
def register_reward_functions(registry: ComponentRegistry[RewardFunction]) -> None:
    registry.register("math_accuracy", math_accuracy)
    registry.register("format", boxed_format)
