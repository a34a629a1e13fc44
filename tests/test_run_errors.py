"""Errors during a run, through the real CLI: a plugin that fails mid-training ends
`grpo-plug train` with one line naming it and exit status 2, the recover point intact;
`--debug` shows the traceback; the stop message says what a rerun will do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from grpo_plug.api import hookimpl
from grpo_plug.plugins import PluginHost
from grpo_plug.recovery.schedule import rerun_note
from tests.helpers import run_trainer, tiny_config

DRIVER = textwrap.dedent(
    """
    import math, os, sys
    from grpo_plug.api import hookimpl
    from grpo_plug.cli import main
    from grpo_plug.plugins import get_host
    from grpo_plug.testing.fixtures import SevenPlugin

    MODE = os.environ["BAD_REWARD"]
    CALLS = [0]

    def bad(prompts, completions, **kw):
        CALLS[0] += 1
        if CALLS[0] < 3:  # two good steps first: a recover point exists by then
            return [1.0 if c.strip() == "7" else 0.0 for c in completions]
        if MODE == "raise":
            raise KeyError("no such column")
        if MODE == "length":
            return [0.0]
        return [math.nan] * len(completions)

    class Bad:
        @hookimpl
        def register_reward_functions(self, registry):
            registry.register("bad", bad)

    get_host().register(SevenPlugin(), name="seven")
    get_host().register(Bad(), name="badreward")
    main()
    """
)


def _train(tmp_path: Path, model: Path, mode: str, *extra: str) -> subprocess.CompletedProcess[str]:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    args = [
        "train",
        "--no-tui",
        f"cluster.fileroot={tmp_path / 'out'}",
        f"actor.path={model}",
        "actor.mb_max_tokens=512",
        "train_dataset.task=seven",
        "train_dataset.batch_size=2",
        "train_dataset.max_samples=40",
        "valid_dataset.task=seven",
        "valid_dataset.max_samples=2",
        "evaluator.eval_before=false",
        "gconfig.n_samples=2",
        "gconfig.max_new_tokens=2",
        "reward.functions=[bad]",
        "reward.weights=[1.0]",
        "recover.freq_steps=1",
        "total_train_steps=6",
        *extra,
    ]
    env = {**os.environ, "BAD_REWARD": mode, "OMP_NUM_THREADS": "1"}
    env.pop("GRPO_PLUG_DEBUG", None)
    return subprocess.run(
        [sys.executable, str(driver), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("raise", "reward function 'bad' (plugin 'badreward') raised KeyError"),
        ("length", "returned 1 values for 4 completions"),
        ("nan", "expected a finite number or None"),
    ],
)
def test_a_reward_plugin_failing_mid_run_ends_with_one_line(
    tiny_model_dir: Path, tmp_path: Path, mode: str, says: str
) -> None:
    res = _train(tmp_path, tiny_model_dir, mode)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    last = lines[-1]
    assert last.startswith("error: ") and says in last, last
    assert "a rerun resumes from step 2" in last
    state = next((tmp_path / "out").rglob("recover_checkpoint/state.json"))
    assert json.loads(state.read_text())["global_step"] == 2  # the recover point is intact


@pytest.mark.slow
def test_debug_shows_the_traceback(tiny_model_dir: Path, tmp_path: Path) -> None:
    res = _train(tmp_path, tiny_model_dir, "raise", "--debug")
    assert res.returncode != 0
    assert "Traceback" in res.stderr and "RewardError" in res.stderr


def test_the_rerun_note_says_what_a_rerun_does() -> None:
    assert "starts over from step 0" in rerun_note("disabled", 5, ended_cleanly=True)
    assert "recover.mode=disabled" in rerun_note("disabled", None, ended_cleanly=False)
    assert rerun_note("auto", 5, ended_cleanly=True) == "a rerun resumes from step 5"
    assert "starts over" in rerun_note("fault", 5, ended_cleanly=True)
    assert rerun_note("fault", 5, ended_cleanly=False) == "a rerun resumes from step 5"
    assert "stops at once" in rerun_note("resume", None, ended_cleanly=False)
    assert "no recover point" in rerun_note("auto", None, ended_cleanly=False)


class _Broken:
    """A logger plugin: ``nostart`` cannot be built (wandb online with no network),
    ``noclose`` logs but raises when closed."""

    @hookimpl
    def register_loggers(self, registry: Any) -> None:
        def nostart(cfg: Any, run: Any) -> Any:
            raise ConnectionError("network is unreachable")

        class NoClose:
            name = "noclose"

            def log(self, metrics: Any, step: int, epoch: int) -> None:
                pass

            def message(self, text: str) -> None:
                pass

            def close(self) -> None:
                raise OSError("disk full")

        registry.register("nostart", nostart)
        registry.register("noclose", lambda cfg, run: NoClose())


def test_a_logger_that_cannot_start_or_close_never_ends_the_run(
    seven_host: PluginHost, tiny_model_dir: Path, tmp_path: Path
) -> None:
    seven_host.register(_Broken(), name="broken_loggers")
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "total_train_steps=2",
        "loggers=[nostart,noclose,jsonl]",
        host=seven_host,
    )
    run = run_trainer(cfg, seven_host, loggers=None)
    assert run.summary.steps == 2
    log_dir = Path(run.summary.log_dir)
    assert (log_dir / "summary.json").exists()  # the end of the run went on after close()
    events = (log_dir / "events.jsonl").read_text()
    assert "logger 'nostart' (plugin 'broken_loggers') could not start" in events
    assert "ConnectionError: network is unreachable" in events
    assert "logger 'noclose' failed (OSError: disk full)" in events
    assert '"kind": "end"' in events and '"status": "done"' in events
    rows = (log_dir / "metrics.jsonl").read_text().splitlines()
    assert len([r for r in rows if '"global_step": 2' in r]) >= 1
