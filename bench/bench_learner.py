"""Learner tokens/s on the CPU at the cpu preset's shapes: packed vs padded, side by side.

    .venv/bin/python bench/bench_learner.py [--repeats 1] [--model embedded:smollm2-135m]

One GRPO train step (the cpu preset's learner: fp32, ``actor.mb_max_tokens=1024``,
8 prompts x 8 samples, completions of 32-64 tokens, ~70-token prompts like the arith
task's chat-templated ones) on the embedded SmolLM2, with ``actor.attention=packed``
(documents in one row, no padding), ``padded`` (a ``[S, L]`` rectangle) and
``shared_prompt`` (each group's prompt once, its KV cache repeated: what ``auto`` picks
on one rank; not with checkpointing, which forbids the cache), gradient checkpointing
on and off. Prints the median seconds per step of each, learner tokens/s (prompt +
completion tokens of the batch / seconds) and the ratio against padded.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_check import synthetic_batch, time_steps
from grpo_plug import config as cfgmod
from grpo_plug.learner import Learner, dist
from grpo_plug.models import resolve_model_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="timed steps per variant")
    ap.add_argument("--model", default="embedded:smollm2-135m", help="actor.path to train")
    args = ap.parse_args()
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    info = dist.from_env(cuda=False)
    base = cfgmod.load(preset="cpu", overrides=[f"actor.path={args.model}"])
    path = str(resolve_model_path(base.actor.path))
    batch = synthetic_batch(
        base.train_dataset.batch_size,
        base.gconfig.n_samples,
        base.gconfig.max_new_tokens,
        49152,
        prompt_len=(60, 80),  # the arith task's chat-templated prompts
    )
    tokens = sum(len(p) + len(c) for p, c in zip(batch.prompts, batch.completions, strict=True))
    print(f"batch: {len(batch.prompts)} sequences, {tokens} tokens; model {path}")
    secs: dict[tuple[str, str], float] = {}
    for ckpt in ("false", "true"):
        # shared_prompt keeps each prompt's KV cache, which checkpointing forbids
        for attention in ("padded", "packed", "shared_prompt")[: 3 if ckpt == "false" else 2]:
            cfg = cfgmod.load(
                preset="cpu",
                overrides=[
                    f"actor.path={path}",
                    f"actor.attention={attention}",
                    f"actor.gradient_checkpointing={ckpt}",
                ],
            )
            learner = Learner(cfg, 100, info)
            secs[attention, ckpt], _ = time_steps(learner, batch, args.repeats)
            del learner
            ratio = secs["padded", ckpt] / secs[attention, ckpt]
            print(
                f"learner {attention:<13} ckpt={ckpt:<5}  {secs[attention, ckpt]:6.2f} s/step"
                f"  {tokens / secs[attention, ckpt]:7.0f} tok/s  x{ratio:.2f} vs padded",
                flush=True,
            )


if __name__ == "__main__":
    main()
