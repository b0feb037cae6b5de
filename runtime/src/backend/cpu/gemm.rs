//! Ring GEMM on the CPU: `C = Σ_j A_j · B_j` over Z_2^64, as one product over the concatenated inner dimension
//! with every block read in place (see [`ring_gemm_blocks`]).

pub use super::ring_gemm::{ring_gemm, ring_gemm_blocks, ring_gemm_with_kernel, Kernel};
use crate::buffer_pool::BufferPool;
use std::sync::Mutex;

/// GEMMs of the parties of one process run one at a time, each on all cores: interleaving them on the same
/// cores thrashes the caches (three concurrent 1024×1024×2048 products measured ≈ 10% slower than in turn).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Accumulators handed back after their epilogue ([`give_back`]): the GEMM overwrites C, so a kept buffer saves
/// zeroing (and page-faulting) megabytes per product.
static SPARE_ACCS: BufferPool = BufferPool::new();

/// `Σ_j A_j · B_j` for row-major `A_j` (`m × k_j`) and `B_j` (`k_j × n`); pass the result to [`give_back`] when done.
pub fn block_gemm(m: usize, n: usize, a: &[&[u64]], b: &[&[u64]]) -> Vec<u64> {
    let mut c = SPARE_ACCS.take(m * n);
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ring_gemm_blocks(m, n, a, b, &mut c);
    c
}

/// Keep an accumulator of [`block_gemm`] for the next one.
pub fn give_back(c: Vec<u64>) {
    SPARE_ACCS.give(c);
}
