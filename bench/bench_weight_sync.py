"""Seconds per weight sync, disk vs distributed, against a real SGLang server.

    .venv/bin/python bench/bench_weight_sync.py --model embedded:smollm2-135m
    .venv/bin/python bench/bench_weight_sync.py --model DIR --addr 127.0.0.1:PORT

Without ``--addr`` it launches one CPU server on the model (minutes on 2 cores) and
stops it by PID at the end. Each sync perturbs the weights first, so every push moves
real data; the verify phase (reading probes back) is included, as in training.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from grpo_plug import config as cfgmod
from grpo_plug.models import load_model, resolve_model_path
from grpo_plug.rollout.sglang import servers as srv
from grpo_plug.rollout.sglang.backend import SGLangBackend, server_specs
from grpo_plug.weight_sync.disk import DiskSync
from grpo_plug.weight_sync.distributed import DistributedSync


def launch(cfg: cfgmod.TrainConfig, model_dir: str, logs: Path) -> srv.Server:
    (server,) = srv.start(server_specs(cfg, model_dir, logs), timeout=900, progress=print)
    return server


def timed(strategy: Any, model: Any, backend: SGLangBackend, first: int, n: int) -> list[float]:
    out = []
    for v in range(first, first + n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=1e-3)
        t0 = time.perf_counter()
        strategy.sync(model, backend, v)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model dir or embedded:NAME")
    ap.add_argument("--addr", help="a running server on that model (else one is launched)")
    ap.add_argument("--python", default=".venv-sglang/bin/python", help="SGLang's interpreter")
    ap.add_argument("--syncs", type=int, default=5)
    args = ap.parse_args()
    model_dir = resolve_model_path(args.model)
    cfg = cfgmod.load(
        overrides=[
            "rollout.backend=sglang",
            f"sglang.python={Path(args.python).absolute()}",
            "sglang.device=cpu",
            "sglang.dtype=float32",
            "sglang.max_total_tokens=4096",
            "sglang.mem_fraction_static=0.1",
        ]
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    server = None if args.addr else launch(cfg, model_dir, tmp)
    addr = args.addr or (server.spec.addr if server else "")
    backend = SGLangBackend([addr], [], dtype="float32")
    model = load_model(model_dir, dtype="float32", device="cpu")
    mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    try:
        disk = DiskSync(cfgmod.load(overrides=[f"weight_sync.disk_dir={tmp / 'w'}"]))
        dist = DistributedSync(cfg)
        results = {}
        for name, strategy, first in (("disk", disk, 1000), ("distributed", dist, 2000)):
            try:
                secs = timed(strategy, model, backend, first, args.syncs)
            finally:
                strategy.close()
            results[name] = secs
        for name, secs in results.items():
            print(
                f"{name:12s} {mib:7.1f} MiB  median {statistics.median(secs):.3f}s  "
                f"min {min(secs):.3f}s  max {max(secs):.3f}s  ({len(secs)} syncs)"
            )
    finally:
        if server is not None:
            srv.stop_all([server])


if __name__ == "__main__":
    main()
