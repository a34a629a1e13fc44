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


# The answer forms models write, each rule with accepted and refused cases.
NEW_FORMS = {
    "number words": [
        ("The answer is twelve.", "12"),
        ("\\boxed{twelve}", "12"),
        ("\\boxed{\\text{forty-two}}", "42"),
        ("The answer is one hundred and five.", "105"),
        ("\\boxed{two million three hundred thousand and one}", "2300001"),
        ("The answer is not twelve, it's thirteen.", "13"),
        ("\\boxed{third}", None),
        ("\\boxed{twenty-first}", None),
        ("\\boxed{one third}", None),
        ("\\boxed{twelve or thirteen}", None),
        ("She has twelve apples.", None),
    ],
    "scientific notation": [
        ("\\boxed{1.2e3}", "1200"),
        ("\\boxed{5e2}", "500"),
        ("\\boxed{1.2E+3}", "1200"),
        ("\\boxed{3 \\times 10^{4}}", "30000"),
        ("\\boxed{1.5\\cdot10^3}", "1500"),
        ("The answer is 1.2e3.", "1200"),
        ("The answer is 3 \\times 10^{4}.", "30000"),
        ("\\boxed{1e400}", None),
        ("\\boxed{3 \\times 10^{200}}", None),
        ("The answer is 3 \\times 10^{400}.", None),
        ("\\boxed{3e4f}", None),
    ],
    "prose in a box": [
        ("\\boxed{She needs 18 more}", "18"),
        ("\\boxed{\\text{The answer is } 18}", "18"),
        ("\\boxed{18 \\text{ (apples)}}", "18"),
        ("\\boxed{\\text{Maria makes } \\$18 \\text{ per day}}", "18"),
        ("\\boxed{She needs eighteen more}", "18"),
        ("\\boxed{She needs 18 more, not 20}", None),
        ("\\boxed{18 \\text{ or } 19}", None),
        ("\\boxed{x^2}", None),
    ],
    "spaced thousands": [
        ("\\boxed{1 000 000}", "1000000"),
        ("\\boxed{1 250}", "1250"),
        ("\\boxed{1\u00a0250}", "1250"),
        ("\\boxed{1\u202f250}", "1250"),
        ("\\boxed{1\u2009250}", "1250"),
        ("The answer is 1 000 000.", "1000000"),
        ("\\boxed{4 2}", None),
        ("\\boxed{1 2345}", None),
        ("\\boxed{0 100}", None),
    ],
    "roots": [
        ("\\boxed{\\sqrt{16}}", "4"),
        ("\\boxed{\\sqrt{2.25}}", "1.5"),
        ("\\boxed{\\sqrt[3]{27}}", "3"),
        ("The answer is \\sqrt{16}.", "4"),
        ("\\boxed{\\sqrt{2}}", None),
        ("\\boxed{\\sqrt{-4}}", None),
        ("The answer is \\sqrt{2}.", None),
    ],
    "retracted numbers": [
        ("The answer is not 72, it is 70.", "70"),
        ("The answer isn't 72, it's 70.", "70"),
        ("The answer is, instead of 72, 70.", "70"),
        ("The answer is 70 rather than 72.", "70"),
        ("Final answer: I previously said 72 but it is 70", "70"),
        ("The final answer is 72. Wait, 72 - 2 = 70.", "70"),
        ("It is 70, not 72.", "70"),
        ("The answer is 72, not 70.", "72"),
        ("The answer is 72. Wait, let me check: 8 * 9 = 72.", "72"),
        ("The answer is 72. Wait, let me double-check.", "72"),
        ("The answer is not 72.", None),
    ],
}


@pytest.mark.parametrize(
    ("text", "want"),
    [case for cases in NEW_FORMS.values() for case in cases],
)
def test_new_answer_forms(text: str, want: str | None) -> None:
    assert core.extract_answer(text) == want


