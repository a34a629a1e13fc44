"""``distributed``: the servers join a process group with the learner as rank 0 and
receive the weights by broadcast (NCCL between GPUs, gloo on CPU).

Once: ``/init_weights_update_group`` on every server (from a thread: it blocks until
the learner joins), then the learner joins as rank 0 and hosts the TCP store. Per
sync: pause -> ``/begin_weight_update`` -> per bucket, ``/update_weights_from_distributed``
from a thread and then one broadcast of the flattened bucket -> ``/end_weight_update``
-> verify -> resume. A server that refuses a request (SGLang 0.5.23 answers 400 to an
update outside a begin/end session *before* receiving anything) is noticed while the
learner broadcasts, so a learner broadcasting to no one cannot hang the run.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from datetime import timedelta
from functools import partial
from typing import Any

import torch

from grpo_plug.config import TrainConfig
from grpo_plug.errors import RequestFailed, WeightSyncError
from grpo_plug.rollout.sglang.client import distributed_update_body, init_group_body
from grpo_plug.rollout.sglang.servers import free_port
from grpo_plug.types import DistributedUpdateSurface, RolloutBackend
from grpo_plug.weight_sync import distributed_surface
from grpo_plug.weight_sync.disk import DTYPES, verify_weights

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


def bucket_body(bucket: Named, group: str, version: int, *, last: bool) -> dict[str, Any]:
    named = [(n, str(t.dtype).removeprefix("torch."), list(t.shape)) for n, t in bucket]
    body = distributed_update_body(named, group, version, last=last)
    body["load_format"] = "flattened_bucket"
    return body


def join_group(master: str, port: int, world: int, group: str, backend: str) -> Any:
    """Join ``group`` as rank 0, hosting its TCP store. The store keys mirror SGLang's
    side (a store prefixed with the group name), which builds its group the same way."""
    # Private torch API, as in SGLang's own helper: a group with no default group.
    from torch.distributed import distributed_c10d as c10d

    c: Any = c10d
    timeout = timedelta(seconds=GROUP_TIMEOUT_S)
    store, rank, _ = next(c.rendezvous(f"tcp://{master}:{port}", 0, world, timeout=timeout))
    store.set_timeout(timeout)
    prefixed = c.PrefixStore(group, store)
    pg, _ = c._new_process_group_helper(
        world, rank, [], backend, prefixed, group_name=group, timeout=timeout
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
    import socket

    return "127.0.0.1" if local else socket.gethostname()


class DistributedSync:
    name = "distributed"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.group: str | None = None
        self.pg: Any = None
        self.surface: DistributedUpdateSurface | None = None
        self.broken = False
        self.seconds: dict[str, float] = {}  # phase -> seconds of the last sync

    @property
    def comm_backend(self) -> str:
        from grpo_plug.rollout.sglang.backend import launch_device

        return "nccl" if launch_device(self.cfg) == "cuda" else "gloo"

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> None:
        surface = distributed_surface(backend, self.name)
        t0 = time.perf_counter()
        if self.broken:
            self.leave()
        if self.pg is None:
            self.open(surface, [c.addr for c in getattr(backend, "clients", [])])
        t1 = time.perf_counter()
        surface.pause_generation()
        try:
            self.push(model, surface, version)
            t2 = time.perf_counter()
            if self.cfg.weight_sync.verify:
                verify_weights(model, surface, version)
        finally:
            surface.continue_generation()
        t3 = time.perf_counter()
        backend.set_policy_version(version)
        if hasattr(backend, "resync"):
            backend.resync = self.resync_server
        self.seconds = {"open": t1 - t0, "push": t2 - t1, "verify": t3 - t2}

    def open(self, surface: DistributedUpdateSurface, addrs: Sequence[str]) -> None:
        """Every server joins a fresh group; the learner joins last, as rank 0."""
        ranks = surface.ranks_per_server()
        world = 1 + sum(ranks)
        offsets = [1 + sum(ranks[:i]) for i in range(len(ranks))]
        master, port = master_address(self.cfg, addrs), free_port()
        group = f"grpo-plug-{os.getpid()}-{next(_GROUP_IDS)}"
        bodies = [
            init_group_body(master, port, off, world, group, self.comm_backend) for off in offsets
        ]
        self.group, self.surface, self.broken = group, surface, False
        self.pg = self._together(
            lambda: surface.init_weights_update_group(bodies),
            lambda: join_group(master, port, world, group, self.comm_backend),
            f"weight_sync.strategy=distributed: joining process group {group} at "
            f"{master}:{port} ({world} ranks, {self.comm_backend})",
        )

    def push(self, model: Any, surface: DistributedUpdateSurface, version: int) -> None:
        assert self.group is not None
        dtype = DTYPES.get(surface.weight_dtype, torch.float32)
        limit = max(1, int(self.cfg.weight_sync.bucket_mb * 2**20))
        device = "cuda" if self.comm_backend == "nccl" else "cpu"
        surface.begin_weight_update()
        ok = False
        try:
            chunks = list(buckets(model, dtype, limit))
            for i, chunk in enumerate(chunks):
                body = bucket_body(chunk, self.group, version, last=i == len(chunks) - 1)
                flat = flatten(chunk, device)
                self._together(
                    partial(surface.update_weights_from_distributed, body),
                    partial(broadcast, self.pg, flat),
                    f"weight sync to version {version}, bucket {i + 1}/{len(chunks)}",
                )
            ok = True
        finally:
            try:
                surface.end_weight_update()
            except RequestFailed:
                if ok:  # else the first error is the one to report
                    raise

    def resync_server(self, index: int) -> None:
        """A restarted server would need a new group of every server and the weights of
        the last sync, which the learner may be changing by then: not supported yet."""
        raise WeightSyncError(
            f"server {index} was restarted; weight_sync.strategy=distributed cannot bring "
            "one server back to the current weights yet (use weight_sync.strategy=disk)"
        )

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

    def leave(self) -> None:
        """Leave the group on both sides; errors are ignored (a server may be gone)."""
        if self.group is not None and self.surface is not None:
            with contextlib.suppress(RequestFailed):
                self.surface.destroy_weights_update_group(self.group)
        if self.pg is not None:
            with contextlib.suppress(Exception):
                torch.distributed.destroy_process_group(self.pg)
        self.pg = self.group = self.surface = None
        self.broken = False
