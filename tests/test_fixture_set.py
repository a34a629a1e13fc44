"""The test suite's own rule: shared helpers live in tests/helpers.py and fixtures in
tests/conftest.py, so no test file imports from a test module or from conftest."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_test_file_imports_a_test_module_or_conftest() -> None:
    files = sorted(TESTS.glob("*.py"))
    assert len(files) > 10  # the scan sees the suite
    bad = {
        f"{path.name} imports {name}"
        for path in files
        for name in imported_modules(path)
        if name.startswith(("tests.test_", "tests.conftest", "test_", "conftest"))
    }
    assert not bad, sorted(bad)
