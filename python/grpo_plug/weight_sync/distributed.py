"""``distributed``: the servers join a process group with the learner as rank 0 and
receive the weights by broadcast (NCCL between GPUs, gloo on CPU).

The servers up join a group (from a thread: it blocks until the learner joins), then
the learner joins as rank 0 and hosts the TCP store; the group is formed afresh
whenever the servers up change (one died, or came back). The push, inside
weight_sync.sync_weights's pause and verify: ``/begin_weight_update`` -> per bucket,
``/update_weights_from_distributed`` from a thread and then one broadcast of the
flattened bucket -> ``/end_weight_update``. The backend builds the request bodies.
A server that refuses a request (SGLang 0.5.23 answers 400 to an update outside a
begin/end session *before* receiving anything) is noticed while the learner
broadcasts, so a learner broadcasting to no one cannot hang the run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from datetime import timedelta
from functools import partial
from typing import Any

import torch

from grpo_plug.config import TrainConfig
from grpo_plug.errors import RequestFailed, WeightSyncError
from grpo_plug.types import (
    DistributedUpdateSurface,
    RolloutBackend,
    ServerBackend,
    TensorMeta,
)
from grpo_plug.weight_sync import param_stamps, sync_weights, update_surface
from grpo_plug.weight_sync.disk import Versions

GROUP_TIMEOUT_S = 600.0  # a join or broadcast the servers never take part in fails then
_GROUP_IDS = itertools.count()

Named = list[tuple[str, torch.Tensor]]


def buckets(model: Any, dtype: torch.dtype, limit: int) -> Iterator[Named]:
    """Parameters in ``named_parameters`` order, cast to the server's dtype, grouped into
    buckets of at most ``limit`` bytes (a larger parameter goes alone)."""
    bucket: Named = []
    size = 0
    for name, p in model.named_parameters():
        t = p.detach().to(dtype=dtype).contiguous()
        nbytes = t.numel() * t.element_size()
        if bucket and size + nbytes > limit:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, t))
        size += nbytes
    if bucket:
        yield bucket


def flatten(bucket: Named, device: str) -> torch.Tensor:
    """One uint8 tensor: the layout SGLang's ``flattened_bucket`` receiver rebuilds from
    names, dtypes and shapes (tensors back to back, in order)."""
    return torch.cat([t.reshape(-1).view(torch.uint8) for _, t in bucket]).to(device)


def metas(bucket: Named) -> list[TensorMeta]:
    return [(n, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for n, t in bucket]


def join_group(master: str, listener: socket.socket, world: int, group: str, backend: str) -> Any:
    """Join ``group`` as rank 0, hosting its TCP store on ``listener`` (see
    :func:`listen_on`). The store keys mirror SGLang's side (a store prefixed with the
    group name), which builds its group the same way."""
    # Private torch API, as in SGLang's own helper: a group with no default group.
    from torch.distributed import distributed_c10d as c10d

    c: Any = c10d
    dist_any: Any = torch.distributed  # TCPStore: not in its typed exports
    timeout = timedelta(seconds=GROUP_TIMEOUT_S)
    port = int(listener.getsockname()[1])
    # The store takes the socket over (it closes the fd): Python lets go of it first.
    store = dist_any.TCPStore(
        master,
        port,
        world,
        True,
        timeout,
        wait_for_workers=True,
        master_listen_fd=listener.detach(),
    )
    prefixed = c.PrefixStore(group, store)
    pg, _ = c._new_process_group_helper(
        world, 0, [], backend, prefixed, group_name=group, timeout=timeout
    )
    return pg


def broadcast(pg: Any, tensor: torch.Tensor) -> None:
    opts = torch.distributed.BroadcastOptions()
    opts.rootRank = 0
    pg.broadcast([tensor], opts).wait()


def in_thread(fn: Callable[[], Any], role: str) -> Future[Any]:
    """``fn`` in a daemon thread: one stuck in a collective must not block the exit."""
    fut: Future[Any] = Future()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as e:
            fut.set_exception(e)

    threading.Thread(target=run, name=f"grpo-plug-sync-{role}", daemon=True).start()
    return fut


def master_address(cfg: TrainConfig, addrs: Sequence[str]) -> str:
    if cfg.weight_sync.master_address:
        return cfg.weight_sync.master_address
    local = all(a.rsplit(":", 1)[0] in ("127.0.0.1", "localhost") for a in addrs)
    return "127.0.0.1" if local else socket.gethostname()


def listen_on(master: str) -> socket.socket:
    """A socket listening on a free port of the master address only, for the group's
    store: the servers reach it there, and no other interface of this machine (a TCP
    store takes no token) exposes it. The port cannot be taken by anyone before the
    store serves, as it is bound from now on."""
    family, kind, proto, _, addr = socket.getaddrinfo(master, 0, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(addr)
        sock.listen(64)
    except OSError as e:
        sock.close()
        raise WeightSyncError(
            f"weight_sync.master_address={master}: cannot listen there ({e}); set it to an "
            "address of this machine that the servers can reach"
        ) from None
    return sock


class DistributedSync:
    """Restoring a restarted server: it cannot join the running group (the group's
    ranks are fixed when formed), so it loads the last pushed version from disk,
    written from the learner's weights if they still are that version (parameter
    version counters unchanged since the push); the next sync forms a fresh group with
    every server up. If the learner has moved on (it is training), the server waits
    out of rotation until the next push."""

    name = "distributed"
    phases: tuple[str | None, str] = (None, "push")

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.verify = cfg.weight_sync.verify
        self.group: str | None = None
        self.pg: Any = None
        self.surface_: DistributedUpdateSurface | None = None
        self.members: dict[int, int] = {}  # server index -> ranks, as the group was formed
        self.broken = False
        self.versions = Versions(cfg)  # disk copies for restores only
        self.model: Any = None
        self.held: tuple[int, tuple[int, ...]] | None = None  # pushed version, its stamps

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> Mapping[str, float]:
        return sync_weights(self, model, backend, version)

    def surface(self, backend: RolloutBackend) -> DistributedUpdateSurface:
        surface = update_surface(backend, self.name)
        if not isinstance(surface, DistributedUpdateSurface):
            raise WeightSyncError(
                f"weight_sync.strategy=distributed: {backend.name!r} does not offer "
                "grpo_plug.api.DistributedUpdateSurface (use weight_sync.strategy=disk)"
            )
        return surface

    def prepare(self, model: Any, version: int) -> None:
        pass

    def push(self, model: Any, surface: DistributedUpdateSurface, version: int) -> None:
        members = surface.server_ranks()  # after the pause: a dead server is known by now
        if self.broken or members != self.members or surface is not self.surface_:
            self.leave()
            if not members:
                return  # every server is away: each is restored when it comes back
            self.open(surface, members)
        assert self.group is not None
        dtype = getattr(torch, surface.weight_dtype, torch.float32)
        limit = max(1, int(self.cfg.weight_sync.bucket_mb * 2**20))
        device = "cuda" if surface.comm_backend == "nccl" else "cpu"
        group = self.group
        surface.begin_weight_update(group)
        ok = False
        try:
            chunks = list(buckets(model, dtype, limit))
            for i, chunk in enumerate(chunks):
                last = i == len(chunks) - 1
                flat = flatten(chunk, device)
                self._together(
                    partial(
                        surface.update_weights_from_distributed,
                        group,
                        metas(chunk),
                        version,
                        last=last,
                    ),
                    partial(broadcast, self.pg, flat),
                    f"weight sync to version {version}, bucket {i + 1}/{len(chunks)}",
                )
            ok = True
        finally:
            try:
                surface.end_weight_update(group)
            except RequestFailed:
                if ok:  # else the first error is the one to report
                    raise

    def open(self, surface: DistributedUpdateSurface, members: dict[int, int]) -> None:
        """The servers up join a fresh group; the learner joins last, as rank 0."""
        world = 1 + sum(members.values())
        offsets, next_rank = {}, 1
        for i, ranks in sorted(members.items()):
            offsets[i], next_rank = next_rank, next_rank + ranks
        addrs = surface.server_addrs() if isinstance(surface, ServerBackend) else []
        master = master_address(self.cfg, addrs)
        listener = listen_on(master)
        port = int(listener.getsockname()[1])
        group = f"grpo-plug-{os.getpid()}-{next(_GROUP_IDS)}"
        comm = surface.comm_backend
        self.group, self.surface_, self.members, self.broken = group, surface, members, False
        self.pg = self._together(
            lambda: surface.init_weights_update_group(group, master, port, offsets, world),
            lambda: join_group(master, listener, world, group, comm),
            f"weight_sync.strategy=distributed: joining process group {group} at "
            f"{master}:{port} ({world} ranks, {comm})",
        )

    def pushed(self, model: Any, version: int) -> None:
        self.model, self.held = model, (version, param_stamps(model))
        self.versions.keep(None)  # a copy of an older version is no use any more

    def restore(self, backend: ServerBackend, index: int) -> bool:
        """See the class docstring: from a disk copy of the last pushed version."""
        if self.held is None:
            raise WeightSyncError("no synced version to restore")
        self.broken = True  # the group no longer spans the servers: formed afresh next sync
        version, stamps = self.held
        path = self.versions.saved.get(version)
        if path is None:
            if param_stamps(self.model) != stamps:
                return False  # training has moved on: the next push brings it
            path = self.versions.save(self.model, version)
            if param_stamps(self.model) != stamps:  # changed while being written
                self.versions.keep(None)
                return False
        backend.load_server_weights(index, str(path), version)
        return True

    def _together(self, request: Callable[[], None], local: Callable[[], Any], what: str) -> Any:
        """Run the servers' blocking ``request`` and the learner's part of the collective
        at once; the first failure of either ends the wait. A server that refuses
        answers at once, and the learner, still broadcasting to no one, is then left
        behind in its thread (until GROUP_TIMEOUT_S) instead of hanging the run."""
        answer, mine = in_thread(request, "http"), in_thread(local, "comm")
        done, pending = wait([answer, mine], GROUP_TIMEOUT_S, return_when=FIRST_EXCEPTION)
        failed = [f for f in (answer, mine) if f in done and f.exception() is not None]
        if failed or pending:
            self.broken = True  # the group's state is unknown now: rebuilt on the next sync
            cause = failed[0].exception() if failed else f"no answer within {GROUP_TIMEOUT_S:g}s"
            side = "the server" if failed and failed[0] is answer else "the learner"
            raise WeightSyncError(f"{what}: {side if failed else 'timeout'}: {cause}")
        return mine.result()

    def close(self) -> None:
        self.leave()
        self.versions.close()

    def leave(self) -> None:
        """Leave the group on both sides; errors are ignored (a server may be gone)."""
        if self.group is not None and self.surface_ is not None:
            with contextlib.suppress(RequestFailed):
                self.surface_.destroy_weights_update_group(self.group)
        if self.pg is not None:
            with contextlib.suppress(Exception):
                torch.distributed.destroy_process_group(self.pg)
        self.pg = self.group = self.surface_ = None
        self.members, self.broken = {}, False
