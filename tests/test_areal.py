"""The AReaL dialect: the seed's five AReaL configs (tests/data/areal, Apache-2.0) load
unchanged, every key is mapped, accepted with no effect, or reported (all unknown keys
in one message), ``config convert`` writes a file that loads back to the same config,
and the README's key map is the code's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from grpo_plug import config as cfgmod
from grpo_plug.cli import app
from grpo_plug.config import ConfigError, keymap

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "tests" / "data" / "areal"
SEED_YAMLS = sorted(SEED.glob("gsm8k_grpo*.yaml"))
FAST = SEED / "gsm8k_grpo_fast.yaml"
ASYNC_KEYS = (
    "rollout.max_head_offpolicyness",
    "actor.use_decoupled_loss",
    "actor.behav_imp_weight_cap",
)
# Until issue 25's keys are in the schema, the seed's asynchronous settings stop a run;
# these two overrides make the files synchronous.
ASYNC_READY = set(ASYNC_KEYS) <= set(cfgmod.all_keys())
SYNC = [] if ASYNC_READY else ["async_training=false", "actor.use_decoupled_loss=false"]
runner = CliRunner()


def load(path: Path = FAST, *overrides: str, dialect: str = "auto") -> cfgmod.Loaded:
    return cfgmod.load_verbose(config_file=path, overrides=[*SYNC, *overrides], dialect=dialect)


def test_the_five_seed_configs_are_here() -> None:
    names = {p.name for p in SEED_YAMLS}
    assert names == {f"gsm8k_grpo{s}.yaml" for s in ("", "_fast", "_1hour", "_3hour", "_full")}
    assert (SEED / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.mark.parametrize(
    ("name", "samples", "epochs", "n", "tokens"),
    [
        ("gsm8k_grpo_fast.yaml", 200, 1, 2, 256),
        ("gsm8k_grpo_1hour.yaml", 500, 2, 4, 512),
        ("gsm8k_grpo_3hour.yaml", 1000, 3, 4, 512),
        ("gsm8k_grpo_full.yaml", None, 5, 4, 512),
        ("gsm8k_grpo.yaml", None, 5, 4, 512),
    ],
)
def test_config_show_resolves_each_seed_config(
    name: str, samples: int | None, epochs: int, n: int, tokens: int, monkeypatch: Any
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    res = runner.invoke(app, ["config", "show", "--config", str(SEED / name), *SYNC])
    assert res.exit_code == 0, res.output
    shown = yaml.safe_load(res.stdout)
    assert shown["train_dataset"]["max_samples"] == samples
    assert shown["total_train_epochs"] == epochs
    assert shown["gconfig"]["n_samples"] == n
    assert shown["gconfig"]["max_new_tokens"] == tokens
    assert shown["actor"]["path"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert shown["actor"]["lr"] == pytest.approx(1.7e-5)
    assert shown["rollout"]["backend"] == "sglang"
    assert "WANDB_API_KEY" in res.stderr  # the unset variable is noted, not fatal


def test_fast_config_maps_every_setting(monkeypatch: Any) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    got = load()
    cfg, t = got.config, got.translation
    assert got.dialect == "areal" and t is not None
    a = cfg.actor
    assert (a.lr, a.weight_decay, a.adam_beta1, a.adam_beta2, a.adam_eps) == pytest.approx(
        (1.7e-5, 0.017, 0.9, 0.999, 1e-8)
    )
    assert (a.lr_scheduler_type, a.max_grad_norm, a.warmup_steps_proportion) == (
        "constant",
        1.0,
        0.001,
    )
    assert (a.mb_max_tokens, a.eps_clip, a.kl_ctl, a.dtype) == (5120, 0.4, 0.0, "bfloat16")
    assert (a.reward_scaling, a.reward_bias) == (10.0, -0.5)
    assert a.adv_mode == "grpo"  # reward_norm group/group
    assert (a.adv_norm.mean_level, a.adv_norm.std_level) == ("batch", "batch")
    assert a.disable_dropout and a.recompute_logprob and not a.gradient_checkpointing
    assert (cfg.gconfig.min_new_tokens, cfg.gconfig.greedy) == (0, False)
    assert cfg.rollout.zero_reward_steps == 50  # circuit_breaker_threshold
    assert cfg.allocation_mode == "sglang.d1p1t1+d1p1t1" and cfg.rollout.backend == "sglang"
    assert (cfg.wandb.mode, cfg.wandb.project) == ("online", "gsm8k-grpo-local")
    assert "wandb" in cfg.loggers
    assert cfg.valid_dataset.split == "test" and cfg.train_dataset.path == "openai/gsm8k"
    assert (cfg.sglang.context_length, cfg.sglang.mem_fraction_static) == (4096, 0.8)
    assert (cfg.recover.mode, cfg.recover.freq_secs, cfg.saver.freq_epochs) == (
        "disabled",
        3600.0,
        1,
    )
    assert cfg.evaluator.freq_epochs is None
    assert cfg.cluster.fileroot == "./outputs/grpo"
    assert t.source["actor.lr"] == ["actor.optimizer.lr"]
    ignored = {key for key, _ in t.no_effect}
    assert {"launcher.trainer_cpus_per_gpu", "cluster.name_resolve.type"} <= ignored
    assert {"actor.experiment_name", "saver.fileroot", "train_dataset.pin_memory"} <= ignored
    assert any("WANDB_API_KEY" in note for note in t.notes)


def test_full_config_maps_its_own_keys() -> None:
    cfg = load(SEED / "gsm8k_grpo_full.yaml").config
    assert (cfg.rollout.request_timeout, cfg.rollout.request_retries) == (7200.0, 5)
    assert cfg.sglang.startup_timeout == 300.0  # rollout.setup_timeout
    assert (cfg.saver.freq_steps, cfg.saver.freq_secs, cfg.recover.mode) == (50, 1800.0, "auto")
    assert cfg.sglang.mem_fraction_static == 0.6


def test_asynchronous_keys_map_or_name_issue_25() -> None:
    path = str(FAST)
    if ASYNC_READY:
        cfg = cfgmod.load(config_file=path)
        assert getattr(cfg.rollout, "max_head_offpolicyness") == 2  # noqa: B009
        assert getattr(cfg.actor, "use_decoupled_loss") is True  # noqa: B009
        assert getattr(cfg.actor, "behav_imp_weight_cap") == 5.0  # noqa: B009
        sync = cfgmod.load(config_file=path, overrides=["async_training=false"])
        assert getattr(sync.rollout, "max_head_offpolicyness") == 0  # noqa: B009
        return
    with pytest.raises(ConfigError) as info:
        cfgmod.load(config_file=path)
    msg = str(info.value)
    assert "issue 25" in msg and "\n" not in msg
    for key in ("async_training", "rollout.max_head_offpolicyness", *ASYNC_KEYS[1:]):
        assert key in msg


def test_overrides_apply_before_interpolation() -> None:
    cfg = load(FAST, "actor.path=my/model", "gconfig.n_samples=4", "actor.optimizer.lr=3e-6").config
    # tokenizer_path, ref.path and sglang.model_path follow ${actor.path}: still equal
    assert cfg.actor.path == "my/model"
    assert cfg.gconfig.n_samples == 4  # actor.group_size is ${gconfig.n_samples}
    assert cfg.actor.lr == pytest.approx(3e-6)
    native = load(FAST, "actor.attention=padded").config  # grpo-plug's own keys pass through
    assert native.actor.attention == "padded"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("actor.group_size=3", "actor.group_size: 3 differs from gconfig.n_samples (2)"),
        ("actor.optimizer.type=sgd", "actor.optimizer.type: 'sgd' is not supported, only 'adam'"),
        ("actor.reward_norm.mean_level=batch", "group/group is actor.adv_mode grpo"),
        (
            "circuit_breaker_threshold=-1",
            "circuit_breaker_threshold -> rollout.zero_reward_steps: -1 is out of range",
        ),
        ("actor.optimizer.lr=0.1", None),
        ("evaluator.freq_secs=60", "evaluator.freq_secs: 60 is not supported, only None"),
    ],
)
def test_translated_values_are_checked_naming_the_areal_key(
    override: str, message: str | None
) -> None:
    if message is None:
        assert load(FAST, override).config.actor.lr == pytest.approx(0.1)
        return
    with pytest.raises(ConfigError) as info:
        load(FAST, override)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_circuit_breaker_off_turns_the_watchdog_off() -> None:
    assert load(FAST, "circuit_breaker_enabled=false").config.rollout.zero_reward_steps == 0


def test_adv_norm_null_and_reward_norm_group_mean_only() -> None:
    cfg = load(FAST, "actor.adv_norm=null", "actor.reward_norm.std_level=null").config
    assert (cfg.actor.adv_norm.mean_level, cfg.actor.adv_norm.std_level) == ("none", "none")
    assert cfg.actor.adv_mode == "dr_grpo"


def test_three_misspelled_keys_in_a_native_file_are_one_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeed: 3\ngconfig:\n  n_sample: 4\nactor:\n  lrr: 1.0e-6\n")
    with pytest.raises(ConfigError) as info:
        cfgmod.load(config_file=bad)
    msg = str(info.value)
    assert msg.startswith("3 unknown config keys: ")
    assert "seeed (did you mean 'seed'?)" in msg
    assert "gconfig.n_sample (did you mean 'gconfig.n_samples'?)" in msg
    assert "actor.lrr (did you mean 'actor.lr'?)" in msg
    assert "\n" not in msg


def test_misspelled_overrides_are_one_message() -> None:
    with pytest.raises(ConfigError) as info:
        cfgmod.load(preset="fast", overrides=["seeed=3", "actr.lr=1e-6", "gconfig.n_sample=2"])
    msg = str(info.value)
    assert msg.startswith("3 unknown config keys: ") and "did you mean 'actor.lr'" in msg


def test_misspelled_areal_keys_are_one_message_with_areal_suggestions(tmp_path: Path) -> None:
    text = FAST.read_text().replace("    lr: 1.70e-5", "    lrr: 1.70e-5")
    text = text.replace("    project: gsm8k", "    projct: gsm8k")
    text = text.replace("\ntotal_train_epochs: 1", "\ntotal_train_epoch: 1")
    bad = tmp_path / "areal.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as info:
        cfgmod.load(config_file=bad, overrides=SYNC)
    msg = str(info.value)
    assert msg.startswith("3 unknown config keys (AReaL dialect): ")
    assert "actor.optimizer.lrr (did you mean 'actor.optimizer.lr'?)" in msg
    assert "stats_logger.wandb.projct (did you mean 'stats_logger.wandb.project'?)" in msg
    assert "total_train_epoch (did you mean 'total_train_epochs'?)" in msg


def test_dialect_detection_and_the_option() -> None:
    preset = REPO / "configs" / "fast.yaml"
    assert cfgmod.load_verbose(config_file=preset).dialect == "native"
    # a grpo-plug file read as AReaL's: its keys pass through to the same config
    assert cfgmod.load(config_file=preset, dialect="areal") == cfgmod.load(preset="fast")
    with pytest.raises(ConfigError, match=r"unknown config keys: .*actor\.optimizer\.lr"):
        cfgmod.load(config_file=FAST, dialect="native")
    with pytest.raises(ConfigError, match="--dialect: 'hydra' is not one of auto, native, areal"):
        cfgmod.load(config_file=FAST, dialect="hydra")
    with pytest.raises(ConfigError, match="--dialect areal: reads a --config FILE"):
        cfgmod.load(preset="fast", dialect="areal")


@pytest.mark.parametrize("path", SEED_YAMLS, ids=lambda p: p.name)
def test_convert_writes_yaml_that_loads_back_to_the_same_config(
    path: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "secret-key-123")
    out = tmp_path / "converted.yaml"
    res = runner.invoke(app, ["config", "convert", str(path), "-o", str(out), *SYNC])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert cfgmod.load_verbose(config_file=out).dialect == "native"
    assert cfgmod.load(config_file=out) == load(path).config
    lines = text.splitlines()
    assert any(
        line.strip().startswith("lr: ") and "# from actor.optimizer.lr" in line for line in lines
    )
    assert any("max_samples: " in line and "# from max_train_samples" in line for line in lines)
    assert "# Accepted from the AReaL file, no effect here:" in text
    assert "#   launcher.trainer_mem_per_gpu: " in text
    assert "#   actor.group_size = gconfig.n_samples" in text
    assert "secret-key-123" not in text  # the key stays in the environment


def test_convert_prints_to_stdout() -> None:
    res = runner.invoke(app, ["config", "convert", str(FAST), *SYNC])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.stdout)["actor"]["mb_max_tokens"] == 5120


def test_readme_key_map_is_the_code() -> None:
    readme = (REPO / "README.md").read_text()
    assert keymap.markdown_tables() in readme


def test_every_rule_targets_a_real_key() -> None:
    valid = set(cfgmod.all_keys()) | set(ASYNC_KEYS)
    for rule in keymap.RULES:
        if rule.kind in ("set", "equal") or (rule.kind == "special" and rule.target):
            base = rule.target
            assert base in valid or base == "actor.adv_norm", rule
