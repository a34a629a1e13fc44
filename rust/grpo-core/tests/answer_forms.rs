//! Table tests of the answer forms models write: number words, scientific
//! notation, prose in a box, spaced thousands, roots, retracted anchors;
//! each rule with accepted and refused cases, and how each form meets
//! `literal_only`.

use grpo_core::{extract, extract_answer, grade_one, grade_one_with, GradeOptions, Source};

fn ex(text: &str) -> Option<String> {
    extract_answer(text).map(|a| a.to_string())
}

fn check(cases: &[(&str, Option<&str>)]) {
    for (text, want) in cases {
        assert_eq!(ex(text).as_deref(), *want, "{text:?}");
    }
}

#[test]
fn number_words() {
    check(&[
        ("The answer is twelve.", Some("12")),
        ("\\boxed{twelve}", Some("12")),
        ("\\boxed{\\text{forty-two}}", Some("42")),
        ("\\boxed{Forty Two}", Some("42")),
        ("The answer is one hundred and five.", Some("105")),
        ("The final answer is: **seventy-two** apples", Some("72")),
        ("Final answer: two thousand and ten", Some("2010")),
        (
            "\\boxed{three million four hundred thousand}",
            Some("3400000"),
        ),
        (
            "\\boxed{one million two hundred thirty-four thousand five hundred sixty-seven}",
            Some("1234567"),
        ),
        ("\\boxed{a hundred}", Some("100")),
        ("\\boxed{twelve hundred}", Some("1200")),
        ("The answer is zero.", Some("0")),
        ("The answer is negative seven.", Some("-7")),
        ("The answer is not twelve, it's thirteen.", Some("13")),
        ("\\boxed{twelve apples}", Some("12")),
        ("The answer is 12, one more than 11.", Some("12")),
        // Ordinals, fractions, comparisons and pronouns are not answers.
        ("\\boxed{third}", None),
        ("\\boxed{twenty-first}", None),
        ("\\boxed{one third}", None),
        ("\\boxed{twelve and thirteen}", None),
        ("\\boxed{five four}", None),
        ("\\boxed{one more than 17}", None),
        ("\\boxed{5 \\text{ or six}}", None),
        ("The answer is the third one.", None),
        (
            "The answer is that each of the two friends gets 5.",
            Some("5"),
        ),
        ("The answer is one more than 11", Some("11")),
        ("She has twelve apples.", None),
    ]);
}

#[test]
fn scientific_notation() {
    check(&[
        ("\\boxed{1.2e3}", Some("1200")),
        ("\\boxed{5e2}", Some("500")),
        ("\\boxed{1.2E+3}", Some("1200")),
        ("\\boxed{1.5e-3}", Some("0.0015")),
        ("\\boxed{3 \\times 10^{4}}", Some("30000")),
        ("\\boxed{1.5\\cdot10^3}", Some("1500")),
        ("\\boxed{2.5 \\times 10^{-2}}", Some("0.025")),
        ("The answer is 1.2e3.", Some("1200")),
        ("The answer is 3 \\times 10^{4} m.", Some("30000")),
        ("The answer is 1.5\\cdot10^3", Some("1500")),
        ("The answer is 3 x 10^4.", Some("30000")),
        ("so the distance is 3 \\times 10^{4}", Some("30000")),
        ("It is 5E2", Some("500")),
        ("\\boxed{5e2 apples}", Some("500")),
        // Absurd exponents, identifiers and overflow are refused.
        ("\\boxed{1e400}", None),
        ("\\boxed{1e39}", None),
        ("\\boxed{3 \\times 10^{200}}", None),
        ("\\boxed{3e4f}", None),
        ("The answer is 3 \\times 10^{400}.", None),
        ("id 3e4f", None),
        ("The answer is 1e99999.", None),
        ("value 7 then 0x1e5", Some("7")),
    ]);
}

