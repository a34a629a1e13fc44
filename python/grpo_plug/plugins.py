"""The plugin manager: lazy, idempotent loading of built-in and installed plugins.

Writing a plugin
----------------
A plugin is a module (or object) with functions marked ``@hookimpl``::

    from grpo_plug.api import hookimpl

    @hookimpl
    def register_reward_functions(registry):
        registry.register("length_penalty", my_reward, description="...")

(``grpo-plug plugins new KIND NAME`` writes a whole package; docs/plugins.md is the guide.)

and an entry point in its package's ``pyproject.toml``::

    [project.entry-points.grpo_plug]
    my_plugin = "my_package.plugin"

Environment switches
--------------------
``GRPO_PLUG_PLUGINS``          comma list: load only these installed plugins
                               (empty string: none); the built-ins still load. A
                               name no installed plugin has counts as broken.
``GRPO_PLUG_DISABLE_PLUGINS``  comma list of plugins (installed or ``builtin.*``) to skip.
``GRPO_PLUG_TRACE_PLUGINS=1``  print every hook call (plugin, hook, time) to stderr.

A name in either list that no plugin has is warned about once (with a did-you-mean).

An installed plugin that fails to import, is invalid or raises in a ``register_*`` hook
is set aside, not fatal: ``--help``, ``doctor``, ``plugins`` and ``config`` report it,
and a run that does not use it goes on. A run that names a component no loaded plugin
provides stops with "unknown ..." followed by what was set aside and what the two lists
above hid (:meth:`PluginHost.not_loaded_note`), since that is where the name may be.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pluggy

from grpo_plug import hookspecs
from grpo_plug.errors import PluginError, did_you_mean
from grpo_plug.registry import ComponentRegistry

if TYPE_CHECKING:
    import typer

    from grpo_plug.types import (
        LoggerFactory,
        RewardFunction,
        RolloutBackendFactory,
        TaskFactory,
        WeightSyncFactory,
    )

T = TypeVar("T")

BUILTIN_MODULES = (
    "grpo_plug.builtin.rewards",
    "grpo_plug.builtin.tasks",
    "grpo_plug.builtin.loggers",
    "grpo_plug.builtin.weight_sync",
    "grpo_plug.builtin.hf_backend",
    "grpo_plug.builtin.sglang_backend",
)

_BACKENDS = "register_rollout_backends"
_SYNCS = "register_weight_sync_strategies"
_TASKS = "register_tasks"
_REWARDS = "register_reward_functions"
_LOGGERS = "register_loggers"

# Hook name -> the component kind its registry holds (register_commands takes an app).
REGISTRY_HOOKS = {
    "register_rollout_backends": "rollout backend",
    "register_weight_sync_strategies": "weight-sync strategy",
    "register_tasks": "task",
    "register_reward_functions": "reward function",
    "register_loggers": "logger",
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str  # "builtin", "entry point <dist> <version>" or "registered"
    hooks: tuple[str, ...]


def _hook_hint(message: str) -> str:
    """`` (did you mean 'register_x'?)`` for pluggy's "unknown hook 'register_y'"."""
    import re

    m = re.search(r"unknown hook '(\w+)'", message)
    specs = [n for n in vars(hookspecs) if n.startswith("register_")]
    return did_you_mean(m.group(1), specs) if m else ""


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


