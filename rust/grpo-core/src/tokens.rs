//! Number tokens in free text (anchor sentences, the last number) and the
//! number literals shared with the box parser.
//!
//! A token is a plain number (`1,234.5`, `1 000 000`, `.5`, `-3`), a
//! fraction `a/b` or mixed number `3 1/2`, `\frac{a}{b}`, a power of ten
//! (`1.2e3`, `3 \times 10^{4}`) or an exact root (`\sqrt{16}`), with an
//! optional `%`. Identifiers (`x2`, `1_000`), hex and glued exponents
//! (`3e4f`) are skipped.

use crate::extract::{is_alpha, is_digit, Answer, MAX_DIGITS};
use crate::notation::{e_exponent, root_in_text, scale, times_ten, Sci};
use crate::rational::Rational;

/// Outcome of trying to read a number at one position of free text.
pub(crate) enum Tok {
    /// A number and the position after it.
    Valid(Answer, usize),
    /// Looks numeric but is refused (identifier, hex, too long...); resume here.
    Skip(usize),
    /// No number starts here.
    NoStart,
}

/// First valid number token in `b[i..to]`: (answer, start, end).
pub(crate) fn next_token(b: &[u8], mut i: usize, to: usize) -> Option<(Answer, usize, usize)> {
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

pub(crate) fn skip_word(b: &[u8], mut i: usize, to: usize) -> usize {
    while i < to && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b',')) {
        i += 1;
    }
    i
}

pub(crate) fn try_token(b: &[u8], i: usize, to: usize) -> Tok {
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
        b'\\' => command_token(b, i, to),
        _ => Tok::NoStart,
    }
}

/// `\frac{a}{b}` / `\dfrac12` with plain (signed) number arguments, or an
/// exact root `\sqrt{16}` / `\sqrt[3]{27}` (computed: [`Answer::evaluated`]).
fn command_token(b: &[u8], i: usize, to: usize) -> Tok {
    let mut j = i + 1;
    while j < to && is_alpha(b[j]) {
        j += 1;
    }
    if j == i + 1 {
        return Tok::NoStart;
    }
    let (value, e, evaluated) = match &b[i + 1..j] {
        b"frac" | b"dfrac" | b"tfrac" | b"cfrac" => match simple_frac_args(b, j, to) {
            Some((v, e)) => (v, e, false),
            None => return Tok::Skip(j),
        },
        b"sqrt" => match root_in_text(b, j, to) {
            Ok((v, e)) => (v, e, true),
            Err(e) => return Tok::Skip(e.max(j)),
        },
        _ => return Tok::Skip(j),
    };
    let (percent, e) = percent_suffix(b, e, to);
    Tok::Valid(
        Answer {
            value,
            percent,
            decimal: false,
            evaluated,
        },
        e,
    )
}

