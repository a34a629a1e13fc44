"""The plugin author's kit: correctness rewards, per-function reward metrics, the
trainer's max_samples, config sections for rewards and tasks, broken installed plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grpo_plug import config as cfgmod
from grpo_plug.api import ComponentRegistry, DatasetConfig, Example, TrainConfig, hookimpl, option
from grpo_plug.errors import PluginError
from grpo_plug.metrics import names as mn
from grpo_plug.plugins import PluginHost
from grpo_plug.rewards import RewardSpec, score_samples
from grpo_plug.testing import check_reward_function, check_task, run_training_step

REPO = Path(__file__).resolve().parents[1]


class _Task:
    name = "t"
    literal_answers = False

    def load(self) -> list[Example]:
        return []

    def user_message(self, example: Example) -> str:
        return ""


def test_math_accuracy_declares_correctness(host: PluginHost) -> None:
    reg = host.reward_functions()
    assert reg.entry("math_accuracy").correctness
    assert not reg.entry("format").correctness


def test_correctness_is_for_reward_functions_only() -> None:
    reg: ComponentRegistry[Any] = ComponentRegistry("logger")
    with pytest.raises(PluginError, match="correctness=True: only reward functions take it"):
        reg.register("x", object, correctness=True)


def test_a_third_party_correctness_reward_is_the_task_reward() -> None:
    def right(p: Sequence[str], c: Sequence[str], **kw: Any) -> list[float | None]:
        return [1.0, 0.0, 1.0]

    def half(p: Sequence[str], c: Sequence[str], **kw: Any) -> list[float | None]:
        return [0.5, None, 0.5]

    cfg = cfgmod.load(overrides=["reward.no_eos_reward=-1"], sections={})
    no_eos = np.array([False, False, True])
    args = (_Task(), ["q"] * 3, ["a"] * 3, ["1"] * 3, no_eos, cfg)
    ids = {"completion_ids": [[1, 2]] * 3}
    got = score_samples(
        [RewardSpec("right", right, 1.0, True), RewardSpec("half", half, 2.0)], *args, **ids
    )
    assert got.task_reward.tolist() == [1.0, 0.0, 1.0]  # graded, before no_eos_reward
    assert got.per_function["right"].tolist() == [1.0, 0.0, -1.0]
    assert got.per_function["half"].tolist() == [0.5, 0.0, 0.5]  # not a correctness function
    assert got.reward.tolist() == [2.0, 0.0, 0.0]
    plain = score_samples(
        [RewardSpec("right", right, 1.0)], *args, **ids
    )  # not declared: no accuracy
    assert plain.task_reward.tolist() == [0.0, 0.0, 0.0] and plain.reward.tolist() == [1, 0, 1]


# A plugin using the whole kit: a task that ignores max_samples and reads its section,
# and two reward functions, one a correctness reward, one reading its section.


@dataclass
class KitTaskConfig:
    """Keys `kit_task.*`."""

    answer: int = option(7, "The gold answer of every question.")


@dataclass
class KitRewardConfig:
    """Keys `kit_reward.*`."""

    value: float = option(0.5, "The score of every completion.")


class KitTask:
    name = "kit_task"

    def __init__(self, cfg: DatasetConfig, seed: int, *, config: TrainConfig) -> None:
        self.gold = str(config.section(KitTaskConfig).answer)

    def load(self) -> list[Example]:
        return [Example(f"kit-{i}", "1 2 3", self.gold) for i in range(50)]  # no max_samples

    def user_message(self, example: Example) -> str:
        return example.question


def kit_correct(
    prompts: Sequence[str], completions: Sequence[str], *, golds: Sequence[str]
) -> list[float | None]:
    """1.0 when the gold is the section's answer (so always, here)."""
    return [1.0 if g == "9" else 0.0 for g in golds]


def kit_reward(
    prompts: Sequence[str], completions: Sequence[str], *, config: TrainConfig
) -> list[float | None]:
    return [config.section(KitRewardConfig).value] * len(completions)


