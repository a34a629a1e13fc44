"""Asynchronous training (``rollout.max_head_offpolicyness = k``) on the hf backend: the
bound per consumed sample under injected delays, bit-for-bit repeats, a killed run
resumed, and the keys' errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from grpo_plug import config as cfgmod
from grpo_plug.errors import ConfigError, SetupError
from grpo_plug.metrics import names as mn
from grpo_plug.plugins import PluginHost
from grpo_plug.rollout import ahead
from grpo_plug.rollout.hf import HFBackend
from grpo_plug.types import Sample
from tests.helpers import (
    REPO,
    assert_same,
    launch_crash_driver,
    outcome,
    run_trainer,
    tiny_config,
)

ASYNC_KEYS = (mn.VERSION_LAG_MAX, mn.ASYNC_OVERLAP, mn.WAIT_FOR_DATA, mn.WAIT_FOR_WEIGHTS)


def step_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if mn.POLICY_VERSION in r]


@pytest.fixture()
def consumed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[list[int]]]]:
    """(step, the policy versions of each sample) of every step the learner takes from
    the producer."""
    seen: list[tuple[int, list[list[int]]]] = []
    real = ahead.AheadRollout.take

    def take(self: ahead.AheadRollout, step: int, batch: Any) -> Any:
        got, waited = real(self, step, batch)
        seen.append((step, [list(s.policy_versions) for r in got.rounds for s in r.samples]))
        return got, waited

    monkeypatch.setattr(ahead.AheadRollout, "take", take)
    return seen


def slow(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, seconds: float) -> None:
    """``target.name`` takes ``seconds`` longer."""
    real = getattr(target, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, wrapped)


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("slower", ["learner", "generation"])
def test_every_consumed_sample_keeps_the_bound(
    tmp_path: Path,
    tiny_model_dir: Path,
    seven_host: PluginHost,
    monkeypatch: pytest.MonkeyPatch,
    consumed: list[tuple[int, list[list[int]]]],
    k: int,
    slower: str,
) -> None:
    """A slow learner with fast generation, and the reverse: step N is sampled by
    exactly version max(0, N - k) whatever the timing (never newer, never older)."""
    from grpo_plug.learner.ranks import LearnerRanks

    if slower == "learner":
        slow(monkeypatch, LearnerRanks, "train_step", 0.3)
    else:
        slow(monkeypatch, HFBackend, "generate", 0.3)
    steps = 8
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        f"total_train_steps={steps}",
        f"rollout.max_head_offpolicyness={k}",
        "recover.mode=disabled",
    )
    run = run_trainer(cfg, seven_host)
    assert [step for step, _ in consumed] == list(range(steps))
    for step, versions in consumed:
        assert versions and all(v == [max(0, step - k)] for v in versions), (step, versions)
    rows = step_rows(run.capture.rows)
    assert len(rows) == steps
    for n, row in enumerate(rows):
        lag = min(n, k)
        assert row[mn.VERSION_LAG_MIN] == row[mn.VERSION_LAG_MAX] == lag, row
        assert row[mn.VERSION_LAG_MEAN] == pytest.approx(lag)
        assert row[mn.GROUPS_REGENERATED] == 0.0
        assert 0.0 <= row[mn.ASYNC_OVERLAP] <= 1.0
    # The side that waits shows it, in the steps with batches left to sample after them:
    # generation sat idle for weights, or the learner for data while generation, always
    # busy, overlapped its training.
    middle = rows[k + 1 : steps - k - 1]
    assert middle
    if slower == "learner":
        assert all(r[mn.WAIT_FOR_WEIGHTS] > 0.05 for r in middle), middle
    else:
        assert all(r[mn.WAIT_FOR_DATA] > 0.05 for r in middle), middle
        assert all(r[mn.ASYNC_OVERLAP] > 0.0 for r in middle), middle


def test_async_run_repeats_bit_for_bit(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    """Two seeded k=2 runs: the same metrics (times aside) and the same weights, and they
    differ from the synchronous run (the producer's batches are really off-policy)."""
    volatile = ("timestamp", "timeperf/", "perf/", mn.GEN_TOKENS_PER_S)
    got = []
    for name, k in (("a", 2), ("b", 2), ("sync", 0)):
        cfg = tiny_config(
            tmp_path / name,
            tiny_model_dir,
            "total_train_steps=5",
            f"rollout.max_head_offpolicyness={k}",
            "recover.mode=disabled",
        )
        run = run_trainer(cfg, seven_host)
        rows = [
            {key: v for key, v in r.items() if not key.startswith(volatile)}
            for r in step_rows(run.capture.rows)
        ]
        weights = {n: p.detach().clone() for n, p in run.trainer.model.named_parameters()}
        got.append((rows, weights))
    (rows_a, w_a), (rows_b, w_b), (rows_sync, w_sync) = got
    assert rows_a == rows_b
    assert_same(w_a, w_b, "weights")
    assert any(r[mn.SAMPLES_STALE_VERSION] > 0 for r in rows_a)
    assert not any(key in r for r in rows_sync for key in ASYNC_KEYS)
    assert any(not bool((w_a[n] == w_sync[n]).all()) for n in w_a)


def test_k0_runs_no_producer(tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost) -> None:
    """k = 0 is the synchronous loop: no producer thread, no twin of the weights."""
    threads_seen: set[str] = set()

    def before(trainer: Any) -> None:
        real = trainer.group.train_step

        def train_step(batch: Any) -> Any:
            threads_seen.update(t.name for t in threading.enumerate())
            return real(batch)

        trainer.group.train_step = train_step

    cfg = tiny_config(tmp_path, tiny_model_dir, "total_train_steps=2", "recover.mode=disabled")
    run = run_trainer(cfg, seven_host, before=before)
    assert run.trainer.ahead is None
    assert threads_seen and "grpo-plug-ahead" not in threads_seen


def test_running_ahead_with_the_plain_loss_warns_once_at_start(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    """k >= 1 without actor.use_decoupled_loss: one warning naming both keys, in the
    messages and in the event stream the dashboard reads."""
    from grpo_plug.metrics.run import read_run

    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "total_train_steps=2",
        "rollout.max_head_offpolicyness=1",
        "recover.mode=disabled",
    )
    run = run_trainer(cfg, seven_host)
    said = [t for t in run.capture.messages if "max_head_offpolicyness" in t]
    assert len(said) == 1, run.capture.messages
    assert said[0].startswith("warning: rollout.max_head_offpolicyness=1 ")
    assert "actor.use_decoupled_loss=false" in said[0]
    assert "off-policy by up to 1 policy version" in said[0]
    events = [t for _, t in read_run(run.trainer.log_dir).warnings]
    assert [t for t in events if "max_head_offpolicyness" in t] == [said[0][len("warning: ") :]]
    # The decoupled loss corrects for it; k = 0 has nothing to correct.
    assert ahead.plain_loss_warning(2, decoupled=True) is None
    assert ahead.plain_loss_warning(0, decoupled=False) is None


def test_a_negative_k_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"rollout\.max_head_offpolicyness"):
        cfgmod.load(overrides=["rollout.max_head_offpolicyness=-1"])


