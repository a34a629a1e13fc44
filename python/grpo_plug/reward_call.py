"""The reward-function calling convention, enforced at every call.

A reward function is ``fn(prompts, completions, **keywords) -> list[float | None]``.
The trainer passes the keywords in :data:`REWARD_KEYWORDS`; a function receives only
those its signature names (all of them if it takes ``**kwargs``), so a plugin written
against today's documented set keeps working when a keyword is added. Its answer is
checked here, so a wrong length or type fails with one line naming the function and
its plugin instead of a numpy broadcast error three stages later.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

from grpo_plug.registry import PluginError
from grpo_plug.types import RewardFunction

REWARD_KEYWORDS: dict[str, str] = {
    "golds": "list[str]: the gold answer of each completion's problem, same order",
    "literal_answers": "bool: the task's flag; an answer computed inside a box grades 0",
    "completion_ids": "list[list[int]]: each completion's generated token ids (their count "
    "is its length in tokens; the EOS token is last when it stopped there)",
    "config": "TrainConfig: the run's config; `config.section(Cls)` reads the section the "
    "function was registered with (`config=Cls`)",
}
"""Every keyword a reward function may receive, with its type and meaning."""


class RewardError(PluginError):
    """A reward function raised or answered with the wrong shape or type."""


def accepted_keywords(fn: Callable[..., Any]) -> frozenset[str] | None:
    """Keywords ``fn`` takes by name; ``None`` when it takes ``**kwargs`` (all of them)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def check_rewards(values: object, n: int, where: str) -> list[float | None]:
    """``values`` as a list of ``n`` finite floats or ``None``, or a RewardError."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise RewardError(f"{where} returned {type(values).__name__}, expected a list")
    if len(values) != n:
        raise RewardError(f"{where} returned {len(values)} values for {n} completions")
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise RewardError(
                f"{where} returned {v!r} at index {i}: expected a finite number or None"
            )
        out.append(float(v))
    return out


def adapt_reward(fn: RewardFunction, name: str, plugin: str) -> RewardFunction:
    """``fn`` wrapped to receive only the keywords it takes and to have its answer checked."""
    if not callable(fn):
        raise PluginError(f"plugin {plugin!r} registered reward function {name!r}: not callable")
    accepted = accepted_keywords(fn)
    where = f"reward function {name!r} (plugin {plugin!r})"

    @functools.wraps(fn)
    def call(
        prompts: Sequence[str], completions: Sequence[str], **keywords: Any
    ) -> list[float | None]:
        if accepted is not None:
            keywords = {k: v for k, v in keywords.items() if k in accepted}
        try:
            values = fn(prompts, completions, **keywords)
        except PluginError:
            raise
        except Exception as e:
            raise RewardError(f"{where} raised {type(e).__name__}: {e}") from e
        return check_rewards(values, len(completions), where)

    return call
