"""Weight-sync strategies: ``inplace`` (colocated), ``disk`` (safetensors a server
loads), ``distributed`` (a broadcast the servers join), ``none`` (a backend without
weights of this run).

:func:`sync_weights` runs the phases once for all of them: prepare -> pause -> push ->
verify -> resume -> set the policy version; a strategy (:class:`Push`) implements only
its prepare and push, and how to restore a server that came back. The backend's
capabilities are its Protocols in :mod:`grpo_plug.types` (WeightUpdateSurface,
WeightDigests, DistributedUpdateSurface, ServerBackend), never probed attributes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from grpo_plug.config import TrainConfig
from grpo_plug.errors import SetupError, WeightSyncError
from grpo_plug.registry import ComponentRegistry, Entry
from grpo_plug.types import (
    RolloutBackend,
    ServerBackend,
    WeightDigests,
    WeightSyncFactory,
    WeightUpdateSurface,
)


def auto_layout(cfg: TrainConfig, backend: RolloutBackend) -> str:
    """The layout ``weight_sync.strategy=auto`` chooses for: ``colocated`` (the backend
    shares the learner's model), ``weightless`` (it has no weights to update: no
    WeightUpdateSurface), ``one-device`` (learner and servers share one GPU, or run on
    CPU), ``devices`` (servers have GPUs of their own)."""
    if backend.colocated:
        return "colocated"
    if not isinstance(backend, WeightUpdateSurface):
        return "weightless"
    if cfg.cluster.n_nodes * cfg.cluster.n_gpus_per_node <= 1:
        return "one-device"
    return "devices"


def resolve_strategy_name(
    cfg: TrainConfig, backend: RolloutBackend, registry: ComponentRegistry[WeightSyncFactory]
) -> str:
    """The configured strategy, or for ``auto`` the one registered with the trait
    ``auto:<layout>`` (see :func:`auto_layout`); a SetupError when none or several are."""
    if cfg.weight_sync.strategy != "auto":
        return cfg.weight_sync.strategy
    layout = auto_layout(cfg, backend)
    found = registry.with_trait(f"auto:{layout}")
    if len(found) != 1:
        which = ", ".join(f"{e.name} ({e.plugin})" for e in found) or "none is registered"
        raise SetupError(
            f"weight_sync.strategy=auto: one strategy must declare the trait auto:{layout} "
            f"for this layout; {which}: set weight_sync.strategy explicitly"
        )
    return found[0].name


def update_surface(backend: RolloutBackend, strategy: str) -> WeightUpdateSurface:
    """``backend`` as an update surface, or a WeightSyncError saying why not."""
    if backend.colocated:
        why = "shares the learner's model: use inplace"
    elif not isinstance(backend, WeightUpdateSurface):
        why = "does not offer grpo_plug.api.WeightUpdateSurface"
    else:
        return backend
    raise WeightSyncError(
        f"weight_sync.strategy={strategy} needs a backend that keeps its own weights "
        f"(e.g. sglang); {backend.name!r} {why}; a backend without weights of this run "
        "(replayed or remote completions) takes weight_sync.strategy=none"
    )


# Which backends a strategy can drive, by the traits both declare (see registry.TRAITS).
HOLDS = ("weights:shared", "weights:own", "weights:none")


def backend_holds(entry: Entry[Any]) -> str | None:
    """What a registered backend holds (a ``weights:*`` trait), or for a backend class
    without one what its class attributes say; None when unknown before it is built."""
    declared = [t for t in HOLDS if entry.has(t)]
    if declared:
        return declared[0]
    cls = entry.factory
    if not isinstance(cls, type):
        return None  # a factory function: known once the backend exists
    if getattr(cls, "colocated", None) is True:
        return "weights:shared"
    if all(callable(getattr(cls, m, None)) for m in _SURFACE_METHODS):
        return "weights:own"
    return "weights:none" if getattr(cls, "colocated", None) is False else None


_SURFACE_METHODS = ("pause_generation", "continue_generation", "update_weights_from_disk")


def check_pairing(
    cfg: TrainConfig,
    backends: ComponentRegistry[Any],
    strategies: ComponentRegistry[WeightSyncFactory],
) -> None:
    """Before any model loads: a SetupError when ``weight_sync.strategy`` cannot drive
    ``rollout.backend`` by what both declare, naming the strategies that can."""
    holds = backend_holds(backends.entry(cfg.rollout.backend))
    name = cfg.weight_sync.strategy
    if holds is None:
        return
    kind = holds.split(":")[1]
    able = [e.name for e in strategies if e.has(f"syncs:{kind}")]
    if name == "auto":
        layouts = {"shared": "colocated", "none": "weightless"}
        if kind in layouts and not strategies.with_trait(f"auto:{layouts[kind]}"):
            raise SetupError(
                f"weight_sync.strategy=auto: no strategy declares auto:{layouts[kind]} for "
                f"rollout backend {cfg.rollout.backend!r}; set weight_sync.strategy to one "
                f"of: {', '.join(able) or 'none registered'}"
            )
        return
    entry = strategies.entry(name)
    if not any(entry.has(f"syncs:{k}") for k in ("shared", "own", "none")):
        return  # a plugin strategy that declares nothing: checked when it first syncs
    if not entry.has(f"syncs:{kind}"):
        what = {
            "shared": "generates with the learner's own model",
            "own": "keeps its own copy of the weights",
            "none": "has no weights of this run",
        }[kind]
        raise SetupError(
            f"weight_sync.strategy={name} cannot drive rollout.backend="
            f"{cfg.rollout.backend}, which {what}; use weight_sync.strategy="
            f"{' or '.join(able) or 'auto'}"
        )


# --------------------------------------------------------------------- the phases


class Push(Protocol):
    """What a built-in strategy implements; :func:`sync_weights` runs the rest.

    ``phases`` names the seconds of ``prepare`` (``None``: it has none) and ``push``."""

    name: str
    phases: tuple[str | None, str]
    verify: bool

    def surface(self, backend: RolloutBackend) -> WeightUpdateSurface | None:
        """The surface to push to, None for a backend sharing the learner's model, or
        a WeightSyncError when this strategy cannot drive ``backend``."""
        ...

    def prepare(self, model: Any, version: int) -> None:
        """Before pausing: work the servers need not wait for (e.g. writing files)."""
        ...

    def push(self, model: Any, surface: Any, version: int) -> None:
        """While generation is paused: bring every server up to ``version``."""
        ...

    def pushed(self, model: Any, version: int) -> None:
        """Every server holds ``version`` now (verified): keep what a restore needs."""
        ...

    def restore(self, backend: ServerBackend, index: int) -> bool:
        """Bring server ``index`` (restarted) to the last pushed version; False when it
        cannot yet (see ServerBackend)."""
        ...


def sync_weights(
    strategy: Push, model: Any, backend: RolloutBackend, version: int
) -> dict[str, float]:
    """prepare -> pause -> push -> verify -> resume -> set the policy version; returns
    the seconds of each phase. Resuming happens even when push or verify fails."""
    surface = strategy.surface(backend)
    clock = _Clock()
    before, during = strategy.phases
    if surface is not None:
        strategy.prepare(model, version)
        if before is not None:
            clock.lap(before)
        surface.pause_generation()
        clock.lap("pause")
        try:
            strategy.push(model, surface, version)
            clock.lap(during)
            if strategy.verify:
                verify_weights(model, surface, version)
                clock.lap("verify")
            strategy.pushed(model, version)  # before resuming: a server back now needs it
        finally:
            surface.continue_generation()
        clock.lap("resume")
        if isinstance(backend, ServerBackend):
            backend.on_server_back(lambda i: strategy.restore(backend, i))
    backend.set_policy_version(version)
    return clock.seconds


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self._t
        self._t = now


# --------------------------------------------------------------------- verification

VERIFY_ROWS = 16  # rows per probed parameter, for a surface that cannot digest


def server_tensors(model: Any, dtype: str) -> Iterator[tuple[str, Any]]:
    """The learner's parameters as the servers hold them: cast to their dtype."""
    import torch

    want = getattr(torch, dtype, torch.float32)
    return ((n, p.detach().to(want)) for n, p in model.named_parameters())


