//! Numbers written with a power of ten or a root: `1.2e3`, `5E-2`,
//! `3 \times 10^{4}`, `1.5\cdot10^3`, `\sqrt{16}`, `\sqrt[3]{27}`.
//!
//! Every form is matched with a bounded lookahead (a few spaces at most);
//! exponents are limited like powers ([`MAX_EXPONENT`]) and values must
//! fit the exact rationals, so `1e400` is refused rather than rounded.

use memchr::memchr;

use crate::extract::{is_alpha, is_digit};
use crate::rational::{Rational, MAX_EXPONENT};
use crate::tokens::{plain_int, simple_frac_arg};

/// Outcome of matching an exponent form after a number.
pub(crate) enum Sci {
    /// Not this form; the number ends where it did.
    No,
    /// A power of ten and the position after the form.
    Exp(i128, usize),
    /// The form, but refused (absurd exponent, glued letters); skip to here.
    Bad(usize),
}

/// Most spaces skipped between the parts of `3 \times 10^{4}`.
const MAX_GAP: usize = 3;

#[inline]
fn gap(b: &[u8], mut j: usize, to: usize) -> usize {
    let lim = (j + MAX_GAP).min(to);
    while j < lim && b[j] == b' ' {
        j += 1;
    }
    j
}

/// Optional sign and 1 to 4 digits at `j`: the signed value and its end;
/// `Err(end)` for too many digits or a value beyond [`MAX_EXPONENT`].
fn exponent_digits(b: &[u8], j: usize, to: usize) -> Option<Result<(i128, usize), usize>> {
    let neg = j < to && b[j] == b'-';
    let st = if j < to && matches!(b[j], b'-' | b'+') {
        j + 1
    } else {
        j
    };
    let mut k = st;
    while k < to && is_digit(b[k]) {
        k += 1;
    }
    if k == st {
        return None;
    }
    if k - st > 4 {
        return Some(Err(k));
    }
    let v = b[st..k]
        .iter()
        .fold(0i128, |a, d| a * 10 + i128::from(d - b'0'));
    if v > MAX_EXPONENT {
        return Some(Err(k));
    }
    Some(Ok((if neg { -v } else { v }, k)))
}

/// `e3`, `E+3`, `e-2` right after a number at `e`; a letter, `_` or
/// `.digit` glued after the exponent makes it an identifier (`3e4f`).
#[inline]
pub(crate) fn e_exponent(b: &[u8], e: usize, to: usize) -> Sci {
    if e >= to || !matches!(b[e], b'e' | b'E') {
        return Sci::No;
    }
    match exponent_digits(b, e + 1, to) {
        None => Sci::No,
        Some(Err(k)) => Sci::Bad(k),
        Some(Ok((x, k))) => {
            let glued = k < to
                && (b[k].is_ascii_alphanumeric()
                    || b[k] == b'_'
                    || (b[k] == b'.' && k + 1 < to && is_digit(b[k + 1])));
            if glued {
                Sci::Bad(k)
            } else {
                Sci::Exp(x, k)
            }
        }
    }
}

/// After a number at `e`: ` \times 10^{4}`, `\cdot10^3`, ` * 10^4`,
/// ` x 10^4` (spaces optional).
#[inline]
pub(crate) fn times_ten(b: &[u8], e: usize, to: usize) -> Sci {
    // Fast reject: most numbers are followed by a space and a word.
    let j = gap(b, e, to);
    if j >= to || !matches!(b[j], b'*' | b'x' | b'X' | b'\\') {
        return Sci::No;
    }
    times_ten_at(b, j, to)
}

/// [`times_ten`] from the operator at `j`.
fn times_ten_at(b: &[u8], mut j: usize, to: usize) -> Sci {
    let cmd = |name: &[u8]| {
        b[j + 1..to].starts_with(name)
            && !(j + 1 + name.len() < to && is_alpha(b[j + 1 + name.len()]))
    };
    j = match b[j] {
        b'*' | b'x' | b'X' => j + 1,
        b'\\' if cmd(b"times") => j + 6,
        b'\\' if cmd(b"cdot") => j + 5,
        _ => return Sci::No,
    };
    j = gap(b, j, to);
    if !b[j..to].starts_with(b"10") || (j + 2 < to && is_digit(b[j + 2])) {
        return Sci::No;
    }
    j = gap(b, j + 2, to);
    if j >= to || b[j] != b'^' {
        return Sci::No;
    }
    j = gap(b, j + 1, to);
    let braced = j < to && b[j] == b'{';
    if braced {
        j = gap(b, j + 1, to);
    }
    let (x, mut k) = match exponent_digits(b, j, to) {
        None => return Sci::No,
        Some(Err(k)) => return Sci::Bad(k),
        Some(Ok(v)) => v,
    };
    if braced {
        k = gap(b, k, to);
        if k >= to || b[k] != b'}' {
            return Sci::No;
        }
        k += 1;
    }
    Sci::Exp(x, k)
}

