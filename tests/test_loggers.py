"""The loggers, for real: WandB offline run directories and TensorBoard event files."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_plug import config as cfgmod
from grpo_plug.metrics import names as m
from grpo_plug.metrics.loggers import ConsoleLogger, TensorBoardLogger, WandbLogger, step_line
from grpo_plug.types import RunInfo

METRICS = {m.TASK_REWARD: 0.25, m.LOSS: 0.125, m.TIME_STEP: 14.0}


def run_info(tmp_path: Path) -> RunInfo:
    return RunInfo("exp", "trial0", str(tmp_path / "logs"), {"actor": {"lr": 1e-5}, "seed": 3})


@pytest.fixture()
def offline_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc credentials
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def test_wandb_online_without_key_runs_offline_and_resumes_the_same_run(
    offline_wandb: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = cfgmod.from_dict({"wandb": {"mode": "online"}})
    info = run_info(tmp_path)
    for step in (1, 2):
        lg = WandbLogger(cfg, info)
        lg.log(METRICS, step, 0)
        lg.close()
    assert "logging offline" in capsys.readouterr().err
    runs = sorted((Path(info.log_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    assert all(r.name.endswith("-exp_trial0_train") for r in runs)  # one run id throughout
    for r in runs:
        (data,) = r.glob("run-*.wandb")
        # The run file is protobuf records (no public reader): metric keys, their JSON
        # values and the config keys are stored as plain strings inside it.
        blob = data.read_bytes()
        for needle in (m.TASK_REWARD, m.LOSS, "0.125", "actor", "seed"):
            assert needle.encode() in blob, needle


def test_tensorboard_events_read_back(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = cfgmod.from_dict({})
    lg = TensorBoardLogger(cfg, run_info(tmp_path))
    lg.log(METRICS, 1, 0)
    lg.log({**METRICS, m.TASK_REWARD: 0.5}, 2, 0)
    lg.close()
    acc = EventAccumulator(str(lg.dir))
    acc.Reload()
    assert set(METRICS) <= set(acc.Tags()["scalars"])
    got = [(e.step, e.value) for e in acc.Scalars(m.TASK_REWARD)]
    assert got == [(1, 0.25), (2, 0.5)]


def test_console_lines_are_plain_text(tmp_path: Path) -> None:
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    lg = ConsoleLogger(cfgmod.from_dict({}), run_info(tmp_path), console=console)
    lg.message("a [bold]literal[/bold] bracket")
    lg.log(METRICS, 3, 0)
    out = console.export_text()
    assert "a [bold]literal[/bold] bracket" in out  # markup is not interpreted
    assert step_line(METRICS, 3, 0) in out
    assert step_line(METRICS, 3, 0) == "step 3 epoch 0  reward 0.25  loss 0.125  s/step 14"
