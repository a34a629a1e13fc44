//! Answer extraction: find the final answer in a completion and parse it into
//! an exact number.
//!
//! Location, in this order (the first rule that finds something decides):
//!
//! 1. [`Source::Boxed`]: the last non-empty `\boxed{...}` / `\fbox{...}`
//!    (brace-balanced; an unclosed one takes the rest of the text).
//! 2. [`Source::Hashes`]: the last `#### ...` line whose content starts like
//!    a number (digit, sign, `.`, `$`, `(` or a backslash command), so that
//!    Markdown headings such as `#### Step 2` are not mistaken for answers.
//! 3. [`Source::Anchor`]: the last anchor phrase (`final answer`,
//!    `the answer is`, `the answer isn't`, `answer:`; case-insensitive), then
//!    the first committed number of the sentence or line that follows it
//!    (blank lines and Markdown `**` skipped); if that number starts an
//!    arithmetic chain ending in `=` in the same sentence (`The answer is
//!    2+3=5.`) the number after the `=` wins. Numbers retracted by the words
//!    just before them are passed over (`The answer is not 72, it is 70.`:
//!    `not`, `isn't`, `instead of`, `rather than`, `I said`, `previously
//!    said`), and number words count where an answer stands (`The answer is
//!    twelve.`). A later self-correction (`wait`, `oops`, `correction`,
//!    `mistake`) followed by a stated number (after `=`, `is`, `it's`,
//!    `gives` ...) replaces it: the last committed answer wins. When that
//!    sentence has no number ("Answer: Let's think step by step.") the anchor
//!    is ignored and rule 4 applies.
//! 4. [`Source::LastNumber`]: the last number in the text that is not
//!    retracted (`It is 70, not 72.` gives 70).
//!
//! Rules 1 and 2 commit: when their content is not exactly one number (for
//! example `\boxed{18 and 20}` or `\boxed{18, 20}`), there is no answer, even
//! if numbers appear elsewhere. See [`parse_span`] for what a box may contain.
//!
//! Number tokens in free text (rules 3 and 4) also read `1 000 000`,
//! `1.2e3`, `3 \times 10^{4}` and exact roots `\sqrt{16}`.
//!
//! Everything runs in time linear in the input (plus a bounded parser depth),
//! allocates at most a few copies of the input, and never panics.

use memchr::{memchr, memchr3, memrchr};
use std::fmt;

use crate::anchor::anchor_answer;
use crate::negation::negated_before;
use crate::normalize::fold;
use crate::rational::Rational;
use crate::span::parse_span_bytes;
use crate::tokens::next_token;

/// Numbers with more digits than this are rejected.
pub const MAX_DIGITS: usize = 40;
/// Maximum nesting of parentheses, braces, `\frac` and unary signs inside
/// a box; deeper input is not an answer.
pub const MAX_DEPTH: u32 = 64;

/// Start of the last occurrence of `needle` in `hay`: `memrchr` on the
/// needle's last byte (rare in prose for the needles used here), then a
/// comparison. Faster than a general reverse substring search on short text.
pub(crate) fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&last, head) = needle.split_last()?;
    let mut end = hay.len();
    while let Some(p) = memrchr(last, &hay[..end]) {
        if p >= head.len() && &hay[p - head.len()..p] == head {
            return Some(p - head.len());
        }
        end = p;
    }
    None
}

/// A parsed answer: an exact value plus how it was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The exact value (a percent sign is *not* applied: `50%` has value 50).
    pub value: Rational,
    /// Written with a `%` sign; grading then also accepts `value / 100`.
    pub percent: bool,
    /// Written in decimal notation without division; rendered as a decimal.
    pub decimal: bool,
    /// Computed rather than written as one number: inside a box by an
    /// operator (`+ - * ^`, or a division that comes out whole:
    /// `\boxed{40 + 49}`), and anywhere a power of ten `3 \times 10^{4}` or an
    /// exact root `\sqrt{16}`. Literal: number words, `1 000`, `1.2e3`.
    /// Tasks whose question is itself the expression refuse such answers.
    pub evaluated: bool,
}

impl Answer {
    /// An integer answer.
    pub const fn int(n: i128) -> Answer {
        Answer {
            value: Rational::from_int(n),
            percent: false,
            decimal: false,
            evaluated: false,
        }
    }
}

