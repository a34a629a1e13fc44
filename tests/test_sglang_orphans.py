"""The trainer SIGKILLed (no `finally`, no atexit) leaves no SGLang process behind: the
kernel's parent-death signal reaches the launcher, which takes its children down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TinyModels, cpu_server_overrides

pytestmark = [pytest.mark.slow, pytest.mark.sglang]

REPO = Path(__file__).resolve().parents[1]


def session_members(sid: int) -> list[int]:
    """Live processes in session ``sid`` (a launched server is its session's leader)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            out.append(int(entry.name))
    return out


def test_a_sigkilled_trainer_leaves_no_server_behind(
    tmp_path: Path, tiny_models: TinyModels
) -> None:
    model = tiny_models(hidden=64)
    overrides = [
        f"cluster.fileroot={tmp_path / 'out'}",
        f"actor.path={model}",
        "train_dataset.task=seven",
        "valid_dataset.task=seven",
        "evaluator.eval_before=false",
        "total_train_steps=50",
        "rollout.backend=sglang",
        *cpu_server_overrides(),
        "loggers=[jsonl]",
    ]
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "tests/crash_driver.py"), "--no-tui", *overrides],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    pid = None
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the trainer names each server's pid once it is healthy
            seen.append(line)
            m = re.search(r"SGLang server\(s\) healthy .*\(pid (\d+),", line)
            if m:
                pid = int(m.group(1))
                break
        assert pid is not None, "".join(seen[-30:])
        assert session_members(pid), "the server should be running now"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 90
        while session_members(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = session_members(pid)
        assert not left, f"processes of server session {pid} outlived the trainer: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        if pid is not None:
            for p in session_members(pid):  # never leave a server to the next test
                os.kill(p, signal.SIGKILL)
