//! Bit-matrix transposes between element-major words and bit planes, the layout of the binary circuits.
//!
//! Element-major: one `u64` per element. Planes: for `n` elements and `W = ⌈n/64⌉`, plane `i` is `W` words whose
//! bit `j` of word `w` is bit `i` of element `64w + j` (bits past `n` are zero). Circuits on planes are elementwise
//! maps over words, each word carrying one bit position of 64 elements, so a protocol can send exactly the bit
//! positions a circuit level needs.

use crate::{Error, Result};

/// Direction of a transpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BitOp {
    /// `n` words → `planes` planes of `⌈n/64⌉` words (bit positions `0..planes`).
    ToPlanes,
    /// `planes` planes → `n` words: element `e` is `Σ_i bit(plane i, e) · 2^i`.
    FromPlanes,
}

/// A transpose between the two layouts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BitKernel {
    /// Name (a C identifier).
    pub name: String,
    /// Direction.
    pub op: BitOp,
    /// Elements.
    pub n: usize,
    /// Bit positions (planes), `1..=64`.
    pub planes: usize,
}

impl BitKernel {
    /// Words per plane.
    pub fn words_per_plane(&self) -> usize {
        self.n.div_ceil(64)
    }
    /// Length of the input buffer.
    pub fn in_len(&self) -> usize {
        match self.op {
            BitOp::ToPlanes => self.n,
            BitOp::FromPlanes => self.planes * self.words_per_plane(),
        }
    }
    /// Length of the output buffer.
    pub fn out_len(&self) -> usize {
        match self.op {
            BitOp::ToPlanes => self.planes * self.words_per_plane(),
            BitOp::FromPlanes => self.n,
        }
    }
    /// Check the plane count.
    pub fn validate(&self) -> Result<()> {
        if !(1..=64).contains(&self.planes) {
            return Err(Error::Invalid {
                kernel: self.name.clone(),
                reason: format!("{} planes; 1 to 64 exist", self.planes),
            });
        }
        Ok(())
    }
}
