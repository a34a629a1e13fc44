"""Seconds per weight sync, disk vs distributed, against a real SGLang server.

    .venv/bin/python bench/bench_weight_sync.py --model embedded:smollm2-135m
    .venv/bin/python bench/bench_weight_sync.py --model DIR --addr 127.0.0.1:PORT
    .venv/bin/python bench/bench_weight_sync.py --model embedded:smollm2-135m --verify rows

Without ``--addr`` it launches one CPU server on the model (minutes on 2 cores) and
stops it by PID at the end. Each sync perturbs the weights first, so every push moves
real data; the verify phase is included, as in training: ``digests`` (every tensor
hashed on both sides, the default where the server layout is predictable), ``rows``
(the first 16 rows of three tensors read back, the fallback) or ``off``. Prints the
median seconds of each phase too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from grpo_plug import config as cfgmod
from grpo_plug.models import load_model, resolve_model_path
from grpo_plug.rollout.sglang import servers as srv
from grpo_plug.rollout.sglang.backend import SGLangBackend
from grpo_plug.rollout.sglang.specs import server_specs
from grpo_plug.weight_sync.disk import DiskSync
from grpo_plug.weight_sync.distributed import DistributedSync


def launch(cfg: cfgmod.TrainConfig, model_dir: str, logs: Path) -> srv.Server:
    (server,) = srv.start(server_specs(cfg, model_dir, logs), timeout=900, progress=print)
    return server


class RowsOnly(SGLangBackend):
    """The backend with digests declined: verification reads rows back."""

    def expected_digests(self, named: Any) -> None:
        return None


def timed(
    strategy: Any, model: Any, backend: SGLangBackend, first: int, n: int
) -> tuple[list[float], dict[str, list[float]]]:
    out, phases = [], defaultdict(list)
    for v in range(first, first + n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p), alpha=1e-3)
        t0 = time.perf_counter()
        for phase, secs in (strategy.sync(model, backend, v) or {}).items():
            phases[phase].append(secs)
        out.append(time.perf_counter() - t0)
    return out, phases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model dir or embedded:NAME")
    ap.add_argument("--addr", help="a running server on that model (else one is launched)")
    ap.add_argument("--python", default=".venv-sglang/bin/python", help="SGLang's interpreter")
    ap.add_argument("--syncs", type=int, default=5)
    ap.add_argument("--verify", choices=("digests", "rows", "off"), default="digests")
    args = ap.parse_args()
    model_dir = resolve_model_path(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    cfg = cfgmod.load(
        overrides=[
            f"weight_sync.disk_dir={tmp / 'w'}",
            "rollout.backend=sglang",
            f"sglang.python={Path(args.python).absolute()}",
            "sglang.device=cpu",
            "sglang.dtype=float32",
            "sglang.max_total_tokens=4096",
            "sglang.mem_fraction_static=0.1",
            f"weight_sync.verify={str(args.verify != 'off').lower()}",
        ]
    )
    server = None if args.addr else launch(cfg, model_dir, tmp)
    addr = args.addr or (server.spec.addr if server else "")
    backend = (RowsOnly if args.verify == "rows" else SGLangBackend)([addr], [], dtype="float32")
    model = load_model(model_dir, dtype="float32", device="cpu")
    mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    try:
        disk = DiskSync(cfg)
        dist = DistributedSync(cfg)
        results = {}
        for name, strategy, first in (("disk", disk, 1000), ("distributed", dist, 2000)):
            try:
                results[name] = timed(strategy, model, backend, first, args.syncs)
            finally:
                strategy.close()
        print(f"verify={args.verify}")
        for name, (secs, phases) in results.items():
            each = "  ".join(f"{p} {statistics.median(s):.3f}" for p, s in phases.items())
            print(
                f"{name:12s} {mib:7.1f} MiB  median {statistics.median(secs):.3f}s  "
                f"min {min(secs):.3f}s  max {max(secs):.3f}s  ({len(secs)} syncs)  [{each}]"
            )
    finally:
        if server is not None:
            srv.stop_all([server])


if __name__ == "__main__":
    main()
