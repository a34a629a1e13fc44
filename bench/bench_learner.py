"""Learner tokens/s on the CPU, every actor.attention side by side, at two shapes.

    .venv/bin/python bench/bench_learner.py                      # both shapes
    .venv/bin/python bench/bench_learner.py --shape full --variants padded,packed_sdpa
    .venv/bin/python bench/bench_learner.py --tiny --repeats 1   # checks the script
    .venv/bin/python bench/bench_learner.py --shape full --variants padded --profile 12

One GRPO train step (fp32, AdamW) per repeat, the median of ``--repeats`` after one
warm-up, each variant in its own process (so its peak memory is its own) on the same
batch:

- ``cpu``: the cpu preset's learner: 8 prompts x 8 samples, ~70-token prompts and 32-64
  new tokens (~120-token documents);
- ``full``: the full preset's learner: 8 prompts x 4 samples of 300-600-token GSM8K-like
  documents (100-200-token prompts).

Each shape's learner settings (``actor.mb_max_tokens``, ``actor.batch_size``,
``actor.gradient_checkpointing``) are read from its preset, so the bench follows the
presets: today cpu 1024 / 16 / off, full 10240 / 32 / on.

The model has SmolLM2-135M's shape (hidden 576, 9 heads / 3 KV heads of 64, vocabulary
49152) with ``--layers`` of its 30 layers and random weights: attention's share of a
layer is the real model's, at a third of its cost by default. The depth sets the LM
head's share of a step (the head runs on the same completion tokens on every path, so
padding cannot add to it): printed per shape beside that of the full preset's own
model, Qwen2.5-0.5B, which SmolLM2's shape matches at 21 layers. Variants: ``padded`` ([S, L] rows),
``packed_dense`` (the packed row under transformers' T x T mask: the packed path before
varlen attention), each varlen kernel usable here (``packed_sdpa``; flex and flash need
CUDA and are listed as skipped), and ``shared_prompt`` (the packed row with each group's
prompt once, ``learner.shared``).

Printed per variant: seconds per step, tokens/s (prompt + completion tokens of the batch
/ seconds), the attention FLOPs the kernel spends (query-key pairs it visits: every pair
under a mask, the lower triangle under ``is_causal``; x 4 x heads x head_dim x layers
x 3 for forward and backward, checkpointing's recompute not counted), the process's
peak RSS and its growth during the steps, and the ratio of tokens/s to packed_dense
and to padded. ``--profile N`` runs one more step under ``torch.profiler`` after the
timed ones (not counted in the times) and prints each variant's N operators with the
most self CPU time: where a step goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SMOLLM2 = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
    "rope_theta": 100000.0,
}
TINY = {**SMOLLM2, "hidden_size": 64, "intermediate_size": 128, "head_dim": 16}
TINY.update(num_attention_heads=4, num_key_value_heads=2, vocab_size=512)
# The full preset's model (Qwen2.5-0.5B-Instruct's config.json), for head_share only.
QWEN25_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "vocab_size": 151936,
    "num_hidden_layers": 24,
}
VARIANTS = (
    "padded",
    "packed_dense",
    "packed_sdpa",
    "packed_flex",
    "packed_flash",
    "shared_prompt",
)


LEARNER_KEYS = ("mb_max_tokens", "batch_size", "gradient_checkpointing")


@dataclass(frozen=True)
class Shape:
    preset: str  # whose learner settings (LEARNER_KEYS) the shape runs with
    prompts: int
    group: int
    prompt_len: tuple[int, int]
    new_tokens: tuple[int, int]  # completions drawn from [lo, hi]

    def actor(self) -> Any:
        """The preset's actor settings."""
        from grpo_plug import config as cfgmod

        return cfgmod.load(preset=self.preset).actor

    def overrides(self) -> list[str]:
        """The preset's learner settings, as overrides of the cpu preset."""
        actor = self.actor()
        return [f"actor.{k}={str(getattr(actor, k)).lower()}" for k in LEARNER_KEYS]


SHAPES = {
    "cpu": Shape("cpu", 8, 8, (60, 80), (32, 64)),
    "full": Shape("full", 8, 4, (100, 200), (200, 400)),
}


def batch_for(shape: Shape, vocab: int, scale: float) -> Any:
    """The shape's batch (``scale`` shrinks the lengths, for --tiny); seeded."""
    from gpu_check import synthetic_batch

    plen = (max(2, int(shape.prompt_len[0] * scale)), max(3, int(shape.prompt_len[1] * scale)))
    hi = max(2, int(shape.new_tokens[1] * scale))
    return synthetic_batch(shape.prompts, shape.group, hi, vocab, prompt_len=plen)


