//! 2-D convolution of a shared batch with shared weights (stride, zero padding, optional bias).
//!
//! As a GEMM: `W (Co × C·kh·kw) · im2col(X) (C·kh·kw × N·OH·OW)`. The im2col gather is linear, so each party
//! gathers its pieces `X_i` and `X_{i+1}`; the product is the [matmul](super::matmul) stage plan (one GEMM over
//! the doubled inner dimension with the weights' pieces summed, masks, bias and local truncation step in its
//! epilogue, then the truncating reshare). The output `[Co, N, OH, OW]` is permuted to `[N, Co, OH, OW]` locally.
//! Cost per output element: [`cost::MUL_EXACT`](super::cost::MUL_EXACT) under the default exact truncation,
//! [`cost::MUL`](super::cost::MUL) under the probabilistic mode.

use super::matmul::{Bias, GemmOperands, JointProduct};
use crate::model::Fusion;
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{conv_out, GatherKernel, Load};

/// How [`Party::conv2d_grads`] runs: whether it computes `dX`, whether `dW` and `dX` truncate in shared rounds, and
/// the extra truncation bits of both.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvGrads {
    pub input_grad: bool,
    pub joint: bool,
    pub extra_bits: u32,
}

/// Stride and zero padding of a convolution or pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between windows (both axes).
    pub stride: usize,
    /// Zeros added on each side (both axes).
    pub padding: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams { stride: 1, padding: 0 }
    }
}

impl Party {
    /// `conv2d(x, w) + bias` for fixed-point `x` `[N, C, H, W]`, `w` `[Co, C, kh, kw]`, `bias` `[Co]`.
    pub fn conv2d(&mut self, x: &Share, w: &Share, bias: Option<&Share>, params: Conv2dParams) -> Result<Share> {
        self.conv2d_scaled(x, w, bias, params, 0, "conv2d")
    }

    /// `conv2d(x, w)/2^extra_bits + bias`: the product truncated by `t + extra_bits` bits in one rounding (an average
    /// pool's division by `2^extra_bits` fused into it; the bias enters before the truncation at the matching
    /// scale), its GEMM kernel named `name`; `extra_bits = 0` is [`Party::conv2d`].
    pub(crate) fn conv2d_scaled(
        &mut self,
        x: &Share,
        w: &Share,
        bias: Option<&Share>,
        params: Conv2dParams,
        extra_bits: u32,
        name: &str,
    ) -> Result<Share> {
        let shape_err = |expected: &str| Error::Shape {
            op: "conv2d".into(),
            expected: expected.into(),
            found: format!("x {:?}, w {:?}, bias {:?}", x.shape(), w.shape(), bias.map(|b| b.shape().to_vec())),
        };
        let (&[n, c, h, wd], &[co, c2, kh, kw]) = (x.shape(), w.shape()) else {
            return Err(shape_err("x [N, C, H, W] and w [Co, C, kh, kw]"));
        };
        if c != c2 {
            return Err(shape_err(&format!("w with {c} input channels, as x has")));
        }
        if bias.is_some_and(|b| b.shape() != [co]) {
            return Err(shape_err(&format!("bias of shape [{co}]")));
        }
        let (oh, ow) = conv_out("conv2d", [h, wd], [kh, kw], params.stride, params.padding)?;
        let cols = self.check_product("conv2d output", &[n, oh, ow])?;
        self.check_product("conv2d output", &[co, cols])?;
        self.check_product("conv2d im2col", &[c, kh, kw, cols])?;
        let how = self.scaled_reshare(extra_bits)?;
        self.call(|p| {
            let im2col = GatherKernel::im2col("conv2d_im2col", [n, c, h, wd], [kh, kw], params.stride, params.padding)?;
            let col_mine = p.gather(&im2col, x.mine())?;
            let col_next = p.gather(&im2col, x.next())?;
            let ops = GemmOperands {
                m: co,
                n: cols,
                k: c * kh * kw,
                x_mine: w.mine(),
                x_next: w.next(),
                y_mine: &col_mine,
                y_next: &col_next,
            };
            let bias = bias.map(|share| Bias { share, load: Load::Row });
            let nchw = GatherKernel::permute("permute", &[co, n, oh, ow], &[1, 0, 2, 3])?;
            p.reorder_expected_relu(&nchw);
            let y = p.secure_gemm(name, &ops, bias, how, &[co, n, oh, ow])?;
            p.gather_share(&nchw, &y, &nchw.out_shape)
        })
    }

