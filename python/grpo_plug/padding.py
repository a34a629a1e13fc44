"""Small tensor helpers shared by the rollout engine and the learner."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def pad_batch(
    seqs: Sequence[Sequence[int] | np.ndarray], *, left: bool, pad_id: int = 0, min_width: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) ``[B, L]`` from token sequences; the mask comes from lengths, because
    a pad id may equal EOS (SmolLM2) and cannot be told apart by value."""
    width = max([min_width, *(len(s) for s in seqs)])
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        row = torch.as_tensor(np.asarray(s, dtype=np.int64))
        cols = slice(width - len(s), width) if left else slice(0, len(s))
        ids[i, cols] = row
        mask[i, cols] = 1
    return ids, mask


def cache_kwarg(module: Any) -> str:
    """transformers 5.x renames ``past_key_values`` to ``cache``; support both spellings."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
