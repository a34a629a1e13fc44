"""GRPO learner steps under torchrun on fixed synthetic batches (tests/test_distributed.py).

    torchrun --standalone --nproc-per-node 2 tests/dist_driver.py --model M --out O

Every rank builds the same learner and sees the same batches (seeded by step); rank 0
writes the full (unsharded) weights after the last step and every step's metrics to
``--out``. ``--save-at K`` writes a recover point after step K; ``--resume`` starts from
the recover point under ``--root``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from grpo_plug import config as cfgmod
from grpo_plug.launch import end_rank
from grpo_plug.learner import Learner, LearnerBatch, dist, fsdp
from grpo_plug.learner import state as learner_state
from grpo_plug.recovery import store as ckpt


def synthetic_batch(step: int, groups: int = 3, group_size: int = 4) -> LearnerBatch:
    """``groups`` prompts x ``group_size`` completions of random digit tokens."""
    rng = np.random.default_rng([7, step])
    prompts, comps, lps = [], [], []
    for _ in range(groups):
        prompt = rng.integers(3, 14, size=int(rng.integers(4, 10))).tolist()
        for _ in range(group_size):
            c = rng.integers(3, 14, size=int(rng.integers(1, 8))).tolist()
            prompts.append(prompt)
            comps.append(c)
            lps.append((-rng.uniform(1.0, 3.0, size=len(c))).tolist())
    adv = rng.normal(size=len(prompts)).astype(np.float32)
    return LearnerBatch(prompts, comps, lps, adv, np.arange(len(prompts)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--save-at", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    info = dist.from_env(cuda=False)
    dist.init(info)
    torch.manual_seed(0)
    cfg = cfgmod.load(overrides=[f"actor.path={args.model}", "actor.lr=1e-2", *args.overrides])
    learner = Learner(cfg, args.steps, info)
    start, rows = 0, []
    if args.resume:
        assert args.root is not None
        path = args.root / ckpt.RECOVER_DIR
        state = learner_state.load_recover_sharded(
            path,
            model=learner.model,
            optimizer=learner.optimizer,
            scheduler=learner.scheduler,
            info=info,
        )
        start = int(state["global_step"])
    for step in range(start, args.steps):
        rows.append(learner.train_step(synthetic_batch(step)))
        if args.save_at == step + 1:
            assert args.root is not None
            learner_state.save_recover_sharded(
                args.root,
                model=learner.model,
                optimizer=learner.optimizer,
                scheduler=learner.scheduler,
                state={"global_step": step + 1},
                info=info,
            )
            if os.environ.get("DIST_DRIVER_DIE_AFTER_SAVE"):
                os._exit(9)  # an abrupt end right after the point is in place
    weights = fsdp.full_state_dict(learner.model)
    if info.is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.clone() for k, v in weights.items()}, str(args.out / "w.safetensors"))
        (args.out / "metrics.json").write_text(json.dumps(rows))
    dist.barrier(info)
    dist.close()
    return 0


if __name__ == "__main__":
    rc = main()
    if os.environ.get("WORLD_SIZE"):  # a torchrun rank
        end_rank(rc)
    sys.exit(rc)
