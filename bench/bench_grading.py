"""Grading throughput: grpo_plug's Rust grader vs math-verify vs a pure-Python regex grader.

    .venv/bin/python bench/bench_grading.py [--n 100000] [--mv-n 2000] [--repeats 5] [--seed 0]

Builds --n realistic completions (seeded), 8 per prompt as in a GRPO rollout (the golds
list repeats the prompt's answer object 8 times), from the GSM8K reference solutions in
the package's bundled copy of GSM8K: the solution's working with its calculator annotations removed,
ending in a boxed answer, "The answer is x.", a `#### x` line, a Markdown "Final
Answer" block, plain prose whose last number is the answer, commas, dollars, decimals,
fractions, hedged boxes, truncated completions and wrong numbers. Each completion has
an intended label (1 when its final answer equals the gold). Golds are the raw GSM8K
answer fields ("... #### 72") for grpo_plug and the regex grader (which caches its
parse of repeated golds, as grpo_plug does); math-verify gets the bare gold number
(easier for it).

Measures completions/s (median of --repeats runs) for `grpo_plug.core.grade` with 2
threads and 1 thread, and for the regex grader on all items; math-verify
(`parse` + `verify`) on a --mv-n subsample, scaled to per-item throughput. Prints
figures and ratios side by side (goals: >= 100x math-verify, >= 10x regex), agreement
of each grader with the intended labels, and agreement with math-verify on the
subsample.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import json
import os
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from grpo_plug import core
from grpo_plug.data.tasks import bundled_gsm8k

# --------------------------------------------------------------------------------------
# Completions
# --------------------------------------------------------------------------------------

CALC = re.compile(r"<<[^>]*>>")


def load_answers() -> list[str]:
    answers = []
    for split in ("train", "test"):
        with gzip.open(bundled_gsm8k(split), "rt", encoding="utf-8") as fh:
            answers.extend(json.loads(line)["answer"] for line in fh if line.strip())
    return answers


def gold_number(answer: str) -> int:
    return int(answer.rsplit("####", 1)[1].strip().replace(",", ""))


def working(answer: str) -> str:
    return CALC.sub("", answer.rsplit("####", 1)[0]).strip()


FORMATS: list[tuple[str, int, Callable[[str, int, random.Random], tuple[str, int]]]] = []


def fmt(name: str, weight: int) -> Callable[..., object]:
    def deco(fn: Callable[[str, int, random.Random], tuple[str, int]]) -> object:
        FORMATS.append((name, weight, fn))
        return fn

    return deco


@fmt("boxed", 20)
def _boxed(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    return f"{w}\nSo the final answer is $\\boxed{{{x}}}$.", 1


@fmt("answer_is", 12)
def _answer_is(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    return f"{w}\nThe answer is {x}.", 1


@fmt("hashes", 8)
def _hashes(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    return f"{w}\n#### {x}", 1


@fmt("final_answer_md", 6)
def _final_md(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    return f"{w}\n\n**Final Answer**\n\\[\n\\boxed{{{x}}}\n\\]", 1


@fmt("plain_cot", 8)
def _plain(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    return f"{w}\nAltogether that makes {x} in total.", 1


@fmt("commas_dollars", 8)
def _commas(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    if rng.random() < 0.5:
        return f"{w}\nThe answer is ${x:,}.", 1
    return f"{w}\nTherefore the total is $\\boxed{{\\${x:,}}}$", 1


@fmt("decimal_units", 5)
def _decimal(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    return f"{w}\nFinal answer: \\boxed{{{x}.00 \\text{{ dollars}}}}", 1


@fmt("fraction", 5)
def _fraction(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    k = rng.randint(2, 9)
    return f"{w}\nHence $\\boxed{{\\frac{{{x * k}}}{{{k}}}}}$.", 1


@fmt("wrong", 20)
def _wrong(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    y = x + rng.choice([-10, -2, -1, 1, 2, 10, x if x else 3])
    template = rng.choice(
        ["{w}\nSo the answer is $\\boxed{{{y}}}$.", "{w}\nThe answer is {y}.", "{w}\n#### {y}"]
    )
    return template.format(w=w, y=y), 0


@fmt("hedged", 4)
def _hedged(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    return f"{w}\nThe answer is \\boxed{{{x} \\text{{ or }} {x + 1}}}", 0


@fmt("truncated", 4)
def _truncated(w: str, x: int, rng: random.Random) -> tuple[str, int]:
    return w[: max(1, len(w) // 2)], 0


def build(
    n: int, seed: int, group: int = 8
) -> tuple[list[str], list[str], list[str], np.ndarray, list[str]]:
    """n completions in groups of `group` per prompt, as a GRPO rollout produces them:
    the golds list repeats the same answer object for the whole group."""
    answers = load_answers()
    rng = random.Random(seed)
    names = [f[0] for f in FORMATS]
    weights = [f[1] for f in FORMATS]
    fns = {f[0]: f[2] for f in FORMATS}
    completions, golds, kinds, labels, bare = [], [], [], [], []
    while len(completions) < n:
        a = answers[rng.randrange(len(answers))]
        x = gold_number(a)
        w = working(a)
        for _ in range(min(group, n - len(completions))):
            kind = rng.choices(names, weights)[0]
            text, label = fns[kind](w, x, rng)
            completions.append(text)
            golds.append(a)
            kinds.append(kind)
            labels.append(label)
            bare.append(str(x))
    return completions, golds, kinds, np.array(labels, dtype=np.float32), bare


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------

BOX = re.compile(r"\\(?:boxed|fbox)\{([^{}]*)\}")
HASH = re.compile(r"####\s*([^\n]*)")
ANCHOR = re.compile(r"(?:final answer|the answer is|answer:)[\s:*$]*(-?[\d,]*\.?\d+)", re.I)
NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def regex_extract(text: str) -> float | None:
    """A straightforward regex extractor: box, ####, anchor, else last number."""
    boxes = BOX.findall(text)
    if boxes:
        span = boxes[-1]
    else:
        hashes = HASH.findall(text)
        if hashes:
            span = hashes[-1]
        else:
            anchors = ANCHOR.findall(text)
            span = anchors[-1] if anchors else text
    nums = NUM.findall(span)
    if not nums:
        return None
    try:
        return float(nums[-1].replace(",", ""))
    except ValueError:
        return None


