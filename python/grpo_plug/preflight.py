"""Before any heavy work: whether this machine can run the config."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from grpo_plug.config import TrainConfig
from grpo_plug.errors import SetupError
from grpo_plug.plan import resolve as resolve_plan


def sglang_importable(python: str | None) -> bool:
    """Whether ``python`` (default: this interpreter) can import sglang."""
    import importlib.util
    import subprocess

    # absolute(), not resolve(): venv interpreters are symlinks to one base Python, and
    # which venv it is lives in the link's location.
    if python is None or Path(python).absolute() == Path(sys.executable).absolute():
        return importlib.util.find_spec("sglang") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('sglang') is None)"
    try:
        return subprocess.run([python, "-c", probe], timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_machine(cfg: TrainConfig) -> None:
    """GPU presets stop at once on a machine that cannot run them."""
    launches = cfg.rollout.backend == "sglang" and not cfg.rollout.server_addrs
    missing = []
    if cfg.cluster.n_gpus_per_node > 0 and not torch.cuda.is_available():
        missing.append("a CUDA GPU (none found)")
    if launches and not sglang_importable(cfg.sglang.python):
        where = cfg.sglang.python or sys.executable
        missing.append(
            f"SGLang (not installed for {where}; pip install 'grpo-plug[sglang]', or point "
            "sglang.python at an interpreter that has it, e.g. .venv-sglang/bin/python from "
            "`make sglang-env`)"
        )
    if missing:
        raise SetupError(
            "this config needs "
            + " and ".join(missing)
            + "; on this machine run `grpo-plug train --preset cpu`"
        )


def check_world_size(cfg: TrainConfig, world_size: int) -> None:
    """The learner ranks the allocation asks for are the ranks torchrun started."""
    if cfg.allocation_mode == "local":  # any number of ranks (torchrun started by hand)
        return
    want = resolve_plan(cfg).learner_ranks
    if want != world_size:
        raise SetupError(
            f"allocation_mode={cfg.allocation_mode} trains on {want} learner rank(s) "
            f"but this run has {world_size}; start it with `grpo-plug train`, which starts "
            f"them (torchrun --nproc-per-node {want} -m grpo_plug train ...; see --dry-run)"
        )
