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
//!    `the answer is`, `answer:`; case-insensitive), then the first number
//!    of the sentence or line that follows it (blank lines and Markdown `**`
//!    skipped); if that number starts an arithmetic chain ending in `=` in the
//!    same sentence (`The answer is 2+3=5.`) the number after the `=` wins.
//!    When that sentence has no number ("Answer: Let's think step by step.")
//!    the anchor is ignored and rule 4 applies.
//! 4. [`Source::LastNumber`]: the last number in the text.
//!
//! Rules 1 and 2 commit: when their content is not exactly one number (for
//! example `\boxed{18 and 20}` or `\boxed{18, 20}`), there is no answer, even
//! if numbers appear elsewhere. See [`parse_span`] for what a box may contain.
//!
//! Everything runs in time linear in the input (plus a bounded parser depth),
//! allocates at most a few copies of the input, and never panics.

use memchr::{memchr, memchr3, memrchr, memrchr2};
use std::fmt;

use crate::normalize::fold;
use crate::rational::Rational;

/// Numbers with more digits than this are rejected.
pub const MAX_DIGITS: usize = 40;
/// Maximum nesting of parentheses, braces, `\frac` and unary signs inside
/// a box; deeper input is not an answer.
pub const MAX_DEPTH: u32 = 64;

/// Marker for `\frac` (and `\dfrac`, `\tfrac`, `\cfrac`) in cleaned spans.
const FRAC: u8 = 0x01;
/// Marker for one non-ASCII character in cleaned spans (treated as a letter).
const LETTER: u8 = 0x03;

/// Start of the last occurrence of `needle` in `hay`: `memrchr` on the
/// needle's last byte (rare in prose for the needles used here), then a
/// comparison. Faster than a general reverse substring search on short text.
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
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
    /// Computed inside a box by an operator (`+ - * ^`, or a division that
    /// comes out whole) rather than written as one number: `\boxed{40 + 49}`.
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
    if let Some(pos) = find_last_anchor(b) {
        if let Some(a) = anchor_number(b, pos) {
            return Extraction {
                source: Source::Anchor,
                answer: Some(a),
            };
        }
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
/// * the rest must be one arithmetic expression over numbers with
///   `+ - * / ^ ( )`, `\times`, `\cdot`, `\div`, `\frac{a}{b}`, `\frac12`,
///   mixed numbers (`3 1/2`, `3\frac{1}{2}`), evaluated exactly; optionally
///   followed by `%` and by unit words (`5 dollars`, `12 apples`, `3 km/h`);
/// * numbers: thousands separators only in exact groups of three (`1,234`,
///   `1{,}234`), decimals (`0.5`, `.5`), at most [`MAX_DIGITS`] digits; a
///   trailing period is ignored;
/// * refused: anything else, e.g. two numbers (`18, 20`, `18 and 20`),
///   `inf`, `NaN`, `\infty`, `\pi`, `0x1F`, `1_000`, `1e5`, division by zero,
///   overflow of the exact `i128` rationals, exponents beyond
///   [`crate::rational::MAX_EXPONENT`], nesting deeper than [`MAX_DEPTH`].
pub fn parse_span(span: &str) -> Option<Answer> {
    parse_span_bytes(fold(span).as_bytes())
}

// ---------------------------------------------------------------------------
// Locating the answer
// ---------------------------------------------------------------------------

fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic()
}

fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
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
    while let Some(p) = rfind(&b[..end], b"####") {
        end = p;
        let cs = p + 4;
        let le = memchr(b'\n', &b[cs..]).map_or(b.len(), |k| cs + k);
        let s = skip_spaces(b, cs).min(le);
        if s < le && numberish(b[s]) {
            return Some((s, le));
        }
    }
    None
}