impl fmt::Display for Answer {
    /// Canonical form: `"1000"`, `"-3.5"` (decimal input), `"1/2"`
    /// (fractions, divisions, mixed numbers). The percent sign is dropped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        if !v.is_integer() && self.decimal {
            if let Some(s) = v.to_decimal_string() {
                return f.write_str(&s);
            }
        }
        write!(f, "{v}")
    }
}

/// Which rule located the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `\boxed{...}` or `\fbox{...}`.
    Boxed,
    /// A `#### ...` line.
    Hashes,
    /// An anchor phrase such as "The answer is".
    Anchor,
    /// The last number in the text.
    LastNumber,
    /// Nothing that looks like an answer.
    Nothing,
}

/// Result of [`extract`]: where the answer was looked for, and what was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extraction {
    /// The rule that decided.
    pub source: Source,
    /// The answer, `None` when the deciding rule's content is not a number.
    pub answer: Option<Answer>,
}

/// Extract the final answer of `text` (see the module docs for the rules).
pub fn extract_answer(text: &str) -> Option<Answer> {
    extract(text).answer
}

/// Like [`extract_answer`], also reporting which rule decided.
pub fn extract(text: &str) -> Extraction {
    let folded = fold(text);
    let b = folded.as_bytes();
    if let Some((s, e)) = find_last_box(b) {
        return Extraction {
            source: Source::Boxed,
            answer: parse_span_bytes(&b[s..e]),
        };
    }
    if let Some((s, e)) = find_hashes_line(b) {
        return Extraction {
            source: Source::Hashes,
            answer: parse_span_bytes(&b[s..e]),
        };
    }
    if let Some(a) = anchor_answer(b) {
        return Extraction {
            source: Source::Anchor,
            answer: Some(a),
        };
    }
    match last_number(b) {
        Some(a) => Extraction {
            source: Source::LastNumber,
            answer: Some(a),
        },
        None => Extraction {
            source: Source::Nothing,
            answer: None,
        },
    }
}

/// Parse a reference answer: GSM8K's raw answer field (`"... #### 72"`,
/// the content of the last `####` line), a `\boxed{...}` answer, or a bare
/// answer (`"72"`, `"\frac{1}{2}"`, `"$1,000"`).
pub fn parse_gold(gold: &str) -> Option<Answer> {
    // "####" is ASCII, so it can be found before folding; only its line is folded.
    if let Some(p) = rfind(gold.as_bytes(), b"####") {
        let cs = p + 4;
        let le = memchr(b'\n', &gold.as_bytes()[cs..]).map_or(gold.len(), |k| cs + k);
        return parse_span(&gold[cs..le]);
    }
    let folded = fold(gold);
    let b = folded.as_bytes();
    if let Some((s, e)) = find_last_box(b) {
        return parse_span_bytes(&b[s..e]);
    }
    parse_span_bytes(b)
}

/// Parse a whole string as one answer, with the rules used inside a box:
///
/// * LaTeX wrappers `\text{}`, `\textbf{}`, `\mathrm{}`, `\mbox{}` ... are
///   unwrapped; `\left`, `\right`, `\,`, `\!`, `$`, `\$` and currency signs
///   are dropped; `^\circ`, `^{\circ}` and `°` are dropped;
/// * the right-hand side of the last `=` is taken (`x = 5`, `2+3=5`), and a
///   leading `Label:` is dropped;
/// * the rest is one arithmetic expression over numbers with
///   `+ - * / ^ ( )`, `\times`, `\cdot`, `\div`, `\frac{a}{b}`, `\frac12`,
///   exact roots `\sqrt{16}`, `\sqrt[3]{27}`, mixed numbers (`3 1/2`,
///   `3\frac{1}{2}`), evaluated exactly; optionally followed by `%` and by
///   unit words (`5 dollars`, `12 apples`, `3 km/h`);
/// * or else prose with exactly one value in it (`She needs 18 more`,
///   `\text{The answer is } 18`, `18 \text{ (apples)}`, `twelve`,
///   `\text{forty-two}`); two different numbers
///   (`18 and 20`, `5 \text{ or six}`) are no answer;
/// * numbers: thousands separators only in exact groups of three (`1,234`,
///   `1{,}234`, `1 234` also with the spaces U+00A0, U+202F, U+2009),
///   decimals (`0.5`, `.5`), `e` exponents (`1.2e3`, `5E-2`), at most
///   [`MAX_DIGITS`] digits; a trailing period is ignored;
/// * refused: anything else, e.g. two numbers (`18, 20`, `4 2`), `inf`,
///   `NaN`, `\infty`, `\pi`, `\sqrt{2}`, `0x1F`, `1_000`, `3e4f`, division
///   by zero, overflow of the exact `i128` rationals, exponents beyond
///   [`crate::rational::MAX_EXPONENT`], nesting deeper than [`MAX_DEPTH`].
pub fn parse_span(span: &str) -> Option<Answer> {
    parse_span_bytes(fold(span).as_bytes())
}

