"""The end of ``grpo-plug train``: steps, time, memory, held-out accuracy (also per
category), and the commands that evaluate or resume the run."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from rich.markup import escape

from grpo_plug import config as cfgmod
from grpo_plug.cli.interactive import resume_command
from grpo_plug.cli.io import out


def print_summary(cfg: cfgmod.TrainConfig, summary: Any) -> None:
    if summary.interrupted:
        note = summary.rerun or "a rerun resumes from the last recover point"
        out.print(
            f"[bold]stopped[/bold] after step {summary.steps} on request "
            f"({summary.seconds / 60:.1f} min); {escape(note)}: {escape(resume_command())}"
        )
        out.print(f"metrics and predictions: {summary.log_dir}")
        return
    out.print(
        f"[bold]done[/bold]: {summary.steps} steps in {summary.seconds / 60:.1f} min, "
        f"peak memory {summary.peak_rss_gb:.2f} GiB"
    )
    if summary.accuracy_before is not None and summary.accuracy_after is not None:
        delta = 100 * (summary.accuracy_after - summary.accuracy_before)
        out.print(
            f"held-out accuracy on {summary.n_eval} {cfg.valid_dataset.task} problems: "
            f"before {100 * summary.accuracy_before:.1f}% -> after "
            f"{100 * summary.accuracy_after:.1f}% ({delta:+.1f} points)"
        )
        print_categories(Path(summary.log_dir))
    out.print(f"metrics and predictions: {summary.log_dir}")
    if summary.checkpoint:
        out.print(f"trained model (Hugging Face format): {summary.checkpoint}")
        out.print(f"evaluate it: {escape(eval_hint(cfg, summary.checkpoint))}")


def print_categories(log_dir: Path) -> None:
    """Per-category accuracy before -> after, from the run's eval files (which survive a
    resume, unlike anything held in memory)."""
    from grpo_plug.evaluation import read_jsonl

    paths = [log_dir / "eval_before.jsonl", log_dir / "eval_after.jsonl"]
    if all(p.is_file() for p in paths):
        print_category_rows(read_jsonl(paths[1]), read_jsonl(paths[0]))


def print_category_rows(
    records: list[dict[str, Any]], before: list[dict[str, Any]] | None = None
) -> None:
    """One line per example category: accuracy (before -> after when ``before`` is given)."""
    from grpo_plug.evaluation import accuracy_by_category

    now, then = accuracy_by_category(records), accuracy_by_category(before or [])
    for cat in sorted(now, key=lambda c: (len(c), c)):
        ok, n = now[cat]
        line = f"  {escape(cat):>4}: "
        if before is not None:
            ok0, n0 = then.get(cat, (0, 0))
            line += f"{100 * ok0 / max(1, n0):5.1f}% -> "
        out.print(line + f"{100 * ok / n:5.1f}% ({ok}/{n})")


def eval_hint(cfg: cfgmod.TrainConfig, checkpoint: str) -> str:
    """The `grpo-plug eval` command that re-measures the summary's held-out accuracy: the
    same problems, generated in batches of the same size (padding can flip a greedy
    answer)."""
    from grpo_plug.evaluation import eval_batch_size

    vd = cfg.valid_dataset
    parts = ["grpo-plug eval", f"--model-path {shlex.quote(checkpoint)}", f"--task {vd.task}"]
    if vd.path:
        parts.append(f"--data {shlex.quote(vd.path)}")
    if vd.split != "test":
        parts.append(f"--split {shlex.quote(vd.split)}")
    if vd.max_samples:
        parts.append(f"--max-samples {vd.max_samples}")
    parts.append(f"--max-new-tokens {cfg.evaluator.max_new_tokens or cfg.gconfig.max_new_tokens}")
    parts.append(f"--batch-size {eval_batch_size(cfg)}")
    parts.append(f"--seed {cfg.seed}")
    if vd.shuffle:
        parts.append("shuffle=true")
    if vd.task == "arith":  # the task's knobs, where they differ from eval's defaults
        parts += _changed_knobs(vd, "")
        # The held-out set leaves out the training problems, made at these knobs.
        parts += _changed_knobs(cfg.train_dataset, "train_dataset.")
    return " ".join(parts)


def _changed_knobs(ds: cfgmod.DatasetConfig, prefix: str) -> list[str]:
    defaults = type(ds)()
    return [
        shlex.quote(f"{prefix}{f.name}={getattr(ds, f.name)}")
        for f in dataclasses.fields(ds)
        if f.name.startswith("arith_") and getattr(ds, f.name) != getattr(defaults, f.name)
    ]
