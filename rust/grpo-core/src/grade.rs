//! Grading: compare an extracted answer with a reference answer.
//!
//! Two values match when they are equal as exact rationals; when both are
//! integers that is the only way. Otherwise they also match within a
//! relative tolerance of [`REL_TOL`]. An answer written with `%` also matches
//! through its value divided by 100 (`50%` matches `0.5` and `50`), and so does
//! a reference written with `%`. Completions without an answer, and
//! references that cannot be parsed, grade 0.

use rayon::prelude::*;

use crate::error::CoreError;
use crate::extract::{extract_answer, parse_gold, Answer};
use crate::rational::Rational;

/// Relative tolerance for non-integer comparisons.
pub const REL_TOL: f64 = 1e-6;

/// Items per rayon task in [`grade_batch`].
const GRADE_CHUNK: usize = 256;

fn values_match(a: Rational, b: Rational) -> bool {
    if a == b {
        return true;
    }
    if a.is_integer() && b.is_integer() {
        return false;
    }
    let (x, y) = (a.to_f64(), b.to_f64());
    (x - y).abs() <= REL_TOL * x.abs().max(y.abs())
}

fn variants(a: &Answer) -> [Option<Rational>; 2] {
    let hundredth = if a.percent {
        a.value.checked_div(Rational::from_int(100))
    } else {
        None
    };
    [Some(a.value), hundredth]
}

/// Whether a predicted answer matches the reference (see module docs).
pub fn answers_match(pred: &Answer, gold: &Answer) -> bool {
    let golds = variants(gold);
    variants(pred)
        .iter()
        .flatten()
        .any(|p| golds.iter().flatten().any(|g| values_match(*p, *g)))
}

/// Options of [`grade_one_with`] and [`grade_batch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GradeOptions {
    /// Refuse answers computed by an operator inside a box
    /// ([`Answer::evaluated`]): for tasks whose question is the expression
    /// (`What is 40 + 49?` answered `\boxed{40 + 49}`).
    pub literal_only: bool,
}

/// 1.0 when the completion's answer matches the reference, else 0.0.
/// `gold` may be GSM8K's raw answer field (`"... #### 72"`) or a bare answer.
pub fn grade_one(completion: &str, gold: &str) -> f32 {
    grade_one_with(completion, gold, GradeOptions::default())
}

/// [`grade_one`] with options.
pub fn grade_one_with(completion: &str, gold: &str, opts: GradeOptions) -> f32 {
    grade_parsed(completion, parse_gold(gold).as_ref(), opts)
}

/// Many strings stored back to back in one buffer (one allocation instead
/// of one per string); a string equal to the previous one can be stored
/// once ([`TextBatch::push_repeat`]).
#[derive(Clone, Debug, Default)]
pub struct TextBatch {
    buf: String,
    spans: Vec<(usize, usize)>,
}

impl TextBatch {
    /// An empty batch.
    pub fn new() -> TextBatch {
        TextBatch::default()
    }

    /// An empty batch with room for `n` strings of `bytes` bytes in total.
    pub fn with_capacity(n: usize, bytes: usize) -> TextBatch {
        TextBatch {
            buf: String::with_capacity(bytes),
            spans: Vec::with_capacity(n),
        }
    }

    /// Append one string.
    pub fn push(&mut self, s: &str) {
        let start = self.buf.len();
        self.buf.push_str(s);
        self.spans.push((start, self.buf.len()));
    }

    /// Append the last string again without copying it (an empty string if
    /// the batch is empty).
    pub fn push_repeat(&mut self) {
        let last = self.spans.last().copied().unwrap_or((0, 0));
        self.spans.push(last);
    }

    /// Remove all strings, keeping the allocated capacity for reuse.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    /// Bytes of string data the batch can hold without reallocating.
    pub fn capacity_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no strings.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The `i`-th string. Panics if `i >= len()`.
    pub fn get(&self, i: usize) -> &str {
        let (start, end) = self.spans[i];
        &self.buf[start..end]
    }
}

impl<S: AsRef<str>> FromIterator<S> for TextBatch {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> TextBatch {
        let mut t = TextBatch::new();
        for s in iter {
            t.push(s.as_ref());
        }
        t
    }
}

