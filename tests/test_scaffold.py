"""`grpo-plug plugins new KIND NAME`: the package it writes installs, is discovered and
passes its own tests unchanged."""

from __future__ import annotations

import importlib
import json
import shutil
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from grpo_plug.cli import app
from grpo_plug.cli.scaffold_templates import KINDS

REPO = Path(__file__).resolve().parents[1]
KIND_NAMES = {kind: "my_" + kind.replace("-", "_") for kind in KINDS}


def scaffold(kind: str, parent: Path) -> Path:
    res = CliRunner().invoke(app, ["plugins", "new", kind, KIND_NAMES[kind], "--dir", str(parent)])
    assert res.exit_code == 0, res.output
    return parent / ("grpo-plug-" + KIND_NAMES[kind].replace("_", "-"))


@pytest.fixture()
def on_path(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path`` importable, and the scaffolded modules forgotten afterwards."""
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith(("grpo_plug_my_", "test_plugin"))]:
        del sys.modules[name]


@pytest.mark.parametrize("kind", list(KINDS))
def test_scaffold_is_lint_clean_and_passes_its_contract_tests(kind: str, on_path: Path) -> None:
    root = scaffold(kind, on_path)
    pkg = "grpo_plug_" + KIND_NAMES[kind]
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == sorted(
        [
            "README.md",
            "pyproject.toml",
            f"{pkg}/__init__.py",
            f"{pkg}/plugin.py",
            "tests/conftest.py",
            "tests/test_plugin.py",
        ]
    )
    assert f'{KIND_NAMES[kind]} = "{pkg}.plugin"' in (root / "pyproject.toml").read_text()
    ruff = [sys.executable, "-m", "ruff"]
    for args in (["check", "--isolated", "--select", "E,F,W,I,B,UP"], ["format", "--check"]):
        res = subprocess.run(
            [*ruff, *args, "--line-length", "100", "."], cwd=root, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "tests"))
    try:
        tests = importlib.import_module("test_plugin")
        tests.test_registers()
        tests.test_contract(*([on_path / "contract"] if kind == "logger" else []))
    finally:
        sys.path.remove(str(root / "tests"))
        sys.path.remove(str(root))


def test_scaffold_refuses_bad_names_and_kinds(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["plugins", "new", "reward", "My-Reward", "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "must be lower-case letters" in res.output
    res = runner.invoke(app, ["plugins", "new", "rewards", "x", "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown kind 'rewards'" in res.output
    scaffold("reward", tmp_path)
    res = runner.invoke(app, ["plugins", "new", "reward", "my_reward", "--dir", str(tmp_path)])
    assert res.exit_code == 2 and "already exists" in res.output


def _uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    res = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bootstrap_uv.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    return res.stdout.strip()


def throwaway_venv(root: Path) -> Path:
    """A venv that sees this one's packages (grpo-plug included) but installs into
    itself, so the scaffolded plugins never reach the shared environment."""
    uv = _uv()
    venv = root / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    (site_dir,) = (venv / "lib").glob("python3*/site-packages")
    parents = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (site_dir / "zz_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    )
    return venv / "bin" / "python"


@pytest.mark.slow
def test_each_scaffold_installs_is_discovered_and_passes_its_tests(tmp_path: Path) -> None:
    python = throwaway_venv(tmp_path)
    roots = [scaffold(kind, tmp_path / "pkgs") for kind in KINDS]
    install = [_uv(), "pip", "install", "--quiet", "--python", str(python), "--no-deps"]
    subprocess.run([*install, "--no-build-isolation", *(f"-e{r}" for r in roots)], check=True)
    res = subprocess.run(
        [str(python), "-m", "grpo_plug", "plugins", "--json"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    found = {c["name"] for p in json.loads(res.stdout) for c in p["components"]}
    assert set(KIND_NAMES.values()) <= found
    keys = subprocess.run(
        [str(python), "-m", "grpo_plug", "config", "show", "my_logger.prefix=grpo_actor/"],
        capture_output=True,
        text=True,
    )
    assert keys.returncode == 0 and "prefix: grpo_actor/" in keys.stdout, keys.stderr
    for root in roots:
        run = subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=root,
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, f"{root.name}:\n{run.stdout[-3000:]}{run.stderr[-2000:]}"
