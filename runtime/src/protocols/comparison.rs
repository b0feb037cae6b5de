//! Comparisons of two shares, or of a share with a public fixed-point tensor or scalar, as one shared bit per
//! element.
//!
//! Every comparison is one [DReLU](super::sign) of a difference, computed locally:
//! `x ≥ y ⇔ DReLU(x − y)`, `x ≤ y ⇔ DReLU(y − x)`, `x < y ⇔ ¬DReLU(x − y)`, `x > y ⇔ ¬DReLU(y − x)`
//! (DReLU(0) = 1, so equality lands on the `≥`/`≤` side and the strict comparisons are exact complements).
//! The result is a one-plane [`BinShare`] (`1` = true), ready for [`Party::mul_bit`], [`Party::and`] or
//! [`Party::reveal_bits`].
//!
//! **Range.** Exact whenever the difference does not wrap: `|x − y| < 2^63` as ring values, e.g. both operands in
//! `[−2^62, 2^62)` (reals of magnitude below `2^(62−t)`, `2^42` at t = 20).
//!
//! **Cost.** The difference (and negation, for the public forms) is local; the DReLU is 8 rounds and
//! [`cost::drelu_bytes`](super::cost::drelu_bytes) per party: [`cost::comparison_rounds`](super::cost::comparison_rounds)
//! and [`cost::comparison_bytes`](super::cost::comparison_bytes).

use super::binary::BinShare;
use super::local::same_shape;
use crate::party::Party;
use crate::share::Share;
use crate::tensor::{RingTensor, Tensor};
use crate::Result;

impl Party {
    /// `[x < y]` elementwise: `¬DReLU(x − y)`.
    pub fn less_than(&mut self, x: &Share, y: &Share) -> Result<BinShare> {
        same_shape("less_than", x.shape(), y.shape())?;
        self.call(|p| {
            let ge = p.greater_equal(x, y)?;
            p.not(&ge)
        })
    }

    /// `[x > y]` elementwise: `¬DReLU(y − x)`.
    pub fn greater_than(&mut self, x: &Share, y: &Share) -> Result<BinShare> {
        same_shape("greater_than", x.shape(), y.shape())?;
        self.call(|p| {
            let le = p.less_equal(x, y)?;
            p.not(&le)
        })
    }

    /// `[x ≥ y]` elementwise: `DReLU(x − y)`.
    pub fn greater_equal(&mut self, x: &Share, y: &Share) -> Result<BinShare> {
        same_shape("greater_equal", x.shape(), y.shape())?;
        self.call(|p| {
            let d = p.sub(x, y)?;
            p.drelu(&d)
        })
    }

    /// `[x ≤ y]` elementwise: `DReLU(y − x)`.
    pub fn less_equal(&mut self, x: &Share, y: &Share) -> Result<BinShare> {
        same_shape("less_equal", x.shape(), y.shape())?;
        self.call(|p| {
            let d = p.sub(y, x)?;
            p.drelu(&d)
        })
    }

    /// `[x < c]` for a public real tensor `c` of `x`'s shape (encoded with the session's fixed point).
    pub fn less_than_public(&mut self, x: &Share, c: &Tensor) -> Result<BinShare> {
        let c = self.comparison_operand("less_than_public", x, c)?;
        self.call(|p| {
            let ge = p.ge_ring(x, &c)?;
            p.not(&ge)
        })
    }

    /// `[x > c]` for a public real tensor `c` of `x`'s shape.
    pub fn greater_than_public(&mut self, x: &Share, c: &Tensor) -> Result<BinShare> {
        let c = self.comparison_operand("greater_than_public", x, c)?;
        self.call(|p| {
            let le = p.le_ring(x, &c)?;
            p.not(&le)
        })
    }

    /// `[x ≥ c]` for a public real tensor `c` of `x`'s shape.
    pub fn greater_equal_public(&mut self, x: &Share, c: &Tensor) -> Result<BinShare> {
        let c = self.comparison_operand("greater_equal_public", x, c)?;
        self.call(|p| p.ge_ring(x, &c))
    }

    /// `[x ≤ c]` for a public real tensor `c` of `x`'s shape.
    pub fn less_equal_public(&mut self, x: &Share, c: &Tensor) -> Result<BinShare> {
        let c = self.comparison_operand("less_equal_public", x, c)?;
        self.call(|p| p.le_ring(x, &c))
    }

    /// `[x < c]` for a public real scalar `c`, every element.
    pub fn less_than_scalar(&mut self, x: &Share, c: f64) -> Result<BinShare> {
        let c = Self::broadcast_scalar(x, c)?;
        self.less_than_public(x, &c)
    }

    /// `[x > c]` for a public real scalar `c`, every element.
    pub fn greater_than_scalar(&mut self, x: &Share, c: f64) -> Result<BinShare> {
        let c = Self::broadcast_scalar(x, c)?;
        self.greater_than_public(x, &c)
    }

    /// `[x ≥ c]` for a public real scalar `c`, every element.
    pub fn greater_equal_scalar(&mut self, x: &Share, c: f64) -> Result<BinShare> {
        let c = Self::broadcast_scalar(x, c)?;
        self.greater_equal_public(x, &c)
    }

    /// `[x ≤ c]` for a public real scalar `c`, every element.
    pub fn less_equal_scalar(&mut self, x: &Share, c: f64) -> Result<BinShare> {
        let c = Self::broadcast_scalar(x, c)?;
        self.less_equal_public(x, &c)
    }

    /// The public operand, shape-checked and encoded.
    fn comparison_operand(&self, op: &str, x: &Share, c: &Tensor) -> Result<RingTensor> {
        same_shape(op, x.shape(), c.shape())?;
        c.encode(&self.fixed())
    }

    /// A public tensor of `x`'s shape filled with `c`.
    fn broadcast_scalar(x: &Share, c: f64) -> Result<Tensor> {
        Tensor::new(x.shape(), vec![c; x.len()])
    }

    /// `DReLU(x − c)` for a public ring tensor `c`: `x − c = −((−x) + c)`, two local maps.
    fn ge_ring(&mut self, x: &Share, c: &RingTensor) -> Result<BinShare> {
        let neg = self.neg(x)?;
        let c_minus_x = self.add_public(&neg, c)?;
        let d = self.neg(&c_minus_x)?;
        self.drelu(&d)
    }

    /// `DReLU(c − x)` for a public ring tensor `c`.
    fn le_ring(&mut self, x: &Share, c: &RingTensor) -> Result<BinShare> {
        let neg = self.neg(x)?;
        let d = self.add_public(&neg, c)?;
        self.drelu(&d)
    }
}
