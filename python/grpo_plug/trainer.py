"""The GRPO trainer: one step reads top to bottom.

    grpo-plug train --preset cpu
    grpo-plug train --preset fast experiment_name=x trial_name=y

Step N:
  1. rollout      n_samples completions per prompt from the rollout backend  [B*G]
  2. reward       weighted sum of the reward plugins (Rust grader by default)  [B*G]
  3. advantage    group-relative (Rust): grpo / dr_grpo / rloo                 [B*G]
  4. pack         sequences -> token-budget micro-batches (Rust)               [T] each
  5. learn        clipped surrogate (+ optional KL), AdamW, per minibatch
  6. weight sync  push the new policy to the backend, bump the policy version
  7. log          metrics under the seed's names; eval / checkpoints on schedule

Where this departs from the GRPO paper (Shao et al., 2024):
- No KL term by default (``actor.kl_ctl=0``), as DAPO and Dr. GRPO recommend; when
  enabled it is added to the per-token loss (k3 by default), not to the reward.
- Groups whose rewards are all equal have zero advantage; their sequences are dropped
  from the learner batch (they would only dilute the token mean and cost compute).
  ``grpo_actor/zero_adv_ratio`` reports the fraction.
- Completions cut at ``max_new_tokens`` get ``reward.no_eos_reward`` (0 by default) from
  the math grader instead of being graded, and stay in the loss so the policy learns
  to stop. ``grpo_actor/no_eos_ratio`` reports them.
- Loss aggregation is configurable (``actor.loss_agg_mode``); the paper's is
  ``seq-mean-token-mean``; the default here is ``token-mean`` (DAPO).
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grpo_plug import checkpoint as ckpt
from grpo_plug import config as cfgmod
from grpo_plug import core
from grpo_plug.config import DatasetConfig, TrainConfig

# Re-exported: callers and plugins import these from the trainer.
from grpo_plug.evaluation import (
    EvalResult,
    build_prompt,
    evaluate,
    literal_answers,
    write_jsonl,
)
from grpo_plug.learner import (
    make_optimizer,
    make_scheduler,
    recompute_old_logprobs,
    train_minibatch,
)
from grpo_plug.metrics import names as mn
from grpo_plug.metrics.emit import RunEvents
from grpo_plug.models import load_model, load_tokenizer
from grpo_plug.plugins import PluginHost, get_host
from grpo_plug.preflight import SetupError, check_machine, run_dirs
from grpo_plug.rollout.controller import RolloutController, limits_from_config
from grpo_plug.types import (
    Example,
    GenerationRequest,
    Logger,
    RolloutBackend,
    RolloutContext,
    RunInfo,
    Sample,
    SamplingParams,
    Task,
)
from grpo_plug.weight_sync import resolve_strategy_name


def version_metrics(samples: Sequence[Sample], current: int) -> dict[str, float]:
    """Samples by the policy versions of their tokens (the current one, or older)."""
    stale = sum(1 for s in samples if s.policy_version < current)
    mixed = sum(1 for s in samples if len(s.policy_versions) > 1)
    return {
        "rollout/samples_current_version": float(len(samples) - stale),
        "rollout/samples_stale_version": float(stale),
        "rollout/samples_mixed_versions": float(mixed),
    }


def gpu_memory_gb() -> float | None:
    """GPU memory this process holds now (None without CUDA)."""
    if not torch.cuda.is_available():
        return None
    return float(torch.cuda.memory_allocated() / 2**30)


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


@dataclass
class Summary:
    steps: int
    accuracy_before: float | None
    accuracy_after: float | None
    n_eval: int
    seconds: float
    log_dir: str
    peak_rss_gb: float
    checkpoint: str | None = None  # the HF checkpoint of the final step, if one was saved
    interrupted: bool = False  # stopped early on request (Ctrl-C); resumable


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        host: PluginHost | None = None,
        loggers: Sequence[Logger] | None = None,
        *,
        preset: str | None = None,
        quiet: bool = False,
    ) -> None:
        """``quiet``: status lines go only to the loggers and the event stream (the
        dashboard shows them), never straight to stderr."""
        self.cfg = cfg
        self.preset = preset
        self.quiet = quiet
        self.stop_requested = False  # set (e.g. by Ctrl-C): stop after the current step
        self.failed_loggers: set[str] = set()
        # Server health threads report through message() too; loggers are not thread-safe.
        self._message_lock = threading.Lock()
        self.host = host or get_host()
        check_machine(cfg)
        self.ckpt_dir, self.log_dir = run_dirs(cfg)
        self.events = RunEvents(self.log_dir)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if self.device == "cpu":
            # Cores this process may use (taskset/cgroups), not the machine's.
            torch.set_num_threads(len(os.sched_getaffinity(0)) or 1)

        # Components by name, validated before any heavy work.
        tasks = self.host.tasks()
        self.train_task: Task = tasks.get(cfg.train_dataset.task)(cfg.train_dataset, cfg.seed)
        self.valid_task: Task = tasks.get(cfg.valid_dataset.task)(cfg.valid_dataset, cfg.seed)
        rewards = self.host.reward_functions()
        self.reward_fns = [
            (n, rewards.get(n), w)
            for n, w in zip(cfg.reward.functions, cfg.reward.weights, strict=True)
        ]
        backend_factory = self.host.rollout_backends().get(cfg.rollout.backend)
        sync_names = self.host.weight_sync_strategies()
        if loggers is None:
            logger_reg = self.host.loggers()
            factories = [logger_reg.get(n) for n in cfg.loggers]
            run = RunInfo(
                cfg.experiment_name, cfg.trial_name, str(self.log_dir), cfgmod.to_dict(cfg)
            )
            loggers = [f(cfg, run) for f in factories]
        self.loggers = list(loggers)

        self.train_data = self.train_task.load()
        self.valid_data = self.valid_task.load()
        if len(self.train_data) < cfg.train_dataset.batch_size:
            raise SetupError(
                f"train_dataset.batch_size: {cfg.train_dataset.batch_size} is larger than the "
                f"{len(self.train_data)} training examples"
            )

        self.tokenizer = load_tokenizer(cfg.actor.path)
        self.model = load_model(cfg.actor.path, dtype=cfg.actor.dtype, device=self.device)
        if cfg.actor.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.model.config.use_cache = True
        self.ref_model = None
        if cfg.actor.kl_ctl > 0:
            self.ref_model = load_model(cfg.actor.path, dtype=cfg.actor.dtype, device=self.device)
            self.ref_model.requires_grad_(False).eval()

        self.steps_per_epoch = len(self.train_data) // cfg.train_dataset.batch_size
        self.total_steps = self.steps_per_epoch * cfg.total_train_epochs
        if cfg.total_train_steps is not None:
            self.total_steps = min(self.total_steps, cfg.total_train_steps)
        self.optimizer = make_optimizer(self.model, cfg.actor)
        self.scheduler = make_scheduler(self.optimizer, cfg.actor, self.total_steps)

        ctx = RolloutContext(
            tokenizer=self.tokenizer,
            model=self.model,
            device=self.device,
            log_dir=str(self.log_dir),
            message=self.message,
        )
        self.backend: RolloutBackend = backend_factory(cfg, ctx)
        self.rollout = RolloutController(self.backend, limits_from_config(cfg))
        self.rollout.progress = self.events.progress
        try:
            strategy = resolve_strategy_name(cfg, self.backend)
            if strategy not in sync_names:
                raise SetupError(
                    f"weight_sync.strategy={cfg.weight_sync.strategy} resolved to {strategy!r}, "
                    f"which is not available (registered: {', '.join(sync_names.names())}); "
                    "set weight_sync.strategy explicitly"
                )
            self.weight_sync = sync_names.get(strategy)(cfg)
        except BaseException:
            self.rollout.close()  # stops launched servers
            raise
        self.global_step = 0
        self.prompt_cache: dict[str, list[int]] = {}
        self.accuracy_before: float | None = None
        self.accuracy_after: float | None = None  # set when resuming a finished run
        self.last_recover_time = time.time()
        self.last_save_time = time.time()
        self.resumed_from: Path | None = None
        try:
            self.maybe_resume()
            if not self.backend.colocated:
                self.push_weights()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ helpers

    def push_weights(self) -> None:
        """Bring a backend with its own weights (a fresh, attached or relaunched
        server) to the learner's, e.g. the restored ones, before its first rollout."""
        t0 = time.perf_counter()
        self.weight_sync.sync(self.model, self.backend, self.global_step)
        self.message(
            f"{self.weight_sync.name} weight sync of version {self.global_step} to "
            f"{self.backend.name}: {time.perf_counter() - t0:.2f}s"
        )

    def message(self, text: str) -> None:
        with self._message_lock:
            self.events.message(text)
            for lg in self.loggers:
                self._guard(lg, lg.message, text)
            if not self.quiet and not any(lg.name == "console" for lg in self.loggers):
                # Status lines (resume, fresh start) must reach the terminal anyway.
                print(f"grpo-plug: {text}", file=sys.stderr)

    def log(self, metrics: dict[str, float], epoch: int) -> None:
        for lg in self.loggers:
            self._guard(lg, lg.log, metrics, self.global_step, epoch)

    def _guard(self, lg: Logger, call: Callable[..., None], *args: Any) -> None:
        """A failing logger (network down, disk full) warns once and never stops the run."""
        try:
            call(*args)
        except Exception as e:
            if lg.name in self.failed_loggers:
                return
            self.failed_loggers.add(lg.name)
            text = f"logger {lg.name!r} failed ({type(e).__name__}: {e}); training goes on"
            self.events.warning(text)  # the dashboard shows it
            if not self.quiet:
                print(f"grpo-plug: warning: {text}", file=sys.stderr)

    def prompt_ids(self, ex: Example) -> list[int]:
        if ex.uid not in self.prompt_cache:
            self.prompt_cache[ex.uid] = build_prompt(self.tokenizer, self.train_task, ex)
        return self.prompt_cache[ex.uid]

    def epoch_order(self, epoch: int) -> np.ndarray:
        n = len(self.train_data)
        if not self.cfg.train_dataset.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(n)

    def run_eval(self, label: str) -> EvalResult:
        ev_cfg: DatasetConfig = self.cfg.valid_dataset
        max_new = self.cfg.evaluator.max_new_tokens or self.cfg.gconfig.max_new_tokens
        self.message(f"evaluating {label} on {len(self.valid_data)} {ev_cfg.task} problems...")
        self.events.stage("eval", self.global_step, total=len(self.valid_data))
        res = evaluate(
            self.rollout,
            self.tokenizer,
            self.valid_task,
            self.valid_data,
            max_new_tokens=max_new,
            batch_size=self.cfg.rollout.max_batch_size,
        )
        write_jsonl(self.log_dir / f"eval_{label}.jsonl", res.records)
        return res

    # ------------------------------------------------------------------ recovery

    @property
    def running_marker(self) -> Path:
        return self.ckpt_dir / ".running"

    def maybe_resume(self) -> None:
        """Apply ``recover.mode``: auto / resume / fault load the recover point if valid."""
        mode = self.cfg.recover.mode
        if mode == "disabled":
            return
        crashed_before = self.running_marker.exists()
        path, problems = ckpt.find_recover(self.ckpt_dir)
        for problem in problems:
            self.message(f"recover checkpoint unusable: {problem}")
            self.events.warning(f"recover checkpoint unusable: {problem}")
        if mode == "fault" and not crashed_before:
            self.message("recover.mode=fault: the last run ended cleanly; starting fresh")
            return
        if path is None:
            where = self.ckpt_dir / ckpt.RECOVER_DIR
            if mode == "resume":
                detail = "; ".join(problems) if problems else "none found"
                raise ckpt.CheckpointError(
                    f"recover.mode=resume: no valid recover checkpoint at {where} ({detail})"
                )
            self.message(f"no recover checkpoint at {where}; starting fresh")
            return
        saved = json.loads((path / "state.json").read_text())
        diffs = ckpt.config_diff(saved.get("config", {}), cfgmod.to_dict(self.cfg))
        if diffs:
            raise ckpt.CheckpointError(
                f"recover checkpoint {path} was written with a different config: "
                + "; ".join(diffs[:5])
                + (" ..." if len(diffs) > 5 else "")
                + " (use another trial_name, or recover.mode=disabled to start over)"
            )
        state = ckpt.load_recover(
            path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler
        )
        self.global_step = int(state["global_step"])
        self.accuracy_before = state.get("accuracy_before")
        self.accuracy_after = state.get("accuracy_after")
        self.rollout.set_policy_version(self.global_step)
        for lg in self.loggers:
            resume = getattr(lg, "resume", None)
            if resume is not None:
                resume(self.global_step)
        self.resumed_from = path
        self.message(f"resumed from {path} at global step {self.global_step}")

    def save_recover(self, epoch: int, accuracy_after: float | None = None) -> None:
        state = {
            "global_step": self.global_step,
            "epoch": epoch,
            "epoch_step": self.global_step - epoch * self.steps_per_epoch,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": accuracy_after,
            "config": cfgmod.to_dict(self.cfg),
            "time": time.time(),
        }
        self.events.stage("save", self.global_step)
        path = ckpt.save_recover(
            self.ckpt_dir,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state=state,
        )
        self.last_recover_time = time.time()
        self.events.checkpoint("recover", path, self.global_step)

    def after_step(self, epoch: int) -> None:
        """Checkpoints and recover points on their step / epoch / time schedules."""
        end_of_epoch = self.global_step % self.steps_per_epoch == 0
        now = time.time()

        def due(
            freq_steps: int | None, freq_epochs: int | None, freq_secs: float | None, since: float
        ) -> bool:
            return bool(
                (freq_steps and self.global_step % freq_steps == 0)
                or (freq_epochs and end_of_epoch and (epoch + 1) % freq_epochs == 0)
                or (freq_secs and now - since >= freq_secs)
            )

        sv = self.cfg.saver
        last = self.global_step == self.total_steps
        if (sv.freq_steps or sv.freq_epochs or sv.freq_secs) and (
            last or due(sv.freq_steps, sv.freq_epochs, sv.freq_secs, self.last_save_time)
        ):
            self.events.stage("save", self.global_step)
            saved = ckpt.save_hf_checkpoint(
                self.ckpt_dir,
                self.model,
                self.tokenizer,
                epoch=epoch,
                epoch_step=self.global_step - epoch * self.steps_per_epoch,
                global_step=self.global_step,
                keep_last=sv.keep_last,
            )
            self.last_save_time = time.time()
            self.events.checkpoint("hf", saved, self.global_step)
        rc = self.cfg.recover
        # The last step's recover point is written after the final eval (see train()).
        if (
            rc.mode != "disabled"
            and not last
            and due(rc.freq_steps, rc.freq_epochs, rc.freq_secs, self.last_recover_time)
        ):
            self.save_recover(epoch)

    # ------------------------------------------------------------------ one step

    def step(self, batch: Sequence[Example], epoch: int) -> dict[str, float]:
        cfg = self.cfg
        G = cfg.gconfig.n_samples
        t0 = time.perf_counter()
        # Sampling noise depends only on (seed, step), so a resumed run samples the same.
        torch.manual_seed(cfg.seed * 1_000_003 + self.global_step)

        # 1. rollout: B prompts x G samples
        sp = SamplingParams(
            cfg.gconfig.max_new_tokens,
            cfg.gconfig.temperature,
            cfg.gconfig.top_p,
            cfg.gconfig.top_k,
        )
        reqs = [
            GenerationRequest(ex.uid, self.prompt_ids(ex), G, sp, seed=self.request_seed(i))
            for i, ex in enumerate(batch)
        ]
        self.events.stage("rollout", self.global_step + 1, total=len(reqs) * G)
        groups = self.rollout.generate(reqs)
        samples = [s for g in groups for s in g]  # [B*G], grouped by prompt
        prompts = [list(r.prompt_ids) for r in reqs for _ in range(G)]
        golds = [ex.gold for ex in batch for _ in range(G)]
        texts = [self.tokenizer.decode(s.output_ids, skip_special_tokens=True) for s in samples]
        # Cut at max_new_tokens; the controller has resubmitted every abort.
        no_eos = np.array([s.finish_reason == "length" for s in samples])
        rollout_stats = {**self.rollout.pop_metrics(), **version_metrics(samples, self.global_step)}
        t1 = time.perf_counter()

        # 2. reward: weighted sum of reward plugins                         # [B*G]
        self.events.stage("reward", self.global_step + 1)
        prompt_texts = [ex.question for ex in batch for _ in range(G)]
        rewards = np.zeros(len(samples), dtype=np.float32)
        task_reward = np.zeros(len(samples), dtype=np.float32)
        for name, fn, weight in self.reward_fns:
            vals = np.array(
                [
                    0.0 if v is None else v
                    for v in fn(
                        prompt_texts,
                        texts,
                        golds=golds,
                        literal_answers=literal_answers(self.train_task),
                    )
                ],
                dtype=np.float32,
            )
            if name == "math_accuracy":  # the seed's task reward = accuracy
                task_reward = vals.copy()
                if cfg.reward.no_eos_reward is not None:
                    vals[no_eos] = cfg.reward.no_eos_reward
            rewards += weight * vals
        t2 = time.perf_counter()

        # 3. advantages, group-relative                                      # [B*G]
        adv = core.group_advantages(
            rewards, G, mode=cfg.actor.adv_mode, normalize_batch=cfg.actor.adv_batch_norm
        )
        group_has_signal = np.abs(adv.reshape(-1, G)).max(axis=1) > 0  # [B]
        keep = np.repeat(group_has_signal, G)

        # 4+5. pack and learn, minibatch by minibatch
        self.events.stage("train", self.global_step + 1)
        stats: dict[str, float] = {}
        kept = np.flatnonzero(keep)
        grad_norm = 0.0
        if len(kept) > 0:
            self.model.train()
            chunks = np.array_split(kept, min(cfg.actor.ppo_n_minibatches, len(kept)))
            acc: dict[str, float] = {}
            for idx in chunks:
                mbs = core.pack_microbatches(
                    [prompts[i] for i in idx],
                    [samples[i].output_ids for i in idx],
                    [samples[i].logprobs for i in idx],
                    adv[idx],
                    max_tokens=cfg.actor.mb_max_tokens,
                )[0]
                if cfg.actor.recompute_logprob:
                    recompute_old_logprobs(self.model, mbs, cfg.actor, self._temp())
                st = train_minibatch(
                    self.model,
                    self.ref_model,
                    mbs,
                    cfg.actor,
                    temperature=self._temp(),
                    max_new_tokens=cfg.gconfig.max_new_tokens,
                )
                max_norm = cfg.actor.max_grad_norm if cfg.actor.max_grad_norm > 0 else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
                ckpt.fault_point("mid_optimizer_step")
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                for k, v in vars(st).items():
                    acc[k] = acc.get(k, 0.0) + float(v) / len(chunks)
            stats = {
                mn.LOSS: acc["loss"],
                mn.KL: acc["kl"],
                mn.CLIP_RATIO: acc["clip_ratio"],
                mn.ENTROPY: acc["entropy"],
                mn.IMPORTANCE_WEIGHT: acc["ratio_mean"],
                mn.LOGPROB_DIFF: acc["logp_diff"],
                mn.GRAD_NORM: grad_norm,
            }
        lr = self.scheduler.get_last_lr()[0]
        with warnings.catch_warnings():
            # The schedule follows global steps, also those with no optimizer step.
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()
        t3 = time.perf_counter()

        # 6. weight sync
        self.events.stage("weight_sync", self.global_step + 1)
        self.global_step += 1
        self.weight_sync.sync(self.model, self.backend, self.global_step)
        t4 = time.perf_counter()

        # 7. metrics
        lens = np.array([len(s.output_ids) for s in samples], dtype=np.float64)
        self.events.sample(
            prompt_texts[-1], texts[-1], core.extract_answer(texts[-1]), float(rewards[-1])
        )
        return {
            mn.TASK_REWARD: float(task_reward.mean()),
            mn.TASK_REWARD_MIN: float(task_reward.min()),
            mn.TASK_REWARD_MAX: float(task_reward.max()),
            mn.REWARD: float(rewards.mean()),
            **stats,
            mn.LR: float(lr),
            mn.SEQ_LEN: float(lens.mean()),
            mn.SEQ_LEN_MAX: float(lens.max()),
            mn.NO_EOS: float(no_eos.mean()),
            mn.ZERO_ADV: float(1.0 - group_has_signal.mean()),
            mn.POLICY_VERSION: float(self.global_step),
            mn.TIME_ROLLOUT: t1 - t0,
            mn.TIME_REWARD: t2 - t1,
            mn.TIME_TRAIN: t3 - t2,
            mn.TIME_WEIGHT_SYNC: t4 - t3,
            **{
                mn.weight_sync_phase(phase): secs
                for phase, secs in getattr(self.weight_sync, "seconds", {}).items()
            },
            mn.TIME_STEP: t4 - t0,
            mn.GEN_TOKENS_PER_S: float(lens.sum() / max(t1 - t0, 1e-9)),
            mn.PEAK_RSS_GB: peak_rss_gb(),
            **rollout_stats,
        }

    def request_seed(self, index: int) -> int:
        """Seed of request ``index`` this step (backends with per-request seeds): the
        same in a resumed run as in the uninterrupted one."""
        seq = np.random.SeedSequence([self.cfg.seed, self.global_step, index])
        return int(seq.generate_state(1)[0]) * self.cfg.gconfig.n_samples

    def _temp(self) -> float:
        t = self.cfg.gconfig.temperature
        return t if t > 0 else 1.0

    # ------------------------------------------------------------------ the run

    def train(self) -> Summary:
        cfg = self.cfg
        start = time.time()
        self.announce()
        self.message(
            f"training {cfg.actor.path} on {cfg.train_dataset.task} "
            f"({len(self.train_data)} examples): {self.total_steps} steps of "
            f"{cfg.train_dataset.batch_size} prompts x {cfg.gconfig.n_samples} samples; "
            f"logs in {self.log_dir}"
        )
        if self.resumed_from is None and cfg.evaluator.eval_before and self.valid_data:
            before = self.run_eval("before")
            self.accuracy_before = before.accuracy
            self.log({mn.EVAL_ACCURACY: before.accuracy}, 0)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.running_marker.write_text(str(os.getpid()))
        interrupted = False
        bs = cfg.train_dataset.batch_size
        epoch = 0
        while self.global_step < self.total_steps:
            epoch = self.global_step // self.steps_per_epoch
            pos = self.global_step % self.steps_per_epoch
            order = self.epoch_order(epoch)
            batch = [self.train_data[i] for i in order[pos * bs : (pos + 1) * bs]]
            metrics = self.step(batch, epoch)
            ev = cfg.evaluator
            end_of_epoch = self.global_step % self.steps_per_epoch == 0
            if (ev.freq_steps and self.global_step % ev.freq_steps == 0) or (
                ev.freq_epochs and end_of_epoch and (epoch + 1) % ev.freq_epochs == 0
            ):
                res = self.run_eval(f"step{self.global_step}")
                metrics[mn.EVAL_ACCURACY] = res.accuracy
            self.log(metrics, epoch)
            self.events.health(rss_gb=metrics[mn.PEAK_RSS_GB], gpu_gb=gpu_memory_gb())
            self.after_step(epoch)
            ckpt.fault_point("between_steps")
            if self.stop_requested and self.global_step < self.total_steps:
                interrupted = True
                if cfg.recover.mode != "disabled":
                    self.save_recover(epoch)
                break
        if not interrupted and self.accuracy_after is None and self.valid_data:
            self.accuracy_after = self.run_eval("after").accuracy
            self.log({mn.EVAL_ACCURACY: self.accuracy_after}, epoch)
            if cfg.recover.mode != "disabled":
                self.save_recover(epoch, self.accuracy_after)
        final = [
            c for c in ckpt.list_hf_checkpoints(self.ckpt_dir) if c.global_step == self.global_step
        ]
        summary = Summary(
            steps=self.global_step,
            accuracy_before=self.accuracy_before,
            accuracy_after=self.accuracy_after,
            n_eval=len(self.valid_data),
            seconds=time.time() - start,
            log_dir=str(self.log_dir),
            peak_rss_gb=peak_rss_gb(),
            checkpoint=str(final[-1].path) if final else None,
            interrupted=interrupted,
        )
        (self.log_dir / "summary.json").write_text(json.dumps(vars(summary), indent=2))
        self.running_marker.unlink(missing_ok=True)
        self.events.end("interrupted" if interrupted else "done", summary=vars(summary))
        return summary

    def announce(self) -> None:
        """The run header the dashboard and ``watch`` show."""
        cfg = self.cfg
        devices = (
            f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
            if self.device == "cuda"
            else f"cpu x {torch.get_num_threads()} threads"
        )
        self.events.run(
            experiment=cfg.experiment_name,
            trial=cfg.trial_name,
            preset=self.preset,
            model=cfg.actor.path,
            backend=self.backend.name,
            weight_sync=self.weight_sync.name,
            devices=devices,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            resumed_from=self.global_step if self.resumed_from is not None else None,
            pid=os.getpid(),
        )

    def close(self) -> None:
        try:
            # The strategy first: a process group must be left while its servers live.
            weight_sync = getattr(self, "weight_sync", None)
            try:
                if weight_sync is not None:
                    weight_sync.close()
            finally:
                self.rollout.close()  # and the backend: launched servers stop here
        finally:
            for lg in self.loggers:
                lg.close()
            self.events.close()
