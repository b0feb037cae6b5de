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
use crate::buffer::Buffer;
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{GatherKernel, GemmKernel, Load, MapBuilder, Op};

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
    pub x_mine: &'a Buffer,
    pub x_next: &'a Buffer,
    pub y_mine: &'a Buffer,
    pub y_next: &'a Buffer,
}

impl Party {
    /// `x · y` for fixed-point matrices `x` (m×k) and `y` (k×n), truncation fused.
    pub fn matmul(&mut self, x: &Share, y: &Share) -> Result<Share> {
        self.matmul_scaled(x, y, 0, "matmul")
    }

    /// `x · y / 2^extra_bits`: the product truncated by `t + extra_bits` bits in one rounding (an average pool's
    /// division by `2^extra_bits` fused into it), its GEMM kernel named `name`; `extra_bits = 0` is
    /// [`Party::matmul`].
    pub(crate) fn matmul_scaled(&mut self, x: &Share, y: &Share, extra_bits: u32, name: &str) -> Result<Share> {
        let (m, k, n) = matmul_dims(x.shape(), y.shape())?;
        let how = self.scaled_reshare(extra_bits)?;
        self.call(|p| {
            let ops = GemmOperands { m, n, k, x_mine: x.mine(), x_next: x.next(), y_mine: y.mine(), y_next: y.next() };
            p.secure_gemm(name, &ops, None, how, &[m, n])
        })
    }

    /// The reshare of a fixed-point product truncated by `extra_bits` more than `t` (under the current mode).
    pub(crate) fn scaled_reshare(&self, extra_bits: u32) -> Result<Reshare> {
        let bits = self.fixed().frac_bits() + extra_bits;
        if bits > 62 {
            return Err(Error::Invalid(format!("a product truncated by {bits} bits; at most 62 are supported")));
        }
        Ok(match self.fixed_reshare() {
            Reshare::ExactTruncate(_) => Reshare::ExactTruncate(bits),
            Reshare::Divide(_) => Reshare::Divide(Divisor::Pow2(bits)),
            Reshare::Plain => Reshare::Plain,
        })
    }

    /// `a + b` elementwise (a local map).
    fn add_pieces(&self, a: &Buffer, b: &Buffer) -> Result<Buffer> {
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
        let (outs, step) = self.secure_gemm_local(name, ops, bias, how)?;
        self.finish_reshare(outs, shape, how, step)
    }

    /// The local stage of [`Party::secure_gemm`]: one step, the GEMM with its reshare epilogue; returns the
    /// epilogue's outputs and the step, for [`Party::finish_reshare`] (or [`Party::finish_reshares_jointly`]).
    pub(crate) fn secure_gemm_local(
        &mut self,
        name: &str,
        ops: &GemmOperands<'_>,
        bias: Option<Bias<'_>>,
        how: Reshare,
    ) -> Result<(Vec<Buffer>, u64)> {
        self.check_product(&format!("{name} output"), &[ops.m, ops.n])?;
        let step = self.next_step();
        let mut b = MapBuilder::new(format!("{name}_epilogue"));
        let mut acc = b.acc();
        let mut sum = Buffer::default();
        let mut inputs = self.cross_term_inputs(ops, &mut sum)?;
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
        Ok((outs, step))
    }

    /// The GEMM inputs of party `i`'s cross terms `x_i·y_i + x_i·y_{i+1} + x_{i+1}·y_i` as ONE product over the
    /// inner dimension 2K, summing the smaller operand's pieces into `sum`.
    fn cross_term_inputs<'a>(&self, ops: &GemmOperands<'a>, sum: &'a mut Buffer) -> Result<Vec<&'a Buffer>> {
        Ok(if ops.m <= ops.n {
            *sum = self.add_pieces(ops.x_mine, ops.x_next)?;
            vec![sum, ops.x_mine, ops.y_mine, ops.y_next]
        } else {
            *sum = self.add_pieces(ops.y_mine, ops.y_next)?;
            vec![ops.x_mine, ops.x_next, sum, ops.y_mine]
        })
    }

