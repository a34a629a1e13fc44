"""The rehearsal's model: a tiny random model shaped like ``actor.path``'s config when
that config (and its tokenizer) is on this machine, else the embedded SmolLM2.

A shaped model keeps the architecture, the vocabulary and the tokenizer (what the
servers, the chat template and the weight sync meet), with a few small layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grpo_plug.rehearsal.shrink import EMBEDDED_MODEL

# Upper bounds on the shaped model's sizes (where the config has the attribute).
SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_window_layers": 2,
}


def choose(path: str, out_dir: Path, *, build: bool = True, seed: int = 1) -> tuple[str, str]:
    """(the model the rehearsal trains, why). ``build=False`` (a dry run) names the
    folder without writing it."""
    if path.startswith("embedded:"):
        return path, "already a CPU-sized model"
    try:
        config = _local_config(path)
    except Exception:  # any failure to find it locally: the hub is not asked
        return EMBEDDED_MODEL, f"{path}'s config is not on this machine: the embedded model"
    why = f"a tiny random {config.model_type} shaped like {path}'s config"
    if not build:
        return str(out_dir), why
    try:
        build_shaped(path, config, out_dir, seed=seed)
    except Exception as e:
        first = (str(e).splitlines() or [""])[0]
        return EMBEDDED_MODEL, f"no tiny model shaped like {path} ({type(e).__name__}: {first})"
    return str(out_dir), why


def _local_config(path: str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(path, local_files_only=True)


def shaped_config(config: Any) -> Any:
    """``config`` with its sizes capped by :data:`SHAPE` (a copy; consistent heads)."""
    cfg = config.__class__.from_dict(config.to_dict())
    for key, most in SHAPE.items():
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > most:
            setattr(cfg, key, most)
    heads = getattr(cfg, "num_attention_heads", None)
    kv = getattr(cfg, "num_key_value_heads", None)
    if isinstance(heads, int) and isinstance(kv, int) and heads % kv:
        cfg.num_key_value_heads = 1
    if isinstance(heads, int) and getattr(cfg, "head_dim", None) is not None:
        cfg.head_dim = cfg.hidden_size // heads
    layers = getattr(cfg, "layer_types", None)
    if isinstance(layers, list):
        cfg.layer_types = layers[: cfg.num_hidden_layers]
    return cfg


def build_shaped(path: str, config: Any, out_dir: Path, *, seed: int = 1) -> Path:
    """Write the shaped model and ``path``'s tokenizer to ``out_dir`` (a HF folder)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(shaped_config(config))  # type: ignore[no-untyped-call]
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir
