"""Per-tensor weight digests, the server's and the learner's, for verifying a sync.

SGLang's ``/weights_checker`` (action ``checksum``) hashes every parameter of the
server's model: on a CPU server the first 8 bytes of the SHA-256 of its raw bytes, as
16 hex digits. The server holds Llama-family weights fused (``q/k/v_proj`` ->
``qkv_proj``, ``gate/up_proj`` -> ``gate_up_proj``, stacked along rows) and the
vocabulary padded with zero rows to a multiple of 64; :func:`expected` builds the same
tensors from the learner's and hashes them alike. A layout this cannot predict (GPU
servers hash with a kernel of their own; tensor parallelism shards; a CPU with AMX
repacks bf16 matmul weights) gets None, and the strategy reads rows back instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch

VOCAB_PAD = 64  # SGLang pads embedding and LM-head rows to a multiple of this
FUSED = (  # (HF name part, server name part), in the order SGLang stacks them
    ((".q_proj.", ".k_proj.", ".v_proj."), ".qkv_proj."),
    ((".gate_proj.", ".up_proj."), ".gate_up_proj."),
)
VOCAB = ("embed_tokens.weight", "lm_head.weight")


def predictable(device: str, dtype: str, tp: int) -> bool:
    """Whether :func:`expected` can predict a server's digests."""
    return device == "cpu" and tp == 1 and (dtype == "float32" or not _cpu_packs_weights())


def _cpu_packs_weights() -> bool:
    """SGLang repacks 16-bit matmul weights for AMX on CPUs that have it."""
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # unknown: do not predict


def tensor_digest(t: torch.Tensor) -> str:
    data = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(cast(Any, data)).hexdigest()[:16]


def server_layout(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The learner's tensors as a TP-1 SGLang Llama-family model holds them."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in named:
        for pieces, fused in FUSED:
            hit = next((p for p in pieces if p in name), None)
            if hit is not None:
                parts.setdefault(name.replace(hit, fused), {})[hit] = t
                break
        else:
            if name.endswith(VOCAB) and t.shape[0] % VOCAB_PAD:
                pad = VOCAB_PAD - t.shape[0] % VOCAB_PAD
                t = torch.cat([t, t.new_zeros((pad, *t.shape[1:]))])
            out[name] = t
    for fused_name, got in parts.items():
        order = next(p for p, f in FUSED if f in fused_name)
        if set(got) != set(order):
            continue  # not the stacking SGLang does: leave it unpredicted
        out[fused_name] = torch.cat([got[p] for p in order])
    return out


def expected(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, str]:
    return {n: tensor_digest(t) for n, t in server_layout(named).items()}


def parse_checksums(reply: Any, addr: str) -> dict[str, str]:
    """``{name: digest}`` from a ``/weights_checker`` checksum reply (one rank)."""
    ranks = reply.get("ranks") if isinstance(reply, dict) else None
    if not isinstance(ranks, list) or len(ranks) != 1 or "checksums" not in ranks[0]:
        raise ValueError(f"{addr}/weights_checker: unexpected reply {str(reply)[:200]}")
    return {str(k): str(v) for k, v in ranks[0]["checksums"].items()}
