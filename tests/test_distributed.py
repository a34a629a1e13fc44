"""The FSDP2 learner under torchrun (gloo, CPU): 2 ranks against 1, and sharded resume.

Each test starts real processes (``torchrun --standalone``) running
``tests/dist_driver.py`` on a tiny model built from a config.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import MARK, TinyModels, marked, tiny_config

ROOT = Path(__file__).resolve().parents[1]
# Small micro-batches and two minibatches: several micro-batches per rank, filler included.
OVERRIDES = ["actor.mb_max_tokens=24", "actor.ppo_n_minibatches=2"]


def drive(
    n_ranks: int, model: Path, out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    launcher = [sys.executable]
    if n_ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n_ranks}"]
    cmd = [*launcher, "tests/dist_driver.py", "--model", str(model), "--out", str(out), *args]
    # faulthandler: a rank that aborts prints every thread's Python stack.
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1", **(env or {})}
    return subprocess.run(
        [*cmd, *OVERRIDES], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=600
    )


def ok(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "w.safetensors"))


@pytest.fixture(scope="module")
def model(tiny_models: TinyModels) -> Path:
    return tiny_models(seed=1)


@pytest.mark.slow
def test_two_ranks_match_one_rank(model: Path, tmp_path: Path) -> None:
    """Same global batches and seed: FSDP over 2 ranks updates like 1 rank does."""
    ok(drive(1, model, tmp_path / "one", "--steps", "2"))
    ok(drive(2, model, tmp_path / "two", "--steps", "2"))
    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    start = load_file(str(model / "model.safetensors"))
    assert sorted(one) == sorted(two)
    moved = max(float((one[k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-2  # the steps did change the weights (lr 1e-2, AdamW)
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=0, atol=2e-5)


@pytest.mark.slow
def test_sharded_recover_point_resumes_bit_identically(model: Path, tmp_path: Path) -> None:
    """Saved with 2 ranks after step 1, the run dies; resumed with 2 ranks it ends with
    exactly the weights of an uninterrupted 2-rank run. 1 rank cannot resume it."""
    ok(drive(2, model, tmp_path / "full", "--steps", "3"))
    root = tmp_path / "ckpt"
    died = drive(
        2,
        model,
        tmp_path / "dead",
        *("--steps", "3", "--save-at", "1", "--root", str(root)),
        env={"DIST_DRIVER_DIE_AFTER_SAVE": "1"},
    )
    assert died.returncode != 0 and not (tmp_path / "dead").exists()
    assert (root / "recover_checkpoint" / "dcp").is_dir()
    ok(drive(2, model, tmp_path / "resumed", "--steps", "3", "--root", str(root), "--resume"))
    full, resumed = weights(tmp_path / "full"), weights(tmp_path / "resumed")
    assert sorted(full) == sorted(resumed)
    assert all(torch.equal(full[k], resumed[k]) for k in full)

    one = drive(1, model, tmp_path / "one", "--steps", "3", "--root", str(root), "--resume")
    assert one.returncode != 0
    assert "saved by 2 learner rank(s) but this run has 1" in one.stderr


def trained_steps(tmp: Path) -> int:
    """Steps of the run under ``tmp`` whose learner step ran (a loss was logged)."""
    (metrics,) = (tmp / "out" / "logs").glob("*/*/*/metrics.jsonl")
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return len([r for r in rows if "grpo_actor/loss" in r])


def train(
    n_ranks: int, model: Path, tmp: Path, *overrides: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The whole trainer (rollouts included) under torchrun: rank 0 trains, rank 1 follows."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={n_ranks}", "tests/train_driver.py", str(tmp), str(model)]
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [*cmd, *overrides], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_trainer_under_torchrun_resumes_bit_identically(model: Path, tmp_path: Path) -> None:
    """2-rank training killed (SIGKILL on rank 0) after step 2 and resumed from its sharded
    recover point ends with the weights of the uninterrupted 2-rank run; only rank 0
    wrote the run's files."""
    keys = ("total_train_steps=3", "recover.mode=auto", "recover.freq_steps=1")
    keys += ("saver.freq_steps=3", "valid_dataset.max_samples=4", *OVERRIDES)
    keys += ("reward.functions=[math_accuracy,spread]", "reward.weights=[1.0,1.0]")
    full_run = train(2, model, tmp_path / "full", *keys)
    ok(full_run)
    assert "steps=3 trained=3 " in full_run.stdout  # or bit-identity would hold trivially
    killed = train(
        2, model, tmp_path / "crash", *keys, env={"GRPO_PLUG_FAULT_AT": "between_steps:2"}
    )
    assert killed.returncode != 0
    resumed = train(2, model, tmp_path / "crash", *keys)
    ok(resumed)
    assert "resumed from" in resumed.stderr and "at global step 2" in resumed.stderr

    def final(tmp: Path) -> dict[str, torch.Tensor]:
        (ckpt,) = (tmp / "out" / "checkpoints").glob("*/*/*/default/epoch0epochstep3globalstep3")
        return load_file(str(ckpt / "model.safetensors"))

    full, again = final(tmp_path / "full"), final(tmp_path / "crash")
    assert sorted(full) == sorted(again)
    assert all(torch.equal(full[k], again[k]) for k in full)
    (recover,) = (tmp_path / "full" / "out" / "checkpoints").glob("*/*/*/recover_checkpoint")
    assert sorted(p.name for p in recover.glob("rng_rank*.json")) == [
        "rng_rank0.json",
        "rng_rank1.json",
    ]
    (logs,) = (tmp_path / "full" / "out" / "logs").glob("*/*/*")
    assert (logs / "summary.json").is_file()  # written once, by rank 0