/// Grade `completions[i]` against `golds[i]` for every `i`, in parallel on
/// the current rayon pool. The result does not depend on the thread count.
pub fn grade_batch(
    completions: &TextBatch,
    golds: &TextBatch,
    opts: GradeOptions,
) -> Result<Vec<f32>, CoreError> {
    if completions.len() != golds.len() {
        return Err(CoreError::LengthMismatch {
            what: "completions and golds".into(),
            left: completions.len(),
            right: golds.len(),
        });
    }
    // Rollouts repeat each reference answer for the whole group: parse it once
    // per run of equal golds within a chunk.
    let n = completions.len();
    let chunks: Vec<Vec<f32>> = (0..n.div_ceil(GRADE_CHUNK))
        .into_par_iter()
        .map(|chunk| {
            let range = chunk * GRADE_CHUNK..((chunk + 1) * GRADE_CHUNK).min(n);
            let mut out = Vec::with_capacity(range.len());
            let mut cached: Option<(&str, Option<Answer>)> = None;
            for i in range {
                let gold_text = golds.get(i);
                let gold = match cached {
                    Some((text, parsed)) if text == gold_text => parsed,
                    _ => {
                        let parsed = parse_gold(gold_text);
                        cached = Some((gold_text, parsed));
                        parsed
                    }
                };
                out.push(grade_parsed(completions.get(i), gold.as_ref(), opts));
            }
            out
        })
        .collect();
    Ok(chunks.concat())
}

fn grade_parsed(completion: &str, gold: Option<&Answer>, opts: GradeOptions) -> f32 {
    let Some(g) = gold else {
        return 0.0;
    };
    match extract_answer(completion) {
        Some(p) if opts.literal_only && p.evaluated => 0.0,
        Some(p) if answers_match(&p, g) => 1.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grade_examples() {
        assert_eq!(grade_one("so \\boxed{72}", "blah #### 72"), 1.0);
        assert_eq!(grade_one("so \\boxed{73}", "blah #### 72"), 0.0);
        assert_eq!(grade_one("The answer is 1,000.", "1000"), 1.0);
        assert_eq!(grade_one("\\boxed{50\\%}", "0.5"), 1.0);
        assert_eq!(grade_one("\\boxed{50\\%}", "50"), 1.0);
        assert_eq!(grade_one("\\boxed{0.5}", "50%"), 1.0);
        assert_eq!(grade_one("\\boxed{\\frac{1}{3}}", "0.3333333"), 1.0);
        assert_eq!(grade_one("\\boxed{1000001}", "1000000"), 0.0);
        assert_eq!(grade_one("no answer here", "5"), 0.0);
        assert_eq!(grade_one("\\boxed{5}", "not a number"), 0.0);
        assert_eq!(grade_one("\\boxed{72.0}", "72"), 1.0);
    }

    #[test]
    fn literal_only_refuses_computed_answers() {
        let lit = GradeOptions { literal_only: true };
        for (text, gold) in [
            ("\\boxed{40 + 49}", "89"),
            ("\\boxed{34 * 29}", "986"),
            ("\\boxed{28 - 30}", "-2"),
            ("\\boxed{48 / 2}", "24"),
            ("\\boxed{\\frac{48}{2}}", "24"),
            ("\\boxed{2^3}", "8"),
            ("\\boxed{3 \\times 4}", "12"),
        ] {
            assert_eq!(grade_one(text, gold), 1.0, "{text}");
            assert_eq!(grade_one_with(text, gold, lit), 0.0, "{text}");
        }
        for (text, gold) in [
            ("\\boxed{89}", "89"),
            ("\\boxed{-2}", "-2"),
            ("\\boxed{1,000}", "1000"),
            ("\\boxed{7/2}", "3.5"),
            ("\\boxed{\\frac{1}{2}}", "0.5"),
            ("\\boxed{3 1/2}", "3.5"),
            ("\\boxed{40 + 49 = 89}", "89"),
            ("40 + 49 = 89", "89"),
            ("The answer is 89.", "89"),
        ] {
            assert_eq!(grade_one_with(text, gold, lit), 1.0, "{text}");
        }
    }

    #[test]
    fn batch_checks_lengths() {
        let c: TextBatch = ["a", "b"].into_iter().collect();
        let g: TextBatch = ["a"].into_iter().collect();
        assert!(matches!(
            grade_batch(&c, &g, GradeOptions::default()),
            Err(CoreError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn text_batch_roundtrip() {
        let mut t: TextBatch = ["", "héllo", "", "x"].into_iter().collect();
        t.push_repeat();
        assert_eq!(t.len(), 5);
        assert_eq!(t.get(4), "x");
        assert_eq!(t.get(0), "");
        assert_eq!(t.get(1), "héllo");
        assert_eq!(t.get(2), "");
        assert_eq!(t.get(3), "x");
    }
}