def test_every_new_rule_has_accepted_and_refused_cases() -> None:
    for rule, cases in NEW_FORMS.items():
        wants = [w for _, w in cases]
        assert None in wants and any(w is not None for w in wants), rule


def test_literal_only_and_the_new_forms() -> None:
    computed = [
        ("\\boxed{3 \\times 10^{4}}", "30000"),
        ("The answer is 3 \\times 10^{4}.", "30000"),
        ("\\boxed{\\sqrt{16}}", "4"),
        ("The answer is \\sqrt[3]{27}.", "3"),
    ]
    literal = [
        ("\\boxed{twelve}", "12"),
        ("\\boxed{1 250}", "1250"),
        ("\\boxed{1.2e3}", "1200"),
        ("\\boxed{She needs 18 more}", "18"),
        ("The answer is not 72, it is 70.", "70"),
    ]
    texts, golds = zip(*computed, strict=True)
    assert core.grade(list(texts), list(golds)).tolist() == [1.0] * len(computed)
    assert core.grade(list(texts), list(golds), literal_only=True).tolist() == [0.0] * len(computed)
    texts, golds = zip(*literal, strict=True)
    assert core.grade(list(texts), list(golds), literal_only=True).tolist() == [1.0] * len(literal)


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
    from grpo_plug.config import DatasetConfig
    from grpo_plug.data.tasks import ArithTask, literal_answers

    task = ArithTask(DatasetConfig(task="arith", arith_style="plain", arith_size=4), seed=1)
    assert literal_answers(task)
    ex = task.load()[0]
    expr = ex.question.removeprefix("What is ").split("?")[0]
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


@given(
    st.integers(min_value=1000, max_value=10**20),
    st.sampled_from([" ", "\u00a0", "\u202f", "\u2009"]),
    st.booleans(),
)
@settings(max_examples=200, deadline=None)
def test_spaced_thousands_round_trip(n: int, sep: str, boxed: bool) -> None:
    num = f"{n:,}".replace(",", sep)
    text = f"\\boxed{{{num}}}" if boxed else f"The answer is {num}."
    assert core.extract_answer(text) == str(n)


@given(st.integers(min_value=-(10**6), max_value=10**6), st.integers(min_value=-6, max_value=12))
@settings(max_examples=200, deadline=None)
def test_scientific_notation_round_trip(m: int, e: int) -> None:
    from fractions import Fraction

    want = Fraction(m) * Fraction(10) ** e
    shown = str(want.numerator) if want.denominator == 1 else None
    for text in (f"\\boxed{{{m}e{e}}}", f"The answer is {m}E{e:+}."):
        got = core.extract_answer(text)
        assert got is not None and Fraction(got) == want, text
        if shown is not None:
            assert got == shown


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


def test_arith_examples_carry_their_operation_and_the_negative_hint() -> None:
    from grpo_plug.config import DatasetConfig
    from grpo_plug.data.tasks import ArithTask
    from grpo_plug.evaluation import accuracy_by_category

    cfg = DatasetConfig(task="arith", arith_style="plain", arith_size=60, arith_ops="+-*")
    examples = ArithTask(cfg, seed=1).load()
    assert {e.category for e in examples} == {"+", "-", "*"}
    for e in examples:
        assert f" {e.category} " in e.question
        assert e.question.endswith("(The answer may be negative.)") == (e.category == "-")
    three = DatasetConfig(task="arith", arith_n_operands=3, arith_size=40, arith_ops="*+")
    cats = {e.category for e in ArithTask(three, seed=1).load()}
    assert "*+" in cats and "+*" not in cats  # arith_ops order, each op once
    records = [
        {"category": "+", "correct": True},
        {"category": "+", "correct": False},
        {"category": "*", "correct": False},
        {"correct": True},  # a task without categories adds nothing
    ]
    assert accuracy_by_category(records) == {"+": (1, 2), "*": (0, 1)}