/// Position just after the last anchor phrase.
fn find_last_anchor(b: &[u8]) -> Option<usize> {
    let mut end = b.len();
    while end >= 6 {
        let k = memrchr2(b'r', b'R', &b[..end])?;
        end = k;
        if k < 5 || !b[k - 5..=k].eq_ignore_ascii_case(b"answer") {
            continue;
        }
        if let Some(pos) = anchor_at(b, k - 5) {
            return Some(pos);
        }
    }
    None
}

/// If the word "answer" at `s` is part of an anchor phrase, the position
/// just after the phrase.
fn anchor_at(b: &[u8], s: usize) -> Option<usize> {
    let e = s + 6;
    if e < b.len() && is_alpha(b[e]) {
        return None; // "answered", "answers"
    }
    if s > 0 && is_alpha(b[s - 1]) {
        return None;
    }
    // "answer:" (also "**Answer**:" and "answer :")
    let mut j = e;
    while j < b.len() && matches!(b[j], b' ' | b'*') {
        j += 1;
    }
    if j < b.len() && b[j] == b':' {
        return Some(j + 1);
    }
    // Word before "answer".
    let mut k = s;
    while k > 0 && matches!(b[k - 1], b' ' | b'*' | b'_') {
        k -= 1;
    }
    let word_before = |w: &[u8]| {
        k < s
            && k >= w.len()
            && b[k - w.len()..k].eq_ignore_ascii_case(w)
            && (k == w.len() || !is_alpha(b[k - w.len() - 1]))
    };
    if word_before(b"final") {
        return Some(e);
    }
    if word_before(b"the") {
        let j = skip_spaces(b, e);
        if j > e
            && j + 2 <= b.len()
            && b[j..j + 2].eq_ignore_ascii_case(b"is")
            && (j + 2 == b.len() || !is_alpha(b[j + 2]))
        {
            return Some(j + 2);
        }
    }
    None
}

/// End of the sentence or line starting at `i`.
fn clause_end(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'\n' => return j,
            b'.' if j + 1 == b.len() || b[j + 1].is_ascii_whitespace() => return j,
            _ => j += 1,
        }
    }
    b.len()
}

/// Whether `b` holds only arithmetic between two numbers: operators,
/// digits, spaces, brackets, `$`, `%` and backslash commands.
fn is_arithmetic(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            i += 1;
            while i < b.len() && is_alpha(b[i]) {
                i += 1;
            }
            continue;
        }
        if !(is_digit(c) || b" +-*/^().,{}$%".contains(&c)) {
            return false;
        }
        i += 1;
    }
    true
}

/// The first number of the sentence (or line) that follows an anchor,
/// following `a op b = c` chains; `None` when that sentence has no number
/// (as in "Answer: Let's think step by step."), so the anchor does not apply.
fn anchor_number(b: &[u8], pos: usize) -> Option<Answer> {
    let mut start = pos;
    while start < b.len()
        && (b[start].is_ascii_whitespace() || matches!(b[start], b'*' | b':' | b'#'))
    {
        start += 1;
    }
    let ce = clause_end(b, start);
    let (mut ans, _, mut e) = next_token(b, start, ce)?;
    while let Some(k) = memchr(b'=', &b[e..ce]) {
        let eq = e + k;
        if !is_arithmetic(&b[e..eq]) {
            break;
        }
        match next_token(b, eq + 1, ce) {
            Some((a, _, e2)) => {
                ans = a;
                e = e2;
            }
            None => break,
        }
    }
    Some(ans)
}

/// The last valid number in the text. Tokens never span a newline, so the
/// text is scanned line by line from the end; every line is read at most once.
fn last_number(b: &[u8]) -> Option<Answer> {
    let mut end = b.len();
    loop {
        let d = b[..end].iter().rposition(|c| is_digit(*c))?;
        let ls = memrchr(b'\n', &b[..d]).map_or(0, |p| p + 1);
        let le = memchr(b'\n', &b[d..]).map_or(b.len(), |p| d + p);
        let mut last = None;
        let mut i = ls;
        while let Some((a, _, e)) = next_token(b, i, le) {
            last = Some(a);
            i = e;
        }
        if last.is_some() || ls == 0 {
            return last;
        }
        end = ls;
    }
}

