"""``disk``: the learner writes safetensors, the servers load them.

The seed's single-GPU path. Versions go to ``{dir}/v{version}`` (RAM-backed
``/dev/shm`` when it has room, so a sync costs no disk I/O); older versions are
deleted. A restarted server loads the kept version.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grpo_plug.config import TrainConfig
from grpo_plug.errors import WeightSyncError
from grpo_plug.types import RolloutBackend, ServerBackend, WeightUpdateSurface
from grpo_plug.weight_sync import sync_weights, update_surface

SHM = Path("/dev/shm")


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
    from grpo_plug.plan import run_dirs  # the run layout

    return run_dirs(cfg)[0] / "weight_update"


class Versions:
    """Saved versions in one folder: ``save`` writes ``v{version}`` atomically, and
    ``keep`` deletes every other one."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.root: Path | None = (
            Path(cfg.weight_sync.disk_dir) if cfg.weight_sync.disk_dir else None
        )
        self.saved: dict[int, Path] = {}

    def save(self, model: Any, version: int) -> Path:
        if self.root is None:
            self.root = default_root(self.cfg, model_bytes(model))
        path = self.root / f"v{version}"
        tmp = self.root / f".v{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)  # a server never sees a half-written version
        self.saved[version] = path
        return path

    def keep(self, version: int | None) -> None:
        for v in [v for v in self.saved if v != version]:
            shutil.rmtree(self.saved.pop(v), ignore_errors=True)

    def close(self) -> None:
        self.keep(None)
        if self.root is not None and self.root.is_relative_to(SHM):
            # Drop the now empty folders this run made in /dev/shm.
            for folder in (self.root, *self.root.parents):
                if folder == SHM:
                    break
                with contextlib.suppress(OSError):
                    folder.rmdir()


class DiskSync:
    name = "disk"
    phases: tuple[str | None, str] = ("save", "load")

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.verify = cfg.weight_sync.verify
        self.versions = Versions(cfg)
        self.path: Path | None = None  # the version being pushed
        self.held: tuple[int, Path] | None = None  # the version every server holds

    def sync(self, model: Any, backend: RolloutBackend, version: int) -> Mapping[str, float]:
        return sync_weights(self, model, backend, version)

    def surface(self, backend: RolloutBackend) -> WeightUpdateSurface:
        return update_surface(backend, self.name)

    def prepare(self, model: Any, version: int) -> None:
        self.path = self.versions.save(model, version)  # the servers still serve meanwhile

    def push(self, model: Any, surface: WeightUpdateSurface, version: int) -> None:
        assert self.path is not None
        surface.update_weights_from_disk(str(self.path), version)

    def pushed(self, model: Any, version: int) -> None:
        assert self.path is not None
        self.held = (version, self.path)
        self.versions.keep(version)

    def restore(self, backend: ServerBackend, index: int) -> bool:
        if self.held is None:
            raise WeightSyncError("no synced version to restore")
        version, path = self.held
        backend.load_server_weights(index, str(path), version)
        return True

    def close(self) -> None:
        self.versions.close()
