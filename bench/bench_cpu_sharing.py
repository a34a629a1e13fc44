"""Runs that share a CPU: seconds per step alone vs beside a second run, and hf vs sglang.

    .venv/bin/python bench/bench_cpu_sharing.py --repeats 3 --steps 4 \
        --sglang-python .venv-sglang/bin/python

Both sides in one run, each a real ``grpo-plug train --preset cpu`` (SmolLM2-135M,
arith), a few steps, an 8-problem eval, no checkpoints:
  (a) ``pair``: one run alone, then two started together; seconds per step of each;
  (b) ``backends``: ``rollout.backend=hf`` vs ``sglang`` (one CPU server the trainer
      launches, as in the README), seconds per step and its phases (rollout, train,
      sync, verify), rollout tokens/s.
Step 1 (first-touch costs) is left out; a run's figure is the median of its other
steps, the table's the median over ``--repeats``. Take the figures on a quiet machine
(``uptime``): other processes on the cores are what (a) is about.

Before/after: ``--env GOMP_SPINCOUNT=300000`` gives every run OpenMP's spinning default
back (a wait policy the user sets wins over the thread plan's), and
``--set cluster.adapt_threads=false`` keeps every run at the plan's thread count.
``--set KEY=VALUE`` adds config overrides, e.g. a smaller smoke run:
``--steps 2 --repeats 1 --set train_dataset.batch_size=2 --set gconfig.n_samples=2``.
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

PHASES = (
    ("s/step", mn.TIME_STEP),
    ("rollout", mn.TIME_ROLLOUT),
    ("train", mn.TIME_TRAIN),
    ("sync", mn.TIME_WEIGHT_SYNC),
    ("verify", mn.weight_sync_phase("verify")),
    ("gen tok/s", mn.GEN_TOKENS_PER_S),
    ("threads", mn.CPU_THREADS),  # cluster.adapt_threads' choice
)


def base_overrides(out: Path, steps: int) -> list[str]:
    return [
        f"cluster.fileroot={out}",
        f"total_train_steps={steps}",
        "valid_dataset.max_samples=8",
        "evaluator.eval_before=false",
        "saver.freq_epochs=null",
        "recover.mode=disabled",
        "loggers=[jsonl]",
    ]


Proc = subprocess.Popen[bytes]


def start(trial: str, overrides: Sequence[str], args: argparse.Namespace) -> Proc:
    cmd = [sys.executable, "-m", "grpo_plug", "train", "--preset", "cpu", "--no-tui"]
    cmd += [*base_overrides(args.out, args.steps), "experiment_name=bench_cpu_sharing"]
    cmd += [f"trial_name={trial}", *overrides, *args.set]
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    paths = (str(ROOT / "python"), env.get("PYTHONPATH"))  # this checkout's grpo_plug
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    log = (args.out / f"{trial}.out").open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def finish(procs: Sequence[Proc], out: Path) -> None:
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a run failed (exit {p.returncode}); its output is in {out}/*.out")


def metrics(out: Path, trial: str) -> list[dict[str, float]]:
    """The training-step rows of run ``trial``, step 1 left out when there are more."""
    (path,) = out.glob(f"logs/*/bench_cpu_sharing/{trial}/metrics.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    steps = [r for r in rows if mn.TIME_STEP in r]
    return steps[1:] if len(steps) > 1 else steps


def medians(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    out = {}
    for label, key in PHASES:
        vals = [float(r[key]) for r in rows if key in r]
        if vals:
            out[label] = statistics.median(vals)
    return out


def over_repeats(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    labels = {k for r in runs for k in r}
    return {k: statistics.median(r[k] for r in runs if k in r) for k in labels}


def pair(args: argparse.Namespace) -> list[str]:
    runs: dict[str, list[dict[str, float]]] = {"alone": [], "two at once: run a": []}
    runs["two at once: run b"] = []
    for r in range(args.repeats):
        finish([start(f"solo{r}", [], args)], args.out)
        runs["alone"].append(medians(metrics(args.out, f"solo{r}")))
        finish([start(f"pair{r}_{k}", [], args) for k in "ab"], args.out)
        for k in "ab":
            runs[f"two at once: run {k}"].append(medians(metrics(args.out, f"pair{r}_{k}")))
    solo = statistics.median(m["s/step"] for m in runs["alone"])
    lines = [
        "(a) one cpu-preset run alone vs two at once (median over steps 2.. and repeats)",
        "| case | s/step | x alone | torch threads |",
        "|---|---|---|---|",
    ]
    for case, ms in runs.items():
        m = over_repeats(ms)
        lines.append(
            f"| {case} | {m['s/step']:.2f} | {m['s/step'] / solo:.2f} | {cell(m, 'threads')} |"
        )
    per = {case: fmt([m["s/step"] for m in ms]) for case, ms in runs.items()}
    return [*lines, f"s/step per repeat: {per}"]


def backends(args: argparse.Namespace) -> list[str]:
    if not args.sglang_python:
        return ["(b) skipped: set --sglang-python (or GRPO_PLUG_SGLANG_PYTHON)"]
    runs: dict[str, list[dict[str, float]]] = {"hf": [], "sglang": []}
    sglang = ["rollout.backend=sglang", f"sglang.python={Path(args.sglang_python).absolute()}"]
    for r in range(args.repeats):
        for name, extra in (("hf", []), ("sglang", sglang)):
            t0 = time.monotonic()
            finish([start(f"{name}{r}", extra, args)], args.out)
            runs[name].append(medians(metrics(args.out, f"{name}{r}")))
            print(f"  {name} repeat {r}: {time.monotonic() - t0:.0f}s wall", flush=True)
    hf, sg = over_repeats(runs["hf"]), over_repeats(runs["sglang"])
    labels = [label for label, _ in PHASES]
    lines = [
        "(b) rollout.backend hf vs sglang (seconds, median over steps 2.. and repeats)",
        "| backend | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
    ]
    for name, m in (("hf", hf), ("sglang", sg)):
        lines.append(f"| {name} | " + " | ".join(cell(m, k) for k in labels) + " |")
    # hf syncs in place (~0 s): no ratio for what one side hardly spends.
    ratio = {k: sg[k] / hf[k] for k in labels if k in sg and k in hf and hf[k] >= 0.01}
    lines.append("| sglang / hf | " + " | ".join(cell(ratio, k) for k in labels) + " |")
    return lines


def cell(m: dict[str, float], k: str) -> str:
    return f"{m[k]:.2f}" if k in m else "-"


def fmt(vals: Sequence[float]) -> str:
    return "/".join(f"{v:.2f}" for v in vals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="training steps per run (>= 2)")
    ap.add_argument("--parts", default="pair,backends", help="pair, backends or both")
    ap.add_argument("--sglang-python", default=os.environ.get("GRPO_PLUG_SGLANG_PYTHON"))
    ap.add_argument("--out", type=Path, default=Path("outputs/bench_cpu_sharing"))
    ap.add_argument("--set", action="append", default=[], help="config override KEY=VALUE")
    ap.add_argument("--env", action="append", default=[], help="env KEY=VALUE for every run")
    args = ap.parse_args()
    args.out = args.out.absolute() / time.strftime("%Y%m%d-%H%M%S")  # fresh runs each time
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{len(os.sched_getaffinity(0))} cores, load average {load:.2f} at start", flush=True)
    lines: list[str] = []
    parts = args.parts.split(",")
    if "pair" in parts:
        lines += pair(args)
    if "backends" in parts:
        lines += ["", *backends(args)]
    print("\n".join(lines))
    (args.out / "table.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
