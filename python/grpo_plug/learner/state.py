"""The learner's state on disk: the recover point's weights, optimizer, scheduler and RNGs.

Whole (one process: ``model.safetensors`` + ``optimizer.pt``) or sharded (FSDP: every
rank writes its shards through ``torch.distributed.checkpoint``). The atomic folder,
the manifest and the RNG capture come from :mod:`grpo_plug.recovery.store`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from grpo_plug.errors import CheckpointError
from grpo_plug.faults import fault_point
from grpo_plug.learner import dist, fsdp
from grpo_plug.recovery.store import (
    RECOVER_DIR,
    atomic_dir,
    begin_dir,
    commit_dir,
    rng_state,
    set_rng_state,
    write_json,
)


def save_recover(
    ckpt_root: Path,
    *,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: Mapping[str, Any],
) -> Path:
    """Write the recover point; ``state`` is JSON (counters, config, logger state...)."""
    target = ckpt_root / RECOVER_DIR

    def fill(tmp: Path) -> None:
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        fault_point("mid_checkpoint_write")
        tensors, rng_meta = rng_state()
        save_file(tensors, str(tmp / "rng.safetensors"))
        write_json(
            tmp / "state.json",
            {
                **state,
                "rng": rng_meta,
                "scheduler": scheduler.state_dict(),
            },
        )

    atomic_dir(target, fill, keep_previous=True)
    return target


def load_recover(
    path: Path, *, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNGs; return the JSON state."""
    state: dict[str, Any] = json.loads((path / "state.json").read_text())
    load_model(model, str(path / "model.safetensors"))
    opt_state = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(opt_state)
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"])
    return state


# ----------------------------------------------------------------------- sharded (FSDP)

SHARDED_DIR = "dcp"


def _rank_rng_files(rank: int) -> tuple[str, str]:
    return f"rng_rank{rank}.safetensors", f"rng_rank{rank}.json"


def save_recover_sharded(
    ckpt_root: Path,
    *,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: Mapping[str, Any],
    info: Any,
) -> Path:
    """The recover point of an FSDP learner; a collective, every rank calls it.

    Model and optimizer shards go through ``torch.distributed.checkpoint`` into
    ``dcp/``; each rank adds its own RNG state; rank 0 writes ``state.json`` (with the
    world size) and the manifest once all ranks are done, then renames into place
    (a shared filesystem, as DCP needs).
    """
    target = ckpt_root / RECOVER_DIR
    tmp = dist.broadcast(begin_dir(target) if info.is_main else None, info)
    assert tmp is not None
    fsdp.save_sharded(tmp / SHARDED_DIR, model, optimizer)
    fault_point("mid_checkpoint_write")
    tensors, rng_meta = rng_state()
    st_name, json_name = _rank_rng_files(info.rank)
    save_file(tensors, str(tmp / st_name))
    write_json(tmp / json_name, rng_meta)
    dist.barrier(info)
    if info.is_main:
        write_json(
            tmp / "state.json",
            {**state, "world_size": info.world_size, "scheduler": scheduler.state_dict()},
        )
        commit_dir(tmp, target, keep_previous=True)
    dist.barrier(info)  # nobody goes on before the point is in place
    return target


def check_world_size(path: Path, world_size: int) -> None:
    """A recover point resumes with the number of learner ranks that saved it."""
    saved = int(json.loads((path / "state.json").read_text()).get("world_size", 1))
    if saved != world_size:
        raise CheckpointError(
            f"recover checkpoint {path} was saved by {saved} learner rank(s) but this run "
            f"has {world_size}: resume with the same number (torchrun --nproc-per-node "
            f"{saved}), or use another trial_name / recover.mode=disabled to start over"
        )


def load_recover_sharded(
    path: Path, *, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, info: Any
) -> dict[str, Any]:
    """Restore this rank's shards, the scheduler and this rank's RNGs; the JSON state."""
    check_world_size(path, info.world_size)
    state: dict[str, Any] = json.loads((path / "state.json").read_text())
    fsdp.load_sharded(path / SHARDED_DIR, model, optimizer)
    scheduler.load_state_dict(state["scheduler"])
    st_name, json_name = _rank_rng_files(info.rank)
    set_rng_state(load_file(str(path / st_name)), json.loads((path / json_name).read_text()))
    return state
