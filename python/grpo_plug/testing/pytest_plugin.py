"""pytest fixtures for plugin tests. Enable them in your ``conftest.py``::

    from grpo_plug.testing.pytest_plugin import grpo_host, tiny_model_dir  # noqa: F401

(or ``pytest_plugins = ["grpo_plug.testing.pytest_plugin"]`` in a root conftest).

``grpo_host`` gives a plugin host with the built-ins only (other installed plugins
never leak into a test; register yours with ``grpo_host.register(module, name=...)``);
``tiny_model_dir`` the tiny model, built once per test session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_plug.plugins import PluginHost
from grpo_plug.testing.fixtures import isolated_host


@pytest.fixture()
def grpo_host(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    """A plugin host with the built-ins and the testing plugin; nothing else installed."""
    from grpo_plug import plugins

    host = isolated_host()
    monkeypatch.setattr(plugins, "_HOST", host)  # so get_host() in the code under test sees it
    yield host


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model and tokenizer (``actor.path=<this>``), built once per session."""
    from grpo_plug.testing.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("grpo-plug") / "tiny-model")