// ---------------------------------------------------------------------------
// Number tokens in free text
// ---------------------------------------------------------------------------

/// Outcome of trying to read a number at one position of free text.
enum Tok {
    /// A number and the position after it.
    Valid(Answer, usize),
    /// Looks numeric but is refused (identifier, hex, too long...); resume here.
    Skip(usize),
    /// No number starts here.
    NoStart,
}

/// First valid number token in `b[i..to]`: (answer, start, end).
fn next_token(b: &[u8], mut i: usize, to: usize) -> Option<(Answer, usize, usize)> {
    while i < to {
        let c = b[i];
        if !(is_digit(c) || c == b'.' || c == b'-' || c == b'\\') {
            i += 1;
            continue;
        }
        match try_token(b, i, to) {
            Tok::Valid(a, e) => return Some((a, i, e)),
            Tok::Skip(e) => i = e.max(i + 1),
            Tok::NoStart => i += 1,
        }
    }
    None
}

fn skip_word(b: &[u8], mut i: usize, to: usize) -> usize {
    while i < to && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b',')) {
        i += 1;
    }
    i
}

fn try_token(b: &[u8], i: usize, to: usize) -> Tok {
    let c = b[i];
    let prev = if i > 0 { b[i - 1] } else { b' ' };
    let next = if i + 1 < to { b[i + 1] } else { b' ' };
    match c {
        b'0'..=b'9' => {
            if is_alpha(prev) || prev == b'_' {
                return Tok::Skip(skip_word(b, i, to));
            }
            unsigned_token(b, i, to)
        }
        b'.' => {
            if is_digit(next) && !prev.is_ascii_alphanumeric() {
                unsigned_token(b, i, to)
            } else {
                Tok::NoStart
            }
        }
        b'-' => {
            if prev.is_ascii_alphanumeric() || matches!(prev, b')' | b']' | b'}' | b'_') {
                return Tok::NoStart;
            }
            let mut j = i + 1;
            if j < to && b[j] == b'$' {
                j += 1;
            }
            let starts_number =
                j < to && (is_digit(b[j]) || (b[j] == b'.' && j + 1 < to && is_digit(b[j + 1])));
            if !starts_number {
                return Tok::NoStart;
            }
            match unsigned_token(b, j, to) {
                Tok::Valid(a, e) => match a.value.checked_neg() {
                    Some(v) => Tok::Valid(Answer { value: v, ..a }, e),
                    None => Tok::Skip(e),
                },
                other => other,
            }
        }
        b'\\' => frac_token(b, i, to),
        _ => Tok::NoStart,
    }
}

/// `\frac{a}{b}` / `\dfrac12` with plain (signed) number arguments.
fn frac_token(b: &[u8], i: usize, to: usize) -> Tok {
    let mut j = i + 1;
    while j < to && is_alpha(b[j]) {
        j += 1;
    }
    if j == i + 1 {
        return Tok::NoStart;
    }
    if !matches!(&b[i + 1..j], b"frac" | b"dfrac" | b"tfrac" | b"cfrac") {
        return Tok::Skip(j);
    }
    match simple_frac_args(b, j, to) {
        Some((value, e)) => {
            let (percent, e) = percent_suffix(b, e, to);
            Tok::Valid(
                Answer {
                    value,
                    percent,
                    decimal: false,
                    evaluated: false,
                },
                e,
            )
        }
        None => Tok::Skip(j),
    }
}

/// One `\frac` argument in free text: `{[-]number}` or a single digit.
fn simple_frac_arg(b: &[u8], i: usize, to: usize) -> Option<(Rational, usize)> {
    let mut j = i;
    while j < to && b[j] == b' ' {
        j += 1;
    }
    if j < to && is_digit(b[j]) {
        return Some((Rational::from_int(i128::from(b[j] - b'0')), j + 1));
    }
    if j >= to || b[j] != b'{' {
        return None;
    }
    j += 1;
    let neg = j < to && b[j] == b'-';
    if neg {
        j += 1;
    }
    let lit = parse_literal(b, j, to).ok()?;
    j = lit.end;
    if j >= to || b[j] != b'}' {
        return None;
    }
    let v = if neg {
        lit.value.checked_neg()?
    } else {
        lit.value
    };
    Some((v, j + 1))
}