class PluginHost:
    """Owns the pluggy manager; loads plugins on first use."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._loaded = False
        self._sources: dict[str, str] = {}
        self._broken: dict[str, str] = {}  # installed plugin -> why it did not load
        self._unknown: set[str] = set()  # GRPO_PLUG_PLUGINS names with no plugin
        self._hidden: list[str] = []  # plugins the two environment lists left out
        self.filter_warnings: list[str] = []  # names in those lists that no plugin has

    # -- loading -----------------------------------------------------------------

    def load(self) -> None:
        """Register built-ins and installed entry points; safe to call repeatedly."""
        if self._loaded:
            return
        blocked = _env_list("GRPO_PLUG_DISABLE_PLUGINS") or set()
        for modname in BUILTIN_MODULES:
            name = "builtin." + modname.rsplit(".", 1)[1]
            if name in blocked:
                self._hidden.append(name)
                continue
            self._register(importlib.import_module(modname), name, "builtin")
        allowed = _env_list("GRPO_PLUG_PLUGINS")
        eps = sorted(metadata.entry_points(group=hookspecs.PROJECT), key=lambda e: e.name)
        self._note_unknown(allowed, {ep.name for ep in eps})
        self._note_unknown_blocked(blocked, {ep.name for ep in eps})
        for ep in eps:
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                self._hidden.append(ep.name)
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                obj = ep.load()
            except Exception as e:
                why = f"{type(e).__name__}: {e}"
                self._broken[ep.name] = f"plugin {ep.name!r} ({ep.value}) failed to import: {why}"
                continue
            dist = ep.dist
            source = f"entry point {dist.name} {dist.version}" if dist else "entry point"
            try:
                self._register(obj, ep.name, source)
            except PluginError as e:
                self._broken[ep.name] = str(e)
        self._loaded = True

    def _note_unknown(self, allowed: set[str] | None, installed: set[str]) -> None:
        """A name in GRPO_PLUG_PLUGINS that nothing installed provides is a typo that
        would otherwise load nothing, silently: it counts as broken."""
        for name in sorted((allowed or set()) - installed):
            self._broken[name] = (
                f"GRPO_PLUG_PLUGINS names {name!r}{did_you_mean(name, sorted(installed))}, "
                f"which no installed plugin provides (installed: "
                f"{', '.join(sorted(installed)) or 'none'})"
            )
            self._unknown.add(name)
            print(f"grpo-plug: warning: {self._broken[name]}", file=sys.stderr)

    def _note_unknown_blocked(self, blocked: set[str], installed: set[str]) -> None:
        """A misspelled GRPO_PLUG_DISABLE_PLUGINS name would block nothing, silently:
        warned once on stderr (kept for ``doctor``)."""
        known = sorted(installed | {"builtin." + m.rsplit(".", 1)[1] for m in BUILTIN_MODULES})
        for name in sorted(blocked - set(known)):
            text = (
                f"GRPO_PLUG_DISABLE_PLUGINS names {name!r}{did_you_mean(name, known)}, which "
                f"is no plugin (plugins: {', '.join(known)})"
            )
            self.filter_warnings.append(text)
            print(f"grpo-plug: warning: {text}", file=sys.stderr)

    def not_loaded_note(self) -> str:
        """What a run's "unknown component" error adds: the plugins set aside as broken
        and those the environment lists hid (the name may be in one of them); empty
        when every plugin loaded."""
        self.load()
        parts = list(self._broken.values())
        if self._hidden:
            names = ", ".join(self._hidden)
            parts.append(f"not loaded by GRPO_PLUG_PLUGINS / GRPO_PLUG_DISABLE_PLUGINS: {names}")
        if self._broken:
            parts.append(self.disable_hint())
        return "; ".join(parts)

    def broken(self) -> dict[str, str]:
        """Installed plugins that did not load -> the one-line reason."""
        self.load()
        return dict(self._broken)

    def disable_hint(self) -> str:
        """How to skip the broken plugins, keeping what is already disabled."""
        failed = set(self._broken) - self._unknown
        if not failed:
            return "fix GRPO_PLUG_PLUGINS (installed plugin names, comma-separated)"
        names = sorted((_env_list("GRPO_PLUG_DISABLE_PLUGINS") or set()) | failed)
        return f"fix it or disable it with GRPO_PLUG_DISABLE_PLUGINS={','.join(names)}"

    def check_broken(self) -> None:
        """Raise one PluginError naming every broken plugin and how to disable it (for
        ``doctor``; a run stops only when it names what a broken plugin would provide)."""
        if self.broken():
            raise PluginError(f"{'; '.join(self._broken.values())}; {self.disable_hint()}")

    def _register(self, obj: object, name: str, source: str) -> None:
        try:
            self.pm.register(obj, name=name)
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            if self.pm.is_registered(obj):
                self.pm.unregister(obj)
            raise PluginError(f"plugin {name!r} is invalid: {e}{_hook_hint(str(e))}") from None
        except ValueError as e:  # already registered under another name
            raise PluginError(f"plugin {name!r}: {e}") from None
        self._sources[name] = source

    def register(self, obj: object, name: str) -> None:
        """Register an in-process plugin object (tests, notebooks)."""
        self.load()
        self._register(obj, name, "registered")

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._sources.pop(name, None)

    # -- calling -----------------------------------------------------------------

    def _call_each(
        self,
        hook_name: str,
        on_impl: Callable[[str], None],
        *,
        lenient: bool = False,
        **kwargs: Any,
    ) -> None:
        """Call every implementation of a hook, telling ``on_impl`` whose turn it is;
        ``lenient``: one that raises is set aside as broken (for the commands that list
        and diagnose) instead of stopping the call."""
        self.load()
        trace = os.environ.get("GRPO_PLUG_TRACE_PLUGINS", "") not in ("", "0")
        caller = getattr(self.pm.hook, hook_name)
        # Oldest registration first, so built-ins register before third parties.
        for impl in reversed(caller.get_hookimpls()):
            on_impl(impl.plugin_name)
            start = time.perf_counter()
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except PluginError as e:  # the registry's own (a duplicate name, ...)
                if not lenient:
                    raise
                self._broken.setdefault(impl.plugin_name, str(e))
                continue
            except Exception as e:
                # Set aside like a plugin that fails to import: only a run that names
                # one of its components stops (the registry's note says why).
                name = impl.plugin_name
                why = f"plugin {name!r} failed in {hook_name}: {type(e).__name__}: {e}"
                self._broken.setdefault(name, why)
                continue
            if trace:
                ms = (time.perf_counter() - start) * 1e3
                print(
                    f"[grpo-plug trace] {hook_name} <- {impl.plugin_name} ({ms:.2f} ms)",
                    file=sys.stderr,
                )

    def collect(self, hook_name: str, *, strict: bool = True) -> ComponentRegistry[Any]:
        """Run a ``register_*`` hook over all plugins into a fresh registry. A plugin
        that failed to load, or raises in the hook, is left out; asking the registry
        for a name it lacks then says so. ``strict`` (what a run needs): a conflict
        between loaded plugins (a name registered twice) stops here; else it is set
        aside too (the commands that list and diagnose)."""
        if hook_name not in REGISTRY_HOOKS:
            raise KeyError(hook_name)
        adapt: Callable[[Any, str, str], Any] | None = None
        if hook_name == _REWARDS:  # checked at every call, naming function and plugin
            from grpo_plug.rewards import adapt_reward

            adapt = adapt_reward
        registry: ComponentRegistry[Any] = ComponentRegistry(REGISTRY_HOOKS[hook_name], adapt)

        def set_plugin(name: str) -> None:
            registry._current_plugin = name

        self._call_each(hook_name, set_plugin, lenient=not strict, registry=registry)
        registry._current_plugin = "<direct>"
        registry.missing_note = self.not_loaded_note()
        return registry

    # One typed wrapper per hook.
    def rollout_backends(self) -> ComponentRegistry[RolloutBackendFactory]:
        return cast("ComponentRegistry[RolloutBackendFactory]", self.collect(_BACKENDS))

    def weight_sync_strategies(self) -> ComponentRegistry[WeightSyncFactory]:
        return cast("ComponentRegistry[WeightSyncFactory]", self.collect(_SYNCS))

    def tasks(self) -> ComponentRegistry[TaskFactory]:
        return cast("ComponentRegistry[TaskFactory]", self.collect(_TASKS))

    def reward_functions(self) -> ComponentRegistry[RewardFunction]:
        return cast("ComponentRegistry[RewardFunction]", self.collect(_REWARDS))

    def loggers(self) -> ComponentRegistry[LoggerFactory]:
        return cast("ComponentRegistry[LoggerFactory]", self.collect(_LOGGERS))

    def add_commands(self, app: typer.Typer) -> None:
        self._call_each("register_commands", lambda _name: None, app=app)

    def config_sections(self) -> dict[str, type]:
        """Section name -> dataclass, for every component registered with ``config=``.

        A section is named after its component; it may not shadow a built-in key
        and two components may not claim the same name."""
        from grpo_plug.config import TrainConfig, builtin_sections

        taken = builtin_sections(TrainConfig)
        owners: dict[str, str] = {}
        out: dict[str, type] = {}
        for hook in REGISTRY_HOOKS:
            for entry in self.collect(hook):
                if entry.config is None:
                    continue
                who = f"plugin {entry.plugin!r} ({REGISTRY_HOOKS[hook]} {entry.name!r})"
                if taken.get(entry.name) is entry.config:
                    continue  # a built-in naming its own section (sglang): already in the schema
                if entry.name in taken:
                    raise PluginError(
                        f"{who} declares config section {entry.name!r}, which is a built-in "
                        "key; rename the component"
                    )
                if entry.name in owners:
                    raise PluginError(
                        f"config section {entry.name!r} is declared twice: by "
                        f"{owners[entry.name]} and by {who}"
                    )
                owners[entry.name] = who
                out[entry.name] = entry.config
        return out

    # -- introspection -------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        self.load()
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or []))
            out.append(PluginInfo(name, self._sources.get(name, "registered"), hooks))
        return sorted(out, key=lambda p: (p.source != "builtin", p.name))


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host (created on first use, never at import)."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost()
    return _HOST


def reset_host() -> None:
    """Forget the process-wide host (tests)."""
    global _HOST
    _HOST = None
