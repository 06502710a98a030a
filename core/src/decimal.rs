//! Plain decimal numerals (`12.50`, `.5`, `0003`) to `f64`, correctly rounded (nearest, ties
//! to even): the same value as `str::parse::<f64>`, without core's float parser, whose tables
//! (powers of five, ~12 KB) and code weighed ~18 KB of the Envoy filter's `.wasm`.
//!
//! Prices take the fast path: at most 19 significant digits forming an integer below 2^53 and
//! a decimal exponent within ±22, where one IEEE multiplication or division of two exactly
//! representable numbers is the correctly rounded result. Anything else is worked out exactly
//! with a small big-integer division (slow, and never taken by a real price).

use alloc::vec;
use alloc::vec::Vec;

/// Significant digits kept for the exact path. Every double and every midpoint between two
/// doubles has at most 767 significant decimal digits, so digits past these only tell whether
/// the value lies above what the kept ones say (a sticky bit).
const MAX_DIGITS: usize = 800;

/// 10^0 ..= 10^22, each exactly representable.
const POW10: [f64; 23] = {
    let mut t = [1.0; 23];
    let mut i = 1;
    while i < 23 {
        t[i] = t[i - 1] * 10.0;
        i += 1;
    }
    t
};

/// `digits`, `digits.digits`, `.digits` or `digits.` (ASCII digits, at least one) to the
/// nearest f64, `inf` past the largest finite one; `None` for any other text.
pub fn parse_plain(text: &str) -> Option<f64> {
    let mut seen_dot = false;
    let mut any_digit = false;
    // Value = (all significant digits) × 10^exp; `mant` holds the first 19 of them.
    let mut mant: u64 = 0;
    let mut nsig: usize = 0;
    let mut exp: i64 = 0;
    for &c in text.as_bytes() {
        match c {
            b'.' if !seen_dot => seen_dot = true,
            b'0'..=b'9' => {
                any_digit = true;
                if seen_dot {
                    exp -= 1;
                }
                if nsig == 0 && c == b'0' {
                    continue;
                }
                nsig += 1;
                if nsig <= 19 {
                    mant = mant * 10 + u64::from(c - b'0');
                }
            }
            _ => return None,
        }
    }
    if !any_digit {
        return None;
    }
    if nsig == 0 {
        return Some(0.0);
    }
    if nsig <= 19 {
        let (mut m, mut e) = (mant, exp);
        // Trailing zeros only matter when they keep the value off the fast path.
        while (m >= 1 << 53 || e < -22) && m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        if m < 1 << 53 && (-22..=22).contains(&e) {
            let i = e.unsigned_abs() as usize;
            return Some(if e >= 0 {
                m as f64 * POW10[i]
            } else {
                m as f64 / POW10[i]
            });
        }
    }
    // The value lies in [10^(nsig-1+exp), 10^(nsig+exp)).
    let magnitude = nsig as i64 + exp;
    if magnitude > 309 {
        return Some(f64::INFINITY);
    }
    if magnitude <= -324 {
        // Below 10^-324, less than half the smallest subnormal (2^-1075 ≈ 2.47e-324).
        return Some(0.0);
    }
    Some(exact(text, nsig, exp))
}

/// The correctly rounded value of the plain numeral `text` with `nsig` significant digits,
/// worth (its digits) × 10^`exp`, by big-integer division.
#[cold]
#[inline(never)]
fn exact(text: &str, nsig: usize, exp: i64) -> f64 {
    let kept = nsig.min(MAX_DIGITS);
    let mut digits = Vec::with_capacity(kept);
    let mut sticky = false;
    for &c in text.as_bytes() {
        if !c.is_ascii_digit() || (digits.is_empty() && c == b'0') {
            continue;
        }
        if digits.len() < kept {
            digits.push(c - b'0');
        } else if c != b'0' {
            sticky = true;
        }
    }
    let exp = exp + (nsig - kept) as i64;
    // value = x / y (+ a little more when sticky)
    let mut x = Big::from_digits(&digits);
    let mut y = Big(vec![1]);
    if exp >= 0 {
        x.mul_pow10(exp as usize);
    } else {
        y.mul_pow10(exp.unsigned_abs() as usize);
    }
    // Scale by 2^s so that q = floor(x / y) lies in [2^55, 2^57).
    let s = y.bits() as i64 - x.bits() as i64 + 56;
    if s >= 0 {
        x.shl(s as usize);
    } else {
        y.shl(s.unsigned_abs() as usize);
    }
    let mut q: u64 = 0;
    y.shl(58);
    for j in (0..=57).rev() {
        y.shr1();
        if x.cmp_ge(&y) {
            x.sub_assign(&y);
            q |= 1 << j;
        }
    }
    sticky |= !x.is_zero();
    // value = (q + frac) × 2^-s, frac in [0, 1), nonzero when sticky.
    let b = i64::from(64 - q.leading_zeros());
    let lead = b - 1 - s;
    let ulp = (lead - 52).max(-1074);
    let shift = ulp + s;
    if shift > 63 {
        // q < 2^57 <= half an ulp: rounds to zero.
        return 0.0;
    }
    let mut m = q >> shift;
    let r = q & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    if r > half || (r == half && (sticky || m & 1 == 1)) {
        m += 1;
    }
    let mut ulp = ulp;
    if m == 1 << 53 {
        m >>= 1;
        ulp += 1;
    }
    if m >= 1 << 52 {
        let biased = ulp + 52 + 1023;
        if biased >= 2047 {
            return f64::INFINITY;
        }
        f64::from_bits(((biased as u64) << 52) | (m & ((1 << 52) - 1)))
    } else {
        // Subnormal: ulp is 2^-1074, the bit pattern is m itself.
        f64::from_bits(m)
    }
}

