"""docs/plugins.md is executable: every fenced python block runs, as a module of its
own, and the guide documents every hook and every public type of grpo_plug.api."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

from grpo_plug import api, hookspecs

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "plugins.md"
SLOW_MARK = "<!-- slow:"
_BLOCK = re.compile(r"(?P<mark><!-- slow:[^\n]*\n)?```python\n(?P<code>.*?)```", re.S)


def blocks() -> list[tuple[str, str, bool]]:
    """(id, code, slow) for every python block, id from the heading above it."""
    text = GUIDE.read_text()
    out = []
    for m in _BLOCK.finditer(text):
        heading = re.findall(r"^#+ (.+)$", text[: m.start()], re.M)[-1]
        slug = re.sub(r"\W+", "_", heading).strip("_")
        out.append((slug, m.group("code"), m.group("mark") is not None))
    return out


def run_block(code: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the examples find themselves as sys.modules[__name__]
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]


FAST = [(slug, code) for slug, code, slow in blocks() if not slow]
SLOW = [(slug, code) for slug, code, slow in blocks() if slow]


def test_the_guide_has_one_example_per_hook() -> None:
    hooks = [n for n in vars(hookspecs) if n.startswith("register_")]
    documented = {slug for slug, _ in FAST}
    for hook in hooks:
        assert any(s.startswith(hook) for s in documented), f"no runnable example for {hook}"
    assert SLOW, "the harness example is gone"


@pytest.mark.parametrize(("slug", "code"), FAST, ids=[s for s, _ in FAST])
def test_guide_example_runs(slug: str, code: str, tmp_path: Path) -> None:
    run_block(code, tmp_path, f"guide_{slug}")


@pytest.mark.slow
@pytest.mark.parametrize(("slug", "code"), SLOW, ids=[s for s, _ in SLOW])
def test_guide_training_example_runs(slug: str, code: str, tmp_path: Path) -> None:
    run_block(code, tmp_path, f"guide_{slug}")


def test_every_public_type_is_documented_field_by_field() -> None:
    guide = GUIDE.read_text()
    for name in api.__all__:
        obj = getattr(api, name)
        if not inspect.isclass(obj):
            continue
        doc = inspect.getdoc(obj) or ""
        assert doc, f"grpo_plug.api.{name} has no docstring"
        if dataclasses.is_dataclass(obj):
            for f in dataclasses.fields(obj):
                if f.metadata.get("internal") or obj.__module__.startswith("grpo_plug.config"):
                    continue  # config fields carry their help as metadata instead
                assert f"``{f.name}``" in doc, f"{name}.{f.name} is not in its docstring"
    for name in ("Sample", "GenerationRequest", "RolloutContext", "RunInfo", "Example"):
        assert f"`{name}" in guide, f"docs/plugins.md never mentions {name}"


def test_config_fields_have_help() -> None:
    for cls in (api.TrainConfig, api.DatasetConfig):
        for f in dataclasses.fields(cls):
            if not f.metadata.get("internal"):
                assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
