//! Normalisation of a share by its secret binary exponent: the building block of the reciprocal, the inverse square
//! root and the logarithm (range-safe starts for Newton's method, whatever the magnitude of the input).
//!
//! **Exponent class.** For a ring element `a` (the fixed-point encoding of a real, `t` fractional bits) the bits
//! `d_i = [a ≥ 2^i]`, `i = 0..=top`, are ONE batched [DReLU](super::sign) over the `(top + 1)·n` differences
//! `a − 2^i` (a local broadcast gather and a public add): 8 rounds. They are monotone, so the class
//! `c = Σ d_i − 1` is the position of the leading one of `a` for `1 ≤ a < 2^(top+1)`, `top` for every larger
//! value (the lumped top class) and `−1` for `a ≤ 0`. One batched [`Party::mul_bit`] over public ones (3 rounds)
//! turns the bits into ring integers `δ_i ∈ {0, 1}`.
//!
//! **Tables.** Any public per-class table `f(c)` is then LOCAL: `f(c) = f(−1) + Σ_i δ_i·(f(i) − f(i−1))` (the sum
//! telescopes), a product with a public tensor and a reducing gather. The functions build their scale factors
//! this way, so the one-hot of the exponent is never formed explicitly and nothing is opened.
//!
//! **Scaling.** `a' = a·2^e(c)` for a per-class exponent `e(c)` (e.g. `e = t − 1 − c` puts `a'` in `[0.5, 1)`):
//! the table `C(c) = 2^(t + e(c))` is the fixed-point encoding of `2^e(c)` and `a' = a·C` is one fixed-point
//! product whose pre-truncation value `a'·2^(2t)` is small (no overflow, negligible truncation failure in the
//! probabilistic mode). When `2^e(c)` is below one ulp (inputs `a ≥ 2^t`), the input is first divided by `2^(L·t)`
//! (public truncations, `L` levels) and the level's product uses `C_L(c) = 2^(t + e(c) + L·t)`; all levels are
//! multiplied in ONE batched product (tables are zero outside their level) and summed. Classes without an exponent
//! (`a ≤ 0`, the lumped top class where a function's result is below one ulp) get a public offset instead.
//!
//! **Cost**: [`cost::normalize_rounds`](super::cost::normalize_rounds) — 8 (DReLU) + 3 (bit injection) +
//! (levels − 1) truncations + 1 product.
//!
//! **Range**: the comparisons are exact for `−2^63 + 2^top ≤ a < 2^63`, i.e. every positive fixed-point value and
//! negative ones of magnitude below `2^(62 − t)`.
//!
//! **Error**: `a'` is within one ulp of `a·2^e(c)` (the product's
//! truncation), plus one ulp per level for inputs `a ≥ 2^t` (the chained truncations of `a`, relative `2^(1−t)`).

use super::local::{same_shape, stack};
use crate::party::Party;
use crate::share::Share;
use crate::tensor::RingTensor;
use crate::{Error, Result};

/// The fewest fractional bits the normalised functions accept (their error bounds are stated relative to `2^−t`).
pub const MIN_FRAC_BITS: u32 = 8;

/// The exponent class of every element of a share, as ring-integer bits `δ_i = [a ≥ 2^i]` (`[top + 1, n]`).
pub(crate) struct ExponentBits {
    bits: Share,
    n: usize,
    top: u32,
    shape: Vec<usize>,
}

impl ExponentBits {
    /// Number of classes, `top + 2` (`−1..=top`).
    pub(crate) fn classes(&self) -> usize {
        self.top as usize + 2
    }
}

/// The level (number of `2^t` divisions of the input) a class with exponent `e` needs: the least `L ≥ 0` with
/// `t + e + L·t ≥ 0`.
pub(crate) fn level(t: u32, e: i32) -> u32 {
    let (t, e) = (t as i64, e as i64);
    if t + e >= 0 {
        0
    } else {
        ((-(t + e) + t - 1) / t) as u32
    }
}

/// Levels (`1 + the largest level`) a table of per-class exponents needs.
pub(crate) fn levels(t: u32, exps: &[Option<i32>]) -> u32 {
    1 + exps.iter().flatten().map(|&e| level(t, e)).max().unwrap_or(0)
}

