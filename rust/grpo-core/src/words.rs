//! English cardinal number words: `twelve`, `forty-two`, `one hundred and
//! five`, `two million three thousand`, `a hundred`, `negative seven`.
//!
//! A phrase is read word by word with a small state machine (no
//! backtracking; `and` looks one word ahead). Words are separated by spaces
//! or one hyphen and compared case-insensitively. Scales (`thousand`,
//! `million`, `billion`, `trillion`) must decrease; `hundred` takes a
//! multiplier of 1 to 99 (`twelve hundred` is 1200). Ordinals and fractions
//! (`third`, `twenty-first`, `one half`, `one third`) are not numbers, nor
//! is a phrase followed by a comparison (`one more than`, `two of`, `one or
//! two`): those are reported as [`Words::Blocked`] so that callers can treat
//! them as ambiguous. The pronoun `one` after a determiner (`each one`, `the
//! first one`) is not a number.

use crate::extract::is_alpha;

/// Outcome of reading a number phrase at a word start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Words {
    /// A cardinal and the position after its last word.
    Num(i128, usize),
    /// Number words that do not form one answer (ordinal, fraction,
    /// comparison, two numbers in a row); resume at the position given.
    Blocked(usize),
    /// Not a number word; resume at the end of the word.
    NotNumber(usize),
}

/// One recognised word.
#[derive(Clone, Copy, PartialEq, Eq)]
enum W {
    Zero,
    /// 1 to 9.
    Unit(i128),
    /// 10 to 19.
    Teen(i128),
    /// 20, 30 ... 90.
    Ten(i128),
    Hundred,
    /// 1e3, 1e6, 1e9, 1e12.
    Scale(i128),
    And,
    A,
    Negative,
}

const UNITS: [&[u8]; 9] = [
    b"one", b"two", b"three", b"four", b"five", b"six", b"seven", b"eight", b"nine",
];
const TEENS: [&[u8]; 10] = [
    b"ten",
    b"eleven",
    b"twelve",
    b"thirteen",
    b"fourteen",
    b"fifteen",
    b"sixteen",
    b"seventeen",
    b"eighteen",
    b"nineteen",
];
const TENS: [&[u8]; 8] = [
    b"twenty", b"thirty", b"forty", b"fifty", b"sixty", b"seventy", b"eighty", b"ninety",
];

/// Longest word compared; longer words are never special.
const MAX_WORD: usize = 16;

/// Lowercase copy of a short ASCII word (empty when too long).
fn lower(w: &[u8]) -> ([u8; MAX_WORD], usize) {
    let mut buf = [0u8; MAX_WORD];
    if w.len() > MAX_WORD {
        return (buf, 0);
    }
    for (d, s) in buf.iter_mut().zip(w) {
        *d = s.to_ascii_lowercase();
    }
    (buf, w.len())
}

fn classify(w: &[u8]) -> Option<W> {
    // Fast reject: cardinal words have at most 9 letters and start with one
    // of these (most words in a unit tail or prose do not).
    match w.first() {
        Some(c) if w.len() <= 9 && b"zotfsenhmba".contains(&(c | 0x20)) => {}
        _ => return None,
    }
    let (buf, n) = lower(w);
    let w = &buf[..n];
    let pos = |list: &[&[u8]]| list.iter().position(|x| *x == w).map(|k| k as i128);
    if let Some(k) = pos(&UNITS) {
        return Some(W::Unit(k + 1));
    }
    if let Some(k) = pos(&TEENS) {
        return Some(W::Teen(k + 10));
    }
    if let Some(k) = pos(&TENS) {
        return Some(W::Ten(20 + 10 * k));
    }
    Some(match w {
        b"zero" => W::Zero,
        b"hundred" => W::Hundred,
        b"thousand" => W::Scale(1_000),
        b"million" => W::Scale(1_000_000),
        b"billion" => W::Scale(1_000_000_000),
        b"trillion" => W::Scale(1_000_000_000_000),
        b"and" => W::And,
        b"a" => W::A,
        b"negative" => W::Negative,
        _ => return None,
    })
}

