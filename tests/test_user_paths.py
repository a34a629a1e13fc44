"""What a user and a plugin author meet through the real `grpo-plug` command: the run's
own metrics files whatever `loggers` says, a run extended past its end, per-example
task fields reaching rewards, a weightless backend and its weight-sync strategy, and
doctor's SGLang row."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

DRIVER = textwrap.dedent(
    """
    import json, os
    from grpo_plug.api import Example, Sample, grade, hookimpl
    from grpo_plug.cli import main
    from grpo_plug.plugins import get_host
    from grpo_plug.testing.fixtures import SevenPlugin, SevenTask

    class FieldsTask(SevenTask):
        name = "seven_fields"

        def load(self):
            return [
                Example(e.uid, e.question, e.gold, fields={"index": i})
                for i, e in enumerate(super().load())
            ]

    def with_index(prompts, completions, *, golds, index):
        with open(os.environ["FIELDS_LOG"], "a") as fh:
            fh.write(json.dumps(index) + "\\n")
        return [float(g) + i / 100 for g, i in zip(grade(completions, golds), index)]

    class Replay:
        # Replays one completion: no weights of its own, not the learner's either.
        name = "replay"
        colocated = False
        in_process = True

        def __init__(self, cfg, ctx):
            tok = ctx.tokenizer
            self.ids = tok.encode("7", add_special_tokens=False) + [tok.eos_token_id]
            self.version = 0

        async def agenerate(self, requests):
            return self.generate(requests)

        def generate(self, requests):
            return [
                [
                    Sample(f"{r.rid}-{i}", list(self.ids), [-1.0] * len(self.ids), "stop",
                           self.version)
                    for i in range(r.n)
                ]
                for r in requests
            ]

        def set_policy_version(self, version):
            self.version = version

        def stats(self):
            return {}

        def close(self):
            pass

    class UserPaths:
        @hookimpl
        def register_tasks(self, registry):
            registry.register("seven_fields", FieldsTask)

        @hookimpl
        def register_reward_functions(self, registry):
            registry.register("with_index", with_index)

        @hookimpl
        def register_rollout_backends(self, registry):
            registry.register("replay", Replay)

    get_host().register(SevenPlugin(), name="seven")
    get_host().register(UserPaths(), name="userpaths")
    main()
    """
)


def grpo(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """``grpo-plug ARGS`` with the test plugins registered; output captured."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run_env = {**os.environ, "OMP_NUM_THREADS": "1", "TERM": "dumb", "COLUMNS": "200"}
    run_env.pop("GRPO_PLUG_DEBUG", None)
    run_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(driver), *args],
        capture_output=True,
        text=True,
        env=run_env,
        timeout=600,
    )


def tiny_args(tmp_path: Path, model: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--no-tui",
        f"cluster.fileroot={tmp_path / 'out'}",
        f"actor.path={model}",
        "actor.mb_max_tokens=512",
        "train_dataset.task=seven",
        "train_dataset.batch_size=2",
        "train_dataset.max_samples=40",
        "valid_dataset.task=seven",
        "valid_dataset.max_samples=4",
        "evaluator.eval_before=false",
        "gconfig.n_samples=2",
        "gconfig.max_new_tokens=2",
        "reward.functions=[spread]",
        "reward.weights=[1.0]",
        "total_train_steps=2",
        *extra,
    ]


def log_dir(tmp_path: Path) -> Path:
    (found,) = {p.parent for p in (tmp_path / "out" / "logs").rglob("events.jsonl")}
    return found