    /// The gradients of `conv2d(x, w)` for the output gradient `dy` `[N, Co, OH, OW]`: `dW = dY·im2col(X)ᵀ`
    /// `[Co, C, kh, kw]` and `dX = col2im(Wᵀ·dY)` `[N, C, H, W]`. The col2im runs on the untruncated product, so
    /// `dX` truncates and sends `N·C·H·W` values, not the `C·kh·kw·N·OH·OW` columns. With [`Fusion::On`] the two
    /// truncations share their rounds (2 for both under exact truncation; the same words, grouped), with
    /// [`Fusion::Off`] they run one after the other.
    pub fn conv2d_backward(
        &mut self,
        x: &Share,
        w: &Share,
        dy: &Share,
        params: Conv2dParams,
        fusion: Fusion,
    ) -> Result<[Share; 2]> {
        let how = ConvGrads { input_grad: true, joint: fusion.is_on(), extra_bits: 0 };
        match self.conv2d_grads(x, w, dy, params, how)? {
            (dw, Some(dx)) => Ok([dw, dx]),
            _ => Err(Error::Internal("conv2d_backward: no input gradient".into())),
        }
    }

    /// [`Party::conv2d_backward`] as `how` says: with or without `dX`, in shared or separate rounds, both products
    /// truncated by `extra_bits` more than `t` (an average pool before the convolution fused into it).
    pub(crate) fn conv2d_grads(
        &mut self,
        x: &Share,
        w: &Share,
        dy: &Share,
        params: Conv2dParams,
        how: ConvGrads,
    ) -> Result<(Share, Option<Share>)> {
        let shape_err = || Error::Shape {
            op: "conv2d backward".into(),
            expected: "an input [N, C, H, W], weights [Co, C, kh, kw] and a gradient [N, Co, OH, OW]".into(),
            found: format!("{:?}, {:?} and {:?}", x.shape(), w.shape(), dy.shape()),
        };
        let (&[n, ci, h, wd], &[co, c2, kh, kw]) = (x.shape(), w.shape()) else { return Err(shape_err()) };
        let (s, pad) = (params.stride, params.padding);
        let (oh, ow) = conv_out("conv2d backward", [h, wd], [kh, kw], s, pad)?;
        if c2 != ci || dy.shape() != [n, co, oh, ow] {
            return Err(shape_err());
        }
        let e = how.extra_bits;
        // dY as [Co, N·OH·OW]; the transposed im2col of the input [N·OH·OW, C·kh·kw].
        let dyt = self.permute(dy, &[1, 0, 2, 3])?.reshaped(&[co, n * oh * ow]).ok_or_else(shape_err)?;
        let colt = GatherKernel::im2col_transposed("conv_im2col_t", [n, ci, h, wd], [kh, kw], s, pad)?;
        let cols = self.gather_share(&colt, x, &[n * oh * ow, ci * kh * kw])?;
        // dX = col2im(Wᵀ·dY), the col2im on the untruncated product.
        let onto_input = GatherKernel::col2im("col2im", [n, ci, h, wd], [kh, kw], s, pad, true)?;
        let wt = |p: &mut Party| p.permute(&w.clone().reshaped(&[co, ci * kh * kw]).ok_or_else(shape_err)?, &[1, 0]);
        let (dw, dx) = match (how.input_grad, how.joint) {
            (true, true) => {
                let wt = wt(self)?;
                let mut both = self.products_jointly(&[
                    JointProduct { x: &dyt, y: &cols, then: &[], extra_bits: e },
                    JointProduct { x: &wt, y: &dyt, then: &onto_input, extra_bits: e },
                ])?;
                let (Some(dx), Some(dw)) = (both.pop(), both.pop()) else {
                    return Err(Error::Internal("conv2d backward: two products expected".into()));
                };
                (dw, Some(dx))
            }
            (input_grad, _) => {
                let dw = self.matmul_scaled(&dyt, &cols, e, "matmul")?;
                let dx = match input_grad {
                    true => {
                        let wt = wt(self)?;
                        Some(self.matmul_gathered(&wt, &dyt, &onto_input, e)?)
                    }
                    false => None,
                };
                (dw, dx)
            }
        };
        Ok((dw.reshaped(&[co, ci, kh, kw]).ok_or_else(shape_err)?, dx))
    }

    /// Permute the axes of a share (local): output axis `a` is input axis `perm[a]`.
    pub fn permute(&mut self, x: &Share, perm: &[usize]) -> Result<Share> {
        let k = GatherKernel::permute("permute", x.shape(), perm)?;
        self.call(|p| p.gather_share(&k, x, &k.out_shape))
    }
}
