"""A run's components, built by name from the plugin registries: its tasks, reward
functions, loggers and weight-sync strategy (the rollout backend needs the learner's
model, so the trainer builds it). Every name is checked here, before any heavy work."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from grpo_plug import config as cfgmod
from grpo_plug.config import TrainConfig
from grpo_plug.data.tasks import build_task, held_out_dataset
from grpo_plug.errors import SetupError
from grpo_plug.metrics.loggers import JsonlLogger as MetricsFile
from grpo_plug.plugins import PluginHost
from grpo_plug.rewards import RewardSpec
from grpo_plug.types import Logger, RolloutBackend, RunInfo, Task, WeightSync
from grpo_plug.weight_sync import check_pairing, resolve_strategy_name


def tasks(host: PluginHost, cfg: TrainConfig) -> tuple[Task, Task]:
    """(training task, held-out task; with ``valid_dataset.shuffle`` the latter loads the
    whole set, for a seeded sample of ``max_samples``)."""
    reg = host.tasks()
    train_ds, valid_ds = cfg.train_dataset, cfg.valid_dataset
    return (
        build_task(reg.get(train_ds.task), train_ds, cfg.seed, cfg),
        build_task(reg.get(valid_ds.task), held_out_dataset(valid_ds), cfg.seed, cfg),
    )


def rewards(host: PluginHost, cfg: TrainConfig) -> list[RewardSpec]:
    """``reward.functions`` with their weights and whether each grades correctness."""
    reg = host.reward_functions()
    return [
        RewardSpec(n, reg.get(n), w, reg.entry(n).correctness)
        for n, w in zip(cfg.reward.functions, cfg.reward.weights, strict=True)
    ]


def loggers(
    host: PluginHost,
    cfg: TrainConfig,
    log_dir: Path,
    derived: Mapping[str, Any],
    warn: Callable[[str], None],
) -> list[Logger]:
    """``loggers``, each given the config as validated plus the derived settings beside
    it (``derived``: what the run resolved, e.g. the attention kernel), and the run's own
    ``metrics.jsonl`` writer first, whatever ``loggers`` names: the dashboard, ``watch``
    and ``report`` read that file. A logger whose factory raises is left out, with one
    ``warn`` line naming it: a logger never stops a run."""
    reg = host.loggers()
    entries = [reg.entry(n) for n in cfg.loggers]
    config = {**cfgmod.to_dict(cfg), "derived": dict(derived)}
    run = RunInfo(cfg.experiment_name, cfg.trial_name, str(log_dir), config)
    out: list[Logger] = []
    factories: list[tuple[str, str, Callable[[TrainConfig, RunInfo], Logger]]] = [
        (e.name, e.plugin, e.factory) for e in entries
    ]
    if not any(e.factory is MetricsFile for e in entries):
        factories.insert(0, (MetricsFile.name, "the run itself", MetricsFile))
    for name, plugin, factory in factories:
        try:
            out.append(factory(cfg, run))
        except Exception as e:  # e.g. wandb.init online with the network down
            warn(
                f"logger {name!r} (plugin {plugin!r}) could not start "
                f"({type(e).__name__}: {e}); training goes on without it"
            )
    return out


def prints_to_terminal(host: PluginHost, chosen: Sequence[Logger]) -> bool:
    """Whether one of ``chosen`` is registered with the trait ``terminal``."""
    terminal = {e.name for e in host.loggers().with_trait("terminal")}
    return any(lg.name in terminal for lg in chosen)


def check_sync_pairing(host: PluginHost, cfg: TrainConfig) -> None:
    """Before the model loads: ``weight_sync.strategy`` can drive ``rollout.backend``
    (by the traits both registered), or a SetupError naming the strategies that can."""
    check_pairing(cfg, host.rollout_backends(), host.weight_sync_strategies())


def weight_sync(host: PluginHost, cfg: TrainConfig, backend: RolloutBackend) -> WeightSync:
    """The strategy ``weight_sync.strategy`` names, or ``auto``'s pick for this layout."""
    reg = host.weight_sync_strategies()
    name = resolve_strategy_name(cfg, backend, reg)
    if name not in reg:
        raise SetupError(
            f"weight_sync.strategy={cfg.weight_sync.strategy} resolved to {name!r}, which is "
            f"not available (registered: {', '.join(reg.names())}); set "
            "weight_sync.strategy explicitly"
        )
    return reg.get(name)(cfg)
