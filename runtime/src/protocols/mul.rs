//! Elementwise multiplication of two shares.
//!
//! Party `i` computes its cross terms `c_i = x_i·(y_i + y_{i+1}) + x_{i+1}·y_i` plus a fresh zero share, then the
//! [reshare](super::reshare) turns the 3-out-of-3 sum into replicated shares, dividing by `2^t` on the way for
//! fixed-point values. Cost of a ring product: [`cost::MUL`](super::cost::MUL) — 1 round, 8 bytes per element per
//! party (CryptGPU's release: 3 exchanges, 24 bytes). A fixed-point product under the default exact truncation
//! ([`TruncationMode::Exact`](super::TruncationMode)): [`cost::MUL_EXACT`](super::cost::MUL_EXACT) — 2 rounds,
//! 8 + 8/3 bytes at `t ≤ 21`, never failing for `|x·y·2^(2t)| < 2^62`; under the probabilistic mode 1 round, failing with probability
//! `≈ |x·y|·2^(2t)/2^64` per element (see [`reshare`](super::reshare)).

use super::base::Reshare;
use super::local::same_shape;
use crate::party::Party;
use crate::share::Share;
use crate::Result;
use cryptgpu_codegen::MapBuilder;

impl Party {
    /// `x · y` elementwise for fixed-point values (truncation fused into the single round).
    pub fn mul(&mut self, x: &Share, y: &Share) -> Result<Share> {
        let how = self.fixed_reshare();
        self.mul_with(x, y, how)
    }

    /// `x · y` elementwise in the ring (no truncation).
    pub fn mul_ring(&mut self, x: &Share, y: &Share) -> Result<Share> {
        self.mul_with(x, y, Reshare::Plain)
    }

    fn mul_with(&mut self, x: &Share, y: &Share, how: Reshare) -> Result<Share> {
        same_shape("mul", x.shape(), y.shape())?;
        self.call(|p| {
            let step = p.next_step();
            let mut b = MapBuilder::new("mul_local");
            let (xi, xn, yi, yn) = (b.input(0), b.input(1), b.input(2), b.input(3));
            let ys = b.add(yi, yn);
            let t0 = b.mul(xi, ys);
            let t1 = b.mul(xn, yi);
            let v = b.add(t0, t1);
            p.reshare_epilogue(&mut b, v, how, step);
            let outs = p.map(
                &b.build(),
                &[x.mine(), x.next(), y.mine(), y.next()],
                &Party::reshare_params(how),
                &p.reshare_streams(how, step),
                x.len(),
            )?;
            p.finish_reshare(outs, x.shape(), how, step)
        })
    }
}
