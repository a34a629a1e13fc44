"""tools/bootstrap_uv.py: uv from a package index with the standard library alone.

A local index on 127.0.0.1 serves a wheel shaped like uv's, so the download, the hash
check and the unpacking run for real without the network. Where Debian's
externally-managed Python exists (pip refused, PEP 668), the bootstrap runs under it.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import platform
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
DEBIAN_PY = Path("/usr/bin/python3")


def fake_wheel() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("uv/__init__.py", "")
        zf.writestr("uv-0.13.9.data/scripts/uv", "#!/bin/sh\necho 'uv 0.13.9 (fake)'\n")
    return buf.getvalue()


@pytest.fixture()
def index(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(index url, wheel name, sha256) of a PEP 503 index serving one fake wheel."""
    name = "uv-0.13.9-py3-none-test.whl"
    blob = fake_wheel()
    root = tmp_path / "index"
    (root / "simple" / "uv").mkdir(parents=True)
    (root / "files").mkdir()
    (root / "files" / name).write_bytes(blob)
    sha = hashlib.sha256(blob).hexdigest()
    (root / "simple" / "uv" / "index.html").write_text(
        f'<a href="../../files/{name}#sha256={sha}">{name}</a>\n'
    )

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, directory=str(root), **k)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/simple", name, sha
    srv.shutdown()
    srv.server_close()


def run_bootstrap(python: str, cache: Path, index_url: str, wheel: str, sha: str) -> Any:
    key = (platform.system(), platform.machine())
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import bootstrap_uv as b; "
        f"b.WHEELS[{key!r}] = ({wheel!r}, {sha!r}); sys.exit(b.main())"
    )
    env = {**os.environ, "GRPO_PLUG_CACHE": str(cache), "PIP_INDEX_URL": index_url}
    return subprocess.run(
        [python, "-c", code, str(TOOLS)], env=env, capture_output=True, text=True, timeout=60
    )


def pythons() -> list[str]:
    found = [sys.executable]
    if DEBIAN_PY.is_file() and list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")):
        found.append(str(DEBIAN_PY))
    return found


@pytest.mark.parametrize("python", pythons())
def test_fetches_verifies_and_unpacks(
    python: str, index: tuple[str, str, str], tmp_path: Path
) -> None:
    url, wheel, sha = index
    res = run_bootstrap(python, tmp_path / "cache", url, wheel, sha)
    assert res.returncode == 0, res.stderr
    uv = Path(res.stdout.strip())
    assert uv == tmp_path / "cache" / "tools" / "uv-0.13.9" / "uv"
    assert "fetching uv 0.13.9" in res.stderr  # it says what it does
    assert subprocess.run([str(uv)], capture_output=True, text=True).stdout == (
        "uv 0.13.9 (fake)\n"
    )
    again = run_bootstrap(python, tmp_path / "cache", "http://127.0.0.1:9/none", wheel, sha)
    assert again.returncode == 0 and again.stdout.strip() == str(uv)  # cached: no download


def test_refuses_a_wheel_with_the_wrong_hash(index: tuple[str, str, str], tmp_path: Path) -> None:
    url, wheel, _ = index
    res = run_bootstrap(sys.executable, tmp_path / "cache", url, wheel, "0" * 64)
    assert res.returncode == 1
    assert "expected " + "0" * 64 in res.stderr and "refused" in res.stderr
    assert not (tmp_path / "cache" / "tools" / "uv-0.13.9" / "uv").exists()


def test_a_wheel_missing_from_the_index_is_named(
    index: tuple[str, str, str], tmp_path: Path
) -> None:
    url, _, sha = index
    res = run_bootstrap(sys.executable, tmp_path / "cache", url, "uv-0.13.9-nope.whl", sha)
    assert res.returncode != 0 and "uv-0.13.9-nope.whl is not listed at" in res.stderr
