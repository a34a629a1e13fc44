"""`grpo-plug watch` and `grpo-plug report`: a run's log dir, live or afterwards."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from grpo_plug.metrics.events import EVENTS_FILE, METRICS_FILE
from grpo_plug.metrics.run import RunReader, find_runs

FileRootOpt = Annotated[
    str, typer.Option("--fileroot", help="cluster.fileroot of the runs (logs/ is under it).")
]


def resolve_run(run: str | None, fileroot: str) -> Path:
    """A log dir, ``experiment/trial``, or (None) the most recently written run."""
    if run is None:
        runs = find_runs(fileroot)
        if not runs:
            raise typer.BadParameter(f"no runs under {Path(fileroot) / 'logs'}", param_hint="RUN")
        return runs[-1]
    p = Path(run).expanduser()
    if (p / METRICS_FILE).is_file() or (p / EVENTS_FILE).is_file():
        return p
    matches = [d for d in find_runs(fileroot) if d.as_posix().endswith("/" + run.strip("/"))]
    if not matches:
        raise typer.BadParameter(
            f"{run!r} is neither a run's log dir nor an experiment/trial under "
            f"{Path(fileroot) / 'logs'}",
            param_hint="RUN",
        )
    return matches[-1]


def wants_tui(stream: Any, no_tui: bool = False) -> bool:
    """The live screen only for a real terminal; plain lines for pipes, CI, TERM=dumb."""
    if no_tui or os.environ.get("TERM", "") in ("", "dumb"):
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def follow_plain(reader: RunReader, console: Console, interval: float, until_end: bool) -> None:
    """One line per step (and per warning) as the run writes them."""
    from grpo_plug.metrics.loggers import step_line

    shown, warned = 0, 0
    while True:
        st = reader.poll()
        if reader.state.rows and shown > len(st.rows):
            shown = 0  # the file was rewritten (a resumed run)
        for row in st.rows[shown:]:
            metrics = {k: v for k, v in row.items() if isinstance(v, int | float)}
            console.print(
                step_line(metrics, int(row["global_step"]), int(row.get("epoch", 0))),
                markup=False,
                highlight=False,
            )
        shown = len(st.rows)
        for _, text in st.warnings[warned:]:
            console.print(f"warning: {text}", markup=False, highlight=False)
        warned = len(st.warnings)
        if st.end is not None and until_end:
            console.print(f"run {st.end.get('status', 'ended')}", markup=False)
            return
        time.sleep(interval)


def watch(
    run: Annotated[
        str | None, typer.Argument(help="Log dir or experiment/trial (default: the latest run).")
    ] = None,
    fileroot: FileRootOpt = "outputs/grpo",
    no_tui: Annotated[bool, typer.Option("--no-tui", help="Plain lines, not the screen.")] = False,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between reads.")] = 0.5,
) -> None:
    """Follow a run started elsewhere: the live dashboard, or plain lines in a pipe."""
    from grpo_plug.metrics.dashboard import Dashboard

    log_dir = resolve_run(run, fileroot)
    console = Console()
    reader = RunReader(log_dir)
    try:
        if not wants_tui(sys.stdout, no_tui):
            console.print(f"watching {log_dir}", markup=False)
            follow_plain(reader, console, interval, until_end=True)
            return
        with Dashboard(log_dir, console=console) as dash:
            while dash.state.end is None:
                time.sleep(interval)
            time.sleep(1.0)  # let the last frame show
    except KeyboardInterrupt:
        pass  # watching never owns the run: stopping it leaves the run alone


def report(
    runs: Annotated[list[str], typer.Argument(help="Log dirs or experiment/trial names.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNGs and report.md.")] = Path("report"),
    fileroot: FileRootOpt = "outputs/grpo",
) -> None:
    """Plots (reward, eval accuracy, loss, KL, entropy, length, clip, time) and a summary."""
    from grpo_plug.metrics.report import write_report

    dirs = [resolve_run(r, fileroot) for r in runs]
    pngs, md = write_report(dirs, out)
    console = Console()
    console.print(md.read_text(), markup=False, highlight=False)
    console.print(f"wrote {md} and {len(pngs)} plots in {out}", markup=False)
