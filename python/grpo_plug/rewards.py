"""The reward stage: every configured reward function scores every sample, their
weighted sum is the reward, the first correctness function's values are the task
reward (accuracy). And the reward-function calling convention, enforced at every call.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from grpo_plug.data.tasks import literal_answers
from grpo_plug.errors import PluginError, RewardError
from grpo_plug.types import Example, RewardFunction, Task

if TYPE_CHECKING:
    from grpo_plug.config import TrainConfig

REWARD_KEYWORDS: dict[str, str] = {
    "golds": "list[str]: the gold answer of each completion's problem, same order",
    "literal_answers": "bool: the task's flag; an answer computed inside a box grades 0",
    "completion_ids": "list[list[int]]: each completion's generated token ids (their count "
    "is its length in tokens; the EOS token is last when it stopped there)",
    "config": "TrainConfig: the run's config; `config.section(Cls)` reads the section the "
    "function was registered with (`config=Cls`)",
}
"""Every keyword a reward function may receive, with its type and meaning; besides
these, each of the task's per-example fields (``Example.fields``) under its own name,
one value per completion (``None`` where an example lacks it)."""


def example_fields(examples: Sequence[Example], repeat: int) -> dict[str, list[Any]]:
    """The examples' own fields as reward keywords: name -> one value per completion
    (each example's repeated ``repeat`` times, ``None`` where it lacks the field)."""
    names = sorted({k for ex in examples for k in ex.fields})
    return {k: [ex.fields.get(k) for ex in examples for _ in range(repeat)] for k in names}


def check_field_names(task: str, examples: Sequence[Example]) -> None:
    """A field must be a keyword name no built-in keyword already takes."""
    for ex in examples:
        for k in ex.fields:
            if not (isinstance(k, str) and k.isidentifier()) or k in RESERVED_KEYWORDS:
                raise PluginError(
                    f"task {task!r}: example {ex.uid!r} has field {k!r}, which cannot be a "
                    f"reward keyword (a Python name, not one of: {', '.join(RESERVED_KEYWORDS)})"
                )


RESERVED_KEYWORDS = ("prompts", "completions", *REWARD_KEYWORDS)


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


class RewardSpec(NamedTuple):
    """One configured reward function: ``correctness`` as registered (see
    :meth:`grpo_plug.registry.ComponentRegistry.register`)."""

    name: str
    fn: Any
    weight: float
    correctness: bool = False


@dataclass
class Scores:
    """Every sample's scores, float32 ``[B*G]`` each: ``reward`` (weighted sum),
    ``task_reward`` (the first correctness function's values = accuracy; 0 without
    one) and ``per_function`` (name -> unweighted values, as summed)."""

    reward: Any
    task_reward: Any
    per_function: dict[str, Any]


def score_samples(
    reward_fns: Sequence[RewardSpec],
    task: Task,
    prompts: list[str],
    texts: list[str],
    golds: list[str],
    no_eos: Any,
    cfg: TrainConfig,
    *,
    completion_ids: Sequence[Sequence[int]],
    fields: Mapping[str, Sequence[Any]] | None = None,
) -> Scores:
    """Score every sample with every reward function; ``None`` counts 0. ``fields``:
    the examples' own fields (:attr:`Example.fields`), one value per completion each.

    A completion cut at max_new_tokens (``no_eos``) gets ``cfg.reward.no_eos_reward``
    from each correctness function when that is set."""
    import numpy as np

    rewards = np.zeros(len(texts), dtype=np.float32)
    task_reward: Any = None
    per_function: dict[str, Any] = {}
    literal = literal_answers(task)
    for spec in reward_fns:
        got = spec.fn(
            prompts,
            texts,
            golds=golds,
            literal_answers=literal,
            config=cfg,
            completion_ids=completion_ids,
            **(fields or {}),
        )
        vals = np.array([0.0 if v is None else v for v in got], dtype=np.float32)
        if spec.correctness:
            if task_reward is None:  # the seed's task reward = accuracy
                task_reward = vals.copy()
            if cfg.reward.no_eos_reward is not None:
                vals[no_eos] = cfg.reward.no_eos_reward
        per_function[spec.name] = vals
        rewards += spec.weight * vals
    if task_reward is None:
        task_reward = np.zeros(len(texts), dtype=np.float32)
    return Scores(rewards, task_reward, per_function)