/// `value * 10^exp`, exactly.
pub(crate) fn scale(value: Rational, exp: i128) -> Option<Rational> {
    value.checked_mul(Rational::from_int(10).checked_pow(exp)?)
}

/// `\sqrt{x}` / `\sqrt[n]{x}` / `\sqrt4` in free text, from `j` (just after
/// `\sqrt`), with a plain number under the root. `Err(end)` when it is not
/// a plain exact root: resume after its argument, so that the `2` of
/// `\sqrt{2}` is not read as a number.
pub(crate) fn root_in_text(b: &[u8], j: usize, to: usize) -> Result<(Rational, usize), usize> {
    let mut k = gap(b, j, to);
    let mut n = 2;
    if k < to && b[k] == b'[' {
        let (v, e) = plain_int(b, k + 1, to).ok_or(k + 1)?;
        if e >= to || b[e] != b']' {
            return Err(e);
        }
        n = v.num();
        k = e + 1;
    }
    let Some((x, e)) = simple_frac_arg(b, k, to) else {
        // Skip a short argument such as `{x+1}`; a long one is left to
        // the token scan (bounded, so that this stays linear).
        let lim = (k + 64).min(to);
        let skip = if k < to && b[k] == b'{' {
            memchr(b'}', &b[k..lim]).map_or(k + 1, |p| k + p + 1)
        } else {
            k
        };
        return Err(skip);
    };
    x.exact_root(n).map(|r| (r, e)).ok_or(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(f: fn(&[u8], usize, usize) -> Sci, s: &str) -> Option<(i128, usize)> {
        match f(s.as_bytes(), 0, s.len()) {
            Sci::Exp(x, k) => Some((x, k)),
            Sci::No => None,
            Sci::Bad(_) => Some((i128::MIN, 0)),
        }
    }

    #[test]
    fn exponents() {
        assert_eq!(exp(e_exponent, "e3"), Some((3, 2)));
        assert_eq!(exp(e_exponent, "E+3 m"), Some((3, 3)));
        assert_eq!(exp(e_exponent, "e-12"), Some((-12, 4)));
        assert_eq!(exp(e_exponent, "eggs"), None);
        assert_eq!(exp(e_exponent, "e4f"), Some((i128::MIN, 0)));
        assert_eq!(exp(e_exponent, "e400"), Some((i128::MIN, 0)));
        assert_eq!(exp(times_ten, " \\times 10^{4}"), Some((4, 14)));
        assert_eq!(exp(times_ten, "\\cdot10^3."), Some((3, 9)));
        assert_eq!(exp(times_ten, " x 10^-2"), Some((-2, 8)));
        assert_eq!(exp(times_ten, " * 100^2"), None);
        assert_eq!(exp(times_ten, " \\times 10 = 30"), None);
        assert_eq!(exp(times_ten, "\\timesx 10^2"), None);
        assert_eq!(exp(times_ten, " \\times 10^{99999}"), Some((i128::MIN, 0)));
    }

    #[test]
    fn roots() {
        let root = |s: &str| root_in_text(s.as_bytes(), 0, s.len());
        assert_eq!(root("{16}"), Ok((Rational::from_int(4), 4)));
        assert_eq!(root("[3]{27}"), Ok((Rational::from_int(3), 7)));
        assert_eq!(root("{2.25} cm"), Ok((Rational::new(3, 2).unwrap(), 6)));
        assert_eq!(root("4"), Ok((Rational::from_int(2), 1)));
        assert_eq!(root("{2}"), Err(3));
        assert_eq!(root("{x+1} y"), Err(5));
        assert_eq!(root("[x]{8}"), Err(1));
    }
}
