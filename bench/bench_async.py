"""Asynchronous training: ``rollout.max_head_offpolicyness`` k = 0, 1, 2 side by side.

    .venv/bin/python bench/bench_async.py --preset cpu --steps 10 --seeds 1,2,3 \
        --sglang-python .venv-sglang/bin/python

Each run is a real ``grpo-plug train --preset cpu`` (SmolLM2-135M, arith) for
``--steps`` steps, then a greedy eval on ``--eval-samples`` held-out problems; no
checkpoints. Per backend (hf; sglang with ``--sglang-python``: one CPU server the
trainer launches) and k: seconds per step (the mean over all steps of the learner's
step time, waits for data included: with k >= 1 the last steps find their batches
ready, so a median would flatter it), the overlap fraction
(share of a step during which generation and learning ran at once), the learner's wait
for data and the producer's wait for weights (seconds per step), the mean version lag,
train reward over the last half of the steps and held-out accuracy after the run, each
the median over ``--seeds`` (the seeds' own values in the last column). Take the figures
on a quiet machine (``uptime``).

A smoke run at a tiny size: ``--steps 2 --seeds 1 --eval-samples 4 --set
train_dataset.batch_size=2 --set gconfig.n_samples=2 --set gconfig.max_new_tokens=8``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from grpo_plug.metrics import names as mn  # noqa: E402

PER_STEP = (
    ("s/step", mn.TIME_STEP),
    ("overlap", mn.ASYNC_OVERLAP),
    ("wait data s", mn.WAIT_FOR_DATA),
    ("wait weights s", mn.WAIT_FOR_WEIGHTS),
    ("lag avg", mn.VERSION_LAG_MEAN),
)
COLUMNS = [label for label, _ in PER_STEP] + ["train reward", "eval acc"]


def run(args: argparse.Namespace, trial: str, overrides: Sequence[str]) -> Path:
    cmd = [sys.executable, "-m", "grpo_plug", "train", "--preset", args.preset, "--no-tui"]
    cmd += [
        f"cluster.fileroot={args.out}",
        "experiment_name=bench_async",
        f"trial_name={trial}",
        f"total_train_steps={args.steps}",
        f"valid_dataset.max_samples={args.eval_samples}",
        "evaluator.eval_before=false",
        "saver.freq_epochs=null",
        "recover.mode=disabled",
        "loggers=[jsonl]",
        *overrides,
        *args.set,
    ]
    env = dict(os.environ)
    paths = (str(ROOT / "python"), env.get("PYTHONPATH"))  # this checkout's grpo_plug
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    with (args.out / f"{trial}.out").open("wb") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise SystemExit(f"run {trial} failed (exit {code}); its output: {args.out}/{trial}.out")
    (path,) = args.out.glob(f"logs/*/bench_async/{trial}/metrics.jsonl")
    return path


def figures(path: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if mn.TIME_STEP in r]
    timed = steps[1:] if len(steps) > 1 else steps  # step 1 pays first-touch costs
    out = {"s/step": statistics.mean(float(r[mn.TIME_STEP]) for r in steps)}
    for label, key in PER_STEP[1:]:
        vals = [float(r[key]) for r in timed if key in r]
        out[label] = statistics.median(vals) if vals else 0.0  # k = 0: no overlap, no lag
    half = steps[len(steps) // 2 :]
    out["train reward"] = statistics.mean(float(r[mn.TASK_REWARD]) for r in half)
    evals = [float(r[mn.EVAL_ACCURACY]) for r in rows if mn.EVAL_ACCURACY in r]
    out["eval acc"] = evals[-1] if evals else float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--ks", default="0,1,2", help="values of rollout.max_head_offpolicyness")
    ap.add_argument("--steps", type=int, default=10, help="training steps per run (>= 2)")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--eval-samples", type=int, default=50)
    ap.add_argument("--sglang-python", default=os.environ.get("GRPO_PLUG_SGLANG_PYTHON"))
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_async"))
    ap.add_argument(
        "--backends", default="hf,sglang", help="which to run (sglang needs --sglang-python)"
    )
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    args = ap.parse_args()
    args.out = args.out.absolute() / time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(os.sched_getaffinity(0))} cores, load average {load:.2f} at start", flush=True)
    wanted = args.backends.split(",")
    backends: dict[str, list[str]] = {"hf": ["rollout.backend=hf"]} if "hf" in wanted else {}
    if args.sglang_python and "sglang" in wanted:
        py = Path(args.sglang_python).absolute()
        backends["sglang"] = ["rollout.backend=sglang", f"sglang.python={py}"]
    if not backends:
        raise SystemExit(f"--backends {args.backends}: nothing to run (sglang: --sglang-python)")
    seeds = [int(s) for s in args.seeds.split(",")]
    lines = [
        f"{args.preset} preset, {args.steps} steps, seeds {seeds} (median over seeds)",
        "| backend | k | " + " | ".join(COLUMNS) + " | s/step per seed |",
        "|---|---|" + "---|" * (len(COLUMNS) + 1),
    ]
    for name, extra in backends.items():
        for k in (int(x) for x in args.ks.split(",")):
            per_seed = []
            for seed in seeds:
                t0 = time.monotonic()
                trial = f"{name}_k{k}_s{seed}"
                overrides = [*extra, f"rollout.max_head_offpolicyness={k}", f"seed={seed}"]
                per_seed.append(figures(run(args, trial, overrides)))
                print(f"  {trial}: {time.monotonic() - t0:.0f}s wall", flush=True)
            med = {c: statistics.median(f[c] for f in per_seed) for c in COLUMNS}
            cells = " | ".join(f"{med[c]:.3g}" for c in COLUMNS)
            each = "/".join(f"{f['s/step']:.2f}" for f in per_seed)
            lines.append(f"| {name} | {k} | {cells} | {each} |")
    print("\n".join(lines))
    (args.out / "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
