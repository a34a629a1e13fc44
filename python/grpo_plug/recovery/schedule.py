"""The run's checkpoints on their schedules: HF exports, recover points, resume.

The trainer (rank 0) calls :meth:`Checkpointer.resume` once before the loop and
:meth:`Checkpointer.after_step` after every step. Schedules are decided here, on rank 0
alone (``freq_secs`` reads its clock); a sharded recover point or resume goes through
the :class:`LearnerRanks`, which brings the other ranks along.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_plug import config as cfgmod
from grpo_plug.config import TrainConfig
from grpo_plug.errors import CheckpointError
from grpo_plug.learner.ranks import LearnerRanks
from grpo_plug.metrics.emit import RunEvents
from grpo_plug.recovery import store as ckpt


def rerun_note(mode: str, recover_step: int | None, ended_cleanly: bool) -> str:
    """What rerunning the same command will do, as one clause for the user."""
    if mode == "disabled":
        return "recover is disabled (recover.mode=disabled): a rerun starts over from step 0"
    if mode == "fault" and ended_cleanly:
        return "recover.mode=fault and this run ended cleanly: a rerun starts over from step 0"
    if recover_step is None:
        if mode == "resume":
            return "no recover point was written: a rerun (recover.mode=resume) stops at once"
        return "no recover point was written yet: a rerun starts over from step 0"
    return f"a rerun resumes from step {recover_step}"


@dataclass(frozen=True)
class Resumed:
    path: Path
    global_step: int
    accuracy_before: float | None
    accuracy_after: float | None
    state: dict[str, Any] = field(default_factory=dict)  # all of state.json


class Checkpointer:
    def __init__(
        self,
        cfg: TrainConfig,
        ckpt_dir: Path,
        group: LearnerRanks,
        tokenizer: Any,
        events: RunEvents,
        message: Callable[[str], None],
        *,
        steps_per_epoch: int,
        total_steps: int,
        config: dict[str, Any] | None = None,
    ) -> None:
        """``config``: the run's config as the user gave it, which recover points store
        and compare (default: ``cfg`` now); settings derived on this machine (such as
        ``actor.recompute_logprob`` for bf16 sampling) stay out of it, so the point
        resumes on a machine that derives them otherwise."""
        self.cfg, self.ckpt_dir, self.group, self.tokenizer = cfg, ckpt_dir, group, tokenizer
        self.config = cfgmod.to_dict(cfg) if config is None else config
        self.events, self.message = events, message
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        self.last_recover_time = self.last_save_time = time.time()
        # More JSON state for a recover point after step N (the trainer's sampled steps).
        self.extra: Callable[[int], dict[str, Any]] | None = None

    @property
    def running_marker(self) -> Path:
        return self.ckpt_dir / ".running"

    def rerun_note(self) -> str:
        """:func:`rerun_note` for this run as it stands on disk now."""
        path, _ = ckpt.find_recover(self.ckpt_dir)
        step = None
        if path is not None:
            step = int(json.loads((path / "state.json").read_text())["global_step"])
        return rerun_note(self.cfg.recover.mode, step, not self.running_marker.exists())

    def resume(self) -> Resumed | None:
        """Apply ``recover.mode``: auto / resume / fault load the recover point if valid."""
        mode = self.cfg.recover.mode
        if mode == "disabled":
            return None
        crashed_before = self.running_marker.exists()
        path, problems = ckpt.find_recover(self.ckpt_dir)
        for problem in problems:
            self.message(f"recover checkpoint unusable: {problem}")
            self.events.warning(f"recover checkpoint unusable: {problem}")
        if mode == "fault" and not crashed_before:
            self.message("recover.mode=fault: the last run ended cleanly; starting fresh")
            return None
        if path is None:
            where = self.ckpt_dir / ckpt.RECOVER_DIR
            if mode == "resume":
                detail = "; ".join(problems) if problems else "none found"
                raise CheckpointError(
                    f"recover.mode=resume: no valid recover checkpoint at {where} ({detail})"
                )
            self.message(f"no recover checkpoint at {where}; starting fresh")
            return None
        saved = json.loads((path / "state.json").read_text())
        defaults = cfgmod.to_dict(TrainConfig())
        diffs = ckpt.config_diff(saved.get("config", {}), self.config, defaults)
        if diffs:
            raise CheckpointError(
                f"recover checkpoint {path} was written with a different config: "
                + "; ".join(diffs[:5])
                + (" ..." if len(diffs) > 5 else "")
                + " (use another trial_name, or recover.mode=disabled to start over)"
            )
        state = self.group.load_recover(path)
        return Resumed(
            path,
            int(state["global_step"]),
            state.get("accuracy_before"),
            state.get("accuracy_after"),
            state,
        )

    def save_recover(
        self,
        global_step: int,
        epoch: int,
        accuracy_before: float | None,
        accuracy_after: float | None = None,
    ) -> None:
        state = {
            "global_step": global_step,
            "epoch": epoch,
            "epoch_step": global_step - epoch * self.steps_per_epoch,
            "accuracy_before": accuracy_before,
            "accuracy_after": accuracy_after,
            "config": self.config,
            "time": time.time(),
        }
        if self.extra is not None:
            state.update(self.extra(global_step))
        self.events.stage("save", global_step)
        path = self.group.save_recover(state)
        self.last_recover_time = time.time()
        self.events.checkpoint("recover", path, global_step)

    def after_step(self, global_step: int, epoch: int, accuracy_before: float | None) -> None:
        """Checkpoints and recover points on their step / epoch / time schedules."""
        end_of_epoch = global_step % self.steps_per_epoch == 0
        now = time.time()

        def due(
            freq_steps: int | None, freq_epochs: int | None, freq_secs: float | None, since: float
        ) -> bool:
            return bool(
                (freq_steps and global_step % freq_steps == 0)
                or (freq_epochs and end_of_epoch and (epoch + 1) % freq_epochs == 0)
                or (freq_secs and now - since >= freq_secs)
            )

        sv = self.cfg.saver
        last = global_step == self.total_steps
        if (sv.freq_steps or sv.freq_epochs or sv.freq_secs) and (
            last or due(sv.freq_steps, sv.freq_epochs, sv.freq_secs, self.last_save_time)
        ):
            self.save_hf(global_step, epoch)
        rc = self.cfg.recover
        # The last step's recover point is written after the final eval (see Trainer.train).
        if (
            rc.mode != "disabled"
            and not last
            and due(rc.freq_steps, rc.freq_epochs, rc.freq_secs, self.last_recover_time)
        ):
            self.save_recover(global_step, epoch, accuracy_before)

    def save_hf(self, global_step: int, epoch: int) -> None:
        """Hugging Face weights + tokenizer, from the unsharded policy."""
        self.events.stage("save", global_step)
        saved = ckpt.save_hf_checkpoint(
            self.ckpt_dir,
            self.group.policy,
            self.tokenizer,
            epoch=epoch,
            epoch_step=global_step - epoch * self.steps_per_epoch,
            global_step=global_step,
            keep_last=self.cfg.saver.keep_last,
        )
        self.last_save_time = time.time()
        self.events.checkpoint("hf", saved, global_step)
