"""The end of a run: its :class:`Summary`, in ``summary.json`` and the event stream."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from grpo_plug.metrics.emit import RunEvents
from grpo_plug.metrics.fanout import peak_rss_gb
from grpo_plug.recovery import store


@dataclass
class Summary:
    steps: int
    accuracy_before: float | None
    accuracy_after: float | None
    n_eval: int
    seconds: float
    log_dir: str
    peak_rss_gb: float
    checkpoint: str | None = None  # the HF checkpoint of the final step, if one was saved
    interrupted: bool = False  # stopped early on request (Ctrl-C)
    rerun: str | None = None  # what rerunning the command does (when interrupted)


def finish(
    events: RunEvents,
    log_dir: Path,
    ckpt_dir: Path,
    *,
    steps: int,
    accuracy: tuple[float | None, float | None],
    n_eval: int,
    start: float,
    rerun: str | None,
) -> Summary:
    """The summary of a run that ran ``steps`` steps since ``start`` (``time.time()``);
    ``accuracy``: before and after; ``rerun``: what a rerun does (interrupted runs)."""
    final = [c for c in store.list_hf_checkpoints(ckpt_dir) if c.global_step == steps]
    summary = Summary(
        steps=steps,
        accuracy_before=accuracy[0],
        accuracy_after=accuracy[1],
        n_eval=n_eval,
        seconds=time.time() - start,
        log_dir=str(log_dir),
        peak_rss_gb=peak_rss_gb(),
        checkpoint=str(final[-1].path) if final else None,
        interrupted=rerun is not None,
        rerun=rerun,
    )
    (log_dir / "summary.json").write_text(json.dumps(vars(summary), indent=2))
    events.end("interrupted" if summary.interrupted else "done", summary=vars(summary))
    return summary
