"""The example plugin's own tests, written with grpo_plug.testing only."""

from pathlib import Path

from grpo_plug_example import plugin
from grpo_plug_example.plugin import CsvLogger, brevity

from grpo_plug import config
from grpo_plug.testing import (
    check_logger,
    check_reward_function,
    isolated_host,
    registered,
    run_training_step,
)


def test_registers() -> None:
    assert registered(plugin) == {"reward function": ["brevity"], "logger": ["csv"]}


def test_brevity_contract() -> None:
    scores = check_reward_function(brevity, completions=["x" * 100, "x" * 600, "x" * 2000])
    assert scores == [1.0, 0.5, 0.0]


def test_csv_logger_contract_and_its_config(tmp_path: Path) -> None:
    sections = isolated_host(plugin).config_sections()
    cfg = config.load(overrides=["csv.filename=m.csv", "csv.prefix=timeperf/"], sections=sections)
    check_logger(CsvLogger, log_dir=tmp_path, cfg=cfg)
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows == ["global_step,epoch,key,value", "1,0,timeperf/rollout,1.0"]


def test_one_training_step_with_both(tmp_path: Path) -> None:
    res = run_training_step(
        plugin,
        workdir=tmp_path,
        overrides=(
            "reward.functions=math_accuracy,brevity",
            "reward.weights=1,0.1",
            "loggers=csv",
        ),
    )
    # Tiny completions: brevity gives each 1.0, so the weighted reward is at least 0.1.
    assert res.metrics["grpo_actor/reward/avg"] >= 0.1
    assert "grpo_actor/reward/avg" in (res.log_dir / "metrics.csv").read_text()
