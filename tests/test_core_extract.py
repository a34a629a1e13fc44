"""grpo_plug.core: answer extraction and grading through the Python bindings."""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpo_plug import core

EXAMPLES = [
    ("The answer is 1,000.", "1000"),
    ("so \\boxed{\\frac{1}{2}}", "1/2"),
    ("\\boxed{\\dfrac{3}{4}}", "3/4"),
    ("\\boxed{\\frac12}", "1/2"),
    ("\\boxed{3 1/2}", "7/2"),
    ("\\boxed{3\\frac{1}{2}}", "7/2"),
    ("\\boxed{.5}", "0.5"),
    ("\\boxed{\\$1,234.50}", "1234.5"),
    ("\\boxed{€5}", "5"),
    ("\\boxed{5 dollars}", "5"),
    ("\\boxed{12\\text{ apples}}", "12"),
    ("\\boxed{90^\\circ}", "90"),
    ("\\boxed{90^{\\circ}}", "90"),
    ("\\boxed{50\\%}", "50"),
    ("\\boxed{\\left(7\\right)}", "7"),
    ("\\boxed{x = 5}", "5"),
    ("\\boxed{2+3=5}", "5"),
    ("\\boxed{2 \\times 3 + 2^{3}}", "14"),
    ("\\boxed{−５}", "-5"),
    ("\\fbox{9}", "9"),
    ("work\n#### 72", "72"),
    ("#### Step 1\nThe answer is 12.", "12"),
    ("Final Answer: 7", "7"),
    ("The answer is 2+3=5.", "5"),
    ("So she has 5 + 3 = 8 apples.", "8"),
    ("It is 5.", "5"),
    ("\\boxed{18 and 20}", None),
    ("\\boxed{18, 20}", None),
    ("\\boxed{12,34}", None),
    ("\\boxed{inf}", None),
    ("\\boxed{NaN}", None),
    ("\\boxed{0x1F}", None),
    ("\\boxed{1_000}", None),
    ("\\boxed{1/0}", None),
    ("\\boxed{2^{100000}}", None),
    ("\\boxed{" + "9" * 60 + "}", None),
    ("no numbers here", None),
    ("", None),
]


@pytest.mark.parametrize(("text", "want"), EXAMPLES)
def test_extract_examples(text: str, want: str | None) -> None:
    assert core.extract_answer(text) == want


def test_grade_examples() -> None:
    completions = [
        "\\boxed{72}",
        "The answer is 73.",
        "\\boxed{50\\%}",
        "\\boxed{50\\%}",
        "\\boxed{\\frac{1}{3}}",
        "\\boxed{1000001}",
        "nothing",
        "\\boxed{5}",
    ]
    golds = ["a\n#### 72", "72", "0.5", "50", "0.333333333", "1000000", "1", "not a number"]
    got = core.grade(completions, golds)
    assert got.dtype == np.float32
    assert got.tolist() == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert core.grade([], []).shape == (0,)
    assert core.grade(("\\boxed{1}",), ("1",)).tolist() == [1.0]


def test_literal_only_refuses_answers_computed_in_a_box() -> None:
    copied = ["\\boxed{40 + 49}", "\\boxed{34 * 29}", "\\boxed{28 - 30}", "\\boxed{48/2}"]
    golds = ["89", "986", "-2", "24"]
    assert core.grade(copied, golds).tolist() == [1.0] * 4
    assert core.grade(copied, golds, literal_only=True).tolist() == [0.0] * 4
    stated = ["\\boxed{89}", "40 + 49 = 89", "\\boxed{7/2}", "The answer is -2."]
    assert core.grade(stated, ["89", "89", "3.5", "-2"], literal_only=True).tolist() == [1.0] * 4


def test_arith_task_rewards_refuse_the_copied_question() -> None:
    from grpo_plug.builtin.rewards import math_accuracy
    from grpo_plug.builtin.tasks import ArithTask
    from grpo_plug.config import DatasetConfig
    from grpo_plug.trainer import literal_answers

    task = ArithTask(DatasetConfig(task="arith", arith_style="plain", arith_size=4), seed=1)
    assert literal_answers(task)
    ex = task.load()[0]
    expr = ex.question.removeprefix("What is ").removesuffix("?")
    texts = [f"\\boxed{{{expr}}}", f"\\boxed{{{ex.gold}}}"]
    got = math_accuracy([ex.question] * 2, texts, golds=[ex.gold] * 2, literal_answers=True)
    assert got == [0.0, 1.0]


