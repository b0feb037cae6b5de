//! The model layer: what inference ([`crate::executor`]) and training ([`crate::training`]) share — the lowering
//! of every layer kind to protocols, forward and backward side by side ([`layers`]), the tape a training forward
//! keeps ([`Tape`]), who plays which part ([`Roles`]) and the per-step record of time and communication both
//! report. The executor and the trainer are drivers over it: sharing, checks, orchestration.

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