class KitPlugin:
    @hookimpl
    def register_tasks(self, registry: ComponentRegistry[Any]) -> None:
        registry.register("kit_task", KitTask, config=KitTaskConfig)

    @hookimpl
    def register_reward_functions(self, registry: ComponentRegistry[Any]) -> None:
        registry.register("kit_correct", kit_correct, correctness=True)
        registry.register("kit_reward", kit_reward, config=KitRewardConfig)


def test_reward_and_task_read_their_sections() -> None:
    cfg = cfgmod.load(
        overrides=["kit_reward.value=0.25", "kit_task.answer=3"],
        sections={"kit_reward": KitRewardConfig, "kit_task": KitTaskConfig},
    )
    assert check_reward_function(kit_reward, cfg=cfg) == [0.25, 0.25, 0.25]
    task = check_task(KitTask, DatasetConfig(max_samples=5), cfg=cfg)
    assert len(task.load()) == 50 and task.load()[0].gold == "3"  # the trainer cuts, not the task


def test_a_check_without_the_components_section_says_how_to_give_it(tmp_path: Path) -> None:
    from grpo_plug.testing import ContractError, isolated_host

    with pytest.raises(ContractError) as info:
        check_reward_function(kit_reward)  # reads kit_reward.*, absent from the defaults
    assert "KitRewardConfig: not a config section of this run" in str(info.value)
    assert "pass cfg=grpo_plug.config.load(sections=isolated_host(" in str(info.value)
    with pytest.raises(ContractError, match="isolated_host"):
        check_task(KitTask)
    cfg = cfgmod.load(sections=isolated_host(KitPlugin()).config_sections())
    assert check_reward_function(kit_reward, cfg=cfg) == [0.5] * 3  # the hint works as given


def test_a_step_logs_each_reward_function_and_cuts_max_samples(tmp_path: Path) -> None:
    res = run_training_step(
        KitPlugin(),
        workdir=tmp_path,
        overrides=(
            "train_dataset.task=kit_task",
            "train_dataset.max_samples=8",
            "valid_dataset.task=kit_task",
            "kit_task.answer=9",
            "reward.functions=kit_correct,kit_reward",
            "reward.weights=1,2",
            "kit_reward.value=0.25",
        ),
    )
    m = res.metrics
    assert m[mn.reward_function("kit_correct")] == 1.0
    assert m[mn.reward_function("kit_reward")] == 0.25
    assert m[mn.REWARD] == pytest.approx(1.0 + 2 * 0.25)  # the weighted sum, readable
    assert m[mn.TASK_REWARD] == 1.0  # kit_correct declared correctness=True
    assert res.summary.n_eval == 4  # valid_dataset.max_samples=4 (the harness's)
    assert any("kit_task (8 examples)" in msg for msg in res.messages)


def token_count(
    prompts: Sequence[str], completions: Sequence[str], *, completion_ids: list[list[int]]
) -> list[float | None]:
    """Names only `completion_ids`: a length in tokens, not in characters."""
    return [float(len(ids)) for ids in completion_ids]


class TokenPlugin:
    @hookimpl
    def register_reward_functions(self, registry: ComponentRegistry[Any]) -> None:
        registry.register("token_count", token_count)


def test_a_reward_function_gets_each_completions_token_ids(tmp_path: Path) -> None:
    assert check_reward_function(token_count, completions=["ab", "", "é"]) == [2.0, 0.0, 2.0]
    assert check_reward_function(token_count, completions=["ab"], completion_ids=[[7]]) == [1.0]
    res = run_training_step(
        TokenPlugin(),
        workdir=tmp_path,
        overrides=("reward.functions=math_accuracy,token_count", "reward.weights=1,0.01"),
    )
    m = res.metrics
    # The mean of its values is the mean generated length the trainer logs.
    assert m[mn.reward_function("token_count")] == pytest.approx(m[mn.SEQ_LEN], rel=1e-5)
    assert m[mn.SEQ_LEN] > 0


