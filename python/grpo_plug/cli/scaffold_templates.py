"""The plugin module and test templates ``grpo-plug plugins new`` writes, one per kind.

``string.Template`` placeholders: ``$name`` (the component), ``$pkg`` (the import
package), ``$Class`` (``$name`` in CamelCase). Every template is a working component
its own tests pass against; the comments tell the author what to replace.
"""

from __future__ import annotations

REWARD = '''"""Reward function `$name`, registered through grpo-plug's reward hook."""

from __future__ import annotations

from collections.abc import Sequence

from grpo_plug.api import ComponentRegistry, RewardFunction, hookimpl


def $name(
    prompts: Sequence[str], completions: Sequence[str], **keywords: object
) -> list[float | None]:
    """1.0 when the completion contains a digit, else 0.0: replace with your rule.

    ``keywords`` holds what the trainer passes (``golds``, ``literal_answers``, see
    grpo_plug.api.REWARD_KEYWORDS); taking ``**keywords`` keeps this working when
    one is added. Return one float (or None: no opinion) per completion."""
    return [1.0 if any(ch.isdigit() for ch in c) else 0.0 for c in completions]


@hookimpl
def register_reward_functions(registry: ComponentRegistry[RewardFunction]) -> None:
    registry.register("$name", $name)
'''

REWARD_TEST = """from pathlib import Path

from grpo_plug.testing import check_reward_function, registered, run_training_step

from $pkg import plugin
from $pkg.plugin import $name


def test_registers() -> None:
    assert registered(plugin) == {"reward function": ["$name"]}


def test_contract() -> None:
    assert check_reward_function($name, completions=["7", "no", ""]) == [1.0, 0.0, 0.0]


def test_one_training_step(tmp_path: Path) -> None:
    res = run_training_step(
        plugin,
        workdir=tmp_path,
        overrides=("reward.functions=math_accuracy,$name", "reward.weights=1,0.5"),
    )
    assert "grpo_actor/reward/avg" in res.metrics
"""

LOGGER = '''"""Logger `$name`: tab-separated metrics in the run's log folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from grpo_plug.api import ComponentRegistry, LoggerFactory, RunInfo, TrainConfig, hookimpl, option


@dataclass
class ${Class}Config:
    """Keys `$name.*` (see `grpo-plug config keys`)."""

    filename: str = option("$name.tsv", "File written in the run's log folder.")
    prefix: str = option("", "Log only metrics whose names start with this ('' = all).")


class ${Class}Logger:
    """One `step, epoch, key, value` line per metric: replace with your tracker."""

    name = "$name"

    def __init__(self, cfg: TrainConfig, run: RunInfo) -> None:
        self.settings = cfg.section(${Class}Config)
        self.path = Path(run.log_dir) / self.settings.filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        for key, value in sorted(metrics.items()):
            if key.startswith(self.settings.prefix):
                self._fh.write(f"{step}\\t{epoch}\\t{key}\\t{value}\\n")
        self._fh.flush()

    def message(self, text: str) -> None:
        pass  # status lines; a tracker might keep them as notes

    def close(self) -> None:
        self._fh.close()


@hookimpl
def register_loggers(registry: ComponentRegistry[LoggerFactory]) -> None:
    registry.register("$name", ${Class}Logger, config=${Class}Config)
'''

LOGGER_TEST = """from pathlib import Path

from grpo_plug import config
from grpo_plug.testing import check_logger, isolated_host, registered, run_training_step

from $pkg import plugin
from $pkg.plugin import ${Class}Logger


def test_registers() -> None:
    assert registered(plugin) == {"logger": ["$name"]}


def test_contract(tmp_path: Path) -> None:
    host = isolated_host(plugin)
    cfg = config.load(overrides=["$name.prefix=grpo_actor/"], sections=host.config_sections())
    check_logger(${Class}Logger, log_dir=tmp_path, cfg=cfg)
    lines = (tmp_path / "$name.tsv").read_text().splitlines()
    assert lines == ["1\\t0\\tgrpo_actor/loss\\t0.5", "2\\t0\\tgrpo_actor/loss\\t0.25"]


def test_one_training_step(tmp_path: Path) -> None:
    res = run_training_step(
        plugin,
        workdir=tmp_path,
        overrides=("loggers=$name",),
    )
    assert "grpo_actor/lr" in (res.log_dir / "$name.tsv").read_text()  # logged every step
"""

