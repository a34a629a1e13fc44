"""``grpo-plug plugins``: what is installed and what each plugin registers; ``plugins
new`` scaffolds a package."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from grpo_plug.cli.io import err, out, user_errors
from grpo_plug.plugins import REGISTRY_HOOKS, get_host

plugins_app = typer.Typer(help="List installed plugins; `plugins new` scaffolds one.")


@plugins_app.callback(invoke_without_command=True)
@user_errors
def plugins(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List installed plugins and the components each registers."""
    if ctx.invoked_subcommand is not None:
        return
    host = get_host()
    components: dict[str, list[dict[str, str]]] = {}
    for hook in REGISTRY_HOOKS:
        for entry in host.collect(hook, strict=False):  # list what loads, beside the broken
            components.setdefault(entry.plugin, []).append(
                {"kind": REGISTRY_HOOKS[hook], "name": entry.name, "description": entry.description}
            )
    broken = host.broken()
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "source": p.source,
            "hooks": list(p.hooks),
            "components": components.get(p.name, []),
        }
        for p in host.plugins()
        if p.name not in broken  # one whose hook raised is listed below, as broken
    ]
    rows += [
        {"name": n, "source": "broken", "hooks": [], "components": [], "error": why}
        for n, why in sorted(broken.items())
    ]
    if as_json:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    table = Table(title="grpo-plug plugins")
    table.add_column("plugin")
    table.add_column("source")
    table.add_column("registers")
    for row in rows:
        regs = ", ".join(f"{c['kind']} {c['name']}" for c in row["components"])
        if not regs:
            regs = ", ".join(row["hooks"])
        if "error" in row:
            regs = f"[red]{escape(row['error'])}[/red]"
        table.add_row(row["name"], row["source"], regs)
    out.print(table)
    if broken:
        err.print(f"[red]{len(broken)} broken[/red]: {escape(host.disable_hint())}")


@plugins_app.command("new")
@user_errors
def plugins_new(
    kind: Annotated[str, typer.Argument(help="reward, backend, weight-sync, logger or task.")],
    name: Annotated[str, typer.Argument(help="Component name, e.g. my_reward.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Folder to create the package in.")
    ] = Path("."),
) -> None:
    """Scaffold an installable plugin package whose own tests pass unchanged."""
    from grpo_plug.cli.scaffold import new_plugin

    root = new_plugin(kind, name, directory)
    out.print(f"wrote {escape(str(root))}")
    out.print(f"next: pip install -e {escape(str(root))} && python -m pytest {escape(str(root))}")