def attention_pairs(variant: str, mbs: list[Any], max_seqs: int) -> float:
    """Query-key pairs the kernel visits over the micro-batches (forward, one layer)."""
    pairs = 0.0
    for mb in mbs:
        lens = np.diff(mb.cu_seqlens.astype(np.int64)).astype(np.float64)
        if variant == "packed_dense":
            pairs += float(lens.sum()) ** 2  # a mask: every pair of the row
        elif variant == "padded":  # chunks of max_seqs rows, padded to the longest
            for s in range(0, len(lens), max_seqs):
                chunk = lens[s : s + max_seqs]
                pairs += len(chunk) * float(chunk.max()) ** 2
        elif variant == "shared_prompt":
            pairs += _shared_prompt_pairs(mb)
        else:  # varlen, causal
            pairs += float((lens * (lens + 1) / 2).sum())
    return pairs


def _shared_prompt_pairs(mb: Any) -> float:
    """Each group's prompt once, causal; each completion against prompt + itself (a
    lower-right mask, every pair visited), as ``learner.shared`` lays the row out."""
    from grpo_plug.learner.shared import shared_row

    pairs = 0.0
    for _, p, comps in shared_row(mb).groups:
        pairs += p * (p + 1) / 2 + sum(c * (p + c) for _, c in comps)
    return pairs


def head_share(model_cfg: dict[str, Any], layers: int, batch: Any, ckpt: bool) -> float:
    """The LM head's share of a step's matmul FLOPs (arithmetic, packed tokens): the
    layers run on every token (4 passes with checkpointing, else 3), the head on the
    completion tokens (4 passes: forward, recomputation, two gradients)."""
    h, hd = model_cfg["hidden_size"], model_cfg["head_dim"]
    q, kv = model_cfg["num_attention_heads"] * hd, model_cfg["num_key_value_heads"] * hd
    per_token = 2 * (2 * h * q + 2 * h * kv + 3 * h * model_cfg["intermediate_size"])
    completions = sum(len(c) for c in batch.completions)
    tokens = completions + sum(len(p) for p in batch.prompts)
    body = per_token * layers * tokens * (4 if ckpt else 3)
    head = 2 * h * model_cfg["vocab_size"] * completions * 4
    return float(head / (head + body))


def rss_gib() -> tuple[float, float]:
    """(this process's resident memory now, its peak so far), GiB."""
    with open("/proc/self/statm") as fh:
        now = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return now / 2**30, peak / 2**30


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One variant in this process: build the learner, time its steps."""
    import torch

    from gpu_check import time_steps
    from grpo_plug import config as cfgmod
    from grpo_plug.learner import Learner, dist

    torch.set_num_threads(args.threads or torch.get_num_threads())
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    info = dist.from_env(cuda=False)
    shape, model_cfg = SHAPES[args.shape], json.loads(Path(args.model, "config.json").read_text())
    overrides = [f"actor.path={args.model}", f"actor.attention={args.variant}", *shape.overrides()]
    if args.ckpt is not None:
        overrides.append(f"actor.gradient_checkpointing={args.ckpt}")
    cfg = cfgmod.load(preset="cpu", overrides=[*overrides, "actor.dtype=float32"])
    batch = batch_for(shape, model_cfg["vocab_size"], args.scale)
    learner = Learner(cfg, 100, info)
    before, _ = rss_gib()
    secs, _ = time_steps(learner, batch, args.repeats)
    top = profile_step(learner, batch, args.profile) if args.profile else []
    _, peak = rss_gib()
    per_rank, _ = learner.pack(batch, batch.kept)  # the learner's own micro-batches
    pairs = attention_pairs(learner.attention, per_rank[0], cfg.actor.batch_size)
    width = model_cfg["num_attention_heads"] * model_cfg["head_dim"]
    tokens = sum(len(p) + len(c) for p, c in zip(batch.prompts, batch.completions, strict=True))
    return {
        "shape": args.shape,
        "variant": learner.attention,
        "ckpt": cfg.actor.gradient_checkpointing,
        "seconds": secs,
        "tokens": tokens,
        "tokens_per_s": tokens / secs,
        "attn_gflop": pairs * 4 * width * model_cfg["num_hidden_layers"] * 3 / 1e9,
        "peak_rss_gib": peak,
        "step_rss_gib": peak - before,
        "micro_batches": len(per_rank[0]),
        "top_ops": top,
    }


def profile_step(learner: Any, batch: Any, n: int) -> list[tuple[str, float, int]]:
    """(operator, self CPU seconds, calls) of one profiled train step, the ``n`` biggest."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        learner.train_step(batch)
    ops = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:n]
    return [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in ops]