TASK = '''"""Task `$name`: its problems, the prompt shown to the model, the gold answers."""

from __future__ import annotations

import random

from grpo_plug.api import ComponentRegistry, DatasetConfig, Example, TaskFactory, hookimpl


class ${Class}Task:
    """Seeded two-number sums: replace `load` with your dataset (e.g. read `cfg.path`)."""

    name = "$name"

    def __init__(self, cfg: DatasetConfig, seed: int) -> None:
        self.cfg = cfg
        self.seed = seed

    def load(self) -> list[Example]:
        rng = random.Random(f"$name:{self.seed}:{self.cfg.split}")
        out = []
        # The trainer cuts the list to max_samples; stopping early only saves time.
        for i in range(self.cfg.max_samples or 100):
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            uid = f"$name-{self.cfg.split}-{i}"
            out.append(Example(uid=uid, question=f"{a} {b}", gold=str(a + b)))
        return out

    def user_message(self, example: Example) -> str:
        return f"{example.question}\\nPlease put your final answer within \\\\boxed{{}}."


@hookimpl
def register_tasks(registry: ComponentRegistry[TaskFactory]) -> None:
    registry.register("$name", ${Class}Task, description="two-number sums")
'''

TASK_TEST = """from pathlib import Path

from grpo_plug.testing import check_task, registered, run_training_step

from $pkg import plugin
from $pkg.plugin import ${Class}Task


def test_registers() -> None:
    assert registered(plugin) == {"task": ["$name"]}


def test_contract() -> None:
    check_task(${Class}Task)


def test_one_training_step(tmp_path: Path) -> None:
    res = run_training_step(
        plugin,
        workdir=tmp_path,
        overrides=("train_dataset.task=$name", "valid_dataset.task=$name"),
    )
    assert res.summary.steps == 1
"""

BACKEND = '''"""Rollout backend `$name`. This template samples random tokens; replace `_sample`
with calls to your server (one request per `agenerate` call, several in flight)."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from grpo_plug.api import (
    ComponentRegistry,
    FinishReason,
    GenerationRequest,
    RolloutBackend,
    RolloutBackendFactory,
    RolloutContext,
    Sample,
    TrainConfig,
    hookimpl,
    option,
)


@dataclass
class ${Class}Config:
    """Keys `$name.*` (see `grpo-plug config keys`)."""

    stop_probability: float = option(0.25, "Chance that each token is EOS.", ge=0.0, le=1.0)


class ${Class}Backend:
    """Remote-style (async, one request per call), with weights of its own."""

    name = "$name"
    colocated = False  # it does not share the learner's model object
    in_process = False  # the controller sends requests concurrently, with retries

    def __init__(self, cfg: TrainConfig, ctx: RolloutContext) -> None:
        self.settings = cfg.section(${Class}Config)
        self.vocab = len(ctx.tokenizer)
        self.eos = ctx.tokenizer.eos_token_id
        self.version = 0
        self.requests = 0

    def set_policy_version(self, version: int) -> None:
        self.version = version  # every sample records the version that produced it

    def _sample(self, req: GenerationRequest, i: int) -> Sample:
        rng = random.Random(None if req.seed is None else req.seed + i)
        ids: list[int] = []
        while len(ids) < req.sampling.max_new_tokens:
            stop = rng.random() < self.settings.stop_probability
            ids.append(self.eos if stop else rng.randrange(self.vocab))
            if stop:
                break
        finish: FinishReason = "stop" if ids and ids[-1] == self.eos else "length"
        logprobs = [-math.log(self.vocab)] * len(ids)
        return Sample(req.rid, ids, logprobs, finish, self.version)

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        await asyncio.sleep(0)  # a real backend awaits its HTTP call here
        self.requests += len(requests)
        return [[self._sample(r, i) for i in range(r.n)] for r in requests]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        return asyncio.run(self.agenerate(requests))

    def stats(self) -> dict[str, float]:
        out, self.requests = {"$name/requests": float(self.requests)}, 0
        return out

    def close(self) -> None:
        pass


def make_backend(cfg: TrainConfig, ctx: RolloutContext) -> RolloutBackend:
    """Random tokens: a template to replace with your server's client."""
    return ${Class}Backend(cfg, ctx)


@hookimpl
def register_rollout_backends(registry: ComponentRegistry[RolloutBackendFactory]) -> None:
    registry.register("$name", make_backend, config=${Class}Config)
'''

