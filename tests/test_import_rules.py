"""The package's rooms and which may import which, checked on the source.

Every ``import`` counts, the ones inside functions too (a lazy import is still a
dependency). A rule names a room (a module or a package) and the rooms it must not
import; :func:`violations` lists each broken rule with the line that breaks it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "python" / "grpo_plug"

# (room, forbidden rooms, why). A room is a dotted name under grpo_plug: a module, or a
# package meaning everything in it.
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("", ("builtin",), "only the plugin host (plugins.py) loads the built-in plugins"),
    ("errors", ("",), "a leaf: every room raises these"),
    ("faults", ("",), "a leaf: crash injection is called from anywhere"),
    ("config", ("plugins", "types", "hookspecs", "trainer", "cli"), "config is below plugins"),
    (
        "learner",
        (
            "recovery.schedule",
            "launch",
            "cli",
            "trainer",
            "rollout",
            "weight_sync",
            "metrics.fanout",
        ),
        "the learner trains; who schedules, launches or syncs it sits above",
    ),
    ("weight_sync", ("rollout", "learner", "trainer", "cli"), "strategies see the Protocol only"),
    ("rollout", ("learner", "weight_sync", "trainer", "cli", "recovery"), "generation only"),
    ("metrics", ("trainer", "learner", "rollout", "weight_sync", "cli"), "metrics only observe"),
    ("recovery", ("trainer", "cli", "rollout", "weight_sync"), "storage and its schedule"),
    ("data", ("rollout", "learner", "trainer", "cli", "weight_sync"), "tasks and prompts"),
    ("plan", ("trainer", "cli", "learner", "rollout", "weight_sync"), "derived from config"),
    ("", ("cli",), "nothing but the CLI imports the CLI"),
]


def _room_of(path: Path, pkg: Path = PKG) -> str:
    rel = path.relative_to(pkg).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported room under grpo_plug) for every grpo_plug import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("grpo_plug."):
                    out.append((node.lineno, alias.name.removeprefix("grpo_plug.")))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "grpo_plug":
                out += [(node.lineno, a.name) for a in node.names]
            elif node.module.startswith("grpo_plug."):
                mod = node.module.removeprefix("grpo_plug.")
                # `from grpo_plug.x import y` may name a submodule y: count x.y too.
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _inside(name: str, room: str) -> bool:
    return room == "" or name == room or name.startswith(room + ".")


def violations(pkg: Path = PKG) -> list[str]:
    found = []
    for path in sorted(pkg.rglob("*.py")):
        me = _room_of(path, pkg)
        for line, target in _imports(path):
            for room, banned, why in RULES:
                if not _inside(me, room):
                    continue
                for b in banned:
                    if b == "" and target.split(".")[0] in ("_core",):
                        continue
                    if _inside(target, b) and not _inside(target, room or "\0"):
                        if room == "" and b == "builtin" and me == "plugins":
                            continue
                        if room == "" and b == "cli" and _inside(me, "cli"):
                            continue
                        if me == "__main__" and b == "cli":
                            continue
                        rel = path.relative_to(pkg.parent)
                        found.append(f"{rel}:{line} imports grpo_plug.{target}: {why}")
    return found


def test_the_rooms_keep_their_import_rules() -> None:
    assert violations() == []


def test_a_broken_rule_is_reported_with_its_line(tmp_path: Path) -> None:
    """The check can fail: a learner module importing the launcher is caught."""
    pkg = tmp_path / "grpo_plug"
    (pkg / "learner").mkdir(parents=True)
    (pkg / "learner" / "bad.py").write_text(
        "import os\n\ndef f():\n    from grpo_plug import launch\n"
    )
    (pkg / "errors.py").write_text("from grpo_plug.config import TrainConfig\n")
    got = violations(pkg)
    assert got == [
        "grpo_plug/errors.py:1 imports grpo_plug.config.TrainConfig: "
        "a leaf: every room raises these",
        "grpo_plug/learner/bad.py:4 imports grpo_plug.launch: the learner trains; who schedules, "
        "launches or syncs it sits above",
    ]


@pytest.mark.parametrize("leaf", ["errors", "faults"])
def test_leaves_import_nothing_of_the_package(leaf: str) -> None:
    assert _imports(PKG / f"{leaf}.py") == []


def test_the_readme_code_map_names_every_room_and_only_real_ones() -> None:
    """The README's code map is the way in: each room of the package is in it, and
    each path it names exists."""
    readme = (PKG.parents[1] / "README.md").read_text()
    table = readme.split("## Code map", 1)[1].split("\nWhich room", 1)[0]
    named = set(re.findall(r"`([\w/]+(?:\.py)?/?)`", table))
    paths = {n for n in named if n.endswith((".py", "/"))}
    outside = ("rust/", "python/")  # the intro and the Rust crates, not package rooms
    paths = {p for p in paths if not p.startswith(outside)}
    missing = sorted(p for p in paths if not (PKG / p).exists())
    assert missing == []
    rooms = {p.name + ("/" if p.is_dir() else "") for p in PKG.iterdir()}
    rooms = {r for r in rooms if r.endswith(("/", ".py")) and not r.startswith("_")}
    rooms -= {"presets/", "__pycache__/"}
    assert sorted(rooms - paths) == []
