"""Checkpoints (Hugging Face format) and recover points (exact resume), written atomically.

Layout (the seed's)::

    {fileroot}/checkpoints/{user}/{experiment}/{trial}/
        default/epoch{e}epochstep{s}globalstep{g}/   HF weights + tokenizer
        recover_checkpoint/                           everything needed to resume
            model.safetensors  optimizer.pt  rng.safetensors  state.json  manifest.json

Every save goes to a temporary sibling directory; each file is fsynced, the manifest
(sha256 and size of every file) is written last, then the directory is renamed into
place. The previous recover point is moved aside first and deleted only after the new
one is in place, so a crash at any instant leaves at least one complete point, and
loading falls back to it. Loading never unpickles code: safetensors for tensors,
``torch.load(weights_only=True)`` for the optimizer, JSON for the rest.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grpo_plug.errors import CheckpointError
from grpo_plug.faults import fault_point

FORMAT_VERSION = 1
RECOVER_DIR = "recover_checkpoint"
MANIFEST = "manifest.json"
CKPT_RE = re.compile(r"^epoch(\d+)epochstep(\d+)globalstep(\d+)$")

# Keys that may change between a run and its resumption without changing what is trained.
RESUMABLE_KEYS = (
    "recover.",
    "saver.",
    "evaluator.",
    "loggers",
    "wandb.",
    "total_train_steps",
    "total_train_epochs",
    "rollout.request_",
    "rollout.max_concurrent_rollouts",
    "cluster.fileroot",
    "valid_dataset.",
    # Memory knobs (the OOM advice's): they change how a step is cut up, not its maths,
    # since every micro-batch's loss is weighted by the step's global token counts.
    "actor.mb_max_tokens",
    "actor.gradient_checkpointing",
    "sglang.mem_fraction_static",
)


# ----------------------------------------------------------------------- atomic writes


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def begin_dir(target: Path) -> Path:
    """A fresh temporary sibling of ``target`` to fill (stale ones from killed writers go)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.mkdir()
    return tmp


def commit_dir(tmp: Path, target: Path, *, keep_previous: bool) -> None:
    """Fsync ``tmp``'s files, write the manifest last, then rename ``tmp`` to ``target``.

    With ``keep_previous`` an existing ``target`` is renamed to ``target.prev`` and only
    removed once the new directory is in place.
    """
    files = {}
    for p in sorted(tmp.rglob("*")):
        if p.is_file():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
            files[str(p.relative_to(tmp))] = {"sha256": _sha256(p), "size": p.stat().st_size}
    write_json(tmp / MANIFEST, {"format": FORMAT_VERSION, "files": files, "time": time.time()})
    with (tmp / MANIFEST).open("rb") as fh:
        os.fsync(fh.fileno())
    _fsync_dir(tmp)
    prev = target.with_name(target.name + ".prev")
    if target.exists():
        if keep_previous:
            if prev.exists():
                shutil.rmtree(prev)
            target.rename(prev)
        else:
            shutil.rmtree(target)
    fault_point("between_renames")
    tmp.rename(target)
    _fsync_dir(target.parent)
    if prev.exists():
        shutil.rmtree(prev)


def atomic_dir(target: Path, fill: Callable[[Path], None], *, keep_previous: bool) -> None:
    """Create ``target`` by filling a temp dir, adding a manifest, fsyncing and renaming."""
    tmp = begin_dir(target)
    fill(tmp)
    commit_dir(tmp, target, keep_previous=keep_previous)


def verify_dir(path: Path) -> dict[str, Any]:
    """Check a checkpoint directory against its manifest; raise CheckpointError if not."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"{path}: no {MANIFEST} (incomplete or not a checkpoint)")
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{manifest_path}: unreadable manifest") from None
    if manifest.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {manifest.get('format')!r} unsupported")
    for rel, meta in files.items():
        p = path / rel
        if not p.is_file():
            raise CheckpointError(f"{p}: missing")
        if p.stat().st_size != meta["size"]:
            raise CheckpointError(f"{p}: truncated ({p.stat().st_size} of {meta['size']} bytes)")
        if _sha256(p) != meta["sha256"]:
            raise CheckpointError(f"{p}: checksum mismatch")
    return dict(manifest)


# ----------------------------------------------------------------------- HF checkpoints


def save_hf_checkpoint(
    ckpt_root: Path,
    model: Any,
    tokenizer: Any,
    *,
    epoch: int,
    epoch_step: int,
    global_step: int,
    keep_last: int | None,
) -> Path:
    """Weights + config + tokenizer at ``default/epoch{e}epochstep{s}globalstep{g}/``."""
    target = ckpt_root / "default" / f"epoch{epoch}epochstep{epoch_step}globalstep{global_step}"

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    atomic_dir(target, fill, keep_previous=False)
    if keep_last is not None:
        for old in list_hf_checkpoints(ckpt_root)[:-keep_last]:
            shutil.rmtree(old.path, ignore_errors=True)
    return target


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    kind: str  # "hf" or "recover"
    epoch: int
    epoch_step: int
    global_step: int
    time: float | None
    valid: bool
    problem: str


def _info(path: Path, kind: str, epoch: int, epoch_step: int, step: int) -> CheckpointInfo:
    try:
        manifest = verify_dir(path)
        return CheckpointInfo(path, kind, epoch, epoch_step, step, manifest.get("time"), True, "")
    except CheckpointError as e:
        return CheckpointInfo(path, kind, epoch, epoch_step, step, None, False, str(e))


def list_hf_checkpoints(ckpt_root: Path) -> list[CheckpointInfo]:
    found = []
    base = ckpt_root / "default"
    if base.is_dir():
        for p in base.iterdir():
            m = CKPT_RE.match(p.name)
            if m and p.is_dir():
                e, s, g = map(int, m.groups())
                found.append(_info(p, "hf", e, s, g))
    return sorted(found, key=lambda c: c.global_step)


def list_recover_points(ckpt_root: Path) -> list[CheckpointInfo]:
    out = []
    for name in (RECOVER_DIR, RECOVER_DIR + ".prev"):
        p = ckpt_root / name
        if not p.is_dir():
            continue
        try:
            state = json.loads((p / "state.json").read_text())
            e, s, g = state["epoch"], state["epoch_step"], state["global_step"]
        except (OSError, json.JSONDecodeError, KeyError):
            e = s = g = -1
        out.append(_info(p, "recover", e, s, g))
    return out


# ----------------------------------------------------------------------- recover points


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON) capturing python, numpy, torch and CUDA generators."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = st
    py = random.getstate()
    np_state: Any = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            np_state[0],
            np_state[1].tolist(),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
    }
    return tensors, meta


def set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    v, state, gauss = meta["python"]
    random.setstate((v, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def config_diff(
    saved: Mapping[str, Any], current: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> list[str]:
    """Differences that matter for resuming: ``key: old -> new``. A key the saved config
    lacks (a point written before the key existed) counts as its value in ``defaults``."""
    a, b = flatten(saved), flatten(current)
    for key, value in flatten(defaults or {}).items():
        a.setdefault(key, value)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(RESUMABLE_KEYS):
            continue
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return diffs


def find_recover(ckpt_root: Path) -> tuple[Path | None, list[str]]:
    """The newest valid recover point, and the problems found with invalid ones."""
    problems: list[str] = []
    for name in (RECOVER_DIR, RECOVER_DIR + ".prev"):
        p = ckpt_root / name
        if not p.exists():
            continue
        try:
            verify_dir(p)
            return p, problems
        except CheckpointError as e:
            problems.append(str(e))
    return None, problems
