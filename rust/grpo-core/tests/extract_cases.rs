//! Table-driven checks of the extraction rules.

use grpo_core::{extract, extract_answer, grade_one, parse_gold, Source};

fn ex(text: &str) -> Option<String> {
    extract_answer(text).map(|a| a.to_string())
}

#[test]
fn box_contents() {
    let cases: &[(&str, Option<&str>)] = &[
        ("\\boxed{72}", Some("72")),
        ("\\boxed{1,000}", Some("1000")),
        ("\\boxed{1{,}000}", Some("1000")),
        ("\\boxed{1\\,000}", Some("1000")),
        ("\\boxed{12,34}", None),
        ("\\boxed{\\frac{1}{2}}", Some("1/2")),
        ("\\boxed{\\dfrac{3}{4}}", Some("3/4")),
        ("\\boxed{\\tfrac12}", Some("1/2")),
        ("\\boxed{3/6}", Some("1/2")),
        ("\\boxed{3 1/2}", Some("7/2")),
        ("\\boxed{3\\frac{1}{2}}", Some("7/2")),
        ("\\boxed{-3\\frac{1}{2}}", Some("-7/2")),
        ("\\boxed{.5}", Some("0.5")),
        ("\\boxed{0.50}", Some("0.5")),
        ("\\boxed{5.}", Some("5")),
        ("\\boxed{72.00}", Some("72")),
        ("\\boxed{\\$18}", Some("18")),
        ("\\boxed{$18$}", Some("18")),
        ("\\boxed{€18}", Some("18")),
        ("\\boxed{£1,200.50}", Some("1200.5")),
        ("\\boxed{¥5}", Some("5")),
        ("\\boxed{5 dollars}", Some("5")),
        ("\\boxed{12 apples}", Some("12")),
        ("\\boxed{5\\text{ cm}}", Some("5")),
        ("\\boxed{5 \\mathrm{km/h}}", Some("5")),
        ("\\boxed{\\textbf{42}}", Some("42")),
        ("\\boxed{\\text{42 eggs}}", Some("42")),
        ("\\boxed{20 m^2}", Some("20")),
        ("\\boxed{90^\\circ}", Some("90")),
        ("\\boxed{90^{\\circ}}", Some("90")),
        ("\\boxed{90°}", Some("90")),
        ("\\boxed{50\\%}", Some("50")),
        ("\\boxed{50%}", Some("50")),
        ("\\boxed{\\left(3\\right)}", Some("3")),
        ("\\boxed{x = 5}", Some("5")),
        ("\\boxed{2+3=5}", Some("5")),
        ("\\boxed{2+3}", Some("5")),
        ("\\boxed{2 \\times 3}", Some("6")),
        ("\\boxed{2 \\cdot 3 + 1}", Some("7")),
        ("\\boxed{(2+3)*4}", Some("20")),
        ("\\boxed{2^{10}}", Some("1024")),
        ("\\boxed{2^-1}", Some("1/2")),
        ("\\boxed{10 \\div 4}", Some("5/2")),
        ("\\boxed{1.5 + 1}", Some("2.5")),
        ("\\boxed{-5}", Some("-5")),
        ("\\boxed{−5}", Some("-5")),
        ("\\boxed{５}", Some("5")),
        ("\\boxed{１２３}", Some("123")),
        ("\\boxed{Answer: 7}", Some("7")),
        ("\\boxed{18 and 20}", None),
        ("\\boxed{18, 20}", None),
        ("\\boxed{18 \\text{ and } 20}", None),
        ("\\boxed{18 20}", None),
        ("\\boxed{inf}", None),
        ("\\boxed{NaN}", None),
        ("\\boxed{\\infty}", None),
        ("\\boxed{\\pi}", None),
        ("\\boxed{\\sqrt{2}}", None),
        ("\\boxed{0x1F}", None),
        ("\\boxed{1_000}", None),
        ("\\boxed{1\\_000}", None),
        ("\\boxed{1e5}", Some("100000")),
        ("\\boxed{3e4f}", None),
        ("\\boxed{1/0}", None),
        ("\\boxed{\\frac{1}{0}}", None),
        ("\\boxed{2^{1000}}", None),
        ("\\boxed{10^{100}}", None),
        ("\\boxed{2^{0.5}}", None),
        (
            "\\boxed{12345678901234567890123456789012345678901234567890}",
            None,
        ),
        ("\\boxed{x}", None),
        ("\\boxed{=}", None),
        ("\\fbox{9}", Some("9")),
        ("\\boxed {9}", Some("9")),
        ("\\boxed{\\boxed{9}}", Some("9")),
    ];
    for (text, want) in cases {
        assert_eq!(ex(text).as_deref(), *want, "{text:?}");
    }
}

