"""Running a rehearsal: the shrunk config as ``grpo-plug train --config``, in a child.

The child is the ordinary command, so the layout is the real one: it starts the SGLang
servers, torchrun's ranks, the sync strategy. It runs in its own session and dies
with this process; a Ctrl-C here is passed on (the first stops it after the step, a
second at once), so the rehearsal stops as a run does. With recover points the
rehearsal runs it twice: the first run gets a Ctrl-C at the end of step 1 (SIGINT
from the step boundary, :func:`grpo_plug.faults.fault_point`, so it never races a fast
step; the trainer's own Ctrl-C handler takes it), then the same command again must
resume at step 1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

from grpo_plug import launch
from grpo_plug.config import TrainConfig, dump_yaml
from grpo_plug.metrics.events import EVENTS_FILE, METRICS_FILE
from grpo_plug.plan import run_dirs
from grpo_plug.rehearsal import checklist, model
from grpo_plug.rehearsal.shrink import DIR_NAME, STEPS, Shrunk, gpu_only, shrink, target_layout

Say = Callable[[str], None]


def prepare(cfg: TrainConfig, devices_strategy: str, *, build: bool = True) -> Shrunk:
    """The rehearsal's config; ``devices_strategy``: what ``weight_sync.strategy=auto``
    picks for servers with GPUs of their own; ``build``: write the shaped model (not on
    a dry run)."""
    root = Path(cfg.cluster.fileroot)
    root = root if root.name == DIR_NAME else root / DIR_NAME
    folder = root / "model" / cfg.actor.path.replace("/", "--").replace(":", "-")
    path, why = model.choose(cfg.actor.path, folder, build=build, seed=cfg.seed)
    return shrink(cfg, model=path, model_why=why, devices_strategy=devices_strategy)


def config_file(shrunk: Shrunk) -> Path:
    cfg = shrunk.cfg
    return Path(cfg.cluster.fileroot) / f"{cfg.experiment_name}-{cfg.trial_name}.yaml"


def write_config(shrunk: Shrunk, label: str) -> Path:
    path = config_file(shrunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"# written by `grpo-plug train --rehearse` for {label}; the changes:\n"
    notes = "".join(f"#   {' '.join(c.line().splitlines())}\n" for c in shrunk.changes)
    path.write_text(head + notes + dump_yaml(shrunk.cfg))
    return path


def fresh_start(shrunk: Shrunk) -> None:
    """Remove the last rehearsal of this run (never a real run's folders: they are
    outside the rehearsal's root)."""
    for folder in run_dirs(shrunk.cfg):
        if DIR_NAME in folder.parts:
            shutil.rmtree(folder, ignore_errors=True)


# The planned Ctrl-C: SIGINT to rank 0's trainer as it ends step 1.
STOP_AFTER_STEP_1 = {
    "GRPO_PLUG_FAULT_AT": "between_steps:1",
    "GRPO_PLUG_FAULT_SIGNAL": "INT",
    "GRPO_PLUG_FAULT_RANK": "0",
}


class Child:
    """``argv`` in its own session, dying with this process; signals passed on."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.interrupts = 0  # Ctrl-C (or SIGTERM) from the person, passed on
        self.proc = subprocess.Popen(
            list(argv),
            env=env,
            start_new_session=True,  # only what this process passes on reaches it
            preexec_fn=launch.die_with_parent if sys.platform == "linux" else None,
        )

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.interrupts += 1
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        sigs = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self.on_signal) for s in sigs}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def run_leg(argv: Sequence[str], events: Path, *, stop: bool) -> tuple[checklist.Leg, int]:
    """One run of the trainer; ``stop``: with the planned Ctrl-C after step 1.
    (the leg, Ctrl-Cs from the person)."""
    offset = events.stat().st_size if events.exists() else 0
    env = {k: v for k, v in os.environ.items() if k not in STOP_AFTER_STEP_1}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, even on a machine with a GPU
    if stop:
        env.update(STOP_AFTER_STEP_1)
    start = time.monotonic()
    child = Child(argv, env)
    with child.signals():
        child.proc.wait()  # a signal's handler runs, then the wait goes on (PEP 475)
    leg = checklist.Leg(
        child.proc.returncode,
        checklist.read_events(events, offset),
        time.monotonic() - start,
        planned_stop=stop,
    )
    return leg, child.interrupts


def child_argv(path: Path, debug: bool) -> list[str]:
    argv = [sys.executable, *launch.entry_argv(), "train", "--config", str(path), "--no-tui"]
    return argv + (["--debug"] if debug else [])


def describe(shrunk: Shrunk, original: TrainConfig, label: str, auto: Mapping[str, str]) -> str:
    """One line: what the rehearsal keeps; ``auto``: the strategy
    ``weight_sync.strategy=auto`` picks per layout."""
    cfg = shrunk.cfg
    sync = cfg.weight_sync.strategy
    if sync == "auto":
        sync = f"auto ({auto.get(target_layout(original), '?')})"
    legs = " (Ctrl-C after step 1, then resume)" if shrunk.legs > 1 else ""
    return (
        f"dress rehearsal of {label}: allocation {cfg.allocation_mode}, rollout "
        f"{cfg.rollout.backend}, weight sync {sync}, task {cfg.train_dataset.task}, "
        f"{STEPS} steps in {shrunk.legs} run(s){legs}"
    )


def cuts(shrunk: Shrunk, original: TrainConfig) -> list[str]:
    """Each setting shrunk (old -> new), and what only a GPU exercises."""
    lines = [f"shrunk to fit this CPU ({len(shrunk.changes)} settings, old -> new):"]
    lines += [f"  {c.line()}" for c in shrunk.changes]
    gpu = gpu_only(original)
    lines.append("only a GPU exercises:" if gpu else "only a GPU exercises: nothing (a CPU config)")
    return lines + [f"  {g}" for g in gpu]


def rehearse(
    cfg: TrainConfig,
    *,
    label: str,
    auto: Mapping[str, str],
    say: Say,
    dry_run: bool = False,
    debug: bool = False,
) -> int:
    """Rehearse ``cfg``; the exit code: 0 when every scheduled stage ran, 130 when the
    person stopped it, else 1. ``auto``: layout -> the strategy ``auto`` picks there."""
    try:
        shrunk = prepare(cfg, auto.get("devices", "distributed"), build=not dry_run)
        say(describe(shrunk, cfg, label, auto))
        if dry_run:
            plan = launch.plan(shrunk.cfg, ["--config", str(config_file(shrunk))])
            for line in [*cuts(shrunk, cfg), "the rehearsal would start:", launch.describe(plan)]:
                say(line)
            return 0
        return _run(shrunk, cfg, label, say, debug)
    except KeyboardInterrupt:  # outside a run (building the model, between runs)
        say(f"rehearsal {label}: stopped by Ctrl-C")
        return 130


def _run(shrunk: Shrunk, cfg: TrainConfig, label: str, say: Say, debug: bool) -> int:
    """The run (twice with recover points), then the cuts and the checklist."""
    fresh_start(shrunk)
    path = write_config(shrunk, label)
    events = run_dirs(shrunk.cfg)[1] / EVENTS_FILE
    argv = child_argv(path, debug)
    say(f"{len(shrunk.changes)} settings shrunk (listed at the end and in {path})")
    legs: list[checklist.Leg] = []
    stopped = False
    start = time.monotonic()
    for n in range(shrunk.legs):
        stop = n == 0 and shrunk.legs > 1
        what = "the run, stopped by a Ctrl-C after step 1" if stop else "the run"
        if n > 0:
            what = "the same command again, which must resume at step 1"
        say(f"rehearsal: {what}\n$ {' '.join(argv)}")
        leg, interrupts = run_leg(argv, events, stop=stop)
        legs.append(leg)
        if interrupts or leg.rc != 0:
            stopped = interrupts > 0
            break
    for line in cuts(shrunk, cfg):
        say(line)
    return report(shrunk, legs, label, time.monotonic() - start, say, stopped=stopped)


def report(
    shrunk: Shrunk,
    legs: Sequence[checklist.Leg],
    label: str,
    seconds: float,
    say: Say,
    *,
    stopped: bool = False,
) -> int:
    """The checklist, one line per stage, and a last line saying whether it passed."""
    metrics = checklist.read_events(run_dirs(shrunk.cfg)[1] / METRICS_FILE)
    rows = checklist.stages(shrunk, legs, metrics)
    say(f"rehearsal checklist ({len(legs)} run(s), {seconds / 60:.1f} min):")
    for row in rows:
        say(row.line())
    missing = [r.name for r in rows if not r.ok]
    ran = sum(r.ran for r in rows)
    if stopped:
        say(f"rehearsal {label}: stopped by Ctrl-C after {seconds / 60:.1f} min")
        return 130
    if missing:
        say(f"rehearsal {label}: FAILED ({', '.join(missing)} did not run)")
        return 1
    say(f"rehearsal {label}: ok, {ran} stages ran in {seconds / 60:.1f} min")
    return 0
