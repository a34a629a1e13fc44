"""The default (cpu) preset on the real embedded model is reproducible bit for bit on
one machine: the learner's backward, two whole runs, and a SIGKILLed run resumed.

The tiny test models hide the hazard: the CPU backward of ``x[idx]`` with repeated
``idx`` (the shared-prompt path repeats each prompt's KV cache per sample) adds with
atomics across threads only above 32,768 elements, which SmolLM2-135M's caches pass.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from grpo_plug import config as cfgmod
from grpo_plug.learner.actor import Learner, LearnerBatch
from grpo_plug.learner.dist import from_env
from grpo_plug.learner.logprobs import learner_logprobs
from grpo_plug.learner.ranks import seed_all
from tests.helpers import assert_same, outcome

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def two_threads() -> Iterator[None]:
    """Two intra-op threads, so the kernels that split work across threads do."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def group_batch(n_groups: int, group: int, seed: int) -> LearnerBatch:
    """``n_groups`` GRPO groups of ``group`` samples each, random tokens; an odd group
    count so the threads' shares of the repeated cache rows overlap."""
    rng = np.random.default_rng(seed)
    prompts, comps, lps = [], [], []
    for _ in range(n_groups):
        prompt = rng.integers(100, 40000, size=int(rng.integers(40, 56))).tolist()
        for _ in range(group):
            comp = rng.integers(100, 40000, size=int(rng.integers(4, 24))).tolist()
            prompts.append(prompt)
            comps.append(comp)
            lps.append([-1.0] * len(comp))
    n = n_groups * group
    adv = rng.standard_normal(n).astype(np.float32)
    return LearnerBatch(prompts, comps, lps, adv, np.arange(n))


@pytest.mark.slow
def test_embedded_learner_backward_is_bitwise_repeatable(two_threads: None) -> None:
    cfg = cfgmod.load(preset="cpu")
    seed_all(cfg.seed)
    torch.set_num_threads(2)
    learner = Learner(cfg, 1, from_env(cuda=False))
    model = learner.model
    assert learner.path == "shared_prompt"  # the cpu preset's learner path
    batch = group_batch(3, 4, seed=0)
    per_rank, _ = learner.pack(batch, batch.kept)
    weights = torch.randn(sum(len(c) for c in batch.completions), generator=torch.Generator())
    grads = []
    for _ in range(4):
        model.zero_grad(set_to_none=True)
        done = 0
        for mb in per_rank[0]:
            logp, _ = learner_logprobs(
                model, mb, cfg.actor, 1.0, path=learner.path, with_entropy=False
            )
            (logp * weights[done : done + len(logp)]).sum().backward()
            done += len(logp)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert done == len(weights)
    assert grads[0].abs().sum() > 0
    for i, g in enumerate(grads[1:], start=1):
        assert torch.equal(g, grads[0]), f"repeat {i}: max diff {(g - grads[0]).abs().max()}"


# A short cpu-preset run: easy sums, so groups have mixed rewards and every step trains.
SHORT = [
    "total_train_steps=3",
    "train_dataset.batch_size=4",
    "train_dataset.arith_max_operand=9",
    "train_dataset.arith_ops=+",
    "gconfig.max_new_tokens=32",
    "valid_dataset.max_samples=4",
    "evaluator.eval_before=false",
    "recover.freq_steps=1",
    "loggers=[jsonl]",
]


def train(root: Path, seed: int, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRPO_PLUG_FAULT_AT"}
    if fault:
        env["GRPO_PLUG_FAULT_AT"] = fault
    args = [*SHORT, f"seed={seed}", f"cluster.fileroot={root / 'out'}"]
    cmd = [sys.executable, "-m", "grpo_plug", "train", "--preset", "cpu", *args, "--no-tui"]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, cwd=root)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("first")
    res = train(root, seed=3)
    assert res.returncode == 0, res.stderr[-3000:]
    got = outcome(root)
    shutil.rmtree(root)  # ~2 GB of checkpoints, now held in memory; the tests need no more
    trained = [row for row in got["metrics"] if "grpo_actor/grad_norm" in row]
    assert len(trained) >= 2, got["metrics"]  # the comparison covers optimizer steps
    return got


@pytest.mark.slow
def test_two_cpu_preset_runs_are_identical(first_run: dict[str, Any], tmp_path: Path) -> None:
    res = train(tmp_path, seed=3)
    assert res.returncode == 0, res.stderr[-3000:]
    got = outcome(tmp_path)
    assert got["metrics"] == first_run["metrics"]
    assert_same(got["model"], first_run["model"], "model")
    assert_same(got["optimizer"], first_run["optimizer"], "optimizer")


@pytest.mark.slow
def test_killed_cpu_preset_run_resumes_identical(first_run: dict[str, Any], tmp_path: Path) -> None:
    killed = train(tmp_path, seed=3, fault="between_steps:2")
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = train(tmp_path, seed=3)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = re.search(r"resumed from \S+ at global step (\d+)", resumed.stderr + resumed.stdout)
    assert said is not None and said.group(1) == "2", resumed.stderr[-3000:]
    got = outcome(tmp_path)
    assert got["metrics"] == first_run["metrics"]
    assert_same(got["model"], first_run["model"], "model")
    assert_same(got["optimizer"], first_run["optimizer"], "optimizer")
