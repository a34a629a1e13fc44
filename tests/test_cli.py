from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from grpo_plug import hookimpl
from grpo_plug.cli import app
from grpo_plug.plugins import PluginHost

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_version_and_help() -> None:
    res = run("--version")
    assert res.exit_code == 0 and "grpo-plug 0.1.0" in res.output
    res = run("--help")
    for cmd in ("presets", "config", "plugins", "doctor"):
        assert cmd in res.output


def test_presets_lists_every_preset() -> None:
    res = run("presets")
    assert res.exit_code == 0, res.output
    for name in ("cpu", "fast", "1hour", "3hour", "full"):
        assert f"{name}:" in res.output


def test_config_show_full_is_valid_yaml() -> None:
    res = run("config", "show", "--preset", "full", "gconfig.n_samples=8")
    assert res.exit_code == 0, res.output
    data = yaml.safe_load(res.stdout)
    assert data["gconfig"]["n_samples"] == 8
    assert data["train_dataset"]["max_samples"] == 7473


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("actor.lr=abc", "error: actor.lr: expected a number, got 'abc'"),
        ("actr.lr=1e-6", "error: actr.lr: unknown config key (did you mean 'actor.lr'?)"),
    ],
)
def test_config_show_errors_are_one_line(arg: str, expected: str) -> None:
    # A real process, so stderr and the exit code are what a user sees.
    res = subprocess.run(
        [sys.executable, "-m", "grpo_plug", "config", "show", "--preset", "full", arg],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == expected
    assert res.stdout == ""


def test_config_keys_lists_help() -> None:
    res = run("config", "keys")
    assert res.exit_code == 0
    assert "gconfig.n_samples" in res.output


def test_plugins_json_shows_builtins_and_throwaway(host: PluginHost) -> None:
    class Throwaway:
        @hookimpl
        def register_loggers(self, registry: Any) -> None:
            registry.register("nowhere", object, description="drops everything")

    host.register(Throwaway(), name="throwaway-logger")
    res = run("plugins", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert rows["throwaway-logger"]["components"] == [
        {"kind": "logger", "name": "nowhere", "description": "drops everything"}
    ]
    assert rows["builtin.rewards"]["source"] == "builtin"
    assert rows["example"]["source"].startswith("entry point grpo-plug-example")
    table = run("plugins")
    assert "throwaway-logger" in table.output


def test_doctor_reports_each_line() -> None:
    res = run("doctor")
    for check in ("python", "torch", "rust core", "plugins", "disk", "sglang", "wandb"):
        assert check in res.output
    # On this CPU-only machine CUDA and SGLang are warnings, not failures.
    assert res.exit_code == 0, res.output
    assert "actor.attention=auto -> shared_prompt" in res.output


def test_doctor_says_what_actor_attention_runs_here() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU's answer")
    res = run("doctor", "actor.gradient_checkpointing=true")
    assert "actor.attention=auto -> shared_prompt" in res.output, res.output
    res = run("doctor", "actor.attention=packed")
    assert "actor.attention=packed -> packed_sdpa" in res.output, res.output
    res = run("doctor", "actor.attention=packed_flex")  # a run would fail: so does doctor
    assert res.exit_code == 1 and "no flex_attention backward on the CPU" in res.output
