"""Is the cpu preset reproducible, and is a resumed run the run that would have happened?

    .venv/bin/python bench/compare_runs.py [--steps 3] [--seed 1] [--kill-after 1]
        [--root /tmp/grpo-compare] [key=value ...]

Runs `grpo-plug train --preset cpu` three times with one seed, each in its own
fileroot: A and B straight through, C SIGKILLed (the whole process group, no chance to
save) once the recover point of step --kill-after is written and step --kill-after + 1
has started, then the same command again, which resumes. Every run gets
``recover.freq_steps=1`` (recover points change nothing a step computes) and the
overrides given (e.g. ``valid_dataset.max_samples=8`` for a short held-out eval).

Then compares, step by step, the rows of A's metrics.jsonl with B's and with C's
(timings and memory left out: they differ between any two runs), and the final
weights (the last recover point's model.safetensors, tensor by tensor). Prints one line
per step and per comparison; exits 0 when everything is equal bit for bit, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VOLATILE = ("timestamp", "timeperf/", "perf/", "grpo_actor/gen_tokens_per_s")


def command(root: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "grpo_plug",
        "train",
        "--preset",
        "cpu",
        "--no-tui",
        f"seed={args.seed}",
        f"total_train_steps={args.steps}",
        f"cluster.fileroot={root}",
        "recover.freq_steps=1",
        *args.overrides,
    ]


def run(root: Path, args: argparse.Namespace) -> None:
    log = root / "train.log"
    root.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        rc = subprocess.run(command(root, args), stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"{root}: grpo-plug train exited with {rc}; see {log}")


def events(root: Path) -> list[dict[str, Any]]:
    found = list((root / "logs").rglob("events.jsonl"))
    if not found:
        return []
    out = []
    for line in found[0].read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # the line being written
    return out


def run_and_kill(root: Path, args: argparse.Namespace) -> None:
    """Start the run, SIGKILL its process group inside step kill_after + 1, resume it."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / "train.log").open("a") as fh:
        proc = subprocess.Popen(
            command(root, args), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        k = args.kill_after
        while proc.poll() is None:
            evs = events(root)
            saved = any(
                e["kind"] == "checkpoint" and e.get("what") == "recover" and e.get("step") == k
                for e in evs
            )
            started = any(e["kind"] == "stage" and e.get("step") == k + 1 for e in evs)
            if saved and started:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                print(f"C: killed during step {k + 1} (recover point at step {k})")
                break
            time.sleep(0.05)
        else:
            sys.exit(f"C ended (exit {proc.returncode}) before step {k + 1}: use a later --steps")
    run(root, args)  # the same command: it resumes from step k


def rows(root: Path) -> dict[int, dict[str, Any]]:
    """Step -> its metric rows merged (a step has its training row and maybe an eval's),
    volatile keys left out."""
    (path,) = list((root / "logs").rglob("metrics.jsonl"))
    out: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        kept = {k: v for k, v in row.items() if not k.startswith(VOLATILE)}
        out.setdefault(int(row["global_step"]), {}).update(kept)
    return out


def weights(root: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    (path,) = list((root / "checkpoints").rglob("recover_checkpoint/model.safetensors"))
    return load_file(str(path))


def compare(name: str, a: Path, b: Path) -> bool:
    ra, rb = rows(a), rows(b)
    same = True
    for step in sorted(set(ra) | set(rb)):
        x, y = ra.get(step, {}), rb.get(step, {})
        diff = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
        if diff:
            same = False
            shown = ", ".join(f"{k} {x.get(k)!r} vs {y.get(k)!r}" for k in diff[:3])
            print(f"{name} step {step}: differs in {len(diff)} keys: {shown}")
        else:
            print(f"{name} step {step}: equal ({len(x)} metrics)")
    wa, wb = weights(a), weights(b)
    bad = sorted(
        n
        for n in set(wa) | set(wb)
        if n not in wa or n not in wb or wa[n].tobytes() != wb[n].tobytes()
    )
    if bad:
        same = False
        print(
            f"{name} final weights: {len(bad)} of {len(wa)} tensors differ ({', '.join(bad[:3])})"
        )
    else:
        print(f"{name} final weights: equal bit for bit ({len(wa)} tensors)")
    return same


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kill-after", type=int, default=1, help="the recover point resumed from")
    p.add_argument("--root", type=Path, default=Path("/tmp/grpo-compare"))
    p.add_argument("overrides", nargs="*", help="key=value for all three runs")
    args = p.parse_args()
    if not 1 <= args.kill_after < args.steps:
        sys.exit("--kill-after must be at least 1 and below --steps")
    if args.root.exists() and any(args.root.iterdir()):
        sys.exit(f"{args.root} is not empty: pass a fresh --root")
    a, b, c = (args.root / x for x in ("A", "B", "C"))
    t0 = time.time()
    run(a, args)
    print(f"A: {args.steps} steps ({time.time() - t0:.0f}s)")
    run(b, args)
    print("B: the same command again")
    run_and_kill(c, args)
    print("C: resumed to the end")
    ok = compare("A vs B", a, b) & compare("A vs C (killed, resumed)", a, c)
    print("identical" if ok else "NOT identical")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
