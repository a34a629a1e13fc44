from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import typer

from grpo_plug import hookimpl, hookspecs
from grpo_plug.config import TrainConfig
from grpo_plug.errors import DuplicateComponentError, PluginError
from grpo_plug.plugins import PluginHost
from grpo_plug.registry import ComponentRegistry
from grpo_plug.types import RunInfo

REPO = Path(__file__).resolve().parents[1]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("register_") and callable(f))


class Throwaway:
    """A plugin object registered only for one test."""

    @hookimpl
    def register_reward_functions(self, registry: ComponentRegistry[Any]) -> None:
        registry.register("always_one", lambda p, c, **kw: [1.0] * len(c))


# ----------------------------------------------------------------------- meta-tests


def test_every_hook_is_documented() -> None:
    doc = (REPO / "docs" / "plugins.md").read_text()
    for name in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"### {name}({params})" in doc, f"{name} missing from docs/plugins.md"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


def test_every_hook_has_a_test() -> None:
    tests = set(re.findall(r"def (test_hook_\w+)", Path(__file__).read_text()))
    for name in HOOKS:
        assert f"test_hook_{name}" in tests


# ----------------------------------------------------------------------- one test per hook


def test_hook_register_rollout_backends(host: PluginHost) -> None:
    class Plugin:
        @hookimpl
        def register_rollout_backends(self, registry: ComponentRegistry[Any]) -> None:
            registry.register("fake", lambda cfg, ctx: None, description="a fake backend")

    host.register(Plugin(), name="fake-backend")
    reg = host.rollout_backends()
    assert reg.entry("fake").plugin == "fake-backend"
    assert reg.entry("fake").description == "a fake backend"


def test_hook_register_weight_sync_strategies(host: PluginHost) -> None:
    reg = host.weight_sync_strategies()
    assert reg.entry("inplace").plugin == "builtin.weight_sync"


def test_hook_register_tasks(host: PluginHost) -> None:
    reg = host.tasks()
    assert {"gsm8k", "arith"} <= set(reg.names())


def test_hook_register_reward_functions(host: PluginHost) -> None:
    host.register(Throwaway(), name="throwaway")
    try:
        reg = host.reward_functions()
        assert reg.get("always_one")([], ["a", "b"]) == [1.0, 1.0]
        assert {"math_accuracy", "format"} <= set(reg.names())
    finally:
        host.unregister("throwaway")
    assert "always_one" not in host.reward_functions()


def test_hook_register_loggers(host: PluginHost, tmp_path: Path) -> None:
    reg = host.loggers()
    logger = reg.get("jsonl")(TrainConfig(), RunInfo("e", "t", str(tmp_path)))
    logger.log({"grpo_actor/loss": 0.5}, step=3, epoch=0)
    logger.close()
    line = (tmp_path / "metrics.jsonl").read_text().strip()
    assert '"global_step": 3' in line and '"grpo_actor/loss": 0.5' in line


def test_hook_register_commands(host: PluginHost) -> None:
    app = typer.Typer()
    seen: list[str] = []

    class Plugin:
        @hookimpl
        def register_commands(self, app: typer.Typer) -> None:
            @app.command()
            def hello() -> None:
                seen.append("hello")

    host.register(Plugin(), name="cmds")
    host.add_commands(app)
    assert [c.callback.__name__ for c in app.registered_commands if c.callback] == ["hello"]


# ----------------------------------------------------------------------- host behaviour


def test_duplicate_names_are_an_error_naming_both(host: PluginHost) -> None:
    class Clash:
        @hookimpl
        def register_reward_functions(self, registry: ComponentRegistry[Any]) -> None:
            registry.register("math_accuracy", lambda p, c, **kw: [])

    host.register(Clash(), name="clash")
    with pytest.raises(DuplicateComponentError) as info:
        host.reward_functions()
    assert "'builtin.rewards'" in str(info.value) and "'clash'" in str(info.value)


def test_unknown_hook_is_rejected(host: PluginHost) -> None:
    class Typo:
        @hookimpl
        def register_reward_fn(self, registry: Any) -> None:
            pass

    with pytest.raises(PluginError, match="plugin 'typo' is invalid") as info:
        host.register(Typo(), name="typo")
    assert str(info.value).endswith("(did you mean 'register_reward_functions'?)")


def test_unknown_component_suggests(host: PluginHost) -> None:
    with pytest.raises(PluginError, match=r"unknown task 'gsm8' \(did you mean 'gsm8k'\?\)"):
        host.tasks().get("gsm8")