def test_only_listed_installed_plugins_load_but_builtins_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRPO_PLUG_PLUGINS", "")
    names = {p.name for p in PluginHost().plugins()}
    assert "builtin.rewards" in names and "example" not in names


# ----------------------------------------------------------------------- a broken plugin


BAD_HOOK = """from grpo_plug import hookimpl


@hookimpl
def register_reward_functions(registry):
    raise RuntimeError("reward table missing")
"""

BROKEN = {
    "import": "plugin 'badplug' (badplug_mod.plugin) failed to import: ModuleNotFoundError: "
    "No module named 'no_such_module_xyz'",
    "hook": "plugin 'badplug' failed in register_reward_functions: RuntimeError: "
    "reward table missing",
}
DISABLE = "fix it or disable it with GRPO_PLUG_DISABLE_PLUGINS=badplug"


@pytest.fixture(params=["import", "hook"])
def broken_env(tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """An installed plugin `badplug` (a real dist-info entry point) whose module fails
    to import, or whose register_* hook raises, on PYTHONPATH for the real `grpo-plug`
    command; ``BROKEN_WHY`` in the env is the line it should be reported with."""
    (tmp_path / "badplug_mod").mkdir()
    (tmp_path / "badplug_mod" / "__init__.py").write_text("")
    code = "import no_such_module_xyz\n" if request.param == "import" else BAD_HOOK
    (tmp_path / "badplug_mod" / "plugin.py").write_text(code)
    dist = tmp_path / "badplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: badplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[grpo_plug]\nbadplug = badplug_mod.plugin\n")
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", "TERM": "dumb"}
    env["BROKEN_WHY"] = BROKEN[request.param]
    env.pop("GRPO_PLUG_PLUGINS", None)
    env.pop("GRPO_PLUG_DISABLE_PLUGINS", None)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "grpo_plug", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_a_broken_plugin_leaves_help_doctor_and_plugins_working(
    broken_env: dict[str, str],
) -> None:
    res = _cli(broken_env, "--help")
    assert res.returncode == 0 and "train" in res.stdout, res.stderr
    res = _cli(broken_env, "doctor", "--fileroot", "/tmp")
    fail = [line for line in res.stdout.splitlines() if "plugins" in line]
    assert fail and fail[0].lstrip().startswith("fail"), res.stdout
    assert broken_env["BROKEN_WHY"] in fail[0]
    assert "GRPO_PLUG_DISABLE_PLUGINS=badplug" in fail[0]
    res = _cli(broken_env, "plugins", "--json")
    assert res.returncode == 0, res.stderr
    rows = {row["name"]: row for row in json.loads(res.stdout)}
    assert rows["badplug"]["source"] == "broken"
    assert rows["badplug"]["error"] == broken_env["BROKEN_WHY"]
    assert "math_accuracy" in {c["name"] for c in rows["builtin.rewards"]["components"]}


def test_a_broken_plugin_stops_only_the_runs_that_name_what_it_would_provide(
    broken_env: dict[str, str], tmp_path: Path
) -> None:
    root = f"cluster.fileroot={tmp_path}"
    runs = {
        "reward function 'mine'": ["train", "--preset", "cpu", root, "reward.functions=[mine]"],
        "task 'mine'": ["eval", "--task", "mine", "--max-samples", "1"],
    }
    for what, args in runs.items():
        res = _cli(broken_env, *args)
        assert res.returncode == 2, res.stdout + res.stderr
        (line,) = res.stderr.strip().splitlines()
        assert line.startswith(f"error: unknown {what}; available: "), line
        assert line.endswith(f"; {broken_env['BROKEN_WHY']}; {DISABLE}"), line
    # What does not use it goes on, the config commands included.
    res = _cli(broken_env, "config", "show", "total_train_steps=1")
    assert res.returncode == 0 and "total_train_steps: 1" in res.stdout, res.stderr
    res = _cli(broken_env, "config", "keys")
    assert res.returncode == 0 and "total_train_steps" in res.stdout, res.stderr
    assert "Traceback" not in res.stderr