def regex_grade(completions: Sequence[str], golds: Sequence[str]) -> np.ndarray:
    gold_cache = functools.lru_cache(maxsize=64)(regex_extract)  # golds repeat per group
    out = np.zeros(len(completions), dtype=np.float32)
    for i, (c, g) in enumerate(zip(completions, golds, strict=True)):
        p, t = regex_extract(c), gold_cache(g)
        if p is not None and t is not None and abs(p - t) <= 1e-6 * max(1.0, abs(t)):
            out[i] = 1.0
    return out


def math_verify_grade(completions: Sequence[str], bare_golds: Sequence[str]) -> np.ndarray:
    from math_verify import parse, verify

    out = np.zeros(len(completions), dtype=np.float32)
    for i, (c, g) in enumerate(zip(completions, bare_golds, strict=True)):
        out[i] = 1.0 if verify(parse(g), parse(c)) else 0.0
    return out


# --------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    times, result = [], np.zeros(0, dtype=np.float32)
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


Row = tuple[str, int, float, np.ndarray]  # grader, items, seconds, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="completions to grade")
    ap.add_argument("--mv-n", type=int, default=2_000, help="math-verify subsample size")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    completions, golds, kinds, labels, bare = build(args.n, args.seed)
    mean_chars = statistics.fmean(len(c) for c in completions)
    print(
        f"bench_grading: {len(completions):,} completions (seed {args.seed}, mean "
        f"{mean_chars:.0f} chars) from GSM8K answers; {os.cpu_count()} CPUs"
    )
    print("formats: " + ", ".join(f"{k} {v:,}" for k, v in sorted(Counter(kinds).items())))

    rows = time_rust(completions, golds, args.repeats)
    py_repeats = max(1, min(3, args.repeats))
    secs, py_scores = timed(lambda: regex_grade(completions, golds), py_repeats)
    rows.append(("python regex", args.n, secs, py_scores))
    sub = random.Random(args.seed + 1).sample(range(args.n), min(args.mv_n, args.n))
    sub_c = [completions[i] for i in sub]
    sub_b = [bare[i] for i in sub]
    math_verify_grade(sub_c[:20], sub_b[:20])  # warm-up (imports, sympy caches)
    t0 = time.perf_counter()
    mv_scores = math_verify_grade(sub_c, sub_b)
    rows.append(("math-verify (subsample)", len(sub), time.perf_counter() - t0, mv_scores))
    report(rows, labels, sub)
    disagreements(rows[0][3], mv_scores, kinds, labels, sub)


