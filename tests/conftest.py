from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_plug.plugins import get_host, reset_host

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture()
def host() -> Iterator[object]:
    """A fresh plugin host (and a fresh process-wide one) per test."""
    reset_host()
    yield get_host()
    reset_host()
