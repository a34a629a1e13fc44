"""One-command GPU check of the learner (no network, no SGLang, random weights).

    python bench/gpu_check.py                 # on a GPU machine, <= ~8 minutes
    python bench/gpu_check.py --tiny          # a small model on the CPU: checks the script

Builds a Qwen2.5-0.5B-shaped model from its config (random weights) and measures, at
the ``full`` preset's shapes (8 prompts x 4 samples, <= 512 new tokens):

1. learner tokens/s and MFU of a GRPO train step (bf16) for each ``actor.attention``:
   ``packed`` (what it resolves to here: flash-attn's varlen kernel when installed,
   else flex_attention), ``packed_sdpa``, ``shared_prompt`` (each group's prompt once),
   ``packed_dense`` (transformers' T x T mask) and ``padded``, gradient checkpointing on
   and off, with peak GPU memory;
2. the same step with the model under FSDP2 on this one GPU (a 1-rank process group);
3. each packed kernel's (and shared_prompt's) log-probs against padded's (max |difference|)
   in the working dtype;
4. transformers ``generate`` tokens/s (the engine of the ``hf`` backend), batch 32.

MFU = model FLOPs / (seconds x peak): 6 x non-embedding parameters per token plus
causal attention over each document (6 x layers x heads x head_dim x the sum of the
documents' squared lengths: the varlen layout's work, not T^2 of a packed row, nor what
padding or a dense mask waste; for shared_prompt each distinct prompt's tokens once),
gradient-checkpointing recompute not counted. Peak bf16
dense TFLOP/s comes from the device name (H100/H200 989, A100 312) or ``--peak-tflops``.
A variant that fails is recorded with its error and the others still run.
Every figure it prints is measured on the machine it runs on.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grpo_plug import config as cfgmod
from grpo_plug.learner import (
    Learner,
    LearnerBatch,
    attention,
    dist,
    fsdp,
    make_optimizer,
    make_scheduler,
)
from grpo_plug.learner.logprobs import (
    completion_logprobs,
    packed_logprobs,
    shared_prompt_logprobs,
)

QWEN_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": True,
    "rope_theta": 1000000.0,
}
TINY = {**QWEN_05B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
TINY.update(num_attention_heads=4, vocab_size=512)
PEAKS = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12}


def build_model(shape: dict[str, Any], path: Path) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(**shape)).save_pretrained(path)
    return path


def synthetic_batch(
    prompts: int, group: int, max_new: int, vocab: int, prompt_len: tuple[int, int] = (100, 200)
) -> LearnerBatch:
    """GSM8K-like lengths by default: ~150-token prompts, completions up to ``max_new``."""
    rng = np.random.default_rng(0)
    p_ids, c_ids, lps = [], [], []
    for _ in range(prompts):
        prompt = rng.integers(10, vocab, size=int(rng.integers(*prompt_len))).tolist()
        for _ in range(group):
            c = rng.integers(10, vocab, size=int(rng.integers(max_new // 2, max_new + 1)))
            p_ids.append(prompt)
            c_ids.append(c.tolist())
            lps.append((-rng.uniform(0.5, 2.0, size=len(c))).tolist())
    adv = rng.normal(size=len(p_ids)).astype(np.float32)
    return LearnerBatch(p_ids, c_ids, lps, adv, np.arange(len(p_ids)))


def step_flops(model: Any, batch: LearnerBatch, *, shared: bool = False) -> float:
    """Model FLOPs of one train step: dense 6N per token, attention causal per document.
    ``shared``: the shared_prompt row, where each distinct prompt's tokens run once."""
    cfg = model.config
    n = sum(p.numel() for p in model.parameters()) - cfg.vocab_size * cfg.hidden_size
    lens = np.array(
        [len(p) + len(c) for p, c in zip(batch.prompts, batch.completions, strict=True)]
    )
    tokens = float(lens.sum())
    if shared:
        distinct = {tuple(p) for p in batch.prompts}
        tokens = sum(map(len, distinct)) + float(sum(map(len, batch.completions)))
    dense = 6.0 * n * tokens
    width = cfg.num_attention_heads * getattr(
        cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads
    )
    # per document: QK^T and PV over the causal half (2 L^2 width), x3 for the backward
    attn = 6.0 * cfg.num_hidden_layers * width * float((lens.astype(np.float64) ** 2).sum())
    return float(dense + attn)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(learner: Learner, batch: LearnerBatch, repeats: int) -> tuple[float, float]:
    """(median seconds per train step after one warm-up, peak GiB)."""
    dev = learner.info.device
    learner.train_step(batch)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(repeats):
        sync(dev)
        t0 = time.perf_counter()
        learner.train_step(batch)
        sync(dev)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    return float(np.median(times)), peak


