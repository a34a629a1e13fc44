"""The AReaL dialect: a config file written for AReaL (the seed's ``gsm8k_grpo*.yaml``)
read into grpo-plug's keys.

1. OmegaConf resolves the interpolation (``${actor.path}``, ``${oc.env:VAR}``). An
   environment variable that is not set reads as null, with a note, instead of stopping
   the run (the seed's files read ``WANDB_API_KEY`` that way; unset, wandb logs offline).
2. Every key is translated by the table in :mod:`grpo_plug.config.keymap`; a key the
   table lacks passes through when it is one of grpo-plug's own (so an AReaL file can
   add grpo-plug settings), else it is reported, all such keys in one message.
3. The result is validated like any config; keys AReaL keeps twice (``actor.group_size``
   and ``gconfig.n_samples``) must agree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from grpo_plug.config import keymap
from grpo_plug.config.schema import TrainConfig
from grpo_plug.config.validate import all_keys, from_dict, read_number, unknown_keys_error
from grpo_plug.errors import ConfigError

MISSING: Any = object()
_ENV = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)\}")
ASYNC_KEYS = "rollout.max_head_offpolicyness, actor.use_decoupled_loss, actor.behav_imp_weight_cap"


@dataclass
class Translation:
    """An AReaL config in grpo-plug's keys, and how each key got there."""

    data: dict[str, Any] = field(default_factory=dict)  # nested, grpo-plug's keys
    source: dict[str, list[str]] = field(default_factory=dict)  # grpo-plug key -> AReaL keys
    no_effect: list[tuple[str, str]] = field(default_factory=list)  # (AReaL key, why)
    implied: list[tuple[str, str]] = field(default_factory=list)  # (grpo-plug key, why)
    checks: list[tuple[str, str, Any]] = field(default_factory=list)  # (AReaL, ours, value)
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    needs_async: list[str] = field(default_factory=list)

    def put(self, target: str, value: Any, *sources: str) -> None:
        have = _get(self.data, target)
        if have is not MISSING and have != value:
            raise ConfigError(
                f"{', '.join(sources)}: sets {target} to {value!r}, but "
                f"{', '.join(self.source.get(target, [target]))} already set it to {have!r}"
            )
        _put(self.data, target, value)
        self.source.setdefault(target, []).extend(s for s in sources if s != target)


