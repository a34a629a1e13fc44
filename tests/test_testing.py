"""grpo_plug.testing: each contract check passes the built-ins and names what is wrong
in a broken component; the registry helper and the one-step harness."""

from __future__ import annotations

import json
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from grpo_plug import config as cfgmod
from grpo_plug.api import ComponentRegistry, Example, RewardFunction, hookimpl
from grpo_plug.builtin.rewards import boxed_format, math_accuracy
from grpo_plug.data.tasks import ArithTask
from grpo_plug.metrics.loggers import JsonlLogger
from grpo_plug.plugins import PluginHost
from grpo_plug.testing import (
    ContractError,
    RecordingBackend,
    VersionOnlySync,
    check_logger,
    check_reward_function,
    check_rollout_backend,
    check_task,
    check_weight_sync,
    registered,
    run_training_step,
    tiny_context,
)
from grpo_plug.weight_sync.inplace import InplaceSync

# ----------------------------------------------------------------------- rewards


def test_builtin_rewards_pass() -> None:
    assert check_reward_function(math_accuracy) == [1.0, 0.0, 0.0]
    assert check_reward_function(boxed_format) == [1.0, 0.0, 0.0]


def test_a_reward_without_kwargs_gets_only_what_it_names() -> None:
    seen: list[str] = []

    def strict(prompts: Sequence[str], completions: Sequence[str], *, golds: Sequence[str]) -> Any:
        seen.extend(golds)
        return [0.5] * len(completions)

    assert check_reward_function(strict) == [0.5, 0.5, 0.5]
    assert seen == ["5", "20", "8"]


def _short(p: Sequence[str], c: Sequence[str], **kw: Any) -> list[float]:
    return [1.0] * (len(c) - 1)


def _raises(p: Sequence[str], c: Sequence[str], **kw: Any) -> list[float]:
    raise ValueError("bad gold")


def _strings(p: Sequence[str], c: Sequence[str], **kw: Any) -> list[str]:
    return ["1"] * len(c)


def _nan(p: Sequence[str], c: Sequence[str], **kw: Any) -> list[float]:
    return [float("nan")] * len(c)


def _one_arg(completions: Sequence[str]) -> list[float]:
    return []


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_short, "reward function 'under test' (plugin 'under test') returned 2 values for 3"),
        (_raises, "reward function 'under test' (plugin 'under test') raised ValueError: bad gold"),
        (_strings, "returned '1' at index 0: expected a finite number or None"),
        (_nan, "returned nan at index 0: expected a finite number or None"),
        (_one_arg, "must take (prompts, completions, **keywords)"),
    ],
)
def test_broken_rewards_are_named(fn: Any, message: str) -> None:
    with pytest.raises(ContractError) as info:
        check_reward_function(fn)
    assert message in str(info.value)


def test_the_trainers_registry_checks_rewards_at_the_call(host: PluginHost) -> None:
    class Short:
        @hookimpl
        def register_reward_functions(self, registry: ComponentRegistry[RewardFunction]) -> None:
            registry.register("short", _short)

    host.register(Short(), name="shorty")
    fn = host.reward_functions().get("short")
    with pytest.raises(Exception, match=r"reward function 'short' \(plugin 'shorty'\) returned 1"):
        fn(["p", "q"], ["a", "b"], golds=["1", "2"], literal_answers=False)


# ----------------------------------------------------------------------- tasks


def test_builtin_task_passes() -> None:
    check_task(ArithTask)


class _NoCut:
    name = "nocut"

    def __init__(self, cfg: Any, seed: int) -> None:
        pass

    def load(self) -> list[Example]:
        return [Example(f"u{i}", "q", "1") for i in range(10)]

    def user_message(self, example: Example) -> str:
        return example.question


class _Dupes(_NoCut):
    def load(self) -> list[Example]:
        return [Example("same", "q", "1")] * 2


class _Clash(_NoCut):
    def load(self) -> list[Example]:
        return [Example("a", "q", "1", fields={"golds": 1})]


def test_broken_tasks_are_named() -> None:
    assert len(check_task(_NoCut).load()) == 10  # max_samples: the trainer cuts the list
    with pytest.raises(ContractError, match=r"load\(\)\[1\].uid 'same' repeats"):
        check_task(_Dupes)
    with pytest.raises(ContractError, match="example 'a' has field 'golds', which cannot be"):
        check_task(_Clash)  # a built-in reward keyword's name


# ----------------------------------------------------------------------- loggers


def test_builtin_logger_passes(tmp_path: Path) -> None:
    check_logger(JsonlLogger, log_dir=tmp_path)
    # The fresh run logged steps 1 and 2; the rerun's resume(1) dropped step 2.
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in rows] == [1]
    assert not (tmp_path / "metrics.jsonl.1").exists()  # start_fresh() found it empty


