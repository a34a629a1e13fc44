//! Prose inside a box: `\boxed{She needs 18 more}`,
//! `\boxed{\text{The answer is } 18}`, `\boxed{18 \text{ (apples)}}`,
//! `\boxed{\text{twelve}}`.
//!
//! A cleaned span that is not one expression but has a word of at least
//! two letters is read as text: its number tokens (digits, number words,
//! `\frac`, `\sqrt`) must all have the same value, which is the answer.
//! Two different numbers, an ambiguous number phrase (`one more than`,
//! `one third`) or an exponent (`x^2`) give no answer. Digits glued to
//! letters (`2x`, `B2`, `18th`) are identifiers, not numbers.

use crate::extract::{is_alpha, is_digit, Answer};
use crate::parser::Parser;
use crate::span::{is_letter, FRAC, ROOT};
use crate::tokens::{skip_word, try_token, Tok};
use crate::words::{number_words, Words};

/// What one step of the scan found.
enum Step {
    Number(Answer, usize),
    Other(usize),
    Refuse,
}

/// The one number of a prose span, if there is exactly one value in it.
pub(crate) fn prose_answer(s: &[u8]) -> Option<Answer> {
    let mut found: Option<Answer> = None;
    let mut wordy = false;
    let mut i = 0;
    while i < s.len() {
        let step = match s[i] {
            c if is_alpha(c) => {
                let e = word_end(s, i);
                let step = word_step(s, i, e);
                wordy |= e - i >= 2 || matches!(step, Step::Number(..));
                step
            }
            FRAC | ROOT => {
                let mut p = Parser::new(s, i);
                match p.primary() {
                    Some(value) => Step::Number(
                        Answer {
                            value,
                            percent: false,
                            decimal: false,
                            evaluated: p.saw_op,
                        },
                        p.i,
                    ),
                    None => Step::Refuse,
                }
            }
            b'^' => caret_step(s, i),
            c if is_digit(c) || c == b'.' || c == b'-' => digit_step(s, i),
            _ => Step::Other(i + 1),
        };
        match step {
            Step::Refuse => return None,
            Step::Other(e) => i = e.max(i + 1),
            Step::Number(a, e) => {
                match found {
                    Some(f) if f.value != a.value => return None,
                    Some(_) => {}
                    None => found = Some(a),
                }
                i = e.max(i + 1);
            }
        }
    }
    found.filter(|_| wordy)
}

fn word_end(s: &[u8], i: usize) -> usize {
    let mut e = i;
    while e < s.len() && is_alpha(s[e]) {
        e += 1;
    }
    e
}

/// A word at `i..e`: a number phrase, an ambiguous one, or plain text.
fn word_step(s: &[u8], i: usize, e: usize) -> Step {
    if i > 0 && (s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_') {
        return Step::Other(e);
    }
    match number_words(s, 0, i, s.len()) {
        Words::Num(v, end) => Step::Number(Answer::int(v), end),
        Words::Blocked(_) => Step::Refuse,
        Words::NotNumber(end) => Step::Other(end),
    }
}

/// A unit power (`m^2`, `cm^{3}`) is skipped; any other `^` is an
/// exponent the prose reading cannot apply.
fn caret_step(s: &[u8], i: usize) -> Step {
    if i == 0 || !is_letter(s[i - 1]) {
        return Step::Refuse;
    }
    let mut j = i + 1;
    let braced = s.get(j) == Some(&b'{');
    j += usize::from(braced);
    j += usize::from(s.get(j) == Some(&b'-'));
    let st = j;
    while j < s.len() && is_digit(s[j]) && j < st + 2 {
        j += 1;
    }
    if j == st || (braced && s.get(j) != Some(&b'}')) {
        return Step::Refuse;
    }
    Step::Other(j + usize::from(braced))
}

/// A number token at `i`; glued to a following letter it is an identifier.
fn digit_step(s: &[u8], i: usize) -> Step {
    match try_token(s, i, s.len()) {
        Tok::Valid(a, e) => {
            if e < s.len() && (is_letter(s[e]) || s[e] == b'_') {
                Step::Other(skip_word(s, e, s.len()))
            } else {
                Step::Number(a, e)
            }
        }
        Tok::Skip(e) => Step::Other(e),
        Tok::NoStart => Step::Other(i + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<String> {
        prose_answer(s.as_bytes()).map(|a| a.to_string())
    }

    #[test]
    fn one_number_among_words() {
        assert_eq!(p("She needs 18 more").as_deref(), Some("18"));
        assert_eq!(p("18  (apples)").as_deref(), Some("18"));
        assert_eq!(p("twelve").as_deref(), Some("12"));
        assert_eq!(p("18 is 18").as_deref(), Some("18"));
        assert_eq!(p("a room of 20 m^2 today").as_deref(), Some("20"));
        assert_eq!(p("18 and 20"), None);
        assert_eq!(p("one more than 17"), None);
        assert_eq!(p("x 5"), None);
        assert_eq!(p("2x"), None);
        assert_eq!(p("the 5^2 way"), None);
        assert_eq!(p("no numbers"), None);
    }
}
