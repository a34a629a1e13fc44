"""The csv_table logger's own tests, written with grpo_plug.testing only."""

import csv
from pathlib import Path

import pytest
from grpo_plug_csv_table import plugin
from grpo_plug_csv_table.plugin import CsvTableLogger

from grpo_plug import config
from grpo_plug.api import ConfigError, RunInfo, TrainConfig
from grpo_plug.testing import check_logger, isolated_host, registered, run_training_step


def load(*overrides: str) -> TrainConfig:
    return config.load(overrides=list(overrides), sections=isolated_host(plugin).config_sections())


def table(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def logger(folder: Path, *overrides: str) -> CsvTableLogger:
    return CsvTableLogger(load(*overrides), RunInfo("e", "t", str(folder)))


def test_registers() -> None:
    assert registered(plugin) == {"logger": ["csv_table"]}


def test_contract(tmp_path: Path) -> None:
    # check_logger logs steps 1 and 2, then resume(1): step 2 is dropped.
    check_logger(CsvTableLogger, log_dir=tmp_path, cfg=load())
    assert table(tmp_path / "metrics_table.csv") == [
        ["global_step", "epoch", "grpo_actor/loss", "timeperf/rollout"],
        ["1", "0", "0.5", "1.0"],
    ]


def test_config_section_is_validated_and_read(tmp_path: Path) -> None:
    check_logger(CsvTableLogger, log_dir=tmp_path, cfg=load("csv_table.filename=m.csv"))
    assert (tmp_path / "m.csv").exists()
    with pytest.raises(ConfigError, match=r"csv_table\.prefx: unknown config key"):
        load("csv_table.prefx=grpo_actor/")


def test_columns_grow_without_losing_rows_and_every_step_is_on_disk(tmp_path: Path) -> None:
    log = logger(tmp_path, "csv_table.prefix=grpo_actor/")
    path = tmp_path / "metrics_table.csv"
    log.log({"grpo_actor/loss": 0.5, "timeperf/rollout": 2.0}, 1, 0)
    log.log({"grpo_actor/loss": 0.25, "grpo_actor/kl": 0.125}, 2, 0)  # a new column
    log.log({"grpo_actor/loss": 0.75}, 3, 1)  # appended
    # Read while the logger is still open: flushed each step.
    assert table(path) == [
        ["global_step", "epoch", "grpo_actor/loss", "grpo_actor/kl"],
        ["1", "0", "0.5", ""],
        ["2", "0", "0.25", "0.125"],
        ["3", "1", "0.75", ""],
    ]
    log.close()


def test_an_evaluation_at_the_same_step_joins_its_row(tmp_path: Path) -> None:
    log = logger(tmp_path)
    log.log({"grpo_actor/loss": 0.5}, 4, 0)
    log.log({"eval/task_reward/avg": 0.25}, 4, 0)
    log.close()
    assert table(tmp_path / "metrics_table.csv") == [
        ["global_step", "epoch", "grpo_actor/loss", "eval/task_reward/avg"],
        ["4", "0", "0.5", "0.25"],
    ]


def test_a_resumed_run_appends_and_drops_rows_after_the_recover_point(tmp_path: Path) -> None:
    first = logger(tmp_path)
    for step in (1, 2, 3):
        first.log({"grpo_actor/loss": step / 4}, step, 0)
    first.log({"grpo_actor/late": 1.0}, 4, 0)
    first.close()  # killed after step 4; the recover point is at step 2
    path = tmp_path / "metrics_table.csv"
    with path.open("a") as fh:
        fh.write("5,0,0.")  # a line torn by the crash
    second = logger(tmp_path)
    second.resume(2)
    second.log({"grpo_actor/loss": 0.875}, 3, 0)
    second.close()
    assert table(path) == [
        ["global_step", "epoch", "grpo_actor/loss"],
        ["1", "0", "0.25"],
        ["2", "0", "0.5"],
        ["3", "0", "0.875"],
    ]


def test_a_file_that_is_not_its_own_is_refused(tmp_path: Path) -> None:
    (tmp_path / "metrics_table.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"metrics_table\.csv: not a csv_table file"):
        logger(tmp_path)


def test_one_training_step(tmp_path: Path) -> None:
    res = run_training_step(plugin, workdir=tmp_path, overrides=("loggers=csv_table",))
    rows = table(res.log_dir / "metrics_table.csv")
    header, body = rows[0], rows[1:]
    assert [int(r[0]) for r in body] == sorted({int(r["step"]) for r in res.rows})
    for name in ("grpo_actor/lr", "grpo_actor/reward/avg"):  # logged every step
        assert float(body[-1][header.index(name)]) == res.metrics[name]
