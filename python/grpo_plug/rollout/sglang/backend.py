"""The ``sglang`` rollout backend: SGLang servers over HTTP, launched or attached.

Each request goes to the server with the fewest requests in flight. The backend is
also the weight-update surface the strategies drive on every server: pause, load from
disk (types.WeightUpdateSurface) or join a broadcast (types.DistributedUpdateSurface),
hash every weight (types.WeightDigests), continue; and it brings a server that comes
back to the synced weights through the strategy's restore (types.ServerBackend).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from grpo_plug.config import TrainConfig
from grpo_plug.errors import RequestFailed
from grpo_plug.metrics import names as mn
from grpo_plug.plan import resolve as resolve_plan
from grpo_plug.rollout.sglang import digests
from grpo_plug.rollout.sglang import servers as srv
from grpo_plug.rollout.sglang.client import (
    ServerClient,
    disk_update_body,
    distributed_update_body,
    generate_body,
    init_group_body,
)
from grpo_plug.rollout.sglang.health import HealthPolicy, ServerMonitor
from grpo_plug.rollout.sglang.specs import launch_device, server_dtype, server_specs
from grpo_plug.types import (
    DistributedUpdateSurface,
    GenerationRequest,
    RolloutContext,
    Sample,
    ServerBackend,
    TensorMeta,
    WeightDigests,
)

WAIT_POLL_S = 0.5  # how often a request waiting for a server to come back looks again


class SGLangBackend(ServerBackend, DistributedUpdateSurface, WeightDigests):
    name = "sglang"
    colocated = False
    in_process = False

    def __init__(
        self,
        addrs: Sequence[str],
        stop_ids: Sequence[int],
        *,
        dtype: str = "bfloat16",
        device: str = "cpu",
        tp: int = 1,
        seeded: bool = False,
        launched: Sequence[srv.Server] = (),
        health: HealthPolicy | None = None,
        message: Callable[[str], None] | None = None,
    ) -> None:
        if not addrs:
            raise ValueError("rollout.backend=sglang needs at least one server")
        self.clients = [ServerClient(a) for a in addrs]
        self.stop_ids = list(stop_ids)
        self._dtype = dtype
        self.device = device  # where the servers run: nccl or gloo for a broadcast
        self.tp = tp  # tensor-parallel workers per server
        self.seeded = seeded
        by_addr = {s.spec.addr: s for s in launched}
        # servers[i] runs clients[i] (None: attached); restarts replace entries.
        self.servers: list[srv.Server | None] = [by_addr.get(a) for a in addrs]
        self.version = 0
        # From the weight-sync strategy: brings server i to the last synced weights.
        self._restore: Callable[[int], bool] | None = None
        # Held from pause_generation to continue_generation: a sync and a returning
        # server's resync never interleave, so no server serves between two versions.
        self.update_lock = threading.RLock()
        self.missed: set[int] = set()  # servers an update skipped (down at the time)
        self._ranks: dict[int, int] = {}  # server index -> TP ranks (asked once per start)
        self._groups: dict[str, list[int]] = {}  # process group -> its member servers
        self._paused = 0  # pause_generation calls not yet continued
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counted: dict[str, float] = {}
        self.monitor: ServerMonitor | None = None
        if health is not None:
            self.monitor = ServerMonitor(
                self.clients, self.servers, health, bring_up=self._bring_up, message=message
            )
            self.monitor.start()

    @property
    def launched(self) -> list[srv.Server]:
        return [s for s in self.servers if s is not None]

    # ------------------------------------------------------------------ generation

    def pick(self) -> int:
        """Of the servers up: least requests in flight, then least served overall."""
        up = self.monitor.up() if self.monitor else range(len(self.clients))
        return min(up, key=lambda i: (self.clients[i].in_flight, self.clients[i].requests))

    async def _available(self) -> int:
        """A server that is up; waits while others restart, fails once none can."""
        while True:
            if self.monitor is not None and self.monitor.fatal is not None:
                raise RequestFailed(self.monitor.fatal, retryable=False)
            if self.monitor is None or self.monitor.up():
                return self.pick()
            await asyncio.sleep(WAIT_POLL_S)

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        self._loop = asyncio.get_running_loop()
        out = []
        for req in requests:
            body = generate_body(req, self.stop_ids, seeded=self.seeded)
            i = await self._available()
            try:
                out.append(await self.clients[i].generate(body, req, self.version))
            except RequestFailed as e:
                if e.retryable and self.monitor is not None:
                    self.monitor.suspect(i)  # checked now; the controller retries elsewhere
                raise
        return out

    def _bring_up(self, index: int, restarted: bool) -> None:
        """Server ``index`` answers again: bring it to the current weights (a restarted
        one starts from the model path, i.e. version 0), then route to it; a server
        the strategy cannot restore yet waits, out of rotation (see ServerBackend)."""
        assert self.monitor is not None
        with self.update_lock:
            if restarted:
                self._ranks.pop(index, None)
                self.missed.add(index)
            if index in self.missed:
                if self._restore is not None:
                    if not self._restore(index):
                        self.monitor.state[index] = "waiting"
                        return
                elif self.version != 0 or not restarted:
                    raise RuntimeError(
                        f"no weight-sync strategy can bring it to version {self.version}"
                    )
            self.missed.discard(index)
            self.monitor.state[index] = "up"

    def _retry_waiting(self) -> None:
        """After a push: a waiting server can be restored now."""
        if self.monitor is None:
            return
        for i, state in enumerate(self.monitor.state):
            if state == "waiting":
                try:
                    self._bring_up(i, False)
                except Exception as e:
                    self.monitor.fail(i, f"is back, but could not get the current weights: {e}")

    # ------------------------------------------------------------------ ServerBackend

    def server_addrs(self) -> list[str]:
        return [c.addr for c in self.clients]

    def on_server_back(self, restore: Callable[[int], bool]) -> None:
        self._restore = restore

    def load_server_weights(self, index: int, path: str, version: int) -> None:
        """One (restarted) server only: the others already hold ``version``."""
        self.clients[index].post_ok("/update_weights_from_disk", disk_update_body(path, version))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        raise NotImplementedError("the sglang backend is driven by the rollout controller")

    def set_policy_version(self, version: int) -> None:
        self.version = version

    def stats(self) -> dict[str, float]:
        """Counters since the last call: requests per server, restarts, failed checks."""
        totals = {mn.server_requests(i): float(c.requests) for i, c in enumerate(self.clients)}
        if self.monitor is not None:
            totals[mn.SERVER_RESTARTS] = float(self.monitor.restarts)
            totals[mn.HEALTH_FAILURES] = float(self.monitor.health_failures)
        out = {k: v - self._counted.get(k, 0.0) for k, v in totals.items()}
        self._counted = totals
        if self.monitor is not None:
            out[mn.SERVERS_UP] = float(len(self.monitor.up()))
        return out

    def server_states(self) -> dict[str, str]:
        """addr -> up / suspect / restarting / waiting / failed (all up unmonitored)."""
        states = self.monitor.state if self.monitor else ["up"] * len(self.clients)
        return {c.addr: st for c, st in zip(self.clients, states, strict=True)}

    # ------------------------------------------------------------------ update surface

    @property
    def weight_dtype(self) -> str:
        return self._dtype

    def _each(self, fn: Callable[[ServerClient], Any]) -> list[Any]:
        """``fn`` on every server that is up. One that is down, or fails in transport and
        can be restarted, is skipped and marked: it is resynced before it serves again."""
        out = []
        for i, c in enumerate(self.clients):
            if self.monitor is not None and self.monitor.state[i] != "up":
                self.missed.add(i)
                continue
            try:
                out.append(fn(c))
            except RequestFailed as e:
                if not (e.retryable and self.monitor and self.monitor.can_restart(i)):
                    raise
                self.missed.add(i)
                self.monitor.suspect(i)
        return out

    def _members(self, servers: Sequence[int], fn: Callable[[int, ServerClient], Any]) -> None:
        """``fn`` on each of ``servers`` at once: distributed calls block until every rank
        joins, so none can be skipped; one failing in transport is suspected (the next
        sync forms a group without it) and the failure raised."""
        with ThreadPoolExecutor(max(1, len(servers)), thread_name_prefix="sglang-ctl") as pool:
            futures = {i: pool.submit(fn, i, self.clients[i]) for i in servers}
            for i, f in futures.items():
                e = f.exception()
                if isinstance(e, RequestFailed) and e.retryable and self.monitor is not None:
                    self.monitor.suspect(i)
            for f in futures.values():
                f.result()

    def pause_generation(self) -> None:
        self.update_lock.acquire()  # released by continue_generation
        self._paused += 1
        try:
            # abort mode: in-flight requests return `abort`; the controller resubmits them.
            self._each(lambda c: c.call("POST", "/pause_generation", {"mode": "abort"}))
        except BaseException:
            self._resume_lock()
            raise

    def continue_generation(self) -> None:
        try:
            self._each(lambda c: c.call("POST", "/continue_generation", {}))
            self._retry_waiting()
        finally:
            self._resume_lock()

    def _resume_lock(self) -> None:
        if self._paused:  # a continue without a pause (e.g. a user's) holds nothing
            self._paused -= 1
            self.update_lock.release()

    def update_weights_from_disk(self, path: str, version: int) -> None:
        body = disk_update_body(path, version)
        self._each(lambda c: c.post_ok("/update_weights_from_disk", body))

    # distributed update (types.DistributedUpdateSurface)

    @property
    def comm_backend(self) -> str:
        return "nccl" if self.device == "cuda" else "gloo"

    def server_ranks(self) -> dict[int, int]:
        """Process-group ranks each server up takes: one per tensor-parallel worker."""
        up = self.monitor.up() if self.monitor else range(len(self.clients))
        for i in up:
            if i not in self._ranks:
                info = self.clients[i].call("GET", "/server_info")
                self._ranks[i] = int(info.get("tp_size", 1))
        return {i: self._ranks[i] for i in up}

    def init_weights_update_group(
        self,
        group: str,
        master_address: str,
        master_port: int,
        rank_offsets: Mapping[int, int],
        world_size: int,
    ) -> None:
        """Blocks until the learner joins the group as rank 0: call it from a thread."""
        self._groups[group] = sorted(rank_offsets)

        def join(i: int, c: ServerClient) -> None:
            body = init_group_body(
                master_address, master_port, rank_offsets[i], world_size, group, self.comm_backend
            )
            c.post_ok("/init_weights_update_group", body)

        self._members(self._groups[group], join)

    def begin_weight_update(self, group: str) -> None:
        self._members(self._groups[group], lambda i, c: c.post_ok("/begin_weight_update", {}))

    def update_weights_from_distributed(
        self, group: str, tensors: Sequence[TensorMeta], version: int, *, last: bool
    ) -> None:
        """Blocks until every tensor of the bucket is broadcast: call it from a thread."""
        body = distributed_update_body(tensors, group, version, last=last)
        body["load_format"] = "flattened_bucket"
        path = "/update_weights_from_distributed"
        self._members(self._groups[group], lambda i, c: c.post_ok(path, body))

    def end_weight_update(self, group: str) -> None:
        self._members(self._groups[group], lambda i, c: c.post_ok("/end_weight_update", {}))

    def destroy_weights_update_group(self, group: str) -> None:
        body = {"group_name": group}
        for i in self._groups.pop(group, []):
            with contextlib.suppress(RequestFailed):  # e.g. restarted: it never knew it
                self.clients[i].post_ok("/destroy_weights_update_group", body, timeout=30.0)

    # digests (types.WeightDigests)

    def weight_digests(self) -> list[dict[str, str]]:
        body = {"action": "checksum"}
        return self._each(
            lambda c: digests.parse_checksums(c.call("POST", "/weights_checker", body), c.addr)
        )

    def expected_digests(self, named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, str] | None:
        if not digests.predictable(self.device, self._dtype, self.tp):
            return None
        return digests.expected(named)

    def flush_cache(self) -> None:
        self._each(lambda c: c.call("GET", "/flush_cache"))

    def abort_all(self) -> None:
        self._each(lambda c: c.call("POST", "/abort_request", {"rid": "", "abort_all": True}))

    def release_memory(self, tags: Sequence[str]) -> None:
        self._each(lambda c: c.call("POST", "/release_memory_occupation", {"tags": list(tags)}))

    def weight_versions(self) -> list[str]:
        """Each server's weight version, from ``/model_info``."""
        return self._each(lambda c: str(c.call("GET", "/model_info")["weight_version"]))

    def read_weights(self, name: str, rows: int) -> list[torch.Tensor]:
        body = {"name": name, "truncate_size": rows}
        return self._each(
            lambda c: torch.tensor(
                c.call("POST", "/get_weights_by_name", body), dtype=torch.float32
            )
        )

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()  # before the servers stop, or it would restart them
        loop = self._loop
        if loop is not None and loop.is_running():
            for c in self.clients:
                asyncio.run_coroutine_threadsafe(c.aclose(), loop).result(timeout=10)
        srv.stop_all(self.launched)
        self.servers = [None] * len(self.servers)


