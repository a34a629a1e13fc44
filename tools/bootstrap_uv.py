#!/usr/bin/env python3
"""Fetch the pinned uv binary from PyPI with the standard library alone; print its path.

Used by the Makefile when no `uv` is on PATH. It needs no pip, so it works where
`python3 -m pip install` is refused (PEP 668 "externally managed" Pythons, such as
Debian's). What it does: download the uv wheel for this platform from the package
index (PIP_INDEX_URL, else PyPI), check its sha256 against the hash pinned below,
extract the `uv` executable into ~/.cache/grpo-plug/tools/uv-VERSION/ (GRPO_PLUG_CACHE
or XDG_CACHE_HOME move it) and print that path. Nothing outside that folder changes.
A second call finds the binary there and downloads nothing.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import re
import stat
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

UV_VERSION = "0.13.9"
# (system, machine) -> (wheel file name, sha256): the hashes PyPI lists for 0.13.9.
WHEELS = {
    ("Linux", "x86_64"): (
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    ),
    ("Linux", "aarch64"): (
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    ),
    ("Darwin", "x86_64"): (
        "uv-0.13.9-py3-none-macosx_10_12_x86_64.whl",
        "c16ed11e013557536b3e60065f1b912f6407bd6518e041b961e23ef9e6b4fbf5",
    ),
    ("Darwin", "arm64"): (
        "uv-0.13.9-py3-none-macosx_11_0_arm64.whl",
        "66c512266d633bef48384a1f53003f41f2a8e7b36fe6e7fbfd3e0fd52d96fa63",
    ),
}


def tool_dir() -> Path:
    base = os.environ.get("GRPO_PLUG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "grpo-plug"
    )
    return Path(base) / "tools" / f"uv-{UV_VERSION}"


def wheel_url(index: str, filename: str) -> str:
    """The file's URL as the index's simple page (PEP 503) lists it."""
    page_url = index.rstrip("/") + "/uv/"
    with urllib.request.urlopen(page_url, timeout=60) as r:
        page = r.read().decode("utf-8", "replace")
    for href in re.findall(r'href="([^"]+)"', page):
        if href.split("#")[0].rsplit("/", 1)[-1] == filename:
            return urllib.request.urljoin(page_url, href.split("#")[0])
    raise SystemExit(f"bootstrap_uv: {filename} is not listed at {page_url}")


def main() -> int:
    target = tool_dir() / "uv"
    if target.is_file() and os.access(target, os.X_OK):
        print(target)
        return 0
    key = (platform.system(), platform.machine())
    if key not in WHEELS:
        sys.stderr.write(
            f"bootstrap_uv: no pinned uv wheel for {key[0]}/{key[1]}; install uv yourself "
            "(https://docs.astral.sh/uv/) and rerun\n"
        )
        return 1
    filename, sha = WHEELS[key]
    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    sys.stderr.write(
        f"bootstrap_uv: no uv on PATH; fetching uv {UV_VERSION} from {index} into {target.parent}\n"
    )
    with urllib.request.urlopen(wheel_url(index, filename), timeout=180) as r:
        blob = r.read()
    got = hashlib.sha256(blob).hexdigest()
    if got != sha:
        sys.stderr.write(f"bootstrap_uv: {filename} has sha256 {got}, expected {sha}; refused\n")
        return 1
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        member = next(n for n in zf.namelist() if n.endswith(".data/scripts/uv"))
        data = zf.read(member)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed, so an interrupted download leaves no half binary.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".uv-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, os.stat(tmp).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, target)
    print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
