"""A run's log dir written the way the trainer writes it, for reader/dashboard tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from grpo_plug.metrics import names as m
from grpo_plug.metrics.events import EventWriter


def step_row(step: int, t: float, **over: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "global_step": step,
        "epoch": 0,
        "timestamp": t,
        m.TASK_REWARD: 0.1 + 0.02 * step,
        m.LOSS: 0.1 / step,
        m.KL: 0.001,
        m.CLIP_RATIO: 0.01,
        m.ENTROPY: 1.2 - 0.05 * step,
        m.GRAD_NORM: 3.25,
        m.LR: 1e-5,
        m.SEQ_LEN: 40.5,
        m.NO_EOS: 0.3,
        m.ZERO_ADV: 0.5,
        m.IMPORTANCE_WEIGHT: 1.0001,
        m.TIME_ROLLOUT: 9.0,
        m.TIME_REWARD: 0.01,
        m.TIME_TRAIN: 4.0,
        m.TIME_WEIGHT_SYNC: 0.0,
        m.TIME_STEP: 14.0,
        m.GEN_TOKENS_PER_S: 130.0,
        m.PEAK_RSS_GB: 3.3,
    }
    row.update(over)
    return row


def write_run(
    log_dir: Path, steps: int = 12, total: int = 55, zero_reward_steps: int = 5, **over: float
) -> EventWriter:
    """A run ``steps`` steps in, mid-rollout of the next; returns its (open) event writer."""
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time() - 14 * steps - 30
    w = EventWriter(log_dir)
    w.emit(
        "run",
        experiment="grpo-cpu",
        trial="trial0",
        preset="cpu",
        model="embedded:smollm2-135m",
        backend="hf",
        attention="shared_prompt",
        devices="cpu x2",
        threads="threads learner 1x2, gen 2 (budget 2, passive wait)",
        total_steps=total,
        zero_reward_steps=zero_reward_steps,
        resumed_from=None,
    )
    with (log_dir / "metrics.jsonl").open("w") as f:
        f.write(json.dumps({"global_step": 0, "epoch": 0, "timestamp": t0, m.EVAL_ACCURACY: 0.195}))
        f.write("\n")
        for s in range(1, steps + 1):
            f.write(json.dumps(step_row(s, t0 + 14 * s, **over)) + "\n")
    w.emit("checkpoint", what="recover", path=str(log_dir / "rc"), step=10)
    w.emit("stage", stage="rollout", step=steps + 1)
    w.emit("progress", step=steps + 1, done=40, total=64, tokens=2600)
    w.emit(
        "sample",
        prompt="What is 34 * 29?",
        completion="34 * 29 = 986. So the answer is \\boxed{986}.",
        answer="986",
        reward=1.0,
    )
    return w
