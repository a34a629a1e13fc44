"""Variable-length attention for packed micro-batches, through transformers'
``AttentionInterface`` (no model code is patched).

A packed micro-batch is one ``[1, T]`` row holding several documents whose position ids
restart at 0. Left to transformers' stock ``sdpa``, those position ids become a dense
block-diagonal ``[1, 1, T, T]`` mask and attention costs ``T^2`` per layer
(``packed_dense``, kept for comparison). The kernels here cost the sum of the documents'
squared lengths instead, and no ``T x T`` mask is ever built:

- ``packed_flash``: flash-attention's varlen kernel (CUDA, the ``flash_attn`` package),
  given the micro-batch's ``cu_seqlens``;
- ``packed_flex``: ``torch.nn.attention.flex_attention`` with a document ``BlockMask``
  built once per forward, compiled on CUDA (torch has no flex backward on the CPU);
- ``packed_sdpa``: causal SDPA on each document in turn (portable: any device, any dtype);
  it also runs the ``shared_prompt`` row (``learner.shared``): each prompt causal, each
  completion against its prompt and itself under a lower-right causal mask.

Each is registered under its own name (``grpo_packed_*``) in transformers'
``AttentionInterface`` and set on the model with ``set_attn_implementation``; its mask
function builds no mask for a row without padding, so the documents' boundaries reach
the kernel only as the forward's keyword arguments (:func:`packed_kwargs`). Any other
call (a padded batch, generation with a cache) gets transformers' own sdpa mask and
kernel, so the same model still generates.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from grpo_plug.learner.shared import Group

# actor.attention values: a learner path, and for the packed path its kernel.
PACKED_KERNELS = ("packed_flash", "packed_flex", "packed_sdpa", "packed_dense")
CHOICES = ("auto", "packed", *PACKED_KERNELS, "padded", "shared_prompt")
# The names registered in transformers' AttentionInterface.
REGISTERED = {k: "grpo_" + k for k in ("packed_flash", "packed_flex", "packed_sdpa")}
# The forward keyword that carries a shared-prompt row's segments to the kernel.
PROMPT_GROUPS = "grpo_prompt_groups"


def unavailable(kernel: str, device_type: str) -> str | None:
    """Why ``kernel`` cannot train on ``device_type`` here, or None when it can."""
    if kernel == "packed_flash":
        if device_type != "cuda":
            return "flash-attention's varlen kernel needs a CUDA device"
        if importlib.util.find_spec("flash_attn") is None:
            return "the flash_attn package is not installed (pip install flash-attn)"
    if kernel == "packed_flex" and device_type != "cuda":
        return f"torch {torch.__version__} has no flex_attention backward on the CPU"
    return None


def resolve(choice: str, *, world_size: int, device: str) -> str:
    """What ``actor.attention=choice`` runs: a concrete kernel or path, never auto/packed.

    ``auto``: shared_prompt on a CPU (bench_learner on a 2-core CPU, SmolLM2's shape at
    10 layers: x1.35 the tokens/s of padded at the full preset's shape, median of four
    runs, and x1.53-1.59 at the cpu preset's; docs/results.md), else packed: the
    shared-prompt kernel is per-segment SDPA, never measured on a GPU.
    ``packed``: the first varlen kernel that trains here: flash, then flex (both CUDA),
    then per-document SDPA, the only one on the CPU. bench/bench_learner.py measures the
    CPU's choices, bench/gpu_check.py a GPU's; the README has the figures.
    """
    device_type = torch.device(device).type
    if world_size > 1 and choice == "padded":
        raise ValueError(
            f"actor.attention={choice}: with {world_size} learner ranks (FSDP) only the "
            "packed paths are supported (auto, packed, packed_* or shared_prompt)"
        )
    if choice == "auto":
        if device_type == "cpu":
            return "shared_prompt"
        choice = "packed"
    if choice == "packed":
        return next(k for k in PACKED_KERNELS if unavailable(k, device_type) is None)
    why = unavailable(choice, device_type)
    if why is not None:
        raise ValueError(f"actor.attention={choice}: {why}; use packed or packed_sdpa")
    return choice


def path_of(attention: str) -> str:
    """The learner path of a resolved ``actor.attention``: packed, padded or shared_prompt."""
    return "packed" if attention in PACKED_KERNELS else attention


def use(model: Any, attention: str) -> None:
    """Give ``model`` the attention kernel ``attention`` needs (a no-op for the others)."""
    kernel = "packed_sdpa" if attention == "shared_prompt" else attention
    if kernel in REGISTERED:
        register()
        model.set_attn_implementation(REGISTERED[kernel])
        if kernel_of(model) != kernel:  # transformers only warns for such models
            raise ValueError(
                f"actor.attention={attention}: {type(model).__name__} does not take its "
                "attention from transformers' AttentionInterface; use packed_dense or padded"
            )


def kernel_of(model: Any) -> str:
    """The packed kernel ``model`` runs: one of ours, else ``packed_dense``."""
    impl = getattr(model.config, "_attn_implementation", None)
    return next((k for k, name in REGISTERED.items() if name == impl), "packed_dense")


def packed_kwargs(model: Any, cu_seqlens: np.ndarray, device: torch.device) -> dict[str, Any]:
    """Forward keyword arguments that tell ``model``'s kernel where the documents of a
    packed row start (``cu_seqlens``, int ``[S + 1]``); none for ``packed_dense``."""
    kernel = kernel_of(model)
    lens = np.diff(cu_seqlens)
    if kernel == "packed_flex":
        return {"attention_mask": document_block_mask(cu_seqlens, device)}
    if kernel == "packed_sdpa":  # lengths on the host: splitting needs no device sync
        cu = torch.from_numpy(cu_seqlens.astype(np.int64))
    elif kernel == "packed_flash":
        cu = torch.from_numpy(cu_seqlens.astype(np.int32)).to(device)
    else:
        return {}
    longest = int(lens.max()) if len(lens) else 0
    return dict(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)


def shared_prompt_kwargs(model: Any, groups: tuple[Group, ...]) -> dict[str, Any]:
    """Forward keyword arguments that give ``model``'s kernel the segments of a row with
    each prompt once (:class:`grpo_plug.learner.shared.SharedRow`); only per-document
    SDPA takes them."""
    if kernel_of(model) != "packed_sdpa":
        raise ValueError(
            f"actor.attention=shared_prompt runs on the packed_sdpa kernel, not {kernel_of(model)}"
        )
    return {PROMPT_GROUPS: groups}


def document_block_mask(cu_seqlens: np.ndarray, device: torch.device) -> Any:
    """A flex ``BlockMask``: causal within each document, nothing across documents."""
    from torch.nn.attention.flex_attention import create_block_mask

    total = int(cu_seqlens[-1])
    doc = torch.from_numpy(np.repeat(np.arange(len(cu_seqlens) - 1), np.diff(cu_seqlens)))
    doc = doc.to(device)

    def same_doc_causal(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return (doc[q] == doc[kv]) & (q >= kv)

    compiled = torch.device(device).type == "cuda"
    return create_block_mask(same_doc_causal, 1, None, total, total, device, _compile=compiled)


# ------------------------------------------------------------------------ the kernels


def _sdpa_docs(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal SDPA on each document of the row; ``[1, H, T, D]`` in, ``[1, T, H, D]`` out."""
    groups = kwargs.get(PROMPT_GROUPS)
    if groups is not None:
        _supported(kwargs)
        return _sdpa_shared(query, key, value, groups, dropout, scaling), None
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        return _fallback(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    _supported(kwargs)
    lens = torch.diff(cu).tolist()
    gqa = query.shape[1] != key.shape[1]
    outs = [
        torch.nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=dropout, is_causal=True, scale=scaling, enable_gqa=gqa
        ).transpose(1, 2)
        for q, k, v in zip(*(torch.split(t, lens, dim=2) for t in (query, key, value)), strict=True)
    ]
    # joined along T in [1, T, H, D]: the result is contiguous without a second copy
    return torch.cat(outs, dim=1), None


def _sdpa_shared(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    groups: tuple[Group, ...],
    dropout: float,
    scaling: float | None,
) -> torch.Tensor:
    """SDPA over a row with each prompt once (``learner.shared``): a prompt attends to
    itself causally, each completion to its prompt and, causally, to itself.
    ``[1, H, R, D]`` in, ``[1, R, H, D]`` out."""
    gqa = query.shape[1] != key.shape[1]
    sdpa = functools.partial(
        torch.nn.functional.scaled_dot_product_attention,
        dropout_p=dropout,
        scale=scaling,
        enable_gqa=gqa,
    )
    outs = []
    for p0, p, comps in groups:
        kp, vp = key[:, :, p0 : p0 + p], value[:, :, p0 : p0 + p]
        if p:
            outs.append(sdpa(query[:, :, p0 : p0 + p], kp, vp, is_causal=True))
        for c0, c in comps:
            # lower-right causal: completion token i sees the prompt and tokens <= i
            mask = torch.ones(c, p + c, dtype=torch.bool, device=query.device).tril(p)
            k = torch.cat([kp, key[:, :, c0 : c0 + c]], dim=2)
            v = torch.cat([vp, value[:, :, c0 : c0 + c]], dim=2)
            outs.append(sdpa(query[:, :, c0 : c0 + c], k, v, attn_mask=mask))
    return torch.cat([o.transpose(1, 2) for o in outs], dim=1)


def _flex(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """flex_attention under the row's document BlockMask (compiled on CUDA)."""
    from torch.nn.attention.flex_attention import BlockMask

    if not isinstance(attention_mask, BlockMask):
        return _fallback(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    if dropout > 0:
        raise ValueError("actor.attention=packed_flex: flex_attention has no attention dropout")
    _supported(kwargs)
    flex = _compiled_flex() if query.device.type == "cuda" else _eager_flex()
    gqa = query.shape[1] != key.shape[1]
    out = flex(query, key, value, block_mask=attention_mask, scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def _compiled_flex() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    # dynamic: every micro-batch has its own length T; one graph serves them all
    return torch.compile(flex_attention, dynamic=True)


def _eager_flex() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    return flex_attention


def _flash(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """flash_attn_varlen_func over the row's documents (bf16 when the model is fp32)."""
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:
        return _fallback(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    _supported(kwargs)
    varlen = importlib.import_module("flash_attn").flash_attn_varlen_func  # CUDA only

    dtype = query.dtype
    half = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    q, k, v = (t[0].transpose(0, 1).to(half) for t in (query, key, value))  # [T, H, D]
    longest = int(kwargs["max_length_q"])
    out = varlen(
        q, k, v, cu, cu, longest, longest, dropout_p=dropout, softmax_scale=scaling, causal=True
    )
    return out.to(dtype)[None], None


def _supported(kwargs: dict[str, Any]) -> None:
    """The varlen kernels do plain causal attention: refuse what would change it."""
    for key in ("sliding_window", "softcap", "s_aux", "position_bias"):
        if kwargs.get(key) is not None:
            raise NotImplementedError(
                f"a packed varlen kernel got {key}={kwargs[key]!r}, which it does not apply; "
                "use actor.attention=packed_dense or padded for this model"
            )


def _fallback(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float,
    scaling: float | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa, for calls that are not a packed row (padded, generation)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    pos = kwargs.get("position_ids")
    unpadded = attention_mask is None and query.shape[2] == key.shape[2] > 1
    if unpadded and pos is not None and bool((torch.diff(pos, dim=-1) != 1).any()):
        raise RuntimeError(
            "a packed row (restarting position ids) reached attention without its "
            "document boundaries: pass grpo_plug.learner.attention.packed_kwargs()"
        )
    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def _mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: Any = 0,
    kv_offset: int = 0,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> torch.Tensor | None:
    """No mask for a row without padding and cache (a packed row gets its documents from
    the forward's kwargs); transformers' sdpa mask for everything else."""
    from transformers.masking_utils import sdpa_mask

    fresh = isinstance(q_offset, int) and q_offset == 0 and kv_offset == 0
    if attention_mask is None and fresh and q_length == kv_length:
        return None
    return sdpa_mask(
        batch_size=batch_size,
        q_length=q_length,
        kv_length=kv_length,
        q_offset=q_offset,
        kv_offset=kv_offset,
        attention_mask=attention_mask,
        **kwargs,
    )


KERNEL_FUNCTIONS: dict[str, Callable[..., tuple[torch.Tensor, None]]] = {
    "packed_flash": _flash,
    "packed_flex": _flex,
    "packed_sdpa": _sdpa_docs,
}


@functools.cache
def register() -> None:
    """Add the kernels to transformers' attention and mask interfaces (once)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    for kernel, name in REGISTERED.items():
        AttentionInterface.register(name, KERNEL_FUNCTIONS[kernel])
        AttentionMaskInterface.register(name, _mask)