fn simple_frac_args(b: &[u8], i: usize, to: usize) -> Option<(Rational, usize)> {
    let (n, j) = simple_frac_arg(b, i, to)?;
    let (d, j) = simple_frac_arg(b, j, to)?;
    Some((n.checked_div(d)?, j))
}

/// Optional `%`, ` %` or `\%` after a number.
fn percent_suffix(b: &[u8], e: usize, to: usize) -> (bool, usize) {
    let j = if e < to && b[e] == b' ' { e + 1 } else { e };
    if j < to && b[j] == b'%' {
        (true, j + 1)
    } else if j + 1 < to && b[j] == b'\\' && b[j + 1] == b'%' {
        (true, j + 2)
    } else {
        (false, e)
    }
}

fn plain_int(b: &[u8], i: usize, to: usize) -> Option<(Rational, usize)> {
    let mut j = i;
    let mut acc = Acc::new();
    while j < to && is_digit(b[j]) {
        acc.push(b[j]);
        j += 1;
    }
    if j == i || !acc.ok {
        return None;
    }
    Some((Rational::from_int(acc.mant), j))
}

fn proper_fraction(n: Rational, d: Rational) -> Option<Rational> {
    let ok = n.is_integer() && d.is_integer() && n.num() > 0 && n.num() < d.num() && d.num() > 0;
    if ok {
        n.checked_div(d)
    } else {
        None
    }
}

/// A number token starting at a digit or at `.digit`.
fn unsigned_token(b: &[u8], i: usize, to: usize) -> Tok {
    let lit = match parse_literal(b, i, to) {
        Ok(l) => l,
        Err(end) => return Tok::Skip(skip_word(b, end, to)),
    };
    let mut e = lit.end;
    let mut value = lit.value;
    let mut decimal = !lit.is_int;
    if e < to {
        let c = b[e];
        let c1 = if e + 1 < to { b[e + 1] } else { b' ' };
        let c2 = if e + 2 < to { b[e + 2] } else { b' ' };
        let hex = lit.single_zero && matches!(c, b'x' | b'X' | b'b' | b'B' | b'o' | b'O');
        let sci = matches!(c, b'e' | b'E')
            && (is_digit(c1) || (matches!(c1, b'+' | b'-') && is_digit(c2)));
        if c == b'_' || (hex && c1.is_ascii_alphanumeric()) || sci {
            return Tok::Skip(skip_word(b, e, to));
        }
    }
    if e + 1 < to && b[e] == b'/' && is_digit(b[e + 1]) {
        let Some((den, e2)) = plain_int(b, e + 1, to) else {
            return Tok::Skip(skip_word(b, e + 1, to));
        };
        let Some(v) = value.checked_div(den) else {
            return Tok::Skip(e2);
        };
        value = v;
        decimal = false;
        e = e2;
    } else if lit.is_int {
        if let Some((frac, e2)) = text_mixed_tail(b, e, to) {
            if let Some(v) = value.checked_add(frac) {
                value = v;
                e = e2;
            }
        }
    }
    let (percent, e) = percent_suffix(b, e, to);
    Tok::Valid(
        Answer {
            value,
            percent,
            decimal,
            evaluated: false,
        },
        e,
    )
}