/// Ordinal or fraction words (`third`, `fifths`, `half`, `quarter`), which
/// make a preceding cardinal a fraction and are never answers themselves.
pub(crate) fn is_ordinal(w: &[u8]) -> bool {
    let (buf, n) = lower(w);
    let mut w = &buf[..n];
    if let Some(stem) = w.strip_suffix(b"s") {
        w = stem;
    }
    if matches!(
        w,
        b"first" | b"second" | b"third" | b"fifth" | b"eighth" | b"ninth" | b"twelfth"
    ) || matches!(w, b"half" | b"halve" | b"quarter")
    {
        return true;
    }
    // fourth, sixth ... nineteenth, hundredth, thousandth, millionth.
    if let Some(stem) = w.strip_suffix(b"th") {
        if matches!(classify(stem), Some(W::Unit(_) | W::Teen(_) | W::Hundred))
            || matches!(stem, b"thousand" | b"million" | b"billion")
        {
            return true;
        }
    }
    // twentieth ... ninetieth.
    if let Some(stem) = w.strip_suffix(b"ieth") {
        let mut ten = [0u8; MAX_WORD];
        ten[..stem.len()].copy_from_slice(stem);
        ten[stem.len()] = b'y';
        return matches!(classify(&ten[..=stem.len()]), Some(W::Ten(_)));
    }
    false
}

/// Whether the word at `s..e` (after a cardinal) makes the cardinal part
/// of something else: `one third`, `two of`, `one or two`, `one more than`.
fn blocks(b: &[u8], s: usize, e: usize, to: usize) -> bool {
    let (buf, n) = lower(&b[s..e]);
    if matches!(&buf[..n], b"more" | b"less" | b"fewer") {
        // "eighteen more" is an answer; "one more than 11" is not.
        return next_word_start(b, e, to)
            .is_some_and(|k| b[k..word_end(b, k, to)].eq_ignore_ascii_case(b"than"));
    }
    is_ordinal(&b[s..e])
        || matches!(
            &buf[..n],
            b"than"
                | b"times"
                | b"of"
                | b"out"
                | b"or"
                | b"plus"
                | b"minus"
                | b"divided"
                | b"multiplied"
                | b"over"
        )
}

/// Determiners after which `one` is a pronoun.
fn is_determiner(w: &[u8]) -> bool {
    let (buf, n) = lower(w);
    is_ordinal(w)
        || matches!(
            &buf[..n],
            b"each"
                | b"every"
                | b"the"
                | b"this"
                | b"that"
                | b"which"
                | b"any"
                | b"no"
                | b"some"
                | b"another"
                | b"a"
                | b"an"
                | b"only"
                | b"last"
                | b"next"
                | b"other"
                | b"right"
                | b"correct"
        )
}

fn word_end(b: &[u8], i: usize, to: usize) -> usize {
    let mut j = i;
    while j < to && is_alpha(b[j]) {
        j += 1;
    }
    j
}

/// Start of the next word after `e`: spaces or one hyphen (with optional
/// spaces around it) in between; `None` when something else follows.
fn next_word_start(b: &[u8], e: usize, to: usize) -> Option<usize> {
    let mut j = e;
    let mut hyphen = false;
    // Bounded: a few separators at most.
    while j < to && j < e + 4 {
        match b[j] {
            b' ' => j += 1,
            b'-' if !hyphen => {
                hyphen = true;
                j += 1;
            }
            c if is_alpha(c) && j > e => return Some(j),
            _ => return None,
        }
    }
    None
}

/// The word before position `i` (skipping up to a few spaces, `$`, `*`),
/// not looking before `lo`; empty when there is none.
pub(crate) fn prev_word(b: &[u8], lo: usize, i: usize) -> &[u8] {
    let (s, e) = prev_word_range(b, lo, i);
    &b[s..e]
}

