//! Property tests (proptest) for extraction, grading, advantages and packing.

use grpo_core::{
    extract_answer, grade_batch, grade_one, group_advantages, pack_microbatches, parse_gold,
    AdvantageConfig, AdvantageMode, GradeOptions, PackInput, Ragged, Rational, TextBatch,
};
use proptest::prelude::*;

fn with_commas(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn signed(neg: bool, body: &str) -> String {
    if neg {
        format!("-{body}")
    } else {
        body.to_owned()
    }
}

fn with_spaces(n: u128, sep: char) -> String {
    with_commas(n).replace(',', &sep.to_string())
}

/// English words for `n < 10^12` (hyphenated tens, "and" after hundreds
/// when `and` is set).
fn spell(n: u64, and: bool) -> String {
    const SMALL: [&str; 20] = [
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
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    let below_100 = |n: u64| match n {
        0..=19 => SMALL[n as usize].to_string(),
        _ if n.is_multiple_of(10) => TENS[(n / 10) as usize].to_string(),
        _ => format!("{}-{}", TENS[(n / 10) as usize], SMALL[(n % 10) as usize]),
    };
    let below_1000 = |n: u64| {
        let (h, r) = (n / 100, n % 100);
        match (h, r) {
            (0, _) => below_100(r),
            (_, 0) => format!("{} hundred", SMALL[h as usize]),
            _ if and => format!("{} hundred and {}", SMALL[h as usize], below_100(r)),
            _ => format!("{} hundred {}", SMALL[h as usize], below_100(r)),
        }
    };
    if n == 0 {
        return "zero".into();
    }
    let mut parts = Vec::new();
    for (scale, name) in [
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1_000, "thousand"),
    ] {
        if !(n / scale).is_multiple_of(1000) {
            parts.push(format!("{} {name}", below_1000(n / scale % 1000)));
        }
    }
    if !n.is_multiple_of(1000) {
        parts.push(below_1000(n % 1000));
    }
    parts.join(" ")
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn integers_round_trip(n in 0u128..10u128.pow(30), neg: bool, fmt in 0usize..12) {
        let body = if fmt % 2 == 0 { n.to_string() } else { with_commas(n) };
        let num = signed(neg, &body);
        let text = match fmt {
            0 | 1 => format!("\\boxed{{{num}}}"),
            2 | 3 => format!("Lots of work 3 + 4 = 7.\nThe answer is {num}."),
            4 | 5 => format!("12 * 3 = 36\n#### {num}"),
            6 => format!("\\boxed{{\\${num}}}"),
            7 => format!("So she has {num} apples."),
            8 => format!("\\boxed{{\\text{{{num} dollars}}}}"),
            9 => format!("**Final Answer:** ${num}$"),
            10 => format!("\\boxed{{x = {num}}}"),
            _ => num.clone(),
        };
        let want = Rational::from_int(if neg { -(n as i128) } else { n as i128 });
        let got = extract_answer(&text).map(|a| a.value);
        prop_assert_eq!(got, Some(want), "text {:?}", text);
    }

    #[test]
    fn decimals_round_trip(int in 0u64..1_000_000_000, frac in 0u64..1_000_000, places in 1u32..7,
                           neg: bool, boxed: bool) {
        let frac = frac % 10u64.pow(places);
        let body = format!("{int}.{frac:0width$}", width = places as usize);
        let num = signed(neg, &body);
        let text = if boxed { format!("\\boxed{{{num}}}") } else { format!("The answer is {num}") };
        let m = i128::from(int) * 10i128.pow(places) + i128::from(frac);
        let want = Rational::new(if neg { -m } else { m }, 10i128.pow(places)).unwrap();
        let got = extract_answer(&text);
        prop_assert_eq!(got.map(|a| a.value), Some(want));
        // The canonical rendering parses back to the same value.
        let rendered = got.unwrap().to_string();
        prop_assert_eq!(extract_answer(&rendered).map(|a| a.value), Some(want));
    }

    #[test]
    fn fractions_round_trip(a in -10_000i128..10_000, b in 1i128..10_000, form in 0usize..3) {
        let text = match form {
            0 => format!("\\boxed{{\\frac{{{a}}}{{{b}}}}}"),
            1 => format!("\\boxed{{{a}/{b}}}"),
            _ => format!("\\boxed{{\\dfrac{{{a}}}{{{b}}}}}"),
        };
        let want = Rational::new(a, b).unwrap();
        prop_assert_eq!(extract_answer(&text).map(|x| x.value), Some(want));
    }

    #[test]
    fn grading_right_and_wrong(n in -1_000_000i64..1_000_000) {
        let gold = format!("some working\n#### {n}");
        prop_assert_eq!(grade_one(&format!("\\boxed{{{n}}}"), &gold), 1.0);
        prop_assert_eq!(grade_one(&format!("The answer is {n}."), &gold), 1.0);
        prop_assert_eq!(grade_one(&format!("\\boxed{{{}}}", n + 1), &gold), 0.0);
    }

    #[test]
    fn never_panics_and_renders_consistently(text in any::<String>()) {
        if let Some(a) = extract_answer(&text) {
            let again = extract_answer(&format!("\\boxed{{{a}}}"));
            prop_assert_eq!(again.map(|x| x.value), Some(a.value));
        }
        let _ = parse_gold(&text);
        let _ = grade_one(&text, &text);
    }

    #[test]
    fn latexish_never_panics(
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "\\boxed{", "\\fbox{", "}", "{", "\\frac", "\\dfrac", "12", "3", "0", ",", ".",
                "-", "+", "*", "/", "^", "(", ")", "=", "%", "\\%", "\\$", "$", " ", "\n",
                "#### ", "The answer is ", "Final answer:", "\\text{", "\\left(", "\\right)",
                "\\times", "^\\circ", "x", "apples", "\u{2212}", "\u{FF15}", "\\", "e5", "_",
                "0x", "½", "²", "twelve", "-", "hundred", " and ", "third", "not ", "isn't ",
                "Wait, ", "1.2e3", "E+", " \\times 10^{", "\\sqrt{", "\\sqrt[3]{", "1 000",
                "\u{202F}", "She needs ", " more", "rather than ",
            ]),
            0..60,
        )
    ) {
        let text: String = parts.concat();
        if let Some(a) = extract_answer(&text) {
            let again = extract_answer(&format!("\\boxed{{{a}}}"));
            prop_assert_eq!(again.map(|x| x.value), Some(a.value));
        }
        let _ = grade_one(&text, "#### 12");
    }

    #[test]
    fn number_words_round_trip(n in 0u64..1_000_000_000_000, and: bool, form in 0usize..4) {
        let words = spell(n, and);
        let text = match form {
            0 => format!("\\boxed{{{words}}}"),
            1 => format!("\\boxed{{\\text{{{words}}}}}"),
            2 => format!("So 3 + 4 = 7 is a step.\nThe answer is {words}."),
            _ => format!("Final answer: {words} apples"),
        };
        let got = extract_answer(&text);
        prop_assert_eq!(got.map(|a| a.value), Some(Rational::from_int(n as i128)), "text {:?}", text);
        prop_assert!(!got.unwrap().evaluated);
    }

    #[test]
    fn spaced_thousands_round_trip(n in 1000u128..10u128.pow(20), sep in 0usize..4, boxed: bool) {
        let sep = [' ', '\u{00A0}', '\u{202F}', '\u{2009}'][sep];
        let num = with_spaces(n, sep);
        let text = if boxed { format!("\\boxed{{{num}}}") } else { format!("The answer is {num}.") };
        prop_assert_eq!(extract_answer(&text).map(|a| a.value), Some(Rational::from_int(n as i128)));
    }

    #[test]
    fn powers_of_ten_round_trip(m in -99_999i64..100_000, places in 0u32..4, e in -8i32..12,
                                form in 0usize..4) {
        let mant = Rational::new(i128::from(m), 10i128.pow(places)).unwrap();
        let shown = mant.to_decimal_string().unwrap();
        let want = mant.checked_mul(Rational::from_int(10).checked_pow(i128::from(e)).unwrap()).unwrap();
        let (text, computed) = match form {
            0 => (format!("\\boxed{{{shown}e{e}}}"), false),
            1 => (format!("The answer is {shown}E{e:+}."), false),
            2 => (format!("\\boxed{{{shown} \\times 10^{{{e}}}}}"), true),
            _ => (format!("The answer is {shown}\\cdot10^{{{e}}} m"), true),
        };
        let got = extract_answer(&text);
        prop_assert_eq!(got.map(|a| a.value), Some(want), "text {:?}", text);
        prop_assert_eq!(got.unwrap().evaluated, computed, "text {:?}", text);
    }

    #[test]
    fn exact_roots_round_trip(k in 0i128..3_000_000, cube: bool, boxed: bool, off in 1i128..3) {
        let (n, x) = if cube { (3, k * k * k) } else { (2, k * k) };
        let root = if cube { format!("\\sqrt[3]{{{x}}}") } else { format!("\\sqrt{{{x}}}") };
        let text = if boxed { format!("\\boxed{{{root}}}") } else { format!("The answer is {root}.") };
        prop_assert_eq!(extract_answer(&text).map(|a| a.value), Some(Rational::from_int(k)));
        // A radicand off by one or two from a power is not a perfect power (k > 1).
        let bad = if cube { format!("\\sqrt[3]{{{}}}", x + off) } else { format!("\\sqrt{{{}}}", x + off) };
        if k > 1 && n == 2 || k > 0 && n == 3 {
            prop_assert_eq!(extract_answer(&format!("\\boxed{{{bad}}}")), None);
        }
    }

    #[test]
    fn retracted_numbers_are_passed_over(a in 0u32..100_000, b in 0u32..100_000, form in 0usize..5) {
        prop_assume!(a != b);
        let text = match form {
            0 => format!("The answer is not {a}, it is {b}."),
            1 => format!("The answer isn't {a}; it's {b}."),
            2 => format!("The answer is {b} rather than {a}."),
            3 => format!("The final answer is {a}. Wait, it is {b}."),
            _ => format!("So it is {b}, instead of {a}"),
        };
        prop_assert_eq!(extract_answer(&text).map(|x| x.value), Some(Rational::from_int(i128::from(b))), "text {:?}", text);
    }

    #[test]
    fn advantages_are_centred(
        groups in prop::collection::vec(prop::collection::vec(-10.0f64..10.0, 4), 1..20),
        mode in 0usize..3,
        binary: bool,
    ) {
        let mode = [AdvantageMode::Grpo, AdvantageMode::DrGrpo, AdvantageMode::Rloo][mode];
        let rewards: Vec<f64> = groups
            .iter()
            .flatten()
            .map(|x| if binary { f64::from(u8::from(*x > 0.0)) } else { *x })
            .collect();
        let cfg = AdvantageConfig { mode, eps: 1e-6, normalize_batch: false };
        let adv = group_advantages(&rewards, 4, &cfg).unwrap();
        for (g, a) in rewards.chunks(4).zip(adv.chunks(4)) {
            let mean: f64 = a.iter().map(|x| f64::from(*x)).sum::<f64>() / 4.0;
            prop_assert!(mean.abs() < 1e-4, "group {:?} adv {:?}", g, a);
            if g.iter().all(|x| *x == g[0]) {
                prop_assert!(a.iter().all(|x| *x == 0.0));
            }
            prop_assert!(a.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn packing_keeps_every_token_once(
        seqs in prop::collection::vec((0usize..20, 0usize..20), 1..60),
        max_tokens in 1usize..64,
        n_ranks in 1usize..4,
    ) {
        let mut next = 0i64;
        let mut prompts = Vec::new();
        let mut completions = Vec::new();
        let mut logprobs = Vec::new();
        for (p, c) in &seqs {
            prompts.push((0..*p).map(|_| { next += 1; next }).collect::<Vec<i64>>());
            let comp: Vec<i64> = (0..*c).map(|_| { next += 1; next }).collect();
            logprobs.push(comp.iter().map(|t| -(*t as f32)).collect::<Vec<f32>>());
            completions.push(comp);
        }
        let advantages: Vec<f64> = (0..seqs.len()).map(|i| i as f64).collect();
        // One input borrowed from a Ragged buffer, as the bindings do for lists.
        let prompt_rows = Ragged::from_rows(&prompts);
        let input = PackInput {
            prompt_ids: prompt_rows.rows(),
            completion_ids: completions.iter().map(Vec::as_slice).collect(),
            completion_logprobs: logprobs.iter().map(Vec::as_slice).collect(),
            advantages: &advantages,
        };
        let result = pack_microbatches(&input, max_tokens, n_ranks);
        if seqs.len() < n_ranks {
            prop_assert!(result.is_err());
            return Ok(());
        }
        let packed = match result {
            Ok(out) => out,
            // Only allowed when bins cannot be spread evenly over the ranks.
            Err(e) => {
                prop_assert!(matches!(e, grpo_core::CoreError::Infeasible(_)), "{}", e);
                return Ok(());
            }
        };
        let out = packed.ranks();
        prop_assert_eq!(out.len(), n_ranks);
        let k = out[0].len();
        let mut seen_tokens = vec![0u32; next as usize + 1];
        let mut seen_seqs = vec![0u32; seqs.len()];
        for rank in &out {
            prop_assert_eq!(rank.len(), k);
            for mb in rank {
                let t = mb.input_ids.len();
                prop_assert!(mb.seq_indices.len() == 1 || t <= max_tokens);
                prop_assert!(!mb.seq_indices.is_empty());
                prop_assert_eq!(mb.position_ids.len(), t);
                prop_assert_eq!(mb.loss_mask.len(), t);
                prop_assert_eq!(mb.old_logprobs.len(), t);
                prop_assert_eq!(mb.advantages.len(), t);
                prop_assert_eq!(*mb.cu_seqlens.last().unwrap() as usize, t);
                for (s, &i) in mb.seq_indices.iter().enumerate() {
                    let i = i as usize;
                    seen_seqs[i] += 1;
                    let (a, b) = (mb.cu_seqlens[s] as usize, mb.cu_seqlens[s + 1] as usize);
                    let p = prompts[i].len();
                    prop_assert_eq!(&mb.input_ids[a..a + p], &prompts[i][..]);
                    prop_assert_eq!(&mb.input_ids[a + p..b], &completions[i][..]);
                    prop_assert_eq!(&mb.old_logprobs[a + p..b], &logprobs[i][..]);
                    for (j, pos) in mb.position_ids[a..b].iter().enumerate() {
                        prop_assert_eq!(*pos, j as i64);
                    }
                    prop_assert!(mb.loss_mask[a..a + p].iter().all(|x| *x == 0.0));
                    prop_assert!(mb.loss_mask[a + p..b].iter().all(|x| *x == 1.0));
                    prop_assert!(mb.advantages[a + p..b].iter().all(|x| *x == i as f32));
                    prop_assert!(mb.advantages[a..a + p].iter().all(|x| *x == 0.0));
                    for tok in &mb.input_ids[a..b] {
                        seen_tokens[*tok as usize] += 1;
                    }
                }
            }
        }
        prop_assert!(seen_seqs.iter().all(|c| *c == 1));
        prop_assert!(seen_tokens[1..].iter().all(|c| *c == 1));
        // Same plan on a pool of a different size.
        let again = pool(3).install(|| pack_microbatches(&input, max_tokens, n_ranks)).unwrap();
        prop_assert_eq!(&packed, &again);
    }
}

#[test]
fn thread_count_does_not_change_results() {
    let mut completions = TextBatch::new();
    let mut golds = TextBatch::new();
    for i in 0..5_000 {
        completions.push(&format!("step {i}\nThe answer is {}.", i % 7));
        golds.push(&format!("#### {}", i % 5));
    }
    let one = pool(1)
        .install(|| grade_batch(&completions, &golds, GradeOptions::default()))
        .unwrap();
    let three = pool(3)
        .install(|| grade_batch(&completions, &golds, GradeOptions::default()))
        .unwrap();
    assert_eq!(one, three);

    let rewards: Vec<f64> = (0..(1 << 17))
        .map(|i| f64::from((i * 7919) % 13) / 13.0)
        .collect();
    for normalize_batch in [false, true] {
        let cfg = AdvantageConfig {
            normalize_batch,
            ..AdvantageConfig::default()
        };
        let a = pool(1)
            .install(|| group_advantages(&rewards, 8, &cfg))
            .unwrap();
        let b = pool(3)
            .install(|| group_advantages(&rewards, 8, &cfg))
            .unwrap();
        assert_eq!(a, b);
    }
}
