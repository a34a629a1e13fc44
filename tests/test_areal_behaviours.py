"""What the keys the AReaL dialect maps do, each against numbers worked out by hand:
reward scaling and bias, batch vs group advantage normalisation, the LR schedules and
warmup, the AdamW settings, min_new_tokens, greedy, disable_dropout; and a hub dataset
id read from the Hugging Face caches."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from grpo_plug import config as cfgmod
from grpo_plug import group_sampling
from grpo_plug.data.tasks import Gsm8kTask
from grpo_plug.errors import DataError
from grpo_plug.learner.actor import make_optimizer, make_scheduler
from grpo_plug.models import disable_dropout
from grpo_plug.rollout.hf import HFBackend
from grpo_plug.types import GenerationRequest, SamplingParams
from tests.helpers import TinyModels, run_trainer, tiny_config

SEED_FAST = Path(__file__).resolve().parent / "data" / "areal" / "gsm8k_grpo_fast.yaml"


def cfg_with(*overrides: str) -> cfgmod.TrainConfig:
    return cfgmod.load(overrides=list(overrides))


# ----------------------------------------------------------------- rewards, advantages


def test_reward_scaling_multiplies_and_bias_shifts_before_the_group_stage() -> None:
    rewards = np.array([1.0, 0.0, 1.0, 1.0])  # two groups of 2
    plain = cfg_with("gconfig.n_samples=2", "actor.adv_mode=dr_grpo")
    shaped = cfg_with(
        "gconfig.n_samples=2",
        "actor.adv_mode=dr_grpo",
        "actor.reward_scaling=10",
        "actor.reward_bias=-0.5",
    )
    # (r - 0.5) * 10 = [5, -5, 5, 5]; minus each group's mean: [5, -5, 0, 0]
    np.testing.assert_allclose(group_sampling.group_advantages(rewards, shaped), [5, -5, 0, 0])
    np.testing.assert_allclose(group_sampling.group_advantages(rewards, plain), [0.5, -0.5, 0, 0])
    # grpo divides by the group std, so scale and bias cancel, as in AReaL's group norm
    g_plain = cfg_with("gconfig.n_samples=2")
    g_shaped = cfg_with("gconfig.n_samples=2", "actor.reward_scaling=10", "actor.reward_bias=-0.5")
    np.testing.assert_allclose(
        group_sampling.group_advantages(rewards, g_shaped),
        group_sampling.group_advantages(rewards, g_plain),
        rtol=1e-5,
    )


ADV = np.array([1.0, -1.0, 0.5, -0.5], dtype=np.float32)
LENS = np.array([1.0, 3.0, 2.0, 2.0])


def test_batch_level_normalisation_weighs_each_token() -> None:
    got = group_sampling.normalize_advantages(ADV, LENS, np.ones(4, bool), 2, "batch", "batch")
    # token-weighted mean (1*1 - 1*3 + 0.5*2 - 0.5*2) / 8 = -0.25
    dev = [1.25, -0.75, 0.75, -0.25]
    # unbiased: (1*1.25^2 + 3*0.75^2 + 2*0.75^2 + 2*0.25^2) / (8 - 1) = 4.5 / 7
    std = math.sqrt(4.5 / 7)
    np.testing.assert_allclose(got, [d / (std + 1e-5) for d in dev], rtol=1e-6)
    mean_only = group_sampling.normalize_advantages(ADV, LENS, np.ones(4, bool), 2, "batch", "none")
    np.testing.assert_allclose(mean_only, dev, rtol=1e-6)


def test_group_level_normalisation_is_per_prompt() -> None:
    got = group_sampling.normalize_advantages(ADV, LENS, np.ones(4, bool), 2, "group", "group")
    # group 1: mean (1 - 3) / 4 = -0.5, dev [1.5, -0.5], var (2.25 + 3*0.25) / 3 = 1
    # group 2: mean 0, dev [0.5, -0.5], var (2*0.25 + 2*0.25) / 3 = 1/3
    s2 = math.sqrt(1 / 3)
    want = [1.5 / (1 + 1e-5), -0.5 / (1 + 1e-5), 0.5 / (s2 + 1e-5), -0.5 / (s2 + 1e-5)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_sequences_left_out_do_not_count_and_stay_as_they_were() -> None:
    kept = np.array([True, True, False, False])
    got = group_sampling.normalize_advantages(ADV, LENS, kept, 2, "batch", "batch")
    # only the first group: mean -0.5, dev [1.5, -0.5], std 1
    np.testing.assert_allclose(got, [1.5 / (1 + 1e-5), -0.5 / (1 + 1e-5), 0.5, -0.5], rtol=1e-6)
    none = group_sampling.normalize_advantages(ADV, LENS, kept, 2, "none", "none")
    assert none is ADV


# ----------------------------------------------------------------- optimizer, schedule


def _lrs(kind: str, warmup: float, total: int, min_ratio: float = 0.0) -> list[float]:
    actor = cfg_with(
        "actor.lr=1.0",
        f"actor.lr_scheduler_type={kind}",
        f"actor.warmup_steps_proportion={warmup}",
        f"actor.min_lr_ratio={min_ratio}",
    ).actor
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=actor.lr)
    sched = make_scheduler(opt, actor, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_lr_schedules_and_warmup_proportion() -> None:
    assert _lrs("constant", 0.0, 4) == [1.0, 1.0, 1.0, 1.0]
    # warmup: int(0.5 * 4) = 2 steps of (t + 1) / (2 + 1), then constant
    assert _lrs("constant", 0.5, 4) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    # linear decay over the 4 steps after no warmup: 1 - t/4
    assert _lrs("linear", 0.0, 4) == pytest.approx([1.0, 0.75, 0.5, 0.25])
    # to a floor of min_lr_ratio: 1 - (1 - 0.2) * t/4
    assert _lrs("linear", 0.0, 4, 0.2) == pytest.approx([1.0, 0.8, 0.6, 0.4])
    assert _lrs("cosine", 0.0, 4) == pytest.approx(
        [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    )


def test_adamw_takes_the_seed_configs_optimizer_block() -> None:
    cfg = cfgmod.load(
        config_file=SEED_FAST,
        overrides=["async_training=false", "actor.use_decoupled_loss=false"],
    )
    opt = make_optimizer(torch.nn.Linear(2, 2), cfg.actor)
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.AdamW)
    assert group["lr"] == pytest.approx(1.7e-5) and group["weight_decay"] == pytest.approx(0.017)
    assert group["betas"] == (0.9, 0.999) and group["eps"] == pytest.approx(1e-8)
    assert cfg.actor.max_grad_norm == 1.0  # gradient_clipping


# ----------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def tiny(tiny_models: TinyModels) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_models(hidden=64)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _requests(sp: SamplingParams, n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"r{i}", p, n, sp) for i, p in enumerate([[1, 5, 6, 2], [1, 9, 2]])]


def test_min_new_tokens_keeps_stop_tokens_out_until_then(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    keep = model.config.vocab_size // 2  # the only token that is not a stop token
    backend = HFBackend(model, tok)
    backend.eos_ids = [i for i in range(model.config.vocab_size) if i != keep]
    torch.manual_seed(0)
    free = backend.generate(_requests(SamplingParams(max_new_tokens=8), 4))
    assert min(len(s.output_ids) for g in free for s in g) < 3  # stops come early
    torch.manual_seed(0)
    sp = SamplingParams(max_new_tokens=8, min_new_tokens=5)
    held = backend.generate(_requests(sp, 4))
    for s in (s for g in held for s in g):
        assert s.output_ids[:5] == [keep] * 5  # nothing else could be drawn
        assert len(s.output_ids) >= 6 and all(math.isfinite(x) for x in s.logprobs)


def test_greedy_training_rollouts_sample_at_temperature_zero(tiny: tuple[Any, Any]) -> None:
    cfg = cfg_with("gconfig.greedy=true", "gconfig.temperature=0.7", "gconfig.min_new_tokens=2")
    sp = group_sampling.training_sampling(cfg)
    assert (sp.temperature, sp.min_new_tokens) == (0.0, 2)
    assert group_sampling.training_sampling(cfg_with("gconfig.temperature=0.7")).temperature == 0.7
    model, tok = tiny
    groups = HFBackend(model, tok).generate(_requests(sp, 3))
    for g in groups:
        assert len({tuple(s.output_ids) for s in g}) == 1  # greedy: one answer per prompt


def test_disable_dropout_makes_training_forwards_deterministic(tiny_models: TinyModels) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models(hidden=64), attention_dropout=0.5)
    model.train()
    ids = torch.tensor([[1, 5, 6, 7, 8, 9, 2]])

    def two_forwards() -> bool:
        with torch.no_grad():
            return torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)

    torch.manual_seed(0)
    assert not two_forwards()  # attention dropout is on
    assert disable_dropout(model) > 0
    assert two_forwards() and model.config.attention_dropout == 0.0


def test_a_run_with_the_seed_configs_advantage_settings(
    tmp_path: Path, tiny_model_dir: Path, seven_host: Any
) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "total_train_steps=3",
        "actor.reward_scaling=10",
        "actor.reward_bias=-0.5",
        "actor.adv_norm.mean_level=batch",
        "actor.adv_norm.std_level=batch",
        "actor.lr_scheduler_type=linear",
        "actor.disable_dropout=true",
        host=seven_host,
    )
    run = run_trainer(cfg, seven_host)
    losses = [r["grpo_actor/loss"] for r in run.capture.rows if "grpo_actor/loss" in r]
    assert losses and all(math.isfinite(x) for x in losses)
    lrs = [r["grpo_actor/lr"] for r in run.capture.rows if "grpo_actor/lr" in r]
    assert len(lrs) == 3 and lrs[0] > lrs[1] > lrs[2]  # linear decay


# ----------------------------------------------------------------- hub dataset ids


ROWS = [{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}]


def _task(split: str = "train") -> Gsm8kTask:
    ds = cfgmod.DatasetConfig(task="gsm8k", path="openai/gsm8k", split=split)
    return Gsm8kTask(ds)


def test_hub_id_is_read_from_the_hub_cache(tmp_path: Path, monkeypatch: Any) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = tmp_path / "hub" / "datasets--openai--gsm8k"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit / "main"
    snap.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS), snap / "train-00000-of-00001.parquet")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "none"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (ex,) = _task().load()
    assert ex.question == "What is 2 + 3?" and ex.gold.endswith("#### 5")


def test_hub_id_is_read_from_the_datasets_cache(tmp_path: Path, monkeypatch: Any) -> None:
    import pyarrow as pa

    folder = tmp_path / "ds" / "openai___gsm8k" / "main" / "0.0.0" / "abc123"
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(ROWS)
    with (
        pa.OSFile(str(folder / "gsm8k-test.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "ds"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (ex,) = _task("test").load()
    assert ex.question == "What is 2 + 3?"


def test_hub_id_offline_without_a_cache_says_how_to_use_a_local_copy(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "b"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        _task().load()
    msg = str(info.value)
    assert "not in the Hugging Face cache" in msg and "local JSONL or parquet" in msg
    assert "bundled GSM8K" in msg and "\n" not in msg
