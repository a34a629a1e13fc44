"""A run as read from its log dir: the state the dashboard, ``watch`` and ``report`` share."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_plug.metrics import names as m
from grpo_plug.metrics.events import EVENTS_FILE, METRICS_FILE, JsonlTail
from grpo_plug.metrics.watchdog import zero_reward_streak

ZERO_REWARD_STEPS = 5  # runs whose header predates rollout.zero_reward_steps
ENTROPY_FLOOR = 0.05
IW_DRIFT = 0.1  # |importance weight - 1| beyond this is off-policy drift
LENGTH_CAP_RATIO = 0.5  # share of responses hitting max_new_tokens


@dataclass
class RunState:
    log_dir: Path
    info: dict[str, Any] = field(default_factory=dict)  # the "run" event
    rows: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl, in order
    stage: str | None = None
    stage_step: int | None = None
    stage_since: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)  # done, total, tokens, t
    sample: dict[str, Any] | None = None
    health: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)  # hf|recover -> event
    warnings: list[tuple[float, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    stage_note: str = ""  # the last status line since the current stage began
    end: dict[str, Any] | None = None
    started: float | None = None
    last_update: float | None = None

    # ------------------------------------------------------------ derived views

    def steps(self) -> list[dict[str, Any]]:
        """Training-step rows (those with a task reward), latest value per step."""
        by_step: dict[int, dict[str, Any]] = {}
        for r in self.rows:
            if m.TASK_REWARD in r:
                by_step[int(r["global_step"])] = r
        return [by_step[k] for k in sorted(by_step)]

    def series(self, key: str) -> list[tuple[int, float]]:
        """(global_step, value) of every row that has ``key``; the last value per step."""
        found: dict[int, float] = {}
        for r in self.rows:
            v = r.get(key)
            if isinstance(v, int | float):
                found[int(r.get("global_step", 0))] = float(v)
        return sorted(found.items())

    def latest(self) -> dict[str, float]:
        """The newest value of every metric."""
        out: dict[str, float] = {}
        for r in self.rows:
            out.update({k: v for k, v in r.items() if isinstance(v, int | float)})
        return out

    @property
    def global_step(self) -> int:
        return max((int(r.get("global_step", 0)) for r in self.rows), default=0)

    @property
    def total_steps(self) -> int | None:
        t = self.info.get("total_steps")
        return int(t) if t else None

    def eta_seconds(self) -> float | None:
        """Seconds left at the median step time of the steps seen so far."""
        times = sorted(float(r[m.TIME_STEP]) for r in self.steps() if m.TIME_STEP in r)
        if not times or self.total_steps is None:
            return None
        return times[len(times) // 2] * max(self.total_steps - self.global_step, 0)

    def alerts(self) -> list[str]:
        """Warnings that follow from the metrics themselves (see the constants above)."""
        steps = self.steps()
        out: list[str] = []
        raw = self.info.get("zero_reward_steps")
        limit = ZERO_REWARD_STEPS if raw is None else int(raw)
        zeros = zero_reward_streak([float(r.get(m.TASK_REWARD, 1.0)) for r in steps])
        if limit > 0 and zeros >= limit:
            out.append(f"task reward exactly 0 for the last {zeros} steps")
        if not steps:
            return out
        last = steps[-1]
        for key in (m.LOSS, m.GRAD_NORM):
            v = last.get(key)
            if isinstance(v, float) and not math.isfinite(v):
                out.append(f"{key} is {v} at step {last['global_step']}")
        if last.get(m.NO_EOS, 0.0) > LENGTH_CAP_RATIO:
            out.append(f"{100 * last[m.NO_EOS]:.0f}% of responses hit the length cap")
        ent = last.get(m.ENTROPY)
        if isinstance(ent, float) and ent < ENTROPY_FLOOR:
            out.append(f"entropy collapsed to {ent:.3f}")
        iw = last.get(m.IMPORTANCE_WEIGHT)
        if isinstance(iw, float) and abs(iw - 1.0) > IW_DRIFT:
            out.append(f"importance weight {iw:.3f} drifts from 1 (off-policy samples)")
        return out


class RunReader:
    """Follows a run's ``metrics.jsonl`` and ``events.jsonl`` as they grow."""

    def __init__(self, log_dir: str | Path) -> None:
        self.state = RunState(Path(log_dir))
        self._metrics = JsonlTail(self.state.log_dir / METRICS_FILE)
        self._events = JsonlTail(self.state.log_dir / EVENTS_FILE)

    def poll(self) -> RunState:
        st = self.state
        rows = self._metrics.read()
        if self._metrics.reset:
            st.rows.clear()
        st.rows.extend(rows)
        for ev in self._events.read():
            self._apply(ev)
        if rows:
            st.last_update = time.time()
        return st

    def _apply(self, ev: dict[str, Any]) -> None:
        st, kind, t = self.state, ev.get("kind"), float(ev.get("t", 0.0))
        st.last_update = t
        if kind == "run":
            st.info = ev
            st.started = t
            st.end = None
        elif kind == "stage":
            st.stage, st.stage_step, st.stage_since = ev.get("stage"), ev.get("step"), t
            st.stage_note = ""  # an earlier stage's line would describe the wrong work
            if ev.get("stage") == "rollout":
                st.progress = {}
        elif kind == "progress":
            st.progress = ev
        elif kind == "warning":
            st.warnings.append((t, str(ev.get("text", ""))))
        elif kind == "message":
            st.messages.append(str(ev.get("text", "")))
            del st.messages[:-50]
            st.stage_note = st.messages[-1]
        elif kind == "sample":
            st.sample = ev
        elif kind == "health":
            st.health = ev
        elif kind == "checkpoint":
            st.checkpoints[str(ev.get("what", "hf"))] = ev
        elif kind == "end":
            st.end = ev
            st.stage = None


def read_run(log_dir: str | Path) -> RunState:
    """Everything a finished (or running) run has written so far."""
    return RunReader(log_dir).poll()


def find_runs(fileroot: str | Path) -> list[Path]:
    """Log dirs under ``{fileroot}/logs``, the most recently written last."""
    base = Path(fileroot) / "logs"
    found = [p.parent for p in base.glob(f"*/*/*/{METRICS_FILE}")]
    found += [p.parent for p in base.glob(f"*/*/*/{EVENTS_FILE}")]
    uniq = {p.resolve(): p for p in found}

    def mtime(p: Path) -> float:
        return max(
            (f.stat().st_mtime for f in (p / METRICS_FILE, p / EVENTS_FILE) if f.exists()),
            default=0.0,
        )

    return sorted(uniq.values(), key=mtime)
