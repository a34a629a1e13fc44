"""Time and disk cost of one recover save (and load) for the embedded model.

    .venv/bin/python bench/bench_recover.py

Builds the cpu preset's trainer (SmolLM2-135M, AdamW), takes one real training step so
the optimizer has state, then writes the recover point three times and loads it once.
Prints the median save time, the load time and the size on disk.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from grpo_plug import config as cfgmod
from grpo_plug.learner import state as learner_state
from grpo_plug.recovery import store as ckpt
from grpo_plug.trainer import Trainer


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-recover-"))
    cfg = cfgmod.load(
        preset="cpu",
        overrides=[
            f"cluster.fileroot={root}",
            "recover.mode=disabled",
            "loggers=jsonl",
            "evaluator.eval_before=false",
            "valid_dataset.max_samples=1",
        ],
    )
    tr = Trainer(cfg)
    tr.step([tr.train_data[i] for i in range(cfg.train_dataset.batch_size)], 0)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        tr.save_recover(0)
        times.append(time.perf_counter() - t0)
    path = tr.ckpt_dir / ckpt.RECOVER_DIR
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    t0 = time.perf_counter()
    ckpt.verify_dir(path)
    lr = tr.learner
    learner_state.load_recover(path, model=lr.model, optimizer=lr.optimizer, scheduler=lr.scheduler)
    load = time.perf_counter() - t0
    files = {p.name: p.stat().st_size / 2**20 for p in sorted(path.iterdir())}
    print(
        f"recover save: median {statistics.median(times):.2f} s of {[round(t, 2) for t in times]}"
    )
    print(f"recover load (verify + restore): {load:.2f} s")
    print(
        f"size on disk: {size / 2**30:.2f} GiB  "
        + ", ".join(f"{k} {v:.1f} MiB" for k, v in files.items())
    )
    tr.close()


if __name__ == "__main__":
    main()
