"""Typed registries that ``register_*`` hooks fill."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from grpo_plug.errors import (
    DuplicateComponentError,
    PluginError,
    UnknownComponentError,
    did_you_mean,
)

T = TypeVar("T")


TRAITS: dict[str, str] = {
    "terminal": "a logger that prints to the terminal (the dashboard replaces it)",
    "auto:colocated": "the sync `auto` picks when the backend shares the learner's model",
    "auto:one-device": "the sync `auto` picks when learner and servers share one device",
    "auto:devices": "the sync `auto` picks when servers have GPUs of their own",
    "auto:weightless": "the sync `auto` picks when the backend has no weights to update",
    "weights:shared": "a rollout backend generating with the learner's own model",
    "weights:own": "a rollout backend keeping its own copy of the weights",
    "weights:none": "a rollout backend without weights of this run (replay, remote API)",
    "syncs:shared": "a weight-sync strategy for backends with weights:shared",
    "syncs:own": "a weight-sync strategy for backends with weights:own",
    "syncs:none": "a weight-sync strategy for backends with weights:none",
}
"""Every trait a component may declare, with what it promises."""


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component: ``name`` (what the config picks it by), ``factory``
    (for reward functions: the function, wrapped to be checked at every call),
    ``plugin`` (the plugin that registered it), ``description`` (one line, shown by
    ``grpo-plug plugins``), ``config`` (its config section, keys ``<name>.*``) and, for
    reward functions, ``correctness`` and ``traits`` (see :meth:`ComponentRegistry.register`)."""

    name: str
    factory: T
    plugin: str
    description: str
    config: type | None = None
    correctness: bool = False
    traits: frozenset[str] = frozenset()

    def has(self, trait: str) -> bool:
        return trait in self.traits


class ComponentRegistry(Generic[T]):
    """Name -> component, remembering which plugin registered each name."""

    def __init__(self, kind: str, adapt: Callable[[T, str, str], T] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._current_plugin = "<direct>"
        self._adapt = adapt  # wraps each factory (name, plugin known), e.g. reward checks
        # What an unknown name's error adds: plugins set aside or filtered out (the host's).
        self.missing_note = ""

    def register(
        self,
        name: str,
        factory: T,
        *,
        description: str = "",
        config: type | None = None,
        correctness: bool = False,
        traits: Iterable[str] = (),
    ) -> None:
        """Add ``factory`` under ``name``; a second plugin using the same name is an error.

        ``config``: a dataclass whose fields (made with :func:`grpo_plug.config.option`)
        become the keys ``<name>.<field>``, validated like the built-ins' and read by
        the factory with ``cfg.section(ThatClass)``.

        ``correctness`` (reward functions only): the function grades whether the answer
        is right (1 right, 0 wrong), like ``math_accuracy``. Its values are the task
        reward (``grpo_actor/task_reward/avg`` = accuracy) and a completion cut at
        ``max_new_tokens`` gets ``reward.no_eos_reward`` from it instead of a grade.

        ``traits``: capabilities core code chooses by, so it never names a plugin (see
        :data:`TRAITS`): a logger with ``terminal`` prints status lines to the terminal
        (the dashboard replaces it); a weight-sync strategy with ``auto:<layout>`` is
        what ``weight_sync.strategy=auto`` picks for that layout."""
        unknown = sorted(set(traits) - set(TRAITS))
        if unknown:
            raise PluginError(
                f"plugin {self._current_plugin!r} registered {self.kind} {name!r} with "
                f"unknown trait(s) {', '.join(unknown)}; known: {', '.join(TRAITS)}"
            )
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
        self._entries[name] = Entry(
            name, factory, self._current_plugin, doc, config, correctness, frozenset(traits)
        )

    def get(self, name: str) -> T:
        return self.entry(name).factory

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            names = sorted(self._entries)
            extra = did_you_mean(name, names)
            note = f"; {self.missing_note}" if self.missing_note else ""
            raise UnknownComponentError(
                f"unknown {self.kind} {name!r}{extra}; available: "
                f"{', '.join(names) or 'none'}{note}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def with_trait(self, trait: str) -> list[Entry[T]]:
        """Entries that declared ``trait``, by name."""
        return [e for e in self if e.has(trait)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)
