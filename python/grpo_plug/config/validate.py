"""Plain data -> a validated :class:`TrainConfig`: types coerced, ranges checked,
cross-key rules applied; every failure is a :class:`ConfigError` naming its key."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from grpo_plug.config.schema import TrainConfig
from grpo_plug.errors import ConfigError, did_you_mean


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Return ``value`` as type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, arg, value)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            extra = did_you_mean(str(value), allowed)
            raise ConfigError(
                f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}{extra}"
            )
        return value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if isinstance(value, str):  # `reward.weights=1,0.5`: the comma form the docs show
            value = [_list_item(v.strip()) for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return [_coerce(f"{key}[{i}]", inner, v) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            # YAML turns `trial_name=1` into an int; names are strings.
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp!r}")


def _check_range(key: str, meta: typing.Mapping[str, Any], value: Any) -> None:
    if value is None or isinstance(value, (str, bool, list)):
        return
    checks: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
        ("ge", operator.ge, ">="),
        ("gt", operator.gt, ">"),
        ("le", operator.le, "<="),
        ("lt", operator.lt, "<"),
    )
    for bound, ok, word in checks:
        if bound in meta and not ok(value, meta[bound]):
            raise ConfigError(f"{key}: {value!r} is out of range (must be {word} {meta[bound]})")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields a user can set (not the internal ones)."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def builtin_sections(cls: type = TrainConfig) -> dict[str, Any]:
    """Top-level names of the built-in schema (no plugin section may take one) -> type."""
    hints = _hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_SECTION_PROVIDER: list[Callable[[], Mapping[str, type]]] = []


def use_plugin_sections(provider: Callable[[], Mapping[str, type]]) -> None:
    """Where :func:`plugin_sections` finds the plugins' sections by default. The plugin
    host installs itself here (``grpo_plug/__init__.py``): config sits below plugins
    and never imports them."""
    _SECTION_PROVIDER[:] = [provider]


def plugin_sections(sections: Mapping[str, type] | None = None) -> Mapping[str, type]:
    """``sections``, or when ``None`` those the installed provider (the process-wide
    plugin host) declares; none without one."""
    if sections is not None:
        return sections
    return _SECTION_PROVIDER[0]() if _SECTION_PROVIDER else {}


def all_keys(
    cls: type = TrainConfig, prefix: str = "", sections: Mapping[str, type] | None = None
) -> list[str]:
    """Every dotted leaf key of the schema (with the plugins' sections at the root)."""
    out: list[str] = []
    hints = _hints(cls)
    for f in _fields(cls):
        tp = hints[f.name]
        if _is_section(tp):
            out.extend(all_keys(tp, f"{prefix}{f.name}.", {}))
        else:
            out.append(f"{prefix}{f.name}")
    if cls is TrainConfig and not prefix:
        for name, sec in plugin_sections(sections).items():
            out.extend(all_keys(sec, f"{name}.", {}))
    return out


def unknown_key(key: str, valid: list[str]) -> ConfigError:
    extra = did_you_mean(key, valid)
    return ConfigError(f"{key}: unknown config key{extra}")


def unknown_keys_error(keys: list[str], valid: list[str], what: str = "") -> ConfigError:
    """One error for every unknown key, each with its did-you-mean, on one line."""
    if len(keys) == 1:
        err = unknown_key(keys[0], valid)
        return ConfigError(f"{err}{what}") if what else err
    named = "; ".join(f"{k}{did_you_mean(k, valid)}" for k in keys)
    return ConfigError(f"{len(keys)} unknown config keys{what}: {named}")


def leaf_keys(data: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the leaves of nested mappings (a mapping with none is a leaf)."""
    if not isinstance(data, dict) or not data:
        return [prefix.rstrip(".")]
    out: list[str] = []
    for key, value in data.items():
        out.extend(leaf_keys(value, f"{prefix}{key}."))
    return out


def _unknown(cls: type, data: Any, prefix: str) -> list[str]:
    """The keys of ``data`` the schema ``cls`` lacks, as dotted leaves."""
    if not isinstance(data, dict):
        return []
    hints = _hints(cls)
    names = {f.name for f in _fields(cls)}
    out: list[str] = []
    for raw_key, value in data.items():
        key = str(raw_key)
        if key not in names:
            out.extend(leaf_keys(value, f"{prefix}{key}."))
        elif _is_section(hints[key]):
            out.extend(_unknown(hints[key], value, f"{prefix}{key}."))
    return out


def unknown_keys(data: dict[str, Any], sections: Mapping[str, type] | None = None) -> list[str]:
    """Every key of ``data`` no schema section (built-in or plugin) has."""
    sections = plugin_sections(sections)
    rest = {k: v for k, v in data.items() if k not in sections}
    found = [k for name, cls in sections.items() for k in _unknown(cls, data.get(name), f"{name}.")]
    return found + _unknown(TrainConfig, rest, "")


def _build(cls: type, data: Any, prefix: str, valid: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or '<root>'}: expected a mapping, got {data!r}")
    hints = _hints(cls)
    names = {f.name: f for f in _fields(cls)}
    kwargs: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = str(raw_key)
        if key not in names:
            raise unknown_key(prefix + key, valid)
        f = names[key]
        tp = hints[key]
        if _is_section(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.", valid)
        else:
            coerced = _coerce(prefix + key, tp, value)
            _check_range(prefix + key, f.metadata, coerced)
            kwargs[key] = coerced
    return cls(**kwargs)


@dataclass(frozen=True)
class Allocation:
    """``sglang.d{dp}p{pp}t{tp}+d{dp}p{pp}t{tp}``: generation layout + training layout."""

    gen_dp: int
    gen_pp: int
    gen_tp: int
    train_dp: int
    train_pp: int
    train_tp: int

    @property
    def gen_gpus(self) -> int:
        return self.gen_dp * self.gen_pp * self.gen_tp

    @property
    def train_gpus(self) -> int:
        return self.train_dp * self.train_pp * self.train_tp


_ALLOCATION = re.compile(r"sglang[.:]d(\d+)p(\d+)t(\d+)\+d(\d+)p(\d+)t(\d+)")


_COLOCATED = re.compile(r"d(\d+)p(\d+)t(\d+)")


def colocated_ranks(mode: str) -> int | None:
    """Learner ranks of a colocated layout: 1 for ``local``, N for ``dNp1t1`` (the
    rollout backend runs in rank 0's process); None for an SGLang layout."""
    if mode == "local":
        return 1
    m = _COLOCATED.fullmatch(mode)
    if m is None:
        return None
    dp, pp, tp = (int(g) for g in m.groups())
    if min(dp, pp, tp) < 1 or pp != 1 or tp != 1:
        raise ConfigError(
            f"allocation_mode: {mode!r}: a colocated training layout is d<N>p1t1 (N learner "
            "ranks sharded with FSDP, generation in rank 0's process)"
        )
    return dp


def parse_allocation(mode: str) -> Allocation | None:
    """``None`` for a colocated layout (``local``, ``dNp1t1``); a ConfigError naming
    ``allocation_mode`` if malformed."""
    if colocated_ranks(mode) is not None:
        return None
    m = _ALLOCATION.fullmatch(mode)
    if m is None or min(int(g) for g in m.groups()) < 1:
        raise ConfigError(
            f"allocation_mode: {mode!r} is neither 'local' nor like 'sglang.d1p1t1+d1p1t1' "
            "(servers x pipeline x tensor parallel, + the same for training) or 'd2p1t1' "
            "(learner ranks, generation colocated)"
        )
    if int(m.group(2)) != 1:
        raise ConfigError(f"allocation_mode: {mode!r}: pipeline-parallel SGLang is not supported")
    return Allocation(*(int(g) for g in m.groups()))


def _check_rollout(cfg: TrainConfig) -> None:
    alloc = parse_allocation(cfg.allocation_mode)
    if alloc is not None and cfg.rollout.backend == "hf":
        raise ConfigError(
            f"allocation_mode: {cfg.allocation_mode!r} runs SGLang servers but rollout.backend "
            "is 'hf' (set rollout.backend=sglang, or allocation_mode=local)"
        )
    for addr in cfg.rollout.server_addrs:
        host, _, port = addr.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"rollout.server_addrs: {addr!r} is not host:port")
    if cfg.rollout.server_addrs and cfg.rollout.backend != "sglang":
        raise ConfigError("rollout.server_addrs: only the sglang backend attaches to servers")


def _check_decoupled(cfg: TrainConfig) -> None:
    """The decoupled loss's keys. pi_prox is always available (the run plan turns the
    learner's recompute on), so what can fail is pi_behav, or a cap with nothing to cap."""
    a = cfg.actor
    if a.behav_imp_weight_cap is not None and not a.use_decoupled_loss:
        # Without the decoupled loss pi_prox is pi_behav: every weight is 1, a cap is inert.
        raise ConfigError(
            "actor.behav_imp_weight_cap: acts only with actor.use_decoupled_loss=true "
            "(without it every weight pi_prox/pi_behav is 1); set that, or the cap to null"
        )
    if a.use_decoupled_loss and cfg.gconfig.temperature <= 0:
        raise ConfigError(
            "actor.use_decoupled_loss: gconfig.temperature=0 samples greedily, so the "
            "sampler's log-probs are no behaviour policy's and pi_prox/pi_behav is no "
            "importance weight; sample with gconfig.temperature > 0"
        )


def _cross_checks(cfg: TrainConfig) -> None:
    _check_rollout(cfg)
    _check_decoupled(cfg)
    if len(cfg.reward.functions) != len(cfg.reward.weights):
        raise ConfigError(
            f"reward.weights: has {len(cfg.reward.weights)} entries but reward.functions "
            f"has {len(cfg.reward.functions)}"
        )
    if not cfg.reward.functions:
        raise ConfigError("reward.functions: at least one reward function is needed")
    for op in cfg.train_dataset.arith_ops + cfg.valid_dataset.arith_ops:
        if op not in "+-*":
            raise ConfigError(f"train_dataset.arith_ops: {op!r} is not one of + - *")
    if cfg.gconfig.greedy and getattr(cfg.actor, "use_decoupled_loss", False):
        raise ConfigError(
            "gconfig.greedy: greedy rollouts have no behaviour policy for "
            "actor.use_decoupled_loss; sample, or turn the decoupled loss off"
        )
    if cfg.gconfig.min_new_tokens > cfg.gconfig.max_new_tokens:
        raise ConfigError(
            f"gconfig.min_new_tokens: {cfg.gconfig.min_new_tokens} is more than "
            f"gconfig.max_new_tokens ({cfg.gconfig.max_new_tokens})"
        )
    ds, bs = cfg.dynamic_sampling, cfg.train_dataset.batch_size
    if ds.min_groups is not None and ds.min_groups > (ds.max_rounds + 1) * bs:
        raise ConfigError(
            f"dynamic_sampling.min_groups: {ds.min_groups} is more than the "
            f"{(ds.max_rounds + 1) * bs} groups a step can sample ((max_rounds {ds.max_rounds}"
            f" + 1) x train_dataset.batch_size {bs}); raise max_rounds or lower min_groups"
        )
    for key in ("experiment_name", "trial_name"):
        val = getattr(cfg, key)
        if not val or "/" in val or val in (".", ".."):
            raise ConfigError(f"{key}: {val!r} is not a valid folder name")


def from_dict(data: dict[str, Any], sections: Mapping[str, type] | None = None) -> TrainConfig:
    """Validate a nested mapping into a :class:`TrainConfig`; ``sections``: the plugins'
    config sections (``None``: those of the process-wide plugin host)."""
    sections = plugin_sections(sections)
    valid = all_keys(sections=sections)
    unknown = unknown_keys(data, sections)
    if unknown:
        raise unknown_keys_error(unknown, valid)
    rest = dict(data)
    built = {
        name: _build(cls, rest.pop(name, None), f"{name}.", valid) for name, cls in sections.items()
    }
    cfg: TrainConfig = _build(TrainConfig, rest, "", valid)
    cfg.plugin_sections = built
    _cross_checks(cfg)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain data; plugin sections sit at the root, as they are typed."""
    out = dataclasses.asdict(cfg)
    out.update(out.pop("plugin_sections", None) or {})
    return out


def read_number(value: Any) -> Any:
    # YAML 1.1 reads 1e-6 as a string; numbers written that way are common on the CLI.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value) if any(c in value.lower() for c in ".e") else int(value)
    return value


def _list_item(raw: str) -> Any:
    """One item of ``a,b,c`` on the command line, read like a whole value."""
    try:
        return read_number(yaml.safe_load(raw))
    except yaml.YAMLError:
        return raw


def field_help(
    cls: type = TrainConfig, prefix: str = "", sections: Mapping[str, type] | None = None
) -> list[tuple[str, str, str, Any]]:
    """(key, type, help, default) for every leaf, for docs and `config keys`."""
    rows: list[tuple[str, str, str, Any]] = []
    hints = _hints(cls)
    for f in _fields(cls):
        tp = hints[f.name]
        if _is_section(tp):
            rows.extend(field_help(tp, f"{prefix}{f.name}.", {}))
        else:
            factory: Any = f.default_factory
            default = f.default if f.default is not dataclasses.MISSING else factory()
            rows.append((prefix + f.name, _type_name(tp), f.metadata.get("help", ""), default))
    if cls is TrainConfig and not prefix:
        for name, sec in plugin_sections(sections).items():
            rows.extend(field_help(sec, f"{name}.", {}))
    return rows
