"""The ``sglang`` rollout backend: SGLang servers over HTTP, launched or attached.

Each request goes to the server with the fewest requests in flight. The backend is
also the weight-update surface (types.WeightUpdateSurface) the ``disk`` strategy
drives: pause, load from disk, read weights back, continue, on every server.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from grpo_plug.config import TrainConfig, parse_allocation
from grpo_plug.rollout.sglang import servers as srv
from grpo_plug.rollout.sglang.client import ServerClient, disk_update_body, generate_body
from grpo_plug.types import GenerationRequest, RolloutContext, Sample


class SGLangBackend:
    name = "sglang"
    colocated = False
    in_process = False

    def __init__(
        self,
        addrs: Sequence[str],
        stop_ids: Sequence[int],
        *,
        dtype: str = "bfloat16",
        seeded: bool = False,
        launched: Sequence[srv.Server] = (),
    ) -> None:
        if not addrs:
            raise ValueError("rollout.backend=sglang needs at least one server")
        self.clients = [ServerClient(a) for a in addrs]
        self.stop_ids = list(stop_ids)
        self._dtype = dtype
        self.seeded = seeded
        self.launched = list(launched)
        self.version = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counted = [0] * len(self.clients)

    # ------------------------------------------------------------------ generation

    def pick(self) -> ServerClient:
        """Least requests in flight; ties go to the one that served least overall."""
        return min(self.clients, key=lambda c: (c.in_flight, c.requests))

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        self._loop = asyncio.get_running_loop()
        out = []
        for req in requests:
            body = generate_body(req, self.stop_ids, seeded=self.seeded)
            out.append(await self.pick().generate(body, req, self.version))
        return out

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Sample]]:
        raise NotImplementedError("the sglang backend is driven by the rollout controller")

    def set_policy_version(self, version: int) -> None:
        self.version = version

    def stats(self) -> dict[str, float]:
        out = {}
        for i, c in enumerate(self.clients):
            out[f"rollout/server{i}/requests"] = float(c.requests - self._counted[i])
            self._counted[i] = c.requests
        return out

    # ------------------------------------------------------------------ update surface

    @property
    def weight_dtype(self) -> str:
        return self._dtype

    def _each(self, fn: Callable[[ServerClient], Any]) -> list[Any]:
        return [fn(c) for c in self.clients]

    def pause_generation(self) -> None:
        # abort mode: in-flight requests return `abort` and the controller resubmits them.
        self._each(lambda c: c.call("POST", "/pause_generation", {"mode": "abort"}))

    def continue_generation(self) -> None:
        self._each(lambda c: c.call("POST", "/continue_generation", {}))

    def update_weights_from_disk(self, path: str, version: int) -> None:
        body = disk_update_body(path, version)
        self._each(lambda c: c.post_ok("/update_weights_from_disk", body))

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
        loop = self._loop
        if loop is not None and loop.is_running():
            for c in self.clients:
                asyncio.run_coroutine_threadsafe(c.aclose(), loop).result(timeout=10)
        srv.stop_all(self.launched)
        self.launched = []


def server_dtype(cfg: TrainConfig) -> str:
    """What the servers hold their weights in (``auto``: float32 on CPU, like the
    learner, bfloat16 on GPU)."""
    if cfg.sglang.dtype != "auto":
        return cfg.sglang.dtype
    return "float32" if launch_device(cfg) == "cpu" else "bfloat16"


def launch_device(cfg: TrainConfig) -> str:
    if cfg.sglang.device != "auto":
        return cfg.sglang.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def launch_args(cfg: TrainConfig, index: int, device: str) -> tuple[str, ...]:
    """launch_server flags from the ``sglang.*`` keys for server ``index``."""
    sg = cfg.sglang
    alloc = parse_allocation(cfg.allocation_mode)
    args = [
        *("--dtype", server_dtype(cfg)),
        *("--mem-fraction-static", str(sg.mem_fraction_static)),
        *("--random-seed", str(sg.random_seed + index)),
        *("--tp-size", str(alloc.gen_tp if alloc else 1)),
        "--skip-tokenizer-init",  # we send token ids and decode ourselves
    ]
    if sg.context_length is not None:
        args += ["--context-length", str(sg.context_length)]
    if sg.max_total_tokens is not None:
        args += ["--max-total-tokens", str(sg.max_total_tokens)]
    if sg.deterministic:
        args.append("--enable-deterministic-inference")
    if device == "cpu":
        # An idle scheduler spins a core without it; warmup only costs start time here.
        args += ["--sleep-on-idle", "--skip-server-warmup"]
    return (*args, *(a for extra in sg.extra_args for a in shlex.split(extra)))


def server_specs(cfg: TrainConfig, model_path: str, log_dir: Path) -> list[srv.ServerSpec]:
    """One spec per generation data-parallel replica of ``allocation_mode``."""
    alloc = parse_allocation(cfg.allocation_mode)
    n = alloc.gen_dp if alloc else 1
    tp = alloc.gen_tp if alloc else 1
    device = launch_device(cfg)
    python = cfg.sglang.python or sys.executable
    specs = []
    for i in range(n):
        port = srv.free_port()
        gpus = tuple(range(i * tp, (i + 1) * tp)) if device == "cuda" else ()
        specs.append(
            srv.ServerSpec(
                python=python,
                model_path=model_path,
                port=port,
                log_path=log_dir / f"sglang_server{i}.log",
                device=device,
                gpu_ids=gpus,
                args=launch_args(cfg, i, device),
            )
        )
    return specs


def make_sglang_backend(cfg: TrainConfig, ctx: RolloutContext) -> SGLangBackend:
    """SGLang servers over HTTP: launched from allocation_mode, or rollout.server_addrs."""
    from grpo_plug.models import resolve_model_path

    tok = ctx.tokenizer
    stop_ids = sorted({i for i in (tok.eos_token_id, tok.pad_token_id) if i is not None})
    if cfg.rollout.server_addrs:
        addrs, launched = list(cfg.rollout.server_addrs), []
    else:
        specs = server_specs(cfg, resolve_model_path(cfg.actor.path), Path(ctx.log_dir))
        srv.install_cleanup()
        launched = [srv.launch(s) for s in specs]
        start = time.monotonic()
        try:
            srv.wait_healthy(launched, cfg.sglang.startup_timeout, progress=ctx.message)
        except BaseException:
            srv.stop_all(launched)
            raise
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
        seeded=cfg.sglang.deterministic,
        launched=launched,
    )
