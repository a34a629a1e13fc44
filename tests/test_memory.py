"""Out of memory: the seed's advice as behaviour, and doctor's "what fits" arithmetic.

There is no GPU here, so a CUDA OOM is injected: a real tiny run through `grpo-plug
train` whose learner step raises ``torch.OutOfMemoryError`` where the loss would run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from grpo_plug import config as cfgmod
from grpo_plug.cli import app, doctor
from grpo_plug.learner import actor, oom
from grpo_plug.plugins import PluginHost
from tests.helpers import TinyModels, tiny_config


def test_advice_names_each_knob_with_its_value_and_the_next_one() -> None:
    seed_before = ["sglang.mem_fraction_static=0.8", "actor.gradient_checkpointing=false"]
    cfg = cfgmod.load(preset="fast", overrides=seed_before)  # the seed's "reduced from 0.8"
    text = oom.advice(cfg, torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert text.startswith("out of GPU memory in the learner's train step: CUDA out of memory.")
    mb = cfg.actor.mb_max_tokens
    assert "rollout.max_concurrent_rollouts: 32 -> 16  [the recover point still resumes]" in text
    assert "sglang.mem_fraction_static: 0.6 -> 0.5" in oom.advice(
        cfgmod.load(preset="fast"), RuntimeError("x")
    )
    for line in (
        "sglang.mem_fraction_static: 0.8 -> 0.6",
        f"actor.mb_max_tokens: {mb} -> {mb // 2}  [the recover point still resumes]",
        "actor.gradient_checkpointing: false -> true  [the recover point still resumes]",
        f"gconfig.max_new_tokens: {cfg.gconfig.max_new_tokens} -> "
        f"{cfg.gconfig.max_new_tokens // 2}",
        f"rollout.max_concurrent_rollouts: {cfg.rollout.max_concurrent_rollouts} -> "
        f"{cfg.rollout.max_concurrent_rollouts // 2}",
    ):
        assert line in text, text
    new_tokens = f"gconfig.max_new_tokens: {cfg.gconfig.max_new_tokens} -> "
    assert f"{new_tokens}{cfg.gconfig.max_new_tokens // 2}\n" in text  # changes the run
    low = cfgmod.load(
        overrides=["actor.gradient_checkpointing=true", "gconfig.max_new_tokens=1"]
    )  # colocated: no server memory to give back; knobs at their floor are left out
    knobs = "\n".join(oom.knobs(low))
    assert "sglang." not in knobs and "gradient_checkpointing" not in knobs
    assert "max_new_tokens" not in knobs


def _oom(*args: Any, **kwargs: Any) -> Any:
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (injected)")


@pytest.mark.slow
def test_oom_in_a_real_learner_step_ends_with_the_advice(
    tmp_path: Path,
    seven_host: PluginHost,
    tiny_models: TinyModels,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_models(seed=1)
    keys = ("total_train_steps=2", "loggers=[jsonl]", "reward.functions=[spread]")
    cfg = tiny_config(tmp_path, model, *keys, "reward.weights=[1.0]")  # spread: steps train
    path = tmp_path / "run.yaml"
    path.write_text(cfgmod.dump_yaml(cfg))
    monkeypatch.setattr(actor, "train_minibatch", _oom)  # where the forward/backward runs
    res = CliRunner().invoke(app, ["train", "--config", str(path), "--no-tui"])
    assert res.exit_code == 2, res.output  # a run error: one message, exit status 2
    out = res.output
    assert "error: out of GPU memory in the learner's train step: CUDA out of memory." in out
    assert f"actor.mb_max_tokens: {cfg.actor.mb_max_tokens} -> " in out
    assert f"gconfig.max_new_tokens: {cfg.gconfig.max_new_tokens} -> " in out
    assert "actor.gradient_checkpointing: false -> true" in out
    assert "Traceback" not in out
    assert out.count("out of GPU memory") == 1


def test_training_memory_arithmetic() -> None:
    """params + grads + 2 AdamW moments, at the learner's dtype, per rank."""
    gpu = cfgmod.load(preset="fast")  # auto dtype: bf16 on a GPU, one learner rank
    est = doctor.training_memory(494_000_000, gpu, device="cuda")
    assert (est.dtype, est.bytes_per_param, est.ranks) == ("bfloat16", 8, 1)
    assert est.per_rank_bytes == 494_000_000 * 8
    kl = cfgmod.load(preset="fast", overrides=["actor.kl_ctl=0.1"])  # + reference weights
    assert doctor.training_memory(1000, kl, device="cuda").per_rank_bytes == 1000 * 10
    fsdp = cfgmod.load(
        preset="fast",
        overrides=["allocation_mode=sglang.d1p1t1+d4p1t1", "cluster.n_gpus_per_node=8"],
    )
    est = doctor.training_memory(1000, fsdp, device="cuda")  # fp32 master weights, sharded
    assert (est.dtype, est.bytes_per_param, est.ranks) == ("float32", 16, 4)
    assert est.per_rank_bytes == 1000 * 16 // 4 + 1000 * 4  # + rank 0's unsharded copy
    cpu = doctor.training_memory(1000, cfgmod.load(), device="cpu")
    assert (cpu.dtype, cpu.per_rank_bytes) == ("float32", 16_000)


def test_count_parameters_from_the_config_alone(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    path = tiny_model_dir
    real = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(path).parameters())
    assert doctor.count_parameters(str(path)) == real


def test_fits_row_compares_with_free_memory(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tiny_model_dir
    cfg = cfgmod.load(preset="fast", overrides=[f"actor.path={path}"])
    n = doctor.count_parameters(str(path))
    check, status, detail, _ = doctor.fits_row(cfg, 2**30, "cuda:0")
    assert (check, status) == ("fits", "ok")
    assert f"{n * 8 / 2**30:.1f} GiB per learner rank (1 rank(s)) vs 1.0 GiB free" in detail
    assert doctor.fits_row(cfg, n * 8, "cuda:0")[1] == "warn"  # no room beyond the state
    missing = cfgmod.load(preset="fast", overrides=[f"actor.path={tmp_path / 'none'}"])
    assert doctor.fits_row(missing, 2**30, "cuda:0")[1] == "warn"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only output")
def test_doctor_prints_no_gpu_row_without_cuda() -> None:
    rows = doctor.torch_checks(cfgmod.load())
    assert [r[0] for r in rows] == ["torch", "cuda"]
