//! Recursive-descent evaluator for a cleaned answer span (see
//! [`crate::span`]): `+ - * / ^ ( )`, `\frac`, exact roots, mixed numbers
//! and `e` exponents, on exact rationals, depth-limited.

use crate::extract::{is_digit, MAX_DEPTH};
use crate::notation::{e_exponent, scale, Sci};
use crate::rational::Rational;
use crate::span::{FRAC, ROOT};
use crate::tokens::{parse_literal, plain_int, proper_fraction};

/// Evaluator state over a cleaned span.
pub(crate) struct Parser<'a> {
    pub(crate) s: &'a [u8],
    pub(crate) i: usize,
    depth: u32,
    pub(crate) saw_decimal: bool,
    pub(crate) saw_div: bool,
    /// An operator was applied (see [`crate::Answer::evaluated`]).
    pub(crate) saw_op: bool,
}

impl<'a> Parser<'a> {
    /// A parser at position `i` of `s`.
    pub(crate) fn new(s: &'a [u8], i: usize) -> Parser<'a> {
        Parser {
            s,
            i,
            depth: 0,
            saw_decimal: false,
            saw_div: false,
            saw_op: false,
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    pub(crate) fn skip_ws(&mut self) {
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

    pub(crate) fn expr(&mut self) -> Option<Rational> {
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

    pub(crate) fn primary(&mut self) -> Option<Rational> {
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
            ROOT => self.root(),
            c if is_digit(c) || c == b'.' => self.number(),
            _ => None,
        }
    }

    /// `\sqrt{x}`, `\sqrt[n]{x}`, `\sqrt4`: exact roots only (computed).
    fn root(&mut self) -> Option<Rational> {
        self.i += 1;
        self.skip_ws();
        let n = if self.peek() == Some(b'[') {
            let n = self.group(b']')?;
            n.is_integer().then_some(n.num())?
        } else {
            2
        };
        self.skip_ws();
        let x = if self.peek() == Some(b'(') {
            self.group(b')')?
        } else {
            self.frac_arg()?
        };
        self.saw_op = true;
        x.exact_root(n)
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
        match e_exponent(self.s, self.i, self.s.len()) {
            Sci::No => {}
            Sci::Bad(_) => return None,
            Sci::Exp(x, k) => {
                // `1.2e3` is written as one number: a literal, not computed.
                self.i = k;
                self.saw_decimal = true;
                return scale(lit.value, x);
            }
        }
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
