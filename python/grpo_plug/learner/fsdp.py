"""FSDP2 for the learner: sharding, full weights for export, sharded recover state (DCP).

Each decoder layer is its own ``fully_shard`` group and the root holds the rest
(embeddings, final norm, a tied LM head), so one layer's parameters are gathered at a
time. On GPU, ``actor.mixed_precision`` computes in bf16 while the master weights,
optimizer state and gradient reduce-scatter stay fp32; on CPU everything is fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from grpo_plug.learner.dist import DistInfo


def decoder_layers(model: Any) -> list[torch.nn.Module]:
    """The repeated blocks of a Hugging Face causal LM (Llama, Qwen2, ...), or []."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    layers = getattr(decoder, "layers", None)
    return list(layers) if layers is not None else []


def shard_model(model: Any, info: DistInfo, *, mixed_precision: bool) -> None:
    """Shard ``model`` in place over all ranks of the default process group."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if mixed_precision and info.device.type == "cuda":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        policy = MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    # Each rank's loss is its share of the global token mean: gradients add, not
    # average. Plain SUM reductions (no PREMUL_SUM), which gloo also has.
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)


def is_sharded(model: Any) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def grad_norm_and_clip(model: Any, max_norm: float) -> float:
    """Global gradient norm (all shards) before clipping; clips to ``max_norm``."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    full = getattr(norm, "full_tensor", None)  # a DTensor under FSDP
    return float(full() if full is not None else norm)


def full_state_dict(model: Any) -> dict[str, torch.Tensor]:
    """Unsharded fp32 weights on CPU, on rank 0 (empty elsewhere). A collective: every
    rank must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    if not is_sharded(model):
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    full = get_model_state_dict(model, options=opts)
    return {k: v for k, v in full.items() if isinstance(v, torch.Tensor)}


def save_sharded(path: Path, model: Any, optimizer: torch.optim.Optimizer) -> None:
    """Every rank writes its shards of model and optimizer to ``path`` (DCP)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict
    from torch.distributed.checkpoint.state_dict_saver import save

    msd, osd = get_state_dict(model, optimizer)
    save({"model": msd, "optim": osd}, checkpoint_id=str(path))


def load_sharded(path: Path, model: Any, optimizer: torch.optim.Optimizer) -> None:
    """Read ``path`` (DCP) into this rank's shards of model and optimizer."""
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
    from torch.distributed.checkpoint.state_dict_loader import load

    msd, osd = get_state_dict(model, optimizer)
    load({"model": msd, "optim": osd}, checkpoint_id=str(path))  # fills msd, osd in place
    set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=osd)