def _get(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


# ----------------------------------------------------------------- 1. resolve


def load_conf(path: Path, overrides: Sequence[tuple[str, Any]] = ()) -> DictConfig:
    """The file as OmegaConf reads it, with ``key=value`` overrides merged in (before
    interpolation, so ``${actor.path}`` sees an overridden ``actor.path``)."""
    try:
        conf = OmegaConf.load(path)
    except FileNotFoundError:
        raise ConfigError(f"--config: {path} does not exist") from None
    except (yaml.YAMLError, OmegaConfBaseException) as e:
        raise ConfigError(f"{path}: invalid YAML ({type(e).__name__})") from None
    if not isinstance(conf, DictConfig):
        raise ConfigError(f"{path}: top level must be a mapping")
    for key, value in overrides:
        OmegaConf.update(conf, key, value, force_add=True)
    return conf


def resolve(conf: DictConfig, notes: list[str]) -> dict[str, Any]:
    """Plain data with every interpolation resolved; an unset ``${oc.env:VAR}`` is null."""
    return _resolve_node(conf, "", notes)


def _resolve_node(node: DictConfig, prefix: str, notes: list[str]) -> dict[str, Any]:
    raw = OmegaConf.to_container(node, resolve=False)
    assert isinstance(raw, dict)
    out: dict[str, Any] = {}
    for key, raw_value in raw.items():
        path = f"{prefix}{key!s}"
        try:
            value = node[key]
        except OmegaConfBaseException as e:
            unset = [v for v in _ENV.findall(str(raw_value)) if v not in os.environ]
            if not unset:
                first = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise ConfigError(f"{path}: cannot resolve {raw_value!r} ({first})") from None
            notes.append(f"{path}: {raw_value} is not set in the environment; read as null")
            out[str(key)] = None
            continue
        if isinstance(value, DictConfig):
            out[str(key)] = _resolve_node(value, f"{path}.", notes)
        elif isinstance(value, ListConfig):
            out[str(key)] = OmegaConf.to_container(value, resolve=True)
        else:
            out[str(key)] = read_number(value)  # "1e-8" is a number, as AReaL types it
    return out


# ----------------------------------------------------------------- 2. translate


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaves; an empty or null section is a leaf."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _level(value: Any) -> str:
    return "none" if value is None else str(value)


def _norms(flat: dict[str, Any], t: Translation) -> None:
    """reward_norm -> actor.adv_mode; adv_norm -> actor.adv_norm (AReaL's defaults for
    a level a file leaves out: batch)."""
    rn = [k for k in flat if k.startswith("actor.reward_norm.") and k.endswith("_level")]
    if flat.get("actor.reward_norm", 0) is None:
        t.errors.append(
            "actor.reward_norm: null (raw rewards as advantages) has no grpo-plug "
            "equivalent; advantages are group-relative (actor.adv_mode)"
        )
        flat.pop("actor.reward_norm")
    if rn:
        mean = _level(flat.pop("actor.reward_norm.mean_level", "batch"))
        std = _level(flat.pop("actor.reward_norm.std_level", "batch"))
        modes = {("group", "group"): "grpo", ("group", "none"): "dr_grpo"}
        if (mean, std) in modes:
            t.put("actor.adv_mode", modes[(mean, std)], *rn)
        else:
            t.errors.append(
                f"actor.reward_norm: mean_level {mean} / std_level {std} has no grpo-plug "
                "equivalent (group/group is actor.adv_mode grpo, group/null is dr_grpo)"
            )
    if "actor.adv_norm" in flat and flat["actor.adv_norm"] is None:
        flat.pop("actor.adv_norm")
        t.put("actor.adv_norm.mean_level", "none", "actor.adv_norm")
        t.put("actor.adv_norm.std_level", "none", "actor.adv_norm")
    an = [k for k in ("actor.adv_norm.mean_level", "actor.adv_norm.std_level") if k in flat]
    for key in ("actor.adv_norm.mean_level", "actor.adv_norm.std_level") if an else ():
        t.put(key, _level(flat.pop(key, "batch")), *([key] if key in an else an))


def _circuit_breaker(flat: dict[str, Any], t: Translation) -> None:
    got = {
        k: flat.pop(k)
        for k in ("circuit_breaker_enabled", "circuit_breaker_threshold")
        if k in flat
    }
    keys = list(got)
    enabled = got.get("circuit_breaker_enabled")
    threshold = got.get("circuit_breaker_threshold")
    if enabled is False:
        t.put("rollout.zero_reward_steps", 0, *keys)
    elif threshold is not None:
        t.put("rollout.zero_reward_steps", threshold, *keys)
    elif keys:
        t.no_effect.append((keys[0], "no threshold: the watchdog keeps its default"))


def _async(flat: dict[str, Any], t: Translation, valid: set[str]) -> None:
    """AReaL's asynchronous keys, to the same names here; while a name is
    missing from the schema, a value asking for more than synchronous training stops."""
    got = {
        k: flat.pop(k) for k in ("async_training", "rollout.max_head_offpolicyness") if k in flat
    }
    wanted: list[tuple[str, Any, Any, list[str]]] = []
    if got:
        bound = got.get("rollout.max_head_offpolicyness")
        value = 0 if got.get("async_training") is False or bound is None else bound
        wanted.append(("rollout.max_head_offpolicyness", value, 0, list(got)))
    decoupled = flat.pop("actor.use_decoupled_loss", MISSING)
    if decoupled is not MISSING:
        wanted.append(("actor.use_decoupled_loss", decoupled, False, ["actor.use_decoupled_loss"]))
    cap = "actor.behav_imp_weight_cap"
    if cap in flat and decoupled in (MISSING, False, None):  # AReaL: it acts on that loss only
        flat.pop(cap)
        t.no_effect.append((cap, "acts only with actor.use_decoupled_loss, as in AReaL"))
    elif cap in flat:
        wanted.append((cap, flat.pop(cap), None, [cap]))
    for target, value, sync, keys in wanted:
        if target in valid:
            t.put(target, value, *keys)
        elif value in (sync, 0, False, None):
            t.no_effect.extend(
                (k, "synchronous training, the only kind in this build") for k in keys
            )
        else:
            t.needs_async.extend(keys)


def _wandb(flat: dict[str, Any], t: Translation) -> None:
    api_key = "stats_logger.wandb.wandb_api_key"
    if api_key in flat:
        value = flat.pop(api_key)
        rule = keymap.rule_for(api_key)
        t.no_effect.append((api_key, rule.why if rule else ""))
        if value and value != os.environ.get("WANDB_API_KEY"):
            t.notes.append(
                f"{api_key}: a key written in the file is not used; export WANDB_API_KEY"
            )
    mode = flat.pop("stats_logger.wandb.mode", MISSING)
    if mode is MISSING:
        return
    t.put("wandb.mode", mode, "stats_logger.wandb.mode")
    if mode != "disabled" and "loggers" not in flat:
        t.put("loggers", ["console", "jsonl", "wandb"], "stats_logger.wandb.mode")


def _sglang_requests(flat: dict[str, Any], t: Translation) -> None:
    n = flat.pop("sglang.max_running_requests", MISSING)
    if n is MISSING:
        return
    if n is None:
        t.no_effect.append(("sglang.max_running_requests", "null: SGLang's own default"))
        return
    extra = list(flat.pop("sglang.extra_args", None) or [])
    t.put(
        "sglang.extra_args",
        [*extra, "--max-running-requests", str(n)],
        "sglang.max_running_requests",
    )


def _allocation(flat: dict[str, Any], t: Translation) -> None:
    mode = flat.pop("allocation_mode", MISSING)
    if mode is MISSING:
        return
    t.put("allocation_mode", mode)
    if str(mode).startswith("sglang") and "rollout.backend" not in flat:
        t.put("rollout.backend", "sglang", "allocation_mode")


SPECIALS: tuple[Callable[[dict[str, Any], Translation], None], ...] = (
    _norms,
    _circuit_breaker,
    _wandb,
    _sglang_requests,
    _allocation,
)


def translate(data: Mapping[str, Any], valid: Sequence[str]) -> Translation:
    """Resolved AReaL data -> grpo-plug's keys (unknown keys and errors collected)."""
    t = Translation()
    flat = flatten(data)
    valid_set = set(valid)
    _async(flat, t, valid_set)
    for special in SPECIALS:
        special(flat, t)
    for key, value in flat.items():
        rule = keymap.rule_for(key)
        if rule is None:
            if key in valid_set:
                t.put(key, value)  # one of grpo-plug's own keys
            else:
                t.unknown.append(key)
        elif rule.kind in ("set", "special"):
            t.put(rule.target, value, key)
        elif rule.kind == "equal":
            t.checks.append((key, rule.target, value))
        elif rule.kind == "fixed" and value not in rule.values:
            allowed = " or ".join(repr(v) for v in rule.values)
            t.errors.append(f"{key}: {value!r} is not supported, only {allowed} ({rule.why})")
        else:
            t.no_effect.append((key, rule.why))
    for target, value, why in keymap.IMPLIED:
        if any(k.startswith(target.split(".")[0] + ".") for k in flat) and target not in flat:
            t.put(target, value)
            t.implied.append((target, why))
    return t


# ----------------------------------------------------------------- 3. validate


def _attr(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def build(
    data: Mapping[str, Any], sections: Mapping[str, type] | None = None
) -> tuple[TrainConfig, Translation]:
    """Resolved AReaL data -> a validated config, and how it was translated."""
    valid = all_keys(sections=sections)
    t = translate(data, valid)
    if t.unknown:
        raise unknown_keys_error(t.unknown, [*valid, *keymap.areal_keys()], " (AReaL dialect)")
    if t.errors:
        raise ConfigError("; ".join(t.errors))
    if t.needs_async:
        raise ConfigError(
            f"{', '.join(t.needs_async)}: asynchronous training needs {ASYNC_KEYS} "
            "and this build has none; set async_training: false and "
            "actor.use_decoupled_loss: false to train synchronously"
        )
    try:
        cfg = from_dict(t.data, sections)
    except ConfigError as e:
        raise _named_by_source(e, t) from None
    for key, target, value in t.checks:
        have = _attr(cfg, target)
        if value != have:
            raise ConfigError(
                f"{key}: {value!r} differs from {target} ({have!r}); grpo-plug has one "
                f"setting for both: set {target}"
            )
    return cfg, t


def _named_by_source(e: ConfigError, t: Translation) -> ConfigError:
    """A validation error about a translated key names the AReaL key too."""
    msg = str(e)
    key = msg.split(":", 1)[0]
    sources = t.source.get(key)
    if not sources:
        return e
    return ConfigError(f"{', '.join(sources)} -> {msg}")


def looks_like_areal(data: Mapping[str, Any], valid: Sequence[str]) -> bool:
    """An AReaL-style file: it interpolates, or it has a key AReaL has and grpo-plug
    does not (``actor.optimizer.lr``, ``stats_logger.*``, ``max_train_samples`` ...)."""
    valid_set = set(valid)
    for key, value in flatten(data).items():
        if isinstance(value, str) and "${" in value:
            return True
        if key not in valid_set and keymap.rule_for(key) is not None:
            return True
    return False
