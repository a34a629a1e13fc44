"""Where a config comes from: a preset or YAML file, then ``key=value`` overrides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from grpo_plug.config import areal
from grpo_plug.config.areal import Translation
from grpo_plug.config.schema import TrainConfig
from grpo_plug.config.validate import (
    all_keys,
    from_dict,
    plugin_sections,
    read_number,
    to_dict,
    unknown_keys_error,
)
from grpo_plug.errors import ConfigError, did_you_mean

# `presets` is a link to the repository's configs/ so wheels and checkouts see the same files.
CONFIGS_DIR = Path(__file__).resolve().parents[1] / "presets"


def parse_override(arg: str) -> tuple[str, Any]:
    """``actor.lr=1e-6`` -> ``("actor.lr", 1e-6)``; the value is read as YAML."""
    if "=" not in arg:
        raise ConfigError(f"{arg}: overrides look like key=value")
    key, _, raw = arg.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"{arg}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, read_number(value)


def apply_overrides(
    data: dict[str, Any], overrides: list[str], sections: Mapping[str, type] | None = None
) -> dict[str, Any]:
    valid = all_keys(sections=sections)
    groups = {k.rsplit(".", 1)[0] for k in valid if "." in k}
    parsed = [parse_override(arg) for arg in overrides]
    for key, _ in parsed:
        if key in groups:
            raise ConfigError(f"{key}: is a section; set one of its keys, e.g. {key}.<name>")
    unknown = [key for key, _ in parsed if key not in valid]
    if unknown:
        raise unknown_keys_error(unknown, valid)
    for key, value in parsed:
        set_dotted(data, key, value)
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data[a][b][c] = value`` for ``a.b.c``, making the mappings on the way."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def preset_names() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = CONFIGS_DIR / f"{name}.yaml"
    if not path.is_file():
        names = preset_names()
        extra = did_you_mean(name, names)
        raise ConfigError(f"--preset: unknown preset {name!r}{extra}; one of {', '.join(names)}")
    return path


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


DIALECTS = ("auto", "native", "areal")


@dataclass
class Loaded:
    """A validated config, the dialect its file was read in, and for an AReaL-style
    file how each key was translated."""

    config: TrainConfig
    dialect: str
    translation: Translation | None = None


def load(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    sections: Mapping[str, type] | None = None,
    dialect: str = "auto",
) -> TrainConfig:
    """Resolve a preset or config file plus overrides into a validated config;
    ``sections`` as in :func:`from_dict`, ``dialect`` as in :func:`load_verbose`."""
    return load_verbose(preset, config_file, overrides, sections, dialect).config


def load_verbose(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] = (),
    sections: Mapping[str, type] | None = None,
    dialect: str = "auto",
) -> Loaded:
    """:func:`load`, saying how the file was read. ``dialect``: ``native`` (grpo-plug's
    keys), ``areal`` (AReaL's, translated) or ``auto`` (AReaL's when the file
    interpolates or has a key only AReaL has)."""
    if dialect not in DIALECTS:
        raise ConfigError(f"--dialect: {dialect!r} is not one of {', '.join(DIALECTS)}")
    if preset and config_file:
        raise ConfigError("--preset and --config: give one, not both")
    if dialect == "areal" and config_file is None:
        raise ConfigError("--dialect areal: reads a --config FILE; give one")
    data: dict[str, Any] = {}
    sections = plugin_sections(sections)
    if config_file is not None:
        path = Path(config_file)
        data = read_yaml(path)
        if dialect == "areal" or (
            dialect == "auto" and areal.looks_like_areal(data, all_keys(sections=sections))
        ):
            notes: list[str] = []
            conf = areal.load_conf(path, [parse_override(arg) for arg in overrides])
            cfg, translation = areal.build(areal.resolve(conf, notes), sections)
            translation.notes[:0] = notes
            return Loaded(cfg, "areal", translation)
    elif preset is not None:
        data = read_yaml(preset_path(preset))
    data = apply_overrides(data, list(overrides), sections)
    return Loaded(from_dict(data, sections), "native")


def dump_yaml(cfg: TrainConfig) -> str:
    """The config as YAML, plugin sections included (``load`` reads it back)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