/// The fractional part of a mixed number in free text: ` 1/2` (one space)
/// or `\frac{1}{2}`, a proper fraction.
fn text_mixed_tail(b: &[u8], e: usize, to: usize) -> Option<(Rational, usize)> {
    if e + 1 < to && b[e] == b' ' && is_digit(b[e + 1]) {
        let (n, j) = plain_int(b, e + 1, to)?;
        if j + 1 < to && b[j] == b'/' && is_digit(b[j + 1]) {
            let (d, j2) = plain_int(b, j + 1, to)?;
            let continues = j2 < to
                && (b[j2].is_ascii_alphanumeric()
                    || b[j2] == b'/'
                    || (b[j2] == b'.' && j2 + 1 < to && is_digit(b[j2 + 1])));
            if !continues {
                return Some((proper_fraction(n, d)?, j2));
            }
        }
        return None;
    }
    let mut j = e;
    while j < to && b[j] == b' ' {
        j += 1;
    }
    if j < to && b[j] == b'\\' {
        let mut k = j + 1;
        while k < to && is_alpha(b[k]) {
            k += 1;
        }
        if matches!(&b[j + 1..k], b"frac" | b"dfrac" | b"tfrac") {
            let (n, k2) = simple_frac_arg(b, k, to)?;
            let (d, k3) = simple_frac_arg(b, k2, to)?;
            return Some((proper_fraction(n, d)?, k3));
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Literals
// ---------------------------------------------------------------------------

/// Digit accumulator with the digit cap and overflow check.
struct Acc {
    mant: i128,
    ndig: usize,
    ok: bool,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            mant: 0,
            ndig: 0,
            ok: true,
        }
    }

    fn push(&mut self, d: u8) {
        self.ndig += 1;
        if self.ndig > MAX_DIGITS {
            self.ok = false;
        }
        if self.ok {
            match self
                .mant
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(d - b'0')))
            {
                Some(m) => self.mant = m,
                None => self.ok = false,
            }
        }
    }
}

/// An unsigned number literal.
struct Lit {
    value: Rational,
    end: usize,
    is_int: bool,
    /// The literal is exactly `0` (for recognising `0x...`).
    single_zero: bool,
}

/// Parse `123`, `1,234,567`, `12.5`, `.5`, `1,234.56` at `i`. `Err(end)` for
/// something numeric that is refused (too many digits, overflow).
fn parse_literal(b: &[u8], i: usize, to: usize) -> Result<Lit, usize> {
    let mut acc = Acc::new();
    let mut j = i;
    while j < to && is_digit(b[j]) {
        acc.push(b[j]);
        j += 1;
    }
    let int_len = j - i;
    if (1..=3).contains(&int_len) {
        while j + 3 < to
            && b[j] == b','
            && b[j + 1..j + 4].iter().all(|c| is_digit(*c))
            && (j + 4 >= to || !is_digit(b[j + 4]))
        {
            for &d in &b[j + 1..j + 4] {
                acc.push(d);
            }
            j += 4;
        }
    }
    let mut frac_len = 0u32;
    if j + 1 < to && b[j] == b'.' && is_digit(b[j + 1]) {
        j += 1;
        while j < to && is_digit(b[j]) {
            acc.push(b[j]);
            frac_len = frac_len.saturating_add(1);
            j += 1;
        }
    }
    if int_len == 0 && frac_len == 0 {
        return Err(i + 1);
    }
    if !acc.ok {
        return Err(j);
    }
    let den = 10i128.checked_pow(frac_len).ok_or(j)?;
    let value = Rational::new(acc.mant, den).ok_or(j)?;
    Ok(Lit {
        value,
        end: j,
        is_int: frac_len == 0,
        single_zero: int_len == 1 && b[i] == b'0' && j == i + 1,
    })
}

// ---------------------------------------------------------------------------
// Parsing an answer span (box content, #### line, reference answer)
// ---------------------------------------------------------------------------

/// Wrappers whose braces are dropped but whose content is kept.
fn is_wrapper(name: &[u8]) -> bool {
    matches!(
        name,
        b"text"
            | b"textrm"
            | b"textbf"
            | b"textit"
            | b"textsf"
            | b"texttt"
            | b"textup"
            | b"textnormal"
            | b"mathrm"
            | b"mathbf"
            | b"mathit"
            | b"mathsf"
            | b"mathtt"
            | b"mathnormal"
            | b"boldsymbol"
            | b"bm"
            | b"mbox"
            | b"hbox"
            | b"operatorname"
            | b"emph"
            | b"underline"
    )
}

