"""The fixture set: one plugin host, one tiny model per (seed, width) per session, and
the SGLang server; plain helpers live in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_plug.plugins import PluginHost, get_host, reset_host
from tests.helpers import TinyModels, build_tiny_model, cpu_server_overrides, with_seven


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sglang: needs the SGLang environment (.venv-sglang); not in make test-fast"
    )


@pytest.fixture()
def host() -> Iterator[PluginHost]:
    """A fresh process-wide plugin host per test: the built-ins and the installed
    plugins, as `grpo-plug` itself loads them."""
    reset_host()
    yield get_host()
    reset_host()


@pytest.fixture()
def seven_host(host: PluginHost) -> PluginHost:
    """:func:`host` with the test task ``seven`` (and the ``spread`` reward)."""
    return with_seven(host)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """``tiny_models(seed=0, hidden=32)``: the tiny model and tokenizer with those
    settings, built once per session (nothing writes into a model folder)."""
    built: dict[tuple[int, int], Path] = {}

    def get(*, seed: int = 0, hidden: int = 32) -> Path:
        if (seed, hidden) not in built:
            root = tmp_path_factory.mktemp(f"tiny-s{seed}-h{hidden}")
            built[seed, hidden] = build_tiny_model(root / "tiny", seed=seed, hidden=hidden)
        return built[seed, hidden]

    return get


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_models: TinyModels) -> Path:
    """The default tiny model (seed 0, hidden 32): what a test trains unless it needs
    its own copy."""
    return tiny_models()


@pytest.fixture(scope="session")
def sglang_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: TinyModels
) -> Iterator[object]:
    """ONE real SGLang server per test session (start-up takes minutes on CPU), launched
    by the project's own launcher on a tiny random Llama, stopped by PID at the end."""
    import os
    import time

    from grpo_plug import config as cfgmod
    from grpo_plug.rollout.sglang import servers as srv
    from grpo_plug.rollout.sglang.specs import server_specs

    root = tmp_path_factory.mktemp("sglang")
    model = tiny_models(hidden=64)
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
