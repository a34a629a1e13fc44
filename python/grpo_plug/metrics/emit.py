"""What the trainer says between metrics rows, written to ``events.jsonl``."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from grpo_plug.metrics.events import EventWriter


class RunEvents:
    """The trainer's side of the event stream.

    Rollout progress arrives from the generation thread once per decode step or
    finished request; it is written at most every ``min_interval`` seconds, so a fast
    backend never turns the stream into the bottleneck.
    """

    def __init__(self, log_dir: str | Path, min_interval: float = 0.25) -> None:
        self._w = EventWriter(log_dir)
        self._lock = threading.Lock()
        self._min_interval = min_interval
        self._step = 0
        self._done = 0
        self._tokens = 0
        self._total: int | None = None
        self._last_write = 0.0

    def run(self, **info: Any) -> None:
        self._w.emit("run", **info)

    def stage(self, name: str, step: int, total: int | None = None) -> None:
        """Stage ``name`` of step ``step`` starts; ``total`` samples if it generates."""
        with self._lock:
            self._step, self._done, self._tokens, self._total = step, 0, 0, total
        self._w.emit("stage", stage=name, step=step, total=total)

    def progress(self, samples: int, tokens: int) -> None:
        """``samples`` more finished and ``tokens`` more generated (any thread)."""
        with self._lock:
            self._done += samples
            self._tokens += tokens
            now = time.monotonic()
            finished = self._total is not None and self._done >= self._total
            if now - self._last_write < self._min_interval and not finished:
                return
            self._last_write = now
            fields = {
                "step": self._step,
                "done": self._done,
                "total": self._total,
                "tokens": self._tokens,
            }
        self._w.emit("progress", **fields)

    def sample(self, prompt: str, completion: str, answer: str | None, reward: float) -> None:
        self._w.emit("sample", prompt=prompt, completion=completion, answer=answer, reward=reward)

    def message(self, text: str) -> None:
        self._w.emit("message", text=text)

    def warning(self, text: str) -> None:
        self._w.emit("warning", text=text)

    def health(self, **fields: Any) -> None:
        self._w.emit("health", **fields)

    def checkpoint(self, what: str, path: str | Path, step: int) -> None:
        self._w.emit("checkpoint", what=what, path=str(path), step=step)

    def end(self, status: str, **fields: Any) -> None:
        self._w.emit("end", status=status, **fields)

    def close(self) -> None:
        self._w.close()
