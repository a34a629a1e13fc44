"""The gsm8k task reads the GSM8K copy shipped in the package (no network, no files
beside the checkout), gzipped or plain local files, and names what is wrong."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from grpo_plug.config import DatasetConfig
from grpo_plug.data.tasks import Gsm8kTask, bundled_gsm8k
from grpo_plug.errors import DataError


@pytest.mark.parametrize(("split", "count"), [("train", 7473), ("test", 1319)])
def test_bundled_splits_load_whole(split: str, count: int) -> None:
    examples = Gsm8kTask(DatasetConfig(task="gsm8k", split=split)).load()
    assert len(examples) == count
    assert len({e.uid for e in examples}) == count
    assert all(e.question.strip() and "####" in e.gold for e in examples)


def test_bundled_copy_is_the_default_and_max_samples_cuts_it() -> None:
    first = Gsm8kTask(DatasetConfig(task="gsm8k", split="test", max_samples=3)).load()
    assert [e.uid for e in first] == ["gsm8k-test-0", "gsm8k-test-1", "gsm8k-test-2"]
    assert first[0].question.startswith("Janet")  # GSM8K test's first problem


def test_unknown_bundled_split_names_the_ones_there() -> None:
    with pytest.raises(DataError, match=r"no split 'validation'.*have: test, train"):
        Gsm8kTask(DatasetConfig(task="gsm8k", split="validation")).load()


def test_local_gzipped_and_plain_files_read_alike(tmp_path: Path) -> None:
    gz = tmp_path / "gz"
    gz.mkdir()
    shutil.copy(bundled_gsm8k("test"), gz / "test.jsonl.gz")
    plain = tmp_path / "plain" / "test.jsonl"
    plain.parent.mkdir()
    with gzip.open(bundled_gsm8k("test"), "rb") as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    # A folder holding only the gzipped split, and the plain file itself.
    from_gz = Gsm8kTask(DatasetConfig(task="gsm8k", split="test", path=str(gz))).load()
    from_plain = Gsm8kTask(DatasetConfig(task="gsm8k", split="test", path=str(plain))).load()
    assert from_gz == from_plain
    assert len(from_gz) == 1319


def test_broken_gzipped_line_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "train.jsonl.gz"
    with gzip.open(bad, "wt", encoding="utf-8") as fh:
        fh.write('{"question": "q", "answer": "a\\n#### 1"}\n{not json\n')
    with pytest.raises(DataError, match=r"train\.jsonl\.gz:2: not valid JSON"):
        Gsm8kTask(DatasetConfig(task="gsm8k", path=str(bad))).load()
