"""``grpo-plug checkpoints``: the checkpoints and recover points of past runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from grpo_plug.cli.io import err, out


def checkpoints(
    experiment: Annotated[
        str | None, typer.Argument(help="Experiment name (all if omitted).")
    ] = None,
    trial: Annotated[str | None, typer.Argument(help="Trial name (all if omitted).")] = None,
    fileroot: Annotated[str, typer.Option(help="cluster.fileroot of the runs.")] = "outputs/grpo",
    user: Annotated[str | None, typer.Option(help="User folder (default: you).")] = None,
) -> None:
    """List checkpoints and recover points with step, time and validity."""
    import getpass
    import time as _time

    from grpo_plug.recovery.store import list_hf_checkpoints, list_recover_points

    base = Path(fileroot) / "checkpoints" / (user or getpass.getuser())
    trials = sorted(p for p in base.glob(f"{experiment or '*'}/{trial or '*'}") if p.is_dir())
    if not trials:
        err.print(f"no runs under {base}" + (f"/{experiment}" if experiment else ""))
        raise typer.Exit(1)
    table = Table(title=f"checkpoints under {base}")
    for col in (
        "experiment",
        "trial",
        "kind",
        "epoch",
        "epoch step",
        "global step",
        "saved",
        "valid",
        "folder",
    ):
        table.add_column(col, overflow="fold")
    for run_dir in trials:
        for c in [*list_hf_checkpoints(run_dir), *list_recover_points(run_dir)]:
            saved = _time.strftime("%m-%d %H:%M", _time.localtime(c.time)) if c.time else "-"
            valid = "[green]yes[/green]" if c.valid else f"[red]no[/red] ({escape(c.problem)})"
            table.add_row(
                run_dir.parent.name,
                run_dir.name,
                c.kind,
                str(c.epoch),
                str(c.epoch_step),
                str(c.global_step),
                saved,
                valid,
                str(c.path.relative_to(run_dir)),
            )
    out.print(table)
