"""A tiny Llama and a digits-only tokenizer built from a config: no hub, no download.

The model is random (it learns ``seven`` in ~50 steps); it exists so a plugin's tests
can run a real rollout and a real GRPO step in seconds on a laptop CPU.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<unk>", "<|im_start|>", "<|im_end|>"]
CHARS = list("0123456789 ")
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>{% endif %}"
)


def build_tiny_model(path: Path, *, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """Write a tokenizer and a randomly initialised LlamaForCausalLM to ``path``.

    The folder is a normal Hugging Face checkpoint: ``actor.path=<path>`` trains it."""
    import torch
    from tokenizers import Tokenizer, decoders, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.add_special_tokens(SPECIALS)
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=core,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )
    tok.chat_template = TEMPLATE
    path.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=vocab["<|im_start|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|im_end|>"],
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def tiny_model(path: Path) -> Path:
    """``build_tiny_model(path)`` unless a previous call already wrote it there."""
    if (path / "config.json").is_file() and (path / "tokenizer.json").is_file():
        return path
    return build_tiny_model(path)