/// Commands dropped entirely (sizing, style switches, currency, degrees).
fn is_ignored_command(name: &[u8]) -> bool {
    matches!(
        name,
        b"left"
            | b"right"
            | b"big"
            | b"Big"
            | b"bigg"
            | b"Bigg"
            | b"bigl"
            | b"bigr"
            | b"Bigl"
            | b"Bigr"
            | b"biggl"
            | b"biggr"
            | b"displaystyle"
            | b"textstyle"
            | b"scriptstyle"
            | b"rm"
            | b"bf"
            | b"it"
            | b"sf"
            | b"tt"
            | b"limits"
            | b"nolimits"
            | b"mathstrut"
            | b"strut"
            | b"dollar"
            | b"textdollar"
            | b"euro"
            | b"pounds"
            | b"yen"
            | b"circ"
            | b"degree"
            | b"textdegree"
            | b"quad"
            | b"qquad"
    )
}

/// After a `^`: the end of `\circ` or `{\circ}`, if that is what follows.
fn degree_after_caret(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while j < b.len() && b[j] == b' ' {
        j += 1;
    }
    let braced = j < b.len() && b[j] == b'{';
    if braced {
        j += 1;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
    }
    if !b[j..].starts_with(b"\\circ") || (j + 5 < b.len() && is_alpha(b[j + 5])) {
        return None;
    }
    j += 5;
    if braced {
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j >= b.len() || b[j] != b'}' {
            return None;
        }
        j += 1;
    }
    Some(j)
}

