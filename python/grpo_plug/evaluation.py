"""Greedy evaluation of a policy on a task (the seed's test_trained_model) and its prompts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from grpo_plug import core
from grpo_plug.rollout.controller import RolloutController
from grpo_plug.types import (
    Example,
    GenerationRequest,
    RolloutBackend,
    SamplingParams,
    Task,
    TaskFactory,
)

if TYPE_CHECKING:
    from grpo_plug.config import DatasetConfig, TrainConfig


def build_task(
    factory: TaskFactory, dataset: DatasetConfig, seed: int, cfg: TrainConfig | None = None
) -> Task:
    """``factory(dataset, seed)``; a factory that names a ``config`` keyword also gets
    ``config=cfg``, so a task can read its own section with ``cfg.section(Cls)``."""
    import inspect

    if cfg is None:
        return factory(dataset, seed)
    try:
        inspect.signature(factory).bind(dataset, seed, config=cfg)
    except (TypeError, ValueError):  # no `config` keyword (or no signature to read)
        return factory(dataset, seed)
    return factory(dataset, seed, config=cfg)  # type: ignore[call-arg]


def load_examples(task: Task, dataset: DatasetConfig) -> list[Example]:
    """``task.load()`` cut to ``dataset.max_samples``: the trainer applies it, so a task
    need not (one that stops early for speed is cut again, harmlessly)."""
    examples = list(task.load())
    return examples if dataset.max_samples is None else examples[: dataset.max_samples]


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


class RewardSpec(NamedTuple):
    """One configured reward function: ``correctness`` as registered (see
    :meth:`grpo_plug.registry.ComponentRegistry.register`)."""

    name: str
    fn: Any
    weight: float
    correctness: bool = False


@dataclass
class Scores:
    """Every sample's scores, float32 ``[B*G]`` each: ``reward`` (weighted sum),
    ``task_reward`` (the first correctness function's values = accuracy; 0 without
    one) and ``per_function`` (name -> unweighted values, as summed)."""

    reward: Any
    task_reward: Any
    per_function: dict[str, Any]


def score_samples(
    reward_fns: Sequence[RewardSpec],
    task: Task,
    prompts: list[str],
    texts: list[str],
    golds: list[str],
    no_eos: Any,
    cfg: TrainConfig,
    *,
    completion_ids: Sequence[Sequence[int]],
) -> Scores:
    """Score every sample with every reward function; ``None`` counts 0.

    A completion cut at max_new_tokens (``no_eos``) gets ``cfg.reward.no_eos_reward``
    from each correctness function when that is set."""
    import numpy as np

    rewards = np.zeros(len(texts), dtype=np.float32)
    task_reward: Any = None
    per_function: dict[str, Any] = {}
    literal = literal_answers(task)
    for spec in reward_fns:
        got = spec.fn(
            prompts,
            texts,
            golds=golds,
            literal_answers=literal,
            config=cfg,
            completion_ids=completion_ids,
        )
        vals = np.array([0.0 if v is None else v for v in got], dtype=np.float32)
        if spec.correctness:
            if task_reward is None:  # the seed's task reward = accuracy
                task_reward = vals.copy()
            if cfg.reward.no_eos_reward is not None:
                vals[no_eos] = cfg.reward.no_eos_reward
        per_function[spec.name] = vals
        rewards += spec.weight * vals
    if task_reward is None:
        task_reward = np.zeros(len(texts), dtype=np.float32)
    return Scores(rewards, task_reward, per_function)
