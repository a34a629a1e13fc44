"""Rollout speed on the cpu preset's shapes, against this CPU's own compute limit.

    .venv/bin/python bench/bench_rollout.py                  # hf backend, generate(), limit
    .venv/bin/python bench/bench_rollout.py --sglang         # + the real SGLang CPU server
    .venv/bin/python bench/bench_rollout.py --new-tokens 64 256 --repeats 3
    .venv/bin/python bench/bench_rollout.py --hf fp32/dynamic bf16/prealloc --skip-generate

One process measures, side by side: a matmul microbenchmark (the achievable GFLOP/s of
this CPU, fp32 and bf16, large square and decode-shaped), the ``hf`` rollout backend,
plain ``model.generate`` on the same prompts, and, with ``--sglang``, the same requests
through the ``sglang`` backend to a CPU server launched from ``.venv-sglang`` (start-up
time reported, not counted). Prompts are the arith task's, chat-templated as in
training: 8 prompts x 8 samples = 64 sequences, temperature 1. A generated token costs
~2 x parameters FLOP (the tied head counted once: the embedding lookup is free), so
achieved GFLOP/s = tokens/s x 2 x params; the fraction of the limit is against the best
fp32 figure of the microbenchmark. Medians of ``--repeats`` rounds, each round running
every variant once (ratios are against the first ``--hf`` variant, in the same process).
``--hf`` picks the backend's variants: sampling dtype (fp32 = the learner's weights,
bf16 = the sampling copy), KV cache (dynamic = transformers' growing cache, as
before; prealloc = written in place) and, with ``/multinomial``, the former sampler
(``torch.multinomial`` instead of the inverse-CDF draw).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from grpo_plug import config as cfgmod
from grpo_plug.data.prompts import build_prompt
from grpo_plug.models import load_model, load_tokenizer, resolve_model_path
from grpo_plug.plan import native_bf16_cpu
from grpo_plug.plugins import get_host
from grpo_plug.rollout.hf import HFBackend
from grpo_plug.types import GenerationRequest, SamplingParams


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 1.5) -> float:
    """Best GFLOP/s of [m,k] @ [k,n] over ``seconds`` of repeats."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ b
        best = max(best, 2 * m * k * n / (time.perf_counter() - t0) / 1e9)
    return best


def limits(hidden: int, inter: int) -> dict[str, float]:
    out = {}
    for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if dtype == torch.bfloat16 and not native_bf16_cpu():
            # Emulated bf16 runs at ~0.3 GFLOP/s on such CPUs: a 2048^3 product takes
            # about a minute, so only a small one shows how slow it is.
            out[f"{label} 256^3 (not native)"] = matmul_gflops(256, 256, 256, dtype, 0.5)
            continue
        out[f"{label} 2048^3"] = matmul_gflops(2048, 2048, 2048, dtype)
        out[f"{label} decode 64x{hidden}x{inter}"] = matmul_gflops(64, hidden, inter, dtype)
    return out


def prompts(tokenizer: Any, count: int, seed: int) -> list[list[int]]:
    cfg = cfgmod.load(preset="cpu", overrides=[f"train_dataset.max_samples={count}"])
    task = get_host().tasks().get(cfg.train_dataset.task)(cfg.train_dataset, seed)
    return [build_prompt(tokenizer, task, ex) for ex in task.load()[:count]]


def requests(ids: list[list[int]], n: int, new: int, tag: str) -> list[GenerationRequest]:
    sp = SamplingParams(max_new_tokens=new, temperature=1.0)
    return [GenerationRequest(f"{tag}{i}", p, n, sp) for i, p in enumerate(ids)]


def run_backend(gen: Callable[[list[GenerationRequest]], list[list[Any]]], reqs: Any) -> int:
    groups = gen(reqs)
    return sum(len(s.output_ids) for g in groups for s in g)


