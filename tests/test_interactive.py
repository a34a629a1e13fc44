"""A person's Ctrl-C during a run: the handler never waits on a lock the interrupted
main thread holds (a hang that needed a Ctrl-C to land mid-write)."""

from __future__ import annotations

import signal
import threading
from typing import Any, cast

from grpo_plug.cli import interactive


class Trainer:
    """What the handler touches: the flag, and messages behind the loggers' lock."""

    def __init__(self) -> None:
        self.stop_requested = False
        self.lock = threading.Lock()  # like LoggerFanout's: not reentrant
        self.said: list[str] = []
        self.delivered = threading.Event()
        self.stuck = False

    def message(self, text: str) -> None:
        if not self.lock.acquire(timeout=3):
            self.stuck = True  # the handler waited on the main thread's lock
            return
        try:
            self.said.append(text)
            self.delivered.set()
        finally:
            self.lock.release()


def test_a_ctrl_c_while_a_message_is_written_stops_after_the_step() -> None:
    trainer = Trainer()
    before = signal.getsignal(signal.SIGINT)
    with interactive.graceful_sigint(cast(Any, trainer)):
        with trainer.lock:  # the main thread is inside a logger when Ctrl-C lands
            signal.raise_signal(signal.SIGINT)
            assert trainer.stop_requested
        assert trainer.delivered.wait(5)
    assert not trainer.stuck
    assert trainer.said == [interactive.STOPPING]
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_a_second_ctrl_c_stops_at_once() -> None:
    trainer = Trainer()
    trainer.stop_requested = True
    with interactive.graceful_sigint(cast(Any, trainer)):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the second Ctrl-C did not stop at once")
    assert trainer.said == []
