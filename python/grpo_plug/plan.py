"""The run plan: what a validated config means on this machine, resolved once.

The config says what the user asked for; the plan says what will run: the parsed
``allocation_mode`` (learner ranks, server GPUs), the run's folders, the sampling
dtype ``auto`` picks, and the effective ``recompute_logprob``. It is frozen, built
by :func:`resolve` from the config alone (every rank and the launcher get the same
plan) and passed down; nothing writes derived settings back into the config, so the
saved config is the user's and a recover point resumes on another CPU.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path

from grpo_plug.config import Allocation, TrainConfig, parse_allocation
from grpo_plug.config.validate import colocated_ranks


def run_dirs(cfg: TrainConfig) -> tuple[Path, Path]:
    """(checkpoint dir, log dir) in the seed's layout:
    ``{fileroot}/{checkpoints,logs}/{user}/{experiment}/{trial}``."""
    user = getpass.getuser()
    root = Path(cfg.cluster.fileroot)
    tail = Path(user) / cfg.experiment_name / cfg.trial_name
    return root / "checkpoints" / tail, root / "logs" / tail


def native_bf16_cpu() -> bool:
    """This CPU multiplies bfloat16 in hardware (AMX or AVX-512 BF16)."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def learner_dtype(setting: str, device: str) -> str:
    """``actor.dtype`` as a dtype name: ``auto`` is float32 on a CPU, bfloat16 on a GPU."""
    if setting == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return setting


def resolve_sample_dtype(setting: str, device: str, learner: str = "float32") -> str:
    """``rollout.sample_dtype`` as a dtype name. ``auto``: bfloat16 on a CPU with native
    bf16 matmuls (measured ~1.5-2x the fp32 rollout there, bench_rollout), else the
    learner's own dtype (no copy)."""
    if setting == "auto":
        return "bfloat16" if device == "cpu" and native_bf16_cpu() else learner
    return setting


@dataclass(frozen=True)
class RunPlan:
    """Derived settings of one run; see the module docstring."""

    allocation: Allocation | None  # SGLang servers + learner; None when colocated
    learner_ranks: int  # over all nodes
    shared_gpu: bool  # one GPU for the server and the learner (the seed's single GPU)
    ckpt_dir: Path
    log_dir: Path
    learner_dtype: str  # the learner's weights
    sample_dtype: str  # the hf backend's sampling weights (a copy when not the learner's)
    recompute_logprob: bool  # effective: the user's, or forced (bf16 sampling, decoupled loss)
    recompute_reason: str | None  # why it is on when the user did not ask

    @property
    def server_gpus(self) -> int:
        return self.allocation.gen_gpus if self.allocation is not None else 0

    def learner_gpu_offset(self, cfg: TrainConfig, node: int) -> int:
        """The first GPU of this node's learner ranks: after the servers' GPUs on node 0
        (servers run there only), 0 elsewhere, when sharing one GPU or when attaching."""
        alloc = self.allocation
        if alloc is None or node != 0 or cfg.rollout.server_addrs or self.shared_gpu:
            return 0
        return alloc.gen_gpus if cfg.cluster.n_gpus_per_node else 0

    def lines(self) -> list[str]:
        """The plan as ``--dry-run`` and the run header show it."""
        rec = "on" if self.recompute_logprob else "off"
        if self.recompute_reason:
            rec += f" ({self.recompute_reason})"
        return [
            f"learner ranks: {self.learner_ranks}, server GPUs: {self.server_gpus}",
            f"dtypes: learner {self.learner_dtype}, hf sampling {self.sample_dtype}; "
            f"recompute_logprob: {rec}",
            f"checkpoints: {self.ckpt_dir}",
            f"logs: {self.log_dir}",
        ]


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def allocation_of(cfg: TrainConfig) -> tuple[Allocation | None, int]:
    """(the SGLang layout or None when colocated, learner ranks over all nodes): the part
    of the plan that needs no torch (the thread plan is made before torch loads)."""
    alloc = parse_allocation(cfg.allocation_mode)
    ranks = alloc.train_dp if alloc is not None else (colocated_ranks(cfg.allocation_mode) or 1)
    return alloc, ranks


def resolve(cfg: TrainConfig, *, device: str | None = None) -> RunPlan:
    """The plan of ``cfg`` (already validated) on this machine."""
    alloc, ranks = allocation_of(cfg)
    one_gpu = cfg.cluster.n_gpus_per_node == 1 and cfg.cluster.n_nodes == 1
    shared = alloc is not None and one_gpu and alloc.gen_gpus == 1 and alloc.train_dp == 1
    ckpt_dir, log_dir = run_dirs(cfg)
    device = device or _device()
    learner = learner_dtype(cfg.actor.dtype, device)
    dtype, recompute, reason = learner, cfg.actor.recompute_logprob, None
    if cfg.rollout.backend == "hf":
        dtype = resolve_sample_dtype(cfg.rollout.sample_dtype, device, learner)
        if dtype != learner and cfg.rollout.sample_dtype == "auto" and ranks > 1:
            dtype = learner  # no copy under torchrun: keep every rank's loss as it was
        if dtype != learner and not recompute:
            # The sampler's bf16 log-probs are not the learner's: the loss recomputes them.
            recompute, reason = True, f"rollout.sample_dtype={cfg.rollout.sample_dtype}"
    if cfg.actor.use_decoupled_loss and not recompute:
        # pi_prox is the learner's recompute before the update (AReaL: whenever decoupled).
        recompute, reason = True, "actor.use_decoupled_loss"
    return RunPlan(
        allocation=alloc,
        learner_ranks=ranks,
        shared_gpu=shared,
        ckpt_dir=ckpt_dir,
        log_dir=log_dir,
        learner_dtype=learner,
        sample_dtype=dtype,
        recompute_logprob=recompute,
        recompute_reason=reason,
    )
