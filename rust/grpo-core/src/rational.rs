//! Exact rational numbers on `i128` with checked arithmetic.
//!
//! Every operation returns `None` instead of overflowing or dividing by zero,
//! so evaluating untrusted arithmetic can never panic or produce a wrong value.

use std::cmp::Ordering;
use std::fmt;

/// Largest absolute exponent accepted by [`Rational::checked_pow`].
pub const MAX_EXPONENT: i128 = 128;

/// A reduced fraction `num / den` with `den > 0` and `gcd(|num|, den) == 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rational {
    num: i128,
    den: i128,
}

/// Binary GCD (no 128-bit divisions, which are slow library calls).
fn gcd(mut a: u128, mut b: u128) -> u128 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    if a | b <= u128::from(u64::MAX) {
        let (mut x, mut y) = (a as u64, b as u64);
        while y != 0 {
            let t = x % y;
            x = y;
            y = t;
        }
        return u128::from(x);
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// Exact integer `n`-th root of `x` (`n >= 2`), if there is one.
fn int_root(x: u128, n: u32) -> Option<u128> {
    if x < 2 {
        return Some(x);
    }
    if n == 2 {
        let r = x.isqrt();
        return (r * r == x).then_some(r);
    }
    // x < 2^127, so the root is below 2^43 for n >= 3: f64 is within 1 of it.
    let est = (x as f64).powf(1.0 / f64::from(n)).round() as u128;
    (est.saturating_sub(1)..=est + 1).find(|r| r.checked_pow(n) == Some(x))
}

impl Rational {
    /// Zero.
    pub const ZERO: Rational = Rational { num: 0, den: 1 };
    /// One.
    pub const ONE: Rational = Rational { num: 1, den: 1 };

    /// The integer `n`.
    pub const fn from_int(n: i128) -> Rational {
        Rational { num: n, den: 1 }
    }

    /// `num / den`, reduced. `None` if `den == 0` or a value does not fit.
    pub fn new(num: i128, den: i128) -> Option<Rational> {
        if den == 0 {
            return None;
        }
        // Keep i128::MIN out entirely so negation can never overflow.
        if num == i128::MIN || den == i128::MIN {
            return None;
        }
        let (mut num, mut den) = if den < 0 { (-num, -den) } else { (num, den) };
        if den == 1 {
            return Some(Rational { num, den });
        }
        let g = gcd(num.unsigned_abs(), den.unsigned_abs());
        if g > 1 {
            // g divides both and is at most |den| <= i128::MAX, so it fits.
            let g = g as i128;
            num /= g;
            den /= g;
        }
        Some(Rational { num, den })
    }

    /// Numerator (carries the sign).
    pub const fn num(self) -> i128 {
        self.num
    }

    /// Denominator (always positive).
    pub const fn den(self) -> i128 {
        self.den
    }

    /// Whether the denominator is 1.
    pub const fn is_integer(self) -> bool {
        self.den == 1
    }

    /// `-self`.
    pub fn checked_neg(self) -> Option<Rational> {
        Some(Rational {
            num: self.num.checked_neg()?,
            den: self.den,
        })
    }

    /// `self + other`.
    pub fn checked_add(self, other: Rational) -> Option<Rational> {
        if self.den == 1 && other.den == 1 {
            return Rational::new(self.num.checked_add(other.num)?, 1);
        }
        let g = gcd(self.den as u128, other.den as u128) as i128;
        let num = self
            .num
            .checked_mul(other.den / g)?
            .checked_add(other.num.checked_mul(self.den / g)?)?;
        let den = (self.den / g).checked_mul(other.den)?;
        Rational::new(num, den)
    }

    /// `self - other`.
    pub fn checked_sub(self, other: Rational) -> Option<Rational> {
        self.checked_add(other.checked_neg()?)
    }

    /// `self * other`.
    pub fn checked_mul(self, other: Rational) -> Option<Rational> {
        let g1 = gcd(self.num.unsigned_abs(), other.den as u128).max(1) as i128;
        let g2 = gcd(other.num.unsigned_abs(), self.den as u128).max(1) as i128;
        let num = (self.num / g1).checked_mul(other.num / g2)?;
        let den = (self.den / g2).checked_mul(other.den / g1)?;
        Rational::new(num, den)
    }

    /// `self / other`; `None` when `other` is zero.
    pub fn checked_div(self, other: Rational) -> Option<Rational> {
        if other.num == 0 {
            return None;
        }
        self.checked_mul(Rational::new(other.den, other.num)?)
    }

    /// `self ^ exp` for an integer exponent with `|exp| <= MAX_EXPONENT`.
    /// `0 ^ negative` is a division by zero and gives `None`.
    pub fn checked_pow(self, exp: i128) -> Option<Rational> {
        if exp.unsigned_abs() > MAX_EXPONENT as u128 {
            return None;
        }
        let base = if exp < 0 {
            Rational::ONE.checked_div(self)?
        } else {
            self
        };
        let mut e = exp.unsigned_abs();
        let mut acc = Rational::ONE;
        let mut sq = base;
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.checked_mul(sq)?;
            }
            e >>= 1;
            if e > 0 {
                sq = sq.checked_mul(sq)?;
            }
        }
        Some(acc)
    }

    /// The exact `n`-th root (`2 <= n <= MAX_EXPONENT`), or `None` when it is
    /// not rational (`sqrt 2`), negative under an even root, or `n` is out of
    /// range. Constant work: an integer square root, or a float estimate
    /// checked exactly for `n >= 3`.
    pub fn exact_root(self, n: i128) -> Option<Rational> {
        if !(2..=MAX_EXPONENT).contains(&n) || (self.num < 0 && n % 2 == 0) {
            return None;
        }
        let n = n as u32;
        let num = int_root(self.num.unsigned_abs(), n)? as i128;
        let den = int_root(self.den as u128, n)? as i128;
        Rational::new(if self.num < 0 { -num } else { num }, den)
    }

    /// Nearest `f64` (exact for integers up to 2^53).
    pub fn to_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Decimal rendering when the denominator is of the form 2^a 5^b
    /// (e.g. `"0.125"`, `"-3.5"`); `None` otherwise or on overflow.
    pub fn to_decimal_string(self) -> Option<String> {
        let mut d = self.den;
        let (mut twos, mut fives) = (0u32, 0u32);
        while d % 2 == 0 {
            d /= 2;
            twos += 1;
        }
        while d % 5 == 0 {
            d /= 5;
            fives += 1;
        }
        if d != 1 {
            return None;
        }
        let places = twos.max(fives);
        let scale = 10i128.checked_pow(places)?;
        let scaled = self.num.checked_mul(scale / self.den)?;
        let sign = if scaled < 0 { "-" } else { "" };
        let abs = scaled.unsigned_abs();
        if places == 0 {
            return Some(format!("{sign}{abs}"));
        }
        let scale = scale as u128;
        let int_part = abs / scale;
        let frac_part = abs % scale;
        Some(format!(
            "{sign}{int_part}.{frac_part:0width$}",
            width = places as usize
        ))
    }
}

