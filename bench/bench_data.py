"""Advantages and micro-batch packing: grpo_plug's Rust core vs a NumPy / pure-Python reference.

    .venv/bin/python bench/bench_data.py [--seqs 8192] [--tokens 512] [--group 8]
                                         [--max-tokens 16384] [--ranks 2] [--repeats 5]

Workload: --seqs sequences in groups of --group sharing a prompt, --tokens tokens per
sequence on average (prompt 1/4, completion 3/4, both varying), binary rewards.

* advantages: `core.group_advantages` for grpo, dr_grpo, rloo and grpo with batch
  normalisation, vs a vectorised NumPy implementation of the same formulas;
* packing: `core.pack_microbatches` vs a reference of the same algorithm (first-fit
  decreasing with NumPy's argmax over bin capacities, heapq splits, greedy rank
  assignment; arrays built with NumPy), with token ids and log-probs given as Python
  lists (what an HTTP rollout backend returns) and as NumPy arrays.

A second reference writes the same algorithms as straightforward pure Python (loops
and lists, one ``np.array`` per output). All sides must give identical arrays
(advantages: equal after float32 rounding up to a reported max difference). Prints
medians of --repeats runs (pure Python: half as many) and ratios (goal >= 10x).
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from grpo_plug import core

# --------------------------------------------------------------------------------------
# Reference implementations
# --------------------------------------------------------------------------------------


def ref_advantages(
    rewards: np.ndarray, g: int, mode: str, eps: float = 1e-6, normalize_batch: bool = False
) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64).reshape(-1, g)
    mean = r.mean(axis=1, keepdims=True)
    uniform = (r == r[:, :1]).all(axis=1, keepdims=True)
    centred = r - mean
    if mode == "rloo":
        centred = centred * (g / (g - 1))
    elif mode == "grpo" and not normalize_batch:
        centred = centred / (r.std(axis=1, ddof=1, keepdims=True) + eps)
    centred = np.where(uniform, 0.0, centred)
    if normalize_batch:
        std = centred.std(ddof=1)
        centred = np.zeros_like(centred) if std == 0 else centred / (std + eps)
    return centred.reshape(-1).astype(np.float32)


def ref_plan(lengths: Sequence[int], max_tokens: int, n_ranks: int) -> list[list[list[int]]]:
    n = len(lengths)
    order = sorted(range(n), key=lambda i: (-lengths[i], i))
    caps = np.full(n, max_tokens + 1, dtype=np.int64)
    bins: list[list[int]] = []
    tokens: list[int] = []
    for i in order:
        need = lengths[i] + 1
        window = caps[: len(bins) + 1]
        k = int(np.argmax(window >= need))
        if window[k] < need:
            k = len(bins)
        if k == len(bins):
            bins.append([])
            tokens.append(0)
        bins[k].append(i)
        tokens[k] += lengths[i]
        caps[k] = max_tokens - tokens[k] + 1 if tokens[k] <= max_tokens else 0
    per_rank = -(-len(bins) // n_ranks)
    target = per_rank * n_ranks
    if n < target:
        raise ValueError("infeasible")
    heap = [(-tokens[k], k) for k in range(len(bins)) if len(bins[k]) >= 2]
    heapq.heapify(heap)
    while len(bins) < target:
        _, k = heapq.heappop(heap)
        items = bins[k]
        a, b = [items[0]], [items[1]]
        ta, tb = lengths[items[0]], lengths[items[1]]
        for i in items[2:]:
            if tb < ta:
                b.append(i)
                tb += lengths[i]
            else:
                a.append(i)
                ta += lengths[i]
        new_k = len(bins)
        bins[k], tokens[k] = a, ta
        bins.append(b)
        tokens.append(tb)
        if len(a) >= 2:
            heapq.heappush(heap, (-ta, k))
        if len(b) >= 2:
            heapq.heappush(heap, (-tb, new_k))
    load = [0] * n_ranks
    plan: list[list[list[int]]] = [[] for _ in range(n_ranks)]
    for k in sorted(range(len(bins)), key=lambda k: (-tokens[k], k)):
        rank = min((r for r in range(n_ranks) if len(plan[r]) < per_rank), key=lambda r: load[r])
        load[rank] += tokens[k]
        plan[rank].append(sorted(bins[k]))
    return plan


def ref_pack(
    prompt_ids: Sequence[Any],
    completion_ids: Sequence[Any],
    completion_logprobs: Sequence[Any],
    advantages: Sequence[float],
    max_tokens: int,
    n_ranks: int,
) -> list[list[tuple[np.ndarray, ...]]]:
    prompts = [np.asarray(p, dtype=np.int64) for p in prompt_ids]
    comps = [np.asarray(c, dtype=np.int64) for c in completion_ids]
    lps = [np.asarray(x, dtype=np.float32) for x in completion_logprobs]
    adv = np.asarray(advantages, dtype=np.float32)
    plens = np.array([len(p) for p in prompts])
    clens = np.array([len(c) for c in comps])
    lengths = (plens + clens).tolist()
    out = []
    for rank in ref_plan(lengths, max_tokens, n_ranks):
        mbs = []
        for seqs in rank:
            idx = np.array(seqs)
            p, c = plens[idx], clens[idx]
            seg = p + c
            cu = np.zeros(len(seqs) + 1, dtype=np.int32)
            np.cumsum(seg, out=cu[1:])
            parts = [a for i in seqs for a in (prompts[i], comps[i])]
            input_ids = np.concatenate(parts)
            position_ids = np.arange(cu[-1], dtype=np.int64) - np.repeat(cu[:-1], seg)
            is_completion = position_ids >= np.repeat(p, seg)
            loss_mask = is_completion.astype(np.float32)
            old_lp = np.zeros(cu[-1], dtype=np.float32)
            old_lp[is_completion] = np.concatenate([lps[i] for i in seqs])
            advs = np.where(is_completion, np.repeat(adv[idx], seg), np.float32(0))
            mbs.append(
                (
                    input_ids,
                    position_ids,
                    loss_mask,
                    old_lp,
                    advs.astype(np.float32),
                    cu,
                    idx.astype(np.int64),
                )
            )
        out.append(mbs)
    return out


def py_advantages(
    rewards: Sequence[float], g: int, mode: str, eps: float = 1e-6, normalize_batch: bool = False
) -> np.ndarray:
    """The same formulas as straightforward Python loops."""
    r = [float(x) for x in rewards]
    out: list[float] = []
    for k in range(0, len(r), g):
        grp = r[k : k + g]
        if all(x == grp[0] for x in grp):
            out += [0.0] * g
            continue
        m = sum(grp) / g
        c = [x - m for x in grp]
        if mode == "rloo":
            c = [x * g / (g - 1) for x in c]
        elif mode == "grpo" and not normalize_batch:
            s = (sum(x * x for x in c) / (g - 1)) ** 0.5
            c = [x / (s + eps) for x in c]
        out += c
    if normalize_batch:
        m = sum(out) / len(out)
        std = (sum((x - m) ** 2 for x in out) / (len(out) - 1)) ** 0.5
        out = [0.0] * len(out) if std == 0 else [x / (std + eps) for x in out]
    return np.array(out, dtype=np.float32)


def py_pack(
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    completion_logprobs: Sequence[Sequence[float]],
    advantages: Sequence[float],
    max_tokens: int,
    n_ranks: int,
) -> list[list[tuple[np.ndarray, ...]]]:
    """The same plan, the arrays built as Python lists (then one np.array each)."""
    lengths = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    out = []
    for rank in ref_plan(lengths, max_tokens, n_ranks):
        mbs = []
        for seqs in rank:
            ids: list[int] = []
            pos: list[int] = []
            mask: list[float] = []
            lps: list[float] = []
            advs: list[float] = []
            cu = [0]
            for i in seqs:
                p, c = prompt_ids[i], completion_ids[i]
                ids += p
                ids += c
                pos += range(len(p) + len(c))
                mask += [0.0] * len(p) + [1.0] * len(c)
                lps += [0.0] * len(p)
                lps += completion_logprobs[i]
                advs += [0.0] * len(p) + [float(advantages[i])] * len(c)
                cu.append(cu[-1] + len(p) + len(c))
            mbs.append(
                (
                    np.array(ids, dtype=np.int64),
                    np.array(pos, dtype=np.int64),
                    np.array(mask, dtype=np.float32),
                    np.array(lps, dtype=np.float32),
                    np.array(advs, dtype=np.float32),
                    np.array(cu, dtype=np.int32),
                    np.array(seqs, dtype=np.int64),
                )
            )
        out.append(mbs)
    return out


# --------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()``; each result is released before the next call, as
    a training step releases its micro-batches (both sides may reuse the memory)."""
    times, result = [], None
    for _ in range(repeats):
        result = None
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def row(name: str, ours: float, ref: float, pyref: float, same: str) -> None:
    """One line, times in ms."""
    print(
        f"{name:<32}{ours * 1e3:>10.3f}{ref * 1e3:>11.3f}{ref / ours:>7.1f}x"
        f"{pyref * 1e3:>12.1f}{pyref / ours:>7.0f}x  {same}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seqs", type=int, default=8192)
    ap.add_argument("--tokens", type=int, default=512, help="mean tokens per sequence")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    w = workload(args)
    print(
        f"bench_data: {args.seqs:,} sequences, {w.total / args.seqs:.0f} tokens each on "
        f"average ({w.total:,} total), groups of {args.group}, max_tokens={args.max_tokens}, "
        f"ranks={args.ranks}; grpo_plug threads={core.get_num_threads()}; "
        f"median of {args.repeats}"
    )
    print(
        f"{'':<32}{'grpo_plug':>10}{'NumPy ref':>11}{'ratio':>8}"
        f"{'Python ref':>12}{'ratio':>8}  same result"
    )
    adv_ratios, adv_py_ratios = bench_advantages(w.rewards, args.group, args.repeats)
    pack_ratios, pack_py_ratios = bench_packing(w, args)
    print(
        f"\nratios vs NumPy: advantages {min(adv_ratios):.1f}-{max(adv_ratios):.1f}x, "
        f"packing {min(pack_ratios):.1f}-{max(pack_ratios):.1f}x;"
        f" vs pure Python: advantages {min(adv_py_ratios):.0f}-{max(adv_py_ratios):.0f}x, "
        f"packing {min(pack_py_ratios):.0f}-{max(pack_py_ratios):.0f}x (goal >= 10x)"
    )


