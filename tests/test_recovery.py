"""Crash and resume: a killed run, relaunched with the same command, ends bit-identical."""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grpo_plug import config as cfgmod
from grpo_plug.errors import CheckpointError
from grpo_plug.plugins import PluginHost
from grpo_plug.recovery import store as ckpt
from tests.helpers import (
    CaptureLogger,
    assert_same,
    launch_crash_driver,
    outcome,
    run_trainer,
    tiny_config,
)


def write_config(root: Path, model: Path, **sections: dict[str, Any]) -> Path:
    data: dict[str, Any] = {
        "experiment_name": "crash",
        "trial_name": "t0",
        "seed": 5,
        "total_train_steps": 8,
        "loggers": ["jsonl"],
        "cluster": {"fileroot": str(root / "out")},
        "actor": {"path": str(model), "lr": 0.02, "ppo_n_minibatches": 2, "mb_max_tokens": 256},
        "gconfig": {"n_samples": 4, "max_new_tokens": 3},
        "train_dataset": {"task": "seven", "batch_size": 4, "max_samples": 64},
        "valid_dataset": {"task": "seven", "max_samples": 4},
        "rollout": {"max_batch_size": 8},
        "reward": {"no_eos_reward": None},
        "evaluator": {"eval_before": True},
        "recover": {"mode": "auto", "freq_steps": 2, "freq_epochs": None, "freq_secs": None},
        **sections,
    }
    path = root / "run.yaml"
    path.write_text("# grpo-plug train --config run.yaml\n" + yaml.safe_dump(data))
    return path