// ---------------------------------------------------------------------------
// Locating the answer
// ---------------------------------------------------------------------------

#[inline]
pub(crate) fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic()
}

#[inline]
pub(crate) fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

#[inline]
pub(crate) fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Index of the `}` closing a group whose content starts at `start`
/// (escaped braces `\{`, `\}` are ignored). Iterative, linear.
fn matching_brace(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = start;
    while i < b.len() {
        let k = memchr3(b'\\', b'{', b'}', &b[i..])?;
        i += k;
        match b[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'{' => depth += 1,
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
        }
        i += 1;
    }
    None
}

/// Content range of the last non-empty `\boxed{...}` / `\fbox{...}`.
fn find_last_box(b: &[u8]) -> Option<(usize, usize)> {
    let mut end = b.len();
    while let Some(p) = rfind(&b[..end], b"box") {
        end = p;
        let after = if b[p + 3..].starts_with(b"ed") && (p == 0 || !is_alpha(b[p - 1])) {
            p + 5
        } else if p >= 2 && &b[p - 2..p] == b"\\f" {
            p + 3
        } else {
            continue;
        };
        if after < b.len() && is_alpha(b[after]) {
            continue;
        }
        let open = skip_spaces(b, after);
        if open >= b.len() || b[open] != b'{' {
            continue;
        }
        let start = open + 1;
        let close = matching_brace(b, start).unwrap_or(b.len());
        if b[start..close].iter().any(|c| !c.is_ascii_whitespace()) {
            return Some((start, close));
        }
    }
    None
}

fn numberish(c: u8) -> bool {
    is_digit(c) || matches!(c, b'-' | b'+' | b'.' | b'$' | b'(' | b'\\')
}

/// Content range of the last `####` line that starts like a number.
fn find_hashes_line(b: &[u8]) -> Option<(usize, usize)> {
    let mut end = b.len();
    // Line end of the previous (later) candidate: the next line end is
    // searched only up to there, so a run of `#` costs linear time.
    let (mut le, mut prev_cs) = (b.len(), b.len());
    while let Some(p) = rfind(&b[..end], b"####") {
        end = p;
        let cs = p + 4;
        if let Some(k) = memchr(b'\n', &b[cs..prev_cs.max(cs)]) {
            le = cs + k;
        }
        prev_cs = cs;
        let s = skip_spaces(b, cs).min(le);
        if s < le && numberish(b[s]) {
            return Some((s, le));
        }
    }
    None
}

/// The last valid number in the text that is not retracted (`not 72`).
/// Tokens never span a newline, so the text is scanned line by line from the
/// end; every line is read at most once.
fn last_number(b: &[u8]) -> Option<Answer> {
    let mut end = b.len();
    loop {
        let d = b[..end].iter().rposition(|c| is_digit(*c))?;
        let ls = memrchr(b'\n', &b[..d]).map_or(0, |p| p + 1);
        let le = memchr(b'\n', &b[d..]).map_or(b.len(), |p| d + p);
        let mut last = None;
        let mut i = ls;
        while let Some((a, s, e)) = next_token(b, i, le) {
            last = Some((a, s));
            i = e;
        }
        // Retraction is checked for the last token only, and the line
        // rescanned in the rare case that it is retracted (`70, not 72`).
        let found = match last {
            Some((a, s)) if !negated_before(b, s) => Some(a),
            Some(_) => last_unretracted(b, ls, le),
            None => None,
        };
        if found.is_some() || ls == 0 {
            return found;
        }
        end = ls;
    }
}

/// The last token of `b[ls..le]` that is not retracted.
fn last_unretracted(b: &[u8], ls: usize, le: usize) -> Option<Answer> {
    let mut keep = None;
    let mut i = ls;
    while let Some((a, s, e)) = next_token(b, i, le) {
        if !negated_before(b, s) {
            keep = Some(a);
        }
        i = e;
    }
    keep
}
