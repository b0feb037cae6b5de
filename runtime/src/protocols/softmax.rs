//! Softmax over the last axis, max-subtracted, with nothing opened (Piranha's artifact reveals the logits).
//!
//! **Protocol.** For rows of length `m`: the row maximum by the tournament of [`Party::max_axis`]
//! ([`max`](super::max): exact, `10·⌈log2 m⌉` rounds), broadcast back (a gather) and subtracted, so every input of
//! the exponential is `≤ 0` and the row's maximum maps to exactly 1; [`Party::exp_with`] with `max_input = 0`
//! (any positive rounding residue is clipped); the row sums (a reducing gather, local); ONE [`Party::reciprocal`]
//! per row (range-safe for every sum, `1 ≤ S ≤ m`); one product with the broadcast reciprocal.
//!
//! **Error bound** ([`softmax_error_bound`]): with `N = 2^n` and `ρ(x) = 1 − (1 + x/N)^N·e^−x` the exponential's
//! relative approximation error (`≈ x²/2N`, and 1 for `x ≤ −N`), every probability is within
//! `A + B(m) + 4N·2^−t + 2^(2−t)` of the exact softmax, where `A = max_{x≤0} e^x·ρ(x)` (`≈ 2e^−2/N`: the element's
//! own exponential, the row sum being at least 1) and `B(m) = max_{x≤0} ρ(x)·u/(1 + u)²` with `u = (m − 1)·e^x` (the
//! error of the row sum, largest when the other `m − 1` entries sit where their total weight is comparable to the
//! maximum's, and growing like `(ln m)²/8N`), then the rounding of the squarings (relative `2N·2^−t` in the numerator
//! and in the sum) and of the reciprocal and the product. For `m = 10`, `n = 8`, t = 20: `6.1·10^−3`; raise `n` for
//! long rows.
//!
//! **Cost**: [`softmax_rounds`] — maximum, exponential, reciprocal, one product:
//! 80 rounds in the probabilistic truncation mode, 98 in the exact mode, for rows of 10 and `n = 8`.

use super::cost::{
    drelu_bytes, exp_rounds, fixed_mul_rounds, max_bytes, max_rounds, mul_bit_bytes, reciprocal_rounds, relu_bytes,
};
use super::cost::{Cost, DIVIDE, DIVIDE_EXACT, MUL, MUL_EXACT};
use super::exp::ExpConfig;
use super::{normalize, reciprocal, SignBits, TruncationMode};
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{Affine, GatherKernel};

/// The documented bound on `|softmax(x)_i − p_i|` for rows of length `m`, `iterations` squarings in the exponential
/// and `frac_bits` fractional bits (see the module docs; the maxima over `x ≤ 0` are taken on a grid of step 1/64).
pub fn softmax_error_bound(m: usize, iterations: u32, frac_bits: u32) -> f64 {
    let big_n = f64::from(iterations).exp2();
    let rho = |x: f64| if x <= -big_n { 1.0 } else { 1.0 - (1.0 + x / big_n).powf(big_n) * (-x).exp() };
    let (mut a, mut b) = (0f64, 0f64);
    for k in 0..(64.0 * (big_n + 1.0)) as usize {
        let x = -(k as f64) / 64.0;
        let u = (m.saturating_sub(1)) as f64 * x.exp();
        a = a.max(x.exp() * rho(x));
        b = b.max(rho(x) * u / ((1.0 + u) * (1.0 + u)));
    }
    let ulp = (-f64::from(frac_bits)).exp2();
    a + b + 4.0 * big_n * ulp + 4.0 * ulp
}

impl Party {
    /// Softmax over the last axis with the default exponential (8 iterations).
    pub fn softmax(&mut self, x: &Share) -> Result<Share> {
        self.softmax_with(x, ExpConfig::default().iterations)
    }

