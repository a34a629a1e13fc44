"""Rehearse every preset, and every YAML config in the folders given, on this CPU.

    .venv/bin/python bench/rehearse_all.py sglang.python=$PWD/.venv-sglang/bin/python
    .venv/bin/python bench/rehearse_all.py --configs path/to/yamls sglang.python=...

Runs ``grpo-plug train --rehearse`` for each, one after another (one SGLang server at a
time), each under its own ``cluster.fileroot`` in ``--out``, its whole output in
``<out>/<name>.log``. Prints one line per config: the exit code, the wall time, and the
rehearsal's own last line (ok, FAILED with the stages missing, or an error). Exits 1
if any rehearsal failed. Every ``key=value`` argument is passed to each rehearsal.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from grpo_plug.config import preset_names


def targets(folders: list[Path]) -> list[tuple[str, list[str]]]:
    """(name, the source arguments of `grpo-plug train`) for each config."""
    found = [(f"--preset {p}", ["--preset", p]) for p in preset_names()]
    for folder in folders:
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            found.append((str(path), ["--config", str(path)]))
    return found


def rehearse(name: str, source: list[str], out: Path, overrides: list[str]) -> tuple[int, str]:
    slug = name.replace("--preset ", "preset-").replace("/", "_").strip("_")
    root = out / slug
    cmd = [sys.executable, "-m", "grpo_plug", "train", "--rehearse", *source, "--no-tui"]
    cmd += [f"cluster.fileroot={root}", *overrides]
    t0 = time.monotonic()
    log = out / f"{slug}.log"
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    last = lines[-1] if lines else "(no output)"
    minutes = (time.monotonic() - t0) / 60
    return rc, f"{name:<44} rc={rc:<3} {minutes:5.1f} min  {last}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=Path, action="append", default=[], help="YAML folder")
    ap.add_argument("--out", type=Path, default=Path("outputs/rehearse_all"))
    ap.add_argument("--only", action="append", default=[], help="rehearse only this preset")
    ap.add_argument("overrides", nargs="*", help="key=value for every rehearsal")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    todo = targets(args.configs)
    if args.only:
        todo = [(n, src) for n, src in todo if src[0] == "--config" or src[1] in args.only]
    for name, source in todo:
        rc, line = rehearse(name, source, args.out, args.overrides)
        failed += rc != 0
        print(line, flush=True)
    print(f"{failed} of {len(todo)} rehearsals failed; logs in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