# ------------------------------------------------- through `grpo-plug train` itself

CLI_DRIVER = ROOT / "tests" / "cli_driver.py"


def cli_config(tmp: Path, model: Path, *extra: str) -> Path:
    """A 2-rank colocated run (allocation_mode=d2p1t1) of the tiny model on ``seven``."""
    from grpo_plug import config as cfgmod

    keys = ("total_train_steps=3", "recover.mode=auto", "recover.freq_steps=1")
    keys += ("saver.freq_steps=3", "valid_dataset.max_samples=4", *OVERRIDES)
    keys += ("allocation_mode=d2p1t1", "loggers=[jsonl]", "seed=1")
    keys += ("reward.functions=[math_accuracy,spread]", "reward.weights=[1.0,1.0]")  # all train
    keys += extra
    path = tmp / "run.yaml"
    tmp.mkdir(parents=True, exist_ok=True)
    path.write_text(cfgmod.dump_yaml(tiny_config(tmp, model, *keys)))
    return path


def cli_env(mark: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPO_PLUG_FAULT")}
    return {**env, "OMP_NUM_THREADS": "1", MARK: mark, **extra}


def cli_train(config: Path, mark: str, **extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(CLI_DRIVER), "train", "--config", str(config), "--no-tui"]
    return subprocess.run(
        cmd, cwd=ROOT, env=cli_env(mark, **extra), capture_output=True, text=True, timeout=600
    )


def final_weights(tmp: Path) -> dict[str, torch.Tensor]:
    (ckpt,) = (tmp / "out" / "checkpoints").glob("*/*/*/default/epoch0epochstep3globalstep3")
    return load_file(str(ckpt / "model.safetensors"))


@pytest.mark.slow
def test_train_starts_torchrun_and_a_killed_rank_resumes_bit_identically(
    model: Path, tmp_path: Path
) -> None:
    """`grpo-plug train` with allocation_mode=d2p1t1 starts 2 gloo ranks by itself. Rank 1
    SIGKILLed mid-step stops the whole run (no orphan); the same command then resumes
    and ends with exactly the weights of the uninterrupted 2-rank run."""
    full = cli_train(cli_config(tmp_path / "full", model), "full")
    ok(full)
    assert "starting 2 learner ranks" in full.stderr
    assert "-m torch.distributed.run --standalone --nproc-per-node 2" in full.stderr
    assert trained_steps(tmp_path / "full") == 3
    (recover,) = (tmp_path / "full" / "out" / "checkpoints").glob("*/*/*/recover_checkpoint")
    assert sorted(p.name for p in recover.glob("rng_rank*.json")) == [
        "rng_rank0.json",
        "rng_rank1.json",
    ]

    config = cli_config(tmp_path / "crash", model)
    fault = {"GRPO_PLUG_FAULT_AT": "mid_optimizer_step:3", "GRPO_PLUG_FAULT_RANK": "1"}
    killed = cli_train(config, "crash", **fault)
    assert killed.returncode != 0, killed.stdout[-2000:] + killed.stderr[-2000:]
    assert "the learner ranks ended with exit code" in killed.stderr
    assert marked("crash") == []  # torchrun stopped rank 0; nothing outlived the run
    resumed = cli_train(config, "resume")
    ok(resumed)
    assert "resumed from" in resumed.stdout + resumed.stderr
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "crash")
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_sigterm_to_train_stops_every_rank(model: Path, tmp_path: Path) -> None:
    """SIGTERM to the `grpo-plug train` that started torchrun: every rank stops."""
    import signal
    import time

    config = cli_config(tmp_path, model)
    cmd = [sys.executable, str(CLI_DRIVER), "train", "--config", str(config), "--no-tui"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=cli_env("term"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while len(marked("term")) < 3 and time.monotonic() < deadline:  # torchrun + 2 ranks
            time.sleep(0.5)
        assert len(marked("term")) >= 3, "the ranks never started"
        time.sleep(3)  # well into start-up: models loading, the process group joined
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr.decode()[-2000:]
    assert "stopped every learner rank on request" in stderr.decode()
    assert marked("term") == []


@pytest.mark.slow
def test_ctrl_c_to_train_stops_every_rank_after_the_step_and_resumes(
    model: Path, tmp_path: Path
) -> None:
    """The first Ctrl-C (SIGINT) to the `grpo-plug train` that started torchrun reaches
    rank 0 alone: it finishes the step, writes a recover point and every rank ends
    cleanly; the same command then resumes there and finishes the run."""
    import signal
    import time

    config = cli_config(tmp_path, model, "total_train_steps=12")
    cmd = [sys.executable, str(CLI_DRIVER), "train", "--config", str(config), "--no-tui"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=cli_env("int"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if trained_rows(tmp_path):  # step 1 is logged: the run is well under way
                break
            time.sleep(0.2)
        assert trained_rows(tmp_path), "no step was logged"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, stdout[-2000:] + stderr[-2000:]
    stopped = re.search(r"stopped after step (\d+) on request", stdout)
    assert stopped and 1 <= int(stopped.group(1)) < 12, stdout[-2000:]
    assert marked("int") == []  # rank 1 followed rank 0 out; nothing outlived the run
    (recover,) = (tmp_path / "out" / "checkpoints").glob("*/*/*/recover_checkpoint")
    state = json.loads((recover / "state.json").read_text())
    assert state["global_step"] == int(stopped.group(1))

    resumed = cli_train(config, "int-resume")
    ok(resumed)
    said = re.search(r"resumed from \S+ at global step (\d+)", resumed.stdout + resumed.stderr)
    assert said and said.group(1) == stopped.group(1)
    assert "done: 12 steps" in resumed.stdout
    assert max(r["global_step"] for r in trained_rows(tmp_path)) == 12


def trained_rows(tmp: Path) -> list[dict[str, float]]:
    """The step rows (not evaluations) logged so far by the run under ``tmp``."""
    found = list((tmp / "out" / "logs").glob("*/*/*/metrics.jsonl"))
    if not found:
        return []
    rows = []
    for line in found[0].read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # being written
        if "timeperf/rollout" in row:
            rows.append(row)
    return rows
