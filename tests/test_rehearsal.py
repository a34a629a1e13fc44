"""`grpo-plug train --rehearse`, the fast part: how a config is cut to fit this CPU
(pure config -> config, per preset), the shaped model, the checklist's verdict.
The rehearsals themselves run in tests/test_rehearsal_runs.py (slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from grpo_plug import config as cfgmod
from grpo_plug import launch
from grpo_plug.cli import app
from grpo_plug.recovery.store import flatten
from grpo_plug.rehearsal import STEPS, Leg, Shrunk, gpu_only, shrink, stages
from grpo_plug.rehearsal.model import choose
from grpo_plug.rehearsal.run import report
from grpo_plug.rehearsal.shrink import EMBEDDED_MODEL, MAX_NEW_TOKENS

SCHEDULES = [
    f"{s}.{f}" for s in ("saver", "recover", "evaluator") for f in ("freq_steps", "freq_epochs")
]


def _roles(cfg: cfgmod.TrainConfig) -> tuple[list[str], int]:
    p = launch.plan(cfg)
    return [x.role for x in p.processes], p.learner_ranks


@pytest.mark.parametrize("preset", cfgmod.preset_names())
def test_every_preset_shrinks_to_its_layout_on_this_cpu(preset: str, tmp_path: Path) -> None:
    cfg = cfgmod.load(preset=preset)
    got = shrink(cfg)
    new = got.cfg
    # The changes listed are exactly the keys that differ, old -> new.
    before, after = flatten(cfgmod.to_dict(cfg)), flatten(cfgmod.to_dict(new))
    diff = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert {c.key: (c.old, c.new) for c in got.changes} == diff
    # Kept: the layout, the backend, the data, the loggers, which schedules exist.
    for key in ("allocation_mode", "rollout.backend", "train_dataset.task", "loggers"):
        assert after[key] == before[key], key
    for key in SCHEDULES:
        assert (before[key] is None) == (after[key] is None), key
    assert _roles(new) == _roles(cfg)
    # Cut: a CPU model and machine, two short steps that make one epoch.
    assert new.cluster.n_gpus_per_node == 0 and new.actor.dtype in ("auto", "float32")
    assert new.actor.path == EMBEDDED_MODEL
    assert new.gconfig.max_new_tokens <= MAX_NEW_TOKENS and new.total_train_steps == STEPS
    assert new.train_dataset.max_samples == STEPS * new.train_dataset.batch_size
    assert Path(new.cluster.fileroot).parts[-1] == "rehearsal"
    assert got.legs == (2 if cfg.recover.mode != "disabled" else 1)
    # What the child reads back: the same config.
    path = tmp_path / "r.yaml"
    path.write_text(cfgmod.dump_yaml(new))
    assert cfgmod.to_dict(cfgmod.load(config_file=path)) == cfgmod.to_dict(new)


def test_gpu_presets_say_what_only_a_gpu_exercises() -> None:
    assert gpu_only(cfgmod.load(preset="cpu")) == []
    fast = gpu_only(cfgmod.load(preset="fast"))
    assert any("CUDA memory" in g and "Qwen/Qwen2.5-0.5B-Instruct" in g for g in fast)
    assert any("flash" in g for g in fast) and not any("NCCL" in g for g in fast)


def test_a_multi_gpu_layout_keeps_its_ranks_servers_and_sync_strategy() -> None:
    cfg = cfgmod.load(
        preset="full",
        overrides=[
            "allocation_mode=sglang.d2p1t1+d4p1t1",
            "cluster.n_nodes=2",
            "cluster.n_gpus_per_node=4",
        ],
    )
    got = shrink(cfg, devices_strategy="distributed")
    new = got.cfg
    # On a CPU auto would pick disk: the rehearsal pins what the GPUs would get.
    assert new.weight_sync.strategy == "distributed"
    assert (new.cluster.n_nodes, new.cluster.n_gpus_per_node) == (1, 0)
    p = launch.plan(new)
    assert [x.role for x in p.processes] == ["sglang", "sglang", "learner"]
    assert p.learner_ranks == 4 and "--nproc-per-node 4" in p.processes[-1].command
    notes = gpu_only(cfg)
    assert any(n.startswith("NCCL") and "broadcast" in n for n in notes)
    assert any("mixed-precision FSDP" in n for n in notes)
    assert any("2-node rendezvous" in n for n in notes)


def test_cuda_only_settings_turn_into_cpu_ones() -> None:
    cfg = cfgmod.load(
        preset="fast",
        overrides=[
            "actor.attention=packed_flash",
            "sglang.deterministic=true",
            "sglang.device=cuda",
            "dynamic_sampling.max_rounds=3",
            "dynamic_sampling.min_groups=20",
            "recover.mode=resume",
        ],
    )
    new = shrink(cfg).cfg
    assert new.actor.attention == "packed" and not new.sglang.deterministic
    assert new.sglang.device == "cpu" and new.sglang.dtype == "float32"
    assert new.dynamic_sampling.max_rounds == 1 and new.dynamic_sampling.min_groups == 4
    assert new.recover.mode == "auto"  # nothing to resume in a fresh rehearsal


def test_dry_run_lists_the_cuts_and_the_processes(tmp_path: Path) -> None:
    args = ["train", "--rehearse", "--dry-run", "--preset", "1hour"]
    res = CliRunner().invoke(app, [*args, f"cluster.fileroot={tmp_path}"])
    assert res.exit_code == 0, res.output
    assert "dress rehearsal of --preset 1hour: allocation sglang.d1p1t1+d1p1t1" in res.output
    assert "weight sync auto (disk)" in res.output and "2 run(s)" in res.output
    assert "actor.dtype: bfloat16 -> float32" in res.output
    assert "gconfig.max_new_tokens: 512 -> 16" in res.output
    assert "only a GPU exercises:" in res.output and "node 0  sglang   CPU" in res.output
    assert not (tmp_path / "rehearsal").exists()  # a dry run writes nothing


def test_a_model_whose_config_is_here_is_shaped_small(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    big = tmp_path / "big"
    big.mkdir()
    for f in tiny_model_dir.iterdir():
        if "token" in f.name or f.name.endswith(".jinja"):
            (big / f.name).write_bytes(f.read_bytes())
    base = AutoConfig.from_pretrained(tiny_model_dir).to_dict()
    base.update(hidden_size=256, intermediate_size=1024, num_hidden_layers=6)
    base.update(num_attention_heads=8, num_key_value_heads=4, head_dim=32)
    LlamaConfig.from_dict(base).save_pretrained(big)
    path, why = choose(str(big), tmp_path / "shaped")
    assert path == str(tmp_path / "shaped") and "llama" in why
    model = AutoModelForCausalLM.from_pretrained(path)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads) == (64, 2, 4)
    assert c.vocab_size == base["vocab_size"]
    assert (Path(path) / "tokenizer.json").is_file()


def test_a_model_not_on_this_machine_becomes_the_embedded_one(tmp_path: Path) -> None:
    path, why = choose("nobody-here/no-such-model-xyz", tmp_path / "m")
    assert path == EMBEDDED_MODEL and "not on this machine" in why
    assert not (tmp_path / "m").exists()


def _event(kind: str, t: float, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "t": t, **fields}


def _a_run_without_saves() -> list[dict[str, Any]]:
    """What a two-step run's event stream holds, checkpoint events left out."""
    rows = [_event("run", 0.0, weight_sync="inplace", resumed_from=None)]
    for step in (1, 2):
        t = 10.0 * step
        rows += [
            _event("stage", t, stage="rollout", step=step),
            _event("stage", t + 2, stage="train", step=step),
            _event("stage", t + 5, stage="weight_sync", step=step),
            _event("sample", t + 6),
            _event("health", t + 6.5),
        ]
    rows += [
        _event("stage", 40.0, stage="eval", step=2, total=4),
        _event("end", 43.0, status="done"),
    ]
    return rows


