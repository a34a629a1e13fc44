//! Character folding applied to every text before answer extraction.
//!
//! A small NFKC-like table, limited to what matters for numbers: fullwidth
//! ASCII, Unicode minus signs and dashes, exotic spaces, multiplication and
//! division signs, non-dollar currency signs, degree signs, superscript,
//! subscript and mathematical digits, vulgar fractions and a few non-Latin
//! decimal digits. Everything else is kept as is. ASCII text is returned
//! without copying.

use std::borrow::Cow;

/// What one input character becomes.
enum Fold {
    Keep,
    Drop,
    Char(char),
    Str(&'static str),
    Superscript(char),
}

fn fold_char(c: char) -> Fold {
    let cp = c as u32;
    match cp {
        // Fullwidth ASCII variants (digits, letters, punctuation).
        0xFF01..=0xFF5E => Fold::Char(char::from_u32(cp - 0xFEE0).unwrap_or(c)),
        // Minus signs and dashes used as minus.
        0x2212 | 0x2012 | 0x2013 | 0xFE63 | 0x2796 => Fold::Char('-'),
        0xFE62 | 0x2795 => Fold::Char('+'),
        // Spaces.
        0x00A0 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => Fold::Char(' '),
        // Zero-width characters.
        0x200B..=0x200D | 0x2060 | 0xFEFF | 0x00AD => Fold::Drop,
        // Multiplication and division signs.
        0x00D7 | 0x22C5 | 0x00B7 | 0x2219 | 0x2217 | 0x2715 | 0x2716 => Fold::Char('*'),
        0x00F7 | 0x2044 | 0x2215 | 0x2797 => Fold::Char('/'),
        // Relations.
        0x2248 | 0x2243 | 0x2245 | 0x2261 => Fold::Char('='),
        0xFE66 => Fold::Char('='),
        // Degrees and units written as one symbol.
        0x00B0 | 0x2103 | 0x2109 | 0x00BA => Fold::Char(' '),
        // Currency signs other than '$'.
        0x20AC | 0x00A3 | 0x00A5 | 0x20B9 | 0x20A9 | 0x20BD | 0x20A6 | 0x20B1 | 0xFFE5 | 0xFFE1
        | 0xFE69 => Fold::Char('$'),
        0x00A2 => Fold::Char(' '),
        // Percent variants.
        0xFE6A | 0x066A => Fold::Char('%'),
        // Superscript digits become an exponent; subscripts plain digits.
        0x00B9 => Fold::Superscript('1'),
        0x00B2 => Fold::Superscript('2'),
        0x00B3 => Fold::Superscript('3'),
        0x2070 => Fold::Superscript('0'),
        0x2074..=0x2079 => Fold::Superscript(digit(cp - 0x2070)),
        0x2080..=0x2089 => Fold::Char(digit(cp - 0x2080)),
        // Mathematical alphanumeric digits (bold, double-struck, ...).
        0x1D7CE..=0x1D7FF => Fold::Char(digit((cp - 0x1D7CE) % 10)),
        // Arabic-Indic, extended Arabic-Indic and Devanagari digits.
        0x0660..=0x0669 => Fold::Char(digit(cp - 0x0660)),
        0x06F0..=0x06F9 => Fold::Char(digit(cp - 0x06F0)),
        0x0966..=0x096F => Fold::Char(digit(cp - 0x0966)),
        // Vulgar fractions: a leading space makes "3½" a mixed number.
        0x00BD => Fold::Str(" 1/2"),
        0x00BC => Fold::Str(" 1/4"),
        0x00BE => Fold::Str(" 3/4"),
        0x2153 => Fold::Str(" 1/3"),
        0x2154 => Fold::Str(" 2/3"),
        0x2155 => Fold::Str(" 1/5"),
        0x2156 => Fold::Str(" 2/5"),
        0x2157 => Fold::Str(" 3/5"),
        0x2158 => Fold::Str(" 4/5"),
        0x2159 => Fold::Str(" 1/6"),
        0x215A => Fold::Str(" 5/6"),
        0x215B => Fold::Str(" 1/8"),
        0x215C => Fold::Str(" 3/8"),
        0x215D => Fold::Str(" 5/8"),
        0x215E => Fold::Str(" 7/8"),
        _ => Fold::Keep,
    }
}

fn digit(d: u32) -> char {
    char::from_digit(d, 10).unwrap_or('0')
}

/// Fold `text` as described in the module docs. Linear time; borrows when
/// nothing needs folding (pure ASCII, or only characters kept as they are,
/// such as curly quotes).
pub fn fold(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let Some(first) = first_to_fold(text, 0) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    let mut prev_superscript = false;
    let mut copied = 0;
    let mut i = first;
    // Invariant: text[copied..i] is already final (ASCII or kept characters).
    while i < bytes.len() {
        if bytes[i] < 0x80 {
            i += 1;
            prev_superscript = false;
            continue;
        }
        let c = text[i..].chars().next().unwrap_or('\u{FFFD}');
        let width = c.len_utf8();
        let folded = fold_char(c);
        if matches!(folded, Fold::Keep) {
            i += width;
            prev_superscript = false;
            continue;
        }
        out.push_str(&text[copied..i]);
        let mut superscript = false;
        match folded {
            Fold::Keep | Fold::Drop => {}
            Fold::Char(r) => out.push(r),
            Fold::Str(s) => out.push_str(s),
            Fold::Superscript(d) => {
                if !prev_superscript {
                    out.push('^');
                }
                out.push(d);
                superscript = true;
            }
        }
        prev_superscript = superscript;
        i += width;
        copied = i;
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Byte index of the first character at or after `from` that folding
/// changes, if any.
fn first_to_fold(text: &str, from: usize) -> Option<usize> {
    if text.is_ascii() {
        return None;
    }
    let bytes = text.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        let k = bytes[i..].iter().position(|b| *b >= 0x80)?;
        i += k;
        let c = text[i..].chars().next()?;
        if !matches!(fold_char(c), Fold::Keep) {
            return Some(i);
        }
        i += c.len_utf8();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn ascii_is_borrowed() {
        assert!(matches!(fold("abc 123"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(
            fold("farmer’s “market” 5"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn folds_numbers() {
        assert_eq!(fold("\u{2212}５"), "-5");
        assert_eq!(fold("１，２３４．５"), "1,234.5");
        assert_eq!(fold("3×4÷2"), "3*4/2");
        assert_eq!(fold("€5"), "$5");
        assert_eq!(fold("10¹²"), "10^12");
        assert_eq!(fold("x²+1"), "x^2+1");
        assert_eq!(fold("3½"), "3 1/2");
        assert_eq!(fold("90°"), "90 ");
        assert_eq!(fold("a\u{200B}b\u{00A0}c"), "ab c");
        assert_eq!(fold("𝟒𝟐"), "42");
        assert_eq!(fold("x¹²y²"), "x^12y^2");
        assert_eq!(fold("a’s ５ b’s"), "a’s 5 b’s");
        assert_eq!(fold("٤٢"), "42");
    }
}
