//! Matrix product of two shares, as ONE ring GEMM per party.
//!
//! Party `i`'s cross terms `x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i` are ONE GEMM over the concatenated inner
//! dimension 2K, either `[x_i | x_{i+1}] · [y_i + y_{i+1} ; y_i]` or `[x_i + x_{i+1} | x_i] · [y_i ; y_{i+1}]` —
//! whichever sums the smaller operand (for a convolution, the weights rather than the im2col matrix). Its epilogue
//! masks the result (and adds a bias) and performs the local step of the truncation; then one round of
//! [reshare](super::reshare). Cost per output element: [`cost::MUL_EXACT`](super::cost::MUL_EXACT) (2 rounds) under
//! the default exact truncation, [`cost::MUL`](super::cost::MUL) (1 round) for ring products and under the
//! probabilistic mode.

use super::base::{single, Divisor, Reshare};
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{GemmKernel, Load, MapBuilder, Op};

/// A per-row or per-column vector added to the product before truncation.
pub(crate) struct Bias<'a> {
    pub share: &'a Share,
    pub load: Load,
}

/// The operands of a secure GEMM `C (m×n) = X (m×k) · Y (k×n)`, as one party's pieces.
pub(crate) struct GemmOperands<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub x_mine: &'a [u64],
    pub x_next: &'a [u64],
    pub y_mine: &'a [u64],
    pub y_next: &'a [u64],
}

impl Party {
    /// `x · y` for fixed-point matrices `x` (m×k) and `y` (k×n), truncation fused.
    pub fn matmul(&mut self, x: &Share, y: &Share) -> Result<Share> {
        let (m, k, n) = matmul_dims(x.shape(), y.shape())?;
        let how = self.fixed_reshare();
        self.call(|p| {
            let ops = GemmOperands { m, n, k, x_mine: x.mine(), x_next: x.next(), y_mine: y.mine(), y_next: y.next() };
            p.secure_gemm("matmul", &ops, None, how, &[m, n])
        })
    }

    /// `a + b` elementwise (a local map).
    fn add_pieces(&self, a: &[u64], b: &[u64]) -> Result<Vec<u64>> {
        let mut k = MapBuilder::new("add_pieces");
        let (x, y) = (k.input(0), k.input(1));
        let s = k.add(x, y);
        k.output(s);
        single(self.map(&k.build(), &[a, b], &[], &[], a.len())?)
    }

    /// The secure GEMM stage plan: one local GEMM with the reshare epilogue, then the reshare round.
    pub(crate) fn secure_gemm(
        &mut self,
        name: &str,
        ops: &GemmOperands<'_>,
        bias: Option<Bias<'_>>,
        how: Reshare,
        shape: &[usize],
    ) -> Result<Share> {
        self.check_product(&format!("{name} output"), &[ops.m, ops.n])?;
        let step = self.next_step();
        let mut b = MapBuilder::new(format!("{name}_epilogue"));
        let mut acc = b.acc();
        // Sum the smaller operand's pieces.
        let sum;
        let mut inputs: Vec<&[u64]> = if ops.m <= ops.n {
            sum = self.add_pieces(ops.x_mine, ops.x_next)?;
            vec![&sum, ops.x_mine, ops.y_mine, ops.y_next]
        } else {
            sum = self.add_pieces(ops.y_mine, ops.y_next)?;
            vec![ops.x_mine, ops.x_next, &sum, ops.y_mine]
        };
        if let Some(bias) = &bias {
            // Each party adds its own piece; the pieces sum to the bias. Scale t → 2t before the truncation.
            let v = b.op(Op::Input { buf: 0, load: bias.load });
            let scaled = match how {
                Reshare::Divide(Divisor::Pow2(t)) | Reshare::ExactTruncate(t) => b.shl(v, t),
                _ => v,
            };
            acc = b.add(acc, scaled);
            inputs.push(bias.share.mine());
        }
        self.reshare_epilogue(&mut b, acc, how, step);
        let kernel =
            GemmKernel { name: name.into(), m: ops.m, n: ops.n, k_blocks: vec![ops.k, ops.k], epilogue: b.build() };
        let outs = self.gemm(&kernel, &inputs, &Party::reshare_params(how), &self.reshare_streams(how, step))?;
        self.finish_reshare(outs, shape, how, step)
    }
}

fn matmul_dims(x: &[usize], y: &[usize]) -> Result<(usize, usize, usize)> {
    match (x, y) {
        ([m, k], [k2, n]) if k == k2 => Ok((*m, *k, *n)),
        _ => Err(Error::Shape {
            op: "matmul".into(),
            expected: "x of shape [m, k] and y of shape [k, n]".into(),
            found: format!("x {x:?}, y {y:?}"),
        }),
    }
}