    /// Softmax over the last axis, the exponential with `iterations` squarings (see the module docs).
    pub fn softmax_with(&mut self, x: &Share, iterations: u32) -> Result<Share> {
        let shape = x.shape().to_vec();
        let m = *shape.last().unwrap_or(&0);
        if m == 0 || x.is_empty() {
            return Err(Error::Invalid(format!("softmax of a tensor of shape {shape:?}")));
        }
        let rows = x.len() / m;
        let flat = [rows, m];
        let xs = x.clone().viewed(&flat, "same size")?;
        let spread = GatherKernel {
            name: "softmax_spread".into(),
            in_shape: vec![rows],
            out_shape: vec![rows, m],
            reduce_shape: vec![],
            coords: vec![Affine::axis(0)],
        };
        self.call(|p| {
            let spread_share = |p: &Party, s: &Share| -> Result<Share> { p.gather_share(&spread, s, &flat) };
            let mx = p.max_axis(&xs, 1)?;
            let mxb = spread_share(p, &mx)?;
            let d = p.sub(&xs, &mxb)?;
            let e = p.exp_with(&d, ExpConfig { iterations, max_input: 0.0 })?;
            let s = p.sum_except(&e, &flat, 0, &[rows])?;
            let r = p.reciprocal(&s)?;
            let rb = spread_share(p, &r)?;
            let y = p.mul(&e, &rb)?;
            y.viewed(&shape, "same size")
        })
    }
}

/// Rounds of softmax over rows of length `len` with `iterations` squarings in the exponential: maximum,
/// exponential, reciprocal (3 steps), one product.
pub fn softmax_rounds(len: usize, iterations: u32, mode: TruncationMode) -> u64 {
    max_rounds(len)
        + exp_rounds(iterations, mode)
        + reciprocal_rounds(reciprocal::RECIPROCAL_NEWTON_STEPS, mode)
        + fixed_mul_rounds(mode)
}

/// Bytes sent by all three parties together for `elements` elements of a declared per-element cost, truncating by
/// `k` bits.
fn total(c: Cost, elements: usize, k: u32) -> u64 {
    c.bytes_for(elements, k).iter().sum()
}

/// Total bytes (all parties) of a fixed-point product or power-of-two truncation by `k` bits of `elements` under
/// `mode`.
fn fixed_total(mode: TruncationMode, mul: bool, elements: usize, k: u32) -> u64 {
    use TruncationMode::{Exact, Probabilistic};
    match (mode, mul) {
        (Exact, true) => total(MUL_EXACT, elements, k),
        (Exact, false) => total(DIVIDE_EXACT, elements, k),
        (Probabilistic, true) => total(MUL, elements, k),
        (Probabilistic, false) => total(DIVIDE, elements, k),
    }
}

/// Bytes sent by all three parties together in softmax over `rows` rows of length `m` with `iterations` squarings
/// at `frac_bits` fractional bits. Softmax composes sub-protocols whose roles rotate independently, so its bytes per
/// party depend on the step counter; the total over the parties does not, and is declared (and asserted) exactly:
/// the maximum, the exponential (a truncation, one ReLU over both clips, the squarings), the reciprocal of the row
/// sums (a DReLU and a bit injection over its exponent classes, the scaling levels, 3 Newton steps of two products,
/// the rescale), and the final product.
pub fn softmax_total_bytes(rows: usize, m: usize, iterations: u32, frac_bits: u32, mode: TruncationMode) -> u64 {
    let n = rows * m;
    let sum3 = |b: [u64; 3]| b.iter().sum::<u64>();
    let bits = SignBits::default();
    let max = sum3(max_bytes(m, rows));
    let t = frac_bits;
    let exp = fixed_total(mode, false, n, iterations)
        + sum3(relu_bytes(2 * n, bits))
        + u64::from(iterations) * fixed_total(mode, true, n, t);
    let classes = reciprocal::reciprocal_top(frac_bits) as usize + 1;
    let levels = normalize::levels(frac_bits, &reciprocal::reciprocal_exponents(frac_bits)) as usize;
    let steps = reciprocal::RECIPROCAL_NEWTON_STEPS as usize;
    let recip = sum3(drelu_bytes(classes * rows, bits))
        + sum3(mul_bit_bytes(classes * rows))
        + (levels as u64 - 1) * fixed_total(mode, false, rows, t)
        + fixed_total(mode, true, levels * rows, t)
        + 2 * steps as u64 * fixed_total(mode, true, rows, t)
        + fixed_total(mode, true, rows, t)
        + total(MUL, rows, t);
    max + exp + recip + fixed_total(mode, true, n, t)
}
