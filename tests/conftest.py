from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_plug.plugins import get_host, reset_host

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture()
def host() -> Iterator[object]:
    """A fresh plugin host (and a fresh process-wide one) per test."""
    reset_host()
    yield get_host()
    reset_host()


def sglang_python() -> str:
    """The interpreter with SGLang: $GRPO_PLUG_SGLANG_PYTHON (set by `make test`), else
    the checkout's .venv-sglang. Missing means a set-up error, never a skip."""
    import os

    path = os.environ.get("GRPO_PLUG_SGLANG_PYTHON") or str(REPO / ".venv-sglang/bin/python")
    if not Path(path).is_file():
        pytest.fail(f"no SGLang interpreter at {path}: run `make sglang-env` (or make test)")
    return path


def cpu_server_overrides() -> list[str]:
    """A small CPU server from the SGLang venv, in fp32 for exact comparisons with the
    fp32 learner."""
    return [
        f"sglang.python={sglang_python()}",
        "sglang.device=cpu",
        "sglang.dtype=float32",
        "sglang.max_total_tokens=4096",
        "sglang.mem_fraction_static=0.1",
    ]


@pytest.fixture(scope="session")
def sglang_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """ONE real SGLang server per test session (start-up takes minutes on CPU), launched
    by the project's own launcher on a tiny random Llama, stopped by PID at the end."""
    import os
    import time

    from grpo_plug import config as cfgmod
    from grpo_plug.rollout.sglang import servers as srv
    from grpo_plug.rollout.sglang.backend import server_specs
    from grpo_plug.testing import build_tiny_model

    root = tmp_path_factory.mktemp("sglang")
    model = build_tiny_model(root / "tiny", hidden=64)
    cfg = cfgmod.load(overrides=["rollout.backend=sglang", *cpu_server_overrides()])
    (server,) = srv.start(server_specs(cfg, str(model), root / "logs"), 900, progress=print)
    try:
        yield server, model
    finally:
        srv.stop_all([server])
        for _ in range(50):  # killed children may take a moment to be reaped
            try:
                os.killpg(server.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"SGLang server group {server.pid} still alive after stop")
