"""Built-in reward functions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from grpo_plug.hookspecs import hookimpl
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import RewardFunction


def math_accuracy(
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    golds: Sequence[str],
    literal_answers: bool = False,
    **_: Any,
) -> list[float | None]:
    """1.0 when the completion's final answer equals the gold (Rust grader), else 0.0.

    With ``literal_answers`` (set by tasks such as ``arith``) an answer computed inside
    a box, e.g. the question copied as ``\\boxed{40 + 49}``, grades 0.
    """
    from grpo_plug import core

    scores = core.grade(list(completions), list(golds), literal_only=literal_answers)
    return [float(x) for x in scores]


_BOXED = re.compile(r"\\(?:boxed|fbox)\{[^{}]*\S[^{}]*\}")


def boxed_format(
    prompts: Sequence[str], completions: Sequence[str], **_: Any
) -> list[float | None]:
    """1.0 when the completion puts a non-empty answer in \\boxed{} as instructed."""
    return [1.0 if _BOXED.search(c) else 0.0 for c in completions]


@hookimpl
def register_reward_functions(registry: ComponentRegistry[RewardFunction]) -> None:
    registry.register("math_accuracy", math_accuracy, correctness=True)
    registry.register("format", boxed_format)
