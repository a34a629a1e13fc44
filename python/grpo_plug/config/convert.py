"""``grpo-plug config convert``: an AReaL-style file written out in grpo-plug's keys,
each key that changed name commented with the AReaL key it came from, and the keys
accepted with no effect listed at the end. The result loads back to the same config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from grpo_plug.config.areal import Translation
from grpo_plug.config.validate import all_keys


def scalar(value: Any) -> str:
    """``value`` as one line of YAML (flow style for lists and mappings)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _comments(t: Translation) -> dict[str, str]:
    out = {key: f"from {', '.join(src)}" for key, src in t.source.items() if src}
    for key, why in t.implied:
        out[key] = f"implied: {why}"
    return out


def _ranks() -> dict[str, int]:
    """Schema order of every key and every section (a section ranks as its first key)."""
    ranks: dict[str, int] = {}
    for i, key in enumerate(all_keys()):
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            ranks.setdefault(".".join(parts[:n]), i)
    return ranks


def _emit(data: Mapping[str, Any], comments: dict[str, str], prefix: str, out: list[str]) -> None:
    pad = "  " * prefix.count(".")
    ranks = _ranks()
    for key, value in sorted(data.items(), key=lambda kv: ranks.get(f"{prefix}{kv[0]}", 1 << 30)):
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.append(f"{pad}{key}:")
            _emit(value, comments, f"{full}.", out)
            continue
        line = f"{pad}{key}: {scalar(value)}"
        note = comments.get(full)
        out.append(f"{line}  # {note}" if note else line)


def to_yaml(t: Translation, source: Path) -> str:
    """The translated config as commented YAML in grpo-plug's keys."""
    out = [
        f"# Converted from {source.name} (AReaL dialect) by `grpo-plug config convert`.",
        "# Run it with: grpo-plug train --config THIS_FILE",
    ]
    _emit(t.data, _comments(t), "", out)
    if t.checks:
        out.append("# Checked equal to the grpo-plug key that holds the setting:")
        out += [f"#   {key} = {target}" for key, target, _ in t.checks]
    if t.no_effect:
        out.append("# Accepted from the AReaL file, no effect here:")
        out += [f"#   {key}: {why}" for key, why in t.no_effect]
    out += [f"# Note: {note}" for note in t.notes]
    return "\n".join(out) + "\n"