def learner_for(model_dir: Path, info: dist.DistInfo, *overrides: str) -> Learner:
    cfg = cfgmod.load(
        preset="cpu" if info.device.type == "cpu" else "full",
        overrides=[f"actor.path={model_dir}", "actor.mb_max_tokens=16384", *overrides],
    )
    return Learner(cfg, 100, info)


VARIANTS = [
    ("packed", "true"),
    ("packed", "false"),
    ("packed_sdpa", "true"),
    ("shared_prompt", "true"),
    ("packed_dense", "true"),
    ("padded", "true"),
    ("padded", "false"),
]


def measure_learner(
    model_dir: Path, info: dist.DistInfo, batch: LearnerBatch, args: Any
) -> list[dict[str, Any]]:
    rows = []
    for choice, ckpt in VARIANTS:
        name = f"learner {choice} ckpt={ckpt}"
        try:
            lr = learner_for(
                model_dir,
                info,
                f"actor.attention={choice}",
                f"actor.gradient_checkpointing={ckpt}",
            )
            secs, peak = time_steps(lr, batch, args.repeats)
            rows.append(row(f"{name} ({lr.attention})", lr, batch, secs, peak, args))
            del lr
        except Exception as e:  # one broken kernel must not hide the other figures
            rows.append(failed(name, e))
        if info.device.type == "cuda":
            torch.cuda.empty_cache()
    # FSDP2 on this one device: the sharded code path, a 1-rank process group.
    # fp32 master weights, bf16 compute, fp32 reduce: the multi-rank configuration.
    try:
        lr = learner_for(
            model_dir,
            info,
            "actor.attention=packed",
            "actor.gradient_checkpointing=true",
            "actor.dtype=float32",
        )
        fsdp.shard_model(lr.model, info, mixed_precision=True)
        lr.optimizer = make_optimizer(lr.model, lr.actor)  # over the sharded parameters
        lr.scheduler = make_scheduler(lr.optimizer, lr.actor, 100)
        secs, peak = time_steps(lr, batch, args.repeats)
        name = f"learner FSDP2 1-rank packed ({lr.attention}) ckpt=true"
        rows.append(row(name, lr, batch, secs, peak, args))
    except Exception as e:
        rows.append(failed("learner FSDP2 1-rank packed ckpt=true", e))
    return rows


def failed(name: str, e: Exception) -> dict[str, Any]:
    out = {"name": name, "error": f"{type(e).__name__}: {e}"[:500]}
    print(json.dumps(out), flush=True)
    return out


def row(
    name: str, lr: Learner, batch: LearnerBatch, secs: float, peak: float, args: Any
) -> dict[str, Any]:
    tokens = sum(len(p) + len(c) for p, c in zip(batch.prompts, batch.completions, strict=True))
    out = {
        "name": name,
        "seconds": round(secs, 3),
        "tokens_per_s": round(tokens / secs),
        "peak_gib": round(peak, 2),
    }
    if args.peak:
        spent = step_flops(lr.model, batch, shared=lr.path == "shared_prompt")
        out["mfu"] = round(spent / secs / args.peak, 4)
    print(json.dumps(out), flush=True)
    return out


