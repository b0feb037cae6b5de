//! CUDA C emission: every IR kernel becomes self-contained CUDA C (the [`prelude`] plus one `extern "C"`
//! `__global__` entry point). Pure: IR in, text out. The runtime compiles the text with NVRTC; the tests also run the
//! very same text on the CPU under an emulation header and compare it bit for bit with the CPU backend.
//!
//! Calling convention: the entry point's parameters are listed by [`CudaKernel::args`] in order; buffers are
//! `u64` device pointers (inputs `const`), scalars are `u64`, PRF streams are one `u32` array of 11 words per
//! stream (8 key words then 3 nonce words, little endian, as [`Stream`](../../cryptgpu_runtime/prg/struct.Stream.html)
//! holds them).

mod bits;
pub mod catalogue;
pub mod emulate;
mod expr;
mod gather;
pub mod gemm;
mod map;
pub mod prelude;

pub use gemm::GemmPlan;

use crate::{Kernel, Result};

/// One parameter of an emitted entry point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arg {
    /// `u64 n`: elements of a map.
    Len,
    /// `u64 m`: rows of a GEMM output.
    M,
    /// `u64 n`: columns of a GEMM output.
    N,
    /// `u64 k{j}`: inner dimension of GEMM block `j`.
    K(usize),
    /// `const u64*`: launch input buffer `i` (IR numbering).
    Input(usize),
    /// `u64*`: output buffer `j`.
    Output(usize),
    /// `u64 p{i}`: scalar parameter `i`.
    Param(usize),
    /// `const u32*`: the PRF streams, 11 words each.
    Streams,
}

/// How to size the grid of a launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Launch {
    /// 1-D grid-stride loop over `elements` with `threads` per block.
    Elements {
        /// Elements to cover.
        elements: Option<usize>,
        /// Threads per block.
        threads: u32,
    },
    /// 2-D grid of `tile_m × tile_n` output tiles, `threads = [x, y]` per block.
    Tiles {
        /// Output rows per block.
        tile_m: u32,
        /// Output columns per block.
        tile_n: u32,
        /// Block shape.
        threads: [u32; 2],
    },
}

impl Launch {
    /// Grid and block dimensions for a launch over `elements` (maps, gathers) or an `m × n` output (GEMMs).
    pub fn dims(&self, elements: usize, m: usize, n: usize) -> ([u32; 3], [u32; 3]) {
        match *self {
            Launch::Elements { elements: baked, threads } => {
                let e = baked.unwrap_or(elements).max(1);
                let blocks = e.div_ceil(threads as usize).clamp(1, 1 << 16) as u32;
                ([blocks, 1, 1], [threads, 1, 1])
            }
            Launch::Tiles { tile_m, tile_n, threads } => (
                [n.div_ceil(tile_n as usize).max(1) as u32, m.div_ceil(tile_m as usize).max(1) as u32, 1],
                [threads[0], threads[1], 1],
            ),
        }
    }
}

/// An emitted kernel: source text, entry point, parameters and launch shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CudaKernel {
    /// Entry-point symbol (the IR kernel's name, sanitised).
    pub entry: String,
    /// Complete CUDA C source: prelude and kernel.
    pub source: String,
    /// The entry point's parameters, in order.
    pub args: Vec<Arg>,
    /// How to size the launch.
    pub launch: Launch,
}

/// Emit `kernel` (GEMMs with `plan`, which is checked against the inner dimension).
pub fn emit(kernel: &Kernel, plan: GemmPlan) -> Result<CudaKernel> {
    match kernel {
        Kernel::Map(k) => map::emit(k),
        Kernel::Gather(k) => gather::emit(k),
        Kernel::Gemm(k) => gemm::emit(k, plan),
        Kernel::Bits(k) => bits::emit(k),
    }
}

/// A C identifier made from a kernel name.
pub(crate) fn ident(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "k_");
    }
    s
}

/// Parameter declarations for `args` (the C text between the parentheses).
pub(crate) fn param_list(args: &[Arg]) -> String {
    args.iter()
        .map(|a| match a {
            Arg::Len => "u64 n".to_string(),
            Arg::M => "u64 m".to_string(),
            Arg::N => "u64 n".to_string(),
            Arg::K(j) => format!("u64 k{j}"),
            Arg::Input(i) => format!("const u64* __restrict__ in{i}"),
            Arg::Output(j) => format!("u64* __restrict__ out{j}"),
            Arg::Param(i) => format!("u64 p{i}"),
            Arg::Streams => "const u32* __restrict__ streams".to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
