"""Compiled Rust core of grpo-plug (PyO3). Use the typed wrappers in grpo_plug.core.

Every call copies its inputs, releases the GIL and, for batch calls, runs on a
dedicated rayon pool. Bad input raises TypeError / InputError (a ValueError); a request
that cannot be met raises InfeasibleError; a caught Rust panic raises InternalError.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "InfeasibleError",
    "InputError",
    "InternalError",
    "__version__",
    "extract_answer",
    "get_num_threads",
    "grade",
    "group_advantages",
    "pack_microbatches",
    "set_num_threads",
]

__version__: str

class InternalError(RuntimeError):
    """A bug inside grpo_plug._core: a Rust panic was caught and turned into this exception."""

class InputError(ValueError):
    """grpo_plug._core refused its input (a length, a shape, a value out of range)."""

class InfeasibleError(ValueError):
    """A well-formed request grpo_plug._core cannot satisfy (e.g. packing under a budget)."""

def extract_answer(text: str) -> str | None:
    """Extract the final answer of one completion, normalised (`"1000"`, `"1/2"`,
    `"-3.5"`), or None."""

def grade(
    completions: Sequence[str], golds: Sequence[str], literal_only: bool
) -> NDArray[np.float32]:
    """Grade completions against reference answers: float32 array of 1.0 / 0.0.
    With `literal_only`, answers computed inside a box are refused."""

def group_advantages(
    rewards: NDArray[np.float32] | NDArray[np.float64],
    group_size: int,
    mode: str,
    eps: float,
    normalize_batch: bool,
) -> NDArray[np.float32]:
    """Group-relative advantages (float32) of float32 or float64 rewards."""

def set_num_threads(n: int) -> None:
    """Set the number of worker threads for batch calls (1 turns parallelism off; 0
    restores the default)."""

def get_num_threads() -> int:
    """The number of worker threads batch calls use."""

def pack_microbatches(
    prompt_ids: Sequence[Sequence[int] | NDArray[np.integer]],
    completion_ids: Sequence[Sequence[int] | NDArray[np.integer]],
    completion_logprobs: Sequence[Sequence[float] | NDArray[np.floating]],
    advantages: NDArray[np.float64],
    max_tokens: int,
    n_ranks: int,
) -> list[
    list[
        tuple[
            NDArray[np.int64],
            NDArray[np.int64],
            NDArray[np.float32],
            NDArray[np.float32],
            NDArray[np.float32],
            NDArray[np.int32],
            NDArray[np.int64],
        ]
    ]
]:
    """Pack sequences into micro-batches: `[rank][micro_batch]` tuples of
    `(input_ids, position_ids, loss_mask, old_logprobs, advantages, cu_seqlens,
    seq_indices)`."""
