"""Options several commands share: where the config comes from, and the dashboard."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

PresetOpt = Annotated[
    str | None, typer.Option("--preset", "-p", help="Preset name (see `grpo-plug presets`).")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="A YAML config file instead of a preset.")
]
DialectOpt = Annotated[
    str,
    typer.Option(
        "--dialect",
        help="How --config is written: native (grpo-plug's keys), areal (AReaL's keys, "
        "interpolation resolved with OmegaConf, translated; see `grpo-plug config convert`) "
        "or auto (areal when the file interpolates or has a key only AReaL has, such as "
        "actor.optimizer.lr).",
    ),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Overrides with the seed's dotted names, e.g. actor.lr=1e-6.", show_default=False
    ),
]

NoTuiOpt = Annotated[
    bool,
    typer.Option(
        "--no-tui",
        help="Plain one-line-per-step logs instead of the live dashboard (also the default "
        "when stdout is not a terminal or TERM=dumb).",
    ),
]

DebugOpt = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="Show the full traceback of an error instead of its one-line message (also "
        "GRPO_PLUG_DEBUG=1).",
    ),
]


def wants_debug() -> bool:
    """``GRPO_PLUG_DEBUG`` set to anything but empty or 0."""
    return os.environ.get("GRPO_PLUG_DEBUG", "") not in ("", "0")
