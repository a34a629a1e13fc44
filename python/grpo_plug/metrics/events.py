"""Events within a step, as a stream: ``events.jsonl`` beside ``metrics.jsonl``.

Metrics arrive once per step; events say what happens in between (the stage now
running, rollout samples done, warnings, the latest sample, checkpoints, health), so
the dashboard and ``grpo-plug watch`` never look frozen. One JSON object per line with
``kind`` and ``t`` (unix time). Text is plain: rich markup never enters the stream.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Literal

EVENTS_FILE = "events.jsonl"
METRICS_FILE = "metrics.jsonl"

Kind = Literal[
    "run",  # run header: experiment, trial, preset, model, backend, attention, devices...
    "stage",  # a stage of step `step` started: rollout, reward, train, weight_sync, eval, save
    "progress",  # rollout samples done / total in step `step`, tokens generated so far
    "warning",  # text a person should see at once
    "message",  # a status line
    "sample",  # the latest completion: prompt, completion, answer, reward
    "health",  # rss_gb, gpu_gb, servers {addr: up|down|restarting}
    "checkpoint",  # what (hf|recover), path, step
    "end",  # status (done|interrupted|failed), summary
]


class EventWriter:
    """Appends events; safe to call from several threads. Flushed per event (no fsync:
    a torn last line after a crash is skipped by the reader)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.path = Path(log_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def emit(self, kind: Kind, **fields: Any) -> None:
        row = {"kind": kind, "t": time.time(), **fields}
        line = json.dumps(row, allow_nan=True, default=str) + "\n"
        with self._lock:
            if not self._fh.closed:
                self._fh.write(line)
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class JsonlTail:
    """Reads the complete lines appended to a JSONL file since the last call.

    A file replaced or truncated underneath (the JSONL logger rewrites metrics.jsonl
    when a run resumes) is read again from the start; ``reset`` says so.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._ino: int | None = None
        self.reset = False

    def read(self) -> list[dict[str, Any]]:
        self.reset = False
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []
        if self._ino is not None and (st.st_ino != self._ino or st.st_size < self._offset):
            self._offset, self.reset = 0, True
        self._ino = st.st_ino
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        rows = []
        for line in chunk[: end + 1].splitlines():
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash
            if isinstance(obj, dict):
                rows.append(obj)
        return rows
