//! The natural logarithm `ln a` of a positive share (for reporting the loss), by exponent normalisation and a
//! polynomial.
//!
//! **Protocol.** [Normalise](super::normalize) over the whole fixed-point range: with `c` the leading-one position
//! of the encoding, `a' = a·2^(t−1−c) ∈ [0.5, 1)` and `ln a = ln a' + (c + 1 − t)·ln 2`; the second term is a
//! per-class public table, local. On `w = 4a' − 3 ∈ [−1, 1)` (local), `ln a' = ln((w + 3)/4)` is a degree-8
//! polynomial (Chebyshev interpolant, max error `3.9·10^−8` in exact arithmetic). The powers `w^2..w^8` take three
//! rounds of batched products (`w²`; `w³, w⁴`; `w⁵..w⁸`), the public coefficients are applied in the ring and summed
//! before ONE truncation.
//!
//! **Domain**: every positive fixed-point value below `2^(62−t)` (`2^42` at t = 20; inputs `a ≥ 2^t` are divided by
//! `2^t` once or twice first, and the exact truncation needs its input below `2^62`). In the probabilistic truncation
//! mode, those divisions fail with probability `a·2^(t−64)` per element (`2^−24` at `a = 2^20`). For `a ≤ 0`
//! (outside the domain) the result is `−t·ln 2 = ln 2^−t`, the logarithm of one ulp (a clamp, e.g. for a probability
//! that rounded to 0).
//!
//! **Error bound**: `|y − ln a| ≤ 2^(3−t)` (`7.6·10^−6` at t = 20): one ulp in `a'` (times `d ln/da' ≤ 2`), the
//! rounding of the powers and coefficients (a few ulps; the coefficients of `w^k` shrink like `3^−k`), the
//! polynomial (`4·10^−8`), the table entry (half an ulp), and, for `a ≥ 2^t`, one more ulp of `a'` per level.
//! Measured (tests, t = 20): at most `2.6·10^−6`.
//!
//! **Cost**: [`log_rounds`] — normalisation (8 + 3 + two truncations for the levels
//! of inputs `a ≥ 2^t` at t = 20 + one product), three products, one truncation: 18 rounds in the probabilistic
//! mode at t = 20, 25 in the exact mode.

use super::local::{row, stack};
use super::normalize::check_frac_bits;
use super::{cost, normalize, TruncationMode};
use crate::party::Party;
use crate::share::Share;
use crate::Result;

/// Monomial coefficients of the degree-8 Chebyshev interpolant of `ln((w + 3)/4)` on `[−1, 1]`.
pub const LOG_COEFFICIENTS: [f64; 9] = [
    -0.2876820724517812,
    0.3333330877716876,
    -0.05555548159696776,
    0.012348930681116569,
    -0.0030873989769101147,
    0.0008115560032452902,
    -0.00022516488885631562,
    7.998577930005504e-05,
    -2.346330102495939e-05,
];

/// Per-class exponents `t − 1 − c` for every class `0..=62`; none for `a ≤ 0`.
pub(crate) fn log_exponents(t: u32) -> Vec<Option<i32>> {
    (-1..=62).map(|c| (c >= 0).then_some(t as i32 - 1 - c)).collect()
}

impl Party {
    /// `ln a` for positive `a` (see the module docs for domain and error).
    pub fn log(&mut self, a: &Share) -> Result<Share> {
        let t = self.fixed().frac_bits();
        check_frac_bits("log", t)?;
        let fp = self.fixed();
        let shape = a.shape().to_vec();
        let n = a.len();
        self.call(|p| {
            let e = p.exponent_bits(a, 62)?;
            let exps = log_exponents(t);
            let an = p.scale_by_class(a, &e, &exps, 1.0)?;
            let four_a = p.scale_int(&an, 4)?;
            let w = p.add_scalar(&four_a, -3.0)?;
            let w2 = p.mul(&w, &w)?;
            let r34 = p.mul(&stack(&[&w2, &w2])?, &stack(&[&w, &w2])?)?;
            let (w3, w4) = (row(&r34, 0, &shape)?, row(&r34, 1, &shape)?);
            let r58 = p.mul(&stack(&[&w4, &w4, &w4, &w4])?, &stack(&[&w, &w2, &w3, &w4])?)?;
            let mut powers = vec![w, w2, w3, w4];
            for i in 0..4 {
                powers.push(row(&r58, i, &shape)?);
            }
            let all = stack(&powers.iter().collect::<Vec<_>>())?;
            let coef = fp.encode_slice(&LOG_COEFFICIENTS[1..])?;
            let coef = p.row_constants(&coef, n)?;
            let terms = p.mul_public_words(&all, &coef)?;
            let sum = p.sum_rows(&terms, 8, &shape)?;
            let poly = p.truncate(&sum, t)?;
            let poly = p.add_scalar(&poly, LOG_COEFFICIENTS[0])?;
            let ln2 = std::f64::consts::LN_2;
            let table = exps
                .iter()
                .map(|x| fp.encode(-f64::from(x.unwrap_or(t as i32)) * ln2))
                .collect::<Result<Vec<u64>>>()?;
            let shift = p.class_table(&e, &table)?;
            p.add(&poly, &shift)
        })
    }
}

/// Rounds of the logarithm at `frac_bits` fractional bits: normalisation over the whole range, three rounds of
/// batched powers, one truncation.
pub fn log_rounds(frac_bits: u32, mode: TruncationMode) -> u64 {
    let m = cost::fixed_mul_rounds(mode);
    let levels = normalize::levels(frac_bits, &log_exponents(frac_bits));
    cost::normalize_rounds(levels, mode) + 3 * m + m
}
