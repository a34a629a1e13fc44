"""Greedy evaluation of a policy on a task (the seed's test_trained_model) and its prompts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_plug import core
from grpo_plug.rollout.controller import RolloutController
from grpo_plug.types import Example, GenerationRequest, RolloutBackend, SamplingParams, Task


def build_prompt(tokenizer: Any, task: Task, ex: Example) -> list[int]:
    msgs = [{"role": "user", "content": task.user_message(ex)}]
    # tokenize=True applies the template's own BOS once; re-tokenising its text would add
    # a second one.
    ids = tokenizer.apply_chat_template(
        msgs, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return [int(i) for i in ids]


@dataclass
class EvalResult:
    accuracy: float
    n: int
    records: list[dict[str, Any]] = field(default_factory=list)


def literal_answers(task: Task) -> bool:
    """Whether ``task`` wants its answers as plain numbers (see docs/plugins.md)."""
    return bool(getattr(task, "literal_answers", False))


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
        if progress is not None:
            progress(len(records), len(examples))
    acc = sum(r["correct"] for r in records) / max(1, len(records))
    return EvalResult(acc, len(records), records)


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def score_samples(
    reward_fns: Sequence[tuple[str, Any, float]],
    task: Task,
    prompts: list[str],
    texts: list[str],
    golds: list[str],
    no_eos: Any,
    reward_cfg: Any,
) -> tuple[Any, Any]:
    """(weighted reward, task reward = accuracy) of every sample, float32 ``[B*G]`` each.

    ``reward_fns`` are ``(name, function, weight)``; ``None`` from a function counts 0.
    A completion cut at max_new_tokens (``no_eos``) gets ``reward_cfg.no_eos_reward``
    from the math grader when that is set.
    """
    import numpy as np

    rewards = np.zeros(len(texts), dtype=np.float32)
    task_reward = np.zeros(len(texts), dtype=np.float32)
    literal = literal_answers(task)
    for name, fn, weight in reward_fns:
        got = fn(prompts, texts, golds=golds, literal_answers=literal)
        vals = np.array([0.0 if v is None else v for v in got], dtype=np.float32)
        if name == "math_accuracy":  # the seed's task reward = accuracy
            task_reward = vals.copy()
            if reward_cfg.no_eos_reward is not None:
                vals[no_eos] = reward_cfg.no_eos_reward
        rewards += weight * vals
    return rewards, task_reward
