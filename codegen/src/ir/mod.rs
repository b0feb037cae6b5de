//! The three kernel families of IR v1 and the enum that holds any of them.

mod bits;
mod gather;
mod gemm;
mod map;

pub use bits::{BitKernel, BitOp};
pub use gather::{conv_out, Affine, GatherKernel};
pub use gemm::GemmKernel;
pub use map::{packed_value, packed_words, values_per_word, Load, MapBuilder, MapKernel, Op, Reg};

/// Any kernel a protocol stage can launch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Elementwise map over equally long buffers, with PRG draws.
    Map(MapKernel),
    /// Ring GEMM (sum of products of several A/B blocks) with a fused elementwise epilogue.
    Gemm(GemmKernel),
    /// Affine index gather (optionally summing over window axes), zero outside the input.
    Gather(GatherKernel),
    /// Bit-matrix transpose between element-major words and bit planes.
    Bits(BitKernel),
}

impl Kernel {
    /// The kernel's name (unique per protocol stage; used in logs, caches and emitted symbols).
    pub fn name(&self) -> &str {
        match self {
            Kernel::Map(k) => &k.name,
            Kernel::Gemm(k) => &k.name,
            Kernel::Gather(k) => &k.name,
            Kernel::Bits(k) => &k.name,
        }
    }
}