def verify_weights(model: Any, surface: WeightUpdateSurface, version: int) -> None:
    """Every server holds the learner's weights, cast to the server's dtype: compared
    tensor by tensor by digest where the surface offers digests, else by reading back
    the first rows of three parameters (see :func:`probe_names`). A WeightSyncError
    names what differs."""
    if isinstance(surface, WeightDigests) and _verify_digests(model, surface, surface, version):
        return
    verify_rows(model, surface, version)


def _verify_digests(
    model: Any, surface: WeightUpdateSurface, digests: WeightDigests, version: int
) -> bool:
    """False when the surface cannot predict its layout (then rows are compared)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="grpo-plug-digest")
    asked: list[Future[list[dict[str, str]]]] = []

    def tensors() -> Iterator[tuple[str, Any]]:
        # Asked on first use: the servers hash while the learner does, and a surface
        # that cannot predict (returns None untouched) costs the servers nothing.
        asked.append(pool.submit(digests.weight_digests))
        yield from server_tensors(model, _dtype_of(surface))

    try:
        want = digests.expected_digests(tensors())
        theirs = asked[0].result() if asked else []
    finally:
        pool.shutdown()
    if want is None or any(set(got) != set(want) for got in theirs):
        return False  # a layout it cannot predict (other names): compare rows instead
    for i, got in enumerate(theirs):
        bad = sorted(n for n, d in want.items() if got.get(n) != d)
        if bad:
            more = ", ..." if len(bad) > 3 else ""
            raise WeightSyncError(
                f"weight sync to version {version}: server {i}'s weights are not the "
                f"learner's: {len(bad)} of {len(want)} tensors differ "
                f"({', '.join(bad[:3])}{more}): the update did not take"
            )
    return True


def _dtype_of(surface: WeightUpdateSurface) -> str:
    return surface.weight_dtype if surface.weight_dtype in _DTYPES else "float32"


_DTYPES = ("float32", "bfloat16", "float16")


def verify_rows(model: Any, surface: WeightUpdateSurface, version: int) -> None:
    import torch

    dtype = getattr(torch, _dtype_of(surface))
    params = dict(model.named_parameters())
    for name in probe_names(model, version):
        want = params[name].detach()[:VERIFY_ROWS].to(dtype).float().cpu()
        for i, got in enumerate(surface.read_weights(name, VERIFY_ROWS)):
            got = got[: want.shape[0]]  # SGLang pads the vocabulary rows of embeddings
            if got.shape != want.shape:
                raise WeightSyncError(
                    f"weight sync to version {version}: server {i} returned {name} with shape "
                    f"{tuple(got.shape)}, the learner's is {tuple(want.shape)}"
                )
            if not torch.equal(got, want):
                diff = float((got - want).abs().max())
                raise WeightSyncError(
                    f"weight sync to version {version}: server {i}'s {name} differs from the "
                    f"learner's (max |diff| {diff:.3g}): the update did not take"
                )


def probe_names(model: Any, version: int) -> list[str]:
    """Three parameters, a different three each version: every one is read within a
    few syncs, and the costly embedding not every time (the server converts a whole
    tensor to read its first rows)."""
    names = [n for n, _ in model.named_parameters()]
    picks = {names[(3 * version + k) % len(names)] for k in range(3)} if names else set()
    return [n for n in names if n in picks]


def param_stamps(model: Any) -> tuple[int, ...]:
    """The parameters' version counters: any in-place change (an optimizer step, a
    checkpoint load) bumps one, so equal stamps mean unchanged weights."""
    return tuple(p._version for p in model.parameters())
