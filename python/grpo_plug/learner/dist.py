"""Who this process is under torchrun: rank, world size, its device, a few collectives.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them this is rank 0
of 1 and nothing here starts a process group. One device per rank: ``cuda:LOCAL_RANK``
where CUDA exists (NCCL), the CPU otherwise (gloo).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist

from grpo_plug.plan import resolve as resolve_plan

if TYPE_CHECKING:
    from grpo_plug.config import TrainConfig

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, metrics, checkpoints and markers."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not an integer (set by torchrun)") from None


def from_env(
    env: Mapping[str, str] | None = None, *, cuda: bool | None = None, gpu_offset: int = 0
) -> DistInfo:
    """The rank of this process from torchrun's variables (rank 0 of 1 without them).

    ``gpu_offset``: GPUs of this node used by others (SGLang servers); the learner's
    local rank ``r`` gets ``cuda:gpu_offset + r``.
    """
    env = os.environ if env is None else env
    world = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local = _env_int(env, "LOCAL_RANK", rank)
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    use_cuda = torch.cuda.is_available() if cuda is None else cuda
    if use_cuda:
        n = torch.cuda.device_count()
        if gpu_offset + local >= n:
            raise ValueError(
                f"LOCAL_RANK={local} needs GPU {gpu_offset + local} ({gpu_offset} taken by "
                f"servers) but this machine has {n} CUDA device(s)"
            )
        device = torch.device("cuda", gpu_offset + local)
    else:
        device = torch.device("cpu")
    return DistInfo(rank, world, local, device)


def node_rank(env: Mapping[str, str] | None = None) -> int:
    """This machine's index among the nodes (torchrun's ``GROUP_RANK``)."""
    return _env_int(os.environ if env is None else env, "GROUP_RANK", 0)


def local_world_size(env: Mapping[str, str] | None = None) -> int:
    """Ranks on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 without torchrun)."""
    return max(1, _env_int(os.environ if env is None else env, "LOCAL_WORLD_SIZE", 1))


def describe(info: DistInfo) -> str:
    """The learner's devices in words, for the run header."""
    ranks = f"{info.world_size} learner ranks, " if info.distributed else ""
    if info.device.type == "cuda":
        return f"{ranks}{torch.cuda.device_count()} x {torch.cuda.get_device_name(info.device)}"
    return f"{ranks}cpu x {torch.get_num_threads()} threads"


def init(info: DistInfo) -> None:
    """Join the process group (rendezvous from torchrun's env) when there is more than
    one rank; idempotent."""
    if info.device.type == "cuda":
        torch.cuda.set_device(info.device)
    if info.distributed and not dist.is_initialized():
        dist.init_process_group(backend=info.backend)


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of ``values`` over all ranks (a copy; ``values`` itself on one rank)."""
    if not info.distributed:
        return values
    out = values.detach().to(info.device, torch.float64).clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()


def broadcast(obj: T, info: DistInfo) -> T:
    """Rank 0's ``obj`` on every rank (picklable objects: the rollout batch, a decision)."""
    if not info.distributed:
        return obj
    box: list[Any] = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0, device=info.device)
    return box[0]  # type: ignore[no-any-return]


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def learner_dist(cfg: TrainConfig) -> DistInfo:
    """This process's rank and device: torchrun's variables, GPUs after the servers'."""
    return from_env(gpu_offset=resolve_plan(cfg).learner_gpu_offset(cfg, node_rank()))
