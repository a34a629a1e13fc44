"""`grpo-plug train` with the test-only `seven` task registered; used by crash tests.

python tests/crash_driver.py --config run.yaml

For the asynchronous runs' tests (rollout.max_head_offpolicyness >= 1), two optional
hooks: ``CRASH_DRIVER_TAKES=file`` appends every step the learner takes from the
producer to ``file``; ``CRASH_DRIVER_LEARNER_DELAY=seconds`` slows each learner step,
so the producer runs ahead whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_plug.cli import main
from grpo_plug.plugins import get_host
from tests.helpers import with_seven


def record_takes(path: str) -> None:
    """One JSON line per step taken, written at once (a SIGKILL loses none): the step
    and each sample's [rid, tokens, policy versions]."""
    from grpo_plug.rollout import ahead

    real = ahead.AheadRollout.take

    def take(self: ahead.AheadRollout, step: int, batch: Any) -> Any:
        got, waited = real(self, step, batch)
        samples = [
            [s.rid, list(s.output_ids), list(s.policy_versions)]
            for r in got.rounds
            for s in r.samples
        ]
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"step": step, "samples": samples}) + "\n")
        return got, waited

    ahead.AheadRollout.take = take  # type: ignore[method-assign]


def slow_learner(seconds: float) -> None:
    from grpo_plug.learner.ranks import LearnerRanks

    real = LearnerRanks.train_step

    def train_step(self: LearnerRanks, batch: Any) -> Any:
        time.sleep(seconds)
        return real(self, batch)

    LearnerRanks.train_step = train_step  # type: ignore[method-assign]


if __name__ == "__main__":
    with_seven(get_host())
    if os.environ.get("CRASH_DRIVER_TAKES"):
        record_takes(os.environ["CRASH_DRIVER_TAKES"])
    if os.environ.get("CRASH_DRIVER_LEARNER_DELAY"):
        slow_learner(float(os.environ["CRASH_DRIVER_LEARNER_DELAY"]))
    sys.argv = ["grpo-plug", "train", *sys.argv[1:]]
    main()
