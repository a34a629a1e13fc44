"""All 8,792 GSM8K reference solutions grade correct against their own gold answers."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from grpo_plug import core
from grpo_plug.data.tasks import bundled_gsm8k

# The copy shipped in the package: these tests never skip.
FILES = [bundled_gsm8k("train"), bundled_gsm8k("test")]

FINAL_LINE = re.compile(r"\n?####\s*(?P<gold>[^\n]*)\s*$")


def _load() -> list[str]:
    answers = []
    for path in FILES:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            answers.extend(json.loads(line)["answer"] for line in fh if line.strip())
    return answers


@pytest.fixture(scope="module")
def answers() -> list[str]:
    return _load()


def _gold(answer: str) -> str:
    return answer.rsplit("####", 1)[1].strip()


def _rewrite(answer: str, final: str) -> str:
    """Replace the final `#### x` line with `final`."""
    body, n = FINAL_LINE.subn(lambda _m: "\n" + final, answer)
    assert n == 1, answer
    return body


def test_dataset_size(answers: list[str]) -> None:
    assert len(answers) == 8792


def test_reference_solutions_grade_correct(answers: list[str]) -> None:
    scores = core.grade(answers, answers)
    wrong = [a for a, s in zip(answers, scores, strict=True) if s != 1.0]
    assert not wrong, wrong[:3]


@pytest.mark.parametrize(
    "template", ["\\boxed{{{x}}}", "The answer is {x}.", "#### {x}", "**Final Answer:** ${x}$"]
)
def test_rewritten_final_line_grades_correct(answers: list[str], template: str) -> None:
    completions = [_rewrite(a, template.format(x=_gold(a))) for a in answers]
    scores = core.grade(completions, answers)
    wrong = [c for c, s in zip(completions, scores, strict=True) if s != 1.0]
    assert not wrong, wrong[:3]


@pytest.mark.parametrize("template", ["#### {x}", "\\boxed{{{x}}}", "The answer is {x}."])
def test_wrong_number_grades_incorrect(answers: list[str], template: str) -> None:
    completions = []
    for a in answers:
        wrong = int(_gold(a).replace(",", "")) + 1
        completions.append(_rewrite(a, template.format(x=wrong)))
    scores = core.grade(completions, answers)
    right = [c for c, s in zip(completions, scores, strict=True) if s != 0.0]
    assert not right, right[:3]


SMALL = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _spell(n: int) -> str:
    """English words for an integer below 10^12 ("one hundred and five")."""
    if n < 0:
        return "negative " + _spell(-n)
    if n < 20:
        return SMALL[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + SMALL[n % 10])
    if n < 1000:
        rest = "" if n % 100 == 0 else " and " + _spell(n % 100)
        return f"{SMALL[n // 100]} hundred{rest}"
    for scale, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= scale:
            rest = "" if n % scale == 0 else " " + _spell(n % scale)
            return f"{_spell(n // scale)} {name}{rest}"
    raise AssertionError(n)


NEW_FORMS = {
    "words_anchor": lambda x: f"The answer is {_spell(x)}.",
    "words_boxed": lambda x: f"\\boxed{{\\text{{{_spell(x)}}}}}",
    "spaced_boxed": lambda x: f"\\boxed{{{x:,}}}".replace(",", "\u202f"),
    "spaced_anchor": lambda x: f"The answer is {x:,}.".replace(",", " "),
}


@pytest.mark.parametrize("form", sorted(NEW_FORMS))
def test_gold_in_new_forms_grades_correct_and_off_by_one_wrong(
    answers: list[str], form: str
) -> None:
    write = NEW_FORMS[form]
    golds = [int(_gold(a).replace(",", "")) for a in answers]
    right = [_rewrite(a, write(x)) for a, x in zip(answers, golds, strict=True)]
    wrong = [_rewrite(a, write(x + 1)) for a, x in zip(answers, golds, strict=True)]
    scores = core.grade(right + wrong, answers + answers)
    n = len(answers)
    missed = [c for c, s in zip(right, scores[:n], strict=True) if s != 1.0]
    accepted = [c for c, s in zip(wrong, scores[n:], strict=True) if s != 0.0]
    assert not missed, missed[:3]
    assert not accepted, accepted[:3]


def test_extracted_answer_is_the_normalised_gold(answers: list[str]) -> None:
    for a in answers:
        assert core.extract_answer(a) == _gold(a).replace(",", ""), a
