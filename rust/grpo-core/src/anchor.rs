//! The anchor rule: the first committed number after the last anchor
//! phrase (`final answer`, `the answer is`, `the answer isn't`, `answer:`).
//!
//! In the sentence after the anchor, numbers retracted by the words before
//! them (`not 72`, `instead of 72`, `I previously said 72`, see
//! [`crate::negation`]) are passed over, and a number word counts where an
//! answer would stand (`The answer is twelve.`, `... not 72, it's
//! seventy`). A later self-correction (`Wait, ... = 70.`) replaces the
//! anchor's number with the last committed number after it.

use memchr::{memchr, memrchr2};

use crate::extract::{is_alpha, is_digit, skip_spaces, Answer};
use crate::negation::{last_correction, negated_before};
use crate::tokens::{next_token, try_token, Tok};
use crate::words::{number_words, prev_word, Words};

/// The anchor rule's answer, if an anchor is followed by a number.
pub(crate) fn anchor_answer(b: &[u8]) -> Option<Answer> {
    let pos = find_last_anchor(b)?;
    let (a, end) = anchor_number(b, pos)?;
    Some(correction_after(b, end).unwrap_or(a))
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
        if j > e && j + 2 <= b.len() && b[j..j + 2].eq_ignore_ascii_case(b"is") {
            let k = j + 2;
            if k == b.len() || !is_alpha(b[k]) {
                return Some(k);
            }
            // "the answer isn't 72": the number after it is retracted.
            for neg in [&b"n't"[..], "n\u{2019}t".as_bytes()] {
                if b[k..].len() >= neg.len() && b[k..k + neg.len()].eq_ignore_ascii_case(neg) {
                    return Some(k + neg.len());
                }
            }
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

/// The first committed number of the sentence (or line) that follows an
/// anchor, following `a op b = c` chains, and the end of that sentence;
/// `None` when that sentence has no number (as in "Answer: Let's think step
/// by step."), so the anchor does not apply.
fn anchor_number(b: &[u8], pos: usize) -> Option<(Answer, usize)> {
    let mut start = pos;
    while start < b.len()
        && (b[start].is_ascii_whitespace() || matches!(b[start], b'*' | b':' | b'#'))
    {
        start += 1;
    }
    let ce = clause_end(b, start);
    let (mut ans, mut e) = committed_token(b, start, ce)?;
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
    Some((ans, ce))
}

/// The first number in `b[start..to]` that is not retracted: a number
/// token, or number words where an answer stands (see [`words_allowed`]).
fn committed_token(b: &[u8], start: usize, to: usize) -> Option<(Answer, usize)> {
    let mut i = start;
    while i < to {
        let c = b[i];
        let (a, s, e) = if is_alpha(c) {
            let we = word_end(b, i, to);
            let at_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'\'');
            if !at_start || !words_allowed(b, start, i) {
                i = we;
                continue;
            }
            match number_words(b, start, i, to) {
                Words::Num(v, e) => (Answer::int(v), i, e),
                Words::Blocked(e) | Words::NotNumber(e) => {
                    i = e.max(we);
                    continue;
                }
            }
        } else if is_digit(c) || matches!(c, b'.' | b'-' | b'\\') {
            match try_token(b, i, to) {
                Tok::Valid(a, e) => (a, i, e),
                Tok::Skip(e) => {
                    i = e.max(i + 1);
                    continue;
                }
                Tok::NoStart => {
                    i += 1;
                    continue;
                }
            }
        } else {
            i += 1;
            continue;
        };
        if !negated_before(b, s) {
            return Some((a, e));
        }
        i = e;
    }
    None
}

fn word_end(b: &[u8], i: usize, to: usize) -> usize {
    let mut j = i;
    while j < to && is_alpha(b[j]) {
        j += 1;
    }
    j
}

/// Words after which a number word is an answer: the start of the anchor's
/// sentence, `is`, `it's`, `be`, `but`, `not` ... (not `the two friends`).
fn words_allowed(b: &[u8], start: usize, i: usize) -> bool {
    let mut k = i;
    while k > start && k + 6 > i && matches!(b[k - 1], b' ' | b'*' | b'$' | b':' | b'"' | b'(') {
        k -= 1;
    }
    if k == start {
        return true;
    }
    let w = prev_word(b, start, k);
    is_commit_word(w) || w.eq_ignore_ascii_case(b"not") || w.eq_ignore_ascii_case(b"but")
}

/// Words that state a value: `is 70`, `it's 70`, `gives 70`.
fn is_commit_word(w: &[u8]) -> bool {
    [
        &b"is"[..],
        b"it's",
        "it\u{2019}s".as_bytes(),
        b"its",
        b"was",
        b"be",
        b"equals",
        b"makes",
        b"gives",
        b"get",
        b"gets",
        b"actually",
        b"answer",
    ]
    .iter()
    .any(|v| w.eq_ignore_ascii_case(v))
}

/// After a self-correction word later than the anchor's sentence (`Wait,
/// 72 - 2 = 70.`), the last number stated after it (after `=` or a commit
/// word, not retracted); `None` keeps the anchor's number.
fn correction_after(b: &[u8], from: usize) -> Option<Answer> {
    let m = last_correction(b, from)?;
    let mut best = None;
    let mut i = m;
    while let Some((a, s, e)) = next_token(b, i, b.len()) {
        if stated(b, m, s) && !negated_before(b, s) {
            best = Some(a);
        }
        i = e;
    }
    best
}

/// Whether the number at `s` follows `=` or a commit word.
fn stated(b: &[u8], lo: usize, s: usize) -> bool {
    let mut k = s;
    while k > lo && k + 4 > s && matches!(b[k - 1], b' ' | b'$' | b'*') {
        k -= 1;
    }
    (k > lo && b[k - 1] == b'=') || is_commit_word(prev_word(b, lo, s))
}