def time_rust(completions: list[str], golds: list[str], repeats: int) -> list[Row]:
    """The Rust grader on 2 threads, then 1 (the same scores both times)."""
    before = core.get_num_threads()
    rows: list[Row] = []
    for threads in (2, 1):
        core.set_num_threads(threads)
        core.grade(completions[:1000], golds[:1000])  # build the pool
        secs, scores = timed(lambda: core.grade(completions, golds), repeats)
        name = f"grpo_plug ({threads} thread{'s' if threads > 1 else ''})"
        rows.append((name, len(completions), secs, scores))
    core.set_num_threads(before)
    assert np.array_equal(rows[0][3], rows[1][3]), "thread count changed results"
    return rows


def report(rows: list[Row], labels: np.ndarray, sub: list[int]) -> None:
    """The table (rate, the Rust grader's ratio, agreement with the labels), speedups."""
    n_all = rows[0][1]
    rust_rate = n_all / rows[0][2]
    print()
    header = ("grader", "items", "items/s", "us/item", "rust 2thr is", "label agr.")
    print("{:<26}{:>9}{:>14}{:>10}{:>15}{:>12}".format(*header))
    for name, n, secs, scores in rows:
        rate = n / secs
        lab = labels[sub] if n != n_all else labels
        agree = float(np.mean(scores == lab)) * 100
        print(
            f"{name:<26}{n:>9,}{rate:>14,.0f}{1e6 / rate:>10.2f}"
            f"{rust_rate / rate:>14.1f}x{agree:>11.2f}%"
        )
    mv_rate = rows[3][1] / rows[3][2]
    py_rate = n_all / rows[2][2]
    print()
    print(f"speedup vs math-verify: {rust_rate / mv_rate:,.0f}x (goal >= 100x)")
    print(f"speedup vs python regex: {rust_rate / py_rate:,.1f}x (goal >= 10x)")
    print(f"scaling 1 -> 2 threads: {rows[1][2] / rows[0][2]:.2f}x")


def disagreements(
    rust_scores: np.ndarray,
    mv_scores: np.ndarray,
    kinds: list[str],
    labels: np.ndarray,
    sub: list[int],
) -> None:
    """Where the Rust grader differs from math-verify, and from the intended labels."""
    rs = rust_scores[sub]
    agree = float(np.mean(rs == mv_scores)) * 100
    print(f"agreement with math-verify on the {len(sub):,}-item subsample: {agree:.2f}%")
    by_kind = Counter(
        (kinds[i], int(a), int(b)) for i, a, b in zip(sub, rs, mv_scores, strict=True) if a != b
    )
    if by_kind:
        print(
            "  disagreements (format, rust, math-verify): "
            + ", ".join(f"({k}, {a}, {b}) x{c}" for (k, a, b), c in sorted(by_kind.items()))
        )
    by_label = Counter((kinds[i], int(s)) for i, s in enumerate(rust_scores) if s != labels[i])
    if by_label:
        print(
            "  grpo_plug vs intended label (format, grpo_plug): "
            + ", ".join(f"({k}, {s}) x{c}" for (k, s), c in sorted(by_label.items()))
        )


if __name__ == "__main__":
    main()
