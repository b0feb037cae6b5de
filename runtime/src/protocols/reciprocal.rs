//! The reciprocal `1/a` of a positive share, by Newton–Raphson from a range-safe start.
//!
//! CrypTen and CryptGPU start Newton at `3·exp(0.5 − a) + 0.003` (or `1/200`) for every input: the iteration
//! `y ← y(2 − a·y)` converges only for `0 < y_0 < 2/a`, so it diverges for sums `≥ 400`. Here the input is first
//! [normalised](super::normalize) by its secret binary exponent: with `c` the position of the leading one of the
//! encoding (`c = ⌊log2 a⌋ + t`), `a' = a·2^(t−1−c) ∈ [0.5, 1)` (classes `c ≤ 2t − 1`, one fixed-point product).
//! On `[0.5, 1]` the linear start `y_0 = 4(√3 − 1) − 2a'` (local) has relative error `|1 − a'y_0| ≤ 0.0718`, and
//! Newton squares it: `5.2·10^−3`, `2.7·10^−5`, `7·10^−10` after 1, 2, 3 steps (the default is
//! [`RECIPROCAL_NEWTON_STEPS`] = 3). The result is rescaled by `2^(t−1−c)` as `(r·D)·U`: `D = 2^min(0, t−1−c)` (a
//! fixed-point product, small operands) and `U = 2^max(0, t−1−c)` (an exact ring product by an integer), both
//! per-class tables built locally from the exponent bits, so a large result (`1/a` up to `2^t`) never passes
//! through a truncation.
//!
//! **Domain**: every positive fixed-point value, `2^−t ≤ a < 2^(63−t)`. For `a ≥ 2^t` (the lumped top class) the
//! result is 0, within one ulp of `1/a ≤ 2^−t`. Inputs `a ≤ 0` are outside the domain: the result is 0 (no error
//! is raised, as the input is secret).
//!
//! **Error bound** (`t` fractional bits, ≥ 3 steps): `|y − 1/a| ≤ 2^(2−t)·(1/a) + 2^(1−t)`, i.e. relative error at
//! most `2^(2−t)` (`3.8·10^−6` at t = 20) wherever `1/a` is well above one ulp, and an absolute error of at most 2
//! ulps where it is not. The terms: one ulp in `a'` (relative `2^(1−t)`), the rounding of the Newton steps (about
//! one ulp of `r ∈ (1, 2]`, as each step corrects the previous one's error), and one ulp of the rescaling product.
//! Measured (tests, t = 20): relative error at most `1.5·10^−6` for `1/a ≥ 1`, in both truncation modes.
//!
//! **Cost**: [`cost::reciprocal_rounds`](super::cost::reciprocal_rounds) — normalisation (8 + 3 + one product),
//! two products per Newton step, one fixed-point and one ring product to rescale: 20 rounds in the probabilistic
//! truncation mode, 28 in the exact mode (3 steps).

use super::normalize::check_frac_bits;
use crate::party::Party;
use crate::share::Share;
use crate::Result;

/// Default Newton steps of [`Party::reciprocal`].
pub const RECIPROCAL_NEWTON_STEPS: u32 = 3;

/// The linear start `y_0 = RECIPROCAL_START − 2a'` on `[0.5, 1]`: `4(√3 − 1)`, equioscillating relative error.
const RECIPROCAL_START: f64 = 2.928_203_230_275_509;

/// The top exponent class of the reciprocal: inputs with `c ≥ 2t` (`a ≥ 2^t`) have `1/a ≤ 2^−t`.
pub(crate) fn reciprocal_top(t: u32) -> u32 {
    (2 * t).min(62)
}

/// Per-class exponents `t − 1 − c` (`a·2^e ∈ [0.5, 1)`), none for `a ≤ 0` and for `c ≥ 2t`.
pub(crate) fn reciprocal_exponents(t: u32) -> Vec<Option<i32>> {
    let top = reciprocal_top(t) as i32;
    (-1..=top).map(|c| (c >= 0 && c < 2 * t as i32).then_some(t as i32 - 1 - c)).collect()
}

impl Party {
    /// `1/a` for positive `a` ([`RECIPROCAL_NEWTON_STEPS`] Newton steps; see the module docs for domain and error).
    pub fn reciprocal(&mut self, a: &Share) -> Result<Share> {
        self.reciprocal_with(a, RECIPROCAL_NEWTON_STEPS)
    }

    /// `1/a` with `steps` Newton steps (3 reach the fixed-point precision for `t ≤ 28`).
    pub fn reciprocal_with(&mut self, a: &Share, steps: u32) -> Result<Share> {
        let t = self.fixed().frac_bits();
        check_frac_bits("reciprocal", t)?;
        self.call(|p| {
            let e = p.exponent_bits(a, reciprocal_top(t))?;
            let exps = reciprocal_exponents(t);
            let an = p.scale_by_class(a, &e, &exps, 1.0)?;
            // y0 = start − 2a'
            let two_a = p.add(&an, &an)?;
            let neg = p.neg(&two_a)?;
            let mut y = p.add_scalar(&neg, RECIPROCAL_START)?;
            for _ in 0..steps {
                let ay = p.mul(&an, &y)?;
                let neg_ay = p.neg(&ay)?;
                let err = p.add_scalar(&neg_ay, 2.0)?;
                y = p.mul(&y, &err)?;
            }
            // Rescale by 2^(t−1−c) = D·U.
            let (down, up): (Vec<u64>, Vec<u64>) = exps
                .iter()
                .map(|x| match *x {
                    Some(x) => (1u64 << (t as i32 + x.min(0)), 1u64 << x.max(0)),
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
