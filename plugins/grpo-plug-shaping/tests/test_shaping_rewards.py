"""The shaping rewards' own tests, written with grpo_plug.testing only."""

from pathlib import Path

import pytest
from grpo_plug_shaping import plugin
from grpo_plug_shaping.plugin import LengthPenaltyConfig, boxed_last, length_penalty

from grpo_plug import config
from grpo_plug.api import ConfigError, TrainConfig
from grpo_plug.testing import check_reward_function, isolated_host, registered, run_training_step


def test_registers() -> None:
    assert registered(plugin) == {"reward function": ["boxed_last", "length_penalty"]}


def test_boxed_last_contract_and_scores() -> None:
    completions = [
        "2 + 3 = 5, so the answer is \\boxed{5}.",  # final format
        "$\\boxed{\\frac{1}{2}}$",  # nested braces, closing math delimiter
        "\\boxed{5} because 2 + 3 = 5",  # an answer, then more text
        "\\boxed{4} no wait \\boxed{5}",  # two answers
        "\\boxed{ }",  # empty box
        "the answer is 5",
        "",
    ]
    scores = check_reward_function(boxed_last, completions=completions, golds=["5"] * 7)
    assert scores == [1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0]


def load(*overrides: str) -> TrainConfig:
    return config.load(overrides=list(overrides), sections=isolated_host(plugin).config_sections())


def test_length_penalty_contract_and_scores() -> None:
    completions = ["x" * 10, "x" * 400, "x" * 600, "x" * 800, "x" * 5000]
    scores = check_reward_function(
        length_penalty, completions=completions, golds=["1"] * 5, cfg=load()
    )
    assert scores == [0.0, 0.0, -0.5, -1.0, -1.0]


def test_length_penalty_reads_its_config_section() -> None:
    cfg = load(
        "length_penalty.max_chars=10", "length_penalty.ramp_chars=10", "length_penalty.floor=-0.5"
    )
    assert cfg.section(LengthPenaltyConfig) == LengthPenaltyConfig(10, 10, -0.5)
    scores = check_reward_function(
        length_penalty, completions=["x" * 10, "x" * 15, "x" * 99], cfg=cfg
    )
    assert scores == [0.0, -0.25, -0.5]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("length_penalty.max_chars=-1", r"length_penalty\.max_chars"),
        ("length_penalty.ramp_chars=0", r"length_penalty\.ramp_chars"),
        ("length_penalty.floor=0.5", r"length_penalty\.floor"),
        ("length_penalty.max_char=10", r"did you mean 'length_penalty\.max_chars'"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(override)


def test_one_training_step_weighted_with_math_accuracy(tmp_path: Path) -> None:
    res = run_training_step(
        plugin,
        workdir=tmp_path,
        overrides=(
            "reward.functions=math_accuracy,boxed_last,length_penalty",
            "reward.weights=1,0.2,0.2",
            "length_penalty.max_chars=1000",
        ),
    )
    # The tiny model writes 3 tokens: never a box, never past the budget.
    assert res.summary.steps == 1
    assert res.metrics["grpo_actor/reward/length_penalty/avg"] == 0.0
    accuracy = res.metrics["grpo_actor/task_reward/avg"]
    assert res.metrics["grpo_actor/reward/avg"] == pytest.approx(accuracy)
