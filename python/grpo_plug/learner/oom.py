"""A CUDA out-of-memory in the learner, turned into the seed's advice with this run's values.

The seed's "Out of Memory" fixes, in its order: a smaller SGLang share of a GPU the
learner shares, gradient checkpointing, fewer tokens per micro-batch, shorter
completions, fewer requests in flight, fewer prompts per step. :func:`advice` names each
knob with its current value and the value to try; a knob already at its floor is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from grpo_plug.config import TrainConfig
from grpo_plug.errors import OutOfMemory
from grpo_plug.plan import resolve as resolve_plan


def _half(value: int, floor: int) -> int | None:
    """Half of ``value`` (not below ``floor``), or None when it cannot go lower."""
    lower = max(floor, value // 2)
    return lower if lower < value else None


def knobs(cfg: TrainConfig) -> list[str]:
    """``key: current -> suggested`` for every knob that can still be lowered."""
    out = []
    frac = cfg.sglang.mem_fraction_static
    if frac > 0.3 and resolve_plan(cfg).allocation is not None:
        target = 0.6 if frac > 0.6 else round(max(0.3, frac - 0.1), 2)
        out.append(f"sglang.mem_fraction_static: {frac:g} -> {target:g} (servers on its GPU)")
    if not cfg.actor.gradient_checkpointing:
        out.append("actor.gradient_checkpointing: false -> true")
    halves = [
        ("actor.mb_max_tokens", cfg.actor.mb_max_tokens, 16),
        ("gconfig.max_new_tokens", cfg.gconfig.max_new_tokens, 1),
        ("rollout.max_concurrent_rollouts", cfg.rollout.max_concurrent_rollouts, 1),
        ("train_dataset.batch_size", cfg.train_dataset.batch_size, 1),
    ]
    for key, value, floor in halves:
        lower = _half(value, floor)
        if lower is not None:
            out.append(f"{key}: {value} -> {lower}")
    return out


def _memory(device: torch.device | None) -> str:
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return ""
    try:
        free, total = torch.cuda.mem_get_info(device)
    except RuntimeError:
        return ""
    peak = torch.cuda.max_memory_allocated(device)
    return (
        f" ({device}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB free, the learner's peak "
        f"{peak / 2**30:.1f} GiB)"
    )


def advice(cfg: TrainConfig, error: BaseException, device: torch.device | None = None) -> str:
    """One message: what ran out, then the knobs to lower and by how much."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    from grpo_plug.recovery.store import RESUMABLE_KEYS

    lines = [
        f"out of GPU memory in the learner's train step{_memory(device)}: {first}",
        "lower these, first ones first (one at a time, as key=value overrides):",
    ]
    for knob in knobs(cfg):
        same_run = knob.startswith(RESUMABLE_KEYS)
        lines.append(f"  {knob}" + ("  [the recover point still resumes]" if same_run else ""))
    lines.append(
        "the others change the run, so its recover point will not resume: "
        "use a new trial_name (or recover.mode=disabled)"
    )
    return "\n".join(lines)


@contextmanager
def oom_advice(cfg: TrainConfig, device: torch.device | None = None) -> Iterator[None]:
    """Turn ``torch.OutOfMemoryError`` inside into :class:`OutOfMemory` with the advice."""
    try:
        yield
    except torch.OutOfMemoryError as e:
        if device is not None and device.type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemory(advice(cfg, e, device)) from None
