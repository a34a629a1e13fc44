"""Task ``local_math``: math word problems from a local JSONL file.

One JSON object per line, ``{"question": "...", "answer": ...}`` (other field names:
``local_math.question_field``, ``local_math.answer_field``): ``answer`` is the
final answer (``42``, ``"1/2"``, ``"-3.5"``) or a GSM8K-style solution ending in
``#### 42``; other fields are ignored, blank lines skipped. The file is the dataset
config's ``path`` (``train_dataset.path=...``, ``valid_dataset.path=...``); a folder
means ``<folder>/<split>.jsonl``. A bad record fails the run before training starts,
with the file and line: ``data/train.jsonl:7: field 'answer' is missing``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_plug.api import (
    ComponentRegistry,
    DatasetConfig,
    Example,
    TaskFactory,
    TrainConfig,
    hookimpl,
    option,
)

INSTRUCTION = "Please put your final answer within \\boxed{}."


@dataclass
class LocalMathConfig:
    """Keys ``local_math.*`` (see ``grpo-plug config keys``): the field names to read."""

    question_field: str = option("question", "local_math task: the field holding the question.")
    answer_field: str = option("answer", "local_math task: the field holding the answer.")


class LocalMathError(ValueError):
    """A missing or malformed data file; the message names the file (and line)."""


def _answer(where: str, row: dict[str, Any], name: str) -> str:
    if name not in row:
        raise LocalMathError(f"{where}: field {name!r} is missing")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise LocalMathError(
            f"{where}: field {name!r} must be a string or a number, got {type(value).__name__}"
        )
    text = str(value).strip()
    if not text:
        raise LocalMathError(f"{where}: field {name!r} is empty")
    return text


def _question(where: str, row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    if value is None:
        raise LocalMathError(f"{where}: field {name!r} is missing")
    if not isinstance(value, str) or not value.strip():
        raise LocalMathError(f"{where}: field {name!r} must be a non-empty string")
    return value.strip()


class LocalMathTask:
    """Math problems (``question``, ``answer``) from the JSONL file at ``path``."""

    name = "local_math"

    def __init__(
        self, cfg: DatasetConfig, seed: int = 1, *, config: TrainConfig | None = None
    ) -> None:
        self.cfg = cfg
        self.seed = seed  # the trainer shuffles; kept for the Task signature
        self.fields = config.section(LocalMathConfig) if config else LocalMathConfig()

    def _path(self) -> Path:
        if self.cfg.path is None:
            raise LocalMathError(
                f"local_math ({self.cfg.split} split): no data file; set train_dataset.path "
                "and valid_dataset.path to JSONL files of question/answer lines"
            )
        path = Path(self.cfg.path).expanduser()
        if path.is_dir():
            path = path / f"{self.cfg.split}.jsonl"
        if not path.is_file():
            raise LocalMathError(f"local_math ({self.cfg.split} split): {path} does not exist")
        return path

    def load(self) -> list[Example]:
        path = self._path()
        out: list[Example] = []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise LocalMathError(f"{where}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise LocalMathError(
                        f"{where}: expected a JSON object, got {type(row).__name__}"
                    )
                question = _question(where, row, self.fields.question_field)
                gold = _answer(where, row, self.fields.answer_field)
                uid = f"local_math-{self.cfg.split}-{lineno}"
                out.append(Example(uid=uid, question=question, gold=gold))
                if self.cfg.max_samples is not None and len(out) >= self.cfg.max_samples:
                    break
        if not out:
            raise LocalMathError(f"{path}: no examples (the file is empty)")
        return out

    def user_message(self, example: Example) -> str:
        return f"{example.question}\n{INSTRUCTION}"


@hookimpl
def register_tasks(registry: ComponentRegistry[TaskFactory]) -> None:
    registry.register(
        "local_math",
        LocalMathTask,
        description="math problems from a JSONL file",
        config=LocalMathConfig,
    )