#[test]
fn prose_in_a_box() {
    check(&[
        ("\\boxed{She needs 18 more}", Some("18")),
        ("\\boxed{\\text{The answer is } 18}", Some("18")),
        ("\\boxed{18 \\text{ (apples)}}", Some("18")),
        (
            "\\boxed{\\text{Maria makes } \\$18 \\text{ per day}}",
            Some("18"),
        ),
        ("\\boxed{18 \\text{ (18 apples)}}", Some("18")),
        (
            "\\boxed{\\text{She needs } \\frac{1}{2} \\text{ cup}}",
            Some("1/2"),
        ),
        ("\\boxed{She scored 50\\% today}", Some("50")),
        ("\\boxed{a room of 20 m^2 in all}", Some("20")),
        ("\\boxed{She needs eighteen more}", Some("18")),
        // Two different numbers, exponents and identifiers stay no answer.
        ("\\boxed{She needs 18 more, not 20}", None),
        ("\\boxed{18 \\text{ or } 19}", None),
        (
            "\\boxed{\\text{Each one costs } \\$18 \\text{ and } \\$2}",
            None,
        ),
        ("\\boxed{the 2x rule}", None),
        ("\\boxed{x^2}", None),
        ("\\boxed{x 5}", None),
        ("\\boxed{the 5^2 apples}", None),
        ("\\boxed{2^{1000} apples}", None),
        ("\\boxed{She needs 3-5 more}", None),
        ("\\boxed{\\text{Plan }\\pi \\text{ gives } 3}", None),
    ]);
}

#[test]
fn spaced_thousands() {
    check(&[
        ("\\boxed{1 000 000}", Some("1000000")),
        ("\\boxed{1 250}", Some("1250")),
        ("\\boxed{1\u{00A0}250}", Some("1250")),
        ("\\boxed{1\u{202F}250}", Some("1250")),
        ("\\boxed{1\u{2009}250}", Some("1250")),
        ("\\boxed{1~250}", Some("1250")),
        ("The answer is 1 000 000.", Some("1000000")),
        ("It costs $12 345.50 in total", Some("12345.5")),
        ("\\boxed{-1 250}", Some("-1250")),
        // Only exact groups of three.
        ("\\boxed{4 2}", None),
        ("\\boxed{1 2345}", None),
        ("\\boxed{12 34}", None),
        ("\\boxed{0 100}", None),
        ("\\boxed{1 000,000}", None),
        ("she bought 2 100g bars", Some("100")),
        ("\\boxed{3 1/2}", Some("7/2")),
    ]);
}

#[test]
fn roots() {
    check(&[
        ("\\boxed{\\sqrt{16}}", Some("4")),
        ("\\boxed{\\sqrt{2.25}}", Some("1.5")),
        ("\\boxed{\\sqrt[3]{27}}", Some("3")),
        ("\\boxed{\\sqrt[3]{-8}}", Some("-2")),
        ("\\boxed{\\sqrt4}", Some("2")),
        ("\\boxed{2\\sqrt{9}}", None),
        ("\\boxed{2 \\cdot \\sqrt{9}}", Some("6")),
        ("\\boxed{\\sqrt{\\frac{9}{4}}}", Some("3/2")),
        ("The answer is \\sqrt{16}.", Some("4")),
        ("The answer is \\sqrt[3]{27}.", Some("3")),
        // Inexact roots and bad indexes are refused, not rounded.
        ("\\boxed{\\sqrt{2}}", None),
        ("\\boxed{\\sqrt{-4}}", None),
        ("\\boxed{\\sqrt[1]{8}}", None),
        ("\\boxed{\\sqrt[200]{1}}", None),
        ("\\boxed{\\sqrt[x]{8}}", None),
        ("The answer is \\sqrt{2}.", None),
        ("so x = \\sqrt{2}", None),
    ]);
}

#[test]
fn retracted_numbers() {
    let cases: &[(&str, Source, Option<&str>)] = &[
        (
            "The answer is not 72, it is 70.",
            Source::Anchor,
            Some("70"),
        ),
        ("The answer isn't 72, it's 70.", Source::Anchor, Some("70")),
        ("The answer isn’t 72; it is 70", Source::Anchor, Some("70")),
        (
            "The answer is, instead of 72, 70.",
            Source::Anchor,
            Some("70"),
        ),
        (
            "The answer is 70 rather than 72.",
            Source::Anchor,
            Some("70"),
        ),
        (
            "The answer is rather than 72 just 70.",
            Source::Anchor,
            Some("70"),
        ),
        (
            "Final answer: I previously said 72 but it is 70",
            Source::Anchor,
            Some("70"),
        ),
        (
            "The final answer is 72. Wait, 8 * 9 = 72 and I need 72 - 2 = 70.",
            Source::Anchor,
            Some("70"),
        ),
        (
            "The answer is 72.\nWait, it is 70.",
            Source::Anchor,
            Some("70"),
        ),
        (
            "The answer is 72. Wait, let me check: 8 * 9 = 72. Yes.",
            Source::Anchor,
            Some("72"),
        ),
        (
            "The answer is 72. Wait, let me double-check.",
            Source::Anchor,
            Some("72"),
        ),
        (
            "The answer is 72. Oops, it is not 70.",
            Source::Anchor,
            Some("72"),
        ),
        ("It is 70, not 72.", Source::LastNumber, Some("70")),
        ("It is 70 instead of 72", Source::LastNumber, Some("70")),
        (
            "It's 70. I previously said 72.",
            Source::LastNumber,
            Some("70"),
        ),
        (
            "It is 70.\nI said 72 before.",
            Source::LastNumber,
            Some("70"),
        ),
        // Refused: not a retraction.
        ("The answer is 72, not 70.", Source::Anchor, Some("72")),
        ("She said 5 apples", Source::LastNumber, Some("5")),
        ("The answer is not 72.", Source::Nothing, None),
        ("The answerer isn't 72", Source::Nothing, None),
        (
            "I waited 5 minutes. The answer is 72. Then 3 more.",
            Source::Anchor,
            Some("72"),
        ),
    ];
    for (text, source, want) in cases {
        let e = extract(text);
        assert_eq!(
            (e.source, e.answer.map(|a| a.to_string()).as_deref()),
            (*source, *want),
            "{text:?}"
        );
    }
}

