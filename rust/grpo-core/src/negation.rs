//! Retracted numbers in free text: `not 72`, `isn't 72`, `instead of 72`,
//! `rather than 72`, `I previously said 72`; and self-corrections after a
//! final answer (`The answer is 72. Wait, ... 70.`).
//!
//! Both look only a bounded distance (a few words) from the number, so the
//! scans stay linear.

use crate::extract::is_alpha;
use crate::words::{prev_word, prev_word_range};

/// Longest look back, in bytes, for the words before a number.
const LOOK_BACK: usize = 48;

fn eq(w: &[u8], s: &[u8]) -> bool {
    w.eq_ignore_ascii_case(s)
}

/// Whether `w` is `not` or a contraction ending in `n't` / `n’t`.
fn is_not(w: &[u8]) -> bool {
    eq(w, b"not")
        || eq(w, b"never")
        || w.len() > 3 && {
            let t = &w[w.len() - 3..];
            t.eq_ignore_ascii_case(b"n't")
        }
        || w.len() > 5 && w[w.len() - 5..].eq_ignore_ascii_case("n\u{2019}t".as_bytes())
}

/// Verbs that report an earlier, withdrawn answer (`I said 72`).
fn is_report(w: &[u8]) -> bool {
    [
        &b"said"[..],
        b"wrote",
        b"thought",
        b"claimed",
        b"stated",
        b"guessed",
    ]
    .iter()
    .any(|v| eq(w, v))
}

/// Who or when of a withdrawn answer (`I said`, `previously said`).
fn is_earlier(w: &[u8]) -> bool {
    [
        &b"i"[..],
        b"previously",
        b"earlier",
        b"originally",
        b"initially",
        b"mistakenly",
        b"wrongly",
        b"incorrectly",
        b"before",
        b"first",
    ]
    .iter()
    .any(|v| eq(w, v))
}

/// Whether the number starting at `i` is retracted by the words just before
/// it: `not 72`, `isn't 72`, `instead of 72`, `rather than 72`, `I said 72`,
/// `previously said 72`.
pub(crate) fn negated_before(b: &[u8], i: usize) -> bool {
    // Fast reject (the common case): every retraction word ends in one of
    // these letters. Words never include a newline, so none is crossed.
    let mut k = i;
    while k > 0 && k + 4 > i && matches!(b[k - 1], b' ' | b'*' | b'$') {
        k -= 1;
    }
    if k == 0 || !matches!(b[k - 1] | 0x20, b't' | b'r' | b'f' | b'n' | b'd' | b'e') {
        return false;
    }
    let lo = i.saturating_sub(LOOK_BACK);
    let (s1, e1) = prev_word_range(b, lo, i);
    let w1 = &b[s1..e1];
    if w1.is_empty() {
        return false;
    }
    if is_not(w1) {
        return true;
    }
    let w0 = prev_word(b, lo, s1);
    (eq(w1, b"of") && eq(w0, b"instead"))
        || (eq(w1, b"than") && eq(w0, b"rather"))
        || (is_report(w1) && is_earlier(w0))
}

/// Words that start a self-correction.
fn is_correction(w: &[u8]) -> bool {
    [&b"wait"[..], b"oops", b"correction", b"mistake"]
        .iter()
        .any(|v| eq(w, v))
}

/// Position after the last self-correction word (`wait`, `oops`,
/// `correction`, `mistake`) in `b[from..]`, if any. Linear.
pub(crate) fn last_correction(b: &[u8], from: usize) -> Option<usize> {
    let mut found = None;
    let mut i = from;
    while i < b.len() {
        if !is_alpha(b[i]) {
            i += 1;
            continue;
        }
        let s = i;
        while i < b.len() && is_alpha(b[i]) {
            i += 1;
        }
        if (s == 0 || !is_alpha(b[s - 1])) && i - s <= 10 && is_correction(&b[s..i]) {
            found = Some(i);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(s: &str) -> bool {
        let k = s.find('#').unwrap();
        let t = s.replace('#', "");
        negated_before(t.as_bytes(), k)
    }

    #[test]
    fn retractions() {
        for s in [
            "is not #72",
            "isn't #72",
            "isn’t #72",
            "instead of $#72",
            "rather than #72",
            "I said #72",
            "I previously said #72",
            "not **#72",
        ] {
            assert!(neg(s), "{s}");
        }
        for s in [
            "it is #70",
            "#70",
            "she said #5",
            "nothing #3",
            "not\n#3",
            "of #3",
        ] {
            assert!(!neg(s), "{s}");
        }
        assert_eq!(last_correction(b"is 72. Wait, 70. Oops", 0), Some(21));
        assert_eq!(last_correction(b"awaiting 7", 0), None);
    }
}
