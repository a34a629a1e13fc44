"""Hook specifications: the whole plugin surface of grpo-plug, and nothing else.

Every hook is ``register_*(registry)``: the plugin calls ``registry.register(name,
factory, description=...)`` once per component it provides. The configuration then
picks components by name. Built-ins use exactly these hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from grpo_plug.registry import ComponentRegistry
    from grpo_plug.types import (
        LoggerFactory,
        RewardFunction,
        RolloutBackendFactory,
        TaskFactory,
        WeightSyncFactory,
    )

PROJECT = "grpo_plug"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# ----------------------------------------------------------------------- generation


@hookspec
def register_rollout_backends(registry: ComponentRegistry[RolloutBackendFactory]) -> None:
    """Register rollout backends: factories ``(config, context) -> RolloutBackend``.

    A backend turns prompts into sampled completions (token ids, per-token
    log-probs, finish reason, policy versions); the rollout controller drives it.
    Built-ins: ``hf`` (in-process), ``sglang`` (HTTP servers).
    """


@hookspec
def register_weight_sync_strategies(registry: ComponentRegistry[WeightSyncFactory]) -> None:
    """Register weight-sync strategies: factories ``(config) -> WeightSync``.

    A strategy pushes the learner's new weights to the rollout backend (pause ->
    push -> verify -> resume) and bumps the policy version. Built-ins: ``inplace``,
    ``disk``, ``distributed``, ``none`` (a backend without weights of this run). The
    traits ``syncs:shared|own|none`` say which backends (trait ``weights:*``) it drives.
    """


# ----------------------------------------------------------------------- data and rewards


@hookspec
def register_tasks(registry: ComponentRegistry[TaskFactory]) -> None:
    """Register tasks: factories ``(dataset_config, seed) -> Task`` giving prompts and golds.

    Built-ins: ``gsm8k``, ``arith``.
    """


@hookspec
def register_reward_functions(registry: ComponentRegistry[RewardFunction]) -> None:
    """Register reward functions ``(prompts, completions, **keywords) -> list[float | None]``.

    ``None`` means "no opinion on this sample" and counts as 0 for that function. A
    function gets the keywords of ``grpo_plug.rewards.REWARD_KEYWORDS`` (and each of the
    task's ``Example.fields``, one value per completion) that its signature names; its
    answer is checked (length, type) at every call. One that grades correctness
    registers with ``correctness=True``: it is then the task reward. Built-ins:
    ``math_accuracy`` (Rust grader, ``correctness=True``), ``format``.
    """


# ----------------------------------------------------------------------- reporting


@hookspec
def register_loggers(registry: ComponentRegistry[LoggerFactory]) -> None:
    """Register metric loggers: factories ``(config, run_info) -> Logger``.

    Called in the order of ``grpo_plug.testing.checks.LOGGER_CALL_ORDER``. Built-ins:
    ``console``, ``jsonl`` (the run writes metrics.jsonl even when it is not listed),
    ``wandb``, ``tensorboard``.
    """


# ----------------------------------------------------------------------- command line


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add sub-commands to the ``grpo-plug`` Typer application."""