def test_check_logger_calls_in_the_trainers_order(tmp_path: Path) -> None:
    calls: list[str] = []

    class Recorder:
        name = "recorder"

        def __init__(self, cfg: object, run: object) -> None:
            calls.append("factory")

        def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
            calls.append(f"log {step}")

        def message(self, text: str) -> None:
            calls.append("message")

        def start_fresh(self) -> None:
            calls.append("start_fresh")

        def resume(self, global_step: int) -> None:
            calls.append(f"resume {global_step}")

        def close(self) -> None:
            calls.append("close")

    check_logger(Recorder, log_dir=tmp_path)
    fresh = ["factory", "message", "start_fresh", "log 1", "log 2", "message", "close"]
    rerun = ["factory", "message", "resume 1", "message", "close"]
    assert calls == fresh + rerun


def test_a_failing_logger_is_named() -> None:
    class Full:
        name = "full"

        def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
            raise OSError("disk full")

        def message(self, text: str) -> None: ...

        def close(self) -> None: ...

    with pytest.raises(ContractError, match="logger 'full': log\\(\\) raised OSError: disk full"):
        check_logger(Full())


# ----------------------------------------------------------------------- weight sync


def test_builtin_strategies_pass() -> None:
    check_weight_sync(InplaceSync, backend=RecordingBackend(colocated=True))
    check_weight_sync(VersionOnlySync)


def test_a_strategy_that_forgets_the_version_is_named() -> None:
    class Forgetful:
        name = "forgetful"

        def __init__(self, cfg: Any) -> None: ...

        def sync(self, model: Any, backend: Any, version: int) -> None:
            backend.pause_generation()

        def close(self) -> None: ...

    with pytest.raises(ContractError, match=r"'forgetful': after sync.*version=1.* at 0"):
        check_weight_sync(Forgetful)
    with pytest.raises(ContractError, match=r"needs a colocated rollout backend"):
        check_weight_sync(InplaceSync)  # a backend with its own weights


# ----------------------------------------------------------------------- backends


def test_builtin_hf_backend_passes(tmp_path: Path) -> None:
    from grpo_plug.builtin.hf_backend import make_hf_backend

    backend = check_rollout_backend(make_hf_backend, ctx=tiny_context(tmp_path / "m"))
    assert backend.name == "hf"


def test_a_backend_that_ignores_the_policy_version_is_named(tmp_path: Path) -> None:
    from grpo_plug.builtin.hf_backend import make_hf_backend

    backend = make_hf_backend(cfgmod.load(sections={}), tiny_context(tmp_path / "m"))
    backend.set_policy_version = lambda version: None  # type: ignore[method-assign]
    with pytest.raises(ContractError, match="policy_version 0, expected 3"):
        check_rollout_backend(backend)


def test_a_backend_whose_token_versions_miss_a_token_is_named(tmp_path: Path) -> None:
    from grpo_plug.builtin.hf_backend import make_hf_backend

    backend = make_hf_backend(cfgmod.load(sections={}), tiny_context(tmp_path / "m"))
    real = backend.generate

    def generate(requests: Any) -> Any:
        out = real(requests)
        for group in out:
            for s in group:
                s.token_versions = s.token_versions[1:]
        return out

    backend.generate = generate  # type: ignore[method-assign]
    with pytest.raises(ContractError, match=r"token_versions for \d+ tokens"):
        check_rollout_backend(backend)


# ----------------------------------------------------------------------- registry helper


def test_registered_names_what_a_plugin_registers() -> None:
    mod = types.ModuleType("pluginmod")

    @hookimpl
    def register_reward_functions(registry: ComponentRegistry[RewardFunction]) -> None:
        registry.register("tiny", _short)

    mod.register_reward_functions = register_reward_functions  # type: ignore[attr-defined]
    assert registered(mod) == {"reward function": ["tiny"]}
    # A module whose function lacks @hookimpl registers nothing: visible here.
    bare = types.ModuleType("bare")
    bare.register_reward_functions = lambda registry: None  # type: ignore[attr-defined]
    assert registered(bare) == {}


# ----------------------------------------------------------------------- harness


class _LengthReward:
    @hookimpl
    def register_reward_functions(self, registry: ComponentRegistry[RewardFunction]) -> None:
        registry.register("short_is_good", lambda p, c, **kw: [1.0 / (1 + len(x)) for x in c])


def test_one_training_step_with_a_plugin_selected_by_config(tmp_path: Path) -> None:
    res = run_training_step(
        _LengthReward(),
        workdir=tmp_path,
        overrides=("reward.functions=math_accuracy,short_is_good", "reward.weights=1,0.5"),
    )
    assert res.summary.steps == 1
    assert res.metrics["grpo_actor/reward/avg"] > 0  # the length reward is never 0
    assert res.metrics["grpo_actor/task_reward/avg"] >= 0
