"""Small components and a plugin host for tests: a task the tiny model can learn, a
logger that keeps what it gets, a weight-sync strategy that only moves the version,
and a host that loads the built-ins plus exactly the plugins under test."""

from __future__ import annotations

import os
import types
import zlib
from collections.abc import Mapping
from pathlib import Path

from grpo_plug import config as cfgmod
from grpo_plug.hookspecs import hookimpl
from grpo_plug.plugins import REGISTRY_HOOKS, PluginHost
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import (
    Example,
    LoggerFactory,
    RewardFunction,
    RolloutBackend,
    RunInfo,
    TaskFactory,
    WeightSyncFactory,
)


class SevenTask:
    """Every question's answer is 7: learnable from scratch by the tiny random model."""

    name = "seven"

    def __init__(self, cfg: cfgmod.DatasetConfig, seed: int) -> None:
        self.n = cfg.max_samples or 64

    def load(self) -> list[Example]:
        return [Example(f"seven-{i}", "1 2 3", "#### 7") for i in range(self.n)]

    def user_message(self, example: Example) -> str:
        return example.question


def spread_reward(
    prompts: list[str], completions: list[str], **kwargs: object
) -> list[float | None]:
    """A score in [0, 1) from a hash of the completion: any group with two different
    completions has signal, so a test that needs its steps to train does not depend on
    which completions one seed's sampling stream happens to draw."""
    return [zlib.crc32(text.encode()) / 2**32 for text in completions]


class CaptureLogger:
    """Keeps every metrics row (with its ``step``) and message, for assertions."""

    name = "capture"

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self.messages: list[str] = []

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        self.rows.append({**metrics, "step": step})

    def message(self, text: str) -> None:
        self.messages.append(text)

    def close(self) -> None:
        pass


class VersionOnlySync:
    """Moves only the policy version: for backends whose weights never change (a
    scripted backend in a test), so a backend plugin can run a step before its author
    writes a strategy that pushes weights."""

    name = "version_only"

    def __init__(self, cfg: cfgmod.TrainConfig | None = None) -> None:
        self.versions: list[int] = []

    def sync(self, model: object, backend: RolloutBackend, version: int) -> None:
        self.versions.append(version)
        backend.set_policy_version(version)

    def close(self) -> None:
        pass


class TestingPlugin:
    """Registers task ``seven``, logger ``capture`` (all runs share :attr:`capture`) and
    weight-sync strategy ``version_only``."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.capture = CaptureLogger()

    @hookimpl
    def register_tasks(self, registry: ComponentRegistry[TaskFactory]) -> None:
        registry.register("seven", SevenTask, description="test task: every answer is 7")

    @hookimpl
    def register_reward_functions(self, registry: ComponentRegistry[RewardFunction]) -> None:
        registry.register("spread", spread_reward, description="test reward: a text hash")

    @hookimpl
    def register_loggers(self, registry: ComponentRegistry[LoggerFactory]) -> None:
        def capture(cfg: cfgmod.TrainConfig, run: RunInfo) -> CaptureLogger:
            return self.capture

        registry.register("capture", capture, description="test logger: keeps every row")

    @hookimpl
    def register_weight_sync_strategies(
        self, registry: ComponentRegistry[WeightSyncFactory]
    ) -> None:
        registry.register("version_only", VersionOnlySync)


# Kept under its old name for tests that register only the task (and ``spread``).
class SevenPlugin:
    @hookimpl
    def register_tasks(self, registry: ComponentRegistry[TaskFactory]) -> None:
        registry.register("seven", SevenTask)

    @hookimpl
    def register_reward_functions(self, registry: ComponentRegistry[RewardFunction]) -> None:
        registry.register("spread", spread_reward)


def plugin_name(plugin: object) -> str:
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return type(plugin).__name__


def isolated_host(*plugins: object, testing: bool = True) -> PluginHost:
    """A plugin host with the built-ins and ``plugins`` only (no other installed
    plugin), plus :class:`TestingPlugin` (as ``grpo_plug.testing``) unless ``testing``
    is false. A plugin is a module or an object with ``@hookimpl`` methods."""
    saved = os.environ.get("GRPO_PLUG_PLUGINS")
    os.environ["GRPO_PLUG_PLUGINS"] = ""  # read once, by load()
    try:
        host = PluginHost()
        host.load()
    finally:
        if saved is None:
            del os.environ["GRPO_PLUG_PLUGINS"]
        else:
            os.environ["GRPO_PLUG_PLUGINS"] = saved
    if testing:
        host.register(TestingPlugin(), name="grpo_plug.testing")
    for plugin in plugins:
        host.register(plugin, name=plugin_name(plugin))
    return host


def registered(plugin: object) -> dict[str, list[str]]:
    """Component kind -> the names ``plugin`` registers (a plugin that registers nothing
    gets an empty dict: usually a missing ``@hookimpl``)."""
    host = isolated_host(plugin, testing=False)
    name = plugin_name(plugin)
    out: dict[str, list[str]] = {}
    for hook, kind in REGISTRY_HOOKS.items():
        names = [e.name for e in host.collect(hook) if e.plugin == name]
        if names:
            out[kind] = names
    return out


def tiny_config(
    tmp_path: Path, model: Path, *extra: str, host: PluginHost | None = None
) -> cfgmod.TrainConfig:
    """A config that trains ``model`` (see :func:`build_tiny_model`) on ``seven`` in
    a few seconds; ``extra`` overrides it; ``host`` gives the plugins' config sections."""
    return cfgmod.load(
        overrides=[
            f"cluster.fileroot={tmp_path / 'out'}",
            f"actor.path={model}",
            "actor.lr=2e-2",
            "actor.mb_max_tokens=512",
            "train_dataset.task=seven",
            "train_dataset.batch_size=4",
            "train_dataset.max_samples=200",
            "valid_dataset.task=seven",
            "valid_dataset.max_samples=8",
            "gconfig.n_samples=8",
            "gconfig.max_new_tokens=3",
            "reward.no_eos_reward=null",
            "evaluator.eval_before=false",
            "seed=3",
            *extra,
        ],
        sections=host.config_sections() if host is not None else None,
    )