#[test]
fn location_order() {
    let cases: &[(&str, Source, Option<&str>)] = &[
        ("The answer is 3. \\boxed{4}", Source::Boxed, Some("4")),
        ("\\boxed{1} then \\boxed{2}", Source::Boxed, Some("2")),
        ("\\boxed{1} then \\boxed{}", Source::Boxed, Some("1")),
        ("\\boxed{1} then \\boxed{  }", Source::Boxed, Some("1")),
        ("unclosed \\boxed{42", Source::Boxed, Some("42")),
        ("unclosed \\boxed{42 and more text 7", Source::Boxed, None),
        ("work 5 + 5\n#### 10", Source::Hashes, Some("10")),
        ("#### 1\n#### 2\nmore 3", Source::Hashes, Some("2")),
        ("#### Step 1\nThe answer is 12.", Source::Anchor, Some("12")),
        ("#### $1,200", Source::Hashes, Some("1200")),
        ("The answer is 12.", Source::Anchor, Some("12")),
        ("the ANSWER is 12 apples", Source::Anchor, Some("12")),
        ("Final answer: 7. Then 8 more.", Source::Anchor, Some("7")),
        ("**Final Answer**\n\n$42$", Source::Anchor, Some("42")),
        ("**Answer:** 6", Source::Anchor, Some("6")),
        (
            "The answer is 3. Wait, the answer is 4.",
            Source::Anchor,
            Some("4"),
        ),
        ("The answer is 2+3=5.", Source::Anchor, Some("5")),
        (
            "The answer is 5 because 2+3=5 and 1+1=2.",
            Source::Anchor,
            Some("5"),
        ),
        ("The answer is: x = 5", Source::Anchor, Some("5")),
        ("The answer is $1,000.", Source::Anchor, Some("1000")),
        ("The answer is -4.", Source::Anchor, Some("-4")),
        ("The answer is \\frac{3}{4}.", Source::Anchor, Some("3/4")),
        ("The answer is 3 1/2 cups.", Source::Anchor, Some("7/2")),
        ("The answer is 25%.", Source::Anchor, Some("25")),
        (
            "I answered 5 of them, 6 left",
            Source::LastNumber,
            Some("6"),
        ),
        ("So 5 + 3 = 8 apples.", Source::LastNumber, Some("8")),
        (
            "It costs $1,234.50 total.",
            Source::LastNumber,
            Some("1234.5"),
        ),
        ("the list 3,4,5", Source::LastNumber, Some("5")),
        ("temperature -5 degrees", Source::LastNumber, Some("-5")),
        ("from 3-5", Source::LastNumber, Some("5")),
        ("she ate 3/4 of it", Source::LastNumber, Some("3/4")),
        ("value 7 then x2", Source::LastNumber, Some("7")),
        ("value 7 then 0x1F", Source::LastNumber, Some("7")),
        ("value 7 then 1_000", Source::LastNumber, Some("7")),
        ("value 7 then 1e5", Source::LastNumber, Some("100000")),
        ("value 7 then 3e4f", Source::LastNumber, Some("7")),
        ("value 7\nthen H2O\n", Source::LastNumber, Some("7")),
        ("it is .5 now", Source::LastNumber, Some("0.5")),
        ("no numbers at all", Source::Nothing, None),
        ("", Source::Nothing, None),
    ];
    for (text, source, want) in cases {
        let e = extract(text);
        assert_eq!(e.source, *source, "{text:?}");
        assert_eq!(
            e.answer.map(|a| a.to_string()).as_deref(),
            *want,
            "{text:?}"
        );
    }
}

#[test]
fn gold_forms() {
    let g = |s: &str| parse_gold(s).map(|a| a.to_string());
    assert_eq!(
        g("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72").as_deref(),
        Some("72")
    );
    assert_eq!(g("#### 1,200").as_deref(), Some("1200"));
    assert_eq!(g("72").as_deref(), Some("72"));
    assert_eq!(g("\\frac{1}{2}").as_deref(), Some("1/2"));
    assert_eq!(g("\\boxed{3}").as_deref(), Some("3"));
    assert_eq!(g("-3").as_deref(), Some("-3"));
    assert_eq!(g("hello").as_deref(), None);
}

#[test]
fn grading() {
    assert_eq!(grade_one("The answer is 1,200.", "... #### 1,200"), 1.0);
    assert_eq!(grade_one("\\boxed{1201}", "#### 1,200"), 0.0);
    assert_eq!(grade_one("\\boxed{3.5}", "3 1/2"), 1.0);
    assert_eq!(grade_one("\\boxed{7/2}", "3.5"), 1.0);
}

#[test]
fn hostile_inputs_are_bounded() {
    let cases = [
        "{".repeat(10_000),
        format!("\\boxed{{{}", "{".repeat(10_000)),
        format!("\\boxed{{{}5{}}}", "(".repeat(10_000), ")".repeat(10_000)),
        format!("\\boxed{{{}5}}", "-".repeat(100_000)),
        "\\boxed{".repeat(20_000),
        "\\boxed{}".repeat(20_000),
        "#### x\n".repeat(20_000),
        "#".repeat(400_000),
        format!("{}\n#### 5", "#### #".repeat(50_000)),
        "answer ".repeat(20_000),
        "1,".repeat(200_000),
        "9".repeat(1_000_000),
        "1/".repeat(200_000),
        "\\frac{".repeat(100_000),
        "2^".repeat(100_000),
        "a\u{0}b\u{FFFD}".repeat(50_000),
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