/// [`prev_word`] as a range of `b`. Letters, apostrophes and non-ASCII
/// bytes (for `isn’t`) count as word characters; bounded length.
pub(crate) fn prev_word_range(b: &[u8], lo: usize, i: usize) -> (usize, usize) {
    let mut k = i;
    while k > lo && k + 4 > i && matches!(b[k - 1], b' ' | b'*' | b'$') {
        k -= 1;
    }
    let end = k;
    let word_byte = |c: u8| is_alpha(c) || c >= 0x80 || c == b'\'';
    while k > lo && end - k < MAX_WORD + 8 && word_byte(b[k - 1]) {
        k -= 1;
    }
    (k, end)
}

/// Read a number phrase at the word starting at `i` (the caller checks the
/// word boundary before `i`); `lo` bounds the look back for `each one`.
pub(crate) fn number_words(b: &[u8], lo: usize, i: usize, to: usize) -> Words {
    let first_end = word_end(b, i, to);
    let Some(first) = classify(&b[i..first_end]) else {
        return Words::NotNumber(first_end);
    };
    if matches!(first, W::And) {
        return Words::NotNumber(first_end);
    }
    if first == W::Unit(1) && is_determiner(prev_word(b, lo, i)) {
        return Words::NotNumber(first_end);
    }
    let mut st = Phrase::default();
    let mut j = i;
    let mut end = i;
    loop {
        let we = word_end(b, j, to);
        let w = classify(&b[j..we]);
        let ok = match w {
            Some(W::And) => st.and_allowed() && next_is_small(b, we, to),
            Some(w) => st.push(w),
            None => false,
        };
        if !ok {
            let numeric = !matches!(w, None | Some(W::And | W::A | W::Negative));
            return finish(&st, b, (j, we), numeric, end, first_end);
        }
        if !matches!(w, Some(W::And | W::A | W::Negative)) {
            end = we;
        }
        match next_word_start(b, we, to) {
            Some(n) => j = n,
            None => return finish(&st, b, (we, we), false, end, first_end),
        }
    }
}

/// Whether the word after `e` is 1 to 99 (what `and` may introduce).
fn next_is_small(b: &[u8], e: usize, to: usize) -> bool {
    next_word_start(b, e, to).is_some_and(|n| {
        matches!(
            classify(&b[n..word_end(b, n, to)]),
            Some(W::Unit(_) | W::Teen(_) | W::Ten(_))
        )
    })
}

/// End of a phrase: `stop` is the word that did not fit (a number word out
/// of place blocks), `end` the end of the last accepted word.
fn finish(
    st: &Phrase,
    b: &[u8],
    stop: (usize, usize),
    numeric: bool,
    end: usize,
    first_end: usize,
) -> Words {
    let Some(v) = st.value() else {
        // Only `a` / `negative` / `hundred` without a number: plain words.
        return Words::NotNumber(first_end);
    };
    let (stop, stop_end) = stop;
    if numeric || (stop < stop_end && blocks(b, stop, stop_end, b.len())) {
        return Words::Blocked(stop_end);
    }
    Words::Num(v, end)
}

/// State of the phrase being read.
#[derive(Default)]
struct Phrase {
    /// Completed scale groups (`two million` -> 2_000_000).
    total: i128,
    /// The group under the next scale (`three hundred forty`).
    group: i128,
    /// Smallest scale used so far (0: none).
    last_scale: i128,
    /// The previous word, for sequencing.
    prev: Option<W>,
    neg: bool,
    zero: bool,
}

impl Phrase {
    fn and_allowed(&self) -> bool {
        matches!(self.prev, Some(W::Hundred | W::Scale(_)))
    }