def build_model(shape: dict[str, Any], layers: int, path: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**shape, num_hidden_layers=layers)).save_pretrained(path)
    return path


def child(args: argparse.Namespace, shape: str, variant: str, ckpt: str | None) -> dict[str, Any]:
    """Run one variant in a fresh process; its result, or why it did not run."""
    cmd = [sys.executable, __file__, "--one", variant, "--shape", shape, "--model", args.model]
    cmd += ["--repeats", str(args.repeats), "--scale", str(args.scale)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    cmd += ["--profile", str(args.profile)] if args.profile else []
    cmd += ["--ckpt", ckpt] if ckpt else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"shape": shape, "variant": variant, "ckpt": ckpt, "error": last}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def table(rows: list[dict[str, Any]]) -> None:
    head = f"{'shape':<5} {'variant':<14} {'ckpt':<5} {'s/step':>7} {'tok/s':>7} "
    head += f"{'attn GFLOP':>10} {'peak GiB':>8} {'step GiB':>8} {'vs dense':>8} {'vs padded':>9}"
    print(head)
    base = {(r["shape"], r["ckpt"], r["variant"]): r for r in rows if "error" not in r}
    for r in rows:
        if "error" in r:
            print(f"{r['shape']:<5} {r['variant']:<14} skipped: {r['error']}")
            continue
        ratios = []
        for ref in ("packed_dense", "padded"):
            other = base.get((r["shape"], r["ckpt"], ref))
            ratios.append(f"x{r['tokens_per_s'] / other['tokens_per_s']:.2f}" if other else "-")
        print(
            f"{r['shape']:<5} {r['variant']:<14} {str(r['ckpt']).lower():<5} "
            f"{r['seconds']:7.2f} {r['tokens_per_s']:7.0f} {r['attn_gflop']:10.1f} "
            f"{r['peak_rss_gib']:8.2f} {r['step_rss_gib']:8.2f} {ratios[0]:>8} {ratios[1]:>9}",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=["cpu", "full", "both"], default="both")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per variant (median)")
    ap.add_argument("--layers", type=int, default=10, help="of SmolLM2-135M's 30 layers")
    ap.add_argument("--ckpt", choices=["true", "false"], help="default: the preset's setting")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--variants", help="comma-separated variants, run in this order (default: all)")
    ap.add_argument("--tiny", action="store_true", help="a tiny model and short documents")
    ap.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print each variant's top N operators"
    )
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        args.variant = args.one
        print(json.dumps(run_one(args)), flush=True)
        return
    if args.tiny:
        args.scale = 0.25
    shapes = ["cpu", "full"] if args.shape == "both" else [args.shape]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        layers = 2 if args.tiny else args.layers
        args.model = str(build_model(TINY if args.tiny else SMOLLM2, layers, Path(tmp) / "m"))
        print(f"model: SmolLM2-135M's shape, {layers} layers{' (tiny)' if args.tiny else ''}")
        model_cfg = json.loads(Path(args.model, "config.json").read_text())
        for shape in shapes:
            ckpt = args.ckpt or str(SHAPES[shape].actor().gradient_checkpointing)
            variants = list(VARIANTS)
            batch = batch_for(SHAPES[shape], model_cfg["vocab_size"], args.scale)
            on = ckpt.lower() == "true"
            print(
                f"{shape}: the LM head is {head_share(model_cfg, layers, batch, on):.0%} of a "
                "step's matmul FLOPs (Qwen2.5-0.5B, the full preset's model: "
                f"{head_share(QWEN25_05B, QWEN25_05B['num_hidden_layers'], batch, on):.0%})"
            )
            if args.variants:  # in the order given: alternate it across runs against drift
                variants = [v for v in args.variants.split(",") if v in variants]
            for variant in variants:
                rows.append(child(args, shape, variant, args.ckpt))
                print(json.dumps(rows[-1]), flush=True)
    print()
    table(rows)
    for r in rows:
        if r.get("top_ops"):
            print(f"\n{r['shape']} {r['variant']}: operators by self CPU time, one profiled step")
            for name, secs, calls in r["top_ops"]:
                print(f"  {secs:8.2f} s {calls:7d} calls  {name[:70]}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