impl PartialOrd for Rational {
    fn partial_cmp(&self, other: &Rational) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rational {
    fn cmp(&self, other: &Rational) -> Ordering {
        // Compare num1*den2 with num2*den1 without overflow: fall back to
        // floats only when the exact products do not fit (ties then are
        // impossible to misjudge because equal reduced fractions are equal).
        if self == other {
            return Ordering::Equal;
        }
        match (
            self.num.checked_mul(other.den),
            other.num.checked_mul(self.den),
        ) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.to_f64().total_cmp(&other.to_f64()),
        }
    }
}

impl fmt::Display for Rational {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: i128, d: i128) -> Rational {
        Rational::new(n, d).unwrap()
    }

    #[test]
    fn reduces_and_normalises_sign() {
        assert_eq!(r(2, 4), r(1, 2));
        assert_eq!(r(1, -2).num(), -1);
        assert_eq!(r(1, -2).den(), 2);
        assert_eq!(r(0, -5), Rational::ZERO);
        assert!(Rational::new(1, 0).is_none());
        assert!(Rational::new(i128::MIN, 1).is_none());
    }

    #[test]
    fn arithmetic() {
        assert_eq!(r(1, 2).checked_add(r(1, 3)), Some(r(5, 6)));
        assert_eq!(r(1, 2).checked_sub(r(1, 2)), Some(Rational::ZERO));
        assert_eq!(r(2, 3).checked_mul(r(3, 4)), Some(r(1, 2)));
        assert_eq!(r(1, 2).checked_div(r(1, 4)), Some(r(2, 1)));
        assert_eq!(r(1, 2).checked_div(Rational::ZERO), None);
        assert_eq!(r(2, 1).checked_pow(10), Some(r(1024, 1)));
        assert_eq!(r(2, 1).checked_pow(-2), Some(r(1, 4)));
        assert_eq!(Rational::ZERO.checked_pow(-1), None);
        assert_eq!(r(2, 1).checked_pow(127), None);
        assert_eq!(r(1, 1).checked_pow(1_000), None);
        assert_eq!(r(i128::MAX, 1).checked_add(r(1, 1)), None);
    }

    #[test]
    fn exact_roots() {
        assert_eq!(r(16, 1).exact_root(2), Some(r(4, 1)));
        assert_eq!(r(9, 4).exact_root(2), Some(r(3, 2)));
        assert_eq!(r(-27, 1).exact_root(3), Some(r(-3, 1)));
        assert_eq!(r(1 << 120, 1).exact_root(2), Some(r(1 << 60, 1)));
        assert_eq!(
            r(3_i128.pow(78), 1).exact_root(3),
            Some(r(3_i128.pow(26), 1))
        );
        assert_eq!(r(2, 1).exact_root(2), None);
        assert_eq!(r(-4, 1).exact_root(2), None);
        assert_eq!(r(8, 1).exact_root(1), None);
        assert_eq!(r(1, 1).exact_root(128), Some(r(1, 1)));
        assert_eq!(r(2, 1).exact_root(129), None);
        assert_eq!(r(i128::MAX, 1).exact_root(2), None);
    }

    #[test]
    fn decimal_rendering() {
        assert_eq!(r(1, 8).to_decimal_string().as_deref(), Some("0.125"));
        assert_eq!(r(-7, 2).to_decimal_string().as_deref(), Some("-3.5"));
        assert_eq!(r(-1, 20).to_decimal_string().as_deref(), Some("-0.05"));
        assert_eq!(r(1, 3).to_decimal_string(), None);
        assert_eq!(r(42, 1).to_decimal_string().as_deref(), Some("42"));
    }

    #[test]
    fn gcd_matches_euclid() {
        let cases = [
            (0u128, 5u128),
            (12, 18),
            (1 << 100, 3 << 90),
            (u128::MAX, 3),
            (7, 0),
        ];
        for (a, b) in cases {
            let (mut x, mut y) = (a, b);
            while y != 0 {
                let t = x % y;
                x = y;
                y = t;
            }
            assert_eq!(gcd(a, b), x, "{a} {b}");
        }
    }

    #[test]
    fn ordering() {
        assert!(r(1, 3) < r(1, 2));
        assert!(r(-1, 2) < r(1, 3));
        assert!(r(i128::MAX, 3) > r(i128::MAX, 4));
    }
}
