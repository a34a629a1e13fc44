"""`grpo-plug report`: PNG plots and the Markdown summary of runs."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
from typer.testing import CliRunner

from grpo_plug.cli import app
from grpo_plug.metrics import names as m
from grpo_plug.metrics.report import write_report

from .runlog import write_run


def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "logs" / "u" / "exp" / "a"
    b = tmp_path / "logs" / "u" / "exp" / "b"
    write_run(a, steps=10).close()
    async_run = {m.ASYNC_OVERLAP: 0.4, m.VERSION_LAG_MEAN: 1.5}  # b ran ahead (k >= 1)
    async_run |= {m.BEHAV_IMP_WEIGHT: 1.01, m.BEHAV_MASKED: 0.02}  # with the decoupled loss
    write_run(b, steps=6, **{m.TASK_REWARD: 0.5, **async_run}).close()
    ckpt = tmp_path / "checkpoints" / "u" / "exp" / "a" / "default"
    (ckpt / "epoch0epochstep0globalstep0").mkdir(parents=True)
    return a, b


def test_plots_every_series_of_every_run(tmp_path: Path) -> None:
    a, b = two_runs(tmp_path)
    pngs, md = write_report([a, b], tmp_path / "out")
    assert {p.stem for p in pngs} == {s for s, _, _ in m.PLOTS}
    by_stem = {p.stem: labels for p, labels in pngs.items()}
    assert by_stem["reward"] == [
        f"exp/a {m.TASK_REWARD}",
        f"exp/a {m.EVAL_ACCURACY}",
        f"exp/b {m.TASK_REWARD}",
        f"exp/b {m.EVAL_ACCURACY}",
    ]
    assert by_stem["loss"] == ["exp/a", "exp/b"]
    assert len(by_stem["time"]) == 2 * len(m.STAGE_TIMES)
    assert by_stem["async"] == [f"exp/b {m.ASYNC_OVERLAP}", f"exp/b {m.VERSION_LAG_MEAN}"]
    assert by_stem["decoupled"] == [f"exp/b {m.BEHAV_IMP_WEIGHT}", f"exp/b {m.BEHAV_MASKED}"]
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = matplotlib.image.imread(p)
        assert img.shape[:2] == (400, 700)  # figsize 7x4 at 100 dpi
        assert img.std() > 0.01  # not a blank canvas
    text = md.read_text()
    assert "| exp/a | 10 | 19.5% |" in text
    # Only the before-eval exists, so it is the best one, and its checkpoint is named.
    assert "19.5% (0)" in text and "epoch0epochstep0globalstep0" in text
    assert "![reward](reward.png)" in text


def test_a_synchronous_run_draws_no_async_or_decoupled_plot(tmp_path: Path) -> None:
    a, _ = two_runs(tmp_path)
    pngs, md = write_report([a], tmp_path / "out")
    stems = {p.stem for p in pngs}
    assert "loss" in stems and not stems & {"async", "decoupled"}
    assert "decoupled.png" not in md.read_text()


def test_report_command_and_bad_run_name(tmp_path: Path) -> None:
    two_runs(tmp_path)
    runner = CliRunner()
    res = runner.invoke(
        app, ["report", "exp/a", "--fileroot", str(tmp_path), "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "reward.png").is_file() and "wrote" in res.output
    res = runner.invoke(app, ["report", "nope/x", "--fileroot", str(tmp_path)])
    assert res.exit_code != 0 and "'nope/x' is neither a run's log dir" in res.output