    /// The local stage of a product followed by linear gathers: `x·y`'s cross terms (this party's piece of the
    /// 3-out-of-3 sum, never sent as such), then `gathers` in order on that piece (a gather is linear, so the pieces
    /// of the gathered sum are the gathered pieces), then the reshare epilogue at its step. Returns the outputs for
    /// [`Party::finish_reshare`] and the step. A convolution's input gradient `col2im(Wᵀ·dY)` so truncates and
    /// sends its `N·C·H·W` input-sized values, not the `C·kh·kw·N·OH·OW` columns.
    pub(crate) fn secure_gemm_gathered_local(
        &mut self,
        name: &str,
        ops: &GemmOperands<'_>,
        gathers: &[GatherKernel],
        how: Reshare,
    ) -> Result<(Vec<Buffer>, u64)> {
        self.check_product(&format!("{name} product"), &[ops.m, ops.n])?;
        let mut b = MapBuilder::new(format!("{name}_cross_terms"));
        let acc = b.acc();
        b.output(acc);
        let kernel =
            GemmKernel { name: name.into(), m: ops.m, n: ops.n, k_blocks: vec![ops.k, ops.k], epilogue: b.build() };
        let mut sum = Buffer::default();
        let inputs = self.cross_term_inputs(ops, &mut sum)?;
        let mut piece = single(self.gemm(&kernel, &inputs, &[], &[])?)?;
        for g in gathers {
            piece = self.gather(g, &piece)?;
        }
        let step = self.next_step();
        let mut b = MapBuilder::new(format!("{name}_reshare"));
        let v = b.input(0);
        self.reshare_epilogue(&mut b, v, how, step);
        let params = Party::reshare_params(how);
        let outs = self.map(&b.build(), &[&piece], &params, &self.reshare_streams(how, step), piece.len())?;
        Ok((outs, step))
    }

    /// `gathers(x · y)` for fixed-point `x` (m×k) and `y` (k×n): the gathers (linear, e.g. col2im) run on the
    /// untruncated product before its one truncation and reshare (see [`Party::secure_gemm_gathered_local`]).
    /// The product is truncated by `extra_bits` more than `t`, as [`Party::matmul_scaled`].
    pub(crate) fn matmul_gathered(
        &mut self,
        x: &Share,
        y: &Share,
        gathers: &[GatherKernel],
        extra_bits: u32,
    ) -> Result<Share> {
        let (m, k, n) = matmul_dims(x.shape(), y.shape())?;
        let how = self.scaled_reshare(extra_bits)?;
        let shape = gathered_shape(gathers, &[m, n]);
        self.call(|p| {
            let ops = GemmOperands { m, n, k, x_mine: x.mine(), x_next: x.next(), y_mine: y.mine(), y_next: y.next() };
            let (outs, step) = p.secure_gemm_gathered_local("matmul_gathered", &ops, gathers, how)?;
            p.finish_reshare(outs, &shape, how, step)
        })
    }

    /// Independent fixed-point matmuls `x·y` whose truncations share their rounds: each local GEMM runs at its own
    /// step, exactly as the same [`Party::matmul`] calls one after another would (so the results are bit for bit
    /// theirs), then [`Party::finish_reshares_jointly`] sends every product's messages together — 2 rounds for all
    /// of them under exact truncation (1 under probabilistic) instead of 2 (1) each. Bytes are unchanged.
    pub fn matmuls_jointly(&mut self, pairs: &[(&Share, &Share)]) -> Result<Vec<Share>> {
        let products: Vec<JointProduct<'_>> =
            pairs.iter().map(|&(x, y)| JointProduct { x, y, then: &[], extra_bits: 0 }).collect();
        self.products_jointly(&products)
    }

    /// [`Party::matmuls_jointly`] for products that may each be followed by linear gathers before their truncation
    /// (as [`Party::matmul_gathered`]).
    pub(crate) fn products_jointly(&mut self, products: &[JointProduct<'_>]) -> Result<Vec<Share>> {
        // The joint rounds run the staged plan of the exact truncation (bit for bit the fused one's shares).
        let fused = std::mem::replace(&mut self.fused_truncation, false);
        let out = self.call(|p| {
            let mut pending = Vec::with_capacity(products.len());
            for &JointProduct { x, y, then, extra_bits } in products {
                let (m, k, n) = matmul_dims(x.shape(), y.shape())?;
                let how = p.scaled_reshare(extra_bits)?;
                let ops =
                    GemmOperands { m, n, k, x_mine: x.mine(), x_next: x.next(), y_mine: y.mine(), y_next: y.next() };
                let (outs, step) = match then.is_empty() {
                    true => p.secure_gemm_local("matmul", &ops, None, how)?,
                    false => p.secure_gemm_gathered_local("matmul_gathered", &ops, then, how)?,
                };
                pending.push(super::joint::Pending { outs, shape: gathered_shape(then, &[m, n]), step, how });
            }
            p.finish_reshares_jointly(pending)
        });
        self.fused_truncation = fused;
        out
    }
}

/// One product of [`Party::products_jointly`]: `x·y`, then the gathers `then` (none for a plain matmul), truncated
/// by `extra_bits` more than `t` (an average pool's division fused into it).
#[derive(Clone, Copy)]
pub(crate) struct JointProduct<'a> {
    pub x: &'a Share,
    pub y: &'a Share,
    pub then: &'a [GatherKernel],
    pub extra_bits: u32,
}

/// The shape after `gathers` of a product of shape `shape`.
fn gathered_shape(gathers: &[GatherKernel], shape: &[usize]) -> Vec<usize> {
    gathers.last().map_or_else(|| shape.to_vec(), |g| g.out_shape.clone())
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
