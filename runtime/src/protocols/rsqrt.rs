//! The inverse square root `1/√a` of a positive share (batch normalisation), by Newton's method after
//! normalising the input by its secret binary exponent.
//!
//! **Normalisation** ([`normalize`](super::normalize)): with `c` the leading-one position of the encoding and
//! `m = t − 1 − c` (so `a·2^m ∈ [0.5, 1)`), the even exponent `e = m` (m even) or `m − 1` (m odd) gives
//! `a' = a·2^e ∈ [0.25, 1)` and `1/√a = (1/√a')·2^(e/2)`: the rescaling is by an integer power of two, with no
//! `√2` constant to round. The protocol normalises straight to `h = a'/2` (the table exponent `e − 1`).
//!
//! **Newton** for `r = 1/√a' ∈ (1, 2]`: `y_0 = 2.018 − 2h` (local; relative error `|1 − a'y_0²| ≤ 0.219` on
//! `[0.25, 1]`), then `y ← 1.5·y − h·y³` in two rounds per step: ONE batched product `[y·y, h·y]`, then ONE batched
//! product `[(h·y)·y², 1.5·y]`. The relative error after 1, 2, 3, 4 steps is `1.9·10^−2`, `5.6·10^−4`,
//! `4.7·10^−7`, `3·10^−13`; the default is [`RSQRT_NEWTON_STEPS`] = 3. Rescaling as in
//! [`reciprocal`](super::reciprocal): `(r·D)·U` with `D = 2^min(0, e/2)` (fixed point) and `U = 2^max(0, e/2)`
//! (ring integer).
//!
//! **Domain**: every positive fixed-point value, `2^−t ≤ a < 2^(63−t)`. For `a ≥ 2^(2t)` (classes `c ≥ 3t`, lumped)
//! the result is 0, within one ulp of `1/√a ≤ 2^−t`. Inputs `a ≤ 0` are outside the domain: the result is 0.
//! Inputs `2^t ≤ a < 2^(2t)` are divided by `2^t` once or twice first; in the probabilistic truncation mode that
//! division fails with probability `a·2^(t−64)` per element (the exact mode, the default, has no such failure).
//!
//! **Error bound** (`t` fractional bits, 3 steps): `|y − 1/√a| ≤ 2^(3−t)·(1/√a) + 2^(1−t)`: relative error at most
//! `2^(3−t)` (`7.6·10^−6` at t = 20) where `1/√a` is well above one ulp, at most 2 ulps absolute where it is not.
//! Measured (tests, t = 20): relative error at most `2.4·10^−6` for `1/√a ≥ 1`.
//!
//! **Cost**: [`rsqrt_rounds`] — normalisation (8 + 3 + truncations for the levels
//! of inputs `a ≥ 2^t` + one product), two products per step, two to rescale: 22 rounds in the probabilistic
//! mode at t = 20 (two levels), 32 in the exact mode.

use super::local::{row, stack};
use super::normalize::check_frac_bits;
use super::{cost, normalize, TruncationMode};
use crate::party::Party;
use crate::share::Share;
use crate::Result;

/// Default Newton steps of [`Party::rsqrt`].
pub const RSQRT_NEWTON_STEPS: u32 = 3;

/// The linear start `y_0 = RSQRT_START − a'` on `[0.25, 1]` (minimax relative error).
const RSQRT_START: f64 = 2.018;

/// The top exponent class of the inverse square root: inputs with `c ≥ 3t` (`a ≥ 2^(2t)`) have `1/√a ≤ 2^−t`.
pub(crate) fn rsqrt_top(t: u32) -> u32 {
    (3 * t).min(62)
}

/// Per-class even exponents `e` (`a·2^e ∈ [0.25, 1)`), none for `a ≤ 0` and for `c ≥ 3t`.
pub(crate) fn rsqrt_exponents(t: u32) -> Vec<Option<i32>> {
    let top = rsqrt_top(t) as i32;
    (-1..=top)
        .map(|c| {
            (c >= 0 && c < 3 * t as i32).then(|| {
                let m = t as i32 - 1 - c;
                if m.rem_euclid(2) == 0 {
                    m
                } else {
                    m - 1
                }
            })
        })
        .collect()
}

/// The exponents of `h = a'/2`, as the normalisation computes it.
pub(crate) fn rsqrt_half_exponents(t: u32) -> Vec<Option<i32>> {
    rsqrt_exponents(t).into_iter().map(|e| e.map(|e| e - 1)).collect()
}

impl Party {
    /// `1/√a` for positive `a` ([`RSQRT_NEWTON_STEPS`] Newton steps; see the module docs for domain and error).
    pub fn rsqrt(&mut self, a: &Share) -> Result<Share> {
        self.rsqrt_with(a, RSQRT_NEWTON_STEPS)
    }

    /// `1/√a` with `steps` Newton steps.
    pub fn rsqrt_with(&mut self, a: &Share, steps: u32) -> Result<Share> {
        let t = self.fixed().frac_bits();
        check_frac_bits("rsqrt", t)?;
        let shape = a.shape().to_vec();
        self.call(|p| {
            let e = p.exponent_bits(a, rsqrt_top(t))?;
            let h = p.scale_by_class(a, &e, &rsqrt_half_exponents(t), 0.5)?;
            // y0 = start − 2h = start − a'
            let two_h = p.add(&h, &h)?;
            let neg = p.neg(&two_h)?;
            let mut y = p.add_scalar(&neg, RSQRT_START)?;
            let three_halves = p.public_fixed(1.5, &shape)?;
            for _ in 0..steps {
                let sq = p.mul(&stack(&[&y, &h])?, &stack(&[&y, &y])?)?;
                let (y2, hy) = (row(&sq, 0, &shape)?, row(&sq, 1, &shape)?);
                let terms = p.mul(&stack(&[&hy, &y])?, &stack(&[&y2, &three_halves])?)?;
                let (hy3, y15) = (row(&terms, 0, &shape)?, row(&terms, 1, &shape)?);
                y = p.sub(&y15, &hy3)?;
            }
            // Rescale by 2^(e/2) = D·U.
            let (down, up): (Vec<u64>, Vec<u64>) = rsqrt_exponents(t)
                .iter()
                .map(|x| match *x {
                    Some(x) => {
                        let k = x / 2;
                        let d = t as i32 + k.min(0);
                        (if d >= 0 { 1u64 << d } else { 0 }, 1u64 << k.max(0))
                    }
                    None => (0, 1),
                })
                .unzip();
            let d = p.class_table(&e, &down)?;
            let u = p.class_table(&e, &up)?;
            let yd = p.mul(&y, &d)?;
            p.mul_ring(&yd, &u)
        })
    }
}

/// Rounds of the inverse square root at `frac_bits` fractional bits with `steps` Newton steps.
pub fn rsqrt_rounds(frac_bits: u32, steps: u32, mode: TruncationMode) -> u64 {
    let m = cost::fixed_mul_rounds(mode);
    let levels = normalize::levels(frac_bits, &rsqrt_half_exponents(frac_bits));
    cost::normalize_rounds(levels, mode) + 2 * u64::from(steps) * m + m + cost::MUL.rounds
}