def run_generate(model: Any, tokenizer: Any, ids: list[list[int]], n: int, new: int) -> int:
    """Plain ``generate``: left-padded batch, each prompt repeated n times."""
    from grpo_plug.padding import pad_batch

    rows = [p for p in ids for _ in range(n)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    x, mask = pad_batch(rows, left=True, pad_id=pad)
    with torch.no_grad():
        out = model.generate(
            input_ids=x,
            attention_mask=mask,
            max_new_tokens=new,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            pad_token_id=pad,
        )
    gen = out[:, x.shape[1] :]
    eos = torch.tensor([tokenizer.eos_token_id])
    total = 0
    for row in gen:  # tokens up to and including the first EOS
        hits = torch.isin(row, eos).nonzero()
        total += int(hits[0]) + 1 if len(hits) else len(row)
    return total


def backend_runner(
    gen: Callable[[list[GenerationRequest]], list[list[Any]]],
    ids: list[list[int]],
    n: int,
    tag: str,
) -> Callable[[int], Callable[[], int]]:
    return lambda new: lambda: run_backend(gen, requests(ids, n, new, tag))


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
VARIANTS = [
    f"{d}/{c}{m}" for d in DTYPES for c in ("dynamic", "prealloc") for m in ("", "/multinomial")
]


def default_variants() -> list[str]:
    """The original backend (the baseline), last version's default, today's default,
    and the bf16 copy where this CPU multiplies bf16 natively."""
    out = ["fp32/dynamic/multinomial", "fp32/prealloc/multinomial", "fp32/prealloc"]
    return out + (["bf16/prealloc"] if native_bf16_cpu() else [])


def timed(fns: dict[str, Callable[[], int]], repeats: int) -> dict[str, tuple[float, float]]:
    """name -> (median tokens/s, median tokens) over ``repeats`` rounds; each round runs
    every variant once, so a change in the machine's load hits them all alike."""
    rates: dict[str, list[float]] = {k: [] for k in fns}
    counts: dict[str, list[int]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            tokens = fn()
            rates[name].append(tokens / (time.perf_counter() - t0))
            counts[name].append(tokens)
    return {k: (statistics.median(rates[k]), statistics.median(counts[k])) for k in fns}


def sglang_runner(model_dir: str, python: str, logs: Path) -> tuple[Any, Any, float]:
    """A launched CPU server and a controller over it; start-up seconds."""
    from grpo_plug.rollout.controller import Limits, RolloutController
    from grpo_plug.rollout.sglang import servers as srv
    from grpo_plug.rollout.sglang.backend import SGLangBackend
    from grpo_plug.rollout.sglang.specs import server_specs

    cfg = cfgmod.load(
        overrides=[
            "rollout.backend=sglang",
            f"sglang.python={Path(python).absolute()}",
            "sglang.device=cpu",
            "sglang.dtype=float32",
            "sglang.max_total_tokens=32768",
            "sglang.mem_fraction_static=0.3",
        ]
    )
    t0 = time.perf_counter()
    (server,) = srv.start(server_specs(cfg, model_dir, logs), timeout=900, progress=print)
    start_s = time.perf_counter() - t0
    backend = SGLangBackend([server.spec.addr], [], dtype="float32", launched=[server])
    ctl = RolloutController(backend, Limits(max_concurrent=64, timeout=900, retries=0))
    return ctl, server, start_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded:smollm2-135m", help="model dir or embedded:")
    ap.add_argument("--new-tokens", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--prompts", type=int, default=8, help="prompts per rollout")
    ap.add_argument("--n", type=int, default=8, help="samples per prompt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sglang", action="store_true", help="also the real SGLang CPU server")
    ap.add_argument("--python", default=".venv-sglang/bin/python", help="SGLang's interpreter")
    ap.add_argument("--skip-generate", action="store_true", help="leave out model.generate")
    ap.add_argument(
        "--hf",
        nargs="+",
        default=None,
        choices=VARIANTS,
        help="hf backend variants, sampling dtype/KV cache[/multinomial: the former "
        "sampler] (the first is the baseline; default: fp32/dynamic/multinomial, the "
        "original backend, then fp32/prealloc/multinomial, fp32/prealloc, and "
        "bf16/prealloc where bf16 is native)",
    )
    args = ap.parse_args()

    torch.manual_seed(0)
    model_dir = resolve_model_path(args.model)
    model = load_model(model_dir, dtype="float32", device="cpu").eval()
    tok = load_tokenizer(model_dir)
    params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    c = model.config
    lim = limits(c.hidden_size, c.intermediate_size)
    print(f"threads {torch.get_num_threads()}  params {params / 1e6:.1f}M")
    for k, v in lim.items():
        print(f"limit  {k:28s} {v:8.1f} GFLOP/s")
    ids = prompts(tok, args.prompts, seed=1)
    runners = hf_runners(args, model, tok, ids)
    ctl = None
    if args.sglang:
        ctl, _server, start_s = sglang_runner(
            model_dir, args.python, Path(tempfile.mkdtemp(prefix="bench-rollout-"))
        )
        print(f"sglang server start-up {start_s:.0f}s (not counted)")
        runners["sglang server"] = backend_runner(ctl.generate, ids, args.n, "s")
    try:
        peak = max(v for k, v in lim.items() if k.startswith("fp32"))
        compare(runners, args.new_tokens, args.repeats, 2 * params, peak)
    finally:
        if ctl is not None:
            ctl.close()  # stops the launched server by PID


def hf_runners(
    args: argparse.Namespace, model: Any, tok: Any, ids: list[list[int]]
) -> dict[str, Callable[[int], Callable[[], int]]]:
    """One runner per ``--hf`` variant, then ``model.generate`` unless skipped."""
    runners: dict[str, Callable[[int], Callable[[], int]]] = {}
    for variant in args.hf or default_variants():
        dtype, cache, *draw = variant.split("/")
        hf = HFBackend(
            model,
            tok,
            max_batch_size=args.prompts * args.n,
            sample_dtype=DTYPES[dtype],
            cache="dynamic" if cache == "dynamic" else "prealloc",
            draw="multinomial" if draw else "cdf",
        )
        runners[f"hf {variant}"] = backend_runner(hf.generate, ids, args.n, "h")
    if not args.skip_generate:
        runners["model.generate"] = lambda new: lambda: run_generate(model, tok, ids, args.n, new)
    return runners


def compare(
    runners: dict[str, Callable[[int], Callable[[], int]]],
    new_tokens: list[int],
    repeats: int,
    flop_per_token: int,
    peak: float,
) -> None:
    """Each runner at each length, warmed up, then timed together; the table."""
    print(f"\n{'rollout':28s} {'new':>4s} {'tokens':>7s} {'tok/s':>8s} {'GFLOP/s':>8s} limit%")
    first = next(iter(runners))
    for new in new_tokens:
        for fn in runners.values():  # warm-up: allocator, oneDNN kernels, bf16 copy
            fn(min(new, 8))()
        results = timed({k: make(new) for k, make in runners.items()}, repeats)
        base = results[first][0]
        for name, (rate, count) in results.items():
            gf = rate * flop_per_token / 1e9
            frac = 100 * gf / peak
            print(
                f"{name:28s} {new:4d} {count:7.0f} {rate:8.1f} {gf:8.1f} {frac:5.1f}%"
                f"  x{rate / base:.2f} vs {first}"
            )


if __name__ == "__main__":
    main()
