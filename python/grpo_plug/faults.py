"""Crash injection for the recovery tests: ``fault_point(name)`` dies here on request
(or, for the dress rehearsal's planned Ctrl-C, interrupts itself).

A leaf: the learner, the rollout backends and the recovery store all call it.
"""

from __future__ import annotations

import os
import signal


def fault_point(name: str) -> None:
    """Die with SIGKILL here when ``GRPO_PLUG_FAULT_AT`` names this point (crash tests).

    ``GRPO_PLUG_FAULT_AT=mid_rollout:3`` kills the process at the third time it passes
    ``mid_rollout``. Costs one dictionary lookup when unset. Under torchrun,
    ``GRPO_PLUG_FAULT_RANK=1`` limits it to that rank. ``GRPO_PLUG_FAULT_SIGNAL=INT``
    sends SIGINT instead: a Ctrl-C at exactly that point.
    """
    spec = os.environ.get("GRPO_PLUG_FAULT_AT")
    if not spec:
        return
    only = os.environ.get("GRPO_PLUG_FAULT_RANK")
    if only is not None and only != os.environ.get("RANK", "0"):
        return
    want, _, count = spec.partition(":")
    if want != name:
        return
    seen = _FAULT_COUNTS.get(name, 0) + 1
    _FAULT_COUNTS[name] = seen
    if seen == int(count or 1):
        sig = signal.SIGINT if os.environ.get("GRPO_PLUG_FAULT_SIGNAL") == "INT" else signal.SIGKILL
        os.kill(os.getpid(), sig)


_FAULT_COUNTS: dict[str, int] = {}