launch = launch_crash_driver


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("reference")
    res = launch(write_config(root, tiny_model_dir))
    assert res.returncode == 0, res.stderr[-3000:]
    ref = outcome(root)
    # The comparison means something only if the optimizer really moved the weights.
    assert len(ref["optimizer"]["state"]) > 0
    trained = sum("grpo_actor/loss" in row for row in ref["metrics"])
    assert trained >= 3, ref["metrics"]
    return ref


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault",
    [
        "mid_rollout:7",  # step 4, between generation chunks
        "mid_optimizer_step:9",  # step 5, first minibatch
        "mid_checkpoint_write:2",  # second recover point half written
        "between_renames:3",  # old point moved aside, new one not yet in place
        "between_steps:5",  # right after step 5 was logged
    ],
)
def test_killed_run_resumes_bit_identical(
    fault: str, tiny_model_dir: Path, tmp_path: Path, reference: dict[str, Any]
) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    killed = launch(config, fault)
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = launch(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = re.search(r"resumed from \S+ at global step (\d+)", resumed.stderr + resumed.stdout)
    assert said is not None, resumed.stderr[-3000:]
    assert 2 <= int(said.group(1)) < 8  # it skipped finished steps, and it had work left
    got = outcome(tmp_path)
    assert_same(got["model"], reference["model"], "model")
    assert_same(got["optimizer"], reference["optimizer"], "optimizer")
    assert got["state"]["global_step"] == reference["state"]["global_step"] == 8
    assert got["metrics"] == reference["metrics"]


DYNAMIC = {"dynamic_sampling": {"max_rounds": 2}}


@pytest.fixture(scope="module")
def dynamic_reference(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("dynamic")
    res = launch(write_config(root, tiny_model_dir, **DYNAMIC))
    assert res.returncode == 0, res.stderr[-3000:]
    ref = outcome(root)
    rounds = [row.get("rollout/dynamic_rounds", 0) for row in ref["metrics"]]
    assert sum(rounds) >= 2, ref["metrics"]  # extra rounds ran, so resume must redo them
    return ref


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["mid_rollout:16", "between_steps:3"])
def test_killed_run_with_dynamic_sampling_resumes_bit_identical(
    fault: str, tiny_model_dir: Path, tmp_path: Path, dynamic_reference: dict[str, Any]
) -> None:
    """Extra rounds draw their prompts and noise from (seed, step, round) alone."""
    config = write_config(tmp_path, tiny_model_dir, **DYNAMIC)
    killed = launch(config, fault)
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = launch(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = re.search(r"resumed from \S+ at global step (\d+)", resumed.stderr + resumed.stdout)
    assert said is not None and 2 <= int(said.group(1)) < 8, resumed.stderr[-3000:]
    got = outcome(tmp_path)
    assert_same(got["model"], dynamic_reference["model"], "model")
    assert_same(got["optimizer"], dynamic_reference["optimizer"], "optimizer")
    assert got["metrics"] == dynamic_reference["metrics"]


# ----------------------------------------------------------------------- in-process checks


class Runs:
    """One test's in-process runs of the tiny model in ``tmp_path``: each config is the
    same but for ``extra``; every trainer built here is closed when the test ends."""

    def __init__(self, tmp_path: Path, model: Path, host: PluginHost) -> None:
        self.tmp_path, self.model, self.host = tmp_path, model, host
        self.built: list[Any] = []

    def config(self, *extra: str) -> cfgmod.TrainConfig:
        keys = ("total_train_steps=4", "recover.freq_steps=2", "recover.freq_secs=null")
        return tiny_config(self.tmp_path, self.model, *keys, "valid_dataset.max_samples=2", *extra)

    def trainer(self, *extra: str) -> Any:
        """A trainer built, not run: what it decided at start (resume or not)."""
        from grpo_plug.trainer import Trainer

        tr = Trainer(self.config(*extra), host=self.host, loggers=[CaptureLogger()])
        self.built.append(tr)
        return tr

    def finished(self, *extra: str) -> Path:
        """A run to the end with recover points; its checkpoint folder."""
        return run_trainer(self.config("recover.mode=auto", *extra), self.host).trainer.ckpt_dir

    def close(self) -> None:
        for tr in self.built:
            tr.close()


@pytest.fixture()
def runs(tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost) -> Iterator[Runs]:
    r = Runs(tmp_path, tiny_model_dir, seven_host)
    yield r
    r.close()


def test_mode_disabled_starts_fresh_and_writes_nothing(runs: Runs) -> None:
    tr = run_trainer(runs.config("recover.mode=disabled"), runs.host).trainer
    assert not (tr.ckpt_dir / ckpt.RECOVER_DIR).exists()


def test_mode_resume_requires_a_checkpoint(runs: Runs) -> None:
    with pytest.raises(CheckpointError, match=r"recover.mode=resume: no valid recover"):
        runs.trainer("recover.mode=resume")


def test_mode_auto_and_resume_pick_up_a_finished_run(runs: Runs) -> None:
    runs.finished()

    def resumed_at_the_end(tr: Any) -> None:
        assert tr.global_step == 4

    for mode in ("auto", "resume"):
        cfg = runs.config(f"recover.mode={mode}")
        summary = run_trainer(cfg, runs.host, before=resumed_at_the_end).summary
        # nothing left to do: no steps, no second eval
        assert summary.steps == 4 and summary.accuracy_after is not None


def test_mode_fault_resumes_only_after_a_crash(runs: Runs) -> None:
    ckpt_dir = runs.finished()
    assert runs.trainer("recover.mode=fault").global_step == 0
    (ckpt_dir / ".running").write_text("123")  # what a crashed run leaves behind
    assert runs.trainer("recover.mode=fault").global_step == 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest"])
def test_damaged_checkpoint_is_reported_and_previous_used(runs: Runs, damage: str) -> None:
    ckpt_dir = runs.finished()
    rec = ckpt_dir / ckpt.RECOVER_DIR
    # Make an older good point available as .prev, as after a crash between renames.
    import shutil

    shutil.copytree(rec, ckpt_dir / (ckpt.RECOVER_DIR + ".prev"))
    target = rec / "model.safetensors"
    if damage == "truncate":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
        expected = "truncated"
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
        expected = "checksum mismatch"
    else:
        (rec / ckpt.MANIFEST).unlink()
        expected = "no manifest.json"
    with pytest.raises(CheckpointError, match=expected):
        ckpt.verify_dir(rec)
    path, problems = ckpt.find_recover(ckpt_dir)
    assert path == ckpt_dir / (ckpt.RECOVER_DIR + ".prev")
    assert str(rec) in problems[0]
    tr = runs.trainer("recover.mode=auto")
    assert tr.resumed_from == path and tr.global_step == 4
    assert any("unusable" in m and expected in m for m in tr.loggers[0].messages)
    shutil.rmtree(path)
    with pytest.raises(CheckpointError, match=expected):
        runs.trainer("recover.mode=resume")


def test_checkpoint_from_another_config_names_the_difference(runs: Runs) -> None:
    runs.finished()
    with pytest.raises(CheckpointError, match=r"different config: actor\.lr: 0\.02 -> 0\.01"):
        runs.trainer("recover.mode=auto", "actor.lr=0.01")


def test_hf_checkpoints_follow_the_seed_layout(runs: Runs) -> None:
    ckpt_dir = runs.finished("saver.freq_steps=2", "saver.keep_last=1")
    found = ckpt.list_hf_checkpoints(ckpt_dir)
    assert [c.path.name for c in found] == ["epoch0epochstep4globalstep4"]
    assert found[0].valid
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(found[0].path)  # loadable by transformers
    assert ckpt_dir.parts[-4:] == ("checkpoints", getpass.getuser(), "grpo", "trial0")


def test_config_diff_ignores_resumable_keys() -> None:
    a = cfgmod.to_dict(cfgmod.load(preset="cpu"))
    b = cfgmod.to_dict(
        cfgmod.load(preset="cpu", overrides=["recover.freq_steps=9", "total_train_steps=80"])
    )
    assert ckpt.config_diff(a, b) == []
    # The OOM advice's memory knobs resume too; what changes the maths does not.
    memory = ["actor.mb_max_tokens=512", "actor.gradient_checkpointing=true"]
    memory.append("sglang.mem_fraction_static=0.5")
    assert ckpt.config_diff(a, cfgmod.to_dict(cfgmod.load(preset="cpu", overrides=memory))) == []
    c = cfgmod.to_dict(cfgmod.load(preset="cpu", overrides=["gconfig.max_new_tokens=32"]))
    assert ckpt.config_diff(a, c) == ["gconfig.max_new_tokens: 64 -> 32"]


def test_a_key_added_after_the_point_was_written_reads_as_its_default() -> None:
    """A recover point from before a key existed resumes while the key keeps its default,
    and is refused, naming the key, when the run sets it otherwise."""
    defaults = cfgmod.to_dict(cfgmod.TrainConfig())
    old = cfgmod.to_dict(cfgmod.load(preset="cpu"))
    del old["actor"]["use_decoupled_loss"]
    now = cfgmod.to_dict(cfgmod.load(preset="cpu"))
    assert ckpt.config_diff(old, now) == ["actor.use_decoupled_loss: None -> False"]
    assert ckpt.config_diff(old, now, defaults) == []
    changed = cfgmod.to_dict(cfgmod.load(preset="cpu", overrides=["actor.use_decoupled_loss=true"]))
    assert ckpt.config_diff(old, changed, defaults) == ["actor.use_decoupled_loss: False -> True"]


def test_a_fresh_start_sets_an_earlier_attempts_metrics_aside(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    """A trial run again from step 0 (no recover point) must not append to the old rows:
    the eval-before row and steps 1.. would appear twice in metrics.jsonl."""
    keys = ("total_train_steps=2", "recover.mode=disabled", "loggers=[jsonl]")
    cfg = tiny_config(
        tmp_path, tiny_model_dir, *keys, "evaluator.eval_before=true", "valid_dataset.max_samples=2"
    )
    for _ in range(2):
        tr = run_trainer(cfg, seven_host, loggers=None, quiet=True).trainer
    metrics = tr.log_dir / "metrics.jsonl"

    def steps(path: Path) -> list[int]:
        return [json.loads(line)["global_step"] for line in path.read_text().splitlines()]

    assert steps(metrics) == steps(metrics.with_name("metrics.jsonl.1"))
    assert steps(metrics).count(0) == 1 and max(steps(metrics)) == 2
    assert not metrics.with_name("metrics.jsonl.2").exists()


def test_recover_point_from_a_bf16_cpu_resumes_on_one_without(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rollout.sample_dtype=auto`` samples in bf16 on an AMX CPU, and the run plan
    switches recompute_logprob on there; the config (and so the recover point) stays
    as given, so a CPU without bf16 (fp32 sampling, no recompute) resumes it."""
    from grpo_plug import plan

    keys = ("recover.mode=auto", "rollout.sample_dtype=auto", "total_train_steps=4")
    monkeypatch.setattr(plan, "native_bf16_cpu", lambda: True)
    first = run_trainer(tiny_config(tmp_path, tiny_model_dir, *keys), seven_host).trainer
    assert first.plan.recompute_logprob and first.plan.sample_dtype == "bfloat16"
    state = json.loads((first.ckpt_dir / ckpt.RECOVER_DIR / "state.json").read_text())
    assert state["config"]["actor"]["recompute_logprob"] is False  # derived, not saved
    monkeypatch.setattr(plan, "native_bf16_cpu", lambda: False)
    more = ("rollout.sample_dtype=auto", "recover.mode=resume", "total_train_steps=6")
    again = run_trainer(tiny_config(tmp_path, tiny_model_dir, *more), seven_host)
    assert not again.trainer.plan.recompute_logprob
    assert again.trainer.resumed_from is not None and again.summary.steps == 6