def make_sglang_backend(cfg: TrainConfig, ctx: RolloutContext) -> SGLangBackend:
    """SGLang servers over HTTP: launched from allocation_mode, or rollout.server_addrs."""
    from grpo_plug.models import resolve_model_path

    tok = ctx.tokenizer
    alloc = resolve_plan(cfg).allocation
    stop_ids = sorted({i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None})
    if cfg.rollout.server_addrs:
        addrs, launched = list(cfg.rollout.server_addrs), []
    else:
        specs = server_specs(cfg, resolve_model_path(cfg.actor.path), Path(ctx.log_dir))
        srv.install_cleanup()
        start = time.monotonic()
        launched = srv.start(specs, cfg.sglang.startup_timeout, progress=ctx.message)
        if ctx.message is not None:
            ctx.message(
                f"{len(launched)} SGLang server(s) healthy after {time.monotonic() - start:.0f}s: "
                + ", ".join(f"{s.spec.addr} (pid {s.pid}, log {s.spec.log_path})" for s in launched)
            )
        addrs = [s.spec.addr for s in launched]
    return SGLangBackend(
        addrs,
        stop_ids,
        dtype=server_dtype(cfg),
        device=launch_device(cfg),
        tp=alloc.gen_tp if alloc else 1,
        seeded=cfg.sglang.deterministic,
        launched=launched,
        health=health_policy(cfg),
        message=ctx.message,
    )


def health_policy(cfg: TrainConfig) -> HealthPolicy:
    sg = cfg.sglang
    return HealthPolicy(
        interval=sg.health_interval,
        timeout=sg.health_timeout,
        max_restarts=sg.max_restarts,
        backoff=sg.restart_backoff,
        startup_timeout=sg.startup_timeout,
    )