def logprob_agreement(
    model_dir: Path, info: dist.DistInfo, batch: LearnerBatch
) -> list[dict[str, Any]]:
    from grpo_plug import core

    lr = learner_for(model_dir, info, "actor.attention=padded")
    idx = np.arange(min(8, len(batch.prompts)))
    (mbs,) = core.pack_microbatches(
        [batch.prompts[i] for i in idx],
        [batch.completions[i] for i in idx],
        [batch.logprobs[i] for i in idx],
        batch.advantages[idx],
        max_tokens=1 << 20,
    )
    with torch.no_grad():
        want, _ = completion_logprobs(lr.model, mbs[0], temperature=1.0, max_seqs=8)
    rows = []
    for kernel in (*attention.PACKED_KERNELS, "shared_prompt"):
        why = attention.unavailable(kernel, info.device.type)
        if why is not None:
            rows.append({"name": f"{kernel} vs padded logp", "skipped": why})
            continue
        try:
            attention.use(lr.model, kernel)
            if kernel == "packed_dense":
                lr.model.set_attn_implementation("sdpa")
            fn = shared_prompt_logprobs if kernel == "shared_prompt" else packed_logprobs
            with torch.no_grad():
                got, _ = fn(lr.model, mbs[0], temperature=1.0)
            rows.append(
                {
                    "name": f"{kernel} vs padded logp",
                    "dtype": str(next(lr.model.parameters()).dtype),
                    "max_abs_diff": float((got - want).abs().max()),
                }
            )
        except Exception as e:
            rows.append(failed(f"{kernel} vs padded logp", e))
            continue
        print(json.dumps(rows[-1]), flush=True)
    return rows


def generation(
    model_dir: Path, info: dist.DistInfo, batch_size: int, new_tokens: int
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if info.device.type == "cuda" else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    model = model.to(info.device).eval()
    ids = torch.randint(10, model.config.vocab_size, (batch_size, 150), device=info.device)
    kw = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": True,
        "pad_token_id": 0,
    }
    model.generate(ids[:2], **{**kw, "max_new_tokens": 4, "min_new_tokens": 4})
    sync(info.device)
    t0 = time.perf_counter()
    model.generate(ids, **kw)
    sync(info.device)
    secs = time.perf_counter() - t0
    out = {
        "name": f"transformers generate batch {batch_size}",
        "tokens_per_s": round(batch_size * new_tokens / secs),
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tiny", action="store_true", help="small model on the CPU (script check)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu_check.json")
    args = ap.parse_args()
    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        raise SystemExit("no CUDA device: run with --tiny to check the script on the CPU")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29512")
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    info = dist.from_env(cuda=cuda)
    dist.init(info)
    torch.distributed.init_process_group("nccl" if cuda else "gloo")  # FSDP2 needs a group
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    args.peak = (
        args.peak_tflops * 1e12
        if args.peak_tflops
        else next((v for k, v in PEAKS.items() if k in name), None)
    )
    shape, (prompts, group, max_new) = (TINY, (2, 2, 16)) if args.tiny else (QWEN_05B, (8, 4, 512))
    results: dict[str, Any] = {"device": name, "peak_flops": args.peak, "shape": shape}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(shape, Path(tmp) / "model")
        batch = synthetic_batch(prompts, group, max_new, int(shape["vocab_size"]))
        results["learner"] = measure_learner(model_dir, info, batch, args)
        results["logprobs"] = logprob_agreement(model_dir, info, batch)
        results["generate"] = generation(model_dir, info, 32 if cuda else 2, 256 if cuda else 8)
    results["gpus"] = torch.cuda.device_count() if cuda else 0
    if results["gpus"] >= 2:
        results["note"] = "2 GPUs: run pytest -m slow tests/test_distributed.py for 1 vs 2 ranks"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.out}")
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
