//! Kernel IR of cryptgpu: the local work of every protocol stage, as data.
//!
//! A protocol (in `cryptgpu-runtime`) is a sequence of stages separated by messages; each stage runs a few kernels
//! described here: elementwise [`MapKernel`]s (with PRG draws), ring [`GemmKernel`]s with a fused elementwise
//! epilogue, and affine [`GatherKernel`]s (im2col, pooling windows, transposes, optionally summing a window).
//! This crate is pure: it builds and validates kernel descriptions. Backends (in `cryptgpu-runtime`) execute them:
//! the CPU backend by interpreting the IR, the CUDA backend by compiling with NVRTC the CUDA C that [`cuda`] emits
//! from the same IR, so both run one plan.

#![warn(missing_docs)]

pub mod cost;
pub mod cuda;
mod error;
pub mod ir;

pub use error::Error;
pub use ir::{
    conv_out, packed_value, packed_words, values_per_word, Affine, BitKernel, BitOp, GatherKernel, GemmKernel, Kernel,
    Load, MapBuilder, MapKernel, Op, Reg,
};

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The element count of `shape` (1 for `[]`, 0 when a dimension is 0), or `None` when the product of the non-zero
/// dimensions overflows `usize`.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    let nonzero = shape.iter().filter(|&&d| d != 0).try_fold(1usize, |a, &d| a.checked_mul(d))?;
    Some(if shape.contains(&0) { 0 } else { nonzero })
}