@dataclass
class Workload:
    rewards: np.ndarray
    arrays: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]
    lists: tuple[list[Any], list[Any], list[Any]]  # what an HTTP backend returns
    total: int  # tokens


def workload(args: argparse.Namespace) -> Workload:
    """Binary rewards; prompts (shared by a group) and completions of varying length."""
    rng = np.random.default_rng(args.seed)
    n, g, t = args.seqs, args.group, args.tokens
    rewards = rng.integers(0, 2, size=n).astype(np.float32)
    p_len = np.repeat(rng.integers(t // 8, 3 * t // 8 + 1, size=n // g), g)
    c_len = rng.integers(t // 4, 5 * t // 4 + 1, size=n)
    prompts = [rng.integers(0, 50_000, size=k, dtype=np.int64) for k in p_len]
    comps = [rng.integers(0, 50_000, size=k, dtype=np.int64) for k in c_len]
    lps = [(-rng.exponential(size=k)).astype(np.float32) for k in c_len]
    lists = (as_lists(prompts), as_lists(comps), as_lists(lps))
    return Workload(rewards, (prompts, comps, lps), lists, int(p_len.sum() + c_len.sum()))


def bench_advantages(rewards: np.ndarray, g: int, repeats: int) -> tuple[list[float], list[float]]:
    """One row per estimator; the ratios against NumPy and against pure Python."""
    py_repeats = max(1, repeats // 2)
    ratios, py_ratios = [], []
    for mode, nb in [("grpo", False), ("dr_grpo", False), ("rloo", False), ("grpo", True)]:
        ours, got = median_time(
            lambda m=mode, b=nb: core.group_advantages(rewards, g, mode=m, normalize_batch=b),
            repeats * 20,
        )
        ref, want = median_time(
            lambda m=mode, b=nb: ref_advantages(rewards, g, m, normalize_batch=b),
            repeats * 20,
        )
        pyref, py_want = median_time(
            lambda m=mode, b=nb: py_advantages(rewards, g, m, normalize_batch=b), py_repeats
        )
        diff = float(np.max(np.abs(got - want)))
        py_diff = float(np.max(np.abs(got - py_want)))
        equal = float(np.mean(got == want)) * 100
        same = f"{equal:.2f}% bit-equal to NumPy; max |diff| {diff:.0e} / {py_diff:.0e}"
        row(f"advantages {mode}{' +batch norm' if nb else ''}", ours, ref, pyref, same)
        ratios.append(ref / ours)
        py_ratios.append(pyref / ours)
    return ratios, py_ratios


def bench_packing(w: Workload, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """One row per input kind (lists, arrays); the ratios as for advantages."""
    adv = ref_advantages(w.rewards, args.group, "grpo")
    py_repeats = max(1, args.repeats // 2)
    ratios, py_ratios = [], []
    for kind, (pr, co, lp) in [("lists", w.lists), ("numpy arrays", w.arrays)]:
        ours, got = median_time(
            lambda pr=pr, co=co, lp=lp: core.pack_microbatches(
                pr, co, lp, adv, max_tokens=args.max_tokens, n_ranks=args.ranks
            ),
            args.repeats,
        )
        ref, want = median_time(
            lambda pr=pr, co=co, lp=lp: ref_pack(pr, co, lp, adv, args.max_tokens, args.ranks),
            args.repeats,
        )
        # Pure Python works on lists; given arrays it converts them first.
        pyref, py_want = median_time(
            lambda pr=pr, co=co, lp=lp: py_pack(
                as_lists(pr), as_lists(co), as_lists(lp), adv.tolist(), args.max_tokens, args.ranks
            ),
            py_repeats,
        )
        identical = same_packing(got, want) and same_packing(got, py_want)
        mbs = [len(r) for r in got]
        same = f"{'yes' if identical else 'NO'}; micro-batches per rank {mbs}"
        row(f"pack_microbatches ({kind})", ours, ref, pyref, same)
        ratios.append(ref / ours)
        py_ratios.append(pyref / ours)
    return ratios, py_ratios


def as_lists(rows: Sequence[Any]) -> list[Any]:
    """Rows as Python lists (arrays converted, lists passed through)."""
    return [x.tolist() if isinstance(x, np.ndarray) else x for x in rows]


def same_packing(
    got: list[list[core.MicroBatch]], want: list[list[tuple[np.ndarray, ...]]]
) -> bool:
    """Whether every array of every micro-batch is equal, dtype included."""
    if [len(r) for r in got] != [len(r) for r in want]:
        return False
    for g_rank, w_rank in zip(got, want, strict=True):
        for m, w in zip(g_rank, w_rank, strict=True):
            fields = (
                m.input_ids,
                m.position_ids,
                m.loss_mask,
                m.old_logprobs,
                m.advantages,
                m.cu_seqlens,
                m.seq_indices,
            )
            if not all(
                np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(fields, w, strict=True)
            ):
                return False
    return True


if __name__ == "__main__":
    main()
