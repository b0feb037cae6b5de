//! What inference ([`crate::executor`]) and training ([`crate::training`]) share: who plays which part, and the
//! per-step record of time and communication that both report.

mod roles;
mod steps;

pub use roles::Roles;
pub(crate) use steps::{merge, timed};
pub use steps::{LayerStats, StepStats};

/// A plaintext tensor of the model description language (weights, inputs and logits).
pub type DslTensor = cryptgpu_dsl::Tensor;
