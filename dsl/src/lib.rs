//! The model description language of cryptgpu.
//!
//! This crate owns the layer types ([`layer`]), the model graph with shape inference and a run-time builder
//! ([`graph`]), the shipped models LeNet to ResNet-152 ([`models`]), named tensors with Kaiming initialisation
//! ([`params`]) over a minimal f64 tensor ([`tensor`]), weights I/O in safetensors with PyTorch names
//! ([`weights`]) and the plaintext f64 reference forward/backward, loss and SGD ([`reference`](mod@reference)) that every private
//! result is checked against, batch-norm folding for inference ([`fold`]), the cross-layer fusion plan ([`fuse`]) and the range analysis that bounds every value
//! of a private inference ([`range`]). It is pure Rust and plaintext: no secret sharing happens here.

#![warn(missing_docs)]

pub mod error;
pub mod fold;
pub mod fuse;
pub mod graph;
pub mod layer;
pub mod models;
pub mod params;
pub mod range;
pub mod reference;
pub mod tensor;
pub mod weights;

pub use error::{DslError, FileDefect, Result, TensorIssue};
pub use graph::{Builder, Graph, LayerInfo, ParamSpec};
pub use layer::{BatchNorm2d, Conv2d, Layer, Linear, Node, ParamKind, Pool2d};
pub use params::Params;
pub use tensor::Tensor;
