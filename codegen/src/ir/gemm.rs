//! Ring GEMM with a fused epilogue: `C = Σ_j A_j · B_j` over Z_2^64, then an elementwise map on `C`.
//!
//! The blocks share `m` and `n` and each has its own inner dimension `k_j`: one GEMM over the concatenated inner
//! dimension, which is how the replicated-share cross terms `x_i·(y_i + y_{i+1}) + x_{i+1}·y_i` become a single
//! product. The epilogue (zero share, bias, local truncation step, message masking) runs on the accumulator before
//! anything is written, so the product never makes a second pass over memory.

use super::map::MapKernel;
use crate::{Error, Result};

/// `outputs = epilogue(Σ_j A_j · B_j)`, with `A_j` row-major `m × k_j` and `B_j` row-major `k_j × n`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GemmKernel {
    /// Name (a C identifier).
    pub name: String,
    /// Rows of the output.
    pub m: usize,
    /// Columns of the output.
    pub n: usize,
    /// Inner dimension of each block product.
    pub k_blocks: Vec<usize>,
    /// Elementwise epilogue over the `m × n` accumulator: reads [`Op::Acc`](super::Op::Acc), its own inputs (which
    /// follow the A and B blocks in the launch), parameters and PRG streams.
    pub epilogue: MapKernel,
}

impl GemmKernel {
    /// Total inner dimension (the concatenated K).
    pub fn k(&self) -> usize {
        self.k_blocks.iter().fold(0usize, |a, &k| a.saturating_add(k))
    }

    /// Check the shape (every operand's element count fits `usize`) and the epilogue.
    pub fn validate(&self) -> Result<()> {
        if self.k_blocks.is_empty() {
            return Err(Error::Invalid { kernel: self.name.clone(), reason: "a GEMM needs at least one block".into() });
        }
        let k = self.k_blocks.iter().try_fold(0usize, |a, &k| a.checked_add(k));
        let fits = |a: usize, b: usize| a.checked_mul(b).is_some();
        if k.is_none_or(|k| !fits(self.m, k) || !fits(k, self.n)) || !fits(self.m, self.n) {
            return Err(Error::Invalid {
                kernel: self.name.clone(),
                reason: format!(
                    "operand sizes of m = {}, n = {}, k = {:?} overflow usize",
                    self.m, self.n, self.k_blocks
                ),
            });
        }
        self.epilogue.validate(true)
    }

    /// Expected lengths of the launch's input buffers: the A blocks, the B blocks, then the epilogue inputs
    /// (`m·n`, `m` or `n` elements as they are loaded; an unused input may have any length).
    pub fn input_lens(&self) -> Vec<Option<usize>> {
        use super::map::{Load, Op};
        let mut lens: Vec<Option<usize>> = self.k_blocks.iter().map(|k| Some(self.m.saturating_mul(*k))).collect();
        lens.extend(self.k_blocks.iter().map(|k| Some(k.saturating_mul(self.n))));
        let mut epi = vec![None; self.epilogue.inputs as usize];
        for op in &self.epilogue.insts {
            if let Op::Input { buf, load } = *op {
                epi[buf as usize] = Some(match load {
                    Load::Elem => self.m.saturating_mul(self.n),
                    Load::Row => self.m,
                    Load::Col => self.n,
                    // Invalid in an epilogue (validation refuses it); its length as in a map over m·n elements.
                    Load::Packed { bits } => super::map::packed_words(self.m.saturating_mul(self.n), bits as u32),
                });
            }
        }
        lens.extend(epi);
        lens
    }
}