/// Check the session's fractional bits for the normalised functions.
pub(crate) fn check_frac_bits(op: &str, t: u32) -> Result<()> {
    if t < MIN_FRAC_BITS {
        return Err(Error::Invalid(format!(
            "{op}: needs at least {MIN_FRAC_BITS} fractional bits, the session has {t}"
        )));
    }
    Ok(())
}

impl Party {
    /// The exponent bits of `a` over classes `−1..=top` (`top ≤ 62`): 9 rounds (DReLU, then bit injection).
    pub(crate) fn exponent_bits(&mut self, a: &Share, top: u32) -> Result<ExponentBits> {
        if top > 62 || a.is_empty() {
            return Err(Error::Invalid(format!("exponent classes up to {top} of {} elements", a.len())));
        }
        let (n, j) = (a.len(), top as usize + 1);
        let flat = a.clone().viewed(&[n], "same size")?;
        let rows = self.broadcast_rows(&flat, j)?;
        let thresholds: Vec<u64> = (0..j).map(|i| (1u64 << i).wrapping_neg()).collect();
        let thresholds = self.row_constants(&thresholds, n)?;
        let diff = self.add_public_words(&rows, &thresholds)?;
        let d = self.drelu(&diff)?;
        let ones = self.public_share(&RingTensor::new(&[j, n], vec![1; j * n])?)?;
        let bits = self.mul_bit(&ones, &d)?;
        Ok(ExponentBits { bits, n, top, shape: a.shape().to_vec() })
    }

    /// The public per-class table `f` (`f[0]` for class −1, `f[c + 1]` for class `c`) at every element's class, as
    /// a share of ring values in the input's shape (local).
    pub(crate) fn class_table(&mut self, e: &ExponentBits, f: &[u64]) -> Result<Share> {
        if f.len() != e.classes() {
            return Err(Error::Invalid(format!("a class table of {} entries for {} classes", f.len(), e.classes())));
        }
        let (n, j) = (e.n, e.top as usize + 1);
        let deltas: Vec<u64> = (0..j).map(|i| f[i + 1].wrapping_sub(f[i])).collect();
        let deltas = self.row_constants(&deltas, n)?;
        let prod = self.mul_public_words(&e.bits, &deltas)?;
        let sum = self.sum_rows(&prod, j, &e.shape)?;
        self.add_public(&sum, &RingTensor::new(&e.shape, vec![f[0]; n])?)
    }

    /// `a·2^exps[c]` for every element of class `c` (`exps[0]` for class −1), or the public real `offset` where the
    /// class has no exponent: the levels' truncations, then one batched fixed-point product.
    pub(crate) fn scale_by_class(
        &mut self,
        a: &Share,
        e: &ExponentBits,
        exps: &[Option<i32>],
        offset: f64,
    ) -> Result<Share> {
        same_shape("scale_by_class", a.shape(), &e.shape)?;
        if exps.len() != e.classes() {
            return Err(Error::Invalid(format!("{} exponents for {} classes", exps.len(), e.classes())));
        }
        let t = self.fixed().frac_bits();
        let nl = levels(t, exps) as usize;
        let mut inputs = vec![a.clone()];
        for _ in 1..nl {
            let prev = inputs.last().expect("level 0");
            let next = self.truncate(prev, t)?;
            inputs.push(next);
        }
        let mut factors = Vec::with_capacity(nl);
        for l in 0..nl as u32 {
            let table: Vec<u64> = exps
                .iter()
                .map(|x| match x {
                    Some(x) if level(t, *x) == l => 1u64 << (t as i64 + *x as i64 + (l * t) as i64),
                    _ => 0,
                })
                .collect();
            factors.push(self.class_table(e, &table)?);
        }
        let (xs, cs) = (stack(&inputs.iter().collect::<Vec<_>>())?, stack(&factors.iter().collect::<Vec<_>>())?);
        let prod = self.mul(&xs, &cs)?;
        let scaled = self.sum_rows(&prod, nl, a.shape())?;
        let off = self.fixed().encode(offset)?;
        let offsets: Vec<u64> = exps.iter().map(|x| if x.is_some() { 0 } else { off }).collect();
        let off = self.class_table(e, &offsets)?;
        self.add(&scaled, &off)
    }
}
