"""Plugin-owned configuration: a component's own typed section, validated like the
built-ins, listed by `config keys`, shown by `config show`, read by its factory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from grpo_plug import config as cfgmod
from grpo_plug.api import ComponentRegistry, LoggerFactory, RunInfo, hookimpl, option
from grpo_plug.cli import app
from grpo_plug.errors import PluginError
from grpo_plug.plugins import PluginHost
from grpo_plug.testing import check_logger, isolated_host


@dataclass
class ShoutConfig:
    """Keys `shout.*`."""

    times: int = option(2, "How often each message is repeated.", ge=1, le=5)
    suffix: str = option("!", "Appended to every message.")
    mode: str = option("upper", "Letter case.")


class ShoutLogger:
    name = "shout"

    def __init__(self, cfg: cfgmod.TrainConfig, run: RunInfo) -> None:
        self.settings = cfg.section(ShoutConfig)
        self.lines: list[str] = []

    def log(self, metrics: object, step: int, epoch: int) -> None:
        pass

    def message(self, text: str) -> None:
        self.lines += [text.upper() + self.settings.suffix] * self.settings.times

    def close(self) -> None:
        pass


class ShoutPlugin:
    @hookimpl
    def register_loggers(self, registry: ComponentRegistry[LoggerFactory]) -> None:
        registry.register("shout", ShoutLogger, config=ShoutConfig)


@pytest.fixture()
def shout(host: PluginHost) -> PluginHost:
    host.register(ShoutPlugin(), name="shout-plugin")
    return host


def test_section_values_reach_the_factory(shout: PluginHost) -> None:
    cfg = cfgmod.load(overrides=["shout.times=3", "shout.suffix=_x"])
    logger = check_logger(ShoutLogger, cfg=cfg)
    assert isinstance(logger, ShoutLogger)
    assert logger.lines == ["LOADING THE MODEL_x"] * 3 + ["A STATUS LINE_x"] * 3
    assert cfgmod.load().section(ShoutConfig) == ShoutConfig()  # defaults without keys


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("shout.tims=3", "shout.tims: unknown config key (did you mean 'shout.times'?)"),
        ("shout.times=abc", "shout.times: expected an integer, got 'abc'"),
        ("shout.times=9", "shout.times: 9 is out of range (must be <= 5)"),
        ("shout=1", "shout: is a section; set one of its keys, e.g. shout.<name>"),
    ],
)
def test_section_keys_are_validated(shout: PluginHost, override: str, message: str) -> None:
    with pytest.raises(cfgmod.ConfigError) as info:
        cfgmod.load(overrides=[override])
    assert str(info.value) == message


def test_yaml_files_are_validated_too(shout: PluginHost, tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("shout:\n  times: 4\n")
    assert cfgmod.load(config_file=path).section(ShoutConfig).times == 4
    path.write_text("shout:\n  loud: true\n")
    with pytest.raises(cfgmod.ConfigError, match=r"shout\.loud: unknown config key"):
        cfgmod.load(config_file=path)


def test_without_the_plugin_the_keys_are_unknown(host: PluginHost) -> None:
    with pytest.raises(cfgmod.ConfigError, match=r"shout\.times: unknown config key"):
        cfgmod.load(overrides=["shout.times=3"])
    with pytest.raises(cfgmod.ConfigError, match="ShoutConfig: not a config section"):
        cfgmod.load().section(ShoutConfig)


def test_config_keys_and_show_list_the_section(shout: PluginHost) -> None:
    runner = CliRunner()
    keys = runner.invoke(app, ["config", "keys"], env={"COLUMNS": "250"})
    assert keys.exit_code == 0, keys.output
    assert "shout.times" in keys.output and "How often each message" in keys.output
    shown = runner.invoke(app, ["config", "show", "shout.times=4"])
    assert shown.exit_code == 0, shown.output
    data = yaml.safe_load(shown.stdout)
    assert data["shout"] == {"times": 4, "suffix": "!", "mode": "upper"}
    assert "plugin_sections" not in data
    # What `config show` prints loads back to the same config.
    assert cfgmod.from_dict(data) == cfgmod.load(overrides=["shout.times=4"])


def test_a_section_may_not_shadow_a_builtin_key() -> None:
    class Clash:
        @hookimpl
        def register_loggers(self, registry: ComponentRegistry[LoggerFactory]) -> None:
            registry.register("actor", ShoutLogger, config=ShoutConfig)

    with pytest.raises(PluginError, match=r"plugin 'Clash' .*'actor', which is a built-in"):
        isolated_host(Clash()).config_sections()


def test_config_must_be_a_dataclass() -> None:
    class NotADataclass:
        @hookimpl
        def register_loggers(self, registry: ComponentRegistry[LoggerFactory]) -> None:
            registry.register("odd", ShoutLogger, config=dict)

    with pytest.raises(PluginError, match="config=<class 'dict'>: expected a dataclass"):
        isolated_host(NotADataclass()).loggers()


@pytest.mark.parametrize("arg", ["reward.weights=1,0.5", "reward.weights=1.0,0.5"])
def test_lists_take_the_comma_form(arg: str) -> None:
    cfg = cfgmod.load(overrides=["reward.functions=math_accuracy,format", arg], sections={})
    assert cfg.reward.weights == [1.0, 0.5]


def test_sglang_declares_its_section_and_its_keys_work_as_before(host: PluginHost) -> None:
    assert host.rollout_backends().entry("sglang").config is cfgmod.SGLangConfig
    assert "sglang" not in host.config_sections()  # it stays in the built-in schema
    cfg = cfgmod.load(overrides=["sglang.mem_fraction_static=0.5"])
    assert cfg.sglang.mem_fraction_static == 0.5
    with pytest.raises(cfgmod.ConfigError, match=r"did you mean 'sglang\.mem_fraction_static'"):
        cfgmod.load(overrides=["sglang.mem_fraction=0.5"])
