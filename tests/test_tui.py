"""The dashboard in a real terminal (tmux), Ctrl-C through it, and plain mode in a pipe."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_plug.testing import build_tiny_model

BIN = Path(sys.executable).parent
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (a real terminal)"),
]


def tmux(*args: str) -> str:
    res = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=30)
    return res.stdout


def wait_for(session: str, pattern: str, timeout: float) -> str:
    deadline = time.time() + timeout
    screen = ""
    while time.time() < deadline:
        screen = tmux("capture-pane", "-p", "-t", session)
        if re.search(pattern, screen):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} never appeared; the screen:\n{screen}")


def test_dashboard_live_then_ctrl_c_then_resume_in_a_pipe(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    argv = [
        str(BIN / "grpo-plug"),
        *("train", "--preset", "cpu"),
        f"actor.path={model}",
        f"cluster.fileroot={tmp_path / 'out'}",
        "total_train_steps=500",
        "train_dataset.batch_size=4",
        "gconfig.n_samples=4",
        "gconfig.max_new_tokens=8",
        "valid_dataset.max_samples=8",
        "evaluator.eval_before=false",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
    env.update(TERM="xterm-256color", WANDB_MODE="disabled", GRPO_PLUG_CACHE=str(tmp_path / "c"))
    session = f"grpo-test-{os.getpid()}"
    script = f"cd {shlex.quote(str(tmp_path))} && {shlex.join(argv)}; echo EXIT=$?; sleep 60"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", script],
        env=env,
        check=True,
    )
    try:
        screen = wait_for(session, r"step [1-9]\d*/500", 180)
        for needle in ("GRPO training", "grpo-cpu/trial0", "preset cpu", "backend hf"):
            assert needle in screen, needle
        for label in ("reward", "loss", "entropy", "grad norm", "no-eos", "zero-adv", "rss"):
            assert label in screen, label
        assert len(screen.splitlines()) <= 30
        tmux("send-keys", "-t", session, "C-c")
        screen = wait_for(session, r"EXIT=\d+", 120)
        assert "EXIT=0" in screen, screen
        flat = screen.replace("\n", "")  # the terminal wraps long lines
        assert re.search(r"stopped after step \d+ on request", flat), screen
        # What a rerun does, exactly: resume from the step the recover point holds.
        said = re.search(r"a rerun resumes from step (\d+): grpo-plug train --preset cpu", flat)
        assert said, screen
    finally:
        tmux("kill-session", "-t", session)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "tiny")], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a process of the run outlived it"
    stopped = int(re.findall(r"stopped after step (\d+)", flat)[-1])
    assert stopped < 500 and int(said.group(1)) == stopped

    # The same command through a pipe: plain lines, and it resumes where Ctrl-C stopped it.
    res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout + res.stderr
    assert "resumed from" in text and f"at global step {stopped}" in text
    assert f"step {stopped + 1} epoch 0" in text  # one plain line per step
    assert "GRPO training" not in text and "\x1b[?1049h" not in text  # no screen in a pipe
    assert "done: 500 steps" in text
