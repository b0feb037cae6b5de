//! The model layer: what inference ([`crate::executor`]) and training ([`crate::training`]) share — the lowering
//! of every layer kind to protocols, forward and backward side by side ([`layers`]), the tape a training forward
//! keeps ([`Tape`]), who plays which part ([`Roles`]) and the per-step record of time and communication both
//! report. The executor and the trainer are drivers over it: sharing, checks, orchestration.
//!
//! **Cross-layer fusion** ([`Fusion`], on by default; `Executor::with_fusion`, `TrainConfig::with_fusion`,
//! `--no-fusion` on the command line) merges what consecutive layers allow:
//! - *Average pool into the next product* (inference and training): an AvgPool2d or GlobalAvgPool whose window area is `2^e`
//!   and whose output reaches a Conv2d or Linear through ReLU/Flatten/Dropout only keeps its window sums (local);
//!   the product truncates by `t + e` bits (its GEMM kernel is named `avgpool_div_conv2d` / `avgpool_div_linear`),
//!   a convolution's bias entering at the matching scale. The pool's division (2 rounds exact, 1 probabilistic)
//!   disappears; one rounding replaces two, so the logits differ from the unfused ones by a few ulps times the
//!   weights' norms (`runtime/tests/fusion.rs` states the bound). The plan is [`cryptgpu_dsl::fuse`]'s, which the
//!   range analysis reads too: the stored window sums and the `2^e`× larger pre-truncation values are bounded, and a
//!   run that would exceed the ring limit is refused. A non-power-of-two area (3×3 ÷ 9) or a pool that no product
//!   follows (or a residual join in between) runs as before. In training the product saves the window sums as
//!   its input, so both its gradients truncate the same `t + e` bits (`dW = dYᵀ·S/2^e`, and `dY·W/2^e` is the
//!   gradient with respect to the sums), and the pool's backward only spreads it: the backward division goes too.
//!   Training has no range analysis: the sums take `e` bits of the ring's headroom there.
//! - *Batch norm into the next product* (inference): a BatchNorm2d (running statistics, `y = scale⊙x + shift`
//!   per channel) whose output reaches a Conv2d **without padding** or a Linear layer through Flatten, Dropout,
//!   unpadded AvgPool2d and GlobalAvgPool only — typically a batch norm after a ReLU — is folded by the model owner
//!   into that product's plaintext weights: `W·diag(scale)` and `b + W*shift` (a linear layer's feature
//!   `c·H·W + i` belongs to channel `c`) are shared instead of `W`, `b`, `scale`, `shift`, and the batch norm is
//!   the identity: no round, no byte. Exact in real arithmetic; one rounding of the products replaces the batch
//!   norm's, so the logits differ from the unfused ones by a few ulps times the weights' norms
//!   (`runtime/tests/bn_fold.rs` states the bound). Not folded (the batch norm runs as an affine map on shares):
//!   a padded convolution after it (a border window would see 0 where the unfolded run has `shift`), a max pool,
//!   a padded average pool, a ReLU or another batch norm in between, or a residual fork or join (the value feeds
//!   two consumers). [`cryptgpu_dsl::fold::bn_input_folds`] finds the pairs; the range analysis bounds the folded
//!   products with the folded weights, whose values are those of the unfolded chain. A batch norm right after a
//!   convolution is folded into it whether fusion is on or not (`Executor::with_batch_norm_folding` turns both
//!   off).
//! - *`dW` and `dX` in shared rounds* (training backward): a convolution's or linear layer's two independent
//!   products run their local GEMMs at their own steps, then truncate together
//!   ([`crate::protocols::joint`]): the same words in half the rounds, gradients bit for bit the unfused ones.

mod fusion;
mod inference_params;
pub(crate) mod layers;
mod roles;
mod steps;
mod tape;

pub use fusion::Fusion;
pub(crate) use inference_params::{inference_tensors, is_folded_bn};
pub use roles::Roles;
pub(crate) use steps::{merge, timed};
pub use steps::{LayerStats, StepStats};
pub use tape::Tape;

/// A plaintext tensor of the model description language (weights, inputs and logits).
pub type DslTensor = cryptgpu_dsl::Tensor;
