"""``grpo-plug plugins new KIND NAME``: an installable plugin package that passes its
own tests unchanged (templates in scaffold_templates.py)."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from grpo_plug.cli.scaffold_templates import KINDS, USE
from grpo_plug.errors import PluginError

_NAME = re.compile(r"[a-z][a-z0-9_]*")

PYPROJECT = """[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "grpo-plug plugin: $what `$name`"
requires-python = ">=3.11"
dependencies = ["grpo-plug"]

[project.optional-dependencies]
test = ["pytest>=8"]

# What makes grpo-plug find it: group grpo_plug, any name, the module with @hookimpl.
[project.entry-points.grpo_plug]
$name = "$pkg.plugin"

[tool.setuptools]
packages = ["$pkg"]
"""

README = """# $dist

A grpo-plug plugin providing $what, `$name`.

```bash
pip install -e .            # or: uv pip install -e .
grpo-plug plugins           # lists `$name` under plugin `$name`
python -m pytest tests      # contract checks and one real GRPO step (grpo_plug.testing)
grpo-plug train --preset cpu $use
```

Where to go next: `$pkg/plugin.py` says what to replace; the guide is grpo-plug's
docs/plugins.md (hooks, what each must return, errors, testing, publishing).
Publish with `python -m build && twine upload dist/*`; users then `pip install $dist`.
"""

# An import, not `pytest_plugins`: that works only in a root conftest, and this package
# may sit inside another project's tree (e.g. its plugins/ folder).
CONFTEST = """# grpo_plug.testing's fixtures for this package's tests.
from grpo_plug.testing.pytest_plugin import grpo_host, tiny_model_dir  # noqa: F401
"""


def _class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def new_plugin(kind: str, name: str, parent: Path) -> Path:
    """Write package ``grpo-plug-<name>`` for a ``kind`` component called ``name``
    under ``parent``; return its folder. Refuses to overwrite anything."""
    if kind not in KINDS:
        raise PluginError(f"plugins new: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if not _NAME.fullmatch(name):
        raise PluginError(
            f"plugins new: name {name!r} must be lower-case letters, digits and _ "
            "(a Python identifier: it names the component and the module)"
        )
    module, test, what = KINDS[kind]
    dist = "grpo-plug-" + name.replace("_", "-")
    pkg = "grpo_plug_" + name
    values = {"name": name, "pkg": pkg, "Class": _class_name(name), "dist": dist, "what": what}
    values["use"] = Template(USE[kind]).substitute(values)
    root = parent / dist
    if root.exists():
        raise PluginError(f"plugins new: {root} already exists; pick another name or --dir")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"{pkg}/__init__.py": f'"""grpo-plug plugin: {what} `{name}`."""\n',
        f"{pkg}/plugin.py": module,
        "tests/conftest.py": CONFTEST,
        "tests/test_plugin.py": test,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(text).substitute(values), encoding="utf-8")
    return root
