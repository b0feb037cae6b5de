//! 2-D convolution of a shared batch with shared weights (stride, zero padding, optional bias).
//!
//! As a GEMM: `W (Co × C·kh·kw) · im2col(X) (C·kh·kw × N·OH·OW)`. The im2col gather is linear, so each party
//! gathers its pieces `X_i` and `X_{i+1}`; the product is the [matmul](super::matmul) stage plan (one GEMM over
//! the doubled inner dimension with the weights' pieces summed, masks, bias and local truncation step in its
//! epilogue, then the truncating reshare). The output `[Co, N, OH, OW]` is permuted to `[N, Co, OH, OW]` locally.
//! Cost per output element: [`cost::MUL_EXACT`](super::cost::MUL_EXACT) under the default exact truncation,
//! [`cost::MUL`](super::cost::MUL) under the probabilistic mode.

use super::matmul::{Bias, GemmOperands};
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::{conv_out, GatherKernel, Load};

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

    /// Permute the axes of a share (local): output axis `a` is input axis `perm[a]`.
    pub fn permute(&mut self, x: &Share, perm: &[usize]) -> Result<Share> {
        let k = GatherKernel::permute("permute", x.shape(), perm)?;
        self.call(|p| p.gather_share(&k, x, &k.out_shape))
    }
}
