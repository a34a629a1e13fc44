"""The GRPO trainer: one step reads top to bottom.

    grpo-plug train --preset cpu
    grpo-plug train --preset fast experiment_name=x trial_name=y

Under torchrun (``torchrun --nproc-per-node N -m grpo_plug train ...``) only rank 0
runs this loop; the other ranks follow it (``grpo_plug.learner.ranks``) and join the
sharded learner's collectives: train steps, recover points, resume.

Step N:
  1. rollout      n_samples completions per prompt from the rollout backend  [B*G]
  2. reward       weighted sum of the reward plugins (Rust grader by default)  [B*G]
  3. advantage    group-relative (Rust): grpo / dr_grpo / rloo                 [B*G]
  4. pack         sequences -> token-budget micro-batches (Rust)               [T] each
  5. learn        clipped surrogate (+ optional KL), AdamW, per minibatch
  6. weight sync  push the new policy to the backend, bump the policy version
  7. log          metrics under the seed's names; eval / checkpoints on schedule

With ``rollout.max_head_offpolicyness = k >= 1`` stages 1-3 of the coming steps run in a
producer thread while the learner trains (``rollout/ahead.py``); step N then takes its
batch from the producer, sampled by policy version >= N - k.

Where this departs from the GRPO paper (Shao et al., 2024):
- No KL term by default (``actor.kl_ctl=0``), as DAPO and Dr. GRPO recommend; when
  enabled it is added to the per-token loss (k3 by default), not to the reward.
- Groups whose rewards are all equal have zero advantage; their sequences are dropped
  from the learner batch (they would only dilute the token mean and cost compute).
  ``grpo_actor/zero_adv_ratio`` reports the fraction. With ``dynamic_sampling`` set, a
  step short of groups with signal samples more prompts (``group_sampling.py``).
- Completions cut at ``max_new_tokens`` get ``reward.no_eos_reward`` (0 by default) from
  the math grader instead of being graded, and stay in the loss so the policy learns
  to stop. ``grpo_actor/no_eos_ratio`` reports them.
- Loss aggregation is configurable (``actor.loss_agg_mode``); the paper's is
  ``seq-mean-token-mean``; the default here is ``token-mean`` (DAPO).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grpo_plug import components, core, cpu_load, group_sampling
from grpo_plug import config as cfgmod
from grpo_plug.batches import SampledStep, StepSampler
from grpo_plug.config import TrainConfig
from grpo_plug.data.tasks import held_out_examples, load_examples
from grpo_plug.errors import SetupError
from grpo_plug.evaluation import EvalResult, eval_batch_size, evaluate, write_jsonl
from grpo_plug.faults import fault_point
from grpo_plug.learner import Learner, LearnerBatch, dist
from grpo_plug.learner.actor import resolve_attention
from grpo_plug.learner.ranks import LearnerRanks, seed_all, use_thread_plan
from grpo_plug.metrics import names as mn
from grpo_plug.metrics.emit import RunEvents
from grpo_plug.metrics.fanout import (
    LoggerFanout,
    gpu_memory_gb,
    peak_rss_gb,
    step_metrics,
    version_metrics,
)
from grpo_plug.metrics.watchdog import ZeroRewardWatchdog
from grpo_plug.models import load_tokenizer
from grpo_plug.plan import resolve as resolve_plan
from grpo_plug.plugins import PluginHost, get_host
from grpo_plug.preflight import check_machine, check_world_size
from grpo_plug.recovery.schedule import Checkpointer
from grpo_plug.rollout.ahead import AheadRollout, check_backend, plain_loss_warning
from grpo_plug.rollout.controller import RolloutController, limits_from_config
from grpo_plug.summary import Summary as Summary
from grpo_plug.summary import finish
from grpo_plug.types import (
    Example,
    Logger,
    RolloutBackend,
    RolloutBackendFactory,
    RolloutContext,
    ServerBackend,
)


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
        self.ahead: AheadRollout | None = None  # the producer, when k >= 1
        # Before any component derives settings into cfg (make_hf_backend may switch
        # actor.recompute_logprob on): what recover points store and compare.
        self.given_config = cfgmod.to_dict(cfg)
        self.preset = preset
        self.quiet = quiet
        self.watchdog = ZeroRewardWatchdog(cfg.rollout.zero_reward_steps)
        self.server_restarts = 0.0
        self.stop_requested = False  # set (e.g. by Ctrl-C): stop after the current step
        self.host = host or get_host()
        self._place()

        # Components by name, validated before any heavy work.
        self.train_task, self.valid_task = components.tasks(self.host, cfg)
        self.reward_fns = components.rewards(self.host, cfg)
        backend_factory = self.host.rollout_backends().get(cfg.rollout.backend)
        components.check_sync_pairing(self.host, cfg)  # before any model loads
        try:  # what actor.attention runs here: an impossible choice stops the run now
            derived = {"actor.attention": resolve_attention(cfg.actor, self.info)}
        except ValueError as e:
            raise SetupError(str(e)) from None
        failed_loggers: list[str] = []
        if loggers is None:
            loggers = components.loggers(
                self.host, cfg, self.log_dir, derived, failed_loggers.append
            )
        self.loggers = list(loggers)
        self.fanout = LoggerFanout(
            self.loggers,
            self.events,
            quiet=quiet,
            terminal=components.prints_to_terminal(self.host, self.loggers),
        )
        for text in failed_loggers:
            self.warn(text)
        self._load_data_and_learner()
        self._start_rollout(backend_factory)
        self.sampler = StepSampler(
            cfg, self.tokenizer, self.train_task, self.reward_fns, self.train_data
        )
        self.saved_ahead: list[dict[str, Any]] = []  # its finished steps, from a recover point
        self.global_step = 0
        self.accuracy_before: float | None = None
        self.accuracy_after: float | None = None  # set when resuming a finished run
        self.resumed_from: Path | None = None
        self._resume_or_start()

    def _resume_or_start(self) -> None:
        """The recover schedule; apply ``recover.mode``, then bring a backend with its
        own weights to the learner's."""
        cfg = self.cfg
        self.checkpointer = Checkpointer(
            cfg,
            self.ckpt_dir,
            self.group,
            self.tokenizer,
            self.events,
            self.message,
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            config=self.given_config,
        )
        self.checkpointer.extra = self._ahead_state
        try:
            self.maybe_resume()
            if not self.backend.colocated:
                self.push_weights()
        except BaseException:
            self.close()
            raise

    def _place(self) -> None:
        """Where this run lives: machine checks, the run plan, this rank, the event
        stream, the seeds and the thread budget."""
        cfg = self.cfg
        check_machine(cfg)
        self.plan = resolve_plan(cfg)
        self.ckpt_dir, self.log_dir = self.plan.ckpt_dir, self.plan.log_dir
        self.info = dist.learner_dist(cfg)
        if not self.info.is_main:
            raise SetupError(
                f"rank {self.info.rank}: only rank 0 runs the trainer; the others run "
                "grpo_plug.learner.ranks.follow(cfg)"
            )
        check_world_size(cfg, self.info.world_size)
        dist.init(self.info)
        self.events = RunEvents(self.log_dir)
        self.device = str(self.info.device)
        seed_all(cfg.seed)
        self.threads = use_thread_plan(cfg)
        self.load_check = cpu_load.BusyCheck(self.threads.cores)  # said when train() starts
        one_cpu_rank = self.info.device.type == "cpu" and not self.info.distributed
        adapt = cfg.cluster.adapt_threads and one_cpu_rank
        self.adaptive = cpu_load.Adaptive(self.threads) if adapt else None

    def _load_data_and_learner(self) -> None:
        """The examples, the tokenizer, the step counts and the learner (its ranks)."""
        cfg = self.cfg
        self.train_data = load_examples(self.train_task, cfg.train_dataset)
        self.valid_data = held_out_examples(self.valid_task, cfg.valid_dataset, cfg.seed)
        if len(self.train_data) < cfg.train_dataset.batch_size:
            raise SetupError(
                f"train_dataset.batch_size: {cfg.train_dataset.batch_size} is larger than the "
                f"{len(self.train_data)} training examples"
            )
        self.tokenizer = load_tokenizer(cfg.actor.path)
        self.steps_per_epoch = len(self.train_data) // cfg.train_dataset.batch_size
        self.total_steps = self.steps_per_epoch * cfg.total_train_epochs
        if cfg.total_train_steps is not None:
            self.total_steps = min(self.total_steps, cfg.total_train_steps)
        dist.broadcast(self.total_steps, self.info)  # the followers build their learner
        self.learner = Learner(cfg, self.total_steps, self.info, self.plan)
        self.group = LearnerRanks(self.learner, self.ckpt_dir)
        self.model = self.group.policy  # whole weights: rollouts, weight sync, HF exports

    def _start_rollout(self, backend_factory: RolloutBackendFactory) -> None:
        """The rollout backend (servers start here), its controller and the sync strategy."""
        ctx = RolloutContext(
            tokenizer=self.tokenizer,
            model=self.model,
            device=self.device,
            log_dir=str(self.log_dir),
            message=self.message,
            plan=self.plan,
        )
        self.backend: RolloutBackend = backend_factory(self.cfg, ctx)
        self.rollout = RolloutController(
            self.backend, limits_from_config(self.cfg), progress=self.events.progress
        )
        try:
            check_backend(self.backend, self.cfg.rollout.max_head_offpolicyness)
            self.weight_sync = components.weight_sync(self.host, self.cfg, self.backend)
        except BaseException:
            self.rollout.close()  # stops launched servers
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

    def report_health(self, metrics: dict[str, float]) -> None:
        """Memory and server states to the dashboard; the zero-reward watchdog."""
        self.server_restarts += metrics.get(mn.SERVER_RESTARTS, 0.0)
        servers: dict[str, Any] = {}
        if isinstance(self.backend, ServerBackend):
            servers = {
                "servers": self.backend.server_states(),
                "server_restarts": self.server_restarts,
            }
        self.events.health(rss_gb=metrics[mn.PEAK_RSS_GB], gpu_gb=gpu_memory_gb(), **servers)
        self.warn(self.watchdog.observe(metrics[mn.TASK_REWARD], metrics))

    def message(self, text: str) -> None:
        self.fanout.message(text)

    def warn(self, text: str | None) -> None:
        if text is not None:
            self.events.warning(text)
            self.message(f"warning: {text}")

    def log(self, metrics: dict[str, float], epoch: int) -> None:
        self.fanout.log(metrics, self.global_step, epoch)

    def run_eval(self, label: str) -> EvalResult:
        max_new = self.cfg.evaluator.max_new_tokens or self.cfg.gconfig.max_new_tokens
        task = self.cfg.valid_dataset.task
        self.message(f"evaluating {label} on {len(self.valid_data)} {task} problems...")
        self.events.stage("eval", self.global_step, total=len(self.valid_data))
        res = evaluate(
            self.rollout,
            self.tokenizer,
            self.valid_task,
            self.valid_data,
            max_new_tokens=max_new,
            batch_size=eval_batch_size(self.cfg),
        )
        write_jsonl(self.log_dir / f"eval_{label}.jsonl", res.records)
        return res

    # ------------------------------------------------------------------ recovery

    def maybe_resume(self) -> None:
        """Apply ``recover.mode`` (see :meth:`Checkpointer.resume`)."""
        res = self.checkpointer.resume()
        if res is None:
            self.fanout.tell("start_fresh")
            return
        self.global_step = res.global_step
        self.accuracy_before = res.accuracy_before
        self.accuracy_after = res.accuracy_after
        self.saved_ahead = list(res.state.get("ahead", []))
        self.rollout.set_policy_version(self.global_step)
        self.fanout.tell("resume", self.global_step)
        self.resumed_from = res.path
        self.message(f"resumed from {res.path} at global step {self.global_step}")

    def _ahead_state(self, step: int) -> dict[str, Any]:
        """What a recover point after ``step`` steps keeps of the producer's work."""
        return {} if self.ahead is None else {"ahead": self.ahead.state(step)}

    def save_recover(self, epoch: int, accuracy_after: float | None = None) -> None:
        self.checkpointer.save_recover(
            self.global_step, epoch, self.accuracy_before, accuracy_after
        )

    # ------------------------------------------------------------------ one step

    def step(self, batch: Sequence[Example], epoch: int) -> dict[str, float]:
        cfg = self.cfg
        t0 = time.perf_counter()
        cpu = self.adaptive.step(self.backend) if self.adaptive else {}
        # Sampling noise depends only on (seed, step), so a resumed run samples the same.
        torch.manual_seed(cfg.seed * 1_000_003 + self.global_step)

        # 1-3. rollout (B prompts x G samples), reward, group advantages       # [B*G]
        roll, waited = self.collect(batch)
        got = group_sampling.normalize_scored(roll.merged(), cfg)  # adv_norm
        samples, rewards, adv = got.samples, got.rewards, got.advantages
        rollout_stats = {**roll.stats, **version_metrics(samples, self.global_step)}
        rollout_stats[mn.DYNAMIC_ROUNDS] = float(len(roll.rounds) - 1)
        rollout_stats[mn.SIGNAL_GROUPS] = float(got.has_signal.sum())
        keep = np.repeat(got.has_signal, cfg.gconfig.n_samples)
        t2 = time.perf_counter()

        # 4+5. pack and learn, minibatch by minibatch (the learner)
        self.events.stage("train", self.global_step + 1)
        stats = self.group.train_step(
            LearnerBatch(
                prompts=got.prompts,
                completions=[list(s.output_ids) for s in samples],
                logprobs=[list(s.logprobs) for s in samples],
                advantages=adv,
                kept=np.flatnonzero(keep),
            )
        )
        t3 = time.perf_counter()

        # 6. weight sync (k >= 1: then the producer's turn, see rollout/ahead.py)
        self.events.stage("weight_sync", self.global_step + 1)
        self.global_step += 1
        phases = self.weight_sync.sync(self.model, self.backend, self.global_step) or {}
        if self.ahead is not None:
            waited += self.ahead.synced(self.model, self.global_step)
        t4 = time.perf_counter()

        # 7. metrics
        if self.ahead is not None:
            step = self.global_step - 1
            rollout_stats.update(self.ahead.figures(step, got, waited, (t0, t2, t3, t4)))
        lens = np.array([len(s.output_ids) for s in samples], dtype=np.float64)
        last = got.texts[-1]
        self.events.sample(got.questions[-1], last, core.extract_answer(last), float(rewards[-1]))
        times = {mn.TIME_ROLLOUT: got.seconds_rollout, mn.TIME_REWARD: got.seconds_reward}
        times[mn.TIME_TRAIN] = t3 - t2
        times[mn.TIME_WEIGHT_SYNC] = t4 - t3
        return {
            **step_metrics(rewards, got.task_reward, lens, got.no_eos, got.has_signal, stats),
            **{mn.reward_function(n): float(v.mean()) for n, v in got.per_function.items()},
            mn.POLICY_VERSION: float(self.global_step),
            **times,
            **{mn.weight_sync_phase(phase): secs for phase, secs in phases.items()},
            mn.TIME_STEP: t4 - t0,
            mn.GEN_TOKENS_PER_S: float(lens.sum() / max(got.seconds_rollout, 1e-9)),
            mn.PEAK_RSS_GB: peak_rss_gb(),
            **cpu,
            **rollout_stats,
        }

    def collect(self, batch: Sequence[Example]) -> tuple[SampledStep, float]:
        """Stages 1-3 of this step: sampled now (k = 0), or the producer's, with the
        seconds the learner waited for it."""
        if self.ahead is None:
            got = self.sampler.sample(
                self.rollout, self.global_step, batch, stage=self.events.stage
            )
            return got, 0.0
        self.events.stage("rollout", self.global_step + 1)
        return self.ahead.take(self.global_step, batch)

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
        self.checkpointer.running_marker.write_text(str(os.getpid()))
        interrupted = False
        epoch = 0
        self.start_ahead()
        while self.global_step < self.total_steps:
            epoch = self.global_step // self.steps_per_epoch
            metrics = self.step(self.sampler.batch(self.global_step), epoch)
            ev = cfg.evaluator
            end_of_epoch = self.global_step % self.steps_per_epoch == 0
            if (ev.freq_steps and self.global_step % ev.freq_steps == 0) or (
                ev.freq_epochs and end_of_epoch and (epoch + 1) % ev.freq_epochs == 0
            ):
                res = self.run_eval(f"step{self.global_step}")
                metrics[mn.EVAL_ACCURACY] = res.accuracy
            self.log(metrics, epoch)
            self.report_health(metrics)  # may stop the run: before a new recover point
            self.checkpointer.after_step(self.global_step, epoch, self.accuracy_before)
            fault_point("between_steps")
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
        return self._finish(start, interrupted)

    def start_ahead(self) -> None:
        """With ``rollout.max_head_offpolicyness >= 1``: the producer, from this step."""
        k = self.cfg.rollout.max_head_offpolicyness
        if k == 0 or self.global_step >= self.total_steps or self.ahead is not None:
            return
        steps = (self.global_step, self.total_steps)
        gen = self.threads.generator if self.device == "cpu" else 0
        self.ahead = AheadRollout(k, self.sampler, self.rollout, steps, self.cfg.seed, gen)
        if self.ahead.restore(self.saved_ahead):
            self.message(f"{self.ahead.restored} sampled step(s) restored from the recover point")

    def _finish(self, start: float, interrupted: bool) -> Summary:
        """The run's summary; the running marker gone: a clean end."""
        self.checkpointer.running_marker.unlink(missing_ok=True)
        return finish(
            self.events,
            self.log_dir,
            self.ckpt_dir,
            steps=self.global_step,
            accuracy=(self.accuracy_before, self.accuracy_after),
            n_eval=len(self.valid_data),
            start=start,
            rerun=self.checkpointer.rerun_note() if interrupted else None,
        )

    def announce(self) -> None:
        """The run header the dashboard and ``watch`` show; the CPU threads and load."""
        cfg = self.cfg
        self.events.run(
            experiment=cfg.experiment_name,
            trial=cfg.trial_name,
            preset=self.preset,
            model=cfg.actor.path,
            backend=self.backend.name,
            weight_sync=self.weight_sync.name,
            attention=self.learner.attention,
            devices=dist.describe(self.info),
            threads=self.threads.summary(),
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            zero_reward_steps=cfg.rollout.zero_reward_steps,
            plan=self.plan.lines(),
            resumed_from=self.global_step if self.resumed_from is not None else None,
            pid=os.getpid(),
        )
        self.message(f"CPU {self.threads.summary()}")
        self.warn(self.load_check.warning())  # other processes busy on our cores
        k = cfg.rollout.max_head_offpolicyness
        self.warn(plain_loss_warning(k, cfg.actor.use_decoupled_loss))

    def close(self) -> None:
        if self.ahead is not None:
            self.ahead.close()  # before the backend it samples with goes
        try:
            # The strategy first: a process group must be left while its servers live.
            weight_sync = getattr(self, "weight_sync", None)
            try:
                if weight_sync is not None:
                    weight_sync.close()
            finally:
                self.rollout.close()  # and the backend: launched servers stop here
        finally:
            self.fanout.close()
            self.events.close()
            group = getattr(self, "group", None)
            if group is not None:
                group.stop()  # the followers return from follow()
            dist.close()
