"""``disk``: the learner writes safetensors, the servers load them.

The seed's single-GPU path. Versions go to ``{dir}/v{version}`` (RAM-backed
``/dev/shm`` when it has room, so a sync costs no disk I/O); every sync is verified by
reading a few parameters back from every server, and older versions are deleted.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from grpo_plug.config import TrainConfig
from grpo_plug.types import RolloutBackend, WeightUpdateSurface
from grpo_plug.weight_sync import WeightSyncError, update_surface

SHM = Path("/dev/shm")
VERIFY_ROWS = 16  # rows of each probed parameter compared per server
PROBE_MAX_ELEMENTS = 2**21  # a probe read back costs ~0.1 s per million elements

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def model_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def default_root(cfg: TrainConfig, need: int) -> Path:
    """/dev/shm when it can hold two versions, else the run's checkpoint folder."""
    # The run's fileroot in the name: two checkouts' runs of one trial name never share it.
    root_id = hashlib.sha1(str(Path(cfg.cluster.fileroot).resolve()).encode()).hexdigest()[:10]
    tail = Path(f"grpo-plug-{getpass.getuser()}") / root_id / cfg.experiment_name / cfg.trial_name
    if SHM.is_dir():
        try:
            if shutil.disk_usage(SHM).free > 2 * need + 2**28:
                return SHM / tail / "weight_update"
        except OSError:
            pass
    from grpo_plug.preflight import run_dirs  # the run layout

    return run_dirs(cfg)[0] / "weight_update"


def probe_names(model: Any) -> list[str]:
    """First, middle and last parameter of at most PROBE_MAX_ELEMENTS elements: a
    layer's projection, a layer, the final norm. SGLang (0.5.23) turns the whole
    parameter into a Python list before it truncates it to the rows asked for: the
    2.4 s of SmolLM2's 28M-element embedding were most of a 3.1 s sync."""
    sized = [(n, p.numel()) for n, p in model.named_parameters()]
    names = [n for n, k in sized if k <= PROBE_MAX_ELEMENTS]
    if not names and sized:
        names = [min(sized, key=lambda nk: nk[1])[0]]
    picks = {names[0], names[len(names) // 2], names[-1]} if names else set()
    return [n for n in names if n in picks]


def verify_weights(model: Any, surface: WeightUpdateSurface, version: int) -> None:
    """Every server's copy of the probed parameters equals the learner's, cast to the
    server's dtype; a WeightSyncError names the first mismatch."""
    dtype = DTYPES.get(surface.weight_dtype, torch.float32)
    params = dict(model.named_parameters())
    for name in probe_names(model):
        want = params[name].detach()[:VERIFY_ROWS].to(dtype).float().cpu()
        for i, got in enumerate(surface.read_weights(name, VERIFY_ROWS)):
            got = got[: want.shape[0]]  # SGLang pads the vocabulary rows of embeddings
            if got.shape != want.shape:
                raise WeightSyncError(
                    f"weight sync to version {version}: server {i} returned {name} with shape "
                    f"{tuple(got.shape)}, the learner's is {tuple(want.shape)}"
                )
            if not torch.equal(got, want):
                diff = float((got - want).abs().max())
                raise WeightSyncError(
                    f"weight sync to version {version}: server {i}'s {name} differs from the "
                    f"learner's (max |diff| {diff:.3g}): the update did not take"
                )


class DiskSync:
    name = "disk"

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.root: Path | None = (
            Path(cfg.weight_sync.disk_dir) if cfg.weight_sync.disk_dir else None
        )
        self.current: Path | None = None
        self.version = 0
        self.seconds: dict[str, float] = {}  # phase -> seconds of the last sync

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> None:
        surface = update_surface(backend, self.name)
        t0 = time.perf_counter()
        path = self.save(model, version)  # before pausing: the servers may still serve
        t1 = time.perf_counter()
        surface.pause_generation()
        old = self.current
        try:
            surface.update_weights_from_disk(str(path), version)
            t2 = time.perf_counter()
            if self.cfg.weight_sync.verify:
                verify_weights(model, surface, version)
            # Before resuming: a server restarted meanwhile reloads this version.
            self.current, self.version = path, version
        finally:
            surface.continue_generation()
        t3 = time.perf_counter()
        backend.set_policy_version(version)
        if old is not None and old != path:
            shutil.rmtree(old, ignore_errors=True)
        if hasattr(backend, "resync"):  # a restarted server reloads the kept version
            backend.resync = self.resync_server(backend)
        self.seconds = {"save": t1 - t0, "load": t2 - t1, "verify": t3 - t2}

    def resync_server(self, backend: Any) -> Callable[[int], None]:
        def resync(index: int) -> None:
            if self.current is None:
                raise WeightSyncError("no synced version to restore")
            backend.update_server_from_disk(index, str(self.current), self.version)

        return resync

    def save(self, model: Any, version: int) -> Path:
        if self.root is None:
            self.root = default_root(self.cfg, model_bytes(model))
        path = self.root / f"v{version}"
        tmp = self.root / f".v{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)  # a server never sees a half-written version
        return path

    def close(self) -> None:
        if self.current is not None:
            shutil.rmtree(self.current, ignore_errors=True)
            self.current = None
        if self.root is not None and self.root.is_relative_to(SHM):
            # Drop the now empty folders this run made in /dev/shm.
            for folder in (self.root, *self.root.parents):
                if folder == SHM:
                    break
                with contextlib.suppress(OSError):
                    folder.rmdir()
