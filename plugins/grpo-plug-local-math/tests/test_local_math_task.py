"""The local_math task's own tests, written with grpo_plug.testing only."""

import json
from pathlib import Path

import pytest
from grpo_plug_local_math import plugin
from grpo_plug_local_math.plugin import LocalMathError, LocalMathTask

from grpo_plug import config
from grpo_plug.api import ConfigError, DatasetConfig, TrainConfig
from grpo_plug.testing import check_task, isolated_host, registered, run_training_step

ROWS = [
    {"question": "Ava has 3 apples and gets 4 more. How many now?", "answer": 7},
    {"question": "What is 1/2 + 1/4?", "answer": "3/4", "source": "ignored"},
    {"question": "Ben had 10 coins and spent 3. Left?", "answer": "10 - 3 = 7\n#### 7"},
    {"question": "What is 2.5 * 2?", "answer": 5.0},
]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def dataset(path: Path, max_samples: int | None = None, split: str = "train") -> DatasetConfig:
    return DatasetConfig(task="local_math", path=str(path), max_samples=max_samples, split=split)


def load(*overrides: str) -> TrainConfig:
    """The run's config, with this plugin's section (as the trainer passes it)."""
    return config.load(overrides=list(overrides), sections=isolated_host(plugin).config_sections())


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return write(tmp_path / "train.jsonl", [json.dumps(r) for r in ROWS])


def test_registers() -> None:
    assert registered(plugin) == {"task": ["local_math"]}


def test_contract_and_golds(data: Path) -> None:
    task = check_task(LocalMathTask, dataset(data, max_samples=3), cfg=load())
    examples = task.load()
    assert [e.gold for e in examples] == ["7", "3/4", "10 - 3 = 7\n#### 7"]
    assert examples[1].question == "What is 1/2 + 1/4?"
    assert task.user_message(examples[0]).endswith("within \\boxed{}.")
    assert len(check_task(LocalMathTask, dataset(data), cfg=load()).load()) == 4


def test_field_names_come_from_its_config_section(tmp_path: Path) -> None:
    rows = [{"problem": "What is 6 + 1?", "solution": "6 + 1 = 7\n#### 7"}, {"problem": "x"}]
    path = write(tmp_path / "math.jsonl", [json.dumps(r) for r in rows])
    cfg = load("local_math.question_field=problem", "local_math.answer_field=solution")
    task = check_task(LocalMathTask, dataset(path, max_samples=1), cfg=cfg)
    assert [(e.question, e.gold) for e in task.load()] == [("What is 6 + 1?", "6 + 1 = 7\n#### 7")]
    with pytest.raises(LocalMathError, match=r"math\.jsonl:2: field 'solution' is missing"):
        LocalMathTask(dataset(path), 1, config=cfg).load()
    with pytest.raises(ConfigError, match=r"did you mean 'local_math\.answer_field'"):
        load("local_math.answer_fields=x")


def test_a_folder_means_the_split_file(data: Path) -> None:
    task = LocalMathTask(dataset(data.parent, split="train"), 1)
    assert [e.gold for e in task.load()][-1] == "5.0"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"question": "1 + 1?"', "not valid JSON"),
        ('["1 + 1?", 2]', "expected a JSON object, got list"),
        ('{"answer": 2}', "field 'question' is missing"),
        ('{"question": "  ", "answer": 2}', "field 'question' must be a non-empty string"),
        ('{"question": "1 + 1?"}', "field 'answer' is missing"),
        ('{"question": "1 + 1?", "answer": ""}', "field 'answer' is empty"),
        ('{"question": "1 + 1?", "answer": [2]}', "must be a string or a number, got list"),
        ('{"question": "1 + 1?", "answer": true}', "must be a string or a number, got bool"),
    ],
)
def test_a_bad_record_names_the_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "bad.jsonl", [json.dumps(ROWS[0]), "", line])
    with pytest.raises(LocalMathError) as err:
        LocalMathTask(dataset(path), 1).load()
    assert str(err.value).startswith(f"{path}:3: ")  # the blank line 2 still counts
    assert message in str(err.value)


def test_missing_or_empty_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(LocalMathError, match=r"set train_dataset\.path"):
        LocalMathTask(DatasetConfig(task="local_math"), 1).load()
    with pytest.raises(LocalMathError, match=r"nope\.jsonl does not exist"):
        LocalMathTask(dataset(tmp_path / "nope.jsonl"), 1).load()
    empty = write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(LocalMathError, match=r"empty\.jsonl: no examples"):
        LocalMathTask(dataset(empty), 1).load()


def test_one_training_step_on_a_local_file(tmp_path: Path) -> None:
    lines = [json.dumps({"question": f"What is {i} + 7 - {i}?", "answer": 7}) for i in range(16)]
    path = write(tmp_path / "seven.jsonl", lines)
    res = run_training_step(
        plugin,
        workdir=tmp_path,
        overrides=(
            "train_dataset.task=local_math",
            f"train_dataset.path={path}",
            "valid_dataset.task=local_math",
            f"valid_dataset.path={path}",
        ),
    )
    assert res.summary.steps == 1
    assert 0.0 <= res.metrics["grpo_actor/task_reward/avg"] <= 1.0
