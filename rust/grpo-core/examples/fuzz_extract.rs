//! A self-contained mutation fuzzer for answer extraction and grading
//! (stable Rust has no cargo-fuzz).
//!
//! ```text
//! FUZZ_SECS=10 cargo run -p grpo-core --release --example fuzz_extract
//! ```
//!
//! Environment: `FUZZ_SECS` (default 10), `FUZZ_SEED` (default 1),
//! `FUZZ_MAX_MS` per-input time limit (default 250 ms for inputs up to
//! 1 MB). Each iteration mutates a corpus entry with a seeded xorshift,
//! then checks: no panic; bounded time; an extracted answer rendered
//! canonically and boxed extracts to the same value; grading that boxed
//! rendering against it gives 1.0. Failing inputs are written to
//! `target/fuzz-failures/` and the process exits with status 1.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use grpo_core::{extract_answer, grade_one, parse_gold};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SEEDS: &[&str] = &[
    "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18",
    "The answer is $1,234.50.",
    "So the final answer is \\boxed{\\frac{3}{4}}.",
    "\\boxed{3\\frac{1}{2}} or \\boxed{2^{10}}",
    "**Final Answer**\n\n$\\boxed{42}$",
    "x = 5, so 2+3=5 and the answer is 5 apples",
    "\\boxed{\\text{18 and 20}}",
    "\\boxed{\\left(\\dfrac{12}{5}\\right)^\\circ}",
    "Answer: −５０％",
    "#### Step 1\nWe compute 0x1F and 1_000 and 1e5.",
    "\\fbox{1{,}000}",
    "The answer is not 72, it is 70. Wait, 8 * 9 = 72.",
    "\\boxed{\\text{Maria makes } \\$18 \\text{ per day}}",
    "The answer is one hundred and five. \\boxed{twenty-first}",
    "\\boxed{1\u{202F}250} or 3 \\times 10^{4} or 1.2E+3 and \\sqrt[3]{27}",
    "",
];

const SNIPPETS: &[&str] = &[
    "\\boxed{",
    "\\fbox{",
    "{",
    "}",
    "\\frac",
    "\\dfrac",
    "\\text{",
    "\\left(",
    "\\right)",
    "^",
    "^{\\circ}",
    "\\%",
    "%",
    "$",
    "\\$",
    "=",
    "+",
    "-",
    "*",
    "/",
    "(",
    ")",
    ",",
    ".",
    " ",
    "\n",
    "0",
    "1",
    "7",
    "12",
    "999",
    "1,000",
    "3 1/2",
    "####",
    "#### ",
    "The answer is ",
    "answer:",
    "final answer",
    "\u{2212}",
    "\u{FF15}",
    "½",
    "²",
    "°",
    "€",
    "\u{0}",
    "\u{FFFD}",
    "\\times",
    "\\cdot",
    "e5",
    "_",
    "0x",
    "inf",
    "NaN",
    "\\infty",
    "apples",
    "\\\\",
    "\\",
    "{,}",
    "\u{1F600}",
    "twelve",
    "forty-two",
    " hundred and ",
    " thousand ",
    "a million",
    "third",
    " not ",
    "isn't ",
    "instead of ",
    "rather than ",
    "I previously said ",
    "Wait, ",
    " = ",
    "1.2e3",
    "E+",
    "e-",
    " \\times 10^{",
    "\\cdot10^",
    "\\sqrt{",
    "\\sqrt[3]{",
    "1 000",
    "\u{00A0}",
    "\u{202F}",
    "She needs ",
    " more",
];

fn mutate(rng: &mut XorShift, corpus: &[String]) -> String {
    let mut chars: Vec<char> = corpus[rng.below(corpus.len())].chars().collect();
    for _ in 0..1 + rng.below(8) {
        let pos = rng.below(chars.len() + 1);
        match rng.below(7) {
            0 | 1 => {
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                chars.splice(pos..pos, s.chars());
            }
            2 if !chars.is_empty() => {
                let end = (pos + 1 + rng.below(16)).min(chars.len());
                chars.drain(pos.min(end)..end);
            }
            3 if !chars.is_empty() => {
                let c = char::from_u32(rng.below(0x3000) as u32).unwrap_or('?');
                let p = pos.min(chars.len() - 1);
                chars[p] = c;
            }
            4 => {
                // Repeat a snippet many times: deep nesting, long numbers.
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                let times = 1 + rng.below(20_000);
                let block: Vec<char> = s.chars().cycle().take(s.chars().count() * times).collect();
                chars.splice(pos..pos, block);
            }
            5 => {
                let other: Vec<char> = corpus[rng.below(corpus.len())].chars().collect();
                chars.splice(pos..pos, other);
            }
            _ => {
                let n = rng.next() % 10_000_000;
                chars.splice(pos..pos, n.to_string().chars());
            }
        }
        if chars.len() > 1_000_000 {
            chars.truncate(1_000_000);
        }
    }
    chars.into_iter().collect()
}

fn check(text: &str, limit: Duration) -> Result<(), String> {
    let t0 = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let answer = extract_answer(text);
        let _ = parse_gold(text);
        let _ = grade_one(text, "#### 42");
        if let Some(a) = answer {
            let boxed = format!("\\boxed{{{a}}}");
            let again = extract_answer(&boxed).map(|x| x.value);
            if again != Some(a.value) {
                return Err(format!("rendering {a} does not round-trip: {again:?}"));
            }
            if grade_one(&boxed, &a.to_string()) != 1.0 {
                return Err(format!("{a} does not grade against itself"));
            }
        }
        Ok(())
    }));
    let elapsed = t0.elapsed();
    match outcome {
        Err(_) => Err("panic".into()),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) if elapsed > limit => Err(format!("took {elapsed:?} (limit {limit:?})")),
        Ok(Ok(())) => Ok(()),
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs = env_u64("FUZZ_SECS", 10);
    let seed = env_u64("FUZZ_SEED", 1).max(1);
    let limit = Duration::from_millis(env_u64("FUZZ_MAX_MS", 250));
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut corpus: Vec<String> = SEEDS.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut iterations, mut bytes, mut failures) = (0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        let input = mutate(&mut rng, &corpus);
        bytes += input.len() as u64;
        iterations += 1;
        if let Err(why) = check(&input, limit) {
            failures += 1;
            let dir = std::path::Path::new("target/fuzz-failures");
            let _ = std::fs::create_dir_all(dir);
            let path = dir.join(format!("failure-{seed}-{iterations}.txt"));
            let _ = std::fs::write(&path, &input);
            eprintln!(
                "FAIL ({why}) on {} bytes, saved to {}",
                input.len(),
                path.display()
            );
            if failures >= 10 {
                break;
            }
        }
        // Keep small interesting inputs to mutate further.
        if input.len() < 4_096 && extract_answer(&input).is_some() && rng.below(8) == 0 {
            if corpus.len() < 512 {
                corpus.push(input);
            } else {
                let k = SEEDS.len() + rng.below(corpus.len() - SEEDS.len());
                corpus[k] = input;
            }
        }
    }
    println!(
        "fuzz_extract: {iterations} inputs, {:.1} MB, {failures} failures, seed {seed}, {secs} s",
        bytes as f64 / 1e6
    );
    if failures > 0 {
        std::process::exit(1);
    }
}
