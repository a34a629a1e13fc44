from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from grpo_plug import config as cfgmod
from grpo_plug.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
YAMLS = sorted((REPO / "configs").rglob("*.yaml"))


def test_configs_exist() -> None:
    names = {p.stem for p in YAMLS}
    assert {"cpu", "fast", "1hour", "3hour", "full"} <= names


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_config_validates_and_opens_with_its_command(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    assert first == f"# grpo-plug train --preset {path.stem}"
    cfg = cfgmod.load(config_file=path)
    assert cfg.experiment_name


@pytest.mark.parametrize(
    ("preset", "samples", "epochs", "n", "tokens"),
    [
        ("fast", 200, 1, 2, 256),
        ("1hour", 500, 2, 4, 512),
        ("3hour", 1000, 3, 4, 512),
        ("full", 7473, 5, 4, 512),
    ],
)
def test_gpu_presets_have_the_seed_numbers(
    preset: str, samples: int, epochs: int, n: int, tokens: int
) -> None:
    cfg = cfgmod.load(preset=preset)
    assert cfg.train_dataset.max_samples == samples
    assert cfg.total_train_epochs == epochs
    assert cfg.gconfig.n_samples == n
    assert cfg.gconfig.max_new_tokens == tokens
    assert cfg.actor.path == "Qwen/Qwen2.5-0.5B-Instruct"
    assert cfg.train_dataset.task == "gsm8k"


def test_fast_has_eval_off_and_full_has_recovery() -> None:
    fast = cfgmod.load(preset="fast")
    assert fast.evaluator.freq_epochs is None and fast.evaluator.freq_steps is None
    full = cfgmod.load(preset="full")
    assert full.saver.freq_steps == 50
    assert full.saver.freq_secs == 1800
    assert full.recover.mode == "auto"


def test_overrides_use_dotted_names() -> None:
    cfg = cfgmod.load(
        preset="fast",
        overrides=[
            "experiment_name=x",
            "trial_name=7",
            "actor.lr=1e-6",
            "gconfig.n_samples=8",
            "rollout.max_concurrent_rollouts=16",
            "saver.freq_steps=10",
            "recover.mode=auto",
            "actor.eps_clip_higher=null",
            "loggers=console,jsonl",
        ],
    )
    assert cfg.experiment_name == "x"
    assert cfg.trial_name == "7"
    assert cfg.actor.lr == pytest.approx(1e-6)
    assert cfg.gconfig.n_samples == 8
    assert cfg.rollout.max_concurrent_rollouts == 16
    assert cfg.saver.freq_steps == 10
    assert cfg.recover.mode == "auto"
    assert cfg.loggers == ["console", "jsonl"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("actor.lr=abc", "actor.lr: expected a number, got 'abc'"),
        ("actr.lr=1e-6", "actr.lr: unknown config key (did you mean 'actor.lr'?)"),
        ("gconfig.n_samples=0", "gconfig.n_samples: 0 is out of range (must be >= 1)"),
        ("gconfig.n_samples=2.5", "gconfig.n_samples: expected an integer, got 2.5"),
        ("recover.mode=sometimes", "recover.mode: 'sometimes' is not one of"),
        ("actor.gradient_checkpointing=maybe", "actor.gradient_checkpointing: expected true/false"),
        ("actor.lr=.inf", "actor.lr: expected a finite number"),
        ("actor=1", "actor: is a section"),
        ("nokeyvalue", "nokeyvalue: overrides look like key=value"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cfgmod.load(preset="full", overrides=[override])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_key_in_file_and_cross_checks(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"gconfig": {"n_sample": 4}}))
    with pytest.raises(ConfigError, match=r"gconfig\.n_sample: unknown config key"):
        cfgmod.load(config_file=bad)
    with pytest.raises(ConfigError, match=r"reward\.weights: has 1 entries"):
        cfgmod.load(overrides=["reward.functions=math_accuracy,format"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        cfgmod.load(config_file=broken)


def test_unknown_preset_and_both_sources() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'fats'.*did you mean 'fast'"):
        cfgmod.load(preset="fats")
    with pytest.raises(ConfigError, match="give one"):
        cfgmod.load(preset="fast", config_file="x.yaml")


def test_every_field_has_help_and_dump_roundtrips() -> None:
    rows = cfgmod.field_help()
    assert len(rows) == len(cfgmod.all_keys())
    assert all(help_text for _, _, help_text, _ in rows)
    cfg = cfgmod.load(preset="full")
    again = cfgmod.from_dict(yaml.safe_load(cfgmod.dump_yaml(cfg)))
    assert again == cfg
