"""Typed registries that ``register_*`` hooks fill."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class PluginError(RuntimeError):
    """A plugin problem; the message names the plugin."""


class DuplicateComponentError(PluginError):
    pass


class UnknownComponentError(PluginError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component: ``name`` (what the config picks it by), ``factory``
    (for reward functions: the function, wrapped to be checked at every call),
    ``plugin`` (the plugin that registered it), ``description`` (one line, shown by
    ``grpo-plug plugins``), ``config`` (its config section, keys ``<name>.*``) and, for
    reward functions, ``correctness`` (see :meth:`ComponentRegistry.register`)."""

    name: str
    factory: T
    plugin: str
    description: str
    config: type | None = None
    correctness: bool = False


class ComponentRegistry(Generic[T]):
    """Name -> component, remembering which plugin registered each name."""

    def __init__(self, kind: str, adapt: Callable[[T, str, str], T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._current_plugin = "<direct>"
        self._adapt = adapt  # wraps each factory (name, plugin known), e.g. reward checks

    def register(
        self,
        name: str,
        factory: T,
        *,
        description: str = "",
        config: type | None = None,
        correctness: bool = False,
    ) -> None:
        """Add ``factory`` under ``name``; a second plugin using the same name is an error.

        ``config``: a dataclass whose fields (made with :func:`grpo_plug.config.option`)
        become the keys ``<name>.<field>``, validated like the built-ins' and read by
        the factory with ``cfg.section(ThatClass)``.

        ``correctness`` (reward functions only): the function grades whether the answer
        is right (1 right, 0 wrong), like ``math_accuracy``. Its values are the task
        reward (``grpo_actor/task_reward/avg`` = accuracy) and a completion cut at
        ``max_new_tokens`` gets ``reward.no_eos_reward`` from it instead of a grade."""
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {self._current_plugin!r} registered a {self.kind} with an invalid "
                f"name {name!r}"
            )
        if name in self._entries:
            other = self._entries[name].plugin
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by "
                f"plugin {self._current_plugin!r}; block one with GRPO_PLUG_DISABLE_PLUGINS"
            )
        if config is not None and not (
            isinstance(config, type) and dataclasses.is_dataclass(config)
        ):
            raise PluginError(
                f"plugin {self._current_plugin!r} registered {self.kind} {name!r} with "
                f"config={config!r}: expected a dataclass"
            )
        if correctness and self.kind != "reward function":
            raise PluginError(
                f"plugin {self._current_plugin!r} registered {self.kind} {name!r} with "
                "correctness=True: only reward functions take it"
            )
        doc = description or (getattr(factory, "__doc__", None) or "").strip().split("\n")[0]
        if self._adapt is not None:
            factory = self._adapt(factory, name, self._current_plugin)
        self._entries[name] = Entry(name, factory, self._current_plugin, doc, config, correctness)

    def get(self, name: str) -> T:
        return self.entry(name).factory

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            names = sorted(self._entries)
            hint = difflib.get_close_matches(name, names, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}{extra}; available: {', '.join(names) or 'none'}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)
