"""`grpo-plug train --rehearse` end to end, in subprocesses: a tiny model's config
under torchrun (Ctrl-C after step 1, then the resume), a person's Ctrl-C, and the
`fast` preset with its real SGLang server (CI rehearses that one; ~3-4 min)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from grpo_plug import config as cfgmod
from grpo_plug.rehearsal.checklist import read_events
from tests.helpers import MARK, REPO, marked, sglang_python, tiny_config

pytestmark = pytest.mark.slow
CLI_DRIVER = REPO / "tests" / "cli_driver.py"  # grpo-plug with the test task `seven`


def env(mark: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRPO_PLUG_FAULT")}
    return {**base, "OMP_NUM_THREADS": "1", MARK: mark}


def checklist(output: str) -> dict[str, tuple[str, str]]:
    """The checklist's rows: stage -> (ok | MISSING | -, detail)."""
    start = output.index("rehearsal checklist")
    rows = {}
    for line in output[start:].splitlines()[1:]:
        if not line.startswith("  ") or line.startswith("   "):
            break
        rows[line[11:23].strip()] = (line[2:9].strip(), line[33:].strip())
    return rows


def tiny_rehearsal_config(tmp_path: Path, model: Path, *extra: str) -> Path:
    cfg = tiny_config(
        tmp_path,
        model,
        "recover.mode=auto",
        "saver.freq_steps=50",
        "evaluator.eval_before=true",
        "loggers=[console,jsonl]",
        *extra,
    )
    path = tmp_path / "run.yaml"
    path.write_text(cfgmod.dump_yaml(cfg))
    return path


def test_a_torchrun_layout_rehearses_ctrl_c_and_resume(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = tiny_rehearsal_config(tmp_path, tiny_model_dir, "allocation_mode=d2p1t1")
    cmd = [sys.executable, str(CLI_DRIVER), "train", "--rehearse", "--config", str(config)]
    res = subprocess.run(
        cmd, cwd=REPO, env=env("torchrun"), capture_output=True, text=True, timeout=900
    )
    text = res.stdout + res.stderr
    assert res.returncode == 0, text[-4000:]
    rows = checklist(res.stdout)
    for stage in ("eval", "steps", "weight sync", "save", "recover save", "Ctrl-C", "resume"):
        assert rows[stage][0] == "ok", (stage, rows)
    assert rows["servers"][0] == "-" and rows["weight sync"][1].startswith("inplace")
    assert "starting 2 learner ranks" in text  # the layout's own torchrun
    assert "saver.freq_steps: 50 -> 1" in res.stdout
    assert res.stdout.splitlines()[-1].startswith(f"rehearsal {config}: ok, ")
    root = tmp_path / "out" / "rehearsal"
    (model,) = (root / "model").iterdir()  # a copy shaped like the tiny model
    assert (model / "config.json").is_file()
    (state,) = root.glob("checkpoints/*/*/*/recover_checkpoint/state.json")
    assert json.loads(state.read_text())["global_step"] == 2
    assert not (tmp_path / "out" / "checkpoints").exists()  # the real run's: untouched
    assert marked("torchrun") == []


def test_ctrl_c_stops_a_rehearsal_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = tiny_rehearsal_config(tmp_path, tiny_model_dir, "recover.mode=disabled")  # one run
    cmd = [sys.executable, str(CLI_DRIVER), "train", "--rehearse", "--config", str(config)]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env("ctrl-c"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        runs: list[dict[str, Any]] = []
        while not runs and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            for events in (tmp_path / "out" / "rehearsal" / "logs").glob("*/*/*/events.jsonl"):
                runs = [e for e in read_events(events) if e.get("kind") == "run"]
        assert runs, "the rehearsal's trainer never started"
        proc.send_signal(signal.SIGINT)  # a person's Ctrl-C, to the rehearsal only
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 130, out[-4000:]
        assert out.splitlines()[-1].startswith(f"rehearsal {config}: stopped by Ctrl-C")
        assert "rehearsal checklist" in out
        with pytest.raises(ProcessLookupError):
            os.kill(int(runs[0]["pid"]), 0)  # the trainer is gone
        assert marked("ctrl-c") == []
    finally:  # a failed or timed-out check must not leave the rehearsal running
        for pid in [*marked("ctrl-c"), *([proc.pid] if proc.poll() is None else [])]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.sglang
def test_the_fast_preset_rehearses_with_its_sglang_server(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "grpo_plug", "train", "--rehearse", "--preset", "fast"]
    cmd += [f"cluster.fileroot={tmp_path}", f"sglang.python={sglang_python()}"]
    res = subprocess.run(
        cmd, cwd=REPO, env=env("fast"), capture_output=True, text=True, timeout=1200
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    rows = checklist(res.stdout)
    for stage in ("servers", "eval", "steps", "weight sync", "end"):
        assert rows[stage][0] == "ok", (stage, rows)
    assert rows["weight sync"][1].startswith("disk")  # what auto picks on the one GPU
    assert "1 SGLang server(s) from sglang.d1p1t1+d1p1t1" in rows["servers"][1]
    for stage in ("save", "recover save", "Ctrl-C", "resume"):
        assert rows[stage][0] == "-", (stage, rows)  # the fast preset has none of them
    assert "actor.path: Qwen/Qwen2.5-0.5B-Instruct -> embedded:smollm2-135m" in res.stdout
    assert "only a GPU exercises:" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("rehearsal --preset fast: ok, ")
    assert marked("fast") == []  # the server is stopped with the run


@pytest.mark.sglang
def test_the_seeds_areal_file_rehearses_unchanged(tmp_path: Path) -> None:
    """The seed's own fast config (AReaL's dialect, asynchronous, openai/gsm8k) as a user
    brings it: with no Hugging Face cache it rehearses on the bundled GSM8K, and says so."""
    areal = REPO / "tests" / "data" / "areal" / "gsm8k_grpo_fast.yaml"
    cmd = [sys.executable, "-m", "grpo_plug", "train", "--rehearse", "--config", str(areal)]
    cmd += [f"cluster.fileroot={tmp_path}", f"sglang.python={sglang_python()}"]
    run_env = {**env("areal"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    for var in ("HF_HUB_CACHE", "HF_DATASETS_CACHE"):
        run_env.pop(var, None)
    res = subprocess.run(cmd, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    rows = checklist(res.stdout)
    for stage in ("servers", "eval", "steps", "weight sync", "end"):
        assert rows[stage][0] == "ok", (stage, rows)
    assert "train_dataset.path: openai/gsm8k -> null" in res.stdout
    assert res.stdout.splitlines()[-1].startswith(f"rehearsal {areal}: ok, ")
    assert marked("areal") == []