/// Rewrite a span into a small ASCII language for the parser: wrappers
/// unwrapped, noise dropped, `\frac` as [`FRAC`], operators as ASCII.
/// `None` for an unknown command (`\sqrt`, `\pi`, `\infty`, `\_` ...).
fn clean(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut wrapper_stack: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && is_alpha(b[j]) {
                    j += 1;
                }
                if j == start {
                    match b.get(start) {
                        None => {}
                        Some(b',' | b'!' | b';' | b':' | b'>' | b'$') => {}
                        Some(b' ' | b'\\') => out.push(b' '),
                        Some(b'%') => out.push(b'%'),
                        Some(_) => return None,
                    }
                    i = start + 1;
                    continue;
                }
                let name = &b[start..j];
                i = j;
                if is_wrapper(name) {
                    let k = skip_spaces(b, j);
                    if k < b.len() && b[k] == b'{' {
                        wrapper_stack.push(true);
                        i = k + 1;
                    }
                    out.push(b' ');
                } else if is_ignored_command(name) {
                    if matches!(name, b"left" | b"right") && b.get(j) == Some(&b'.') {
                        i += 1;
                    }
                    out.push(b' ');
                } else {
                    match name {
                        b"frac" | b"dfrac" | b"tfrac" | b"cfrac" => out.push(FRAC),
                        b"times" | b"cdot" | b"ast" => out.push(b'*'),
                        b"div" => out.push(b'/'),
                        b"approx" | b"equiv" | b"simeq" => out.push(b'='),
                        b"percent" => out.push(b'%'),
                        _ => return None,
                    }
                }
            }
            b'{' => {
                if b.get(i + 1) == Some(&b',') && b.get(i + 2) == Some(&b'}') {
                    out.push(b',');
                    i += 3;
                    continue;
                }
                wrapper_stack.push(false);
                out.push(b'{');
                i += 1;
            }
            b'}' => {
                match wrapper_stack.pop() {
                    Some(true) => out.push(b' '),
                    _ => out.push(b'}'),
                }
                i += 1;
            }
            b'^' => {
                if let Some(k) = degree_after_caret(b, i + 1) {
                    out.push(b' ');
                    i = k;
                } else {
                    out.push(b'^');
                    i += 1;
                }
            }
            b'$' => i += 1,
            b'[' => {
                out.push(b'(');
                i += 1;
            }
            b']' => {
                out.push(b')');
                i += 1;
            }
            b'~' | 0..=0x1F | 0x7F => {
                out.push(b' ');
                i += 1;
            }
            0x80..=0xFF => {
                out.push(LETTER);
                i += 1;
                while i < b.len() && (b[i] & 0xC0) == 0x80 {
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

fn is_letter(c: u8) -> bool {
    is_alpha(c) || c == LETTER
}

/// Unit words after a number: letters, spaces, `/`, `.`, `-` and `^2`.
fn valid_unit_tail(t: &[u8]) -> bool {
    if !t.first().is_some_and(|c| is_letter(*c)) {
        return false;
    }
    let mut i = 0;
    while i < t.len() {
        let c = t[i];
        if is_letter(c) || matches!(c, b' ' | b'/' | b'.' | b'-') {
            i += 1;
            continue;
        }
        if c == b'^' {
            i += 1;
            let braced = t.get(i) == Some(&b'{');
            if braced {
                i += 1;
            }
            if t.get(i) == Some(&b'-') {
                i += 1;
            }
            let st = i;
            while i < t.len() && is_digit(t[i]) {
                i += 1;
            }
            if i == st {
                return false;
            }
            if braced {
                if t.get(i) != Some(&b'}') {
                    return false;
                }
                i += 1;
            }
            continue;
        }
        return false;
    }
    true
}

/// Fast path for the common plain number (`72`, `-3`, `1,200`, `2.5`).
fn plain_number_span(span: &[u8]) -> Option<Answer> {
    let t = span.trim_ascii();
    let (neg, body) = match t.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, t),
    };
    if body.is_empty()
        || !body
            .iter()
            .all(|c| is_digit(*c) || *c == b',' || *c == b'.')
    {
        return None;
    }
    let lit = parse_literal(body, 0, body.len()).ok()?;
    if lit.end != body.len() {
        return None;
    }
    let value = if neg {
        lit.value.checked_neg()?
    } else {
        lit.value
    };
    Some(Answer {
        value,
        percent: false,
        decimal: !lit.is_int,
        evaluated: false,
    })
}

fn parse_span_bytes(span: &[u8]) -> Option<Answer> {
    if let Some(a) = plain_number_span(span) {
        return Some(a);
    }
    let cleaned = clean(span)?;
    let mut s: &[u8] = &cleaned;
    if let Some(k) = memrchr(b'=', s) {
        s = &s[k + 1..];
    }
    if let Some(k) = memrchr(b':', s) {
        let label = &s[..k];
        if !label.is_empty()
            && label
                .iter()
                .all(|c| is_letter(*c) || matches!(c, b' ' | b'*'))
        {
            s = &s[k + 1..];
        }
    }
    let mut s = trim_spaces(s);
    if let Some(rest) = s.strip_suffix(b".") {
        s = trim_spaces(rest);
    }
    if s.is_empty() {
        return None;
    }
    let mut p = Parser {
        s,
        i: 0,
        depth: 0,
        saw_decimal: false,
        saw_div: false,
        saw_op: false,
    };
    let value = p.expr()?;
    p.skip_ws();
    let mut percent = false;
    if p.peek() == Some(b'%') {
        percent = true;
        p.i += 1;
        p.skip_ws();
    }
    if p.i < s.len() && !valid_unit_tail(&s[p.i..]) {
        return None;
    }
    Some(Answer {
        value,
        percent,
        decimal: p.saw_decimal && !p.saw_div,
        evaluated: p.saw_op,
    })
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let a = s.iter().position(|c| *c != b' ').unwrap_or(s.len());
    let z = s.iter().rposition(|c| *c != b' ').map_or(a, |z| z + 1);
    &s[a..z]
}

