//! Sum and average pooling over `kh × kw` windows of a batch `[N, C, H, W]`.
//!
//! Sum pooling is a gather that sums each window: local, on both pieces. Average pooling divides the sum by the
//! window size `kh·kw` (zero padding counts, as PyTorch's `count_include_pad=True`) with
//! [division by a public integer](super::divide): one round, [`cost::DIVIDE`](super::cost::DIVIDE).

use super::conv::Conv2dParams;
use crate::party::Party;
use crate::share::Share;
use crate::{Error, Result};
use cryptgpu_codegen::GatherKernel;

impl Party {
    /// Sum over each `kh × kw` window (local).
    pub fn sum_pool2d(&mut self, x: &Share, window: [usize; 2], params: Conv2dParams) -> Result<Share> {
        let &[n, c, h, w] = x.shape() else {
            return Err(Error::Shape {
                op: "pool2d".into(),
                expected: "x [N, C, H, W]".into(),
                found: format!("{:?}", x.shape()),
            });
        };
        let k = GatherKernel::sum_pool("sum_pool2d", [n, c, h, w], window, params.stride, params.padding)?;
        self.call(|p| p.gather_share(&k, x, &k.out_shape))
    }

    /// Average over each `kh × kw` window: sum pooling, then division by `kh·kw`.
    pub fn avg_pool2d(&mut self, x: &Share, window: [usize; 2], params: Conv2dParams) -> Result<Share> {
        self.call(|p| {
            let sum = p.sum_pool2d(x, window, params)?;
            p.div_public(&sum, (window[0] * window[1]) as u64)
        })
    }
}