/// A non-negative big integer, 32-bit limbs, least significant first.
struct Big(Vec<u32>);

impl Big {
    fn from_digits(digits: &[u8]) -> Self {
        let mut n = Big(vec![0]);
        for chunk in digits.chunks(9) {
            let mut v = 0u32;
            let mut scale = 1u32;
            for d in chunk {
                v = v * 10 + u32::from(*d);
                scale *= 10;
            }
            n.mul_add(scale, v);
        }
        n
    }

    fn mul_add(&mut self, m: u32, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.0 {
            let t = u64::from(*limb) * u64::from(m) + carry;
            *limb = t as u32;
            carry = t >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
    }

    fn mul_pow10(&mut self, mut k: usize) {
        while k >= 9 {
            self.mul_add(1_000_000_000, 0);
            k -= 9;
        }
        self.mul_add(10u32.pow(k as u32), 0);
    }

    fn trim(&mut self) {
        while self.0.len() > 1 && self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn bits(&self) -> usize {
        let top = self.0.iter().rposition(|l| *l != 0);
        top.map_or(0, |i| i * 32 + (32 - self.0[i].leading_zeros() as usize))
    }

    fn is_zero(&self) -> bool {
        self.0.iter().all(|l| *l == 0)
    }

    fn shl(&mut self, n: usize) {
        let (limbs, bits) = (n / 32, n % 32);
        if bits != 0 {
            let mut carry = 0u32;
            for limb in &mut self.0 {
                let v = *limb;
                *limb = (v << bits) | carry;
                carry = v >> (32 - bits);
            }
            if carry != 0 {
                self.0.push(carry);
            }
        }
        if limbs != 0 {
            let mut v = vec![0; limbs];
            v.extend_from_slice(&self.0);
            self.0 = v;
        }
    }

    fn shr1(&mut self) {
        let mut carry = 0u32;
        for limb in self.0.iter_mut().rev() {
            let v = *limb;
            *limb = (v >> 1) | carry;
            carry = v << 31;
        }
        self.trim();
    }

    /// self >= other (both trimmed or not: compared by value).
    fn cmp_ge(&self, other: &Big) -> bool {
        let n = self.0.len().max(other.0.len());
        for i in (0..n).rev() {
            let a = self.0.get(i).copied().unwrap_or(0);
            let b = other.0.get(i).copied().unwrap_or(0);
            if a != b {
                return a > b;
            }
        }
        true
    }

    /// self -= other, with self >= other.
    fn sub_assign(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let t = i64::from(*limb) - i64::from(other.0.get(i).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(t < 0);
            *limb = t.rem_euclid(1 << 32) as u32;
        }
        self.trim();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::{String, ToString};
    use proptest::prelude::*;

    fn check(text: &str) {
        let want: f64 = text.parse().unwrap();
        let got = parse_plain(text).unwrap();
        assert_eq!(got.to_bits(), want.to_bits(), "{text}: {got:e} vs {want:e}");
    }

    #[test]
    fn forms_and_edges() {
        for t in [
            "0",
            "00",
            "0.",
            ".0",
            "0.000",
            "5.",
            ".5",
            "12.50",
            "149.90",
            "0.01",
            "0.30",
            "19.99",
            "1999.999",
            "99999999.99",
            "123456789012.34",
            "999999999999999",
            "9007199254740992",
            "9007199254740993",
            "9007199254740995",
            "18446744073709551615",
            "18446744073709551616",
            "1e0",
            "17976931348623157",
            "0.1",
            "0.2",
            "0.3",
            "1000000000000000000000",
            "10000000000000000000000",
            "100000000000000000000000",
            "0.0000000000000000000000001",
            "2.2250738585072011",
            "2.2250738585072014",
        ] {
            if t.contains('e') {
                assert_eq!(parse_plain(t), None);
            } else {
                check(t);
            }
        }
        for bad in [
            "", ".", "..", "1.2.3", "-1", "+1", " 1", "1 ", "1e5", "inf", "NaN", "1_0",
        ] {
            assert_eq!(parse_plain(bad), None, "{bad:?}");
        }
        // f64::MAX, the rounding boundary just above it, and beyond.
        let max = format!("{:.0}", f64::MAX);
        check(&max);
        check(&format!("{max}.5"));
        check(
            "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792",
        );
        check(
            "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497791",
        );
        check(&"9".repeat(400));
        check(&format!("0.{}1", "0".repeat(400)));
        check(&format!("0.{}", "0".repeat(2000)));
        // Smallest subnormal, half of it (ties to even: 0), and just above half.
        let tiny = format!("{:.1100}", f64::from_bits(1));
        check(&tiny);
        check(&format!("{:.1100}", f64::from_bits(1) / 2.0));
        check(&format!("{:.1100}", 5e-324));
        // Many digits beyond the kept ones.
        check(&format!("1.{}1", "0".repeat(900)));
        check(&format!("1.{}", "9".repeat(1200)));
        check(&format!("{}.5", "1".repeat(30)));
    }

    /// The exact decimal expansion of a finite, non-negative f64 (no exponent).
    fn expansion(x: f64) -> String {
        let s = format!("{x:.1100}");
        let s = s.trim_end_matches('0');
        s.to_string()
    }

    /// The decimal midway between two plain numerals, exactly.
    fn midpoint(a: &str, b: &str) -> String {
        let (ai, af) = a.split_once('.').unwrap_or((a, ""));
        let (bi, bf) = b.split_once('.').unwrap_or((b, ""));
        let il = ai.len().max(bi.len());
        let fl = af.len().max(bf.len()) + 1;
        let pad = |i: &str, f: &str| -> Vec<u32> {
            format!("{i:0>il$}{f:0<fl$}")
                .bytes()
                .map(|c| u32::from(c - b'0'))
                .collect()
        };
        let (x, y) = (pad(ai, af), pad(bi, bf));
        let mut sum = vec![0u32; x.len() + 1];
        let mut carry = 0;
        for i in (0..x.len()).rev() {
            let t = x[i] + y[i] + carry;
            sum[i + 1] = t % 10;
            carry = t / 10;
        }
        sum[0] = carry;
        let mut rem = 0;
        let half: Vec<u32> = sum
            .iter()
            .map(|d| {
                let t = rem * 10 + d;
                rem = t % 2;
                t / 2
            })
            .collect();
        let digits: String = half.iter().map(|d| char::from(b'0' + *d as u8)).collect();
        let (i, f) = digits.split_at(il + 1);
        format!("{i}.{f}")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn matches_std_on_random_numerals(int in "[0-9]{0,30}", frac in proptest::option::of("[0-9]{0,30}")) {
            let text = match frac {
                Some(f) => format!("{int}.{f}"),
                None => int,
            };
            if text.bytes().any(|b| b.is_ascii_digit()) {
                check(&text);
            } else {
                prop_assert_eq!(parse_plain(&text), None);
            }
        }

        #[test]
        fn matches_std_on_roundings_of_any_double(bits in 0u64..0x7ff0_0000_0000_0000, places in 0usize..40) {
            let x = f64::from_bits(bits);
            check(&format!("{x:.places$}"));
            check(&format!("{x}"));
        }

        #[test]
        fn matches_std_at_midpoints(bits in 0u64..0x7fef_ffff_ffff_ffff) {
            let (a, b) = (f64::from_bits(bits), f64::from_bits(bits + 1));
            let mid = midpoint(&expansion(a), &expansion(b));
            check(&mid);
            // Just below and just above the midpoint.
            let below = mid[..mid.len() - 1].to_string();
            check(&below);
            check(&format!("{mid}000000000001"));
        }

        #[test]
        fn matches_std_on_prices(cents in 0u64..100_000_000_000, zeros in 0usize..3) {
            check(&format!("{}.{:02}{}", cents / 100, cents % 100, "0".repeat(zeros)));
        }
    }
}