#[test]
fn literal_only_and_the_new_forms() {
    let lit = GradeOptions { literal_only: true };
    // Computed: a power of ten applied, a root taken.
    for (text, gold) in [
        ("\\boxed{3 \\times 10^{4}}", "30000"),
        ("The answer is 3 \\times 10^{4}.", "30000"),
        ("\\boxed{1.5\\cdot10^3}", "1500"),
        ("\\boxed{\\sqrt{16}}", "4"),
        ("The answer is \\sqrt[3]{27}.", "3"),
        ("\\boxed{She needs \\sqrt{16} more}", "4"),
    ] {
        assert_eq!(grade_one(text, gold), 1.0, "{text}");
        assert_eq!(grade_one_with(text, gold, lit), 0.0, "{text}");
    }
    // Literal: written as one number.
    for (text, gold) in [
        ("\\boxed{twelve}", "12"),
        ("The answer is one hundred and five.", "105"),
        ("\\boxed{1 250}", "1250"),
        ("\\boxed{1.2e3}", "1200"),
        ("The answer is 1.2e3.", "1200"),
        ("\\boxed{She needs 18 more}", "18"),
        ("The answer is not 72, it is 70.", "70"),
    ] {
        assert_eq!(grade_one_with(text, gold, lit), 1.0, "{text}");
    }
}

#[test]
fn new_forms_grade_against_golds() {
    assert_eq!(grade_one("The answer is twelve.", "#### 12"), 1.0);
    assert_eq!(grade_one("The answer is twelve.", "#### 13"), 0.0);
    assert_eq!(grade_one("\\boxed{1 000 000}", "#### 1,000,000"), 1.0);
    assert_eq!(grade_one("The answer is not 72, it is 70.", "#### 72"), 0.0);
    assert_eq!(grade_one("The answer is not 72, it is 70.", "#### 70"), 1.0);
    assert_eq!(grade_one("\\boxed{1.2e3}", "1200"), 1.0);
    assert_eq!(grade_one("\\boxed{\\sqrt{2}}", "1.41421356"), 0.0);
}

#[test]
fn hostile_new_forms_are_bounded() {
    let cases = [
        "one hundred and ".repeat(50_000),
        "twenty-".repeat(100_000),
        "The answer is not ".repeat(30_000),
        format!("The answer is 7. {}", "Wait, ".repeat(100_000)),
        format!("\\boxed{{{}}}", "\\sqrt[128]{".repeat(20_000)),
        format!("\\boxed{{{}1}}", "\\sqrt".repeat(50_000)),
        "\\sqrt{".repeat(100_000),
        "1 000 ".repeat(100_000),
        "1e".repeat(200_000),
        "3 \\times 10^{".repeat(50_000),
        format!("\\boxed{{{}}}", "She needs 18 more ".repeat(50_000)),
        format!("\\boxed{{{}}}", "a a a ".repeat(100_000)),
        "isn't ".repeat(100_000),
    ];
    for text in &cases {
        let t0 = std::time::Instant::now();
        let _ = extract_answer(text);
        let _ = grade_one(text, text);
        assert!(
            t0.elapsed().as_secs_f64() < 2.0,
            "slow on input of {} bytes",
            text.len()
        );
    }
}