BACKEND_TEST = """from pathlib import Path

from grpo_plug import config
from grpo_plug.testing import check_rollout_backend, isolated_host, registered, run_training_step

from $pkg import plugin
from $pkg.plugin import make_backend


def test_registers() -> None:
    assert registered(plugin) == {"rollout backend": ["$name"]}


def test_contract() -> None:
    cfg = config.load(sections=isolated_host(plugin).config_sections())
    check_rollout_backend(make_backend, cfg=cfg)


def test_one_training_step(tmp_path: Path) -> None:
    # This backend keeps no weights to update: `version_only` (from grpo_plug.testing)
    # only moves the policy version. A real one implements api.WeightUpdateSurface
    # (then weight_sync.strategy=disk works) or ships a strategy of its own.
    res = run_training_step(
        plugin,
        workdir=tmp_path,
        overrides=("rollout.backend=$name", "weight_sync.strategy=version_only"),
    )
    assert res.metrics["$name/requests"] > 0
"""

WEIGHT_SYNC = '''"""Weight-sync strategy `$name` for colocated backends: checks the weights, then
moves the policy version. A strategy for a server pushes the weights through the
backend's update surface (api.WeightUpdateSurface) instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grpo_plug.api import (
    ComponentRegistry,
    RolloutBackend,
    TrainConfig,
    WeightSyncFactory,
    hookimpl,
    option,
)


@dataclass
class ${Class}Config:
    """Keys `$name.*` (see `grpo-plug config keys`)."""

    check_finite: bool = option(True, "Refuse to sync weights that contain NaN or inf.")


class ${Class}Sync:
    name = "$name"

    def __init__(self, cfg: TrainConfig) -> None:
        self.settings = cfg.section(${Class}Config)

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> None:
        if not backend.colocated:
            raise RuntimeError(f"$name needs a colocated backend; {backend.name!r} is not")
        if self.settings.check_finite and model is not None:
            for pname, p in model.named_parameters():
                if not p.isfinite().all():
                    raise RuntimeError(f"$name: parameter {pname} is not finite")
        backend.set_policy_version(version)

    def close(self) -> None:
        pass


@hookimpl
def register_weight_sync_strategies(registry: ComponentRegistry[WeightSyncFactory]) -> None:
    registry.register("$name", ${Class}Sync, config=${Class}Config)
'''

WEIGHT_SYNC_TEST = """from pathlib import Path

from grpo_plug import config
from grpo_plug.testing import (
    RecordingBackend,
    check_weight_sync,
    isolated_host,
    registered,
    run_training_step,
)

from $pkg import plugin
from $pkg.plugin import ${Class}Sync


def test_registers() -> None:
    assert registered(plugin) == {"weight-sync strategy": ["$name"]}


def test_contract() -> None:
    cfg = config.load(sections=isolated_host(plugin).config_sections())
    check_weight_sync(${Class}Sync, backend=RecordingBackend(colocated=True), cfg=cfg)


def test_one_training_step(tmp_path: Path) -> None:
    res = run_training_step(
        plugin,
        workdir=tmp_path,
        overrides=("weight_sync.strategy=$name",),
    )
    assert res.summary.steps == 1
"""

KINDS: dict[str, tuple[str, str, str]] = {
    # kind -> (module template, test template, one line for the README)
    "reward": (REWARD, REWARD_TEST, "a reward function"),
    "backend": (BACKEND, BACKEND_TEST, "a rollout backend"),
    "weight-sync": (WEIGHT_SYNC, WEIGHT_SYNC_TEST, "a weight-sync strategy"),
    "logger": (LOGGER, LOGGER_TEST, "a metrics logger"),
    "task": (TASK, TASK_TEST, "a task (dataset, prompt and gold answers)"),
}

USE = {
    "reward": "reward.functions=math_accuracy,$name reward.weights=1,0.5",
    "backend": "rollout.backend=$name weight_sync.strategy=<one that fits>",
    "weight-sync": "weight_sync.strategy=$name",
    "logger": "loggers=console,jsonl,$name",
    "task": "train_dataset.task=$name valid_dataset.task=$name",
}