def events(tmp_path: Path) -> list[dict[str, Any]]:
    text = (log_dir(tmp_path) / "events.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


# --------------------------------------------------------------- the run's own files


@pytest.mark.slow
def test_loggers_console_still_feeds_the_dashboard_watch_and_report(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    res = grpo(tmp_path, *tiny_args(tmp_path, tiny_model_dir, "loggers=[console]"))
    assert res.returncode == 0, res.stderr[-3000:]
    logs = log_dir(tmp_path)
    rows = [json.loads(x) for x in (logs / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in rows if "grpo_actor/loss" in r] == [1, 2]
    assert events(tmp_path)[-1]["kind"] == "end"
    watched = grpo(tmp_path, "watch", "--no-tui", str(logs))
    assert watched.returncode == 0, watched.stderr
    assert "step 1 epoch 0" in watched.stdout and "step 2 epoch 0" in watched.stdout
    assert "run done" in watched.stdout
    report = grpo(tmp_path, "report", str(logs), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert list((tmp_path / "report").glob("*.png")), report.stdout


# --------------------------------------------------------------- a run extended


@pytest.mark.slow
def test_extending_a_finished_run_evaluates_its_own_final_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    keys = ("evaluator.eval_before=true", "recover.freq_steps=1")
    first = grpo(tmp_path, *tiny_args(tmp_path, tiny_model_dir, *keys))
    assert first.returncode == 0, first.stderr[-3000:]
    more = grpo(tmp_path, *tiny_args(tmp_path, tiny_model_dir, *keys, "total_train_steps=3"))
    assert more.returncode == 0, more.stderr[-3000:]
    evals = [e["step"] for e in events(tmp_path) if e["kind"] == "stage" and e["stage"] == "eval"]
    assert evals == [0, 2, 3]  # before; after step 2; after step 3, the extended run's own
    summary = json.loads((log_dir(tmp_path) / "summary.json").read_text())
    records = [json.loads(x) for x in (log_dir(tmp_path) / "eval_after.jsonl").open()]
    assert summary["steps"] == 3
    assert summary["accuracy_after"] == pytest.approx(
        sum(r["correct"] for r in records) / len(records)
    )


# --------------------------------------------------------------- plugin authors


@pytest.mark.slow
def test_task_fields_reach_reward_functions_as_keywords(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    got = tmp_path / "fields.jsonl"
    args = tiny_args(
        tmp_path,
        tiny_model_dir,
        "train_dataset.task=seven_fields",
        "reward.functions=[with_index]",
        "total_train_steps=1",
    )
    res = grpo(tmp_path, *args, env={"FIELDS_LOG": str(got)})
    assert res.returncode == 0, res.stderr[-3000:]
    (index,) = [json.loads(x) for x in got.read_text().splitlines()]
    # One value per completion: each of the 2 prompts' index, once per sample (n=2).
    assert len(index) == 4 and index[0] == index[1] and index[2] == index[3]
    assert index[0] != index[2] and all(0 <= i < 40 for i in index)


def test_a_strategy_that_cannot_drive_the_backend_stops_before_the_model_loads(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-model-here"  # loading it would fail with another message
    args = tiny_args(tmp_path, missing, "rollout.backend=replay", "weight_sync.strategy=disk")
    res = grpo(tmp_path, *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [
        "error: weight_sync.strategy=disk cannot drive rollout.backend=replay, which has no "
        "weights of this run; use weight_sync.strategy=none"
    ]


@pytest.mark.slow
def test_a_weightless_backend_trains_under_auto_with_the_none_strategy(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    res = grpo(tmp_path, *tiny_args(tmp_path, tiny_model_dir, "rollout.backend=replay"))
    assert res.returncode == 0, res.stderr[-3000:]
    (header,) = [e for e in events(tmp_path) if e["kind"] == "run"]
    assert header["weight_sync"] == "none"
    rows = (log_dir(tmp_path) / "metrics.jsonl").read_text().splitlines()
    versions = [json.loads(r).get("grpo_actor/policy_version") for r in rows]
    assert [v for v in versions if v is not None] == [1.0, 2.0]


# --------------------------------------------------------------- doctor


def _interpreter(path: Path, has_sglang: bool) -> Path:
    """A stand-in interpreter: it answers doctor's "can you import sglang?" probe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nexit {0 if has_sglang else 1}\n")
    path.chmod(0o755)
    return path


def _sglang_row(tmp_path: Path, *args: str, cwd: Path) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "grpo_plug", "doctor", "--fileroot", str(tmp_path), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "TERM": "dumb", "COLUMNS": "300"},
        timeout=300,
    )
    (row,) = [line for line in res.stdout.splitlines() if " sglang " in line]
    return row


@pytest.mark.slow
def test_doctor_asks_the_interpreter_a_run_would_use(tmp_path: Path) -> None:
    good = _interpreter(tmp_path / "good" / "python", True)
    bad = _interpreter(tmp_path / "bad" / "python", False)
    row = _sglang_row(tmp_path, f"sglang.python={good}", cwd=tmp_path)
    assert row.split()[0] == "ok" and f"sglang.python={good}" in row
    row = _sglang_row(tmp_path, f"sglang.python={bad}", cwd=tmp_path)
    assert row.split()[0] == "warn" and "cannot import sglang" in row
    venv = _interpreter(tmp_path / ".venv-sglang" / "bin" / "python", True)
    row = _sglang_row(tmp_path, cwd=tmp_path)
    if importlib.util.find_spec("sglang") is None:  # else this interpreter is the answer
        assert "importable by .venv-sglang/bin/python" in row and f"sglang.python={venv}" in row
    else:
        assert row.split()[0] == "ok"


@pytest.mark.slow
def test_the_printed_eval_command_rebuilds_the_trainers_arith_held_out_set(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import shlex

    from grpo_plug import components
    from grpo_plug import config as cfgmod
    from grpo_plug.cli.summary import eval_hint
    from grpo_plug.data.tasks import held_out_examples
    from grpo_plug.plugins import PluginHost

    # Training knobs unlike the held-out set's: only the printed command knows them.
    knobs = ["train_dataset.arith_max_operand=9", "train_dataset.arith_ops=+"]
    cfg = cfgmod.load(preset="cpu", overrides=[*knobs, "valid_dataset.max_samples=20"])
    _, valid = components.tasks(PluginHost(), cfg)
    want = [e.question for e in held_out_examples(valid, cfg.valid_dataset, cfg.seed)]
    printed = shlex.split(eval_hint(cfg, str(tiny_model_dir)))
    assert printed[:2] == ["grpo-plug", "eval"]
    out = tmp_path / "eval.jsonl"
    res = grpo(tmp_path, *printed[1:], "--output", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert [json.loads(r)["question"] for r in out.read_text().splitlines()] == want
