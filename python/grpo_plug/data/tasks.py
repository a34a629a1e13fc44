"""Built-in tasks: GSM8K (bundled, hub or local file) and procedurally generated arithmetic."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_plug.config import DatasetConfig
from grpo_plug.data import hub
from grpo_plug.errors import DataError
from grpo_plug.types import Example, Task, TaskFactory

if TYPE_CHECKING:
    from grpo_plug.config import TrainConfig

INSTRUCTION = "Please put your final answer within \\boxed{}."
GSM8K_HUB_ID = "openai/gsm8k"
# GSM8K's train and test splits (MIT, see LICENSE there), shipped so runs need no network.
BUNDLED_GSM8K = Path(__file__).resolve().parent / "gsm8k"


def bundled_gsm8k(split: str) -> Path:
    """The packaged copy of GSM8K's ``split`` (``train`` or ``test``)."""
    path = BUNDLED_GSM8K / f"{split}.jsonl.gz"
    if not path.is_file():
        have = sorted(p.name.removesuffix(".jsonl.gz") for p in BUNDLED_GSM8K.glob("*.jsonl.gz"))
        raise DataError(
            f"gsm8k has no split {split!r} in the bundled copy (have: {', '.join(have)}); "
            "set the dataset's path to a local file or to the hub id openai/gsm8k"
        )
    return path