def test_failing_hook_names_plugin(host: PluginHost) -> None:
    class Broken:
        @hookimpl
        def register_loggers(self, registry: Any) -> None:
            raise RuntimeError("boom")

    host.register(Broken(), name="broken")
    loggers = host.loggers()  # set aside: a run that does not use it goes on
    assert "jsonl" in loggers
    with pytest.raises(PluginError) as info:
        loggers.get("mine")
    assert str(info.value).startswith("unknown logger 'mine'")
    assert "plugin 'broken' failed in register_loggers: RuntimeError: boom" in str(info.value)


def test_a_misspelled_disable_list_name_is_warned_and_filters_are_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GRPO_PLUG_DISABLE_PLUGINS", "exmaple,builtin.rewards")
    host = PluginHost()
    host.load()
    err = capsys.readouterr().err
    assert "warning: GRPO_PLUG_DISABLE_PLUGINS names 'exmaple' (did you mean 'example'?)" in err
    assert err.count("warning:") == 1  # builtin.rewards is a real plugin: no warning
    with pytest.raises(PluginError) as info:
        host.reward_functions().get("math_accuracy")
    assert "not loaded by GRPO_PLUG_PLUGINS / GRPO_PLUG_DISABLE_PLUGINS: builtin.rewards" in str(
        info.value
    )


def test_entry_point_plugin_is_discovered(host: PluginHost) -> None:
    # grpo-plug-example is installed into the test venv by `make setup`.
    reg = host.reward_functions()
    assert reg.entry("brevity").plugin == "example"
    assert reg.get("brevity")([], ["x" * 100, "x" * 2000]) == [1.0, 0.0]
    assert "csv" in host.loggers()


def test_allow_and_block_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPO_PLUG_PLUGINS", "")
    assert "brevity" not in PluginHost().reward_functions()
    monkeypatch.setenv("GRPO_PLUG_PLUGINS", "example")
    monkeypatch.setenv("GRPO_PLUG_DISABLE_PLUGINS", "builtin.loggers")
    fresh = PluginHost()
    assert "brevity" in fresh.reward_functions()
    assert "jsonl" not in fresh.loggers()


def test_a_misspelled_allow_list_name_is_an_error_not_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRPO_PLUG_PLUGINS", "exmaple")
    host = PluginHost()
    assert "exmaple" in host.broken()
    with pytest.raises(PluginError) as info:
        host.check_broken()
    msg = str(info.value)
    assert "GRPO_PLUG_PLUGINS names 'exmaple' (did you mean" in msg
    assert "which no installed plugin provides" in msg
    assert "did you mean 'example'?" in msg and "fix GRPO_PLUG_PLUGINS" in msg
    assert "GRPO_PLUG_DISABLE_PLUGINS" not in msg  # disabling a typo would not help


def test_plugin_that_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    class FakeEP:
        name = "badplugin"
        value = "does_not_exist.module"
        dist = None

        def load(self) -> Any:
            raise ModuleNotFoundError("No module named 'does_not_exist'")

    real = metadata.entry_points

    def fake(**kw: Any) -> Any:
        return [FakeEP()] if kw.get("group") == "grpo_plug" else real(**kw)

    monkeypatch.setattr(metadata, "entry_points", fake)
    host = PluginHost()
    host.load()  # set aside: `plugins` and `doctor` still list what did load
    assert set(host.broken()) == {"badplugin"}
    tasks = host.tasks()  # a run that does not use it goes on
    assert "gsm8k" in tasks
    with pytest.raises(PluginError) as info:
        tasks.get("theirs")  # ... and one that names what it may have provided stops
    msg = str(info.value)
    assert msg.startswith("unknown task 'theirs'")
    assert "plugin 'badplugin' (does_not_exist.module) failed to import" in msg
    assert msg.endswith("disable it with GRPO_PLUG_DISABLE_PLUGINS=badplugin")


def test_trace_switch(host: PluginHost, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("GRPO_PLUG_TRACE_PLUGINS", "1")
    host.tasks()
    assert "[grpo-plug trace] register_tasks <- builtin.tasks" in capsys.readouterr().err


def test_loading_is_lazy_and_idempotent() -> None:
    code = (
        "import sys, grpo_plug.plugins as p; h = p.get_host();"
        "assert 'grpo_plug.builtin.rewards' not in sys.modules;"
        "h.load(); h.load(); print(len(h.plugins()))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(res.stdout) >= 5


def test_module_plugin_registration(host: PluginHost) -> None:
    mod = types.ModuleType("modplugin")

    @hookimpl
    def register_tasks(registry: ComponentRegistry[Any]) -> None:
        registry.register("mytask", object)

    mod.register_tasks = register_tasks  # type: ignore[attr-defined]
    host.register(mod, name="modplugin")
    assert host.tasks().entry("mytask").plugin == "modplugin"
