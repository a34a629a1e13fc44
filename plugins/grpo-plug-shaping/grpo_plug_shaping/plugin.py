"""Shaping rewards meant to sit next to ``math_accuracy`` with a small weight:

- ``boxed_last``: the answer in the expected final format (one ``\\boxed{...}``, at the
  end of the completion);
- ``length_penalty``: 0 within a character budget, falling linearly to -1 past it; the
  budget is its config section ``length_penalty.*`` (:class:`LengthPenaltyConfig`),
  read through the ``config`` keyword reward functions receive.

    grpo-plug train --preset cpu reward.functions=math_accuracy,boxed_last,length_penalty \\
        reward.weights=1,0.2,0.2 length_penalty.max_chars=600
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from grpo_plug.api import ComponentRegistry, RewardFunction, TrainConfig, hookimpl, option

# \boxed{...} with braces nested one level (\boxed{\frac{1}{2}}); the alternatives start
# with different characters, so matching is linear (no backtracking blow-up).
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
# What may follow the final box: whitespace, closing math delimiters and punctuation.
_TRAILER = re.compile(r"[\s$.!)\]\\]*")


def boxed_last(
    prompts: Sequence[str], completions: Sequence[str], **keywords: object
) -> list[float | None]:
    """1.0 for one non-empty \\boxed{} at the end, 0.5 for a box elsewhere, else 0.0.

    "At the end" allows trailing whitespace, ``$``, ``\\]``, ``)`` and punctuation;
    two or more boxes, or text after the box, score 0.5 (an answer, not the format)."""
    out: list[float | None] = []
    for text in completions:
        boxes = [m for m in _BOXED.finditer(text) if m.group(1).strip()]
        if not boxes:
            out.append(0.0)
        elif len(boxes) == 1 and _TRAILER.fullmatch(text, boxes[0].end()):
            out.append(1.0)
        else:
            out.append(0.5)
    return out


@dataclass
class LengthPenaltyConfig:
    """Keys ``length_penalty.*`` (see ``grpo-plug config keys``)."""

    max_chars: int = option(400, "length_penalty: no penalty up to this many characters.", ge=0)
    ramp_chars: int = option(
        400, "length_penalty: characters past max_chars at which the penalty reaches floor.", ge=1
    )
    floor: float = option(-1.0, "length_penalty: the lowest score (<= 0).", le=0.0)


def length_penalty(
    prompts: Sequence[str], completions: Sequence[str], *, config: TrainConfig
) -> list[float | None]:
    """0 up to length_penalty.max_chars characters, then down linearly to the floor."""
    budget = config.section(LengthPenaltyConfig)
    out: list[float | None] = []
    for text in completions:
        over = len(text) - budget.max_chars  # characters past the budget
        penalty = budget.floor * over / budget.ramp_chars if over > 0 else 0.0
        out.append(max(budget.floor, penalty))
    return out


@hookimpl
def register_reward_functions(registry: ComponentRegistry[RewardFunction]) -> None:
    registry.register("boxed_last", boxed_last)
    registry.register("length_penalty", length_penalty, config=LengthPenaltyConfig)