def _read_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(location, row) pairs from a JSONL (optionally gzipped) or parquet file."""
    if path.suffix in (".parquet", ".arrow"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(
                f"{path}: reading {path.suffix[1:]} needs pyarrow (pip install pyarrow)"
            ) from None
        table = pq.read_table(path) if path.suffix == ".parquet" else _read_arrow(path)
        return [(f"{path}:row {i + 1}", r) for i, r in enumerate(table.to_pylist())]
    rows = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            rows.append((f"{path}:{lineno}", row))
    return rows


def _read_arrow(path: Path) -> Any:
    """An Arrow file as the ``datasets`` library caches it (the stream format; the
    file format too)."""
    import pyarrow as pa

    try:
        with pa.memory_map(str(path)) as src:
            return pa.ipc.open_stream(src).read_all()
    except pa.ArrowInvalid:
        with pa.memory_map(str(path)) as src:
            return pa.ipc.open_file(src).read_all()


def _field(where: str, row: dict[str, Any], *names: str) -> str:
    for name in names:
        val = row.get(name)
        if isinstance(val, str) and val.strip():
            return val
    raise DataError(f"{where}: missing or empty field {' / '.join(map(repr, names))}")


class Gsm8kTask:
    """GSM8K: ``question`` and ``answer`` (gold after ``#### ``). ``path`` unset: the
    bundled copy; a hub id (``openai/gsm8k``): from the Hugging Face caches, else the
    hub (:mod:`grpo_plug.data.hub`)."""

    name = "gsm8k"

    def __init__(self, cfg: DatasetConfig, seed: int = 1) -> None:
        self.cfg = cfg
        self.seed = seed

    def _resolve(self) -> Path:
        if self.cfg.path is None:
            return bundled_gsm8k(self.cfg.split)
        path = self.cfg.path
        local = Path(path).expanduser()
        if local.is_dir():
            plain = local / f"{self.cfg.split}.jsonl"
            local = plain if plain.exists() else plain.with_name(plain.name + ".gz")
        if local.exists():
            return local
        if path != GSM8K_HUB_ID and ("/" not in path or path.startswith((".", "/", "~"))):
            raise DataError(f"{self.cfg.split}_dataset.path: {path} does not exist")
        return hub.split_file(path, self.cfg.split)  # the HF caches first, then the hub

    def load(self) -> list[Example]:
        path = self._resolve()
        out = []
        for i, (where, row) in enumerate(_read_rows(path)):
            question = _field(where, row, "question", "problem")
            answer = _field(where, row, "answer", "solution")
            if "####" not in answer and row.get("answer") is not None and "\n" in answer:
                raise DataError(f"{where}: answer has no '#### <gold>' line")
            out.append(Example(uid=f"gsm8k-{self.cfg.split}-{i}", question=question, gold=answer))
            if self.cfg.max_samples is not None and len(out) >= self.cfg.max_samples:
                break
        if not out:
            raise DataError(f"{path}: no examples")
        return out

    def user_message(self, example: Example) -> str:
        return f"{example.question}\n{INSTRUCTION}"


_NAMES = ["Ava", "Ben", "Chloe", "Dan", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jack"]
_ITEMS = ["apples", "books", "coins", "stickers", "marbles", "pencils", "cards", "shells"]


class ArithTask:
    """Seeded arithmetic problems; ``train`` and other splits never share a problem."""

    name = "arith"
    # The question is the expression: `\boxed{40 + 49}` must not count as an answer.
    literal_answers = True

    def __init__(self, cfg: DatasetConfig, seed: int = 1) -> None:
        self.cfg = cfg
        self.seed = seed

    def _problem(self, rng: random.Random) -> tuple[str, int, str]:
        """(question, value, category): the category is the operations used, in
        ``arith_ops`` order ("*", "+-")."""
        n = self.cfg.arith_n_operands
        nums = [rng.randint(1, self.cfg.arith_max_operand) for _ in range(n)]
        ops = [rng.choice(self.cfg.arith_ops) for _ in range(n - 1)]
        expr = str(nums[0])
        for op, x in zip(ops, nums[1:], strict=True):
            expr += f" {op} {x}"
        value = eval(expr, {"__builtins__": {}})  # digits and + - * only, built above
        category = "".join(op for op in self.cfg.arith_ops if op in ops)
        style = self.cfg.arith_style
        if style == "mixed":
            style = "plain" if rng.random() < 0.5 else "word"
        # Without the hint the model never answers a negative (0/29 solved).
        hint = " (The answer may be negative.)" if "-" in ops else ""
        if style == "plain":
            return f"What is {expr}?{hint}", int(value), category
        if n == 2:
            name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
            a, b = nums
            text = {
                "+": f"{name} has {a} {item} and gets {b} more. How many {item} does "
                f"{name} have now?",
                "-": f"{name} has {a} {item} and gives away {b}. How many {item} does "
                f"{name} have left? (The answer may be negative.)",
                "*": f"{name} has {a} boxes with {b} {item} in each box. How many {item} "
                f"does {name} have in total?",
            }[ops[0]]
            return text, int(value), category
        return f"Compute {expr}.{hint}", int(value), category

    def _generate(self, split: str, count: int, exclude: set[str]) -> list[Example]:
        rng = random.Random(f"arith:{self.seed}:{split}")
        out: list[Example] = []
        seen = set(exclude)
        attempts = 0
        while len(out) < count and attempts < count * 50:
            attempts += 1
            text, value, ops = self._problem(rng)
            if text in seen:
                continue
            seen.add(text)
            uid = f"arith-{split}-{len(out)}"
            out.append(Example(uid=uid, question=text, gold=str(value), category=ops))
        return out

    def load(self) -> list[Example]:
        count = self.cfg.max_samples or self.cfg.arith_size
        if self.cfg.split == "train":
            return self._generate("train", count, set())
        # Held-out splits exclude every training problem at the same knobs.
        train_cfg = DatasetConfig(**{**self.cfg.__dict__, "split": "train", "max_samples": None})
        train = ArithTask(train_cfg, self.seed)._generate("train", train_cfg.arith_size, set())
        return self._generate(self.cfg.split, count, {e.question for e in train})

    def user_message(self, example: Example) -> str:
        return f"{example.question}\n{INSTRUCTION}"


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


def literal_answers(task: Task) -> bool:
    """Whether ``task`` wants its answers as plain numbers (see docs/plugins.md)."""
    return bool(getattr(task, "literal_answers", False))
