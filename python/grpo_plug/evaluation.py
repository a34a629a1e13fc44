"""The held-out evaluation: greedy accuracy of a policy on a task (the seed's
test_trained_model), its per-example records and their JSONL files."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_plug import core
from grpo_plug.data.prompts import build_prompt
from grpo_plug.data.tasks import literal_answers
from grpo_plug.rollout.controller import RolloutController
from grpo_plug.types import (
    Example,
    GenerationRequest,
    RolloutBackend,
    SamplingParams,
    Task,
)

if TYPE_CHECKING:
    from grpo_plug.config import TrainConfig


def eval_batch_size(cfg: TrainConfig) -> int:
    """Problems the trainer's held-out eval generates together: ``valid_dataset.batch_size``,
    at most ``rollout.max_batch_size`` (so the hf backend never splits a batch, and
    ``grpo-plug eval --batch-size`` with this number pads exactly as the trainer did)."""
    return min(cfg.valid_dataset.batch_size, cfg.rollout.max_batch_size)


@dataclass
class EvalResult:
    accuracy: float
    n: int
    records: list[dict[str, Any]] = field(default_factory=list)


def evaluate(
    backend: RolloutController | RolloutBackend,
    tokenizer: Any,
    task: Task,
    examples: Sequence[Example],
    *,
    max_new_tokens: int,
    batch_size: int = 64,
    progress: Any = None,
) -> EvalResult:
    """Greedy accuracy over ``examples`` (the seed's test_trained_model)."""
    records: list[dict[str, Any]] = []
    sp = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        reqs = [GenerationRequest(ex.uid, build_prompt(tokenizer, task, ex), 1, sp) for ex in chunk]
        samples = [s[0] for s in backend.generate(reqs)]
        texts = [tokenizer.decode(s.output_ids, skip_special_tokens=True) for s in samples]
        scores = core.grade(texts, [ex.gold for ex in chunk], literal_only=literal_answers(task))
        for ex, s, text, score in zip(chunk, samples, texts, scores, strict=True):
            records.append(
                {
                    "uid": ex.uid,
                    "question": ex.question,
                    "gold": ex.gold,
                    "completion": text,
                    "extracted": core.extract_answer(text),
                    "finish_reason": s.finish_reason,
                    "correct": bool(score > 0.5),
                }
            )
            if ex.category is not None:
                records[-1]["category"] = ex.category
        if progress is not None:
            progress(len(records), len(examples))
    acc = sum(r["correct"] for r in records) / max(1, len(records))
    return EvalResult(acc, len(records), records)


def accuracy_by_category(records: Iterable[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """``category -> (correct, total)`` over eval records that carry a category."""
    out: dict[str, tuple[int, int]] = {}
    for r in records:
        cat = r.get("category")
        if cat is None:
            continue
        ok, n = out.get(str(cat), (0, 0))
        out[str(cat)] = (ok + bool(r.get("correct")), n + 1)
    return out


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
