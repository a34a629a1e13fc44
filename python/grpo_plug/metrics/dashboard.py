"""The live training dashboard: a rich ``Live`` screen drawn from a run's log dir.

It reads the same files ``grpo-plug watch`` reads (metrics.jsonl, events.jsonl), on
rich's own refresh thread, so the training thread only appends lines to files.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.text import Text

from grpo_plug.metrics import names as m
from grpo_plug.metrics.run import RunReader, RunState

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, lo: float | None = None) -> str:
    """The last ``width`` values as block characters, scaled to their own range."""
    vals = list(values)[-width:] if width > 0 else []
    if not vals:
        return ""
    low = min(vals) if lo is None else lo
    span = max(vals) - low
    if span <= 0:
        return BLOCKS[0] * len(vals)
    return "".join(BLOCKS[min(int((v - low) / span * 7.999), 7)] for v in vals)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(max(seconds, 0))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def ago(t: float | None, now: float) -> str:
    return "" if t is None else f"{clock(now - t)} ago"


def _fmt(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def header(st: RunState) -> Text:
    i = st.info
    model = str(i.get("model", "?"))
    if model.startswith(("/", ".", "~")):  # a local path: its folder name says enough
        model = Path(model).name
    parts = [  # the panel title names the app; the header spends its width on the run
        (f"{i.get('experiment', '?')}/{i.get('trial', '?')}", "bold cyan"),
        (f"  preset {i.get('preset') or '-'}  backend {i.get('backend', '?')}", ""),
        (f"  attention {i['attention']}" if i.get("attention") else "", ""),
        (f"  {i.get('devices', '')}  {model}", ""),
    ]
    if i.get("threads"):
        parts.append((f"  {i['threads']}", "dim"))
    if i.get("resumed_from") is not None:
        parts.append((f"  resumed from step {i['resumed_from']}", "yellow"))
    return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")


def bar(done: float, total: float, width: int) -> Text:
    """A progress bar as one string (cheaper to draw than rich's ProgressBar)."""
    filled = int(width * min(max(done / total, 0.0), 1.0)) if total > 0 else 0
    return Text.assemble(("━" * filled, "magenta"), ("━" * (width - filled), "grey37"))


def _line(*parts: str | Text | tuple[str, str]) -> Text:
    t = Text.assemble(*parts)
    t.no_wrap, t.overflow = True, "ellipsis"
    return t


def progress(st: RunState, now: float, width: int) -> list[Text]:
    """Two lines: the run (steps, epoch, time) and the current stage (samples done)."""
    total = st.total_steps or 0
    done = st.global_step
    pct = f"{100 * done / total:.0f}%" if total else ""
    steps = st.steps()
    epoch = steps[-1].get("epoch", 0) if steps else 0
    elapsed = (st.end or {}).get("t", now) - st.started if st.started else None
    run_label = f"step {done}/{total or '?'}"
    p = st.progress
    stage = st.stage or ((st.end or {}).get("status") or "starting")
    label = f"{stage} {now - st.stage_since:.0f}s" if st.stage and st.stage_since else stage
    w = max(len(run_label), len(label))
    bar_w = max(width // 4, 8)
    run = _line(
        f"{run_label:<{w}} ",
        bar(done, total, bar_w),
        f" {pct}  epoch {epoch}  elapsed {clock(elapsed)}  ETA {clock(st.eta_seconds())}",
    )
    if p and p.get("total") and st.stage in ("rollout", "eval"):
        tail = f"{p.get('done', 0)}/{p['total']} samples"
        spent = float(p["t"]) - (st.stage_since or float(p["t"]))
        if spent >= 1.0:  # a rate over less than a second is noise
            tail += f"  {p.get('tokens', 0) / spent:.0f} tok/s"
        now_line = _line(
            f"{label:<{w}} ", bar(float(p.get("done", 0)), float(p["total"]), bar_w), f" {tail}"
        )
    else:  # between generations: what the trainer said in this stage, if anything
        now_line = _line(f"{label:<{w}} ", (st.stage_note, "dim"))
    return [run, now_line]


def curves(st: RunState, width: int) -> list[Text]:
    spark_w = max(width - 32, 8)
    reward = [v for _, v in st.series(m.TASK_REWARD)]
    ev = [v for _, v in st.series(m.EVAL_ACCURACY)]
    last_r = f"{reward[-1]:.3f}" if reward else "-"
    first = f" (first {ev[0]:.3f})" if len(ev) > 1 else ""
    last_e = f"{ev[-1]:.3f}{first}" if ev else "-"
    r_line = sparkline(reward, spark_w, 0.0)
    e_line = sparkline(ev, spark_w, 0.0)
    pad = max(len(r_line), len(e_line))
    return [
        _line("reward  ", (f"{r_line:<{pad}}", "green"), f" {last_r}"),
        _line("eval    ", (f"{e_line:<{pad}}", "magenta"), f" {last_e}"),
    ]


def table_columns(width: int) -> int:
    return 4 if width >= 120 else 3 if width >= 66 else 2


def metrics_table(st: RunState, width: int) -> list[Text]:
    latest = st.latest()
    cols = table_columns(width)
    cell_w = width // cols
    lines = []
    for i in range(0, len(m.TABLE), cols):
        parts: list[str | tuple[str, str]] = []
        for s in m.TABLE[i : i + cols]:
            value = _fmt(latest.get(s.key), s.fmt)
            parts += [(f"{s.label:<11}", "dim"), f"{value:<{max(cell_w - 11, 1)}}"]
        lines.append(_line(*parts))
    return lines


def timing(st: RunState, width: int) -> list[Text]:
    """The last step's time per stage, then the async and decoupled figures: one line
    when all fit ``width``, else wrapped between figures, the async and decoupled ones
    starting a line of their own."""
    steps = st.steps()
    if not steps:
        return [Text("time per stage: -", style="dim")]
    last = steps[-1]
    total = float(last.get(m.TIME_STEP, 0.0)) or 1e-9
    parts = [f"step {total:.1f}s:"]
    for stage in m.STAGES:
        if stage.key in last:
            v = float(last[stage.key])
            parts.append(f"{stage.label} {v:{stage.fmt}}s ({100 * v / total:.0f}%)")
    if m.GEN_TOKENS_PER_S in last:
        parts.append(f"gen {last[m.GEN_TOKENS_PER_S]:.0f} tok/s")
    extra = []
    if m.ASYNC_OVERLAP in last:  # rollout ahead of the learner
        lag = last.get(m.VERSION_LAG_MAX, 0.0)
        extra.append(f"overlap {last[m.ASYNC_OVERLAP]:.0%} lag<={lag:.0f}")
    if m.BEHAV_IMP_WEIGHT in last:  # actor.use_decoupled_loss
        masked = last.get(m.BEHAV_MASKED, 0.0)
        extra.append(f"behav imp w {last[m.BEHAV_IMP_WEIGHT]:.3f} masked {masked:.1%}")
    one = "  ".join(parts + extra)
    lines = [one] if len(one) <= width else _wrap(parts, width) + _wrap(extra, width)
    return [Text(line, no_wrap=True, overflow="ellipsis") for line in lines]


def _wrap(parts: list[str], width: int) -> list[str]:
    """``parts`` joined by two spaces, a new line wherever the next part would not fit
    (a part is never split: one wider than ``width`` is cut with an ellipsis)."""
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "  " + part
        else:
            lines.append(part)
    return lines


def health(st: RunState, now: float) -> Text:
    h, latest = st.health, st.latest()
    rss = h.get("rss_gb", latest.get(m.PEAK_RSS_GB))
    parts = [f"rss {rss:.2f} GiB" if isinstance(rss, int | float) else "rss -"]
    if h.get("gpu_gb") is not None:
        parts.append(f"gpu {h['gpu_gb']:.1f} GiB")
    servers = h.get("servers") or {}
    if servers:
        up = sum(1 for s in servers.values() if s == "up")
        down = [f"{a} {s}" for a, s in servers.items() if s != "up"]
        parts.append(f"servers {up}/{len(servers)} up" + (f" ({', '.join(down)})" if down else ""))
    if h.get("server_restarts"):
        parts.append(f"restarts {h['server_restarts']:g}")
    for what, label in (("hf", "ckpt"), ("recover", "recover")):
        ck = st.checkpoints.get(what)
        if ck:
            parts.append(f"{label} step {ck.get('step')} ({ago(ck.get('t'), now)})")
    return Text("  ".join(parts), no_wrap=True, overflow="ellipsis")


def warnings(st: RunState, limit: int) -> list[Text]:
    lines = [f"! {a}" for a in st.alerts()]
    lines += [f"! {text}" for _, text in reversed(st.warnings)]
    return [Text(w, style="bold yellow", no_wrap=True, overflow="ellipsis") for w in lines[:limit]]


def latest_sample(st: RunState, width: int, lines: int) -> list[Text]:
    s = st.sample
    if not s or lines <= 0:
        return []
    flat = " ".join(str(s.get("completion", "")).split())
    out = [
        Text.assemble(("prompt ", "dim"), " ".join(str(s.get("prompt", "")).split()), no_wrap=True),
    ]
    chunk = max(width - 12, 10)
    for i in range(max(lines - 2, 1)):
        piece = flat[i * chunk : (i + 1) * chunk]
        if not piece:
            break
        out.append(Text.assemble(("answer " if i == 0 else "       ", "dim"), piece))
    rew = s.get("reward")
    out.append(
        Text.assemble(
            ("extracted ", "dim"),
            str(s.get("answer")),
            ("  reward ", "dim"),
            f"{rew:.2f}" if isinstance(rew, int | float) else "-",
        )
    )
    for t in out:
        t.no_wrap, t.overflow = True, "ellipsis"
    return out[:lines]


HISTORY = (
    m.Shown(m.TASK_REWARD, "reward", ".3f"),
    m.Shown(m.LOSS, "loss", ".4f"),
    m.Shown(m.ENTROPY, "entropy", ".3f"),
    m.Shown(m.KL, "kl", ".4f"),
    m.Shown(m.SEQ_LEN, "len", ".1f"),
    m.Shown(m.NO_EOS, "no-eos", ".2f"),
    m.Shown(m.ZERO_ADV, "zero-adv", ".2f"),
    m.Shown(m.TIME_STEP, "s/step", ".1f"),
)


def history(st: RunState, rows: int) -> list[Text]:
    """The last steps, one row each, where the screen has room for them."""
    steps = st.steps()[-(rows - 1) :] if rows >= 3 else []
    if not steps:
        return []
    widths = [max(len(s.label), 7) for s in HISTORY]
    head = "step " + "  ".join(f"{s.label:>{w}}" for s, w in zip(HISTORY, widths, strict=True))
    out = [_line((head, "dim"))]
    for r in steps:
        cells = (f"{_fmt(r.get(s.key), s.fmt):>{w}}" for s, w in zip(HISTORY, widths, strict=True))
        out.append(_line(f"{r['global_step']:>4} " + "  ".join(cells)))
    return out


def render(st: RunState, width: int = 80, height: int = 24, now: float | None = None) -> Panel:
    """The whole screen for a terminal of ``width`` x ``height``."""
    now = time.time() if now is None else now
    inner = width - 4
    table_rows = -(-len(m.TABLE) // table_columns(inner))
    times = timing(st, inner)
    # header, progress, curves, table, time, health, and the borders
    fixed = 1 + 2 + 2 + table_rows + len(times) + 1 + 2
    room = max(height - fixed, 0)
    warn = warnings(st, min(3, room))
    sample = latest_sample(st, inner, min(room - len(warn), 6 if height > 30 else 3))
    past = history(st, room - len(warn) - len(sample))
    parts: list[RenderableType] = [
        header(st),
        *progress(st, now, inner),
        *curves(st, inner),
        *metrics_table(st, inner),
        *times,
        health(st, now),
        *warn,
        *sample,
        *past,
    ]
    return Panel(Group(*parts), title="GRPO training", border_style="blue", height=height)


class Dashboard:
    """The live screen for a run, drawn by a low-priority thread of its own.

    It redraws when the run wrote something new (at most every ``min_interval``
    seconds) and once a second for the clocks; the training thread only appends lines
    to files. Rich's own refresh timer is off, so nothing is drawn when nothing changed.
    """

    def __init__(
        self,
        log_dir: str | Path,
        console: Console | None = None,
        min_interval: float = 0.5,
        screen: bool = True,
    ) -> None:
        self.reader = RunReader(log_dir)
        self.console = console or Console()
        self.min_interval = min_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = Live(
            console=self.console,
            auto_refresh=False,
            screen=screen,
            redirect_stdout=True,
            redirect_stderr=True,
            transient=not screen,
        )

    def _frame(self) -> Panel:
        size = self.console.size
        return render(self.reader.state, size.width, size.height)

    def _loop(self) -> None:
        # Linux: a thread has its own nice value; let the training threads go first.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        last_draw = 0.0
        seen = -1.0
        while not self._stop.wait(0.25):
            st = self.reader.poll()
            stamp = len(st.rows) + len(st.messages) + (st.last_update or 0.0)
            now = time.monotonic()
            changed = stamp != seen and now - last_draw >= self.min_interval
            if changed or now - last_draw >= 1.0:
                seen, last_draw = stamp, now
                self._live.update(self._frame(), refresh=True)

    def __enter__(self) -> Dashboard:
        self.reader.poll()
        self._live.start()
        self._live.update(self._frame(), refresh=True)
        self._thread = threading.Thread(target=self._loop, name="grpo-plug-dashboard", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._live.stop()

    @property
    def state(self) -> RunState:
        return self.reader.state
