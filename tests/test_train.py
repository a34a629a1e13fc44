"""End-to-end GRPO on a tiny model built from a config: it must actually learn."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from grpo_plug import config as cfgmod
from grpo_plug.plugins import PluginHost
from tests.helpers import CaptureLogger, run_trainer, tiny_config


def test_tiny_model_learns(tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost) -> None:
    run = run_trainer(tiny_config(tmp_path, tiny_model_dir), seven_host)
    summary, cap = run.summary, run.capture
    rewards = [r["grpo_actor/task_reward/avg"] for r in cap.rows if "grpo_actor/lr" in r]
    assert len(rewards) == 50  # 200 examples / 4 per step, one epoch
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    # A flipped gradient sign drives the reward to 0 instead.
    assert last > 0.7, rewards
    assert last > first + 0.3, rewards
    assert summary.accuracy_after == 1.0
    trained = [r for r in cap.rows if "grpo_actor/loss" in r]
    assert len(trained) >= 10
    row = trained[0]
    for key in (
        "grpo_actor/loss",
        "grpo_actor/clip_ratio",
        "grpo_actor/entropy",
        "grpo_actor/grad_norm",
        "grpo_actor/no_eos_ratio",
        "timeperf/rollout",
        "timeperf/train_step",
        "timeperf/weight_sync",
    ):
        assert key in row
    # Colocated, on-policy, fp32: the learner's log-probs match the sampler's.
    assert abs(row["grpo_actor/importance_weight"] - 1.0) < 1e-3
    assert row["grpo_actor/logprob_abs_diff"] < 1e-3


@pytest.mark.parametrize(
    "extra",
    [
        ("actor.loss_agg_mode=seq-mean-token-mean", "actor.adv_mode=rloo"),
        ("actor.kl_ctl=0.05", "actor.kl_estimator=k2", "actor.ppo_n_minibatches=2"),
        ("actor.recompute_logprob=true", "actor.eps_clip_higher=0.28", "actor.adv_mode=dr_grpo"),
    ],
)
def test_options_run(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost, extra: tuple[str, ...]
) -> None:
    cfg = tiny_config(tmp_path, tiny_model_dir, "total_train_steps=3", *extra)
    run = run_trainer(cfg, seven_host)
    assert run.summary.steps == 3
    losses = [r["grpo_actor/loss"] for r in run.capture.rows if "grpo_actor/loss" in r]
    assert losses, run.capture.rows  # some step trained, so there is a loss to check
    assert all(np.isfinite(v) for v in losses)


def test_recompute_logprob_reports_the_sampler_mismatch(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    rows = {}
    for dtype in ("float32", "bfloat16"):
        cfg = tiny_config(
            tmp_path / dtype,
            tiny_model_dir,
            "total_train_steps=8",
            "actor.ppo_n_minibatches=2",
            "actor.recompute_logprob=true",
            f"rollout.sample_dtype={dtype}",
            "actor.lr=1e-3",
        )
        cap = run_trainer(cfg, seven_host).capture
        rows[dtype] = [r for r in cap.rows if "grpo_actor/loss" in r]
        assert rows[dtype], f"no step trained with {dtype}"
    # fp32 sampler = the learner before the step's first update, for every minibatch
    # (a recompute after minibatch 1's update would add that update's drift).
    diff = {k: [r["grpo_actor/sampler_logprob_abs_diff"] for r in v] for k, v in rows.items()}
    assert max(diff["float32"]) < 1e-6, diff
    assert min(diff["bfloat16"]) > 1e-5, diff  # bf16 rounding, measured 3e-4 to 6e-4


@pytest.mark.parametrize(("choice", "runs"), [("packed", "packed_sdpa"), ("auto", "shared_prompt")])
def test_a_checkpointed_run_trains_packed_through_varlen_attention(
    tmp_path: Path, seven_host: PluginHost, tiny_model_dir: Path, choice: str, runs: str
) -> None:
    """Checkpointing on, actor.attention=packed (auto): it resolves to packed_sdpa
    (shared_prompt) on a CPU, the header says so, and the learner's varlen log-probs
    match what the hf sampler (the same model, padded and cached: transformers' own
    sdpa) reported, as on the padded path."""
    from grpo_plug.metrics.run import read_run
    from grpo_plug.trainer import Trainer

    model = tiny_model_dir
    cfg = tiny_config(
        tmp_path,
        model,
        "total_train_steps=3",
        "actor.gradient_checkpointing=true",
        f"actor.attention={choice}",
    )
    cap = CaptureLogger()
    trainer = Trainer(cfg, host=seven_host, loggers=[cap])
    try:
        trainer.train()
    finally:
        trainer.close()
    assert trainer.learner.attention == runs
    assert read_run(trainer.log_dir).info["attention"] == runs
    assert cfg.actor.attention == choice  # the derived setting leaves the config as it was
    trained = [r for r in cap.rows if "grpo_actor/loss" in r]
    assert trained and all(np.isfinite(r["grpo_actor/loss"]) for r in trained)
    assert abs(trained[0]["grpo_actor/importance_weight"] - 1.0) < 1e-3
    assert trained[0]["grpo_actor/logprob_abs_diff"] < 1e-3


def test_an_attention_this_machine_cannot_run_stops_the_run_at_once(
    tmp_path: Path, seven_host: PluginHost, tiny_model_dir: Path
) -> None:
    import torch

    from grpo_plug.errors import SetupError
    from grpo_plug.trainer import Trainer

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    cfg = tiny_config(tmp_path, tiny_model_dir, "actor.attention=packed_flex")
    with pytest.raises(SetupError, match=r"packed_flex: .* no flex_attention backward on the CPU"):
        Trainer(cfg, host=seven_host, loggers=[CaptureLogger()])


def test_gpu_preset_on_cpu_machine_says_what_is_missing() -> None:
    import torch

    from grpo_plug.errors import SetupError
    from grpo_plug.preflight import check_machine

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SetupError, match=r"a CUDA GPU.*--preset cpu"):
        check_machine(cfgmod.load(preset="fast"))


class Broken(CaptureLogger):
    """A logger whose backend is gone (network down, disk full)."""

    name = "broken"

    def log(self, metrics: Mapping[str, float], step: int, epoch: int) -> None:
        raise OSError("No space left on device")


def test_a_failing_logger_warns_once_and_training_goes_on(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    from grpo_plug.metrics.run import read_run

    cfg = tiny_config(tmp_path, tiny_model_dir, "total_train_steps=3", "recover.mode=disabled")
    run = run_trainer(cfg, seven_host, loggers=[Broken()])
    summary, cap = run.summary, run.capture
    assert summary.steps == 3 and [r["step"] for r in cap.rows if "grpo_actor/loss" in r]
    st = read_run(run.trainer.log_dir)
    warned = [w for _, w in st.warnings if "logger 'broken' failed" in w]
    assert len(warned) == 1 and "No space left on device" in warned[0]
    # The event stream of the same real run: header, every stage, samples, the end.
    assert st.info["backend"] == "hf" and st.info["total_steps"] == 3
    assert st.info["attention"] == "shared_prompt"  # auto on a CPU
    assert st.end is not None and st.end["status"] == "done"
    assert st.sample is not None and "completion" in st.sample
    assert st.progress.get("done") == st.progress.get("total") == 8  # the final eval


def test_dynamic_sampling_draws_rounds_until_groups_have_signal(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    """The untrained tiny model rarely says 7, so most groups start without signal:
    steps sample up to 2 more rounds of 4 prompts until 4 groups have signal."""
    keys = ("total_train_steps=4", "dynamic_sampling.max_rounds=2", "recover.mode=disabled")
    cap = run_trainer(tiny_config(tmp_path, tiny_model_dir, *keys), seven_host).capture
    steps = [r for r in cap.rows if "grpo_actor/policy_version" in r]
    assert len(steps) == 4
    for row in steps:
        rounds, signal = row["rollout/dynamic_rounds"], row["grpo_actor/signal_groups"]
        sampled = 4 * (rounds + 1)  # groups: batch_size 4 per round
        assert row["rollout/samples_current_version"] == sampled * 8  # n_samples 8
        assert row["grpo_actor/zero_adv_ratio"] == pytest.approx(1 - signal / sampled)
        assert signal >= 4 or rounds == 2  # stopped when enough, or out of rounds
        assert ("grpo_actor/loss" in row) == (signal > 0)
    assert any(r["rollout/dynamic_rounds"] > 0 for r in steps), steps  # it did draw more
