"""Running a trainer for a person at a terminal: the live dashboard and Ctrl-C.

The first Ctrl-C asks the trainer to stop after the current step (it writes a recover
point there, unless recovery is disabled); a second one stops at once. Either way the
rollout servers are stopped and the command that resumes the run is printed.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from types import FrameType
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from grpo_plug.trainer import Summary, Trainer


STOPPING = "Ctrl-C: stopping after this step (Ctrl-C again to stop now)"


def resume_command() -> str:
    return shlex.join(["grpo-plug", *sys.argv[1:]])


@contextmanager
def graceful_sigint(trainer: Trainer) -> Iterator[None]:
    """First SIGINT: stop after this step; second: KeyboardInterrupt as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True
        # Not from here: the interrupted main thread may hold the loggers' or the event
        # stream's lock, and a handler that waits for it never returns (a hung Ctrl-C).
        threading.Thread(target=trainer.message, args=(STOPPING,), daemon=True).start()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(trainer: Trainer, *, tui: bool, console: Console) -> Summary | None:
    """Train, under the dashboard when ``tui``; None when stopped by a second Ctrl-C."""
    from grpo_plug.metrics.dashboard import Dashboard

    screen = Dashboard(trainer.log_dir, console=console) if tui else nullcontext()
    try:
        with graceful_sigint(trainer), screen:
            return trainer.train()
    except KeyboardInterrupt:
        trainer.events.end("aborted", step=trainer.global_step)
        console.print(
            f"stopped at once during step {trainer.global_step + 1}; "
            f"{trainer.checkpointer.rerun_note()}: {resume_command()}",
            markup=False,
            highlight=False,
        )
        return None
    except BaseException as e:
        trainer.events.end("failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        trainer.close()  # rollout servers stop here
