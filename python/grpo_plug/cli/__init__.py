"""The ``grpo-plug`` command line: one module per command group, no training logic.

``train`` / ``eval`` (:mod:`.train`), ``presets`` / ``config`` (:mod:`.config`),
``checkpoints``, ``doctor``, ``watch`` / ``report`` (:mod:`.metrics`), ``plugins``
(:mod:`.plugins`, scaffolding in :mod:`.scaffold`); the dashboard and Ctrl-C of a run
at a terminal in :mod:`.interactive`; the consoles and one-line errors in :mod:`.io`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from grpo_plug import __version__
from grpo_plug.cli import checkpoints as checkpoint_commands
from grpo_plug.cli import config as config_commands
from grpo_plug.cli import doctor as doctor_commands
from grpo_plug.cli import metrics as metric_commands
from grpo_plug.cli import plugins as plugin_commands
from grpo_plug.cli import train as train_commands
from grpo_plug.cli.io import err, out
from grpo_plug.errors import PluginError
from grpo_plug.plugins import get_host

app = typer.Typer(
    name="grpo-plug",
    help="GRPO training for math reasoning, with plugins and a Rust data path.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(metric_commands.watch)
app.command()(metric_commands.report)
app.command()(config_commands.presets)
app.command()(train_commands.train)
app.command("eval")(train_commands.eval_cmd)
app.command()(checkpoint_commands.checkpoints)
app.command("doctor")(doctor_commands.doctor_command)
app.add_typer(config_commands.config_app, name="config")
app.add_typer(plugin_commands.plugins_app, name="plugins")


def _version(value: bool) -> None:
    if value:
        out.print(f"grpo-plug {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """GRPO training for math reasoning, with plugins and a Rust data path."""


_COMMANDS_ADDED = False


def main() -> None:
    """Entry point: add plugin commands, then run."""
    global _COMMANDS_ADDED
    if not _COMMANDS_ADDED:
        try:
            get_host().add_commands(app)
        except PluginError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}")
            raise SystemExit(2) from None
        _COMMANDS_ADDED = True
    from grpo_plug import launch

    if not launch.under_torchrun():
        app()
        return
    try:
        app()
        code = 0
    except SystemExit as e:
        code = launch.exit_code(e)
    launch.end_rank(code)
