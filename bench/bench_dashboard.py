"""What the live dashboard costs a training step: with it vs without, side by side.

    .venv/bin/python bench/bench_dashboard.py [--pairs 4] [--steps 5]

One trainer (a small random Llama built from a config, the cpu preset's loop) takes
blocks of steps alternately without and with the dashboard drawing into a real
terminal-sized console (100x30, written to /dev/null) at its normal refresh rate.
Prints the median step time of each and their ratio (goal: within 1%).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from rich.console import Console

from grpo_plug import config as cfgmod
from grpo_plug.metrics.dashboard import Dashboard
from grpo_plug.testing import build_tiny_model
from grpo_plug.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4, help="off/on block pairs")
    ap.add_argument("--steps", type=int, default=5, help="steps per block")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    model = build_tiny_model(root / "model", hidden=256, layers=4)
    cfg = cfgmod.load(
        preset="cpu",
        overrides=[
            f"actor.path={model}",
            f"cluster.fileroot={root / 'out'}",
            "recover.mode=disabled",
            "loggers=jsonl",
            "evaluator.eval_before=false",
            "gconfig.max_new_tokens=32",
        ],
    )
    tr = Trainer(cfg, quiet=True)
    tr.announce()
    sink = open(os.devnull, "w")  # noqa: SIM115 (closed at the end of main)
    console = Console(file=sink, force_terminal=True, width=100, height=30)
    times: dict[bool, list[float]] = {False: [], True: []}
    bs = cfg.train_dataset.batch_size
    tr.step(tr.train_data[:bs], 0)  # warm-up
    for pair in range(args.pairs):
        for on in (False, True):
            screen = Dashboard(tr.log_dir, console=console) if on else nullcontext()
            with screen:
                for _ in range(args.steps):
                    i = (tr.global_step * bs) % (len(tr.train_data) - bs)
                    t0 = time.perf_counter()
                    metrics = tr.step(tr.train_data[i : i + bs], 0)
                    tr.log(metrics, 0)
                    times[on].append(time.perf_counter() - t0)
        print(f"pair {pair + 1}/{args.pairs} done", file=sys.stderr)
    tr.close()
    sink.close()
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(f"step time without dashboard: median {off:.3f} s over {len(times[False])} steps")
    print(f"step time with dashboard:    median {on:.3f} s over {len(times[True])} steps")
    print(f"ratio with/without: {on / off:.4f} ({100 * (on / off - 1):+.2f}%)")


if __name__ == "__main__":
    main()
