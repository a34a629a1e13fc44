"""grpo-plug vs TRL's GRPOTrainer: seconds and reward per step, same model, task, settings.

    .venv/bin/python bench/bench_trl.py [--steps 6] [--prompts 4] [--samples 8] [--tokens 64]
                                        [--gradient-checkpointing] [--sample-dtype auto]

Both train the embedded SmolLM2-135M-Instruct (fp32, CPU) on the `arith` task with
the same prompts per step, samples per prompt, max new tokens, learning rate,
temperature, no KL and gradient checkpointing (off on both unless
``--gradient-checkpointing``; TRL's own default is on, ours off). Both sample in fp32
unless ``--sample-dtype auto`` (the cpu preset's setting: grpo-plug samples with a bf16
copy where the CPU has native bf16). The runs alternate step by step in one process
(a TRL step, then a grpo-plug step) so machine noise hits both alike. Prints a table
per step, the medians and the ratio grpo-plug / TRL (goal <= 0.5).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="steps per trainer")
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step")
    ap.add_argument("--samples", type=int, default=8, help="samples per prompt")
    ap.add_argument("--tokens", type=int, default=64, help="max new tokens")
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass, on both sides (default: off on both)",
    )
    ap.add_argument(
        "--sample-dtype",
        choices=["float32", "auto"],
        default="float32",
        help="grpo-plug's rollout.sample_dtype (default float32, TRL's own; the cpu preset "
        "says auto: a bf16 sampling copy where the CPU has native bf16)",
    )
    args = ap.parse_args()

    import torch

    torch.set_num_threads(torch.get_num_threads())
    out = Path(tempfile.mkdtemp(prefix="bench-trl-"))
    ours = ours_trainer(args, out)
    times = Times()
    trl = trl_trainer(args, out, ours, times)
    trl.train()
    ours.close()
    report(args, times, torch.get_num_threads())


@dataclass
class Times:
    """Seconds and rewards per step of each trainer."""

    ours: list[float] = field(default_factory=list)
    ours_rewards: list[float] = field(default_factory=list)
    trl: list[float] = field(default_factory=list)
    trl_rewards: list[float] = field(default_factory=list)


def ours_trainer(args: argparse.Namespace, out: Path) -> Any:
    """grpo-plug's trainer with the bench's settings (cpu preset otherwise)."""
    from grpo_plug import config as cfgmod
    from grpo_plug.trainer import Trainer

    overrides = [
        f"cluster.fileroot={out / 'grpo-plug'}",
        f"train_dataset.batch_size={args.prompts}",
        f"gconfig.n_samples={args.samples}",
        f"gconfig.max_new_tokens={args.tokens}",
        f"actor.lr={args.lr}",
        f"actor.gradient_checkpointing={str(args.gradient_checkpointing).lower()}",
        f"rollout.sample_dtype={args.sample_dtype}",
        "actor.kl_ctl=0",
        "evaluator.eval_before=false",
        "valid_dataset.max_samples=1",
        "recover.mode=disabled",
        "loggers=jsonl",
        f"total_train_steps={args.steps}",
    ]
    return Trainer(cfgmod.load(preset="cpu", overrides=overrides))


def trl_trainer(args: argparse.Namespace, out: Path, ours: Any, times: Times) -> Any:
    """TRL's GRPOTrainer on the same problems, grader and settings; after each of its
    steps a callback runs one grpo-plug step, each timed on its own."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from grpo_plug import core
    from grpo_plug.models import resolve_model_path

    data = ours.train_data
    # TRL gets the same problems as chat prompts; its reward is the same Rust grader.
    rows = [
        {"prompt": [{"role": "user", "content": ours.train_task.user_message(ex)}], "gold": ex.gold}
        for ex in data
    ]

    def accuracy(prompts: Any, completions: Any, gold: list[str], **_: Any) -> list[float]:
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [float(x) for x in core.grade(texts, gold)]

    trl_cfg = GRPOConfig(
        output_dir=str(out / "trl"),
        learning_rate=args.lr,
        per_device_train_batch_size=args.prompts * args.samples,
        gradient_accumulation_steps=1,
        num_generations=args.samples,
        max_completion_length=args.tokens,
        temperature=1.0,
        beta=0.0,
        gradient_checkpointing=args.gradient_checkpointing,
        max_steps=args.steps,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        seed=ours.cfg.seed,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    model_dir = resolve_model_path("embedded:smollm2-135m")
    tok = AutoTokenizer.from_pretrained(model_dir)
    trl_model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return GRPOTrainer(
        model=trl_model,
        reward_funcs=[accuracy],
        args=trl_cfg,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[alternate(ours, times)],
    )


def alternate(ours: Any, times: Times) -> Any:
    """A TRL callback: each TRL step timed, then one grpo-plug step on the next prompts
    of its own epoch order, timed on its own."""
    from transformers import TrainerCallback

    data = ours.train_data
    bs = ours.cfg.train_dataset.batch_size
    order = ours.sampler.epoch_order(0)

    class Alternate(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            times.trl.append(time.perf_counter() - self.t0)
            # Now one grpo-plug step, timed on its own.
            pos = ours.global_step
            batch = [data[i] for i in order[pos * bs : (pos + 1) * bs]]
            t0 = time.perf_counter()
            m = ours.step(batch, 0)
            times.ours.append(time.perf_counter() - t0)
            times.ours_rewards.append(m["grpo_actor/task_reward/avg"])

        def on_log(
            self, _args: Any, _state: Any, _control: Any, logs: Any = None, **k: Any
        ) -> None:
            if logs and "rewards/accuracy/mean" in logs:
                times.trl_rewards.append(float(logs["rewards/accuracy/mean"]))
            elif logs and "reward" in logs:
                times.trl_rewards.append(float(logs["reward"]))

    return Alternate()


def report(args: argparse.Namespace, times: Times, threads: int) -> None:
    print(
        f"\n{args.prompts} prompts x {args.samples} samples x <= {args.tokens} new tokens, "
        f"lr {args.lr}, fp32, {threads} threads, gradient checkpointing "
        f"{'on' if args.gradient_checkpointing else 'off'} (both)"
    )
    print(f"{'step':>4} {'TRL s':>8} {'ours s':>8} {'TRL reward':>11} {'ours reward':>12}")
    for i in range(len(times.ours)):
        tr = times.trl_rewards[i] if i < len(times.trl_rewards) else float("nan")
        print(
            f"{i + 1:>4} {times.trl[i]:>8.2f} {times.ours[i]:>8.2f} {tr:>11.3f} "
            f"{times.ours_rewards[i]:>12.3f}"
        )
    # The first step of each includes warm-up; medians skip nothing but are robust to it.
    t_trl, t_ours = statistics.median(times.trl), statistics.median(times.ours)
    print(
        f"median s/step: TRL {t_trl:.2f}  grpo-plug {t_ours:.2f}  "
        f"ratio grpo-plug/TRL = {t_ours / t_trl:.2f} (goal <= 0.5)"
    )


if __name__ == "__main__":
    main()