/// Recursive-descent evaluator over a cleaned span; depth-limited.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: u32,
    saw_decimal: bool,
    saw_div: bool,
    /// An operator was applied (see [`Answer::evaluated`]).
    saw_op: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn expr(&mut self) -> Option<Rational> {
        let mut v = self.term()?;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'+') => {
                    self.i += 1;
                    self.saw_op = true;
                    v = v.checked_add(self.term()?)?;
                }
                Some(b'-') => {
                    self.i += 1;
                    self.saw_op = true;
                    v = v.checked_sub(self.term()?)?;
                }
                _ => return Some(v),
            }
        }
    }

    fn term(&mut self) -> Option<Rational> {
        let mut v = self.unary()?;
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'*') => {
                    self.i += 1;
                    self.saw_op = true;
                    v = v.checked_mul(self.unary()?)?;
                }
                Some(b'/') => {
                    self.i += 1;
                    self.saw_div = true;
                    v = v.checked_div(self.unary()?)?;
                    // `7/2` is a number; `48/2` is a sum left undone.
                    self.saw_op |= v.is_integer();
                }
                _ => return Some(v),
            }
        }
    }

    fn unary(&mut self) -> Option<Rational> {
        self.depth += 1;
        let r = if self.depth > MAX_DEPTH {
            None
        } else {
            self.unary_inner()
        };
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Option<Rational> {
        self.skip_ws();
        match self.peek()? {
            b'-' => {
                self.i += 1;
                self.unary()?.checked_neg()
            }
            b'+' => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }

    fn power(&mut self) -> Option<Rational> {
        let base = self.primary()?;
        self.skip_ws();
        if self.peek() == Some(b'^') {
            self.i += 1;
            self.saw_op = true;
            let e = self.unary()?;
            if !e.is_integer() {
                return None;
            }
            return base.checked_pow(e.num());
        }
        Some(base)
    }

    fn group(&mut self, close: u8) -> Option<Rational> {
        self.i += 1;
        let v = self.expr()?;
        self.expect(close)?;
        Some(v)
    }

    fn primary(&mut self) -> Option<Rational> {
        self.skip_ws();
        match self.peek()? {
            b'(' => self.group(b')'),
            b'{' => self.group(b'}'),
            FRAC => {
                self.i += 1;
                let n = self.frac_arg()?;
                let d = self.frac_arg()?;
                self.saw_div = true;
                let v = n.checked_div(d)?;
                self.saw_op |= v.is_integer();
                Some(v)
            }
            c if is_digit(c) || c == b'.' => self.number(),
            _ => None,
        }
    }

    fn frac_arg(&mut self) -> Option<Rational> {
        self.skip_ws();
        match self.peek()? {
            b'{' => self.group(b'}'),
            c if is_digit(c) => {
                self.i += 1;
                Some(Rational::from_int(i128::from(c - b'0')))
            }
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Rational> {
        let lit = parse_literal(self.s, self.i, self.s.len()).ok()?;
        self.i = lit.end;
        if !lit.is_int {
            self.saw_decimal = true;
            return Some(lit.value);
        }
        let save = self.i;
        if let Some(frac) = self.mixed_fraction() {
            return lit.value.checked_add(frac);
        }
        self.i = save;
        Some(lit.value)
    }

    /// `3 1/2` or `3\frac{1}{2}` after the integer part.
    fn mixed_fraction(&mut self) -> Option<Rational> {
        let had_space = self.peek() == Some(b' ');
        self.skip_ws();
        match self.peek()? {
            FRAC => {
                self.i += 1;
                let n = self.frac_arg()?;
                let d = self.frac_arg()?;
                proper_fraction(n, d)
            }
            c if had_space && is_digit(c) => {
                let (n, j) = plain_int(self.s, self.i, self.s.len())?;
                if self.s.get(j) != Some(&b'/') {
                    return None;
                }
                let (d, k) = plain_int(self.s, j + 1, self.s.len())?;
                self.i = k;
                proper_fraction(n, d)
            }
            _ => None,
        }
    }
}