/// One `\frac` argument in free text: `{[-]number}` or a single digit.
pub(crate) fn simple_frac_arg(b: &[u8], i: usize, to: usize) -> Option<(Rational, usize)> {
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

pub(crate) fn plain_int(b: &[u8], i: usize, to: usize) -> Option<(Rational, usize)> {
    let mut j = i;
    let mut acc = Acc::new();
    while j < to && is_digit(b[j]) {
        acc.push(b[j]);
        j += 1;
    }
    if j == i || !acc.ok {
        return None;
    }
    Some((Rational::from_int(acc.mant()), j))
}

pub(crate) fn proper_fraction(n: Rational, d: Rational) -> Option<Rational> {
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
    if e < to {
        let c = b[e];
        let c1 = if e + 1 < to { b[e + 1] } else { b' ' };
        let hex = lit.single_zero && matches!(c, b'x' | b'X' | b'b' | b'B' | b'o' | b'O');
        if c == b'_' || (hex && c1.is_ascii_alphanumeric()) {
            return Tok::Skip(skip_word(b, e, to));
        }
    }
    let (mut value, mut decimal, mut evaluated) = (lit.value, !lit.is_int, false);
    // `1.2e3` is a literal; `3 \times 10^{4}` is computed.
    let (power, computed) = match e_exponent(b, e, to) {
        Sci::No => (times_ten(b, e, to), true),
        sci => (sci, false),
    };
    match power {
        Sci::Bad(k) => return Tok::Skip(skip_word(b, k, to)),
        Sci::Exp(x, k) => {
            let Some(v) = scale(value, x) else {
                return Tok::Skip(k);
            };
            (value, decimal, evaluated, e) = (v, true, computed, k);
        }
        Sci::No => {
            if let Some((v, k)) = fraction_tail(b, &lit, to) {
                (value, decimal, e) = (v, false, k);
            } else if e + 1 < to && b[e] == b'/' && is_digit(b[e + 1]) {
                return Tok::Skip(skip_word(b, e + 1, to));
            }
        }
    }
    let (percent, e) = percent_suffix(b, e, to);
    Tok::Valid(
        Answer {
            value,
            percent,
            decimal,
            evaluated,
        },
        e,
    )
}

/// `/b` or a mixed-number tail after the literal; `None` for neither (the
/// caller refuses a `/b` that failed, such as a division by zero).
fn fraction_tail(b: &[u8], lit: &Lit, to: usize) -> Option<(Rational, usize)> {
    let e = lit.end;
    if e + 1 < to && b[e] == b'/' && is_digit(b[e + 1]) {
        let (den, e2) = plain_int(b, e + 1, to)?;
        return Some((lit.value.checked_div(den)?, e2));
    }
    if lit.is_int {
        if let Some((frac, e2)) = text_mixed_tail(b, e, to) {
            if let Some(v) = lit.value.checked_add(frac) {
                return Some((v, e2));
            }
        }
    }
    None
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

/// Digit accumulator with the digit cap and overflow check. The first 18
/// digits accumulate in a `u64` (cheap); longer numbers continue in checked
/// `i128` arithmetic.
struct Acc {
    small: u64,
    big: i128,
    ndig: usize,
    ok: bool,
}

/// Digits that always fit a `u64` accumulator.
const SMALL_DIGITS: usize = 18;

impl Acc {
    fn new() -> Acc {
        Acc {
            small: 0,
            big: 0,
            ndig: 0,
            ok: true,
        }
    }

    #[inline]
    fn push(&mut self, d: u8) {
        self.ndig += 1;
        let d = d - b'0';
        if self.ndig <= SMALL_DIGITS {
            self.small = self.small * 10 + u64::from(d);
            return;
        }
        if self.ndig > MAX_DIGITS {
            self.ok = false;
        }
        if self.ndig == SMALL_DIGITS + 1 {
            self.big = i128::from(self.small);
        }
        if self.ok {
            match self
                .big
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(d)))
            {
                Some(m) => self.big = m,
                None => self.ok = false,
            }
        }
    }

    /// The accumulated value (meaningful when `ok`).
    fn mant(&self) -> i128 {
        if self.ndig <= SMALL_DIGITS {
            i128::from(self.small)
        } else {
            self.big
        }
    }
}

/// An unsigned number literal.
pub(crate) struct Lit {
    pub(crate) value: Rational,
    pub(crate) end: usize,
    pub(crate) is_int: bool,
    /// The literal is exactly `0` (for recognising `0x...`).
    single_zero: bool,
}

/// Whether a group of three digits ending at `k` is complete: no fourth
/// digit; after a space group also no letter, `_` or `/` (`2 100g`,
/// `3 100/200` are not thousands).
fn group_ends(b: &[u8], k: usize, to: usize, sep: u8) -> bool {
    if k >= to {
        return true;
    }
    let c = b[k];
    if sep == b',' {
        !is_digit(c)
    } else {
        !(c.is_ascii_alphanumeric() || c == b'_' || c == b'/')
    }
}

/// Parse `123`, `1,234,567`, `1 234 567`, `12.5`, `.5`, `1,234.56` at `i`. `Err(end)` for
/// something numeric that is refused (too many digits, overflow).
pub(crate) fn parse_literal(b: &[u8], i: usize, to: usize) -> Result<Lit, usize> {
    let mut acc = Acc::new();
    let mut j = i;
    while j < to && is_digit(b[j]) {
        acc.push(b[j]);
        j += 1;
    }
    let int_len = j - i;
    // Thousands groups: `1,234` or `1 234` (one kind per number; a space
    // group never follows a leading 0: `0 100` is two numbers).
    let sep = if j < to && (b[j] == b',' || (b[j] == b' ' && b[i] != b'0')) {
        b[j]
    } else {
        0
    };
    if (1..=3).contains(&int_len) && sep != 0 {
        while j + 3 < to
            && b[j] == sep
            && b[j + 1..j + 4].iter().all(|c| is_digit(*c))
            && group_ends(b, j + 4, to, sep)
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
    let value = Rational::new(acc.mant(), den).ok_or(j)?;
    Ok(Lit {
        value,
        end: j,
        is_int: frac_len == 0,
        single_zero: int_len == 1 && b[i] == b'0' && j == i + 1,
    })
}
