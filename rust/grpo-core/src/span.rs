//! Parsing an answer span (box content, `####` line, reference answer):
//! [`clean`] rewrites LaTeX into a small ASCII language, then the span is
//! one expression ([`crate::parser`]) optionally followed by `%` and unit
//! words, or else prose with one number in it ([`crate::prose`]).

use memchr::memrchr;

use crate::extract::{is_alpha, is_digit, skip_spaces, Answer};
use crate::parser::Parser;
use crate::prose::prose_answer;
use crate::tokens::parse_literal;
use crate::words::has_number_word;

/// Marker for `\frac` (and `\dfrac`, `\tfrac`, `\cfrac`) in cleaned spans.
pub(crate) const FRAC: u8 = 0x01;
/// Marker for `\sqrt` in cleaned spans; a root index keeps its `[` `]`.
pub(crate) const ROOT: u8 = 0x02;
/// Marker for one non-ASCII character in cleaned spans (treated as a letter).
pub(crate) const LETTER: u8 = 0x03;

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

/// Open groups while cleaning a span.
#[derive(Default)]
struct Clean {
    /// Per open `{`: whether it belongs to a wrapper (`\text{`), whose `}`
    /// is dropped.
    wrappers: Vec<bool>,
    /// Open `\sqrt[` indexes, whose `]` stays a bracket.
    root_index: usize,
}

/// Clean the backslash command at `i`; the position after it, or `None`
/// for an unknown command.
fn clean_command(b: &[u8], i: usize, out: &mut Vec<u8>, st: &mut Clean) -> Option<usize> {
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
        return Some(start + 1);
    }
    let name = &b[start..j];
    if is_wrapper(name) {
        out.push(b' ');
        let k = skip_spaces(b, j);
        if k < b.len() && b[k] == b'{' {
            st.wrappers.push(true);
            return Some(k + 1);
        }
        return Some(j);
    }
    if is_ignored_command(name) {
        out.push(b' ');
        let dot = matches!(name, b"left" | b"right") && b.get(j) == Some(&b'.');
        return Some(j + usize::from(dot));
    }
    match name {
        b"frac" | b"dfrac" | b"tfrac" | b"cfrac" => out.push(FRAC),
        b"sqrt" => {
            out.push(ROOT);
            let k = skip_spaces(b, j);
            if b.get(k) == Some(&b'[') {
                out.push(b'[');
                st.root_index += 1;
                return Some(k + 1);
            }
        }
        b"times" | b"cdot" | b"ast" => out.push(b'*'),
        b"div" => out.push(b'/'),
        b"approx" | b"equiv" | b"simeq" => out.push(b'='),
        b"percent" => out.push(b'%'),
        _ => return None,
    }
    Some(j)
}

/// Rewrite a span into a small ASCII language for the parser: wrappers
/// unwrapped, noise dropped, `\frac` as [`FRAC`], `\sqrt` as [`ROOT`],
/// operators as ASCII. `None` for an unknown command (`\pi`, `\infty`,
/// `\_` ...).
fn clean(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    let mut state = Clean::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\\' => i = clean_command(b, i, &mut out, &mut state)?,
            b'{' => {
                if b.get(i + 1) == Some(&b',') && b.get(i + 2) == Some(&b'}') {
                    out.push(b',');
                    i += 3;
                    continue;
                }
                state.wrappers.push(false);
                out.push(b'{');
                i += 1;
            }
            b'}' => {
                match state.wrappers.pop() {
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
                if state.root_index > 0 {
                    state.root_index -= 1;
                    out.push(b']');
                } else {
                    out.push(b')');
                }
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

pub(crate) fn is_letter(c: u8) -> bool {
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

/// Parse a folded span (see [`crate::parse_span`] for the rules).
pub(crate) fn parse_span_bytes(span: &[u8]) -> Option<Answer> {
    if let Some(a) = plain_number_span(span) {
        return Some(a);
    }
    let cleaned = clean(span)?;
    let s = answer_part(&cleaned)?;
    expression(s).or_else(|| prose_answer(s))
}

/// The part of a cleaned span that holds the answer: after the last `=`
/// and a leading `Label:`, trimmed, without a final period.
fn answer_part(cleaned: &[u8]) -> Option<&[u8]> {
    let mut s = cleaned;
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
    (!s.is_empty()).then_some(s)
}

/// One expression, then optionally `%` and unit words (without number
/// words: `5 \text{ or six}` is two numbers).
fn expression(s: &[u8]) -> Option<Answer> {
    let mut p = Parser::new(s, 0);
    let value = p.expr()?;
    p.skip_ws();
    let mut percent = false;
    if p.peek() == Some(b'%') {
        percent = true;
        p.i += 1;
        p.skip_ws();
    }
    if p.i < s.len() {
        let tail = &s[p.i..];
        if !valid_unit_tail(tail) || has_number_word(tail) {
            return None;
        }
    }
    Some(Answer {
        value,
        percent,
        decimal: p.saw_decimal && !p.saw_div,
        evaluated: p.saw_op,
    })
}

pub(crate) fn trim_spaces(s: &[u8]) -> &[u8] {
    let a = s.iter().position(|c| *c != b' ').unwrap_or(s.len());
    let z = s.iter().rposition(|c| *c != b' ').map_or(a, |z| z + 1);
    &s[a..z]
}
