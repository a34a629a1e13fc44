"""The SGLang servers a run starts, from ``allocation_mode`` and the ``sglang.*`` keys:
one spec per generation replica, with its device, dtype, launch flags, port, log and,
on CPU, its share of the run's thread plan. ``--dry-run`` prints these very specs.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from grpo_plug import threads
from grpo_plug.config import TrainConfig
from grpo_plug.errors import ServerError
from grpo_plug.plan import resolve as resolve_plan
from grpo_plug.rollout.sglang import servers as srv

CPU_MAX_TOTAL_TOKENS = 16384  # KV pool of a CPU server unless sglang.max_total_tokens says


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
    alloc = resolve_plan(cfg).allocation
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
    elif device == "cpu":
        # From mem_fraction_static a CPU server takes most of the RAM for its KV pool
        # (14.5 GB here) and the kernel's OOM killer ends it under a training run.
        args += ["--max-total-tokens", str(CPU_MAX_TOTAL_TOKENS)]
    if sg.deterministic:
        if device == "cpu":
            # SGLang 0.5.23 refuses it for its CPU attention backend (intel_amx), and
            # without it sampling_seed is ignored: measured, not assumed.
            raise ServerError(
                "sglang.deterministic=true needs a GPU server: SGLang's CPU attention "
                "backend has no deterministic mode, and without it per-request seeds "
                "are ignored; set sglang.deterministic=false on CPU"
            )
        args.append("--enable-deterministic-inference")
    if device == "cpu":
        # An idle scheduler spins a core without it; warmup only costs start time here.
        args += ["--sleep-on-idle", "--skip-server-warmup"]
    return (*args, *(a for extra in sg.extra_args for a in shlex.split(extra)))


def server_specs(
    cfg: TrainConfig,
    model_path: str,
    log_dir: Path,
    pick_port: Callable[[], int] = srv.free_port,
    device: str | None = None,
) -> list[srv.ServerSpec]:
    """One spec per generation data-parallel replica of ``allocation_mode``; the very
    specs ``--dry-run`` prints (with ``pick_port`` giving 0: "picked at launch")."""
    alloc = resolve_plan(cfg).allocation
    n = alloc.gen_dp if alloc else 1
    tp = alloc.gen_tp if alloc else 1
    device = device or launch_device(cfg)
    python = cfg.sglang.python or sys.executable
    plan = cpu_thread_plan(cfg, n * tp) if device == "cpu" else None
    specs = []
    for i in range(n):
        port = pick_port()
        gpus = tuple(range(i * tp, (i + 1) * tp)) if device == "cuda" else ()
        # A tensor-parallel server's workers share its pin and thread count.
        workers = range(i * tp, (i + 1) * tp)
        pin = tuple(c for k in workers for c in plan.server_pin(k)) if plan else ()
        specs.append(
            srv.ServerSpec(
                python=python,
                model_path=model_path,
                port=port,
                log_path=log_dir / f"sglang_server{i}.log",
                device=device,
                gpu_ids=gpus,
                args=launch_args(cfg, i, device),
                thread_env=tuple(plan.server_env(i * tp).items()) if plan else (),
                cpus=pin,
            )
        )
    return specs


def cpu_thread_plan(cfg: TrainConfig, workers: int) -> threads.ThreadPlan:
    """The run's thread plan, made for ``workers`` CPU server processes (a plan made
    before the device was known may have counted them on a GPU)."""
    plan = threads.plan_for(cfg)
    if plan.servers != workers:
        lay = dataclasses.replace(threads.layout(cfg, gpu=False), servers=workers)
        plan = threads.plan_threads(lay, cpu_threads=cfg.cluster.cpu_threads)
    return plan
