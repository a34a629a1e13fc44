"""Keys that were accepted and ignored now act: valid_dataset.batch_size (the held-out
eval's batches), valid_dataset.shuffle (a seeded sample of the held-out set),
actor.batch_size on the packed path (sequences per micro-batch); the arith held-out
set leaves out the training problems made at train_dataset's knobs; the printed
`grpo-plug eval` command asks for the trainer's batches."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grpo_plug import components
from grpo_plug import config as cfgmod
from grpo_plug.cli.summary import eval_hint
from grpo_plug.data.tasks import held_out_examples, load_examples
from grpo_plug.plugins import PluginHost
from tests.helpers import run_trainer, tiny_config


def _eval_batches(trainer: Any, sizes: list[int]) -> None:
    """Record the size of every greedy (evaluation) request batch the trainer sends."""
    inner = trainer.rollout.generate

    def generate(reqs: Any) -> Any:
        if reqs and reqs[0].sampling.temperature == 0.0:
            sizes.append(len(reqs))
        return inner(reqs)

    trainer.rollout.generate = generate


def test_valid_batch_size_is_the_held_out_evals_batch(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "total_train_steps=1",
        "recover.mode=disabled",
        "valid_dataset.batch_size=3",
        "evaluator.eval_before=true",
    )
    sizes: list[int] = []
    run_trainer(cfg, seven_host, before=lambda tr: _eval_batches(tr, sizes))
    assert sizes == [3, 3, 2, 3, 3, 2]  # 8 problems, before and after


def test_valid_shuffle_evaluates_a_seeded_sample(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost
) -> None:
    keys = ("total_train_steps=1", "recover.mode=disabled", "valid_dataset.shuffle=true")
    cfg = tiny_config(tmp_path, tiny_model_dir, *keys)
    run = run_trainer(cfg, seven_host)
    picked = [ex.uid for ex in run.trainer.valid_data]
    assert len(picked) == 8 and picked != [f"seven-{i}" for i in range(8)]
    records = (Path(run.summary.log_dir) / "eval_after.jsonl").read_text().splitlines()
    assert [json.loads(r)["uid"] for r in records] == picked
    # The same seed draws the same sample; without shuffle the first ones, in order.
    _, valid_task = components.tasks(seven_host, cfg)
    assert [e.uid for e in held_out_examples(valid_task, cfg.valid_dataset, cfg.seed)] == picked
    plain = tiny_config(tmp_path, tiny_model_dir)
    _, first = components.tasks(seven_host, plain)
    got = held_out_examples(first, plain.valid_dataset, plain.seed)
    assert [e.uid for e in got] == [f"seven-{i}" for i in range(8)]


def test_actor_batch_size_caps_the_packed_micro_batches(
    tmp_path: Path, tiny_model_dir: Path, seven_host: PluginHost, monkeypatch: Any
) -> None:
    from grpo_plug.learner import actor

    seen: list[int] = []
    inner = actor.train_minibatch

    def spy(model: Any, ref: Any, microbatches: Any, *args: Any, **kw: Any) -> Any:
        seen.extend(mb.num_sequences for mb in microbatches)
        return inner(model, ref, microbatches, *args, **kw)

    monkeypatch.setattr(actor, "train_minibatch", spy)
    cfg = tiny_config(
        tmp_path,
        tiny_model_dir,
        "total_train_steps=2",
        "recover.mode=disabled",
        "reward.functions=[spread]",  # every group has signal: 32 sequences a step
        "actor.attention=packed_sdpa",
        "actor.batch_size=5",
    )
    run_trainer(cfg, seven_host)
    # Uncapped, a step's sequences (~10 tokens each) all fit one 512-token micro-batch.
    assert seen and max(seen) <= 5 and sum(seen) > 5


def test_the_arith_held_out_set_leaves_out_the_training_problems(host: PluginHost) -> None:
    # Only the training knobs change: the held-out set must still leave them all out.
    cfg = cfgmod.load(
        preset="cpu",
        overrides=[
            "train_dataset.arith_max_operand=9",
            "train_dataset.arith_ops=+",
            "train_dataset.arith_size=40",
            "valid_dataset.arith_max_operand=9",
            "valid_dataset.max_samples=150",
        ],
    )
    train_task, valid_task = components.tasks(host, cfg)
    train = {e.question for e in load_examples(train_task, cfg.train_dataset)}
    held_out = {e.question for e in held_out_examples(valid_task, cfg.valid_dataset, cfg.seed)}
    assert len(train) == 40 and len(held_out) == 150
    assert not train & held_out


def test_the_printed_eval_command_asks_for_the_trainers_problems_and_batches() -> None:
    cfg = cfgmod.load(
        preset="cpu", overrides=["rollout.max_batch_size=48", "train_dataset.arith_max_operand=9"]
    )
    hint = eval_hint(cfg, "/ckpt")
    assert "--batch-size 48" in hint  # min(valid_dataset.batch_size 64, max_batch_size 48)
    assert "train_dataset.arith_max_operand=9" in hint and "arith_style=plain" in hint