    /// Accept word `w` after the words so far, or refuse it.
    fn push(&mut self, w: W) -> bool {
        let started = self.prev.is_some();
        let ok = match w {
            W::Negative | W::A => !started,
            W::Zero => !started || self.prev == Some(W::Negative),
            _ if self.zero || self.prev == Some(W::A) && !matches!(w, W::Hundred | W::Scale(_)) => {
                false
            }
            W::Unit(n) if self.prev.is_some_and(|p| matches!(p, W::Ten(_))) => {
                self.group += n;
                true
            }
            W::Unit(n) | W::Teen(n) | W::Ten(n) => {
                let fresh = !matches!(self.prev, Some(W::Unit(_) | W::Teen(_) | W::Ten(_)));
                if fresh && self.group % 100 == 0 {
                    self.group += n;
                }
                fresh && self.group % 100 == n
            }
            W::Hundred => {
                let m = if self.prev == Some(W::A) {
                    1
                } else {
                    self.group
                };
                let ok = (1..100).contains(&m) && self.prev != Some(W::Hundred);
                if ok {
                    self.group = m * 100;
                }
                ok
            }
            W::Scale(s) => {
                let m = if self.prev == Some(W::A) {
                    1
                } else {
                    self.group
                };
                let ok = m > 0 && (self.last_scale == 0 || s < self.last_scale);
                if ok {
                    self.total += m * s;
                    self.group = 0;
                    self.last_scale = s;
                }
                ok
            }
            W::And => false,
        };
        if ok {
            self.neg |= w == W::Negative;
            self.zero |= w == W::Zero;
            self.prev = Some(w);
        }
        ok
    }

    /// The value, once at least one number word was read.
    fn value(&self) -> Option<i128> {
        match self.prev {
            None | Some(W::A | W::Negative) => None,
            _ => {
                let v = self.total + self.group;
                Some(if self.neg { -v } else { v })
            }
        }
    }
}

/// Whether `t` contains a cardinal number word (for unit tails such as
/// `5 \text{ or six}`, which are then two numbers).
pub(crate) fn has_number_word(t: &[u8]) -> bool {
    let mut i = 0;
    while i < t.len() {
        if !is_alpha(t[i]) {
            i += 1;
            continue;
        }
        let e = word_end(t, i, t.len());
        if matches!(
            classify(&t[i..e]),
            Some(W::Zero | W::Unit(_) | W::Teen(_) | W::Ten(_) | W::Hundred | W::Scale(_))
        ) {
            return true;
        }
        i = e;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Words {
        number_words(s.as_bytes(), 0, 0, s.len())
    }

    #[test]
    fn cardinals() {
        let cases = [
            ("zero", 0),
            ("twelve", 12),
            ("Forty-two", 42),
            ("forty two", 42),
            ("one hundred and five", 105),
            ("a hundred", 100),
            ("twelve hundred", 1200),
            ("two thousand and ten", 2010),
            ("three million four hundred thousand", 3_400_000),
            (
                "one million two hundred thirty-four thousand five hundred sixty-seven",
                1_234_567,
            ),
            ("negative seven", -7),
            ("nine billion", 9_000_000_000),
        ];
        for (s, v) in cases {
            assert_eq!(read(s), Words::Num(v, s.len()), "{s}");
        }
        assert_eq!(read("twelve apples"), Words::Num(12, 6));
        assert_eq!(read("twelve and thirteen"), Words::Num(12, 6));
        assert_eq!(read("one hundred and"), Words::Num(100, 11));
        assert_eq!(read("twelve."), Words::Num(12, 6));
    }

    #[test]
    fn refused() {
        for s in [
            "third",
            "hundredth",
            "and",
            "apples",
            "a lot",
            "hundred",
            "negative",
        ] {
            assert!(matches!(read(s), Words::NotNumber(_)), "{s}");
        }
        for s in [
            "one third",
            "twenty-first",
            "one more than",
            "five four",
            "one million million",
            "one or two",
            "two halves",
            "zero one",
        ] {
            assert!(matches!(read(s), Words::Blocked(_)), "{s}");
        }
        let s = b"each one";
        assert_eq!(number_words(s, 0, 5, s.len()), Words::NotNumber(8));
        assert!(is_ordinal(b"twentieth") && is_ordinal(b"Fifths") && !is_ordinal(b"month"));
        assert!(has_number_word(b" or six") && !has_number_word(b" apples"));
    }
}