def test_the_checklist_fails_when_a_scheduled_stage_did_not_run() -> None:
    cfg = cfgmod.load(preset="cpu", overrides=["recover.mode=disabled"])
    shrunk = Shrunk(shrink(cfg).cfg, ())  # saver.freq_epochs is set: a save is due
    said: list[str] = []
    code = report(shrunk, [Leg(0, _a_run_without_saves(), 50.0)], "x", 50.0, said.append)
    assert code == 1 and said[-1] == "rehearsal x: FAILED (save did not run)"
    rows = {r.name: r for r in stages(shrunk, [Leg(0, _a_run_without_saves(), 50.0)])}
    assert rows["steps"].ran and rows["steps"].seconds == pytest.approx(2 * (2 + 3))
    assert rows["weight sync"].seconds == pytest.approx(2.0)
    assert rows["eval"].seconds == pytest.approx(3.0)
    assert not rows["recover save"].expected and not rows["Ctrl-C"].expected


def test_events_are_read_after_an_offset_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    from grpo_plug.rehearsal.checklist import read_events

    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"kind": "run", "t": 1}) + "\n")
    offset = path.stat().st_size
    with path.open("a") as f:
        f.write(json.dumps({"kind": "end", "t": 2, "status": "done"}) + '\n{"kind": "sta')
    assert read_events(path, offset) == [{"kind": "end", "t": 2, "status": "done"}]


def test_the_learner_row_says_whether_any_group_trained() -> None:
    shrunk = shrink(cfgmod.load(preset="fast"))
    legs = [Leg(0, _a_run_without_saves(), 50.0)]
    rows = [{"global_step": 1, "grpo_actor/signal_groups": 0.0}]
    idle = {r.name: r for r in stages(shrunk, legs, rows)}["learner"]
    assert not idle.ran and idle.ok and "not exercised" in idle.detail
    rows.append({"global_step": 2, "grpo_actor/signal_groups": 1.0})
    busy = {r.name: r for r in stages(shrunk, legs, rows)}["learner"]
    assert busy.ran and busy.detail.endswith("at steps 2")


def test_an_uncached_gsm8k_hub_id_rehearses_on_the_bundled_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seed's AReaL files name openai/gsm8k: without it in the HF caches a rehearsal
    reads the bundled GSM8K and says so; a cached copy is kept."""
    for var in ("HF_HUB_CACHE", "HF_DATASETS_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    areal = Path(__file__).parent / "data" / "areal" / "gsm8k_grpo_fast.yaml"
    cfg = cfgmod.load(config_file=areal)
    assert cfg.train_dataset.path == "openai/gsm8k"
    got = shrink(cfg)
    assert got.cfg.train_dataset.path is None and got.cfg.valid_dataset.path is None
    assert any(
        "train_dataset.path" in c.line() and "bundled GSM8K" in c.line() for c in got.changes
    )
    repo = tmp_path / "hf" / "hub" / "datasets--openai--gsm8k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc")
    snap = repo / "snapshots" / "abc" / "main"
    for split in ("train", "test"):
        (snap / f"{split}-00000-of-00001.parquet").parent.mkdir(parents=True, exist_ok=True)
        (snap / f"{split}-00000-of-00001.parquet").write_bytes(b"PAR1")
    assert shrink(cfg).cfg.train_dataset.path == "openai/gsm8k"
