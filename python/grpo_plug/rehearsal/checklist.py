"""The rehearsal's checklist, read from the runs' event streams (``events.jsonl``).

Each stage the config schedules must show up in the events of the legs that ran: the
servers' start (the launcher's message), the evals, the steps, the weight syncs, the
HF saves, the recover points, the planned Ctrl-C and the resume, the watchdog, and a
clean end. A stage's time runs from its ``stage`` event to the next event that closes
it (another stage, the step's sample, the health row, a checkpoint, the end).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_plug.metrics import names as mn
from grpo_plug.rehearsal.shrink import STEPS, Shrunk

Event = dict[str, Any]
SERVERS_UP = re.compile(r"(\d+) SGLang server\(s\) healthy after (\d+)s")
INITIAL_SYNC = re.compile(r"weight sync of version (\d+) to \S+: ([\d.]+)s")
WATCHDOG = "exactly 0 for"
_CLOSES = {"stage", "sample", "health", "checkpoint", "end", "run"}


@dataclass
class Leg:
    """One run of the trainer: its exit code, its events, its wall time."""

    rc: int
    events: list[Event] = field(default_factory=list)
    seconds: float = 0.0
    planned_stop: bool = False  # the rehearsal sent its Ctrl-C during this leg


@dataclass(frozen=True)
class Stage:
    name: str
    expected: bool  # the config schedules it
    ran: bool
    detail: str
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.ran or not self.expected

    def line(self) -> str:
        mark = "ok" if self.ran else ("MISSING" if self.expected else "-")
        secs = f"{self.seconds:6.1f}s" if self.seconds is not None else ""
        return f"  {mark:<7}  {self.name:<12} {secs:>7}  {self.detail}"


def read_events(path: Path, offset: int = 0) -> list[Event]:
    """The events after byte ``offset`` (a torn last line is skipped)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            raw = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.decode(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            out.append(row)
    return out


def timed(
    events: Sequence[Event], stage: str, closed_by: str | None = None
) -> list[tuple[Event, float | None]]:
    """Each ``stage`` event of ``stage`` with its seconds (None if nothing closed it);
    ``closed_by``: only those a checkpoint of that kind closed (``hf``, ``recover``)."""
    out: list[tuple[Event, float | None]] = []
    for i, ev in enumerate(events):
        if ev.get("kind") != "stage" or ev.get("stage") != stage:
            continue
        end = next((e for e in events[i + 1 :] if e.get("kind") in _CLOSES), None)
        if closed_by is not None and (end is None or end.get("what") != closed_by):
            continue
        out.append((ev, float(end["t"]) - float(ev["t"]) if end else None))
    return out


def _total(pairs: Sequence[tuple[Event, float | None]]) -> float | None:
    secs = [s for _, s in pairs if s is not None]
    return sum(secs) if secs else None


def _messages(events: Sequence[Event], kind: str = "message") -> list[str]:
    return [str(e.get("text", "")) for e in events if e.get("kind") == kind]


def _checkpoints(events: Sequence[Event], what: str) -> list[int]:
    return [
        int(e.get("step", -1))
        for e in events
        if e.get("kind") == "checkpoint" and e.get("what") == what
    ]


def _servers(shrunk: Shrunk, legs: Sequence[Leg]) -> Stage:
    cfg = shrunk.cfg
    launched = cfg.rollout.backend == "sglang" and not cfg.rollout.server_addrs
    starts = [
        (int(m.group(1)), int(m.group(2)))
        for leg in legs
        for text in _messages(leg.events)
        if (m := SERVERS_UP.search(text))
    ]
    if not launched:
        why = "attached to rollout.server_addrs" if cfg.rollout.server_addrs else "in-process"
        return Stage("servers", False, False, f"none launched ({why})")
    if not starts:
        return Stage("servers", True, False, "no server answered /health")
    times = ", ".join(f"{s}s" for _, s in starts)
    detail = f"{starts[0][0]} SGLang server(s) from {cfg.allocation_mode}, started in {times}"
    return Stage("servers", True, True, detail, float(starts[0][1]))


def _steps(legs: Sequence[Leg]) -> Stage:
    events = [e for leg in legs for e in leg.events]
    trained = sorted({int(ev["step"]) for ev, _ in timed(events, "train")})
    rollout, learn = _total(timed(events, "rollout")), _total(timed(events, "train"))
    ran = trained[-1:] == [STEPS]
    parts = [f"steps {', '.join(map(str, trained)) or 'none'} of {STEPS}"]
    if rollout is not None and learn is not None:
        parts.append(f"rollout {rollout:.1f}s, learner {learn:.1f}s")
    total = None if rollout is None or learn is None else rollout + learn
    return Stage("steps", True, ran, "; ".join(parts), total)


def _learner(metrics: Sequence[Event]) -> Stage:
    """Whether the learner's forward/backward ran: only on groups with a spread of
    rewards, which two short steps cannot force (so not required)."""
    rows = [r for r in metrics if mn.SIGNAL_GROUPS in r]
    trained = [int(r["global_step"]) for r in rows if float(r[mn.SIGNAL_GROUPS]) > 0]
    if trained:
        detail = f"forward/backward on groups with signal at steps {', '.join(map(str, trained))}"
    else:
        detail = "not exercised: no group had a spread of rewards (all samples scored alike)"
    return Stage("learner", False, bool(trained), detail)


def _weight_sync(legs: Sequence[Leg]) -> Stage:
    events = [e for leg in legs for e in leg.events]
    name = next((str(e.get("weight_sync")) for e in events if e.get("kind") == "run"), "?")
    syncs = timed(events, "weight_sync")
    initial = [m for t in _messages(events) if (m := INITIAL_SYNC.search(t))]
    ran = len(syncs) >= 1
    detail = f"{name}: {len(syncs)} after steps"
    if initial:
        detail += f", {len(initial)} at start ({', '.join(m.group(2) + 's' for m in initial)})"
    return Stage("weight sync", True, ran, detail, _total(syncs))


def _eval(legs: Sequence[Leg]) -> Stage:
    events = [e for leg in legs for e in leg.events]
    evals = timed(events, "eval")
    total = evals[0][0].get("total") if evals else None
    steps = ", ".join(str(ev.get("step")) for ev, _ in evals)
    detail = f"{len(evals)} evals of {total} problems (at steps {steps})" if evals else "none"
    return Stage("eval", True, bool(evals), detail, _total(evals))


def _saves(shrunk: Shrunk, legs: Sequence[Leg]) -> list[Stage]:
    cfg = shrunk.cfg
    events = [e for leg in legs for e in leg.events]
    sv = cfg.saver
    hf = _checkpoints(events, "hf")
    want_hf = bool(sv.freq_steps or sv.freq_epochs or sv.freq_secs)
    rec = _checkpoints(events, "recover")
    want_rec = cfg.recover.mode != "disabled"
    hf_detail = f"HF checkpoints at steps {', '.join(map(str, hf))}" if hf else "none"
    rec_detail = f"recover points at steps {', '.join(map(str, rec))}" if rec else "none"
    if not want_hf:
        hf_detail += " (no saver.freq_* set)"
    if not want_rec:
        rec_detail += " (recover.mode=disabled)"
    return [
        Stage("save", want_hf, bool(hf), hf_detail, _total(timed(events, "save", "hf"))),
        Stage(
            "recover save",
            want_rec,
            bool(rec),
            rec_detail,
            _total(timed(events, "save", "recover")),
        ),
    ]


def _ctrl_c_and_resume(shrunk: Shrunk, legs: Sequence[Leg]) -> list[Stage]:
    if shrunk.legs < 2:
        why = "recover.mode=disabled: a rerun starts over"
        return [Stage("Ctrl-C", False, False, why), Stage("resume", False, False, why)]
    first = legs[0].events if legs else []
    ends = [e for e in first if e.get("kind") == "end"]
    stopped = bool(ends) and ends[-1].get("status") == "interrupted"
    point = [s for s in _checkpoints(first, "recover") if s == 1]
    ctrl_ok = bool(legs) and legs[0].planned_stop and stopped and bool(point) and legs[0].rc == 0
    ctrl = Stage(
        "Ctrl-C",
        True,
        ctrl_ok,
        "stopped after step 1 with a recover point" if ctrl_ok else "did not stop cleanly",
    )
    second = legs[1].events if len(legs) > 1 else []
    runs = [e for e in second if e.get("kind") == "run"]
    at = runs[0].get("resumed_from") if runs else None
    resumed = at == 1
    detail = f"resumed at step {at}" if runs else "did not run"
    return [ctrl, Stage("resume", True, resumed, detail)]


def _watchdog(shrunk: Shrunk, legs: Sequence[Leg]) -> Stage:
    n = shrunk.cfg.rollout.zero_reward_steps
    if n == 0:
        return Stage("watchdog", False, False, "off (rollout.zero_reward_steps=0)")
    events = [e for leg in legs for e in leg.events]
    healths = [e for e in events if e.get("kind") == "health"]
    fired = [t for t in _messages(events, "warning") if WATCHDOG in t]
    detail = f"checked {len(healths)} steps against a zero-reward streak of {n}: "
    detail += f"fired ({fired[0][:70]}...)" if fired else "did not fire"
    return Stage("watchdog", True, bool(healths), detail)


def _end(legs: Sequence[Leg]) -> Stage:
    if not legs:
        return Stage("end", True, False, "nothing ran")
    last = legs[-1]
    ends = [e for e in last.events if e.get("kind") == "end"]
    status = ends[-1].get("status") if ends else "no end event"
    ok = last.rc == 0 and status == "done"
    return Stage("end", True, ok, f"{status}, exit code {last.rc}", last.seconds)


def stages(shrunk: Shrunk, legs: Sequence[Leg], metrics: Sequence[Event] = ()) -> list[Stage]:
    """Every stage of the checklist, in the order a run meets them; ``metrics``: the
    run's ``metrics.jsonl`` rows."""
    return [
        _servers(shrunk, legs),
        _eval(legs),
        _steps(legs),
        _learner(metrics),
        _weight_sync(legs),
        *_saves(shrunk, legs),
        *_ctrl_c_and_resume(shrunk, legs),
        _watchdog(shrunk, legs),
        _end(legs),
    ]
