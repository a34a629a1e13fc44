"""A Hugging Face dataset id (``openai/gsm8k``) -> one split as a local file.

Looked up in order, the first that has it wins:

1. the hub cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``): the parquet file ``huggingface_hub`` downloaded;
2. the ``datasets`` library's cache (``HF_DATASETS_CACHE``, else ``$HF_HOME/datasets``):
   the Arrow file ``load_dataset`` wrote (read with pyarrow; ``datasets`` itself is not
   needed);
3. the hub itself, unless ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` is set.

When none has it, one line says how to point at a local copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from grpo_plug.errors import DataError

_OFF = ("", "0", "false", "no", "off")


def _hf_home() -> Path:
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "huggingface"


def hub_cache() -> Path:
    return Path(os.environ.get("HF_HUB_CACHE") or _hf_home() / "hub").expanduser()


def datasets_cache() -> Path:
    return Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets").expanduser()


def offline() -> bool:
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    return any(os.environ.get(n, "").strip().lower() not in _OFF for n in names)


def _from_hub_cache(repo_id: str, filename: str) -> Path | None:
    try:
        from huggingface_hub import hf_hub_download

        got = hf_hub_download(
            repo_id=repo_id,
            repo_type="dataset",
            filename=filename,
            cache_dir=hub_cache(),
            local_files_only=True,
        )
    except Exception:  # not cached (or no huggingface_hub): try the next place
        return None
    return Path(got)


def _from_datasets_cache(repo_id: str, config: str, split: str) -> Path | None:
    """The newest Arrow file of ``split`` under the ``datasets`` cache's folder for
    ``repo_id``/``config`` (``openai___gsm8k/main/<version>/<hash>/gsm8k-train.arrow``)."""
    root = datasets_cache() / repo_id.replace("/", "___") / config
    found = [
        p
        for p in root.glob(f"*/*/*-{split}*.arrow")
        if p.stem.endswith(f"-{split}") or f"-{split}-" in p.stem
    ]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def cached_split(repo_id: str, split: str, config: str = "main") -> Path | None:
    """``split`` of hub dataset ``repo_id`` from the local caches alone, or None."""
    filename = f"{config}/{split}-00000-of-00001.parquet"
    return _from_hub_cache(repo_id, filename) or _from_datasets_cache(repo_id, config, split)


def split_file(repo_id: str, split: str, config: str = "main") -> Path:
    """A local file holding ``split`` of hub dataset ``repo_id`` (parquet or Arrow)."""
    filename = f"{config}/{split}-00000-of-00001.parquet"
    cached = cached_split(repo_id, split, config)
    if cached is not None:
        return cached
    why = "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
    if not offline():
        try:
            from huggingface_hub import hf_hub_download

            return Path(
                hf_hub_download(
                    repo_id=repo_id, repo_type="dataset", filename=filename, cache_dir=hub_cache()
                )
            )
        except Exception as e:
            why = f"the hub is unreachable ({type(e).__name__})"
    raise DataError(
        f"dataset {repo_id!r} ({split}): not in the Hugging Face cache ({hub_cache()}, "
        f"{datasets_cache()}) and {why}; set the dataset's path to a local JSONL or parquet "
        "copy (question and answer fields), or to null for the bundled GSM8K"
    )
