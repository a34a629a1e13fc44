"""The dashboard and the run reader, on a log dir written as the trainer writes it."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from rich.console import Console

from grpo_plug.metrics import names as m
from grpo_plug.metrics.dashboard import render, sparkline
from grpo_plug.metrics.events import EventWriter, JsonlTail
from grpo_plug.metrics.run import RunReader, find_runs, read_run

from .runlog import step_row, write_run


def screen(log_dir: Path, width: int, height: int) -> list[str]:
    console = Console(record=True, width=width, height=height, color_system=None)
    console.print(render(read_run(log_dir), width, height))
    return console.export_text().splitlines()


def test_fits_80x24_with_everything_a_person_needs(tmp_path: Path) -> None:
    write_run(tmp_path).close()
    lines = screen(tmp_path, 80, 24)
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    for needle in (
        "grpo-cpu/trial0",
        "preset cpu",
        "backend hf",
        "attention shared_prompt",  # what actor.attention resolved to
        "step 12/55",
        "22%",  # 12 of 55 steps
        "ETA 10:02",  # 43 steps left at the median 14 s
        "rollout",
        "40/64 samples",
        "reward     0.340",  # the latest training reward
        "eval acc   0.195",
        "imp weight 1.0001",
        "rollout 9.0s (64%)",
        "rss 3.30 GiB",
        "recover step 10",
        "What is 34 * 29?",
        "extracted 986",
    ):
        assert needle in text, needle
    # The newest steps of the history table are the ones shown.
    assert lines[-2].split()[1] == "12"


def test_bigger_terminal_shows_more_history(tmp_path: Path) -> None:
    write_run(tmp_path).close()
    small = screen(tmp_path, 80, 24)
    big = screen(tmp_path, 160, 50)
    assert len(big) == 50 and all(len(line) <= 160 for line in big)
    rows = [line for line in big if line.strip("│ ").split(" ")[0].isdigit()]
    assert len(rows) == 12  # every step fits
    assert "threads learner 1x2, gen 2 (budget 2, passive wait)" in big[1]  # the header
    assert sum(1 for line in small if line.strip("│ ").split(" ")[0].isdigit()) < 12


def test_the_zero_reward_alert_follows_the_runs_own_setting(tmp_path: Path) -> None:
    """The dashboard reads rollout.zero_reward_steps from the run header (the rule the
    watchdog applies), not a number of its own."""
    write_run(tmp_path / "a", steps=3, zero_reward_steps=3, **{m.TASK_REWARD: 0.0}).close()
    assert "task reward exactly 0 for the last 3 steps" in read_run(tmp_path / "a").alerts()
    write_run(tmp_path / "b", steps=3, zero_reward_steps=4, **{m.TASK_REWARD: 0.0}).close()
    assert not any("task reward" in a for a in read_run(tmp_path / "b").alerts())
    write_run(tmp_path / "c", steps=6, zero_reward_steps=0, **{m.TASK_REWARD: 0.0}).close()
    assert not any("task reward" in a for a in read_run(tmp_path / "c").alerts())


def test_alerts_surface_at_once(tmp_path: Path) -> None:
    write_run(
        tmp_path,
        steps=6,
        **{
            m.TASK_REWARD: 0.0,
            m.LOSS: math.nan,
            m.NO_EOS: 0.9,
            m.ENTROPY: 0.01,
            m.IMPORTANCE_WEIGHT: 1.3,
        },
    ).close()
    alerts = read_run(tmp_path).alerts()
    assert alerts == [
        "task reward exactly 0 for the last 6 steps",
        "grpo_actor/loss is nan at step 6",
        "90% of responses hit the length cap",
        "entropy collapsed to 0.010",
        "importance weight 1.300 drifts from 1 (off-policy samples)",
    ]
    text = "\n".join(screen(tmp_path, 80, 24))
    assert "! task reward exactly 0" in text


def test_healthy_run_has_no_alerts(tmp_path: Path) -> None:
    write_run(tmp_path).close()
    assert read_run(tmp_path).alerts() == []


def test_reader_follows_a_growing_run_and_a_rewritten_file(tmp_path: Path) -> None:
    w = write_run(tmp_path, steps=3)
    reader = RunReader(tmp_path)
    assert reader.poll().global_step == 3
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(step_row(4, time.time())) + "\n")
        f.write('{"global_step": 5, "torn')  # a line still being written
    w.emit("stage", stage="train", step=4)
    st = reader.poll()
    assert st.global_step == 4 and st.stage == "train"
    # A resumed run rewrites metrics.jsonl with fewer rows: read again from the start.
    rows = (tmp_path / "metrics.jsonl").read_text().splitlines()[:3]
    tmp = tmp_path / "m.tmp"
    tmp.write_text("\n".join(rows) + "\n")
    tmp.replace(tmp_path / "metrics.jsonl")
    assert reader.poll().global_step == 2
    w.emit("end", status="done", summary={})
    assert reader.poll().end is not None and reader.state.stage is None
    w.close()


def test_tail_skips_torn_lines(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\nnot json\n{"b": 2}\n{"c"')
    tail = JsonlTail(p)
    assert tail.read() == [{"a": 1}, {"b": 2}]
    with p.open("a") as f:
        f.write(": 3}\n")
    assert tail.read() == [{"c": 3}]


def test_sparkline_scales_and_truncates() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 8) == "▁▂▃▄▅▆▇█"
    assert sparkline([1.0] * 5, 3) == "▁▁▁"
    assert sparkline(range(100), 10) == sparkline(range(90, 100), 10)
    assert sparkline([], 5) == ""


def test_find_runs_orders_by_last_write(tmp_path: Path) -> None:
    a = tmp_path / "logs" / "u" / "exp" / "a"
    b = tmp_path / "logs" / "u" / "exp" / "b"
    write_run(b).close()
    time.sleep(0.01)
    write_run(a).close()
    assert find_runs(tmp_path) == [b, a]


def test_server_health_names_the_servers_that_are_not_up(tmp_path: Path) -> None:
    w = write_run(tmp_path)
    w.emit(
        "health",
        rss_gb=3.1,
        servers={"127.0.0.1:3001": "up", "127.0.0.1:3002": "restarting"},
        server_restarts=1,
    )
    w.close()
    text = "\n".join(screen(tmp_path, 120, 30))
    assert "servers 1/2 up (127.0.0.1:3002 restarting)" in text
    assert "restarts 1" in text


def test_the_stage_line_drops_an_earlier_stages_text(tmp_path: Path) -> None:
    w = write_run(tmp_path)
    w.emit("message", text="evaluating before on 200 arith problems...")
    w.emit("stage", stage="train", step=13)
    w.close()
    lines = screen(tmp_path, 100, 30)
    assert any("train " in s for s in lines)
    assert not any("evaluating before" in s for s in lines), "\n".join(lines)
    w = EventWriter(tmp_path)
    w.emit("stage", stage="save", step=13)
    w.emit("message", text="recover point written at step 13")
    w.close()
    assert any("save" in s and "recover point written" in s for s in screen(tmp_path, 100, 30))


def test_the_timing_line_shows_async_and_decoupled_figures_only_when_logged(
    tmp_path: Path,
) -> None:
    write_run(tmp_path / "sync").close()
    text = "\n".join(screen(tmp_path / "sync", 160, 40))
    assert "gen 130 tok/s" in text
    assert "overlap" not in text and "behav" not in text
    ahead = {m.ASYNC_OVERLAP: 0.4, m.VERSION_LAG_MAX: 2.0}
    decoupled = {m.BEHAV_IMP_WEIGHT: 1.0123, m.BEHAV_MASKED: 0.031}
    write_run(tmp_path / "async", **ahead, **decoupled).close()
    text = "\n".join(screen(tmp_path / "async", 160, 40))
    assert "gen 130 tok/s  overlap 40% lag<=2  behav imp w 1.012 masked 3.1%" in text
    write_run(tmp_path / "decoupled", **decoupled).close()  # synchronous, decoupled loss
    text = "\n".join(screen(tmp_path / "decoupled", 160, 40))
    assert "overlap" not in text and "behav imp w 1.012 masked 3.1%" in text


def test_async_and_decoupled_figures_fit_80_columns_on_a_line_of_their_own(
    tmp_path: Path,
) -> None:
    figures = {m.ASYNC_OVERLAP: 0.4, m.VERSION_LAG_MAX: 2.0}
    figures.update({m.BEHAV_IMP_WEIGHT: 1.0123, m.BEHAV_MASKED: 0.031})
    write_run(tmp_path, **figures).close()
    lines = screen(tmp_path, 80, 24)
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    stage = next(i for i, line in enumerate(lines) if "step 14.0s:" in line)
    assert "overlap" not in lines[stage]  # it would not fit beside the stages
    figures_line = next(i for i, line in enumerate(lines) if "overlap" in line)
    assert "overlap 40% lag<=2  behav imp w 1.012 masked 3.1%" in lines[figures_line]
    # Every stage's figure is whole on some line: none is cut at the border.
    block = "\n".join(lines[stage:figures_line])
    assert "…" not in block
    for figure in ("rollout 9.0s (64%)", "train 4.0s (29%)", "sync ", "gen 130 tok/s"):
        assert figure in block, figure
    assert lines[-2].split()[1] == "12"  # the history still ends at the newest step
