"""The whole trainer under torchrun on the tiny model and the ``seven`` task
(tests/test_distributed.py): rank 0 trains, the other ranks follow.

    torchrun --standalone --nproc-per-node 2 tests/train_driver.py TMP MODEL key=value...
"""

from __future__ import annotations

import sys
from pathlib import Path

from grpo_plug.launch import end_rank
from grpo_plug.learner import dist
from grpo_plug.learner.ranks import follow
from grpo_plug.plugins import get_host
from tests.helpers import run_trainer, tiny_config, with_seven


def main() -> int:
    tmp, model, *overrides = sys.argv[1:]
    cfg = tiny_config(Path(tmp), Path(model), *overrides)
    if not dist.from_env().is_main:
        follow(cfg)
        return 0
    run = run_trainer(cfg, with_seven(get_host()))
    trained = sum("grpo_actor/loss" in row for row in run.capture.rows)  # steps the learner ran
    summary = run.summary
    print(f"steps={summary.steps} trained={trained} checkpoint={summary.checkpoint}")
    return 0


if __name__ == "__main__":
    end_rank(main())  # always under torchrun