def test_grade_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match=r"completions\[1\]"):
        core.grade(["ok", 3], ["1", "2"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"golds\[0\]"):
        core.grade(["ok"], [None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="length"):
        core.grade(["a", "b"], ["1"])
    with pytest.raises(TypeError):
        core.grade("abc", "abc")
    with pytest.raises(TypeError):
        core.extract_answer(5)  # type: ignore[arg-type]


def test_generator_inputs_are_accepted() -> None:
    got = core.grade((f"\\boxed{{{i}}}" for i in range(3)), iter(["0", "1", "3"]))  # type: ignore[arg-type]
    assert got.tolist() == [1.0, 1.0, 0.0]


HOSTILE = [
    "a" * 1_000_000 + " 42",
    "{" * 10_000 + "\\boxed{" * 10_000 + "}" * 5_000,
    "\\boxed{" + "(" * 10_000 + "5" + ")" * 10_000 + "}",
    "\\boxed{" + "-" * 100_000 + "5}",
    "1," * 300_000,
    "9" * 1_000_000,
    "answer " * 100_000,
    "#### x\n" * 100_000,
    "lone \ud800 surrogate \udfff 7",
    "nul \x00 bytes \x00 8",
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: f"{len(t)}-chars")
def test_hostile_inputs_are_bounded(text: str) -> None:
    start = time.perf_counter()
    core.extract_answer(text)
    core.grade([text, text], [text, "#### 7"])
    assert time.perf_counter() - start < 5.0  # generous sanity bound


def test_surrogates_and_nul() -> None:
    assert core.extract_answer("lone \ud800 surrogate 7") == "7"
    assert core.extract_answer("\\boxed{\x008}") == "8"
    assert core.grade(["\ud800 \\boxed{3}"], ["3 \udfff"]).tolist() == [1.0]


@given(st.integers(min_value=-(10**30), max_value=10**30), st.sampled_from(range(6)))
@settings(max_examples=200, deadline=None)
def test_integer_formats_round_trip(n: int, fmt: int) -> None:
    text = [
        f"\\boxed{{{n}}}",
        f"\\boxed{{{n:,}}}",
        f"The answer is {n:,}.",
        f"work 1 + 2 = 3\n#### {n}",
        f"so she has {n} apples",
        f"**Final Answer:** ${n}$",
    ][fmt]
    assert core.extract_answer(text) == str(n)
    assert core.grade([text, text], [str(n), f"#### {n + 1}"]).tolist() == [1.0, 0.0]


@given(st.fractions(max_denominator=10_000).filter(lambda f: abs(f.numerator) < 10**9))
@settings(max_examples=200, deadline=None)
def test_fractions_round_trip(frac: object) -> None:
    from fractions import Fraction

    assert isinstance(frac, Fraction)
    text = f"\\boxed{{\\frac{{{frac.numerator}}}{{{frac.denominator}}}}}"
    want = str(frac.numerator) if frac.denominator == 1 else f"{frac.numerator}/{frac.denominator}"
    assert core.extract_answer(text) == want
    assert core.grade([text], [want]).tolist() == [1.0]


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_never_raises(text: str) -> None:
    answer = core.extract_answer(text)
    if answer is not None:
        assert core.extract_answer(f"\\boxed{{{answer}}}") == answer
    assert core.grade([text], [text]).shape == (1,)


def test_thread_count_does_not_change_grades() -> None:
    completions = [f"step {i}\nThe answer is {i % 7}." for i in range(20_000)]
    golds = [f"#### {i % 5}" for i in range(20_000)]
    before = core.get_num_threads()
    try:
        core.set_num_threads(1)
        assert core.get_num_threads() == 1
        one = core.grade(completions, golds)
        core.set_num_threads(2)
        two = core.grade(completions, golds)
        core.set_num_threads(0)
        assert core.get_num_threads() >= 1
        default = core.grade(completions, golds)
    finally:
        core.set_num_threads(before)
    assert np.array_equal(one, two)
    assert np.array_equal(one, default)
    with pytest.raises(ValueError):
        core.set_num_threads(-1)


def test_buffers_reused_between_calls_do_not_leak() -> None:
    core.grade(["\\boxed{1}" * 1000] * 500, ["1"] * 500)
    assert core.grade(["\\boxed{2}", "x 3"], ["2", "4"]).tolist() == [1.0, 0.0]
    golds = ["#### 5"] * 3  # the same object repeated, as in a GRPO group
    assert core.grade(["5", "6", "The answer is 5."], golds).tolist() == [1.0, 0.0, 1.0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pool_survives_fork() -> None:
    core.grade(["\\boxed{1}"] * 10_000, ["1"] * 10_000)  # start the pool in the parent
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.queues.Queue[list[float]] = ctx.Queue()
    child = ctx.Process(target=_grade_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("grading in a forked child hung")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == [1.0, 0.0]


def _grade_in_child(queue: multiprocessing.queues.Queue[list[float]]) -> None:
    scores = core.grade(["\\boxed{1}"] * 20_000 + ["2"], ["1"] * 20_000 + ["3"])
    queue.put([float(scores[0]), float(scores[-1])])
