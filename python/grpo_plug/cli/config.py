"""``grpo-plug presets`` and ``grpo-plug config show|keys|convert``: what a run would use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from grpo_plug import config as cfgmod
from grpo_plug.cli.io import err, out, user_errors
from grpo_plug.cli.options import ConfigOpt, DialectOpt, OverridesArg, PresetOpt
from grpo_plug.config.convert import to_yaml
from grpo_plug.errors import ConfigError

config_app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)


def preset_summary(name: str) -> dict[str, Any]:
    path = cfgmod.preset_path(name)
    purpose = ""
    for line in path.read_text().splitlines():
        if line.startswith("# Purpose:"):
            purpose = line.removeprefix("# Purpose:").strip()
            break
    cfg = cfgmod.load(preset=name)
    return {
        "name": name,
        "purpose": purpose,
        "model": cfg.actor.path,
        "task": cfg.train_dataset.task,
        "samples": cfg.train_dataset.max_samples or "all",
        "epochs": cfg.total_train_epochs,
        "n_samples": cfg.gconfig.n_samples,
        "max_new_tokens": cfg.gconfig.max_new_tokens,
        "backend": cfg.rollout.backend,
    }


@user_errors
def presets() -> None:
    """List the built-in presets and what each is for."""
    rows = [preset_summary(name) for name in cfgmod.preset_names()]
    table = Table(title="grpo-plug presets")
    cols = ("name", "model", "task", "samples", "epochs", "n_samples", "max_new_tokens", "backend")
    heads = ("name", "model", "task", "samples", "epochs", "n", "new tok", "backend")
    for head in heads:
        table.add_column(head, no_wrap=True)
    for row in rows:
        table.add_row(*(str(row[k]) for k in cols))
    out.print(table)
    for row in rows:
        out.print(f"[bold]{row['name']}[/bold]: {escape(row['purpose'])}")
    out.print(escape("Run one with: grpo-plug train --preset NAME [key=value ...]"))


@config_app.command("show")
@user_errors
def config_show(
    preset: PresetOpt = None,
    config: ConfigOpt = None,
    overrides: OverridesArg = None,
    dialect: DialectOpt = "auto",
) -> None:
    """Print the fully resolved configuration as YAML (an AReaL-style file translated)."""
    got = cfgmod.load_verbose(
        preset=preset, config_file=config, overrides=overrides or [], dialect=dialect
    )
    out.print(cfgmod.dump_yaml(got.config), end="", markup=False)
    if got.translation is not None:
        for note in got.translation.notes:
            err.print(f"note: {escape(note)}")


@config_app.command("convert")
@user_errors
def config_convert(
    file: Annotated[Path, typer.Argument(help="A config file written for AReaL.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of to stdout."),
    ] = None,
    overrides: OverridesArg = None,
) -> None:
    """Write an AReaL-style config in grpo-plug's keys, each renamed key commented."""
    got = cfgmod.load_verbose(config_file=file, overrides=overrides or [], dialect="areal")
    assert got.translation is not None
    text = to_yaml(got.translation, file)
    if output is None:
        out.print(text, end="", markup=False, highlight=False, emoji=False)
        return
    try:
        output.write_text(text)
    except OSError as e:
        raise ConfigError(f"--output: cannot write {output} ({e.strerror})") from None
    err.print(
        f"wrote {escape(str(output))}; run it with: grpo-plug train --config {escape(str(output))}"
    )


@config_app.command("keys")
def config_keys() -> None:
    """List every configuration key with its type, default and help."""
    table = Table(title="configuration keys")
    for col in ("key", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    for key, tp, help_text, default in cfgmod.field_help():
        table.add_row(key, tp, repr(default), help_text)
    out.print(table)
