"""Rank 0 drives, the other ranks follow.

Under torchrun only rank 0 runs the trainer (rollouts, rewards, logs, metrics, HF
checkpoints, markers). Every call on :class:`LearnerRanks` that needs all ranks (a
train step, a sharded recover point, a resume) is first broadcast as a command; the
other ranks sit in :func:`follow` and run the same method, so every collective is
joined by every rank in the same order.

Rollouts, weight sync and HF exports need whole weights, not shards: with more than
one rank, rank 0 keeps an unsharded copy of the policy (``policy``) that every train
step and resume refresh (one gather). It costs a second copy of the weights on rank
0's device; on one rank ``policy`` is the learner's own module.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grpo_plug import threads
from grpo_plug.config import TrainConfig
from grpo_plug.learner import dist, fsdp
from grpo_plug.learner import state as learner_state
from grpo_plug.learner.actor import Learner, LearnerBatch
from grpo_plug.models import load_model

_COMMANDS = ("train_step", "save_recover", "load_recover", "stop")


class LearnerRanks:
    def __init__(self, learner: Learner, ckpt_dir: Path) -> None:
        self.learner, self.info, self.ckpt_dir = learner, learner.info, ckpt_dir
        self.policy: Any = learner.model
        if self.info.distributed:
            if self.info.is_main:
                cfg = learner.cfg
                device = str(self.info.device)
                self.policy = load_model(cfg.actor.path, dtype=cfg.actor.dtype, device=device)
                self.policy.requires_grad_(False)
                self.policy.config.use_cache = True
            self._refresh_policy()  # a collective: the followers gather too

    # ------------------------------------------------------------- rank 0's calls

    def train_step(self, batch: LearnerBatch) -> dict[str, float]:
        return self._run("train_step", batch)  # type: ignore[no-any-return]

    def save_recover(self, state: dict[str, Any]) -> Path:
        return self._run("save_recover", state)  # type: ignore[no-any-return]

    def load_recover(self, path: Path) -> dict[str, Any]:
        return self._run("load_recover", path)  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Release the followers (their :func:`follow` returns)."""
        if self.info.distributed:
            self._run("stop")

    def _run(self, name: str, *args: Any) -> Any:
        assert self.info.is_main, "only rank 0 drives the group"
        if self.info.distributed:
            dist.broadcast((name, args), self.info)
        return getattr(self, "_" + name)(*args)

    # ------------------------------------------------------------- on every rank

    def serve(self) -> None:
        """A follower's loop: run rank 0's commands until it says stop."""
        while True:
            cmd: tuple[str, tuple[Any, ...]] = dist.broadcast(("", ()), self.info)
            name, args = cmd
            if name not in _COMMANDS:
                raise RuntimeError(f"rank {self.info.rank}: unknown command {name!r} from rank 0")
            if name == "stop":
                return
            getattr(self, "_" + name)(*args)

    def _train_step(self, batch: LearnerBatch) -> dict[str, float]:
        stats = self.learner.train_step(batch)
        self._refresh_policy()
        return stats

    def _save_recover(self, state: dict[str, Any]) -> Path:
        lr = self.learner
        if not self.info.distributed:
            return learner_state.save_recover(
                self.ckpt_dir,
                model=lr.model,
                optimizer=lr.optimizer,
                scheduler=lr.scheduler,
                state=state,
            )
        return learner_state.save_recover_sharded(
            self.ckpt_dir,
            model=lr.model,
            optimizer=lr.optimizer,
            scheduler=lr.scheduler,
            state=state,
            info=self.info,
        )

    def _load_recover(self, path: Path) -> dict[str, Any]:
        lr = self.learner
        learner_state.check_world_size(path, self.info.world_size)
        if not self.info.distributed:
            return learner_state.load_recover(
                path, model=lr.model, optimizer=lr.optimizer, scheduler=lr.scheduler
            )
        state = learner_state.load_recover_sharded(
            path, model=lr.model, optimizer=lr.optimizer, scheduler=lr.scheduler, info=self.info
        )
        self._refresh_policy()
        return state

    def _stop(self) -> None:
        pass

    def _refresh_policy(self) -> None:
        """Gather the shards into rank 0's copy (a collective: every rank calls it)."""
        if not self.info.distributed:
            return
        full = fsdp.full_state_dict(self.learner.model)
        if self.info.is_main:
            self.policy.load_state_dict(full)


def seed_all(seed: int) -> None:
    """Seed every generator; on CPU also make the kernels run-to-run deterministic
    (:func:`deterministic_cpu`)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if not torch.cuda.is_available():
        deterministic_cpu()


def deterministic_cpu() -> None:
    """Same seed, same machine, same thread count, same bits. With more than one thread,
    the CPU backward of ``x[idx]`` with repeated ``idx`` (index_put_ with accumulate: the
    shared-prompt path's KV cache repeated per sample) adds floats with atomics in thread
    order, so gradients differ in the last bits from run to run. The flag makes it serial
    (a few MB of adds per step). ``warn_only``: an op with no deterministic CPU kernel
    warns, naming itself, instead of stopping the run."""
    torch.use_deterministic_algorithms(True, warn_only=True)


def use_thread_plan(cfg: TrainConfig) -> threads.ThreadPlan:
    """This rank's share of the CPU (:mod:`grpo_plug.threads`): torch's thread counts
    and pin on a CPU learner, before the model loads."""
    gpu = torch.cuda.is_available()
    plan = threads.plan_for(cfg, gpu=gpu)
    if not gpu:
        threads.apply_learner(plan)
    return plan


def follow(cfg: TrainConfig) -> None:
    """What ranks other than 0 run instead of the trainer: build the same learner
    (rank 0 sends the step count), then follow rank 0's commands."""
    from grpo_plug.plan import run_dirs

    info = dist.learner_dist(cfg)
    if info.is_main:
        raise RuntimeError("rank 0 runs the trainer, not follow()")
    dist.init(info)
    seed_all(cfg.seed)
    use_thread_plan(cfg)
    total_steps = dist.broadcast(0, info)
    group = LearnerRanks(Learner(cfg, total_steps, info), run_dirs(cfg)[0])
    try:
        group.serve()
    finally:
        dist.close()
