"""The README's main job, `grpo-plug train --preset cpu`, on the real embedded model.

Shortened to two steps and 16 held-out problems, with a scratch model cache so the
GGUF conversion runs too, and the hub switched off: if the embedded model cannot be
found, converted or loaded on a machine set up only by the project's own files, this
fails (it never skips).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_main_job_smoke(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GRPO_PLUG_CACHE": str(tmp_path / "cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "disabled",
        "COLUMNS": "200",  # keep rich from wrapping the lines checked below
    }
    cmd = [
        str(BIN / "grpo-plug"),
        *("train", "--preset", "cpu"),
        *("total_train_steps=2", "valid_dataset.max_samples=16"),
        f"cluster.fileroot={tmp_path / 'out'}",
    ]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert (tmp_path / "cache" / "models" / "smollm2-135m" / "config.json").is_file()
    before, after = check_summary(out)
    (metrics_file,) = (tmp_path / "out" / "logs").rglob("metrics.jsonl")
    check_metrics(metrics_file, before, after)
    check_eval_command(out, env, tmp_path, after)
    check_watch_and_report(metrics_file.parent, env, tmp_path, before, after)


def check_summary(out: str) -> tuple[str, str]:
    """The closing lines: accuracy before and after, one line per operation that adds
    up to the 16 problems and the "after" figure. Returns (before, after) as printed."""
    m = re.search(r"before (\d+\.\d)% -> after (\d+\.\d)%", out)
    assert m, out
    assert "held-out accuracy on 16 arith problems" in out
    cats = re.findall(r"^ +([-+*]+): +[\d.]+% -> +[\d.]+% \((\d+)/(\d+)\)$", out, re.M)
    assert cats and {c[0] for c in cats} <= {"+", "-", "*"}, out
    assert sum(int(c[2]) for c in cats) == 16
    assert f"{100 * sum(int(c[1]) for c in cats) / 16:.1f}" == m.group(2)
    return m.group(1), m.group(2)


def check_metrics(metrics_file: Path, before: str, after: str) -> None:
    """Both steps logged under the seed's names; the eval rows match the summary."""
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    steps = [r for r in rows if "grpo_actor/task_reward/avg" in r]
    assert [r["global_step"] for r in steps] == [1, 2]
    always = ("grpo_actor/task_reward/avg", "grpo_actor/no_eos_ratio", "grpo_actor/seq_len/avg")
    always += ("grpo_actor/zero_adv_ratio", "timeperf/rollout", "timeperf/train_step")
    for name in always:
        assert all(name in r for r in steps), name
    # A step whose groups all have zero advantage takes no optimizer step, so no loss.
    learned = [r for r in steps if r["grpo_actor/zero_adv_ratio"] < 1]
    assert learned, steps  # else the checks below check nothing
    for name in ("grpo_actor/loss", "grpo_actor/kl", "grpo_actor/clip_ratio"):
        assert all(name in r for r in learned), name
    for name in ("grpo_actor/entropy", "grpo_actor/grad_norm"):
        assert all(name in r for r in learned), name
    evals = [r["grpo-eval/task_reward/avg"] for r in rows if "grpo-eval/task_reward/avg" in r]
    assert [f"{100 * e:.1f}" for e in (evals[0], evals[-1])] == [before, after]


def check_eval_command(out: str, env: dict[str, str], tmp_path: Path, after: str) -> None:
    """The final model is saved, and the eval command the run prints works on it and
    re-measures the "after" accuracy."""
    ckpt = re.search(r"trained model \(Hugging Face format\): (\S+)", out)
    assert ckpt and (Path(ckpt.group(1)) / "config.json").is_file(), out
    assert ckpt.group(1).endswith("default/epoch0epochstep2globalstep2")
    hint = re.search(r"evaluate it: (grpo-plug eval .*)", out)
    assert hint, out
    argv = shlex.split(hint.group(1))
    ev = subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ev.returncode == 0, ev.stdout[-3000:] + ev.stderr[-3000:]
    acc = re.search(r"accuracy[^0-9]*(\d+\.\d)%", ev.stdout)
    assert acc, ev.stdout
    # Same model, same 16 problems, greedy: at most one problem may flip (batching).
    assert abs(float(acc.group(1)) - float(after)) <= 100 / 16 + 0.05


def check_watch_and_report(
    run_dir: Path, env: dict[str, str], tmp_path: Path, before: str, after: str
) -> None:
    """The run's log dir feeds `watch` (plain lines in a pipe, it ends with the run) and
    `report` (PNG plots and a summary), as a user would call them afterwards."""
    watched = subprocess.run(
        [str(BIN / "grpo-plug"), "watch", str(run_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watched.returncode == 0, watched.stderr
    assert "step 2 epoch 0  reward" in watched.stdout and "run done" in watched.stdout
    rep = subprocess.run(
        [str(BIN / "grpo-plug"), "report", str(run_dir), "--out", str(tmp_path / "report")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rep.returncode == 0, rep.stderr
    for stem in ("reward", "loss", "entropy", "length", "time"):
        assert (tmp_path / "report" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert f"| {before}% | {after}% |" in (tmp_path / "report" / "report.md").read_text()