def test_k_splits_the_cores_between_learner_and_generation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from grpo_plug import threads

    monkeypatch.delenv(threads.PLAN_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    base = ["cluster.cpu_threads=4", "cluster.n_gpus_per_node=0"]
    sync = threads.plan_for(cfgmod.load(overrides=base))
    both = threads.plan_for(cfgmod.load(overrides=[*base, "rollout.max_head_offpolicyness=2"]))
    assert (sync.overlap, sync.learner, sync.generator) == (False, 4, 4)  # take turns
    assert (both.overlap, both.learner, both.generator) == (True, 2, 2)  # at once
    assert sync.key != both.key  # a child of one never inherits the other's plan


class _SharedWeights:
    """An in-process backend that samples with the learner's own module only."""

    name = "shared"
    in_process = True
    colocated = True


def test_a_backend_that_cannot_run_ahead_is_refused_naming_the_key() -> None:
    with pytest.raises(SetupError, match=r"rollout\.max_head_offpolicyness=1: .*'shared'"):
        ahead.check_backend(_SharedWeights(), 1)  # type: ignore[arg-type]
    ahead.check_backend(_SharedWeights(), 0)  # type: ignore[arg-type]  # k = 0: fine


def test_the_bound_check_names_the_sample() -> None:
    fresh = Sample("a", [1, 2], [-0.1, -0.2], "stop", 3)
    old = Sample("b", [1, 2, 3], [-0.1] * 3, "stop", 1, [1, 4], [1, 4, 4])
    ahead.check_bound([fresh], 5, 2)
    with pytest.raises(Exception, match=r"step 5 got sample b .* version 1 \(oldest allowed 3\)"):
        ahead.check_bound([fresh, old], 5, 2)
    lags = ahead.lag_metrics([fresh, old], 5)
    assert lags[mn.VERSION_LAG_MIN] == 1.0  # b's last tokens are of version 4
    assert lags[mn.VERSION_LAG_MAX] == 4.0  # its first of version 1
    assert lags[mn.VERSION_LAG_MEAN] == pytest.approx((2 + 2 + 4 + 1 + 1) / 5)  # per token
    assert Sample("c", [1, 2], [0.0] * 2, "stop", 2).token_versions == [2, 2]  # the default


def test_a_sampled_step_survives_its_json_form(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    """What a recover point keeps of a sampled step gives back the same learner input."""
    import numpy as np

    from grpo_plug.trainer import Trainer

    cfg = tiny_config(tmp_path, tiny_model_dir, "dynamic_sampling.max_rounds=2")
    trainer = Trainer(cfg, host=seven_host, loggers=[])
    try:
        step = trainer.sampler.sample(trainer.rollout, 3)
        back = trainer.sampler.from_json(json.loads(json.dumps(trainer.sampler.to_json(step))))
    finally:
        trainer.close()
    a, b = step.merged(), back.merged()
    assert back.index == 3 and len(back.rounds) == len(step.rounds) and back.stats == step.stats
    assert a.samples == b.samples and a.prompts == b.prompts and a.texts == b.texts
    for name in ("rewards", "task_reward", "advantages", "has_signal", "no_eos"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert getattr(a, name).dtype == getattr(b, name).dtype, name


@pytest.mark.slow
def test_two_learner_ranks_run_ahead_within_the_bound(tmp_path: Path, tiny_model_dir: Path) -> None:
    """k=1 with two CPU learner ranks (allocation_mode=d2p1t1: `train` starts torchrun;
    rank 0 samples ahead with its twin while both ranks train): step N is sampled by
    exactly version max(0, N - 1), and each step is logged once."""
    steps, k = 3, 1
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        f"total_train_steps={steps}",
        f"rollout.max_head_offpolicyness={k}",
        "allocation_mode=d2p1t1",
        "loggers=[jsonl]",
        "recover.mode=disabled",
        "valid_dataset.max_samples=4",
        "reward.functions=[math_accuracy,spread]",  # every step trains: the weights move
        "reward.weights=[1.0,1.0]",
    )
    config = tmp_path / "run.yaml"
    config.write_text(cfgmod.dump_yaml(cfg))
    env = {key: v for key, v in os.environ.items() if not key.startswith("GRPO_PLUG_FAULT")}
    cmd = [sys.executable, str(REPO / "tests" / "cli_driver.py"), "train", "--config"]
    res = subprocess.run(
        [*cmd, str(config), "--no-tui"],
        cwd=REPO,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "starting 2 learner ranks" in res.stderr
    (metrics,) = (tmp_path / "out" / "logs").rglob("metrics.jsonl")
    rows = step_rows([json.loads(line) for line in metrics.read_text().splitlines()])
    assert [r["global_step"] for r in rows] == list(range(1, steps + 1))
    for n, row in enumerate(rows):
        lag = min(n, k)  # max and min: every sample of step n has version n - lag
        assert row[mn.VERSION_LAG_MIN] == row[mn.VERSION_LAG_MAX] == lag, row
        assert row[mn.GROUPS_REGENERATED] == 0.0
        assert "grpo_actor/loss" in row  # both ranks trained it


# ---------------------------------------------------------------------------- resume


def write_config(root: Path, model: Path) -> Path:
    data: dict[str, Any] = {
        "experiment_name": "async",
        "trial_name": "t0",
        "seed": 5,
        "total_train_steps": 7,
        "loggers": ["jsonl"],
        "cluster": {"fileroot": str(root / "out")},
        "actor": {"path": str(model), "lr": 0.02, "mb_max_tokens": 256},
        "gconfig": {"n_samples": 4, "max_new_tokens": 3},
        "train_dataset": {"task": "seven", "batch_size": 4, "max_samples": 64},
        "valid_dataset": {"task": "seven", "max_samples": 4},
        "rollout": {"max_batch_size": 8, "max_head_offpolicyness": 2},
        "reward": {"no_eos_reward": None},
        "evaluator": {"eval_before": False},
        "recover": {"mode": "auto", "freq_steps": 2, "freq_epochs": None, "freq_secs": None},
    }
    path = root / "run.yaml"
    path.write_text("# grpo-plug train --config run.yaml\n" + yaml.safe_dump(data))
    return path


launch = launch_crash_driver


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("async-reference")
    res = launch(write_config(root, tiny_model_dir))
    assert res.returncode == 0, res.stderr[-3000:]
    ref = outcome(root)
    assert sum("grpo_actor/loss" in row for row in ref["metrics"]) >= 3, ref["metrics"]
    return ref


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    [
        "between_steps:3",  # a recover point after step 2 holds steps 2 and 3, sampled
        # The producer killed in step 5's batch (2 chunks a batch): it starts once version
        # 3 is out, after the point at step 2 is written, and step 4's waits for it.
        "mid_rollout:11",
        "mid_checkpoint_write:2",  # the second recover point half written
    ],
)
def test_killed_async_run_resumes_bit_identical(
    fault: str, tiny_model_dir: Path, tmp_path: Path, reference: dict[str, Any]
) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    killed = launch(config, fault)
    assert killed.returncode == -9, killed.stderr[-3000:]
    rec = next((tmp_path / "out" / "checkpoints").rglob("recover_checkpoint"))
    state = json.loads((rec / "state.json").read_text())
    step = state["global_step"]
    # The point holds the steps the gone weights sampled: step .. step + k - 1.
    assert [s["index"] for s in state["ahead"]] == [step, step + 1]
    resumed = launch(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = re.search(r"resumed from \S+ at global step (\d+)", resumed.stderr + resumed.stdout)
    assert said is not None and int(said.group(1)) == step, resumed.stderr[-3000:]
    assert "2 sampled step(s) restored" in resumed.stderr + resumed.stdout
    got = outcome(tmp_path)
    assert_same(got["model"], reference["model"], "model")
    assert_same(got["optimizer"], reference["optimizer"], "optimizer")
    assert got["metrics"] == reference["metrics"]
